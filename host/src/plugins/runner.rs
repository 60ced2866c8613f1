//! `posbridge plugin test`: runs a component the way the host would (same engine, sandbox
//! and per-call limits: CPU deadline, memory cap, wall-clock timeout, outbound allowlist)
//! but with no server and no database: its outbound HTTP is answered from recorded fixtures
//! and its state lives in memory for the run. A provider syncs (every page, following its
//! cursors) or parses a webhook body; a hook handles one event. What it produces and what
//! it logged come back as a [`TestRun`].
//!
//! The fixture format is documented in `plugins/README.md` ("Testing a plugin locally").

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use wasmtime::Store as WasmStore;

use super::allowlist::AllowList;
use super::contract::{
    Connection, Environment, FetchRequest, HookAction, HookEvent, Manifest, Webhook,
};
use super::engine::PluginEngine;
use super::executor::GuestExecutor;
use super::logs::{LogLine, PluginLogs};
use super::outbound::{Method, Outbound, OutboundResponse, RecordedHttp};
use super::sandbox::{CallLimits, CallScope, Sandbox, StateBackend};
use super::wit::LoadedComponent;
use super::{CallError, PluginOptions};
use crate::locks::lock;

/// Pages a sync may take before the runner calls it a loop.
const MAX_PAGES: usize = 1000;

/// Why a test run could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The fixture file could not be read or parsed.
    #[error("fixtures {path}: {reason}")]
    Fixtures {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The component does not load (not a component, unknown world, engine failure).
    #[error("{0}")]
    Load(String),
    /// The call trapped, timed out or ran out of memory.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The plugin asked for HTTP the fixtures do not record.
    #[error(
        "the plugin made requests no fixture answers:\n  {}\nrecorded:\n  {}",
        unmatched.join("\n  "),
        if recorded.is_empty() { "(none)".to_owned() } else { recorded.join("\n  ") }
    )]
    Unmatched {
        /// `METHOD url` of each unanswered request.
        unmatched: Vec<String>,
        /// `METHOD url` of each recorded exchange, to spot the difference.
        recorded: Vec<String>,
    },
    /// The input does not fit the component (a hook run on a provider, no sync window...).
    #[error("{0}")]
    Usage(String),
    /// The plugin returned an error or refused the input.
    #[error("the plugin returned an error: {0}")]
    Plugin(String),
}

/// A fixture file: the connection a provider is called with, the sync window, hosts the
/// operator would approve, and the recorded HTTP exchanges.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    /// What `validate`, `fetch-transactions` and friends receive as the connection.
    #[serde(default)]
    pub connection: FixtureConnection,
    /// The window a sync asks for (RFC 3339 instants); needed for `--sync`.
    pub sync: Option<SyncWindow>,
    /// Hosts allowed on top of the plugin's declared ones, as `PUT /admin/plugins/{id}/hosts`.
    #[serde(default)]
    pub approved_hosts: Vec<String>,
    /// Request → response pairs.
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
}

/// The connection of a fixture file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureConnection {
    /// Credential fields by name.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// The provider's location id.
    #[serde(default)]
    pub location_id: String,
    /// `sandbox` (default) or `production`.
    #[serde(default)]
    pub environment: Environment,
    /// An API base URL overriding the plugin's default.
    pub base_url: Option<String>,
}

/// A sync window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncWindow {
    /// Start, inclusive (RFC 3339).
    pub start: jiff::Timestamp,
    /// End, exclusive (RFC 3339).
    pub end: jiff::Timestamp,
}

/// One recorded exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the plugin sends.
    pub request: FixtureRequest,
    /// What it gets back.
    pub response: FixtureResponse,
}

/// The request side: matched by method and exact URL (query string included).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureRequest {
    /// `GET` (default), `POST`, ...
    #[serde(default = "get")]
    pub method: String,
    /// The absolute URL.
    pub url: String,
}

fn get() -> String {
    "GET".into()
}

fn ok() -> u16 {
    200
}

/// The response side: `json` (sent as JSON, with `content-type: application/json` unless
/// `headers` says otherwise) or `body` (text), or neither (empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureResponse {
    /// Status, default 200.
    #[serde(default = "ok")]
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    pub json: Option<serde_json::Value>,
    /// A text body.
    pub body: Option<String>,
}

impl Fixtures {
    /// Reads a fixture file: TOML if its name ends in `.toml`, JSON otherwise.
    pub fn load(path: &Path) -> Result<Fixtures, RunnerError> {
        let fail = |reason: String| RunnerError::Fixtures {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let fixtures: Fixtures = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| fail(e.to_string()))?
        } else {
            serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        fixtures.recorded().map_err(fail)?;
        Ok(fixtures)
    }

    fn recorded(&self) -> Result<RecordedHttp, String> {
        let mut exchanges = Vec::with_capacity(self.exchanges.len());
        for (i, x) in self.exchanges.iter().enumerate() {
            let method = Method::parse(&x.request.method)
                .ok_or_else(|| format!("exchanges[{i}]: unknown method {:?}", x.request.method))?;
            let mut headers: Vec<(String, String)> = x
                .response
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            let body = match (&x.response.json, &x.response.body) {
                (Some(_), Some(_)) => {
                    return Err(format!("exchanges[{i}]: give `json` or `body`, not both"))
                }
                (Some(json), None) => {
                    if !headers.iter().any(|(k, _)| k == "content-type") {
                        headers.push(("content-type".into(), "application/json".into()));
                    }
                    serde_json::to_vec(json).map_err(|e| e.to_string())?
                }
                (None, Some(text)) => text.clone().into_bytes(),
                (None, None) => Vec::new(),
            };
            exchanges.push((
                method,
                x.request.url.clone(),
                OutboundResponse {
                    status: x.response.status,
                    headers,
                    body,
                },
            ));
        }
        Ok(RecordedHttp {
            exchanges,
            unmatched: Mutex::new(Vec::new()),
        })
    }

    fn connection(&self) -> Connection {
        Connection {
            credentials: self
                .connection
                .credentials
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            location_id: self.connection.location_id.clone(),
            environment: self.connection.environment,
            base_url: self.connection.base_url.clone(),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub enum TestInput {
    /// A provider's sync: `fetch-transactions` from the first page to the last.
    Sync,
    /// A provider's webhook: `verify-webhook` when a key is given, then `parse-webhook`.
    Webhook {
        /// The delivery.
        webhook: Webhook,
        /// The integration's webhook signing key, to check the signature with.
        key: Option<String>,
    },
    /// A hook's `on-event`.
    Event {
        /// The event.
        event: HookEvent,
        /// The binding's configuration (JSON text).
        config: String,
    },
}

/// The result of a run: the plugin, what it produced (JSON), and what it logged.
#[derive(Debug)]
pub struct TestRun {
    /// The component's manifest.
    pub manifest: Manifest,
    /// Transactions (`{"pages", "transactions"}` or `{"event_id", "event_type",
    /// "transactions"}`) or a hook's `{"actions"}`.
    pub output: serde_json::Value,
    /// The plugin's log lines, oldest first.
    pub logs: Vec<LogLine>,
}

/// Runs `wasm` on `input`, answering its HTTP from `fixtures`, under the limits a newly
/// installed plugin gets from a host started with `options`. Must run inside a tokio
/// runtime (guest calls run on their own threads, like the host's).
pub async fn run(
    wasm: &[u8],
    fixtures: &Fixtures,
    input: TestInput,
    options: &PluginOptions,
) -> Result<TestRun, RunnerError> {
    let load = |e: String| RunnerError::Load(e);
    let recorded = Arc::new(fixtures.recorded().map_err(&load)?);
    let engine = PluginEngine::new(2, None).map_err(|e| load(e.to_string()))?;
    let guests = GuestExecutor::new(1).map_err(|e| load(e.to_string()))?;
    let outbound = Outbound::recorded(options.outbound.clone(), recorded.clone())
        .map_err(|e| load(e.to_string()))?;
    let logs = Arc::new(PluginLogs::new(
        options.log_lines,
        options.log_rate_per_second,
    ));
    let sha256 = hex::encode(Sha256::digest(wasm));
    let (component, _) = engine
        .component(&sha256, wasm)
        .map_err(|e| load(format!("the component does not compile: {e}")))?;
    let loaded = LoadedComponent::detect(engine.linker(), &component).map_err(&load)?;
    let mut scope = CallScope {
        plugin_id: "<test>".into(),
        version: String::new(),
        tenant_id: String::new(),
        integration_id: String::new(),
        allow: AllowList::default(),
        outbound,
        state: StateBackend::Memory(Arc::default()),
        io: guests.host_io(),
        logs: None,
    };
    let manifest = call(&engine, &guests, &scope, &loaded, |loaded, store| {
        Box::pin(async move { loaded.manifest(store).await })
    })
    .await?;
    let allow = AllowList::parse(
        manifest
            .allowed_hosts
            .iter()
            .chain(&fixtures.approved_hosts)
            .map(String::as_str),
    )
    .map_err(|e| RunnerError::Usage(format!("allowed hosts: {e}")))?;
    scope.plugin_id = manifest.id.clone();
    scope.version = manifest.version.clone();
    scope.allow = allow;
    scope.logs = Some(logs.clone());
    scope.tenant_id = "test".into();

    let output = produce(&engine, &guests, &scope, &loaded, fixtures, input).await;
    // Unanswered requests first: they are usually why the plugin then failed.
    let unmatched = lock(&recorded.unmatched).clone();
    if !unmatched.is_empty() {
        return Err(RunnerError::Unmatched {
            unmatched,
            recorded: recorded
                .exchanges
                .iter()
                .map(|(m, u, _)| format!("{} {u}", m.as_str()))
                .collect(),
        });
    }
    Ok(TestRun {
        logs: logs.view(&manifest.id).lines,
        manifest,
        output: output?,
    })
}

/// Calls the functions `input` asks for and shapes what they return as JSON.
async fn produce(
    engine: &PluginEngine,
    guests: &GuestExecutor,
    scope: &CallScope,
    loaded: &LoadedComponent,
    fixtures: &Fixtures,
    input: TestInput,
) -> Result<serde_json::Value, RunnerError> {
    Ok(match (input, loaded) {
        (TestInput::Sync, LoadedComponent::Provider(_)) => {
            let window = fixtures.sync.clone().ok_or_else(|| {
                RunnerError::Usage(
                    "a sync needs a window: add \"sync\": {\"start\": ..., \"end\": ...} (RFC 3339) to the fixtures".into(),
                )
            })?;
            sync(engine, guests, scope, loaded, fixtures.connection(), window).await?
        }
        (TestInput::Webhook { webhook, key }, LoadedComponent::Provider(_)) => {
            if let Some(key) = key {
                let (w, k) = (webhook.clone(), key.clone());
                let verified = call(engine, guests, scope, loaded, move |loaded, store| {
                    Box::pin(async move {
                        let LoadedComponent::Provider(p) = loaded else {
                            return Err(other_kind());
                        };
                        p.verify_webhook(store, &w, &k).await
                    })
                })
                .await?;
                if !verified {
                    return Err(RunnerError::Plugin(
                        "verify-webhook refused the delivery's signature for this key".into(),
                    ));
                }
            }
            let event = call(engine, guests, scope, loaded, move |loaded, store| {
                Box::pin(async move {
                    let LoadedComponent::Provider(p) = loaded else {
                        return Err(other_kind());
                    };
                    p.parse_webhook(store, &webhook).await
                })
            })
            .await?
            .map_err(|e| RunnerError::Plugin(e.to_string()))?;
            serde_json::json!({
                "event_id": event.event_id,
                "event_type": event.event_type,
                "transactions": event.transactions,
            })
        }
        (TestInput::Event { event, config }, LoadedComponent::Hook(_)) => {
            let actions = call(engine, guests, scope, loaded, move |loaded, store| {
                Box::pin(async move {
                    let LoadedComponent::Hook(h) = loaded else {
                        return Err(other_kind());
                    };
                    h.on_event(store, &event, &config).await
                })
            })
            .await?
            .map_err(RunnerError::Plugin)?;
            serde_json::json!({ "actions": actions.iter().map(action_json).collect::<Vec<_>>() })
        }
        (TestInput::Event { .. }, LoadedComponent::Provider(_)) => {
            return Err(RunnerError::Usage(
                "this component is a provider: give --sync or --webhook, not --event".into(),
            ))
        }
        (_, LoadedComponent::Hook(_)) => {
            return Err(RunnerError::Usage(
                "this component is a hook: give --event (and --hook-config)".into(),
            ))
        }
    })
}

/// The hook action as JSON, shaped like the host's `HookAction` (data parsed when it is JSON).
fn action_json(action: &HookAction) -> serde_json::Value {
    let data = |text: &str| {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.into()))
    };
    match action {
        HookAction::Emit { kind, data: d } => {
            serde_json::json!({"action": "emit", "kind": kind, "data": data(d)})
        }
        HookAction::TagTransaction { target, tag } => {
            serde_json::json!({"action": "tag-transaction", "target": target, "tag": tag})
        }
        HookAction::TagCustomer { target, tag } => {
            serde_json::json!({"action": "tag-customer", "target": target, "tag": tag})
        }
    }
}

/// `run` matches the input to the component's kind before calling, so the other kind never
/// reaches a call; this turns it into an error rather than a panic all the same.
fn other_kind() -> wasmtime::Error {
    wasmtime::Error::msg("component of the other kind")
}

async fn sync(
    engine: &PluginEngine,
    guests: &GuestExecutor,
    scope: &CallScope,
    loaded: &LoadedComponent,
    conn: Connection,
    window: SyncWindow,
) -> Result<serde_json::Value, RunnerError> {
    let mut transactions = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let request = FetchRequest {
            start_ms: window.start.as_millisecond(),
            end_ms: window.end.as_millisecond(),
            cursor: cursor.clone(),
        };
        let conn = conn.clone();
        let page = call(engine, guests, scope, loaded, move |loaded, store| {
            Box::pin(async move {
                let LoadedComponent::Provider(p) = loaded else {
                    return Err(other_kind());
                };
                p.fetch_transactions(store, &conn, &request).await
            })
        })
        .await?
        .map_err(|e| RunnerError::Plugin(format!("page {}: {e}", pages + 1)))?;
        pages += 1;
        transactions.extend(page.transactions);
        match page.next_cursor {
            None => break,
            Some(next) if Some(&next) == cursor.as_ref() => {
                return Err(RunnerError::Plugin(format!(
                    "page {pages} returned the cursor it was given ({next:?}): the sync would never end"
                )))
            }
            Some(_) if pages >= MAX_PAGES => {
                return Err(RunnerError::Plugin(format!(
                    "still paging after {MAX_PAGES} pages"
                )))
            }
            Some(next) => cursor = Some(next),
        }
    }
    Ok(serde_json::json!({ "pages": pages, "transactions": transactions }))
}

/// One call on a fresh instance under the host's default per-call limits, on a guest thread.
async fn call<T: Send + 'static>(
    engine: &PluginEngine,
    guests: &GuestExecutor,
    scope: &CallScope,
    loaded: &LoadedComponent,
    f: impl for<'a> FnOnce(
            &'a LoadedComponent,
            &'a mut WasmStore<Sandbox>,
        ) -> futures_util::future::BoxFuture<'a, wasmtime::Result<T>>
        + Send
        + 'static,
) -> Result<T, RunnerError> {
    let limits = CallLimits::default();
    let mut store = Sandbox::store(engine.engine(), Arc::new(scope.clone()), limits);
    let loaded = loaded.clone();
    let id = scope.plugin_id.clone();
    let task = async move {
        let outcome = tokio::time::timeout(limits.wall, f(&loaded, &mut store)).await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Err(_) => Err(CallError::Timeout(id)),
            Ok(Err(err)) => Err(super::runtime::classify_with_stderr(
                &err,
                store.data(),
                &id,
            )),
        }
    };
    guests
        .run(task)
        .await
        .map_err(|e| RunnerError::Load(e.to_string()))?
        .map_err(RunnerError::Call)
}
