//! A listener's rustls `ServerConfig` (R3, R4, R9, R9a).
//!
//! In: the listener's name and the certificate store's snapshot cell, and
//! per accepted connection the listener's current [`TlsPolicy`]. Out: the
//! `Arc<ServerConfig>` to hand to the TLS acceptor, or the reason the
//! listener cannot serve TLS right now (the accept loop logs it and closes
//! the connection: fail closed).
//!
//! The config is built once and reused until its inputs change. Its inputs
//! are the policy and the listener's client-certificate verifier, nothing
//! else: server certificates are chosen per handshake by a
//! [`StoreResolver`] that reads the live snapshot, so a certificate swap
//! needs no rebuild.
//!
//! Resumption state (TLS 1.3 ticket keys, the TLS 1.2 session cache) lives
//! in the config but is carried over to the next one, except when the
//! verifier changed. rustls restores a resumed session's client certificate
//! without verifying it again, so a session from before a new CA or CRL
//! must not be resumable after it (R4).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::ServerConfig;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use tlsgate_cert_store::{Snapshot, Store, StoreResolver};

use crate::TlsPolicy;

/// ALPN protocols offered to clients, in server preference order (R9).
/// `http/1.0` is what `curl --http1.0` offers alone; like NGINX, tlsgate
/// accepts it and serves the connection as HTTP/1.x rather than refusing
/// the handshake (no_application_protocol).
const ALPN_PROTOCOLS: [&[u8]; 3] = [b"h2", b"http/1.1", b"http/1.0"];

/// TLS 1.2 sessions remembered per listener. An entry is a few hundred
/// bytes, so this bounds the cache to a few MiB; the oldest are evicted.
const SESSION_CACHE_SIZE: usize = 20_000;

/// Verifier identity: `None` for one-way TLS.
type Verifier = Option<Arc<dyn ClientCertVerifier>>;

/// Builds and caches a listener's rustls `ServerConfig`.
///
/// Make one per listener and keep it for the listener's life: it owns the
/// listener's resumption state, and a session must never be resumable on a
/// listener other than the one that created it.
pub struct TlsConfigCache {
    listener: String,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Shared by every config this cache builds; it holds no state of its
    /// own beyond the snapshot cell and the listener's name.
    resolver: Arc<StoreResolver>,
    /// The last config built, with the inputs it was built from.
    built: ArcSwapOption<Built>,
    /// Serialises rebuilds, so that connections arriving together after a
    /// change build one config (and one set of resumption state), not many.
    rebuilding: Mutex<()>,
}

/// A config and the key it was built for.
struct Built {
    policy: TlsPolicy,
    /// Held (not just its address) so that the allocation cannot be reused
    /// by a new verifier, which would then compare equal.
    verifier: Verifier,
    config: Arc<ServerConfig>,
}

impl Built {
    fn serves(&self, policy: &TlsPolicy, verifier: Option<&Arc<dyn ClientCertVerifier>>) -> bool {
        same_verifier(self.verifier.as_ref(), verifier) && self.policy == *policy
    }
}

/// The same verifier instance, or both one-way. The store builds a new
/// verifier whenever the CA, its CRLs or the client-auth policy change, so
/// identity is what tells "resumption state may be kept" apart.
fn same_verifier(
    a: Option<&Arc<dyn ClientCertVerifier>>,
    b: Option<&Arc<dyn ClientCertVerifier>>,
) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl TlsConfigCache {
    /// A cache for `listener`'s TLS configuration, served from `store`.
    pub fn new(listener: impl Into<String>, store: Arc<Store>) -> Self {
        let listener = listener.into();
        let snapshot = store.shared();
        TlsConfigCache {
            resolver: Arc::new(StoreResolver::new(snapshot.clone(), listener.clone())),
            listener,
            snapshot,
            built: ArcSwapOption::empty(),
            rebuilding: Mutex::new(()),
        }
    }

    /// The config for a new connection, or why the listener cannot serve
    /// TLS right now.
    ///
    /// Called once per accepted connection: when neither `policy` nor the
    /// listener's client-certificate verifier changed since the last call,
    /// this is a snapshot load, a hash lookup and two comparisons.
    ///
    /// # Errors
    ///
    /// A message for the log when the store has no material for the
    /// listener, none of its server certificates, or mutual authentication
    /// is configured but its CA cannot be used (missing or invalid) — then
    /// no handshake may proceed (fail closed, R3) — or when rustls refuses
    /// the policy or cannot make ticket keys.
    pub fn current(&self, policy: &TlsPolicy) -> Result<Arc<ServerConfig>, String> {
        let snapshot = self.snapshot.load();
        let verifier = self.verifier(&snapshot)?;
        if let Some(built) = &*self.built.load() {
            if built.serves(policy, verifier) {
                return Ok(built.config.clone());
            }
        }
        self.rebuild(policy)
    }

    /// The listener's verifier in `snapshot` (`None`: one-way TLS), or why
    /// the listener cannot serve TLS.
    fn verifier<'s>(
        &self,
        snapshot: &'s Snapshot,
    ) -> Result<Option<&'s Arc<dyn ClientCertVerifier>>, String> {
        let Some(tls) = snapshot.listener(&self.listener) else {
            return Err(format!(
                "listener {:?} has no TLS material in the certificate store (its certificate \
                 binding is not loaded); refusing the handshake",
                self.listener
            ));
        };
        if tls.sni.is_empty() {
            let missing: Vec<&str> = tls.missing.iter().map(|name| name.as_str()).collect();
            return Err(format!(
                "listener {:?} has none of its server certificates loaded (not in the store, \
                 or refused when read: {}); refusing the handshake",
                self.listener,
                missing.join(", ")
            ));
        }
        match &tls.client_auth {
            None => Ok(None),
            Some(Ok(verifier)) => Ok(Some(verifier)),
            // SECURITY: mutual authentication is configured, so serving
            // one-way TLS instead would let any client in. Refuse.
            Some(Err(reason)) => Err(format!(
                "listener {:?}: mutual authentication is configured but cannot be served, so \
                 handshakes are refused: {reason}",
                self.listener
            )),
        }
    }

    /// Builds the config for `policy` and the listener's current verifier,
    /// unless another connection just did.
    fn rebuild(&self, policy: &TlsPolicy) -> Result<Arc<ServerConfig>, String> {
        // Holding the lock only ever guards this in-memory build (no I/O, no
        // await). A panic in an earlier build left nothing half-written (the
        // result is published by one store), so a poisoned lock is usable.
        let _rebuilding = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Read the snapshot again under the lock: builds then happen in
        // snapshot order, and a caller that loaded an older snapshot cannot
        // publish a config with a verifier the store has already replaced.
        let snapshot = self.snapshot.load();
        let verifier = self.verifier(&snapshot)?;
        let previous = self.built.load_full();
        if let Some(built) = &previous {
            if built.serves(policy, verifier) {
                return Ok(built.config.clone());
            }
        }

        let kept = previous
            .as_ref()
            .filter(|built| same_verifier(built.verifier.as_ref(), verifier));
        let resumption = match kept {
            Some(built) => Resumption {
                session_storage: built.config.session_storage.clone(),
                ticketer: built.config.ticketer.clone(),
            },
            None => Resumption::fresh().map_err(|err| {
                format!(
                    "listener {:?}: cannot create TLS session ticket keys: {err}",
                    self.listener
                )
            })?,
        };

        let builder = ServerConfig::builder_with_provider(policy.provider())
            .with_protocol_versions(policy.versions())
            .map_err(|err| {
                format!(
                    "listener {:?}: TLS policy {:?} is refused by rustls: {err}",
                    self.listener,
                    policy.name()
                )
            })?;
        let builder = match verifier {
            None => builder.with_no_client_auth(),
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        config.session_storage = resumption.session_storage;
        config.ticketer = resumption.ticketer;
        // The client's preference among our suites wins (it knows whether it
        // has AES hardware); the policy already holds only strong suites.
        config.ignore_client_order = false;
        // No 0-RTT: early data can be replayed, and the backends are plain
        // HTTP servers that cannot tell a replayed request apart.
        config.max_early_data_size = 0;
        config.send_half_rtt_data = false;
        let config = Arc::new(config);

        match (&previous, kept.is_some()) {
            (None, _) => tracing::debug!(
                listener = %self.listener,
                policy = policy.name(),
                mutual_auth = verifier.is_some(),
                "TLS configuration built"
            ),
            (Some(_), true) => tracing::info!(
                listener = %self.listener,
                policy = policy.name(),
                mutual_auth = verifier.is_some(),
                "TLS configuration rebuilt for a policy change; sessions stay resumable"
            ),
            (Some(_), false) => tracing::info!(
                listener = %self.listener,
                policy = policy.name(),
                mutual_auth = verifier.is_some(),
                "TLS configuration rebuilt for a client-authentication change (CA, CRL or \
                 mode); earlier sessions can no longer be resumed"
            ),
        }
        self.built.store(Some(Arc::new(Built {
            policy: policy.clone(),
            verifier: verifier.cloned(),
            config: config.clone(),
        })));
        Ok(config)
    }
}

/// A listener's resumption state (R9a).
struct Resumption {
    /// TLS 1.2 sessions resumed by session ID.
    session_storage: Arc<dyn StoresServerSessions>,
    /// Ticket keys: all TLS 1.3 resumption, and TLS 1.2 clients that offer
    /// session tickets.
    ticketer: Arc<dyn ProducesTickets>,
}

impl Resumption {
    /// New ticket keys (rustls rotates them every 6 hours; a ticket is
    /// valid for 12) and an empty session cache.
    fn fresh() -> Result<Resumption, rustls::Error> {
        Ok(Resumption {
            session_storage: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
        })
    }
}

impl fmt::Debug for TlsConfigCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let built = self.built.load();
        f.debug_struct("TlsConfigCache")
            .field("listener", &self.listener)
            .field(
                "policy",
                &built.as_ref().map(|b| b.policy.name().to_owned()),
            )
            .field("mutual_auth", &built.as_ref().map(|b| b.verifier.is_some()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use rustls::RootCertStore;
    use rustls::server::WebPkiClientVerifier;
    use tlsgate_test_pki::{KeyKind, TestPki};

    use super::*;

    fn verifier() -> Arc<dyn ClientCertVerifier> {
        let root = TestPki::fixed().root("test root", KeyKind::EcdsaP256);
        let mut roots = RootCertStore::empty();
        roots.add(root.cert().certificate_der()).unwrap();
        WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap()
    }

    #[test]
    fn verifier_identity() {
        let a = verifier();
        let b = verifier();
        assert!(same_verifier(None, None));
        assert!(same_verifier(Some(&a), Some(&a.clone())));
        assert!(
            !same_verifier(Some(&a), Some(&b)),
            "equal content, new instance"
        );
        assert!(!same_verifier(Some(&a), None));
        assert!(!same_verifier(None, Some(&b)));
    }

    #[test]
    fn debug_before_and_after_a_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(tlsgate_cert_store::StoreConfig::new(dir.path())).unwrap();
        let cache = TlsConfigCache::new("web", store);
        let text = format!("{cache:?}");
        assert!(
            text.contains("\"web\"") && text.contains("policy: None"),
            "{text}"
        );
    }
}
