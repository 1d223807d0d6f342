//! Which certificate a handshake gets (R7, R8).
//!
//! In: a listener's server certificates, default first. Out: an [`SniIndex`]
//! built once per snapshot, off the handshake path, and a rustls resolver
//! ([`StoreResolver`]) that per handshake only loads the current snapshot and
//! does at most two hash lookups — the cost does not depend on how many
//! certificates the listener holds (10,000 is a normal case).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SignatureScheme};

use crate::{ServerCert, Snapshot};

/// The longest DNS name in text form without the trailing dot (RFC 1035:
/// 255 octets on the wire). rustls refuses longer SNI names, and no
/// certificate name that long can match, so a longer name goes straight to
/// the default certificate and lowercasing fits a stack buffer.
const MAX_DNS_NAME: usize = 253;

/// The certificates one name resolves to: at most one per key type (R8).
#[derive(Debug, Default, Clone)]
struct Pair {
    ecdsa: Option<Arc<CertifiedKey>>,
    rsa: Option<Arc<CertifiedKey>>,
}

impl Pair {
    /// Adds `cert` unless a certificate of its key type is already there:
    /// the one earlier in the listener's list wins, so the choice does not
    /// depend on hash order or load order.
    fn offer(&mut self, cert: &ServerCert) {
        let slot = if cert.is_ecdsa {
            &mut self.ecdsa
        } else {
            &mut self.rsa
        };
        if slot.is_none() {
            *slot = Some(cert.certified.clone());
        }
    }

    /// Fills the empty key-type slots from `other`.
    fn fill_from(&mut self, other: &Pair) {
        if self.ecdsa.is_none() {
            self.ecdsa.clone_from(&other.ecdsa);
        }
        if self.rsa.is_none() {
            self.rsa.clone_from(&other.rsa);
        }
    }

    /// ECDSA when the client can use it, else RSA. With only one kind for
    /// the name it is served regardless: refusing here would fail the
    /// handshake for sure, serving it lets the handshake decide.
    fn pick(&self, client: &ClientCapabilities) -> Option<&Arc<CertifiedKey>> {
        let (preferred, other) = if client.ecdsa {
            (&self.ecdsa, &self.rsa)
        } else {
            (&self.rsa, &self.ecdsa)
        };
        preferred.as_ref().or(other.as_ref())
    }
}

/// SNI → certificate index for one listener (R7, R8).
///
/// Exact names and wildcard names live in two hash maps; a wildcard
/// `*.example.com` is stored under `example.com` and found by dropping the
/// first label of the client's name, so a wildcard covers exactly one label
/// (as RFC 6125 and webpki have it).
#[derive(Default)]
pub struct SniIndex {
    exact: HashMap<String, Pair>,
    wildcard: HashMap<String, Pair>,
    default: Pair,
    certificates: usize,
}

impl SniIndex {
    /// Builds the index; `certs[0]` is the listener's default certificate,
    /// the rest are additional (SNI) certificates. When two certificates of
    /// the same key type claim a name, the earlier one in `certs` wins.
    pub fn build(certs: &[Arc<ServerCert>]) -> SniIndex {
        let names = certs.iter().map(|c| c.dns_names.len()).sum();
        let mut index = SniIndex {
            exact: HashMap::with_capacity(names),
            wildcard: HashMap::new(),
            default: Pair::default(),
            certificates: certs.len(),
        };
        for cert in certs {
            for name in &cert.dns_names {
                // The loader already normalises names; doing it again here
                // is cheap (off the handshake path) and keeps the index right
                // for entries built by hand.
                let name = normalise_san(name);
                let pair = match name.strip_prefix("*.") {
                    Some(parent) if !parent.is_empty() => {
                        index.wildcard.entry(parent.to_owned()).or_default()
                    }
                    _ => index.exact.entry(name).or_default(),
                };
                pair.offer(cert);
            }
        }
        if let Some(first) = certs.first() {
            index.default.offer(first);
            // A dual default: the default's first name also has a
            // certificate of the other key type, so a client without SNI
            // gets the kind it can use too.
            let twin = first
                .dns_names
                .first()
                .and_then(|name| index.pair_for_san(&normalise_san(name)).cloned());
            if let Some(twin) = twin {
                index.default.fill_from(&twin);
            }
        }
        index
    }

    /// The certificate for a client: an exact SNI name match beats a
    /// wildcard match beats the default; within a name, the key type the
    /// client can use (R8). `None` only when the listener has no
    /// certificate at all (the handshake then fails closed).
    pub fn select(
        &self,
        server_name: Option<&str>,
        client: &ClientCapabilities,
    ) -> Option<Arc<CertifiedKey>> {
        let mut buf = [0u8; MAX_DNS_NAME];
        let pair = server_name
            .and_then(|name| normalise_sni(name, &mut buf))
            .and_then(|name| self.lookup(name))
            .unwrap_or(&self.default);
        pair.pick(client).cloned()
    }

    /// The number of certificates indexed (default included).
    pub fn len(&self) -> usize {
        self.certificates
    }

    /// No certificate at all: every handshake on the listener fails.
    pub fn is_empty(&self) -> bool {
        self.certificates == 0
    }

    /// Exact match first, then the wildcard for the parent domain.
    fn lookup(&self, name: &str) -> Option<&Pair> {
        self.exact.get(name).or_else(|| {
            let (label, parent) = name.split_once('.')?;
            // ".example.com" has no first label for a `*` to stand for.
            if label.is_empty() {
                return None;
            }
            self.wildcard.get(parent)
        })
    }

    /// The pair a certificate name (as written in a SAN) was indexed under.
    fn pair_for_san(&self, san: &str) -> Option<&Pair> {
        match san.strip_prefix("*.") {
            Some(parent) => self.wildcard.get(parent),
            None => self.exact.get(san),
        }
    }
}

impl fmt::Debug for SniIndex {
    // The derived form would print every chain of up to 10,000 certificates
    // into a log line; counts are what a reader needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniIndex")
            .field("certificates", &self.certificates)
            .field("exact_names", &self.exact.len())
            .field("wildcard_names", &self.wildcard.len())
            .field("default_ecdsa", &self.default.ecdsa.is_some())
            .field("default_rsa", &self.default.rsa.is_some())
            .finish()
    }
}

/// A SAN as the index keys it: lowercase, no trailing dot.
fn normalise_san(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The client's SNI name as the index keys it, without allocating: the name
/// itself when it is already lowercase (what rustls passes), else a
/// lowercase copy in `buf`. `None` when nothing can match it.
fn normalise_sni<'a>(name: &'a str, buf: &'a mut [u8; MAX_DNS_NAME]) -> Option<&'a str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_DNS_NAME {
        return None;
    }
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(name);
    }
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name.as_bytes());
    // ASCII-only case mapping leaves multi-byte UTF-8 sequences untouched,
    // so the bytes stay valid UTF-8 and the check below cannot fail.
    lower.make_ascii_lowercase();
    std::str::from_utf8(lower).ok()
}

/// What the client can verify, as far as certificate choice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// The client accepts an ECDSA certificate.
    pub ecdsa: bool,
}

impl ClientCapabilities {
    /// From a ClientHello: ECDSA when the client offers an ECDSA signature
    /// scheme and a cipher suite that can be used with an ECDSA key — any
    /// TLS 1.3 suite, or a TLS 1.2 ECDHE-ECDSA suite (R8).
    pub fn from_hello(hello: &ClientHello<'_>) -> Self {
        Self::from_offer(hello.signature_schemes(), hello.cipher_suites())
    }

    /// The rule behind [`Self::from_hello`], on plain slices so that it can
    /// be tested without a handshake (rustls has no public way to make a
    /// `ClientHello`).
    fn from_offer(schemes: &[SignatureScheme], suites: &[CipherSuite]) -> Self {
        let ecdsa_scheme = schemes.iter().any(|scheme| {
            matches!(
                scheme,
                SignatureScheme::ECDSA_NISTP256_SHA256
                    | SignatureScheme::ECDSA_NISTP384_SHA384
                    | SignatureScheme::ECDSA_NISTP521_SHA512
            )
        });
        // Only suites rustls can negotiate count: a client offering ECDSA
        // solely with a suite we do not implement (CBC, CCM) would end up on
        // an ECDHE-RSA suite, and an ECDSA certificate would fail it.
        let ecdsa_suite = suites.iter().any(|suite| {
            matches!(
                suite,
                // TLS 1.3: the suite does not name a key type.
                CipherSuite::TLS13_AES_128_GCM_SHA256
                    | CipherSuite::TLS13_AES_256_GCM_SHA384
                    | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                    // TLS 1.2: the suite fixes the certificate's key type.
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            )
        });
        ClientCapabilities {
            ecdsa: ecdsa_scheme && ecdsa_suite,
        }
    }
}

/// A rustls resolver that reads the store's current snapshot per handshake,
/// so a reload takes effect on the next handshake while open connections
/// keep the certificate they got (R16).
#[derive(Debug)]
pub struct StoreResolver {
    snapshot: Arc<ArcSwap<Snapshot>>,
    listener: String,
}

impl StoreResolver {
    /// A resolver for `listener`'s certificates in `snapshot`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, listener: impl Into<String>) -> Self {
        StoreResolver {
            snapshot,
            listener: listener.into(),
        }
    }
}

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // SECURITY: no listener material (not loaded yet, or refused) means
        // no certificate, and rustls then aborts the handshake: fail closed.
        let snapshot = self.snapshot.load();
        let listener = snapshot.listener(&self.listener)?;
        listener
            .sni
            .select(hello.server_name(), &ClientCapabilities::from_hello(&hello))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use rustls::sign::SigningKey;
    use rustls_pki_types::CertificateDer;
    use tlsgate_test_pki::{KeyKind, TestKey};
    use tlsgate_validator::{CertificateName, Summary};

    use super::*;

    /// One real signing key for every fake entry: `select` never looks at
    /// the key, only at `is_ecdsa`, and ECDSA keys are cheap to make.
    fn signing_key() -> Arc<dyn SigningKey> {
        static KEY: OnceLock<Arc<dyn SigningKey>> = OnceLock::new();
        KEY.get_or_init(|| {
            let key = TestKey::generate(KeyKind::EcdsaP256).private_key_der();
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap()
        })
        .clone()
    }

    /// An entry whose "chain" is one byte, `tag`, so tests can tell
    /// certificates apart without real ones.
    fn cert(tag: u8, is_ecdsa: bool, names: &[&str]) -> Arc<ServerCert> {
        let certified = CertifiedKey::new(vec![CertificateDer::from(vec![tag])], signing_key());
        Arc::new(ServerCert {
            name: CertificateName::parse(&format!("cert-{tag}")).unwrap(),
            certified: Arc::new(certified),
            summary: Summary {
                subject: String::new(),
                issuer: String::new(),
                sans: names.iter().map(|n| n.to_string()).collect(),
                not_before: 0,
                not_after: 0,
                key_algorithm: String::new(),
                chain_length: 1,
                sha256_fingerprint: String::new(),
                serial: String::new(),
            },
            is_ecdsa,
            dns_names: names.iter().map(|n| n.to_string()).collect(),
            warnings: Vec::new(),
            folder: PathBuf::new(),
            ocsp_next_update: None,
        })
    }

    const ECDSA: ClientCapabilities = ClientCapabilities { ecdsa: true };
    const RSA: ClientCapabilities = ClientCapabilities { ecdsa: false };

    /// The tag of the certificate selected, `None` for no certificate.
    fn tag(index: &SniIndex, name: Option<&str>, client: ClientCapabilities) -> Option<u8> {
        index.select(name, &client).map(|c| c.cert[0].as_ref()[0])
    }

    fn listener() -> SniIndex {
        SniIndex::build(&[
            cert(0, true, &["default.example.net"]),
            cert(1, true, &["www.example.com"]),
            cert(2, true, &["*.example.com"]),
            cert(3, true, &["api.example.com", "*.api.example.com"]),
        ])
    }

    #[test]
    fn exact_wildcard_and_default() {
        let index = listener();
        assert_eq!(tag(&index, Some("www.example.com"), ECDSA), Some(1));
        assert_eq!(tag(&index, Some("a.example.com"), ECDSA), Some(2));
        assert_eq!(tag(&index, Some("api.example.com"), ECDSA), Some(3));
        assert_eq!(tag(&index, Some("v1.api.example.com"), ECDSA), Some(3));
        assert_eq!(tag(&index, Some("unknown.test"), ECDSA), Some(0));
        assert_eq!(tag(&index, None, ECDSA), Some(0));
        assert_eq!(index.len(), 4);
        assert!(!index.is_empty());
    }

    #[test]
    fn sni_is_case_insensitive() {
        let index = listener();
        assert_eq!(tag(&index, Some("WWW.Example.COM"), ECDSA), Some(1));
        assert_eq!(tag(&index, Some("A.EXAMPLE.COM"), ECDSA), Some(2));
        // Certificate names are normalised too.
        let index = SniIndex::build(&[
            cert(0, true, &["x.test"]),
            cert(1, true, &["Mixed.Example.ORG."]),
        ]);
        assert_eq!(tag(&index, Some("mixed.example.org"), ECDSA), Some(1));
    }

    #[test]
    fn trailing_dot_is_ignored() {
        let index = listener();
        assert_eq!(tag(&index, Some("www.example.com."), ECDSA), Some(1));
        assert_eq!(tag(&index, Some("b.example.com."), ECDSA), Some(2));
        // Only one: a name with two is not a DNS name.
        assert_eq!(tag(&index, Some("www.example.com.."), ECDSA), Some(0));
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let index = listener();
        assert_eq!(tag(&index, Some("a.b.example.com"), ECDSA), Some(0));
        assert_eq!(tag(&index, Some("example.com"), ECDSA), Some(0));
        assert_eq!(tag(&index, Some(".example.com"), ECDSA), Some(0));
        assert_eq!(tag(&index, Some("com"), ECDSA), Some(0));
    }

    #[test]
    fn odd_names_get_the_default() {
        let index = listener();
        for name in ["", ".", "..", "*", &"a".repeat(MAX_DNS_NAME + 1)] {
            assert_eq!(tag(&index, Some(name), ECDSA), Some(0), "{name:?}");
        }
        // Longest possible name, upper case: lowercased in the buffer.
        let long = format!("{}.EXAMPLE.COM", "A".repeat(MAX_DNS_NAME - 12));
        assert_eq!(long.len(), MAX_DNS_NAME);
        assert_eq!(tag(&index, Some(&long), ECDSA), Some(2));
    }

    #[test]
    fn dual_certificates_follow_the_client() {
        let index = SniIndex::build(&[
            cert(0, true, &["default.test"]),
            cert(1, false, &["dual.test"]),
            cert(2, true, &["dual.test"]),
            cert(3, false, &["rsa-only.test"]),
        ]);
        assert_eq!(tag(&index, Some("dual.test"), ECDSA), Some(2));
        assert_eq!(tag(&index, Some("dual.test"), RSA), Some(1));
        // One kind only: served regardless.
        assert_eq!(tag(&index, Some("rsa-only.test"), ECDSA), Some(3));
        assert_eq!(tag(&index, Some("default.test"), RSA), Some(0));
    }

    #[test]
    fn earlier_certificate_wins_a_name() {
        let index = SniIndex::build(&[
            cert(0, true, &["default.test"]),
            cert(1, true, &["same.test", "*.wild.test"]),
            cert(2, true, &["same.test", "*.wild.test"]),
            cert(3, false, &["same.test"]),
            cert(4, false, &["same.test"]),
        ]);
        assert_eq!(tag(&index, Some("same.test"), ECDSA), Some(1));
        assert_eq!(tag(&index, Some("a.wild.test"), ECDSA), Some(1));
        assert_eq!(tag(&index, Some("same.test"), RSA), Some(3));
    }

    #[test]
    fn exact_beats_wildcard_whatever_the_order() {
        let index = SniIndex::build(&[
            cert(0, true, &["default.test"]),
            cert(1, true, &["*.example.com"]),
            cert(2, true, &["www.example.com"]),
        ]);
        assert_eq!(tag(&index, Some("www.example.com"), ECDSA), Some(2));
        assert_eq!(tag(&index, Some("ftp.example.com"), ECDSA), Some(1));
    }

    #[test]
    fn dual_default() {
        let index = SniIndex::build(&[
            cert(0, true, &["site.test", "other.test"]),
            cert(1, false, &["site.test"]),
            cert(2, false, &["other.test"]),
        ]);
        assert_eq!(tag(&index, None, ECDSA), Some(0));
        assert_eq!(tag(&index, None, RSA), Some(1));
        assert_eq!(tag(&index, Some("nowhere.test"), RSA), Some(1));

        // A wildcard first name pairs with the wildcard of the other kind.
        let index = SniIndex::build(&[
            cert(0, false, &["*.site.test"]),
            cert(1, true, &["*.site.test"]),
        ]);
        assert_eq!(tag(&index, None, ECDSA), Some(1));
        assert_eq!(tag(&index, None, RSA), Some(0));

        // No twin: the default is served to everyone.
        let index = SniIndex::build(&[
            cert(0, false, &["alone.test"]),
            cert(1, true, &["else.test"]),
        ]);
        assert_eq!(tag(&index, None, ECDSA), Some(0));
    }

    #[test]
    fn empty_listener_selects_nothing() {
        let index = SniIndex::build(&[]);
        assert!(index.is_empty());
        assert_eq!(index.len(), 0);
        assert_eq!(tag(&index, Some("www.example.com"), ECDSA), None);
        assert_eq!(tag(&index, None, RSA), None);
        assert!(SniIndex::default().is_empty());
    }

    #[test]
    fn capabilities_from_offer() {
        use CipherSuite as C;
        use SignatureScheme as S;
        let ecdsa_schemes = [S::ECDSA_NISTP256_SHA256, S::RSA_PSS_SHA256];
        let rsa_schemes = [S::RSA_PSS_SHA256, S::RSA_PKCS1_SHA256, S::ED25519];
        let cases: &[(&[S], &[C], bool)] = &[
            (&ecdsa_schemes, &[C::TLS13_AES_128_GCM_SHA256], true),
            (
                &ecdsa_schemes,
                &[C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
                true,
            ),
            (
                &[S::ECDSA_NISTP384_SHA384],
                &[C::TLS13_CHACHA20_POLY1305_SHA256],
                true,
            ),
            (
                &[S::ECDSA_NISTP521_SHA512],
                &[C::TLS13_AES_256_GCM_SHA384],
                true,
            ),
            // TLS 1.2 with only ECDHE-RSA suites: the key must be RSA.
            (
                &ecdsa_schemes,
                &[C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
                false,
            ),
            // An ECDSA suite rustls does not implement does not count.
            (
                &ecdsa_schemes,
                &[
                    C::TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
                    C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                ],
                false,
            ),
            (&rsa_schemes, &[C::TLS13_AES_128_GCM_SHA256], false),
            // SHA-1 ECDSA is not a scheme we sign with.
            (
                &[S::ECDSA_SHA1_Legacy],
                &[C::TLS13_AES_128_GCM_SHA256],
                false,
            ),
            (&[], &[C::TLS13_AES_128_GCM_SHA256], false),
            (&ecdsa_schemes, &[], false),
        ];
        for (schemes, suites, ecdsa) in cases {
            assert_eq!(
                ClientCapabilities::from_offer(schemes, suites),
                ClientCapabilities { ecdsa: *ecdsa },
                "{schemes:?} {suites:?}"
            );
        }
    }

    #[test]
    fn debug_is_short() {
        let text = format!("{:?}", listener());
        assert!(text.contains("certificates: 4"), "{text}");
        assert!(text.len() < 200, "{text}");
    }
}
