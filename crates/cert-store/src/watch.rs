//! Watching the store (R16): file events (notify, debounced) reload the
//! folders they touch; a periodic rescan catches anything the events missed.
//!
//! Events are mapped to `STORE/KIND/FOLDER` and that folder is re-read as a
//! whole, so it does not matter which file changed or in what order: a
//! Kubernetes `..data` symlink swap, an editor's write-and-rename, or a
//! `cp` of the key before the certificate all end in one consistent reload,
//! and anything inconsistent in between is refused while the last good
//! version keeps serving.

use std::collections::BTreeSet;
use std::path::{Component, Path};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::{CertKind, Error, Store};

/// How often expiry thresholds are checked while watching.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    debouncer: Option<Debouncer<notify::RecommendedWatcher, RecommendedCache>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropping the debouncer closes the channel; the worker then exits.
        drop(self.debouncer.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// What a batch of events asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Work {
    folders: BTreeSet<(CertKind, String)>,
    rescan: bool,
}

/// Maps an event path to the folder it belongs to. `renamed`: the event
/// renamed or removed the path.
fn classify(store: &Path, path: &Path, renamed: bool, work: &mut Work) {
    let Ok(relative) = path.strip_prefix(store) else {
        return;
    };
    let mut parts = relative.components().filter_map(|c| match c {
        Component::Normal(part) => part.to_str(),
        _ => None,
    });
    let kind = match parts.next() {
        Some("server") => CertKind::Server,
        Some("ca") => CertKind::Ca,
        // The store folder itself, or something unexpected: look at everything.
        None => {
            work.rescan = true;
            return;
        }
        Some(_) => return,
    };
    match parts.next() {
        Some(folder) => {
            work.folders.insert((kind, folder.to_string()));
            // A certificate folder itself renamed or removed. The debouncer
            // joins a rename's two ends by file id, and for an atomic
            // exchange (`mv --exchange`) of a staged hidden folder with the
            // live one it can report the staged name alone: which folders
            // changed is then for a rescan (it compares every folder's
            // file stamps) to find.
            if renamed && parts.next().is_none() {
                work.rescan = true;
            }
        }
        None => work.rescan = true,
    }
}

impl Store {
    /// Starts watching the store folder. Changes are live within
    /// `debounce` plus one reload (well under a second).
    pub fn watch(self: &Arc<Self>) -> Result<Watcher, Error> {
        let (tx, rx) = mpsc::channel::<DebounceEventResult>();
        let watch_error = |err: notify::Error| Error::Watch {
            path: self.dir().to_path_buf(),
            message: err.to_string(),
        };
        let mut debouncer = new_debouncer(self.config().debounce, None, tx).map_err(watch_error)?;
        debouncer
            .watch(self.dir(), RecursiveMode::Recursive)
            .map_err(watch_error)?;
        // Anything that changed between open() and the watch starting.
        self.rescan();

        let store = Arc::clone(self);
        let rescan_every = self.config().rescan_interval;
        let worker = std::thread::Builder::new()
            .name("tlsgate-store-watch".into())
            .spawn(move || {
                let mut next_rescan = Instant::now() + rescan_every;
                let mut next_expiry = Instant::now();
                loop {
                    let wait = next_rescan.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(Ok(events)) => {
                            let mut work = Work::default();
                            // Opening and reading a file is an event too
                            // (inotify's IN_OPEN/IN_CLOSE_NOWRITE): the reload's
                            // own reads must not trigger another reload.
                            for event in events.iter().filter(|e| !e.kind.is_access()) {
                                let renamed = matches!(
                                    event.kind,
                                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                                );
                                for path in &event.paths {
                                    classify(store.dir(), path, renamed, &mut work);
                                }
                            }
                            if work.rescan {
                                store.rescan();
                            }
                            for (kind, folder) in &work.folders {
                                store.reload_folder(*kind, folder);
                            }
                        }
                        Ok(Err(errors)) => {
                            for err in errors {
                                tracing::warn!(error = %err, "file watcher error; rescanning the store");
                            }
                            store.rescan();
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            store.rescan();
                            next_rescan = Instant::now() + rescan_every;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if Instant::now() >= next_expiry {
                        store.check_expiry();
                        next_expiry = Instant::now() + EXPIRY_CHECK_INTERVAL;
                    }
                }
            })
            .map_err(|err| Error::io("cannot start the store watcher", self.dir(), err))?;
        Ok(Watcher {
            debouncer: Some(debouncer),
            worker: Some(worker),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_folders() {
        let store = Path::new("/s");
        let mut work = Work::default();
        for path in [
            "/s/server/www/cert.pem",
            "/s/server/www/..data",
            "/s/server/www/..2026_01_01/tls.key",
            "/s/ca/corp/crl.pem",
            "/elsewhere/x",
            "/s/other/x",
        ] {
            classify(store, Path::new(path), false, &mut work);
        }
        assert_eq!(
            work.folders.into_iter().collect::<Vec<_>>(),
            vec![
                (CertKind::Server, "www".to_string()),
                (CertKind::Ca, "corp".to_string())
            ]
        );
        assert!(!work.rescan);
        let mut work = Work::default();
        classify(store, Path::new("/s/server"), false, &mut work);
        assert!(work.rescan);
    }

    #[test]
    fn only_a_folder_renamed_or_removed_asks_for_a_rescan() {
        let store = Path::new("/s");
        let rescans = |path: &str, renamed: bool| {
            let mut work = Work::default();
            classify(store, Path::new(path), renamed, &mut work);
            work.rescan
        };
        assert!(rescans("/s/server/www", true));
        assert!(rescans("/s/ca/.corp-new", true));
        assert!(!rescans("/s/server/www", false));
        // Editors and kubelet rename files inside a folder all the time.
        assert!(!rescans("/s/server/www/cert.pem", true));
        assert!(!rescans("/s/server/www/..data", true));
    }
}
