//! Plugins: sandboxed WebAssembly components that implement POS providers and event hooks.
//!
//! [`Plugins`] is the one interface the rest of the host uses: install, activate, roll back,
//! disable, and call a plugin's functions with the host's contract types. Underneath, each
//! call runs in a fresh instance from a cached `InstancePre` under a CPU deadline, a memory
//! cap and a wall-clock timeout; a failure fails that call only, and a plugin that keeps
//! failing is quarantined.
//!
//! The runtime knows nothing of HTTP: the operator's routes live in `crate::plugins_api`,
//! as Zed's extension host and Spin keep their runtimes apart from their front ends.
//!
//! | module | job |
//! |---|---|
//! | `runtime` | the [`Plugins`] handle and the call path (permit, sandbox, limits, outcome) |
//! | `catalog` | installed plugins and versions in the database; install, activate, disable |
//! | `check` | `plugin check`: each function of a world on canned input |
//! | `bench` | `plugin bench`: compile, load, install and per-call cost |
//! | `error` | why a call, install, operator action or start failed |
//! | `signing`, `signers` | plugin signatures (format, keys) and the operator's trusted signers |
//! | `logs` | what plugins log, kept per plugin (bounded, rate-limited) for operators |
//! | `runner` | `plugin test`: a component against recorded HTTP fixtures, no server or database |
//! | `wit` | per-version bindings of the WIT contract, read from `wit/v<version>/` |
//! | `engine`, `executor`, `sandbox`, `outbound`, `registry`, `allowlist` | wasmtime, guest threads, per-call limits, outbound HTTP, the in-memory catalog, host patterns |

pub(crate) mod allowlist;
mod bench;
mod bundled;
mod catalog;
mod check;
pub(crate) mod contract;
mod engine;
mod error;
mod executor;
pub(crate) mod logs;
pub(crate) mod outbound;
mod registry;
pub mod runner;
mod runtime;
mod sandbox;
mod signers;
pub mod signing;
mod wit;

#[cfg(test)]
mod against_mocks;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use catalog::{PluginStatus, CATALOG_CHANNEL};
pub(crate) use error::{AdminError, CallError, InstallError, StartError};
pub(crate) use executor::default_guest_threads;
pub(crate) use logs::PluginLogView;
pub(crate) use runtime::CallContext;
pub use runtime::Plugins;
pub(crate) use signers::TrustedSigner;

use outbound::OutboundOptions;

/// Plugin runtime tuning (`serve` flags `--plugin-*`, `--outbound-*`; see
/// [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PluginOptions {
    /// Plugin calls that may run at once; sizes the instance pool, further calls queue.
    /// Default 64: most of a call's time is spent waiting on HTTP, so this is far above
    /// `--plugin-threads`. At least 1.
    #[arg(
        long = "plugin-max-concurrent-calls",
        env = "POSBRIDGE_PLUGIN_MAX_CONCURRENT_CALLS",
        default_value = "64",
        value_parser = crate::options::at_least(1u32)
    )]
    pub max_concurrent_calls: u32,
    /// Threads that run plugin (guest) code, at a lower OS priority (nice 10) than the
    /// API. Default half the cores, at least one: fewer threads than cores means spinning
    /// plugins can never take every core from terminal requests. At least 1.
    #[arg(
        long = "plugin-threads",
        env = "POSBRIDGE_PLUGIN_THREADS",
        default_value_t = default_guest_threads(),
        value_parser = crate::options::at_least(1usize)
    )]
    pub guest_threads: usize,
    /// Directory for precompiled plugin artifacts. Default: `posbridge-cache` beside the
    /// SQLite file, or `./posbridge-cache` for PostgreSQL, so a restart finds them.
    #[arg(
        long = "plugin-cache-dir",
        env = "POSBRIDGE_PLUGIN_CACHE_DIR",
        value_hint = clap::ValueHint::DirPath
    )]
    pub cache_dir: Option<PathBuf>,
    /// Consecutive failed calls (trap, timeout, out of memory) that quarantine a provider
    /// plugin. Default 5: tolerates a transient blip while stopping a broken plugin within
    /// seconds. Hooks are not quarantined plugin-wide (one tenant's event that breaks a
    /// hook would stop it for every tenant); each binding is, see `--hook-*`. At least 1.
    #[arg(
        id = "plugin_quarantine_after",
        long = "plugin-quarantine-after",
        env = "POSBRIDGE_PLUGIN_QUARANTINE_AFTER",
        default_value = "5",
        value_parser = crate::options::at_least(1u64)
    )]
    pub quarantine_after: u64,
    /// Milliseconds between re-reads of the plugin catalog for changes made by the CLI or
    /// another host. Default 2 s: an install is live everywhere within seconds, for one
    /// cheap query. At least 10.
    #[arg(
        long = "plugin-reload-interval-ms",
        env = "POSBRIDGE_PLUGIN_RELOAD_INTERVAL_MS",
        default_value = "2000",
        value_parser = crate::options::millis(10)
    )]
    pub reload_interval: Duration,
    /// Refuse uploaded plugins that are not signed by a key an operator trusts (`PUT
    /// /admin/plugin-signers`), with 422 saying why. Default false: signatures are still
    /// checked when present (a bad one is always refused) and shown as the version's
    /// `signer`. `--require-signed-plugins` alone means true.
    #[arg(
        long = "require-signed-plugins",
        env = "POSBRIDGE_REQUIRE_SIGNED_PLUGINS",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub require_signed: bool,
    /// Lines of each plugin's own log (its `log` calls) kept in memory for `GET
    /// /admin/plugins/{id}/logs`. Default 200: the last minutes of a busy plugin, at most
    /// ~400 KiB per plugin (messages are cut at 2000 characters). At least 1.
    #[arg(
        long = "plugin-log-lines",
        env = "POSBRIDGE_PLUGIN_LOG_LINES",
        default_value = "200",
        value_parser = crate::options::at_least(1usize)
    )]
    pub log_lines: usize,
    /// Log lines per second each plugin may write (burst the same); lines beyond are
    /// dropped and counted, so a chatty plugin floods neither memory nor the host's log.
    /// Default 50. At least 1.
    #[arg(
        long = "plugin-log-rate-per-sec",
        env = "POSBRIDGE_PLUGIN_LOG_RATE_PER_SEC",
        default_value = "50",
        value_parser = crate::options::at_least(1u32)
    )]
    pub log_rate_per_second: u32,
    /// Outbound HTTP knobs.
    #[command(flatten)]
    pub outbound: OutboundOptions,
    /// Install the bundled plugins on start (not a flag: `serve` always does; the CLI's
    /// plugin commands do not).
    #[arg(skip = true)]
    pub install_bundled: bool,
}

impl Default for PluginOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}
