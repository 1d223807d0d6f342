//! Certificate selection per handshake (R7, R8) and index build per reload.
//!
//! R7 says lookup cost must not grow with the number of certificates on a
//! listener: `sni_select` runs the same lookups against 10 and 10,000
//! certificates and the two should take about the same time. `sni_build` is
//! part of the cost of a hot swap (the index is rebuilt off the handshake
//! path whenever a listener's certificates change).
//!
//! Ten real keys are shared by all entries (real ones, so the entries are
//! what the store would build); each entry gets its own names.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rustls::sign::CertifiedKey;
use rustls_pki_types::UnixTime;
use tlsgate_cert_store::{CertificateName, ClientCapabilities, ServerCert, SniIndex};
use tlsgate_test_pki::{FIXED_NOW, KeyKind, TestPki};
use tlsgate_validator::{Kind, Options, Origin, Request, Source, Summary, check};

/// A real certificate, as the store would hold it.
struct Template {
    certified: Arc<CertifiedKey>,
    summary: Summary,
    is_ecdsa: bool,
}

fn templates() -> Vec<Template> {
    let pki = TestPki::fixed();
    let options = Options {
        kind: Kind::Server,
        strict: false,
        require_key: true,
        now: UnixTime::since_unix_epoch(Duration::from_secs(FIXED_NOW as u64)),
        origin: Origin::Store,
    };
    // Both key types, as a listener with dual certificates has.
    [KeyKind::EcdsaP256, KeyKind::Rsa2048]
        .into_iter()
        .cycle()
        .take(10)
        .map(|kind| {
            let chain = pki.server_chain(&["template.example.com"], kind);
            let cert = chain.pem_leaf_first();
            let key = chain.leaf.key().pkcs8_pem();
            let validated = check(&Request {
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
            })
            .into_validated()
            .unwrap();
            let bundle = validated.bundle();
            let signing_key =
                rustls::crypto::aws_lc_rs::sign::any_supported_type(&bundle.private_key().unwrap())
                    .unwrap();
            Template {
                certified: Arc::new(CertifiedKey::new(bundle.chain().to_vec(), signing_key)),
                summary: bundle.summary().clone(),
                is_ecdsa: kind.is_ecdsa(),
            }
        })
        .collect()
}

/// `count` entries: a default, then `host{i}.example.com`, and on every
/// tenth entry (5, 15, …) also a wildcard `*.zone{i}.example.com`.
fn listener(templates: &[Template], count: usize) -> Vec<Arc<ServerCert>> {
    (0..count)
        .map(|i| {
            let template = &templates[i % templates.len()];
            let dns_names = if i == 0 {
                vec!["default.example.net".to_owned()]
            } else if i % 10 == 5 {
                vec![
                    format!("host{i}.example.com"),
                    format!("*.zone{i}.example.com"),
                ]
            } else {
                vec![format!("host{i}.example.com")]
            };
            Arc::new(ServerCert {
                name: CertificateName::parse(&format!("cert-{i}")).unwrap(),
                certified: template.certified.clone(),
                summary: template.summary.clone(),
                is_ecdsa: template.is_ecdsa,
                dns_names,
                warnings: Vec::new(),
                folder: PathBuf::from(format!("server/cert-{i}")),
                ocsp_next_update: None,
            })
        })
        .collect()
}

fn select(c: &mut Criterion) {
    let templates = templates();
    let client = ClientCapabilities { ecdsa: true };
    let mut group = c.benchmark_group("sni_select");
    group.throughput(Throughput::Elements(1));
    for count in [10, 10_000] {
        let index = SniIndex::build(&listener(&templates, count));
        assert_eq!(index.len(), count);
        // Names present in both sizes, so the cases do the same work.
        let cases = [
            ("exact", "host5.example.com"),
            ("wildcard", "www.zone5.example.com"),
            ("miss_default", "nothing.example.org"),
        ];
        for (case, name) in cases {
            group.bench_with_input(BenchmarkId::new(case, count), &name, |b, name| {
                b.iter(|| index.select(black_box(Some(*name)), black_box(&client)));
            });
        }
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let templates = templates();
    let mut group = c.benchmark_group("sni_build");
    // One build of 10,000 takes milliseconds; fewer samples keep the run short.
    group.sample_size(20);
    for count in [1_000, 10_000] {
        let certs = listener(&templates, count);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(BenchmarkId::from_parameter(count), &certs, |b, certs| {
            b.iter(|| SniIndex::build(black_box(certs)));
        });
    }
    group.finish();
}

criterion_group!(benches, select, build);
criterion_main!(benches);
