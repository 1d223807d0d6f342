//! End to end, the TLS side of a listener with real clients (R2–R6, R9):
//! the chain served, ALPN, mutual authentication and its forwarded client
//! certificate, revocation, protocol versions and cipher suites as
//! `openssl s_client` sees them, and mutual auth switched on live.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use http::StatusCode;
use tlsgate_cert_store::ClientAuthMode;
use tlsgate_test_pki::{KeyKind, Validity};

const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";

// ---------------------------------------------------------------------------
// One-way TLS and ALPN (R2, R9)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_tls_serves_the_chain_leaf_first_over_h2_and_http11() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let expected_chain = vec![
        fx.server.leaf.cert_der().to_vec(),
        fx.server.intermediate.cert().cert_der().to_vec(),
    ];

    // (client offers, server must choose)
    let cases: [(&[&[u8]], &[u8]); 4] = [
        (&[H2], H2),
        (&[HTTP11], HTTP11),
        (&[H2, HTTP11], H2),
        (&[], b""),
    ];
    for (offered, chosen) in cases {
        let mut client = within(
            "connect",
            STEP,
            Client::connect(addr, fx.client_config(None, offered)),
        )
        .await
        .unwrap();
        let served: Vec<Vec<u8>> = client
            .peer_certificates
            .iter()
            .map(|c| c.to_vec())
            .collect();
        assert_eq!(
            served, expected_chain,
            "R2: the listener sends leaf then intermediate"
        );
        assert_eq!(
            client.alpn.as_deref().unwrap_or_default(),
            chosen,
            "ALPN for offer {offered:?}"
        );
        // Two requests on the connection: keep-alive (h1) and streams (h2) work.
        for path in ["/one", "/two"] {
            let response = within("request", STEP, client.get(path, &[]))
                .await
                .unwrap();
            assert_eq!(response.status, StatusCode::OK, "{response:?}");
            let echo = response.echo();
            assert_eq!(echo.path, path);
            assert_eq!(echo.backend, "a");
            // HTTP/2 carries the host in :authority; the HTTP/1.1 backend needs Host.
            assert_eq!(echo.one("host"), Some(HOST_NAME), "{echo:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Mutual authentication (R3, R4, R12)
// ---------------------------------------------------------------------------

const CLIENTCERT_HEADERS: [&str; 6] = [
    "x-forwarded-clientcert-subjectdn",
    "x-forwarded-clientcert-issuerdn",
    "x-forwarded-clientcert-serial",
    "x-forwarded-clientcert-fingerprint",
    "x-forwarded-clientcert-clientverify",
    "client-cert",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_auth_forwards_the_verified_client_certificate() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut with_rfc9440 = listener(
        "rfc9440",
        https(
            &[WWW],
            "tls12",
            Some(mutual(CORP, ClientAuthMode::Required)),
        ),
        &[&backend],
    );
    with_rfc9440.rfc9440_client_cert = true;
    let (server, addr) = start(
        &fx.store,
        vec![required_mutual(WEB, &[&backend]), with_rfc9440],
    )
    .await;
    let rfc9440_addr = server.local_addr("rfc9440").await.unwrap();
    let alice = fx.client_cert("alice");

    for alpn in [HTTP11, H2] {
        let echo = get_ok(addr, fx.client_config(Some(&alice), &[alpn]), "/", &[]).await;
        assert_eq!(
            echo.one("x-forwarded-clientcert-subjectdn"),
            Some("CN=alice,O=tlsgate test"),
            "RFC 4514, most specific first"
        );
        assert_eq!(
            echo.one("x-forwarded-clientcert-issuerdn"),
            Some("CN=corp client CA,O=tlsgate test")
        );
        assert_eq!(
            echo.one("x-forwarded-clientcert-serial"),
            Some(upper_hex(&alice.serial()).as_str()),
            "uppercase hex, no colons"
        );
        assert_eq!(
            echo.one("x-forwarded-clientcert-fingerprint"),
            Some(sha256_hex(alice.cert_der()).as_str()),
            "SHA-256 of the DER, lowercase hex"
        );
        assert_eq!(
            echo.one("x-forwarded-clientcert-clientverify"),
            Some("SUCCESS")
        );
        assert_eq!(
            echo.one("client-cert"),
            None,
            "Client-Cert only with rfc9440_client_cert"
        );
    }

    let echo = get_ok(
        rfc9440_addr,
        fx.client_config(Some(&alice), &[HTTP11]),
        "/",
        &[],
    )
    .await;
    let expected = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(alice.cert_der())
    );
    assert_eq!(
        echo.one("client-cert"),
        Some(expected.as_str()),
        "RFC 9440 Client-Cert"
    );
    assert_eq!(
        echo.one("x-forwarded-clientcert-clientverify"),
        Some("SUCCESS")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_auth_required_refuses_missing_revoked_expired_and_foreign_certificates() {
    let fx = Fixture::new();
    let alice = fx.client_cert("alice");
    let mallory = fx.client_cert("mallory");
    fx.set_crl(&[&mallory]);
    let expired = fx
        .client_ca
        .client("old", KeyKind::EcdsaP256, Validity::Expired);
    let foreign = fx
        .other_ca
        .client("eve", KeyKind::EcdsaP256, Validity::Normal);
    let backend = Backend::start("a").await;
    let (server, addr) = start(&fx.store, vec![required_mutual(WEB, &[&backend])]).await;

    let cases = [
        ("no client certificate", None, "no client certificate"),
        (
            "a revoked certificate",
            Some(&mallory),
            "client certificate revoked",
        ),
        (
            "an expired certificate",
            Some(&expired),
            "client certificate expired",
        ),
        (
            "a certificate from another CA",
            Some(&foreign),
            "client certificate from an unknown CA",
        ),
    ];
    for (what, identity, reason) in cases {
        for alpn in [HTTP11, H2] {
            assert_refused(addr, fx.client_config(identity, &[alpn]), what).await;
        }
        // The refusal is counted under its reason (the server records it
        // just after sending the alert).
        eventually(
            &format!("handshake failure {reason:?} counted"),
            Duration::from_secs(2),
            || async {
                let failures = server.stats(WEB).await.unwrap().handshake_failures();
                failures.get(reason).copied().unwrap_or(0) >= 2
            },
        )
        .await;
    }
    // And a TLS 1.2 client is refused during the handshake itself.
    let tls12_only = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(fx.server.root.cert().certificate_der()).unwrap();
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![mallory.certificate_der()],
                mallory.key().private_key_der(),
            )
            .unwrap(),
        )
    };
    assert_refused(addr, tls12_only, "a revoked certificate over TLS 1.2").await;

    // The listener works for a good client throughout.
    let echo = get_ok(addr, fx.client_config(Some(&alice), &[HTTP11]), "/", &[]).await;
    assert_eq!(
        echo.one("x-forwarded-clientcert-clientverify"),
        Some("SUCCESS")
    );
    assert_eq!(backend.served(), 1, "no refused client reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_auth_optional_accepts_no_certificate_but_refuses_a_foreign_one() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(
            WEB,
            https(
                &[WWW],
                "tls12",
                Some(mutual(CORP, ClientAuthMode::Optional)),
            ),
            &[&backend],
        )],
    )
    .await;

    for alpn in [HTTP11, H2] {
        let echo = get_ok(addr, fx.client_config(None, &[alpn]), "/", &[]).await;
        assert_eq!(
            echo.one("x-forwarded-clientcert-clientverify"),
            Some("NONE")
        );
        for header in CLIENTCERT_HEADERS
            .iter()
            .filter(|h| !h.ends_with("clientverify"))
        {
            assert_eq!(
                echo.one(header),
                None,
                "{header} without a client certificate"
            );
        }
    }

    let alice = fx.client_cert("alice");
    let echo = get_ok(addr, fx.client_config(Some(&alice), &[HTTP11]), "/", &[]).await;
    assert_eq!(
        echo.one("x-forwarded-clientcert-clientverify"),
        Some("SUCCESS")
    );
    assert_eq!(
        echo.one("x-forwarded-clientcert-subjectdn"),
        Some("CN=alice,O=tlsgate test")
    );

    let foreign = fx
        .other_ca
        .client("eve", KeyKind::EcdsaP256, Validity::Normal);
    assert_refused(
        addr,
        fx.client_config(Some(&foreign), &[HTTP11]),
        "optional mode, a certificate from another CA",
    )
    .await;
    let expired = fx
        .client_ca
        .client("old", KeyKind::EcdsaP256, Validity::Expired);
    assert_refused(
        addr,
        fx.client_config(Some(&expired), &[HTTP11]),
        "optional mode, an expired certificate",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Versions and suites, seen by openssl s_client (R5, R6)
// ---------------------------------------------------------------------------

/// Writes the server chain's root for `-CAfile`.
fn root_file(fx: &Fixture) -> std::path::PathBuf {
    let path = fx.dir.path().join("root.pem");
    std::fs::write(&path, fx.server.root.cert().cert_pem()).unwrap();
    path
}

/// Runs s_client with `args` expecting a refusal that the listener counts.
async fn refused_and_counted(server: &tlsgate_listener::Server, listener: &str, args: &[&str]) {
    let addr = server.local_addr(listener).await.unwrap();
    let before = failed_handshakes(server, listener).await;
    let run = s_client(addr, args, None).await;
    assert!(
        !run.connected,
        "openssl s_client {args:?} must be refused, but connected:\n{}",
        run.output
    );
    eventually(
        &format!("the failed handshake of s_client {args:?} counted"),
        Duration::from_secs(2),
        || async { failed_handshakes(server, listener).await > before },
    )
    .await;
}

/// Runs s_client with `args` (verifying the server) expecting `expect` in its output.
async fn connects(addr: std::net::SocketAddr, args: &[&str], ca: &std::path::Path, expect: &str) {
    let run = s_client(addr, args, Some(ca)).await;
    assert!(
        run.connected && run.output.contains(expect),
        "openssl s_client {args:?} must connect with {expect}:\n{}",
        run.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls10_and_tls11_clients_are_refused_and_counted() {
    let fx = Fixture::new();
    let ca = root_file(&fx);
    let backend = Backend::start("a").await;
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    connects(addr, &["-tls1_2"], &ca, "TLSv1.2").await;
    connects(addr, &["-tls1_3"], &ca, "TLSv1.3").await;
    // OpenSSL 3 will not even offer TLS 1.0/1.1 at its default security
    // level; level 0 makes it send the old ClientHello, which the listener
    // must refuse (and count).
    for version in ["-tls1", "-tls1_1"] {
        refused_and_counted(&server, WEB, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"]).await;
    }
    let failures = server.stats(WEB).await.unwrap().handshake_failures();
    // The server refused the hellos; openssl did not give up on its own.
    assert!(
        !failures
            .keys()
            .any(|reason| reason.contains("closed") || reason.contains("timed out")),
        "refused by the listener, not abandoned by the client: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_accepts_only_ecdhe_aead_suites() {
    let fx = Fixture::new();
    let ca = root_file(&fx);
    // An RSA server certificate too, so that static-RSA and DHE-RSA suites
    // would be possible if the listener allowed them.
    let rsa_leaf = fx
        .server
        .intermediate
        .server(&[HOST_NAME], KeyKind::Rsa2048, Validity::Normal);
    write_server(
        &fx.store_dir(),
        "www-rsa",
        &rsa_leaf,
        &[fx.server.intermediate.cert()],
    );
    fx.store.rescan();
    let backend = Backend::start("a").await;
    let (server, ecdsa_addr) = start(
        &fx.store,
        vec![
            listener(WEB, https(&[WWW], "tls12", None), &[&backend]),
            listener("rsa", https(&["www-rsa"], "tls12", None), &[&backend]),
        ],
    )
    .await;
    let rsa_addr = server.local_addr("rsa").await.unwrap();

    connects(
        ecdsa_addr,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        &ca,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    )
    .await;
    connects(
        ecdsa_addr,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
        &ca,
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    )
    .await;
    connects(
        rsa_addr,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
        &ca,
        "ECDHE-RSA-AES128-GCM-SHA256",
    )
    .await;
    for cipher in [
        // static RSA key exchange
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        // finite-field Diffie-Hellman
        "DHE-RSA-AES128-GCM-SHA256",
        // CBC
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES128-SHA",
    ] {
        refused_and_counted(&server, "rsa", &["-tls1_2", "-cipher", cipher]).await;
    }
    for cipher in [
        "AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES128-SHA",
    ] {
        refused_and_counted(&server, WEB, &["-tls1_2", "-cipher", cipher]).await;
    }
    // OpenSSL offering only static-RSA/DHE suites sends no groups at all;
    // the log and metric reason says so, not just "no shared group".
    let failures = server.stats("rsa").await.unwrap().handshake_failures();
    assert!(
        failures
            .keys()
            .any(|reason| reason.contains("only RSA/DHE key exchange")),
        "{failures:?}"
    );
}

/// A client certificate made the way many web recipes make one, `openssl
/// x509 -req` without `-extfile`, is X.509 v1, which the verifier refuses;
/// the reason names that rather than a Debug dump of webpki's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_client_certificate_is_refused_with_a_reason_that_says_so() {
    let fx = Fixture::new();
    let dir = fx.dir.path();
    let ca = fx.client_ca.cert();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("ca.key"), ca.key().pkcs8_pem()).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=v1 client",
        "-keyout",
        &path("v1.key"),
        "-out",
        &path("v1.csr"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &path("v1.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        &path("v1.pem"),
    ]);
    let backend = Backend::start("a").await;
    let (server, _addr) = start(&fx.store, vec![required_mutual(WEB, &[&backend])]).await;
    refused_and_counted(
        &server,
        WEB,
        &["-tls1_2", "-cert", &path("v1.pem"), "-key", &path("v1.key")],
    )
    .await;
    let failures = server.stats(WEB).await.unwrap().handshake_failures();
    assert!(
        failures.keys().any(|reason| reason.contains("X.509 v1")),
        "{failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_policy_refuses_tls12() {
    let fx = Fixture::new();
    let ca = root_file(&fx);
    let backend = Backend::start("a").await;
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls13", None), &[&backend])],
    )
    .await;
    connects(addr, &["-tls1_3"], &ca, "TLSv1.3").await;
    refused_and_counted(&server, WEB, &["-tls1_2"]).await;
    // A client offering both settles on 1.3.
    connects(addr, &[], &ca, "TLSv1.3").await;
}

// ---------------------------------------------------------------------------
// Config change without restart (R3)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_auth_switched_on_and_off_applies_to_new_connections() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    let (server, addr) = start(&fx.store, vec![config.clone()]).await;
    let alice = fx.client_cert("alice");
    let anonymous = fx.client_config(None, &[HTTP11]);

    // A keep-alive connection from before the change.
    let mut open = within("connect", STEP, Client::connect(addr, anonymous.clone()))
        .await
        .unwrap();
    let response = within("request", STEP, open.get("/before", &[]))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.echo().one("x-forwarded-clientcert-clientverify"),
        None
    );

    config.protocol = https(
        &[WWW],
        "tls12",
        Some(mutual(CORP, ClientAuthMode::Required)),
    );
    within("apply", STEP, server.apply(vec![config.clone()]))
        .await
        .unwrap();
    assert_eq!(
        server.local_addr(WEB).await,
        Some(addr),
        "same bind: not rebound"
    );

    assert_refused(
        addr,
        anonymous.clone(),
        "no certificate after mutual auth was turned on",
    )
    .await;
    let echo = get_ok(addr, fx.client_config(Some(&alice), &[HTTP11]), "/", &[]).await;
    assert_eq!(
        echo.one("x-forwarded-clientcert-clientverify"),
        Some("SUCCESS")
    );
    // The connection opened before keeps working for its next request.
    let response = within(
        "request on the old connection",
        STEP,
        open.get("/after", &[]),
    )
    .await
    .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    assert_eq!(response.echo().path, "/after");

    // Another CA: alice's CA is no longer trusted, eve's is.
    write_ca(&fx.store_dir(), "other", &fx.other_ca, None);
    fx.store.rescan();
    config.protocol = https(
        &[WWW],
        "tls12",
        Some(mutual("other", ClientAuthMode::Required)),
    );
    within("apply", STEP, server.apply(vec![config.clone()]))
        .await
        .unwrap();
    assert_refused(
        addr,
        fx.client_config(Some(&alice), &[HTTP11]),
        "a client of the CA that was replaced",
    )
    .await;
    let eve = fx
        .other_ca
        .client("eve", KeyKind::EcdsaP256, Validity::Normal);
    let echo = get_ok(addr, fx.client_config(Some(&eve), &[HTTP11]), "/", &[]).await;
    assert_eq!(
        echo.one("x-forwarded-clientcert-issuerdn"),
        Some("CN=other client CA,O=tlsgate test")
    );

    // And off again.
    config.protocol = https(&[WWW], "tls12", None);
    within("apply", STEP, server.apply(vec![config]))
        .await
        .unwrap();
    let echo = get_ok(addr, anonymous, "/", &[]).await;
    assert_eq!(
        echo.one("x-forwarded-clientcert-clientverify"),
        None,
        "one-way again"
    );
}

// ---------------------------------------------------------------------------
// Revocation against resumption (R4)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_revoked_by_a_new_crl_cannot_resume_its_session() {
    let fx = Fixture::new();
    let _watcher = fx.store.watch().unwrap();
    let mut events = fx.store.subscribe();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(&fx.store, vec![required_mutual(WEB, &[&backend])]).await;
    let alice = fx.client_cert("alice");
    let mut resuming = (*fx.client_config(Some(&alice), &[HTTP11])).clone();
    resuming.resumption = rustls::client::Resumption::in_memory_sessions(32);
    let resuming = std::sync::Arc::new(resuming);

    // A full handshake (its response read, so the session ticket arrived)…
    let mut first = within("connect", STEP, Client::connect(addr, resuming.clone()))
        .await
        .unwrap();
    assert!(!first.resumed);
    let response = within("request", STEP, first.get("/", &[])).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    drop(first);
    // …then a resumed one, still carrying alice's identity to the backend.
    let mut second = within("connect", STEP, Client::connect(addr, resuming.clone()))
        .await
        .unwrap();
    assert!(second.resumed, "the listener resumes sessions (R9a)");
    let response = within("request", STEP, second.get("/", &[])).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    let echo = response.echo();
    assert_eq!(
        echo.one("x-forwarded-clientcert-subjectdn"),
        Some("CN=alice,O=tlsgate test")
    );
    assert_eq!(
        echo.one("x-forwarded-clientcert-clientverify"),
        Some("SUCCESS")
    );
    drop(second);

    // Revoke alice through the watched store.
    write_atomic(
        &fx.store_dir().join("ca").join(CORP).join("crl.pem"),
        &fx.client_ca.crl_pem(&[alice.serial()], 30),
    );
    Fixture::loaded(&mut events, tlsgate_cert_store::CertKind::Ca, CORP).await;
    assert_refused(addr, resuming, "revoked alice offering her session ticket").await;
}
