use std::io::Write as _;
use std::process::{Command, Stdio};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;
use x509_parser::{parse_x509_certificate, parse_x509_crl};

use super::*;

const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const OID_ED25519: &str = "1.3.101.112";

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = parse_x509_certificate(der).expect("certificate parses");
    assert!(rest.is_empty(), "trailing bytes after certificate");
    cert
}

/// Every certificate in a PEM bundle, DER.
fn pem_certs(bundle: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(bundle.as_bytes())
        .map(|p| {
            let p = p.expect("PEM block parses");
            assert_eq!(p.label, "CERTIFICATE");
            p.contents
        })
        .collect()
}

fn assert_canonical_pem(text: &str, label: &str) {
    assert!(
        text.starts_with(&format!("-----BEGIN {label}-----\n")),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("-----END {label}-----\n")),
        "{text}"
    );
    assert!(!text.contains('\r'));
    for line in text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(line.len() <= 64, "line longer than 64: {line}");
    }
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
    for line in &body[..body.len() - 1] {
        assert_eq!(line.len(), 64, "non-final line not 64 chars");
    }
}

/// Runs `openssl args` with `stdin`; `None` (after a note) when openssl is not on PATH.
fn openssl(args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    let child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipping openssl check ({e})");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Some(child.wait_with_output().unwrap())
}

fn assert_openssl_ok(args: &[&str], stdin: &[u8]) -> Option<String> {
    let out = openssl(args, stdin)?;
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `issuer`'s key verifies `cert`'s signature (with aws-lc-rs: x509-parser 0.18
/// cannot verify ECDSA-SHA512).
fn verifies(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    use aws_lc_rs::signature;
    let point: &[u8] = &issuer.public_key().subject_public_key.data;
    let alg: &'static dyn signature::VerificationAlgorithm = match (
        cert.signature_algorithm.algorithm.to_id_string().as_str(),
        point.len(),
    ) {
        (OID_ECDSA_SHA256, 65) => &signature::ECDSA_P256_SHA256_ASN1,
        (OID_ECDSA_SHA384, 97) => &signature::ECDSA_P384_SHA384_ASN1,
        (OID_ECDSA_SHA512, 133) => &signature::ECDSA_P521_SHA512_ASN1,
        (OID_RSA_SHA256, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (OID_ED25519, 32) => &signature::ED25519,
        _ => return false,
    };
    signature::UnparsedPublicKey::new(alg, point)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_ok()
}

#[test]
fn fixed_now_is_2026_06_01() {
    let t = datetime(FIXED_NOW);
    assert_eq!((t.year(), u8::from(t.month()), t.day()), (2026, 6, 1));
    assert_eq!((t.hour(), t.minute(), t.second()), (0, 0, 0));
    assert_eq!(TestPki::fixed().now_unix(), FIXED_NOW);
    assert!(TestPki::now_real().now_unix() > 1_700_000_000);
}

#[test]
fn every_key_kind_generates_and_signs() {
    let pki = TestPki::fixed();
    for kind in KeyKind::ALL {
        let issued = pki.self_signed_server(&["kind.test"], kind, Validity::Normal);
        let key = issued.key();
        assert_eq!(key.kind(), kind);
        let cert = parse(issued.cert_der());
        let expected_alg = match kind {
            KeyKind::EcdsaP256 => OID_ECDSA_SHA256,
            KeyKind::EcdsaP384 => OID_ECDSA_SHA384,
            KeyKind::EcdsaP521 => OID_ECDSA_SHA512,
            KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => OID_RSA_SHA256,
            KeyKind::Ed25519 => OID_ED25519,
        };
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            expected_alg,
            "{kind:?}"
        );
        assert!(verifies(&cert, &cert), "{kind:?} self-signature");
        assert_eq!(cert.public_key().raw, key.spki_der().as_slice());
        if kind.is_rsa() {
            let bits = match cert.public_key().parsed().unwrap() {
                x509_parser::public_key::PublicKey::RSA(rsa) => rsa.key_size(),
                other => panic!("{other:?}"),
            };
            assert_eq!(bits, kind.bits() as usize);
        }

        // Encodings.
        assert_canonical_pem(&key.pkcs8_pem(), "PRIVATE KEY");
        assert_eq!(key.pkcs1_der().is_some(), kind.is_rsa(), "{kind:?}");
        assert_eq!(key.sec1_der().is_some(), kind.is_ecdsa(), "{kind:?}");
        if let Some(pkcs1) = key.pkcs1_pem() {
            assert_canonical_pem(&pkcs1, "RSA PRIVATE KEY");
            let reloaded = KeyPair::from_pem(&pkcs1).expect("rcgen reads PKCS#1");
            assert_eq!(reloaded.subject_public_key_info(), key.spki_der());
        }
        if let Some(sec1) = key.sec1_pem() {
            assert_canonical_pem(&sec1, "EC PRIVATE KEY");
            let reloaded = KeyPair::from_pem(&sec1).expect("rcgen reads SEC1");
            assert_eq!(reloaded.subject_public_key_info(), key.spki_der());
            let with_params = key.sec1_pem_with_params().unwrap();
            assert!(with_params.starts_with("-----BEGIN EC PARAMETERS-----\n"));
            assert!(with_params.ends_with(&sec1));
        }
    }
}

#[test]
fn sec1_matches_openssl_layout() {
    let key = TestKey::generate(KeyKind::EcdsaP256);
    let with_params = key.sec1_pem_with_params().unwrap();
    // `openssl ecparam -genkey -name prime256v1` always writes this parameters block.
    // The key header is assembled so no tracked file holds a key header.
    let expected = concat!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
        "-----BEGIN EC PRIVATE",
        " KEY-----\n"
    );
    assert!(with_params.starts_with(expected));
    let sec1 = key.sec1_der().unwrap();
    let (tag, body, rest) = der::read(&sec1).unwrap();
    assert_eq!((tag, rest.len()), (der::SEQUENCE, 0));
    let (tag, version, rest) = der::read(body).unwrap();
    assert_eq!((tag, version), (der::INTEGER, &[1u8][..]));
    let (tag, scalar, rest) = der::read(rest).unwrap();
    assert_eq!((tag, scalar.len()), (der::OCTET_STRING, 32));
    let (tag, params, rest) = der::read(rest).unwrap();
    assert_eq!((tag, params), (0xa0, OID_PRIME256V1));
    let (tag, public, rest) = der::read(rest).unwrap();
    assert_eq!((tag, rest.len()), (0xa1, 0));
    let (tag, bits, _) = der::read(public).unwrap();
    assert_eq!((tag, bits.len(), bits[1]), (der::BIT_STRING, 66, 0x04));

    if let Some(text) = assert_openssl_ok(&["ec", "-noout", "-text"], with_params.as_bytes()) {
        assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
    }
    for kind in [KeyKind::EcdsaP384, KeyKind::EcdsaP521] {
        let key = TestKey::generate(kind);
        assert_openssl_ok(
            &["ec", "-check", "-noout"],
            key.sec1_pem_with_params().unwrap().as_bytes(),
        );
    }
}

#[test]
fn server_chain_parses_and_links() {
    let pki = TestPki::fixed();
    let chain = pki.server_chain(
        &["example.test", "www.example.test", "127.0.0.1"],
        KeyKind::EcdsaP256,
    );

    let with_root = pem_certs(&chain.pem_with_root());
    assert_eq!(with_root.len(), 3);
    let (leaf, inter, root) = (
        parse(&with_root[0]),
        parse(&with_root[1]),
        parse(&with_root[2]),
    );
    assert_eq!(with_root[0], chain.leaf.cert_der());
    assert_eq!(pem_certs(&chain.pem_leaf_first()), with_root[..2].to_vec());
    assert_eq!(
        pem_certs(&chain.pem_wrong_order()),
        vec![with_root[1].clone(), with_root[0].clone()]
    );
    assert_canonical_pem(&chain.leaf.cert_pem(), "CERTIFICATE");

    // Name chaining and signatures.
    assert_eq!(leaf.issuer(), inter.subject());
    assert_eq!(inter.issuer(), root.subject());
    assert_eq!(root.issuer(), root.subject());
    assert!(verifies(&leaf, &inter));
    assert!(verifies(&inter, &root));
    assert!(verifies(&root, &root));
    assert!(!verifies(&leaf, &root));

    // Subject DNs.
    assert_eq!(
        leaf.subject().to_string(),
        "O=tlsgate test, CN=example.test"
    );
    assert!(
        root.subject()
            .to_string()
            .starts_with("O=tlsgate test, CN=tlsgate test root CA ")
    );

    // Distinct keys per role.
    let keys = [
        chain.root.cert().key(),
        chain.intermediate.cert().key(),
        chain.leaf.key(),
    ];
    assert_ne!(keys[0], keys[1]);
    assert_ne!(keys[1], keys[2]);
    assert_ne!(keys[0], keys[2]);

    // Extensions.
    let bc = |c: &X509Certificate<'_>| c.basic_constraints().unwrap().unwrap().value.ca;
    assert!(bc(&root) && bc(&inter) && !bc(&leaf));
    assert!(root.basic_constraints().unwrap().unwrap().critical);
    let ku = inter.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names.len(), 3);
    assert!(matches!(
        san.general_names[0],
        GeneralName::DNSName("example.test")
    ));
    assert!(matches!(
        san.general_names[2],
        GeneralName::IPAddress(&[127, 0, 0, 1])
    ));

    // AKI/SKI linking.
    let ski = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .expect("SKI present")
    };
    let aki = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => None,
            })
            .expect("AKI present")
    };
    assert_eq!(aki(&leaf), ski(&inter));
    assert_eq!(aki(&inter), ski(&root));
    assert_eq!(aki(&root), ski(&root));
    assert_ne!(ski(&leaf), ski(&inter));

    // Serials.
    for (issued, cert) in [(&chain.leaf, &leaf), (chain.intermediate.cert(), &inter)] {
        let serial = issued.serial();
        assert_eq!(serial.len(), 16);
        assert_eq!(serial[0] & 0x80, 0);
        assert_eq!(cert.raw_serial(), serial.as_slice());
    }

    // Two chains never share CA names.
    let other = pki.server_chain(&["example.test"], KeyKind::EcdsaP256);
    assert_ne!(other.root.common_name(), chain.root.common_name());
}

#[test]
fn rsa_chain_has_distinct_keys_and_rsa_key_usage() {
    let pki = TestPki::fixed();
    let chain = pki.server_chain(&["rsa.test"], KeyKind::Rsa2048);
    let keys = [
        chain.root.cert().key(),
        chain.intermediate.cert().key(),
        chain.leaf.key(),
    ];
    assert_ne!(keys[0], keys[1]);
    assert_ne!(keys[1], keys[2]);
    assert_ne!(keys[0], keys[2]);
    let sibling = chain
        .intermediate
        .server(&["rsa2.test"], KeyKind::Rsa2048, Validity::Normal);
    assert_ne!(&sibling.key(), keys.last().unwrap());
    assert!(keys.iter().all(|k| *k != sibling.key()));

    let leaf = parse(chain.leaf.cert_der());
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert!(verifies(
        &leaf,
        &parse(chain.intermediate.cert().cert_der())
    ));

    // A chain deeper than the pool still never reuses an ancestor's key.
    let mut ca = chain.root;
    let mut seen = vec![ca.cert().key().clone()];
    for depth in 0..KeyKind::Rsa2048.pool_size().unwrap() {
        ca = ca.intermediate(&format!("deep {depth}"), KeyKind::Rsa2048);
        assert!(!seen.contains(ca.cert().key()), "depth {depth}");
        seen.push(ca.cert().key().clone());
    }
}

#[test]
fn mixed_key_kinds_sign_with_issuer_algorithm() {
    let pki = TestPki::fixed();
    let root = pki.root("mixed root", KeyKind::EcdsaP384);
    let inter = root.intermediate("mixed intermediate", KeyKind::Ed25519);
    let leaf = inter.server(&["mixed.test"], KeyKind::EcdsaP521, Validity::Normal);
    let alg = |der: &[u8]| parse(der).signature_algorithm.algorithm.to_id_string();
    assert_eq!(alg(inter.cert().cert_der()), OID_ECDSA_SHA384);
    assert_eq!(alg(leaf.cert_der()), OID_ED25519);
    assert!(verifies(
        &parse(leaf.cert_der()),
        &parse(inter.cert().cert_der())
    ));
}

#[test]
fn validity_windows_are_relative_to_now() {
    let pki = TestPki::at(FIXED_NOW);
    let ca = pki.root("validity root", KeyKind::EcdsaP256);
    let window = |v: Validity| {
        let issued = ca.client("validity client", KeyKind::EcdsaP256, v);
        let cert = parse(issued.cert_der());
        let validity = cert.validity();
        (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    };
    let now = FIXED_NOW;
    assert_eq!(window(Validity::Normal), (now - DAY, now + 365 * DAY));
    assert_eq!(window(Validity::Expired), (now - 400 * DAY, now - DAY));
    assert_eq!(window(Validity::NotYetValid), (now + DAY, now + 365 * DAY));
    assert_eq!(
        window(Validity::ExpiresInDays(10)),
        (now - DAY, now + 10 * DAY)
    );
    assert_eq!(
        window(Validity::ExpiresInDays(-5)),
        (now - 6 * DAY, now - 5 * DAY)
    );

    let expired_inter = ca.intermediate_with_validity(
        "expired intermediate",
        KeyKind::EcdsaP256,
        Validity::Expired,
    );
    let cert = parse(expired_inter.cert().cert_der());
    assert_eq!(cert.validity().not_after.timestamp(), now - DAY);
    let old_root = pki.root_with_validity("old root", KeyKind::EcdsaP256, Validity::Expired);
    assert_eq!(
        parse(old_root.cert().cert_der())
            .validity()
            .not_after
            .timestamp(),
        now - DAY
    );

    // Client leaf profile.
    let alice = ca.client("alice", KeyKind::EcdsaP256, Validity::Normal);
    let client = parse(alice.cert_der());
    let eku = client.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert_eq!(client.subject().to_string(), "O=tlsgate test, CN=alice");
}

#[test]
fn self_signed_server_is_not_a_ca() {
    let issued =
        TestPki::fixed().self_signed_server(&["lone.test"], KeyKind::EcdsaP256, Validity::Normal);
    let cert = parse(issued.cert_der());
    assert_eq!(cert.issuer(), cert.subject());
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );

    let no_names = TestPki::fixed().self_signed_server(&[], KeyKind::EcdsaP256, Validity::Normal);
    let cert = parse(no_names.cert_der());
    assert!(cert.subject_alternative_name().unwrap().is_none());
}

#[test]
fn impostor_has_same_name_but_other_key() {
    let pki = TestPki::fixed();
    let chain = pki.server_chain(&["imp.test"], KeyKind::EcdsaP256);
    let impostor = same_name_impostor(&pki, &chain.intermediate, KeyKind::EcdsaP256);
    let real = parse(chain.intermediate.cert().cert_der());
    let fake = parse(impostor.cert().cert_der());
    assert_eq!(real.subject(), fake.subject());
    assert_ne!(real.public_key().raw, fake.public_key().raw);
    let leaf = parse(chain.leaf.cert_der());
    assert!(verifies(&leaf, &real));
    assert!(!verifies(&leaf, &fake));

    // Also for pooled RSA keys.
    let rsa_root = pki.root("rsa imp root", KeyKind::Rsa2048);
    let rsa_fake = same_name_impostor(&pki, &rsa_root, KeyKind::Rsa2048);
    assert_ne!(rsa_root.cert().key(), rsa_fake.cert().key());
}

#[test]
fn crl_revokes_serials() {
    let pki = TestPki::fixed();
    let chain = pki.server_chain(&["crl.test"], KeyKind::EcdsaP256);
    let serial = chain.leaf.serial();
    let crl_pem = chain.intermediate.crl_pem(std::slice::from_ref(&serial), 7);
    assert_canonical_pem(&crl_pem, "X509 CRL");

    let der = chain.intermediate.crl_der(std::slice::from_ref(&serial), 7);
    let (_, crl) = parse_x509_crl(&der).expect("CRL parses");
    let inter = parse(chain.intermediate.cert().cert_der());
    assert_eq!(crl.issuer(), inter.subject());
    assert_eq!(crl.last_update().timestamp(), FIXED_NOW - HOUR);
    assert_eq!(crl.next_update().unwrap().timestamp(), FIXED_NOW + 7 * DAY);
    let revoked: Vec<&[u8]> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial())
        .collect();
    assert_eq!(revoked, vec![serial.as_slice()]);
    assert!(crl.verify_signature(inter.public_key()).is_ok());

    let expired = chain.intermediate.crl_der(&[], -2);
    let (_, crl) = parse_x509_crl(&expired).expect("expired CRL parses");
    assert_eq!(crl.next_update().unwrap().timestamp(), FIXED_NOW - 2 * DAY);
    assert!(crl.last_update().timestamp() < FIXED_NOW - 2 * DAY);
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
}

#[test]
fn pkcs7_holds_intermediate_then_leaf() {
    let chain = TestPki::fixed().server_chain(&["p7.test"], KeyKind::EcdsaP256);
    let der = chain.pkcs7_der();
    // Walk the structure by hand.
    let (_, content_info, rest) = der::read(&der).unwrap();
    assert!(rest.is_empty());
    let (_, _oid, rest) = der::read(content_info).unwrap();
    let (tag, explicit, _) = der::read(rest).unwrap();
    assert_eq!(tag, 0xa0);
    let (_, signed_data, _) = der::read(explicit).unwrap();
    let (_, _version, rest) = der::read(signed_data).unwrap();
    let (_, _digests, rest) = der::read(rest).unwrap();
    let (_, _encap, rest) = der::read(rest).unwrap();
    let (tag, mut certs, rest) = der::read(rest).unwrap();
    assert_eq!(tag, 0xa0);
    let (tag, signers, rest) = der::read(rest).unwrap();
    assert_eq!((tag, signers.len(), rest.len()), (der::SET, 0, 0));
    let mut found = Vec::new();
    while !certs.is_empty() {
        let (_, _, after) = der::read(certs).unwrap();
        found.push(&certs[..certs.len() - after.len()]);
        certs = after;
    }
    assert_eq!(
        found,
        vec![chain.intermediate.cert().cert_der(), chain.leaf.cert_der()]
    );
    assert_canonical_pem(&chain.pkcs7_pem(), "PKCS7");

    if let Some(text) = assert_openssl_ok(&["pkcs7", "-inform", "DER", "-print_certs"], &der) {
        let printed = pem_certs(
            &text
                .lines()
                .filter(|l| !l.starts_with("subject") && !l.starts_with("issuer") && !l.is_empty())
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
        assert_eq!(
            printed,
            found.iter().map(|c| c.to_vec()).collect::<Vec<_>>()
        );
    }
    assert_openssl_ok(
        &["pkcs7", "-print_certs", "-noout"],
        chain.pkcs7_pem().as_bytes(),
    );
}

#[test]
fn pkcs12_round_trips() {
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};

    let chain = TestPki::fixed().server_chain(&["p12.test"], KeyKind::EcdsaP256);
    let p12 = chain.pkcs12("s3cret");
    let store = KeyStore::from_pkcs12(&p12, "s3cret", Pkcs12ImportPolicy::Strict)
        .expect("PKCS#12 reads back");
    let (_, key_chain) = store.private_key_chain().expect("key entry");
    assert_eq!(
        key_chain.key().as_der(),
        chain.leaf.key().pkcs8_der().as_slice()
    );
    let certs: Vec<&[u8]> = key_chain.certs().iter().map(|c| c.as_der()).collect();
    assert_eq!(
        certs,
        vec![chain.leaf.cert_der(), chain.intermediate.cert().cert_der()]
    );
    assert!(KeyStore::from_pkcs12(&p12, "wrong", Pkcs12ImportPolicy::Strict).is_err());

    if let Some(text) = assert_openssl_ok(
        &["pkcs12", "-info", "-noout", "-passin", "pass:s3cret"],
        &p12,
    ) {
        let _ = text;
    }
}

#[test]
fn pem_helper_wraps_at_64() {
    assert_eq!(pem("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
    let text = pem("DATA", &[0u8; 100]);
    assert_canonical_pem(&text, "DATA");
    assert_eq!(text.lines().count(), 2 + 3);
}

#[test]
fn der_long_lengths_round_trip() {
    for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
        let content = vec![7u8; len];
        let encoded = der::tlv(der::OCTET_STRING, &content);
        let (tag, decoded, rest) = der::read(&encoded).unwrap();
        assert_eq!(
            (tag, decoded, rest.len()),
            (der::OCTET_STRING, content.as_slice(), 0)
        );
    }
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TestPki>();
    check::<Ca>();
    check::<Issued>();
    check::<Chain>();
    check::<TestKey>();
}
