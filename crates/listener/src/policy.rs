//! TLS security policies (R5, R6).
//!
//! In: a policy name from the config — a built-in (`tls12`, `tls12_strict`,
//! `tls13`), a legacy alias from the cloud model, or a custom policy that
//! narrows one of those. Out: a [`TlsPolicy`], i.e. the protocol versions and
//! an aws-lc-rs [`CryptoProvider`] restricted to the policy's cipher suites
//! and key-exchange groups, ready for `ServerConfig::builder_with_provider`.
//!
//! Everything a policy can contain comes from two fixed tables below
//! ([`SUITES`], [`GROUPS`]): ECDHE key exchange with AEAD ciphers only. A
//! policy can never reach past them, so static RSA, DHE, CBC or a
//! finite-field group cannot be configured by any name (R5).
//!
//! Facts about rustls 0.23 with the aws-lc-rs provider that this relies on:
//! it implements no CBC, CCM, static-RSA or DHE cipher suite and no TLS 1.0
//! or 1.1 at all; its TLS 1.2 suites are all ECDHE with AES-GCM or
//! ChaCha20-Poly1305; it offers the hybrid post-quantum group X25519MLKEM768
//! (TLS 1.3 only), but its default provider lists it *last* unless the
//! `prefer-post-quantum` feature is on, so the group list here is explicit
//! rather than taken from the default provider.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ProtocolVersion, SupportedCipherSuite, SupportedProtocolVersion};

/// A cipher suite tlsgate can offer, by its two common names.
struct Suite {
    /// The IANA name (what RFCs and most documentation use).
    iana: &'static str,
    /// The OpenSSL name (what nginx, HAProxy and the cloud model use).
    openssl: &'static str,
    /// rustls's implementation.
    suite: &'static SupportedCipherSuite,
}

/// Every cipher suite any policy may contain, in the built-in policies'
/// preference order (rustls's own default order). All are ECDHE + AEAD:
/// TLS 1.3 suites do not name a key exchange, and the groups below are
/// ECDHE only.
static SUITES: [Suite; 9] = [
    Suite {
        iana: "TLS_AES_256_GCM_SHA384",
        openssl: "TLS_AES_256_GCM_SHA384",
        suite: &cipher_suite::TLS13_AES_256_GCM_SHA384,
    },
    Suite {
        iana: "TLS_AES_128_GCM_SHA256",
        openssl: "TLS_AES_128_GCM_SHA256",
        suite: &cipher_suite::TLS13_AES_128_GCM_SHA256,
    },
    Suite {
        iana: "TLS_CHACHA20_POLY1305_SHA256",
        openssl: "TLS_CHACHA20_POLY1305_SHA256",
        suite: &cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    },
    Suite {
        iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        suite: &cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    },
    Suite {
        iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        suite: &cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    },
    Suite {
        iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        suite: &cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    },
    Suite {
        iana: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        suite: &cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    },
    Suite {
        iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        suite: &cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    },
    Suite {
        iana: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        suite: &cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    },
];

/// A key-exchange group tlsgate can offer.
struct Group {
    /// Accepted spellings; the first is the one messages use.
    names: &'static [&'static str],
    /// rustls's implementation.
    group: &'static &'static dyn SupportedKxGroup,
}

/// Every key-exchange group any policy may contain, in preference order
/// (R5): the post-quantum hybrid first, since a client that offers it wants
/// it, then X25519, P-256, P-384.
static GROUPS: [Group; 4] = [
    Group {
        names: &["X25519MLKEM768"],
        group: &kx_group::X25519MLKEM768,
    },
    Group {
        names: &["X25519"],
        group: &kx_group::X25519,
    },
    Group {
        names: &["P-256", "secp256r1", "prime256v1"],
        group: &kx_group::SECP256R1,
    },
    Group {
        names: &["P-384", "secp384r1"],
        group: &kx_group::SECP384R1,
    },
];

/// Why a legacy alias is not what its name promised; one sentence each,
/// logged once at config load.
const NOTE_1_0: &str = "tls_cipher_policy_1_0 is served as tls12 (TLS 1.2 and 1.3, ECDHE with \
    AES-GCM or ChaCha20-Poly1305): TLS 1.0 and 1.1, CBC cipher suites and static-RSA key exchange \
    are not offered because TLS 1.0/1.1 are deprecated (RFC 8996), static RSA has no forward \
    secrecy (R5) and rustls implements none of them, so clients that need them cannot connect";
const NOTE_1_1: &str = "tls_cipher_policy_1_1 is served as tls12 (TLS 1.2 and 1.3, ECDHE with \
    AES-GCM or ChaCha20-Poly1305): TLS 1.1, CBC cipher suites and static-RSA key exchange are \
    not offered because TLS 1.1 is deprecated (RFC 8996), static RSA has no forward secrecy (R5) \
    and rustls implements none of them, so clients that need them cannot connect";
const NOTE_1_2: &str = "tls_cipher_policy_1_2 is served as tls12 (TLS 1.2 and 1.3, ECDHE with \
    AES-GCM or ChaCha20-Poly1305): CBC cipher suites and static-RSA key exchange are not offered \
    because static RSA has no forward secrecy (R5) and rustls implements neither, so clients that \
    need them cannot connect";
const NOTE_1_2_STRICT: &str = "tls_cipher_policy_1_2_strict is served as tls12_strict (TLS 1.2 \
    and 1.3, ECDHE with AES-GCM or ChaCha20-Poly1305): its ECDHE CBC cipher suites are not \
    offered because rustls implements only AEAD suites, so clients that need them cannot connect";
const NOTE_1_2_STRICT_WITH_1_3: &str = "tls_cipher_policy_1_2_strict_with_1_3 is served as \
    tls12_strict (TLS 1.2 and 1.3, ECDHE with AES-GCM or ChaCha20-Poly1305): its CBC (and any \
    CCM) cipher suites are not offered because rustls implements only AES-GCM and \
    ChaCha20-Poly1305, so clients that need them cannot connect";

/// The built-in policies and legacy aliases: (name, built-in it maps to, note).
const NAMES: [(&str, &str, Option<&str>); 8] = [
    ("tls12", "tls12", None),
    ("tls12_strict", "tls12_strict", None),
    ("tls13", "tls13", None),
    ("tls_cipher_policy_1_0", "tls12", Some(NOTE_1_0)),
    ("tls_cipher_policy_1_1", "tls12", Some(NOTE_1_1)),
    ("tls_cipher_policy_1_2", "tls12", Some(NOTE_1_2)),
    (
        "tls_cipher_policy_1_2_strict",
        "tls12_strict",
        Some(NOTE_1_2_STRICT),
    ),
    (
        "tls_cipher_policy_1_2_strict_with_1_3",
        "tls12_strict",
        Some(NOTE_1_2_STRICT_WITH_1_3),
    ),
];

/// The names [`TlsPolicy::builtin`] knows: the built-in policies, then the
/// legacy aliases, in the order messages list them.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().map(|(name, _, _)| *name)
}

/// A TLS security policy: protocol versions, cipher suites and key-exchange
/// groups (R5, R6). Cheap to clone (one reference count).
///
/// Two policies are equal when their name, versions, suites and groups are
/// equal, in order (order is preference).
#[derive(Clone)]
pub struct TlsPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    versions: Vec<&'static SupportedProtocolVersion>,
    /// aws-lc-rs, with `cipher_suites` and `kx_groups` replaced by the policy's.
    provider: Arc<CryptoProvider>,
}

/// A built-in policy, with the log line an alias must produce.
#[derive(Debug, Clone)]
pub struct BuiltinPolicy {
    /// The policy.
    pub policy: TlsPolicy,
    /// For a legacy alias: what was dropped and why (log it once at load).
    pub note: Option<String>,
}

impl TlsPolicy {
    /// A built-in policy or legacy alias by name; `None` for any other name.
    ///
    /// * `tls12`: TLS 1.2 and 1.3, ECDHE with AES-GCM and ChaCha20-Poly1305
    ///   (every TLS 1.3 suite and every TLS 1.2 ECDHE suite of rustls).
    /// * `tls12_strict`: the same suites. R6 defines it as `tls12` without
    ///   CBC; rustls implements no CBC suite, so there is nothing to remove.
    /// * `tls13`: TLS 1.3 only.
    ///
    /// All three offer the groups X25519MLKEM768, X25519, P-256 and P-384,
    /// in that order (R5). The legacy names `tls_cipher_policy_1_0`, `_1_1`
    /// and `_1_2` map to `tls12`, `_1_2_strict` and `_1_2_strict_with_1_3`
    /// to `tls12_strict`; their [`BuiltinPolicy::note`] says what was
    /// dropped. The policy keeps the alias as its name, so logs and metrics
    /// show what the config said.
    pub fn builtin(name: &str) -> Option<BuiltinPolicy> {
        let (_, target, note) = NAMES.iter().find(|(alias, _, _)| *alias == name)?;
        let versions = builtin_versions(target);
        let suites = SUITES
            .iter()
            .map(|s| *s.suite)
            .filter(|s| versions.iter().any(|v| v.version == s.version().version))
            .collect();
        let groups = GROUPS.iter().map(|g| *g.group).collect();
        Some(BuiltinPolicy {
            policy: TlsPolicy::new(name, versions, suites, groups),
            note: note.map(str::to_owned),
        })
    }

    /// A custom policy named `name`: the built-in policy (or alias) `base`,
    /// narrowed to the listed `versions`, `cipher_suites` and `groups`
    /// (`None` keeps the base's). Listed suites and groups keep the order
    /// given, which becomes the preference order.
    ///
    /// Versions are `TLSv1.2`/`TLSv1.3` (also `1.2`, `tls12`, …); suites are
    /// IANA names (`TLS_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`) or OpenSSL names
    /// (`ECDHE-RSA-AES128-GCM-SHA256`); groups are `X25519MLKEM768`,
    /// `X25519`, `P-256` (`secp256r1`) and `P-384` (`secp384r1`). Names are
    /// matched without regard to case.
    ///
    /// # Errors
    ///
    /// A message for the config error when `base` is unknown, a list is
    /// empty, a name is unknown or not in the base (saying why, e.g. CBC or
    /// DHE is never allowed, and listing what is), a suite belongs to a
    /// version the policy leaves out, or an allowed version is left without
    /// a suite or a usable group.
    pub fn custom(
        name: &str,
        base: &str,
        versions: Option<&[String]>,
        cipher_suites: Option<&[String]>,
        groups: Option<&[String]>,
    ) -> Result<TlsPolicy, String> {
        let context = |message: String| format!("TLS policy {name:?}: {message}");
        let base_policy = TlsPolicy::builtin(base)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(n, _, _)| *n).collect();
                format!(
                    "unknown base policy {base:?}; use one of {}",
                    known.join(", ")
                )
            })
            .map_err(context)?
            .policy;

        let versions = match versions {
            None => base_policy.versions().to_vec(),
            Some(list) => narrow_versions(list, &base_policy, base).map_err(context)?,
        };
        let suites = match cipher_suites {
            None => base_policy
                .provider()
                .cipher_suites
                .iter()
                .filter(|s| versions.iter().any(|v| v.version == s.version().version))
                .copied()
                .collect(),
            Some(list) => narrow_suites(list, &base_policy, base, &versions).map_err(context)?,
        };
        let groups = match groups {
            None => base_policy.provider().kx_groups.clone(),
            Some(list) => narrow_groups(list, &base_policy, base).map_err(context)?,
        };
        check_usable(&versions, &suites, &groups).map_err(context)?;
        Ok(TlsPolicy::new(name, versions, suites, groups))
    }

    /// The policy's name (a built-in, an alias, or the custom name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The aws-lc-rs crypto provider restricted to the policy's cipher
    /// suites and key-exchange groups. Use it with
    /// `ServerConfig::builder_with_provider`, never the process default.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.inner.provider.clone()
    }

    /// The protocol versions allowed, for `with_protocol_versions`.
    pub fn versions(&self) -> &[&'static SupportedProtocolVersion] {
        &self.inner.versions
    }

    fn new(
        name: &str,
        versions: Vec<&'static SupportedProtocolVersion>,
        cipher_suites: Vec<SupportedCipherSuite>,
        kx_groups: Vec<&'static dyn SupportedKxGroup>,
    ) -> TlsPolicy {
        let provider = CryptoProvider {
            cipher_suites,
            kx_groups,
            ..aws_lc_rs::default_provider()
        };
        TlsPolicy {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                versions,
                provider: Arc::new(provider),
            }),
        }
    }
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = &self.inner.provider;
        f.debug_struct("TlsPolicy")
            .field("name", &self.inner.name)
            .field(
                "versions",
                &self
                    .inner
                    .versions
                    .iter()
                    .map(|v| v.version)
                    .collect::<Vec<_>>(),
            )
            .field(
                "cipher_suites",
                &provider
                    .cipher_suites
                    .iter()
                    .map(|s| s.suite())
                    .collect::<Vec<_>>(),
            )
            .field(
                "kx_groups",
                &provider
                    .kx_groups
                    .iter()
                    .map(|g| g.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PartialEq for TlsPolicy {
    fn eq(&self, other: &Self) -> bool {
        // The connection path compares the listener's policy with the cached
        // one per accepted connection; clones share `inner`, so this is
        // usually one pointer comparison.
        if Arc::ptr_eq(&self.inner, &other.inner) {
            return true;
        }
        let (a, b) = (&self.inner, &other.inner);
        a.name == b.name
            && a.versions
                .iter()
                .map(|v| v.version)
                .eq(b.versions.iter().map(|v| v.version))
            && a.provider.cipher_suites.iter().map(|s| s.suite()).eq(b
                .provider
                .cipher_suites
                .iter()
                .map(|s| s.suite()))
            && a.provider.kx_groups.iter().map(|g| g.name()).eq(b
                .provider
                .kx_groups
                .iter()
                .map(|g| g.name()))
    }
}

fn builtin_versions(target: &str) -> Vec<&'static SupportedProtocolVersion> {
    match target {
        "tls13" => vec![&rustls::version::TLS13],
        _ => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    }
}

fn version_label(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "an unsupported version",
    }
}

fn version_labels(versions: &[&'static SupportedProtocolVersion]) -> String {
    versions
        .iter()
        .map(|v| version_label(v.version))
        .collect::<Vec<_>>()
        .join(", ")
}

fn empty_list(field: &str) -> String {
    format!("`{field}` is an empty list; leave it out to keep the base policy's {field}")
}

fn narrow_versions(
    list: &[String],
    base_policy: &TlsPolicy,
    base: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    if list.is_empty() {
        return Err(empty_list("versions"));
    }
    let allowed = base_policy.versions();
    let mut wanted = Vec::with_capacity(2);
    for text in list {
        let version = parse_version(text).map_err(|why| {
            format!(
                "version {text:?} is not allowed: {why}; allowed in base policy {base:?}: {}",
                version_labels(allowed)
            )
        })?;
        let Some(found) = allowed.iter().find(|v| v.version == version) else {
            return Err(format!(
                "version {text:?} is not in base policy {base:?}, and a custom policy can only \
                 narrow its base; allowed: {}",
                version_labels(allowed)
            ));
        };
        if !wanted
            .iter()
            .any(|v: &&SupportedProtocolVersion| v.version == version)
        {
            wanted.push(*found);
        }
    }
    // Base order (1.3 first); the order of versions means nothing to rustls.
    Ok(allowed
        .iter()
        .filter(|v| wanted.iter().any(|w| w.version == v.version))
        .copied()
        .collect())
}

fn parse_version(text: &str) -> Result<ProtocolVersion, &'static str> {
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "tlsv1.3" | "tls1.3" | "1.3" | "tls13" => Ok(ProtocolVersion::TLSv1_3),
        "tlsv1.2" | "tls1.2" | "1.2" | "tls12" => Ok(ProtocolVersion::TLSv1_2),
        "tlsv1" | "tlsv1.0" | "tls1.0" | "1.0" | "tls10" | "tlsv1.1" | "tls1.1" | "1.1"
        | "tls11" => Err("TLS 1.0 and 1.1 are deprecated (RFC 8996) and not implemented by rustls"),
        "sslv2" | "sslv3" | "ssl2" | "ssl3" | "ssl2.0" | "ssl3.0" => {
            Err("SSL 2.0 and 3.0 are broken (RFC 6176, RFC 7568) and not implemented by rustls")
        }
        _ => Err("unknown TLS version name"),
    }
}

fn suite_label(suite: &SupportedCipherSuite) -> &'static str {
    SUITES
        .iter()
        .find(|s| s.suite.suite() == suite.suite())
        .map_or("an unknown suite", |s| s.iana)
}

fn suite_labels(suites: &[SupportedCipherSuite]) -> String {
    suites
        .iter()
        .map(suite_label)
        .collect::<Vec<_>>()
        .join(", ")
}

fn narrow_suites(
    list: &[String],
    base_policy: &TlsPolicy,
    base: &str,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Vec<SupportedCipherSuite>, String> {
    if list.is_empty() {
        return Err(empty_list("cipher_suites"));
    }
    let provider = base_policy.provider();
    let allowed = &provider.cipher_suites;
    let mut out: Vec<SupportedCipherSuite> = Vec::with_capacity(list.len());
    for text in list {
        let wanted = text.trim();
        let known = SUITES.iter().find(|s| {
            s.iana.eq_ignore_ascii_case(wanted)
                || s.openssl.eq_ignore_ascii_case(wanted)
                // rustls's own spelling of the TLS 1.3 suites.
                || format!("{:?}", s.suite.suite()).eq_ignore_ascii_case(wanted)
        });
        let Some(known) = known else {
            return Err(format!(
                "cipher suite {text:?} is not allowed: {}; tlsgate offers only ECDHE key \
                 exchange with AES-GCM or ChaCha20-Poly1305 (R5, R6); allowed in base policy \
                 {base:?}: {}",
                why_suite_refused(wanted),
                suite_labels(allowed)
            ));
        };
        let Some(found) = allowed.iter().find(|s| s.suite() == known.suite.suite()) else {
            return Err(format!(
                "cipher suite {text:?} is not in base policy {base:?}, and a custom policy can \
                 only narrow its base; allowed: {}",
                suite_labels(allowed)
            ));
        };
        let suite_version = found.version().version;
        if !versions.iter().any(|v| v.version == suite_version) {
            return Err(format!(
                "cipher suite {text:?} is a {} suite, but the policy allows only {}; remove it \
                 or add {} to `versions`",
                version_label(suite_version),
                version_labels(versions),
                version_label(suite_version)
            ));
        }
        if !out.iter().any(|s| s.suite() == found.suite()) {
            out.push(*found);
        }
    }
    Ok(out)
}

/// Why a cipher suite name outside [`SUITES`] is refused, judged from the
/// name alone (IANA `TLS_<KX>_WITH_<CIPHER>` or OpenSSL `KX-AUTH-CIPHER`).
fn why_suite_refused(name: &str) -> &'static str {
    let upper = name.to_ascii_uppercase();
    let key_exchange = if let Some(rest) = upper.strip_prefix("TLS_") {
        rest.split_once("_WITH_").map(|(kx, _)| kx.to_owned())
    } else if upper.contains('-') {
        upper.split('-').next().map(str::to_owned)
    } else {
        None
    };
    let kx = key_exchange.as_deref().unwrap_or("");
    if kx.contains("PSK") || kx.contains("SRP") {
        "pre-shared-key and SRP key exchange are not supported"
    } else if kx == "RSA" || (upper.contains('-') && !upper.starts_with("ECDHE") && is_cipher(kx)) {
        "static-RSA key exchange has no forward secrecy and is never allowed (R5)"
    } else if kx.starts_with("DHE") || kx.starts_with("EDH") || kx.starts_with("DH_") || kx == "DH"
    {
        "finite-field DHE key exchange is never allowed (R5: ECDHE only)"
    } else if kx.starts_with("ECDH_") || kx == "ECDH" {
        "static ECDH key exchange has no forward secrecy and is never allowed (R5)"
    } else if upper.contains("CBC") {
        "CBC cipher suites are not allowed (R6) and not implemented by rustls"
    } else if upper.contains("CCM") {
        "CCM cipher suites are not implemented by rustls"
    } else if upper.contains("NULL")
        || upper.contains("RC4")
        || upper.contains("DES")
        || upper.contains("EXPORT")
        || upper.contains("ANON")
    {
        "the cipher is broken or provides no protection"
    } else if upper.starts_with("ECDHE-") && !upper.contains("GCM") && !upper.contains("CHACHA") {
        // OpenSSL names its ECDHE CBC suites without saying CBC
        // (`ECDHE-RSA-AES128-SHA`, `ECDHE-ECDSA-AES256-SHA384`).
        "CBC cipher suites are not allowed (R6) and not implemented by rustls"
    } else {
        "unknown cipher suite name (use an IANA or OpenSSL name)"
    }
}

/// An OpenSSL name that starts with the cipher itself names a static-RSA
/// suite (`AES128-SHA`, `DES-CBC3-SHA`, `AES256-GCM-SHA384`).
fn is_cipher(first: &str) -> bool {
    [
        "AES", "DES", "CAMELLIA", "RC4", "SEED", "IDEA", "ARIA", "NULL",
    ]
    .iter()
    .any(|c| first.starts_with(c))
}

fn group_label(group: &'static dyn SupportedKxGroup) -> String {
    GROUPS
        .iter()
        .find(|g| g.group.name() == group.name())
        .map_or_else(|| format!("{:?}", group.name()), |g| g.names[0].to_owned())
}

fn group_labels(groups: &[&'static dyn SupportedKxGroup]) -> String {
    groups
        .iter()
        .map(|g| group_label(*g))
        .collect::<Vec<_>>()
        .join(", ")
}

fn narrow_groups(
    list: &[String],
    base_policy: &TlsPolicy,
    base: &str,
) -> Result<Vec<&'static dyn SupportedKxGroup>, String> {
    if list.is_empty() {
        return Err(empty_list("groups"));
    }
    let provider = base_policy.provider();
    let allowed = &provider.kx_groups;
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::with_capacity(list.len());
    for text in list {
        let wanted = text.trim();
        let known = GROUPS
            .iter()
            .find(|g| g.names.iter().any(|n| n.eq_ignore_ascii_case(wanted)));
        let Some(known) = known else {
            return Err(format!(
                "group {text:?} is not allowed: {}; allowed in base policy {base:?}: {}",
                why_group_refused(wanted),
                group_labels(allowed)
            ));
        };
        let Some(found) = allowed.iter().find(|g| g.name() == known.group.name()) else {
            return Err(format!(
                "group {text:?} is not in base policy {base:?}, and a custom policy can only \
                 narrow its base; allowed: {}",
                group_labels(allowed)
            ));
        };
        if !out.iter().any(|g| g.name() == found.name()) {
            out.push(*found);
        }
    }
    Ok(out)
}

fn why_group_refused(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("ffdhe") || lower.starts_with("dh") || lower.starts_with("modp") {
        "finite-field Diffie-Hellman groups are never allowed (R5: ECDHE only)"
    } else if lower == "mlkem768" || lower == "mlkem1024" || lower == "mlkem512" {
        "pure ML-KEM is not ECDHE; R5 allows post-quantum key exchange only as the \
         X25519MLKEM768 hybrid"
    } else if lower.contains("mlkem") || lower.contains("kyber") {
        "the only post-quantum group offered is the X25519MLKEM768 hybrid (R5)"
    } else if lower.contains("521") || lower.contains("448") || lower.contains("brainpool") {
        "this curve is not offered by rustls's aws-lc-rs provider"
    } else {
        "unknown key-exchange group name"
    }
}

/// Every allowed version needs a suite and a group it can use, or every
/// handshake at that version would fail; better a config error now.
fn check_usable(
    versions: &[&'static SupportedProtocolVersion],
    suites: &[SupportedCipherSuite],
    groups: &[&'static dyn SupportedKxGroup],
) -> Result<(), String> {
    for version in versions {
        let label = version_label(version.version);
        if !suites
            .iter()
            .any(|s| s.version().version == version.version)
        {
            return Err(format!(
                "no cipher suite for {label}, which the policy allows; add a {label} suite to \
                 `cipher_suites` or remove {label} from `versions`"
            ));
        }
        if !groups.iter().any(|g| g.usable_for_version(version.version)) {
            return Err(format!(
                "no key-exchange group usable with {label} (X25519MLKEM768 is TLS 1.3 only); \
                 add X25519, P-256 or P-384 to `groups`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rustls::{CipherSuite, NamedGroup};

    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn suites(policy: &TlsPolicy) -> Vec<CipherSuite> {
        policy
            .provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect()
    }

    fn groups(policy: &TlsPolicy) -> Vec<NamedGroup> {
        policy
            .provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect()
    }

    fn versions(policy: &TlsPolicy) -> Vec<ProtocolVersion> {
        policy.versions().iter().map(|v| v.version).collect()
    }

    const R5_GROUPS: [NamedGroup; 4] = [
        NamedGroup::X25519MLKEM768,
        NamedGroup::X25519,
        NamedGroup::secp256r1,
        NamedGroup::secp384r1,
    ];

    #[test]
    fn builtins() {
        let tls12 = TlsPolicy::builtin("tls12").unwrap();
        assert!(tls12.note.is_none());
        assert_eq!(tls12.policy.name(), "tls12");
        assert_eq!(
            versions(&tls12.policy),
            [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2]
        );
        // Every suite rustls's aws-lc-rs provider has, TLS 1.2 ones included.
        let all: Vec<CipherSuite> = aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(suites(&tls12.policy), all);
        assert_eq!(groups(&tls12.policy), R5_GROUPS);

        let strict = TlsPolicy::builtin("tls12_strict").unwrap();
        assert!(strict.note.is_none());
        assert_eq!(suites(&strict.policy), suites(&tls12.policy));
        assert_eq!(versions(&strict.policy), versions(&tls12.policy));
        assert_ne!(strict.policy, tls12.policy, "names differ");

        let tls13 = TlsPolicy::builtin("tls13").unwrap().policy;
        assert_eq!(versions(&tls13), [ProtocolVersion::TLSv1_3]);
        assert_eq!(
            suites(&tls13),
            [
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(groups(&tls13), R5_GROUPS);

        for unknown in ["", "TLS12", "tls11", "default", "tls_cipher_policy_1_3"] {
            assert!(TlsPolicy::builtin(unknown).is_none(), "{unknown:?}");
        }
    }

    #[test]
    fn aliases_map_to_safe_policies_with_a_note() {
        let cases = [
            ("tls_cipher_policy_1_0", "tls12", "TLS 1.0 and 1.1"),
            ("tls_cipher_policy_1_1", "tls12", "TLS 1.1"),
            ("tls_cipher_policy_1_2", "tls12", "CBC"),
            ("tls_cipher_policy_1_2_strict", "tls12_strict", "CBC"),
            (
                "tls_cipher_policy_1_2_strict_with_1_3",
                "tls12_strict",
                "CBC",
            ),
        ];
        for (alias, target, dropped) in cases {
            let found = TlsPolicy::builtin(alias).unwrap();
            let target = TlsPolicy::builtin(target).unwrap().policy;
            assert_eq!(found.policy.name(), alias);
            assert_eq!(versions(&found.policy), versions(&target), "{alias}");
            assert_eq!(suites(&found.policy), suites(&target), "{alias}");
            assert_eq!(groups(&found.policy), groups(&target), "{alias}");
            let note = found.note.unwrap();
            assert!(note.starts_with(alias), "{note}");
            assert!(note.contains(dropped), "{alias}: {note}");
            assert!(note.contains("rustls"), "{alias} says why: {note}");
            assert!(note.contains("cannot connect"), "{alias}: {note}");
            // One sentence, one log line.
            assert!(!note.contains(". ") && !note.contains('\n'), "{note}");
        }
    }

    #[test]
    fn equality_is_by_content() {
        let a = TlsPolicy::builtin("tls12").unwrap().policy;
        let b = TlsPolicy::builtin("tls12").unwrap().policy;
        assert!(!Arc::ptr_eq(&a.inner, &b.inner));
        assert_eq!(a, b);
        assert_eq!(a, a.clone());
        let custom = TlsPolicy::custom("tls12", "tls12", None, None, None).unwrap();
        assert_eq!(custom, a, "same name and content");
        let narrowed =
            TlsPolicy::custom("tls12", "tls12", None, None, Some(&strings(&["X25519"]))).unwrap();
        assert_ne!(narrowed, a);
        let reordered = TlsPolicy::custom(
            "tls12",
            "tls12",
            None,
            None,
            Some(&strings(&["X25519", "X25519MLKEM768", "P-256", "P-384"])),
        )
        .unwrap();
        assert_ne!(reordered, a, "preference order counts");
    }

    #[test]
    fn custom_without_lists_copies_the_base() {
        let p = TlsPolicy::custom("mine", "tls_cipher_policy_1_0", None, None, None).unwrap();
        let base = TlsPolicy::builtin("tls12").unwrap().policy;
        assert_eq!(p.name(), "mine");
        assert_eq!(versions(&p), versions(&base));
        assert_eq!(suites(&p), suites(&base));
        assert_eq!(groups(&p), groups(&base));
    }

    #[test]
    fn custom_narrows_versions_suites_and_groups() {
        let p = TlsPolicy::custom(
            "tight",
            "tls12",
            Some(&strings(&["TLSv1.2"])),
            Some(&strings(&[
                "ECDHE-RSA-AES128-GCM-SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            ])),
            Some(&strings(&["secp384r1", "x25519"])),
        )
        .unwrap();
        assert_eq!(versions(&p), [ProtocolVersion::TLSv1_2]);
        assert_eq!(
            suites(&p),
            [
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ]
        );
        assert_eq!(groups(&p), [NamedGroup::secp384r1, NamedGroup::X25519]);

        // Versions only: the base's suites for those versions.
        let p = TlsPolicy::custom(
            "v13",
            "tls12",
            Some(&strings(&["1.3", "tls13"])),
            None,
            None,
        )
        .unwrap();
        assert_eq!(versions(&p), [ProtocolVersion::TLSv1_3]);
        assert_eq!(
            suites(&p),
            suites(&TlsPolicy::builtin("tls13").unwrap().policy)
        );

        // Every accepted spelling, duplicates folded.
        let p = TlsPolicy::custom(
            "spellings",
            "tls12_strict",
            Some(&strings(&["TLSv1.3", "tls12", "1.2"])),
            Some(&strings(&[
                "TLS_AES_128_GCM_SHA256",
                "TLS13_AES_128_GCM_SHA256",
                "ecdhe-ecdsa-chacha20-poly1305",
            ])),
            Some(&strings(&["P-256", "prime256v1", "X25519MLKEM768"])),
        )
        .unwrap();
        assert_eq!(
            versions(&p),
            [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2]
        );
        assert_eq!(
            suites(&p),
            [
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(
            groups(&p),
            [NamedGroup::secp256r1, NamedGroup::X25519MLKEM768]
        );
    }

    fn custom_error(
        base: &str,
        versions: Option<&[&str]>,
        suites: Option<&[&str]>,
        groups: Option<&[&str]>,
    ) -> String {
        let versions = versions.map(strings);
        let suites = suites.map(strings);
        let groups = groups.map(strings);
        let err = TlsPolicy::custom(
            "bad",
            base,
            versions.as_deref(),
            suites.as_deref(),
            groups.as_deref(),
        )
        .unwrap_err();
        assert!(err.starts_with("TLS policy \"bad\": "), "{err}");
        err
    }

    #[test]
    fn custom_refuses_what_r5_forbids_and_says_why() {
        let cases: &[(&str, &[&str])] = &[
            ("ECDHE-RSA-AES128-SHA", &["CBC", "ECDHE"]),
            ("ECDHE-ECDSA-AES256-SHA384", &["CBC"]),
            ("ECDHE-ECDSA-AES128-CCM", &["CCM"]),
            ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", &["CBC", "ECDHE"]),
            ("DHE-RSA-AES128-GCM-SHA256", &["DHE", "R5"]),
            ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", &["DHE", "R5"]),
            ("AES128-GCM-SHA256", &["static-RSA", "forward secrecy"]),
            ("TLS_RSA_WITH_AES_128_GCM_SHA256", &["static-RSA"]),
            ("DES-CBC3-SHA", &["static-RSA"]),
            ("TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256", &["static ECDH"]),
            ("TLS_AES_128_CCM_SHA256", &["CCM"]),
            ("TLS_PSK_WITH_AES_128_GCM_SHA256", &["pre-shared"]),
            ("NOT-A-SUITE", &["unknown"]),
        ];
        for (suite, words) in cases {
            let err = custom_error("tls12", None, Some(&[suite]), None);
            for word in *words {
                assert!(err.contains(word), "{suite}: {err}");
            }
            assert!(err.contains("ECDHE key exchange"), "{suite}: {err}");
            assert!(
                err.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
                "lists what is allowed: {err}"
            );
        }

        for (version, word) in [
            ("TLSv1.1", "RFC 8996"),
            ("TLSv1", "RFC 8996"),
            ("1.0", "RFC 8996"),
            ("SSLv3", "RFC 7568"),
            ("TLSv1.4", "unknown"),
        ] {
            let err = custom_error("tls12", Some(&[version]), None, None);
            assert!(err.contains(word), "{version}: {err}");
            assert!(
                err.contains("TLSv1.3, TLSv1.2"),
                "lists what is allowed: {err}"
            );
        }

        for (group, word) in [
            ("ffdhe2048", "ECDHE only"),
            ("ffdhe4096", "ECDHE only"),
            ("MLKEM768", "hybrid"),
            ("SecP256r1MLKEM768", "X25519MLKEM768"),
            ("P-521", "not offered"),
            ("X448", "not offered"),
            ("curve9", "unknown"),
        ] {
            let err = custom_error("tls12", None, None, Some(&[group]));
            assert!(err.contains(word), "{group}: {err}");
            assert!(
                err.contains("X25519MLKEM768, X25519, P-256, P-384"),
                "lists what is allowed: {err}"
            );
        }
    }

    #[test]
    fn custom_only_narrows() {
        let err = custom_error("tls13", Some(&["TLSv1.2"]), None, None);
        assert!(err.contains("not in base policy \"tls13\""), "{err}");
        assert!(err.contains("allowed: TLSv1.3"), "{err}");

        let err = custom_error("tls13", None, Some(&["ECDHE-RSA-AES128-GCM-SHA256"]), None);
        assert!(err.contains("not in base policy \"tls13\""), "{err}");
        assert!(err.contains("allowed: TLS_AES_256_GCM_SHA384"), "{err}");

        let err = custom_error("nope", None, None, None);
        assert!(err.contains("unknown base policy \"nope\""), "{err}");
        assert!(err.contains("tls12, tls12_strict, tls13"), "{err}");
    }

    #[test]
    fn custom_refuses_unusable_results() {
        for field in ["versions", "cipher_suites", "groups"] {
            let empty: &[&str] = &[];
            let (v, s, g) = match field {
                "versions" => (Some(empty), None, None),
                "cipher_suites" => (None, Some(empty), None),
                _ => (None, None, Some(empty)),
            };
            let err = custom_error("tls12", v, s, g);
            assert!(err.contains("empty list"), "{field}: {err}");
        }

        // Both versions allowed, suites for TLS 1.2 only.
        let err = custom_error(
            "tls12",
            None,
            Some(&["ECDHE-ECDSA-AES128-GCM-SHA256"]),
            None,
        );
        assert!(err.contains("no cipher suite for TLSv1.3"), "{err}");

        // A TLS 1.3 suite in a TLS 1.2-only policy.
        let err = custom_error(
            "tls12",
            Some(&["TLSv1.2"]),
            Some(&["TLS_AES_128_GCM_SHA256"]),
            None,
        );
        assert!(err.contains("is a TLSv1.3 suite"), "{err}");

        // The hybrid group cannot serve TLS 1.2.
        let err = custom_error("tls12", None, None, Some(&["X25519MLKEM768"]));
        assert!(
            err.contains("no key-exchange group usable with TLSv1.2"),
            "{err}"
        );
        assert!(
            TlsPolicy::custom(
                "pq",
                "tls13",
                None,
                None,
                Some(&strings(&["X25519MLKEM768"]))
            )
            .is_ok(),
            "but TLS 1.3 alone can use it"
        );
    }

    #[test]
    fn every_policy_is_ecdhe_and_aead_only() {
        for (name, _, _) in NAMES {
            let policy = TlsPolicy::builtin(name).unwrap().policy;
            let provider = policy.provider();
            for suite in &provider.cipher_suites {
                let text = format!("{:?}", suite.suite());
                let aead = text.contains("_GCM_") || text.contains("CHACHA20_POLY1305");
                let kx = text.starts_with("TLS13_") || text.starts_with("TLS_ECDHE_");
                assert!(aead && kx && !text.contains("CBC"), "{name}: {text}");
                if let SupportedCipherSuite::Tls12(tls12) = suite {
                    assert_eq!(
                        tls12.kx,
                        rustls::crypto::KeyExchangeAlgorithm::ECDHE,
                        "{name}: {text}"
                    );
                }
            }
            for group in &provider.kx_groups {
                assert_eq!(
                    group.name().key_exchange_algorithm(),
                    rustls::crypto::KeyExchangeAlgorithm::ECDHE,
                    "{name}"
                );
            }
            assert_eq!(groups(&policy), R5_GROUPS, "{name}");
        }
    }

    #[test]
    fn debug_names_the_content() {
        let text = format!("{:?}", TlsPolicy::builtin("tls13").unwrap().policy);
        assert!(text.contains("\"tls13\""), "{text}");
        assert!(text.contains("TLS13_AES_128_GCM_SHA256"), "{text}");
        assert!(text.contains("X25519MLKEM768"), "{text}");
    }
}
