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
//! | `wit` | per-version bindings of the WIT contract, read from `wit/v<version>/` |
//! | `engine`, `executor`, `sandbox`, `outbound`, `registry`, `allowlist` | wasmtime, guest threads, per-call limits, outbound HTTP, the in-memory catalog, host patterns |

pub mod allowlist;
mod bench;
mod bundled;
mod catalog;
mod check;
pub mod contract;
mod engine;
mod error;
mod executor;
pub mod outbound;
mod registry;
mod runtime;
mod sandbox;
mod wit;

use std::path::PathBuf;
use std::time::Duration;

pub use bench::PluginBench;
pub use catalog::PluginStatus;
pub use check::CheckResult;
pub use engine::ArtifactSource;
pub use error::{AdminError, CallError, InstallError, StartError};
pub use executor::{default_guest_threads, GUEST_NICE};
pub use registry::{PluginState, StatsView, VersionSummary};
pub use runtime::{CallContext, Plugins};
pub use sandbox::CallLimits;

use outbound::OutboundOptions;

/// Plugin runtime tuning.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    /// Calls that may run at once; sizes the instance pool. Further calls queue. Most of a
    /// call's time is usually spent waiting on HTTP, so this is far above `guest_threads`.
    pub max_concurrent_calls: u32,
    /// Threads that execute guest code (a runtime of their own, at nice
    /// [`GUEST_NICE`]). Default [`default_guest_threads`]: half the cores, at least one, so
    /// spinning guests cannot take every core from the API.
    pub guest_threads: usize,
    /// Where precompiled artifacts are cached (none: recompile on every start).
    pub cache_dir: Option<PathBuf>,
    /// Consecutive failed calls (trap, timeout, out of memory) that quarantine a provider
    /// plugin. Five tolerates a transient blip while stopping a broken plugin within seconds.
    /// Hooks are not quarantined plugin-wide: one tenant's event that breaks a hook would
    /// stop it for every tenant, so each tenant binding is quarantined on its own (`hooks`).
    pub quarantine_after: u64,
    /// How often the catalog is re-read for changes made by the CLI or another host.
    pub reload_interval: Duration,
    /// Outbound HTTP knobs.
    pub outbound: OutboundOptions,
    /// Install the bundled plugins on start.
    pub install_bundled: bool,
}

impl Default for PluginOptions {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            guest_threads: default_guest_threads(),
            cache_dir: None,
            quarantine_after: 5,
            reload_interval: Duration::from_secs(2),
            outbound: OutboundOptions::default(),
            install_bundled: true,
        }
    }
}
