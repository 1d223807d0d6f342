//! Chain building and link verification (SPEC R25).
//!
//! Signatures are verified with rustls-webpki's algorithm implementations
//! (aws-lc-rs), matched by AlgorithmIdentifier exactly as webpki matches
//! them during a handshake, so a link that verifies here verifies for a
//! rustls client too.

use crate::Origin;
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

/// Did `issuer` issue `child`, for building the chain? By name and key
/// identifier, or, where the key identifiers disagree, by name and a
/// signature that verifies: an intermediate reissued with the same key but
/// a new subjectKeyIdentifier still signed the leaf, and placing it in the
/// chain lets [`check_issuers`] say what is wrong rather than calling the
/// bundle two unrelated certificates.
pub(crate) fn issued(child: &ParsedCert, issuer: &ParsedCert) -> bool {
    child.named_issuer_is(issuer)
        || (child.issuer_raw == issuer.subject_raw && link_verifies(child, issuer) == Some(true))
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
    origin: Origin,
    findings: &mut Findings,
) -> Vec<usize> {
    let n = certs.len();
    // issuers[i]: the certificates whose subject names certs[i]'s issuer.
    let issuers: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| j != i && !certs[i].is_self_issued() && issued(&certs[i], &certs[j]))
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
                "the chain is out of order: position {} holds {}, but should hold {} (the leaf comes first, then the certificate that issued it, and so on); {}",
                position + 1,
                certs[position].describe(),
                certs[chain[position]].describe(),
                origin.reorder_note(),
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

/// What a CA certificate needs so that clients accept what it issued
/// (RFC 5280 §4.2.1.3, §4.2.1.9), written for `openssl x509 -req -extfile`.
const CA_EXTENSIONS_FIX: &str = "reissue it with `-extfile FILE` where FILE holds `basicConstraints=critical,CA:TRUE` and `keyUsage=critical,keyCertSign,cRLSign` (e.g. `openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1825 -extfile int.ext -out int.pem`), then reissue the certificates it signed";

/// Checks every certificate of a server chain that issued the one before it
/// (SPEC R25: a link that does not verify is an `InvalidCertificateChain`
/// error). A client builds its path through these certificates, and
/// rustls-webpki, browsers and OpenSSL all refuse an issuer that is not a
/// CA: X.509 v3 with basicConstraints cA=TRUE, keyUsage (when present)
/// allowing keyCertSign, and a pathLenConstraint no smaller than the number
/// of intermediates below it.
///
/// `chain` is in canonical order, leaf first. Only links present in the
/// bundle are judged: the walk stops where the next certificate is not
/// named as the current one's issuer (the chain ends, or leftovers follow,
/// which are reported elsewhere). A lone self-signed leaf issues nothing and is not
/// judged here.
pub(crate) fn check_issuers(chain: &[&ParsedCert], findings: &mut Findings) {
    // Intermediates strictly between the leaf and the issuer being judged.
    // RFC 5280 §4.2.1.9 does not count self-issued ones; the walk stops at a
    // self-issued certificate, so every one counted here is not.
    let mut intermediates_below = 0u32;
    for (index, pair) in chain.windows(2).enumerate() {
        let [child, issuer] = pair else { break };
        // By name: whether the signature verifies was judged (and reported)
        // when the chain was ordered, and verifying it again here cost a
        // quarter of the whole check.
        if child.is_self_issued() || !issued(child, issuer) {
            break;
        }
        let position = index + 2;
        aki_findings(child, issuer, index + 1, findings);
        if index > 0 {
            intermediates_below += 1;
        }
        let place = format!(
            "chain position {position} ({}), which issued chain position {},",
            issuer.describe(),
            position - 1
        );
        let is_root = issuer.is_self_issued();
        // Clients take a root from their own trust store, not from the
        // bundle, so a bad root copy matters less than a bad intermediate
        // and the simplest fix is to leave it out.
        let (who, fix) = if is_root {
            (
                "clients use their own copy of a root and mostly ignore this one, but one that builds its path through it refuses the chain",
                "clients use their own copy of a root, so remove it from the bundle, or reissue the root as a CA (`openssl req -x509 … -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign`)",
            )
        } else {
            ("TLS clients refuse the chain", CA_EXTENSIONS_FIX)
        };
        let what = if is_root { "root" } else { "intermediate" };
        // Each fault with the words clients report it in, and whether the
        // general fix (make it a proper CA) applies.
        let fault = match issuer.basic_constraints {
            _ if issuer.version < 3 => Some((
                format!(
                    "is an X.509 v{} certificate, which has no extensions and so cannot say it is a CA (`openssl x509 -req` without `-extfile` makes these): {who} (OpenSSL: \"invalid CA certificate\"; rustls: UnsupportedCertVersion)",
                    issuer.version
                ),
                true,
            )),
            None => Some((
                format!(
                    "has no basicConstraints extension, so it is not a CA certificate: {who} (OpenSSL: \"invalid CA certificate\"; rustls: EndEntityUsedAsCa)"
                ),
                true,
            )),
            Some((false, _)) => Some((
                format!(
                    "has basicConstraints CA:FALSE, so it is an end-entity (server or client) certificate, not a CA: {who} (OpenSSL: \"invalid CA certificate\"; rustls: EndEntityUsedAsCa)"
                ),
                true,
            )),
            Some((true, _)) if issuer.key_cert_sign == Some(false) => Some((
                "has a keyUsage extension without keyCertSign, so it may not sign certificates: browsers and OpenSSL-based clients refuse the chain (\"key usage does not include certificate signing\")".to_string(),
                true,
            )),
            Some((true, Some(limit))) if intermediates_below > limit => Some((
                format!(
                    "has basicConstraints pathlen:{limit}, but {intermediates_below} intermediate certificate(s) sit below it: {who} (\"path length constraint exceeded\"); reissue the {what} with a larger pathlen (`basicConstraints=critical,CA:TRUE,pathlen:{intermediates_below}`) or none, or issue the leaf from a CA closer to it"
                ),
                false,
            )),
            Some((true, _)) => None,
        };
        if let Some((fault, general_fix)) = fault {
            let fix = if general_fix {
                format!("; {fix}")
            } else {
                String::new()
            };
            let finding = Error::InvalidCertificateChain(format!("{place} {fault}{fix}"));
            if is_root {
                // Clients verify against their own copy of a root (rustls
                // checks its trust anchors first, OpenSSL prefers the
                // trusted copy), so a flawed copy at the end of a bundle
                // that works everywhere is worth a warning, not a refusal.
                findings.strict(finding);
            } else {
                findings.error(finding);
            }
        }
    }
}

/// How messages name chain position `position` (1-based): the leaf, an
/// intermediate, or the copy of a root at the end of the bundle.
pub(crate) fn role(position: usize, cert: &ParsedCert) -> String {
    match position {
        1 => "the leaf".to_string(),
        _ if cert.is_self_issued() => "the root".to_string(),
        n => format!("intermediate {}", n - 1),
    }
}

/// Judges the link from `child` (at chain position `position`) to the
/// certificate above it by the child's authorityKeyIdentifier. OpenSSL
/// picks an issuer only when that extension agrees with it
/// (X509_check_akid), so a leaf left over from before its intermediate was
/// reissued fails there with "unable to get local issuer certificate"
/// although the signature verifies.
fn aki_findings(child: &ParsedCert, issuer: &ParsedCert, position: usize, findings: &mut Findings) {
    let mismatches = child.aki_mismatches(issuer);
    if mismatches.is_empty() {
        return;
    }
    let child_role = role(position, child);
    let issuer_role = role(position + 1, issuer);
    let finding = Error::InvalidCertificateChain(format!(
        "chain position {position} ({child_role}, {}) does not name chain position {} ({issuer_role}, {}) as its issuer: {}. It was signed by a different issuing certificate with this name (the {issuer_role} was reissued and {child_role} was not), so OpenSSL-based clients do not take this one as its issuer and fail with \"unable to get local issuer certificate\"; reissue {child_role} from the current {issuer_role}, or put the original {issuer_role} (the one it was issued from) back in the bundle",
        child.describe(),
        position + 1,
        issuer.describe(),
        mismatches.join("; "),
    ));
    if issuer.is_self_issued() {
        // As for the CA checks below: clients verify against their own copy
        // of a root, so a mismatch with the copy in the bundle is a warning.
        findings.strict(finding);
    } else {
        findings.error(finding);
    }
}
