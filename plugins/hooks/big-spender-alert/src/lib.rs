//! `big-spender-alert`: tells the team when a customer becomes a big spender.
//!
//! Subscribes to `tier_unlocked` and `transaction_recorded`. Configuration (the tenant
//! binding's, all fields optional):
//!
//! ```json
//! {"webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
//!  "tiers": ["WHALE"], "min_sale": 50000}
//! ```
//!
//! - `tier_unlocked` for a tier in `tiers` (default `["WHALE"]`, compared ignoring case):
//!   posts `{"text": …}` to `webhook_url`, tags the customer `big-spender`, and emits
//!   `custom.big_spender` `{"reason":"tier_unlocked","tier","venue","customer","rule",
//!   "lifetime_spend","currency","transaction_id"}` to the tenant's terminals.
//! - `transaction_recorded` of a new sale whose `net` is at least `min_sale` (minor units;
//!   no `min_sale`, no sale alerts): the same alert, the transaction tagged `big-sale`, and
//!   `custom.big_spender` `{"reason":"big_sale","transaction_id","venue","net","currency",
//!   "customer"}`. Updates of a sale already seen (`"change":"updated"`) do not alert again.
//!
//! Without `webhook_url` the hook only tags and emits. The webhook's host must be allowed:
//! `hooks.slack.com` is declared; the operator approves any other. A failed or non-2xx post
//! is an error, so the host retries the event (the alert is at-least-once); the phone
//! number in the alert text is masked to its last four digits.

use posbridge_sdk::config;
use posbridge_sdk::hook::{Action, ConfigProblem, Event, Guest, HookInfo};
use posbridge_sdk::http::{HttpError, Request};
use posbridge_sdk::money::format_minor;
use posbridge_sdk::serde_json::{self, json, Value};
use serde::Deserialize;

/// The hook's id.
pub const ID: &str = "big-spender-alert";
/// The webhook host it declares.
pub const SLACK_HOST: &str = "hooks.slack.com";
/// Tag put on a customer who unlocked a watched tier.
pub const CUSTOMER_TAG: &str = "big-spender";
/// Tag put on a sale at or above `min_sale`.
pub const SALE_TAG: &str = "big-sale";
/// Custom event kind sent to the terminals.
pub const EMIT_KIND: &str = "big_spender";

/// The tenant binding's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where alerts are posted (Slack incoming-webhook style); none: no alerts are posted.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Tiers whose unlock is alerted.
    #[serde(default = "default_tiers")]
    pub tiers: Vec<String>,
    /// Net sale (minor units) at or above which a sale is alerted; none: sales are not.
    #[serde(default)]
    pub min_sale: Option<i64>,
}

fn default_tiers() -> Vec<String> {
    vec!["WHALE".into()]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            webhook_url: None,
            tiers: default_tiers(),
            min_sale: None,
        }
    }
}

impl Config {
    /// Parses and checks the binding's JSON (empty text or `null`: the defaults), naming
    /// each field that is wrong: `validate-config`'s verdict.
    pub fn check(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        let config: Config = config::parse(text)?;
        let mut problems = Vec::new();
        if let Some(url) = &config.webhook_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(ConfigProblem::new(
                    "webhook_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        if config.min_sale.is_some_and(|m| m < 0) {
            problems.push(ConfigProblem::new("min_sale", "must be >= 0"));
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// [`Config::check`] as one message, for `on-event`.
    pub fn parse(text: &str) -> Result<Config, String> {
        Config::check(text).map_err(|problems| {
            format!(
                "{ID}: invalid config ({}); expected {{\"webhook_url\": \"https://…\", \"tiers\": [\"WHALE\"], \"min_sale\": <minor units>}}",
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
    "webhook_url": {"type": "string", "pattern": "^https?://",
      "description": "Slack-style incoming webhook the alerts are posted to; none: no posts."},
    "tiers": {"type": "array", "items": {"type": "string"}, "default": ["WHALE"],
      "description": "Tiers whose unlock is alerted (case-insensitive)."},
    "min_sale": {"type": "integer", "minimum": 0,
      "description": "Net sale (minor units) at or above which a sale is alerted; none: sales are not."}
  }
}"#;

/// What one event calls for: the alert text to post (if any) and the host actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Text for the webhook.
    pub alert: Option<String>,
    /// Actions for the host.
    pub actions: Vec<Action>,
}

impl Decision {
    fn nothing() -> Self {
        Decision {
            alert: None,
            actions: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CustomerRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RuleRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The part of a `tier_unlocked` event the hook reads.
#[derive(Debug, Deserialize)]
struct TierUnlocked {
    tier: String,
    #[serde(default)]
    customer: Option<CustomerRef>,
    #[serde(default)]
    venue: Option<String>,
    #[serde(default)]
    rule: Option<RuleRef>,
    #[serde(default)]
    lifetime_spend: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    transaction_id: Option<String>,
}

/// The part of a `transaction_recorded` event the hook reads.
#[derive(Debug, Deserialize)]
struct Sale {
    id: String,
    net: i64,
    currency: String,
    #[serde(default)]
    venue: Option<String>,
    #[serde(default)]
    change: Option<String>,
    #[serde(default)]
    customer: Option<CustomerRef>,
}

/// `••••0199` for `+15550100199`: enough to recognise, not enough to call.
fn masked(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("••••{tail}")
}

fn customer_json(customer: &Option<CustomerRef>) -> Value {
    match customer {
        Some(c) => json!({"id": c.id, "phone": c.phone}),
        None => Value::Null,
    }
}

/// The decision for one event under `config`; pure, so it is tested natively.
pub fn decide(kind: &str, data: &str, config: &Config) -> Result<Decision, String> {
    match kind {
        "tier_unlocked" => {
            let unlock: TierUnlocked = serde_json::from_str(data)
                .map_err(|e| format!("{ID}: tier_unlocked data is not an unlock: {e}"))?;
            if !config
                .tiers
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&unlock.tier))
            {
                return Ok(Decision::nothing());
            }
            let venue = unlock.venue.clone().unwrap_or_default();
            let phone = unlock.customer.as_ref().and_then(|c| c.phone.clone());
            let who = phone
                .as_deref()
                .map(masked)
                .unwrap_or_else(|| "A customer".into());
            let spend = match (unlock.lifetime_spend, &unlock.currency) {
                (Some(amount), Some(currency)) => {
                    format!(
                        " (lifetime spend {} {currency})",
                        format_minor(amount, currency)
                    )
                }
                _ => String::new(),
            };
            let at = if venue.is_empty() {
                String::new()
            } else {
                format!(" at {venue}")
            };
            let alert = format!(":whale: {who} unlocked {}{at}{spend}", unlock.tier);
            let mut actions = Vec::new();
            if let Some(phone) = &phone {
                actions.push(Action::tag_customer(phone.clone(), CUSTOMER_TAG));
            }
            let rule = unlock
                .rule
                .as_ref()
                .map(|r| json!({"id": r.id, "name": r.name}));
            actions.push(Action::emit(
                EMIT_KIND,
                &json!({
                    "reason": "tier_unlocked",
                    "tier": unlock.tier,
                    "venue": unlock.venue,
                    "customer": customer_json(&unlock.customer),
                    "rule": rule,
                    "lifetime_spend": unlock.lifetime_spend,
                    "currency": unlock.currency,
                    "transaction_id": unlock.transaction_id,
                }),
            ));
            Ok(Decision {
                alert: Some(alert),
                actions,
            })
        }
        "transaction_recorded" => {
            let Some(min_sale) = config.min_sale else {
                return Ok(Decision::nothing());
            };
            let sale: Sale = serde_json::from_str(data)
                .map_err(|e| format!("{ID}: transaction_recorded data is not a sale: {e}"))?;
            if sale.net < min_sale || sale.change.as_deref() == Some("updated") {
                return Ok(Decision::nothing());
            }
            let amount = format!(
                "{} {}",
                format_minor(sale.net, &sale.currency),
                sale.currency
            );
            let at = sale
                .venue
                .as_deref()
                .map(|v| format!(" at {v}"))
                .unwrap_or_default();
            let by = sale
                .customer
                .as_ref()
                .and_then(|c| c.phone.as_deref())
                .map(|p| format!(" by {}", masked(p)))
                .unwrap_or_default();
            let alert = format!(":moneybag: Big sale{at}: {amount}{by}");
            let actions = vec![
                Action::tag_transaction(sale.id.clone(), SALE_TAG),
                Action::emit(
                    EMIT_KIND,
                    &json!({
                        "reason": "big_sale",
                        "transaction_id": sale.id,
                        "venue": sale.venue,
                        "net": sale.net,
                        "currency": sale.currency,
                        "customer": customer_json(&sale.customer),
                    }),
                ),
            ];
            Ok(Decision {
                alert: Some(alert),
                actions,
            })
        }
        _ => Ok(Decision::nothing()),
    }
}

fn describe(err: &HttpError) -> String {
    match err {
        HttpError::Denied(host) => {
            format!("not allowed to call {host} (ask the operator to approve it)")
        }
        HttpError::Timeout => "timed out".into(),
        HttpError::Connection(why) => format!("connection failed: {why}"),
        HttpError::TooLarge => "response too large".into(),
        HttpError::InvalidRequest(why) => format!("invalid request: {why}"),
    }
}

/// Posts `{"text": alert}`; anything but a 2xx is an error (the host retries the event).
pub fn post_alert(url: &str, alert: &str) -> Result<(), String> {
    let response = Request::post(url)
        .json(&json!({ "text": alert }))
        .timeout_ms(5_000)
        .send()
        .map_err(|e| format!("{ID}: alert webhook: {}", describe(&e)))?;
    if !response.is_success() {
        return Err(format!(
            "{ID}: alert webhook answered HTTP {}",
            response.status
        ));
    }
    Ok(())
}

/// The hook.
pub struct BigSpenderAlert;

impl Guest for BigSpenderAlert {
    fn info() -> HookInfo {
        HookInfo {
            allowed_hosts: vec![SLACK_HOST.into()],
            config_schema: Some(CONFIG_SCHEMA.into()),
            ..HookInfo::new(
                ID,
                "Big spender alert",
                env!("CARGO_PKG_VERSION"),
                &["tier_unlocked", "transaction_recorded"],
            )
        }
    }

    fn validate_config(config: String) -> Result<(), Vec<ConfigProblem>> {
        Config::check(&config).map(|_| ())
    }

    fn on_event(event: Event, config: String) -> Result<Vec<Action>, String> {
        let config = Config::parse(&config)?;
        let decision = decide(&event.kind, &event.data, &config)?;
        // Alert first: if it fails nothing is applied and the whole event is retried.
        if let (Some(alert), Some(url)) = (&decision.alert, &config.webhook_url) {
            post_alert(url, alert)?;
        }
        Ok(decision.actions)
    }
}

posbridge_sdk::export_hook!(BigSpenderAlert);

#[cfg(test)]
mod tests {
    use super::*;
    use posbridge_sdk::hook::{CustomEvent, Tag};

    const UNLOCK: &str = r#"{"customer":{"id":"c1","phone":"+15550100199"},"venue":"downtown",
        "rule":{"id":"r1","name":"Whale"},"tier":"WHALE","access_level":3,"previous_tier":"REGULAR",
        "customer_tier":"WHALE","customer_access_level":3,"lifetime_spend":123456,"currency":"USD",
        "transaction_id":"t9","occurred_at":"2026-01-01T00:00:00Z"}"#;
    const SALE: &str = r#"{"id":"t1","venue":"downtown","provider":"local-pos","net":60000,
        "total":60000,"currency":"USD","status":"completed","change":"created",
        "customer":{"id":"c1","phone":"+15550100199"}}"#;

    fn event(kind: &str, data: &str) -> Event {
        Event {
            tenant: "kitchen".into(),
            seq: 3,
            kind: kind.into(),
            at: 0,
            data: data.into(),
        }
    }

    fn emitted(actions: &[Action]) -> Value {
        let data = actions
            .iter()
            .find_map(|a| match a {
                Action::Emit(CustomEvent { kind, data }) if kind == EMIT_KIND => Some(data),
                _ => None,
            })
            .expect("an emit");
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn watched_tier_unlock_alerts_tags_and_emits() {
        let d = decide("tier_unlocked", UNLOCK, &Config::default()).unwrap();
        assert_eq!(
            d.alert.as_deref(),
            Some(":whale: ••••0199 unlocked WHALE at downtown (lifetime spend 1234.56 USD)")
        );
        assert!(d.actions.contains(&Action::TagCustomer(Tag {
            target: "+15550100199".into(),
            tag: CUSTOMER_TAG.into()
        })));
        let data = emitted(&d.actions);
        assert_eq!(data["reason"], "tier_unlocked");
        assert_eq!(data["tier"], "WHALE");
        assert_eq!(data["venue"], "downtown");
        assert_eq!(data["customer"]["id"], "c1");
        assert_eq!(data["rule"]["name"], "Whale");
    }

    #[test]
    fn other_tiers_and_events_do_nothing() {
        let config = Config::parse(r#"{"tiers":["platinum"]}"#).unwrap();
        assert_eq!(
            decide("tier_unlocked", UNLOCK, &config).unwrap(),
            Decision::nothing()
        );
        let lower = Config::parse(r#"{"tiers":["whale"]}"#).unwrap();
        assert!(decide("tier_unlocked", UNLOCK, &lower)
            .unwrap()
            .alert
            .is_some());
        assert_eq!(
            decide("new_order", "not json", &Config::default()).unwrap(),
            Decision::nothing()
        );
        // No webhook configured and nothing to do: no HTTP at all, no actions.
        assert_eq!(
            BigSpenderAlert::on_event(event("order_updated", "{}"), "".into()),
            Ok(vec![])
        );
    }

    #[test]
    fn big_sales_alert_only_when_configured_new_and_large_enough() {
        assert_eq!(
            decide("transaction_recorded", SALE, &Config::default()).unwrap(),
            Decision::nothing(),
            "no min_sale, no sale alerts"
        );
        let config = Config::parse(r#"{"min_sale":50000}"#).unwrap();
        let d = decide("transaction_recorded", SALE, &config).unwrap();
        assert_eq!(
            d.alert.as_deref(),
            Some(":moneybag: Big sale at downtown: 600.00 USD by ••••0199")
        );
        assert!(d.actions.contains(&Action::TagTransaction(Tag {
            target: "t1".into(),
            tag: SALE_TAG.into()
        })));
        assert_eq!(emitted(&d.actions)["net"], 60000);
        let small = Config::parse(r#"{"min_sale":60001}"#).unwrap();
        assert_eq!(
            decide("transaction_recorded", SALE, &small).unwrap(),
            Decision::nothing()
        );
        let updated = SALE.replace("\"created\"", "\"updated\"");
        assert_eq!(
            decide("transaction_recorded", &updated, &config).unwrap(),
            Decision::nothing()
        );
    }

    #[test]
    fn configuration() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
        for bad in [
            "[]",
            r#"{"webhook_url":"ftp://x"}"#,
            r#"{"min_sale":-1}"#,
            r#"{"min_sale":1.5}"#,
            r#"{"tier":["WHALE"]}"#,
        ] {
            let err = Config::parse(bad).unwrap_err();
            assert!(
                err.starts_with("big-spender-alert: invalid config"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(decide("tier_unlocked", "{}", &Config::default()).is_err());
        let config = Config::parse(r#"{"min_sale":1}"#).unwrap();
        assert!(decide("transaction_recorded", r#"{"id":"x"}"#, &config).is_err());
    }

    // The SDK's HTTP fake exists natively only.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn posts_the_alert_and_fails_on_non_2xx() {
        use posbridge_sdk::testing;
        testing::reset();
        testing::mock_http(|_| Ok(testing::json_response(200, "ok")));
        let config = r#"{"webhook_url":"https://hooks.slack.com/services/T/B/X"}"#;
        let actions =
            BigSpenderAlert::on_event(event("tier_unlocked", UNLOCK), config.into()).unwrap();
        assert_eq!(actions.len(), 2);
        let sent = testing::take_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].url, "https://hooks.slack.com/services/T/B/X");
        let body: Value = serde_json::from_slice(sent[0].body.as_deref().unwrap()).unwrap();
        assert!(body["text"].as_str().unwrap().contains("unlocked WHALE"));

        testing::mock_http(|_| Ok(testing::json_response(500, "no")));
        let err =
            BigSpenderAlert::on_event(event("tier_unlocked", UNLOCK), config.into()).unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");
        testing::reset();
    }

    #[test]
    fn info() {
        let info = BigSpenderAlert::info();
        assert_eq!(info.id, ID);
        assert_eq!(info.events, vec!["tier_unlocked", "transaction_recorded"]);
        assert_eq!(info.allowed_hosts, vec![SLACK_HOST]);
    }
}
