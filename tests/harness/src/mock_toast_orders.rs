//! Toast's orders side in [`crate::mock_toast::MockToast`], as Toast's orders and
//! configuration APIs answer the calls the Toast plugin makes (Bearer token and
//! `Toast-Restaurant-External-ID` checked first, as for every data call):
//!
//! - `POST /orders/v2/orders`: an Order body. Needs `diningOption{guid}` (one of the
//!   restaurant's), `checks[].selections[]` with `item{guid}` of a published menu item and a
//!   positive `quantity`; modifiers are nested selections whose `item` is one of the item's
//!   modifier options (`optionGroup` its group). A REQUIRED group (or one with
//!   `minSelections`) left short, or a group over `maxSelections`, is refused. TAKE_OUT and
//!   DELIVERY need `checks[].customer{firstName, lastName, phone, email}`; DELIVERY needs
//!   `deliveryInfo{address1, city, state, zipCode}`, `state` in two capital letters. Payments must be `type: "OTHER"` with
//!   `otherPayment{guid}` of an alternate payment type (card payments are refused). Priced
//!   from the published menu (with the mock's tax rate), stored with `source: "API"`,
//!   `approvalStatus` APPROVED (FUTURE when `promisedDate` is ahead; see
//!   [`Mock::set_approval_on_create`]), selections `fulfillmentStatus: NEW`, a check PAID
//!   when its payments cover it and OPEN otherwise. `ordersBulk` lists it from then on.
//! - A second order with the same `externalId` is refused — `409` by default, or the `400`
//!   form ([`DuplicateAnswer`]); Toast's exact answer is not documented, so both forms name
//!   the `externalId` as taken.
//! - `POST /orders/v2/prices`: the same checks and pricing, nothing stored.
//! - `GET /orders/v2/orders/{guid}`: the order, or 404.
//! - `GET /config/v2/diningOptions` and `/config/v2/alternatePaymentTypes`: bare arrays
//!   paged by `pageToken` / `Toast-Next-Page-Token`.
//!
//! Errors are Toast's `{status, code, message, fieldName, …}` with the rate-limit headers.
//! The orders API does not check stock or opening hours, and neither does the mock.
//!
//! Size: about 840 lines: one order body checked against the menu and the configuration
//! for both create and price, and the POS-side changes of the orders it stores; the tests
//! are in `mock_toast_orders/tests.rs`.

use std::collections::HashMap;
use std::time::Duration;

use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::mock::{json_response, parse_query, Fault, Incoming, Mock, Provider};
use crate::mock_orders::{decimal, times, LostAnswer, OrderCall, OrderKnobs, WithOrderKnobs};
use crate::mock_toast::{dollars, parse_toast_time, toast_error, toast_time, ToastApi};

/// The mock restaurant's TAKE_OUT dining option.
pub const TOAST_TAKEOUT_OPTION: &str = "d1a0c0de-0000-4000-8000-000000000001";
/// Its DELIVERY dining option.
pub const TOAST_DELIVERY_OPTION: &str = "d1a0c0de-0000-4000-8000-000000000002";
/// Its DINE_IN dining option.
pub const TOAST_DINE_IN_OPTION: &str = "d1a0c0de-0000-4000-8000-000000000003";
/// Its one alternate payment type, "Online".
pub const TOAST_ONLINE_PAYMENT: &str = "0a1e7000-0000-4000-8000-000000000001";

/// How the mock refuses a second order with an `externalId` already taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateAnswer {
    /// `409 Conflict`, "An order with externalId … already exists" (the default).
    Conflict,
    /// `400 Bad Request` with `fieldName: "externalId"` and the same message.
    BadRequest,
}

/// Toast's orders side of the mock: configuration, the orders created through the API and
/// the knobs.
#[derive(Debug)]
pub struct ToastOrders {
    pub(crate) knobs: OrderKnobs,
    /// Guids of the orders created through the API, in creation order.
    created: Vec<String>,
    /// (behavior, guid, name).
    dining: Vec<(String, String, String)>,
    /// (guid, name).
    payment_types: Vec<(String, String)>,
    config_page: usize,
    /// Configuration page tokens handed out → offset.
    tokens: HashMap<String, usize>,
    approval: String,
    duplicate: DuplicateAnswer,
    /// Tax on every selection, in basis points (825 = 8.25 %).
    tax_bp: i64,
    seq: u64,
}

impl Default for ToastOrders {
    fn default() -> Self {
        ToastOrders {
            knobs: OrderKnobs::default(),
            created: Vec::new(),
            dining: [
                ("TAKE_OUT", TOAST_TAKEOUT_OPTION, "Takeout"),
                ("DELIVERY", TOAST_DELIVERY_OPTION, "Delivery"),
                ("DINE_IN", TOAST_DINE_IN_OPTION, "Dine In"),
            ]
            .iter()
            .map(|(b, g, n)| ((*b).to_owned(), (*g).to_owned(), (*n).to_owned()))
            .collect(),
            payment_types: vec![(TOAST_ONLINE_PAYMENT.to_owned(), "Online".to_owned())],
            config_page: 100,
            tokens: HashMap::new(),
            approval: "APPROVED".to_owned(),
            duplicate: DuplicateAnswer::Conflict,
            tax_bp: 0,
            seq: 0,
        }
    }
}

impl WithOrderKnobs for ToastApi {
    fn order_knobs(&mut self) -> &mut OrderKnobs {
        &mut self.order_side.knobs
    }
}

/// A refusal: status and Toast's error body.
type Refusal = (u16, Value);

fn bad(field: &str, message: &str) -> Refusal {
    let mut body = toast_error(400, 10400, message);
    body["fieldName"] = json!(field);
    (400, body)
}

/// Serves the order and configuration calls; `None` for any other request.
pub(crate) fn route(
    api: &mut ToastApi,
    request: &Incoming<'_>,
    restaurant: &str,
    rate: &[(String, String)],
) -> Option<(u16, Response)> {
    let (method, path) = (request.method.as_str(), request.path);
    let reply = |status: u16, body: &Value| Some((status, json_response(status, body, rate)));
    let call = match (method, path) {
        ("POST", "/orders/v2/orders") => OrderCall::Create,
        ("POST", "/orders/v2/prices") => OrderCall::Price,
        ("GET", "/orders/v2/ordersBulk") => OrderCall::Read,
        ("GET", p)
            if p.len() > "/orders/v2/orders/".len() && p.starts_with("/orders/v2/orders/") =>
        {
            OrderCall::Read
        }
        ("GET", "/config/v2/diningOptions" | "/config/v2/alternatePaymentTypes") => {
            let (status, body, next) = config(api, path, request.query);
            let mut headers = rate.to_vec();
            if let Some(token) = next {
                headers.push(("toast-next-page-token".to_owned(), token));
            }
            return Some((status, json_response(status, &body, &headers)));
        }
        (_, "/orders/v2/orders" | "/orders/v2/prices" | "/orders/v2/ordersBulk")
        | (_, "/config/v2/diningOptions" | "/config/v2/alternatePaymentTypes") => {
            return reply(405, &toast_error(405, 10405, "Method not allowed"));
        }
        _ => return None,
    };
    if let Some(fault) = api.order_side.knobs.take_fault(call) {
        api.order_side.knobs.hold(call, Duration::ZERO);
        return Some((
            fault.status,
            fault_answer(api, fault.status, fault.retry_after),
        ));
    }
    if path == "/orders/v2/ordersBulk" {
        api.order_side.knobs.hold(call, Duration::ZERO);
        return Some(crate::mock_toast::orders_bulk(
            api,
            restaurant,
            request.query,
            rate.to_vec(),
        ));
    }
    let answered = match call {
        OrderCall::Read => {
            let guid = &path["/orders/v2/orders/".len()..];
            api.orders
                .iter()
                .find(|(r, o)| r == restaurant && o["guid"] == guid)
                .map(|(_, o)| o.clone())
                .ok_or_else(|| {
                    (
                        404,
                        toast_error(404, 10404, &format!("Order {guid} not found")),
                    )
                })
        }
        _ => match serde_json::from_slice::<Value>(request.body) {
            Ok(body @ Value::Object(_)) => build(api, restaurant, &body, call == OrderCall::Create),
            _ => Err(bad("", "The request body must be an Order object")),
        },
    };
    let (status, answer) = match answered {
        Ok(order) => (200, order),
        Err(refusal) => refusal,
    };
    let mut extra = Duration::ZERO;
    if call == OrderCall::Create && status == 200 {
        match api.order_side.knobs.take_lost() {
            Some(LostAnswer::Late(wait)) => extra = wait,
            Some(LostAnswer::GatewayTimeout) => {
                api.order_side.knobs.hold(call, Duration::ZERO);
                return Some((504, fault_answer(api, 504, None)));
            }
            None => {}
        }
    }
    api.order_side.knobs.hold(call, extra);
    reply(status, &answer)
}

fn fault_answer(api: &ToastApi, status: u16, retry_after: Option<String>) -> Response {
    api.fault_response(&Fault {
        status,
        remaining: Some(0),
        path_prefix: None,
        retry_after,
    })
}

/// One configuration list page: (status, body, next page token).
fn config(api: &mut ToastApi, path: &str, query: &str) -> (u16, Value, Option<String>) {
    let side = &mut api.order_side;
    let all: Vec<Value> = if path.ends_with("diningOptions") {
        side.dining
            .iter()
            .map(|(behavior, guid, name)| {
                json!({"guid": guid, "entityType": "DiningOption", "name": name,
                       "behavior": behavior, "curbside": false, "externalId": null})
            })
            .collect()
    } else {
        side.payment_types
            .iter()
            .map(|(guid, name)| {
                json!({"guid": guid, "entityType": "AlternatePaymentType", "name": name,
                       "externalId": null})
            })
            .collect()
    };
    let token = parse_query(query)
        .into_iter()
        .find(|(k, _)| k == "pageToken")
        .map(|(_, v)| v);
    let offset = match token {
        None => 0,
        Some(t) => match side.tokens.get(&t) {
            Some(offset) => *offset,
            None => return (400, toast_error(400, 10400, "Invalid pageToken"), None),
        },
    };
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(side.config_page)
        .cloned()
        .collect();
    let next = (offset + side.config_page < all.len()).then(|| {
        side.seq += 1;
        let token = format!("page-token-{}", side.seq);
        side.tokens.insert(token.clone(), offset + side.config_page);
        token
    });
    (200, Value::Array(page), next)
}

/// A Toast decimal amount (a JSON number) → cents, from its text.
fn cents(value: &Value) -> Option<i64> {
    let number = value.as_number()?;
    i64::try_from(decimal(&number.to_string(), 2)?).ok()
}

fn text<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The published menu item `guid` (searching nested groups), with the guid of its group.
fn menu_item<'a>(menus: &'a Value, guid: &str) -> Option<(&'a Value, String)> {
    fn walk<'a>(group: &'a Value, guid: &str) -> Option<(&'a Value, String)> {
        if let Some(item) = group["menuItems"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["guid"] == guid)
        {
            return Some((item, text(group, "guid").unwrap_or_default().to_owned()));
        }
        group["menuGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|g| walk(g, guid))
    }
    menus["menus"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["menuGroups"].as_array().into_iter().flatten())
        .find_map(|g| walk(g, guid))
}

/// Checks, prices and (when `store`) stores the order in `body`.
fn build(
    api: &mut ToastApi,
    restaurant: &str,
    body: &Value,
    store: bool,
) -> Result<Value, Refusal> {
    let side = &api.order_side;
    let Some(dining_guid) = body.pointer("/diningOption/guid").and_then(Value::as_str) else {
        return Err(bad("diningOption", "diningOption is required"));
    };
    let Some((behavior, _, _)) = side.dining.iter().find(|(_, g, _)| g == dining_guid) else {
        return Err(bad(
            "diningOption",
            &format!("Dining option {dining_guid} not found"),
        ));
    };
    let behavior = behavior.clone();
    let external_id = match body.get("externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(bad("externalId", "externalId must be a non-empty string")),
    };
    if store {
        if let Some(id) = &external_id {
            let taken = api
                .orders
                .iter()
                .any(|(r, o)| r == restaurant && o["externalId"] == id.as_str());
            if taken {
                let message = format!("An order with externalId {id} already exists");
                return Err(match side.duplicate {
                    DuplicateAnswer::Conflict => (409, toast_error(409, 10409, &message)),
                    DuplicateAnswer::BadRequest => bad("externalId", &message),
                });
            }
        }
    }
    let promised = match body.get("promisedDate") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(parse_toast_time)
                .ok_or_else(|| bad("promisedDate", "promisedDate must be an ISO-8601 date"))?,
        ),
    };
    if behavior == "DELIVERY" {
        let info = body.get("deliveryInfo").filter(|i| i.is_object());
        let Some(info) = info else {
            return Err(bad(
                "deliveryInfo",
                "deliveryInfo is required for DELIVERY orders",
            ));
        };
        for field in ["address1", "city", "state", "zipCode"] {
            if text(info, field).is_none() {
                return Err(bad(
                    &format!("deliveryInfo.{field}"),
                    &format!("deliveryInfo.{field} is required for DELIVERY orders"),
                ));
            }
        }
        // Toast's DeliveryInfo schema: the state's postal abbreviation, "two capital letters".
        let state = text(info, "state").unwrap_or_default();
        if state.len() != 2 || !state.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad(
                "deliveryInfo.state",
                "deliveryInfo.state must be the state's two-letter abbreviation in capitals",
            ));
        }
    }
    let checks = body["checks"].as_array().cloned().unwrap_or_default();
    if checks.is_empty() {
        return Err(bad("checks", "An order needs at least one check"));
    }
    let now = jiff::Timestamp::now();
    let at = toast_time(now);
    let tax_bp = side.tax_bp;
    let mut rendered_checks = Vec::new();
    let mut order_paid = true;
    for (c, check) in checks.iter().enumerate() {
        let path = format!("checks[{c}]");
        if behavior == "TAKE_OUT" || behavior == "DELIVERY" {
            for field in ["firstName", "lastName", "phone", "email"] {
                if check
                    .pointer(&format!("/customer/{field}"))
                    .and_then(Value::as_str)
                    .is_none_or(|v| v.trim().is_empty())
                {
                    return Err(bad(
                        &format!("{path}.customer.{field}"),
                        &format!("customer.{field} is required for {behavior} orders"),
                    ));
                }
            }
        }
        let selections = check["selections"].as_array().cloned().unwrap_or_default();
        if selections.is_empty() {
            return Err(bad(
                &format!("{path}.selections"),
                "A check needs at least one selection",
            ));
        }
        let (mut amount, mut tax) = (0i64, 0i64);
        let mut rendered = Vec::new();
        for (s, selection) in selections.iter().enumerate() {
            let spath = format!("{path}.selections[{s}]");
            let priced = price_selection(&api.menus, selection, &spath, tax_bp, &at)?;
            amount += priced.1;
            tax += priced.2;
            rendered.push(priced.0);
        }
        let total = amount + tax;
        let mut paid = 0i64;
        let mut payments = Vec::new();
        for (p, payment) in check["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let ppath = format!("{path}.payments[{p}]");
            if payment["type"] != "OTHER" {
                return Err(bad(
                    &format!("{ppath}.type"),
                    "Only OTHER payments can be recorded through the orders API",
                ));
            }
            let guid = payment
                .pointer("/otherPayment/guid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !api.order_side.payment_types.iter().any(|(g, _)| g == guid) {
                return Err(bad(
                    &format!("{ppath}.otherPayment"),
                    &format!("Alternate payment type {guid:?} not found"),
                ));
            }
            let amount = payment.get("amount").and_then(cents).ok_or_else(|| {
                bad(
                    &format!("{ppath}.amount"),
                    "amount is required, a non-negative decimal",
                )
            })?;
            let tip = match payment.get("tipAmount") {
                None | Some(Value::Null) => 0,
                Some(v) => cents(v).ok_or_else(|| {
                    bad(
                        &format!("{ppath}.tipAmount"),
                        "tipAmount must be a non-negative decimal",
                    )
                })?,
            };
            paid += amount;
            payments.push(json!({
                "guid": uuid_like(&mut api.order_side.seq),
                "entityType": "OrderPayment", "type": "OTHER",
                "otherPayment": {"guid": guid, "entityType": "AlternatePaymentType"},
                "amount": dollars(amount), "tipAmount": dollars(tip),
                "amountTendered": dollars(amount + tip), "paymentStatus": "CAPTURED",
                "paidDate": at, "paidBusinessDate": business_date(now),
                "refundStatus": "NONE", "refund": null, "voidInfo": null,
            }));
        }
        let status = if paid >= total && !payments.is_empty() {
            "PAID"
        } else {
            "OPEN"
        };
        order_paid &= status == "PAID";
        let side = &mut api.order_side;
        rendered_checks.push(json!({
            "guid": uuid_like(&mut side.seq), "entityType": "Check",
            "displayNumber": (c + 1).to_string(), "openedDate": at, "modifiedDate": at,
            "closedDate": null, "paidDate": if status == "PAID" { json!(at) } else { Value::Null },
            "amount": dollars(amount), "taxAmount": dollars(tax), "totalAmount": dollars(total),
            "paymentStatus": status, "voided": false, "deleted": false,
            "customer": check.get("customer").cloned().unwrap_or(Value::Null),
            "selections": rendered, "appliedDiscounts": [], "payments": payments,
        }));
    }
    let side = &mut api.order_side;
    let approval = if promised.is_some_and(|p| p > now + jiff::SignedDuration::from_mins(30)) {
        "FUTURE".to_owned()
    } else {
        side.approval.clone()
    };
    let guid = if store {
        json!(uuid_like(&mut side.seq))
    } else {
        Value::Null
    };
    let estimated = promised.unwrap_or(now + jiff::SignedDuration::from_mins(20));
    let order = json!({
        "guid": guid, "entityType": "Order", "externalId": external_id,
        "displayNumber": side.seq.to_string(), "source": "API",
        "openedDate": at, "createdDate": at, "modifiedDate": at,
        "promisedDate": promised.map(toast_time), "estimatedFulfillmentDate": toast_time(estimated),
        "closedDate": null, "paidDate": if order_paid { json!(at) } else { Value::Null },
        "businessDate": business_date(now), "voided": false, "voidDate": null,
        "deleted": false, "deletedDate": null, "approvalStatus": approval,
        "numberOfGuests": body.get("numberOfGuests").cloned().unwrap_or(json!(1)),
        "diningOption": {"guid": dining_guid, "entityType": "DiningOption"},
        "deliveryInfo": body.get("deliveryInfo").cloned().unwrap_or(Value::Null),
        "restaurantService": null, "revenueCenter": null,
        "checks": rendered_checks,
    });
    if store {
        side.created
            .push(order["guid"].as_str().unwrap_or_default().to_owned());
        api.orders.push((restaurant.to_owned(), order.clone()));
    }
    Ok(order)
}

fn business_date(at: jiff::Timestamp) -> i64 {
    at.strftime("%Y%m%d")
        .to_string()
        .parse()
        .unwrap_or(20261120)
}

/// A fresh guid-shaped id (random, with a sequence number so none repeat).
fn uuid_like(seq: &mut u64) -> String {
    *seq += 1;
    let r = crate::random_suffix(20);
    format!(
        "{}-{}-4{}-8{}-{:012x}",
        &r[0..8],
        &r[8..12],
        &r[12..15],
        &r[15..18],
        *seq
    )
}

/// One selection checked against the menu and priced: (rendered, price, tax).
fn price_selection(
    menus: &Value,
    selection: &Value,
    path: &str,
    tax_bp: i64,
    at: &str,
) -> Result<(Value, i64, i64), Refusal> {
    let Some(guid) = selection.pointer("/item/guid").and_then(Value::as_str) else {
        return Err(bad(&format!("{path}.item"), "item.guid is required"));
    };
    let Some((item, group_guid)) = menu_item(menus, guid) else {
        return Err(bad(
            &format!("{path}.item"),
            &format!("Menu item {guid} not found"),
        ));
    };
    if let Some(group) = selection.pointer("/itemGroup/guid").and_then(Value::as_str) {
        if group != group_guid {
            return Err(bad(
                &format!("{path}.itemGroup"),
                &format!("Menu item {guid} is not in menu group {group}"),
            ));
        }
    }
    let qty = selection
        .get("quantity")
        .and_then(Value::as_number)
        .and_then(|n| decimal(&n.to_string(), 4))
        .filter(|q| *q > 0)
        .ok_or_else(|| {
            bad(
                &format!("{path}.quantity"),
                "quantity must be a positive number",
            )
        })?;
    let Some(unit) = item.get("price").and_then(cents) else {
        return Err(bad(
            &format!("{path}.item"),
            &format!(
                "Menu item {guid} has no fixed price ({})",
                item["pricingStrategy"]
            ),
        ));
    };
    let groups: Vec<&Value> = item["modifierGroupReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| menus["modifierGroupReferences"].get(r.to_string()))
        .collect();
    let option_of =
        |reference: &Value| menus["modifierOptionReferences"].get(reference.to_string());
    let mut counts = vec![0i64; groups.len()];
    let mut modifiers_each = 0i64;
    let mut rendered_mods = Vec::new();
    for (m, modifier) in selection["modifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mpath = format!("{path}.modifiers[{m}]");
        let mguid = modifier
            .pointer("/item/guid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let found = groups.iter().enumerate().find_map(|(g, group)| {
            group["modifierOptionReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(option_of)
                .find(|o| o["guid"] == mguid)
                .map(|o| (g, o))
        });
        let Some((g, option)) = found else {
            return Err(bad(
                &format!("{mpath}.item"),
                &format!("{mguid:?} is not a modifier option of menu item {guid}"),
            ));
        };
        if let Some(og) = modifier
            .pointer("/optionGroup/guid")
            .and_then(Value::as_str)
        {
            if groups[g]["guid"] != og {
                return Err(bad(
                    &format!("{mpath}.optionGroup"),
                    &format!("Modifier {mguid} is not in option group {og}"),
                ));
            }
        }
        let mqty = match modifier.get("quantity") {
            None | Some(Value::Null) => 10_000,
            Some(q) => q
                .as_number()
                .and_then(|n| decimal(&n.to_string(), 4))
                .filter(|q| *q > 0)
                .ok_or_else(|| {
                    bad(
                        &format!("{mpath}.quantity"),
                        "quantity must be a positive number",
                    )
                })?,
        };
        counts[g] += 1;
        let price = option.get("price").and_then(cents).unwrap_or(0);
        let each = times(price, mqty, 4);
        modifiers_each += each;
        rendered_mods.push(json!({
            "guid": format!("{}-{m}", mguid), "entityType": "MenuItemSelection",
            "item": {"guid": mguid, "entityType": "MenuItem"},
            "optionGroup": {"guid": groups[g]["guid"], "entityType": "MenuOptionGroup"},
            "displayName": option["name"], "quantity": modifier.get("quantity").cloned().unwrap_or(json!(1)),
            "price": dollars(times(each, qty, 4)), "preDiscountPrice": dollars(times(each, qty, 4)),
            "voided": false, "fulfillmentStatus": "NEW", "modifiers": [],
        }));
    }
    for (g, group) in groups.iter().enumerate() {
        let required = group["requiredMode"] == "REQUIRED";
        let min = group["minSelections"]
            .as_i64()
            .unwrap_or(0)
            .max(i64::from(required));
        let max = group["maxSelections"].as_i64().unwrap_or(0);
        let name = group["name"].as_str().unwrap_or_default();
        if counts[g] < min {
            return Err(bad(
                &format!("{path}.modifiers"),
                &format!(
                    "Modifier group {name:?} ({}) requires at least {min} selection(s)",
                    group["guid"].as_str().unwrap_or_default()
                ),
            ));
        }
        if max > 0 && counts[g] > max {
            return Err(bad(
                &format!("{path}.modifiers"),
                &format!("Modifier group {name:?} allows at most {max} selection(s)"),
            ));
        }
    }
    let price = times(unit + modifiers_each, qty, 4);
    let tax = times(price, i128::from(tax_bp), 4);
    let mut rendered = Map::new();
    for (k, v) in [
        ("guid", json!(format!("{guid}-{}", crate::random_suffix(8)))),
        ("entityType", json!("MenuItemSelection")),
        ("item", json!({"guid": guid, "entityType": "MenuItem"})),
        (
            "itemGroup",
            json!({"guid": group_guid, "entityType": "MenuGroup"}),
        ),
        ("displayName", item["name"].clone()),
        ("quantity", selection["quantity"].clone()),
        ("unitOfMeasure", json!("NONE")),
        ("receiptLinePrice", dollars(unit + modifiers_each)),
        ("preDiscountPrice", dollars(price)),
        ("price", dollars(price)),
        ("tax", dollars(tax)),
        ("fulfillmentStatus", json!("NEW")),
        ("voided", json!(false)),
        ("createdDate", json!(at)),
        ("modifiedDate", json!(at)),
        ("modifiers", Value::Array(rendered_mods)),
        ("appliedDiscounts", json!([])),
    ] {
        rendered.insert(k.into(), v);
    }
    Ok((Value::Object(rendered), price, tax))
}

impl ToastApi {
    /// Changes order `guid` as staff on the POS would and stamps a `modifiedDate` strictly
    /// later than its last; `None` for an unknown order.
    fn change_order(&mut self, guid: &str, change: impl FnOnce(&mut Value)) -> Option<Value> {
        let (_, order) = self.orders.iter_mut().find(|(_, o)| o["guid"] == guid)?;
        change(order);
        // Milliseconds, as Toast writes them, so "later" survives the formatting.
        let now = jiff::Timestamp::now();
        let now = jiff::Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        let last = order["modifiedDate"].as_str().and_then(parse_toast_time);
        let at = match last {
            Some(l) if now <= l => l + jiff::SignedDuration::from_millis(1),
            _ => now,
        };
        order["modifiedDate"] = json!(toast_time(at));
        Some(order.clone())
    }
}

impl Mock<ToastApi> {
    /// Every order created through `POST /orders/v2/orders`, as stored now (refused
    /// duplicates add none): for exactly-once assertions.
    pub fn orders_created(&self) -> Vec<Value> {
        self.with(|api| {
            api.order_side
                .created
                .iter()
                .filter_map(|g| api.orders.iter().find(|(_, o)| o["guid"] == g.as_str()))
                .map(|(_, o)| o.clone())
                .collect()
        })
    }

    /// The orders (of any restaurant) whose `externalId` is `external_id` (our order id).
    pub fn orders_with_external_id(&self, external_id: &str) -> Vec<Value> {
        self.with(|api| {
            api.orders
                .iter()
                .filter(|(_, o)| o["externalId"] == external_id)
                .map(|(_, o)| o.clone())
                .collect()
        })
    }

    /// The order with guid `guid`, as stored now.
    pub fn order(&self, guid: &str) -> Option<Value> {
        self.with(|api| {
            api.orders
                .iter()
                .find(|(_, o)| o["guid"] == guid)
                .map(|(_, o)| o.clone())
        })
    }

    /// A manager approves or declines the order on the POS: `approvalStatus` becomes
    /// `status` (APPROVED, NOT_APPROVED, NEEDS_APPROVAL, FUTURE). Answers the order for
    /// [`crate::mock_toast::toast_order_webhook`].
    pub fn set_approval(&self, guid: &str, status: &str) -> Option<Value> {
        self.with(|api| api.change_order(guid, |o| o["approvalStatus"] = json!(status)))
    }

    /// The kitchen moves every live selection to `status` (NEW, HOLD, SENT, READY).
    pub fn set_fulfillment_status(&self, guid: &str, status: &str) -> Option<Value> {
        self.with(|api| {
            api.change_order(guid, |o| {
                for check in o["checks"].as_array_mut().into_iter().flatten() {
                    for s in check["selections"].as_array_mut().into_iter().flatten() {
                        if s["voided"] != true {
                            s["fulfillmentStatus"] = json!(status);
                        }
                    }
                }
            })
        })
    }

    /// Staff void the order (a cancellation): `voided` with its `voidDate`.
    pub fn void_order(&self, guid: &str) -> Option<Value> {
        self.with(|api| {
            api.change_order(guid, |o| {
                o["voided"] = json!(true);
                o["voidDate"] = json!(toast_time(jiff::Timestamp::now()));
            })
        })
    }

    /// Staff close the order's checks (the order is done): every check CLOSED.
    pub fn close_order(&self, guid: &str) -> Option<Value> {
        self.with(|api| {
            api.change_order(guid, |o| {
                let at = json!(toast_time(jiff::Timestamp::now()));
                for check in o["checks"].as_array_mut().into_iter().flatten() {
                    check["paymentStatus"] = json!("CLOSED");
                    check["closedDate"] = at.clone();
                }
                o["closedDate"] = at;
            })
        })
    }

    /// The `approvalStatus` new orders get unless scheduled ahead (default APPROVED; a
    /// restaurant that approves online orders by hand answers NEEDS_APPROVAL).
    pub fn set_approval_on_create(&self, status: &str) {
        self.with(|api| api.order_side.approval = status.to_owned());
    }

    /// How a duplicate `externalId` is refused (see [`DuplicateAnswer`]).
    pub fn set_duplicate_answer(&self, answer: DuplicateAnswer) {
        self.with(|api| api.order_side.duplicate = answer);
    }

    /// Tax on every selection, in basis points (825 = 8.25 %; default none).
    pub fn set_tax_rate(&self, basis_points: i64) {
        self.with(|api| api.order_side.tax_bp = basis_points);
    }

    /// Replaces the restaurant's dining options: `(behavior, guid, name)`, behavior
    /// TAKE_OUT, DELIVERY or DINE_IN.
    pub fn set_dining_options(&self, options: &[(&str, &str, &str)]) {
        self.with(|api| {
            api.order_side.dining = options
                .iter()
                .map(|(b, g, n)| ((*b).to_owned(), (*g).to_owned(), (*n).to_owned()))
                .collect();
        });
    }

    /// Replaces the restaurant's alternate payment types: `(guid, name)`.
    pub fn set_payment_types(&self, types: &[(&str, &str)]) {
        self.with(|api| {
            api.order_side.payment_types = types
                .iter()
                .map(|(g, n)| ((*g).to_owned(), (*n).to_owned()))
                .collect();
        });
    }

    /// Entries per configuration list page (default 100), to exercise page tokens.
    pub fn set_config_page_size(&self, size: usize) {
        self.with(|api| api.order_side.config_page = size.max(1));
    }
}

#[cfg(test)]
mod tests;
