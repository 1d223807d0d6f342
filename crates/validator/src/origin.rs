//! Where an input came from (CLI, admin API, store folder), so that each
//! hint names what the user can act on there: a flag, a JSON field, or a
//! file to put in the folder.

/// Where the input came from, so that hints name what the user can act on
/// there: a flag, a JSON field, or a file in the store's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The command line (`tlsgate cert check|convert`, `tlsgate ca`).
    Cli,
    /// The admin API's upload request.
    Api,
    /// A folder in the watched certificate store.
    Store,
}

impl Origin {
    /// How to supply a missing private key.
    pub(crate) fn missing_key_fix(self) -> &'static str {
        match self {
            Origin::Cli => "give it with --key FILE",
            Origin::Api => {
                "send it in the \"private_key\" field of the request (`tlsgate cert upload --key FILE`)"
            }
            Origin::Store => {
                "put the key in the same folder under the name that pairs with the certificate's: key.pem with cert.pem, tls.key with tls.crt, privkey.pem with fullchain.pem"
            }
        }
    }

    /// How to get past an encrypted key.
    pub(crate) fn encrypted_key_fix(self) -> &'static str {
        match self {
            Origin::Cli => {
                "give its password with --password-file FILE, or decrypt it first with `openssl pkey -in KEY -out key.pem`"
            }
            Origin::Api => {
                "send its password in the \"password\" field of the request (`tlsgate cert upload --password-file FILE`), or decrypt it first with `openssl pkey -in KEY -out key.pem`"
            }
            Origin::Store => {
                "the store cannot decrypt keys (there is nowhere to give it a password): write the key unencrypted, e.g. `openssl pkey -in key.pem -out key.tmp && mv key.tmp key.pem`, and keep it mode 0600"
            }
        }
    }

    /// What else a key that does not match its certificate can mean here.
    pub(crate) fn mismatch_note(self) -> &'static str {
        match self {
            Origin::Cli | Origin::Api => "",
            Origin::Store => {
                " (a renewal that writes the certificate and the key one at a time passes through this: it clears when the second file lands)"
            }
        }
    }

    /// What happens to a bundle written out of order.
    pub(crate) fn reorder_note(self) -> &'static str {
        match self {
            Origin::Cli => "`tlsgate cert convert` writes it leaf first",
            Origin::Api => "it is stored leaf first",
            Origin::Store => {
                "it is served leaf first; `tlsgate cert convert` rewrites the file in order"
            }
        }
    }

    /// How to get past a password-protected PKCS#12 file.
    pub(crate) fn encrypted_pkcs12_fix(self) -> &'static str {
        match self {
            Origin::Cli => "give its password with --password-file FILE",
            Origin::Api => {
                "send its password in the \"password\" field of the request (`tlsgate cert upload --password-file FILE`)"
            }
            Origin::Store => {
                "the store cannot open password-protected files: convert it to PEM with `tlsgate cert convert --in FILE --password-file PASSWORD_FILE --out-cert cert.pem --out-key key.pem` and put those two files in the folder"
            }
        }
    }

    /// Where the password that did not work came from.
    pub(crate) fn wrong_password_fix(self) -> &'static str {
        match self {
            Origin::Cli => {
                "check the password file (a trailing newline is removed, other whitespace is kept)"
            }
            Origin::Api => "check the \"password\" field of the request",
            Origin::Store => "the store cannot decrypt keys: write the key unencrypted",
        }
    }

    /// Where a key given in place of the certificate belongs.
    pub(crate) fn key_goes_elsewhere(self) -> &'static str {
        match self {
            Origin::Cli => "pass it as the key (--key) and give the certificate separately",
            Origin::Api => {
                "send it in the \"private_key\" field and the certificate in \"certificate\""
            }
            Origin::Store => "it belongs in key.pem; cert.pem holds the certificate",
        }
    }
}
