//! The backend client against scripted raw-TCP backends: what goes on the
//! wire, how responses are framed, when connections are reused, and which
//! failures a request survives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt as _, Empty, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// What a scripted backend does next on a connection.
#[derive(Clone, Copy)]
enum Step {
    /// Read one request, then write these bytes.
    Answer(&'static [u8]),
    /// Read one request, then close without answering.
    ReadAndClose,
    /// Read one request head only, write these bytes (the whole answer,
    /// however large), then read the request body and report its length.
    AnswerBeforeBody(&'static [u8]),
    /// Close without reading anything (an idle connection the backend
    /// drops), then say "closed" on `requests`.
    Close,
    /// Read one request, write these bytes, then go silent with the
    /// connection open until the client closes it.
    AnswerThenStall(&'static [u8]),
    /// Read one request, write the head, then the body a byte every 100 ms.
    Trickle(&'static [u8], &'static [u8]),
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A backend on 127.0.0.1 whose `n`th accepted connection follows
/// `scripts[n]`, then closes. Every request it reads is sent on `requests`.
struct Scripted {
    address: Arc<str>,
    accepted: Arc<AtomicUsize>,
    requests: mpsc::UnboundedReceiver<String>,
}

impl Scripted {
    async fn start(scripts: Vec<Vec<Step>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: Arc<str> = listener.local_addr().unwrap().to_string().into();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, requests) = mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut scripts = VecDeque::from(scripts);
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let script = scripts.pop_front().unwrap_or_default();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    for step in script {
                        if let Step::Close = step {
                            drop(stream);
                            let _ = tx.send("closed".to_string());
                            return;
                        }
                        if let Step::AnswerBeforeBody(bytes) = step {
                            let mut chunk = vec![0u8; 65536];
                            while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                                let n = stream.read(&mut chunk).await.unwrap();
                                pending.extend_from_slice(&chunk[..n]);
                            }
                            stream.write_all(bytes).await.unwrap();
                            let end =
                                pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                            let mut body = pending.len() - end;
                            loop {
                                match stream.read(&mut chunk).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => body += n,
                                }
                            }
                            let _ = tx.send(format!("body of {body} bytes"));
                            return;
                        }
                        let Some(request) = read_request(&mut stream, &mut pending).await else {
                            return;
                        };
                        let _ = tx.send(request);
                        match step {
                            Step::Answer(bytes) => stream.write_all(bytes).await.unwrap(),
                            Step::AnswerThenStall(bytes) => {
                                stream.write_all(bytes).await.unwrap();
                                let mut rest = Vec::new();
                                let _ = stream.read_to_end(&mut rest).await;
                                return;
                            }
                            Step::Trickle(head, body) => {
                                stream.write_all(head).await.unwrap();
                                for byte in body.chunks(1) {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    stream.write_all(byte).await.unwrap();
                                }
                            }
                            Step::ReadAndClose | Step::AnswerBeforeBody(_) | Step::Close => {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Scripted {
            address,
            accepted,
            requests,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads one request (head, and a Content-Length or chunked body).
async fn read_request(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    let complete = |bytes: &[u8]| -> Option<usize> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        if head.contains("transfer-encoding: chunked") {
            let body = &bytes[end..];
            return body
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map(|p| end + p + 5);
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        (bytes.len() >= end + length).then_some(end + length)
    };
    loop {
        if let Some(length) = complete(pending) {
            let request: Vec<u8> = pending.drain(..length).collect();
            return Some(String::from_utf8_lossy(&request).into_owned());
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "app")
        .body(Empty::new())
        .unwrap()
}

/// A pool of connections to `backend`.
fn pool(backend: &Scripted) -> Arc<Upstream> {
    Arc::new(Upstream::new(Arc::clone(&backend.address)))
}

async fn send<B>(
    upstream: &Arc<Upstream>,
    request: Request<B>,
) -> Result<Response<BackendBody>, SendError<B>>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    upstream
        .send(
            Duration::from_secs(5),
            Duration::from_secs(5),
            request,
            b"",
            false,
        )
        .await
}

async fn body_of(response: Response<BackendBody>) -> Result<Vec<u8>, BackendBodyError> {
    Ok(response.into_body().collect().await?.to_bytes().to_vec())
}

fn failed<B>(result: Result<Response<BackendBody>, SendError<B>>) -> String {
    match result {
        Err(SendError::Failed(reason)) => reason,
        Err(SendError::NotSent(reason, _)) => panic!("expected Failed, got NotSent: {reason}"),
        Err(SendError::ClientBody(reason)) => panic!("expected Failed, got ClientBody: {reason}"),
        Ok(response) => panic!("expected Failed, got {}", response.status()),
    }
}

#[tokio::test]
async fn a_connection_is_reused_for_the_next_request() {
    let mut backend = Scripted::start(vec![vec![Step::Answer(OK), Step::Answer(OK)]]).await;
    let upstream = pool(&backend);
    for _ in 0..2 {
        let response = send(&upstream, get("/x?y=1")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response).await.unwrap(), b"ok");
    }
    assert_eq!(backend.accepted(), 1);
    let request = backend.requests.recv().await.unwrap();
    assert_eq!(request, "GET /x?y=1 HTTP/1.1\r\nhost: app\r\n\r\n");
}

#[tokio::test]
async fn a_chunked_body_streams_whole_and_the_connection_is_reused() {
    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let backend = Scripted::start(vec![vec![Step::Answer(CHUNKED), Step::Answer(OK)]]).await;
    let upstream = pool(&backend);
    let response = send(&upstream, get("/")).await.unwrap();
    // The client gets the body re-framed from the data, not the chunk
    // syntax: Transfer-Encoding is the backend hop's.
    assert!(!response.headers().contains_key("transfer-encoding"));
    assert_eq!(body_of(response).await.unwrap(), b"hello world");
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn a_body_delimited_by_close_is_read_to_the_end_and_the_connection_not_reused() {
    let backend = Scripted::start(vec![
        vec![Step::Answer(b"HTTP/1.1 200 OK\r\n\r\nall of it")],
        vec![Step::Answer(OK)],
    ])
    .await;
    let upstream = pool(&backend);
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"all of it");
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test]
async fn a_head_response_has_no_body_whatever_its_content_length() {
    let backend = Scripted::start(vec![vec![
        Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"),
        Step::Answer(OK),
    ]])
    .await;
    let upstream = pool(&backend);
    let head = Request::head("/").body(Empty::<Bytes>::new()).unwrap();
    let response = send(&upstream, head).await.unwrap();
    assert_eq!(response.headers()["content-length"], "1000");
    assert!(response.body().is_end_stream());
    assert_eq!(body_of(response).await.unwrap(), b"");
    let looks_before_reuse = || {
        let idle = upstream.idle.lock().unwrap();
        idle[0].conn.look_before_reuse
    };
    assert!(
        looks_before_reuse(),
        "a HEAD answer may be followed by a stray body"
    );
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert!(!looks_before_reuse());
    assert_eq!(backend.accepted(), 1);
}

/// Repeated Content-Length values that agree are one length, passed on
/// as one value: `5, 5` or two fields would make an HTTP/2 client reset
/// the stream as malformed. Also for a HEAD answer, which has no body.
#[tokio::test]
async fn agreeing_repeated_content_lengths_are_passed_on_as_one() {
    let backend = Scripted::start(vec![vec![
        Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello"),
        Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello"),
        Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 7,7\r\n\r\n"),
        Step::Answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
    ]])
    .await;
    let upstream = pool(&backend);
    for _ in 0..2 {
        let response = send(&upstream, get("/")).await.unwrap();
        let lengths: Vec<_> = response
            .headers()
            .get_all("content-length")
            .iter()
            .collect();
        assert_eq!(lengths, ["5"]);
        assert_eq!(body_of(response).await.unwrap(), b"hello");
    }
    let head = Request::head("/").body(Empty::<Bytes>::new()).unwrap();
    let response = send(&upstream, head).await.unwrap();
    let lengths: Vec<_> = response
        .headers()
        .get_all("content-length")
        .iter()
        .collect();
    assert_eq!(lengths, ["7"]);
    // A single value is passed on as it came.
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(response.headers()["content-length"], "5");
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn an_interim_100_continue_is_skipped() {
    let backend = Scripted::start(vec![vec![Step::Answer(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    )]])
    .await;
    let upstream = pool(&backend);
    let post = Request::post("/")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let response = send(&upstream, post).await.unwrap();
    assert_eq!(response.status(), 201);
}

/// A body of unknown length, as an HTTP/1.1 chunked upload arrives.
#[derive(Debug)]
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }
}

#[tokio::test]
async fn request_bodies_go_with_tlsgates_framing() {
    let mut backend = Scripted::start(vec![vec![Step::Answer(OK), Step::Answer(OK)]]).await;
    let upstream = pool(&backend);
    let post = Request::post("/up")
        .header("host", "app")
        .header("content-length", "999")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    send(&upstream, post).await.unwrap();
    assert_eq!(
        backend.requests.recv().await.unwrap(),
        "POST /up HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n\r\nhello"
    );
    let chunks = Chunks(VecDeque::from([
        Bytes::from_static(b"hello"),
        Bytes::from_static(b" world"),
    ]));
    let post = Request::post("/up")
        .header("host", "app")
        .body(chunks)
        .unwrap();
    let response = send(&upstream, post).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert_eq!(
        backend.requests.recv().await.unwrap(),
        "POST /up HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
}

#[tokio::test]
async fn a_get_on_a_pooled_connection_the_backend_dropped_goes_again_on_a_fresh_one() {
    let backend = Scripted::start(vec![
        vec![Step::Answer(OK), Step::ReadAndClose],
        vec![Step::Answer(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh",
        )],
    ])
    .await;
    let upstream = pool(&backend);
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"fresh");
    assert_eq!(backend.accepted(), 2);
}

/// A backend that answers one GET on a connection and then closes it while
/// it sits in the pool, and answers `next` on a second connection: the
/// pool holds the closed one when this returns.
async fn pooled_then_closed_while_idle(next: &'static [u8]) -> (Scripted, Arc<Upstream>) {
    let mut backend = Scripted::start(vec![
        vec![Step::Answer(OK), Step::Close],
        vec![Step::Answer(next)],
    ])
    .await;
    let upstream = pool(&backend);
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert_eq!(
        backend.requests.recv().await.unwrap(),
        "GET / HTTP/1.1\r\nhost: app\r\n\r\n"
    );
    assert_eq!(backend.requests.recv().await.unwrap(), "closed");
    (backend, upstream)
}

/// A GET on a connection the backend closed while it sat in the pool gets
/// a fresh connection, however recently that one was used: the close is an
/// event tokio saw, so the pooled connection is looked at and dropped.
#[tokio::test]
async fn a_get_on_a_connection_the_backend_closed_while_idle_goes_on_a_fresh_one() {
    let (backend, upstream) =
        pooled_then_closed_while_idle(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh").await;
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"fresh");
    assert_eq!(backend.accepted(), 2);
}

/// A POST cannot go again, so an idle connection is looked at before it
/// gets one: the backend having closed it costs a fresh connection, not a
/// failed request.
#[tokio::test]
async fn a_post_never_takes_a_connection_the_backend_closed_while_idle() {
    let (backend, upstream) = pooled_then_closed_while_idle(OK).await;
    let post = Request::post("/pay")
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    let response = send(&upstream, post).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert_eq!(backend.accepted(), 2);
}

#[tokio::test]
async fn a_post_the_backend_dropped_is_not_replayed() {
    let backend = Scripted::start(vec![
        vec![Step::Answer(OK), Step::ReadAndClose],
        vec![Step::Answer(OK)],
    ])
    .await;
    let upstream = pool(&backend);
    let response = send(&upstream, get("/")).await.unwrap();
    body_of(response).await.unwrap();
    let post = Request::post("/pay")
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    let reason = failed(send(&upstream, post).await);
    assert!(
        reason.contains("closed the connection without answering"),
        "{reason}"
    );
    assert_eq!(
        backend.accepted(),
        1,
        "the POST must not reach a second connection"
    );
}

#[tokio::test]
async fn a_fresh_connection_closed_without_an_answer_fails_the_request() {
    let backend = Scripted::start(vec![vec![Step::ReadAndClose]]).await;
    let upstream = pool(&backend);
    let reason = failed(send(&upstream, get("/")).await);
    assert!(reason.contains(&*backend.address), "{reason}");
    assert!(reason.contains("without answering"), "{reason}");
}

#[tokio::test]
async fn a_refused_connect_hands_the_request_back_unsent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: Arc<str> = listener.local_addr().unwrap().to_string().into();
    drop(listener);
    let upstream = Arc::new(Upstream::new(Arc::clone(&address)));
    let post = Request::post("/again")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    match send(&upstream, post).await {
        Err(SendError::NotSent(reason, request)) => {
            assert!(reason.contains(&*address), "{reason}");
            assert_eq!(request.uri(), "/again");
            let body = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"body");
        }
        Err(SendError::Failed(reason) | SendError::ClientBody(reason)) => {
            panic!("expected NotSent, got a failure: {reason}")
        }
        Ok(response) => panic!("expected NotSent, got {}", response.status()),
    }
}

#[tokio::test]
async fn a_body_cut_short_by_the_backend_is_an_error_not_a_short_body() {
    let backend = Scripted::start(vec![vec![Step::Answer(
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
    )]])
    .await;
    let upstream = pool(&backend);
    let response = send(&upstream, get("/")).await.unwrap();
    let err = body_of(response).await.unwrap_err();
    assert!(err.to_string().contains("before the body ended"), "{err}");
}

#[tokio::test]
async fn an_invalid_response_fails_the_request_with_the_reason() {
    let backend = Scripted::start(vec![vec![Step::Answer(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nx",
    )]])
    .await;
    let upstream = pool(&backend);
    let reason = failed(send(&upstream, get("/")).await);
    assert!(reason.contains("conflicting Content-Length"), "{reason}");
}

#[tokio::test]
async fn a_large_body_arrives_whole_and_in_order() {
    static LARGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let large = LARGE.get_or_init(|| {
        let body: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
        let mut response =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        response.extend_from_slice(&body);
        response
    });
    let backend = Scripted::start(vec![vec![
        Step::Answer(large),
        Step::Answer(OK),
        Step::Answer(OK),
    ]])
    .await;
    let upstream = pool(&backend);
    let pooled_buffer = || {
        let idle = upstream.idle.lock().unwrap();
        let pooled = &*idle;
        assert_eq!(pooled.len(), 1);
        pooled[0].conn.buf.capacity()
    };
    let response = send(&upstream, get("/1m")).await.unwrap();
    assert_eq!(response.body().size_hint().exact(), Some(1_048_576));
    let body = body_of(response).await.unwrap();
    assert_eq!(body.len(), 1_048_576);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    // An idle connection does not keep the buffer a large answer grew...
    assert_eq!(pooled_buffer(), 0);
    // ...but keeps a small one for the next answer.
    for _ in 0..2 {
        let response = send(&upstream, get("/")).await.unwrap();
        assert_eq!(body_of(response).await.unwrap(), b"ok");
        let capacity = pooled_buffer();
        assert!(capacity > 0 && capacity <= READ_SIZE, "{capacity}");
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test]
async fn a_backend_answering_before_reading_the_body_gets_it_while_its_answer_streams() {
    // 4 MiB each way: more than both sockets' buffers hold, so sending the
    // whole body before reading the answer would block both sides.
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let answer = ANSWER.get_or_init(|| {
        let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 4194304\r\n\r\n".to_vec();
        bytes.resize(bytes.len() + 4_194_304, b'a');
        bytes
    });
    let mut backend = Scripted::start(vec![
        vec![Step::AnswerBeforeBody(answer)],
        vec![Step::Answer(OK)],
    ])
    .await;
    let upstream = pool(&backend);
    let upload = Request::post("/echo")
        .body(Full::new(Bytes::from(vec![b'b'; 4_194_304])))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let response = send(&upstream, upload).await.unwrap();
        body_of(response).await.unwrap()
    })
    .await
    .expect("no deadlock between the upload and the answer");
    assert_eq!(response.len(), 4_194_304);
    let received = tokio::time::timeout(Duration::from_secs(10), backend.requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, "body of 4194304 bytes");
    // That connection is not reused: the next request opens another.
    let response = send(&upstream, get("/")).await.unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    assert_eq!(backend.accepted(), 2);
}

/// A connection pooled a moment ago goes to a GET without a read to look at
/// it, unless tokio saw it readable while idle (the backend closed it or
/// sent bytes nobody asked for), or its last answer had no body by rule
/// (HEAD, 204, 304) and a broken backend may have followed it with one.
#[tokio::test]
async fn a_recently_pooled_connection_is_looked_at_only_when_something_happened() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: Arc<str> = listener.local_addr().unwrap().to_string().into();
    let upstream = Upstream::new(Arc::clone(&address));
    let (listener, address_ref) = (&listener, &address);
    let pooled = move |look_before_reuse| async move {
        let client = TcpStream::connect(&**address_ref).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream = Arc::new(client);
        let conn = BackendConn {
            stream: stream.clone(),
            buf: BytesMut::new(),
            look_before_reuse,
            grown: false,
        };
        (conn, stream, server)
    };

    // Quiet since pooled: handed out.
    let (conn, _stream, _server) = pooled(false).await;
    upstream.put_idle(conn);
    assert!(upstream.take_idle(true).is_some());

    // Stray bytes after it was pooled: tokio sees them, the look finds
    // them, and the connection is closed instead.
    let (conn, stream, mut server) = pooled(false).await;
    upstream.put_idle(conn);
    server.write_all(b"stray").await.unwrap();
    stream.readable().await.unwrap();
    assert!(upstream.take_idle(true).is_none());

    // Closed by the backend after it was pooled: likewise.
    let (conn, stream, server) = pooled(false).await;
    upstream.put_idle(conn);
    drop(server);
    stream.readable().await.unwrap();
    assert!(upstream.take_idle(true).is_none());

    // After a bodiless answer, stray bytes that came before it was pooled
    // (no readiness left to see) are still found.
    let (conn, stream, mut server) = pooled(true).await;
    server.write_all(b"stray").await.unwrap();
    stream.readable().await.unwrap();
    upstream.put_idle(conn);
    assert!(upstream.take_idle(true).is_none());
}

#[tokio::test]
async fn a_204_or_304_answer_marks_the_connection_for_a_look_before_reuse() {
    let backend = Scripted::start(vec![vec![
        Step::Answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Step::Answer(OK),
        Step::Answer(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n"),
    ]])
    .await;
    let upstream = pool(&backend);
    let looks_before_reuse = || {
        let idle = upstream.idle.lock().unwrap();
        idle[0].conn.look_before_reuse
    };
    for expected in [true, false, true] {
        let response = send(&upstream, get("/")).await.unwrap();
        body_of(response).await.unwrap();
        assert_eq!(looks_before_reuse(), expected);
    }
    assert_eq!(backend.accepted(), 1);
}

/// A backend that stops sending in the middle of a body fails the body
/// after `timeouts.request` of silence instead of holding it open forever;
/// one that keeps sending, however slowly, is not cut off.
#[tokio::test]
async fn a_body_the_backend_stops_sending_fails_after_the_request_timeout() {
    let backend = Scripted::start(vec![
        vec![Step::AnswerThenStall(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        )],
        vec![Step::Trickle(
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n",
            b"slowly",
        )],
    ])
    .await;
    let upstream = pool(&backend);
    let limit = Duration::from_millis(300);
    let response = upstream
        .send(limit, limit, get("/stalls"), b"", false)
        .await
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), body_of(response))
        .await
        .expect("the stalled body never ended")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sent nothing for 300ms"), "{err}");
    assert!(started.elapsed() >= limit);
    // 600 ms in all, 100 ms between bytes: longer than this limit, but never
    // silent for it (generous, for a loaded CI machine).
    let limit = Duration::from_millis(450);
    let response = upstream
        .send(limit, limit, get("/trickles"), b"", false)
        .await
        .unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"slowly");
}

/// A pooled connection that fails while the request head is written never
/// delivered a request the backend could act on: the request goes again on
/// a fresh connection with its body, whatever its method.
#[tokio::test]
async fn a_post_whose_head_could_not_be_written_goes_again_with_its_body() {
    let mut backend = Scripted::start(vec![vec![Step::Answer(OK)]]).await;
    let upstream = pool(&backend);
    // A pooled connection that looks fine (nothing to read) but cannot be
    // written to: its sending side is shut.
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(elsewhere.local_addr().unwrap())
        .await
        .unwrap();
    let (_peer, _) = elsewhere.accept().await.unwrap();
    socket2::SockRef::from(&client)
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    upstream.put_idle(BackendConn {
        stream: Arc::new(client),
        buf: BytesMut::new(),
        look_before_reuse: false,
        grown: false,
    });
    let post = Request::post("/pay")
        .header("host", "app")
        .body(Full::new(Bytes::from_static(b"once")))
        .unwrap();
    // tlsgate's own header lines go with the head that goes again, once.
    let added = b"x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\n";
    let response = upstream
        .send(
            Duration::from_secs(5),
            Duration::from_secs(5),
            post,
            added,
            false,
        )
        .await
        .unwrap();
    assert_eq!(body_of(response).await.unwrap(), b"ok");
    let request = backend.requests.recv().await.unwrap();
    assert_eq!(
        request,
        "POST /pay HTTP/1.1\r\nhost: app\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\n\
         content-length: 4\r\n\r\nonce"
    );
    assert_eq!(backend.accepted(), 1);
}
