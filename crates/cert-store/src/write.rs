//! Writing certificates into the store (the admin API's upload, replace and
//! delete). Content is written to a temporary folder, moved into place and
//! reloaded while the store's writer lock is held, so the watcher never sees
//! half a change, two writers of one name never interleave, and the caller
//! learns the outcome only once the new version is live.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tlsgate_validator::CertificateName;

use crate::layout::{
    CA_FILES, CRL_FILE, CertKind, SERVER_CERT_FILES, SERVER_KEY_FILES, folder_for,
};
use crate::{Error, Store};

/// Distinguishes temporary folders of concurrent writes in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What to write for one certificate.
#[derive(Debug, Clone)]
pub enum Content {
    /// A server certificate: canonical chain PEM and PKCS#8 key PEM.
    Server {
        /// Chain, leaf first.
        chain_pem: String,
        /// Private key (written 0600).
        key_pem: String,
    },
    /// A CA bundle with optional CRLs.
    Ca {
        /// One or more CA certificates.
        bundle_pem: String,
        /// CRLs, when any.
        crl_pem: Option<String>,
    },
}

impl Content {
    fn kind(&self) -> CertKind {
        match self {
            Content::Server { .. } => CertKind::Server,
            Content::Ca { .. } => CertKind::Ca,
        }
    }

    /// (file name, content, secret) of every file this content consists of.
    fn files(&self) -> Vec<(&'static str, &str, bool)> {
        match self {
            Content::Server { chain_pem, key_pem } => vec![
                (SERVER_KEY_FILES[0], key_pem.as_str(), true),
                (SERVER_CERT_FILES[0], chain_pem.as_str(), false),
            ],
            Content::Ca {
                bundle_pem,
                crl_pem,
            } => {
                let mut files = vec![(CA_FILES[0], bundle_pem.as_str(), false)];
                if let Some(crl) = crl_pem {
                    files.push((CRL_FILE, crl.as_str(), false));
                }
                files
            }
        }
    }
}

/// Whether a write may create or replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create; `CertificateAlreadyExists` when the name is taken.
    Create,
    /// Replace in place; `CertificateNotFound` when there is nothing to replace.
    Replace,
}

fn write_file(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

impl Store {
    fn temp_folder(&self, kind: CertKind) -> PathBuf {
        // A leading '.' is never a name encoding: the watcher ignores it.
        self.dir().join(kind.as_str()).join(format!(
            ".write-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Writes a certificate (already validated by the caller) and returns
    /// once it is live, or with the store's reason for refusing it.
    pub fn write(
        &self,
        name: &CertificateName,
        content: &Content,
        mode: WriteMode,
    ) -> Result<(), Error> {
        let kind = content.kind();
        let folder = self.dir().join(kind.as_str()).join(folder_for(name));
        let mut state = self.lock_state();
        let current = self.snapshot();
        let exists = current.contains(kind, name) || folder.exists();
        match mode {
            WriteMode::Create if exists => {
                return Err(Error::AlreadyExists {
                    kind,
                    name: name.clone(),
                });
            }
            WriteMode::Replace if !exists => {
                return Err(Error::NotFound {
                    kind,
                    name: name.clone(),
                });
            }
            WriteMode::Create => {
                let limit = self.config().limit(kind);
                if current.count(kind) >= limit {
                    return Err(Error::QuotaExceeded { kind, limit });
                }
            }
            WriteMode::Replace => {}
        }

        let temp = self.temp_folder(kind);
        let result = (|| {
            fs::create_dir_all(&temp).map_err(|e| Error::io("cannot create", &temp, e))?;
            for (file, text, secret) in content.files() {
                let path = temp.join(file);
                write_file(&path, text, secret).map_err(|e| Error::io("cannot write", &path, e))?;
            }
            if folder.exists() {
                // Replace file by file; the lock keeps the watcher from
                // reading between the renames.
                for (file, _, _) in content.files() {
                    let to = folder.join(file);
                    fs::rename(temp.join(file), &to)
                        .map_err(|e| Error::io("cannot replace", &to, e))?;
                }
                if let Content::Ca { crl_pem: None, .. } = content {
                    // A replacement without CRLs removes the old ones.
                    let crl = folder.join(CRL_FILE);
                    if crl.exists() {
                        fs::remove_file(&crl).map_err(|e| Error::io("cannot remove", &crl, e))?;
                    }
                }
                let _ = fs::remove_dir_all(&temp);
            } else {
                fs::rename(&temp, &folder).map_err(|e| Error::io("cannot create", &folder, e))?;
            }
            Ok(())
        })();
        if let Err(err) = result {
            let _ = fs::remove_dir_all(&temp);
            return Err(err);
        }
        self.reload_with(&mut state, kind, &folder_for(name))
    }

    /// Deletes a certificate that no listener uses (R18).
    pub fn delete(&self, kind: CertKind, name: &CertificateName) -> Result<(), Error> {
        let folder = self.dir().join(kind.as_str()).join(folder_for(name));
        let mut state = self.lock_state();
        let current = self.snapshot();
        if !current.contains(kind, name) && !folder.exists() {
            return Err(Error::NotFound {
                kind,
                name: name.clone(),
            });
        }
        let listeners = current.listeners_using(kind, name);
        if !listeners.is_empty() {
            return Err(Error::InUse {
                kind,
                name: name.clone(),
                listeners,
            });
        }
        // Move it out of the store's namespace first, so the removal is one
        // step for the watcher, then delete at leisure.
        let grave = self.temp_folder(kind);
        fs::rename(&folder, &grave).map_err(|e| Error::io("cannot remove", &folder, e))?;
        let _ = fs::remove_dir_all(&grave);
        self.reload_with(&mut state, kind, &folder_for(name))
    }
}
