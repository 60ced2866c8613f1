//! Availability (86) in Toast's stock API, read and written: `GET /stock/v1/inventory` (only
//! OUT_OF_STOCK and QUANTITY items), `POST /stock/v1/inventory/search {guids}` and
//! `PUT /stock/v1/inventory/update`. Ids are menu item (or modifier option) guids.

use std::str::FromStr;

use posbridge_sdk::errors::NotFound;
use posbridge_sdk::http::Request;
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{json, Number, Value};

use crate::{field, text, Api};

/// Toast's quantity (a JSON number, kept as its exact text).
fn quantity_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn positive(text: &str) -> bool {
    !text.starts_with('-') && text.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

/// One stock entry (`{guid, status, quantity, …}`, or a webhook's `details` with `itemGuid`).
pub(crate) fn from_entry(entry: &Value, status: Option<&str>) -> Option<Availability> {
    let id = text(entry, "guid").or_else(|| text(entry, "itemGuid"))?;
    let quantity = quantity_text(field(entry, "quantity"));
    let status = status
        .map(str::to_owned)
        .or_else(|| text(entry, "status"))
        .unwrap_or_default()
        .to_ascii_uppercase();
    Some(match status.as_str() {
        "OUT_OF_STOCK" => Availability {
            provider_id: id,
            status: StockStatus::OutOfStock,
            quantity: None,
            until: None,
        },
        "QUANTITY" | "LOW_QUANTITY" => match quantity {
            Some(q) if positive(&q) => Availability {
                provider_id: id,
                status: StockStatus::Quantity,
                quantity: Some(q),
                until: None,
            },
            q => Availability {
                provider_id: id,
                status: StockStatus::OutOfStock,
                quantity: q,
                until: None,
            },
        },
        _ => Availability {
            provider_id: id,
            status: StockStatus::InStock,
            quantity: None,
            until: None,
        },
    })
}

fn entries(value: &Value) -> Vec<Availability> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| from_entry(e, None))
        .collect()
}

pub(crate) fn read(conn: &Connection, ids: &[String]) -> Result<Vec<Availability>, ProviderError> {
    let api = Api::new(conn);
    if ids.is_empty() {
        let url = api.url("/stock/v1/inventory");
        let body: Value = api
            .call(|| Request::get(&url), NotFound::Upstream)?
            .json_or_upstream()?;
        return Ok(entries(&body));
    }
    let url = api.url("/stock/v1/inventory/search");
    let request = json!({ "guids": ids });
    let body: Value = api
        .call(|| Request::post(&url).json(&request), NotFound::Upstream)?
        .json_or_upstream()?;
    let mut found = entries(&body);
    // Toast lists what it tracks; an asked-for item it does not mention is plainly in stock.
    for id in ids {
        if !found.iter().any(|a| &a.provider_id == id) {
            found.push(Availability {
                provider_id: id.clone(),
                status: StockStatus::InStock,
                quantity: None,
                until: None,
            });
        }
    }
    Ok(found)
}

pub(crate) fn write(
    conn: &Connection,
    changes: &[Availability],
) -> Result<Vec<Availability>, ProviderError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut updates = Vec::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        let bad = |message: String| {
            ProviderError::rejected(
                None,
                Some("INVALID_AVAILABILITY".into()),
                message,
                Some(format!("changes[{i}]")),
            )
        };
        if change.provider_id.trim().is_empty() {
            return Err(bad("no item guid".into()));
        }
        updates.push(match change.status {
            StockStatus::InStock => json!({ "guid": change.provider_id, "status": "IN_STOCK" }),
            StockStatus::OutOfStock => {
                json!({ "guid": change.provider_id, "status": "OUT_OF_STOCK" })
            }
            StockStatus::Quantity => {
                let quantity = change
                    .quantity
                    .as_deref()
                    .and_then(|q| {
                        let (int, frac) = q.split_once('.').unwrap_or((q, ""));
                        let plain = !int.is_empty()
                            && int.bytes().all(|b| b.is_ascii_digit())
                            && frac.bytes().all(|b| b.is_ascii_digit());
                        plain.then(|| Number::from_str(q).ok()).flatten()
                    })
                    .ok_or_else(|| {
                        bad(format!(
                            "item {}: `quantity` needs a count as plain decimal text, got {:?}",
                            change.provider_id, change.quantity
                        ))
                    })?;
                json!({ "guid": change.provider_id, "status": "QUANTITY", "quantity": quantity })
            }
        });
    }
    let api = Api::new(conn);
    let url = api.url("/stock/v1/inventory/update");
    let body = Value::Array(updates);
    let answer: Value = api
        .call(|| Request::put(&url).json(&body), NotFound::Upstream)?
        .json_or_upstream()?;
    let mut now = entries(&answer);
    if now.is_empty() {
        // An answer without the entries: what was asked is what Toast now has.
        now = changes.to_vec();
    }
    Ok(now)
}
