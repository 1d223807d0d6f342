//! The binary as operators run it: `tlsgate demo` and `tlsgate serve` as
//! real processes on loopback, driven with curl and signals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tlsgate_test_pki::{KeyKind, TestPki, Validity};

mod common;

use common::{Proc, backend, bin, curl, need, ok_stdout, spawn, spawn_with_env};

#[test]
fn the_demo_prints_curl_commands_that_work() {
    need("curl");
    let mut demo = spawn(&["demo", "--bind", "127.0.0.1:0"]);
    demo.wait_line("tlsgate demo is running");
    let mut commands = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while commands.len() < 3 {
        let line = demo
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo printed its curl commands");
        if let Some(command) = line.trim_start().strip_prefix("curl ") {
            commands.push(command.to_string());
        }
    }
    // The first two are the mTLS requests; the third shows a refusal.
    for command in &commands[..2] {
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = curl(&args);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(body.contains("Hello from demo backend"), "{body}");
        assert!(body.contains("CN=demo-client"), "{body}");
        assert!(body.contains("verify: SUCCESS"), "{body}");
    }
    let args: Vec<&str> = commands[2].split_whitespace().collect();
    let out = curl(&args);
    assert!(
        !out.status.success(),
        "a client without a certificate must be refused"
    );
    // Stopped the way a user stops it, so its throwaway keys go too (the
    // SIGKILL of a dropped Proc would leave them in the temp folder).
    demo.signal("INT");
    assert!(demo.wait_exit().success());
}

#[test]
fn the_demo_removes_its_keys_when_the_terminal_closes_and_a_busy_bind_is_an_error() {
    let mut demo = spawn(&["demo", "--bind", "127.0.0.1:0"]);
    let line = demo.wait_line("--cacert ");
    let ca = line
        .split_whitespace()
        .skip_while(|word| *word != "--cacert")
        .nth(1)
        .expect("a path after --cacert");
    let folder = std::path::Path::new(ca).parent().unwrap().to_path_buf();
    assert!(folder.join("client.key").is_file(), "{line}");
    demo.signal("HUP");
    assert!(demo.wait_exit().success());
    assert!(!folder.exists(), "{} left behind", folder.display());

    // An address asked for is that address or an error, not another port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let mut busy = spawn(&["demo", "--bind", &address]);
    let line = busy.wait_line("tlsgate demo:");
    assert!(line.contains(&address), "{line}");
    assert_eq!(
        line.matches("in use").count(),
        1,
        "the OS error once, then what to do: {line}"
    );
    assert!(line.contains("pick another port"), "{line}");
    assert!(!busy.wait_exit().success());
}

/// Closing the terminal for real: the demo on a pseudo-terminal whose
/// other end goes away (SIGHUP, then every write to the terminal fails
/// with EIO) still drains, removes its keys and exits 0, rather than
/// panicking on its first write to the dead terminal.
#[test]
fn the_demo_survives_its_terminal_going_away() {
    need("python3");
    let script = r#"
import os, pty, signal, sys, time
signal.alarm(30)
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "demo", "--bind", "127.0.0.1:0"])
seen, deadline = b"", time.time() + 20
while b"Hot swap" not in seen and time.time() < deadline:
    seen += os.read(fd, 4096)
folder = seen.decode().split("--cacert ")[1].split("/ca.pem")[0]
os.close(fd)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), os.path.exists(folder))
"#;
    let out = Command::new("python3")
        .args(["-c", script, bin().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "0 False",
        "exit code and whether the keys are left: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store, a config file and two backends for `serve` tests.
/// The `address` field of a JSON log line.
fn logged_address(line: &str) -> SocketAddr {
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value["address"].as_str().unwrap().parse().unwrap()
}

struct Site {
    _dir: tempfile::TempDir,
    path: PathBuf,
    backends: Vec<SocketAddr>,
}

impl Site {
    fn new(delay: Duration) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let pki = TestPki::now_real();
        let root = pki.root("Serve Test Root", KeyKind::EcdsaP256);
        let leaf = root.server(&["localhost"], KeyKind::EcdsaP256, Validity::Normal);
        let server = path.join("certs/server/www");
        fs::create_dir_all(&server).unwrap();
        fs::write(
            server.join("cert.pem"),
            format!("{}{}", leaf.cert_pem(), root.cert().cert_pem()),
        )
        .unwrap();
        fs::write(server.join("key.pem"), leaf.key().pkcs8_pem()).unwrap();
        let ca = path.join("certs/ca/clients");
        fs::create_dir_all(&ca).unwrap();
        fs::write(ca.join("ca.pem"), root.cert().cert_pem()).unwrap();
        fs::write(path.join("root.pem"), root.cert().cert_pem()).unwrap();
        let client = root.client("alice", KeyKind::EcdsaP256, Validity::Normal);
        fs::write(path.join("client.pem"), client.cert_pem()).unwrap();
        fs::write(path.join("client.key"), client.key().pkcs8_pem()).unwrap();
        let backends = vec![backend(1, delay), backend(2, delay)];
        let site = Site {
            _dir: dir,
            path,
            backends,
        };
        site.write_config(false);
        site
    }

    fn config_path(&self) -> PathBuf {
        self.path.join("tlsgate.toml")
    }

    fn config_text(&self, mutual_auth: bool) -> String {
        let mtls = if mutual_auth {
            "\n[listener.mutual_auth]\nca = \"clients\"\nmode = \"required\"\n"
        } else {
            ""
        };
        format!(
            r#"[store]
dir = "certs"

[admin]
bind = "127.0.0.1:0"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["www"]
{mtls}
[[listener.backend]]
address = "{}"

[[listener.backend]]
address = "{}"
"#,
            self.backends[0], self.backends[1]
        )
    }

    /// Writes the config the way editors do: a temporary file and a rename.
    fn write_config(&self, mutual_auth: bool) {
        self.write_config_text(&self.config_text(mutual_auth));
    }

    fn write_config_text(&self, text: &str) {
        let tmp = self.path.join(".tlsgate.toml.tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, self.config_path()).unwrap();
    }

    fn serve(&self) -> (Proc, u16) {
        self.serve_logging(&[], &[])
    }

    /// Starts serving; also returns the admin API's address.
    fn serve_with_admin(&self) -> (Proc, u16, SocketAddr) {
        let proc = self.spawn_serve(&[]);
        let admin = logged_address(&proc.wait_line("admin API listening"));
        let port = logged_address(&proc.wait_line("\"serving\"")).port();
        (proc, port, admin)
    }

    /// Starts serving with `env`; `before` are lines logged, in order,
    /// before it says it is serving.
    fn serve_logging(&self, env: &[(&str, &OsStr)], before: &[&str]) -> (Proc, u16) {
        let proc = self.spawn_serve(env);
        for needle in before {
            proc.wait_line(needle);
        }
        let port = logged_address(&proc.wait_line("\"serving\"")).port();
        (proc, port)
    }

    fn spawn_serve(&self, env: &[(&str, &OsStr)]) -> Proc {
        let config = self.config_path();
        spawn_with_env(
            &[
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--log-format",
                "json",
            ],
            env,
        )
    }

    fn get(&self, port: u16, with_client_cert: bool, path: &str) -> Output {
        let url = format!("https://localhost:{port}{path}");
        let root = self.path.join("root.pem");
        let cert = self.path.join("client.pem");
        let key = self.path.join("client.key");
        let mut args = vec!["--cacert", root.to_str().unwrap()];
        if with_client_cert {
            args.extend([
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ]);
        }
        args.push(&url);
        curl(&args)
    }
}

#[test]
fn serve_forwards_and_a_config_change_turns_mutual_auth_on_without_restart() {
    need("curl");
    let site = Site::new(Duration::ZERO);
    let (proc, port, admin) = site.serve_with_admin();
    let metrics = || ok_stdout(&curl(&[&format!("http://{admin}/metrics")]));
    assert!(metrics().contains("\ntlsgate_config_last_reload_applied 1\n"));
    let first = ok_stdout(&site.get(port, false, "/"));
    let second = ok_stdout(&site.get(port, false, "/"));
    assert_ne!(first, second, "round robin alternates backends");

    // A broken config is refused; the running one keeps serving.
    fs::write(
        site.config_path(),
        "[[listener]]\nname = \"web\"\nbogus = 1\n",
    )
    .unwrap();
    proc.wait_line("configuration refused");
    ok_stdout(&site.get(port, false, "/"));
    // Visible to alerting, not only in the log.
    let text = metrics();
    assert!(
        text.contains("\ntlsgate_config_last_reload_applied 0\n"),
        "{text}"
    );
    assert!(
        text.contains("tlsgate_config_reloads_total{result=\"refused\"} 1\n"),
        "{text}"
    );

    // Mutual auth on: new connections need a client certificate. The log
    // line names the listener that changed.
    site.write_config(true);
    let line = proc.wait_line("configuration reloaded");
    let text = metrics();
    assert!(
        text.contains("\ntlsgate_config_last_reload_applied 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tlsgate_config_reloads_total{result=\"applied\"} 1\n"),
        "{text}"
    );
    let logged: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&logged["changed"], &logged["added"], &logged["removed"]),
        (&"web (mutual_auth)".into(), &"".into(), &"".into()),
        "{line}"
    );
    assert!(!site.get(port, false, "/").status.success());
    let body = ok_stdout(&site.get(port, true, "/"));
    assert!(body.starts_with("backend"), "{body}");
    // The same file written again: said to change nothing.
    site.write_config(true);
    let line = proc.wait_line("configuration reloaded");
    assert!(line.contains("(no listener changed)"), "{line}");

    // A certificate or CA name the store does not serve (a typo, or files
    // not there yet) is not put in force: taken, it would leave the
    // listener refusing every handshake. Once the store has it, it is.
    for (good, typo, folder, kind) in [
        (
            "certificates = [\"www\"]",
            "certificates = [\"ww\"]",
            "server/www",
            "server",
        ),
        ("ca = \"clients\"", "ca = \"client\"", "ca/clients", "ca"),
    ] {
        let text = site.config_text(true);
        assert!(text.contains(good), "{text}");
        site.write_config_text(&text.replace(good, typo));
        let line = proc.wait_line("CertificateNotFound");
        assert!(
            line.contains(&format!("{kind} certificate")) && line.contains("certs/"),
            "names the certificate and the folder to fill: {line}"
        );
        proc.wait_line("configuration not applied yet");
        let text = metrics();
        assert!(
            text.contains("\ntlsgate_config_last_reload_applied 0\n"),
            "{text}"
        );
        assert!(!site.get(port, false, "/").status.success());
        ok_stdout(&site.get(port, true, "/"));

        // The files arrive under that name: the waiting config applies.
        let from = site.path.join("certs").join(folder);
        let to = from.with_file_name(typo.split('"').nth(1).unwrap());
        fs::create_dir(&to).unwrap();
        for file in fs::read_dir(&from).unwrap() {
            let file = file.unwrap().path();
            fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
        proc.wait_line("configuration reloaded");
        ok_stdout(&site.get(port, true, "/"));
    }

    // SIGHUP reloads too: mutual auth off again, and a backend's weight
    // changed; the line names both.
    let second = format!("address = \"{}\"\n", site.backends[1]);
    let text = site
        .config_text(false)
        .replace(&second, &format!("{second}weight = 50\n"));
    fs::write(site.config_path(), text).unwrap();
    proc.signal("HUP");
    let line = proc.wait_line("configuration reloaded");
    let logged: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(logged["changed"], "web (mutual_auth, backend)", "{line}");
    ok_stdout(&site.get(port, false, "/"));
}

#[test]
fn serve_starts_without_its_certificate_says_so_and_serves_once_it_arrives() {
    need("curl");
    let site = Site::new(Duration::ZERO);
    let folder = site.path.join("certs/server/www");
    let aside = site.path.join("www-aside");
    fs::rename(&folder, &aside).unwrap();
    // Started anyway (the admin API is how a first certificate arrives),
    // but loudly: an error naming the folder to fill.
    let (proc, port) = site.serve_logging(&[], &["certs/server/www (or upload it)"]);
    // The client is told it is the server's problem: a TLS alert, not a
    // connection closed without a word.
    need("openssl");
    let refused = s_client(port, "localhost");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("alert internal error"), "{stderr}");

    // A certificate the running config already names is not a reason to
    // refuse an unrelated change.
    site.write_config(true);
    proc.wait_line("configuration reloaded");

    fs::rename(&aside, &folder).unwrap();
    proc.wait_line("certificate loaded");
    ok_stdout(&site.get(port, true, "/"));
}

/// `openssl s_client` to 127.0.0.1:`port` with `servername` as SNI, stdin
/// closed so it ends after the handshake.
fn s_client(port: u16, servername: &str) -> Output {
    Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", servername, "-brief"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A client sending an IP address as SNI (wrk does, and so does openssl
/// s_client given one), or asking to renegotiate (every TLS scanner), makes
/// rustls warn once per connection; by default that chatter is filtered
/// out, and RUST_LOG can bring it back.
#[test]
fn the_default_log_level_leaves_out_rustls_warnings_about_ip_sni_and_renegotiation() {
    need("openssl");
    let site = Site::new(Duration::ZERO);
    let handshake = |port: u16| {
        let out = s_client(port, "127.0.0.1");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // s_client's "R" command asks a TLS 1.2 server to renegotiate; the
        // pause keeps the connection open while rustls answers.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "(printf 'R\\n'; sleep 1) | openssl s_client -connect 127.0.0.1:{port} -tls1_2 -servername localhost"
            ))
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("RENEGOTIATING"), "{said}");
        // A TCP health probe: connects and closes without a byte.
        drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    };
    // With RUST_LOG=info the warnings are there, and the probe at debug:
    // the checks below can fail.
    let (proc, port) = site.serve_logging(
        &[("RUST_LOG", OsStr::new("info,tlsgate_listener=debug"))],
        &[],
    );
    handshake(port);
    proc.wait_line("Illegal SNI");
    proc.wait_line("NoRenegotiation");
    proc.wait_line("client closed the connection during the handshake");
    drop(proc);

    let (proc, port) = site.serve_logging(&[("RUST_LOG", OsStr::new(""))], &[]);
    handshake(port);
    // Everything logged after the handshake, up to the last line.
    proc.signal("TERM");
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.contains("\"stopped\""))
    {
        let line = proc.lines.recv_timeout(Duration::from_secs(20));
        lines.push(line.expect("logged until stopped"));
    }
    assert!(
        !lines.iter().any(|l| l.contains("Illegal SNI")
            || l.contains("NoRenegotiation")
            || l.contains("during the handshake")),
        "{lines:?}"
    );
}

/// A backend's health transitions name the listener they happened on (an
/// operator with several listeners on one backend address reads which).
#[test]
fn a_backend_out_of_rotation_is_logged_with_its_listener() {
    need("curl");
    let site = Site::new(Duration::ZERO);
    let dead = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let text = site
        .config_text(false)
        .replace(&site.backends[1].to_string(), &dead.to_string());
    fs::write(site.config_path(), text).unwrap();
    let (proc, port) = site.serve_logging(&[], &[]);
    // Round robin: one of two requests goes to the dead backend, is
    // retried on the live one, and takes the dead one out.
    for _ in 0..2 {
        ok_stdout(&site.get(port, false, "/"));
    }
    let line = proc.wait_line("backend taken out of rotation");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["listener"], "web", "{line}");
    assert_eq!(value["backend"], dead.to_string(), "{line}");
}

/// With every backend out by its health checks, the 503s are logged (once
/// per 10 s, not per request): the health lines that took each out may be
/// long gone from an operator's screen.
#[test]
fn requests_answered_503_for_want_of_a_backend_are_logged() {
    need("curl");
    let site = Site::new(Duration::ZERO);
    let dead = || {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let mut text = site
        .config_text(false)
        .replace(&site.backends[0].to_string(), &dead().to_string())
        .replace(&site.backends[1].to_string(), &dead().to_string());
    text.push_str(
        "\n[listener.health_check]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 2\n",
    );
    fs::write(site.config_path(), text).unwrap();
    let (proc, port) = site.serve_logging(&[], &[]);
    for _ in 0..2 {
        proc.wait_line("backend taken out of rotation");
    }
    let root = site.path.join("root.pem");
    let url = format!("https://localhost:{port}/");
    for _ in 0..3 {
        let (status, stderr) = status_of(&["--cacert", root.to_str().unwrap(), &url]);
        assert_eq!(status, "503", "{stderr}");
    }
    let line = proc.wait_line("no backend is in rotation");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["listener"], "web", "{line}");
    assert_eq!(value["level"], "WARN", "{line}");
}

/// A response body the backend cuts short is logged with the listener and
/// the backend it came through (the client only sees a short body).
#[test]
fn a_response_body_cut_short_by_the_backend_is_logged_with_its_listener() {
    need("curl");
    let site = Site::new(Duration::ZERO);
    let cutting = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = cutting.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in cutting.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this");
            // Dropped: closed 91 bytes early.
        }
    });
    let text = site
        .config_text(false)
        .replace(&site.backends[1].to_string(), &address.to_string());
    fs::write(site.config_path(), text).unwrap();
    let (proc, port) = site.serve();
    // Round robin: one of the two requests goes to the cutting backend.
    let failed = (0..2)
        .filter(|_| !site.get(port, false, "/").status.success())
        .count();
    assert_eq!(failed, 1, "curl reports the short body");
    let line = proc.wait_line("broke off");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["listener"], "web", "{line}");
    assert_eq!(value["backend"], address.to_string(), "{line}");
}

/// A mutual-auth CA missing at start is said in a CA's terms: the
/// listener fails closed (the server-certificate wording, "clients asking
/// for it get the first certificate", means nothing for a CA).
#[test]
fn a_missing_client_ca_at_start_is_said_to_fail_closed() {
    let site = Site::new(Duration::ZERO);
    let text = site
        .config_text(true)
        .replace("ca = \"clients\"", "ca = \"nope\"");
    fs::write(site.config_path(), text).unwrap();
    let proc = site.spawn_serve(&[]);
    let line = proc.wait_line("CertificateNotFound");
    assert!(line.contains("fails closed"), "{line}");
    assert!(!line.contains("clients asking for it"), "{line}");
}

/// curl's HTTP status for a request (body discarded), and its stderr.
fn status_of(args: &[&str]) -> (String, String) {
    let mut all = vec!["--write-out", "%{http_code}", "--output", "/dev/null"];
    all.extend_from_slice(args);
    let out = curl(&all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What operators try with curl: `--http1.0` (which offers ALPN `http/1.0`
/// alone) is served, and a header over `max_header_bytes` gets a 431 over
/// HTTP/2 as over HTTP/1.1. (The limit is lowered here: curl's HTTP/2
/// library, nghttp2, will not send a header block over 64 KiB at all, the
/// default limit, and reports the request failed without sending it.)
#[test]
fn curl_http10_and_an_oversized_header_over_http2_get_proper_answers() {
    need("curl");
    let site = Site::new(Duration::ZERO);
    fs::write(
        site.config_path(),
        format!(
            "{}\n[listener.limits]\nmax_header_bytes = 8192\n",
            site.config_text(false)
        ),
    )
    .unwrap();
    let (_proc, port) = site.serve();
    let root = site.path.join("root.pem");
    let url = format!("https://localhost:{port}/");
    let (status, stderr) = status_of(&["--http1.0", "--cacert", root.to_str().unwrap(), &url]);
    assert_eq!(status, "200", "{stderr}");

    let header_file = site.path.join("big-header.txt");
    fs::write(&header_file, format!("x-big: {}\n", "b".repeat(20_000))).unwrap();
    let header_arg = format!("@{}", header_file.display());
    for version in ["--http1.1", "--http2"] {
        let (status, stderr) = status_of(&[
            version,
            "--cacert",
            root.to_str().unwrap(),
            "--header",
            &header_arg,
            &url,
        ]);
        assert_eq!(status, "431", "{version}: {stderr}");
    }
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_and_exits_zero() {
    need("curl");
    let site = Site::new(Duration::from_millis(1500));
    let (mut proc, port, admin) = site.serve_with_admin();
    let url = format!("https://localhost:{port}/slow");
    let root = site.path.join("root.pem");
    let in_flight = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--cacert",
            root.to_str().unwrap(),
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The request is in flight once the backend holds it; then ask to stop.
    std::thread::sleep(Duration::from_millis(500));
    proc.signal("TERM");
    // While it drains, /readyz says it is stopping (not "starting").
    proc.wait_line("shutting down");
    let ready = curl(&[
        "--silent",
        "--write-out",
        " %{http_code}",
        &format!("http://{admin}/readyz"),
    ]);
    let ready = String::from_utf8_lossy(&ready.stdout).into_owned();
    assert!(
        ready.starts_with("stopping") && ready.ends_with(" 503"),
        "{ready}"
    );
    let out = in_flight.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("backend"));
    assert!(proc.wait_exit().success());
}

/// Text logs written to a pipe or a file (systemd without journald,
/// `docker logs`, `2>file`) carry no colour escape codes; `--workers 0`
/// is a usage error (exit 2), as `server.workers = 0` is a config error.
#[test]
fn text_logs_to_a_pipe_have_no_colour_codes_and_workers_0_is_refused() {
    let site = Site::new(Duration::ZERO);
    let config = site.config_path();
    // NO_COLOR set but empty turns nothing off (no-color.org), so this
    // fails without the terminal check whatever the caller's environment.
    let proc = spawn_with_env(
        &["serve", "--config", config.to_str().unwrap()],
        &[("NO_COLOR", std::ffi::OsStr::new(""))],
    );
    let line = proc.wait_line("serving");
    assert!(!line.contains('\u{1b}'), "escape codes in {line:?}");
    drop(proc);

    let zero = Command::new(bin())
        .args([
            "serve",
            "--workers",
            "0",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(stderr.contains("1..=4096"), "{stderr}");
}

/// An admin port someone else holds: serve says so and what to do.
#[test]
fn a_busy_admin_port_is_said_with_what_to_do() {
    let site = Site::new(Duration::ZERO);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap();
    let config = site.path.join("busy-admin.toml");
    // The first bind is [admin]'s.
    fs::write(
        &config,
        site.config_text(false).replacen(
            "bind = \"127.0.0.1:0\"",
            &format!("bind = \"{busy}\""),
            1,
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot bind the admin API on {busy}"))
            && stderr.contains("set another [admin] bind"),
        "{stderr}"
    );
}

/// serve stops (exit 78) when it cannot read admin.token_file; the check
/// that says whether serve would start says so too.
#[test]
fn check_config_reads_the_admin_token_file_as_serve_does() {
    let site = Site::new(Duration::ZERO);
    let config = site.path.join("token.toml");
    let check = || {
        Command::new(bin())
            .args(["check-config", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    fs::write(
        &config,
        // The first bind is [admin]'s.
        site.config_text(false).replacen(
            "bind = \"127.0.0.1:0\"\n",
            "bind = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n",
            1,
        ),
    )
    .unwrap();
    assert!(
        fs::read_to_string(&config).unwrap().contains("token_file"),
        "the replacement hit the [admin] block"
    );
    for (content, says) in [
        (None, "cannot read admin.token_file"),
        (Some("\n"), "is empty"),
    ] {
        if let Some(content) = content {
            fs::write(site.path.join("admin.token"), content).unwrap();
        }
        let out = check();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("admin.token"),
            "{stderr}"
        );
    }
    fs::write(site.path.join("admin.token"), "s3cret\n").unwrap();
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_exits_0_for_a_good_config_and_1_for_a_missing_certificate() {
    let site = Site::new(Duration::ZERO);
    let good = Command::new(bin())
        .args([
            "check-config",
            "--config",
            site.config_path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );

    fs::remove_dir_all(site.path.join("certs/server/www")).unwrap();
    let missing = Command::new(bin())
        .args([
            "check-config",
            "--config",
            site.config_path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("CertificateNotFound") && stderr.contains("certs/server/www"),
        "names the folder to fill: {stderr}"
    );

    // store.dir pointing nowhere is said as such, not only as a missing certificate.
    let elsewhere = site.path.join("elsewhere.toml");
    fs::write(
        &elsewhere,
        site.config_text(false)
            .replace("dir = \"certs\"", "dir = \"no-such-store\""),
    )
    .unwrap();
    let nowhere = Command::new(bin())
        .args(["check-config", "--config", elsewhere.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nowhere.stderr);
    assert!(
        stderr.contains("no-such-store does not exist") && stderr.contains("elsewhere.toml"),
        "{stderr}"
    );
    assert!(
        !site.path.join("no-such-store").exists(),
        "check-config writes nothing"
    );

    let bad_path = site.path.join("bad.toml");
    fs::write(&bad_path, "[store]\ndir = \"certs\"\nunknown_key = true\n").unwrap();
    let bad = Command::new(bin())
        .args(["check-config", "--config", bad_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("bad.toml:3"),
        "the error names file and line: {stderr}"
    );
}
