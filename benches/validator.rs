//! Validation cost of a typical upload or reload: leaf + intermediate + key.
//! Runs on every certificate upload and every store reload, so it bounds how
//! fast a 10,000-certificate store can load.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls_pki_types::UnixTime;
use tlsgate_test_pki::{FIXED_NOW, KeyKind, TestPki};
use tlsgate_validator::{Kind, Options, Origin, Request, Source, check};

fn validate(c: &mut Criterion) {
    let pki = TestPki::fixed();
    let options = Options {
        kind: Kind::Server,
        strict: false,
        require_key: true,
        now: UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64)),
        origin: Origin::Cli,
    };
    let mut group = c.benchmark_group("validate_bundle");
    group.throughput(Throughput::Elements(1));
    for (label, kind) in [
        ("ecdsa_p256", KeyKind::EcdsaP256),
        ("rsa_2048", KeyKind::Rsa2048),
    ] {
        let chain = pki.server_chain(&["www.example.com"], kind);
        let cert = chain.pem_leaf_first();
        let key = chain.leaf.key().pkcs8_pem();
        group.bench_function(format!("pem_leaf_intermediate_key/{label}"), |b| {
            b.iter(|| {
                let report = check(black_box(&Request {
                    certificate: Source {
                        name: "cert.pem",
                        bytes: cert.as_bytes(),
                    },
                    private_key: Some(Source {
                        name: "key.pem",
                        bytes: key.as_bytes(),
                    }),
                    password: None,
                    options,
                }));
                assert!(report.ok());
                report
            });
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
