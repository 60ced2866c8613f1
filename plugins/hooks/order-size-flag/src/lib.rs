//! `order-size-flag`: a hook that flags large orders.
//!
//! Subscribes to `new_order`. When an order's `total` (minor units) is at or above the tenant
//! binding's `threshold` (config `{"threshold": 10000}`; default 10000 = $100.00), it emits
//! `custom.large_order` to the tenant's terminals with
//! `{"order_id","total","currency","items","quantity","threshold"}` (`items`: order lines,
//! `quantity`: units across lines).

use posbridge_sdk::config;
use posbridge_sdk::hook::{Action, ConfigProblem, Event, Guest, HookInfo};
use posbridge_sdk::serde_json::{json, Value};
use serde::Deserialize;

/// The hook's id.
pub const ID: &str = "order-size-flag";
/// The threshold when the configuration names none: 10000 minor units.
pub const DEFAULT_THRESHOLD: i64 = 10_000;

/// The tenant binding's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Orders whose total is at least this (minor units) are flagged.
    #[serde(default = "default_threshold")]
    pub threshold: i64,
}

fn default_threshold() -> i64 {
    DEFAULT_THRESHOLD
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

impl Config {
    /// Parses and checks the binding's JSON (empty text or `null`: the defaults), naming
    /// each field that is wrong: `validate-config`'s verdict.
    pub fn check(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        let config: Config = config::parse(text)?;
        config::require(
            config.threshold >= 0,
            "threshold",
            format!("must be >= 0, got {}", config.threshold),
        )?;
        Ok(config)
    }

    /// [`Config::check`] as one message, for `on-event` (the host checked the configuration
    /// at binding time; a 0.1-era binding stored before that is still caught here).
    pub fn parse(text: &str) -> Result<Config, String> {
        Config::check(text).map_err(|problems| {
            format!(
                "{ID}: invalid config ({}); expected {{\"threshold\": <minor units, integer >= 0>}}",
                config::describe(&problems)
            )
        })
    }
}

/// The JSON Schema of the configuration, shown in the plugin's manifest for forms.
pub const CONFIG_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "threshold": {
      "type": "integer", "minimum": 0, "default": 10000,
      "description": "Orders whose total (minor units) is at least this are flagged."
    }
  }
}"#;

/// The part of a `new_order` event the hook reads.
#[derive(Debug, Deserialize)]
struct Order {
    id: String,
    total: i64,
    currency: String,
    #[serde(default)]
    items: Vec<Line>,
}

#[derive(Debug, Deserialize)]
struct Line {
    #[serde(default)]
    quantity: i64,
}

/// The decision: the actions for one event under `config`.
pub fn decide(kind: &str, data: &str, config: &Config) -> Result<Vec<Action>, String> {
    if kind != "new_order" {
        return Ok(Vec::new());
    }
    let order: Order = posbridge_sdk::serde_json::from_str(data)
        .map_err(|e| format!("{ID}: new_order data is not an order: {e}"))?;
    if order.total < config.threshold {
        return Ok(Vec::new());
    }
    let quantity = order
        .items
        .iter()
        .fold(0i64, |sum, line| sum.saturating_add(line.quantity));
    let data: Value = json!({
        "order_id": order.id,
        "total": order.total,
        "currency": order.currency,
        "items": order.items.len(),
        "quantity": quantity,
        "threshold": config.threshold,
    });
    Ok(vec![Action::emit("large_order", &data)])
}

/// The hook.
pub struct OrderSizeFlag;

impl Guest for OrderSizeFlag {
    fn info() -> HookInfo {
        HookInfo {
            config_schema: Some(CONFIG_SCHEMA.into()),
            ..HookInfo::new(
                ID,
                "Large order flag",
                env!("CARGO_PKG_VERSION"),
                &["new_order"],
            )
        }
    }

    fn validate_config(config: String) -> Result<(), Vec<ConfigProblem>> {
        Config::check(&config).map(|_| ())
    }

    fn on_event(event: Event, config: String) -> Result<Vec<Action>, String> {
        let config = Config::parse(&config)?;
        decide(&event.kind, &event.data, &config)
    }
}

posbridge_sdk::export_hook!(OrderSizeFlag);

#[cfg(test)]
mod tests {
    use super::*;
    use posbridge_sdk::hook::CustomEvent;

    const ORDER: &str = r#"{"id":"ord_1","external_id":null,"source":"online","status":"pending",
        "currency":"USD","subtotal":11000,"tax":900,"tip":0,"discount":0,"total":11900,
        "items":[{"name":"Pizza","quantity":3,"unit_price":3000},{"name":"Soda","quantity":4,"unit_price":500}],
        "customer":null,"notes":null,"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z"}"#;

    fn event(kind: &str, data: &str) -> Event {
        Event {
            tenant: "kitchen".into(),
            seq: 7,
            kind: kind.into(),
            at: 0,
            data: data.into(),
        }
    }

    fn emitted(actions: &[Action]) -> Value {
        match actions {
            [Action::Emit(CustomEvent { kind, data })] => {
                assert_eq!(kind, "large_order");
                posbridge_sdk::serde_json::from_str(data).unwrap()
            }
            other => panic!("expected one emit, got {other:?}"),
        }
    }

    #[test]
    fn flags_orders_at_or_above_the_threshold() {
        let actions = OrderSizeFlag::on_event(event("new_order", ORDER), "{}".into()).unwrap();
        let data = emitted(&actions);
        assert_eq!(
            data,
            json!({"order_id":"ord_1","total":11900,"currency":"USD","items":2,"quantity":7,"threshold":10000})
        );
        let at =
            OrderSizeFlag::on_event(event("new_order", ORDER), r#"{"threshold":11900}"#.into());
        assert_eq!(at.unwrap().len(), 1, "equal to the threshold is flagged");
    }

    #[test]
    fn ignores_small_orders_and_other_events() {
        let below =
            OrderSizeFlag::on_event(event("new_order", ORDER), r#"{"threshold":11901}"#.into());
        assert_eq!(below, Ok(vec![]));
        let other = OrderSizeFlag::on_event(event("order_updated", ORDER), "".into());
        assert_eq!(other, Ok(vec![]));
        let other = OrderSizeFlag::on_event(event("tier_unlocked", "not json"), "".into());
        assert_eq!(other, Ok(vec![]));
    }

    #[test]
    fn configuration() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
        assert_eq!(Config::parse("  null "), Ok(Config::default()));
        assert_eq!(Config::parse("{}"), Ok(Config { threshold: 10_000 }));
        assert_eq!(
            Config::parse(r#"{"threshold":0}"#),
            Ok(Config { threshold: 0 })
        );
        for bad in [
            "nope",
            "[]",
            r#"{"threshold":"100"}"#,
            r#"{"threshold":100.5}"#,
            r#"{"threshold":-1}"#,
            r#"{"treshold":100}"#,
        ] {
            let err = Config::parse(bad).unwrap_err();
            assert!(
                err.starts_with("order-size-flag: invalid config"),
                "{bad}: {err}"
            );
        }
        let err = OrderSizeFlag::on_event(event("new_order", ORDER), "{".into()).unwrap_err();
        assert!(err.contains("threshold"), "{err}");
    }

    #[test]
    fn validate_config_names_the_field() {
        assert_eq!(
            OrderSizeFlag::validate_config(r#"{"threshold": 5}"#.into()),
            Ok(())
        );
        assert_eq!(OrderSizeFlag::validate_config("".into()), Ok(()));
        let misspelt = OrderSizeFlag::validate_config(r#"{"treshold": 5}"#.into()).unwrap_err();
        assert_eq!(misspelt[0].field, "treshold", "{misspelt:?}");
        let negative = OrderSizeFlag::validate_config(r#"{"threshold": -1}"#.into()).unwrap_err();
        assert_eq!(negative[0].field, "threshold", "{negative:?}");
        let schema: Value = posbridge_sdk::serde_json::from_str(CONFIG_SCHEMA).unwrap();
        assert_eq!(
            schema["properties"]["threshold"]["default"],
            DEFAULT_THRESHOLD
        );
    }

    #[test]
    fn malformed_orders_are_errors() {
        let err =
            OrderSizeFlag::on_event(event("new_order", r#"{"id":"x"}"#), "".into()).unwrap_err();
        assert!(err.contains("not an order"), "{err}");
        assert!(OrderSizeFlag::on_event(event("new_order", "{"), "".into()).is_err());
    }

    #[test]
    fn info() {
        let info = OrderSizeFlag::info();
        assert_eq!(info.id, "order-size-flag");
        assert_eq!(info.events, vec!["new_order".to_string()]);
        assert!(info.allowed_hosts.is_empty());
    }
}
