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

/// The comma-separated elements of all of a header's fields, as bytes (a
/// value with non-ASCII bytes still has its ASCII tokens read).
pub(crate) fn tokens<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl DoubleEndedIterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Which of `names` the message carries, found in one pass over its names:
/// most messages carry none of a list, and each removal hashes.
fn present<const N: usize>(headers: &HeaderMap, names: &[HeaderName; N]) -> [bool; N] {
    let mut present = [false; N];
    for name in headers.keys() {
        if let Some(i) = names.iter().position(|n| n == name) {
            present[i] = true;
        }
    }
    present
}

/// Removes the `names` that [`present`] found.
fn remove_present<const N: usize>(
    headers: &mut HeaderMap,
    names: &[HeaderName; N],
    present: [bool; N],
) {
    for (name, _) in names.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let found = present(headers, &HOP_BY_HOP);
    if !found.contains(&true) {
        return;
    }
    // Other headers the `Connection` header names; `close` and `keep-alive`
    // (the usual values) name nothing beyond HOP_BY_HOP.
    let named: Vec<HeaderName> = tokens(headers, &header::CONNECTION)
        .filter(|token| {
            !token.eq_ignore_ascii_case(b"close") && !token.eq_ignore_ascii_case(b"keep-alive")
        })
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
    remove_present(headers, &HOP_BY_HOP, found);
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
    let found = present(headers, &OWNED);
    remove_present(headers, &OWNED, found);
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
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for name in [
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "upgrade",
        ] {
            h.insert(name, HeaderValue::from_static("1"));
        }
        h.insert("connection", HeaderValue::from_static("Close ,X-One"));
        // Tokens are read from a value with non-ASCII bytes too.
        h.append(
            "connection",
            HeaderValue::from_bytes(b"x-two, caf\xc3\xa9").unwrap(),
        );
        for name in ["x-one", "x-two", "x-three", "server", "close"] {
            h.insert(name, HeaderValue::from_static("1"));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["close", "server", "x-three"]);
        // Nothing hop-by-hop: nothing changes.
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("nginx"));
        h.insert("content-length", HeaderValue::from_static("3"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
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
