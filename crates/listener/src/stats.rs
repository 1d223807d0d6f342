//! Per-listener counters for logs and metrics (the admin API exports them).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

/// Counters of one listener. Cheap to update from the data path: atomics
/// for the hot counters, a mutex only for the rare handshake-failure reasons.
#[derive(Debug, Default)]
pub struct ListenerStats {
    handshakes_ok: AtomicU64,
    handshakes_resumed: AtomicU64,
    handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    requests: [AtomicU64; 5],
    connections_open: AtomicU64,
    connections_parked: AtomicU64,
    tunnels_open: AtomicU64,
    slow_request_heads: AtomicU64,
    h2_floods: AtomicU64,
}

impl ListenerStats {
    pub(crate) fn handshake_ok(&self, resumed: bool) {
        self.handshakes_ok.fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.handshakes_resumed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        let mut failures = self
            .handshake_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *failures.entry(reason).or_default() += 1;
    }

    pub(crate) fn count_request(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_parked(&self) {
        self.connections_parked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_unparked(&self) {
        self.connections_parked.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_request_head(&self) {
        self.slow_request_heads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn h2_flood(&self) {
        self.h2_floods.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tunnel as open until the guard drops, so a connection
    /// dropped mid-tunnel (at the drain deadline) is not left counted.
    pub(crate) fn tunnel_opened(&self) -> OpenTunnel<'_> {
        self.tunnels_open.fetch_add(1, Ordering::Relaxed);
        OpenTunnel(self)
    }

    /// Completed handshakes.
    pub fn handshakes_ok(&self) -> u64 {
        self.handshakes_ok.load(Ordering::Relaxed)
    }

    /// Completed handshakes that resumed a session.
    pub fn handshakes_resumed(&self) -> u64 {
        self.handshakes_resumed.load(Ordering::Relaxed)
    }

    /// Failed handshakes by reason.
    pub fn handshake_failures(&self) -> BTreeMap<&'static str, u64> {
        self.handshake_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Responses by status class: index 0 = 1xx … 4 = 5xx.
    pub fn requests(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.requests[i].load(Ordering::Relaxed))
    }

    /// Client connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Of those, idle HTTP/1.1 connections holding only their TLS stream
    /// (HTTP buffers released until the client's next request).
    pub fn connections_parked(&self) -> u64 {
        self.connections_parked.load(Ordering::Relaxed)
    }

    /// Of those, connections switched to another protocol by a 101
    /// (WebSocket), carried as bytes both ways.
    pub fn tunnels_open(&self) -> u64 {
        self.tunnels_open.load(Ordering::Relaxed)
    }

    /// HTTP/1.1 connections closed because a request head was still
    /// arriving when `timeouts.client_idle` ran out (stalled or slowloris
    /// clients).
    pub fn slow_request_heads(&self) -> u64 {
        self.slow_request_heads.load(Ordering::Relaxed)
    }

    /// HTTP/2 connections closed for flooding control frames (PRIORITY,
    /// WINDOW_UPDATE, SETTINGS, PING) far beyond what their requests need.
    pub fn http2_floods(&self) -> u64 {
        self.h2_floods.load(Ordering::Relaxed)
    }
}

/// See [`ListenerStats::tunnel_opened`].
pub(crate) struct OpenTunnel<'a>(&'a ListenerStats);

impl Drop for OpenTunnel<'_> {
    fn drop(&mut self) {
        self.0.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }
}
