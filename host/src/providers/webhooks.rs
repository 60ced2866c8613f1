//! Signed webhooks: verified, stored in the inbox, acknowledged, then processed from the
//! inbox with retries. A delivery is acknowledged only once it is durable, so nothing
//! acknowledged is lost if the process dies right after answering; processing is
//! idempotent (provider event ids are remembered for 8 days, sales are unique per
//! integration), so a replay, a retry or a restart never records a sale twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use sqlx::Row;

use super::ingest::{ingest, IngestCounts, IngestTarget, Source};
use super::integrations::{by_id, webhook_key_of, Integration};
use crate::auth::TenantScope;
use crate::error::{ApiError, ApiResult};
use crate::events::LoggedTx;
use crate::plugins::contract::{ProviderError, Webhook, WebhookEvent};
use crate::plugins::CallContext;
use crate::state::AppState;
use crate::store::{new_id, now_micros, StoreError};

/// Event ids are remembered this long: Square retries for 72 h, and the contract promises
/// at least 7 days of replay protection.
const SEEN_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// Processing attempts before a delivery is marked failed.
const MAX_ATTEMPTS: i64 = 8;
/// Processed deliveries are kept this long for auditing, then deleted.
const INBOX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A worker claims a delivery for this long. A host that died mid-delivery leaves its claim
/// behind; the next host to start releases it at once (see [`spawn_inbox_worker`]), and any
/// other host sees it expire after this long.
const CLAIM: Duration = Duration::from_secs(60);

/// `POST /webhooks/{provider}/{integration_id}`: public, authenticated by the signature.
pub async fn receive(
    State(app): State<AppState>,
    Path((provider, integration_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let _in_flight = InFlight::enter(&app.webhooks_in_flight);
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
    let url = integration.webhook_url.clone().unwrap_or_default();
    let header_list: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let webhook = Webhook {
        url: url.clone(),
        headers: header_list.clone(),
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
    let id = new_id();
    let now = now_micros();
    let headers_json: BTreeMap<String, String> = header_list.into_iter().collect();
    sqlx::query(
        "INSERT INTO webhook_inbox (id, integration_id, provider, received_at, url, headers, body, status, attempts, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $4)",
    )
    .bind(&id)
    .bind(&integration.id)
    .bind(&provider)
    .bind(now)
    .bind(&url)
    .bind(serde_json::to_string(&headers_json).unwrap_or_else(|_| "{}".into()))
    .bind(body.to_vec())
    .execute(app.store.writer())
    .await?;
    metrics::counter!("posbridge_webhooks_total", "provider" => provider, "outcome" => "accepted")
        .increment(1);
    app.inbox_wakeup.notify_one();
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({"received": true, "id": id})),
    ))
}

/// Counts a webhook being acknowledged for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Longest the inbox worker defers a batch to acknowledgements in progress. Acks are what a
/// provider waits on (and retries when slow); recording can trail. The cap keeps the inbox
/// draining under sustained load, at a lower rate, instead of starving it.
const ACK_PRIORITY_WAIT: Duration = Duration::from_millis(20);

/// Waits (at most [`ACK_PRIORITY_WAIT`]) until no acknowledgement is in progress, so on a
/// busy host the CPU and the single SQLite writer go to acknowledging first.
async fn let_acks_go_first(app: &AppState) {
    let started = std::time::Instant::now();
    while app.webhooks_in_flight.load(Ordering::Relaxed) > 0
        && started.elapsed() < ACK_PRIORITY_WAIT
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Starts the inbox worker; it drains pending deliveries (including those left by a
/// previous process) and stops with the server.
pub fn spawn_inbox_worker(app: AppState) {
    tokio::spawn(async move {
        release_stale_claims(&app).await;
        let mut last_prune = std::time::Instant::now();
        loop {
            let_acks_go_first(&app).await;
            match drain(&app).await {
                Ok(0) => {}
                Ok(_) => continue,
                Err(err) => tracing::warn!(error = %err, "webhook inbox pass failed"),
            }
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = std::time::Instant::now();
                if let Err(err) = prune(&app).await {
                    tracing::warn!(error = %err, "webhook inbox pruning failed");
                }
            }
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = app.inbox_wakeup.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Releases claims held by other processes. On SQLite those can only be a crashed
/// predecessor's (one process owns the file); on a shared PostgreSQL they may belong to live
/// hosts, and releasing them only means a delivery may be parsed twice: the second pass
/// records nothing, because the event id is checked in the same transaction as the ingest.
async fn release_stale_claims(app: &AppState) {
    let released = sqlx::query(
        "UPDATE webhook_inbox SET claimed_by = NULL, claimed_until = NULL
         WHERE status = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $1",
    )
    .bind(app.hub.node_id())
    .execute(app.store.writer())
    .await;
    match released {
        Ok(r) if r.rows_affected() > 0 => {
            tracing::info!(
                released = r.rows_affected(),
                "released webhook claims left by a stopped process"
            )
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not release stale webhook claims"),
    }
}

/// Deliveries recorded per transaction: one commit (one WAL sync on SQLite) for a batch
/// instead of one per delivery, which keeps the inbox draining faster than acknowledgements
/// arrive. Parsing happens before the transaction, so plugin calls never hold the writer.
const BATCH: i64 = 32;

async fn drain(app: &AppState) -> Result<usize, StoreError> {
    let now = now_micros();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM webhook_inbox WHERE status = 'pending' AND next_attempt_at <= $1
           AND (claimed_until IS NULL OR claimed_until < $1)
         ORDER BY received_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(app.store.reader())
    .await?;
    let mut parsed = Vec::new();
    let mut integrations: HashMap<String, Option<(Integration, TenantScope)>> = HashMap::new();
    let mut done = 0;
    for id in ids {
        if app.shutdown.is_cancelled() {
            break;
        }
        let claimed = sqlx::query(
            "UPDATE webhook_inbox SET claimed_by = $1, claimed_until = $2
             WHERE id = $3 AND status = 'pending' AND next_attempt_at <= $4
               AND (claimed_until IS NULL OR claimed_until < $4)",
        )
        .bind(app.hub.node_id())
        .bind(now + CLAIM.as_micros() as i64)
        .bind(&id)
        .bind(now)
        .execute(app.store.writer())
        .await?
        .rows_affected();
        if claimed == 1 {
            done += 1;
            if let Some(p) = parse(app, &id, &mut integrations).await? {
                parsed.push(p);
            }
        }
    }
    if !parsed.is_empty() {
        record(app, parsed).await?;
    }
    Ok(done)
}

/// A delivery parsed by its plugin, ready to be recorded.
struct Parsed {
    id: String,
    integration: Integration,
    scope: TenantScope,
    event: WebhookEvent,
}

/// Parses one claimed delivery; failures are settled here (retry or give up) and yield None.
async fn parse(
    app: &AppState,
    id: &str,
    integrations: &mut HashMap<String, Option<(Integration, TenantScope)>>,
) -> Result<Option<Parsed>, StoreError> {
    let row = sqlx::query("SELECT integration_id, provider, url, headers, body, attempts FROM webhook_inbox WHERE id = $1")
        .bind(id)
        .fetch_one(app.store.reader())
        .await?;
    let integration_id: String = row.try_get("integration_id")?;
    let provider: String = row.try_get("provider")?;
    let attempts: i64 = row.try_get("attempts")?;
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&row.try_get::<String, _>("headers")?).unwrap_or_default();
    let webhook = Webhook {
        url: row.try_get("url")?,
        headers: headers.into_iter().collect(),
        body: row.try_get("body")?,
    };
    if !integrations.contains_key(&integration_id) {
        let loaded = match by_id(app, &integration_id).await? {
            Some(integration) => {
                TenantScope::for_background_job(&app.store, &integration.tenant_id)
                    .await?
                    .map(|scope| (integration, scope))
            }
            None => None,
        };
        integrations.insert(integration_id.clone(), loaded);
    }
    let Some(Some((integration, scope))) = integrations.get(&integration_id) else {
        finish(
            app,
            id,
            "failed",
            None,
            Some("integration or tenant deleted"),
        )
        .await?;
        return Ok(None);
    };
    let ctx = CallContext {
        tenant_id: integration.tenant_id.clone(),
        integration_id: integration.id.clone(),
    };
    match app.plugins.parse_webhook(&provider, &ctx, &webhook).await {
        Ok(Ok(event)) => Ok(Some(Parsed {
            id: id.to_owned(),
            integration: integration.clone(),
            scope: scope.clone(),
            event,
        })),
        Ok(Err(ProviderError::BadPayload(why))) => {
            tracing::warn!(webhook = %id, reason = %why, "webhook payload unreadable; not retried");
            finish(app, id, "failed", None, Some(&why)).await?;
            Ok(None)
        }
        Ok(Err(e)) => retry(app, id, attempts, &e.to_string())
            .await
            .map(|()| None),
        Err(e) => retry(app, id, attempts, &e.to_string())
            .await
            .map(|()| None),
    }
}

/// Records a batch of parsed deliveries in one transaction. A provider event id already seen
/// (a replay, or a delivery parsed twice after a crash) records nothing.
async fn record(app: &AppState, batch: Vec<Parsed>) -> Result<(), StoreError> {
    let mut tx = LoggedTx::begin(&app.store, &app.hub).await?;
    let mut totals = IngestCounts::default();
    let mut replays = 0;
    for p in &batch {
        let first_time = sqlx::query(
            "INSERT INTO webhook_events_seen (integration_id, event_id, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (integration_id, event_id) DO NOTHING",
        )
        .bind(&p.integration.id)
        .bind(&p.event.event_id)
        .bind(now_micros())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if first_time {
            let target = IngestTarget {
                integration_id: &p.integration.id,
                venue: &p.integration.venue,
                provider: &p.integration.provider,
            };
            let counts = ingest(
                &mut tx,
                &p.scope,
                &target,
                &p.event.transactions,
                Source::Webhook,
            )
            .await?;
            totals.created += counts.created;
            totals.updated += counts.updated;
            totals.duplicates += counts.duplicates;
            totals.rejected += counts.rejected;
            tracing::debug!(webhook = %p.id, event_id = %p.event.event_id, event_type = %p.event.event_type, ?counts, "webhook processed");
        } else {
            replays += 1;
            tracing::info!(webhook = %p.id, event_id = %p.event.event_id, "webhook replay ignored");
        }
        sqlx::query(
            "UPDATE webhook_inbox SET status = 'processed', event_id = $1, processed_at = $2, attempts = attempts + 1,
               claimed_by = NULL, claimed_until = NULL WHERE id = $3",
        )
        .bind(&p.event.event_id)
        .bind(now_micros())
        .bind(&p.id)
        .execute(tx.conn())
        .await?;
    }
    tx.commit().await?;
    tracing::info!(
        deliveries = batch.len(),
        replays,
        ?totals,
        "webhooks processed"
    );
    Ok(())
}

async fn retry(app: &AppState, id: &str, attempts: i64, error: &str) -> Result<(), StoreError> {
    let attempts = attempts + 1;
    if attempts >= MAX_ATTEMPTS {
        tracing::error!(webhook = %id, attempts, %error, "webhook processing gave up");
        return finish(app, id, "failed", None, Some(error)).await;
    }
    // 2 s, 4 s, 8 s … capped at 10 minutes.
    let delay =
        Duration::from_secs(2u64.saturating_pow(attempts as u32)).min(Duration::from_secs(600));
    tracing::warn!(webhook = %id, attempts, %error, retry_in_s = delay.as_secs(), "webhook processing failed; will retry");
    sqlx::query(
        "UPDATE webhook_inbox SET attempts = $1, error = $2, next_attempt_at = $3,
           claimed_by = NULL, claimed_until = NULL WHERE id = $4",
    )
    .bind(attempts)
    .bind(error)
    .bind(now_micros() + delay.as_micros() as i64)
    .bind(id)
    .execute(app.store.writer())
    .await?;
    Ok(())
}

async fn finish(
    app: &AppState,
    id: &str,
    status: &str,
    event_id: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_inbox SET status = $1, event_id = $2, error = $3, processed_at = $4, attempts = attempts + 1 WHERE id = $5")
        .bind(status)
        .bind(event_id)
        .bind(error)
        .bind(now_micros())
        .bind(id)
        .execute(app.store.writer())
        .await?;
    Ok(())
}

async fn prune(app: &AppState) -> Result<(), StoreError> {
    let now = now_micros();
    sqlx::query("DELETE FROM webhook_events_seen WHERE seen_at < $1")
        .bind(now - SEEN_TTL.as_micros() as i64)
        .execute(app.store.writer())
        .await?;
    sqlx::query("DELETE FROM webhook_inbox WHERE status <> 'pending' AND received_at < $1")
        .bind(now - INBOX_TTL.as_micros() as i64)
        .execute(app.store.writer())
        .await?;
    Ok(())
}
