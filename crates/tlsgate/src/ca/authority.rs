//! `ca init` and `ca issue`: the CA key and certificate, and the client and
//! server certificates it signs. Everything is made with rcgen and checked
//! with the validator before a byte is written, so what this tool hands out
//! is exactly what `tlsgate cert check` and the store accept.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_RSA_SHA256, RsaKeySize, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use tlsgate_validator::{self as validator, Kind, Options, Report, Request, Source, Summary};

use super::files::{
    create_dir, hex_upper, now, parent, random_serial, read, read_password, unix_now, with_suffix,
    write_atomic,
};
use super::state::{CaInfo, CaPaths, IssuedCert, LeafKind, State, rfc3339};
use super::{Failure, InitArgs, IssueArgs, KeyType, Outcome, install};

/// Certificates start an hour in the past, so a client or server whose
/// clock is a little behind does not see a "not yet valid" certificate.
const BACKDATE: Duration = Duration::hours(1);

/// RFC 5280's upper bound on a common name.
const MAX_CN_LEN: usize = 64;

/// A CA loaded from its folder, ready to sign.
pub(crate) struct Ca {
    /// Its files.
    pub paths: CaPaths,
    /// Its state.
    pub state: State,
    /// `ca.pem` as written by `ca init`.
    pub cert_pem: String,
    /// The CA certificate's DER.
    pub cert_der: Vec<u8>,
    /// Facts about the CA certificate (subject, validity, fingerprint).
    pub summary: Summary,
    /// The signer.
    pub issuer: Issuer<'static, KeyPair>,
}

/// Checks a common name: present, at most 64 characters, no control
/// characters (they would end up in logs and headers).
fn check_cn(cn: &str) -> Outcome<()> {
    if cn.trim().is_empty() {
        return Err(Failure::usage(
            "--cn is empty; give the name the certificate is for, e.g. --cn alice",
        ));
    }
    if cn.chars().count() > MAX_CN_LEN {
        return Err(Failure::usage(format!(
            "--cn {cn:?} is {} characters long; RFC 5280 allows at most {MAX_CN_LEN}",
            cn.chars().count()
        )));
    }
    if cn.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "--cn {cn:?} contains a control character; use printable text"
        )));
    }
    Ok(())
}

fn distinguished_name(cn: &str) -> DistinguishedName {
    // Only a CN: the OpenSSL recipes' C/ST/L/O fields carry nothing a
    // listener or backend uses, and the subject DN is what backends see.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn generate_key(key: KeyType) -> Outcome<KeyPair> {
    match key {
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
    }
    .map_err(|err| Failure::refused(format!("cannot generate a {key} key: {err}")))
}

/// Runs the validator over PEM text the way `tlsgate cert check` does.
/// What this tool makes with a key (a client certificate, a `--server` one
/// with its SANs and serverAuth by construction, or the CA itself) is
/// checked as [`Kind::Client`]: chain, key and validity, not the rules only
/// a served leaf needs, which a client certificate or a CA would fail.
fn validate(
    name: &str,
    cert: &[u8],
    key: Option<&[u8]>,
    password: Option<&str>,
    kind: Kind,
) -> Report {
    validator::check(&Request {
        certificate: Source { name, bytes: cert },
        private_key: key.map(|bytes| Source {
            name: "the generated key",
            bytes,
        }),
        password: password.map(str::as_bytes),
        options: Options {
            kind,
            strict: false,
            require_key: key.is_some() || password.is_some(),
            now: unix_now(),
            origin: validator::Origin::Cli,
        },
    })
}

/// Turns a validator report on something this tool just made into a
/// refusal when it has errors. Errors here mean a bug (or a clock far off),
/// so the message says to report it rather than to fix an input.
fn accept(what: &str, report: &Report) -> Outcome<()> {
    if report.ok() {
        return Ok(());
    }
    let findings: Vec<String> = report
        .errors
        .iter()
        .map(|err| format!("{}: {}", err.code(), err.message()))
        .collect();
    Err(Failure::refused(format!(
        "{what} did not pass validation, so nothing was written: {}; check the system clock, and report this if it is right",
        findings.join("; ")
    )))
}

/// Prints the validator's warnings (e.g. expiring soon) on stderr.
fn print_warnings(report: &Report) {
    for warning in &report.warnings {
        eprintln!("warning: {}: {}", warning.code(), warning.message());
    }
}

/// Refuses to overwrite a file this command would create.
fn refuse_existing(path: &Path, hint: &str) -> Outcome<()> {
    if path.exists() {
        return Err(Failure::refused(format!(
            "{} already exists; {hint}",
            path.display()
        )));
    }
    Ok(())
}

/// `tlsgate ca init`.
pub(crate) fn init(args: &InitArgs) -> Outcome<()> {
    check_cn(&args.cn)?;
    let target = install::Target::from_args(&args.install)?;
    let paths = CaPaths::new(&args.dir);
    for existing in [paths.key(), paths.cert(), paths.state()] {
        refuse_existing(
            &existing,
            &format!(
                "{} already holds a CA. Pick another --dir, or remove the folder to start over (that destroys the CA: certificates it issued can no longer be revoked)",
                args.dir.display()
            ),
        )?;
    }
    create_dir(&args.dir, true)?;

    let key = generate_key(args.key)?;
    let now = now();
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&args.cn);
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(args.days));
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    // pathLen 0: this CA signs end-entity certificates only, so a leaked
    // client key can never be used as an intermediate CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params
        .self_signed(&key)
        .map_err(|err| Failure::refused(format!("cannot sign the CA certificate: {err}")))?;
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();

    // The CA must pass `cert check --ca`, and its key must match it.
    let as_ca = validate(
        "the new CA certificate",
        cert_pem.as_bytes(),
        None,
        None,
        Kind::Ca,
    );
    accept("the new CA certificate", &as_ca)?;
    let with_key = validate(
        "the new CA certificate",
        cert_pem.as_bytes(),
        Some(key_pem.as_bytes()),
        None,
        Kind::Client,
    );
    accept("the new CA certificate and key", &with_key)?;
    let Some(summary) = as_ca.summary().cloned() else {
        return Err(Failure::refused(
            "the validator returned no summary for the new CA",
        ));
    };

    let state = State::new(CaInfo {
        cn: args.cn.clone(),
        key: args.key,
        sha256_fingerprint: summary.sha256_fingerprint.clone(),
        not_after: validator::rfc3339(summary.not_after),
    });
    // The key first: a CA certificate without its key is useless, a key
    // without a certificate is harmless and the next `init` refuses to
    // overwrite either.
    write_atomic(&paths.key(), key_pem.as_bytes(), true)?;
    write_atomic(&paths.cert(), cert_pem.as_bytes(), false)?;
    state.save(&paths)?;
    say!(
        "created CA \"{}\" ({}, signs with {}, valid until {}) in {}:",
        summary.subject,
        args.key,
        args.key.signature(),
        validator::rfc3339(summary.not_after),
        args.dir.display()
    );
    say!(
        "  {}  CA certificate (give it to listeners as mutual_auth.ca)",
        paths.cert().display()
    );
    say!(
        "  {}  CA key, mode 0600: keep it secret and back it up with the folder",
        paths.key().display()
    );
    say!(
        "  {}  issued serials and revocations",
        paths.state().display()
    );

    if let Some(target) = target {
        let ca = load(&args.dir)?;
        install::install(&ca, &target, None)?;
        say!(
            "a tlsgate serve watching {} uses it within a second for listeners with mutual_auth.ca = {:?}",
            target.store().display(),
            target.name()
        );
    }
    Ok(())
}

/// Loads the CA in `dir` and checks its key, certificate and state belong
/// together and the certificate is still valid.
pub(crate) fn load(dir: &Path) -> Outcome<Ca> {
    let paths = CaPaths::new(dir);
    if !paths.cert().exists() {
        return Err(Failure::usage(format!(
            "{} not found: {} is not a CA folder. Create one with `tlsgate ca init --dir {} --cn NAME`",
            paths.cert().display(),
            dir.display(),
            dir.display()
        )));
    }
    let cert_bytes = read(&paths.cert(), "CA certificate")?;
    let key_bytes = read(&paths.key(), "CA key")?;
    let state = State::load(&paths)?;
    let cert_name = paths.cert().display().to_string();
    let report = validate(
        &cert_name,
        &cert_bytes,
        Some(&key_bytes),
        None,
        Kind::Client,
    );
    if !report.ok() {
        let findings: Vec<String> = report
            .errors
            .iter()
            .map(|err| format!("{}: {}", err.code(), err.message()))
            .collect();
        return Err(Failure::refused(format!(
            "the CA in {} cannot sign: {}",
            dir.display(),
            findings.join("; ")
        )));
    }
    print_warnings(&report);
    let (Some(summary), Some(cert_der)) = (
        report.summary().cloned(),
        report
            .bundle
            .as_ref()
            .and_then(|bundle| bundle.chain().first())
            .map(|der| der.as_ref().to_vec()),
    ) else {
        return Err(Failure::refused(format!(
            "{} holds no certificate",
            paths.cert().display()
        )));
    };
    if summary.sha256_fingerprint != state.ca.sha256_fingerprint {
        return Err(Failure::refused(format!(
            "{} is not the CA certificate {} was made for (SHA-256 {} instead of {}); put the original ca.pem back",
            paths.cert().display(),
            paths.state().display(),
            summary.sha256_fingerprint,
            state.ca.sha256_fingerprint
        )));
    }
    let cert_pem = String::from_utf8(cert_bytes)
        .map_err(|_| Failure::refused(format!("{} is not PEM text", paths.cert().display())))?;
    let key_pem = String::from_utf8(key_bytes)
        .map_err(|_| Failure::refused(format!("{} is not PEM text", paths.key().display())))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|err| {
        Failure::refused(format!(
            "cannot load the CA key {}: {err}",
            paths.key().display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|err| {
        Failure::refused(format!(
            "cannot use {} as an issuer: {err}",
            paths.cert().display()
        ))
    })?;
    Ok(Ca {
        paths,
        state,
        cert_pem,
        cert_der,
        summary,
        issuer,
    })
}

/// A `--dns` value as a subjectAltName: an IP address, or a DNS name made
/// of letters, digits, `-` and `.`, with an optional leading `*.`.
fn san(value: &str) -> Outcome<SanType> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let host = value.strip_prefix("*.").unwrap_or(value);
    let valid = !host.is_empty()
        && value.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(Failure::usage(format!(
            "{value:?} is not a DNS name or IP address; give server names with --dns, e.g. --dns www.example.com --dns 10.0.0.5"
        )));
    }
    let name = value
        .to_ascii_lowercase()
        .try_into()
        .map_err(|err| Failure::usage(format!("{value:?} is not a DNS name: {err}")))?;
    Ok(SanType::DnsName(name))
}

/// Where `ca issue` writes.
struct Outputs {
    pem: PathBuf,
    key: PathBuf,
    p12: Option<PathBuf>,
}

/// `tlsgate ca issue`.
pub(crate) fn issue(args: &IssueArgs) -> Outcome<()> {
    check_cn(&args.cn)?;
    let kind = if args.server {
        LeafKind::Server
    } else {
        LeafKind::Client
    };
    let dns: Vec<String> = match (args.server, args.dns.is_empty()) {
        (true, true) => vec![args.cn.clone()],
        _ => args.dns.clone(),
    };
    let sans = dns
        .iter()
        .map(|value| san(value))
        .collect::<Outcome<Vec<_>>>()
        .map_err(|err| match err {
            Failure::Usage(err) if args.dns.is_empty() => Failure::usage(format!(
                "a server certificate needs names: {err:#} (it was taken from --cn; add --dns NAME)"
            )),
            other => other,
        })?;
    let outputs = Outputs {
        pem: with_suffix(&args.out, ".pem"),
        key: with_suffix(&args.out, ".key"),
        p12: args.p12.clone(),
    };
    for path in [Some(&outputs.pem), outputs.p12.as_ref()]
        .into_iter()
        .flatten()
    {
        // Checked up front: the state records the certificate before the
        // files are written, and should not record one that cannot be.
        if !parent(path).is_dir() {
            return Err(Failure::usage(format!(
                "the folder {} does not exist; create it or choose another --out / --p12",
                parent(path).display()
            )));
        }
    }
    let hint = "choose another --out (or --p12), or move the old file away first";
    refuse_existing(&outputs.pem, hint)?;
    refuse_existing(&outputs.key, hint)?;
    if let Some(p12) = &outputs.p12 {
        refuse_existing(p12, hint)?;
    }
    let password = args
        .password_file
        .as_deref()
        .map(read_password)
        .transpose()?;

    let mut ca = load(&args.dir)?;
    let now = now();
    let ca_not_after = OffsetDateTime::from_unix_timestamp(ca.summary.not_after)
        .map_err(|err| Failure::refused(format!("the CA's notAfter is out of range: {err}")))?;
    let wanted = now + Duration::days(i64::from(args.days));
    // A certificate that outlives its CA fails the day the CA expires
    // anyway; saying so now beats a surprise later.
    let not_after = if wanted > ca_not_after {
        eprintln!(
            "note: the CA expires on {}, so the certificate does too (not {} days from now)",
            rfc3339(ca_not_after),
            args.days
        );
        ca_not_after
    } else {
        wanted
    };
    let serial = loop {
        let candidate = random_serial()?;
        if !ca.state.knows_serial(&hex_upper(&candidate)) {
            break candidate;
        }
    };

    let key = generate_key(args.key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&args.cn);
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match kind {
        LeafKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
        LeafKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    params.subject_alt_names = sans;
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|err| Failure::refused(format!("cannot sign the certificate: {err}")))?;
    // Leaf then CA: `cert check` sees a complete chain, and the file is a
    // ready `cert.pem` for a server certificate folder.
    let chain_pem = format!("{}{}", cert.pem(), ca.cert_pem);
    let key_pem = key.serialize_pem();
    let report = validate(
        &outputs.pem.display().to_string(),
        chain_pem.as_bytes(),
        Some(key_pem.as_bytes()),
        None,
        Kind::Client,
    );
    accept("the new certificate", &report)?;
    print_warnings(&report);
    let Some(summary) = report.summary().cloned() else {
        return Err(Failure::refused(
            "the validator returned no summary for the new certificate",
        ));
    };
    let p12 = match (&outputs.p12, &password) {
        (Some(_), Some(password)) => Some(pkcs12(
            &args.cn,
            cert.der().as_ref(),
            &ca.cert_der,
            &key.serialize_der(),
            &summary.sha256_fingerprint,
            password,
        )?),
        _ => None,
    };

    // Recorded before the files are written: a certificate the state does
    // not know could never be revoked by --cn.
    ca.state.issued.push(IssuedCert {
        serial: hex_upper(&serial),
        cn: args.cn.clone(),
        kind,
        dns: if args.server { dns.clone() } else { Vec::new() },
        not_before: rfc3339(now - BACKDATE),
        not_after: rfc3339(not_after),
        revoked: None,
    });
    ca.state.save(&ca.paths)?;
    write_atomic(&outputs.key, key_pem.as_bytes(), true)?;
    write_atomic(&outputs.pem, chain_pem.as_bytes(), false)?;
    if let (Some(path), Some(bytes)) = (&outputs.p12, &p12) {
        write_atomic(path, bytes, true)?;
    }

    let what = match kind {
        LeafKind::Client => String::from("client certificate"),
        LeafKind::Server => format!("server certificate for {}", dns.join(", ")),
    };
    say!(
        "issued {what}: \"{}\" ({}), serial {}, valid until {}:",
        summary.subject,
        args.key,
        summary.serial,
        validator::rfc3339(summary.not_after)
    );
    say!("  {}  certificate, then the CA", outputs.pem.display());
    say!("  {}  private key, mode 0600", outputs.key.display());
    if let Some(path) = &outputs.p12 {
        say!(
            "  {}  PKCS#12 (key, certificate, CA; AES-256, mode 0600)",
            path.display()
        );
    }
    Ok(())
}

/// A PKCS#12 bundle: the key with the leaf and CA certificates, PBES2 /
/// AES-256-CBC with an HMAC-SHA256 MAC (what OpenSSL 3 writes by default;
/// the RC2/3DES of the old recipes is refused by OpenSSL 3 without
/// `-legacy`). Read back with the validator before it is returned.
fn pkcs12(
    cn: &str,
    leaf_der: &[u8],
    ca_der: &[u8],
    key_der: &[u8],
    fingerprint_hex: &str,
    password: &str,
) -> Outcome<Vec<u8>> {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
        PrivateKeyChain,
    };
    let failed = |err: p12_keystore::error::Error| {
        Failure::refused(format!("cannot build the PKCS#12 bundle: {err}"))
    };
    let key = PrivateKey::from_der(key_der).map_err(failed)?;
    let certs = [
        Certificate::from_der(leaf_der).map_err(failed)?,
        Certificate::from_der(ca_der).map_err(failed)?,
    ];
    // The localKeyId pairs the key with its certificate; the leaf's
    // fingerprint is unique and stable.
    let local_key_id: Vec<u8> = (0..fingerprint_hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(fingerprint_hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let chain = PrivateKeyChain::new(local_key_id.as_slice(), key, certs);
    let mut store = KeyStore::new();
    store.add_entry(cn, KeyStoreEntry::PrivateKeyChain(chain));
    let bytes = store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .write()
        .map_err(failed)?;
    let report = validate(
        "the new PKCS#12 bundle",
        &bytes,
        None,
        Some(password),
        Kind::Client,
    );
    accept("the new PKCS#12 bundle", &report)?;
    Ok(bytes)
}
