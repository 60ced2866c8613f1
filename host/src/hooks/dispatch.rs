//! Delivery: one dispatcher task finds bindings with undelivered events and hands each to a
//! worker task under a lease (so several hosts on one PostgreSQL never deliver one binding at
//! once) and a concurrency slot (so slow hooks cannot take every worker).
//!
//! A worker reads the binding's events after its cursor from the durable log, calls the hook
//! for each in order, and commits the hook's actions together with the cursor move in one
//! transaction. The cursor move is a compare-and-set on the old cursor: if the binding was
//! deleted, disabled, or delivered by another host meanwhile, the transaction commits
//! nothing, so host-side actions happen exactly once per event. The hook itself may run more
//! than once for an event (a crash after the call, a retry): its own outbound HTTP is
//! at-least-once.
//!
//! Poison events and binding-wide failures. An event the hook fails is retried with backoff
//! up to `quarantine_after` attempts. Then the worker asks whether the event or the binding
//! is at fault by trying the next events once each (at most [`PROBE_EVENTS`]): the first
//! that goes through proves the binding works, so every failed event before it is set aside
//! as a dead letter for this binding, in the transaction that delivers it and moves the
//! cursor past them; later events keep flowing. If those events fail too, the failure is
//! binding-wide (a receiver down, a broken configuration) and the binding is quarantined
//! with its cursor unmoved, so nothing is skipped: `resume` retries from the same event. If
//! no later event exists yet, the event is held and retried (at the longest backoff) until
//! one does. A configuration that does not open fails every event alike: it quarantines
//! without probing.
//!
//! Leases. A worker holds its binding for [`lease::LEASE`], renewed by a heartbeat while it
//! delivers (a hook call may take up to the plugin's wall-clock limit, far longer than the
//! lease), so a host killed mid-delivery frees the binding within seconds and another host's
//! dispatcher carries on from the cursor. A worker whose lease is lost stops before its next
//! commit, and its commits are fenced too: the cursor move also requires that this host still
//! owns the lease.
//!
//! Size: at about 670 lines this file keeps the delivery loop and the poison judgement
//! together on purpose: both drive the same lease, cursor compare-and-set and failure
//! count, and apart they would have to expose that state machine to each other. What only
//! concerns dead letters is in `dispatch/dead.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::sync::Semaphore;

mod binding_lease;
mod dead;

pub(crate) use dead::retry_dead_event;

use self::binding_lease::{claim, heartbeat, release, release_stale_leases};
use self::dead::{set_aside, Failed};
use super::actions::{self, ActionError};
use super::sealed_config::{self, ConfigSealError, CONFIG_COLUMNS};
use super::{BindingStatus, HookOptions};
use crate::auth::TenantScope;
use crate::events::{self, LoggedEvent, LoggedTx, Undo};
use crate::hooks::HooksState;
use crate::lease::{self, Heartbeat};
use crate::plugins::contract::HookEvent;
use crate::plugins::{CallContext, CallError};
use crate::store::{now_micros, StoreError};

/// Events read from the log per query.
const BATCH: i64 = 32;
/// Deliveries per lease at most, so one busy binding hands its slot back now and then.
const PASS_LIMIT: usize = 256;
/// Bindings considered per dispatcher pass.
const DUE_LIMIT: i64 = 64;
/// Later events tried once each when an event has failed `quarantine_after` times: one going
/// through sets the failed ones aside as dead letters; all of them failing quarantines the
/// binding. Two: three events in a row failing is no longer a coincidence of content.
const PROBE_EVENTS: i64 = 2;
/// A binding whose plugin is disabled, quarantined or uninstalled checks again this often,
/// without counting failures: the operator's action, not the event, is the problem.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Wakes the hook dispatcher early (a binding was resumed or changed, a worker finished); cloning shares the one signal, so whoever holds a clone can
/// wake it without holding anything else of the worker's.
#[derive(Clone, Debug, Default)]
pub struct HooksWakeup(std::sync::Arc<tokio::sync::Notify>);

impl HooksWakeup {
    /// Asks the worker to look again now; a wake-up while it is busy is kept for its next wait.
    pub(crate) fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves when [`Self::wake`] is called (or was, since the last wait).
    pub(crate) async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Starts the dispatcher; it stops with the server, and its workers are tracked in
/// `app.tasks` so shutdown waits for them to hand their leases back.
pub(crate) fn spawn_dispatcher(app: HooksState) {
    tokio::spawn(async move {
        release_stale_leases(&app).await;
        let options = app.options.clone();
        let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
        // When no binding is active, commits do not send the dispatcher to the database: it
        // looks again once per poll interval (other hosts' bindings) or when a binding here
        // changes (`hooks_wakeup`). Every write path pays for this loop otherwise.
        let mut none_active_since: Option<Instant> = None;
        let mut woken_by_commit = false;
        loop {
            let idle_for = none_active_since
                .filter(|_| woken_by_commit)
                .map(|since| since.elapsed())
                .filter(|elapsed| *elapsed < options.poll_interval);
            let wait = if let Some(elapsed) = idle_for {
                options.poll_interval - elapsed
            } else {
                match any_active(&app).await {
                    Ok(false) => {
                        none_active_since = Some(Instant::now());
                        options.poll_interval
                    }
                    Ok(true) => {
                        none_active_since = None;
                        dispatch_due(&app, &slots, &options)
                            .await
                            .unwrap_or_else(|err| {
                                tracing::warn!(error = %err, "hook dispatcher pass failed");
                                options.poll_interval
                            })
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "hook dispatcher pass failed");
                        options.poll_interval
                    }
                }
            };
            woken_by_commit = false;
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = app.hub.appended() => woken_by_commit = true,
                _ = app.hooks_wakeup.woken() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

/// Whether any binding of any tenant is active.
async fn any_active(app: &HooksState) -> Result<bool, StoreError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM hook_bindings WHERE status = 'active' LIMIT 1")
            .fetch_optional(app.store.reader())
            .await?;
    Ok(found.is_some())
}

/// Starts workers for due bindings while slots last; returns how long to sleep before the
/// next pass unless woken (until the earliest retry, at most the poll interval).
async fn dispatch_due(
    app: &HooksState,
    slots: &Arc<Semaphore>,
    options: &HookOptions,
) -> Result<Duration, StoreError> {
    let now = now_micros();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT b.id FROM hook_bindings b JOIN tenants t ON t.id = b.tenant_id
         WHERE b.status = 'active' AND b.next_attempt_at <= $1 AND b.cursor_seq < t.last_seq
           AND t.suspended_at IS NULL
           AND (b.lease_until IS NULL OR b.lease_until < $1)
         ORDER BY b.next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(DUE_LIMIT)
    .fetch_all(app.store.reader())
    .await?;
    for id in due {
        if app.shutdown.is_cancelled() {
            break;
        }
        // No free slot: a finishing worker wakes the dispatcher again.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        if !claim(app, &id, now).await? {
            continue;
        }
        let worker = app.clone();
        app.tasks.spawn(async move {
            let _slot = slot;
            let heartbeat = heartbeat(&worker, &id);
            let outcome = deliver_binding(&worker, &id, &heartbeat).await;
            drop(heartbeat);
            release(&worker, &id).await;
            match outcome {
                // Events may have arrived while the lease was held: look again.
                Ok(()) => worker.hooks_wakeup.wake(),
                // The database failed: the next poll retries, not a tight loop.
                Err(err) => {
                    tracing::warn!(binding = %id, error = %err, "hook delivery pass failed")
                }
            }
        });
    }
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM hook_bindings WHERE status = 'active' AND next_attempt_at > $1",
    )
    .bind(now)
    .fetch_one(app.store.reader())
    .await?;
    let until_retry = next
        .map(|at| Duration::from_micros(u64::try_from(at - now).unwrap_or(0)))
        .unwrap_or(options.poll_interval);
    Ok(until_retry.min(options.poll_interval))
}

/// What a worker knows about its binding, read once per lease.
#[derive(Clone)]
struct Claimed {
    id: String,
    tenant_id: String,
    plugin: String,
    /// The opened configuration, or why it does not open.
    config: Result<String, String>,
    events: Vec<String>,
    cursor: i64,
    failures: i64,
}

async fn load(app: &HooksState, id: &str) -> Result<Option<Claimed>, StoreError> {
    match load_any(app, id).await? {
        Some((claimed, BindingStatus::Active)) => Ok(Some(claimed)),
        _ => Ok(None),
    }
}

/// The binding whatever its status, with its status.
async fn load_any(
    app: &HooksState,
    id: &str,
) -> Result<Option<(Claimed, BindingStatus)>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT id, tenant_id, plugin_id, {CONFIG_COLUMNS}, events, status, cursor_seq, failures
         FROM hook_bindings WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(app.store.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status")?;
    let Some(status) = BindingStatus::parse(&status) else {
        return Ok(None);
    };
    let events: String = row.try_get("events")?;
    let tenant_id: String = row.try_get("tenant_id")?;
    // A configuration that does not open (its master key is gone) fails each attempt, so the
    // binding backs off and is quarantined with the reason, like any other failing delivery.
    let config = match sealed_config::open(&app.vault, &tenant_id, &row) {
        Ok(config) => Ok(config),
        Err(ConfigSealError::Store(err)) => return Err(err),
        Err(err) => Err(format!("the binding's configuration does not open: {err}")),
    };
    let claimed = Claimed {
        id: row.try_get("id")?,
        tenant_id,
        plugin: row.try_get("plugin_id")?,
        config,
        // Never a custom event, whatever is stored: hooks must not feed on each other.
        events: serde_json::from_str::<Vec<String>>(&events)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.starts_with(events::CUSTOM_PREFIX))
            .collect(),
        cursor: row.try_get("cursor_seq")?,
        failures: row.try_get("failures")?,
    };
    Ok(Some((claimed, status)))
}

/// How one attempt at one event ended.
enum Attempt {
    /// Actions applied, cursor moved.
    Delivered,
    /// The hook or its actions failed: count it, back off.
    Failed(String),
    /// The plugin cannot be called right now (operator action): wait without counting.
    Unavailable(String),
    /// The binding changed under us (deleted, disabled, delivered elsewhere), or shutdown.
    Stop,
}

/// Delivers the binding's pending events in order until none are left, one fails, the pass
/// limit is reached, or the server shuts down.
async fn deliver_binding(
    app: &HooksState,
    id: &str,
    heartbeat: &Heartbeat,
) -> Result<(), StoreError> {
    let Some(mut binding) = load(app, id).await? else {
        return Ok(());
    };
    let Some(scope) = TenantScope::for_background_job(&app.store, &binding.tenant_id).await? else {
        return Ok(());
    };
    let options = &app.options;
    let mut delivered = 0;
    while delivered < PASS_LIMIT && !app.shutdown.is_cancelled() && !heartbeat.is_lost() {
        // Committed events only: the tenant row's seq is bumped in the event's transaction,
        // and concurrent writers commit in seq order, so every seq up to it is readable.
        let upto = events::last_seq(&app.store, &binding.tenant_id).await?;
        if upto <= binding.cursor {
            return Ok(());
        }
        let batch = events::read_kinds_between(
            &app.store,
            &binding.tenant_id,
            binding.cursor,
            upto,
            &binding.events,
            BATCH,
        )
        .await?;
        if batch.is_empty() {
            // Nothing subscribed up to `upto`: step past it so the log can be pruned.
            skip_to(app, &binding, upto).await?;
            return Ok(());
        }
        for event in batch {
            match attempt(app, &binding, &scope, &event, &[], heartbeat).await? {
                Attempt::Delivered => {
                    binding.cursor = event.seq;
                    binding.failures = 0;
                    delivered += 1;
                }
                Attempt::Failed(error) => {
                    let failures = binding.failures + 1;
                    let limit = i64::from(options.quarantine_after.max(1));
                    if failures < limit || binding.config.is_err() {
                        let quarantine = failures >= limit;
                        record_failure(
                            app, &binding, &scope, event.seq, &error, options, quarantine,
                        )
                        .await?;
                        return Ok(());
                    }
                    let judged = judge(app, &mut binding, &scope, &event, &error, heartbeat);
                    if !judged.await? {
                        return Ok(());
                    }
                    delivered += 1;
                    // The cursor jumped past the failed events: read on from it.
                    break;
                }
                Attempt::Unavailable(reason) => {
                    postpone(app, &binding, &reason).await?;
                    return Ok(());
                }
                Attempt::Stop => return Ok(()),
            }
        }
    }
    Ok(())
}

/// `event` failed its last allowed attempt: tries the next events once each to tell a poison
/// event (a later one goes through: the failed ones become dead letters, in the transaction
/// that delivers it) from a binding-wide failure (they fail too: quarantine, cursor unmoved).
/// Returns whether delivery may go on from the new cursor.
async fn judge(
    app: &HooksState,
    binding: &mut Claimed,
    scope: &TenantScope,
    event: &LoggedEvent,
    error: &str,
    heartbeat: &Heartbeat,
) -> Result<bool, StoreError> {
    let options = &app.options;
    let upto = events::last_seq(&app.store, &binding.tenant_id).await?;
    let later = events::read_kinds_between(
        &app.store,
        &binding.tenant_id,
        event.seq,
        upto,
        &binding.events,
        PROBE_EVENTS,
    )
    .await?;
    let mut failed = vec![Failed {
        event: event.clone(),
        error: error.to_owned(),
        attempts: binding.failures + 1,
    }];
    for next in later {
        match attempt(app, binding, scope, &next, &failed, heartbeat).await? {
            Attempt::Delivered => {
                tracing::warn!(tenant = %scope.slug(), binding = %binding.id, plugin = %binding.plugin,
                    dead = failed.len(), next = next.seq,
                    "hook events set aside as dead letters; a later event went through");
                metrics::counter!("posbridge_hook_deliveries_total", "outcome" => "dead_lettered")
                    .increment(failed.len() as u64);
                binding.cursor = next.seq;
                binding.failures = 0;
                return Ok(true);
            }
            Attempt::Failed(error) => failed.push(Failed {
                event: next,
                error,
                attempts: 1,
            }),
            Attempt::Unavailable(reason) => {
                postpone(app, binding, &reason).await?;
                return Ok(false);
            }
            Attempt::Stop => return Ok(false),
        }
    }
    // Every later event failed as well (binding-wide), or there is none yet (hold and retry).
    let probed = failed.len() - 1;
    let quarantine = probed as i64 >= PROBE_EVENTS;
    let error = if probed == 0 {
        error.to_owned()
    } else {
        format!(
            "{error}; the next {probed} event(s) failed too: {}",
            failed.last().map(|f| f.error.as_str()).unwrap_or_default()
        )
    };
    record_failure(app, binding, scope, event.seq, &error, options, quarantine).await?;
    Ok(false)
}

/// Calls the hook with one event and returns the actions it asks for, checked.
async fn run_hook(
    app: &HooksState,
    binding: &Claimed,
    scope: &TenantScope,
    event: &LoggedEvent,
    heartbeat: Option<&Heartbeat>,
) -> Result<Vec<actions::Planned>, Attempt> {
    let hook_event = HookEvent {
        tenant: scope.slug().to_owned(),
        seq: event.seq,
        kind: event.kind.clone(),
        at_ms: event.at / 1000,
        data: event.data.clone(),
    };
    // Plugin state and outbound rate limits are scoped per binding.
    let ctx = CallContext {
        tenant_id: binding.tenant_id.clone(),
        integration_id: binding.id.clone(),
    };
    let config = match &binding.config {
        Ok(config) => config,
        Err(why) => return Err(Attempt::Failed(why.clone())),
    };
    let started = std::time::Instant::now();
    let call = app
        .plugins
        .on_event(&binding.plugin, &ctx, &hook_event, config);
    // Shutdown, or the lease passing to another host, abandons the call (the instance is
    // dropped); the event is redelivered later, here or there.
    let outcome = tokio::select! {
        _ = app.shutdown.cancelled() => return Err(Attempt::Stop),
        _ = async {
            match heartbeat {
                Some(heartbeat) => heartbeat.lost().await,
                None => std::future::pending().await,
            }
        } => return Err(Attempt::Stop),
        outcome = call => outcome,
    };
    metrics::histogram!("posbridge_hook_call_seconds").record(started.elapsed().as_secs_f64());
    let returned = match outcome {
        Ok(Ok(returned)) => returned,
        Ok(Err(message)) => return Err(Attempt::Failed(format!("the hook failed: {message}"))),
        Err(err @ (CallError::Unavailable { .. } | CallError::NotInstalled(_))) => {
            return Err(Attempt::Unavailable(err.to_string()))
        }
        Err(err) => return Err(Attempt::Failed(err.to_string())),
    };
    actions::plan(scope, returned).map_err(|err| Attempt::Failed(format!("invalid action: {err}")))
}

/// Calls the hook with one event and commits its actions with the cursor move; `dead`
/// (failed events before it, skipped by the move) are set aside in the same transaction.
async fn attempt(
    app: &HooksState,
    binding: &Claimed,
    scope: &TenantScope,
    event: &LoggedEvent,
    dead: &[Failed],
    heartbeat: &Heartbeat,
) -> Result<Attempt, StoreError> {
    let planned = match run_hook(app, binding, scope, event, Some(heartbeat)).await {
        Ok(planned) => planned,
        Err(outcome) => return Ok(outcome),
    };
    if heartbeat.is_lost() {
        return Ok(Attempt::Stop);
    }
    let node_id = app.hub.node_id().to_owned();
    let delivery = Arc::new((
        binding.clone(),
        scope.clone(),
        planned,
        event.seq,
        dead.to_vec(),
    ));
    let outcome = app
        .writes
        .run(scope.tenant_id(), move |tx| {
            let (delivery, node_id) = (delivery.clone(), node_id.clone());
            Box::pin(async move {
                let (binding, scope, planned, seq, dead) = &*delivery;
                commit_delivery(tx, binding, scope, planned, *seq, dead, &node_id).await
            })
        })
        .await;
    match outcome {
        Ok(Attempt::Delivered) => {
            metrics::counter!("posbridge_hook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            Ok(Attempt::Delivered)
        }
        Ok(other) | Err(Undo::With(other)) => Ok(other),
        Err(Undo::Store(err)) => Err(err),
    }
}

/// [`attempt`]'s transaction: the cursor move, the hook's actions, the dead letters.
async fn commit_delivery(
    tx: &mut LoggedTx,
    binding: &Claimed,
    scope: &TenantScope,
    planned: &[actions::Planned],
    seq: i64,
    dead: &[Failed],
    node_id: &str,
) -> Result<Attempt, Undo<Attempt>> {
    let now = now_micros();
    // First, so a binding that moved on (or vanished, or passed to another host) stops here
    // and takes the row lock before any action runs.
    let moved = sqlx::query(
        "UPDATE hook_bindings SET cursor_seq = $1, delivered = delivered + 1, failures = 0,
           last_error = NULL, last_delivered_at = $2, next_attempt_at = 0, lease_until = $3, updated_at = $2
         WHERE id = $4 AND cursor_seq = $5 AND status = 'active' AND lease_owner = $6",
    )
    .bind(seq)
    .bind(now)
    .bind(lease::expiry_from(now))
    .bind(&binding.id)
    .bind(binding.cursor)
    .bind(node_id)
    .execute(tx.conn())
    .await
    .map_err(StoreError::from)?
    .rows_affected();
    if moved == 0 {
        return Ok(Attempt::Stop);
    }
    match actions::apply(tx, scope, planned).await {
        Ok(()) => {}
        Err(ActionError::Store(err)) => {
            tracing::error!(binding = %binding.id, error = %err, "applying hook actions failed");
            return Err(Undo::With(Attempt::Failed(
                "internal error while applying the actions".into(),
            )));
        }
        Err(err) => {
            return Err(Undo::With(Attempt::Failed(format!(
                "invalid action: {err}"
            ))))
        }
    }
    for failed in dead {
        set_aside(tx.conn(), binding, failed).await?;
    }
    Ok(Attempt::Delivered)
}

/// Moves the cursor over events the binding does not subscribe to.
async fn skip_to(app: &HooksState, binding: &Claimed, upto: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE hook_bindings SET cursor_seq = $1 WHERE id = $2 AND cursor_seq = $3 AND status = 'active'",
    )
    .bind(upto)
    .bind(&binding.id)
    .bind(binding.cursor)
    .execute(app.store.writer())
    .await?;
    Ok(())
}

/// The wait before retry number `failures` (1-based): base × 2^(failures−1), capped.
fn backoff(options: &HookOptions, failures: i64) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    options
        .retry_base
        .saturating_mul(1u32 << doublings)
        .min(options.retry_max)
}

/// Counts a failed attempt at the event after the cursor: schedules the retry, or
/// quarantines the binding (`quarantine`: the failure is binding-wide). The cursor stays, so
/// nothing is lost: a resume retries the same event.
async fn record_failure(
    app: &HooksState,
    binding: &Claimed,
    scope: &TenantScope,
    seq: i64,
    error: &str,
    options: &HookOptions,
    quarantine: bool,
) -> Result<(), StoreError> {
    let failures = binding.failures + 1;
    let now = now_micros();
    let retry_at = now + i64::try_from(backoff(options, failures).as_micros()).unwrap_or(i64::MAX);
    let error: String = error.chars().take(1000).collect();
    sqlx::query(
        "UPDATE hook_bindings SET failures = $1, last_error = $2, next_attempt_at = $3, updated_at = $4,
           status = CASE WHEN $5 = 1 THEN 'quarantined' ELSE status END
         WHERE id = $6 AND cursor_seq = $7 AND status = 'active'",
    )
    .bind(failures)
    .bind(&error)
    .bind(retry_at)
    .bind(now)
    .bind(i64::from(quarantine))
    .bind(&binding.id)
    .bind(binding.cursor)
    .execute(app.store.writer())
    .await?;
    metrics::counter!("posbridge_hook_deliveries_total", "outcome" => "failed").increment(1);
    if quarantine {
        metrics::counter!("posbridge_hook_quarantines_total").increment(1);
        tracing::error!(tenant = %scope.slug(), binding = %binding.id, plugin = %binding.plugin, seq, failures, %error,
            "hook binding quarantined");
    } else {
        tracing::warn!(tenant = %scope.slug(), binding = %binding.id, plugin = %binding.plugin, seq, failures, %error,
            "hook delivery failed; will retry");
    }
    Ok(())
}

/// Waits for the plugin to come back without counting a failure.
async fn postpone(app: &HooksState, binding: &Claimed, reason: &str) -> Result<(), StoreError> {
    let now = now_micros();
    sqlx::query(
        "UPDATE hook_bindings SET last_error = $1, next_attempt_at = $2
         WHERE id = $3 AND cursor_seq = $4 AND status = 'active'",
    )
    .bind(reason)
    .bind(now + UNAVAILABLE_RETRY.as_micros() as i64)
    .bind(&binding.id)
    .bind(binding.cursor)
    .execute(app.store.writer())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = HookOptions {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..HookOptions::default()
        };
        assert_eq!(backoff(&options, 1), Duration::from_millis(100));
        assert_eq!(backoff(&options, 2), Duration::from_millis(200));
        assert_eq!(backoff(&options, 4), Duration::from_millis(800));
        assert_eq!(backoff(&options, 5), Duration::from_secs(1));
        assert_eq!(backoff(&options, 500), Duration::from_secs(1));
        assert_eq!(backoff(&options, 0), Duration::from_millis(100));
    }
}
