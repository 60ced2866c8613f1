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

/// Code of the 503 sent when the database is down or cannot write: nothing was written.
const DATABASE_UNAVAILABLE: &str = "database_unavailable";

/// `Retry-After` of `database_unavailable`: a restart or failover takes seconds, and two
/// keeps a fleet of tills from hammering a recovering server every few milliseconds.
const DATABASE_RETRY_AFTER_SECS: u64 = 2;

/// Least time between two log lines about the database being unavailable; a fleet of
/// tills hitting an outage would otherwise log once per request.
const OUTAGE_LOG_INTERVAL_MICROS: i64 = 5_000_000;

static LAST_OUTAGE_LOG: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
static SUPPRESSED_OUTAGE_LOGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An error ready to be sent to a client: a status, a stable machine code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code clients can branch on (`insufficient_funds`, `not_found`, …).
    pub code: &'static str,
    /// Human-readable explanation; never contains secrets or internal details.
    pub message: String,
    /// Seconds sent as `Retry-After` (503s and 429s): when the same request may be sent again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, sent with `Retry-After: secs`.
    pub(crate) fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400: the request could not be read at all (malformed JSON, bad header).
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credentials, or credentials that match nothing.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: valid credentials that do not grant this action.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 with a specific code (`permission_denied`, …).
    pub(crate) fn forbidden_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with a specific code (`gift_card_not_found`, …).
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: the request conflicts with the current state.
    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed input that is not acceptable (validation, business rule).
    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503: the database aborted the transaction to resolve a conflict with another one, and
    /// the retries ran out. Nothing was written; sent with `Retry-After`.
    pub(crate) fn transaction_conflict() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            TRANSACTION_CONFLICT,
            "the request collided with concurrent writes and changed nothing; send it again",
        )
        .with_retry_after(1)
    }

    /// 503: the database is out of reach or cannot write (see
    /// [`StoreError::is_unavailable`]). Nothing was written; sent with `Retry-After`.
    pub(crate) fn database_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            DATABASE_UNAVAILABLE,
            "the database is unavailable; nothing was changed, send the request again later",
        )
        .with_retry_after(DATABASE_RETRY_AFTER_SECS)
    }

    /// 429: this API key used up its request budget (see [`crate::ratelimit`]); it may
    /// send again after `retry_after_secs`.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests with this API key; retry after the time in Retry-After",
        )
        .with_retry_after(retry_after_secs)
    }

    /// 500: something on our side failed; the detail goes to the log only.
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; it has been logged",
        )
    }
}

/// The body of every error answer; also its schema in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong: a stable snake_case `code` to branch on (`insufficient_funds`,
/// `not_found`, …) and a `message` for people, which never carries secrets.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail<'a> {
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
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
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
        if err.is_unavailable() {
            log_outage(&err);
            metrics::counter!("posbridge_database_unavailable_total").increment(1);
            return ApiError::database_unavailable();
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

/// Logs a database outage naming the database (host and port, or file; never
/// credentials), at most once per [`OUTAGE_LOG_INTERVAL_MICROS`].
fn log_outage(err: &StoreError) {
    use std::sync::atomic::Ordering;
    let now = crate::store::now_micros();
    let last = LAST_OUTAGE_LOG.load(Ordering::Relaxed);
    if now - last < OUTAGE_LOG_INTERVAL_MICROS
        || LAST_OUTAGE_LOG
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        SUPPRESSED_OUTAGE_LOGS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED_OUTAGE_LOGS.swap(0, Ordering::Relaxed);
    tracing::error!(
        database = %crate::store::target(),
        error = %err,
        suppressed,
        "database unavailable; answering 503 database_unavailable"
    );
}

/// Result type of every handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
