//! The CA's state in `D/state.json`: what was issued (serial, common name,
//! validity), what was revoked (when, why) and the next CRL number. It is a
//! small JSON file so an operator can read it, back it up with the key and
//! grep it for a serial; it is written atomically and 0600.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::files::{read, write_atomic};
use super::{Failure, KeyType, Outcome, Reason};

/// The CA certificate in a CA folder.
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
/// The CA key in a CA folder (PKCS#8 PEM, 0600).
pub(crate) const CA_KEY_FILE: &str = "ca.key";
/// The state in a CA folder.
pub(crate) const STATE_FILE: &str = "state.json";

/// The state format this build reads and writes.
const VERSION: u32 = 1;

/// Everything the CA remembers between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The CA itself.
    pub ca: CaInfo,
    /// The cRLNumber of the next CRL (RFC 5280 §5.2.3: it only grows).
    pub next_crl_number: u64,
    /// Every certificate issued, oldest first.
    pub issued: Vec<IssuedCert>,
}

/// Facts about the CA certificate, to notice a `ca.pem` swapped under the state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaInfo {
    /// Common name.
    pub cn: String,
    /// Key algorithm.
    pub key: KeyType,
    /// SHA-256 of the CA certificate's DER, lowercase hex.
    pub sha256_fingerprint: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LeafKind {
    /// clientAuth.
    Client,
    /// serverAuth.
    Server,
}

/// One issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuedCert {
    /// Serial number, uppercase hex without colons.
    pub serial: String,
    /// Common name.
    pub cn: String,
    /// Client or server certificate.
    pub kind: LeafKind,
    /// Subject alternative names of a server certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Set once revoked; a revocation is never undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Revocation {
    /// Revocation time, RFC 3339.
    pub at: String,
    /// RFC 5280 reason.
    pub reason: Reason,
}

/// The files of a CA folder.
#[derive(Debug, Clone)]
pub(crate) struct CaPaths {
    /// The folder.
    pub dir: PathBuf,
}

impl CaPaths {
    /// The files of the CA in `dir`.
    pub(crate) fn new(dir: &Path) -> CaPaths {
        CaPaths {
            dir: dir.to_path_buf(),
        }
    }

    /// `D/ca.pem`.
    pub(crate) fn cert(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// `D/ca.key`.
    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }

    /// `D/state.json`.
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
}

impl State {
    /// A fresh state for a new CA.
    pub(crate) fn new(ca: CaInfo) -> State {
        State {
            version: VERSION,
            ca,
            next_crl_number: 1,
            issued: Vec::new(),
        }
    }

    /// Reads `D/state.json`.
    pub(crate) fn load(paths: &CaPaths) -> Outcome<State> {
        let path = paths.state();
        let bytes = read(&path, "CA state")?;
        let state: State = serde_json::from_slice(&bytes).map_err(|err| {
            Failure::refused(format!(
                "the CA state {} is damaged ({err}); restore it from your backup of {}",
                path.display(),
                paths.dir.display()
            ))
        })?;
        if state.version != VERSION {
            return Err(Failure::refused(format!(
                "the CA state {} has format version {}, this tlsgate reads version {VERSION}; use the tlsgate that wrote it",
                path.display(),
                state.version
            )));
        }
        Ok(state)
    }

    /// Writes `D/state.json` atomically, 0600.
    pub(crate) fn save(&self, paths: &CaPaths) -> Outcome<()> {
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|err| Failure::refused(format!("cannot encode the CA state: {err}")))?;
        json.push(b'\n');
        write_atomic(&paths.state(), &json, true)?;
        Ok(())
    }

    /// Whether `serial` (uppercase hex) was ever issued by this CA.
    pub(crate) fn knows_serial(&self, serial: &str) -> bool {
        self.issued
            .iter()
            .any(|cert| same_serial(&cert.serial, serial))
    }

    /// Takes the next CRL number.
    pub(crate) fn take_crl_number(&mut self) -> u64 {
        let number = self.next_crl_number;
        self.next_crl_number = self.next_crl_number.saturating_add(1);
        number
    }
}

/// Normalises a serial as users paste it: `serial=0A1B…` (`openssl x509
/// -serial`), `0a:1b:…` (`openssl x509 -text`), `0x0A1B…`; `None` when it is
/// not hex.
pub(crate) fn normalize_serial(input: &str) -> Option<String> {
    let trimmed = input.trim();
    let trimmed = trimmed.strip_prefix("serial=").unwrap_or(trimmed);
    let trimmed = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let hex: String = trimmed
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(hex.to_ascii_uppercase())
}

/// Serials compare as numbers: leading zeros do not count (OpenSSL pads to
/// whole bytes, other tools do not).
pub(crate) fn same_serial(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.trim_start_matches('0').to_ascii_uppercase();
    strip(a) == strip(b)
}

/// RFC 3339 for the state file.
pub(crate) fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

/// Parses a time from the state file.
pub(crate) fn parse_time(text: &str, paths: &CaPaths) -> Outcome<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|err| {
        Failure::refused(format!(
            "the CA state {} holds the time {text:?}, which is not RFC 3339 ({err}); restore it from your backup",
            paths.state().display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise_the_way_users_paste_them() {
        let expected = Some("0A1BFF".to_string());
        assert_eq!(normalize_serial("serial=0A1BFF"), expected);
        assert_eq!(normalize_serial("0a:1b:ff"), expected);
        assert_eq!(normalize_serial(" 0x0a1bff\n"), expected);
        assert_eq!(normalize_serial("zz"), None);
        assert_eq!(normalize_serial(""), None);
        assert!(same_serial("0A1BFF", "A1BFF"));
        assert!(!same_serial("0A1BFF", "A1BF"));
    }

    #[test]
    fn state_round_trips_and_refuses_unknown_fields() {
        let mut state = State::new(CaInfo {
            cn: "corp".into(),
            key: KeyType::EcdsaP256,
            sha256_fingerprint: "00".into(),
            not_after: "2036-01-01T00:00:00Z".into(),
        });
        state.issued.push(IssuedCert {
            serial: "7F".into(),
            cn: "alice".into(),
            kind: LeafKind::Client,
            dns: Vec::new(),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            revoked: Some(Revocation {
                at: "2026-02-01T00:00:00Z".into(),
                reason: Reason::KeyCompromise,
            }),
        });
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"keyCompromise\""), "{json}");
        assert!(json.contains("\"ecdsa-p256\""), "{json}");
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back.issued.len(), 1);
        assert!(back.knows_serial("007f"));
        let tampered = json.replace("\"version\"", "\"bogus\":1,\"version\"");
        assert!(serde_json::from_str::<State>(&tampered).is_err());
    }
}
