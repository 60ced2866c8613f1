//! posbridge: a multi-tenant POS integration hub.
//!
//! The host owns tenancy, auth, storage, the money ledgers and real-time fan-out; see
//! `DESIGN.md` for the map. Dependencies point one way: `api` assembles the per-feature
//! routers of the domain modules, which use `store` and never each other's tables.

pub mod api;
pub mod api_keys;
pub mod auth;
pub mod config;
pub mod customers;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod extract;
pub mod hooks;
pub mod idempotency;
pub mod ledger;
pub mod locks;
pub mod metrics;
pub mod money;
pub mod orders;
pub mod paging;
pub mod plugins;
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
