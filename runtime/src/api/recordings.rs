//! `/v1/recordings`: the calling account's recordings (a recording's
//! `tenant` is its account id). Another account's recording is 404.

use hyper::StatusCode;

use super::{ApiError, ApiState, Caller, Query, Reply, blocking, json, no_content, page, wav_file};
use crate::store::recordings::{Recording, is_recording_id};

/// `GET /v1/recordings[?call=CA...]`: a page of the account's recordings
/// in id order, of one call if `call` is given.
pub(super) async fn list(
    state: &ApiState,
    caller: &Caller,
    query: &Query,
) -> Result<Reply, ApiError> {
    let account = caller.account()?.to_owned();
    let store = state.recordings.clone();
    let (call, after, limit) = (query.call.clone(), query.after.clone(), query.limit);
    let found =
        blocking(move || store.page(&account, call.as_deref(), after.as_deref(), limit + 1))
            .await?;
    Ok(page(found, limit, |r| &r.id))
}

/// `GET /v1/recordings/{id}`: its metadata.
pub(super) async fn get(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    let found = find(state, caller, id).await?;
    Ok(json(StatusCode::OK, &found))
}

/// `GET /v1/recordings/{id}/audio`: the WAV file.
pub(super) async fn audio(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    find(state, caller, id).await?;
    let path = state.recordings.audio_path(id);
    wav_file(&path, "private, no-cache")
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("audio of recording {id:?}")))
}

/// `DELETE /v1/recordings/{id}`: 204.
pub(super) async fn delete(state: &ApiState, caller: &Caller, id: &str) -> Result<Reply, ApiError> {
    find(state, caller, id).await?;
    let (store, owned) = (state.recordings.clone(), id.to_owned());
    if !blocking(move || store.delete(&owned)).await? {
        return Err(ApiError::NotFound(format!("recording {id:?}")));
    }
    Ok(no_content())
}

/// Recording `id` if it belongs to the calling account.
async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<Recording, ApiError> {
    let account = caller.account()?.to_owned();
    let missing = || ApiError::NotFound(format!("recording {id:?}"));
    if !is_recording_id(id) {
        return Err(missing());
    }
    let (store, owned) = (state.recordings.clone(), id.to_owned());
    blocking(move || store.get(&owned))
        .await?
        .filter(|r| r.tenant == account)
        .ok_or_else(missing)
}
