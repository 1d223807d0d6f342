//! Private keys in every encoding SPEC R23 lists, normalised to PKCS#8.
//!
//! Keys are decoded here, classified by [`KeyAlgorithm`], and — when the
//! algorithm is servable — loaded by the same aws-lc-rs signer the TLS
//! handshake uses, so "the validator accepted it" and "the server can sign
//! with it" cannot disagree.

use std::sync::Arc;

use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::{Decode as _, Encode as _, Tag, Tagged as _};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use rustls::sign::SigningKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::algorithm::{self, KeyAlgorithm, OID_EC, OID_RSA, Verdict};
use crate::cert::{ParsedCert, spki_parts};
use crate::pem::Block;
use crate::{Error, Origin, legacy_pem};

/// A decoded private key.
#[derive(Debug, Clone)]
pub(crate) struct ParsedKey {
    /// The key as unencrypted PKCS#8 DER (the canonical form).
    pub pkcs8: Vec<u8>,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Where it came from, for messages.
    pub origin: String,
    /// Public material to match against a certificate.
    public: Public,
}

/// What we know of the public half.
#[derive(Debug, Clone)]
enum Public {
    /// The public key bits as the TLS engine derived them (SPKI BIT STRING contents).
    EngineSpkiBits(Vec<u8>),
    /// RSA modulus from the PKCS#1 structure.
    RsaModulus(Vec<u8>),
    /// EC point from the SEC1 structure.
    EcPoint(Vec<u8>),
    /// Nothing usable (unsupported algorithm without a stored public key).
    Unknown,
}

impl ParsedKey {
    /// Does this key belong to `cert`? `None` when it cannot be told (an
    /// unsupported algorithm whose public half we cannot derive).
    pub fn matches(&self, cert: &ParsedCert) -> Option<bool> {
        match &self.public {
            Public::EngineSpkiBits(bits) => {
                spki_parts(&cert.spki, false).map(|(_, cert_bits)| cert_bits == bits.as_slice())
            }
            Public::RsaModulus(modulus) => Some(cert.rsa_modulus.as_ref() == Some(modulus)),
            Public::EcPoint(point) => {
                spki_parts(&cert.spki, false).map(|(_, cert_bits)| cert_bits == point.as_slice())
            }
            Public::Unknown => None,
        }
    }
}

/// Is a source name a description of the input ("the private key", as the
/// admin API names a request field) rather than a file path? Descriptions
/// start with "the " and are used as they are, so messages do not say "the
/// private key in the private key".
pub(crate) fn is_description(source: &str) -> bool {
    source.starts_with("the ")
}

/// How messages name the key in `source`: "the private key in key.pem
/// (PEM block 1 at line 1)", or for a description "the private key (PEM
/// block 1 at line 1)".
pub(crate) fn key_in(source: &str, place: Option<&str>) -> String {
    let mut out = if is_description(source) {
        source.to_string()
    } else {
        format!("the private key in {source}")
    };
    if let Some(place) = place {
        out.push_str(&format!(" ({place})"));
    }
    out
}

/// How messages name the key input as a whole: "the key file key.pem", or a
/// description as it is.
pub(crate) fn file_phrase(source: &str) -> String {
    if is_description(source) {
        source.to_string()
    } else {
        format!("the key file {source}")
    }
}

/// PEM labels that hold a private key.
pub(crate) fn is_key_label(label: &str) -> bool {
    matches!(
        label,
        "PRIVATE KEY"
            | "ENCRYPTED PRIVATE KEY"
            | "RSA PRIVATE KEY"
            | "EC PRIVATE KEY"
            | "DSA PRIVATE KEY"
            | "OPENSSH PRIVATE KEY"
            | "ANY PRIVATE KEY"
    )
}

/// Decodes one PEM key block. `ec_curve` is the curve named by a preceding
/// `EC PARAMETERS` block, which `openssl ecparam -genkey` writes before
/// SEC1 keys.
pub(crate) fn from_pem(
    block: &Block,
    ec_curve: Option<&str>,
    password: Option<&[u8]>,
    input: Origin,
    source: &str,
) -> Result<ParsedKey, Error> {
    let origin = key_in(source, Some(&block.place()));
    match block.label.as_str() {
        "PRIVATE KEY" | "ANY PRIVATE KEY" => from_pkcs8(&block.der, origin),
        "ENCRYPTED PRIVATE KEY" => from_encrypted_pkcs8(&block.der, password, input, origin),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
            let plain = match block.header("Proc-Type") {
                Some(proc_type) if proc_type.contains("ENCRYPTED") => {
                    let Some(password) = password else {
                        return Err(Error::EncryptedPrivateKey(format!(
                            "{origin} is encrypted (Proc-Type: 4,ENCRYPTED); {}",
                            input.encrypted_key_fix()
                        )));
                    };
                    let dek_info = block.header("DEK-Info").unwrap_or_default();
                    legacy_pem::decrypt(dek_info, password, &block.der).map_err(
                        |err| match err {
                            legacy_pem::LegacyPemError::WrongPassword => {
                                Error::InvalidPassword(format!(
                                    "the password does not decrypt {origin}; {}",
                                    input.wrong_password_fix()
                                ))
                            }
                            other => Error::InvalidPrivateKeyFormat(format!("{origin}: {other}")),
                        },
                    )?
                }
                _ => block.der.clone(),
            };
            if block.label == "RSA PRIVATE KEY" {
                from_pkcs1(&plain, origin)
            } else {
                from_sec1(&plain, ec_curve, origin)
            }
        }
        "DSA PRIVATE KEY" => Err(Error::UnsupportedKeyAlgorithm(format!(
            "{origin} is a DSA key; TLS servers need RSA (2048-8192 bits) or ECDSA P-256/P-384/P-521: create one with `openssl ecparam -genkey -name prime256v1 -noout -out key.pem` and get a new certificate for it"
        ))),
        "OPENSSH PRIVATE KEY" => Err(Error::InvalidPrivateKeyFormat(format!(
            "{origin} is an OpenSSH key, not a TLS key; convert it with `ssh-keygen -p -m PKCS8 -f FILE` or use the key your certificate was issued for"
        ))),
        other => Err(Error::InvalidPrivateKeyFormat(format!(
            "{source} {} holds \"{other}\", not a private key",
            block.place()
        ))),
    }
}

/// Decodes a DER key of unknown encoding: PKCS#8, encrypted PKCS#8, PKCS#1, SEC1.
pub(crate) fn from_der(
    der: &[u8],
    password: Option<&[u8]>,
    input: Origin,
    origin: String,
) -> Result<ParsedKey, Error> {
    if PrivateKeyInfoRef::try_from(der).is_ok() {
        return from_pkcs8(der, origin);
    }
    if EncryptedPrivateKeyInfoRef::try_from(der).is_ok() {
        return from_encrypted_pkcs8(der, password, input, origin);
    }
    if pkcs1::RsaPrivateKeyRef::try_from(der).is_ok() {
        return from_pkcs1(der, origin);
    }
    if sec1::EcPrivateKey::try_from(der).is_ok() {
        return from_sec1(der, None, origin);
    }
    Err(Error::InvalidPrivateKeyFormat(format!(
        "{origin} is neither PEM nor a DER private key (PKCS#8, PKCS#1 or SEC1); export the key as PEM, e.g. `openssl pkey -in KEY -out key.pem`"
    )))
}

fn from_encrypted_pkcs8(
    der: &[u8],
    password: Option<&[u8]>,
    input: Origin,
    origin: String,
) -> Result<ParsedKey, Error> {
    let Some(password) = password else {
        return Err(Error::EncryptedPrivateKey(format!(
            "{origin} is encrypted (ENCRYPTED PRIVATE KEY); {}",
            input.encrypted_key_fix()
        )));
    };
    if let Some(result) = pkcs12_pbe::decrypt(der, password) {
        return match result {
            Ok(plain) => from_pkcs8(&plain, origin),
            Err(pkcs12_pbe::Failure::WrongPassword) => Err(Error::InvalidPassword(format!(
                "the password does not decrypt {origin}; {}",
                input.wrong_password_fix()
            ))),
            Err(pkcs12_pbe::Failure::Unsupported(scheme)) => {
                Err(Error::InvalidPrivateKeyFormat(format!(
                    "{origin} is encrypted with {scheme}, which tlsgate does not support; re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out key.pem`, or decrypt it with `openssl pkey -in KEY -out key.pem`"
                )))
            }
        };
    }
    let info = EncryptedPrivateKeyInfoRef::try_from(der).map_err(|err| {
        Error::InvalidPrivateKeyFormat(format!(
            "{origin} is not a valid encrypted PKCS#8 structure ({err})"
        ))
    })?;
    match info.decrypt(password) {
        Ok(plain) => from_pkcs8(plain.as_bytes(), origin),
        Err(pkcs8::Error::EncryptedPrivateKey(
            err @ (pkcs5::Error::UnsupportedAlgorithm { .. }
            | pkcs5::Error::NoPbes1CryptSupport
            | pkcs5::Error::AlgorithmParametersInvalid { .. }),
        )) => Err(Error::InvalidPrivateKeyFormat(format!(
            "{origin} is encrypted with a scheme tlsgate does not support ({err}); re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out key.pem`, or decrypt it with `openssl pkey -in KEY -out key.pem`"
        ))),
        // A wrong password fails the padding check, or (1 time in 256)
        // passes it and yields bytes that are not a key.
        Err(_) => Err(Error::InvalidPassword(format!(
            "the password does not decrypt {origin}; {}",
            input.wrong_password_fix()
        ))),
    }
}

/// Decodes unencrypted PKCS#8.
pub(crate) fn from_pkcs8(der: &[u8], origin: String) -> Result<ParsedKey, Error> {
    let info = PrivateKeyInfoRef::try_from(der).map_err(|err| {
        Error::InvalidPrivateKeyFormat(format!("{origin} is not valid PKCS#8 ({err})"))
    })?;
    let oid = info.algorithm.oid.to_string();
    let inner = info.private_key.as_bytes();
    match oid.as_str() {
        OID_RSA => {
            let rsa = pkcs1::RsaPrivateKeyRef::try_from(inner).map_err(|err| {
                Error::InvalidPrivateKeyFormat(format!(
                    "{origin}: the RSA key inside the PKCS#8 wrapper is malformed ({err})"
                ))
            })?;
            let modulus = rsa.modulus.as_bytes().to_vec();
            let algorithm = KeyAlgorithm::Rsa {
                bits: algorithm::bit_length(&modulus),
            };
            finish(der.to_vec(), algorithm, Public::RsaModulus(modulus), origin)
        }
        OID_EC => {
            let explicit = info
                .algorithm
                .parameters
                .is_some_and(|params| params.tag() == Tag::Sequence);
            if explicit || has_explicit_curve(inner) {
                return Err(explicit_curve(&origin));
            }
            let sec1 = sec1::EcPrivateKey::try_from(inner).map_err(|err| {
                Error::InvalidPrivateKeyFormat(format!(
                    "{origin}: the EC key inside the PKCS#8 wrapper is malformed ({err})"
                ))
            })?;
            let curve = info
                .algorithm
                .parameters
                .map(|params| {
                    curve_of_any(params.tag(), params.decode_as::<ObjectIdentifier>().ok())
                })
                .or_else(|| sec1_curve(&sec1));
            let algorithm = KeyAlgorithm::classify(OID_EC, curve.as_deref(), None);
            let public = sec1
                .public_key
                .map_or(Public::Unknown, |point| Public::EcPoint(point.to_vec()));
            finish(der.to_vec(), algorithm, public, origin)
        }
        _ => {
            let curve = info.algorithm.parameters.map(|params| {
                curve_of_any(params.tag(), params.decode_as::<ObjectIdentifier>().ok())
            });
            let algorithm = KeyAlgorithm::classify(&oid, curve.as_deref(), None);
            finish(der.to_vec(), algorithm, Public::Unknown, origin)
        }
    }
}

fn from_pkcs1(der: &[u8], origin: String) -> Result<ParsedKey, Error> {
    let rsa = pkcs1::RsaPrivateKeyRef::try_from(der).map_err(|err| {
        Error::InvalidPrivateKeyFormat(format!(
            "{origin} is not a valid PKCS#1 RSA key ({err}); the file may be truncated"
        ))
    })?;
    let modulus = rsa.modulus.as_bytes().to_vec();
    let algorithm = KeyAlgorithm::Rsa {
        bits: algorithm::bit_length(&modulus),
    };
    let null = Any::null();
    let pkcs8 = wrap_pkcs8(OID_RSA, Some(null), der, &origin)?;
    finish(pkcs8, algorithm, Public::RsaModulus(modulus), origin)
}

fn from_sec1(der: &[u8], ec_curve: Option<&str>, origin: String) -> Result<ParsedKey, Error> {
    if has_explicit_curve(der) {
        return Err(explicit_curve(&origin));
    }
    let sec1 = sec1::EcPrivateKey::try_from(der).map_err(|err| {
        Error::InvalidPrivateKeyFormat(format!(
            "{origin} is not a valid SEC1 EC key ({err}); the file may be truncated"
        ))
    })?;
    let curve = sec1_curve(&sec1).or_else(|| ec_curve.map(str::to_string));
    let algorithm = KeyAlgorithm::classify(OID_EC, curve.as_deref(), None);
    let public = sec1
        .public_key
        .map_or(Public::Unknown, |point| Public::EcPoint(point.to_vec()));
    let params = match curve.as_deref() {
        Some(oid) if oid != "explicit" => <ObjectIdentifier>::new(oid)
            .ok()
            .and_then(|oid| Any::encode_from(&oid).ok()),
        _ => None,
    };
    let pkcs8 = wrap_pkcs8(OID_EC, params, der, &origin)?;
    finish(pkcs8, algorithm, public, origin)
}

fn sec1_curve(key: &sec1::EcPrivateKey<'_>) -> Option<String> {
    key.parameters.as_ref().map(|params| match params {
        sec1::EcParameters::NamedCurve(oid) => oid.to_string(),
    })
}

fn curve_of_any(tag: Tag, oid: Option<ObjectIdentifier>) -> String {
    match (tag, oid) {
        (Tag::ObjectIdentifier, Some(oid)) => oid.to_string(),
        _ => "explicit".to_string(),
    }
}

/// Wraps a PKCS#1 or SEC1 key in a PKCS#8 PrivateKeyInfo.
fn wrap_pkcs8(
    oid: &str,
    params: Option<Any>,
    inner: &[u8],
    origin: &str,
) -> Result<Vec<u8>, Error> {
    let fail = |err: der::Error| {
        Error::InvalidPrivateKeyFormat(format!(
            "{origin} could not be re-encoded as PKCS#8 ({err})"
        ))
    };
    let oid = <ObjectIdentifier>::new(oid).map_err(|err| fail(err.into()))?;
    let info = pkcs8::PrivateKeyInfo::<Any, OctetString, der::asn1::BitString> {
        algorithm: pkcs8::spki::AlgorithmIdentifier {
            oid,
            parameters: params,
        },
        private_key: OctetString::new(inner).map_err(fail)?,
        public_key: None,
    };
    info.to_der().map_err(fail)
}

/// Loads servable keys into the TLS engine to prove they can sign and to
/// get their public half; other keys keep what their structure told us.
fn finish(
    pkcs8: Vec<u8>,
    algorithm: KeyAlgorithm,
    public: Public,
    origin: String,
) -> Result<ParsedKey, Error> {
    let public = if algorithm.verdict() == Verdict::Servable {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_slice()));
        let signer: Arc<dyn SigningKey> = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
            .map_err(|err| {
                Error::InvalidPrivateKeyFormat(format!(
                    "{origin} ({algorithm}) is not a usable key: the TLS engine refused it ({err}); the key file may be corrupted"
                ))
            })?;
        signer
            .public_key()
            .and_then(|spki| {
                spki_parts(spki.as_ref(), false)
                    .or_else(|| spki_parts(spki.as_ref(), true))
                    .map(|(_, bits)| Public::EngineSpkiBits(bits.to_vec()))
            })
            .unwrap_or(public)
    } else {
        public
    };
    Ok(ParsedKey {
        pkcs8,
        algorithm,
        origin,
        public,
    })
}

/// Decodes an `EC PARAMETERS` block (a named-curve OID) into a dotted OID.
pub(crate) fn ec_parameters_curve(der: &[u8]) -> Option<String> {
    <ObjectIdentifier>::from_der(der)
        .ok()
        .map(|oid| oid.to_string())
}

/// An ECPrivateKey whose `[0] parameters` is a SEQUENCE (explicit curve
/// parameters, `openssl ecparam -param_enc explicit`) rather than a
/// named-curve OID. The sec1 crate cannot parse these at all, so detect them
/// first and give the right verdict (R24) instead of "malformed".
fn has_explicit_curve(der: &[u8]) -> bool {
    use crate::algorithm::tlv;
    let Some((outer, _)) = tlv(der) else {
        return false;
    };
    let mut rest = outer.contents;
    while let Some((field, after)) = tlv(rest) {
        if field.tag == 0xa0 {
            return tlv(field.contents).is_some_and(|(params, _)| params.tag == 0x30);
        }
        rest = after;
    }
    false
}

fn explicit_curve(origin: &str) -> Error {
    Error::UnsupportedKeyAlgorithm(format!(
        "{origin} is an EC key with explicit curve parameters; tlsgate serves named curves only (P-256, P-384, P-521): regenerate it with `openssl ecparam -genkey -name prime256v1 -noout -out key.pem` and get a new certificate"
    ))
}

/// PKCS#8 keys encrypted with the PKCS#12 password-based schemes (RFC 7292
/// Appendix C), which `openssl pkcs8 -v1 PBE-SHA1-3DES` and Java keytool
/// exports write. The pkcs8 crate reads PBES2 only.
mod pkcs12_pbe {
    use crate::algorithm::tlv;
    use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};

    /// pbeWithSHAAnd3-KeyTripleDES-CBC.
    const SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
    /// The PKCS#12 PBE arc (1.2.840.113549.1.12.1.x).
    const PKCS12_PBE_ARC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01];
    /// More iterations than any real exporter uses; bounds work on hostile input.
    const MAX_ITERATIONS: i32 = 10_000_000;

    pub(super) enum Failure {
        WrongPassword,
        Unsupported(&'static str),
    }

    /// `None` when `der` is not PKCS#12-PBE encrypted; otherwise the plain PKCS#8.
    pub(super) fn decrypt(der: &[u8], password: &[u8]) -> Option<Result<Vec<u8>, Failure>> {
        let (outer, _) = tlv(der)?;
        let (alg, rest) = tlv(outer.contents)?;
        let (data, _) = tlv(rest)?;
        let (oid, rest) = tlv(alg.contents)?;
        if oid.tag != 0x06 || !oid.contents.starts_with(PKCS12_PBE_ARC) {
            return None;
        }
        if oid.contents != SHA1_3DES {
            return Some(Err(Failure::Unsupported(
                "a PKCS#12 password scheme other than SHA-1 with 3DES (RC2 or RC4)",
            )));
        }
        let (params, _) = tlv(rest)?;
        let (salt, rest) = tlv(params.contents)?;
        let (iterations, _) = tlv(rest)?;
        if iterations.contents.len() > 4 || data.tag != 0x04 {
            return None;
        }
        let rounds = iterations
            .contents
            .iter()
            .fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
        let rounds = i32::try_from(rounds)
            .ok()
            .filter(|r| (1..=MAX_ITERATIONS).contains(r))?;
        let password = String::from_utf8_lossy(password);
        let derive = |kind, len| {
            derive_key_utf8::<sha1::Sha1>(&password, salt.contents, kind, rounds, len).ok()
        };
        let key = derive(Pkcs12KeyType::EncryptionKey, 24)?;
        let iv = derive(Pkcs12KeyType::Iv, 8)?;
        let plain = crate::legacy_pem::cbc_decrypt::<des::TdesEde3>(&key, &iv, data.contents)
            .map_err(|_| Failure::WrongPassword);
        // Right padding by chance (1 in 256) still yields bytes that are not a key.
        Some(plain.and_then(|p| {
            if pkcs8::PrivateKeyInfoRef::try_from(p.as_slice()).is_ok() {
                Ok(p)
            } else {
                Err(Failure::WrongPassword)
            }
        }))
    }
}
