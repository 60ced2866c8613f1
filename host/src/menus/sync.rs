//! A venue's menu out of its POS: the pages of a provider catalog fetch, merged into the
//! canonical menu by the POS's ids, and stored through the same write path as a `PUT`.
//!
//! Canonical ids are stable across syncs: an entry already on the menu (matched by its
//! provider id) keeps its canonical id, so carts built against an earlier version keep
//! working; a new entry takes its provider id as canonical id (suffixed if a local entry
//! holds it). What the canonical menu cannot sell is left out: items the POS does not offer
//! to ordering partners (`orderable = false`), open-priced variations, items left with no
//! priced variation, modifier groups without options, an item's own modifier bounds that
//! cannot be met (its groups' apply). Nested categories are flattened: a
//! sub-category is listed under its own name prefixed by its non-root ancestors'
//! ("Burgers › Specials"), top-level menus (Toast) and root categories keep their names.
//!
//! Size: about 820 lines, 220 of them tests: one merge of every kind of catalog entry
//! (categories, items, variations, modifier groups and options, taxes, an item's own
//! modifier bounds), whose id maps for stable canonical ids all kinds share.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::model::{
    Category, Item, MenuContent, ModifierGroup, ModifierGroupOverride, ModifierOption, TaxHint,
    Variation,
};
use super::{load_for_update, model, store_content, stored_meta, MenuError, MenuMeta};
use crate::auth::TenantScope;
use crate::events::{EventKind, LoggedTx};
use crate::money::NonNegativeAmount;
use crate::plugins::contract::{CatalogKind, CatalogPage};
use crate::store::now_micros;

/// Every page of one catalog fetch, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct FetchedCatalog {
    /// The pages.
    pub pages: Vec<CatalogPage>,
}

impl FetchedCatalog {
    /// Whether the provider said nothing changed since the token.
    pub(crate) fn unchanged(&self) -> bool {
        self.pages.first().is_some_and(|p| p.unchanged)
    }

    /// Whether the pages are a whole catalog (what they do not name is gone).
    pub(crate) fn full(&self) -> bool {
        self.pages.iter().any(|p| p.full_snapshot)
    }

    /// The token of the last page, for the next incremental fetch.
    pub(crate) fn sync_token(&self) -> Option<String> {
        self.pages.iter().rev().find_map(|p| p.sync_token.clone())
    }

    /// The currency the provider priced the catalog in, if it said.
    pub(crate) fn currency(&self) -> Option<&str> {
        self.pages.iter().find_map(|p| p.currency.as_deref())
    }
}

/// Additions, updates and removals of one kind of entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangeCounts {
    /// New entries.
    pub added: usize,
    /// Entries whose content changed (availability aside).
    pub updated: usize,
    /// Entries gone.
    pub removed: usize,
}

/// What a sync changed, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct SyncChanges {
    /// Categories.
    pub categories: ChangeCounts,
    /// Items (their variations included).
    pub items: ChangeCounts,
    /// Modifier groups (their options included).
    pub modifier_groups: ChangeCounts,
}

/// The answer of a menu sync.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct SyncOutcome {
    /// The venue.
    pub venue: String,
    /// The provider the menu came from.
    pub provider: String,
    /// Whether the fetch was incremental (from the stored sync token).
    pub incremental: bool,
    /// Whether the provider said nothing changed since the last sync (one cheap call).
    pub upstream_unchanged: bool,
    /// Whether the stored menu changed (and `menu_updated` was sent).
    pub changed: bool,
    /// Catalog pages fetched.
    pub pages: usize,
    /// What changed.
    pub changes: SyncChanges,
    /// The menu now (absent only when the venue has no menu and the POS none either).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub menu: Option<MenuMeta>,
}

/// The stored sync token of `venue`, if it came from `integration_id`.
pub(crate) async fn stored_token<'c, E>(
    conn: E,
    scope: &TenantScope,
    venue: &str,
    integration_id: &str,
) -> Result<Option<String>, MenuError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let token: Option<Option<String>> = sqlx::query_scalar(
        "SELECT sync_token FROM menu_syncs WHERE tenant_id = $1 AND venue = $2 AND integration_id = $3",
    )
    .bind(scope.tenant_id())
    .bind(venue)
    .bind(integration_id)
    .fetch_optional(conn)
    .await?;
    Ok(token.flatten())
}

async fn save_token(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    integration_id: &str,
    token: Option<&str>,
) -> Result<(), MenuError> {
    sqlx::query(
        "INSERT INTO menu_syncs (tenant_id, venue, integration_id, sync_token, synced_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, venue) DO UPDATE
           SET integration_id = excluded.integration_id, sync_token = excluded.sync_token,
               synced_at = excluded.synced_at",
    )
    .bind(scope.tenant_id())
    .bind(venue)
    .bind(integration_id)
    .bind(token)
    .bind(now_micros())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Merges `catalog` into the venue's menu and stores it (as a `PUT` does: validated,
/// availability carried, `menu_updated` only if something changed), with the sync token.
pub(crate) async fn apply(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    integration_id: &str,
    catalog: &FetchedCatalog,
) -> Result<(bool, SyncChanges, Option<MenuMeta>), MenuError> {
    super::check_venue(venue)?;
    let previous = load_for_update(tx, scope, venue).await?;
    save_token(
        tx,
        scope,
        venue,
        integration_id,
        catalog.sync_token().as_deref(),
    )
    .await?;
    let current = previous
        .as_ref()
        .map(|p| p.menu.content())
        .unwrap_or_default();
    if catalog.unchanged() {
        return Ok((
            false,
            SyncChanges::default(),
            previous.as_ref().map(|p| stored_meta(p, venue)),
        ));
    }
    let mut content = merge(&current, catalog);
    model::validate(&content).map_err(MenuError::Invalid)?;
    let changes = count_changes(&current, &content);
    let stored = previous.as_ref().map_or((&[][..], &[][..]), |p| {
        (&p.menu.items[..], &p.menu.modifier_groups[..])
    });
    model::carry_availability(&mut content, stored);
    match store_content(tx, scope, venue, previous.as_ref(), content).await? {
        Some(meta) => {
            tx.append(scope, EventKind::MenuUpdated, &meta)?;
            Ok((true, changes, Some(meta)))
        }
        None => Ok((
            false,
            changes,
            previous.as_ref().map(|p| stored_meta(p, venue)),
        )),
    }
}

/// Picks a canonical id for a new entry with provider id `pid`: `pid` itself unless taken.
fn fresh(pid: &str, used: &mut HashSet<String>) -> String {
    let mut id = pid.to_owned();
    let mut n = 2;
    while used.contains(&id) {
        id = format!("{pid}~{n}");
        n += 1;
    }
    used.insert(id.clone());
    id
}

fn amount(minor: i64) -> Option<NonNegativeAmount> {
    NonNegativeAmount::try_from(minor).ok()
}

/// The merged content, availability left for [`model::carry_availability`]; pure.
pub(crate) fn merge(current: &MenuContent, catalog: &FetchedCatalog) -> MenuContent {
    let pages = &catalog.pages;
    let mut out = current.clone();
    let categories: Vec<_> = pages.iter().flat_map(|p| &p.categories).collect();
    let items: Vec<_> = pages.iter().flat_map(|p| &p.items).collect();
    let groups: Vec<_> = pages.iter().flat_map(|p| &p.modifier_groups).collect();
    let taxes: HashMap<&str, _> = pages
        .iter()
        .flat_map(|p| &p.taxes)
        .map(|t| (t.provider_id.as_str(), t))
        .collect();

    if catalog.full() {
        // What the snapshot does not name is gone; entries the POS never knew (no provider
        // id, added through a `PUT`) stay.
        let keep = |pid: &Option<String>, named: &HashSet<&str>| {
            pid.as_deref().is_none_or(|p| named.contains(p))
        };
        let cats: HashSet<&str> = categories.iter().map(|c| c.provider_id.as_str()).collect();
        let its: HashSet<&str> = items.iter().map(|i| i.provider_id.as_str()).collect();
        let grs: HashSet<&str> = groups.iter().map(|g| g.provider_id.as_str()).collect();
        out.categories.retain(|c| keep(&c.provider_id, &cats));
        out.items.retain(|i| keep(&i.provider_id, &its));
        out.modifier_groups.retain(|g| keep(&g.provider_id, &grs));
    }

    // Categories, flattened: a sub-category's name carries its non-root ancestors'.
    let by_pid: HashMap<&str, _> = categories
        .iter()
        .map(|c| (c.provider_id.as_str(), *c))
        .collect();
    let display_name = |c: &crate::plugins::contract::CatalogCategory| {
        let mut parts = vec![c.name.clone()];
        let mut seen = HashSet::from([c.provider_id.as_str()]);
        let mut parent = c.parent_id.as_deref();
        while let Some(p) = parent.and_then(|p| by_pid.get(p)) {
            // A root (a Toast menu, a top-level category) names nothing in between.
            if p.parent_id.is_none() || !seen.insert(p.provider_id.as_str()) {
                break;
            }
            parts.push(p.name.clone());
            parent = p.parent_id.as_deref();
        }
        parts.reverse();
        parts.join(" › ")
    };
    let mut used: HashSet<String> = out.categories.iter().map(|c| c.id.clone()).collect();
    let mut category_map: HashMap<String, String> = out
        .categories
        .iter()
        .filter_map(|c| Some((c.provider_id.clone()?, c.id.clone())))
        .collect();
    for c in &categories {
        let id = match category_map.get(&c.provider_id) {
            Some(id) => id.clone(),
            None => fresh(&c.provider_id, &mut used),
        };
        category_map.insert(c.provider_id.clone(), id.clone());
        let entry = Category {
            id: id.clone(),
            provider_id: Some(c.provider_id.clone()),
            name: display_name(c),
        };
        match out.categories.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => out.categories.push(entry),
        }
    }

    // Modifier groups, with their options (option ids unique within the group).
    let mut used: HashSet<String> = out.modifier_groups.iter().map(|g| g.id.clone()).collect();
    let mut group_map: HashMap<String, String> = out
        .modifier_groups
        .iter()
        .filter_map(|g| Some((g.provider_id.clone()?, g.id.clone())))
        .collect();
    for g in &groups {
        let id = match group_map.get(&g.provider_id) {
            Some(id) => id.clone(),
            None => fresh(&g.provider_id, &mut used),
        };
        group_map.insert(g.provider_id.clone(), id.clone());
        let existing = out.modifier_groups.iter().find(|e| e.id == id);
        let mut option_ids: HashSet<String> = HashSet::new();
        let mut options = Vec::new();
        for o in &g.options {
            let Some(price) = amount(o.price) else {
                continue;
            };
            let old = existing.and_then(|e| {
                e.options
                    .iter()
                    .find(|x| x.provider_id.as_deref() == Some(o.provider_id.as_str()))
            });
            let option_id = match old {
                Some(x) if option_ids.insert(x.id.clone()) => x.id.clone(),
                _ => fresh(&o.provider_id, &mut option_ids),
            };
            options.push(ModifierOption {
                id: option_id,
                provider_id: Some(o.provider_id.clone()),
                name: o.name.clone(),
                price,
                default: o.is_default,
                sold_out: None,
            });
        }
        let entry = ModifierGroup {
            id: id.clone(),
            provider_id: Some(g.provider_id.clone()),
            name: g.name.clone(),
            min_selected: g.min_selected,
            max_selected: g.max_selected,
            required: g.required,
            options,
        };
        match out.modifier_groups.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => out.modifier_groups.push(entry),
        }
    }

    // Items, with their variations (variation ids unique across the menu).
    let mut used: HashSet<String> = out.items.iter().map(|i| i.id.clone()).collect();
    let mut variation_ids: HashSet<String> = out
        .items
        .iter()
        .flat_map(|i| i.variations.iter().map(|v| v.id.clone()))
        .collect();
    let item_map: HashMap<String, String> = out
        .items
        .iter()
        .filter_map(|i| Some((i.provider_id.clone()?, i.id.clone())))
        .collect();
    let group_index: HashMap<&str, &ModifierGroup> = out
        .modifier_groups
        .iter()
        .map(|g| (g.id.as_str(), g))
        .collect();
    let mut not_orderable = HashSet::new();
    for i in &items {
        if !i.orderable {
            not_orderable.insert(i.provider_id.clone());
            continue;
        }
        let existing = item_map
            .get(&i.provider_id)
            .and_then(|id| out.items.iter().find(|e| &e.id == id))
            .cloned();
        let id = match &existing {
            Some(e) => e.id.clone(),
            None => fresh(&i.provider_id, &mut used),
        };
        let variations: Vec<Variation> = i
            .variations
            .iter()
            .filter_map(|v| {
                // An open price cannot be offered online at a fixed price.
                let price = amount(v.price?)?;
                let old = existing.as_ref().and_then(|e| {
                    e.variations
                        .iter()
                        .find(|x| x.provider_id.as_deref() == Some(v.provider_id.as_str()))
                });
                let vid = match old {
                    Some(x) => x.id.clone(),
                    None => fresh(&v.provider_id, &mut variation_ids),
                };
                Some(Variation {
                    id: vid,
                    provider_id: Some(v.provider_id.clone()),
                    name: v.name.clone(),
                    price,
                    sold_out: None,
                })
            })
            .collect();
        // The first tax the POS gives a rate for is the hint; an item whose taxes were not
        // in this (incremental) fetch keeps the hint it had.
        let tax = i
            .tax_ids
            .iter()
            .filter_map(|t| taxes.get(t.as_str()))
            .find_map(|t| {
                Some(TaxHint {
                    name: Some(t.name.clone()),
                    percentage: t.percentage.clone()?,
                    inclusive: t.inclusive,
                })
            })
            .or_else(|| {
                let known = i.tax_ids.iter().any(|t| taxes.contains_key(t.as_str()));
                (!known && !i.tax_ids.is_empty())
                    .then(|| existing.as_ref().and_then(|e| e.tax.clone()))
                    .flatten()
            });
        let entry = Item {
            id: id.clone(),
            provider_id: Some(i.provider_id.clone()),
            name: i.name.clone(),
            description: i.description.clone().filter(|d| !d.trim().is_empty()),
            category_ids: i
                .category_ids
                .iter()
                .filter_map(|c| category_map.get(c).cloned())
                .collect(),
            variations,
            modifier_group_ids: i
                .modifier_groups
                .iter()
                .filter_map(|g| group_map.get(&g.group_id).cloned())
                .collect(),
            modifier_group_overrides: item_overrides(&i.modifier_groups, &group_map, &group_index),
            tax,
            sold_out: None,
        };
        match out.items.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => out.items.push(entry),
        }
    }
    out.items.retain(|i| {
        i.provider_id
            .as_ref()
            .is_none_or(|p| !not_orderable.contains(p))
    });

    // Explicit deletions (incremental fetches).
    for d in pages.iter().flat_map(|p| &p.deleted) {
        let is = |pid: &Option<String>| pid.as_deref() == Some(d.provider_id.as_str());
        match d.kind {
            CatalogKind::Category => out.categories.retain(|c| !is(&c.provider_id)),
            CatalogKind::Item => out.items.retain(|i| !is(&i.provider_id)),
            CatalogKind::ModifierGroup => out.modifier_groups.retain(|g| !is(&g.provider_id)),
            CatalogKind::Variation => {
                for item in &mut out.items {
                    item.variations.retain(|v| !is(&v.provider_id));
                }
            }
            CatalogKind::ModifierOption => {
                for group in &mut out.modifier_groups {
                    group.options.retain(|o| !is(&o.provider_id));
                }
            }
            // Tax hints are refreshed with the items that name them.
            CatalogKind::Tax => {}
        }
    }

    // What removals left empty goes too, and nothing may point at what is gone.
    out.items.retain(|i| !i.variations.is_empty());
    out.modifier_groups.retain(|g| !g.options.is_empty());
    let cats: HashSet<String> = out.categories.iter().map(|c| c.id.clone()).collect();
    let grs: HashSet<String> = out.modifier_groups.iter().map(|g| g.id.clone()).collect();
    for item in &mut out.items {
        item.category_ids.retain(|c| cats.contains(c));
        item.modifier_group_ids.retain(|g| grs.contains(g));
        dedup(&mut item.category_ids);
        dedup(&mut item.modifier_group_ids);
    }
    // An item not in this fetch keeps its overrides, but its groups may have changed (or
    // gone): what no longer applies or can no longer be met falls back to the group's.
    let groups: HashMap<&str, &ModifierGroup> = out
        .modifier_groups
        .iter()
        .map(|g| (g.id.as_str(), g))
        .collect();
    for item in &mut out.items {
        let listed = &item.modifier_group_ids;
        let mut seen = HashSet::new();
        item.modifier_group_overrides.retain(|o| {
            listed.contains(&o.group_id)
                && seen.insert(o.group_id.clone())
                && groups
                    .get(o.group_id.as_str())
                    .is_some_and(|g| meetable(g, o))
        });
    }
    out
}

/// An item's own bounds for its groups, from the POS's references: every bound the item
/// states (a catalog without per-item bounds makes the same menu as before they were
/// kept), even one equal to its group's today: an incremental fetch that changes only the
/// group does not bring the item back, and the item's own value stays the POS's rule for
/// it. None that cannot be met (a maximum of 0, a minimum above the maximum): the group's
/// bounds apply, as for anything else the canonical menu cannot sell.
fn item_overrides(
    refs: &[crate::plugins::contract::ModifierGroupRef],
    group_map: &HashMap<String, String>,
    groups: &HashMap<&str, &ModifierGroup>,
) -> Vec<ModifierGroupOverride> {
    let mut out: Vec<ModifierGroupOverride> = Vec::new();
    for r in refs {
        let Some(id) = group_map.get(&r.group_id) else {
            continue;
        };
        let Some(group) = groups.get(id.as_str()) else {
            continue;
        };
        if out.iter().any(|o| &o.group_id == id) {
            continue;
        }
        let over = ModifierGroupOverride {
            group_id: id.clone(),
            min_selected: r.min_selected,
            max_selected: r.max_selected.filter(|m| *m > 0),
        };
        if (over.min_selected.is_some() || over.max_selected.is_some()) && meetable(group, &over) {
            out.push(over);
        }
    }
    out
}

/// Whether `over` on `group` leaves bounds an order can meet (what `PUT` validation asks).
fn meetable(group: &ModifierGroup, over: &ModifierGroupOverride) -> bool {
    let b = group.bounds(Some(over));
    over.max_selected != Some(0) && b.max.is_none_or(|max| b.min <= max)
}

fn dedup(ids: &mut Vec<String>) {
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}

/// Counts additions, updates and removals between two contents, by canonical id, ignoring
/// availability (which the sync carries, not changes).
fn count_changes(before: &MenuContent, after: &MenuContent) -> SyncChanges {
    fn counts<T: Clone + PartialEq>(
        before: &[T],
        after: &[T],
        id: impl Fn(&T) -> &str,
        plain: impl Fn(&T) -> T,
    ) -> ChangeCounts {
        let old: HashMap<&str, &T> = before.iter().map(|e| (id(e), e)).collect();
        let new: HashSet<&str> = after.iter().map(&id).collect();
        let mut c = ChangeCounts::default();
        for e in after {
            match old.get(id(e)) {
                None => c.added += 1,
                Some(o) if plain(o) != plain(e) => c.updated += 1,
                Some(_) => {}
            }
        }
        c.removed = old.keys().filter(|k| !new.contains(*k)).count();
        c
    }
    SyncChanges {
        categories: counts(
            &before.categories,
            &after.categories,
            |c| &c.id,
            Clone::clone,
        ),
        items: counts(
            &before.items,
            &after.items,
            |i| &i.id,
            |i| {
                let mut i = i.clone();
                i.sold_out = None;
                for v in &mut i.variations {
                    v.sold_out = None;
                }
                i
            },
        ),
        modifier_groups: counts(
            &before.modifier_groups,
            &after.modifier_groups,
            |g| &g.id,
            |g| {
                let mut g = g.clone();
                for o in &mut g.options {
                    o.sold_out = None;
                }
                g
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::contract::{
        CatalogCategory, CatalogDeletion, CatalogItem, CatalogVariation, ModifierGroup as PGroup,
        ModifierGroupRef, ModifierOption as POption,
    };

    fn item(pid: &str, cat: &str, price: Option<i64>) -> CatalogItem {
        CatalogItem {
            provider_id: pid.into(),
            name: pid.to_uppercase(),
            description: None,
            category_ids: vec![cat.into()],
            variations: vec![CatalogVariation {
                provider_id: format!("{pid}-v"),
                name: "Regular".into(),
                price,
            }],
            modifier_groups: vec![ModifierGroupRef {
                group_id: "g1".into(),
                min_selected: None,
                max_selected: None,
            }],
            tax_ids: vec![],
            orderable: true,
        }
    }

    fn snapshot() -> CatalogPage {
        CatalogPage {
            full_snapshot: true,
            categories: vec![
                CatalogCategory {
                    provider_id: "menu".into(),
                    name: "Lunch".into(),
                    parent_id: None,
                },
                CatalogCategory {
                    provider_id: "burgers".into(),
                    name: "Burgers".into(),
                    parent_id: Some("menu".into()),
                },
                CatalogCategory {
                    provider_id: "specials".into(),
                    name: "Specials".into(),
                    parent_id: Some("burgers".into()),
                },
            ],
            items: vec![
                item("a", "burgers", Some(950)),
                item("b", "specials", Some(1200)),
                item("open", "burgers", None),
                CatalogItem {
                    orderable: false,
                    ..item("hidden", "burgers", Some(100))
                },
            ],
            modifier_groups: vec![PGroup {
                provider_id: "g1".into(),
                name: "Sauce".into(),
                min_selected: 1,
                max_selected: Some(2),
                required: true,
                options: vec![POption {
                    provider_id: "o1".into(),
                    name: "Ketchup".into(),
                    price: 50,
                    is_default: false,
                }],
            }],
            ..CatalogPage::default()
        }
    }

    #[test]
    fn a_snapshot_builds_a_valid_menu_and_leaves_out_what_cannot_be_sold() {
        let fetched = FetchedCatalog {
            pages: vec![snapshot()],
        };
        let menu = merge(&MenuContent::default(), &fetched);
        model::validate(&menu).unwrap();
        let ids: Vec<_> = menu.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "open-priced and hidden items are left out");
        assert_eq!(menu.categories[2].name, "Burgers › Specials");
        assert_eq!(menu.categories[1].name, "Burgers");
        assert_eq!(menu.items[0].variations[0].price.get(), 950);
        assert_eq!(menu.modifier_groups[0].max_selected, Some(2));
        assert!(menu.modifier_groups[0].required);
        // The same snapshot again changes nothing.
        assert_eq!(merge(&menu, &fetched), menu);
    }

    /// [`item`] whose reference to the sauce list (`g1`, 1-2 and required) carries the
    /// item's own `min`/`max`.
    fn bounded(pid: &str, min: Option<u32>, max: Option<u32>) -> CatalogItem {
        CatalogItem {
            modifier_groups: vec![ModifierGroupRef {
                group_id: "g1".into(),
                min_selected: min,
                max_selected: max,
            }],
            ..item(pid, "burgers", Some(500))
        }
    }

    #[test]
    fn item_bounds_the_pos_states_become_overrides() {
        let mut page = snapshot();
        page.items = vec![
            // The list's (-1 in Square): no override. The same as the list's: kept, so
            // that a later change of the list alone leaves the item's own rule in force.
            bounded("same", Some(1), Some(2)),
            bounded("plain", None, None),
            bounded("looser", Some(0), Some(3)),
            bounded("stricter", None, Some(1)),
            bounded("needs-two", Some(2), None),
            // A maximum of 0 and a minimum above the maximum cannot be met: the list's.
            bounded("zero", None, Some(0)),
            bounded("unmeetable", Some(3), None),
        ];
        let fetched = FetchedCatalog { pages: vec![page] };
        let menu = merge(&MenuContent::default(), &fetched);
        model::validate(&menu).unwrap();
        let overrides = |id: &str| {
            let item = menu.items.iter().find(|i| i.id == id).unwrap();
            assert_eq!(item.modifier_group_ids, ["g1"], "{id}");
            item.modifier_group_overrides
                .iter()
                .map(|o| (o.group_id.as_str(), o.min_selected, o.max_selected))
                .collect::<Vec<_>>()
        };
        for id in ["plain", "zero", "unmeetable"] {
            assert_eq!(overrides(id), [], "{id}");
        }
        assert_eq!(overrides("same"), [("g1", Some(1), Some(2))]);
        assert_eq!(overrides("looser"), [("g1", Some(0), Some(3))]);
        assert_eq!(overrides("stricter"), [("g1", None, Some(1))]);
        assert_eq!(overrides("needs-two"), [("g1", Some(2), None)]);
        // The same catalog again is the same menu, to the byte; an item without overrides
        // serialises without the field, as menus stored before overrides existed do.
        let again = merge(&menu, &fetched);
        assert_eq!(again, menu);
        assert_eq!(
            serde_json::to_vec(&again).unwrap(),
            serde_json::to_vec(&menu).unwrap()
        );
        let plain = menu.items.iter().find(|i| i.id == "plain").unwrap();
        let json = serde_json::to_value(plain).unwrap();
        assert!(json.get("modifier_group_overrides").is_none(), "{json}");
        assert_eq!(count_changes(&menu, &again), SyncChanges::default());

        // The list alone changes (an incremental fetch without the items) to at most one:
        // "needs-two" can no longer be met and falls back to the list's bounds; the others
        // keep their own, "same" its 1-2 (which the list no longer says).
        let mut list = snapshot().modifier_groups;
        list[0].max_selected = Some(1);
        let change = CatalogPage {
            modifier_groups: list,
            ..CatalogPage::default()
        };
        let after = merge(
            &menu,
            &FetchedCatalog {
                pages: vec![change],
            },
        );
        model::validate(&after).unwrap();
        let own = |id: &str| {
            after
                .items
                .iter()
                .find(|i| i.id == id)
                .unwrap()
                .modifier_group_overrides
                .len()
        };
        assert_eq!(own("needs-two"), 0);
        assert_eq!(own("same"), 1);
        assert_eq!(own("looser"), 1);
        assert_eq!(own("stricter"), 1);
        // An item fetched again without its own bounds loses its override.
        let mut page = snapshot();
        page.items = vec![bounded("looser", None, None)];
        page.full_snapshot = false;
        let after = merge(&menu, &FetchedCatalog { pages: vec![page] });
        let looser = after.items.iter().find(|i| i.id == "looser").unwrap();
        assert!(looser.modifier_group_overrides.is_empty());
    }

    #[test]
    fn deletions_remove_by_provider_id_and_keep_other_canonical_ids() {
        let mut current = merge(
            &MenuContent::default(),
            &FetchedCatalog {
                pages: vec![snapshot()],
            },
        );
        // A canonical id that differs from the provider's (a local rename) survives.
        current.items[1].id = "b-local".into();
        let change = CatalogPage {
            items: vec![item("c", "burgers", Some(300))],
            deleted: vec![CatalogDeletion {
                kind: CatalogKind::Item,
                provider_id: "a".into(),
            }],
            ..CatalogPage::default()
        };
        let merged = merge(
            &current,
            &FetchedCatalog {
                pages: vec![change],
            },
        );
        model::validate(&merged).unwrap();
        let ids: Vec<_> = merged.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["b-local", "c"]);
        let changes = count_changes(&current, &merged);
        assert_eq!(
            changes.items,
            ChangeCounts {
                added: 1,
                updated: 0,
                removed: 1
            }
        );
    }
}
