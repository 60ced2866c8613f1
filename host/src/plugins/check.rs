//! `plugin check`: every function of a component's world called once on canned input, on a
//! throwaway instance with no network, to catch a guest that traps before an operator
//! installs it.

use std::sync::Arc;

use wasmtime::Store as WasmStore;

use super::contract::{self, Connection, FetchRequest, HookEvent, Manifest, Webhook};
use super::runtime::Plugins;
use super::sandbox::Sandbox;
use super::wit::LoadedComponent;
use super::InstallError;

/// What `plugin check` reports for one function: the function, and what it returned
/// (`Ok`) or why it failed (`Err`).
pub(crate) type CheckResult = (String, Result<String, String>);

impl Plugins {
    /// Runs the conformance check of `plugin check`: every function of the component's world
    /// on canned input, each expected to return (any result) without trapping.
    pub async fn conformance(
        &self,
        wasm: &[u8],
    ) -> Result<(Manifest, Vec<CheckResult>), InstallError> {
        let (manifest, loaded, _) = self.inspect(wasm).await?;
        let input = Arc::new(CannedInput::for_manifest(&manifest));
        let probes: &[Probe] = match &loaded {
            LoadedComponent::Provider(_) => &Probe::PROVIDER,
            LoadedComponent::Hook(_) => &Probe::HOOK,
        };
        let mut results = Vec::with_capacity(probes.len());
        for &probe in probes {
            let input = input.clone();
            let outcome = self
                .run_detached(&loaded, "check", move |loaded, store| {
                    Box::pin(async move { probe.run(loaded, store, &input).await })
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|verdict| verdict);
            results.push((probe.name().to_owned(), outcome));
        }
        Ok((manifest, results))
    }
}

/// One function of a world, as the check calls it.
#[derive(Debug, Clone, Copy)]
enum Probe {
    Validate,
    FetchTransactions,
    VerifyWebhook,
    ParseWebhook,
    ParsePush,
    ValidateConfig,
    OnEvent,
}

impl Probe {
    const PROVIDER: [Probe; 5] = [
        Probe::Validate,
        Probe::FetchTransactions,
        Probe::VerifyWebhook,
        Probe::ParseWebhook,
        Probe::ParsePush,
    ];
    const HOOK: [Probe; 2] = [Probe::ValidateConfig, Probe::OnEvent];

    /// The function's name in the WIT, as the report shows it.
    fn name(self) -> &'static str {
        match self {
            Probe::Validate => "validate",
            Probe::FetchTransactions => "fetch-transactions",
            Probe::VerifyWebhook => "verify-webhook",
            Probe::ParseWebhook => "parse-webhook",
            Probe::ParsePush => "parse-push",
            Probe::ValidateConfig => "validate-config",
            Probe::OnEvent => "on-event",
        }
    }

    /// Calls the function. The outer `Err` is a trap; the inner result is the verdict: an
    /// error the guest returns on canned input passes (the input is not real), while a
    /// webhook accepted without a signature fails.
    async fn run(
        self,
        loaded: &LoadedComponent,
        store: &mut WasmStore<Sandbox>,
        input: &CannedInput,
    ) -> wasmtime::Result<Result<String, String>> {
        let summary = match (self, loaded) {
            (Probe::Validate, LoadedComponent::Provider(p)) => {
                match p.validate(store, &input.conn).await? {
                    Ok(l) => format!("ok: location {}", l.id),
                    Err(e) => format!("error: {e}"),
                }
            }
            (Probe::FetchTransactions, LoadedComponent::Provider(p)) => {
                let now = jiff::Timestamp::now().as_millisecond();
                let request = FetchRequest {
                    start_ms: now - 3_600_000,
                    end_ms: now,
                    cursor: None,
                };
                match p.fetch_transactions(store, &input.conn, &request).await? {
                    Ok(page) => format!("ok: {} transactions", page.transactions.len()),
                    Err(e) => format!("error: {e}"),
                }
            }
            (Probe::VerifyWebhook, LoadedComponent::Provider(p)) => {
                let verified = p
                    .verify_webhook(store, &input.webhook, "conformance-key")
                    .await?;
                if verified {
                    return Ok(Err(
                        "accepted an unsigned delivery (expected a refusal)".to_owned()
                    ));
                }
                "ok: unsigned delivery refused".to_owned()
            }
            (Probe::ParseWebhook, LoadedComponent::Provider(p)) => {
                match p.parse_webhook(store, &input.webhook).await? {
                    Ok(e) => format!("ok: event {}", e.event_id),
                    Err(e) => format!("error: {e}"),
                }
            }
            (Probe::ParsePush, LoadedComponent::Provider(p)) => {
                match p.parse_push(store, b"not json").await? {
                    Ok(t) => format!("ok: {} transactions", t.len()),
                    Err(e) => format!("error: {e}"),
                }
            }
            (Probe::ValidateConfig, LoadedComponent::Hook(h)) => {
                if !h.validates_config() {
                    "ok: contract 0.1 has no validate-config (any object is accepted)".to_owned()
                } else {
                    // `{}` is the configuration of a binding made without one: a hook
                    // whose every setting has a default accepts it, one with a required
                    // setting names it. Either is a verdict; only a trap fails.
                    match h.validate_config(store, "{}").await? {
                        Ok(()) => "ok: {} accepted".to_owned(),
                        Err(problems) => format!(
                            "ok: {{}} refused ({})",
                            problems
                                .iter()
                                .map(|p| format!("{}: {}", p.field, p.message))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    }
                }
            }
            (Probe::OnEvent, LoadedComponent::Hook(h)) => {
                match h.on_event(store, &input.event, "{}").await? {
                    Ok(a) => format!("ok: {} actions", a.len()),
                    Err(e) => format!("error: {e}"),
                }
            }
            // `conformance` picks the probes by the component's world, so this is not reached.
            _ => "n/a".to_owned(),
        };
        Ok(Ok(summary))
    }
}

/// The input every probe is called with: believable shapes, nothing real, and a base URL
/// that refuses connections so a guest that calls out gets a prompt error.
struct CannedInput {
    conn: Connection,
    webhook: Webhook,
    event: HookEvent,
}

impl CannedInput {
    fn for_manifest(manifest: &Manifest) -> Self {
        Self {
            conn: Connection {
                credentials: manifest
                    .credential_fields
                    .iter()
                    .map(|f| (f.name.clone(), "conformance-check".into()))
                    .collect(),
                location_id: "conformance-location".into(),
                environment: contract::Environment::Sandbox,
                base_url: Some("http://127.0.0.1:9/".into()),
            },
            webhook: Webhook {
                url: "https://example.invalid/webhooks".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"conformance":true}"#.to_vec(),
            },
            event: HookEvent {
                tenant: "conformance".into(),
                seq: 1,
                kind: manifest
                    .events
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "new_order".into()),
                at_ms: jiff::Timestamp::now().as_millisecond(),
                data: r#"{"id":"o-1","total":2500,"currency":"USD","items":[]}"#.into(),
            },
        }
    }
}
