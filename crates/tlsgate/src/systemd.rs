//! The systemd readiness protocol (`sd_notify(3)`) for `Type=notify`
//! units: READY=1 once the listeners are bound, RELOADING=1 … READY=1
//! around a reload, STOPPING=1 when draining begins.
//!
//! Every call is a no-op unless `NOTIFY_SOCKET` is set, so the same binary
//! runs unchanged in a container, under Kubernetes or by hand. A failed
//! send is logged, never fatal: serving matters more than telling systemd.

use sd_notify::NotifyState;

fn send(what: &str, states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot tell systemd {what} (NOTIFY_SOCKET)");
    }
}

/// Listeners are bound and certificates loaded; `status` is shown by
/// `systemctl status` (e.g. the addresses being served).
pub fn ready(status: &str) {
    send(
        "the service is ready",
        &[NotifyState::Ready, NotifyState::Status(status)],
    );
}

/// A new status line for `systemctl status`, readiness unchanged.
pub fn status(status: &str) {
    send("the service's status", &[NotifyState::Status(status)]);
}

/// A reload has begun. MONOTONIC_USEC is what systemd ≥ 253 needs to match
/// the message to the reload it requested (`Type=notify-reload`); older
/// versions ignore it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send("a reload began", &states);
}

/// Draining has begun; systemd shows the unit as "deactivating".
pub fn stopping() {
    send(
        "the service is stopping",
        &[
            NotifyState::Stopping,
            NotifyState::Status("draining in-flight requests"),
        ],
    );
}
