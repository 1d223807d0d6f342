//! The store's one error type; `code()` gives the SPEC §4 code.

use std::path::PathBuf;

use tlsgate_validator::CertificateName;

use crate::CertKind;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The content of a certificate folder failed validation.
    #[error("{kind} certificate \"{name}\" in {}: {}", folder.display(), join(findings))]
    Invalid {
        /// Server or CA.
        kind: CertKind,
        /// The certificate's name.
        name: CertificateName,
        /// Its folder.
        folder: PathBuf,
        /// The validator's findings (errors), most important first.
        findings: Vec<tlsgate_validator::Error>,
    },
    /// No certificate of that name.
    #[error(
        "there is no {kind} certificate named \"{name}\"; `tlsgate cert list` shows the names in the store"
    )]
    NotFound {
        /// Server or CA.
        kind: CertKind,
        /// The missing name.
        name: CertificateName,
    },
    /// A certificate of that name exists already.
    #[error(
        "a {kind} certificate named \"{name}\" exists already; replace it (`tlsgate cert upload --replace`, or PUT /v1/certificates/NAME), or pick another name"
    )]
    AlreadyExists {
        /// Server or CA.
        kind: CertKind,
        /// The name.
        name: CertificateName,
    },
    /// Listeners still use the certificate.
    #[error("{kind} certificate \"{name}\" is used by listener(s) {}; re-point them first (`tlsgate cert replace NAME --with OTHER`, or POST /v1/certificates/NAME/replace)", listeners.join(", "))]
    InUse {
        /// Server or CA.
        kind: CertKind,
        /// The name.
        name: CertificateName,
        /// The listeners that reference it.
        listeners: Vec<String>,
    },
    /// The store holds as many certificates of this kind as allowed.
    #[error(
        "the store already holds {limit} {kind} certificates (store.max_{kind}_certificates); delete unused ones or raise the limit"
    )]
    QuotaExceeded {
        /// Server or CA.
        kind: CertKind,
        /// The configured limit.
        limit: usize,
    },
    /// Reading or writing the store failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot create").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Internal: a folder's bytes are the ones already live (never surfaces).
    #[error("unchanged")]
    #[doc(hidden)]
    Unchanged([u8; 32]),
    /// The file watcher could not be started.
    #[error("cannot watch the certificate store {}: {message}", path.display())]
    Watch {
        /// The store folder.
        path: PathBuf,
        /// What notify said.
        message: String,
    },
}

fn join(findings: &[tlsgate_validator::Error]) -> String {
    findings
        .iter()
        .map(|f| format!("{}: {}", f.code(), f.message()))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The SPEC §4 code (`InternalError` for I/O and watcher failures, which
    /// the SPEC has no code for).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { findings, .. } => findings
                .first()
                .map_or("InvalidCertificateFormat", tlsgate_validator::Error::code),
            Error::NotFound { .. } => "CertificateNotFound",
            Error::AlreadyExists { .. } => "CertificateAlreadyExists",
            Error::InUse { .. } => "CertificateInUse",
            Error::QuotaExceeded { .. } => "QuotaExceeded",
            Error::Io { .. } | Error::Watch { .. } | Error::Unchanged(_) => "InternalError",
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
