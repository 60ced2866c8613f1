//! Status relay: what happens to an injected order in its POS (accepted, in the kitchen,
//! ready, picked up, cancelled) comes back to the order and goes out as `order_updated` to
//! terminals and hooks.
//!
//! Two sources feed it. Webhooks: the webhook inbox stores the order-status reports a POS
//! webhook carried in `pos_order_updates`, in the transaction that records the delivery
//! (the inbox cannot name this module: orders already name providers), and each pass of the
//! injection worker applies them; a thin report (Square's: an order id and a version) makes
//! the order's status be read from the POS at once. Polling: every injected order that is
//! not final has its status read from the POS every `--order-status-poll-secs`, for what
//! webhooks miss (Toast retries a webhook only twice).
//!
//! Reports apply forward only (a POS saying "accepted" does not undo "ready" set by a
//! terminal), a cancellation or refusal in the POS cancels the order, and a report older
//! than the one applied (a lower provider version, or an earlier change time) is dropped
//! without an event.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;
use tokio::sync::Semaphore;

use super::injection::{heartbeat, text_or_empty, Injector, PosState};
use super::{OrderError, OrderStatus, ORDER_COLUMNS};
use crate::auth::TenantScope;
use crate::events::{EventKind, LoggedTx};
use crate::lease;
use crate::plugins::contract::{self as contract, Capability, OrderState};
use crate::providers::venue_pos;
use crate::store::{now_micros, StoreError};

/// Where a kitchen status sits in the lifecycle, for moving forward only.
fn rank(status: OrderStatus) -> u8 {
    match status {
        OrderStatus::Pending => 0,
        OrderStatus::Accepted => 1,
        OrderStatus::Preparing => 2,
        OrderStatus::Ready => 3,
        OrderStatus::Completed => 4,
        OrderStatus::Cancelled => 5,
    }
}

/// The order's status once its POS reports `reported`, if that moves it: forward along the
/// lifecycle (steps may be skipped: a POS without a kitchen display goes from accepted to
/// completed), to cancelled from any open status when the POS cancelled or refused it, and
/// never out of completed or cancelled.
pub(crate) fn advance(current: OrderStatus, reported: OrderState) -> Option<OrderStatus> {
    if matches!(current, OrderStatus::Completed | OrderStatus::Cancelled) {
        return None;
    }
    let target = match reported {
        OrderState::Pending => OrderStatus::Pending,
        OrderState::Accepted => OrderStatus::Accepted,
        OrderState::InProgress => OrderStatus::Preparing,
        OrderState::Ready => OrderStatus::Ready,
        OrderState::Completed => OrderStatus::Completed,
        OrderState::Canceled | OrderState::Rejected => OrderStatus::Cancelled,
    };
    (rank(target) > rank(current)).then_some(target)
}

/// Whether a report (`version`, change time `at`) is older than what was applied: by the
/// provider's version where both have one (Square), else by change time (Toast). Equal is
/// not stale: the same version again changes nothing anyway.
pub(crate) fn is_stale(
    stored_version: Option<i64>,
    stored_at: Option<i64>,
    version: Option<i64>,
    at: Option<i64>,
) -> bool {
    if let (Some(stored), Some(v)) = (stored_version, version) {
        return v < stored;
    }
    if let (Some(stored), Some(a)) = (stored_at, at) {
        return a < stored;
    }
    false
}

/// Applies a POS status report to order `id`: drops it if stale, records the POS's state
/// and version, moves the order's status (see [`advance`]) and appends `order_updated`
/// when it moved. Compare-and-set on what it read, so two hosts applying reports at once
/// emit one event. Returns whether the order's status moved.
pub(super) async fn apply_report(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    id: &str,
    report: &contract::OrderStatus,
) -> Result<bool, OrderError> {
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS}, pos_version, pos_updated_at FROM orders WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(scope.tenant_id())
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| OrderError::NotFound(id.to_owned()))?;
    let mut order = super::order_from_row(&row)?;
    let stored_version: Option<i64> = row.try_get("pos_version")?;
    let stored_at: Option<i64> = row.try_get("pos_updated_at")?;
    let Some(pos) = order.pos.as_mut() else {
        return Ok(false);
    };
    if is_stale(
        stored_version,
        stored_at,
        report.version,
        report.updated_at_ms,
    ) {
        tracing::debug!(order = %id, version = ?report.version, ?stored_version, "stale POS status dropped");
        return Ok(false);
    }
    let pos_state = match pos.state {
        // A report for an order that is not (or no longer) in the POS's hands changes only
        // the order's status.
        PosState::Rejected | PosState::Failed => pos.state,
        current => current.after(report.state),
    };
    let next = advance(order.status, report.state);
    let status = next.unwrap_or(order.status);
    let finished = matches!(status, OrderStatus::Completed | OrderStatus::Cancelled)
        || pos_state == PosState::Rejected;
    let now = now_micros();
    let changed = sqlx::query(
        "UPDATE orders SET status = $1, pos_state = $2, pos_provider_state = $3,
           pos_provider_order_id = COALESCE(pos_provider_order_id, $4),
           pos_version = COALESCE($5, pos_version), pos_updated_at = COALESCE($6, pos_updated_at),
           pos_poll_at = CASE WHEN $7 = 1 THEN NULL ELSE pos_poll_at END, updated_at = $8
         WHERE tenant_id = $9 AND id = $10 AND status = $11
           AND COALESCE(pos_version, -1) = $12 AND COALESCE(pos_updated_at, -1) = $13",
    )
    .bind(status.as_str())
    .bind(pos_state.as_str())
    .bind(report.provider_state.chars().take(200).collect::<String>())
    .bind(&report.provider_order_id)
    .bind(report.version)
    .bind(report.updated_at_ms)
    .bind(i64::from(finished))
    .bind(now)
    .bind(scope.tenant_id())
    .bind(id)
    .bind(order.status.as_str())
    .bind(stored_version.unwrap_or(-1))
    .bind(stored_at.unwrap_or(-1))
    .execute(tx.conn())
    .await?
    .rows_affected();
    if changed == 0 || next.is_none() {
        return Ok(false);
    }
    let order = super::load(tx.conn(), scope, id).await?;
    tracing::info!(order = %id, status = status.as_str(), provider_state = %report.provider_state, "order status relayed from the POS");
    tx.append(scope, EventKind::OrderUpdated, &order)?;
    Ok(true)
}

/// Reports applied per pass; the rest wait for the next (a second later, or at once when
/// the worker is woken).
const UPDATES_PER_PASS: i64 = 200;

/// Applies the order-status reports webhooks left in `pos_order_updates`, each in its own
/// logged write that deletes it first (so of two hosts, one applies it). Reports about
/// orders that are not injected ones (a POS also reports its walk-in orders) are dropped.
pub(super) async fn drain_updates(injector: &Injector) -> Result<(), OrderError> {
    let app = &injector.app;
    let rows = sqlx::query(
        "SELECT id, tenant_id, integration_id, provider_order_id, version, status
         FROM pos_order_updates ORDER BY received_at, id LIMIT $1",
    )
    .bind(UPDATES_PER_PASS)
    .fetch_all(app.store.reader())
    .await?;
    let mut scopes: HashMap<String, Option<TenantScope>> = HashMap::new();
    for row in rows {
        let id: String = row.try_get("id")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        if !scopes.contains_key(&tenant_id) {
            let scope = TenantScope::for_background_job(&app.store, &tenant_id).await?;
            scopes.insert(tenant_id.clone(), scope);
        }
        let status: Option<String> = row.try_get("status")?;
        let report = match status
            .as_deref()
            .map(serde_json::from_str::<contract::OrderStatus>)
        {
            Some(Ok(report)) => Some(report),
            Some(Err(e)) => {
                tracing::warn!(update = %id, error = %e, "unreadable POS order status dropped");
                None
            }
            None => None,
        };
        let update = Arc::new(Update {
            id,
            scope: scopes.get(&tenant_id).cloned().flatten(),
            integration_id: row.try_get("integration_id")?,
            provider_order_id: row.try_get("provider_order_id")?,
            version: row.try_get("version")?,
            thin: status.is_none(),
            report,
        });
        app.writes
            .run(&tenant_id, move |tx| {
                let update = update.clone();
                Box::pin(async move { apply_update(tx, &update).await })
            })
            .await?;
    }
    Ok(())
}

/// One stored webhook report.
struct Update {
    id: String,
    scope: Option<TenantScope>,
    integration_id: String,
    provider_order_id: String,
    version: Option<i64>,
    /// The webhook named the order only: read its status from the POS.
    thin: bool,
    report: Option<contract::OrderStatus>,
}

async fn apply_update(tx: &mut LoggedTx, update: &Update) -> Result<(), OrderError> {
    let taken = sqlx::query("DELETE FROM pos_order_updates WHERE id = $1")
        .bind(&update.id)
        .execute(tx.conn())
        .await?
        .rows_affected();
    let Some(scope) = update.scope.as_ref().filter(|_| taken == 1) else {
        return Ok(());
    };
    let order_id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE tenant_id = $1 AND pos_integration_id = $2 AND pos_provider_order_id = $3",
    )
    .bind(scope.tenant_id())
    .bind(&update.integration_id)
    .bind(&update.provider_order_id)
    .fetch_optional(tx.conn())
    .await?;
    let Some(order_id) = order_id else {
        return Ok(());
    };
    match &update.report {
        Some(report) => {
            let mut report = report.clone();
            report.version = report.version.or(update.version);
            apply_report(tx, scope, &order_id, &report).await?;
        }
        None if update.thin => {
            // Read it from the POS now, unless the order is final (no longer polled) or the
            // report is not newer than the version applied.
            let sql = match update.version {
                Some(_) => {
                    "UPDATE orders SET pos_poll_at = $1 WHERE id = $2 AND pos_poll_at IS NOT NULL
                              AND COALESCE(pos_version, -1) < $3"
                }
                None => {
                    "UPDATE orders SET pos_poll_at = $1 WHERE id = $2 AND pos_poll_at IS NOT NULL"
                }
            };
            let mut query = sqlx::query(sql).bind(now_micros()).bind(&order_id);
            if let Some(version) = update.version {
                query = query.bind(version);
            }
            query.execute(tx.conn()).await?;
        }
        None => {}
    }
    Ok(())
}

/// Starts status reads of injected orders that are due (not final, `pos_poll_at` passed),
/// as many as there are free permits, each claimed like a submission.
pub(super) async fn poll_due(
    injector: &Injector,
    permits: &Arc<Semaphore>,
) -> Result<(), OrderError> {
    let free = permits.available_permits();
    if free == 0 {
        return Ok(());
    }
    let app = &injector.app;
    let now = now_micros();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT o.id FROM orders o JOIN tenants t ON t.id = o.tenant_id
         WHERE o.pos_poll_at <= $1 AND o.pos_state IN ('submitted', 'accepted')
           AND o.status NOT IN ('completed', 'cancelled')
           AND (o.pos_claimed_until IS NULL OR o.pos_claimed_until < $1)
           AND t.suspended_at IS NULL
         ORDER BY o.pos_poll_at, o.id LIMIT $2",
    )
    .bind(now)
    .bind(i64::try_from(free).unwrap_or(i64::MAX))
    .fetch_all(app.store.reader())
    .await?;
    let next = now.saturating_add(
        i64::try_from(injector.options.status_poll.as_micros()).unwrap_or(i64::MAX),
    );
    for id in due {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            break;
        };
        let row = sqlx::query(
            "UPDATE orders SET pos_claimed_by = $1, pos_claimed_until = $2, pos_poll_at = $3
             WHERE id = $4 AND pos_poll_at <= $5 AND pos_state IN ('submitted', 'accepted')
               AND (pos_claimed_until IS NULL OR pos_claimed_until < $5)
             RETURNING tenant_id, venue, pos_provider, pos_integration_id, pos_provider_order_id",
        )
        .bind(app.hub.node_id())
        .bind(lease::expiry_from(now))
        .bind(next)
        .bind(&id)
        .bind(now)
        .fetch_optional(app.store.writer())
        .await?;
        let Some(row) = row else { continue };
        let poll = Poll {
            id,
            tenant_id: row.try_get("tenant_id")?,
            venue: text_or_empty(&row, "venue")?,
            provider: text_or_empty(&row, "pos_provider")?,
            integration_id: text_or_empty(&row, "pos_integration_id")?,
            provider_order_id: text_or_empty(&row, "pos_provider_order_id")?,
        };
        let injector = injector.clone();
        injector.tasks.clone().spawn(async move {
            let _permit = permit;
            let id = poll.id.clone();
            if let Err(err) = poll_one(&injector, &poll).await {
                tracing::warn!(order = %id, error = %err, "order status read failed; read again later");
            }
            release(&injector, &id).await;
        });
    }
    Ok(())
}

/// An injected order whose status this host is reading.
struct Poll {
    id: String,
    tenant_id: String,
    venue: String,
    provider: String,
    integration_id: String,
    provider_order_id: String,
}

async fn poll_one(injector: &Injector, poll: &Poll) -> Result<(), OrderError> {
    let app = &injector.app;
    let Some(scope) = TenantScope::for_background_job(&app.store, &poll.tenant_id).await? else {
        return Ok(());
    };
    let pos = venue_pos(app, &scope, &poll.venue)
        .await
        .map_err(|e| OrderError::Invalid(format!("the venue's POS connection: {e:?}")))?;
    let readable = pos.as_ref().is_some_and(|p| {
        p.ctx.integration_id == poll.integration_id
            && p.provider == poll.provider
            && app
                .plugins
                .manifest(&p.provider)
                .is_some_and(|m| m.can(Capability::OrderStatus))
    });
    let Some(pos) = pos.filter(|_| readable && !poll.provider_order_id.is_empty()) else {
        // The POS that has the order cannot be asked any more: stop polling it.
        sqlx::query("UPDATE orders SET pos_poll_at = NULL WHERE id = $1")
            .bind(&poll.id)
            .execute(app.store.writer())
            .await?;
        return Ok(());
    };
    let heartbeat = heartbeat(app, &poll.id);
    let report = app
        .plugins
        .order_status(&pos.provider, &pos.ctx, &pos.conn, &poll.provider_order_id)
        .await
        .map_err(|e| OrderError::Invalid(e.to_string()))?
        .map_err(|e| OrderError::Invalid(e.to_string()))?;
    if heartbeat.is_lost() {
        return Ok(());
    }
    drop(heartbeat);
    let home = scope.tenant_id().to_owned();
    let shared = Arc::new((scope, poll.id.clone(), report));
    app.writes
        .run(&home, move |tx| {
            let shared = shared.clone();
            Box::pin(async move {
                let (scope, id, report) = &*shared;
                apply_report(tx, scope, id, report).await
            })
        })
        .await?;
    Ok(())
}

/// Gives up this host's claim on a polled order (the next read is already scheduled).
async fn release(injector: &Injector, id: &str) {
    let released: Result<_, StoreError> = sqlx::query(
        "UPDATE orders SET pos_claimed_by = NULL, pos_claimed_until = NULL WHERE id = $1 AND pos_claimed_by = $2",
    )
    .bind(id)
    .bind(injector.app.hub.node_id())
    .execute(injector.app.store.writer())
    .await
    .map_err(StoreError::from);
    if let Err(err) = released {
        tracing::warn!(order = %id, error = %err, "could not release the order's claim; it expires");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus as S;

    #[test]
    fn reports_move_the_order_forward_only() {
        assert_eq!(advance(S::Pending, OrderState::Accepted), Some(S::Accepted));
        assert_eq!(advance(S::Pending, OrderState::Ready), Some(S::Ready));
        assert_eq!(
            advance(S::Accepted, OrderState::InProgress),
            Some(S::Preparing)
        );
        assert_eq!(
            advance(S::Accepted, OrderState::Completed),
            Some(S::Completed)
        );
        assert_eq!(advance(S::Ready, OrderState::Accepted), None);
        assert_eq!(advance(S::Pending, OrderState::Pending), None);
        assert_eq!(advance(S::Ready, OrderState::Canceled), Some(S::Cancelled));
        assert_eq!(
            advance(S::Pending, OrderState::Rejected),
            Some(S::Cancelled)
        );
        assert_eq!(advance(S::Completed, OrderState::Canceled), None);
        assert_eq!(advance(S::Cancelled, OrderState::Accepted), None);
    }

    #[test]
    fn older_versions_and_earlier_changes_are_stale() {
        assert!(is_stale(Some(5), None, Some(4), None));
        assert!(!is_stale(Some(5), None, Some(5), None));
        assert!(!is_stale(Some(5), None, Some(6), None));
        // Versions win over times when both sides have one.
        assert!(!is_stale(Some(5), Some(2_000), Some(6), Some(1_000)));
        assert!(is_stale(None, Some(2_000), None, Some(1_999)));
        assert!(!is_stale(None, Some(2_000), None, Some(2_000)));
        // Nothing to compare: applied.
        assert!(!is_stale(None, None, Some(1), Some(1)));
        assert!(!is_stale(Some(3), None, None, None));
    }
}
