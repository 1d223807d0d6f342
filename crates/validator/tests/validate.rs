//! Library-level tests: every accepted input format and every SPEC §4 code
//! the validator can produce, from certificates generated at test time with
//! a fixed "now" (tlsgate-test-pki). The openssl-made inputs users actually
//! bring are covered by `crates/tlsgate/tests/openssl_workflows.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::{assert_accepted, codes};
use rustls_pki_types::UnixTime;
use tlsgate_test_pki::{
    Chain, FIXED_NOW, KeyKind, TestKey, TestPki, Validity, pem, same_name_impostor,
};
use tlsgate_validator::{CertificateName, Kind, Options, Origin, Report, Request, Source, check};

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64))
}

/// Options for a server certificate, lenient unless `strict`.
fn server(strict: bool) -> Options {
    Options {
        kind: Kind::Server,
        strict,
        require_key: false,
        now: now(),
        origin: Origin::Cli,
    }
}

fn run(cert: &[u8], key: Option<&[u8]>, password: Option<&str>, options: Options) -> Report {
    check(&Request {
        certificate: Source {
            name: "cert.pem",
            bytes: cert,
        },
        private_key: key.map(|bytes| Source {
            name: "key.pem",
            bytes,
        }),
        password: password.map(str::as_bytes),
        options,
    })
}

#[track_caller]
fn assert_error(report: &Report, code: &str) {
    assert!(
        codes(&report.errors).contains(&code),
        "expected error {code}, got errors {:?} warnings {:?}",
        report.errors,
        report.warnings
    );
}

#[track_caller]
fn assert_warning(report: &Report, code: &str) {
    assert!(
        codes(&report.warnings).contains(&code),
        "expected warning {code}, got errors {:?} warnings {:?}",
        report.errors,
        report.warnings
    );
}

fn chain(kind: KeyKind) -> Chain {
    TestPki::fixed().server_chain(&["www.example.com", "example.com"], kind)
}

// ---- accepted inputs -------------------------------------------------------

#[test]
fn every_servable_key_algorithm_is_accepted_with_its_name() {
    let cases = [
        (KeyKind::EcdsaP256, "ECDSA P-256"),
        (KeyKind::EcdsaP384, "ECDSA P-384"),
        (KeyKind::EcdsaP521, "ECDSA P-521"),
        (KeyKind::Rsa2048, "RSA 2048"),
        (KeyKind::Rsa3072, "RSA 3072"),
        (KeyKind::Rsa4096, "RSA 4096"),
    ];
    for (kind, name) in cases {
        let chain = chain(kind);
        let key = chain.leaf.key().pkcs8_pem();
        let report = run(
            chain.pem_leaf_first().as_bytes(),
            Some(key.as_bytes()),
            None,
            server(true),
        );
        assert_accepted(&report);
        assert!(
            report.warnings.is_empty(),
            "{kind:?}: {:?}",
            report.warnings
        );
        let summary = report.summary().unwrap();
        assert_eq!(summary.key_algorithm, name);
        assert_eq!(summary.chain_length, 2);
        assert_eq!(summary.sans, ["www.example.com", "example.com"]);
    }
}

#[test]
fn every_key_encoding_is_accepted_and_normalised_to_pkcs8() {
    let rsa = chain(KeyKind::Rsa2048);
    let ec = chain(KeyKind::EcdsaP384);
    let rsa_key = rsa.leaf.key();
    let ec_key = ec.leaf.key();
    let cases: Vec<(&str, &Chain, Vec<u8>)> = vec![
        ("PKCS#8 PEM", &rsa, rsa_key.pkcs8_pem().into_bytes()),
        ("PKCS#8 DER", &rsa, rsa_key.pkcs8_der()),
        (
            "PKCS#1 PEM",
            &rsa,
            rsa_key.pkcs1_pem().unwrap().into_bytes(),
        ),
        ("PKCS#1 DER", &rsa, rsa_key.pkcs1_der().unwrap()),
        ("SEC1 PEM", &ec, ec_key.sec1_pem().unwrap().into_bytes()),
        (
            "SEC1 PEM with EC PARAMETERS",
            &ec,
            ec_key.sec1_pem_with_params().unwrap().into_bytes(),
        ),
        ("SEC1 DER", &ec, ec_key.sec1_der().unwrap()),
    ];
    for (what, chain, key) in cases {
        let report = run(
            chain.pem_leaf_first().as_bytes(),
            Some(&key),
            None,
            server(false),
        );
        assert_accepted(&report);
        let bundle = report.bundle.as_ref().unwrap();
        let pem = bundle.private_key_pem().unwrap();
        assert!(
            pem.starts_with(concat!("-----BEGIN PRIVATE", " KEY-----\n")),
            "{what}"
        );
        // The normalised key is itself accepted and byte-identical on a second pass.
        let again = run(
            chain.pem_leaf_first().as_bytes(),
            Some(pem.as_bytes()),
            None,
            server(false),
        );
        assert_accepted(&again);
        assert_eq!(
            again.bundle.unwrap().private_key_pem().unwrap(),
            pem,
            "{what}"
        );
    }
}

#[test]
fn der_certificate_is_accepted() {
    let chain = chain(KeyKind::EcdsaP256);
    let report = run(
        chain.leaf.cert_der(),
        Some(&chain.leaf.key().pkcs8_der()),
        None,
        server(false),
    );
    assert_accepted(&report);
    // A lone leaf whose issuer is a private CA: the issuer is missing.
    assert_warning(&report, "CertificateChainNotFound");
}

#[test]
fn pkcs7_in_pem_and_der_is_ordered_silently() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    for input in [chain.pkcs7_pem().into_bytes(), chain.pkcs7_der()] {
        let report = run(&input, Some(key.as_bytes()), None, server(true));
        assert_accepted(&report);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(
            report.bundle.unwrap().certificate_pem(),
            chain.pem_leaf_first(),
            "leaf first"
        );
    }
}

#[test]
fn pkcs12_supplies_its_own_key_and_chain() {
    let chain = chain(KeyKind::Rsa2048);
    let p12 = chain.pkcs12("s3cret pass");
    let report = run(&p12, None, Some("s3cret pass"), server(true));
    assert_accepted(&report);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let bundle = report.bundle.unwrap();
    assert_eq!(bundle.chain().len(), 2);
    assert_eq!(bundle.certificate_pem(), chain.pem_leaf_first());
    assert!(bundle.private_key_pem().is_some());

    let no_password = run(&p12, None, None, server(false));
    assert_error(&no_password, "EncryptedPrivateKey");
    assert!(no_password.errors[0].message().contains("--password-file"));
    let wrong = run(&p12, None, Some("wrong"), server(false));
    assert_error(&wrong, "InvalidPassword");
}

#[test]
fn combined_pem_with_chain_and_key_needs_no_key_file() {
    let chain = chain(KeyKind::EcdsaP256);
    let combined = format!("{}{}", chain.pem_leaf_first(), chain.leaf.key().pkcs8_pem());
    let report = run(combined.as_bytes(), None, None, server(true));
    assert_accepted(&report);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn crlf_and_76_column_pem_is_accepted_with_a_non_canonical_warning() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let rewrapped: String = [chain.leaf.cert_der(), chain.intermediate.cert().cert_der()]
        .iter()
        .map(|der| {
            use base64::Engine as _;
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\r\n{}\r\n-----END CERTIFICATE-----\r\n",
                lines.join("\r\n")
            )
        })
        .collect();
    let report = run(
        rewrapped.as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    assert_accepted(&report);
    assert_warning(&report, "NonCanonicalPem");
    assert_eq!(
        report.bundle.unwrap().certificate_pem(),
        chain.pem_leaf_first()
    );

    let strict = run(
        rewrapped.as_bytes(),
        Some(key.as_bytes()),
        None,
        server(true),
    );
    assert_error(&strict, "NonCanonicalPem");
}

#[test]
fn wrong_order_is_a_warning_naming_the_position_and_is_reordered() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let report = run(
        chain.pem_wrong_order().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    assert_accepted(&report);
    assert_warning(&report, "InvalidCertificateChain");
    assert!(report.warnings[0].message().contains("position 1"));
    assert_eq!(
        report.bundle.unwrap().certificate_pem(),
        chain.pem_leaf_first()
    );

    let strict = run(
        chain.pem_wrong_order().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(true),
    );
    assert_error(&strict, "InvalidCertificateChain");
}

#[test]
fn chain_with_root_is_accepted_in_order() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let report = run(
        chain.pem_with_root().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(true),
    );
    assert_accepted(&report);
    assert_eq!(report.summary().unwrap().chain_length, 3);
}

#[test]
fn text_around_pem_blocks_is_ignored() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let dump = format!(
        "Certificate:\n    Data:\n        Version: 3 (0x2)\n{}Some trailer\n",
        chain.pem_leaf_first()
    );
    let report = run(dump.as_bytes(), Some(key.as_bytes()), None, server(false));
    assert_accepted(&report);
}

#[test]
fn ca_bundle_of_unrelated_roots_is_accepted() {
    let pki = TestPki::fixed();
    let a = pki.root("Corp Root A", KeyKind::EcdsaP256);
    let b = pki.root("Corp Root B", KeyKind::Rsa2048);
    let bundle = format!("{}{}", a.cert().cert_pem(), b.cert().cert_pem());
    let options = Options {
        kind: Kind::Ca,
        ..server(true)
    };
    let report = run(bundle.as_bytes(), None, None, options);
    assert_accepted(&report);
    assert_eq!(report.summary().unwrap().chain_length, 2);
}

// ---- error and warning codes -------------------------------------------------

#[test]
fn garbage_is_invalid_certificate_format() {
    for input in [
        &b"hello world, not a certificate"[..],
        &[0x30, 0x82, 0x01],
        &[0xff; 64],
        b"",
    ] {
        let report = run(input, None, None, server(false));
        assert_error(&report, "InvalidCertificateFormat");
        assert!(report.summary().is_none());
    }
}

#[test]
fn bad_base64_names_the_line() {
    let chain = chain(KeyKind::EcdsaP256);
    let mut pem = chain.leaf.cert_pem();
    // Damage the third line of the first block.
    let third_line_start = pem.match_indices('\n').nth(1).unwrap().0 + 1;
    pem.replace_range(third_line_start..third_line_start + 1, "!");
    let report = run(pem.as_bytes(), None, None, server(false));
    assert_error(&report, "InvalidCertificateFormat");
    assert!(
        report.errors[0].message().contains("line 3"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn truncated_pem_is_reported() {
    let chain = chain(KeyKind::EcdsaP256);
    let pem = chain.leaf.cert_pem();
    let report = run(&pem.as_bytes()[..pem.len() / 2], None, None, server(false));
    assert_error(&report, "InvalidCertificateFormat");
}

#[test]
fn csr_and_public_key_are_not_certificates() {
    for label in ["CERTIFICATE REQUEST", "PUBLIC KEY"] {
        let input = pem(label, &[0x30, 0x03, 0x02, 0x01, 0x00]);
        let report = run(input.as_bytes(), None, None, server(false));
        assert_error(&report, "InvalidCertificateFormat");
    }
}

#[test]
fn empty_or_garbage_key_is_invalid_private_key_format() {
    let chain = chain(KeyKind::EcdsaP256);
    for key in [
        &b""[..],
        b"\n\n",
        b"not a key",
        &[0x30, 0x03, 0x02, 0x01, 0x05],
    ] {
        let report = run(
            chain.pem_leaf_first().as_bytes(),
            Some(key),
            None,
            server(false),
        );
        assert_error(&report, "InvalidPrivateKeyFormat");
    }
}

#[test]
fn missing_key_is_a_warning_for_check_and_an_error_for_upload() {
    let chain = chain(KeyKind::EcdsaP256);
    let report = run(chain.pem_leaf_first().as_bytes(), None, None, server(false));
    assert_accepted(&report);
    assert_warning(&report, "MissingPrivateKey");

    let upload = Options {
        require_key: true,
        ..server(false)
    };
    let report = run(chain.pem_leaf_first().as_bytes(), None, None, upload);
    assert_error(&report, "MissingPrivateKey");
}

#[test]
fn another_key_is_a_mismatch() {
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let chain = chain(kind);
        let other = TestKey::generate(kind).pkcs8_pem();
        let report = run(
            chain.pem_leaf_first().as_bytes(),
            Some(other.as_bytes()),
            None,
            server(false),
        );
        assert_error(&report, "KeyCertificateMismatch");
    }
}

#[test]
fn the_intermediate_key_is_a_mismatch_that_says_whose_key_it_is() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.intermediate.cert().key().pkcs8_pem();
    let report = run(
        chain.pem_leaf_first().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    assert_error(&report, "KeyCertificateMismatch");
    assert!(
        report.errors[0].message().contains("belongs to"),
        "{}",
        report.errors[0]
    );
    // The leaf stays the leaf: the wrong key does not promote the intermediate.
    assert!(
        report
            .summary()
            .unwrap()
            .subject
            .starts_with("CN=www.example.com")
    );
}

#[test]
fn a_same_name_intermediate_from_another_ca_fails_the_link() {
    let pki = TestPki::fixed();
    let chain = chain(KeyKind::EcdsaP256);
    let impostor = same_name_impostor(&pki, &chain.intermediate, KeyKind::EcdsaP256);
    let bundle = format!("{}{}", chain.leaf.cert_pem(), impostor.cert().cert_pem());
    let key = chain.leaf.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), None, server(false));
    assert_error(&report, "InvalidCertificateChain");
    assert!(
        report.errors[0].message().contains("position 1"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn unrelated_certificates_are_not_one_chain() {
    let a = chain(KeyKind::EcdsaP256);
    let b = chain(KeyKind::EcdsaP256);
    let bundle = format!("{}{}", a.pem_leaf_first(), b.leaf.cert_pem());
    let report = run(bundle.as_bytes(), None, None, server(false));
    assert_error(&report, "InvalidCertificateChain");
    // With the key, the leaf is known and the stranger is named.
    let key = a.leaf.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), None, server(false));
    assert_error(&report, "InvalidCertificateChain");
    assert!(
        report.errors[0].message().contains("not part of the chain"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn missing_issuer_is_chain_not_found_warning_or_strict_error() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let report = run(
        chain.leaf.cert_pem().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    assert_accepted(&report);
    assert_warning(&report, "CertificateChainNotFound");
    let strict = run(
        chain.leaf.cert_pem().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(true),
    );
    assert_error(&strict, "CertificateChainNotFound");
}

#[test]
fn self_signed_leaf_needs_no_issuer() {
    let issued =
        TestPki::fixed().self_signed_server(&["localhost"], KeyKind::EcdsaP256, Validity::Normal);
    let key = issued.key().pkcs8_pem();
    let report = run(
        issued.cert_pem().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(true),
    );
    assert_accepted(&report);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn ed25519_is_unsupported() {
    let issued =
        TestPki::fixed().self_signed_server(&["localhost"], KeyKind::Ed25519, Validity::Normal);
    let key = issued.key().pkcs8_pem();
    let report = run(
        issued.cert_pem().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    assert_error(&report, "UnsupportedKeyAlgorithm");
    assert_eq!(report.summary().unwrap().key_algorithm, "Ed25519");
    let message = report.errors[0].message();
    assert!(message.contains("uses an Ed25519 key;"), "{message}");
}

#[test]
fn dh_parameters_are_refused_in_either_file() {
    let chain = chain(KeyKind::EcdsaP256);
    let dh = pem(
        "DH PARAMETERS",
        &[0x30, 0x06, 0x02, 0x01, 0x17, 0x02, 0x01, 0x02],
    );
    let key = chain.leaf.key().pkcs8_pem();
    let cert_with_dh = format!("{}{dh}", chain.pem_leaf_first());
    let report = run(
        cert_with_dh.as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    assert_error(&report, "DhParametersNotSupported");
    let key_with_dh = format!("{dh}{key}");
    let report = run(
        chain.pem_leaf_first().as_bytes(),
        Some(key_with_dh.as_bytes()),
        None,
        server(false),
    );
    assert_error(&report, "DhParametersNotSupported");
}

#[test]
fn validity_is_checked_on_every_certificate() {
    let pki = TestPki::fixed();
    let root = pki.root("Validity Root", KeyKind::EcdsaP256);
    let cases = [
        (Validity::Expired, "CertificateExpired"),
        (Validity::NotYetValid, "CertificateNotYetValid"),
    ];
    for (validity, code) in cases {
        let leaf = root.server(&["a.example"], KeyKind::EcdsaP256, validity);
        let bundle = format!("{}{}", leaf.cert_pem(), root.cert().cert_pem());
        let key = leaf.key().pkcs8_pem();
        let report = run(bundle.as_bytes(), Some(key.as_bytes()), None, server(false));
        assert_error(&report, code);
        assert!(report.summary().is_some());

        // The same fault on the intermediate.
        let intermediate =
            root.intermediate_with_validity("Old Intermediate", KeyKind::EcdsaP256, validity);
        let leaf = intermediate.server(&["b.example"], KeyKind::EcdsaP256, Validity::Normal);
        let bundle = format!("{}{}", leaf.cert_pem(), intermediate.cert().cert_pem());
        let key = leaf.key().pkcs8_pem();
        let report = run(bundle.as_bytes(), Some(key.as_bytes()), None, server(false));
        assert_error(&report, code);
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.message().contains("position 2")),
            "{:?}",
            report.errors
        );
    }
}

#[test]
fn thirty_days_left_is_a_warning() {
    let pki = TestPki::fixed();
    let root = pki.root("Soon Root", KeyKind::EcdsaP256);
    for (days, warned) in [(10, true), (30, true), (45, false)] {
        let leaf = root.server(
            &["soon.example"],
            KeyKind::EcdsaP256,
            Validity::ExpiresInDays(days),
        );
        let bundle = format!("{}{}", leaf.cert_pem(), root.cert().cert_pem());
        let key = leaf.key().pkcs8_pem();
        let report = run(bundle.as_bytes(), Some(key.as_bytes()), None, server(false));
        assert_accepted(&report);
        assert_eq!(
            codes(&report.warnings).contains(&"CertificateExpiringSoon"),
            warned,
            "{days} days"
        );
    }
}

#[test]
fn a_leaf_is_not_a_ca() {
    let chain = chain(KeyKind::EcdsaP256);
    let options = Options {
        kind: Kind::Ca,
        ..server(false)
    };
    let report = run(chain.leaf.cert_pem().as_bytes(), None, None, options);
    assert_error(&report, "NotACaCertificate");
    let report = run(chain.root.cert().cert_pem().as_bytes(), None, None, options);
    assert_accepted(&report);
}

#[test]
fn all_faults_are_reported_not_only_the_first() {
    let pki = TestPki::fixed();
    let root = pki.root("Many Faults Root", KeyKind::EcdsaP256);
    let leaf = root.server(&["x.example"], KeyKind::EcdsaP256, Validity::Expired);
    let other_key = TestKey::generate(KeyKind::EcdsaP256).pkcs8_pem();
    let report = run(
        leaf.cert_pem().as_bytes(),
        Some(other_key.as_bytes()),
        None,
        server(true),
    );
    let found = codes(&report.errors);
    for code in [
        "KeyCertificateMismatch",
        "CertificateExpired",
        "CertificateChainNotFound",
    ] {
        assert!(found.contains(&code), "{code} missing from {found:?}");
    }
}

#[test]
fn duplicate_certificates_are_dropped_with_a_warning() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let bundle = format!(
        "{}{}",
        chain.pem_leaf_first(),
        chain.intermediate.cert().cert_pem()
    );
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), None, server(false));
    assert_accepted(&report);
    assert_warning(&report, "InvalidCertificateChain");
    assert_eq!(report.summary().unwrap().chain_length, 2);
}

#[test]
fn certificate_names_follow_r15() {
    for good in [
        "www",
        "a/b",
        "../x",
        "a/../../b",
        "*.example.com",
        "x".repeat(80).as_str(),
    ] {
        assert!(CertificateName::parse(good).is_ok(), "{good}");
    }
    for bad in ["", "has space", "ü", "a:b", "x".repeat(81).as_str()] {
        let err = CertificateName::parse(bad).unwrap_err();
        assert_eq!(err.code(), "InvalidParameter", "{bad}");
    }
}

#[test]
fn summary_facts_match_the_leaf() {
    let chain = chain(KeyKind::EcdsaP256);
    let key = chain.leaf.key().pkcs8_pem();
    let report = run(
        chain.pem_leaf_first().as_bytes(),
        Some(key.as_bytes()),
        None,
        server(false),
    );
    let summary = report.summary().unwrap();
    assert_eq!(summary.subject, "CN=www.example.com,O=tlsgate test");
    assert!(
        summary.issuer.starts_with("CN=tlsgate test"),
        "{}",
        summary.issuer
    );
    use sha2::Digest as _;
    let expected: String = sha2::Sha256::digest(chain.leaf.cert_der())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(summary.sha256_fingerprint, expected);
    let serial: String = chain
        .leaf
        .serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(summary.serial, serial);
}
