//! `GET /v1/listeners` (SPEC §6): every configured listener with its bound
//! address, certificates, TLS policy, mutual-authentication settings,
//! backends and their health, in config order.
//!
//! In: the configuration in force, the running listeners (address,
//! backends) and the store's snapshot (which certificates are loaded, which
//! listeners can serve TLS). Out: one JSON document, built by the pure
//! [`render`] from the configuration and the facts [`list`] copies out.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tlsgate_cert_store::{
    CertKind, ClientAuthMode, CrlScope, ExpiredCrlPolicy, ListenerTls, Snapshot,
};
use tlsgate_listener::{ListenerConfig, Protocol, SchedulerKind};

use super::Shared;

/// What the running server and the store say about one listener, beside
/// its configuration.
#[derive(Debug, Default)]
struct Live {
    /// The address the listener is bound to; `None` when it is not running.
    address: Option<SocketAddr>,
    /// The running backends: (address, weight, healthy, in flight). Only
    /// read when `address` is `Some`.
    backends: Vec<(String, u8, bool, usize)>,
    /// Certificates (server and CA) the listener names that the store does
    /// not hold, in config order.
    missing: Vec<String>,
    /// HTTPS: the listener has a server certificate and, under mutual
    /// authentication, a usable client verifier. HTTP: always true.
    tls_ready: bool,
}

fn scheduler_name(kind: SchedulerKind) -> &'static str {
    match kind {
        SchedulerKind::RoundRobin => "rr",
        SchedulerKind::WeightedRoundRobin => "wrr",
        SchedulerKind::WeightedLeastConnections => "wlc",
    }
}

fn mode_name(mode: ClientAuthMode) -> &'static str {
    match mode {
        ClientAuthMode::Required => "required",
        ClientAuthMode::Optional => "optional",
    }
}

fn crl_scope_name(scope: CrlScope) -> &'static str {
    match scope {
        CrlScope::Chain => "chain",
        CrlScope::Leaf => "leaf",
    }
}

fn expired_crl_name(policy: ExpiredCrlPolicy) -> &'static str {
    match policy {
        ExpiredCrlPolicy::Enforce => "enforce",
        ExpiredCrlPolicy::RejectAll => "reject-all",
    }
}

/// One listener's JSON object.
fn render_listener(config: &ListenerConfig, live: &Live) -> Value {
    let backends: Vec<Value> = match live.address {
        Some(_) => live
            .backends
            .iter()
            .map(|(address, weight, healthy, in_flight)| {
                json!({
                    "address": address,
                    "weight": weight,
                    "healthy": healthy,
                    "in_flight": in_flight,
                })
            })
            .collect(),
        // A listener that is not running forwards nothing: its configured
        // backends, none of them in rotation.
        None => config
            .backends
            .iter()
            .map(|b| {
                json!({
                    "address": b.address,
                    "weight": b.weight,
                    "healthy": false,
                    "in_flight": 0,
                })
            })
            .collect(),
    };
    let (protocol, tls_policy, certificates, mutual_auth) = match &config.protocol {
        Protocol::Https(tls) => (
            "https",
            json!(tls.policy.name()),
            tls.certificates.iter().map(|c| c.as_str()).collect(),
            tls.mutual_auth.as_ref().map_or(Value::Null, |auth| {
                json!({
                    "ca": auth.ca.as_str(),
                    "mode": mode_name(auth.policy.mode),
                    "crl_scope": crl_scope_name(auth.policy.crl_scope),
                    "expired_crl": expired_crl_name(auth.policy.expired_crl),
                })
            }),
        ),
        Protocol::Http => ("http", Value::Null, Vec::new(), Value::Null),
    };
    json!({
        "name": config.name,
        "address": live.address.map(|a| a.to_string()),
        "protocol": protocol,
        "tls_policy": tls_policy,
        "certificates": certificates,
        "mutual_auth": mutual_auth,
        "scheduler": scheduler_name(config.scheduler),
        "backends": backends,
        "missing_certificates": live.missing,
        "tls_ready": live.tls_ready,
    })
}

/// The `GET /v1/listeners` document: `{"listeners": [...]}` in the order
/// of `listeners`.
fn render(listeners: &[(&ListenerConfig, Live)]) -> Value {
    let rows: Vec<Value> = listeners
        .iter()
        .map(|(config, live)| render_listener(config, live))
        .collect();
    json!({ "listeners": rows })
}

/// Can the listener's TLS material serve a handshake? The same test as
/// `/readyz`: at least one server certificate, and under mutual
/// authentication a verifier (a loaded CA rustls accepted). `None` (the
/// store has no binding for the listener) cannot serve.
fn tls_ready(material: Option<&ListenerTls>) -> bool {
    material.is_some_and(|m| !m.sni.is_empty() && !matches!(m.client_auth, Some(Err(_))))
}

/// The certificates `config` names that `snapshot` does not hold, server
/// certificates first (in config order), then the mutual-auth CA.
fn missing(config: &ListenerConfig, snapshot: &Snapshot) -> Vec<String> {
    let Some(tls) = config.tls() else {
        return Vec::new();
    };
    let servers = tls
        .certificates
        .iter()
        .filter(|name| !snapshot.contains(CertKind::Server, name));
    let ca = tls
        .mutual_auth
        .iter()
        .map(|auth| &auth.ca)
        .filter(|name| !snapshot.contains(CertKind::Ca, name));
    servers
        .chain(ca)
        .map(|name| name.as_str().to_owned())
        .collect()
}

/// `GET /v1/listeners`: the listeners in config order.
pub async fn list(State(state): State<Shared>) -> Response {
    // Held while the server is asked, so no reload can slip in between and
    // the config shown matches the running listeners. The server calls only
    // take its own short lock (the order a reload also takes them in).
    let config = state.config.lock().await;
    let running: HashMap<String, SocketAddr> = state.server.listeners().await.into_iter().collect();
    let snapshot = state.store.snapshot();

    let mut rows = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let address = running.get(&listener.name).copied();
        let backends = match address {
            Some(_) => state.server.backends(&listener.name).await,
            None => Vec::new(),
        };
        let tls_ready = match listener.protocol {
            Protocol::Https(_) => tls_ready(snapshot.listener(&listener.name).map(AsRef::as_ref)),
            Protocol::Http => true,
        };
        let live = Live {
            address,
            backends,
            missing: missing(listener, &snapshot),
            tls_ready,
        };
        rows.push((listener, live));
    }
    Json(render(&rows)).into_response()
}

#[cfg(test)]
mod tests {
    use tlsgate_cert_store::{
        Binding, CertificateName, ClientAuthBinding, ClientAuthPolicy, Store, StoreConfig,
        folder_path,
    };
    use tlsgate_listener::{BackendConfig, Limits, MutualAuth, Timeouts, TlsPolicy, TlsSettings};
    use tlsgate_test_pki::{KeyKind, TestPki, Validity};

    use super::*;

    fn name(text: &str) -> CertificateName {
        CertificateName::parse(text).expect("valid name")
    }

    fn listener(name: &str, protocol: Protocol, scheduler: SchedulerKind) -> ListenerConfig {
        ListenerConfig {
            name: name.into(),
            bind: "127.0.0.1:0".parse().expect("address"),
            protocol,
            backends: vec![
                BackendConfig {
                    address: "127.0.0.1:8081".into(),
                    weight: 100,
                },
                BackendConfig {
                    address: "127.0.0.1:8082".into(),
                    weight: 0,
                },
            ],
            scheduler,
            health_check: None,
            trusted_proxies: Vec::new(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            rfc9440_client_cert: false,
        }
    }

    fn https(mutual_auth: Option<MutualAuth>) -> Protocol {
        Protocol::Https(TlsSettings {
            certificates: vec![name("www-ecdsa"), name("www-rsa")],
            policy: TlsPolicy::builtin("tls12").expect("built-in").policy,
            mutual_auth,
        })
    }

    #[test]
    fn https_listener_with_mutual_auth() {
        let config = listener(
            "web",
            https(Some(MutualAuth {
                ca: name("corp/ca"),
                policy: ClientAuthPolicy {
                    mode: ClientAuthMode::Optional,
                    crl_scope: CrlScope::Leaf,
                    expired_crl: ExpiredCrlPolicy::RejectAll,
                },
            })),
            SchedulerKind::WeightedLeastConnections,
        );
        let live = Live {
            address: Some("127.0.0.1:8443".parse().expect("address")),
            backends: vec![
                ("127.0.0.1:8081".into(), 100, true, 2),
                ("127.0.0.1:8082".into(), 0, false, 0),
            ],
            missing: vec!["www-rsa".into()],
            tls_ready: true,
        };
        let doc = render(&[(&config, live)]);
        assert_eq!(
            doc,
            json!({"listeners": [{
                "name": "web",
                "address": "127.0.0.1:8443",
                "protocol": "https",
                "tls_policy": "tls12",
                "certificates": ["www-ecdsa", "www-rsa"],
                "mutual_auth": {
                    "ca": "corp/ca",
                    "mode": "optional",
                    "crl_scope": "leaf",
                    "expired_crl": "reject-all",
                },
                "scheduler": "wlc",
                "backends": [
                    {"address": "127.0.0.1:8081", "weight": 100, "healthy": true, "in_flight": 2},
                    {"address": "127.0.0.1:8082", "weight": 0, "healthy": false, "in_flight": 0},
                ],
                "missing_certificates": ["www-rsa"],
                "tls_ready": true,
            }]})
        );
    }

    #[test]
    fn config_order_http_and_not_running() {
        let plain = listener("plain", Protocol::Http, SchedulerKind::RoundRobin);
        let web = listener("web", https(None), SchedulerKind::WeightedRoundRobin);
        let doc = render(&[
            (
                &web,
                Live {
                    missing: vec!["www-ecdsa".into(), "www-rsa".into()],
                    ..Live::default()
                },
            ),
            (
                &plain,
                Live {
                    address: Some("[::1]:8080".parse().expect("address")),
                    backends: vec![("127.0.0.1:8081".into(), 100, true, 0)],
                    tls_ready: true,
                    ..Live::default()
                },
            ),
        ]);
        let rows = doc["listeners"].as_array().expect("array");
        assert_eq!(rows.len(), 2);

        let web = &rows[0];
        assert_eq!(web["name"], "web");
        assert_eq!(web["address"], Value::Null, "not running: no bound address");
        assert_eq!(web["scheduler"], "wrr");
        assert_eq!(web["mutual_auth"], Value::Null);
        assert_eq!(web["tls_ready"], false);
        assert_eq!(web["missing_certificates"], json!(["www-ecdsa", "www-rsa"]));
        // Not running: the configured backends, none in rotation.
        assert_eq!(
            web["backends"],
            json!([
                {"address": "127.0.0.1:8081", "weight": 100, "healthy": false, "in_flight": 0},
                {"address": "127.0.0.1:8082", "weight": 0, "healthy": false, "in_flight": 0},
            ])
        );

        let plain = &rows[1];
        assert_eq!(plain["name"], "plain");
        assert_eq!(plain["address"], "[::1]:8080");
        assert_eq!(plain["protocol"], "http");
        assert_eq!(plain["tls_policy"], Value::Null);
        assert_eq!(plain["certificates"], json!([]));
        assert_eq!(plain["mutual_auth"], Value::Null);
        assert_eq!(plain["scheduler"], "rr");
        assert_eq!(plain["missing_certificates"], json!([]));
        assert_eq!(plain["tls_ready"], true);
        assert_eq!(plain["backends"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn facts_from_the_store() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let pki = TestPki::now_real();
        let root = pki.root("Admin Test Root", KeyKind::EcdsaP256);
        let leaf = root.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
        let folder = folder_path(dir.path(), CertKind::Server, &name("www-ecdsa"));
        std::fs::create_dir_all(&folder).expect("folder");
        let chain = format!("{}{}", leaf.cert_pem(), root.cert().cert_pem());
        std::fs::write(folder.join("cert.pem"), chain).expect("cert.pem");
        std::fs::write(folder.join("key.pem"), leaf.key().pkcs8_pem()).expect("key.pem");
        let store = Store::open(StoreConfig::new(dir.path())).expect("store");

        let config = listener(
            "web",
            https(Some(MutualAuth {
                ca: name("corp/ca"),
                policy: ClientAuthPolicy::default(),
            })),
            SchedulerKind::RoundRobin,
        );
        let binding = |client_auth: Option<ClientAuthBinding>| Binding {
            listener: "web".into(),
            certificates: vec![name("www-ecdsa"), name("www-rsa")],
            client_auth,
        };
        // No binding for the listener yet: nothing to serve with.
        assert!(!tls_ready(
            store.snapshot().listener("web").map(AsRef::as_ref)
        ));

        // One certificate of two is enough to serve, but the CA is missing.
        store.set_bindings(vec![binding(Some(ClientAuthBinding {
            ca: name("corp/ca"),
            policy: ClientAuthPolicy::default(),
        }))]);
        let snapshot = store.snapshot();
        assert_eq!(missing(&config, &snapshot), ["www-rsa", "corp/ca"]);
        assert!(!tls_ready(snapshot.listener("web").map(AsRef::as_ref)));

        // Without mutual authentication the certificate it has suffices.
        store.set_bindings(vec![binding(None)]);
        assert!(tls_ready(
            store.snapshot().listener("web").map(AsRef::as_ref)
        ));

        let plain = listener("plain", Protocol::Http, SchedulerKind::RoundRobin);
        assert!(missing(&plain, &Snapshot::default()).is_empty());
    }
}
