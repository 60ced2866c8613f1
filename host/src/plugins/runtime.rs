//! The call path: a [`Plugins`] handle, and how one call into a guest runs — a permit, a
//! fresh sandboxed instance of the active version, the CPU deadline and wall-clock limit,
//! then the outcome recorded in the plugin's statistics and circuit breaker.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store as WasmStore;

use super::allowlist::AllowList;
use super::contract::{
    Availability, Capability, CatalogPage, CatalogRequest, ConfigProblem, Connection, FetchRequest,
    HookAction, HookEvent, LocationInfo, Order, OrderStatus, PluginKind, PricedOrder,
    ProviderError, Transaction, TransactionPage, Webhook, WebhookEvent,
};
use super::engine::PluginEngine;
use super::executor::{GuestExecutor, GUEST_NICE};
use super::logs::{PluginLogView, PluginLogs};
use super::outbound::Outbound;
use super::registry::{ActiveVersion, Catalog, PluginEntry, PluginState, PluginStats};
use super::sandbox::{CallLimits, CallScope, Sandbox, StateBackend};
use super::wit::LoadedComponent;
use super::{CallError, PluginOptions, StartError};
use crate::locks::lock;
use crate::store::Store;

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
                return Err(CallError::wrong_kind(
                    &call.entry.id,
                    PluginKind::$kind,
                    active.component.kind(),
                ));
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

/// Who a call is for.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallContext {
    /// Tenant id ("" for operator-level calls).
    pub tenant_id: String,
    /// Integration id ("" when not for an integration).
    pub integration_id: String,
}

/// The plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Plugins {
    pub(super) inner: Arc<Inner>,
}

/// What every clone of [`Plugins`] shares; the sibling modules (catalog, check, bench)
/// reach it directly.
pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) engine: PluginEngine,
    pub(super) outbound: Outbound,
    pub(super) catalog: ArcSwap<Catalog>,
    pub(super) stats: Mutex<HashMap<String, Arc<PluginStats>>>,
    pub(super) reload: tokio::sync::Mutex<Option<String>>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) guests: GuestExecutor,
    pub(super) options: PluginOptions,
    pub(super) logs: Arc<PluginLogs>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("options", &self.inner.options)
            .finish()
    }
}

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
                logs: Arc::new(PluginLogs::new(
                    options.log_lines,
                    options.log_rate_per_second,
                )),
                options,
            }),
        };
        plugins.reload(true).await?;
        if plugins.inner.options.install_bundled {
            plugins.install_bundled().await;
        }
        Ok(plugins)
    }

    /// The catalog entry and serving version of `id`, if it is of `kind` and may serve.
    pub(super) fn entry(
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
            return Err(CallError::wrong_kind(id, kind, entry.kind));
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
            logs: Some(self.inner.logs.clone()),
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
    pub(super) async fn run_detached<T: Send + 'static>(
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
            logs: None,
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
                Ok(Err(err)) => Err(classify_with_stderr(&err, store.data(), &label)),
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

    /// What plugin `id` logged recently in this process; None if no such plugin is installed.
    pub fn logs(&self, id: &str) -> Option<PluginLogView> {
        self.inner
            .catalog
            .load()
            .contains_key(id)
            .then(|| self.inner.logs.view(id))
    }

    /// Checks credentials against a location.
    pub(crate) async fn validate(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
    ) -> Result<Result<LocationInfo, ProviderError>, CallError> {
        guest_call!(self, Provider, id, ctx, owned(conn), |pre, store| pre
            .validate(store, &conn))
    }

    /// One page of sales.
    pub(crate) async fn fetch_transactions(
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
    pub(crate) async fn verify_webhook(
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
    pub(crate) async fn parse_webhook(
        &self,
        id: &str,
        ctx: &CallContext,
        webhook: &Webhook,
    ) -> Result<Result<WebhookEvent, ProviderError>, CallError> {
        guest_call!(self, Provider, id, ctx, owned(webhook), |pre, store| pre
            .parse_webhook(store, &webhook))
    }

    /// Parses sales pushed by a local POS.
    pub(crate) async fn parse_push(
        &self,
        id: &str,
        ctx: &CallContext,
        body: &[u8],
    ) -> Result<Result<Vec<Transaction>, ProviderError>, CallError> {
        guest_call!(self, Provider, id, ctx, owned(body), |pre, store| pre
            .parse_push(store, &body))
    }

    /// Refuses up front, without a call, an operation the serving version of provider `id`
    /// does not declare: a clear "provider cannot …" instead of a late failure.
    pub(crate) fn require(&self, id: &str, capability: Capability) -> Result<(), CallError> {
        let (_, active) = self.entry(id, PluginKind::Provider)?;
        if active.manifest.can(capability) {
            Ok(())
        } else {
            Err(CallError::Incapable {
                id: id.to_owned(),
                what: capability.describe(),
            })
        }
    }

    /// Makes `order` in the POS, idempotent on its `our_order_id` (capability
    /// `submit-orders`). A `TimedOut` error means it may have landed: [`Self::lookup_order`]
    /// before submitting again.
    pub(crate) async fn submit_order(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        order: &Order,
    ) -> Result<Result<OrderStatus, ProviderError>, CallError> {
        self.require(id, Capability::SubmitOrders)?;
        guest_call!(self, Provider, id, ctx, owned(conn, order), |pre, store| {
            pre.submit_order(store, &conn, &order)
        })
    }

    /// The POS order made for `our_order_id`, if any (capability `submit-orders`).
    pub(crate) async fn lookup_order(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        our_order_id: &str,
    ) -> Result<Result<Option<OrderStatus>, ProviderError>, CallError> {
        self.require(id, Capability::SubmitOrders)?;
        guest_call!(
            self,
            Provider,
            id,
            ctx,
            owned(conn, our_order_id),
            |pre, store| pre.lookup_order(store, &conn, &our_order_id)
        )
    }

    /// The POS's price for `order`, nothing stored (capability `price-orders`).
    pub(crate) async fn price_order(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        order: &Order,
    ) -> Result<Result<PricedOrder, ProviderError>, CallError> {
        self.require(id, Capability::PriceOrders)?;
        guest_call!(self, Provider, id, ctx, owned(conn, order), |pre, store| {
            pre.price_order(store, &conn, &order)
        })
    }

    /// An order's state in the POS (capability `order-status`).
    pub(crate) async fn order_status(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        provider_order_id: &str,
    ) -> Result<Result<OrderStatus, ProviderError>, CallError> {
        self.require(id, Capability::OrderStatus)?;
        guest_call!(
            self,
            Provider,
            id,
            ctx,
            owned(conn, provider_order_id),
            |pre, store| pre.order_status(store, &conn, &provider_order_id)
        )
    }

    /// One page of the provider's catalog (capability `fetch-catalog`; a `since` token is
    /// only passed to a provider that fetches incrementally, so others answer snapshots).
    pub(crate) async fn fetch_catalog(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        request: &CatalogRequest,
    ) -> Result<Result<CatalogPage, ProviderError>, CallError> {
        self.require(id, Capability::FetchCatalog)?;
        let mut request = request.clone();
        if self
            .require(id, Capability::FetchCatalogIncremental)
            .is_err()
        {
            request.since = None;
        }
        guest_call!(self, Provider, id, ctx, owned(conn), |pre, store| pre
            .fetch_catalog(store, &conn, &request))
    }

    /// Availability of `ids`, or of everything not plainly in stock when empty
    /// (capability `read-availability`).
    pub(crate) async fn get_availability(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        ids: &[String],
    ) -> Result<Result<Vec<Availability>, ProviderError>, CallError> {
        self.require(id, Capability::ReadAvailability)?;
        guest_call!(self, Provider, id, ctx, owned(conn, ids), |pre, store| pre
            .get_availability(store, &conn, &ids))
    }

    /// Sets availability in the POS (capability `write-availability`).
    pub(crate) async fn set_availability(
        &self,
        id: &str,
        ctx: &CallContext,
        conn: &Connection,
        changes: &[Availability],
    ) -> Result<Result<Vec<Availability>, ProviderError>, CallError> {
        self.require(id, Capability::WriteAvailability)?;
        guest_call!(
            self,
            Provider,
            id,
            ctx,
            owned(conn, changes),
            |pre, store| pre.set_availability(store, &conn, &changes)
        )
    }

    /// Hands an event to a hook.
    pub(crate) async fn on_event(
        &self,
        id: &str,
        ctx: &CallContext,
        event: &HookEvent,
        config: &str,
    ) -> Result<Result<Vec<HookAction>, String>, CallError> {
        guest_call!(self, Hook, id, ctx, owned(event, config), |pre, store| pre
            .on_event(store, &event, &config))
    }

    /// Asks a hook whether `config` (JSON text) is a valid binding configuration: its
    /// `validate-config` (contract 0.2 on). A 0.1 hook has none and accepts any object, as
    /// it always did, without a call.
    pub(crate) async fn validate_config(
        &self,
        id: &str,
        ctx: &CallContext,
        config: &str,
    ) -> Result<Result<(), Vec<ConfigProblem>>, CallError> {
        let (_, active) = self.entry(id, PluginKind::Hook)?;
        if let LoadedComponent::Hook(pre) = &active.component {
            if !pre.validates_config() {
                return Ok(Ok(()));
            }
        }
        guest_call!(self, Hook, id, ctx, owned(config), |pre, store| pre
            .validate_config(store, &config))
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

/// [`classify`], with the guest's stderr in a trap's message: for calls an operator or
/// developer runs by hand (`plugin check`, `plugin test`), where it is theirs to read.
pub(super) fn classify_with_stderr(
    err: &wasmtime::Error,
    sandbox: &Sandbox,
    id: &str,
) -> CallError {
    match classify(err, sandbox, id) {
        CallError::Trapped { id, message } => {
            let tail = sandbox.stderr_tail();
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

struct Prepared {
    entry: Arc<PluginEntry>,
    active: Arc<ActiveVersion>,
    store: WasmStore<Sandbox>,
    _permit: OwnedSemaphorePermit,
    started: Instant,
}
