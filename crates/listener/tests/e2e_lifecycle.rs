//! End to end, a listener over time (R13, R14, R16): a certificate swapped
//! on disk under load, graceful shutdown with a request in flight, and junk
//! connections that must not starve real clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tlsgate_cert_store::CertKind;
use tlsgate_test_pki::Validity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const HTTP11: &[u8] = b"http/1.1";

// ---------------------------------------------------------------------------
// Hot swap (R16, R17)
// ---------------------------------------------------------------------------

/// Fresh-connection requests made concurrently by the load.
const WORKERS: usize = 4;
/// The load makes at least this many requests…
const MIN_REQUESTS: usize = 300;
/// …and at least this many after the new certificate is live…
const AFTER_SWAP: usize = 50;
/// …but never more than this.
const MAX_REQUESTS: usize = 3000;

#[derive(Default)]
struct Load {
    started: AtomicUsize,
    stop: AtomicBool,
    old_leaf: AtomicUsize,
    new_leaf: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_under_load_drops_no_request() {
    let fx = Fixture::new();
    let _watcher = fx.store.watch().unwrap();
    let mut events = fx.store.subscribe();
    let backend = Backend::start("a").await;
    let (_server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&backend])],
    )
    .await;
    let config = fx.client_config(None, &[HTTP11]);
    let old_leaf = fx.server.leaf.cert_der().to_vec();
    let new = fx
        .server
        .intermediate
        .server(&[HOST_NAME], KEY, Validity::Normal);
    let new_leaf = new.cert_der().to_vec();

    // A keep-alive connection from before the swap.
    let mut open = within("connect", STEP, Client::connect(addr, config.clone()))
        .await
        .unwrap();
    assert_eq!(open.leaf(), old_leaf.as_slice());

    let load = Arc::new(Load::default());
    let (done_tx, mut done_rx) = watch::channel(0usize);
    let done_tx = Arc::new(done_tx);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (load, done_tx, config) = (load.clone(), done_tx.clone(), config.clone());
        let (old_leaf, new_leaf) = (old_leaf.clone(), new_leaf.clone());
        workers.push(tokio::spawn(async move {
            while !load.stop.load(Ordering::SeqCst)
                && load.started.fetch_add(1, Ordering::SeqCst) < MAX_REQUESTS
            {
                let outcome = async {
                    let mut client = Client::connect(addr, config.clone()).await?;
                    let response = client.get("/load", &[]).await?;
                    Ok::<_, BoxError>((client.leaf().to_vec(), response))
                };
                match tokio::time::timeout(STEP, outcome).await {
                    Ok(Ok((leaf, response))) if response.status == StatusCode::OK => {
                        if leaf == old_leaf {
                            load.old_leaf.fetch_add(1, Ordering::SeqCst);
                        } else if leaf == new_leaf {
                            load.new_leaf.fetch_add(1, Ordering::SeqCst);
                        } else {
                            load.failures
                                .lock()
                                .unwrap()
                                .push("served an unknown leaf".into());
                        }
                    }
                    Ok(Ok((_, response))) => {
                        load.failures.lock().unwrap().push(format!("{response:?}"))
                    }
                    Ok(Err(err)) => load.failures.lock().unwrap().push(describe(&*err)),
                    Err(_) => load.failures.lock().unwrap().push("timed out".into()),
                }
                done_tx.send_modify(|done| *done += 1);
            }
        }));
    }

    // Swap once the load is running: key then chain, each written to a
    // temporary file and renamed into place.
    within(
        "load warming up",
        STEP,
        done_rx.wait_for(|done| *done >= 50),
    )
    .await
    .unwrap();
    write_server(&fx.store_dir(), WWW, &new, &[fx.server.intermediate.cert()]);
    let written = Instant::now();
    Fixture::loaded(&mut events, CertKind::Server, WWW).await;
    assert!(
        written.elapsed() < Duration::from_secs(1),
        "R16: live within a second, took {:?}",
        written.elapsed()
    );
    let at_swap = *done_rx.borrow();
    within(
        "load after the swap",
        Duration::from_secs(30),
        done_rx.wait_for(|done| *done >= MIN_REQUESTS.max(at_swap + AFTER_SWAP)),
    )
    .await
    .unwrap();
    load.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        within("worker", STEP, worker).await.unwrap();
    }

    let failures = load.failures.lock().unwrap().clone();
    let (old, new_count) = (
        load.old_leaf.load(Ordering::SeqCst),
        load.new_leaf.load(Ordering::SeqCst),
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the swap: {failures:?}",
        failures.len(),
        old + new_count + failures.len()
    );
    assert!(
        old > 0 && new_count > 0,
        "the load saw both certificates: old {old}, new {new_count}"
    );

    // New connections get the new leaf…
    let client = within("connect", STEP, Client::connect(addr, config.clone()))
        .await
        .unwrap();
    assert_eq!(client.leaf(), new_leaf.as_slice());
    // …and the connection opened before keeps its certificate and works.
    let response = within("request on the old connection", STEP, open.get("/", &[]))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(open.leaf(), old_leaf.as_slice());
}

// ---------------------------------------------------------------------------
// Graceful shutdown (R14)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_and_refuses_new_connections() {
    let fx = Fixture::new();
    let slow = Backend::start("slow").await;
    let (server, addr) = start(
        &fx.store,
        vec![listener(WEB, https(&[WWW], "tls12", None), &[&slow])],
    )
    .await;
    let config = fx.client_config(None, &[HTTP11]);
    let mut arrivals = slow.arrivals();

    let in_flight = tokio::spawn(get(addr, config.clone(), "/delay/2000", &[]));
    let path = within(
        "the slow request reaching the backend",
        STEP,
        arrivals.recv(),
    )
    .await
    .unwrap();
    assert_eq!(path, "/delay/2000");

    let shutdown_started = Instant::now();
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    // The listening socket closes as soon as shutdown begins.
    eventually(
        "new connections refused after shutdown began",
        Duration::from_secs(2),
        || async { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "connections were refused while the request was still in flight"
    );
    assert!(
        get(addr, config.clone(), "/", &[]).await.is_err(),
        "a new request after shutdown began must fail"
    );

    let response = within("the in-flight request", STEP, in_flight)
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("in-flight request failed: {}", describe(&*err)));
    assert_eq!(response.status, StatusCode::OK, "{response:?}");
    assert_eq!(response.echo().path, "/delay/2000");

    within("shutdown to return after the drain", STEP, shutdown)
        .await
        .unwrap();
    assert!(
        shutdown_started.elapsed() < Duration::from_secs(5),
        "drained as soon as the request finished, not at the drain deadline"
    );
    assert!(server.listeners().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_waiting_at_the_drain_deadline() {
    let fx = Fixture::new();
    let slow = Backend::start("slow").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&slow]);
    config.timeouts.shutdown_drain = Duration::from_millis(300);
    let (server, addr) = start(&fx.store, vec![config]).await;
    let mut arrivals = slow.arrivals();
    let in_flight = tokio::spawn(get(
        addr,
        fx.client_config(None, &[HTTP11]),
        "/delay/5000",
        &[],
    ));
    within(
        "the slow request reaching the backend",
        STEP,
        arrivals.recv(),
    )
    .await
    .unwrap();

    let started = Instant::now();
    within("shutdown", STEP, server.shutdown()).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2000),
        "shutdown waits for the drain deadline (300 ms), not for the 5 s request: {took:?}"
    );
    // Past the deadline the remaining connections are closed ("finish
    // in-flight requests up to a deadline, then exit"): the request must end
    // now, without the backend's answer, not be proxied on for seconds more.
    let outcome = tokio::time::timeout(Duration::from_secs(2), in_flight).await;
    match outcome {
        Err(_) => panic!(
            "the in-flight request was still being served 2 s after shutdown() returned at its \
             300 ms drain deadline: the remaining connections were not closed"
        ),
        Ok(joined) => {
            if let Ok(response) = joined.unwrap() {
                panic!("the request outlived the drain deadline: {response:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_clients_wait_in_the_accept_queue() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.limits.max_connections = 2;
    let (_server, addr) = start(&fx.store, vec![config]).await;
    let client = fx.client_config(None, &[HTTP11]);

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut open = within("connect", STEP, Client::connect(addr, client.clone()))
            .await
            .unwrap();
        let response = within("request", STEP, open.get("/", &[])).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        held.push(open);
    }
    let mut third = tokio::spawn(get(addr, client.clone(), "/third", &[]));
    // A bounded wait that must run out: the third client is queued, not served…
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a third connection was served while max_connections = 2 were open"
    );
    // …and not refused: it is served as soon as a slot frees up.
    held.pop();
    let response = within("the queued client", STEP, third)
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("queued client failed: {}", describe(&*err)));
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.echo().path, "/third");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_max_connections_both_ways_without_cutting_any() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.limits.max_connections = 3;
    let (server, addr) = start(&fx.store, vec![config.clone()]).await;
    let client = fx.client_config(None, &[HTTP11]);
    let hold = || async {
        let mut open = within("connect", STEP, Client::connect(addr, client.clone()))
            .await
            .unwrap();
        let response = within("request", STEP, open.get("/", &[])).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        open
    };
    let mut held = vec![hold().await, hold().await];

    // Lowered below what is open: nothing is cut, new clients wait.
    config.limits.max_connections = 1;
    within("apply", STEP, server.apply(vec![config.clone()]))
        .await
        .unwrap();
    let mut waiting = tokio::spawn(get(addr, client.clone(), "/waiting", &[]));
    // Bounded waits that must run out: the client is queued.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "served with 2 open and the limit lowered to 1"
    );
    for open in &mut held {
        let response = within("request", STEP, open.get("/", &[])).await.unwrap();
        assert_eq!(
            response.status,
            StatusCode::OK,
            "open connections keep serving"
        );
    }
    held.pop();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "served with 1 open and a limit of 1"
    );
    held.pop();
    let response = within("the waiting client", STEP, waiting)
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("queued client failed: {}", describe(&*err)));
    assert_eq!(response.status, StatusCode::OK);

    // Raised: three at once.
    config.limits.max_connections = 3;
    within("apply", STEP, server.apply(vec![config]))
        .await
        .unwrap();
    let _three = [hold().await, hold().await, hold().await];
}

// ---------------------------------------------------------------------------
// Robustness (R13)
// ---------------------------------------------------------------------------

/// Deterministic noise (xorshift), so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Reads until the server closes the connection; `Err` if it does not
/// within `limit`.
async fn closed_by_server(
    stream: &mut TcpStream,
    limit: Duration,
) -> std::result::Result<(), String> {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {limit:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            // An alert, perhaps; keep reading until the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_silent_connections_do_not_starve_real_clients() {
    let fx = Fixture::new();
    let backend = Backend::start("a").await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[&backend]);
    config.timeouts.handshake = Duration::from_secs(1);
    let (server, addr) = start(&fx.store, vec![config]).await;
    let client = fx.client_config(None, &[HTTP11]);

    // 100 connections that send noise (some of it may look like the start
    // of a TLS record, so the server waits for more) and 100 that send nothing.
    let mut noisy = Vec::new();
    let mut silent = Vec::new();
    for i in 0..100u64 {
        let mut stream = within("connect", STEP, TcpStream::connect(addr))
            .await
            .unwrap();
        // A write may fail if the server already dropped it; that is fine.
        let _ = stream
            .write_all(&noise(i + 1, 64 + (i as usize % 7) * 100))
            .await;
        noisy.push(stream);
        silent.push(
            within("connect", STEP, TcpStream::connect(addr))
                .await
                .unwrap(),
        );
    }
    let junk_opened = Instant::now();

    // Real clients keep getting answers, promptly, while the junk is held.
    for i in 0..20 {
        let started = Instant::now();
        let echo = get_ok(addr, client.clone(), &format!("/real/{i}"), &[]).await;
        assert_eq!(echo.backend, "a");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "request {i} took {:?} with junk connections open",
            started.elapsed()
        );
    }
    assert!(
        junk_opened.elapsed() < Duration::from_secs(1),
        "the real requests ran while the silent connections were still held"
    );

    // The junk goes away: noise at once, silence at the 1 s handshake timeout.
    for (kind, streams) in [("noisy", &mut noisy), ("silent", &mut silent)] {
        for (i, stream) in streams.iter_mut().enumerate() {
            if let Err(err) = closed_by_server(stream, Duration::from_secs(5)).await {
                panic!("{kind} connection {i}: {err}");
            }
        }
    }
    // Every junk connection is a failed handshake (counted just after the
    // server closes it); every silent one timed out.
    let stats = server.stats(WEB).await.unwrap();
    eventually(
        "200 failed handshakes counted, 100 of them timeouts",
        Duration::from_secs(2),
        || async {
            let failures = stats.handshake_failures();
            let timed_out = failures.get("handshake timed out").copied().unwrap_or(0);
            failures.values().sum::<u64>() >= 200 && timed_out >= 100
        },
    )
    .await;
    drop(noisy);
    drop(silent);
    eventually(
        "no connection left open",
        Duration::from_secs(3),
        || async { stats.connections_open() == 0 },
    )
    .await;

    // And the listener still serves.
    get_ok(addr, client, "/after", &[]).await;
}
