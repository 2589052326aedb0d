//! `/v1/tokens`: access tokens for the calling account's browser and app
//! clients ([`crate::tokens`]). A tenant may as well mint them on its own
//! server with any JWT library; `check` tells why a token is refused.

use hyper::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiState, Caller, Reply, blocking, json, parse_json};
use crate::tokens::{self, Grants, Outgoing};

/// A token's life when the request names none.
const DEFAULT_TTL_SECS: u64 = 3600;

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mint {
    identity: String,
    /// Seconds, at most a day.
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// May receive calls (`dial client:IDENTITY`).
    #[serde(default)]
    incoming: bool,
    /// May place calls through this handler.
    #[serde(default)]
    outgoing: Option<Outgoing>,
    /// The API key to sign with (default: the newest that can).
    #[serde(default)]
    key_id: Option<String>,
}

/// `POST /v1/tokens`: 201 with a token signed by one of the account's keys.
pub(super) async fn create(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    let mint: Mint = parse_json(body)?;
    let ttl = mint.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    let grants = Grants {
        identity: mint.identity,
        incoming: mint.incoming,
        outgoing: mint.outgoing,
    };
    let accounts = state.accounts.clone();
    let (key_id, secret) = blocking({
        let account = account.clone();
        move || {
            Ok(match mint.key_id {
                None => accounts.newest_token_key(&account)?.ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "no live API key of {account} can sign tokens (keys made before access \
                         tokens hold no sealed secret): create one with POST /v1/accounts/{account}/keys"
                    ))
                }),
                // Another account's key, in whatever state, is no key.
                Some(id) => match accounts.token_key(&id)? {
                    key if key.account() != Some(account.as_str()) => {
                        Err(ApiError::NotFound(format!("key {id:?}")))
                    }
                    key => (tokens::signer(&id, key))
                        .map(|(_, secret)| (id, secret))
                        .map_err(|refused| ApiError::Conflict(refused.to_string())),
                },
            })
        }
    })
    .await??;
    let now = tokens::unix_now();
    let token = tokens::mint(&key_id, &account, &secret, grants.clone(), now, ttl)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "token": token,
            "key_id": key_id,
            "account": account,
            "grants": grants,
            "issued": now,
            "expires": now + ttl,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    token: String,
}

/// `POST /v1/tokens/check` with `{"token": "..."}`: 200 with
/// `{"valid": true, grants…}` or `{"valid": false, "reason": …}`, as the
/// runtime would judge the token now. Another account's token reads as
/// signed by an unknown key.
pub(super) async fn check(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    let Check { token } = parse_json(body)?;
    let accounts = state.accounts.clone();
    let verdict =
        blocking(move || tokens::check(&accounts, &token, tokens::unix_now(), Some(&account)))
            .await?;
    let body = match verdict {
        Ok(found) => serde_json::json!({ "valid": true, "token": found }),
        Err(e) => serde_json::json!({ "valid": false, "reason": e.to_string() }),
    };
    Ok(json(StatusCode::OK, &body))
}
