//! Request and response header rewriting (R12): forwarded headers, client
//! certificate headers, and hop-by-hop headers a proxy must not pass on.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
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
    /// RFC 9440 `Client-Cert`, made only for a listener that sends it (the
    /// whole certificate in base64: a kilobyte or two).
    rfc9440: Option<HeaderValue>,
}

impl ClientCertHeaders {
    /// From the client's leaf certificate (already verified by the
    /// handshake); `rfc9440`: the listener sends `Client-Cert` too.
    pub(crate) fn from_der(der: &[u8], rfc9440: bool) -> Option<Self> {
        let identity = tlsgate_validator::peer_identity(der)?;
        // DNs may hold UTF-8; HTTP allows those bytes as obs-text.
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).ok();
        let rfc9440 = if rfc9440 {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            Some(value(&format!(":{b64}:"))?)
        } else {
            None
        };
        Some(ClientCertHeaders {
            subject: value(&identity.subject)?,
            issuer: value(&identity.issuer)?,
            serial: value(&identity.serial)?,
            fingerprint: value(&identity.sha256_fingerprint)?,
            rfc9440,
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
    Verified(ClientCertHeaders),
}

/// Per-connection facts the headers are made from.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionFacts {
    /// The client's address.
    pub client: SocketAddr,
    /// Whether the client's own X-Forwarded-For may be kept (trusted proxy).
    pub trusted: bool,
    /// The header lines tlsgate adds to each of the connection's requests,
    /// in wire form, made once for the connection: `X-Forwarded-For` (the
    /// client's address) first, then `X-Forwarded-Proto`, `-Port` and the
    /// client certificate's. Written straight into the request head sent
    /// to the backend, rather than inserted into each request's header map
    /// (a hashed insert per header per request) only to be read out again.
    added: Box<[u8]>,
    /// Where `added`'s `X-Forwarded-For` line ends (a trusted proxy's chain
    /// replaces it).
    forwarded_for_end: usize,
}

impl ConnectionFacts {
    /// `proto` is `https` or `http`; `port` the listener's port as the
    /// client addressed it. The client certificate's headers are taken in
    /// (and the certificate's own copy dropped): a connection keeps them
    /// only as lines.
    pub(crate) fn new(
        client: SocketAddr,
        trusted: bool,
        proto: &'static str,
        port: &HeaderValue,
        client_cert: ClientCert,
    ) -> Self {
        let mut added = Vec::with_capacity(96);
        push_line(
            &mut added,
            &X_FORWARDED_FOR,
            client_address(client).as_bytes(),
        );
        let forwarded_for_end = added.len();
        push_line(&mut added, &X_FORWARDED_PROTO, proto.as_bytes());
        push_line(&mut added, &X_FORWARDED_PORT, port.as_bytes());
        match client_cert {
            ClientCert::NotRequested => {}
            ClientCert::Absent => push_line(&mut added, &CLIENTCERT_VERIFY, b"NONE"),
            ClientCert::Verified(cert) => {
                push_line(&mut added, &CLIENTCERT_SUBJECT, cert.subject.as_bytes());
                push_line(&mut added, &CLIENTCERT_ISSUER, cert.issuer.as_bytes());
                push_line(&mut added, &CLIENTCERT_SERIAL, cert.serial.as_bytes());
                push_line(
                    &mut added,
                    &CLIENTCERT_FINGERPRINT,
                    cert.fingerprint.as_bytes(),
                );
                push_line(&mut added, &CLIENTCERT_VERIFY, b"SUCCESS");
                if let Some(rfc9440) = &cert.rfc9440 {
                    push_line(&mut added, &CLIENT_CERT, rfc9440.as_bytes());
                }
            }
        }
        ConnectionFacts {
            client,
            trusted,
            added: added.into_boxed_slice(),
            forwarded_for_end,
        }
    }

    /// The client's address as `X-Forwarded-For` carries it: the value of
    /// the first added line, formatted once for the connection.
    fn client_address(&self) -> &[u8] {
        let line = &self.added[..self.forwarded_for_end];
        &line[X_FORWARDED_FOR.as_str().len() + b": ".len()..line.len() - b"\r\n".len()]
    }
}

/// Appends `name: value\r\n`. The values are header values already
/// (checked when they were made), or an address or a port.
fn push_line(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
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

/// The elements of one comma-separated field value, trimmed, empty ones
/// skipped (a value with non-ASCII bytes still has its ASCII tokens read).
pub(crate) fn list_elements(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The comma-separated elements of all of a header's fields, as bytes.
fn tokens<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl DoubleEndedIterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| list_elements(v.as_bytes()))
}

/// The header an element of a `Connection` field names as this hop's own;
/// `close` and `keep-alive` (the usual values) name none beyond
/// [`HOP_BY_HOP`]. Nor does `host`: a request the backend gets must have
/// one, and `Connection: host` would otherwise send it none.
pub(crate) fn named_by_connection(element: &[u8]) -> Option<HeaderName> {
    if element.eq_ignore_ascii_case(b"close")
        || element.eq_ignore_ascii_case(b"keep-alive")
        || element.eq_ignore_ascii_case(b"host")
    {
        return None;
    }
    HeaderName::from_bytes(element).ok()
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

/// The `Upgrade` header of a request that asks to switch protocols and
/// that tlsgate passes on to the backend (WebSocket, mostly; tunnel.rs):
/// HTTP/1.1 (HTTP/2 has no `Upgrade`), `Connection: upgrade`, no request
/// body (the switch happens right after the head), and not `h2c`, which
/// would ask the backend for HTTP/2 in clear text on a connection tlsgate
/// terminated. Anything else with an `Upgrade` is forwarded as an
/// ordinary request, without it.
pub(crate) fn upgrade_requested(
    version: http::Version,
    headers: &HeaderMap,
    body_ended: bool,
) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 || !body_ended {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?;
    let asked = tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    let h2c = list_elements(upgrade.as_bytes()).any(|p| p.eq_ignore_ascii_case(b"h2c"));
    (asked && !h2c && !upgrade.is_empty()).then(|| upgrade.clone())
}

/// Does the request's `Transfer-Encoding`, if any, name chunked once and
/// nothing else? (hyper has already refused one whose last coding is not
/// chunked; `chunked, chunked` would leave chunk syntax in the data.)
pub(crate) fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = tokens(headers, &header::TRANSFER_ENCODING);
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(coding), None) => coding.eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// Is `name` one of the hop-by-hop headers every message has removed?
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let found = present(headers, &HOP_BY_HOP);
    if !found.contains(&true) {
        return;
    }
    let named: Vec<HeaderName> = tokens(headers, &header::CONNECTION)
        .filter_map(named_by_connection)
        .collect();
    for name in &named {
        headers.remove(name);
    }
    remove_present(headers, &HOP_BY_HOP, found);
    // `TE: trailers` is the one TE value allowed end to end; requests
    // rarely need it and backends are HTTP/1.1, so it is dropped above.
}

/// The client's address as `X-Forwarded-For` carries it (an IPv4 client
/// on a dual-stack socket as plain IPv4).
fn client_address(client: SocketAddr) -> String {
    let ip = match client.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client.ip(), IpAddr::V4),
        v4 => v4,
    };
    ip.to_string()
}

/// Rewrites a request's headers for the backend: removes the hop-by-hop
/// headers and every header tlsgate owns (a client's copies), and returns
/// the header lines tlsgate adds, in wire form, to go after the request's
/// own ([`ConnectionFacts`]). From a trusted proxy, the `X-Forwarded-For`
/// chain it sent is kept, with the client's address after it.
pub(crate) fn rewrite_request<'a>(
    headers: &mut HeaderMap,
    facts: &'a ConnectionFacts,
) -> Cow<'a, [u8]> {
    strip_hop_by_hop(headers);
    let earlier = facts
        .trusted
        .then(|| {
            headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect::<Vec<&str>>()
                .join(", ")
        })
        .filter(|chain| !chain.is_empty());
    let added = match earlier {
        Some(chain) => {
            let mut chain = chain.into_bytes();
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(facts.client_address());
            let mut added = Vec::with_capacity(facts.added.len() + chain.len());
            push_line(&mut added, &X_FORWARDED_FOR, &chain);
            added.extend_from_slice(&facts.added[facts.forwarded_for_end..]);
            Cow::Owned(added)
        }
        None => Cow::Borrowed(&*facts.added),
    };
    let found = present(headers, &OWNED);
    remove_present(headers, &OWNED, found);
    remove_underscore_lookalikes(headers);
    added
}

/// Removes client headers that read as one of [`OWNED`] once `_` is taken
/// for `-`: CGI, WSGI and PHP backends see `X_Forwarded_For` and
/// `X-Forwarded-For` alike as `HTTP_X_FORWARDED_FOR`, so either could
/// forge ours. (NGINX drops every header with `_` in its name by default.)
fn remove_underscore_lookalikes(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| name.as_str().contains('_')) {
        return;
    }
    let lookalikes: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.contains('_')
                && OWNED.iter().any(|owned| {
                    owned.as_str().len() == name.len()
                        && owned
                            .as_str()
                            .bytes()
                            .zip(name.bytes())
                            .all(|(o, n)| o == n || (o == b'-' && n == b'_'))
                })
        })
        .cloned()
        .collect();
    for name in lookalikes {
        headers.remove(name);
    }
}

/// Makes the request's Host the one the backend gets, or says why the
/// request is malformed (400). One Host at most (RFC 9112 §3.2); an
/// HTTP/1.1 request needs one; the request target's authority (absolute
/// form, HTTP/2 `:authority`) is the host (RFC 9112 §3.2.2) and, under
/// HTTP/2, a Host beside it must name the same (RFC 9113 §8.3.1). Otherwise
/// a virtual-host backend and a cache in front of it could each take the
/// request for a different host.
pub(crate) fn settle_host(
    version: http::Version,
    uri: &http::Uri,
    headers: &mut HeaderMap,
) -> Result<(), &'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("the request has more than one Host header");
    }
    let Some(authority) = uri.authority() else {
        return match host {
            Some(host) if !is_host(host.as_bytes()) => {
                Err("the request's Host header is not a valid host[:port]")
            }
            Some(_) => Ok(()),
            None if version == http::Version::HTTP_11 => {
                Err("an HTTP/1.1 request needs a Host header")
            }
            None if version >= http::Version::HTTP_2 => {
                Err("an HTTP/2 request needs :authority or a Host header")
            }
            // HTTP/1.0 may go without; the backend gets its own address.
            None => Ok(()),
        };
    };
    // A bare host:port target (authority form) is CONNECT's alone (RFC
    // 9112 §3.2.3), and CONNECT is refused before this: taken as an
    // absolute form, it would replace the Host a front proxy checked.
    if uri.scheme().is_none() {
        return Err("a host:port request target is for CONNECT only");
    }
    // Parsed as a URI's authority already; user information is what a
    // Host may not carry.
    if authority.as_str().contains('@') {
        return Err("the request target's authority is not a valid host[:port]");
    }
    if version >= http::Version::HTTP_2 {
        if let Some(host) = host {
            return if host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                Ok(())
            } else {
                Err("the request's Host header and :authority name different hosts")
            };
        }
    }
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| "the request target's authority is not a valid host[:port]")?;
    headers.insert(header::HOST, host);
    Ok(())
}

/// `host[:port]` (RFC 9110 §7.2): the characters of a reg-name, an IPv4
/// address or an IP literal, and a port. No user information (`@`), path,
/// query or whitespace; a table lookup per byte rather than a parse, as it
/// runs on every request (parsing into an `Authority` copies the value).
fn is_host(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes [`is_host`] allows.
const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            );
        b += 1;
    }
    table
};

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

    #[test]
    fn only_a_bodiless_http11_upgrade_with_connection_upgrade_is_passed_on() {
        let map = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            headers
        };
        let v11 = http::Version::HTTP_11;
        let websocket = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            upgrade_requested(v11, &websocket, true).unwrap(),
            "websocket"
        );
        // Two Connection fields count as one list.
        let split = map(&[
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(upgrade_requested(v11, &split, true).is_some());
        assert!(upgrade_requested(http::Version::HTTP_10, &websocket, true).is_none());
        assert!(upgrade_requested(v11, &websocket, false).is_none());
        let unasked = map(&[("connection", "keep-alive"), ("upgrade", "websocket")]);
        assert!(upgrade_requested(v11, &unasked, true).is_none());
        let no_upgrade = map(&[("connection", "upgrade")]);
        assert!(upgrade_requested(v11, &no_upgrade, true).is_none());
        let h2c = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(upgrade_requested(v11, &h2c, true).is_none());
    }

    fn facts(trusted: bool, client_cert: ClientCert) -> ConnectionFacts {
        let client = "192.0.2.7:51000".parse().unwrap();
        let port = HeaderValue::from_static("443");
        ConnectionFacts::new(client, trusted, "https", &port, client_cert)
    }

    /// The request's headers after the rewrite, with the added lines parsed
    /// back in, as the backend reads them.
    fn rewritten(mut headers: HeaderMap, facts: &ConnectionFacts) -> HeaderMap {
        let added = rewrite_request(&mut headers, facts).into_owned();
        let text = String::from_utf8(added).unwrap();
        assert!(text.ends_with("\r\n"), "{text:?}");
        for line in text.trim_end().split("\r\n") {
            let (name, value) = line.split_once(": ").unwrap();
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
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
        // CGI-style backends read these as HTTP_X_FORWARDED_CLIENTCERT_*.
        h.insert(
            "x_forwarded_clientcert_subjectdn",
            HeaderValue::from_static("CN=admin"),
        );
        h.insert("x-forwarded_for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x_custom_app", HeaderValue::from_static("kept"));
        h
    }

    #[test]
    fn untrusted_clients_cannot_forge_anything() {
        let h = rewritten(forged(), &facts(false, ClientCert::NotRequested));
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
            "x_forwarded_clientcert_subjectdn",
            "x-forwarded_for",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h["user-agent"], "curl");
        // Other names with underscores are the application's own.
        assert_eq!(h["x_custom_app"], "kept");
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
        let h = rewritten(forged(), &facts(true, ClientCert::Absent));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 7.7.7.7, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-forwarded-clientcert-clientverify"], "NONE");
        assert!(h.get("x-forwarded-clientcert-subjectdn").is_none());
        // A trusted proxy that sent no chain: the client's address alone.
        let mut bare = forged();
        bare.remove("x-forwarded-for");
        let h = rewritten(bare, &facts(true, ClientCert::Absent));
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn a_verified_client_certificate_is_described_in_headers_of_its_own() {
        let cert = ClientCertHeaders {
            subject: HeaderValue::from_static("CN=alice,O=Example"),
            issuer: HeaderValue::from_static("CN=Example CA"),
            serial: HeaderValue::from_static("01:02"),
            fingerprint: HeaderValue::from_static("ab12"),
            rfc9440: Some(HeaderValue::from_static(":MIIB:")),
        };
        let verified = ClientCert::Verified(cert);
        let h = rewritten(forged(), &facts(false, verified));
        assert_eq!(h["x-forwarded-clientcert-subjectdn"], "CN=alice,O=Example");
        assert_eq!(h["x-forwarded-clientcert-issuerdn"], "CN=Example CA");
        assert_eq!(h["x-forwarded-clientcert-serial"], "01:02");
        assert_eq!(h["x-forwarded-clientcert-fingerprint"], "ab12");
        assert_eq!(h["x-forwarded-clientcert-clientverify"], "SUCCESS");
        // The forged one is gone, not kept beside tlsgate's.
        assert_eq!(
            h.get_all("client-cert").iter().collect::<Vec<_>>(),
            [":MIIB:"]
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn an_ipv4_client_on_a_dual_stack_socket_is_forwarded_as_ipv4() {
        let port = HeaderValue::from_static("8443");
        for (client, expected) in [
            ("[::ffff:198.51.100.4]:1234", "198.51.100.4"),
            ("[2001:db8::9]:1234", "2001:db8::9"),
        ] {
            let facts = ConnectionFacts::new(
                client.parse().unwrap(),
                false,
                "http",
                &port,
                ClientCert::NotRequested,
            );
            let h = rewritten(HeaderMap::new(), &facts);
            assert_eq!(h["x-forwarded-for"], expected);
            assert_eq!(h["x-forwarded-proto"], "http");
            assert_eq!(h["x-forwarded-port"], "8443");
        }
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
    fn a_host_is_host_and_port_only() {
        for good in [
            "localhost",
            "www.example.com:8443",
            "192.0.2.1",
            "[2001:db8::1]:443",
            "xn--bcher-kva.example",
        ] {
            assert!(super::is_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "user@host",
            "host/path",
            "host?q",
            "host#f",
            "two words",
            "tab\there",
            "h\u{e9}te",
        ] {
            assert!(!super::is_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn a_request_without_a_usable_host_is_refused_by_version() {
        use http::Version;
        let settle = |version, target: &str, host: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(host) = host {
                h.insert("host", HeaderValue::from_static(host));
            }
            settle_host(version, &target.parse().unwrap(), &mut h).map(|()| h)
        };
        // HTTP/1.0 may omit Host (the backend gets its address instead);
        // HTTP/1.1 and HTTP/2 may not.
        assert!(settle(Version::HTTP_10, "/", None).is_ok());
        assert!(settle(Version::HTTP_11, "/", None).is_err());
        assert!(settle(Version::HTTP_2, "/", None).is_err());
        // Absolute form: its authority is the Host.
        let h = settle(Version::HTTP_11, "http://a.example/x", Some("b.example")).unwrap();
        assert_eq!(h["host"], "a.example");
        // Authority form is CONNECT's only.
        let refused = settle(Version::HTTP_11, "evil.example:8443", Some("good.example"));
        assert_eq!(
            refused.unwrap_err(),
            "a host:port request target is for CONNECT only"
        );
    }

    #[test]
    fn connection_cannot_name_host_away() {
        assert_eq!(named_by_connection(b"Host"), None);
        assert_eq!(named_by_connection(b"close"), None);
        assert_eq!(
            named_by_connection(b"cookie"),
            Some(HeaderName::from_static("cookie"))
        );
    }

    #[test]
    fn only_chunked_alone_is_a_transfer_coding_tlsgate_decodes() {
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for value in values {
                h.append("transfer-encoding", HeaderValue::from_static(value));
            }
            only_chunked(&h)
        };
        assert!(with(&[]));
        assert!(with(&["chunked"]));
        assert!(with(&["Chunked "]));
        assert!(!with(&["gzip, chunked"]));
        assert!(!with(&["gzip", "chunked"]));
        assert!(!with(&["chunked, chunked"]));
    }

    #[test]
    fn header_bytes_counts_the_wire_form() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        let n = header_bytes(&http::Method::GET, &"/x".parse().unwrap(), &h);
        assert_eq!(n, "GET /x HTTP/1.1\r\n".len() + "host: a\r\n".len());
    }
}
