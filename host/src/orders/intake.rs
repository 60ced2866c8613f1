//! Intake of an online order by menu lines, in the request, before anything is stored:
//! its lines checked against the venue's menu and store status, its items and money worked
//! out (from the POS's price at a venue whose POS takes orders, else from the menu), and the
//! request the injection worker will send to the POS built.

use std::collections::HashMap;

use super::{NewOrder, OrderItem, OrderSource, PosPrice};
use crate::auth::TenantScope;
use crate::error::ApiError;
use crate::menus::{self, check_order, Menu, MenuIndex, StoreState};
use crate::money::MAX_AMOUNT;
use crate::plugins::contract::{
    self as contract, Capability, ExternalPayment, Fulfilment, FulfilmentKind, PricedOrder,
};
use crate::providers::{venue_pos, ProviderFailure, ProvidersState};
use crate::store::{Store, StoreError};

/// The POS side of an order being created: where it goes and what is sent.
#[derive(Debug, Clone)]
pub(super) struct PosPlan {
    pub provider: String,
    pub integration_id: String,
    pub request: contract::Order,
    pub priced: Option<PosPrice>,
}

/// An order with menu lines, worked out before its transaction: the lines checked against
/// the menu and store status, its items and money, and (at a venue whose POS takes orders)
/// what goes to the POS.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub id: String,
    pub venue: String,
    pub items: Vec<OrderItem>,
    pub subtotal: i64,
    pub tax: i64,
    pub discount: i64,
    pub total: i64,
    pub pos: Option<PosPlan>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_order", message.into())
}

fn mismatch(what: &str, given: i64, expected: i64) -> ApiError {
    ApiError::conflict(
        "price_mismatch",
        format!(
            "{what} {given} differs from the venue's price {expected}; leave it out to take the venue's, or show the customer the new price"
        ),
    )
}

/// Whether the request's `Idempotency-Key` already has a stored answer: then the order is
/// a replay, answered from the store, and must not be checked or priced again (the store
/// may have closed since, which must not turn a replay into a refusal).
pub(super) async fn answered(
    store: &Store,
    scope: &TenantScope,
    key: Option<&str>,
) -> Result<bool, StoreError> {
    let Some(key) = key else { return Ok(false) };
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT status FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status <> 0",
    )
    .bind(scope.tenant_id())
    .bind(key)
    .fetch_optional(store.reader())
    .await?;
    Ok(found.is_some())
}

/// One line's figures from the menu.
struct Priced {
    items: Vec<OrderItem>,
    lines: Vec<contract::OrderLine>,
    subtotal: i64,
}

/// Builds the order's items (names and unit prices from the menu) and the POS lines (by
/// the entries' provider ids). `need_ids`: the POS needs a provider id on every entry.
fn price_from_menu(
    menu: &Menu,
    lines: &[menus::OrderLine],
    need_ids: bool,
) -> Result<Priced, ApiError> {
    let index = MenuIndex::new(menu);
    let categories: HashMap<&str, Option<&str>> = menu
        .categories
        .iter()
        .map(|c| (c.id.as_str(), c.provider_id.as_deref()))
        .collect();
    let too_large = || invalid("order subtotal is too large");
    let no_id = |n: usize, what: String| {
        ApiError::unprocessable(
            "no_provider_id",
            format!(
                "line {n}: {what} has no POS id on the menu; sync the venue's menu from its POS"
            ),
        )
    };
    let mut out = Priced {
        items: Vec::with_capacity(lines.len()),
        lines: Vec::with_capacity(lines.len()),
        subtotal: 0,
    };
    for (n, line) in lines.iter().enumerate() {
        // check_order ran first: every id below exists.
        let item = index
            .items
            .get(line.item_id.as_str())
            .ok_or_else(|| invalid(format!("line {n}: no item {:?}", line.item_id)))?;
        let variation = match &line.variation_id {
            Some(id) => item.variations.iter().find(|v| &v.id == id),
            None => item.variations.first(),
        }
        .ok_or_else(|| invalid(format!("line {n}: no variation")))?;
        let mut unit = variation.price.get();
        let mut names = Vec::new();
        let mut modifiers = Vec::new();
        for m in &line.modifiers {
            let group = index
                .groups
                .get(m.group_id.as_str())
                .ok_or_else(|| invalid(format!("line {n}: no group {:?}", m.group_id)))?;
            let option = group
                .options
                .iter()
                .find(|o| o.id == m.option_id)
                .ok_or_else(|| invalid(format!("line {n}: no option {:?}", m.option_id)))?;
            unit = option
                .price
                .get()
                .checked_mul(i64::from(m.quantity))
                .and_then(|p| unit.checked_add(p))
                .filter(|u| *u <= MAX_AMOUNT)
                .ok_or_else(too_large)?;
            names.push(if m.quantity > 1 {
                format!("{} × {}", m.quantity, option.name)
            } else {
                option.name.clone()
            });
            if need_ids && option.provider_id.is_none() {
                return Err(no_id(n, format!("option {:?}", option.id)));
            }
            modifiers.push(contract::OrderModifier {
                provider_id: option.provider_id.clone(),
                group_id: group.provider_id.clone(),
                name: option.name.clone(),
                quantity: m.quantity,
                unit_price: option.price.get(),
            });
        }
        if need_ids && variation.provider_id.is_none() && item.provider_id.is_none() {
            return Err(no_id(n, format!("item {:?}", item.id)));
        }
        out.subtotal = unit
            .checked_mul(i64::from(line.quantity))
            .and_then(|l| out.subtotal.checked_add(l))
            .filter(|s| *s <= MAX_AMOUNT)
            .ok_or_else(too_large)?;
        let name = if item.variations.len() > 1 {
            format!("{} ({})", item.name, variation.name)
        } else {
            item.name.clone()
        };
        out.items.push(OrderItem {
            name: name.clone(),
            quantity: i64::from(line.quantity),
            unit_price: crate::money::NonNegativeAmount::try_from(unit)
                .map_err(|e| invalid(format!("line {n}: unit price {e}")))?,
            sku: Some(item.id.clone()),
            notes: (!names.is_empty()).then(|| names.join(", ")),
        });
        out.lines.push(contract::OrderLine {
            line_id: format!("line-{n}"),
            item_id: item.provider_id.clone(),
            item_group_id: item
                .category_ids
                .iter()
                .find_map(|c| categories.get(c.as_str()).copied().flatten())
                .map(str::to_owned),
            variation_id: variation.provider_id.clone(),
            name,
            quantity: line.quantity.to_string(),
            unit_price: variation.price.get(),
            modifiers,
            note: None,
        });
    }
    Ok(out)
}

/// Works out an order that names menu `lines`, before anything is stored: the venue's menu
/// and store status must accept every line (refusals name the line); at a venue whose POS
/// takes orders the POS prices it (when it can) and the POS request is built. Figures the
/// client gave must match the venue's (409 `price_mismatch`). Nothing is sent to the POS
/// but the price request, and nothing at all when the menu refuses the order.
pub(super) async fn prepare(
    app: &ProvidersState,
    scope: &TenantScope,
    new: &NewOrder,
    id: String,
) -> Result<Prepared, ProviderFailure> {
    let lines = new.lines.as_deref().unwrap_or_default();
    let venue = new
        .venue
        .clone()
        .ok_or_else(|| invalid("an order with lines must name its venue"))?;
    menus::check_venue(&venue).map_err(ApiError::from)?;
    if new.source != OrderSource::Online {
        return Err(invalid("menu lines are for online orders").into());
    }
    if !new.items.is_empty() {
        return Err(
            invalid("give either items or lines: with lines the items come from the menu").into(),
        );
    }
    let menu = menus::read_menu(&app.store, scope, &venue)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::from(menus::MenuError::NotFound(venue.clone())))?;
    let status = menus::read_store_status(&app.store, scope, &venue)
        .await
        .map_err(ApiError::from)?;
    check_order(&menu, &status, lines).map_err(ApiError::from)?;

    let pos = venue_pos(app, scope, &venue).await?;
    let manifest = pos.as_ref().and_then(|p| app.plugins.manifest(&p.provider));
    let submits = manifest
        .as_ref()
        .is_some_and(|m| m.can(Capability::SubmitOrders));
    let from_menu = price_from_menu(&menu, lines, submits)?;
    let tip = new.tip.get();
    let Some(pos) = pos.filter(|_| submits) else {
        // No POS takes this venue's orders: the menu prices it, tax and discount as given.
        let (tax, discount) = (new.tax.map_or(0, |t| t.get()), new.discount.get());
        let total = from_menu
            .subtotal
            .checked_add(tax)
            .and_then(|t| t.checked_add(tip))
            .map(|t| t - discount)
            .filter(|t| (0..=MAX_AMOUNT).contains(t))
            .ok_or_else(|| invalid("subtotal + tax + tip - discount is out of range"))?;
        check_given(new, from_menu.subtotal, tax, discount, total)?;
        return Ok(Prepared {
            id,
            venue,
            items: from_menu.items,
            subtotal: from_menu.subtotal,
            tax,
            discount,
            total,
            pos: None,
        });
    };
    pos.check_connected()?;
    let customer = new.customer.clone().unwrap_or_default();
    let mut request = contract::Order {
        our_order_id: id.clone(),
        currency: scope.currency().to_owned(),
        lines: from_menu.lines,
        fulfilment: Fulfilment {
            kind: FulfilmentKind::Pickup,
            customer_name: customer
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "Online order".into()),
            customer_phone: customer.phone,
            customer_email: customer.email,
            scheduled_at_ms: None,
            prep_time_minutes: (status.status == StoreState::Busy)
                .then_some(status.extra_prep_minutes)
                .flatten(),
            delivery_address: Vec::new(),
            note: new.notes.clone(),
        },
        total: 0,
        payment: None,
        source_name: "posbridge".into(),
    };
    let can_price = manifest.is_some_and(|m| m.can(Capability::PriceOrders));
    let (subtotal, tax, discount, before_tip, priced) = if can_price {
        let p: PricedOrder = app
            .plugins
            .price_order(&pos.provider, &pos.ctx, &pos.conn, &request)
            .await??;
        if !p.currency.eq_ignore_ascii_case(scope.currency()) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!(
                    "the POS priced the order in {} but the tenant's currency is {}",
                    p.currency,
                    scope.currency()
                ),
            )
            .into());
        }
        let figures = [p.subtotal, p.tax, p.discount, p.total];
        if figures.iter().any(|v| !(0..=MAX_AMOUNT).contains(v)) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("the POS priced the order out of range: {figures:?}"),
            )
            .into());
        }
        let price = PosPrice {
            subtotal: p.subtotal,
            tax: p.tax,
            discount: p.discount,
            total: p.total,
        };
        (p.subtotal, p.tax, p.discount, p.total, Some(price))
    } else {
        let (tax, discount) = (new.tax.map_or(0, |t| t.get()), new.discount.get());
        let before_tip = (from_menu.subtotal + tax - discount).max(0);
        (from_menu.subtotal, tax, discount, before_tip, None)
    };
    let total = before_tip
        .checked_add(tip)
        .filter(|t| *t <= MAX_AMOUNT)
        .ok_or_else(|| invalid("the total is too large"))?;
    check_given(new, subtotal, tax, discount, total)?;
    request.total = total;
    // The channel took the money: the POS records it as an external payment, so the order
    // shows as paid (Square shows API orders to staff only once paid).
    request.payment = Some(ExternalPayment {
        amount: before_tip,
        tip,
        source: "posbridge".into(),
    });
    Ok(Prepared {
        id,
        venue,
        items: from_menu.items,
        subtotal,
        tax,
        discount,
        total,
        pos: Some(PosPlan {
            provider: pos.provider,
            integration_id: pos.ctx.integration_id,
            request,
            priced,
        }),
    })
}

/// Figures the client gave with its lines must be the venue's.
fn check_given(
    new: &NewOrder,
    subtotal: i64,
    tax: i64,
    discount: i64,
    total: i64,
) -> Result<(), ApiError> {
    if let Some(given) = new.subtotal.map(|v| v.get()).filter(|g| *g != subtotal) {
        return Err(mismatch("subtotal", given, subtotal));
    }
    if let Some(given) = new.tax.map(|v| v.get()).filter(|g| *g != tax) {
        return Err(mismatch("tax", given, tax));
    }
    let given = new.discount.get();
    if given != 0 && given != discount {
        return Err(mismatch("discount", given, discount));
    }
    if let Some(given) = new.total.map(|v| v.get()).filter(|g| *g != total) {
        return Err(mismatch("total", given, total));
    }
    Ok(())
}
