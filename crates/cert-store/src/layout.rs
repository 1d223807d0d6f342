//! The on-disk layout of the store (SPEC R15a).
//!
//! ```text
//! STORE/server/FOLDER/cert.pem + key.pem   (or tls.crt + tls.key, or fullchain.pem + privkey.pem)  [+ ocsp.der]
//! STORE/ca/FOLDER/ca.pem                   (or ca.crt)             [+ crl.pem]
//! ```
//!
//! FOLDER is the certificate name with `%` and `/` percent-encoded and a
//! leading `.` written `%2E`. The encoded name contains no `/` and never
//! starts with `.`, so it is always exactly one path component that is not
//! `.` or `..`: a name can never address a path outside its kind's folder.

use std::path::{Path, PathBuf};

use tlsgate_validator::CertificateName;

/// Which half of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertKind {
    /// A server certificate with its key.
    Server,
    /// A CA bundle (with optional CRLs) for client authentication.
    Ca,
}

impl CertKind {
    /// The folder of this kind inside the store, and the word the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Ca => "ca",
        }
    }

    /// Both kinds.
    pub const ALL: [CertKind; 2] = [CertKind::Server, CertKind::Ca];
}

impl std::fmt::Display for CertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Certificate file of a server certificate, in order of preference: ours,
/// a Kubernetes TLS Secret's, certbot's (whose `cert.pem` is the leaf alone
/// and comes without a `key.pem`: the first pair whose two files are both
/// there is used, see [`server_files`]).
pub const SERVER_CERT_FILES: [&str; 3] = ["cert.pem", "tls.crt", "fullchain.pem"];
/// Key file of a server certificate, paired with [`SERVER_CERT_FILES`] by index.
pub const SERVER_KEY_FILES: [&str; 3] = ["key.pem", "tls.key", "privkey.pem"];

/// The certificate and key files of a server folder: the first pair of
/// [`SERVER_CERT_FILES`] / [`SERVER_KEY_FILES`] with both files present,
/// else the first certificate file present with its pair's key (missing,
/// which the caller reports), else `None`.
pub fn server_files(folder: &Path) -> Option<(PathBuf, PathBuf)> {
    let pair = |i: usize| {
        (
            folder.join(SERVER_CERT_FILES[i]),
            folder.join(SERVER_KEY_FILES[i]),
        )
    };
    let indices = 0..SERVER_CERT_FILES.len();
    indices
        .clone()
        .map(pair)
        .find(|(cert, key)| cert.exists() && key.exists())
        .or_else(|| indices.map(pair).find(|(cert, _)| cert.exists()))
}
/// Intermediates kept apart from the leaf (DigiCert, Sectigo, older
/// certbot). Not read: the certificate file holds the whole chain; a
/// warning points at this file when the leaf's issuer is missing.
pub const CHAIN_FILE: &str = "chain.pem";
/// CA bundle file, in order of preference.
pub const CA_FILES: [&str; 2] = ["ca.pem", "ca.crt"];
/// Optional CRL file beside a CA bundle (PEM or DER, one or several CRLs).
pub const CRL_FILE: &str = "crl.pem";
/// Optional DER OCSP response beside a server certificate (R9b).
pub const OCSP_FILE: &str = "ocsp.der";

/// The folder name for a certificate name.
pub fn folder_for(name: &CertificateName) -> String {
    let mut out = String::with_capacity(name.as_str().len() + 4);
    for (i, ch) in name.as_str().chars().enumerate() {
        match ch {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '.' if i == 0 => out.push_str("%2E"),
            other => out.push(other),
        }
    }
    out
}

/// The certificate name a folder holds, or `None` when the folder name is
/// not the encoding of a valid name (a stray folder, an editor's temp dir).
pub fn name_for_folder(folder: &str) -> Option<CertificateName> {
    let mut out = String::with_capacity(folder.len());
    let mut chars = folder.chars();
    while let Some(ch) = chars.next() {
        if ch == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            match hex.to_ascii_uppercase().as_str() {
                "25" => out.push('%'),
                "2F" => out.push('/'),
                "2E" => out.push('.'),
                _ => return None,
            }
        } else {
            out.push(ch);
        }
    }
    let name = CertificateName::parse(&out).ok()?;
    // Only the canonical encoding counts, so one name has exactly one folder.
    (folder_for(&name) == folder).then_some(name)
}

/// `STORE/KIND/FOLDER` for a certificate.
pub fn folder_path(store: &Path, kind: CertKind, name: &CertificateName) -> PathBuf {
    store.join(kind.as_str()).join(folder_for(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> CertificateName {
        CertificateName::parse(s).unwrap()
    }

    #[test]
    fn spec_examples() {
        assert_eq!(folder_for(&name("a/b")), "a%2Fb");
        assert_eq!(folder_for(&name("..")), "%2E.");
        assert_eq!(folder_for(&name("../x")), "%2E.%2Fx");
        assert_eq!(folder_for(&name("www.example.com")), "www.example.com");
        assert_eq!(name_for_folder("a%2Fb"), Some(name("a/b")));
        assert_eq!(name_for_folder("%2E."), Some(name("..")));
        // Non-canonical spellings and junk are not names.
        assert_eq!(name_for_folder("a%2fb"), None);
        assert_eq!(name_for_folder(".hidden"), None);
        assert_eq!(name_for_folder("..data"), None);
        assert_eq!(name_for_folder("a%zz"), None);
        assert_eq!(name_for_folder(""), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn encoding_round_trips_and_stays_inside_the_store(raw in "[A-Za-z0-9./_*-]{1,80}") {
            let name = name(&raw);
            let folder = folder_for(&name);
            prop_assert!(!folder.contains('/'));
            prop_assert!(!folder.starts_with('.'));
            prop_assert!(folder != "." && folder != "..");
            prop_assert_eq!(name_for_folder(&folder), Some(name.clone()));

            let store = Path::new("/srv/store");
            let path = folder_path(store, CertKind::Server, &name);
            let mut components = path.strip_prefix(store).unwrap().components();
            prop_assert_eq!(components.next(), Some(std::path::Component::Normal("server".as_ref())));
            prop_assert!(matches!(components.next(), Some(std::path::Component::Normal(_))));
            prop_assert_eq!(components.next(), None);
        }
    }
}
