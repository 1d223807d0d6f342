//! Request and response header rewriting (R12): forwarded headers, client
//! certificate headers, and hop-by-hop headers a proxy must not pass on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// `X-Forwarded-For`.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const CLIENTCERT_SUBJECT: HeaderName = HeaderName::from_static("x-forwarded-clientcert-subjectdn");
const CLIENTCERT_ISSUER: HeaderName = HeaderName::from_static("x-forwarded-clientcert-issuerdn");
const CLIENTCERT_SERIAL: HeaderName = HeaderName::from_static("x-forwarded-clientcert-serial");
const CLIENTCERT_FINGERPRINT: HeaderName =
    HeaderName::from_static("x-forwarded-clientcert-fingerprint");
const CLIENTCERT_VERIFY: HeaderName =
    HeaderName::from_static("x-forwarded-clientcert-clientverify");
const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");

/// Headers only tlsgate may set: a client's copies are always removed, on
/// every listener, with or without mutual auth (R12), so none can be forged.
const OWNED: [HeaderName; 9] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_PORT,
    CLIENTCERT_SUBJECT,
    CLIENTCERT_ISSUER,
    CLIENTCERT_SERIAL,
    CLIENTCERT_FINGERPRINT,
    CLIENTCERT_VERIFY,
    CLIENT_CERT,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// The client certificate's forwarded headers, computed once per connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientCertHeaders {
    subject: HeaderValue,
    issuer: HeaderValue,
    serial: HeaderValue,
    fingerprint: HeaderValue,
    rfc9440: HeaderValue,
}

impl ClientCertHeaders {
    /// From the client's leaf certificate (already verified by the handshake).
    pub(crate) fn from_der(der: &[u8]) -> Option<Self> {
        let identity = tlsgate_validator::peer_identity(der)?;
        // DNs may hold UTF-8; HTTP allows those bytes as obs-text.
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).ok();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        Some(ClientCertHeaders {
            subject: value(&identity.subject)?,
            issuer: value(&identity.issuer)?,
            serial: value(&identity.serial)?,
            fingerprint: value(&identity.sha256_fingerprint)?,
            rfc9440: value(&format!(":{b64}:"))?,
        })
    }
}

/// What mutual authentication established for a connection.
#[derive(Debug, Clone)]
pub(crate) enum ClientCert {
    /// One-way TLS or plain HTTP: no client-certificate headers.
    NotRequested,
    /// Optional mode, and the client sent no certificate.
    Absent,
    /// A verified client certificate.
    Verified(Arc<ClientCertHeaders>),
}

/// Per-connection facts the headers are made from.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionFacts {
    /// The client's address.
    pub client: SocketAddr,
    /// The client's address as a header value ([`client_address_value`]).
    pub forwarded_for: HeaderValue,
    /// `https` or `http`.
    pub proto: &'static str,
    /// The listener's port, as the client addressed it.
    pub port: HeaderValue,
    /// Whether the client's own X-Forwarded-For may be kept (trusted proxy).
    pub trusted: bool,
    /// Mutual-auth outcome.
    pub client_cert: ClientCert,
    /// Also send RFC 9440 `Client-Cert`.
    pub rfc9440: bool,
}

/// Is `ip` inside one of `trusted`?
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none (a `Connection` header naming others is one
    // of them): one pass over the names is cheaper than eight hashed removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    // `TE: trailers` is the one TE value allowed end to end; requests
    // rarely need it and backends are HTTP/1.1, so it is dropped above.
}

/// The client's address as `X-Forwarded-For` carries it (an IPv4 client
/// on a dual-stack socket as plain IPv4), made once per connection.
pub(crate) fn client_address_value(client: SocketAddr) -> HeaderValue {
    let ip = match client.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client.ip(), IpAddr::V4),
        v4 => v4,
    };
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Rewrites a request's headers for the backend.
pub(crate) fn rewrite_request(headers: &mut HeaderMap, facts: &ConnectionFacts) {
    strip_hop_by_hop(headers);
    let earlier = facts.trusted.then(|| {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect::<Vec<&str>>()
    });
    let forwarded_for = match earlier {
        Some(earlier) if !earlier.is_empty() => HeaderValue::from_str(&format!(
            "{}, {}",
            earlier.join(", "),
            facts.forwarded_for.to_str().unwrap_or_default()
        ))
        .ok(),
        _ => Some(facts.forwarded_for.clone()),
    };
    // Most requests carry none of these: one pass over the names is
    // cheaper than a hashed removal for each.
    if headers.keys().any(|name| OWNED.contains(name)) {
        for name in &OWNED {
            headers.remove(name);
        }
    }
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(facts.proto));
    headers.insert(X_FORWARDED_PORT, facts.port.clone());
    match &facts.client_cert {
        ClientCert::NotRequested => {}
        ClientCert::Absent => {
            headers.insert(CLIENTCERT_VERIFY, HeaderValue::from_static("NONE"));
        }
        ClientCert::Verified(cert) => {
            headers.insert(CLIENTCERT_SUBJECT, cert.subject.clone());
            headers.insert(CLIENTCERT_ISSUER, cert.issuer.clone());
            headers.insert(CLIENTCERT_SERIAL, cert.serial.clone());
            headers.insert(CLIENTCERT_FINGERPRINT, cert.fingerprint.clone());
            headers.insert(CLIENTCERT_VERIFY, HeaderValue::from_static("SUCCESS"));
            if facts.rfc9440 {
                headers.insert(CLIENT_CERT, cert.rfc9440.clone());
            }
        }
    }
}

/// Bytes of the request line and header lines as they appear on the wire
/// (`NAME: VALUE\r\n`), the measure `max_header_bytes` limits (R13).
pub(crate) fn header_bytes(method: &http::Method, uri: &http::Uri, headers: &HeaderMap) -> usize {
    let request_line = method.as_str().len()
        + 1
        + uri.path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    request_line
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(trusted: bool, client_cert: ClientCert) -> ConnectionFacts {
        let client = "192.0.2.7:51000".parse().unwrap();
        ConnectionFacts {
            client,
            forwarded_for: client_address_value(client),
            proto: "https",
            port: HeaderValue::from_static("443"),
            trusted,
            client_cert,
            rfc9440: true,
        }
    }

    fn forged() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        h.insert(
            "x-forwarded-clientcert-subjectdn",
            HeaderValue::from_static("CN=admin"),
        );
        h.insert(
            "x-forwarded-clientcert-clientverify",
            HeaderValue::from_static("SUCCESS"),
        );
        h.insert("client-cert", HeaderValue::from_static(":AAAA:"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("user-agent", HeaderValue::from_static("curl"));
        h
    }

    #[test]
    fn untrusted_clients_cannot_forge_anything() {
        let mut h = forged();
        rewrite_request(&mut h, &facts(false, ClientCert::NotRequested));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        for gone in [
            "x-forwarded-clientcert-subjectdn",
            "x-forwarded-clientcert-clientverify",
            "client-cert",
            "connection",
            "x-secret",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h["user-agent"], "curl");
    }

    #[test]
    fn trusted_proxies_keep_the_chain() {
        let mut h = forged();
        rewrite_request(&mut h, &facts(true, ClientCert::Absent));
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 7.7.7.7, 192.0.2.7");
        assert_eq!(h["x-forwarded-clientcert-clientverify"], "NONE");
        assert!(h.get("x-forwarded-clientcert-subjectdn").is_none());
    }

    #[test]
    fn trust_is_by_cidr_and_handles_mapped_addresses() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("2001:db8::1".parse().unwrap(), &nets));
        assert!(!is_trusted("192.0.2.1".parse().unwrap(), &nets));
    }

    #[test]
    fn header_bytes_counts_the_wire_form() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        let n = header_bytes(&http::Method::GET, &"/x".parse().unwrap(), &h);
        assert_eq!(n, "GET /x HTTP/1.1\r\n".len() + "host: a\r\n".len());
    }
}
