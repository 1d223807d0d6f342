//! HTTP/1.1 client connections that give their buffers back while idle.
//!
//! hyper keeps a 16 KiB read buffer, an 8 KiB write buffer and its
//! connection state for as long as a keep-alive connection lives, which
//! for thousands of idle browsers is most of a proxy's memory. After
//! [`PARK_AFTER`] without traffic and with no request in flight, the hyper
//! connection is ended without closing the socket (`without_shutdown`),
//! and the connection waits holding only the TLS stream. The client's next
//! byte starts a new hyper connection on the same socket, with that byte
//! (and anything hyper had read ahead) replayed in front of the stream.
//! The client sees one ordinary keep-alive connection throughout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::stats::ListenerStats;

/// How long a connection is quiet (no bytes either way, no request in
/// flight) before its HTTP state is released.
pub(crate) const PARK_AFTER: Duration = Duration::from_secs(1);

/// Counts requests between the service being called and its response
/// being produced; the response body's streaming shows up as traffic.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicUsize);

impl InFlight {
    /// Marks a request as started until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }

    fn is_idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// See [`InFlight::enter`].
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client stream, with bytes to replay before it and a count of reads
/// and writes that moved data (how the parker tells a quiet connection).
struct ClientIo<IO> {
    io: IO,
    replay: Bytes,
    traffic: Arc<AtomicU64>,
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
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.traffic.fetch_add(1, Ordering::Relaxed);
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
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on `io` until the client leaves, `client_idle` passes
/// without a request, or `draining` turns true (then in-flight requests
/// finish and the connection closes).
pub(crate) async fn serve_http1<IO, S, B>(
    io: IO,
    builder: http1::Builder,
    mut service: S,
    in_flight: Arc<InFlight>,
    client_idle: Duration,
    mut draining: watch::Receiver<bool>,
    stats: &ListenerStats,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let traffic = Arc::new(AtomicU64::new(0));
    let mut io = ClientIo {
        io,
        replay: Bytes::new(),
        traffic: Arc::clone(&traffic),
    };
    loop {
        if *draining.borrow() {
            return Ok(());
        }
        // Active: hyper serves requests; every PARK_AFTER, a look at
        // whether anything happened since the last look.
        // Boxed apart from this future, so a parked connection holds none
        // of hyper's state.
        let mut connection = Box::new(builder.serve_connection(TokioIo::new(io), service));
        let mut seen = traffic.load(Ordering::Relaxed);
        let mut parking = false;
        let mut shutting_down = false;
        loop {
            tokio::select! {
                done = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                    done?;
                    break;
                }
                changed = draining.changed(), if !shutting_down => {
                    if changed.is_err() || *draining.borrow() {
                        shutting_down = true;
                        Pin::new(&mut *connection).graceful_shutdown();
                    }
                }
                () = tokio::time::sleep(PARK_AFTER), if !parking && !shutting_down => {
                    let now = traffic.load(Ordering::Relaxed);
                    if now == seen && in_flight.is_idle() {
                        // Quiet and nothing in flight: hyper is between
                        // requests, so this ends it without a response
                        // being cut or marked `Connection: close`.
                        parking = true;
                        Pin::new(&mut *connection).graceful_shutdown();
                    }
                    seen = now;
                }
            }
        }
        if shutting_down || !parking {
            // Draining, or hyper ended on its own: the client closed, or
            // asked to (`Connection: close`), or sent something refused.
            return Ok(());
        }
        let parts = (*connection).into_parts();
        io = parts.io.into_inner();
        service = parts.service;
        if !parts.read_buf.is_empty() {
            // The next request had begun arriving: serve it at once.
            io.replay = parts.read_buf;
            continue;
        }
        // Parked: only the TLS stream is held until the client speaks.
        let mut first = [0u8; 1];
        let wait = client_idle.saturating_sub(PARK_AFTER);
        stats.connection_parked();
        let read = tokio::select! {
            read = tokio::time::timeout(wait, io.io.read(&mut first)) => Some(read),
            _ = draining.wait_for(|draining| *draining) => None,
        };
        stats.connection_unparked();
        let Some(read) = read else {
            return Ok(());
        };
        match read {
            Ok(Ok(1)) => io.replay = Bytes::copy_from_slice(&first),
            // Closed, failed, or idle past client_idle: done.
            _ => return Ok(()),
        }
    }
}
