//! Connections switched to another protocol: WebSocket and other HTTP/1.1
//! upgrades.
//!
//! A client's `Upgrade` request goes to a backend like any request, with
//! its `Upgrade` and `Connection: upgrade` kept. When the backend answers
//! 101, the client gets the 101, and from then on the client's TLS
//! connection and the backend's TCP connection are joined: bytes are
//! copied both ways, unread and unchanged, until both sides have closed,
//! neither sends anything for `timeouts.tunnel_idle`, or the listener
//! shuts down (then at once: a tunnel has no end to wait for, and its
//! clients reconnect, to another replica if this one is going away).

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Lease;

/// The backend's half of a tunnel, between the 101 and the client
/// connection taking it up.
pub(crate) struct Tunnel {
    backend: TcpStream,
    /// What the backend sent right behind its 101 (the new protocol's
    /// first bytes), for the client before anything else.
    early: Bytes,
    /// Keeps the backend counted as busy (for `wlc`) while the tunnel lives.
    _lease: Lease,
    idle: Duration,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TunnelEnd {
    /// One side closed and the other finished: both closed in turn.
    Closed,
    /// Nothing went either way for the idle limit.
    Idle,
    /// The listener is shutting down.
    Draining,
}

impl Tunnel {
    /// `idle`: how long the tunnel may carry nothing before it is closed.
    pub(crate) fn new(backend: TcpStream, early: BytesMut, lease: Lease, idle: Duration) -> Self {
        Tunnel {
            backend,
            early: early.freeze(),
            _lease: lease,
            idle,
        }
    }

    /// Copies bytes between `client` and the backend until both directions
    /// have ended, nothing moved for the idle limit, or `draining` turns
    /// true. `moved` counts the reads and writes on `client` that carried
    /// data (both directions go through it), so no timer is reset per byte.
    /// On `Idle` and `Draining` the caller closes the client side; the
    /// backend connection closes when the tunnel is dropped.
    pub(crate) async fn run<C>(
        self,
        client: &mut C,
        moved: impl Fn() -> u64,
        draining: &mut watch::Receiver<bool>,
    ) -> io::Result<TunnelEnd>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let Tunnel {
            mut backend,
            early,
            _lease,
            idle,
        } = self;
        let carry = async {
            // Under the idle limit too: a client that asks to switch and
            // then never reads must not hold the tunnel forever.
            if !early.is_empty() {
                client.write_all(&early).await?;
                client.flush().await?;
            }
            tokio::io::copy_bidirectional(client, &mut backend).await
        };
        tokio::pin!(carry);
        // Looked at four times per limit: the tunnel closes between one and
        // one and a quarter limits after its last byte.
        let mut looks = tokio::time::interval((idle / 4).max(Duration::from_millis(1)));
        let mut seen = moved();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                result = &mut carry => return result.map(|_| TunnelEnd::Closed),
                _ = draining.wait_for(|draining| *draining) => return Ok(TunnelEnd::Draining),
                now = looks.tick() => {
                    let count = moved();
                    if count != seen {
                        seen = count;
                        last = now;
                    } else if now.duration_since(last) >= idle {
                        return Ok(TunnelEnd::Idle);
                    }
                }
            }
        }
    }
}

/// Where a request's handler leaves the tunnel its 101 opened, for the
/// client connection to take up once hyper has written the 101.
#[derive(Debug, Default)]
pub(crate) struct TunnelSlot(Mutex<Option<Tunnel>>);

impl TunnelSlot {
    pub(crate) fn put(&self, tunnel: Tunnel) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tunnel);
    }

    pub(crate) fn take(&self) -> Option<Tunnel> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
