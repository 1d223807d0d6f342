//! `tlsgate check-config`: validates the configuration and the store it
//! points at, the way `serve` would load them, without serving.

use std::path::Path;
use std::process::ExitCode;

use tlsgate_cert_store::CertKind;

use crate::config;
use crate::serve::{open_store, print_config_errors};

/// Exit 0 when `serve` would start with everything it references, 1 otherwise.
pub fn run(path: &Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            print_config_errors(&errors);
            return ExitCode::FAILURE;
        }
    };
    for note in &config.notes {
        println!("note: {note}");
    }
    // Opening the store would create it (as serve's first run wants); a
    // check writes nothing, and a missing store explains every missing
    // certificate at once.
    if !config.store.dir.is_dir() {
        eprintln!(
            "error: {}: the store directory {} does not exist: fix store.dir (a relative path is relative to the config file's folder) or create it",
            config.path.display(),
            config.store.dir.display()
        );
        return ExitCode::FAILURE;
    }
    let store = match open_store(&config) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = store.snapshot();
    let mut problems = 0;
    for listener in &config.listeners {
        let Some(tls) = listener.tls() else { continue };
        let wanted = tls
            .certificates
            .iter()
            .map(|name| (CertKind::Server, name))
            .chain(tls.mutual_auth.as_ref().map(|m| (CertKind::Ca, &m.ca)));
        for (kind, name) in wanted {
            if snapshot.contains(kind, name) {
                continue;
            }
            problems += 1;
            match store.refusal(kind, name) {
                Some((code, message)) => eprintln!(
                    "error: listener {:?}: {kind} certificate {:?} is refused: {code}: {message}",
                    listener.name,
                    name.as_str()
                ),
                None => {
                    let folder = store
                        .dir()
                        .join(kind.as_str())
                        .join(tlsgate_cert_store::folder_for(name));
                    eprintln!(
                        "error: {}: listener {:?}: CertificateNotFound: there is no {kind} certificate {:?} in the store; put the files in {} (or upload it)",
                        config.path.display(),
                        listener.name,
                        name.as_str(),
                        folder.display()
                    );
                }
            }
        }
    }
    let expiring: Vec<_> = store
        .expiry()
        .into_iter()
        .filter(|r| r.days_left <= 30)
        .collect();
    for row in &expiring {
        println!(
            "warning: {} certificate {:?} has {} days left",
            row.kind,
            row.name.as_str(),
            row.days_left
        );
    }
    if problems == 0 {
        println!(
            "ok: {} ({} listener(s); store {}: {} server and {} CA certificate(s))",
            config.path.display(),
            config.listeners.len(),
            store.dir().display(),
            snapshot.count(CertKind::Server),
            snapshot.count(CertKind::Ca)
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
