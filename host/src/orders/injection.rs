//! Order injection: an online order that names a venue and canonical menu lines, at a
//! venue whose POS takes orders, is checked against the menu and the store status, priced
//! by the POS (`intake`, in the request), stored `queued` with the order, and then put into
//! the POS by this module's background worker, exactly once.
//!
//! Exactly once. The POS side is idempotent on our order id (Square's `idempotency_key` and
//! `reference_id`, Toast's `externalId`), and the host never sends an order again without
//! asking the POS first: `pos_submitted_at` is written before a submit goes out, and any
//! later attempt at that order (after a timeout, a crash of this host between the submit and
//! its answer, an operator's retry) starts with `lookup-order`. One host at a time works on
//! an order: the worker claims it with a conditional `UPDATE` and a lease that a heartbeat
//! renews while the POS call runs (see [`crate::lease`]); every write of the outcome is a
//! compare-and-set on that claim.
//!
//! Retries. Outages, 429s and timeouts are retried with exponential backoff and jitter (a
//! `Retry-After` the POS gave is honoured); a refusal by the POS rejects the order at once;
//! a problem no retry can fix (credentials, a missing capability) and attempts running out
//! fail it and set it aside as a dead letter, which an operator can retry.
//!
//! Size: about 800 lines, a third of them tests: the worker's claim, attempt and record
//! steps share the claim (its owner, its heartbeat, its compare-and-set) and the knobs;
//! apart, each would have to expose that state to the others.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

use super::relay;
use super::OrderError;
use crate::auth::TenantScope;
use crate::dead_letters::{self, Kind, NewDeadLetter, RetryOutcome, Stored};
use crate::events::{EventKind, LoggedTx};
use crate::lease::{self, Heartbeat};
use crate::plugins::contract::{self as contract, OrderState, ProviderError};
use crate::plugins::CallError;
use crate::providers::{venue_pos, ProvidersState};
use crate::store::{now_micros, release_foreign_claims, Store, StoreError};

/// A nullable text column of an order row, empty when NULL: the claim and the status
/// poll read the POS columns that way, since a row they select always has them set.
pub(super) fn text_or_empty(row: &sqlx::any::AnyRow, column: &str) -> Result<String, sqlx::Error> {
    Ok(row
        .try_get::<Option<String>, _>(column)?
        .unwrap_or_default())
}

/// Order injection knobs: how many orders go to POSes at once, how often and how patiently
/// a failing one is retried, and how often the status of orders in a POS is read back.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct InjectionOptions {
    /// Attempts at putting one order into its POS before it fails and becomes a dead
    /// letter. Default 8: with the default backoff about ten minutes of outage or rate
    /// limiting is ridden out, and an order that still cannot go in is in front of an
    /// operator while the customer is still waiting. At least 1.
    #[arg(
        id = "order_injection_max_attempts",
        long = "order-injection-max-attempts",
        env = "POSBRIDGE_ORDER_INJECTION_MAX_ATTEMPTS",
        default_value = "8",
        value_parser = crate::options::at_least(1i64)
    )]
    pub max_attempts: i64,
    /// Milliseconds before a failed injection's first retry; it doubles with every further
    /// failure (with jitter: between half and all of it), up to the cap. Default 2 s: a
    /// POS blip or a 429 is usually over by then. At least 1.
    #[arg(
        id = "order_injection_retry_base",
        long = "order-injection-retry-base-ms",
        env = "POSBRIDGE_ORDER_INJECTION_RETRY_BASE_MS",
        default_value = "2000",
        value_parser = crate::options::millis(1)
    )]
    pub retry_base: Duration,
    /// Longest wait between injection retries, milliseconds (a POS's own `Retry-After`
    /// may ask for longer, up to an hour). Default 3 minutes: an order is food someone is
    /// waiting for. At least 1.
    #[arg(
        id = "order_injection_retry_cap",
        long = "order-injection-retry-cap-ms",
        env = "POSBRIDGE_ORDER_INJECTION_RETRY_CAP_MS",
        default_value = "180000",
        value_parser = crate::options::millis(1)
    )]
    pub retry_cap: Duration,
    /// Orders put into POSes (or status reads) at once by this host. Default 8: a POS
    /// call can take up to 30 s (Toast), so a few slow ones must not hold up the rest,
    /// while POS rate limits (Toast: about 20 requests a second) are not approached.
    #[arg(
        id = "order_injection_concurrency",
        long = "order-injection-concurrency",
        env = "POSBRIDGE_ORDER_INJECTION_CONCURRENCY",
        default_value = "8",
        value_parser = crate::options::at_least(1usize)
    )]
    pub concurrency: usize,
    /// Seconds between reads of an injected order's status from its POS while it is not
    /// final (webhooks bring changes sooner; polling catches what they miss, and thin
    /// webhooks make it read at once). Default 30. At least 1.
    #[arg(
        id = "order_status_poll",
        long = "order-status-poll-secs",
        env = "POSBRIDGE_ORDER_STATUS_POLL_SECS",
        default_value = "30",
        value_parser = crate::options::secs(1)
    )]
    pub status_poll: Duration,
}

impl Default for InjectionOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// Wakes the injection worker early (an order was queued); cloning shares the one signal.
#[derive(Clone, Debug, Default)]
pub struct InjectionWakeup(Arc<Notify>);

impl InjectionWakeup {
    /// Asks the worker to look again now; a wake-up while it is busy is kept for its next wait.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Where an order stands in its venue's POS.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PosState {
    /// Waiting for its first attempt, or for a retry (`next_attempt_at`).
    Queued,
    /// The POS has it and has not accepted it yet.
    Submitted,
    /// The POS accepted it.
    Accepted,
    /// The POS refused it for good (`last_error` says why).
    Rejected,
    /// Attempts ran out, or a failure no retry fixes; a dead letter holds it.
    Failed,
}

impl PosState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            PosState::Queued => "queued",
            PosState::Submitted => "submitted",
            PosState::Accepted => "accepted",
            PosState::Rejected => "rejected",
            PosState::Failed => "failed",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        [
            PosState::Queued,
            PosState::Submitted,
            PosState::Accepted,
            PosState::Rejected,
            PosState::Failed,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// The state once the POS reports `reported`: pending is `submitted`, any later kitchen
    /// state `accepted`, a refusal `rejected`; a cancellation leaves it as it was (the order
    /// itself becomes cancelled). Never back from accepted to submitted.
    pub(super) fn after(self, reported: OrderState) -> PosState {
        match reported {
            OrderState::Rejected => PosState::Rejected,
            OrderState::Pending if self == PosState::Accepted => PosState::Accepted,
            OrderState::Pending => PosState::Submitted,
            OrderState::Canceled if self == PosState::Queued => PosState::Submitted,
            OrderState::Canceled => self,
            OrderState::Accepted
            | OrderState::InProgress
            | OrderState::Ready
            | OrderState::Completed => PosState::Accepted,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Try again later (an outage, a 429, a timeout), no sooner than `retry_after`.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The POS refused the order for good.
    Reject(String),
    /// No retry can help (credentials, a missing capability): fail it now.
    Fail(String),
}

impl Failure {
    /// Classifies a provider's answer. A conflict is a duplicate the lookup did not find
    /// (yet): retried, and the next attempt looks up first.
    pub(crate) fn from_provider(err: &ProviderError) -> Failure {
        let reason = err.to_string();
        match err {
            ProviderError::RateLimited { retry_after_ms, .. } => Failure::Retry {
                reason,
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            ProviderError::Upstream(_)
            | ProviderError::TimedOut(_)
            | ProviderError::Conflict(_) => Failure::Retry {
                reason,
                retry_after: None,
            },
            ProviderError::Rejected(_) => Failure::Reject(reason),
            ProviderError::InvalidCredentials(_)
            | ProviderError::LocationNotFound(_)
            | ProviderError::PermissionDenied(_)
            | ProviderError::BadPayload(_)
            | ProviderError::Unsupported(_) => Failure::Fail(reason),
        }
    }

    /// Classifies a failed plugin call: an unavailable, slow or crashing plugin may be
    /// replaced or recover; a missing plugin or capability will not by itself.
    pub(crate) fn from_call(err: &CallError) -> Failure {
        let reason = err.to_string();
        match err {
            CallError::Unavailable { .. }
            | CallError::Timeout(_)
            | CallError::Trapped { .. }
            | CallError::OutOfMemory(_) => Failure::Retry {
                reason,
                retry_after: None,
            },
            CallError::NotInstalled(_)
            | CallError::WrongKind { .. }
            | CallError::Incapable { .. } => Failure::Fail(reason),
        }
    }
}

/// Longest wait a POS's `Retry-After` may impose on one order.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait before the retry that follows failed attempt number `attempts` (1 for the
/// first): `base × 2^(attempts-1)` capped at `cap`, of which a random part (`jitter` in
/// [0, 1)) up to half is taken off so that orders failed together do not retry together;
/// never shorter than the POS's `retry_after` (itself at most an hour).
pub(crate) fn backoff(
    attempts: i64,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(1u32 << doublings).min(cap);
    let jitter = jitter.clamp(0.0, 1.0);
    let wait = full.mul_f64(1.0 - jitter / 2.0);
    match retry_after {
        Some(after) => wait.max(after.min(MAX_RETRY_AFTER)),
        None => wait,
    }
}

/// The injection worker's handles.
#[derive(Clone)]
pub(crate) struct Injector {
    pub app: ProvidersState,
    pub options: InjectionOptions,
    pub wakeup: InjectionWakeup,
    pub tasks: TaskTracker,
}

/// Starts the injection worker (it also relays POS statuses back, see `relay`): it submits
/// queued orders, at most `concurrency` POS calls at a time, claims every order it works on
/// so other hosts leave it alone, and on shutdown stops taking work while the calls in
/// flight record their answers (the server waits for them through `tasks`).
pub(crate) fn spawn_worker(injector: Injector) {
    tokio::spawn(async move {
        release_stale_claims(&injector.app).await;
        let permits = Arc::new(Semaphore::new(injector.options.concurrency.max(1)));
        loop {
            if injector.app.shutdown.is_cancelled() {
                return;
            }
            if let Err(err) = pass(&injector, &permits).await {
                tracing::warn!(error = %err, "order injection pass failed");
            }
            tokio::select! {
                _ = injector.app.shutdown.cancelled() => return,
                _ = injector.wakeup.0.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// On SQLite, claims left by a stopped predecessor (see [`release_foreign_claims`]).
async fn release_stale_claims(app: &ProvidersState) {
    release_foreign_claims(
        &app.store,
        app.hub.node_id(),
        "UPDATE orders SET pos_claimed_by = NULL, pos_claimed_until = NULL
         WHERE pos_claimed_by IS NOT NULL AND pos_claimed_by <> $1",
        "order injection claims",
    )
    .await;
}

/// One pass: the POS status reports webhooks left, then due submissions and status polls,
/// as many as there are free permits.
async fn pass(injector: &Injector, permits: &Arc<Semaphore>) -> Result<(), OrderError> {
    relay::drain_updates(injector).await?;
    let free = permits.available_permits();
    if free == 0 {
        return Ok(());
    }
    let now = now_micros();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT o.id FROM orders o JOIN tenants t ON t.id = o.tenant_id
         WHERE o.pos_state = 'queued' AND o.pos_next_attempt_at <= $1
           AND (o.pos_claimed_until IS NULL OR o.pos_claimed_until < $1)
           AND t.suspended_at IS NULL
         ORDER BY o.pos_next_attempt_at, o.id LIMIT $2",
    )
    .bind(now)
    .bind(i64::try_from(free).unwrap_or(i64::MAX))
    .fetch_all(injector.app.store.reader())
    .await?;
    for id in due {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            break;
        };
        let Some(claimed) = claim(&injector.app, &id).await? else {
            continue;
        };
        let injector = injector.clone();
        injector.tasks.clone().spawn(async move {
            let _permit = permit;
            let id = claimed.id.clone();
            if let Err(err) = inject(&injector, claimed).await {
                tracing::warn!(order = %id, error = %err, "order injection attempt not recorded; the claim expires and it is tried again");
            }
        });
    }
    relay::poll_due(injector, permits).await
}

/// A queued order this host claimed.
#[derive(Debug, Clone)]
struct Claimed {
    id: String,
    tenant_id: String,
    venue: String,
    provider: String,
    integration_id: String,
    request: String,
    /// This round's attempts, this one included.
    attempts: i64,
    /// A submit went out before: look the order up first.
    maybe_sent: bool,
}

/// Claims order `id` if it is still queued, due and unclaimed, counting the attempt.
async fn claim(app: &ProvidersState, id: &str) -> Result<Option<Claimed>, StoreError> {
    let now = now_micros();
    let row = sqlx::query(
        "UPDATE orders SET pos_claimed_by = $1, pos_claimed_until = $2, pos_attempts = pos_attempts + 1
         WHERE id = $3 AND pos_state = 'queued' AND pos_next_attempt_at <= $4
           AND (pos_claimed_until IS NULL OR pos_claimed_until < $4)
         RETURNING id, tenant_id, venue, pos_provider, pos_integration_id, pos_request, pos_attempts,
           pos_submitted_at",
    )
    .bind(app.hub.node_id())
    .bind(lease::expiry_from(now))
    .bind(id)
    .bind(now)
    .fetch_optional(app.store.writer())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Claimed {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        venue: text_or_empty(&row, "venue")?,
        provider: text_or_empty(&row, "pos_provider")?,
        integration_id: text_or_empty(&row, "pos_integration_id")?,
        request: text_or_empty(&row, "pos_request")?,
        attempts: row.try_get("pos_attempts")?,
        maybe_sent: row.try_get::<Option<i64>, _>("pos_submitted_at")?.is_some(),
    }))
}

/// Renews this host's claim on order `id` while its POS call runs.
pub(super) fn heartbeat(app: &ProvidersState, id: &str) -> Heartbeat {
    let (store, owner, id) = (
        app.store.clone(),
        app.hub.node_id().to_owned(),
        id.to_owned(),
    );
    Heartbeat::start(format!("order {id}"), move |expiry| {
        let (store, owner, id) = (store.clone(), owner.clone(), id.clone());
        async move {
            Ok(sqlx::query(
                "UPDATE orders SET pos_claimed_until = $1 WHERE id = $2 AND pos_claimed_by = $3",
            )
            .bind(expiry)
            .bind(id)
            .bind(owner)
            .execute(store.writer())
            .await?
            .rows_affected())
        }
    })
}

/// How one attempt ended.
enum Outcome {
    /// The POS has the order (submitted now, or found by the lookup).
    Landed(contract::OrderStatus),
    /// It failed.
    Failed(Failure),
}

/// One attempt at one claimed order: look it up if a submit may have landed, else (or if
/// not found) submit it; then record the outcome.
async fn inject(injector: &Injector, claimed: Claimed) -> Result<(), OrderError> {
    let app = &injector.app;
    let heartbeat = heartbeat(app, &claimed.id);
    let outcome = attempt(app, &claimed).await?;
    if heartbeat.is_lost() {
        tracing::warn!(order = %claimed.id, "order claim lost to another host; leaving the order to it");
        return Ok(());
    }
    drop(heartbeat);
    let Some(scope) = TenantScope::for_background_job(&app.store, &claimed.tenant_id).await? else {
        return Ok(());
    };
    record(injector, &scope, &claimed, outcome).await
}

async fn attempt(app: &ProvidersState, claimed: &Claimed) -> Result<Outcome, OrderError> {
    let Some(scope) = TenantScope::for_background_job(&app.store, &claimed.tenant_id).await? else {
        return Ok(Outcome::Failed(Failure::Fail("the tenant is gone".into())));
    };
    let request: contract::Order = match serde_json::from_str(&claimed.request) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome::Failed(Failure::Fail(format!(
                "the stored POS request is unreadable: {e}"
            ))))
        }
    };
    let pos = match venue_pos(app, &scope, &claimed.venue).await {
        Ok(Some(pos))
            if pos.ctx.integration_id == claimed.integration_id
                && pos.provider == claimed.provider =>
        {
            pos
        }
        Ok(_) => {
            return Ok(Outcome::Failed(Failure::Fail(format!(
                "venue {:?} is no longer connected to the integration the order was priced with",
                claimed.venue
            ))))
        }
        Err(e) => {
            return Ok(Outcome::Failed(Failure::Retry {
                reason: format!("the venue's POS connection: {e:?}"),
                retry_after: None,
            }))
        }
    };
    if !pos.connected {
        return Ok(Outcome::Failed(Failure::Retry {
            reason: "the venue's integration is disconnected".into(),
            retry_after: None,
        }));
    }
    let plugins = &app.plugins;
    let lookup = || async {
        match plugins
            .lookup_order(&pos.provider, &pos.ctx, &pos.conn, &claimed.id)
            .await
        {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(Failure::from_provider(&e)),
            Err(e) => Err(Failure::from_call(&e)),
        }
    };
    if claimed.maybe_sent {
        match lookup().await {
            Ok(Some(status)) => {
                tracing::info!(order = %claimed.id, provider_order = %status.provider_order_id, "order found in the POS; not sent again");
                return Ok(Outcome::Landed(status));
            }
            Ok(None) => {}
            Err(failure) => return Ok(Outcome::Failed(failure)),
        }
    }
    // Written before the submit goes out: from here on, a later attempt asks first.
    let marked = sqlx::query(
        "UPDATE orders SET pos_submitted_at = $1 WHERE id = $2 AND pos_claimed_by = $3 AND pos_state = 'queued'",
    )
    .bind(now_micros())
    .bind(&claimed.id)
    .bind(app.hub.node_id())
    .execute(app.store.writer())
    .await?
    .rows_affected();
    if marked == 0 {
        return Ok(Outcome::Failed(Failure::Retry {
            reason: "claim lost before the submit".into(),
            retry_after: None,
        }));
    }
    match plugins
        .submit_order(&pos.provider, &pos.ctx, &pos.conn, &request)
        .await
    {
        Ok(Ok(status)) => Ok(Outcome::Landed(status)),
        Ok(Err(e @ ProviderError::Conflict(_))) => match lookup().await {
            Ok(Some(status)) => Ok(Outcome::Landed(status)),
            Ok(None) => Ok(Outcome::Failed(Failure::from_provider(&e))),
            Err(failure) => Ok(Outcome::Failed(failure)),
        },
        Ok(Err(e)) => Ok(Outcome::Failed(Failure::from_provider(&e))),
        Err(e) => Ok(Outcome::Failed(Failure::from_call(&e))),
    }
}

/// Records an attempt's outcome in one logged write, conditional on this host's claim.
async fn record(
    injector: &Injector,
    scope: &TenantScope,
    claimed: &Claimed,
    outcome: Outcome,
) -> Result<(), OrderError> {
    let options = &injector.options;
    let failure = match outcome {
        Outcome::Landed(status) => {
            let shared = Arc::new((scope.clone(), claimed.clone(), status));
            let owner = injector.app.hub.node_id().to_owned();
            let poll = options.status_poll;
            return injector
                .app
                .writes
                .run(scope.tenant_id(), move |tx| {
                    let (shared, owner) = (shared.clone(), owner.clone());
                    Box::pin(async move {
                        let (scope, claimed, status) = &*shared;
                        landed(tx, scope, claimed, status, &owner, poll).await
                    })
                })
                .await;
        }
        Outcome::Failed(failure) => failure,
    };
    let failure = match failure {
        Failure::Retry { reason, .. } if claimed.attempts >= options.max_attempts.max(1) => {
            Failure::Fail(format!(
                "gave up after {} attempts: {reason}",
                claimed.attempts
            ))
        }
        Failure::Retry {
            reason,
            retry_after,
        } => {
            let wait = backoff(
                claimed.attempts,
                options.retry_base,
                options.retry_cap,
                retry_after,
                rand::random::<f64>(),
            );
            tracing::warn!(order = %claimed.id, attempts = claimed.attempts, %reason, retry_in_ms = wait.as_millis() as u64, "order injection failed; will retry");
            sqlx::query(
                "UPDATE orders SET pos_last_error = $1, pos_next_attempt_at = $2,
                   pos_claimed_by = NULL, pos_claimed_until = NULL
                 WHERE id = $3 AND pos_claimed_by = $4 AND pos_state = 'queued'",
            )
            .bind(cut(&reason))
            .bind(now_micros().saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX)))
            .bind(&claimed.id)
            .bind(injector.app.hub.node_id())
            .execute(injector.app.store.writer())
            .await?;
            return Ok(());
        }
        other => other,
    };
    let shared = Arc::new((scope.clone(), claimed.clone(), failure));
    let owner = injector.app.hub.node_id().to_owned();
    injector
        .app
        .writes
        .run(scope.tenant_id(), move |tx| {
            let (shared, owner) = (shared.clone(), owner.clone());
            Box::pin(async move {
                let (scope, claimed, failure) = &*shared;
                given_up(tx, scope, claimed, failure, &owner).await
            })
        })
        .await
}

/// Reasons are provider and guest messages: bounded like dead letters' reasons.
fn cut(reason: &str) -> String {
    reason
        .chars()
        .take(dead_letters::MAX_REASON_CHARS)
        .collect()
}

/// The POS has the order: record its id and state, emit `order_injected`, and relay its
/// status to the order (an order the POS already accepted becomes accepted).
async fn landed(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    claimed: &Claimed,
    status: &contract::OrderStatus,
    owner: &str,
    poll: Duration,
) -> Result<(), OrderError> {
    let now = now_micros();
    let state = PosState::Queued.after(status.state);
    let changed = sqlx::query(
        "UPDATE orders SET pos_state = $1, pos_provider_order_id = $2, pos_provider_state = $3,
           pos_last_error = NULL, pos_next_attempt_at = NULL, pos_claimed_by = NULL,
           pos_claimed_until = NULL, pos_poll_at = $4, updated_at = $5
         WHERE tenant_id = $6 AND id = $7 AND pos_claimed_by = $8 AND pos_state = 'queued'",
    )
    .bind(state.as_str())
    .bind(&status.provider_order_id)
    .bind(cut(&status.provider_state))
    .bind(now.saturating_add(i64::try_from(poll.as_micros()).unwrap_or(i64::MAX)))
    .bind(now)
    .bind(scope.tenant_id())
    .bind(&claimed.id)
    .bind(owner)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(());
    }
    dead_letters::resolve(tx.conn(), Kind::Order, &claimed.id, "").await?;
    let order = super::load(tx.conn(), scope, &claimed.id).await?;
    tracing::info!(order = %claimed.id, provider_order = %status.provider_order_id, state = state.as_str(), "order injected into the POS");
    tx.append(scope, EventKind::OrderInjected, &order)?;
    relay::apply_report(tx, scope, &claimed.id, status).await?;
    Ok(())
}

/// The order will not go in by itself: rejected by the POS, or failed (and set aside as a
/// dead letter an operator can retry). Emits `order_injection_failed`.
async fn given_up(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    claimed: &Claimed,
    failure: &Failure,
    owner: &str,
) -> Result<(), OrderError> {
    let (state, reason) = match failure {
        Failure::Reject(reason) => (PosState::Rejected, reason),
        Failure::Fail(reason) | Failure::Retry { reason, .. } => (PosState::Failed, reason),
    };
    let reason = cut(reason);
    let changed = sqlx::query(
        "UPDATE orders SET pos_state = $1, pos_last_error = $2, pos_next_attempt_at = NULL,
           pos_claimed_by = NULL, pos_claimed_until = NULL, updated_at = $3
         WHERE tenant_id = $4 AND id = $5 AND pos_claimed_by = $6 AND pos_state = 'queued'",
    )
    .bind(state.as_str())
    .bind(&reason)
    .bind(now_micros())
    .bind(scope.tenant_id())
    .bind(&claimed.id)
    .bind(owner)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(());
    }
    if state == PosState::Failed {
        dead_letters::put(
            tx.conn(),
            &NewDeadLetter {
                kind: Kind::Order,
                tenant_id: scope.tenant_id(),
                integration_id: Some(&claimed.integration_id),
                source_id: &claimed.id,
                item: "",
                reason: &reason,
                attempts: claimed.attempts.max(1),
                payload: Some(claimed.request.clone()),
            },
        )
        .await?;
    }
    tracing::error!(order = %claimed.id, attempts = claimed.attempts, %reason, state = state.as_str(), "order injection gave up");
    let order = super::load(tx.conn(), scope, &claimed.id).await?;
    tx.append(scope, EventKind::OrderInjectionFailed, &order)?;
    Ok(())
}

/// An operator's retry of an order's dead letter: the order is queued again with a fresh
/// round of attempts (the first of which looks the order up in the POS if it may have
/// landed) and the dead letter shows `retrying` until the worker settles it. An order that
/// is no longer failed (it went in meanwhile) resolves the dead letter.
pub(crate) async fn retry_dead_letter(
    store: &Store,
    stored: &Stored,
) -> Result<RetryOutcome, StoreError> {
    let id = &stored.view.source_id;
    let mut tx = store.begin().await?;
    let now = now_micros();
    let queued = sqlx::query(
        "UPDATE orders SET pos_state = 'queued', pos_attempts = 0, pos_next_attempt_at = $1,
           pos_claimed_by = NULL, pos_claimed_until = NULL, updated_at = $1
         WHERE tenant_id = $2 AND id = $3 AND pos_state = 'failed'",
    )
    .bind(now)
    .bind(&stored.tenant_id)
    .bind(id)
    .execute(&mut tx)
    .await?
    .rows_affected();
    if queued == 0 {
        let state: Option<Option<String>> =
            sqlx::query_scalar("SELECT pos_state FROM orders WHERE tenant_id = $1 AND id = $2")
                .bind(&stored.tenant_id)
                .bind(id)
                .fetch_optional(&mut tx)
                .await?;
        return match state {
            None | Some(None) => Ok(RetryOutcome::Gone(format!("order {id} is gone"))),
            Some(Some(state)) if state == "queued" => Ok(RetryOutcome::Requeued),
            Some(Some(_)) => {
                dead_letters::resolve(&mut tx, Kind::Order, id, "").await?;
                tx.commit().await?;
                Ok(RetryOutcome::Resolved)
            }
        };
    }
    sqlx::query(
        "UPDATE dead_letters SET status = 'retrying', retries = retries + 1, updated_at = $1
         WHERE id = $2",
    )
    .bind(now)
    .bind(&stored.view.id)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    tracing::info!(order = %id, "order re-queued for injection by an operator");
    Ok(RetryOutcome::Requeued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::contract::Rejection;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_takes_at_most_half() {
        let (base, cap) = (S(2), S(180));
        assert_eq!(backoff(1, base, cap, None, 0.0), S(2));
        assert_eq!(backoff(2, base, cap, None, 0.0), S(4));
        assert_eq!(backoff(4, base, cap, None, 0.0), S(16));
        assert_eq!(backoff(10, base, cap, None, 0.0), cap);
        assert_eq!(backoff(1_000, base, cap, None, 0.0), cap);
        assert_eq!(backoff(3, base, cap, None, 0.999_999).as_millis(), 4_000);
        for jitter in [0.1, 0.5, 0.9] {
            let wait = backoff(3, base, cap, None, jitter);
            assert!(wait <= S(8) && wait >= S(4), "{wait:?}");
        }
        // Out-of-range input never panics.
        assert_eq!(backoff(0, base, cap, None, 7.0), S(1));
        assert_eq!(backoff(-5, base, cap, None, -1.0), S(2));
    }

    #[test]
    fn retry_after_is_honoured_up_to_an_hour() {
        let (base, cap) = (S(2), S(180));
        assert_eq!(backoff(1, base, cap, Some(S(30)), 0.0), S(30));
        assert_eq!(backoff(8, base, cap, Some(S(1)), 0.0), cap);
        assert_eq!(backoff(1, base, cap, Some(S(86_400)), 0.0), S(3600));
    }

    #[test]
    fn failures_are_classified_retry_reject_or_fail() {
        let limited = ProviderError::RateLimited {
            message: "slow down".into(),
            retry_after_ms: Some(1500),
        };
        assert_eq!(
            Failure::from_provider(&limited),
            Failure::Retry {
                reason: limited.to_string(),
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        for e in [
            ProviderError::Upstream("503".into()),
            ProviderError::TimedOut("30 s".into()),
            ProviderError::Conflict("duplicate externalId".into()),
        ] {
            assert!(
                matches!(Failure::from_provider(&e), Failure::Retry { .. }),
                "{e}"
            );
        }
        let rejected = ProviderError::Rejected(Rejection {
            status: Some(400),
            code: None,
            message: "item unavailable".into(),
            field: None,
        });
        assert!(matches!(
            Failure::from_provider(&rejected),
            Failure::Reject(_)
        ));
        for e in [
            ProviderError::InvalidCredentials("no".into()),
            ProviderError::PermissionDenied("no".into()),
            ProviderError::Unsupported("no".into()),
        ] {
            assert!(
                matches!(Failure::from_provider(&e), Failure::Fail(_)),
                "{e}"
            );
        }
        assert!(matches!(
            Failure::from_call(&CallError::Timeout("toast".into())),
            Failure::Retry { .. }
        ));
        assert!(matches!(
            Failure::from_call(&CallError::Incapable {
                id: "clover".into(),
                what: "submit orders"
            }),
            Failure::Fail(_)
        ));
    }

    #[test]
    fn pos_state_moves_forward_only() {
        use OrderState::*;
        assert_eq!(PosState::Queued.after(Pending), PosState::Submitted);
        assert_eq!(PosState::Queued.after(Accepted), PosState::Accepted);
        assert_eq!(PosState::Queued.after(Ready), PosState::Accepted);
        assert_eq!(PosState::Submitted.after(InProgress), PosState::Accepted);
        assert_eq!(PosState::Accepted.after(Pending), PosState::Accepted);
        assert_eq!(PosState::Submitted.after(Rejected), PosState::Rejected);
        assert_eq!(PosState::Accepted.after(Canceled), PosState::Accepted);
        assert_eq!(PosState::Queued.after(Canceled), PosState::Submitted);
        for s in ["queued", "submitted", "accepted", "rejected", "failed"] {
            assert_eq!(PosState::parse(s).map(PosState::as_str), Some(s));
        }
        assert_eq!(PosState::parse("sent"), None);
    }
}
