//! `tlsgate demo`: the whole product on a fresh machine in one command — a
//! throwaway PKI, two in-process backends, an HTTPS listener with mutual
//! TLS, and the commands to try it.

use std::convert::Infallible;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tlsgate_cert_store::{CertificateName, ClientAuthMode, ClientAuthPolicy, Store, StoreConfig};
use tlsgate_listener::{
    BackendConfig, HealthCheckConfig, Limits, ListenerConfig, MutualAuth, Protocol, SchedulerKind,
    Server, Timeouts, TlsPolicy, TlsSettings,
};
use tokio::net::TcpListener;

use crate::pki;

/// Arguments of `tlsgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address of the demo HTTPS listener (port 0 picks a free port).
    /// Default: 127.0.0.1:8443, or a free port when that one is taken.
    #[arg(long)]
    bind: Option<SocketAddr>,
}

/// The demo's listener address when `--bind` is not given.
const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8443);

/// Runs the demo until Ctrl-C, SIGTERM or SIGHUP.
pub fn run(args: &DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tlsgate: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Not eprintln!: with the terminal gone it would panic.
            let _ = writeln!(std::io::stderr(), "tlsgate demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn write(path: &Path, content: &str, secret: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A demo backend: answers every request with who asked and how.
async fn backend(number: usize) -> Result<SocketAddr> {
    let socket = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a demo backend")?;
    let address = socket.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            let service = service_fn(move |request: Request<hyper::body::Incoming>| async move {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                let body = format!(
                    "Hello from demo backend {number}\n  client certificate: {} (verify: {})\n  issued by:          {}\n  forwarded for:      {} via {} port {}\n  request:            {} {}\n",
                    header("x-forwarded-clientcert-subjectdn"),
                    header("x-forwarded-clientcert-clientverify"),
                    header("x-forwarded-clientcert-issuerdn"),
                    header("x-forwarded-for"),
                    header("x-forwarded-proto"),
                    header("x-forwarded-port"),
                    request.method(),
                    request.uri(),
                );
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

fn name(text: &str) -> Result<CertificateName> {
    CertificateName::parse(text).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn demo(args: &DemoArgs) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("tlsgate-demo-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let root = dir.path();
    let pki = pki::demo().context("cannot generate the demo certificates")?;
    let store_dir = root.join("store");
    // Leaf then CA, like a private CA's fullchain.pem.
    let chain = format!("{}{}", pki.server.cert, pki.ca);
    write(
        &store_dir.join("server/demo-server/cert.pem"),
        &chain,
        false,
    )?;
    write(
        &store_dir.join("server/demo-server/key.pem"),
        &pki.server.key,
        true,
    )?;
    write(&store_dir.join("ca/demo-ca/ca.pem"), &pki.ca, false)?;
    write(&root.join("ca.pem"), &pki.ca, false)?;
    write(&root.join("client.pem"), &pki.client.cert, false)?;
    write(&root.join("client.key"), &pki.client.key, true)?;

    let backends = [backend(1).await?, backend(2).await?];
    let store = Store::open(StoreConfig::new(&store_dir)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _watcher = store.watch().map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = TlsPolicy::builtin("tls12")
        .context("the built-in tls12 policy is missing")?
        .policy;
    let listener = |bind: SocketAddr| -> Result<ListenerConfig> {
        Ok(ListenerConfig {
            name: "demo".into(),
            bind,
            protocol: Protocol::Https(TlsSettings {
                certificates: vec![name("demo-server")?],
                policy: policy.clone(),
                mutual_auth: Some(MutualAuth {
                    ca: name("demo-ca")?,
                    policy: ClientAuthPolicy {
                        mode: ClientAuthMode::Required,
                        ..ClientAuthPolicy::default()
                    },
                }),
            }),
            backends: backends
                .iter()
                .map(|a| BackendConfig {
                    address: a.to_string(),
                    weight: 100,
                })
                .collect(),
            scheduler: SchedulerKind::RoundRobin,
            health_check: Some(HealthCheckConfig::default()),
            trusted_proxies: Vec::new(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            rfc9440_client_cert: false,
        })
    };
    let server = Server::new(store.clone());
    match args.bind {
        // An address asked for is that address or nothing.
        Some(bind) => server.apply(vec![listener(bind)?]).await?,
        None => {
            if let Err(err) = server.apply(vec![listener(DEFAULT_BIND)?]).await {
                // The default port may be taken (a second demo?): any free port will do.
                eprintln!("note: {err}; using a free port instead");
                let fallback = SocketAddr::new(DEFAULT_BIND.ip(), 0);
                server.apply(vec![listener(fallback)?]).await?;
            }
        }
    }
    let address = server
        .local_addr("demo")
        .await
        .context("the demo listener did not start")?;
    let url = format!("https://localhost:{}/", address.port());
    let d = root.display();
    let backend_list: Vec<String> = backends.iter().map(ToString::to_string).collect();
    // Before it says it runs: a signal sent on seeing that line must stop
    // it cleanly, not kill it with its keys left behind.
    let stop = StopSignals::install();
    let mut out = std::io::stdout().lock();
    writeln!(out, "tlsgate demo is running (Ctrl-C to stop)")?;
    writeln!(out)?;
    writeln!(
        out,
        "  listener  {url}  (mutual TLS required; client CA \"demo-ca\")"
    )?;
    writeln!(
        out,
        "  backends  {} (round robin, health-checked)",
        backend_list.join(", ")
    )?;
    writeln!(
        out,
        "  files     {d}/  (throwaway PKI and store; deleted on exit)"
    )?;
    writeln!(out)?;
    writeln!(out, "Try it (run these in another terminal):")?;
    writeln!(
        out,
        "  curl --cacert {d}/ca.pem --cert {d}/client.pem --key {d}/client.key {url}"
    )?;
    writeln!(
        out,
        "  curl --cacert {d}/ca.pem --cert {d}/client.pem --key {d}/client.key --http2 {url}hello?again=1"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "And see it refuse a client without a certificate (curl: (56) ... tlsv13 alert certificate required):"
    )?;
    writeln!(out, "  curl --cacert {d}/ca.pem {url}")?;
    writeln!(out)?;
    writeln!(out, "The TLS details, as openssl sees them:")?;
    writeln!(
        out,
        "  openssl s_client -connect localhost:{} -CAfile {d}/ca.pem -cert {d}/client.pem -key {d}/client.key -brief </dev/null",
        address.port()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Hot swap: put a new cert.pem + key.pem in {d}/store/server/demo-server/ — it is live within a second, no restart."
    )?;
    out.flush()?;
    drop(out);

    stop.wait().await;
    // The terminal may be gone (SIGHUP): a failed write is no reason to
    // skip the drain and the clean-up.
    let _ = writeln!(std::io::stderr(), "stopping: draining in-flight requests");
    server.shutdown().await;
    Ok(())
}

/// Ctrl-C, SIGTERM, or SIGHUP (the terminal closed): every way a
/// foreground demo ends short of SIGKILL, so its throwaway keys are
/// removed.
struct StopSignals {
    #[cfg(unix)]
    streams: [Option<tokio::signal::unix::Signal>; 3],
}

impl StopSignals {
    fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                streams: [
                    signal(SignalKind::interrupt()).ok(),
                    signal(SignalKind::terminate()).ok(),
                    signal(SignalKind::hangup()).ok(),
                ],
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            use crate::serve::next_signal;
            let [mut interrupt, mut terminate, mut hangup] = self.streams;
            tokio::select! {
                _ = next_signal(&mut interrupt) => {}
                _ = next_signal(&mut terminate) => {}
                _ = next_signal(&mut hangup) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
