//! The certificate store of a test, its files, and client TLS configs.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use tempfile::TempDir;
use tlsgate_cert_store::{CertKind, Store, StoreConfig, StoreEvent};
use tlsgate_test_pki::{Ca, Chain, Issued, TestPki, Validity};
use tokio::sync::broadcast;

use super::{CORP, HOST_NAME, KEY, WWW, name, within};

/// Writes `contents` to `path` (`DIR/store/KIND/FOLDER/FILE`) the way
/// editors and deploy tools do: a temporary file in `DIR`, outside the
/// watched store, then a rename over the target.
pub fn write_atomic(path: &Path, contents: &str) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let staging = path.ancestors().nth(4).unwrap();
    let temporary = staging.join(format!(".staged-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    fs::write(&temporary, contents).unwrap();
    fs::rename(&temporary, path).unwrap();
}

/// A store in a temporary directory holding `server/www` (a root →
/// intermediate → leaf chain for `localhost`, the file holding leaf then
/// intermediate) and `ca/corp` (a client CA, no CRL). Also a second client
/// CA that the listener never trusts.
pub struct Fixture {
    /// Keeps the directory alive.
    pub dir: TempDir,
    /// The store (its folder is `dir/store`).
    pub store: Arc<Store>,
    /// The chain behind `server/www`.
    pub server: Chain,
    /// The CA in `ca/corp`.
    pub client_ca: Ca,
    /// A CA no listener trusts.
    pub other_ca: Ca,
    /// Certificates are generated at the real time: rustls checks validity
    /// against the system clock.
    pub pki: TestPki,
}

impl Fixture {
    /// The fixture described on [`Fixture`].
    pub fn new() -> Fixture {
        let pki = TestPki::now_real();
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let server = pki.server_chain(&[HOST_NAME], KEY);
        let client_ca = pki.root("corp client CA", KEY);
        let other_ca = pki.root("other client CA", KEY);
        write_server(&store_dir, WWW, &server.leaf, &[server.intermediate.cert()]);
        write_ca(&store_dir, CORP, &client_ca, None);
        let store = Store::open(StoreConfig::new(&store_dir)).unwrap();
        Fixture {
            dir,
            store,
            server,
            client_ca,
            other_ca,
            pki,
        }
    }

    /// The store folder.
    pub fn store_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    /// A client certificate for `common_name` issued by the trusted client CA.
    pub fn client_cert(&self, common_name: &str) -> Issued {
        self.client_ca.client(common_name, KEY, Validity::Normal)
    }

    /// A client trusting the server chain's root, offering `alpn`, and
    /// presenting `identity` when given.
    pub fn client_config(&self, identity: Option<&Issued>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        client_config(&[self.server.root.cert()], identity, alpn)
    }

    /// Writes `ca/corp/crl.pem` revoking `revoked` and reloads the folder
    /// (synchronously, as the watcher would).
    pub fn set_crl(&self, revoked: &[&Issued]) {
        let serials: Vec<Vec<u8>> = revoked.iter().map(|c| c.serial()).collect();
        let path = self.store_dir().join("ca").join(CORP).join("crl.pem");
        write_atomic(&path, &self.client_ca.crl_pem(&serials, 30));
        self.store.reload_folder(CertKind::Ca, CORP);
    }

    /// Waits for the store to announce that `cert` of `kind` is live.
    pub async fn loaded(
        events: &mut broadcast::Receiver<StoreEvent>,
        kind: CertKind,
        cert: &str,
    ) -> u64 {
        let wanted = name(cert);
        within(
            &format!("the store loading {cert}"),
            Duration::from_secs(5),
            async {
                loop {
                    match events.recv().await {
                        Ok(StoreEvent::Loaded {
                            kind: k,
                            name,
                            generation,
                        }) if k == kind && name == wanted => return generation,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => panic!("store gone"),
                    }
                }
            },
        )
        .await
    }
}

/// Writes `STORE/server/FOLDER/{cert,key}.pem`: `leaf` then `intermediates`.
pub fn write_server(store: &Path, folder: &str, leaf: &Issued, intermediates: &[&Issued]) {
    let folder = store.join("server").join(folder);
    let chain: String = std::iter::once(leaf)
        .chain(intermediates.iter().copied())
        .map(Issued::cert_pem)
        .collect();
    // Key first: a torn pair (new key, old chain) is refused by the store
    // and the old pair stays in service until the chain lands too (R17).
    write_atomic(&folder.join("key.pem"), &leaf.key().pkcs8_pem());
    write_atomic(&folder.join("cert.pem"), &chain);
}

/// Writes `STORE/ca/FOLDER/ca.pem` and, when given, `crl.pem`.
pub fn write_ca(store: &Path, folder: &str, ca: &Ca, crl: Option<&str>) {
    let folder = store.join("ca").join(folder);
    write_atomic(&folder.join("ca.pem"), &ca.cert().cert_pem());
    if let Some(crl) = crl {
        write_atomic(&folder.join("crl.pem"), crl);
    }
}

/// A rustls client config (aws-lc-rs, TLS 1.2 and 1.3, no resumption).
pub fn client_config(
    roots: &[&Issued],
    identity: Option<&Issued>,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.certificate_der()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                vec![identity.certificate_der()],
                identity.key().private_key_der(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection is a full handshake: a resumed session shows the
    // certificate of the session it resumes, not the one served now, and
    // skips the client-certificate check the tests are about.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// `serial` as the SPEC's `-serial` header writes it: uppercase hex, no colons.
pub fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// SHA-256 of `der`, lowercase hex, no colons.
pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
