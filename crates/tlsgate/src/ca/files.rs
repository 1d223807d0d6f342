//! File handling shared by the `ca` commands: atomic writes with the right
//! mode, reads with the path in the error, the clock and randomness.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use rustls_pki_types::UnixTime;
use time::OffsetDateTime;

use super::{Failure, Outcome};

/// Writes `content` to `path` through a temporary file in the same folder
/// and a rename, so a reader (or the store's watcher) never sees half a
/// file. `secret` files (keys, state, PKCS#12) are created 0600.
pub(crate) fn write_atomic(path: &Path, content: &[u8], secret: bool) -> Result<()> {
    let dir = parent(path);
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    // A dot-name: the store ignores it, and editors' globs usually do too.
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(content)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The folder a file lives in (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates a folder (and its parents); a new folder that holds keys is
/// made 0700 so other users cannot even list it.
pub(crate) fn create_dir(path: &Path, private: bool) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(if private { 0o700 } else { 0o755 });
    }
    builder
        .create(path)
        .with_context(|| format!("cannot create the folder {}", path.display()))
}

/// Reads a file; a missing or unreadable file is an I/O error naming it.
pub(crate) fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Reads a file that may be absent.
pub(crate) fn read_optional(path: &Path, what: &str) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read the {what} {}", path.display())),
    }
}

/// Reads a password file. One trailing newline (LF or CRLF) is not part of
/// the password, because `echo secret > file` adds one (as `cert check`).
pub(crate) fn read_password(path: &Path) -> Outcome<String> {
    let mut bytes = read(path, "password file")?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(Failure::usage(format!(
            "the password file {} is empty; PKCS#12 files without a password are refused by many keychains, so write a password into it",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Failure::usage(format!(
            "the password in {} is not UTF-8 text; PKCS#12 passwords are text, so use letters, digits and punctuation",
            path.display()
        ))
    })
}

/// `PREFIX` plus an extension: `alice` → `alice.pem` (any dot already in
/// the prefix stays: `alice.example` → `alice.example.pem`).
pub(crate) fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Now, truncated to whole seconds (certificates and CRLs carry seconds).
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Now, for the validator.
pub(crate) fn unix_now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// A random serial number: 16 bytes from the system's CSPRNG, positive (top
/// bit clear) and without a leading zero byte, so its DER INTEGER is these
/// exact 16 bytes and its hex form has no leading zeros to normalise.
/// 127 random bits is what the CA/Browser Forum's 64-bit minimum asks for,
/// with room to spare.
pub(crate) fn random_serial() -> Outcome<[u8; 16]> {
    let mut serial = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| Failure::refused("the system random number generator failed"))?;
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    Ok(serial)
}

/// Uppercase hex without colons, as `X-Forwarded-Clientcert-serial` and
/// `cert check` print serials.
pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
