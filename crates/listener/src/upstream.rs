//! Keep-alive HTTP/1.1 connections to backends (R13).
//!
//! tlsgate speaks HTTP/1.1 to its backends itself rather than through
//! hyper's client. hyper's client drives every backend connection from a
//! task of its own and hands requests, responses and body chunks across
//! channels: four or five task wake-ups per proxied request, each a trip
//! through the scheduler's queue. Here the request's own task writes the
//! request and reads the response, and the response body is read from the
//! backend socket by whichever task sends it to the client, so a request
//! costs its syscalls and no hand-offs (BENCHMARKS.md has the figures).
//!
//! Each backend of each listener has an [`Upstream`]: its pool of idle
//! connections, held by the backend's live state (backend.rs) so a request
//! reaches its pool without a lookup; idle connections expire after
//! [`IDLE_TIMEOUT`], and are closed when next the pool is used or when the
//! backend leaves the config. A connect failure hands the request back
//! unsent so it can go to another backend.

mod codec;

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response};
use tokio::net::TcpStream;

use codec::{ChunkedDecoder, Parsed, RequestFraming, ResponseFraming};

/// How long an idle backend connection is kept for reuse. Below the common
/// backend keep-alive timeouts (nginx 75 s, Apache 5 s is the outlier), so
/// the pool rarely hands out a connection the backend is about to close;
/// when it does, the request is retried on a fresh connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// A connection idle for less than this is handed to a request that can be
/// replayed without the peek that looks whether the backend closed it (a
/// syscall per request, ~4 % of a small request's CPU), when tokio has seen
/// no readiness on it since it was pooled: a close, or bytes nobody asked
/// for, raise one. What slips past (an event the runtime has not collected
/// yet) is a close the request is retried from like any stale connection,
/// or, rarely, stray bytes that fail the request with 502.
const TRUSTED_IDLE: Duration = Duration::from_secs(1);
/// Idle connections kept per backend of a listener: enough for the
/// concurrency of a busy HTTP/2 listener, whose streams each need a backend
/// connection.
const MAX_IDLE_PER_BACKEND: usize = 512;
/// Room made in a connection's buffer before each read from a backend.
const READ_SIZE: usize = 8 * 1024;
/// Below this much room, a read first grows the buffer (by what it wants,
/// `READ_SIZE` or more); above it, it reads into the room there is.
const MIN_READ_ROOM: usize = 2 * 1024;
/// The most read ahead for one large body frame.
const MAX_READ_SIZE: usize = 64 * 1024;

/// Why a request did not get a response.
#[derive(Debug)]
pub(crate) enum SendError<B = Incoming> {
    /// Nothing reached the backend (connect refused, timed out, DNS): the
    /// request is returned and may go to another backend.
    NotSent(String, Box<Request<B>>),
    /// The request was (partly) sent; it must not be replayed.
    Failed(String),
    /// The client's request body broke off or was malformed (a bad chunk,
    /// fewer bytes than its length) while it went to the backend: the
    /// client's fault, not the backend's. The backend connection is closed.
    ClientBody(String),
}

/// One connection to a backend, with what was read from it and not yet used.
#[derive(Debug)]
struct BackendConn {
    /// Shared with the task that finishes sending a request body when the
    /// backend answered before reading it all.
    stream: Arc<TcpStream>,
    buf: BytesMut,
    /// Its last answer had no body by rule (to a HEAD, or a 204 or 304): a
    /// broken backend may write one anyway, so the connection is looked at
    /// before it is used again, however recently it was pooled.
    look_before_reuse: bool,
    /// The buffer was grown past `READ_SIZE` for a large body. Its
    /// `capacity()` then says little about the allocation behind it (a
    /// view's tail of up to `MAX_READ_SIZE` or more), so it is not kept idle.
    grown: bool,
}

impl BackendConn {
    /// Reads what the backend has sent into the buffer. `Ok(0)`: the
    /// backend closed the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        // Only when the room left is small: reserving on every read would
        // allocate afresh each time a body frame still shares the buffer,
        // and a pooled connection's buffer serves many small responses
        // before it runs out of room.
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.grown |= want > READ_SIZE;
            self.buf.reserve(want);
        }
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read_buf(&mut self.buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, READ_SIZE)).await
    }

    /// Drops tokio's note that the socket was readable. Only while no
    /// request is outstanding: whatever the backend does after this (an
    /// answer to a request written later, a close, stray bytes) arrives as
    /// a new readiness event, and tokio never forgets a closed socket's
    /// read-closed state. Without it, the read after the next request
    /// goes to the kernel at once and mostly finds nothing yet: a syscall
    /// per request.
    fn forget_read_readiness(&self) {
        let _ = self.stream.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }

    /// Whether tokio has seen the socket readable since
    /// [`forget_read_readiness`](Self::forget_read_readiness), without a
    /// syscall.
    fn readable_since_pooled(&self) -> bool {
        self.stream
            .try_io(tokio::io::Interest::READABLE, || Ok(()))
            .is_ok()
    }

    /// Looks, without blocking, whether an idle connection is still usable:
    /// the backend has neither closed it nor sent anything unasked. A peek
    /// straight to the kernel: tokio's own reads skip the syscall while it
    /// holds no readiness, which put_idle dropped.
    fn is_reusable(&self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(&*self.stream).peek(&mut probe),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock
        )
    }
}

/// Writes all of `slices` to `stream`, in as few syscalls as it allows.
async fn write_all(stream: &TcpStream, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut slices = slices;
    while !slices.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

struct Idle {
    conn: BackendConn,
    since: Instant,
}

/// One backend address and its idle connections.
///
/// One per address per listener, kept across config reloads with the
/// backend's other live state: a request finds its pool through the
/// backend it was given, with no map to look it up in (a hashed lookup
/// and a lock shared by every backend of every listener, twice per
/// request, when the pools were one map).
pub(crate) struct Upstream {
    /// `host:port`, shared with the backend's config.
    pub(crate) address: Arc<str>,
    /// Oldest first.
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Why one exchange on one connection failed.
struct Failure {
    reason: String,
    /// The request can go again on another connection: nothing of its body
    /// was consumed, and the backend either got nothing or the method is
    /// idempotent (RFC 9110 §9.2.2) and no response byte came back.
    replayable: bool,
    /// The client's request body failed, not the backend.
    by_client: bool,
}

impl Upstream {
    /// The pool of connections to `address`, empty.
    pub(crate) fn new(address: Arc<str>) -> Self {
        Upstream {
            address,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle connection that is still usable.
    /// `replayable`: the request can go again if the connection turns out
    /// closed, so a recently used one is not probed.
    fn take_idle(&self, replayable: bool) -> Option<BackendConn> {
        let now = Instant::now();
        let mut list = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(entry) = list.pop() {
            let quiet = now.saturating_duration_since(entry.since);
            if quiet >= IDLE_TIMEOUT {
                continue;
            }
            if replayable
                && quiet < TRUSTED_IDLE
                && !entry.conn.look_before_reuse
                && !entry.conn.readable_since_pooled()
            {
                return Some(entry.conn);
            }
            if entry.conn.is_reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put_idle(&self, mut conn: BackendConn) {
        // An idle connection keeps at most a small read buffer (reused by
        // its next response, rather than allocated afresh each time): there
        // may be hundreds of idle connections.
        if conn.grown || conn.buf.capacity() > READ_SIZE {
            conn.buf = BytesMut::new();
            conn.grown = false;
        }
        // Nothing is outstanding now: tokio's note that the socket was
        // readable is left from reading this answer (which stopped at its
        // end, not at an empty socket). Dropped here, a note found at reuse
        // means the backend did something while idle: closed, or sent
        // bytes nobody asked for.
        conn.forget_read_readiness();
        let now = Instant::now();
        let entry = Idle { conn, since: now };
        let mut list = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: close the expired ones now rather than leave
        // sockets the backend has closed sitting in the pool.
        if let Some(cutoff) = now.checked_sub(IDLE_TIMEOUT) {
            let expired = list.partition_point(|e| e.since <= cutoff);
            list.drain(..expired);
        }
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push(entry);
        }
    }

    async fn connect(address: &str, timeout: Duration) -> Result<BackendConn, String> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(format!("connect to {address}: {err}")),
            Err(_) => return Err(format!("connect to {address}: timed out after {timeout:?}")),
        };
        // Requests are small and latency-bound; don't let Nagle hold them.
        let _ = stream.set_nodelay(true);
        Ok(BackendConn {
            stream: Arc::new(stream),
            buf: BytesMut::new(),
            look_before_reuse: false,
            grown: false,
        })
    }

    /// Sends `request` to this backend, reusing an idle connection when
    /// there is one. When a pooled connection turns out closed by the
    /// backend, the request goes again on a fresh connection if that is
    /// safe. `added`: header lines, in wire form, that go after the
    /// request's own (tlsgate's forwarded headers).
    /// `request_timeout` (`timeouts.request`) bounds sending the rest of a
    /// body the backend answered early, and each wait for the next byte of
    /// the response body. `upgrading`: the request asks the backend to
    /// switch protocols (its `Upgrade` and `Connection: upgrade` are among
    /// `added`); a 101 then makes the connection the response body's
    /// [`tunnel`](BackendBody::into_tunnel), never pooled again.
    pub(crate) async fn send<B>(
        self: &Arc<Self>,
        connect_timeout: Duration,
        request_timeout: Duration,
        request: Request<B>,
        added: &[u8],
        upgrading: bool,
    ) -> Result<Response<BackendBody>, SendError<B>>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let address = &self.address;
        let (parts, body) = request.into_parts();
        let framing = RequestFraming::of(body.is_end_stream(), body.size_hint().exact());
        let mut body = Some(body);
        let mut head = Vec::with_capacity(512);
        codec::encode_request_head(
            &parts.method,
            parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            &parts.headers,
            added,
            framing,
            address,
            &mut head,
        );
        let replayable = framing == RequestFraming::Empty && parts.method.is_idempotent();
        let mut pooled = self.take_idle(replayable);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => match Self::connect(address, connect_timeout).await {
                    Ok(conn) => conn,
                    Err(reason) => {
                        return Err(match body {
                            Some(body) => SendError::NotSent(
                                reason,
                                Box::new(Request::from_parts(parts, body)),
                            ),
                            // Not reached: a request whose body went out is not retried.
                            None => SendError::Failed(format!("{address}: {reason}")),
                        });
                    }
                },
            };
            let mut sent_body = if framing == RequestFraming::Empty {
                None
            } else {
                body.take()
            };
            let result = exchange(
                &mut conn,
                &head,
                &mut sent_body,
                framing,
                &parts.method,
                upgrading,
                request_timeout,
            )
            .await;
            // Still here when the head could not be written: the body can
            // go again with it.
            if sent_body.is_some() {
                body = sent_body;
            }
            match result {
                Ok((response, body_complete)) => {
                    let keep_alive = response.keep_alive && body_complete;
                    conn.look_before_reuse = parts.method == Method::HEAD
                        || matches!(
                            response.parts.status,
                            http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
                        );
                    let body = BackendBody::new(
                        conn,
                        response.framing,
                        keep_alive.then(|| Arc::clone(self)),
                        request_timeout,
                    );
                    return Ok(Response::from_parts(response.parts, body));
                }
                // Only a pooled connection is tried again: it may have been
                // closed by the backend while idle. A fresh one failing is
                // the backend's answer.
                Err(failure) if failure.by_client => {
                    return Err(SendError::ClientBody(failure.reason));
                }
                Err(failure) if reused && failure.replayable => {}
                Err(failure) => {
                    return Err(SendError::Failed(format!("{address}: {}", failure.reason)));
                }
            }
        }
    }
}

/// Writes one request on `conn` and reads the response head. Also says
/// whether the request body was sent whole before the answer came.
///
/// The body is sent while the answer is awaited, as a backend may answer
/// before reading it all (a 401 or 413, or a streaming echo whose output
/// fills the socket while its input does). If the head arrives first, the
/// rest of the body is sent by a task of its own, for at most
/// `send_timeout`, and the connection is not reused. `body` is taken only
/// once the head is written.
async fn exchange<B>(
    conn: &mut BackendConn,
    head: &[u8],
    body: &mut Option<B>,
    framing: RequestFraming,
    method: &Method,
    upgrading: bool,
    send_timeout: Duration,
) -> Result<(codec::ResponseHead, bool), Failure>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let idempotent = method.is_idempotent();
    if let Err(err) = write_all(&conn.stream, &mut [IoSlice::new(head)]).await {
        return Err(Failure {
            reason: format!("sending the request: {err}"),
            // Whatever the method: the backend got at most part of the
            // head, not a request it could act on, and the body is still
            // the caller's.
            replayable: true,
            by_client: false,
        });
    }
    let body = body.take();
    let body_touched = body.is_some();
    let mut sending = body.map(|body| Box::pin(send_body(Arc::clone(&conn.stream), body, framing)));
    let mut body_complete = true;
    let mut write_failure = None;
    let mut scanned = 0;
    loop {
        match codec::parse_response_head(&conn.buf, method, upgrading, &mut scanned) {
            Ok(Parsed::Complete(response, length)) => {
                conn.buf.advance(length);
                if let Some(rest) = sending {
                    body_complete = false;
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(send_timeout, rest).await;
                    });
                }
                return Ok((response, body_complete));
            }
            Ok(Parsed::Interim(length)) => {
                conn.buf.advance(length);
                scanned = 0;
                continue;
            }
            Ok(Parsed::Partial) => {}
            Err(reason) => {
                return Err(Failure {
                    reason,
                    replayable: false,
                    by_client: false,
                });
            }
        }
        let read = match sending.as_mut() {
            Some(send) => tokio::select! {
                biased;
                read = conn.fill() => read,
                sent = send => {
                    sending = None;
                    match sent {
                        Ok(()) => {}
                        Err(BodyFailure::Client(reason)) => {
                            return Err(Failure {
                                reason,
                                replayable: false,
                                by_client: true,
                            });
                        }
                        Err(BodyFailure::Backend(reason)) => {
                            body_complete = false;
                            write_failure = Some(reason);
                        }
                    }
                    continue;
                }
            },
            None => conn.fill().await,
        };
        let reason = match read {
            Ok(0) if conn.buf.is_empty() => {
                "the backend closed the connection without answering".to_string()
            }
            Ok(0) => "the backend closed the connection in the middle of the response head".into(),
            Ok(_) => continue,
            Err(err) => format!("reading the response: {err}"),
        };
        return Err(Failure {
            reason: write_failure.unwrap_or(reason),
            replayable: conn.buf.is_empty() && idempotent && !body_touched,
            by_client: false,
        });
    }
}

/// Why a request body did not reach the backend whole.
enum BodyFailure {
    /// The client's side: its body broke off or did not match its length.
    Client(String),
    /// Writing to the backend failed (it may have answered and closed).
    Backend(String),
}

/// Streams the client's request body to the backend in `framing`.
async fn send_body<B>(
    stream: Arc<TcpStream>,
    mut body: B,
    framing: RequestFraming,
) -> Result<(), BodyFailure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut sent: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            BodyFailure::Client(format!("reading the client's request body: {err}"))
        })?;
        let Ok(data) = frame.into_data() else {
            // Trailers: HTTP/1.1 backends rarely want them; not forwarded.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        let written = match framing {
            RequestFraming::Length(length) if sent > length => {
                return Err(BodyFailure::Client(
                    "the client sent more body than its Content-Length".into(),
                ));
            }
            RequestFraming::Chunked => {
                let size = codec::chunk_size_line(data.len());
                write_all(
                    &stream,
                    &mut [
                        IoSlice::new(&size),
                        IoSlice::new(&data),
                        IoSlice::new(b"\r\n"),
                    ],
                )
                .await
            }
            _ => write_all(&stream, &mut [IoSlice::new(&data)]).await,
        };
        written.map_err(|err| BodyFailure::Backend(format!("sending the request body: {err}")))?;
    }
    match framing {
        RequestFraming::Length(length) if sent != length => Err(BodyFailure::Client(
            "the client's request body ended before its Content-Length".into(),
        )),
        RequestFraming::Chunked => write_all(&stream, &mut [IoSlice::new(codec::LAST_CHUNK)])
            .await
            .map_err(|err| BodyFailure::Backend(format!("sending the request body: {err}"))),
        _ => Ok(()),
    }
}

/// A backend response body, read from the backend connection as the
/// client takes it. Once it has been read to its end, the connection goes
/// back to the pool (if the backend allows keep-alive).
#[derive(Debug)]
pub(crate) struct BackendBody {
    state: BodyState,
}

#[derive(Debug)]
enum BodyState {
    /// The whole body was already read; the connection is back in the pool.
    Whole(Option<Bytes>),
    /// More to read from the backend.
    Reading {
        conn: BackendConn,
        framing: Reading,
        /// Where the connection goes back to, when keep-alive is allowed.
        pool: Option<Arc<Upstream>>,
        silence: Silence,
    },
    /// Ended.
    Done,
    /// None: the backend switched protocols (101); the connection is the
    /// tunnel's.
    Switched(BackendConn),
}

/// How long a response body may wait for its next byte from the backend
/// (NGINX's `proxy_read_timeout`): a backend that stalls mid-body must not
/// hold the client's stream, and the connection, forever.
#[derive(Debug)]
struct Silence {
    limit: Duration,
    /// Made on the first wait: most bodies never wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes came since the timer was set: the next wait counts afresh
    /// from when it starts (after the client, however slow, took what
    /// they made).
    rearm: bool,
}

impl Silence {
    fn new(limit: Duration) -> Self {
        Silence {
            limit,
            timer: None,
            rearm: false,
        }
    }

    fn progressed(&mut self) {
        self.rearm = true;
    }

    /// Polled while the backend has nothing to read: ready once it has
    /// been silent for the limit.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.rearm {
            self.rearm = false;
            if let Some(timer) = &mut self.timer {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.limit);
            }
        }
        let limit = self.limit;
        self.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)))
            .as_mut()
            .poll(cx)
    }
}

#[derive(Debug)]
enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// A backend broke off a response body.
#[derive(Debug, thiserror::Error)]
#[error("backend response body: {0}")]
pub(crate) struct BackendBodyError(String);

impl BackendBody {
    /// `read_timeout`: the longest wait for the next byte of the body.
    fn new(
        mut conn: BackendConn,
        framing: ResponseFraming,
        pool: Option<Arc<Upstream>>,
        read_timeout: Duration,
    ) -> Self {
        let framing = match framing {
            // Most responses are small and arrive with their head: take
            // the body whole and give the connection back at once.
            ResponseFraming::Length(length) if (conn.buf.len() as u64) >= length => {
                let body = conn.buf.split_to(length as usize).freeze();
                release(conn, pool);
                let body = (!body.is_empty()).then_some(body);
                return BackendBody {
                    state: BodyState::Whole(body),
                };
            }
            ResponseFraming::Length(length) => Reading::Length(length),
            ResponseFraming::Chunked => Reading::Chunked(ChunkedDecoder::default()),
            ResponseFraming::UntilClose => Reading::UntilClose,
            ResponseFraming::Switched => {
                return BackendBody {
                    state: BodyState::Switched(conn),
                };
            }
        };
        BackendBody {
            state: BodyState::Reading {
                conn,
                framing,
                pool,
                silence: Silence::new(read_timeout),
            },
        }
    }

    /// The backend connection of a 101 response, and what the backend sent
    /// right behind the 101, for a tunnel; `None` for any other response.
    pub(crate) fn into_tunnel(self) -> Option<(TcpStream, BytesMut)> {
        let BodyState::Switched(conn) = self.state else {
            return None;
        };
        // Shared only with a task still sending a request body, and an
        // upgrade is only forwarded for a request without one.
        let stream = Arc::try_unwrap(conn.stream).ok()?;
        Some((stream, conn.buf))
    }

    /// Ends the body: the connection goes back to the pool.
    fn finish(&mut self) {
        if let BodyState::Reading { conn, pool, .. } =
            std::mem::replace(&mut self.state, BodyState::Done)
        {
            release(conn, pool);
        }
    }
}

/// Puts `conn` back in its pool if keep-alive is allowed and the backend
/// sent nothing past the response; otherwise it closes.
fn release(conn: BackendConn, pool: Option<Arc<Upstream>>) {
    if let Some(upstream) = pool {
        if conn.buf.is_empty() {
            upstream.put_idle(conn);
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BackendBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            let (conn, framing, silence) = match &mut this.state {
                BodyState::Whole(body) => {
                    return Poll::Ready(body.take().map(|b| Ok(Frame::data(b))));
                }
                BodyState::Done | BodyState::Switched(_) => return Poll::Ready(None),
                BodyState::Reading {
                    conn,
                    framing,
                    silence,
                    ..
                } => (conn, framing, silence),
            };
            // Hand out what is buffered first.
            let (data, ended) = match framing {
                Reading::Length(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    *left -= take as u64;
                    let data = (take > 0).then(|| conn.buf.split_to(take).freeze());
                    (data, *left == 0)
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(data) => (data, decoder.is_done()),
                    Err(reason) => {
                        this.state = BodyState::Done;
                        return Poll::Ready(Some(Err(BackendBodyError(reason))));
                    }
                },
                Reading::UntilClose => {
                    let data = (!conn.buf.is_empty()).then(|| conn.buf.split().freeze());
                    (data, false)
                }
            };
            if ended {
                this.finish();
                return Poll::Ready(data.map(|data| Ok(Frame::data(data))));
            }
            if let Some(data) = data {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let want = match framing {
                Reading::Length(left) => usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .clamp(READ_SIZE, MAX_READ_SIZE),
                _ => READ_SIZE,
            };
            let filled = match conn.poll_fill(cx, want) {
                Poll::Ready(filled) => filled,
                Poll::Pending => {
                    if silence.poll_expired(cx).is_ready() {
                        let limit = silence.limit;
                        this.state = BodyState::Done;
                        return Poll::Ready(Some(Err(BackendBodyError(format!(
                            "the backend sent nothing for {limit:?} in the middle of the body (timeouts.request: raise it for a backend that pauses on purpose)"
                        )))));
                    }
                    return Poll::Pending;
                }
            };
            match filled {
                Ok(0) if matches!(framing, Reading::UntilClose) => {
                    this.state = BodyState::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.state = BodyState::Done;
                    return Poll::Ready(Some(Err(BackendBodyError(
                        "the backend closed the connection before the body ended".into(),
                    ))));
                }
                Ok(_) => silence.progressed(),
                Err(err) => {
                    this.state = BodyState::Done;
                    return Poll::Ready(Some(Err(BackendBodyError(format!(
                        "reading from the backend: {err}"
                    )))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Whole(body) => body.is_none(),
            BodyState::Reading { .. } => false,
            BodyState::Done | BodyState::Switched(_) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Whole(Some(body)) => SizeHint::with_exact(body.len() as u64),
            BodyState::Whole(None) | BodyState::Done | BodyState::Switched(_) => {
                SizeHint::with_exact(0)
            }
            BodyState::Reading {
                framing: Reading::Length(left),
                ..
            } => SizeHint::with_exact(*left),
            BodyState::Reading { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
