//! Log output: human-readable by default, JSON for log shippers
//! (`--log-format json`), and without timestamps under systemd, whose
//! journal stamps every line itself.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What is logged when `RUST_LOG` is unset or empty: `info`, less two
/// libraries' chatter an operator cannot act on. rustls warns once per
/// connection whose client sends an IP address as SNI (wrk and openssl
/// s_client given an IP do), and once per warning alert it sends or
/// receives (a client asking to renegotiate: every TLS scanner), both of
/// which a client can repeat at will; notify reports at info when a watch
/// it drops is already gone, on every certificate replaced.
pub const DEFAULT_FILTER: &str =
    "info,rustls::msgs::handshake=error,rustls::common_state=error,notify::inotify=warn";

/// Installs the global subscriber. `RUST_LOG` overrides [`DEFAULT_FILTER`].
pub fn init(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // On a failed write (the terminal closed) it would report the failure
        // with eprintln!, which panics on the same dead stderr.
        .log_internal_errors(false);
    let result = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.without_time().with_ansi(false).try_init(),
        // Colour only on a terminal (escape codes in a file, a pipe or
        // `docker logs` are noise), and not under a non-empty NO_COLOR
        // (no-color.org).
        (LogFormat::Text, false) => builder
            .with_ansi(
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .try_init(),
    };
    // Already installed (tests call this more than once): keep the first.
    let _ = result;
}
