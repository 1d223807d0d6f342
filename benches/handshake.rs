//! TLS handshakes as the listener performs them: the ServerConfig comes from
//! the listener's own `TlsConfigCache` over a real store, and a rustls client
//! talks to it in memory (no sockets, so only TLS work is measured).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use tlsgate_cert_store::{
    Binding, CertificateName, ClientAuthBinding, ClientAuthPolicy, Store, StoreConfig,
};
use tlsgate_listener::{TlsConfigCache, TlsPolicy};
use tlsgate_test_pki::{Issued, KeyKind, TestPki, Validity};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Moves bytes between the two ends until both are done.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buffer = Vec::with_capacity(16 * 1024);
    while client.is_handshaking() || server.is_handshaking() {
        buffer.clear();
        while client.wants_write() {
            client.write_tls(&mut buffer).unwrap();
        }
        if !buffer.is_empty() {
            let mut slice = buffer.as_slice();
            while !slice.is_empty() {
                server.read_tls(&mut slice).unwrap();
            }
            server.process_new_packets().unwrap();
        }
        buffer.clear();
        while server.wants_write() {
            server.write_tls(&mut buffer).unwrap();
        }
        if !buffer.is_empty() {
            let mut slice = buffer.as_slice();
            while !slice.is_empty() {
                client.read_tls(&mut slice).unwrap();
            }
            client.process_new_packets().unwrap();
        }
    }
    // TLS 1.3 session tickets follow the server's last handshake flight.
    buffer.clear();
    while server.wants_write() {
        server.write_tls(&mut buffer).unwrap();
    }
    let mut slice = buffer.as_slice();
    while !slice.is_empty() {
        client.read_tls(&mut slice).unwrap();
    }
    client.process_new_packets().unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn setup(key: KeyKind, mutual: bool, resume: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::now_real();
    let root = pki.root("Bench Root", KeyKind::EcdsaP256);
    let leaf = root.server(&["bench.example"], key, Validity::Normal);
    let folder = dir.path().join("server/www");
    fs::create_dir_all(&folder).unwrap();
    fs::write(
        folder.join("cert.pem"),
        format!("{}{}", leaf.cert_pem(), root.cert().cert_pem()),
    )
    .unwrap();
    fs::write(folder.join("key.pem"), leaf.key().pkcs8_pem()).unwrap();
    let ca = dir.path().join("ca/clients");
    fs::create_dir_all(&ca).unwrap();
    fs::write(ca.join("ca.pem"), root.cert().cert_pem()).unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    store.set_bindings(vec![Binding {
        listener: "web".into(),
        certificates: vec![CertificateName::parse("www").unwrap()],
        client_auth: mutual.then(|| ClientAuthBinding {
            ca: CertificateName::parse("clients").unwrap(),
            policy: ClientAuthPolicy::default(),
        }),
    }]);
    let policy = TlsPolicy::builtin("tls12").unwrap().policy;
    let server = TlsConfigCache::new("web", store).current(&policy).unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(root.cert().certificate_der()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut client = if mutual {
        let alice: Issued = root.client("alice", KeyKind::EcdsaP256, Validity::Normal);
        builder
            .with_client_auth_cert(vec![alice.certificate_der()], alice.key().private_key_der())
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    if !resume {
        client.resumption = rustls::client::Resumption::disabled();
    }
    Setup {
        _dir: dir,
        server,
        client: Arc::new(client),
    }
}

fn connect(setup: &Setup) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from("bench.example").unwrap();
    let mut client = ClientConnection::new(setup.client.clone(), name).unwrap();
    let mut server = ServerConnection::new(setup.server.clone()).unwrap();
    handshake(&mut client, &mut server);
    (client, server)
}

fn handshakes(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls13_handshake");
    group.throughput(Throughput::Elements(1));
    for (label, key, mutual, resume) in [
        ("full/ecdsa_p256", KeyKind::EcdsaP256, false, false),
        ("full/rsa_2048", KeyKind::Rsa2048, false, false),
        ("mtls/ecdsa_p256", KeyKind::EcdsaP256, true, false),
        ("resumed/ecdsa_p256", KeyKind::EcdsaP256, false, true),
    ] {
        let setup = setup(key, mutual, resume);
        if resume {
            // Prime the client's ticket store; each iteration then resumes.
            let (_, server) = connect(&setup);
            drop(server);
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                let (client, _server) = connect(&setup);
                if resume {
                    assert_eq!(
                        client.handshake_kind(),
                        Some(rustls::HandshakeKind::Resumed)
                    );
                }
                client
            });
        });
    }
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
