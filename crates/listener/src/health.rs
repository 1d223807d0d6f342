//! Active health checks (R11).
//!
//! In: a [`BackendPool`] and its listener's [`HealthCheckConfig`]. Out: the
//! backends' health, flipped through the pool after `unhealthy_threshold`
//! consecutive failed checks or `healthy_threshold` consecutive successful
//! ones, each transition logged once and announced on
//! [`BackendPool::subscribe_health`].
//!
//! A check is one HTTP/1.1 request on a fresh connection (`Connection:
//! close`), so it measures what a new proxy connection would meet; only the
//! status line is read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{self, MissedTickBehavior};

use crate::{BackendPool, HealthCheckConfig, HealthMethod};

/// `tokio::time::interval` panics on a zero period; a config that slipped
/// one through gets a busy, but running, checker instead.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Sent so backend operators can tell checks from client traffic in their logs.
const USER_AGENT_VALUE: &str = "tlsgate-health-check";

/// Starts active health checks of every backend in `pool` (weight-0 ones
/// included, so their health is known when they are weighted up again).
///
/// Each backend is checked every `interval`, independently of the others,
/// so one hanging backend does not delay the checks of the rest. The task
/// runs until the handle is aborted; while it runs, it alone brings back
/// backends taken out by the passive check (the passive cooldown is off).
/// Must be called inside a tokio runtime.
pub fn spawn_health_checks(pool: Arc<BackendPool>, config: HealthCheckConfig) -> JoinHandle<()> {
    // Registered here, not inside the task, so the passive cooldown is off
    // from the moment checks are promised; the guard moves into the task and
    // is dropped when it is aborted, even before its first poll.
    let registration = pool.register_active_checks();
    let config = Arc::new(config);
    tokio::spawn(async move {
        let _registration = registration;
        // Dropping the set when this task is aborted aborts every check loop.
        let mut checks = JoinSet::new();
        for index in 0..pool.backends().len() {
            checks.spawn(check_backend(Arc::clone(&pool), index, Arc::clone(&config)));
        }
        while checks.join_next().await.is_some() {}
        // Only reached with no backends: keep the promised "runs until aborted".
        std::future::pending::<()>().await;
    })
}

/// Checks one backend every `interval`, forever.
async fn check_backend(pool: Arc<BackendPool>, index: usize, config: Arc<HealthCheckConfig>) {
    let Some(backend) = pool.backends().get(index).cloned() else {
        return;
    };
    let healthy_threshold = config.healthy_threshold.max(1);
    let unhealthy_threshold = config.unhealthy_threshold.max(1);
    let mut ticks = time::interval(config.interval.max(MIN_INTERVAL));
    // A check slower than the interval delays the next one instead of
    // triggering a burst of catch-up checks.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match probe(&backend.address, &config).await {
            Ok(status) => {
                let successes = backend.record_success();
                if successes >= healthy_threshold && !backend.is_healthy() {
                    pool.bring_back(
                        &backend,
                        &format_args!(
                            "{successes} consecutive checks passed, last status {status}"
                        ),
                    );
                }
            }
            Err(failure) => {
                let failures = backend.record_failure();
                if failures >= unhealthy_threshold && backend.is_healthy() {
                    pool.take_out(
                        &backend,
                        &format_args!("{failures} consecutive checks failed, last: {failure}"),
                    );
                }
            }
        }
    }
}

/// Why a check failed; the `reason` of the transition log line.
#[derive(Debug, thiserror::Error)]
enum CheckFailure {
    #[error("status {0}")]
    Status(u16),
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    #[error("connection refused")]
    Refused,
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("invalid check request: {0}")]
    Request(http::Error),
    #[error("HTTP error: {0}")]
    Http(hyper::Error),
}

/// One check: a passing status, or why it failed. The timeout bounds the
/// whole check, from connect (including name resolution) to status line.
async fn probe(address: &str, config: &HealthCheckConfig) -> Result<u16, CheckFailure> {
    let status = time::timeout(config.timeout, request_status(address, config))
        .await
        .map_err(|_| CheckFailure::Timeout(config.timeout))??;
    if config.accepts(status) {
        Ok(status)
    } else {
        Err(CheckFailure::Status(status))
    }
}

/// Sends the check request and returns the response status.
async fn request_status(address: &str, config: &HealthCheckConfig) -> Result<u16, CheckFailure> {
    let method = match config.method {
        HealthMethod::Head => Method::HEAD,
        HealthMethod::Get => Method::GET,
    };
    let host = config.host.as_deref().unwrap_or(address);
    let request = Request::builder()
        .method(method)
        .uri(config.path.as_str())
        .header(HOST, host)
        .header(CONNECTION, HeaderValue::from_static("close"))
        .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
        .body(Empty::<Bytes>::new())
        .map_err(CheckFailure::Request)?;

    let stream = TcpStream::connect(address).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::ConnectionRefused {
            CheckFailure::Refused
        } else {
            CheckFailure::Connect(error)
        }
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(CheckFailure::Http)?;

    // The connection is driven here rather than spawned, so a backend that
    // never answers leaves nothing behind when the timeout drops this future.
    let response = sender.send_request(request);
    tokio::pin!(response, connection);
    let mut connection_done = false;
    let response = loop {
        tokio::select! {
            // The response first: the connection may finish in the same poll
            // that delivered it (the backend closes after answering).
            biased;
            response = &mut response => break response.map_err(CheckFailure::Http)?,
            result = &mut connection, if !connection_done => {
                result.map_err(CheckFailure::Http)?;
                connection_done = true;
            }
        }
    };
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one connection with `reply` and returns the request head it saw.
    async fn one_exchange(
        reply: &'static str,
        config: HealthCheckConfig,
    ) -> (Result<u16, CheckFailure>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before the end of the head");
                head.extend_from_slice(&buf[..n]);
            }
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let result = probe(&address, &config).await;
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn head_request_with_address_as_host() {
        let config = HealthCheckConfig {
            path: "/healthz?deep=1".into(),
            ..HealthCheckConfig::default()
        };
        let (result, head) = one_exchange("HTTP/1.1 204 No Content\r\n\r\n", config).await;
        assert_eq!(result.unwrap(), 204);
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("head /healthz?deep=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\nuser-agent: tlsgate-health-check\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn status_outside_accepted_classes_fails() {
        let (result, _) = one_exchange(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            HealthCheckConfig::default(),
        )
        .await;
        assert!(
            matches!(result, Err(CheckFailure::Status(503))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn garbage_reply_is_an_http_error() {
        let (result, _) =
            one_exchange("SSH-2.0-OpenSSH\r\n\r\n", HealthCheckConfig::default()).await;
        assert!(matches!(result, Err(CheckFailure::Http(_))), "{result:?}");
    }

    #[tokio::test]
    async fn refused_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let result = probe(&address, &HealthCheckConfig::default()).await;
        assert!(matches!(result, Err(CheckFailure::Refused)), "{result:?}");
        assert_eq!(result.unwrap_err().to_string(), "connection refused");
    }
}
