//! Orders into Toast: price (`POST /orders/v2/prices`), create (`POST /orders/v2/orders`),
//! read (`GET /orders/v2/orders/{guid}`) and find by our order id (`externalId`).
//!
//! Toast has no idempotency header: the order's `externalId` (our order id) must be unique
//! and a duplicate is refused, and a POST can take up to 30 s and land although its answer
//! timed out. So the host looks the order up before any resubmit, and a submit refused as a
//! duplicate answers the order that already exists.
//!
//! Where the dining option and the payment type come from: the restaurant's configuration
//! (`GET /config/v2/diningOptions` by `behavior`, `GET /config/v2/alternatePaymentTypes`),
//! read once an hour and kept in plugin state, because they are per-restaurant GUIDs an
//! operator should not have to copy by hand. A restaurant with several options of one
//! behavior (two TAKE_OUT options, several alternate payment types) picks one in the connect
//! form's optional fields (`takeout_dining_option`, `delivery_dining_option`,
//! `dine_in_dining_option`, `payment_type`), which always win.

use std::str::FromStr;

use posbridge_sdk::errors::NotFound;
use posbridge_sdk::http::{encode_component, Request};
use posbridge_sdk::money;
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{json, Map, Number, Value};
use posbridge_sdk::{clock, state, time};

use crate::guest::{guest, Guest};
use crate::{field, flag, is, live, saved_currency, text, Api};

/// Toast answers order writes in up to 30 s; the host's default would give up at 10 s.
const ORDER_TIMEOUT_MS: u32 = 30_000;
/// State key of the restaurant configuration read from the configuration API.
const CONFIG_KEY: &str = "config";
/// How long that configuration is reused.
const CONFIG_TTL_MS: i64 = 60 * 60 * 1000;
/// Pages of the configuration lists read at most.
const CONFIG_MAX_PAGES: usize = 10;
/// How far back a look-up by `externalId` searches (orders modified in that window), and
/// how far when a submit was refused as a duplicate (the order exists: search wider).
const LOOKUP_WINDOW_MS: i64 = 48 * 3600 * 1000;
const DUPLICATE_WINDOW_MS: i64 = 14 * 24 * 3600 * 1000;
const LOOKUP_PAGE_SIZE: usize = 100;
const LOOKUP_MAX_PAGES: usize = 50;

/// The restaurant's dining options by behavior and its alternate payment types.
#[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
pub(crate) struct Config {
    /// (behavior, guid, name) of each dining option.
    dining: Vec<(String, String, String)>,
    /// (guid, name) of each alternate ("OTHER") payment type.
    payment_types: Vec<(String, String)>,
    at_ms: i64,
}

/// Every page of a configuration list (`pageToken` / `Toast-Next-Page-Token`).
fn config_list(api: &Api, path: &str) -> Result<Vec<Value>, ProviderError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..CONFIG_MAX_PAGES {
        let url = match &token {
            Some(t) => format!("{}?pageToken={}", api.url(path), encode_component(t)),
            None => api.url(path),
        };
        let response = api.call(|| Request::get(&url), NotFound::Upstream)?;
        let page: Vec<Value> = response.json_or_upstream()?;
        out.extend(page);
        token = response
            .header("toast-next-page-token")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

fn config(api: &Api) -> Result<Config, ProviderError> {
    let now = clock::now();
    if let Ok(Some(cached)) = state::get_json::<Config>(CONFIG_KEY) {
        if now.saturating_sub(cached.at_ms) < CONFIG_TTL_MS {
            return Ok(cached);
        }
    }
    let dining = config_list(api, "/config/v2/diningOptions")?
        .iter()
        .filter_map(|o| {
            Some((
                text(o, "behavior")?,
                text(o, "guid")?,
                text(o, "name").unwrap_or_default(),
            ))
        })
        .collect();
    let payment_types = config_list(api, "/config/v2/alternatePaymentTypes")?
        .iter()
        .filter_map(|o| Some((text(o, "guid")?, text(o, "name").unwrap_or_default())))
        .collect();
    let config = Config {
        dining,
        payment_types,
        at_ms: now,
    };
    if let Err(e) = state::set_json(CONFIG_KEY, &config) {
        posbridge_sdk::warn!("could not keep the Toast configuration: {e}");
    }
    Ok(config)
}

fn setting(conn: &Connection, name: &str) -> Option<String> {
    conn.credential(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn unconfigured(message: String, field: &str) -> ProviderError {
    ProviderError::rejected(
        None,
        Some("NOT_CONFIGURED".into()),
        message,
        Some(field.into()),
    )
}

/// The dining option guid for `kind`: the connect form's choice, else the restaurant's one
/// option of that behavior (the first, with a warning, when it has several).
fn dining_option(
    conn: &Connection,
    api: &Api,
    kind: FulfilmentKind,
) -> Result<String, ProviderError> {
    let (setting_name, behavior) = match kind {
        FulfilmentKind::Pickup => ("takeout_dining_option", "TAKE_OUT"),
        FulfilmentKind::Delivery => ("delivery_dining_option", "DELIVERY"),
        FulfilmentKind::DineIn => ("dine_in_dining_option", "DINE_IN"),
    };
    if let Some(guid) = setting(conn, setting_name) {
        return Ok(guid);
    }
    let config = config(api)?;
    let matching: Vec<_> = config
        .dining
        .iter()
        .filter(|(b, _, _)| b == behavior)
        .collect();
    match matching.as_slice() {
        [] => Err(unconfigured(
            format!("the restaurant has no {behavior} dining option in Toast: add one, or set `{setting_name}`"),
            setting_name,
        )),
        [(_, guid, _)] => Ok(guid.clone()),
        [(_, guid, name), ..] => {
            posbridge_sdk::warn!(
                "the restaurant has {} {behavior} dining options; using {name:?} ({guid}): set `{setting_name}` to choose",
                matching.len()
            );
            Ok(guid.clone())
        }
    }
}

/// The alternate payment type for a prepaid order: the connect form's choice, else the one
/// named like the payment's source, else the restaurant's only one.
fn payment_type(conn: &Connection, api: &Api, source: &str) -> Result<String, ProviderError> {
    if let Some(guid) = setting(conn, "payment_type") {
        return Ok(guid);
    }
    let config = config(api)?;
    if let Some((guid, _)) = config
        .payment_types
        .iter()
        .find(|(_, name)| !source.is_empty() && name.trim().eq_ignore_ascii_case(source.trim()))
    {
        return Ok(guid.clone());
    }
    match config.payment_types.as_slice() {
        [(guid, _)] => Ok(guid.clone()),
        [] => Err(unconfigured(
            "the restaurant has no alternate payment type in Toast to record a prepaid order with: add one (for example \"Online\"), or set `payment_type`".into(),
            "payment_type",
        )),
        _ => Err(unconfigured(
            format!(
                "the restaurant has {} alternate payment types and none is named {source:?}: set `payment_type` to the one for prepaid orders",
                config.payment_types.len()
            ),
            "payment_type",
        )),
    }
}

/// Exact decimal text → a JSON number with that text (never through `f64`).
fn decimal(text: &str) -> Option<Number> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (!text.contains('.') || !frac.is_empty());
    ok.then(|| Number::from_str(text).ok()).flatten()
}

/// Minor units → Toast's decimal amount, exactly.
fn amount(minor: i64, currency: &str) -> Value {
    let text = money::format_minor(minor, currency);
    Number::from_str(&text).map_or(Value::Null, Value::Number)
}

fn reject(field: String, message: String) -> ProviderError {
    ProviderError::rejected(None, Some("INVALID_ORDER".into()), message, Some(field))
}

/// What Toast would refuse anyway, before anything is sent (so before the configuration is
/// read or a token fetched); the guest's part of the order when it passes.
fn check_order(order: &Order) -> Result<Guest, ProviderError> {
    if order.our_order_id.trim().is_empty() {
        return Err(reject(
            "our-order-id".into(),
            "our order id is empty".into(),
        ));
    }
    if order.lines.is_empty() {
        return Err(reject(
            "lines".into(),
            "an order needs at least one line".into(),
        ));
    }
    for (i, line) in order.lines.iter().enumerate() {
        if line.item_id.as_deref().is_none_or(str::is_empty) {
            return Err(reject(
                format!("lines[{i}].item-id"),
                format!(
                    "line {:?}: Toast takes only menu items (no menu item guid)",
                    line.line_id
                ),
            ));
        }
        let positive = decimal(&line.quantity).is_some()
            && line.quantity.bytes().any(|b| (b'1'..=b'9').contains(&b));
        if !positive {
            return Err(reject(
                format!("lines[{i}].quantity"),
                format!(
                    "line {:?}: quantity {:?} is not a positive decimal",
                    line.line_id, line.quantity
                ),
            ));
        }
        for (j, m) in line.modifiers.iter().enumerate() {
            if m.provider_id.as_deref().is_none_or(str::is_empty) {
                return Err(reject(
                    format!("lines[{i}].modifiers[{j}]"),
                    format!(
                        "line {:?}: modifier {:?} has no Toast modifier guid",
                        line.line_id, m.name
                    ),
                ));
            }
        }
    }
    guest(&order.fulfilment)
}

fn reference(guid: &str, entity: &str) -> Value {
    json!({ "guid": guid, "entityType": entity })
}

/// The Toast order body for `order` (without payments unless `payment_type` is given), with
/// the guest `check_order` answered for it.
pub(crate) fn order_body(
    order: &Order,
    guest: &Guest,
    dining_option: &str,
    payment_type: Option<&str>,
) -> Value {
    let currency = order.currency.to_ascii_uppercase();
    let selections: Vec<Value> = order
        .lines
        .iter()
        .map(|line| {
            let mut selection = Map::new();
            selection.insert("entityType".into(), json!("MenuItemSelection"));
            if let Some(item) = &line.item_id {
                selection.insert("item".into(), reference(item, "MenuItem"));
            }
            if let Some(group) = &line.item_group_id {
                selection.insert("itemGroup".into(), reference(group, "MenuGroup"));
            }
            if let Some(q) = decimal(&line.quantity) {
                selection.insert("quantity".into(), Value::Number(q));
            }
            let modifiers: Vec<Value> = line
                .modifiers
                .iter()
                .filter_map(|m| {
                    let mut modifier = Map::new();
                    modifier.insert("entityType".into(), json!("MenuItemSelection"));
                    modifier.insert(
                        "item".into(),
                        reference(m.provider_id.as_deref()?, "MenuItem"),
                    );
                    if let Some(group) = &m.group_id {
                        modifier.insert("optionGroup".into(), reference(group, "MenuOptionGroup"));
                    }
                    modifier.insert("quantity".into(), json!(m.quantity));
                    Some(Value::Object(modifier))
                })
                .collect();
            selection.insert("modifiers".into(), Value::Array(modifiers));
            Value::Object(selection)
        })
        .collect();
    let f = &order.fulfilment;
    let mut check = Map::new();
    check.insert("entityType".into(), json!("Check"));
    if let Some(customer) = &guest.customer {
        check.insert("customer".into(), customer.clone());
    }
    check.insert("selections".into(), Value::Array(selections));
    if let (Some(payment), Some(guid)) = (&order.payment, payment_type) {
        check.insert(
            "payments".into(),
            json!([{
                "type": "OTHER",
                "otherPayment": reference(guid, "AlternatePaymentType"),
                "amount": amount(payment.amount, &currency),
                "tipAmount": amount(payment.tip, &currency),
            }]),
        );
    }
    let mut body = Map::new();
    body.insert("entityType".into(), json!("Order"));
    body.insert("externalId".into(), json!(order.our_order_id));
    body.insert(
        "diningOption".into(),
        reference(dining_option, "DiningOption"),
    );
    body.insert(
        "promisedDate".into(),
        f.scheduled_at
            .map_or(Value::Null, |at| json!(time::format_toast(at))),
    );
    body.insert("checks".into(), json!([Value::Object(check)]));
    if let Some(info) = &guest.delivery {
        body.insert("deliveryInfo".into(), info.clone());
    }
    Value::Object(body)
}

/// The live selections' fulfillment statuses, aggregated: all READY → READY; any SENT or
/// READY → SENT; else the first (NEW, HOLD).
fn fulfillment(order: &Value) -> Option<String> {
    let statuses: Vec<String> = order
        .get("checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| live(c))
        .flat_map(|c| {
            c.get("selections")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|s| !flag(s, "voided"))
        .filter_map(|s| text(s, "fulfillmentStatus"))
        .collect();
    if statuses.is_empty() {
        None
    } else if statuses.iter().all(|s| s == "READY") {
        Some("READY".into())
    } else if statuses.iter().any(|s| s == "SENT" || s == "READY") {
        Some("SENT".into())
    } else {
        statuses.into_iter().next()
    }
}

/// A Toast order (JSON) → its status in posbridge's words.
///
/// voided or deleted → canceled; approvalStatus NOT_APPROVED → rejected, NEEDS_APPROVAL →
/// pending; closed (every live check CLOSED) → completed; otherwise the selections'
/// fulfillment: all READY → ready, any SENT → in-progress, else accepted (APPROVED or FUTURE,
/// not yet fired). Its version is `modifiedDate` in epoch milliseconds.
pub(crate) fn order_status(order: &Value) -> Result<OrderStatus, ProviderError> {
    let guid = text(order, "guid")
        .ok_or_else(|| ProviderError::upstream("Toast answered an order without a guid"))?;
    let approval = text(order, "approvalStatus");
    let fulfilled = fulfillment(order);
    let checks: Vec<&Value> = order
        .get("checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| live(c))
        .collect();
    let closed = !checks.is_empty() && checks.iter().all(|c| is(c, "paymentStatus", "CLOSED"));
    let state = if flag(order, "voided") || flag(order, "deleted") {
        OrderState::Canceled
    } else {
        match approval.as_deref() {
            Some("NOT_APPROVED") => OrderState::Rejected,
            Some("NEEDS_APPROVAL") => OrderState::Pending,
            _ if closed => OrderState::Completed,
            _ => match fulfilled.as_deref() {
                Some("READY") => OrderState::Ready,
                Some("SENT") => OrderState::InProgress,
                _ => OrderState::Accepted,
            },
        }
    };
    let mut provider_state = approval.unwrap_or_else(|| "UNKNOWN".into());
    if let Some(f) = &fulfilled {
        provider_state = format!("{provider_state}/{f}");
    }
    if flag(order, "voided") {
        provider_state.push_str(" (voided)");
    }
    if flag(order, "deleted") {
        provider_state.push_str(" (deleted)");
    }
    let parse = |name: &str| {
        field(order, name)
            .and_then(Value::as_str)
            .and_then(|t| time::parse_timestamp(t).ok())
    };
    let currency = saved_currency();
    let total = checks.iter().try_fold(0i64, |sum, c| {
        let v = field(c, "totalAmount")?;
        sum.checked_add(money::value_to_minor(v, &currency).ok()?)
    });
    let modified = parse("modifiedDate");
    Ok(OrderStatus {
        provider_order_id: guid,
        our_order_id: text(order, "externalId"),
        state,
        provider_state,
        version: modified,
        updated_at: modified,
        ready_at: parse("estimatedFulfillmentDate"),
        total: total.filter(|_| !checks.is_empty()),
    })
}

/// A refusal that means "an order with this externalId exists". Toast's exact answer is not
/// documented: a 409, or a 400 whose message names the externalId as taken.
fn is_duplicate(error: &ProviderError) -> bool {
    match error {
        ProviderError::Conflict(_) => true,
        ProviderError::Rejected(r) => {
            let m = r.message.to_ascii_lowercase();
            let about_external_id = m.contains("externalid")
                || m.contains("external id")
                || r.field
                    .as_deref()
                    .is_some_and(|f| f.eq_ignore_ascii_case("externalId"));
            about_external_id
                && (m.contains("duplicate")
                    || m.contains("already")
                    || m.contains("exist")
                    || m.contains("unique"))
        }
        _ => false,
    }
}

pub(crate) fn submit(conn: &Connection, order: &Order) -> Result<OrderStatus, ProviderError> {
    let guest = check_order(order)?;
    let api = Api::new(conn);
    let dining = dining_option(conn, &api, order.fulfilment.kind)?;
    let payment = match &order.payment {
        Some(p) => Some(payment_type(conn, &api, &p.source)?),
        None => None,
    };
    let body = order_body(order, &guest, &dining, payment.as_deref());
    let url = api.url("/orders/v2/orders");
    let created = api.call(
        || Request::post(&url).json(&body).timeout_ms(ORDER_TIMEOUT_MS),
        NotFound::Upstream,
    );
    match created {
        Ok(response) => {
            let created: Value = response.json_or_upstream()?;
            order_status(&created)
        }
        Err(error) if is_duplicate(&error) => {
            posbridge_sdk::info!(
                "Toast already has an order with externalId {}: answering it",
                order.our_order_id
            );
            match find(&api, &order.our_order_id, DUPLICATE_WINDOW_MS)? {
                Some(existing) => Ok(existing),
                None => Err(ProviderError::conflict(format!(
                    "Toast refused order {} as a duplicate but no order with that externalId was found: {}",
                    order.our_order_id,
                    error.message()
                ))),
            }
        }
        Err(error) => Err(error),
    }
}

pub(crate) fn lookup(
    conn: &Connection,
    our_order_id: &str,
) -> Result<Option<OrderStatus>, ProviderError> {
    if our_order_id.trim().is_empty() {
        return Ok(None);
    }
    find(&Api::new(conn), our_order_id, LOOKUP_WINDOW_MS)
}

/// The order whose `externalId` is ours, among those modified in the last `window_ms`.
///
/// Assumed, and kept in this one function: Toast's documented way to read orders is
/// `ordersBulk` by modified date (whether the orders API also looks one up by `externalId`
/// directly is not confirmed), so this pages through the window's orders (newest changes
/// included: a just-created order is modified now) and matches `externalId`.
fn find(
    api: &Api,
    external_id: &str,
    window_ms: i64,
) -> Result<Option<OrderStatus>, ProviderError> {
    let now = clock::now();
    let query = posbridge_sdk::http::encode_query([
        ("startDate", time::format_toast(now - window_ms)),
        // A minute ahead: the order may carry Toast's clock, slightly ahead of ours.
        ("endDate", time::format_toast(now + 60_000)),
        ("pageSize", LOOKUP_PAGE_SIZE.to_string()),
        ("page", "1".to_owned()),
    ]);
    let mut url = format!("{}?{query}", api.url("/orders/v2/ordersBulk"));
    for _ in 0..LOOKUP_MAX_PAGES {
        let response = api.call(|| Request::get(&url), NotFound::Upstream)?;
        let orders: Vec<Value> = response.json_or_upstream()?;
        if let Some(found) = orders
            .iter()
            .find(|o| text(o, "externalId").as_deref() == Some(external_id))
        {
            return order_status(found).map(Some);
        }
        if orders.len() < LOOKUP_PAGE_SIZE {
            return Ok(None);
        }
        match crate::links::next(&response.headers, &url) {
            Some(next) => url = next,
            None => return Ok(None),
        }
    }
    posbridge_sdk::warn!("order {external_id}: not in the first {LOOKUP_MAX_PAGES} pages of Toast orders; answering not found");
    Ok(None)
}

pub(crate) fn get_status(conn: &Connection, guid: &str) -> Result<OrderStatus, ProviderError> {
    let api = Api::new(conn);
    let url = api.url(&format!("/orders/v2/orders/{}", encode_component(guid)));
    let response = api.call_raw(&|| Request::get(&url))?;
    if response.status == 404 {
        return Err(ProviderError::rejected(
            Some(404),
            Some("NOT_FOUND".into()),
            format!("Toast has no order {guid}"),
            Some("provider-order-id".into()),
        ));
    }
    let response = crate::finish(response, NotFound::Upstream)?;
    let order: Value = response.json_or_upstream()?;
    order_status(&order)
}

/// Has Toast price the order (`POST /orders/v2/prices`), nothing stored. Line totals come
/// back in the order the selections were sent.
pub(crate) fn price(conn: &Connection, order: &Order) -> Result<PricedOrder, ProviderError> {
    let guest = check_order(order)?;
    let api = Api::new(conn);
    let dining = dining_option(conn, &api, order.fulfilment.kind)?;
    let body = order_body(order, &guest, &dining, None);
    let url = api.url("/orders/v2/prices");
    let response = api.call(
        || Request::post(&url).json(&body).timeout_ms(ORDER_TIMEOUT_MS),
        NotFound::Upstream,
    )?;
    let priced: Value = response.json_or_upstream()?;
    let currency = order.currency.to_ascii_uppercase();
    let minor = |v: Option<&Value>| -> Result<i64, ProviderError> {
        match v {
            None => Ok(0),
            Some(v) => money::value_to_minor(v, &currency)
                .map_err(|e| ProviderError::upstream(format!("Toast price: {e}"))),
        }
    };
    let checks: Vec<&Value> = priced
        .get("checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if checks.is_empty() {
        return Err(ProviderError::upstream(
            "Toast priced the order without a check",
        ));
    }
    let (mut total, mut tax, mut net) = (0i64, 0i64, 0i64);
    let mut subtotal = 0i64;
    let mut lines = Vec::new();
    let mut ours = order.lines.iter();
    for check in &checks {
        // Saturating: amounts come from upstream, and an absurd one must not panic.
        total = total.saturating_add(minor(field(check, "totalAmount"))?);
        tax = tax.saturating_add(minor(field(check, "taxAmount"))?);
        net = net.saturating_add(minor(field(check, "amount"))?);
        for selection in check
            .get("selections")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let line_total = minor(field(selection, "price"))?;
            let before = match field(selection, "preDiscountPrice") {
                Some(v) => minor(Some(v))?,
                None => line_total,
            };
            subtotal = subtotal.saturating_add(before);
            if let Some(line) = ours.next() {
                lines.push((line.line_id.clone(), line_total));
            }
        }
    }
    Ok(PricedOrder {
        currency,
        subtotal,
        tax,
        discount: subtotal.saturating_sub(net).max(0),
        total,
        lines,
    })
}
