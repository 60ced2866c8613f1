//! The one error shape every HTTP route answers with: `{"error":{"code","message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::{StoreError, TransientConflict};

/// Code of the 503 sent when a transaction kept colliding with others (see
/// [`crate::store::retry_conflicts`]): nothing was written, and the same request may be sent
/// again.
const TRANSACTION_CONFLICT: &str = "transaction_conflict";

/// An error ready to be sent to a client: a status, a stable machine code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code clients can branch on (`insufficient_funds`, `not_found`, …).
    pub code: &'static str,
    /// Human-readable explanation; never contains secrets or internal details.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request could not be read at all (malformed JSON, bad header).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credentials, or credentials that match nothing.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: valid credentials that do not grant this action.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 with a specific code (`permission_denied`, …).
    pub fn forbidden_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with a specific code (`gift_card_not_found`, …).
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed input that is not acceptable (validation, business rule).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503: the database aborted the transaction to resolve a conflict with another one, and
    /// the retries ran out. Nothing was written; sent with `Retry-After`.
    pub fn transaction_conflict() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            TRANSACTION_CONFLICT,
            "the request collided with concurrent writes and changed nothing; send it again",
        )
    }

    /// 500: something on our side failed; the detail goes to the log only.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; it has been logged",
        )
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.code == TRANSACTION_CONFLICT {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl TransientConflict for ApiError {
    fn is_transient_conflict(&self) -> bool {
        self.code == TRANSACTION_CONFLICT
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_transient_conflict() {
            tracing::warn!(error = %err, "transaction aborted by a conflict with another");
            return ApiError::transaction_conflict();
        }
        tracing::error!(error = %err, "storage failure");
        ApiError::internal()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(err).into()
    }
}

/// Result type of every handler.
pub type ApiResult<T> = Result<T, ApiError>;
