//! `tlsgate-loadgen`: the TLS load generator of the comparison harness
//! (`benches/compare/`) for the figures wrk and h2load cannot produce
//! fairly: full handshakes (no resumption), mutual-TLS handshakes, resumed
//! handshakes, and holding many idle TLS connections open.
//!
//! One thread (a current-thread tokio runtime), so that `taskset -c 1`
//! gives it exactly one core. The client is kept as cheap as rustls allows
//! — TLS 1.3 only, X25519 only, AES-128-GCM only, and no server certificate
//! verification — so that the proxy, not this tool, is what runs out of CPU
//! first for as long as possible. Every proxy in the comparison gets exactly
//! the same ClientHello.
//!
//! Modes (`--mode`):
//! - `full`: each connection does a full handshake (resumption disabled),
//!   sends `GET PATH` with `Connection: close`, reads the whole response and
//!   waits for the server to close (so TIME_WAIT lands on the server side,
//!   as with real browsers and wrk).
//! - `mtls`: the same with a client certificate (`--cert`, `--key`).
//! - `resumed`: the same, but each of the `--concurrency` workers keeps its
//!   own TLS 1.3 ticket store, so after a worker's first connection every
//!   connection offers a ticket from the previous one. The output says how
//!   many handshakes actually resumed; the harness checks it.
//! - `hold`: opens `--connections` connections (`--concurrency` handshakes
//!   at a time), sends one keep-alive `GET PATH` on each, reads the
//!   response, keeps them all open, prints one `ready` JSON line, and holds
//!   them until stdin closes or `--duration` seconds pass.
//!
//! Output: one JSON object on stdout (the `hold` mode prints it when the
//! connections are held, prefixed by `ready `). Up to five distinct error
//! messages go to stderr.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Every connection (connect, handshake, request, response) must finish in
/// this time or it counts as a timeout: no run can hang on a stuck peer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A response larger than this is an error: the harness only asks for
/// small bodies here (wrk measures the 1 MiB one).
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Parser, Debug)]
#[command(about = "TLS handshake load generator for benches/compare")]
struct Args {
    /// Target address (a loopback address: this tool is for local benchmarks).
    #[arg(long)]
    connect: SocketAddr,
    /// What each connection does.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Connections in flight at once (for `hold`: handshakes in flight).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds to run (`hold`: the longest time to hold the connections).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Connections to open and hold (`hold` mode only).
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// SNI name sent in the ClientHello.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Client certificate chain, PEM (`mtls` mode).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Client private key, PEM (`mtls` mode).
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Full,
    Mtls,
    Resumed,
    Hold,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Mtls => "mtls",
            Mode::Resumed => "resumed",
            Mode::Hold => "hold",
        }
    }
}

/// Counters shared by the workers.
#[derive(Default)]
struct Stats {
    /// Connections that completed the handshake and got a 2xx response.
    ok: AtomicU64,
    /// Of `ok`: handshakes the server resumed.
    resumed: AtomicU64,
    connect_errors: AtomicU64,
    tls_errors: AtomicU64,
    /// A response that was not 2xx (counted with its status below).
    non_2xx: AtomicU64,
    /// A response that could not be read or parsed.
    read_errors: AtomicU64,
    timeouts: AtomicU64,
    /// Distinct error messages, for the harness log (at most five kept).
    samples: Mutex<BTreeSet<String>>,
}

impl Stats {
    fn sample(&self, message: String) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < 5 {
            samples.insert(message);
        }
    }

    fn record(&self, outcome: Result<HandshakeKind, Failure>) {
        let counter = match outcome {
            Ok(kind) => {
                if kind == HandshakeKind::Resumed {
                    self.resumed.fetch_add(1, Ordering::Relaxed);
                }
                &self.ok
            }
            Err(Failure::Connect(e)) => {
                self.sample(format!("connect: {e}"));
                &self.connect_errors
            }
            Err(Failure::Tls(e)) => {
                self.sample(format!("tls: {e}"));
                &self.tls_errors
            }
            Err(Failure::Status(status)) => {
                self.sample(format!("HTTP status {status}"));
                &self.non_2xx
            }
            Err(Failure::Read(e)) => {
                self.sample(format!("response: {e}"));
                &self.read_errors
            }
            Err(Failure::Timeout) => &self.timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self, mode: Mode, seconds: f64, extra: &str) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ok = get(&self.ok);
        let rate = if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        };
        format!(
            "{{\"mode\":\"{}\",\"seconds\":{seconds:.3},\"ok\":{ok},\"rate\":{rate:.1},\
             \"resumed\":{},\"connect_errors\":{},\"tls_errors\":{},\"non_2xx\":{},\
             \"read_errors\":{},\"timeouts\":{}{extra}}}",
            mode.name(),
            get(&self.resumed),
            get(&self.connect_errors),
            get(&self.tls_errors),
            get(&self.non_2xx),
            get(&self.read_errors),
            get(&self.timeouts),
        )
    }
}

/// Why one connection did not count.
enum Failure {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Status(u16),
    Read(String),
    Timeout,
}

/// Accepts any server certificate and signature: the load generator must
/// not spend its core on verification (the proxies all serve the same
/// certificate, and loopback has no one in the middle).
#[derive(Debug)]
struct AcceptAnything(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The one ClientHello every proxy sees: TLS 1.3, X25519, AES-128-GCM,
/// ALPN http/1.1 (no proxy may switch to h2 under this tool).
fn client_config(args: &Args) -> Result<ClientConfig, String> {
    let base = aws_lc_rs::default_provider();
    let provider = CryptoProvider {
        cipher_suites: vec![aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..base
    };
    let verifier = Arc::new(AcceptAnything(provider.signature_verification_algorithms));
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = if args.mode == Mode::Mtls {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            return Err("--mode mtls needs --cert and --key".into());
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let key =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if args.mode == Mode::Resumed {
        // Set per worker in `run_for`: a store shared by all workers would
        // run out of single-use TLS 1.3 tickets under concurrency.
        Resumption::default()
    } else {
        Resumption::disabled()
    };
    Ok(config)
}

/// Reads one HTTP/1.1 response (Content-Length, chunked, or until EOF) and
/// returns its status. `stream` is left positioned after the response.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<u16, Failure> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    loop {
        if let Some(done) = complete(&buf, eof)? {
            return Ok(done);
        }
        if eof {
            return Err(Failure::Read(format!(
                "connection closed after {} bytes of response",
                buf.len()
            )));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A peer that closes without close_notify after a complete
            // response is fine (the response is judged above); before, not.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
            Err(e) => return Err(Failure::Read(e.to_string())),
        }
        if buf.len() > MAX_RESPONSE {
            return Err(Failure::Read("response over 64 KiB".into()));
        }
    }
}

/// `Some(status)` when `buf` holds a whole response; `None` to read more.
fn complete(buf: &[u8], eof: bool) -> Result<Option<u16>, Failure> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Failure::Read("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failure::Read(format!("bad status line {status_line:?}")))?;
    let body = &buf[head_end + 4..];
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let whole = match (chunked, length) {
        // Good enough for the proxies' small bodies: the last chunk ends the body.
        (true, _) => body.ends_with(b"0\r\n\r\n"),
        (false, Some(length)) => body.len() >= length,
        (false, None) => eof,
    };
    Ok(whole.then_some(status))
}

/// One connection of the `full`, `mtls` and `resumed` modes.
async fn one_connection(
    connector: &TlsConnector,
    args: &Args,
    name: &ServerName<'static>,
    request: &[u8],
) -> Result<HandshakeKind, Failure> {
    let tcp = TcpStream::connect(args.connect)
        .await
        .map_err(Failure::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(Failure::Tls)?;
    let kind = tls
        .get_ref()
        .1
        .handshake_kind()
        .unwrap_or(HandshakeKind::Full);
    tls.write_all(request)
        .await
        .map_err(|e| Failure::Read(format!("write: {e}")))?;
    let status = read_response(&mut tls).await?;
    // Connection: close: wait for the server to close first, so that the
    // TIME_WAIT state lands on its side and not on our ephemeral ports.
    let mut rest = [0u8; 256];
    while let Ok(n) = tls.read(&mut rest).await {
        if n == 0 {
            break;
        }
    }
    if (200..300).contains(&status) {
        Ok(kind)
    } else {
        Err(Failure::Status(status))
    }
}

/// The `full`, `mtls` and `resumed` modes: `concurrency` workers, each
/// opening one connection after the other until the deadline.
async fn run_for(args: Arc<Args>, config: ClientConfig) -> String {
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let request = Arc::new(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            args.path, args.server_name
        )
        .into_bytes(),
    );
    let mut workers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let mut config = config.clone();
        if args.mode == Mode::Resumed {
            config.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(4)));
        }
        let connector = TlsConnector::from(Arc::new(config));
        let (args, stats, request) = (args.clone(), stats.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let Ok(name) = ServerName::try_from(args.server_name.clone()) else {
                return;
            };
            while Instant::now() < deadline {
                let attempt = tokio::time::timeout(
                    CONNECTION_TIMEOUT,
                    one_connection(&connector, &args, &name, &request),
                );
                // Connections still running at the deadline are not counted.
                let Ok(outcome) = tokio::time::timeout_at(deadline.into(), attempt).await else {
                    break;
                };
                stats.record(outcome.unwrap_or(Err(Failure::Timeout)));
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = deadline.saturating_duration_since(start).as_secs_f64();
    report_samples(&stats);
    stats.json(args.mode, seconds, "")
}

/// One held connection: handshake, one keep-alive request, response read.
async fn open_held(
    connector: &TlsConnector,
    args: &Args,
    name: &ServerName<'static>,
    request: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let tcp = TcpStream::connect(args.connect)
        .await
        .map_err(Failure::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(Failure::Tls)?;
    tls.write_all(request)
        .await
        .map_err(|e| Failure::Read(format!("write: {e}")))?;
    match read_response(&mut tls).await? {
        200..=299 => Ok(tls),
        status => Err(Failure::Status(status)),
    }
}

/// The `hold` mode.
async fn hold(args: Arc<Args>, config: ClientConfig) -> String {
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let connector = TlsConnector::from(Arc::new(config));
    let Ok(name) = ServerName::try_from(args.server_name.clone()) else {
        return stats.json(args.mode, 0.0, "");
    };
    let request = Arc::new(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            args.path, args.server_name
        )
        .into_bytes(),
    );
    let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut opening = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (args, stats, request) = (args.clone(), stats.clone(), request.clone());
        let (connector, name, gate) = (connector.clone(), name.clone(), gate.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let attempt = tokio::time::timeout(
                CONNECTION_TIMEOUT,
                open_held(&connector, &args, &name, &request),
            )
            .await
            .unwrap_or(Err(Failure::Timeout));
            match attempt {
                Ok(stream) => {
                    stats.record(Ok(HandshakeKind::Full));
                    Some(stream)
                }
                Err(failure) => {
                    stats.record(Err(failure));
                    None
                }
            }
        }));
    }
    let mut held = Vec::with_capacity(args.connections);
    for task in opening {
        if let Ok(Some(stream)) = task.await {
            held.push(stream);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    report_samples(&stats);
    println!("ready {}", stats.json(args.mode, seconds, ""));
    // The harness measures the proxy now, then closes our stdin (which
    // also happens if the harness dies). A plain thread reads it: the
    // process exits without waiting for that thread.
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
            if n == 0 {
                break;
            }
        }
        let _ = eof_tx.send(());
    });
    let _ = tokio::time::timeout(Duration::from_secs_f64(args.duration), eof_rx).await;
    let still_open = held.len();
    drop(held);
    stats.json(args.mode, seconds, &format!(",\"held\":{still_open}"))
}

fn report_samples(stats: &Stats) {
    let samples = stats.samples.lock().unwrap_or_else(PoisonError::into_inner);
    for sample in samples.iter() {
        eprintln!("tlsgate-loadgen: error sample: {sample}");
    }
}

fn main() -> std::process::ExitCode {
    let args = Arc::new(Args::parse());
    let config = match client_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tlsgate-loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tlsgate-loadgen: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let report = runtime.block_on(async {
        if args.mode == Mode::Hold {
            hold(args.clone(), config).await
        } else {
            run_for(args.clone(), config).await
        }
    });
    println!("{report}");
    std::process::ExitCode::SUCCESS
}
