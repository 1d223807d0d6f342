//! Certificate selection in whole TLS handshakes, in memory (R7, R8): a
//! rustls client over `tokio::io::duplex` to a rustls server whose resolver
//! is an `SniIndex` (or the store's own `StoreResolver`), asserting which
//! leaf the server sent.
//!
//! Certificates are made at the real current time: a rustls client checks
//! validity against the system clock, so fixed-time certificates would rot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{
    CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime, alg_id,
};
use tlsgate_cert_store::{
    Binding, CertKind, CertificateName, ServerCert, SniIndex, Store, StoreConfig, StoreResolver,
    folder_path,
};
use tlsgate_test_pki::{Chain, KeyKind, TestPki};
use tlsgate_validator::Summary;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A server certificate and the leaf it must put on the wire.
struct Served {
    chain: Chain,
    entry: Arc<ServerCert>,
}

impl Served {
    /// A chain for `sans` (DNS names and IP addresses) with `kind` keys.
    fn new(sans: &[&str], kind: KeyKind) -> Served {
        let chain = TestPki::now_real().server_chain(sans, kind);
        let key = aws_lc_rs::sign::any_supported_type(&chain.leaf.key().private_key_der()).unwrap();
        let certified = CertifiedKey::new(
            vec![
                chain.leaf.certificate_der(),
                chain.intermediate.cert().certificate_der(),
            ],
            key,
        );
        let entry = Arc::new(ServerCert {
            name: CertificateName::parse(sans[0]).unwrap(),
            certified: Arc::new(certified),
            summary: summary(sans),
            is_ecdsa: kind.is_ecdsa(),
            // As the loader does: IP addresses are not SNI names.
            dns_names: sans
                .iter()
                .filter(|san| san.parse::<IpAddr>().is_err())
                .map(|san| san.to_ascii_lowercase())
                .collect(),
            warnings: Vec::new(),
            folder: PathBuf::new(),
            ocsp_next_update: None,
        });
        Served { chain, entry }
    }

    fn leaf(&self) -> CertificateDer<'static> {
        self.chain.leaf.certificate_der()
    }
}

/// `select` never reads the summary; the fields only need to exist.
fn summary(sans: &[&str]) -> Summary {
    Summary {
        subject: format!("CN={}", sans[0]),
        issuer: String::new(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        not_before: 0,
        not_after: 0,
        key_algorithm: String::new(),
        chain_length: 2,
        sha256_fingerprint: String::new(),
        serial: String::new(),
    }
}

/// The smallest resolver around an index, standing in for a snapshot.
#[derive(Debug)]
struct IndexResolver(SniIndex);

impl ResolvesServerCert for IndexResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let client = tlsgate_cert_store::ClientCapabilities::from_hello(&hello);
        self.0.select(hello.server_name(), &client)
    }
}

fn index_resolver(served: &[&Served]) -> Arc<dyn ResolvesServerCert> {
    let certs: Vec<Arc<ServerCert>> = served.iter().map(|s| s.entry.clone()).collect();
    Arc::new(IndexResolver(SniIndex::build(&certs)))
}

/// A client trusting every chain's root, with `provider` and `versions`.
fn client(
    served: &[&Served],
    provider: CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(served))
        .with_no_client_auth()
}

fn roots(served: &[&Served]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for s in served {
        roots.add(s.chain.root.cert().certificate_der()).unwrap();
    }
    roots
}

/// A client that fully verifies the server's chain, but against `expected`
/// instead of the name it sends as SNI: lets a test ask for a name the
/// server has no certificate for and still see the default it gets back.
fn client_expecting(served: &[&Served], expected: &str) -> ClientConfig {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(served)), provider)
        .build()
        .unwrap();
    let mut config = default_client(served);
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(ExpectName {
            inner,
            expected: ServerName::try_from(expected.to_owned()).unwrap(),
        }));
    config
}

#[derive(Debug)]
struct ExpectName {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn default_client(served: &[&Served]) -> ClientConfig {
    client(
        served,
        aws_lc_rs::default_provider(),
        rustls::DEFAULT_VERSIONS,
    )
}

/// RSA signature schemes only. rustls clients offer exactly the schemes
/// their verifier supports, and the verifier's come from the provider.
fn rsa_only_provider() -> CryptoProvider {
    const RSA_SCHEMES: [SignatureScheme; 6] = [
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA512,
        SignatureScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512,
    ];
    let base = aws_lc_rs::default_provider();
    let algorithms = base.signature_verification_algorithms;
    let all: Vec<&'static dyn SignatureVerificationAlgorithm> = algorithms
        .all
        .iter()
        .copied()
        .filter(|alg| alg.public_key_alg_id() == alg_id::RSA_ENCRYPTION)
        .collect();
    let mapping: Vec<_> = algorithms
        .mapping
        .iter()
        .copied()
        .filter(|(scheme, _)| RSA_SCHEMES.contains(scheme))
        .collect();
    CryptoProvider {
        // Leaked once per test: the provider wants 'static tables.
        signature_verification_algorithms: WebPkiSupportedAlgorithms {
            all: all.leak(),
            mapping: mapping.leak(),
        },
        ..base
    }
}

/// TLS 1.2 offering exactly `suite` (with every signature scheme).
fn tls12_client(served: &[&Served], suite: rustls::SupportedCipherSuite) -> ClientConfig {
    let provider = CryptoProvider {
        cipher_suites: vec![suite],
        ..aws_lc_rs::default_provider()
    };
    client(served, provider, &[&rustls::version::TLS12])
}

/// What the client saw: the leaf the server sent and the version.
struct Seen {
    leaf: CertificateDer<'static>,
    version: ProtocolVersion,
}

/// One handshake; `server_name` is a DNS name (sent as SNI) or an IP
/// address (no SNI).
async fn handshake(
    resolver: Arc<dyn ResolvesServerCert>,
    client: ClientConfig,
    server_name: &str,
) -> Result<Seen, std::io::Error> {
    let server = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    let server_name = ServerName::try_from(server_name.to_owned()).unwrap();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(Arc::new(client));
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let (client_side, server_side) = tokio::join!(
        connector.connect(server_name, client_io),
        acceptor.accept(server_io)
    );
    let stream = client_side?;
    server_side?;
    let (_, conn) = stream.get_ref();
    Ok(Seen {
        leaf: conn.peer_certificates().unwrap()[0].clone(),
        version: conn.protocol_version().unwrap(),
    })
}

async fn leaf_for(
    resolver: &Arc<dyn ResolvesServerCert>,
    client: ClientConfig,
    name: &str,
) -> CertificateDer<'static> {
    handshake(resolver.clone(), client, name)
        .await
        .unwrap_or_else(|err| panic!("handshake for {name}: {err}"))
        .leaf
}

#[tokio::test]
async fn sni_selects_exact_then_wildcard_then_default() {
    let default = Served::new(&["default.example.net", "127.0.0.1"], KeyKind::EcdsaP256);
    let www = Served::new(&["www.example.com"], KeyKind::EcdsaP256);
    let wildcard = Served::new(&["*.example.com"], KeyKind::EcdsaP256);
    let all = [&default, &wildcard, &www];
    let resolver = index_resolver(&all);
    let client = || default_client(&all);

    // Exact; it beats the wildcard, which also covers the name and comes
    // first in the list.
    assert_eq!(
        leaf_for(&resolver, client(), "www.example.com").await,
        www.leaf()
    );
    // Wildcard.
    assert_eq!(
        leaf_for(&resolver, client(), "a.example.com").await,
        wildcard.leaf()
    );
    // No SNI at all (rustls never sends an IP address as SNI): default.
    assert_eq!(
        leaf_for(&resolver, client(), "127.0.0.1").await,
        default.leaf()
    );
    // SNI switched off in the client, name still verified: default.
    let mut no_sni = client();
    no_sni.enable_sni = false;
    assert_eq!(
        leaf_for(&resolver, no_sni, "default.example.net").await,
        default.leaf()
    );
}

#[tokio::test]
async fn unknown_sni_gets_the_default() {
    let default = Served::new(&["default.example.net"], KeyKind::EcdsaP256);
    let www = Served::new(&["www.example.com"], KeyKind::EcdsaP256);
    let wildcard = Served::new(&["*.example.com"], KeyKind::EcdsaP256);
    let all = [&default, &www, &wildcard];
    let resolver = index_resolver(&all);
    for sni in ["unknown.example.org", "example.com", "a.b.example.com"] {
        let client = client_expecting(&all, "default.example.net");
        assert_eq!(
            leaf_for(&resolver, client, sni).await,
            default.leaf(),
            "{sni}"
        );
    }
    // Without the stand-in verifier a normal client refuses the default,
    // since it does not name the host.
    assert!(
        handshake(
            resolver.clone(),
            default_client(&all),
            "unknown.example.org"
        )
        .await
        .is_err()
    );
}

/// The RSA-only client really offers only RSA schemes, so the dual tests
/// below mean what they say.
#[test]
fn rsa_only_client_offers_only_rsa_schemes() {
    let served = Served::new(&["x.example.com"], KeyKind::EcdsaP256);
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(&[&served])),
        Arc::new(rsa_only_provider()),
    )
    .build()
    .unwrap();
    let schemes = verifier.supported_verify_schemes();
    assert!(!schemes.is_empty());
    assert!(
        schemes.iter().all(|s| format!("{s:?}").starts_with("RSA_")),
        "{schemes:?}"
    );
}

#[tokio::test]
async fn dual_certificates_follow_the_client() {
    let default = Served::new(&["default.example.net"], KeyKind::EcdsaP256);
    let rsa = Served::new(&["dual.example.com"], KeyKind::Rsa2048);
    let ecdsa = Served::new(&["dual.example.com"], KeyKind::EcdsaP256);
    // RSA first in the list: the choice must come from the client, not the order.
    let all = [&default, &rsa, &ecdsa];
    let resolver = index_resolver(&all);

    // rustls' defaults offer ECDSA and TLS 1.3.
    assert_eq!(
        leaf_for(&resolver, default_client(&all), "dual.example.com").await,
        ecdsa.leaf()
    );
    // Only RSA signature schemes offered.
    let rsa_client = client(&all, rsa_only_provider(), rustls::DEFAULT_VERSIONS);
    assert_eq!(
        leaf_for(&resolver, rsa_client, "dual.example.com").await,
        rsa.leaf()
    );

    // TLS 1.2 with only an ECDHE-RSA suite: RSA, although ECDSA schemes are
    // offered. (rustls itself already drops from the schemes it shows the
    // resolver those that no suite common to client and server can use, so
    // this handshake passes even without `from_hello`'s suite rule; the unit
    // test `capabilities_from_offer` covers that rule on its own.)
    let tls12_rsa = tls12_client(
        &all,
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    );
    let seen = handshake(resolver.clone(), tls12_rsa, "dual.example.com")
        .await
        .unwrap();
    assert_eq!(seen.version, ProtocolVersion::TLSv1_2);
    assert_eq!(seen.leaf, rsa.leaf());

    // TLS 1.2 with only an ECDHE-ECDSA suite: ECDSA.
    let tls12_ecdsa = tls12_client(
        &all,
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    );
    let seen = handshake(resolver.clone(), tls12_ecdsa, "dual.example.com")
        .await
        .unwrap();
    assert_eq!(seen.version, ProtocolVersion::TLSv1_2);
    assert_eq!(seen.leaf, ecdsa.leaf());
}

#[tokio::test]
async fn one_key_type_is_served_to_every_client() {
    let default = Served::new(&["default.example.net"], KeyKind::EcdsaP256);
    let rsa = Served::new(&["rsa.example.com"], KeyKind::Rsa2048);
    let all = [&default, &rsa];
    let resolver = index_resolver(&all);
    assert_eq!(
        leaf_for(&resolver, default_client(&all), "rsa.example.com").await,
        rsa.leaf()
    );
    // An RSA-only client reaching an ECDSA-only name is sent the ECDSA
    // certificate and cannot verify it: the handshake fails on its side,
    // which is the honest outcome.
    let rsa_client = client(&all, rsa_only_provider(), rustls::DEFAULT_VERSIONS);
    assert!(
        handshake(resolver.clone(), rsa_client, "default.example.net")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dual_default_without_sni() {
    let ecdsa = Served::new(&["site.example.com", "127.0.0.1"], KeyKind::EcdsaP256);
    let rsa = Served::new(&["site.example.com", "127.0.0.1"], KeyKind::Rsa2048);
    let all = [&ecdsa, &rsa];
    let resolver = index_resolver(&all);
    assert_eq!(
        leaf_for(&resolver, default_client(&all), "127.0.0.1").await,
        ecdsa.leaf()
    );
    let rsa_client = client(&all, rsa_only_provider(), rustls::DEFAULT_VERSIONS);
    assert_eq!(
        leaf_for(&resolver, rsa_client, "127.0.0.1").await,
        rsa.leaf()
    );
}

/// The store's resolver end to end: files on disk, bindings, a reload.
#[tokio::test]
async fn store_resolver_serves_the_current_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, chain: &Chain| {
        let name = CertificateName::parse(name).unwrap();
        let folder = folder_path(dir.path(), CertKind::Server, &name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("cert.pem"), chain.pem_leaf_first()).unwrap();
        std::fs::write(folder.join("key.pem"), chain.leaf.key().pkcs8_pem()).unwrap();
    };
    let default = Served::new(&["default.example.net"], KeyKind::EcdsaP256);
    let www = Served::new(&["www.example.com"], KeyKind::EcdsaP256);
    write("default", &default.chain);
    write("www", &www.chain);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let resolver: Arc<dyn ResolvesServerCert> =
        Arc::new(StoreResolver::new(store.shared(), "public"));

    // No binding for the listener yet: no certificate, the handshake fails closed.
    assert!(
        handshake(
            resolver.clone(),
            default_client(&[&default, &www]),
            "www.example.com"
        )
        .await
        .is_err()
    );

    store.set_bindings(vec![Binding {
        listener: "public".to_owned(),
        certificates: vec![
            CertificateName::parse("default").unwrap(),
            CertificateName::parse("www").unwrap(),
        ],
        client_auth: None,
    }]);
    let all = [&default, &www];
    assert_eq!(
        leaf_for(&resolver, default_client(&all), "www.example.com").await,
        www.leaf()
    );
    assert_eq!(
        leaf_for(&resolver, default_client(&all), "default.example.net").await,
        default.leaf()
    );

    // Replace `www` on disk: the next handshake gets the new one.
    let renewed = Served::new(&["www.example.com"], KeyKind::EcdsaP384);
    write("www", &renewed.chain);
    store.rescan();
    let all = [&default, &renewed];
    assert_eq!(
        leaf_for(&resolver, default_client(&all), "www.example.com").await,
        renewed.leaf()
    );
}
