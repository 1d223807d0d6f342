//! `tlsgate check-config`: validates the configuration and the store it
//! points at, the way `serve` would load them, without serving.

use std::path::Path;
use std::process::ExitCode;

use tlsgate_cert_store::{CertKind, Store};
use tlsgate_validator::CertificateName;

use crate::config::{self, Config};
use crate::serve::{open_store, print_config_errors, read_token};

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
    // serve reads it before anything else and stops when it cannot (run
    // the check as the service's user to see what it sees).
    if let Some(Err(err)) = config.admin.token_file.as_deref().map(read_token) {
        eprintln!("error: {}: {err}", config.path.display());
        return ExitCode::FAILURE;
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
    let unresolved = unresolved_certificates(&config, &store);
    for problem in &unresolved {
        eprintln!("error: {}", problem.message);
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
    if unresolved.is_empty() {
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

/// A certificate a listener names.
#[derive(Debug)]
pub struct Reference {
    /// The listener.
    pub listener: String,
    /// A server certificate, or mutual authentication's CA.
    pub kind: CertKind,
    /// The certificate's name.
    pub name: CertificateName,
}

/// Every certificate the config's listeners name, server certificates and
/// mutual authentication's CA.
fn references(config: &Config) -> Vec<Reference> {
    let mut all = Vec::new();
    for listener in &config.listeners {
        let Some(tls) = listener.tls() else { continue };
        let named = tls
            .certificates
            .iter()
            .map(|name| (CertKind::Server, name))
            .chain(
                tls.mutual_auth
                    .as_ref()
                    .map(|auth| (CertKind::Ca, &auth.ca)),
            );
        for (kind, name) in named {
            all.push(Reference {
                listener: listener.name.clone(),
                kind,
                name: name.clone(),
            });
        }
    }
    all
}

/// A certificate a listener names that the store does not serve.
#[derive(Debug)]
pub struct Unresolved {
    /// Which listener names which certificate.
    pub reference: Reference,
    /// What is wrong, where, and what to do.
    pub message: String,
}

/// The certificates the config names that the store does not serve (not
/// there, or refused), each with the message an operator acts on. The
/// check `check-config` makes, and `serve` makes on every config it loads.
pub fn unresolved_certificates(config: &Config, store: &Store) -> Vec<Unresolved> {
    let snapshot = store.snapshot();
    references(config)
        .into_iter()
        .filter(|r| !snapshot.contains(r.kind, &r.name))
        .map(|reference| {
            let Reference {
                listener,
                kind,
                name,
            } = &reference;
            let message = match store.refusal(*kind, name) {
                // The refusal's message carries its own error code.
                Some((_code, refusal)) => format!(
                    "{}: listener {listener:?} names {kind} certificate {:?}, which the store refuses: {refusal}",
                    config.path.display(),
                    name.as_str()
                ),
                None => {
                    let folder = store
                        .dir()
                        .join(kind.as_str())
                        .join(tlsgate_cert_store::folder_for(name));
                    format!(
                        "{}: listener {listener:?}: CertificateNotFound: there is no {kind} certificate {:?} in the store; put the files in {} (or upload it), or fix the name",
                        config.path.display(),
                        name.as_str(),
                        folder.display()
                    )
                }
            };
            Unresolved { reference, message }
        })
        .collect()
}

/// The certificates `next` names that the store does not serve and that
/// `running` did not already name (of that kind, by any listener): what a
/// reload or a config rewrite must not put in force, as a typo would leave a
/// listener refusing handshakes. Names `running` already had do not block
/// an unrelated change; their files may be on their way.
pub fn newly_unresolved(running: &Config, next: &Config, store: &Store) -> Vec<Unresolved> {
    let known = references(running);
    unresolved_certificates(next, store)
        .into_iter()
        .filter(|u| {
            !known
                .iter()
                .any(|r| r.kind == u.reference.kind && r.name == u.reference.name)
        })
        .collect()
}
