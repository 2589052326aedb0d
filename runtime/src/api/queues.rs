//! `/v1/queues`: the calling account's call queues, from the SIP core
//! (a queue exists from its first `enqueue`). Another account's queue is
//! 404.

use hyper::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiState, Caller, Query, Reply, json, page, parse_json};
use crate::sip::endpoint::{CallRequest, ControlError, QueueRequestError, QueueView};
use switchyard_conference::queue::Queue;

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

/// Most callers one queue may hold (Twilio's limit).
const MAX_SIZE: usize = 5_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    /// 1 to [`MAX_SIZE`]; default 100.
    max_size: Option<usize>,
}

/// `PUT /v1/queues/{name}`: creates the queue (201) or changes its size
/// limit (200). Callers already waiting beyond a lowered limit stay; new
/// ones get `queue-complete` with `full`.
pub(super) async fn put(
    state: &ApiState,
    caller: &Caller,
    name: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let tenant = caller.account()?.to_owned();
    let size: Size = parse_json(body)?;
    let max_size = size.max_size.unwrap_or(Queue::DEFAULT_MAX);
    if !(1..=MAX_SIZE).contains(&max_size) {
        return Err(ApiError::BadRequest(format!(
            "max_size must be 1 to {MAX_SIZE}, not {max_size}"
        )));
    }
    crate::router::check_name("queue", name).map_err(ApiError::BadRequest)?;
    let queue = name.to_owned();
    let (created, view) = (state.switchboard)
        .ask(|reply| CallRequest::SizeQueue {
            tenant,
            queue,
            max_size,
            reply,
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &view))
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
