//! Plugins: sandboxed WebAssembly components that implement POS providers and event hooks.
//!
//! [`Plugins`] is the one interface the rest of the host uses: install, activate, roll back,
//! disable, and call a plugin's functions with the host's contract types. Underneath, each
//! call runs in a fresh instance from a cached `InstancePre` under a CPU deadline, a memory
//! cap and a wall-clock timeout; a failure fails that call only, and a plugin that keeps
//! failing is quarantined.

mod admin;
pub mod allowlist;
mod bundled;
pub mod contract;
mod engine;
mod executor;
pub mod outbound;
mod registry;
mod sandbox;
mod wit;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use wasmtime::Store as WasmStore;

pub use admin::admin_routes;
pub use engine::ArtifactSource;
pub use executor::{default_guest_threads, GUEST_NICE};
pub use registry::{PluginState, StatsView, VersionSummary};
pub use sandbox::CallLimits;

use allowlist::AllowList;
use contract::{
    Connection, FetchRequest, HookAction, HookEvent, LocationInfo, Manifest, PluginKind,
    ProviderError, Transaction, TransactionPage, Webhook, WebhookEvent,
};
use engine::{PluginEngine, MAX_PLUGIN_MEMORY};
use executor::GuestExecutor;
use outbound::{Outbound, OutboundOptions};
use registry::{ActiveVersion, Catalog, PluginEntry, PluginStats};
use sandbox::{CallScope, Sandbox, StateBackend};
use wit::LoadedComponent;

use crate::locks::lock;
use crate::store::{now_micros, Store, StoreError};

/// One call into a guest: take a permit, build its sandbox from the active version, then on
/// a guest thread run the export under the wall-clock limit and record the outcome (stats,
/// circuit breaker). `owned` arguments are cloned into the task, which outlives a caller
/// that stops waiting.
macro_rules! guest_call {
    ($self:ident, $kind:ident, $id:expr, $ctx:expr, owned($($arg:ident),*), |$pre:ident, $store:ident| $call:expr) => {{
        let mut call = $self.prepare($id, PluginKind::$kind, $ctx).await?;
        $(let $arg = $arg.to_owned();)*
        let plugins = $self.clone();
        let task = async move {
            let active = call.active.clone();
            let LoadedComponent::$kind($pre) = &active.component else {
                return Err(wrong_kind(&call.entry.id));
            };
            let wall = call.entry.limits.wall;
            let $store = &mut call.store;
            let outcome = tokio::time::timeout(wall, $call).await;
            plugins.finish(call, outcome)
        };
        $self.inner.guests.run(task).await.map_err(|e| CallError::Unavailable {
            id: $id.to_owned(),
            reason: e.to_string(),
        })?
    }};
}

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

/// Who a call is for.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Tenant id ("" for operator-level calls).
    pub tenant_id: String,
    /// Integration id ("" when not for an integration).
    pub integration_id: String,
}

/// Why a call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No plugin with that id.
    #[error("no plugin {0:?} is installed")]
    NotInstalled(String),
    /// The plugin is of the other kind.
    #[error("plugin {id:?} is a {actual}, not a {expected}")]
    WrongKind {
        /// Id.
        id: String,
        /// Expected kind.
        expected: &'static str,
        /// Actual kind.
        actual: &'static str,
    },
    /// Disabled, quarantined, or without an active version.
    #[error("plugin {id:?} is unavailable: {reason}")]
    Unavailable {
        /// Id.
        id: String,
        /// Why.
        reason: String,
    },
    /// CPU deadline or wall-clock timeout.
    #[error("plugin {0:?} exceeded its time limit")]
    Timeout(String),
    /// Memory cap.
    #[error("plugin {0:?} exceeded its memory limit")]
    OutOfMemory(String),
    /// The guest trapped (panic, unreachable, bad memory access…).
    #[error("plugin {id:?} failed: {message}")]
    Trapped {
        /// Id.
        id: String,
        /// The trap and the guest's last stderr line.
        message: String,
    },
}

/// Why an install was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not a WebAssembly binary.
    #[error("not a WebAssembly binary")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module; build a component (cargo build --target wasm32-wasip2)"
    )]
    CoreModule,
    /// Does not compile, implements no known world, or `info` failed.
    #[error("{0}")]
    Invalid(String),
    /// (id, version) already installed.
    #[error("plugin {id:?} version {version} is already installed")]
    VersionExists {
        /// Id.
        id: String,
        /// Version.
        version: String,
    },
    /// Same id, other kind.
    #[error("plugin {id:?} is installed as a {existing}; this component is a {new}")]
    KindMismatch {
        /// Id.
        id: String,
        /// Installed kind.
        existing: &'static str,
        /// Kind of the new component.
        new: &'static str,
    },
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for InstallError {
    fn from(err: sqlx::Error) -> Self {
        InstallError::Store(err.into())
    }
}

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Unknown plugin.
    #[error("no plugin {0:?} is installed")]
    NotFound(String),
    /// Unknown version.
    #[error("plugin {0:?} has no version {1}")]
    VersionNotFound(String, String),
    /// Deleting the serving version.
    #[error("version {1} of {0:?} is active; activate another version first")]
    VersionActive(String, String),
    /// Bad host pattern.
    #[error(transparent)]
    InvalidHosts(#[from] allowlist::PatternError),
    /// Limits out of range.
    #[error("{0}")]
    InvalidLimits(String),
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AdminError {
    fn from(err: sqlx::Error) -> Self {
        AdminError::Store(err.into())
    }
}

/// A plugin as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: PluginKind,
    /// State.
    pub state: PluginState,
    /// Why it is not active.
    pub state_reason: Option<String>,
    /// Serving version.
    pub active_version: Option<String>,
    /// Manifest of the serving version.
    pub manifest: Option<Manifest>,
    /// Installed versions.
    pub versions: Vec<VersionSummary>,
    /// Operator-approved hosts.
    pub approved_hosts: Vec<String>,
    /// Effective allowlist.
    pub allowed_hosts: Vec<String>,
    /// CPU deadline per call, ms.
    pub cpu_ms: u64,
    /// Memory cap, MiB.
    pub memory_mb: u64,
    /// Call statistics.
    pub stats: StatsView,
}

/// The plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Plugins {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    engine: PluginEngine,
    outbound: Outbound,
    catalog: ArcSwap<Catalog>,
    stats: Mutex<HashMap<String, Arc<PluginStats>>>,
    reload: tokio::sync::Mutex<Option<String>>,
    permits: Arc<Semaphore>,
    guests: GuestExecutor,
    options: PluginOptions,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Failures starting the runtime.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// wasmtime or the cache directory.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// HTTP client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Guest threads.
    #[error(transparent)]
    Threads(#[from] executor::ExecError),
}

const GENERATION_KEY: &str = "plugins_generation";

impl Plugins {
    /// Starts the runtime: builds the engine, loads the catalog, installs bundled plugins.
    pub async fn start(store: Store, options: PluginOptions) -> Result<Self, StartError> {
        let engine = PluginEngine::new(options.max_concurrent_calls, options.cache_dir.clone())?;
        let outbound = Outbound::new(options.outbound.clone())?;
        let guests = GuestExecutor::new(options.guest_threads)?;
        tracing::info!(
            threads = guests.threads(),
            nice = GUEST_NICE,
            "plugin guest threads started"
        );
        let plugins = Plugins {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(options.max_concurrent_calls.max(1) as usize)),
                guests,
                store,
                engine,
                outbound,
                catalog: ArcSwap::from_pointee(Catalog::new()),
                stats: Mutex::new(HashMap::new()),
                reload: tokio::sync::Mutex::new(None),
                options,
            }),
        };
        plugins.reload(true).await?;
        if plugins.inner.options.install_bundled {
            plugins.install_bundled().await;
        }
        Ok(plugins)
    }

    async fn install_bundled(&self) {
        for (name, wasm) in bundled::COMPONENTS {
            // Known bytes are known (id, version): skip compiling and calling `info` on every
            // start only to learn the version is already installed.
            let sha256 = hex::encode(Sha256::digest(wasm));
            let known =
                sqlx::query("SELECT plugin_id FROM plugin_versions WHERE sha256 = $1 LIMIT 1")
                    .bind(&sha256)
                    .fetch_optional(self.inner.store.reader())
                    .await;
            match known {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(component = %name, error = %err, "could not look up a bundled plugin")
                }
            }
            match self.install(wasm.to_vec(), "bundled").await {
                Ok(status) => {
                    tracing::info!(plugin = %status.id, version = ?status.active_version, "bundled plugin installed")
                }
                Err(InstallError::VersionExists { .. }) => {}
                Err(err) => {
                    tracing::error!(component = %name, error = %err, "bundled plugin refused")
                }
            }
        }
    }

    /// Re-reads the catalog if another process changed it (or always, if `force`).
    async fn reload(&self, force: bool) -> Result<(), StoreError> {
        let mut seen = self.inner.reload.lock().await;
        let current: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(GENERATION_KEY)
                .fetch_optional(self.inner.store.reader())
                .await?;
        if !force && *seen == current {
            return Ok(());
        }
        let previous = self.inner.catalog.load_full();
        let catalog = registry::load_catalog(
            &self.inner.store,
            &self.inner.engine,
            &previous,
            &self.inner.stats,
        )
        .await?;
        self.inner.catalog.store(Arc::new(catalog));
        *seen = current;
        Ok(())
    }

    /// Polls for catalog changes made by the CLI or other hosts until `shutdown`.
    pub fn spawn_watcher(&self, shutdown: CancellationToken) {
        let plugins = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(plugins.inner.options.reload_interval);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(err) = plugins.reload(false).await {
                            tracing::warn!(error = %err, "plugin catalog reload failed");
                        }
                    }
                }
            }
        });
    }

    async fn bump_generation(&self, conn: &mut crate::store::Conn) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(GENERATION_KEY)
        .bind(format!("{}-{}", now_micros(), uuid::Uuid::now_v7().simple()))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Compiles `wasm`, checks it implements a known world and reads its manifest, without
    /// installing anything.
    pub async fn inspect(
        &self,
        wasm: &[u8],
    ) -> Result<(Manifest, LoadedComponent, String), InstallError> {
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(InstallError::NotWasm);
        }
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(InstallError::CoreModule);
        }
        let sha256 = hex::encode(Sha256::digest(wasm));
        let (component, _) =
            self.inner.engine.component(&sha256, wasm).map_err(|e| {
                InstallError::Invalid(format!("the component does not compile: {e}"))
            })?;
        let loaded = LoadedComponent::detect(self.inner.engine.linker(), &component)
            .map_err(InstallError::Invalid)?;
        let manifest = self
            .run_detached(&loaded, "install", |loaded, store| {
                Box::pin(async move { loaded.manifest(store).await })
            })
            .await
            .map_err(|e| InstallError::Invalid(format!("info() failed: {e}")))?;
        validate_manifest(&manifest).map_err(InstallError::Invalid)?;
        if manifest.kind != loaded.kind() {
            return Err(InstallError::Invalid(
                "manifest kind does not match the component's world".into(),
            ));
        }
        Ok((manifest, loaded, sha256))
    }

    /// Installs a component and makes it the active version of its plugin.
    pub async fn install(&self, wasm: Vec<u8>, source: &str) -> Result<PluginStatus, InstallError> {
        let started = Instant::now();
        let (manifest, _loaded, sha256) = self.inspect(&wasm).await?;
        let now = now_micros();
        let mut tx = self.inner.store.begin().await?;
        let existing: Option<String> = sqlx::query_scalar("SELECT kind FROM plugins WHERE id = $1")
            .bind(&manifest.id)
            .fetch_optional(&mut *tx)
            .await?;
        match existing.as_deref() {
            Some(kind) if kind != manifest.kind.as_str() => {
                return Err(InstallError::KindMismatch {
                    id: manifest.id,
                    existing: if kind == "hook" { "hook" } else { "provider" },
                    new: manifest.kind.as_str(),
                })
            }
            Some(_) => {}
            None => {
                sqlx::query(
                    "INSERT INTO plugins (id, kind, active_version, state, approved_hosts, created_at, updated_at)
                     VALUES ($1, $2, NULL, 'active', '[]', $3, $3)",
                )
                .bind(&manifest.id)
                .bind(manifest.kind.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let manifest_json =
            serde_json::to_string(&manifest).map_err(|e| InstallError::Invalid(e.to_string()))?;
        let inserted = sqlx::query(
            "INSERT INTO plugin_versions (plugin_id, version, contract, sha256, manifest, wasm, source, installed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (plugin_id, version) DO NOTHING",
        )
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(&manifest.contract)
        .bind(&sha256)
        .bind(&manifest_json)
        .bind(wasm)
        .bind(source)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(InstallError::VersionExists {
                id: manifest.id,
                version: manifest.version,
            });
        }
        // A bundled plugin never displaces what an operator chose; an upload becomes active.
        let activate = source != "bundled" || existing.is_none();
        if activate {
            sqlx::query(
                "UPDATE plugins SET active_version = $1, state = 'active', state_reason = NULL, updated_at = $2 WHERE id = $3",
            )
            .bind(&manifest.version)
            .bind(now)
            .bind(&manifest.id)
            .execute(&mut *tx)
            .await?;
        }
        self.bump_generation(&mut tx).await?;
        tx.commit().await.map_err(StoreError::from)?;
        if activate {
            self.reset_failures(&manifest.id);
        }
        self.reload(true).await?;
        tracing::info!(plugin = %manifest.id, version = %manifest.version, kind = manifest.kind.as_str(), %source,
            millis = started.elapsed().as_millis() as u64, "plugin installed");
        self.status(&manifest.id)
            .ok_or_else(|| InstallError::Invalid("installed plugin did not load".into()))
    }

    /// Makes `version` the serving version (upgrade or roll back) and clears quarantine.
    pub async fn activate(&self, id: &str, version: &str) -> Result<PluginStatus, AdminError> {
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT version FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(self.inner.store.reader())
        .await?;
        if exists.is_none() {
            return Err(self.missing(id, version).await);
        }
        self.update_plugin(id, "UPDATE plugins SET active_version = $1, state = 'active', state_reason = NULL, updated_at = $2 WHERE id = $3", Some(version)).await?;
        self.reset_failures(id);
        tracing::info!(plugin = %id, %version, "plugin version activated");
        self.status(id)
            .ok_or_else(|| AdminError::NotFound(id.to_owned()))
    }

    /// Stops serving calls until a version is activated again.
    pub async fn disable(&self, id: &str) -> Result<PluginStatus, AdminError> {
        self.update_plugin(id, "UPDATE plugins SET state = 'disabled', state_reason = $1, updated_at = $2 WHERE id = $3", Some("disabled by an operator")).await?;
        tracing::info!(plugin = %id, "plugin disabled");
        self.status(id)
            .ok_or_else(|| AdminError::NotFound(id.to_owned()))
    }

    /// Deletes an installed version that is not serving.
    pub async fn delete_version(&self, id: &str, version: &str) -> Result<(), AdminError> {
        let active: Option<Option<String>> =
            sqlx::query_scalar("SELECT active_version FROM plugins WHERE id = $1")
                .bind(id)
                .fetch_optional(self.inner.store.reader())
                .await?;
        match active {
            None => return Err(AdminError::NotFound(id.to_owned())),
            Some(Some(active)) if active == version => {
                return Err(AdminError::VersionActive(id.to_owned(), version.to_owned()))
            }
            Some(_) => {}
        }
        let mut tx = self.inner.store.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM plugin_versions WHERE plugin_id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if deleted == 0 {
            return Err(AdminError::VersionNotFound(
                id.to_owned(),
                version.to_owned(),
            ));
        }
        self.bump_generation(&mut tx).await?;
        tx.commit().await?;
        self.reload(true).await?;
        Ok(())
    }

    /// Replaces the operator's extra allowed hosts.
    pub async fn set_hosts(
        &self,
        id: &str,
        hosts: Vec<String>,
    ) -> Result<PluginStatus, AdminError> {
        let parsed = AllowList::parse(hosts.iter().map(String::as_str))?;
        let json = serde_json::to_string(&parsed.entries())
            .map_err(|e| AdminError::InvalidLimits(e.to_string()))?;
        self.update_plugin(
            id,
            "UPDATE plugins SET approved_hosts = $1, updated_at = $2 WHERE id = $3",
            Some(&json),
        )
        .await?;
        tracing::info!(plugin = %id, hosts = ?parsed.entries(), "plugin hosts approved");
        self.status(id)
            .ok_or_else(|| AdminError::NotFound(id.to_owned()))
    }

    /// Sets the per-call CPU deadline and memory cap.
    pub async fn set_limits(
        &self,
        id: &str,
        cpu_ms: u64,
        memory_mb: u64,
    ) -> Result<PluginStatus, AdminError> {
        if !(10..=60_000).contains(&cpu_ms) {
            return Err(AdminError::InvalidLimits("cpu_ms must be 10-60000".into()));
        }
        let max_mb = (MAX_PLUGIN_MEMORY >> 20) as u64;
        if !(1..=max_mb).contains(&memory_mb) {
            return Err(AdminError::InvalidLimits(format!(
                "memory_mb must be 1-{max_mb}"
            )));
        }
        let mut tx = self.inner.store.begin().await?;
        let found = sqlx::query(
            "UPDATE plugins SET cpu_ms = $1, memory_bytes = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(cpu_ms as i64)
        .bind((memory_mb << 20) as i64)
        .bind(now_micros())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(AdminError::NotFound(id.to_owned()));
        }
        self.bump_generation(&mut tx).await?;
        tx.commit().await?;
        self.reload(true).await?;
        self.status(id)
            .ok_or_else(|| AdminError::NotFound(id.to_owned()))
    }

    async fn update_plugin(
        &self,
        id: &str,
        sql: &str,
        first: Option<&str>,
    ) -> Result<(), AdminError> {
        let mut tx = self.inner.store.begin().await?;
        let found = sqlx::query(sql)
            .bind(first)
            .bind(now_micros())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if found == 0 {
            return Err(AdminError::NotFound(id.to_owned()));
        }
        self.bump_generation(&mut tx).await?;
        tx.commit().await?;
        self.reload(true).await?;
        Ok(())
    }

    async fn missing(&self, id: &str, version: &str) -> AdminError {
        let known = sqlx::query("SELECT id FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(self.inner.store.reader())
            .await;
        match known {
            Ok(Some(_)) => AdminError::VersionNotFound(id.to_owned(), version.to_owned()),
            Ok(None) => AdminError::NotFound(id.to_owned()),
            Err(e) => AdminError::Store(e.into()),
        }
    }

    fn reset_failures(&self, id: &str) {
        if let Some(stats) = lock(&self.inner.stats).get(id) {
            stats.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Every plugin, by id.
    pub fn list(&self) -> Vec<PluginStatus> {
        let catalog = self.inner.catalog.load();
        let mut all: Vec<PluginStatus> = catalog.values().map(|e| status_of(e)).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// One plugin.
    pub fn status(&self, id: &str) -> Option<PluginStatus> {
        self.inner.catalog.load().get(id).map(|e| status_of(e))
    }

    /// The serving manifest of a plugin.
    pub fn manifest(&self, id: &str) -> Option<Manifest> {
        self.inner
            .catalog
            .load()
            .get(id)
            .and_then(|e| e.active.as_ref().map(|a| a.manifest.clone()))
    }

    /// Whether `url`'s host is allowed for the plugin (declared or approved).
    pub fn allows(&self, id: &str, url: &str) -> Result<(), String> {
        let catalog = self.inner.catalog.load();
        let entry = catalog.get(id).ok_or_else(|| format!("no plugin {id:?}"))?;
        let active = entry
            .active
            .as_ref()
            .ok_or_else(|| format!("plugin {id:?} has no active version"))?;
        active.allow.check(url).map(|_| ())
    }

    // ---- calls ------------------------------------------------------------------------

    fn entry(
        &self,
        id: &str,
        kind: PluginKind,
    ) -> Result<(Arc<PluginEntry>, Arc<ActiveVersion>), CallError> {
        let catalog = self.inner.catalog.load();
        let entry = catalog
            .get(id)
            .cloned()
            .ok_or_else(|| CallError::NotInstalled(id.to_owned()))?;
        if entry.kind != kind {
            return Err(CallError::WrongKind {
                id: id.to_owned(),
                expected: kind.as_str(),
                actual: entry.kind.as_str(),
            });
        }
        if entry.state != PluginState::Active {
            return Err(CallError::Unavailable {
                id: id.to_owned(),
                reason: entry
                    .state_reason
                    .clone()
                    .unwrap_or_else(|| entry.state.as_str().to_owned()),
            });
        }
        let active = entry.active.clone().ok_or_else(|| CallError::Unavailable {
            id: id.to_owned(),
            reason: "no active version".into(),
        })?;
        Ok((entry, active))
    }

    async fn prepare(
        &self,
        id: &str,
        kind: PluginKind,
        ctx: &CallContext,
    ) -> Result<Prepared, CallError> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CallError::Unavailable {
                id: id.to_owned(),
                reason: "shutting down".into(),
            })?;
        // The catalog is read after the permit, so a call that waited sees the latest swap.
        let (entry, active) = self.entry(id, kind)?;
        let scope = CallScope {
            plugin_id: entry.id.clone(),
            version: active.manifest.version.clone(),
            tenant_id: ctx.tenant_id.clone(),
            integration_id: ctx.integration_id.clone(),
            allow: active.allow.clone(),
            outbound: self.inner.outbound.clone(),
            state: StateBackend::Db(self.inner.store.clone()),
            io: self.inner.guests.host_io(),
        };
        let store = Sandbox::store(self.inner.engine.engine(), Arc::new(scope), entry.limits);
        Ok(Prepared {
            entry,
            active,
            store,
            _permit: permit,
            started: Instant::now(),
        })
    }

    fn finish<T>(
        &self,
        call: Prepared,
        outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, CallError> {
        let Prepared {
            entry,
            active,
            store,
            started,
            ..
        } = call;
        let id = entry.id.clone();
        let stats = &entry.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let denied = store.data().denied_requests();
        if denied > 0 {
            stats
                .http_denied
                .fetch_add(u64::from(denied), Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        let _ = lock(&stats.latency_us).record((elapsed.as_micros() as u64).max(1));
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Err(_) => Err(CallError::Timeout(id.clone())),
            Ok(Err(err)) => {
                let failure = classify(&err, store.data(), &id);
                if matches!(failure, CallError::Trapped { .. }) {
                    // The guest's stderr (panic message) goes to the log only: it is the
                    // plugin's output and may carry anything the plugin was handed.
                    tracing::warn!(plugin = %id, stderr = %store.data().stderr_tail(), "plugin trapped");
                }
                Err(failure)
            }
        };
        let version = &active.manifest.version;
        match &result {
            Ok(_) => {
                stats.consecutive_failures.store(0, Ordering::Relaxed);
                metrics::counter!("posbridge_plugin_calls_total", "plugin" => id.clone(), "outcome" => "ok").increment(1);
            }
            Err(err) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                let streak = stats.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::counter!("posbridge_plugin_calls_total", "plugin" => id.clone(), "outcome" => "failed").increment(1);
                tracing::warn!(plugin = %id, %version, error = %err, streak, "plugin call failed");
                if streak == self.inner.options.quarantine_after
                    && entry.kind == PluginKind::Provider
                {
                    self.quarantine(
                        &id,
                        format!("quarantined after {streak} consecutive failures; last: {err}"),
                    );
                }
            }
        }
        result
    }

    fn quarantine(&self, id: &str, reason: String) {
        tracing::error!(plugin = %id, %reason, "plugin quarantined");
        let plugins = self.clone();
        let id = id.to_owned();
        // `finish` runs on a guest thread; the database write belongs on the API's runtime.
        self.inner.guests.host_io().spawn(async move {
            if let Err(err) = plugins
                .update_plugin(&id, "UPDATE plugins SET state = 'quarantined', state_reason = $1, updated_at = $2 WHERE id = $3", Some(&reason))
                .await
            {
                tracing::error!(plugin = %id, error = %err, "could not record quarantine");
            }
        });
    }

    /// Runs `f` on a component that is not in the catalog (install-time `info`, checks),
    /// with default limits, no network and throwaway state.
    async fn run_detached<T: Send + 'static>(
        &self,
        loaded: &LoadedComponent,
        label: &str,
        f: impl for<'a> FnOnce(
                &'a LoadedComponent,
                &'a mut WasmStore<Sandbox>,
            ) -> futures_util::future::BoxFuture<'a, wasmtime::Result<T>>
            + Send
            + 'static,
    ) -> Result<T, CallError> {
        let limits = CallLimits::default();
        let scope = CallScope {
            plugin_id: format!("<{label}>"),
            version: String::new(),
            tenant_id: String::new(),
            integration_id: String::new(),
            allow: AllowList::default(),
            outbound: self.inner.outbound.clone(),
            state: StateBackend::Memory(Arc::default()),
            io: self.inner.guests.host_io(),
        };
        let mut store = Sandbox::store(self.inner.engine.engine(), Arc::new(scope), limits);
        let loaded = loaded.clone();
        let label = label.to_owned();
        let task = async move {
            let outcome = tokio::time::timeout(limits.wall, f(&loaded, &mut store)).await;
            match outcome {
                Ok(Ok(v)) => Ok(v),
                Err(_) => Err(CallError::Timeout(label)),
                // Operators run these calls by hand (`plugin check`): show them the stderr too.
                Ok(Err(err)) => Err(match classify(&err, store.data(), &label) {
                    CallError::Trapped { id, message } => {
                        let tail = store.data().stderr_tail();
                        CallError::Trapped {
                            id,
                            message: if tail.is_empty() {
                                message
                            } else {
                                format!("{message}; guest stderr: {tail}")
                            },
                        }
                    }
                    other => other,
                }),
            }
        };
        self.inner
            .guests
            .run(task)
            .await
            .map_err(|e| CallError::Unavailable {
                id: "<detached>".into(),
                reason: e.to_string(),
            })?
    }

    /// Checks credentials against a location.
    pub async fn validate(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
    ) -> Result<Result<LocationInfo, ProviderError>, CallError> {
        guest_call!(self, Provider, id, ctx, owned(conn), |pre, store| pre
            .validate(store, &conn))
    }

    /// One page of sales.
    pub async fn fetch_transactions(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        request: &FetchRequest,
    ) -> Result<Result<TransactionPage, ProviderError>, CallError> {
        guest_call!(
            self,
            Provider,
            id,
            ctx,
            owned(conn, request),
            |pre, store| pre.fetch_transactions(store, &conn, &request)
        )
    }

    /// Whether a webhook is authentic.
    pub async fn verify_webhook(
        &self,
        id: &str,
        ctx: &CallContext,
        webhook: &Webhook,
        key: &str,
    ) -> Result<bool, CallError> {
        guest_call!(
            self,
            Provider,
            id,
            ctx,
            owned(webhook, key),
            |pre, store| pre.verify_webhook(store, &webhook, &key)
        )
    }

    /// Parses a verified webhook.
    pub async fn parse_webhook(
        &self,
        id: &str,
        ctx: &CallContext,
        webhook: &Webhook,
    ) -> Result<Result<WebhookEvent, ProviderError>, CallError> {
        guest_call!(self, Provider, id, ctx, owned(webhook), |pre, store| pre
            .parse_webhook(store, &webhook))
    }

    /// Parses sales pushed by a local POS.
    pub async fn parse_push(
        &self,
        id: &str,
        ctx: &CallContext,
        body: &[u8],
    ) -> Result<Result<Vec<Transaction>, ProviderError>, CallError> {
        guest_call!(self, Provider, id, ctx, owned(body), |pre, store| pre
            .parse_push(store, &body))
    }

    /// Hands an event to a hook.
    pub async fn on_event(
        &self,
        id: &str,
        ctx: &CallContext,
        event: &HookEvent,
        config: &str,
    ) -> Result<Result<Vec<HookAction>, String>, CallError> {
        guest_call!(self, Hook, id, ctx, owned(event, config), |pre, store| pre
            .on_event(store, &event, &config))
    }

    /// The serving version of a plugin, for callers that want to know which version ran.
    pub fn active_version(&self, id: &str) -> Option<String> {
        self.manifest(id).map(|m| m.version)
    }

    /// Measures a provider component: cold compile, cached load, install-to-active, and the
    /// cost of a `validate` call on a fresh instance (the production path) and on a live one.
    pub async fn bench(&self, wasm: Vec<u8>, calls: usize) -> Result<PluginBench, InstallError> {
        let calls = calls.max(10);
        let (compile, cached_load) = self
            .inner
            .engine
            .measure_compile(&wasm)
            .map_err(InstallError::Invalid)?;
        let started = Instant::now();
        let status = self.install(wasm, "bench").await?;
        let install = started.elapsed();
        let id = status.id.clone();
        let (_, active) = self
            .entry(&id, PluginKind::Provider)
            .map_err(|e| InstallError::Invalid(e.to_string()))?;
        if !matches!(active.component, LoadedComponent::Provider(_)) {
            return Err(InstallError::Invalid(
                "plugin bench measures providers".into(),
            ));
        }
        let conn = Connection {
            location_id: "bench".into(),
            ..Connection::default()
        };
        let ctx = CallContext::default();
        let mut fresh = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            self.validate(&id, &ctx, &conn)
                .await
                .map_err(|e| InstallError::Invalid(e.to_string()))?
                .ok();
            fresh.push(started.elapsed());
        }
        let warm = self
            .run_detached(&active.component, "bench", move |loaded, store| {
                Box::pin(async move {
                    match loaded {
                        LoadedComponent::Provider(pre) => {
                            pre.validate_warm(store, &conn, calls).await
                        }
                        LoadedComponent::Hook(_) => Ok(Vec::new()),
                    }
                })
            })
            .await
            .map_err(|e| InstallError::Invalid(e.to_string()))?;
        Ok(PluginBench {
            plugin: id,
            calls,
            cold_compile_ms: compile.as_secs_f64() * 1e3,
            cached_load_ms: cached_load.as_secs_f64() * 1e3,
            install_to_active_ms: install.as_secs_f64() * 1e3,
            fresh_instance_call_us: percentiles(&mut fresh),
            warm_call_us: percentiles(&mut warm.clone()),
        })
    }

    /// Runs the conformance check of `plugin check`: every function of the component's world
    /// on canned input, each expected to return (any result) without trapping.
    pub async fn conformance(
        &self,
        wasm: &[u8],
    ) -> Result<(Manifest, Vec<(String, Result<String, String>)>), InstallError> {
        let (manifest, loaded, _) = self.inspect(wasm).await?;
        let mut results = Vec::new();
        match &loaded {
            LoadedComponent::Provider(_) => {
                let conn = Connection {
                    credentials: manifest
                        .credential_fields
                        .iter()
                        .map(|f| (f.name.clone(), "conformance-check".into()))
                        .collect(),
                    location_id: "conformance-location".into(),
                    environment: contract::Environment::Sandbox,
                    base_url: Some("http://127.0.0.1:9/".into()),
                };
                let webhook = Webhook {
                    url: "https://example.invalid/webhooks".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: br#"{"conformance":true}"#.to_vec(),
                };
                let c = conn.clone();
                results.push((
                    "validate".into(),
                    self.run_detached(&loaded, "check", move |l, s| {
                        Box::pin(async move {
                            let LoadedComponent::Provider(p) = l else {
                                return Ok("n/a".to_owned());
                            };
                            Ok(match p.validate(s, &c).await? {
                                Ok(l) => format!("ok: location {}", l.id),
                                Err(e) => format!("error: {e}"),
                            })
                        })
                    })
                    .await
                    .map_err(|e| e.to_string()),
                ));
                let c = conn.clone();
                results.push((
                    "fetch-transactions".into(),
                    self.run_detached(&loaded, "check", move |l, s| {
                        Box::pin(async move {
                            let LoadedComponent::Provider(p) = l else {
                                return Ok("n/a".to_owned());
                            };
                            let now = jiff::Timestamp::now().as_millisecond();
                            let req = FetchRequest {
                                start_ms: now - 3_600_000,
                                end_ms: now,
                                cursor: None,
                            };
                            Ok(match p.fetch_transactions(s, &c, &req).await? {
                                Ok(page) => format!("ok: {} transactions", page.transactions.len()),
                                Err(e) => format!("error: {e}"),
                            })
                        })
                    })
                    .await
                    .map_err(|e| e.to_string()),
                ));
                let w = webhook.clone();
                results.push((
                    "verify-webhook".into(),
                    self.run_detached(&loaded, "check", move |l, s| {
                        Box::pin(async move {
                            let LoadedComponent::Provider(p) = l else {
                                return Ok("n/a".to_owned());
                            };
                            let verified = p.verify_webhook(s, &w, "conformance-key").await?;
                            Ok(if verified {
                                "accepted an unsigned delivery (expected a refusal)".to_owned()
                            } else {
                                "ok: unsigned delivery refused".to_owned()
                            })
                        })
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        if r.starts_with("ok") {
                            Ok(r)
                        } else {
                            Err(r)
                        }
                    }),
                ));
                let w = webhook;
                results.push((
                    "parse-webhook".into(),
                    self.run_detached(&loaded, "check", move |l, s| {
                        Box::pin(async move {
                            let LoadedComponent::Provider(p) = l else {
                                return Ok("n/a".to_owned());
                            };
                            Ok(match p.parse_webhook(s, &w).await? {
                                Ok(e) => format!("ok: event {}", e.event_id),
                                Err(e) => format!("error: {e}"),
                            })
                        })
                    })
                    .await
                    .map_err(|e| e.to_string()),
                ));
                results.push((
                    "parse-push".into(),
                    self.run_detached(&loaded, "check", move |l, s| {
                        Box::pin(async move {
                            let LoadedComponent::Provider(p) = l else {
                                return Ok("n/a".to_owned());
                            };
                            Ok(match p.parse_push(s, b"not json").await? {
                                Ok(t) => format!("ok: {} transactions", t.len()),
                                Err(e) => format!("error: {e}"),
                            })
                        })
                    })
                    .await
                    .map_err(|e| e.to_string()),
                ));
            }
            LoadedComponent::Hook(_) => {
                let event = HookEvent {
                    tenant: "conformance".into(),
                    seq: 1,
                    kind: manifest
                        .events
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "new_order".into()),
                    at_ms: jiff::Timestamp::now().as_millisecond(),
                    data: r#"{"id":"o-1","total":2500,"currency":"USD","items":[]}"#.into(),
                };
                results.push((
                    "on-event".into(),
                    self.run_detached(&loaded, "check", move |l, s| {
                        Box::pin(async move {
                            let LoadedComponent::Hook(h) = l else {
                                return Ok("n/a".to_owned());
                            };
                            Ok(match h.on_event(s, &event, "{}").await? {
                                Ok(a) => format!("ok: {} actions", a.len()),
                                Err(e) => format!("error: {e}"),
                            })
                        })
                    })
                    .await
                    .map_err(|e| e.to_string()),
                ));
            }
        }
        Ok((manifest, results))
    }
}

/// What a guest call that returned an error was: the memory cap, the CPU deadline, or a
/// trap (described without its backtrace).
fn classify(err: &wasmtime::Error, sandbox: &Sandbox, id: &str) -> CallError {
    if sandbox.memory_exceeded() {
        CallError::OutOfMemory(id.to_owned())
    } else if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        CallError::Timeout(id.to_owned())
    } else {
        CallError::Trapped {
            id: id.to_owned(),
            message: trap_summary(err),
        }
    }
}

/// The trap itself ("wasm `unreachable` instruction executed"), without the backtrace.
fn trap_summary(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => err
            .to_string()
            .lines()
            .next()
            .unwrap_or("unknown failure")
            .to_owned(),
    }
}

fn wrong_kind(id: &str) -> CallError {
    CallError::WrongKind {
        id: id.to_owned(),
        expected: "provider",
        actual: "hook",
    }
}

/// What `plugin bench` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginBench {
    /// Plugin id.
    pub plugin: String,
    /// Calls timed per figure.
    pub calls: usize,
    /// Compiling the component from scratch.
    pub cold_compile_ms: f64,
    /// Loading the precompiled artifact instead.
    pub cached_load_ms: f64,
    /// `install` (validate, compile, persist, activate) to the first possible call.
    pub install_to_active_ms: f64,
    /// p50 and p99 of a call through the runtime: permit, store, fresh instance, call.
    pub fresh_instance_call_us: [f64; 2],
    /// p50 and p99 of a call on an already-live instance.
    pub warm_call_us: [f64; 2],
}

fn percentiles(times: &mut [Duration]) -> [f64; 2] {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(0.0)
    };
    [at(0.5), at(0.99)]
}

struct Prepared {
    entry: Arc<PluginEntry>,
    active: Arc<ActiveVersion>,
    store: WasmStore<Sandbox>,
    _permit: OwnedSemaphorePermit,
    started: Instant,
}

fn status_of(e: &PluginEntry) -> PluginStatus {
    PluginStatus {
        id: e.id.clone(),
        kind: e.kind,
        state: e.state,
        state_reason: e.state_reason.clone(),
        active_version: e.active.as_ref().map(|a| a.manifest.version.clone()),
        manifest: e.active.as_ref().map(|a| a.manifest.clone()),
        versions: e.versions.clone(),
        approved_hosts: e.approved_hosts.clone(),
        allowed_hosts: e
            .active
            .as_ref()
            .map(|a| a.allow.entries())
            .unwrap_or_default(),
        cpu_ms: e.limits.cpu.as_millis() as u64,
        memory_mb: (e.limits.memory_bytes >> 20) as u64,
        stats: e.stats.view(),
    }
}

/// Checks what `info` returned before anything is stored.
fn validate_manifest(m: &Manifest) -> Result<(), String> {
    let id_ok = (1..=63).contains(&m.id.len())
        && m.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !m.id.starts_with('-');
    if !id_ok {
        return Err(format!(
            "plugin id {:?} must be 1-63 characters of a-z, 0-9 and '-'",
            m.id
        ));
    }
    semver::Version::parse(&m.version)
        .map_err(|e| format!("plugin version {:?} is not semver: {e}", m.version))?;
    if m.name.trim().is_empty() || m.name.len() > 200 {
        return Err("plugin name must be 1-200 characters".into());
    }
    AllowList::parse(m.allowed_hosts.iter().map(String::as_str))
        .map_err(|e| format!("allowed-hosts: {e}"))?;
    Ok(())
}
