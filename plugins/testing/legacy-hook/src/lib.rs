//! `test-legacy-hook`: a hook generated straight from the frozen `wit/v0.1.0/` with
//! `wit_bindgen` (no `validate-config`, no `config-schema`): the host must keep binding it
//! with any JSON object, as 0.1 did, and delivering to it.
//!
//! For every `transaction_recorded` it emits `custom.legacy_seen` with the sale's
//! `external_id` and the binding's configuration as it received it.

// Its only public items are the bindings wit-bindgen generates, which carry no docs.
#![allow(missing_docs)]

wit_bindgen::generate!({
    world: "hook-plugin",
    path: "../../../wit/v0.1.0",
});

use exports::posbridge::plugin::hook::{Action, CustomEvent, Guest, HookInfo};
use posbridge::plugin::types::Event;

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Legacy;

impl Guest for Legacy {
    fn info() -> HookInfo {
        HookInfo {
            id: "test-legacy-hook".into(),
            name: "test-legacy-hook (0.1 test guest)".into(),
            version: "0.1.0".into(),
            events: vec!["transaction_recorded".into()],
            allowed_hosts: Vec::new(),
        }
    }

    fn on_event(event: Event, config: String) -> Result<Vec<Action>, String> {
        let data: serde_json::Value =
            serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let seen = serde_json::json!({
            "external_id": data["external_id"],
            "config": config,
        });
        Ok(vec![Action::Emit(CustomEvent {
            kind: "legacy_seen".into(),
            data: seen.to_string(),
        })])
    }
}

// Natively (`cargo test --workspace`) the raw exports' symbol names (`…@0.1.0#info`) do not
// link into a shared library; only the wasm build exports them.
#[cfg(target_arch = "wasm32")]
export!(Legacy);
