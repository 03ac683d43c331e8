//! RS256 JSON Web Tokens (RFC 7515/7519) signed with ring, for the assertions the
//! test clients send: JWT-bearer grants (RFC 7523 §2.1) and `private_key_jwt` client
//! authentication (RFC 7523 §2.2).

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;

/// Signs `claims` (a JSON object) with the PKCS#8 RSA key in `key_pem`, with header
/// `{"alg":"RS256","typ":"JWT"}` and `kid` when given.
pub fn sign_rs256(key_pem: &str, kid: Option<&str>, claims: &serde_json::Value) -> Result<String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .context("reading the PKCS#8 private key")?;
    let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|e| anyhow!("not an RSA key: {e}"))?;
    let mut header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| anyhow!("RSA signing failed"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The claims of a JWT, unverified (for looking at ID tokens in tests).
pub fn decode_claims(jwt: &str) -> Result<serde_json::Value> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("not a JWT: no payload part"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .context("JWT payload is not base64url")?;
    serde_json::from_slice(&bytes).context("JWT payload is not JSON")
}
