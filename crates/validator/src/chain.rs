//! Chain building and link verification (SPEC R25).
//!
//! Signatures are verified with rustls-webpki's algorithm implementations
//! (aws-lc-rs), matched by AlgorithmIdentifier exactly as webpki matches
//! them during a handshake, so a link that verifies here verifies for a
//! rustls client too.

use crate::algorithm::{Verdict, tlv, weak_signature};
use crate::cert::{ParsedCert, spki_parts};
use crate::key::ParsedKey;
use crate::{Error, Findings};

/// Does `issuer`'s key verify `child`'s signature? `None` when the pair uses
/// an algorithm that is reported elsewhere (weak signature, unusable key),
/// so a second, confusing error is not piled on top.
pub(crate) fn link_verifies(child: &ParsedCert, issuer: &ParsedCert) -> Option<bool> {
    if weak_signature(&child.signature_oid).is_some()
        || issuer.key_algorithm.verdict() != Verdict::Servable
    {
        return None;
    }
    let (alg, bits) = spki_parts(&issuer.spki, false)?;
    Some(signature_verifies(child, alg, bits))
}

fn signature_verifies(child: &ParsedCert, issuer_alg: &[u8], issuer_key: &[u8]) -> bool {
    signed_by(&child.der, issuer_alg, issuer_key)
}

/// Does the key (AlgorithmIdentifier contents + key bits) verify the
/// signature of the SIGNED{} structure `der` (a certificate or a CRL)?
pub(crate) fn signed_by(der: &[u8], issuer_alg: &[u8], issuer_key: &[u8]) -> bool {
    let Some((tbs, sig_alg, signature)) = crate::cert::signed_parts(der) else {
        return false;
    };
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .filter(|alg| {
            alg.signature_alg_id().as_ref() == sig_alg
                && alg.public_key_alg_id().as_ref() == issuer_alg
        })
        .any(|alg| alg.verify_signature(issuer_key, tbs, signature).is_ok())
}

/// Is `cert`'s issuer a root in the Mozilla set (webpki-roots), by name and
/// by signature?
pub(crate) fn issued_by_well_known_root(cert: &ParsedCert) -> bool {
    let Some((issuer_name, _)) = tlv(&cert.issuer_raw) else {
        return false;
    };
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .filter(|anchor| anchor.subject.as_ref() == issuer_name.contents)
        .any(|anchor| {
            spki_parts(anchor.subject_public_key_info.as_ref(), true)
                .is_some_and(|(alg, bits)| signature_verifies(cert, alg, bits))
        })
}

/// Orders a server bundle leaf first. Returns indices into `certs`.
///
/// `ordered_input` is true for PEM, where the order the user wrote is
/// meaningful and a wrong one is worth a warning; PKCS#7 and PKCS#12 hold
/// sets and are ordered silently.
pub(crate) fn order_server(
    certs: &[ParsedCert],
    key: Option<&ParsedKey>,
    ordered_input: bool,
    findings: &mut Findings,
) -> Vec<usize> {
    let n = certs.len();
    // issuers[i]: the certificates whose subject names certs[i]'s issuer.
    let issuers: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| {
                    j != i && !certs[i].is_self_issued() && certs[i].named_issuer_is(&certs[j])
                })
                .collect()
        })
        .collect();
    let issued_something: Vec<bool> = (0..n)
        .map(|j| issuers.iter().any(|list| list.contains(&j)))
        .collect();
    let candidates: Vec<usize> = (0..n).filter(|&i| !issued_something[i]).collect();

    let by_key = key.and_then(|key| {
        let matching: Vec<usize> = (0..n)
            .filter(|&i| key.matches(&certs[i]) == Some(true))
            .collect();
        // The key picks among leaf candidates only: a key that matches an
        // intermediate is the wrong key, reported as a mismatch by the caller.
        (matching.len() == 1 && candidates.contains(&matching[0])).then(|| matching[0])
    });
    let mut several_leaves = false;
    let leaf = match (by_key, candidates.as_slice()) {
        (Some(leaf), _) => leaf,
        (None, [only]) => *only,
        (None, []) => {
            findings.error(Error::InvalidCertificateChain(format!(
                "the {n} certificates do not form a chain: every one of them issued another (a loop of cross-signed certificates?), so there is no leaf; give the leaf and its issuers only"
            )));
            0
        }
        (None, [first, rest @ ..]) => {
            several_leaves = true;
            let others: Vec<String> = rest.iter().map(|&i| certs[i].describe()).collect();
            findings.error(Error::InvalidCertificateChain(format!(
                "the certificates do not form one chain: {} and {} each issued no other certificate in the bundle, so there is more than one leaf; a bundle holds one leaf and the intermediates that issued it, in order (give --key to say which certificate is the leaf)",
                certs[*first].describe(),
                others.join(", ")
            )));
            *first
        }
    };

    let mut chain = vec![leaf];
    let mut used = vec![false; n];
    used[leaf] = true;
    let mut current = leaf;
    loop {
        let next: Vec<usize> = issuers[current]
            .iter()
            .copied()
            .filter(|&j| !used[j])
            .collect();
        // Two certificates can share a subject (a re-keyed CA); prefer the one whose signature verifies.
        let pick = next
            .iter()
            .copied()
            .find(|&j| link_verifies(&certs[current], &certs[j]) == Some(true))
            .or_else(|| next.first().copied());
        let Some(issuer) = pick else { break };
        if link_verifies(&certs[current], &certs[issuer]) == Some(false) {
            findings.error(Error::InvalidCertificateChain(format!(
                "chain position {} ({}) names {} as its issuer, but the signature does not verify with that certificate's key: the intermediate belongs to a different CA that has the same name (a stale or wrong intermediate?); get the intermediate your CA publishes for this certificate",
                chain.len(),
                certs[current].describe(),
                certs[issuer].describe(),
            )));
        }
        used[issuer] = true;
        chain.push(issuer);
        current = issuer;
    }

    let leftovers: Vec<usize> = (0..n).filter(|&i| !used[i]).collect();
    if !several_leaves {
        report_leftovers(certs, &chain, &leftovers, findings);
    }

    if ordered_input && leftovers.is_empty() {
        if let Some(position) = chain.iter().enumerate().position(|(pos, &idx)| pos != idx) {
            findings.strict(Error::InvalidCertificateChain(format!(
                "the chain is out of order: position {} holds {}, but should hold {} (the leaf comes first, then the certificate that issued it, and so on); the canonical output reorders it — `tlsgate cert convert` writes the fixed file",
                position + 1,
                certs[position].describe(),
                certs[chain[position]].describe(),
            )));
        }
    }
    chain.extend(leftovers);
    chain
}

/// Explains certificates that are not part of the leaf's chain. The common
/// real case gets its own message: a certificate with the right *name* but
/// another key (the CA re-keyed, or a stale intermediate from an old bundle).
fn report_leftovers(
    certs: &[ParsedCert],
    chain: &[usize],
    leftovers: &[usize],
    findings: &mut Findings,
) {
    let mut strangers = Vec::new();
    for &stray in leftovers {
        let named_by = chain
            .iter()
            .position(|&member| certs[member].issuer_raw == certs[stray].subject_raw);
        match named_by {
            Some(position) => findings.error(Error::InvalidCertificateChain(format!(
                "chain position {} ({}) names \"{}\" as its issuer, and {} has that name but a different key (its key identifier or signature does not match): it is another CA with the same name — a stale intermediate, or one from a re-keyed CA; get the intermediate your CA publishes for this certificate",
                position + 1,
                certs[chain[position]].describe(),
                certs[stray].subject,
                certs[stray].describe(),
            ))),
            None => strangers.push(certs[stray].describe()),
        }
    }
    if let Some((&leaf, _)) = chain.split_first() {
        if !strangers.is_empty() {
            findings.error(Error::InvalidCertificateChain(format!(
                "{} not part of the chain of the leaf {}: it did not issue the leaf or any of its issuers; remove it, or check that the bundle belongs to this certificate",
                if strangers.len() == 1 {
                    format!("{} is", strangers[0])
                } else {
                    format!("{} are", strangers.join(", "))
                },
                certs[leaf].describe()
            )));
        }
    }
}

/// Checks the links inside a CA bundle: certificates in a trust bundle need
/// not form one chain, but where a certificate's issuer is present its
/// signature must verify.
pub(crate) fn check_ca_links(certs: &[ParsedCert], findings: &mut Findings) {
    for (i, child) in certs.iter().enumerate() {
        if child.is_self_issued() {
            continue;
        }
        let issuers: Vec<&ParsedCert> = certs
            .iter()
            .enumerate()
            .filter(|&(j, issuer)| j != i && child.named_issuer_is(issuer))
            .map(|(_, issuer)| issuer)
            .collect();
        if !issuers.is_empty()
            && issuers
                .iter()
                .all(|issuer| link_verifies(child, issuer) == Some(false))
        {
            findings.error(Error::InvalidCertificateChain(format!(
                "{} names {} as its issuer, but the signature does not verify with that certificate's key: two different CAs share a name; keep the CA that really issued it",
                child.describe(),
                issuers[0].describe()
            )));
        }
    }
}
