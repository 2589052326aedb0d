//! `/v1/directory`: the call placement directory this runtime serves
//! (`[directory] serve`, C11). No account auth: a provider's update is
//! signed with its own key (the signature is the credential), and
//! lookups are public — saying who manages a number is what a directory
//! is for.

use hyper::StatusCode;
use serde::Serialize;
use switchyard_directory::{Identifier, MessageError, Provider, UpdateError};

use super::{ApiError, ApiState, Query, Reply, json};
use crate::directory::{Directory, PutError};

/// A provider as the directory shows it.
#[derive(Serialize)]
struct View {
    id: String,
    confirm_url: String,
    /// SPKI PEM.
    key: String,
    identifiers: Vec<String>,
    /// The `iat` of the update that set it, Unix seconds.
    updated: i64,
}

impl From<&Provider> for View {
    fn from(p: &Provider) -> Self {
        View {
            id: p.id.clone(),
            confirm_url: p.confirm_url.clone(),
            key: p.key_pem(),
            identifiers: p.identifiers.iter().map(ToString::to_string).collect(),
            updated: p.updated,
        }
    }
}

fn served(state: &ApiState) -> Result<&Directory, ApiError> {
    state.directory.directory.as_deref().ok_or_else(|| {
        ApiError::NotFound(
            "call placement directory here: this runtime does not serve one ([directory] serve = false)"
                .into(),
        )
    })
}

/// `PUT /v1/directory/providers/{id}` (body: the signed update, a compact
/// JWS): 201 created, 200 updated.
pub(super) async fn put(state: &ApiState, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let directory = served(state)?;
    let token = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body must be a compact JWS (text)".into()))?;
    let (created, provider) = directory.put(id, token.trim()).await.map_err(put_error)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &View::from(&provider)))
}

/// What a refused update is, in HTTP.
fn put_error(e: PutError) -> ApiError {
    match e {
        PutError::Update(UpdateError::Message(MessageError::Signature { .. })) => {
            ApiError::Unauthorized(e.to_string())
        }
        PutError::Update(UpdateError::Conflict(_)) => ApiError::Conflict(e.to_string()),
        PutError::Update(_) => ApiError::BadRequest(e.to_string()),
        PutError::Store(why) => super::internal(why),
    }
}

/// `GET /v1/directory/providers/{id}`.
pub(super) fn get(state: &ApiState, id: &str) -> Result<Reply, ApiError> {
    let provider = (served(state)?.provider(id))
        .ok_or_else(|| ApiError::NotFound(format!("provider {id:?} in the directory")))?;
    Ok(json(StatusCode::OK, &View::from(&provider)))
}

/// `GET /v1/directory/lookup?id=<number, range or domain>`: the entry
/// that matched (the most specific) and its provider.
pub(super) fn lookup(state: &ApiState, query: &Query) -> Result<Reply, ApiError> {
    let directory = served(state)?;
    let text = (query.id.as_deref())
        .ok_or_else(|| ApiError::BadRequest("lookup needs ?id=<number, range or domain>".into()))?;
    let identifier = Identifier::parse(text)
        .or_else(|_| Identifier::caller(text))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (entry, provider) = (directory.lookup(&identifier))
        .ok_or_else(|| ApiError::NotFound(format!("provider for {identifier} in the directory")))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "identifier": entry.to_string(),
            "provider": provider.id,
            "confirm_url": provider.confirm_url,
            "key": provider.key_pem(),
        }),
    ))
}
