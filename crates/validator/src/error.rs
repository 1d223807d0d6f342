//! The validator's one error type: every finding, error or warning, carries
//! a SPEC §4 code and a message that says what is wrong, where, and what to do.
//!
//! Two codes go beyond the SPEC's table (codes are stable, so new ones are
//! only ever added): `MissingSubjectAltName` (warning) and
//! `CertificateNotForServerAuth` (error), both about a server leaf.

/// A validation finding. The same type is used for errors and warnings: the
/// [`crate::Report`] decides which list a finding lands in (for example
/// `InvalidCertificateChain` for a wrong order is a warning unless strict).
///
/// Each variant holds the complete human-readable message; [`Error::code`]
/// returns the stable SPEC code that JSON output and the admin API use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request field (name, kind, option) is malformed.
    #[error("{0}")]
    InvalidParameter(String),
    /// Certificate content is not a certificate (bad PEM armour, bad base64, not DER).
    #[error("{0}")]
    InvalidCertificateFormat(String),
    /// Private key content cannot be parsed.
    #[error("{0}")]
    InvalidPrivateKeyFormat(String),
    /// The key is encrypted and no password was given.
    #[error("{0}")]
    EncryptedPrivateKey(String),
    /// The password does not decrypt the key or the PKCS#12 file.
    #[error("{0}")]
    InvalidPassword(String),
    /// A server certificate came without its private key.
    #[error("{0}")]
    MissingPrivateKey(String),
    /// The private key does not belong to the leaf certificate.
    #[error("{0}")]
    KeyCertificateMismatch(String),
    /// A chain link does not verify, the certificates are not one chain, or
    /// (as a warning) the chain is out of order.
    #[error("{0}")]
    InvalidCertificateChain(String),
    /// The leaf's issuer is neither in the bundle nor a well-known root.
    #[error("{0}")]
    CertificateChainNotFound(String),
    /// A key algorithm or curve outside SPEC R24.
    #[error("{0}")]
    UnsupportedKeyAlgorithm(String),
    /// An RSA key below 2048 bits.
    #[error("{0}")]
    WeakKey(String),
    /// An MD5 or SHA-1 signature on a certificate that is not a self-signed root.
    #[error("{0}")]
    WeakSignatureAlgorithm(String),
    /// The input contains `DH PARAMETERS`, which an ECDHE-only server cannot use.
    #[error("{0}")]
    DhParametersNotSupported(String),
    /// A certificate in the chain is past its notAfter.
    #[error("{0}")]
    CertificateExpired(String),
    /// A certificate in the chain is before its notBefore.
    #[error("{0}")]
    CertificateNotYetValid(String),
    /// The leaf has 30 days or fewer left (always a warning).
    #[error("{0}")]
    CertificateExpiringSoon(String),
    /// A `ca` certificate without basicConstraints CA:TRUE.
    #[error("{0}")]
    NotACaCertificate(String),
    /// PEM that is not in canonical form (line length, blank lines, spaces, CRLF).
    #[error("{0}")]
    NonCanonicalPem(String),
    /// A server leaf names no DNS name or IP address in subjectAltName
    /// (always a warning): browsers and rustls clients do not match the CN.
    #[error("{0}")]
    MissingSubjectAltName(String),
    /// A server leaf whose extendedKeyUsage lacks serverAuth (and
    /// anyExtendedKeyUsage), e.g. a client certificate: clients refuse it.
    /// Also a server or client leaf whose keyUsage lacks digitalSignature:
    /// with ECDHE the server (and a client, in CertificateVerify) must sign.
    #[error("{0}")]
    CertificateNotForServerAuth(String),
}

impl Error {
    /// The stable SPEC §4 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidParameter(_) => "InvalidParameter",
            Error::InvalidCertificateFormat(_) => "InvalidCertificateFormat",
            Error::InvalidPrivateKeyFormat(_) => "InvalidPrivateKeyFormat",
            Error::EncryptedPrivateKey(_) => "EncryptedPrivateKey",
            Error::InvalidPassword(_) => "InvalidPassword",
            Error::MissingPrivateKey(_) => "MissingPrivateKey",
            Error::KeyCertificateMismatch(_) => "KeyCertificateMismatch",
            Error::InvalidCertificateChain(_) => "InvalidCertificateChain",
            Error::CertificateChainNotFound(_) => "CertificateChainNotFound",
            Error::UnsupportedKeyAlgorithm(_) => "UnsupportedKeyAlgorithm",
            Error::WeakKey(_) => "WeakKey",
            Error::WeakSignatureAlgorithm(_) => "WeakSignatureAlgorithm",
            Error::DhParametersNotSupported(_) => "DhParametersNotSupported",
            Error::CertificateExpired(_) => "CertificateExpired",
            Error::CertificateNotYetValid(_) => "CertificateNotYetValid",
            Error::CertificateExpiringSoon(_) => "CertificateExpiringSoon",
            Error::NotACaCertificate(_) => "NotACaCertificate",
            Error::NonCanonicalPem(_) => "NonCanonicalPem",
            Error::MissingSubjectAltName(_) => "MissingSubjectAltName",
            Error::CertificateNotForServerAuth(_) => "CertificateNotForServerAuth",
        }
    }

    /// The message without the code.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidParameter(m)
            | Error::InvalidCertificateFormat(m)
            | Error::InvalidPrivateKeyFormat(m)
            | Error::EncryptedPrivateKey(m)
            | Error::InvalidPassword(m)
            | Error::MissingPrivateKey(m)
            | Error::KeyCertificateMismatch(m)
            | Error::InvalidCertificateChain(m)
            | Error::CertificateChainNotFound(m)
            | Error::UnsupportedKeyAlgorithm(m)
            | Error::WeakKey(m)
            | Error::WeakSignatureAlgorithm(m)
            | Error::DhParametersNotSupported(m)
            | Error::CertificateExpired(m)
            | Error::CertificateNotYetValid(m)
            | Error::CertificateExpiringSoon(m)
            | Error::NotACaCertificate(m)
            | Error::NonCanonicalPem(m)
            | Error::MissingSubjectAltName(m)
            | Error::CertificateNotForServerAuth(m) => m,
        }
    }

    /// True when the input could not be decoded into certificates and a key
    /// at all (as opposed to decoded material that fails a policy check).
    /// `cert convert` refuses to write output only for these.
    pub fn blocks_conversion(&self) -> bool {
        matches!(
            self,
            Error::InvalidParameter(_)
                | Error::InvalidCertificateFormat(_)
                | Error::InvalidPrivateKeyFormat(_)
                | Error::EncryptedPrivateKey(_)
                | Error::InvalidPassword(_)
                | Error::KeyCertificateMismatch(_)
                | Error::DhParametersNotSupported(_)
        )
    }
}
