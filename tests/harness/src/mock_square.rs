//! A local mock of Square's API (`/v2/locations/{id}`, `GET /v2/payments`, the catalog, and
//! orders and external payments in [`crate::mock_square_orders`]), answering as Square's
//! published API documents it: Bearer-token auth, Square's error
//! envelope `{"errors":[{"category","code","detail"}]}`, opaque `cursor` paging with
//! `limit` ≤ 100, the `created_at` and `updated_at` filters and sorts, and `location_id`.
//!
//! The test owns the mock's state: it sets locations and payments, injects faults (429
//! `RATE_LIMITED` without `Retry-After`, 5xx, 403 for the next N requests or for all of
//! them) and reads the request log (method, path, query, headers, answered status); the
//! server, the log and the faults are [`crate::mock`]'s.

use std::collections::HashMap;

use axum::http::Method;
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use crate::mock::{hmac_sha256_base64, json_response, parse_query, Incoming, Mock, Provider};
pub use crate::mock::{Fault, LoggedRequest};

/// `ts` as RFC 3339 UTC with milliseconds: `2026-11-20T19:00:00.000Z` (Square's format).
pub fn rfc3339_millis(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The access token the mock accepts unless the test sets another.
pub const SQUARE_TOKEN: &str = "EAAAmock-square-access-token";
/// The location the mock starts with (also what `main` resolves to).
pub const SQUARE_LOCATION: &str = "LMOCK0001";
/// Its merchant.
pub const SQUARE_MERCHANT: &str = "MLMOCKMERCHANT1";

/// Square's side of [`MockSquare`]: the accepted token, locations, payments and the
/// cursors handed out.
#[derive(Debug)]
pub struct SquareApi {
    token: String,
    /// Location objects by id; the first one added is `main`.
    pub(crate) locations: Vec<Value>,
    pub(crate) payments: Vec<Value>,
    /// Cursors handed out → offset of the next page.
    cursors: HashMap<String, usize>,
    cursor_seq: u64,
    /// Catalog objects (deleted ones kept with `is_deleted`), in creation order.
    pub(crate) catalog: Vec<Value>,
    /// The newest `updated_at` handed out, so every change is strictly later.
    catalog_clock: Option<jiff::Timestamp>,
    /// Most objects per catalog search page (Square's default 100; the limit is advisory).
    catalog_page: usize,
    /// Orders created through the API, and the knobs of the order calls.
    pub(crate) orders: crate::mock_square_orders::SquareOrders,
    /// Inventory counts (see [`crate::mock_square_inventory`]).
    pub(crate) inventory: crate::mock_square_inventory::SquareInventory,
}

/// A mock Square API on 127.0.0.1. Dropping it stops it.
pub type MockSquare = Mock<SquareApi>;

impl Mock<SquareApi> {
    /// Starts a mock with token [`SQUARE_TOKEN`], one location [`SQUARE_LOCATION`]
    /// ("Mock Bistro", America/Los_Angeles, USD) and no payments.
    pub async fn start() -> MockSquare {
        Mock::serve(SquareApi {
            token: SQUARE_TOKEN.to_owned(),
            locations: vec![square_location(
                SQUARE_LOCATION,
                "Mock Bistro",
                "America/Los_Angeles",
                "USD",
            )],
            payments: Vec::new(),
            cursors: HashMap::new(),
            cursor_seq: 0,
            catalog: Vec::new(),
            catalog_clock: None,
            catalog_page: 100,
            orders: Default::default(),
            inventory: Default::default(),
        })
        .await
    }

    /// Replaces the accepted access token.
    pub fn set_token(&self, token: &str) {
        self.with(|api| api.token = token.to_owned());
    }

    /// Adds a location object (see [`square_location`]).
    pub fn add_location(&self, location: Value) {
        self.with(|api| api.locations.push(location));
    }

    /// Adds payments (JSON objects, see [`SquarePayment`]).
    pub fn add_payments(&self, payments: impl IntoIterator<Item = Value>) {
        self.with(|api| api.payments.extend(payments));
    }

    /// Replaces the payment with the same `id` (or adds it).
    pub fn upsert_payment(&self, payment: Value) {
        self.with(
            |api| match api.payments.iter_mut().find(|p| p["id"] == payment["id"]) {
                Some(existing) => *existing = payment,
                None => api.payments.push(payment),
            },
        );
    }

    /// Every payment the mock holds.
    pub fn payments(&self) -> Vec<Value> {
        self.with(|api| api.payments.clone())
    }

    /// Adds or replaces catalog objects (see [`square_item`], [`square_category`],
    /// [`square_modifier_list`], [`square_tax`]), stamping `updated_at` and `version` as
    /// Square does: every change strictly later than the one before.
    pub fn upsert_catalog(&self, objects: impl IntoIterator<Item = Value>) {
        self.with(|api| {
            for object in objects {
                api.stamp_catalog(object);
            }
        });
    }

    /// Deletes a catalog object (and, for an item or a modifier list, the variations or
    /// modifiers nested in it): it stays, `is_deleted`, for searches that include deletions.
    pub fn delete_catalog(&self, id: &str) {
        self.with(|api| {
            let Some(object) = api.catalog.iter().find(|o| o["id"] == id).cloned() else {
                return;
            };
            let mut object = object;
            object["is_deleted"] = json!(true);
            for nested in ["/item_data/variations", "/modifier_list_data/modifiers"] {
                if let Some(children) = object.pointer_mut(nested).and_then(Value::as_array_mut) {
                    for child in children {
                        child["is_deleted"] = json!(true);
                    }
                }
            }
            api.stamp_catalog(object);
        });
    }

    /// Objects per catalog search page.
    pub fn set_catalog_page_size(&self, size: usize) {
        self.with(|api| api.catalog_page = size.max(1));
    }
}

impl SquareApi {
    pub(crate) fn stamp_catalog(&mut self, mut object: Value) {
        let now = jiff::Timestamp::now();
        let at = match self.catalog_clock {
            Some(last) if now <= last => last + jiff::SignedDuration::from_millis(1),
            _ => now,
        };
        // Millisecond precision, as Square answers (and as the timestamps compare).
        let at = jiff::Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at);
        let at = match self.catalog_clock {
            Some(last) if at <= last => last + jiff::SignedDuration::from_millis(1),
            _ => at,
        };
        self.catalog_clock = Some(at);
        let stamp = rfc3339_millis(at);
        object["updated_at"] = json!(stamp);
        object["version"] = json!(at.as_millisecond());
        for nested in ["/item_data/variations", "/modifier_list_data/modifiers"] {
            if let Some(children) = object.pointer_mut(nested).and_then(Value::as_array_mut) {
                for child in children {
                    child["updated_at"] = json!(stamp);
                    child["version"] = json!(at.as_millisecond());
                }
            }
        }
        match self.catalog.iter_mut().find(|o| o["id"] == object["id"]) {
            Some(existing) => *existing = object,
            None => self.catalog.push(object),
        }
    }
}

fn catalog_object(kind: &str, id: &str, data_field: &str, data: Value) -> Value {
    json!({
        "type": kind,
        "id": id,
        "is_deleted": false,
        "present_at_all_locations": true,
        data_field: data,
    })
}

/// A Square `ITEM` with its variations (`(id, name, price in cents)`), in `category_id`,
/// offering `modifier_lists` (`(id, min, max)`, -1 for the list's own bounds).
pub fn square_item(
    id: &str,
    name: &str,
    category_id: &str,
    variations: &[(&str, &str, i64)],
    modifier_lists: &[(&str, i64, i64)],
) -> Value {
    let variations: Vec<Value> = variations
        .iter()
        .enumerate()
        .map(|(ordinal, (vid, vname, cents))| {
            catalog_object(
                "ITEM_VARIATION",
                vid,
                "item_variation_data",
                json!({
                    "item_id": id,
                    "name": vname,
                    "ordinal": ordinal,
                    "pricing_type": "FIXED_PRICING",
                    "price_money": {"amount": cents, "currency": "USD"},
                }),
            )
        })
        .collect();
    let lists: Vec<Value> = modifier_lists
        .iter()
        .map(|(list, min, max)| {
            json!({"modifier_list_id": list, "min_selected_modifiers": min,
                   "max_selected_modifiers": max, "enabled": true})
        })
        .collect();
    catalog_object(
        "ITEM",
        id,
        "item_data",
        json!({
            "name": name,
            "description": format!("{name}, made to order"),
            "categories": [{"id": category_id, "ordinal": 0}],
            "variations": variations,
            "modifier_list_info": lists,
            "tax_ids": [],
            "product_type": "REGULAR",
            "is_archived": false,
        }),
    )
}

/// A Square `CATEGORY`, under `parent` if given.
pub fn square_category(id: &str, name: &str, parent: Option<&str>) -> Value {
    let mut data = json!({"name": name, "category_type": "REGULAR_CATEGORY", "is_top_level": parent.is_none()});
    if let Some(parent) = parent {
        data["parent_category"] = json!({"id": parent, "ordinal": 0});
    }
    catalog_object("CATEGORY", id, "category_data", data)
}

/// A Square `MODIFIER_LIST` with its modifiers (`(id, name, price in cents)`).
pub fn square_modifier_list(
    id: &str,
    name: &str,
    min: i64,
    max: i64,
    modifiers: &[(&str, &str, i64)],
) -> Value {
    let modifiers: Vec<Value> = modifiers
        .iter()
        .enumerate()
        .map(|(ordinal, (mid, mname, cents))| {
            catalog_object(
                "MODIFIER",
                mid,
                "modifier_data",
                json!({
                    "name": mname,
                    "price_money": {"amount": cents, "currency": "USD"},
                    "on_by_default": false,
                    "ordinal": ordinal,
                    "modifier_list_id": id,
                }),
            )
        })
        .collect();
    catalog_object(
        "MODIFIER_LIST",
        id,
        "modifier_list_data",
        json!({
            "name": name,
            "selection_type": if max == 1 { "SINGLE" } else { "MULTIPLE" },
            "min_selected_modifiers": min,
            "max_selected_modifiers": max,
            "modifiers": modifiers,
        }),
    )
}

/// A Square `TAX` (`percentage` as Square's decimal string).
pub fn square_tax(id: &str, name: &str, percentage: &str) -> Value {
    catalog_object(
        "TAX",
        id,
        "tax_data",
        json!({"name": name, "calculation_phase": "TAX_SUBTOTAL_PHASE",
               "inclusion_type": "ADDITIVE", "percentage": percentage,
               "applies_to_custom_amounts": true, "enabled": true}),
    )
}

/// A Square `Location` object.
pub fn square_location(id: &str, name: &str, timezone: &str, currency: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "address": {"address_line_1": "1 Market St", "locality": "San Francisco",
                    "administrative_district_level_1": "CA", "postal_code": "94105", "country": "US"},
        "timezone": timezone,
        "capabilities": ["CREDIT_CARD_PROCESSING", "AUTOMATIC_TRANSFERS"],
        "status": "ACTIVE",
        "created_at": "2024-02-19T17:58:25.000Z",
        "merchant_id": SQUARE_MERCHANT,
        "country": "US",
        "language_code": "en-US",
        "currency": currency,
        "business_name": format!("{name} LLC"),
        "type": "PHYSICAL",
        "mcc": "5812"
    })
}

/// Square's error envelope.
pub fn square_error(category: &str, code: &str, detail: &str) -> Value {
    json!({"errors": [{"category": category, "code": code, "detail": detail}]})
}

impl Provider for SquareApi {
    fn fault_response(&self, fault: &Fault) -> Response {
        let body = match fault.status {
            429 => square_error(
                "RATE_LIMIT_ERROR",
                "RATE_LIMITED",
                "Rate limit exceeded; back off and retry.",
            ),
            401 => square_error(
                "AUTHENTICATION_ERROR",
                "UNAUTHORIZED",
                "This request could not be authorized.",
            ),
            403 => square_error(
                "AUTHENTICATION_ERROR",
                "INSUFFICIENT_SCOPES",
                "The merchant has not given your application sufficient permissions.",
            ),
            503 => square_error(
                "API_ERROR",
                "SERVICE_UNAVAILABLE",
                "The service is temporarily unavailable.",
            ),
            502 => square_error("API_ERROR", "BAD_GATEWAY", "Bad gateway."),
            504 => square_error("API_ERROR", "GATEWAY_TIMEOUT", "Gateway timeout."),
            _ => square_error(
                "API_ERROR",
                "INTERNAL_SERVER_ERROR",
                "An internal error has occurred.",
            ),
        };
        let headers: Vec<(String, String)> = fault
            .retry_after
            .iter()
            .map(|v| ("retry-after".to_owned(), v.clone()))
            .collect();
        json_response(fault.status, &body, &headers)
    }

    fn answer_delay(&mut self) -> Option<std::time::Duration> {
        self.orders.knobs.take_hold()
    }

    fn route(&mut self, request: &Incoming<'_>) -> (u16, Response) {
        let state = self;
        let (method, path) = (request.method, request.path);
        let reply = |status: u16, body: Value| (status, json_response(status, &body, &[]));
        let authorized = request.bearer().is_some_and(|token| token == state.token);
        if !authorized {
            return reply(
                401,
                square_error(
                    "AUTHENTICATION_ERROR",
                    "UNAUTHORIZED",
                    "This request could not be authorized.",
                ),
            );
        }
        let method_not_allowed = || {
            reply(
                405,
                square_error(
                    "INVALID_REQUEST_ERROR",
                    "METHOD_NOT_ALLOWED",
                    "Method not allowed.",
                ),
            )
        };
        if let Some(answer) = crate::mock_square_orders::route(state, request) {
            return answer;
        }
        if let Some(answer) = crate::mock_square_inventory::route(state, request) {
            return answer;
        }
        if let Some(id) = path.strip_prefix("/v2/locations/") {
            if method != Method::GET {
                return method_not_allowed();
            }
            let id = percent_decode(id);
            let found = if id == "main" {
                state.locations.first()
            } else {
                state.locations.iter().find(|l| l["id"] == id.as_str())
            };
            return match found {
                Some(location) => reply(200, json!({"location": location})),
                None => reply(
                    404,
                    square_error(
                        "INVALID_REQUEST_ERROR",
                        "NOT_FOUND",
                        &format!("Location with id `{id}` not found."),
                    ),
                ),
            };
        }
        if path == "/v2/payments" {
            if method != Method::GET {
                return method_not_allowed();
            }
            return list_payments(state, request.query);
        }
        if path == "/v2/catalog/search" || path == "/v2/catalog/batch-retrieve" {
            if method != Method::POST {
                return method_not_allowed();
            }
            let body: Value = match serde_json::from_slice(request.body) {
                Ok(body) => body,
                Err(_) => {
                    return reply(
                        400,
                        square_error(
                            "INVALID_REQUEST_ERROR",
                            "INVALID_BODY",
                            "The request body is not JSON.",
                        ),
                    )
                }
            };
            let (status, answer) = if path == "/v2/catalog/search" {
                catalog_search(state, &body)
            } else {
                catalog_batch_retrieve(state, &body)
            };
            return reply(status, answer);
        }
        reply(
            404,
            square_error("INVALID_REQUEST_ERROR", "NOT_FOUND", "Resource not found."),
        )
    }
}

/// `POST /v2/catalog/search`: `object_types`, `include_deleted_objects` (deleted objects are
/// left out otherwise), `begin_time` (objects changed strictly after it), `cursor`, `limit`;
/// answers `objects`, `cursor` while more remain, and `latest_time` (the catalog's newest
/// change).
fn catalog_search(state: &mut SquareApi, body: &Value) -> (u16, Value) {
    let bad = |detail: &str| {
        (
            400,
            square_error("INVALID_REQUEST_ERROR", "INVALID_VALUE", detail),
        )
    };
    let types: Vec<&str> = body["object_types"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let deleted = body["include_deleted_objects"].as_bool().unwrap_or(false);
    let begin = match body.get("begin_time").and_then(Value::as_str) {
        Some(t) => match parse_time(t) {
            Some(t) => Some(t),
            None => return bad("Invalid begin_time: expected RFC 3339."),
        },
        None => None,
    };
    let limit = body["limit"]
        .as_u64()
        .map_or(state.catalog_page, |l| (l as usize).clamp(1, 1000))
        .min(state.catalog_page);
    let offset = match body.get("cursor").and_then(Value::as_str) {
        Some(c) => match state.cursors.get(c) {
            Some(offset) => *offset,
            None => return bad("Invalid cursor."),
        },
        None => 0,
    };
    // Variations and modifiers asked for without their parent's type come as objects of
    // their own; with it, only nested in it (the sync's page counts rely on that).
    let nested = [
        ("ITEM_VARIATION", "ITEM", "/item_data/variations"),
        ("MODIFIER", "MODIFIER_LIST", "/modifier_list_data/modifiers"),
    ]
    .into_iter()
    .filter(|(child, parent, _)| types.contains(child) && !types.contains(parent))
    .flat_map(|(_, _, pointer)| {
        state
            .catalog
            .iter()
            .filter_map(move |o| o.pointer(pointer).and_then(Value::as_array))
            .flatten()
    });
    let matching: Vec<&Value> = state
        .catalog
        .iter()
        .chain(nested)
        .filter(|o| types.is_empty() || types.iter().any(|t| o["type"] == *t))
        .filter(|o| deleted || o["is_deleted"] != true)
        .filter(|o| {
            begin.is_none_or(|b| {
                o["updated_at"]
                    .as_str()
                    .and_then(parse_time)
                    .is_some_and(|at| at > b)
            })
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| (*o).clone())
        .collect();
    let mut answer = json!({ "objects": page });
    if offset + limit < matching.len() {
        state.cursor_seq += 1;
        let cursor = format!("catalog-cursor-{}", state.cursor_seq);
        state.cursors.insert(cursor.clone(), offset + limit);
        answer["cursor"] = json!(cursor);
    }
    if let Some(latest) = state.catalog_clock {
        answer["latest_time"] = json!(rfc3339_millis(latest));
    }
    (200, answer)
}

/// `POST /v2/catalog/batch-retrieve`: the objects named by `object_ids` (deleted ones too,
/// marked), unknown ids left out.
fn catalog_batch_retrieve(state: &SquareApi, body: &Value) -> (u16, Value) {
    let ids: Vec<&str> = body["object_ids"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return (
            400,
            square_error(
                "INVALID_REQUEST_ERROR",
                "MISSING_REQUIRED_PARAMETER",
                "Field must be set: object_ids.",
            ),
        );
    }
    let objects: Vec<Value> = state
        .catalog
        .iter()
        .filter(|o| ids.iter().any(|id| o["id"] == *id))
        .cloned()
        .collect();
    (200, json!({ "objects": objects }))
}

pub(crate) fn percent_decode(segment: &str) -> String {
    parse_query(&format!("x={segment}"))
        .into_iter()
        .next()
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn parse_time(value: &str) -> Option<jiff::Timestamp> {
    value.parse::<jiff::Timestamp>().ok()
}

fn list_payments(state: &mut SquareApi, query: &str) -> (u16, Response) {
    let bad = |code: &str, field: &str, detail: &str| {
        let body = json!({"errors": [{"category": "INVALID_REQUEST_ERROR", "code": code,
                                      "detail": detail, "field": field}]});
        (400, json_response(400, &body, &[]))
    };
    let params = parse_query(query);
    let param = |name: &str| crate::mock::param(&params, name);
    let limit = match param("limit") {
        None => 100,
        Some(text) => match text.parse::<usize>() {
            Ok(0) => return bad("VALUE_TOO_LOW", "limit", "`limit` must be at least 1."),
            Ok(n) if n > 100 => {
                return bad("VALUE_TOO_HIGH", "limit", "`limit` must be at most 100.")
            }
            Ok(n) => n,
            Err(_) => return bad("INVALID_VALUE", "limit", "`limit` must be an integer."),
        },
    };
    let mut bounds = Vec::new();
    for (name, field) in [
        ("begin_time", "created_at"),
        ("end_time", "created_at"),
        ("updated_at_begin_time", "updated_at"),
        ("updated_at_end_time", "updated_at"),
    ] {
        if let Some(text) = param(name) {
            match parse_time(&text) {
                Some(t) => bounds.push((name.ends_with("begin_time"), field, t)),
                None => {
                    return bad(
                        "INVALID_TIME",
                        name,
                        &format!("`{name}` must be an RFC 3339 timestamp, got {text:?}."),
                    )
                }
            }
        }
    }
    let sort_field = match param("sort_field").as_deref() {
        None | Some("CREATED_AT") => "created_at",
        Some("UPDATED_AT") => "updated_at",
        Some("OFFLINE_CREATED_AT") => "created_at",
        Some(other) => {
            return bad(
                "INVALID_ENUM_VALUE",
                "sort_field",
                &format!("`{other}` is not a valid sort_field."),
            )
        }
    };
    let descending = match param("sort_order").as_deref() {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(other) => {
            return bad(
                "INVALID_SORT_ORDER",
                "sort_order",
                &format!("`{other}` is not a valid sort_order."),
            )
        }
    };
    let location = match param("location_id") {
        Some(l) => l,
        None => state
            .locations
            .first()
            .and_then(|l| l["id"].as_str())
            .unwrap_or_default()
            .to_owned(),
    };
    let time_of = |p: &Value, field: &str| {
        p[field]
            .as_str()
            .and_then(parse_time)
            .or_else(|| p["created_at"].as_str().and_then(parse_time))
    };
    let mut matching: Vec<&Value> = state
        .payments
        .iter()
        .filter(|p| p["location_id"].as_str().unwrap_or(SQUARE_LOCATION) == location)
        .filter(|p| {
            bounds
                .iter()
                .all(|(begin, field, bound)| match time_of(p, field) {
                    Some(t) if *begin => t >= *bound,
                    Some(t) => t < *bound,
                    None => false,
                })
        })
        .collect();
    matching.sort_by(|a, b| {
        let key = |p: &Value| (time_of(p, sort_field), p["id"].as_str().map(str::to_owned));
        key(a).cmp(&key(b))
    });
    if descending {
        matching.reverse();
    }
    let offset = match param("cursor") {
        None => 0,
        Some(cursor) => match state.cursors.get(&cursor) {
            Some(offset) => *offset,
            None => {
                return bad(
                    "INVALID_CURSOR",
                    "cursor",
                    "The pagination cursor is not valid.",
                )
            }
        },
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|p| (*p).clone())
        .collect();
    let next = offset + page.len();
    let mut body = json!({});
    if !page.is_empty() {
        body["payments"] = Value::Array(page);
    }
    if next < matching.len() {
        state.cursor_seq += 1;
        // Opaque, and with the characters a client must percent-encode (`+`, `/`, `=`).
        let mut raw = format!("c{:08}:{:08}", state.cursor_seq, next).into_bytes();
        raw.extend_from_slice(b"\xfb\xef\xffx");
        let cursor = base64::engine::general_purpose::STANDARD.encode(raw);
        state.cursors.insert(cursor.clone(), next);
        body["cursor"] = Value::String(cursor);
    }
    (200, json_response(200, &body, &[]))
}

// ---------------------------------------------------------------------------------------
// Payments and webhooks
// ---------------------------------------------------------------------------------------

/// A Square `Payment` under construction; [`SquarePayment::json`] renders it.
#[derive(Debug, Clone)]
pub struct SquarePayment {
    /// Payment id.
    pub id: String,
    /// `created_at`.
    pub created_at: jiff::Timestamp,
    /// `updated_at`.
    pub updated_at: jiff::Timestamp,
    /// `amount_money.amount` (excludes the tip).
    pub amount: i64,
    /// `tip_money.amount`.
    pub tip: i64,
    /// `refunded_money.amount`, if any.
    pub refunded: Option<i64>,
    /// `COMPLETED`, `CANCELED`, `FAILED`, `APPROVED`, `PENDING`.
    pub status: String,
    /// `CARD`, `CASH`, …
    pub source_type: String,
    /// Card brand (card payments).
    pub card_brand: String,
    /// Card last four.
    pub last_4: String,
    /// Card fingerprint.
    pub fingerprint: Option<String>,
    /// `customer_id`.
    pub customer_id: Option<String>,
    /// `location_id`.
    pub location_id: String,
    /// Currency.
    pub currency: String,
}

impl SquarePayment {
    /// A COMPLETED VISA card payment of `amount` + `tip` at `created_at` (updated then too).
    pub fn new(id: &str, amount: i64, tip: i64, created_at: jiff::Timestamp) -> SquarePayment {
        SquarePayment {
            id: id.to_owned(),
            created_at,
            updated_at: created_at,
            amount,
            tip,
            refunded: None,
            status: "COMPLETED".to_owned(),
            source_type: "CARD".to_owned(),
            card_brand: "VISA".to_owned(),
            last_4: "1111".to_owned(),
            fingerprint: None,
            customer_id: None,
            location_id: SQUARE_LOCATION.to_owned(),
            currency: "USD".to_owned(),
        }
    }

    /// Sets `status`.
    pub fn status(mut self, status: &str) -> Self {
        self.status = status.to_owned();
        self
    }

    /// Sets `updated_at`.
    pub fn updated_at(mut self, at: jiff::Timestamp) -> Self {
        self.updated_at = at;
        self
    }

    /// Sets `refunded_money` (and later `updated_at` as the caller chooses).
    pub fn refunded(mut self, amount: i64) -> Self {
        self.refunded = Some(amount);
        self
    }

    /// Sets the card fingerprint.
    pub fn fingerprint(mut self, fingerprint: &str) -> Self {
        self.fingerprint = Some(fingerprint.to_owned());
        self
    }

    /// Sets `customer_id`.
    pub fn customer(mut self, customer_id: &str) -> Self {
        self.customer_id = Some(customer_id.to_owned());
        self
    }

    /// A cash payment (no card details).
    pub fn cash(mut self) -> Self {
        self.source_type = "CASH".to_owned();
        self
    }

    /// Total = amount + tip.
    pub fn total(&self) -> i64 {
        self.amount + self.tip
    }

    /// The payment as Square renders it.
    pub fn json(&self) -> Value {
        let money = |amount: i64| json!({"amount": amount, "currency": self.currency});
        let total = self.total();
        let card_status = match self.status.as_str() {
            "COMPLETED" => "CAPTURED",
            "CANCELED" => "VOIDED",
            "FAILED" => "FAILED",
            _ => "AUTHORIZED",
        };
        let mut p = json!({
            "id": self.id,
            "created_at": rfc3339_millis(self.created_at),
            "updated_at": rfc3339_millis(self.updated_at),
            "amount_money": money(self.amount),
            "tip_money": money(self.tip),
            "total_money": money(total),
            "approved_money": money(total),
            "status": self.status,
            "source_type": self.source_type,
            "location_id": self.location_id,
            "order_id": format!("ord-{}", self.id),
            "receipt_number": self.id.chars().take(4).collect::<String>(),
            "receipt_url": format!("https://squareup.com/receipt/preview/{}", self.id),
            "delay_action": "CANCEL",
            "version_token": "v1",
            "application_details": {"square_product": "ECOMMERCE_API", "application_id": "sq0ids-mock"},
        });
        if self.source_type == "CARD" {
            let mut card = json!({
                "card_brand": self.card_brand,
                "last_4": self.last_4,
                "exp_month": 11,
                "exp_year": 2030,
                "card_type": "CREDIT",
                "prepaid_type": "NOT_PREPAID",
                "bin": "411111",
            });
            if let Some(fp) = &self.fingerprint {
                card["fingerprint"] = json!(fp);
            }
            p["card_details"] = json!({
                "status": card_status,
                "card": card,
                "entry_method": "KEYED",
                "cvv_status": "CVV_ACCEPTED",
                "avs_status": "AVS_ACCEPTED",
                "statement_description": "SQ *MOCK BISTRO",
            });
        } else if self.source_type == "CASH" {
            p["cash_details"] =
                json!({"buyer_supplied_money": money(total), "change_back_money": money(0)});
        }
        if let Some(refunded) = self.refunded {
            p["refunded_money"] = money(refunded);
            p["refund_ids"] = json!([format!("{}_refund1", self.id)]);
        }
        if let Some(customer) = &self.customer_id {
            p["customer_id"] = json!(customer);
        }
        p
    }
}

/// The body of a Square `payment.created` / `payment.updated` notification.
pub fn square_payment_webhook(event_type: &str, event_id: &str, payment: &Value) -> String {
    json!({
        "merchant_id": SQUARE_MERCHANT,
        "type": event_type,
        "event_id": event_id,
        "created_at": rfc3339_millis(jiff::Timestamp::now()),
        "data": {
            "type": "payment",
            "id": payment["id"],
            "object": {"payment": payment}
        }
    })
    .to_string()
}

/// `x-square-hmacsha256-signature` for `body` posted to `url`: Base64(HMAC-SHA256(key as
/// UTF-8, url ‖ body)).
pub fn square_signature(url: &str, body: &[u8], key: &str) -> String {
    hmac_sha256_base64(key.as_bytes(), &[url.as_bytes(), body])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_squares_published_example() {
        assert_eq!(
            square_signature(
                "https://webhook.site/webhooks",
                br#"{"data":{"type":"webhooks","id":">id<"}}"#,
                "signature-key"
            ),
            "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U="
        );
    }
}
