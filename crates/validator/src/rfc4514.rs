//! RFC 4514 rendering of X.509 distinguished names.
//!
//! The output is meant to be byte-for-byte what Python cryptography's
//! `Name.rfc4514_string()` produces, so that it can be checked against that
//! reference. For ASCII names with well-known attribute types this is also
//! what `openssl x509 -nameopt RFC2253` prints.

use std::fmt::Write as _;

use x509_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Formats a distinguished name as an RFC 4514 string: most specific RDN first, RDNs joined by "," with no spaces, multi-valued RDN attributes joined by "+".
pub(crate) fn format_name(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    // RFC 4514 section 2.1 lists the RDNs in reverse of their encoded order.
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Within an RDN Python keeps the encoded (DER SET OF) order, unlike
        // OpenSSL which reverses it too; we follow Python.
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            format_attribute(&mut out, attr);
        }
    }
    out
}

fn format_attribute(out: &mut String, attr: &AttributeTypeAndValue<'_>) {
    let dotted = attr.attr_type().to_id_string();
    out.push_str(short_name(&dotted).unwrap_or(&dotted));
    out.push('=');
    let value = attr.attr_value();
    match decode_string(value) {
        Some(text) => escape_value(out, &text),
        None => {
            out.push('#');
            push_hex(out, &der_header(value));
            push_hex(out, value.data);
        }
    }
}

/// Only the names Python's `_NAMEOID_TO_NAME` knows; everything else (even
/// emailAddress and serialNumber, which OpenSSL names) is printed as a dotted OID.
fn short_name(dotted: &str) -> Option<&'static str> {
    Some(match dotted {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// Returns `None` for values that must be rendered as `#hex`: non-string types,
/// and string types whose bytes are not valid in their declared encoding (where
/// Python would raise rather than print).
fn decode_string(value: &Any<'_>) -> Option<String> {
    // A tagged or constructed value is not a plain DER string even if its tag
    // number collides with one.
    if value.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::NumericString => std::str::from_utf8(data).ok().map(str::to_owned),
        // Python decodes T61String as UTF-8, and real-world CAs do put UTF-8 in
        // it; bytes that are not UTF-8 can only sensibly be Latin-1.
        Tag::T61String => Some(match std::str::from_utf8(data) {
            Ok(s) => s.to_owned(),
            Err(_) => data.iter().copied().map(char::from).collect(),
        }),
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if data.len() % 4 != 0 {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// Mirrors Python cryptography's `_escape_dn_value`; a lone space is escaped
/// once, as both its first and its last character.
fn escape_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' | '"' | '+' | ',' | ';' | '<' | '>' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
}

/// The parser has already dropped the raw header, so it is rebuilt in DER
/// form (minimal tag and definite minimal length) from its parts.
fn der_header(value: &Any<'_>) -> Vec<u8> {
    let mut header = Vec::with_capacity(8);
    let class_bits = (value.class() as u8) << 6;
    let constructed_bit = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    let Tag(number) = value.tag();
    if number < 0x1f {
        // Fits in the low five bits, so the truncation is exact.
        header.push(class_bits | constructed_bit | (number as u8));
    } else {
        header.push(class_bits | constructed_bit | 0x1f);
        push_base128(&mut header, number);
    }
    let len = value.data.len();
    if len < 0x80 {
        header.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = &bytes[skip..];
        header.push(0x80 | significant.len() as u8);
        header.extend_from_slice(significant);
    }
    header
}

fn push_base128(out: &mut Vec<u8>, mut n: u32) {
    let mut groups = [0u8; 5];
    let mut count = 0;
    loop {
        groups[count] = (n & 0x7f) as u8;
        count += 1;
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    for i in (0..count).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        out.push(groups[i] | more);
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use x509_parser::prelude::FromDer;

    fn openssl_available() -> bool {
        let ok = Command::new("openssl")
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("openssl not found on PATH; skipping openssl-based test");
        }
        ok
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("tlsgate-rfc4514-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(cmd: &mut Command) -> Vec<u8> {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Returns the DER certificate and OpenSSL's RFC2253 rendering of its subject.
    fn make_cert(dir: &Path, extra: &[&str]) -> (Vec<u8>, String) {
        let cert = dir.join("cert.der");
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .args(["-days", "1", "-outform", "DER", "-out"])
            .arg(&cert)
            .args(extra));
        let subject = run(Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-subject"])
            .args(["-nameopt", "RFC2253", "-in"])
            .arg(&cert));
        let subject = String::from_utf8(subject).unwrap();
        let subject = subject.trim_end_matches('\n');
        let subject = subject.strip_prefix("subject=").unwrap().to_owned();
        (std::fs::read(&cert).unwrap(), subject)
    }

    fn subject_string(der: &[u8]) -> String {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        format_name(cert.subject())
    }

    fn name_string(der: &[u8]) -> String {
        let (rest, name) = X509Name::from_der(der).unwrap();
        assert!(rest.is_empty());
        format_name(&name)
    }

    /// DER TLV with a short-form length.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        assert!(content.len() < 0x80);
        let mut v = vec![tag, content.len() as u8];
        v.extend_from_slice(content);
        v
    }

    /// A one-RDN, one-attribute Name with the given attribute OID (content
    /// octets) and already-encoded value.
    fn single_attr_name(oid: &[u8], value_der: &[u8]) -> Vec<u8> {
        let mut atv = tlv(0x06, oid);
        atv.extend_from_slice(value_der);
        tlv(0x30, &tlv(0x31, &tlv(0x30, &atv)))
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];

    // Expected strings below were produced by Python cryptography 48's
    // `cert.subject.rfc4514_string()` on the same subjects.
    #[test]
    fn openssl_certificates_match_python_and_openssl() {
        if !openssl_available() {
            return;
        }
        let dir = TempDir::new("certs");
        // (openssl req args, Python's rfc4514_string(), whether OpenSSL's
        // RFC2253 output is expected to be identical)
        let cases: &[(&[&str], &str, bool)] = &[
            (
                &[
                    "-subj",
                    "/C=US/ST=CA/O=Example, Inc./OU=Ops/CN=www.example.com",
                ],
                r"CN=www.example.com,OU=Ops,O=Example\, Inc.,ST=CA,C=US",
                true,
            ),
            (
                &[
                    "-subj",
                    "/CN=admin/emailAddress=admin@example.com/serialNumber=1234",
                ],
                "2.5.4.5=1234,1.2.840.113549.1.9.1=admin@example.com,CN=admin",
                false,
            ),
            (
                &["-multivalue-rdn", "-subj", "/CN=a+UID=b/O=x"],
                "O=x,CN=a+UID=b",
                false,
            ),
            (
                &["-subj", r#"/CN=#hash/O=a;b<c>d"e\\f\+g,h"#],
                r#"O=a\;b\<c\>d\"e\\f\+g\,h,CN=\#hash"#,
                true,
            ),
            (
                &["-subj", "/CN=trailing /O= lead/OU=in#side"],
                r"OU=in#side,O=\ lead,CN=trailing\ ",
                true,
            ),
            (
                &["-subj", "/DC=com/DC=example/L=Paris/UID=jdoe/CN=x"],
                "CN=x,UID=jdoe,L=Paris,DC=example,DC=com",
                true,
            ),
            (
                &["-subj", "/street=1 Main St/CN=y"],
                "CN=y,STREET=1 Main St",
                false,
            ),
            (
                &["-utf8", "-subj", "/CN=café/O=Zürich"],
                "O=Zürich,CN=café",
                false,
            ),
        ];
        for (args, expected, same_as_openssl) in cases {
            let (der, openssl_subject) = make_cert(&dir.0, args);
            let got = subject_string(&der);
            assert_eq!(&got, expected, "openssl req {args:?}");
            if *same_as_openssl {
                assert_eq!(got, openssl_subject, "openssl req {args:?}");
            }
        }
    }

    #[test]
    fn empty_name() {
        assert_eq!(name_string(&[0x30, 0x00]), "");
    }

    // Python cryptography 48 output for the same values (built with
    // NameAttribute(..., _type=...) and re-parsed) is given in each comment.
    #[test]
    fn string_types() {
        // BMPString "héllo" -> CN=héllo
        let bmp: Vec<u8> = "héllo".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x1e, &bmp))),
            "CN=héllo"
        );
        // BMPString with a surrogate pair
        let bmp: Vec<u8> = "a😀".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x1e, &bmp))),
            "CN=a😀"
        );
        // UniversalString "ñ,x" -> CN=ñ\,x
        let ucs4: Vec<u8> = "ñ,x"
            .chars()
            .flat_map(|c| (c as u32).to_be_bytes())
            .collect();
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x1c, &ucs4))),
            r"CN=ñ\,x"
        );
        // T61String holding UTF-8 "café" -> CN=café
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x14, "café".as_bytes()))),
            "CN=café"
        );
        // IA5String / VisibleString / NumericString
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x16, b"a@b"))),
            "CN=a@b"
        );
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x1a, b"vis"))),
            "CN=vis"
        );
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x12, b"12 3"))),
            "CN=12 3"
        );
    }

    #[test]
    fn teletex_non_utf8_is_latin1() {
        // Python raises here; Latin-1 is how OpenSSL reads T61String.
        assert_eq!(
            name_string(&single_attr_name(CN, &tlv(0x14, b"caf\xe9"))),
            "CN=café"
        );
    }

    #[test]
    fn escaping() {
        let cn = |v: &str| name_string(&single_attr_name(CN, &tlv(0x0c, v.as_bytes())));
        assert_eq!(cn("a\0b"), r"CN=a\00b");
        assert_eq!(cn(""), "CN=");
        assert_eq!(cn("  "), r"CN=\ \ ");
        assert_eq!(cn(" "), r"CN=\ ");
        assert_eq!(cn("#"), r"CN=\#");
        assert_eq!(cn("a#"), "CN=a#");
        assert_eq!(cn("\\#"), r"CN=\\#");
        assert_eq!(cn("x = y"), "CN=x = y");
        assert_eq!(cn("ü "), r"CN=ü\ ");
    }

    #[test]
    fn non_string_values_are_hex_der() {
        // INTEGER 5
        assert_eq!(
            name_string(&single_attr_name(CN, &[0x02, 0x01, 0x05])),
            "CN=#020105"
        );
        // OCTET STRING, unknown attribute type 1.2.3.4
        assert_eq!(
            name_string(&single_attr_name(
                &[0x2a, 0x03, 0x04],
                &[0x04, 0x02, 0xab, 0xcd]
            )),
            "1.2.3.4=#0402abcd"
        );
        // Long-form length in the rebuilt header.
        let long = [b'z'; 200];
        let mut der = vec![0x04, 0x81, 200];
        der.extend_from_slice(&long);
        let mut atv = tlv(0x06, CN);
        atv.extend_from_slice(&der);
        let mut seq = vec![0x30, 0x81, atv.len() as u8];
        seq.extend_from_slice(&atv);
        let mut set = vec![0x31, 0x81, seq.len() as u8];
        set.extend_from_slice(&seq);
        let mut name = vec![0x30, 0x81, set.len() as u8];
        name.extend_from_slice(&set);
        assert_eq!(
            name_string(&name),
            format!("CN=#0481c8{}", "7a".repeat(200))
        );
        // High tag number: [PRIVATE 300] primitive
        assert_eq!(
            name_string(&single_attr_name(CN, &[0xdf, 0x82, 0x2c, 0x01, 0x00])),
            "CN=#df822c0100"
        );
        // Invalid UTF-8 in a UTF8String and an odd-length BMPString fall back
        // to hex instead of failing.
        assert_eq!(
            name_string(&single_attr_name(CN, &[0x0c, 0x02, 0xff, 0xfe])),
            "CN=#0c02fffe"
        );
        assert_eq!(
            name_string(&single_attr_name(CN, &[0x1e, 0x03, 0x00, 0x41, 0x00])),
            "CN=#1e03004100"
        );
        // Unpaired surrogate
        assert_eq!(
            name_string(&single_attr_name(CN, &[0x1e, 0x02, 0xd8, 0x00])),
            "CN=#1e02d800"
        );
        // UniversalString beyond U+10FFFF
        assert_eq!(
            name_string(&single_attr_name(CN, &[0x1c, 0x04, 0x00, 0x11, 0x00, 0x00])),
            "CN=#1c0400110000"
        );
    }

    #[test]
    fn multi_valued_and_ordering() {
        // Name: RDN1 {C=US}, RDN2 {O=a, OU=b}, in encoded order.
        let atv = |oid: &[u8], v: &[u8]| {
            let mut a = tlv(0x06, oid);
            a.extend_from_slice(&tlv(0x13, v));
            tlv(0x30, &a)
        };
        let rdn1 = tlv(0x31, &atv(&[0x55, 0x04, 0x06], b"US"));
        let mut both = atv(&[0x55, 0x04, 0x0a], b"a");
        both.extend_from_slice(&atv(&[0x55, 0x04, 0x0b], b"b"));
        let rdn2 = tlv(0x31, &both);
        let mut seq = rdn1;
        seq.extend_from_slice(&rdn2);
        assert_eq!(name_string(&tlv(0x30, &seq)), "O=a+OU=b,C=US");
    }
}
