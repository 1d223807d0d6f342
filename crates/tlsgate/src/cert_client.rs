//! `tlsgate cert upload|list|show|delete|replace` (SPEC §5): the admin
//! API's command-line client. Arguments and files flow in; one HTTP/JSON
//! request goes to the admin API (SPEC §6); its answer comes out as text
//! or, with `--json`, as the server's JSON.
//!
//! Exit codes: 0 success; 1 the server refused (it names a SPEC code);
//! 2 usage or I/O error, or no proper answer from the admin API.

#[path = "cert_client/body.rs"]
mod body;
#[path = "cert_client/render.rs"]
mod render;
#[path = "cert_client/transport.rs"]
mod transport;

#[cfg(test)]
#[path = "cert_client/tests.rs"]
mod tests;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use http::Method;
use serde_json::{Value, json};

use body::{Material, Target};
use transport::{AdminUrl, Client, ClientError, path_segment};

/// The admin API's address when neither `--admin` nor `TLSGATE_ADMIN` is set
/// (the default `admin.bind`, SPEC §7).
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";
/// Environment variable naming the admin API's base URL.
const ADMIN_ENV: &str = "TLSGATE_ADMIN";
/// Environment variable holding the admin bearer token itself.
const TOKEN_ENV: &str = "TLSGATE_ADMIN_TOKEN";

/// Where the admin API is and how to authenticate; shared by every client command.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin API base URL, plain HTTP [env: TLSGATE_ADMIN] [default: http://127.0.0.1:9901]. The admin API has no TLS: keep it on loopback, or protect it with a token.
    #[arg(long = "admin", value_name = "URL")]
    admin: Option<String>,
    /// File holding the admin bearer token (the server's admin.token_file); one trailing newline is ignored. Without it, the token is read from TLSGATE_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// What a certificate is for; the store keeps the two in separate namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A server certificate with its private key, presented to clients.
    Server,
    /// A CA bundle (optionally with CRLs) that verifies client certificates.
    Ca,
}

impl Kind {
    /// The wire name (`kind` field and query parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Ca => "ca",
        }
    }
}

/// Arguments of `cert upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The certificate's name in the store (may contain `/`).
    #[arg(long, value_name = "NAME", value_parser = cert_name)]
    name: String,
    /// A server certificate or a CA bundle for mutual authentication. Default: server for a new certificate; with --replace, whichever kind the name is.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Certificate file: PEM, DER, PKCS#7 or PKCS#12 (which brings its own key).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Private key file (PEM or DER), unless the certificate file holds it.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// File holding the password of an encrypted key or PKCS#12 file (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// A PEM CRL to install with a CA bundle (--kind ca only; a DER CRL: `openssl crl -inform DER -in F -out crl.pem` first).
    #[arg(long, value_name = "FILE")]
    crl: Option<PathBuf>,
    /// Replace the content of an existing certificate in place (PUT) instead of creating one.
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cert list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cert show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The certificate's name.
    #[arg(value_name = "NAME", value_parser = cert_name)]
    name: String,
    /// Which namespace to look in, when a server certificate and a CA bundle share the name.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the server's JSON answer instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cert delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The certificate's name.
    #[arg(value_name = "NAME", value_parser = cert_name)]
    name: String,
    /// Which namespace to delete from, when a server certificate and a CA bundle share the name.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON: `{"deleted": NAME, "kind": KIND or null}`, or the server's refusal.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cert replace`.
#[derive(Debug, Args)]
pub struct ReplaceArgs {
    /// The certificate the listeners use now.
    #[arg(value_name = "NAME", value_parser = cert_name)]
    name: String,
    /// The certificate they should use instead.
    #[arg(long, value_name = "OTHER", value_parser = cert_name)]
    with: String,
    /// Only report which listeners would move.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the server's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `cert upload`: create a certificate, or with `--replace` swap its content.
pub fn upload(args: &UploadArgs) -> ExitCode {
    execute(&args.admin, |client, out| {
        let material = read_material(args)?;
        upload_with(client, args, &material, out)
    })
}

/// `cert list`: every certificate in the store.
pub fn list(args: &ListArgs) -> ExitCode {
    execute(&args.admin, |client, out| list_with(client, args, out))
}

/// `cert show`: one certificate's metadata.
pub fn show(args: &ShowArgs) -> ExitCode {
    execute(&args.admin, |client, out| show_with(client, args, out))
}

/// `cert delete`: remove a certificate no listener uses.
pub fn delete(args: &DeleteArgs) -> ExitCode {
    execute(&args.admin, |client, out| delete_with(client, args, out))
}

/// `cert replace`: re-point every listener from one certificate to another.
pub fn replace(args: &ReplaceArgs) -> ExitCode {
    execute(&args.admin, |client, out| replace_with(client, args, out))
}

/// Why a command failed, which decides its exit code.
#[derive(Debug)]
enum Failure {
    /// Usage or local I/O (a file that cannot be read): exit 2.
    Local(anyhow::Error),
    /// Writing the answer to stdout or stderr failed: exit 2.
    Output(io::Error),
    /// The exchange with the admin API: exit 1 or 2, see [`ClientError::exit_code`].
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Failure::Client(err)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Local(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Output(err)
    }
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Local(_) | Failure::Output(_) => 2,
            Failure::Client(err) => err.exit_code(),
        }
    }

    /// The stderr text: `error: CODE: message` for a refusal, as
    /// `cert check` prints findings, so scripts can grep one format.
    fn render(&self) -> String {
        match self {
            Failure::Local(err) => format!("tlsgate: {err:#}\n"),
            Failure::Output(err) => format!("tlsgate: cannot write the output: {err}\n"),
            Failure::Client(ClientError::Refused {
                status,
                code,
                message,
                listeners,
                findings,
                ..
            }) => {
                // A refused upload lists every finding (R29a); other
                // refusals have one.
                let lines: Vec<(&String, &String)> = if findings.is_empty() {
                    vec![(code, message)]
                } else {
                    findings
                        .iter()
                        .map(|(code, message)| (code, message))
                        .collect()
                };
                let mut text = String::new();
                for (code, message) in lines {
                    text.push_str(&format!(
                        "error: {}: {}\n",
                        render::clean(code),
                        render::clean(message)
                    ));
                }
                if !listeners.is_empty() {
                    let names: Vec<String> = listeners.iter().map(|l| render::clean(l)).collect();
                    text.push_str(&format!("  listeners: {}\n", names.join(", ")));
                }
                if *status == http::StatusCode::UNAUTHORIZED {
                    text.push_str(&format!(
                        "hint: give the admin token with --token-file FILE or {TOKEN_ENV}\n"
                    ));
                }
                text
            }
            Failure::Client(err) => format!("tlsgate: {err}\n"),
        }
    }
}

/// The two output streams, passed in so tests can capture them.
struct Output<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

/// Runs `command` on the real stdout, stderr and environment.
fn execute(
    admin: &AdminArgs,
    command: impl FnOnce(&Client, &mut Output<'_>) -> Result<(), Failure>,
) -> ExitCode {
    let (mut stdout, mut stderr) = (io::stdout().lock(), io::stderr().lock());
    let mut output = Output {
        out: &mut stdout,
        err: &mut stderr,
    };
    ExitCode::from(execute_with(
        admin,
        |name| std::env::var(name).ok(),
        &mut output,
        command,
    ))
}

/// Builds the client, runs `command`, prints any failure and returns the
/// exit code: the one place failures become exit codes.
fn execute_with(
    admin: &AdminArgs,
    env: impl Fn(&str) -> Option<String>,
    output: &mut Output<'_>,
    command: impl FnOnce(&Client, &mut Output<'_>) -> Result<(), Failure>,
) -> u8 {
    let result = admin
        .client(env)
        .and_then(|client| command(&client, output));
    match result {
        Ok(()) => 0,
        // The reader went away (`tlsgate cert list | head -1`): the request
        // itself succeeded, and there is nobody left to tell anything.
        Err(Failure::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(failure) => {
            // Nothing better to do if stderr itself is gone.
            let _ = output.err.write_all(failure.render().as_bytes());
            failure.exit_code()
        }
    }
}

impl AdminArgs {
    /// Resolves URL and token (flag, then environment, then default) and
    /// builds the client. `env` is injected because tests must not mutate
    /// the process environment.
    fn client(&self, env: impl Fn(&str) -> Option<String>) -> Result<Client, Failure> {
        let url = self
            .admin
            .clone()
            .or_else(|| env(ADMIN_ENV).filter(|url| !url.is_empty()))
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned());
        // SECURITY: the token comes from a file or the environment, never a
        // flag, so it does not show up in `ps` or shell history.
        let token = match &self.token_file {
            Some(path) => Some(read_token(path)?),
            None => env(TOKEN_ENV).filter(|token| !token.is_empty()),
        };
        Ok(Client::new(AdminUrl::parse(&url)?, token.as_deref())?)
    }
}

/// A clap value parser: names travel in URL paths, and an empty one
/// would address the collection (`/v1/certificates/`) instead.
fn cert_name(given: &str) -> Result<String, String> {
    if given.is_empty() {
        Err("a certificate name cannot be empty".to_owned())
    } else {
        Ok(given.to_owned())
    }
}

/// `/v1/certificates/{name}[?kind=…]`.
fn cert_path(name: &str, kind: Option<Kind>) -> String {
    let mut path = format!("/v1/certificates/{}", path_segment(name));
    if let Some(kind) = kind {
        path.push_str("?kind=");
        path.push_str(kind.as_str());
    }
    path
}

/// Drops one trailing newline (LF or CRLF), which `echo secret > file` adds.
fn strip_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let bytes = fs::read(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| {
        anyhow!(
            "the {what} file {} is not UTF-8 text (the admin API carries it as a JSON string)",
            path.display()
        )
    })
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = strip_newline(read_text(path, "token")?);
    if token.is_empty() {
        return Err(anyhow!("the token file {} is empty", path.display()));
    }
    Ok(token)
}

/// Reads every file of an upload up front, so a typo in a path fails
/// before anything is sent.
fn read_material(args: &UploadArgs) -> anyhow::Result<Material> {
    // Without --kind a replacement keeps the existing kind, which may be a CA.
    let maybe_ca = match args.kind {
        Some(kind) => kind == Kind::Ca,
        None => args.replace,
    };
    if args.crl.is_some() && !maybe_ca {
        return Err(anyhow!("--crl applies to CA bundles only; add --kind ca"));
    }
    let read = |path: &Path, what: &str| {
        fs::read(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
    };
    let crl = match &args.crl {
        Some(path) => {
            let bytes = read(path, "CRL")?;
            let text = body::pem_text(&bytes).ok_or_else(|| {
                anyhow!(
                    "the CRL file {} is not PEM; convert it with `openssl crl -inform DER -in {} -out crl.pem`",
                    path.display(),
                    path.display()
                )
            })?;
            Some(text.to_owned())
        }
        None => None,
    };
    Ok(Material {
        certificate: read(&args.cert, "certificate")?,
        private_key: args.key.as_deref().map(|p| read(p, "key")).transpose()?,
        password: args
            .password_file
            .as_deref()
            .map(|p| read_text(p, "password").map(strip_newline))
            .transpose()?,
        crl,
    })
}

/// A request whose answer `--json` prints, a refusal's included (the
/// refusal is still told on stderr, and still exits 1).
fn request_for(
    client: &Client,
    json: bool,
    output: &mut Output<'_>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let result = client.request(method, path, body);
    if let (true, Err(ClientError::Refused { body, .. })) = (json, &result) {
        if !body.is_null() {
            print_json(output.out, body)?;
        }
    }
    Ok(result?.1)
}

fn print_json(out: &mut dyn Write, value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|err| anyhow!(err))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// The answer parsed but lacks what the contract promises.
fn malformed(client: &Client, detail: &str) -> Failure {
    Failure::Client(ClientError::Unexpected {
        url: client.base().to_string(),
        status: http::StatusCode::OK,
        detail: detail.to_owned(),
    })
}

fn upload_with(
    client: &Client,
    args: &UploadArgs,
    material: &Material,
    output: &mut Output<'_>,
) -> Result<(), Failure> {
    let (method, path, target) = if args.replace {
        // Without --kind the server finds the name in either namespace.
        (
            Method::PUT,
            cert_path(&args.name, args.kind),
            Target::Replace,
        )
    } else {
        let target = Target::Create {
            name: &args.name,
            kind: args.kind.unwrap_or(Kind::Server),
        };
        (Method::POST, "/v1/certificates".to_owned(), target)
    };
    let upload = body::upload(target, material);
    let answer = request_for(client, args.json, output, method, &path, Some(&upload))?;
    if args.json {
        return print_json(output.out, &answer);
    }
    output
        .out
        .write_all(render::uploaded(&answer, args.replace).as_bytes())?;
    for warning in answer
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        writeln!(output.err, "warning: {}", render::finding_line(warning))?;
    }
    Ok(())
}

fn list_with(client: &Client, args: &ListArgs, output: &mut Output<'_>) -> Result<(), Failure> {
    let answer = request_for(
        client,
        args.json,
        output,
        Method::GET,
        "/v1/certificates",
        None,
    )?;
    if args.json {
        return print_json(output.out, &answer);
    }
    let certificates = answer
        .get("certificates")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(client, "no \"certificates\" list in the answer"))?;
    output
        .out
        .write_all(render::table(certificates).as_bytes())?;
    Ok(())
}

fn show_with(client: &Client, args: &ShowArgs, output: &mut Output<'_>) -> Result<(), Failure> {
    let path = cert_path(&args.name, args.kind);
    let answer = request_for(client, args.json, output, Method::GET, &path, None)?;
    if args.json {
        return print_json(output.out, &answer);
    }
    if !answer.is_object() {
        return Err(malformed(client, "the certificate is not a JSON object"));
    }
    output.out.write_all(render::block(&answer).as_bytes())?;
    Ok(())
}

fn delete_with(client: &Client, args: &DeleteArgs, output: &mut Output<'_>) -> Result<(), Failure> {
    let path = cert_path(&args.name, args.kind);
    // 204 No Content: the CLI says what it asked for.
    request_for(client, args.json, output, Method::DELETE, &path, None)?;
    if args.json {
        let kind = args.kind.map(Kind::as_str);
        return print_json(output.out, &json!({"deleted": args.name, "kind": kind}));
    }
    let kind = args
        .kind
        .map(|k| format!("{} ", k.as_str()))
        .unwrap_or_default();
    writeln!(
        output.out,
        "deleted {kind}certificate {}",
        render::clean(&args.name)
    )?;
    Ok(())
}

fn replace_with(
    client: &Client,
    args: &ReplaceArgs,
    output: &mut Output<'_>,
) -> Result<(), Failure> {
    let path = format!("/v1/certificates/{}/replace", path_segment(&args.name));
    let body = json!({"with": args.with, "dry_run": args.dry_run});
    let answer = request_for(client, args.json, output, Method::POST, &path, Some(&body))?;
    if args.json {
        return print_json(output.out, &answer);
    }
    output.out.write_all(render::replaced(&answer).as_bytes())?;
    Ok(())
}
