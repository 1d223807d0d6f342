//! Real clients: rustls + tokio-rustls + hyper (HTTP/2 when the server
//! chooses `h2`, HTTP/1.1 otherwise).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::{Echo, HOST_NAME, STEP, within};

/// Errors of the client helpers: anything, with its source chain intact so
/// tests can find the TLS error inside ([`tls_error`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result of the client helpers.
pub type Result<T> = std::result::Result<T, BoxError>;

/// A response as the client got it.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (lossy UTF-8).
    pub body: String,
}

impl Response {
    /// What the backend saw (fails if the proxy answered by itself).
    pub fn echo(&self) -> Echo {
        Echo::parse(&self.body)
    }
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One client connection (TLS, then HTTP/2 if the server chose `h2`,
/// HTTP/1.1 otherwise), kept open for several requests.
pub struct Client {
    sender: Sender,
    /// The chain the server presented, leaf first.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
    /// Negotiated TLS version.
    pub version: Option<ProtocolVersion>,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
    /// Drives the HTTP connection.
    driver: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Client {
    /// Connects and completes the TLS handshake (as far as the client can
    /// tell: under TLS 1.3 a refused client certificate only shows on the
    /// first read).
    pub async fn connect(address: SocketAddr, config: Arc<ClientConfig>) -> Result<Client> {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let server_name = ServerName::try_from(HOST_NAME)?;
        let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
        let (_, session) = tls.get_ref();
        let peer_certificates = session
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let version = session.protocol_version();
        let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let io = TokioIo::new(tls);
        let (sender, driver) = if alpn.as_deref() == Some(b"h2") {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            (Sender::Http2(sender), driver)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            (Sender::Http1(sender), driver)
        };
        Ok(Client {
            sender,
            peer_certificates,
            alpn,
            version,
            resumed,
            driver,
        })
    }

    /// Waits until the server ends the connection (HTTP/2: after its
    /// GOAWAY; bound it with `within`).
    pub async fn closed(&mut self) {
        let _ = (&mut self.driver).await;
    }

    /// Sends `GET path` with `headers` and reads the whole response.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.request(Method::GET, path, headers, Bytes::new()).await
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response> {
        let uri = match self.sender {
            Sender::Http1(_) => path.to_owned(),
            Sender::Http2(_) => format!("https://{HOST_NAME}{path}"),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))?;
        if matches!(self.sender, Sender::Http1(_)) {
            request
                .headers_mut()
                .insert(HOST, HeaderValue::from_static(HOST_NAME));
        }
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// The leaf the server presented.
    pub fn leaf(&self) -> &[u8] {
        self.peer_certificates
            .first()
            .map(|c| c.as_ref())
            .unwrap_or_default()
    }
}

/// One request on a fresh connection, bounded by [`STEP`].
pub async fn get(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response> {
    match tokio::time::timeout(STEP, async {
        let mut client = Client::connect(address, config).await?;
        client.get(path, headers).await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(format!("no response from {address} within {STEP:?}").into()),
    }
}

/// Like [`get`], but the test fails unless the answer is 200 from a backend.
pub async fn get_ok(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Echo {
    let response = get(address, config, path, headers)
        .await
        .unwrap_or_else(|err| panic!("GET {path}: {}", describe(&*err)));
    assert_eq!(response.status, StatusCode::OK, "GET {path}: {response:?}");
    response.echo()
}

/// The rustls error somewhere in `err`'s source chain (inside an
/// `io::Error` or directly), if any.
pub fn tls_error(err: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        current = e.source();
    }
    None
}

/// `err` and its sources, for failure messages.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

/// Asserts that a fresh connection is refused by the TLS handshake — the
/// server sends a TLS alert and no HTTP exchange can happen — and returns
/// the alert.
pub async fn assert_refused(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    what: &str,
) -> rustls::AlertDescription {
    use tokio::io::AsyncReadExt as _;
    let result: Result<()> = within(what, STEP, async {
        let tcp = TcpStream::connect(address).await?;
        let mut tls = TlsConnector::from(config)
            .connect(ServerName::try_from(HOST_NAME)?, tcp)
            .await?;
        // Under TLS 1.3 the server judges the client certificate after the
        // client has finished its side of the handshake, so the verdict is
        // the next thing to read. Nothing is written: unread request bytes
        // would turn the server's close into a reset that can hide the alert.
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut byte)).await {
            Err(_) => Err(
                "the handshake was accepted: the connection is open and waits for a request".into(),
            ),
            Ok(Ok(0)) => Err("the connection was closed without a TLS alert".into()),
            Ok(Ok(_)) => Err("the server sent application data".into()),
            Ok(Err(err)) => Err(err.into()),
        }
    })
    .await;
    let err = match result {
        Ok(()) => unreachable!("the block above never returns Ok"),
        Err(err) => err,
    };
    match tls_error(&*err) {
        Some(rustls::Error::AlertReceived(alert)) => alert,
        _ => panic!(
            "{what}: expected the handshake to be refused with a TLS alert, got: {}",
            describe(&*err)
        ),
    }
}

/// A TLS connection to `address` with nothing spoken on it yet, for tests
/// that write raw HTTP bytes and watch exactly what comes back.
pub async fn raw_tls(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(HOST_NAME).unwrap();
    within("handshake", STEP, connector.connect(name, tcp))
        .await
        .unwrap()
}
