//! `/v1/certificates`: list, show, upload, replace in place, delete
//! (SPEC §6, R18, R19, R21). Uploads run the shared validator, then the
//! store writes the canonical form and answers once it is live. Responses
//! carry metadata only: no private key ever leaves the server.

use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rustls_pki_types::UnixTime;
use serde::Deserialize;
use serde_json::{Value, json};
use tlsgate_cert_store::{CertKind, CertificateName, Content, WriteMode};
use tlsgate_validator::{self as validator, Kind, Options, Request, Source, Summary};

use super::{ApiError, Shared};

/// Body of `POST /v1/certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(flatten)]
    content: ContentBody,
}

/// The certificate material of an upload or replacement.
#[derive(Debug, Deserialize, Default)]
pub struct ContentBody {
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    certificate_base64: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    private_key_base64: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    crl: Option<String>,
}

/// `?kind=server|ca`.
#[derive(Debug, Deserialize)]
pub struct KindQuery {
    #[serde(default)]
    kind: Option<String>,
}

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn parse_name(raw: &str) -> Result<CertificateName, ApiError> {
    CertificateName::parse(raw).map_err(|e| ApiError::new(e.code(), e.message()))
}

fn parse_kind(raw: Option<&str>) -> Result<Option<CertKind>, ApiError> {
    match raw {
        None => Ok(None),
        Some("server") => Ok(Some(CertKind::Server)),
        Some("ca") => Ok(Some(CertKind::Ca)),
        Some(other) => Err(ApiError::new(
            "InvalidParameter",
            format!("kind {other:?} is not a certificate kind; use \"server\" or \"ca\""),
        )),
    }
}

/// Reads a JSON request body. Any Content-Type is accepted (plain
/// `curl -d` sends a form type); anything malformed is a 400
/// `InvalidParameter` (SPEC §6), an oversized body a 413.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let mut error = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                "InvalidParameter",
                "the request body is larger than 1 MiB; a certificate bundle with its key is a few KiB: send PEM or base64 of the files, not a whole folder or archive",
            )
        } else {
            ApiError::new(
                "InvalidParameter",
                format!("the request body cannot be read: {}", rejection.body_text()),
            )
        };
        error.status = Some(rejection.status());
        error
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            "InvalidParameter",
            format!("the request body is not the expected JSON: {e}"),
        )
    })
}

fn decode(
    text: &Option<String>,
    base64: &Option<String>,
    field: &str,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, base64) {
        (Some(_), Some(_)) => Err(ApiError::new(
            "InvalidParameter",
            format!("give either \"{field}\" (PEM text) or \"{field}_base64\" (binary), not both"),
        )),
        (Some(text), None) => Ok(Some(text.clone().into_bytes())),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map(Some)
            .map_err(|e| {
                ApiError::new(
                    "InvalidParameter",
                    format!("\"{field}_base64\" is not base64: {e}"),
                )
            }),
        (None, None) => Ok(None),
    }
}

/// Validates an upload and turns it into what the store writes.
/// What an upload validated into: the files to write, the warnings, and
/// the issuer the leaf names (RFC 4514).
type Validated = (Content, Vec<validator::Error>, String);

fn validate(kind: CertKind, body: &ContentBody) -> Result<Validated, ApiError> {
    let Some(certificate) = decode(&body.certificate, &body.certificate_base64, "certificate")?
    else {
        return Err(ApiError::new(
            "InvalidParameter",
            "the request has no \"certificate\" (PEM text) or \"certificate_base64\" (DER, PKCS#7, PKCS#12)",
        ));
    };
    let key = decode(&body.private_key, &body.private_key_base64, "private_key")?;
    if kind == CertKind::Ca && key.is_some() {
        return Err(ApiError::new(
            "InvalidParameter",
            "a ca certificate takes no private key: upload only the CA certificate(s)",
        ));
    }
    let report = validator::check(&Request {
        certificate: Source {
            name: "the uploaded certificate",
            bytes: &certificate,
        },
        private_key: key.as_deref().map(|bytes| Source {
            name: "the uploaded private key",
            bytes,
        }),
        password: body.password.as_deref().map(str::as_bytes),
        options: Options {
            kind: match kind {
                CertKind::Server => Kind::Server,
                CertKind::Ca => Kind::Ca,
            },
            strict: false,
            require_key: kind == CertKind::Server,
            now: now(),
            origin: validator::Origin::Api,
        },
    });
    let validated = report.into_validated().map_err(|report| {
        let first = report
            .errors
            .first()
            .map_or(("InvalidCertificateFormat", String::new()), |e| {
                (e.code(), e.message().to_string())
            });
        let mut error = ApiError::new(first.0, first.1);
        error
            .extra
            .insert("errors".into(), findings(&report.errors));
        error
    })?;
    let bundle = validated.bundle();
    let content = match kind {
        CertKind::Server => Content::Server {
            chain_pem: bundle.certificate_pem(),
            key_pem: bundle.private_key_pem().unwrap_or_default(),
        },
        CertKind::Ca => {
            if let Some(crl) = &body.crl {
                let ders: Vec<&[u8]> = bundle.chain().iter().map(|c| c.as_ref()).collect();
                validator::check_crls(
                    &Source {
                        name: "the uploaded CRL",
                        bytes: crl.as_bytes(),
                    },
                    &ders,
                )
                .map_err(|errors| {
                    let first = errors
                        .first()
                        .map_or(("InvalidCertificateFormat", String::new()), |e| {
                            (e.code(), e.message().to_string())
                        });
                    let mut error = ApiError::new(first.0, first.1);
                    error.extra.insert("errors".into(), findings(&errors));
                    error
                })?;
            }
            Content::Ca {
                bundle_pem: bundle.certificate_pem(),
                crl_pem: body.crl.clone(),
            }
        }
    };
    Ok((
        content,
        validated.warnings().to_vec(),
        bundle.summary().issuer.clone(),
    ))
}

fn findings(findings: &[validator::Error]) -> Value {
    findings
        .iter()
        .map(|f| json!({"code": f.code(), "message": f.message()}))
        .collect()
}

fn summary_json(summary: &Summary) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("subject".into(), json!(summary.subject));
    out.insert("issuer".into(), json!(summary.issuer));
    out.insert("sans".into(), json!(summary.sans));
    out.insert(
        "not_before".into(),
        json!(validator::rfc3339(summary.not_before)),
    );
    out.insert(
        "not_after".into(),
        json!(validator::rfc3339(summary.not_after)),
    );
    out.insert("days_left".into(), json!(summary.days_left(now())));
    out.insert("key_algorithm".into(), json!(summary.key_algorithm));
    out.insert("fingerprint".into(), json!(summary.sha256_fingerprint));
    out.insert("serial".into(), json!(summary.serial));
    out.insert("chain_length".into(), json!(summary.chain_length));
    out
}

/// The metadata of one certificate, or `None` when it is not in the store.
fn describe(state: &Shared, kind: CertKind, name: &CertificateName) -> Option<Value> {
    let snapshot = state.store.snapshot();
    let mut out = match kind {
        CertKind::Server => {
            let server = snapshot.server(name)?;
            let mut out = summary_json(&server.summary);
            // R9b: whether an ocsp.der is stapled (one that fails its check
            // is not), and until when it is good.
            out.insert(
                "ocsp_stapled".into(),
                json!(server.certified.ocsp.is_some()),
            );
            out.insert(
                "ocsp_next_update".into(),
                json!(server.ocsp_next_update.map(validator::rfc3339)),
            );
            out
        }
        CertKind::Ca => {
            let ca = snapshot.ca(name)?;
            let mut out = summary_json(&ca.summary);
            out.insert(
                "crls".into(),
                ca.crls
                    .iter()
                    .map(|c| {
                        json!({
                            "issuer": c.issuer,
                            "this_update": validator::rfc3339(c.this_update),
                            "next_update": c.next_update.map(validator::rfc3339),
                            "revoked": c.revoked,
                        })
                    })
                    .collect(),
            );
            out
        }
    };
    out.insert("name".into(), json!(name.as_str()));
    out.insert("kind".into(), json!(kind.as_str()));
    out.insert(
        "listeners".into(),
        json!(snapshot.listeners_using(kind, name)),
    );
    out.insert(
        "last_refusal".into(),
        state.store.refusal(kind, name).map_or(
            Value::Null,
            |(code, message)| json!({"code": code, "message": message}),
        ),
    );
    Some(Value::Object(out))
}

/// Finds which kind a name is, when the request did not say.
fn resolve(
    state: &Shared,
    name: &CertificateName,
    kind: Option<CertKind>,
) -> Result<CertKind, ApiError> {
    let snapshot = state.store.snapshot();
    let kinds: Vec<CertKind> = match kind {
        Some(kind) => vec![kind],
        None => CertKind::ALL.to_vec(),
    };
    let known = |k: CertKind| snapshot.contains(k, name) || state.store.refusal(k, name).is_some();
    kinds.into_iter().find(|k| known(*k)).ok_or_else(|| {
        // Asked for one kind, and the name is the other's: say so, rather
        // than that the name does not exist.
        let other = kind.and_then(|asked| CertKind::ALL.into_iter().find(|k| *k != asked && known(*k)));
        let message = match (kind, other) {
            (Some(asked), Some(other)) => format!(
                "there is no {asked} certificate named {:?}, but there is a {other} certificate of that name; ask for kind={other} (`--kind {other}`), or leave the kind out",
                name.as_str()
            ),
            _ => format!(
                "there is no certificate named {:?}; `tlsgate cert list` (GET /v1/certificates) lists the names",
                name.as_str()
            ),
        };
        ApiError::new("CertificateNotFound", message)
    })
}

/// `GET /v1/certificates`
pub async fn list(State(state): State<Shared>) -> Response {
    let snapshot = state.store.snapshot();
    let mut names: Vec<(CertKind, CertificateName)> = snapshot
        .servers()
        .map(|s| (CertKind::Server, s.name.clone()))
        .chain(snapshot.cas().map(|c| (CertKind::Ca, c.name.clone())))
        .collect();
    names.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    let certificates: Vec<Value> = names
        .iter()
        .filter_map(|(kind, name)| describe(&state, *kind, name))
        .collect();
    Json(json!({ "certificates": certificates })).into_response()
}

/// `GET /v1/certificates/{name}`
pub async fn show(
    State(state): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<KindQuery>,
) -> Result<Response, ApiError> {
    let name = parse_name(&raw)?;
    let kind = resolve(&state, &name, parse_kind(query.kind.as_deref())?)?;
    let body = describe(&state, kind, &name).ok_or_else(|| {
        let (code, message) = state
            .store
            .refusal(kind, &name)
            .unwrap_or(("CertificateNotFound", "not loaded".into()));
        ApiError::new(
            code,
            format!(
                "{:?} is in the store but not loaded: {message}",
                name.as_str()
            ),
        )
    })?;
    Ok(Json(body).into_response())
}

async fn write(
    state: &Shared,
    name: CertificateName,
    kind: CertKind,
    body: ContentBody,
    mode: WriteMode,
) -> Result<(Value, Vec<validator::Error>), ApiError> {
    let (content, warnings, issuer) = validate(kind, &body)?;
    if mode == WriteMode::Replace {
        refuse_lost_chain(state, &name, &warnings, &issuer)?;
    }
    let store = state.store.clone();
    let target = name.clone();
    tokio::task::spawn_blocking(move || store.write(&target, &content, mode))
        .await
        .map_err(|e| {
            ApiError::new(
                "InternalError",
                format!("the store write did not complete: {e}"),
            )
        })??;
    tracing::info!(kind = %kind, name = name.as_str(), mode = ?mode, "certificate written through the admin API");
    let mut described = describe(state, kind, &name).ok_or_else(|| {
        ApiError::new(
            "InternalError",
            "the certificate was written but is not live",
        )
    })?;
    if let Some(object) = described.as_object_mut() {
        object.insert("warnings".into(), findings(&warnings));
    }
    Ok((described, warnings))
}

/// A replacement that drops the intermediate CA the version in service is
/// sent with: every client that verifies would fail from the next
/// handshake on. SPEC §4 makes a missing issuer a warning (a first upload
/// of a leaf alone is taken, with it, and so is one whose issuer is a
/// root, which clients hold themselves); replacing a working chain by one
/// that lacks the same intermediate is refused.
fn refuse_lost_chain(
    state: &Shared,
    name: &CertificateName,
    warnings: &[validator::Error],
    leaf_issuer: &str,
) -> Result<(), ApiError> {
    if !warnings
        .iter()
        .any(|w| w.code() == "CertificateChainNotFound")
    {
        return Ok(());
    }
    let snapshot = state.store.snapshot();
    let Some(live) = snapshot.server(name) else {
        return Ok(());
    };
    // The intermediate the new leaf names as issuer, among those sent now.
    let dropped = live
        .certified
        .cert
        .iter()
        .skip(1)
        .filter_map(|der| validator::peer_identity(der.as_ref()))
        .any(|ca| ca.subject == leaf_issuer && ca.issuer != ca.subject);
    if !dropped {
        return Ok(());
    }
    let finding = validator::Error::CertificateChainNotFound(format!(
        "\"{name}\" is in service with its intermediate CA ({leaf_issuer}), and the uploaded certificate, issued by it, comes without it: clients that verify would fail from the next handshake on; upload the leaf followed by its intermediates (certbot's fullchain.pem, or the CA's bundle appended to the leaf)"
    ));
    let mut error = ApiError::new(finding.code(), finding.message().to_string());
    error
        .extra
        .insert("errors".into(), findings(std::slice::from_ref(&finding)));
    Err(error)
}

/// `POST /v1/certificates`
pub async fn create(
    State(state): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateBody = json_body(body)?;
    let name = parse_name(&body.name)?;
    let kind = parse_kind(body.kind.as_deref())?.unwrap_or(CertKind::Server);
    let (described, _) = write(&state, name, kind, body.content, WriteMode::Create).await?;
    Ok((StatusCode::CREATED, Json(described)).into_response())
}

/// `PUT /v1/certificates/{name}`: replace content in place (R19).
pub async fn replace(
    State(state): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<KindQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: ContentBody = json_body(body)?;
    let name = parse_name(&raw)?;
    let kind = resolve(&state, &name, parse_kind(query.kind.as_deref())?)?;
    let (described, _) = write(&state, name, kind, body, WriteMode::Replace).await?;
    Ok(Json(described).into_response())
}

/// `DELETE /v1/certificates/{name}`: refused while listeners use it (R18).
pub async fn delete(
    State(state): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<KindQuery>,
) -> Result<Response, ApiError> {
    let name = parse_name(&raw)?;
    let kind = resolve(&state, &name, parse_kind(query.kind.as_deref())?)?;
    let store = state.store.clone();
    let target = name.clone();
    tokio::task::spawn_blocking(move || store.delete(kind, &target))
        .await
        .map_err(|e| {
            ApiError::new("InternalError", format!("the delete did not complete: {e}"))
        })??;
    tracing::info!(kind = %kind, name = name.as_str(), "certificate deleted through the admin API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
