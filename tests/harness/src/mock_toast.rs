//! A local mock of Toast's API as Toast's published API documents it: client-credentials
//! login (`POST /authentication/v1/authentication/login`) handing out expiring tokens,
//! `GET /restaurants/v1/restaurants/{guid}` and `GET /orders/v2/ordersBulk` (both need the
//! Bearer token **and** `Toast-Restaurant-External-ID`), `startDate`/`endDate` on
//! `modifiedDate` (start inclusive, end exclusive), `pageSize` ≤ 100, `page` from 1, a bare
//! JSON array body and `Link: <…page=N+1…>; rel="next"` (absolute, back at the mock) while
//! more remain. Money is decimal dollars as JSON numbers (`8.5`), timestamps look like
//! `2021-07-30T11:57:46.235+0000`, and every data answer carries
//! `X-Toast-RateLimit-Remaining` / `X-Toast-RateLimit-Reset`.
//!
//! Orders into Toast (create, price, read) and the configuration lists they need are in
//! [`crate::mock_toast_orders`].
//!
//! The test can count logins, expire the current token (the next data call gets 401),
//! inject 429s with or without `Retry-After` and 5xx, and read the request log; the server,
//! the log and the faults are [`crate::mock`]'s.

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use crate::mock::{
    hmac_sha256_base64, json_response, parse_query, Fault, Incoming, Mock, Provider,
};

/// The client id the mock accepts unless the test sets another.
pub const TOAST_CLIENT_ID: &str = "mock-toast-client-id";
/// The client secret the mock accepts unless the test sets another.
pub const TOAST_CLIENT_SECRET: &str = "mock-toast-client-secret";
/// The restaurant the mock starts with.
pub const TOAST_RESTAURANT: &str = "8b5c4e7a-1f2d-4c3b-9a8e-0d1c2b3a4f5e";

const LOGIN_PATH: &str = "/authentication/v1/authentication/login";
const RESTAURANT_HEADER: &str = "toast-restaurant-external-id";
/// Requests per 15 minutes Toast allows a restaurant (reported in the rate-limit headers).
const QUOTA: i64 = 10_000;

/// Toast's side of [`MockToast`]: the accepted client, the tokens handed out, restaurants,
/// orders and the data-request count behind the rate-limit headers.
#[derive(Debug)]
pub struct ToastApi {
    base_url: String,
    client_id: String,
    client_secret: String,
    expires_in: Value,
    /// Tokens that still work.
    valid_tokens: Vec<String>,
    token_seq: u64,
    logins: u32,
    restaurants: Vec<Value>,
    /// (restaurant guid, order).
    pub(crate) orders: Vec<(String, Value)>,
    data_requests: i64,
    /// The published menus document of [`TOAST_RESTAURANT`] (`menus`,
    /// `modifierGroupReferences`, `modifierOptionReferences`) and when it was published.
    pub(crate) menus: Value,
    menus_published: String,
    /// Stock entries Toast tracks (OUT_OF_STOCK or QUANTITY), by item guid.
    stock: Vec<Value>,
    /// The orders side: configuration, orders created through the API, knobs.
    pub(crate) order_side: crate::mock_toast_orders::ToastOrders,
}

/// A mock Toast API on 127.0.0.1. Dropping it stops it.
pub type MockToast = Mock<ToastApi>;

impl Mock<ToastApi> {
    /// Starts a mock accepting [`TOAST_CLIENT_ID`] / [`TOAST_CLIENT_SECRET`], with one
    /// restaurant [`TOAST_RESTAURANT`] ("Mock Diner", America/Chicago, USD), tokens valid
    /// for 86400 s, and no orders.
    pub async fn start() -> MockToast {
        let mock = Mock::serve(ToastApi {
            base_url: String::new(),
            client_id: TOAST_CLIENT_ID.to_owned(),
            client_secret: TOAST_CLIENT_SECRET.to_owned(),
            expires_in: json!(86400),
            valid_tokens: Vec::new(),
            token_seq: 0,
            logins: 0,
            restaurants: vec![toast_restaurant(
                TOAST_RESTAURANT,
                "Mock Diner",
                "America/Chicago",
                "USD",
            )],
            orders: Vec::new(),
            data_requests: 0,
            menus: json!({"menus": [], "modifierGroupReferences": {}, "modifierOptionReferences": {}}),
            menus_published: toast_time(jiff::Timestamp::now()),
            stock: Vec::new(),
            order_side: Default::default(),
        })
        .await;
        // `Link` headers point back at the mock, so it must know its own address.
        let base_url = mock.base_url().to_owned();
        mock.with(|api| api.base_url = base_url);
        mock
    }

    /// Replaces the accepted client credentials.
    pub fn set_client(&self, client_id: &str, client_secret: &str) {
        self.with(|api| {
            api.client_id = client_id.to_owned();
            api.client_secret = client_secret.to_owned();
        });
    }

    /// The `expiresIn` logins answer with (seconds; a JSON number).
    pub fn set_expires_in(&self, seconds: i64) {
        self.with(|api| api.expires_in = json!(seconds));
    }

    /// Successful logins so far.
    pub fn logins(&self) -> u32 {
        self.with(|api| api.logins)
    }

    /// Expires every token handed out so far: the next data call with one gets 401.
    pub fn expire_tokens(&self) {
        self.with(|api| api.valid_tokens.clear());
    }

    /// Adds a restaurant (see [`toast_restaurant`]).
    pub fn add_restaurant(&self, restaurant: Value) {
        self.with(|api| api.restaurants.push(restaurant));
    }

    /// Adds orders of [`TOAST_RESTAURANT`] (see [`ToastOrder`]).
    pub fn add_orders(&self, orders: impl IntoIterator<Item = Value>) {
        self.with(|api| {
            api.orders
                .extend(orders.into_iter().map(|o| (TOAST_RESTAURANT.to_owned(), o)));
        });
    }

    /// Publishes a menus document for [`TOAST_RESTAURANT`] (`menus` with nested
    /// `menuGroups` and `menuItems`, and the `modifierGroupReferences` /
    /// `modifierOptionReferences` maps): `lastUpdated` moves, as when a manager publishes.
    pub fn publish_menus(&self, document: Value) {
        self.with(|api| {
            let now = jiff::Timestamp::now();
            let mut stamp = toast_time(now);
            if stamp <= api.menus_published {
                // Strictly later, even within the same millisecond.
                let last = parse_toast_time(&api.menus_published).unwrap_or(now);
                stamp = toast_time(last + jiff::SignedDuration::from_millis(1));
            }
            api.menus = document;
            api.menus_published = stamp;
        });
    }

    /// Sets an item's stock as Toast's kitchen would: `IN_STOCK` (stops tracking it),
    /// `OUT_OF_STOCK`, or `QUANTITY` with `quantity`.
    pub fn set_stock(&self, guid: &str, status: &str, quantity: Option<f64>) {
        self.with(|api| api.set_stock(guid, status, quantity));
    }

    /// The stock entry Toast keeps for `guid` (`None` when plainly in stock).
    pub fn stock_of(&self, guid: &str) -> Option<Value> {
        self.with(|api| api.stock.iter().find(|e| e["guid"] == guid).cloned())
    }

    /// Replaces the order with the same `guid` (or adds it).
    pub fn upsert_order(&self, order: Value) {
        self.with(|api| {
            match api
                .orders
                .iter_mut()
                .find(|(_, o)| o["guid"] == order["guid"])
            {
                Some((_, existing)) => *existing = order,
                None => api.orders.push((TOAST_RESTAURANT.to_owned(), order)),
            }
        });
    }
}

/// A Toast `Restaurant` object.
pub fn toast_restaurant(guid: &str, name: &str, timezone: &str, currency: &str) -> Value {
    json!({
        "guid": guid,
        "general": {
            "name": format!("{name} Group"),
            "locationName": name,
            "locationCode": "MD1",
            "description": "A mock restaurant",
            "timeZone": timezone,
            "closeoutHour": 4,
            "managementGroupGuid": "0b5a5f0e-6d2c-4c5b-8a1e-3f2e1d0c9b8a",
            "currencyCode": currency,
            "firstBusinessDate": 20200101,
            "archived": false
        },
        "urls": {"website": "https://example.com"},
        "location": {"address1": "1 Main St", "city": "Chicago", "stateCode": "IL",
                     "zipCode": "60601", "country": "US"}
    })
}

/// Toast's error body.
pub fn toast_error(status: u16, code: u32, message: &str) -> Value {
    json!({
        "status": status,
        "code": code,
        "message": message,
        "messageKey": null,
        "fieldName": null,
        "link": null,
        "requestId": "mock-request",
        "developerMessage": null,
        "errors": [],
        "canRetry": null
    })
}

impl Provider for ToastApi {
    fn arrived(&mut self, request: &Incoming<'_>) {
        if request.path != LOGIN_PATH {
            self.data_requests += 1;
        }
    }

    fn fault_response(&self, fault: &Fault) -> Response {
        let rate_headers = rate_headers(self);
        let (code, message) = match fault.status {
            429 => (10429, "Rate limit exceeded"),
            401 => (10001, "Access token is expired or invalid"),
            403 => (10003, "Access denied"),
            503 => (10503, "Service unavailable"),
            504 => (10504, "Gateway timeout"),
            _ => (10500, "Internal server error"),
        };
        let mut headers = rate_headers;
        if fault.status == 429 {
            for (name, value) in headers.iter_mut() {
                if name == "x-toast-ratelimit-remaining" {
                    *value = "0".to_owned();
                }
            }
        }
        if let Some(retry_after) = &fault.retry_after {
            headers.push(("retry-after".to_owned(), retry_after.clone()));
        }
        json_response(
            fault.status,
            &toast_error(fault.status, code, message),
            &headers,
        )
    }

    fn answer_delay(&mut self) -> Option<std::time::Duration> {
        self.order_side.knobs.take_hold()
    }

    fn route(&mut self, request: &Incoming<'_>) -> (u16, Response) {
        let state = self;
        let (method, path, query, headers, body) = (
            request.method,
            request.path,
            request.query,
            request.headers,
            request.body,
        );
        let rate = rate_headers(state);
        let reply = |status: u16, body: Value, rate: &[(String, String)]| {
            (status, json_response(status, &body, rate))
        };
        if path == LOGIN_PATH {
            if method != Method::POST {
                return reply(405, toast_error(405, 10405, "Method not allowed"), &[]);
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if request["userAccessType"] != "TOAST_MACHINE_CLIENT" {
                return reply(
                    400,
                    toast_error(400, 10400, "userAccessType must be TOAST_MACHINE_CLIENT"),
                    &[],
                );
            }
            if request["clientId"] != state.client_id.as_str()
                || request["clientSecret"] != state.client_secret.as_str()
            {
                return reply(
                    401,
                    toast_error(
                        401,
                        10010,
                        "Authentication failed: invalid client credentials",
                    ),
                    &[],
                );
            }
            state.token_seq += 1;
            state.logins += 1;
            let token = format!(
                "eyJhbGciOiJSUzI1NiJ9.mock-toast-token-{}.sig",
                state.token_seq
            );
            state.valid_tokens.push(token.clone());
            return reply(
                200,
                json!({
                    "@class": ".SuccessfulResponse",
                    "token": {
                        "tokenType": "Bearer",
                        "scope": null,
                        "expiresIn": state.expires_in,
                        "accessToken": token,
                        "idToken": null,
                        "refreshToken": null
                    },
                    "status": "SUCCESS"
                }),
                &[],
            );
        }

        let token_ok = request
            .bearer()
            .is_some_and(|t| state.valid_tokens.iter().any(|v| v == t));
        if !token_ok {
            return reply(
                401,
                toast_error(401, 10001, "Access token is expired or invalid"),
                &rate,
            );
        }
        let Some(restaurant) = headers
            .get(RESTAURANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return reply(
                400,
                toast_error(
                    400,
                    10400,
                    "Missing required header Toast-Restaurant-External-ID",
                ),
                &rate,
            );
        };
        if !state
            .restaurants
            .iter()
            .any(|r| r["guid"] == restaurant.as_str())
        {
            return reply(
                403,
                toast_error(
                    403,
                    10003,
                    "Access to the restaurant in Toast-Restaurant-External-ID is denied",
                ),
                &rate,
            );
        }
        if let Some(rest) = path.strip_prefix("/stock/v1/inventory") {
            let (status, answer) = state.stock_route(method, rest, query, body);
            return reply(status, answer, &rate);
        }
        if let Some(answer) = crate::mock_toast_orders::route(state, request, &restaurant, &rate) {
            return answer;
        }
        if method != Method::GET {
            return reply(405, toast_error(405, 10405, "Method not allowed"), &rate);
        }
        if let Some(guid) = path.strip_prefix("/restaurants/v1/restaurants/") {
            return match state.restaurants.iter().find(|r| r["guid"] == guid) {
                Some(r) if guid == restaurant => reply(200, r.clone(), &rate),
                Some(_) => reply(
                    403,
                    toast_error(403, 10003, "Restaurant does not match the header"),
                    &rate,
                ),
                None => reply(404, toast_error(404, 10404, "Restaurant not found"), &rate),
            };
        }
        if path == "/menus/v2/metadata" || path == "/menus/v2/menus" {
            if restaurant != TOAST_RESTAURANT {
                return reply(404, toast_error(404, 10404, "No menus published"), &rate);
            }
            let metadata = json!({
                "restaurantGuid": restaurant,
                "lastUpdated": state.menus_published,
            });
            if path == "/menus/v2/metadata" {
                return reply(200, metadata, &rate);
            }
            let mut document = state.menus.clone();
            document["restaurantGuid"] = metadata["restaurantGuid"].clone();
            document["lastUpdated"] = metadata["lastUpdated"].clone();
            return reply(200, document, &rate);
        }
        reply(404, toast_error(404, 10404, "Not found"), &rate)
    }
}

impl ToastApi {
    fn set_stock(&mut self, guid: &str, status: &str, quantity: Option<f64>) {
        self.stock.retain(|e| e["guid"] != guid);
        if status != "IN_STOCK" {
            self.stock.push(stock_entry(guid, status, quantity));
        }
    }

    fn stock_answer(&self, guid: &str) -> Value {
        self.stock
            .iter()
            .find(|e| e["guid"] == guid)
            .cloned()
            .unwrap_or_else(|| stock_entry(guid, "IN_STOCK", None))
    }

    /// The stock API: `GET /stock/v1/inventory[?status=]` lists only OUT_OF_STOCK and
    /// QUANTITY items; `POST …/search {guids}` and `PUT …/update [{guid, status,
    /// quantity}]` answer an entry per guid (IN_STOCK for one Toast does not track).
    fn stock_route(
        &mut self,
        method: &Method,
        rest: &str,
        query: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let bad = |message: &str| (400, toast_error(400, 10400, message));
        match (method.as_str(), rest) {
            ("GET", "") => {
                let wanted = parse_query(query)
                    .into_iter()
                    .find(|(k, _)| k == "status")
                    .map(|(_, v)| v);
                let list: Vec<Value> = self
                    .stock
                    .iter()
                    .filter(|e| wanted.as_deref().is_none_or(|w| e["status"] == w))
                    .cloned()
                    .collect();
                (200, Value::Array(list))
            }
            ("POST", "/search") => {
                let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let Some(guids) = request["guids"].as_array() else {
                    return bad("guids is required");
                };
                let list = guids
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|g| self.stock_answer(g))
                    .collect();
                (200, Value::Array(list))
            }
            ("PUT", "/update") => {
                let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let Some(updates) = request.as_array() else {
                    return bad("the body must be an array of inventory updates");
                };
                // Checked whole before any is applied, as one request.
                for u in updates {
                    let status = u["status"].as_str().unwrap_or_default();
                    if u["guid"].as_str().is_none_or(str::is_empty) {
                        return bad("guid is required");
                    }
                    if !["IN_STOCK", "OUT_OF_STOCK", "QUANTITY"].contains(&status) {
                        return bad("status must be IN_STOCK, OUT_OF_STOCK or QUANTITY");
                    }
                    if (status == "QUANTITY") != u["quantity"].is_number() {
                        return bad("quantity is required with QUANTITY and only with it");
                    }
                }
                let mut answer = Vec::new();
                for u in updates {
                    let guid = u["guid"].as_str().unwrap_or_default();
                    self.set_stock(
                        guid,
                        u["status"].as_str().unwrap_or_default(),
                        u["quantity"].as_f64(),
                    );
                    answer.push(self.stock_answer(guid));
                }
                (200, Value::Array(answer))
            }
            ("GET" | "POST" | "PUT", _) => (404, toast_error(404, 10404, "Not found")),
            _ => (405, toast_error(405, 10405, "Method not allowed")),
        }
    }
}

/// One entry of Toast's stock API.
fn stock_entry(guid: &str, status: &str, quantity: Option<f64>) -> Value {
    json!({
        "guid": guid,
        "itemGuidValidity": "VALID",
        "status": status,
        "quantity": quantity,
        "multiLocationId": format!("ml-{guid}"),
        "versionId": "1"
    })
}

/// The body of a Toast stock webhook (`in_stock`, `low_quantity` or `out_of_stock`) for
/// item `guid`.
pub fn toast_stock_webhook(
    event_type: &str,
    event_guid: &str,
    guid: &str,
    quantity: Option<f64>,
) -> String {
    let status = match event_type {
        "in_stock" => "IN_STOCK",
        "out_of_stock" => "OUT_OF_STOCK",
        _ => "QUANTITY",
    };
    json!({
        "timestamp": toast_time(jiff::Timestamp::now()),
        "eventCategory": "stock",
        "eventType": event_type,
        "guid": event_guid,
        "details": {
            "itemGuid": guid,
            "restaurantGuid": TOAST_RESTAURANT,
            "status": status,
            "quantity": quantity,
            "multiLocationId": format!("ml-{guid}")
        }
    })
    .to_string()
}

fn rate_headers(state: &ToastApi) -> Vec<(String, String)> {
    let now = jiff::Timestamp::now().as_second();
    vec![
        (
            "x-toast-ratelimit-remaining".to_owned(),
            (QUOTA - state.data_requests).max(0).to_string(),
        ),
        (
            "x-toast-ratelimit-reset".to_owned(),
            (now + 900 - now % 900).to_string(),
        ),
    ]
}

/// Parses `2021-07-30T11:57:46.235+0000` (also `+00:00` and `Z`).
pub fn parse_toast_time(text: &str) -> Option<jiff::Timestamp> {
    let bytes = text.as_bytes();
    let n = bytes.len();
    if n > 5 && matches!(bytes[n - 5], b'+' | b'-') && bytes[n - 4..].iter().all(u8::is_ascii_digit)
    {
        let fixed = format!("{}:{}", &text[..n - 2], &text[n - 2..]);
        return fixed.parse().ok();
    }
    text.parse().ok()
}

/// `ts` as Toast writes it: `2021-07-30T11:57:46.235+0000`.
pub fn toast_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `GET /orders/v2/ordersBulk` (served through [`crate::mock_toast_orders`], whose knobs
/// apply to it).
pub(crate) fn orders_bulk(
    state: &ToastApi,
    restaurant: &str,
    query: &str,
    rate: Vec<(String, String)>,
) -> (u16, Response) {
    let bad = |message: String| {
        (
            400,
            json_response(400, &toast_error(400, 10400, &message), &rate),
        )
    };
    let params = parse_query(query);
    let param = |name: &str| crate::mock::param(&params, name);
    let page_size = match param("pageSize").map(|s| s.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return bad("pageSize must be between 1 and 100".into()),
    };
    let page = match param("page").map(|s| s.parse::<usize>()) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return bad("page must be 1 or more".into()),
    };
    let window =
        match (param("startDate"), param("endDate"), param("businessDate")) {
            (Some(start), Some(end), None) => {
                match (parse_toast_time(&start), parse_toast_time(&end)) {
                (Some(s), Some(e)) => Some((s, e)),
                _ => {
                    return bad(format!(
                        "startDate/endDate must be ISO-8601 like 2021-07-30T11:57:46.235+0000, got {start:?} / {end:?}"
                    ))
                }
            }
            }
            (None, None, Some(_)) => None,
            _ => return bad("give startDate and endDate, or businessDate".into()),
        };
    let business_date = param("businessDate").and_then(|b| b.parse::<i64>().ok());
    let mut matching: Vec<&Value> = state
        .orders
        .iter()
        .filter(|(r, _)| r == restaurant)
        .map(|(_, o)| o)
        .filter(|o| match window {
            Some((start, end)) => o["modifiedDate"]
                .as_str()
                .and_then(parse_toast_time)
                .is_some_and(|m| m >= start && m < end),
            None => o["businessDate"].as_i64() == business_date,
        })
        .collect();
    matching.sort_by(|a, b| {
        let key = |o: &Value| {
            (
                o["modifiedDate"].as_str().and_then(parse_toast_time),
                o["guid"].as_str().map(str::to_owned),
            )
        };
        key(a).cmp(&key(b))
    });
    let start = (page - 1) * page_size;
    let body: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .map(|o| (*o).clone())
        .collect();
    let mut headers = rate;
    let link_to = |n: usize| {
        let pairs: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "page")
            .cloned()
            .chain([("page".to_owned(), n.to_string())])
            .collect();
        let query = reqwest::Url::parse_with_params("http://x/", &pairs)
            .map(|u| u.query().unwrap_or_default().to_owned())
            .unwrap_or_default();
        format!("{}/orders/v2/ordersBulk?{query}", state.base_url)
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    if start + page_size < matching.len() {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
    }
    if !links.is_empty() {
        headers.push(("link".to_owned(), links.join(", ")));
    }
    (200, json_response(200, &Value::Array(body), &headers))
}

// ---------------------------------------------------------------------------------------
// Orders and webhooks
// ---------------------------------------------------------------------------------------

/// Minor units → Toast's decimal dollars as a JSON number (`850` → `8.5`, `200` → `2.0`,
/// `1010` → `10.1`), written from its decimal text.
pub fn dollars(cents: i64) -> Value {
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    let text = if frac == 0 {
        format!("{sign}{whole}.0")
    } else if frac % 10 == 0 {
        format!("{sign}{whole}.{}", frac / 10)
    } else {
        format!("{sign}{whole}.{frac:02}")
    };
    serde_json::from_str(&text).expect("a decimal is a JSON number")
}

/// A Toast payment under construction.
#[derive(Debug, Clone)]
pub struct ToastPayment {
    /// Payment guid.
    pub guid: String,
    /// `amount` in cents (without tip).
    pub amount: i64,
    /// `tipAmount` in cents.
    pub tip: i64,
    /// `type`: CREDIT, CASH, GIFTCARD…
    pub kind: String,
    /// `paymentStatus`: CAPTURED, VOIDED…
    pub status: String,
    /// `refund.refundAmount` (cents) with `refundStatus` FULL/PARTIAL.
    pub refund: Option<i64>,
}

impl ToastPayment {
    /// A captured VISA credit payment.
    pub fn credit(guid: &str, amount: i64, tip: i64) -> ToastPayment {
        ToastPayment {
            guid: guid.to_owned(),
            amount,
            tip,
            kind: "CREDIT".to_owned(),
            status: "CAPTURED".to_owned(),
            refund: None,
        }
    }

    /// Sets `paymentStatus`.
    pub fn status(mut self, status: &str) -> Self {
        self.status = status.to_owned();
        self
    }

    /// A refund of `amount` cents.
    pub fn refunded(mut self, amount: i64) -> Self {
        self.refund = Some(amount);
        self
    }

    fn json(&self, paid: &str) -> Value {
        let mut p = json!({
            "guid": self.guid,
            "entityType": "OrderPayment",
            "paidDate": paid,
            "paidBusinessDate": 20261120,
            "type": self.kind,
            "amount": dollars(self.amount),
            "tipAmount": dollars(self.tip),
            "amountTendered": dollars(self.amount + self.tip),
            "paymentStatus": self.status,
            "refundStatus": "NONE",
            "refund": null,
            "originalProcessingFee": null,
            "voidInfo": null,
        });
        if self.kind == "CREDIT" {
            p["cardType"] = json!("VISA");
            p["last4Digits"] = json!("4242");
            p["cardEntryMode"] = json!("SWIPED");
        }
        if let Some(refund) = self.refund {
            p["refundStatus"] = json!(if refund >= self.amount + self.tip {
                "FULL"
            } else {
                "PARTIAL"
            });
            p["refund"] = json!({
                "refundAmount": dollars(refund),
                "tipRefundAmount": dollars(0),
                "refundDate": paid,
                "refundBusinessDate": 20261120
            });
        }
        p
    }
}

/// A Toast check under construction.
#[derive(Debug, Clone)]
pub struct ToastCheck {
    /// Check guid.
    pub guid: String,
    /// `amount` in cents (after discounts, before tax and tip).
    pub amount: i64,
    /// `taxAmount` in cents.
    pub tax: i64,
    /// `voided`.
    pub voided: bool,
    /// `paymentStatus` OPEN|PAID|CLOSED.
    pub payment_status: String,
    /// Payments.
    pub payments: Vec<ToastPayment>,
    /// `customer`, if any.
    pub customer: Option<Value>,
}

impl ToastCheck {
    /// A closed check of `amount` + `tax` with no payments yet.
    pub fn new(guid: &str, amount: i64, tax: i64) -> ToastCheck {
        ToastCheck {
            guid: guid.to_owned(),
            amount,
            tax,
            voided: false,
            payment_status: "CLOSED".to_owned(),
            payments: Vec::new(),
            customer: None,
        }
    }

    /// Adds a payment.
    pub fn payment(mut self, payment: ToastPayment) -> Self {
        self.payments.push(payment);
        self
    }

    /// Voids the check.
    pub fn voided(mut self) -> Self {
        self.voided = true;
        self
    }

    /// Leaves the check OPEN: an outstanding balance, not closed or paid yet.
    pub fn open(mut self) -> Self {
        self.payment_status = "OPEN".to_owned();
        self
    }

    fn is_open(&self) -> bool {
        self.payment_status == "OPEN"
    }

    fn json(&self, at: &str) -> Value {
        let closed = if self.is_open() {
            Value::Null
        } else {
            json!(at)
        };
        json!({
            "guid": self.guid,
            "entityType": "Check",
            "displayNumber": "1",
            "openedDate": at,
            "closedDate": closed,
            "modifiedDate": at,
            "paidDate": closed,
            "amount": dollars(self.amount),
            "taxAmount": dollars(self.tax),
            "totalAmount": dollars(self.amount + self.tax),
            "paymentStatus": self.payment_status,
            "voided": self.voided,
            "deleted": false,
            "customer": self.customer,
            "selections": [],
            "appliedDiscounts": [],
            "payments": self.payments.iter().map(|p| p.json(at)).collect::<Vec<_>>(),
        })
    }
}

/// A Toast order under construction; [`ToastOrder::json`] renders it.
#[derive(Debug, Clone)]
pub struct ToastOrder {
    /// Order guid.
    pub guid: String,
    /// `openedDate` / `closedDate`.
    pub closed: jiff::Timestamp,
    /// `modifiedDate`.
    pub modified: jiff::Timestamp,
    /// `voided`.
    pub voided: bool,
    /// `deleted`.
    pub deleted: bool,
    /// Checks.
    pub checks: Vec<ToastCheck>,
}

impl ToastOrder {
    /// An order closed (and last modified) at `at`, with no checks yet.
    pub fn new(guid: &str, at: jiff::Timestamp) -> ToastOrder {
        ToastOrder {
            guid: guid.to_owned(),
            closed: at,
            modified: at,
            voided: false,
            deleted: false,
            checks: Vec::new(),
        }
    }

    /// One closed check of `amount` + `tax`, paid by card with `tip`: the simplest sale.
    pub fn paid(guid: &str, at: jiff::Timestamp, amount: i64, tax: i64, tip: i64) -> ToastOrder {
        ToastOrder::new(guid, at).check(
            ToastCheck::new(&format!("{guid}-c1"), amount, tax).payment(ToastPayment::credit(
                &format!("{guid}-p1"),
                amount + tax,
                tip,
            )),
        )
    }

    /// Adds a check.
    pub fn check(mut self, check: ToastCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// Sets `modifiedDate`.
    pub fn modified(mut self, at: jiff::Timestamp) -> Self {
        self.modified = at;
        self
    }

    /// Voids the order.
    pub fn voided(mut self) -> Self {
        self.voided = true;
        self
    }

    /// Deletes the order.
    pub fn deleted(mut self) -> Self {
        self.deleted = true;
        self
    }

    /// The order as Toast renders it.
    pub fn json(&self) -> Value {
        let at = toast_time(self.closed);
        let business_date: i64 = self
            .closed
            .strftime("%Y%m%d")
            .to_string()
            .parse()
            .unwrap_or(20261120);
        // An order with a check still open is not closed or paid either.
        let closed = if self.checks.iter().any(ToastCheck::is_open) {
            Value::Null
        } else {
            json!(at)
        };
        json!({
            "guid": self.guid,
            "entityType": "Order",
            "externalId": null,
            "displayNumber": "42",
            "source": "In Store",
            "openedDate": at,
            "closedDate": closed,
            "paidDate": closed,
            "createdDate": at,
            "modifiedDate": toast_time(self.modified),
            "businessDate": business_date,
            "voided": self.voided,
            "voidDate": if self.voided { json!(toast_time(self.modified)) } else { Value::Null },
            "deleted": self.deleted,
            "deletedDate": if self.deleted { json!(toast_time(self.modified)) } else { Value::Null },
            "numberOfGuests": 2,
            "approvalStatus": "APPROVED",
            "restaurantService": {"guid": "rs-1", "entityType": "RestaurantService"},
            "diningOption": {"guid": "do-1", "entityType": "DiningOption"},
            "checks": self.checks.iter().map(|c| c.json(&at)).collect::<Vec<_>>(),
        })
    }
}

/// A Toast menus document: a Burger (9.50) with a required Sauce group (Ketchup free,
/// Aioli 0.50) in the Burgers group, and Fries (3.25) with no modifiers: the menu of the
/// order-injection tests and bench.
pub fn toast_burger_menu() -> Value {
    json!({
        "menus": [{
            "guid": "menu-lunch", "name": "Lunch",
            "menuGroups": [{
                "guid": "grp-burgers", "name": "Burgers",
                "menuItems": [
                    {"guid": "item-burger", "name": "Burger", "price": 9.5,
                     "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [1]},
                    {"guid": "item-fries", "name": "Fries", "price": 3.25,
                     "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": []},
                ],
            }],
        }],
        "modifierGroupReferences": {
            "1": {"referenceId": 1, "guid": "mg-sauce", "name": "Sauce", "minSelections": 1,
                  "maxSelections": 1, "requiredMode": "REQUIRED",
                  "modifierOptionReferences": [10, 11]},
        },
        "modifierOptionReferences": {
            "10": {"referenceId": 10, "guid": "opt-ketchup", "name": "Ketchup", "price": 0},
            "11": {"referenceId": 11, "guid": "opt-aioli", "name": "Aioli", "price": 0.5},
        },
    })
}

/// The body of a Toast `order_updated` webhook for `order`, with its envelope timestamp.
pub fn toast_order_webhook(event_guid: &str, order: &Value) -> String {
    toast_orders_webhook("order_updated", event_guid, order)
}

/// The body of an orders webhook of `event_type` (`order_updated` or
/// `channel_order_updated`; both carry the complete order) for `order`.
pub fn toast_orders_webhook(event_type: &str, event_guid: &str, order: &Value) -> String {
    json!({
        "timestamp": toast_time(jiff::Timestamp::now()),
        "eventCategory": "orders",
        "eventType": event_type,
        "guid": event_guid,
        "details": {"restaurantGuid": TOAST_RESTAURANT, "order": order}
    })
    .to_string()
}

/// `Toast-Signature` for `body`: Base64(HMAC-SHA256(secret, raw body ‖ envelope
/// `timestamp`)).
pub fn toast_signature(body: &str, secret: &str) -> String {
    let envelope: Value = serde_json::from_str(body).expect("a Toast webhook body is JSON");
    let timestamp = match &envelope["timestamp"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    hmac_sha256_base64(secret.as_bytes(), &[body.as_bytes(), timestamp.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_decimal_text() {
        assert_eq!(dollars(850).to_string(), "8.5");
        assert_eq!(dollars(1225).to_string(), "12.25");
        assert_eq!(dollars(1010).to_string(), "10.1");
        assert_eq!(dollars(83).to_string(), "0.83");
        assert_eq!(dollars(200).to_string(), "2.0");
    }

    #[test]
    fn an_open_check_leaves_the_order_unclosed() {
        let at: jiff::Timestamp = "2026-11-20T19:00:00Z".parse().unwrap();
        let open = ToastOrder::new("o", at)
            .check(ToastCheck::new("c", 3000, 240).open())
            .json();
        assert_eq!(open["checks"][0]["paymentStatus"], "OPEN");
        assert!(open["closedDate"].is_null() && open["checks"][0]["closedDate"].is_null());
        let closed = ToastOrder::new("o", at)
            .check(ToastCheck::new("c", 3000, 240))
            .json();
        assert_eq!(closed["closedDate"], "2026-11-20T19:00:00.000+0000");
        let body = toast_orders_webhook("channel_order_updated", "e", &closed);
        let envelope: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(envelope["eventType"], "channel_order_updated");
        assert_eq!(envelope["details"]["order"], closed);
    }

    #[test]
    fn toast_times_round_trip() {
        let t: jiff::Timestamp = "2021-07-30T11:57:46.235Z".parse().unwrap();
        assert_eq!(toast_time(t), "2021-07-30T11:57:46.235+0000");
        assert_eq!(parse_toast_time("2021-07-30T11:57:46.235+0000"), Some(t));
        assert_eq!(parse_toast_time("2021-07-30T06:57:46.235-0500"), Some(t));
    }
}
