//! The venue's sync lease: claiming it, the heartbeat that renews it while a sync runs, and
//! taking it over from a dead holder when a sync is asked for now. The design is in
//! [`crate::lease`].

use super::{sync_integration, SyncStats};
use crate::error::ApiError;
use crate::lease::{self, Heartbeat, LeasedRows};
use crate::providers::ProviderFailure;
use crate::providers::ProvidersState;
use crate::store::{now_micros, StoreError};

/// A sync asked for now (`POST /pos/sync/{venue}`): runs it, taking the venue over from a
/// holder that stopped renewing its lease (a dead host) once the lease runs out, which takes
/// at most [`lease::LEASE`]. `Ok(None)` while a live sync holds the venue: on this host, or
/// on another whose heartbeat renews the lease while this one watches.
pub(crate) async fn sync_now(
    app: &ProvidersState,
    id: &str,
    trigger: &str,
) -> Result<Option<SyncStats>, ProviderFailure> {
    let deadline = std::time::Instant::now() + lease::LEASE + lease::RENEW_EVERY;
    let mut first_seen: Option<i64> = None;
    loop {
        if let Some(stats) = sync_integration(app, id, trigger).await? {
            return Ok(Some(stats));
        }
        let holder: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT lease_owner, lease_until FROM integrations WHERE id = $1")
                .bind(id)
                .fetch_optional(app.store.reader())
                .await
                .map_err(ApiError::from)?;
        match holder {
            // A sync of this very host: it is alive.
            Some((Some(owner), Some(_))) if owner == app.hub.node_id() => return Ok(None),
            Some((Some(_), Some(until))) => match first_seen {
                None => first_seen = Some(until),
                // Renewed: the holder's heartbeat beats, it is alive.
                Some(seen) if until > seen => return Ok(None),
                Some(_) => {}
            },
            // Released or gone between the claim and the look: try again at once.
            _ => {}
        }
        if std::time::Instant::now() >= deadline || app.shutdown.is_cancelled() {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Claims the integration's sync lease for this host if it is free or expired.
pub(super) async fn claim(app: &ProvidersState, id: &str) -> Result<bool, StoreError> {
    let now = now_micros();
    let claimed = sqlx::query(
        "UPDATE integrations SET lease_owner = $1, lease_until = $2
         WHERE id = $3 AND status <> 'disconnected' AND (lease_until IS NULL OR lease_until < $4)",
    )
    .bind(app.hub.node_id())
    .bind(lease::expiry_from(now))
    .bind(id)
    .bind(now)
    .execute(app.store.writer())
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Renews the integration's sync lease while the sync runs.
pub(super) fn heartbeat(app: &ProvidersState, id: &str) -> Heartbeat {
    Heartbeat::for_row(
        &app.store,
        LeasedRows::Integrations,
        id,
        app.hub.node_id(),
        format!("sync of integration {id}"),
    )
}
