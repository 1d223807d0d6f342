//! `tlsgate serve`: wires the config, the certificate store and the
//! listeners together, and handles reloads (config file change or SIGHUP)
//! and graceful shutdown (SIGTERM, SIGINT).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use notify::RecursiveMode;
use tlsgate_cert_store::{CertKind, Store, StoreConfig, StoreEvent};
use tlsgate_listener::{ListenerConfig, Server};
use tlsgate_validator::CertificateName;
use tokio::sync::{Mutex, broadcast, mpsc};

use crate::admin::{self, AppState, ConfigReloads};
use crate::check::{Unresolved, newly_unresolved, unresolved_certificates};
use crate::config::{self, Config, ConfigError};
use crate::systemd;

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Prints config errors the way an operator reads them: one per line.
pub fn print_config_errors(errors: &[ConfigError]) {
    for error in errors {
        eprintln!("error: {error}");
    }
}

/// The next delivery of `signal`; never, when its handler could not be
/// installed.
#[cfg(unix)]
pub(crate) async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal.as_mut() {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// The async runtime: one worker thread per core by default, `workers`
/// when given.
///
/// One worker gets tokio's current-thread scheduler rather than a
/// multi-thread one of size one: with nothing to steal from or hand to,
/// the multi-thread scheduler's shared queues, atomics and task-list locks
/// are pure cost, and every HTTP/2 stream is a spawned task. Measured on
/// one pinned core: HTTP/2 +38 % req/s (CPU per request -29 %), HTTP/1.1
/// +4 %, handshakes within noise (BENCHMARKS.md).
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    // Both the flag and server.workers are 1 to MAX_WORKERS when given.
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().thread_name("tlsgate-worker");
    builder.build()
}

/// Opens the store the config names.
pub fn open_store(config: &Config) -> Result<Arc<Store>, tlsgate_cert_store::Error> {
    let mut store_config = StoreConfig::new(&config.store.dir);
    store_config.max_server_certificates = config.store.max_server_certificates;
    store_config.max_ca_certificates = config.store.max_ca_certificates;
    Store::open(store_config)
}

/// Runs the data plane until SIGTERM/SIGINT.
pub fn run(path: &Path, workers: Option<usize>) -> ExitCode {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            print_config_errors(&errors);
            eprintln!(
                "tlsgate: not started: fix the configuration above (check it with `tlsgate check-config --config {}`)",
                path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match runtime(workers.or(config.workers)) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tlsgate: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

/// Reads the admin bearer token; one trailing newline is not part of it.
pub(crate) fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let mut token = std::fs::read(path)
        .map_err(|e| format!("cannot read admin.token_file {}: {e}", path.display()))?;
    while token.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        token.pop();
    }
    if token.is_empty() {
        return Err(format!(
            "admin.token_file {} is empty; put a long random token in it (e.g. `openssl rand -hex 32`)",
            path.display()
        ));
    }
    Ok(token)
}

async fn serve(config: Config) -> ExitCode {
    for note in &config.notes {
        tracing::warn!("{note}");
    }
    let token = match config
        .admin
        .token_file
        .as_deref()
        .map(read_token)
        .transpose()
    {
        Ok(token) => token,
        Err(message) => {
            eprintln!("tlsgate: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("tlsgate: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _store_watcher = match store.watch() {
        Ok(watcher) => watcher,
        Err(err) => {
            eprintln!("tlsgate: {err}");
            return ExitCode::FAILURE;
        }
    };
    let server = Server::new(store.clone());
    if let Err(err) = server.apply(config.listeners.clone()).await {
        eprintln!("tlsgate: {err}");
        return ExitCode::FAILURE;
    }
    // Serving starts anyway: the admin API is how a first certificate is
    // uploaded, and a file dropped into the store later is picked up.
    for problem in unresolved_certificates(&config, &store) {
        tracing::error!("{}; {}", problem.message, until_it_arrives(&problem));
    }
    let admin_bind = config.admin.bind;
    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel::<&'static str>();
    let _config_watcher = watch_config(&config.path, reload_tx.clone());
    let current = Arc::new(Mutex::new(config));
    let state = Arc::new(AppState {
        store: store.clone(),
        server: server.clone(),
        config: current.clone(),
        token,
        ready: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        config_reloads: ConfigReloads::default(),
    });
    let _admin = match admin::start(state.clone(), admin_bind).await {
        Ok((address, task)) => {
            tracing::info!(%address, "admin API listening");
            task
        }
        Err(err) => {
            let hint = match err.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "; another process (another tlsgate?) uses that port — stop it, or set another [admin] bind"
                }
                _ => "",
            };
            eprintln!("tlsgate: cannot bind the admin API on {admin_bind}: {err}{hint}");
            return ExitCode::FAILURE;
        }
    };
    // Signal handlers first: a SIGTERM sent as soon as "serving" (or
    // READY=1) appears must drain, not kill the process outright.
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload by editing the config file");
            None
        }
    };
    #[cfg(unix)]
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();

    state.ready.store(true, Ordering::Relaxed);
    let listening = server.listeners().await;
    for (name, address) in &listening {
        tracing::info!(listener = %name, %address, "serving");
    }
    let mut status = serving_status(&server, &store, &current, None).await;
    systemd::ready(&status);
    // Certificates arriving in the store update the status line, and apply
    // a config refused only for want of them.
    let mut store_events = store.subscribe();
    let mut store_open = true;
    let mut last_reload: Option<Reload> = None;

    loop {
        #[cfg(unix)]
        let hup = next_signal(&mut hangup);
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        #[cfg(unix)]
        let term = next_signal(&mut terminate);
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        #[cfg(unix)]
        let int = next_signal(&mut interrupt);
        #[cfg(not(unix))]
        let int = async { tokio::signal::ctrl_c().await.ok() };

        let why = tokio::select! {
            _ = hup => "SIGHUP",
            Some(why) = reload_rx.recv() => why,
            event = store_events.recv(), if store_open => {
                let waiting_for = match &last_reload {
                    Some(Reload::WaitingFor(names)) => names.as_slice(),
                    _ => &[],
                };
                let arrived = match event {
                    Ok(StoreEvent::Loaded { kind, name, .. }) => waiting_for.contains(&(kind, name)),
                    Ok(_) => false,
                    // Events were missed: any of them may be the one.
                    Err(broadcast::error::RecvError::Lagged(_)) => !waiting_for.is_empty(),
                    Err(broadcast::error::RecvError::Closed) => {
                        store_open = false;
                        false
                    }
                };
                if !arrived {
                    let next = serving_status(&server, &store, &current, last_reload.as_ref()).await;
                    if next != status {
                        status = next;
                        systemd::status(&status);
                    }
                    continue;
                }
                "a certificate the refused configuration waits for arrived"
            }
            _ = term => break,
            _ = int => break,
        };
        // systemd shows "reloading" until the READY=1 that follows, whether
        // the new config was taken or refused (a refused one leaves the
        // running config serving); with Type=notify-reload, `systemctl
        // reload` itself waits for it.
        systemd::reloading();
        let outcome = reload(&server, &store, &current, &state.config_reloads, why).await;
        status = serving_status(&server, &store, &current, Some(&outcome)).await;
        last_reload = Some(outcome);
        systemd::ready(&status);
    }
    systemd::stopping();
    state.stopping.store(true, Ordering::Relaxed);
    state.ready.store(false, Ordering::Relaxed);
    tracing::info!("shutting down: no new connections; in-flight requests may finish");
    server.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// What a log line about a certificate a listener names but the store
/// does not serve says happens meanwhile.
fn until_it_arrives(problem: &Unresolved) -> &'static str {
    match problem.reference.kind {
        CertKind::Server => {
            "until it is there, clients asking for it get the listener's first certificate that is, and a listener with none of its server certificates refuses every handshake"
        }
        CertKind::Ca => {
            "until it is there, the listener refuses every handshake (mutual authentication fails closed)"
        }
    }
}

/// The unit's status line in `systemctl status`: what is being served,
/// which certificates listeners name that the store does not serve, and
/// whether the last reload was refused.
async fn serving_status(
    server: &Server,
    store: &Store,
    current: &Mutex<Config>,
    last_reload: Option<&Reload>,
) -> String {
    let listeners: Vec<String> = server
        .listeners()
        .await
        .iter()
        .map(|(name, address)| format!("{name} on {address}"))
        .collect();
    let mut status = format!("serving {}", listeners.join(", "));
    let unresolved = unresolved_certificates(&*current.lock().await, store);
    if !unresolved.is_empty() {
        let names: Vec<String> = unresolved
            .iter()
            .map(|u| {
                let r = &u.reference;
                format!("{}: {} {:?}", r.listener, r.kind, r.name.as_str())
            })
            .collect();
        status.push_str(&format!(
            "; not in the store or refused: {}",
            names.join(", ")
        ));
    }
    match last_reload {
        Some(Reload::Refused) => {
            status.push_str("; the last reload was refused (journalctl -u tlsgate says why)");
        }
        Some(Reload::WaitingFor(_)) => status.push_str(
            "; the last reload waits for certificates it names (journalctl -u tlsgate says which)",
        ),
        Some(Reload::Applied) | None => {}
    }
    status
}

/// How a reload ended.
enum Reload {
    /// The new config is in force.
    Applied,
    /// The new config is refused; the running one stays.
    Refused,
    /// The new config names certificates the store does not serve yet; it
    /// is applied when they arrive (or on the next reload).
    WaitingFor(Vec<(CertKind, CertificateName)>),
}

/// Which listeners a reload adds, removes and changes, by name: what a
/// 3 a.m. operator reading "configuration reloaded" wants to know first.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListenerChanges {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
}

impl ListenerChanges {
    fn between(running: &Config, next: &Config) -> ListenerChanges {
        let mut changes = ListenerChanges::default();
        for listener in &next.listeners {
            match running.listeners.iter().find(|l| l.name == listener.name) {
                None => changes.added.push(listener.name.clone()),
                // The validated config has no PartialEq (policies, paths);
                // its Debug form holds every field, and a reload is rare.
                Some(old) if format!("{old:?}") != format!("{listener:?}") => {
                    let fields = changed_fields(old, listener).join(", ");
                    changes
                        .changed
                        .push(format!("{} ({fields})", listener.name));
                }
                Some(_) => {}
            }
        }
        changes.removed = running
            .listeners
            .iter()
            .filter(|old| !next.listeners.iter().any(|l| l.name == old.name))
            .map(|old| old.name.clone())
            .collect();
        changes
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Which parts of a listener's config differ, as the config file names
/// them: "web (backend, timeouts)" tells an operator whether a reload did
/// what was meant.
fn changed_fields(old: &ListenerConfig, new: &ListenerConfig) -> Vec<&'static str> {
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let mut fields = Vec::new();
    if old.bind != new.bind {
        fields.push("bind");
    }
    match (old.tls(), new.tls()) {
        (Some(a), Some(b)) => {
            if a.certificates != b.certificates {
                fields.push("certificates");
            }
            if differs(&a.policy, &b.policy) {
                fields.push("tls_policy");
            }
            if differs(&a.mutual_auth, &b.mutual_auth) {
                fields.push("mutual_auth");
            }
        }
        (None, None) => {}
        _ => fields.push("protocol"),
    }
    for (name, changed) in [
        ("backend", differs(&old.backends, &new.backends)),
        ("scheduler", differs(&old.scheduler, &new.scheduler)),
        (
            "health_check",
            differs(&old.health_check, &new.health_check),
        ),
        (
            "trusted_proxies",
            old.trusted_proxies != new.trusted_proxies,
        ),
        ("timeouts", differs(&old.timeouts, &new.timeouts)),
        ("limits", differs(&old.limits, &new.limits)),
        (
            "rfc9440_client_cert",
            old.rfc9440_client_cert != new.rfc9440_client_cert,
        ),
    ] {
        if changed {
            fields.push(name);
        }
    }
    fields
}

/// Re-reads the config; a bad one is refused and the running one kept.
/// The lock serialises reloads with the admin API's config rewrites.
async fn reload(
    server: &Server,
    store: &Store,
    current: &Mutex<Config>,
    counted: &ConfigReloads,
    why: &str,
) -> Reload {
    let mut current = current.lock().await;
    let next = match config::load(&current.path) {
        Ok(next) => next,
        Err(errors) => {
            counted.refused();
            for error in &errors {
                tracing::error!("{error}");
            }
            tracing::error!(
                trigger = why,
                "configuration refused; the running configuration stays in force"
            );
            return Reload::Refused;
        }
    };
    if next.store.dir != current.store.dir {
        tracing::warn!("store.dir changed; the new store is used after a restart");
    } else {
        let new = newly_unresolved(&current, &next, store);
        if !new.is_empty() {
            counted.waiting();
            for problem in &new {
                tracing::error!("{}", problem.message);
            }
            tracing::error!(
                trigger = why,
                "configuration not applied yet: it names certificates the store does not serve; the running configuration stays in force until they arrive (put them in the store or upload them), or fix the names"
            );
            return Reload::WaitingFor(
                new.into_iter()
                    .map(|u| (u.reference.kind, u.reference.name))
                    .collect(),
            );
        }
    }
    for note in &next.notes {
        tracing::warn!("{note}");
    }
    let changes = ListenerChanges::between(&current, &next);
    match server.apply(next.listeners.clone()).await {
        Ok(()) => {
            counted.applied();
            tracing::info!(
                trigger = why,
                added = %changes.added.join(", "),
                removed = %changes.removed.join(", "),
                changed = %changes.changed.join(", "),
                "configuration reloaded{}",
                if changes.is_empty() { " (no listener changed)" } else { "" }
            );
            for problem in unresolved_certificates(&next, store) {
                tracing::warn!("{}; {}", problem.message, until_it_arrives(&problem));
            }
            *current = next;
            Reload::Applied
        }
        Err(err) => {
            counted.refused();
            tracing::error!(trigger = why, error = %err, "configuration refused; the running configuration stays in force");
            Reload::Refused
        }
    }
}

/// Watches the config file's folder (editors replace the file by rename,
/// and Kubernetes swaps ConfigMap mounts by symlink, so watching the file
/// itself would go deaf after the first save).
fn watch_config(
    path: &Path,
    tx: mpsc::UnboundedSender<&'static str>,
) -> Option<
    notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
> {
    let folder: PathBuf = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let file_name = path.file_name().map(|n| n.to_os_string());
    let handler = move |result: notify_debouncer_full::DebounceEventResult| {
        let Ok(events) = result else { return };
        // Reading the config is an event too (inotify's IN_OPEN): without
        // skipping those, every reload would trigger the next one.
        let touched = events.iter().filter(|e| !e.kind.is_access()).any(|event| {
            event.paths.iter().any(|p| {
                p.file_name().map(|n| n.to_os_string()) == file_name
                    || p.file_name().is_some_and(|n| n == "..data")
            })
        });
        if touched {
            let _ = tx.send("config file changed");
        }
    };
    match notify_debouncer_full::new_debouncer(Duration::from_millis(200), None, handler) {
        Ok(mut debouncer) => match debouncer.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => Some(debouncer),
            Err(err) => {
                tracing::warn!(error = %err, folder = %folder.display(), "cannot watch the config folder; reload with SIGHUP");
                None
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch the config file; reload with SIGHUP");
            None
        }
    }
}
