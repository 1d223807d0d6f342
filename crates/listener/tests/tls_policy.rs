//! TLS policies and the listener's `ServerConfig` in whole handshakes, in
//! memory (R3–R6, R9, R9a): a rustls client over `tokio::io::duplex` to a
//! server configured by [`TlsConfigCache::current`], whose certificates come
//! from a real store in a temporary directory.
//!
//! Certificates are made at the real current time: rustls checks validity
//! against the system clock during the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{Resumption, Tls12Resumption};
use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs};
use rustls::{
    CertificateError, CipherSuite, ClientConfig, HandshakeKind, NamedGroup, PeerIncompatible,
    ProtocolVersion, RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tlsgate_cert_store::{
    Binding, CertKind, CertificateName, ClientAuthBinding, ClientAuthPolicy, Store, StoreConfig,
};
use tlsgate_listener::{TlsConfigCache, TlsPolicy};
use tlsgate_test_pki::{Ca, Chain, Issued, KeyKind, TestPki, Validity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const KEY: KeyKind = KeyKind::EcdsaP256;
const TLS12: &SupportedProtocolVersion = &rustls::version::TLS12;
const TLS13: &SupportedProtocolVersion = &rustls::version::TLS13;
const LISTENER: &str = "web";

// ---------------------------------------------------------------------------
// A store with one listener
// ---------------------------------------------------------------------------

struct Fixture {
    dir: TempDir,
    store: Arc<Store>,
    server: Chain,
    /// The client CA (`ca/corp`) when mutual authentication is on.
    client_ca: Option<Ca>,
}

fn write(path: &Path, contents: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn name(text: &str) -> CertificateName {
    CertificateName::parse(text).unwrap()
}

fn write_server(dir: &Path, chain: &Chain) {
    let folder = dir.join("server").join("www");
    write(&folder.join("cert.pem"), &chain.pem_leaf_first());
    write(&folder.join("key.pem"), &chain.leaf.key().pkcs8_pem());
}

impl Fixture {
    /// Listener `web` serving `server/www`; with `mutual_auth`, clients are
    /// verified against `ca/corp` (written with an empty CRL).
    fn new(mutual_auth: bool) -> Fixture {
        let pki = TestPki::now_real();
        let dir = tempfile::tempdir().unwrap();
        let server = pki.server_chain(&["localhost"], KEY);
        write_server(dir.path(), &server);
        let client_ca = mutual_auth.then(|| {
            let ca = pki.root("corp client CA", KEY);
            let folder = dir.path().join("ca").join("corp");
            write(&folder.join("ca.pem"), &ca.cert().cert_pem());
            write(&folder.join("crl.pem"), &ca.crl_pem(&[], 30));
            ca
        });
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        let fixture = Fixture {
            dir,
            store,
            server,
            client_ca,
        };
        fixture.bind(mutual_auth.then_some("corp"));
        fixture
    }

    fn bind(&self, ca: Option<&str>) {
        self.store.set_bindings(vec![Binding {
            listener: LISTENER.into(),
            certificates: vec![name("www")],
            client_auth: ca.map(|ca| ClientAuthBinding {
                ca: name(ca),
                policy: ClientAuthPolicy::default(),
            }),
        }]);
    }

    fn cache(&self) -> TlsConfigCache {
        TlsConfigCache::new(LISTENER, self.store.clone())
    }

    fn client_ca(&self) -> &Ca {
        self.client_ca.as_ref().unwrap()
    }

    /// Replaces the client CA's CRL and reloads it, as the watcher would.
    fn set_crl(&self, revoked: &[&Issued]) {
        let serials: Vec<Vec<u8>> = revoked.iter().map(|c| c.serial()).collect();
        let path = self.dir.path().join("ca").join("corp").join("crl.pem");
        write(&path, &self.client_ca().crl_pem(&serials, 30));
        self.store.reload_folder(CertKind::Ca, "corp");
    }

    fn client(&self) -> ClientBuilder {
        ClientBuilder {
            roots: vec![self.server.root.cert().certificate_der()],
            provider: aws_lc_rs::default_provider(),
            versions: vec![TLS13, TLS12],
            alpn: Vec::new(),
            identity: None,
            tls12_resumption: Tls12Resumption::SessionIdOrTickets,
        }
    }
}

fn builtin(name: &str) -> TlsPolicy {
    TlsPolicy::builtin(name).unwrap().policy
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------
// Clients and handshakes
// ---------------------------------------------------------------------------

struct ClientBuilder {
    roots: Vec<CertificateDer<'static>>,
    provider: CryptoProvider,
    versions: Vec<&'static SupportedProtocolVersion>,
    alpn: Vec<&'static [u8]>,
    identity: Option<Issued>,
    tls12_resumption: Tls12Resumption,
}

impl ClientBuilder {
    fn versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    fn suites(mut self, suites: &[SupportedCipherSuite]) -> Self {
        self.provider.cipher_suites = suites.to_vec();
        self
    }

    fn groups(mut self, groups: &[&'static dyn SupportedKxGroup]) -> Self {
        self.provider.kx_groups = groups.to_vec();
        self
    }

    fn alpn(mut self, protocols: &[&'static [u8]]) -> Self {
        self.alpn = protocols.to_vec();
        self
    }

    fn identity(mut self, leaf: &Issued) -> Self {
        self.identity = Some(leaf.clone());
        self
    }

    fn tls12_resumption(mut self, mode: Tls12Resumption) -> Self {
        self.tls12_resumption = mode;
        self
    }

    /// One config: connections made with it share its session cache.
    fn build(self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for root in self.roots {
            roots.add(root).unwrap();
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(self.provider))
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some(leaf) => builder
                .with_client_auth_cert(vec![leaf.certificate_der()], leaf.key().private_key_der())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption =
            Resumption::in_memory_sessions(64).tls12_resumption(self.tls12_resumption);
        Arc::new(config)
    }
}

/// What one side saw of a completed handshake.
#[derive(Debug)]
struct Seen {
    version: ProtocolVersion,
    suite: CipherSuite,
    group: Option<NamedGroup>,
    alpn: Option<Vec<u8>>,
    kind: HandshakeKind,
    peer_leaf: Option<CertificateDer<'static>>,
}

fn seen(conn: &rustls::CommonState) -> Seen {
    Seen {
        version: conn.protocol_version().unwrap(),
        suite: conn.negotiated_cipher_suite().unwrap().suite(),
        group: conn.negotiated_key_exchange_group().map(|g| g.name()),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        kind: conn.handshake_kind().unwrap(),
        peer_leaf: conn
            .peer_certificates()
            .and_then(|chain| chain.first().cloned()),
    }
}

#[derive(Debug)]
struct Outcome {
    server: Result<Seen, io::Error>,
    /// `Ok` only when the client also read the byte the server wrote after
    /// its handshake (under TLS 1.3 a client-auth refusal arrives then).
    client: Result<Seen, io::Error>,
}

impl Outcome {
    #[track_caller]
    fn accepted(self) -> Seen {
        match (self.server, self.client) {
            (Ok(server), Ok(_)) => server,
            (server, client) => panic!("expected success, server: {server:?}, client: {client:?}"),
        }
    }

    /// The rustls error the server refused with (what the accept loop logs).
    #[track_caller]
    fn refused(self) -> rustls::Error {
        assert!(self.client.is_err(), "the client must fail too: {self:?}");
        let err = self.server.expect_err("expected the server to refuse");
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("not a TLS error: {err:?}"))
    }
}

async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let connector = TlsConnector::from(client);
    let server_side = async move {
        let mut tls = acceptor.accept(server_io).await?;
        let seen = seen(tls.get_ref().1);
        tls.write_all(b"!").await?;
        tls.flush().await?;
        // Kept open until the client has read the byte (and, under TLS 1.3,
        // the session tickets sent before it).
        Ok::<_, io::Error>((seen, tls))
    };
    let client_side = async move {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, client_io).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        Ok::<_, io::Error>(seen(tls.get_ref().1))
    };
    let (server, client) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(server_side, client_side)
    })
    .await
    .expect("the handshake finishes within 10 s");
    Outcome {
        server: server.map(|(seen, _)| seen),
        client,
    }
}

/// A handshake on the listener's current config.
async fn connect(
    cache: &TlsConfigCache,
    policy: &TlsPolicy,
    client: &Arc<ClientConfig>,
) -> Outcome {
    let config = cache.current(policy).unwrap();
    handshake(config, client.clone()).await
}

fn suite_named(suite: CipherSuite) -> SupportedCipherSuite {
    *aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .find(|s| s.suite() == suite)
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1. Versions (R6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tls13_refuses_a_tls12_only_client() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let policy = builtin("tls13");

    let client = fixture.client().versions(&[TLS12]).build();
    let err = connect(&cache, &policy, &client).await.refused();
    // A TLS 1.2-only rustls client still sends supported_versions (1.2 only).
    assert_eq!(
        err,
        rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled)
    );

    let client = fixture.client().build();
    let seen = connect(&cache, &policy, &client).await.accepted();
    assert_eq!(seen.version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn tls12_accepts_tls12_and_tls13_clients() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    for name in ["tls12", "tls12_strict", "tls_cipher_policy_1_0"] {
        let policy = builtin(name);
        for (versions, expected) in [
            (&[TLS12][..], ProtocolVersion::TLSv1_2),
            (&[TLS13][..], ProtocolVersion::TLSv1_3),
            (&[TLS13, TLS12][..], ProtocolVersion::TLSv1_3),
        ] {
            let client = fixture.client().versions(versions).build();
            let seen = connect(&cache, &policy, &client).await.accepted();
            assert_eq!(seen.version, expected, "{name}");
        }
    }
}

/// What the accept loop sees from TLS 1.0/1.1 clients, which rustls clients
/// cannot produce: hand-made ClientHellos fed to a server connection.
#[test]
fn tls10_and_tls11_client_hellos_are_refused_with_recognisable_errors() {
    let fixture = Fixture::new(false);
    let config = fixture.cache().current(&builtin("tls12")).unwrap();
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256.
    let sig_algs = (0x000d, vec![0, 4, 0x04, 0x03, 0x08, 0x04]);
    // supported_versions: TLS 1.1, TLS 1.0.
    let old_versions = (0x002b, vec![4, 3, 2, 3, 1]);

    // A real TLS 1.0/1.1 client: it sends no signature_algorithms (a TLS 1.2
    // extension), and rustls refuses for that before it looks at versions.
    let (err, alert) = refuse_raw_hello(config.clone(), [3, 1], &[]);
    assert_eq!(
        err,
        rustls::Error::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired)
    );
    assert_eq!(alert, 40, "handshake_failure");
    // With signature_algorithms, a legacy version field alone.
    let (err, alert) = refuse_raw_hello(config.clone(), [3, 2], std::slice::from_ref(&sig_algs));
    assert_eq!(
        err,
        rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered)
    );
    assert_eq!(alert, 70, "protocol_version");
    // supported_versions listing only TLS 1.1 and 1.0.
    let (err, alert) = refuse_raw_hello(config, [3, 2], &[sig_algs, old_versions]);
    assert_eq!(
        err,
        rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled)
    );
    assert_eq!(alert, 70, "protocol_version");
}

/// Feeds one ClientHello record (CBC suites only, as such clients offer) to
/// a server connection; returns its error and the alert it sent.
fn refuse_raw_hello(
    config: Arc<ServerConfig>,
    client_version: [u8; 2],
    extensions: &[(u16, Vec<u8>)],
) -> (rustls::Error, u8) {
    let len16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut body = Vec::new();
    body.extend_from_slice(&client_version);
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // no session id
    // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[0, 4, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[1, 0]); // null compression
    if !extensions.is_empty() {
        let mut all = Vec::new();
        for (kind, data) in extensions {
            all.extend_from_slice(&kind.to_be_bytes());
            all.extend_from_slice(&len16(data.len()));
            all.extend_from_slice(data);
        }
        body.extend_from_slice(&len16(all.len()));
        body.extend_from_slice(&all);
    }
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&len16(handshake.len()));
    record.extend_from_slice(&handshake);

    let mut conn = rustls::ServerConnection::new(config).unwrap();
    conn.read_tls(&mut &record[..]).unwrap();
    let err = conn.process_new_packets().unwrap_err();
    let mut alert = Vec::new();
    conn.write_tls(&mut alert).unwrap();
    // One alert record: type 21, version, length 2, level fatal (2), description.
    assert_eq!((alert.len(), alert[0], alert[5]), (7, 0x15, 2), "{alert:?}");
    (err, alert[6])
}

// ---------------------------------------------------------------------------
// 2. Cipher suites and key exchange (R5, R6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_without_a_suite_of_the_policy_is_refused() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();

    let policy = TlsPolicy::custom(
        "aes128-only",
        "tls13",
        None,
        Some(&strings(&["TLS_AES_128_GCM_SHA256"])),
        None,
    )
    .unwrap();
    let other = fixture
        .client()
        .suites(&[suite_named(CipherSuite::TLS13_AES_256_GCM_SHA384)])
        .build();
    assert_eq!(
        connect(&cache, &policy, &other).await.refused(),
        rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon)
    );
    let same = fixture
        .client()
        .suites(&[suite_named(CipherSuite::TLS13_AES_128_GCM_SHA256)])
        .build();
    let seen = connect(&cache, &policy, &same).await.accepted();
    assert_eq!(seen.suite, CipherSuite::TLS13_AES_128_GCM_SHA256);

    // TLS 1.2, OpenSSL names.
    let policy = TlsPolicy::custom(
        "ecdsa-aes128",
        "tls12",
        Some(&strings(&["TLSv1.2"])),
        Some(&strings(&["ECDHE-ECDSA-AES128-GCM-SHA256"])),
        None,
    )
    .unwrap();
    let other = fixture
        .client()
        .versions(&[TLS12])
        .suites(&[suite_named(
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        )])
        .build();
    assert_eq!(
        connect(&cache, &policy, &other).await.refused(),
        rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon)
    );
    let same = fixture
        .client()
        .versions(&[TLS12])
        .suites(&[suite_named(
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        )])
        .build();
    let seen = connect(&cache, &policy, &same).await.accepted();
    assert_eq!(
        seen.suite,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
}

#[test]
fn builtin_providers_offer_exactly_the_r5_groups_and_ecdhe_aead_suites() {
    let names = [
        "tls12",
        "tls12_strict",
        "tls13",
        "tls_cipher_policy_1_0",
        "tls_cipher_policy_1_1",
        "tls_cipher_policy_1_2",
        "tls_cipher_policy_1_2_strict",
        "tls_cipher_policy_1_2_strict_with_1_3",
    ];
    for name in names {
        let provider = builtin(name).provider();
        let groups: Vec<NamedGroup> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [
                NamedGroup::X25519MLKEM768,
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::secp384r1
            ],
            "{name}"
        );
        for suite in &provider.cipher_suites {
            let text = format!("{:?}", suite.suite());
            assert!(
                (text.starts_with("TLS13_") || text.starts_with("TLS_ECDHE_"))
                    && (text.contains("_GCM_") || text.contains("_CHACHA20_POLY1305_"))
                    && !text.contains("CBC"),
                "{name}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn key_exchange_prefers_the_hybrid_and_stays_within_the_policy() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    use aws_lc_rs::kx_group;

    // A client that offers the hybrid gets it under TLS 1.3 …
    let pq = fixture
        .client()
        .versions(&[TLS13])
        .groups(&[kx_group::X25519MLKEM768, kx_group::X25519])
        .build();
    let seen = connect(&cache, &policy, &pq).await.accepted();
    assert_eq!(seen.group, Some(NamedGroup::X25519MLKEM768));
    // … and X25519 under TLS 1.2, where the hybrid does not exist.
    let pq12 = fixture
        .client()
        .versions(&[TLS12])
        .groups(&[kx_group::X25519MLKEM768, kx_group::X25519])
        .build();
    let seen = connect(&cache, &policy, &pq12).await.accepted();
    assert_eq!(seen.group, Some(NamedGroup::X25519));
    // rustls's default client (X25519 first) gets X25519, a P-384-only one P-384.
    let plain = fixture.client().build();
    let seen = connect(&cache, &policy, &plain).await.accepted();
    assert_eq!(seen.group, Some(NamedGroup::X25519));
    let p384 = fixture.client().groups(&[kx_group::SECP384R1]).build();
    let seen = connect(&cache, &policy, &p384).await.accepted();
    assert_eq!(seen.group, Some(NamedGroup::secp384r1));

    // A narrowed policy refuses a client without a group in common.
    let narrowed =
        TlsPolicy::custom("p384", "tls12", None, None, Some(&strings(&["P-384"]))).unwrap();
    let x25519 = fixture.client().groups(&[kx_group::X25519]).build();
    assert_eq!(
        connect(&cache, &narrowed, &x25519).await.refused(),
        rustls::Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon)
    );
}

// ---------------------------------------------------------------------------
// 3. ALPN (R9)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    type Offer = &'static [&'static [u8]];
    let cases: [(Offer, Option<&[u8]>); 4] = [
        (&[b"h2"], Some(b"h2")),
        (&[b"http/1.1"], Some(b"http/1.1")),
        // Both offered: the server's preference, h2.
        (&[b"http/1.1", b"h2"], Some(b"h2")),
        // No ALPN at all (curl --no-alpn, old clients): HTTP/1.1 by default.
        (&[], None),
    ];
    for (offer, expected) in cases {
        for version in [TLS12, TLS13] {
            let client = fixture.client().versions(&[version]).alpn(offer).build();
            let seen = connect(&cache, &policy, &client).await.accepted();
            assert_eq!(seen.alpn.as_deref(), expected, "{offer:?} {version:?}");
        }
    }
    // Only protocols we do not speak: rustls refuses (RFC 7301 §3.2).
    let client = fixture.client().alpn(&[b"h3"]).build();
    assert_eq!(
        connect(&cache, &policy, &client).await.refused(),
        rustls::Error::NoApplicationProtocol
    );
}

// ---------------------------------------------------------------------------
// 4. Resumption (R9a) and revocation (R4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sessions_resume_under_tls13_and_tls12() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    let clients = [
        (
            "TLS 1.3 ticket",
            fixture.client().versions(&[TLS13]).build(),
        ),
        (
            "TLS 1.2 ticket",
            fixture.client().versions(&[TLS12]).build(),
        ),
        (
            "TLS 1.2 session id",
            fixture
                .client()
                .versions(&[TLS12])
                .tls12_resumption(Tls12Resumption::SessionIdOnly)
                .build(),
        ),
    ];
    for (what, client) in clients {
        let first = connect(&cache, &policy, &client).await.accepted();
        assert_eq!(first.kind, HandshakeKind::Full, "{what}");
        for _ in 0..2 {
            let again = connect(&cache, &policy, &client).await.accepted();
            assert_eq!(again.kind, HandshakeKind::Resumed, "{what}");
        }
    }
}

#[tokio::test]
async fn a_policy_change_keeps_sessions_resumable() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let before = builtin("tls12");
    let client = fixture.client().versions(&[TLS13]).build();
    assert_eq!(
        connect(&cache, &before, &client).await.accepted().kind,
        HandshakeKind::Full
    );
    let after =
        TlsPolicy::custom("narrower", "tls12", None, None, Some(&strings(&["X25519"]))).unwrap();
    let old = cache.current(&before).unwrap();
    let new = cache.current(&after).unwrap();
    assert!(!Arc::ptr_eq(&old, &new), "a new policy is a new config");
    assert!(Arc::ptr_eq(&old.ticketer, &new.ticketer));
    assert!(Arc::ptr_eq(&old.session_storage, &new.session_storage));
    assert_eq!(
        connect(&cache, &after, &client).await.accepted().kind,
        HandshakeKind::Resumed
    );
}

/// R4: after the CRL changes, a client that could resume gets a full
/// handshake (and its certificate is checked against the new CRL).
#[tokio::test]
async fn a_crl_change_ends_resumption_and_refuses_a_revoked_client() {
    for version in [TLS13, TLS12] {
        let fixture = Fixture::new(true);
        let cache = fixture.cache();
        let policy = builtin("tls12");
        let alice = fixture.client_ca().client("alice", KEY, Validity::Normal);
        let bob = fixture.client_ca().client("bob", KEY, Validity::Normal);
        let client = fixture
            .client()
            .versions(&[version])
            .identity(&alice)
            .build();
        let context = format!("{:?}", version.version);

        let first = connect(&cache, &policy, &client).await.accepted();
        assert_eq!(first.kind, HandshakeKind::Full, "{context}");
        assert_eq!(first.peer_leaf, Some(alice.certificate_der()), "{context}");
        let second = connect(&cache, &policy, &client).await.accepted();
        assert_eq!(second.kind, HandshakeKind::Resumed, "{context}");
        assert_eq!(second.peer_leaf, Some(alice.certificate_der()), "{context}");

        // A new CRL that does not list alice: full handshake, accepted, and
        // the new session resumes again.
        let before = cache.current(&policy).unwrap();
        fixture.set_crl(&[&bob]);
        let after = cache.current(&policy).unwrap();
        assert!(!Arc::ptr_eq(&before.ticketer, &after.ticketer), "{context}");
        assert!(
            !Arc::ptr_eq(&before.session_storage, &after.session_storage),
            "{context}"
        );
        let third = connect(&cache, &policy, &client).await.accepted();
        assert_eq!(third.kind, HandshakeKind::Full, "{context}");
        let fourth = connect(&cache, &policy, &client).await.accepted();
        assert_eq!(fourth.kind, HandshakeKind::Resumed, "{context}");

        // A CRL that revokes alice: her session is not resumable and her
        // certificate is refused.
        fixture.set_crl(&[&alice, &bob]);
        let err = connect(&cache, &policy, &client).await.refused();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Revoked),
            "{context}"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. Fail closed (R3) and what needs no rebuild
// ---------------------------------------------------------------------------

#[tokio::test]
async fn mutual_auth_with_a_ca_not_in_the_store_fails_closed() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    assert!(cache.current(&policy).is_ok(), "one-way TLS works");

    fixture.bind(Some("nowhere"));
    let err = cache.current(&policy).unwrap_err();
    assert!(err.contains("\"web\""), "{err}");
    assert!(err.contains("mutual authentication"), "{err}");
    assert!(err.contains("nowhere"), "{err}");
}

#[tokio::test]
async fn mutual_auth_fails_closed_when_its_ca_disappears() {
    let fixture = Fixture::new(true);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    let alice = fixture.client_ca().client("alice", KEY, Validity::Normal);
    let client = fixture.client().identity(&alice).build();
    connect(&cache, &policy, &client).await.accepted();
    // Without a client certificate: refused (required mode).
    let anonymous = fixture.client().build();
    assert_eq!(
        connect(&cache, &policy, &anonymous).await.refused(),
        rustls::Error::NoCertificatesPresented
    );

    fs::remove_dir_all(fixture.dir.path().join("ca").join("corp")).unwrap();
    fixture.store.rescan();
    let err = cache.current(&policy).unwrap_err();
    assert!(err.contains("mutual authentication"), "{err}");
    assert!(err.contains("corp"), "{err}");
}

#[test]
fn a_listener_without_material_cannot_serve() {
    let fixture = Fixture::new(false);
    let policy = builtin("tls12");

    let err = TlsConfigCache::new("other", fixture.store.clone())
        .current(&policy)
        .unwrap_err();
    assert!(err.contains("\"other\""), "{err}");

    fixture.store.set_bindings(vec![Binding {
        listener: LISTENER.into(),
        certificates: vec![name("absent")],
        client_auth: None,
    }]);
    let err = fixture.cache().current(&policy).unwrap_err();
    assert!(err.contains("none of its server certificates"), "{err}");
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn unchanged_inputs_return_the_same_config() {
    let fixture = Fixture::new(true);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    let first = cache.current(&policy).unwrap();
    assert!(Arc::ptr_eq(&first, &cache.current(&policy).unwrap()));
    // An equal policy built separately (a config reload) is the same key.
    assert!(Arc::ptr_eq(
        &first,
        &cache.current(&builtin("tls12")).unwrap()
    ));
    // Another certificate arriving in the store is not a reason to rebuild.
    let other = TestPki::now_real().server_chain(&["other.test"], KEY);
    let folder = fixture.dir.path().join("server").join("other");
    write(&folder.join("cert.pem"), &other.pem_leaf_first());
    write(&folder.join("key.pem"), &other.leaf.key().pkcs8_pem());
    assert_eq!(fixture.store.rescan(), 1);
    assert!(fixture.store.snapshot().server(&name("other")).is_some());
    assert!(Arc::ptr_eq(&first, &cache.current(&policy).unwrap()));

    assert_eq!(
        first.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()]
    );
    assert_eq!(first.max_early_data_size, 0);
    assert!(!first.ignore_client_order);
    assert!(first.ticketer.enabled());
    assert!(first.session_storage.can_cache());
}

#[tokio::test]
async fn a_server_certificate_swap_needs_no_rebuild() {
    let fixture = Fixture::new(false);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    let config = cache.current(&policy).unwrap();

    // A renewal from the same CA, as a certificate replacement would be.
    let renewed = fixture
        .server
        .intermediate
        .server(&["localhost"], KEY, Validity::Normal);
    let folder = fixture.dir.path().join("server").join("www");
    let pem = [
        renewed.cert_pem(),
        fixture.server.intermediate.cert().cert_pem(),
    ]
    .concat();
    write(&folder.join("cert.pem"), &pem);
    write(&folder.join("key.pem"), &renewed.key().pkcs8_pem());
    fixture.store.reload_folder(CertKind::Server, "www");

    assert!(Arc::ptr_eq(&config, &cache.current(&policy).unwrap()));
    let client = fixture.client().build();
    let seen = connect(&cache, &policy, &client).await.client.unwrap();
    assert_eq!(seen.peer_leaf, Some(renewed.certificate_der()));
}

#[test]
fn concurrent_callers_share_one_build() {
    let fixture = Fixture::new(true);
    let cache = fixture.cache();
    let policy = builtin("tls12");
    let configs: Vec<Arc<ServerConfig>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| cache.current(&policy).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for config in &configs {
        assert!(Arc::ptr_eq(config, &configs[0]));
    }
}
