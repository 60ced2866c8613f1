//! Merging a provider's catalog (a whole one, or changes since the last sync) into a
//! venue's canonical menu, matching entries by the POS's ids.
//!
//! The catalog a provider plugin yields is a [`MenuContent`] written in the POS's ids: every
//! `id` (and every reference, `category_ids`, `modifier_group_ids`) is the provider's id.
//! The merge keeps the canonical id of an entry it already knows by that provider id, gives
//! a new entry its provider id as canonical id (or a suffixed one if a local entry holds
//! it), and translates references. References to entries the catalog does not hold (a
//! category hidden from ordering partners) are dropped: the POS is the truth, not a user.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::model::{Category, Item, MenuContent, ModifierGroup};

/// A kind of menu entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A category.
    Category,
    /// An item.
    Item,
    /// A variation of an item.
    Variation,
    /// A modifier group.
    ModifierGroup,
    /// An option of a modifier group.
    Option,
}

/// Whether a catalog is the whole menu or changes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogMode {
    /// The whole catalog (Toast's published menu, a full Square pull): provider entries it
    /// does not hold are deleted.
    Full,
    /// Changes since the last sync (a Square incremental search): `upserts` are whole
    /// entries (an item with all its variations, a group with all its options), plus
    /// explicit `deletions`.
    Incremental,
}

/// An entry the POS deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogDeletion {
    /// Its kind.
    pub kind: EntryKind,
    /// The POS's id.
    pub provider_id: String,
}

/// A provider's catalog, in the POS's ids, as a provider plugin's catalog fetch yields it.
#[derive(Debug, Clone)]
pub struct ProviderCatalog {
    /// Whole catalog or changes.
    pub mode: CatalogMode,
    /// Entries to insert or replace, ids being the provider's ids.
    pub upserts: MenuContent,
    /// Entries to delete (incremental mode; in full mode absence already deletes).
    pub deletions: Vec<CatalogDeletion>,
    /// Whether the `sold_out` flags of `upserts` are the POS's availability (Square's
    /// `location_overrides[].sold_out`). When false (Toast's menus carry no stock), an
    /// entry that already exists keeps its `sold_out` and a new one starts available.
    pub carries_availability: bool,
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

/// The merged content; pure. The caller validates and stores it.
pub fn merge_content(current: &MenuContent, catalog: &ProviderCatalog) -> MenuContent {
    let mut out = current.clone();
    let up = &catalog.upserts;

    if catalog.mode == CatalogMode::Full {
        let keep = |pid: &Option<String>, incoming: &HashSet<&str>| {
            pid.as_deref().is_none_or(|p| incoming.contains(p))
        };
        let cats: HashSet<&str> = up.categories.iter().map(|c| c.id.as_str()).collect();
        let items: HashSet<&str> = up.items.iter().map(|i| i.id.as_str()).collect();
        let groups: HashSet<&str> = up.modifier_groups.iter().map(|g| g.id.as_str()).collect();
        out.categories.retain(|c| keep(&c.provider_id, &cats));
        out.items.retain(|i| keep(&i.provider_id, &items));
        out.modifier_groups
            .retain(|g| keep(&g.provider_id, &groups));
    }

    // Categories.
    let mut used: HashSet<String> = out.categories.iter().map(|c| c.id.clone()).collect();
    let mut category_map: HashMap<String, String> = out
        .categories
        .iter()
        .filter_map(|c| Some((c.provider_id.clone()?, c.id.clone())))
        .collect();
    for c in &up.categories {
        let id = match category_map.get(&c.id) {
            Some(id) => id.clone(),
            None => fresh(&c.id, &mut used),
        };
        category_map.insert(c.id.clone(), id.clone());
        let entry = Category {
            id: id.clone(),
            provider_id: Some(c.id.clone()),
            name: c.name.clone(),
        };
        match out.categories.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => out.categories.push(entry),
        }
    }

    // Modifier groups, with their options.
    let mut used: HashSet<String> = out.modifier_groups.iter().map(|g| g.id.clone()).collect();
    let mut group_map: HashMap<String, String> = out
        .modifier_groups
        .iter()
        .filter_map(|g| Some((g.provider_id.clone()?, g.id.clone())))
        .collect();
    for g in &up.modifier_groups {
        let id = match group_map.get(&g.id) {
            Some(id) => id.clone(),
            None => fresh(&g.id, &mut used),
        };
        group_map.insert(g.id.clone(), id.clone());
        let existing = out.modifier_groups.iter().find(|e| e.id == id);
        let mut option_ids: HashSet<String> = HashSet::new();
        let options = g
            .options
            .iter()
            .map(|o| {
                let old = existing.and_then(|e| {
                    e.options
                        .iter()
                        .find(|x| x.provider_id.as_deref() == Some(o.id.as_str()))
                });
                let mut option = o.clone();
                option.provider_id = Some(o.id.clone());
                option.id = match old {
                    Some(x) if option_ids.insert(x.id.clone()) => x.id.clone(),
                    _ => fresh(&o.id, &mut option_ids),
                };
                if !catalog.carries_availability {
                    option.sold_out = old.is_some_and(|x| x.sold_out);
                }
                option
            })
            .collect();
        let entry = ModifierGroup {
            id: id.clone(),
            provider_id: Some(g.id.clone()),
            options,
            ..g.clone()
        };
        match out.modifier_groups.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => out.modifier_groups.push(entry),
        }
    }

    // Items, with their variations (ids unique across the menu).
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
    for i in &up.items {
        let id = match item_map.get(&i.id) {
            Some(id) => id.clone(),
            None => fresh(&i.id, &mut used),
        };
        let existing = out.items.iter().find(|e| e.id == id).cloned();
        let variations = i
            .variations
            .iter()
            .map(|v| {
                let old = existing.as_ref().and_then(|e| {
                    e.variations
                        .iter()
                        .find(|x| x.provider_id.as_deref() == Some(v.id.as_str()))
                });
                let mut variation = v.clone();
                variation.provider_id = Some(v.id.clone());
                variation.id = match old {
                    Some(x) => x.id.clone(),
                    None => fresh(&v.id, &mut variation_ids),
                };
                if !catalog.carries_availability {
                    variation.sold_out = old.is_some_and(|x| x.sold_out);
                }
                variation
            })
            .collect();
        let entry = Item {
            id: id.clone(),
            provider_id: Some(i.id.clone()),
            category_ids: i
                .category_ids
                .iter()
                .filter_map(|c| category_map.get(c).cloned())
                .collect(),
            modifier_group_ids: i
                .modifier_group_ids
                .iter()
                .filter_map(|g| group_map.get(g).cloned())
                .collect(),
            variations,
            sold_out: if catalog.carries_availability {
                i.sold_out
            } else {
                existing.as_ref().is_some_and(|e| e.sold_out)
            },
            ..i.clone()
        };
        match out.items.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => out.items.push(entry),
        }
    }

    // Explicit deletions.
    for d in &catalog.deletions {
        let is = |pid: &Option<String>| pid.as_deref() == Some(d.provider_id.as_str());
        match d.kind {
            EntryKind::Category => out.categories.retain(|c| !is(&c.provider_id)),
            EntryKind::Item => out.items.retain(|i| !is(&i.provider_id)),
            EntryKind::ModifierGroup => out.modifier_groups.retain(|g| !is(&g.provider_id)),
            EntryKind::Variation => {
                for item in &mut out.items {
                    item.variations.retain(|v| !is(&v.provider_id));
                }
            }
            EntryKind::Option => {
                for group in &mut out.modifier_groups {
                    group.options.retain(|o| !is(&o.provider_id));
                }
            }
        }
    }

    // What deletions left empty goes too, and nothing may point at what is gone.
    out.items.retain(|i| !i.variations.is_empty());
    out.modifier_groups.retain(|g| !g.options.is_empty());
    let cats: HashSet<String> = out.categories.iter().map(|c| c.id.clone()).collect();
    let groups: HashSet<String> = out.modifier_groups.iter().map(|g| g.id.clone()).collect();
    for item in &mut out.items {
        item.category_ids.retain(|c| cats.contains(c));
        item.modifier_group_ids.retain(|g| groups.contains(g));
        dedup(&mut item.category_ids);
        dedup(&mut item.modifier_group_ids);
    }
    out
}

fn dedup(ids: &mut Vec<String>) {
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menus::model::{tests::sample, validate};

    /// The sample menu as a POS would send it: ids are the provider ids.
    fn as_provider(content: &MenuContent) -> MenuContent {
        let mut c = content.clone();
        let pid = |id: &str| format!("P-{id}");
        for cat in &mut c.categories {
            cat.id = pid(&cat.id);
            cat.provider_id = None;
        }
        for g in &mut c.modifier_groups {
            g.id = pid(&g.id);
            g.provider_id = None;
            for o in &mut g.options {
                o.id = pid(&o.id);
                o.provider_id = None;
            }
        }
        for i in &mut c.items {
            i.id = pid(&i.id);
            i.provider_id = None;
            i.category_ids = i.category_ids.iter().map(|x| pid(x)).collect();
            i.modifier_group_ids = i.modifier_group_ids.iter().map(|x| pid(x)).collect();
            for v in &mut i.variations {
                v.id = pid(&v.id);
                v.provider_id = None;
            }
        }
        c
    }

    fn full(upserts: MenuContent) -> ProviderCatalog {
        ProviderCatalog {
            mode: CatalogMode::Full,
            upserts,
            deletions: vec![],
            carries_availability: false,
        }
    }

    #[test]
    fn a_full_catalog_into_an_empty_menu_takes_the_provider_ids() {
        let merged = merge_content(&MenuContent::default(), &full(as_provider(&sample())));
        validate(&merged).unwrap();
        assert_eq!(merged.items[0].id, "P-burger");
        assert_eq!(merged.items[0].provider_id.as_deref(), Some("P-burger"));
        assert_eq!(
            merged.items[0].modifier_group_ids,
            vec!["P-sauce", "P-extras"]
        );
        // The same catalog again changes nothing.
        assert_eq!(
            merge_content(&merged, &full(as_provider(&sample()))),
            merged
        );
    }

    #[test]
    fn known_entries_keep_their_canonical_ids_and_availability() {
        let mut current = sample();
        current.items[1].sold_out = true;
        current.modifier_groups[0].options[0].sold_out = true;
        let mut catalog = as_provider(&sample());
        catalog.items[1].name = "Fries (large)".into();
        let merged = merge_content(&current, &full(catalog.clone()));
        validate(&merged).unwrap();
        assert_eq!(merged.items[1].id, "fries");
        assert_eq!(merged.items[1].name, "Fries (large)");
        assert!(
            merged.items[1].sold_out,
            "kept: the catalog carries no stock"
        );
        assert!(merged.modifier_groups[0].options[0].sold_out);
        assert_eq!(merged.items[0].modifier_group_ids, vec!["sauce", "extras"]);
        let mut with_stock = full(catalog);
        with_stock.carries_availability = true;
        let merged = merge_content(&current, &with_stock);
        assert!(!merged.items[1].sold_out, "the POS said it is back");
    }

    #[test]
    fn full_mode_deletes_what_the_catalog_lacks_and_cleans_references() {
        let mut catalog = as_provider(&sample());
        catalog.modifier_groups.remove(1); // extras gone
        catalog.items.remove(1); // fries gone
        let merged = merge_content(&sample(), &full(catalog));
        validate(&merged).unwrap();
        assert_eq!(merged.items.len(), 1);
        assert_eq!(merged.items[0].modifier_group_ids, vec!["sauce"]);
    }

    #[test]
    fn incremental_changes_upsert_and_delete_by_provider_id() {
        let mut upserts = MenuContent::default();
        let mut burger = as_provider(&sample()).items[0].clone();
        burger.variations[0].price = crate::money::NonNegativeAmount::try_from(950).unwrap();
        burger.category_ids.push("P-unknown".into());
        upserts.items.push(burger);
        let catalog = ProviderCatalog {
            mode: CatalogMode::Incremental,
            upserts,
            deletions: vec![
                CatalogDeletion {
                    kind: EntryKind::Option,
                    provider_id: "P-bacon".into(),
                },
                CatalogDeletion {
                    kind: EntryKind::Variation,
                    provider_id: "P-fries-regular".into(),
                },
                CatalogDeletion {
                    kind: EntryKind::Category,
                    provider_id: "P-mains".into(),
                },
            ],
            carries_availability: false,
        };
        let merged = merge_content(&sample(), &catalog);
        validate(&merged).unwrap();
        assert_eq!(merged.items.len(), 1, "fries lost its only variation");
        assert_eq!(merged.items[0].variations[0].price.get(), 950);
        assert_eq!(merged.items[0].variations[0].id, "single");
        assert!(
            merged.items[0].category_ids.is_empty(),
            "{:?}",
            merged.items[0]
        );
        assert_eq!(merged.modifier_groups[1].options.len(), 1);
        assert!(merged.categories.is_empty());
    }

    #[test]
    fn a_new_provider_entry_whose_id_a_local_entry_holds_gets_a_suffix() {
        let mut current = sample();
        current.items[1].provider_id = None;
        current.items[1].id = "P-x".into();
        let mut upserts = MenuContent::default();
        let mut x = as_provider(&sample()).items[1].clone();
        x.id = "P-x".into();
        x.variations[0].id = "P-x-v".into();
        upserts.items.push(x);
        let merged = merge_content(
            &current,
            &ProviderCatalog {
                mode: CatalogMode::Incremental,
                upserts,
                deletions: vec![],
                carries_availability: false,
            },
        );
        validate(&merged).unwrap();
        assert_eq!(merged.items[2].id, "P-x~2");
        assert_eq!(merged.items[1].id, "P-x");
    }
}
