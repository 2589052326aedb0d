//! `/v1/calls`: the calling account's calls (a call's tenant is its
//! account id). Another account's call is 404.
//!
//! Finished calls come from the CDR store, their decision logs from the
//! log store. A call is shown as a [`Call`], so calls still in progress
//! can be listed in the same shape.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, page, parse_json};
use crate::contract::{ConferenceOptions, Plan, Verb};
use crate::router::RouterConfig;
use crate::sip::endpoint::{
    CallRequest, Control, ControlError, LiveCall, OriginateError, OriginateSpec, is_number,
};
use crate::store::{Cdr, CdrFilter};

/// The statuses of calls in progress (`?status=` picks them from the SIP
/// core instead of the call records).
const LIVE: [&str; 2] = ["ringing", "in-progress"];

/// A call as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    pub id: String,
    pub account: String,
    pub from: String,
    pub to: String,
    /// "completed", "busy", "no-answer", "rejected", "canceled", "failed".
    pub status: String,
    pub started_ms: u64,
    pub answered_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub duration_secs: u64,
    /// The final SIP status sent to the caller, when one was.
    pub sip_status: Option<u16>,
    /// The handler the call started on, and its component's content hash.
    pub handler: String,
    pub handler_version: String,
}

impl From<Cdr> for Call {
    fn from(cdr: Cdr) -> Self {
        Self {
            id: cdr.call_id,
            account: cdr.tenant,
            from: cdr.from,
            to: cdr.to,
            status: cdr.outcome,
            started_ms: cdr.started_ms,
            answered_ms: cdr.answered_ms,
            ended_ms: Some(cdr.ended_ms),
            duration_secs: cdr.duration_secs,
            sip_status: cdr.sip_status,
            handler: cdr.handler,
            handler_version: cdr.handler_version,
        }
    }
}

impl From<LiveCall> for Call {
    fn from(live: LiveCall) -> Self {
        Self {
            id: live.call_id,
            account: String::new(),
            from: live.from,
            to: live.to,
            status: live.status.into(),
            started_ms: live.started_ms,
            answered_ms: live.answered_ms,
            ended_ms: None,
            duration_secs: 0,
            sip_status: None,
            handler: live.handler,
            handler_version: live.version,
        }
    }
}

/// `account`'s calls in progress, from the SIP core.
async fn live(state: &ApiState, account: &str) -> Result<Vec<Call>, ApiError> {
    let tenant = account.to_owned();
    let calls = (state.switchboard)
        .ask(|reply| CallRequest::List { tenant, reply })
        .await?;
    Ok(calls
        .into_iter()
        .map(|c| Call {
            account: account.to_owned(),
            ..Call::from(c)
        })
        .collect())
}

/// `GET /v1/calls[?status=&number=&since=&until=]`: a page of the
/// account's finished calls, newest first; `after` is the last call id of
/// the page before. `status=ringing` or `in-progress` lists calls in
/// progress instead, oldest first.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    if let Some(status) = query.status.as_deref().filter(|s| LIVE.contains(s)) {
        let calls = live(state, &account).await?.into_iter().filter(|c| {
            c.status == status
                && query.number.as_ref().is_none_or(|n| *n == c.to)
                && query.since.is_none_or(|t| c.started_ms >= t)
                && query.until.is_none_or(|t| c.started_ms < t)
        });
        let after = query.after.as_deref();
        let calls: Vec<Call> = calls
            .skip_while(|c| after.is_some_and(|a| a != c.id))
            .skip(usize::from(after.is_some()))
            .take(query.limit as usize + 1)
            .collect();
        return Ok(page(calls, query.limit, |c| &c.id));
    }
    let filter = CdrFilter {
        outcome: query.status.clone(),
        to: query.number.clone(),
        since_ms: query.since,
        until_ms: query.until,
    };
    let (store, after, limit) = (state.cdrs.clone(), query.after.clone(), query.limit);
    let found = blocking(move || Ok(store.page(&account, &filter, after.as_deref(), limit + 1)?))
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "after={:?} is not a call of this account",
                query.after.as_deref().unwrap_or_default()
            ))
        })?;
    let calls: Vec<Call> = found.into_iter().map(Call::from).collect();
    Ok(page(calls, limit, |c| &c.id))
}

/// Body of `POST /v1/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    /// The SIP URI to call (`sip:user@host[:port]`), or a number to call
    /// through the account's first trunk.
    to: String,
    /// The account's handler (component name) that runs once answered,
    /// or (with `conference`) that hears the conference's result.
    #[serde(default)]
    handler: Option<String>,
    /// Once answered, join this conference instead of asking a handler.
    conference: Option<Join>,
    /// Our From URI.
    from: Option<String>,
    /// Seconds it may ring, 1..=120 (30).
    timeout_secs: Option<u32>,
    /// Where this call's status events are POSTed.
    status_callback: Option<String>,
}

/// How a call placed into a conference joins it (the `conference` verb's
/// options; TwiML's defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    name: String,
    #[serde(default)]
    muted: bool,
    start_on_enter: Option<bool>,
    #[serde(default)]
    end_on_exit: bool,
    beep: Option<bool>,
    #[serde(default)]
    record: bool,
    max_participants: Option<u32>,
}

impl Join {
    fn options(self) -> ConferenceOptions {
        ConferenceOptions {
            muted: self.muted,
            start_on_enter: self.start_on_enter.unwrap_or(true),
            end_on_exit: self.end_on_exit,
            beep: self.beep.unwrap_or(true),
            record: self.record,
            max_participants: self.max_participants,
            ..ConferenceOptions::named(self.name)
        }
    }
}

/// `POST /v1/calls`: place an outbound call that runs `handler` once the
/// far end answers, or joins `conference` (a participant added to a
/// conference; `handler`, if any, hears its result, and without one the
/// call ends with it); 201 `{"id", "status": "queued", ...}`. 429 with
/// `Retry-After` when the account is at its call limits (outbound calls
/// never wait in the admission queue).
pub(super) async fn create(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    let create: Create = parse_json(body)?;
    let timeout_secs = create.timeout_secs.unwrap_or(30);
    if !(1..=120).contains(&timeout_secs) {
        return Err(ApiError::BadRequest(format!(
            "timeout_secs must be 1 to 120, not {timeout_secs}"
        )));
    }
    if let Some(url) = &create.status_callback
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ApiError::BadRequest(format!(
            "status_callback must be an http(s) URL, not {url:?}"
        )));
    }
    let scheme = create.to.split(':').next().unwrap_or_default();
    if !matches!(scheme, "sip" | "sips") && !is_number(&create.to) {
        return Err(ApiError::BadRequest(format!(
            "to must be a sip: URI or a number (+15550100), not {:?}",
            create.to
        )));
    }
    let join = create.conference.map(Join::options);
    if let Some(options) = &join {
        let plan = Plan {
            verbs: vec![Verb::Conference(options.clone())],
        };
        crate::router::validate(&plan, &RouterConfig::default())
            .map_err(|e| ApiError::BadRequest(format!("conference: {e}")))?;
    }
    let handler = create.handler.clone().unwrap_or_default();
    if handler.is_empty() && join.is_none() {
        return Err(ApiError::BadRequest(
            "say what runs once answered: a handler, or a conference to join".into(),
        ));
    }
    let spec = OriginateSpec {
        to: create.to.clone(),
        handler: handler.clone(),
        from: create.from,
        timeout: std::time::Duration::from_secs(u64::from(timeout_secs)),
        status_callback: create.status_callback,
        join,
    };
    let request = |reply| CallRequest::Originate {
        tenant: account,
        spec,
        reply,
    };
    let id = match state.switchboard.ask(request).await? {
        Ok(id) => id,
        Err(OriginateError::Busy { retry_after }) => {
            return Err(ApiError::TooManyRequests {
                message: OriginateError::Busy { retry_after }.to_string(),
                retry_after,
            });
        }
        Err(e @ OriginateError::NoMedia) => return Err(ApiError::Unavailable(e.to_string())),
        Err(e @ OriginateError::Suspended) => return Err(ApiError::Forbidden(e.to_string())),
        // An account with nothing provisioned yet has no place in the
        // SIP directory: it has no handlers either.
        Err(OriginateError::UnknownTenant(_)) => {
            return Err(ApiError::BadRequest(
                OriginateError::UnknownHandler(handler).to_string(),
            ));
        }
        Err(e @ (OriginateError::UnknownHandler(_) | OriginateError::BadAddress(_))) => {
            return Err(ApiError::BadRequest(e.to_string()));
        }
    };
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "id": id,
            "status": "queued",
            "to": create.to,
            "handler": create.handler,
        }),
    ))
}

/// Body of `POST /v1/calls/{id}`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    /// `"completed"` hangs up.
    status: Option<String>,
    /// A handler of the account (a component name) to ask next.
    redirect: Option<String>,
}

/// `POST /v1/calls/{id}`: hang up (`{"status":"completed"}`) or redirect
/// (`{"redirect":"NAME"}`) a call in progress; 202 with what was done.
pub(super) async fn update(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    let update: Update = parse_json(body)?;
    let (control, done) = match (update.status.as_deref(), update.redirect) {
        (Some("completed"), None) => (Control::Hangup, "completed"),
        (None, Some(handler)) => (Control::Redirect(handler), "redirected"),
        (Some(other), None) => {
            return Err(ApiError::BadRequest(format!(
                "status can only be set to \"completed\", not {other:?}"
            )));
        }
        _ => {
            return Err(ApiError::BadRequest(
                "send either {\"status\":\"completed\"} or {\"redirect\":\"HANDLER\"}".into(),
            ));
        }
    };
    let request = |reply| CallRequest::Control {
        tenant: account,
        call_id: id.to_owned(),
        control,
        reply,
    };
    match state.switchboard.ask(request).await? {
        Ok(()) => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "id": id, "status": done }),
        )),
        Err(ControlError::NotFound(_)) => {
            Err(ApiError::NotFound(format!("call {id:?} in progress")))
        }
        Err(e @ ControlError::UnknownHandler(_)) => Err(ApiError::BadRequest(e.to_string())),
    }
}

/// `GET /v1/calls/{id}`: the call, in progress or finished.
pub(super) async fn get(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    let account = caller.account()?;
    if let Some(call) = live(state, account).await?.into_iter().find(|c| c.id == id) {
        return Ok(json(StatusCode::OK, &call));
    }
    let found = find(state, caller, id).await?;
    Ok(json(StatusCode::OK, &Call::from(found)))
}

/// `GET /v1/calls/{id}/log`: the call's decision log, a JSON array of
/// entries (`{"at_ms", "kind", ...}`, as `switchyard logs --json` prints
/// them one per line).
pub(super) async fn log(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    let (store, owned) = (state.cdrs.clone(), id.to_owned());
    let log = blocking(move || Ok(store.log(&account, &owned)?))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("decision log of call {id:?}")))?;
    Ok(json(StatusCode::OK, &log.entries()))
}

/// The record of call `id` if it belongs to the calling account.
async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<Cdr, ApiError> {
    let account = caller.account()?.to_owned();
    let (store, owned) = (state.cdrs.clone(), id.to_owned());
    blocking(move || Ok(store.get(&account, &owned)?))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("call {id:?}")))
}
