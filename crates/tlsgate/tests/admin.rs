//! Acceptance tests of the admin API (SPEC §6) against `tlsgate serve` run
//! as a real process on loopback: uploads of every key type served on the
//! next handshake, every validator error as its SPEC §4 code, replace-many
//! with the config rewrite, concurrent replacements, path-safe names, no
//! key material in responses or logs, the bearer token, `/metrics` and
//! `GET /v1/listeners`.
//!
//! The admin calls use a tiny HTTP/1.1 client over `TcpStream`; handshakes
//! use `openssl s_client`, traffic uses curl.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tlsgate_test_pki::{Ca, Issued, KeyKind, TestKey, TestPki, Validity};

const BIN: &str = env!("CARGO_BIN_EXE_tlsgate");

/// The bound on every wait: a process start, a child command, a poll.
const WAIT: Duration = Duration::from_secs(20);

const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------
// External tools and child processes
// ---------------------------------------------------------------------------

fn need(tool: &str) {
    let arg = if tool == "openssl" {
        "version"
    } else {
        "--version"
    };
    let found = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs `{tool}` on PATH: install it (apt-get install {tool})"
    );
}

fn need_tools() {
    need("openssl");
    need("curl");
}

fn read_all<R: Read + Send + 'static>(mut reader: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out);
        out
    })
}

/// Runs a command to completion, feeding it `input`; killed (by PID) and a
/// panic when it takes longer than `timeout`.
fn run(command: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let out = run(Command::new("openssl").args(args), input, WAIT);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------
// PEM, fingerprints, handshakes
// ---------------------------------------------------------------------------

/// The DER of every `label` PEM block in `text`.
fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after.find(&end).expect("PEM block without END");
        let body: String = after[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("PEM base64"),
        );
        rest = &after[stop + end.len()..];
    }
    out
}

/// Lowercase hex without colons.
fn norm(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// SHA-256 fingerprint of a DER certificate, computed by openssl.
fn fingerprint(der: &[u8]) -> String {
    let out = openssl(
        &[
            "x509",
            "-inform",
            "DER",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        Some(der),
    );
    let text = String::from_utf8(out).unwrap();
    let (_, hex) = text.trim().split_once('=').expect("Fingerprint=");
    norm(hex)
}

/// The leaf certificate (DER) the listener on `port` serves to a client
/// asking for `localhost`, or why the handshake failed.
fn served_leaf(port: u16) -> Result<Vec<u8>, String> {
    let out = run(
        Command::new("openssl").args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ]),
        None,
        WAIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    match pem_blocks(&stdout, "CERTIFICATE").into_iter().next() {
        Some(der) if out.status.success() => Ok(der),
        _ => Err(format!(
            "handshake failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn assert_serves(port: u16, leaf: &Issued, what: &str) {
    let served = served_leaf(port).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        served == leaf.cert_der(),
        "{what}: the listener on port {port} serves {} instead of {}",
        fingerprint(&served),
        fingerprint(leaf.cert_der())
    );
}

/// The SubjectPublicKeyInfo (DER) of a PEM private key file.
fn public_key_of_key_file(path: &Path) -> Vec<u8> {
    openssl(
        &[
            "pkey",
            "-in",
            path.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ],
        None,
    )
}

/// `key` as encrypted PKCS#8 (`openssl pkcs8 -topk8 -v2 aes-256-cbc`).
fn encrypted_pkcs8(dir: &Path, key: &TestKey, password: &str) -> String {
    let plain = dir.join(format!(
        "plain-{}.pem",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&plain, key.pkcs8_pem()).unwrap();
    let out = openssl(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            plain.to_str().unwrap(),
            "-passout",
            &format!("pass:{password}"),
        ],
        None,
    );
    fs::remove_file(&plain).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(concat!("BEGIN ENCRYPTED PRIVATE", " KEY")),
        "{text}"
    );
    text
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// Key material: what must never leave the server
// ---------------------------------------------------------------------------

/// Splits one DER element: (tag, content, rest).
fn der_read(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let first = input[1];
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        let len = input[2..2 + count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + count)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The secret part of a key: the EC private scalar, or RSA's private
/// exponent d.
fn secret_bytes(key: &TestKey) -> Vec<u8> {
    if let Some(sec1) = key.sec1_der() {
        let (_, seq, _) = der_read(&sec1);
        let (_, _version, rest) = der_read(seq);
        let (_, scalar, _) = der_read(rest);
        scalar.to_vec()
    } else if let Some(pkcs1) = key.pkcs1_der() {
        let (_, seq, _) = der_read(&pkcs1);
        let (_, _version, rest) = der_read(seq);
        let (_, _n, rest) = der_read(rest);
        let (_, _e, rest) = der_read(rest);
        let (_, d, _) = der_read(rest);
        d.to_vec()
    } else {
        let der = key.pkcs8_der();
        der[der.len() - 32..].to_vec()
    }
}

/// Base64 substrings (up to 40 characters) that encode only secret bytes,
/// in every encoding of the key the tests send (PKCS#8, PKCS#1, SEC1), plus
/// the hex of the secret's first 20 bytes.
fn key_chunks(key: &TestKey) -> Vec<String> {
    let secret = secret_bytes(key);
    let mut encodings = vec![key.pkcs8_der()];
    encodings.extend(key.pkcs1_der());
    encodings.extend(key.sec1_der());
    let mut chunks = Vec::new();
    for der in encodings {
        let offset = der
            .windows(secret.len())
            .position(|w| w == secret)
            .expect("the secret is in every encoding");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        // Characters that encode only bytes offset..offset+len.
        let start = (8 * offset).div_ceil(6);
        let end = 8 * (offset + secret.len()) / 6;
        chunks.push(b64[start..end.min(start + 40)].to_string());
    }
    chunks.push(
        secret[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    chunks
}

/// Asserts no text contains "PRIVATE KEY", any chunk of any of `keys`, or
/// any of `passwords`.
/// The text without line breaks, raw or JSON-escaped, so that PEM line
/// breaks cannot hide a chunk.
fn flatten(text: &str) -> String {
    text.replace("\\r", "")
        .replace("\\n", "")
        .replace(['\r', '\n'], "")
}

fn assert_no_secrets(what: &str, texts: &[String], keys: &[TestKey], passwords: &[&str]) {
    let mut needles: Vec<String> = keys.iter().flat_map(key_chunks).collect();
    needles.extend(passwords.iter().map(|p| (*p).to_string()));
    for text in texts {
        let flat = flatten(text);
        // PEM armour of a key. (An error message may name the block type,
        // "is encrypted (ENCRYPTED PRIVATE KEY)": a label, not key material.)
        assert!(
            !text.contains("PRIVATE KEY-----"),
            "{what} contains a PEM private key block: {text}"
        );
        for needle in &needles {
            assert!(
                !flat.contains(needle.as_str()),
                "{what} contains key material or a password ({needle}): {text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A tiny HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap().trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// One request on a fresh connection (`Connection: close`), the whole
/// response read back. The body is written from another thread so that a
/// server answering early (413) cannot deadlock the client.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let stream = TcpStream::connect_timeout(&address, WAIT)
        .unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    let mut raw = Vec::new();
    thread::scope(|scope| {
        scope.spawn(|| {
            let _ = (&stream).write_all(&request);
        });
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match (&stream).read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
                Err(e) if raw.is_empty() => panic!("{method} {path}: no response: {e}"),
                // A reset after the response (unread request body): keep what came.
                Err(_) => break,
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{method} {path}: no complete response: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Asserts an error reply: the status, the SPEC code, a message.
fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) -> Value {
    assert_eq!(
        reply.status, status,
        "{what}: expected {status} {code}, got {} {}",
        reply.status, reply.body
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{what}: {}", reply.body);
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {}",
        reply.body
    );
    body
}

// ---------------------------------------------------------------------------
// `tlsgate serve` as a child process
// ---------------------------------------------------------------------------

/// A running `tlsgate serve`, killed by PID when dropped.
struct Gate {
    child: Child,
    lines: Mutex<mpsc::Receiver<String>>,
    log: Arc<Mutex<Vec<String>>>,
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
    token: Option<String>,
    bodies: Mutex<Vec<String>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump<R: Read + Send + 'static>(
    reader: R,
    tx: mpsc::Sender<String>,
    log: Arc<Mutex<Vec<String>>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            eprintln!("  | {line}");
            log.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
}

impl Gate {
    /// Starts `serve` and waits for the admin API and `listeners` listeners.
    fn start(config: &Path, listeners: usize) -> Gate {
        Gate::start_with(config, listeners, "info", None)
    }

    fn start_with(config: &Path, listeners: usize, rust_log: &str, token: Option<&str>) -> Gate {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), tx.clone(), log.clone());
        pump(child.stderr.take().unwrap(), tx, log.clone());
        let mut gate = Gate {
            child,
            lines: Mutex::new(lines),
            log,
            admin: "127.0.0.1:0".parse().unwrap(),
            listeners: BTreeMap::new(),
            token: token.map(str::to_string),
            bodies: Mutex::new(Vec::new()),
        };
        let mut admin = None;
        let deadline = Instant::now() + WAIT;
        while admin.is_none() || gate.listeners.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match gate.lines.lock().unwrap().recv_timeout(left) {
                Ok(line) => line,
                Err(err) => panic!(
                    "serve did not come up ({err:?}); its output:\n{}",
                    gate.log_text()
                ),
            };
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let address = || -> SocketAddr {
                let mut address: SocketAddr = event["address"].as_str().unwrap().parse().unwrap();
                if address.ip().is_unspecified() {
                    address.set_ip([127, 0, 0, 1].into());
                }
                address
            };
            match event["message"].as_str() {
                Some("admin API listening") => admin = Some(address()),
                Some("serving") => {
                    let name = event["listener"].as_str().unwrap().to_string();
                    gate.listeners.insert(name, address());
                }
                _ => {}
            }
        }
        gate.admin = admin.unwrap();
        // The listeners are logged just before the server calls itself
        // ready; wait (bounded) until /readyz no longer says "starting".
        loop {
            let reply = http(gate.admin, "GET", "/readyz", &[], b"");
            if !reply.body.starts_with("starting") {
                break;
            }
            assert!(Instant::now() < deadline, "serve never finished starting");
            thread::sleep(Duration::from_millis(10));
        }
        gate
    }

    fn port(&self, listener: &str) -> u16 {
        self.listeners
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener} in {:?}", self.listeners))
            .port()
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Every response body so far plus the whole log.
    fn transcript(&self) -> Vec<String> {
        let mut texts = self.bodies.lock().unwrap().clone();
        texts.extend(self.log.lock().unwrap().iter().cloned());
        texts
    }

    /// A request with the gate's token (if any); the body is recorded.
    fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        self.raw(method, path, &headers, &bytes)
    }

    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let reply = http(self.admin, method, path, headers, body);
        self.bodies.lock().unwrap().push(reply.body.clone());
        reply
    }

    fn get_json(&self, path: &str) -> Value {
        let reply = self.api("GET", path, None);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }
}

/// Percent-encodes a certificate name for a URL path (everything but
/// unreserved characters, so `.` and `/` too).
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Sites: a temporary folder with a config, a store and a test PKI
// ---------------------------------------------------------------------------

/// A tiny HTTP/1.1 backend on a thread: "backend N" to every request
/// (headers only for HEAD).
fn backend(number: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
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
                        let head: Vec<u8> = seen.drain(..end + 4).collect();
                        let body = format!("backend {number}\n");
                        let mut response =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        if !head.starts_with(b"HEAD ") {
                            response.push_str(&body);
                        }
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

/// An address nothing listens on.
fn dead_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

struct Site {
    root: tempfile::TempDir,
    /// `root/site`: the config file's folder.
    dir: PathBuf,
    /// `root/site/certs`.
    store: PathBuf,
    pki: TestPki,
    ca: Ca,
}

impl Site {
    fn new() -> Site {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("site");
        let store = dir.join("certs");
        fs::create_dir_all(&store).unwrap();
        let pki = TestPki::now_real();
        let ca = pki.root("Admin API Test Root", KeyKind::EcdsaP256);
        fs::write(dir.join("root.pem"), ca.cert().cert_pem()).unwrap();
        Site {
            root,
            dir,
            store,
            pki,
            ca,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("tlsgate.toml")
    }

    fn write_config(&self, text: &str) {
        fs::write(self.config(), text).unwrap();
    }

    fn leaf(&self, kind: KeyKind) -> Issued {
        self.ca.server(&["localhost"], kind, Validity::Normal)
    }

    /// Leaf then the root.
    fn chain_pem(&self, leaf: &Issued) -> String {
        format!("{}{}", leaf.cert_pem(), self.ca.cert().cert_pem())
    }

    /// The upload body of a server certificate.
    fn upload(&self, name: &str, leaf: &Issued) -> Value {
        json!({
            "name": name,
            "kind": "server",
            "certificate": self.chain_pem(leaf),
            "private_key": leaf.key().pkcs8_pem(),
        })
    }

    /// Writes a server certificate straight into the store folder.
    fn put_server(&self, folder: &str, leaf: &Issued) {
        let path = self.store.join("server").join(folder);
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("cert.pem"), self.chain_pem(leaf)).unwrap();
        fs::write(path.join("key.pem"), leaf.key().pkcs8_pem()).unwrap();
    }

    fn put_ca(&self, folder: &str, ca: &Ca) {
        let path = self.store.join("ca").join(folder);
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("ca.pem"), ca.cert().cert_pem()).unwrap();
    }

    fn server_folder(&self, folder: &str) -> PathBuf {
        self.store.join("server").join(folder)
    }
}

/// A listener block with one backend.
fn https_listener(name: &str, certificates: &[&str], backend: SocketAddr) -> String {
    let list: Vec<String> = certificates.iter().map(|c| format!("{c:?}")).collect();
    format!(
        "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nprotocol = \"https\"\ncertificates = [{}]\n\n[[listener.backend]]\naddress = \"{backend}\"\n",
        list.join(", ")
    )
}

const HEAD: &str = "[store]\ndir = \"certs\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n";

#[cfg(unix)]
fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode,
        0o600,
        "{} is mode {mode:o}, not 0600 (R15a)",
        path.display()
    );
}

#[cfg(not(unix))]
fn assert_mode_0600(_: &Path) {}

// ---------------------------------------------------------------------------
// 1. Every key type: 201, then served on the next handshake
// ---------------------------------------------------------------------------

#[test]
fn every_key_type_uploads_and_is_served_on_the_next_handshake() {
    need_tools();
    let site = Site::new();
    site.write_config(&format!(
        "{HEAD}{}",
        https_listener("web", &["up"], backend(1))
    ));
    let gate = Gate::start(&site.config(), 1);
    let port = gate.port("web");

    // Missing at start: the listener fails closed and is not ready.
    let ready = gate.api("GET", "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        served_leaf(port).is_err(),
        "a listener without its certificate must refuse handshakes"
    );

    type Encode = fn(&TestKey) -> String;
    let cases: [(KeyKind, &str, &str, Encode); 6] = [
        (
            KeyKind::EcdsaP256,
            "ECDSA P-256",
            "SEC1 with EC PARAMETERS",
            |k| k.sec1_pem_with_params().unwrap(),
        ),
        (KeyKind::EcdsaP384, "ECDSA P-384", "PKCS#8", |k| {
            k.pkcs8_pem()
        }),
        (KeyKind::EcdsaP521, "ECDSA P-521", "SEC1", |k| {
            k.sec1_pem().unwrap()
        }),
        (KeyKind::Rsa2048, "RSA 2048", "PKCS#1", |k| {
            k.pkcs1_pem().unwrap()
        }),
        (KeyKind::Rsa3072, "RSA 3072", "PKCS#8", |k| k.pkcs8_pem()),
        (KeyKind::Rsa4096, "RSA 4096", "PKCS#1", |k| {
            k.pkcs1_pem().unwrap()
        }),
    ];
    let mut keys = Vec::new();
    for (i, (kind, algorithm, encoding, encode_key)) in cases.into_iter().enumerate() {
        let what = format!("{algorithm} ({encoding} key)");
        let leaf = site.leaf(kind);
        keys.push(leaf.key().clone());
        let mut body = json!({
            "certificate": site.chain_pem(&leaf),
            "private_key": encode_key(leaf.key()),
        });
        let reply = if i == 0 {
            body["name"] = json!("up");
            body["kind"] = json!("server");
            gate.api("POST", "/v1/certificates", Some(&body))
        } else {
            gate.api("PUT", "/v1/certificates/up", Some(&body))
        };
        let expected = if i == 0 { 201 } else { 200 };
        assert_eq!(reply.status, expected, "{what}: {}", reply.body);
        let answer = reply.json();
        assert_eq!(answer["key_algorithm"], algorithm, "{what}: {answer}");
        assert_eq!(answer["name"], "up");
        assert_eq!(answer["kind"], "server");
        if i == 0 {
            let ready = gate.api("GET", "/readyz", None);
            assert_eq!(ready.status, 200, "ready once uploaded: {}", ready.body);
        }

        // The very next handshake serves exactly this leaf.
        assert_serves(port, &leaf, &what);
        let expected_fp = fingerprint(leaf.cert_der());
        let answered = norm(answer["fingerprint"].as_str().unwrap());
        assert_eq!(answered, expected_fp, "{what}: the upload's fingerprint");
        let shown = gate.get_json("/v1/certificates/up");
        assert_eq!(
            norm(shown["fingerprint"].as_str().unwrap()),
            expected_fp,
            "{what}: GET"
        );
        assert_eq!(shown["listeners"], json!(["web"]), "{shown}");
        // The metadata SPEC §6 lists.
        for field in [
            "kind",
            "subject",
            "sans",
            "issuer",
            "not_before",
            "not_after",
            "days_left",
            "key_algorithm",
            "fingerprint",
            "listeners",
        ] {
            assert!(
                shown.get(field).is_some_and(|v| !v.is_null()),
                "GET lacks {field}: {shown}"
            );
        }
        assert_eq!(shown["sans"], json!(["localhost"]), "{shown}");
        assert_eq!(shown["ocsp_stapled"], false, "no ocsp.der: {shown}");
        let days = shown["days_left"].as_i64().unwrap();
        assert!((363..=365).contains(&days), "days_left {days}");
        assert_mode_0600(&site.server_folder("up").join("key.pem"));
    }
    assert_no_secrets("a response or log line", &gate.transcript(), &keys, &[]);
}

/// Replacing a chain sent with its intermediate by the leaf alone would
/// break every verifying client at the next handshake: refused, the chain
/// in service stays. A leaf whose issuer is a root (clients hold it) is
/// taken without it, as a first upload of a lone leaf is.
#[test]
fn a_replacement_that_drops_the_intermediate_in_service_is_refused() {
    need_tools();
    let site = Site::new();
    site.write_config(&format!(
        "{HEAD}{}",
        https_listener("web", &["chain", "rooted"], backend(1))
    ));
    let gate = Gate::start(&site.config(), 1);
    let port = gate.port("web");
    let intermediate = site
        .ca
        .intermediate("Admin Test Intermediate", KeyKind::EcdsaP256);
    let issued =
        |n: &str| intermediate.server(&["localhost", n], KeyKind::EcdsaP256, Validity::Normal);
    let body = |leaf: &Issued, with_intermediate: bool| {
        let mut certificate = leaf.cert_pem();
        if with_intermediate {
            certificate.push_str(&intermediate.cert().cert_pem());
        }
        json!({"certificate": certificate, "private_key": leaf.key().pkcs8_pem()})
    };
    let first = issued("first.example");
    let mut create = body(&first, true);
    create["name"] = json!("chain");
    let reply = gate.api("POST", "/v1/certificates", Some(&create));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_serves(port, &first, "the chain uploaded");

    let lone = issued("lone.example");
    let reply = gate.api("PUT", "/v1/certificates/chain", Some(&body(&lone, false)));
    let refusal = assert_error(&reply, 400, "CertificateChainNotFound", "the leaf alone");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.contains("Admin Test Intermediate") && message.contains("fullchain.pem"),
        "{message}"
    );
    assert_eq!(
        refusal["errors"][0]["code"], "CertificateChainNotFound",
        "{refusal}"
    );
    assert_serves(port, &first, "after the refused replacement");

    let reply = gate.api("PUT", "/v1/certificates/chain", Some(&body(&lone, true)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_serves(port, &lone, "the replacement with its intermediate");

    // Issued by the root: sent with it at first, replaced without it.
    let rooted = site.leaf(KeyKind::EcdsaP256);
    let mut create = site.upload("rooted", &rooted);
    create["name"] = json!("rooted");
    let reply = gate.api("POST", "/v1/certificates", Some(&create));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let next = site.leaf(KeyKind::EcdsaP256);
    let reply = gate.api(
        "PUT",
        "/v1/certificates/rooted",
        Some(&json!({"certificate": next.cert_pem(), "private_key": next.key().pkcs8_pem()})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

// ---------------------------------------------------------------------------
// 2. Every validator error reaches the client as its SPEC code
// ---------------------------------------------------------------------------

#[test]
fn every_validator_error_reaches_the_client_as_its_spec_code() {
    need_tools();
    let site = Site::new();
    site.write_config(&format!(
        "[store]\ndir = \"certs\"\nmax_server_certificates = 1\n\n[admin]\nbind = \"127.0.0.1:0\"\n{}",
        https_listener("web", &["www"], backend(1))
    ));
    let gate = Gate::start(&site.config(), 1);
    let port = gate.port("web");

    let good = site.leaf(KeyKind::EcdsaP256);
    let chain = site.chain_pem(&good);
    let key = good.key().pkcs8_pem();
    let password = "Corr3ct-Horse-tlsgate";
    let encrypted = encrypted_pkcs8(site.root.path(), good.key(), password);
    let other_key = TestKey::generate(KeyKind::EcdsaP256);
    let unrelated = site.pki.root("Unrelated Test Root", KeyKind::EcdsaP256);
    let ed25519 = site
        .ca
        .server(&["localhost"], KeyKind::Ed25519, Validity::Normal);
    let expired = site
        .ca
        .server(&["localhost"], KeyKind::EcdsaP256, Validity::Expired);
    let not_yet = site
        .ca
        .server(&["localhost"], KeyKind::EcdsaP256, Validity::NotYetValid);
    let dh = String::from_utf8(openssl(
        &[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "group:ffdhe2048",
        ],
        None,
    ))
    .unwrap();
    assert!(dh.contains("BEGIN DH PARAMETERS"), "{dh}");

    let server = |name: &str, certificate: String, private_key: Option<String>| {
        let mut body = json!({"name": name, "kind": "server", "certificate": certificate});
        if let Some(private_key) = private_key {
            body["private_key"] = json!(private_key);
        }
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a name with a space",
            server("has space", chain.clone(), Some(key.clone())),
            "InvalidParameter",
        ),
        (
            "an unknown kind",
            json!({"name": "x", "kind": "client", "certificate": chain, "private_key": key}),
            "InvalidParameter",
        ),
        (
            "a garbage certificate",
            server("x", "this is not a certificate".into(), Some(key.clone())),
            "InvalidCertificateFormat",
        ),
        (
            "a garbage key",
            server("x", chain.clone(), Some("this is not a key at all".into())),
            "InvalidPrivateKeyFormat",
        ),
        (
            "an encrypted key without a password",
            server("x", chain.clone(), Some(encrypted.clone())),
            "EncryptedPrivateKey",
        ),
        (
            "an encrypted key with a wrong password",
            {
                let mut body = server("x", chain.clone(), Some(encrypted.clone()));
                body["password"] = json!("wrong-password");
                body
            },
            "InvalidPassword",
        ),
        (
            "a server certificate without its key",
            server("x", chain.clone(), None),
            "MissingPrivateKey",
        ),
        (
            "a key of another certificate",
            server("x", chain.clone(), Some(other_key.pkcs8_pem())),
            "KeyCertificateMismatch",
        ),
        (
            "an unrelated certificate appended",
            server(
                "x",
                format!("{chain}{}", unrelated.cert().cert_pem()),
                Some(key.clone()),
            ),
            "InvalidCertificateChain",
        ),
        (
            "an Ed25519 certificate",
            server(
                "x",
                site.chain_pem(&ed25519),
                Some(ed25519.key().pkcs8_pem()),
            ),
            "UnsupportedKeyAlgorithm",
        ),
        (
            "an expired certificate",
            server(
                "x",
                site.chain_pem(&expired),
                Some(expired.key().pkcs8_pem()),
            ),
            "CertificateExpired",
        ),
        (
            "a not yet valid certificate",
            server(
                "x",
                site.chain_pem(&not_yet),
                Some(not_yet.key().pkcs8_pem()),
            ),
            "CertificateNotYetValid",
        ),
        (
            "a leaf uploaded as a CA",
            json!({"name": "x", "kind": "ca", "certificate": good.cert_pem()}),
            "NotACaCertificate",
        ),
        (
            "DH PARAMETERS in the certificate",
            server("x", format!("{chain}{dh}"), Some(key.clone())),
            "DhParametersNotSupported",
        ),
        (
            "a request without a name",
            json!({"kind": "server", "certificate": chain, "private_key": key}),
            "InvalidParameter",
        ),
        (
            "an unknown field",
            json!({"name": "x", "certificate": chain, "private_key": key, "colour": "blue"}),
            "InvalidParameter",
        ),
    ];
    let mut failures = Vec::new();
    for (what, body, code) in &cases {
        let reply = gate.api("POST", "/v1/certificates", Some(body));
        let got = serde_json::from_str::<Value>(&reply.body).unwrap_or(Value::Null);
        let ok = reply.status == 400
            && got["code"] == *code
            && got["message"].as_str().is_some_and(|m| !m.is_empty());
        if !ok {
            failures.push(format!(
                "{what}: expected 400 {code}, got {} {}",
                reply.status, reply.body
            ));
        }
    }
    // A replacement whose field has the wrong type is as malformed.
    let reply = gate.api(
        "PUT",
        "/v1/certificates/www",
        Some(&json!({"certificate": 5})),
    );
    let got = serde_json::from_str::<Value>(&reply.body).unwrap_or(Value::Null);
    if reply.status != 400 || got["code"] != "InvalidParameter" {
        failures.push(format!(
            "PUT with a number for the certificate: expected 400 InvalidParameter, got {} {}",
            reply.status, reply.body
        ));
    }
    // Not JSON at all.
    let reply = gate.raw("POST", "/v1/certificates", &[], b"{\"name\": ");
    assert_error(&reply, 400, "InvalidParameter", "a body that is not JSON");
    // None of the refused uploads left anything behind.
    assert!(!site.server_folder("x").exists());

    // Create, then create again: 409.
    let reply = gate.api("POST", "/v1/certificates", Some(&site.upload("www", &good)));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let second = site.leaf(KeyKind::EcdsaP256);
    let reply = gate.api(
        "POST",
        "/v1/certificates",
        Some(&site.upload("www", &second)),
    );
    assert_error(&reply, 409, "CertificateAlreadyExists", "POST twice");
    assert_serves(port, &good, "after a refused second POST");

    // Unknown names: 404 for GET, PUT and DELETE.
    let reply = gate.api("GET", "/v1/certificates/nope", None);
    assert_error(&reply, 404, "CertificateNotFound", "GET unknown");
    let replacement =
        json!({"certificate": site.chain_pem(&second), "private_key": second.key().pkcs8_pem()});
    let reply = gate.api("PUT", "/v1/certificates/nope", Some(&replacement));
    assert_error(&reply, 404, "CertificateNotFound", "PUT unknown");
    let reply = gate.api("DELETE", "/v1/certificates/nope", None);
    assert_error(&reply, 404, "CertificateNotFound", "DELETE unknown");
    // Paths and methods the API does not have get its error body too.
    let reply = gate.api("GET", "/v1/certificates/team/www", None);
    let body = assert_error(&reply, 404, "NotFound", "an unencoded slash");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("team%2Fwww")),
        "{body}"
    );
    let reply = gate.api("PATCH", "/v1/certificates/www", None);
    assert_error(&reply, 405, "MethodNotAllowed", "PATCH");
    // A name of the other kind is said as such, not as unknown.
    let reply = gate.api("PUT", "/v1/certificates/www?kind=ca", Some(&replacement));
    let body = assert_error(&reply, 404, "CertificateNotFound", "PUT, wrong kind");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("there is a server certificate of that name")),
        "{body}"
    );

    // In use: 409 naming the listener.
    let reply = gate.api("DELETE", "/v1/certificates/www", None);
    let body = assert_error(&reply, 409, "CertificateInUse", "DELETE in use");
    assert_eq!(body["listeners"], json!(["web"]), "{body}");
    assert_serves(port, &good, "after a refused DELETE");

    // A refused replacement keeps the previous version in service (R17).
    let mismatched =
        json!({"certificate": site.chain_pem(&second), "private_key": other_key.pkcs8_pem()});
    let reply = gate.api("PUT", "/v1/certificates/www", Some(&mismatched));
    assert_error(
        &reply,
        400,
        "KeyCertificateMismatch",
        "PUT with a wrong key",
    );
    assert_serves(port, &good, "after a refused PUT");

    // The store is full (max_server_certificates = 1): 507.
    let reply = gate.api(
        "POST",
        "/v1/certificates",
        Some(&site.upload("more", &second)),
    );
    assert_error(&reply, 507, "QuotaExceeded", "over the quota");

    // Over 1 MiB: 413, still {"code","message"}.
    let big =
        json!({"name": "big", "kind": "server", "certificate": "A".repeat(1024 * 1024 + 100)});
    let reply = gate.api("POST", "/v1/certificates", Some(&big));
    assert_eq!(reply.status, 413, "{}", reply.body);
    let body = reply.json();
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );

    assert_no_secrets(
        "a response or log line",
        &gate.transcript(),
        &[good.key().clone(), second.key().clone(), other_key],
        &[password],
    );
    // Reported last, so the checks above run whatever the codes do.
    assert!(
        failures.is_empty(),
        "uploads refused with the wrong status or code:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 3. Replace many: dry run, then all listeners, config rewritten, restart
// ---------------------------------------------------------------------------

const COMMENTS: [&str; 6] = [
    "# KEEP-HEADER-COMMENT",
    "# KEEP-STORE-COMMENT",
    "# KEEP-LISTENER-ONE-COMMENT",
    "# KEEP-ONE-CERTS-COMMENT",
    "# KEEP-TWO-CERTS-COMMENT",
    "# KEEP-THREE-COMMENT",
];

/// `certificates` of every listener in the config file, by name.
fn configured_certificates(path: &Path) -> BTreeMap<String, Vec<String>> {
    let doc: toml::Value = toml::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    doc["listener"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let certs = l["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            (l["name"].as_str().unwrap().to_string(), certs)
        })
        .collect()
}

#[test]
fn replace_many_repoints_every_listener_rewrites_the_config_and_survives_a_restart() {
    need_tools();
    let site = Site::new();
    let backend = backend(1);
    site.write_config(&format!(
        r#"# KEEP-HEADER-COMMENT: tlsgate admin acceptance test
[store]
dir = "certs" # KEEP-STORE-COMMENT

[admin]
bind = "127.0.0.1:0"

# KEEP-LISTENER-ONE-COMMENT
[[listener]]
name = "one"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["a"] # KEEP-ONE-CERTS-COMMENT

[[listener.backend]]
address = "{backend}"

[[listener]]
name = "two"
bind = "127.0.0.1:0"
certificates = [
  "a", # KEEP-TWO-CERTS-COMMENT
]

[[listener.backend]]
address = "{backend}"

[[listener]]
name = "three" # KEEP-THREE-COMMENT
bind = "127.0.0.1:0"
certificates = ["c"]

[[listener.backend]]
address = "{backend}"
"#
    ));
    let a = site.leaf(KeyKind::EcdsaP256);
    let b = site.leaf(KeyKind::EcdsaP384);
    let c = site.leaf(KeyKind::EcdsaP256);
    site.put_server("a", &a);
    site.put_server("c", &c);
    let original = fs::read(site.config()).unwrap();

    let gate = Gate::start(&site.config(), 3);
    for listener in ["one", "two"] {
        assert_serves(gate.port(listener), &a, listener);
    }
    assert_serves(gate.port("three"), &c, "three");
    let reply = gate.api("POST", "/v1/certificates", Some(&site.upload("b", &b)));
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Dry run: reports both listeners, changes nothing.
    let reply = gate.api(
        "POST",
        "/v1/certificates/a/replace",
        Some(&json!({"with": "b", "dry_run": true})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let mut listed: Vec<String> = serde_json::from_value(answer["listeners"].clone()).unwrap();
    listed.sort();
    assert_eq!(listed, ["one", "two"], "{answer}");
    assert_eq!(answer["dry_run"], true, "{answer}");
    assert_eq!(
        fs::read(site.config()).unwrap(),
        original,
        "a dry run leaves the config file byte-identical"
    );
    for listener in ["one", "two"] {
        assert_serves(
            gate.port(listener),
            &a,
            &format!("{listener} after the dry run"),
        );
    }
    let shown = gate.get_json("/v1/certificates/a");
    let mut users: Vec<String> = serde_json::from_value(shown["listeners"].clone()).unwrap();
    users.sort();
    assert_eq!(users, ["one", "two"], "{shown}");

    // To a certificate that does not exist: 404, nothing changes.
    let reply = gate.api(
        "POST",
        "/v1/certificates/a/replace",
        Some(&json!({"with": "nope"})),
    );
    assert_error(
        &reply,
        404,
        "CertificateNotFound",
        "replace with a missing one",
    );
    assert_eq!(fs::read(site.config()).unwrap(), original);

    // The file holds an edit not in force (a name the store lacks, so a
    // reload waits for it): a replace must not carry it in.
    let original_text = String::from_utf8(original.clone()).unwrap();
    let edited =
        original_text.replace(r#"certificates = ["c"]"#, r#"certificates = ["c", "typo"]"#);
    assert_ne!(edited, original_text);
    site.write_config(&edited);
    let reply = gate.api(
        "POST",
        "/v1/certificates/a/replace",
        Some(&json!({"with": "b"})),
    );
    let body = assert_error(
        &reply,
        404,
        "CertificateNotFound",
        "replace carrying a typo",
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"typo\"")),
        "{body}"
    );
    assert_eq!(fs::read_to_string(site.config()).unwrap(), edited);
    site.write_config(&original_text);

    // For real.
    let reply = gate.api(
        "POST",
        "/v1/certificates/a/replace",
        Some(&json!({"with": "b"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    let mut listed: Vec<String> = serde_json::from_value(answer["listeners"].clone()).unwrap();
    listed.sort();
    assert_eq!(listed, ["one", "two"], "{answer}");
    for listener in ["one", "two"] {
        assert_serves(
            gate.port(listener),
            &b,
            &format!("{listener} after replace"),
        );
    }
    assert_serves(gate.port("three"), &c, "three after replace");

    let text = fs::read_to_string(site.config()).unwrap();
    for comment in COMMENTS {
        assert!(text.contains(comment), "{comment} lost:\n{text}");
    }
    let certificates = configured_certificates(&site.config());
    assert_eq!(certificates["one"], ["b"], "{text}");
    assert_eq!(certificates["two"], ["b"], "{text}");
    assert_eq!(certificates["three"], ["c"], "{text}");
    let listeners = gate.get_json("/v1/listeners");
    for row in listeners["listeners"].as_array().unwrap() {
        let expected = if row["name"] == "three" { "c" } else { "b" };
        assert_eq!(row["certificates"], json!([expected]), "{row}");
    }
    // No longer referenced: it can go now (R18).
    let reply = gate.api("DELETE", "/v1/certificates/a", None);
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_no_secrets(
        "a response or log line",
        &gate.transcript(),
        &[b.key().clone()],
        &[],
    );

    // Restart with the same config: b is still served.
    drop(gate);
    let gate = Gate::start(&site.config(), 3);
    for listener in ["one", "two"] {
        assert_serves(
            gate.port(listener),
            &b,
            &format!("{listener} after a restart"),
        );
    }
    assert_serves(gate.port("three"), &c, "three after a restart");
}

// ---------------------------------------------------------------------------
// 4. Concurrent replacements of one name never serve a mix
// ---------------------------------------------------------------------------

#[test]
fn concurrent_replacements_of_one_name_serve_exactly_one_version() {
    need_tools();
    let site = Site::new();
    site.write_config(&format!(
        "{HEAD}{}",
        https_listener("web", &["race"], backend(1))
    ));
    let gate = Arc::new(Gate::start(&site.config(), 1));
    let port = gate.port("web");
    let first = site.leaf(KeyKind::EcdsaP256);
    let reply = gate.api(
        "POST",
        "/v1/certificates",
        Some(&site.upload("race", &first)),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);

    const ROUNDS: usize = 5;
    const WRITERS: usize = 2;
    let rounds: Vec<Vec<Issued>> = (0..ROUNDS)
        .map(|_| {
            (0..WRITERS)
                .map(|_| site.leaf(KeyKind::EcdsaP256))
                .collect()
        })
        .collect();
    let known: Arc<Vec<Vec<u8>>> = Arc::new(
        std::iter::once(&first)
            .chain(rounds.iter().flatten())
            .map(|leaf| leaf.cert_der().to_vec())
            .collect(),
    );

    // Handshakes all the while: every one succeeds with a known version.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        let known = known.clone();
        thread::spawn(move || {
            let mut problems = Vec::new();
            let mut count = 0;
            while !stop.load(Ordering::Relaxed) {
                match served_leaf(port) {
                    Ok(der) if known.contains(&der) => count += 1,
                    Ok(der) => problems.push(format!("unknown leaf {}", fingerprint(&der))),
                    Err(err) => problems.push(err),
                }
            }
            (count, problems)
        })
    };

    for (round, versions) in rounds.iter().enumerate() {
        let barrier = Arc::new(std::sync::Barrier::new(versions.len()));
        let writers: Vec<_> = versions
            .iter()
            .map(|leaf| {
                let gate = gate.clone();
                let barrier = barrier.clone();
                let body = json!({
                    "certificate": site.chain_pem(leaf),
                    "private_key": leaf.key().pkcs8_pem(),
                });
                thread::spawn(move || {
                    barrier.wait();
                    gate.api("PUT", "/v1/certificates/race", Some(&body))
                })
            })
            .collect();
        for writer in writers {
            let reply = writer.join().unwrap();
            assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        }
        let served = served_leaf(port).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let winner = versions
            .iter()
            .find(|leaf| leaf.cert_der() == served.as_slice())
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: serves {}, none of this round's uploads",
                    fingerprint(&served)
                )
            });
        let shown = gate.get_json("/v1/certificates/race");
        assert_eq!(
            norm(shown["fingerprint"].as_str().unwrap()),
            fingerprint(&served),
            "round {round}: GET and the handshake disagree"
        );
        // On disk: the chain and the key of that same version.
        let folder = site.server_folder("race");
        let on_disk = fs::read_to_string(folder.join("cert.pem")).unwrap();
        assert_eq!(
            pem_blocks(&on_disk, "CERTIFICATE")[0],
            served,
            "round {round}: cert.pem"
        );
        assert_eq!(
            public_key_of_key_file(&folder.join("key.pem")),
            winner.key().spki_der(),
            "round {round}: key.pem belongs to another version"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (count, problems) = hammer.join().unwrap();
    assert!(
        problems.is_empty(),
        "handshakes during the replacements:\n{}",
        problems.join("\n")
    );
    assert!(count > 0, "no handshake completed during the replacements");
    let keys: Vec<TestKey> = rounds.iter().flatten().map(|l| l.key().clone()).collect();
    assert_no_secrets("a response or log line", &gate.transcript(), &keys, &[]);
}

// ---------------------------------------------------------------------------
// 5. Names with `/` and `..` stay inside the store
// ---------------------------------------------------------------------------

/// Every path under `root`, relative.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn names_with_slashes_and_dots_are_stored_inside_the_store() {
    need_tools();
    let site = Site::new();
    site.write_config(&format!(
        "{HEAD}{}",
        https_listener("web", &["www"], backend(1))
    ));
    let www = site.leaf(KeyKind::EcdsaP256);
    site.put_server("www", &www);
    let before = tree(site.root.path());
    let gate = Gate::start(&site.config(), 1);

    let names = [
        ("../evil", "%2E.%2Fevil"),
        ("a/../../b", "a%2F..%2F..%2Fb"),
        ("..", "%2E."),
    ];
    let mut keys = Vec::new();
    for (name, folder) in names {
        let leaf = site.leaf(KeyKind::EcdsaP256);
        keys.push(leaf.key().clone());
        let reply = gate.api("POST", "/v1/certificates", Some(&site.upload(name, &leaf)));
        assert_eq!(reply.status, 201, "{name}: {}", reply.body);
        assert_eq!(reply.json()["name"], name);
        let path = format!("/v1/certificates/{}", encode(name));
        let shown = gate.get_json(&path);
        assert_eq!(shown["name"], name, "GET {path}: {shown}");
        assert_eq!(
            norm(shown["fingerprint"].as_str().unwrap()),
            fingerprint(leaf.cert_der()),
            "GET {path}"
        );
        let stored = site.server_folder(folder);
        assert!(
            stored.join("cert.pem").is_file() && stored.join("key.pem").is_file(),
            "{name} is not in {}: {:?}",
            stored.display(),
            tree(&site.store)
        );
        assert_mode_0600(&stored.join("key.pem"));
    }
    let shown = gate.get_json("/v1/certificates/%2E%2E%2Fevil");
    assert_eq!(shown["name"], "../evil");
    let listed = gate.get_json("/v1/certificates");
    let listed: BTreeSet<&str> = listed["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for (name, _) in names {
        assert!(listed.contains(name), "{name} not listed: {listed:?}");
    }

    // Nothing new anywhere but inside STORE/server/<encoded folder>.
    let store_server = site
        .store
        .strip_prefix(site.root.path())
        .unwrap()
        .join("server");
    let allowed: Vec<PathBuf> = names.iter().map(|(_, f)| store_server.join(f)).collect();
    // The store's own kind folders may appear (empty here).
    let kind_folders = [store_server.clone(), store_server.with_file_name("ca")];
    let after = tree(site.root.path());
    let stray: Vec<&PathBuf> = after
        .difference(&before)
        .filter(|p| !allowed.iter().any(|a| p.starts_with(a)) && !kind_folders.contains(p))
        .collect();
    assert!(
        stray.is_empty(),
        "created outside the certificates' folders: {stray:?}"
    );
    for escaped in [
        "site/certs/evil",
        "site/certs/b",
        "site/evil",
        "site/b",
        "evil",
        "b",
    ] {
        assert!(!site.root.path().join(escaped).exists(), "{escaped} exists");
    }

    // Deleting one removes exactly its folder.
    let reply = gate.api("DELETE", "/v1/certificates/%2E%2E%2Fevil", None);
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(!site.server_folder("%2E.%2Fevil").exists());
    assert!(
        site.server_folder("a%2F..%2F..%2Fb")
            .join("cert.pem")
            .is_file()
    );
    assert!(site.server_folder("%2E.").join("cert.pem").is_file());
    assert!(site.server_folder("www").join("cert.pem").is_file());
    let reply = gate.api("GET", "/v1/certificates/%2E%2E%2Fevil", None);
    assert_error(&reply, 404, "CertificateNotFound", "GET after DELETE");
    assert_no_secrets("a response or log line", &gate.transcript(), &keys, &[]);
}

// ---------------------------------------------------------------------------
// 6. No private key material in any response or log line
// ---------------------------------------------------------------------------

#[test]
fn no_response_or_log_line_contains_private_key_material() {
    need_tools();
    let site = Site::new();
    site.write_config(&format!(
        "{HEAD}{}",
        https_listener("web", &["rsa"], backend(1))
    ));
    // Verbose logging: keys must not appear at debug level either.
    let gate = Gate::start_with(&site.config(), 1, "debug", None);
    let password = "Pa55-phrase-tlsgate-test";
    let rsa = site.leaf(KeyKind::Rsa2048);
    let ec = site.leaf(KeyKind::EcdsaP384);
    let locked = site.leaf(KeyKind::EcdsaP256);
    let spare = site.leaf(KeyKind::EcdsaP256);
    let stranger = TestKey::generate(KeyKind::EcdsaP256);
    let encrypted = encrypted_pkcs8(site.root.path(), locked.key(), password);

    let expect = |status: u16, method: &str, path: &str, body: Value| {
        let reply = gate.api(method, path, Some(&body));
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
    };
    let server = |name: &str, leaf: &Issued, key: String| json!({"name": name, "kind": "server", "certificate": site.chain_pem(leaf), "private_key": key});
    // Accepted, in every key encoding, and an encrypted key with its password.
    expect(
        201,
        "POST",
        "/v1/certificates",
        server("rsa", &rsa, rsa.key().pkcs1_pem().unwrap()),
    );
    expect(
        201,
        "POST",
        "/v1/certificates",
        server("ec", &ec, ec.key().sec1_pem().unwrap()),
    );
    let mut body = server("locked", &locked, encrypted.clone());
    body["password"] = json!(password);
    expect(201, "POST", "/v1/certificates", body);
    // Refused, each with a key in the request.
    expect(
        400,
        "POST",
        "/v1/certificates",
        server("x", &spare, stranger.pkcs8_pem()),
    );
    expect(
        400,
        "POST",
        "/v1/certificates",
        server("x", &spare, encrypted.clone()),
    );
    let mut body = server("x", &locked, encrypted.clone());
    body["password"] = json!("not-the-password");
    expect(400, "POST", "/v1/certificates", body);
    expect(
        400,
        "POST",
        "/v1/certificates",
        json!({"name": "x", "kind": "ca", "certificate": site.ca.cert().cert_pem(), "private_key": spare.key().pkcs8_pem()}),
    );
    expect(
        409,
        "POST",
        "/v1/certificates",
        server("rsa", &spare, spare.key().pkcs8_pem()),
    );
    expect(
        400,
        "PUT",
        "/v1/certificates/rsa",
        json!({"certificate": site.chain_pem(&spare), "private_key": stranger.pkcs8_pem()}),
    );
    expect(
        200,
        "PUT",
        "/v1/certificates/ec",
        json!({"certificate": site.chain_pem(&spare), "private_key": spare.key().sec1_pem_with_params().unwrap()}),
    );
    // Everything there is to read.
    for path in [
        "/v1/certificates",
        "/v1/certificates/rsa",
        "/v1/certificates/ec",
        "/v1/certificates/locked",
        "/v1/listeners",
        "/metrics",
    ] {
        gate.get_json_or_text(path);
    }
    assert_serves(gate.port("web"), &rsa, "web");

    // The detector works: each key's chunks are in what the test sent.
    for (key, sent) in [
        (rsa.key(), rsa.key().pkcs1_pem().unwrap()),
        (ec.key(), ec.key().sec1_pem().unwrap()),
        (spare.key(), spare.key().pkcs8_pem()),
    ] {
        let sent = flatten(&serde_json::to_string(&sent).unwrap());
        assert!(
            key_chunks(key).iter().any(|c| sent.contains(c.as_str())),
            "the key chunks would not find a leaked key"
        );
    }
    let transcript = gate.transcript();
    assert!(
        transcript.len() > 15,
        "the transcript is too short: {transcript:?}"
    );
    assert_no_secrets(
        "a response or log line",
        &transcript,
        &[
            rsa.key().clone(),
            ec.key().clone(),
            locked.key().clone(),
            spare.key().clone(),
            stranger,
        ],
        &[password, "not-the-password"],
    );
}

impl Gate {
    fn get_json_or_text(&self, path: &str) -> Reply {
        let reply = self.api("GET", path, None);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply
    }
}

// ---------------------------------------------------------------------------
// 7. Bearer token off loopback
// ---------------------------------------------------------------------------

#[test]
fn off_loopback_the_api_needs_a_token_file_and_a_bearer_token() {
    need_tools();
    let site = Site::new();
    let www = site.leaf(KeyKind::EcdsaP256);
    site.put_server("www", &www);
    let listener = https_listener("web", &["www"], backend(1));

    // No token_file: refuses to start, exit 78, says why.
    site.write_config(&format!(
        "[store]\ndir = \"certs\"\n\n[admin]\nbind = \"0.0.0.0:0\"\n{listener}"
    ));
    let out = run(
        Command::new(BIN).args([
            "serve",
            "--config",
            site.config().to_str().unwrap(),
            "--log-format",
            "json",
        ]),
        None,
        WAIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("token_file"), "{stderr}");

    // With a token file: 401 without or with a wrong token.
    let token = "tlsgate-test-token-3f1c9a7e5b";
    let token_file = site.dir.join("admin.token");
    fs::write(&token_file, format!("{token}\n")).unwrap();
    site.write_config(&format!(
        "[store]\ndir = \"certs\"\n\n[admin]\nbind = \"0.0.0.0:0\"\ntoken_file = {:?}\n{listener}",
        token_file.to_str().unwrap()
    ));
    let gate = Gate::start_with(&site.config(), 1, "info", Some(token));

    let reply = gate.raw("GET", "/healthz", &[], b"");
    assert_eq!(reply.status, 200, "/healthz needs no token: {}", reply.body);
    let reply = gate.raw("GET", "/readyz", &[], b"");
    assert_eq!(reply.status, 200, "/readyz needs no token: {}", reply.body);

    let right = format!("Bearer {token}");
    for (what, headers) in [
        ("no Authorization", vec![]),
        (
            "a wrong token",
            vec![("Authorization", "Bearer not-the-token")],
        ),
        ("the token without Bearer", vec![("Authorization", token)]),
        ("Basic auth", vec![("Authorization", "Basic dXNlcjpwYXNz")]),
    ] {
        for path in ["/v1/certificates", "/v1/listeners", "/metrics"] {
            let reply = gate.raw("GET", path, &headers, b"");
            assert_error(
                &reply,
                401,
                "Unauthorized",
                &format!("GET {path} with {what}"),
            );
        }
        let body = site.upload("sneaky", &www).to_string();
        let reply = gate.raw("POST", "/v1/certificates", &headers, body.as_bytes());
        assert_error(&reply, 401, "Unauthorized", &format!("POST with {what}"));
        let reply = gate.raw("DELETE", "/v1/certificates/www", &headers, b"");
        assert_error(&reply, 401, "Unauthorized", &format!("DELETE with {what}"));
    }
    assert!(!site.server_folder("sneaky").exists());
    assert!(site.server_folder("www").exists());

    let reply = gate.raw("GET", "/v1/certificates", &[("Authorization", &right)], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["certificates"][0]["name"], "www");
    let reply = gate.raw(
        "GET",
        "/v1/certificates/sneaky",
        &[("Authorization", &right)],
        b"",
    );
    assert_error(&reply, 404, "CertificateNotFound", "the refused upload");
    let reply = gate.raw("GET", "/metrics", &[("Authorization", &right)], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let lower = format!("bearer {token}");
    let reply = gate.raw("GET", "/metrics", &[("Authorization", &lower)], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!gate.log_text().contains(token), "the token is logged");
    assert!(
        !gate
            .bodies
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.contains(token)),
        "the token is in a response"
    );
}

// ---------------------------------------------------------------------------
// 8. /metrics parses and has the SPEC's families
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Family {
    kind: Option<String>,
    help: Option<String>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Scrape {
    families: BTreeMap<String, Family>,
    samples: Vec<Sample>,
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `a="x",b="y\"z"` (without braces), undoing `\\`, `\"`, `\n`.
fn parse_labels(mut text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, after) = text
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {text:?}"))?;
        if !is_metric_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {text:?}")),
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        text = &after[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
    Ok(labels)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|e| format!("bad value {text:?}: {e}")),
    }
}

/// A small parser of the Prometheus / OpenMetrics text format: `# HELP`,
/// `# TYPE`, `# UNIT`, `# EOF` (last), samples `name{labels} value [ts]`.
fn parse_metrics(text: &str) -> Result<Scrape, String> {
    const TYPES: [&str; 8] = [
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        "unknown",
        "info",
        "stateset",
    ];
    let mut scrape = Scrape::default();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, line)) = lines.next() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line == "# EOF" {
            if lines.any(|(_, l)| !l.trim().is_empty()) {
                return Err(at("text after # EOF".into()));
            }
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let rest = parts.next().unwrap_or_default();
            match keyword {
                "HELP" | "TYPE" | "UNIT" if !is_metric_name(name) => {
                    return Err(at(format!("bad metric name {name:?}")));
                }
                "HELP" => {
                    scrape.families.entry(name.into()).or_default().help = Some(rest.into());
                }
                "TYPE" => {
                    if !TYPES.contains(&rest) {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    let family = scrape.families.entry(name.into()).or_default();
                    if family.kind.is_some() {
                        return Err(at(format!("{name} typed twice")));
                    }
                    family.kind = Some(rest.into());
                }
                _ => {}
            }
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or_else(|| at("no }".into()))?;
                let labels = parse_labels(&line[open + 1..close]).map_err(at)?;
                ((&line[..open], labels), line[close + 1..].trim())
            }
            None => {
                let (name, rest) = line.split_once(' ').ok_or_else(|| at("no value".into()))?;
                ((name, BTreeMap::new()), rest.trim())
            }
        };
        let (name, labels) = series;
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            parse_value(timestamp).map_err(at)?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        scrape.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    // Every sample belongs to a declared, typed family.
    for sample in &scrape.samples {
        let family = scrape
            .family_of(&sample.name)
            .ok_or_else(|| format!("sample {} has no # TYPE", sample.name))?;
        if family.kind.is_none() {
            return Err(format!("sample {} has no # TYPE", sample.name));
        }
    }
    Ok(scrape)
}

impl Scrape {
    /// The family a sample name belongs to (`x_total` of counter `x`, or
    /// `x_total` declared as is in the classic format).
    fn family_of(&self, sample: &str) -> Option<&Family> {
        if let Some(family) = self.families.get(sample) {
            return Some(family);
        }
        ["_total", "_created", "_bucket", "_sum", "_count", "_info"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find_map(|base| self.families.get(base))
    }

    fn samples(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples(name)
            .into_iter()
            .filter(|s| s.labels == wanted)
            .collect();
        assert!(found.len() <= 1, "{name}{wanted:?} twice");
        found.first().map(|s| s.value)
    }
}

#[test]
fn metrics_parse_and_have_every_family_with_its_type_and_labels() {
    need_tools();
    let site = Site::new();
    let live = backend(1);
    let dead = dead_backend();
    site.write_config(&format!(
        "{HEAD}\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"https\"\ncertificates = [\"www\"]\n\n[[listener.backend]]\naddress = \"{live}\"\n\n[[listener.backend]]\naddress = \"{dead}\"\n"
    ));
    let www = site.leaf(KeyKind::EcdsaP256);
    site.put_server("www", &www);
    let gate = Gate::start(&site.config(), 1);
    let port = gate.port("web");

    // A CA with a CRL, through the API.
    let corp = site.pki.root("Corp Client CA", KeyKind::EcdsaP256);
    let crl = corp.crl_pem(&[], 7);
    let reply = gate.api(
        "POST",
        "/v1/certificates",
        Some(&json!({"name": "corp-ca", "kind": "ca", "certificate": corp.cert().cert_pem(), "crl": crl})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["crls"].as_array().map(Vec::len), Some(1));

    // Traffic: three requests and one failed handshake.
    for _ in 0..3 {
        let out = run(
            Command::new("curl").args([
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                "--cacert",
                site.dir.join("root.pem").to_str().unwrap(),
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
                &format!("https://localhost:{port}/"),
            ]),
            None,
            WAIT,
        );
        assert!(
            out.status.success() && out.stdout.starts_with(b"backend 1"),
            "curl: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    {
        let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
        plain.set_read_timeout(Some(WAIT)).unwrap();
        plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = plain.read_to_end(&mut sink);
    }

    // Counters settle once the connections are done: poll, bounded.
    let deadline = Instant::now() + WAIT;
    let (text, scrape) = loop {
        let reply = gate.api("GET", "/metrics", None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let scrape = parse_metrics(&reply.body)
            .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", reply.body));
        let hs = |result| {
            scrape.value(
                "tlsgate_handshakes_total",
                &[("listener", "web"), ("result", result)],
            )
        };
        let ok = hs("success").unwrap_or(0.0) >= 3.0
            && hs("failure").unwrap_or(0.0) >= 1.0
            && scrape
                .value(
                    "tlsgate_requests_total",
                    &[("listener", "web"), ("status_class", "2xx")],
                )
                .unwrap_or(0.0)
                >= 3.0;
        if ok {
            break (reply.body, scrape);
        }
        assert!(
            Instant::now() < deadline,
            "the traffic never showed in /metrics:\n{}",
            reply.body
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF:\n{text}");
    let content_type = gate.api("GET", "/metrics", None);
    let content_type = content_type.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "content type {content_type:?}"
    );

    let expected: [(&str, &str, &[&str]); 6] = [
        (
            "tlsgate_certificate_expiry_timestamp_seconds",
            "gauge",
            &["kind", "name"],
        ),
        ("tlsgate_certificate_reloads_total", "counter", &["result"]),
        (
            "tlsgate_handshakes_total",
            "counter",
            &["listener", "result"],
        ),
        (
            "tlsgate_requests_total",
            "counter",
            &["listener", "status_class"],
        ),
        ("tlsgate_backend_up", "gauge", &["backend", "listener"]),
        (
            "tlsgate_crl_next_update_timestamp_seconds",
            "gauge",
            &["ca"],
        ),
    ];
    for (name, kind, labels) in expected {
        let samples = scrape.samples(name);
        assert!(!samples.is_empty(), "no {name} sample:\n{text}");
        let family = scrape.family_of(name).unwrap();
        assert_eq!(family.kind.as_deref(), Some(kind), "{name}:\n{text}");
        assert!(family.help.is_some(), "{name} has no # HELP");
        for sample in samples {
            let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            assert_eq!(keys, labels, "{name} labels: {sample:?}");
        }
    }

    let now = site.pki.now_unix();
    let expiry = "tlsgate_certificate_expiry_timestamp_seconds";
    assert_eq!(
        scrape.value(expiry, &[("name", "www"), ("kind", "server")]),
        Some((now + 365 * DAY) as f64),
        "{text}"
    );
    assert_eq!(
        scrape.value(expiry, &[("name", "corp-ca"), ("kind", "ca")]),
        Some((now + 365 * DAY) as f64),
        "{text}"
    );
    assert_eq!(
        scrape.value(
            "tlsgate_crl_next_update_timestamp_seconds",
            &[("ca", "corp-ca")]
        ),
        Some((now + 7 * DAY) as f64),
        "{text}"
    );
    let reloads = "tlsgate_certificate_reloads_total";
    assert!(
        scrape
            .value(reloads, &[("result", "success")])
            .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        scrape.value(reloads, &[("result", "failure")]).is_some(),
        "{text}"
    );
    assert_eq!(
        scrape.value(
            "tlsgate_backend_up",
            &[("listener", "web"), ("backend", &live.to_string())]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        scrape
            .value(
                "tlsgate_backend_up",
                &[("listener", "web"), ("backend", &dead.to_string())]
            )
            .is_some(),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// 9. GET /v1/listeners
// ---------------------------------------------------------------------------

#[test]
fn listeners_show_certificates_mutual_auth_policy_and_backend_health() {
    need_tools();
    let site = Site::new();
    let live = backend(1);
    let dead = dead_backend();
    site.write_config(&format!(
        r#"{HEAD}
[[listener]]
name = "web"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["www", "www-rsa"]
tls_policy = "tls13"
scheduler = "wrr"

[listener.mutual_auth]
ca = "clients"
mode = "optional"

[[listener.backend]]
address = "{live}"
weight = 70

[[listener.backend]]
address = "{dead}"
weight = 30

[listener.health_check]
path = "/health"
interval = "200ms"
timeout = "200ms"
healthy_threshold = 2
unhealthy_threshold = 2

[[listener]]
name = "plain"
bind = "127.0.0.1:0"
protocol = "http"

[[listener.backend]]
address = "{live}"

[[listener]]
name = "broken"
bind = "127.0.0.1:0"
protocol = "https"
certificates = ["absent"]

[[listener.backend]]
address = "{live}"
"#
    ));
    let www = site.leaf(KeyKind::EcdsaP256);
    site.put_server("www", &www);
    site.put_server("www-rsa", &site.leaf(KeyKind::Rsa2048));
    site.put_ca("clients", &site.ca);
    let gate = Gate::start(&site.config(), 3);

    // The active check takes the dead backend out: poll, bounded.
    let deadline = Instant::now() + WAIT;
    let doc = loop {
        let doc = gate.get_json("/v1/listeners");
        if doc["listeners"][0]["backends"][1]["healthy"] == false {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "the dead backend never turned unhealthy: {doc:#}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let rows = doc["listeners"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "plain", "broken"], "config order: {doc:#}");

    let web = &rows[0];
    assert_eq!(web["address"], gate.listeners["web"].to_string(), "{web:#}");
    assert_eq!(web["protocol"], "https");
    assert_eq!(web["tls_policy"], "tls13");
    assert_eq!(web["certificates"], json!(["www", "www-rsa"]));
    assert_eq!(web["mutual_auth"]["ca"], "clients", "{web:#}");
    assert_eq!(web["mutual_auth"]["mode"], "optional", "{web:#}");
    assert_eq!(web["tls_ready"], true, "{web:#}");
    assert_eq!(web["missing_certificates"], json!([]));
    let backends = web["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2, "{web:#}");
    assert_eq!(backends[0]["address"], live.to_string());
    assert_eq!(backends[0]["weight"], 70);
    assert_eq!(backends[0]["healthy"], true, "{web:#}");
    assert_eq!(backends[1]["address"], dead.to_string());
    assert_eq!(backends[1]["weight"], 30);
    assert_eq!(backends[1]["healthy"], false);

    let plain = &rows[1];
    assert_eq!(plain["protocol"], "http", "{plain:#}");
    assert_eq!(plain["tls_policy"], Value::Null);
    assert_eq!(plain["certificates"], json!([]));
    assert_eq!(plain["mutual_auth"], Value::Null);
    assert_eq!(
        plain["backends"][0]["weight"], 100,
        "default weight: {plain:#}"
    );
    assert_eq!(plain["backends"][0]["healthy"], true);

    let broken = &rows[2];
    assert_eq!(broken["tls_ready"], false, "{broken:#}");
    assert_eq!(broken["missing_certificates"], json!(["absent"]));
    assert_eq!(broken["mutual_auth"], Value::Null);

    // The certificates name their listeners; readiness names the broken one.
    assert_eq!(
        gate.get_json("/v1/certificates/www")["listeners"],
        json!(["web"])
    );
    assert_eq!(
        gate.get_json("/v1/certificates/clients?kind=ca")["listeners"],
        json!(["web"])
    );
    let reply = gate.api("DELETE", "/v1/certificates/clients?kind=ca", None);
    let body = assert_error(&reply, 409, "CertificateInUse", "DELETE a CA in use");
    assert_eq!(body["listeners"], json!(["web"]), "{body}");
    let ready = gate.api("GET", "/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("broken"), "{}", ready.body);
    assert_serves(gate.port("web"), &www, "web");
}

#[test]
fn the_metrics_parser_refuses_malformed_text() {
    let good = "# HELP x Things.\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"z\"} 3\n# EOF\n";
    let scrape = parse_metrics(good).unwrap();
    assert_eq!(
        scrape.value("x_total", &[("a", "1"), ("b", "q\"z")]),
        Some(3.0)
    );
    for bad in [
        "x_total 1\n",                                    // no # TYPE
        "# TYPE x counter\nx_total{a=\"1} 1\n",           // unterminated value
        "# TYPE x counter\nx_total{a=\"1\"}\n",           // no value
        "# TYPE x counter\nx_total one\n",                // not a number
        "# TYPE x counter\n# EOF\nx_total 1\n",           // after # EOF
        "# TYPE x countr\nx_total 1\n",                   // unknown type
        "# TYPE x counter\nx_total{a=\"1\",a=\"2\"} 1\n", // label twice
    ] {
        assert!(parse_metrics(bad).is_err(), "accepted {bad:?}");
    }
}
