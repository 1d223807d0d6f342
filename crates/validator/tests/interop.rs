//! What other TLS stacks accept or refuse, the validator must too: files
//! saved by Windows tools (byte-order marks, doubled or lone CRs, UTF-16),
//! critical extensions rustls-webpki and OpenSSL refuse, a leaf that may
//! not sign, an authorityKeyIdentifier that names another issuer, and one
//! count of days left. Certificates are generated at test time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::{assert_accepted, codes};
use rustls_pki_types::{CertificateDer, UnixTime};
use tlsgate_test_pki::rcgen::{CustomExtension, KeyIdMethod, KeyUsagePurpose};
use tlsgate_test_pki::{FIXED_NOW, KeyKind, TestPki, Validity, authority_key_identifier};
use tlsgate_validator::{Kind, Options, Origin, Report, Request, Source, check, check_crls};
use x509_parser::prelude::{FromDer, X509Certificate};

const HOST: &str = "www.example.com";

fn options(kind: Kind, now: i64) -> Options {
    Options {
        kind,
        strict: false,
        require_key: false,
        now: UnixTime::since_unix_epoch(Duration::from_secs(now as u64)),
        origin: Origin::Cli,
    }
}

fn run(cert: &[u8], key: Option<&[u8]>, kind: Kind) -> Report {
    run_at(cert, key, kind, FIXED_NOW)
}

fn run_at(cert: &[u8], key: Option<&[u8]>, kind: Kind, now: i64) -> Report {
    check(&Request {
        certificate: Source {
            name: "cert.pem",
            bytes: cert,
        },
        private_key: key.map(|bytes| Source {
            name: "key.pem",
            bytes,
        }),
        password: None,
        options: options(kind, now),
    })
}

/// The message of the only error, which must have `code`.
#[track_caller]
fn only_error<'a>(report: &'a Report, code: &str) -> &'a str {
    assert_eq!(
        codes(&report.errors),
        [code],
        "errors {:#?} warnings {:#?}",
        report.errors,
        report.warnings
    );
    report.errors[0].message()
}

#[track_caller]
fn warning<'a>(report: &'a Report, code: &str) -> &'a str {
    report
        .warnings
        .iter()
        .find(|w| w.code() == code)
        .map(|w| w.message())
        .unwrap_or_else(|| panic!("no {code} warning in {:#?}", report.warnings))
}

/// `1.2.3.4.5.6.7=critical,ASN1:UTF8String:unknown`, as in an openssl -extfile.
fn unknown_critical() -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(
        &[1, 2, 3, 4, 5, 6, 7],
        vec![0x0c, 0x07, b'u', b'n', b'k', b'n', b'o', b'w', b'n'],
    );
    ext.set_criticality(true);
    ext
}

// ---- critical extensions (finding 1) ----------------------------------------

#[test]
fn unknown_critical_extension_on_a_leaf_is_refused_as_webpki_refuses_it() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let int = root.intermediate("int", KeyKind::EcdsaP256);
    let leaf = int.server_customized(&[HOST], KeyKind::EcdsaP256, |p| {
        p.custom_extensions.push(unknown_critical());
    });
    // The handshake's own parser refuses it: the validator must agree.
    let der = CertificateDer::from(leaf.cert_der().to_vec());
    assert!(matches!(
        webpki::EndEntityCert::try_from(&der),
        Err(webpki::Error::UnsupportedCriticalExtension)
    ));

    let bundle = [leaf.cert_pem(), int.cert().cert_pem()].concat();
    let key = leaf.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server);
    let message = only_error(&report, "InvalidCertificateChain");
    assert!(message.contains("1.2.3.4.5.6.7"), "{message}");
    assert!(message.contains("chain position 1"), "{message}");
    assert!(message.contains("the leaf"), "{message}");
    assert!(message.contains("reissue it without"), "{message}");

    // The same certificate checked as a client certificate.
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Client);
    only_error(&report, "InvalidCertificateChain");
}

#[test]
fn unknown_critical_extension_on_an_intermediate_or_client_is_refused() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let int = root.intermediate_customized("int", KeyKind::EcdsaP256, |p| {
        p.custom_extensions.push(unknown_critical());
    });
    let leaf = int.server(&[HOST], KeyKind::EcdsaP256, Validity::Normal);
    let bundle = [leaf.cert_pem(), int.cert().cert_pem()].concat();
    let report = run(
        bundle.as_bytes(),
        Some(leaf.key().pkcs8_pem().as_bytes()),
        Kind::Server,
    );
    let message = only_error(&report, "InvalidCertificateChain");
    assert!(message.contains("chain position 2"), "{message}");
    assert!(message.contains("intermediate 1"), "{message}");

    let client = root.client_customized("alice", KeyKind::EcdsaP256, |p| {
        p.custom_extensions.push(unknown_critical());
    });
    let bundle = [client.cert_pem(), root.cert().cert_pem()].concat();
    let report = run(
        bundle.as_bytes(),
        Some(client.key().pkcs8_pem().as_bytes()),
        Kind::Client,
    );
    only_error(&report, "InvalidCertificateChain");
}

#[test]
fn critical_extensions_webpki_processes_are_accepted() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    // rcgen marks basicConstraints and keyUsage critical; make the other
    // two webpki reads critical as well, and a non-critical unknown one.
    let leaf = root.server_customized(&[HOST], KeyKind::EcdsaP256, |p| {
        let mut other = unknown_critical();
        other.set_criticality(false);
        p.custom_extensions.push(other);
    });
    let der = CertificateDer::from(leaf.cert_der().to_vec());
    assert!(webpki::EndEntityCert::try_from(&der).is_ok());
    let bundle = [leaf.cert_pem(), root.cert().cert_pem()].concat();
    let report = run(
        bundle.as_bytes(),
        Some(leaf.key().pkcs8_pem().as_bytes()),
        Kind::Server,
    );
    assert_accepted(&report);
}

/// policyConstraints, critical as RFC 5280 has CAs mark it (bridge and
/// government PKIs): browsers and OpenSSL process it, rustls refuses it.
/// A server chain through such an intermediate gets a warning (most of its
/// clients accept it); a client chain an error (tlsgate's own handshake
/// refuses it).
#[test]
fn a_critical_policy_extension_warns_for_a_server_chain_and_refuses_a_client() {
    let policy_constraints = || {
        // SEQUENCE { [0] requireExplicitPolicy 0 }
        let mut ext =
            CustomExtension::from_oid_content(&[2, 5, 29, 36], vec![0x30, 0x03, 0x80, 0x01, 0x00]);
        ext.set_criticality(true);
        ext
    };
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let int = root.intermediate_customized("int", KeyKind::EcdsaP256, |p| {
        p.custom_extensions.push(policy_constraints());
    });
    let leaf = int.server(&[HOST], KeyKind::EcdsaP256, Validity::Normal);
    let bundle = [leaf.cert_pem(), int.cert().cert_pem()].concat();
    let key = leaf.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let message = warning(&report, "InvalidCertificateChain");
    assert!(
        message.contains("2.5.29.36 (policyConstraints)"),
        "{message}"
    );
    assert!(message.contains("rustls"), "{message}");

    let client = int.client("alice", KeyKind::EcdsaP256, Validity::Normal);
    let bundle = [client.cert_pem(), int.cert().cert_pem()].concat();
    let key = client.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Client);
    only_error(&report, "InvalidCertificateChain");
}

/// `tlsgate ca init` checks its new CA with its key as a client chain: a
/// CA certificate signs certificates, so keyCertSign without
/// digitalSignature is right for it.
#[test]
fn a_ca_certificate_checked_with_its_key_needs_no_digital_signature() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let pem = root.cert().cert_pem();
    let key = root.cert().key().pkcs8_pem();
    let report = run(pem.as_bytes(), Some(key.as_bytes()), Kind::Client);
    assert!(
        !codes(&report.errors).contains(&"CertificateNotForServerAuth"),
        "{:#?}",
        report.errors
    );
}

#[test]
fn a_ca_bundle_member_with_an_unknown_critical_extension_is_a_trust_anchor() {
    // rustls reads trust anchors without judging their extensions, so
    // mutual TLS works with such a CA: not refused.
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let int = root.intermediate_customized("int", KeyKind::EcdsaP256, |p| {
        p.custom_extensions.push(unknown_critical());
    });
    let report = run(int.cert().cert_pem().as_bytes(), None, Kind::Ca);
    assert_accepted(&report);
}

// ---- keyUsage without digitalSignature (finding 5) ----------------------------

#[test]
fn a_leaf_whose_key_usage_forbids_signing_is_refused() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let leaf = root.server_customized(&[HOST], KeyKind::EcdsaP256, |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyAgreement];
    });
    let bundle = [leaf.cert_pem(), root.cert().cert_pem()].concat();
    let key = leaf.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server);
    let message = only_error(&report, "CertificateNotForServerAuth");
    assert!(message.contains("digitalSignature"), "{message}");
    assert!(message.contains("Key Agreement"), "{message}");

    let rsa = root.server_customized(&[HOST], KeyKind::Rsa2048, |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    });
    let bundle = [rsa.cert_pem(), root.cert().cert_pem()].concat();
    let key = rsa.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server);
    only_error(&report, "CertificateNotForServerAuth");

    let client = root.client_customized("alice", KeyKind::EcdsaP256, |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyAgreement];
    });
    let bundle = [client.cert_pem(), root.cert().cert_pem()].concat();
    let key = client.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Client);
    let message = only_error(&report, "CertificateNotForServerAuth");
    assert!(message.contains("CertificateVerify"), "{message}");

    // Without a keyUsage extension every use is allowed.
    let free = root.server_customized(&[HOST], KeyKind::EcdsaP256, |p| p.key_usages.clear());
    let bundle = [free.cert_pem(), root.cert().cert_pem()].concat();
    let key = free.key().pkcs8_pem();
    assert_accepted(&run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server));
}

// ---- authorityKeyIdentifier (finding 6) ----------------------------------------

fn parsed(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn ski(der: &[u8]) -> Vec<u8> {
    parsed(der)
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_leaf_from_before_its_intermediate_was_reissued_is_refused() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let int = root.intermediate("int", KeyKind::EcdsaP256);
    let leaf = int.server(&[HOST], KeyKind::EcdsaP256, Validity::Normal);
    // Same name and key, new subjectKeyIdentifier: the signature verifies,
    // OpenSSL's X509_check_akid does not.
    let reissued = root.reissue_intermediate(&int, |p| {
        p.key_identifier_method = KeyIdMethod::PreSpecified(vec![0x42; 20]);
    });
    let bundle = [leaf.cert_pem(), reissued.cert().cert_pem()].concat();
    let key = leaf.key().pkcs8_pem();
    let report = run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server);
    let message = only_error(&report, "InvalidCertificateChain");
    assert!(message.contains("chain position 1"), "{message}");
    assert!(message.contains("chain position 2"), "{message}");
    assert!(message.contains("42:42:42"), "{message}");
    assert!(
        message.contains("different issuing certificate"),
        "{message}"
    );
    assert!(
        message.contains("reissue the leaf from the current intermediate 1"),
        "{message}"
    );
    // No second, misleading finding about a missing issuer.
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);

    // Without --key as well (the chain is still one chain).
    let report = run(bundle.as_bytes(), None, Kind::Server);
    only_error(&report, "InvalidCertificateChain");

    // With the original intermediate back, it is accepted.
    let bundle = [leaf.cert_pem(), int.cert().cert_pem()].concat();
    assert_accepted(&run(bundle.as_bytes(), Some(key.as_bytes()), Kind::Server));
}

#[test]
fn authority_cert_issuer_and_serial_are_compared_when_present() {
    let pki = TestPki::fixed();
    let root = pki.root("root", KeyKind::EcdsaP256);
    let int = root.intermediate("int", KeyKind::EcdsaP256);
    let int_der = int.cert().cert_der().to_vec();
    let int_parsed = parsed(&int_der);
    let key_id = ski(&int_der);
    let issuer_name = int_parsed.issuer().as_raw().to_vec();
    let serial = int_parsed.raw_serial().to_vec();

    let with_aki = |aki: CustomExtension| {
        let leaf = int.server_customized(&[HOST], KeyKind::EcdsaP256, move |p| {
            p.use_authority_key_identifier_extension = false;
            p.custom_extensions.push(aki);
        });
        let bundle = [leaf.cert_pem(), int.cert().cert_pem()].concat();
        run(
            bundle.as_bytes(),
            Some(leaf.key().pkcs8_pem().as_bytes()),
            Kind::Server,
        )
    };

    // keyid, issuer and serial all right (`authorityKeyIdentifier=keyid,issuer:always`).
    assert_accepted(&with_aki(authority_key_identifier(
        Some(&key_id),
        Some(&issuer_name),
        Some(&serial),
    )));
    // The serial of the intermediate it replaced.
    let report = with_aki(authority_key_identifier(
        Some(&key_id),
        Some(&issuer_name),
        Some(&[0x10, 0x00]),
    ));
    let message = only_error(&report, "InvalidCertificateChain");
    assert!(message.contains("serial number 1000"), "{message}");
    // Another issuer's issuer; no keyid at all (only fields on both sides count).
    let other = pki.root("another root", KeyKind::EcdsaP256);
    let other_name = parsed(other.cert().cert_der()).subject().as_raw().to_vec();
    let report = with_aki(authority_key_identifier(None, Some(&other_name), None));
    let message = only_error(&report, "InvalidCertificateChain");
    assert!(message.contains("another root"), "{message}");
}

// ---- days left (finding 4) -------------------------------------------------------

#[test]
fn the_expiring_soon_warning_counts_days_as_the_summary_does() {
    let pki = TestPki::fixed();
    let leaf = pki.self_signed_server(&[HOST], KeyKind::EcdsaP256, Validity::ExpiresInDays(10));
    // An hour after `openssl req -x509 -days 10` made it.
    let now = FIXED_NOW + 3_600;
    let report = run_at(leaf.cert_pem().as_bytes(), None, Kind::Server, now);
    let days = report
        .summary()
        .unwrap()
        .days_left(options(Kind::Server, now).now);
    assert_eq!(days, 10);
    let message = warning(&report, "CertificateExpiringSoon");
    assert!(message.contains("(10 days left)"), "{message}");
}

// ---- text encodings (findings 2 and 3) ----------------------------------------------

fn ecdsa_pair() -> (String, String) {
    let pki = TestPki::fixed();
    let leaf = pki.self_signed_server(&[HOST], KeyKind::EcdsaP256, Validity::Normal);
    (leaf.cert_pem(), leaf.key().pkcs8_pem())
}

#[test]
fn a_utf8_byte_order_mark_is_ignored_in_certificates_keys_and_crls() {
    let (cert, key) = ecdsa_pair();
    let bom = |text: &str| [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
    let report = run(&bom(&cert), Some(&bom(&key)), Kind::Server);
    assert_accepted(&report);
    let note = warning(&report, "NonCanonicalPem");
    assert!(note.contains("byte-order mark"), "{note}");

    // Windows-style: BOM and CRLF, and a BOM at the start of a later block
    // (`cat` of two such files).
    let mut doubled = bom(&cert.replace('\n', "\r\n"));
    doubled.extend(bom(&key.replace('\n', "\r\n")));
    assert_accepted(&run(&doubled, None, Kind::Server));

    let pki = TestPki::fixed();
    let ca = pki.root("crl root", KeyKind::EcdsaP256);
    let crl = ca.crl_pem(&[], 30);
    let crls = check_crls(
        &Source {
            name: "crl.pem",
            bytes: &bom(&crl),
        },
        &[ca.cert().cert_der()],
    )
    .unwrap();
    assert_eq!(crls.len(), 1);
}

#[test]
fn doubled_and_lone_crs_end_lines() {
    let (cert, key) = ecdsa_pair();
    // `sed 's/$/\r\r/'`
    let crcrlf = cert.replace('\n', "\r\r\n");
    let report = run(crcrlf.as_bytes(), Some(key.as_bytes()), Kind::Server);
    assert_accepted(&report);
    let note = warning(&report, "NonCanonicalPem");
    assert!(note.contains("more than one CR"), "{note}");

    // `tr '\n' '\r'` (old Mac)
    let cr = cert.replace('\n', "\r");
    let report = run(
        cr.as_bytes(),
        Some(key.replace('\n', "\r").as_bytes()),
        Kind::Server,
    );
    assert_accepted(&report);
    let note = warning(&report, "NonCanonicalPem");
    assert!(note.contains("CR-only"), "{note}");

    // Line numbers still count lines: a damaged character on line 3.
    let mut lines: Vec<String> = cert.lines().map(str::to_string).collect();
    lines[2].replace_range(5..6, "@");
    let damaged = lines.join("\r\r\n");
    let report = run(damaged.as_bytes(), None, Kind::Server);
    let message = only_error(&report, "InvalidCertificateFormat");
    assert!(message.contains("line 3, column 6"), "{message}");
}

#[test]
fn utf16_text_is_named_with_the_conversion() {
    let (cert, key) = ecdsa_pair();
    let utf16 = |text: &str, bom: bool| {
        let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    };
    let report = run(&utf16(&cert, true), None, Kind::Server);
    let message = only_error(&report, "InvalidCertificateFormat");
    assert!(message.contains("UTF-16"), "{message}");
    assert!(message.contains("iconv -f utf-16 -t utf-8"), "{message}");
    let report = run(&utf16(&cert, false), None, Kind::Server);
    assert!(only_error(&report, "InvalidCertificateFormat").contains("UTF-16"));

    let report = run(cert.as_bytes(), Some(&utf16(&key, true)), Kind::Server);
    let message = only_error(&report, "InvalidPrivateKeyFormat");
    assert!(message.contains("UTF-16"), "{message}");

    let pki = TestPki::fixed();
    let ca = pki.root("crl root", KeyKind::EcdsaP256);
    let errors = check_crls(
        &Source {
            name: "crl.pem",
            bytes: &utf16(&ca.crl_pem(&[], 30), true),
        },
        &[ca.cert().cert_der()],
    )
    .unwrap_err();
    assert!(errors[0].message().contains("UTF-16"), "{errors:?}");
}
