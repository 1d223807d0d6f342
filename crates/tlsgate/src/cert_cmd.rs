//! `tlsgate cert check` and `tlsgate cert convert` (SPEC §5): read files,
//! call the validator, print the verdict, write canonical PEM. The admin
//! API's client commands (`upload`, `list`, `show`, `delete`, `replace`)
//! live in [`cert_client`].

// Declared here rather than in main.rs so the client stays with the other
// `cert` subcommands; the path keeps the file next to this one.
#[path = "cert_client.rs"]
mod cert_client;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use rustls_pki_types::UnixTime;
use serde_json::json;
use tlsgate_validator::{self as validator, Error, Kind, Options, Report, Request, Source};

/// Exit code: accepted / written.
const EXIT_OK: u8 = 0;
/// Exit code: refused (check) or unreadable input (convert).
const EXIT_REFUSED: u8 = 1;
/// Exit code: usage or I/O error.
const EXIT_USAGE: u8 = 2;

/// `tlsgate cert …`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Check a certificate (and key) the way an upload would: exit 0 accepted, 1 refused, 2 usage or I/O error.
    Check(CheckArgs),
    /// Convert DER / PKCS#7 / PKCS#12 / messy PEM into canonical PEM (leaf first) and a PKCS#8 key.
    Convert(ConvertArgs),
    /// Upload a certificate to the running server through the admin API (or replace its content with --replace).
    Upload(cert_client::UploadArgs),
    /// List the certificates in the running server's store.
    List(cert_client::ListArgs),
    /// Show one certificate's metadata (never its private key).
    Show(cert_client::ShowArgs),
    /// Delete a certificate that no listener uses.
    Delete(cert_client::DeleteArgs),
    /// Re-point every listener from one certificate to another.
    Replace(cert_client::ReplaceArgs),
}

/// Arguments of `cert check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Certificate file: PEM, DER, PKCS#7 (.p7b) or PKCS#12 (.pfx/.p12, which brings its own key).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Private key file (PEM or DER; PKCS#1, SEC1, PKCS#8, encrypted PKCS#8 or legacy encrypted PEM).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Check a CA bundle (for mutual authentication) instead of a server certificate.
    #[arg(long, conflicts_with = "client")]
    ca: bool,
    /// Check a client certificate (for mutual authentication: chain, key,
    /// validity) instead of a server certificate: no subjectAltName or
    /// serverAuth needed.
    #[arg(long)]
    client: bool,
    /// File holding the password of an encrypted key or PKCS#12 file (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Also apply the cloud model's literal upload rules: canonical PEM, leaf first, issuer present.
    #[arg(long)]
    strict: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cert convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input: DER, PKCS#7, PKCS#12, or PEM in any shape (may include the key).
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// A separate private key file to convert along with the certificate.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// File holding the password of an encrypted key or PKCS#12 file.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Treat the input as a CA bundle (keeps every CA; no key expected).
    #[arg(long)]
    ca: bool,
    /// Where to write the certificate chain as canonical PEM, leaf first.
    #[arg(long, value_name = "FILE")]
    out_cert: PathBuf,
    /// Where to write the private key as unencrypted PKCS#8 PEM (mode 0600).
    #[arg(long, value_name = "FILE")]
    out_key: Option<PathBuf>,
}

/// Runs a `cert` subcommand and returns the process exit code.
pub fn run(command: CertCommand) -> ExitCode {
    let result = match command {
        CertCommand::Check(args) => check(&args),
        CertCommand::Convert(args) => convert(&args),
        // The admin client maps its own failures to exit codes (1 refused, 2 unreachable).
        CertCommand::Upload(args) => return cert_client::upload(&args),
        CertCommand::List(args) => return cert_client::list(&args),
        CertCommand::Show(args) => return cert_client::show(&args),
        CertCommand::Delete(args) => return cert_client::delete(&args),
        CertCommand::Replace(args) => return cert_client::replace(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("tlsgate: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The files of one validation, read up front so I/O errors exit 2.
struct Inputs {
    cert_name: String,
    cert: Vec<u8>,
    key: Option<(String, Vec<u8>)>,
    password: Option<Vec<u8>>,
}

impl Inputs {
    fn read(cert: &Path, key: Option<&Path>, password_file: Option<&Path>) -> Result<Self> {
        Ok(Inputs {
            cert_name: cert.display().to_string(),
            cert: read(cert, "certificate")?,
            key: key
                .map(|path| {
                    Ok::<_, anyhow::Error>((path.display().to_string(), read(path, "key")?))
                })
                .transpose()?,
            password: password_file.map(read_password).transpose()?,
        })
    }

    fn validate(&self, kind: Kind, strict: bool) -> Report {
        let request = Request {
            certificate: Source {
                name: &self.cert_name,
                bytes: &self.cert,
            },
            private_key: self
                .key
                .as_ref()
                .map(|(name, bytes)| Source { name, bytes }),
            password: self.password.as_deref(),
            options: Options {
                kind,
                strict,
                require_key: false,
                now: now(),
                origin: validator::Origin::Cli,
            },
        };
        validator::check(&request)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

/// Reads a password file; one trailing newline (LF or CRLF) is not part of
/// the password, because `echo secret > file` adds one.
fn read_password(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = read(path, "password")?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(bytes)
}

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn kind(ca: bool, client: bool) -> Kind {
    match (ca, client) {
        (true, _) => Kind::Ca,
        (false, true) => Kind::Client,
        (false, false) => Kind::Server,
    }
}

fn check(args: &CheckArgs) -> Result<u8> {
    let inputs = Inputs::read(
        &args.cert,
        args.key.as_deref(),
        args.password_file.as_deref(),
    )?;
    let report = inputs.validate(kind(args.ca, args.client), args.strict);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print!("{}", report_text(&inputs.cert_name, &report));
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_REFUSED })
}

fn findings_json(findings: &[Error]) -> serde_json::Value {
    findings
        .iter()
        .map(|f| json!({"code": f.code(), "message": f.message()}))
        .collect()
}

/// The `--json` object of SPEC §5.
fn report_json(report: &Report) -> serde_json::Value {
    let mut value = json!({
        "ok": report.ok(),
        "errors": findings_json(&report.errors),
        "warnings": findings_json(&report.warnings),
    });
    if let (Some(summary), Some(object)) = (report.summary(), value.as_object_mut()) {
        object.insert(
            "summary".into(),
            json!({
                "subject": summary.subject,
                "issuer": summary.issuer,
                "sans": summary.sans,
                "not_before": validator::rfc3339(summary.not_before),
                "not_after": validator::rfc3339(summary.not_after),
                "key_algorithm": summary.key_algorithm,
                "chain_length": summary.chain_length,
                "sha256_fingerprint": summary.sha256_fingerprint,
                "serial": summary.serial,
            }),
        );
    }
    value
}

fn report_text(name: &str, report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.ok() { "ACCEPTED" } else { "REFUSED" };
    out.push_str(&format!("{verdict}: {name}\n"));
    if let Some(s) = report.summary() {
        // Past notAfter (negative days) there are no days left to count:
        // the CertificateExpired error below says how long ago it expired.
        let left = match s.days_left(now()) {
            days if days < 0 => "expired".to_string(),
            days => format!("{days} days left"),
        };
        let rows = [
            ("subject", s.subject.clone()),
            ("issuer", s.issuer.clone()),
            ("names", s.sans.join(", ")),
            (
                "valid",
                format!(
                    "{} to {} ({left})",
                    validator::rfc3339(s.not_before),
                    validator::rfc3339(s.not_after)
                ),
            ),
            ("key", s.key_algorithm.clone()),
            ("chain", format!("{} certificate(s)", s.chain_length)),
            ("serial", s.serial.clone()),
            ("sha256", s.sha256_fingerprint.clone()),
        ];
        for (label, value) in rows {
            out.push_str(&format!("  {label:<8} {value}\n"));
        }
    }
    for err in &report.errors {
        out.push_str(&format!("error: {}: {}\n", err.code(), err.message()));
    }
    for warning in &report.warnings {
        out.push_str(&format!(
            "warning: {}: {}\n",
            warning.code(),
            warning.message()
        ));
    }
    out
}

fn convert(args: &ConvertArgs) -> Result<u8> {
    let inputs = Inputs::read(
        &args.input,
        args.key.as_deref(),
        args.password_file.as_deref(),
    )?;
    let report = inputs.validate(kind(args.ca, false), false);
    let (fatal, other): (Vec<&Error>, Vec<&Error>) = report
        .errors
        .iter()
        .partition(|err| err.blocks_conversion());
    let Some(bundle) = report.bundle.as_ref().filter(|_| fatal.is_empty()) else {
        for err in &fatal {
            eprintln!("error: {}: {}", err.code(), err.message());
        }
        if fatal.is_empty() {
            for err in &other {
                eprintln!("error: {}: {}", err.code(), err.message());
            }
        }
        eprintln!("tlsgate: nothing written");
        return Ok(EXIT_REFUSED);
    };
    for finding in other.iter().copied().chain(&report.warnings) {
        // Convert only reshapes material: policy problems are the user's to judge.
        if finding.code() != "MissingPrivateKey" {
            eprintln!("warning: {}: {}", finding.code(), finding.message());
        }
    }
    let key_pem = match (&args.out_key, bundle.private_key_pem()) {
        (Some(_), None) => {
            eprintln!(
                "error: MissingPrivateKey: {} holds no private key, so --out-key has nothing to write; give the key with --key FILE",
                inputs.cert_name
            );
            eprintln!("tlsgate: nothing written");
            return Ok(EXIT_REFUSED);
        }
        (Some(path), Some(pem)) => Some((path, pem)),
        (None, Some(_)) if args.key.is_none() => {
            // The key came inside the input (PKCS#12, a combined PEM): it
            // exists nowhere else as PEM, and the certificate alone
            // cannot be served.
            eprintln!(
                "warning: {} holds a private key, not written: add --out-key FILE to keep it",
                inputs.cert_name
            );
            None
        }
        (None, _) => None,
    };
    write_file(&args.out_cert, bundle.certificate_pem().as_bytes(), false)?;
    if let Some((path, pem)) = key_pem {
        write_file(path, pem.as_bytes(), true)?;
    }
    eprintln!(
        "wrote {} ({} certificate(s), leaf first){}",
        args.out_cert.display(),
        bundle.chain().len(),
        args.out_key
            .as_ref()
            .map(|p| format!(" and {} (PKCS#8, mode 0600)", p.display()))
            .unwrap_or_default()
    );
    Ok(EXIT_OK)
}

/// Writes atomically (the `ca` commands' writer: temporary file and
/// rename, secrets 0600), creating the folder first: writing straight into
/// a store folder (STORE/server/NAME/) that does not exist yet is how a
/// certificate is installed before first start.
fn write_file(path: &Path, content: &[u8], secret: bool) -> Result<()> {
    let dir = crate::ca::files::parent(path);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::ca::files::write_atomic(path, content, secret)
}
