//! What certificates may be used for: every issuer in a server chain must be
//! a CA (R25), and a server leaf must name its hosts in subjectAltName and
//! allow serverAuth. The faulty shapes are the ones copied openssl recipes
//! make (`openssl x509 -req` without `-extfile`, `CA:FALSE` intermediates,
//! client certificates used as server certificates), generated at test time
//! by tlsgate-test-pki.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::{assert_accepted, codes};
use rustls_pki_types::UnixTime;
use tlsgate_test_pki::{CaShape, Eku, FIXED_NOW, KeyKind, TestPki, Validity};
use tlsgate_validator::{Kind, Options, Origin, Report, Request, Source, check};

fn options(kind: Kind, strict: bool) -> Options {
    Options {
        kind,
        strict,
        require_key: false,
        now: UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64)),
        origin: Origin::Cli,
    }
}

fn run(cert: &str, options: Options) -> Report {
    check(&Request {
        certificate: Source {
            name: "cert.pem",
            bytes: cert.as_bytes(),
        },
        private_key: None,
        password: None,
        options,
    })
}

/// The messages of the findings with `code`.
fn messages<'a>(findings: &'a [tlsgate_validator::Error], code: &str) -> Vec<&'a str> {
    findings
        .iter()
        .filter(|f| f.code() == code)
        .map(|f| f.message())
        .collect()
}

/// The one error with `code`, asserting there is exactly one.
#[track_caller]
fn only_error<'a>(report: &'a Report, code: &str) -> &'a str {
    let found = messages(&report.errors, code);
    assert_eq!(
        found.len(),
        1,
        "expected one {code} error, got errors {:#?} warnings {:#?}",
        report.errors,
        report.warnings
    );
    found[0]
}

// ---- every issuer is a CA ----------------------------------------------------

#[test]
fn an_intermediate_that_is_not_a_ca_is_an_invalid_chain_error() {
    let pki = TestPki::fixed();
    let root = pki.root("Shape Root", KeyKind::EcdsaP256);
    let cases = [
        (CaShape::V1, "X.509 v1"),
        (CaShape::NoBasicConstraints, "no basicConstraints"),
        (CaShape::CaFalse, "CA:FALSE"),
        (CaShape::NoKeyCertSign, "without keyCertSign"),
    ];
    for (shape, fault) in cases {
        let int = root.intermediate_with_shape("Shape Intermediate", KeyKind::EcdsaP256, shape);
        let leaf = int.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
        let bundle = format!("{}{}", leaf.cert_pem(), int.cert().cert_pem());
        for strict in [false, true] {
            let report = run(&bundle, options(Kind::Server, strict));
            let message = only_error(&report, "InvalidCertificateChain");
            for part in [
                "chain position 2",
                "CN=Shape Intermediate",
                "issued chain position 1",
                fault,
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
            ] {
                assert!(message.contains(part), "{shape:?}: {part:?} in {message}");
            }
            // The bundle itself is still decoded, so `cert convert` can write it.
            assert_eq!(report.summary().unwrap().chain_length, 2);
        }
        // The same with the root appended: the root is fine, the intermediate is not.
        let with_root = format!("{bundle}{}", root.cert().cert_pem());
        let report = run(&with_root, options(Kind::Server, false));
        assert!(
            only_error(&report, "InvalidCertificateChain").contains("chain position 2"),
            "{shape:?}"
        );
    }
}

#[test]
fn a_server_leaf_that_signed_another_certificate_is_not_an_issuer() {
    // A "leaf" (CA:FALSE, serverAuth) used to sign a second certificate, the
    // way `openssl x509 -req -CA server.pem -CAkey server.key` does it.
    let pki = TestPki::fixed();
    let root = pki.root("Leaf Signer Root", KeyKind::EcdsaP256);
    let signer =
        root.intermediate_with_shape("signer.example", KeyKind::EcdsaP256, CaShape::CaFalse);
    let leaf = signer.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!(
        "{}{}{}",
        leaf.cert_pem(),
        signer.cert().cert_pem(),
        root.cert().cert_pem()
    );
    let report = run(&bundle, options(Kind::Server, false));
    let message = only_error(&report, "InvalidCertificateChain");
    assert!(message.contains("CN=signer.example"), "{message}");
    assert!(message.contains("end-entity"), "{message}");
}

#[test]
fn a_proper_chain_is_still_accepted_without_findings() {
    let pki = TestPki::fixed();
    let root = pki.root("Proper Root", KeyKind::EcdsaP256);
    let int =
        root.intermediate_with_shape("Proper Intermediate", KeyKind::EcdsaP256, CaShape::Proper);
    let leaf = int.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!(
        "{}{}{}",
        leaf.cert_pem(),
        int.cert().cert_pem(),
        root.cert().cert_pem()
    );
    let report = run(&bundle, options(Kind::Server, true));
    assert_accepted(&report);
    assert!(
        !codes(&report.warnings).contains(&"InvalidCertificateChain"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_flawed_root_at_the_end_of_the_bundle_is_a_warning_or_a_strict_error() {
    let pki = TestPki::fixed();
    let root = pki.root_with_shape("Old v1 Root", KeyKind::EcdsaP256, CaShape::V1);
    let int = root.intermediate("Good Intermediate", KeyKind::EcdsaP256);
    let leaf = int.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
    let fullchain = format!("{}{}", leaf.cert_pem(), int.cert().cert_pem());
    let with_root = format!("{fullchain}{}", root.cert().cert_pem());

    // A warning: clients take the root from their own trust store, so the
    // bundle works; an error only under --strict.
    let report = run(&with_root, options(Kind::Server, false));
    assert_accepted(&report);
    let warned = messages(&report.warnings, "InvalidCertificateChain");
    assert_eq!(warned.len(), 1, "{:#?}", report.warnings);
    assert!(warned[0].contains("chain position 3"), "{}", warned[0]);
    assert!(warned[0].contains("CN=Old v1 Root"), "{}", warned[0]);
    assert!(
        warned[0].contains("remove it from the bundle"),
        "{}",
        warned[0]
    );
    let report = run(&with_root, options(Kind::Server, true));
    only_error(&report, "InvalidCertificateChain");

    // Where the chain ends in an issuer not in the bundle, only the
    // certificates present are judged.
    let report = run(&fullchain, options(Kind::Server, false));
    assert_accepted(&report);
}

#[test]
fn path_length_constraints_are_enforced() {
    let pki = TestPki::fixed();
    for (limit, refused) in [(0, true), (1, false)] {
        let root = pki.root("Path Root", KeyKind::EcdsaP256);
        let upper = root.intermediate_with_shape(
            "Upper Intermediate",
            KeyKind::EcdsaP256,
            CaShape::PathLen(limit),
        );
        let lower = upper.intermediate("Lower Intermediate", KeyKind::EcdsaP256);
        let leaf = lower.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
        let bundle = format!(
            "{}{}{}",
            leaf.cert_pem(),
            lower.cert().cert_pem(),
            upper.cert().cert_pem()
        );
        let report = run(&bundle, options(Kind::Server, false));
        if refused {
            let message = only_error(&report, "InvalidCertificateChain");
            assert!(message.contains("chain position 3"), "{message}");
            assert!(message.contains("pathlen:0"), "{message}");
            assert!(message.contains("1 intermediate"), "{message}");
        } else {
            assert_accepted(&report);
        }
    }

    // pathlen:0 on a CA that directly issued the leaf is fine.
    let root = pki.root("Direct Root", KeyKind::EcdsaP256);
    let int = root.intermediate_with_shape(
        "Direct Intermediate",
        KeyKind::EcdsaP256,
        CaShape::PathLen(0),
    );
    let leaf = int.server(&["www.example.com"], KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!("{}{}", leaf.cert_pem(), int.cert().cert_pem());
    assert_accepted(&run(&bundle, options(Kind::Server, true)));
}

#[test]
fn a_lone_self_signed_leaf_issues_nothing_and_is_accepted() {
    // `openssl req -x509` with a SAN: CA:FALSE, and no issuer in the chain.
    let leaf =
        TestPki::fixed().self_signed_server(&["localhost"], KeyKind::EcdsaP256, Validity::Normal);
    let report = run(&leaf.cert_pem(), options(Kind::Server, true));
    assert_accepted(&report);
}

#[test]
fn a_ca_bundle_with_a_non_ca_keeps_not_a_ca_certificate() {
    // R28: a `ca` bundle of a CA and a certificate it issued refuses the
    // latter as NotACaCertificate, not as a chain fault.
    let pki = TestPki::fixed();
    let root = pki.root("Bundle Root", KeyKind::EcdsaP256);
    let client = root.client("alice", KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!("{}{}", root.cert().cert_pem(), client.cert_pem());
    let report = run(&bundle, options(Kind::Ca, false));
    assert_eq!(
        codes(&report.errors),
        ["NotACaCertificate"],
        "{:?}",
        report.errors
    );

    // A v1 root is not a CA either.
    let v1 = pki.root_with_shape("v1 Root", KeyKind::EcdsaP256, CaShape::V1);
    let report = run(&v1.cert().cert_pem(), options(Kind::Ca, false));
    assert_eq!(
        codes(&report.errors),
        ["NotACaCertificate"],
        "{:?}",
        report.errors
    );
}

// ---- a server leaf names its hosts -------------------------------------------

#[test]
fn a_leaf_without_subject_alt_names_is_a_warning_even_when_strict() {
    let pki = TestPki::fixed();
    let root = pki.root("SAN Root", KeyKind::EcdsaP256);
    let no_san = root.server(&[], KeyKind::EcdsaP256, Validity::Normal);
    let v1 = root.server_v1("example.com", KeyKind::EcdsaP256);
    for (leaf, v1_note) in [(no_san, false), (v1, true)] {
        let bundle = format!("{}{}", leaf.cert_pem(), root.cert().cert_pem());
        for strict in [false, true] {
            let report = run(&bundle, options(Kind::Server, strict));
            assert_accepted(&report);
            let found = messages(&report.warnings, "MissingSubjectAltName");
            assert_eq!(found.len(), 1, "{:?}", report.warnings);
            let message = found[0];
            for part in [
                "subjectAltName",
                "rustls",
                "default certificate",
                "-addext \"subjectAltName=DNS:example.com\"",
                "-extfile",
            ] {
                assert!(message.contains(part), "{part:?} in {message}");
            }
            assert_eq!(message.contains("X.509 v1"), v1_note, "{message}");
            assert!(report.summary().unwrap().sans.is_empty());
        }
    }
}

#[test]
fn names_in_subject_alt_name_or_a_ca_bundle_give_no_san_warning() {
    let pki = TestPki::fixed();
    let chain = pki.server_chain(&["10.0.0.1"], KeyKind::EcdsaP256);
    let report = run(&chain.pem_leaf_first(), options(Kind::Server, false));
    assert!(
        !codes(&report.warnings).contains(&"MissingSubjectAltName"),
        "{:?}",
        report.warnings
    );
    // CA certificates name no hosts, and that is fine.
    let report = run(&chain.root.cert().cert_pem(), options(Kind::Ca, true));
    assert_accepted(&report);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

// ---- a server leaf allows serverAuth -------------------------------------------

#[test]
fn a_client_certificate_is_not_a_server_certificate() {
    let pki = TestPki::fixed();
    let root = pki.root("EKU Root", KeyKind::EcdsaP256);
    let client = root.client("alice", KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!("{}{}", client.cert_pem(), root.cert().cert_pem());
    let report = run(&bundle, options(Kind::Server, false));
    let message = only_error(&report, "CertificateNotForServerAuth");
    for part in ["CN=alice", "clientAuth", "extendedKeyUsage=serverAuth"] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
}

#[test]
fn server_auth_any_usage_or_no_eku_extension_are_fine() {
    let pki = TestPki::fixed();
    let root = pki.root("EKU Root", KeyKind::EcdsaP256);
    let cases: [&[Eku]; 4] = [
        &[],
        &[Eku::ServerAuth],
        &[Eku::Any],
        &[Eku::ClientAuth, Eku::ServerAuth],
    ];
    for purposes in cases {
        let leaf = root.server_with_eku(&["www.example.com"], KeyKind::EcdsaP256, purposes);
        let bundle = format!("{}{}", leaf.cert_pem(), root.cert().cert_pem());
        let report = run(&bundle, options(Kind::Server, true));
        assert_accepted(&report);
    }
    let code_signing = root.server_with_eku(
        &["www.example.com"],
        KeyKind::EcdsaP256,
        &[Eku::CodeSigning],
    );
    let bundle = format!("{}{}", code_signing.cert_pem(), root.cert().cert_pem());
    let report = run(&bundle, options(Kind::Server, false));
    assert!(only_error(&report, "CertificateNotForServerAuth").contains("codeSigning"));
}

#[test]
fn a_client_kind_skips_only_the_server_leaf_rules() {
    // `tlsgate ca issue` checks the client certificates it makes as
    // Kind::Client: no SAN, clientAuth only, and still a chain to judge.
    let pki = TestPki::fixed();
    let root = pki.root("Client Root", KeyKind::EcdsaP256);
    let client = root.client("alice", KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!("{}{}", client.cert_pem(), root.cert().cert_pem());
    let report = run(&bundle, options(Kind::Client, true));
    assert_accepted(&report);
    assert_eq!(codes(&report.warnings), ["MissingPrivateKey"]);

    let not_ca = root.intermediate_with_shape("Not A CA", KeyKind::EcdsaP256, CaShape::CaFalse);
    let client = not_ca.client("bob", KeyKind::EcdsaP256, Validity::Normal);
    let bundle = format!("{}{}", client.cert_pem(), not_ca.cert().cert_pem());
    let report = run(&bundle, options(Kind::Client, false));
    only_error(&report, "InvalidCertificateChain");
}
