//! End to end, WebSocket and other HTTP/1.1 upgrades through a listener:
//! the upgrade request reaches the backend with its `Upgrade`, the
//! backend's 101 reaches the client, and then bytes go both ways unchanged
//! until either side closes or the tunnel has been idle for
//! `timeouts.tunnel_idle`. A declined upgrade is an ordinary response.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tlsgate_listener::{BackendConfig, Server, Timeouts};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const HTTP11: &[u8] = b"http/1.1";

/// What the test backend first sends through a tunnel, in the same write
/// as its 101: the client must get it although it arrived with the head.
const GREETING: &[u8] = b"hello from the backend";

const UPGRADE_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// What the backend saw: each request head, and "closed" when a tunnel's
/// client side ended.
type Seen = mpsc::UnboundedReceiver<String>;

/// Reads one head (up to the empty line) byte by byte, so nothing after it
/// is consumed. `None` at the end of the stream.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).to_ascii_lowercase())
}

/// A backend that accepts WebSocket upgrades (`accept`: otherwise it
/// answers 426) and then echoes what it reads; other requests get 200 and
/// keep-alive.
async fn websocket_backend(accept: bool) -> (String, Seen) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap().to_string();
    let (seen, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = socket.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut stream).await {
                    let _ = seen.send(head.clone());
                    if !head.contains("upgrade: websocket") {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .unwrap();
                        continue;
                    }
                    if !accept {
                        stream
                            .write_all(b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 4\r\n\r\nnope")
                            .await
                            .unwrap();
                        continue;
                    }
                    let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec();
                    answer.extend_from_slice(GREETING);
                    stream.write_all(&answer).await.unwrap();
                    let (mut from, mut to) = stream.split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    let _ = seen.send("closed".into());
                    return;
                }
            });
        }
    });
    (address, rx)
}

/// A listener in front of a [`websocket_backend`], and a client
/// connection to it.
struct Setup {
    _fx: Fixture,
    server: Arc<Server>,
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    /// What the backend saw.
    seen: Seen,
}

/// `accept`: whether the backend accepts upgrades; `timeouts`: changes to
/// the listener's defaults.
async fn connected(accept: bool, timeouts: impl FnOnce(&mut Timeouts)) -> Setup {
    let fx = Fixture::new();
    let (address, seen) = websocket_backend(accept).await;
    let mut config = listener(WEB, https(&[WWW], "tls12", None), &[]);
    config.backends = vec![BackendConfig {
        address,
        weight: 100,
    }];
    timeouts(&mut config.timeouts);
    let (server, addr) = start(&fx.store, vec![config]).await;
    let tls = raw_tls(addr, fx.client_config(None, &[HTTP11])).await;
    Setup {
        _fx: fx,
        server,
        tls,
        seen,
    }
}

/// Reads the response head, and returns it with the bytes that came after it.
async fn response_head<S: AsyncRead + Unpin>(tls: &mut S) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return (String::from_utf8_lossy(&got).to_ascii_lowercase(), rest);
        }
        let n = within("the response head", STEP, tls.read(&mut chunk))
            .await
            .unwrap();
        assert!(n > 0, "closed before a whole head: {got:?}");
        got.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a response with a body of `len` bytes: its head, and its body.
async fn response<S: AsyncRead + Unpin>(tls: &mut S, len: usize) -> (String, Vec<u8>) {
    let (head, mut body) = response_head(tls).await;
    if body.len() < len {
        body.extend(read_exactly(tls, len - body.len()).await);
    }
    (head, body)
}

/// Reads exactly `len` bytes.
async fn read_exactly<S: AsyncRead + Unpin>(tls: &mut S, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    within("tunnel bytes", STEP, tls.read_exact(&mut data))
        .await
        .unwrap();
    data
}

async fn send<S: AsyncWrite + Unpin>(tls: &mut S, data: &[u8]) {
    tls.write_all(data).await.unwrap();
    tls.flush().await.unwrap();
}

async fn next(seen: &mut Seen) -> String {
    within("the backend", STEP, seen.recv()).await.unwrap()
}

/// Asks to switch on `tls` and waits until it has: the backend got the
/// request, the client the 101 and the backend's greeting.
async fn switch<S: AsyncRead + AsyncWrite + Unpin>(tls: &mut S, seen: &mut Seen) {
    send(tls, UPGRADE_REQUEST).await;
    next(seen).await;
    let (head, mut early) = response_head(tls).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    if early.len() < GREETING.len() {
        early.extend(read_exactly(tls, GREETING.len() - early.len()).await);
    }
    assert_eq!(early, GREETING);
}

/// Reads to the end of `tls`, which must come with close_notify and
/// nothing before it.
async fn closed_cleanly<S: AsyncRead + Unpin>(tls: &mut S, what: &str) {
    let mut rest = Vec::new();
    within(what, STEP, tls.read_to_end(&mut rest))
        .await
        .expect("closed with close_notify");
    assert!(rest.is_empty(), "{what}: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_passed_on_and_carries_bytes_both_ways() {
    let mut c = connected(true, |_| {}).await;
    // The client's first message in the same write as its request: it
    // reaches tlsgate with the head, before there is a tunnel to carry it.
    let mut first_write = UPGRADE_REQUEST.to_vec();
    first_write.extend_from_slice(b"eager");
    send(&mut c.tls, &first_write).await;

    // The backend gets the upgrade, with tlsgate's forwarded headers.
    let request = next(&mut c.seen).await;
    assert!(request.starts_with("get /chat http/1.1\r\n"), "{request}");
    for line in [
        "connection: upgrade\r\n",
        "upgrade: websocket\r\n",
        "sec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n",
        "sec-websocket-version: 13\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-forwarded-proto: https\r\n",
    ] {
        assert!(request.contains(line), "{line:?} missing in {request}");
    }
    assert!(!request.contains("keep-alive"), "{request}");

    // The client gets the 101, and the backend's first bytes behind it.
    let (head, mut early) = response_head(&mut c.tls).await;
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    // Then the eager message, echoed: it went through after the switch.
    // (It may have come in the same read as the head.)
    let expected = [GREETING, b"eager"].concat();
    if early.len() < expected.len() {
        let more = read_exactly(&mut c.tls, expected.len() - early.len()).await;
        early.extend_from_slice(&more);
    }
    assert_eq!(early, expected);

    // Both ways, small and large, unchanged.
    send(&mut c.tls, b"ping").await;
    assert_eq!(read_exactly(&mut c.tls, 4).await, b"ping");
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut reader, mut writer) = tokio::io::split(c.tls);
    let (sent, echoed) = tokio::join!(send(&mut writer, &large), async {
        read_exactly(&mut reader, large.len()).await
    });
    let () = sent;
    assert!(echoed == large, "the large message came back changed");

    // The client closes: the backend sees the end, and the client's side
    // ends cleanly (close_notify, not a cut connection).
    let mut tls = reader.unsplit(writer);
    tls.shutdown().await.unwrap();
    assert_eq!(next(&mut c.seen).await, "closed");
    closed_cleanly(&mut tls, "the end of the tunnel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_backend_declines_is_an_ordinary_response() {
    let mut c = connected(false, |_| {}).await;
    send(&mut c.tls, UPGRADE_REQUEST).await;
    assert!(next(&mut c.seen).await.contains("upgrade: websocket"));
    let (head, body) = response(&mut c.tls, 4).await;
    assert!(head.starts_with("http/1.1 426 "), "{head}");
    // Hop-by-hop: not passed on outside a switch.
    assert!(!head.contains("\r\nupgrade:"), "{head}");
    assert_eq!(body, b"nope");
    // The connection goes on as HTTP, and when the client asks to close
    // it, it ends with close_notify (hyper leaves a connection that once
    // asked for an upgrade open at its end; tlsgate closes it).
    send(
        &mut c.tls,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!next(&mut c.seen).await.contains("upgrade"));
    let mut rest = Vec::new();
    within("the last response", STEP, c.tls.read_to_end(&mut rest))
        .await
        .expect("the connection ends with close_notify");
    let text = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200 "), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_or_one_without_connection_upgrade_is_not_passed_on() {
    let mut c = connected(true, |_| {}).await;
    for request in [
        &b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n"[..],
    ] {
        send(&mut c.tls, request).await;
        let forwarded = next(&mut c.seen).await;
        assert!(!forwarded.contains("upgrade"), "{forwarded}");
        assert!(!forwarded.contains("http2-settings"), "{forwarded}");
        let (head, body) = response(&mut c.tls, 2).await;
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        assert_eq!(body, b"ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_stays_open_while_used_and_closes_after_tunnel_idle() {
    let mut c = connected(true, |t| t.tunnel_idle = Duration::from_millis(400)).await;
    switch(&mut c.tls, &mut c.seen).await;
    // Traffic every 150 ms for three times the idle limit: the pauses are
    // the scenario (a chat that stays busy), not a synchronisation.
    for i in 0..8u8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        send(&mut c.tls, &[i]).await;
        assert_eq!(read_exactly(&mut c.tls, 1).await, [i], "message {i}");
    }
    // Then silence: tlsgate closes both sides.
    closed_cleanly(&mut c.tls, "the idle tunnel's end").await;
    assert_eq!(next(&mut c.seen).await, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_tunnels_at_once_and_cleanly() {
    // A drain far beyond the test's patience: the tunnel must not wait for it.
    let mut c = connected(true, |t| t.shutdown_drain = Duration::from_secs(60)).await;
    let stats = c.server.stats(WEB).await.unwrap();
    switch(&mut c.tls, &mut c.seen).await;
    send(&mut c.tls, b"up").await;
    assert_eq!(read_exactly(&mut c.tls, 2).await, b"up");
    assert_eq!(stats.tunnels_open(), 1);

    let shutdown = tokio::spawn({
        let server = c.server.clone();
        async move { server.shutdown().await }
    });
    closed_cleanly(&mut c.tls, "the tunnel's end on shutdown").await;
    assert_eq!(next(&mut c.seen).await, "closed");
    within("shutdown", STEP, shutdown).await.unwrap();
    assert_eq!(stats.tunnels_open(), 0);
}
