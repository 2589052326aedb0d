//! What the resources kept in the deployment store share: components,
//! numbers, SIP credentials and SIP domains are all an account's own,
//! listed by name, and a change to any of them is live once the SIP
//! directory is rebuilt.

use hyper::StatusCode;
use serde::Serialize;

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, no_content, page};
use crate::deploy::Deployments;

/// Runs `work` on the deployment store for the calling account, off the
/// async runtime.
pub(super) async fn deployments<T: Send + 'static>(
    state: &ApiState,
    caller: &Caller,
    work: impl FnOnce(&Deployments, &str) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let tenant = caller.account()?.to_owned();
    let store = state.deploy.store.clone();
    blocking(move || work(&store, &tenant)).await
}

/// Rebuilds the SIP directory; resolves once the change is live.
pub(super) async fn refresh(state: &ApiState) -> Result<(), ApiError> {
    (state.deploy.refresh)().await.map_err(super::internal)
}

/// Lists a tenant's items in name order: (store, tenant, after, limit).
type Fetch<T> = fn(&Deployments, &str, Option<&str>, u32) -> anyhow::Result<Vec<T>>;

/// A page of the account's items: `fetch(store, tenant, after, limit)`
/// lists them in name order, `name` gives an item's.
pub(super) async fn list<T, K>(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
    fetch: Fetch<T>,
    name: impl Fn(&T) -> &K,
) -> Result<Reply, ApiError>
where
    T: Serialize + Send + 'static,
    K: ToString + ?Sized,
{
    let (after, limit) = (query.after.clone(), query.limit);
    let found = deployments(state, caller, move |store, tenant| {
        fetch(store, tenant, after.as_deref(), limit + 1)
    })
    .await?;
    Ok(page(found, limit, name))
}

/// Removes the account's `what` named `name` with `remove` (`false`: it
/// has none, 404), then makes the change live: 204.
pub(super) async fn remove(
    state: &ApiState,
    caller: &Caller,
    what: &str,
    name: &str,
    remove: fn(&Deployments, &str, &str) -> anyhow::Result<bool>,
) -> Result<Reply, ApiError> {
    let owned = name.to_owned();
    let removed = deployments(state, caller, move |store, tenant| {
        remove(store, tenant, &owned)
    })
    .await?;
    if !removed {
        return Err(ApiError::NotFound(format!("{what} {name:?}")));
    }
    refresh(state).await?;
    Ok(no_content())
}

/// 201 for something new, else 200.
pub(super) fn created(new: bool) -> StatusCode {
    if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}
