//! Dead letters: work that could not be processed within its bounded attempts, set aside with
//! the reason so that it never holds back anything else.
//!
//! Three queues feed it, each deciding for itself when an item is poison (see their modules):
//! the webhook inbox (a delivery its plugin cannot parse, or whose sales the host cannot
//! store), the polling sync (one sale the host cannot store, or a page the provider will not
//! give), and hook delivery (an event the hook keeps failing while later events go through).
//! A failure that says nothing about the item — the database unavailable, a transaction
//! conflict — is never poison: see [`is_transient`].
//!
//! Operators list, inspect, retry and discard dead letters under `/admin/dead-letters` (see
//! `dead_letters_api`, which hands a retried letter back to its queue: kept apart so that
//! this module, which the queues write to, names none of them);
//! `/metrics` shows how many are held (`posbridge_dead_letters{kind}`) and how many were set
//! aside since start (`posbridge_dead_lettered_total{kind}`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::{new_id, now_micros, rfc3339, Db, Store, StoreError, TransientConflict};

/// Which queue a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// A webhook inbox delivery.
    Webhook,
    /// A sale (or a page) of a polling sync.
    Sync,
    /// A hook event for one binding.
    Hook,
    /// An online order its venue's POS never took within its bounded attempts.
    Order,
}

impl Kind {
    /// Every kind, for the metrics gauge.
    pub(crate) const ALL: [Kind; 4] = [Kind::Webhook, Kind::Sync, Kind::Hook, Kind::Order];

    /// The stored (and wire) name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Sync => "sync",
            Kind::Hook => "hook",
            Kind::Order => "order",
        }
    }

    /// The kind named `s` (as stored, and as the `kind` query parameter spells it).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Longest reason kept; the rest is cut (reasons quote provider and guest messages).
pub(crate) const MAX_REASON_CHARS: usize = 1000;

/// An item being set aside.
#[derive(Debug, Clone)]
pub(crate) struct NewDeadLetter<'a> {
    /// Its queue.
    pub kind: Kind,
    /// The tenant it belongs to.
    pub tenant_id: &'a str,
    /// The integration of a webhook or sync item.
    pub integration_id: Option<&'a str>,
    /// The inbox delivery (webhook), integration (sync) or binding (hook).
    pub source_id: &'a str,
    /// The item within the source: the sale's external id (sync; `""` for a page), the
    /// event seq (hook), `""` (webhook).
    pub item: &'a str,
    /// Why it was set aside, naming the offending field where there is one.
    pub reason: &'a str,
    /// Attempts this round (added to earlier ones of the same item).
    pub attempts: i64,
    /// What a retry needs that is not kept elsewhere (see the migration).
    pub payload: Option<String>,
}

/// Sets an item aside, or (the same kind, source and item again) records the new failure on
/// its existing dead letter, which returns to `dead`. Runs on `exec`, so a caller can make it
/// part of the transaction that moves its queue past the item. Returns the dead letter's id.
pub(crate) async fn put<'e, E>(exec: E, new: &NewDeadLetter<'_>) -> Result<String, StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let now = now_micros();
    let reason: String = new.reason.chars().take(MAX_REASON_CHARS).collect();
    let id: String = sqlx::query_scalar(
        "INSERT INTO dead_letters (id, kind, tenant_id, integration_id, source_id, item, status, reason, attempts,
           retries, payload, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'dead', $7, $8, 0, $9, $10, $10)
         ON CONFLICT (kind, source_id, item) DO UPDATE SET status = 'dead', reason = excluded.reason,
           attempts = dead_letters.attempts + excluded.attempts,
           payload = COALESCE(excluded.payload, dead_letters.payload), updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(new_id())
    .bind(new.kind.as_str())
    .bind(new.tenant_id)
    .bind(new.integration_id)
    .bind(new.source_id)
    .bind(new.item)
    .bind(&reason)
    .bind(new.attempts)
    .bind(new.payload.as_deref())
    .bind(now)
    .fetch_one(exec)
    .await?;
    // Counted when written; the rare rollback of the caller's transaction overcounts by one.
    metrics::counter!("posbridge_dead_lettered_total", "kind" => new.kind.as_str()).increment(1);
    tracing::warn!(dead_letter = %id, kind = new.kind.as_str(), source = new.source_id, item = new.item,
        %reason, "set aside as a dead letter");
    Ok(id)
}

/// Removes the dead letter of an item that has now been processed (a retry that went
/// through, or the same item succeeding by another path). Runs on `exec`, inside the
/// transaction that processed it.
pub(crate) async fn resolve<'e, E>(
    exec: E,
    kind: Kind,
    source_id: &str,
    item: &str,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query("DELETE FROM dead_letters WHERE kind = $1 AND source_id = $2 AND item = $3")
        .bind(kind.as_str())
        .bind(source_id)
        .bind(item)
        .execute(exec)
        .await?;
    Ok(())
}

/// Whether a storage failure says nothing about the item being processed: the transaction
/// collided with another (PostgreSQL aborted it), or the database could not be reached or
/// was busy ([`StoreError::is_unavailable`], the same classification that answers 503 at
/// the edge). Those are retried without counting towards dead-lettering; anything else the
/// database refuses (a constraint, a value it cannot store) is the item's own fault.
pub(crate) fn is_transient(err: &StoreError) -> bool {
    err.is_transient_conflict() || err.is_unavailable()
}

/// A dead letter as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct DeadLetter {
    /// Its id.
    pub id: String,
    /// Its queue.
    pub kind: Kind,
    /// The tenant's slug (absent if the tenant is gone).
    pub tenant: Option<String>,
    /// The integration (webhook and sync).
    pub integration_id: Option<String>,
    /// Inbox delivery, integration or binding id (see [`NewDeadLetter::source_id`]).
    pub source_id: String,
    /// Item within the source (see [`NewDeadLetter::item`]).
    pub item: String,
    /// `dead`, or `retrying` while a re-queued webhook delivery waits for the inbox.
    pub status: String,
    /// Why it was set aside (the latest failure).
    pub reason: String,
    /// Attempts in all.
    pub attempts: i64,
    /// Operator retries.
    pub retries: i64,
    /// First set aside.
    pub created_at: String,
    /// Last failed or retried.
    pub updated_at: String,
    /// The item itself (detail view only): the sale, the event, the page window, or the
    /// webhook delivery's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

pub(crate) const COLUMNS: &str =
    "d.id, d.kind, t.slug, d.integration_id, d.source_id, d.item, d.status, d.reason,
    d.attempts, d.retries, d.created_at, d.updated_at, d.tenant_id, d.payload";

pub(crate) fn from_row(
    row: &sqlx::any::AnyRow,
    with_payload: bool,
) -> Result<DeadLetter, StoreError> {
    let kind: String = row.try_get("kind")?;
    let payload: Option<String> = if with_payload {
        row.try_get("payload")?
    } else {
        None
    };
    Ok(DeadLetter {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind).ok_or_else(|| {
            StoreError::Sqlx(sqlx::Error::Decode(
                format!("unknown dead-letter kind {kind:?}").into(),
            ))
        })?,
        tenant: row.try_get("slug")?,
        integration_id: row.try_get("integration_id")?,
        source_id: row.try_get("source_id")?,
        item: row.try_get("item")?,
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        attempts: row.try_get("attempts")?,
        retries: row.try_get("retries")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
        payload: payload.map(|p| serde_json::from_str(&p).unwrap_or(serde_json::Value::String(p))),
    })
}

/// A stored dead letter with what a retry needs.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// As shown.
    pub view: DeadLetter,
    /// The tenant's id.
    pub tenant_id: String,
    /// The raw payload text.
    pub payload: Option<String>,
}

/// One dead letter by id.
pub(crate) async fn find(store: &Store, id: &str) -> Result<Option<Stored>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters d LEFT JOIN tenants t ON t.id = d.tenant_id WHERE d.id = $1"
    ))
    .bind(id)
    .fetch_optional(store.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Stored {
        view: from_row(&row, true)?,
        tenant_id: row.try_get("tenant_id")?,
        payload: row.try_get("payload")?,
    }))
}

/// Sets the `posbridge_dead_letters{kind}` gauge from the database (every host shares it).
/// Bounded by a short timeout so `/metrics` answers even when the database does not.
pub(crate) async fn refresh_gauge(store: &Store) {
    let count = sqlx::query("SELECT kind, COUNT(*) AS n FROM dead_letters GROUP BY kind")
        .fetch_all(store.reader());
    let rows = match tokio::time::timeout(Duration::from_secs(1), count).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "dead-letter gauge not refreshed");
            return;
        }
        Err(_) => {
            tracing::debug!("dead-letter gauge not refreshed: the database is slow");
            return;
        }
    };
    for kind in Kind::ALL {
        let n = rows
            .iter()
            .find(|r| r.try_get::<String, _>("kind").ok().as_deref() == Some(kind.as_str()))
            .and_then(|r| r.try_get::<i64, _>("n").ok())
            .unwrap_or(0);
        metrics::gauge!("posbridge_dead_letters", "kind" => kind.as_str()).set(n as f64);
    }
}

/// How a retry ended, as its queue reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetryOutcome {
    /// Handed back to its queue (a webhook delivery back to pending); the dead letter shows
    /// `retrying` until the queue settles it.
    Requeued,
    /// Processed; the dead letter is gone (removed in the same transaction).
    Resolved,
    /// Failed again, for this reason; the dead letter stays.
    Failed(String),
    /// What it belonged to is gone (integration, binding, inbox row): only discard is left.
    Gone(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn unavailability_is_transient_and_refusals_are_not() {
        assert!(is_transient(&StoreError::Sqlx(sqlx::Error::PoolTimedOut)));
        assert!(is_transient(&StoreError::Sqlx(sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        ))));
        assert!(!is_transient(&StoreError::Sqlx(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&StoreError::UnsupportedUrl("x".into())));
    }
}
