//! Decryption of OpenSSL "traditional" encrypted PEM private keys, the ones
//! with `Proc-Type: 4,ENCRYPTED` and `DEK-Info:` headers.
//!
//! These predate PKCS#8 and are not handled by the `pkcs8` crate, yet
//! `openssl rsa -traditional` and `openssl ec` still write them.

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipherDecrypt, BlockModeDecrypt, KeyInit, KeyIvInit};
use der::{Decode, Header, Reader, SliceReader, Tag};
use md5::{Digest, Md5};

const SUPPORTED: &str = "DES-EDE3-CBC, DES-CBC, AES-128-CBC, AES-192-CBC, AES-256-CBC";

/// Why a legacy-encrypted PEM body could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LegacyPemError {
    /// The DEK-Info header names a cipher we don't implement.
    #[error("unsupported legacy PEM cipher {0:?} (supported: {SUPPORTED})")]
    UnsupportedCipher(String),
    /// The DEK-Info header is malformed (missing comma, IV not hex, wrong IV length for the cipher).
    #[error("malformed DEK-Info header: {0}")]
    MalformedDekInfo(String),
    /// Padding check failed or the plaintext is not a DER SEQUENCE: almost always the wrong password.
    #[error("cannot decrypt the private key: wrong password (or corrupted key data)")]
    WrongPassword,
}

#[derive(Clone, Copy)]
enum CbcCipher {
    DesEde3,
    Des,
    Aes128,
    Aes192,
    Aes256,
}

impl CbcCipher {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "DES-EDE3-CBC" => Self::DesEde3,
            "DES-CBC" => Self::Des,
            "AES-128-CBC" => Self::Aes128,
            "AES-192-CBC" => Self::Aes192,
            "AES-256-CBC" => Self::Aes256,
            _ => return None,
        })
    }

    fn key_len(self) -> usize {
        match self {
            Self::DesEde3 => 24,
            Self::Des => 8,
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }

    /// The IV is one cipher block.
    fn iv_len(self) -> usize {
        match self {
            Self::DesEde3 | Self::Des => 8,
            Self::Aes128 | Self::Aes192 | Self::Aes256 => 16,
        }
    }
}

/// Decrypts a legacy-encrypted PEM body. `dek_info` is the header value after "DEK-Info:" (e.g. "AES-256-CBC,4F1E..."), surrounding whitespace allowed; `ciphertext` is the base64-decoded body. Returns the plaintext DER (PKCS#1 RSAPrivateKey or SEC1 ECPrivateKey).
pub(crate) fn decrypt(
    dek_info: &str,
    password: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, LegacyPemError> {
    let dek_info = dek_info.trim();
    let Some((name, iv_hex)) = dek_info.split_once(',') else {
        return Err(LegacyPemError::MalformedDekInfo(format!(
            "expected \"<cipher>,<hex IV>\", got {dek_info:?}"
        )));
    };
    let name = name.trim();
    let cipher = CbcCipher::from_name(name)
        .ok_or_else(|| LegacyPemError::UnsupportedCipher(name.to_owned()))?;
    let iv = decode_hex(iv_hex.trim()).ok_or_else(|| {
        LegacyPemError::MalformedDekInfo(format!("IV {:?} is not hexadecimal", iv_hex.trim()))
    })?;
    if iv.len() != cipher.iv_len() {
        return Err(LegacyPemError::MalformedDekInfo(format!(
            "{name} needs a {}-byte IV, got {} bytes",
            cipher.iv_len(),
            iv.len()
        )));
    }
    // OpenSSL salts the key derivation with the first 8 IV bytes, whatever
    // the block size.
    let key = evp_bytes_to_key(password, &iv[..8], cipher.key_len());
    let plaintext = match cipher {
        CbcCipher::DesEde3 => cbc_decrypt::<des::TdesEde3>(&key, &iv, ciphertext),
        CbcCipher::Des => cbc_decrypt::<des::Des>(&key, &iv, ciphertext),
        CbcCipher::Aes128 => cbc_decrypt::<aes::Aes128>(&key, &iv, ciphertext),
        CbcCipher::Aes192 => cbc_decrypt::<aes::Aes192>(&key, &iv, ciphertext),
        CbcCipher::Aes256 => cbc_decrypt::<aes::Aes256>(&key, &iv, ciphertext),
    }?;
    // A wrong key still yields valid PKCS#7 padding about once in 256 tries,
    // so the padding check alone cannot be trusted to detect it.
    if is_single_der_sequence(&plaintext) {
        Ok(plaintext)
    } else {
        Err(LegacyPemError::WrongPassword)
    }
}

/// OpenSSL's `EVP_BytesToKey` with MD5 and an iteration count of 1.
fn evp_bytes_to_key(password: &[u8], salt: &[u8], key_len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(key_len + 16);
    let mut prev: Option<[u8; 16]> = None;
    while key.len() < key_len {
        let mut md = Md5::new();
        if let Some(prev) = &prev {
            md.update(prev);
        }
        md.update(password);
        md.update(salt);
        let block: [u8; 16] = md.finalize().into();
        key.extend_from_slice(&block);
        prev = Some(block);
    }
    key.truncate(key_len);
    key
}

pub(crate) fn cbc_decrypt<C>(
    key: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, LegacyPemError>
where
    C: BlockCipherDecrypt + KeyInit,
{
    // Key and IV lengths come from the cipher table, so this only fails if
    // the table is wrong.
    let decryptor = cbc::Decryptor::<C>::new_from_slices(key, iv).map_err(|_| {
        LegacyPemError::MalformedDekInfo("key or IV length does not fit the cipher".to_owned())
    })?;
    // A body that is not a whole number of blocks is reported with bad
    // padding too: it is as undecryptable as a wrong key.
    decryptor
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| LegacyPemError::WrongPassword)
}

fn is_single_der_sequence(bytes: &[u8]) -> bool {
    let Ok(mut reader) = SliceReader::new(bytes) else {
        return false;
    };
    let Ok(header) = Header::decode(&mut reader) else {
        return false;
    };
    header.tag() == Tag::Sequence && header.length() == reader.remaining_len()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use base64::Engine as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn openssl_available() -> bool {
        let ok = Command::new("openssl")
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("openssl not found on PATH; skipping openssl-based test");
        }
        ok
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "tlsgate-legacy-pem-{tag}-{}-{n}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn openssl(args: &[&str], dir: &Path) -> std::process::Output {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    fn openssl_ok(args: &[&str], dir: &Path) {
        let out = openssl(args, dir);
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Splits a traditional encrypted PEM into its DEK-Info value and the
    /// decoded body; `None` if the file is not encrypted that way.
    fn parse_encrypted_pem(pem: &str) -> Option<(String, Vec<u8>)> {
        if !pem.contains("Proc-Type: 4,ENCRYPTED") {
            return None;
        }
        let mut dek_info = None;
        let mut body = String::new();
        for line in pem.lines() {
            if let Some(v) = line.strip_prefix("DEK-Info:") {
                dek_info = Some(v.to_owned());
            } else if !line.starts_with("-----") && !line.contains(':') {
                body.push_str(line.trim());
            }
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        Some((dek_info?, body))
    }

    struct Keys {
        dir: TempDir,
        rsa_der: Vec<u8>,
        ec_der: Vec<u8>,
    }

    fn make_keys() -> Keys {
        let dir = TempDir::new("keys");
        let d = &dir.0;
        openssl_ok(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa.pem",
            ],
            d,
        );
        openssl_ok(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec.pem",
            ],
            d,
        );
        openssl_ok(
            &[
                "rsa",
                "-in",
                "rsa.pem",
                "-traditional",
                "-outform",
                "DER",
                "-out",
                "rsa.der",
            ],
            d,
        );
        openssl_ok(
            &["ec", "-in", "ec.pem", "-outform", "DER", "-out", "ec.der"],
            d,
        );
        Keys {
            rsa_der: std::fs::read(dir.path("rsa.der")).unwrap(),
            ec_der: std::fs::read(dir.path("ec.der")).unwrap(),
            dir,
        }
    }

    /// Encrypts the test key with `openssl rsa|ec -<flag>` and returns the
    /// DEK-Info value and body, or `None` if this OpenSSL silently wrote an
    /// unencrypted key (it does that for `-des` without the legacy provider).
    fn encrypt(
        keys: &Keys,
        kind: &str,
        flag: &str,
        extra: &[&str],
        pass: &str,
    ) -> Option<(String, Vec<u8>)> {
        let out_name = format!("{kind}-{flag}.pem");
        let mut args = vec![kind, "-in"];
        let in_name = format!("{kind}.pem");
        args.push(&in_name);
        if kind == "rsa" {
            // Without it OpenSSL 3 writes encrypted PKCS#8 instead.
            args.push("-traditional");
        }
        let flag_arg = format!("-{flag}");
        args.push(&flag_arg);
        args.extend_from_slice(extra);
        let passout = format!("pass:{pass}");
        args.extend_from_slice(&["-passout", &passout, "-out", &out_name]);
        let out = openssl(&args, &keys.dir.0);
        if !out.status.success() {
            return None;
        }
        let pem = std::fs::read_to_string(keys.dir.path(&out_name)).unwrap();
        parse_encrypted_pem(&pem)
    }

    #[test]
    fn decrypts_openssl_traditional_keys() {
        if !openssl_available() {
            return;
        }
        let keys = make_keys();
        let cases: &[(&str, &str)] = &[
            ("des3", "DES-EDE3-CBC"),
            ("aes128", "AES-128-CBC"),
            ("aes192", "AES-192-CBC"),
            ("aes256", "AES-256-CBC"),
        ];
        for (kind, plain) in [("rsa", &keys.rsa_der), ("ec", &keys.ec_der)] {
            for (flag, cipher_name) in cases {
                let (dek_info, body) = encrypt(&keys, kind, flag, &[], "secret")
                    .unwrap_or_else(|| panic!("openssl {kind} -{flag} wrote no encrypted PEM"));
                assert!(
                    dek_info.trim().starts_with(&format!("{cipher_name},")),
                    "{dek_info}"
                );
                let got = decrypt(&dek_info, b"secret", &body).unwrap();
                assert_eq!(&got, plain, "{kind} {cipher_name}");
                // Lower-case names and IVs are accepted as OpenSSL does.
                let lower = dek_info.to_ascii_lowercase();
                assert_eq!(&decrypt(&lower, b"secret", &body).unwrap(), plain);
                assert_eq!(
                    decrypt(&dek_info, b"Secret", &body),
                    Err(LegacyPemError::WrongPassword),
                    "{kind} {cipher_name}"
                );
            }
        }
    }

    #[test]
    fn decrypts_single_des_when_openssl_allows_it() {
        if !openssl_available() {
            return;
        }
        let keys = make_keys();
        let legacy: &[&str] = &["-provider", "legacy", "-provider", "default"];
        for (kind, plain) in [("rsa", &keys.rsa_der), ("ec", &keys.ec_der)] {
            let Some((dek_info, body)) = encrypt(&keys, kind, "des", legacy, "secret")
                .or_else(|| encrypt(&keys, kind, "des", &[], "secret"))
            else {
                eprintln!("this openssl cannot write DES-CBC keys; skipping");
                return;
            };
            assert!(dek_info.trim().starts_with("DES-CBC,"), "{dek_info}");
            assert_eq!(&decrypt(&dek_info, b"secret", &body).unwrap(), plain);
            assert_eq!(
                decrypt(&dek_info, b"wrong", &body),
                Err(LegacyPemError::WrongPassword)
            );
        }
    }

    #[test]
    fn empty_and_non_ascii_passwords() {
        if !openssl_available() {
            return;
        }
        let keys = make_keys();
        // OpenSSL refuses passwords shorter than 4 bytes when writing, so use
        // a multi-byte UTF-8 one to exercise raw password bytes.
        let pass = "pässwörd";
        let (dek_info, body) = encrypt(&keys, "ec", "aes256", &[], pass).unwrap();
        assert_eq!(
            decrypt(&dek_info, pass.as_bytes(), &body).unwrap(),
            keys.ec_der
        );
        assert_eq!(
            decrypt(&dek_info, b"", &body),
            Err(LegacyPemError::WrongPassword)
        );
    }

    #[test]
    fn known_answer_evp_bytes_to_key() {
        // `openssl enc -aes-256-cbc -md md5 -pass pass:secret -S 0102030405060708 -P`
        // prints key=C9E5...79AB iv=E24B...D893; the IV is simply the next
        // 16 derived bytes, so one 48-byte derivation covers three MD5 rounds.
        let key_iv = evp_bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 48);
        assert_eq!(
            hex(&key_iv),
            "C9E5A1BD216DBE1317E230CEF48F38EE7F0E17AD64022144BCCEC4A1AA2879AB\
             E24B32BBBC4EF02ECBCB6576523AD893"
        );
        assert_eq!(
            evp_bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 8),
            key_iv[..8]
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn header_errors() {
        let body = [0u8; 32];
        assert!(matches!(
            decrypt("RC2-CBC,0011223344556677", b"x", &body),
            Err(LegacyPemError::UnsupportedCipher(name)) if name == "RC2-CBC"
        ));
        assert!(matches!(
            decrypt("AES-256-GCM,00112233445566778899AABBCCDDEEFF", b"x", &body),
            Err(LegacyPemError::UnsupportedCipher(_))
        ));
        let err = decrypt("CAMELLIA-128-CBC,00", b"x", &body).unwrap_err();
        assert!(err.to_string().contains("AES-256-CBC"), "{err}");
        for bad in [
            "",
            "AES-128-CBC",
            "AES-128-CBC 00112233445566778899AABBCCDDEEFF",
            "AES-128-CBC,",
            "AES-128-CBC,0011223344556677",
            "AES-128-CBC,00112233445566778899AABBCCDDEEF",
            "AES-128-CBC,00112233445566778899AABBCCDDEEFG",
            "AES-128-CBC,00112233445566778899AABBCCDDEEFF00",
            "DES-EDE3-CBC,00112233445566778899AABBCCDDEEFF",
            "DES-CBC,+0112233445566778",
            "DES-CBC,00112233445566é",
        ] {
            assert!(
                matches!(
                    decrypt(bad, b"x", &body),
                    Err(LegacyPemError::MalformedDekInfo(_))
                ),
                "{bad:?}"
            );
        }
        // Whitespace around the value and around each part is tolerated.
        assert_eq!(
            decrypt(" des-cbc , 0011223344556677 \r\n", b"x", &body),
            Err(LegacyPemError::WrongPassword)
        );
    }

    #[test]
    fn truncated_or_garbage_bodies_never_panic() {
        let headers = [
            "DES-EDE3-CBC,0011223344556677",
            "DES-CBC,0011223344556677",
            "AES-128-CBC,00112233445566778899AABBCCDDEEFF",
            "AES-192-CBC,00112233445566778899AABBCCDDEEFF",
            "AES-256-CBC,00112233445566778899AABBCCDDEEFF",
        ];
        // Deterministic xorshift so failures are reproducible.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for header in headers {
            for len in 0..80 {
                for _ in 0..20 {
                    let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    let pass: Vec<u8> = (0..(next() % 12)).map(|_| next() as u8).collect();
                    match decrypt(header, &pass, &body) {
                        Ok(pt) => assert!(is_single_der_sequence(&pt)),
                        Err(e) => assert_eq!(e, LegacyPemError::WrongPassword),
                    }
                }
            }
        }
    }

    #[test]
    fn der_sequence_check() {
        assert!(is_single_der_sequence(&[0x30, 0x00]));
        assert!(is_single_der_sequence(&[0x30, 0x02, 0x05, 0x00]));
        assert!(!is_single_der_sequence(&[]));
        assert!(!is_single_der_sequence(&[0x30]));
        assert!(!is_single_der_sequence(&[0x31, 0x00]));
        assert!(!is_single_der_sequence(&[0x30, 0x03, 0x05, 0x00]));
        assert!(!is_single_der_sequence(&[0x30, 0x01, 0x05, 0x00]));
        assert!(!is_single_der_sequence(&[0x30, 0x80, 0x00, 0x00]));
        assert!(!is_single_der_sequence(&[0x30, 0x81, 0x02, 0x05, 0x00]));
    }
}
