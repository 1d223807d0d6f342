//! OCSP responses put beside a server certificate for stapling (R9b):
//! read far enough to tell whether the response is one a client would
//! accept for that certificate now. A client that enforces stapling
//! (`must-staple`, or a browser's hard-fail policy) rejects the handshake
//! over a response for another certificate, a stale one or garbage, so
//! none of those is stapled. The responder's signature is the client's to
//! check: it needs the issuer, which a client holds and a store folder
//! need not.

use der::asn1::{AnyRef, BitStringRef, GeneralizedTime, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Enumerated, Sequence, Tag, TagNumber, Tagged};
use x509_parser::prelude::{FromDer, X509Certificate};

/// `id-pkix-ocsp-basic` (RFC 6960 §4.2.1).
const BASIC_RESPONSE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// What a usable response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspStatus {
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds, when the responder gave one.
    pub next_update: Option<i64>,
}

/// Why a response is not stapled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspProblem {
    /// Not a DER OCSP response.
    #[error("it is not a DER OCSP response ({0})")]
    Malformed(String),
    /// The responder answered with an error status instead of a response.
    #[error("the responder answered \"{0}\", not a response")]
    Unsuccessful(&'static str),
    /// No entry for this certificate's serial number.
    #[error("it is for another certificate (serial {found}), not this one (serial {serial})")]
    OtherCertificate {
        /// The leaf's serial, hex.
        serial: String,
        /// The serials the response covers, hex.
        found: String,
    },
    /// The responder says the certificate is revoked.
    #[error("the CA's responder says this certificate is revoked: replace the certificate")]
    Revoked,
    /// The responder does not know the certificate.
    #[error("the responder does not know this certificate (status unknown)")]
    Unknown,
    /// Past nextUpdate.
    #[error("it expired at {0} (nextUpdate)")]
    Expired(String),
    /// thisUpdate in the future.
    #[error("it is not valid before {0} (thisUpdate)")]
    NotYetValid(String),
}

#[derive(Clone, Copy, Debug, Enumerated, PartialEq, Eq)]
#[repr(u32)]
enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

#[derive(Sequence)]
struct OcspResponse<'a> {
    status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    bytes: Option<ResponseBytes<'a>>,
}

#[derive(Sequence)]
struct ResponseBytes<'a> {
    response_type: ObjectIdentifier,
    response: &'a OctetStringRef,
}

#[derive(Sequence)]
struct BasicResponse<'a> {
    data: ResponseData<'a>,
    signature_algorithm: AnyRef<'a>,
    signature: BitStringRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    certs: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct ResponseData<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    responder: AnyRef<'a>,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse<'a>>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct SingleResponse<'a> {
    cert_id: CertId<'a>,
    status: AnyRef<'a>,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct CertId<'a> {
    hash_algorithm: AnyRef<'a>,
    issuer_name_hash: &'a OctetStringRef,
    issuer_key_hash: &'a OctetStringRef,
    serial: UintRef<'a>,
}

fn unix(time: GeneralizedTime) -> i64 {
    i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Checks that `response` (DER) is a successful OCSP response with a
/// current "good" entry for the certificate `leaf` (DER), as of `now`
/// (unix seconds).
pub fn check_ocsp(response: &[u8], leaf: &[u8], now: i64) -> Result<OcspStatus, OcspProblem> {
    let malformed = |err: der::Error| OcspProblem::Malformed(err.to_string());
    let outer = OcspResponse::from_der(response).map_err(malformed)?;
    let bytes = match (outer.status, outer.bytes) {
        (ResponseStatus::Successful, Some(bytes)) => bytes,
        (ResponseStatus::Successful, None) => {
            return Err(OcspProblem::Malformed(
                "a successful status without a response".into(),
            ));
        }
        (ResponseStatus::MalformedRequest, _) => {
            return Err(OcspProblem::Unsuccessful("malformedRequest"));
        }
        (ResponseStatus::InternalError, _) => {
            return Err(OcspProblem::Unsuccessful("internalError"));
        }
        (ResponseStatus::TryLater, _) => return Err(OcspProblem::Unsuccessful("tryLater")),
        (ResponseStatus::SigRequired, _) => return Err(OcspProblem::Unsuccessful("sigRequired")),
        (ResponseStatus::Unauthorized, _) => return Err(OcspProblem::Unsuccessful("unauthorized")),
    };
    if bytes.response_type != BASIC_RESPONSE {
        return Err(OcspProblem::Malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic = BasicResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|err| OcspProblem::Malformed(format!("the certificate does not parse: {err}")))?;
    let serial = strip_zeros(cert.raw_serial());
    let Some(entry) = basic
        .data
        .responses
        .iter()
        .find(|r| strip_zeros(r.cert_id.serial.as_bytes()) == serial)
    else {
        let found: Vec<String> = basic
            .data
            .responses
            .iter()
            .map(|r| hex(strip_zeros(r.cert_id.serial.as_bytes())))
            .collect();
        return Err(OcspProblem::OtherCertificate {
            serial: hex(serial),
            found: found.join(", "),
        });
    };
    match entry.status.tag() {
        Tag::ContextSpecific {
            number: TagNumber(0),
            ..
        } => {}
        Tag::ContextSpecific {
            number: TagNumber(1),
            ..
        } => {
            return Err(OcspProblem::Revoked);
        }
        _ => return Err(OcspProblem::Unknown),
    }
    let this_update = unix(entry.this_update);
    let next_update = entry.next_update.map(unix);
    // Clocks differ by a little; a response made a minute "from now" by
    // the responder's clock is normal.
    if this_update > now + 300 {
        return Err(OcspProblem::NotYetValid(crate::rfc3339(this_update)));
    }
    if let Some(next) = next_update {
        if next < now {
            return Err(OcspProblem::Expired(crate::rfc3339(next)));
        }
    }
    Ok(OcspStatus {
        this_update,
        next_update,
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use der::Encode;
    use der::asn1::Null;
    use tlsgate_test_pki::{KeyKind, TestPki, Validity};

    use super::*;

    /// A response for `serial` made with this module's own structures; the
    /// signature is not checked here, so a placeholder stands in for it.
    fn response(
        status: ResponseStatus,
        serial: &[u8],
        cert_status: u8,
        this: i64,
        next: Option<i64>,
    ) -> Vec<u8> {
        let time = |t: i64| {
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(t as u64)).unwrap()
        };
        let null = Null.to_der().unwrap();
        let hash20 = [0u8; 20];
        // [n] IMPLICIT NULL: the tag byte, length 0.
        let status_tlv = [0x80 | cert_status, 0];
        let single = SingleResponse {
            cert_id: CertId {
                hash_algorithm: AnyRef::try_from(null.as_slice()).unwrap(),
                issuer_name_hash: OctetStringRef::new(&hash20).unwrap(),
                issuer_key_hash: OctetStringRef::new(&hash20).unwrap(),
                serial: UintRef::new(serial).unwrap(),
            },
            status: AnyRef::try_from(&status_tlv[..]).unwrap(),
            this_update: time(this),
            next_update: next.map(time),
            extensions: None,
        };
        let responder = [0xa2, 0x02, 0x04, 0x00];
        let basic = BasicResponse {
            data: ResponseData {
                version: None,
                responder: AnyRef::try_from(&responder[..]).unwrap(),
                produced_at: time(this),
                responses: vec![single],
                extensions: None,
            },
            signature_algorithm: AnyRef::try_from(null.as_slice()).unwrap(),
            signature: BitStringRef::new(0, &[1, 2, 3]).unwrap(),
            certs: None,
        }
        .to_der()
        .unwrap();

        OcspResponse {
            status,
            bytes: Some(ResponseBytes {
                response_type: BASIC_RESPONSE,
                response: OctetStringRef::new(&basic).unwrap(),
            }),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn only_a_current_good_response_for_this_certificate_is_usable() {
        let pki = TestPki::now_real();
        let root = pki.root("OCSP Test Root", KeyKind::EcdsaP256);
        let leaf = root.server(&["ocsp.example"], KeyKind::EcdsaP256, Validity::Normal);
        let other = root.server(&["other.example"], KeyKind::EcdsaP256, Validity::Normal);
        let now = 1_800_000_000;
        let day = 86_400;
        let serial = leaf.serial();
        let good = response(
            ResponseStatus::Successful,
            &serial,
            0,
            now - day,
            Some(now + day),
        );
        assert_eq!(
            check_ocsp(&good, leaf.cert_der(), now),
            Ok(OcspStatus {
                this_update: now - day,
                next_update: Some(now + day)
            })
        );
        let no_next = response(ResponseStatus::Successful, &serial, 0, now - day, None);
        assert!(check_ocsp(&no_next, leaf.cert_der(), now).is_ok());

        assert!(matches!(
            check_ocsp(&good, other.cert_der(), now),
            Err(OcspProblem::OtherCertificate { .. })
        ));
        // (certStatus, thisUpdate, nextUpdate) for this leaf.
        let judge = |status: u8, this: i64, next: Option<i64>| {
            check_ocsp(
                &response(ResponseStatus::Successful, &serial, status, this, next),
                leaf.cert_der(),
                now,
            )
        };
        assert_eq!(
            judge(1, now - day, Some(now + day)),
            Err(OcspProblem::Revoked)
        );
        assert_eq!(
            judge(2, now - day, Some(now + day)),
            Err(OcspProblem::Unknown)
        );
        assert!(matches!(
            judge(0, now - 2 * day, Some(now - day)),
            Err(OcspProblem::Expired(_))
        ));
        assert!(matches!(
            judge(0, now + day, Some(now + 2 * day)),
            Err(OcspProblem::NotYetValid(_))
        ));
        let later = response(ResponseStatus::TryLater, &serial, 0, now, None);
        assert_eq!(
            check_ocsp(&later, leaf.cert_der(), now),
            Err(OcspProblem::Unsuccessful("tryLater"))
        );
        // The bare status openssl writes for an error, and garbage.
        assert!(matches!(
            check_ocsp(b"\x30\x03\x0a\x01\x00", leaf.cert_der(), now),
            Err(OcspProblem::Malformed(_))
        ));
        assert!(matches!(
            check_ocsp(b"not DER at all", leaf.cert_der(), now),
            Err(OcspProblem::Malformed(_))
        ));
    }
}
