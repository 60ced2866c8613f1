//! Square's orders side in [`crate::mock_square::MockSquare`], as Square's Orders and
//! Payments APIs answer the calls the Square plugin makes:
//!
//! - `POST /v2/orders` `{idempotency_key, order}`: priced from the mock's catalog (or the
//!   line's `base_price_money` for ad hoc lines), stored `OPEN` at version 1 with its
//!   fulfillment `PROPOSED`, `reference_id` kept. The same key with the same order answers
//!   the stored order again (no second order); with another order, `400
//!   IDEMPOTENCY_KEY_REUSED`. The key is optional, as in Square's API (without one nothing
//!   is deduplicated).
//! - `POST /v2/orders/calculate` `{order}`: the same pricing, nothing stored.
//! - `POST /v2/payments` with `source_id: "EXTERNAL"`: needs `idempotency_key` (≤ 45),
//!   `external_details{type, source}` and `amount_money`; with an `order_id` the amount must
//!   be the order's amount due (`PAYMENT_AMOUNT_MISMATCH` otherwise). The payment is
//!   `COMPLETED`, listed by `GET /v2/payments` like any other, and the order gets a tender
//!   and a new version. Other sources are refused: the mock charges no cards.
//! - `POST /v2/orders/search`: `location_ids` (required), `state_filter`, one
//!   `date_time_filter` field that must match `sort.sort_field`, `source_filter`,
//!   `fulfillment_filter`, `limit` (≤ 1000, default 500), `cursor`, `return_entries`.
//! - `GET /v2/orders/{id}`; `PUT /v2/orders/{id}` with a sparse order carrying the current
//!   `version` (a stale one is `409 VERSION_MISMATCH`; COMPLETED and CANCELED orders are
//!   final).
//!
//! Errors use Square's envelope with `field`. Taxes are applied only when the order asks for
//! them (`taxes[]`, or `pricing_options.auto_apply_taxes` with the items' `tax_ids`), as
//! Square does; discounts and service charges are not modelled and are refused as such.
//! Assumed where Square's docs are silent: an unknown location is `404 NOT_FOUND`, an
//! unknown catalog object `400 INVALID_VALUE` naming the field, a stale `version` HTTP 409
//! (the code, `VERSION_MISMATCH`, is what the plugin reads), and a replay answers the order
//! as it is now (paid, if it was paid since).
//!
//! Size: about 890 lines: every order call of one API shares the stored orders, the
//! idempotency maps and the knobs; the pricing both create and calculate use is in
//! `mock_square_pricing.rs`, the tests in `mock_square_orders/tests.rs`.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use crate::mock::{json_response, Fault, Incoming, Mock, Provider};
use crate::mock_orders::{LostAnswer, OrderCall, OrderKnobs, WithOrderKnobs};
use crate::mock_square::{rfc3339_millis, SquareApi, SQUARE_MERCHANT};
use crate::mock_square_pricing::{
    check_len, error, invalid, missing, money, price, read_money, text, too_long, Refusal,
    MAX_REFERENCE_ID, MAX_TICKET_NAME,
};

/// Square's limits on idempotency keys.
const MAX_ORDER_KEY: usize = 192;
const MAX_PAYMENT_KEY: usize = 45;
/// The orders Square holds for the mock, and the knobs of its order calls.
#[derive(Debug, Default)]
pub struct SquareOrders {
    /// Orders in creation order.
    orders: Vec<Value>,
    /// Idempotency key → (the `order` sent with it, the order id).
    keys: HashMap<String, (Value, String)>,
    /// Payment idempotency key → (the request body, the payment id).
    payment_keys: HashMap<String, (Value, String)>,
    /// Search cursors → offset of the next page.
    cursors: HashMap<String, usize>,
    seq: u64,
    pub(crate) knobs: OrderKnobs,
}

impl WithOrderKnobs for SquareApi {
    fn order_knobs(&mut self) -> &mut OrderKnobs {
        &mut self.orders.knobs
    }
}

/// Serves the order calls (and `POST /v2/payments`); `None` for any other request.
pub(crate) fn route(api: &mut SquareApi, request: &Incoming<'_>) -> Option<(u16, Response)> {
    let (method, path) = (request.method, request.path);
    let call = if path == "/v2/payments" {
        if method != Method::POST {
            return None; // listing payments is the sync's
        }
        OrderCall::Pay
    } else if path == "/v2/orders" || path.starts_with("/v2/orders/") {
        match (method.as_str(), path) {
            ("POST", "/v2/orders") => OrderCall::Create,
            ("POST", "/v2/orders/calculate") => OrderCall::Price,
            ("POST", "/v2/orders/search") => OrderCall::Read,
            ("GET", p) if p.len() > "/v2/orders/".len() => OrderCall::Read,
            ("PUT", p) if p.len() > "/v2/orders/".len() => OrderCall::Update,
            _ => {
                let (status, body) = error(405, "METHOD_NOT_ALLOWED", None, "Method not allowed.");
                return Some((status, json_response(status, &body, &[])));
            }
        }
    } else {
        return None;
    };
    if let Some(fault) = api.orders.knobs.take_fault(call) {
        api.orders.knobs.hold(call, Duration::ZERO);
        return Some((
            fault.status,
            fault_answer(api, fault.status, fault.retry_after),
        ));
    }
    let body: Value = if method == Method::GET {
        Value::Null
    } else {
        match serde_json::from_slice(request.body) {
            Ok(body @ Value::Object(_)) => body,
            _ => {
                let (status, body) = error(
                    400,
                    "INVALID_BODY",
                    None,
                    "The request body is not a JSON object.",
                );
                return Some((status, json_response(status, &body, &[])));
            }
        }
    };
    let id = path
        .strip_prefix("/v2/orders/")
        .map(crate::mock_square::percent_decode)
        .unwrap_or_default();
    let answered = match call {
        OrderCall::Create => create(api, &body),
        OrderCall::Price => body
            .get("order")
            .filter(|o| o.is_object())
            .ok_or_else(|| missing("order"))
            .and_then(|o| price(api, o))
            .map(|priced| json!({ "order": priced })),
        OrderCall::Read if method == Method::GET => match find(api, &id) {
            Some(order) => Ok(json!({ "order": order })),
            None => Err(not_found_order(&id)),
        },
        OrderCall::Read => search(api, &body),
        OrderCall::Update => update(api, &id, &body),
        OrderCall::Pay => pay(api, &body),
    };
    let (status, answer) = match answered {
        Ok(answer) => (200, answer),
        Err(refusal) => refusal,
    };
    let mut extra = Duration::ZERO;
    if call == OrderCall::Create && status == 200 {
        match api.orders.knobs.take_lost() {
            Some(LostAnswer::Late(wait)) => extra = wait,
            Some(LostAnswer::GatewayTimeout) => {
                api.orders.knobs.hold(call, Duration::ZERO);
                return Some((504, fault_answer(api, 504, None)));
            }
            None => {}
        }
    }
    api.orders.knobs.hold(call, extra);
    Some((status, json_response(status, &answer, &[])))
}

fn fault_answer(api: &SquareApi, status: u16, retry_after: Option<String>) -> Response {
    api.fault_response(&Fault {
        status,
        remaining: Some(0),
        path_prefix: None,
        retry_after,
    })
}

fn not_found_order(id: &str) -> Refusal {
    error(
        404,
        "NOT_FOUND",
        None,
        &format!("Order with id `{id}` not found."),
    )
}

fn find(api: &SquareApi, id: &str) -> Option<Value> {
    api.orders.orders.iter().find(|o| o["id"] == id).cloned()
}

fn find_mut<'a>(api: &'a mut SquareApi, id: &str) -> Option<&'a mut Value> {
    api.orders.orders.iter_mut().find(|o| o["id"] == id)
}

fn create(api: &mut SquareApi, body: &Value) -> Result<Value, Refusal> {
    let key = match body.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.is_empty() => {
            return Err(error(
                400,
                "VALUE_EMPTY",
                Some("idempotency_key"),
                "Field must not be empty: idempotency_key.",
            ))
        }
        Some(Value::String(k)) if k.chars().count() > MAX_ORDER_KEY => {
            return Err(too_long("idempotency_key", MAX_ORDER_KEY))
        }
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("idempotency_key", "Expected a string value.")),
    };
    let Some(order) = body.get("order").filter(|o| o.is_object()) else {
        return Err(missing("order"));
    };
    if let Some(key) = &key {
        if let Some((sent, id)) = api.orders.keys.get(key) {
            if sent != order {
                return Err(error(
                    400,
                    "IDEMPOTENCY_KEY_REUSED",
                    Some("idempotency_key"),
                    "The idempotency key was already used with a different request.",
                ));
            }
            let id = id.clone();
            return find(api, &id)
                .map(|o| json!({ "order": o }))
                .ok_or_else(|| not_found_order(&id));
        }
    }
    let state = text(order, "state").unwrap_or("OPEN");
    if !["OPEN", "DRAFT"].contains(&state) {
        return Err(invalid(
            "order.state",
            "An order can only be created OPEN or DRAFT.",
        ));
    }
    let mut priced = price(api, order)?;
    api.orders.seq += 1;
    let id = format!(
        "{}{:04}",
        crate::random_suffix(24).to_ascii_uppercase(),
        api.orders.seq
    );
    let now = rfc3339_millis(jiff::Timestamp::now());
    priced["id"] = json!(id);
    priced["state"] = json!(state);
    priced["version"] = json!(1);
    priced["created_at"] = json!(now);
    priced["updated_at"] = json!(now);
    if priced.get("source").is_none() {
        priced["source"] = json!({"name": "Mock application"});
    }
    if let Some(fulfillments) = priced["fulfillments"].as_array_mut() {
        for f in fulfillments {
            if let Some(details) = f.get_mut("pickup_details") {
                details["placed_at"] = json!(now);
            }
        }
    }
    api.orders.orders.push(priced.clone());
    if let Some(key) = key {
        api.orders.keys.insert(key, (order.clone(), id));
    }
    Ok(json!({ "order": priced }))
}

fn pay(api: &mut SquareApi, body: &Value) -> Result<Value, Refusal> {
    let key = match text(body, "idempotency_key") {
        None => return Err(missing("idempotency_key")),
        Some("") => {
            return Err(error(
                400,
                "VALUE_EMPTY",
                Some("idempotency_key"),
                "Field must not be empty: idempotency_key.",
            ))
        }
        Some(k) if k.chars().count() > MAX_PAYMENT_KEY => {
            return Err(too_long("idempotency_key", MAX_PAYMENT_KEY))
        }
        Some(k) => k.to_owned(),
    };
    let Some(source) = text(body, "source_id") else {
        return Err(missing("source_id"));
    };
    if let Some((sent, id)) = api.orders.payment_keys.get(&key) {
        if sent != body {
            return Err(error(
                400,
                "IDEMPOTENCY_KEY_REUSED",
                Some("idempotency_key"),
                "The idempotency key was already used with a different request.",
            ));
        }
        let id = id.clone();
        let payment = api
            .payments
            .iter()
            .find(|p| p["id"] == id.as_str())
            .cloned();
        return Ok(json!({ "payment": payment }));
    }
    if source != "EXTERNAL" {
        return Err(error(
            400,
            "INVALID_CARD_DATA",
            Some("source_id"),
            "The mock charges no cards: only EXTERNAL payments are recorded.",
        ));
    }
    let external = body
        .get("external_details")
        .ok_or_else(|| missing("external_details"))?;
    let kind = text(external, "type").ok_or_else(|| missing("external_details.type"))?;
    const TYPES: [&str; 12] = [
        "CHECK",
        "BANK_TRANSFER",
        "OTHER_GIFT_CARD",
        "CRYPTO",
        "SQUARE_CASH",
        "SOCIAL",
        "EXTERNAL",
        "EMONEY",
        "CARD",
        "STORED_BALANCE",
        "FOOD_VOUCHER",
        "OTHER",
    ];
    if !TYPES.contains(&kind) {
        return Err(error(
            400,
            "INVALID_ENUM_VALUE",
            Some("external_details.type"),
            &format!("`{kind}` is not a valid external payment type."),
        ));
    }
    if text(external, "source").is_none_or(|s| s.trim().is_empty()) {
        return Err(missing("external_details.source"));
    }
    let location_id = match text(body, "location_id") {
        Some(l) => l.to_owned(),
        None => api
            .locations
            .first()
            .and_then(|l| text(l, "id"))
            .unwrap_or_default()
            .to_owned(),
    };
    let Some(location) = api
        .locations
        .iter()
        .find(|l| l["id"] == location_id.as_str())
    else {
        return Err(error(
            404,
            "NOT_FOUND",
            Some("location_id"),
            &format!("Location `{location_id}` not found."),
        ));
    };
    let currency = text(location, "currency").unwrap_or("USD").to_owned();
    let amount = read_money(
        body.get("amount_money")
            .ok_or_else(|| missing("amount_money"))?,
        "amount_money",
        &currency,
    )?;
    let tip = match body.get("tip_money") {
        Some(m) => read_money(m, "tip_money", &currency)?,
        None => 0,
    };
    let order_id = text(body, "order_id").map(str::to_owned);
    if let Some(order_id) = &order_id {
        let order = find(api, order_id).ok_or_else(|| {
            error(
                404,
                "NOT_FOUND",
                Some("order_id"),
                &format!("Order `{order_id}` not found."),
            )
        })?;
        if order["state"] != "OPEN" {
            return Err(invalid("order_id", "The order is not OPEN."));
        }
        let due = order
            .pointer("/net_amount_due_money/amount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if amount != due {
            return Err(error(
                400,
                "PAYMENT_AMOUNT_MISMATCH",
                Some("amount_money"),
                &format!("The payment amount {amount} does not match the amount due on the order, {due}."),
            ));
        }
    }
    api.orders.seq += 1;
    let id = format!(
        "{}{:04}",
        crate::random_suffix(24).to_ascii_uppercase(),
        api.orders.seq
    );
    let now = rfc3339_millis(jiff::Timestamp::now());
    let mut payment = json!({
        "id": id,
        "created_at": now,
        "updated_at": now,
        "amount_money": money(amount, &currency),
        "tip_money": money(tip, &currency),
        "total_money": money(amount + tip, &currency),
        "approved_money": money(amount + tip, &currency),
        "status": "COMPLETED",
        "source_type": "EXTERNAL",
        "external_details": external,
        "location_id": location_id,
        "receipt_number": id.chars().take(4).collect::<String>(),
        "receipt_url": format!("https://squareup.com/receipt/preview/{id}"),
        "delay_action": "CANCEL",
        "version_token": "v1",
        "application_details": {"square_product": "ECOMMERCE_API", "application_id": "sq0ids-mock"},
    });
    for copied in ["order_id", "reference_id", "note", "customer_id"] {
        if let Some(v) = body.get(copied).filter(|v| !v.is_null()) {
            payment[copied] = v.clone();
        }
    }
    if let Some(order_id) = &order_id {
        if let Some(order) = find_mut(api, order_id) {
            let tender = json!({
                "id": id, "location_id": location_id, "transaction_id": order_id,
                "created_at": now, "amount_money": money(amount, &currency),
                "tip_money": money(tip, &currency), "type": "OTHER", "payment_id": id,
            });
            match order["tenders"].as_array_mut() {
                Some(tenders) => tenders.push(tender),
                None => order["tenders"] = json!([tender]),
            }
            // The tip joins the order's totals; nothing is due any more.
            for pointer in [
                "/total_money",
                "/total_tip_money",
                "/net_amounts/total_money",
                "/net_amounts/tip_money",
            ] {
                if let Some(a) = order.pointer_mut(&format!("{pointer}/amount")) {
                    *a = json!(a.as_i64().unwrap_or(0) + tip);
                }
            }
            order["net_amount_due_money"] = money(0, &currency);
            bump(order);
        }
    }
    api.payments.push(payment.clone());
    api.orders.payment_keys.insert(key, (body.clone(), id));
    Ok(json!({ "payment": payment }))
}

/// A new version, changed now.
fn bump(order: &mut Value) {
    order["version"] = json!(order["version"].as_i64().unwrap_or(1) + 1);
    order["updated_at"] = json!(rfc3339_millis(jiff::Timestamp::now()));
}

fn is_final(state: &str) -> bool {
    state == "COMPLETED" || state == "CANCELED"
}

fn update(api: &mut SquareApi, id: &str, body: &Value) -> Result<Value, Refusal> {
    let Some(sparse) = body.get("order").filter(|o| o.is_object()) else {
        return Err(missing("order"));
    };
    let Some(current) = find(api, id) else {
        return Err(not_found_order(id));
    };
    let Some(version) = sparse.get("version").and_then(Value::as_i64) else {
        return Err(missing("order.version"));
    };
    if current["version"].as_i64() != Some(version) {
        return Err(error(
            409,
            "VERSION_MISMATCH",
            Some("order.version"),
            &format!(
                "The order is at version {}, not {version}: read it again.",
                current["version"]
            ),
        ));
    }
    if is_final(text(&current, "state").unwrap_or_default()) {
        return Err(invalid(
            "order.state",
            "A COMPLETED or CANCELED order cannot be updated.",
        ));
    }
    check_len(sparse, "reference_id", MAX_REFERENCE_ID)?;
    check_len(sparse, "ticket_name", MAX_TICKET_NAME)?;
    let mut next = current.clone();
    if let Some(state) = text(sparse, "state") {
        if !["OPEN", "COMPLETED", "CANCELED"].contains(&state) {
            return Err(invalid(
                "order.state",
                &format!("`{state}` is not a state an update can set."),
            ));
        }
        next["state"] = json!(state);
    }
    for copied in ["reference_id", "ticket_name"] {
        if let Some(v) = sparse.get(copied) {
            next[copied] = v.clone();
        }
    }
    if let Some(metadata) = sparse.get("metadata").and_then(Value::as_object) {
        for (k, v) in metadata {
            if v.is_null() {
                next["metadata"].as_object_mut().map(|m| m.remove(k));
            } else {
                next["metadata"][k] = v.clone();
            }
        }
    }
    for (i, f) in sparse
        .get("fulfillments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let uid = text(f, "uid").ok_or_else(|| missing(&format!("order.fulfillments[{i}].uid")))?;
        let Some(existing) = next["fulfillments"]
            .as_array_mut()
            .and_then(|l| l.iter_mut().find(|e| e["uid"] == uid))
        else {
            return Err(invalid(
                &format!("order.fulfillments[{i}].uid"),
                &format!("No fulfillment with uid `{uid}`."),
            ));
        };
        if let Some(state) = text(f, "state") {
            set_fulfillment(existing, state)
                .map_err(|d| invalid(&format!("order.fulfillments[{i}].state"), &d))?;
        }
    }
    for field in body
        .get("fields_to_clear")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        match field.split_once('.') {
            Some(("metadata", key)) => {
                next["metadata"].as_object_mut().map(|m| m.remove(key));
            }
            None if ["reference_id", "ticket_name", "metadata"].contains(&field) => {
                next.as_object_mut().map(|o| o.remove(field));
            }
            _ => {
                return Err(invalid(
                    "fields_to_clear",
                    &format!("`{field}` cannot be cleared by the mock."),
                ))
            }
        }
    }
    finish_state(&mut next);
    bump(&mut next);
    if let Some(stored) = find_mut(api, id) {
        *stored = next.clone();
    }
    Ok(json!({ "order": next }))
}

/// Moves a fulfillment to `state` (forward only; final states stay), stamping when.
fn set_fulfillment(f: &mut Value, state: &str) -> Result<String, String> {
    const ORDER: [&str; 4] = ["PROPOSED", "RESERVED", "PREPARED", "COMPLETED"];
    let old = text(f, "state").unwrap_or("PROPOSED").to_owned();
    if ["COMPLETED", "CANCELED", "FAILED"].contains(&old.as_str()) {
        return Err(format!("The fulfillment is already {old}."));
    }
    let rank = |s: &str| ORDER.iter().position(|o| *o == s);
    let forward = match (rank(&old), rank(state)) {
        (Some(a), Some(b)) => b >= a,
        (_, None) => state == "CANCELED" || state == "FAILED",
        _ => false,
    };
    if !forward {
        return Err(format!("A fulfillment cannot go from {old} to {state}."));
    }
    f["state"] = json!(state);
    let now = rfc3339_millis(jiff::Timestamp::now());
    let stamp = match state {
        "RESERVED" => Some("accepted_at"),
        "PREPARED" => Some("ready_at"),
        "COMPLETED" => Some("picked_up_at"),
        "CANCELED" => Some("canceled_at"),
        _ => None,
    };
    if let (Some(stamp), Some(details)) = (stamp, f.get_mut("pickup_details")) {
        details[stamp] = json!(now);
    }
    Ok(old)
}

/// Square closes an order whose state an update made final, and completes a paid order
/// whose fulfillments are all complete.
fn finish_state(order: &mut Value) {
    let fulfillments: Vec<String> = order["fulfillments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| text(f, "state").map(str::to_owned))
        .collect();
    let paid = order
        .pointer("/net_amount_due_money/amount")
        .and_then(Value::as_i64)
        == Some(0);
    if text(order, "state") == Some("OPEN")
        && paid
        && !fulfillments.is_empty()
        && fulfillments.iter().all(|s| s == "COMPLETED")
    {
        order["state"] = json!("COMPLETED");
    }
    if text(order, "state") == Some("CANCELED") {
        if let Some(list) = order["fulfillments"].as_array_mut() {
            for f in list {
                let _ = set_fulfillment(f, "CANCELED");
            }
        }
    }
    if is_final(text(order, "state").unwrap_or_default()) && order.get("closed_at").is_none() {
        order["closed_at"] = json!(rfc3339_millis(jiff::Timestamp::now()));
    }
}

fn search(api: &mut SquareApi, body: &Value) -> Result<Value, Refusal> {
    let locations: Vec<&str> = body["location_ids"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if locations.is_empty() {
        return Err(missing("location_ids"));
    }
    if locations.len() > 10 {
        return Err(invalid("location_ids", "At most 10 location ids."));
    }
    let limit = match body.get("limit").map(Value::as_u64) {
        None => 500,
        Some(Some(n)) if (1..=1000).contains(&n) => n as usize,
        Some(_) => return Err(invalid("limit", "`limit` must be between 1 and 1000.")),
    };
    let filter = body
        .pointer("/query/filter")
        .cloned()
        .unwrap_or(Value::Null);
    let states: Vec<&str> = filter
        .pointer("/state_filter/states")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let sources: Vec<&str> = filter
        .pointer("/source_filter/source_names")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let f_types: Vec<&str> = filter
        .pointer("/fulfillment_filter/fulfillment_types")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let f_states: Vec<&str> = filter
        .pointer("/fulfillment_filter/fulfillment_states")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let sort_field = match body
        .pointer("/query/sort/sort_field")
        .and_then(Value::as_str)
    {
        None | Some("CREATED_AT") => "created_at",
        Some("UPDATED_AT") => "updated_at",
        Some("CLOSED_AT") => "closed_at",
        Some(other) => {
            return Err(error(
                400,
                "INVALID_ENUM_VALUE",
                Some("query.sort.sort_field"),
                &format!("`{other}` is not a valid sort_field."),
            ))
        }
    };
    let descending = match body
        .pointer("/query/sort/sort_order")
        .and_then(Value::as_str)
    {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(other) => {
            return Err(error(
                400,
                "INVALID_ENUM_VALUE",
                Some("query.sort.sort_order"),
                &format!("`{other}` is not a valid sort_order."),
            ))
        }
    };
    let mut window = None;
    if let Some(dates) = filter.get("date_time_filter").and_then(Value::as_object) {
        let set: Vec<(&String, &Value)> = dates.iter().filter(|(_, v)| !v.is_null()).collect();
        if set.len() > 1 {
            return Err(invalid(
                "query.filter.date_time_filter",
                "Only one date_time_filter field may be set.",
            ));
        }
        if let Some((name, range)) = set.first() {
            if name.as_str() != sort_field {
                return Err(invalid(
                    "query.sort.sort_field",
                    &format!("The sort_field must match the date_time_filter field `{name}`."),
                ));
            }
            let bound = |key: &str| -> Result<Option<jiff::Timestamp>, Refusal> {
                match range.get(key).and_then(Value::as_str) {
                    None => Ok(None),
                    Some(t) => t.parse().map(Some).map_err(|_| {
                        invalid(
                            &format!("query.filter.date_time_filter.{name}.{key}"),
                            "Expected an RFC 3339 timestamp.",
                        )
                    }),
                }
            };
            window = Some((bound("start_at")?, bound("end_at")?));
        }
    }
    let offset = match text(body, "cursor") {
        None => 0,
        Some(c) => *api.orders.cursors.get(c).ok_or_else(|| {
            error(
                400,
                "INVALID_CURSOR",
                Some("cursor"),
                "The pagination cursor is not valid.",
            )
        })?,
    };
    let at = |o: &Value| text(o, sort_field).and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let mut matching: Vec<&Value> =
        api.orders
            .orders
            .iter()
            .filter(|o| locations.iter().any(|l| o["location_id"] == *l))
            .filter(|o| states.is_empty() || states.iter().any(|s| o["state"] == *s))
            .filter(|o| {
                sources.is_empty()
                    || sources
                        .iter()
                        .any(|s| o.pointer("/source/name") == Some(&json!(s)))
            })
            .filter(|o| {
                let fs = o["fulfillments"].as_array().cloned().unwrap_or_default();
                (f_types.is_empty() || fs.iter().any(|f| f_types.iter().any(|t| f["type"] == *t)))
                    && (f_states.is_empty()
                        || fs.iter().any(|f| f_states.iter().any(|s| f["state"] == *s)))
            })
            .filter(|o| match window {
                None => true,
                Some((start, end)) => at(o)
                    .is_some_and(|t| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)),
            })
            .collect();
    matching.sort_by_key(|o| (at(o), text(o, "id").map(str::to_owned)));
    if descending {
        matching.reverse();
    }
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| (*o).clone())
        .collect();
    let mut answer = json!({});
    if !page.is_empty() {
        if body["return_entries"] == true {
            answer["order_entries"] = page
                .iter()
                .map(|o| json!({"order_id": o["id"], "version": o["version"], "location_id": o["location_id"]}))
                .collect();
        } else {
            answer["orders"] = Value::Array(page);
        }
    }
    if offset + limit < matching.len() {
        api.orders.seq += 1;
        let cursor = format!("orders-cursor-{}", api.orders.seq);
        api.orders.cursors.insert(cursor.clone(), offset + limit);
        answer["cursor"] = json!(cursor);
    }
    Ok(answer)
}

impl Mock<SquareApi> {
    /// Every order created through `POST /v2/orders`, as stored now (idempotent replays add
    /// none): for exactly-once assertions.
    pub fn orders_created(&self) -> Vec<Value> {
        self.with(|api| api.orders.orders.clone())
    }

    /// The orders whose `reference_id` is `reference_id` (our order id).
    pub fn orders_with_reference(&self, reference_id: &str) -> Vec<Value> {
        self.with(|api| {
            api.orders
                .orders
                .iter()
                .filter(|o| o["reference_id"] == reference_id)
                .cloned()
                .collect()
        })
    }

    /// The order with id `id`, as stored now.
    pub fn order(&self, id: &str) -> Option<Value> {
        self.with(|api| find(api, id))
    }

    /// Staff move the order's (first) fulfillment to `state` in Square's Order Manager
    /// (`RESERVED` = accepted, `PREPARED` = ready, `COMPLETED` = picked up, `CANCELED`): the
    /// version goes up, and a paid order whose fulfillment completes is COMPLETED. Answers
    /// the old fulfillment state and the order, for [`square_fulfillment_webhook`]; `None`
    /// for an unknown order or a move Square would not make (backwards, out of a final
    /// state).
    pub fn set_fulfillment_state(&self, id: &str, state: &str) -> Option<(String, Value)> {
        self.with(|api| {
            let order = find_mut(api, id)?;
            let old =
                set_fulfillment(order["fulfillments"].as_array_mut()?.first_mut()?, state).ok()?;
            finish_state(order);
            bump(order);
            Some((old, order.clone()))
        })
    }

    /// Staff cancel the order in Square: state and fulfillment CANCELED, a new version.
    /// `None` for an unknown or already final order.
    pub fn cancel_order(&self, id: &str) -> Option<Value> {
        self.with(|api| {
            let order = find_mut(api, id)?;
            if is_final(text(order, "state").unwrap_or_default()) {
                return None;
            }
            order["state"] = json!("CANCELED");
            finish_state(order);
            bump(order);
            Some(order.clone())
        })
    }
}

/// The thin body of an `order.created` or `order.updated` notification for `order`: its id,
/// version, state and location, no line items (re-read the order).
pub fn square_order_webhook(event_type: &str, event_id: &str, order: &Value) -> String {
    let kind = event_type.replace('.', "_");
    let mut object = json!({
        "order_id": order["id"], "version": order["version"], "state": order["state"],
        "location_id": order["location_id"], "created_at": order["created_at"],
        "updated_at": order["updated_at"],
    });
    if event_type == "order.created" {
        object.as_object_mut().map(|o| o.remove("updated_at"));
    }
    envelope(event_type, event_id, &kind, order, object)
}

/// The thin body of an `order.fulfillment.updated` notification: the order's id, version
/// and state, and the fulfillment's move from `old_state` to its current state.
pub fn square_fulfillment_webhook(event_id: &str, order: &Value, old_state: &str) -> String {
    let fulfillment = &order["fulfillments"][0];
    let object = json!({
        "order_id": order["id"], "version": order["version"], "state": order["state"],
        "location_id": order["location_id"], "created_at": order["created_at"],
        "updated_at": order["updated_at"],
        "fulfillment_update": [{"fulfillment_uid": fulfillment["uid"], "old_state": old_state,
                                "new_state": fulfillment["state"]}],
    });
    envelope(
        "order.fulfillment.updated",
        event_id,
        "order_fulfillment_updated",
        order,
        object,
    )
}

fn envelope(event_type: &str, event_id: &str, kind: &str, order: &Value, object: Value) -> String {
    json!({
        "merchant_id": SQUARE_MERCHANT,
        "type": event_type,
        "event_id": event_id,
        "created_at": rfc3339_millis(jiff::Timestamp::now()),
        "data": {"type": kind, "id": order["id"], "object": {kind: object}},
    })
    .to_string()
}

#[cfg(test)]
mod tests;
