//! A binding's lease: claiming it, the heartbeat that renews it while a worker delivers,
//! handing it back, and releasing a stopped predecessor's at start. The design is in
//! [`crate::lease`].

use crate::hooks::HooksState;
use crate::lease::{self, Heartbeat, LeasedRows};
use crate::store::{release_foreign_claims, StoreError};

/// Frees leases held by other processes. On SQLite those are a stopped predecessor's; on a
/// shared PostgreSQL they may be a live host's, so nothing is released there: a dead host's
/// leases run out within [`lease::LEASE`].
pub(super) async fn release_stale_leases(app: &HooksState) {
    release_foreign_claims(
        &app.store,
        app.hub.node_id(),
        "UPDATE hook_bindings SET lease_owner = NULL, lease_until = NULL
         WHERE lease_owner IS NOT NULL AND lease_owner <> $1",
        "hook leases",
    )
    .await;
}

pub(super) async fn claim(app: &HooksState, id: &str, now: i64) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "UPDATE hook_bindings SET lease_owner = $1, lease_until = $2
         WHERE id = $3 AND status = 'active' AND (lease_until IS NULL OR lease_until < $4)",
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

/// Renews the binding's lease while its worker delivers.
pub(super) fn heartbeat(app: &HooksState, id: &str) -> Heartbeat {
    Heartbeat::for_row(
        &app.store,
        LeasedRows::HookBindings,
        id,
        app.hub.node_id(),
        format!("hook binding {id}"),
    )
}

pub(super) async fn release(app: &HooksState, id: &str) {
    let released = sqlx::query(
        "UPDATE hook_bindings SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(app.hub.node_id())
    .execute(app.store.writer())
    .await;
    if let Err(err) = released {
        tracing::warn!(binding = %id, error = %err, "could not release a hook lease; it expires");
    }
}
