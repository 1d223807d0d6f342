//! One request through the proxy: a keep-alive HTTP/1.1 client connection to
//! a plain-HTTP listener, forwarded to a loopback backend over the pooled
//! upstream connection. This is the per-request cost once connections are
//! warm (TLS is measured separately in the handshake bench).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tlsgate_cert_store::{Store, StoreConfig};
use tlsgate_listener::{
    BackendConfig, Limits, ListenerConfig, Protocol, SchedulerKind, Server, Timeouts,
};
use tokio::net::{TcpListener, TcpStream};

async fn backend() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = socket.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

fn forwarding(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut sender) = runtime.block_on(async {
        let backend = backend().await;
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        let server = Server::new(store);
        server
            .apply(vec![ListenerConfig {
                name: "bench".into(),
                bind: "127.0.0.1:0".parse().unwrap(),
                protocol: Protocol::Http,
                backends: vec![BackendConfig {
                    address: backend.to_string(),
                    weight: 100,
                }],
                scheduler: SchedulerKind::RoundRobin,
                health_check: None,
                trusted_proxies: Vec::new(),
                timeouts: Timeouts::default(),
                limits: Limits::default(),
                rfc9440_client_cert: false,
            }])
            .await
            .unwrap();
        let address = server.local_addr("bench").await.unwrap();
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        (server, sender)
    });
    let mut group = c.benchmark_group("forward_one_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("http1_keepalive_loopback", |b| {
        b.iter(|| {
            runtime.block_on(async {
                sender.ready().await.unwrap();
                let request = Request::builder()
                    .uri("/")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap().to_bytes()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
