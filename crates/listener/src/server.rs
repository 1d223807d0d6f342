//! Listeners: bind, accept, TLS handshake, serve HTTP/1.1 and HTTP/2, apply
//! config changes live, and drain on shutdown (R1, R13, R14).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tlsgate_cert_store::{Binding, ClientAuthBinding, Store};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::headers::{ClientCert, ClientCertHeaders, ConnectionFacts, is_trusted};
use crate::keepalive::{self, Activity, ClientIo, Http1End, InFlight, SendStall};
use crate::log_budget::{Budget, LogBudget};
use crate::runtime::Runtime;
use crate::stats::ListenerStats;
use crate::tls_stream::TlsStream;
use crate::{ListenerConfig, Protocol, TlsConfigCache, proxy};

/// Why a listener set could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket could not be bound; nothing was changed.
    #[error("listener {listener:?} cannot bind {address}: {error}{hint}")]
    Bind {
        /// The listener.
        listener: String,
        /// The address.
        address: SocketAddr,
        /// The OS error: in the message, so not also a `source` that
        /// error-chain printers (anyhow's `{:#}`) would append again.
        error: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
}

/// Concurrent streams per HTTP/2 connection (NGINX's default).
const MAX_H2_STREAMS: u32 = 128;
/// Response bytes buffered per HTTP/2 stream ahead of the client's reads:
/// with [`MAX_H2_STREAMS`], at most 8 MiB per connection.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// Header lines per request; past it, 431 (hyper applies it to HTTP/1.1,
/// the proxy to HTTP/2).
pub(crate) const MAX_HEADER_LINES: usize = 1000;

/// State shared by a listener's connections.
struct Shared {
    name: String,
    runtime: ArcSwap<Runtime>,
    tls: TlsConfigCache,
    stats: Arc<ListenerStats>,
    connections: Arc<Semaphore>,
    /// `X-Forwarded-Port`: the listening socket's port, the same for every
    /// connection it accepts, so made once (no getsockname or formatting
    /// per connection).
    port: HeaderValue,
    /// Bounds the "cannot serve TLS" warning: it would otherwise repeat
    /// for every connection while it lasts.
    unusable_logged: LogBudget,
    /// Bounds the per-connection "handshake failed" lines.
    failed_handshakes_logged: LogBudget,
    /// Bounds the lines about clients too slow to send a request head.
    slow_heads_logged: LogBudget,
    /// Bounds the lines about HTTP/2 control frame floods.
    floods_logged: LogBudget,
    /// `connections` was lowered: the accept loop gives back the permit it
    /// holds while waiting for a client, and takes one under the new limit.
    limit_changed: tokio::sync::Notify,
    /// Permits a lowered limit still has to take away: the accept loop
    /// forgets this many of those it gets back as connections close.
    owed_permits: std::sync::atomic::AtomicUsize,
}

struct Running {
    bind: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// All listeners of one process.
pub struct Server {
    store: Arc<Store>,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

/// The store bindings the listeners imply.
fn bindings(configs: &[ListenerConfig]) -> Vec<Binding> {
    configs
        .iter()
        .filter_map(|c| {
            c.tls().map(|tls| Binding {
                listener: c.name.clone(),
                certificates: tls.certificates.clone(),
                client_auth: tls.mutual_auth.as_ref().map(|m| ClientAuthBinding {
                    ca: m.ca.clone(),
                    policy: m.policy,
                }),
            })
        })
        .collect()
}

/// Moves a listener's connection limit from `current` to `next` (R13) on
/// a reload, without touching open connections: permits are added at
/// once; taken away at once where free, and by the accept loop as
/// connections close for the rest (new clients wait meanwhile, as they do
/// at the limit). Only the accept loop takes permits, so it can forget
/// the owed ones without a race.
fn resize(shared: &Shared, current: usize, next: usize) {
    use std::sync::atomic::Ordering::SeqCst;
    if next > current {
        // Raising first cancels what an earlier lowering still owes.
        let mut raise = next - current;
        let _ = shared.owed_permits.fetch_update(SeqCst, SeqCst, |owed| {
            let cancel = owed.min(raise);
            raise -= cancel;
            Some(owed - cancel)
        });
        shared.connections.add_permits(raise);
    } else if next < current {
        let owed = current - next;
        let owed = owed - shared.connections.forget_permits(owed);
        shared.owed_permits.fetch_add(owed, SeqCst);
        shared.limit_changed.notify_one();
    }
}

fn bind_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process (or another listener) uses that port — stop it or pick another port"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE (the systemd unit grants it)"
        }
        _ => "",
    }
}

impl Server {
    /// A server with no listeners yet.
    pub fn new(store: Arc<Store>) -> Arc<Server> {
        Arc::new(Server {
            store,
            running: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Makes the running listeners match `configs`: new ones are bound and
    /// started, changed ones take the new settings for new connections and
    /// requests (open connections are kept), removed ones drain and stop.
    /// All sockets are bound first: if one fails, nothing changes.
    pub async fn apply(&self, configs: Vec<ListenerConfig>) -> Result<(), ServeError> {
        let mut running = self.running.lock().await;
        let mut fresh: HashMap<String, TcpListener> = HashMap::new();
        for config in &configs {
            let rebind = running
                .get(&config.name)
                .is_none_or(|r| r.bind != config.bind);
            if rebind {
                let socket = bind(config.bind).map_err(|error| ServeError::Bind {
                    listener: config.name.clone(),
                    address: config.bind,
                    hint: bind_hint(&error),
                    error,
                })?;
                fresh.insert(config.name.clone(), socket);
            }
        }
        self.store.set_bindings(bindings(&configs));

        let keep: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
        let removed: Vec<String> = running
            .keys()
            .filter(|name| !keep.contains(name) || fresh.contains_key(*name))
            .cloned()
            .collect();
        let mut previous_runtimes: HashMap<String, Arc<Runtime>> = HashMap::new();
        for name in removed {
            if let Some(old) = running.remove(&name) {
                previous_runtimes.insert(name.clone(), old.shared.runtime.load_full());
                tracing::info!(listener = %name, address = %old.local, "listener stopping");
                let _ = old.stop.send(true);
            }
        }
        for config in configs {
            if let Some(current) = running.get(&config.name) {
                let previous = current.shared.runtime.load_full();
                resize(
                    &current.shared,
                    previous.config.limits.max_connections,
                    config.limits.max_connections,
                );
                current
                    .shared
                    .runtime
                    .store(Arc::new(Runtime::new(config, Some(&previous))));
                continue;
            }
            let Some(socket) = fresh.remove(&config.name) else {
                continue;
            };
            let local = socket.local_addr().unwrap_or(config.bind);
            let previous = previous_runtimes.get(&config.name);
            let shared = Arc::new(Shared {
                name: config.name.clone(),
                tls: TlsConfigCache::new(config.name.clone(), self.store.clone()),
                connections: Arc::new(Semaphore::new(config.limits.max_connections)),
                runtime: ArcSwap::from_pointee(Runtime::new(
                    config.clone(),
                    previous.map(|p| p.as_ref()),
                )),
                stats: Arc::new(ListenerStats::default()),
                port: HeaderValue::from(local.port()),
                unusable_logged: LogBudget::new(1),
                failed_handshakes_logged: LogBudget::new(20),
                slow_heads_logged: LogBudget::new(1),
                floods_logged: LogBudget::new(1),
                limit_changed: tokio::sync::Notify::new(),
                owed_permits: std::sync::atomic::AtomicUsize::new(0),
            });
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(accept_loop(socket, shared.clone(), stopped));
            tracing::info!(
                listener = %config.name,
                address = %local,
                protocol = if config.tls().is_some() { "https" } else { "http" },
                "listener started"
            );
            running.insert(
                config.name.clone(),
                Running {
                    bind: config.bind,
                    local,
                    shared,
                    stop,
                    task,
                },
            );
        }
        Ok(())
    }

    /// The address a listener is bound to (useful with port 0).
    pub async fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.running.lock().await.get(listener).map(|r| r.local)
    }

    /// A listener's counters.
    pub async fn stats(&self, listener: &str) -> Option<Arc<ListenerStats>> {
        self.running
            .lock()
            .await
            .get(listener)
            .map(|r| r.shared.stats.clone())
    }

    /// Names and addresses of the running listeners.
    pub async fn listeners(&self) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = self
            .running
            .lock()
            .await
            .iter()
            .map(|(n, r)| (n.clone(), r.local))
            .collect();
        out.sort();
        out
    }

    /// The backends of a listener: (address, weight, healthy, in flight).
    pub async fn backends(&self, listener: &str) -> Vec<(String, u8, bool, usize)> {
        let running = self.running.lock().await;
        let Some(r) = running.get(listener) else {
            return Vec::new();
        };
        let runtime = r.shared.runtime.load();
        runtime
            .pool
            .backends()
            .iter()
            .map(|b| {
                (
                    b.address.to_string(),
                    b.weight,
                    b.is_healthy(),
                    b.in_flight(),
                )
            })
            .collect()
    }

    /// Stops accepting on every listener, lets in-flight requests finish
    /// (each listener up to its `shutdown_drain`), then returns (R14).
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        for (name, r) in running.iter() {
            tracing::info!(listener = %name, "stopping: no new connections, draining in-flight requests");
            let _ = r.stop.send(true);
        }
        for (_, r) in running.drain() {
            let _ = r.task.await;
        }
    }
}

/// Binds with SO_REUSEADDR (a restart does not wait out TIME_WAIT) and a
/// deep backlog (past `max_connections`, clients wait in the accept queue).
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

async fn accept_loop(socket: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    // Every connection holds a receiver: SIGTERM's drain sets it to true
    // (in-flight requests finish, idle connections close) and waits until
    // all receivers are gone.
    let (drain_tx, draining) = watch::channel(false);
    // Past the drain deadline, connections still open are closed.
    let (close_now, closing) = watch::channel(false);
    loop {
        // Past max_connections, stop accepting: new clients queue in the backlog.
        let permit = tokio::select! {
            permit = shared.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        // A lowered limit takes its permits back as connections close.
        let owed = shared.owed_permits.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |owed| owed.checked_sub(1),
        );
        if owed.is_ok() {
            permit.forget();
            continue;
        }
        let (stream, peer) = tokio::select! {
            // A lowered limit first: a client that arrived meanwhile must
            // not be served on the permit it took away.
            biased;
            () = shared.limit_changed.notified() => {
                // Lowered: this permit may be one the new limit no longer has.
                drop(permit);
                continue;
            }
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %shared.name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let draining = draining.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            shared.stats.connection_opened();
            tokio::select! {
                () = connection(stream, peer, &shared, draining) => {}
                // Dropping the connection future closes the socket.
                _ = closing.wait_for(|close| *close) => {}
            }
            shared.stats.connection_closed();
            drop(permit);
        });
    }
    drop(socket);
    drop(draining);
    let drain = shared.runtime.load().config.timeouts.shutdown_drain;
    let _ = drain_tx.send(true);
    if tokio::time::timeout(drain, drain_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!(listener = %shared.name, ?drain, "shutdown drain deadline reached; closing the remaining connections");
        let _ = close_now.send(true);
    }
}

/// Logs a connection dropped because its client took no response bytes
/// for the send timeout.
fn stalled(listener: &str, client: SocketAddr, timeout: Duration) {
    tracing::debug!(%listener, %client, ?timeout, "dropped a connection whose client took no response bytes for timeouts.request");
}

/// Logs one failed handshake. A connection closed or broken before the
/// TLS exchange says anything (TCP health probes, port scanners, a load
/// generator stopping) is a debug line; the rest are info lines within the
/// listener's [`LogBudget`].
fn log_failed_handshake(shared: &Shared, peer: SocketAddr, reason: &str, detail: &str) {
    if reason == CLOSED_IN_HANDSHAKE || reason == BROKEN_IN_HANDSHAKE {
        tracing::debug!(listener = %shared.name, client = %peer, reason, "handshake failed");
        return;
    }
    // The detail only when it adds to the reason.
    let detail = (!detail.is_empty() && detail != reason).then_some(detail);
    let budget = &shared.failed_handshakes_logged;
    match budget.take_now() {
        Budget::Log => {
            tracing::info!(listener = %shared.name, client = %peer, reason, detail, "handshake failed");
        }
        Budget::LastOne => {
            tracing::info!(listener = %shared.name, client = %peer, reason, detail, "handshake failed; more than {} in {} s on this listener: the rest of this window is not logged (tlsgate_handshake_failures_total counts them by reason)", budget.per_window, LogBudget::WINDOW);
        }
        Budget::Quiet => {}
    }
}

const CLOSED_IN_HANDSHAKE: &str = "client closed the connection during the handshake";
const BROKEN_IN_HANDSHAKE: &str = "connection error during the handshake";

/// Maps a handshake failure to the reason operators see in logs and metrics.
fn handshake_reason(err: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible, PeerMisbehaved};
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match err.kind() {
            std::io::ErrorKind::UnexpectedEof => CLOSED_IN_HANDSHAKE,
            _ => BROKEN_IN_HANDSHAKE,
        };
    };
    match tls {
        Error::NoCertificatesPresented => "no client certificate",
        Error::InvalidCertificate(CertificateError::Revoked) => "client certificate revoked",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "client certificate from an unknown CA"
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "client certificate expired",
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "client certificate not yet valid",
        Error::InvalidCertificate(
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. },
        ) => "CRL expired (expired_crl = reject-all)",
        // rustls' verifier passes webpki's own reasons on as Other; an
        // X.509 v1 certificate (`openssl x509 -req` without -extfile) is
        // the common one, and says nothing to an operator as a Debug dump.
        Error::InvalidCertificate(CertificateError::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::UnsupportedCertVersion)
            ) =>
        {
            "client certificate (or a CA in the chain it sent) is X.509 v1 (reissue it as v3, with extensions)"
        }
        Error::InvalidCertificate(_) => "client certificate invalid",
        // A pre-TLS 1.2 ClientHello lacks signature_algorithms, which rustls checks first.
        Error::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired)
        | Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered) => {
            "client offers only TLS 1.0/1.1 (not supported: RFC 8996)"
        }
        Error::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired)
        | Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled)
        | Error::PeerIncompatible(PeerIncompatible::Tls13RequiredForQuic) => {
            "no shared protocol version (client offers only versions this policy refuses)"
        }
        Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon) => {
            "no shared cipher suite"
        }
        // Also where a client offers only static-RSA or DHE suites: OpenSSL
        // then sends no supported_groups at all.
        Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon) => {
            "no shared key-exchange group (ECDHE only: the client offers no ECDHE group, or only RSA/DHE key exchange)"
        }
        Error::PeerIncompatible(PeerIncompatible::NoSignatureSchemesInCommon) => {
            "no shared signature scheme"
        }
        Error::PeerIncompatible(_) => "client incompatible with the TLS policy",
        Error::General(message) if message.contains("no server certificate") => {
            "no certificate for the requested name"
        }
        Error::AlertReceived(AlertDescription::UnknownCA | AlertDescription::BadCertificate) => {
            "client does not trust the server certificate"
        }
        Error::AlertReceived(_) => "client sent an alert",
        Error::NoApplicationProtocol => {
            "no shared ALPN protocol (tlsgate speaks h2, http/1.1 and http/1.0)"
        }
        Error::InvalidMessage(_)
        | Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec) => {
            "not a TLS ClientHello (plain HTTP on the HTTPS port?)"
        }
        _ => "handshake failed",
    }
}

/// A fatal `internal_error` alert as a plaintext TLS record: content type
/// alert, legacy version TLS 1.2, length 2, level fatal, description 80.
const INTERNAL_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80];

/// TLS record content type of a handshake message (the ClientHello).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Answers the ClientHello of a listener that cannot serve TLS right now
/// with an `internal_error` alert, so that the client reports a server-side
/// problem ("tlsv1 alert internal error") rather than a connection closed
/// for no reason. The ClientHello's record is read (and dropped) first:
/// closing with it unread would reset the connection before the client
/// reads the alert. Anything that is not a TLS handshake record is closed
/// at once.
async fn refuse_with_internal_error(mut stream: TcpStream, timeout: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let refuse = async {
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).await?;
        if header[0] != HANDSHAKE_RECORD {
            return Ok(());
        }
        let mut left = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut scratch = [0u8; 512];
        while left > 0 {
            let read = stream.read(&mut scratch[..left.min(512)]).await?;
            if read == 0 {
                return Ok(());
            }
            left -= read;
        }
        stream.write_all(&INTERNAL_ERROR_ALERT).await?;
        stream.shutdown().await
    };
    let _: Result<std::io::Result<()>, _> = tokio::time::timeout(timeout, refuse).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    draining: watch::Receiver<bool>,
) {
    let runtime = shared.runtime.load_full();
    let config = &runtime.config;
    let trusted = is_trusted(peer.ip(), &config.trusted_proxies);
    match &config.protocol {
        Protocol::Http => {
            let facts = ConnectionFacts::new(
                peer,
                trusted,
                "http",
                &shared.port,
                ClientCert::NotRequested,
            );
            // Not held for the connection's life: a reload's old config
            // should go when the reload is done, not when the last client does.
            drop(runtime);
            // A plain listener speaks HTTP/1.1 (HTTP/2 comes with TLS and ALPN).
            serve(stream, facts, HttpVersion::Http1, shared, draining).await;
        }
        Protocol::Https(tls) => {
            let server_config = match shared.tls.current(&tls.policy) {
                Ok(server_config) => server_config,
                Err(reason) => {
                    // SECURITY: fail closed — no handshake without the configured TLS material.
                    shared
                        .stats
                        .handshake_failed("listener has no usable TLS configuration");
                    // Once per window: under steady traffic too (a
                    // timestamp of the last connection never let it repeat).
                    if shared.unusable_logged.take_now() == Budget::Log {
                        tracing::warn!(listener = %shared.name, client = %peer, %reason, "handshake refused (logged at most every 10 s)");
                    }
                    let timeout = config.timeouts.handshake;
                    drop(runtime);
                    // Boxed: its buffers are then never part of the size of
                    // every connection's future, idle ones included.
                    Box::pin(refuse_with_internal_error(stream, timeout)).await;
                    return;
                }
            };
            // Boxed: the handshake's state is large and needed only until
            // it completes; inline, every connection's task would keep room
            // for it for as long as the connection lives.
            let handshake = tokio::time::timeout(
                config.timeouts.handshake,
                Box::pin(TlsStream::accept(stream, server_config)),
            )
            .await;
            let stream = match handshake {
                // Boxed: rustls' connection state is over a kilobyte, and
                // moved by value it would take that much room in each of
                // the futures it passes through, for the connection's life.
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(err)) => {
                    let reason = handshake_reason(&err);
                    shared.stats.handshake_failed(reason);
                    log_failed_handshake(shared, peer, reason, &err.to_string());
                    return;
                }
                Err(_) => {
                    shared.stats.handshake_failed("handshake timed out");
                    log_failed_handshake(shared, peer, "handshake timed out", "");
                    return;
                }
            };
            let session = stream.connection();
            shared
                .stats
                .handshake_ok(session.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
            let client_cert = match (&tls.mutual_auth, session.peer_certificates()) {
                (None, _) => ClientCert::NotRequested,
                (Some(_), Some([leaf, ..])) => {
                    ClientCertHeaders::from_der(leaf.as_ref(), config.rfc9440_client_cert)
                        .map_or(ClientCert::Absent, ClientCert::Verified)
                }
                (Some(_), _) => ClientCert::Absent,
            };
            let facts = ConnectionFacts::new(peer, trusted, "https", &shared.port, client_cert);
            let version = match session.alpn_protocol() {
                Some(b"h2") => HttpVersion::Http2,
                _ => HttpVersion::Http1,
            };
            drop(runtime);
            serve(stream, facts, version, shared, draining).await;
        }
    }
}

/// The HTTP version a connection speaks, from ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpVersion {
    Http1,
    Http2,
}

async fn serve<IO>(
    io: IO,
    facts: ConnectionFacts,
    version: HttpVersion,
    shared: &Arc<Shared>,
    mut draining: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let runtime = shared.runtime.load_full();
    let config = &runtime.config;
    let facts = Arc::new(facts);
    let client = facts.client;
    let in_flight = Arc::new(InFlight::default());
    let service = {
        let shared = shared.clone();
        let in_flight = in_flight.clone();
        service_fn(move |request| {
            let started = in_flight.enter();
            // Each request reads the listener's current runtime, so backend
            // and limit changes apply to open connections' next requests.
            let runtime = shared.runtime.load_full();
            let facts = facts.clone();
            let stats = shared.stats.clone();
            // Boxed: hyper hands an idle HTTP/1.1 connection back (to park
            // it) only when the service's future is Unpin. proxy::handle's
            // future (~2.5 KiB) is made inside the box, on the first poll:
            // made out here and moved in, it was copied twice per request.
            Box::pin(async move {
                let response = proxy::handle(request, runtime, facts, stats, &started).await;
                drop(started);
                response
            })
        })
    };
    // hyper rejects oversized heads itself (431); give it room above our
    // exact count so the precise limit, counted per R13, is ours to apply.
    let buffer = (config.limits.max_header_bytes + 4096).max(8192);
    let timeouts = config.timeouts;
    let client_idle = timeouts.client_idle;
    // A client that takes no response bytes for this long is dropped: the
    // same bound as a backend's silence in the middle of a body.
    let send_timeout = timeouts.request;
    let result = match version {
        HttpVersion::Http1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(client_idle)
                .max_buf_size(buffer)
                // hyper parses into one slot per allowed header line,
                // allocated (twice) for every request it parses: the earlier
                // cap of one slot per 4 bytes of max_header_bytes was 1 MiB
                // per request and most of the allocator's time. 1,000 lines
                // is ten times what HAProxy and Envoy allow, so the byte
                // limit (R13) is what real requests meet.
                .max_headers(MAX_HEADER_LINES)
                .keep_alive(true);
            drop(runtime);
            // Boxed on its own, sized for HTTP/1.1 alone, and released
            // while the connection is idle (keepalive.rs).
            let end = Box::pin(keepalive::serve_http1(
                io,
                builder,
                service,
                in_flight,
                timeouts,
                draining,
                &shared.stats,
            ))
            .await;
            match end {
                Ok(Http1End::SlowHead) if shared.slow_heads_logged.take_now() == Budget::Log => {
                    tracing::info!(listener = %shared.name, %client, timeout = ?client_idle, "closed a connection whose request head was still arriving when timeouts.client_idle ran out: a stalled or deliberately slow (slowloris) client; tlsgate_slow_request_heads_total counts them (logged at most every 10 s)");
                }
                Ok(Http1End::SendStalled) => stalled(&shared.name, client, send_timeout),
                _ => {}
            }
            end.map(drop)
        }
        HttpVersion::Http2 => {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(buffer).unwrap_or(u32::MAX))
                // What a connection may hold: hyper's defaults (200 streams
                // with 400 KiB of response each buffered for the client) let
                // one client that grants a large window and then stops
                // reading hold ~100 MB (QA). NGINX allows 128 streams.
                .max_concurrent_streams(MAX_H2_STREAMS)
                .max_send_buf_size(H2_SEND_BUFFER)
                .keep_alive_interval(Some(client_idle))
                .keep_alive_timeout(Duration::from_secs(10));
            drop(runtime);
            let activity = Arc::new(Activity::default());
            let io = ClientIo::with_flood_guard(io, Arc::clone(&activity));
            let mut connection = Box::pin(builder.serve_connection(TokioIo::new(io), service));
            let mut shutting_down = false;
            // Looks a few times per period at whether the connection is
            // idle (no stream started or waiting on a backend for
            // client_idle: GOAWAY, as for HTTP/1.1 the close; answering
            // pings does not keep it open) or its writes stalled.
            let every = (client_idle.min(send_timeout) / 3).max(Duration::from_millis(100));
            let mut stall = SendStall::new(send_timeout);
            let mut idle = Duration::ZERO;
            let mut started = in_flight.started();
            let ended = loop {
                tokio::select! {
                    result = connection.as_mut() => break result,
                    changed = draining.changed(), if !shutting_down => {
                        if changed.is_err() || *draining.borrow() {
                            // GOAWAY: streams in flight finish, no new ones.
                            shutting_down = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    () = tokio::time::sleep(every) => {
                        if stall.look(&activity, every) {
                            stalled(&shared.name, client, send_timeout);
                            break Ok(());
                        }
                        if in_flight.is_idle() && in_flight.started() == started {
                            idle += every;
                        } else {
                            idle = Duration::ZERO;
                            started = in_flight.started();
                        }
                        if idle >= client_idle && !shutting_down {
                            // Streams still sending their bodies finish.
                            shutting_down = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            };
            if activity.flooded() {
                shared.stats.h2_flood();
                if shared.floods_logged.take_now() == Budget::Log {
                    tracing::info!(listener = %shared.name, %client, "closed an HTTP/2 connection that sent control frames (PRIORITY, WINDOW_UPDATE, SETTINGS, PING) far beyond what its requests need: a flood; tlsgate_http2_floods_total counts them (logged at most every 10 s)");
                }
                return;
            }
            ended
        }
    };
    if let Err(err) = result {
        tracing::debug!(listener = %shared.name, %client, error = %err, "connection ended with an error");
    }
}
