//! Access tokens (C2): JWTs that let a browser or app client act for one
//! identity of an account, signed (HS256) with the secret of one of the
//! account's API keys.
//!
//! ```text
//!   header  {"alg":"HS256","typ":"JWT","kid":"SK…"}     kid: the API key's id
//!   claims  {"sub":"AC…",                               the key's account
//!            "iat":1796…, "exp":1796…,                  unix seconds, exp - iat ≤ 24 h
//!            "grants":{"identity":"alice",
//!                      "incoming":true,                 may receive calls
//!                      "outgoing":{"handler":"ivr",     may place calls through
//!                                  "params":{…}}}}      this component
//! ```
//!
//! A tenant mints them on its own server with any JWT library (the key
//! secret's 64 hex digits, as text, are the HMAC key), or asks
//! `POST /v1/tokens`. [`verify`] checks everything but the grants; each use
//! asks for the grant it needs ([`Verified::may_receive`],
//! [`Verified::may_call`]), so a token never does more than it says. Time
//! comes in as an argument (tests run on a virtual clock).

use std::collections::{BTreeMap, HashSet};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::tenancy::TokenKey;

/// The longest a token may live: `exp - iat`.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// Clock difference tolerated between the minting server and this one.
pub const LEEWAY_SECS: u64 = 30;
/// Longest identity.
const MAX_IDENTITY: usize = 128;

/// What a token lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// The client's name within the account (`client:alice`).
    pub identity: String,
    /// May receive calls (`dial client:alice`).
    #[serde(default)]
    pub incoming: bool,
    /// May place calls, always through this handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<Outgoing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The account's component that decides the client's calls.
    pub handler: String,
    /// Passed to the handler with each call the client places.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    grants: Grants,
}

/// A token that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub account: String,
    pub key_id: String,
    pub grants: Grants,
    /// Unix seconds.
    pub expires: u64,
}

/// Why a token is refused. Each says what to fix; none reveals a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("tokens are signed with HS256, not {0}")]
    Algorithm(String),
    #[error("the token's header has no kid (the id of the API key that signed it)")]
    NoKeyId,
    #[error("no API key {0}")]
    UnknownKey(String),
    #[error("API key {0} is revoked")]
    RevokedKey(String),
    #[error("the account of API key {0} is suspended")]
    Suspended(String),
    #[error("API key {0} was made before access tokens and cannot sign them: make a new key")]
    KeyNotSealed(String),
    #[error(
        "the secret of API key {0} cannot be opened (the runtime's sealing key changed): make a new key"
    )]
    KeyUnsealable(String),
    #[error("the token's signature does not match API key {0}")]
    BadSignature(String),
    #[error("the token's sub {sub} is not the account of API key {key}")]
    WrongAccount { sub: String, key: String },
    #[error("the token expired at {expired} (unix seconds; now {now})")]
    Expired { expired: u64, now: u64 },
    #[error("the token is issued in the future (iat {iat}, now {now})")]
    NotYetValid { iat: u64, now: u64 },
    #[error("a token lives at most {MAX_TTL_SECS} s; this one {0} s")]
    TooLong(u64),
    #[error("identity must be 1 to {MAX_IDENTITY} letters, digits or _ . - + @, not {0:?}")]
    Identity(String),
    #[error("outgoing.handler must name a component")]
    NoHandler,
    #[error("the token does not grant {0}")]
    NotGranted(&'static str),
}

impl Verified {
    /// The grant to receive calls.
    pub fn may_receive(&self) -> Result<(), TokenError> {
        if self.grants.incoming {
            Ok(())
        } else {
            Err(TokenError::NotGranted("incoming calls"))
        }
    }

    /// The grant to place calls, and the handler they go through.
    pub fn may_call(&self) -> Result<&Outgoing, TokenError> {
        self.grants
            .outgoing
            .as_ref()
            .ok_or(TokenError::NotGranted("outgoing calls"))
    }
}

/// Checks what a token says it grants, before it is signed or after it is read.
fn check_grants(grants: &Grants) -> Result<(), TokenError> {
    let id = &grants.identity;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-+@".contains(c);
    if id.is_empty() || id.len() > MAX_IDENTITY || !id.chars().all(allowed) {
        return Err(TokenError::Identity(id.clone()));
    }
    if grants
        .outgoing
        .as_ref()
        .is_some_and(|o| o.handler.is_empty())
    {
        return Err(TokenError::NoHandler);
    }
    Ok(())
}

/// A token for `grants`, signed with key `key_id` (of `account`, secret
/// `secret`), issued at `now` and living `ttl_secs`.
pub fn mint(
    key_id: &str,
    account: &str,
    secret: &str,
    grants: Grants,
    now: u64,
    ttl_secs: u64,
) -> Result<String, TokenError> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(TokenError::TooLong(ttl_secs));
    }
    check_grants(&grants)?;
    let claims = Claims {
        sub: account.to_owned(),
        iat: now,
        exp: now + ttl_secs,
        grants,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_id.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// The account and secret of key `key_id` if it may sign tokens, else why not.
pub fn signer(key_id: &str, key: TokenKey) -> Result<(String, String), TokenError> {
    let id = key_id.to_owned();
    match key {
        TokenKey::Live { account, secret } => Ok((account, secret)),
        TokenKey::Unknown => Err(TokenError::UnknownKey(id)),
        TokenKey::Revoked { .. } => Err(TokenError::RevokedKey(id)),
        TokenKey::Suspended { .. } => Err(TokenError::Suspended(id)),
        TokenKey::NotSealed { .. } => Err(TokenError::KeyNotSealed(id)),
        TokenKey::Unsealable { .. } => Err(TokenError::KeyUnsealable(id)),
    }
}

/// Checks `token` at `now` (unix seconds): its form, the key that signed
/// it (`key` looks a key id up, as [`crate::tenancy::Accounts::token_key`]
/// does), the signature, the account, the times and the grants' form.
pub fn verify(
    token: &str,
    now: u64,
    key: impl FnOnce(&str) -> TokenKey,
) -> Result<Verified, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::HS256 {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let key_id = header.kid.ok_or(TokenError::NoKeyId)?;
    let found = key(&key_id);
    let (account, secret) = signer(&key_id, found)?;
    // Times are checked below against the `now` given, not the system clock.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims = HashSet::new();
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature(key_id.clone()),
        _ => TokenError::Malformed(e.to_string()),
    })?
    .claims;
    if claims.sub != account {
        return Err(TokenError::WrongAccount {
            sub: claims.sub,
            key: key_id,
        });
    }
    if claims.iat > now + LEEWAY_SECS {
        return Err(TokenError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if claims.exp + LEEWAY_SECS <= now {
        return Err(TokenError::Expired {
            expired: claims.exp,
            now,
        });
    }
    let lifetime = claims.exp.saturating_sub(claims.iat);
    if lifetime > MAX_TTL_SECS {
        return Err(TokenError::TooLong(lifetime));
    }
    check_grants(&claims.grants)?;
    Ok(Verified {
        account,
        key_id,
        grants: claims.grants,
        expires: claims.exp,
    })
}

/// The wall clock in unix seconds, for the IO edges.
pub fn unix_now() -> u64 {
    crate::wasm::entropy::unix_ms_now() / 1000
}

/// [`verify`] against the accounts store (blocking: SQLite). With
/// `account`, a key of any other account reads as unknown, so a tenant
/// learns nothing of another's keys. The outer error is the store's.
pub fn check(
    accounts: &crate::tenancy::Accounts,
    token: &str,
    now: u64,
    account: Option<&str>,
) -> anyhow::Result<Result<Verified, TokenError>> {
    let mut failure = None;
    let verdict = verify(token, now, |kid| match accounts.token_key(kid) {
        Ok(key) if account.is_none_or(|a| key.account() == Some(a)) => key,
        Ok(_) => TokenKey::Unknown,
        Err(e) => {
            failure = Some(e);
            TokenKey::Unknown
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(verdict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const SECRET: &str = "5f0c4b4d9a0e3c1e7f6b2a8d4c3e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e";

    fn alice() -> Grants {
        Grants {
            identity: "alice".into(),
            incoming: true,
            outgoing: None,
        }
    }

    fn live(kid: &str) -> TokenKey {
        assert_eq!(kid, "SK1");
        TokenKey::Live {
            account: "AC1".into(),
            secret: SECRET.into(),
        }
    }

    fn token(grants: Grants) -> String {
        mint("SK1", "AC1", SECRET, grants, NOW, 3600).unwrap()
    }

    /// A token signed by hand, the way a tenant's own server would: a
    /// header and claims we choose, HMAC-SHA256 with `secret`.
    fn signed(header: &str, claims: &str, secret: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("{body}.{}", b64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_minted_token_verifies_with_its_grants() {
        let outgoing = Outgoing {
            handler: "ivr".into(),
            params: BTreeMap::from([("team".into(), "sales".into())]),
        };
        let grants = Grants {
            outgoing: Some(outgoing.clone()),
            ..alice()
        };
        let got = verify(&token(grants.clone()), NOW + 10, live).unwrap();
        assert_eq!(
            got,
            Verified {
                account: "AC1".into(),
                key_id: "SK1".into(),
                grants,
                expires: NOW + 3600,
            }
        );
        assert_eq!(got.may_receive(), Ok(()));
        assert_eq!(got.may_call(), Ok(&outgoing));
    }

    #[test]
    fn a_token_signed_by_hand_as_a_tenant_would_verifies() {
        let claims = format!(
            r#"{{"sub":"AC1","iat":{NOW},"exp":{},"grants":{{"identity":"bob"}}}}"#,
            NOW + 60
        );
        let token = signed(
            r#"{"alg":"HS256","typ":"JWT","kid":"SK1"}"#,
            &claims,
            SECRET,
        );
        let got = verify(&token, NOW, live).unwrap();
        assert_eq!(got.grants.identity, "bob");
        assert_eq!(
            got.may_receive(),
            Err(TokenError::NotGranted("incoming calls")),
            "grants default to nothing"
        );
        assert_eq!(
            got.may_call().unwrap_err(),
            TokenError::NotGranted("outgoing calls")
        );
    }

    #[test]
    fn expired_and_future_tokens_are_refused_beyond_the_leeway() {
        let t = token(alice());
        assert!(verify(&t, NOW + 3600 + LEEWAY_SECS - 1, live).is_ok());
        assert_eq!(
            verify(&t, NOW + 3600 + LEEWAY_SECS, live),
            Err(TokenError::Expired {
                expired: NOW + 3600,
                now: NOW + 3600 + LEEWAY_SECS
            })
        );
        assert_eq!(
            verify(&t, NOW - LEEWAY_SECS - 1, live),
            Err(TokenError::NotYetValid {
                iat: NOW,
                now: NOW - LEEWAY_SECS - 1
            })
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let t = token(alice());
        // Another secret.
        let other = "0".repeat(64);
        let forged = mint("SK1", "AC1", &other, alice(), NOW, 60).unwrap();
        assert_eq!(
            verify(&forged, NOW, live),
            Err(TokenError::BadSignature("SK1".into()))
        );
        // Claims changed after signing (a grant added).
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let claims = format!(
            r#"{{"sub":"AC1","iat":{NOW},"exp":{},"grants":{{"identity":"alice","incoming":true,"outgoing":{{"handler":"x"}}}}}}"#,
            NOW + 60
        );
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let tampered = format!("{head}.{}.{sig}", b64.encode(claims));
        assert_eq!(
            verify(&tampered, NOW, live),
            Err(TokenError::BadSignature("SK1".into()))
        );
        // alg none, and another algorithm.
        let none = signed(r#"{"alg":"none","kid":"SK1"}"#, "{}", SECRET);
        assert!(matches!(
            verify(&none, NOW, live),
            Err(TokenError::Malformed(_))
        ));
        let hs512 = signed(r#"{"alg":"HS512","kid":"SK1"}"#, "{}", SECRET);
        assert_eq!(
            verify(&hs512, NOW, live),
            Err(TokenError::Algorithm("HS512".into()))
        );
        // Another account's sub under this key.
        let theirs = signed(
            r#"{"alg":"HS256","kid":"SK1"}"#,
            &format!(
                r#"{{"sub":"AC2","iat":{NOW},"exp":{},"grants":{{"identity":"a"}}}}"#,
                NOW + 60
            ),
            SECRET,
        );
        assert_eq!(
            verify(&theirs, NOW, live),
            Err(TokenError::WrongAccount {
                sub: "AC2".into(),
                key: "SK1".into()
            })
        );
        for junk in ["", "a.b", "a.b.c", "...", "\u{0}"] {
            assert!(matches!(
                verify(junk, NOW, live),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn the_key_decides_what_a_well_signed_token_is_worth() {
        let t = token(alice());
        let refused = |key: TokenKey| verify(&t, NOW, |_| key).unwrap_err();
        let acct = || "AC1".to_string();
        assert_eq!(
            refused(TokenKey::Unknown),
            TokenError::UnknownKey("SK1".into())
        );
        assert_eq!(
            refused(TokenKey::Revoked { account: acct() }),
            TokenError::RevokedKey("SK1".into())
        );
        assert_eq!(
            refused(TokenKey::Suspended { account: acct() }),
            TokenError::Suspended("SK1".into())
        );
        assert_eq!(
            refused(TokenKey::NotSealed { account: acct() }),
            TokenError::KeyNotSealed("SK1".into())
        );
        assert_eq!(
            refused(TokenKey::Unsealable { account: acct() }),
            TokenError::KeyUnsealable("SK1".into())
        );
        let no_kid = signed(r#"{"alg":"HS256"}"#, "{}", SECRET);
        assert_eq!(verify(&no_kid, NOW, live), Err(TokenError::NoKeyId));
    }

    #[test]
    fn lifetimes_and_identities_are_bounded() {
        assert_eq!(
            mint("SK1", "AC1", SECRET, alice(), NOW, MAX_TTL_SECS + 1),
            Err(TokenError::TooLong(MAX_TTL_SECS + 1))
        );
        assert_eq!(
            mint("SK1", "AC1", SECRET, alice(), NOW, 0),
            Err(TokenError::TooLong(0))
        );
        let long = signed(
            r#"{"alg":"HS256","kid":"SK1"}"#,
            &format!(
                r#"{{"sub":"AC1","iat":{NOW},"exp":{},"grants":{{"identity":"a"}}}}"#,
                NOW + MAX_TTL_SECS + 1
            ),
            SECRET,
        );
        assert_eq!(
            verify(&long, NOW, live),
            Err(TokenError::TooLong(MAX_TTL_SECS + 1))
        );
        for bad in ["", "a b", "<script>", &"x".repeat(129)] {
            let grants = Grants {
                identity: bad.into(),
                ..alice()
            };
            assert_eq!(
                mint("SK1", "AC1", SECRET, grants, NOW, 60),
                Err(TokenError::Identity(bad.into()))
            );
        }
        let no_handler = Grants {
            outgoing: Some(Outgoing {
                handler: String::new(),
                params: BTreeMap::new(),
            }),
            ..alice()
        };
        assert_eq!(
            mint("SK1", "AC1", SECRET, no_handler, NOW, 60),
            Err(TokenError::NoHandler)
        );
    }
}
