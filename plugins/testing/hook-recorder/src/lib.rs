//! `test-hook-recorder`: a hook for delivery tests. For every event it emits
//! `custom.<emit_kind>` (default `seen`) with `{"seq", "kind"}`, so the order and
//! completeness of deliveries shows on the tenant's WebSocket.
//!
//! Binding config (all optional):
//! - `"mode"`: `"ok"` (default), `"error"` (returns an error), `"trap"` (panics) or `"spin"`
//!   (loops until the CPU deadline);
//! - `"fail_times"`: with a failing mode, fail only the first N calls of this binding
//!   (counted in plugin state), then behave as `"ok"`;
//! - `"emit_kind"`: the custom event kind (an invalid one makes the host refuse the action);
//! - `"tag_transactions"`: tag the `transaction_recorded` sale (`data.id`) with this tag;
//! - `"tag_customers"`: tag the event's `data.customer.phone` with this tag;
//! - `"fail_external_id"`: return an error for every event whose `data.external_id` is this
//!   (a poison event: the others of the binding go through).

use posbridge_sdk::hook::{Action, ConfigProblem, Event, Guest, HookInfo};
use posbridge_sdk::serde_json::{self, json, Value};
use posbridge_sdk::state;

struct HookRecorder;

const FAILED_KEY: &str = "failed";

impl Guest for HookRecorder {
    fn info() -> HookInfo {
        HookInfo {
            id: "test-hook-recorder".into(),
            name: "test-hook-recorder (test guest)".into(),
            version: "1.0.0".into(),
            events: [
                "new_order",
                "order_updated",
                "loyalty_updated",
                "transaction_recorded",
                "gift_card_purchased",
                "gift_card_redeemed",
                "daily_report_uploaded",
                "tier_unlocked",
            ]
            .iter()
            .map(|e| e.to_string())
            .collect(),
            allowed_hosts: Vec::new(),
            config_schema: None,
        }
    }

    /// Any object: the delivery tests bind it with every setting, and with ones the host
    /// must refuse later (an invalid `emit_kind`), so nothing is refused up front.
    fn validate_config(config: String) -> Result<(), Vec<ConfigProblem>> {
        posbridge_sdk::config::parse::<serde_json::Map<String, Value>>(&config).map(|_| ())
    }

    fn on_event(event: Event, config: String) -> Result<Vec<Action>, String> {
        let config: Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
        let mode = text("mode").unwrap_or_else(|| "ok".into());
        if mode != "ok" {
            let failed: u64 = state::get_string(FAILED_KEY)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let limit = config.get("fail_times").and_then(Value::as_u64);
            if limit.is_none_or(|limit| failed < limit) {
                state::set_string(FAILED_KEY, &(failed + 1).to_string())?;
                match mode.as_str() {
                    "trap" => panic!("test-hook-recorder: asked to trap (seq {})", event.seq),
                    "spin" => {
                        let mut n: u64 = 0;
                        loop {
                            n = core::hint::black_box(n.wrapping_add(1));
                        }
                    }
                    _ => return Err(format!("asked to fail (seq {})", event.seq)),
                }
            }
        }
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        if let (Some(poison), Some(id)) = (text("fail_external_id"), data["external_id"].as_str()) {
            if poison == id {
                return Err(format!("refusing event {} for {id}", event.seq));
            }
        }
        let kind = text("emit_kind").unwrap_or_else(|| "seen".into());
        let mut actions = vec![Action::emit(
            kind,
            &json!({ "seq": event.seq, "kind": event.kind }),
        )];
        if let (Some(tag), Some(id)) = (text("tag_transactions"), data["id"].as_str()) {
            if event.kind == "transaction_recorded" {
                actions.push(Action::tag_transaction(id, tag));
            }
        }
        if let (Some(tag), Some(phone)) =
            (text("tag_customers"), data["customer"]["phone"].as_str())
        {
            actions.push(Action::tag_customer(phone, tag));
        }
        Ok(actions)
    }
}

posbridge_sdk::export_hook!(HookRecorder);
