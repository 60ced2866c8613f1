//! Revocations made elsewhere: by another host sharing the PostgreSQL database, or by the
//! CLI (`posbridge key revoke`), which writes the database directly with no server. A
//! suspended tenant's keys count as revoked here (`posbridge tenant suspend`). This
//! host closes the revoked key's sockets (4003) and forgets its cached keys, so REST
//! refuses the key at once too.
//!
//! Two paths, both cheap: on PostgreSQL the revoking transaction announces the key id
//! (`events::REVOCATION_CHANNEL`), which reaches this host within milliseconds; and on
//! both databases a periodic check reads the keys revoked since the last one. On SQLite
//! the check is the only path (the CLI cannot reach a running process); on PostgreSQL it
//! covers announcements lost while the listener was reconnecting.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::broadcast::error::RecvError;

use crate::store::{now_micros, Store, StoreError};
use crate::terminals::TerminalsState;

/// How often the database is checked for revocations: within the 2 s a revocation is
/// promised to take everywhere, with room for the close handshake. The query reads only
/// keys revoked within [`LOOKBACK`] (a handful of rows in a table of a few per till), so
/// two a second cost next to nothing.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How far before the newest revocation seen each check looks again. A revocation is
/// stamped with its writer's clock before it commits, so it can become visible after a
/// later-stamped one; another host's clock may also lag this one. A minute covers both
/// generously, and keys already handled are remembered, so nothing is closed twice.
const LOOKBACK: i64 = 60_000_000;

/// The periodic check's memory: the newest revocation time seen, and the keys revoked
/// within [`LOOKBACK`] of it (already handled).
#[derive(Debug)]
struct Watermark {
    newest: i64,
    seen: HashMap<String, i64>,
}

impl Watermark {
    /// Keys revoked before `start` have no sockets on a host that starts then.
    fn new(start: i64) -> Self {
        Watermark {
            newest: start,
            seen: HashMap::new(),
        }
    }

    /// Records the revocations read by one check; returns the keys not seen before.
    fn absorb(&mut self, rows: Vec<(String, i64)>) -> Vec<String> {
        let mut fresh = Vec::new();
        for (id, at) in rows {
            self.newest = self.newest.max(at);
            // A key seen before with another time: its tenant was resumed and suspended
            // again.
            if self.seen.insert(id.clone(), at) != Some(at) {
                fresh.push(id);
            }
        }
        let horizon = self.newest - LOOKBACK;
        self.seen.retain(|_, at| *at > horizon);
        fresh
    }

    /// Reads the keys revoked within [`LOOKBACK`] of the newest seen and returns the new
    /// ones.
    async fn check(&mut self, store: &Store) -> Result<Vec<String>, StoreError> {
        // Keys of suspended tenants are closed like revoked ones (`tenancy::lifecycle`).
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM api_keys WHERE revoked_at > $1
             UNION ALL
             SELECT k.id, t.suspended_at AS revoked_at FROM api_keys k
               JOIN tenants t ON t.id = k.tenant_id
             WHERE t.suspended_at > $1 AND k.revoked_at IS NULL",
        )
        .bind(self.newest - LOOKBACK)
        .fetch_all(store.reader())
        .await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("revoked_at")?)))
            .collect::<Result<Vec<(String, i64)>, sqlx::Error>>()?;
        Ok(self.absorb(rows))
    }
}

/// Starts watching for revocations made anywhere until shutdown.
pub(crate) fn spawn_watcher(app: TerminalsState) {
    tokio::spawn(async move {
        // Subscribed before the first check, so nothing falls between the two.
        let mut announced = app.hub.revocations();
        let mut watermark = Watermark::new(now_micros());
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                received = announced.recv() => match received {
                    Ok(key_id) => revoked(&app, &[key_id]),
                    // Missed announcements are found by the next check.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = poll.tick() => match watermark.check(&app.store).await {
                    Ok(fresh) if fresh.is_empty() => {}
                    Ok(fresh) => revoked(&app, &fresh),
                    Err(err) => tracing::warn!(error = %err, "checking for revoked keys failed"),
                },
            }
        }
    });
}

/// Acts on keys revoked elsewhere: no cached entry may accept them any more, and their
/// sockets on this host close with 4003. Both are idempotent, so hearing of a key twice
/// (announcement and check) is harmless.
fn revoked(app: &TerminalsState, key_ids: &[String]) {
    app.keys.invalidate();
    for key_id in key_ids {
        if app.terminals.close_key(key_id) > 0 {
            tracing::info!(%key_id, "sockets of a key revoked elsewhere closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Watermark, LOOKBACK};

    #[test]
    fn each_revocation_is_reported_once_even_when_it_commits_late() {
        let mut w = Watermark::new(1_000);
        assert_eq!(w.absorb(vec![("a".into(), 2_000)]), vec!["a"]);
        // Seen again by the next check (within the lookback): not reported twice.
        assert!(w.absorb(vec![("a".into(), 2_000)]).is_empty());
        // Stamped before `a` but committed after it: still reported.
        assert_eq!(
            w.absorb(vec![("a".into(), 2_000), ("b".into(), 1_500)]),
            vec!["b"]
        );
        // Far older than the newest: forgotten, so memory stays bounded.
        w.absorb(vec![("c".into(), 2_000 + 2 * LOOKBACK)]);
        assert!(!w.seen.contains_key("a") && !w.seen.contains_key("b"));
        assert!(w.seen.contains_key("c"));
    }

    #[test]
    fn a_key_of_a_tenant_suspended_again_is_reported_again() {
        let mut w = Watermark::new(1_000);
        assert_eq!(w.absorb(vec![("k".into(), 2_000)]), vec!["k"]);
        // Resumed, then suspended again: the key comes back with a new time.
        assert_eq!(w.absorb(vec![("k".into(), 3_000)]), vec!["k"]);
        assert!(w.absorb(vec![("k".into(), 3_000)]).is_empty());
    }
}
