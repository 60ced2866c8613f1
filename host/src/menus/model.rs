//! The canonical menu of a venue and the checks a menu must pass before it is stored,
//! whoever wrote it.
//!
//! Size: about 1,030 lines, 350 of them tests: the menu's types and the validation that
//! must see all of them at once (ids unique per kind, references between items, groups and
//! options, an item's own modifier bounds against its groups', limits).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::money::{NonNegativeAmount, MAX_AMOUNT};

/// Longest id or provider id, in characters (Toast GUIDs are 36, Square ids about 26).
const MAX_ID_CHARS: usize = 200;
/// Longest name.
const MAX_NAME_CHARS: usize = 200;
/// Longest description.
const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Most items in one menu: far above any real restaurant's, bounding memory per venue.
const MAX_ITEMS: usize = 20_000;
/// Most categories or modifier groups in one menu.
const MAX_GROUPS: usize = 5_000;
/// Most variations of one item.
const MAX_VARIATIONS: usize = 100;
/// Most options in one modifier group.
const MAX_OPTIONS: usize = 500;
/// Most categories or modifier groups one item refers to.
const MAX_REFERENCES: usize = 100;

/// A menu's content: what a `PUT` carries. Every entry has a canonical `id` (unique among
/// its kind; variation ids across the whole menu, option ids within their group) and
/// optionally the POS's id behind it, so an order can be sent to the POS by its own ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MenuContent {
    /// Categories, in display order.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Items, in display order.
    #[serde(default)]
    pub items: Vec<Item>,
    /// Modifier groups items refer to by id.
    #[serde(default)]
    pub modifier_groups: Vec<ModifierGroup>,
}

/// A menu category ("Burgers").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Category {
    /// Canonical id, unique among categories.
    pub id: String,
    /// The POS's id for it, if it came from (or maps to) one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Display name.
    pub name: String,
}

/// A sellable item with at least one variation (size); prices are on the variations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Item {
    /// Canonical id, unique among items.
    pub id: String,
    /// The POS's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Description for the ordering page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Ids of the categories it is listed under.
    #[serde(default)]
    pub category_ids: Vec<String>,
    /// Sizes or variants, each with its price; at least one.
    pub variations: Vec<Variation>,
    /// Ids of the modifier groups offered with it, in display order.
    #[serde(default)]
    pub modifier_group_ids: Vec<String>,
    /// This item's own selection bounds for some of its groups (Square lets an item tighten
    /// or loosen a shared modifier list); a group without one uses the group's bounds.
    /// Left out when empty, so a menu without overrides reads and stores as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modifier_group_overrides: Vec<ModifierGroupOverride>,
    /// How the item is taxed, as a hint for the ordering side (the POS prices the order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<TaxHint>,
    /// Sold out (86'd): every variation is unavailable. Left out of a `PUT`, the item keeps
    /// its current availability (see [`carry_availability`]); always present when served.
    #[serde(default)]
    pub sold_out: Option<bool>,
}

/// An item's own selection bounds for one of the groups it lists ("Sauce: pick 1-2" shared
/// by every burger, but the kids' burger allows one). Each bound left out is the group's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifierGroupOverride {
    /// The group, one of the item's `modifier_group_ids`.
    pub group_id: String,
    /// This item's fewest selections; replaces the group's `min_selected` *and* `required`
    /// (0 makes a required group optional on this item, as Square's item-level minimum does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_selected: Option<u32>,
    /// This item's most selections (at least 1); absent, the group's maximum applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_selected: Option<u32>,
}

/// The selections an order line must make in one group for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Fewest selections (counting quantities).
    pub min: u32,
    /// Most selections; none means no limit.
    pub max: Option<u32>,
}

/// A size or variant of an item ("Large").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Variation {
    /// Canonical id, unique among all variations of the menu.
    pub id: String,
    /// The POS's id (a Square ITEM_VARIATION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Price of one, minor units of the tenant's currency.
    pub price: NonNegativeAmount,
    /// Sold out; left out of a `PUT`, kept as it is (see [`carry_availability`]).
    #[serde(default)]
    pub sold_out: Option<bool>,
}

/// A tax hint: which rate applies and whether prices include it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaxHint {
    /// Name of the tax ("Sales tax").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Rate as a decimal percentage string, like Square's (`"8.875"`): never a float.
    pub percentage: String,
    /// Whether the item's prices already include the tax.
    #[serde(default)]
    pub inclusive: bool,
}

/// A group of modifiers chosen with an item ("Sauce: pick 1-2").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifierGroup {
    /// Canonical id, unique among modifier groups.
    pub id: String,
    /// The POS's id (Square MODIFIER_LIST, Toast modifier group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Fewest selections (counting quantities).
    #[serde(default)]
    pub min_selected: u32,
    /// Most selections; none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_selected: Option<u32>,
    /// A selection must be made (at least one even when `min_selected` is 0).
    #[serde(default)]
    pub required: bool,
    /// The options; ids unique within the group.
    pub options: Vec<ModifierOption>,
}

impl ModifierGroup {
    /// The fewest selections an order must make: `required` means at least one.
    pub(crate) fn effective_min(&self) -> u32 {
        if self.required {
            self.min_selected.max(1)
        } else {
            self.min_selected
        }
    }

    /// This group's bounds on an item whose override for it is `over` (none: the group's
    /// own); each bound the override leaves out is the group's.
    pub(crate) fn bounds(&self, over: Option<&ModifierGroupOverride>) -> Bounds {
        Bounds {
            min: over
                .and_then(|o| o.min_selected)
                .unwrap_or_else(|| self.effective_min()),
            max: over.and_then(|o| o.max_selected).or(self.max_selected),
        }
    }
}

/// One option of a modifier group ("Extra cheese").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifierOption {
    /// Canonical id, unique within its group (the same option may sit in several groups).
    pub id: String,
    /// The POS's id (Square MODIFIER, Toast option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Price added per selection, minor units.
    #[serde(default)]
    pub price: NonNegativeAmount,
    /// Pre-selected on the ordering page.
    #[serde(default)]
    pub default: bool,
    /// Sold out; left out of a `PUT`, kept as it is (see [`carry_availability`]).
    #[serde(default)]
    pub sold_out: Option<bool>,
}

/// A venue's menu as `GET /api/{tenant}/menus/{venue}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Menu {
    /// The venue.
    pub venue: String,
    /// ISO-4217 currency of every price (the tenant's).
    pub currency: String,
    /// Increases by one with every change (content or availability).
    pub version: i64,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Categories, in display order.
    pub categories: Vec<Category>,
    /// Items, in display order.
    pub items: Vec<Item>,
    /// Modifier groups.
    pub modifier_groups: Vec<ModifierGroup>,
}

impl Menu {
    /// The content part, as a `PUT` would carry it.
    pub(crate) fn content(&self) -> MenuContent {
        MenuContent {
            categories: self.categories.clone(),
            items: self.items.clone(),
            modifier_groups: self.modifier_groups.clone(),
        }
    }
}

/// One problem found in a menu, located by a JSON path (`items[3].variations[0].price`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct MenuProblem {
    /// Where: a path into the submitted document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Most problems reported for one menu; the rest are left out (fixing these shows them).
const MAX_PROBLEMS: usize = 50;

struct Problems(Vec<MenuProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(MenuProblem {
                path: path.into(),
                message: message.into(),
            });
        }
    }

    fn text(&mut self, path: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.add(path, "must not be empty");
        } else if value.chars().count() > max {
            self.add(path, format!("must be at most {max} characters"));
        } else if value.contains('\0') {
            self.add(path, "must not contain NUL");
        }
    }

    fn id(&mut self, path: &str, value: &str) {
        self.text(path, value, MAX_ID_CHARS, true);
    }

    fn provider_id(&mut self, path: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.id(path, v);
        }
    }

    fn price(&mut self, path: &str, price: NonNegativeAmount) {
        // Deserialising already refuses negatives; a value built in the host is checked too.
        if !(0..=MAX_AMOUNT).contains(&price.get()) {
            self.add(path, format!("must be 0-{MAX_AMOUNT} minor units"));
        }
    }
}

/// Whether `s` is a decimal percentage 0-100 with at most 4 fraction digits (`"8.875"`).
fn valid_percentage(s: &str) -> bool {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 3 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if s.contains('.') && (frac.is_empty() || frac.len() > 4) {
        return false;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let whole: u32 = whole.parse().unwrap_or(u32::MAX);
    whole < 100 || (whole == 100 && frac.bytes().all(|b| b == b'0'))
}

/// Checks a menu: sizes, texts, prices, unique ids (and provider ids), references that
/// resolve, modifier bounds that can be met. Returns every problem found (up to 50).
pub(crate) fn validate(menu: &MenuContent) -> Result<(), Vec<MenuProblem>> {
    let mut p = Problems(Vec::new());
    if menu.items.len() > MAX_ITEMS {
        p.add("items", format!("at most {MAX_ITEMS} items"));
    }
    if menu.categories.len() > MAX_GROUPS {
        p.add("categories", format!("at most {MAX_GROUPS} categories"));
    }
    if menu.modifier_groups.len() > MAX_GROUPS {
        p.add(
            "modifier_groups",
            format!("at most {MAX_GROUPS} modifier groups"),
        );
    }
    if !p.0.is_empty() {
        return Err(p.0);
    }

    let mut category_ids = HashSet::new();
    let mut category_pids = HashSet::new();
    for (i, c) in menu.categories.iter().enumerate() {
        let at = format!("categories[{i}]");
        p.id(&format!("{at}.id"), &c.id);
        p.provider_id(&format!("{at}.provider_id"), c.provider_id.as_deref());
        p.text(&format!("{at}.name"), &c.name, MAX_NAME_CHARS, true);
        if !category_ids.insert(c.id.as_str()) {
            p.add(
                format!("{at}.id"),
                format!("duplicate category id {:?}", c.id),
            );
        }
        if let Some(pid) = &c.provider_id {
            if !category_pids.insert(pid.as_str()) {
                p.add(
                    format!("{at}.provider_id"),
                    format!("duplicate category provider_id {pid:?}"),
                );
            }
        }
    }

    let mut group_ids = HashSet::new();
    let mut group_pids = HashSet::new();
    // The first group of each id: an override is checked against the group it names.
    let mut groups: HashMap<&str, &ModifierGroup> = HashMap::new();
    for (i, g) in menu.modifier_groups.iter().enumerate() {
        groups.entry(g.id.as_str()).or_insert(g);
        let at = format!("modifier_groups[{i}]");
        p.id(&format!("{at}.id"), &g.id);
        p.provider_id(&format!("{at}.provider_id"), g.provider_id.as_deref());
        p.text(&format!("{at}.name"), &g.name, MAX_NAME_CHARS, true);
        if !group_ids.insert(g.id.as_str()) {
            p.add(
                format!("{at}.id"),
                format!("duplicate modifier group id {:?}", g.id),
            );
        }
        if let Some(pid) = &g.provider_id {
            if !group_pids.insert(pid.as_str()) {
                p.add(
                    format!("{at}.provider_id"),
                    format!("duplicate modifier group provider_id {pid:?}"),
                );
            }
        }
        if g.options.is_empty() || g.options.len() > MAX_OPTIONS {
            p.add(
                format!("{at}.options"),
                format!("a modifier group needs 1-{MAX_OPTIONS} options"),
            );
        }
        if let Some(max) = g.max_selected {
            if max == 0 {
                p.add(
                    format!("{at}.max_selected"),
                    "must be at least 1 (or absent)",
                );
            } else if g.effective_min() > max {
                p.add(
                    format!("{at}.min_selected"),
                    format!(
                        "min_selected {} (required counts as 1) is greater than max_selected {max}",
                        g.effective_min()
                    ),
                );
            }
        }
        let mut option_ids = HashSet::new();
        for (j, o) in g.options.iter().enumerate() {
            let at = format!("{at}.options[{j}]");
            p.id(&format!("{at}.id"), &o.id);
            p.provider_id(&format!("{at}.provider_id"), o.provider_id.as_deref());
            p.text(&format!("{at}.name"), &o.name, MAX_NAME_CHARS, true);
            p.price(&format!("{at}.price"), o.price);
            if !option_ids.insert(o.id.as_str()) {
                p.add(
                    format!("{at}.id"),
                    format!("duplicate option id {:?} in group {:?}", o.id, g.id),
                );
            }
        }
    }

    let mut item_ids = HashSet::new();
    let mut item_pids = HashSet::new();
    let mut variation_ids = HashSet::new();
    let mut variation_pids = HashSet::new();
    for (i, item) in menu.items.iter().enumerate() {
        let at = format!("items[{i}]");
        p.id(&format!("{at}.id"), &item.id);
        p.provider_id(&format!("{at}.provider_id"), item.provider_id.as_deref());
        p.text(&format!("{at}.name"), &item.name, MAX_NAME_CHARS, true);
        if let Some(d) = &item.description {
            p.text(
                &format!("{at}.description"),
                d,
                MAX_DESCRIPTION_CHARS,
                false,
            );
        }
        if !item_ids.insert(item.id.as_str()) {
            p.add(
                format!("{at}.id"),
                format!("duplicate item id {:?}", item.id),
            );
        }
        if let Some(pid) = &item.provider_id {
            if !item_pids.insert(pid.as_str()) {
                p.add(
                    format!("{at}.provider_id"),
                    format!("duplicate item provider_id {pid:?}"),
                );
            }
        }
        if item.variations.is_empty() || item.variations.len() > MAX_VARIATIONS {
            p.add(
                format!("{at}.variations"),
                format!("an item needs 1-{MAX_VARIATIONS} variations"),
            );
        }
        for (j, v) in item.variations.iter().enumerate() {
            let at = format!("{at}.variations[{j}]");
            p.id(&format!("{at}.id"), &v.id);
            p.provider_id(&format!("{at}.provider_id"), v.provider_id.as_deref());
            p.text(&format!("{at}.name"), &v.name, MAX_NAME_CHARS, true);
            p.price(&format!("{at}.price"), v.price);
            if !variation_ids.insert(v.id.as_str()) {
                p.add(
                    format!("{at}.id"),
                    format!("duplicate variation id {:?}", v.id),
                );
            }
            if let Some(pid) = &v.provider_id {
                if !variation_pids.insert(pid.as_str()) {
                    p.add(
                        format!("{at}.provider_id"),
                        format!("duplicate variation provider_id {pid:?}"),
                    );
                }
            }
        }
        if item.category_ids.len() > MAX_REFERENCES {
            p.add(
                format!("{at}.category_ids"),
                format!("at most {MAX_REFERENCES}"),
            );
        }
        if item.modifier_group_ids.len() > MAX_REFERENCES {
            p.add(
                format!("{at}.modifier_group_ids"),
                format!("at most {MAX_REFERENCES}"),
            );
        }
        let mut seen = HashSet::new();
        for (j, c) in item.category_ids.iter().enumerate() {
            if !category_ids.contains(c.as_str()) {
                p.add(
                    format!("{at}.category_ids[{j}]"),
                    format!("no category {c:?} in this menu"),
                );
            } else if !seen.insert(c.as_str()) {
                p.add(
                    format!("{at}.category_ids[{j}]"),
                    format!("category {c:?} listed twice"),
                );
            }
        }
        let mut seen = HashSet::new();
        for (j, g) in item.modifier_group_ids.iter().enumerate() {
            if !group_ids.contains(g.as_str()) {
                p.add(
                    format!("{at}.modifier_group_ids[{j}]"),
                    format!("no modifier group {g:?} in this menu"),
                );
            } else if !seen.insert(g.as_str()) {
                p.add(
                    format!("{at}.modifier_group_ids[{j}]"),
                    format!("modifier group {g:?} listed twice"),
                );
            }
        }
        check_overrides(&mut p, &at, item, &groups);
        if let Some(tax) = &item.tax {
            if !valid_percentage(&tax.percentage) {
                p.add(
                    format!("{at}.tax.percentage"),
                    "must be a decimal percentage 0-100 with at most 4 decimals, like \"8.875\"",
                );
            }
            if let Some(name) = &tax.name {
                p.text(&format!("{at}.tax.name"), name, MAX_NAME_CHARS, false);
            }
        }
    }
    if p.0.is_empty() {
        Ok(())
    } else {
        Err(p.0)
    }
}

/// Checks `item`'s modifier group overrides (at `at`): bounded in number, each naming a
/// group the item lists, once, with a maximum of at least 1 that its minimum (the group's
/// `required` counting as 1 where the override keeps the group's minimum) does not exceed.
fn check_overrides(
    p: &mut Problems,
    at: &str,
    item: &Item,
    groups: &HashMap<&str, &ModifierGroup>,
) {
    let overrides = &item.modifier_group_overrides;
    if overrides.len() > MAX_REFERENCES {
        p.add(
            format!("{at}.modifier_group_overrides"),
            format!("at most {MAX_REFERENCES}"),
        );
        return;
    }
    let mut seen = HashSet::new();
    for (j, o) in overrides.iter().enumerate() {
        let at = format!("{at}.modifier_group_overrides[{j}]");
        let g = o.group_id.as_str();
        if !item.modifier_group_ids.iter().any(|listed| listed == g) {
            p.add(
                format!("{at}.group_id"),
                format!("modifier group {g:?} is not in the item's modifier_group_ids"),
            );
            continue;
        }
        if !seen.insert(g) {
            p.add(
                format!("{at}.group_id"),
                format!("modifier group {g:?} has more than one override"),
            );
            continue;
        }
        if o.min_selected.is_none() && o.max_selected.is_none() {
            p.add(
                at.clone(),
                "an override needs min_selected or max_selected (or leave it out)",
            );
            continue;
        }
        if o.max_selected == Some(0) {
            p.add(
                format!("{at}.max_selected"),
                "must be at least 1 (or absent)",
            );
            continue;
        }
        // A listed group that does not exist is reported at modifier_group_ids already.
        let Some(group) = groups.get(g) else {
            continue;
        };
        let b = group.bounds(Some(o));
        if let Some(max) = b.max.filter(|max| b.min > *max) {
            // Named where the override made it so: its minimum, or its maximum alone.
            let field = if o.min_selected.is_some() {
                "min_selected"
            } else {
                "max_selected"
            };
            p.add(
                format!("{at}.{field}"),
                format!(
                    "the item's minimum {} (required counts as 1 unless the override sets \
                     min_selected) is greater than its maximum {max}",
                    b.min
                ),
            );
        }
    }
}

/// Fills in the availability a `PUT` left out: an entry the stored menu has (the same item
/// id, variation id, or option id in the same group) keeps its `sold_out`, a new one is
/// available. A menu re-published from the back office must not bring back what the
/// kitchen 86'd an hour ago; a `sold_out` the `PUT` states still wins.
/// `stored` is the stored menu's items and modifier groups (empty when there is none).
pub(crate) fn carry_availability(
    content: &mut MenuContent,
    (stored_items, stored_groups): (&[Item], &[ModifierGroup]),
) {
    let mut items = HashMap::new();
    let mut variations = HashMap::new();
    let mut options = HashMap::new();
    for item in stored_items {
        items.insert(item.id.as_str(), item.sold_out);
        for v in &item.variations {
            variations.insert(v.id.as_str(), v.sold_out);
        }
    }
    for g in stored_groups {
        for o in &g.options {
            options.insert((g.id.as_str(), o.id.as_str()), o.sold_out);
        }
    }
    let keep = |given: &mut Option<bool>, stored: Option<&Option<bool>>| {
        if given.is_none() {
            *given = Some(stored.copied().flatten().unwrap_or(false));
        }
    };
    for item in &mut content.items {
        keep(&mut item.sold_out, items.get(item.id.as_str()));
        for v in &mut item.variations {
            keep(&mut v.sold_out, variations.get(v.id.as_str()));
        }
    }
    for g in &mut content.modifier_groups {
        for o in &mut g.options {
            keep(
                &mut o.sold_out,
                options.get(&(g.id.as_str(), o.id.as_str())),
            );
        }
    }
}

/// Looks entries up by id; built once per check so an order of many lines stays linear.
pub(crate) struct MenuIndex<'m> {
    /// Items by canonical id.
    pub items: HashMap<&'m str, &'m Item>,
    /// Modifier groups by canonical id.
    pub groups: HashMap<&'m str, &'m ModifierGroup>,
}

impl<'m> MenuIndex<'m> {
    /// Indexes `menu`.
    pub(crate) fn new(menu: &'m Menu) -> Self {
        MenuIndex {
            items: menu.items.iter().map(|i| (i.id.as_str(), i)).collect(),
            groups: menu
                .modifier_groups
                .iter()
                .map(|g| (g.id.as_str(), g))
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn amount(v: i64) -> NonNegativeAmount {
        NonNegativeAmount::try_from(v).unwrap()
    }

    /// A small valid menu: a burger (single, double) with a required sauce group (1-2) and
    /// an optional extras group; fries with one size.
    pub(crate) fn sample() -> MenuContent {
        let option = |id: &str, price| ModifierOption {
            id: id.into(),
            provider_id: Some(format!("P-{id}")),
            name: id.into(),
            price: amount(price),
            default: false,
            sold_out: Some(false),
        };
        let variation = |id: &str, price| Variation {
            id: id.into(),
            provider_id: Some(format!("P-{id}")),
            name: id.into(),
            price: amount(price),
            sold_out: Some(false),
        };
        MenuContent {
            categories: vec![Category {
                id: "mains".into(),
                provider_id: Some("P-mains".into()),
                name: "Mains".into(),
            }],
            items: vec![
                Item {
                    id: "burger".into(),
                    provider_id: Some("P-burger".into()),
                    name: "Burger".into(),
                    description: None,
                    category_ids: vec!["mains".into()],
                    variations: vec![variation("single", 900), variation("double", 1300)],
                    modifier_group_ids: vec!["sauce".into(), "extras".into()],
                    modifier_group_overrides: vec![],
                    tax: Some(TaxHint {
                        name: None,
                        percentage: "8.875".into(),
                        inclusive: false,
                    }),
                    sold_out: Some(false),
                },
                Item {
                    id: "fries".into(),
                    provider_id: Some("P-fries".into()),
                    name: "Fries".into(),
                    description: None,
                    category_ids: vec![],
                    variations: vec![variation("fries-regular", 400)],
                    modifier_group_ids: vec![],
                    modifier_group_overrides: vec![],
                    tax: None,
                    sold_out: Some(false),
                },
            ],
            modifier_groups: vec![
                ModifierGroup {
                    id: "sauce".into(),
                    provider_id: Some("P-sauce".into()),
                    name: "Sauce".into(),
                    min_selected: 1,
                    max_selected: Some(2),
                    required: true,
                    options: vec![option("ketchup", 0), option("mayo", 0), option("bbq", 50)],
                },
                ModifierGroup {
                    id: "extras".into(),
                    provider_id: Some("P-extras".into()),
                    name: "Extras".into(),
                    min_selected: 0,
                    max_selected: None,
                    required: false,
                    options: vec![option("cheese", 100), option("bacon", 200)],
                },
            ],
        }
    }

    fn paths(menu: &MenuContent) -> Vec<String> {
        validate(menu)
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }

    #[test]
    fn the_sample_is_valid() {
        validate(&sample()).unwrap();
    }

    #[test]
    fn duplicates_are_named() {
        let mut m = sample();
        m.items[1].id = "burger".into();
        m.items[1].variations[0].id = "single".into();
        m.modifier_groups[0].options[1].id = "ketchup".into();
        m.categories.push(m.categories[0].clone());
        let found = paths(&m);
        assert!(found.contains(&"items[1].id".to_owned()), "{found:?}");
        assert!(found.contains(&"items[1].variations[0].id".to_owned()));
        assert!(found.contains(&"modifier_groups[0].options[1].id".to_owned()));
        assert!(found.contains(&"categories[1].id".to_owned()));
        assert!(found.contains(&"categories[1].provider_id".to_owned()));
    }

    #[test]
    fn dangling_references_are_named() {
        let mut m = sample();
        m.items[0].category_ids.push("drinks".into());
        m.items[0].modifier_group_ids[1] = "toppings".into();
        assert_eq!(
            paths(&m),
            vec![
                "items[0].category_ids[1]".to_owned(),
                "items[0].modifier_group_ids[1]".to_owned()
            ]
        );
    }

    #[test]
    fn bounds_that_cannot_be_met_are_refused() {
        let mut m = sample();
        m.modifier_groups[0].min_selected = 3;
        m.modifier_groups[1].max_selected = Some(0);
        m.modifier_groups[1].required = false;
        assert_eq!(
            paths(&m),
            vec![
                "modifier_groups[0].min_selected".to_owned(),
                "modifier_groups[1].max_selected".to_owned()
            ]
        );
        let mut m = sample();
        m.modifier_groups[1].max_selected = Some(1);
        m.modifier_groups[1].min_selected = 0;
        m.modifier_groups[1].required = true;
        validate(&m).unwrap();
    }

    fn over(group: &str, min: Option<u32>, max: Option<u32>) -> ModifierGroupOverride {
        ModifierGroupOverride {
            group_id: group.into(),
            min_selected: min,
            max_selected: max,
        }
    }

    #[test]
    fn item_overrides_that_cannot_apply_are_named() {
        // Sauce is 1-2 and required; extras 0-unlimited.
        let mut m = sample();
        m.items[0].modifier_group_overrides = vec![
            over("sauce", Some(0), Some(3)),
            over("extras", None, Some(1)),
        ];
        validate(&m).unwrap();
        let override_for = |i: usize, g: &str| {
            m.items[i]
                .modifier_group_overrides
                .iter()
                .find(|o| o.group_id == g)
        };
        assert_eq!(
            m.modifier_groups[0].bounds(override_for(0, "sauce")),
            Bounds {
                min: 0,
                max: Some(3)
            },
            "an override's minimum replaces the group's required"
        );
        assert_eq!(
            m.modifier_groups[1].bounds(override_for(0, "extras")),
            Bounds {
                min: 0,
                max: Some(1)
            }
        );
        assert_eq!(override_for(1, "sauce"), None);

        let mut m = sample();
        m.items[0].modifier_group_overrides = vec![
            // Fries' group list is empty; burger does not list "toppings".
            over("toppings", Some(1), None),
            over("sauce", None, Some(3)),
            over("sauce", None, Some(1)),
            over("extras", None, Some(0)),
        ];
        m.items[1].modifier_group_overrides = vec![over("sauce", Some(1), None)];
        assert_eq!(
            paths(&m),
            vec![
                "items[0].modifier_group_overrides[0].group_id".to_owned(),
                "items[0].modifier_group_overrides[2].group_id".to_owned(),
                "items[0].modifier_group_overrides[3].max_selected".to_owned(),
                "items[1].modifier_group_overrides[0].group_id".to_owned(),
            ]
        );

        // Effective min above effective max, whichever side the override moved; `required`
        // still counts as 1 where the override keeps the group's minimum.
        let mut m = sample();
        m.items[0].modifier_group_overrides = vec![
            over("sauce", Some(3), None),
            over("extras", Some(2), Some(1)),
        ];
        assert_eq!(
            paths(&m),
            vec![
                "items[0].modifier_group_overrides[0].min_selected".to_owned(),
                "items[0].modifier_group_overrides[1].min_selected".to_owned(),
            ]
        );
        let mut m = sample();
        m.modifier_groups[1].required = true;
        m.items[0].modifier_group_overrides = vec![over("extras", None, Some(1))];
        validate(&m).unwrap();
        m.modifier_groups[1].min_selected = 2;
        m.modifier_groups[1].max_selected = Some(2);
        let found = validate(&m).unwrap_err();
        assert_eq!(
            found[0].path,
            "items[0].modifier_group_overrides[0].max_selected"
        );
        assert!(found[0].message.contains("minimum 2"), "{found:?}");

        // An empty override says nothing and is refused; too many are refused.
        let mut m = sample();
        m.items[0].modifier_group_overrides = vec![over("sauce", None, None)];
        assert_eq!(paths(&m), vec!["items[0].modifier_group_overrides[0]"]);
        let mut m = sample();
        m.items[0].modifier_group_overrides =
            vec![over("sauce", None, Some(2)); MAX_REFERENCES + 1];
        assert_eq!(paths(&m), vec!["items[0].modifier_group_overrides"]);
    }

    #[test]
    fn overrides_are_optional_and_left_out_when_empty() {
        let item = serde_json::json!({
            "id": "burger", "name": "Burger",
            "variations": [{"id": "v", "name": "V", "price": 100}],
            "modifier_group_ids": ["sauce"],
        });
        let parsed: Item = serde_json::from_value(item.clone()).unwrap();
        assert!(parsed.modifier_group_overrides.is_empty());
        let written = serde_json::to_value(&parsed).unwrap();
        assert!(
            written.get("modifier_group_overrides").is_none(),
            "{written}"
        );
        let mut with = item.clone();
        with["modifier_group_overrides"] =
            serde_json::json!([{"group_id": "sauce", "max_selected": 3}]);
        let parsed: Item = serde_json::from_value(with).unwrap();
        assert_eq!(
            parsed.modifier_group_overrides,
            vec![over("sauce", None, Some(3))]
        );
        let written = serde_json::to_value(&parsed).unwrap();
        assert_eq!(
            written["modifier_group_overrides"],
            serde_json::json!([{"group_id": "sauce", "max_selected": 3}])
        );
        let mut unknown = item;
        unknown["modifier_group_overrides"] =
            serde_json::json!([{"group_id": "sauce", "maximum": 3}]);
        assert!(serde_json::from_value::<Item>(unknown).is_err());
    }

    #[test]
    fn negative_prices_never_parse_and_percentages_are_decimal_strings() {
        let err = serde_json::from_value::<Variation>(serde_json::json!({
            "id": "v", "name": "V", "price": -1
        }))
        .unwrap_err();
        assert!(err.to_string().contains("must not be negative"), "{err}");
        assert!(serde_json::from_value::<Variation>(serde_json::json!({
            "id": "v", "name": "V", "price": 1.5
        }))
        .is_err());
        for ok in ["0", "8.875", "100", "100.0", "7.25"] {
            assert!(valid_percentage(ok), "{ok}");
        }
        for bad in [
            "", "-1", "100.5", "8.", ".5", "8.12345", "abc", "1e2", "101",
        ] {
            assert!(!valid_percentage(bad), "{bad}");
        }
    }

    #[test]
    fn availability_left_out_of_a_put_is_kept_and_stated_availability_wins() {
        let mut stored = sample();
        stored.items[1].sold_out = Some(true);
        stored.items[0].variations[1].sold_out = Some(true);
        stored.modifier_groups[0].options[2].sold_out = Some(true);
        let mut put = sample();
        for item in &mut put.items {
            item.sold_out = None;
            for v in &mut item.variations {
                v.sold_out = None;
            }
        }
        for g in &mut put.modifier_groups {
            for o in &mut g.options {
                o.sold_out = None;
            }
        }
        // The burger's double is stated available again; a new option starts available;
        // bbq moves to another group, where it is a new option.
        put.items[0].variations[1].sold_out = Some(false);
        let bbq = put.modifier_groups[0].options.remove(2);
        put.modifier_groups[1].options.push(bbq);
        let mut fresh = put.clone();
        carry_availability(&mut put, (&stored.items, &stored.modifier_groups));
        assert_eq!(put.items[1].sold_out, Some(true), "fries stay 86'd");
        assert_eq!(put.items[0].sold_out, Some(false));
        assert_eq!(put.items[0].variations[0].sold_out, Some(false));
        assert_eq!(put.items[0].variations[1].sold_out, Some(false));
        assert_eq!(put.modifier_groups[1].options[2].id, "bbq");
        assert_eq!(put.modifier_groups[1].options[2].sold_out, Some(false));
        // No stored menu: everything left out is available.
        carry_availability(&mut fresh, (&[], &[]));
        assert_eq!(fresh.items[1].sold_out, Some(false));
        assert!(fresh
            .modifier_groups
            .iter()
            .flat_map(|g| &g.options)
            .all(|o| o.sold_out == Some(false)));
    }

    #[test]
    fn empty_items_and_groups_are_refused() {
        let mut m = sample();
        m.items[1].variations.clear();
        m.modifier_groups[1].options.clear();
        m.items[0].name = " ".into();
        assert_eq!(
            paths(&m),
            vec![
                "modifier_groups[1].options".to_owned(),
                "items[0].name".to_owned(),
                "items[1].variations".to_owned()
            ]
        );
    }
}
