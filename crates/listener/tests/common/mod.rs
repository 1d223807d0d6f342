//! Shared helpers for the end-to-end data-plane tests (`e2e_*.rs`).
//!
//! In: nothing but loopback sockets and temporary directories. Each test
//! builds a real certificate store ([`Fixture`]), starts a real
//! [`Server`] on `127.0.0.1:0`, real HTTP/1.1 backends ([`Backend`]) on
//! `127.0.0.1:0`, and talks to it with real clients: rustls + hyper
//! ([`Client`], [`get`]) or the `openssl s_client` CLI ([`s_client`]).
//!
//! Every wait is bounded: awaits go through [`within`], state changes that
//! have no event (backend health as the server sees it, counters) are
//! polled with a deadline ([`eventually`]).

// Not every test binary uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backend;
mod client;
mod openssl;
mod pki;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tlsgate_cert_store::{ClientAuthMode, ClientAuthPolicy, Store};
use tlsgate_listener::{
    BackendConfig, Limits, ListenerConfig, MutualAuth, Protocol, SchedulerKind, Server, Timeouts,
    TlsPolicy, TlsSettings,
};
use tlsgate_test_pki::KeyKind;

// Re-exports for the test binaries; each uses a different subset.
#[allow(unused_imports)]
pub use backend::{Backend, Echo};
#[allow(unused_imports)]
pub use client::{
    BoxError, Client, Response, Result, assert_refused, describe, get, get_ok, raw_tls, tls_error,
};
#[allow(unused_imports)]
pub use openssl::{SClient, s_client};
#[allow(unused_imports)]
pub use pki::{
    Fixture, client_config, sha256_hex, upper_hex, write_atomic, write_ca, write_server,
};

/// Cheap keys: ECDSA P-256 everywhere unless a test needs RSA.
pub const KEY: KeyKind = KeyKind::EcdsaP256;

/// Upper bound for any single awaited step; a passing run takes far less.
pub const STEP: Duration = Duration::from_secs(10);

/// The name every server certificate is issued for.
pub const HOST_NAME: &str = "localhost";

/// The listener name most tests use.
pub const WEB: &str = "web";

/// The server certificate folder/name most tests use.
pub const WWW: &str = "www";

/// The client CA folder/name of mutual-auth tests.
pub const CORP: &str = "corp";

/// A certificate name.
pub fn name(text: &str) -> tlsgate_cert_store::CertificateName {
    tlsgate_cert_store::CertificateName::parse(text).unwrap()
}

// ---------------------------------------------------------------------------
// Bounded waiting
// ---------------------------------------------------------------------------

/// Awaits `future`, failing the test with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(what: &str, limit: Duration, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Polls `condition` every 20 ms until it holds, failing the test with
/// `what` after `limit`. For state that announces no event.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `listener`'s backends, as the server sees them
/// ((address, weight, healthy, in flight)), satisfy `condition`.
pub async fn wait_backends(
    server: &Server,
    listener: &str,
    what: &str,
    condition: impl Fn(&[(String, u8, bool, usize)]) -> bool,
) {
    eventually(what, Duration::from_secs(5), || async {
        condition(&server.backends(listener).await)
    })
    .await;
}

/// Is the backend at `address` healthy in `backends`?
pub fn healthy(backends: &[(String, u8, bool, usize)], address: &str) -> bool {
    backends
        .iter()
        .find(|(a, ..)| a == address)
        .unwrap_or_else(|| panic!("{address} is not a backend of the listener: {backends:?}"))
        .2
}

// ---------------------------------------------------------------------------
// Listener configuration
// ---------------------------------------------------------------------------

/// The built-in policy `name` (`tls12`, `tls13`, …).
pub fn policy(name: &str) -> TlsPolicy {
    TlsPolicy::builtin(name).unwrap().policy
}

/// HTTPS serving `certificates` under `policy`, with optional mutual auth.
pub fn https(
    certificates: &[&str],
    policy_name: &str,
    mutual_auth: Option<MutualAuth>,
) -> Protocol {
    Protocol::Https(TlsSettings {
        certificates: certificates.iter().map(|c| name(c)).collect(),
        policy: policy(policy_name),
        mutual_auth,
    })
}

/// Mutual auth against `ca/CA` in `mode` (chain CRL scope, expired CRLs enforced).
pub fn mutual(ca: &str, mode: ClientAuthMode) -> MutualAuth {
    MutualAuth {
        ca: name(ca),
        policy: ClientAuthPolicy {
            mode,
            ..ClientAuthPolicy::default()
        },
    }
}

/// A listener named `name` on `127.0.0.1:0` with defaults everywhere and
/// `backends` at weight 100, round robin.
pub fn listener(name: &str, protocol: Protocol, backends: &[&Backend]) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        protocol,
        backends: backends
            .iter()
            .map(|b| BackendConfig {
                address: b.address(),
                weight: 100,
            })
            .collect(),
        scheduler: SchedulerKind::RoundRobin,
        health_check: None,
        trusted_proxies: Vec::new(),
        timeouts: Timeouts::default(),
        limits: Limits::default(),
        rfc9440_client_cert: false,
    }
}

/// A `tls12` listener on the fixture's `www` certificate that requires a
/// client certificate from the `corp` CA.
pub fn required_mutual(name: &str, backends: &[&Backend]) -> ListenerConfig {
    listener(
        name,
        https(
            &[WWW],
            "tls12",
            Some(mutual(CORP, ClientAuthMode::Required)),
        ),
        backends,
    )
}

/// Starts a server with `configs` and returns it with the first listener's address.
pub async fn start(store: &Arc<Store>, configs: Vec<ListenerConfig>) -> (Arc<Server>, SocketAddr) {
    let first = configs.first().expect("at least one listener").name.clone();
    let server = Server::new(store.clone());
    within("server.apply", STEP, server.apply(configs))
        .await
        .unwrap();
    let address = server.local_addr(&first).await.unwrap();
    (server, address)
}

/// Sum of a listener's failed handshakes over all reasons.
pub async fn failed_handshakes(server: &Server, listener: &str) -> u64 {
    server
        .stats(listener)
        .await
        .map(|s| s.handshake_failures().values().sum())
        .unwrap_or(0)
}
