//! The menu out of Square: `POST /v2/catalog/search` over ITEM, ITEM_VARIATION,
//! MODIFIER_LIST, MODIFIER, CATEGORY and TAX, with `include_deleted_objects` and `begin_time`
//! for an incremental fetch (`GET /v2/catalog/list` never returns deletions).
//!
//! Only what is present at the connection's location is on its menu: an object absent there
//! is skipped in a full snapshot and reported deleted in an incremental answer. Variations and
//! modifiers are read nested in their item or modifier list; one that changed alone (an
//! incremental answer may carry it without its parent) brings its parent in through
//! `POST /v2/catalog/batch-retrieve`, since the contract's unit is the whole item or group.

use std::collections::BTreeSet;

use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{self, json, Value};

use crate::{check_square, non_empty, post, resolve_location};
use posbridge_sdk::errors::NotFound;

/// Objects per page asked of Square (its maximum; the limit is advisory).
const PAGE_LIMIT: u32 = 1000;
const OBJECT_TYPES: [&str; 6] = [
    "ITEM",
    "ITEM_VARIATION",
    "MODIFIER_LIST",
    "MODIFIER",
    "CATEGORY",
    "TAX",
];

/// Our cursor: Square's own plus the newest `updated_at` seen on earlier pages of this fetch
/// (the sync token when Square's answer carries no `latest_time`).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Cursor {
    #[serde(rename = "c")]
    square: Option<String>,
    #[serde(rename = "t")]
    newest: Option<String>,
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Whether a catalog object is present at `location` (Square's default is everywhere).
pub(crate) fn present_at(object: &Value, location: &str) -> bool {
    let listed = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_array)
            .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(location)))
    };
    let everywhere = object
        .get("present_at_all_locations")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if everywhere {
        !listed("absent_at_location_ids")
    } else {
        listed("present_at_location_ids")
    }
}

/// The `location_overrides` entry of `data` for `location`, if any.
pub(crate) fn location_override<'a>(data: &'a Value, location: &str) -> Option<&'a Value> {
    data.get("location_overrides")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o.get("location_id").and_then(Value::as_str) == Some(location))
}

fn limit(value: Option<&Value>) -> Option<u32> {
    value
        .and_then(Value::as_i64)
        .filter(|n| *n >= 0)
        .and_then(|n| u32::try_from(n).ok())
}

fn kind(object_type: &str) -> Option<CatalogKind> {
    Some(match object_type {
        "ITEM" => CatalogKind::Item,
        "ITEM_VARIATION" => CatalogKind::Variation,
        "MODIFIER_LIST" => CatalogKind::ModifierGroup,
        "MODIFIER" => CatalogKind::ModifierOption,
        "CATEGORY" => CatalogKind::Category,
        "TAX" => CatalogKind::Tax,
        _ => return None,
    })
}

/// What the objects of one page become.
#[derive(Default)]
struct Collected {
    page: Vec<CatalogItem>,
    categories: Vec<CatalogCategory>,
    groups: Vec<ModifierGroup>,
    taxes: Vec<CatalogTax>,
    deleted: Vec<CatalogDeletion>,
    currency: Option<String>,
    /// Ids of items and modifier lists on this page.
    parents: BTreeSet<String>,
    /// Parents to fetch because only a child of theirs changed.
    missing_parents: BTreeSet<String>,
}

impl Collected {
    fn delete(&mut self, kind: CatalogKind, id: &str) {
        self.deleted.push(CatalogDeletion {
            kind,
            provider_id: id.to_owned(),
        });
    }

    /// Adds one object; `incremental` decides whether an absent or deleted one is reported.
    fn add(&mut self, object: &Value, location: &str, incremental: bool) {
        let (Some(id), Some(object_type)) = (text(object, "/id"), text(object, "/type")) else {
            return;
        };
        let deleted = object
            .get("is_deleted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let gone = deleted || !present_at(object, location);
        if gone {
            if incremental {
                if let Some(kind) = kind(object_type) {
                    self.delete(kind, id);
                }
            }
            return;
        }
        match object_type {
            "ITEM" => {
                self.parents.insert(id.to_owned());
                let item = self.item(object, id, location);
                self.page.push(item);
            }
            "MODIFIER_LIST" => {
                self.parents.insert(id.to_owned());
                let group = self.group(object, id, location);
                self.groups.push(group);
            }
            "ITEM_VARIATION" if incremental => {
                if let Some(item) = text(object, "/item_variation_data/item_id") {
                    self.missing_parents.insert(item.to_owned());
                }
            }
            "MODIFIER" if incremental => {
                if let Some(list) = text(object, "/modifier_data/modifier_list_id") {
                    self.missing_parents.insert(list.to_owned());
                }
            }
            "CATEGORY" => self.categories.push(CatalogCategory {
                provider_id: id.to_owned(),
                name: text(object, "/category_data/name").unwrap_or(id).to_owned(),
                parent_id: text(object, "/category_data/parent_category/id").map(str::to_owned),
            }),
            "TAX" => {
                let enabled = object
                    .pointer("/tax_data/enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if !enabled {
                    if incremental {
                        self.delete(CatalogKind::Tax, id);
                    }
                    return;
                }
                self.taxes.push(CatalogTax {
                    provider_id: id.to_owned(),
                    name: text(object, "/tax_data/name").unwrap_or(id).to_owned(),
                    percentage: text(object, "/tax_data/percentage").map(str::to_owned),
                    inclusive: text(object, "/tax_data/inclusion_type") == Some("INCLUSIVE"),
                });
            }
            // In a full snapshot, variations and modifiers come nested in their parents.
            _ => {}
        }
    }

    fn price(&mut self, data: &Value, field: &str, location: &str) -> Option<i64> {
        let money = location_override(data, location)
            .and_then(|o| o.get(field))
            .filter(|m| m.is_object())
            .or_else(|| data.get(field).filter(|m| m.is_object()))?;
        if self.currency.is_none() {
            self.currency = money
                .get("currency")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        money.get("amount").and_then(Value::as_i64)
    }

    fn item(&mut self, object: &Value, id: &str, location: &str) -> CatalogItem {
        let data = object.get("item_data").cloned().unwrap_or(Value::Null);
        let mut category_ids: Vec<String> = data
            .get("categories")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| text(c, "/id").map(str::to_owned))
            .collect();
        if let Some(legacy) = text(&data, "/category_id") {
            if !category_ids.iter().any(|c| c == legacy) {
                category_ids.push(legacy.to_owned());
            }
        }
        let mut variations = Vec::new();
        for variation in data
            .get("variations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let deleted = variation
                .get("is_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let Some(vid) = text(variation, "/id") else {
                continue;
            };
            if deleted || !present_at(variation, location) {
                continue;
            }
            let vdata = variation
                .get("item_variation_data")
                .cloned()
                .unwrap_or(Value::Null);
            let price = if text(&vdata, "/pricing_type") == Some("VARIABLE_PRICING") {
                None
            } else {
                self.price(&vdata, "price_money", location)
            };
            variations.push(CatalogVariation {
                provider_id: vid.to_owned(),
                name: text(&vdata, "/name").unwrap_or("Regular").to_owned(),
                price,
            });
        }
        let modifier_groups = data
            .get("modifier_list_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|info| info.get("enabled").and_then(Value::as_bool) != Some(false))
            .filter_map(|info| {
                Some(ModifierGroupRef {
                    group_id: text(info, "/modifier_list_id")?.to_owned(),
                    min_selected: limit(info.get("min_selected_modifiers")),
                    max_selected: limit(info.get("max_selected_modifiers")),
                })
            })
            .collect();
        let tax_ids = data
            .get("tax_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        let archived = data
            .get("is_archived")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        CatalogItem {
            provider_id: id.to_owned(),
            name: text(&data, "/name").unwrap_or(id).to_owned(),
            description: non_empty(
                text(&data, "/description_plaintext")
                    .or_else(|| text(&data, "/description"))
                    .map(str::to_owned),
            ),
            category_ids,
            orderable: !archived && !variations.is_empty(),
            variations,
            modifier_groups,
            tax_ids,
        }
    }

    fn group(&mut self, object: &Value, id: &str, location: &str) -> ModifierGroup {
        let data = object
            .get("modifier_list_data")
            .cloned()
            .unwrap_or(Value::Null);
        let mut options = Vec::new();
        for modifier in data
            .get("modifiers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(mid) = text(modifier, "/id") else {
                continue;
            };
            let deleted = modifier
                .get("is_deleted")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if deleted || !present_at(modifier, location) {
                continue;
            }
            let mdata = modifier
                .get("modifier_data")
                .cloned()
                .unwrap_or(Value::Null);
            options.push(ModifierOption {
                provider_id: mid.to_owned(),
                name: text(&mdata, "/name").unwrap_or(mid).to_owned(),
                price: self.price(&mdata, "price_money", location).unwrap_or(0),
                is_default: mdata
                    .get("on_by_default")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
        let min_selected = limit(data.get("min_selected_modifiers")).unwrap_or(0);
        let max_selected =
            limit(data.get("max_selected_modifiers")).or(match text(&data, "/selection_type") {
                Some("SINGLE") => Some(1),
                _ => None,
            });
        ModifierGroup {
            provider_id: id.to_owned(),
            name: text(&data, "/name").unwrap_or(id).to_owned(),
            min_selected,
            max_selected,
            required: min_selected > 0,
            options,
        }
    }
}

/// One page of the catalog; see the module's notes.
pub(crate) fn fetch(
    conn: &Connection,
    request: &CatalogRequest,
) -> Result<CatalogPage, ProviderError> {
    let location = resolve_location(conn)?;
    let since = non_empty(request.since.clone());
    let incremental = since.is_some();
    let first_page = request.cursor.as_deref().is_none_or(str::is_empty);
    let cursor: Cursor = match request.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => serde_json::from_str(c).map_err(|_| {
            ProviderError::bad_payload(format!("not a Square catalog cursor: {c:?}"))
        })?,
        None => Cursor::default(),
    };
    let mut body = json!({
        "object_types": OBJECT_TYPES,
        "include_deleted_objects": incremental,
        "include_related_objects": false,
        "limit": PAGE_LIMIT,
    });
    if let Some(since) = &since {
        body["begin_time"] = json!(since);
    }
    if let Some(c) = &cursor.square {
        body["cursor"] = json!(c);
    }
    let response = check_square(
        post(conn, "/v2/catalog/search")?.json(&body).send()?,
        NotFound::Upstream,
    )?;
    let answer: Value = response.json_or_upstream()?;
    let objects = answer
        .get("objects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut newest = cursor.newest;
    for object in &objects {
        if let Some(at) = text(object, "/updated_at") {
            // RFC 3339 in UTC with the same precision compares as text.
            if newest.as_deref().is_none_or(|n| at > n) {
                newest = Some(at.to_owned());
            }
        }
    }
    let mut collected = Collected::default();
    for object in &objects {
        collected.add(object, &location, incremental);
    }
    let missing: Vec<String> = collected
        .missing_parents
        .iter()
        .filter(|id| !collected.parents.contains(*id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let body = json!({ "object_ids": missing, "include_related_objects": false });
        let response = check_square(
            post(conn, "/v2/catalog/batch-retrieve")?
                .json(&body)
                .send()?,
            NotFound::Upstream,
        )?;
        let answer: Value = response.json_or_upstream()?;
        for object in answer
            .get("objects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if matches!(text(object, "/type"), Some("ITEM" | "MODIFIER_LIST")) {
                collected.add(object, &location, incremental);
            }
        }
    }
    let next = non_empty(
        answer
            .get("cursor")
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    let next_cursor = match next {
        Some(square) => Some(
            serde_json::to_string(&Cursor {
                square: Some(square),
                newest: newest.clone(),
            })
            .map_err(|e| ProviderError::upstream(format!("catalog cursor: {e}")))?,
        ),
        None => None,
    };
    let unchanged = incremental && first_page && objects.is_empty() && next_cursor.is_none();
    // Square's own clock for "the catalog as of this answer", else the newest change seen,
    // else where this fetch started from.
    let sync_token = if next_cursor.is_some() {
        None
    } else {
        non_empty(
            answer
                .get("latest_time")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )
        .or(newest)
        .or(since)
        .or_else(|| {
            Some(posbridge_sdk::time::format_rfc3339(
                posbridge_sdk::clock::now(),
            ))
        })
    };
    Ok(CatalogPage {
        unchanged,
        full_snapshot: !incremental,
        currency: collected.currency,
        categories: collected.categories,
        items: collected.page,
        modifier_groups: collected.groups,
        taxes: collected.taxes,
        deleted: collected.deleted,
        next_cursor,
        sync_token,
    })
}
