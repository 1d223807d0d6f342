//! `openssl s_client`, the reference client for versions and suites.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{HOST_NAME, STEP};

/// What `openssl s_client` did.
#[derive(Debug)]
pub struct SClient {
    /// Exit status 0 and a negotiated cipher.
    pub connected: bool,
    /// stdout and stderr.
    pub output: String,
}

/// Runs `openssl s_client -connect ADDRESS -servername localhost` with
/// `args` and no input (it handshakes, then closes), bounded by [`STEP`].
/// `ca_file`, when given, is checked with `-verify_return_error`.
pub async fn s_client(address: SocketAddr, args: &[&str], ca_file: Option<&Path>) -> SClient {
    let mut command = std::process::Command::new("openssl");
    command
        .arg("s_client")
        .arg("-connect")
        .arg(address.to_string())
        .args(["-servername", HOST_NAME])
        .args(args);
    if let Some(ca_file) = ca_file {
        command.arg("-CAfile").arg(ca_file).args([
            "-verify_return_error",
            "-verify_hostname",
            HOST_NAME,
        ]);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `openssl` command is not installed; these tests drive real TLS clients with \
             `openssl s_client` — install it (e.g. `apt-get install openssl`) and rerun"
        ),
        Err(err) => panic!("cannot run openssl: {err}"),
    };
    let output = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("openssl s_client did not finish within {STEP:?}");
                }
            }
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let negotiated = text.lines().any(|line| {
        let line = line.trim();
        (line.starts_with("Ciphersuite:")
            || line.starts_with("New, ")
            || line.starts_with("Cipher is"))
            && !line.contains("(NONE)")
            && !line.ends_with("0000")
    });
    SClient {
        connected: output.status.success() && negotiated,
        output: text,
    }
}
