//! The composition root's state: every shared handle of the process, cheap to clone.
//!
//! Only the composition root (`api`, `server`) names [`AppState`]. Handlers, extractors and
//! workers take what they use: a single handle through `FromRef` (`State<Store>`), or their
//! feature's own state ([`AuthState`], [`HooksState`], [`ProvidersState`],
//! [`TerminalsState`]) built here by the `FromRef` impls below, so the feature modules never
//! name this one and `host/tests/module_cycles.rs` finds no cycle.

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

/// The process's shared handles, behind one `Arc`: axum clones the state for every request
/// (once per layer that takes it, and for the handler), so a clone must be one reference
/// count, not one per handle. Measured before this was an `Arc`: `AppState`'s clone and drop
/// were 10% of the server's CPU on gift-card balance reads (SQLite, `perf record -p`), each
/// of the 19 handles bumping its own counter across both cores.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` with every request and worker.
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Declares [`Services`] from one list of handles, and for each handle the
/// `FromRef<AppState>` impl that lets a handler take it alone (what `#[derive(FromRef)]`
/// gave the struct when it was the state itself), so no handle is in one and not the other.
macro_rules! services {
    (
        $(#[$meta:meta])*
        pub struct Services { $($(#[$doc:meta])* $field:ident: $handle:ty,)* }
    ) => {
        $(#[$meta])*
        pub struct Services { $($(#[$doc])* pub $field: $handle,)* }

        $(impl FromRef<AppState> for $handle {
            fn from_ref(app: &AppState) -> Self {
                app.$field.clone()
            }
        })*
    };
}

services! {
    /// Handles to the host's shared services. `FromRef` lets a handler or extractor ask
    /// for just the handle it uses (`State<Store>`), so it need not name `AppState`;
    /// every field therefore has a type of its own. Feature states copy their options out
    /// of `config` here, so features read no `ServeConfig`.
    #[derive(Debug)]
    pub struct Services {
        /// The database.
        store: Store,
        /// Live fan-out of committed events.
        hub: EventHub,
        /// The group commit every logged write runs through.
        writes: Writes,
        /// The plugin runtime.
        plugins: Plugins,
        /// Open terminal sockets.
        terminals: Terminals,
        /// Recently validated API keys (see [`crate::auth::KeyCache`]).
        keys: KeyCache,
        /// Per-key request budgets (see [`crate::ratelimit`]).
        rate_limits: crate::ratelimit::RateLimits,
        /// Operator credential (hash only).
        operator: Arc<OperatorCredential>,
        /// Configuration.
        config: Arc<ServeConfig>,
        /// Master keys for sealed secrets.
        vault: Arc<Vault>,
        /// Wakes the sync scheduler (a venue was connected).
        sync_wakeup: SyncWakeup,
        /// Wakes the webhook inbox worker (a delivery was stored).
        inbox_wakeup: InboxWakeup,
        /// Webhook deliveries being acknowledged; the inbox worker lets them go first.
        webhook_acks: Arc<crate::providers::AckActivity>,
        /// Wakes the hook dispatcher (a binding was resumed or changed, a worker finished).
        hooks_wakeup: HooksWakeup,
        /// Wakes the order injection worker (an order was queued for its venue's POS).
        injection_wakeup: crate::orders::InjectionWakeup,
        /// Served menu documents (see [`crate::menus::MenuCache`]).
        menu_cache: crate::menus::MenuCache,
        /// Webhook-triggered menu syncs, debounced per integration.
        catalog_syncs: crate::providers::CatalogSyncs,
        /// Cancelled when the server begins shutting down.
        shutdown: CancellationToken,
        /// Long-lived tasks (WebSocket sessions) shutdown waits for.
        tasks: TaskTracker,
    }
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
