//! One certificate, parsed once into the facts every check needs.

use sha2::{Digest, Sha256};
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::algorithm::{self, KeyAlgorithm, tlv};
use crate::{Error, rfc4514};

/// A parsed certificate and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert {
    /// The certificate's DER.
    pub der: Vec<u8>,
    /// Where it is in the input, for messages ("certificate 2 (PEM block 2, line 31)").
    pub origin: String,
    /// Subject as an RFC 4514 string.
    pub subject: String,
    /// Issuer as an RFC 4514 string.
    pub issuer: String,
    /// Subject Name, raw DER (compared byte for byte, as webpki does).
    pub subject_raw: Vec<u8>,
    /// Issuer Name, raw DER.
    pub issuer_raw: Vec<u8>,
    /// Subject key identifier, when present.
    pub ski: Option<Vec<u8>>,
    /// Authority key identifier's keyIdentifier, when present.
    pub aki: Option<Vec<u8>>,
    /// Authority key identifier's authorityCertIssuer directory names
    /// (raw DER Names and their RFC 4514 forms), when present.
    pub aki_issuer: Vec<(Vec<u8>, String)>,
    /// Authority key identifier's authorityCertSerialNumber (content bytes
    /// without leading zeros), when present.
    pub aki_serial: Option<Vec<u8>>,
    /// Serial number, content bytes without leading zeros (for comparing
    /// with a child's authorityCertSerialNumber).
    pub serial_raw: Vec<u8>,
    /// Critical extensions that rustls-webpki does not process and so
    /// refuses in a path (UnsupportedCriticalExtension): dotted OIDs, with
    /// a name where one is known.
    pub unhandled_critical: Vec<String>,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// The X.509 version as written: 1 (no extensions at all, what
    /// `openssl x509 -req` writes without `-extfile`), 2 or 3.
    pub version: u32,
    /// basicConstraints as (cA, pathLenConstraint), when the extension is present.
    pub basic_constraints: Option<(bool, Option<u32>)>,
    /// Whether keyUsage allows keyCertSign; `None` without a keyUsage extension.
    pub key_cert_sign: Option<bool>,
    /// keyUsage, when the extension is present: whether it allows
    /// digitalSignature, and the usages it lists (for messages).
    pub key_usage: Option<(bool, String)>,
    /// extendedKeyUsage, when the extension is present.
    pub eku: Option<Eku>,
    /// The public key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// RSA modulus (big-endian, no leading zero) for RSA keys.
    pub rsa_modulus: Option<Vec<u8>>,
    /// Signature algorithm OID, dotted.
    pub signature_oid: String,
    /// DNS names and IP addresses from subjectAltName.
    pub sans: Vec<String>,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// Serial number, uppercase hex without colons.
    pub serial: String,
}

/// What an extendedKeyUsage extension allows, as far as TLS servers care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Eku {
    /// serverAuth or anyExtendedKeyUsage is listed.
    pub server_auth: bool,
    /// The purposes listed, by their OpenSSL short names (`clientAuth`, …)
    /// or dotted OID, for messages.
    pub purposes: Vec<String>,
}

impl Eku {
    fn from_extension(eku: &ExtendedKeyUsage<'_>) -> Self {
        let named = [
            (eku.any, "anyExtendedKeyUsage"),
            (eku.server_auth, "serverAuth"),
            (eku.client_auth, "clientAuth"),
            (eku.code_signing, "codeSigning"),
            (eku.email_protection, "emailProtection"),
            (eku.time_stamping, "timeStamping"),
            (eku.ocsp_signing, "OCSPSigning"),
        ];
        let purposes = named
            .iter()
            .filter(|(listed, _)| *listed)
            .map(|(_, name)| (*name).to_string())
            .chain(eku.other.iter().map(|oid| oid.to_id_string()))
            .collect();
        Eku {
            server_auth: eku.server_auth || eku.any,
            purposes,
        }
    }
}

impl ParsedCert {
    /// Parses DER; `origin` says where it came from, for messages.
    pub fn parse(der: Vec<u8>, origin: String) -> Result<Self, Error> {
        let cert = match X509Certificate::from_der(&der) {
            Ok((_, cert)) => cert,
            Err(err) => {
                return Err(Error::InvalidCertificateFormat(format!(
                    "{origin} is not a valid X.509 certificate ({err}); check that the file holds a certificate and was not truncated"
                )));
            }
        };
        let spki = cert.public_key();
        // asn1-rs's as_oid() does not check the tag, so check it here: a
        // SEQUENCE is explicit curve parameters, NULL is RSA's parameter.
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|params| match params.tag() {
                x509_parser::der_parser::asn1_rs::Tag::Oid => {
                    params.as_oid().ok().map(|oid| oid.to_id_string())
                }
                x509_parser::der_parser::asn1_rs::Tag::Sequence => Some("explicit".to_string()),
                _ => None,
            });
        let rsa_modulus = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let start = rsa.modulus.iter().position(|&b| b != 0).unwrap_or(0);
                rsa.modulus.get(start..).map(<[u8]>::to_vec)
            }
            _ => None,
        };
        let key_algorithm = KeyAlgorithm::classify(
            &spki.algorithm.algorithm.to_id_string(),
            curve.as_deref(),
            rsa_modulus.as_deref().map(algorithm::bit_length),
        );

        let mut ski = None;
        let mut aki = None;
        let mut aki_issuer = Vec::new();
        let mut aki_serial = None;
        let mut sans = Vec::new();
        let unhandled_critical = cert
            .extensions()
            .iter()
            .filter(|ext| ext.critical)
            .map(|ext| ext.oid.to_id_string())
            .filter(|oid| !WEBPKI_CRITICAL_EXTENSIONS.contains(&oid.as_str()))
            .map(|oid| match extension_name(&oid) {
                Some(name) => format!("{oid} ({name})"),
                None => oid,
            })
            .collect();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(id) => {
                    aki = id.key_identifier.as_ref().map(|k| k.0.to_vec());
                    aki_issuer = id
                        .authority_cert_issuer
                        .iter()
                        .flatten()
                        .filter_map(|name| match name {
                            GeneralName::DirectoryName(dn) => {
                                Some((dn.as_raw().to_vec(), rfc4514::format_name(dn)))
                            }
                            _ => None,
                        })
                        .collect();
                    aki_serial = id.authority_cert_serial.map(strip_leading_zeros);
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(dns) => sans.push((*dns).to_string()),
                            GeneralName::IPAddress(ip) => sans.push(format_ip(ip)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }

        // A duplicated extension reads as absent here: x509-parser refuses
        // to pick one, and the checks that use these facts then ask for the
        // extension to be (re)written properly.
        let basic_constraints = cert
            .basic_constraints()
            .ok()
            .flatten()
            .map(|bc| (bc.value.ca, bc.value.path_len_constraint));
        let key_cert_sign = cert
            .key_usage()
            .ok()
            .flatten()
            .map(|ku| ku.value.key_cert_sign());
        let key_usage = cert
            .key_usage()
            .ok()
            .flatten()
            .map(|ku| (ku.value.digital_signature(), ku.value.to_string()));
        let eku = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|eku| Eku::from_extension(eku.value));

        let fingerprint = hex_lower(&Sha256::digest(&der));
        Ok(ParsedCert {
            subject: rfc4514::format_name(cert.subject()),
            issuer: rfc4514::format_name(cert.issuer()),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            ski,
            aki,
            aki_issuer,
            aki_serial,
            serial_raw: strip_leading_zeros(cert.raw_serial()),
            unhandled_critical,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
            version: cert.version().0.saturating_add(1),
            basic_constraints,
            key_cert_sign,
            key_usage,
            eku,
            key_algorithm,
            spki: spki.raw.to_vec(),
            rsa_modulus,
            signature_oid: cert.signature_algorithm.algorithm.to_id_string(),
            sans,
            fingerprint,
            serial: hex_upper(cert.raw_serial()),
            origin,
            der,
        })
    }

    /// Subject equals issuer: a root (or other self-issued) certificate.
    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// Could `issuer` have issued `self`, judged by names and key identifiers
    /// (the signature is checked separately)?
    pub fn named_issuer_is(&self, issuer: &ParsedCert) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        match (&self.aki, &issuer.ski) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => true,
        }
    }

    /// Where `self`'s authorityKeyIdentifier says `issuer` is not the
    /// certificate that issued it, one phrase per field that disagrees.
    /// Only fields present on both sides are compared, as OpenSSL's
    /// X509_check_akid does: keyIdentifier against the issuer's
    /// subjectKeyIdentifier, authorityCertIssuer against the issuer's own
    /// issuer name, authorityCertSerialNumber against its serial. A client
    /// running OpenSSL skips an issuer that disagrees and fails with
    /// "unable to get local issuer certificate", even though the signature
    /// verifies (an intermediate reissued with the same key).
    pub fn aki_mismatches(&self, issuer: &ParsedCert) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(aki), Some(ski)) = (&self.aki, &issuer.ski) {
            if aki != ski {
                out.push(format!(
                    "its authorityKeyIdentifier keyid is {} but the issuer's subjectKeyIdentifier is {}",
                    hex_colons(aki),
                    hex_colons(ski)
                ));
            }
        }
        // Names compare by their RFC 4514 form as well, so two encodings of
        // one name (PrintableString vs UTF8String) are not a mismatch.
        if let Some((_, named)) = self.aki_issuer.first() {
            let matches = self.aki_issuer.iter().any(|(raw, text)| {
                *raw == issuer.issuer_raw || text.eq_ignore_ascii_case(&issuer.issuer)
            });
            if !matches {
                out.push(format!(
                    "its authorityKeyIdentifier names the issuer's issuer as \"{named}\" but the issuer was issued by \"{}\"",
                    issuer.issuer
                ));
            }
        }
        if let Some(serial) = &self.aki_serial {
            if *serial != issuer.serial_raw {
                out.push(format!(
                    "its authorityKeyIdentifier names the issuer's serial number {} but the issuer's serial number is {}",
                    hex_upper(serial),
                    issuer.serial
                ));
            }
        }
        out
    }

    /// "\"CN=www.example.com\" (certificate 2 in fullchain.pem at line 31)".
    pub fn describe(&self) -> String {
        format!("\"{}\" ({})", self.subject_or_placeholder(), self.origin)
    }

    fn subject_or_placeholder(&self) -> &str {
        if self.subject.is_empty() {
            "empty subject"
        } else {
            &self.subject
        }
    }
}

/// The extensions rustls-webpki processes, and so accepts when critical
/// (`remember_cert_extension` in its cert.rs): keyUsage, subjectAltName,
/// basicConstraints, nameConstraints, cRLDistributionPoints and
/// extendedKeyUsage. Any other critical extension makes webpki refuse the
/// certificate in a path (UnsupportedCriticalExtension), and OpenSSL
/// ("unhandled critical extension") refuses all but a few more, so the
/// validator holds to webpki's list: what it accepts, tlsgate's own
/// mutual-auth handshake and rustls clients accept too.
const WEBPKI_CRITICAL_EXTENSIONS: [&str; 6] = [
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.37",
];

/// Names of extensions that are sometimes marked critical, for messages.
fn extension_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.29.14" => "subjectKeyIdentifier",
        "2.5.29.35" => "authorityKeyIdentifier",
        "2.5.29.32" => "certificatePolicies",
        "2.5.29.33" => "policyMappings",
        "2.5.29.36" => "policyConstraints",
        "2.5.29.54" => "inhibitAnyPolicy",
        "2.5.29.9" => "subjectDirectoryAttributes",
        "2.5.29.18" => "issuerAltName",
        "2.5.29.46" => "freshestCRL",
        "1.3.6.1.5.5.7.1.1" => "authorityInfoAccess",
        "1.3.6.1.5.5.7.1.24" => "TLS Feature (OCSP must-staple)",
        "1.3.6.1.4.1.11129.2.4.2" => "CT precertificate SCTs",
        "1.3.6.1.4.1.11129.2.4.3" => "CT precertificate poison",
        "2.16.840.1.113730.1.1" => "netscape-cert-type",
        _ => return None,
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

/// Uppercase hex with colons, as `openssl x509 -text` prints key identifiers.
fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Splits any X.509 SIGNED{} structure (certificate, CRL) into the signed
/// bytes, the signatureAlgorithm contents and the signature bits.
pub(crate) fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (outer, _) = tlv(der)?;
    let (tbs, rest) = tlv(outer.contents)?;
    let (alg, rest) = tlv(rest)?;
    let (sig, _) = tlv(rest)?;
    // A BIT STRING's first content byte counts unused bits; signatures have none.
    let (unused, bits) = sig.contents.split_first()?;
    (*unused == 0 && sig.tag == 0x03).then_some((tbs.whole, alg.contents, bits))
}

/// Splits a SubjectPublicKeyInfo (whole TLV, or just its contents when
/// `contents_only`) into the AlgorithmIdentifier contents and the key bits.
pub(crate) fn spki_parts(spki: &[u8], contents_only: bool) -> Option<(&[u8], &[u8])> {
    let contents = if contents_only {
        spki
    } else {
        tlv(spki)?.0.contents
    };
    let (alg, rest) = tlv(contents)?;
    let (key, _) = tlv(rest)?;
    let (unused, bits) = key.contents.split_first()?;
    (*unused == 0).then_some((alg.contents, bits))
}

fn format_ip(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
            std::net::Ipv4Addr::from(octets).to_string()
        }
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(octets).to_string()
        }
        _ => hex_lower(bytes),
    }
}

/// Lowercase hex without separators.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Uppercase hex without separators.
pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    hex_lower(bytes).to_ascii_uppercase()
}
