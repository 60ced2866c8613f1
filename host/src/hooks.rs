//! Hook bindings: a tenant's manager binds an installed hook plugin to the tenant, choosing
//! the event types it receives and its configuration; the dispatcher (`hooks::dispatch`) then
//! delivers those events from the durable log, in order, at least once, and applies the
//! actions the hook returns.
//!
//! A binding is the unit of delivery and of failure: it has its own cursor (the last event
//! seq it is done with, in the database, so it survives restarts), its own retry backoff and
//! its own quarantine. One tenant's bad event quarantines that tenant's binding only, never
//! the plugin for every tenant, and never slows a write: writes only append to the log.

mod actions;
mod dispatch;
mod sealed_config;

pub(crate) use sealed_config::CONFIG_FIELD;
pub use sealed_config::{seal_plaintext as seal_plaintext_configs, ConfigSealError};

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::auth::{ManagerCaller, TenantScope};
use crate::error::{ApiError, ApiResult};
use crate::events::{self, CUSTOM_PREFIX};
use crate::extract::ApiJson;
use crate::paging::Page;
use crate::plugins::contract::PluginKind;
use crate::plugins::Plugins;
use crate::state::AppState;
use crate::store::{new_id, now_micros, rfc3339, Store, StoreError};
use crate::vault::{Vault, VaultError};

pub use actions::{MAX_ACTIONS, MAX_EMIT_BYTES};
pub use dispatch::{retry_dead_event, spawn_dispatcher};

/// Hook delivery tuning (`serve` flags `--hook-*`; see [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HookOptions {
    /// Hook bindings delivered at once across all tenants. Each running binding holds one
    /// slot while it calls its hook. Default 16: that many slow hooks cannot take more
    /// than 16 slots (and the plugin runtime's own call permits) away from the rest.
    /// At least 1.
    #[arg(
        long = "hook-concurrency",
        env = "POSBRIDGE_HOOK_CONCURRENCY",
        default_value = "16",
        value_parser = crate::options::at_least(1usize)
    )]
    pub concurrency: usize,
    /// Attempts at one hook event before it is judged: a dead letter if a later event then
    /// goes through (a poison event), else the binding is quarantined (a binding-wide
    /// failure; see `hooks::dispatch`). Default 8: with the default backoff the attempts
    /// span about four minutes, long enough to ride out a webhook receiver's restart,
    /// short enough that a broken hook is noticed. At least 1.
    #[arg(
        long = "hook-quarantine-after",
        env = "POSBRIDGE_HOOK_QUARANTINE_AFTER",
        default_value = "8",
        value_parser = crate::options::at_least(1u32)
    )]
    pub quarantine_after: u32,
    /// Milliseconds before a failed hook delivery's first retry; it doubles with every
    /// further failure. Default 1 s: a receiver that blipped is usually back. At least 1.
    #[arg(
        long = "hook-retry-base-ms",
        env = "POSBRIDGE_HOOK_RETRY_BASE_MS",
        default_value = "1000",
        value_parser = crate::options::millis(1)
    )]
    pub retry_base: Duration,
    /// Longest wait between hook delivery retries, milliseconds. Default 5 minutes: a
    /// receiver that comes back is served again within minutes. At least 1.
    #[arg(
        long = "hook-retry-max-ms",
        env = "POSBRIDGE_HOOK_RETRY_MAX_MS",
        default_value = "300000",
        value_parser = crate::options::millis(1)
    )]
    pub retry_max: Duration,
    /// Milliseconds between hook dispatcher polls when nothing wakes it: events another
    /// host committed when LISTEN/NOTIFY was down, and retries that fell due (local
    /// commits and other hosts' notifications wake it at once). Default 1 s: late work
    /// waits at most a second for a cheap query. At least 10.
    #[arg(
        long = "hook-poll-interval-ms",
        env = "POSBRIDGE_HOOK_POLL_INTERVAL_MS",
        default_value = "1000",
        value_parser = crate::options::millis(10)
    )]
    pub poll_interval: Duration,
}

impl Default for HookOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// Bindings a tenant may have: enough for every hook a venue could want, few enough that a
/// list needs no paging.
pub const MAX_BINDINGS_PER_TENANT: i64 = 50;
/// Largest binding configuration, serialized.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// Where a binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingStatus {
    /// Receiving events.
    Active,
    /// Stopped after repeated failures; `POST …/resume` retries from the same cursor.
    Quarantined,
    /// Turned off by a manager (`PATCH {"enabled": false}`); events keep accumulating.
    Disabled,
}

impl BindingStatus {
    fn as_str(self) -> &'static str {
        match self {
            BindingStatus::Active => "active",
            BindingStatus::Quarantined => "quarantined",
            BindingStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(BindingStatus::Active),
            "quarantined" => Some(BindingStatus::Quarantined),
            "disabled" => Some(BindingStatus::Disabled),
            _ => None,
        }
    }
}

/// A binding as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Binding {
    /// Our id.
    pub id: String,
    /// The hook plugin's id.
    pub plugin: String,
    /// Configuration handed to the hook with every event.
    pub config: serde_json::Value,
    /// Event types delivered.
    pub events: Vec<String>,
    /// Delivery state.
    pub status: BindingStatus,
    /// Last event seq the binding is done with; delivery continues after it.
    pub cursor: i64,
    /// Events delivered so far.
    pub delivered: i64,
    /// Consecutive failed attempts at the next event.
    pub failures: i64,
    /// Why the last attempt failed (kept until the next success).
    pub last_error: Option<String>,
    /// When an event was last delivered.
    pub last_delivered_at: Option<String>,
    /// When the next retry is due, while a failed event waits for one.
    pub next_attempt_at: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last changed by a manager or by delivery.
    pub updated_at: String,
}

/// Body of `POST /api/{tenant}/hooks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBinding {
    /// Hook plugin id.
    pub plugin: String,
    /// A JSON object (absent or null: `{}`).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Event types; absent: every type the hook declares.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

/// Body of `PATCH /api/{tenant}/hooks/{id}`; absent fields are unchanged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingChange {
    /// New configuration (a JSON object; null means `{}`).
    #[serde(default, deserialize_with = "present")]
    pub config: Option<serde_json::Value>,
    /// New event types (a subset of the hook's declared ones).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// `false` disables; `true` re-enables (and lifts a quarantine) from the same cursor.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `"config": null` is a value (reset to `{}`), not an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Why a binding operation was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No installed plugin with that id (or it has no active version).
    #[error("no hook plugin {0:?} is installed")]
    UnknownPlugin(String),
    /// The plugin is a provider.
    #[error("plugin {0:?} is a provider, not a hook")]
    NotAHook(String),
    /// Event types outside what the hook declares.
    #[error("{0}")]
    InvalidEvents(String),
    /// Configuration that is not a JSON object or too large.
    #[error("{0}")]
    InvalidConfig(String),
    /// No such binding in this tenant.
    #[error("no hook binding {0:?}")]
    NotFound(String),
    /// Resume of a disabled binding.
    #[error("hook binding {0:?} is disabled; enable it with PATCH {{\"enabled\": true}}")]
    Disabled(String),
    /// The tenant has [`MAX_BINDINGS_PER_TENANT`] bindings.
    #[error("a tenant may have at most {MAX_BINDINGS_PER_TENANT} hook bindings")]
    TooMany,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A configuration could not be sealed or opened.
    #[error(transparent)]
    Config(ConfigSealError),
}

impl From<ConfigSealError> for HookError {
    fn from(err: ConfigSealError) -> Self {
        match err {
            ConfigSealError::Store(e) => HookError::Store(e),
            other => HookError::Config(other),
        }
    }
}

impl From<VaultError> for HookError {
    fn from(err: VaultError) -> Self {
        HookError::Config(err.into())
    }
}

impl From<sqlx::Error> for HookError {
    fn from(err: sqlx::Error) -> Self {
        HookError::Store(err.into())
    }
}

impl From<HookError> for ApiError {
    fn from(err: HookError) -> Self {
        let message = err.to_string();
        match err {
            HookError::UnknownPlugin(_) => ApiError::unprocessable("unknown_plugin", message),
            HookError::NotAHook(_) => ApiError::unprocessable("not_a_hook", message),
            HookError::InvalidEvents(_) => ApiError::unprocessable("invalid_events", message),
            HookError::InvalidConfig(_) => ApiError::unprocessable("invalid_config", message),
            HookError::NotFound(_) => ApiError::not_found("hook_not_found", message),
            HookError::Disabled(_) => ApiError::conflict("hook_disabled", message),
            HookError::TooMany => ApiError::conflict("too_many_hooks", message),
            HookError::Store(e) => e.into(),
            HookError::Config(e) => {
                tracing::error!(error = %e, "hook configuration");
                ApiError::internal()
            }
        }
    }
}

/// The event types `plugin` declares (custom events excluded: hooks never receive them).
fn declared_events(plugins: &Plugins, plugin: &str) -> Result<Vec<String>, HookError> {
    let manifest = plugins
        .manifest(plugin)
        .ok_or_else(|| HookError::UnknownPlugin(plugin.to_owned()))?;
    if manifest.kind != PluginKind::Hook {
        return Err(HookError::NotAHook(plugin.to_owned()));
    }
    Ok(manifest
        .events
        .into_iter()
        .filter(|e| !e.starts_with(CUSTOM_PREFIX))
        .collect())
}

/// `requested` checked against `declared`, deduplicated in the order given.
fn chosen_events(
    plugin: &str,
    declared: &[String],
    requested: Option<Vec<String>>,
) -> Result<Vec<String>, HookError> {
    let mut chosen: Vec<String> = Vec::new();
    for event in requested.unwrap_or_else(|| declared.to_vec()) {
        if !declared.contains(&event) {
            return Err(HookError::InvalidEvents(format!(
                "hook {plugin:?} does not handle {event:?}; it handles {declared:?}"
            )));
        }
        if !chosen.contains(&event) {
            chosen.push(event);
        }
    }
    if chosen.is_empty() {
        return Err(HookError::InvalidEvents(
            "a binding needs at least one event type".into(),
        ));
    }
    Ok(chosen)
}

/// The configuration as stored: a JSON object of bounded size.
fn config_text(config: Option<serde_json::Value>) -> Result<String, HookError> {
    let config = match config {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => {
            return Err(HookError::InvalidConfig(
                "config must be a JSON object".into(),
            ))
        }
    };
    let text = config.to_string();
    if text.len() > MAX_CONFIG_BYTES {
        return Err(HookError::InvalidConfig(format!(
            "config must be at most {MAX_CONFIG_BYTES} bytes of JSON"
        )));
    }
    Ok(text)
}

const BINDING_COLUMNS: &str = "id, plugin_id, config, config_key_id, config_sealed, events, status, cursor_seq, delivered, failures, last_error, last_delivered_at, next_attempt_at, created_at, updated_at";

fn binding_from_row(
    vault: &Vault,
    scope: &TenantScope,
    row: &sqlx::any::AnyRow,
) -> Result<Binding, HookError> {
    let corrupt =
        |what: &str| StoreError::Sqlx(sqlx::Error::Decode(format!("corrupt hook {what}").into()));
    let config = sealed_config::open(vault, scope.tenant_id(), row)?;
    let events: String = row.try_get("events")?;
    let status: String = row.try_get("status")?;
    let status = BindingStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
    let failures: i64 = row.try_get("failures")?;
    let next_attempt_at: i64 = row.try_get("next_attempt_at")?;
    let last_delivered_at: Option<i64> = row.try_get("last_delivered_at")?;
    Ok(Binding {
        id: row.try_get("id")?,
        plugin: row.try_get("plugin_id")?,
        config: serde_json::from_str(&config).map_err(|_| corrupt("config"))?,
        events: serde_json::from_str(&events).map_err(|_| corrupt("events"))?,
        status,
        cursor: row.try_get("cursor_seq")?,
        delivered: row.try_get("delivered")?,
        failures,
        last_error: row.try_get("last_error")?,
        last_delivered_at: last_delivered_at.map(rfc3339),
        next_attempt_at: (status == BindingStatus::Active && failures > 0)
            .then(|| rfc3339(next_attempt_at)),
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// The tenant's hook bindings.
pub struct Hooks;

impl Hooks {
    /// Binds `new.plugin` to the tenant; it receives the events appended from now on.
    pub async fn create(
        store: &Store,
        vault: &Vault,
        plugins: &Plugins,
        scope: &TenantScope,
        new: NewBinding,
    ) -> Result<Binding, HookError> {
        let declared = declared_events(plugins, &new.plugin)?;
        let events = chosen_events(&new.plugin, &declared, new.events)?;
        let config = config_text(new.config)?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM hook_bindings WHERE tenant_id = $1")
                .bind(scope.tenant_id())
                .fetch_one(store.reader())
                .await?;
        if count >= MAX_BINDINGS_PER_TENANT {
            return Err(HookError::TooMany);
        }
        let id = new_id();
        let sealed = sealed_config::seal(vault, scope.tenant_id(), &id, &config)?;
        let now = now_micros();
        // Committed events up to here happened before the binding existed.
        let cursor = events::last_seq(store, scope.tenant_id()).await?;
        sqlx::query(
            "INSERT INTO hook_bindings (id, tenant_id, plugin_id, config, config_key_id, config_sealed, events, status,
               cursor_seq, created_at, updated_at)
             VALUES ($1, $2, $3, '', $4, $5, $6, 'active', $7, $8, $8)",
        )
        .bind(&id)
        .bind(scope.tenant_id())
        .bind(&new.plugin)
        .bind(&sealed.key_id)
        .bind(&sealed.bytes)
        .bind(serde_json::Value::from(events).to_string())
        .bind(cursor)
        .bind(now)
        .execute(store.writer())
        .await?;
        tracing::info!(tenant = %scope.slug(), binding = %id, plugin = %new.plugin, cursor, "hook bound");
        Self::get(store, vault, scope, &id).await
    }

    /// Every binding of the tenant, oldest first.
    pub async fn list(
        store: &Store,
        vault: &Vault,
        scope: &TenantScope,
    ) -> Result<Vec<Binding>, HookError> {
        let rows = sqlx::query(&format!(
            "SELECT {BINDING_COLUMNS} FROM hook_bindings WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2"
        ))
        .bind(scope.tenant_id())
        .bind(MAX_BINDINGS_PER_TENANT)
        .fetch_all(store.reader())
        .await?;
        rows.iter()
            .map(|row| binding_from_row(vault, scope, row))
            .collect()
    }

    /// One binding of the tenant.
    pub async fn get(
        store: &Store,
        vault: &Vault,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Binding, HookError> {
        let row = sqlx::query(&format!(
            "SELECT {BINDING_COLUMNS} FROM hook_bindings WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(store.reader())
        .await?
        .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        binding_from_row(vault, scope, &row)
    }

    /// Changes configuration, event types or enablement; the cursor never moves here.
    pub async fn update(
        store: &Store,
        vault: &Vault,
        plugins: &Plugins,
        scope: &TenantScope,
        id: &str,
        change: BindingChange,
    ) -> Result<Binding, HookError> {
        let current = Self::get(store, vault, scope, id).await?;
        let sealed = match change.config {
            Some(c) => Some(sealed_config::seal(
                vault,
                scope.tenant_id(),
                id,
                &config_text(Some(c))?,
            )?),
            None => None,
        };
        let events = match change.events {
            Some(requested) => {
                let declared = declared_events(plugins, &current.plugin)?;
                Some(chosen_events(&current.plugin, &declared, Some(requested))?)
            }
            None => None,
        };
        let status = match change.enabled {
            Some(true) => Some(BindingStatus::Active),
            Some(false) => Some(BindingStatus::Disabled),
            None => None,
        };
        // Enabling starts retries afresh; anything else keeps the failure count.
        let reset = status == Some(BindingStatus::Active);
        // A new configuration replaces the sealed one, and empties a plaintext one.
        let found = sqlx::query(
            "UPDATE hook_bindings SET config = CASE WHEN $1 IS NULL THEN config ELSE '' END,
               config_key_id = COALESCE($1, config_key_id), config_sealed = COALESCE($2, config_sealed),
               events = COALESCE($3, events), status = COALESCE($4, status),
               failures = CASE WHEN $5 = 1 THEN 0 ELSE failures END,
               next_attempt_at = CASE WHEN $5 = 1 THEN 0 ELSE next_attempt_at END,
               updated_at = $6
             WHERE tenant_id = $7 AND id = $8",
        )
        .bind(sealed.as_ref().map(|s| s.key_id.clone()))
        .bind(sealed.map(|s| s.bytes))
        .bind(events.map(|e| serde_json::Value::from(e).to_string()))
        .bind(status.map(BindingStatus::as_str))
        .bind(i64::from(reset))
        .bind(now_micros())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(store.writer())
        .await?
        .rows_affected();
        if found == 0 {
            return Err(HookError::NotFound(id.to_owned()));
        }
        Self::get(store, vault, scope, id).await
    }

    /// Lifts a quarantine: the held event is retried at once, from the same cursor.
    pub async fn resume(
        store: &Store,
        vault: &Vault,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Binding, HookError> {
        let resumed = sqlx::query(
            "UPDATE hook_bindings SET status = 'active', failures = 0, next_attempt_at = 0, updated_at = $1
             WHERE tenant_id = $2 AND id = $3 AND status IN ('active', 'quarantined')",
        )
        .bind(now_micros())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(store.writer())
        .await?
        .rows_affected();
        if resumed == 0 {
            // Either unknown (404 from get) or disabled.
            Self::get(store, vault, scope, id).await?;
            return Err(HookError::Disabled(id.to_owned()));
        }
        Self::get(store, vault, scope, id).await
    }

    /// Removes a binding; a delivery in flight for it commits nothing.
    pub async fn delete(store: &Store, scope: &TenantScope, id: &str) -> Result<(), HookError> {
        let deleted = sqlx::query("DELETE FROM hook_bindings WHERE tenant_id = $1 AND id = $2")
            .bind(scope.tenant_id())
            .bind(id)
            .execute(store.writer())
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(HookError::NotFound(id.to_owned()));
        }
        Ok(())
    }
}

/// `/api/{tenant}/hooks…` routes (manager key).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hooks", get(list).post(create))
        .route("/hooks/{id}", get(show).patch(update).delete(remove))
        .route("/hooks/{id}/resume", post(resume))
}

async fn list(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
) -> ApiResult<Json<Page<Binding>>> {
    Ok(Json(Page {
        items: Hooks::list(&app.store, &app.vault, &caller.scope).await?,
        next_cursor: None,
    }))
}

async fn create(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    body: ApiJson<NewBinding>,
) -> ApiResult<(StatusCode, Json<Binding>)> {
    let binding = Hooks::create(
        &app.store,
        &app.vault,
        &app.plugins,
        &caller.scope,
        body.value,
    )
    .await?;
    // The dispatcher skips commits while no binding is active: tell it there is one now.
    app.hooks_wakeup.notify_one();
    Ok((StatusCode::CREATED, Json(binding)))
}

async fn show(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Binding>> {
    Ok(Json(
        Hooks::get(&app.store, &app.vault, &caller.scope, &id).await?,
    ))
}

async fn update(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
    body: ApiJson<BindingChange>,
) -> ApiResult<Json<Binding>> {
    let binding = Hooks::update(
        &app.store,
        &app.vault,
        &app.plugins,
        &caller.scope,
        &id,
        body.value,
    )
    .await?;
    app.hooks_wakeup.notify_one();
    Ok(Json(binding))
}

async fn resume(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Binding>> {
    let binding = Hooks::resume(&app.store, &app.vault, &caller.scope, &id).await?;
    app.hooks_wakeup.notify_one();
    Ok(Json(binding))
}

async fn remove(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    Hooks::delete(&app.store, &caller.scope, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn events_default_to_the_declared_ones_and_must_be_a_subset() {
        let declared = s(&["new_order", "tier_unlocked"]);
        assert_eq!(chosen_events("h", &declared, None).unwrap(), declared);
        assert_eq!(
            chosen_events("h", &declared, Some(s(&["tier_unlocked", "tier_unlocked"]))).unwrap(),
            s(&["tier_unlocked"])
        );
        assert!(matches!(
            chosen_events("h", &declared, Some(s(&["gift_card_redeemed"]))),
            Err(HookError::InvalidEvents(_))
        ));
        assert!(matches!(
            chosen_events("h", &declared, Some(vec![])),
            Err(HookError::InvalidEvents(_))
        ));
    }

    #[test]
    fn config_is_an_object_of_bounded_size() {
        assert_eq!(config_text(None).unwrap(), "{}");
        assert_eq!(config_text(Some(serde_json::Value::Null)).unwrap(), "{}");
        assert_eq!(
            config_text(Some(serde_json::json!({"a": 1}))).unwrap(),
            r#"{"a":1}"#
        );
        assert!(config_text(Some(serde_json::json!([1]))).is_err());
        assert!(config_text(Some(serde_json::json!("x"))).is_err());
        let big = "x".repeat(MAX_CONFIG_BYTES);
        assert!(config_text(Some(serde_json::json!({ "a": big }))).is_err());
    }
}
