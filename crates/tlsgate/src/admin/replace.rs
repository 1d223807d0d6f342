//! `POST /v1/certificates/{name}/replace`: re-point every listener that
//! references one certificate to another, all or nothing, and rewrite the
//! config file so the change survives a restart (R19). `toml_edit` keeps the
//! operator's comments and layout; the rewritten text goes through the same
//! parser as any config before it is written, then applied at once.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tlsgate_cert_store::{CertKind, CertificateName};
use toml_edit::{DocumentMut, Value};

use super::certs::json_body;
use super::{ApiError, Shared};
use crate::check::newly_unresolved;
use crate::config;

/// Body of a replace-many request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceBody {
    with: String,
    #[serde(default)]
    dry_run: bool,
}

/// A string value with the formatting (spacing, trailing comment) of `old`.
fn same_decor(old: &Value, text: &str) -> Value {
    let mut value = Value::from(text);
    *value.decor_mut() = old.decor().clone();
    value
}

/// Re-points references in the document; returns the listeners changed.
fn rewrite(doc: &mut DocumentMut, kind: CertKind, from: &str, to: &str) -> Vec<String> {
    let mut changed = Vec::new();
    let Some(listeners) = doc
        .get_mut("listener")
        .and_then(|i| i.as_array_of_tables_mut())
    else {
        return changed;
    };
    for table in listeners.iter_mut() {
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let hit = match kind {
            CertKind::Server => {
                let Some(list) = table.get_mut("certificates").and_then(|i| i.as_array_mut())
                else {
                    continue;
                };
                let Some(position) = list.iter().position(|v| v.as_str() == Some(from)) else {
                    continue;
                };
                if list.iter().any(|v| v.as_str() == Some(to)) {
                    // Already listed: dropping the old one keeps names unique.
                    let prefix = list.get(position).and_then(|v| v.decor().prefix().cloned());
                    list.remove(position);
                    // The new first element takes the removed one's leading
                    // space: `["old", "new"]` becomes `["new"]`, not `[ "new"]`.
                    if position == 0 {
                        if let (Some(first), Some(prefix)) = (list.get_mut(0), prefix) {
                            first.decor_mut().set_prefix(prefix);
                        }
                    }
                } else if let Some(old) = list.get(position) {
                    let value = same_decor(old, to);
                    list.replace_formatted(position, value);
                }
                true
            }
            CertKind::Ca => {
                let Some(auth) = table
                    .get_mut("mutual_auth")
                    .and_then(|i| i.as_table_like_mut())
                else {
                    continue;
                };
                match auth.get_mut("ca") {
                    Some(item) if item.as_str() == Some(from) => {
                        if let Some(old) = item.as_value() {
                            *item = toml_edit::Item::Value(same_decor(old, to));
                        }
                        true
                    }
                    _ => false,
                }
            }
        };
        if hit {
            changed.push(name);
        }
    }
    changed
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = folder.join(format!(".{name}.tlsgate-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        // Keep the operator's permissions on the config file.
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(&tmp, meta.permissions())?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `POST /v1/certificates/{name}/replace` `{"with": "other", "dry_run": bool}`
pub async fn replace_many(
    State(state): State<Shared>,
    UrlPath(raw): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: ReplaceBody = json_body(body)?;
    let parse =
        |raw: &str| CertificateName::parse(raw).map_err(|e| ApiError::new(e.code(), e.message()));
    let from = parse(&raw)?;
    let to = parse(&body.with)?;
    let mut current = state.config.lock().await;
    let snapshot = state.store.snapshot();
    let referenced = |kind: CertKind| {
        current.listeners.iter().any(|l| {
            l.tls().is_some_and(|tls| match kind {
                CertKind::Server => tls.certificates.contains(&from),
                CertKind::Ca => tls.mutual_auth.as_ref().is_some_and(|m| m.ca == from),
            })
        })
    };
    let kind = CertKind::ALL
        .into_iter()
        .find(|k| snapshot.contains(*k, &from) || referenced(*k))
        .ok_or_else(|| {
            ApiError::new(
                "CertificateNotFound",
                format!(
                    "no certificate and no listener reference named {:?}",
                    from.as_str()
                ),
            )
        })?;
    if !snapshot.contains(kind, &to) {
        return Err(ApiError::new(
            "CertificateNotFound",
            format!(
                "there is no {kind} certificate named {:?} to re-point listeners to; upload it first",
                to.as_str()
            ),
        ));
    }
    let text = fs::read_to_string(&current.path).map_err(|e| {
        ApiError::new(
            "InternalError",
            format!("cannot read {}: {e}", current.path.display()),
        )
    })?;
    let mut doc: DocumentMut = text.parse().map_err(|e| {
        ApiError::new(
            "InternalError",
            format!("cannot edit {}: {e}", current.path.display()),
        )
    })?;
    let changed = rewrite(&mut doc, kind, from.as_str(), to.as_str());
    let answer = |dry_run: bool, listeners: &[String]| {
        Json(json!({
            "from": from.as_str(),
            "to": to.as_str(),
            "kind": kind.as_str(),
            "listeners": listeners,
            "dry_run": dry_run,
        }))
        .into_response()
    };
    if body.dry_run || changed.is_empty() {
        return Ok(answer(body.dry_run, &changed));
    }
    let new_text = doc.to_string();
    let next = config::parse(&current.path, &new_text).map_err(|errors| {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ApiError::new(
            "InvalidParameter",
            format!(
                "the re-pointed config would be invalid: {}",
                messages.join("; ")
            ),
        )
    })?;
    // The file may hold an edit the running config does not (a reload
    // waiting for its certificates): that edit must not ride in with this
    // one while it names certificates the store does not serve.
    let unserved = newly_unresolved(&current, &next, &state.store);
    if !unserved.is_empty() {
        let messages: Vec<&str> = unserved.iter().map(|u| u.message.as_str()).collect();
        return Err(ApiError::new(
            "CertificateNotFound",
            format!(
                "the re-pointed config would name certificates the store does not serve (the config file has edits not yet in force): {}",
                messages.join("; ")
            ),
        ));
    }
    write_atomically(&current.path, &new_text).map_err(|e| {
        ApiError::new(
            "InternalError",
            format!("cannot write {}: {e}", current.path.display()),
        )
    })?;
    if let Err(err) = state.server.apply(next.listeners.clone()).await {
        // All or nothing: put the old file back.
        let _ = write_atomically(&current.path, &text);
        return Err(ApiError::new(
            "InternalError",
            format!("the new configuration could not be applied: {err}"),
        ));
    }
    tracing::info!(from = from.as_str(), to = to.as_str(), kind = %kind, listeners = ?changed, "listeners re-pointed through the admin API; config file rewritten");
    *current = next;
    Ok(answer(false, &changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_has(doc: &DocumentMut, text: &str) -> bool {
        let out = doc.to_string();
        out.contains(text) || panic!("no {text:?} in\n{out}")
    }

    #[test]
    fn rewrite_keeps_comments_and_moves_every_reference() {
        let text = r#"# production
[[listener]]
name = "a"   # first
certificates = ["old", "api"]  # default first

[[listener]]
name = "b"
certificates = [
  "old", # the default
  "new",
]

[[listener]]
name = "d"
certificates = ["old", "new"]

[[listener]]
name = "c"
certificates = ["other"]
[listener.mutual_auth]
ca = "old"  # corp CA
"#;
        let mut doc: DocumentMut = text.parse().unwrap();
        let changed = rewrite(&mut doc, CertKind::Server, "old", "new");
        assert_eq!(changed, ["a", "b", "d"]);
        assert!(out_has(&doc, r#"certificates = ["new"]"#));
        let out = doc.to_string();
        assert!(out.contains("# production"));
        assert!(
            out.contains(r#"certificates = ["new", "api"]  # default first"#),
            "{out}"
        );
        assert!(
            out.contains(r#"ca = "old"  # corp CA"#),
            "CA references are another kind: {out}"
        );
        assert!(
            !out.contains("\"old\", # the default"),
            "duplicate dropped: {out}"
        );

        let changed = rewrite(&mut doc, CertKind::Ca, "old", "corp2");
        assert_eq!(changed, ["c"]);
        assert!(doc.to_string().contains(r#"ca = "corp2"  # corp CA"#));
    }
}
