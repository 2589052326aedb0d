//! JWS compact serialization with ES256 (RFC 7515, RFC 7518 §3.4): the
//! signature scheme of PASSporTs and of the call placement directory's
//! signed messages (`switchyard-directory`).
//!
//! ```text
//!  sign(header, claims, key)  ─► BASE64URL(header).BASE64URL(claims).BASE64URL(r‖s)
//!  header::<H>(token)         ─► the JOSE header, not yet trusted (to pick the key)
//!  claims_unverified::<C>(token) ─► the claims, not yet trusted (a key they carry)
//!  verify::<C>(token, key)    ─► the claims, once the signature holds
//! ```
//!
//! Only the mechanics live here: which `alg`, `typ`, `kid` or claims a
//! token must carry is for its user to check. Nothing reads a clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not three base64url parts, or a part that is not the JSON expected.
    #[error("{0}")]
    Malformed(String),
    /// The signature does not verify with the key.
    #[error("the signature does not verify with the key")]
    Signature,
}

/// `claims` under `header`, signed with `key`: the compact form.
/// (ECDSA here is deterministic, RFC 6979: no randomness comes in.)
pub fn sign(header: &impl Serialize, claims: &impl Serialize, key: &SigningKey) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let encode = |json: Vec<u8>| B64.encode(json);
    let head = encode(serde_json::to_vec(header).unwrap_or_default());
    let body = encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{head}.{body}");
    let sig: Signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", B64.encode(sig.to_bytes()))
}

/// The JOSE header of `token` as `H`, without checking the signature:
/// what a verifier reads to choose the key (`kid`, `x5u`).
pub fn header<H: DeserializeOwned>(token: &str) -> Result<H, JwsError> {
    let part = token.split('.').next().unwrap_or_default();
    decode(part, "header")
}

/// The claims of `token` as `C`, once its signature verifies with `key`.
/// The signature is checked before the payload is parsed.
pub fn verify<C: DeserializeOwned>(token: &str, key: &VerifyingKey) -> Result<C, JwsError> {
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("not three dot-separated parts".into()));
    };
    let sig = (B64.decode(sig)).map_err(|e| JwsError::Malformed(format!("signature: {e}")))?;
    let sig = Signature::from_slice(&sig)
        .map_err(|_| JwsError::Malformed("the signature is not 64 bytes of r and s".into()))?;
    let signed = &token[..head.len() + 1 + body.len()];
    key.verify(signed.as_bytes(), &sig)
        .map_err(|_| JwsError::Signature)?;
    decode(body, "payload")
}

/// The claims of `token` as `C`, NOT verified: only to find the key a
/// self-certifying token says it is signed with (a directory's first
/// registration carries its own key). Trust nothing in it until
/// [`verify`] with that key has passed.
pub fn claims_unverified<C: DeserializeOwned>(token: &str) -> Result<C, JwsError> {
    let part = token.split('.').nth(1).unwrap_or_default();
    decode(part, "payload")
}

fn decode<T: DeserializeOwned>(part: &str, what: &str) -> Result<T, JwsError> {
    let bytes = (B64.decode(part)).map_err(|e| JwsError::Malformed(format!("{what}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| JwsError::Malformed(format!("{what}: {e}")))
}

/// A P-256 private key from PEM: SEC1 (`EC PRIVATE KEY`) or PKCS#8
/// (`PRIVATE KEY`). The error is for the caller to say whose key.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, String> {
    use p256::pkcs8::DecodePrivateKey;
    let secret = p256::SecretKey::from_sec1_pem(pem)
        .or_else(|_| p256::SecretKey::from_pkcs8_pem(pem))
        .map_err(|_| "not a P-256 private key in PEM (SEC1 or PKCS#8)".to_owned())?;
    Ok(SigningKey::from(secret))
}

/// A P-256 public key from SPKI PEM (`-----BEGIN PUBLIC KEY-----`, what
/// `openssl ec -pubout` writes).
pub fn public_key_from_pem(pem: &str) -> Result<VerifyingKey, String> {
    use p256::pkcs8::DecodePublicKey;
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|_| "not a P-256 public key in SPKI PEM (BEGIN PUBLIC KEY)".to_owned())
}

/// `key` as SPKI PEM, LF line endings.
pub fn public_key_pem(key: &VerifyingKey) -> String {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    // Encoding a valid point as SPKI cannot fail.
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        n: u32,
        s: String,
    }

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_with_its_key_and_only_with_it() {
        let claims = Claims {
            n: 7,
            s: "x".into(),
        };
        let header = serde_json::json!({"alg": "ES256", "kid": "a"});
        let token = sign(&header, &claims, &key(1));
        assert_eq!(token.split('.').count(), 3);
        let got: Claims = verify(&token, key(1).verifying_key()).unwrap();
        assert_eq!(got, claims);
        let read: serde_json::Value = super::header(&token).unwrap();
        assert_eq!(read["kid"], "a");
        assert_eq!(
            verify::<Claims>(&token, key(2).verifying_key()),
            Err(JwsError::Signature)
        );
    }

    #[test]
    fn a_tampered_or_broken_token_is_refused_saying_why() {
        let token = sign(
            &serde_json::json!({}),
            &serde_json::json!({"n": 1}),
            &key(1),
        );
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let other = sign(
            &serde_json::json!({}),
            &serde_json::json!({"n": 2}),
            &key(1),
        );
        let body = other.split('.').nth(1).unwrap();
        let head = signed.split('.').next().unwrap();
        let swapped = format!("{head}.{body}.{sig}");
        let vk = key(1).verifying_key().to_owned();
        assert_eq!(
            verify::<serde_json::Value>(&swapped, &vk),
            Err(JwsError::Signature)
        );
        for (junk, why) in [
            ("a.b", "three"),
            ("a.b.c.d", "three"),
            ("a.b.!!", "signature"),
            ("a.b.AAAA", "64 bytes"),
        ] {
            let err = verify::<serde_json::Value>(junk, &vk).unwrap_err();
            assert!(err.to_string().contains(why), "{junk}: {err}");
        }
        let err = super::header::<Claims>("e30.e30.x").unwrap_err();
        assert!(err.to_string().starts_with("header: "), "{err}");
    }

    #[test]
    fn public_keys_round_trip_through_spki_pem() {
        let vk = *key(3).verifying_key();
        let pem = public_key_pem(&vk);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        assert_eq!(public_key_from_pem(&pem), Ok(vk));
        assert!(public_key_from_pem("junk").is_err());
        assert!(signing_key_from_pem("junk").is_err());
    }
}
