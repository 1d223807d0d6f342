//! Key and signature algorithm classification (SPEC R24), shared by
//! certificates and private keys so both are judged by one rule.

use std::fmt;

/// rsaEncryption.
pub(crate) const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// RSASSA-PSS as a key algorithm.
pub(crate) const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
/// id-ecPublicKey.
pub(crate) const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";
const OID_X25519: &str = "1.3.101.110";
const OID_DSA: &str = "1.2.840.10040.4.1";
const OID_DH: &str = "1.2.840.113549.1.3.1";
const OID_X942_DH: &str = "1.2.840.10046.2.1";
pub(crate) const OID_P256: &str = "1.2.840.10045.3.1.7";
pub(crate) const OID_P384: &str = "1.3.132.0.34";
pub(crate) const OID_P521: &str = "1.3.132.0.35";

/// The smallest RSA modulus tlsgate accepts.
pub(crate) const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus the TLS engine (aws-lc-rs) can serve.
pub(crate) const RSA_MAX_BITS: usize = 8192;

/// What kind of key a certificate or private key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA with the modulus size in bits.
    Rsa {
        /// Modulus length in bits.
        bits: usize,
    },
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// EC on a named curve other than the three NIST ones (e.g. secp256k1).
    EcOtherCurve(String),
    /// EC with explicit curve parameters instead of a named curve.
    EcExplicit,
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// DSA.
    Dsa,
    /// RSASSA-PSS-only key.
    RsaPss,
    /// Diffie-Hellman (not a signing key at all).
    Dh,
    /// Anything else, by OID.
    Other(String),
}

/// Whether tlsgate can serve a key of this algorithm (SPEC R24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// RSA 2048..=8192 or ECDSA P-256/P-384/P-521.
    Servable,
    /// RSA below 2048 bits.
    Weak,
    /// Everything else.
    Unsupported,
}

impl KeyAlgorithm {
    /// Classifies an algorithm OID with its parameters (the named-curve OID
    /// for EC, `None` when absent, `Some("explicit")` for explicit curves).
    pub(crate) fn classify(oid: &str, curve: Option<&str>, rsa_bits: Option<usize>) -> Self {
        match oid {
            OID_RSA => KeyAlgorithm::Rsa {
                bits: rsa_bits.unwrap_or(0),
            },
            OID_RSA_PSS => KeyAlgorithm::RsaPss,
            OID_EC => match curve {
                Some(OID_P256) => KeyAlgorithm::EcdsaP256,
                Some(OID_P384) => KeyAlgorithm::EcdsaP384,
                Some(OID_P521) => KeyAlgorithm::EcdsaP521,
                Some("explicit") => KeyAlgorithm::EcExplicit,
                Some(other) => KeyAlgorithm::EcOtherCurve(curve_name(other)),
                None => KeyAlgorithm::EcOtherCurve("with no curve".into()),
            },
            OID_ED25519 => KeyAlgorithm::Ed25519,
            OID_ED448 => KeyAlgorithm::Ed448,
            OID_DSA => KeyAlgorithm::Dsa,
            OID_DH | OID_X942_DH | OID_X25519 => KeyAlgorithm::Dh,
            other => KeyAlgorithm::Other(other.to_string()),
        }
    }

    /// SPEC R24's verdict on this algorithm.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            KeyAlgorithm::Rsa { bits } if *bits < RSA_MIN_BITS => Verdict::Weak,
            KeyAlgorithm::Rsa { bits } if *bits <= RSA_MAX_BITS => Verdict::Servable,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::EcdsaP521 => {
                Verdict::Servable
            }
            _ => Verdict::Unsupported,
        }
    }

    /// True for ECDSA keys (used to pick ECDSA vs RSA certificates).
    pub fn is_ecdsa(&self) -> bool {
        matches!(
            self,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::EcdsaP521
        )
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::EcdsaP521 => f.write_str("ECDSA P-521"),
            KeyAlgorithm::EcOtherCurve(name) => write!(f, "EC {name}"),
            KeyAlgorithm::EcExplicit => f.write_str("EC explicit parameters"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
            KeyAlgorithm::Ed448 => f.write_str("Ed448"),
            KeyAlgorithm::Dsa => f.write_str("DSA"),
            KeyAlgorithm::RsaPss => f.write_str("RSA-PSS"),
            KeyAlgorithm::Dh => f.write_str("DH"),
            KeyAlgorithm::Other(oid) => write!(f, "unknown algorithm {oid}"),
        }
    }
}

fn curve_name(oid: &str) -> String {
    let name = match oid {
        "1.3.132.0.10" => "secp256k1",
        "1.3.132.0.33" => "secp224r1",
        "1.2.840.10045.3.1.1" => "prime192v1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1",
        "1.2.156.10197.1.301" => "SM2",
        other => other,
    };
    name.to_string()
}

/// Number of significant bits in a big-endian unsigned integer.
pub(crate) fn bit_length(be: &[u8]) -> usize {
    let be = match be.iter().position(|&b| b != 0) {
        Some(start) => &be[start..],
        None => return 0,
    };
    be.len() * 8 - be[0].leading_zeros() as usize
}

/// Names the digest of a signature algorithm that SPEC R24 calls weak
/// (MD2, MD4, MD5, SHA-1), or `None` when the algorithm is acceptable.
pub(crate) fn weak_signature(oid: &str) -> Option<&'static str> {
    match oid {
        "1.2.840.113549.1.1.2" => Some("MD2 with RSA"),
        "1.2.840.113549.1.1.3" => Some("MD4 with RSA"),
        "1.2.840.113549.1.1.4" | "1.3.14.3.2.3" => Some("MD5 with RSA"),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => Some("SHA-1 with RSA"),
        "1.2.840.10045.4.1" => Some("ECDSA with SHA-1"),
        "1.2.840.10040.4.3" | "1.3.14.3.2.27" => Some("DSA with SHA-1"),
        _ => None,
    }
}

/// One DER TLV: its tag byte, its whole encoding, and its contents.
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub whole: &'a [u8],
    pub contents: &'a [u8],
}

/// Splits the first DER TLV off `input`; `None` when it is not well formed.
/// Only what signature checks need: single-byte tags, definite lengths.
pub(crate) fn tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for byte in input.get(2..2 + count)? {
            len = (len << 8) | usize::from(*byte);
        }
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    let contents = input.get(header..end)?;
    Some((
        Tlv {
            tag,
            whole,
            contents,
        },
        input.get(end..)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_r24() {
        assert_eq!(KeyAlgorithm::Rsa { bits: 1024 }.verdict(), Verdict::Weak);
        assert_eq!(
            KeyAlgorithm::Rsa { bits: 2048 }.verdict(),
            Verdict::Servable
        );
        assert_eq!(
            KeyAlgorithm::Rsa { bits: 8192 }.verdict(),
            Verdict::Servable
        );
        assert_eq!(
            KeyAlgorithm::Rsa { bits: 16384 }.verdict(),
            Verdict::Unsupported
        );
        assert_eq!(KeyAlgorithm::EcdsaP521.verdict(), Verdict::Servable);
        assert_eq!(KeyAlgorithm::Ed25519.verdict(), Verdict::Unsupported);
        let k1 = KeyAlgorithm::classify(OID_EC, Some("1.3.132.0.10"), None);
        assert_eq!(k1.to_string(), "EC secp256k1");
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[]), 0);
    }

    #[test]
    fn tlv_rejects_truncation() {
        assert!(tlv(&[0x30, 0x03, 0x01]).is_none());
        let (t, rest) = tlv(&[0x30, 0x01, 0xff, 0x05]).expect("valid");
        assert_eq!(t.contents, &[0xff]);
        assert_eq!(rest, &[0x05]);
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
