//! Signed webhooks: verified, stored in the inbox, acknowledged, then processed from the
//! inbox with retries. A delivery is acknowledged only once it is durable, so nothing
//! acknowledged is lost if the process dies right after answering; processing is
//! idempotent (provider event ids are remembered for 8 days, sales are unique per
//! integration), so a replay, a retry or a restart never records a sale twice.
//!
//! This file is the receiving side (verify, store, acknowledge) and the dead-letter hooks;
//! the worker that drains the inbox is `webhooks/inbox.rs`.

mod inbox;

pub(crate) use inbox::{spawn_inbox_worker, InboxWakeup};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use sqlx::Row;

use super::integrations::{by_id, webhook_key_of};
use crate::dead_letters::{self, RetryOutcome};
use crate::error::{ApiError, ApiResult};
use crate::plugins::contract::Webhook;
use crate::plugins::CallContext;
use crate::providers::ProvidersState;
use crate::store::{new_id, now_micros, StoreError};

/// Event ids are remembered this long: Square retries for 72 h, and the contract promises
/// at least 7 days of replay protection.
const SEEN_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// Webhook inbox retry tuning (`serve` flags `--webhook-*`; see [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct InboxOptions {
    /// Processing attempts at a webhook delivery before it is set aside as a dead letter.
    /// Default 8: with the default backoff the attempts span about four minutes, long
    /// enough to ride out a plugin being replaced, short enough that a poison delivery is
    /// in front of an operator the same hour. Failures that say nothing about the
    /// delivery (database unavailable, transaction conflicts) do not count. At least 1.
    #[arg(
        id = "webhook_max_attempts",
        long = "webhook-max-attempts",
        env = "POSBRIDGE_WEBHOOK_MAX_ATTEMPTS",
        default_value = "8",
        value_parser = crate::options::at_least(1i64)
    )]
    pub max_attempts: i64,
    /// Milliseconds before a failed webhook delivery's first retry; it doubles with every
    /// further failure, up to ten minutes. Default 2 s: a transient failure (a plugin
    /// being replaced, a lock) is usually gone by then. At least 1.
    #[arg(
        id = "webhook_retry_base",
        long = "webhook-retry-base-ms",
        env = "POSBRIDGE_WEBHOOK_RETRY_BASE_MS",
        default_value = "2000",
        value_parser = crate::options::millis(1)
    )]
    pub retry_base: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// Longest wait between retries of one delivery.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(600);
/// Processed deliveries are kept this long for auditing, then deleted.
const INBOX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Answer of an accepted webhook delivery.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct Received {
    /// Always true: stored in the inbox, processed in the background.
    pub received: bool,
    /// The delivery's inbox id.
    pub id: String,
}

/// `POST /webhooks/{provider}/{integration_id}`: public, authenticated by the signature.
#[utoipa::path(post, path = "/webhooks/{provider}/{integration_id}", tag = "public",
    summary = "Receives a POS provider's webhook (authenticated by the provider's signature)",
    request_body(content = Vec<u8>, content_type = "application/json",
        description = "The provider's delivery, as it sent it; the plugin checks its signature headers."),
    params(
        ("provider" = String, Path, description = "The provider plugin id."),
        ("integration_id" = String, Path, description = "The integration's id (from connect)."),
    ),
    responses(
    (status = 200, description = "Stored in the inbox.", body = Received),
    (status = 401, description = "`unauthorized`: bad signature, or no signature key configured."),
    (status = 404, description = "`not_found`: no such integration for this provider."),
    (status = 410, description = "`integration_disconnected`."),
    (status = 413, description = "`payload_too_large`."),
    (status = 422, description = "`unsupported_character`: a NUL in the path."),
    (status = 400, description = "`invalid_path`."),
    (status = 503, description = "`plugin_unavailable`, `database_unavailable`."),
))]
pub(super) async fn receive(
    State(app): State<ProvidersState>,
    Path((provider, integration_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Received>)> {
    let _in_flight = InFlight::enter(&app.webhook_acks);
    let not_found = || ApiError::not_found("not_found", "no such webhook endpoint");
    let integration = by_id(&app, &integration_id).await?.ok_or_else(not_found)?;
    if integration.provider != provider {
        return Err(not_found());
    }
    if integration.status == "DISCONNECTED" {
        return Err(ApiError::new(
            StatusCode::GONE,
            "integration_disconnected",
            "this integration is disconnected",
        ));
    }
    let key = webhook_key_of(&app, &integration).ok_or_else(|| {
        ApiError::unauthorized("no webhook signature key is configured for this integration")
    })?;
    let webhook = Webhook {
        url: integration.webhook_url.clone().unwrap_or_default(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let ctx = CallContext {
        tenant_id: integration.tenant_id.clone(),
        integration_id: integration.id.clone(),
    };
    let verified = app.plugins.verify_webhook(&provider, &ctx, &webhook, &key).await.map_err(|e| {
        tracing::warn!(integration = %integration.id, error = %e, "webhook verification failed to run");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_unavailable", "the provider plugin could not verify this delivery")
    })?;
    if !verified {
        metrics::counter!("posbridge_webhooks_total", "provider" => provider.clone(), "outcome" => "bad_signature").increment(1);
        tracing::warn!(integration = %integration.id, %provider, "webhook signature rejected");
        return Err(ApiError::unauthorized("invalid webhook signature"));
    }
    let delivery = Arc::new(InboxRow {
        id: new_id(),
        integration_id: integration.id.clone(),
        provider: provider.clone(),
        received_at: now_micros(),
        url: webhook.url,
        headers: serde_json::to_string(&webhook.headers.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_else(|_| "{}".into()),
        body: webhook.body,
    });
    // Through the group commit, like every other write: concurrent acknowledgements share
    // one commit, and so one fsync with `--sqlite-synchronous full` (the default), where
    // each took its own as a statement of its own on the writer (see docs/performance.md).
    let stored = delivery.clone();
    app.writes
        .run(&integration.tenant_id, move |tx| {
            let row = stored.clone();
            Box::pin(async move { row.insert(tx.conn()).await })
        })
        .await?;
    let id = delivery.id.clone();
    metrics::counter!("posbridge_webhooks_total", "provider" => provider, "outcome" => "accepted")
        .increment(1);
    app.inbox_wakeup.wake();
    Ok((StatusCode::OK, Json(Received { received: true, id })))
}

/// A verified delivery as the inbox stores it, until the worker processes it.
struct InboxRow {
    id: String,
    integration_id: String,
    provider: String,
    received_at: i64,
    url: String,
    /// The request's headers as a JSON object (the plugin reads its signature headers
    /// from them again when processing).
    headers: String,
    body: Vec<u8>,
}

impl InboxRow {
    async fn insert(&self, conn: &mut crate::store::Conn) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_inbox (id, integration_id, provider, received_at, url, headers, body, status, attempts, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $4)",
        )
        .bind(&self.id)
        .bind(&self.integration_id)
        .bind(&self.provider)
        .bind(self.received_at)
        .bind(&self.url)
        .bind(&self.headers)
        .bind(self.body.as_slice())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Acknowledgements in progress and begun, which the inbox worker reads to stay out of their
/// way. Shared by the handlers and the worker through [`ProvidersState`].
#[derive(Debug, Default)]
pub struct AckActivity {
    in_flight: AtomicUsize,
    started: AtomicU64,
}

/// Counts a webhook being acknowledged for as long as it lives.
struct InFlight(Arc<AckActivity>);

impl InFlight {
    fn enter(acks: &Arc<AckActivity>) -> InFlight {
        acks.started.fetch_add(1, Ordering::Relaxed);
        acks.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(acks.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The stored delivery behind a webhook dead letter, for the admin detail view: provider,
/// arrival, event id and the body (as text where it is UTF-8).
pub(crate) async fn payload(
    app: &ProvidersState,
    inbox_id: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let row = sqlx::query(
        "SELECT provider, received_at, event_id, status, attempts, body FROM webhook_inbox WHERE id = $1",
    )
    .bind(inbox_id)
    .fetch_optional(app.store.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let body: Vec<u8> = row.try_get("body")?;
    Ok(Some(serde_json::json!({
        "provider": row.try_get::<String, _>("provider")?,
        "received_at": crate::store::rfc3339(row.try_get("received_at")?),
        "inbox_status": row.try_get::<String, _>("status")?,
        "body": String::from_utf8_lossy(&body),
    })))
}

/// Re-queues the delivery behind a webhook dead letter: back to pending with its attempts
/// reset, the dead letter `retrying` until the inbox worker settles it (removed when it is
/// recorded, `dead` again with the new reason when it fails).
pub(crate) async fn requeue(
    app: &ProvidersState,
    dead: &dead_letters::Stored,
) -> Result<RetryOutcome, StoreError> {
    let mut tx = app.store.begin().await?;
    let found = sqlx::query(
        "UPDATE webhook_inbox SET status = 'pending', attempts = 0, error = NULL, processed_at = NULL,
           next_attempt_at = $1, claimed_by = NULL, claimed_until = NULL WHERE id = $2",
    )
    .bind(now_micros())
    .bind(&dead.view.source_id)
    .execute(&mut tx)
    .await?
    .rows_affected();
    if found == 0 {
        return Ok(RetryOutcome::Gone(
            "the webhook delivery is no longer in the inbox".into(),
        ));
    }
    sqlx::query(
        "UPDATE dead_letters SET status = 'retrying', retries = retries + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now_micros())
    .bind(&dead.view.id)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    app.inbox_wakeup.wake();
    Ok(RetryOutcome::Requeued)
}
