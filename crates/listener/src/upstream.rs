//! Keep-alive HTTP/1.1 connections to backends (R13).
//!
//! A small pool of hyper `client::conn::http1` connections per backend
//! address, rather than hyper-util's pooled client: a connect failure must
//! be retried on *another* backend with the same request, and
//! `try_send_request` hands an unsent request back, which the pooled client
//! does not. Idle connections expire after [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long an idle backend connection is kept for reuse. Below the common
/// backend keep-alive timeouts (nginx 75 s, Apache 5 s is the outlier), so
/// the pool rarely hands out a connection the backend is about to close;
/// when it does, the request is retried on a fresh connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per backend.
const MAX_IDLE_PER_BACKEND: usize = 256;

/// Why a request did not get a response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Nothing reached the backend (connect refused, timed out, DNS): the
    /// request is returned and may go to another backend.
    NotSent(String, Box<Request<Incoming>>),
    /// The request was (partly) sent; it must not be replayed.
    Failed(String),
}

struct Idle {
    sender: SendRequest<Incoming>,
    since: Instant,
}

/// Connections to all backends of all listeners.
#[derive(Default)]
pub(crate) struct Upstreams {
    idle: Mutex<HashMap<Arc<str>, Vec<Idle>>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    fn take_idle(&self, address: &str) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(address)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.sender.is_ready() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put_idle(&self, address: &Arc<str>, sender: SendRequest<Incoming>) {
        let entry = Idle {
            sender,
            since: Instant::now(),
        };
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        match idle.get_mut(&**address) {
            Some(list) if list.len() < MAX_IDLE_PER_BACKEND => list.push(entry),
            Some(_) => {}
            None => {
                idle.insert(Arc::clone(address), vec![entry]);
            }
        }
    }

    async fn connect(address: &str, timeout: Duration) -> Result<SendRequest<Incoming>, String> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(format!("connect to {address}: {err}")),
            Err(_) => return Err(format!("connect to {address}: timed out after {timeout:?}")),
        };
        // Requests are small and latency-bound; don't let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| format!("HTTP handshake with {address}: {err}"))?;
        tokio::spawn(async move {
            // Ends when either side closes; errors are the request's to report.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends `request` to `address`, reusing an idle connection when there
    /// is one. A stale pooled connection (closed by the backend while idle)
    /// is retried once on a fresh connection.
    pub(crate) async fn send(
        self: &Arc<Self>,
        address: &Arc<str>,
        connect_timeout: Duration,
        mut request: Request<Incoming>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut pooled = self.take_idle(address);
        loop {
            let reused = pooled.is_some();
            let mut sender = match pooled.take() {
                Some(sender) => sender,
                None => match Self::connect(address, connect_timeout).await {
                    Ok(sender) => sender,
                    Err(reason) => return Err(SendError::NotSent(reason, Box::new(request))),
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let pool = Arc::clone(self);
                    let address = Arc::clone(address);
                    // The connection is reusable once this response's body
                    // has been read to the end; `ready` says when.
                    tokio::spawn(async move {
                        if sender.ready().await.is_ok() {
                            pool.put_idle(&address, sender);
                        }
                    });
                    return Ok(response);
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    Some(unsent) => {
                        return Err(SendError::NotSent(
                            format!("{address}: {}", err.error()),
                            Box::new(unsent),
                        ));
                    }
                    None => return Err(SendError::Failed(format!("{address}: {}", err.error()))),
                },
            }
        }
    }
}
