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

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::Row;

use crate::auth::TenantScope;
use crate::error::ApiError;
use crate::events::{LoggedTx, Writes};
use crate::extract::{BodyDigest, Idempotency};
use crate::store::{now_micros, Store, StoreError};

/// Runs `op` in a [`LoggedTx`] (shared with concurrent writes, see
/// [`crate::events::Writes`]), honouring the request's `Idempotency-Key`, and answers with
/// the status and JSON body `op` returns (or the stored ones, for a replay), once the
/// transaction holding it committed.
///
/// Should the database abort the write to resolve a conflict with another one, the whole
/// of it, key claim included, runs again: `op` may be called more than once, each time
/// afresh, and only its last run is committed. Two requests with one key in the same
/// batch are ordered like any others: the second finds the first's stored answer (visible
/// inside the batch) and replays it, answered with the first after the commit.
pub(crate) async fn execute<T, E, F>(
    writes: &Writes,
    scope: &TenantScope,
    idempotency: &Idempotency,
    body_digest: &BodyDigest,
    op: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    E: Into<ApiError>,
    F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<(StatusCode, T), E>>
        + Send
        + Sync
        + 'static,
{
    let claim = idempotency.key().map(|key| {
        let (fingerprint, legacy_fingerprint) = idempotency.fingerprints(body_digest);
        Arc::new(Claim {
            tenant_id: scope.tenant_id().to_owned(),
            key: key.to_owned(),
            fingerprint,
            legacy_fingerprint,
        })
    });
    let op = Arc::new(op);
    let (status, body, replayed) = writes
        .run(scope.tenant_id(), move |tx| {
            let (claim, op) = (claim.clone(), op.clone());
            Box::pin(async move { execute_in(tx, claim.as_deref(), &*op).await })
        })
        .await?;
    Ok(json_response(status, body, replayed))
}

/// The request's key and what it must match, owned so a queued write can carry them.
struct Claim {
    tenant_id: String,
    key: String,
    fingerprint: String,
    legacy_fingerprint: String,
}

/// One run of [`execute`] inside the shared transaction: claim the key (or replay the stored
/// answer), run `op`, store its answer. Returns status, body and whether it is a replay.
async fn execute_in<T, E, F>(
    tx: &mut LoggedTx,
    claim: Option<&Claim>,
    op: &F,
) -> Result<(StatusCode, String, bool), ApiError>
where
    T: Serialize,
    E: Into<ApiError>,
    F: for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<(StatusCode, T), E>>,
{
    if let Some(claim) = claim {
        // Claiming the key first makes a concurrent duplicate in another transaction wait
        // on the unique index until this one ends, instead of running the operation twice.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, body, created_at)
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (tenant_id, key) DO NOTHING",
        )
        .bind(&claim.tenant_id)
        .bind(&claim.key)
        .bind(&claim.fingerprint)
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
            .bind(&claim.tenant_id)
            .bind(&claim.key)
            .fetch_one(tx.conn())
            .await
            .map_err(StoreError::from)?;
            let stored_fingerprint: String =
                row.try_get("fingerprint").map_err(StoreError::from)?;
            // A key stored before fingerprints were canonical holds the raw-bytes one: a
            // byte-identical retry of it still replays. Equal bytes are an equal value, so
            // accepting either never replays a different request.
            if stored_fingerprint != claim.fingerprint
                && stored_fingerprint != claim.legacy_fingerprint
            {
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
            return Ok((status, body, true));
        }
    }
    // Serialized in a block of its own: the value need not live (nor be `Send`) across
    // the next statement.
    let (status, body) = {
        let (status, value) = op(tx).await.map_err(Into::into)?;
        let body = serde_json::to_string(&value).map_err(|err| {
            tracing::error!(error = %err, "response serialization failed");
            ApiError::internal()
        })?;
        (status, body)
    };
    if let Some(claim) = claim {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE tenant_id = $3 AND key = $4",
        )
        .bind(i64::from(status.as_u16()))
        .bind(&body)
        .bind(&claim.tenant_id)
        .bind(&claim.key)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from)?;
    }
    Ok((status, body, false))
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
pub(crate) async fn prune(store: &Store, ttl_micros: i64) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1 AND status <> 0")
            .bind(now_micros() - ttl_micros)
            .execute(store.writer())
            .await?
            .rows_affected(),
    )
}
