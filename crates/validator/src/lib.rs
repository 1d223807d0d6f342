//! # tlsgate-validator
//!
//! Pure parsing and validation of TLS certificates, chains and private keys
//! (SPEC §4). Bytes flow in ([`Request`]: certificate input, optional key,
//! optional password, options including the current time); a [`Report`]
//! flows out: every error and warning found, with SPEC error codes, a
//! summary of the leaf, and the material in canonical form ([`Bundle`]).
//!
//! The CLI (`tlsgate cert check|convert`), the admin API and the watched
//! certificate store all call [`check`], so they cannot disagree about what
//! a good certificate is. There is no I/O and no clock here: the caller
//! reads files and passes "now".

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod algorithm;
mod cert;
mod chain;
mod crl;
mod decode;
mod error;
mod key;
mod legacy_pem;
mod ocsp;
mod origin;
mod pem;
mod rfc4514;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

pub use algorithm::KeyAlgorithm;
pub use crl::{Crl, check_crls};
pub use error::Error;
pub use ocsp::{OcspProblem, OcspStatus, check_ocsp};
pub use origin::Origin;
pub use pem::encode as pem_encode;

use algorithm::{Verdict, weak_signature};
use cert::ParsedCert;

/// One input: the bytes and a name for messages (usually the file path).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// What to call this input in messages: a file path, e.g.
    /// `certs/www/cert.pem`, or, for input that is not a file, a description
    /// starting with "the " (the admin API's "the uploaded private key"), which
    /// messages use as it is rather than as "the private key in …".
    pub name: &'a str,
    /// The content.
    pub bytes: &'a [u8],
}

/// What the certificate is for (SPEC R15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A server certificate: leaf first, then intermediates; needs its key.
    Server,
    /// A CA bundle for verifying client certificates: CA certificates only.
    Ca,
    /// A certificate with its chain and key that is not served by a listener:
    /// a client certificate `tlsgate ca issue` made, or the CA checked with
    /// its own key. Judged as [`Kind::Server`] (chain, issuers, key, validity)
    /// without the rules only a server leaf needs (subjectAltName names,
    /// extendedKeyUsage serverAuth, the issuer-not-in-bundle warning).
    Client,
}

/// How strictly to judge.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Server certificate or CA bundle.
    pub kind: Kind,
    /// `--strict`: out-of-order chains, missing issuers and non-canonical PEM
    /// become errors (R25, R29).
    pub strict: bool,
    /// A server certificate without a key is an error (upload, store) rather
    /// than a warning (`cert check` without `--key`).
    pub require_key: bool,
    /// The current time; validity is judged against it.
    pub now: UnixTime,
    /// Where the input came from: hints name the flag, the JSON field or the
    /// file to fix.
    pub origin: Origin,
}

/// Everything [`check`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The certificate input (PEM, DER, PKCS#7, PKCS#12).
    pub certificate: Source<'a>,
    /// The private key input, if given separately.
    pub private_key: Option<Source<'a>>,
    /// Password for an encrypted key or a PKCS#12 file.
    pub password: Option<&'a [u8]>,
    /// How to judge.
    pub options: Options,
}

/// Facts about the leaf (or, for a CA bundle, the first CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// DNS names and IP addresses from subjectAltName.
    pub sans: Vec<String>,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// `RSA 2048`, `ECDSA P-256`, … (SPEC §5).
    pub key_algorithm: String,
    /// Number of certificates in the bundle.
    pub chain_length: usize,
    /// SHA-256 of the leaf's DER, lowercase hex without colons.
    pub sha256_fingerprint: String,
    /// Serial number, uppercase hex without colons.
    pub serial: String,
}

impl Summary {
    /// Days from `now` until notAfter: see [`days_left`].
    pub fn days_left(&self, now: UnixTime) -> i64 {
        days_left(self.not_after, unix_seconds(now))
    }
}

/// Days from `now` until `not_after` (unix seconds): while time is left,
/// a started day counts as a day (the ceiling); once notAfter has passed,
/// a started day past it counts too, so an expired certificate is -1 at
/// once, never 0. So "1 day left" means under a day, 0 only at the exact
/// second of notAfter, and any negative value means expired.
///
/// Rounding up while time is left: a certificate made with `-days 3650`
/// shows 3650 all through the day it was made, whichever second it is
/// looked at (with the floor it showed 3650 only in the very second it was
/// signed, and 3649 a second later). It agrees with the expiring-soon
/// warning, given exactly when this is 30 or less. `cert check`, the admin
/// API, `check-config` and the store's expiry warnings all use this.
pub fn days_left(not_after: i64, now: i64) -> i64 {
    let remaining = not_after.saturating_sub(now);
    if remaining >= 0 {
        // div_euclid rounds toward negative infinity; ceil(x / d) = -floor(-x / d).
        -(remaining.saturating_neg().div_euclid(86_400))
    } else {
        remaining.div_euclid(86_400)
    }
}

/// The decoded material in canonical order: the leaf first, then each issuer.
#[derive(Debug, Clone)]
pub struct Bundle {
    chain: Vec<CertificateDer<'static>>,
    /// Unencrypted PKCS#8 DER.
    key: Option<Vec<u8>>,
    key_algorithm: KeyAlgorithm,
    summary: Summary,
}

impl Bundle {
    /// The certificates, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key as unencrypted PKCS#8, when there is one.
    pub fn private_key(&self) -> Option<PrivateKeyDer<'static>> {
        self.key
            .as_ref()
            .map(|k| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.clone())))
    }

    /// The leaf's key algorithm (ECDSA vs RSA decides dual-certificate selection).
    pub fn key_algorithm(&self) -> &KeyAlgorithm {
        &self.key_algorithm
    }

    /// Facts about the leaf.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Canonical PEM of the chain: 64-character lines, leaf first, no blank lines.
    pub fn certificate_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| pem::encode("CERTIFICATE", c.as_ref()))
            .collect()
    }

    /// The key as PEM PKCS#8 (label `PRIVATE KEY`).
    pub fn private_key_pem(&self) -> Option<String> {
        self.key.as_ref().map(|k| pem::encode("PRIVATE KEY", k))
    }
}

/// A bundle that passed every check: the only thing the store and the
/// handshake are allowed to use.
#[derive(Debug, Clone)]
pub struct ValidatedBundle {
    bundle: Bundle,
    warnings: Vec<Error>,
}

impl ValidatedBundle {
    /// The validated material.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Warnings that did not prevent acceptance.
    pub fn warnings(&self) -> &[Error] {
        &self.warnings
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Problems that refuse the input.
    pub errors: Vec<Error>,
    /// Problems worth knowing that do not refuse it.
    pub warnings: Vec<Error>,
    /// The decoded material, whenever certificates could be decoded (even
    /// with policy errors such as expiry, so `cert convert` can still write it).
    pub bundle: Option<Bundle>,
}

impl Report {
    /// Accepted: no errors (warnings allowed).
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The leaf summary, whenever a leaf could be parsed.
    pub fn summary(&self) -> Option<&Summary> {
        self.bundle.as_ref().map(Bundle::summary)
    }

    /// The validated bundle when accepted; the report itself otherwise.
    pub fn into_validated(self) -> Result<ValidatedBundle, Box<Report>> {
        match self.bundle {
            Some(bundle) if self.errors.is_empty() => Ok(ValidatedBundle {
                bundle,
                warnings: self.warnings,
            }),
            bundle => Err(Box::new(Report { bundle, ..self })),
        }
    }
}

/// Collects findings, applying `--strict` in one place.
#[derive(Debug)]
pub(crate) struct Findings {
    strict: bool,
    errors: Vec<Error>,
    warnings: Vec<Error>,
}

impl Findings {
    fn error(&mut self, err: Error) {
        self.errors.push(err);
    }

    fn warning(&mut self, err: Error) {
        self.warnings.push(err);
    }

    /// A warning, or an error under `--strict`.
    fn strict(&mut self, err: Error) {
        if self.strict {
            self.errors.push(err);
        } else {
            self.warnings.push(err);
        }
    }
}

/// Days of validity left on a leaf at or below which a warning is given.
const EXPIRING_SOON_DAYS: i64 = 30;

/// Validates a certificate (and key) per SPEC §4. Never panics on input.
pub fn check(request: &Request<'_>) -> Report {
    let options = request.options;
    let now = unix_seconds(options.now);
    let mut findings = Findings {
        strict: options.strict,
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    let decoded = decode::certificates(&request.certificate, request.password, options.origin);
    findings.errors.extend(decoded.errors);
    findings.warnings.extend(decoded.warnings);
    let mut key_failed = decoded.key_failed;
    let key = match request.private_key {
        Some(source) => match decode::private_key(&source, request.password, options.origin) {
            Ok(key) => Some(key),
            Err(err) => {
                findings.error(err);
                key_failed = true;
                None
            }
        },
        None => decoded.key,
    };
    let certs = decoded.certs;
    if certs.is_empty() {
        return Report {
            errors: findings.errors,
            warnings: findings.warnings,
            bundle: None,
        };
    }

    if !decoded.non_canonical.is_empty() {
        findings.strict(Error::NonCanonicalPem(format!(
            "{} is not canonical PEM: {}; tlsgate reads it, but strict uploaders reject it — `tlsgate cert convert` writes the canonical form",
            request.certificate.name,
            decoded.non_canonical.join("; ")
        )));
    }

    let order = match options.kind {
        Kind::Server | Kind::Client => chain::order_server(
            &certs,
            key.as_ref(),
            decoded.ordered,
            options.origin,
            &mut findings,
        ),
        Kind::Ca => {
            chain::check_ca_links(&certs, &mut findings);
            (0..certs.len()).collect()
        }
    };
    let chain: Vec<&ParsedCert> = order.iter().filter_map(|&i| certs.get(i)).collect();
    let Some(&leaf) = chain.first() else {
        return Report {
            errors: findings.errors,
            warnings: findings.warnings,
            bundle: None,
        };
    };
    if options.kind != Kind::Ca {
        // A CA bundle's members are trust anchors, judged by R28 below.
        chain::check_issuers(&chain, &mut findings);
    }
    if options.kind == Kind::Server {
        leaf_usage_findings(leaf, &mut findings);
    }
    // A CA certificate signs certificates, not handshakes (`tlsgate ca`
    // checks a new CA with its key this way): keyCertSign alone is right.
    if options.kind != Kind::Ca && !leaf.is_ca {
        signing_usage_findings(leaf, options.kind, &mut findings);
    }

    match (&key, options.kind) {
        (Some(key), _) => {
            if key.matches(leaf) == Some(false) {
                let other = certs
                    .iter()
                    .find(|c| key.matches(c) == Some(true))
                    .map(|c| format!(" (it belongs to {} instead)", c.describe()))
                    .unwrap_or_default();
                findings.error(Error::KeyCertificateMismatch(format!(
                    "{} does not match the leaf certificate {}{other}; use the key that was generated with this certificate's request — after a renewal the old key often stays behind{}",
                    key.origin,
                    leaf.describe(),
                    options.origin.mismatch_note()
                )));
            }
            if key.algorithm != leaf.key_algorithm {
                key_algorithm_findings(&key.algorithm, &key.origin, &mut findings);
            }
        }
        // A key that was given but could not be read is already an error.
        (None, Kind::Server | Kind::Client) if request.private_key.is_none() && !key_failed => {
            let missing = Error::MissingPrivateKey(format!(
                "no private key was given for {}: {} cannot use a certificate without its key; {}",
                leaf.describe(),
                if options.kind == Kind::Client {
                    "a client"
                } else {
                    "the server"
                },
                options.origin.missing_key_fix()
            ));
            if options.require_key {
                findings.error(missing);
            } else {
                findings.warning(missing);
            }
        }
        (None, _) => {}
    }

    for (position, cert) in chain.iter().enumerate() {
        let place = format!("chain position {}: {}", position + 1, cert.describe());
        key_algorithm_findings(&cert.key_algorithm, &place, &mut findings);
        if let Some(digest) = weak_signature(&cert.signature_oid) {
            if !cert.is_self_issued() {
                findings.error(Error::WeakSignatureAlgorithm(format!(
                    "{place} is signed with {digest}, which browsers and TLS libraries refuse; ask the CA to reissue it with SHA-256 (e.g. `openssl ca -md sha256`, or `default_md = sha256` in openssl.cnf)"
                )));
            }
        }
        if now < cert.not_before {
            findings.error(Error::CertificateNotYetValid(format!(
                "{place} is not valid until {} (in {}); check the clock of the machine that issued it, or wait",
                rfc3339(cert.not_before),
                span(cert.not_before - now)
            )));
        }
        if now > cert.not_after {
            findings.error(Error::CertificateExpired(format!(
                "{place} expired on {} ({} ago); {}",
                rfc3339(cert.not_after),
                span(now - cert.not_after),
                if position == 0 {
                    "renew the certificate"
                } else {
                    "get the current intermediate certificate from your CA"
                }
            )));
        } else if (position == 0 || options.kind == Kind::Ca)
            && days_left(cert.not_after, now) <= EXPIRING_SOON_DAYS
        {
            // The count the summary, the API and the store show (R20), so
            // a certificate never has "10 days left" and expires "in 9 days".
            let days = days_left(cert.not_after, now);
            findings.warning(Error::CertificateExpiringSoon(format!(
                "{place} expires on {} ({days} day{} left); renew it soon",
                rfc3339(cert.not_after),
                if days == 1 { "" } else { "s" }
            )));
        }
        if options.kind != Kind::Ca && !cert.unhandled_critical.is_empty() {
            critical_extension_findings(cert, position + 1, &place, options.kind, &mut findings);
        }
        if options.kind == Kind::Ca && !cert.is_ca {
            findings.error(Error::NotACaCertificate(format!(
                "{place} is not a CA certificate (basicConstraints CA:TRUE is missing): mutual authentication needs the certificate of the CA that issued the client certificates, not a client or server certificate"
            )));
        }
    }

    if options.kind == Kind::Server
        && !leaf.is_self_issued()
        && !chain.get(1).is_some_and(|next| chain::issued(leaf, next))
        && !chain::issued_by_well_known_root(leaf)
    {
        findings.strict(Error::CertificateChainNotFound(format!(
            "{} was issued by \"{}\", which is neither in the bundle nor a well-known root: clients that do not already have that intermediate will fail to verify the certificate; append the intermediate certificate(s) after the leaf (your CA's \"fullchain\" or \"ca-bundle\" file)",
            leaf.describe(),
            leaf.issuer
        )));
    }

    let summary = Summary {
        subject: leaf.subject.clone(),
        issuer: leaf.issuer.clone(),
        sans: leaf.sans.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        key_algorithm: leaf.key_algorithm.to_string(),
        chain_length: chain.len(),
        sha256_fingerprint: leaf.fingerprint.clone(),
        serial: leaf.serial.clone(),
    };
    let bundle = Bundle {
        chain: chain
            .iter()
            .map(|c| CertificateDer::from(c.der.clone()))
            .collect(),
        key: key.map(|k| k.pkcs8),
        key_algorithm: leaf.key_algorithm.clone(),
        summary,
    };
    Report {
        errors: findings.errors,
        warnings: findings.warnings,
        bundle: Some(bundle),
    }
}

/// What a server leaf must say to be usable by TLS clients: a host name in
/// subjectAltName (clients do not match the CN) and, when it restricts its
/// purposes, serverAuth among them.
fn leaf_usage_findings(leaf: &ParsedCert, findings: &mut Findings) {
    if leaf.sans.is_empty() {
        let v1 = if leaf.version < 3 {
            format!(
                " (it is an X.509 v{} certificate, which has no extensions at all)",
                leaf.version
            )
        } else {
            String::new()
        };
        // Not strict-dependent: R29's strict rules are the cloud model's
        // format rules, and an OpenSSL-based client may still use the CN.
        findings.warning(Error::MissingSubjectAltName(format!(
            "{} names no host name or IP address in subjectAltName{v1}: browsers and rustls clients do not look at the CN, so they refuse it, and tlsgate can serve it only as a listener's default certificate (SNI lookup uses subjectAltName); reissue it with the names in subjectAltName: `openssl req -x509 … -addext \"subjectAltName=DNS:example.com\"`, or for `openssl x509 -req` an `-extfile` holding `subjectAltName=DNS:example.com`",
            leaf.describe()
        )));
    }
    if let Some(eku) = leaf.eku.as_ref().filter(|eku| !eku.server_auth) {
        let allows = if eku.purposes.is_empty() {
            "nothing".to_string()
        } else {
            eku.purposes.join(", ")
        };
        findings.error(Error::CertificateNotForServerAuth(format!(
            "{} has extendedKeyUsage {allows} without serverAuth: it is not a server certificate (a client certificate, as `tlsgate ca issue` makes without --server?), and every TLS client refuses it as one (\"unsuitable certificate purpose\"); reissue it with `extendedKeyUsage=serverAuth` (`tlsgate ca issue --server --dns NAME`, or `-addext extendedKeyUsage=serverAuth` / an `-extfile` line for openssl); to check it as the client certificate it is, `tlsgate cert check --client`",
            leaf.describe()
        )));
    }
}

/// A leaf whose keyUsage extension leaves out digitalSignature may not
/// sign, and with ECDHE (the only key exchange tlsgate offers, R5) the
/// server signs every handshake, as a client signs its CertificateVerify:
/// OpenSSL clients refuse such a server certificate ("ecc cert not for
/// signing" under TLS 1.2). Without a keyUsage extension every use is
/// allowed.
fn signing_usage_findings(leaf: &ParsedCert, kind: Kind, findings: &mut Findings) {
    let Some((false, usages)) = &leaf.key_usage else {
        return;
    };
    let usages = if usages.is_empty() {
        "no usage at all".to_string()
    } else {
        usages.clone()
    };
    let (role, signs) = if kind == Kind::Client {
        (
            "client",
            "a client signs its CertificateVerify message with its key in every mutual-TLS handshake, and servers that check keyUsage (OpenSSL-based ones) refuse it",
        )
    } else {
        (
            "server",
            "with ECDHE key exchange (the only kind tlsgate offers) the server signs every handshake with its key, and clients that check keyUsage refuse it (OpenSSL under TLS 1.2: \"ecc cert not for signing\")",
        )
    };
    // The same code as a server leaf without serverAuth: the certificate's
    // own usage extensions say it may not do what a TLS peer needs of it.
    findings.error(Error::CertificateNotForServerAuth(format!(
        "{} has keyUsage {usages} without digitalSignature, so it may not be used to sign: {signs}; reissue the {role} certificate with `keyUsage=critical,digitalSignature` (plus keyEncipherment for RSA if old clients need it), e.g. an -extfile line or `-addext keyUsage=critical,digitalSignature`",
        leaf.describe()
    )));
}

/// The policy extensions (certificatePolicies, policyMappings,
/// policyConstraints, inhibitAnyPolicy): OpenSSL and browsers process
/// them, rustls-webpki does not. RFC 5280 has CAs mark policyConstraints
/// and inhibitAnyPolicy critical, so bridge and government PKIs do.
const POLICY_EXTENSIONS: [&str; 4] = ["2.5.29.32", "2.5.29.33", "2.5.29.36", "2.5.29.54"];

/// A certificate with a critical extension that TLS libraries do not
/// process: they must refuse it (RFC 5280 §4.2). An extension no common
/// client processes is an error; a policy extension only rustls refuses
/// is an error for a client certificate (tlsgate's own handshake refuses
/// it) and a warning for a server chain (browsers and OpenSSL accept it).
/// A copy of a root at the end of the bundle only gets a warning: clients
/// use their own copy of a root, and rustls parses trust anchors ignoring
/// unknown critical extensions.
fn critical_extension_findings(
    cert: &ParsedCert,
    position: usize,
    place: &str,
    kind: Kind,
    findings: &mut Findings,
) {
    let role = chain::role(position, cert);
    let policy_only = cert.unhandled_critical.iter().all(|ext| {
        POLICY_EXTENSIONS
            .iter()
            .any(|oid| ext.split(' ').next() == Some(*oid))
    });
    let list = cert.unhandled_critical.join(", ");
    let plural = if cert.unhandled_critical.len() == 1 {
        "extension"
    } else {
        "extensions"
    };
    let finding = if policy_only {
        Error::InvalidCertificateChain(format!(
            "{place} ({role}) has the critical {plural} {list}, which rustls does not process and so refuses: rustls-based clients and tlsgate's own mutual-TLS handshake fail with UnsupportedCriticalExtension (OpenSSL and browsers process it); reissue it without that extension marked critical if those clients matter"
        ))
    } else {
        Error::InvalidCertificateChain(format!(
            "{place} ({role}) has the critical {plural} {list}, which TLS libraries do not process and so must refuse: rustls clients and tlsgate's own mutual-TLS handshake fail with UnsupportedCriticalExtension, OpenSSL with \"unhandled critical extension\"; reissue it without that extension marked critical (remove `critical,` from its line in the -extfile or openssl.cnf section), or without the extension"
        ))
    };
    let root_copy = position > 1 && cert.is_self_issued();
    if root_copy || (policy_only && kind == Kind::Server) {
        findings.strict(finding);
    } else {
        findings.error(finding);
    }
}

/// "a" or "an" before a name as it is read aloud: "an RSA", "an Ed25519",
/// "an EC", but "a DSA" (initialisms go by the sound of their first letter).
fn article(name: &str) -> &'static str {
    match name.chars().next() {
        Some(c) if "AEFHILMNORSXaeiou".contains(c) => "an",
        _ => "a",
    }
}

fn key_algorithm_findings(algorithm: &KeyAlgorithm, place: &str, findings: &mut Findings) {
    let a = article(&algorithm.to_string());
    match algorithm.verdict() {
        Verdict::Servable => {}
        Verdict::Weak => findings.error(Error::WeakKey(format!(
            "{place} uses {a} {algorithm}-bit key, which current TLS clients refuse; generate a new key of at least 2048 bits (`openssl genrsa -out key.pem 3072`, or ECDSA: `openssl ecparam -genkey -name prime256v1 -noout -out key.pem`) and get a new certificate for it"
        ))),
        Verdict::Unsupported => findings.error(Error::UnsupportedKeyAlgorithm(format!(
            "{place} uses {a} {algorithm} key; tlsgate serves RSA (2048-8192 bits) and ECDSA P-256, P-384 and P-521 only — generate a supported key and get a new certificate for it"
        ))),
    }
}

/// Unix seconds of a [`UnixTime`], saturating.
fn unix_seconds(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// A unix time as RFC 3339 (`2026-06-01T00:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

/// A duration in words for messages: "12 days", "5 hours".
fn span(seconds: i64) -> String {
    let days = seconds / 86_400;
    match days {
        0 => {
            let hours = seconds / 3_600;
            if hours == 1 {
                "1 hour".into()
            } else {
                format!("{hours} hours")
            }
        }
        1 => "1 day".into(),
        n => format!("{n} days"),
    }
}

/// The longest certificate name (SPEC R15).
pub const MAX_NAME_LEN: usize = 80;

/// A certificate name per SPEC R15: 1–80 characters from letters, digits,
/// `-` `/` `.` `_` `*`. A name is only a name: it never becomes a path by
/// itself (the store encodes it into a folder name), so `../x` is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateName(String);

impl CertificateName {
    /// Validates a name; `InvalidParameter` says which character or length is wrong.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let len = name.chars().count();
        if len == 0 || len > MAX_NAME_LEN {
            return Err(Error::InvalidParameter(format!(
                "certificate name {name:?} is {len} characters long; names have 1 to {MAX_NAME_LEN} characters"
            )));
        }
        if let Some((index, bad)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '.' | '_' | '*')))
        {
            return Err(Error::InvalidParameter(format!(
                "certificate name {name:?} has {bad:?} at position {}; names use letters, digits and - / . _ * only",
                index + 1
            )));
        }
        Ok(CertificateName(name.to_string()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CertificateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a (client) certificate names, for forwarding to backends (R12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// Serial number, uppercase hex without colons.
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex without colons.
    pub sha256_fingerprint: String,
}

/// Describes a certificate already accepted by the handshake; `None` when
/// the DER does not parse (it always does after a successful handshake).
pub fn peer_identity(der: &[u8]) -> Option<PeerIdentity> {
    let cert = ParsedCert::parse(der.to_vec(), "the client certificate".into()).ok()?;
    Some(PeerIdentity {
        subject: cert.subject,
        issuer: cert.issuer,
        serial: cert.serial,
        sha256_fingerprint: cert.fingerprint,
    })
}
