//! `/v1/components`: upload a component's next version (checked like
//! `switchyard check`), list components and their versions. Versions are
//! immutable: uploading changed bytes makes a new one, the same bytes
//! again answer with the version that has them.

use hyper::StatusCode;

use super::deployed::{self, deployments};
use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, page};
use crate::deploy::{Deployments, valid_name};
use crate::wasm::ContentHash;

/// `POST /v1/components/{name}` with the `.wasm` bytes as the body: 201
/// with the new version, or 200 with the version that has these bytes.
pub(super) async fn upload(
    state: &ApiState,
    caller: &Caller,
    name: &str,
    body: bytes::Bytes,
) -> Result<Reply, ApiError> {
    let tenant = caller.account()?.to_owned();
    if !valid_name(name) {
        return Err(ApiError::BadRequest(
            "a component name is 1 to 64 letters, digits, '-' or '_'".into(),
        ));
    }
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "send the component's .wasm bytes as the body (Content-Type: application/wasm)".into(),
        ));
    }
    let deploy = state.deploy.clone();
    let name = name.to_owned();
    // Compiling is CPU work: off the async runtime, like every store call.
    let checked = tokio::task::spawn_blocking({
        let host = deploy.host.clone();
        let body = body.clone();
        move || host.inspect(&body)
    })
    .await
    .map_err(super::internal)?;
    let info = checked.map_err(|e| ApiError::BadRequest(format!("component refused: {e}")))?;
    let hash = ContentHash::of(&body).to_string();
    let world = info.world.to_string();
    let store = deploy.store.clone();
    let (stored, created) =
        blocking(move || store.add_component(&tenant, &name, &body, &hash, &world)).await?;
    Ok(json(deployed::created(created), &stored))
}

/// The largest upload the calling account may make, in bytes: the
/// runtime's, or the account's own limit below it. Read before the body.
pub(super) async fn upload_limit(state: &ApiState, caller: &Caller) -> Result<usize, ApiError> {
    let most = state.deploy.max_component_bytes;
    let own = deployments(state, caller, |store, tenant| store.limits(tenant)).await?;
    Ok(own.component_kb.map_or(most, |kb| {
        most.min(usize::try_from(kb.saturating_mul(1024)).unwrap_or(usize::MAX))
    }))
}

/// `GET /v1/components`: the account's components in name order.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    deployed::list(state, caller, query, Deployments::components, |c| &c.name).await
}

/// `GET /v1/components/{name}/versions`: oldest first; `after` is a version number.
pub(super) async fn versions(
    state: &ApiState,
    caller: &Caller,
    name: &str,
    query: &Query,
) -> Result<Reply, ApiError> {
    let after = match &query.after {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            ApiError::BadRequest(format!("after must be a version number, not {v:?}"))
        })?,
    };
    let (owned, limit) = (name.to_owned(), query.limit);
    let found = deployments(state, caller, move |store, tenant| {
        store.versions(tenant, &owned, after, limit + 1)
    })
    .await?;
    if found.is_empty() && after == 0 {
        return Err(ApiError::NotFound(format!("component {name:?}")));
    }
    Ok(page(found, limit, |v| &v.version))
}

/// `GET /v1/components/{name}/versions/{version}`.
pub(super) async fn version(
    state: &ApiState,
    caller: &Caller,
    name: &str,
    version: &str,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::NotFound(format!("version {version} of component {name:?}"));
    let number: u32 = version.parse().map_err(|_| missing())?;
    let owned = name.to_owned();
    let found = deployments(state, caller, move |store, tenant| {
        store.version(tenant, &owned, Some(number))
    })
    .await?
    .ok_or_else(missing)?;
    Ok(json(StatusCode::OK, &found))
}
