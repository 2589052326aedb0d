//! `/v1/numbers`: bind a number (or SIP user part) to a component version, with a fallback
//! component, a status callback and a canary; roll back; unbind. Every
//! change rebuilds the SIP directory before the answer goes out, so the
//! next INVITE already sees it.

use hyper::StatusCode;
use serde::Deserialize;

use super::deployed::{self, deployments, refresh};
use super::{ApiError, ApiState, Caller, Query, Reply, json, parse_json};
use crate::deploy::{Canary, DeployError, Deployments, NewBinding, valid_name, valid_number};
use crate::wasm::World;

/// Body of `PUT /v1/numbers/{number}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bind {
    component: String,
    /// Default: the newest version.
    version: Option<u32>,
    fallback: Option<String>,
    status_callback: Option<String>,
    canary: Option<Canary>,
}

/// `PUT /v1/numbers/{number}`: 201 when newly bound, else 200.
pub(super) async fn put(
    state: &ApiState,
    caller: &Caller,
    number: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    caller.account()?;
    let bind: Bind = parse_json(body)?;
    if number == "*" {
        return Err(ApiError::BadRequest(
            "the catch-all * is bound in the runtime's config file, not over REST".into(),
        ));
    }
    if !valid_number(number) {
        return Err(ApiError::BadRequest(format!(
            "{number:?} is not a number: use 1 to 64 printable characters without '/' or spaces, or *"
        )));
    }
    if state.deploy.reserved.numbers.contains(number) {
        return Err(ApiError::Conflict(format!(
            "number {number:?} is bound in the runtime's config file"
        )));
    }
    if let Some(url) = &bind.status_callback {
        check_url(url)?;
    }
    let owned = number.to_owned();
    let bound = deployments(state, caller, move |store, tenant| {
        let bind = || -> Result<_, DeployError> {
            let new = resolve(store, tenant, bind)?;
            let existed = store.number(tenant, &owned)?.is_some();
            Ok((store.bind(tenant, &owned, &new)?, existed))
        };
        Ok(bind())
    })
    .await?;
    let (bound, existed) = bound.map_err(deploy_error)?;
    refresh(state).await?;
    Ok(json(deployed::created(!existed), &bound))
}

/// Checks a bind request against the tenant's components.
fn resolve(store: &Deployments, tenant: &str, bind: Bind) -> anyhow::Result<NewBinding> {
    let refuse = |why: String| anyhow::Error::new(Refused(why));
    let component = |name: &str, version: Option<u32>| -> anyhow::Result<u32> {
        if !valid_name(name) {
            return Err(refuse(format!("{name:?} is not a component name")));
        }
        let found = store.version(tenant, name, version)?.ok_or_else(|| {
            refuse(match version {
                Some(v) => format!("component {name:?} has no version {v}"),
                None => {
                    format!("no component {name:?}: upload it first (POST /v1/components/{name})")
                }
            })
        })?;
        let handler = World::CallHandler.name();
        if found.world != handler {
            return Err(refuse(format!(
                "component {name:?} version {} is a {} component; a number needs a {handler}",
                found.version, found.world
            )));
        }
        Ok(found.version)
    };
    let version = component(&bind.component, bind.version)?;
    if let Some(fallback) = &bind.fallback {
        if *fallback == bind.component {
            return Err(refuse("the fallback must be another component".into()));
        }
        component(fallback, None)?;
    }
    if let Some(canary) = &bind.canary {
        component(&bind.component, Some(canary.version))?;
        if canary.version == version {
            return Err(refuse("the canary version is the number's version".into()));
        }
        if !(1..=99).contains(&canary.percent) {
            return Err(refuse("canary percent must be 1 to 99".into()));
        }
        if !(0.0..=1.0).contains(&canary.max_failure_rate) {
            return Err(refuse("canary max_failure_rate must be 0 to 1".into()));
        }
    }
    Ok(NewBinding {
        component: bind.component,
        version,
        fallback: bind.fallback,
        status_callback: bind.status_callback,
        canary: bind.canary,
    })
}

/// A request that cannot be bound, as a 400 (carried through anyhow).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn check_url(url: &str) -> Result<(), ApiError> {
    crate::callbacks::check_url(url).map_err(|why| {
        ApiError::BadRequest(format!(
            "status_callback must be an http or https URL ({why}): {url:?}"
        ))
    })
}

pub(super) fn deploy_error(e: DeployError) -> ApiError {
    match e {
        // Not 404: the number (or domain) exists, and the account should
        // learn that it cannot have it rather than retry.
        DeployError::NumberTaken(number) => {
            ApiError::Conflict(format!("number {number:?} is not available"))
        }
        DeployError::DomainTaken(domain) => {
            ApiError::Conflict(format!("SIP domain {domain:?} is not available"))
        }
        DeployError::NothingToRollBack(_) => ApiError::Conflict(e.to_string()),
        DeployError::Store(e) => match e.downcast::<Refused>() {
            Ok(refused) => ApiError::BadRequest(refused.0),
            Err(e) => super::internal(e),
        },
    }
}

/// `GET /v1/numbers`: the account's numbers in order.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    deployed::list(state, caller, query, Deployments::numbers, |n| &n.number).await
}

/// `GET /v1/numbers/{number}`.
pub(super) async fn get(
    state: &ApiState,
    caller: &Caller,
    number: &str,
) -> Result<Reply, ApiError> {
    let owned = number.to_owned();
    let found = deployments(state, caller, move |store, tenant| {
        store.number(tenant, &owned)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("number {number:?}")))?;
    Ok(json(StatusCode::OK, &found))
}

/// `DELETE /v1/numbers/{number}`: 204; calls to it are no longer routed.
pub(super) async fn delete(
    state: &ApiState,
    caller: &Caller,
    number: &str,
) -> Result<Reply, ApiError> {
    deployed::remove(state, caller, "number", number, Deployments::unbind).await
}

/// `POST /v1/numbers/{number}/rollback`: back to the version before the
/// last change (409 when there is none); a canary ends.
pub(super) async fn rollback(
    state: &ApiState,
    caller: &Caller,
    number: &str,
) -> Result<Reply, ApiError> {
    let owned = number.to_owned();
    let rolled = deployments(state, caller, move |store, tenant| {
        Ok(store.rollback(tenant, &owned))
    })
    .await?
    .map_err(deploy_error)?
    .ok_or_else(|| ApiError::NotFound(format!("number {number:?}")))?;
    refresh(state).await?;
    Ok(json(StatusCode::OK, &rolled))
}
