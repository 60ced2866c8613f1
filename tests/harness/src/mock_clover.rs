//! A local mock of Clover's REST API v3 (`GET /v3/merchants/{mId}`, `…/properties`,
//! `…/payments`) and of its app webhooks, answering as Clover's published documentation
//! describes them (the pages are cited in `plugins/clover/README.md`):
//!
//! - Bearer-token auth; errors as `{"message": …}` (401 `401 Unauthorized`, 404 `Not Found`,
//!   429 `Too Many Requests`).
//! - Lists as `{"elements": […], "href": …}`, paged by `offset` and `limit` (default 100,
//!   hard limit 1000), sorted by `orderBy` (`field`, `field ASC|DESC`; default `createdTime`
//!   descending), filtered by repeated `filter=field<op>value` parameters on `createdTime`,
//!   `modifiedTime` and `clientCreatedTime` (ops `=`, `!=`, `>`, `>=`, `<`, `<=`); any other
//!   field is refused with 400, the allowed ones named in `X-Clover-Allowed-Filter-Fields`.
//!   Without a time filter only the last 90 days are returned (Clover's restriction).
//! - A payment's `refunds` are sent only when `expand` names them; `cardTransaction` and
//!   `tender` likewise.
//! - Webhook deliveries: `{"appId", "merchants": {mId: [{"objectId": "P:…", "type", "ts"}]}}`
//!   with the app's auth code in `X-Clover-Auth`.
//!
//! The test owns the mock's state: it sets the merchant and payments, injects faults and
//! reads the request log; the server, the log and the faults are [`crate::mock`]'s.

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use crate::mock::{json_response, parse_query, Incoming, Mock, Provider};
pub use crate::mock::{Fault, LoggedRequest};

/// The API token the mock accepts unless the test sets another.
pub const CLOVER_TOKEN: &str = "c0ffee00-mock-clover-api-token";
/// The merchant the mock serves.
pub const CLOVER_MERCHANT: &str = "MOCKMERCHANT1";
/// The app id the mock's webhook deliveries name.
pub const CLOVER_APP: &str = "MOCKAPPID0001";
/// The filterable fields of the payments collection the mock implements.
const FILTER_FIELDS: [&str; 3] = ["createdTime", "modifiedTime", "clientCreatedTime"];
/// Clover's 90-day window for unfiltered payment queries, in milliseconds.
const NINETY_DAYS_MS: i64 = 90 * 24 * 3600 * 1000;

/// Clover's side of [`MockClover`]: the accepted token, the merchant and its payments.
#[derive(Debug)]
pub struct CloverApi {
    token: String,
    merchant: Value,
    properties: Value,
    payments: Vec<Value>,
}

/// A mock Clover API on 127.0.0.1. Dropping it stops it.
pub type MockClover = Mock<CloverApi>;

impl Mock<CloverApi> {
    /// Starts a mock with token [`CLOVER_TOKEN`], merchant [`CLOVER_MERCHANT`] ("Mock
    /// Trattoria", America/Denver, USD) and no payments.
    pub async fn start() -> MockClover {
        Mock::serve(CloverApi {
            token: CLOVER_TOKEN.to_owned(),
            merchant: json!({
                "id": CLOVER_MERCHANT,
                "name": "Mock Trattoria",
                "address": {"address1": "1 Larimer St", "city": "Denver", "state": "CO",
                            "zip": "80202", "country": "US"},
                "phoneNumber": "3035550100",
                "isBillable": false,
                "createdTime": 1_700_000_000_000_i64,
            }),
            properties: json!({
                "defaultCurrency": "USD",
                "timezone": "America/Denver",
                "tipsEnabled": true,
                "locale": "en_US",
                "vat": false,
            }),
            payments: Vec::new(),
        })
        .await
    }

    /// Replaces the accepted token.
    pub fn set_token(&self, token: &str) {
        self.with(|api| api.token = token.to_owned());
    }

    /// Adds payments (JSON objects, see [`CloverPayment`]).
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
}

/// Clover's error body.
fn clover_error(message: &str) -> Value {
    json!({"message": message})
}

impl Provider for CloverApi {
    fn fault_response(&self, fault: &Fault) -> Response {
        let message = match fault.status {
            401 => "401 Unauthorized",
            403 => "Forbidden",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let headers: Vec<(String, String)> = fault
            .retry_after
            .iter()
            .map(|v| ("retry-after".to_owned(), v.clone()))
            .collect();
        json_response(fault.status, &clover_error(message), &headers)
    }

    fn route(&mut self, request: &Incoming<'_>) -> (u16, Response) {
        let reply = |status: u16, body: Value| (status, json_response(status, &body, &[]));
        if request.bearer() != Some(self.token.as_str()) {
            return reply(401, clover_error("401 Unauthorized"));
        }
        if request.method != Method::GET {
            return reply(405, clover_error("Method Not Allowed"));
        }
        let Some(rest) = request.path.strip_prefix("/v3/merchants/") else {
            return reply(404, clover_error("Not Found"));
        };
        let (merchant, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if merchant != self.merchant["id"].as_str().unwrap_or_default() {
            return reply(404, clover_error("Not Found"));
        }
        let href = format!("https://apisandbox.dev.clover.com{}", request.path);
        match tail {
            "" => {
                let mut merchant = self.merchant.clone();
                merchant["href"] = json!(href);
                reply(200, merchant)
            }
            "properties" => {
                let mut properties = self.properties.clone();
                properties["href"] = json!(href);
                reply(200, properties)
            }
            "payments" => list_payments(self, request.query, &href),
            _ => reply(404, clover_error("Not Found")),
        }
    }
}

/// One `filter=field<op>value` condition.
struct Condition {
    field: String,
    op: &'static str,
    value: i64,
}

impl Condition {
    fn parse(text: &str) -> Option<Condition> {
        // Longest operators first, so `>=` is not read as `>`.
        for op in ["!=", ">=", "<=", "=", ">", "<"] {
            if let Some((field, value)) = text.split_once(op) {
                return Some(Condition {
                    field: field.trim().to_owned(),
                    op,
                    value: value.trim().parse().ok()?,
                });
            }
        }
        None
    }

    fn holds(&self, payment: &Value) -> bool {
        let Some(v) = payment[self.field.as_str()].as_i64() else {
            return false;
        };
        match self.op {
            "=" => v == self.value,
            "!=" => v != self.value,
            ">" => v > self.value,
            ">=" => v >= self.value,
            "<" => v < self.value,
            _ => v <= self.value,
        }
    }
}

fn list_payments(api: &CloverApi, query: &str, href: &str) -> (u16, Response) {
    let bad = |message: String| {
        let headers = [(
            "X-Clover-Allowed-Filter-Fields".to_owned(),
            FILTER_FIELDS.join(","),
        )];
        (400, json_response(400, &clover_error(&message), &headers))
    };
    let params = parse_query(query);
    let param = |name: &str| crate::mock::param(&params, name);
    let number = |name: &str, default: usize| match param(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| format!("Invalid {name}: {text}")),
    };
    let limit = match number("limit", 100) {
        Ok(n) if n > 1000 => return bad(format!("limit {n} exceeds the maximum of 1000")),
        Ok(n) => n,
        Err(message) => return bad(message),
    };
    let offset = match number("offset", 0) {
        Ok(n) => n,
        Err(message) => return bad(message),
    };
    let mut conditions = Vec::new();
    for (_, text) in params.iter().filter(|(k, _)| k == "filter") {
        let Some(condition) = Condition::parse(text) else {
            return bad(format!("Invalid filter: {text}"));
        };
        if !FILTER_FIELDS.contains(&condition.field.as_str()) {
            return bad(format!("Invalid filter field: {}", condition.field));
        }
        conditions.push(condition);
    }
    let (order_field, descending) = match param("orderBy") {
        None => ("createdTime".to_owned(), true),
        Some(text) => {
            let mut words = text.split_whitespace();
            let field = words.next().unwrap_or_default().to_owned();
            let descending = match words.next() {
                None | Some("DESC") => true,
                Some("ASC") => false,
                Some(other) => return bad(format!("Invalid sort order: {other}")),
            };
            if !FILTER_FIELDS.contains(&field.as_str()) {
                return bad(format!("Invalid orderBy field: {field}"));
            }
            (field, descending)
        }
    };
    let expand: Vec<String> = param("expand")
        .map(|e| e.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    let now = jiff::Timestamp::now().as_millisecond();
    let mut matching: Vec<&Value> = api
        .payments
        .iter()
        .filter(|p| conditions.iter().all(|c| c.holds(p)))
        .filter(|p| {
            !conditions.is_empty() || p["createdTime"].as_i64().unwrap_or(0) >= now - NINETY_DAYS_MS
        })
        .collect();
    matching.sort_by_key(|p| {
        (
            p[order_field.as_str()].as_i64(),
            p["id"].as_str().map(str::to_owned),
        )
    });
    if descending {
        matching.reverse();
    }
    let elements: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|p| {
            let mut p = p.clone();
            if let Some(fields) = p.as_object_mut() {
                for field in ["refunds", "cardTransaction", "tender"] {
                    if !expand.iter().any(|e| e == field) {
                        fields.remove(field);
                    }
                }
            }
            p
        })
        .collect();
    let body = json!({"elements": elements, "href": format!("{href}?limit={limit}")});
    (200, json_response(200, &body, &[]))
}

// ---------------------------------------------------------------------------------------
// Payments and webhooks
// ---------------------------------------------------------------------------------------

/// A refund of a [`CloverPayment`].
#[derive(Debug, Clone)]
pub struct CloverRefund {
    /// Refund id.
    pub id: String,
    /// `amount` (includes the refunded tax and tip).
    pub amount: i64,
    /// `voided`.
    pub voided: bool,
    /// `status`: `SUCCESS`, `FAIL` or `PENDING`.
    pub status: String,
}

/// A Clover `Payment` under construction; [`CloverPayment::json`] renders it.
#[derive(Debug, Clone)]
pub struct CloverPayment {
    /// Payment id.
    pub id: String,
    /// `amount`: what was paid including tax, excluding the tip (cents).
    pub amount: i64,
    /// `taxAmount`.
    pub tax: i64,
    /// `tipAmount`.
    pub tip: i64,
    /// `createdTime`, epoch ms.
    pub created: i64,
    /// `modifiedTime`, epoch ms.
    pub modified: i64,
    /// `result`: `SUCCESS`, `VOIDED`, `FAIL`, `AUTH`, …
    pub result: String,
    /// Paid in cash (no card transaction) rather than by card.
    pub cash: bool,
    /// The refunds.
    pub refunds: Vec<CloverRefund>,
}

impl CloverPayment {
    /// A SUCCESS VISA card payment of `amount` (tax `tax` included) plus `tip`, created and
    /// last modified at `created` (epoch ms).
    pub fn new(id: &str, amount: i64, tax: i64, tip: i64, created: i64) -> CloverPayment {
        CloverPayment {
            id: id.to_owned(),
            amount,
            tax,
            tip,
            created,
            modified: created,
            result: "SUCCESS".to_owned(),
            cash: false,
            refunds: Vec::new(),
        }
    }

    /// Sets `result`.
    pub fn result(mut self, result: &str) -> Self {
        self.result = result.to_owned();
        self
    }

    /// Sets `modifiedTime`.
    pub fn modified(mut self, at: i64) -> Self {
        self.modified = at;
        self
    }

    /// A cash payment.
    pub fn cash(mut self) -> Self {
        self.cash = true;
        self
    }

    /// Adds a successful refund of `amount`.
    pub fn refund(self, id: &str, amount: i64) -> Self {
        self.refund_with(id, amount, false, "SUCCESS")
    }

    /// Adds a refund with the given `voided` flag and `status`.
    pub fn refund_with(mut self, id: &str, amount: i64, voided: bool, status: &str) -> Self {
        self.refunds.push(CloverRefund {
            id: id.to_owned(),
            amount,
            voided,
            status: status.to_owned(),
        });
        self
    }

    /// What the customer paid: `amount` + `tipAmount`.
    pub fn total(&self) -> i64 {
        self.amount + self.tip
    }

    /// The payment as Clover renders it with every expandable field expanded.
    pub fn json(&self) -> Value {
        let (label, key) = if self.cash {
            ("Cash", "com.clover.tender.cash")
        } else {
            ("Credit Card", "com.clover.tender.credit_card")
        };
        let mut p = json!({
            "id": self.id,
            "order": {"id": format!("O{}", self.id)},
            "device": {"id": "2b4e2f8a-5c8a-4b1e-9a3d-7f1c9d0e6a11"},
            "tender": {"id": "TENDER0000001", "label": label, "labelKey": key, "opensCashDrawer": self.cash},
            "amount": self.amount,
            "tipAmount": self.tip,
            "taxAmount": self.tax,
            "cashbackAmount": 0,
            "employee": {"id": "DFLTEMPLOYEE"},
            "createdTime": self.created,
            "clientCreatedTime": self.created - 400,
            "modifiedTime": self.modified,
            "offline": false,
            "result": self.result,
            "refunds": {"elements": self.refunds.iter().map(|r| json!({
                "id": r.id,
                "amount": r.amount,
                "taxAmount": 0,
                "tipAmount": 0,
                "createdTime": self.modified,
                "payment": {"id": self.id},
                "voided": r.voided,
                "status": r.status,
            })).collect::<Vec<_>>()},
        });
        if !self.cash {
            p["cardTransaction"] = json!({
                "cardType": "VISA",
                "entryType": "EMV_CONTACT",
                "first6": "411111",
                "last4": "1111",
                "type": "AUTH",
                "authCode": "OK1234",
                "state": "CLOSED",
                "referenceId": "611500530027",
            });
        }
        p
    }
}

/// The body of a Clover app webhook delivery announcing `objects` (`("P:ID", "CREATE")`, …)
/// of merchant [`CLOVER_MERCHANT`] at `ts` (epoch ms).
pub fn clover_webhook(objects: &[(&str, &str)], ts: i64) -> String {
    let updates: Vec<Value> = objects
        .iter()
        .map(|(object, kind)| json!({"objectId": object, "type": kind, "ts": ts}))
        .collect();
    json!({"appId": CLOVER_APP, "merchants": {CLOVER_MERCHANT: updates}}).to_string()
}

/// The header Clover sends the app's auth code in.
pub const CLOVER_AUTH_HEADER: &str = "X-Clover-Auth";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_like_clovers() {
        let c = Condition::parse("modifiedTime>=1700000000000").unwrap();
        assert_eq!(
            (c.field.as_str(), c.op, c.value),
            ("modifiedTime", ">=", 1_700_000_000_000)
        );
        let c = Condition::parse("createdTime<5").unwrap();
        assert_eq!((c.field.as_str(), c.op), ("createdTime", "<"));
        assert!(Condition::parse("modifiedTime>=soon").is_none());
        assert!(c.holds(&json!({"createdTime": 4})));
        assert!(!c.holds(&json!({"createdTime": 5})));
    }
}
