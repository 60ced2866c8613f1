//! Runtime configuration of `posbridge serve`: every tuning knob, its default and why.
//! Each knob is declared once, as a flag on the options struct of the module it tunes
//! (see [`crate::options`]); `serve` flattens them all into its command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::events::HubOptions;
use crate::hooks::HookOptions;
use crate::listener::{ConnectionOptions, TlsOptions};
use crate::plugins::PluginOptions;
use crate::providers::InboxOptions;
use crate::ratelimit::RateLimitOptions;
use crate::store::StoreOptions;
use crate::terminals::StreamOptions;

/// The database when none is named: an SQLite file in the working directory, so a first
/// run needs no setup.
pub const DEFAULT_DATABASE_URL: &str = "posbridge.db";

/// Everything `serve` needs.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on. Default 127.0.0.1:9010: loopback until the operator decides
    /// to expose it.
    #[arg(long, env = "POSBRIDGE_BIND", default_value = "127.0.0.1:9010")]
    pub bind: String,
    /// Database URL (`sqlite://…`, a bare file path, or `postgres://…`); the global
    /// `--database-url`, shared by every command.
    #[arg(skip = DEFAULT_DATABASE_URL.to_owned())]
    pub database_url: String,
    /// Operator token for /admin; when absent, one is generated and printed once on first
    /// start (see `auth`).
    #[arg(long, env = "POSBRIDGE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Public base URL providers post webhooks to. Default empty, meaning
    /// `http://<bound address>` (`https://` with TLS); behind a reverse proxy it differs from the bind address.
    #[arg(long, env = "POSBRIDGE_PUBLIC_URL", default_value = "")]
    pub public_url: String,
    /// `POSBRIDGE_MASTER_KEY`: master keys for sealed secrets; when absent, the key file
    /// is used (created with mode 0600). Only the environment sets it, so the secret
    /// stays out of command lines and configuration files.
    #[arg(skip)]
    pub master_key: Option<String>,
    /// The global `--master-key-file`; None means `posbridge.keys` beside the SQLite
    /// file (or in the working directory for PostgreSQL).
    #[arg(skip)]
    pub master_key_file: Option<PathBuf>,
    /// The global `--config` file the settings were read from, if any (named at start).
    #[arg(skip)]
    pub config_file: Option<PathBuf>,
    /// Seconds shutdown waits for in-flight requests and sockets before exiting anyway.
    /// Default 10: a request finishes in milliseconds, and orchestrators commonly allow
    /// 30 s before they kill.
    #[arg(
        long = "shutdown-grace-secs",
        env = "POSBRIDGE_SHUTDOWN_GRACE_SECS",
        default_value = "10",
        value_parser = crate::options::secs(0)
    )]
    pub shutdown_grace: Duration,
    /// Seconds idempotency keys are kept. Default 48 h: covers a till that retries after
    /// being offline over a night and a day. At least 86400: the API promises 24 h.
    #[arg(
        long = "idempotency-ttl-secs",
        env = "POSBRIDGE_IDEMPOTENCY_TTL_SECS",
        default_value = "172800",
        value_parser = crate::options::secs(24 * 3600)
    )]
    pub idempotency_ttl: Duration,
    /// Connection timeouts, the connection cap and its operator reserve.
    #[command(flatten, next_help_heading = "Connections")]
    pub connections: ConnectionOptions,
    /// The certificate and key for https/wss (none: plain http).
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsOptions,
    /// Per-API-key request budgets.
    #[command(flatten, next_help_heading = "Rate limits")]
    pub rate_limit: RateLimitOptions,
    /// Storage knobs.
    #[command(flatten, next_help_heading = "Database")]
    pub store: StoreOptions,
    /// Fan-out and history knobs.
    #[command(flatten, next_help_heading = "Event stream")]
    pub hub: HubOptions,
    /// WebSocket knobs.
    #[command(flatten, next_help_heading = "Event stream")]
    pub stream: StreamOptions,
    /// Hook delivery knobs (concurrency, retries, quarantine).
    #[command(flatten, next_help_heading = "Hooks")]
    pub hooks: HookOptions,
    /// Webhook inbox retry knobs (attempts before a dead letter, backoff).
    #[command(flatten, next_help_heading = "Provider webhooks")]
    pub inbox: InboxOptions,
    /// Order injection knobs (attempts, backoff, concurrency, status polling).
    #[command(flatten, next_help_heading = "Order injection")]
    pub injection: crate::orders::InjectionOptions,
    /// Plugin runtime knobs.
    #[command(flatten, next_help_heading = "Plugins")]
    pub plugins: PluginOptions,
}

impl Default for ServeConfig {
    fn default() -> Self {
        crate::options::defaults()
    }
}
