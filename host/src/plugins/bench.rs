//! `plugin bench`: what a provider component costs to compile, load, install and call.

use std::time::{Duration, Instant};

use super::contract::{Connection, PluginKind};
use super::runtime::{CallContext, Plugins};
use super::wit::LoadedComponent;
use super::InstallError;

impl Plugins {
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
