//! The store's write path (what the admin API's upload, replace and delete
//! use): atomic, serialised with the watcher, live when it returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use tlsgate_cert_store::{
    Binding, CertKind, CertificateName, Content, Store, StoreConfig, WriteMode,
};
use tlsgate_test_pki::{Ca, Issued, KeyKind, TestPki, Validity};

fn name(s: &str) -> CertificateName {
    CertificateName::parse(s).unwrap()
}

fn server(issued: &Issued, root: &Ca) -> Content {
    Content::Server {
        chain_pem: format!("{}{}", issued.cert_pem(), root.cert().cert_pem()),
        key_pem: issued.key().pkcs8_pem(),
    }
}

fn open() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    (dir, store)
}

#[test]
fn create_replace_and_delete_follow_the_rules() {
    let pki = TestPki::now_real();
    let root = pki.root("Write Root", KeyKind::EcdsaP256);
    let a = root.server(&["a.example"], KeyKind::EcdsaP256, Validity::Normal);
    let b = root.server(&["a.example"], KeyKind::Rsa2048, Validity::Normal);
    let (_dir, store) = open();
    let www = name("www");

    assert_eq!(
        store
            .write(&www, &server(&a, &root), WriteMode::Replace)
            .unwrap_err()
            .code(),
        "CertificateNotFound"
    );
    store
        .write(&www, &server(&a, &root), WriteMode::Create)
        .unwrap();
    assert_eq!(
        store.snapshot().server(&www).unwrap().certified.cert[0],
        a.certificate_der()
    );
    assert_eq!(
        store
            .write(&www, &server(&b, &root), WriteMode::Create)
            .unwrap_err()
            .code(),
        "CertificateAlreadyExists"
    );
    store
        .write(&www, &server(&b, &root), WriteMode::Replace)
        .unwrap();
    assert_eq!(
        store.snapshot().server(&www).unwrap().certified.cert[0],
        b.certificate_der()
    );

    store.set_bindings(vec![Binding {
        listener: "web".into(),
        certificates: vec![www.clone()],
        client_auth: None,
    }]);
    let err = store.delete(CertKind::Server, &www).unwrap_err();
    assert_eq!(err.code(), "CertificateInUse");
    assert!(err.to_string().contains("web"));
    store.set_bindings(Vec::new());
    store.delete(CertKind::Server, &www).unwrap();
    assert!(store.snapshot().server(&www).is_none());
    assert_eq!(
        store.delete(CertKind::Server, &www).unwrap_err().code(),
        "CertificateNotFound"
    );
}

#[test]
fn names_with_slashes_and_dots_stay_inside_the_store_and_keys_are_private() {
    let pki = TestPki::now_real();
    let root = pki.root("Names Root", KeyKind::EcdsaP256);
    let a = root.server(&["n.example"], KeyKind::EcdsaP256, Validity::Normal);
    let (dir, store) = open();
    for raw in ["../escape", "a/../../b", "..", "team/www"] {
        store
            .write(&name(raw), &server(&a, &root), WriteMode::Create)
            .unwrap();
    }
    let parent = dir.path().parent().unwrap();
    assert!(!parent.join("escape").exists() && !parent.join("b").exists());
    let mut folders: Vec<String> = std::fs::read_dir(dir.path().join("server"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        ["%2E.", "%2E.%2Fescape", "a%2F..%2F..%2Fb", "team%2Fwww"]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir.path().join("server/team%2Fwww/key.pem");
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn a_refused_write_reports_the_code_and_keeps_the_live_version() {
    let pki = TestPki::now_real();
    let root = pki.root("Refuse Root", KeyKind::EcdsaP256);
    let good = root.server(&["r.example"], KeyKind::EcdsaP256, Validity::Normal);
    let other = root.server(&["r.example"], KeyKind::EcdsaP256, Validity::Normal);
    let (_dir, store) = open();
    let r = name("r");
    store
        .write(&r, &server(&good, &root), WriteMode::Create)
        .unwrap();
    let torn = Content::Server {
        chain_pem: good.cert_pem(),
        key_pem: other.key().pkcs8_pem(),
    };
    let err = store.write(&r, &torn, WriteMode::Replace).unwrap_err();
    assert_eq!(err.code(), "KeyCertificateMismatch");
    assert_eq!(
        store.snapshot().server(&r).unwrap().certified.cert[0],
        good.certificate_der()
    );
}

#[test]
fn quota_applies_to_creation() {
    let pki = TestPki::now_real();
    let root = pki.root("Quota Write Root", KeyKind::EcdsaP256);
    let a = root.server(&["q.example"], KeyKind::EcdsaP256, Validity::Normal);
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.max_server_certificates = 1;
    let store = Store::open(config).unwrap();
    store
        .write(&name("one"), &server(&a, &root), WriteMode::Create)
        .unwrap();
    let err = store
        .write(&name("two"), &server(&a, &root), WriteMode::Create)
        .unwrap_err();
    assert_eq!(err.code(), "QuotaExceeded");
}

#[test]
fn concurrent_writers_of_one_name_leave_one_complete_version() {
    let pki = TestPki::now_real();
    let root = pki.root("Race Root", KeyKind::EcdsaP256);
    let versions: Vec<Issued> = (0..6)
        .map(|_| root.server(&["race.example"], KeyKind::EcdsaP256, Validity::Normal))
        .collect();
    let (_dir, store) = open();
    let race = name("race");
    store
        .write(&race, &server(&versions[0], &root), WriteMode::Create)
        .unwrap();
    let _watcher = store.watch().unwrap();
    std::thread::scope(|scope| {
        for issued in &versions {
            let store = store.clone();
            let race = race.clone();
            let content = server(issued, &root);
            scope.spawn(move || {
                for _ in 0..5 {
                    store.write(&race, &content, WriteMode::Replace).unwrap();
                }
            });
        }
    });
    // Whatever won, cert and key on disk and in service belong together.
    store.rescan();
    let live = store.snapshot().server(&race).unwrap().clone();
    assert!(live.certified.keys_match().is_ok());
    assert!(
        versions
            .iter()
            .any(|v| live.certified.cert[0] == v.certificate_der())
    );
    assert!(store.refusal(CertKind::Server, &race).is_none());
}
