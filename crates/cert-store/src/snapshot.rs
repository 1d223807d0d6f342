//! The immutable set of everything the handshake needs, published as a
//! whole through one `ArcSwap<Snapshot>` (a handshake can never see a
//! certificate from one reload and a CA from another).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use tlsgate_validator::CertificateName;

use crate::{CaCert, CertKind, ClientAuthPolicy, Entry, ServerCert, SniIndex, build_verifier};

/// A listener's mutual-authentication binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthBinding {
    /// The CA bundle that verifies client certificates.
    pub ca: CertificateName,
    /// Mode, CRL scope and expired-CRL policy.
    pub policy: ClientAuthPolicy,
}

/// Which certificates a listener serves (from the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The listener's name.
    pub listener: String,
    /// Server certificates: the first is the default, the rest are additional (SNI).
    pub certificates: Vec<CertificateName>,
    /// Mutual authentication, when on.
    pub client_auth: Option<ClientAuthBinding>,
}

impl Binding {
    /// Does this listener reference the certificate?
    pub fn uses(&self, kind: CertKind, name: &CertificateName) -> bool {
        match kind {
            CertKind::Server => self.certificates.contains(name),
            CertKind::Ca => self.client_auth.as_ref().is_some_and(|c| &c.ca == name),
        }
    }
}

/// The TLS material of one listener, ready for the handshake.
pub struct ListenerTls {
    /// The listener's name.
    pub name: String,
    /// Server certificate selection by SNI and key type.
    pub sni: SniIndex,
    /// The client-certificate verifier when mutual authentication is on and
    /// its CA is loaded; `Err` (with the reason) when it is on but cannot be
    /// served — the listener must then refuse handshakes (fail closed).
    pub client_auth: Option<Result<Arc<dyn ClientCertVerifier>, String>>,
    /// The CA bundle behind `client_auth`.
    pub client_ca: Option<Arc<CaCert>>,
    /// The policy `client_auth` was built with.
    pub client_auth_policy: Option<ClientAuthPolicy>,
    /// Certificates the binding names that the store does not hold (or holds
    /// only as refused content).
    pub missing: Vec<CertificateName>,
    /// The snapshot generation at which this listener's material last
    /// changed. A listener rebuilds its rustls config, and drops resumption
    /// state, when this moves (a new CRL must not be bypassed by resuming).
    pub revision: u64,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("name", &self.name)
            .field("certificates", &self.sni.len())
            .field(
                "client_auth",
                &self
                    .client_auth
                    .as_ref()
                    .map(|r| r.as_ref().map(|_| "verifier")),
            )
            .field("missing", &self.missing)
            .field("revision", &self.revision)
            .finish()
    }
}

/// Everything the store holds, immutable once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    generation: u64,
    servers: HashMap<CertificateName, Arc<ServerCert>>,
    cas: HashMap<CertificateName, Arc<CaCert>>,
    bindings: Arc<Vec<Binding>>,
    listeners: HashMap<String, Arc<ListenerTls>>,
}

impl Snapshot {
    /// Increases by one with every published change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A server certificate by name.
    pub fn server(&self, name: &CertificateName) -> Option<&Arc<ServerCert>> {
        self.servers.get(name)
    }

    /// A CA bundle by name.
    pub fn ca(&self, name: &CertificateName) -> Option<&Arc<CaCert>> {
        self.cas.get(name)
    }

    /// All server certificates (unordered).
    pub fn servers(&self) -> impl Iterator<Item = &Arc<ServerCert>> {
        self.servers.values()
    }

    /// All CA bundles (unordered).
    pub fn cas(&self) -> impl Iterator<Item = &Arc<CaCert>> {
        self.cas.values()
    }

    /// Number of certificates of a kind.
    pub fn count(&self, kind: CertKind) -> usize {
        match kind {
            CertKind::Server => self.servers.len(),
            CertKind::Ca => self.cas.len(),
        }
    }

    /// Is there a certificate of this kind and name?
    pub fn contains(&self, kind: CertKind, name: &CertificateName) -> bool {
        match kind {
            CertKind::Server => self.servers.contains_key(name),
            CertKind::Ca => self.cas.contains_key(name),
        }
    }

    /// A listener's TLS material.
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerTls>> {
        self.listeners.get(name)
    }

    /// All listeners' TLS material.
    pub fn listeners(&self) -> impl Iterator<Item = &Arc<ListenerTls>> {
        self.listeners.values()
    }

    /// The bindings in force.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The listeners that reference a certificate (R18), sorted.
    pub fn listeners_using(&self, kind: CertKind, name: &CertificateName) -> Vec<String> {
        let mut names: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| b.uses(kind, name))
            .map(|b| b.listener.clone())
            .collect();
        names.sort();
        names
    }

    /// The next snapshot with one certificate added, replaced (`Some`) or
    /// removed (`None`). Only listeners that reference it are rebuilt, so a
    /// change to one certificate in a large store stays cheap.
    pub(crate) fn with_entry(
        &self,
        kind: CertKind,
        name: &CertificateName,
        entry: Option<Entry>,
    ) -> Snapshot {
        let mut next = Snapshot {
            generation: self.generation + 1,
            servers: self.servers.clone(),
            cas: self.cas.clone(),
            bindings: self.bindings.clone(),
            listeners: HashMap::with_capacity(self.listeners.len()),
        };
        match (kind, entry) {
            (CertKind::Server, Some(Entry::Server(cert))) => {
                next.servers.insert(name.clone(), cert);
            }
            (CertKind::Ca, Some(Entry::Ca(ca))) => {
                next.cas.insert(name.clone(), ca);
            }
            (CertKind::Server, _) => {
                next.servers.remove(name);
            }
            (CertKind::Ca, _) => {
                next.cas.remove(name);
            }
        }
        for binding in self.bindings.iter() {
            let current = self.listeners.get(&binding.listener);
            let listener = match current {
                Some(current) if !binding.uses(kind, name) => current.clone(),
                _ => Arc::new(next.build_listener(binding, current.map(Arc::as_ref))),
            };
            next.listeners.insert(binding.listener.clone(), listener);
        }
        next
    }

    /// The next snapshot with new bindings; listeners whose binding did not
    /// change keep their material (and revision).
    pub(crate) fn with_bindings(&self, bindings: Vec<Binding>) -> Snapshot {
        let mut next = Snapshot {
            generation: self.generation + 1,
            servers: self.servers.clone(),
            cas: self.cas.clone(),
            bindings: Arc::new(bindings),
            listeners: HashMap::new(),
        };
        let bindings = next.bindings.clone();
        for binding in bindings.iter() {
            let unchanged = self
                .bindings
                .iter()
                .any(|old| old == binding)
                .then(|| self.listeners.get(&binding.listener))
                .flatten();
            let listener = match unchanged {
                Some(current) => current.clone(),
                None => Arc::new(next.build_listener(
                    binding,
                    self.listeners.get(&binding.listener).map(Arc::as_ref),
                )),
            };
            next.listeners.insert(binding.listener.clone(), listener);
        }
        next
    }

    /// Builds a listener's material. The client verifier of `previous` is
    /// reused when its CA entry and policy are unchanged: a new verifier
    /// makes the listener drop resumption state, which a server certificate
    /// renewal must not cause (only a CA or CRL change must, R4).
    fn build_listener(&self, binding: &Binding, previous: Option<&ListenerTls>) -> ListenerTls {
        let mut missing = Vec::new();
        let certs: Vec<Arc<ServerCert>> = binding
            .certificates
            .iter()
            .filter_map(|name| {
                let found = self.servers.get(name).cloned();
                if found.is_none() {
                    missing.push(name.clone());
                }
                found
            })
            .collect();
        let (client_auth, client_ca) = match &binding.client_auth {
            None => (None, None),
            Some(auth) => match self.cas.get(&auth.ca) {
                Some(ca) => {
                    let reusable = previous.and_then(|p| {
                        let same_ca = p.client_ca.as_ref().is_some_and(|old| Arc::ptr_eq(old, ca));
                        let same_policy = p.client_auth_policy == Some(auth.policy);
                        (same_ca && same_policy)
                            .then(|| p.client_auth.clone())
                            .flatten()
                    });
                    let verifier = reusable.unwrap_or_else(|| {
                        build_verifier(ca, &auth.policy).map_err(|err| err.to_string())
                    });
                    (Some(verifier), Some(ca.clone()))
                }
                None => {
                    missing.push(auth.ca.clone());
                    (
                        Some(Err(format!(
                            "the CA certificate {:?} for mutual authentication is not in the store",
                            auth.ca.as_str()
                        ))),
                        None,
                    )
                }
            },
        };
        ListenerTls {
            name: binding.listener.clone(),
            sni: SniIndex::build(&certs),
            client_auth,
            client_ca,
            client_auth_policy: binding.client_auth.as_ref().map(|a| a.policy),
            missing,
            revision: self.generation,
        }
    }
}
