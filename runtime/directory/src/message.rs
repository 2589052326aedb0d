//! The signed messages of the directory and of confirmations: compact
//! JWS, ES256 (`switchyard_shaken::jws`), `kid` = the signing provider's
//! id, `typ` naming the kind of message so that one kind can never be
//! passed off as another (a reply replayed as a query…).
//!
//! ```text
//!  ProviderUpdate  typ switchyard-update+jwt  provider ─► directory
//!                  {provider, confirm_url, key, identifiers, iat}
//!  Query           typ switchyard-query+jwt   asker ─► provider
//!                  {asker, orig, dest, at, iat, nonce}
//!  Reply           typ switchyard-reply+jwt   provider ─► asker
//!                  {provider, answer, orig, dest, nonce, iat}
//! ```
//!
//! Every message is fresh: its `iat` within [`FRESH_SECS`] of the
//! receiver's clock (passed in, Unix seconds). A provider's `key` is its
//! P-256 public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`, what
//! `openssl ec -pubout` writes): text any JOSE or TLS tool reads, and no
//! JWK code to carry.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchyard_shaken::jws::{self, JwsError};
use switchyard_shaken::{SigningKey, VerifyingKey};

use crate::{FRESH_SECS, Identifier, IdentifierError};

/// Longest message accepted, in bytes: a provider's update with a
/// thousand entries is well under it.
pub const MAX_TOKEN: usize = 64 * 1024;
/// How far a query's `at` (the call's time) may be from now: confirmations
/// are about calls being set up, not history. Placements are kept longer
/// than this plus the window (the store's retention).
pub const MAX_CALL_AGE_SECS: i64 = 300;
/// Most identifiers one provider may list.
pub const MAX_IDENTIFIERS: usize = 1_000;
/// Longest provider id.
const MAX_ID: usize = 255;
/// Longest confirmation URL.
const MAX_URL: usize = 2_048;
/// Longest `orig`/`dest` of a query.
const MAX_PARTY: usize = 512;

/// Why a message was refused. Which HTTP status each is: the edge's
/// business (malformed and stale 400, signature 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not a compact JWS of the expected kind, or claims missing, of the
    /// wrong type or out of range; says which.
    #[error("malformed {kind}: {why}")]
    Malformed { kind: &'static str, why: String },
    /// The signature does not verify with the key it must be signed with.
    #[error("the {kind} is not signed by {signer}'s key")]
    Signature { kind: &'static str, signer: String },
    /// `iat` too far from now.
    #[error("the {kind} is stale: iat {iat} is {age} s from now (at most {FRESH_SECS})")]
    Stale {
        kind: &'static str,
        iat: i64,
        age: i64,
    },
}

impl MessageError {
    fn malformed(kind: Kind, why: impl Into<String>) -> Self {
        MessageError::Malformed {
            kind: kind.noun(),
            why: why.into(),
        }
    }
}

/// The kinds of signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Query,
    Reply,
}

impl Kind {
    fn typ(self) -> &'static str {
        match self {
            Kind::Update => "switchyard-update+jwt",
            Kind::Query => "switchyard-query+jwt",
            Kind::Reply => "switchyard-reply+jwt",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Update => "provider update",
            Kind::Query => "confirmation query",
            Kind::Reply => "confirmation reply",
        }
    }
}

/// The JOSE header, keys in lexicographic order.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

fn sign(kind: Kind, kid: &str, claims: &impl Serialize, key: &SigningKey) -> String {
    let header = Header {
        alg: "ES256".into(),
        kid: kid.into(),
        typ: kind.typ().into(),
    };
    jws::sign(&header, claims, key)
}

/// The `kid` of a `kind` message, unverified: who says they signed it.
fn peek(kind: Kind, token: &str) -> Result<String, MessageError> {
    let bad = |why: String| MessageError::malformed(kind, why);
    if token.len() > MAX_TOKEN {
        return Err(bad(format!("longer than {MAX_TOKEN} bytes")));
    }
    let header: Header = jws::header(token.trim()).map_err(|e| bad(e.to_string()))?;
    if header.alg != "ES256" {
        return Err(bad(format!("alg is {:?}, not ES256", header.alg)));
    }
    if header.typ != kind.typ() {
        return Err(bad(format!(
            "typ is {:?}, not {:?}",
            header.typ,
            kind.typ()
        )));
    }
    provider_id(&header.kid).map_err(|why| bad(format!("kid: {why}")))?;
    Ok(header.kid)
}

/// The claims of a `kind` message signed with `key` by `signer`, fresh
/// at `now`.
fn open<C: DeserializeOwned>(
    kind: Kind,
    token: &str,
    signer: &str,
    key: &VerifyingKey,
    now: i64,
    iat: impl Fn(&C) -> i64,
) -> Result<C, MessageError> {
    let claims = jws::verify(token.trim(), key).map_err(|e| match e {
        JwsError::Signature => MessageError::Signature {
            kind: kind.noun(),
            signer: signer.to_owned(),
        },
        other => MessageError::malformed(kind, other.to_string()),
    })?;
    fresh(kind, iat(&claims), now)?;
    Ok(claims)
}

fn fresh(kind: Kind, iat: i64, now: i64) -> Result<(), MessageError> {
    switchyard_shaken::fresh(iat, now).map_err(|age| MessageError::Stale {
        kind: kind.noun(),
        iat,
        age,
    })
}

/// A provider id: 1 to 255 of letters, digits, `.`, `-`, `_` (it is a
/// path segment of the directory's REST API), e.g. `a.example`.
pub fn provider_id(id: &str) -> Result<(), String> {
    let ok = (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "provider id {id:?} must be 1 to {MAX_ID} letters, digits, '.', '-' or '_'"
        )),
    }
}

/// A confirmation URL: http or https, a host, no spaces.
pub fn confirm_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    let plain = url
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && !"<>\"".contains(c));
    match host {
        Some(host) if !host.is_empty() && plain && url.len() <= MAX_URL => Ok(()),
        _ => Err(format!(
            "confirm_url {url:?} must be an http:// or https:// URL with a host"
        )),
    }
}

// ---------------------------------------------------------- provider update

/// A provider's entry as it signs it: create or replace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderUpdate {
    pub provider: String,
    pub confirm_url: String,
    /// The provider's P-256 public key, SPKI PEM: what queries' replies
    /// are checked with, and what its next update must be signed with.
    pub key: String,
    pub identifiers: Vec<String>,
    /// Unix seconds.
    pub iat: i64,
}

/// A provider as the directory keeps it: an update that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub id: String,
    pub confirm_url: String,
    pub key: VerifyingKey,
    pub identifiers: Vec<Identifier>,
    /// The `iat` of the update that set it.
    pub updated: i64,
}

impl Provider {
    /// The key as SPKI PEM.
    pub fn key_pem(&self) -> String {
        jws::public_key_pem(&self.key)
    }
}

impl ProviderUpdate {
    /// The update, signed with `key` (the key on record; the new key
    /// itself for a first registration).
    pub fn sign(&self, key: &SigningKey) -> String {
        sign(Kind::Update, &self.provider, self, key)
    }

    /// Who an update says it is from, unverified (to find the key on
    /// record).
    pub fn peek(token: &str) -> Result<String, MessageError> {
        peek(Kind::Update, token)
    }

    /// Checks an update of provider `kid` (from [`peek`](Self::peek)):
    /// signed with `on_record` when the provider is known, else with the
    /// key it carries (a first registration is self-signed); fresh at
    /// `now`; its claims well-formed.
    pub fn verify(
        token: &str,
        on_record: Option<&VerifyingKey>,
        now: i64,
    ) -> Result<Provider, MessageError> {
        let kind = Kind::Update;
        let bad = |why: String| MessageError::malformed(kind, why);
        let kid = peek(kind, token)?;
        let carried;
        let key = match on_record {
            Some(key) => key,
            None => {
                let claims: ProviderUpdate =
                    jws::claims_unverified(token.trim()).map_err(|e| bad(e.to_string()))?;
                carried =
                    jws::public_key_from_pem(&claims.key).map_err(|e| bad(format!("key: {e}")))?;
                &carried
            }
        };
        let update: ProviderUpdate = open(kind, token, &kid, key, now, |u: &ProviderUpdate| u.iat)?;
        if update.provider != kid {
            return Err(bad(format!(
                "provider {:?} is not the kid {kid:?}",
                update.provider
            )));
        }
        confirm_url(&update.confirm_url).map_err(bad)?;
        let key = jws::public_key_from_pem(&update.key).map_err(|e| bad(format!("key: {e}")))?;
        if update.identifiers.len() > MAX_IDENTIFIERS {
            return Err(bad(format!(
                "{} identifiers; at most {MAX_IDENTIFIERS}",
                update.identifiers.len()
            )));
        }
        let mut identifiers = (update.identifiers.iter())
            .map(|text| Identifier::parse(text))
            .collect::<Result<Vec<_>, IdentifierError>>()
            .map_err(|e| bad(e.to_string()))?;
        identifiers.sort();
        identifiers.dedup();
        Ok(Provider {
            id: update.provider,
            confirm_url: update.confirm_url,
            key,
            identifiers,
            updated: update.iat,
        })
    }
}

// ---------------------------------------------------------- confirmation

/// "Did you place a call from `orig` to `dest` around `at`?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The asking provider's id (its key is in the directory).
    pub asker: String,
    pub orig: String,
    pub dest: String,
    /// When the call arrived, Unix seconds.
    pub at: i64,
    /// Unix seconds.
    pub iat: i64,
    /// Echoed by the reply: binds it to this query.
    pub nonce: String,
}

impl Query {
    pub fn sign(&self, key: &SigningKey) -> String {
        sign(Kind::Query, &self.asker, self, key)
    }

    /// Who a query says it is from, unverified (to find its key).
    pub fn peek(token: &str) -> Result<String, MessageError> {
        peek(Kind::Query, token)
    }

    /// Checks a query signed by `asker` (from [`peek`](Self::peek)) with
    /// `key` (the directory's), fresh at `now`, about a call of the last
    /// [`MAX_CALL_AGE_SECS`].
    pub fn verify(
        token: &str,
        asker: &str,
        key: &VerifyingKey,
        now: i64,
    ) -> Result<Query, MessageError> {
        let kind = Kind::Query;
        let bad = |why: String| MessageError::malformed(kind, why);
        let query: Query = open(kind, token, asker, key, now, |q: &Query| q.iat)?;
        if query.asker != asker {
            return Err(bad(format!(
                "asker {:?} is not the kid {asker:?}",
                query.asker
            )));
        }
        for (name, party) in [("orig", &query.orig), ("dest", &query.dest)] {
            if party.trim().is_empty() || party.len() > MAX_PARTY {
                return Err(bad(format!("{name} must be 1 to {MAX_PARTY} bytes")));
            }
        }
        if !(8..=128).contains(&query.nonce.len()) {
            return Err(bad("nonce must be 8 to 128 bytes".into()));
        }
        let age = now.saturating_sub(query.at);
        if age.saturating_abs() > MAX_CALL_AGE_SECS {
            return Err(bad(format!(
                "at {} is {age} s from now: only calls of the last {MAX_CALL_AGE_SECS} s are confirmed",
                query.at
            )));
        }
        Ok(query)
    }
}

/// What a provider says about a query. Nothing else is revealed (no
/// call id, no time): RFC 8816's out-of-band model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// It placed such a call, within the window around `at`.
    Yes,
    /// It manages `orig` and placed no such call.
    No,
    /// `orig` is none of its identifiers.
    Unknown,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::Unknown => "unknown",
        }
    }
}

/// A provider's signed answer to one query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub provider: String,
    pub answer: Answer,
    pub orig: String,
    pub dest: String,
    pub nonce: String,
    /// Unix seconds.
    pub iat: i64,
}

impl Reply {
    /// The answer of `provider` to `query` at `now`.
    pub fn to(query: &Query, provider: &str, answer: Answer, now: i64) -> Self {
        Reply {
            provider: provider.into(),
            answer,
            orig: query.orig.clone(),
            dest: query.dest.clone(),
            nonce: query.nonce.clone(),
            iat: now,
        }
    }

    pub fn sign(&self, key: &SigningKey) -> String {
        sign(Kind::Reply, &self.provider, self, key)
    }

    /// The answer of `provider` (whose key the directory gave) to
    /// `query`: signed by it, fresh at `now`, echoing the query's orig,
    /// dest and nonce.
    pub fn verify(
        token: &str,
        provider: &str,
        key: &VerifyingKey,
        query: &Query,
        now: i64,
    ) -> Result<Answer, MessageError> {
        let kind = Kind::Reply;
        let bad = |why: String| MessageError::malformed(kind, why);
        let kid = peek(kind, token)?;
        if kid != provider {
            return Err(bad(format!(
                "kid {kid:?} is not the provider asked, {provider:?}"
            )));
        }
        let reply: Reply = open(kind, token, provider, key, now, |r: &Reply| r.iat)?;
        if reply.provider != provider {
            return Err(bad(format!(
                "provider {:?} is not the provider asked, {provider:?}",
                reply.provider
            )));
        }
        let echoes =
            reply.orig == query.orig && reply.dest == query.dest && reply.nonce == query.nonce;
        if !echoes {
            return Err(bad(
                "it does not echo the query's orig, dest and nonce".into()
            ));
        }
        Ok(reply.answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_603_600;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_slice(&[byte; 32]).unwrap()
    }

    fn update(provider: &str, signer: u8, carried: u8, iat: i64) -> String {
        ProviderUpdate {
            provider: provider.into(),
            confirm_url: "https://a.example/v1/confirmations".into(),
            key: jws::public_key_pem(key(carried).verifying_key()),
            identifiers: vec!["+1555*".into(), "a.example".into(), "+1555*".into()],
            iat,
        }
        .sign(&key(signer))
    }

    fn query() -> Query {
        Query {
            asker: "b.example".into(),
            orig: "+15551230001".into(),
            dest: "+15559990001".into(),
            at: NOW - 2,
            iat: NOW,
            nonce: "n0nce-0123".into(),
        }
    }

    #[test]
    fn a_first_update_is_self_signed_and_a_later_one_verifies_with_the_key_on_record() {
        let token = update("a.example", 1, 1, NOW);
        assert_eq!(ProviderUpdate::peek(&token).unwrap(), "a.example");
        let provider = ProviderUpdate::verify(&token, None, NOW + 30).unwrap();
        assert_eq!(provider.id, "a.example");
        assert_eq!(provider.key, *key(1).verifying_key());
        assert_eq!(provider.updated, NOW);
        let listed: Vec<String> = provider
            .identifiers
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            listed,
            ["+1555*", "a.example"],
            "sorted, duplicates dropped"
        );
        assert!(provider.key_pem().contains("BEGIN PUBLIC KEY"));

        // A key change is signed by the old key.
        let rotated = update("a.example", 1, 2, NOW);
        let provider = ProviderUpdate::verify(&rotated, Some(key(1).verifying_key()), NOW).unwrap();
        assert_eq!(provider.key, *key(2).verifying_key());
        // Signed by the new key alone, it is refused.
        let by_new = update("a.example", 2, 2, NOW);
        let err = ProviderUpdate::verify(&by_new, Some(key(1).verifying_key()), NOW).unwrap_err();
        assert!(matches!(err, MessageError::Signature { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the provider update is not signed by a.example's key"
        );
        // A first registration signed by another key than it carries.
        let err = ProviderUpdate::verify(&update("a.example", 2, 1, NOW), None, NOW).unwrap_err();
        assert!(matches!(err, MessageError::Signature { .. }), "{err}");
    }

    #[test]
    fn stale_and_malformed_updates_are_refused_saying_why() {
        let err =
            ProviderUpdate::verify(&update("a.example", 1, 1, NOW - 61), None, NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the provider update is stale: iat 1767603539 is 61 s from now (at most 60)"
        );
        let future = update("a.example", 1, 1, NOW + 120);
        assert!(matches!(
            ProviderUpdate::verify(&future, None, NOW),
            Err(MessageError::Stale { age: -120, .. })
        ));
        let bad = |claims: serde_json::Value| {
            let header = serde_json::json!({"alg": "ES256", "kid": "a.example", "typ": "switchyard-update+jwt"});
            let token = jws::sign(&header, &claims, &key(1));
            ProviderUpdate::verify(&token, Some(key(1).verifying_key()), NOW)
                .unwrap_err()
                .to_string()
        };
        let pem = jws::public_key_pem(key(1).verifying_key());
        let good = serde_json::json!({
            "provider": "a.example", "confirm_url": "http://a.example/c",
            "key": pem, "identifiers": ["+1555*"], "iat": NOW
        });
        for (field, value, why) in [
            ("provider", serde_json::json!("b.example"), "is not the kid"),
            ("confirm_url", serde_json::json!("ftp://x"), "confirm_url"),
            (
                "key",
                serde_json::json!("junk"),
                "key: not a P-256 public key",
            ),
            (
                "identifiers",
                serde_json::json!(["+1 555"]),
                "not an E.164 number",
            ),
            ("iat", serde_json::json!("now"), "invalid type"),
            ("extra", serde_json::json!(1), "unknown field"),
        ] {
            let mut claims = good.clone();
            claims[field] = value;
            let err = bad(claims);
            assert!(err.contains(why), "{field}: {err}");
        }
        for junk in ["", "x", "a.b.c", &"a".repeat(MAX_TOKEN + 1)] {
            assert!(ProviderUpdate::verify(junk, None, NOW).is_err());
        }
        // Another kind of message is not an update.
        let as_query = query().sign(&key(1));
        let err = ProviderUpdate::peek(&as_query).unwrap_err().to_string();
        assert!(err.contains("typ is \"switchyard-query+jwt\""), "{err}");
    }

    #[test]
    fn a_query_verifies_with_the_askers_key_and_a_reply_must_echo_it() {
        let q = query();
        let token = q.sign(&key(3));
        assert_eq!(Query::peek(&token).unwrap(), "b.example");
        assert_eq!(
            Query::verify(&token, "b.example", key(3).verifying_key(), NOW),
            Ok(q.clone())
        );
        let err = Query::verify(&token, "b.example", key(4).verifying_key(), NOW).unwrap_err();
        assert!(matches!(err, MessageError::Signature { .. }));
        let err = Query::verify(&token, "c.example", key(3).verifying_key(), NOW).unwrap_err();
        assert!(err.to_string().contains("is not the kid"), "{err}");

        let reply = Reply::to(&q, "a.example", Answer::Yes, NOW);
        let signed = reply.sign(&key(1));
        let vk = &key(1).verifying_key().to_owned();
        assert_eq!(
            Reply::verify(&signed, "a.example", vk, &q, NOW + 1),
            Ok(Answer::Yes)
        );
        // Another nonce (a reply to another query) is refused.
        let mut other = q.clone();
        other.nonce = "another-nonce".into();
        let err = Reply::verify(&signed, "a.example", vk, &other, NOW).unwrap_err();
        assert!(err.to_string().contains("does not echo"), "{err}");
        // A reply from another provider than the one asked.
        let err = Reply::verify(&signed, "c.example", vk, &q, NOW).unwrap_err();
        assert!(err.to_string().contains("not the provider asked"), "{err}");
        let err = Reply::verify(&signed, "a.example", key(2).verifying_key(), &q, NOW).unwrap_err();
        assert!(matches!(err, MessageError::Signature { .. }));
        // A query is not a reply.
        assert!(Reply::verify(&token, "b.example", key(3).verifying_key(), &q, NOW).is_err());
        assert_eq!(
            serde_json::to_string(&Answer::Unknown).unwrap(),
            "\"unknown\""
        );
    }

    #[test]
    fn a_query_about_an_old_call_or_with_a_short_nonce_is_refused() {
        let mut q = query();
        q.at = NOW - MAX_CALL_AGE_SECS - 1;
        let err =
            Query::verify(&q.sign(&key(3)), "b.example", key(3).verifying_key(), NOW).unwrap_err();
        assert!(
            err.to_string().contains("only calls of the last 300 s"),
            "{err}"
        );
        let mut q = query();
        q.nonce = "short".into();
        let err =
            Query::verify(&q.sign(&key(3)), "b.example", key(3).verifying_key(), NOW).unwrap_err();
        assert!(err.to_string().contains("nonce"), "{err}");
        let mut q = query();
        q.orig = " ".into();
        let err =
            Query::verify(&q.sign(&key(3)), "b.example", key(3).verifying_key(), NOW).unwrap_err();
        assert!(err.to_string().contains("orig"), "{err}");
    }

    #[test]
    fn ids_and_urls_are_checked() {
        assert!(provider_id("a.example").is_ok());
        assert!(provider_id("a_b-1").is_ok());
        for bad in ["", "a/b", "a b", "é", &"a".repeat(256)] {
            assert!(provider_id(bad).is_err(), "{bad:?}");
        }
        assert!(confirm_url("http://127.0.0.1:8080/v1/confirmations").is_ok());
        assert!(confirm_url("https://a.example").is_ok());
        for bad in [
            "",
            "a.example",
            "http://",
            "https:///x",
            "http://a b",
            "ftp://a",
        ] {
            assert!(confirm_url(bad).is_err(), "{bad:?}");
        }
    }
}
