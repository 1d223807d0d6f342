//! The store: loads folders through the validator, publishes snapshots, and
//! keeps the last good version of anything that fails to reload (R16, R17).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls_pki_types::UnixTime;
use tlsgate_validator::CertificateName;
use tokio::sync::broadcast;

use crate::entry::{self, Entry};
use crate::expiry::{self, ExpiryRow, ExpiryWarnings};
use crate::layout::{
    CA_FILES, CRL_FILE, CertKind, OCSP_FILE, SERVER_CERT_FILES, SERVER_KEY_FILES, name_for_folder,
};
use crate::{Binding, Error, Snapshot};

/// How the store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The store folder (holds `server/` and `ca/`).
    pub dir: PathBuf,
    /// R21: at most this many server certificates.
    pub max_server_certificates: usize,
    /// R21: at most this many CA certificates.
    pub max_ca_certificates: usize,
    /// How often the watcher rescans everything, as a backstop for missed
    /// file events (network file systems, overflowed inotify queues).
    pub rescan_interval: Duration,
    /// How long the watcher waits for a burst of file events to settle.
    pub debounce: Duration,
}

impl StoreConfig {
    /// Defaults for a store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            max_server_certificates: 10_000,
            max_ca_certificates: 1_000,
            rescan_interval: Duration::from_secs(10),
            // Small enough that a change is live well within R16's second.
            debounce: Duration::from_millis(150),
        }
    }

    pub(crate) fn limit(&self, kind: CertKind) -> usize {
        match kind {
            CertKind::Server => self.max_server_certificates,
            CertKind::Ca => self.max_ca_certificates,
        }
    }
}

/// Something that happened in the store; for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A certificate was loaded or replaced and is live.
    Loaded {
        /// Server or CA.
        kind: CertKind,
        /// Its name.
        name: CertificateName,
        /// The snapshot generation that made it live.
        generation: u64,
    },
    /// A change was refused; the previous version (if any) stays live.
    Refused {
        /// Server or CA.
        kind: CertKind,
        /// Its name.
        name: CertificateName,
        /// The SPEC error code.
        code: &'static str,
        /// The full reason.
        message: String,
    },
    /// A certificate was removed from disk and from service.
    Removed {
        /// Server or CA.
        kind: CertKind,
        /// Its name.
        name: CertificateName,
        /// The snapshot generation without it.
        generation: u64,
    },
    /// Listener bindings changed.
    BindingsChanged {
        /// The snapshot generation with the new bindings.
        generation: u64,
    },
}

/// Reload outcome counters (`tlsgate_certificate_reloads_total{result}`).
#[derive(Debug, Default)]
pub struct ReloadCounters {
    success: AtomicU64,
    failure: AtomicU64,
    expired_crl: AtomicU64,
}

impl ReloadCounters {
    /// Loads and replacements that went live.
    pub fn successes(&self) -> u64 {
        self.success.load(Ordering::Relaxed)
    }

    /// Changes that were refused.
    pub fn failures(&self) -> u64 {
        self.failure.load(Ordering::Relaxed)
    }

    /// CA loads whose CRL was already past its nextUpdate (still enforced, R4).
    pub fn expired_crls(&self) -> u64 {
        self.expired_crl.load(Ordering::Relaxed)
    }
}

/// What identifies a folder's content on disk without reading it: for each
/// relevant file, (length, mtime, inode) — following symlinks, so a
/// Kubernetes `..data` swap changes it.
type Stamp = Vec<Option<(u64, i128, u64)>>;

/// The writer lock, held across a write and its reload.
pub(crate) struct StateGuard<'a>(MutexGuard<'a, State>);

/// Writer-side state; never touched by the handshake.
#[derive(Debug, Default)]
struct State {
    stamps: HashMap<(CertKind, String), Stamp>,
    /// Digest of the content live for each certificate.
    digests: HashMap<(CertKind, CertificateName), entry::Digest>,
    refusals: HashMap<(CertKind, CertificateName), (&'static str, String)>,
    expiry: ExpiryWarnings,
    /// Folders already logged as ignored (a name that is not a certificate
    /// name, or no certificate file tlsgate reads), so the 10 s rescan does
    /// not log them again.
    ignored: HashSet<(CertKind, String)>,
}

/// The certificate store.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    current: Arc<ArcSwap<Snapshot>>,
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
    counters: ReloadCounters,
}

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn now_secs() -> i64 {
    i64::try_from(now().as_secs()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating `server/` and `ca/` if needed) and loads the store.
    /// Folders that fail validation are logged and counted, not fatal: the
    /// rest of the store still serves.
    pub fn open(config: StoreConfig) -> Result<Arc<Store>, Error> {
        for kind in CertKind::ALL {
            let path = config.dir.join(kind.as_str());
            fs::create_dir_all(&path).map_err(|e| Error::io("cannot create", &path, e))?;
        }
        // Event paths from the OS are canonical; compare against the same form.
        let dir = fs::canonicalize(&config.dir)
            .map_err(|e| Error::io("cannot open the store", &config.dir, e))?;
        let (events, _) = broadcast::channel(1024);
        let store = Arc::new(Store {
            dir,
            config,
            current: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            state: Mutex::new(State::default()),
            events,
            counters: ReloadCounters::default(),
        });
        store.rescan();
        Ok(store)
    }

    /// The store folder (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The swap cell itself, for resolvers that `load()` it per handshake.
    pub fn shared(&self) -> Arc<ArcSwap<Snapshot>> {
        self.current.clone()
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// Reload counters.
    pub fn counters(&self) -> &ReloadCounters {
        &self.counters
    }

    /// The last refusal of a certificate's content, while it stands
    /// (cleared when a good version loads).
    pub fn refusal(
        &self,
        kind: CertKind,
        name: &CertificateName,
    ) -> Option<(&'static str, String)> {
        self.lock().refusals.get(&(kind, name.clone())).cloned()
    }

    /// Every certificate's expiry, soonest first.
    pub fn expiry(&self) -> Vec<ExpiryRow> {
        expiry::rows(&self.snapshot(), now_secs())
    }

    /// Logs certificates that crossed an expiry threshold (R20); returns them.
    pub fn check_expiry(&self) -> Vec<ExpiryRow> {
        let snapshot = self.snapshot();
        self.lock().expiry.check(&snapshot, now_secs())
    }

    /// Replaces the listener bindings (from the config).
    pub fn set_bindings(&self, bindings: Vec<Binding>) {
        let _state = self.lock();
        let next = self.current.load().with_bindings(bindings);
        let generation = next.generation();
        self.current.store(Arc::new(next));
        let _ = self.events.send(StoreEvent::BindingsChanged { generation });
    }

    pub(crate) fn lock_state(&self) -> StateGuard<'_> {
        StateGuard(self.lock())
    }

    /// Reloads one folder with the writer lock held; the refusal, if any.
    pub(crate) fn reload_with(
        &self,
        state: &mut StateGuard<'_>,
        kind: CertKind,
        folder: &str,
    ) -> Result<(), Error> {
        self.reload_locked(&mut state.0, kind, folder)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves State consistent enough
        // (stamps are only a cache), so keep serving rather than poison.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rescans the whole store and reloads what changed on disk. Returns the
    /// number of folders looked at again.
    pub fn rescan(&self) -> usize {
        let mut state = self.lock();
        let mut reloaded = 0;
        for kind in CertKind::ALL {
            let kind_dir = self.dir.join(kind.as_str());
            let entries = match fs::read_dir(&kind_dir) {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(path = %kind_dir.display(), error = %err, "cannot list the certificate store");
                    continue;
                }
            };
            let mut present: Vec<String> = Vec::new();
            for entry in entries.filter_map(|e| e.ok()) {
                let Ok(folder) = entry.file_name().into_string() else {
                    continue;
                };
                if name_for_folder(&folder).is_some() {
                    present.push(folder);
                } else if !folder.starts_with('.')
                    && entry.file_type().is_ok_and(|t| t.is_dir())
                    && state.ignored.insert((kind, folder.clone()))
                {
                    // Hidden folders are editors' and Kubernetes' (..data);
                    // anything else an operator made and expects to load.
                    tracing::warn!(
                        folder = %kind_dir.join(&folder).display(),
                        "store folder ignored: its name is not a certificate name in folder form (letters, digits and . _ - * with / written %2F, % written %25, a leading . written %2E; no spaces); rename it"
                    );
                }
            }
            present.sort();
            for folder in &present {
                let stamp = stamp(kind, &kind_dir.join(folder));
                if state.stamps.get(&(kind, folder.clone())) != Some(&stamp) {
                    let _ = self.reload_locked(&mut state, kind, folder);
                    reloaded += 1;
                }
            }
            // Folders that vanished, and entries whose folder vanished.
            let mut gone: Vec<String> = state
                .stamps
                .keys()
                .filter(|(k, f)| *k == kind && !present.contains(f))
                .map(|(_, f)| f.clone())
                .collect();
            let snapshot = self.current.load();
            let names: Vec<CertificateName> = match kind {
                CertKind::Server => snapshot.servers().map(|s| s.name.clone()).collect(),
                CertKind::Ca => snapshot.cas().map(|c| c.name.clone()).collect(),
            };
            for name in names {
                let folder = crate::folder_for(&name);
                if !present.contains(&folder) && !gone.contains(&folder) {
                    gone.push(folder);
                }
            }
            for folder in gone {
                let _ = self.reload_locked(&mut state, kind, &folder);
                reloaded += 1;
            }
        }
        drop(state);
        reloaded + self.unstaple_expired(now_secs())
    }

    /// Reads again the folders of server certificates whose stapled OCSP
    /// response is past its nextUpdate at `now` (unix seconds), so that the
    /// response is no longer stapled: a client that enforces stapling would
    /// reject the handshake over it, and one that does not ignores it. The
    /// loader's warning says to fetch a fresh one. [`Store::rescan`] calls
    /// it (every `rescan_interval`). Returns how many were read again.
    pub fn unstaple_expired(&self, now: i64) -> usize {
        let stale: Vec<CertificateName> = self
            .current
            .load()
            .servers()
            .filter(|server| server.ocsp_next_update.is_some_and(|next| next <= now))
            .map(|server| server.name.clone())
            .collect();
        let mut state = self.lock();
        for name in &stale {
            // The bytes are the same: without the digest, the folder is
            // loaded (and the response checked) again instead of skipped.
            state.digests.remove(&(CertKind::Server, name.clone()));
            let folder = crate::folder_for(name);
            let _ = self.reload_locked_at(&mut state, CertKind::Server, &folder, now);
        }
        stale.len()
    }

    /// Reloads one folder (`STORE/KIND/FOLDER`) now, whatever its stamp.
    pub fn reload_folder(&self, kind: CertKind, folder: &str) {
        if name_for_folder(folder).is_none() {
            return;
        }
        let mut state = self.lock();
        let _ = self.reload_locked(&mut state, kind, folder);
    }

    fn reload_locked(&self, state: &mut State, kind: CertKind, folder: &str) -> Result<(), Error> {
        self.reload_locked_at(state, kind, folder, now_secs())
    }

    /// [`Store::reload_locked`] checking validity (and OCSP freshness) as
    /// of `now`, unix seconds.
    fn reload_locked_at(
        &self,
        state: &mut State,
        kind: CertKind,
        folder: &str,
        now: i64,
    ) -> Result<(), Error> {
        let Some(name) = name_for_folder(folder) else {
            return Ok(());
        };
        let path = self.dir.join(kind.as_str()).join(folder);
        let stamp = stamp(kind, &path);
        let exists = stamp.iter().any(Option::is_some);
        let folder_there = exists || path.is_dir();
        state.stamps.insert((kind, folder.to_string()), stamp);
        if !folder_there {
            state.stamps.remove(&(kind, folder.to_string()));
        }
        let current = self.current.load_full();

        let previous = current
            .contains(kind, &name)
            .then(|| state.digests.get(&(kind, name.clone())))
            .flatten();
        let loaded = if exists {
            let at =
                UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
            entry::load(kind, &name, &path, at, previous)
        } else {
            Ok((entry::Loaded::Missing, None))
        };
        match loaded {
            Ok((entry::Loaded::Unchanged, _)) => {
                // Same bytes as what is live; a refusal since then is void.
                if state.refusals.remove(&(kind, name.clone())).is_some() {
                    tracing::info!(kind = %kind, name = name.as_str(), folder = %path.display(), "certificate folder is back to the version in service; the refused change is void");
                }
            }
            Ok((entry::Loaded::Entry(entry), digest)) => {
                let limit = self.config.limit(kind);
                if !current.contains(kind, &name) && current.count(kind) >= limit {
                    let err = Error::QuotaExceeded { kind, limit };
                    self.refuse(state, kind, &name, &err, &path);
                    return Err(err);
                }
                log_warnings(kind, &name, &entry);
                if let Entry::Ca(ca) = &entry {
                    let now = now_secs();
                    for crl in ca
                        .crls
                        .iter()
                        .filter(|c| c.next_update.is_some_and(|n| n < now))
                    {
                        self.counters.expired_crl.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            name = name.as_str(),
                            issuer = crl.issuer.as_str(),
                            next_update = %crl.next_update.map(tlsgate_validator::rfc3339).unwrap_or_default(),
                            "CRL is past its nextUpdate; it is still enforced — publish a fresh CRL (`tlsgate ca crl`)"
                        );
                    }
                }
                state.ignored.remove(&(kind, folder.to_string()));
                let next = current.with_entry(kind, &name, Some(entry));
                let generation = next.generation();
                self.current.store(Arc::new(next));
                state.refusals.remove(&(kind, name.clone()));
                if let Some(digest) = digest {
                    state.digests.insert((kind, name.clone()), digest);
                }
                self.counters.success.fetch_add(1, Ordering::Relaxed);
                tracing::info!(kind = %kind, name = name.as_str(), generation, "certificate loaded");
                let _ = self.events.send(StoreEvent::Loaded {
                    kind,
                    name,
                    generation,
                });
            }
            Ok((entry::Loaded::Missing, _)) if folder_there && current.contains(kind, &name) => {
                // The folder is there but its certificate file is not: a
                // renewal that deletes before it copies, or a copy still
                // on its way. Removing a certificate is removing its folder
                // (R16); until then the live version stays, as it does for
                // a torn pair (R17).
                let err = Error::Invalid {
                    kind,
                    name: name.clone(),
                    folder: path.clone(),
                    findings: vec![tlsgate_validator::Error::InvalidCertificateFormat(
                        without_certificate(kind, &path),
                    )],
                };
                self.refuse(state, kind, &name, &err, &path);
                return Err(err);
            }
            Ok((entry::Loaded::Missing, _)) => {
                // Files that are not a certificate (none, or under other
                // names): say so once, if there are any.
                warn_unread_folder(state, kind, folder, &path);
                state.refusals.remove(&(kind, name.clone()));
                state.digests.remove(&(kind, name.clone()));
                if current.contains(kind, &name) {
                    let next = current.with_entry(kind, &name, None);
                    let generation = next.generation();
                    self.current.store(Arc::new(next));
                    let listeners = current.listeners_using(kind, &name);
                    if listeners.is_empty() {
                        tracing::info!(kind = %kind, name = name.as_str(), generation, "certificate removed");
                    } else {
                        // Removal through the API is refused while in use
                        // (CertificateInUse); on disk it cannot be.
                        tracing::warn!(
                            kind = %kind,
                            name = name.as_str(),
                            generation,
                            folder = %path.display(),
                            listeners = %listeners.join(", "),
                            "certificate removed while listeners use it: its folder is gone from the store; until it is back they serve their other certificates, or refuse handshakes where it was their only one"
                        );
                    }
                    let _ = self.events.send(StoreEvent::Removed {
                        kind,
                        name,
                        generation,
                    });
                }
            }
            Err(err) => {
                self.refuse(state, kind, &name, &err, &path);
                return Err(err);
            }
        }
        Ok(())
    }

    fn refuse(
        &self,
        state: &mut State,
        kind: CertKind,
        name: &CertificateName,
        err: &Error,
        path: &Path,
    ) {
        let code = err.code();
        let message = err.to_string();
        self.counters.failure.fetch_add(1, Ordering::Relaxed);
        let keeps = if self.current.load().contains(kind, name) {
            "the previous version stays in service"
        } else {
            "it is not served"
        };
        tracing::warn!(
            kind = %kind,
            name = name.as_str(),
            code,
            folder = %path.display(),
            "certificate change refused ({keeps}): {message}"
        );
        state
            .refusals
            .insert((kind, name.clone()), (code, message.clone()));
        let _ = self.events.send(StoreEvent::Refused {
            kind,
            name: name.clone(),
            code,
            message,
        });
    }
}

fn log_warnings(kind: CertKind, name: &CertificateName, entry: &Entry) {
    let warnings = match entry {
        Entry::Server(s) => &s.warnings,
        Entry::Ca(c) => &c.warnings,
    };
    for warning in warnings {
        tracing::warn!(kind = %kind, name = name.as_str(), code = warning.code(), "{}", warning.message());
    }
}

/// Logs (once) a folder that holds files but none tlsgate reads: a
/// certificate dropped under another file name would otherwise wait there
/// silently.
/// The files in a store folder (not hidden ones), sorted.
fn files_in(path: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    found.sort();
    found
}

/// The files a folder of `kind` is read from, as the messages list them.
fn expected_files(kind: CertKind) -> String {
    let expected: Vec<String> = match kind {
        CertKind::Server => SERVER_CERT_FILES
            .iter()
            .zip(SERVER_KEY_FILES)
            .map(|(cert, key)| format!("{cert} + {key}"))
            .collect(),
        CertKind::Ca => CA_FILES.iter().map(|f| f.to_string()).collect(),
    };
    expected.join(", ")
}

/// What to do about files that are not the ones a folder is read from.
fn remedy(found: &[String]) -> &'static str {
    let is_pkcs12 = |f: &String| {
        let f = f.to_ascii_lowercase();
        f.ends_with(".p12") || f.ends_with(".pfx")
    };
    if found.iter().any(is_pkcs12) {
        "convert the PKCS#12 file: `tlsgate cert convert --in FILE --out-cert cert.pem --out-key key.pem` (add --password-file if it has a password)"
    } else {
        "rename the files"
    }
}

/// The finding for a live certificate's folder that lost its certificate
/// file.
fn without_certificate(kind: CertKind, path: &Path) -> String {
    let found = files_in(path);
    let holds = if found.is_empty() {
        "nothing".to_string()
    } else {
        found.join(", ")
    };
    format!(
        "{} holds no certificate file now ({holds}; read: {}). The previous version stays in service until one is there; to remove the certificate, remove the folder",
        path.display(),
        expected_files(kind)
    )
}

fn warn_unread_folder(state: &mut State, kind: CertKind, folder: &str, path: &Path) {
    let found = files_in(path);
    if found.is_empty() || !state.ignored.insert((kind, folder.to_string())) {
        return;
    }
    tracing::warn!(
        folder = %path.display(),
        found = %found.join(", "),
        "store folder ignored: it holds no certificate tlsgate reads (one of: {}); {}",
        expected_files(kind),
        remedy(&found)
    );
}

/// The stamp of the files that make up a folder of `kind`.
fn stamp(kind: CertKind, folder: &Path) -> Stamp {
    let files: Vec<&str> = match kind {
        CertKind::Server => SERVER_CERT_FILES
            .iter()
            .zip(SERVER_KEY_FILES)
            .flat_map(|(cert, key)| [*cert, key])
            .chain([OCSP_FILE])
            .collect(),
        CertKind::Ca => CA_FILES.iter().copied().chain([CRL_FILE]).collect(),
    };
    files
        .iter()
        .map(|file| {
            let meta = fs::metadata(folder.join(file)).ok()?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some((meta.len(), mtime, inode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::remedy;

    #[test]
    fn a_pkcs12_file_is_pointed_at_cert_convert_not_at_a_rename() {
        let found = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(remedy(&found(&["site.P12"])).contains("tlsgate cert convert"));
        assert!(remedy(&found(&["readme.txt", "site.pfx"])).contains("tlsgate cert convert"));
        assert_eq!(
            remedy(&found(&["server.crt", "server.key"])),
            "rename the files"
        );
    }
}
