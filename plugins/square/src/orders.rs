//! Orders into Square: create (`POST /v2/orders`), pay with an external tender
//! (`POST /v2/payments`), price (`POST /v2/orders/calculate`), read (`GET /v2/orders/{id}`)
//! and find by our order id (`POST /v2/orders/search`).
//!
//! Square orders are idempotent on `idempotency_key` (our order id) and carry our order id in
//! `reference_id`. An API order shows in Square's Order Manager only once it has a fulfillment
//! and is fully paid, so an order paid by the channel is paid with an `EXTERNAL` tender right
//! after it is created; the payment has its own idempotency key derived from our order id.
//! Both the price and the order ask Square to apply the seller's catalog taxes
//! (`pricing_options.auto_apply_taxes`), so the price is what the order will cost.

use posbridge_sdk::http::encode_component;
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{json, Map, Value};
use posbridge_sdk::time;

use crate::{check_square, non_empty, post, resolve_location, square_get};
use posbridge_sdk::errors::NotFound;

/// Square's limit on `reference_id`.
const MAX_REFERENCE_ID: usize = 40;
/// Square's limit on `ticket_name`.
const MAX_TICKET_NAME: usize = 30;
/// Square's limit on `pickup_details.note`.
const MAX_PICKUP_NOTE: usize = 500;
/// Square's limit on a line item's `note`.
const MAX_LINE_NOTE: usize = 2000;
/// How far back `lookup-order` searches, and how many pages of 500 it reads at most.
const LOOKUP_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
const LOOKUP_MAX_PAGES: usize = 20;
/// Order metadata that says an external payment is due, so a look-up after a crash between
/// the order and its payment can finish the payment (the order is invisible to staff until
/// it is paid).
const META_PAY_SOURCE: &str = "posbridge_pay_source";
const META_PAY_TIP: &str = "posbridge_pay_tip";

/// The idempotency key of the external payment of our order `id` (≤ 45 characters, Square's
/// limit for payments; `id` is at most 40).
pub(crate) fn payment_key(our_order_id: &str) -> String {
    format!("{our_order_id}-pay")
}

/// Checks what Square would refuse anyway, before anything is sent, naming the field.
fn check_order(order: &Order) -> Result<(), ProviderError> {
    let bad = |field: &str, message: String| {
        ProviderError::rejected(
            None,
            Some("INVALID_ORDER".into()),
            message,
            Some(field.into()),
        )
    };
    if order.our_order_id.is_empty() || order.our_order_id.chars().count() > MAX_REFERENCE_ID {
        return Err(bad(
            "our-order-id",
            format!(
                "our order id must be 1 to {MAX_REFERENCE_ID} characters for Square's reference_id, got {:?}",
                order.our_order_id
            ),
        ));
    }
    if order.lines.is_empty() {
        return Err(bad("lines", "an order needs at least one line".into()));
    }
    for (i, line) in order.lines.iter().enumerate() {
        if !is_quantity(&line.quantity) {
            return Err(bad(
                &format!("lines[{i}].quantity"),
                format!(
                    "line {:?}: quantity {:?} is not a positive decimal",
                    line.line_id, line.quantity
                ),
            ));
        }
        if line.variation_id.is_none() && line.name.trim().is_empty() {
            return Err(bad(
                &format!("lines[{i}].name"),
                format!("line {:?}: an ad hoc line needs a name", line.line_id),
            ));
        }
    }
    Ok(())
}

/// A positive plain decimal ("2", "0.5"), as Square's quantity strings are.
pub(crate) fn is_quantity(text: &str) -> bool {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    !int.is_empty()
        && digits(int)
        && digits(frac)
        && (!text.contains('.') || !frac.is_empty())
        && text.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn money(amount: i64, currency: &str) -> Value {
    json!({ "amount": amount, "currency": currency })
}

/// The `order` object Square creates or calculates from our order.
pub(crate) fn order_body(order: &Order, location_id: &str) -> Value {
    let currency = order.currency.to_ascii_uppercase();
    let line_items: Vec<Value> = order
        .lines
        .iter()
        .map(|line| {
            let mut item = Map::new();
            // Our line id as Square's uid, so `calculate` answers each line's total by it.
            item.insert("uid".into(), json!(truncate(&line.line_id, 60)));
            item.insert("quantity".into(), json!(line.quantity));
            match &line.variation_id {
                Some(variation) => {
                    item.insert("catalog_object_id".into(), json!(variation));
                }
                None => {
                    item.insert("name".into(), json!(line.name));
                    item.insert("base_price_money".into(), money(line.unit_price, &currency));
                }
            }
            if let Some(note) = line.note.as_deref().filter(|n| !n.trim().is_empty()) {
                item.insert("note".into(), json!(truncate(note, MAX_LINE_NOTE)));
            }
            let modifiers: Vec<Value> = line
                .modifiers
                .iter()
                .map(|m| match &m.provider_id {
                    Some(id) => json!({
                        "catalog_object_id": id,
                        "quantity": m.quantity.to_string(),
                    }),
                    None => json!({
                        "name": m.name,
                        "base_price_money": money(m.unit_price, &currency),
                        "quantity": m.quantity.to_string(),
                    }),
                })
                .collect();
            if !modifiers.is_empty() {
                item.insert("modifiers".into(), Value::Array(modifiers));
            }
            Value::Object(item)
        })
        .collect();
    let mut body = json!({
        "location_id": location_id,
        "reference_id": order.our_order_id,
        "source": { "name": order.source_name },
        "line_items": line_items,
        "fulfillments": [fulfillment(&order.fulfilment)],
        // Square applies no tax to an API order unless asked: without this, `calculate`
        // answers a total without the seller's catalog taxes and the created order is
        // underpaid. With it Square applies the taxes of each catalog line's item and, to
        // ad hoc lines, the taxes that apply to custom amounts, as at the seller's register.
        // No `taxes[]` of our own: with both Square would apply a tax twice.
        "pricing_options": { "auto_apply_taxes": true },
    });
    let name = order.fulfilment.customer_name.trim();
    if !name.is_empty() {
        body["ticket_name"] = json!(truncate(name, MAX_TICKET_NAME));
    }
    if let Some(payment) = &order.payment {
        body["metadata"] = json!({
            META_PAY_SOURCE: truncate(&payment.source, 255),
            META_PAY_TIP: payment.tip.to_string(),
        });
    }
    body
}

/// Always a `PICKUP` fulfillment: Square hides `DELIVERY` orders from the seller without a
/// partnership, so a delivery (or dine-in) order says so in the pickup note, with the address.
fn fulfillment(f: &Fulfilment) -> Value {
    let mut note_parts: Vec<String> = Vec::new();
    match f.kind {
        FulfilmentKind::Pickup => {}
        FulfilmentKind::Delivery => {
            let address = f
                .delivery_address
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            note_parts.push(if address.is_empty() {
                "DELIVERY".to_owned()
            } else {
                format!("DELIVERY to {address}")
            });
        }
        FulfilmentKind::DineIn => note_parts.push("DINE-IN".to_owned()),
    }
    if let Some(note) = f.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        note_parts.push(note.to_owned());
    }
    let mut recipient = Map::new();
    let name = if f.customer_name.trim().is_empty() {
        "Online order"
    } else {
        f.customer_name.trim()
    };
    recipient.insert("display_name".into(), json!(name));
    if let Some(phone) = f.customer_phone.as_deref().filter(|p| !p.trim().is_empty()) {
        recipient.insert("phone_number".into(), json!(phone));
    }
    if let Some(email) = f.customer_email.as_deref().filter(|e| !e.trim().is_empty()) {
        recipient.insert("email_address".into(), json!(email));
    }
    let mut details = Map::new();
    details.insert("recipient".into(), Value::Object(recipient));
    match f.scheduled_at {
        Some(at) => {
            details.insert("schedule_type".into(), json!("SCHEDULED"));
            details.insert("pickup_at".into(), json!(time::format_rfc3339(at)));
        }
        None => {
            details.insert("schedule_type".into(), json!("ASAP"));
        }
    }
    if let Some(minutes) = f.prep_time_minutes.filter(|m| *m > 0) {
        details.insert("prep_time_duration".into(), json!(format!("PT{minutes}M")));
    }
    if !note_parts.is_empty() {
        details.insert(
            "note".into(),
            json!(truncate(&note_parts.join(" — "), MAX_PICKUP_NOTE)),
        );
    }
    // No `state`: Square starts a new fulfillment PROPOSED, waiting for staff to accept it.
    json!({ "type": "PICKUP", "pickup_details": details })
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn amount(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

/// A Square order (JSON) → its status in posbridge's words.
///
/// The order's `state` decides when final (COMPLETED, CANCELED) or DRAFT; an OPEN order is
/// where its (single) fulfillment stands: PROPOSED → pending (not yet accepted in the Order
/// Manager), RESERVED → in-progress (accepted: Square shows it "In progress"), PREPARED →
/// ready, COMPLETED → completed, CANCELED → canceled, FAILED → rejected. An OPEN order
/// without a fulfillment is accepted.
pub(crate) fn order_status(order: &Value) -> Result<OrderStatus, ProviderError> {
    let id = text(order, "/id")
        .ok_or_else(|| ProviderError::upstream("Square answered an order without an id"))?;
    let state = text(order, "/state").unwrap_or("OPEN");
    let fulfillment = order
        .get("fulfillments")
        .and_then(Value::as_array)
        .and_then(|f| f.first());
    let fulfillment_state = fulfillment.and_then(|f| text(f, "/state"));
    let mapped = match (state, fulfillment_state) {
        ("COMPLETED", _) => OrderState::Completed,
        ("CANCELED", _) => OrderState::Canceled,
        ("DRAFT", _) => OrderState::Pending,
        (_, Some("PROPOSED")) => OrderState::Pending,
        (_, Some("RESERVED")) => OrderState::InProgress,
        (_, Some("PREPARED")) => OrderState::Ready,
        (_, Some("COMPLETED")) => OrderState::Completed,
        (_, Some("CANCELED")) => OrderState::Canceled,
        (_, Some("FAILED")) => OrderState::Rejected,
        _ => OrderState::Accepted,
    };
    let provider_state = match fulfillment_state {
        Some(f) => format!("{state}/{f}"),
        None => state.to_owned(),
    };
    let ready_at = fulfillment
        .and_then(|f| {
            text(f, "/pickup_details/pickup_at").or_else(|| text(f, "/delivery_details/deliver_at"))
        })
        .and_then(|t| time::parse_timestamp(t).ok());
    Ok(OrderStatus {
        provider_order_id: id.to_owned(),
        our_order_id: text(order, "/reference_id").map(str::to_owned),
        state: mapped,
        provider_state,
        version: amount(order, "/version"),
        updated_at: text(order, "/updated_at").and_then(|t| time::parse_timestamp(t).ok()),
        ready_at,
        total: amount(order, "/total_money/amount"),
    })
}

/// Creates the order (idempotent on our order id) and pays it when the channel took payment.
pub(crate) fn submit(conn: &Connection, order: &Order) -> Result<OrderStatus, ProviderError> {
    check_order(order)?;
    let location = resolve_location(conn)?;
    let body = json!({
        "idempotency_key": order.our_order_id,
        "order": order_body(order, &location),
    });
    let response = check_square(
        post(conn, "/v2/orders")?.json(&body).send()?,
        NotFound::Upstream,
    )?;
    let created: Value = response.json_or_upstream()?;
    let created = created
        .get("order")
        .filter(|o| o.is_object())
        .ok_or_else(|| ProviderError::upstream("Square created an order but answered none"))?;
    if let Some(payment) = &order.payment {
        pay(
            conn,
            &location,
            created,
            &order.our_order_id,
            &payment.source,
            payment.tip,
            Some(payment.amount),
        )?;
        // The order's version moved with the payment: read it back so the status is current.
        if let Some(id) = text(created, "/id") {
            return get_status(conn, id);
        }
    }
    order_status(created)
}

/// Pays `order` in full with an `EXTERNAL` tender (idempotent on our order id), unless it
/// already has tenders.
fn pay(
    conn: &Connection,
    location: &str,
    order: &Value,
    our_order_id: &str,
    source: &str,
    tip: i64,
    expected: Option<i64>,
) -> Result<(), ProviderError> {
    if order
        .get("tenders")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
    {
        return Ok(());
    }
    let order_id = text(order, "/id")
        .ok_or_else(|| ProviderError::upstream("Square answered an order without an id"))?;
    let total = order
        .pointer("/total_money")
        .filter(|m| m.get("amount").and_then(Value::as_i64).is_some())
        .cloned()
        .ok_or_else(|| {
            ProviderError::upstream(format!("Square order {order_id} has no total_money"))
        })?;
    let currency = total
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("USD")
        .to_owned();
    let amount = total.get("amount").and_then(Value::as_i64).unwrap_or(0);
    if let Some(expected) = expected.filter(|e| *e != amount) {
        posbridge_sdk::warn!(
            "order {our_order_id}: the channel took {expected} but Square totals {amount}; the external tender records Square's total so the order counts as paid"
        );
    }
    let mut body = json!({
        "idempotency_key": payment_key(our_order_id),
        "source_id": "EXTERNAL",
        "external_details": {
            "type": "OTHER",
            "source": if source.trim().is_empty() { "posbridge" } else { source },
        },
        "amount_money": { "amount": amount, "currency": currency },
        "order_id": order_id,
        "location_id": location,
        "reference_id": our_order_id,
    });
    if tip > 0 {
        body["tip_money"] = json!({ "amount": tip, "currency": currency });
    }
    check_square(
        post(conn, "/v2/payments")?.json(&body).send()?,
        NotFound::Upstream,
    )
    .map_err(|e| e.map_message(|m| format!("paying Square order {order_id}: {m}")))?;
    Ok(())
}

/// Has Square price the order (`POST /v2/orders/calculate`), nothing stored.
pub(crate) fn price(conn: &Connection, order: &Order) -> Result<PricedOrder, ProviderError> {
    check_order(order)?;
    let location = resolve_location(conn)?;
    let body = json!({ "order": order_body(order, &location) });
    let response = check_square(
        post(conn, "/v2/orders/calculate")?.json(&body).send()?,
        NotFound::Upstream,
    )?;
    let answer: Value = response.json_or_upstream()?;
    let priced = answer
        .get("order")
        .ok_or_else(|| ProviderError::upstream("Square calculated no order"))?;
    let total = amount(priced, "/total_money/amount")
        .ok_or_else(|| ProviderError::upstream("Square calculated an order without total_money"))?;
    let tax = amount(priced, "/total_tax_money/amount").unwrap_or(0);
    let discount = amount(priced, "/total_discount_money/amount").unwrap_or(0);
    let service = amount(priced, "/total_service_charge_money/amount").unwrap_or(0);
    let tip = amount(priced, "/total_tip_money/amount").unwrap_or(0);
    let items = priced
        .get("line_items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let gross: Option<i64> = items
        .iter()
        .map(|l| amount(l, "/gross_sales_money/amount"))
        .try_fold(0i64, |sum, a| sum.checked_add(a?));
    // Before tax and discounts: Square's gross sales of the lines when it gives them, else
    // what the total implies.
    let subtotal = match gross {
        Some(g) if !items.is_empty() => g,
        _ => total
            .saturating_sub(tax)
            .saturating_add(discount)
            .saturating_sub(service)
            .saturating_sub(tip),
    };
    let lines = items
        .iter()
        .filter_map(|l| {
            Some((
                text(l, "/uid")?.to_owned(),
                amount(l, "/total_money/amount")?,
            ))
        })
        .collect();
    Ok(PricedOrder {
        currency: text(priced, "/total_money/currency")
            .map(str::to_owned)
            .unwrap_or_else(|| order.currency.to_ascii_uppercase()),
        subtotal,
        tax,
        discount,
        total,
        lines,
    })
}

/// `GET /v2/orders/{id}` → its status; an unknown id is `rejected` (404), not an outage.
pub(crate) fn get_status(conn: &Connection, id: &str) -> Result<OrderStatus, ProviderError> {
    let path = format!("/v2/orders/{}", encode_component(id));
    let response = square_get(conn, &path)?.send()?;
    if response.status == 404 {
        return Err(ProviderError::rejected(
            Some(404),
            Some("NOT_FOUND".into()),
            format!("Square has no order {id}"),
            Some("provider-order-id".into()),
        ));
    }
    let response = check_square(response, NotFound::Upstream)?;
    let answer: Value = response.json_or_upstream()?;
    let order = answer
        .get("order")
        .ok_or_else(|| ProviderError::upstream("Square answered no order"))?;
    order_status(order)
}

/// The Square order whose `reference_id` is our order id, if any.
///
/// Square's order search cannot filter on `reference_id` (its filters are state, dates,
/// fulfillment, source and customer), so this searches the location's orders created in the
/// last 7 days, newest first, and matches `reference_id` (assumed: a look-up follows a failed
/// or unanswered submit within days; at most 20 pages of 500 are read). A found order that
/// should have been paid by the channel (our metadata says so) but has no tender is paid now
/// with the same idempotency key, so a crash between the order and its payment still ends
/// with one order, visible to staff.
pub(crate) fn lookup(
    conn: &Connection,
    our_order_id: &str,
) -> Result<Option<OrderStatus>, ProviderError> {
    if our_order_id.is_empty() {
        return Ok(None);
    }
    let location = resolve_location(conn)?;
    let start = time::format_rfc3339(posbridge_sdk::clock::now() - LOOKUP_WINDOW_MS);
    let mut cursor: Option<String> = None;
    for _ in 0..LOOKUP_MAX_PAGES {
        let mut body = json!({
            "location_ids": [location],
            "return_entries": false,
            "limit": 500,
            "query": {
                "filter": {
                    "state_filter": { "states": ["OPEN", "COMPLETED", "CANCELED", "DRAFT"] },
                    "date_time_filter": { "created_at": { "start_at": start } },
                },
                "sort": { "sort_field": "CREATED_AT", "sort_order": "DESC" },
            },
        });
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let response = check_square(
            post(conn, "/v2/orders/search")?.json(&body).send()?,
            NotFound::Upstream,
        )?;
        let page: Value = response.json_or_upstream()?;
        let orders = page.get("orders").and_then(Value::as_array);
        if let Some(found) = orders
            .into_iter()
            .flatten()
            .find(|o| text(o, "/reference_id") == Some(our_order_id))
        {
            let source = text(found, &format!("/metadata/{META_PAY_SOURCE}"));
            if let (Some(source), Some("OPEN")) = (source, text(found, "/state")) {
                let tip = text(found, &format!("/metadata/{META_PAY_TIP}"))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let has_tenders = found
                    .get("tenders")
                    .and_then(Value::as_array)
                    .is_some_and(|t| !t.is_empty());
                if !has_tenders {
                    posbridge_sdk::info!(
                        "order {our_order_id} exists in Square unpaid: recording its external payment"
                    );
                    pay(conn, &location, found, our_order_id, source, tip, None)?;
                    let id = text(found, "/id").unwrap_or_default().to_owned();
                    return get_status(conn, &id).map(Some);
                }
            }
            return order_status(found).map(Some);
        }
        cursor = non_empty(
            page.get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        if cursor.is_none() {
            return Ok(None);
        }
    }
    posbridge_sdk::warn!(
        "order {our_order_id}: not among the last {LOOKUP_MAX_PAGES} pages of Square orders; answering not found"
    );
    Ok(None)
}
