//! `/v1/sip/credentials`: the account's SIP users (REGISTER digest auth
//! in the account's SIP domains). The password is set, never shown.
//! A user of the same name in the config file wins over one set here.

use serde::Deserialize;

use super::deployed::{self, deployments, refresh};
use super::{ApiError, ApiState, Caller, Query, Reply, json, parse_json};
use crate::deploy::Deployments;

/// Body of `PUT /v1/sip/credentials/{username}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credential {
    password: String,
}

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 128;

/// Whether `name` may be a SIP user: 1–64 of `[A-Za-z0-9._+-]`.
fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b))
}

/// `PUT /v1/sip/credentials/{username}`: 201 for a new user, 200 for a
/// new password; live for the next REGISTER.
pub(super) async fn put(
    state: &ApiState,
    caller: &Caller,
    username: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    caller.account()?;
    let credential: Credential = parse_json(body)?;
    if !valid_username(username) {
        return Err(ApiError::BadRequest(
            "a SIP username is 1 to 64 letters, digits, '.', '-', '_' or '+'".into(),
        ));
    }
    let length = credential.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length)
        || credential.password.chars().any(char::is_control)
    {
        return Err(ApiError::BadRequest(format!(
            "a SIP password is {MIN_PASSWORD} to {MAX_PASSWORD} printable characters"
        )));
    }
    let owned = username.to_owned();
    let created = deployments(state, caller, move |store, tenant| {
        store.set_sip_user(tenant, &owned, &credential.password)
    })
    .await?;
    refresh(state).await?;
    Ok(json(
        deployed::created(created),
        &serde_json::json!({ "username": username }),
    ))
}

/// `GET /v1/sip/credentials`: the account's SIP users in name order.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    deployed::list(state, caller, query, Deployments::sip_users, |u| {
        &u.username
    })
    .await
}

/// `DELETE /v1/sip/credentials/{username}`: 204.
pub(super) async fn delete(
    state: &ApiState,
    caller: &Caller,
    username: &str,
) -> Result<Reply, ApiError> {
    deployed::remove(
        state,
        caller,
        "SIP user",
        username,
        Deployments::delete_sip_user,
    )
    .await
}
