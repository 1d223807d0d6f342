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
    // Opening the store creates a missing directory (as serve's first run
    // wants); whether it was there is what explains missing certificates.
    let store_existed = config.store.dir.is_dir();
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
                    // The usual cause when every certificate is missing:
                    // store.dir points somewhere else (relative paths
                    // resolve against the config file's folder).
                    let hint = if store_existed {
                        format!("put the files in {} (or upload it)", folder.display())
                    } else {
                        format!(
                            "the store directory {} did not exist (now created, empty): fix store.dir in {} (a relative path is relative to that file's folder) or fill it",
                            store.dir().display(),
                            config.path.display()
                        )
                    };
                    eprintln!(
                        "error: {}: listener {:?}: CertificateNotFound: there is no {kind} certificate {:?} in the store; {hint}",
                        config.path.display(),
                        listener.name,
                        name.as_str(),
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
