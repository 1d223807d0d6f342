//! Mutual TLS through [`build_verifier`] (SPEC R3, R4): real rustls
//! handshakes in memory, each case under TLS 1.3 and TLS 1.2, asserting who
//! refused and why — the server-side rustls error is what the listener logs,
//! the alert is what the client sees.
//!
//! Certificates come from `tlsgate-test-pki` at the real "now", because
//! rustls checks validity against the system clock during the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig,
    SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tlsgate_cert_store::{
    CaCert, CertificateName, ClientAuthMode, ClientAuthPolicy, CrlScope, ExpiredCrlPolicy,
    build_verifier,
};
use tlsgate_test_pki::{Ca, Issued, KeyKind, TestPki, Validity, pem};
use tlsgate_validator::{Source, Summary, check_crls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

// ---------------------------------------------------------------------------
// Handshake plumbing
// ---------------------------------------------------------------------------

/// Every case runs under both versions: TLS 1.3 reports a client-auth
/// refusal only after the client's handshake "completed", TLS 1.2 during it.
const VERSIONS: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

const KEY: KeyKind = KeyKind::EcdsaP256;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The listener's own certificate, from a root only the test client trusts.
struct Server {
    root: Ca,
    leaf: Issued,
}

impl Server {
    fn new(pki: &TestPki) -> Self {
        let root = pki.root("server root", KEY);
        let leaf = root.server(&["localhost"], KEY, Validity::Normal);
        Server { root, leaf }
    }
}

/// What a client presents: its chain (leaf first) and key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// `leaf`, followed by the intermediates a client sends along.
    fn new(leaf: &Issued, intermediates: &[&Ca]) -> Self {
        let mut chain = vec![leaf.certificate_der()];
        chain.extend(intermediates.iter().map(|ca| ca.cert().certificate_der()));
        Identity {
            chain,
            key: leaf.key().private_key_der(),
        }
    }
}

/// A CA bundle as the store would load it: `cas` in `ca.pem`, `crls` (DER)
/// in `crl.pem`, the CRLs checked by the validator like the store does.
fn ca_cert(cas: &[&Ca], crls: &[Vec<u8>]) -> CaCert {
    let certs: Vec<CertificateDer<'static>> =
        cas.iter().map(|ca| ca.cert().certificate_der()).collect();
    let crls = if crls.is_empty() {
        Vec::new()
    } else {
        let crl_pem: String = crls.iter().map(|der| pem("X509 CRL", der)).collect();
        let ders: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
        check_crls(
            &Source {
                name: "crl.pem",
                bytes: crl_pem.as_bytes(),
            },
            &ders,
        )
        .expect("the validator accepts the test CRLs")
    };
    let first = cas.first().expect("at least one CA");
    CaCert {
        name: CertificateName::parse("clients").unwrap(),
        certs,
        crls,
        summary: Summary {
            subject: format!("CN={}", first.common_name()),
            issuer: format!("CN={}", first.common_name()),
            sans: Vec::new(),
            not_before: first.now_unix() - 86_400,
            not_after: first.now_unix() + 365 * 86_400,
            key_algorithm: "ECDSA P-256".to_owned(),
            chain_length: cas.len(),
            sha256_fingerprint: String::new(),
            serial: String::new(),
        },
        not_after: first.now_unix() + 365 * 86_400,
        warnings: Vec::new(),
        folder: PathBuf::from("/store/ca/clients"),
    }
}

fn policy(
    mode: ClientAuthMode,
    crl_scope: CrlScope,
    expired_crl: ExpiredCrlPolicy,
) -> ClientAuthPolicy {
    ClientAuthPolicy {
        mode,
        crl_scope,
        expired_crl,
    }
}

/// The defaults: required, whole chain, stale CRLs enforced.
fn required() -> ClientAuthPolicy {
    ClientAuthPolicy::default()
}

fn optional() -> ClientAuthPolicy {
    policy(
        ClientAuthMode::Optional,
        CrlScope::Chain,
        ExpiredCrlPolicy::Enforce,
    )
}

/// What each side of one handshake saw. `Ok` on the client means it also
/// read the byte the server wrote after its handshake.
#[derive(Debug)]
struct Outcome {
    server: Result<(), io::Error>,
    client: Result<(), io::Error>,
}

/// The rustls error inside a tokio-rustls I/O error, if it is one.
fn tls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

async fn handshake(
    version: &'static SupportedProtocolVersion,
    verifier: Arc<dyn ClientCertVerifier>,
    server: &Server,
    client: Option<&Identity>,
) -> Outcome {
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.leaf.certificate_der()],
            server.leaf.key().private_key_der(),
        )
        .unwrap();
    let mut server_roots = RootCertStore::empty();
    server_roots
        .add(server.root.cert().certificate_der())
        .unwrap();
    let client_builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(server_roots);
    let client_config = match client {
        Some(identity) => client_builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .unwrap(),
        None => client_builder.with_no_client_auth(),
    };

    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let connector = TlsConnector::from(Arc::new(client_config));
    let server_side = async move {
        let mut tls = acceptor.accept(server_io).await?;
        tls.write_all(b"!").await?;
        tls.flush().await?;
        // Returned, not dropped, so the connection stays open until the
        // client has read the byte.
        Ok::<_, io::Error>(tls)
    };
    let client_side = async move {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, client_io).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        assert_eq!(&byte, b"!");
        Ok::<_, io::Error>(())
    };
    let (server_result, client_result) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(server_side, client_side)
    })
    .await
    .expect("the handshake finishes within 10 s");
    Outcome {
        server: server_result.map(drop),
        client: client_result,
    }
}

/// Both versions: the handshake completes and data flows.
async fn assert_accepted(
    server: &Server,
    ca: &CaCert,
    policy: ClientAuthPolicy,
    client: Option<&Identity>,
) {
    let verifier = build_verifier(ca, &policy).unwrap();
    for version in VERSIONS {
        let outcome = handshake(version, verifier.clone(), server, client).await;
        assert!(
            outcome.server.is_ok() && outcome.client.is_ok(),
            "{:?} with {policy:?}: expected the client to be accepted, got {outcome:?}",
            version.version
        );
    }
}

/// Both versions: the server refuses with an error `server_saw` accepts, and
/// the client receives `alert`.
async fn assert_refused(
    server: &Server,
    ca: &CaCert,
    policy: ClientAuthPolicy,
    client: Option<&Identity>,
    server_saw: fn(&rustls::Error) -> bool,
    alert: AlertDescription,
) {
    let verifier = build_verifier(ca, &policy).unwrap();
    for version in VERSIONS {
        let outcome = handshake(version, verifier.clone(), server, client).await;
        let context = format!("{:?} with {policy:?}: {outcome:?}", version.version);
        let server_error = outcome
            .server
            .as_ref()
            .err()
            .and_then(tls_error)
            .unwrap_or_else(|| panic!("expected a TLS error on the server, {context}"));
        assert!(
            server_saw(server_error),
            "unexpected server error, {context}"
        );
        let client_error = outcome
            .client
            .as_ref()
            .err()
            .and_then(tls_error)
            .unwrap_or_else(|| panic!("expected a TLS alert on the client, {context}"));
        assert_eq!(
            client_error,
            &rustls::Error::AlertReceived(alert),
            "unexpected client error, {context}"
        );
    }
}

// The server-side reasons the listener will log, one matcher each.

fn no_certificate(err: &rustls::Error) -> bool {
    matches!(err, rustls::Error::NoCertificatesPresented)
}

fn unknown_issuer(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    )
}

fn revoked(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    )
}

fn expired(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
    )
}

fn crl_expired(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::ExpiredRevocationListContext { .. })
    )
}

fn wrong_purpose(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurposeContext { .. })
    )
}

// ---------------------------------------------------------------------------
// 1. Required mode (R3)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn required_mode_refuses_a_client_without_certificate() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let ca = ca_cert(&[&root], &[]);
    // rustls sends TLS 1.3's certificate_required alert under TLS 1.2 too.
    assert_refused(
        &server,
        &ca,
        required(),
        None,
        no_certificate,
        AlertDescription::CertificateRequired,
    )
    .await;
}

#[tokio::test]
async fn required_mode_accepts_a_valid_client() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let client = Identity::new(&root.client("alice", KEY, Validity::Normal), &[]);
    assert_accepted(&server, &ca_cert(&[&root], &[]), required(), Some(&client)).await;
}

#[tokio::test]
async fn required_mode_refuses_a_client_of_another_ca() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let stranger = pki.root("other root", KEY);
    let client = Identity::new(&stranger.client("mallory", KEY, Validity::Normal), &[]);
    assert_refused(
        &server,
        &ca_cert(&[&root], &[]),
        required(),
        Some(&client),
        unknown_issuer,
        AlertDescription::UnknownCA,
    )
    .await;
}

#[tokio::test]
async fn required_mode_refuses_an_expired_client() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let client = Identity::new(&root.client("old", KEY, Validity::Expired), &[]);
    assert_refused(
        &server,
        &ca_cert(&[&root], &[]),
        required(),
        Some(&client),
        expired,
        AlertDescription::CertificateExpired,
    )
    .await;
}

#[tokio::test]
async fn required_mode_refuses_a_server_certificate_used_as_client() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    // Issued by the trusted CA, but for serverAuth only.
    let client = Identity::new(
        &root.server(&["client.example"], KEY, Validity::Normal),
        &[],
    );
    assert_refused(
        &server,
        &ca_cert(&[&root], &[]),
        required(),
        Some(&client),
        wrong_purpose,
        AlertDescription::UnsupportedCertificate,
    )
    .await;
}

// ---------------------------------------------------------------------------
// 2. Optional mode (R3)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn optional_mode_accepts_a_client_without_certificate() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    assert_accepted(&server, &ca_cert(&[&root], &[]), optional(), None).await;
}

#[tokio::test]
async fn optional_mode_accepts_a_valid_client() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let client = Identity::new(&root.client("alice", KEY, Validity::Normal), &[]);
    assert_accepted(&server, &ca_cert(&[&root], &[]), optional(), Some(&client)).await;
}

#[tokio::test]
async fn optional_mode_still_refuses_a_client_of_another_ca() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let stranger = pki.root("other root", KEY);
    let client = Identity::new(&stranger.client("mallory", KEY, Validity::Normal), &[]);
    assert_refused(
        &server,
        &ca_cert(&[&root], &[]),
        optional(),
        Some(&client),
        unknown_issuer,
        AlertDescription::UnknownCA,
    )
    .await;
}

#[tokio::test]
async fn optional_mode_still_refuses_a_revoked_client() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let bad = root.client("bob", KEY, Validity::Normal);
    let ca = ca_cert(&[&root], &[root.crl_der(&[bad.serial()], 7)]);
    assert_refused(
        &server,
        &ca,
        optional(),
        Some(&Identity::new(&bad, &[])),
        revoked,
        AlertDescription::CertificateRevoked,
    )
    .await;
}

// ---------------------------------------------------------------------------
// 3. CRLs (R4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn crl_refuses_a_revoked_client_and_accepts_the_others() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let bad = root.client("bob", KEY, Validity::Normal);
    let good = root.client("alice", KEY, Validity::Normal);
    let ca = ca_cert(&[&root], &[root.crl_der(&[bad.serial()], 7)]);
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&Identity::new(&bad, &[])),
        revoked,
        AlertDescription::CertificateRevoked,
    )
    .await;
    assert_accepted(&server, &ca, required(), Some(&Identity::new(&good, &[]))).await;
}

#[tokio::test]
async fn crl_scope_decides_whether_a_revoked_intermediate_counts() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let intermediate = root.intermediate("client intermediate", KEY);
    let leaf = intermediate.client("carol", KEY, Validity::Normal);
    let client = Identity::new(&leaf, &[&intermediate]);
    // The root's CRL revokes the intermediate; the intermediate has no CRL,
    // which is not an error (the leaf's status is "unknown").
    let ca = ca_cert(
        &[&root],
        &[root.crl_der(&[intermediate.cert().serial()], 7)],
    );

    let leaf_only = policy(
        ClientAuthMode::Required,
        CrlScope::Leaf,
        ExpiredCrlPolicy::Enforce,
    );
    assert_accepted(&server, &ca, leaf_only, Some(&client)).await;
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&client),
        revoked,
        AlertDescription::CertificateRevoked,
    )
    .await;
}

#[tokio::test]
async fn a_ca_in_the_chain_without_a_crl_is_not_an_error() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let intermediate = root.intermediate("client intermediate", KEY);
    let someone = root.client("someone else", KEY, Validity::Normal);
    let leaf = intermediate.client("carol", KEY, Validity::Normal);
    // The root has a CRL (not listing the intermediate), the intermediate none.
    let ca = ca_cert(&[&root], &[root.crl_der(&[someone.serial()], 7)]);
    assert_accepted(
        &server,
        &ca,
        required(),
        Some(&Identity::new(&leaf, &[&intermediate])),
    )
    .await;
}

#[tokio::test]
async fn a_revoked_intermediate_in_the_bundle_is_not_trusted_as_a_root() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let intermediate = root.intermediate("client intermediate", KEY);
    let leaf = intermediate.client("carol", KEY, Validity::Normal);
    // Bundle = root + intermediate, and the root's CRL revokes the
    // intermediate. rustls never checks a trust anchor's revocation, so
    // build_verifier must leave the intermediate out of the anchors.
    let ca = ca_cert(
        &[&root, &intermediate],
        &[root.crl_der(&[intermediate.cert().serial()], 7)],
    );
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&Identity::new(&leaf, &[&intermediate])),
        revoked,
        AlertDescription::CertificateRevoked,
    )
    .await;
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&Identity::new(&leaf, &[])),
        unknown_issuer,
        AlertDescription::UnknownCA,
    )
    .await;
    // Leaf scope ignores the intermediate's revocation, wherever it sits.
    let leaf_only = policy(
        ClientAuthMode::Required,
        CrlScope::Leaf,
        ExpiredCrlPolicy::Enforce,
    );
    assert_accepted(&server, &ca, leaf_only, Some(&Identity::new(&leaf, &[]))).await;
}

#[tokio::test]
async fn a_stale_crl_before_a_fresh_one_does_not_hide_its_revocations() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let bad = root.client("bob", KEY, Validity::Normal);
    let good = root.client("alice", KEY, Validity::Normal);
    // crl.pem holds last week's CRL (nothing revoked, expired) first, then
    // today's. webpki consults only the first CRL of an issuer.
    let stale = root.crl_der(&[], -2);
    let fresh = root.crl_der(&[bad.serial()], 7);
    let ca = ca_cert(&[&root], &[stale, fresh]);
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&Identity::new(&bad, &[])),
        revoked,
        AlertDescription::CertificateRevoked,
    )
    .await;
    // And under reject-all the stale one does not shut everybody out.
    let strict = policy(
        ClientAuthMode::Required,
        CrlScope::Chain,
        ExpiredCrlPolicy::RejectAll,
    );
    assert_accepted(&server, &ca, strict, Some(&Identity::new(&good, &[]))).await;
}

// ---------------------------------------------------------------------------
// 4. Expired CRLs (R4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_crl_is_still_enforced_by_default() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let bad = root.client("bob", KEY, Validity::Normal);
    let good = root.client("alice", KEY, Validity::Normal);
    let ca = ca_cert(&[&root], &[root.crl_der(&[bad.serial()], -1)]);
    assert!(
        ca.crls[0].next_update.unwrap() < pki.now_unix(),
        "the CRL is expired"
    );
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&Identity::new(&bad, &[])),
        revoked,
        AlertDescription::CertificateRevoked,
    )
    .await;
    assert_accepted(&server, &ca, required(), Some(&Identity::new(&good, &[]))).await;
}

#[tokio::test]
async fn reject_all_refuses_every_client_while_the_crl_is_expired() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let root = pki.root("client root", KEY);
    let bad = root.client("bob", KEY, Validity::Normal);
    let good = root.client("alice", KEY, Validity::Normal);
    let strict = policy(
        ClientAuthMode::Required,
        CrlScope::Chain,
        ExpiredCrlPolicy::RejectAll,
    );

    let expired_crl = ca_cert(&[&root], &[root.crl_der(&[bad.serial()], -1)]);
    for client in [&good, &bad] {
        assert_refused(
            &server,
            &expired_crl,
            strict,
            Some(&Identity::new(client, &[])),
            crl_expired,
            // rustls follows OpenSSL here: stale revocation data is "unknown CA".
            AlertDescription::UnknownCA,
        )
        .await;
    }

    // A fresh CRL lets the good client back in.
    let fresh_crl = ca_cert(&[&root], &[root.crl_der(&[bad.serial()], 7)]);
    assert_accepted(
        &server,
        &fresh_crl,
        strict,
        Some(&Identity::new(&good, &[])),
    )
    .await;
}

// ---------------------------------------------------------------------------
// 5. Bundles of several CAs (R3)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_bundle_of_two_roots_accepts_clients_of_either() {
    let pki = TestPki::now_real();
    let server = Server::new(&pki);
    let first = pki.root("first client root", KEY);
    let second = pki.root("second client root", KEY);
    let third = pki.root("third client root", KEY);
    let ca = ca_cert(&[&first, &second], &[]);
    for root in [&first, &second] {
        let client = Identity::new(&root.client("alice", KEY, Validity::Normal), &[]);
        assert_accepted(&server, &ca, required(), Some(&client)).await;
    }
    let stranger = Identity::new(&third.client("mallory", KEY, Validity::Normal), &[]);
    assert_refused(
        &server,
        &ca,
        required(),
        Some(&stranger),
        unknown_issuer,
        AlertDescription::UnknownCA,
    )
    .await;

    // The CertificateRequest names both roots, so clients pick the right cert.
    let verifier = build_verifier(&ca, &required()).unwrap();
    assert_eq!(verifier.root_hint_subjects().len(), 2);
    assert!(verifier.client_auth_mandatory());
}

// ---------------------------------------------------------------------------
// Builder errors and defaults
// ---------------------------------------------------------------------------

#[test]
fn an_empty_bundle_is_an_invalid_ca() {
    let pki = TestPki::now_real();
    let root = pki.root("client root", KEY);
    let mut ca = ca_cert(&[&root], &[]);
    ca.certs.clear();
    let err = build_verifier(&ca, &required()).expect_err("refused");
    assert_eq!(err.code(), "InvalidCertificateFormat");
    assert!(
        matches!(
            err,
            tlsgate_cert_store::Error::Invalid {
                kind: tlsgate_cert_store::CertKind::Ca,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_certificate_rustls_cannot_parse_is_an_invalid_ca() {
    let pki = TestPki::now_real();
    let root = pki.root("client root", KEY);
    let mut ca = ca_cert(&[&root], &[]);
    ca.certs
        .push(CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]));
    let err = build_verifier(&ca, &required()).expect_err("refused");
    assert_eq!(err.code(), "InvalidCertificateFormat");
    assert!(err.to_string().contains("CA certificate 2"), "{err}");
}

#[test]
fn optional_mode_does_not_make_the_certificate_mandatory() {
    let pki = TestPki::now_real();
    let root = pki.root("client root", KEY);
    let ca = ca_cert(&[&root], &[]);
    let verifier = build_verifier(&ca, &optional()).unwrap();
    assert!(verifier.offer_client_auth());
    assert!(!verifier.client_auth_mandatory());
}

#[test]
fn the_default_policy_is_required_chain_enforce() {
    assert_eq!(
        ClientAuthPolicy::default(),
        policy(
            ClientAuthMode::Required,
            CrlScope::Chain,
            ExpiredCrlPolicy::Enforce
        )
    );
}
