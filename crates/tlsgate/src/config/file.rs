//! The file as written: raw serde structs (SPEC §7). Every struct refuses
//! unknown keys, so a typo is an error naming the allowed keys instead of a
//! setting silently ignored. Values checked after deserializing are
//! `Spanned`, so their errors point at the value's line. Integers are `i64`
//! (TOML's integer type) so that a range error says the allowed range rather
//! than serde's "expected u32".

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_spanned::Spanned;

/// The whole file.
pub(super) type FileConfig =
    FileDocument<FileServer, FileStore, FileAdmin, FileTlsPolicy, FileListener>;

/// Only the top-level keys, each section's content ignored: reports an
/// unknown or missing section even when the whole-file pass stopped first at
/// an error inside a section.
pub(super) type FileTopLevel =
    FileDocument<IgnoredAny, IgnoredAny, IgnoredAny, IgnoredAny, IgnoredAny>;

/// The top-level layout, generic so that [`FileConfig`] and [`FileTopLevel`]
/// share one list of keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDocument<Server, Store, Admin, TlsPolicy, Listener> {
    /// `[server]`, optional.
    pub server: Option<Server>,
    /// `[store]`, required: the store is where listeners' certificates live.
    pub store: Store,
    /// `[admin]`, optional.
    pub admin: Option<Admin>,
    /// `[[tls_policy]]`: custom policies.
    #[serde(default = "Vec::new")]
    pub tls_policy: Vec<Spanned<TlsPolicy>>,
    /// `[[listener]]`.
    #[serde(default = "Vec::new")]
    pub listener: Vec<Spanned<Listener>>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    /// Runtime worker threads; all cores when absent.
    pub workers: Option<Spanned<i64>>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub dir: Spanned<String>,
    pub max_server_certificates: Option<Spanned<i64>>,
    pub max_ca_certificates: Option<Spanned<i64>>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub bind: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

/// `[[tls_policy]]`: a custom policy narrowing a built-in one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTlsPolicy {
    pub name: Spanned<String>,
    /// The built-in policy narrowed; `tls12` when absent.
    pub base: Option<Spanned<String>>,
    pub versions: Option<Vec<String>>,
    pub cipher_suites: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

/// `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListener {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    /// `https` when absent.
    pub protocol: Option<Spanned<String>>,
    pub certificates: Option<Spanned<Vec<Spanned<String>>>>,
    pub tls_policy: Option<Spanned<String>>,
    pub scheduler: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub rfc9440_client_cert: Option<Spanned<bool>>,
    pub mutual_auth: Option<Spanned<FileMutualAuth>>,
    pub timeouts: Option<FileTimeouts>,
    pub limits: Option<FileLimits>,
    /// `[[listener.backend]]`.
    #[serde(default)]
    pub backend: Vec<Spanned<FileBackend>>,
    pub health_check: Option<FileHealthCheck>,
}

/// `[listener.mutual_auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMutualAuth {
    pub ca: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub crl_scope: Option<Spanned<String>>,
    pub expired_crl: Option<Spanned<String>>,
}

/// `[listener.timeouts]`: durations as strings (`"500ms"`, `"2s"`, `"1m"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTimeouts {
    pub handshake: Option<Spanned<String>>,
    pub client_idle: Option<Spanned<String>>,
    pub backend_connect: Option<Spanned<String>>,
    pub request: Option<Spanned<String>>,
    pub shutdown_drain: Option<Spanned<String>>,
    pub tunnel_idle: Option<Spanned<String>>,
}

/// `[listener.limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
}

/// `[[listener.backend]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackend {
    pub address: Spanned<String>,
    /// 100 when absent.
    pub weight: Option<Spanned<i64>>,
}

/// `[listener.health_check]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHealthCheck {
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub healthy_threshold: Option<Spanned<i64>>,
    pub unhealthy_threshold: Option<Spanned<i64>>,
    pub status: Option<Spanned<Vec<Spanned<String>>>>,
}
