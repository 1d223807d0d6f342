//! Message wording that depends on where the input came from (CLI flag, API
//! field or store folder), says each place once, and the one days-left
//! function every caller shows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rustls_pki_types::UnixTime;
use tlsgate_test_pki::{FIXED_NOW, KeyKind, TestPki};
use tlsgate_validator::{Kind, Options, Origin, Report, Request, Source, check, days_left};

const DAY: i64 = 86_400;

fn options(origin: Origin) -> Options {
    Options {
        kind: Kind::Server,
        strict: false,
        require_key: origin != Origin::Cli,
        now: UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64)),
        origin,
    }
}

/// Source names as each caller gives them: file paths for the CLI and the
/// store, descriptions for the admin API (crates/tlsgate/src/admin/certs.rs).
fn names(origin: Origin) -> (&'static str, &'static str) {
    match origin {
        Origin::Api => ("the uploaded certificate", "the uploaded private key"),
        Origin::Cli | Origin::Store => ("certs/www/cert.pem", "certs/www/key.pem"),
    }
}

fn run(cert: &[u8], key: Option<&[u8]>, password: Option<&str>, origin: Origin) -> Report {
    let (cert_name, key_name) = names(origin);
    check(&Request {
        certificate: Source {
            name: cert_name,
            bytes: cert,
        },
        private_key: key.map(|bytes| Source {
            name: key_name,
            bytes,
        }),
        password: password.map(str::as_bytes),
        options: options(origin),
    })
}

/// The message of the first finding with `code`, error or warning.
#[track_caller]
fn message(report: &Report, code: &str) -> String {
    report
        .errors
        .iter()
        .chain(&report.warnings)
        .find(|f| f.code() == code)
        .unwrap_or_else(|| {
            panic!(
                "no {code}: errors {:?} warnings {:?}",
                report.errors, report.warnings
            )
        })
        .message()
        .to_string()
}

#[track_caller]
fn assert_hint(message: &str, wanted: &[&str], unwanted: &[&str]) {
    for part in wanted {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    for part in unwanted {
        assert!(!message.contains(part), "{part:?} in: {message}");
    }
}

/// A legacy encrypted PEM key (`openssl rsa -des3`); the body is never
/// decrypted without a password, so a placeholder serves. The markers are
/// split so no tracked file carries one.
fn legacy_encrypted_key() -> String {
    [
        "-----BEGIN RSA PRIVATE",
        " KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n",
        "-----END RSA PRIVATE",
        " KEY-----\n",
    ]
    .concat()
}

/// An encrypted PKCS#8 key (`openssl genpkey … -aes256`), placeholder body.
fn pkcs8_encrypted_key() -> String {
    [
        "-----BEGIN ENCRYPTED PRIVATE",
        " KEY-----\nMAA=\n",
        "-----END ENCRYPTED PRIVATE",
        " KEY-----\n",
    ]
    .concat()
}

#[test]
fn encrypted_key_hints_name_what_each_origin_can_do() {
    let chain = TestPki::fixed().server_chain(&["www.example.com"], KeyKind::EcdsaP256);
    let cert = chain.pem_leaf_first();
    for key in [legacy_encrypted_key(), pkcs8_encrypted_key()] {
        let cli = message(
            &run(cert.as_bytes(), Some(key.as_bytes()), None, Origin::Cli),
            "EncryptedPrivateKey",
        );
        assert_hint(
            &cli,
            &["--password-file FILE"],
            &["(CLI)", "(API)", "\"password\""],
        );
        let api = message(
            &run(cert.as_bytes(), Some(key.as_bytes()), None, Origin::Api),
            "EncryptedPrivateKey",
        );
        // The API's callers include `tlsgate cert upload`: its flag is named too.
        assert_hint(
            &api,
            &["\"password\" field", "tlsgate cert upload --password-file"],
            &["(CLI)", "(API)"],
        );
        let store = message(
            &run(cert.as_bytes(), Some(key.as_bytes()), None, Origin::Store),
            "EncryptedPrivateKey",
        );
        assert_hint(
            &store,
            &["store cannot decrypt", "openssl pkey -in key.pem", "0600"],
            &["(CLI)", "(API)", "--password-file", "\"password\""],
        );
    }

    // A key inside the certificate file (a combined PEM) gets the same hints.
    let combined = format!("{cert}{}", legacy_encrypted_key());
    let store = message(
        &run(combined.as_bytes(), None, None, Origin::Store),
        "EncryptedPrivateKey",
    );
    assert_hint(&store, &["store cannot decrypt"], &["--password-file"]);
}

#[test]
fn encrypted_pkcs12_hints_name_what_each_origin_can_do() {
    let chain = TestPki::fixed().server_chain(&["www.example.com"], KeyKind::EcdsaP256);
    let p12 = chain.pkcs12("s3cret");
    let api = message(&run(&p12, None, None, Origin::Api), "EncryptedPrivateKey");
    assert_hint(
        &api,
        &["\"password\" field", "tlsgate cert upload --password-file"],
        &["(CLI)"],
    );
    let store = message(&run(&p12, None, None, Origin::Store), "EncryptedPrivateKey");
    assert_hint(&store, &["tlsgate cert convert"], &["(CLI)", "(API)"]);
    let wrong = message(
        &run(&p12, None, Some("wrong"), Origin::Api),
        "InvalidPassword",
    );
    assert_hint(&wrong, &["\"password\" field"], &["password file"]);
}

#[test]
fn missing_key_hints_name_what_each_origin_can_do() {
    let chain = TestPki::fixed().server_chain(&["www.example.com"], KeyKind::EcdsaP256);
    let cert = chain.pem_leaf_first();
    let cases: [(Origin, &[&str], &[&str]); 3] = [
        (Origin::Cli, &["--key FILE"], &["\"private_key\""]),
        (
            Origin::Api,
            &["\"private_key\" field", "tlsgate cert upload --key"],
            &[],
        ),
        (
            Origin::Store,
            &[
                "same folder",
                "key.pem with cert.pem",
                "tls.key with tls.crt",
                "privkey.pem with fullchain.pem",
            ],
            &["--key", "\"private_key\""],
        ),
    ];
    for (origin, wanted, unwanted) in cases {
        let found = message(
            &run(cert.as_bytes(), None, None, origin),
            "MissingPrivateKey",
        );
        assert_hint(&found, wanted, unwanted);
        assert_hint(&found, &[], &["(CLI)", "(API)"]);
    }
}

#[test]
fn the_source_and_the_position_are_each_said_once() {
    let chain = TestPki::fixed().server_chain(&["www.example.com"], KeyKind::EcdsaP256);
    let cert = chain.pem_leaf_first();

    // A key block that is PEM but not a key: "the private key (PEM block 1 …)".
    let not_pkcs8 = [
        "-----BEGIN PRIVATE",
        " KEY-----\nMAMCAQA=\n",
        "-----END PRIVATE",
        " KEY-----\n",
    ]
    .concat();
    let api = message(
        &run(
            cert.as_bytes(),
            Some(not_pkcs8.as_bytes()),
            None,
            Origin::Api,
        ),
        "InvalidPrivateKeyFormat",
    );
    assert!(
        api.starts_with("the uploaded private key (PEM block 1 at line 1)"),
        "{api}"
    );
    assert!(
        !api.contains("private key in the uploaded private key"),
        "{api}"
    );
    // A file keeps saying which file the key is in.
    let cli = message(
        &run(
            cert.as_bytes(),
            Some(not_pkcs8.as_bytes()),
            None,
            Origin::Cli,
        ),
        "InvalidPrivateKeyFormat",
    );
    assert!(
        cli.starts_with("the private key in certs/www/key.pem (PEM block 1 at line 1)"),
        "{cli}"
    );

    // A damaged key: the line and column are said once, the input once.
    let damaged = [
        "-----BEGIN PRIVATE",
        " KEY-----\nMA!CAQA=\n",
        "-----END PRIVATE",
        " KEY-----\n",
    ]
    .concat();
    let api = message(
        &run(cert.as_bytes(), Some(damaged.as_bytes()), None, Origin::Api),
        "InvalidPrivateKeyFormat",
    );
    assert_eq!(api.matches("line 2").count(), 1, "{api}");
    assert_eq!(api.matches("the uploaded private key").count(), 1, "{api}");
    assert!(api.contains("column 3"), "{api}");

    // A damaged certificate: "the certificate: line 2, column 4: …".
    let mut damaged = chain.leaf.cert_pem();
    let second_line = damaged.find('\n').unwrap() + 1;
    damaged.replace_range(second_line + 3..second_line + 4, "!");
    let api = message(
        &run(damaged.as_bytes(), None, None, Origin::Api),
        "InvalidCertificateFormat",
    );
    assert!(
        api.starts_with("the uploaded certificate: line 2, column 4"),
        "{api}"
    );
    assert_eq!(api.matches("line 2").count(), 1, "{api}");
}

#[test]
fn days_left_counts_a_started_day_as_a_day() {
    let made = 1_000_000_000;
    let not_after = made + 3650 * DAY;
    // `-days 3650` shows 3650 all through the day it was made.
    assert_eq!(days_left(not_after, made), 3650);
    assert_eq!(days_left(not_after, made + 1), 3650);
    assert_eq!(days_left(not_after, made + DAY - 1), 3650);
    assert_eq!(days_left(not_after, made + DAY), 3649);
    // The last second, notAfter itself, then past it.
    assert_eq!(days_left(not_after, not_after - 1), 1);
    assert_eq!(days_left(not_after, not_after), 0);
    // Expired is negative at once, never "0 days left".
    assert_eq!(days_left(not_after, not_after + 1), -1);
    assert_eq!(days_left(not_after, not_after + DAY), -1);
    assert_eq!(days_left(not_after, not_after + DAY + 1), -2);
    // No overflow at the extremes.
    assert_eq!(days_left(i64::MIN, i64::MAX), i64::MIN.div_euclid(DAY));
    assert!(days_left(i64::MAX, i64::MIN) > 0);
}

#[test]
fn the_summary_uses_the_same_days_left() {
    let chain = TestPki::fixed().server_chain(&["www.example.com"], KeyKind::EcdsaP256);
    let report = run(chain.pem_leaf_first().as_bytes(), None, None, Origin::Cli);
    let summary = report.summary().unwrap();
    for offset in [0, 1, DAY - 1, DAY, 400 * DAY] {
        let now = FIXED_NOW + offset;
        let unix = UnixTime::since_unix_epoch(Duration::from_secs(now as u64));
        assert_eq!(
            summary.days_left(unix),
            days_left(summary.not_after, now),
            "{offset}"
        );
    }
    // test-pki leaves are valid for 365 days from now: 365, not 364.
    let now = UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64 + 1));
    assert_eq!(summary.days_left(now), 365);
}

#[test]
fn an_out_of_order_chain_says_what_happens_to_it_where_it_came_from() {
    let chain = TestPki::fixed().server_chain(&["www.example.com"], KeyKind::EcdsaP256);
    let pem = chain.pem_wrong_order();
    let key = chain.leaf.key().pkcs8_pem();
    for (origin, says, never) in [
        (
            Origin::Cli,
            "`tlsgate cert convert` writes it leaf first",
            "stored",
        ),
        (Origin::Api, "it is stored leaf first", "cert convert"),
        (Origin::Store, "it is served leaf first", "stored"),
    ] {
        let text = message(
            &run(pem.as_bytes(), Some(key.as_bytes()), None, origin),
            "InvalidCertificateChain",
        );
        assert!(
            text.contains(says) && !text.contains(never),
            "{origin:?}: {text}"
        );
    }
}
