//! `/v1/sip/domains`: the SIP domains an account owns. A domain is the
//! realm its SIP users (`/v1/sip/credentials`) REGISTER in, and the host
//! part that routes calls to it. A domain belongs to one account; domains
//! of the config file cannot be claimed, and when the operator sets
//! `[api] sip_domain_suffix` only names under it can.

use serde::Deserialize;

use super::deployed::{self, deployments, refresh};
use super::numbers::deploy_error;
use super::{ApiError, ApiState, Caller, Query, Reply, json, parse_json};
use crate::deploy::{Deployments, valid_domain};

/// Body of `PUT /v1/sip/domains/{domain}`: nothing yet (empty or `{}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claim {}

/// `PUT /v1/sip/domains/{domain}`: 201 when newly claimed, 200 when the
/// account already owns it; live for the next REGISTER.
pub(super) async fn put(
    state: &ApiState,
    caller: &Caller,
    domain: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    caller.account()?;
    if !body.trim_ascii().is_empty() {
        let _: Claim = parse_json(body)?;
    }
    let domain = domain.to_ascii_lowercase();
    if !valid_domain(&domain) {
        return Err(ApiError::BadRequest(format!(
            "{domain:?} is not a SIP domain: use a DNS name such as sip.example.com"
        )));
    }
    let reserved = &state.deploy.reserved;
    if reserved.domains.contains(&domain) {
        return Err(ApiError::Conflict(format!(
            "SIP domain {domain:?} is served by the runtime's config file"
        )));
    }
    if let Some(suffix) = &reserved.domain_suffix
        && !domain.ends_with(&format!(".{suffix}"))
    {
        return Err(ApiError::BadRequest(format!(
            "this runtime gives out SIP domains under {suffix}: use NAME.{suffix}"
        )));
    }
    let owned = domain.clone();
    let claimed = deployments(state, caller, move |store, tenant| {
        Ok(store.claim_domain(tenant, &owned))
    })
    .await?
    .map_err(deploy_error)?;
    refresh(state).await?;
    Ok(json(
        deployed::created(claimed),
        &serde_json::json!({ "domain": domain }),
    ))
}

/// `GET /v1/sip/domains`: the account's domains in name order.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    deployed::list(state, caller, query, Deployments::domains, |d| &d.domain).await
}

/// `DELETE /v1/sip/domains/{domain}`: 204; its users no longer register
/// there.
pub(super) async fn delete(
    state: &ApiState,
    caller: &Caller,
    domain: &str,
) -> Result<Reply, ApiError> {
    let domain = domain.to_ascii_lowercase();
    deployed::remove(
        state,
        caller,
        "SIP domain",
        &domain,
        Deployments::release_domain,
    )
    .await
}
