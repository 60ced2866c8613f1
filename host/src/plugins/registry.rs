//! Installed plugins: the rows in the database and the in-memory catalog built from them.
//! The catalog is swapped atomically, so a call that started on one version finishes on it
//! while new calls see the new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::allowlist::AllowList;
use super::contract::{Manifest, PluginKind};
use super::engine::PluginEngine;
use super::sandbox::CallLimits;
use super::wit::LoadedComponent;
use crate::locks::lock;
use crate::store::{rfc3339, Store, StoreError};

/// Operator-visible state of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Serving calls.
    Active,
    /// Turned off by an operator.
    Disabled,
    /// Turned off by the circuit breaker after repeated failures.
    Quarantined,
}

impl PluginState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            PluginState::Active => "active",
            PluginState::Disabled => "disabled",
            PluginState::Quarantined => "quarantined",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "active" => PluginState::Active,
            "quarantined" => PluginState::Quarantined,
            _ => PluginState::Disabled,
        }
    }
}

/// The version that serves calls.
pub(super) struct ActiveVersion {
    /// Its manifest.
    pub manifest: Manifest,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// Ready to instantiate.
    pub component: LoadedComponent,
    /// Declared hosts plus the operator's approvals.
    pub allow: AllowList,
}

/// Who signed an installed version, as verified when it was installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Signer {
    /// The signing key's id (first 8 bytes of the SHA-256 of its public key, hex).
    pub key_id: String,
    /// The name the key was trusted under then (`PUT /admin/plugin-signers`, or the
    /// build key for bundled plugins); None for a valid signature by an untrusted key.
    pub name: Option<String>,
}

/// One installed version, as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    /// Semver.
    pub version: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// How it arrived (`upload`, `cli`, `bundled`, `watched`).
    pub source: String,
    /// When.
    pub installed_at: String,
    /// Who signed it; None when unsigned.
    pub signer: Option<Signer>,
}

/// Call statistics of a plugin in this process; kept across version swaps.
#[derive(Debug)]
pub(super) struct PluginStats {
    pub(super) calls: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) consecutive_failures: AtomicU64,
    pub(super) http_denied: AtomicU64,
    pub(super) latency_us: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for PluginStats {
    fn default() -> Self {
        PluginStats {
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            http_denied: AtomicU64::new(0),
            // Three significant figures from 1 µs to 10 minutes.
            latency_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }
}

/// Stats as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    /// Calls made.
    pub calls: u64,
    /// Calls that trapped, timed out or ran out of memory.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// Outbound requests refused by the allowlist.
    pub http_denied: u64,
    /// Median call time, µs.
    pub p50_us: u64,
    /// 99th percentile call time, µs.
    pub p99_us: u64,
}

impl PluginStats {
    pub(super) fn view(&self) -> StatsView {
        let h = lock(&self.latency_us);
        StatsView {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            http_denied: self.http_denied.load(Ordering::Relaxed),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
        }
    }
}

/// A plugin in the catalog.
pub(super) struct PluginEntry {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: PluginKind,
    /// State.
    pub state: PluginState,
    /// Why it is quarantined or disabled.
    pub state_reason: Option<String>,
    /// The serving version (None when no version is active).
    pub active: Option<Arc<ActiveVersion>>,
    /// Every installed version.
    pub versions: Vec<VersionSummary>,
    /// Operator-approved extra hosts.
    pub approved_hosts: Vec<String>,
    /// Per-call limits.
    pub limits: CallLimits,
    /// Statistics.
    pub stats: Arc<PluginStats>,
}

/// The whole catalog, replaced as a unit.
pub(super) type Catalog = HashMap<String, Arc<PluginEntry>>;

/// Loads the catalog from the database, reusing already-loaded versions of `previous`.
pub(super) async fn load_catalog(
    store: &Store,
    engine: &PluginEngine,
    previous: &Catalog,
    stats: &Mutex<HashMap<String, Arc<PluginStats>>>,
) -> Result<Catalog, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, active_version, state, state_reason, approved_hosts, cpu_ms, memory_bytes FROM plugins ORDER BY id",
    )
    .fetch_all(store.reader())
    .await?;
    let version_rows = sqlx::query(
        "SELECT plugin_id, version, sha256, source, installed_at, signer_key_id, signer_name FROM plugin_versions ORDER BY plugin_id, installed_at",
    )
    .fetch_all(store.reader())
    .await?;
    let mut versions: HashMap<String, Vec<VersionSummary>> = HashMap::new();
    for row in &version_rows {
        versions
            .entry(row.try_get("plugin_id")?)
            .or_default()
            .push(VersionSummary {
                version: row.try_get("version")?,
                sha256: row.try_get("sha256")?,
                source: row.try_get("source")?,
                installed_at: rfc3339(row.try_get("installed_at")?),
                signer: row
                    .try_get::<Option<String>, _>("signer_key_id")?
                    .map(|key_id| -> Result<Signer, sqlx::Error> {
                        Ok(Signer {
                            key_id,
                            name: row.try_get("signer_name")?,
                        })
                    })
                    .transpose()?,
            });
    }
    let mut catalog = Catalog::new();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "hook" => PluginKind::Hook,
            _ => PluginKind::Provider,
        };
        let approved_hosts: Vec<String> =
            serde_json::from_str(&row.try_get::<String, _>("approved_hosts")?).unwrap_or_default();
        let active_version: Option<String> = row.try_get("active_version")?;
        let plugin_versions = versions.remove(&id).unwrap_or_default();
        let active = match active_version {
            Some(version) => {
                load_active(
                    store,
                    engine,
                    previous.get(&id),
                    &id,
                    &version,
                    &approved_hosts,
                )
                .await?
            }
            None => None,
        };
        let cpu_ms: i64 = row.try_get("cpu_ms")?;
        let memory_bytes: i64 = row.try_get("memory_bytes")?;
        let stats = lock(stats).entry(id.clone()).or_default().clone();
        catalog.insert(
            id.clone(),
            Arc::new(PluginEntry {
                kind,
                state: PluginState::parse(&row.try_get::<String, _>("state")?),
                state_reason: row.try_get("state_reason")?,
                active,
                versions: plugin_versions,
                approved_hosts,
                limits: CallLimits {
                    cpu: Duration::from_millis(u64::try_from(cpu_ms).unwrap_or(1000)),
                    memory_bytes: usize::try_from(memory_bytes).unwrap_or(64 << 20),
                    ..CallLimits::default()
                },
                stats,
                id,
            }),
        );
    }
    Ok(catalog)
}

async fn load_active(
    store: &Store,
    engine: &PluginEngine,
    previous: Option<&Arc<PluginEntry>>,
    id: &str,
    version: &str,
    approved: &[String],
) -> Result<Option<Arc<ActiveVersion>>, StoreError> {
    let row = sqlx::query(
        "SELECT sha256, manifest FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(version)
    .fetch_optional(store.reader())
    .await?;
    let Some(row) = row else {
        tracing::error!(plugin = %id, %version, "active version missing from the database");
        return Ok(None);
    };
    let sha256: String = row.try_get("sha256")?;
    let manifest: Manifest = match serde_json::from_str(&row.try_get::<String, _>("manifest")?) {
        Ok(m) => m,
        Err(err) => {
            tracing::error!(plugin = %id, %version, error = %err, "stored manifest unreadable");
            return Ok(None);
        }
    };
    let allow = match AllowList::parse(
        manifest
            .allowed_hosts
            .iter()
            .chain(approved)
            .map(String::as_str),
    ) {
        Ok(a) => a,
        Err(err) => {
            tracing::error!(plugin = %id, error = %err, "stored allowlist unreadable");
            AllowList::default()
        }
    };
    if let Some(prev) = previous.and_then(|p| p.active.as_ref()) {
        if prev.sha256 == sha256 {
            return Ok(Some(Arc::new(ActiveVersion {
                manifest,
                sha256,
                component: prev.component.clone(),
                allow,
            })));
        }
    }
    let wasm: Vec<u8> = sqlx::query_scalar(
        "SELECT wasm FROM plugin_versions WHERE plugin_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(version)
    .fetch_one(store.reader())
    .await?;
    let component = match engine
        .component(&sha256, &wasm)
        .and_then(|(c, _)| LoadedComponent::detect(engine.linker(), &c))
    {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(plugin = %id, %version, error = %err, "installed plugin no longer loads");
            return Ok(None);
        }
    };
    Ok(Some(Arc::new(ActiveVersion {
        manifest,
        sha256,
        component,
        allow,
    })))
}
