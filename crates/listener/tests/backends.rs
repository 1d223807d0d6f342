//! Schedulers, the passive check and active health checks (R10, R11),
//! through the public API, against real loopback sockets.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tlsgate_listener::{
    BackendConfig, BackendPool, HealthCheckConfig, HealthMethod, SchedulerKind, spawn_health_checks,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

const RR: SchedulerKind = SchedulerKind::RoundRobin;
const WRR: SchedulerKind = SchedulerKind::WeightedRoundRobin;
const WLC: SchedulerKind = SchedulerKind::WeightedLeastConnections;
const ALL_KINDS: [SchedulerKind; 3] = [RR, WRR, WLC];

/// Upper bound for any awaited event; a passing run takes far less.
const DEADLINE: Duration = Duration::from_secs(5);

fn backend(address: &str, weight: u8) -> BackendConfig {
    BackendConfig {
        address: address.into(),
        weight,
    }
}

/// Backends named a, b, c, … with these weights (never connected to).
fn named_pool(weights: &[u8], kind: SchedulerKind) -> BackendPool {
    let configs: Vec<_> = weights
        .iter()
        .zip('a'..)
        .map(|(&weight, name)| backend(&format!("{name}.invalid:80"), weight))
        .collect();
    BackendPool::new(&configs, kind, None)
}

/// Indices of `count` picks, each lease dropped at once.
fn sequence(pool: &BackendPool, count: usize) -> Vec<usize> {
    (0..count)
        .map(|_| pool.pick(&[]).expect("an eligible backend").index())
        .collect()
}

fn counts(pool: &BackendPool, picks: usize) -> Vec<usize> {
    let mut counts = vec![0; pool.backends().len()];
    for index in sequence(pool, picks) {
        counts[index] += 1;
    }
    counts
}

/// Waits (without polling) until `condition` holds, woken by health transitions.
async fn wait_until(pool: &BackendPool, what: &str, condition: impl Fn(&BackendPool) -> bool) {
    let mut events = pool.subscribe_health();
    let deadline = Instant::now() + DEADLINE;
    while !condition(pool) {
        timeout_at(deadline, events.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("pool alive");
    }
}

fn short_checks() -> HealthCheckConfig {
    HealthCheckConfig {
        path: "/healthz".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        ..HealthCheckConfig::default()
    }
}

// ---------------------------------------------------------------- schedulers

#[test]
fn round_robin_alternates() {
    let pool = named_pool(&[100, 100], RR);
    assert_eq!(sequence(&pool, 6), [0, 1, 0, 1, 0, 1]);
}

#[test]
fn round_robin_stays_fair_around_an_unhealthy_backend() {
    let pool = named_pool(&[100, 100, 100, 100], RR);
    pool.mark_connect_failure(0);
    pool.mark_connect_failure(1);
    // A plain counter modulo 4 would give backend 2 three turns in four.
    assert_eq!(sequence(&pool, 6), [2, 3, 2, 3, 2, 3]);
}

#[test]
fn round_robin_ignores_weights_except_zero() {
    let pool = named_pool(&[1, 0, 100], RR);
    assert_eq!(sequence(&pool, 4), [0, 2, 0, 2]);
}

#[test]
fn smooth_weighted_round_robin_interleaves() {
    let pool = named_pool(&[1, 2], WRR);
    assert_eq!(sequence(&pool, 6), [1, 0, 1, 1, 0, 1]);

    // nginx's example: 5, 1, 1 gives a a b a c a a, not a burst of five.
    let pool = named_pool(&[5, 1, 1], WRR);
    assert_eq!(sequence(&pool, 7), [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn weighted_round_robin_follows_weights() {
    let pool = named_pool(&[1, 2, 3], WRR);
    assert_eq!(counts(&pool, 600), [100, 200, 300]);

    let pool = named_pool(&[0, 30, 70], WRR);
    assert_eq!(counts(&pool, 1000), [0, 300, 700]);
}

#[test]
fn weighted_round_robin_reweighs_when_a_backend_leaves() {
    let pool = named_pool(&[1, 2, 3], WRR);
    pool.mark_connect_failure(2);
    assert_eq!(counts(&pool, 300), [100, 200, 0]);
}

#[test]
fn least_connections_prefers_fewer_leases() {
    let pool = named_pool(&[100, 100], WLC);
    let held = pool.pick(&[]).unwrap();
    let other = 1 - held.index();
    // While one lease is held, the other (idle) backend gets every request.
    for _ in 0..5 {
        assert_eq!(pool.pick(&[]).unwrap().index(), other);
    }
    drop(held);
    // Idle backends tie, and ties rotate.
    let picks = sequence(&pool, 4);
    assert!(picks == [0, 1, 0, 1] || picks == [1, 0, 1, 0], "{picks:?}");
}

#[test]
fn least_connections_weighs_connections() {
    let pool = named_pool(&[1, 3], WLC);
    // Leases held: the loads converge to in_flight proportional to weight.
    let leases: Vec<_> = (0..8).map(|_| pool.pick(&[]).unwrap()).collect();
    let on = |index| leases.iter().filter(|lease| lease.index() == index).count();
    assert_eq!((on(0), on(1)), (2, 6));
    assert_eq!(pool.backends()[0].in_flight(), 2);
    assert_eq!(pool.backends()[1].in_flight(), 6);
}

#[test]
fn weight_zero_drains_but_running_leases_finish() {
    let before = named_pool(&[100, 100], RR);
    let running = before.pick(&[]).unwrap();
    assert_eq!(running.index(), 0);

    // Reload with backend a drained.
    let configs = [backend("a.invalid:80", 0), backend("b.invalid:80", 100)];
    for kind in ALL_KINDS {
        let after = BackendPool::new(&configs, kind, Some(&before));
        assert_eq!(after.backends()[0].in_flight(), 1, "{kind:?}");
        assert_eq!(sequence(&after, 5), [1; 5], "{kind:?}");
    }
    drop(running);
    assert_eq!(before.backends()[0].in_flight(), 0);
}

#[test]
fn exclude_skips_backends() {
    for kind in ALL_KINDS {
        let pool = named_pool(&[100, 100, 100], kind);
        for _ in 0..6 {
            assert_eq!(pool.pick(&[0, 2]).unwrap().index(), 1, "{kind:?}");
        }
        let retry = pool.pick(&[1]).unwrap().index();
        assert_ne!(retry, 1, "{kind:?}");
        assert!(pool.pick(&[0, 1, 2]).is_none(), "{kind:?}");
        assert!(pool.any_eligible(), "exclude is per request");
    }
}

#[test]
fn nothing_eligible_gives_none() {
    for kind in ALL_KINDS {
        let pool = named_pool(&[100, 100], kind);
        pool.mark_connect_failure(0);
        assert!(pool.any_eligible());
        pool.mark_connect_failure(1);
        assert!(!pool.any_eligible(), "{kind:?}");
        // All out by the passive check: a request's first attempt still
        // tries one (NGINX does too), its retry nothing.
        let last = pool.pick(&[]).expect("a last resort").index();
        assert!(pool.pick(&[last]).is_none(), "{kind:?}");

        let drained = named_pool(&[0, 0], kind);
        assert!(drained.pick(&[]).is_none(), "{kind:?}");
        assert!(!drained.any_eligible(), "{kind:?}");

        let empty = BackendPool::new(&[], kind, None);
        assert!(empty.pick(&[]).is_none(), "{kind:?}");
        assert!(!empty.any_eligible(), "{kind:?}");
    }
}

#[test]
fn lease_counts_in_flight_until_dropped() {
    let pool = named_pool(&[100], RR);
    let first = pool.pick(&[]).unwrap();
    let second = pool.pick(&[]).unwrap();
    assert_eq!(&*first.backend().address, "a.invalid:80");
    assert_eq!(pool.backends()[0].in_flight(), 2);
    drop(first);
    assert_eq!(pool.backends()[0].in_flight(), 1);
    drop(second);
    assert_eq!(pool.backends()[0].in_flight(), 0);
}

#[test]
fn reload_keeps_state_of_kept_addresses_only() {
    let before = named_pool(&[100, 100, 100], RR);
    let lease_a = before.pick(&[]).unwrap();
    assert_eq!(lease_a.index(), 0);
    before.mark_connect_failure(1);

    // b moves to the front, c is removed, d is new.
    let configs = [
        backend("b.invalid:80", 100),
        backend("a.invalid:80", 50),
        backend("d.invalid:80", 100),
    ];
    let after = BackendPool::new(&configs, RR, Some(&before));
    let addresses: Vec<_> = after.backends().iter().map(|b| &*b.address).collect();
    assert_eq!(addresses, ["b.invalid:80", "a.invalid:80", "d.invalid:80"]);
    assert_eq!(after.backends()[1].weight, 50, "the new weight applies");
    assert!(!after.backends()[0].is_healthy(), "b stays out");
    assert_eq!(
        after.backends()[1].in_flight(),
        1,
        "a's running request is counted"
    );
    assert!(after.backends()[2].is_healthy() && after.backends()[2].in_flight() == 0);

    // The old lease ends after the reload; the new pool sees it end.
    drop(lease_a);
    assert_eq!(after.backends()[1].in_flight(), 0);

    // A request picked from the new pool is seen by a pool built after it.
    let lease = after.pick(&[]).unwrap();
    let third = BackendPool::new(&configs, WLC, Some(&after));
    assert_eq!(third.backends()[lease.index()].in_flight(), 1);

    // Without `previous`, everything starts afresh.
    let fresh = BackendPool::new(&configs, RR, None);
    assert!(
        fresh
            .backends()
            .iter()
            .all(|b| b.is_healthy() && b.in_flight() == 0)
    );
}

#[test]
fn passive_check_takes_a_backend_out_at_once() {
    for kind in ALL_KINDS {
        let pool = named_pool(&[100, 100], kind);
        let mut events = pool.subscribe_health();
        pool.mark_connect_failure(0);
        assert!(events.has_changed().unwrap());
        assert_eq!(*events.borrow_and_update(), 1);
        assert!(!pool.backends()[0].is_healthy());
        // The cooldown (10 s) is far away: only b gets traffic.
        assert_eq!(sequence(&pool, 10), [1; 10], "{kind:?}");
    }
}

// ------------------------------------------------------------ active checks

/// A loopback HTTP server answering every request with `status`, recording
/// each request head and each status it sent.
struct TestServer {
    address: String,
    status: Arc<AtomicU16>,
    heads: mpsc::UnboundedReceiver<String>,
    sent: Arc<Mutex<Vec<u16>>>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(status: u16) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let status = Arc::new(AtomicU16::new(status));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (heads_tx, heads) = mpsc::unbounded_channel();
        let task = tokio::spawn({
            let status = Arc::clone(&status);
            let sent = Arc::clone(&sent);
            async move {
                loop {
                    let (socket, _) = listener.accept().await.unwrap();
                    tokio::spawn(answer(
                        socket,
                        Arc::clone(&status),
                        Arc::clone(&sent),
                        heads_tx.clone(),
                    ));
                }
            }
        });
        TestServer {
            address,
            status,
            heads,
            sent,
            task,
        }
    }

    fn set_status(&self, status: u16) -> usize {
        let sent = self.sent.lock().unwrap();
        self.status.store(status, Ordering::SeqCst);
        sent.len()
    }

    /// How many times `status` was sent since position `from`.
    fn sent_since(&self, from: usize, status: u16) -> usize {
        let sent = self.sent.lock().unwrap();
        sent[from..].iter().filter(|&&s| s == status).count()
    }

    async fn next_head(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.heads.recv())
            .await
            .expect("a health check request")
            .expect("server running")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut socket: TcpStream,
    status: Arc<AtomicU16>,
    sent: Arc<Mutex<Vec<u16>>>,
    heads: mpsc::UnboundedSender<String>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
    let code = {
        // Recorded before the reply, so the pool can never see a status the
        // test's count does not include yet.
        let mut sent = sent.lock().unwrap();
        let code = status.load(Ordering::SeqCst);
        sent.push(code);
        code
    };
    let reply = format!("HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = socket.write_all(reply.as_bytes()).await;
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

/// Accepts connections and never answers (nor closes them).
async fn silent_server() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket);
        }
    });
    (address, task)
}

fn checked_pool(addresses: &[&str]) -> Arc<BackendPool> {
    let configs: Vec<_> = addresses.iter().map(|a| backend(a, 100)).collect();
    Arc::new(BackendPool::new(&configs, RR, None))
}

#[tokio::test]
async fn active_check_follows_the_thresholds_both_ways() {
    let server = TestServer::start(200).await;
    let pool = checked_pool(&[&server.address]);
    let events = pool.subscribe_health();
    let checks = spawn_health_checks(Arc::clone(&pool), short_checks());

    let from = server.set_status(503);
    wait_until(&pool, "unhealthy after 503s", |p| {
        !p.backends()[0].is_healthy()
    })
    .await;
    assert!(
        server.sent_since(from, 503) >= 2,
        "unhealthy_threshold is 2"
    );
    assert!(pool.pick(&[]).is_none());
    assert!(!pool.any_eligible());
    assert_eq!(*events.borrow(), 1, "one transition, logged once");

    let from = server.set_status(200);
    wait_until(&pool, "healthy after 200s", |p| {
        p.backends()[0].is_healthy()
    })
    .await;
    assert!(server.sent_since(from, 200) >= 2, "healthy_threshold is 2");
    assert_eq!(pool.pick(&[]).unwrap().index(), 0);
    assert_eq!(*events.borrow(), 2);
    checks.abort();
}

#[tokio::test]
async fn thresholds_are_counted_not_first_failure() {
    let server = TestServer::start(503).await;
    let pool = checked_pool(&[&server.address]);
    let config = HealthCheckConfig {
        unhealthy_threshold: 5,
        ..short_checks()
    };
    let checks = spawn_health_checks(Arc::clone(&pool), config);
    wait_until(&pool, "unhealthy", |p| !p.backends()[0].is_healthy()).await;
    assert!(server.sent_since(0, 503) >= 5);
    checks.abort();
}

#[tokio::test]
async fn closed_port_turns_unhealthy() {
    let address = closed_port().await;
    let pool = checked_pool(&[&address]);
    let checks = spawn_health_checks(Arc::clone(&pool), short_checks());
    wait_until(&pool, "unhealthy (refused)", |p| {
        !p.backends()[0].is_healthy()
    })
    .await;
    assert!(pool.pick(&[]).is_none());
    checks.abort();
}

#[tokio::test]
async fn silent_backend_turns_unhealthy_by_timeout() {
    let (address, server) = silent_server().await;
    let pool = checked_pool(&[&address]);
    let started = Instant::now();
    let checks = spawn_health_checks(Arc::clone(&pool), short_checks());
    wait_until(&pool, "unhealthy (timeout)", |p| {
        !p.backends()[0].is_healthy()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "two checks of 200 ms each must time out first"
    );
    checks.abort();
    server.abort();
}

#[tokio::test]
async fn a_hanging_backend_does_not_slow_the_checks_of_others() {
    let (silent, server) = silent_server().await;
    let refused = closed_port().await;
    let pool = checked_pool(&[&silent, &refused]);
    let config = HealthCheckConfig {
        timeout: Duration::from_secs(2),
        ..short_checks()
    };
    let checks = spawn_health_checks(Arc::clone(&pool), config);
    wait_until(&pool, "refused backend out", |p| {
        !p.backends()[1].is_healthy()
    })
    .await;
    // Its two checks took far less than one 2 s timeout of the silent one.
    assert!(pool.backends()[0].is_healthy());
    checks.abort();
    server.abort();
}

#[tokio::test]
async fn head_by_default_with_the_address_as_host() {
    let mut server = TestServer::start(200).await;
    let pool = checked_pool(&[&server.address]);
    let checks = spawn_health_checks(Arc::clone(&pool), short_checks());
    let head = server.next_head().await.to_ascii_lowercase();
    assert!(head.starts_with("head /healthz http/1.1\r\n"), "{head}");
    let host = format!("\r\nhost: {}\r\n", server.address);
    assert!(head.contains(&host), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    checks.abort();
}

#[tokio::test]
async fn get_with_a_configured_host() {
    let mut server = TestServer::start(200).await;
    let pool = checked_pool(&[&server.address]);
    let config = HealthCheckConfig {
        method: HealthMethod::Get,
        host: Some("app.example.com".into()),
        ..short_checks()
    };
    let checks = spawn_health_checks(Arc::clone(&pool), config);
    let head = server.next_head().await.to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: app.example.com\r\n"), "{head}");
    checks.abort();
}

#[tokio::test]
async fn accepted_status_classes_are_honoured() {
    // 404 with 4xx accepted: a backend that is out comes back.
    let server = TestServer::start(404).await;
    let pool = checked_pool(&[&server.address]);
    let accept_4xx = HealthCheckConfig {
        accepted: [false, false, false, true, false],
        ..short_checks()
    };
    let checks = spawn_health_checks(Arc::clone(&pool), accept_4xx);
    pool.mark_connect_failure(0);
    wait_until(&pool, "healthy on 404", |p| p.backends()[0].is_healthy()).await;
    checks.abort();

    // 404 with the default classes (2xx, 3xx): it goes out.
    let pool = checked_pool(&[&server.address]);
    let checks = spawn_health_checks(Arc::clone(&pool), short_checks());
    wait_until(&pool, "unhealthy on 404", |p| !p.backends()[0].is_healthy()).await;
    checks.abort();

    // 301 passes the default classes.
    let server = TestServer::start(301).await;
    let pool = checked_pool(&[&server.address]);
    let checks = spawn_health_checks(Arc::clone(&pool), short_checks());
    pool.mark_connect_failure(0);
    wait_until(&pool, "healthy on 301", |p| p.backends()[0].is_healthy()).await;
    checks.abort();
}

#[tokio::test]
async fn passive_ejection_is_undone_by_active_checks_only_after_the_threshold() {
    let server = TestServer::start(200).await;
    let pool = checked_pool(&[&server.address]);
    let config = HealthCheckConfig {
        healthy_threshold: 3,
        ..short_checks()
    };
    let checks = spawn_health_checks(Arc::clone(&pool), config);
    pool.mark_connect_failure(0);
    let from = server.set_status(200);
    assert!(pool.pick(&[]).is_none(), "out at once");
    wait_until(&pool, "back after successes", |p| {
        p.backends()[0].is_healthy()
    })
    .await;
    // A check answered just before the ejection may still count after it
    // (checks of one backend run one at a time, so at most one), hence
    // healthy_threshold - 1 answered after it.
    assert!(server.sent_since(from, 200) >= 2);
    checks.abort();
}

#[tokio::test]
async fn health_survives_a_reload_with_checks_restarted() {
    let server = TestServer::start(503).await;
    let before = checked_pool(&[&server.address]);
    let checks = spawn_health_checks(Arc::clone(&before), short_checks());
    wait_until(&before, "unhealthy", |p| !p.backends()[0].is_healthy()).await;
    checks.abort();

    // The reloaded pool starts with the backend still out …
    let configs = [backend(&server.address, 100)];
    let after = Arc::new(BackendPool::new(&configs, RR, Some(&before)));
    assert!(!after.backends()[0].is_healthy());
    assert!(!after.any_eligible());
    // … and its own checks bring it back.
    server.set_status(200);
    let checks = spawn_health_checks(Arc::clone(&after), short_checks());
    wait_until(&after, "healthy", |p| p.backends()[0].is_healthy()).await;
    checks.abort();
}
