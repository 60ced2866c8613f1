//! `test-v02-provider`: a push provider generated straight from the frozen `wit/v0.2.0/`
//! with `wit_bindgen` (the SDK has moved on to 0.3), standing for every 0.2 component in the
//! field: the host must keep installing and running it unchanged, 0.2's sale details
//! included.
//!
//! `validate` accepts any location; `parse-push` reads
//! `{"venue": "…", "sales": [{"id": "s1", "total": 1250, "at": <epoch ms>, "staff": "Ana"}]}`
//! into completed USD sales (total = subtotal, cash) with the server's name and one line.

// Its only public items are the bindings wit-bindgen generates, which carry no docs.
#![allow(missing_docs)]

wit_bindgen::generate!({
    world: "provider-plugin",
    path: "../../../wit/v0.2.0",
});

use exports::posbridge::plugin::provider::{
    Capability, Connection, FetchRequest, Guest, PluginInfo, TransactionPage, Webhook, WebhookEvent,
};
use posbridge::plugin::types::{
    LineItem, LocationInfo, ProviderError, StaffRef, Tender, Transaction, TransactionStatus,
};

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct V02;

fn sale(value: &serde_json::Value) -> Result<Transaction, ProviderError> {
    let bad = |what: &str| ProviderError::BadPayload(format!("sale: {what}"));
    let id = value["id"].as_str().ok_or_else(|| bad("id"))?;
    let total = value["total"].as_i64().ok_or_else(|| bad("total"))?;
    let at = value["at"].as_i64().ok_or_else(|| bad("at"))?;
    Ok(Transaction {
        external_id: id.into(),
        order_id: None,
        location_id: None,
        occurred_at: at,
        updated_at: None,
        currency: "USD".into(),
        total,
        subtotal: total,
        tax: 0,
        tip: 0,
        discount: 0,
        refunded: 0,
        tender: Tender::Cash,
        card: None,
        customer: None,
        status: TransactionStatus::Completed,
        staff: value["staff"].as_str().map(|name| StaffRef {
            id: None,
            name: Some(name.into()),
        }),
        line_items: vec![LineItem {
            id: None,
            name: "Set menu".into(),
            item_id: None,
            quantity: "1".into(),
            unit_price: Some(total),
            total,
            category: None,
        }],
        refunds: Vec::new(),
    })
}

impl Guest for V02 {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-v02-provider".into(),
            name: "test-v02-provider (0.2 test guest)".into(),
            version: "0.2.0".into(),
            capabilities: vec![Capability::Validate, Capability::Push],
            credential_fields: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }

    fn validate(connection: Connection) -> Result<LocationInfo, ProviderError> {
        Ok(LocationInfo {
            id: connection.location_id,
            name: "0.2 till".into(),
            timezone: None,
            currency: Some("USD".into()),
            merchant_id: None,
            business_name: None,
            status: None,
        })
    }

    fn fetch_transactions(
        _connection: Connection,
        _request: FetchRequest,
    ) -> Result<TransactionPage, ProviderError> {
        Err(ProviderError::Unsupported("fetch-transactions".into()))
    }

    fn verify_webhook(_webhook: Webhook, _signature_key: String) -> bool {
        false
    }

    fn parse_webhook(_webhook: Webhook) -> Result<WebhookEvent, ProviderError> {
        Err(ProviderError::Unsupported("webhooks".into()))
    }

    fn parse_push(body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
        let root: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::BadPayload(format!("not JSON: {e}")))?;
        root["sales"]
            .as_array()
            .ok_or_else(|| ProviderError::BadPayload("sales: expected an array".into()))?
            .iter()
            .map(sale)
            .collect()
    }
}

// Natively (`cargo test --workspace`) the raw exports' symbol names (`…@0.2.0#info`) do not
// link into a shared library; only the wasm build exports them.
#[cfg(target_arch = "wasm32")]
export!(V02);
