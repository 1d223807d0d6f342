//! `[[listener]]` → [`ListenerConfig`]s: each listener on its own (R1, R6,
//! R10–R13), then what listeners must not share (names, addresses).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use serde_spanned::Spanned;
use tlsgate_listener::{
    BackendConfig, HealthCheckConfig, Limits, ListenerConfig, MutualAuth, Protocol, SchedulerKind,
    Timeouts, TlsSettings,
};

use super::convert::{certificate_name, cidr, keyword, non_empty, socket_addr};
use super::error::{Fault, Faults};
use super::file::{FileBackend, FileListener, FileTlsPolicy};
use super::policy::Policies;

/// Longest listener name; names appear in logs, metric labels and the admin API.
const MAX_LISTENER_NAME: usize = 80;

/// Checks every custom policy and listener, and that listeners do not
/// collide with each other or with the admin API at `admin_bind`. Faults
/// land in `faults`, lines to log in `notes`.
pub(super) fn convert_all(
    raw_policies: Vec<Spanned<FileTlsPolicy>>,
    raw_listeners: Vec<Spanned<FileListener>>,
    admin_bind: Option<SocketAddr>,
    faults: &mut Faults,
    notes: &mut Vec<String>,
) -> Vec<ListenerConfig> {
    let policies = Policies::new(raw_policies, faults);
    if raw_listeners.is_empty() {
        faults.push(Fault::new(
            0..0,
            "listener",
            "the file has no [[listener]]; add one with a name, a bind address and a [[listener.backend]]",
        ));
    }
    check_shared(&raw_listeners, admin_bind, faults);
    let mut listeners = Vec::with_capacity(raw_listeners.len());
    for (index, raw) in raw_listeners.into_iter().enumerate() {
        let name = raw.get_ref().name.get_ref().clone();
        match convert(raw, &policies, notes) {
            Ok(listener) => listeners.push(listener),
            Err(found) => {
                for fault in found {
                    faults.push(
                        fault
                            .within(&format!("listener[{index}]"))
                            .named(Some(&name)),
                    );
                }
            }
        }
    }
    listeners
}

/// Names unique; addresses neither shared between listeners nor with the admin API.
fn check_shared(
    raw_listeners: &[Spanned<FileListener>],
    admin_bind: Option<SocketAddr>,
    faults: &mut Faults,
) {
    // How messages name an earlier listener: by name, or by index when it has none.
    let label = |index: usize| {
        let name = raw_listeners
            .get(index)
            .map_or("", |raw| raw.get_ref().name.get_ref().as_str());
        if name.is_empty() {
            format!("listener[{index}]")
        } else {
            format!("listener {name:?}")
        }
    };
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut binds: Vec<(usize, SocketAddr)> = Vec::new();
    for (index, raw) in raw_listeners.iter().enumerate() {
        let raw = raw.get_ref();
        let name = raw.name.get_ref().as_str();
        let fault = |field: &str, span, message: String| {
            Fault::new(span, field, message)
                .within(&format!("listener[{index}]"))
                .named(Some(name))
        };
        if !name.is_empty() {
            if let Some(first) = names.get(name) {
                faults.push(fault(
                    "name",
                    raw.name.span(),
                    format!("{name:?} is already the name of listener[{first}]; listener names must be unique"),
                ));
            } else {
                names.insert(name, index);
            }
        }
        // An address that does not parse is reported by the listener's own check.
        let Ok(bind) = raw.bind.get_ref().trim().parse::<SocketAddr>() else {
            continue;
        };
        if let Some((first, other)) = binds.iter().find(|(_, other)| binds_conflict(bind, *other)) {
            faults.push(fault(
                "bind",
                raw.bind.span(),
                format!(
                    "{bind} collides with {} on {other}; give each listener its own port",
                    label(*first)
                ),
            ));
        } else if let Some(admin) = admin_bind.filter(|admin| binds_conflict(bind, *admin)) {
            faults.push(fault(
                "bind",
                raw.bind.span(),
                format!("{bind} collides with the admin API on {admin} (admin.bind); give one of them another port"),
            ));
        }
        binds.push((index, bind));
    }
}

/// Would binding both addresses fail? Port 0 (the system picks a free port)
/// never collides. A wildcard address holds its port on every address of its
/// family, and `[::]` on IPv4 too (Linux binds it dual-stack by default).
fn binds_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    fn covers(wild: IpAddr, other: IpAddr) -> bool {
        wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    }
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// One listener. Fields are relative to the listener.
fn convert(
    raw: Spanned<FileListener>,
    policies: &Policies,
    notes: &mut Vec<String>,
) -> Result<ListenerConfig, Vec<Fault>> {
    let header = raw.span();
    let raw = raw.into_inner();
    let mut faults = Faults::default();
    let mut listener_notes = Vec::new();

    let name = faults.check(listener_name(&raw.name)).unwrap_or_default();
    let bind = faults.check(socket_addr(&raw.bind, "bind"));
    let https = match &raw.protocol {
        None => true,
        Some(protocol) => faults
            .check(keyword(
                protocol,
                "protocol",
                &[("https", true), ("http", false)],
            ))
            .unwrap_or(true),
    };
    let certificates = certificates(raw.certificates.as_ref(), &mut faults);

    let protocol = if https {
        let mutual_auth = raw
            .mutual_auth
            .and_then(|raw| faults.nested(MutualAuth::try_from(raw.into_inner()), "mutual_auth"));
        // Only when none is listed: invalid names have their own errors.
        if raw
            .certificates
            .as_ref()
            .is_none_or(|list| list.get_ref().is_empty())
        {
            let (span, field) = match (&raw.certificates, &raw.protocol) {
                (Some(certificates), _) => (certificates.span(), "certificates"),
                (None, Some(protocol)) => (protocol.span(), "protocol"),
                (None, None) => (header.clone(), ""),
            };
            faults.push(Fault::new(
                span,
                field,
                "an https listener needs at least one certificate; add certificates = [\"name\"] (names in the store) or use protocol = \"http\"",
            ));
        }
        let policy = policies.resolve(raw.tls_policy.as_ref(), header.clone());
        let policy = faults.check(policy).map(|(policy, note)| {
            listener_notes.extend(note);
            policy
        });
        if raw
            .rfc9440_client_cert
            .as_ref()
            .is_some_and(|on| *on.get_ref())
            && mutual_auth.is_none()
        {
            listener_notes.push(
                "rfc9440_client_cert has no effect without mutual_auth: there is no client certificate to forward".to_string(),
            );
        }
        policy.map(|policy| {
            Protocol::Https(TlsSettings {
                certificates,
                policy,
                mutual_auth,
            })
        })
    } else {
        refuse_tls_on_http(&raw, &certificates, &mut faults);
        Some(Protocol::Http)
    };

    let scheduler = faults
        .optional(raw.scheduler.as_ref(), |scheduler| {
            keyword(
                scheduler,
                "scheduler",
                &[
                    ("rr", SchedulerKind::RoundRobin),
                    ("wrr", SchedulerKind::WeightedRoundRobin),
                    ("wlc", SchedulerKind::WeightedLeastConnections),
                ],
            )
        })
        .unwrap_or_default();
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, proxy)| {
            faults.check(cidr(proxy, &format!("trusted_proxies[{index}]")))
        })
        .collect();
    let timeouts = raw
        .timeouts
        .and_then(|raw| faults.nested(Timeouts::try_from(raw), "timeouts"))
        .unwrap_or_default();
    let limits = raw
        .limits
        .and_then(|raw| faults.nested(Limits::try_from(raw), "limits"))
        .unwrap_or_default();
    let health_check = raw
        .health_check
        .and_then(|raw| faults.nested(HealthCheckConfig::try_from(raw), "health_check"));
    let backends = backends(raw.backend, header, &mut faults);
    if !backends.is_empty() && backends.iter().all(|backend| backend.weight == 0) {
        listener_notes.push(
            "every backend has weight 0 (draining), so no new request is forwarded".to_string(),
        );
    }

    let (Some(bind), Some(protocol)) = (bind, protocol) else {
        return Err(faults.into_vec());
    };
    let listener = faults.finish(ListenerConfig {
        name,
        bind,
        protocol,
        backends,
        scheduler,
        health_check,
        trusted_proxies,
        timeouts,
        limits,
        rfc9440_client_cert: raw.rfc9440_client_cert.is_some_and(Spanned::into_inner),
    })?;
    notes.extend(
        listener_notes
            .into_iter()
            .map(|note| format!("listener {:?}: {note}", listener.name)),
    );
    Ok(listener)
}

/// A listener name: 1–80 of letters, digits, `-`, `_`, `.` — safe in log
/// lines, metric labels and admin API paths without quoting.
fn listener_name(value: &Spanned<String>) -> Result<String, Fault> {
    let name = non_empty(value, "name", "the listener a name such as \"web\"")?;
    let valid = name.len() <= MAX_LISTENER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(Fault::at(
            value,
            "name",
            format!(
                "{name:?} is not a listener name; use 1 to {MAX_LISTENER_NAME} letters, digits, '-', '_' or '.'"
            ),
        ));
    }
    Ok(name.to_string())
}

/// Certificate names, valid (R15) and each listed once.
fn certificates(
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    faults: &mut Faults,
) -> Vec<tlsgate_cert_store::CertificateName> {
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for (index, raw_name) in raw.map(Spanned::get_ref).into_iter().flatten().enumerate() {
        let field = format!("certificates[{index}]");
        let Some(name) = faults.check(certificate_name(raw_name, &field)) else {
            continue;
        };
        if seen.insert(name.clone()) {
            names.push(name);
        } else {
            faults.push(Fault::at(
                raw_name,
                &field,
                format!(
                    "{:?} is listed twice; list each certificate once (the first is the default)",
                    name.as_str()
                ),
            ));
        }
    }
    names
}

/// R1: a plain-HTTP listener has no TLS, so TLS settings on it are mistakes.
fn refuse_tls_on_http(
    raw: &FileListener,
    certificates: &[tlsgate_cert_store::CertificateName],
    faults: &mut Faults,
) {
    const FIX: &str = "use protocol = \"https\"";
    if let Some(list) = raw
        .certificates
        .as_ref()
        .filter(|_| !certificates.is_empty())
    {
        faults.push(Fault::at(
            list,
            "certificates",
            format!("an http listener has no TLS; remove `certificates` or {FIX}"),
        ));
    }
    if let Some(mutual_auth) = &raw.mutual_auth {
        faults.push(Fault::at(
            mutual_auth,
            "mutual_auth",
            format!("an http listener has no TLS; remove [listener.mutual_auth] or {FIX}"),
        ));
    }
    if let Some(policy) = &raw.tls_policy {
        faults.push(Fault::at(
            policy,
            "tls_policy",
            format!("an http listener has no TLS; remove `tls_policy` or {FIX}"),
        ));
    }
    if let Some(on) = raw.rfc9440_client_cert.as_ref().filter(|on| *on.get_ref()) {
        faults.push(Fault::at(
            on,
            "rfc9440_client_cert",
            format!("an http listener has no client certificates to forward; remove `rfc9440_client_cert` or {FIX}"),
        ));
    }
}

/// `[[listener.backend]]`: at least one, each address once.
fn backends(
    raw: Vec<Spanned<FileBackend>>,
    header: Range<usize>,
    faults: &mut Faults,
) -> Vec<BackendConfig> {
    if raw.is_empty() {
        faults.push(Fault::new(
            header,
            "backend",
            "the listener has no backend; add a [[listener.backend]] with address = \"host:port\"",
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut backends = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let field = format!("backend[{index}]");
        let address = raw.get_ref().address.clone();
        let Some(backend) = faults.nested(BackendConfig::try_from(raw.into_inner()), &field) else {
            continue;
        };
        // Two entries for one server would split its metrics and its health
        // state; a weight says "more traffic" instead.
        if let Some(first) = seen.get(&backend.address) {
            faults.push(Fault::at(
                &address,
                &format!("{field}.address"),
                format!("{:?} is already backend[{first}]; list each backend once and use weight to send it more traffic", backend.address),
            ));
            continue;
        }
        seen.insert(backend.address.clone(), index);
        backends.push(backend);
    }
    backends
}
