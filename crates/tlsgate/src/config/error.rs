//! Config errors: [`Fault`]s carry byte spans while the file is checked;
//! [`report`] turns them into [`ConfigError`]s with line and column once the
//! checking is done, so the checks need neither the text nor the file name.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

/// A 1-based line and column (in characters) in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, counted in characters as editors do.
    pub column: usize,
}

/// One thing wrong with a config file: where, which field, what and what to
/// do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Where the offending key or value starts; `None` when the file could
    /// not be read at all.
    pub position: Option<Position>,
    /// Path of the field, e.g. `listener[0].health_check.interval`; empty
    /// for a syntax error or one about the whole file.
    pub field: String,
    /// The `name` of the `[[listener]]` or `[[tls_policy]]` entry the field
    /// is in, when it has one, so messages can say `listener "web"`.
    pub entry_name: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    /// An error about a file that could not be read.
    pub(super) fn unreadable(file: &Path, message: String) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            position: None,
            field: String::new(),
            entry_name: None,
            message,
        }
    }

    /// The field as messages show it: `listener "web" health_check.interval`
    /// rather than `listener[0].health_check.interval` when the entry has a name.
    pub fn field_label(&self) -> String {
        let Some(name) = &self.entry_name else {
            return self.field.clone();
        };
        let (head, rest) = match self.field.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (self.field.as_str(), None),
        };
        let Some((kind, _index)) = head.split_once('[') else {
            return self.field.clone();
        };
        match rest {
            Some(rest) => format!("{kind} {name:?} {rest}"),
            None => format!("{kind} {name:?}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field_label())?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A fault found while checking, located by byte span in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fault {
    /// Bytes of the offending key or value.
    pub span: Range<usize>,
    /// Field path, relative to whatever checked it (see [`Fault::within`]).
    pub field: String,
    /// Name of the `[[listener]]`/`[[tls_policy]]` entry, once known.
    pub entry_name: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl Fault {
    /// A fault at `span`.
    pub fn new(span: Range<usize>, field: &str, message: impl Into<String>) -> Self {
        Fault {
            span,
            field: field.to_string(),
            entry_name: None,
            message: message.into(),
        }
    }

    /// A fault at a spanned raw value.
    pub fn at<T>(value: &Spanned<T>, field: &str, message: impl Into<String>) -> Self {
        Fault::new(value.span(), field, message)
    }

    /// A TOML syntax error (no field: the document did not parse) in `text`.
    pub fn syntax(error: &toml::de::Error, text: &str) -> Self {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim_end();
        // The parser's "duplicate key" names no key. Its span starts at the
        // repeated key, or just after the '[' of a repeated table header:
        // the line it is on says which.
        let line_start = text
            .get(..span.start)
            .and_then(|before| before.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = text
            .get(line_start..)
            .and_then(|rest| rest.lines().next())
            .unwrap_or("")
            .trim();
        let message = match line {
            _ if message != "duplicate key" || line.is_empty() => message.to_string(),
            header if header.starts_with('[') => format!(
                "duplicate table {}]: it appears earlier in the file; merge the two (for a list of entries write [[…]])",
                header.split(']').next().unwrap_or(header)
            ),
            key_line => format!(
                "duplicate key {}: it is set earlier in the same table; keep one",
                key_line.split('=').next().unwrap_or(key_line).trim()
            ),
        };
        Fault::new(span, "", message)
    }

    /// Moves the fault into a parent: field `interval` within
    /// `listener[0].health_check` becomes `listener[0].health_check.interval`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// Records the entry's name unless an inner one was recorded already.
    pub fn named(mut self, name: Option<&str>) -> Self {
        if self.entry_name.is_none() {
            self.entry_name = name.filter(|name| !name.is_empty()).map(str::to_string);
        }
        self
    }
}

/// Collects faults while a section is checked, so one bad value does not hide
/// the next.
#[derive(Debug, Default)]
pub(super) struct Faults(Vec<Fault>);

impl Faults {
    /// Adds a fault.
    pub fn push(&mut self, fault: Fault) {
        self.0.push(fault);
    }

    /// The value, or `None` after recording the fault.
    pub fn check<T>(&mut self, result: Result<T, Fault>) -> Option<T> {
        result.map_err(|fault| self.0.push(fault)).ok()
    }

    /// Checks an optional raw value: `None` when absent or faulty.
    pub fn optional<R, T>(
        &mut self,
        raw: Option<&R>,
        check: impl FnOnce(&R) -> Result<T, Fault>,
    ) -> Option<T> {
        raw.and_then(|raw| self.check(check(raw)))
    }

    /// The value of a nested check, or `None` after recording its faults
    /// moved within `parent`.
    pub fn nested<T>(&mut self, result: Result<T, Vec<Fault>>, parent: &str) -> Option<T> {
        result
            .map_err(|faults| {
                self.0
                    .extend(faults.into_iter().map(|fault| fault.within(parent)))
            })
            .ok()
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `value` when nothing was found, else the faults.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<Fault>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }

    /// The faults found.
    pub fn into_vec(self) -> Vec<Fault> {
        self.0
    }
}

/// Turns faults into errors with positions, in file order.
pub(super) fn report(file: &Path, text: &str, mut faults: Vec<Fault>) -> Vec<ConfigError> {
    if faults.is_empty() {
        // Every refusal records a fault; this only guards against a refusal
        // that forgot to, so the user never sees an error with no reason.
        faults.push(Fault::new(
            0..0,
            "",
            "the configuration was refused without a recorded reason (a tlsgate bug; please report it)",
        ));
    }
    faults.sort_by_key(|fault| fault.span.start);
    faults
        .into_iter()
        .map(|fault| ConfigError {
            file: file.to_path_buf(),
            position: Some(position(text, fault.span.start)),
            field: fault.field,
            entry_name: fault.entry_name,
            message: fault.message,
        })
        .collect()
}

/// Line and column of a byte offset.
fn position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// Shape errors (unknown key, missing key, wrong type) as faults.
///
/// Deserializing the whole file stops at the first such error (`first`), so
/// each section and each array entry is deserialized on its own as well: a
/// typo in one listener must not hide a typo in the next.
pub(super) fn shape_faults(doc: &Spanned<DeTable<'_>>, first: toml::de::Error) -> Vec<Fault> {
    use super::file::{
        FileAdmin, FileListener, FileServer, FileStore, FileTlsPolicy, FileTopLevel,
    };

    let mut errors = vec![first];
    let top_level = Spanned::new(doc.span(), DeValue::Table(doc.get_ref().clone()));
    errors.extend(shape_error::<FileTopLevel>(&top_level));
    for (key, value) in doc.get_ref() {
        match key.get_ref().as_ref() {
            "server" => errors.extend(shape_error::<FileServer>(value)),
            "store" => errors.extend(shape_error::<FileStore>(value)),
            "admin" => errors.extend(shape_error::<FileAdmin>(value)),
            "tls_policy" => errors.extend(entries(value).filter_map(shape_error::<FileTlsPolicy>)),
            "listener" => errors.extend(entries(value).filter_map(shape_error::<FileListener>)),
            // Unknown keys: reported by the top-level pass.
            _ => {}
        }
    }
    let mut faults: Vec<Fault> = Vec::new();
    for error in errors {
        let span = error.span().unwrap_or(0..0);
        let (field, entry_name) = locate(doc, &span);
        let message = plain_words(error.message().trim_end(), &field);
        let fault = Fault {
            span,
            field,
            entry_name,
            message,
        };
        if !faults.contains(&fault) {
            faults.push(fault);
        }
    }
    faults
}

/// serde's messages in the words of a TOML file: keys, tables and arrays,
/// not fields, structs and sequences.
fn plain_words(message: &str, field: &str) -> String {
    let mut message = message
        .replacen("unknown field `", "unknown key `", 1)
        .replacen("missing field `", "missing key `", 1)
        .replace("expected a sequence", "expected an array");
    if let Some(at) = message.find("expected struct File") {
        message.replace_range(at.., "expected a table");
    }
    if message.starts_with("invalid type: map, expected an array") {
        // `[listener]` where `[[listener]]` was meant: name the right header.
        let mut header = String::new();
        let mut rest = field;
        while let Some(open) = rest.find('[') {
            header.push_str(&rest[..open]);
            rest = rest[open..].split_once(']').map_or("", |(_, after)| after);
        }
        header.push_str(rest);
        message.push_str("; write each entry under its own [[");
        message.push_str(&header);
        message.push_str("]] header");
    }
    message
}

/// The shape error of one section, if any.
fn shape_error<'de, T: serde::Deserialize<'de>>(
    value: &Spanned<DeValue<'de>>,
) -> Option<toml::de::Error> {
    T::deserialize(toml::de::ValueDeserializer::from(value.clone())).err()
}

/// The entries of an array of tables (nothing when it is not an array: the
/// whole-file pass reports that).
fn entries<'a, 'de>(
    value: &'a Spanned<DeValue<'de>>,
) -> impl Iterator<Item = &'a Spanned<DeValue<'de>>> {
    value
        .get_ref()
        .as_array()
        .into_iter()
        .flat_map(|array| array.iter())
}

/// The field path of the smallest key or value whose span holds `span`, and
/// the name of the `[[...]]` entry it is in.
fn locate(doc: &Spanned<DeTable<'_>>, span: &Range<usize>) -> (String, Option<String>) {
    if span.is_empty() {
        // The document itself (e.g. "missing field `store`"): no field, and
        // not whatever key happens to start the file.
        return (String::new(), None);
    }
    let mut best: Option<(usize, usize, String)> = None;
    let mut consider = |node: Range<usize>, depth: usize, path: &str| {
        if node.start <= span.start && span.end <= node.end {
            let candidate = (node.end - node.start, usize::MAX - depth, path.to_string());
            if best.as_ref().is_none_or(|current| candidate < *current) {
                best = Some(candidate);
            }
        }
    };
    walk_table(doc.get_ref(), "", 1, &mut consider);
    let path = best.map(|(_, _, path)| path).unwrap_or_default();
    let entry_name = entry_name(doc.get_ref(), &path);
    (path, entry_name)
}

fn walk_table(
    table: &DeTable<'_>,
    path: &str,
    depth: usize,
    consider: &mut impl FnMut(Range<usize>, usize, &str),
) {
    for (key, value) in table {
        let path = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", key.get_ref())
        };
        consider(key.span(), depth, &path);
        walk_value(value, &path, depth, consider);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    depth: usize,
    consider: &mut impl FnMut(Range<usize>, usize, &str),
) {
    consider(value.span(), depth, path);
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, depth + 1, consider),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                walk_value(item, &format!("{path}[{index}]"), depth + 1, consider);
            }
        }
        _ => {}
    }
}

/// For a path like `listener[1].backend[0].weight`, the `name` of `listener[1]`.
fn entry_name(doc: &DeTable<'_>, path: &str) -> Option<String> {
    let head = path.split('.').next()?;
    let (kind, index) = head.strip_suffix(']')?.split_once('[')?;
    let index: usize = index.parse().ok()?;
    let entry = doc.get(kind)?.get_ref().as_array()?.get(index)?;
    let name = entry
        .get_ref()
        .as_table()?
        .get("name")?
        .get_ref()
        .as_str()?;
    Some(name.to_string())
}
