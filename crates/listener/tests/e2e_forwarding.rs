//! End to end, the forwarding side of a listener with real clients and real
//! backends (R10–R13): scheduling, active and passive health, forwarded
//! headers a client cannot forge, header limits and the request timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tlsgate_cert_store::ClientAuthMode;
use tlsgate_listener::{BackendConfig, HealthCheckConfig, SchedulerKind};

const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";

/// Backends that answered `count` requests on one keep-alive connection, in order.
async fn sequence(client: &mut Client, count: usize) -> Vec<String> {
    let mut answered = Vec::new();
    for i in 0..count {
        let response = within("request", STEP, client.get(&format!("/{i}"), &[]))
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{response:?}");
        answered.push(response.echo().backend);
    }
    answered
}

fn count(answered: &[String], backend: &str) -> usize {
    answered.iter().filter(|b| *b == backend).count()
}

fn fast_checks() -> HealthCheckConfig {
    HealthCheckConfig {
        path: "/healthz".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        ..HealthCheckConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Scheduling (R10)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_per_request() {
    let fx = Fixture::new();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&a, &b])],
    )
    .await;
    // One connection: scheduling is per request, not per connection.
    for alpn in [HTTP11, H2] {
        let mut client = within(
            "connect",
            STEP,
            Client::connect(addr, fx.client_config(None, &[alpn])),
        )
        .await
        .unwrap();
        let answered = sequence(&mut client, 8).await;
        assert_eq!(
            (count(&answered, "a"), count(&answered, "b")),
            (4, 4),
            "{answered:?}"
        );
        assert!(
            answered.windows(2).all(|pair| pair[0] != pair[1]),
            "rr alternates: {answered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_weights_and_weight_zero_gets_nothing() {
    let fx = Fixture::new();
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&a, &b, &c]);
    config.scheduler = SchedulerKind::WeightedRoundRobin;
    for (backend, weight) in config.backends.iter_mut().zip([1, 3, 0]) {
        backend.weight = weight;
    }
    let mut rr = listener("rr", https(&[WWW], "tls12", None), &[&a, &c]);
    rr.backends[1].weight = 0;
    let (server, addr) = start(&fx.store, vec![config, rr]).await;

    let mut client = within(
        "connect",
        STEP,
        Client::connect(addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();
    let answered = sequence(&mut client, 40).await;
    assert_eq!(
        (
            count(&answered, "a"),
            count(&answered, "b"),
            count(&answered, "c")
        ),
        (10, 30, 0),
        "{answered:?}"
    );
    // Smooth: b never gets more than three in a row.
    assert!(
        answered
            .windows(4)
            .all(|w| w.iter().any(|backend| backend != "b")),
        "{answered:?}"
    );

    // Weight 0 under rr too.
    let rr_addr = server.local_addr("rr").await.unwrap();
    let mut client = within(
        "connect",
        STEP,
        Client::connect(rr_addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();
    let answered = sequence(&mut client, 6).await;
    assert_eq!(count(&answered, "a"), 6, "{answered:?}");
    assert_eq!(c.served(), 0, "a weight-0 backend gets no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_least_connections_avoids_the_busy_backend() {
    let fx = Fixture::new();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&a, &b]);
    config.scheduler = SchedulerKind::WeightedLeastConnections;
    let (server, addr) = start(&fx.store, vec![config]).await;
    let client = fx.client_config(None, &[HTTP11]);
    let (mut to_a, mut to_b) = (a.arrivals(), b.arrivals());

    let slow = tokio::spawn(get(addr, client.clone(), "/delay/800", &[]));
    let busy = within("the slow request arriving", STEP, async {
        tokio::select! {
            _ = to_a.recv() => "a",
            _ = to_b.recv() => "b",
        }
    })
    .await;
    let idle = if busy == "a" { "b" } else { "a" };
    let backends = server.backends(WEB).await;
    assert_eq!(
        backends.iter().map(|b| b.3).sum::<usize>(),
        1,
        "one request in flight: {backends:?}"
    );
    for _ in 0..4 {
        let echo = get_ok(addr, client.clone(), "/fast", &[]).await;
        assert_eq!(
            echo.backend, idle,
            "wlc sends new requests to the idle backend"
        );
    }
    let response = within("the slow request", STEP, slow)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.echo().backend, busy);
}

// ---------------------------------------------------------------------------
// Health (R11, R13)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_active_check_is_skipped_after_the_threshold() {
    let fx = Fixture::new();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&a, &b]);
    config.health_check = Some(fast_checks());
    let (server, addr) = start(&fx.store, vec![config]).await;
    let mut client = within(
        "connect",
        STEP,
        Client::connect(addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();
    let answered = sequence(&mut client, 4).await;
    assert_eq!(count(&answered, "b"), 2, "both start healthy: {answered:?}");

    b.set_health(503);
    wait_backends(
        &server,
        WEB,
        "b unhealthy after two failed checks",
        |list| !healthy(list, &b.address()) && healthy(list, &a.address()),
    )
    .await;
    let served_by_b = b.served();
    let answered = sequence(&mut client, 10).await;
    assert_eq!(count(&answered, "a"), 10, "{answered:?}");
    assert_eq!(b.served(), served_by_b);

    // And back after two good checks.
    b.set_health(200);
    wait_backends(&server, WEB, "b healthy again", |list| {
        healthy(list, &b.address())
    })
    .await;
    let answered = sequence(&mut client, 4).await;
    assert_eq!(count(&answered, "b"), 2, "{answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_connections_is_taken_out_at_once_and_the_request_retried() {
    let fx = Fixture::new();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    // No active checks: only the passive check can notice.
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&a, &b])],
    )
    .await;
    let config = fx.client_config(None, &[HTTP11]);
    for _ in 0..4 {
        get_ok(addr, config.clone(), "/warm", &[]).await;
    }
    assert_eq!((a.served(), b.served()), (2, 2));

    b.stop().await;
    // rr picks b for one of the next two requests: its connect is refused,
    // the request goes to a, and b is out from then on.
    // POST with a body: a refused connect sent nothing, so any method is retried.
    for i in 0..2 {
        let body = format!("order {i}");
        let response = within("POST", STEP, Client::connect(addr, config.clone()))
            .await
            .unwrap()
            .request(
                http::Method::POST,
                "/after-stop",
                &[],
                bytes::Bytes::from(body.clone()),
            )
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{response:?}");
        let echo = response.echo();
        assert_eq!((echo.backend.as_str(), echo.method.as_str()), ("a", "POST"));
        assert_eq!(echo.body, body);
    }
    let backends = server.backends(WEB).await;
    assert!(
        !healthy(&backends, &b.address()),
        "passive check: out at once, no threshold: {backends:?}"
    );
    for _ in 0..6 {
        let echo = get_ok(addr, config.clone(), "/later", &[]).await;
        assert_eq!(echo.backend, "a");
    }
    assert_eq!(a.served(), 2 + 2 + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_down_the_client_gets_503_fast() {
    let fx = Fixture::new();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (c, d) = (Backend::start("c").await, Backend::start("d").await);
    let mut checked = listener(WEB, https(&[WWW], "tls12", None), &[&a, &b]);
    checked.health_check = Some(fast_checks());
    let passive = listener("passive", https(&[WWW], "tls12", None), &[&c, &d]);
    let (server, addr) = start(&fx.store, vec![checked, passive]).await;
    let passive_addr = server.local_addr("passive").await.unwrap();

    for backend in [&a, &b, &c, &d] {
        backend.stop().await;
    }

    // Active checks found them all down.
    wait_backends(&server, WEB, "a and b unhealthy", |list| {
        list.iter().all(|(_, _, healthy, _)| !healthy)
    })
    .await;
    let mut client = within(
        "connect",
        STEP,
        Client::connect(addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let response = within("request", STEP, client.get("/", &[])).await.unwrap();
        let took = started.elapsed();
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{response:?}"
        );
        assert!(took < Duration::from_millis(300), "503 took {took:?}");
    }

    // Passive only: the first request finds out (and must still answer at
    // once, with 502 or 503); the next ones get 503 without trying.
    let mut client = within(
        "connect",
        STEP,
        Client::connect(passive_addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();
    for i in 0..3 {
        let started = Instant::now();
        let response = within("request", STEP, client.get("/", &[])).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(300),
            "request {i} took {took:?}"
        );
        if i == 0 {
            assert!(
                [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE]
                    .contains(&response.status),
                "{response:?}"
            );
        } else {
            assert_eq!(
                response.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{response:?}"
            );
        }
    }
}

/// A POST over HTTP/2 answered by tlsgate itself (503: nothing to forward
/// to) before its body arrived: the body is read and dropped rather than
/// the stream reset right after the response, which curl 7.88 (Debian 12)
/// reports as "(92) Stream error in the HTTP/2 framing layer" instead of
/// the 503. The first request finds the backend refusing, the next ones
/// find it out of rotation: both answers go this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_posting_over_http2_with_no_backend_gets_the_503() {
    let fx = Fixture::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[]);
    config.backends = vec![BackendConfig {
        address: dead,
        weight: 100,
    }];
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let root = fx.dir.path().join("root.pem");
    std::fs::write(&root, fx.server.root.cert().cert_pem()).unwrap();
    let url = format!("https://{HOST_NAME}:{}/upload", addr.port());
    let resolve = format!("{HOST_NAME}:{}:127.0.0.1", addr.port());
    for i in 0..5 {
        let args = [
            "--silent".to_owned(),
            "--show-error".into(),
            "--max-time".into(),
            "10".into(),
            "--http2".into(),
            "--cacert".into(),
            root.display().to_string(),
            "--resolve".into(),
            resolve.clone(),
            "--data".into(),
            "x".repeat(100),
            "--write-out".into(),
            "%{http_code}".into(),
            "--output".into(),
            "/dev/null".into(),
            url.clone(),
        ];
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(&args)
                .output()
                .expect("curl is installed (apt-get install curl)")
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "503",
            "POST {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// Forwarded headers (R12)
// ---------------------------------------------------------------------------

/// Everything a client might try to forge.
const FORGED: [(&str, &str); 10] = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-For", "7.7.7.7"),
    ("X-Forwarded-Proto", "gopher"),
    ("X-Forwarded-Port", "1"),
    (
        "X-Forwarded-Clientcert-Subjectdn",
        "CN=admin,O=tlsgate test",
    ),
    (
        "X-Forwarded-Clientcert-Issuerdn",
        "CN=corp client CA,O=tlsgate test",
    ),
    ("X-Forwarded-Clientcert-Serial", "01"),
    ("X-Forwarded-Clientcert-Fingerprint", "00"),
    ("X-Forwarded-Clientcert-Clientverify", "SUCCESS"),
    ("Client-Cert", ":AAAA:"),
];

const CLIENTCERT_HEADERS: [&str; 5] = [
    "x-forwarded-clientcert-subjectdn",
    "x-forwarded-clientcert-issuerdn",
    "x-forwarded-clientcert-serial",
    "x-forwarded-clientcert-fingerprint",
    "x-forwarded-clientcert-clientverify",
];

/// The headers every listener sets: one value each, the real ones.
fn assert_forwarded(echo: &Echo, xff: &str, port: u16) {
    assert_eq!(echo.all("x-forwarded-for"), [xff], "{echo:?}");
    assert_eq!(echo.all("x-forwarded-proto"), ["https"], "{echo:?}");
    assert_eq!(
        echo.all("x-forwarded-port"),
        [port.to_string().as_str()],
        "{echo:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_headers_are_replaced_on_a_one_way_listener() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    // Even with the RFC 9440 header on, a one-way listener sends none.
    config.rfc9440_client_cert = true;
    let (_server, addr) = start(&fx.store, vec![config]).await;
    for alpn in [HTTP11, H2] {
        let echo = get_ok(addr, fx.client_config(None, &[alpn]), "/", &FORGED).await;
        assert_forwarded(&echo, "127.0.0.1", addr.port());
        for header in CLIENTCERT_HEADERS.iter().chain(&["client-cert"]) {
            assert_eq!(echo.all(header), Vec::<&str>::new(), "{header} removed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_headers_are_replaced_on_a_mutual_auth_listener() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut required = required_mutual(WEB, &[&backend]);
    required.rfc9440_client_cert = true;
    let optional = listener(
        "optional",
        https(
            &[WWW],
            "tls12",
            Some(mutual(CORP, ClientAuthMode::Optional)),
        ),
        &[&backend],
    );
    let (server, addr) = start(&fx.store, vec![required, optional]).await;
    let optional_addr = server.local_addr("optional").await.unwrap();
    let bob = fx.client_cert("bob");

    for alpn in [HTTP11, H2] {
        let echo = get_ok(addr, fx.client_config(Some(&bob), &[alpn]), "/", &FORGED).await;
        assert_forwarded(&echo, "127.0.0.1", addr.port());
        assert_eq!(
            echo.all("x-forwarded-clientcert-subjectdn"),
            ["CN=bob,O=tlsgate test"]
        );
        assert_eq!(
            echo.all("x-forwarded-clientcert-issuerdn"),
            ["CN=corp client CA,O=tlsgate test"]
        );
        assert_eq!(
            echo.all("x-forwarded-clientcert-serial"),
            [upper_hex(&bob.serial()).as_str()]
        );
        assert_eq!(
            echo.all("x-forwarded-clientcert-fingerprint"),
            [sha256_hex(bob.cert_der()).as_str()]
        );
        assert_eq!(echo.all("x-forwarded-clientcert-clientverify"), ["SUCCESS"]);
        assert_eq!(echo.all("client-cert").len(), 1);
        assert_ne!(echo.all("client-cert"), [":AAAA:"]);

        // Optional mode without a certificate: NONE, and nothing forged survives.
        let echo = get_ok(optional_addr, fx.client_config(None, &[alpn]), "/", &FORGED).await;
        assert_forwarded(&echo, "127.0.0.1", optional_addr.port());
        assert_eq!(echo.all("x-forwarded-clientcert-clientverify"), ["NONE"]);
        for header in CLIENTCERT_HEADERS[..4].iter().chain(&["client-cert"]) {
            assert_eq!(echo.all(header), Vec::<&str>::new(), "{header} removed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_keeps_its_x_forwarded_for() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut trusted = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    trusted.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let mut elsewhere = listener("elsewhere", https(&[WWW], "tls12", None), &[&backend]);
    elsewhere.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let (server, addr) = start(&fx.store, vec![trusted, elsewhere]).await;
    let elsewhere_addr = server.local_addr("elsewhere").await.unwrap();
    let config = fx.client_config(None, &[HTTP11]);

    let echo = get_ok(
        addr,
        config.clone(),
        "/",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "http"),
        ],
    )
    .await;
    assert_forwarded(&echo, "203.0.113.9, 127.0.0.1", addr.port());

    // Two header lines are one list.
    let echo = get_ok(addr, config.clone(), "/", &FORGED[..2]).await;
    assert_forwarded(&echo, "6.6.6.6, 7.7.7.7, 127.0.0.1", addr.port());

    // Trust is per CIDR: 127.0.0.1 is not in 10.0.0.0/8.
    let echo = get_ok(elsewhere_addr, config, "/", &FORGED[..2]).await;
    assert_forwarded(&echo, "127.0.0.1", elsewhere_addr.port());
}

/// A listener's only backend restarts: the next request reaches it, not
/// a 503 for the rest of the passive cooldown (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_backend_that_restarts_is_used_again_at_once() {
    let fx = Fixture::new();
    let backend = Backend::start("first").await;
    let address = backend.address();
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    get_ok(addr, fx.client_config(None, &[HTTP11]), "/", &[]).await;
    backend.stop().await;
    let response = get(addr, fx.client_config(None, &[HTTP11]), "/", &[])
        .await
        .unwrap();
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{response:?}"
    );

    let _again = Backend::start_at("again", &address).await;
    let echo = get_ok(addr, fx.client_config(None, &[HTTP11]), "/", &[]).await;
    assert_eq!(echo.backend, "again");
}

// ---------------------------------------------------------------------------
// Limits and timeouts (R13)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_client_closes_ends_with_tls_close_notify() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    // raw_exchange reads to the end: rustls reports UnexpectedEof when the
    // peer closes without close_notify (a client could not tell a whole
    // response from a cut one), and that fails it.
    let response = raw_exchange(
        addr,
        &fx,
        "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_slowly_is_not_cut_by_parking() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let mut tls = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    // Half a head, then quiet for longer than the parking delay (two
    // looks at 0.5 s; the pause is the scenario, not a synchronisation),
    // then the rest.
    tls.write_all(b"GET / HTTP/1.1\r\nhost: local")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tls.write_all(b"host\r\n\r\n").await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = within("response", STEP, tls.read(&mut buffer))
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "kept alive: {head}");
}

/// Request targets and Host lines a backend must never get as sent: an
/// HTTP/1.0 request without Host gets the backend's address as its Host,
/// `Connection: host` cannot take Host away, a bare host:port target is
/// CONNECT's and `*` is OPTIONS's (400 otherwise), and a transfer coding
/// tlsgate does not decode gets 501 (the gzip bytes would pass as data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_targets_hosts_and_codings_are_settled_before_the_backend() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let exchange = |request: &'static str| {
        let fx = &fx;
        async move {
            let response = raw_exchange(addr, fx, request).await;
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
            (head.to_owned(), body.to_owned())
        }
    };

    let (head, body) = exchange("GET /a HTTP/1.0\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert_eq!(
        Echo::parse(&body).one("host"),
        Some(backend.address().as_str())
    );

    let (head, body) = exchange(
        "GET /a HTTP/1.1\r\nhost: localhost\r\nconnection: host, cookie, close\r\ncookie: c=1\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo = Echo::parse(&body);
    assert_eq!(echo.one("host"), Some("localhost"));
    assert_eq!(echo.one("cookie"), None, "named by Connection: this hop's");

    for refused in [
        "GET evil.example:8443 HTTP/1.1\r\nhost: good.example\r\nconnection: close\r\n\r\n",
        "GET * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    ] {
        let (head, _) = exchange(refused).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{refused:?}: {head}");
    }
    let (head, body) =
        exchange("OPTIONS * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(Echo::parse(&body).path, "*");

    let (head, _) = exchange(
        "POST / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 501"), "{head}");
    assert_eq!(backend.served(), 3, "only the 200s reached it");
}

/// A request body the client breaks (a bad chunk size, here) is the
/// client's fault: 400, and the backend stays in rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_body_gets_400_not_a_backend_error() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let response = raw_exchange(
        addr,
        &fx,
        "POST / HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("request body"), "{response}");
    let stats = server.stats(WEB).await.unwrap();
    assert_eq!(stats.requests()[4], 0, "no 5xx: {:?}", stats.requests());
    let mut client = Client::connect(addr, fx.client_config(None, &[HTTP11]))
        .await
        .unwrap();
    assert_eq!(client.get("/", &[]).await.unwrap().status, StatusCode::OK);
}

/// A request head still arriving when `client_idle` runs out is a stalled
/// or slowloris client: closed and counted. A keep-alive connection that
/// simply goes idle is closed too, but is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_unfinished_at_client_idle_is_closed_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    // Shorter than the parking delay, so hyper's header-read timer, not
    // a parked connection's wait, ends the idle connection too.
    config.timeouts.client_idle = Duration::from_millis(300);
    let (server, addr) = start(&fx.store, vec![config]).await;
    let stats = server.stats(WEB).await.unwrap();
    let closed = |mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>| async move {
        let mut rest = Vec::new();
        // The server closes: end of stream (or a reset), not a timeout here.
        let _ = within("the server's close", STEP, tls.read_to_end(&mut rest)).await;
        rest
    };

    // Idle after a whole request and its response.
    let mut idle = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    idle.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = within("response", STEP, idle.read(&mut buffer))
        .await
        .unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    closed(idle).await;
    assert_eq!(
        stats.slow_request_heads(),
        0,
        "an idle close is not a slow head"
    );

    // Half a head, then nothing.
    let mut slow = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    slow.write_all(b"GET / HTTP/1.1\r\nhost: local")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let rest = closed(slow).await;
    assert!(rest.is_empty(), "closed without an answer: {rest:?}");
    // Counted as the connection ends; the close may reach the client first.
    eventually("the slow head counted", STEP, || async {
        stats.slow_request_heads() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keepalive_connection_is_parked_and_serves_its_next_request() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let stats = server.stats(WEB).await.unwrap();
    let mut client = within(
        "connect",
        STEP,
        Client::connect(addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();
    let keeps_alive = |response: &Response| {
        assert_eq!(response.status, StatusCode::OK, "{response:?}");
        assert!(
            !response.headers.contains_key("connection"),
            "no Connection: close: {response:?}"
        );
    };
    keeps_alive(&client.get("/", &[]).await.unwrap());
    // A backend slower than the parking delay: quiet, but a request is in
    // flight, so the connection must not be parked under it.
    keeps_alive(&client.get("/delay/1500", &[]).await.unwrap());

    // Idle: parked (HTTP state released), then woken by the next request
    // on the same connection, twice.
    for _ in 0..2 {
        within("parking", Duration::from_secs(5), async {
            while stats.connections_parked() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        keeps_alive(&client.get("/", &[]).await.unwrap());
        assert_eq!(stats.connections_parked(), 0);
    }
    assert_eq!(backend.served(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_1000_header_lines_get_431_and_990_pass() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    // Room in bytes (HTTP/2 also bounds a header block's HPACK size by
    // it), so that the line count is the limit met.
    config.limits.max_header_bytes = 256 * 1024;
    let (_server, addr) = start(&fx.store, vec![config]).await;
    for alpn in [HTTP11, H2] {
        let served = backend.served();
        for (lines, expected) in [
            (990, StatusCode::OK),
            (1010, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        ] {
            let names: Vec<String> = (0..lines).map(|i| format!("x{i}")).collect();
            let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
            let response = get(addr, fx.client_config(None, &[alpn]), "/", &headers)
                .await
                .unwrap();
            assert_eq!(response.status, expected, "{alpn:?}, {lines} header lines");
        }
        assert_eq!(
            backend.served(),
            served + 1,
            "{alpn:?}: only the 990 lines reach the backend"
        );
    }
}

/// Sends one raw HTTP/1.x request (with `connection: close`) and returns
/// the whole response as text.
async fn raw_exchange(addr: std::net::SocketAddr, fx: &Fixture, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within("response", STEP, tls.read_to_end(&mut response))
        .await
        .expect("the server ends the connection with close_notify");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_per_request_and_the_target_authority_wins() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    // RFC 9112 §3.2: 400, and the backend never sees the request.
    for (request, why) in [
        (
            "GET / HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nconnection: close\r\n\r\n",
            "more than one Host header",
        ),
        (
            "GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
            "needs a Host header",
        ),
        (
            "GET / HTTP/1.1\r\nhost: user@a.example\r\nconnection: close\r\n\r\n",
            "not a valid host[:port]",
        ),
        (
            "GET / HTTP/1.1\r\nhost: a.example/x\r\nconnection: close\r\n\r\n",
            "not a valid host[:port]",
        ),
    ] {
        let response = raw_exchange(addr, &fx, request).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{request:?}: {response}"
        );
        assert!(response.contains(why), "{request:?}: {response}");
    }
    assert_eq!(backend.served(), 0);

    // Absolute form: the target's authority is the host (RFC 9112 §3.2.2).
    let response = raw_exchange(
        addr,
        &fx,
        "GET http://b.example:8080/x?q HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let echo = Echo::parse(body);
    assert_eq!(echo.one("host"), Some("b.example:8080"));
    assert_eq!(echo.path, "/x");

    // HTTP/1.0 may leave Host out.
    let response = raw_exchange(addr, &fx, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");

    // HTTP/2: a Host beside :authority must name the same host (RFC 9113
    // §8.3.1); without one, :authority becomes the backend's Host.
    let served = backend.served();
    let response = get(
        addr,
        fx.client_config(None, &[H2]),
        "/",
        &[("host", "b.example")],
    )
    .await
    .unwrap();
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{response:?}");
    assert!(response.body.contains("different hosts"), "{response:?}");
    assert_eq!(backend.served(), served);
    let echo = get_ok(
        addr,
        fx.client_config(None, &[H2]),
        "/",
        &[("host", "LOCALHOST")],
    )
    .await;
    assert_eq!(echo.one("host"), Some("LOCALHOST"));
    let echo = get_ok(addr, fx.client_config(None, &[H2]), "/", &[]).await;
    assert_eq!(echo.one("host"), Some(HOST_NAME));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_max_header_bytes_get_431() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.limits.max_header_bytes = 1024;
    let (_server, addr) = start(&fx.store, vec![config]).await;

    // The limit is exact over the request line and header lines (R13):
    // "GET / HTTP/1.1\r\n" (16) + "host: localhost\r\n" (17) + "x-pad: …\r\n" (9 + N).
    let fits = 1024 - 16 - 17 - 9;
    for (pad, expected) in [
        (fits, StatusCode::OK),
        (fits + 1, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
    ] {
        let value = "p".repeat(pad);
        let response = get(
            addr,
            fx.client_config(None, &[HTTP11]),
            "/",
            &[("x-pad", &value)],
        )
        .await
        .unwrap();
        assert_eq!(response.status, expected, "{} header bytes", 42 + pad);
    }

    for alpn in [HTTP11, H2] {
        let small = "s".repeat(300);
        let echo = get_ok(
            addr,
            fx.client_config(None, &[alpn]),
            "/",
            &[("x-small", &small)],
        )
        .await;
        assert_eq!(echo.one("x-small"), Some(small.as_str()));

        let served = backend.served();
        for size in [1100, 4000, 20_000] {
            let big = "b".repeat(size);
            let response = get(
                addr,
                fx.client_config(None, &[alpn]),
                "/",
                &[("x-big", &big)],
            )
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "{alpn:?} with a {size}-byte header: expected 431, got {}",
                    describe(&*err)
                )
            });
            assert_eq!(
                response.status,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{alpn:?} with a {size}-byte header: {response:?}"
            );
        }
        assert_eq!(
            backend.served(),
            served,
            "oversized requests never reach a backend"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_headers_under_max_header_bytes_are_accepted() {
    // R13 limits request headers by size (max_header_bytes, default 64 KiB),
    // not by count: 150 headers of ~10 bytes are ~1.5 KiB.
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let names: Vec<String> = (0..150).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    for alpn in [H2, HTTP11] {
        let response = get(addr, fx.client_config(None, &[alpn]), "/", &headers)
            .await
            .unwrap();
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{} with 150 small headers (~1.5 KiB, limit 64 KiB): {response:?}",
            String::from_utf8_lossy(alpn)
        );
        assert_eq!(response.echo().all("x-h149"), ["v"]);
    }
}

/// A request whose body is still arriving when the request timeout ends
/// it is the client's slowness: 408, not a 504 that blames the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_request_timeout_gets_408() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.timeouts.request = Duration::from_millis(300);
    let (_server, addr) = start(&fx.store, vec![config]).await;
    // Two bytes of ten, then nothing.
    let response = raw_exchange(
        addr,
        &fx,
        "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\nab",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
}

/// An HTTP/2 connection with no stream for client_idle is closed (GOAWAY)
/// even though its client answers pings; one whose stream waits on a
/// slow backend is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_client_idle() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.timeouts.client_idle = Duration::from_millis(400);
    let (server, addr) = start(&fx.store, vec![config]).await;
    let mut client = Client::connect(addr, fx.client_config(None, &[H2]))
        .await
        .unwrap();
    assert_eq!(client.alpn.as_deref(), Some(&b"h2"[..]));
    // Waiting on the backend for longer than client_idle: not idle.
    let response = within("a slow request", STEP, client.get("/delay/1200", &[]))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    within("the idle close", STEP, client.closed()).await;
    let stats = server.stats(WEB).await.unwrap();
    eventually("the connection closed", STEP, || async {
        stats.connections_open() == 0
    })
    .await;
}

/// An HTTP/2 client that floods PRIORITY frames (each makes the server
/// work, none asks for anything) is disconnected and counted; a client
/// with requests on the same listener is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_control_frame_flood_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let stats = server.stats(WEB).await.unwrap();
    let mut tls = raw_tls(addr, fx.client_config(None, &[H2])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(H2));
    let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    flood.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    // PRIORITY on stream 1: depends on 0, weight 16.
    let priority = [0, 0, 5, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 15];
    for _ in 0..20_000 {
        flood.extend_from_slice(&priority);
    }
    // Written while the server may already be closing: errors are fine.
    let _ = tls.write_all(&flood).await;
    let mut sink = vec![0u8; 64 * 1024];
    within("the flood's connection closed", STEP, async {
        while matches!(tls.read(&mut sink).await, Ok(1..)) {}
    })
    .await;
    eventually("the flood counted", STEP, || async {
        stats.http2_floods() == 1
    })
    .await;
    let mut client = Client::connect(addr, fx.client_config(None, &[H2]))
        .await
        .unwrap();
    assert_eq!(client.get("/", &[]).await.unwrap().status, StatusCode::OK);
    assert_eq!(stats.http2_floods(), 1, "an ordinary client is no flood");
}

/// A client that asks for a large response and stops reading is dropped
/// once it has taken nothing for timeouts.request (NGINX: send_timeout),
/// and the backend connection behind it goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    // A backend whose every answer is 64 MiB: more than the sockets hold.
    let big = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let big_address = big.local_addr().unwrap();
    let served = tokio::spawn(async move {
        while let Ok((mut stream, _)) = big.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                const SIZE: usize = 64 << 20;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..SIZE >> 20 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[]);
    config.backends = vec![BackendConfig {
        address: big_address.to_string(),
        weight: 100,
    }];
    config.timeouts.request = Duration::from_millis(600);
    let (server, addr) = start(&fx.store, vec![config]).await;
    let stats = server.stats(WEB).await.unwrap();
    let mut tls = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    tls.write_all(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Never read: tlsgate's writes block once the socket buffers fill.
    eventually("the stalled connection dropped", STEP, || async {
        stats.connections_open() == 0
    })
    .await;
    drop(tls);
    served.abort();
}

/// A backend that stops reading a large body is the slow party, although
/// the body has not all gone: 504, not 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stops_reading_the_body_gets_504_not_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    // Accepts and never reads: the body fills the socket buffers, then
    // forwarding waits on the backend.
    let deaf = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let deaf_address = deaf.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = deaf.accept().await {
            held.push(stream);
        }
    });
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[]);
    config.backends = vec![BackendConfig {
        address: deaf_address.to_string(),
        weight: 100,
    }];
    config.timeouts.request = Duration::from_millis(500);
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let tls = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    let (mut read, mut write) = tokio::io::split(tls);
    const SIZE: usize = 32 << 20;
    let upload = tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: {SIZE}\r\n\r\n");
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..SIZE >> 20 {
            write.write_all(&chunk).await?;
        }
        std::io::Result::Ok(write)
    });
    let mut response = vec![0u8; 4096];
    let n = within("the response", STEP, read.read(&mut response))
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&response[..n]);
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    upload.abort();
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_slower_than_the_request_timeout_gets_504() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.timeouts.request = Duration::from_millis(300);
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let mut client = within(
        "connect",
        STEP,
        Client::connect(addr, fx.client_config(None, &[HTTP11])),
    )
    .await
    .unwrap();

    let started = Instant::now();
    let response = within("request", STEP, client.get("/delay/3000", &[]))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT, "{response:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "504 after the 300 ms timeout, not the backend's 3 s: {took:?}"
    );

    // A fast request on the same connection still works.
    let response = within("request", STEP, client.get("/fast", &[]))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
}

/// A client that leaves while its request waits on the backend takes the
/// backend request with it (as NGINX does by default): the backend sees its
/// connection close at once, rather than working for no one until it
/// answers or `timeouts.request` (60 s) runs out. hyper learns of the
/// client's leaving by reading the socket mid-request; `half_close` would
/// turn that read off (and save an 8 KiB buffer per request), so it stays off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_request_cancels_the_backend_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[]);
    config.backends = vec![BackendConfig {
        address: silent.local_addr().unwrap().to_string(),
        weight: 100,
    }];
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let mut tls = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    tls.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (mut backend, _) = within("the request reaches the backend", STEP, silent.accept())
        .await
        .unwrap();
    let mut request = vec![0u8; 4096];
    let n = within("the request", STEP, backend.read(&mut request))
        .await
        .unwrap();
    assert!(
        request[..n].starts_with(b"GET /slow HTTP/1.1\r\n"),
        "{:?}",
        &request[..n]
    );
    // The client goes away without waiting for the answer.
    drop(tls);
    let mut rest = Vec::new();
    let ended = within(
        "the backend connection closes",
        STEP,
        backend.read_to_end(&mut rest),
    )
    .await;
    assert!(
        ended.is_ok()
            || ended
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{ended:?}"
    );
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
}

/// `curl --http1.0` offers ALPN `http/1.0` alone, and old backends answer
/// `HTTP/1.0` and close. The handshake is accepted (not refused with
/// no_application_protocol), and the client is answered in tlsgate's own
/// version, HTTP/1.1, with its connection kept open: the backend's
/// `HTTP/1.0` status line passed on would close it after every response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_and_an_http10_backend_keep_the_client_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new();
    let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[]);
    config.backends = vec![BackendConfig {
        address: old.local_addr().unwrap().to_string(),
        weight: 100,
    }];
    // One connection per request, answered and closed, as HTTP/1.0 does.
    let backend = tokio::spawn(async move {
        loop {
            let (mut stream, _) = old.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
    });
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let mut tls = raw_tls(addr, fx.client_config(None, &[b"http/1.0"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));
    for i in 0..2 {
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let mut chunk = [0u8; 1024];
        while !(response.ends_with(b"\r\n\r\nok") || response.ends_with(b"0\r\n\r\n")) {
            let n = within("the response", STEP, tls.read(&mut chunk))
                .await
                .unwrap();
            assert!(
                n > 0,
                "request {i}: the connection closed after {response:?}"
            );
            response.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&response).to_lowercase();
        assert!(
            text.starts_with("http/1.1 200 ok\r\n"),
            "request {i}: {text}"
        );
        assert!(!text.contains("connection: close"), "request {i}: {text}");
    }
    backend.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gets_405_and_never_reaches_a_backend() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let mut client = Client::connect(addr, fx.client_config(None, &[HTTP11]))
        .await
        .unwrap();
    let response = client
        .request(
            http::Method::CONNECT,
            "app.example:443",
            &[],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.body.contains("CONNECT"), "{}", response.body);
    // The same connection still serves ordinary requests, from the backend.
    let response = client.get("/", &[]).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(backend.served(), 1, "only the GET reached the backend");
}
