//! # tlsgate-listener
//!
//! The data plane. Validated listener configuration ([`ListenerConfig`])
//! and the certificate store flow in; out come bound sockets that terminate
//! TLS (one-way or mutual, ECDHE only) and forward HTTP/1.1 and HTTP/2
//! requests to plain-HTTP backends in rotation, with health checks,
//! forwarded headers, timeouts and graceful shutdown.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
pub mod config;
mod h2_flood;
mod headers;
mod health;
mod keepalive;
mod log_budget;
mod policy;
mod proxy;
mod runtime;
mod server;
mod stats;
mod tls;
mod tls_stream;
mod tunnel;
mod upstream;

pub use backend::{Backend, BackendPool, Lease};
pub use config::{
    BackendConfig, HealthCheckConfig, HealthMethod, Limits, ListenerConfig, MutualAuth, Protocol,
    SchedulerKind, Timeouts, TlsSettings, parse_duration,
};
pub use health::spawn_health_checks;
pub use policy::{BuiltinPolicy, TlsPolicy, builtin_names};
pub use server::{ServeError, Server};
pub use stats::ListenerStats;
pub use tls::TlsConfigCache;
