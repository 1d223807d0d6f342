//! # tlsgate-cert-store
//!
//! The certificate store: a watched directory (SPEC R15–R21) turned into one
//! immutable [`Snapshot`] behind an `ArcSwap`. Files flow in (through the
//! validator, a whole folder at a time); out flow ready-to-serve rustls
//! objects — an SNI/dual-certificate resolver per listener and client
//! certificate verifiers with CRLs — plus events, expiry facts and reload
//! counters for logs and metrics.
//!
//! The handshake path only `load()`s the snapshot: no locks, no I/O, no
//! re-validation. Every change is validated off that path, and a folder that
//! fails validation keeps its last good version in service.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client_auth;
mod entry;
mod error;
mod expiry;
mod layout;
mod resolver;
mod snapshot;
mod store;
mod watch;
mod write;

pub use client_auth::{
    ClientAuthMode, ClientAuthPolicy, CrlScope, ExpiredCrlPolicy, build_verifier,
};
pub use entry::{CaCert, Entry, ServerCert};
pub use error::Error;
pub use expiry::{EXPIRY_WARNING_DAYS, ExpiryRow, days_left};
pub use layout::{
    CA_FILES, CRL_FILE, CertKind, OCSP_FILE, SERVER_CERT_FILES, SERVER_KEY_FILES, folder_for,
    folder_path, name_for_folder, server_files,
};
pub use resolver::{ClientCapabilities, SniIndex, StoreResolver};
pub use snapshot::{Binding, ClientAuthBinding, ListenerTls, Snapshot};
pub use store::{ReloadCounters, Store, StoreConfig, StoreEvent};
pub use tlsgate_validator::CertificateName;
pub use watch::Watcher;
pub use write::{Content, WriteMode};
