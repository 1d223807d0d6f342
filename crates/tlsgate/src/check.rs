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
                None => eprintln!(
                    "error: listener {:?}: CertificateNotFound: there is no {kind} certificate {:?} in {} (expected {}/{}/{})",
                    listener.name,
                    name.as_str(),
                    store.dir().display(),
                    store.dir().display(),
                    kind.as_str(),
                    tlsgate_cert_store::folder_for(name)
                ),
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
