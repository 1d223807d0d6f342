//! `ca revoke` and `ca crl`: revocations recorded in the state, and the CRL
//! that carries them to listeners (R4). Every CRL gets the next cRLNumber,
//! thisUpdate = now and a nextUpdate, is signed with the CA key and checked
//! by the validator against the CA before it is written.

use std::path::Path;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use tlsgate_validator::{self as validator, Source};

use super::authority::{Ca, load};
use super::files::{now, write_atomic};
use super::install::{self, Target};
use super::state::{LeafKind, Revocation, normalize_serial, parse_time, rfc3339, same_serial};
use super::{CrlArgs, Failure, Outcome, Reason, RevokeArgs};

impl Reason {
    fn code(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::CaCompromise => RevocationReason::CaCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// Hex (as the state stores serials) to bytes.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    (0..padded.len() / 2)
        .map(|i| u8::from_str_radix(padded.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A CRL number as the shortest big-endian bytes.
fn number_bytes(number: u64) -> Vec<u8> {
    let bytes = number.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[first..].to_vec()
}

/// A signed, validated CRL.
pub(crate) struct SignedCrl {
    /// PEM (`-----BEGIN X509 CRL-----`).
    pub pem: String,
    /// How many certificates it lists.
    pub revoked: usize,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
}

/// Signs CRL number `number` listing every revocation in the state.
pub(crate) fn sign(ca: &Ca, number: u64, days: u32) -> Outcome<SignedCrl> {
    let now = now();
    let mut revoked_certs = Vec::new();
    for cert in &ca.state.issued {
        let Some(revocation) = &cert.revoked else {
            continue;
        };
        let serial = hex_bytes(&cert.serial).ok_or_else(|| {
            Failure::refused(format!(
                "the CA state {} holds the serial {:?}, which is not hex; restore it from your backup",
                ca.paths.state().display(),
                cert.serial
            ))
        })?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: parse_time(&revocation.at, &ca.paths)?,
            reason_code: Some(revocation.reason.code()),
            invalidity_date: None,
        });
    }
    let next_update = now + Duration::days(i64::from(days));
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update,
        crl_number: SerialNumber::from_slice(&number_bytes(number)),
        issuing_distribution_point: None,
        revoked_certs,
        // The CA's subjectKeyIdentifier was made with this method by `ca
        // init`, so the CRL's authorityKeyIdentifier matches it.
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params
        .signed_by(&ca.issuer)
        .and_then(|crl| crl.pem())
        .map_err(|err| Failure::refused(format!("cannot sign the CRL: {err}")))?;
    validator::check_crls(
        &Source {
            name: "the new CRL",
            bytes: pem.as_bytes(),
        },
        &[&ca.cert_der],
    )
    .map_err(|errors| {
        let findings: Vec<String> = errors.iter().map(|e| e.message().to_string()).collect();
        Failure::refused(format!(
            "the new CRL did not pass validation, so nothing was written: {}; report this",
            findings.join("; ")
        ))
    })?;
    Ok(SignedCrl {
        pem,
        revoked: params.revoked_certs.len(),
        next_update,
    })
}

/// Signs the next CRL, records its number, and installs it when asked.
fn publish(ca: &mut Ca, days: u32, target: Option<&Target>) -> Outcome<SignedCrl> {
    let number = ca.state.take_crl_number();
    let crl = sign(ca, number, days)?;
    // The number is spent before the CRL leaves this process: two CRLs
    // with one number would make "the newer CRL" ambiguous.
    ca.state.save(&ca.paths)?;
    if let Some(target) = target {
        install::install(ca, target, Some(&crl.pem)).map_err(|err| {
            let hint = format!(
                "\nthe state is saved; retry with `tlsgate ca crl --dir {} --install-into {} --name {}`",
                ca.paths.dir.display(),
                target.store().display(),
                target.name()
            );
            match err {
                Failure::Refused(err) => Failure::Refused(err.context(hint)),
                Failure::Usage(err) => Failure::Usage(err.context(hint)),
            }
        })?;
    }
    say!(
        "CRL number {number} of \"{}\": {} revoked certificate(s), next update {}",
        ca.summary.subject,
        crl.revoked,
        rfc3339(crl.next_update)
    );
    Ok(crl)
}

/// Reminder printed with every CRL: an expired CRL is still enforced but
/// logged, and refuses everyone under `expired_crl = "reject-all"`.
fn renewal_hint(ca: &Ca, crl: &SignedCrl, target: Option<&Target>, out: Option<&Path>) {
    let mut destination = String::new();
    if let Some(target) = target {
        destination.push_str(&format!(
            " --install-into {} --name {}",
            target.store().display(),
            target.name()
        ));
    }
    if let Some(out) = out {
        destination.push_str(&format!(" --out {}", out.display()));
    }
    say!(
        "publish a new CRL before {} (an expired CRL is still enforced but logged as expired; e.g. daily from cron: tlsgate ca crl --dir {}{destination})",
        rfc3339(crl.next_update),
        ca.paths.dir.display()
    );
}

/// `tlsgate ca revoke`.
pub(crate) fn revoke(args: &RevokeArgs) -> Outcome<()> {
    let target = Target::from_args(&args.install)?;
    let serial = match &args.serial {
        Some(raw) => Some(normalize_serial(raw).ok_or_else(|| {
            Failure::usage(format!(
                "--serial {raw:?} is not a hexadecimal serial number; `openssl x509 -noout -serial -in CERT` prints one"
            ))
        })?),
        None => None,
    };
    let mut ca = load(&args.dir)?;
    let matching: Vec<usize> = ca
        .state
        .issued
        .iter()
        .enumerate()
        .filter(|(_, cert)| match (&serial, &args.cn) {
            (Some(serial), _) => same_serial(&cert.serial, serial),
            (None, Some(cn)) => cert.cn == *cn,
            (None, None) => false,
        })
        .map(|(index, _)| index)
        .collect();
    if matching.is_empty() {
        let which = match (&serial, &args.cn) {
            (Some(serial), _) => format!("serial {serial}"),
            (None, Some(cn)) => format!("common name {cn:?}"),
            (None, None) => "that".into(),
        };
        return Err(Failure::refused(format!(
            "the CA in {} has issued no certificate with {which} ({} issued; see {}); `openssl x509 -noout -serial -subject -in CERT` shows a certificate's serial and name",
            args.dir.display(),
            ca.state.issued.len(),
            ca.paths.state().display()
        )));
    }

    let at = rfc3339(now());
    let mut newly = Vec::new();
    for &index in &matching {
        if let Some(cert) = ca.state.issued.get_mut(index) {
            if cert.revoked.is_none() {
                cert.revoked = Some(Revocation {
                    at: at.clone(),
                    reason: args.reason,
                });
                newly.push(index);
            }
        }
    }
    let describe = |index: &usize| {
        ca.state
            .issued
            .get(*index)
            .map(|cert| {
                let kind = match cert.kind {
                    LeafKind::Client => "client",
                    LeafKind::Server => "server",
                };
                format!(
                    "  {} CN={} ({kind}, valid until {})",
                    cert.serial, cert.cn, cert.not_after
                )
            })
            .unwrap_or_default()
    };
    if newly.is_empty() {
        say!(
            "nothing to revoke: {} matching certificate(s) already revoked",
            matching.len()
        );
        for index in &matching {
            say!("{}", describe(index));
        }
    } else {
        say!(
            "revoked {} certificate(s) (reason {}):",
            newly.len(),
            args.reason
        );
        for index in &newly {
            say!("{}", describe(index));
        }
    }

    match &target {
        Some(target) => {
            let crl = publish(&mut ca, args.crl_days, Some(target))?;
            say!(
                "a tlsgate serve watching {} refuses the revoked certificate(s) within a second, resumed sessions included",
                target.store().display()
            );
            renewal_hint(&ca, &crl, Some(target), None);
        }
        None if newly.is_empty() => {}
        None => {
            ca.state.save(&ca.paths)?;
            say!(
                "listeners still accept it until they get a new CRL: run `tlsgate ca crl --dir {} --out FILE` or add --install-into STORE --name CA_NAME",
                args.dir.display()
            );
        }
    }
    Ok(())
}

/// `tlsgate ca crl`.
pub(crate) fn crl(args: &CrlArgs) -> Outcome<()> {
    let target = Target::from_args(&args.install)?;
    let mut ca = load(&args.dir)?;
    let crl = publish(&mut ca, args.days, target.as_ref())?;
    if let Some(out) = &args.out {
        write_atomic(out, crl.pem.as_bytes(), false)?;
        say!("wrote {}", out.display());
    }
    renewal_hint(&ca, &crl, target.as_ref(), args.out.as_deref());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_serials_encode_minimally() {
        assert_eq!(number_bytes(0), vec![0]);
        assert_eq!(number_bytes(1), vec![1]);
        assert_eq!(number_bytes(0x1_00), vec![1, 0]);
        assert_eq!(hex_bytes("0A1B"), Some(vec![0x0a, 0x1b]));
        assert_eq!(hex_bytes("A1B"), Some(vec![0x0a, 0x1b]));
        assert_eq!(hex_bytes("XY"), None);
    }
}
