//! Availability read from Square (read only: Square ignores an app's writes of `sold_out`).
//!
//! A variation or modifier is sold out at the location when its `location_overrides` entry
//! says `sold_out` (until `sold_out_valid_until`, if set); a variation that tracks inventory
//! has a count (`POST /v2/inventory/counts/batch-retrieve`, state IN_STOCK): a positive count
//! is `quantity`, zero or less is out of stock. An item is out of stock when every variation
//! it has at the location is.

use std::collections::BTreeMap;

use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{json, Value};
use posbridge_sdk::time;

use crate::catalog::{location_override, present_at};
use crate::{check_square, non_empty, post, resolve_location};
use posbridge_sdk::errors::NotFound;

/// Pages read at most by one call that scans the location (each of up to 1000 objects).
const MAX_PAGES: usize = 50;

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The data record of a variation or modifier object.
fn data(object: &Value) -> Option<&Value> {
    object
        .get("item_variation_data")
        .or_else(|| object.get("modifier_data"))
}

/// Sold out at `location` per Square's override, and until when.
fn sold_out(object: &Value, location: &str) -> Option<Option<i64>> {
    let data = data(object)?;
    let overridden = location_override(data, location)?;
    if overridden.get("sold_out").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let until =
        text(overridden, "/sold_out_valid_until").and_then(|t| time::parse_timestamp(t).ok());
    if until.is_some_and(|u| u <= posbridge_sdk::clock::now()) {
        return None;
    }
    Some(until)
}

fn tracks_inventory(object: &Value, location: &str) -> bool {
    let Some(data) = object.get("item_variation_data") else {
        return false;
    };
    location_override(data, location)
        .and_then(|o| o.get("track_inventory"))
        .or_else(|| data.get("track_inventory"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A count's quantity text → availability of `id`.
pub(crate) fn from_count(id: &str, quantity: &str) -> Availability {
    let positive = crate::orders::is_quantity(quantity);
    Availability {
        provider_id: id.to_owned(),
        status: if positive {
            StockStatus::Quantity
        } else {
            StockStatus::OutOfStock
        },
        quantity: Some(quantity.to_owned()),
        until: None,
    }
}

fn out_of_stock(id: &str, until: Option<i64>) -> Availability {
    Availability {
        provider_id: id.to_owned(),
        status: StockStatus::OutOfStock,
        quantity: None,
        until,
    }
}

fn in_stock(id: &str) -> Availability {
    Availability {
        provider_id: id.to_owned(),
        status: StockStatus::InStock,
        quantity: None,
        until: None,
    }
}

/// IN_STOCK counts at `location` of `ids` (all tracked objects with none), by object id.
fn counts(
    conn: &Connection,
    location: &str,
    ids: &[String],
) -> Result<BTreeMap<String, String>, ProviderError> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut body = json!({ "location_ids": [location], "states": ["IN_STOCK"] });
        if !ids.is_empty() {
            body["catalog_object_ids"] = json!(ids);
        }
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let response = check_square(
            post(conn, "/v2/inventory/counts/batch-retrieve")?
                .json(&body)
                .send()?,
            NotFound::Upstream,
        )?;
        let page: Value = response.json_or_upstream()?;
        for count in page
            .get("counts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if text(count, "/location_id").is_some_and(|l| l != location) {
                continue;
            }
            if let (Some(id), Some(quantity)) =
                (text(count, "/catalog_object_id"), text(count, "/quantity"))
            {
                out.insert(id.to_owned(), quantity.to_owned());
            }
        }
        cursor = non_empty(
            page.get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        if cursor.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Availability of `ids` (items, variations, modifiers), or with none, of everything at the
/// location that is not plainly in stock.
pub(crate) fn read(conn: &Connection, ids: &[String]) -> Result<Vec<Availability>, ProviderError> {
    let location = resolve_location(conn)?;
    let mut objects: Vec<Value> = Vec::new();
    if ids.is_empty() {
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut body = json!({
                "object_types": ["ITEM_VARIATION", "MODIFIER"],
                "include_deleted_objects": false,
                "limit": 1000,
            });
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let response = check_square(
                post(conn, "/v2/catalog/search")?.json(&body).send()?,
                NotFound::Upstream,
            )?;
            let page: Value = response.json_or_upstream()?;
            objects.extend(
                page.get("objects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            cursor = non_empty(
                page.get("cursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
            if cursor.is_none() {
                break;
            }
        }
    } else {
        let body = json!({ "object_ids": ids, "include_related_objects": false });
        let response = check_square(
            post(conn, "/v2/catalog/batch-retrieve")?
                .json(&body)
                .send()?,
            NotFound::Upstream,
        )?;
        let page: Value = response.json_or_upstream()?;
        objects.extend(
            page.get("objects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    // Variations whose count matters: tracked, present, not already sold out by override.
    let mut tracked: Vec<String> = Vec::new();
    let mut answers: Vec<Availability> = Vec::new();
    for object in &objects {
        let Some(id) = text(object, "/id") else {
            continue;
        };
        if object.get("is_deleted").and_then(Value::as_bool) == Some(true)
            || !present_at(object, &location)
        {
            continue;
        }
        match text(object, "/type") {
            Some("ITEM") => {
                let variations: Vec<&Value> = object
                    .pointer("/item_data/variations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|v| present_at(v, &location))
                    .collect();
                let all_sold_out = !variations.is_empty()
                    && variations.iter().all(|v| sold_out(v, &location).is_some());
                answers.push(if all_sold_out {
                    out_of_stock(id, None)
                } else {
                    in_stock(id)
                });
            }
            Some("ITEM_VARIATION" | "MODIFIER") => match sold_out(object, &location) {
                Some(until) => answers.push(out_of_stock(id, until)),
                None if tracks_inventory(object, &location) => tracked.push(id.to_owned()),
                None if !ids.is_empty() => answers.push(in_stock(id)),
                None => {}
            },
            _ => {}
        }
    }
    if !tracked.is_empty() {
        let counted = counts(conn, &location, if ids.is_empty() { &[] } else { &tracked })?;
        for id in &tracked {
            match counted.get(id) {
                Some(quantity) => answers.push(from_count(id, quantity)),
                // Tracked but never counted: nothing says it is short, so only an explicit
                // question gets an answer (in stock).
                None if !ids.is_empty() => answers.push(in_stock(id)),
                None => {}
            }
        }
    }
    let known: Vec<&str> = answers.iter().map(|a| a.provider_id.as_str()).collect();
    for id in ids {
        if !known.contains(&id.as_str()) {
            posbridge_sdk::warn!("Square has no catalog object {id} at location {location}");
        }
    }
    Ok(answers)
}
