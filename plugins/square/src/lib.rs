//! `square`: the posbridge provider for Square (<https://developer.squareup.com>).
//!
//! - `validate`: `GET /v2/locations/{location_id}` → the location.
//! - `fetch-transactions`: `GET /v2/payments` filtered and sorted on `updated_at`, so an
//!   incremental window also catches refunds and status changes of older payments; paged by
//!   Square's `cursor`.
//! - webhooks: `x-square-hmacsha256-signature` = Base64(HMAC-SHA256(signature key, notification
//!   URL ‖ raw body)); `payment.created` / `payment.updated` carry the full payment.
//!
//! One Square payment is one canonical transaction (external id = payment id). Money is
//! already integer minor units in Square's API.

use posbridge_sdk::errors::{self, NotFound};
use posbridge_sdk::http::{encode_component, join_url, Request, Response};
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{self, Value};
use posbridge_sdk::types::{CardInfo, CustomerRef, Tender, TransactionStatus};
use posbridge_sdk::{signature, time};
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

/// A GET to `path` with the headers every Square call carries.
fn get(conn: &Connection, path: &str) -> Result<Request, ProviderError> {
    let token = conn.require_credential("access_token")?;
    Ok(
        Request::get(join_url(&conn.base_url(SANDBOX, PRODUCTION), path))
            .bearer(token)
            .header("Square-Version", SQUARE_VERSION)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json"),
    )
}

/// A 2xx passes; anything else → the SDK's mapping, with Square's `category/code` appended
/// to the message (the SDK already quotes `errors[0].detail`).
fn check(response: Response, not_found: NotFound) -> Result<Response, ProviderError> {
    if response.is_success() {
        return Ok(response);
    }
    let error = errors::from_response(&response, not_found);
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
fn non_empty(text: Option<String>) -> Option<String> {
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
        let response = check(get(&conn, &path)?.send()?, NotFound::Location)?;
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
        let request = get(&conn, "/v2/payments")?.query(query);
        let response = check(request.send()?, NotFound::Upstream)?;
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
            ..WebhookEvent::new(event_id, event_type)
        })
    }

    fn parse_push(_body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
        Err(ProviderError::unsupported(
            "Square sales are polled and delivered by webhooks, not pushed",
        ))
    }

    posbridge_sdk::unsupported_two_way!("the Square plugin");
}

posbridge_sdk::export_provider!(Square);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
