//! The menu out of Toast: `GET /menus/v2/metadata` first, and the whole published menu
//! (`GET /menus/v2/menus`, limited to 1 request/s per location) only when its `lastUpdated`
//! moved since the sync token; otherwise the answer is `unchanged`.
//!
//! Toast has no partial menu: a changed menu is answered as a full snapshot (one page), so
//! deletions are whatever the snapshot no longer names. Menus and their nested menu groups
//! become categories (a group's parent is its menu or enclosing group); a menu item is an item
//! with one variation (itself, at its price; none for SIZE_PRICE / OPEN_PRICE); modifier
//! groups and options are read from the top-level maps keyed by `referenceId`. An item is
//! orderable by posbridge only if it, and every menu and group above it that states a
//! visibility, is visible to `ORDERING_PARTNERS`.

use std::collections::BTreeMap;

use posbridge_sdk::errors::NotFound;
use posbridge_sdk::http::Request;
use posbridge_sdk::money;
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::Value;

use crate::{field, saved_currency, text, Api};

const VISIBLE_TO_US: &str = "ORDERING_PARTNERS";

/// Whether an entity is visible to ordering partners (no `visibility` stated: it is).
fn visible(entity: &Value) -> bool {
    match entity.get("visibility").and_then(Value::as_array) {
        None => true,
        Some(channels) => channels.iter().any(|c| c.as_str() == Some(VISIBLE_TO_US)),
    }
}

fn reference_key(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

struct Walk<'a> {
    currency: String,
    groups_by_ref: &'a BTreeMap<String, Value>,
    categories: Vec<CatalogCategory>,
    items: BTreeMap<String, CatalogItem>,
    used_groups: BTreeMap<String, String>,
}

impl Walk<'_> {
    fn price(&self, value: Option<&Value>) -> Option<i64> {
        let value = value.filter(|v| !v.is_null())?;
        match money::value_to_minor(value, &self.currency) {
            Ok(minor) => Some(minor),
            Err(e) => {
                posbridge_sdk::warn!("skipping a Toast price: {e}");
                None
            }
        }
    }

    fn group(&mut self, group: &Value, parent: &str, visible_above: bool) {
        let Some(guid) = text(group, "guid") else {
            return;
        };
        let visible_here = visible_above && visible(group);
        self.categories.push(CatalogCategory {
            provider_id: guid.clone(),
            name: text(group, "name").unwrap_or_else(|| guid.clone()),
            parent_id: Some(parent.to_owned()),
        });
        for item in group
            .get("menuItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.item(item, &guid, visible_here);
        }
        for child in group
            .get("menuGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.group(child, &guid, visible_here);
        }
    }

    fn item(&mut self, item: &Value, group: &str, visible_above: bool) {
        let Some(guid) = text(item, "guid") else {
            return;
        };
        let orderable = visible_above && visible(item);
        if let Some(existing) = self.items.get_mut(&guid) {
            // The same item in several groups: one item, several categories.
            if !existing.category_ids.iter().any(|c| c == group) {
                existing.category_ids.push(group.to_owned());
            }
            existing.orderable |= orderable;
            return;
        }
        let strategy = text(item, "pricingStrategy");
        let price = match strategy.as_deref() {
            Some("SIZE_PRICE" | "OPEN_PRICE") => None,
            _ => self.price(field(item, "price")),
        };
        let name = text(item, "name").unwrap_or_else(|| guid.clone());
        let modifier_groups = item
            .get("modifierGroupReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(reference_key)
            .filter_map(|key| {
                let group = self.groups_by_ref.get(&key)?;
                let id = text(group, "guid")?;
                self.used_groups.insert(key, id.clone());
                Some(ModifierGroupRef {
                    group_id: id,
                    min_selected: None,
                    max_selected: None,
                })
            })
            .collect();
        self.items.insert(
            guid.clone(),
            CatalogItem {
                provider_id: guid.clone(),
                name: name.clone(),
                description: text(item, "description"),
                category_ids: vec![group.to_owned()],
                variations: vec![CatalogVariation {
                    provider_id: guid,
                    name,
                    price,
                }],
                modifier_groups,
                tax_ids: Vec::new(),
                orderable,
            },
        );
    }
}

/// `{ "<referenceId>": {…} }` of the menus document's `name` map.
fn by_reference(document: &Value, name: &str) -> BTreeMap<String, Value> {
    document
        .get(name)
        .and_then(Value::as_object)
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The menus document → one full-snapshot page.
pub(crate) fn parse_menus(
    document: &Value,
    currency: &str,
    sync_token: Option<String>,
) -> CatalogPage {
    let groups_by_ref = by_reference(document, "modifierGroupReferences");
    let options_by_ref = by_reference(document, "modifierOptionReferences");
    let mut walk = Walk {
        currency: currency.to_owned(),
        groups_by_ref: &groups_by_ref,
        categories: Vec::new(),
        items: BTreeMap::new(),
        used_groups: BTreeMap::new(),
    };
    let mut order: Vec<String> = Vec::new();
    for menu in document
        .get("menus")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(guid) = text(menu, "guid") else {
            continue;
        };
        let menu_visible = visible(menu);
        walk.categories.push(CatalogCategory {
            provider_id: guid.clone(),
            name: text(menu, "name").unwrap_or_else(|| guid.clone()),
            parent_id: None,
        });
        let before: Vec<String> = walk.items.keys().cloned().collect();
        for group in menu
            .get("menuGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk.group(group, &guid, menu_visible);
        }
        order.extend(walk.items.keys().filter(|k| !before.contains(k)).cloned());
    }
    let mut modifier_groups = Vec::new();
    for (key, id) in &walk.used_groups {
        let Some(group) = groups_by_ref.get(key) else {
            continue;
        };
        if modifier_groups
            .iter()
            .any(|g: &ModifierGroup| &g.provider_id == id)
        {
            continue;
        }
        let options = group
            .get("modifierOptionReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(reference_key)
            .filter_map(|k| options_by_ref.get(&k))
            .filter(|o| visible(o))
            .filter_map(|o| {
                let guid = text(o, "guid")?;
                Some(ModifierOption {
                    name: text(o, "name").unwrap_or_else(|| guid.clone()),
                    provider_id: guid,
                    price: walk.price(field(o, "price")).unwrap_or(0),
                    is_default: o.get("isDefault").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect();
        let count = |name: &str| {
            group
                .get(name)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        let required = text(group, "requiredMode").as_deref() == Some("REQUIRED");
        let min_selected = count("minSelections").unwrap_or(0).max(u32::from(required));
        modifier_groups.push(ModifierGroup {
            provider_id: id.clone(),
            name: text(group, "name").unwrap_or_else(|| id.clone()),
            min_selected,
            // Toast sends no (or a zero) maximum for "as many as you like".
            max_selected: count("maxSelections").filter(|m| *m > 0),
            required,
            options,
        });
    }
    let mut items = walk.items;
    let items = order.iter().filter_map(|k| items.remove(k)).collect();
    CatalogPage {
        unchanged: false,
        full_snapshot: true,
        currency: Some(currency.to_owned()),
        categories: walk.categories,
        items,
        modifier_groups,
        taxes: Vec::new(),
        deleted: Vec::new(),
        next_cursor: None,
        sync_token,
    }
}

/// Metadata, then the menus only if `lastUpdated` moved since `request.since`.
pub(crate) fn fetch(
    conn: &Connection,
    request: &CatalogRequest,
) -> Result<CatalogPage, ProviderError> {
    let api = Api::new(conn);
    let url = api.url("/menus/v2/metadata");
    let metadata: Value = api
        .call(|| Request::get(&url), NotFound::Upstream)?
        .json_or_upstream()?;
    let last_updated = text(&metadata, "lastUpdated");
    let since = request.since.as_deref().filter(|s| !s.is_empty());
    if let (Some(since), Some(last)) = (since, last_updated.as_deref()) {
        if since == last {
            return Ok(CatalogPage {
                unchanged: true,
                full_snapshot: false,
                currency: None,
                categories: Vec::new(),
                items: Vec::new(),
                modifier_groups: Vec::new(),
                taxes: Vec::new(),
                deleted: Vec::new(),
                next_cursor: None,
                sync_token: Some(last.to_owned()),
            });
        }
    }
    let url = api.url("/menus/v2/menus");
    let document: Value = api
        .call(|| Request::get(&url), NotFound::Upstream)?
        .json_or_upstream()?;
    // The document's own stamp is what this snapshot is; the metadata's is the fallback.
    let token = text(&document, "lastUpdated").or(last_updated);
    Ok(parse_menus(&document, &saved_currency(), token))
}
