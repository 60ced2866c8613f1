//! The tenant's durable event log and the write path that feeds it.
//!
//! Every write a terminal cares about goes through a [`LoggedTx`]: the domain rows and the
//! event rows commit together, each event taking the tenant's next sequence number, and
//! only after the commit are the events handed to the [`EventHub`] for fan-out. An event
//! is therefore never seen before it is durable, and never durable without being seen by a
//! terminal that resumes from its last sequence number.

mod group_commit;
mod hub;

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::Row;

pub(crate) use group_commit::{GroupCommitOptions, Undo, Writes};
pub(crate) use hub::{EventHub, HubOptions, REVOCATION_CHANNEL};

use crate::auth::TenantScope;
use crate::store::{now_micros, rfc3339, Backend, Conn, Params, Store, StoreError};

/// The event types the host itself emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// An online order arrived.
    NewOrder,
    /// An order changed status.
    OrderUpdated,
    /// A gift card was issued or bought.
    GiftCardPurchased,
    /// Value was taken off a gift card.
    GiftCardRedeemed,
    /// A customer's loyalty points changed.
    LoyaltyUpdated,
    /// A daily report was uploaded or replaced.
    DailyReportUploaded,
    /// A POS sale (Square, Toast, local) was recorded or changed.
    TransactionRecorded,
    /// A spend rule unlocked a tier (and access level) for a customer.
    TierUnlocked,
    /// A venue's menu content changed (a `PUT` of a different menu).
    MenuUpdated,
    /// Items, variations or options of a venue's menu were sold out or came back.
    ItemAvailabilityChanged,
    /// A venue's store status (open, busy, closed) changed.
    StoreStatusChanged,
    /// An online order reached its venue's POS (it carries the provider order id).
    OrderInjected,
    /// An online order could not be put into its venue's POS: refused, or out of attempts.
    OrderInjectionFailed,
}

impl EventKind {
    /// The wire name (`type` of the frame).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::NewOrder => "new_order",
            EventKind::OrderUpdated => "order_updated",
            EventKind::GiftCardPurchased => "gift_card_purchased",
            EventKind::GiftCardRedeemed => "gift_card_redeemed",
            EventKind::LoyaltyUpdated => "loyalty_updated",
            EventKind::DailyReportUploaded => "daily_report_uploaded",
            EventKind::TransactionRecorded => "transaction_recorded",
            EventKind::TierUnlocked => "tier_unlocked",
            EventKind::MenuUpdated => "menu_updated",
            EventKind::ItemAvailabilityChanged => "item_availability_changed",
            EventKind::StoreStatusChanged => "store_status_changed",
            EventKind::OrderInjected => "order_injected",
            EventKind::OrderInjectionFailed => "order_injection_failed",
        }
    }
}

/// One committed event, with its WebSocket frame serialized once for every subscriber.
#[derive(Debug)]
pub struct Event {
    /// Owning tenant.
    pub tenant_id: String,
    /// Per-tenant sequence number, gapless and increasing.
    pub seq: i64,
    /// Wire type name.
    pub kind: String,
    /// Append time, microseconds since the epoch.
    pub at: i64,
    /// The JSON text frame `{"seq","type","at","data"}` sent to terminals.
    pub frame: Utf8Bytes,
    /// Whether terminals receive it; see [`for_terminals`]. Events they do not receive
    /// still take their seq, and the stream skips them without treating them as a gap.
    pub for_terminals: bool,
}

/// Whether an event of `kind` with `data` goes to the WebSocket. Walk-in orders
/// (`new_order`/`order_updated` of an order whose `source` is `pos`) do not: the till that
/// took them already knows, and the system posbridge replaces pushes online orders only.
/// They stay in the log, for hooks and `since` bookkeeping, and in REST.
pub(crate) fn for_terminals(kind: &str, data: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Source<'a> {
        #[serde(borrow)]
        source: Option<std::borrow::Cow<'a, str>>,
    }
    if kind != EventKind::NewOrder.as_str() && kind != EventKind::OrderUpdated.as_str() {
        return true;
    }
    // Only the top-level field is read; anything unreadable is shown rather than hidden.
    serde_json::from_str::<Source>(data).map_or(true, |o| o.source.as_deref() != Some("pos"))
}

impl Event {
    fn new(tenant_id: String, seq: i64, kind: String, at: i64, data: &str) -> Self {
        let for_terminals = for_terminals(&kind, data);
        let frame = format!(
            r#"{{"seq":{seq},"type":{},"at":"{}","data":{data}}}"#,
            serde_json::Value::String(kind.clone()),
            rfc3339(at),
        );
        Event {
            tenant_id,
            seq,
            kind,
            at,
            frame: Utf8Bytes::from(frame),
            for_terminals,
        }
    }
}

/// A write transaction that records events alongside the rows that caused them.
///
/// Writes get one through [`Writes::run`], which shares the transaction between
/// concurrent writes (group commit, see [`Writes`]). Appends are buffered and written at
/// the commit, each tenant's in one statement with one sequence bump for the whole batch:
/// on PostgreSQL the tenant's sequence row is locked only for the commit, not while the
/// writes run. Nothing inside a transaction reads back its own events.
pub struct LoggedTx {
    tx: Conn,
    hub: EventHub,
    backend: Backend,
    pending: Vec<PendingEvent>,
    /// Whether [`LoggedTx::conn`] was handed out since [`LoggedTx::untouched`]: a job that
    /// failed without it changed nothing in the database and needs no rollback.
    touched: bool,
}

/// An event appended but not yet written.
struct PendingEvent {
    tenant_id: String,
    kind: String,
    at: i64,
    data: String,
}

/// Events per INSERT when a transaction appended many: 5 parameters each (4 on PostgreSQL)
/// keep a statement far below SQLite's 32,766 and PostgreSQL's 65,535 bound parameters.
const EVENTS_PER_STATEMENT: usize = 1_000;

impl LoggedTx {
    /// Starts a write transaction whose events will be published through `hub` on commit.
    ///
    /// This and the other steps the group commit's lanes call return boxed `Send` futures:
    /// checked only where a lane is spawned, the compiler cannot prove sqlx's generic
    /// executors `Send` for every lifetime.
    fn begin<'a>(store: &'a Store, hub: &'a EventHub) -> BoxFuture<'a, Result<Self, StoreError>> {
        Box::pin(async move {
            Ok(LoggedTx {
                tx: store.begin_direct().await?,
                hub: hub.clone(),
                backend: store.backend(),
                pending: Vec::new(),
                touched: false,
            })
        })
    }

    /// The transaction's connection, for the domain's own statements.
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.touched = true;
        &mut self.tx
    }

    /// Starts watching for [`LoggedTx::conn`] anew (before each job of a batch).
    fn untouched(&mut self) {
        self.touched = false;
    }

    /// Whether the connection was handed out since [`LoggedTx::untouched`].
    fn touched(&self) -> bool {
        self.touched
    }

    /// Which database the transaction runs on, for the few statements whose locking differs.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Appends an event to the tenant's log; it is written, and takes the tenant's next
    /// sequence number, when the transaction commits.
    pub(crate) fn append(
        &mut self,
        scope: &TenantScope,
        kind: EventKind,
        data: &impl Serialize,
    ) -> Result<(), StoreError> {
        let data = serde_json::to_string(data)
            .map_err(|e| StoreError::Sqlx(sqlx::Error::Encode(Box::new(e))))?;
        self.append_raw(scope.tenant_id(), kind.as_str(), data);
        Ok(())
    }

    /// Appends `custom.<kind>` (a hook's event for the terminals). The caller validates
    /// `kind`; `data` is re-serialized, so the frame is always valid JSON.
    pub(crate) fn append_custom(
        &mut self,
        scope: &TenantScope,
        kind: &str,
        data: &serde_json::Value,
    ) {
        self.append_raw(
            scope.tenant_id(),
            &format!("{CUSTOM_PREFIX}{kind}"),
            data.to_string(),
        );
    }

    fn append_raw(&mut self, tenant_id: &str, kind: &str, data: String) {
        self.pending.push(PendingEvent {
            tenant_id: tenant_id.to_owned(),
            kind: kind.to_owned(),
            at: now_micros(),
            data,
        });
    }

    /// Events appended so far, to mark where a job's own appends begin.
    fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Drops the events appended after `mark` (those of a job rolled back).
    fn truncate_pending(&mut self, mark: usize) {
        self.pending.truncate(mark);
    }

    /// Marks the point a failing job rolls back to. Not released after the job: a later
    /// `SAVEPOINT` of the same name shadows it, which saves a round trip per job.
    fn savepoint(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SAVEPOINT job").execute(&mut self.tx).await?;
            Ok(())
        })
    }

    /// Undoes everything since the last [`LoggedTx::savepoint`] (on PostgreSQL also
    /// clearing the aborted state a failed statement leaves).
    fn rollback_to_savepoint(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("ROLLBACK TO SAVEPOINT job")
                .execute(&mut self.tx)
                .await?;
            Ok(())
        })
    }

    /// Rolls the whole transaction back.
    fn rollback(self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            self.tx.rollback().await?;
            Ok(())
        })
    }

    /// Writes the events, commits, then publishes the events to connected terminals.
    fn commit(self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(self.commit_inner())
    }

    async fn commit_inner(mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        let mut events = Vec::with_capacity(pending.len());
        // Per tenant, in append order within a tenant. Tenants in id order: each takes its
        // sequence row's lock here, and a fixed order means two transactions (lanes, or
        // hosts) never each hold one the other waits for.
        let mut tenants: Vec<&str> = Vec::new();
        for event in &pending {
            if !tenants.contains(&event.tenant_id.as_str()) {
                tenants.push(&event.tenant_id);
            }
        }
        tenants.sort_unstable();
        if !tenants.is_empty() {
            metrics::histogram!("posbridge_write_batch_tenants").record(tenants.len() as f64);
        }
        for tenant_id in tenants {
            let of_tenant: Vec<&PendingEvent> = pending
                .iter()
                .filter(|e| e.tenant_id == tenant_id)
                .collect();
            for chunk in of_tenant.chunks(EVENTS_PER_STATEMENT) {
                let first = self.write_events(tenant_id, chunk).await?;
                for (event, seq) in chunk.iter().zip(first..) {
                    events.push(Arc::new(Event::new(
                        tenant_id.to_owned(),
                        seq,
                        event.kind.clone(),
                        event.at,
                        &event.data,
                    )));
                }
            }
        }
        self.tx.commit().await?;
        if events.is_empty() {
            return Ok(());
        }
        metrics::counter!("posbridge_events_appended_total").increment(events.len() as u64);
        for event in events {
            self.hub.publish(event);
        }
        self.hub.signal_appended();
        Ok(())
    }

    /// Writes one tenant's events with consecutive sequence numbers; returns the first.
    async fn write_events(
        &mut self,
        tenant_id: &str,
        events: &[&PendingEvent],
    ) -> Result<i64, StoreError> {
        let n = events.len() as i64;
        // The tenant's counter row is locked by the UPDATE until the commit: it orders
        // concurrent writers of one tenant (across hosts on PostgreSQL), so seqs commit in
        // the order they are handed out, and `tenants.last_seq` stays the counter
        // `last_seq()` reads.
        let last: i64 = match self.backend {
            // One statement, one round trip, for the bump, the rows and the NOTIFY that
            // tells every other host's listener of them when (and only if) this commits.
            // (`::text` because sqlx's Any driver cannot decode NOTIFY's `void`.)
            Backend::Postgres => {
                let mut params = Params::new(self.backend);
                params.list(4); // $1-$4 are named in the statement's fixed part
                let sql = format!(
                    "WITH bumped AS (
                         UPDATE tenants SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq
                     ), written AS (
                         INSERT INTO events (tenant_id, seq, kind, at, data)
                         SELECT $1, bumped.last_seq - $2 + e.n, e.kind, e.at, e.data
                         FROM bumped, (VALUES {}) AS e(n, kind, at, data)
                     )
                     SELECT last_seq, pg_notify($3, $4 || ' ' || (last_seq - $2 + 1) || ' ' || last_seq)::text
                     FROM bumped",
                    params.rows(events.len(), 4)
                );
                let mut query = sqlx::query_scalar(&sql)
                    .bind(tenant_id)
                    .bind(n)
                    .bind(hub::NOTIFY_CHANNEL)
                    .bind(self.hub.notification_prefix(tenant_id));
                for (event, ordinal) in events.iter().zip(1i64..) {
                    query = query
                        .bind(ordinal)
                        .bind(&event.kind)
                        .bind(event.at)
                        .bind(&event.data);
                }
                query.fetch_one(&mut self.tx).await?
            }
            // On SQLite the write lane runs its statements on its own thread
            // (store/direct.rs): two cost about what one would.
            Backend::Sqlite => {
                let last: i64 = sqlx::query_scalar(
                    "UPDATE tenants SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq",
                )
                .bind(tenant_id)
                .bind(n)
                .fetch_one(&mut self.tx)
                .await?;
                let sql = format!(
                    "INSERT INTO events (tenant_id, seq, kind, at, data) VALUES {}",
                    Params::new(self.backend).rows(events.len(), 5)
                );
                let mut query = sqlx::query(&sql);
                for (event, seq) in events.iter().zip(last - n + 1..) {
                    query = query
                        .bind(tenant_id)
                        .bind(seq)
                        .bind(&event.kind)
                        .bind(event.at)
                        .bind(&event.data);
                }
                query.execute(&mut self.tx).await?;
                last
            }
        };
        let first = last - n + 1;
        let history = self.hub.history();
        // Prune when this write crossed a multiple of PRUNE_EVERY.
        if last / PRUNE_EVERY > (first - 1) / PRUNE_EVERY && last > history {
            // Never below a hook binding's cursor: what a hook has not consumed yet stays.
            // The lower bound, the tenant's oldest event (one index probe), is there for
            // PostgreSQL's planner: with `seq <= $2` alone it guessed a third of the table
            // (a kept statement's generic plan), or all of it (a moving window outruns
            // `ANALYZE`: the statistics still hold seqs long pruned), and scanned all of
            // `events` (every tenant's retained log) on every prune, every 64 events. With
            // both bounds it takes the range as narrow and walks the primary key, whichever
            // plan it makes. Measured on one tenant's loyalty adds, one server and database
            // over six 8 s rounds: 7,318 → 2,620 adds/s as the log filled, 1.6 × 10⁸ rows
            // read by 1,613 scans; with the bound, see the performance doc.
            sqlx::query(
                "DELETE FROM events WHERE tenant_id = $1
                   AND seq >= (SELECT MIN(seq) FROM events WHERE tenant_id = $1)
                   AND seq <= $2
                   AND seq <= (SELECT COALESCE(MIN(cursor_seq), $2) FROM hook_bindings WHERE tenant_id = $1)",
            )
            .bind(tenant_id)
            .bind(last - history)
            .execute(&mut self.tx)
            .await?;
        }
        Ok(first)
    }
}

/// Type prefix of the events hooks emit; hooks never receive these (no feedback loops).
pub(crate) const CUSTOM_PREFIX: &str = "custom.";

/// Pruning runs when a write passes every `PRUNE_EVERY`-th event of a tenant, so a tenant
/// keeps between `history` and `history + PRUNE_EVERY` events (plus one write's worth) and
/// the common append pays nothing for it.
const PRUNE_EVERY: i64 = 64;

/// The last sequence number handed out for the tenant (0 before the first event).
pub(crate) async fn last_seq(store: &Store, tenant_id: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT last_seq FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_one(store.reader())
            .await?,
    )
}

/// The oldest sequence number still in the tenant's log, if any.
pub(crate) async fn first_retained_seq(
    store: &Store,
    tenant_id: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(store.reader())
            .await?,
    )
}

/// Up to `limit` events with `seq > after`, in order.
pub(crate) async fn read_after(
    store: &Store,
    tenant_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Arc<Event>>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, kind, at, data FROM events WHERE tenant_id = $1 AND seq > $2
         ORDER BY seq LIMIT $3",
    )
    .bind(tenant_id)
    .bind(after)
    .bind(limit)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            let data: String = row.try_get("data")?;
            Ok(Arc::new(Event::new(
                tenant_id.to_owned(),
                row.try_get("seq")?,
                row.try_get("kind")?,
                row.try_get("at")?,
                &data,
            )))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// A logged event with its data, as hooks receive it.
#[derive(Debug, Clone)]
pub(crate) struct LoggedEvent {
    /// Per-tenant sequence number.
    pub seq: i64,
    /// Wire type name.
    pub kind: String,
    /// Append time, microseconds since the epoch.
    pub at: i64,
    /// The data, JSON text.
    pub data: String,
}

/// Up to `limit` events with `after < seq <= upto` whose type is one of `kinds`, in order.
/// `kinds` empty reads nothing.
pub(crate) async fn read_kinds_between(
    store: &Store,
    tenant_id: &str,
    after: i64,
    upto: i64,
    kinds: &[String],
    limit: i64,
) -> Result<Vec<LoggedEvent>, StoreError> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    // Placeholders $5.. for the kinds: one statement shape per list length.
    let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "SELECT seq, kind, at, data FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
           AND kind IN ({}) ORDER BY seq LIMIT $4",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(after)
        .bind(upto)
        .bind(limit);
    for kind in kinds {
        query = query.bind(kind);
    }
    let rows = query.fetch_all(store.reader()).await?;
    rows.iter()
        .map(|row| {
            Ok(LoggedEvent {
                seq: row.try_get("seq")?,
                kind: row.try_get("kind")?,
                at: row.try_get("at")?,
                data: row.try_get("data")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_valid_json_with_the_documented_fields() {
        let e = Event::new(
            "t".into(),
            42,
            "new_order".into(),
            1_700_000_000_000_000,
            r#"{"id":"o1"}"#,
        );
        let v: serde_json::Value = serde_json::from_str(e.frame.as_str()).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["type"], "new_order");
        assert_eq!(v["at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["data"]["id"], "o1");
        assert!(e.for_terminals);
    }

    #[test]
    fn walk_in_orders_stay_off_the_websocket() {
        let walk_in = r#"{"id":"o1","source":"pos","notes":"source online"}"#;
        let online = r#"{"id":"o2","source":"online","customer":{"source":"pos"}}"#;
        assert!(!for_terminals("new_order", walk_in));
        assert!(!for_terminals("order_updated", walk_in));
        assert!(
            for_terminals("new_order", online),
            "only the top-level source counts"
        );
        assert!(for_terminals("order_updated", online));
        assert!(
            for_terminals("loyalty_updated", walk_in),
            "only order events are filtered"
        );
        assert!(for_terminals("new_order", "not json"));
    }
}
