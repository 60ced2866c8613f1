//! Square's sold-out state in [`crate::mock_square::MockSquare`], as the Square plugin reads
//! it for a venue's availability:
//!
//! - `POST /v2/inventory/counts/batch-retrieve` `{catalog_object_ids, location_ids, states,
//!   updated_after, cursor, limit}`: the counts of tracked variations (`quantity` a decimal
//!   string, `state` IN_STOCK), filtered by each field given, paged by `cursor` (at most
//!   `limit` ≤ 1000 per page, default 1000; [`Mock::set_inventory_page_size`] makes pages
//!   smaller); an answer without `cursor` is the last page.
//! - `location_overrides[].sold_out` (and `sold_out_valid_until`) on a variation or a
//!   modifier, which staff set in Square ([`Mock::set_sold_out`]); the object gets a new
//!   `version` and `updated_at`, as any catalog change does.
//!
//! Catalog searches for `ITEM_VARIATION` or `MODIFIER` without their parent type answer the
//! variations and modifiers nested in the mock's items and lists as objects of their own
//! (see `catalog_search` in [`crate::mock_square`]).

use std::collections::HashMap;

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use crate::mock::{json_response, Incoming, Mock};
use crate::mock_square::{rfc3339_millis, SquareApi, SQUARE_LOCATION};
use crate::mock_square_pricing::{error, invalid, Refusal};

/// Square's states of an inventory count.
const STATES: [&str; 11] = [
    "CUSTOM",
    "IN_STOCK",
    "SOLD",
    "RETURNED_BY_CUSTOMER",
    "RESERVED_FOR_SALE",
    "SOLD_ONLINE",
    "ORDERED_FROM_VENDOR",
    "RECEIVED_FROM_VENDOR",
    "IN_TRANSIT_TO",
    "WASTE",
    "UNLINKED_RETURN",
];

/// Inventory counts Square keeps for the mock.
#[derive(Debug)]
pub struct SquareInventory {
    /// (catalog object id, location id) → (quantity text, when calculated).
    counts: Vec<((String, String), (String, jiff::Timestamp))>,
    page: usize,
    cursors: HashMap<String, usize>,
    seq: u64,
}

impl Default for SquareInventory {
    fn default() -> Self {
        SquareInventory {
            counts: Vec::new(),
            page: 1000,
            cursors: HashMap::new(),
            seq: 0,
        }
    }
}

/// Serves `POST /v2/inventory/counts/batch-retrieve`; `None` for any other request.
pub(crate) fn route(api: &mut SquareApi, request: &Incoming<'_>) -> Option<(u16, Response)> {
    if request.path != "/v2/inventory/counts/batch-retrieve" {
        return None;
    }
    let answered = if request.method != Method::POST {
        Err(error(
            405,
            "METHOD_NOT_ALLOWED",
            None,
            "Method not allowed.",
        ))
    } else {
        match serde_json::from_slice::<Value>(request.body) {
            Ok(body @ Value::Object(_)) => batch_retrieve(&mut api.inventory, &body),
            _ => Err(error(
                400,
                "INVALID_BODY",
                None,
                "The request body is not a JSON object.",
            )),
        }
    };
    let (status, body) = match answered {
        Ok(body) => (200, body),
        Err(refusal) => refusal,
    };
    Some((status, json_response(status, &body, &[])))
}

/// The strings of array field `name` (absent = none); anything else is refused.
fn strings<'a>(body: &'a Value, name: &str) -> Result<Vec<&'a str>, Refusal> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid(name, "Expected an array of strings."))
            })
            .collect(),
        Some(_) => Err(invalid(name, "Expected an array of strings.")),
    }
}

fn batch_retrieve(inventory: &mut SquareInventory, body: &Value) -> Result<Value, Refusal> {
    let ids = strings(body, "catalog_object_ids")?;
    let locations = strings(body, "location_ids")?;
    let states = strings(body, "states")?;
    if let Some(bad) = states.iter().find(|s| !STATES.contains(s)) {
        return Err(error(
            400,
            "INVALID_ENUM_VALUE",
            Some("states"),
            &format!("`{bad}` is not a valid inventory state."),
        ));
    }
    let after = match body.get("updated_after").and_then(Value::as_str) {
        None => None,
        Some(t) => Some(
            t.parse::<jiff::Timestamp>()
                .map_err(|_| invalid("updated_after", "Expected an RFC 3339 timestamp."))?,
        ),
    };
    let limit = match body.get("limit").map(Value::as_u64) {
        None => 1000,
        Some(Some(n)) if (1..=1000).contains(&n) => n as usize,
        Some(_) => return Err(invalid("limit", "`limit` must be between 1 and 1000.")),
    }
    .min(inventory.page);
    let offset = match body.get("cursor").and_then(Value::as_str) {
        None => 0,
        Some(c) => *inventory.cursors.get(c).ok_or_else(|| {
            error(
                400,
                "INVALID_CURSOR",
                Some("cursor"),
                "The pagination cursor is not valid.",
            )
        })?,
    };
    // Every count the mock keeps is of tracked stock on hand: state IN_STOCK.
    let in_stock_wanted = states.is_empty() || states.contains(&"IN_STOCK");
    let matching: Vec<Value> = inventory
        .counts
        .iter()
        .filter(|_| in_stock_wanted)
        .filter(|((id, _), _)| ids.is_empty() || ids.contains(&id.as_str()))
        .filter(|((_, l), _)| locations.is_empty() || locations.contains(&l.as_str()))
        .filter(|(_, (_, at))| after.is_none_or(|a| *at > a))
        .map(|((id, location), (quantity, at))| {
            json!({
                "catalog_object_id": id,
                "catalog_object_type": "ITEM_VARIATION",
                "state": "IN_STOCK",
                "location_id": location,
                "quantity": quantity,
                "calculated_at": rfc3339_millis(*at),
            })
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).cloned().collect();
    let mut answer = json!({});
    if !page.is_empty() {
        answer["counts"] = Value::Array(page);
    }
    if offset + limit < matching.len() {
        inventory.seq += 1;
        let cursor = format!("inventory-cursor-{}", inventory.seq);
        inventory.cursors.insert(cursor.clone(), offset + limit);
        answer["cursor"] = json!(cursor);
    }
    Ok(answer)
}

/// The catalog object `id`, top level or nested in an item or a modifier list, with the
/// index of the top-level object holding it.
fn object_mut<'a>(catalog: &'a mut [Value], id: &str) -> Option<(&'a mut Value, usize)> {
    const NESTED: [&str; 2] = ["/item_data/variations", "/modifier_list_data/modifiers"];
    let (index, child) = catalog.iter().enumerate().find_map(|(index, object)| {
        if object["id"] == id {
            return Some((index, None));
        }
        NESTED.iter().find_map(|pointer| {
            let children = object.pointer(pointer)?.as_array()?;
            let at = children.iter().position(|c| c["id"] == id)?;
            Some((index, Some((*pointer, at))))
        })
    })?;
    let object = &mut catalog[index];
    match child {
        None => Some((object, index)),
        Some((pointer, at)) => Some((object.pointer_mut(pointer)?.get_mut(at)?, index)),
    }
}

impl Mock<SquareApi> {
    /// Staff mark variation or modifier `id` sold out (or back) at [`SQUARE_LOCATION`] in
    /// Square: its `location_overrides` entry gets `sold_out` (and `sold_out_valid_until`
    /// when `until` is given, RFC 3339), and the object a new version. `false` when there is
    /// no such object.
    pub fn set_sold_out(&self, id: &str, sold_out: bool, until: Option<&str>) -> bool {
        self.with(|api| {
            let Some((object, parent)) = object_mut(&mut api.catalog, id) else {
                return false;
            };
            let data = if object.get("item_variation_data").is_some() {
                "item_variation_data"
            } else {
                "modifier_data"
            };
            let overrides = &mut object[data]["location_overrides"];
            if !overrides.is_array() {
                *overrides = json!([]);
            }
            let list = overrides.as_array_mut().expect("made an array above");
            let entry = match list
                .iter()
                .position(|o| o["location_id"] == SQUARE_LOCATION)
            {
                Some(i) => &mut list[i],
                None => {
                    list.push(json!({"location_id": SQUARE_LOCATION}));
                    list.last_mut().expect("just pushed")
                }
            };
            entry["sold_out"] = json!(sold_out);
            match until.filter(|_| sold_out) {
                Some(until) => entry["sold_out_valid_until"] = json!(until),
                None => {
                    entry
                        .as_object_mut()
                        .map(|o| o.remove("sold_out_valid_until"));
                }
            }
            let parent = api.catalog[parent].clone();
            api.stamp_catalog(parent);
            true
        })
    }

    /// Square counts `quantity` (a decimal string, "0" = none left) of variation `id` in
    /// stock at [`SQUARE_LOCATION`], and the variation tracks its inventory from now on (as
    /// when staff set stock in Square). `false` when there is no such variation.
    pub fn set_inventory_count(&self, id: &str, quantity: &str) -> bool {
        self.with(|api| {
            let Some((variation, parent)) = object_mut(&mut api.catalog, id) else {
                return false;
            };
            if variation.get("item_variation_data").is_none() {
                return false;
            }
            let tracked = variation["item_variation_data"]["track_inventory"] == true;
            if !tracked {
                variation["item_variation_data"]["track_inventory"] = json!(true);
                let parent = api.catalog[parent].clone();
                api.stamp_catalog(parent);
            }
            let key = (id.to_owned(), SQUARE_LOCATION.to_owned());
            let value = (quantity.to_owned(), jiff::Timestamp::now());
            let counts = &mut api.inventory.counts;
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, existing)) => *existing = value,
                None => counts.push((key, value)),
            }
            true
        })
    }

    /// Counts per `batch-retrieve` page (Square's is 1000), to exercise its cursor.
    pub fn set_inventory_page_size(&self, size: usize) {
        self.with(|api| api.inventory.page = size.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_square::{square_item, MockSquare, SQUARE_TOKEN};

    async fn post(mock: &MockSquare, path: &str, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", mock.base_url()))
            .bearer_auth(SQUARE_TOKEN)
            .json(body)
            .send()
            .await
            .expect("the mock answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn counts_page_and_filter_and_overrides_show_in_searches() {
        let mock = MockSquare::start().await;
        mock.upsert_catalog([square_item(
            "burger",
            "Burger",
            "mains",
            &[("single", "Single", 900), ("double", "Double", 1300)],
            &[],
        )]);
        assert!(mock.set_inventory_count("single", "0"));
        assert!(mock.set_inventory_count("double", "7"));
        assert!(!mock.set_inventory_count("nope", "1"));
        mock.set_inventory_page_size(1);
        let ask = json!({"location_ids": [SQUARE_LOCATION], "states": ["IN_STOCK"]});
        let (status, first) = post(&mock, "/v2/inventory/counts/batch-retrieve", &ask).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["counts"][0]["quantity"], "0");
        let mut next = ask.clone();
        next["cursor"] = first["cursor"].clone();
        let (_, second) = post(&mock, "/v2/inventory/counts/batch-retrieve", &next).await;
        assert_eq!(second["counts"][0]["catalog_object_id"], "double");
        assert!(second.get("cursor").is_none());
        let only = json!({"catalog_object_ids": ["double"], "states": ["SOLD"]});
        let (_, none) = post(&mock, "/v2/inventory/counts/batch-retrieve", &only).await;
        assert!(none.get("counts").is_none(), "{none}");
        let bad = json!({"states": ["GONE"]});
        assert_eq!(
            post(&mock, "/v2/inventory/counts/batch-retrieve", &bad)
                .await
                .0,
            400
        );

        assert!(mock.set_sold_out("double", true, None));
        let search = json!({"object_types": ["ITEM_VARIATION", "MODIFIER"]});
        let (_, found) = post(&mock, "/v2/catalog/search", &search).await;
        let double = found["objects"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["id"] == "double"))
            .cloned()
            .unwrap_or_else(|| panic!("variations are searchable: {found}"));
        let overrides = &double["item_variation_data"]["location_overrides"][0];
        assert_eq!(
            (&overrides["location_id"], &overrides["sold_out"]),
            (&json!(SQUARE_LOCATION), &json!(true))
        );
        assert_eq!(double["item_variation_data"]["track_inventory"], true);
        // With their parent type asked too, they come nested in it only.
        let both = json!({"object_types": ["ITEM", "ITEM_VARIATION"]});
        let (_, found) = post(&mock, "/v2/catalog/search", &both).await;
        assert_eq!(
            found["objects"].as_array().map(Vec::len),
            Some(1),
            "{found}"
        );
    }
}
