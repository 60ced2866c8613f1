//! Runtime configuration of `posbridge serve`: every tuning knob, its default and why.
//! The CLI (`main.rs`) maps flags and environment variables onto these types.

use std::time::Duration;

use crate::events::HubOptions;
use crate::hooks::HookOptions;
use crate::plugins::PluginOptions;
use crate::ratelimit::RateLimitOptions;
use crate::server::ConnectionOptions;
use crate::store::StoreOptions;
use crate::terminals::StreamOptions;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listen address. Default `127.0.0.1:9010`: loopback until the operator decides to expose it.
    pub bind: String,
    /// Database URL (`sqlite://…`, a bare file path, or `postgres://…`).
    pub database_url: String,
    /// The URL providers reach this host at, for webhook URLs (`--public-url`; empty means
    /// `http://<bound address>`). Behind a reverse proxy it differs from the bind address.
    pub public_url: String,
    /// `POSBRIDGE_MASTER_KEY`: master keys for sealed secrets; when absent, a key file
    /// beside the database is used (created with mode 0600).
    pub master_key: Option<String>,
    /// Operator token; when absent, one is generated on first start (see `auth`).
    pub operator_token: Option<String>,
    /// Storage knobs.
    pub store: StoreOptions,
    /// Fan-out and history knobs.
    pub hub: HubOptions,
    /// WebSocket knobs.
    pub stream: StreamOptions,
    /// Plugin runtime knobs. `cache_dir` None means: beside the SQLite file, or
    /// `./posbridge-cache` for PostgreSQL.
    pub plugins: PluginOptions,
    /// Hook delivery knobs (concurrency, retries, quarantine).
    pub hooks: HookOptions,
    /// Webhook inbox retry knobs (attempts before a dead letter, backoff).
    pub inbox: crate::providers::InboxOptions,
    /// How long idempotency keys are kept. The contract promises at least 24 h; 48 h covers a
    /// till that retries after being offline over a night and a day.
    pub idempotency_ttl: Duration,
    /// How long shutdown waits for in-flight requests and sockets before exiting anyway.
    pub shutdown_grace: Duration,
    /// Connection timeouts, the connection cap and its operator reserve.
    pub connections: ConnectionOptions,
    /// Per-API-key request budgets.
    pub rate_limit: RateLimitOptions,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9010".into(),
            database_url: "posbridge.db".into(),
            operator_token: None,
            public_url: String::new(),
            master_key: None,
            store: StoreOptions::default(),
            hub: HubOptions::default(),
            stream: StreamOptions::default(),
            plugins: PluginOptions::default(),
            hooks: HookOptions::default(),
            inbox: crate::providers::InboxOptions::default(),
            idempotency_ttl: Duration::from_secs(48 * 3600),
            shutdown_grace: Duration::from_secs(10),
            connections: ConnectionOptions::default(),
            rate_limit: RateLimitOptions::default(),
        }
    }
}
