//! The one error type at the HTTP edge: explicit 4xx, everything else an opaque 500 that is
//! logged once with its cause.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;
use crate::validate::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Known, but not allowed this: a tenant user reaching past its tenant, a viewer changing
    /// something, a state-changing console request without its CSRF token.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Not now: try again after `retry_after` seconds (503 with `Retry-After`).
    #[error("{message}")]
    Unavailable { message: String, retry_after: u32 },
    /// Too many attempts (console logins): try again after `retry_after` seconds (429).
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u32 },
    /// The request is understood but the order in it is invalid; the body lists its problems.
    #[error("{message}")]
    InvalidOrder {
        message: String,
        problems: Vec<Problem>,
    },
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(message) => ApiError::NotFound(message),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            other => ApiError::Internal(other),
        }
    }
}

impl ApiError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InvalidOrder { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Unavailable {
                message,
                retry_after,
            }
            | ApiError::TooManyRequests {
                message,
                retry_after,
            } => {
                let body = Json(json!({ "error": message }));
                let retry = [(axum::http::header::RETRY_AFTER, retry_after.to_string())];
                return (status, retry, body).into_response();
            }
            ApiError::InvalidOrder { message, problems } => {
                let body = json!({ "error": message, "problems": problems });
                return (status, Json(body)).into_response();
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
            }
            _ => {}
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
