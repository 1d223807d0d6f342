//! `tlsgate healthcheck`: one GET to the admin API's /healthz (or /readyz),
//! exit 0 on 200 and 1 otherwise. Container images without curl (the
//! distroless runtime image) use it for Docker's HEALTHCHECK.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use http::Uri;

/// Arguments of `healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to probe: plain HTTP, the admin API's /healthz or /readyz.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9901/healthz"
    )]
    url: String,
    /// Give up after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 3)]
    timeout: u64,
}

/// Runs the probe; prints why it failed on stderr.
pub fn run(args: &HealthcheckArgs) -> ExitCode {
    match probe(&args.url, Duration::from_secs(args.timeout.max(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("tlsgate healthcheck: {}: {why}", args.url);
            ExitCode::FAILURE
        }
    }
}

fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("not a URL ({e}); give e.g. http://127.0.0.1:9901/healthz"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs: the admin API has no TLS".into());
    }
    let host = uri.host().ok_or("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let address = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e} (is tlsgate running?)"))?;
    let io = |e: std::io::Error| format!("no answer from {address}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        uri.authority().map_or(host, |a| a.as_str())
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all that matters; /healthz answers are tiny.
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer).map_err(io)?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(()),
        Some(_) => {
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
            Err(format!("answered {status_line:?}: {body}"))
        }
        None => Err(format!("not an HTTP answer: {status_line:?}")),
    }
}
