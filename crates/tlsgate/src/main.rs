//! `tlsgate`: the command-line entry point. It parses arguments and wires
//! the library crates together; the logic lives in the crates.

#![forbid(unsafe_code)]

mod cert_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// TLS-terminating load-balancer data plane.
#[derive(Debug, Parser)]
#[command(name = "tlsgate", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate and convert certificates and keys.
    #[command(subcommand)]
    Cert(cert_cmd::CertCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cert(command) => cert_cmd::run(command),
    }
}
