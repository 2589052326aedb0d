//! `/v1/accounts`: create, list, read, suspend and resume accounts.

use hyper::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, page, parse_json};
use crate::tenancy::{ACTIVE, SUSPENDED};

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

/// `GET /v1/accounts/{id}` (operator or that account).
pub(super) async fn get(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    caller.may_see(id)?;
    let (accounts, owned) = (state.accounts.clone(), id.to_owned());
    let account = blocking(move || accounts.get(&owned))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {id:?}")))?;
    Ok(json(StatusCode::OK, &account))
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
    Ok(json(StatusCode::OK, &account))
}
