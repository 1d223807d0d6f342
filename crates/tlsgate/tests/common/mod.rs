//! What the process-level tests share: the binary, a child process killed
//! by PID when the test ends, a tiny threaded HTTP backend, curl.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The tlsgate binary under test: `TLSGATE_BIN` when set (to run the
/// deploy checks against a release build), else the one cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("TLSGATE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_tlsgate")),
        PathBuf::from,
    )
}

/// Fails the test with an install hint when a system tool is missing.
pub fn need(tool: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "this test needs `{tool}` (apt-get install {tool}); .ci/run installs it"
    );
}

/// A child process killed (by PID) when the test ends, however it ends.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Waits (bounded) for a log/output line containing `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for a line with {needle:?}"),
            }
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`) to this process only.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn pump<R: std::io::Read + Send + 'static>(reader: R, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            eprintln!("  | {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Starts tlsgate with `args`, its stdout and stderr readable line by line.
pub fn spawn(args: &[&str]) -> Proc {
    spawn_with_env(args, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &OsStr)]) -> Proc {
    let mut command = Command::new(bin());
    command
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let (tx, lines) = mpsc::channel();
    pump(child.stdout.take().unwrap(), tx.clone());
    pump(child.stderr.take().unwrap(), tx);
    Proc { child, lines }
}

/// curl, bounded, with errors on stderr.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap()
}

/// A tiny HTTP/1.1 backend on a thread: answers "backend N" after `delay`.
pub fn backend(number: usize, delay: Duration) -> SocketAddr {
    backend_answering(format!("backend {number}\n"), delay)
}

/// A tiny HTTP/1.1 backend on a thread: answers `body` after `delay`
/// (HEAD, as health checks send, gets the headers only).
pub fn backend_answering(body: String, delay: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buffer = [0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = stream.read(&mut buffer) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buffer[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = seen.starts_with(b"HEAD ");
                        seen.drain(..end + 4);
                        std::thread::sleep(delay);
                        let sent = if head { "" } else { body.as_str() };
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{sent}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

/// stdout of a command that must have succeeded (stderr in the failure).
pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
