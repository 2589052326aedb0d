//! `POST /v1/confirmations`: this runtime, as a provider (`[provider]`,
//! C11), answers "did you place a call from X to Y around T?" — yes, no
//! or unknown, signed with its key, and nothing more. No account auth:
//! the query is signed by the asking provider, whose key the directory
//! has; each asker is rate-limited.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use switchyard_directory::MessageError;

use super::{ApiError, ApiState, Reply};
use crate::directory::{AnswerError, JOSE};

/// The signed reply (`application/jose`).
pub(super) async fn answer(state: &ApiState, body: &[u8]) -> Result<Reply, ApiError> {
    let answerer = state.directory.answerer.as_deref().ok_or_else(|| {
        ApiError::NotFound(
            "confirmations here: this runtime is not a provider (no [provider] in its config)"
                .into(),
        )
    })?;
    let token = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body must be a compact JWS (text)".into()))?;
    let reply = answerer.answer(token.trim()).await.map_err(answer_error)?;
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JOSE));
    Ok(response)
}

/// What an unanswered query is, in HTTP.
fn answer_error(e: AnswerError) -> ApiError {
    match e {
        AnswerError::Query(MessageError::Signature { .. }) | AnswerError::UnknownAsker(_) => {
            ApiError::Unauthorized(e.to_string())
        }
        AnswerError::Query(_) => ApiError::BadRequest(e.to_string()),
        AnswerError::Directory(why) => ApiError::Unavailable(why),
        AnswerError::Limited { retry_after, .. } => ApiError::TooManyRequests {
            message: e.to_string(),
            retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u32,
        },
        AnswerError::Store(why) => super::internal(why),
    }
}
