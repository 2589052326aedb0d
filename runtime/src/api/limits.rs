//! `/v1/accounts/{id}/limits`: an account's own admission and guest
//! limits. The operator sets them; the account may read its own. What is
//! not set comes from the config. Live for the account's next call.

use hyper::StatusCode;

use super::{ApiError, ApiState, Caller, Reply, blocking, json, parse_json};
use crate::deploy::AccountLimits;

/// Longest admission wait an account may be given, as for the config
/// (`[admission] queue_wait_ms`).
const MAX_QUEUE_WAIT_MS: u64 = crate::sip::directory::Limits::MAX_QUEUE_WAIT_MS;

/// `GET /v1/accounts/{id}/limits` (operator or that account).
pub(super) async fn get(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    caller.may_see(id)?;
    exists(state, id).await?;
    let (store, owned) = (state.deploy.store.clone(), id.to_owned());
    let limits = blocking(move || store.limits(&owned)).await?;
    Ok(json(StatusCode::OK, &limits))
}

/// `PUT /v1/accounts/{id}/limits` (operator): replaces the account's limits.
pub(super) async fn put(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    caller.may_see(id)?;
    caller.operator()?;
    exists(state, id).await?;
    let limits: AccountLimits = parse_json(body)?;
    if limits
        .queue_wait_ms
        .is_some_and(|ms| ms > MAX_QUEUE_WAIT_MS)
    {
        return Err(ApiError::BadRequest(format!(
            "queue_wait_ms is at most {MAX_QUEUE_WAIT_MS}"
        )));
    }
    if limits.max_calls == Some(0) || limits.calls_per_second == Some(0) {
        return Err(ApiError::BadRequest(
            "max_calls and calls_per_second are at least 1 (suspend the account to stop its calls)"
                .into(),
        ));
    }
    let most_kb = (state.deploy.max_component_bytes / 1024) as u64;
    if limits
        .component_kb
        .is_some_and(|kb| !(1..=most_kb).contains(&kb))
    {
        return Err(ApiError::BadRequest(format!(
            "component_kb is 1 to {most_kb} (the runtime's [api] max_component_kb)"
        )));
    }
    if limits.sets_guest_limits() {
        let host = state.deploy.host.config();
        host.check_guest_limits(&limits.guest(host.default_limits()))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let (store, owned, stored) = (state.deploy.store.clone(), id.to_owned(), limits.clone());
    blocking(move || store.set_limits(&owned, &stored)).await?;
    (state.deploy.refresh)().await.map_err(super::internal)?;
    Ok(json(StatusCode::OK, &limits))
}

async fn exists(state: &ApiState, id: &str) -> Result<(), ApiError> {
    let (accounts, owned) = (state.accounts.clone(), id.to_owned());
    blocking(move || accounts.get(&owned))
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("account {id:?}")))
}
