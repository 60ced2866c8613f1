//! Checking an online order against a venue's menu and store status before anything is
//! sent to a POS: pure, no I/O, so order injection can call it inside its own flow and
//! refuse with the offending line.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::model::{Menu, MenuIndex, ModifierGroupOverride};
use super::status::{StoreState, StoreStatus};
use crate::error::ApiError;

/// One line of a canonical online order, by canonical menu ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderLine {
    /// The item's canonical id.
    pub item_id: String,
    /// The variation; may be left out when the item has exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation_id: Option<String>,
    /// How many.
    pub quantity: u32,
    /// Chosen modifiers.
    #[serde(default)]
    pub modifiers: Vec<OrderModifier>,
}

/// A modifier chosen on an order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderModifier {
    /// The modifier group's canonical id (options are unique within a group only).
    pub group_id: String,
    /// The option's canonical id.
    pub option_id: String,
    /// Selections of this option (counts toward the group's min/max); default 1.
    #[serde(default = "one")]
    pub quantity: u32,
}

fn one() -> u32 {
    1
}

/// Most lines one order may have (as `POST /orders` allows).
const MAX_LINES: usize = 500;
/// Most of one item, or of one option, on a line (as `POST /orders` allows).
const MAX_QUANTITY: u32 = 1_000;

/// Why an order was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalReason {
    /// The store is closed (no line).
    StoreClosed,
    /// The order has no lines (no line).
    EmptyOrder,
    /// The order has more than 500 lines (no line).
    TooManyLines,
    /// A line's or a modifier's quantity is not 1-1000.
    InvalidQuantity,
    /// No such item on the menu.
    UnknownItem,
    /// No such variation of the item.
    UnknownVariation,
    /// The item has several variations and the line named none.
    VariationRequired,
    /// The group is not offered with the item, or has no such option.
    UnknownOption,
    /// A required group (or one with a minimum) has too few selections.
    MissingRequiredModifier,
    /// A group has more selections than its maximum.
    TooManyModifiers,
    /// The item or the variation is sold out.
    ItemSoldOut,
    /// A chosen option is sold out.
    OptionSoldOut,
}

impl RefusalReason {
    /// The error code in the API's JSON error.
    pub(crate) fn code(self) -> &'static str {
        match self {
            RefusalReason::StoreClosed => "store_closed",
            RefusalReason::EmptyOrder => "empty_order",
            RefusalReason::TooManyLines => "too_many_lines",
            RefusalReason::InvalidQuantity => "invalid_quantity",
            RefusalReason::UnknownItem => "unknown_item",
            RefusalReason::UnknownVariation => "unknown_variation",
            RefusalReason::VariationRequired => "variation_required",
            RefusalReason::UnknownOption => "unknown_option",
            RefusalReason::MissingRequiredModifier => "missing_required_modifier",
            RefusalReason::TooManyModifiers => "too_many_modifiers",
            RefusalReason::ItemSoldOut => "item_sold_out",
            RefusalReason::OptionSoldOut => "option_sold_out",
        }
    }
}

/// An order the menu or store status refuses, naming the offending line (0-based index into
/// the order's lines) where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct OrderRefusal {
    /// Why.
    pub reason: RefusalReason,
    /// The offending line's index, if the refusal is about a line.
    pub line: Option<usize>,
    /// Human-readable, naming the line and the entry.
    pub message: String,
}

impl From<OrderRefusal> for ApiError {
    /// A closed store or a sold-out entry is 409 (the order is fine, the moment is not);
    /// an order that does not match the menu is 422.
    fn from(refusal: OrderRefusal) -> Self {
        let code = refusal.reason.code();
        match refusal.reason {
            RefusalReason::StoreClosed
            | RefusalReason::ItemSoldOut
            | RefusalReason::OptionSoldOut => ApiError::conflict(code, refusal.message),
            _ => ApiError::unprocessable(code, refusal.message),
        }
    }
}

fn refuse(reason: RefusalReason, line: Option<usize>, message: String) -> OrderRefusal {
    OrderRefusal {
        reason,
        line,
        message,
    }
}

/// Checks `lines` against `menu` and `status`: the store must not be closed (busy is fine:
/// it only adds prep time), every line must name an item and variation on the menu that
/// are not sold out, and each line's modifiers must be options of groups offered with its
/// item, not sold out, meeting every group's minimum (and `required`) and maximum, or the
/// item's own where it overrides them.
/// The first problem found is returned, lines in order.
pub(crate) fn check_order(
    menu: &Menu,
    status: &StoreStatus,
    lines: &[OrderLine],
) -> Result<(), OrderRefusal> {
    if status.status == StoreState::Closed {
        return Err(refuse(
            RefusalReason::StoreClosed,
            None,
            format!("venue {:?} is closed", menu.venue),
        ));
    }
    if lines.is_empty() {
        return Err(refuse(
            RefusalReason::EmptyOrder,
            None,
            "the order has no lines".into(),
        ));
    }
    if lines.len() > MAX_LINES {
        return Err(refuse(
            RefusalReason::TooManyLines,
            None,
            format!("an order may have at most {MAX_LINES} lines"),
        ));
    }
    let index = MenuIndex::new(menu);
    for (n, line) in lines.iter().enumerate() {
        check_line(&index, n, line)?;
    }
    Ok(())
}

fn check_line(index: &MenuIndex<'_>, n: usize, line: &OrderLine) -> Result<(), OrderRefusal> {
    let at = Some(n);
    if !(1..=MAX_QUANTITY).contains(&line.quantity) {
        return Err(refuse(
            RefusalReason::InvalidQuantity,
            at,
            format!("line {n}: quantity must be 1-{MAX_QUANTITY}"),
        ));
    }
    let item = index.items.get(line.item_id.as_str()).ok_or_else(|| {
        refuse(
            RefusalReason::UnknownItem,
            at,
            format!("line {n}: no item {:?} on the menu", line.item_id),
        )
    })?;
    let variation = match &line.variation_id {
        Some(id) => item
            .variations
            .iter()
            .find(|v| &v.id == id)
            .ok_or_else(|| {
                refuse(
                    RefusalReason::UnknownVariation,
                    at,
                    format!("line {n}: item {:?} has no variation {id:?}", item.id),
                )
            })?,
        None if item.variations.len() == 1 => &item.variations[0],
        None => {
            return Err(refuse(
                RefusalReason::VariationRequired,
                at,
                format!(
                    "line {n}: item {:?} has {} variations; name one",
                    item.id,
                    item.variations.len()
                ),
            ))
        }
    };
    if item.sold_out == Some(true) {
        return Err(refuse(
            RefusalReason::ItemSoldOut,
            at,
            format!("line {n}: item {:?} is sold out", item.id),
        ));
    }
    if variation.sold_out == Some(true) {
        return Err(refuse(
            RefusalReason::ItemSoldOut,
            at,
            format!(
                "line {n}: variation {:?} of item {:?} is sold out",
                variation.id, item.id
            ),
        ));
    }
    let mut selected: HashMap<&str, u64> = HashMap::new();
    for m in &line.modifiers {
        let offered = item.modifier_group_ids.iter().any(|g| g == &m.group_id);
        let group = index
            .groups
            .get(m.group_id.as_str())
            .filter(|_| offered)
            .ok_or_else(|| {
                refuse(
                    RefusalReason::UnknownOption,
                    at,
                    format!(
                        "line {n}: modifier group {:?} is not offered with item {:?}",
                        m.group_id, item.id
                    ),
                )
            })?;
        let option = group
            .options
            .iter()
            .find(|o| o.id == m.option_id)
            .ok_or_else(|| {
                refuse(
                    RefusalReason::UnknownOption,
                    at,
                    format!(
                        "line {n}: modifier group {:?} has no option {:?}",
                        group.id, m.option_id
                    ),
                )
            })?;
        if !(1..=MAX_QUANTITY).contains(&m.quantity) {
            return Err(refuse(
                RefusalReason::InvalidQuantity,
                at,
                format!(
                    "line {n}: option {:?} must have quantity 1-{MAX_QUANTITY}",
                    option.id
                ),
            ));
        }
        if option.sold_out == Some(true) {
            return Err(refuse(
                RefusalReason::OptionSoldOut,
                at,
                format!(
                    "line {n}: option {:?} of group {:?} is sold out",
                    option.id, group.id
                ),
            ));
        }
        *selected.entry(group.id.as_str()).or_default() += u64::from(m.quantity);
    }
    // The item's own bounds win over its groups'; looked up once per line, not per group.
    let overrides: HashMap<&str, &ModifierGroupOverride> = item
        .modifier_group_overrides
        .iter()
        .map(|o| (o.group_id.as_str(), o))
        .collect();
    for group_id in &item.modifier_group_ids {
        let Some(group) = index.groups.get(group_id.as_str()) else {
            continue;
        };
        let bounds = group.bounds(overrides.get(group_id.as_str()).copied());
        let count = selected.get(group_id.as_str()).copied().unwrap_or(0);
        let min = u64::from(bounds.min);
        if count < min {
            return Err(refuse(
                RefusalReason::MissingRequiredModifier,
                at,
                format!(
                    "line {n}: modifier group {:?} needs at least {min} selection(s), got {count}",
                    group.id
                ),
            ));
        }
        if let Some(max) = bounds.max {
            if count > u64::from(max) {
                return Err(refuse(
                    RefusalReason::TooManyModifiers,
                    at,
                    format!(
                        "line {n}: modifier group {:?} allows at most {max} selection(s), got {count}",
                        group.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menus::model::tests::sample;

    fn menu() -> Menu {
        let c = sample();
        Menu {
            venue: "main".into(),
            currency: "USD".into(),
            version: 1,
            updated_at: "2026-01-01T00:00:00Z".into(),
            categories: c.categories,
            items: c.items,
            modifier_groups: c.modifier_groups,
        }
    }

    fn open() -> StoreStatus {
        StoreStatus::default_for("main")
    }

    fn line(item: &str, variation: Option<&str>, mods: &[(&str, &str)]) -> OrderLine {
        OrderLine {
            item_id: item.into(),
            variation_id: variation.map(Into::into),
            quantity: 1,
            modifiers: mods
                .iter()
                .map(|(g, o)| OrderModifier {
                    group_id: (*g).into(),
                    option_id: (*o).into(),
                    quantity: 1,
                })
                .collect(),
        }
    }

    fn reason(
        menu: &Menu,
        status: &StoreStatus,
        lines: &[OrderLine],
    ) -> (RefusalReason, Option<usize>) {
        let r = check_order(menu, status, lines).unwrap_err();
        (r.reason, r.line)
    }

    #[test]
    fn a_valid_order_passes_even_when_busy() {
        let lines = [
            line(
                "burger",
                Some("double"),
                &[("sauce", "bbq"), ("extras", "cheese")],
            ),
            line("fries", None, &[]),
        ];
        check_order(&menu(), &open(), &lines).unwrap();
        let mut busy = open();
        busy.status = StoreState::Busy;
        busy.extra_prep_minutes = Some(15);
        check_order(&menu(), &busy, &lines).unwrap();
    }

    #[test]
    fn a_closed_store_refuses_everything() {
        let mut closed = open();
        closed.status = StoreState::Closed;
        let r = check_order(&menu(), &closed, &[line("fries", None, &[])]).unwrap_err();
        assert_eq!((r.reason, r.line), (RefusalReason::StoreClosed, None));
        assert_eq!(ApiError::from(r).status, axum::http::StatusCode::CONFLICT);
    }

    #[test]
    fn unknown_entries_name_their_line() {
        let ok = line("fries", None, &[]);
        let m = menu();
        assert_eq!(
            reason(&m, &open(), &[ok.clone(), line("pizza", None, &[])]),
            (RefusalReason::UnknownItem, Some(1))
        );
        assert_eq!(
            reason(
                &m,
                &open(),
                &[line("burger", Some("triple"), &[("sauce", "mayo")])]
            ),
            (RefusalReason::UnknownVariation, Some(0))
        );
        assert_eq!(
            reason(&m, &open(), &[line("burger", None, &[("sauce", "mayo")])]),
            (RefusalReason::VariationRequired, Some(0))
        );
        assert_eq!(
            reason(
                &m,
                &open(),
                &[
                    ok.clone(),
                    ok.clone(),
                    line("burger", Some("single"), &[("sauce", "mustard")])
                ]
            ),
            (RefusalReason::UnknownOption, Some(2))
        );
        // A group on the menu but not offered with this item.
        assert_eq!(
            reason(&m, &open(), &[line("fries", None, &[("sauce", "mayo")])]),
            (RefusalReason::UnknownOption, Some(0))
        );
        let r = check_order(&m, &open(), &[line("pizza", None, &[])]).unwrap_err();
        assert!(
            r.message.contains("line 0") && r.message.contains("pizza"),
            "{}",
            r.message
        );
        assert_eq!(
            ApiError::from(r).status,
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn modifier_bounds() {
        let m = menu();
        assert_eq!(
            reason(
                &m,
                &open(),
                &[line("burger", Some("single"), &[("extras", "bacon")])]
            ),
            (RefusalReason::MissingRequiredModifier, Some(0))
        );
        assert_eq!(
            reason(
                &m,
                &open(),
                &[line(
                    "burger",
                    Some("single"),
                    &[("sauce", "mayo"), ("sauce", "bbq"), ("sauce", "ketchup")]
                )]
            ),
            (RefusalReason::TooManyModifiers, Some(0))
        );
        // Quantities count toward the maximum.
        let mut l = line("burger", Some("single"), &[("sauce", "mayo")]);
        l.modifiers[0].quantity = 3;
        assert_eq!(
            reason(&m, &open(), &[l]),
            (RefusalReason::TooManyModifiers, Some(0))
        );
        // `required` with min 0 still needs one.
        let mut m2 = m.clone();
        m2.modifier_groups[0].min_selected = 0;
        assert_eq!(
            reason(&m2, &open(), &[line("burger", Some("single"), &[])]),
            (RefusalReason::MissingRequiredModifier, Some(0))
        );
    }

    /// The menu with the burger's own bounds for `group`.
    fn overriding(group: &str, min: Option<u32>, max: Option<u32>) -> Menu {
        let mut m = menu();
        m.items[0].modifier_group_overrides = vec![ModifierGroupOverride {
            group_id: group.into(),
            min_selected: min,
            max_selected: max,
        }];
        crate::menus::model::validate(&m.content()).unwrap();
        m
    }

    fn burger(mods: &[(&str, &str)]) -> [OrderLine; 2] {
        [
            line("fries", None, &[]),
            line("burger", Some("single"), mods),
        ]
    }

    #[test]
    fn an_items_own_bounds_win_over_its_groups() {
        // The sauce group is 1-2; extras 0-unlimited.
        let two_sauces = [("sauce", "mayo"), ("sauce", "bbq")];
        let three_sauces = [("sauce", "mayo"), ("sauce", "bbq"), ("sauce", "ketchup")];

        // A stricter minimum: this burger needs two sauces.
        let m = overriding("sauce", Some(2), None);
        let r = check_order(&m, &open(), &burger(&[("sauce", "mayo")])).unwrap_err();
        assert_eq!(
            (r.reason, r.line),
            (RefusalReason::MissingRequiredModifier, Some(1))
        );
        assert_eq!(
            r.message,
            "line 1: modifier group \"sauce\" needs at least 2 selection(s), got 1"
        );
        check_order(&m, &open(), &burger(&two_sauces)).unwrap();

        // A looser maximum: three sauces, which the group alone refuses.
        assert_eq!(
            reason(&menu(), &open(), &burger(&three_sauces)),
            (RefusalReason::TooManyModifiers, Some(1))
        );
        let m = overriding("sauce", None, Some(3));
        check_order(&m, &open(), &burger(&three_sauces)).unwrap();
        // The group's minimum (required) still holds where the override keeps it.
        assert_eq!(
            reason(&m, &open(), &burger(&[])),
            (RefusalReason::MissingRequiredModifier, Some(1))
        );

        // A stricter maximum: one sauce, where the group allows two.
        check_order(&menu(), &open(), &burger(&two_sauces)).unwrap();
        let m = overriding("sauce", None, Some(1));
        let r = check_order(&m, &open(), &burger(&two_sauces)).unwrap_err();
        assert_eq!(
            (r.reason, r.line),
            (RefusalReason::TooManyModifiers, Some(1))
        );
        assert_eq!(
            r.message,
            "line 1: modifier group \"sauce\" allows at most 1 selection(s), got 2"
        );
        check_order(&m, &open(), &burger(&[("sauce", "bbq")])).unwrap();

        // A minimum of 0 makes the required group optional on this item.
        let m = overriding("sauce", Some(0), None);
        check_order(&m, &open(), &burger(&[])).unwrap();

        // An override of another group leaves this one with the group's bounds.
        let m = overriding("extras", None, Some(1));
        assert_eq!(
            reason(&m, &open(), &burger(&[])),
            (RefusalReason::MissingRequiredModifier, Some(1))
        );
        assert_eq!(
            reason(&m, &open(), &burger(&three_sauces)),
            (RefusalReason::TooManyModifiers, Some(1))
        );
        check_order(&m, &open(), &burger(&two_sauces)).unwrap();
        assert_eq!(
            reason(
                &m,
                &open(),
                &burger(&[("sauce", "mayo"), ("extras", "cheese"), ("extras", "bacon")])
            ),
            (RefusalReason::TooManyModifiers, Some(1))
        );
    }

    #[test]
    fn sold_out_entries_are_refused() {
        let mut m = menu();
        m.items[1].sold_out = Some(true);
        assert_eq!(
            reason(&m, &open(), &[line("fries", None, &[])]),
            (RefusalReason::ItemSoldOut, Some(0))
        );
        let mut m = menu();
        m.items[0].variations[1].sold_out = Some(true);
        check_order(
            &m,
            &open(),
            &[line("burger", Some("single"), &[("sauce", "mayo")])],
        )
        .unwrap();
        assert_eq!(
            reason(
                &m,
                &open(),
                &[line("burger", Some("double"), &[("sauce", "mayo")])]
            ),
            (RefusalReason::ItemSoldOut, Some(0))
        );
        let mut m = menu();
        m.modifier_groups[0].options[2].sold_out = Some(true);
        let r = check_order(
            &m,
            &open(),
            &[line("burger", Some("single"), &[("sauce", "bbq")])],
        )
        .unwrap_err();
        assert_eq!((r.reason, r.line), (RefusalReason::OptionSoldOut, Some(0)));
        assert_eq!(ApiError::from(r).status, axum::http::StatusCode::CONFLICT);
    }

    #[test]
    fn empty_orders_and_zero_quantities_are_refused() {
        assert_eq!(
            reason(&menu(), &open(), &[]),
            (RefusalReason::EmptyOrder, None)
        );
        let mut l = line("fries", None, &[]);
        l.quantity = 0;
        assert_eq!(
            reason(&menu(), &open(), &[l.clone()]),
            (RefusalReason::InvalidQuantity, Some(0))
        );
        l.quantity = 1_001;
        assert_eq!(
            reason(&menu(), &open(), &[line("fries", None, &[]), l]),
            (RefusalReason::InvalidQuantity, Some(1))
        );
        let many = vec![line("fries", None, &[]); MAX_LINES + 1];
        assert_eq!(
            reason(&menu(), &open(), &many),
            (RefusalReason::TooManyLines, None)
        );
        check_order(&menu(), &open(), &many[..MAX_LINES]).unwrap();
    }
}
