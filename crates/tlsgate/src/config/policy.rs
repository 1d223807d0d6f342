//! `[[tls_policy]]` and how a listener's `tls_policy` resolves (R6): a
//! custom policy defined in the file, a built-in one, or a legacy alias
//! (served as the closest safe policy, with a note to log).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde_spanned::Spanned;
use tlsgate_listener::TlsPolicy;

use super::convert::{non_empty, one_of};
use super::error::{Fault, Faults};
use super::file::FileTlsPolicy;

/// The policy a listener gets when it names none (R6).
const DEFAULT_POLICY: &str = "tls12";

/// Custom policies by name (`[[tls_policy]]`), and how names resolve.
pub(super) struct Policies {
    custom: BTreeMap<String, TlsPolicy>,
    /// Entries with errors of their own (reported at the entry): a
    /// listener naming one is told so, not that the name is unknown.
    broken: BTreeSet<String>,
}

impl Policies {
    /// Builds every custom policy; faults point at their entry.
    pub(super) fn new(raw: Vec<Spanned<FileTlsPolicy>>, faults: &mut Faults) -> Self {
        let mut custom = BTreeMap::new();
        let mut broken = BTreeSet::new();
        for (index, entry) in raw.into_iter().enumerate() {
            let header = entry.span();
            let entry = entry.into_inner();
            let name = entry.name.get_ref().clone();
            let mut found = Faults::default();
            if let Some(policy) = Self::custom(&entry, header, &custom, &mut found) {
                custom.insert(name.clone(), policy);
            } else if TlsPolicy::builtin(name.trim()).is_none() && !custom.contains_key(name.trim())
            {
                // A clash with a built-in or an earlier entry leaves the
                // name meaning that one.
                broken.insert(name.trim().to_string());
            }
            for fault in found.into_vec() {
                faults.push(
                    fault
                        .within(&format!("tls_policy[{index}]"))
                        .named(Some(&name)),
                );
            }
        }
        Policies { custom, broken }
    }

    /// One `[[tls_policy]]` entry.
    fn custom(
        entry: &FileTlsPolicy,
        header: Range<usize>,
        defined: &BTreeMap<String, TlsPolicy>,
        faults: &mut Faults,
    ) -> Option<TlsPolicy> {
        let name = faults.check(non_empty(
            &entry.name,
            "name",
            "the policy a name such as \"modern\"",
        ))?;
        if TlsPolicy::builtin(name).is_some() {
            faults.push(Fault::at(
                &entry.name,
                "name",
                format!("{name:?} is a built-in policy; give the custom policy another name"),
            ));
            return None;
        }
        if defined.contains_key(name) {
            faults.push(Fault::at(
                &entry.name,
                "name",
                format!("{name:?} is defined twice; custom policy names must be unique"),
            ));
            return None;
        }
        let base = entry
            .base
            .as_ref()
            .map_or(DEFAULT_POLICY, |base| base.get_ref().as_str());
        if TlsPolicy::builtin(base).is_none() {
            let span = entry.base.as_ref().map_or(header.clone(), Spanned::span);
            faults.push(Fault::new(
                span,
                "base",
                format!(
                    "unknown base policy {base:?}; use {}",
                    one_of(&builtin_names())
                ),
            ));
            return None;
        }
        TlsPolicy::custom(
            name,
            base,
            entry.versions.as_deref(),
            entry.cipher_suites.as_deref(),
            entry.groups.as_deref(),
        )
        .map_err(|message| {
            // The message is prefixed for use on its own; ours names the entry.
            let prefix = format!("TLS policy {name:?}: ");
            let message = message.strip_prefix(&prefix).unwrap_or(&message);
            faults.push(Fault::new(header, "", message));
        })
        .ok()
    }

    /// The policy a listener names (or the default), with the note a legacy
    /// alias must log. `header` locates the listener when it names none.
    pub(super) fn resolve(
        &self,
        name: Option<&Spanned<String>>,
        header: Range<usize>,
    ) -> Result<(TlsPolicy, Option<String>), Fault> {
        let (text, span) = match name {
            Some(name) => (name.get_ref().trim(), name.span()),
            None => (DEFAULT_POLICY, header),
        };
        if let Some(policy) = self.custom.get(text) {
            return Ok((policy.clone(), None));
        }
        if let Some(builtin) = TlsPolicy::builtin(text) {
            // The note names the alias and what it is served as ("… is
            // served as tls12 (…): … not offered because …").
            let note = builtin.note.map(|note| format!("tls_policy {note}"));
            return Ok((builtin.policy, note));
        }
        if self.broken.contains(text) {
            return Err(Fault::new(
                span,
                "tls_policy",
                format!(
                    "tls_policy {text:?} is a [[tls_policy]] with errors (above); fix it there"
                ),
            ));
        }
        let mut names = builtin_names();
        names.extend(self.custom.keys().map(|name| format!("{name:?}")));
        Err(Fault::new(
            span,
            "tls_policy",
            format!(
                "unknown tls_policy {text:?}; use {} (or define it in a [[tls_policy]])",
                one_of(&names)
            ),
        ))
    }
}

/// The built-in names, quoted, for messages.
fn builtin_names() -> Vec<String> {
    tlsgate_listener::builtin_names()
        .map(|name| format!("{name:?}"))
        .collect()
}
