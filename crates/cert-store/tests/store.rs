//! The watched store end to end: files change on disk the ways operators
//! and Kubernetes change them, and real TLS handshakes (rustls client over
//! an in-memory duplex) show what is served. Tests wait on store events,
//! never on sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tlsgate_cert_store::{
    Binding, CertKind, CertificateName, Store, StoreConfig, StoreEvent, StoreResolver, folder_for,
};
use tlsgate_test_pki::{Ca, CaShape, Issued, KeyKind, TestPki, Validity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

fn name(s: &str) -> CertificateName {
    CertificateName::parse(s).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Writes a file the way careful tools do: a temporary file, then a rename.
fn write_atomic(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn server_folder(store: &Path, cert: &str) -> PathBuf {
    let dir = store.join("server").join(folder_for(&name(cert)));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a server certificate (leaf + issuer chain) and its key.
fn put_server(store: &Path, cert: &str, issued: &Issued, issuer: &Ca) {
    let dir = server_folder(store, cert);
    let chain = format!("{}{}", issued.cert_pem(), issuer.cert().cert_pem());
    write_atomic(&dir.join("key.pem"), issued.key().pkcs8_pem().as_bytes());
    write_atomic(&dir.join("cert.pem"), chain.as_bytes());
}

struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<Store>,
    events: broadcast::Receiver<StoreEvent>,
    _watcher: tlsgate_cert_store::Watcher,
}

impl Harness {
    /// A watched store; `setup` fills it before it opens.
    fn new(setup: impl FnOnce(&Path)) -> Harness {
        Harness::with_config(setup, |_| {})
    }

    fn with_config(setup: impl FnOnce(&Path), tune: impl FnOnce(&mut StoreConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        setup(&path);
        let mut config = StoreConfig::new(&path);
        tune(&mut config);
        let store = Store::open(config).unwrap();
        let events = store.subscribe();
        let watcher = store.watch().unwrap();
        Harness {
            _dir: dir,
            path,
            store,
            events,
            _watcher: watcher,
        }
    }

    /// Waits (bounded) for the first event that matches.
    async fn wait_for(&mut self, what: &str, matches: impl Fn(&StoreEvent) -> bool) -> StoreEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap();
            if matches(&event) {
                return event;
            }
        }
    }

    async fn loaded(&mut self, cert: &str) -> StoreEvent {
        let wanted = name(cert);
        self.wait_for(
            &format!("{cert} loaded"),
            |e| matches!(e, StoreEvent::Loaded { name, .. } if *name == wanted),
        )
        .await
    }

    async fn refused(&mut self, cert: &str) -> StoreEvent {
        let wanted = name(cert);
        self.wait_for(
            &format!("{cert} refused"),
            |e| matches!(e, StoreEvent::Refused { name, .. } if *name == wanted),
        )
        .await
    }

    fn bind(&self, listener: &str, certs: &[&str]) {
        self.store.set_bindings(vec![Binding {
            listener: listener.into(),
            certificates: certs.iter().map(|c| name(c)).collect(),
            client_auth: None,
        }]);
    }

    /// One handshake against `listener`; returns the leaf the server sent.
    async fn handshake(&self, listener: &str, root: &Ca, sni: &str) -> CertificateDer<'static> {
        let server_config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(StoreResolver::new(self.store.shared(), listener)));
        let mut roots = RootCertStore::empty();
        roots.add(root.cert().certificate_der()).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await?;
            tls.write_all(b"x").await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let mut tls = connector
            .connect(ServerName::try_from(sni.to_string()).unwrap(), client_io)
            .await
            .expect("handshake");
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.expect("server data");
        server.await.unwrap().expect("server side");
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }
}

fn der(issued: &Issued) -> CertificateDer<'static> {
    issued.certificate_der()
}

#[tokio::test]
async fn layout_is_loaded_with_encoded_names_and_kubernetes_file_names() {
    let pki = TestPki::now_real();
    let root = pki.root("Layout Root", KeyKind::EcdsaP256);
    let a = root.server(&["a.example"], KeyKind::EcdsaP256, Validity::Normal);
    let b = root.server(&["b.example"], KeyKind::EcdsaP256, Validity::Normal);
    let h = Harness::new(|path| {
        put_server(path, "team/a", &a, &root);
        let dir = server_folder(path, "../b");
        fs::write(dir.join("tls.crt"), b.cert_pem()).unwrap();
        fs::write(dir.join("tls.key"), b.key().pkcs8_pem()).unwrap();
        let ca = path.join("ca").join("corp");
        fs::create_dir_all(&ca).unwrap();
        fs::write(ca.join("ca.crt"), root.cert().cert_pem()).unwrap();
        fs::write(ca.join("crl.pem"), root.crl_pem(&[], 7)).unwrap();
        // Not a name encoding: ignored.
        fs::create_dir_all(path.join("server").join(".tmp")).unwrap();
    });
    assert!(h.path.join("server").join("team%2Fa").is_dir());
    assert!(h.path.join("server").join("%2E.%2Fb").is_dir());
    let snapshot = h.store.snapshot();
    assert_eq!(snapshot.count(CertKind::Server), 2);
    assert_eq!(
        snapshot.server(&name("team/a")).unwrap().dns_names,
        ["a.example"]
    );
    assert!(snapshot.server(&name("../b")).is_some());
    let ca = snapshot.ca(&name("corp")).unwrap();
    assert_eq!(ca.crls.len(), 1);
    h.bind("web", &["../b"]);
    assert_eq!(h.handshake("web", &root, "b.example").await, der(&b));
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_on_the_next_handshake() {
    let pki = TestPki::now_real();
    let root = pki.root("Swap Root", KeyKind::EcdsaP256);
    let old = root.server(&["www.example"], KeyKind::EcdsaP256, Validity::Normal);
    let new = root.server(&["www.example"], KeyKind::Rsa2048, Validity::Normal);
    let mut h = Harness::new(|path| put_server(path, "www", &old, &root));
    h.bind("web", &["www"]);
    assert_eq!(h.handshake("web", &root, "www.example").await, der(&old));

    // A renewal job replaces both files; the next handshake gets the new pair.
    let dir = server_folder(&h.path, "www");
    let chain = format!("{}{}", new.cert_pem(), root.cert().cert_pem());
    let tmp = h.path.join("staging");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("cert.pem"), chain).unwrap();
    fs::write(tmp.join("key.pem"), new.key().pkcs8_pem()).unwrap();
    fs::rename(tmp.join("key.pem"), dir.join("key.pem")).unwrap();
    fs::rename(tmp.join("cert.pem"), dir.join("cert.pem")).unwrap();
    loop {
        h.loaded("www").await;
        if h.store
            .snapshot()
            .server(&name("www"))
            .unwrap()
            .certified
            .cert[0]
            == der(&new)
        {
            break;
        }
    }
    assert_eq!(h.handshake("web", &root, "www.example").await, der(&new));
}

#[tokio::test]
async fn a_torn_pair_is_never_served_whichever_file_lands_first() {
    let pki = TestPki::now_real();
    let root = pki.root("Torn Root", KeyKind::EcdsaP256);
    for cert_first in [true, false] {
        let old = root.server(&["pair.example"], KeyKind::EcdsaP256, Validity::Normal);
        let new = root.server(&["pair.example"], KeyKind::EcdsaP256, Validity::Normal);
        let mut h = Harness::new(|path| put_server(path, "pair", &old, &root));
        h.bind("web", &["pair"]);
        let dir = server_folder(&h.path, "pair");
        let new_chain = format!("{}{}", new.cert_pem(), root.cert().cert_pem());
        let new_key = new.key().pkcs8_pem();

        // Half of the pair lands: refused, the old pair keeps serving.
        if cert_first {
            write_atomic(&dir.join("cert.pem"), new_chain.as_bytes());
        } else {
            write_atomic(&dir.join("key.pem"), new_key.as_bytes());
        }
        let StoreEvent::Refused { code, .. } = h.refused("pair").await else {
            unreachable!()
        };
        assert_eq!(code, "KeyCertificateMismatch");
        let refusal = h.store.refusal(CertKind::Server, &name("pair")).unwrap();
        assert!(
            refusal.1.contains("clears when the second file lands"),
            "{refusal:?}"
        );
        // The handshake completes (a torn pair would fail CertificateVerify) and shows the old leaf.
        assert_eq!(h.handshake("web", &root, "pair.example").await, der(&old));
        assert!(h.store.counters().failures() >= 1);

        // The other half lands: the new pair goes live together.
        if cert_first {
            write_atomic(&dir.join("key.pem"), new_key.as_bytes());
        } else {
            write_atomic(&dir.join("cert.pem"), new_chain.as_bytes());
        }
        h.loaded("pair").await;
        assert_eq!(h.handshake("web", &root, "pair.example").await, der(&new));
        assert!(h.store.refusal(CertKind::Server, &name("pair")).is_none());
    }
}

#[tokio::test]
async fn a_renewal_that_deletes_before_it_copies_never_unloads_the_live_pair() {
    let pki = TestPki::now_real();
    let root = pki.root("Delete Root", KeyKind::EcdsaP256);
    // `rm cert.pem` alone, and `rm cert.pem key.pem` (the folder emptied).
    for remove_key_too in [false, true] {
        let old = root.server(&["del.example"], KeyKind::EcdsaP256, Validity::Normal);
        let new = root.server(&["del.example"], KeyKind::EcdsaP256, Validity::Normal);
        let mut h = Harness::new(|path| put_server(path, "del", &old, &root));
        h.bind("web", &["del"]);
        let dir = server_folder(&h.path, "del");

        fs::remove_file(dir.join("cert.pem")).unwrap();
        if remove_key_too {
            fs::remove_file(dir.join("key.pem")).unwrap();
        }
        let StoreEvent::Refused { code, .. } = h.refused("del").await else {
            unreachable!()
        };
        assert_eq!(code, "InvalidCertificateFormat");
        let refusal = h.store.refusal(CertKind::Server, &name("del")).unwrap();
        assert!(
            refusal.1.contains("holds no certificate file now")
                && refusal.1.contains(if remove_key_too {
                    "(nothing;"
                } else {
                    "(key.pem;"
                })
                && refusal.1.contains("remove the folder"),
            "{refusal:?}"
        );
        assert!(h.store.snapshot().server(&name("del")).is_some());
        assert_eq!(h.handshake("web", &root, "del.example").await, der(&old));

        // The new files land, one at a time: the new pair goes live.
        let chain = format!("{}{}", new.cert_pem(), root.cert().cert_pem());
        fs::write(dir.join("cert.pem"), chain).unwrap();
        fs::write(dir.join("key.pem"), new.key().pkcs8_pem()).unwrap();
        h.loaded("del").await;
        assert_eq!(h.handshake("web", &root, "del.example").await, der(&new));
        assert!(h.store.refusal(CertKind::Server, &name("del")).is_none());
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_kubernetes_secret_volume_data_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let pki = TestPki::now_real();
    let root = pki.root("K8s Root", KeyKind::EcdsaP256);
    let v1 = root.server(&["k8s.example"], KeyKind::EcdsaP256, Validity::Normal);
    let v2 = root.server(&["k8s.example"], KeyKind::EcdsaP256, Validity::Normal);
    let write_version = |dir: &Path, version: &str, issued: &Issued| {
        let data = dir.join(version);
        fs::create_dir_all(&data).unwrap();
        let chain = format!("{}{}", issued.cert_pem(), root.cert().cert_pem());
        fs::write(data.join("tls.crt"), chain).unwrap();
        fs::write(data.join("tls.key"), issued.key().pkcs8_pem()).unwrap();
    };
    let mut h = Harness::new(|path| {
        // What the kubelet lays out for a mounted kubernetes.io/tls Secret.
        let dir = server_folder(path, "k8s");
        write_version(&dir, "..2026_11_22_v1", &v1);
        symlink("..2026_11_22_v1", dir.join("..data")).unwrap();
        symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    });
    h.bind("web", &["k8s"]);
    assert_eq!(h.handshake("web", &root, "k8s.example").await, der(&v1));

    // The kubelet's update: a new versioned folder, then an atomic swap of ..data.
    let dir = server_folder(&h.path, "k8s");
    write_version(&dir, "..2026_11_22_v2", &v2);
    symlink("..2026_11_22_v2", dir.join("..data_tmp")).unwrap();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    fs::remove_dir_all(dir.join("..2026_11_22_v1")).unwrap();
    loop {
        h.loaded("k8s").await;
        if h.store
            .snapshot()
            .server(&name("k8s"))
            .unwrap()
            .certified
            .cert[0]
            == der(&v2)
        {
            break;
        }
    }
    assert_eq!(h.handshake("web", &root, "k8s.example").await, der(&v2));
}

#[tokio::test]
async fn garbage_over_a_certificate_keeps_the_old_one_and_is_recorded() {
    let pki = TestPki::now_real();
    let root = pki.root("Garbage Root", KeyKind::EcdsaP256);
    let good = root.server(&["g.example"], KeyKind::EcdsaP256, Validity::Normal);
    let mut h = Harness::new(|path| put_server(path, "g", &good, &root));
    h.bind("web", &["g"]);
    let failures = h.store.counters().failures();
    let dir = server_folder(&h.path, "g");
    fs::write(
        dir.join("cert.pem"),
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n",
    )
    .unwrap();
    let StoreEvent::Refused { code, message, .. } = h.refused("g").await else {
        unreachable!()
    };
    assert_eq!(code, "InvalidCertificateFormat");
    assert!(message.contains("cert.pem"), "{message}");
    assert!(h.store.counters().failures() > failures);
    assert_eq!(
        h.store.refusal(CertKind::Server, &name("g")).unwrap().0,
        "InvalidCertificateFormat"
    );
    assert_eq!(h.handshake("web", &root, "g.example").await, der(&good));
}

/// A renewal issued by an "intermediate" that is not a CA (`openssl x509
/// -req` without the CA extensions) is refused: clients would refuse the
/// chain, so the certificate already serving stays.
#[tokio::test]
async fn a_chain_whose_intermediate_is_not_a_ca_keeps_the_old_one() {
    let pki = TestPki::now_real();
    let root = pki.root("Issuer Root", KeyKind::EcdsaP256);
    let good = root.server(&["n.example"], KeyKind::EcdsaP256, Validity::Normal);
    let mut h = Harness::new(|path| put_server(path, "n", &good, &root));
    h.bind("web", &["n"]);
    let not_a_ca = root.intermediate_with_shape("Not A CA", KeyKind::EcdsaP256, CaShape::CaFalse);
    let renewed = not_a_ca.server(&["n.example"], KeyKind::EcdsaP256, Validity::Normal);
    put_server(&h.path, "n", &renewed, &not_a_ca);
    // The key may be seen before its certificate (a mismatch, refused too);
    // the complete pair is refused for its chain.
    let mut codes = Vec::new();
    while codes.last().map(String::as_str) != Some("InvalidCertificateChain") {
        assert!(codes.len() < 3, "refusals: {codes:?}");
        let StoreEvent::Refused { code, message, .. } = h.refused("n").await else {
            unreachable!()
        };
        if code == "InvalidCertificateChain" {
            assert!(message.contains("CA:FALSE"), "{message}");
        }
        codes.push(code.to_string());
    }
    assert_eq!(h.handshake("web", &root, "n.example").await, der(&good));
}

/// certbot's live folder copied (or linked) into the store as it is:
/// `cert.pem` is the leaf alone and there is no `key.pem`, so the pair
/// used is `fullchain.pem` + `privkey.pem`, and clients get the chain.
#[tokio::test]
async fn a_certbot_folder_serves_fullchain_and_privkey() {
    let chain = TestPki::now_real().server_chain(&["le.example"], KeyKind::EcdsaP256);
    let mut h = Harness::new(|path| {
        let dir = server_folder(path, "le.example");
        write_atomic(&dir.join("cert.pem"), chain.leaf.cert_pem().as_bytes());
        let intermediate = chain.intermediate.cert().cert_pem();
        write_atomic(&dir.join("chain.pem"), intermediate.as_bytes());
        write_atomic(
            &dir.join("fullchain.pem"),
            chain.pem_leaf_first().as_bytes(),
        );
        write_atomic(
            &dir.join("privkey.pem"),
            chain.leaf.key().pkcs8_pem().as_bytes(),
        );
    });
    h.bind("web", &["le.example"]);
    assert!(h.store.snapshot().server(&name("le.example")).is_some());
    // Trusting only the root: the handshake needs the intermediate from
    // fullchain.pem (cert.pem alone would fail it).
    assert_eq!(
        h.handshake("web", &chain.root, "le.example").await,
        der(&chain.leaf)
    );
    // A renewal (certbot rewrites both) is picked up like any other.
    let renewed = chain
        .intermediate
        .server(&["le.example"], KeyKind::EcdsaP256, Validity::Normal);
    let dir = server_folder(&h.path, "le.example");
    let full = format!(
        "{}{}",
        renewed.cert_pem(),
        chain.intermediate.cert().cert_pem()
    );
    write_atomic(
        &dir.join("privkey.pem"),
        renewed.key().pkcs8_pem().as_bytes(),
    );
    write_atomic(&dir.join("fullchain.pem"), full.as_bytes());
    write_atomic(&dir.join("cert.pem"), renewed.cert_pem().as_bytes());
    let wanted = der(&renewed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.handshake("web", &chain.root, "le.example").await != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "renewal not picked up"
        );
        h.loaded("le.example").await;
    }
}

#[tokio::test]
async fn an_editor_save_via_rename_is_picked_up() {
    let pki = TestPki::now_real();
    let root = pki.root("Editor Root", KeyKind::EcdsaP256);
    let first = root.server(&["e.example"], KeyKind::EcdsaP256, Validity::Normal);
    let mut h = Harness::new(|path| put_server(path, "e", &first, &root));
    // vim-style: write a swap file, move the original away, rename the new one in.
    let dir = server_folder(&h.path, "e");
    let chain = format!("{}{}", first.cert_pem(), root.cert().cert_pem());
    fs::write(dir.join(".cert.pem.swp"), format!("# renewed\n{chain}")).unwrap();
    fs::rename(dir.join("cert.pem"), dir.join("cert.pem~")).unwrap();
    fs::rename(dir.join(".cert.pem.swp"), dir.join("cert.pem")).unwrap();
    fs::remove_file(dir.join("cert.pem~")).unwrap();
    h.loaded("e").await;
    assert!(h.store.snapshot().server(&name("e")).is_some());
}

/// `renameat2(RENAME_EXCHANGE)` (`mv --exchange`) of two folders, through
/// python3's ctypes: neither std nor Debian 12's coreutils offer it.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) {
    let script = "import ctypes, os, sys\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        AT_FDCWD, RENAME_EXCHANGE = -100, 2\n\
        if libc.renameat2(AT_FDCWD, sys.argv[1].encode(), AT_FDCWD, sys.argv[2].encode(), RENAME_EXCHANGE):\n\
        \x20   sys.exit(os.strerror(ctypes.get_errno()))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(a)
        .arg(b)
        .output()
        .expect("python3 (the tests' prerequisites in README)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The new folder and the live one trade places in one step.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_atomic_folder_exchange_is_picked_up_at_once() {
    let pki = TestPki::now_real();
    let root = pki.root("Exchange Root", KeyKind::EcdsaP256);
    let old = root.server(&["x.example"], KeyKind::EcdsaP256, Validity::Normal);
    let new = root.server(&["x.example"], KeyKind::EcdsaP256, Validity::Normal);
    let mut h = Harness::with_config(
        |path| put_server(path, "x", &old, &root),
        // Far beyond the wait below: only the watcher can pick it up.
        |config| config.rescan_interval = Duration::from_secs(3600),
    );
    h.bind("web", &["x"]);
    let staged = h.path.join("server").join(".x-new");
    let stage = |issued: &Issued| {
        let _ = fs::remove_dir_all(&staged);
        fs::create_dir_all(&staged).unwrap();
        let chain = format!("{}{}", issued.cert_pem(), root.cert().cert_pem());
        fs::write(staged.join("cert.pem"), chain).unwrap();
        fs::write(staged.join("key.pem"), issued.key().pkcs8_pem()).unwrap();
    };
    let live = server_folder(&h.path, "x");
    stage(&new);
    exchange(&staged, &live);
    h.loaded("x").await;
    assert_eq!(h.handshake("web", &root, "x.example").await, der(&new));
    // Exchanged back and forth (the first exchange always worked; the
    // next ones waited for the periodic rescan), then with a fresh folder.
    for _ in 0..3 {
        exchange(&staged, &live);
        h.loaded("x").await;
    }
    assert_eq!(h.handshake("web", &root, "x.example").await, der(&old));
    let third = root.server(&["x.example"], KeyKind::EcdsaP256, Validity::Normal);
    stage(&third);
    exchange(&staged, &live);
    h.loaded("x").await;
    assert_eq!(h.handshake("web", &root, "x.example").await, der(&third));
}

#[tokio::test]
async fn removing_a_folder_removes_the_certificate() {
    let pki = TestPki::now_real();
    let root = pki.root("Remove Root", KeyKind::EcdsaP256);
    let a = root.server(&["r.example"], KeyKind::EcdsaP256, Validity::Normal);
    let mut h = Harness::new(|path| put_server(path, "r", &a, &root));
    assert!(h.store.snapshot().server(&name("r")).is_some());
    fs::remove_dir_all(server_folder(&h.path, "r")).unwrap();
    let wanted = name("r");
    h.wait_for(
        "r removed",
        |e| matches!(e, StoreEvent::Removed { name, .. } if *name == wanted),
    )
    .await;
    assert!(h.store.snapshot().server(&name("r")).is_none());
}

#[tokio::test]
async fn new_certificates_beyond_the_quota_are_refused() {
    let pki = TestPki::now_real();
    let root = pki.root("Quota Root", KeyKind::EcdsaP256);
    let a = root.server(&["q1.example"], KeyKind::EcdsaP256, Validity::Normal);
    let b = root.server(&["q2.example"], KeyKind::EcdsaP256, Validity::Normal);
    let mut h = Harness::with_config(
        |path| put_server(path, "q1", &a, &root),
        |config| config.max_server_certificates = 1,
    );
    put_server(&h.path, "q2", &b, &root);
    let StoreEvent::Refused { code, .. } = h.refused("q2").await else {
        unreachable!()
    };
    assert_eq!(code, "QuotaExceeded");
    assert_eq!(h.store.snapshot().count(CertKind::Server), 1);
}

#[tokio::test]
async fn reloading_one_certificate_leaves_the_others_untouched() {
    let pki = TestPki::now_real();
    let root = pki.root("Incremental Root", KeyKind::EcdsaP256);
    let certs: Vec<Issued> = (0..5)
        .map(|i| {
            root.server(
                &[&format!("h{i}.example")],
                KeyKind::EcdsaP256,
                Validity::Normal,
            )
        })
        .collect();
    let mut h = Harness::new(|path| {
        for (i, issued) in certs.iter().enumerate() {
            put_server(path, &format!("h{i}"), issued, &root);
        }
    });
    let before = h.store.snapshot();
    let mut log = h.store.subscribe();
    let replacement = root.server(&["h0.example"], KeyKind::EcdsaP256, Validity::Normal);
    put_server(&h.path, "h0", &replacement, &root);
    h.loaded("h0").await;
    let after = h.store.snapshot();
    assert!(after.generation() > before.generation());
    let mut seen = Vec::new();
    while let Ok(e) = log.try_recv() {
        seen.push(e);
    }
    for i in 1..5 {
        let n = name(&format!("h{i}"));
        assert!(
            Arc::ptr_eq(before.server(&n).unwrap(), after.server(&n).unwrap()),
            "h{i} changed; events: {seen:#?}"
        );
    }
    assert!(!Arc::ptr_eq(
        before.server(&name("h0")).unwrap(),
        after.server(&name("h0")).unwrap()
    ));
}

#[tokio::test]
async fn expiry_reports_days_left_for_every_certificate() {
    let pki = TestPki::now_real();
    let root = pki.root("Expiry Root", KeyKind::EcdsaP256);
    let soon = root.server(
        &["soon.example"],
        KeyKind::EcdsaP256,
        Validity::ExpiresInDays(10),
    );
    let h = Harness::new(|path| {
        put_server(path, "soon", &soon, &root);
        let ca = path.join("ca").join("root");
        fs::create_dir_all(&ca).unwrap();
        fs::write(ca.join("ca.pem"), root.cert().cert_pem()).unwrap();
    });
    let rows = h.store.expiry();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, name("soon"));
    assert!(
        (9..=10).contains(&rows[0].days_left),
        "{}",
        rows[0].days_left
    );
    let warned = h.store.check_expiry();
    assert!(warned.iter().any(|r| r.name == name("soon")));
    // Warned once per threshold, not on every check.
    assert!(h.store.check_expiry().is_empty());
}

#[tokio::test]
async fn listeners_using_a_certificate_are_known() {
    let pki = TestPki::now_real();
    let root = pki.root("Using Root", KeyKind::EcdsaP256);
    let a = root.server(&["u.example"], KeyKind::EcdsaP256, Validity::Normal);
    let h = Harness::new(|path| put_server(path, "u", &a, &root));
    h.bind("web", &["u", "absent"]);
    let snapshot = h.store.snapshot();
    assert_eq!(
        snapshot.listeners_using(CertKind::Server, &name("u")),
        ["web"]
    );
    let listener = snapshot.listener("web").unwrap();
    assert_eq!(listener.missing, [name("absent")]);
}

/// Records the OCSP response the server staples, then verifies as usual.
#[derive(Debug)]
struct OcspRecorder {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: std::sync::Mutex<Option<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for OcspRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(ocsp_response.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One handshake that asks for OCSP stapling; returns what was stapled.
async fn stapled(store: &Store, listener: &str, root: &Ca, sni: &str) -> Vec<u8> {
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StoreResolver::new(store.shared(), listener)));
    let mut roots = RootCertStore::empty();
    roots.add(root.cert().certificate_der()).unwrap();
    let recorder = Arc::new(OcspRecorder {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap(),
        seen: std::sync::Mutex::new(None),
    });
    let client_config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(|_| ()) });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let _tls = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), client_io)
        .await
        .expect("handshake");
    server.await.unwrap().expect("server side");
    let seen = recorder.seen.lock().unwrap().clone();
    seen.expect("verifier ran")
}

/// What an operator's OCSP cron makes: `openssl ocsp` answering for
/// `leaf` from an index where it is valid, signed by `root` (the responder
/// here), valid for a day.
fn openssl_ocsp(root: &Ca, leaf: &Issued) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    fs::write(path("ca.pem"), root.cert().cert_pem()).unwrap();
    fs::write(path("ca.key"), root.cert().key().pkcs8_pem()).unwrap();
    fs::write(path("leaf.pem"), leaf.cert_pem()).unwrap();
    let serial: String = leaf.serial().iter().map(|b| format!("{b:02X}")).collect();
    fs::write(
        path("index.txt"),
        format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN=leaf\n"),
    )
    .unwrap();
    let out = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
        ])
        .args(["-CA", "ca.pem", "-issuer", "ca.pem", "-cert", "leaf.pem"])
        .args(["-respout", "resp.der", "-ndays", "1"])
        .output()
        .expect("openssl (the tests' prerequisites in README)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read(path("resp.der")).unwrap()
}

#[tokio::test]
async fn an_ocsp_response_beside_the_certificate_is_stapled_and_reloaded() {
    let pki = TestPki::now_real();
    let root = pki.root("OCSP Root", KeyKind::EcdsaP256);
    let leaf = root.server(&["ocsp.example"], KeyKind::EcdsaP256, Validity::Normal);
    let first = openssl_ocsp(&root, &leaf);
    let mut h = Harness::new(|path| {
        put_server(path, "ocsp", &leaf, &root);
        fs::write(server_folder(path, "ocsp").join("ocsp.der"), &first).unwrap();
    });
    h.bind("web", &["ocsp"]);
    assert_eq!(stapled(&h.store, "web", &root, "ocsp.example").await, first);
    assert!(
        h.store
            .snapshot()
            .server(&name("ocsp"))
            .unwrap()
            .ocsp_next_update
            .is_some()
    );

    // A refreshed response is picked up like a certificate change.
    let mut second = openssl_ocsp(&root, &leaf);
    while second == first {
        // Same second, same bytes (ECDSA signatures differ, but be sure).
        second = openssl_ocsp(&root, &leaf);
    }
    write_atomic(&server_folder(&h.path, "ocsp").join("ocsp.der"), &second);
    h.loaded("ocsp").await;
    assert_eq!(
        stapled(&h.store, "web", &root, "ocsp.example").await,
        second
    );

    // Responses a client that enforces stapling would reject are not
    // stapled: another certificate's, a bare error status, garbage. The
    // certificate itself keeps serving.
    let other = root.server(&["other.example"], KeyKind::EcdsaP256, Validity::Normal);
    for bad in [
        openssl_ocsp(&root, &other),
        b"\x30\x03\x0a\x01\x03".to_vec(),
        b"not an OCSP response".to_vec(),
    ] {
        write_atomic(&server_folder(&h.path, "ocsp").join("ocsp.der"), &bad);
        h.loaded("ocsp").await;
        assert_eq!(
            stapled(&h.store, "web", &root, "ocsp.example").await,
            Vec::<u8>::new()
        );
        assert_eq!(h.handshake("web", &root, "ocsp.example").await, der(&leaf));
    }
}

/// A stapled response that passes its nextUpdate while in service is no
/// longer stapled (a client enforcing stapling would reject it); the
/// certificate keeps serving.
#[tokio::test]
async fn a_stapled_ocsp_response_past_its_next_update_is_no_longer_stapled() {
    let pki = TestPki::now_real();
    let root = pki.root("OCSP Expiry Root", KeyKind::EcdsaP256);
    let leaf = root.server(&["ocsp.example"], KeyKind::EcdsaP256, Validity::Normal);
    let response = openssl_ocsp(&root, &leaf);
    let h = Harness::new(|path| {
        put_server(path, "ocsp", &leaf, &root);
        fs::write(server_folder(path, "ocsp").join("ocsp.der"), &response).unwrap();
    });
    h.bind("web", &["ocsp"]);
    let next_update = h
        .store
        .snapshot()
        .server(&name("ocsp"))
        .unwrap()
        .ocsp_next_update
        .expect("the response has a nextUpdate (a day ahead)");

    // Before it: nothing to do, still stapled.
    assert_eq!(h.store.unstaple_expired(next_update - 1), 0);
    assert_eq!(
        stapled(&h.store, "web", &root, "ocsp.example").await,
        response
    );

    // Past it: read again, not stapled, still served.
    assert_eq!(h.store.unstaple_expired(next_update + 1), 1);
    let entry = h.store.snapshot();
    let entry = entry.server(&name("ocsp")).unwrap();
    assert_eq!(entry.ocsp_next_update, None);
    assert_eq!(
        stapled(&h.store, "web", &root, "ocsp.example").await,
        Vec::<u8>::new()
    );
    assert_eq!(h.handshake("web", &root, "ocsp.example").await, der(&leaf));
    // Nothing left to unstaple.
    assert_eq!(h.store.unstaple_expired(next_update + 1), 0);
}

#[tokio::test]
async fn an_expired_crl_is_loaded_enforced_and_counted() {
    let pki = TestPki::now_real();
    let root = pki.root("Stale CRL Root", KeyKind::EcdsaP256);
    let revoked = root.client("revoked", KeyKind::EcdsaP256, Validity::Normal);
    let h = Harness::new(|path| {
        let ca = path.join("ca").join("corp");
        fs::create_dir_all(&ca).unwrap();
        fs::write(ca.join("ca.pem"), root.cert().cert_pem()).unwrap();
        fs::write(ca.join("crl.pem"), root.crl_pem(&[revoked.serial()], -2)).unwrap();
    });
    let snapshot = h.store.snapshot();
    let ca = snapshot.ca(&name("corp")).unwrap();
    assert_eq!(ca.crls.len(), 1);
    assert_eq!(ca.crls[0].revoked, 1);
    assert_eq!(h.store.counters().expired_crls(), 1);
}

#[tokio::test]
async fn a_crl_from_another_ca_is_refused() {
    let pki = TestPki::now_real();
    let root = pki.root("CRL Owner Root", KeyKind::EcdsaP256);
    let other = pki.root("Other Root", KeyKind::EcdsaP256);
    let mut h = Harness::new(|path| {
        let ca = path.join("ca").join("corp");
        fs::create_dir_all(&ca).unwrap();
        fs::write(ca.join("ca.pem"), root.cert().cert_pem()).unwrap();
    });
    assert!(h.store.snapshot().ca(&name("corp")).is_some());
    let crl = h.path.join("ca").join("corp").join("crl.pem");
    write_atomic(&crl, other.crl_pem(&[], 7).as_bytes());
    let StoreEvent::Refused { code, .. } = h.refused("corp").await else {
        unreachable!()
    };
    assert_eq!(code, "InvalidCertificateChain");
    // The CA stays in service without the foreign CRL.
    assert!(
        h.store
            .snapshot()
            .ca(&name("corp"))
            .unwrap()
            .crls
            .is_empty()
    );
}
