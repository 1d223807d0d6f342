//! Test certificates for tlsgate's tests and benches, generated at test time.
//!
//! Nothing in here is ever written to the repository: every key and certificate is
//! generated in memory with [`rcgen`] (backed by aws-lc-rs) when a test asks for it.
//!
//! # Overview
//!
//! * [`TestPki`] is the entry point. It carries the reference time `now` that all validity
//!   windows are relative to ([`TestPki::fixed`] uses [`FIXED_NOW`], [`TestPki::now_real`]
//!   the system clock).
//! * [`Ca`] is a certificate authority (a root or an intermediate) that issues further CAs,
//!   server and client leaves, and CRLs.
//! * [`Issued`] is a certificate together with its [`TestKey`]; [`TestKey`] offers the
//!   private key in PKCS#8, PKCS#1 (RSA) and SEC1 (EC) encodings.
//! * [`Chain`] is a root -> intermediate -> leaf chain with helpers producing PEM bundles,
//!   PKCS#7 and PKCS#12 containers.
//!
//! # Key reuse
//!
//! RSA key generation is slow, so RSA keys come from a small per-process pool (see
//! [`KeyKind::pool_size`]). The pool guarantees that a certificate never shares its key with
//! any CA above it in its chain, and that — within one thread — consecutive keys of the same
//! kind handed out are distinct until the pool wraps around. ECDSA and Ed25519 keys are cheap
//! and always freshly generated. Use [`TestKey::generate`] when a test needs a key that is
//! guaranteed to be unique.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData as _, RevokedCertParams, RsaKeySize, SerialNumber, SignatureAlgorithm,
    SigningKey as _,
};

/// rcgen itself, so tests can shape certificates ([`Ca::server_customized`]
/// and friends take a closure over its `CertificateParams`) without a
/// dependency of their own.
pub use rcgen;
/// rcgen's extended key usage purposes, for [`Ca::server_with_eku`].
pub use rcgen::ExtendedKeyUsagePurpose as Eku;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// Fixed reference time for unit tests: 2026-06-01T00:00:00Z as unix seconds.
pub const FIXED_NOW: i64 = 1_780_272_000;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// Seconds in an hour.
const HOUR: i64 = 3_600;

/// The organisation (O) attribute of every generated subject DN.
pub const ORGANIZATION: &str = "tlsgate test";

// DER encodings (tag, length, value) of the named-curve OIDs.
const OID_PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_SECP521R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
// 1.2.840.113549.1.7.2 (signedData) and 1.2.840.113549.1.7.1 (data).
const OID_PKCS7_SIGNED_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
const OID_PKCS7_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];

/// The kind (algorithm and size) of a generated key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256 (prime256v1); signs with ECDSA-SHA256.
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1); signs with ECDSA-SHA384.
    EcdsaP384,
    /// ECDSA on NIST P-521 (secp521r1); signs with ECDSA-SHA512.
    EcdsaP521,
    /// RSA with a 2048-bit modulus; signs with RSA PKCS#1 v1.5 SHA-256.
    Rsa2048,
    /// RSA with a 3072-bit modulus; signs with RSA PKCS#1 v1.5 SHA-256.
    Rsa3072,
    /// RSA with a 4096-bit modulus; signs with RSA PKCS#1 v1.5 SHA-256.
    Rsa4096,
    /// Ed25519; signs with Ed25519.
    Ed25519,
}

impl KeyKind {
    /// Every key kind, cheapest first within each family.
    pub const ALL: [KeyKind; 7] = [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP384,
        KeyKind::EcdsaP521,
        KeyKind::Ed25519,
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
        KeyKind::Rsa4096,
    ];

    /// Whether this is an RSA key kind.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// Whether this is an ECDSA key kind.
    pub fn is_ecdsa(self) -> bool {
        matches!(self, Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521)
    }

    /// The key size in bits (the modulus size for RSA, the curve size for ECDSA, 256 for
    /// Ed25519).
    pub fn bits(self) -> u32 {
        match self {
            Self::EcdsaP256 | Self::Ed25519 => 256,
            Self::EcdsaP384 => 384,
            Self::EcdsaP521 => 521,
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
        }
    }

    /// How many keys of this kind the per-process pool holds, or `None` when keys of this
    /// kind are cheap and always freshly generated.
    pub fn pool_size(self) -> Option<usize> {
        match self {
            Self::Rsa2048 => Some(8),
            Self::Rsa3072 => Some(6),
            Self::Rsa4096 => Some(4),
            Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521 | Self::Ed25519 => None,
        }
    }

    /// The signature algorithm a key of this kind signs with.
    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::EcdsaP521 => &rcgen::PKCS_ECDSA_P521_SHA512,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// The DER encoding (tag included) of the named-curve OID, for ECDSA kinds.
    fn curve_oid_der(self) -> Option<&'static [u8]> {
        match self {
            Self::EcdsaP256 => Some(OID_PRIME256V1),
            Self::EcdsaP384 => Some(OID_SECP384R1),
            Self::EcdsaP521 => Some(OID_SECP521R1),
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 | Self::Ed25519 => None,
        }
    }
}

/// How an issuing (CA) certificate is made, including the faulty shapes
/// copied openssl recipes produce, for chain tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaShape {
    /// X.509 v3, basicConstraints CA:TRUE, keyUsage keyCertSign + cRLSign.
    Proper,
    /// X.509 v1: no extensions at all, as `openssl x509 -req` writes without `-extfile`.
    V1,
    /// X.509 v3 without basicConstraints and without keyUsage.
    NoBasicConstraints,
    /// basicConstraints CA:FALSE (`basicConstraints=critical,CA:FALSE`).
    CaFalse,
    /// basicConstraints CA:TRUE, but keyUsage digitalSignature only (no keyCertSign).
    NoKeyCertSign,
    /// A proper CA with basicConstraints pathlen:N.
    PathLen(u8),
}

/// How a certificate's validity window sits relative to the PKI's reference time `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// `now - 1 day .. now + 365 days`.
    Normal,
    /// `now - 400 days .. now - 1 day`.
    Expired,
    /// `now + 1 day .. now + 365 days`.
    NotYetValid,
    /// `now - 1 day .. now + N days` (for "certificate expiring soon" checks).
    ///
    /// For `N <= -1` the start moves to one day before the end so the window never inverts.
    ExpiresInDays(i64),
}

impl Validity {
    /// The `(not_before, not_after)` unix timestamps of this window relative to `now`.
    pub fn window(self, now: i64) -> (i64, i64) {
        match self {
            Self::Normal => (now - DAY, now + 365 * DAY),
            Self::Expired => (now - 400 * DAY, now - DAY),
            Self::NotYetValid => (now + DAY, now + 365 * DAY),
            Self::ExpiresInDays(days) => {
                let not_after = now + days * DAY;
                ((now - DAY).min(not_after - DAY), not_after)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

/// Identifies one key of the per-process RSA pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Slot {
    kind: KeyKind,
    index: usize,
}

type PoolMap = HashMap<Slot, Arc<OnceLock<Arc<[u8]>>>>;

static POOL: OnceLock<Mutex<PoolMap>> = OnceLock::new();

thread_local! {
    /// Per-thread round-robin position in each kind's pool, so that parallel tests do not
    /// disturb each other's sequence of distinct keys.
    static CURSOR: RefCell<HashMap<KeyKind, usize>> = RefCell::new(HashMap::new());
}

/// Generates a fresh key of `kind` and returns its PKCS#8 DER encoding.
fn generate_pkcs8(kind: KeyKind) -> Vec<u8> {
    let alg = kind.signature_algorithm();
    let key_pair = match kind {
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(alg, RsaKeySize::_2048),
        KeyKind::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072),
        KeyKind::Rsa4096 => KeyPair::generate_rsa_for(alg, RsaKeySize::_4096),
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::Ed25519 => {
            KeyPair::generate_for(alg)
        }
    }
    .unwrap_or_else(|e| panic!("generating a {kind:?} key: {e}"));
    key_pair.serialize_der()
}

/// The pooled key in `slot`, generating it on first use.
fn pooled_key(slot: Slot) -> TestKey {
    let cell = {
        let mut pool = POOL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(pool.entry(slot).or_default())
    };
    // Generate outside the map lock so that different slots generate in parallel.
    let pkcs8 = Arc::clone(cell.get_or_init(|| generate_pkcs8(slot.kind).into()));
    TestKey {
        kind: slot.kind,
        pkcs8,
        slot: Some(slot),
    }
}

/// A key of `kind` for a new role in a chain: never one of the keys in `exclude` (the keys of
/// the CAs above the new certificate).
fn role_key(kind: KeyKind, exclude: &[Slot]) -> TestKey {
    let Some(pool_size) = kind.pool_size() else {
        return TestKey::generate(kind);
    };
    let excluded = |index: usize| exclude.contains(&Slot { kind, index });
    let index = CURSOR.with(|cursor| {
        let mut cursor = cursor.borrow_mut();
        let start = cursor.get(&kind).copied().unwrap_or(0);
        let free = (0..pool_size)
            .map(|offset| (start + offset) % pool_size)
            .find(|&index| !excluded(index));
        match free {
            Some(index) => {
                cursor.insert(kind, (index + 1) % pool_size);
                index
            }
            // A chain deeper than the pool: grow past it.
            None => (pool_size..).find(|&index| !excluded(index)).unwrap(),
        }
    });
    pooled_key(Slot { kind, index })
}

/// A generated private key in every encoding tests need.
#[derive(Clone)]
pub struct TestKey {
    kind: KeyKind,
    pkcs8: Arc<[u8]>,
    slot: Option<Slot>,
}

impl fmt::Debug for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestKey")
            .field("kind", &self.kind)
            .field("pool_index", &self.slot.map(|s| s.index))
            .finish_non_exhaustive()
    }
}

impl PartialEq for TestKey {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.pkcs8 == other.pkcs8
    }
}

impl Eq for TestKey {}

impl TestKey {
    /// Generates a brand-new key of `kind`, bypassing the RSA pool.
    ///
    /// The key is guaranteed to differ from every other key (for "key does not match
    /// certificate" tests). RSA 3072/4096 generation takes a noticeable fraction of a second.
    pub fn generate(kind: KeyKind) -> TestKey {
        TestKey {
            kind,
            pkcs8: generate_pkcs8(kind).into(),
            slot: None,
        }
    }

    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The private key as PKCS#8 `PrivateKeyInfo`, DER.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.pkcs8.to_vec()
    }

    /// The private key as PKCS#8, PEM (label `PRIVATE KEY`).
    pub fn pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// The private key as a rustls [`PrivateKeyDer`] (the PKCS#8 variant).
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8_der()))
    }

    /// The public key as X.509 `SubjectPublicKeyInfo`, DER.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key_pair().subject_public_key_info()
    }

    /// RSA only: the PKCS#1 `RSAPrivateKey`, DER (the octet string inside PKCS#8's
    /// `privateKey`).
    pub fn pkcs1_der(&self) -> Option<Vec<u8>> {
        if !self.kind.is_rsa() {
            return None;
        }
        Some(pkcs8_private_key(&self.pkcs8).to_vec())
    }

    /// RSA only: PKCS#1, PEM (label `RSA PRIVATE KEY`).
    pub fn pkcs1_pem(&self) -> Option<String> {
        self.pkcs1_der().map(|der| pem("RSA PRIVATE KEY", &der))
    }

    /// EC only: the SEC1 / RFC 5915 `ECPrivateKey`, DER, with the `[0]` namedCurve
    /// parameters and the `[1]` publicKey, as `openssl ecparam -genkey` writes it.
    pub fn sec1_der(&self) -> Option<Vec<u8>> {
        let curve_oid = self.kind.curve_oid_der()?;
        // PKCS#8 privateKey holds an ECPrivateKey that may lack the optional fields.
        let inner = pkcs8_private_key(&self.pkcs8);
        let (tag, ec_private_key, _) = der::read(inner).expect("ECPrivateKey");
        assert_eq!(tag, der::SEQUENCE, "ECPrivateKey is a SEQUENCE");
        let (_, _version, rest) = der::read(ec_private_key).expect("ECPrivateKey version");
        let (tag, scalar, _) = der::read(rest).expect("ECPrivateKey privateKey");
        assert_eq!(
            tag,
            der::OCTET_STRING,
            "ECPrivateKey privateKey is an OCTET STRING"
        );

        let mut public_bits = vec![0u8]; // no unused bits
        public_bits.extend_from_slice(self.key_pair().public_key_raw());

        let mut body = der::tlv(der::INTEGER, &[1]);
        body.extend(der::tlv(der::OCTET_STRING, scalar));
        body.extend(der::tlv(0xa0, curve_oid));
        body.extend(der::tlv(0xa1, &der::tlv(der::BIT_STRING, &public_bits)));
        Some(der::tlv(der::SEQUENCE, &body))
    }

    /// EC only: SEC1, PEM (label `EC PRIVATE KEY`).
    pub fn sec1_pem(&self) -> Option<String> {
        self.sec1_der().map(|der| pem("EC PRIVATE KEY", &der))
    }

    /// EC only: an `EC PARAMETERS` block (the named-curve OID, DER) followed by the
    /// `EC PRIVATE KEY` block, exactly like `openssl ecparam -genkey -name prime256v1` output.
    pub fn sec1_pem_with_params(&self) -> Option<String> {
        let curve_oid = self.kind.curve_oid_der()?;
        let mut out = pem("EC PARAMETERS", curve_oid);
        out.push_str(&self.sec1_pem()?);
        Some(out)
    }

    /// The rcgen key pair (rebuilt from the PKCS#8; cheap).
    fn key_pair(&self) -> KeyPair {
        KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(&self.pkcs8[..]),
            self.kind.signature_algorithm(),
        )
        .unwrap_or_else(|e| panic!("loading generated {:?} key: {e}", self.kind))
    }
}

/// The content of PKCS#8 `PrivateKeyInfo.privateKey`.
fn pkcs8_private_key(pkcs8: &[u8]) -> &[u8] {
    let (tag, info, _) = der::read(pkcs8).expect("PrivateKeyInfo");
    assert_eq!(tag, der::SEQUENCE, "PrivateKeyInfo is a SEQUENCE");
    let (_, _version, rest) = der::read(info).expect("PrivateKeyInfo version");
    let (_, _algorithm, rest) = der::read(rest).expect("PrivateKeyInfo algorithm");
    let (tag, private_key, _) = der::read(rest).expect("PrivateKeyInfo privateKey");
    assert_eq!(tag, der::OCTET_STRING, "privateKey is an OCTET STRING");
    private_key
}

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// A certificate and its key.
#[derive(Clone)]
pub struct Issued {
    cert: CertificateDer<'static>,
    key: TestKey,
    serial: Vec<u8>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &hex(&self.serial))
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    /// The certificate as a rustls [`CertificateDer`].
    pub fn certificate_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The certificate, PEM: 64-character lines, LF line endings, trailing newline.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The certificate's private key.
    pub fn key(&self) -> &TestKey {
        &self.key
    }

    /// The serial number bytes (big-endian, exactly as encoded in the certificate): 16 bytes,
    /// top bit clear, first byte non-zero.
    pub fn serial(&self) -> Vec<u8> {
        self.serial.clone()
    }
}

/// A certificate authority that can issue further certificates.
pub struct Ca {
    issued: Issued,
    issuer: Issuer<'static, KeyPair>,
    common_name: String,
    /// Pool slots of this CA's key and of every CA above it.
    ancestry: Vec<Slot>,
    now: i64,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .field("cert", &self.issued)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// This CA's certificate and key.
    pub fn cert(&self) -> &Issued {
        &self.issued
    }

    /// The common name (CN) of this CA's subject.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The reference time (unix seconds) validity windows of issued certificates are
    /// relative to.
    pub fn now_unix(&self) -> i64 {
        self.now
    }

    /// An intermediate CA (basicConstraints CA:TRUE, keyCertSign + cRLSign) signed by self,
    /// valid [`Validity::Normal`].
    pub fn intermediate(&self, common_name: &str, key: KeyKind) -> Ca {
        self.intermediate_with_validity(common_name, key, Validity::Normal)
    }

    /// An intermediate CA signed by self with an explicit validity (for expired or
    /// not-yet-valid intermediates).
    pub fn intermediate_with_validity(
        &self,
        common_name: &str,
        key: KeyKind,
        validity: Validity,
    ) -> Ca {
        let key = role_key(key, &self.ancestry);
        let params = ca_params(common_name, validity, self.now);
        let issued = issue(&params, key, Some(&self.issuer));
        let mut ancestry = self.ancestry.clone();
        ancestry.extend(issued.key.slot);
        Ca::from_issued(issued, params, common_name, ancestry, self.now)
    }

    /// An intermediate signed by self, made as `shape` says (valid [`Validity::Normal`]).
    /// It can issue further certificates whatever its shape, as openssl would.
    pub fn intermediate_with_shape(&self, common_name: &str, key: KeyKind, shape: CaShape) -> Ca {
        let key = role_key(key, &self.ancestry);
        let params = shaped_ca_params(common_name, shape, self.now);
        let mut issued = issue(&params, key, Some(&self.issuer));
        if shape == CaShape::V1 {
            issued.cert = to_v1(&issued.cert, &self.issued.key).into();
        }
        let mut ancestry = self.ancestry.clone();
        ancestry.extend(issued.key.slot);
        Ca::from_issued(issued, params, common_name, ancestry, self.now)
    }

    /// A server leaf as [`Ca::server`] makes it, but with extendedKeyUsage `purposes`
    /// (none: no extendedKeyUsage extension at all).
    pub fn server_with_eku(&self, dns_names: &[&str], key: KeyKind, purposes: &[Eku]) -> Issued {
        let key = role_key(key, &self.ancestry);
        let mut params = server_params(dns_names, key.kind, Validity::Normal, self.now);
        params.extended_key_usages = purposes.to_vec();
        issue(&params, key, Some(&self.issuer))
    }

    /// A server leaf as [`Ca::server`] makes it (valid [`Validity::Normal`]),
    /// then changed by `customize`: extra or critical extensions, another
    /// keyUsage, a hand-made authorityKeyIdentifier, …
    pub fn server_customized(
        &self,
        dns_names: &[&str],
        key: KeyKind,
        customize: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let key = role_key(key, &self.ancestry);
        let mut params = server_params(dns_names, key.kind, Validity::Normal, self.now);
        customize(&mut params);
        issue(&params, key, Some(&self.issuer))
    }

    /// A client leaf as [`Ca::client`] makes it (valid [`Validity::Normal`]),
    /// then changed by `customize`.
    pub fn client_customized(
        &self,
        common_name: &str,
        key: KeyKind,
        customize: impl FnOnce(&mut CertificateParams),
    ) -> Issued {
        let key = role_key(key, &self.ancestry);
        let mut params = client_params(common_name, Validity::Normal, self.now);
        customize(&mut params);
        issue(&params, key, Some(&self.issuer))
    }

    /// An intermediate as [`Ca::intermediate`] makes it, then changed by
    /// `customize` before it is signed.
    pub fn intermediate_customized(
        &self,
        common_name: &str,
        key: KeyKind,
        customize: impl FnOnce(&mut CertificateParams),
    ) -> Ca {
        let key = role_key(key, &self.ancestry);
        let mut params = ca_params(common_name, Validity::Normal, self.now);
        customize(&mut params);
        let issued = issue(&params, key, Some(&self.issuer));
        let mut ancestry = self.ancestry.clone();
        ancestry.extend(issued.key.slot);
        Ca::from_issued(issued, params, common_name, ancestry, self.now)
    }

    /// `old` (an intermediate self issued) issued again: the same subject
    /// and key, a new serial, changed by `customize` (a new key identifier,
    /// say). Certificates `old` issued still verify with it, as after a CA
    /// reissues an intermediate and the leaves are not reissued.
    pub fn reissue_intermediate(
        &self,
        old: &Ca,
        customize: impl FnOnce(&mut CertificateParams),
    ) -> Ca {
        let mut params = ca_params(&old.common_name, Validity::Normal, self.now);
        customize(&mut params);
        let issued = issue(&params, old.issued.key.clone(), Some(&self.issuer));
        Ca::from_issued(
            issued,
            params,
            &old.common_name,
            old.ancestry.clone(),
            self.now,
        )
    }

    /// An X.509 v1 server leaf with subject CN `common_name` and no extensions (so no
    /// subjectAltName), as `openssl x509 -req` writes without `-extfile`.
    pub fn server_v1(&self, common_name: &str, key: KeyKind) -> Issued {
        let key = role_key(key, &self.ancestry);
        let params = base_params(common_name, Validity::Normal, self.now);
        let mut issued = issue(&params, key, Some(&self.issuer));
        issued.cert = to_v1(&issued.cert, &self.issued.key).into();
        issued
    }

    /// A server leaf: CA:FALSE, EKU serverAuth, keyUsage digitalSignature (+keyEncipherment
    /// for RSA), SANs = `dns_names` (the first is also the CN).
    ///
    /// Names that parse as IP addresses become iPAddress SANs. With no names the certificate
    /// has no SAN extension and the CN "tlsgate test server".
    pub fn server(&self, dns_names: &[&str], key: KeyKind, validity: Validity) -> Issued {
        let key = role_key(key, &self.ancestry);
        let params = server_params(dns_names, key.kind, validity, self.now);
        issue(&params, key, Some(&self.issuer))
    }

    /// A client leaf: CA:FALSE, EKU clientAuth, keyUsage digitalSignature, CN = `common_name`.
    pub fn client(&self, common_name: &str, key: KeyKind, validity: Validity) -> Issued {
        let key = role_key(key, &self.ancestry);
        let params = client_params(common_name, validity, self.now);
        issue(&params, key, Some(&self.issuer))
    }

    /// A PEM (`-----BEGIN X509 CRL-----`) CRL signed by this CA revoking `revoked_serials`.
    ///
    /// See [`Ca::crl_der`] for the dates.
    pub fn crl_pem(&self, revoked_serials: &[Vec<u8>], next_update_days: i64) -> String {
        pem("X509 CRL", &self.crl_der(revoked_serials, next_update_days))
    }

    /// A DER CRL (v2, with authorityKeyIdentifier and cRLNumber) signed by this CA revoking
    /// `revoked_serials` (big-endian serial bytes, as [`Issued::serial`] returns them).
    ///
    /// thisUpdate = now - 1 hour, nextUpdate = now + `next_update_days` days. A negative
    /// `next_update_days` gives an expired CRL; thisUpdate then moves to one day before
    /// nextUpdate when needed so that thisUpdate < nextUpdate. Revocation dates equal
    /// thisUpdate.
    pub fn crl_der(&self, revoked_serials: &[Vec<u8>], next_update_days: i64) -> Vec<u8> {
        let next_update = self.now + next_update_days * DAY;
        let mut this_update = self.now - HOUR;
        if next_update <= this_update {
            this_update = next_update - DAY;
        }
        let params = CertificateRevocationListParams {
            this_update: datetime(this_update),
            next_update: datetime(next_update),
            crl_number: SerialNumber::from_slice(&random_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: datetime(this_update),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .unwrap_or_else(|e| panic!("signing CRL: {e}"))
            .der()
            .to_vec()
    }

    fn from_issued(
        issued: Issued,
        params: CertificateParams,
        common_name: &str,
        ancestry: Vec<Slot>,
        now: i64,
    ) -> Ca {
        let issuer = Issuer::new(params, issued.key.key_pair());
        Ca {
            issued,
            issuer,
            common_name: common_name.to_owned(),
            ancestry,
            now,
        }
    }
}

/// The certificate generator. `now` is the reference time for validity windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestPki {
    now: i64,
}

impl TestPki {
    /// A generator whose reference time is `now_unix` (unix seconds).
    pub fn at(now_unix: i64) -> Self {
        Self { now: now_unix }
    }

    /// A generator at [`FIXED_NOW`] (2026-06-01T00:00:00Z).
    pub fn fixed() -> Self {
        Self::at(FIXED_NOW)
    }

    /// A generator at the current system time, for tests that run the CLI (which uses the
    /// real clock).
    pub fn now_real() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("system clock before 1970")
            .as_secs();
        Self::at(i64::try_from(now).expect("system clock out of range"))
    }

    /// The reference time, unix seconds.
    pub fn now_unix(&self) -> i64 {
        self.now
    }

    /// A self-signed root CA valid [`Validity::Normal`].
    pub fn root(&self, common_name: &str, key: KeyKind) -> Ca {
        self.root_with_validity(common_name, key, Validity::Normal)
    }

    /// A self-signed root made as `shape` says (valid [`Validity::Normal`]).
    pub fn root_with_shape(&self, common_name: &str, key: KeyKind, shape: CaShape) -> Ca {
        let key = role_key(key, &[]);
        let params = shaped_ca_params(common_name, shape, self.now);
        let mut issued = issue(&params, key, None);
        if shape == CaShape::V1 {
            issued.cert = to_v1(&issued.cert, &issued.key).into();
        }
        let ancestry = issued.key.slot.into_iter().collect();
        Ca::from_issued(issued, params, common_name, ancestry, self.now)
    }

    /// A self-signed root CA with the given validity.
    pub fn root_with_validity(&self, common_name: &str, key: KeyKind, validity: Validity) -> Ca {
        self.self_signed_ca(common_name, role_key(key, &[]), validity)
    }

    /// A self-signed server leaf (CA:FALSE, EKU serverAuth), e.g. for a lone self-signed
    /// certificate. SANs as for [`Ca::server`].
    pub fn self_signed_server(
        &self,
        dns_names: &[&str],
        key: KeyKind,
        validity: Validity,
    ) -> Issued {
        let key = role_key(key, &[]);
        let params = server_params(dns_names, key.kind, validity, self.now);
        issue(&params, key, None)
    }

    /// Convenience: root -> intermediate -> server leaf for `dns_names`, all with `key` kind
    /// (distinct keys per role), all valid [`Validity::Normal`].
    ///
    /// The CA common names carry a random suffix ("tlsgate test root CA 1a2b3c") so that two
    /// chains in one test never share a subject name.
    pub fn server_chain(&self, dns_names: &[&str], key: KeyKind) -> Chain {
        let suffix = hex(&random_bytes::<3>());
        let root = self.root(&format!("tlsgate test root CA {suffix}"), key);
        let intermediate =
            root.intermediate(&format!("tlsgate test intermediate CA {suffix}"), key);
        let leaf = intermediate.server(dns_names, key, Validity::Normal);
        Chain {
            root,
            intermediate,
            leaf,
        }
    }

    fn self_signed_ca(&self, common_name: &str, key: TestKey, validity: Validity) -> Ca {
        let params = ca_params(common_name, validity, self.now);
        let issued = issue(&params, key, None);
        let ancestry = issued.key.slot.into_iter().collect();
        Ca::from_issued(issued, params, common_name, ancestry, self.now)
    }
}

/// Two distinct CAs whose certificates have the *same* subject DN: returns a self-signed CA
/// with `ca`'s subject DN but its own key (never `ca`'s key nor that of any CA above it), so
/// name chaining matches but the signature link does not verify. Valid [`Validity::Normal`]
/// at `pki`'s time.
pub fn same_name_impostor(pki: &TestPki, ca: &Ca, key: KeyKind) -> Ca {
    pki.self_signed_ca(
        &ca.common_name,
        role_key(key, &ca.ancestry),
        Validity::Normal,
    )
}

/// root -> intermediate -> leaf.
#[derive(Debug)]
pub struct Chain {
    /// The self-signed root CA.
    pub root: Ca,
    /// The intermediate CA, issued by `root`.
    pub intermediate: Ca,
    /// The server leaf, issued by `intermediate`.
    pub leaf: Issued,
}

impl Chain {
    /// Leaf then intermediate (no root): the usual `fullchain.pem`.
    pub fn pem_leaf_first(&self) -> String {
        [self.leaf.cert_pem(), self.intermediate.cert().cert_pem()].concat()
    }

    /// Leaf, intermediate, root.
    pub fn pem_with_root(&self) -> String {
        [
            self.leaf.cert_pem(),
            self.intermediate.cert().cert_pem(),
            self.root.cert().cert_pem(),
        ]
        .concat()
    }

    /// Intermediate then leaf (wrong order).
    pub fn pem_wrong_order(&self) -> String {
        [self.intermediate.cert().cert_pem(), self.leaf.cert_pem()].concat()
    }

    /// A degenerate PKCS#7 SignedData (no signers) holding the intermediate then the leaf
    /// (in that order, on purpose), DER.
    pub fn pkcs7_der(&self) -> Vec<u8> {
        pkcs7_certs_only(&[self.intermediate.cert().cert_der(), self.leaf.cert_der()])
    }

    /// [`Chain::pkcs7_der`] in `-----BEGIN PKCS7-----` armour, like
    /// `openssl crl2pkcs7 -nocrl -certfile`.
    pub fn pkcs7_pem(&self) -> String {
        pem("PKCS7", &self.pkcs7_der())
    }

    /// A PKCS#12 file with one key entry (alias "tlsgate"): the leaf's key with the leaf and
    /// intermediate certificates, PBES2/AES-256-CBC encrypted and HMAC-SHA256 MACed under
    /// `password`. The localKeyId is the SHA-1 of the leaf certificate, as OpenSSL does it.
    pub fn pkcs12(&self, password: &str) -> Vec<u8> {
        use p12_keystore::{
            Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
            PrivateKeyChain,
        };
        let key = PrivateKey::from_der(&self.leaf.key.pkcs8).expect("PKCS#8 for PKCS#12");
        let certs = [self.leaf.cert_der(), self.intermediate.cert().cert_der()]
            .map(|der| Certificate::from_der(der).expect("certificate for PKCS#12"));
        let local_key_id = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            self.leaf.cert_der(),
        );
        let chain = PrivateKeyChain::new(local_key_id.as_ref(), key, certs);
        let mut store = KeyStore::new();
        store.add_entry("tlsgate", KeyStoreEntry::PrivateKeyChain(chain));
        store
            .writer(password)
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .write()
            .expect("writing PKCS#12")
    }
}

/// Wrap DER bytes in PEM armour with the given label: 64-character lines, LF line endings,
/// trailing newline.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("timestamp in range")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    bytes
}

/// 16 random bytes, positive (top bit clear) and with a non-zero first byte so that the
/// encoded INTEGER is exactly these 16 bytes.
fn random_serial() -> Vec<u8> {
    let mut serial = random_bytes::<16>();
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    serial.to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn base_params(common_name: &str, validity: Validity, now: i64) -> CertificateParams {
    let (not_before, not_after) = validity.window(now);
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.not_before = datetime(not_before);
    params.not_after = datetime(not_after);
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

fn ca_params(common_name: &str, validity: Validity, now: i64) -> CertificateParams {
    let mut params = base_params(common_name, validity, now);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn shaped_ca_params(common_name: &str, shape: CaShape, now: i64) -> CertificateParams {
    let mut params = ca_params(common_name, Validity::Normal, now);
    match shape {
        CaShape::Proper | CaShape::V1 => {}
        CaShape::NoBasicConstraints => {
            params.is_ca = IsCa::NoCa;
            params.key_usages = Vec::new();
        }
        CaShape::CaFalse => params.is_ca = IsCa::ExplicitNoCa,
        CaShape::NoKeyCertSign => params.key_usages = vec![KeyUsagePurpose::DigitalSignature],
        CaShape::PathLen(limit) => params.is_ca = IsCa::Ca(BasicConstraints::Constrained(limit)),
    }
    params
}

/// Rewrites a certificate as X.509 v1: drops the version field and every extension from
/// the TBSCertificate and signs it again with `issuer_key` (the same key, so the same
/// signature algorithm).
fn to_v1(cert: &[u8], issuer_key: &TestKey) -> Vec<u8> {
    let (_, outer, _) = der::read(cert).expect("Certificate");
    let (_, tbs, rest) = der::read(outer).expect("TBSCertificate");
    let (alg_tag, alg, _) = der::read(rest).expect("signatureAlgorithm");
    let mut fields = Vec::new();
    let mut rest = tbs;
    while let Some((tag, content, after)) = der::read(rest) {
        // [0] version and [3] extensions; v1 has neither.
        if tag != 0xa0 && tag != 0xa3 {
            fields.extend(der::tlv(tag, content));
        }
        rest = after;
    }
    let tbs = der::tlv(der::SEQUENCE, &fields);
    let signature = issuer_key
        .key_pair()
        .sign(&tbs)
        .unwrap_or_else(|e| panic!("signing v1 certificate: {e}"));
    let mut bits = vec![0u8];
    bits.extend(signature);
    let mut body = tbs;
    body.extend(der::tlv(alg_tag, alg));
    body.extend(der::tlv(der::BIT_STRING, &bits));
    der::tlv(der::SEQUENCE, &body)
}

fn client_params(common_name: &str, validity: Validity, now: i64) -> CertificateParams {
    let mut params = base_params(common_name, validity, now);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// An authorityKeyIdentifier extension (RFC 5280 §4.2.1.1) with exactly the
/// fields given, for [`Ca::server_customized`] with
/// `use_authority_key_identifier_extension = false`: `key_id` the issuer's
/// key identifier, `issuer_name` the DER Name of the issuer's issuer
/// (authorityCertIssuer), `serial` the issuer's serial number (content
/// bytes). OpenSSL writes the last two with `authorityKeyIdentifier=keyid,issuer`.
pub fn authority_key_identifier(
    key_id: Option<&[u8]>,
    issuer_name: Option<&[u8]>,
    serial: Option<&[u8]>,
) -> rcgen::CustomExtension {
    let mut body = Vec::new();
    if let Some(id) = key_id {
        body.extend(der::tlv(0x80, id));
    }
    if let Some(name) = issuer_name {
        // GeneralNames [1] IMPLICIT holding directoryName [4] EXPLICIT Name.
        body.extend(der::tlv(0xa1, &der::tlv(0xa4, name)));
    }
    if let Some(serial) = serial {
        body.extend(der::tlv(0x82, serial));
    }
    rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 35], der::tlv(der::SEQUENCE, &body))
}

fn server_params(
    dns_names: &[&str],
    kind: KeyKind,
    validity: Validity,
    now: i64,
) -> CertificateParams {
    let common_name = dns_names.first().copied().unwrap_or("tlsgate test server");
    let names: Vec<String> = dns_names.iter().map(|name| (*name).to_owned()).collect();
    let sans = CertificateParams::new(names)
        .unwrap_or_else(|e| panic!("invalid SAN in {dns_names:?}: {e}"))
        .subject_alt_names;
    let mut params = base_params(common_name, validity, now);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if kind.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

/// Signs `params` for `key`, by `issuer` or self-signed when `issuer` is `None`.
fn issue(params: &CertificateParams, key: TestKey, issuer: Option<&Issuer<'_, KeyPair>>) -> Issued {
    let key_pair = key.key_pair();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key_pair, issuer),
        None => params.self_signed(&key_pair),
    }
    .unwrap_or_else(|e| panic!("signing certificate: {e}"));
    Issued {
        cert: cert.der().clone(),
        key,
        serial: params
            .serial_number
            .as_ref()
            .expect("serial number set")
            .to_bytes(),
    }
}

/// ContentInfo { signedData, [0] SignedData { 1, {}, { data }, [0] certs, {} } }, keeping
/// the certificates in the given order.
fn pkcs7_certs_only(certs: &[&[u8]]) -> Vec<u8> {
    let mut signed_data = der::tlv(der::INTEGER, &[1]);
    signed_data.extend(der::tlv(der::SET, &[])); // digestAlgorithms
    signed_data.extend(der::tlv(der::SEQUENCE, OID_PKCS7_DATA)); // encapContentInfo
    signed_data.extend(der::tlv(0xa0, &certs.concat())); // certificates [0] IMPLICIT
    signed_data.extend(der::tlv(der::SET, &[])); // signerInfos
    let mut content_info = OID_PKCS7_SIGNED_DATA.to_vec();
    content_info.extend(der::tlv(0xa0, &der::tlv(der::SEQUENCE, &signed_data)));
    der::tlv(der::SEQUENCE, &content_info)
}

/// Just enough DER to take apart PKCS#8 and put together SEC1 and PKCS#7.
mod der {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const SEQUENCE: u8 = 0x30;
    pub(crate) const SET: u8 = 0x31;

    /// Encodes one element with a single-byte `tag`.
    pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// Splits off one element with a single-byte tag: `(tag, content, rest)`.
    pub(crate) fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
                return None;
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        Some((tag, content, rest))
    }
}

#[cfg(test)]
mod tests;
