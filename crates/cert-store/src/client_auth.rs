//! Client certificate verifiers for mutual TLS (SPEC R3, R4).
//!
//! In: a validated [`CaCert`] (one or more CA certificates and the CRLs the
//! validator already checked to be signed by a CA of the bundle) and a
//! listener's [`ClientAuthPolicy`]. Out: a rustls [`ClientCertVerifier`],
//! built off the handshake path and shared by every handshake of the
//! listener until the CA or the policy changes.
//!
//! The verifier is rustls's `WebPkiClientVerifier`; this module only maps the
//! SPEC's knobs onto its builder:
//!
//! | SPEC                                | rustls builder                        |
//! |-------------------------------------|---------------------------------------|
//! | CRLs from `crl.pem`                 | `with_crls`                           |
//! | a CA without a CRL is not an error  | `allow_unknown_revocation_status`     |
//! | `crl_scope = "leaf"`                | `only_check_end_entity_revocation`    |
//! | `mode = "optional"`                 | `allow_unauthenticated`               |
//! | `expired_crl = "reject-all"`        | `enforce_revocation_expiration`       |
//! | `expired_crl = "enforce"`           | (default: a stale CRL is still used)  |
//!
//! Where rustls 0.23 / webpki 0.103 differ from the SPEC (checked against
//! their source):
//!
//! * Trust anchors are never revocation-checked, so a CA certificate of the
//!   bundle that a CRL of the bundle revokes would still be trusted. Under
//!   [`CrlScope::Chain`] such a certificate is therefore left out of the
//!   anchors (see `revoked_in_bundle`); a client must then present it as an
//!   intermediate, where webpki does check it (and refuses it as revoked).
//! * webpki consults only the *first* CRL whose issuer matches a
//!   certificate. CRLs are therefore handed over newest `thisUpdate` first,
//!   so a stale CRL left in `crl.pem` beside a fresh one neither hides the
//!   fresh one's revocations nor (under `reject-all`) refuses every client.
//! * `reject-all` refuses a client only when an expired CRL is *consulted*
//!   for it: a CRL of a CA on the client's path (the leaf's issuer only,
//!   under [`CrlScope::Leaf`]). An expired CRL of another root of the bundle,
//!   or of a CA above the leaf's issuer under `Leaf` scope, does not refuse.
//! * Trust anchors' own validity dates are not checked at handshake time;
//!   the validator refuses an expired CA when it is loaded, and the store's
//!   expiry reporting (`not_after`) covers one that expires later.
//! * Logging and counting a CRL past its nextUpdate (R4, `enforce`) is not
//!   the verifier's job: rustls says nothing when it uses a stale CRL. The
//!   caller has `Crl::next_update` for that.

use std::cmp::Reverse;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use tlsgate_validator::Crl;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::{CaCert, CertKind, Error};

/// Whether a client certificate is required (R3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMode {
    /// Handshakes without a valid client certificate are refused.
    #[default]
    Required,
    /// Clients without a certificate are accepted; invalid ones are refused.
    Optional,
}

/// Which certificates of a client chain are checked against CRLs (R4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrlScope {
    /// Every certificate of the chain.
    #[default]
    Chain,
    /// The client's leaf only.
    Leaf,
}

/// What a CRL past its nextUpdate does (R4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiredCrlPolicy {
    /// Still enforced (and logged, counted).
    #[default]
    Enforce,
    /// Every client of that CA is refused until a fresh CRL arrives.
    RejectAll,
}

/// A listener's mutual-authentication policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientAuthPolicy {
    /// Required or optional.
    pub mode: ClientAuthMode,
    /// Whole chain or leaf only.
    pub crl_scope: CrlScope,
    /// Expired CRL handling.
    pub expired_crl: ExpiredCrlPolicy,
}

/// Builds the rustls verifier for a CA bundle and policy.
///
/// The verifier trusts the certificates of `ca.certs` as roots (except, under
/// [`CrlScope::Chain`], one that a CRL of the bundle revokes), checks client
/// chains against `ca.crls` as `policy` says, and advertises the roots'
/// subject names in the CertificateRequest. Build it when the CA, its CRLs or
/// the policy change, not per handshake.
///
/// # Errors
///
/// [`Error::Invalid`] (kind CA, code `InvalidCertificateFormat`) when rustls
/// refuses the bundle: no certificate that can serve as a trust anchor, or a
/// CRL it cannot use (for example a delta CRL) although the validator
/// accepted it.
pub fn build_verifier(
    ca: &CaCert,
    policy: &ClientAuthPolicy,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let invalid = |message: String| Error::Invalid {
        kind: CertKind::Ca,
        name: ca.name.clone(),
        folder: ca.folder.clone(),
        findings: vec![tlsgate_validator::Error::InvalidCertificateFormat(message)],
    };

    let revoked = match policy.crl_scope {
        CrlScope::Chain => revoked_in_bundle(&ca.certs, &ca.crls),
        // Under leaf scope the chain above the leaf is not revocation-checked
        // anyway, so a revoked CA of the bundle stays an anchor, as it would
        // if the client had sent it as an intermediate.
        CrlScope::Leaf => Vec::new(),
    };
    let mut roots = RootCertStore::empty();
    for (index, cert) in ca.certs.iter().enumerate() {
        if revoked.contains(&index) {
            tracing::warn!(
                ca = %ca.name,
                position = index + 1,
                "a CRL of the CA bundle revokes one of its CA certificates; \
                 it is not trusted as a root for client certificates"
            );
            continue;
        }
        roots.add(cert.clone()).map_err(|err| {
            invalid(format!(
                "CA certificate {} of the bundle cannot verify client certificates: {err}",
                index + 1
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(invalid(
            "the CA bundle has no certificate left to verify client certificates with \
             (empty, or every certificate is revoked by the bundle's own CRL)"
                .to_owned(),
        ));
    }

    // Newest first: webpki uses the first CRL whose issuer matches, and a
    // newer complete CRL from the same issuer supersedes an older one
    // (RFC 5280 §5). The sort is stable, so file order breaks ties.
    let mut crls: Vec<&Crl> = ca.crls.iter().collect();
    crls.sort_by_key(|crl| Reverse(crl.this_update));

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls.into_iter().map(|crl| crl.der.clone()))
        // R4: a CA in the chain without a CRL is not an error. Without this,
        // webpki refuses any certificate whose issuer has no CRL loaded.
        .allow_unknown_revocation_status();
    if policy.crl_scope == CrlScope::Leaf {
        builder = builder.only_check_end_entity_revocation();
    }
    if policy.mode == ClientAuthMode::Optional {
        // SECURITY: this only accepts an *empty* client Certificate message;
        // a certificate that is sent is still verified in full and refused
        // when it fails, as R3 requires.
        builder = builder.allow_unauthenticated();
    }
    if policy.expired_crl == ExpiredCrlPolicy::RejectAll {
        // webpki's default ignores nextUpdate, which is R4's `enforce`.
        builder = builder.enforce_revocation_expiration();
    }
    builder.build().map_err(|err| {
        invalid(format!(
            "the TLS engine refused the CA bundle or its CRLs: {err}"
        ))
    })
}

/// Positions in `certs` of the certificates that a CRL in `crls` revokes
/// (same issuer name, serial listed).
///
/// SECURITY: webpki never checks a trust anchor's revocation, so without
/// this an intermediate CA placed in the bundle beside its root would stay
/// trusted after the root's CRL revoked it. The validator has already
/// checked that every CRL is signed by a CA of the bundle, so matching the
/// issuer name is matching the signer. A self-issued certificate (a root
/// listing itself) is left alone: no CA can revoke itself meaningfully.
fn revoked_in_bundle(certs: &[CertificateDer<'static>], crls: &[Crl]) -> Vec<usize> {
    let parsed_crls: Vec<CertificateRevocationList<'_>> = crls
        .iter()
        .filter_map(|crl| CertificateRevocationList::from_der(crl.der.as_ref()).ok())
        .map(|(_, crl)| crl)
        .collect();
    if parsed_crls.is_empty() {
        return Vec::new();
    }
    certs
        .iter()
        .enumerate()
        .filter_map(|(index, der)| {
            // A certificate x509-parser cannot read is left for rustls to
            // judge (and refuse) in `build_verifier`.
            let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
            let issuer = cert.issuer().as_raw();
            if issuer == cert.subject().as_raw() {
                return None;
            }
            let serial = cert.raw_serial();
            parsed_crls
                .iter()
                .filter(|crl| crl.issuer().as_raw() == issuer)
                .flat_map(|crl| crl.iter_revoked_certificates())
                .any(|entry| entry.raw_serial() == serial)
                .then_some(index)
        })
        .collect()
}
