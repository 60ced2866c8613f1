//! posbridge: a multi-tenant POS integration hub.
//!
//! The host owns tenancy, auth, storage, the money ledgers and real-time fan-out; see
//! `docs/architecture.md` in the repository for the map. `api` assembles the per-feature
//! routers of the domain modules (generic over the router state); it and `server` are the
//! only modules naming `AppState`; `host/tests/module_cycles.rs` prints the import graph
//! between modules and fails on any cycle.

pub mod api;
pub mod api_keys;
pub mod auth;
pub mod availability;
pub mod backup;
pub mod cli_database;
pub mod cluster;
pub mod config;
pub mod console;
pub mod customers;
pub mod dead_letters;
pub mod dead_letters_api;
pub mod error;
pub mod events;
pub mod extract;
pub mod hooks;
pub mod idempotency;
pub mod key_checks;
pub mod lease;
pub mod ledger;
pub mod listener;
pub mod locks;
pub mod menus;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod options;
pub mod orders;
pub mod paging;
pub mod plugins;
pub mod plugins_api;
pub mod providers;
pub mod ratelimit;
pub mod reports;
pub mod rotation;
pub mod rules;
pub mod server;
pub mod state;
pub mod store;
pub mod tenancy;
pub mod terminals;
pub mod vault;
