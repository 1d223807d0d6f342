//! `tlsgate`: the command-line entry point. It parses arguments and wires
//! the library crates together; the logic lives in the crates.

#![forbid(unsafe_code)]

mod cert_cmd;
mod demo;
mod logging;
mod pki;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the whole product on this machine: throwaway PKI, two backends, an mTLS listener.
    Demo(demo::DemoArgs),
    /// Validate and convert certificates and keys.
    #[command(subcommand)]
    Cert(cert_cmd::CertCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => {
            logging::init(cli.log_format);
            demo::run(&args)
        }
        Command::Cert(command) => cert_cmd::run(command),
    }
}
