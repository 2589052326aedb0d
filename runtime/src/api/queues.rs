//! `/v1/queues`: the calling account's call queues, from the SIP core
//! (a queue exists from its first `enqueue`). Another account's queue is
//! 404.

use hyper::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiState, Caller, Query, Reply, json, page, parse_json};
use crate::sip::endpoint::{CallRequest, ControlError, QueueRequestError, QueueView};

/// `GET /v1/queues`: the account's queues, by name, without members.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    let mut all = views(state, caller).await?;
    for q in &mut all {
        q.members.clear();
    }
    if let Some(after) = &query.after {
        all.retain(|q| &q.name > after);
    }
    all.truncate(query.limit as usize + 1);
    Ok(page(all, query.limit, |q| &q.name))
}

/// `GET /v1/queues/{name}`: size, average wait and the waiting callers,
/// head first.
pub(super) async fn get(state: &ApiState, caller: &Caller, name: &str) -> Result<Reply, ApiError> {
    let found = views(state, caller)
        .await?
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("queue {name:?}")))?;
    Ok(json(StatusCode::OK, &found))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dequeue {
    /// The handler (component name) the caller goes to; it hears
    /// `redirected`.
    handler: String,
    /// A waiting call by id; without it, the caller at the head.
    call: Option<String>,
}

/// `POST /v1/queues/{name}/dequeue`: a waiting caller leaves the queue
/// for a handler; 202 with its call id.
pub(super) async fn dequeue(
    state: &ApiState,
    caller: &Caller,
    name: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let tenant = caller.account()?.to_owned();
    let d: Dequeue = parse_json(body)?;
    let queue = name.to_owned();
    let request = |reply| CallRequest::Dequeue {
        tenant,
        queue,
        call: d.call,
        handler: d.handler,
        reply,
    };
    match state.switchboard.ask(request).await? {
        Ok(id) => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "id": id, "status": "redirected" }),
        )),
        Err(e @ (QueueRequestError::NoQueue(_) | QueueRequestError::NotQueued(_))) => {
            Err(ApiError::NotFound(e.to_string()))
        }
        Err(QueueRequestError::Control(ControlError::NotFound(id))) => {
            Err(ApiError::NotFound(format!("call {id:?} in progress")))
        }
        Err(e @ QueueRequestError::Empty(_)) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ QueueRequestError::Control(ControlError::UnknownHandler(_))) => {
            Err(ApiError::BadRequest(e.to_string()))
        }
    }
}

async fn views(state: &ApiState, caller: &Caller) -> Result<Vec<QueueView>, ApiError> {
    let tenant = caller.account()?.to_owned();
    (state.switchboard)
        .ask(|reply| CallRequest::Queues { tenant, reply })
        .await
}
