//! The one error type of the HTTP edge and the REST API: every failure
//! becomes JSON `{"code", "message"}` with a stable `code` and its status
//! here, in one place.

use hyper::StatusCode;
use hyper::header::{ALLOW, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

use super::{Reply, json};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401 `unauthorized`, with `WWW-Authenticate: Basic realm="switchyard"`.
    Unauthorized(String),
    /// 403 `forbidden`: authenticated, but not allowed.
    Forbidden(String),
    /// 404 `not_found`; also a resource of another account.
    NotFound(String),
    /// 400 `bad_request`.
    BadRequest(String),
    /// 409 `conflict`: the request fights the resource's state.
    Conflict(String),
    /// 413 `payload_too_large`.
    PayloadTooLarge { limit: usize },
    /// 405 `method_not_allowed`, with `Allow`.
    MethodNotAllowed { allow: String },
    /// 429 `too_many_requests`, with `Retry-After`: the account is at its
    /// call limits.
    TooManyRequests { message: String, retry_after: u32 },
    /// 501 `not_implemented`: a path the REST API does not serve (yet),
    /// with why.
    NotImplemented(&'static str),
    /// 503 `unavailable`: out of a resource for now (media ports).
    Unavailable(String),
    /// 500 `internal`.
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthorized(why)
            | ApiError::Forbidden(why)
            | ApiError::BadRequest(why)
            | ApiError::Conflict(why)
            | ApiError::Unavailable(why)
            | ApiError::Internal(why) => why.clone(),
            ApiError::TooManyRequests { message, .. } => message.clone(),
            ApiError::NotFound(what) => format!("no {what}"),
            ApiError::PayloadTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes")
            }
            ApiError::MethodNotAllowed { allow } => format!("this path allows {allow}"),
            ApiError::NotImplemented(why) => (*why).into(),
        }
    }

    pub fn into_reply(self) -> Reply {
        if let ApiError::Internal(reason) = &self {
            tracing::warn!(%reason, "HTTP request failed");
        }
        let body = serde_json::json!({ "code": self.code(), "message": self.message() });
        let mut reply = json(self.status(), &body);
        let headers = reply.headers_mut();
        match self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    headers.insert(ALLOW, value);
                }
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"switchyard\""),
                );
            }
            _ => {}
        }
        reply
    }
}

/// An internal error from anything displayable (`{:#}` keeps anyhow's chain).
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("{e:#}"))
}
