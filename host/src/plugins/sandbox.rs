//! One plugin call's sandbox: the store data of a fresh instance, its limits, and the host
//! side of the imports (outbound HTTP, logging, scoped state).
//!
//! A guest gets no ambient authority: WASI is linked only because Rust's standard library
//! imports it, and the context built here has no preopened directories, no environment, no
//! arguments, no sockets and no stdin; stderr is captured (it carries panic messages) and
//! only surfaces in the host's log when a call fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::allowlist::AllowList;
use super::engine::EPOCH_TICK;
use super::executor::HostIo;
use super::logs::{self, LogLine, PluginLogs};
use super::outbound::{Outbound, OutboundError, OutboundRequest, OutboundResponse};
use crate::locks::lock;
use crate::store::{now_micros, Store as Db};

/// Limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallLimits {
    /// CPU time the guest may run (measured in epoch ticks while it executes).
    pub cpu: Duration,
    /// Linear memory cap.
    pub memory_bytes: usize,
    /// Wall-clock bound including time spent waiting on HTTP.
    pub wall: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            cpu: Duration::from_secs(1),
            memory_bytes: 64 * 1024 * 1024,
            wall: Duration::from_secs(60),
        }
    }
}

/// Where `state` reads and writes.
#[derive(Clone, Debug)]
pub(crate) enum StateBackend {
    /// The database, scoped by (plugin, tenant, integration).
    Db(Db),
    /// A throwaway map (install-time `info`, `plugin check`).
    Memory(Arc<Mutex<HashMap<String, Vec<u8>>>>),
}

/// Who is calling and what the call may touch.
#[derive(Clone, Debug)]
pub(crate) struct CallScope {
    /// Plugin id.
    pub plugin_id: String,
    /// Plugin version.
    pub version: String,
    /// Tenant id ("" for operator-level calls).
    pub tenant_id: String,
    /// Integration id ("" when the call is not for an integration).
    pub integration_id: String,
    /// Effective allowlist.
    pub allow: AllowList,
    /// HTTP client.
    pub outbound: Outbound,
    /// State backend.
    pub state: StateBackend,
    /// Where the call's host I/O runs (the API's runtime, not the guest's threads).
    pub io: HostIo,
    /// Where the plugin's own log lines are kept for operators (None: only the host's
    /// log, for calls on components that are not installed).
    pub logs: Option<Arc<PluginLogs>>,
}

/// State limits (documented in the WIT): small values for cursors and tokens.
const MAX_STATE_KEY: usize = 128;
const MAX_STATE_VALUE: usize = 64 * 1024;
const MAX_STATE_KEYS: i64 = 64;

/// Store data of one call.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    scope: Arc<CallScope>,
    stderr: MemoryOutputPipe,
    denied_requests: u32,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past the cap and remembers that it did.
struct MemoryCap {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl Sandbox {
    /// A store for one call, with its memory cap and CPU budget armed.
    pub(crate) fn store(
        engine: &Engine,
        scope: Arc<CallScope>,
        limits: CallLimits,
    ) -> Store<Sandbox> {
        let stderr = MemoryOutputPipe::new(16 * 1024);
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let mut store = Store::new(
            engine,
            Sandbox {
                wasi,
                table: ResourceTable::new(),
                memory: MemoryCap {
                    limit: limits.memory_bytes,
                    exceeded: false,
                },
                scope,
                stderr,
                denied_requests: 0,
            },
        );
        store.limiter(|s| &mut s.memory);
        // Every tick the guest spends running costs one unit of budget; in between, the
        // guest yields to the guest runtime, so one runaway plugin cannot starve the other
        // guests sharing its threads.
        let budget = u64::try_from(limits.cpu.as_millis() / EPOCH_TICK.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut used = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            used += 1;
            if used >= budget {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Whether the guest tried to grow memory past its cap.
    pub(crate) fn memory_exceeded(&self) -> bool {
        self.memory.exceeded
    }

    /// The tail of what the guest wrote to stderr (panic messages), for the log.
    pub(crate) fn stderr_tail(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let tail: String = text
            .chars()
            .rev()
            .take(600)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        tail.trim().to_owned()
    }

    /// Requests refused by the allowlist during this call.
    pub(crate) fn denied_requests(&self) -> u32 {
        self.denied_requests
    }

    pub(super) async fn http_send(
        &mut self,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError> {
        let scope = self.scope.clone();
        let rate_key = if scope.integration_id.is_empty() {
            format!("{}:{}", scope.plugin_id, scope.tenant_id)
        } else {
            scope.integration_id.clone()
        };
        let sender = scope.clone();
        let result = scope
            .io
            .run(async move {
                sender
                    .outbound
                    .send(&sender.allow, &rate_key, request)
                    .await
            })
            .await
            .unwrap_or_else(|e| Err(OutboundError::Connection(e.to_string())));
        match &result {
            Err(OutboundError::Denied(why)) => {
                self.denied_requests += 1;
                metrics::counter!("posbridge_plugin_http_denied_total", "plugin" => scope.plugin_id.clone()).increment(1);
                tracing::warn!(plugin = %scope.plugin_id, version = %scope.version, tenant = %scope.tenant_id,
                    integration = %scope.integration_id, reason = %why, "plugin HTTP request denied");
            }
            Ok(r) => {
                metrics::counter!("posbridge_plugin_http_requests_total", "plugin" => scope.plugin_id.clone(), "status" => r.status.to_string()).increment(1);
            }
            Err(e) => {
                tracing::info!(plugin = %scope.plugin_id, integration = %scope.integration_id, error = %e, "plugin HTTP request failed");
            }
        }
        result
    }

    /// A line the guest logged (the `log` import of every contract version): kept in the
    /// plugin's recent log and written to the host's log, unless over the plugin's rate.
    pub(super) fn guest_log(&self, level: tracing::Level, message: &str) {
        let s = &self.scope;
        let message: String = message.chars().take(logs::MAX_MESSAGE_CHARS).collect();
        if let Some(sink) = &s.logs {
            let line = LogLine {
                time: jiff::Timestamp::now().to_string(),
                level: logs::level_name(level),
                message: message.clone(),
                version: s.version.clone(),
                tenant: s.tenant_id.clone(),
                integration: s.integration_id.clone(),
            };
            if !sink.record(&s.plugin_id, line) {
                return;
            }
        }
        macro_rules! emit {
            ($lvl:expr) => {
                tracing::event!(target: "posbridge::plugin", $lvl, plugin = %s.plugin_id, version = %s.version,
                    tenant = %s.tenant_id, integration = %s.integration_id, "{message}")
            };
        }
        match level {
            tracing::Level::TRACE => emit!(tracing::Level::TRACE),
            tracing::Level::DEBUG => emit!(tracing::Level::DEBUG),
            tracing::Level::INFO => emit!(tracing::Level::INFO),
            tracing::Level::WARN => emit!(tracing::Level::WARN),
            _ => emit!(tracing::Level::ERROR),
        }
    }

    pub(super) async fn state_get(&mut self, key: &str) -> wasmtime::Result<Option<Vec<u8>>> {
        let s = self.scope.clone();
        let db = match &s.state {
            StateBackend::Memory(map) => return Ok(lock(map).get(key).cloned()),
            StateBackend::Db(db) => db.clone(),
        };
        let key = key.to_owned();
        let io = s.io.clone();
        Ok(io
            .run(async move {
                sqlx::query_scalar(
                    "SELECT value FROM plugin_state WHERE plugin_id = $1 AND tenant_id = $2 AND integration_id = $3 AND key = $4",
                )
                .bind(&s.plugin_id)
                .bind(&s.tenant_id)
                .bind(&s.integration_id)
                .bind(key)
                .fetch_optional(db.reader())
                .await
            })
            .await??)
    }

    pub(super) async fn state_set(
        &mut self,
        key: &str,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        if key.is_empty() || key.len() > MAX_STATE_KEY {
            return Ok(Err(format!("state keys must be 1-{MAX_STATE_KEY} bytes")));
        }
        if value.len() > MAX_STATE_VALUE {
            return Ok(Err(format!(
                "state values must be at most {MAX_STATE_VALUE} bytes"
            )));
        }
        let s = self.scope.clone();
        match &s.state {
            StateBackend::Memory(map) => {
                let mut map = lock(map);
                if !map.contains_key(key) && map.len() as i64 >= MAX_STATE_KEYS {
                    return Ok(Err(format!("at most {MAX_STATE_KEYS} state keys")));
                }
                map.insert(key.to_owned(), value);
                Ok(Ok(()))
            }
            StateBackend::Db(db) => {
                let (db, key, io, s) = (db.clone(), key.to_owned(), s.io.clone(), s.clone());
                io.run(async move { set_in_db(&db, &s, &key, value).await })
                    .await?
            }
        }
    }

    pub(super) async fn state_delete(&mut self, key: &str) -> wasmtime::Result<()> {
        let s = self.scope.clone();
        match &s.state {
            StateBackend::Memory(map) => {
                lock(map).remove(key);
            }
            StateBackend::Db(db) => {
                let (db, key, io, s) = (db.clone(), key.to_owned(), s.io.clone(), s.clone());
                io.run(async move {
                    sqlx::query(
                        "DELETE FROM plugin_state WHERE plugin_id = $1 AND tenant_id = $2 AND integration_id = $3 AND key = $4",
                    )
                    .bind(&s.plugin_id)
                    .bind(&s.tenant_id)
                    .bind(&s.integration_id)
                    .bind(key)
                    .execute(db.writer())
                    .await
                })
                .await??;
            }
        }
        Ok(())
    }
}

/// `state.set` against the database (runs on the API's runtime).
async fn set_in_db(
    db: &Db,
    s: &CallScope,
    key: &str,
    value: Vec<u8>,
) -> wasmtime::Result<Result<(), String>> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM plugin_state WHERE plugin_id = $1 AND tenant_id = $2 AND integration_id = $3 AND key <> $4",
    )
    .bind(&s.plugin_id)
    .bind(&s.tenant_id)
    .bind(&s.integration_id)
    .bind(key)
    .fetch_one(db.reader())
    .await?;
    if count >= MAX_STATE_KEYS {
        return Ok(Err(format!("at most {MAX_STATE_KEYS} state keys")));
    }
    sqlx::query(
        "INSERT INTO plugin_state (plugin_id, tenant_id, integration_id, key, value, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (plugin_id, tenant_id, integration_id, key)
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(&s.plugin_id)
    .bind(&s.tenant_id)
    .bind(&s.integration_id)
    .bind(key)
    .bind(value)
    .bind(now_micros())
    .execute(db.writer())
    .await?;
    Ok(Ok(()))
}
