//! Turns input bytes into certificates and keys, whatever the container:
//! PEM (any number of blocks, with text around them), DER, PKCS#7 (PEM or
//! DER) and PKCS#12 (SPEC R22, R23, R29a).

use crate::algorithm::tlv;
use crate::cert::ParsedCert;
use crate::key::{self, ParsedKey};
use crate::pem::{self, Block};
use crate::{Error, Origin, Source};

/// signedData, the PKCS#7 content type that carries certificates.
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// data, the content type of a PKCS#12 authSafe.
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

/// What the certificate input held.
#[derive(Debug, Default)]
pub(crate) struct DecodedCertificates {
    /// Certificates in input order (duplicates removed).
    pub certs: Vec<ParsedCert>,
    /// True when the order of `certs` is the user's (PEM certificate blocks),
    /// false for sets (PKCS#7, PKCS#12) and single DER certificates.
    pub ordered: bool,
    /// A key that came in the same input (PKCS#12, or a PEM with a key block).
    pub key: Option<ParsedKey>,
    /// The input held a key that could not be read (already reported).
    pub key_failed: bool,
    /// Errors found while decoding.
    pub errors: Vec<Error>,
    /// Warnings found while decoding (duplicates).
    pub warnings: Vec<Error>,
    /// Departures from canonical PEM in the certificate input.
    pub non_canonical: Vec<String>,
}

/// Decodes the certificate input.
pub(crate) fn certificates(
    source: &Source<'_>,
    password: Option<&[u8]>,
    origin: Origin,
) -> DecodedCertificates {
    let mut out = DecodedCertificates::default();
    let name = source.name;
    if pem::is_blank(source.bytes) {
        out.errors.push(Error::InvalidCertificateFormat(format!(
            "{name} is empty; it should hold the certificate (PEM, DER, PKCS#7 or PKCS#12)"
        )));
        return out;
    }
    if let Some(note) = pem::utf16_note(source.bytes) {
        out.errors.push(Error::InvalidCertificateFormat(format!(
            "{name} cannot be read as a certificate: {note}"
        )));
        return out;
    }
    if pem::is_pem(source.bytes) {
        from_pem(source, password, origin, &mut out);
    } else {
        from_binary(source, password, origin, &mut out);
    }
    dedupe(&mut out);
    out
}

fn from_pem(
    source: &Source<'_>,
    password: Option<&[u8]>,
    origin: Origin,
    out: &mut DecodedCertificates,
) {
    let name = source.name;
    let scanned = pem::scan(source.bytes);
    for bad in &scanned.malformed {
        // Every detail already says which line (and column) it is about.
        out.errors.push(Error::InvalidCertificateFormat(format!(
            "{name}: {}",
            bad.detail
        )));
    }
    out.non_canonical = scanned.non_canonical;
    let ec_curve = scanned
        .blocks
        .iter()
        .find(|b| b.label == "EC PARAMETERS")
        .and_then(|b| key::ec_parameters_curve(&b.der));
    let mut keys = Vec::new();
    let mut sets = 0;
    let mut singles = 0;
    for block in &scanned.blocks {
        match block.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                singles += 1;
                // `openssl x509 -trustout` appends trust settings after the certificate.
                let der = tlv(&block.der).map_or(block.der.clone(), |(t, _)| t.whole.to_vec());
                let origin = format!(
                    "certificate {} in {name} at line {}",
                    out.certs.len() + 1,
                    block.line
                );
                push_cert(out, der, origin);
            }
            "PKCS7" | "PKCS #7 SIGNED DATA" | "CMS" => {
                sets += 1;
                pkcs7(&block.der, &format!("{name} ({})", block.place()), out);
            }
            label if key::is_key_label(label) => keys.push(block),
            "EC PARAMETERS" | "X509 CRL" => {}
            "DH PARAMETERS" | "X9.42 DH PARAMETERS" => out.errors.push(dh_parameters(name, block)),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                out.errors.push(Error::InvalidCertificateFormat(format!(
                    "{name} {} is a certificate signing request (CSR), not a certificate: send it to your CA and use the certificate it returns",
                    block.place()
                )));
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                out.errors.push(Error::InvalidCertificateFormat(format!(
                    "{name} {} is a bare public key, not a certificate; use the certificate your CA issued for it",
                    block.place()
                )));
            }
            other => out.errors.push(Error::InvalidCertificateFormat(format!(
                "{name} {} has the unknown label \"{other}\"; expected CERTIFICATE (or PKCS7)",
                block.place()
            ))),
        }
    }
    out.ordered = sets == 0 && singles > 1;
    match keys.as_slice() {
        [] => {}
        [block] => match key::from_pem(block, ec_curve.as_deref(), password, origin, name) {
            Ok(key) => out.key = Some(key),
            Err(err) => {
                out.key_failed = true;
                out.errors.push(err);
            }
        },
        many => out.errors.push(Error::InvalidPrivateKeyFormat(format!(
            "{name} holds {} private keys (blocks {}); keep only the key that belongs to the certificate",
            many.len(),
            many.iter()
                .map(|b| b.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
    if out.certs.is_empty() && out.errors.is_empty() {
        let labels: Vec<&str> = scanned.blocks.iter().map(|b| b.label.as_str()).collect();
        out.errors.push(Error::InvalidCertificateFormat(format!(
            "{name} holds no certificate (found: {}); give the certificate file (-----BEGIN CERTIFICATE-----)",
            if labels.is_empty() {
                "nothing readable".to_string()
            } else {
                labels.join(", ")
            }
        )));
    }
}

fn from_binary(
    source: &Source<'_>,
    password: Option<&[u8]>,
    origin: Origin,
    out: &mut DecodedCertificates,
) {
    let name = source.name;
    let bytes = source.bytes;
    let Some((outer, _)) = tlv(bytes).filter(|(t, _)| t.tag == 0x30) else {
        let hint = if bytes.is_ascii() {
            "it is text without a -----BEGIN CERTIFICATE----- line"
        } else {
            "it is not DER either"
        };
        out.errors.push(Error::InvalidCertificateFormat(format!(
            "{name} is not a certificate: {hint}; expected PEM, DER, PKCS#7 (.p7b) or PKCS#12 (.pfx/.p12)"
        )));
        return;
    };
    let first = tlv(outer.contents);
    match first {
        // PKCS#12: SEQUENCE { INTEGER 3, ContentInfo(data) ... }
        Some((version, rest))
            if version.tag == 0x02
                && version.contents == [3]
                && tlv(rest)
                    .and_then(|(ci, _)| tlv(ci.contents))
                    .is_some_and(|(oid, _)| oid.tag == 0x06 && oid.contents == OID_DATA) =>
        {
            pkcs12(bytes, password, origin, name, out);
        }
        // PKCS#7: ContentInfo { OID signedData, [0] ... }
        Some((oid, _)) if oid.tag == 0x06 && oid.contents == OID_SIGNED_DATA => {
            pkcs7(bytes, name, out);
        }
        _ => {
            if pkcs8::PrivateKeyInfoRef::try_from(bytes).is_ok()
                || pkcs1::RsaPrivateKeyRef::try_from(bytes).is_ok()
                || sec1::EcPrivateKey::try_from(bytes).is_ok()
            {
                out.errors.push(Error::InvalidCertificateFormat(format!(
                    "{name} is a DER private key, not a certificate; {}",
                    origin.key_goes_elsewhere()
                )));
                return;
            }
            let origin = format!("the DER certificate in {name}");
            push_cert(out, outer.whole.to_vec(), origin);
        }
    }
}

fn push_cert(out: &mut DecodedCertificates, der: Vec<u8>, origin: String) {
    match ParsedCert::parse(der, origin) {
        Ok(cert) => out.certs.push(cert),
        Err(err) => out.errors.push(err),
    }
}

/// Extracts the certificates of a PKCS#7 SignedData. Hand-split: only the
/// `certificates` field matters and the structure is fixed by RFC 5652.
fn pkcs7(der: &[u8], place: &str, out: &mut DecodedCertificates) {
    let certs = (|| {
        let (content_info, _) = tlv(der)?;
        let (oid, rest) = tlv(content_info.contents)?;
        if oid.contents != OID_SIGNED_DATA {
            return None;
        }
        let (explicit, _) = tlv(rest)?;
        let (signed_data, _) = tlv(explicit.contents)?;
        // version, digestAlgorithms, encapContentInfo, then [0] certificates.
        let (_, rest) = tlv(signed_data.contents)?;
        let (_, rest) = tlv(rest)?;
        let (_, mut rest) = tlv(rest)?;
        let mut found = Vec::new();
        while let Some((field, after)) = tlv(rest) {
            if field.tag == 0xa0 {
                let mut set = field.contents;
                while let Some((cert, after_cert)) = tlv(set) {
                    if cert.tag == 0x30 {
                        found.push(cert.whole.to_vec());
                    }
                    set = after_cert;
                }
            }
            rest = after;
        }
        Some(found)
    })();
    match certs {
        Some(certs) if !certs.is_empty() => {
            for (i, der) in certs.into_iter().enumerate() {
                let origin = format!("certificate {} of the PKCS#7 bundle in {place}", i + 1);
                push_cert(out, der, origin);
            }
        }
        Some(_) => out.errors.push(Error::InvalidCertificateFormat(format!(
            "the PKCS#7 bundle in {place} holds no certificates"
        ))),
        None => out.errors.push(Error::InvalidCertificateFormat(format!(
            "{place} is not a readable PKCS#7 SignedData structure; re-export it with `openssl pkcs7 -print_certs -in FILE -out chain.pem`"
        ))),
    }
}

fn pkcs12(
    der: &[u8],
    password: Option<&[u8]>,
    origin: Origin,
    name: &str,
    out: &mut DecodedCertificates,
) {
    // PKCS#12 passwords are text (BMPString); an export with no password uses "".
    let given = password.map(|p| String::from_utf8_lossy(p).into_owned());
    let archive = match p12_keystore::Pkcs12Archive::from_pkcs12(
        der,
        given.as_deref().unwrap_or(""),
    ) {
        Ok(archive) => archive,
        Err(p12_keystore::error::Error::MacError(_))
        | Err(p12_keystore::error::Error::UnpadError)
            if given.is_none() =>
        {
            out.errors.push(Error::EncryptedPrivateKey(format!(
                "{name} is a password-protected PKCS#12 file; {}",
                origin.encrypted_pkcs12_fix()
            )));
            return;
        }
        Err(p12_keystore::error::Error::MacError(_))
        | Err(p12_keystore::error::Error::UnpadError) => {
            out.errors.push(Error::InvalidPassword(format!(
                "the password does not open {name} (PKCS#12); {}",
                origin.wrong_password_fix()
            )));
            return;
        }
        Err(err) => {
            out.errors.push(Error::InvalidCertificateFormat(format!(
                "{name} looks like PKCS#12 but cannot be read ({err}); if it was made with an old tool, re-export it with `openssl pkcs12 -export` (OpenSSL 3 defaults) or convert it with `openssl pkcs12 -in FILE -nodes -legacy`"
            )));
            return;
        }
    };
    for (i, bag) in archive.certs.iter().enumerate() {
        let origin = format!("certificate {} of {name} (PKCS#12)", i + 1);
        push_cert(out, bag.cert.as_der().to_vec(), origin);
    }
    match archive.keys.as_slice() {
        [] => {}
        [bag] => {
            match key::from_pkcs8(
                bag.key.as_der(),
                format!("the private key in {name} (PKCS#12)"),
            ) {
                Ok(key) => out.key = Some(key),
                Err(err) => out.errors.push(err),
            }
        }
        many => out.errors.push(Error::InvalidPrivateKeyFormat(format!(
            "{name} (PKCS#12) holds {} private keys; export one certificate with its key",
            many.len()
        ))),
    }
    if archive.certs.is_empty() {
        out.errors.push(Error::InvalidCertificateFormat(format!(
            "{name} (PKCS#12) holds no certificate"
        )));
    }
}

fn dh_parameters(name: &str, block: &Block) -> Error {
    Error::DhParametersNotSupported(format!(
        "{name} {} holds DH PARAMETERS: tlsgate negotiates ECDHE key exchange only, so Diffie-Hellman parameters have no use here; remove the block (there is no equivalent of nginx's ssl_dhparam to configure)",
        block.place()
    ))
}

/// Removes repeated certificates, which some bundling scripts produce.
fn dedupe(out: &mut DecodedCertificates) {
    let mut kept: Vec<ParsedCert> = Vec::with_capacity(out.certs.len());
    for cert in std::mem::take(&mut out.certs) {
        if let Some(first) = kept.iter().find(|c| c.der == cert.der) {
            out.warnings.push(Error::InvalidCertificateChain(format!(
                "{} repeats {}; the copy was dropped",
                cert.origin, first.origin
            )));
        } else {
            kept.push(cert);
        }
    }
    out.certs = kept;
}

/// Decodes the private-key input.
pub(crate) fn private_key(
    source: &Source<'_>,
    password: Option<&[u8]>,
    origin: Origin,
) -> Result<ParsedKey, Error> {
    let name = source.name;
    if pem::is_blank(source.bytes) {
        return Err(Error::InvalidPrivateKeyFormat(format!(
            "{} is empty; it should hold the private key the certificate was issued for",
            key::file_phrase(name)
        )));
    }
    if let Some(note) = pem::utf16_note(source.bytes) {
        return Err(Error::InvalidPrivateKeyFormat(format!(
            "{} cannot be read: {note}",
            key::file_phrase(name)
        )));
    }
    if !pem::is_pem(source.bytes) {
        return key::from_der(source.bytes, password, origin, key::key_in(name, None));
    }
    let scanned = pem::scan(source.bytes);
    if let Some(block) = scanned
        .blocks
        .iter()
        .find(|b| b.label == "DH PARAMETERS" || b.label == "X9.42 DH PARAMETERS")
    {
        return Err(dh_parameters(name, block));
    }
    let ec_curve = scanned
        .blocks
        .iter()
        .find(|b| b.label == "EC PARAMETERS")
        .and_then(|b| key::ec_parameters_curve(&b.der));
    let keys: Vec<&Block> = scanned
        .blocks
        .iter()
        .filter(|b| key::is_key_label(&b.label))
        .collect();
    match keys.as_slice() {
        [block] => key::from_pem(block, ec_curve.as_deref(), password, origin, name),
        [] => {
            let mut reasons: Vec<String> = scanned
                .malformed
                .iter()
                // Every detail already says which line it is about.
                .map(|bad| bad.detail.clone())
                .collect();
            if reasons.is_empty() {
                let labels: Vec<&str> = scanned.blocks.iter().map(|b| b.label.as_str()).collect();
                reasons.push(format!("it holds {}", labels.join(", ")));
            }
            // The header is assembled so no tracked file carries a PEM
            // private-key marker; the message reads the same.
            let what = if key::is_description(name) {
                format!("{name} could not be read")
            } else {
                format!("no private key found in {name}")
            };
            Err(Error::InvalidPrivateKeyFormat(format!(
                concat!(
                    "{} ({}); expected a PEM block such as -----BEGIN ",
                    "PRIVATE KEY-----"
                ),
                what,
                reasons.join("; ")
            )))
        }
        many => Err(Error::InvalidPrivateKeyFormat(format!(
            "{name} holds {} private keys (PEM blocks {}); keep only the key that belongs to the certificate",
            many.len(),
            many.iter()
                .map(|b| b.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
