//! The costs of a hot swap (sozu measures the same): building the snapshot
//! of a whole store, and reloading one certificate in a large one.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tlsgate_cert_store::{Binding, CertKind, CertificateName, Store, StoreConfig};
use tlsgate_test_pki::{KeyKind, TestPki, Validity};

/// Fills `dir` with `count` server certificate folders `c0`, `c1`, … Real,
/// distinct certificates are cycled (100 of them), because generating 10,000
/// certificates would dominate the run; validation cost is the same.
/// Returns the (cert, key) PEM pairs used.
fn fill(dir: &Path, count: usize) -> Vec<(String, String)> {
    let pki = TestPki::now_real();
    let root = pki.root("Bench Root", KeyKind::EcdsaP256);
    let issued: Vec<(String, String)> = (0..100)
        .map(|i| {
            let leaf = root.server(
                &[&format!("h{i}.example.com")],
                KeyKind::EcdsaP256,
                Validity::Normal,
            );
            (
                format!("{}{}", leaf.cert_pem(), root.cert().cert_pem()),
                leaf.key().pkcs8_pem(),
            )
        })
        .collect();
    for i in 0..count {
        let folder = dir.join("server").join(format!("c{i}"));
        fs::create_dir_all(&folder).unwrap();
        let (cert, key) = &issued[i % issued.len()];
        fs::write(folder.join("cert.pem"), cert).unwrap();
        fs::write(folder.join("key.pem"), key).unwrap();
    }
    issued
}

fn open(dir: &Path) -> Arc<Store> {
    Store::open(StoreConfig::new(dir)).unwrap()
}

fn snapshot_build(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1_000);
    let mut group = c.benchmark_group("store_open");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function(BenchmarkId::from_parameter(1_000), |b| {
        b.iter(|| {
            let store = open(dir.path());
            assert_eq!(store.snapshot().count(CertKind::Server), 1_000);
            store
        });
    });
    group.finish();
}

fn reload_one(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let versions = fill(dir.path(), 10_000);
    let folder = dir.path().join("server").join("c4242");
    // Each iteration loads a different version than the live one, so the
    // store really re-validates and republishes (identical bytes are skipped).
    let mut flip = 0usize;
    let mut next_version = || {
        flip += 1;
        let (cert, key) = &versions[flip % 2];
        fs::write(folder.join("cert.pem"), cert).unwrap();
        fs::write(folder.join("key.pem"), key).unwrap();
    };
    let store = open(dir.path());
    assert_eq!(store.snapshot().count(CertKind::Server), 10_000);
    let mut group = c.benchmark_group("store_reload_one_of_10000");
    group.throughput(Throughput::Elements(1));
    group.bench_function("unbound", |b| {
        b.iter_batched(
            &mut next_version,
            |()| store.reload_folder(CertKind::Server, black_box("c4242")),
            BatchSize::PerIteration,
        );
    });
    // Worst case: one listener serves all 10,000, so its SNI index is rebuilt.
    store.set_bindings(vec![Binding {
        listener: "web".into(),
        certificates: (0..10_000)
            .map(|i| CertificateName::parse(&format!("c{i}")).unwrap())
            .collect(),
        client_auth: None,
    }]);
    group.bench_function("listener_with_all_10000", |b| {
        b.iter_batched(
            &mut next_version,
            |()| store.reload_folder(CertKind::Server, black_box("c4242")),
            BatchSize::PerIteration,
        );
    });
    let reloads = store.counters().successes();
    assert!(reloads > 10_000, "reloads really happened: {reloads}");
    group.finish();
}

criterion_group!(benches, snapshot_build, reload_one);
criterion_main!(benches);
