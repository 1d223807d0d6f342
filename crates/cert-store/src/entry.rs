//! One certificate folder, read and validated as a whole into a ready-to-use
//! entry. The signing key is parsed here, once, so a handshake only clones
//! an `Arc<CertifiedKey>`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, UnixTime};
use tlsgate_validator::{
    self as validator, CertificateName, Crl, Kind, Options, Request, Source, Summary,
};

use crate::Error;
use crate::layout::{CA_FILES, CHAIN_FILE, CRL_FILE, CertKind, OCSP_FILE, server_files};

/// A server certificate ready to serve.
#[derive(Debug)]
pub struct ServerCert {
    /// Its name in the store.
    pub name: CertificateName,
    /// Chain, signing key and stapled OCSP response, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// Facts about the leaf.
    pub summary: Summary,
    /// ECDSA (true) or RSA (false) leaf key: dual-certificate selection (R8).
    pub is_ecdsa: bool,
    /// Lowercased DNS names the leaf is valid for (subjectAltName).
    pub dns_names: Vec<String>,
    /// Warnings the validator gave (e.g. expiring soon).
    pub warnings: Vec<validator::Error>,
    /// The folder it was loaded from.
    pub folder: PathBuf,
    /// nextUpdate of the stapled OCSP response (unix seconds), when one is
    /// stapled and says.
    pub ocsp_next_update: Option<i64>,
}

/// A CA bundle with its CRLs, for verifying client certificates.
#[derive(Debug)]
pub struct CaCert {
    /// Its name in the store.
    pub name: CertificateName,
    /// The CA certificates (one or more).
    pub certs: Vec<CertificateDer<'static>>,
    /// CRLs from `crl.pem`, each verified against a CA of the bundle.
    pub crls: Vec<Crl>,
    /// Facts about the first CA.
    pub summary: Summary,
    /// The earliest notAfter of the bundle (what expires first).
    pub not_after: i64,
    /// Warnings the validator gave.
    pub warnings: Vec<validator::Error>,
    /// The folder it was loaded from.
    pub folder: PathBuf,
}

/// Either kind of entry.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A server certificate.
    Server(Arc<ServerCert>),
    /// A CA bundle.
    Ca(Arc<CaCert>),
}

/// SHA-256 over every file a load read (names and contents).
pub(crate) type Digest = [u8; 32];

/// Reads `path`, or `None` when it does not exist, folding it into `digest`.
fn read_optional(path: &Path, digest: &mut sha2::Sha256) -> Result<Option<Vec<u8>>, Error> {
    use sha2::Digest as _;
    let bytes = match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => return Err(Error::io("cannot read", path, err)),
    };
    digest.update(
        path.file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default(),
    );
    match &bytes {
        Some(b) => {
            digest.update((b.len() as u64).to_be_bytes());
            digest.update(b);
        }
        None => digest.update(u64::MAX.to_be_bytes()),
    }
    Ok(bytes)
}

fn finish(digest: sha2::Sha256) -> Digest {
    use sha2::Digest as _;
    digest.finalize().into()
}

/// What reading a folder found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// No certificate file: the folder is empty or being created.
    Missing,
    /// The same bytes as `previous`: nothing to do.
    Unchanged,
    /// A validated entry.
    Entry(Entry),
}

/// The first of `names` that exists in `folder`, with its index.
fn first_existing(folder: &Path, names: &[&str]) -> Option<(usize, PathBuf)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (i, folder.join(n)))
        .find(|(_, p)| p.exists())
}

fn options(kind: Kind, now: UnixTime) -> Options {
    Options {
        kind,
        strict: false,
        require_key: kind == Kind::Server,
        now,
        origin: validator::Origin::Store,
    }
}

/// Loads a server certificate folder. `Ok(None)` when the folder holds no
/// certificate file at all (being created, or emptied).
fn load_server(
    name: &CertificateName,
    folder: &Path,
    now: UnixTime,
    previous: Option<&Digest>,
) -> Result<(Option<ServerCert>, Digest), Error> {
    let mut digest = sha2::Sha256::default();
    let Some((cert_path, key_path)) = server_files(folder) else {
        return Ok((None, finish(digest)));
    };
    let Some(cert) = read_optional(&cert_path, &mut digest)? else {
        return Ok((None, finish(digest)));
    };
    let key = read_optional(&key_path, &mut digest)?;
    let ocsp = read_optional(&folder.join(OCSP_FILE), &mut digest)?;
    let digest = finish(digest);
    if previous == Some(&digest) {
        return Err(Error::Unchanged(digest));
    }
    let cert_name = cert_path.display().to_string();
    let key_name = key_path.display().to_string();
    let report = validator::check(&Request {
        certificate: Source {
            name: &cert_name,
            bytes: &cert,
        },
        private_key: key.as_deref().map(|bytes| Source {
            name: &key_name,
            bytes,
        }),
        password: None,
        options: options(Kind::Server, now),
    });
    let invalid = |findings| Error::Invalid {
        kind: CertKind::Server,
        name: name.clone(),
        folder: folder.to_path_buf(),
        findings,
    };
    let validated = report
        .into_validated()
        .map_err(|report| invalid(report.errors))?;
    let bundle = validated.bundle();
    let Some(key_der) = bundle.private_key() else {
        return Err(invalid(vec![validator::Error::MissingPrivateKey(format!(
            "{key_name} is missing"
        ))]));
    };
    let signing_key =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der).map_err(|err| {
            invalid(vec![validator::Error::InvalidPrivateKeyFormat(format!(
                "{key_name}: the TLS engine refused the key ({err})"
            ))])
        })?;
    let mut certified = CertifiedKey::new(bundle.chain().to_vec(), signing_key);
    // An empty ocsp.der means "no staple". A response a client would
    // reject (another certificate's, stale, an error status, garbage) is
    // not stapled either: a client that enforces stapling would fail the
    // handshake over it. The signature is the client's to check.
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let mut ocsp_next_update = None;
    certified.ocsp = ocsp.filter(|bytes| !bytes.is_empty()).and_then(|bytes| {
        match validator::check_ocsp(&bytes, &bundle.chain()[0], now_secs) {
            Ok(status) => {
                ocsp_next_update = status.next_update;
                Some(bytes)
            }
            Err(problem) => {
                tracing::warn!(
                    name = name.as_str(),
                    file = %folder.join(OCSP_FILE).display(),
                    "OCSP response not stapled: {problem}; fetch a fresh one for this certificate (openssl ocsp -issuer ISSUER.pem -cert cert.pem -url URL -respout ocsp.der), or remove the file"
                );
                None
            }
        }
    });

    let summary = bundle.summary().clone();
    let mut dns_names: Vec<String> = summary
        .sans
        .iter()
        .filter(|san| san.parse::<std::net::IpAddr>().is_err())
        .map(|san| san.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    dns_names.dedup();
    let entry = ServerCert {
        name: name.clone(),
        certified: Arc::new(certified),
        is_ecdsa: bundle.key_algorithm().is_ecdsa(),
        dns_names,
        warnings: unread_chain_note(validated.warnings(), folder, &cert_path),
        folder: folder.to_path_buf(),
        summary,
        ocsp_next_update,
    };
    Ok((Some(entry), digest))
}

/// The validator's warnings for a server folder, with the missing-issuer
/// warning explaining a `chain.pem` beside the certificate. DigiCert's and
/// Sectigo's downloads and older certbot versions put the leaf in one file
/// and the intermediates in `chain.pem`; the store serves the certificate
/// file alone (the chain belongs in it, R15a), so the warning says why the
/// intermediates it can see are not used and how to fix it. The file is
/// deliberately not read as the chain: what is served stays exactly what
/// the certificate file holds, which `tlsgate cert check` and messages'
/// line numbers describe.
fn unread_chain_note(
    warnings: &[validator::Error],
    folder: &Path,
    cert_path: &Path,
) -> Vec<validator::Error> {
    let chain = folder.join(CHAIN_FILE);
    let cert_file = cert_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    warnings
        .iter()
        .map(|warning| match warning {
            validator::Error::CertificateChainNotFound(message) if chain.is_file() => {
                validator::Error::CertificateChainNotFound(format!(
                    "{message}. {} is not read: the store serves {cert_file} alone, so append the intermediates to it: `cat {CHAIN_FILE} >> {cert_file}` in {}",
                    chain.display(),
                    folder.display()
                ))
            }
            other => other.clone(),
        })
        .collect()
}

/// Loads a CA folder (`ca.pem` or `ca.crt`, optional `crl.pem`).
fn load_ca(
    name: &CertificateName,
    folder: &Path,
    now: UnixTime,
    previous: Option<&Digest>,
) -> Result<(Option<CaCert>, Digest), Error> {
    let mut digest = sha2::Sha256::default();
    let Some((_, ca_path)) = first_existing(folder, &CA_FILES) else {
        return Ok((None, finish(digest)));
    };
    let Some(bundle_bytes) = read_optional(&ca_path, &mut digest)? else {
        return Ok((None, finish(digest)));
    };
    let crl_path = folder.join(CRL_FILE);
    let crl_bytes = read_optional(&crl_path, &mut digest)?;
    let digest = finish(digest);
    if previous == Some(&digest) {
        return Err(Error::Unchanged(digest));
    }
    let ca_name = ca_path.display().to_string();
    let invalid = |findings| Error::Invalid {
        kind: CertKind::Ca,
        name: name.clone(),
        folder: folder.to_path_buf(),
        findings,
    };
    let report = validator::check(&Request {
        certificate: Source {
            name: &ca_name,
            bytes: &bundle_bytes,
        },
        private_key: None,
        password: None,
        options: options(Kind::Ca, now),
    });
    let validated = report
        .into_validated()
        .map_err(|report| invalid(report.errors))?;
    let bundle = validated.bundle();
    let certs = bundle.chain().to_vec();
    let crls = match crl_bytes {
        Some(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => {
            let crl_name = crl_path.display().to_string();
            let ders: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
            validator::check_crls(
                &Source {
                    name: &crl_name,
                    bytes: &bytes,
                },
                &ders,
            )
            .map_err(invalid)?
        }
        _ => Vec::new(),
    };
    let not_after = certs
        .iter()
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der.as_ref())
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp())
        })
        .min()
        .unwrap_or(bundle.summary().not_after);
    let entry = CaCert {
        name: name.clone(),
        certs,
        crls,
        summary: bundle.summary().clone(),
        not_after,
        warnings: validated.warnings().to_vec(),
        folder: folder.to_path_buf(),
    };
    Ok((Some(entry), digest))
}

/// Loads whichever kind `kind` says. `previous` is the digest of the
/// content now live: identical bytes are not validated or published again
/// (file events can arrive for a folder whose content did not change).
pub(crate) fn load(
    kind: CertKind,
    name: &CertificateName,
    folder: &Path,
    now: UnixTime,
    previous: Option<&Digest>,
) -> Result<(Loaded, Option<Digest>), Error> {
    let result = match kind {
        CertKind::Server => load_server(name, folder, now, previous)
            .map(|(e, d)| (e.map(|e| Entry::Server(Arc::new(e))), d)),
        CertKind::Ca => load_ca(name, folder, now, previous)
            .map(|(e, d)| (e.map(|e| Entry::Ca(Arc::new(e))), d)),
    };
    match result {
        Ok((Some(entry), digest)) => Ok((Loaded::Entry(entry), Some(digest))),
        Ok((None, _)) => Ok((Loaded::Missing, None)),
        Err(Error::Unchanged(digest)) => Ok((Loaded::Unchanged, Some(digest))),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::time::Duration;

    use tlsgate_test_pki::{KeyKind, TestPki};

    use super::*;

    fn warnings_of(folder: &Path, now: i64) -> Vec<validator::Error> {
        let name = CertificateName::parse("www").unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(now as u64));
        match load(CertKind::Server, &name, folder, now, None).unwrap().0 {
            Loaded::Entry(Entry::Server(server)) => server.warnings.clone(),
            other => panic!("not loaded: {other:?}"),
        }
    }

    /// DigiCert / Sectigo / older certbot: the leaf in cert.pem, the
    /// intermediates in chain.pem. The missing-issuer warning says that
    /// chain.pem is not read and how to fix it.
    #[test]
    fn a_separate_chain_pem_is_named_in_the_missing_issuer_warning() {
        let pki = TestPki::fixed();
        let chain = pki.server_chain(&["www.example.com"], KeyKind::EcdsaP256);
        let dir = tempfile::tempdir().unwrap();
        let leaf = &chain.leaf;
        fs::write(dir.path().join("cert.pem"), leaf.cert_pem()).unwrap();
        fs::write(dir.path().join("key.pem"), leaf.key().pkcs8_pem()).unwrap();

        let plain = warnings_of(dir.path(), pki.now_unix());
        let [warning] = plain.as_slice() else {
            panic!("{plain:?}")
        };
        assert_eq!(warning.code(), "CertificateChainNotFound");
        assert!(!warning.message().contains(CHAIN_FILE), "{warning}");

        fs::write(
            dir.path().join(CHAIN_FILE),
            chain.intermediate.cert().cert_pem(),
        )
        .unwrap();
        let noted = warnings_of(dir.path(), pki.now_unix());
        let [warning] = noted.as_slice() else {
            panic!("{noted:?}")
        };
        assert_eq!(warning.code(), "CertificateChainNotFound");
        assert!(
            warning.message().contains("chain.pem is not read")
                && warning.message().contains("cat chain.pem >> cert.pem"),
            "{warning}"
        );

        // Once the chain is in cert.pem, there is nothing to say.
        fs::write(dir.path().join("cert.pem"), chain.pem_leaf_first()).unwrap();
        assert!(warnings_of(dir.path(), pki.now_unix()).is_empty());
    }
}
