//! `square`: the posbridge provider for Square (<https://developer.squareup.com>).
//!
//! - `validate`: `GET /v2/locations/{location_id}` → the location.
//! - `fetch-transactions`: `GET /v2/payments` filtered and sorted on `updated_at`, so an
//!   incremental window also catches refunds and status changes of older payments; paged by
//!   Square's `cursor`.
//! - webhooks: `x-square-hmacsha256-signature` = Base64(HMAC-SHA256(signature key, notification
//!   URL ‖ raw body)); `payment.created` / `payment.updated` carry the full payment.
//!
//! - orders (contract 0.3, module `orders`): `submit-order` creates the order (`POST /v2/orders`,
//!   idempotent on our order id, which is also its `reference_id`) as a PICKUP fulfillment and
//!   pays it with an `EXTERNAL` tender when the channel took payment, so staff see it;
//!   `price-order` is `POST /v2/orders/calculate`; `get-order-status` reads `GET
//!   /v2/orders/{id}`; `lookup-order` searches recent orders for our `reference_id`.
//! - catalog (module `catalog`): `POST /v2/catalog/search`, incremental from `begin_time` with
//!   deletions; only what is present at the connection's location.
//! - availability (module `stock`): read from `location_overrides[].sold_out` and inventory counts.
//!   Not written: Square ignores an app's writes of `sold_out`, so `set-availability` is
//!   `unsupported` and the capability is not declared.
//! - webhooks also: `order.created` / `order.updated` / `order.fulfillment.updated` (thin: order
//!   id and version), `catalog.version.updated`, `inventory.count.updated`.
//!
//! One Square payment is one canonical transaction (external id = payment id). Money is
//! already integer minor units in Square's API.

use posbridge_sdk::errors::{self, NotFound};
use posbridge_sdk::http::{encode_component, join_url, Request, Response};
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{self, Value};
use posbridge_sdk::types::{CardInfo, CustomerRef, Tender, TransactionStatus};
use posbridge_sdk::{signature, state, time};
use serde::Deserialize;

const SANDBOX: &str = "https://connect.squareupsandbox.com";
const PRODUCTION: &str = "https://connect.squareup.com";
/// The API version every call pins (`Square-Version`).
const SQUARE_VERSION: &str = "2025-08-20";
/// Payments per page (Square's maximum and default).
const PAGE_LIMIT: &str = "100";
const SIGNATURE_HEADER: &str = "x-square-hmacsha256-signature";
/// The location id Square accepts for "the seller's main location".
const MAIN_LOCATION: &str = "main";

struct Square;

mod catalog;
mod orders;
mod stock;

/// State key of the location id `main` stands for, once resolved.
const MAIN_LOCATION_KEY: &str = "main-location";
/// State key of the location the integration was last used with, so webhooks (which carry no
/// connection) can ignore inventory counts of the merchant's other locations.
const LOCATION_KEY: &str = "location";

/// The connection's real location id: `main` (valid only for the locations API) is resolved
/// once with `GET /v2/locations/main` and remembered.
pub(crate) fn resolve_location(conn: &Connection) -> Result<String, ProviderError> {
    if conn.location_id.is_empty() {
        return Err(ProviderError::location_not_found(
            "no Square location id (use `main` for the main location)",
        ));
    }
    let id = if conn.location_id == MAIN_LOCATION {
        match state::get_string(MAIN_LOCATION_KEY).filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => {
                let path = format!("/v2/locations/{MAIN_LOCATION}");
                let response = check_square(square_get(conn, &path)?.send()?, NotFound::Location)?;
                let id = response.json_or_upstream::<LocationResponse>()?.location.id;
                if let Err(e) = state::set_string(MAIN_LOCATION_KEY, &id) {
                    posbridge_sdk::warn!("could not remember the main location: {e}");
                }
                id
            }
        }
    } else {
        conn.location_id.clone()
    };
    if state::get_string(LOCATION_KEY).as_deref() != Some(id.as_str()) {
        if let Err(e) = state::set_string(LOCATION_KEY, &id) {
            posbridge_sdk::warn!("could not remember the location: {e}");
        }
    }
    Ok(id)
}

/// A GET to `path` with the headers every Square call carries.
pub(crate) fn square_get(conn: &Connection, path: &str) -> Result<Request, ProviderError> {
    let token = conn.require_credential("access_token")?;
    Ok(
        Request::get(join_url(&conn.base_url(SANDBOX, PRODUCTION), path))
            .bearer(token)
            .header("Square-Version", SQUARE_VERSION)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json"),
    )
}

/// A POST of a JSON body (set with `.json`) to `path` with the headers every Square call
/// carries.
pub(crate) fn post(conn: &Connection, path: &str) -> Result<Request, ProviderError> {
    let token = conn.require_credential("access_token")?;
    Ok(
        Request::post(join_url(&conn.base_url(SANDBOX, PRODUCTION), path))
            .bearer(token)
            .header("Square-Version", SQUARE_VERSION)
            .header("Accept", "application/json"),
    )
}

/// The Square error codes that mean a conflict with the current state rather than a bad
/// request: a stale `version`, an idempotency key reused with a different body.
const CONFLICT_CODES: [&str; 2] = ["VERSION_MISMATCH", "IDEMPOTENCY_KEY_REUSED"];

/// A 2xx passes; anything else → the SDK's mapping (a 4xx is `rejected` with Square's
/// `errors[0].code` and `field`), with Square's `category/code` appended to the message (the
/// SDK already quotes `errors[0].detail`); a stale version or a reused idempotency key is a
/// `conflict`.
pub(crate) fn check_square(
    response: Response,
    not_found: NotFound,
) -> Result<Response, ProviderError> {
    if response.is_success() {
        return Ok(response);
    }
    let mut error = errors::from_response(&response, not_found);
    if let ProviderError::Rejected(rejection) = &error {
        if rejection
            .code
            .as_deref()
            .is_some_and(|c| CONFLICT_CODES.contains(&c))
        {
            error = ProviderError::conflict(rejection.message.clone());
        }
    }
    Err(match square_code(&response.body) {
        Some(code) => append_to_message(error, &format!(" [{code}]")),
        None => error,
    })
}

/// `CATEGORY/CODE` of the first error of a Square error body.
fn square_code(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let first = json.get("errors")?.get(0)?;
    let field = |name: &str| {
        first
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(80).collect::<String>())
    };
    match (field("category"), field("code")) {
        (Some(category), Some(code)) => Some(format!("{category}/{code}")),
        (None, Some(code)) => Some(code),
        (Some(category), None) => Some(category),
        (None, None) => None,
    }
}

fn append_to_message(error: ProviderError, suffix: &str) -> ProviderError {
    error.map_message(|m| m + suffix)
}

/// `Some(text)` unless absent or empty.
pub(crate) fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|s| !s.trim().is_empty())
}

#[derive(Deserialize)]
struct LocationResponse {
    location: Location,
}

#[derive(Deserialize)]
struct Location {
    id: String,
    name: Option<String>,
    business_name: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
    status: Option<String>,
    merchant_id: Option<String>,
}

#[derive(Deserialize)]
struct PaymentsPage {
    payments: Option<Vec<Value>>,
    cursor: Option<String>,
}

struct Money {
    amount: i64,
    currency: Option<String>,
}

/// A Square `Money` object (`{"amount": <int64 minor units>, "currency": "USD"}`), read by
/// hand so that a refusal names the field.
fn money(value: Option<&Value>, field: &str) -> Result<Option<Money>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let amount = value
        .get("amount")
        .ok_or_else(|| format!("{field}.amount: missing"))?;
    let amount = match amount {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{field}.amount: {n} is not integer minor units"))?,
        _ => return Err(format!("{field}.amount: not a number")),
    };
    let currency = match value.get("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => non_empty(Some(c.clone())),
        Some(_) => return Err(format!("{field}.currency: not a string")),
    };
    Ok(Some(Money { amount, currency }))
}

#[derive(Deserialize)]
struct Payment {
    id: String,
    created_at: String,
    updated_at: Option<String>,
    status: Option<String>,
    source_type: Option<String>,
    card_details: Option<CardDetails>,
    customer_id: Option<String>,
    buyer_email_address: Option<String>,
    order_id: Option<String>,
    location_id: Option<String>,
}

#[derive(Deserialize)]
struct CardDetails {
    card: Option<Card>,
}

#[derive(Deserialize)]
struct Card {
    card_brand: Option<String>,
    last_4: Option<String>,
    fingerprint: Option<String>,
}

fn status(status: Option<&str>) -> TransactionStatus {
    match status {
        Some("COMPLETED") => TransactionStatus::Completed,
        Some("CANCELED") => TransactionStatus::Voided,
        Some("FAILED") => TransactionStatus::Failed,
        // APPROVED, PENDING, and anything Square adds later: not (yet) spend.
        _ => TransactionStatus::Pending,
    }
}

fn tender(source_type: Option<&str>) -> Tender {
    match source_type {
        Some("CARD") => Tender::Card,
        Some("CASH") => Tender::Cash,
        Some("WALLET") => Tender::Wallet,
        Some("BANK_ACCOUNT") => Tender::BankTransfer,
        _ => Tender::Other,
    }
}

/// The payment's id, if it has a string one (for messages about a payment that fails to map).
fn payment_id(value: &Value) -> &str {
    value.get("id").and_then(Value::as_str).unwrap_or("<no id>")
}

/// A Square payment (JSON) → a canonical transaction; the error says what is missing/invalid.
fn to_transaction(value: Value) -> Result<Transaction, String> {
    let amount_money = money(value.get("amount_money"), "amount_money")?;
    let tip_money = money(value.get("tip_money"), "tip_money")?;
    let total_money = money(value.get("total_money"), "total_money")?;
    let refunded_money = money(value.get("refunded_money"), "refunded_money")?;
    let payment: Payment = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if payment.id.is_empty() {
        return Err("empty id".into());
    }
    let occurred_at =
        time::parse_timestamp(&payment.created_at).map_err(|e| format!("created_at: {e}"))?;
    let updated_at = payment
        .updated_at
        .as_deref()
        .map(time::parse_timestamp)
        .transpose()
        .map_err(|e| format!("updated_at: {e}"))?;
    let overflow = || "amounts overflow".to_string();
    let tip = tip_money.as_ref().map_or(0, |m| m.amount);
    let (total, subtotal) = match (&total_money, &amount_money) {
        (Some(total), Some(amount)) => (total.amount, amount.amount),
        (Some(total), None) => (
            total.amount,
            total.amount.checked_sub(tip).ok_or_else(overflow)?,
        ),
        (None, Some(amount)) => (
            amount.amount.checked_add(tip).ok_or_else(overflow)?,
            amount.amount,
        ),
        (None, None) => return Err("no total_money or amount_money".into()),
    };
    let currency = [&total_money, &amount_money]
        .into_iter()
        .flatten()
        .find_map(|m| m.currency.clone())
        .ok_or("money without a currency")?;
    let card = payment
        .card_details
        .and_then(|d| d.card)
        .map(|c| CardInfo {
            brand: non_empty(c.card_brand),
            last4: non_empty(c.last_4),
            fingerprint: non_empty(c.fingerprint),
        })
        .filter(|c| c.brand.is_some() || c.last4.is_some() || c.fingerprint.is_some());
    let customer_id = non_empty(payment.customer_id);
    let email = non_empty(payment.buyer_email_address);
    let customer = (customer_id.is_some() || email.is_some()).then_some(CustomerRef {
        provider_customer_id: customer_id,
        phone: None,
        email,
        name: None,
    });
    Ok(Transaction {
        order_id: non_empty(payment.order_id),
        location_id: non_empty(payment.location_id),
        updated_at,
        total,
        subtotal,
        tip,
        tax: 0,
        discount: 0,
        refunded: refunded_money.as_ref().map_or(0, |m| m.amount),
        tender: tender(payment.source_type.as_deref()),
        card,
        customer,
        status: status(payment.status.as_deref()),
        ..Transaction::new(payment.id, occurred_at, currency)
    })
}

/// A thin order webhook (`order.created`, `order.updated`, `order.fulfillment.updated`) →
/// the order id and version; the status is read with `get-order-status`.
fn order_update(envelope: &Value) -> Option<OrderUpdate> {
    let object = envelope
        .pointer("/data/object")
        .and_then(Value::as_object)
        .and_then(|o| o.values().next())?;
    let id = object
        .get("order_id")
        .and_then(Value::as_str)
        .or_else(|| envelope.pointer("/data/id").and_then(Value::as_str))
        .filter(|s| !s.is_empty())?;
    Some(OrderUpdate {
        provider_order_id: id.to_owned(),
        version: object.get("version").and_then(Value::as_i64),
        status: None,
    })
}

/// `inventory.count.updated` → the IN_STOCK counts it carries, for the integration's
/// location when one is remembered (the webhook is merchant-wide).
fn inventory_counts(envelope: &Value) -> Vec<Availability> {
    let location = state::get_string(LOCATION_KEY);
    envelope
        .pointer("/data/object/inventory_counts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("state").and_then(Value::as_str) == Some("IN_STOCK"))
        .filter(|c| {
            location.as_deref().is_none_or(|mine| {
                c.get("location_id")
                    .and_then(Value::as_str)
                    .is_none_or(|l| l == mine)
            })
        })
        .filter_map(|c| {
            let id = c.get("catalog_object_id").and_then(Value::as_str)?;
            let quantity = c.get("quantity").and_then(Value::as_str)?;
            Some(stock::from_count(id, quantity))
        })
        .collect()
}

impl Guest for Square {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "square".into(),
            name: "Square".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                Capability::Validate,
                Capability::FetchTransactions,
                Capability::Webhooks,
                Capability::SubmitOrders,
                Capability::PriceOrders,
                Capability::OrderStatus,
                Capability::FetchCatalog,
                Capability::FetchCatalogIncremental,
                Capability::ReadAvailability,
                // Not `write-availability`: Square ignores an app's writes of `sold_out`.
            ],
            credential_fields: vec![CredentialField {
                name: "access_token".into(),
                label: "Access token".into(),
                secret: true,
                required: true,
            }],
            allowed_hosts: vec![
                "connect.squareup.com".into(),
                "connect.squareupsandbox.com".into(),
            ],
        }
    }

    fn validate(conn: Connection) -> Result<LocationInfo, ProviderError> {
        if conn.location_id.is_empty() {
            return Err(ProviderError::location_not_found(
                "no Square location id (use `main` for the main location)",
            ));
        }
        let path = format!("/v2/locations/{}", encode_component(&conn.location_id));
        let response = check_square(square_get(&conn, &path)?.send()?, NotFound::Location)?;
        let location = response.json_or_upstream::<LocationResponse>()?.location;
        let name = non_empty(location.name)
            .or_else(|| non_empty(location.business_name.clone()))
            .unwrap_or_else(|| location.id.clone());
        Ok(LocationInfo {
            timezone: non_empty(location.timezone),
            currency: non_empty(location.currency),
            merchant_id: non_empty(location.merchant_id),
            business_name: non_empty(location.business_name),
            status: non_empty(location.status),
            ..LocationInfo::new(location.id, name)
        })
    }

    fn fetch_transactions(
        conn: Connection,
        req: FetchRequest,
    ) -> Result<TransactionPage, ProviderError> {
        let mut query = vec![
            ("updated_at_begin_time", time::format_rfc3339(req.start)),
            ("updated_at_end_time", time::format_rfc3339(req.end)),
            ("sort_field", "UPDATED_AT".to_owned()),
            ("sort_order", "ASC".to_owned()),
        ];
        // `main` is valid for the locations API only; without `location_id` Square lists the
        // main location's payments.
        if conn.location_id != MAIN_LOCATION {
            query.push(("location_id", conn.location_id.clone()));
        }
        query.push(("limit", PAGE_LIMIT.to_owned()));
        if let Some(cursor) = req.cursor.filter(|c| !c.is_empty()) {
            query.push(("cursor", cursor));
        }
        let request = square_get(&conn, "/v2/payments")?.query(query);
        let response = check_square(request.send()?, NotFound::Upstream)?;
        let page: PaymentsPage = response.json_or_upstream()?;
        let payments = page.payments.unwrap_or_default();
        let fetched = payments.len();
        let mut transactions = Vec::with_capacity(fetched);
        for value in payments {
            let id = payment_id(&value).to_owned();
            match to_transaction(value) {
                Ok(transaction) => transactions.push(transaction),
                Err(reason) => posbridge_sdk::warn!("skipping Square payment {id}: {reason}"),
            }
        }
        let next_cursor = non_empty(page.cursor);
        posbridge_sdk::debug!(
            "fetched {fetched} Square payments ({} mapped), more: {}",
            transactions.len(),
            next_cursor.is_some()
        );
        Ok(TransactionPage {
            transactions,
            next_cursor,
        })
    }

    fn verify_webhook(webhook: Webhook, signature_key: String) -> bool {
        // An empty key would make the HMAC forgeable by anyone.
        if signature_key.is_empty() {
            return false;
        }
        webhook.header(SIGNATURE_HEADER).is_some_and(|sig| {
            signature::verify_hmac_sha256_base64(
                signature_key.as_bytes(),
                &[webhook.url.as_bytes(), &webhook.body],
                sig,
            )
        })
    }

    fn parse_webhook(webhook: Webhook) -> Result<WebhookEvent, ProviderError> {
        let envelope: Value = webhook.json()?;
        let text = |name: &str| {
            envelope
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ProviderError::bad_payload(format!("webhook body: no `{name}`")))
        };
        let event_id = text("event_id")?;
        let event_type = text("type")?;
        let mut event = WebhookEvent::new(event_id.clone(), event_type.clone());
        match event_type.as_str() {
            "order.created" | "order.updated" | "order.fulfillment.updated" => {
                event.order_updates = vec![order_update(&envelope).ok_or_else(|| {
                    ProviderError::bad_payload(format!("{event_type} {event_id}: no order id"))
                })?];
                return Ok(event);
            }
            "catalog.version.updated" => {
                event.catalog_changed = true;
                return Ok(event);
            }
            "inventory.count.updated" => {
                event.availability = inventory_counts(&envelope);
                return Ok(event);
            }
            _ => {}
        }
        let transactions = match event_type.as_str() {
            "payment.created" | "payment.updated" => {
                let payment = envelope
                    .pointer("/data/object/payment")
                    .filter(|p| p.is_object())
                    .cloned()
                    .ok_or_else(|| {
                        ProviderError::bad_payload(format!(
                            "{event_type} {event_id}: no data.object.payment"
                        ))
                    })?;
                let id = payment_id(&payment).to_owned();
                let transaction = to_transaction(payment).map_err(|reason| {
                    ProviderError::bad_payload(format!(
                        "{event_type} {event_id}: payment {id}: {reason}"
                    ))
                })?;
                vec![transaction]
            }
            _ => Vec::new(),
        };
        Ok(WebhookEvent {
            transactions,
            ..event
        })
    }

    fn parse_push(_body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
        Err(ProviderError::unsupported(
            "Square sales are polled and delivered by webhooks, not pushed",
        ))
    }

    fn submit_order(conn: Connection, order: Order) -> Result<OrderStatus, ProviderError> {
        orders::submit(&conn, &order)
    }

    fn lookup_order(
        conn: Connection,
        our_order_id: String,
    ) -> Result<Option<OrderStatus>, ProviderError> {
        orders::lookup(&conn, &our_order_id)
    }

    fn price_order(conn: Connection, order: Order) -> Result<PricedOrder, ProviderError> {
        orders::price(&conn, &order)
    }

    fn get_order_status(
        conn: Connection,
        provider_order_id: String,
    ) -> Result<OrderStatus, ProviderError> {
        orders::get_status(&conn, &provider_order_id)
    }

    fn fetch_catalog(
        conn: Connection,
        request: CatalogRequest,
    ) -> Result<CatalogPage, ProviderError> {
        catalog::fetch(&conn, &request)
    }

    fn get_availability(
        conn: Connection,
        provider_ids: Vec<String>,
    ) -> Result<Vec<Availability>, ProviderError> {
        stock::read(&conn, &provider_ids)
    }

    fn set_availability(
        _conn: Connection,
        _changes: Vec<Availability>,
    ) -> Result<Vec<Availability>, ProviderError> {
        Err(ProviderError::unsupported(
            "Square's sold-out state is read-only for apps (Square ignores an app's writes of \
             `sold_out`): mark items sold out in Square itself",
        ))
    }
}

posbridge_sdk::export_provider!(Square);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
