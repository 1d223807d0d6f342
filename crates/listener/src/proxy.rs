//! One request: limits, header rewriting, backend choice with connect-retry,
//! timeouts, and the response on its way back (R10–R13).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::headers::{self, ConnectionFacts};
use crate::keepalive::InFlightGuard;
use crate::runtime::Runtime;
use crate::server::MAX_HEADER_LINES;
use crate::stats::ListenerStats;
use crate::tunnel::Tunnel;
use crate::upstream::{BackendBody, SendError};
use crate::{Lease, ListenerConfig};

/// Errors a body sent to a client can end with.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body type sent to clients.
pub(crate) type ProxyBody = BoxBody<Bytes, BodyError>;

/// A backend response body that keeps its backend counted as in flight
/// (for `wlc`) until the client has read it all.
struct LeasedBody {
    inner: BackendBody,
    lease: Lease,
}

impl Body for LeasedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        Pin::new(&mut this.inner).poll_frame(cx).map_err(|err| {
            // The client sees only a body cut short (a reset stream, or a
            // connection closed early): the why belongs in the log.
            let backend = this.lease.backend();
            tracing::warn!(listener = %backend.listener, backend = %backend.address, error = %err, "a response body from the backend broke off; the client got it cut short");
            Box::new(err) as BodyError
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client's request body that says whether forwarding it is waiting on
/// the client (the last poll found no bytes yet), so that a request
/// timeout can tell a slow upload (408, the client's) from a slow backend
/// (504), including one that stopped reading the body. Bodiless requests
/// carry no flag.
struct ClientBody {
    inner: Incoming,
    waiting_on_client: Option<Arc<AtomicBool>>,
}

impl ClientBody {
    fn new(inner: Incoming) -> (ClientBody, Option<Arc<AtomicBool>>) {
        let waiting = (!inner.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
        let body = ClientBody {
            inner,
            waiting_on_client: waiting.clone(),
        };
        (body, waiting)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(waiting) = &self.waiting_on_client {
            waiting.store(polled.is_pending(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A short plain-text response made by tlsgate itself.
pub(crate) fn local_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = http_body_util::Full::new(Bytes::from(format!(
        "{} {}\n{message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )))
    .map_err(|never: Infallible| -> BodyError { match never {} })
    .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// How much of a request body tlsgate reads and throws away after
/// answering the request itself (503, 431, 405) before the body arrived.
const DISCARD_LIMIT: usize = 1 << 20;
/// How long it keeps reading it.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads what is left of an HTTP/2 request body that a local response
/// answered before it arrived, in the background, bounded by
/// [`DISCARD_LIMIT`] and [`DISCARD_TIME`]. Dropped unread, the stream is
/// reset (RST_STREAM NO_ERROR right after the response): valid HTTP/2, but
/// curl 7.88 (Debian 12) then reports "Stream error in the HTTP/2 framing
/// layer" instead of the response. NGINX discards such a body too.
fn discard_h2_body(version: http::Version, body: Incoming) {
    if version != http::Version::HTTP_2 || body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut left = DISCARD_LIMIT;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                let read = frame.data_ref().map_or(0, Bytes::len);
                if read >= left {
                    break;
                }
                left -= read;
            }
        })
        .await;
    });
}

/// Handles one request from a client connection. `connection`: where a
/// 101 leaves the tunnel it opened.
pub(crate) async fn handle(
    request: Request<Incoming>,
    runtime: Arc<Runtime>,
    facts: Arc<ConnectionFacts>,
    stats: Arc<ListenerStats>,
    connection: &InFlightGuard,
) -> Result<Response<ProxyBody>, Infallible> {
    let response = forward(request, &runtime, &facts, connection).await;
    stats.count_request(response.status());
    Ok(response)
}

async fn forward(
    request: Request<Incoming>,
    runtime: &Runtime,
    facts: &ConnectionFacts,
    connection: &InFlightGuard,
) -> Response<ProxyBody> {
    let config: &ListenerConfig = &runtime.config;
    let (mut parts, body) = request.into_parts();
    if parts.method == http::Method::CONNECT {
        // A terminating proxy, not a forward proxy: no tunnels, and a
        // backend must never be asked to open one on a pooled connection.
        discard_h2_body(parts.version, body);
        return local_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "tlsgate does not tunnel (CONNECT)",
        );
    }
    if headers::header_bytes(&parts.method, &parts.uri, &parts.headers)
        > config.limits.max_header_bytes
    {
        discard_h2_body(parts.version, body);
        return local_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request line and headers are larger than this listener allows (max_header_bytes)",
        );
    }
    // hyper holds HTTP/1.1 to this itself; HTTP/2 header blocks are
    // bounded only in bytes.
    if parts.headers.len() > MAX_HEADER_LINES {
        discard_h2_body(parts.version, body);
        return local_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request has more than 1000 header lines",
        );
    }
    // The asterisk form is OPTIONS's alone (RFC 9112 §3.2.4).
    if parts.uri.path() == "*" && parts.method != http::Method::OPTIONS {
        discard_h2_body(parts.version, body);
        return local_response(
            StatusCode::BAD_REQUEST,
            "the request target * is for OPTIONS only",
        );
    }
    // hyper reads `gzip, chunked` as chunked and hands over the data still
    // gzip-coded; passed on as plain data, the backend would take it for
    // the body itself. NGINX answers 501 (RFC 9112 §6.1).
    if !body.is_end_stream() && !headers::only_chunked(&parts.headers) {
        return local_response(
            StatusCode::NOT_IMPLEMENTED,
            "tlsgate decodes no transfer coding but chunked; send the body with Content-Length or Transfer-Encoding: chunked alone",
        );
    }
    // HTTP/2 carries the host in :authority; HTTP/1.1 backends need Host.
    if let Err(problem) = headers::settle_host(parts.version, &parts.uri, &mut parts.headers) {
        discard_h2_body(parts.version, body);
        return local_response(StatusCode::BAD_REQUEST, problem);
    }
    let upgrade = headers::upgrade_requested(parts.version, &parts.headers, body.is_end_stream());
    let mut added = headers::rewrite_request(&mut parts.headers, facts);
    if let Some(protocols) = &upgrade {
        // Hop-by-hop, so removed above with the rest; put back for the one
        // hop that switches (tunnel.rs).
        let lines = added.to_mut();
        lines.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        lines.extend_from_slice(protocols.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    // The backend client writes the request line itself (origin form,
    // HTTP/1.1) and frames the body per hop: neither the URI, the version
    // nor Transfer-Encoding needs rewriting here.
    let (body, waiting_on_client) = ClientBody::new(body);
    let mut request = Request::from_parts(parts, body);

    // The backend being tried when the request timeout ends the attempt
    // (an index: no reference count to move per request for a log line).
    let mut waiting_on: Option<usize> = None;
    let attempt = async {
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let Some(lease) = runtime.pool.pick(&tried) else {
                let (parts, body) = request.into_parts();
                discard_h2_body(parts.version, body.inner);
                return if tried.is_empty() {
                    runtime.pool.log_unavailable();
                    local_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no healthy backend is available for this listener",
                    )
                } else {
                    // Each refusal took its backend out: none is healthy now.
                    local_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "every backend refused the connection; no healthy backend is available",
                    )
                };
            };
            let backend = Arc::clone(lease.backend());
            waiting_on = Some(lease.index());
            let address = &backend.address;
            match backend
                .connections()
                .send(
                    config.timeouts.backend_connect,
                    config.timeouts.request,
                    request,
                    &added,
                    upgrade.is_some(),
                )
                .await
            {
                Ok(response) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    return switch(response, lease, config, connection);
                }
                Ok(response) => {
                    runtime.pool.answered(&backend);
                    return backend_response(response, lease);
                }
                Err(SendError::NotSent(reason, unsent)) => {
                    // Nothing was sent: safe to try another backend, whatever the method.
                    if runtime.pool.mark_connect_failure(lease.index()) {
                        tracing::warn!(listener = %config.name, backend = %address, %reason, "backend connect failed; it is out of rotation, and its requests go to the other backends (503 when none is healthy)");
                    } else {
                        // The rest of a burst (requests in flight to it) or
                        // a last-resort try: the line above said it.
                        tracing::debug!(listener = %config.name, backend = %address, %reason, "backend connect failed again");
                    }
                    tried.push(lease.index());
                    request = *unsent;
                }
                Err(SendError::ClientBody(reason)) => {
                    // A client's broken upload is no sign of a sick backend:
                    // a debug line, not a warning that blames the backend.
                    tracing::debug!(listener = %config.name, backend = %address, %reason, "the client's request body broke off or was malformed; the client got 400");
                    return local_response(
                        StatusCode::BAD_REQUEST,
                        "the request body is malformed or ended before its declared length",
                    );
                }
                Err(SendError::Failed(reason)) => {
                    tracing::warn!(listener = %config.name, backend = %address, %reason, "backend request failed");
                    return local_response(
                        StatusCode::BAD_GATEWAY,
                        "the backend closed the connection or sent an invalid response",
                    );
                }
            }
        }
    };
    let outcome = tokio::time::timeout(config.timeouts.request, attempt).await;
    outcome.unwrap_or_else(|_| {
        if waiting_on_client.is_some_and(|waiting| waiting.load(Ordering::Relaxed)) {
            // Forwarding waited for the client's next body bytes: its
            // slowness, not the backend's (NGINX: client_body_timeout, 408).
            tracing::debug!(listener = %config.name, timeout = ?config.timeouts.request, "the request body did not arrive in time (timeouts.request); the client got 408");
            return local_response(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time (timeouts.request)",
            );
        }
        if let Some(backend) = waiting_on.and_then(|i| runtime.pool.backends().get(i)) {
            tracing::warn!(listener = %config.name, backend = %backend.address, timeout = ?config.timeouts.request, "the backend did not answer in time (timeouts.request); the client got 504");
        }
        local_response(
            StatusCode::GATEWAY_TIMEOUT,
            "the backend did not answer in time (timeouts.request)",
        )
    })
}

/// A backend's 101: the client gets it (with `Upgrade` and `Connection:
/// upgrade`), and its connection the backend connection as a tunnel.
fn switch(
    response: Response<BackendBody>,
    lease: Lease,
    config: &ListenerConfig,
    connection: &InFlightGuard,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let Some((backend, early)) = body.into_tunnel() else {
        tracing::warn!(listener = %config.name, backend = %lease.backend().address, "the backend switched protocols (101) but its connection was still shared; the client got 502");
        return local_response(
            StatusCode::BAD_GATEWAY,
            "the backend switched protocols but its connection could not be handed over",
        );
    };
    connection.switch_to(Tunnel::new(
        backend,
        early,
        lease,
        config.timeouts.tunnel_idle,
    ));
    let body = http_body_util::Empty::new()
        .map_err(|never: Infallible| -> BodyError { match never {} })
        .boxed();
    Response::from_parts(parts, body)
}

/// The backend's response for the client. Its hop-by-hop headers
/// (Transfer-Encoding included: hyper frames the body for the client) were
/// left out when its head was parsed.
fn backend_response(response: Response<BackendBody>, lease: Lease) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let body = LeasedBody { inner: body, lease };
    Response::from_parts(parts, body.boxed())
}
