//! RS256 JSON Web Tokens (RFC 7515, RFC 7519) for the two assertions mailmove signs:
//! a client's proof of its certificate key (`private_key_jwt`, RFC 7523 §2.2) and a
//! service account's request for a mailbox's token (the JWT-bearer grant, §2.1).

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailmove_model::Secret;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::error::Error;

/// How long a signed assertion is valid: long enough for a slow request, short
/// enough that a copied one is soon useless (Google takes at most an hour).
const ASSERTION_LIFETIME_SECS: u64 = 300;

/// An RSA private key that signs assertions, with the header fields that tell the
/// provider which public key to check against. `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey {
    key: Arc<RsaKeyPair>,
    header: Vec<(String, String)>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key", &"[redacted]")
            .field("header", &self.header)
            .finish()
    }
}

impl SigningKey {
    /// An RSA key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, Google's service-account
    /// files) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<SigningKey, Error> {
        let unreadable = |reason: String| {
            Error::Configuration(format!("the private key cannot be used: {reason}"))
        };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| unreadable(format!("not a PEM private key ({e})")))?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer { .. }) => {
                RsaKeyPair::from_pkcs8(der.secret_der())
            }
            PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer { .. }) => {
                RsaKeyPair::from_der(der.secret_der())
            }
            _ => return Err(unreadable("not an RSA key".into())),
        }
        .map_err(|e| unreadable(format!("not a usable RSA key ({e})")))?;
        Ok(SigningKey {
            key: Arc::new(key),
            header: Vec::new(),
        })
    }

    /// Names the public key by `kid` (the id the provider registered it under:
    /// Google's `private_key_id`).
    pub fn with_key_id(mut self, kid: &str) -> SigningKey {
        self.header.push(("kid".into(), kid.into()));
        self
    }

    /// Names the certificate by its SHA-1 thumbprint, base64url (`x5t`), as
    /// Microsoft's certificate credentials require.
    pub fn with_certificate_thumbprint(mut self, x5t: &str) -> SigningKey {
        self.header.push(("x5t".into(), x5t.into()));
        self
    }

    /// `claims` signed, as a compact JWT.
    pub fn sign(&self, claims: &Value) -> Result<Secret<String>, Error> {
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        for (name, value) in &self.header {
            header[name] = value.as_str().into();
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::Configuration("signing with the private key failed".into()))?;
        Ok(Secret::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

/// A client's assertion of its own identity (RFC 7523 §2.2, §3): `iss` and `sub`
/// the client id, `aud` the token endpoint.
pub(crate) fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
) -> Result<Secret<String>, Error> {
    let now = unix_now();
    key.sign(&json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": random_id()?,
        "iat": now,
        "nbf": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    }))
}

/// A service account's request for a token for `subject` (RFC 7523 §2.1, as Google
/// documents it for domain-wide delegation): `iss` the account, `sub` the mailbox,
/// `aud` the token endpoint, the scopes inside.
pub(crate) fn bearer_assertion(
    key: &SigningKey,
    issuer: &str,
    subject: &str,
    audience: &str,
    scope: &str,
) -> Result<Secret<String>, Error> {
    let now = unix_now();
    key.sign(&json!({
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "scope": scope,
        "jti": random_id()?,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    }))
}

/// 192 random bits, base64url: a `jti`, a `state`, a PKCE verifier's parts.
pub(crate) fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Configuration(format!("no randomness from the system: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_quoting_it() {
        let error = SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("cannot be used"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id().unwrap(), random_id().unwrap());
        assert_eq!(random_id().unwrap().len(), 32);
    }
}
