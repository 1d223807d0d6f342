//! Every command path of the admin client against a stub admin API: an
//! axum server on `127.0.0.1:0` that records each request and answers
//! with a canned reply. The real server's end-to-end tests live with the
//! server; these pin down the client's half of the contract.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query exactly as sent (still percent-encoded).
    uri: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// How the stub answers.
enum Reply {
    /// A JSON body with this status.
    Json(StatusCode, Value),
    /// A status with no body (204).
    Empty(StatusCode),
    /// Something that is not the admin API (a proxy's HTML page).
    Html(StatusCode),
    /// Never answer, to exercise the timeout.
    Never,
}

type Responder = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Clone)]
struct StubState {
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Responder,
}

/// A running stub; dropping it stops the server and its thread.
struct Stub {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Stub {
    fn start(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Stub {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = StubState {
            seen: seen.clone(),
            respond: Arc::new(respond),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("stub runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the stub");
                addr_tx
                    .send(listener.local_addr().expect("stub address"))
                    .expect("report the stub address");
                let app = axum::Router::new().fallback(handle).with_state(state);
                tokio::spawn(async move { axum::serve(listener, app).await });
                // Returning drops the runtime, which cancels the server and
                // any handler still waiting (the `Never` reply).
                let _ = stop.await;
            });
        });
        let addr = addr_rx.recv().expect("stub started");
        Stub {
            addr,
            seen,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Answers every request with `status` and `body`.
    fn json(status: StatusCode, body: Value) -> Stub {
        Stub::start(move |_| Reply::Json(status, body.clone()))
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self, token: Option<&str>) -> Client {
        Client::new(AdminUrl::parse(&self.url()).expect("stub URL"), token).expect("client")
    }

    /// The only request received.
    fn one(&self) -> Seen {
        let seen = self.seen.lock().expect("stub lock");
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen[0].clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(state): State<StubState>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        method: method.to_string(),
        uri: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let reply = (state.respond)(&seen);
    state.seen.lock().expect("stub lock").push(seen);
    match reply {
        Reply::Json(status, value) => (status, axum::Json(value)).into_response(),
        Reply::Empty(status) => status.into_response(),
        Reply::Html(status) => (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>bad gateway</html>",
        )
            .into_response(),
        Reply::Never => std::future::pending().await,
    }
}

/// Runs a command with captured stdout and stderr.
fn capture(
    command: impl FnOnce(&mut Output<'_>) -> Result<(), Failure>,
) -> (Result<(), Failure>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = command(&mut Output {
        out: &mut out,
        err: &mut err,
    });
    (
        result,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn no_admin() -> AdminArgs {
    AdminArgs {
        admin: None,
        token_file: None,
    }
}

fn cert(name: &str, kind: &str, listeners: &[&str]) -> Value {
    json!({
        "name": name, "kind": kind, "subject": format!("CN={name}"), "issuer": "CN=Test CA",
        "sans": [name], "not_before": "2025-01-01T00:00:00Z", "not_after": "2026-01-01T00:00:00Z",
        "days_left": 40, "key_algorithm": "ECDSA P-256", "fingerprint": "ab", "serial": "01",
        "chain_length": 2, "listeners": listeners, "last_refusal": null,
    })
}

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn upload_args(name: &str, replace: bool) -> UploadArgs {
    UploadArgs {
        name: name.into(),
        kind: None,
        cert: "unused.pem".into(),
        key: None,
        password_file: None,
        crl: None,
        replace,
        admin: no_admin(),
        json: false,
    }
}

#[test]
fn list_prints_a_sorted_table_and_sends_the_token() {
    let stub = Stub::json(
        StatusCode::OK,
        json!({"certificates": [cert("www", "server", &["web", "api"]), cert("api", "server", &[])]}),
    );
    let args = ListArgs {
        admin: no_admin(),
        json: false,
    };
    let (result, out, _) = capture(|o| list_with(&stub.client(Some("t0k")), &args, o));
    assert!(result.is_ok(), "{result:?}");
    let seen = stub.one();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/v1/certificates")
    );
    assert_eq!(seen.authorization.as_deref(), Some("Bearer t0k"));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{out}");
    assert!(lines[1].starts_with("api "), "{out}");
    assert!(
        lines[2].starts_with("www ") && lines[2].ends_with("web,api"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "no refusal, no note: {out}");

    // A refused change on disk is said under the table.
    let mut refused = cert("www", "server", &["web"]);
    refused["last_refusal"] =
        json!({"code": "KeyCertificateMismatch", "message": "the key is another's"});
    let stub = Stub::json(
        StatusCode::OK,
        json!({"certificates": [refused, cert("api", "server", &[])]}),
    );
    let (result, out, _) = capture(|o| list_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(
            "www: the store refused the files now in its folder (KeyCertificateMismatch)"
        ) && last.contains("tlsgate cert show www"),
        "{out}"
    );
}

#[test]
fn list_json_prints_the_servers_json() {
    let answer = json!({"certificates": [cert("www", "server", &[])]});
    let stub = Stub::json(StatusCode::OK, answer.clone());
    let args = ListArgs {
        admin: no_admin(),
        json: true,
    };
    let (result, out, _) = capture(|o| list_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(serde_json::from_str::<Value>(&out).ok(), Some(answer));
    assert_eq!(
        stub.one().authorization,
        None,
        "no token configured, none sent"
    );
}

#[test]
fn list_without_a_certificates_array_is_an_unexpected_answer() {
    let stub = Stub::json(StatusCode::OK, json!({"items": []}));
    let args = ListArgs {
        admin: no_admin(),
        json: false,
    };
    let (result, _, _) = capture(|o| list_with(&stub.client(None), &args, o));
    let failure = result.expect_err("a malformed answer fails");
    assert_eq!(failure.exit_code(), 2);
}

#[test]
fn show_percent_encodes_the_name_and_sends_the_kind() {
    let stub = Stub::json(StatusCode::OK, cert("team/*.example", "ca", &[]));
    let args = ShowArgs {
        name: "team/*.example".into(),
        kind: Some(Kind::Ca),
        admin: no_admin(),
        json: false,
    };
    let (result, out, _) = capture(|o| show_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    let seen = stub.one();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, "/v1/certificates/team%2F%2A.example?kind=ca");
    assert!(out.contains("name:         team/*.example\n"), "{out}");
    assert!(out.contains("listeners:    none\n"), "{out}");

    // The store's refusal names its codes itself: each is said once.
    let mut refused = cert("www", "server", &[]);
    refused["last_refusal"] = json!({
        "code": "KeyCertificateMismatch",
        "message": "server certificate \"www\" in certs/server/www: KeyCertificateMismatch: the key is another's",
    });
    let stub = Stub::json(StatusCode::OK, refused);
    let (result, out, _) = capture(|o| show_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out.matches("KeyCertificateMismatch").count(), 1, "{out}");
}

#[test]
fn show_without_kind_sends_no_query_and_json_passes_through() {
    let answer = cert("www", "server", &["web"]);
    let stub = Stub::json(StatusCode::OK, answer.clone());
    let args = ShowArgs {
        name: "www".into(),
        kind: None,
        admin: no_admin(),
        json: true,
    };
    let (result, out, _) = capture(|o| show_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(stub.one().uri, "/v1/certificates/www");
    assert_eq!(serde_json::from_str::<Value>(&out).ok(), Some(answer));
}

#[test]
fn show_of_an_unknown_name_exits_1() {
    let stub = Stub::json(
        StatusCode::NOT_FOUND,
        json!({"code": "CertificateNotFound", "message": "no server certificate named \"nope\""}),
    );
    let args = ShowArgs {
        name: "nope".into(),
        kind: None,
        admin: no_admin(),
        json: false,
    };
    let (result, out, _) = capture(|o| show_with(&stub.client(None), &args, o));
    let failure = result.expect_err("refused");
    assert_eq!(failure.exit_code(), 1);
    assert_eq!(
        failure.render(),
        "error: CertificateNotFound: no server certificate named \"nope\"\n"
    );
    assert!(out.is_empty());
}

#[test]
fn upload_posts_pem_as_text_and_prints_warnings() {
    let mut answer = cert("www", "server", &[]);
    answer["warnings"] = json!([{"code": "CertificateExpiringSoon", "message": "12 days left"}]);
    let stub = Stub::json(StatusCode::CREATED, answer);
    let material = Material {
        certificate: PEM.as_bytes().to_vec(),
        private_key: Some(vec![0x30, 0x81]),
        ..Material::default()
    };
    let args = upload_args("www", false);
    let (result, out, err) = capture(|o| upload_with(&stub.client(None), &args, &material, o));
    assert!(result.is_ok(), "{result:?}");
    let seen = stub.one();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/v1/certificates")
    );
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen.body,
        json!({"name": "www", "kind": "server", "certificate": PEM, "private_key_base64": "MIE="})
    );
    assert!(
        out.starts_with("uploaded server certificate www: CN=www"),
        "{out}"
    );
    assert_eq!(err, "warning: CertificateExpiringSoon: 12 days left\n");
}

#[test]
fn upload_replace_puts_to_the_named_certificate() {
    let stub = Stub::json(StatusCode::OK, cert("team/www", "server", &["web"]));
    let material = Material {
        certificate: PEM.as_bytes().to_vec(),
        password: Some("pw".into()),
        ..Material::default()
    };
    let mut args = upload_args("team/www", true);
    args.kind = Some(Kind::Server);
    let (result, out, _) = capture(|o| upload_with(&stub.client(None), &args, &material, o));
    assert!(result.is_ok(), "{result:?}");
    let seen = stub.one();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.uri, "/v1/certificates/team%2Fwww?kind=server");
    assert_eq!(seen.body, json!({"certificate": PEM, "password": "pw"}));
    assert!(
        out.starts_with("replaced server certificate team/www"),
        "{out}"
    );
}

#[test]
fn upload_refused_by_validation_exits_1_with_every_finding() {
    let refusal = json!({
        "code": "InvalidCertificateFormat",
        "message": "certificate 2 is damaged",
        "errors": [
            {"code": "InvalidCertificateFormat", "message": "certificate 2 is damaged"},
            {"code": "KeyCertificateMismatch", "message": "the key does not belong to the leaf"},
        ],
    });
    let stub = Stub::json(StatusCode::BAD_REQUEST, refusal.clone());
    let material = Material {
        certificate: PEM.as_bytes().to_vec(),
        ..Material::default()
    };
    let mut args = upload_args("www", false);
    let (result, out, _) = capture(|o| upload_with(&stub.client(None), &args, &material, o));
    let failure = result.expect_err("refused");
    assert_eq!(failure.exit_code(), 1);
    assert_eq!(
        failure.render(),
        "error: InvalidCertificateFormat: certificate 2 is damaged\n\
         error: KeyCertificateMismatch: the key does not belong to the leaf\n"
    );
    assert!(out.is_empty(), "{out}");

    // --json prints the server's answer, a refusal's too, and still exits 1.
    args.json = true;
    let (result, out, _) = capture(|o| upload_with(&stub.client(None), &args, &material, o));
    assert_eq!(result.expect_err("refused").exit_code(), 1);
    assert_eq!(serde_json::from_str::<Value>(&out).ok(), Some(refusal));
}

#[test]
fn upload_reads_files_and_checks_usage_before_sending() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let der = dir.path().join("cert.der");
    fs::write(&der, [0x30, 0x82, 0x00, 0x01])?;
    let password = dir.path().join("pw");
    fs::write(&password, "secret\r\n")?;
    let crl = dir.path().join("crl.pem");
    fs::write(&crl, "-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n")?;

    let mut args = upload_args("corp-ca", false);
    args.cert = der;
    args.password_file = Some(password);
    args.kind = Some(Kind::Ca);
    args.crl = Some(crl.clone());
    let material = read_material(&args)?;
    assert_eq!(material.certificate, [0x30, 0x82, 0x00, 0x01]);
    assert_eq!(material.password.as_deref(), Some("secret"));
    assert!(material.crl.is_some_and(|c| c.contains("X509 CRL")));

    // A CRL on a server certificate is a usage error, caught locally.
    args.kind = None;
    let failure = Failure::from(read_material(&args).expect_err("usage error"));
    assert_eq!(failure.exit_code(), 2);
    assert!(failure.render().contains("--kind ca"));

    // Replacing without --kind may target a CA bundle: the server decides.
    args.replace = true;
    assert!(read_material(&args).is_ok());
    args.kind = Some(Kind::Server);
    assert!(read_material(&args).is_err());

    // A missing file is an I/O error that names the file.
    args.crl = None;
    args.cert = dir.path().join("missing.pem");
    let failure = Failure::from(read_material(&args).expect_err("I/O error"));
    assert_eq!(failure.exit_code(), 2);
    assert!(failure.render().contains("missing.pem"));
    Ok(())
}

#[test]
fn delete_sends_delete_and_accepts_204() {
    let stub = Stub::start(|_| Reply::Empty(StatusCode::NO_CONTENT));
    let args = DeleteArgs {
        name: "old www".into(),
        kind: Some(Kind::Server),
        admin: no_admin(),
        json: false,
    };
    let (result, out, _) = capture(|o| delete_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    let seen = stub.one();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("DELETE", "/v1/certificates/old%20www?kind=server")
    );
    assert_eq!(out, "deleted server certificate old www\n");
}

#[test]
fn delete_json_prints_what_was_deleted_or_the_refusal() {
    let stub = Stub::start(|_| Reply::Empty(StatusCode::NO_CONTENT));
    let args = DeleteArgs {
        name: "old".into(),
        kind: None,
        admin: no_admin(),
        json: true,
    };
    let (result, out, _) = capture(|o| delete_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed, json!({"deleted": "old", "kind": null}));

    let refusal = json!({"code": "CertificateInUse", "message": "in use", "listeners": ["web"]});
    let stub = Stub::json(StatusCode::CONFLICT, refusal.clone());
    let (result, out, _) = capture(|o| delete_with(&stub.client(None), &args, o));
    assert_eq!(result.expect_err("refused").exit_code(), 1);
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed, refusal);
}

#[test]
fn delete_in_use_exits_1_and_names_the_listeners() {
    let stub = Stub::json(
        StatusCode::CONFLICT,
        json!({"code": "CertificateInUse", "message": "listeners still use www", "listeners": ["web", "api"]}),
    );
    let args = DeleteArgs {
        name: "www".into(),
        kind: None,
        admin: no_admin(),
        json: false,
    };
    let (result, out, _) = capture(|o| delete_with(&stub.client(None), &args, o));
    let failure = result.expect_err("refused");
    assert_eq!(failure.exit_code(), 1);
    assert_eq!(
        failure.render(),
        "error: CertificateInUse: listeners still use www\n  listeners: web, api\n"
    );
    assert!(out.is_empty());
}

#[test]
fn replace_posts_with_and_dry_run_and_reports_the_move() {
    let stub = Stub::start(|seen| {
        Reply::Json(
            StatusCode::OK,
            json!({"from": "old", "to": "new", "kind": "server", "listeners": ["web"], "dry_run": seen.body["dry_run"]}),
        )
    });
    let args = ReplaceArgs {
        name: "old/1".into(),
        with: "new".into(),
        dry_run: true,
        admin: no_admin(),
        json: false,
    };
    let (result, out, _) = capture(|o| replace_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    let seen = stub.one();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/v1/certificates/old%2F1/replace")
    );
    assert_eq!(seen.body, json!({"with": "new", "dry_run": true}));
    assert_eq!(
        out,
        "would move 1 listener(s) from old to new: web (dry run: nothing changed)\n"
    );
}

#[test]
fn replace_json_passes_the_answer_through() {
    let answer =
        json!({"from": "old", "to": "new", "kind": "server", "listeners": [], "dry_run": false});
    let stub = Stub::json(StatusCode::OK, answer.clone());
    let args = ReplaceArgs {
        name: "old".into(),
        with: "new".into(),
        dry_run: false,
        admin: no_admin(),
        json: true,
    };
    let (result, out, _) = capture(|o| replace_with(&stub.client(None), &args, o));
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(serde_json::from_str::<Value>(&out).ok(), Some(answer));
}

#[test]
fn unauthorized_exits_1_with_a_token_hint() {
    let stub = Stub::json(
        StatusCode::UNAUTHORIZED,
        json!({"code": "Unauthorized", "message": "missing or wrong bearer token"}),
    );
    let args = ListArgs {
        admin: no_admin(),
        json: false,
    };
    let (result, _, _) = capture(|o| list_with(&stub.client(Some("wrong")), &args, o));
    let failure = result.expect_err("refused");
    assert_eq!(failure.exit_code(), 1);
    let text = failure.render();
    assert!(
        text.starts_with("error: Unauthorized: missing or wrong bearer token\n"),
        "{text}"
    );
    assert!(text.contains("--token-file"), "{text}");
}

#[test]
fn a_5xx_with_an_error_code_is_a_refusal() {
    let stub = Stub::json(
        StatusCode::INSUFFICIENT_STORAGE,
        json!({"code": "QuotaExceeded", "message": "the store holds 1000 certificates"}),
    );
    let result = stub
        .client(None)
        .request(Method::GET, "/v1/certificates", None);
    let failure = Failure::from(result.expect_err("refused"));
    assert_eq!(failure.exit_code(), 1);
}

#[test]
fn an_answer_that_is_not_the_admin_api_exits_2() {
    let stub = Stub::start(|_| Reply::Html(StatusCode::BAD_GATEWAY));
    let result = stub
        .client(None)
        .request(Method::GET, "/v1/certificates", None);
    let failure = Failure::from(result.expect_err("not the admin API"));
    assert_eq!(failure.exit_code(), 2);
    assert!(
        failure.render().contains("is this the tlsgate admin API?"),
        "{}",
        failure.render()
    );
}

#[test]
fn a_closed_port_is_unreachable_and_exits_2() -> anyhow::Result<()> {
    // Bind then release a port so nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{addr}");
    let client = Client::new(AdminUrl::parse(&url)?, None)?;
    let failure = Failure::from(
        client
            .request(Method::GET, "/v1/certificates", None)
            .expect_err("unreachable"),
    );
    assert_eq!(failure.exit_code(), 2);
    let text = failure.render();
    assert!(
        text.starts_with(&format!("tlsgate: cannot reach the admin API at {url}: ")),
        "{text}"
    );
    assert!(
        text.contains("is `tlsgate serve` running, and is admin.bind this address?"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_silent_server_times_out_and_exits_2() {
    let stub = Stub::start(|_| Reply::Never);
    let client = stub.client(None).with_timeout(Duration::from_millis(200));
    let result = client.request(Method::GET, "/v1/certificates", None);
    assert!(
        matches!(result, Err(ClientError::TimedOut { .. })),
        "{result:?}"
    );
    drop(client);
}

#[test]
fn admin_url_comes_from_the_flag_then_the_environment_then_the_default() -> anyhow::Result<()> {
    let env = |name: &str| (name == ADMIN_ENV).then(|| "http://10.0.0.1:9000".to_owned());
    let base = |args: &AdminArgs, env: &dyn Fn(&str) -> Option<String>| {
        args.client(env)
            .map(|client| client.base().to_string())
            .map_err(|f| anyhow!(f.render()))
    };
    assert_eq!(base(&no_admin(), &|_| None)?, DEFAULT_ADMIN);
    assert_eq!(base(&no_admin(), &env)?, "http://10.0.0.1:9000");
    let flag = AdminArgs {
        admin: Some("127.0.0.2:9901".into()),
        token_file: None,
    };
    assert_eq!(base(&flag, &env)?, "http://127.0.0.2:9901");
    let https = AdminArgs {
        admin: Some("https://127.0.0.1:9901".into()),
        token_file: None,
    };
    let failure = https.client(|_| None).expect_err("https refused");
    assert_eq!(failure.exit_code(), 2);
    Ok(())
}

#[test]
fn token_file_beats_the_environment_and_loses_one_newline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("admin.token");
    fs::write(&token_file, "s3cret\n")?;
    let stub = Stub::json(StatusCode::OK, json!({"certificates": []}));
    let admin = AdminArgs {
        admin: Some(stub.url()),
        token_file: Some(token_file.clone()),
    };
    let env = |name: &str| (name == TOKEN_ENV).then(|| "from-env".to_owned());
    let client = admin.client(env).map_err(|f| anyhow!(f.render()))?;
    client.request(Method::GET, "/v1/certificates", None)?;
    assert_eq!(stub.one().authorization.as_deref(), Some("Bearer s3cret"));

    let from_env = AdminArgs {
        admin: Some(stub.url()),
        token_file: None,
    };
    let client = from_env.client(env).map_err(|f| anyhow!(f.render()))?;
    client.request(Method::GET, "/v1/certificates", None)?;
    let seen = stub.seen.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer from-env"));

    fs::write(&token_file, "\n")?;
    let failure = admin.client(|_| None).expect_err("empty token refused");
    assert_eq!(failure.exit_code(), 2);
    assert!(failure.render().contains("is empty"));
    Ok(())
}

#[test]
fn names_cannot_be_empty() {
    assert!(cert_name("").is_err());
    assert_eq!(cert_name("a/b"), Ok("a/b".to_owned()));
}

/// Runs a whole command the way the binary does (client from the
/// arguments, failure printed on stderr) and returns exit code and stderr.
fn exit_code_of(
    admin: &AdminArgs,
    command: impl FnOnce(&Client, &mut Output<'_>) -> Result<(), Failure>,
) -> (u8, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = execute_with(
        admin,
        |_| None,
        &mut Output {
            out: &mut out,
            err: &mut err,
        },
        command,
    );
    (code, String::from_utf8_lossy(&err).into_owned())
}

#[test]
fn exit_codes_through_the_whole_command() -> anyhow::Result<()> {
    let stub = Stub::start(|seen| match seen.uri.as_str() {
        "/v1/certificates" => Reply::Json(StatusCode::OK, json!({"certificates": []})),
        _ => Reply::Json(
            StatusCode::CONFLICT,
            json!({"code": "CertificateInUse", "message": "in use", "listeners": ["web"]}),
        ),
    });
    let admin = AdminArgs {
        admin: Some(stub.url()),
        token_file: None,
    };
    let list = ListArgs {
        admin: no_admin(),
        json: false,
    };
    assert_eq!(
        exit_code_of(&admin, |c, o| list_with(c, &list, o)),
        (0, String::new())
    );

    let delete = DeleteArgs {
        name: "www".into(),
        kind: None,
        admin: no_admin(),
        json: false,
    };
    let (code, err) = exit_code_of(&admin, |c, o| delete_with(c, &delete, o));
    assert_eq!(code, 1);
    assert_eq!(err, "error: CertificateInUse: in use\n  listeners: web\n");

    // Nothing listens on a released port: exit 2 with the hint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let nowhere = AdminArgs {
        admin: Some(closed.to_string()),
        token_file: None,
    };
    let (code, err) = exit_code_of(&nowhere, |c, o| list_with(c, &list, o));
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the admin API"), "{err}");

    // A bad URL fails before any request, also with exit 2.
    let bad = AdminArgs {
        admin: Some("ftp://127.0.0.1".into()),
        token_file: None,
    };
    let (code, err) = exit_code_of(&bad, |_, _| Ok(()));
    assert_eq!(code, 2);
    assert!(err.starts_with("tlsgate: invalid admin API URL"), "{err}");
    Ok(())
}

/// A stdout whose reader has gone away.
struct ClosedPipe;

impl Write for ClosedPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_stdout_is_quiet_and_other_write_errors_exit_2() {
    let stub = Stub::json(StatusCode::OK, json!({"certificates": []}));
    let admin = AdminArgs {
        admin: Some(stub.url()),
        token_file: None,
    };
    let list = ListArgs {
        admin: no_admin(),
        json: false,
    };
    let mut err = Vec::new();
    let code = execute_with(
        &admin,
        |_| None,
        &mut Output {
            out: &mut ClosedPipe,
            err: &mut err,
        },
        |c, o| list_with(c, &list, o),
    );
    assert_eq!((code, err.as_slice()), (0, &b""[..]));

    let failure = Failure::from(io::Error::from(io::ErrorKind::StorageFull));
    assert_eq!(failure.exit_code(), 2);
}
