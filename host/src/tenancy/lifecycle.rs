//! A tenant's life after creation: update its name, time zone and country; suspend it
//! (every key refused, its sockets closed with 4003 on every host, its background work
//! paused, its data kept); resume it; and delete it with everything it owns.
//!
//! Suspension reaches other hosts through the revocation path of
//! `terminals::revocations`: on PostgreSQL the suspending transaction announces every key
//! of the tenant on [`crate::events::REVOCATION_CHANNEL`], and on both databases the
//! periodic revocation check also reads the keys of tenants suspended since its last look.
//! Key lookups read the tenant's `suspended_at`, so REST and new sockets are refused as soon
//! as a host's key cache (one second at most) has forgotten the key.
//!
//! While suspended, webhooks for the tenant's integrations are still accepted and stored in
//! the inbox (so nothing a provider sends is lost and no provider disables the endpoint
//! after a string of errors), but they are processed only after resumption; scheduled syncs
//! and hook deliveries wait the same way. Work already running when the suspension commits
//! finishes its current pass.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{check_timezone, valid_country, valid_name, TenancyError, Tenant, Tenants};
use crate::auth::{KeyCache, Operator};
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::hooks::HooksWakeup;
use crate::providers::{InboxWakeup, SyncWakeup};
use crate::store::{now_micros, Backend, Store};
use crate::terminals::Terminals;

/// Body of `PATCH /admin/tenants/{slug}` (and the CLI's `tenant update`): the fields to
/// change; absent ones keep their value. The currency cannot change: every stored amount
/// is in its minor units.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    /// New display name, 1–200 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// New IANA time zone.
    #[serde(default, alias = "time_zone")]
    pub timezone: Option<String>,
    /// New ISO-3166 alpha-2 country.
    #[serde(default)]
    pub country: Option<String>,
}

/// A suspension as committed: the tenant and the ids of the keys whose sockets must close.
#[derive(Debug, Clone)]
pub struct Suspension {
    /// The tenant, with `suspended_at` set.
    pub tenant: Tenant,
    /// Every unrevoked key of the tenant.
    pub key_ids: Vec<String>,
}

/// What a deletion removed: rows per table, tables with none left out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deletion {
    /// The deleted tenant's slug, free for a new tenant now.
    pub slug: String,
    /// The deleted tenant's id.
    pub id: String,
    /// Rows removed per table.
    pub deleted: BTreeMap<&'static str, u64>,
}

/// Tables whose rows belong to the tenant through one of its integrations, emptied first.
const BY_INTEGRATION: [&str; 3] = ["webhook_inbox", "webhook_events_seen", "sync_runs"];

/// Tables with a `tenant_id` column, children before the rows they reference (foreign keys
/// are enforced), so the tenant row can go last.
const BY_TENANT: [&str; 23] = [
    // A host's record of a socket it still holds; the socket itself was closed (4003) at
    // suspension, and a row left by a host that died meanwhile must not outlive the tenant.
    "cluster_terminals",
    "dead_letters",
    "plugin_state",
    "pos_transactions",
    "customer_links",
    "tier_unlocks",
    "loyalty_transactions",
    "gift_card_transactions",
    "gift_cards",
    "customers",
    "orders",
    "menu_syncs",
    "menus",
    "store_statuses",
    "daily_reports",
    "idempotency_keys",
    "events",
    "spend_rules",
    "tier_ladders",
    "performances",
    "hook_bindings",
    "api_keys",
    "integrations",
];

impl Tenants {
    /// Changes the tenant's name, time zone and/or country. Everything is validated before
    /// anything is written, so bad input changes nothing.
    pub async fn update(
        store: &Store,
        slug: &str,
        update: TenantUpdate,
    ) -> Result<Tenant, TenancyError> {
        if update.name.is_none() && update.timezone.is_none() && update.country.is_none() {
            return Err(TenancyError::NothingToUpdate);
        }
        let name = update.name.as_deref().map(valid_name).transpose()?;
        if let Some(timezone) = &update.timezone {
            check_timezone(timezone)?;
        }
        let country = update.country.as_deref().map(valid_country).transpose()?;
        let found = sqlx::query(
            "UPDATE tenants SET name = COALESCE($1, name), timezone = COALESCE($2, timezone),
                 country = COALESCE($3, country)
             WHERE slug = $4",
        )
        .bind(name)
        .bind(update.timezone.as_deref())
        .bind(country.as_deref())
        .bind(slug)
        .execute(store.writer())
        .await?
        .rows_affected();
        if found == 0 {
            return Err(TenancyError::NotFound(slug.to_owned()));
        }
        Tenants::get(store, slug).await
    }

    /// Suspends the tenant: its keys are refused and its sockets closed on every host, its
    /// background work waits, its data stays. Suspending a suspended tenant changes nothing
    /// (it keeps its first `suspended_at`) but announces its keys again.
    pub async fn suspend(store: &Store, slug: &str) -> Result<Suspension, TenancyError> {
        let mut tx = store.begin().await?;
        let tenant_id: Option<String> = sqlx::query_scalar(
            "UPDATE tenants SET suspended_at = COALESCE(suspended_at, $1) WHERE slug = $2
             RETURNING id",
        )
        .bind(now_micros())
        .bind(slug)
        .fetch_optional(&mut tx)
        .await?;
        let Some(tenant_id) = tenant_id else {
            return Err(TenancyError::NotFound(slug.to_owned()));
        };
        let key_ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
        )
        .bind(&tenant_id)
        .fetch_all(&mut tx)
        .await?;
        if store.backend() == Backend::Postgres {
            // Delivered when (and only if) the suspension commits; each host closes the
            // keys' sockets as it would a revoked key's.
            for key_id in &key_ids {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(crate::events::REVOCATION_CHANNEL)
                    .bind(key_id)
                    .execute(&mut tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Suspension {
            tenant: Tenants::get(store, slug).await?,
            key_ids,
        })
    }

    /// Resumes a suspended tenant: its keys work again and its background work catches up
    /// (webhooks stored meanwhile, syncs due, hook events written before the suspension).
    /// Resuming an active tenant changes nothing.
    pub async fn resume(store: &Store, slug: &str) -> Result<Tenant, TenancyError> {
        let found = sqlx::query("UPDATE tenants SET suspended_at = NULL WHERE slug = $1")
            .bind(slug)
            .execute(store.writer())
            .await?
            .rows_affected();
        if found == 0 {
            return Err(TenancyError::NotFound(slug.to_owned()));
        }
        Tenants::get(store, slug).await
    }

    /// Deletes a suspended tenant and every row it owns, in one transaction: its keys,
    /// events, customers, ledgers, orders, reports, integrations (sealed credentials
    /// included) and everything reached through them. Refused while the tenant is active,
    /// and while a sync or hook delivery of it still holds its lease. The slug is free
    /// afterwards.
    pub async fn delete(store: &Store, slug: &str) -> Result<Deletion, TenancyError> {
        let mut tx = store.begin().await?;
        // A write to the row first: it locks the row on PostgreSQL (and takes the writer on
        // SQLite), so no resume can commit between this check and the deletion.
        let locked = sqlx::query(
            "UPDATE tenants SET suspended_at = suspended_at
             WHERE slug = $1 AND suspended_at IS NOT NULL",
        )
        .bind(slug)
        .execute(&mut tx)
        .await?
        .rows_affected();
        let tenant_id: Option<String> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
                .bind(slug)
                .fetch_optional(&mut tx)
                .await?;
        let Some(tenant_id) = tenant_id else {
            return Err(TenancyError::NotFound(slug.to_owned()));
        };
        if locked == 0 {
            return Err(TenancyError::NotSuspended(slug.to_owned()));
        }
        // Work that started before the suspension would write rows after they are gone
        // (refused by foreign keys at best): wait for it to finish its pass.
        let running: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM integrations WHERE tenant_id = $1 AND lease_until > $2)
                  + (SELECT COUNT(*) FROM hook_bindings WHERE tenant_id = $1 AND lease_until > $2)",
        )
        .bind(&tenant_id)
        .bind(now_micros())
        .fetch_one(&mut tx)
        .await?;
        if running > 0 {
            return Err(TenancyError::Busy(slug.to_owned()));
        }
        let mut deleted = BTreeMap::new();
        for table in BY_INTEGRATION {
            let sql = format!(
                "DELETE FROM {table}
                 WHERE integration_id IN (SELECT id FROM integrations WHERE tenant_id = $1)"
            );
            let n = sqlx::query(&sql)
                .bind(&tenant_id)
                .execute(&mut tx)
                .await?
                .rows_affected();
            deleted.insert(table, n);
        }
        for table in BY_TENANT {
            let sql = format!("DELETE FROM {table} WHERE tenant_id = $1");
            let n = sqlx::query(&sql)
                .bind(&tenant_id)
                .execute(&mut tx)
                .await?
                .rows_affected();
            deleted.insert(table, n);
        }
        let n = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(&tenant_id)
            .execute(&mut tx)
            .await?
            .rows_affected();
        deleted.insert("tenants", n);
        tx.commit().await?;
        deleted.retain(|_, n| *n > 0);
        Ok(Deletion {
            slug: slug.to_owned(),
            id: tenant_id,
            deleted,
        })
    }
}

/// `PATCH /admin/tenants/{slug}`.
#[utoipa::path(patch, path = "/tenants/{slug}", tag = "tenants", request_body = TenantUpdate,
    summary = "Changes a tenant's name, time zone or country", responses(
    (status = 200, description = "The updated tenant.", body = Tenant),
    (status = 404, description = "`tenant_not_found`."),
    (status = 422, description = "`invalid_tenant`: nothing to update, or a bad value; `invalid_request`."),
))]
pub(super) async fn update_tenant(
    State(keys): State<KeyCache>,
    State(store): State<Store>,
    _op: Operator,
    Path(slug): Path<String>,
    body: ApiJson<TenantUpdate>,
) -> ApiResult<Json<Tenant>> {
    let tenant = Tenants::update(&store, &slug, body.value).await?;
    // Cached keys carry the tenant's time zone and country.
    keys.invalidate();
    tracing::info!(tenant = %slug, "tenant updated");
    Ok(Json(tenant))
}

/// `POST /admin/tenants/{slug}/suspend`.
#[utoipa::path(post, path = "/tenants/{slug}/suspend", tag = "tenants",
    summary = "Suspends a tenant: its keys are refused and its sockets closed (4003)", responses(
    (status = 200, description = "The suspended tenant.", body = Tenant),
    (status = 404, description = "`tenant_not_found`."),
))]
pub(super) async fn suspend_tenant(
    State(keys): State<KeyCache>,
    State(store): State<Store>,
    State(terminals): State<Terminals>,
    _op: Operator,
    Path(slug): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let suspension = Tenants::suspend(&store, &slug).await;
    // After the suspension committed (or failed: clearing is harmless), so no request of
    // this host accepts a key of the tenant from the cache any more.
    keys.invalidate();
    let suspension = suspension?;
    let closed: usize = suspension
        .key_ids
        .iter()
        .map(|key_id| terminals.close_key(key_id))
        .sum();
    tracing::info!(tenant = %slug, closed, "tenant suspended");
    Ok(Json(suspension.tenant))
}

/// `POST /admin/tenants/{slug}/resume`.
#[utoipa::path(post, path = "/tenants/{slug}/resume", tag = "tenants",
    summary = "Resumes a suspended tenant", responses(
    (status = 200, description = "The resumed tenant.", body = Tenant),
    (status = 404, description = "`tenant_not_found`."),
))]
pub(super) async fn resume_tenant(
    State(hooks_wakeup): State<HooksWakeup>,
    State(inbox_wakeup): State<InboxWakeup>,
    State(keys): State<KeyCache>,
    State(store): State<Store>,
    State(sync_wakeup): State<SyncWakeup>,
    _op: Operator,
    Path(slug): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let tenant = Tenants::resume(&store, &slug).await;
    keys.invalidate();
    let tenant = tenant?;
    // Work that waited for the tenant: let this host's workers look at once (others find
    // it at their next poll).
    sync_wakeup.wake();
    inbox_wakeup.wake();
    hooks_wakeup.wake();
    tracing::info!(tenant = %slug, "tenant resumed");
    Ok(Json(tenant))
}

/// `DELETE /admin/tenants/{slug}`.
#[utoipa::path(delete, path = "/tenants/{slug}", tag = "tenants",
    summary = "Deletes a suspended tenant and everything it owns", responses(
    (status = 200, description = "What was removed.", body = Deletion),
    (status = 404, description = "`tenant_not_found`."),
    (status = 409, description = "`tenant_active`: suspend it first; `tenant_busy`: a sync or hook delivery still runs."),
))]
pub(super) async fn delete_tenant(
    State(keys): State<KeyCache>,
    State(store): State<Store>,
    _op: Operator,
    Path(slug): Path<String>,
) -> ApiResult<(StatusCode, Json<Deletion>)> {
    let deletion = Tenants::delete(&store, &slug).await?;
    keys.invalidate();
    tracing::info!(tenant = %slug, id = %deletion.id, "tenant deleted");
    Ok((StatusCode::OK, Json(deletion)))
}
