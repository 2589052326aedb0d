//! `/v1/presence`: who of the calling account's clients is reachable, as
//! their devices on the signalling WebSocket say ([`crate::clients`]).

use hyper::StatusCode;

use super::{ApiError, ApiState, Caller, Reply, json};

/// `GET /v1/presence`: every identity with a device connected, by name.
pub(super) fn list(state: &ApiState, caller: &Caller) -> Result<Reply, ApiError> {
    let present = state.clients.list(caller.account()?);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "data": present, "next": null }),
    ))
}

/// `GET /v1/presence/{identity}`: that identity's presence; `offline`
/// with no device connected (an identity exists only in tokens, so there
/// is nothing to be 404 about).
pub(super) fn get(state: &ApiState, caller: &Caller, identity: &str) -> Result<Reply, ApiError> {
    let view = state.clients.view(caller.account()?, identity);
    Ok(json(StatusCode::OK, &view))
}
