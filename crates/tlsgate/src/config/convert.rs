//! Raw values and sections → validated types. Each check returns the
//! validated value or a [`Fault`] at the raw value's span whose message says
//! what is wrong and what to write instead.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde_spanned::Spanned;
use tlsgate_cert_store::{
    CertificateName, ClientAuthMode, ClientAuthPolicy, CrlScope, ExpiredCrlPolicy,
};
use tlsgate_listener::{
    BackendConfig, HealthCheckConfig, HealthMethod, Limits, MutualAuth, Timeouts, parse_duration,
};

use super::error::{Fault, Faults};
use super::file::{FileBackend, FileHealthCheck, FileLimits, FileMutualAuth, FileTimeouts};

/// A string that must not be empty; `what` says what belongs there.
pub(super) fn non_empty<'a>(
    value: &'a Spanned<String>,
    field: &str,
    what: &str,
) -> Result<&'a str, Fault> {
    let text = value.get_ref();
    if text.trim().is_empty() {
        return Err(Fault::at(value, field, format!("is empty; give {what}")));
    }
    Ok(text)
}

/// An integer within `range`.
pub(super) fn int_in(
    value: &Spanned<i64>,
    field: &str,
    range: RangeInclusive<i64>,
) -> Result<i64, Fault> {
    let number = *value.get_ref();
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(Fault::at(
            value,
            field,
            format!(
                "{number} is out of range; use {} to {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// An integer within `range` that fits a `usize` (callers' ranges do).
pub(super) fn usize_in(
    value: &Spanned<i64>,
    field: &str,
    range: RangeInclusive<i64>,
) -> Result<usize, Fault> {
    let number = int_in(value, field, range)?;
    usize::try_from(number).map_err(|_| Fault::at(value, field, format!("{number} is too large")))
}

/// A duration string; zero is refused unless `zero_ok`.
pub(super) fn duration(
    value: &Spanned<String>,
    field: &str,
    zero_ok: bool,
) -> Result<Duration, Fault> {
    let parsed =
        parse_duration(value.get_ref()).map_err(|message| Fault::at(value, field, message))?;
    if parsed.is_zero() && !zero_ok {
        return Err(Fault::at(
            value,
            field,
            format!(
                "{:?} is zero; give a positive duration such as \"2s\"",
                value.get_ref()
            ),
        ));
    }
    Ok(parsed)
}

/// One of a fixed set of words, compared case-insensitively.
pub(super) fn keyword<T: Copy>(
    value: &Spanned<String>,
    field: &str,
    choices: &[(&str, T)],
) -> Result<T, Fault> {
    let text = value.get_ref().trim();
    if let Some((_, choice)) = choices
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(text))
    {
        return Ok(*choice);
    }
    let words: Vec<String> = choices
        .iter()
        .map(|(word, _)| format!("{word:?}"))
        .collect();
    Err(Fault::at(
        value,
        field,
        format!("unknown {field} {text:?}; use {}", one_of(&words)),
    ))
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
pub(super) fn one_of(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// An IP address and port to bind (no host names: nothing is resolved at bind time).
pub(super) fn socket_addr(value: &Spanned<String>, field: &str) -> Result<SocketAddr, Fault> {
    SocketAddr::from_str(value.get_ref().trim()).map_err(|_| {
        Fault::at(
            value,
            field,
            format!(
                "{:?} is not an IP address and port; write e.g. \"127.0.0.1:8443\", \"0.0.0.0:443\" or \"[::]:443\"",
                value.get_ref()
            ),
        )
    })
}

/// A backend `host:port`. Host names are allowed and resolved when
/// connecting (R10), so only the form is checked here.
pub(super) fn backend_address(value: &Spanned<String>, field: &str) -> Result<String, Fault> {
    let text = value.get_ref().as_str();
    let fault = |message: String| Fault::at(value, field, message);
    if let Some((scheme, rest)) = text.split_once("://") {
        return Err(fault(format!(
            "{text:?} has a scheme; write host:port without \"{scheme}://\", e.g. {rest:?}"
        )));
    }
    let port_text = match SocketAddr::from_str(text) {
        Ok(address) => address.port().to_string(),
        Err(_) => {
            let Some((host, port)) = text.rsplit_once(':') else {
                // Suggest the text with a port only where that would be valid.
                let example = if is_host_name(text) {
                    format!("{text}:80")
                } else {
                    "app1.internal:80".to_string()
                };
                return Err(fault(format!(
                    "{text:?} has no port; write host:port, e.g. \"{example}\""
                )));
            };
            if host.contains(':') || host.starts_with('[') {
                return Err(fault(format!(
                    "{text:?} is not a valid address; write an IPv6 address in brackets, e.g. \"[2001:db8::1]:80\""
                )));
            }
            if !is_host_name(host) {
                return Err(fault(format!(
                    "{host:?} is not an IP address or host name; use letters, digits, '-' and '.', e.g. \"app1.internal:80\""
                )));
            }
            port.to_string()
        }
    };
    match port_text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(text.to_string()),
        _ => Err(fault(format!(
            "{text:?} has port {port_text:?}; a backend port is 1 to 65535"
        ))),
    }
}

/// A DNS host name (or IPv4 address) as a backend may name it.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A CIDR; a bare IP address is the network of just that address.
pub(super) fn cidr(value: &Spanned<String>, field: &str) -> Result<IpNet, Fault> {
    let text = value.get_ref().trim();
    IpNet::from_str(text)
        .map(|net| net.trunc())
        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
        .map_err(|_| {
            Fault::at(
                value,
                field,
                format!("{text:?} is not a CIDR such as \"10.0.0.0/8\" or an IP address"),
            )
        })
}

/// A certificate name in the store (R15).
pub(super) fn certificate_name(
    value: &Spanned<String>,
    field: &str,
) -> Result<CertificateName, Fault> {
    CertificateName::parse(value.get_ref())
        .map_err(|error| Fault::at(value, field, error.to_string()))
}

impl TryFrom<FileBackend> for BackendConfig {
    type Error = Vec<Fault>;

    fn try_from(raw: FileBackend) -> Result<Self, Vec<Fault>> {
        let mut faults = Faults::default();
        let address = faults.check(backend_address(&raw.address, "address"));
        let weight = faults
            .optional(raw.weight.as_ref(), |weight| {
                int_in(weight, "weight", 0..=100)
            })
            .and_then(|weight| u8::try_from(weight).ok())
            .unwrap_or(100);
        faults.finish(BackendConfig {
            address: address.unwrap_or_default(),
            weight,
        })
    }
}

impl TryFrom<FileHealthCheck> for HealthCheckConfig {
    type Error = Vec<Fault>;

    fn try_from(raw: FileHealthCheck) -> Result<Self, Vec<Fault>> {
        let defaults = HealthCheckConfig::default();
        let mut faults = Faults::default();
        let method = faults.optional(raw.method.as_ref(), |method| {
            keyword(
                method,
                "method",
                &[("HEAD", HealthMethod::Head), ("GET", HealthMethod::Get)],
            )
        });
        let path = faults.optional(raw.path.as_ref(), health_path);
        let host = faults.optional(raw.host.as_ref(), health_host);
        let interval = faults.optional(raw.interval.as_ref(), |d| duration(d, "interval", false));
        let timeout = faults.optional(raw.timeout.as_ref(), |d| duration(d, "timeout", false));
        let threshold = |value: &Spanned<i64>, field: &str| {
            int_in(value, field, 2..=10).map(|n| u32::try_from(n).unwrap_or(3))
        };
        let healthy_threshold = faults.optional(raw.healthy_threshold.as_ref(), |n| {
            threshold(n, "healthy_threshold")
        });
        let unhealthy_threshold = faults.optional(raw.unhealthy_threshold.as_ref(), |n| {
            threshold(n, "unhealthy_threshold")
        });
        let accepted = match &raw.status {
            Some(status) => status_classes(status, &mut faults),
            None => defaults.accepted,
        };
        faults.finish(HealthCheckConfig {
            method: method.unwrap_or(defaults.method),
            path: path.unwrap_or(defaults.path),
            host: host.or(defaults.host),
            interval: interval.unwrap_or(defaults.interval),
            timeout: timeout.unwrap_or(defaults.timeout),
            healthy_threshold: healthy_threshold.unwrap_or(defaults.healthy_threshold),
            unhealthy_threshold: unhealthy_threshold.unwrap_or(defaults.unhealthy_threshold),
            accepted,
        })
    }
}

/// The request path of a health check: absolute, and sendable as a request
/// target (no spaces or control characters).
fn health_path(value: &Spanned<String>) -> Result<String, Fault> {
    let path = value.get_ref();
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Fault::at(
            value,
            "path",
            format!(
                "{path:?} is not a request path; write one that starts with '/', e.g. \"/healthz\", without spaces"
            ),
        ));
    }
    Ok(path.clone())
}

/// The Host header of a health check.
fn health_host(value: &Spanned<String>) -> Result<String, Fault> {
    let host = value.get_ref();
    // A space or line break would make an invalid (or smuggled) header.
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Fault::at(
            value,
            "host",
            format!(
                "{host:?} is not a Host header value; write a name such as \"example.com\", or remove host to send the backend's address"
            ),
        ));
    }
    Ok(host.clone())
}

/// `status = ["2xx", "3xx"]` → accepted classes, index 0 = 1xx.
fn status_classes(status: &Spanned<Vec<Spanned<String>>>, faults: &mut Faults) -> [bool; 5] {
    let mut accepted = [false; 5];
    if status.get_ref().is_empty() {
        faults.push(Fault::at(
            status,
            "status",
            "is empty, so no response would count as healthy; list classes such as [\"2xx\", \"3xx\"]",
        ));
    }
    for (index, class) in status.get_ref().iter().enumerate() {
        let text = class.get_ref().trim().to_ascii_lowercase();
        let digit = match text.as_bytes() {
            [digit @ b'1'..=b'5', b'x', b'x'] => Some(usize::from(digit - b'1')),
            _ => None,
        };
        match digit.and_then(|digit| accepted.get_mut(digit)) {
            Some(slot) => *slot = true,
            None => faults.push(Fault::at(
                class,
                &format!("status[{index}]"),
                format!(
                    "{:?} is not a status class; use \"1xx\", \"2xx\", \"3xx\", \"4xx\" or \"5xx\"",
                    class.get_ref()
                ),
            )),
        }
    }
    accepted
}

impl TryFrom<FileTimeouts> for Timeouts {
    type Error = Vec<Fault>;

    fn try_from(raw: FileTimeouts) -> Result<Self, Vec<Fault>> {
        let defaults = Timeouts::default();
        let mut faults = Faults::default();
        let mut timeout = |value: &Option<Spanned<String>>, field: &str, zero_ok: bool, default| {
            faults
                .optional(value.as_ref(), |d| duration(d, field, zero_ok))
                .unwrap_or(default)
        };
        let timeouts = Timeouts {
            handshake: timeout(&raw.handshake, "handshake", false, defaults.handshake),
            client_idle: timeout(&raw.client_idle, "client_idle", false, defaults.client_idle),
            backend_connect: timeout(
                &raw.backend_connect,
                "backend_connect",
                false,
                defaults.backend_connect,
            ),
            request: timeout(&raw.request, "request", false, defaults.request),
            // Zero is meaningful here: stop at once, without waiting for
            // in-flight requests.
            shutdown_drain: timeout(
                &raw.shutdown_drain,
                "shutdown_drain",
                true,
                defaults.shutdown_drain,
            ),
            tunnel_idle: timeout(&raw.tunnel_idle, "tunnel_idle", false, defaults.tunnel_idle),
        };
        faults.finish(timeouts)
    }
}

impl TryFrom<FileLimits> for Limits {
    type Error = Vec<Fault>;

    fn try_from(raw: FileLimits) -> Result<Self, Vec<Fault>> {
        let defaults = Limits::default();
        let mut faults = Faults::default();
        // The upper bounds only keep the numbers in `usize` on every target.
        let max_header_bytes = faults.optional(raw.max_header_bytes.as_ref(), |n| {
            usize_in(n, "max_header_bytes", 1024..=i64::from(u32::MAX))
        });
        let max_connections = faults.optional(raw.max_connections.as_ref(), |n| {
            usize_in(n, "max_connections", 1..=i64::from(u32::MAX))
        });
        faults.finish(Limits {
            max_header_bytes: max_header_bytes.unwrap_or(defaults.max_header_bytes),
            max_connections: max_connections.unwrap_or(defaults.max_connections),
        })
    }
}

impl TryFrom<FileMutualAuth> for MutualAuth {
    type Error = Vec<Fault>;

    fn try_from(raw: FileMutualAuth) -> Result<Self, Vec<Fault>> {
        let defaults = ClientAuthPolicy::default();
        let mut faults = Faults::default();
        let ca = faults.check(certificate_name(&raw.ca, "ca"));
        let mode = faults.optional(raw.mode.as_ref(), |mode| {
            keyword(
                mode,
                "mode",
                &[
                    ("required", ClientAuthMode::Required),
                    ("optional", ClientAuthMode::Optional),
                ],
            )
        });
        let crl_scope = faults.optional(raw.crl_scope.as_ref(), |scope| {
            keyword(
                scope,
                "crl_scope",
                &[("chain", CrlScope::Chain), ("leaf", CrlScope::Leaf)],
            )
        });
        let expired_crl = faults.optional(raw.expired_crl.as_ref(), |policy| {
            keyword(
                policy,
                "expired_crl",
                &[
                    ("enforce", ExpiredCrlPolicy::Enforce),
                    ("reject-all", ExpiredCrlPolicy::RejectAll),
                ],
            )
        });
        match ca {
            Some(ca) => faults.finish(MutualAuth {
                ca,
                policy: ClientAuthPolicy {
                    mode: mode.unwrap_or(defaults.mode),
                    crl_scope: crl_scope.unwrap_or(defaults.crl_scope),
                    expired_crl: expired_crl.unwrap_or(defaults.expired_crl),
                },
            }),
            None => Err(faults.into_vec()),
        }
    }
}
