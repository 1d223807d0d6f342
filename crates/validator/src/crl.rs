//! Certificate revocation lists for CA bundles (SPEC R4): parsed, and
//! checked to be signed by a CA of the bundle they sit beside, so a CRL
//! from the wrong CA is refused on load instead of silently revoking nothing.

use rustls_pki_types::CertificateRevocationListDer;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::cert::{ParsedCert, spki_parts};
use crate::pem;
use crate::{Error, Source, chain, rfc4514};

/// One CRL, verified against its CA.
#[derive(Debug, Clone)]
pub struct Crl {
    /// The CRL's DER, for the client-certificate verifier.
    pub der: CertificateRevocationListDer<'static>,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds, when present.
    pub next_update: Option<i64>,
    /// Number of revoked certificates listed.
    pub revoked: usize,
}

/// Parses the CRLs in `source` (PEM with one or more `X509 CRL` blocks, or
/// one DER CRL) and checks each is signed by one of `ca_certs` (DER).
pub fn check_crls(source: &Source<'_>, ca_certs: &[&[u8]]) -> Result<Vec<Crl>, Vec<Error>> {
    let name = source.name;
    let mut errors = Vec::new();
    let mut ders: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(note) = pem::utf16_note(source.bytes) {
        return Err(vec![Error::InvalidCertificateFormat(format!(
            "{name} cannot be read as a CRL: {note}"
        ))]);
    }
    if pem::is_pem(source.bytes) {
        let scanned = pem::scan(source.bytes);
        for bad in scanned.malformed {
            // Every detail already says which line it is about.
            errors.push(Error::InvalidCertificateFormat(format!(
                "{name}: {}",
                bad.detail
            )));
        }
        for block in scanned.blocks {
            if block.label == "X509 CRL" {
                ders.push((format!("the CRL in {name} ({})", block.place()), block.der));
            } else {
                errors.push(Error::InvalidCertificateFormat(format!(
                    "{name} {} holds \"{}\"; a CRL file holds X509 CRL blocks only",
                    block.place(),
                    block.label
                )));
            }
        }
    } else {
        ders.push((format!("the DER CRL in {name}"), source.bytes.to_vec()));
    }
    if ders.is_empty() && errors.is_empty() {
        errors.push(Error::InvalidCertificateFormat(format!(
            "{name} holds no CRL (-----BEGIN X509 CRL-----)"
        )));
    }

    let cas: Vec<ParsedCert> = ca_certs
        .iter()
        .enumerate()
        .filter_map(|(i, der)| ParsedCert::parse(der.to_vec(), format!("CA {}", i + 1)).ok())
        .collect();
    let mut crls = Vec::new();
    for (origin, der) in ders {
        let (issuer_raw, facts) = match CertificateRevocationList::from_der(&der) {
            Ok((_, crl)) => (
                crl.issuer().as_raw().to_vec(),
                Crl {
                    issuer: rfc4514::format_name(crl.issuer()),
                    this_update: crl.last_update().timestamp(),
                    next_update: crl.next_update().map(|t| t.timestamp()),
                    revoked: crl.iter_revoked_certificates().count(),
                    der: CertificateRevocationListDer::from(der.clone()),
                },
            ),
            Err(err) => {
                errors.push(Error::InvalidCertificateFormat(format!(
                    "{origin} is not a valid CRL ({err}); regenerate it with your CA (`tlsgate ca crl` or `openssl ca -gencrl`)"
                )));
                continue;
            }
        };
        let issuers: Vec<&ParsedCert> = cas
            .iter()
            .filter(|ca| ca.subject_raw == issuer_raw)
            .collect();
        let verified = issuers.iter().any(|ca| {
            spki_parts(&ca.spki, false).is_some_and(|(alg, bits)| chain::signed_by(&der, alg, bits))
        });
        if issuers.is_empty() {
            errors.push(Error::InvalidCertificateChain(format!(
                "{origin} was issued by \"{}\", which is not a CA of this bundle; put each CRL beside the CA that signed it",
                facts.issuer
            )));
        } else if !verified {
            errors.push(Error::InvalidCertificateChain(format!(
                "the signature of {origin} does not verify with the key of \"{}\": it was signed by another CA with the same name; regenerate it with the right CA",
                facts.issuer
            )));
        } else {
            crls.push(facts);
        }
    }
    if errors.is_empty() {
        Ok(crls)
    } else {
        Err(errors)
    }
}
