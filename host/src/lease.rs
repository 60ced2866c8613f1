//! Short leases kept alive by a heartbeat: how one host at a time owns a piece of background
//! work (a venue's sync, a hook binding's delivery, a batch of webhook inbox rows) and how a
//! dead host's work is taken over within seconds.
//!
//! A lease is two columns on the row that names the work: an owner (this process's node id,
//! [`crate::events::EventHub::node_id`]) and an expiry. A host claims the row with a conditional
//! `UPDATE … WHERE expiry IS NULL OR expiry < now`, so at most one claim succeeds. While the
//! work runs, a [`Heartbeat`] moves the expiry [`LEASE`] ahead every [`RENEW_EVERY`],
//! conditional on the owner still being this host. A host killed with `kill -9` stops
//! renewing; [`LEASE`] later any other host's next pass claims the row and carries on.
//!
//! Losing a lease (a renewal finds another owner, or the database stayed unreachable until
//! the last confirmed expiry passed) flips [`Heartbeat::is_lost`]; the work checks it before
//! each commit and stops. That check is not what makes effects happen once: every commit of
//! leased work is also a compare-and-set (the hook cursor, the venue's lease owner, the
//! provider event id, the sale's external id), so a host that lost its lease in the instant
//! between the check and the commit commits nothing twice.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{now_micros, Store, StoreError};

/// How long a claim lasts without a renewal: the longest a dead host's work waits before
/// another host takes it over. Five seconds: several renewals fit in it, so a renewal delayed
/// by a busy database does not lose a live host its work, and a dead host's venue, hook
/// binding or webhook deliveries wait seconds, not minutes.
pub(crate) const LEASE: Duration = Duration::from_secs(5);

/// How often a [`Heartbeat`] renews its lease: a third of [`LEASE`], so two renewals in a
/// row may fail or be late before the lease runs out.
pub(crate) const RENEW_EVERY: Duration = Duration::from_millis(1_666);

/// The expiry of a lease claimed or renewed at `now` (microseconds, like every stored time).
pub(crate) fn expiry_from(now: i64) -> i64 {
    now.saturating_add(i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX))
}

/// A table whose rows each carry one lease (`lease_owner`, `lease_until`), keyed by `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeasedRows {
    /// A venue's sync lease, on `integrations`.
    Integrations,
    /// A hook binding's delivery lease, on `hook_bindings`.
    HookBindings,
}

impl LeasedRows {
    /// The renewal: moves the expiry of one row where this host still owns it. Spelled out
    /// per table so no table name is ever built into SQL from a string.
    fn renew_sql(self) -> &'static str {
        match self {
            LeasedRows::Integrations => {
                "UPDATE integrations SET lease_until = $1 WHERE id = $2 AND lease_owner = $3"
            }
            LeasedRows::HookBindings => {
                "UPDATE hook_bindings SET lease_until = $1 WHERE id = $2 AND lease_owner = $3"
            }
        }
    }
}

/// Renews one lease in the background while the work it protects runs; dropping it stops
/// the renewals (the work then releases the lease or lets it expire).
#[derive(Debug)]
pub(crate) struct Heartbeat {
    lost: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing. `renew(expiry)` runs the conditional `UPDATE` that moves the lease's
    /// expiry to `expiry` where this host still owns it, and answers how many rows it moved:
    /// none means the lease is someone else's now. `what` names the lease in logs.
    pub(crate) fn start<F, Fut>(what: String, renew: F) -> Heartbeat
    where
        F: Fn(i64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, StoreError>> + Send + 'static,
    {
        Heartbeat::start_every(RENEW_EVERY, what, renew)
    }

    /// Starts renewing the lease `owner` holds on row `id` of `rows`; `what` names it in logs.
    pub(crate) fn for_row(
        store: &Store,
        rows: LeasedRows,
        id: &str,
        owner: &str,
        what: String,
    ) -> Heartbeat {
        let (store, id, owner) = (store.clone(), id.to_owned(), owner.to_owned());
        Heartbeat::start(what, move |expiry| {
            let (store, id, owner) = (store.clone(), id.clone(), owner.clone());
            async move {
                let renewed = sqlx::query(rows.renew_sql())
                    .bind(expiry)
                    .bind(&id)
                    .bind(&owner)
                    .execute(store.writer())
                    .await?;
                Ok(renewed.rows_affected())
            }
        })
    }

    fn start_every<F, Fut>(every: Duration, what: String, renew: F) -> Heartbeat
    where
        F: Fn(i64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, StoreError>> + Send + 'static,
    {
        let lost = CancellationToken::new();
        let flag = lost.clone();
        let task = tokio::spawn(async move {
            // Claimed just now: held until then at least.
            let mut held_until = expiry_from(now_micros());
            loop {
                tokio::time::sleep(every).await;
                let expiry = expiry_from(now_micros());
                match renew(expiry).await {
                    Ok(0) => {
                        tracing::warn!(lease = %what, "lease lost to another host; stopping its work");
                        metrics::counter!("posbridge_leases_lost_total").increment(1);
                        flag.cancel();
                        return;
                    }
                    Ok(_) => held_until = expiry,
                    // The database may be back before the lease runs out: keep trying until then.
                    Err(err) if now_micros() < held_until => {
                        tracing::warn!(lease = %what, error = %err, "could not renew a lease; retrying");
                    }
                    Err(err) => {
                        tracing::warn!(lease = %what, error = %err, "lease expired while the database was unreachable; stopping its work");
                        metrics::counter!("posbridge_leases_lost_total").increment(1);
                        flag.cancel();
                        return;
                    }
                }
            }
        });
        Heartbeat { lost, task }
    }

    /// Whether the lease was lost: the work must not commit anything more.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Completes when the lease is lost (never while it is held), so a long wait on a
    /// plugin or a provider can be abandoned at once.
    pub(crate) async fn lost(&self) {
        self.lost.cancelled().await
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn renewals_fit_in_a_lease_with_room_for_two_late_ones() {
        assert!(RENEW_EVERY * 3 <= LEASE);
        assert!(RENEW_EVERY * 2 < LEASE);
        assert_eq!(expiry_from(1_000), 1_000 + 5_000_000);
        assert_eq!(expiry_from(i64::MAX), i64::MAX);
    }

    const FAST: Duration = Duration::from_millis(10);

    #[tokio::test]
    async fn a_renewal_that_moves_no_row_means_the_lease_is_lost() {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let heartbeat = Heartbeat::start_every(FAST, "test".into(), move |_| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move { Ok(u64::from(n < 2)) }
        });
        tokio::time::timeout(Duration::from_secs(5), heartbeat.lost())
            .await
            .expect("lost after the third renewal");
        assert!(heartbeat.is_lost());
        tokio::time::sleep(FAST * 5).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "no renewal after the loss");
    }

    #[tokio::test]
    async fn a_held_lease_is_renewed_until_dropped() {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let heartbeat = Heartbeat::start_every(FAST, "test".into(), move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok(1) }
        });
        tokio::time::timeout(Duration::from_secs(5), async {
            while calls.load(Ordering::SeqCst) < 5 {
                tokio::time::sleep(FAST).await;
            }
        })
        .await
        .expect("five renewals");
        assert!(!heartbeat.is_lost());
        drop(heartbeat);
        tokio::time::sleep(FAST * 2).await;
        let after_drop = calls.load(Ordering::SeqCst);
        tokio::time::sleep(FAST * 5).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after_drop,
            "renewals stop with the heartbeat"
        );
    }
}
