//! The admin API (SPEC §6): certificates, listeners, metrics and probes over
//! HTTP/JSON, loopback by default, bearer token when exposed.
//!
//! Handlers only translate HTTP to calls on the store, the validator and the
//! server; one function maps error codes to HTTP statuses.

mod certs;
mod listeners;
mod metrics;
mod replace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tlsgate_cert_store::Store;
use tlsgate_listener::Server;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::config::Config;

/// The largest request body (SPEC §6: 413 past 1 MiB).
const MAX_BODY: usize = 1024 * 1024;

/// What every handler can reach.
pub struct AppState {
    /// The certificate store.
    pub store: Arc<Store>,
    /// The running listeners.
    pub server: Arc<Server>,
    /// The configuration in force; also serialises config rewrites and reloads.
    pub config: Arc<Mutex<Config>>,
    /// The bearer token, when one is configured.
    pub token: Option<Vec<u8>>,
    /// Set once the listeners are bound and the store loaded.
    pub ready: AtomicBool,
    /// Set when shutdown begins (ready goes false for good).
    pub stopping: AtomicBool,
    /// Config reloads (file change, SIGHUP) by outcome.
    pub config_reloads: ConfigReloads,
}

/// Config reloads by outcome, for the metrics: a ConfigMap update or an
/// edit that did not take must be visible to alerting, not only in a log.
/// Counted before the reload's log line, so whoever reads that line finds
/// the count already updated.
#[derive(Debug, Default)]
pub struct ConfigReloads {
    /// Reloads whose config went into force.
    pub applied: AtomicU64,
    /// Reloads refused (the running config stays).
    pub refused: AtomicU64,
    /// Reloads held back until certificates they name arrive.
    pub waiting: AtomicU64,
    /// Whether the last reload was refused or held back.
    pub last_not_applied: AtomicBool,
}

impl ConfigReloads {
    /// A reload went into force.
    pub fn applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.last_not_applied.store(false, Ordering::Relaxed);
    }

    /// A reload was refused.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.last_not_applied.store(true, Ordering::Relaxed);
    }

    /// A reload waits for certificates.
    pub fn waiting(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.last_not_applied.store(true, Ordering::Relaxed);
    }
}

/// Shared handle to the app state.
pub type Shared = Arc<AppState>;

/// An error as the API returns it: the SPEC code, a message, the status.
#[derive(Debug)]
pub struct ApiError {
    /// SPEC §4 code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// Extra fields (e.g. `listeners` for CertificateInUse).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A status other than the code's usual one (413 for an oversized body).
    pub status: Option<StatusCode>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
            status: None,
        }
    }
}

/// The one place codes become statuses (SPEC §6).
fn status_for(code: &str) -> StatusCode {
    match code {
        "CertificateNotFound" | "NotFound" => StatusCode::NOT_FOUND,
        "CertificateInUse" | "CertificateAlreadyExists" => StatusCode::CONFLICT,
        "QuotaExceeded" => StatusCode::INSUFFICIENT_STORAGE,
        "PayloadTooLarge" => StatusCode::PAYLOAD_TOO_LARGE,
        "Unauthorized" => StatusCode::UNAUTHORIZED,
        "InternalError" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("code".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        body.extend(self.extra);
        let status = self.status.unwrap_or_else(|| status_for(self.code));
        (status, axum::Json(serde_json::Value::Object(body))).into_response()
    }
}

impl From<tlsgate_cert_store::Error> for ApiError {
    fn from(err: tlsgate_cert_store::Error) -> Self {
        let mut api = ApiError::new(err.code(), err.to_string());
        if let tlsgate_cert_store::Error::InUse { listeners, .. } = &err {
            api.extra.insert("listeners".into(), json!(listeners));
        }
        api
    }
}

/// Compares in time independent of where the inputs differ, so the token
/// cannot be guessed byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(
    State(state): State<Shared>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| {
            v.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        })
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token) => next.run(request).await,
        _ => {
            let mut response = ApiError::new(
                "Unauthorized",
                "missing or wrong bearer token: send `Authorization: Bearer TOKEN` with the token from admin.token_file",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Shared>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        let phase = if state.stopping.load(Ordering::Relaxed) {
            "stopping: draining in-flight requests\n"
        } else {
            "starting\n"
        };
        return (StatusCode::SERVICE_UNAVAILABLE, phase).into_response();
    }
    let snapshot = state.store.snapshot();
    let problems: Vec<String> = snapshot
        .listeners()
        .filter_map(|l| {
            if l.sni.is_empty() {
                Some(format!(
                    "listener {:?}: no server certificate loaded",
                    l.name
                ))
            } else if let Some(Err(reason)) = &l.client_auth {
                Some(format!("listener {:?}: {reason}", l.name))
            } else {
                None
            }
        })
        .collect();
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

/// The router (public for tests that drive it without a socket).
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/v1/certificates", get(certs::list).post(certs::create))
        .route(
            "/v1/certificates/{name}",
            get(certs::show).put(certs::replace).delete(certs::delete),
        )
        .route(
            "/v1/certificates/{name}/replace",
            axum::routing::post(replace::replace_many),
        )
        .route("/v1/listeners", get(listeners::list))
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Unknown paths get the API's error body too. The usual cause is a name
/// with a slash sent unencoded (`/v1/certificates/team/www`).
async fn no_such_endpoint(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        "NotFound",
        format!(
            "no endpoint {method} {}; a certificate name with a slash is percent-encoded in the path (team/www is team%2Fwww); the endpoints are /v1/certificates, /v1/certificates/NAME, /v1/certificates/NAME/replace, /v1/listeners, /metrics, /healthz, /readyz",
            uri.path()
        ),
    )
}

/// A known path with a method it does not take.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let mut error = ApiError::new(
        "MethodNotAllowed",
        format!("{} does not take {method}", uri.path()),
    );
    error.status = Some(StatusCode::METHOD_NOT_ALLOWED);
    error
}

/// Binds the admin API; returns the bound address and the serving task.
pub async fn start(
    state: Shared,
    bind: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let socket = TcpListener::bind(bind).await?;
    let address = socket.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(socket, app).await {
            tracing::error!(error = %err, "admin API stopped");
        }
    });
    Ok((address, task))
}
