//! The inbox worker: claims due deliveries in batches, has the provider plugin parse them
//! (outside any transaction), records their sales in one transaction per batch, and retries,
//! isolates or sets aside what fails. Acknowledgements come first: the worker yields the
//! writer to deliveries being received (see [`ACK_PRIORITY_WAIT`]).
//!
//! Claims. A batch's rows are claimed for [`lease::LEASE`] and a heartbeat renews the claim
//! while the batch is parsed and recorded, so the deliveries of a host killed mid-batch are
//! claimable by every other host's worker within seconds. A batch whose claim was lost is not
//! recorded; recording twice would record nothing anyway, because the provider event id is
//! remembered in the same transaction as the sales.
//!
//! Size: about 650 lines: one worker's loop (claim, parse, record, retry, set aside, prune)
//! whose steps share the claim's lease and heartbeat; apart they would have to expose that
//! state to each other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use super::super::ingest::{check_text, ingest, validate, IngestCounts, IngestTarget, Source};
use super::super::integrations::{by_id, Integration};
use super::{INBOX_TTL, MAX_RETRY_WAIT, SEEN_TTL};
use crate::auth::TenantScope;
use crate::dead_letters::{self, is_transient, Kind, NewDeadLetter};
use crate::events::LoggedTx;
use crate::lease::{self, Heartbeat};
use crate::plugins::contract::{ProviderError, Transaction, Webhook, WebhookEvent};
use crate::plugins::CallContext;
use crate::providers::ProvidersState;
use crate::store::{
    now_micros, release_foreign_claims, retry_conflicts, Backend, Params, StoreError,
};

/// Longest the inbox worker defers a batch to acknowledgements in progress. Acks are what a
/// provider waits on (and retries when slow); recording can trail. The cap keeps the inbox
/// draining under sustained load, at a lower rate, instead of starving it.
const ACK_PRIORITY_WAIT: Duration = Duration::from_millis(20);

/// Waits (at most [`ACK_PRIORITY_WAIT`]) until no acknowledgement is in progress, so on a
/// busy host the CPU and the single SQLite writer go to acknowledging first. Returns how
/// many deliveries the next batch may take: few if any acknowledgement began since the
/// previous batch (`acks_seen` is that count; a lull of a millisecond between them says
/// nothing about the next one), many otherwise.
async fn let_acks_go_first(app: &ProvidersState, acks_seen: &mut u64) -> i64 {
    let acks = &app.webhook_acks;
    let started = std::time::Instant::now();
    while acks.in_flight.load(Ordering::Relaxed) > 0 && started.elapsed() < ACK_PRIORITY_WAIT {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let begun = acks.started.load(Ordering::Relaxed);
    let busy = begun != *acks_seen;
    *acks_seen = begun;
    if busy {
        BATCH_UNDER_ACKS
    } else {
        BATCH
    }
}

/// Wakes the webhook inbox worker early (a delivery was stored); cloning shares the one signal, so whoever holds a clone can
/// wake it without holding anything else of the worker's.
#[derive(Clone, Debug, Default)]
pub struct InboxWakeup(std::sync::Arc<tokio::sync::Notify>);

impl InboxWakeup {
    /// Asks the worker to look again now; a wake-up while it is busy is kept for its next wait.
    pub(crate) fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves when [`Self::wake`] is called (or was, since the last wait).
    pub(crate) async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Starts the inbox worker; it drains pending deliveries (including those left by a
/// previous process) and stops with the server.
pub(crate) fn spawn_inbox_worker(app: ProvidersState) {
    tokio::spawn(async move {
        release_stale_claims(&app).await;
        let mut last_prune = std::time::Instant::now();
        let mut acks_seen = 0;
        loop {
            let batch = let_acks_go_first(&app, &mut acks_seen).await;
            match drain(&app, batch).await {
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
                _ = app.inbox_wakeup.woken() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// Releases claims held by other processes. On SQLite those can only be a crashed
/// predecessor's (one process owns the file); on a shared PostgreSQL they may belong to live
/// hosts, so nothing is released there: a dead host's claims run out within
/// [`lease::LEASE`].
async fn release_stale_claims(app: &ProvidersState) {
    release_foreign_claims(
        &app.store,
        app.hub.node_id(),
        "UPDATE webhook_inbox SET claimed_by = NULL, claimed_until = NULL
         WHERE status = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $1",
        "webhook claims",
    )
    .await;
}

/// Deliveries recorded per transaction when no acknowledgement is waiting: one commit and a
/// handful of statements for the whole batch, so a backlog drains at thousands per second.
/// Parsing happens before the transaction, so plugin calls never hold the writer.
const BATCH: i64 = 64;

/// Deliveries per transaction while acknowledgements are arriving. Each batch holds the
/// single SQLite writer for its transaction, and an acknowledgement needs the writer to
/// store its delivery: under 16 concurrent senders, batches of 16 kept the ack p99 at
/// 12 ms (2,600-2,700 acks/s), batches of 64 let it rise to 14-17 ms (2,200-2,300/s) for a
/// backlog recorded 2 s instead of 4.5 s after the burst.
const BATCH_UNDER_ACKS: i64 = 16;

async fn drain(app: &ProvidersState, batch: i64) -> Result<usize, StoreError> {
    let now = now_micros();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM webhook_inbox WHERE status = 'pending' AND next_attempt_at <= $1
           AND (claimed_until IS NULL OR claimed_until < $1)
           AND integration_id NOT IN (SELECT i.id FROM integrations i
                 JOIN tenants t ON t.id = i.tenant_id WHERE t.suspended_at IS NOT NULL)
         ORDER BY received_at LIMIT $2",
    )
    .bind(now)
    .bind(batch)
    .fetch_all(app.store.reader())
    .await?;
    if due.is_empty() || app.shutdown.is_cancelled() {
        return Ok(0);
    }
    let claimed = claim(app, &due, now).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let heartbeat = heartbeat(app, &claimed);
    let mut deliveries = load(app, &claimed).await?;
    let mut parsed = Vec::new();
    let mut integrations: HashMap<String, Option<(Integration, TenantScope)>> = HashMap::new();
    // In arrival order: `due` is, and the claim and load answer in no particular order.
    for id in due.iter().filter(|id| claimed.contains(id.as_str())) {
        let Some(delivery) = deliveries.remove(id) else {
            continue;
        };
        if let Some(p) = parse(app, delivery, &mut integrations).await? {
            // What the host cannot store is refused before the batch, so one delivery never
            // fails the others' transaction. Deterministic: the same bytes parse to the same
            // sales, so it is set aside at once instead of being retried.
            match check_event(&p.event) {
                Ok(()) => parsed.push(p),
                Err(reason) => {
                    let reason = format!("{} {}: {reason}", p.event.event_type, p.event.event_id);
                    set_aside(app, &p.id, &p.integration, p.attempts + 1, &reason).await?
                }
            }
        }
    }
    if heartbeat.is_lost() {
        tracing::warn!(
            deliveries = parsed.len(),
            "webhook claims lost to another host; leaving the batch to it"
        );
        return Ok(claimed.len());
    }
    // The POS said its catalog changed: the venue's menu is synced in the background,
    // debounced, outside this batch (its deliveries are recorded whatever the sync does).
    for p in parsed.iter().filter(|p| p.event.catalog_changed) {
        crate::providers::catalog::sync_in_background(app, &p.scope, &p.integration);
    }
    if !parsed.is_empty() {
        record_isolating(app, &parsed).await?;
    }
    Ok(claimed.len())
}

/// What the host must be able to store of a parsed delivery: its event id and every sale.
fn check_event(event: &WebhookEvent) -> Result<(), String> {
    if event.event_id.is_empty() || event.event_id.len() > 200 {
        return Err("event_id must be 1-200 bytes".into());
    }
    check_text("event_id", &event.event_id)?;
    for sale in &event.transactions {
        validate(sale).map_err(|why| {
            let id: String = sale.external_id.chars().take(64).collect();
            format!("sale {:?}: {why}", id.replace('\0', "\\u0000"))
        })?;
    }
    Ok(())
}

/// Records a batch in one transaction; if the database refuses it for a reason that is not
/// transient, records its deliveries one by one instead, so that only the delivery at fault
/// fails (and is retried with backoff, then set aside). A transient failure (database
/// unavailable, conflicts beyond their retries) releases the claims without counting an
/// attempt: nothing is wrong with the deliveries.
async fn record_isolating(app: &ProvidersState, batch: &[Parsed]) -> Result<(), StoreError> {
    // A deadlock victim's inbox rows stay claimed, so without the retry the whole batch
    // would wait out the claim before anyone tried again.
    let err = match retry_conflicts("webhook batch", || record(app, batch)).await {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    if is_transient(&err) {
        release(app, batch).await;
        return Err(err);
    }
    if let [p] = batch {
        let why = format!("recording failed: {err}");
        return retry(app, &p.id, &p.integration, p.attempts, &why).await;
    }
    tracing::warn!(deliveries = batch.len(), error = %err, "webhook batch refused; recording its deliveries one by one");
    for (i, p) in batch.iter().enumerate() {
        match retry_conflicts("webhook delivery", || record(app, std::slice::from_ref(p))).await {
            Ok(()) => {}
            Err(err) if is_transient(&err) => {
                release(app, &batch[i..]).await;
                return Err(err);
            }
            Err(err) => {
                let why = format!("recording failed: {err}");
                retry(app, &p.id, &p.integration, p.attempts, &why).await?
            }
        }
    }
    Ok(())
}

/// Hands claimed deliveries back untouched (no attempt counted), for the next pass. If even
/// that fails (the database is down), the claims expire after [`lease::LEASE`].
async fn release(app: &ProvidersState, batch: &[Parsed]) {
    if batch.is_empty() {
        return;
    }
    let mut p = Params::new(app.store.backend());
    let sql = format!(
        "UPDATE webhook_inbox SET claimed_by = NULL, claimed_until = NULL
         WHERE claimed_by = {} AND status = 'pending' AND id IN ({})",
        p.one(),
        p.list(batch.len())
    );
    let mut query = sqlx::query(&sql).bind(app.hub.node_id());
    for d in batch {
        query = query.bind(d.id.as_str());
    }
    if let Err(err) = query.execute(app.store.writer()).await {
        tracing::warn!(error = %err, "could not release webhook claims; they expire");
    }
}

/// Claims the still-claimable deliveries of `ids` for this process, in one statement.
async fn claim(
    app: &ProvidersState,
    ids: &[String],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let backend = app.store.backend();
    // SQLite, without statistics, would pick the `status` index for this and visit every
    // pending delivery (9 ms a batch with a backlog) instead of looking up the ids; its
    // unary `+` takes the term out of index choice. PostgreSQL plans from statistics.
    let status = match backend {
        Backend::Sqlite => "+status",
        Backend::Postgres => "status",
    };
    let mut p = Params::new(backend);
    let sql = format!(
        "UPDATE webhook_inbox SET claimed_by = {}, claimed_until = {}
         WHERE id IN ({}) AND {status} = 'pending' AND next_attempt_at <= {}
           AND (claimed_until IS NULL OR claimed_until < {})
         RETURNING id",
        p.one(),
        p.one(),
        p.list(ids.len()),
        p.one(),
        p.one(),
    );
    let mut query = sqlx::query_scalar(&sql)
        .bind(app.hub.node_id())
        .bind(lease::expiry_from(now));
    for id in ids {
        query = query.bind(id.as_str());
    }
    query = query.bind(now).bind(now);
    Ok(query
        .fetch_all(app.store.writer())
        .await?
        .into_iter()
        .collect())
}

/// Renews the claims of `ids` that this host still holds, while their batch is worked on.
/// Lost when none is left pending under this host's name: the rows settled one by one
/// along the way (retried, set aside) are not, so the batch still holds the others.
fn heartbeat(app: &ProvidersState, ids: &HashSet<String>) -> Heartbeat {
    let backend = app.store.backend();
    let mut p = Params::new(backend);
    let sql = format!(
        "UPDATE webhook_inbox SET claimed_until = {} WHERE claimed_by = {} AND status = 'pending' AND id IN ({})",
        p.one(),
        p.one(),
        p.list(ids.len())
    );
    let (store, owner) = (app.store.clone(), app.hub.node_id().to_owned());
    let ids: Vec<String> = ids.iter().cloned().collect();
    Heartbeat::start(format!("{} webhook deliveries", ids.len()), move |expiry| {
        let (store, owner, sql, ids) = (store.clone(), owner.clone(), sql.clone(), ids.clone());
        async move {
            let mut query = sqlx::query(&sql).bind(expiry).bind(owner);
            for id in &ids {
                query = query.bind(id.as_str());
            }
            Ok(query.execute(store.writer()).await?.rows_affected())
        }
    })
}

/// A claimed delivery as stored in the inbox.
struct Delivery {
    id: String,
    integration_id: String,
    provider: String,
    attempts: i64,
    webhook: Webhook,
    /// It was a dead letter an operator re-queued: settling it removes the dead letter.
    dead_letter: bool,
}

/// The stored deliveries `ids`, by id.
async fn load(
    app: &ProvidersState,
    ids: &HashSet<String>,
) -> Result<HashMap<String, Delivery>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT w.id, w.integration_id, w.provider, w.url, w.headers, w.body, w.attempts, d.id AS dead_letter
         FROM webhook_inbox w
         LEFT JOIN dead_letters d ON d.kind = 'webhook' AND d.source_id = w.id AND d.item = ''
         WHERE w.id IN ({})",
        Params::new(app.store.backend()).list(ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id.as_str());
    }
    let mut deliveries = HashMap::new();
    for row in query.fetch_all(app.store.reader()).await? {
        let headers: BTreeMap<String, String> =
            serde_json::from_str(&row.try_get::<String, _>("headers")?).unwrap_or_default();
        let delivery = Delivery {
            id: row.try_get("id")?,
            integration_id: row.try_get("integration_id")?,
            provider: row.try_get("provider")?,
            attempts: row.try_get("attempts")?,
            webhook: Webhook {
                url: row.try_get("url")?,
                headers: headers.into_iter().collect(),
                body: row.try_get("body")?,
            },
            dead_letter: row.try_get::<Option<String>, _>("dead_letter")?.is_some(),
        };
        deliveries.insert(delivery.id.clone(), delivery);
    }
    Ok(deliveries)
}

/// A delivery parsed by its plugin, ready to be recorded.
#[derive(Clone)]
struct Parsed {
    id: String,
    integration: Integration,
    scope: TenantScope,
    event: WebhookEvent,
    /// Attempts before this one.
    attempts: i64,
    /// See [`Delivery::dead_letter`].
    dead_letter: bool,
}

/// Parses one claimed delivery; failures are settled here (retry or give up) and yield None.
async fn parse(
    app: &ProvidersState,
    delivery: Delivery,
    integrations: &mut HashMap<String, Option<(Integration, TenantScope)>>,
) -> Result<Option<Parsed>, StoreError> {
    let Delivery {
        id,
        integration_id,
        provider,
        attempts,
        webhook,
        dead_letter,
    } = delivery;
    let id = id.as_str();
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
        // Nothing to retry against: a dead letter it came from goes with it.
        let mut tx = app.store.begin().await?;
        finish(&mut tx, id, "failed", Some("integration or tenant deleted")).await?;
        dead_letters::resolve(&mut tx, Kind::Webhook, id, "").await?;
        tx.commit().await?;
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
            attempts,
            dead_letter,
        })),
        Ok(Err(ProviderError::BadPayload(why))) => {
            // The plugin says the bytes are unreadable: retrying the same bytes cannot help.
            let why = format!("the {provider} plugin cannot read the delivery: {why}");
            set_aside(app, id, integration, attempts + 1, &why).await?;
            Ok(None)
        }
        Ok(Err(e)) => retry(app, id, integration, attempts, &e.to_string())
            .await
            .map(|()| None),
        Err(e) => retry(app, id, integration, attempts, &e.to_string())
            .await
            .map(|()| None),
    }
}

/// Records a batch of parsed deliveries in one transaction. A provider event id already seen
/// (a replay, or a delivery parsed twice after a crash) records nothing.
///
/// The sales of first-time deliveries are ingested per integration, in arrival order, in
/// one call each, and the inbox rows are settled in one statement: a batch costs a handful
/// of statements instead of several per delivery.
async fn record(app: &ProvidersState, batch: &[Parsed]) -> Result<(), StoreError> {
    // Owned by the queued write (and shared by its reruns, should a conflict abort one).
    let owned: Arc<[Parsed]> = batch.into();
    // A batch holding several tenants' deliveries is routed by its first: the others'
    // sequence rows are then shared with their home lanes (see `Writes::run`).
    let home = batch.first().map_or("", |p| p.scope.tenant_id());
    let (replays, totals) = app
        .writes
        .run(home, move |tx| {
            let batch = owned.clone();
            Box::pin(async move { record_in(tx, &batch).await })
        })
        .await?;
    tracing::info!(
        deliveries = batch.len(),
        replays,
        ?totals,
        "webhooks processed"
    );
    Ok(())
}

/// [`record`]'s statements; returns the replays skipped and what the sales came to.
async fn record_in(
    tx: &mut LoggedTx,
    batch: &[Parsed],
) -> Result<(usize, IngestCounts), StoreError> {
    let now = now_micros();
    let backend = tx.backend();

    let mut params = Params::new(backend);
    let sql = format!(
        "INSERT INTO webhook_events_seen (integration_id, event_id, seen_at) VALUES {}
         ON CONFLICT (integration_id, event_id) DO NOTHING
         RETURNING integration_id, event_id",
        params.rows(batch.len(), 3)
    );
    let mut query = sqlx::query(&sql);
    for p in batch {
        query = query
            .bind(&p.integration.id)
            .bind(&p.event.event_id)
            .bind(now);
    }
    let mut first_seen: HashSet<(String, String)> = HashSet::new();
    for row in query.fetch_all(tx.conn()).await? {
        first_seen.insert((row.try_get("integration_id")?, row.try_get("event_id")?));
    }

    // Sales per integration, in arrival order; `remove` hands a repeated event id (twice in
    // one batch) to its first delivery only.
    let mut by_integration: Vec<(&Parsed, Vec<Transaction>)> = Vec::new();
    let mut replays = 0;
    for p in batch {
        if !first_seen.remove(&(p.integration.id.clone(), p.event.event_id.clone())) {
            replays += 1;
            tracing::info!(webhook = %p.id, event_id = %p.event.event_id, "webhook replay ignored");
            continue;
        }
        tracing::debug!(webhook = %p.id, event_id = %p.event.event_id, event_type = %p.event.event_type, sales = p.event.transactions.len(), "webhook processed");
        if !p.event.availability.is_empty() {
            mark_availability(tx, p).await?;
        }
        if !p.event.order_updates.is_empty() {
            keep_order_updates(tx, p).await?;
        }
        match by_integration
            .iter_mut()
            .find(|(first, _)| first.integration.id == p.integration.id)
        {
            Some((_, sales)) => sales.extend(p.event.transactions.iter().cloned()),
            None => by_integration.push((p, p.event.transactions.clone())),
        }
    }
    let mut totals = IngestCounts::default();
    for (p, sales) in &by_integration {
        let target = IngestTarget {
            integration_id: &p.integration.id,
            venue: &p.integration.venue,
            provider: &p.integration.provider,
        };
        let counts = ingest(tx, &p.scope, &target, sales, Source::Webhook).await?;
        totals.created += counts.created;
        totals.updated += counts.updated;
        totals.duplicates += counts.duplicates;
        totals.rejected += counts.rejected;
    }

    let mut params = Params::new(backend);
    let sql = format!(
        "UPDATE webhook_inbox SET status = 'processed', event_id = v.column2, processed_at = {},
           attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL
         FROM (VALUES {}) AS v WHERE webhook_inbox.id = v.column1",
        params.one(),
        params.rows(batch.len(), 2)
    );
    let mut query = sqlx::query(&sql).bind(now);
    for p in batch {
        query = query.bind(&p.id).bind(&p.event.event_id);
    }
    query.execute(tx.conn()).await?;
    for p in batch.iter().filter(|p| p.dead_letter) {
        dead_letters::resolve(tx.conn(), Kind::Webhook, &p.id, "").await?;
    }
    Ok((replays, totals))
}

/// A stock event (86 or back) marks the venue's menu entries by provider id, in the
/// transaction that records the delivery: terminals get `item_availability_changed` for
/// real changes only, and a venue without a menu has nothing to mark.
async fn mark_availability(tx: &mut LoggedTx, p: &Parsed) -> Result<(), StoreError> {
    let marked = crate::menus::apply_pos_availability(
        tx,
        &p.scope,
        &p.integration.venue,
        &p.event.availability,
        crate::menus::PosAvailability::Changes,
    )
    .await;
    match marked {
        Ok(_) => Ok(()),
        Err(crate::menus::MenuError::Store(e)) => Err(e),
        // Any other refusal is about the stored menu itself; the delivery is still kept.
        Err(e) => {
            tracing::warn!(webhook = %p.id, venue = %p.integration.venue, error = %e, "stock event not applied to the menu");
            Ok(())
        }
    }
}

/// Keeps the order-status reports of a delivery for the status relay (which applies them to
/// the orders injected into this POS and drops the others), in the transaction that records
/// the delivery: a report acknowledged is never lost. A report whose order id or status the
/// host could not store is skipped, with a warning.
async fn keep_order_updates(tx: &mut LoggedTx, p: &Parsed) -> Result<(), StoreError> {
    let now = now_micros();
    for update in &p.event.order_updates {
        let id = &update.provider_order_id;
        if id.is_empty() || id.len() > 200 || check_text("provider_order_id", id).is_err() {
            tracing::warn!(webhook = %p.id, "order-status report with an unusable order id skipped");
            continue;
        }
        let status = match update
            .status
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
        {
            Ok(status) => status,
            Err(err) => {
                tracing::warn!(webhook = %p.id, error = %err, "order-status report skipped");
                continue;
            }
        };
        sqlx::query(
            "INSERT INTO pos_order_updates (id, tenant_id, integration_id, provider_order_id, version, status, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(crate::store::new_id())
        .bind(&p.integration.tenant_id)
        .bind(&p.integration.id)
        .bind(id)
        .bind(update.version)
        .bind(status)
        .bind(now)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// Counts a failed attempt at a delivery: schedules the next one with backoff, or, at
/// `max_attempts` (see [`InboxOptions`](super::InboxOptions)), sets the delivery aside as a dead letter.
async fn retry(
    app: &ProvidersState,
    id: &str,
    integration: &Integration,
    attempts: i64,
    error: &str,
) -> Result<(), StoreError> {
    let attempts = attempts + 1;
    let options = &app.inbox;
    if attempts >= options.max_attempts.max(1) {
        tracing::error!(webhook = %id, attempts, %error, "webhook processing gave up");
        return set_aside(app, id, integration, attempts, error).await;
    }
    // base, 2 × base, 4 × base … capped.
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let delay = options
        .retry_base
        .saturating_mul(1u32 << doublings)
        .min(MAX_RETRY_WAIT);
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

/// Marks a delivery failed and sets it aside as a dead letter, in one transaction, so it
/// holds back nothing else and an operator can retry or discard it.
async fn set_aside(
    app: &ProvidersState,
    id: &str,
    integration: &Integration,
    attempts: i64,
    reason: &str,
) -> Result<(), StoreError> {
    let mut tx = app.store.begin().await?;
    finish(&mut tx, id, "failed", Some(reason)).await?;
    dead_letters::put(
        &mut tx,
        &NewDeadLetter {
            kind: Kind::Webhook,
            tenant_id: &integration.tenant_id,
            integration_id: Some(&integration.id),
            source_id: id,
            item: "",
            reason,
            attempts: attempts.max(1),
            payload: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Settles a delivery without recording anything (it failed, or has nowhere to go).
async fn finish(
    tx: &mut crate::store::Conn,
    id: &str,
    status: &str,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_inbox SET status = $1, error = $2, processed_at = $3, attempts = attempts + 1,
           claimed_by = NULL, claimed_until = NULL WHERE id = $4",
    )
    .bind(status)
    .bind(error)
    .bind(now_micros())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn prune(app: &ProvidersState) -> Result<(), StoreError> {
    let now = now_micros();
    sqlx::query("DELETE FROM webhook_events_seen WHERE seen_at < $1")
        .bind(now - SEEN_TTL.as_micros() as i64)
        .execute(app.store.writer())
        .await?;
    // A delivery set aside stays as long as its dead letter: a retry needs its body.
    sqlx::query(
        "DELETE FROM webhook_inbox WHERE status <> 'pending' AND received_at < $1
           AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.kind = 'webhook' AND d.source_id = webhook_inbox.id)",
    )
        .bind(now - INBOX_TTL.as_micros() as i64)
        .execute(app.store.writer())
        .await?;
    Ok(())
}
