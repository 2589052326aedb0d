//! `/v1/accounts`: create, list, read, suspend and resume accounts, and
//! read or rotate an account's status callback signing key.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, page, parse_json};
use crate::tenancy::{ACTIVE, Account, SUSPENDED};

/// An account as its owner (or the operator) reads it: with the key its
/// status callbacks are signed with (see `crate::callbacks`). Lists and
/// other replies leave the key out.
#[derive(Debug, Serialize)]
struct WithSigningKey {
    #[serde(flatten)]
    account: Account,
    signing_key: String,
}

/// Body of `POST /v1/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
}

/// Longest account name.
const MAX_NAME: usize = 200;

/// `POST /v1/accounts` (operator): 201 with the new account.
pub(super) async fn create(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    caller.operator()?;
    let new: NewAccount = parse_json(body)?;
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "name must be 1 to {MAX_NAME} characters"
        )));
    }
    let accounts = state.accounts.clone();
    let account = blocking(move || accounts.create(&name)).await?;
    Ok(json(StatusCode::CREATED, &account))
}

/// `GET /v1/accounts` (operator): a page of accounts in id order.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    caller.operator()?;
    let (accounts, after, limit) = (state.accounts.clone(), query.after.clone(), query.limit);
    let found = blocking(move || accounts.list(after.as_deref(), limit + 1)).await?;
    Ok(page(found, limit, |a| &a.id))
}

/// `GET /v1/accounts/{id}` (operator or that account), with its signing key.
pub(super) async fn get(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    caller.may_see(id)?;
    let (accounts, owned) = (state.accounts.clone(), id.to_owned());
    let found = blocking(move || {
        let Some(account) = accounts.get(&owned)? else {
            return Ok(None);
        };
        let key = accounts.signing_key(&owned)?;
        Ok(key.map(|signing_key| WithSigningKey {
            account,
            signing_key,
        }))
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("account {id:?}")))?;
    Ok(json(StatusCode::OK, &found))
}

/// `POST /v1/accounts/{id}/signing_key` (operator or that account): a new
/// signing key replaces the old one at once.
pub(super) async fn rotate_signing_key(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<Reply, ApiError> {
    caller.may_see(id)?;
    let (accounts, owned) = (state.accounts.clone(), id.to_owned());
    let rotated = blocking(move || {
        let Some(signing_key) = accounts.rotate_signing_key(&owned)? else {
            return Ok(None);
        };
        let account = accounts.get(&owned)?;
        Ok(account.map(|account| WithSigningKey {
            account,
            signing_key,
        }))
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("account {id:?}")))?;
    Ok(json(StatusCode::OK, &rotated))
}

/// `POST /v1/accounts/{id}/suspend` and `/resume` (operator).
pub(super) async fn set_status(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    active: bool,
) -> Result<Reply, ApiError> {
    caller.may_see(id)?;
    caller.operator()?;
    let status = if active { ACTIVE } else { SUSPENDED };
    let (accounts, owned) = (state.accounts.clone(), id.to_owned());
    let account = blocking(move || accounts.set_status(&owned, status))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {id:?}")))?;
    // Suspension reaches calls too: the directory refuses a suspended
    // account's new calls.
    (state.deploy.refresh)().await.map_err(super::internal)?;
    Ok(json(StatusCode::OK, &account))
}
