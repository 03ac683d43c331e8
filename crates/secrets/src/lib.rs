//! Mailbox passwords encrypted at rest. A stored secret is `v1` + a random 192-bit
//! nonce + XChaCha20-Poly1305 ciphertext, bound by its associated data to the row and
//! column it belongs to, so a ciphertext copied into another row does not decrypt.
//!
//! The key comes from `MAILMOVE_SECRET_KEY` (base64 of 32 bytes) or from the file
//! `secret.key` in the data directory, created with mode 0600 on first start.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use mailmove_model::Secret;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
pub const KEY_ENV: &str = "MAILMOVE_SECRET_KEY";
pub const KEY_FILE: &str = "secret.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "{KEY_ENV} must be the base64 encoding of 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    BadKeyVariable,
    #[error("the key file {path} is not 32 bytes of base64: {why}")]
    BadKeyFile { path: String, why: String },
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored secret cannot be decrypted: wrong key, or the data was changed")]
    Undecryptable,
}

/// The key that seals every stored secret.
#[derive(Clone)]
pub struct Keyring {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([redacted])")
    }
}

impl Keyring {
    /// The key from the environment, else from `data_dir/secret.key`, created if absent.
    pub fn load_or_create(data_dir: &Path) -> Result<Keyring, SecretsError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return Keyring::from_base64(&text).ok_or(SecretsError::BadKeyVariable);
        }
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => Keyring::from_base64(&text).ok_or(SecretsError::BadKeyFile {
                path: shown,
                why: "wrong length or not base64".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                write_private(&path, STANDARD.encode(key).as_bytes()).map_err(|source| {
                    SecretsError::KeyFile {
                        path: shown,
                        source,
                    }
                })?;
                Ok(Keyring {
                    cipher: XChaCha20Poly1305::new(&key),
                })
            }
            Err(source) => Err(SecretsError::KeyFile {
                path: shown,
                source,
            }),
        }
    }

    pub fn from_base64(text: &str) -> Option<Keyring> {
        let bytes: [u8; 32] = STANDARD.decode(text.trim()).ok()?.try_into().ok()?;
        Some(Keyring {
            cipher: XChaCha20Poly1305::new(&Key::from(bytes)),
        })
    }

    /// Seals a secret for the place named by `context` (e.g. `mailbox:7:source`).
    pub fn seal(&self, secret: &Secret<String>, context: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: secret.expose().as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption with a valid key and nonce length cannot fail for in-memory data.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Secret<String>, SecretsError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(SecretsError::Undecryptable);
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| SecretsError::Undecryptable)?;
        let nonce = XNonce::from(nonce);
        let payload = Payload {
            msg: &sealed[1 + NONCE_LEN..],
            aad: context.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(&nonce, payload)
            .map_err(|_| SecretsError::Undecryptable)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| SecretsError::Undecryptable)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_string())
    }

    #[test]
    fn seals_and_opens_only_in_its_own_place() {
        let keyring = Keyring::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let sealed = keyring.seal(&secret("hunter2 with spaces "), "mailbox:1:source");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            keyring.open(&sealed, "mailbox:1:source").unwrap().expose(),
            "hunter2 with spaces "
        );
        assert!(keyring.open(&sealed, "mailbox:2:source").is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(keyring.open(&tampered, "mailbox:1:source").is_err());
        // A fresh nonce each time: the same secret never seals to the same bytes.
        assert_ne!(
            sealed,
            keyring.seal(&secret("hunter2 with spaces "), "mailbox:1:source")
        );
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::load_or_create(dir.path()).unwrap();
        let sealed = first.seal(&secret("pw"), "x");
        let second = Keyring::load_or_create(dir.path()).unwrap();
        assert_eq!(second.open(&sealed, "x").unwrap().expose(), "pw");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(format!("{first:?}").contains("redacted"));
    }

    #[test]
    fn a_bad_key_is_refused() {
        assert!(Keyring::from_base64("too short").is_none());
        assert!(Keyring::from_base64(&STANDARD.encode([1u8; 16])).is_none());
    }
}
