//! `/v1/sip/credentials`: the account's SIP users (REGISTER digest auth
//! in the account's SIP domains). The password is set, never shown.
//! A user of the same name in the config file wins over one set here.

use hyper::StatusCode;
use serde::Deserialize;

use super::components::deployments;
use super::{ApiError, ApiState, Caller, Query, Reply, json, no_content, page, parse_json};

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
    (state.deploy.refresh)().await.map_err(super::internal)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &serde_json::json!({ "username": username })))
}

/// `GET /v1/sip/credentials`: the account's SIP users in name order.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    let (after, limit) = (query.after.clone(), query.limit);
    let found = deployments(state, caller, move |store, tenant| {
        store.sip_users(tenant, after.as_deref(), limit + 1)
    })
    .await?;
    Ok(page(found, limit, |u| &u.username))
}

/// `DELETE /v1/sip/credentials/{username}`: 204.
pub(super) async fn delete(
    state: &ApiState,
    caller: &Caller,
    username: &str,
) -> Result<Reply, ApiError> {
    let owned = username.to_owned();
    let removed = deployments(state, caller, move |store, tenant| {
        store.delete_sip_user(tenant, &owned)
    })
    .await?;
    if !removed {
        return Err(ApiError::NotFound(format!("SIP user {username:?}")));
    }
    (state.deploy.refresh)().await.map_err(super::internal)?;
    Ok(no_content())
}
