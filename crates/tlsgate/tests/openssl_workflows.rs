//! Real `openssl` command-line workflows, the ones users copy from the web,
//! followed by `tlsgate cert check` / `tlsgate cert convert` on the files
//! they produce.
//!
//! Every test spells out the openssl commands, then asserts the verdict
//! SPEC §4 and §5 prescribe: the exit code and the error/warning *codes*
//! (never message wording, except that a message names something essential
//! such as `--password-file`).
//!
//! These tests need the `openssl` command (OpenSSL 3.x). Without it they
//! fail with a message saying to install it; they are never skipped.
//! The binary judges validity against the real clock, so certificates are
//! made around "now" (`-days 365`); past and future validity windows come
//! from `openssl ca -startdate/-enddate` (OpenSSL 3.0's `x509` has no
//! `-not_before`/`-not_after`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

const TLSGATE: &str = env!("CARGO_BIN_EXE_tlsgate");

const OPENSSL_MISSING: &str = "the `openssl` command was not found on PATH: install OpenSSL 3 \
     (e.g. `apt-get install openssl`, `dnf install openssl`, `brew install openssl@3`); \
     the openssl_workflows tests run the real openssl CLI and are not skipped without it";

/// The password of every encrypted file in these tests (`-passout pass:secret`).
const PASSWORD: &str = "secret";

/// Subjects of the three-level PKI; the leaf's has a comma, to exercise RFC 4514 escaping.
const ROOT_SUBJ: &str = "/C=US/O=Example CA/CN=Example Root CA";
const INT_SUBJ: &str = "/C=US/O=Example CA/CN=Example Intermediate CA";
const LEAF_SUBJ: &str = "/C=US/O=Example, Inc./CN=www.example.com";

/// What `openssl x509 -noout -subject -nameopt RFC2253` prints for [`LEAF_SUBJ`].
const LEAF_RFC4514: &str = r"CN=www.example.com,O=Example\, Inc.,C=US";

/// `-extfile ext.cnf -extensions ...` for `openssl x509 -req`, and the
/// configuration of a minimal `openssl ca` (database in `ca-db/`).
const OPENSSL_CNF: &str = "\
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:www.example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ca]
default_ca = minimal_ca

[minimal_ca]
dir = ./ca-db
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = policy_anything
unique_subject = no

[policy_anything]
countryName = optional
organizationName = optional
commonName = supplied
";

// ---------------------------------------------------------------------------
// Helper layer: a scratch directory, openssl, tlsgate.
// ---------------------------------------------------------------------------

/// Splits a command line on spaces; `'...'` quotes a word that has spaces.
fn words(command_line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in command_line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "unbalanced quote in {command_line:?}");
    words.extend(word);
    words
}

/// One test's scratch directory. openssl and tlsgate run inside it, so all
/// file names are relative to it.
struct Work {
    dir: TempDir,
}

impl Work {
    /// A fresh directory; fails the test at once if openssl is missing.
    fn new() -> Work {
        let work = Work {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        };
        let version = work.openssl("version");
        assert!(
            version.starts_with("OpenSSL 3"),
            "these tests expect OpenSSL 3.x (`openssl version` says {version:?}); {OPENSSL_MISSING}"
        );
        work.write("openssl.cnf", OPENSSL_CNF);
        work
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) {
        fs::write(self.path(name), content).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    fn read_text(&self, name: &str) -> String {
        String::from_utf8(self.read(name)).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"))
    }

    fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// `cat PARTS... > OUT`
    fn cat(&self, out: &str, parts: &[&str]) {
        let content: Vec<u8> = parts.iter().flat_map(|p| self.read(p)).collect();
        self.write(out, content);
    }

    /// `echo PASSWORD > NAME` (with the newline `echo` adds).
    fn password_file(&self, name: &str, password: &str) {
        self.write(name, format!("{password}\n"));
    }

    /// Runs `openssl COMMAND_LINE` (see [`words`]), asserts it succeeded,
    /// returns its stdout. stdin is closed, so openssl never waits at a prompt.
    #[track_caller]
    fn openssl(&self, command_line: &str) -> String {
        let args = words(command_line);
        let output = match Command::new("openssl")
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{OPENSSL_MISSING}"),
            Err(e) => panic!("cannot run `openssl {command_line}`: {e}"),
        };
        assert!(
            output.status.success(),
            "`openssl {command_line}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn tlsgate(&self, args: &[String]) -> Output {
        Command::new(TLSGATE)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {TLSGATE}: {e}"))
    }

    /// `tlsgate cert check --json ARGS`, stdout parsed as JSON.
    fn check(&self, args: &str) -> Verdict {
        let full = words(&format!("cert check --json {args}"));
        let output = self.tlsgate(&full);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let command = format!("tlsgate {}", full.join(" "));
        let json = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("`{command}` printed invalid JSON ({e}):\n{stdout}"))
        };
        Verdict {
            command,
            exit: output.status.code().unwrap_or(-1),
            json,
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `tlsgate cert convert ARGS`: (exit code, stderr).
    fn convert(&self, args: &str) -> (i32, String) {
        let output = self.tlsgate(&words(&format!("cert convert {args}")));
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    // --- the openssl recipes used again and again --------------------------

    /// `openssl genrsa -out KEY BITS` (OpenSSL 3 writes unencrypted PKCS#8).
    fn genrsa(&self, key: &str, bits: u32) {
        self.openssl(&format!("genrsa -out {key} {bits}"));
    }

    /// `openssl ecparam -genkey -name CURVE -out KEY`
    fn ecparam_genkey(&self, key: &str, curve: &str) {
        self.openssl(&format!("ecparam -genkey -name {curve} -out {key}"));
    }

    /// `openssl req -x509 -new -key KEY -subj SUBJ -days 365 -out CERT EXTRA`
    fn self_signed(&self, key: &str, subj: &str, cert: &str, extra: &str) {
        self.openssl(&format!(
            "req -x509 -new -key {key} -subj '{subj}' -days 365 -out {cert} {extra}"
        ));
    }

    /// A self-signed root CA. CA:TRUE is given explicitly so the result does
    /// not depend on the `v3_ca` section of the system's openssl.cnf.
    fn root_ca(&self, key: &str, subj: &str, cert: &str, extra: &str) {
        self.self_signed(
            key,
            subj,
            cert,
            &format!(
                "-addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign {extra}"
            ),
        );
    }

    /// `openssl req -new -key KEY -subj SUBJ -out CSR`
    fn csr(&self, key: &str, subj: &str, csr: &str) {
        self.openssl(&format!("req -new -key {key} -subj '{subj}' -out {csr}"));
    }

    /// `openssl x509 -req -in CSR -CA CA -CAkey CA_KEY -CAcreateserial -out CERT EXTRA`
    /// (EXTRA must give `-days`).
    fn sign(&self, csr: &str, ca: &str, ca_key: &str, cert: &str, extra: &str) {
        self.openssl(&format!(
            "x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -out {cert} {extra}"
        ));
    }

    /// `openssl ca -startdate START -enddate END`: the way OpenSSL 3.0 puts
    /// a certificate's validity in the past or the future (a minimal CA
    /// database in `ca-db/`).
    fn openssl_ca(&self, ca: &str, ca_key: &str, csr: &str, cert: &str, dates: &str, extra: &str) {
        if !self.exists("ca-db") {
            fs::create_dir(self.path("ca-db")).unwrap();
            self.write("ca-db/index.txt", "");
            self.write("ca-db/serial", "1000\n");
        }
        self.openssl(&format!(
            "ca -config openssl.cnf -batch -notext -cert {ca} -keyfile {ca_key} \
             -in {csr} -out {cert} {dates} {extra}"
        ));
    }

    /// The three-level PKI of the usual "make your own CA" guides:
    /// `root.pem`/`root.key` (RSA 2048, self-signed), `int.pem`/`int.key`
    /// (ECDSA P-256, signed by the root), `leaf.pem`/`leaf.key`/`leaf.csr`
    /// (RSA 2048 server cert with a SAN, signed by the intermediate) and
    /// `fullchain.pem` = leaf + intermediate.
    fn three_level_pki(&self) {
        self.genrsa("root.key", 2048);
        self.root_ca("root.key", ROOT_SUBJ, "root.pem", "");
        self.ecparam_genkey("int.key", "prime256v1");
        self.csr("int.key", INT_SUBJ, "int.csr");
        self.sign(
            "int.csr",
            "root.pem",
            "root.key",
            "int.pem",
            "-days 365 -extfile openssl.cnf -extensions ca_ext",
        );
        self.genrsa("leaf.key", 2048);
        self.csr("leaf.key", LEAF_SUBJ, "leaf.csr");
        self.sign(
            "leaf.csr",
            "int.pem",
            "int.key",
            "leaf.pem",
            "-days 365 -extfile openssl.cnf -extensions server_ext",
        );
        self.cat("fullchain.pem", &["leaf.pem", "int.pem"]);
    }

    /// `openssl x509 -in CERT -noout -subject -nameopt RFC2253` (or
    /// `-issuer`) without the `subject=` prefix.
    fn rfc2253(&self, cert: &str, field: &str) -> String {
        let out = self.openssl(&format!("x509 -in {cert} -noout -{field} -nameopt RFC2253"));
        out.trim()
            .strip_prefix(&format!("{field}="))
            .unwrap_or_else(|| panic!("unexpected openssl output {out:?}"))
            .to_owned()
    }

    /// `openssl x509 -noout -fingerprint -sha256`, lowercased, without colons.
    fn sha256_fingerprint(&self, cert: &str) -> String {
        let out = self.openssl(&format!("x509 -in {cert} -noout -fingerprint -sha256"));
        let (_, hex) = out
            .trim()
            .split_once('=')
            .unwrap_or_else(|| panic!("unexpected openssl output {out:?}"));
        hex.replace(':', "").to_lowercase()
    }

    /// Splits a PEM file into `PREFIX-1.pem`, `PREFIX-2.pem`, … (one block
    /// each) and returns their names.
    fn split_pem(&self, file: &str, prefix: &str) -> Vec<String> {
        pem_blocks(&self.read_text(file))
            .into_iter()
            .enumerate()
            .map(|(i, block)| {
                let name = format!("{prefix}-{}.pem", i + 1);
                self.write(&name, block);
                name
            })
            .collect()
    }
}

/// The PEM blocks of `text`, each from its BEGIN line to its END line, plus `\n`.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// Re-wraps the base64 of every PEM block at `width` characters with `eol`
/// line endings (what Windows tools and some CAs' web pages produce).
fn rewrap_pem(text: &str, width: usize, eol: &str) -> String {
    let mut out = String::new();
    let mut base64 = String::new();
    for line in text.lines() {
        if line.starts_with("-----END ") {
            for chunk in base64.as_bytes().chunks(width) {
                out.push_str(std::str::from_utf8(chunk).unwrap());
                out.push_str(eol);
            }
            base64.clear();
        }
        if line.starts_with("-----") {
            out.push_str(line);
            out.push_str(eol);
        } else {
            base64.push_str(line.trim());
        }
    }
    out
}

/// Asserts `value` looks like `2026-11-22T06:50:04Z` (RFC 3339, UTC, whole seconds).
#[track_caller]
fn assert_rfc3339(value: &str) {
    let shape: String = value
        .chars()
        .map(|c| if c.is_ascii_digit() { 'D' } else { c })
        .collect();
    assert_eq!(shape, "DDDD-DD-DDTDD:DD:DDZ", "not RFC 3339: {value:?}");
}

/// The outcome of `tlsgate cert check --json`.
struct Verdict {
    command: String,
    exit: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {}\nstdout:\n{}\nstderr:\n{}",
            self.command, self.exit, self.stdout, self.stderr
        )
    }
}

impl Verdict {
    fn codes(&self, list: &str) -> Vec<String> {
        self.json[list]
            .as_array()
            .unwrap_or_else(|| panic!("no `{list}` array in the JSON\n{self}"))
            .iter()
            .map(|item| {
                item["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an item of `{list}` has no code\n{self}"))
                    .to_owned()
            })
            .collect()
    }

    fn errors(&self) -> Vec<String> {
        self.codes("errors")
    }

    fn warnings(&self) -> Vec<String> {
        self.codes("warnings")
    }

    /// The message of the first finding with `code` in `list`.
    fn message(&self, list: &str, code: &str) -> String {
        self.json[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|item| item["code"] == code)
            .and_then(|item| item["message"].as_str())
            .unwrap_or_else(|| panic!("no {code} in `{list}`\n{self}"))
            .to_owned()
    }

    /// A string field of `summary`.
    fn summary(&self, field: &str) -> &str {
        self.json["summary"][field]
            .as_str()
            .unwrap_or_else(|| panic!("no string summary.{field}\n{self}"))
    }

    /// Exit 0, `"ok": true`, no errors (warnings allowed).
    #[track_caller]
    fn assert_accepted(&self) -> &Self {
        assert_eq!(self.exit, 0, "expected exit 0 (accepted)\n{self}");
        assert_eq!(self.json["ok"], true, "expected \"ok\": true\n{self}");
        assert!(self.errors().is_empty(), "expected no errors\n{self}");
        self
    }

    /// Exit 1, `"ok": false`, and `code` among the errors.
    #[track_caller]
    fn assert_refused(&self, code: &str) -> &Self {
        assert!(
            self.errors().iter().any(|c| c == code),
            "expected error {code}\n{self}"
        );
        assert_eq!(self.exit, 1, "expected exit 1 (refused)\n{self}");
        assert_eq!(self.json["ok"], false, "expected \"ok\": false\n{self}");
        self
    }

    #[track_caller]
    fn assert_warning(&self, code: &str) -> &Self {
        assert!(
            self.warnings().iter().any(|c| c == code),
            "expected warning {code}\n{self}"
        );
        self
    }

    #[track_caller]
    fn assert_no_finding(&self, code: &str) -> &Self {
        assert!(
            !self
                .errors()
                .iter()
                .chain(&self.warnings())
                .any(|c| c == code),
            "expected no {code} error or warning\n{self}"
        );
        self
    }

    #[track_caller]
    fn assert_summary(&self, field: &str, expected: &str) -> &Self {
        assert_eq!(self.summary(field), expected, "summary.{field}\n{self}");
        self
    }

    #[track_caller]
    fn assert_chain_length(&self, expected: u64) -> &Self {
        assert_eq!(
            self.json["summary"]["chain_length"], expected,
            "summary.chain_length\n{self}"
        );
        self
    }
}

#[test]
fn helper_words_splits_like_a_shell() {
    assert_eq!(
        words("req -subj '/O=Example, Inc./CN=x' -out c.pem ''"),
        ["req", "-subj", "/O=Example, Inc./CN=x", "-out", "c.pem", ""]
    );
}

// ---------------------------------------------------------------------------
// Encrypted private keys (R23).
// ---------------------------------------------------------------------------

/// `openssl genrsa -des3` on OpenSSL 3 writes encrypted PKCS#8, not the
/// traditional `Proc-Type` PEM the old guides show.
#[test]
fn genrsa_des3_key_needs_its_password_file() {
    let w = Work::new();
    w.openssl("genrsa -des3 -passout pass:secret -out key.pem 2048");
    let key = w.read_text("key.pem");
    assert!(
        key.starts_with(concat!("-----BEGIN ENCRYPTED PRIVATE", " KEY-----")),
        "OpenSSL 3 genrsa -des3 should write PKCS#8 ENCRYPTED PRIVATE KEY:\n{key}"
    );
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "-passin pass:secret");

    let no_password = w.check("--cert cert.pem --key key.pem");
    no_password.assert_refused("EncryptedPrivateKey");
    let message = no_password.message("errors", "EncryptedPrivateKey");
    assert!(
        message.contains("--password-file"),
        "the message should say how to give the password: {message}"
    );

    w.password_file("pw", PASSWORD);
    w.check("--cert cert.pem --key key.pem --password-file pw")
        .assert_accepted()
        .assert_summary("key_algorithm", "RSA 2048")
        .assert_no_finding("MissingPrivateKey");

    w.password_file("wrong", "not-the-password");
    w.check("--cert cert.pem --key key.pem --password-file wrong")
        .assert_refused("InvalidPassword");
}

/// `openssl rsa -traditional -des3` and `openssl ec -aes256` write the legacy
/// `Proc-Type: 4,ENCRYPTED` PEM of old nginx/Apache guides.
#[test]
fn legacy_proc_type_encrypted_rsa_and_ec_keys_work_with_password() {
    let w = Work::new();
    w.password_file("pw", PASSWORD);
    w.password_file("wrong", "not-the-password");

    w.genrsa("rsa.pem", 2048);
    w.self_signed("rsa.pem", LEAF_SUBJ, "rsa-cert.pem", "");
    w.openssl("rsa -in rsa.pem -traditional -des3 -passout pass:secret -out rsa-enc.pem");
    let text = w.read_text("rsa-enc.pem");
    assert!(
        text.starts_with(concat!("-----BEGIN RSA PRIVATE", " KEY-----")),
        "{text}"
    );
    assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
    assert!(text.contains("DEK-Info: DES-EDE3-CBC,"), "{text}");

    w.check("--cert rsa-cert.pem --key rsa-enc.pem")
        .assert_refused("EncryptedPrivateKey");
    w.check("--cert rsa-cert.pem --key rsa-enc.pem --password-file pw")
        .assert_accepted()
        .assert_summary("key_algorithm", "RSA 2048");
    w.check("--cert rsa-cert.pem --key rsa-enc.pem --password-file wrong")
        .assert_refused("InvalidPassword");

    w.ecparam_genkey("ec.pem", "prime256v1");
    w.self_signed("ec.pem", LEAF_SUBJ, "ec-cert.pem", "");
    w.openssl("ec -in ec.pem -aes256 -passout pass:secret -out ec-enc.pem");
    let text = w.read_text("ec-enc.pem");
    assert!(
        text.starts_with(concat!("-----BEGIN EC PRIVATE", " KEY-----")),
        "{text}"
    );
    assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
    assert!(text.contains("DEK-Info: AES-256-CBC,"), "{text}");

    w.check("--cert ec-cert.pem --key ec-enc.pem")
        .assert_refused("EncryptedPrivateKey");
    w.check("--cert ec-cert.pem --key ec-enc.pem --password-file pw")
        .assert_accepted()
        .assert_summary("key_algorithm", "ECDSA P-256");
    w.check("--cert ec-cert.pem --key ec-enc.pem --password-file wrong")
        .assert_refused("InvalidPassword");
}

/// `openssl pkcs8 -topk8 -in KEY -passout pass:secret SCHEME -out OUT`
fn topk8(w: &Work, key: &str, out: &str, scheme: &str) {
    w.openssl(&format!(
        "pkcs8 -topk8 -in {key} -passout pass:secret {scheme} -out {out}"
    ));
    let text = w.read_text(out);
    assert!(
        text.starts_with(concat!("-----BEGIN ENCRYPTED PRIVATE", " KEY-----")),
        "{text}"
    );
}

/// `openssl pkcs8 -topk8`: encrypted PKCS#8 (PBES2) as Tomcat/Java guides
/// write it, with 3DES or AES and either PRF.
#[test]
fn pkcs8_topk8_pbes2_encrypted_keys_work_with_password() {
    let w = Work::new();
    w.password_file("pw", PASSWORD);
    w.genrsa("key.pem", 2048);
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    for (out, scheme) in [
        ("v2-des3.pem", "-v2 des3"),
        ("v2-aes-sha1.pem", "-v2 aes-256-cbc -v2prf hmacWithSHA1"),
    ] {
        topk8(&w, "key.pem", out, scheme);
        w.check(&format!("--cert cert.pem --key {out}"))
            .assert_refused("EncryptedPrivateKey");
        w.check(&format!("--cert cert.pem --key {out} --password-file pw"))
            .assert_accepted()
            .assert_summary("key_algorithm", "RSA 2048");
    }
}

/// `openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES`: encrypted PKCS#8 with the
/// PKCS#12 PBE scheme (pbeWithSHAAnd3-KeyTripleDES-CBC) that pre-1.1 tools
/// and Java keystore exports wrote. R23: encrypted PKCS#8 is accepted with
/// its password.
#[test]
fn pkcs8_topk8_v1_pbe_sha1_3des_key_works_with_password() {
    let w = Work::new();
    w.password_file("pw", PASSWORD);
    w.genrsa("key.pem", 2048);
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    topk8(&w, "key.pem", "v1.pem", "-v1 PBE-SHA1-3DES");
    w.check("--cert cert.pem --key v1.pem")
        .assert_refused("EncryptedPrivateKey");
    w.check("--cert cert.pem --key v1.pem --password-file pw")
        .assert_accepted()
        .assert_summary("key_algorithm", "RSA 2048");
}

// ---------------------------------------------------------------------------
// Key algorithms (R24).
// ---------------------------------------------------------------------------

/// `openssl ecparam -genkey` writes an `EC PARAMETERS` block before the key.
#[test]
fn ecparam_genkey_keys_on_nist_curves_are_accepted() {
    let w = Work::new();
    for (curve, expected) in [
        ("prime256v1", "ECDSA P-256"),
        ("secp384r1", "ECDSA P-384"),
        ("secp521r1", "ECDSA P-521"),
    ] {
        let (key, cert) = (format!("{curve}.key"), format!("{curve}.pem"));
        w.ecparam_genkey(&key, curve);
        let text = w.read_text(&key);
        assert!(
            text.starts_with("-----BEGIN EC PARAMETERS-----")
                && text.contains(concat!("-----BEGIN EC PRIVATE", " KEY-----")),
            "ecparam -genkey should write EC PARAMETERS, then EC PRIVATE KEY:\n{text}"
        );
        w.self_signed(&key, LEAF_SUBJ, &cert, "");
        w.check(&format!("--cert {cert} --key {key}"))
            .assert_accepted()
            .assert_summary("key_algorithm", expected);
    }
}

#[test]
fn ecparam_genkey_secp256k1_is_unsupported() {
    let w = Work::new();
    w.ecparam_genkey("key.pem", "secp256k1");
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    w.check("--cert cert.pem --key key.pem")
        .assert_refused("UnsupportedKeyAlgorithm")
        .assert_summary("key_algorithm", "EC secp256k1");
}

/// `openssl ecparam -param_enc explicit`: P-256 spelled out as explicit
/// parameters is an explicit-curve key (R24).
#[test]
fn ecparam_explicit_curve_key_is_unsupported() {
    let w = Work::new();
    w.openssl("ecparam -genkey -name prime256v1 -param_enc explicit -out key.pem");
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    w.check("--cert cert.pem --key key.pem")
        .assert_refused("UnsupportedKeyAlgorithm");
}

/// OpenSSL 3.0 makes this without any security-level change: signing is not
/// subject to SECLEVEL (only TLS is).
#[test]
fn req_x509_newkey_rsa_1024_is_a_weak_key() {
    let w = Work::new();
    w.openssl(&format!(
        "req -x509 -newkey rsa:1024 -nodes -keyout key.pem -subj '{LEAF_SUBJ}' \
         -days 365 -out cert.pem"
    ));
    w.check("--cert cert.pem --key key.pem")
        .assert_refused("WeakKey")
        .assert_summary("key_algorithm", "RSA 1024");
}

#[test]
fn genpkey_ed25519_is_unsupported() {
    let w = Work::new();
    w.openssl("genpkey -algorithm ed25519 -out key.pem");
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    w.check("--cert cert.pem --key key.pem")
        .assert_refused("UnsupportedKeyAlgorithm")
        .assert_summary("key_algorithm", "Ed25519");
}

#[test]
fn genpkey_dsa_is_unsupported() {
    let w = Work::new();
    w.openssl("genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out dsap.pem");
    w.openssl("genpkey -paramfile dsap.pem -out key.pem");
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    w.check("--cert cert.pem --key key.pem")
        .assert_refused("UnsupportedKeyAlgorithm")
        .assert_summary("key_algorithm", "DSA");
}

/// An intermediate with a 1024-bit key: the key rules apply to every
/// certificate in the chain (R24).
#[test]
fn rsa_1024_intermediate_in_the_chain_is_a_weak_key() {
    let w = Work::new();
    w.three_level_pki();
    w.genrsa("weak-int.key", 1024);
    w.csr("weak-int.key", INT_SUBJ, "weak-int.csr");
    let ca_ext = "-days 365 -extfile openssl.cnf -extensions ca_ext";
    w.sign(
        "weak-int.csr",
        "root.pem",
        "root.key",
        "weak-int.pem",
        ca_ext,
    );
    let server_ext = "-days 365 -extfile openssl.cnf -extensions server_ext";
    w.sign(
        "leaf.csr",
        "weak-int.pem",
        "weak-int.key",
        "leaf2.pem",
        server_ext,
    );
    w.cat("chain.pem", &["leaf2.pem", "weak-int.pem"]);
    w.check("--cert chain.pem --key leaf.key")
        .assert_refused("WeakKey")
        .assert_summary("key_algorithm", "RSA 2048");
}

/// A 1024-bit self-signed root given as the mTLS CA: the self-signed
/// exemption covers the signature algorithm only, not the key size.
#[test]
fn ca_flag_on_rsa_1024_root_is_a_weak_key() {
    let w = Work::new();
    w.genrsa("ca.key", 1024);
    w.root_ca("ca.key", "/CN=Old Corp CA", "ca.pem", "");
    w.check("--cert ca.pem --ca").assert_refused("WeakKey");
}

// ---------------------------------------------------------------------------
// Signature algorithms: the "mutual TLS with openssl" recipe (R24).
// ---------------------------------------------------------------------------

/// The recipe: `openssl genrsa -out ca.key 2048`, `openssl req -x509 -new
/// -nodes -key ca.key -md5 ...` (old copies of it say `-md5`), then
/// `openssl x509 -req ... -md5`. OpenSSL 3.0.19 signs with MD5 and SHA-1
/// without any SECLEVEL, `-sigopt` or OPENSSL_CONF change.
fn mtls_recipe_ca(w: &Work) {
    w.genrsa("ca.key", 2048);
    w.root_ca("ca.key", "/CN=Example mTLS Root", "ca.crt", "-md5");
    let text = w.openssl("x509 -in ca.crt -noout -text");
    assert!(text.contains("md5WithRSAEncryption"), "{text}");
    w.genrsa("server.key", 2048);
    w.csr("server.key", LEAF_SUBJ, "server.csr");
}

#[test]
fn mtls_recipe_md5_signed_cert_is_weak_but_md5_self_signed_root_is_exempt() {
    let w = Work::new();
    mtls_recipe_ca(&w);
    w.sign(
        "server.csr",
        "ca.crt",
        "ca.key",
        "server-md5.crt",
        "-days 365 -md5",
    );
    let text = w.openssl("x509 -in server-md5.crt -noout -text");
    assert!(text.contains("md5WithRSAEncryption"), "{text}");
    w.cat("bundle-md5.pem", &["server-md5.crt", "ca.crt"]);
    w.check("--cert bundle-md5.pem --key server.key")
        .assert_refused("WeakSignatureAlgorithm");

    // The MD5 self-signed root itself, given as the mTLS CA: exempt.
    w.check("--cert ca.crt --ca")
        .assert_accepted()
        .assert_no_finding("WeakSignatureAlgorithm");

    // Re-signed with SHA-256 under the same MD5 root: fine.
    w.sign(
        "server.csr",
        "ca.crt",
        "ca.key",
        "server-sha256.crt",
        "-days 365 -sha256",
    );
    w.cat("bundle-sha256.pem", &["server-sha256.crt", "ca.crt"]);
    w.check("--cert bundle-sha256.pem --key server.key")
        .assert_accepted()
        .assert_no_finding("WeakSignatureAlgorithm")
        .assert_chain_length(2);
}

#[test]
fn mtls_recipe_sha1_signed_cert_is_weak() {
    let w = Work::new();
    mtls_recipe_ca(&w);
    w.sign(
        "server.csr",
        "ca.crt",
        "ca.key",
        "server-sha1.crt",
        "-days 365 -sha1",
    );
    let text = w.openssl("x509 -in server-sha1.crt -noout -text");
    assert!(text.contains("sha1WithRSAEncryption"), "{text}");
    w.cat("bundle.pem", &["server-sha1.crt", "ca.crt"]);
    w.check("--cert bundle.pem --key server.key")
        .assert_refused("WeakSignatureAlgorithm");
}

// ---------------------------------------------------------------------------
// Container formats: PKCS#12, PKCS#7, DER (R22).
// ---------------------------------------------------------------------------

/// `openssl pkcs12 -export -in leaf.pem -inkey leaf.key -certfile int.pem`
/// (OpenSSL 3 default: AES-256-CBC + PBKDF2, SHA-256 MAC).
#[test]
fn pkcs12_export_with_chain_is_accepted_with_its_password() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl(
        "pkcs12 -export -in leaf.pem -inkey leaf.key -certfile int.pem \
         -passout pass:secret -out bundle.p12",
    );
    w.password_file("pw", PASSWORD);
    w.check("--cert bundle.p12 --password-file pw")
        .assert_accepted()
        .assert_chain_length(2)
        .assert_summary("subject", LEAF_RFC4514)
        .assert_summary("key_algorithm", "RSA 2048")
        .assert_no_finding("MissingPrivateKey")
        .assert_no_finding("InvalidCertificateChain");

    w.check("--cert bundle.p12")
        .assert_refused("EncryptedPrivateKey");
    w.password_file("wrong", "not-the-password");
    w.check("--cert bundle.p12 --password-file wrong")
        .assert_refused("InvalidPassword");
}

/// `openssl pkcs12 -export -legacy`: RC2-40 for the certificates, 3DES for
/// the key, SHA-1 MAC (what Windows Server 2016 and old Java expect).
/// OpenSSL 3.0 needs its legacy provider to write this.
#[test]
fn pkcs12_export_legacy_rc2_3des_is_accepted_with_its_password() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl(
        "pkcs12 -export -legacy -in leaf.pem -inkey leaf.key -certfile int.pem \
         -passout pass:secret -out legacy.p12",
    );
    w.password_file("pw", PASSWORD);
    w.check("--cert legacy.p12 --password-file pw")
        .assert_accepted()
        .assert_chain_length(2)
        .assert_summary("subject", LEAF_RFC4514)
        .assert_no_finding("MissingPrivateKey");
    w.password_file("wrong", "not-the-password");
    w.check("--cert legacy.p12 --password-file wrong")
        .assert_refused("InvalidPassword");
}

/// `openssl crl2pkcs7 -nocrl -certfile fullchain.pem` (IIS / Java `.p7b`),
/// PEM and DER, in either order: PKCS#7 is a set, ordered silently (R25).
#[test]
fn crl2pkcs7_p7b_pem_and_der_are_accepted_in_any_order() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl("crl2pkcs7 -nocrl -certfile fullchain.pem -out chain.p7b");
    assert!(
        w.read_text("chain.p7b")
            .starts_with("-----BEGIN PKCS7-----")
    );
    w.openssl("crl2pkcs7 -nocrl -certfile fullchain.pem -outform DER -out chain-der.p7b");
    w.openssl("crl2pkcs7 -nocrl -certfile int.pem -certfile leaf.pem -out reversed.p7b");
    w.openssl(
        "crl2pkcs7 -nocrl -certfile int.pem -certfile leaf.pem -outform DER \
         -out reversed-der.p7b",
    );
    for p7b in [
        "chain.p7b",
        "chain-der.p7b",
        "reversed.p7b",
        "reversed-der.p7b",
    ] {
        w.check(&format!("--cert {p7b} --key leaf.key"))
            .assert_accepted()
            .assert_chain_length(2)
            .assert_summary("subject", LEAF_RFC4514)
            .assert_no_finding("InvalidCertificateChain")
            .assert_no_finding("CertificateChainNotFound");
    }
}

#[test]
fn x509_outform_der_leaf_is_accepted_with_key() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl("x509 -in leaf.pem -outform der -out leaf.der");
    w.check("--cert leaf.der --key leaf.key")
        .assert_accepted()
        .assert_chain_length(1)
        .assert_summary("sha256_fingerprint", &w.sha256_fingerprint("leaf.pem"));
}

// ---------------------------------------------------------------------------
// PEM bundle shapes (R22, R25, R29, R29a, R5).
// ---------------------------------------------------------------------------

/// `cat int.pem leaf.pem > fullchain.pem`: the classic mistake.
#[test]
fn fullchain_with_intermediate_first_is_a_warning_and_convert_fixes_it() {
    let w = Work::new();
    w.three_level_pki();
    w.cat("wrong-order.pem", &["int.pem", "leaf.pem"]);

    w.check("--cert wrong-order.pem --key leaf.key")
        .assert_accepted()
        .assert_warning("InvalidCertificateChain")
        .assert_chain_length(2)
        .assert_summary("subject", LEAF_RFC4514);
    w.check("--cert wrong-order.pem --key leaf.key --strict")
        .assert_refused("InvalidCertificateChain");

    let (exit, stderr) =
        w.convert("--in wrong-order.pem --key leaf.key --out-cert out.pem --out-key out.key");
    assert_eq!(exit, 0, "convert failed: {stderr}");
    w.openssl("x509 -noout -in out.pem");
    assert_eq!(
        w.read_text("out.pem"),
        w.read_text("leaf.pem") + &w.read_text("int.pem"),
        "canonical output: the leaf, then the intermediate, as openssl writes PEM"
    );
    let parts = w.split_pem("out.pem", "out");
    assert_eq!(parts.len(), 2);
    assert_eq!(w.rfc2253(&parts[0], "subject"), LEAF_RFC4514);
    let verified = w.openssl(&format!(
        "verify -CAfile root.pem -untrusted {} {}",
        parts[1], parts[0]
    ));
    assert!(verified.contains(": OK"), "{verified}");
    w.check("--cert out.pem --key out.key --strict")
        .assert_accepted()
        .assert_no_finding("InvalidCertificateChain");
}

/// The chain pasted from a Windows tool or a CA's web page: CRLF line
/// endings, base64 wrapped at 76 characters (MIME style).
#[test]
fn crlf_and_76_column_pem_is_a_warning_and_strict_refuses_it() {
    let w = Work::new();
    w.three_level_pki();
    let canonical = w.read_text("fullchain.pem");
    for (name, width, eol) in [
        ("crlf.pem", 64, "\r\n"),
        ("wrap76.pem", 76, "\n"),
        ("crlf76.pem", 76, "\r\n"),
    ] {
        w.write(name, rewrap_pem(&canonical, width, eol));
        // openssl reads it: the content is a valid certificate.
        w.openssl(&format!("x509 -noout -in {name}"));
        w.check(&format!("--cert {name} --key leaf.key"))
            .assert_accepted()
            .assert_warning("NonCanonicalPem")
            .assert_chain_length(2);
        w.check(&format!("--cert {name} --key leaf.key --strict"))
            .assert_refused("NonCanonicalPem");
    }
    // Key files only have to parse (R29): a CRLF key passes --strict.
    w.write(
        "key-crlf.pem",
        rewrap_pem(&w.read_text("leaf.key"), 76, "\r\n"),
    );
    w.check("--cert fullchain.pem --key key-crlf.pem --strict")
        .assert_accepted()
        .assert_no_finding("NonCanonicalPem");
}

/// haproxy-style: DH parameters appended to the certificate file.
#[test]
fn dh_parameters_appended_to_certificate_are_refused() {
    let w = Work::new();
    w.three_level_pki();
    // Instant (a named RFC 7919 group), written as `BEGIN DH PARAMETERS`,
    // like `openssl dhparam -out dhparam.pem 2048` but without the wait.
    w.openssl("genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out dhparam.pem");
    assert!(
        w.read_text("dhparam.pem")
            .starts_with("-----BEGIN DH PARAMETERS-----")
    );
    w.cat("with-dh.pem", &["leaf.pem", "int.pem", "dhparam.pem"]);
    w.check("--cert with-dh.pem --key leaf.key")
        .assert_refused("DhParametersNotSupported");
}

/// `openssl dhparam -dsaparam` (the "fast dhparam" tip) writes
/// `BEGIN X9.42 DH PARAMETERS` on OpenSSL 3.0: still DH parameters.
#[test]
fn dhparam_dsaparam_x942_parameters_appended_to_certificate_are_refused() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl("dhparam -dsaparam -out dhparam.pem 1024");
    assert!(
        w.read_text("dhparam.pem")
            .starts_with("-----BEGIN X9.42 DH PARAMETERS-----")
    );
    w.cat("with-dh.pem", &["fullchain.pem", "dhparam.pem"]);
    w.check("--cert with-dh.pem --key leaf.key")
        .assert_refused("DhParametersNotSupported");
}

#[test]
fn leaf_without_its_intermediate_is_chain_not_found() {
    let w = Work::new();
    w.three_level_pki();
    w.check("--cert leaf.pem --key leaf.key")
        .assert_accepted()
        .assert_warning("CertificateChainNotFound");
    w.check("--cert leaf.pem --key leaf.key --strict")
        .assert_refused("CertificateChainNotFound");
}

/// `openssl x509 -in cert.pem -text -out cert.pem` style files: the dump
/// before each PEM block is ignored (R29a).
#[test]
fn x509_text_dump_before_pem_blocks_is_ignored() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl("x509 -in leaf.pem -text -out leaf-dump.pem");
    w.openssl("x509 -in int.pem -text -out int-dump.pem");
    let dump = w.read_text("leaf-dump.pem");
    assert!(dump.starts_with("Certificate:"), "{dump}");
    w.cat("dump-chain.pem", &["leaf-dump.pem", "int-dump.pem"]);
    w.check("--cert leaf-dump.pem --key leaf.key")
        .assert_accepted()
        .assert_summary("subject", LEAF_RFC4514);
    w.check("--cert dump-chain.pem --key leaf.key")
        .assert_accepted()
        .assert_chain_length(2)
        .assert_no_finding("InvalidCertificateChain");
}

// ---------------------------------------------------------------------------
// Wrong inputs.
// ---------------------------------------------------------------------------

#[test]
fn key_from_another_genrsa_does_not_match() {
    let w = Work::new();
    w.genrsa("key.pem", 2048);
    w.genrsa("other.pem", 2048);
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    w.check("--cert cert.pem --key other.pem")
        .assert_refused("KeyCertificateMismatch");
}

#[test]
fn empty_key_file_is_invalid_private_key_format() {
    let w = Work::new();
    w.genrsa("key.pem", 2048);
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    w.write("empty.key", "");
    w.check("--cert cert.pem --key empty.key")
        .assert_refused("InvalidPrivateKeyFormat");
}

#[test]
fn csr_given_as_certificate_is_invalid_certificate_format() {
    let w = Work::new();
    w.genrsa("key.pem", 2048);
    w.csr("key.pem", LEAF_SUBJ, "request.csr");
    w.check("--cert request.csr --key key.pem")
        .assert_refused("InvalidCertificateFormat");
}

#[test]
fn random_bytes_are_invalid_certificate_format() {
    let w = Work::new();
    w.openssl("rand -out garbage.bin 1024");
    w.check("--cert garbage.bin")
        .assert_refused("InvalidCertificateFormat");
}

#[test]
fn missing_files_are_exit_2() {
    let w = Work::new();
    w.genrsa("key.pem", 2048);
    w.self_signed("key.pem", LEAF_SUBJ, "cert.pem", "");
    for args in [
        "--cert no-such-cert.pem",
        "--cert cert.pem --key no-such-key.pem",
        "--cert cert.pem --key key.pem --password-file no-such-pw",
    ] {
        let verdict = w.check(args);
        assert_eq!(verdict.exit, 2, "expected exit 2 (I/O error)\n{verdict}");
    }
    let (exit, stderr) = w.convert("--in no-such-cert.pem --out-cert out.pem");
    assert_eq!(exit, 2, "{stderr}");
    assert!(!w.exists("out.pem"));
}

// ---------------------------------------------------------------------------
// CA bundles: --ca (R28).
// ---------------------------------------------------------------------------

#[test]
fn ca_flag_refuses_a_leaf_and_accepts_a_req_x509_root() {
    let w = Work::new();
    w.three_level_pki();
    w.check("--cert leaf.pem --ca")
        .assert_refused("NotACaCertificate");

    w.openssl(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -subj '/CN=My Client CA' \
         -days 365 -addext basicConstraints=critical,CA:TRUE -out ca.pem",
    );
    w.check("--cert ca.pem --ca")
        .assert_accepted()
        .assert_no_finding("MissingPrivateKey");

    // intermediate + root is a CA bundle too.
    w.cat("ca-bundle.pem", &["int.pem", "root.pem"]);
    w.check("--cert ca-bundle.pem --ca").assert_accepted();
}

// ---------------------------------------------------------------------------
// cert convert; validity dates (R27).
// ---------------------------------------------------------------------------

#[test]
fn convert_pkcs12_writes_pem_openssl_accepts_and_is_idempotent() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl(
        "pkcs12 -export -in leaf.pem -inkey leaf.key -certfile int.pem \
         -passout pass:secret -out bundle.p12",
    );
    w.password_file("pw", PASSWORD);
    let (exit, stderr) =
        w.convert("--in bundle.p12 --password-file pw --out-cert out.pem --out-key out.key");
    assert_eq!(exit, 0, "convert failed: {stderr}");

    // (a) openssl accepts what was written, and the chain verifies.
    w.openssl("x509 -noout -in out.pem");
    let parts = w.split_pem("out.pem", "out");
    assert_eq!(parts.len(), 2, "leaf + intermediate");
    let verified = w.openssl(&format!(
        "verify -CAfile root.pem -untrusted {} {}",
        parts[1], parts[0]
    ));
    assert!(verified.contains(": OK"), "{verified}");
    assert_eq!(
        w.read_text("out.pem"),
        w.read_text("leaf.pem") + &w.read_text("int.pem")
    );
    let key = w.read_text("out.key");
    assert!(
        key.starts_with(concat!("-----BEGIN PRIVATE", " KEY-----\n")),
        "{key}"
    );
    w.openssl("pkey -in out.key -noout");
    assert_eq!(
        w.openssl("pkey -in out.key -pubout"),
        w.openssl("x509 -in leaf.pem -noout -pubkey"),
        "the key written is the leaf's key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(w.path("out.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }

    // Without --out-key, the key inside the PKCS#12 file is said to be
    // left out (the certificate alone cannot be served).
    let (exit, stderr) = w.convert("--in bundle.p12 --password-file pw --out-cert alone.pem");
    assert_eq!(exit, 0, "{stderr}");
    assert!(
        stderr.contains("holds a private key, not written: add --out-key"),
        "{stderr}"
    );

    // (b) converting the output again changes nothing.
    let (exit, stderr) =
        w.convert("--in out.pem --key out.key --out-cert again.pem --out-key again.key");
    assert_eq!(exit, 0, "second convert failed: {stderr}");
    // A key given as its own file is still there: nothing to warn about.
    let (exit, stderr) = w.convert("--in out.pem --key out.key --out-cert third.pem");
    assert_eq!(exit, 0, "{stderr}");
    assert!(!stderr.contains("not written"), "{stderr}");
    assert_eq!(w.read("again.pem"), w.read("out.pem"));
    assert_eq!(w.read("again.key"), w.read("out.key"));
}

#[test]
fn convert_with_wrong_password_writes_nothing() {
    let w = Work::new();
    w.three_level_pki();
    w.openssl(
        "pkcs12 -export -in leaf.pem -inkey leaf.key -certfile int.pem \
         -passout pass:secret -out bundle.p12",
    );
    w.password_file("wrong", "not-the-password");
    let (exit, stderr) =
        w.convert("--in bundle.p12 --password-file wrong --out-cert out.pem --out-key out.key");
    assert_eq!(exit, 1, "{stderr}");
    assert!(stderr.contains("InvalidPassword"), "{stderr}");
    let written: Vec<String> = fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("out."))
        .collect();
    assert!(written.is_empty(), "nothing may be written: {written:?}");
}

/// `openssl ca -startdate 20200101000000Z -enddate 20210101000000Z`:
/// expired; a start in 2099: not yet valid; `x509 -req -days 10`: expiring soon.
#[test]
fn openssl_ca_dated_certificates_expired_not_yet_valid_and_expiring_soon() {
    let w = Work::new();
    w.three_level_pki();
    let server_ext = "-extfile openssl.cnf -extensions server_ext";

    let past = "-startdate 20200101000000Z -enddate 20210101000000Z";
    w.openssl_ca(
        "int.pem",
        "int.key",
        "leaf.csr",
        "expired.pem",
        past,
        server_ext,
    );
    w.cat("expired-chain.pem", &["expired.pem", "int.pem"]);
    w.check("--cert expired-chain.pem --key leaf.key")
        .assert_refused("CertificateExpired");
    // The text report counts no negative days left: it says expired.
    let text = w.tlsgate(&words("cert check --cert expired-chain.pem --key leaf.key"));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("(expired)") && !text.contains("days left"),
        "{text}"
    );
    // (c) convert still writes it, with the expiry as a warning on stderr.
    let (exit, stderr) = w.convert(
        "--in expired-chain.pem --key leaf.key --out-cert expired-out.pem \
         --out-key expired-out.key",
    );
    assert_eq!(exit, 0, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: CertificateExpired")),
        "the expiry should be a warning on stderr: {stderr}"
    );
    assert_eq!(
        w.read_text("expired-out.pem"),
        w.read_text("expired-chain.pem")
    );

    let future = "-startdate 20990101000000Z -enddate 21000101000000Z";
    w.openssl_ca(
        "int.pem",
        "int.key",
        "leaf.csr",
        "future.pem",
        future,
        server_ext,
    );
    w.cat("future-chain.pem", &["future.pem", "int.pem"]);
    w.check("--cert future-chain.pem --key leaf.key")
        .assert_refused("CertificateNotYetValid");

    w.sign(
        "leaf.csr",
        "int.pem",
        "int.key",
        "soon.pem",
        &format!("-days 10 {server_ext}"),
    );
    w.cat("soon-chain.pem", &["soon.pem", "int.pem"]);
    w.check("--cert soon-chain.pem --key leaf.key")
        .assert_accepted()
        .assert_warning("CertificateExpiringSoon");
}

/// An expired intermediate is an error too (R27: anywhere in the chain).
#[test]
fn expired_intermediate_is_refused() {
    let w = Work::new();
    w.three_level_pki();
    let past = "-startdate 20200101000000Z -enddate 20210101000000Z";
    let ca_ext = "-extfile openssl.cnf -extensions ca_ext";
    w.openssl_ca(
        "root.pem",
        "root.key",
        "int.csr",
        "int-expired.pem",
        past,
        ca_ext,
    );
    w.cat("chain.pem", &["leaf.pem", "int-expired.pem"]);
    w.check("--cert chain.pem --key leaf.key")
        .assert_refused("CertificateExpired");
}

/// One certificate with many faults: a 1024-bit key, signed with MD5,
/// expired, checked against another key. Every fault is reported (R29a).
/// (MD5 needs an RSA issuer: there is no ECDSA-with-MD5, so the root signs.)
#[test]
fn every_fault_of_a_bad_certificate_is_reported() {
    let w = Work::new();
    w.three_level_pki();
    w.genrsa("weak.key", 1024);
    w.csr("weak.key", LEAF_SUBJ, "weak.csr");
    let past = "-startdate 20200101000000Z -enddate 20210101000000Z";
    w.openssl_ca(
        "root.pem", "root.key", "weak.csr", "bad.pem", past, "-md md5",
    );
    w.cat("bad-chain.pem", &["bad.pem", "root.pem"]);
    let verdict = w.check("--cert bad-chain.pem --key leaf.key");
    for code in [
        "WeakKey",
        "WeakSignatureAlgorithm",
        "CertificateExpired",
        "KeyCertificateMismatch",
    ] {
        verdict.assert_refused(code);
    }
}

// ---------------------------------------------------------------------------
// The --json shape (SPEC §5).
// ---------------------------------------------------------------------------

#[test]
fn json_output_shape_matches_openssl_view_of_the_certificate() {
    let w = Work::new();
    w.three_level_pki();
    let verdict = w.check("--cert fullchain.pem --key leaf.key");
    verdict.assert_accepted();

    let keys: BTreeSet<&str> = verdict
        .json
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object\n{verdict}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["ok", "errors", "warnings", "summary"]),
        "{verdict}"
    );
    // Findings are {code, message}: look at a refused check's too.
    let refused = w.check("--cert leaf.pem --key root.key --strict");
    for v in [&verdict, &refused] {
        for list in ["errors", "warnings"] {
            for item in v.json[list].as_array().unwrap() {
                let item_keys: BTreeSet<&str> = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(item_keys, BTreeSet::from(["code", "message"]), "{v}");
                assert!(item["message"].is_string(), "{v}");
            }
        }
    }
    assert!(!refused.errors().is_empty(), "{refused}");

    // subject/issuer: RFC 4514, as `openssl x509 -nameopt RFC2253` prints them.
    assert_eq!(w.rfc2253("leaf.pem", "subject"), LEAF_RFC4514);
    verdict
        .assert_summary("subject", LEAF_RFC4514)
        .assert_summary("issuer", &w.rfc2253("leaf.pem", "issuer"))
        .assert_summary("key_algorithm", "RSA 2048")
        .assert_summary("sha256_fingerprint", &w.sha256_fingerprint("leaf.pem"))
        .assert_chain_length(2);
    assert_eq!(
        verdict.json["summary"]["sans"],
        serde_json::json!(["www.example.com"]),
        "{verdict}"
    );

    // `notBefore=2026-11-22 06:50:04Z` → `2026-11-22T06:50:04Z`
    let dates = w.openssl("x509 -in leaf.pem -noout -dates -dateopt iso_8601");
    for (field, openssl_field) in [("not_before", "notBefore="), ("not_after", "notAfter=")] {
        let value = verdict.summary(field);
        assert_rfc3339(value);
        let from_openssl = dates
            .lines()
            .find_map(|l| l.strip_prefix(openssl_field))
            .unwrap_or_else(|| panic!("no {openssl_field} in {dates}"))
            .replace(' ', "T");
        assert_eq!(value, from_openssl, "summary.{field}");
    }
}
