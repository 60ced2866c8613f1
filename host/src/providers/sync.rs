//! Polling sync: a scheduler that syncs each connected integration on its interval under a
//! lease (so several hosts on one PostgreSQL never sync the same integration at once), and
//! the sync itself: window by window, page by page, each page ingested in its own
//! transaction.
//!
//! Leases. A sync holds its venue's lease for [`crate::lease::LEASE`] and a heartbeat renews
//! it while the sync runs, so a host killed mid-sync frees the venue within seconds: the
//! next scheduler pass of any host (every second) takes it over, and a manual sync waits for
//! the dead holder's lease to run out instead of answering 409 (see [`sync_now`]). A sync
//! that loses its lease stops before its next commit; the pages it already committed are
//! harmless to repeat (sales are deduplicated by integration and external id), and the sync
//! point and the run's record are written only where this host still owns the lease.
//!
//! Poison isolation. A sale the host cannot store (see [`validate`]), or one the database
//! refuses when its page is recorded sale by sale, is set aside as a dead letter carrying
//! the whole canonical sale, in the same transaction that records its neighbours; the sync
//! goes on and its sync point moves, because nothing is lost: the sale is durably in the
//! dead letter, and a retry ingests it from there. A page the provider will not give (the
//! plugin fails, traps or times out) is different: the host does not have its sales, so
//! moving the sync point past it would lose them. The sync fails, backs off and starts
//! again from the same point; after [`ERROR_AFTER`] failures in a row the integration shows
//! `error` and a page dead letter (item `""`) tells the operator, removed by the next sync
//! that completes. Transient database failures fail the sync without any dead letter.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::ingest::{ingest, validate, IngestCounts, IngestTarget, Source};
use super::integrations::{by_id, connection_of, Integration};
use super::ProviderFailure;
use crate::auth::TenantScope;
use crate::dead_letters::{self, is_transient, Kind, NewDeadLetter, RetryOutcome};
use crate::error::ApiError;
use crate::lease::Heartbeat;
use crate::plugins::contract::{FetchRequest, ProviderError, Transaction};
use crate::plugins::CallContext;
use crate::providers::ProvidersState;
use crate::store::{new_id, now_micros, StoreError};

mod lease;

pub(super) use self::lease::sync_now;
use self::lease::{claim, heartbeat};

/// The first sync of an integration reaches this far back.
const FIRST_SYNC_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 3600);
/// Later syncs re-read this much before the last synced point, catching sales that
/// arrived upstream late (the duplicates are skipped).
const OVERLAP: Duration = Duration::from_secs(10 * 60);
/// Pages per run at most, so one enormous backlog cannot hold a lease forever.
const MAX_PAGES: u32 = 10_000;
/// Failures in a row after which the integration shows ERROR.
const ERROR_AFTER: i64 = 3;
/// Longest backoff between failing syncs.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What a sync did (the body of `POST /pos/sync/{venue}`).
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct SyncStats {
    /// Sales read from the provider.
    pub fetched: u64,
    /// New.
    pub created: u64,
    /// Changed.
    pub updated: u64,
    /// Already known.
    pub duplicates: u64,
    /// Pages read.
    pub pages: u64,
}

/// Wakes the sync scheduler early (a venue was connected); cloning shares the one signal, so whoever holds a clone can
/// wake it without holding anything else of the worker's.
#[derive(Clone, Debug, Default)]
pub struct SyncWakeup(std::sync::Arc<tokio::sync::Notify>);

impl SyncWakeup {
    /// Asks the worker to look again now; a wake-up while it is busy is kept for its next wait.
    pub(crate) fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves when [`Self::wake`] is called (or was, since the last wait).
    pub(crate) async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Starts the scheduler; it stops with the server.
pub(crate) fn spawn_scheduler(app: ProvidersState) {
    tokio::spawn(async move {
        loop {
            if let Err(err) = run_due(&app).await {
                tracing::warn!(error = %err, "sync scheduler pass failed");
            }
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = app.sync_wakeup.woken() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

async fn run_due(app: &ProvidersState) -> Result<(), StoreError> {
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM integrations WHERE status IN ('connected', 'error') AND next_sync_at IS NOT NULL
           AND next_sync_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
           AND tenant_id NOT IN (SELECT id FROM tenants WHERE suspended_at IS NOT NULL)
         ORDER BY next_sync_at LIMIT 16",
    )
    .bind(now_micros())
    .fetch_all(app.store.reader())
    .await?;
    for id in due {
        if app.shutdown.is_cancelled() {
            return Ok(());
        }
        let app = app.clone();
        // Each sync runs on its own task: one slow provider never delays the others.
        tokio::spawn(async move {
            match sync_integration(&app, &id, "schedule").await {
                Ok(Some(stats)) => tracing::info!(integration = %id, ?stats, "scheduled sync done"),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(integration = %id, error = ?err.0, "scheduled sync failed")
                }
            }
        });
    }
    Ok(())
}

/// Syncs one integration now if its lease is free. `Ok(None)` when another sync holds it
/// (or took it over from this one).
pub(super) async fn sync_integration(
    app: &ProvidersState,
    id: &str,
    trigger: &str,
) -> Result<Option<SyncStats>, ProviderFailure> {
    if !claim(app, id).await.map_err(ApiError::from)? {
        return Ok(None);
    }
    let heartbeat = heartbeat(app, id);
    let started = now_micros();
    let Some(integration) = by_id(app, id).await.map_err(ApiError::from)? else {
        return Ok(None);
    };
    let outcome = run(app, &integration, &heartbeat).await;
    let finished = now_micros();
    let (stats, error) = match &outcome {
        Ok(stats) => (*stats, None),
        Err((_, SyncFailure::LeaseLost)) => return Ok(None),
        Err((stats, e)) => (*stats, Some(e.clone())),
    };
    let recorded = record(
        app,
        &integration,
        trigger,
        started,
        finished,
        &stats,
        error.as_ref(),
    )
    .await
    .map_err(ApiError::from)?;
    drop(heartbeat);
    if !recorded {
        tracing::warn!(integration = %id, "sync lease lost before the run was recorded");
        return Ok(None);
    }
    match outcome {
        Ok(stats) => Ok(Some(stats)),
        Err((_, SyncFailure::Provider(e))) => Err(e.into()),
        Err((_, SyncFailure::Call(e))) => Err(e.into()),
        Err((_, SyncFailure::LeaseLost)) => Ok(None),
        Err((_, SyncFailure::Internal(m))) => {
            tracing::error!(integration = %id, error = %m, "sync failed");
            Err(ApiError::internal().into())
        }
    }
}

#[derive(Debug, Clone)]
enum SyncFailure {
    Provider(ProviderError),
    Call(crate::plugins::CallError),
    Internal(String),
    /// Another host took the venue over: stop without recording anything.
    LeaseLost,
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncFailure::Provider(e) => write!(f, "{e}"),
            SyncFailure::Call(e) => write!(f, "{e}"),
            SyncFailure::Internal(m) => write!(f, "internal error: {m}"),
            SyncFailure::LeaseLost => write!(f, "the sync lease was lost to another host"),
        }
    }
}

async fn run(
    app: &ProvidersState,
    integration: &Integration,
    heartbeat: &Heartbeat,
) -> Result<SyncStats, (SyncStats, SyncFailure)> {
    let mut stats = SyncStats::default();
    let internal = |stats: SyncStats, m: String| (stats, SyncFailure::Internal(m));
    let scope = TenantScope::for_background_job(&app.store, &integration.tenant_id)
        .await
        .map_err(|e| internal(stats, e.to_string()))?
        .ok_or_else(|| internal(stats, "tenant missing".into()))?;
    let conn = connection_of(app, integration)
        .map_err(|_| internal(stats, "credentials do not open".into()))?;
    let synced_until: Option<i64> =
        sqlx::query_scalar("SELECT synced_until FROM integrations WHERE id = $1")
            .bind(&integration.id)
            .fetch_one(app.store.reader())
            .await
            .map_err(|e| internal(stats, e.to_string()))?;
    let end_ms = jiff::Timestamp::now().as_millisecond();
    let start_ms = match synced_until {
        Some(us) => us / 1000 - OVERLAP.as_millis() as i64,
        None => end_ms - FIRST_SYNC_LOOKBACK.as_millis() as i64,
    };
    let ctx = CallContext {
        tenant_id: integration.tenant_id.clone(),
        integration_id: integration.id.clone(),
    };
    let target = IngestTarget {
        integration_id: &integration.id,
        venue: &integration.venue,
        provider: &integration.provider,
    };
    let mut cursor = None;
    loop {
        let request = FetchRequest {
            start_ms,
            end_ms,
            cursor: cursor.clone(),
        };
        let fetch = app
            .plugins
            .fetch_transactions(&integration.provider, &ctx, &conn, &request);
        // A provider answering slowly must not keep a sync going that another host took over.
        let fetched = tokio::select! {
            _ = heartbeat.lost() => return Err((stats, SyncFailure::LeaseLost)),
            fetched = fetch => fetched,
        };
        if heartbeat.is_lost() {
            return Err((stats, SyncFailure::LeaseLost));
        }
        let page = match fetched {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => return Err((stats, SyncFailure::Provider(e))),
            Err(e) => return Err((stats, SyncFailure::Call(e))),
        };
        stats.pages += 1;
        stats.fetched += page.transactions.len() as u64;
        let counts = record_page(app, &scope, &target, &page.transactions)
            .await
            .map_err(|e| internal(stats, e.to_string()))?;
        add(&mut stats, counts);
        match page.next_cursor {
            Some(next) if stats.pages < MAX_PAGES as u64 && Some(&next) != cursor.as_ref() => {
                cursor = Some(next)
            }
            _ => break,
        }
    }
    // Only a complete window moves the sync point, and only the lease holder moves it.
    let moved =
        sqlx::query("UPDATE integrations SET synced_until = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(end_ms * 1000)
            .bind(&integration.id)
            .bind(app.hub.node_id())
            .execute(app.store.writer())
            .await
            .map_err(|e| internal(stats, e.to_string()))?
            .rows_affected();
    if moved == 0 {
        return Err((stats, SyncFailure::LeaseLost));
    }
    Ok(stats)
}

/// Records one fetched page of sales in its own transaction, with a dead letter for every
/// sale the host cannot store. If the database refuses the page for another reason that is
/// not transient, records its sales one by one, setting aside the ones it refuses.
async fn record_page(
    app: &ProvidersState,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    sales: &[Transaction],
) -> Result<IngestCounts, StoreError> {
    let checked: Vec<(&Transaction, Option<String>)> = sales
        .iter()
        .map(|sale| (sale, validate(sale).err()))
        .collect();
    match record_some(app, scope, target, &checked).await {
        Ok(counts) => return Ok(counts),
        Err(err) if is_transient(&err) => return Err(err),
        Err(err) => {
            tracing::warn!(integration = %target.integration_id, sales = sales.len(), error = %err,
            "sync page refused; recording its sales one by one")
        }
    }
    let mut counts = IngestCounts::default();
    for entry in &checked {
        match record_some(app, scope, target, std::slice::from_ref(entry)).await {
            Ok(c) => add_counts(&mut counts, c),
            // Transient, or the dead letter itself refused: the sync fails and starts over.
            Err(err) if is_transient(&err) || entry.1.is_some() => return Err(err),
            Err(err) => {
                let why = format!("the database refused the sale: {err}");
                let c = record_some(app, scope, target, &[(entry.0, Some(why))]).await?;
                add_counts(&mut counts, c);
            }
        }
    }
    Ok(counts)
}

/// Records `entries` in one transaction (run again on conflicts): the sales without a
/// reason ingested, the others set aside with theirs.
async fn record_some(
    app: &ProvidersState,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    entries: &[(&Transaction, Option<String>)],
) -> Result<IngestCounts, StoreError> {
    let sales: Vec<Transaction> = entries
        .iter()
        .filter(|(_, why)| why.is_none())
        .map(|(sale, _)| (*sale).clone())
        .collect();
    let aside: Vec<(Transaction, String)> = entries
        .iter()
        .filter_map(|(sale, why)| Some(((*sale).clone(), why.clone()?)))
        .collect();
    // Shared, not cloned, by every run of the write.
    let page = Arc::new((scope.clone(), target.to_owned_target(), sales, aside));
    app.writes
        .run(scope.tenant_id(), move |tx| {
            let page = page.clone();
            Box::pin(async move {
                let (scope, target, sales, aside) = &*page;
                let target = target.target();
                let counts = ingest(tx, scope, &target, sales, Source::Sync).await?;
                for (sale, why) in aside {
                    set_aside(tx.conn(), scope, &target, sale, why).await?;
                }
                Ok::<_, StoreError>(counts)
            })
        })
        .await
}

fn add_counts(total: &mut IngestCounts, c: IngestCounts) {
    total.created += c.created;
    total.updated += c.updated;
    total.duplicates += c.duplicates;
    total.rejected += c.rejected;
}

/// The item a sale's dead letter is filed under: its external id, or, when that is itself
/// unstorable, a digest of the sale.
fn sale_item(sale: &Transaction) -> String {
    let id = &sale.external_id;
    if !id.is_empty() && id.len() <= 200 && !id.contains('\0') {
        return id.clone();
    }
    use sha2::Digest;
    let json = serde_json::to_vec(sale).unwrap_or_default();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(json)))
}

/// Sets one synced sale aside, with the whole canonical sale as its payload.
async fn set_aside(
    conn: &mut crate::store::Conn,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    sale: &Transaction,
    reason: &str,
) -> Result<(), StoreError> {
    let item = sale_item(sale);
    dead_letters::put(
        conn,
        &NewDeadLetter {
            kind: Kind::Sync,
            tenant_id: scope.tenant_id(),
            integration_id: Some(target.integration_id),
            source_id: target.integration_id,
            item: &item,
            reason,
            attempts: 1,
            payload: serde_json::to_string(sale).ok(),
        },
    )
    .await?;
    Ok(())
}

/// Retries a sync dead letter: a sale is validated and ingested again from its payload (the
/// dead letter removed in the same transaction); a page runs the venue's sync now.
pub(crate) async fn retry_dead_letter(
    app: &ProvidersState,
    dead: &dead_letters::Stored,
) -> Result<RetryOutcome, StoreError> {
    let Some(integration) = by_id(app, &dead.view.source_id).await? else {
        return Ok(RetryOutcome::Gone(
            "the integration no longer exists".into(),
        ));
    };
    if dead.view.item.is_empty() {
        return Ok(
            match sync_now(app, &integration.id, "dead-letter retry").await {
                Ok(Some(_)) => RetryOutcome::Resolved,
                Ok(None) => RetryOutcome::Failed("a sync of this venue is already running".into()),
                Err(failure) => RetryOutcome::Failed(failure.0.message),
            },
        );
    }
    let Some(scope) = TenantScope::for_background_job(&app.store, &integration.tenant_id).await?
    else {
        return Ok(RetryOutcome::Gone("the tenant no longer exists".into()));
    };
    let sale: Transaction = match dead
        .payload
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
    {
        Ok(Some(sale)) => sale,
        _ => {
            return Ok(RetryOutcome::Gone(
                "the dead letter does not hold the sale".into(),
            ))
        }
    };
    if let Err(why) = validate(&sale) {
        return Ok(RetryOutcome::Failed(why));
    }
    let target = IngestTarget {
        integration_id: &integration.id,
        venue: &integration.venue,
        provider: &integration.provider,
    };
    let retried = Arc::new((
        scope,
        target.to_owned_target(),
        sale,
        integration.id.clone(),
        dead.view.item.clone(),
    ));
    let home = retried.0.tenant_id().to_owned();
    let attempt = app
        .writes
        .run(&home, move |tx| {
            let retried = retried.clone();
            Box::pin(async move {
                let (scope, target, sale, integration_id, item) = &*retried;
                let sales = std::slice::from_ref(sale);
                ingest(tx, scope, &target.target(), sales, Source::Sync).await?;
                dead_letters::resolve(tx.conn(), Kind::Sync, integration_id, item).await?;
                Ok::<_, StoreError>(())
            })
        })
        .await;
    match attempt {
        Ok(()) => Ok(RetryOutcome::Resolved),
        Err(err) if is_transient(&err) => Err(err),
        Err(err) => Ok(RetryOutcome::Failed(format!(
            "the database refused the sale: {err}"
        ))),
    }
}

fn add(stats: &mut SyncStats, counts: IngestCounts) {
    stats.created += counts.created;
    stats.updated += counts.updated;
    stats.duplicates += counts.duplicates;
}

async fn record(
    app: &ProvidersState,
    integration: &Integration,
    trigger: &str,
    started: i64,
    finished: i64,
    stats: &SyncStats,
    error: Option<&SyncFailure>,
) -> Result<bool, StoreError> {
    let mut tx = app.store.begin().await?;
    sqlx::query(
        "INSERT INTO sync_runs (id, integration_id, started_at, finished_at, trigger, fetched, created, updated, duplicates, pages, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(new_id())
    .bind(&integration.id)
    .bind(started)
    .bind(finished)
    .bind(trigger)
    .bind(stats.fetched as i64)
    .bind(stats.created as i64)
    .bind(stats.updated as i64)
    .bind(stats.duplicates as i64)
    .bind(stats.pages as i64)
    .bind(error.map(ToString::to_string))
    .execute(&mut tx)
    .await?;
    // Keep the last 100 runs per integration.
    sqlx::query(
        "DELETE FROM sync_runs WHERE integration_id = $1 AND id NOT IN
           (SELECT id FROM sync_runs WHERE integration_id = $1 ORDER BY started_at DESC LIMIT 100)",
    )
    .bind(&integration.id)
    .execute(&mut tx)
    .await?;
    let interval_us = integration.sync_interval_s * 1_000_000;
    match error {
        None => {
            let held = sqlx::query(
                "UPDATE integrations SET last_sync_at = $1, last_error = NULL, consecutive_failures = 0,
                   status = CASE WHEN status = 'disconnected' THEN status ELSE 'connected' END,
                   next_sync_at = CASE WHEN status = 'disconnected' THEN NULL ELSE $2 END,
                   lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4",
            )
            .bind(finished)
            .bind(finished + interval_us)
            .bind(&integration.id)
            .bind(app.hub.node_id())
            .execute(&mut tx)
            .await?
            .rows_affected();
            if held == 0 {
                return Ok(false);
            }
            // A complete sync got every page: a page dead letter has nothing left to say.
            dead_letters::resolve(&mut tx, Kind::Sync, &integration.id, "").await?;
        }
        Some(err) => {
            let failures: i64 =
                sqlx::query_scalar("SELECT consecutive_failures FROM integrations WHERE id = $1")
                    .bind(&integration.id)
                    .fetch_one(&mut tx)
                    .await?;
            let failures = failures + 1;
            let backoff = match err {
                SyncFailure::Provider(ProviderError::RateLimited {
                    retry_after_ms: Some(ms),
                    ..
                }) => (*ms as i64) * 1000,
                _ => (interval_us.saturating_mul(1 << failures.clamp(0, 10)))
                    .min(MAX_BACKOFF.as_micros() as i64),
            };
            let status = if failures >= ERROR_AFTER {
                "error"
            } else {
                "connected"
            };
            let held = sqlx::query(
                "UPDATE integrations SET last_error = $1, consecutive_failures = $2,
                   status = CASE WHEN status = 'disconnected' THEN status ELSE $3 END,
                   next_sync_at = CASE WHEN status = 'disconnected' THEN NULL ELSE $4 END,
                   lease_owner = NULL, lease_until = NULL WHERE id = $5 AND lease_owner = $6",
            )
            .bind(err.to_string())
            .bind(failures)
            .bind(status)
            .bind(finished + backoff.max(1_000_000))
            .bind(&integration.id)
            .bind(app.hub.node_id())
            .execute(&mut tx)
            .await?
            .rows_affected();
            if held == 0 {
                return Ok(false);
            }
            // The provider will not give a page: the sync point cannot move past sales the
            // host does not have, so the sync keeps retrying, and the operator is told.
            let page_failed = matches!(err, SyncFailure::Provider(_) | SyncFailure::Call(_));
            if page_failed && failures >= ERROR_AFTER {
                let reason = format!("{failures} syncs in a row failed to fetch a page: {err}");
                dead_letters::put(
                    &mut tx,
                    &NewDeadLetter {
                        kind: Kind::Sync,
                        tenant_id: &integration.tenant_id,
                        integration_id: Some(&integration.id),
                        source_id: &integration.id,
                        item: "",
                        reason: &reason,
                        attempts: if failures == ERROR_AFTER { failures } else { 1 },
                        payload: None,
                    },
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Row count helper used by status.
pub(super) async fn transaction_count(
    app: &ProvidersState,
    integration_id: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM pos_transactions WHERE integration_id = $1")
        .bind(integration_id)
        .fetch_one(app.store.reader())
        .await?;
    Ok(row.try_get("n")?)
}
