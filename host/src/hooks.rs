//! Hook bindings: a tenant's manager binds an installed hook plugin to the tenant, choosing
//! the event types it receives and its configuration; the dispatcher (`hooks::dispatch`) then
//! delivers those events from the durable log, in order, at least once, and applies the
//! actions the hook returns.
//!
//! A binding is the unit of delivery and of failure: it has its own cursor (the last event
//! seq it is done with, in the database, so it survives restarts), its own retry backoff and
//! its own quarantine. One tenant's bad event quarantines that tenant's binding only, never
//! the plugin for every tenant, and never slows a write: writes only append to the log.
//!
//! This file holds the binding's types, errors, knobs and routes; the `hook_bindings` rows
//! are read and written in `hooks/bindings.rs`.

mod actions;
mod bindings;
mod dispatch;
mod sealed_config;

pub(crate) use bindings::Hooks;

pub(crate) use sealed_config::CONFIG_FIELD;
pub(crate) use sealed_config::{seal_plaintext as seal_plaintext_configs, ConfigSealError};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, ManagerCaller};
use crate::error::{ApiError, ApiResult};
use crate::events::{EventHub, Writes};
use crate::extract::ApiJson;
use crate::paging::Page;
use crate::plugins::Plugins;
use crate::store::{Store, StoreError};
use crate::vault::{Vault, VaultError};

pub(crate) use dispatch::{retry_dead_event, spawn_dispatcher, HooksWakeup};

/// The handles hook routes and the dispatcher use; the composition root builds it from its
/// own state (`FromRef`), so this module does not name that state.
#[derive(Debug, Clone)]
pub(crate) struct HooksState {
    /// The database.
    pub store: Store,
    /// Committed events: the dispatcher waits for new ones and leases bindings through it.
    pub hub: EventHub,
    /// The group commit the actions hooks return are written through.
    pub writes: Writes,
    /// The plugin runtime that runs hooks.
    pub plugins: Plugins,
    /// Master keys sealing bindings' configurations.
    pub vault: Arc<Vault>,
    /// Wakes the dispatcher.
    pub hooks_wakeup: HooksWakeup,
    /// Delivery tuning.
    pub options: HookOptions,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Delivery workers, which shutdown waits for.
    pub tasks: TaskTracker,
}

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
pub(crate) const MAX_BINDINGS_PER_TENANT: i64 = 50;
/// Largest binding configuration, serialized.
pub(crate) const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// Where a binding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BindingStatus {
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Binding {
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBinding {
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
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindingChange {
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
    /// Configuration that is not a JSON object, too large, or refused by the hook's
    /// `validate-config` (the message names each field).
    #[error("{0}")]
    InvalidConfig(String),
    /// The hook's `validate-config` could not give a verdict (it trapped, timed out or is
    /// unavailable); nothing was stored.
    #[error("the hook could not check the configuration: {0}")]
    ConfigCheckFailed(String),
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
            HookError::ConfigCheckFailed(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "hook_config_check_failed", message)
            }
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

/// `/api/{tenant}/hooks…` routes (manager key).
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    HooksState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(resume))
}

/// The tenant's hook bindings (one page: a tenant has at most a few).
#[utoipa::path(get, path = "/hooks", tag = "hooks", responses(
    (status = 200, description = "The bindings; `next_cursor` is always null.", body = Page<Binding>),
))]
async fn list(
    State(app): State<HooksState>,
    ManagerCaller(caller): ManagerCaller,
) -> ApiResult<Json<Page<Binding>>> {
    Ok(Json(Page {
        items: Hooks::list(&app.store, &app.vault, &caller.scope).await?,
        next_cursor: None,
    }))
}

/// Binds a hook plugin to the tenant's events, from the next event on.
#[utoipa::path(post, path = "/hooks", tag = "hooks", request_body = NewBinding, responses(
    (status = 201, description = "Bound.", body = Binding),
    (status = 409, description = "`too_many_hooks`."),
    (status = 422, description = "`unknown_plugin`, `not_a_hook`, `invalid_events`, `invalid_config`, `invalid_request`."),
))]
async fn create(
    State(app): State<HooksState>,
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
    app.hooks_wakeup.wake();
    Ok((StatusCode::CREATED, Json(binding)))
}

/// One binding: config, events, status, cursor, last error.
#[utoipa::path(get, path = "/hooks/{id}", tag = "hooks", responses(
    (status = 200, description = "The binding.", body = Binding),
    (status = 404, description = "`hook_not_found`."),
))]
async fn show(
    State(app): State<HooksState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Binding>> {
    Ok(Json(
        Hooks::get(&app.store, &app.vault, &caller.scope, &id).await?,
    ))
}

/// Changes a binding's config, events, or enables/disables it.
#[utoipa::path(patch, path = "/hooks/{id}", tag = "hooks", request_body = BindingChange, responses(
    (status = 200, description = "The binding.", body = Binding),
    (status = 404, description = "`hook_not_found`."),
    (status = 422, description = "`invalid_events`, `invalid_config`, `invalid_request`."),
))]
async fn update(
    State(app): State<HooksState>,
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
    app.hooks_wakeup.wake();
    Ok(Json(binding))
}

/// Resumes a quarantined or failing binding from its cursor.
#[utoipa::path(post, path = "/hooks/{id}/resume", tag = "hooks", responses(
    (status = 200, description = "The binding.", body = Binding),
    (status = 404, description = "`hook_not_found`."),
    (status = 409, description = "`hook_disabled`: enable it instead."),
))]
async fn resume(
    State(app): State<HooksState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Binding>> {
    let binding = Hooks::resume(&app.store, &app.vault, &caller.scope, &id).await?;
    app.hooks_wakeup.wake();
    Ok(Json(binding))
}

/// Deletes a binding.
#[utoipa::path(delete, path = "/hooks/{id}", tag = "hooks", responses(
    (status = 204, description = "Deleted."),
    (status = 404, description = "`hook_not_found`."),
))]
async fn remove(
    State(app): State<HooksState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    Hooks::delete(&app.store, &caller.scope, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
