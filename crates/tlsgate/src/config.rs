//! The configuration file (SPEC §7). TOML text flows in; out flows a
//! validated [`Config`] whose listener settings the data plane uses as they
//! are, or every [`ConfigError`] found, each naming the file, line, column
//! and field.
//!
//! Three stages, so that nothing past this module sees an unchecked string:
//!
//! 1. syntax: the text is parsed with byte spans kept for every key and value;
//! 2. shape: the raw `File*` structs of [`mod@file`] are deserialized — unknown
//!    keys, missing keys and wrong types stop here, all of them reported;
//! 3. meaning: the raw values are converted into validated types
//!    ([`ListenerConfig`] and the sections below); every fault is collected.

mod convert;
mod error;
mod file;
mod listener;
mod policy;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_spanned::Spanned;
use tlsgate_listener::ListenerConfig;

pub use error::ConfigError;

use convert::{non_empty, socket_addr, usize_in};
use error::{Fault, Faults};
use file::{FileAdmin, FileConfig, FileServer, FileStore};

/// The admin API's address when `[admin]` does not say (SPEC §6: loopback).
pub const DEFAULT_ADMIN_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
/// Default `store.max_server_certificates` (R21).
pub const DEFAULT_MAX_SERVER_CERTIFICATES: usize = 10_000;
/// Default `store.max_ca_certificates` (R21).
pub const DEFAULT_MAX_CA_CERTIFICATES: usize = 1_000;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The certificate store (`[store]`).
    pub store: StoreSection,
    /// The admin API (`[admin]`).
    // Read by the admin API, which is the next piece of work (SPEC §6).
    #[allow(dead_code)]
    pub admin: AdminSection,
    /// Runtime worker threads (`[server] workers`); `None`: one per core.
    pub workers: Option<usize>,
    /// The listeners, in file order; names and bind addresses are unique.
    pub listeners: Vec<ListenerConfig>,
    /// Things to log once at load, e.g. what a legacy TLS policy alias dropped.
    pub notes: Vec<String>,
}

/// `[store]`: where certificates live and how many may (R15, R21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSection {
    /// The watched store directory; a relative `dir` is joined to the config
    /// file's folder.
    pub dir: PathBuf,
    /// Quota of server certificates (default 10,000).
    pub max_server_certificates: usize,
    /// Quota of CA certificates (default 1,000).
    pub max_ca_certificates: usize,
}

/// `[admin]`: the admin API (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSection {
    /// Address to bind (default 127.0.0.1:9901).
    pub bind: SocketAddr,
    /// File holding the bearer token; a relative path is joined to the
    /// config file's folder. Always set when `bind` is not loopback.
    pub token_file: Option<PathBuf>,
}

/// Reads and validates a config file.
///
/// # Errors
///
/// Every fault found; a file that cannot be read is one error naming it.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        vec![ConfigError::unreadable(
            path,
            format!("cannot read the config file: {error}"),
        )]
    })?;
    parse(path, &text)
}

/// Validates config text. `path` is used only in messages and to resolve
/// relative paths in the file (against its folder).
///
/// # Errors
///
/// Every fault found, in file order: all syntax errors; else all shape errors
/// (unknown key, missing key, wrong type); else all semantic errors.
pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<ConfigError>> {
    let report = |faults: Vec<Fault>| error::report(path, text, faults);
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(report(
            syntax.iter().map(|e| Fault::syntax(e, text)).collect(),
        ));
    }
    let raw = match FileConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
        Ok(raw) => raw,
        Err(first) => return Err(report(error::shape_faults(&doc, first))),
    };
    let folder = path.parent().unwrap_or(Path::new(""));
    convert_file(raw, path, folder).map_err(report)
}

/// Stage 3: raw file → validated [`Config`].
fn convert_file(raw: FileConfig, path: &Path, folder: &Path) -> Result<Config, Vec<Fault>> {
    let mut faults = Faults::default();
    let store = faults.nested(store_section(&raw.store, folder), "store");
    let admin = faults.nested(
        admin_section(&raw.admin.unwrap_or_default(), folder),
        "admin",
    );
    let workers = faults.nested(workers(raw.server.unwrap_or_default()), "server");
    let mut notes = Vec::new();
    let listeners = listener::convert_all(
        raw.tls_policy,
        raw.listener,
        admin.as_ref().map(|admin| admin.bind),
        &mut faults,
        &mut notes,
    );
    match (store, admin, workers) {
        (Some(store), Some(admin), Some(workers)) if faults.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            store,
            admin,
            workers,
            listeners,
            notes,
        }),
        _ => Err(faults.into_vec()),
    }
}

/// `[store]`.
fn store_section(raw: &FileStore, folder: &Path) -> Result<StoreSection, Vec<Fault>> {
    let mut faults = Faults::default();
    let dir = faults
        .check(non_empty(
            &raw.dir,
            "dir",
            "the certificate store's directory, e.g. dir = \"certs\"",
        ))
        .unwrap_or_default();
    // At least 1: a quota of 0 would refuse every certificate of its kind.
    // The upper bound only keeps the number in `usize` on every target.
    let quota = |value: &Spanned<i64>, field: &str| usize_in(value, field, 1..=i64::from(u32::MAX));
    let max_server_certificates = faults
        .optional(raw.max_server_certificates.as_ref(), |n| {
            quota(n, "max_server_certificates")
        })
        .unwrap_or(DEFAULT_MAX_SERVER_CERTIFICATES);
    let max_ca_certificates = faults
        .optional(raw.max_ca_certificates.as_ref(), |n| {
            quota(n, "max_ca_certificates")
        })
        .unwrap_or(DEFAULT_MAX_CA_CERTIFICATES);
    faults.finish(StoreSection {
        dir: folder.join(dir),
        max_server_certificates,
        max_ca_certificates,
    })
}

/// `[admin]`.
fn admin_section(raw: &FileAdmin, folder: &Path) -> Result<AdminSection, Vec<Fault>> {
    let mut faults = Faults::default();
    let token_file = faults.optional(raw.token_file.as_ref(), |token| {
        non_empty(
            token,
            "token_file",
            "the path of a file holding the bearer token",
        )
        .map(|token| folder.join(token))
    });
    let bind = match &raw.bind {
        None => Some(DEFAULT_ADMIN_BIND),
        Some(bind) => faults.check(socket_addr(bind, "bind")),
    };
    // SECURITY: the admin API takes certificate and private key uploads; off
    // loopback, anyone who reaches the port could replace what is served.
    if let (Some(bind), None) = (bind, &raw.token_file) {
        if !bind.ip().is_loopback() {
            faults.push(Fault::new(
                raw.bind.as_ref().map(Spanned::span).unwrap_or_default(),
                "bind",
                format!(
                    "the admin API on a non-loopback address ({bind}) needs admin.token_file: a bearer token protects certificate uploads; add token_file = \"/etc/tlsgate/admin.token\" or bind to 127.0.0.1"
                ),
            ));
        }
    }
    faults.finish(AdminSection {
        bind: bind.unwrap_or(DEFAULT_ADMIN_BIND),
        token_file,
    })
}

/// The most worker threads `[server] workers` and `serve --workers` allow.
pub const MAX_WORKERS: u16 = 4096;

/// `[server] workers`: 1 to [`MAX_WORKERS`] threads.
fn workers(raw: FileServer) -> Result<Option<usize>, Vec<Fault>> {
    let Some(value) = raw.workers else {
        return Ok(None);
    };
    usize_in(&value, "workers", 1..=i64::from(MAX_WORKERS))
        .map(Some)
        .map_err(|fault| vec![fault])
}
