//! Validated listener configuration (SPEC §2, §7). The binary parses the
//! TOML file into these types once, at the edge; nothing here is a raw
//! string that still needs checking.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use tlsgate_cert_store::{CertificateName, ClientAuthPolicy};

use crate::policy::TlsPolicy;

/// One listener (R1).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique name (used in logs, metrics and the admin API).
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// HTTPS with its TLS settings, or plain HTTP.
    pub protocol: Protocol,
    /// Backends in rotation (R10).
    pub backends: Vec<BackendConfig>,
    /// How requests are spread over backends.
    pub scheduler: SchedulerKind,
    /// Active health checks; `None` leaves only the passive check (R11).
    pub health_check: Option<HealthCheckConfig>,
    /// Clients whose X-Forwarded-For is kept (R12).
    pub trusted_proxies: Vec<IpNet>,
    /// Timeouts (R13).
    pub timeouts: Timeouts,
    /// Limits (R13).
    pub limits: Limits,
    /// Also send the RFC 9440 `Client-Cert` header under mutual auth (R12).
    pub rfc9440_client_cert: bool,
}

impl ListenerConfig {
    /// The TLS settings, for an HTTPS listener.
    pub fn tls(&self) -> Option<&TlsSettings> {
        match &self.protocol {
            Protocol::Https(tls) => Some(tls),
            Protocol::Http => None,
        }
    }
}

/// `https` (TLS terminated here) or `http` (plain).
#[derive(Debug, Clone)]
pub enum Protocol {
    /// TLS terminated by tlsgate.
    Https(TlsSettings),
    /// Plain HTTP; no certificates.
    Http,
}

/// TLS settings of an HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Server certificates: the first is the default, the rest are additional (R7).
    pub certificates: Vec<CertificateName>,
    /// The TLS security policy (R5, R6).
    pub policy: TlsPolicy,
    /// Mutual authentication (R3), when on.
    pub mutual_auth: Option<MutualAuth>,
}

/// Mutual authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutualAuth {
    /// The CA bundle in the store that verifies client certificates.
    pub ca: CertificateName,
    /// Mode, CRL scope, expired-CRL policy.
    pub policy: ClientAuthPolicy,
}

/// One backend (R10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `host:port` of a plain-HTTP server.
    pub address: String,
    /// 0..=100; 0 drains (no new requests).
    pub weight: u8,
}

/// Scheduling per request (R10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerKind {
    /// `rr`: round robin over healthy backends with weight > 0.
    #[default]
    RoundRobin,
    /// `wrr`: smooth weighted round robin.
    WeightedRoundRobin,
    /// `wlc`: weighted least connections.
    WeightedLeastConnections,
}

/// HTTP method of an active health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthMethod {
    /// HEAD (the default).
    #[default]
    Head,
    /// GET.
    Get,
}

/// Active health checks (R11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// HEAD or GET.
    pub method: HealthMethod,
    /// Path to request, e.g. `/healthz`.
    pub path: String,
    /// Host header to send; the backend address when `None`.
    pub host: Option<String>,
    /// Time between checks (default 2 s).
    pub interval: Duration,
    /// Time a check may take (default 5 s).
    pub timeout: Duration,
    /// Consecutive successes that make a backend healthy (2..=10, default 3).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a backend unhealthy (2..=10, default 3).
    pub unhealthy_threshold: u32,
    /// Accepted status classes: index 0 = 1xx … 4 = 5xx (default 2xx and 3xx).
    pub accepted: [bool; 5],
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            method: HealthMethod::Head,
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            healthy_threshold: 3,
            unhealthy_threshold: 3,
            accepted: [false, true, true, false, false],
        }
    }
}

impl HealthCheckConfig {
    /// Does a response status count as healthy?
    pub fn accepts(&self, status: u16) -> bool {
        let class = usize::from(status / 100);
        (1..=5).contains(&class) && self.accepted[class - 1]
    }
}

/// Timeouts (R13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TLS handshake (default 10 s).
    pub handshake: Duration,
    /// A client connection with no request in flight (default 15 s).
    pub client_idle: Duration,
    /// Connecting to one backend before trying the next (default 5 s).
    pub backend_connect: Duration,
    /// Whole request, from arrival to response headers (default 60 s; then 504).
    pub request: Duration,
    /// How long shutdown waits for in-flight requests (default 30 s).
    pub shutdown_drain: Duration,
    /// A switched connection (WebSocket) carrying nothing either way
    /// (default 10 min; then it is closed).
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            client_idle: Duration::from_secs(15),
            backend_connect: Duration::from_secs(5),
            request: Duration::from_secs(60),
            shutdown_drain: Duration::from_secs(30),
            tunnel_idle: Duration::from_secs(600),
        }
    }
}

/// Limits (R13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header lines, in bytes (default 64 KiB; 431 past it).
    pub max_header_bytes: usize,
    /// Concurrent connections (default 10,000; more wait in the accept queue).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
        }
    }
}

/// Parses a duration like `500ms`, `2s`, `1m`, `1h` (SPEC R13).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit; write e.g. \"500ms\", \"2s\" or \"1m\""))?;
    let (number, unit) = text.split_at(split);
    if unit.starts_with('.') && !number.is_empty() {
        return Err(format!(
            "{text:?} is a fraction; durations are whole numbers of a unit: use a smaller unit (\"1500ms\" for 1.5 s, \"90s\" for 1.5 m)"
        ));
    }
    let value: u64 = number.parse().map_err(|_| {
        format!(
            "{text:?} does not start with a whole number; write e.g. \"500ms\", \"2s\" or \"1m\""
        )
    })?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        other => {
            return Err(format!(
                "{text:?} has the unknown unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("two s").is_err());
        assert!(parse_duration("5d").is_err());
        let fraction = parse_duration("1.5s").unwrap_err();
        assert!(fraction.contains("1500ms"), "{fraction}");
    }

    #[test]
    fn status_classes() {
        let hc = HealthCheckConfig::default();
        assert!(hc.accepts(200) && hc.accepts(301));
        assert!(!hc.accepts(404) && !hc.accepts(503) && !hc.accepts(99) && !hc.accepts(600));
    }
}
