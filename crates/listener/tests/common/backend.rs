//! Plain HTTP/1.1 backends that describe the requests they receive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

use super::{STEP, within};

/// A plain HTTP/1.1 backend on `127.0.0.1:0` (keep-alive on).
///
/// * `/healthz` answers with [`Backend::set_health`]'s status (200 at first),
///   empty body.
/// * `/delay/MS…` answers after MS milliseconds.
/// * Everything else answers 200 at once.
///
/// Bodies other than `/healthz`'s describe the request (see [`Echo`]).
/// Every request except health checks is announced on [`Backend::arrivals`].
pub struct Backend {
    /// Name written into every response.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    health: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
    arrivals: broadcast::Sender<String>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct BackendState {
    name: String,
    health: Arc<AtomicU16>,
    served: Arc<AtomicUsize>,
    arrivals: broadcast::Sender<String>,
}

impl Backend {
    /// Starts a backend called `name`.
    pub async fn start(name: &str) -> Backend {
        Backend::start_at(name, "127.0.0.1:0").await
    }

    /// Starts a backend called `name` on `address` (a stopped one's, to
    /// restart it where the proxy expects it).
    pub async fn start_at(name: &str, address: &str) -> Backend {
        let socket = TcpListener::bind(address).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let served = Arc::new(AtomicUsize::new(0));
        let (arrivals, _) = broadcast::channel(1024);
        let state = Arc::new(BackendState {
            name: name.into(),
            health: health.clone(),
            served: served.clone(),
            arrivals: arrivals.clone(),
        });
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) closes every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = socket.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = state.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |request| answer(request, state.clone()));
                            let _ = hyper::server::conn::http1::Builder::new()
                                // Far above the proxy's 1,000 lines, so that a 431 is the proxy's.
                                .max_headers(4000)
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Backend {
            name: name.into(),
            addr,
            health,
            served,
            arrivals,
            task: Mutex::new(Some(task)),
        }
    }

    /// `host:port`, as a listener's backend list writes it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The status `/healthz` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::SeqCst);
    }

    /// Requests answered (health checks not counted).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Paths of requests as they arrive (before any delay).
    pub fn arrivals(&self) -> broadcast::Receiver<String> {
        self.arrivals.subscribe()
    }

    /// Stops listening and closes every connection: from now on, connecting
    /// is refused.
    pub async fn stop(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            // The listening socket is closed once the aborted task is dropped.
            let _ = within("backend stop", STEP, task).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    state: Arc<BackendState>,
) -> std::result::Result<http::Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == "/healthz" {
        let status = StatusCode::from_u16(state.health.load(Ordering::SeqCst)).unwrap();
        let mut response = http::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        return Ok(response);
    }
    let _ = state.arrivals.send(path.clone());
    let mut text = format!("backend: {}\nmethod: {method}\npath: {path}\n", state.name);
    for (name, value) in request.headers() {
        text.push_str(&format!(
            "header: {name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    // Read the request body to the end (the connection stays reusable).
    let body = request.into_body().collect().await?.to_bytes();
    if !body.is_empty() {
        text.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        let ms: u64 = ms
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    state.served.fetch_add(1, Ordering::SeqCst);
    Ok(http::Response::new(Full::new(Bytes::from(text))))
}

/// What a backend saw, parsed from its response body.
#[derive(Debug, Clone)]
pub struct Echo {
    /// The backend's name.
    pub backend: String,
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The request body, if any.
    pub body: String,
    /// Every header value as received, in order (names lowercase).
    pub headers: Vec<(String, String)>,
}

impl Echo {
    /// Parses a body written by [`Backend`].
    pub fn parse(body: &str) -> Echo {
        let mut echo = Echo {
            backend: String::new(),
            method: String::new(),
            path: String::new(),
            body: String::new(),
            headers: Vec::new(),
        };
        for line in body.lines() {
            if let Some(backend) = line.strip_prefix("backend: ") {
                echo.backend = backend.into();
            } else if let Some(method) = line.strip_prefix("method: ") {
                echo.method = method.into();
            } else if let Some(body) = line.strip_prefix("body: ") {
                echo.body = body.into();
            } else if let Some(path) = line.strip_prefix("path: ") {
                echo.path = path.into();
            } else if let Some(header) = line.strip_prefix("header: ") {
                let (name, value) = header.split_once(": ").unwrap_or((header, ""));
                echo.headers.push((name.into(), value.into()));
            }
        }
        assert!(
            !echo.backend.is_empty(),
            "not a backend echo (a response made by the proxy?): {body:?}"
        );
        echo
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`, or `None`; fails if it came more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let values = self.all(name);
        assert!(
            values.len() <= 1,
            "{name} reached the backend {} times: {values:?}",
            values.len()
        );
        values.first().copied()
    }
}
