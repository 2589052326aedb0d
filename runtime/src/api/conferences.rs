//! `/v1/conferences`: the calling account's conferences, in progress and
//! ended (kept across restarts), and what a moderator does to them. Another account's
//! conference is 404. A conference is named by its sid (`CF...`) or,
//! while it is open, by its name.

use hyper::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, page, parse_json};
use crate::conferences::{Change, Conference, ConferenceError, Conferences, Status};

/// `GET /v1/conferences[?status=init|in-progress|completed]`: newest first.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    let account = caller.account()?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status must be init, in-progress or completed, not {s:?}"
            ))
        })?),
    };
    let (after, limit) = (query.after.clone(), query.limit);
    let found = directory(state, account, move |d, account| {
        d.list(account, status, after.as_deref(), limit + 1)
    })
    .await?;
    Ok(page(found, limit, |c| &c.sid))
}

/// `GET /v1/conferences/{id}`: the conference and who is in it.
pub(super) async fn get(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    let id = id.to_owned();
    let found = directory(state, caller.account()?, move |d, account| {
        d.get(account, &id)
    })
    .await?;
    Ok(json(StatusCode::OK, &found))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    /// `"completed"` ends the conference.
    status: String,
}

/// `POST /v1/conferences/{id}` with `{"status":"completed"}`: ends it;
/// everyone in it gets `conference-complete` (ended).
pub(super) async fn update(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let end: End = parse_json(body)?;
    if end.status != "completed" {
        return Err(ApiError::BadRequest(format!(
            "status must be \"completed\" (ends the conference), not {:?}",
            end.status
        )));
    }
    let id = id.to_owned();
    let found = directory(state, caller.account()?, move |d, account| {
        d.end(account, &id)
    })
    .await?;
    Ok(json(StatusCode::ACCEPTED, &found))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Participant {
    muted: Option<bool>,
    hold: Option<bool>,
    /// The call this participant whispers to; `null` speaks to everyone.
    #[serde(default, deserialize_with = "present")]
    coach: Option<Option<String>>,
    /// `true` removes the participant (`conference-complete`, kicked).
    kick: Option<bool>,
}

/// Tells an absent `coach` (no change) from `"coach": null` (stop).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /v1/conferences/{id}/participants/{call}`: mute, hold, coach or
/// kick; 202 with the conference (the change shows once the mixer made it).
pub(super) async fn participant(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    call: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let account = caller.account()?;
    let p: Participant = parse_json(body)?;
    let mut changes = Vec::new();
    changes.extend(p.muted.map(Change::Mute));
    changes.extend(p.hold.map(Change::Hold));
    changes.extend(p.coach.map(Change::Coach));
    match p.kick {
        Some(true) => changes.push(Change::Kick),
        Some(false) => {
            return Err(ApiError::BadRequest(
                "kick is true or absent (a kicked call cannot be taken back)".into(),
            ));
        }
        None => {}
    }
    if changes.is_empty() {
        return Err(ApiError::BadRequest(
            "say what to change: muted, hold, coach or kick".into(),
        ));
    }
    let (id, call) = (id.to_owned(), call.to_owned());
    let found = directory(state, account, move |d, account| {
        let mut found = None;
        for change in changes {
            found = Some(d.change(account, &id, &call, change)?);
        }
        Ok::<Option<Conference>, ConferenceError>(found)
    })
    .await?;
    Ok(json(StatusCode::ACCEPTED, &found))
}

/// Runs `work` on the directory off the async path: an ended conference
/// is read from its SQLite history.
async fn directory<T: Send + 'static>(
    state: &ApiState,
    account: &str,
    work: impl FnOnce(&Conferences, &str) -> Result<T, ConferenceError> + Send + 'static,
) -> Result<T, ApiError> {
    let (directory, account) = (state.conferences.clone(), account.to_owned());
    blocking(move || Ok(work(&directory, &account)))
        .await?
        .map_err(error)
}

fn error(e: ConferenceError) -> ApiError {
    match e {
        ConferenceError::NotFound(_) | ConferenceError::NotParticipant(_) => {
            ApiError::NotFound(e.to_string())
        }
        ConferenceError::Ended => ApiError::Conflict(e.to_string()),
        ConferenceError::UnknownCursor(_) => ApiError::BadRequest(e.to_string()),
        ConferenceError::NoEngine | ConferenceError::History(_) => {
            ApiError::Unavailable(e.to_string())
        }
    }
}
