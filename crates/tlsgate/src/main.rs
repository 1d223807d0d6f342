//! `tlsgate`: the command-line entry point. It parses arguments and wires
//! the library crates together; the logic lives in the crates.

#![forbid(unsafe_code)]

mod admin;
mod ca;
mod cert_cmd;
mod check;
mod config;
mod demo;
mod healthcheck;
mod logging;
mod pki;
mod serve;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc. A proxy's memory comes and goes in
/// bursts (handshakes, then connections parking with their buffers freed):
/// glibc keeps the freed memory resident between live objects, while
/// jemalloc keeps objects of a size together and, with the decay settings
/// built in from `.cargo/config.toml` (1 s, returned with MADV_DONTNEED by
/// a background thread), gives it back. Measured (BENCHMARKS.md): 22.8 →
/// 12.6 KiB RSS per idle TLS connection, handshakes +5 %, HTTP/2 +7 %.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// TLS-terminating load-balancer data plane.
#[derive(Debug, Parser)]
#[command(name = "tlsgate", version, about, propagate_version = true)]
struct Cli {
    /// Log format: text (default) or json.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The default config file (SPEC §5).
const DEFAULT_CONFIG: &str = "config/tlsgate.toml";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the data plane.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Worker threads, 1 to 4096 (default: the config's server.workers, else one per core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(config::MAX_WORKERS)))]
        workers: Option<u16>,
    },
    /// Validate the configuration and the certificate store it names; exit 0 or 1.
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show the whole product on this machine: throwaway PKI, two backends, an mTLS listener.
    Demo(demo::DemoArgs),
    /// Validate and convert certificates and keys.
    #[command(subcommand)]
    Cert(cert_cmd::CertCommand),
    /// A small CA for mutual authentication: init, issue, revoke, crl.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Probe the admin API's /healthz (or /readyz): exit 0 when it answers 200 (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, workers } => {
            logging::init(cli.log_format);
            serve::run(&config, workers.map(usize::from))
        }
        Command::CheckConfig { config } => check::run(&config),
        Command::Demo(args) => {
            logging::init(cli.log_format);
            demo::run(&args)
        }
        Command::Cert(command) => cert_cmd::run(command),
        Command::Ca(command) => ca::run(command),
        Command::Healthcheck(args) => healthcheck::run(&args),
    }
}
