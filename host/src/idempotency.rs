//! `Idempotency-Key` for writes: the first request's response is stored in the same
//! transaction as its effects, so a retry gets that response and changes nothing.
//!
//! "The same request" is the same method and path with an equal JSON body: whitespace
//! and object key order aside (see [`crate::extract::canonical_json`]), as payment APIs
//! compare parameters rather than spelling, since clients re-serialise when they retry.
//!
//! Only successful responses are stored: a request refused for a business reason (say,
//! insufficient funds) changed nothing, and may be retried with the same key once the
//! reason is gone. Keys are kept for [`crate::config::ServeConfig::idempotency_ttl`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::Row;

use crate::auth::TenantScope;
use crate::error::ApiError;
use crate::events::LoggedTx;
use crate::extract::{BodyDigest, Idempotency};
use crate::state::AppState;
use crate::store::{now_micros, retry_conflicts, Store, StoreError};

/// Runs `op` in one [`LoggedTx`], honouring the request's `Idempotency-Key`, and answers
/// with the status and JSON body `op` returns (or the stored ones, for a replay).
///
/// Should the database abort the transaction to resolve a conflict with another one, the
/// whole of it, key claim included, runs again ([`retry_conflicts`]): `op` may be called
/// more than once, each time in a fresh transaction, and only its last run is committed.
pub async fn execute<T, E, F>(
    app: &AppState,
    scope: &TenantScope,
    idempotency: &Idempotency,
    body_digest: &BodyDigest,
    op: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    E: Into<ApiError>,
    F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<(StatusCode, T), E>>,
{
    retry_conflicts("idempotent write", || {
        execute_once(app, scope, idempotency, body_digest, &op)
    })
    .await
}

/// One attempt of [`execute`]: begins, runs and commits the transaction.
async fn execute_once<T, E, F>(
    app: &AppState,
    scope: &TenantScope,
    idempotency: &Idempotency,
    body_digest: &BodyDigest,
    op: &F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    E: Into<ApiError>,
    F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<(StatusCode, T), E>>,
{
    let mut tx = LoggedTx::begin(&app.store, &app.hub).await?;
    let key = idempotency.key();
    if let Some(key) = key {
        let (fingerprint, legacy_fingerprint) = idempotency.fingerprints(body_digest);
        // Claiming the key first makes a concurrent duplicate wait on the unique index until
        // this transaction ends, instead of running the operation a second time.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, body, created_at)
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (tenant_id, key) DO NOTHING",
        )
        .bind(scope.tenant_id())
        .bind(key)
        .bind(&fingerprint)
        .bind(now_micros())
        .execute(tx.conn())
        .await
        .map_err(StoreError::from)?
        .rows_affected()
            == 1;
        if !claimed {
            let row = sqlx::query(
                "SELECT fingerprint, status, body FROM idempotency_keys
                 WHERE tenant_id = $1 AND key = $2",
            )
            .bind(scope.tenant_id())
            .bind(key)
            .fetch_one(tx.conn())
            .await
            .map_err(StoreError::from)?;
            drop(tx);
            let stored_fingerprint: String =
                row.try_get("fingerprint").map_err(StoreError::from)?;
            // A key stored before fingerprints were canonical holds the raw-bytes one: a
            // byte-identical retry of it still replays. Equal bytes are an equal value, so
            // accepting either never replays a different request.
            if stored_fingerprint != fingerprint && stored_fingerprint != legacy_fingerprint {
                return Err(ApiError::unprocessable(
                    "idempotency_key_reused",
                    "this Idempotency-Key was already used for a different request",
                ));
            }
            let status: i64 = row.try_get("status").map_err(StoreError::from)?;
            let body: String = row.try_get("body").map_err(StoreError::from)?;
            let status = u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| {
                    ApiError::conflict(
                        "idempotency_key_in_flight",
                        "a request with this Idempotency-Key is still being processed",
                    )
                })?;
            return Ok(json_response(status, body, true));
        }
    }
    let (status, value) = op(&mut tx).await.map_err(Into::into)?;
    let body = serde_json::to_string(&value).map_err(|err| {
        tracing::error!(error = %err, "response serialization failed");
        ApiError::internal()
    })?;
    if let Some(key) = key {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE tenant_id = $3 AND key = $4",
        )
        .bind(i64::from(status.as_u16()))
        .bind(&body)
        .bind(scope.tenant_id())
        .bind(key)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from)?;
    }
    tx.commit().await?;
    Ok(json_response(status, body, false))
}

fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Deletes keys older than `ttl_micros`; run periodically by the server.
pub async fn prune(store: &Store, ttl_micros: i64) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1 AND status <> 0")
            .bind(now_micros() - ttl_micros)
            .execute(store.writer())
            .await?
            .rows_affected(),
    )
}
