//! Text output of the admin client: the `cert list` table, the `cert show`
//! block and one-line summaries. Input is the server's JSON as-is; a
//! missing or odd field renders as `-` rather than failing, so an older or
//! newer server still gets a readable answer.

use serde_json::Value;

/// The `cert list` columns: header and the certificate field behind it.
const COLUMNS: [(&str, &str); 7] = [
    ("NAME", "name"),
    ("KIND", "kind"),
    ("DAYS LEFT", "days_left"),
    ("NOT AFTER", "not_after"),
    ("KEY", "key_algorithm"),
    ("SUBJECT", "subject"),
    ("LISTENERS", "listeners"),
];

/// The `cert show` rows in display order: field and label. Fields the
/// server sends beyond these are shown after them under their own name.
const SHOW_FIELDS: [(&str, &str); 17] = [
    ("name", "name"),
    ("kind", "kind"),
    ("subject", "subject"),
    ("issuer", "issuer"),
    ("sans", "names"),
    ("not_before", "not before"),
    ("not_after", "not after"),
    ("days_left", "days left"),
    ("key_algorithm", "key"),
    ("fingerprint", "fingerprint"),
    ("serial", "serial"),
    ("chain_length", "chain length"),
    ("listeners", "listeners"),
    ("last_refusal", "last refusal"),
    ("ocsp_stapled", "ocsp stapled"),
    ("ocsp_next_update", "ocsp expires"),
    ("crls", "crls"),
];

/// Width of the `cert show` label column.
const LABEL_WIDTH: usize = 14;

/// SECURITY: certificate subjects and server messages are someone else's
/// text; control characters are escaped so they cannot drive the terminal.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One field as display text, list items joined by `separator`.
fn field_with(cert: &Value, key: &str, separator: &str) -> String {
    match cert.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => clean(text),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => clean(text),
                other => clean(&other.to_string()),
            })
            .collect::<Vec<_>>()
            .join(separator),
        Some(other) => clean(&other.to_string()),
    }
}

/// One field as display text (lists joined by `, `).
pub fn field(cert: &Value, key: &str) -> String {
    field_with(cert, key, ", ")
}

/// The `cert list` table, sorted by name (then kind, since a server
/// certificate and a CA bundle may share a name).
pub fn table(certificates: &[Value]) -> String {
    let mut rows: Vec<Vec<String>> = certificates
        .iter()
        .map(|cert| {
            COLUMNS
                .iter()
                .map(|(_, key)| match *key {
                    "listeners" => field_with(cert, key, ","),
                    _ => field(cert, key),
                })
                .collect()
        })
        .collect();
    rows.sort();
    let header: Vec<String> = COLUMNS
        .iter()
        .map(|(title, _)| (*title).to_owned())
        .collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            // Numbers align right so days left compare at a glance.
            if COLUMNS[i].1 == "days_left" {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // A change the store refused stays on disk (a restart would then fail
    // closed): say so here, not only in `cert show`.
    let mut refused: Vec<(String, String)> = certificates
        .iter()
        .filter(|cert| cert.get("last_refusal").is_some_and(|r| !r.is_null()))
        .map(|cert| (field(cert, "name"), field(&cert["last_refusal"], "code")))
        .collect();
    refused.sort();
    for (name, code) in refused {
        out.push_str(&format!(
            "{name}: the store refused the files now in its folder ({code}); the version listed is still served (`tlsgate cert show {name}`)\n"
        ));
    }
    out
}

/// The `cert show` block: every field the server sent, one per line.
pub fn block(cert: &Value) -> String {
    let mut out = String::new();
    let mut row = |label: &str, value: String| {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or_default();
        let line = format!("{:<LABEL_WIDTH$}{first}", format!("{label}:"));
        out.push_str(line.trim_end());
        out.push('\n');
        for more in lines {
            out.push_str(&format!("{:<LABEL_WIDTH$}{more}\n", ""));
        }
    };
    for (key, label) in SHOW_FIELDS {
        let value = match key {
            // Kind-only fields: CRLs a CA's, OCSP a server certificate's.
            "crls" | "ocsp_stapled" | "ocsp_next_update" if cert.get(key).is_none() => continue,
            "ocsp_next_update" if cert.get(key).is_some_and(Value::is_null) => "none".to_owned(),
            "crls" => crls(cert.get(key)),
            "last_refusal" => refusal(cert.get(key)),
            // An empty list (no listeners, a CA without SANs) says so.
            _ if cert
                .get(key)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty) =>
            {
                "none".to_owned()
            }
            "not_after" => match cert.get("days_left").and_then(Value::as_i64) {
                Some(days) if days < 0 => format!("{} (expired)", field(cert, key)),
                _ => field(cert, key),
            },
            _ => field(cert, key),
        };
        row(label, value);
    }
    if let Some(object) = cert.as_object() {
        for key in object.keys() {
            if !SHOW_FIELDS.iter().any(|(known, _)| known == key) && key != "warnings" {
                row(&clean(key), field(cert, key));
            }
        }
    }
    out
}

/// `last_refusal`: why the store last refused new content for this name.
fn refusal(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "none".to_owned(),
        // The store's message lists each finding with its code already.
        Some(finding) if field(finding, "message").contains(&field(finding, "code")) => {
            field(finding, "message")
        }
        Some(finding) => finding_line(finding),
    }
}

/// `CODE: message` of a `{"code", "message"}` object.
pub fn finding_line(finding: &Value) -> String {
    format!("{}: {}", field(finding, "code"), field(finding, "message"))
}

/// The CRLs of a CA bundle, one line each.
fn crls(value: Option<&Value>) -> String {
    match value.and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|crl| {
                format!(
                    "{}: next update {}, {} revoked",
                    field(crl, "issuer"),
                    field(crl, "next_update"),
                    field(crl, "revoked")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "none".to_owned(),
    }
}

/// The line after a successful upload or in-place replacement.
pub fn uploaded(cert: &Value, replaced: bool) -> String {
    let verb = if replaced { "replaced" } else { "uploaded" };
    format!(
        "{verb} {} certificate {}: {}, not after {} ({} days left), listeners: {}\n",
        field(cert, "kind"),
        field(cert, "name"),
        field(cert, "subject"),
        field(cert, "not_after"),
        field(cert, "days_left"),
        match cert.get("listeners").and_then(Value::as_array) {
            Some(list) if list.is_empty() => "none".to_owned(),
            _ => field(cert, "listeners"),
        }
    )
}

/// What `cert replace` did (or, with `dry_run`, would do).
pub fn replaced(answer: &Value) -> String {
    let dry_run = answer
        .get("dry_run")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let from = field(answer, "from");
    let to = field(answer, "to");
    let moved = answer
        .get("listeners")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if moved == 0 {
        let nothing = if dry_run {
            "nothing would move"
        } else {
            "nothing moved"
        };
        return format!("no listener uses {from}; {nothing}\n");
    }
    let verb = if dry_run { "would move" } else { "moved" };
    let suffix = if dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    format!(
        "{verb} {moved} listener(s) from {from} to {to}: {}{suffix}\n",
        field(answer, "listeners")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cert(name: &str, kind: &str, days: i64, listeners: &[&str]) -> Value {
        json!({
            "name": name, "kind": kind, "subject": format!("CN={name}.example"),
            "issuer": "CN=Test CA", "sans": [format!("{name}.example")],
            "not_before": "2025-01-01T00:00:00Z", "not_after": "2026-01-01T00:00:00Z",
            "days_left": days, "key_algorithm": "ECDSA P-256",
            "fingerprint": "ab12", "serial": "01", "chain_length": 2,
            "listeners": listeners, "last_refusal": null,
        })
    }

    #[test]
    fn table_is_sorted_aligned_and_comma_joins_listeners() {
        let out = table(&[
            cert("www", "server", 300, &["web", "api"]),
            cert("api", "server", 7, &[]),
            cert("corp-ca", "ca", 3650, &["web"]),
        ]);
        let expected = "\
NAME     KIND    DAYS LEFT  NOT AFTER             KEY          SUBJECT             LISTENERS
api      server          7  2026-01-01T00:00:00Z  ECDSA P-256  CN=api.example
corp-ca  ca           3650  2026-01-01T00:00:00Z  ECDSA P-256  CN=corp-ca.example  web
www      server        300  2026-01-01T00:00:00Z  ECDSA P-256  CN=www.example      web,api
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn table_of_nothing_is_the_header() {
        assert_eq!(
            table(&[]),
            "NAME  KIND  DAYS LEFT  NOT AFTER  KEY  SUBJECT  LISTENERS\n"
        );
    }

    #[test]
    fn table_survives_missing_fields_and_escapes_control_characters() {
        let out = table(&[json!({"name": "evil\u{1b}[2J", "days_left": null})]);
        assert!(out.contains("evil\\u{1b}[2J"), "{out}");
        assert!(!out.contains('\u{1b}'));
        assert!(out.lines().nth(1).is_some_and(|l| l.contains(" -  ")));
    }

    #[test]
    fn block_shows_every_field_and_extras() {
        let mut value = cert("www", "server", 12, &["web"]);
        value["last_refusal"] =
            json!({"code": "KeyCertificateMismatch", "message": "the key does not match"});
        value["future_field"] = json!(true);
        value["ocsp_stapled"] = json!(false);
        value["ocsp_next_update"] = Value::Null;
        let out = block(&value);
        for expected in [
            "name:         www\n",
            "kind:         server\n",
            "subject:      CN=www.example\n",
            "issuer:       CN=Test CA\n",
            "names:        www.example\n",
            "not before:   2025-01-01T00:00:00Z\n",
            "not after:    2026-01-01T00:00:00Z\n",
            "days left:    12\n",
            "key:          ECDSA P-256\n",
            "fingerprint:  ab12\n",
            "serial:       01\n",
            "chain length: 2\n",
            "listeners:    web\n",
            "last refusal: KeyCertificateMismatch: the key does not match\n",
            "ocsp stapled: false\n",
            "ocsp expires: none\n",
            "future_field: true\n",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in\n{out}");
        }
        assert!(
            !out.contains("crls"),
            "a server certificate has no CRL line"
        );
    }

    #[test]
    fn block_of_a_ca_lists_crls_one_per_line() {
        let mut value = cert("corp-ca", "ca", -2, &[]);
        value["sans"] = json!([]);
        value["crls"] = json!([
            {"issuer": "CN=Corp CA", "next_update": "2026-02-01T00:00:00Z", "revoked": 3},
            {"issuer": "CN=Corp Sub CA", "next_update": "2026-02-02T00:00:00Z", "revoked": 0},
        ]);
        let out = block(&value);
        assert!(out.contains("not after:    2026-01-01T00:00:00Z (expired)\n"));
        assert!(out.contains("listeners:    none\n"));
        assert!(out.contains("names:        none\n"));
        assert!(out.contains("last refusal: none\n"));
        assert!(out.contains(
            "crls:         CN=Corp CA: next update 2026-02-01T00:00:00Z, 3 revoked\n              CN=Corp Sub CA: next update 2026-02-02T00:00:00Z, 0 revoked\n"
        ));
    }

    #[test]
    fn replace_summary_says_what_moved() {
        let moved = json!({"from": "old", "to": "new", "kind": "server", "listeners": ["web", "api"], "dry_run": false});
        assert_eq!(
            replaced(&moved),
            "moved 2 listener(s) from old to new: web, api\n"
        );
        let planned = json!({"from": "old", "to": "new", "kind": "server", "listeners": ["web"], "dry_run": true});
        assert_eq!(
            replaced(&planned),
            "would move 1 listener(s) from old to new: web (dry run: nothing changed)\n"
        );
        let idle = json!({"from": "old", "to": "new", "listeners": [], "dry_run": false});
        assert_eq!(replaced(&idle), "no listener uses old; nothing moved\n");
    }
}
