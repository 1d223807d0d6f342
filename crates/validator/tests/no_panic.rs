//! Property tests: no input makes the validator panic. Arbitrary bytes and
//! mutations of valid PEM, DER, PKCS#7 and PKCS#12 go through `check` and
//! through the canonical output that `cert convert` writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use rustls_pki_types::UnixTime;
use tlsgate_test_pki::{FIXED_NOW, KeyKind, TestPki};
use tlsgate_validator::{Kind, Options, Origin, Request, Source, check};

/// Valid inputs to mutate: (certificate input, key input).
fn corpus() -> &'static Vec<(Vec<u8>, Vec<u8>)> {
    static CORPUS: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let pki = TestPki::fixed();
        let ec = pki.server_chain(&["ec.example"], KeyKind::EcdsaP256);
        let rsa = pki.server_chain(&["rsa.example"], KeyKind::Rsa2048);
        vec![
            (
                ec.pem_leaf_first().into_bytes(),
                ec.leaf.key().pkcs8_pem().into_bytes(),
            ),
            (
                ec.leaf.cert_der().to_vec(),
                ec.leaf.key().sec1_pem_with_params().unwrap().into_bytes(),
            ),
            (
                rsa.pem_wrong_order().into_bytes(),
                rsa.leaf.key().pkcs1_der().unwrap(),
            ),
            (rsa.pkcs7_der(), rsa.leaf.key().pkcs8_der()),
            (
                rsa.pkcs7_pem().into_bytes(),
                rsa.leaf.key().pkcs1_pem().unwrap().into_bytes(),
            ),
            (ec.pkcs12("pw"), Vec::new()),
        ]
    })
}

/// Runs everything `cert check` and `cert convert` run on the inputs.
fn exercise(cert: &[u8], key: Option<&[u8]>) {
    for kind in [Kind::Server, Kind::Ca] {
        let report = check(&Request {
            certificate: Source {
                name: "cert",
                bytes: cert,
            },
            private_key: key.map(|bytes| Source { name: "key", bytes }),
            password: Some(b"pw"),
            options: Options {
                kind,
                strict: true,
                require_key: false,
                now: UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64)),
                origin: Origin::Store,
            },
        });
        for finding in report.errors.iter().chain(&report.warnings) {
            assert!(!finding.message().is_empty());
        }
        if let Some(bundle) = &report.bundle {
            let _ = bundle.certificate_pem();
            let _ = bundle.private_key_pem();
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        if out.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip { at, xor } => {
                let i = at % out.len();
                out[i] ^= xor;
            }
            Mutation::Truncate { at } => out.truncate(at % out.len()),
            Mutation::Insert { at, byte } => {
                let i = at % (out.len() + 1);
                out.insert(i, byte);
            }
            Mutation::Delete { at, len } => {
                let i = at % out.len();
                let end = (i + len).min(out.len());
                out.drain(i..end);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(cert in proptest::collection::vec(any::<u8>(), 0..2048),
                                   key in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&cert, Some(&key));
        exercise(&cert, None);
    }

    #[test]
    fn arbitrary_text_inside_pem_armour_never_panics(body in "[A-Za-z0-9+/=\\r\\n :-]{0,600}",
                                                     label in prop_oneof![
                                                         Just("CERTIFICATE"), Just("PKCS7"),
                                                         Just("PRIVATE KEY"), Just("EC PRIVATE KEY"),
                                                         Just("RSA PRIVATE KEY"), Just("ENCRYPTED PRIVATE KEY"),
                                                         Just("EC PARAMETERS"), Just("TRUSTED CERTIFICATE")]) {
        let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        exercise(pem.as_bytes(), Some(pem.as_bytes()));
    }

    #[test]
    fn mutated_valid_inputs_never_panic(which in 0..6usize,
                                        cert_mutations in proptest::collection::vec(mutation(), 0..4),
                                        key_mutations in proptest::collection::vec(mutation(), 0..3)) {
        let (cert, key) = &corpus()[which];
        let cert = apply(cert, &cert_mutations);
        let key = apply(key, &key_mutations);
        exercise(&cert, (!key.is_empty()).then_some(key.as_slice()));
    }
}
