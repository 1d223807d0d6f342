//! Helpers shared by the validator's integration tests.

#![allow(dead_code, clippy::panic)]

use tlsgate_validator::{Error, Report};

/// The codes of `findings`, in order.
pub fn codes(findings: &[Error]) -> Vec<&'static str> {
    findings.iter().map(|f| f.code()).collect()
}

/// Fails with the errors unless the report accepts the input.
#[track_caller]
pub fn assert_accepted(report: &Report) {
    assert!(
        report.ok(),
        "expected acceptance, got errors {:#?}",
        report.errors
    );
}
