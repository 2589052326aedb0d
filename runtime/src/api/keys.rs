//! `/v1/accounts/{id}/keys`: an account's API keys. Rotation is creating
//! a new key and deleting the old one.

use hyper::StatusCode;

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, no_content, page};

/// `POST /v1/accounts/{id}/keys` (operator or that account): 201 with
/// the key and its `secret`, which is never shown again.
pub(super) async fn create(
    state: &ApiState,
    caller: &Caller,
    account: &str,
) -> Result<Reply, ApiError> {
    caller.may_see(account)?;
    let (accounts, owned) = (state.accounts.clone(), account.to_owned());
    let key = blocking(move || accounts.create_key(&owned))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {account:?}")))?;
    Ok(json(StatusCode::CREATED, &key))
}

/// `GET /v1/accounts/{id}/keys` (operator or that account): a page of the
/// live keys, without secrets.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    account: &str,
    query: &Query,
) -> Result<Reply, ApiError> {
    caller.may_see(account)?;
    let (accounts, owned) = (state.accounts.clone(), account.to_owned());
    let (after, limit) = (query.after.clone(), query.limit);
    let found = blocking(move || {
        if accounts.get(&owned)?.is_none() {
            return Ok(None);
        }
        accounts
            .list_keys(&owned, after.as_deref(), limit + 1)
            .map(Some)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("account {account:?}")))?;
    Ok(page(found, limit, |k| &k.id))
}

/// `DELETE /v1/accounts/{id}/keys/{key}` (operator or that account): 204.
pub(super) async fn delete(
    state: &ApiState,
    caller: &Caller,
    account: &str,
    key: &str,
) -> Result<Reply, ApiError> {
    caller.may_see(account)?;
    let (accounts, owned, key_id) = (state.accounts.clone(), account.to_owned(), key.to_owned());
    if !blocking(move || accounts.revoke_key(&owned, &key_id)).await? {
        return Err(ApiError::NotFound(format!("key {key:?}")));
    }
    Ok(no_content())
}
