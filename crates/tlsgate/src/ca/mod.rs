//! `tlsgate ca` (SPEC §5): a small certificate authority for mutual
//! authentication, replacing the OpenSSL recipe (openssl.conf, genrsa, req,
//! x509, ca, pkcs12, gencrl) with four commands and modern defaults.
//!
//! In: a CA folder D (`ca.pem`, `ca.key`, `state.json`) and command-line
//! arguments. Out: certificates, keys, PKCS#12 bundles and CRLs, each checked
//! with the same validator the store and the handshake use before it is
//! written, and optionally the CA certificate and a fresh CRL placed into a
//! certificate store so that a running `tlsgate serve` enforces a revocation
//! within a second (R3, R4, R16).

/// Prints a line on stdout. A closed stdout (`| head`, a cron job without
/// one) must not stop a command halfway: the files it writes and the state
/// it records are what matters, so a failed print is ignored (println!
/// would panic before the CRL file or the revocation were written).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod authority;
mod crl;
pub(crate) mod files;
mod install;
mod state;

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// `tlsgate ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA in a folder: ca.key (0600), a self-signed ca.pem and the CA's state.
    Init(InitArgs),
    /// Issue a client certificate (or a server certificate with --server) and its key.
    Issue(IssueArgs),
    /// Revoke certificates by serial number or common name.
    #[command(group(ArgGroup::new("which").required(true).args(["serial", "cn"])))]
    Revoke(RevokeArgs),
    /// Write a signed CRL listing every revoked certificate.
    #[command(group(ArgGroup::new("destination").required(true).multiple(true).args(["out", "install_into"])))]
    Crl(CrlArgs),
}

/// Key algorithms the CA offers: the modern ones every TLS stack accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum KeyType {
    /// ECDSA on P-256, signing with SHA-256 (the default: small and fast).
    #[value(name = "ecdsa-p256")]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384, signing with SHA-384.
    #[value(name = "ecdsa-p384")]
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// RSA 3072 bits, signing with SHA-256 (for clients without ECDSA).
    #[value(name = "rsa-3072")]
    #[serde(rename = "rsa-3072")]
    Rsa3072,
}

impl KeyType {
    /// The signature algorithm a key of this type signs with.
    pub(crate) fn signature(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ECDSA-SHA256",
            KeyType::EcdsaP384 => "ECDSA-SHA384",
            KeyType::Rsa3072 => "RSA-SHA256",
        }
    }
}

impl Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::EcdsaP384 => "ECDSA P-384",
            KeyType::Rsa3072 => "RSA 3072",
        })
    }
}

/// `--install-into STORE --name CA_NAME`: where in a certificate store the
/// CA certificate (and CRL) go.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Certificate store of a (running) tlsgate: the CA certificate and CRL are written to STORE/ca/CA_NAME/.
    #[arg(long, value_name = "STORE", requires = "name")]
    install_into: Option<PathBuf>,
    /// Name of the CA certificate in the store (what a listener's mutual_auth.ca says).
    #[arg(long, value_name = "CA_NAME", requires = "install_into")]
    name: Option<String>,
}

/// Arguments of `ca init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The CA folder to create (or an empty existing one).
    #[arg(long, value_name = "D")]
    dir: PathBuf,
    /// The CA's common name, e.g. "Example Corp client CA".
    #[arg(long, value_name = "NAME")]
    cn: String,
    /// Key algorithm of the CA.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    key: KeyType,
    /// Validity of the CA certificate in days.
    #[arg(long, value_name = "N", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    #[command(flatten)]
    install: InstallArgs,
}

/// Arguments of `ca issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The CA folder (made by `ca init`).
    #[arg(long, value_name = "D")]
    dir: PathBuf,
    /// Common name of the certificate, e.g. a user or service name.
    #[arg(long, value_name = "NAME")]
    cn: String,
    /// Validity in days (never beyond the CA's own expiry).
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Output prefix: writes PREFIX.pem (certificate, then the CA) and PREFIX.key (0600).
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// Key algorithm of the new certificate.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    key: KeyType,
    /// Also write a PKCS#12 bundle (key, certificate, CA) for browsers and OS keychains.
    #[arg(long, value_name = "FILE", requires = "password_file")]
    p12: Option<PathBuf>,
    /// File holding the PKCS#12 password (one trailing newline is ignored).
    #[arg(long, value_name = "F", requires = "p12")]
    password_file: Option<PathBuf>,
    /// Issue a server certificate (serverAuth) instead of a client certificate.
    #[arg(long)]
    server: bool,
    /// DNS names (or IP addresses) of a server certificate; default: the common name.
    #[arg(long, value_name = "NAME", num_args = 1.., requires = "server")]
    dns: Vec<String>,
}

/// Arguments of `ca revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The CA folder.
    #[arg(long, value_name = "D")]
    dir: PathBuf,
    /// Serial number to revoke, hex (`openssl x509 -noout -serial` output works, colons allowed).
    #[arg(long, value_name = "S")]
    serial: Option<String>,
    /// Revoke every unrevoked certificate with this common name.
    #[arg(long, value_name = "NAME")]
    cn: Option<String>,
    /// Reason (RFC 5280 name).
    #[arg(long, value_name = "R", value_enum, ignore_case = true, default_value_t = Reason::Unspecified)]
    reason: Reason,
    /// Validity in days of the CRL written with --install-into.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    crl_days: u32,
    #[command(flatten)]
    install: InstallArgs,
}

/// Arguments of `ca crl`.
#[derive(Debug, Args)]
pub struct CrlArgs {
    /// The CA folder.
    #[arg(long, value_name = "D")]
    dir: PathBuf,
    /// Days until the CRL's nextUpdate; publish a new one before then.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Where to write the CRL (PEM).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    install: InstallArgs,
}

/// Revocation reasons (RFC 5280 §5.3.1). `certificateHold` is left out on
/// purpose: a hold is a temporary revocation, and this CA only revokes for
/// good (re-issue instead of un-revoking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Reason {
    /// No reason given (not written into the CRL entry, as RFC 5280 advises).
    #[value(name = "unspecified")]
    #[serde(rename = "unspecified")]
    Unspecified,
    /// The certificate's private key leaked.
    #[value(name = "keyCompromise", alias = "key-compromise")]
    #[serde(rename = "keyCompromise")]
    KeyCompromise,
    /// The CA's key leaked.
    #[value(name = "cACompromise", alias = "ca-compromise")]
    #[serde(rename = "cACompromise")]
    CaCompromise,
    /// The subject's name or affiliation changed.
    #[value(name = "affiliationChanged", alias = "affiliation-changed")]
    #[serde(rename = "affiliationChanged")]
    AffiliationChanged,
    /// A new certificate replaces this one.
    #[value(name = "superseded")]
    #[serde(rename = "superseded")]
    Superseded,
    /// The certificate is no longer needed.
    #[value(name = "cessationOfOperation", alias = "cessation-of-operation")]
    #[serde(rename = "cessationOfOperation")]
    CessationOfOperation,
    /// The subject is no longer allowed what the certificate granted.
    #[value(name = "privilegeWithdrawn", alias = "privilege-withdrawn")]
    #[serde(rename = "privilegeWithdrawn")]
    PrivilegeWithdrawn,
}

impl Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::CaCompromise => "cACompromise",
            Reason::AffiliationChanged => "affiliationChanged",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
            Reason::PrivilegeWithdrawn => "privilegeWithdrawn",
        })
    }
}

/// Exit code: refused or failed (SPEC §5's convention for `cert check`).
const EXIT_REFUSED: u8 = 1;
/// Exit code: usage or I/O error.
const EXIT_USAGE: u8 = 2;

/// Why a `ca` command stopped; decides the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 1: the request was understood but refused, or what was made did
    /// not pass validation (an unknown serial, an existing CA, a broken state).
    Refused(anyhow::Error),
    /// Exit 2: bad arguments, or a file that cannot be read or written.
    Usage(anyhow::Error),
}

impl Failure {
    /// A refusal with a message that says what is wrong and what to do.
    pub(crate) fn refused(message: impl Display) -> Failure {
        Failure::Refused(anyhow::anyhow!("{message}"))
    }

    /// A usage error with a message that says what is wrong and what to do.
    pub(crate) fn usage(message: impl Display) -> Failure {
        Failure::Usage(anyhow::anyhow!("{message}"))
    }
}

/// File errors arrive as `anyhow` errors with the path in their context;
/// they are I/O problems, hence exit 2.
impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::Usage(err)
    }
}

/// The result type of the `ca` commands.
pub(crate) type Outcome<T> = Result<T, Failure>;

/// Runs a `ca` subcommand and returns the process exit code.
pub fn run(command: CaCommand) -> ExitCode {
    let result = match command {
        CaCommand::Init(args) => authority::init(&args),
        CaCommand::Issue(args) => authority::issue(&args),
        CaCommand::Revoke(args) => crl::revoke(&args),
        CaCommand::Crl(args) => crl::crl(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(err)) => {
            eprintln!("tlsgate: {err:#}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Failure::Usage(err)) => {
            eprintln!("tlsgate: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
