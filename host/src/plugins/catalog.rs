//! The catalog: which plugins and versions are installed, which version serves, and the
//! operator's settings (hosts, limits, state), kept in the database and mirrored in memory.
//! Every write bumps a generation so other processes (the CLI, other hosts) reload.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::allowlist::AllowList;
use super::contract::{Manifest, PluginKind};
use super::engine::MAX_PLUGIN_MEMORY;
use super::registry::{self, PluginEntry, PluginState, Signer, StatsView, VersionSummary};
use super::runtime::Plugins;
use super::wit::LoadedComponent;
use super::{bundled, AdminError, InstallError};
use crate::locks::lock;
use crate::store::{now_micros, Backend, StoreError};

/// The `settings` row every catalog write changes, so other processes know to reload.
const GENERATION_KEY: &str = "plugins_generation";

/// PostgreSQL channel on which every catalog write announces itself (with its
/// transaction, so at commit); `crate::events::hub` listens and wakes the watcher. Named
/// here, not there, because the plugin runtime depends on nothing of the host's.
pub(crate) const CATALOG_CHANNEL: &str = "posbridge_plugins";

/// A plugin as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
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
    /// Who signed the serving version (None: unsigned).
    pub signer: Option<Signer>,
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

impl Plugins {
    /// Installs the plugins built into the binary; failures are logged, not fatal.
    pub(super) async fn install_bundled(&self) {
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
    pub(super) async fn reload(&self, force: bool) -> Result<(), StoreError> {
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

    /// Reloads the catalog when `changed` is signalled (another process announced a
    /// change, see [`CATALOG_CHANNEL`]) and polls for changes at the reload interval (the
    /// safety net for a missed announcement, and the only way on SQLite), until `shutdown`.
    pub(crate) fn spawn_watcher(
        &self,
        shutdown: CancellationToken,
        changed: Arc<tokio::sync::Notify>,
    ) {
        let plugins = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(plugins.inner.options.reload_interval);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = changed.notified() => {
                        if let Err(err) = plugins.reload(false).await {
                            tracing::warn!(error = %err, "plugin catalog reload failed");
                        }
                    }
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
        .execute(&mut *conn)
        .await?;
        if self.inner.store.backend() == Backend::Postgres {
            // Delivered at commit: other hosts reload within milliseconds, not a poll.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CATALOG_CHANNEL)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Compiles `wasm`, checks it implements a known world and reads its manifest, without
    /// installing anything.
    pub(crate) async fn inspect(
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
        let signer = self.check_signature(&wasm, source).await?;
        let (manifest, _loaded, sha256) = self.inspect(&wasm).await?;
        let now = now_micros();
        let mut tx = self.inner.store.begin().await?;
        let existing: Option<String> = sqlx::query_scalar("SELECT kind FROM plugins WHERE id = $1")
            .bind(&manifest.id)
            .fetch_optional(&mut tx)
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
                .execute(&mut tx)
                .await?;
            }
        }
        let manifest_json =
            serde_json::to_string(&manifest).map_err(|e| InstallError::Invalid(e.to_string()))?;
        let inserted = sqlx::query(
            "INSERT INTO plugin_versions (plugin_id, version, contract, sha256, manifest, wasm, source, installed_at, signer_key_id, signer_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (plugin_id, version) DO NOTHING",
        )
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(&manifest.contract)
        .bind(&sha256)
        .bind(&manifest_json)
        .bind(wasm)
        .bind(source)
        .bind(now)
        .bind(signer.as_ref().map(|s| s.key_id.clone()))
        .bind(signer.as_ref().and_then(|s| s.name.clone()))
        .execute(&mut tx)
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
            .execute(&mut tx)
            .await?;
        }
        self.bump_generation(&mut tx).await?;
        tx.commit().await.map_err(StoreError::from)?;
        if activate {
            self.reset_failures(&manifest.id);
        }
        self.reload(true).await?;
        tracing::info!(plugin = %manifest.id, version = %manifest.version, kind = manifest.kind.as_str(), %source,
            signer = ?signer.as_ref().map(|s| (&s.key_id, &s.name)),
            millis = started.elapsed().as_millis() as u64, "plugin installed");
        self.status(&manifest.id)
            .ok_or_else(|| InstallError::Invalid("installed plugin did not load".into()))
    }

    /// Makes `version` the serving version (upgrade or roll back) and clears quarantine.
    pub(crate) async fn activate(
        &self,
        id: &str,
        version: &str,
    ) -> Result<PluginStatus, AdminError> {
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
    pub(crate) async fn disable(&self, id: &str) -> Result<PluginStatus, AdminError> {
        self.update_plugin(id, "UPDATE plugins SET state = 'disabled', state_reason = $1, updated_at = $2 WHERE id = $3", Some("disabled by an operator")).await?;
        tracing::info!(plugin = %id, "plugin disabled");
        self.status(id)
            .ok_or_else(|| AdminError::NotFound(id.to_owned()))
    }

    /// Deletes an installed version that is not serving.
    pub(crate) async fn delete_version(&self, id: &str, version: &str) -> Result<(), AdminError> {
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
                .execute(&mut tx)
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
    pub(crate) async fn set_hosts(
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
    pub(crate) async fn set_limits(
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
        .execute(&mut tx)
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

    /// Runs one `UPDATE plugins … WHERE id = $3` (`$1` = `first`, `$2` = now), bumps the
    /// generation and reloads; the quarantine path on the call side uses it too.
    pub(super) async fn update_plugin(
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
            .execute(&mut tx)
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

    /// Clears the failure streak, so a re-activated plugin starts with a clean breaker.
    pub(super) fn reset_failures(&self, id: &str) {
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
    pub(crate) fn allows(&self, id: &str, url: &str) -> Result<(), String> {
        let catalog = self.inner.catalog.load();
        let entry = catalog.get(id).ok_or_else(|| format!("no plugin {id:?}"))?;
        let active = entry
            .active
            .as_ref()
            .ok_or_else(|| format!("plugin {id:?} has no active version"))?;
        active.allow.check(url).map(|_| ())
    }
}

fn status_of(e: &PluginEntry) -> PluginStatus {
    PluginStatus {
        id: e.id.clone(),
        kind: e.kind,
        state: e.state,
        state_reason: e.state_reason.clone(),
        active_version: e.active.as_ref().map(|a| a.manifest.version.clone()),
        manifest: e.active.as_ref().map(|a| a.manifest.clone()),
        signer: e.active.as_ref().and_then(|a| {
            e.versions
                .iter()
                .find(|v| v.version == a.manifest.version)
                .and_then(|v| v.signer.clone())
        }),
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
