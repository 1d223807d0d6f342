//! HTTP/1.1 client connections that give their buffers back while idle.
//!
//! hyper keeps its read buffer (8 KiB, more after a large head), its write
//! buffer and its connection state for as long as a keep-alive connection
//! lives, which for thousands of idle browsers is most of a proxy's memory. After
//! [`PARK_AFTER`] without traffic and with no request in flight, the hyper
//! connection is ended without closing the socket (`without_shutdown`),
//! and the connection waits holding only the TLS stream. The client's next
//! byte starts a new hyper connection on the same socket, with that byte
//! (and anything hyper had read ahead) replayed in front of the stream.
//! The client sees one ordinary keep-alive connection throughout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::Timeouts;
use crate::h2_flood::FrameCount;
use crate::stats::ListenerStats;
use crate::tunnel::{Tunnel, TunnelEnd, TunnelSlot};

/// How often an active connection looks whether it has been quiet (no
/// bytes either way, no request in flight) since the last look; it parks
/// between one and two of these after its last traffic. NGINX frees an
/// idle connection's buffers at once; half a second keeps the cost of
/// parking off connections that are between a browser's requests, and
/// the look itself (a timer) off busy ones.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(500);

/// Counts requests between the service being called and its response
/// being produced; the response body's streaming shows up as traffic.
/// Also holds the tunnel a 101 response opened, for the connection to
/// take up after hyper has written the 101.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    now: AtomicUsize,
    started: AtomicU64,
    tunnel: TunnelSlot,
}

impl InFlight {
    /// Marks a request as started until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.now.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.now.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// See [`InFlight::enter`].
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl InFlightGuard {
    /// This request's response is a 101: once it is written, the client
    /// connection becomes `tunnel` (HTTP/1.1 only).
    pub(crate) fn switch_to(&self, tunnel: Tunnel) {
        self.0.tunnel.put(tunnel);
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the client stream has been doing, as the parker needs to know it.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Reads and writes that moved data.
    events: AtomicU64,
    /// The last data moved was read from the client: a request head may be
    /// half in, and hyper would answer it with `Connection: close` if it
    /// were told to stop now.
    last_was_read: AtomicBool,
    /// A write or flush is waiting for the client to read: hyper still
    /// holds response bytes.
    write_blocked: AtomicBool,
    /// hyper began closing the stream (close_notify, FIN).
    shut: AtomicBool,
    /// The client flooded HTTP/2 control frames; its reads now fail.
    flooded: AtomicBool,
}

impl Activity {
    /// Whether [`ClientIo::with_flood_guard`] ended the stream.
    pub(crate) fn flooded(&self) -> bool {
        self.flooded.load(Ordering::Relaxed)
    }

    fn read(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.last_was_read.store(true, Ordering::Relaxed);
    }

    fn wrote<T>(&self, result: &Poll<io::Result<T>>, moved: impl Fn(&T) -> bool) {
        match result {
            Poll::Ready(Ok(value)) => {
                self.write_blocked.store(false, Ordering::Relaxed);
                if moved(value) {
                    self.events.fetch_add(1, Ordering::Relaxed);
                    self.last_was_read.store(false, Ordering::Relaxed);
                }
            }
            Poll::Pending => self.write_blocked.store(true, Ordering::Relaxed),
            Poll::Ready(Err(_)) => {}
        }
    }

    /// Nothing moved since `seen`, no request is half read and no response
    /// is half written.
    fn quiet(&self, seen: u64) -> bool {
        self.events.load(Ordering::Relaxed) == seen
            && !self.last_was_read.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
    }
}

/// Looks, at regular intervals, whether a connection's writes have been
/// blocked with nothing moving for `limit`: a client that stopped reading
/// (or vanished without a FIN) would otherwise hold its connection, and the
/// backend connection behind it, for as long as it liked (NGINX:
/// `send_timeout`).
#[derive(Debug)]
pub(crate) struct SendStall {
    limit: Duration,
    stalled: Duration,
    seen: u64,
}

impl SendStall {
    pub(crate) fn new(limit: Duration) -> SendStall {
        SendStall {
            limit,
            stalled: Duration::ZERO,
            seen: 0,
        }
    }

    /// One look, `every` after the last: true once writes have been
    /// blocked, with no byte moved either way, for `limit`.
    pub(crate) fn look(&mut self, activity: &Activity, every: Duration) -> bool {
        let events = activity.events.load(Ordering::Relaxed);
        if activity.write_blocked.load(Ordering::Relaxed) && events == self.seen {
            self.stalled += every;
        } else {
            self.stalled = Duration::ZERO;
        }
        self.seen = events;
        self.stalled >= self.limit
    }
}

/// The client stream, with bytes to replay before it, reporting what it
/// does to [`Activity`].
pub(crate) struct ClientIo<IO> {
    io: IO,
    replay: Bytes,
    activity: Arc<Activity>,
    /// HTTP/2 only: the client's frames, for the flood guard.
    frames: Option<FrameCount>,
}

impl<IO> ClientIo<IO> {
    /// `io`, reporting to `activity`.
    pub(crate) fn new(io: IO, activity: Arc<Activity>) -> ClientIo<IO> {
        ClientIo {
            io,
            replay: Bytes::new(),
            activity,
            frames: None,
        }
    }

    /// `io` carrying HTTP/2, whose reads fail once the client floods
    /// control frames (`h2_flood`), with `activity.flooded()` set.
    pub(crate) fn with_flood_guard(io: IO, activity: Arc<Activity>) -> ClientIo<IO> {
        ClientIo {
            frames: Some(FrameCount::new()),
            ..ClientIo::new(io, activity)
        }
    }

    /// Puts `bytes` (read from the stream but not used) back in front of
    /// whatever is still to be replayed.
    fn unread(&mut self, bytes: Bytes) {
        self.replay = if self.replay.is_empty() {
            bytes
        } else {
            [bytes, std::mem::take(&mut self.replay)].concat().into()
        };
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ClientIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            self.activity.read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
            if let Some(frames) = &mut this.frames {
                frames.read(&buf.filled()[before..]);
                if frames.flooded() {
                    this.activity.flooded.store(true, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "HTTP/2 control frame flood",
                    )));
                }
            }
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ClientIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.activity.wrote(&result, |n| *n > 0);
        count_written(&mut this.frames, &result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.activity.wrote(&result, |n| *n > 0);
        count_written(&mut this.frames, &result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.activity.wrote(&result, |()| false);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.activity.shut.store(true, Ordering::Relaxed);
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Response bytes sent widen an HTTP/2 client's allowance for control
/// frames (a downloading client sends WINDOW_UPDATEs in proportion).
fn count_written(frames: &mut Option<FrameCount>, result: &Poll<io::Result<usize>>) {
    if let (Some(frames), Poll::Ready(Ok(n))) = (frames, result) {
        frames.wrote(*n);
    }
}

/// Closes a connection hyper no longer holds the way hyper would have:
/// TLS close_notify, then the TCP FIN, bounded so a client that stopped
/// reading cannot hold the task.
async fn close<IO: AsyncWrite + Unpin>(io: &mut IO) {
    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
}

/// How an HTTP/1.1 connection ended, when hyper did not end it with an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Http1End {
    /// The client left, went idle or the listener drained.
    Closed,
    /// A request head was still arriving when `client_idle` ran out (a
    /// stalled or deliberately slow client, slowloris): closed, counted.
    SlowHead,
    /// The client took no response bytes for the send timeout: dropped.
    SendStalled,
}

/// Serves HTTP/1.1 on `io` until the client leaves, `timeouts.client_idle` passes
/// without a request, or `draining` turns true (then in-flight requests
/// finish and the connection closes).
pub(crate) async fn serve_http1<IO, S, B>(
    io: IO,
    builder: http1::Builder,
    mut service: S,
    in_flight: Arc<InFlight>,
    timeouts: Timeouts,
    mut draining: watch::Receiver<bool>,
    stats: &ListenerStats,
) -> Result<Http1End, hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::default());
    let mut io = ClientIo::new(io, Arc::clone(&activity));
    // A client that takes no response bytes for this long is dropped: the
    // same bound as a backend's silence in the middle of a body.
    let mut stall = SendStall::new(timeouts.request);
    loop {
        if *draining.borrow() {
            close(&mut io).await;
            return Ok(Http1End::Closed);
        }
        // Active: hyper serves requests; every PARK_AFTER, a look at
        // whether anything happened since the last look. Boxed apart from
        // this future, so a parked connection holds none of hyper's state.
        let mut connection = Box::new(builder.serve_connection(TokioIo::new(io), service));
        let mut seen = activity.events.load(Ordering::Relaxed);
        let mut parking: Option<u64> = None;
        let mut shutting_down = false;
        loop {
            tokio::select! {
                done = std::future::poll_fn(|cx| {
                    if parking.is_some() {
                        // Keep the socket: it is about to be parked.
                        connection.poll_without_shutdown(cx)
                    } else {
                        // hyper's own ending: flush, close_notify, FIN.
                        Pin::new(&mut *connection).poll(cx)
                    }
                }) => {
                    if let Err(err) = done {
                        // hyper's header-read timer (client_idle) runs from
                        // the end of one response; the last bytes moved
                        // being the client's means a head was half in.
                        // Otherwise it was idle, and an idle close is normal.
                        if err.is_timeout() && activity.last_was_read.load(Ordering::Relaxed) {
                            stats.slow_request_head();
                            return Ok(Http1End::SlowHead);
                        }
                        return Err(err);
                    }
                    break;
                }
                changed = draining.changed(), if !shutting_down => {
                    if changed.is_err() || *draining.borrow() {
                        shutting_down = true;
                        Pin::new(&mut *connection).graceful_shutdown();
                    }
                }
                () = tokio::time::sleep(PARK_AFTER), if parking.is_none() => {
                    if stall.look(&activity, PARK_AFTER) {
                        // Dropped, not closed: a close_notify would wait
                        // behind the bytes it does not take either.
                        return Ok(Http1End::SendStalled);
                    }
                    if !shutting_down && activity.quiet(seen) && in_flight.is_idle() {
                        // Quiet, nothing half read or half written, nothing
                        // in flight: hyper is between requests, so this ends
                        // it without a response being cut or marked
                        // `Connection: close`.
                        parking = Some(in_flight.started());
                        Pin::new(&mut *connection).graceful_shutdown();
                    }
                    seen = activity.events.load(Ordering::Relaxed);
                }
            }
        }
        let Some(started_before) = parking else {
            let tunnel = in_flight.tunnel.take();
            // hyper stops without closing the stream when the last response
            // was a 101, and also (it never forgets an upgrade asked for)
            // whenever a request on the connection carried `Upgrade` or was
            // a CONNECT, forwarded as an upgrade or not.
            let open = !activity.shut.load(Ordering::Relaxed);
            let parts = (*connection).into_parts();
            io = parts.io.into_inner();
            match tunnel {
                // A 101 while draining: hyper marked it `Connection: close`
                // too; close rather than start what draining would end.
                Some(tunnel) if !shutting_down => {
                    // The client's bytes behind its request come first.
                    io.unread(parts.read_buf);
                    let moved = || activity.events.load(Ordering::Relaxed);
                    let counted = stats.tunnel_opened();
                    let end = tunnel.run(&mut io, moved, &mut draining).await;
                    drop(counted);
                    match end {
                        Ok(TunnelEnd::Closed) => {}
                        Ok(TunnelEnd::Idle | TunnelEnd::Draining) => close(&mut io).await,
                        Err(err) => {
                            tracing::debug!(error = %err, "tunnel ended with an error");
                        }
                    }
                }
                _ if open => close(&mut io).await,
                _ => {}
            }
            return Ok(Http1End::Closed);
        };
        // Taken apart in a block of its own so the box and hyper's read
        // buffer (an empty `read_buf` still owns its 8 KiB) are freed here,
        // not at the end of this iteration, after the connection was parked.
        let read_buf = {
            let connection = connection;
            let parts = (*connection).into_parts();
            io = parts.io.into_inner();
            service = parts.service;
            parts.read_buf
        };
        if shutting_down || in_flight.started() != started_before {
            // Draining, or a request slipped in after the decision and was
            // answered with `Connection: close`: close, don't park.
            close(&mut io).await;
            return Ok(Http1End::Closed);
        }
        if !read_buf.is_empty() {
            // The next request had begun arriving: serve it at once.
            io.unread(read_buf);
            continue;
        }
        drop(read_buf);
        // Parked: only the TLS stream is held until the client speaks.
        let mut first = [0u8; 1];
        let wait = timeouts.client_idle.saturating_sub(PARK_AFTER);
        stats.connection_parked();
        let read = tokio::select! {
            read = tokio::time::timeout(wait, io.io.read(&mut first)) => Some(read),
            _ = draining.wait_for(|draining| *draining) => None,
        };
        stats.connection_unparked();
        match read {
            Some(Ok(Ok(1))) => io.unread(Bytes::copy_from_slice(&first)),
            Some(Ok(Ok(_) | Err(_))) => return Ok(Http1End::Closed),
            // Idle past client_idle, or draining: say goodbye properly.
            Some(Err(_)) | None => {
                close(&mut io).await;
                return Ok(Http1End::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unread_bytes_come_before_those_still_to_be_replayed() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = ClientIo::new(client, Arc::new(Activity::default()));
        io.unread(Bytes::from_static(b"cd"));
        io.unread(Bytes::from_static(b"ab"));
        server.write_all(b"ef").await.unwrap();
        drop(server);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdef");
    }
}
