//! posbridge: a multi-tenant POS integration hub.
//!
//! The host owns tenancy, auth, storage, the money ledgers and real-time fan-out; see
//! `docs/architecture.md` in the repository for the map. `api` assembles the per-feature
//! routers of the domain modules (generic over the router state); it and `server` are the
//! only modules naming `AppState`; `host/tests/module_cycles.rs` prints the import graph
//! between modules and fails on any cycle.
//!
//! Every module is private: the only consumer of this library is the `posbridge` binary
//! (`main.rs`), which reaches the host through [`cli`]. Items are `pub(crate)` unless `cli`
//! re-exports them, so the compiler reports code nothing uses (`unreachable_pub` keeps new
//! items honest).

#![warn(unreachable_pub)]

mod api;
mod api_keys;
mod auth;
mod availability;
mod backup;
mod cli_database;
mod cluster;
mod config;
mod console;
mod customers;
mod dead_letters;
mod dead_letters_api;
mod error;
mod events;
mod extract;
mod hooks;
mod idempotency;
mod key_checks;
mod lease;
mod ledger;
mod listener;
mod locks;
mod menus;
mod metrics;
mod money;
mod openapi;
mod options;
mod orders;
mod paging;
mod plugins;
mod plugins_api;
mod providers;
mod ratelimit;
mod reports;
mod rotation;
mod rules;
mod server;
mod state;
mod store;
mod tenancy;
mod terminals;
mod vault;

/// What the `posbridge` binary needs from the host, and nothing more: serving, the operator
/// commands (tenants, keys, vault rotation, backup/restore, database checks) and the plugin
/// tooling (install, check, run fixtures, sign).
pub mod cli {
    pub use crate::api_keys::{ApiKeys, NewKey};
    pub use crate::auth::Role;
    pub use crate::backup::{backup, restore, KeySource};
    pub use crate::cli_database::{describe as describe_database, open_existing};
    pub use crate::config::{ServeConfig, DEFAULT_DATABASE_URL};
    pub use crate::options::{config_path, name_values, without_env, ConfigFile, CONFIG_ENV};
    pub use crate::plugins::contract::{HookEvent, Webhook};
    pub use crate::plugins::{runner, signing, PluginOptions, Plugins};
    pub use crate::rotation::rotate;
    pub use crate::server::{default_cache_dir, default_key_file, serve};
    pub use crate::store::{Store, StoreOptions};
    pub use crate::tenancy::lifecycle::TenantUpdate;
    pub use crate::tenancy::{NewTenant, Tenants};
}
