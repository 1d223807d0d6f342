//! `--install-into STORE --name CA_NAME`: places the CA certificate and its
//! CRL into a certificate store's `ca/` folder (R15a), where a running
//! `tlsgate serve` picks them up within a second (R16). Files are written
//! with a rename, the CA before the CRL, so the watcher never reads half a
//! file nor a CRL whose CA it does not have yet.

use std::path::{Path, PathBuf};

use tlsgate_cert_store::{CA_FILES, CRL_FILE, CertKind, CertificateName, folder_path};
use tlsgate_validator::{self as validator, Kind, Options, Request, Source};

use super::authority::Ca;
use super::files::{create_dir, read_optional, unix_now, write_atomic};
use super::{Failure, InstallArgs, Outcome};

/// Where in which store.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    store: PathBuf,
    name: CertificateName,
}

impl Target {
    /// The target named by `--install-into` and `--name`, if any. The name
    /// is checked before anything is generated, so a typo costs nothing.
    pub(crate) fn from_args(args: &InstallArgs) -> Outcome<Option<Target>> {
        let (Some(store), Some(name)) = (&args.install_into, &args.name) else {
            return Ok(None);
        };
        let name = CertificateName::parse(name)
            .map_err(|err| Failure::usage(format!("--name: {}", err.message())))?;
        if !store.is_dir() {
            return Err(Failure::usage(format!(
                "the certificate store {} is not a folder; give --install-into the [store] dir of the tlsgate config (create it first for a new store)",
                store.display()
            )));
        }
        Ok(Some(Target {
            store: store.clone(),
            name,
        }))
    }

    /// The store folder.
    pub(crate) fn store(&self) -> &Path {
        &self.store
    }

    /// The CA's name in the store.
    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }
}

/// The DER certificates of a CA bundle file, or why it cannot be used.
fn bundle_ders(path: &Path, bytes: &[u8]) -> Outcome<Vec<Vec<u8>>> {
    let name = path.display().to_string();
    let report = validator::check(&Request {
        certificate: Source { name: &name, bytes },
        private_key: None,
        password: None,
        options: Options {
            kind: Kind::Ca,
            strict: false,
            require_key: false,
            now: unix_now(),
            origin: validator::Origin::Cli,
        },
    });
    match report.bundle {
        Some(bundle) => Ok(bundle
            .chain()
            .iter()
            .map(|der| der.as_ref().to_vec())
            .collect()),
        None => {
            let findings: Vec<String> = report
                .errors
                .iter()
                .map(|err| format!("{}: {}", err.code(), err.message()))
                .collect();
            Err(Failure::refused(format!(
                "{} is not a CA bundle ({}); fix or remove it, or pick another --name",
                path.display(),
                findings.join("; ")
            )))
        }
    }
}

/// Installs the CA certificate (unless the folder's bundle already holds
/// it) and, when given, the CRL. Returns the folder.
pub(crate) fn install(ca: &Ca, target: &Target, crl_pem: Option<&str>) -> Outcome<PathBuf> {
    let folder = folder_path(&target.store, CertKind::Ca, &target.name);
    create_dir(&folder, false)?;

    // The bundle the listener will verify clients against: an existing
    // ca.pem / ca.crt must already hold this CA, or installing a CRL for it
    // would be refused by the store (a CRL beside a CA that did not sign it).
    let mut bundle = None;
    for file in CA_FILES {
        let path = folder.join(file);
        if let Some(bytes) = read_optional(&path, "CA bundle")? {
            bundle = Some((path, bytes));
            break;
        }
    }
    let ders = match bundle {
        Some((path, bytes)) => {
            let ders = bundle_ders(&path, &bytes)?;
            if !ders.contains(&ca.cert_der) {
                return Err(Failure::refused(format!(
                    "{} holds other CA certificates, not \"{}\"; pick another --name, or remove that folder to replace it",
                    path.display(),
                    ca.summary.subject
                )));
            }
            ders
        }
        None => {
            let path = folder.join(CA_FILES[0]);
            write_atomic(&path, ca.cert_pem.as_bytes(), false)?;
            say!("wrote {}", path.display());
            vec![ca.cert_der.clone()]
        }
    };

    if let Some(crl_pem) = crl_pem {
        let path = folder.join(CRL_FILE);
        let mut content = String::new();
        // CRLs of the bundle's other CAs stay: this CA only replaces its own.
        if let Some(existing) = read_optional(&path, "CRL")? {
            let name = path.display().to_string();
            let cas: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
            match validator::check_crls(
                &Source {
                    name: &name,
                    bytes: &existing,
                },
                &cas,
            ) {
                Ok(crls) => {
                    for crl in crls.iter().filter(|crl| crl.issuer != ca.summary.subject) {
                        content.push_str(&validator::pem_encode("X509 CRL", crl.der.as_ref()));
                    }
                }
                Err(errors) => {
                    let findings: Vec<String> =
                        errors.iter().map(|e| e.message().to_string()).collect();
                    eprintln!(
                        "note: replacing {}, which the store refuses anyway: {}",
                        path.display(),
                        findings.join("; ")
                    );
                }
            }
        }
        content.push_str(crl_pem);
        write_atomic(&path, content.as_bytes(), false)?;
        say!("wrote {}", path.display());
    }
    Ok(folder)
}
