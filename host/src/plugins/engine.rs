//! The process's one wasmtime [`Engine`]: configuration, the epoch ticker that enforces CPU
//! deadlines, the shared [`Linker`], and compilation with an on-disk artifact cache keyed by
//! the component's SHA-256, so a restart loads precompiled code instead of recompiling.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::sandbox::Sandbox;
use super::wit;
use crate::locks::lock;

/// Epoch tick: the granularity of CPU deadlines. 10 ms keeps the ticker's cost negligible
/// and deadlines accurate to a hundredth of the default 1 s budget.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest memory cap an operator may give a plugin; the pool reserves address space for it.
pub(super) const MAX_PLUGIN_MEMORY: usize = 512 * 1024 * 1024;

/// Engine setup failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration or the linker setup.
    #[error("wasmtime setup failed: {0}")]
    Wasmtime(String),
    /// The artifact cache directory cannot be created.
    #[error("cannot create plugin cache directory {0}: {1}")]
    CacheDir(PathBuf, std::io::Error),
}

/// Where a component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArtifactSource {
    /// Already loaded in this process.
    Memory,
    /// Precompiled artifact read from the disk cache.
    DiskCache,
    /// Compiled now.
    Compiled,
}

/// Compiles and caches components. Cheap to clone.
#[derive(Clone)]
pub(super) struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<Sandbox>>,
    cache_dir: Option<PathBuf>,
    loaded: Arc<Mutex<HashMap<String, Component>>>,
}

impl PluginEngine {
    /// Builds the engine. `max_concurrent_calls` sizes the instance pool; `cache_dir` holds
    /// precompiled artifacts (none: compile on every start).
    pub(super) fn new(
        max_concurrent_calls: u32,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, EngineError> {
        let wt = |e: wasmtime::Error| EngineError::Wasmtime(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::new();
        let n = max_concurrent_calls.max(1);
        // A Rust wasip2 component is a handful of core instances (the program plus the WASI
        // adapter and its shims), each with at most a couple of memories and tables.
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(MAX_PLUGIN_MEMORY);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(wt)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
        wit::add_to_linker(&mut linker).map_err(wt)?;
        if let Some(dir) = &cache_dir {
            create_private_dir(dir).map_err(|e| EngineError::CacheDir(dir.clone(), e))?;
        }
        spawn_epoch_ticker(&engine);
        Ok(PluginEngine {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            loaded: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The engine.
    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with every host import.
    pub(super) fn linker(&self) -> &Linker<Sandbox> {
        &self.linker
    }

    /// The compiled component for `bytes` (whose hex SHA-256 is `sha256`): from memory, the
    /// disk cache, or a fresh compilation that is then cached.
    pub(super) fn component(
        &self,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<(Component, ArtifactSource), String> {
        if let Some(c) = lock(&self.loaded).get(sha256) {
            return Ok((c.clone(), ArtifactSource::Memory));
        }
        let started = Instant::now();
        if let Some(path) = self.artifact_path(sha256) {
            if path.exists() {
                // SAFETY: the file was written by `Component::serialize` of this same engine
                // configuration into our private cache directory; wasmtime still checks the
                // engine version and configuration and refuses incompatible artifacts.
                match unsafe { Component::deserialize_file(&self.engine, &path) } {
                    Ok(component) => {
                        tracing::info!(sha256 = %&sha256[..12], micros = started.elapsed().as_micros() as u64, "plugin loaded from artifact cache");
                        metrics::counter!("posbridge_plugin_artifacts_total", "source" => "disk_cache").increment(1);
                        lock(&self.loaded).insert(sha256.to_owned(), component.clone());
                        return Ok((component, ArtifactSource::DiskCache));
                    }
                    Err(err) => tracing::warn!(error = %err, "stale plugin artifact; recompiling"),
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}"))?;
        tracing::info!(sha256 = %&sha256[..12], millis = started.elapsed().as_millis() as u64, "plugin compiled");
        metrics::counter!("posbridge_plugin_artifacts_total", "source" => "compiled").increment(1);
        if let Some(path) = self.artifact_path(sha256) {
            if let Err(err) = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|code| write_atomically(&path, &code).map_err(|e| e.to_string()))
            {
                tracing::warn!(error = %err, "could not cache the plugin artifact");
            }
        }
        lock(&self.loaded).insert(sha256.to_owned(), component.clone());
        Ok((component, ArtifactSource::Compiled))
    }

    /// Compiles without any cache and returns how long it took (for `plugin bench`), and
    /// how long loading the precompiled artifact of the same component takes.
    pub(super) fn measure_compile(&self, bytes: &[u8]) -> Result<(Duration, Duration), String> {
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}"))?;
        let compile = started.elapsed();
        let code = component.serialize().map_err(|e| format!("{e:#}"))?;
        let started = Instant::now();
        // SAFETY: `code` was produced by `serialize` on this very engine just above.
        let loaded =
            unsafe { Component::deserialize(&self.engine, &code) }.map_err(|e| format!("{e:#}"))?;
        let load = started.elapsed();
        drop(loaded);
        Ok((compile, load))
    }

    fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}.cwasm")))
    }
}

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("posbridge-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "epoch ticker not started: plugin CPU deadlines will not fire");
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
