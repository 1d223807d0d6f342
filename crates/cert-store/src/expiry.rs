//! Expiry (R20): days left for every certificate, and a warning each time a
//! certificate crosses 30, 14, 7, 3 and 1 days left — once per threshold,
//! not on every check.

use std::collections::HashMap;

use tlsgate_validator::CertificateName;

use crate::{CertKind, Snapshot};

/// The days-left thresholds at which a warning is logged.
pub const EXPIRY_WARNING_DAYS: [i64; 5] = [30, 14, 7, 3, 1];

/// Days from `now` until `not_after`, negative once expired: the
/// validator's count, so the API, `cert check`, `check-config` and these
/// warnings agree.
pub use tlsgate_validator::days_left;

/// One certificate's expiry, for reports and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRow {
    /// Server or CA.
    pub kind: CertKind,
    /// Name in the store.
    pub name: CertificateName,
    /// notAfter, unix seconds (for a CA bundle: the earliest).
    pub not_after: i64,
    /// Whole days left.
    pub days_left: i64,
}

/// All certificates' expiry, soonest first.
pub(crate) fn rows(snapshot: &Snapshot, now: i64) -> Vec<ExpiryRow> {
    let mut rows: Vec<ExpiryRow> = snapshot
        .servers()
        .map(|s| (CertKind::Server, &s.name, s.summary.not_after))
        .chain(snapshot.cas().map(|c| (CertKind::Ca, &c.name, c.not_after)))
        .map(|(kind, name, not_after)| ExpiryRow {
            kind,
            name: name.clone(),
            not_after,
            days_left: days_left(not_after, now),
        })
        .collect();
    rows.sort_by(|a, b| (a.not_after, &a.name).cmp(&(b.not_after, &b.name)));
    rows
}

/// The tightest threshold a certificate with `days` left has crossed.
fn threshold(days: i64) -> Option<i64> {
    if days < 0 {
        return Some(-1);
    }
    EXPIRY_WARNING_DAYS
        .iter()
        .rev()
        .copied()
        .find(|&t| days <= t)
}

/// Remembers which threshold was last warned about per certificate version.
#[derive(Debug, Default)]
pub(crate) struct ExpiryWarnings {
    warned: HashMap<(CertKind, CertificateName, i64), i64>,
}

impl ExpiryWarnings {
    /// Logs a warning for each certificate that crossed a new threshold
    /// since the last check; returns what was warned about.
    pub(crate) fn check(&mut self, snapshot: &Snapshot, now: i64) -> Vec<ExpiryRow> {
        let current = rows(snapshot, now);
        let mut warned = Vec::new();
        for row in &current {
            let Some(level) = threshold(row.days_left) else {
                continue;
            };
            let key = (row.kind, row.name.clone(), row.not_after);
            if self.warned.get(&key) == Some(&level) {
                continue;
            }
            self.warned.insert(key, level);
            if level < 0 {
                tracing::error!(
                    kind = %row.kind,
                    name = row.name.as_str(),
                    not_after = %tlsgate_validator::rfc3339(row.not_after),
                    "certificate has expired: clients refuse it; replace it now"
                );
            } else {
                tracing::warn!(
                    kind = %row.kind,
                    name = row.name.as_str(),
                    days_left = row.days_left,
                    not_after = %tlsgate_validator::rfc3339(row.not_after),
                    "certificate expires soon; renew it"
                );
            }
            warned.push(row.clone());
        }
        // Forget versions that are gone (renewed or deleted).
        self.warned.retain(|(kind, name, not_after), _| {
            current
                .iter()
                .any(|r| r.kind == *kind && &r.name == name && r.not_after == *not_after)
        });
        warned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(threshold(45), None);
        assert_eq!(threshold(30), Some(30));
        assert_eq!(threshold(20), Some(30));
        assert_eq!(threshold(14), Some(14));
        assert_eq!(threshold(8), Some(14));
        assert_eq!(threshold(7), Some(7));
        assert_eq!(threshold(2), Some(3));
        assert_eq!(threshold(0), Some(1));
        assert_eq!(threshold(-1), Some(-1));
        assert_eq!(days_left(86_400 * 3 - 1, 0), 3);
        assert_eq!(days_left(-1, 0), -1);
    }
}
