//! The composition root's state: every shared handle of the process, cheap to clone.
//!
//! Only the composition root (`api`, `server`) names [`AppState`]. Handlers, extractors and
//! workers take what they use: a single handle through the derived `FromRef`
//! (`State<Store>`), or their feature's own state ([`AuthState`], [`HooksState`],
//! [`ProvidersState`], [`TerminalsState`]) built here by the `FromRef` impls below, so the
//! feature modules never name this one and `host/tests/module_cycles.rs` finds no cycle.

use std::sync::Arc;

use axum::extract::FromRef;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthState, KeyCache, OperatorCredential};
use crate::config::ServeConfig;
use crate::events::{EventHub, Writes};
use crate::hooks::{HooksState, HooksWakeup};
use crate::plugins::Plugins;
use crate::providers::{InboxWakeup, ProvidersState, SyncWakeup};
use crate::store::Store;
use crate::terminals::{Terminals, TerminalsState};
use crate::vault::Vault;

/// Handles to the host's shared services. `FromRef` lets a handler or extractor ask for
/// just the handle it uses (`State<Store>`), so it need not name `AppState`; every field
/// therefore has a type of its own. Feature states copy their options out of `config`
/// here, so features read no `ServeConfig`.
#[derive(Clone, Debug, FromRef)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Live fan-out of committed events.
    pub hub: EventHub,
    /// The group commit every logged write runs through.
    pub writes: Writes,
    /// The plugin runtime.
    pub plugins: Plugins,
    /// Open terminal sockets.
    pub terminals: Terminals,
    /// Recently validated API keys (see [`crate::auth::KeyCache`]).
    pub keys: KeyCache,
    /// Per-key request budgets (see [`crate::ratelimit`]).
    pub rate_limits: crate::ratelimit::RateLimits,
    /// Operator credential (hash only).
    pub operator: Arc<OperatorCredential>,
    /// Configuration.
    pub config: Arc<ServeConfig>,
    /// Master keys for sealed secrets.
    pub vault: Arc<Vault>,
    /// Wakes the sync scheduler (a venue was connected).
    pub sync_wakeup: SyncWakeup,
    /// Wakes the webhook inbox worker (a delivery was stored).
    pub inbox_wakeup: InboxWakeup,
    /// Webhook deliveries being acknowledged; the inbox worker lets them go first.
    pub webhook_acks: Arc<crate::providers::AckActivity>,
    /// Wakes the hook dispatcher (a binding was resumed or changed, a worker finished).
    pub hooks_wakeup: HooksWakeup,
    /// Wakes the order injection worker (an order was queued for its venue's POS).
    pub injection_wakeup: crate::orders::InjectionWakeup,
    /// Served menu documents (see [`crate::menus::MenuCache`]).
    pub menu_cache: crate::menus::MenuCache,
    /// Webhook-triggered menu syncs, debounced per integration.
    pub catalog_syncs: crate::providers::CatalogSyncs,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Long-lived tasks (WebSocket sessions) shutdown waits for.
    pub tasks: TaskTracker,
}

impl FromRef<AppState> for AuthState {
    fn from_ref(app: &AppState) -> Self {
        AuthState {
            store: app.store.clone(),
            keys: app.keys.clone(),
            rate_limits: app.rate_limits.clone(),
            operator: app.operator.clone(),
        }
    }
}

impl FromRef<AppState> for HooksState {
    fn from_ref(app: &AppState) -> Self {
        HooksState {
            store: app.store.clone(),
            hub: app.hub.clone(),
            writes: app.writes.clone(),
            plugins: app.plugins.clone(),
            vault: app.vault.clone(),
            hooks_wakeup: app.hooks_wakeup.clone(),
            options: app.config.hooks.clone(),
            shutdown: app.shutdown.clone(),
            tasks: app.tasks.clone(),
        }
    }
}

impl FromRef<AppState> for crate::menus::MenusState {
    fn from_ref(app: &AppState) -> Self {
        crate::menus::MenusState {
            store: app.store.clone(),
            writes: app.writes.clone(),
            cache: app.menu_cache.clone(),
        }
    }
}

impl FromRef<AppState> for ProvidersState {
    fn from_ref(app: &AppState) -> Self {
        ProvidersState {
            store: app.store.clone(),
            hub: app.hub.clone(),
            writes: app.writes.clone(),
            plugins: app.plugins.clone(),
            vault: app.vault.clone(),
            sync_wakeup: app.sync_wakeup.clone(),
            inbox_wakeup: app.inbox_wakeup.clone(),
            webhook_acks: app.webhook_acks.clone(),
            public_url: app.config.public_url.clone(),
            inbox: app.config.inbox.clone(),
            shutdown: app.shutdown.clone(),
            catalog_syncs: app.catalog_syncs.clone(),
        }
    }
}

impl FromRef<AppState> for TerminalsState {
    fn from_ref(app: &AppState) -> Self {
        TerminalsState {
            store: app.store.clone(),
            hub: app.hub.clone(),
            keys: app.keys.clone(),
            terminals: app.terminals.clone(),
            queue: app.config.hub.queue,
            stream: app.config.stream.clone(),
            shutdown: app.shutdown.clone(),
            tasks: app.tasks.clone(),
        }
    }
}
