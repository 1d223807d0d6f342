//! A client's TLS connection: rustls over a tokio `TcpStream`, driven
//! here instead of through tokio-rustls for two writes a short connection
//! otherwise spends a packet each on.
//!
//! - **Session tickets wait for the first response.** rustls queues its
//!   TLS 1.3 tickets when the client's Finished arrives, and clients send
//!   their first request in the same flight. tokio-rustls writes the
//!   tickets when the handshake ends (and hyper flushes after reading each
//!   request), so they leave alone, a moment before the response. Held
//!   back, they share the response's write: one syscall and one packet
//!   fewer per connection. Nothing waits on them: a client uses a ticket
//!   only for its next connection. The price: while a first request is
//!   slow to answer (a long poll), the client's other new connections
//!   cannot resume yet and make full handshakes; a connection that ends
//!   without a response gets its tickets with close_notify.
//! - **close_notify and the FIN share a packet.** close_notify goes out
//!   with `MSG_MORE` and the shutdown right after tacks the FIN onto it.
//!
//! On loopback each packet costs the sender its receive path too, so both
//! show in the proxy's CPU per full handshake (BENCHMARKS.md).
//!
//! Everything else is what tokio-rustls does: reads decrypt what the
//! socket has into rustls' buffer and copy it out; writes encrypt and
//! send at once; an end of stream without close_notify reads as
//! `UnexpectedEof`.

use std::io::{self, BufRead, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::{ProtocolVersion, ServerConfig, ServerConnection};
#[cfg(target_os = "linux")]
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a refused handshake's connection waits for the client to close
/// after the alert (see [`TlsStream::linger`]). The handshake timeout
/// bounds it as well.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// A TLS connection accepted from a client (see the module docs).
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// What rustls queued as the handshake ended (TLS 1.3 tickets) waits
    /// for the first write of application data or the shutdown.
    hold: bool,
}

impl TlsStream {
    /// Runs the server side of the handshake on `tcp`.
    ///
    /// Errors are `io::Error`s; a TLS failure is `InvalidData` carrying the
    /// `rustls::Error` (after the alert that tells the client why has been
    /// sent, where the socket takes it), a client that leaves mid-handshake
    /// `UnexpectedEof`.
    pub(crate) async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut stream = Self {
            tcp,
            tls,
            hold: false,
        };
        match std::future::poll_fn(|cx| stream.poll_handshake(cx)).await {
            Ok(()) => Ok(stream),
            Err(err) => {
                if err.kind() == io::ErrorKind::InvalidData {
                    stream.linger().await;
                }
                Err(err)
            }
        }
    }

    /// After a refused handshake, with the alert that says why sent: the
    /// FIN goes after it, and what the client still sends (a TLS 1.3
    /// client has finished its side and sends its request) is read and
    /// dropped until it closes, for at most [`LINGER`]. Closed with that
    /// request unread, the socket would send an RST, and the client's
    /// kernel would drop the alert unread: curl said "getpeername()
    /// failed" or "connection reset" instead of "alert certificate
    /// required".
    async fn linger(mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.tcp.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0; 1024];
        let _ = tokio::time::timeout(LINGER, async {
            while matches!(self.tcp.read(&mut sink).await, Ok(1..)) {}
        })
        .await;
    }

    /// The rustls connection: ALPN, client certificate, resumption.
    pub(crate) fn connection(&self) -> &ServerConnection {
        &self.tls
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.is_handshaking() {
            ready!(self.poll_send(cx, false))?;
            if ready!(self.poll_receive(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection during the handshake",
                )));
            }
        }
        if self.tls.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
            // The server's last handshake message went out before the
            // client's Finished came in: what is queued now is tickets.
            self.hold = self.tls.wants_write();
            Poll::Ready(Ok(()))
        } else {
            // TLS 1.2 ends with the server's own Finished: it must go now.
            self.poll_send(cx, false)
        }
    }

    /// Reads what the socket has into rustls and processes it; `Ok(0)` is
    /// the end of the TCP stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let read = match self.tls.read_tls(&mut Socket {
            tcp: &mut self.tcp,
            cx,
            more: false,
        }) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            result => result?,
        };
        if let Err(err) = self.tls.process_new_packets() {
            // The alert rustls queued tells the client why; the error is
            // what matters here, so a socket that cannot take it is fine.
            self.hold = false;
            let _ = self.poll_send(cx, false);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err)));
        }
        Poll::Ready(Ok(read))
    }

    /// Sends everything rustls has queued; with `more`, tells the kernel
    /// more is coming (the FIN), so it waits for it.
    fn poll_send(&mut self, cx: &mut Context<'_>, more: bool) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Socket {
                tcp: &mut self.tcp,
                cx,
                more,
            }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts `bufs` and sends them (with anything held); `Ready(n)` once
    /// rustls has taken `n > 0` bytes, even if the socket is full.
    fn poll_write_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.hold = false;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        loop {
            // rustls takes less than offered only while its send buffer
            // is full; sending below makes room.
            let taken = self.tls.writer().write_vectored(bufs)?;
            match self.poll_send(cx, false) {
                Poll::Ready(Ok(())) if taken == 0 => continue,
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(taken)),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending if taken == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(taken)),
            }
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut copied = false;
        loop {
            let mut reader = this.tls.reader();
            match reader.fill_buf() {
                // close_notify received: the end of the stream.
                Ok([]) => return Poll::Ready(Ok(())),
                Ok(data) => {
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    reader.consume(n);
                    copied = true;
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                // What was already decrypted is enough for one read: the
                // socket is read again only when nothing was.
                Err(_) if copied => return Poll::Ready(Ok(())),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.poll_receive(cx))?;
                }
                // UnexpectedEof: the TCP stream ended without close_notify.
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_plaintext(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plaintext(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // rustls puts all the slices of one call into one record.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold {
            // Held tickets are not the caller's data to flush.
            return Poll::Ready(Ok(()));
        }
        this.poll_send(cx, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Queues close_notify once, however often shutdown is polled.
        this.tls.send_close_notify();
        this.hold = false;
        ready!(this.poll_send(cx, cfg!(target_os = "linux")))?;
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            // The client may be gone already; close_notify was best effort.
            Err(err) if err.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(err)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// The socket as rustls' `Read`/`Write`, through tokio's `poll_*`: `Pending`
/// is `WouldBlock` with the task registered for the socket's next event.
/// (tokio also takes a short read as the end of the socket's readiness,
/// which saves the `EAGAIN` call a plain `try_read` would make after each
/// request.)
struct Socket<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
    /// Send with `MSG_MORE` (Linux): hold the data for the FIN.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    more: bool,
}

fn would_block<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl io::Read for Socket<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        would_block(Pin::new(&mut *self.tcp).poll_read(self.cx, &mut buf))?;
        Ok(buf.filled().len())
    }
}

impl Write for Socket<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if self.more {
            loop {
                would_block(self.tcp.poll_write_ready(self.cx))?;
                let socket = socket2::SockRef::from(&*self.tcp);
                match self.tcp.try_io(Interest::WRITABLE, || {
                    // MSG_NOSIGNAL: a client that is gone is an error
                    // here, as with writev, never a SIGPIPE.
                    socket.send_vectored_with_flags(bufs, libc::MSG_MORE | libc::MSG_NOSIGNAL)
                }) {
                    // try_io cleared the readiness: poll again to register.
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    result => return result,
                }
            }
        }
        would_block(Pin::new(&mut *self.tcp).poll_write_vectored(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use rustls::client::Resumption;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, HandshakeKind, RootCertStore, SupportedProtocolVersion};
    use tlsgate_test_pki::{KeyKind, TestPki, Validity};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream as ClientTls;

    use super::*;

    /// Every step of a test is bounded: a stream that waits forever
    /// (e.g. a held handshake message) fails instead of hanging.
    const STEP: Duration = Duration::from_secs(10);

    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(STEP, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: no progress in {STEP:?}"))
    }

    fn configs(
        versions: &[&'static SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        configs_with_client_auth(versions, false)
    }

    /// With `client_auth`, the server requires a client certificate from a
    /// CA the client has none from.
    fn configs_with_client_auth(
        versions: &[&'static SupportedProtocolVersion],
        client_auth: bool,
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let pki = TestPki::now_real();
        let root = pki.root("tls_stream root", KeyKind::EcdsaP256);
        let leaf = root.server(&["localhost"], KeyKind::EcdsaP256, Validity::Normal);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let server = if client_auth {
            let client_ca = pki.root("tls_stream client CA", KeyKind::EcdsaP256);
            let mut roots = RootCertStore::empty();
            roots.add(client_ca.cert().certificate_der()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .unwrap();
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        }
        .with_single_cert(vec![leaf.certificate_der()], leaf.key().private_key_der())
        .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(root.cert().certificate_der()).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.resumption = Resumption::in_memory_sessions(8);
        (Arc::new(server), Arc::new(client))
    }

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        (listener, address)
    }

    /// A tokio-rustls client's side of a handshake with `address`.
    async fn connect(
        address: std::net::SocketAddr,
        config: Arc<ClientConfig>,
    ) -> io::Result<ClientTls<TcpStream>> {
        let tcp = TcpStream::connect(address).await?;
        TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// A handshake between [`TlsStream`] and a tokio-rustls client.
    async fn pair(
        server: &Arc<ServerConfig>,
        client: &Arc<ClientConfig>,
    ) -> (TlsStream, ClientTls<TcpStream>) {
        let (listener, address) = listener().await;
        let client = tokio::spawn(connect(address, client.clone()));
        let (tcp, _) = within("accept", listener.accept()).await.unwrap();
        let server = within("server handshake", TlsStream::accept(tcp, server.clone()))
            .await
            .unwrap();
        let client = within("client handshake", client).await.unwrap().unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn tls13_tickets_wait_for_the_first_response() {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let (mut server, mut client) = pair(&server_config, &client_config).await;
        assert_eq!(
            server.connection().protocol_version(),
            Some(ProtocolVersion::TLSv1_3)
        );
        assert!(
            server.connection().wants_write(),
            "the tickets are queued, not sent, when the handshake ends"
        );
        within("flush", server.flush()).await.unwrap();
        assert!(
            server.connection().wants_write(),
            "a flush with no response written leaves them"
        );

        within("write", server.write_all(b"response"))
            .await
            .unwrap();
        within("flush", server.flush()).await.unwrap();
        assert!(!server.connection().wants_write(), "sent with the response");
        let mut got = [0; 8];
        within("client read", client.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, b"response");

        // The client has the tickets: its next connection resumes.
        let (_, again) = pair(&server_config, &client_config).await;
        assert_eq!(
            again.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
    }

    #[tokio::test]
    async fn tls12_handshakes_end_with_the_servers_finished_sent() {
        // TLS 1.2 ends with the server's Finished: held back, the client
        // would wait for it forever (and `pair` time out).
        let (server_config, client_config) = configs(&[&rustls::version::TLS12]);
        let (mut server, mut client) = pair(&server_config, &client_config).await;
        assert_eq!(
            server.connection().protocol_version(),
            Some(ProtocolVersion::TLSv1_2)
        );
        assert!(!server.connection().wants_write());
        within("client write", client.write_all(b"ping"))
            .await
            .unwrap();
        let mut got = [0; 4];
        within("server read", server.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, b"ping");
        within("server write", server.write_all(b"pong"))
            .await
            .unwrap();
        within("client read", client.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, b"pong");
    }

    #[tokio::test]
    async fn shutdown_sends_close_notify_then_the_end_of_the_stream() {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let (mut server, mut client) = pair(&server_config, &client_config).await;
        within("write", server.write_all(b"last words"))
            .await
            .unwrap();
        within("shutdown", server.shutdown()).await.unwrap();
        // tokio-rustls reads an end without close_notify as UnexpectedEof.
        let mut got = Vec::new();
        within("client read", client.read_to_end(&mut got))
            .await
            .expect("close_notify, then EOF");
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn shutdown_into_a_full_socket_waits_and_still_ends_cleanly() {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let (mut server, mut client) = pair(&server_config, &client_config).await;
        // Small socket buffers: the response cannot all fit in them, so
        // close_notify (sent with MSG_MORE) meets a full socket and has to
        // wait for the client to read.
        socket2::SockRef::from(&server.tcp)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(client.get_ref().0)
            .set_recv_buffer_size(4096)
            .unwrap();
        // Under rustls' 64 KiB send buffer: the write completes without
        // the client reading.
        let body: Vec<u8> = (0..48 * 1024).map(|i: u32| (i % 253) as u8).collect();
        let expected = body.clone();
        let (written, written_rx) = tokio::sync::oneshot::channel();
        let serving = tokio::spawn(async move {
            server.write_all(&body).await?;
            let _ = written.send(server.connection().wants_write());
            server.shutdown().await
        });
        let still_queued = within("write", written_rx).await.unwrap();
        assert!(still_queued, "the socket filled before the shutdown");
        let mut got = Vec::new();
        within("client read", client.read_to_end(&mut got))
            .await
            .expect("everything, close_notify, then EOF");
        assert!(got == expected, "the client got {} bytes", got.len());
        within("shutdown", serving).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_clients_end_reads_as_eof_with_close_notify_and_an_error_without() {
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let (mut server, mut client) = pair(&server_config, &client_config).await;
        within("client write", client.write_all(b"bye"))
            .await
            .unwrap();
        within("client shutdown", client.shutdown()).await.unwrap();
        let mut got = Vec::new();
        within("server read", server.read_to_end(&mut got))
            .await
            .expect("a clean end");
        assert_eq!(got, b"bye");

        let (mut server, client) = pair(&server_config, &client_config).await;
        drop(client); // no close_notify
        let err = within("server read", server.read(&mut [0; 16]))
            .await
            .expect_err("a TCP end without close_notify");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn failed_handshakes_say_why() {
        let (server_config, _) = configs(&[&rustls::version::TLS13]);
        let (listener, address) = listener().await;

        let mut plain = TcpStream::connect(address).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let (tcp, _) = within("accept", listener.accept()).await.unwrap();
        let err = within("handshake", TlsStream::accept(tcp, server_config.clone()))
            .await
            .err()
            .expect("plain HTTP is not a handshake");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let tls = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(tls, Some(rustls::Error::InvalidMessage(_))),
            "{err:?}"
        );

        let gone = TcpStream::connect(address).await.unwrap();
        drop(gone);
        let (tcp, _) = within("accept", listener.accept()).await.unwrap();
        let err = within("handshake", TlsStream::accept(tcp, server_config))
            .await
            .err()
            .expect("no ClientHello");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_refused_client_reads_the_alert_not_a_reset() {
        // TLS 1.3 with a client certificate required: the client finishes
        // its side of the handshake without one and sends its request;
        // the server refuses. The client must get the alert, which an RST
        // (the server closing with the request unread) would discard.
        let (mutual, client_config) = configs_with_client_auth(&[&rustls::version::TLS13], true);

        for _ in 0..5 {
            let (listener, address) = listener().await;
            let client_config = client_config.clone();
            let client = tokio::spawn(async move {
                let mut tls = connect(address, client_config)
                    .await
                    .expect("the client's side of a TLS 1.3 handshake completes");
                tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                    .await
                    .unwrap();
                let read = tls.read(&mut [0; 64]).await;
                // Still connected: the server's end came as a FIN after the
                // alert, not an RST (which curl reports as "getpeername()
                // failed" before it ever reads the alert).
                let connected = tls.get_ref().0.peer_addr().is_ok();
                (read, connected)
            });
            let (tcp, _) = within("accept", listener.accept()).await.unwrap();
            let refused = within("handshake", TlsStream::accept(tcp, mutual.clone())).await;
            assert!(refused.is_err(), "no client certificate, no connection");
            let (read, connected) = within("client read", client).await.unwrap();
            let err = read.expect_err("refused");
            assert!(connected, "reset after the alert");
            let alert = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>());
            assert!(
                matches!(
                    alert,
                    Some(rustls::Error::AlertReceived(
                        rustls::AlertDescription::CertificateRequired
                    ))
                ),
                "the client saw {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_mebibyte_each_way_at_once() {
        // Both sides write more than the socket buffers hold while the
        // other writes too: rustls' send buffer fills, writes wait for the
        // socket, and reads go on meanwhile.
        let (server_config, client_config) = configs(&[&rustls::version::TLS13]);
        let (server, client) = pair(&server_config, &client_config).await;
        let upload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let download: Vec<u8> = upload.iter().rev().copied().collect();

        async fn exchange<S: AsyncRead + AsyncWrite>(
            stream: S,
            send: Vec<u8>,
            expect: usize,
        ) -> Vec<u8> {
            let (mut read, mut write) = tokio::io::split(stream);
            let sending = async move {
                write.write_all(&send).await.unwrap();
                write.shutdown().await.unwrap();
            };
            let receiving = async move {
                let mut got = Vec::with_capacity(expect);
                read.read_to_end(&mut got).await.unwrap();
                got
            };
            tokio::join!(sending, receiving).1
        }
        let (at_server, at_client) = within("exchange", async {
            tokio::join!(
                exchange(server, download.clone(), upload.len()),
                exchange(client, upload.clone(), download.len()),
            )
        })
        .await;
        assert!(at_server == upload, "the server got the upload intact");
        assert!(at_client == download, "the client got the download intact");
    }
}
