//! The HTTP side of the admin client: where the admin API is, how to
//! authenticate, one request in and `(status, JSON)` or a [`ClientError`]
//! out. Everything above this file sees only JSON values.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long one request may take, connect to last body byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body read. The biggest legitimate answer is a list of
/// metadata; the cap keeps a wrong `--admin` address (say, a server that
/// streams forever) from eating memory.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A failed exchange with the admin API, split by whose move it was:
/// the server said no ([`ClientError::Refused`], exit 1) or we never got a
/// usable answer (everything else, exit 2).
#[derive(Debug)]
pub enum ClientError {
    /// The `--admin` / `TLSGATE_ADMIN` value is not a plain `http://host:port` URL.
    InvalidUrl {
        /// What the user gave.
        given: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The token is not usable in an HTTP header (control characters).
    InvalidToken,
    /// No TCP connection or no HTTP exchange with the admin address.
    Unreachable {
        /// The base URL tried.
        url: String,
        /// The transport's reason, innermost cause last.
        cause: String,
    },
    /// The server did not finish answering within the request timeout.
    TimedOut {
        /// The base URL tried.
        url: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The server answered 4xx/5xx with the admin API's error body.
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The SPEC §4 error code (or `Unauthorized`, …).
        code: String,
        /// The server's explanation.
        message: String,
        /// Listeners named by the server (`CertificateInUse`), else empty.
        listeners: Vec<String>,
        /// Every finding of a refused upload (its `errors`: code and
        /// message), of which `code` and `message` are the first; else empty.
        findings: Vec<(String, String)>,
        /// The whole answer, for `--json`.
        body: Box<Value>,
    },
    /// An answer that is not the admin API's (not JSON, no error code):
    /// most likely `--admin` points at some other HTTP server.
    Unexpected {
        /// The base URL tried.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// What was wrong with the body.
        detail: String,
    },
}

impl ClientError {
    /// The process exit code (SPEC §5): 1 when the server refused, 2 when
    /// the request never got a proper answer. One match so the mapping is
    /// reviewed in one place.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused { .. } => 1,
            ClientError::InvalidUrl { .. }
            | ClientError::InvalidToken
            | ClientError::Unreachable { .. }
            | ClientError::TimedOut { .. }
            | ClientError::Unexpected { .. } => 2,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidUrl { given, reason } => {
                write!(f, "invalid admin API URL {given:?}: {reason}")
            }
            ClientError::InvalidToken => f.write_str(
                "the admin token contains characters not allowed in an HTTP header (control characters or non-ASCII)",
            ),
            ClientError::Unreachable { url, cause } => write!(
                f,
                "cannot reach the admin API at {url}: {cause} — is `tlsgate serve` running, and is admin.bind this address?"
            ),
            ClientError::TimedOut { url, after } => write!(
                f,
                "the admin API at {url} did not answer within {} s — is admin.bind this address?",
                after.as_secs_f32()
            ),
            ClientError::Refused { code, message, .. } => write!(f, "{code}: {message}"),
            ClientError::Unexpected {
                url,
                status,
                detail,
            } => write!(
                f,
                "unexpected answer from {url} (HTTP {status}): {detail} — is this the tlsgate admin API?"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// Where the admin API is: scheme, authority and an optional path prefix
/// (for an API published under a sub-path by a reverse proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    authority: Authority,
    prefix: String,
}

impl AdminUrl {
    /// Parses `http://host:port[/prefix]`; a bare `host:port` (as written
    /// in `admin.bind`) means `http://host:port`.
    pub fn parse(given: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl {
            given: given.to_owned(),
            reason,
        };
        let with_scheme = if given.contains("://") {
            given.to_owned()
        } else {
            format!("http://{given}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| invalid("expected http://HOST:PORT"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            // The admin API has no TLS of its own: it is loopback-only, or
            // token-protected behind the operator's own network controls.
            return Err(invalid(
                "only http:// is supported (the admin API speaks plain HTTP)",
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("expected http://HOST:PORT"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "user information is not supported; give the token with --token-file",
            ));
        }
        if uri.query().is_some() {
            return Err(invalid("a query string is not allowed"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(AdminUrl { authority, prefix })
    }

    /// The URI of `path_and_query` (which starts with `/`) on this server.
    fn join(&self, path_and_query: &str) -> Result<Uri, ClientError> {
        let path =
            PathAndQuery::try_from(format!("{}{path_and_query}", self.prefix)).map_err(|_| {
                ClientError::InvalidUrl {
                    given: self.to_string(),
                    reason: "cannot form a request path",
                }
            })?;
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| ClientError::InvalidUrl {
                given: self.to_string(),
                reason: "cannot form a request URL",
            })
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.prefix)
    }
}

/// Percent-encodes one path segment: every byte outside RFC 3986's
/// unreserved set, so `/` in a certificate name stays inside the segment.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A blocking-looking admin API client: owns a current-thread runtime and
/// drives each request to completion on it, because the CLI runs one
/// request at a time and has nothing else to do meanwhile.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    base: AdminUrl,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SECURITY: says whether a token is set, never what it is.
        f.debug_struct("Client")
            .field("base", &self.base.to_string())
            .field("token", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base`, sending `token` (if any) as a bearer token.
    pub fn new(base: AdminUrl, token: Option<&str>) -> Result<Self, ClientError> {
        let authorization = token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ClientError::InvalidToken)?;
                // SECURITY: keeps the token out of any debug output of the request.
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| ClientError::Unreachable {
                url: base.to_string(),
                cause: format!("cannot start the I/O runtime: {err}"),
            })?;
        let http = HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Client {
            runtime,
            http,
            base,
            authorization,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Overrides the request timeout (tests use a short one).
    #[cfg(test)]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The admin API's base URL, for messages.
    pub fn base(&self) -> &AdminUrl {
        &self.base
    }

    /// Sends one request and returns the success status with its JSON body
    /// (`Value::Null` when empty, as for 204). A 4xx/5xx carrying the admin
    /// API's `{"code", "message"}` body becomes [`ClientError::Refused`].
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let uri = self.base.join(path_and_query)?;
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, "application/json");
        if let Some(value) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, value.clone());
        }
        let payload = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(payload))
            .map_err(|err| self.unreachable(&err))?;

        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|err| self.unreachable(&err))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| self.unreachable(err.as_ref()))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, exchange).await })
            .map_err(|_| ClientError::TimedOut {
                url: self.base.to_string(),
                after: self.timeout,
            })??;
        self.interpret(status, &bytes)
    }

    /// Turns a complete answer into the caller's result.
    fn interpret(
        &self,
        status: StatusCode,
        bytes: &[u8],
    ) -> Result<(StatusCode, Value), ClientError> {
        let unexpected = |detail: String| ClientError::Unexpected {
            url: self.base.to_string(),
            status,
            detail,
        };
        let json = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(bytes)
                .map_err(|err| unexpected(format!("the body is not JSON ({err})")))?
        };
        if status.is_success() {
            return Ok((status, json));
        }
        let Some(code) = json.get("code").and_then(Value::as_str) else {
            return Err(unexpected(
                "an error without the admin API's error code".into(),
            ));
        };
        Err(ClientError::Refused {
            status,
            code: code.to_owned(),
            message: json
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            listeners: json
                .get("listeners")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            findings: json
                .get("errors")
                .and_then(Value::as_array)
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(|e| {
                            let code = e.get("code")?.as_str()?;
                            let message = e.get("message").and_then(Value::as_str);
                            Some((code.to_owned(), message.unwrap_or_default().to_owned()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: Box::new(json),
        })
    }

    /// Describes a transport failure by its causes, because hyper's outer
    /// error ("client error (Connect)") says nothing a user can act on.
    fn unreachable(&self, err: &(dyn std::error::Error + 'static)) -> ClientError {
        let mut causes = Vec::new();
        let mut next = err.source();
        while let Some(inner) = next {
            causes.push(inner.to_string());
            next = inner.source();
        }
        let cause = if causes.is_empty() {
            err.to_string()
        } else {
            causes.join(": ")
        };
        ClientError::Unreachable {
            url: self.base.to_string(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segment_keeps_unreserved_bytes() {
        assert_eq!(path_segment("www-ecdsa_2.v1~x"), "www-ecdsa_2.v1~x");
        assert_eq!(path_segment("AZaz09"), "AZaz09");
    }

    #[test]
    fn path_segment_encodes_everything_else() {
        assert_eq!(path_segment("team/www"), "team%2Fwww");
        assert_eq!(path_segment("*.example.com"), "%2A.example.com");
        assert_eq!(path_segment("a b%c?d#e"), "a%20b%25c%3Fd%23e");
        assert_eq!(path_segment("é"), "%C3%A9");
        assert_eq!(path_segment(".."), "..");
    }

    #[test]
    fn admin_url_accepts_http_and_bare_host_port() -> Result<(), ClientError> {
        let url = AdminUrl::parse("http://127.0.0.1:9901")?;
        assert_eq!(url.to_string(), "http://127.0.0.1:9901");
        assert_eq!(AdminUrl::parse("127.0.0.1:9901")?, url);
        assert_eq!(AdminUrl::parse("http://127.0.0.1:9901/")?, url);
        let prefixed = AdminUrl::parse("http://[::1]:9901/tlsgate/")?;
        assert_eq!(
            prefixed.join("/v1/certificates")?.to_string(),
            "http://[::1]:9901/tlsgate/v1/certificates"
        );
        Ok(())
    }

    #[test]
    fn admin_url_refuses_https_userinfo_and_queries() {
        for given in [
            "https://127.0.0.1:9901",
            "http://user:pw@127.0.0.1:9901",
            "http://127.0.0.1:9901/?x=1",
            "http://",
            "not a url",
        ] {
            let result = AdminUrl::parse(given);
            assert!(
                matches!(result, Err(ClientError::InvalidUrl { .. })),
                "{given}: {result:?}"
            );
        }
    }

    #[test]
    fn token_with_control_characters_is_refused() -> Result<(), ClientError> {
        let base = AdminUrl::parse("127.0.0.1:9901")?;
        assert!(matches!(
            Client::new(base, Some("abc\ndef")),
            Err(ClientError::InvalidToken)
        ));
        Ok(())
    }

    #[test]
    fn exit_codes_split_refusals_from_transport_failures() {
        let refused = ClientError::Refused {
            status: StatusCode::CONFLICT,
            code: "CertificateInUse".into(),
            message: String::new(),
            listeners: vec![],
            findings: vec![],
            body: Box::new(Value::Null),
        };
        assert_eq!(refused.exit_code(), 1);
        let unreachable = ClientError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            cause: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 2);
        assert!(
            unreachable
                .to_string()
                .contains("is `tlsgate serve` running")
        );
        let unexpected = ClientError::Unexpected {
            url: "http://127.0.0.1:1".into(),
            status: StatusCode::BAD_GATEWAY,
            detail: "x".into(),
        };
        assert_eq!(unexpected.exit_code(), 2);
    }
}
