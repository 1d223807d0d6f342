//! The JSON body of an upload (`POST /v1/certificates`) or in-place
//! replacement (`PUT /v1/certificates/{name}`): file bytes in, JSON out.
//! Pure, so the text-versus-base64 choice is unit-tested without a server.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::Kind;

/// What the user gave, already read from disk.
#[derive(Debug, Default)]
pub struct Material {
    /// The certificate file: PEM, DER, PKCS#7 or PKCS#12.
    pub certificate: Vec<u8>,
    /// The private key file, if separate.
    pub private_key: Option<Vec<u8>>,
    /// The password of an encrypted key or PKCS#12 file.
    pub password: Option<String>,
    /// A PEM CRL for a CA bundle.
    pub crl: Option<String>,
}

/// Which request the body is for: creation names the certificate in the
/// body, an in-place replacement names it in the path.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// `POST /v1/certificates`.
    Create {
        /// The certificate's name.
        name: &'a str,
        /// Server certificate or CA bundle.
        kind: Kind,
    },
    /// `PUT /v1/certificates/{name}?kind=…`.
    Replace,
}

/// Builds the request body for `target`.
pub fn upload(target: Target<'_>, material: &Material) -> Value {
    let mut body = Map::new();
    if let Target::Create { name, kind } = target {
        body.insert("name".into(), name.into());
        body.insert("kind".into(), kind.as_str().into());
    }
    insert_file(&mut body, "certificate", &material.certificate);
    if let Some(key) = &material.private_key {
        insert_file(&mut body, "private_key", key);
    }
    if let Some(password) = &material.password {
        body.insert("password".into(), password.as_str().into());
    }
    if let Some(crl) = &material.crl {
        body.insert("crl".into(), crl.as_str().into());
    }
    Value::Object(body)
}

/// PEM goes as text, so the server sees exactly what the user has (and
/// can report `NonCanonicalPem`); anything else (DER, PKCS#12) as base64
/// under `FIELD_base64`, because JSON strings cannot carry raw bytes.
fn insert_file(body: &mut Map<String, Value>, field: &str, bytes: &[u8]) {
    match pem_text(bytes) {
        Some(text) => body.insert(field.into(), text.into()),
        None => body.insert(format!("{field}_base64"), STANDARD.encode(bytes).into()),
    };
}

/// The file as text when it is UTF-8 with PEM armour in it.
pub fn pem_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|text| text.contains("-----BEGIN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn create_sends_pem_as_text_with_name_and_kind() {
        let material = Material {
            certificate: PEM.as_bytes().to_vec(),
            private_key: Some(
                // A stand-in body ("AA"), header assembled: not a key.
                concat!(
                    "-----BEGIN PRIVATE",
                    " KEY-----\nAA\n-----END PRIVATE",
                    " KEY-----\n"
                )
                .as_bytes()
                .to_vec(),
            ),
            ..Material::default()
        };
        let body = upload(
            Target::Create {
                name: "team/www",
                kind: Kind::Server,
            },
            &material,
        );
        assert_eq!(body["name"], "team/www");
        assert_eq!(body["kind"], "server");
        assert_eq!(body["certificate"], PEM);
        assert!(
            body["private_key"]
                .as_str()
                .is_some_and(|k| k.contains("PRIVATE KEY"))
        );
        assert!(body.get("certificate_base64").is_none());
        assert!(body.get("password").is_none());
        assert!(body.get("crl").is_none());
    }

    #[test]
    fn binary_input_goes_as_base64() {
        // A DER certificate starts with a SEQUENCE tag and is not UTF-8.
        let der = vec![0x30, 0x82, 0x01, 0xff, 0x00, 0xc3];
        let material = Material {
            certificate: der.clone(),
            private_key: Some(vec![0x30, 0x81, 0x87]),
            password: Some("s3cret".into()),
            ..Material::default()
        };
        let body = upload(Target::Replace, &material);
        assert_eq!(body["certificate_base64"], STANDARD.encode(&der));
        assert_eq!(body["private_key_base64"], "MIGH");
        assert_eq!(body["password"], "s3cret");
        assert!(body.get("certificate").is_none());
        assert!(
            body.get("name").is_none(),
            "PUT names the certificate in the path"
        );
        assert!(body.get("kind").is_none());
    }

    #[test]
    fn utf8_without_armour_is_not_pem() {
        // Base64 text of a DER blob without BEGIN lines: the server must
        // not take it for PEM, so it travels as opaque bytes.
        assert_eq!(pem_text(b"MIIBkTCB+wIJAK"), None);
        assert_eq!(pem_text(PEM.as_bytes()), Some(PEM));
        assert_eq!(pem_text(&[0xff, 0xfe, b'-']), None);
    }

    #[test]
    fn ca_upload_carries_the_crl() {
        let material = Material {
            certificate: PEM.as_bytes().to_vec(),
            crl: Some("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n".into()),
            ..Material::default()
        };
        let body = upload(
            Target::Create {
                name: "corp-ca",
                kind: Kind::Ca,
            },
            &material,
        );
        assert_eq!(body["kind"], "ca");
        assert!(body["crl"].as_str().is_some_and(|c| c.contains("X509 CRL")));
    }
}
