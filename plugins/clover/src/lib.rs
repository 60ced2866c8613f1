//! `clover`: the posbridge provider for Clover (<https://docs.clover.com>), written from
//! `plugins/README.md` and Clover's published REST and webhook documentation (cited in this
//! crate's README).
//!
//! - credentials: one `access_token` (a merchant API token or an OAuth access token), sent as
//!   `Authorization: Bearer`; the integration's location id is the Clover merchant id (`mId`).
//! - `validate`: `GET /v3/merchants/{mId}` (name) and `GET /v3/merchants/{mId}/properties`
//!   (`defaultCurrency`, `timezone`).
//! - `fetch-transactions`: `GET /v3/merchants/{mId}/payments` filtered on `modifiedTime` in the
//!   window and ordered by it ascending, `expand=refunds,cardTransaction,tender`, paged by
//!   `offset`/`limit` (the next-cursor is the next offset). Ordering by the filtered field over
//!   a closed window keeps offsets stable: a payment modified while the window is paged moves
//!   past its end and is fetched by the next window.
//! - webhooks: Clover authenticates an app's deliveries with the app's auth code in the
//!   `X-Clover-Auth` header (compared in constant time with the integration's signature key).
//!   A notification names changed objects (`P:<id>` for payments) without their contents, and
//!   `parse-webhook` has no credentials in contract 0.1.0 to fetch them: the event records
//!   nothing and the next sync (by `modifiedTime`) brings the payments. Clover's one-time URL
//!   verification post (`{"verificationCode": …}`, sent before the auth code exists) is
//!   accepted and its code logged for the operator.
//!
//! One Clover payment is one canonical transaction (external id = payment id). Clover money is
//! integer cents already: `amount` includes tax and excludes the tip, a refund's `amount`
//! includes its tax and tip. The payment has no currency of its own: it is the merchant's
//! `defaultCurrency`, read once per integration and kept in state.

use posbridge_sdk::errors::{self, NotFound};
use posbridge_sdk::http::{encode_component, join_url, Request, Response};
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{self, Value};
use posbridge_sdk::types::{CardInfo, Tender, TransactionStatus};
use posbridge_sdk::{signature, state};
use serde::Deserialize;

const SANDBOX: &str = "https://apisandbox.dev.clover.com";
/// North America; European and Latin American merchants are served from `api.eu.clover.com`
/// and `api.la.clover.com` (declared too; the integration's `base_url` picks one).
const PRODUCTION: &str = "https://api.clover.com";
/// Payments per page (Clover's default; its hard limit is 1000).
const PAGE_LIMIT: usize = 100;
/// Fields expanded on every payment: refunds are not sent unless asked for.
const EXPAND: &str = "refunds,cardTransaction,tender";
const AUTH_HEADER: &str = "x-clover-auth";
/// State key of the merchant's ISO-4217 currency (plain text), written by the first sync.
const CURRENCY_KEY: &str = "currency";
/// Most objects listed in a webhook event type before it is cut short.
const MAX_EVENT_KINDS: usize = 8;

struct Clover;

/// The merchant id of the connection, refused when empty (it is part of every path).
fn merchant_id(conn: &Connection) -> Result<&str, ProviderError> {
    let id = conn.location_id.trim();
    if id.is_empty() {
        return Err(ProviderError::location_not_found(
            "no Clover merchant id (the location id is the merchant's mId)",
        ));
    }
    Ok(id)
}

/// A GET of `path` under the merchant, with the token.
fn get(conn: &Connection, path: &str) -> Result<Request, ProviderError> {
    let token = conn.require_credential("access_token")?;
    let merchant = encode_component(merchant_id(conn)?);
    let url = join_url(
        &conn.base_url(SANDBOX, PRODUCTION),
        &format!("/v3/merchants/{merchant}{path}"),
    );
    Ok(Request::get(url)
        .bearer(token)
        .header("Accept", "application/json"))
}

/// Sends `request`, passing a 2xx through and mapping anything else (the SDK quotes Clover's
/// `message`).
fn send(request: Request, not_found: NotFound) -> Result<Response, ProviderError> {
    errors::check(request.send()?, not_found)
}

/// `Some(text)` unless absent or blank.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|s| !s.trim().is_empty())
}

/// An ISO-4217 code as the host accepts it: three ASCII letters, upper-cased.
fn currency_code(text: &str) -> Option<String> {
    let code = text.trim();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}

#[derive(Deserialize)]
struct Merchant {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    default_currency: Option<String>,
    timezone: Option<String>,
}

/// The merchant's properties (currency, time zone).
fn properties(conn: &Connection) -> Result<Properties, ProviderError> {
    send(get(conn, "/properties")?, NotFound::Location)?.json_or_upstream()
}

/// The merchant's currency for payments: kept in state after the first read.
fn merchant_currency(conn: &Connection) -> Result<String, ProviderError> {
    if let Some(code) = state::get_string(CURRENCY_KEY).and_then(|c| currency_code(&c)) {
        return Ok(code);
    }
    let code = properties(conn)?
        .default_currency
        .as_deref()
        .and_then(currency_code)
        .ok_or_else(|| {
            ProviderError::upstream("the merchant's properties have no usable defaultCurrency")
        })?;
    if let Err(e) = state::set_string(CURRENCY_KEY, &code) {
        posbridge_sdk::warn!("could not keep the merchant currency in state: {e}");
    }
    Ok(code)
}

/// An optional integer-cents field of `value`; the error names it.
fn cents(value: &Value, field: &str) -> Result<Option<i64>, String> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{field}: {n} is not integer cents")),
        Some(_) => Err(format!("{field}: not a number")),
    }
}

/// An optional epoch-millisecond field of `value`.
fn millis(value: &Value, field: &str) -> Result<Option<i64>, String> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{field}: {n} is not epoch milliseconds")),
        Some(_) => Err(format!("{field}: not a number")),
    }
}

/// A string field of `value`, if present and not blank.
fn text(value: &Value, field: &str) -> Option<String> {
    non_empty(value.get(field).and_then(Value::as_str).map(str::to_owned))
}

/// `value.field.id` (Clover's references: `"order": {"id": …}`).
fn reference(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(|r| text(r, "id"))
}

/// The payment's `result`: only `SUCCESS` is spend.
fn status(result: Option<&str>) -> TransactionStatus {
    match result {
        Some("SUCCESS") => TransactionStatus::Completed,
        Some("VOIDED" | "VOIDING") => TransactionStatus::Voided,
        Some("FAIL") => TransactionStatus::Failed,
        // AUTH, INITIATED, PENDING and anything Clover adds later: not (yet) spend.
        _ => TransactionStatus::Pending,
    }
}

/// The tender, from its `labelKey` (Clover's tender constants), else from a card transaction.
fn tender(payment: &Value) -> Tender {
    let key = payment
        .get("tender")
        .and_then(|t| text(t, "labelKey"))
        .unwrap_or_default();
    match key.as_str() {
        "com.clover.tender.cash" => Tender::Cash,
        "com.clover.tender.credit_card"
        | "com.clover.tender.debit_card"
        | "com.clover.tender.external_pin_debit" => Tender::Card,
        "com.clover.tender.external_gift_card" => Tender::GiftCard,
        _ if payment.get("cardTransaction").is_some_and(Value::is_object) => Tender::Card,
        _ => Tender::Other,
    }
}

/// Cents refunded by the payment's refunds that took effect: not voided, not failed or
/// pending. Refunds arrive only when expanded (`{"elements": […]}`).
fn refunded(payment: &Value) -> Result<i64, String> {
    let Some(refunds) = payment.get("refunds").filter(|r| !r.is_null()) else {
        return Ok(0);
    };
    let elements = match refunds.get("elements") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("refunds.elements: not a list".into()),
    };
    let mut sum: i64 = 0;
    for (i, refund) in elements.iter().enumerate() {
        let voided = refund.get("voided").and_then(Value::as_bool) == Some(true);
        let settled = !matches!(
            refund.get("status").and_then(Value::as_str),
            Some("FAIL" | "PENDING")
        );
        if voided || !settled {
            continue;
        }
        let amount = cents(refund, "amount")
            .map_err(|e| format!("refunds.elements[{i}].{e}"))?
            .ok_or_else(|| format!("refunds.elements[{i}].amount: missing"))?;
        sum = sum.checked_add(amount).ok_or("refund amounts overflow")?;
    }
    Ok(sum)
}

/// The payment's id, if it has a string one (for messages about a payment that fails to map).
fn payment_id(value: &Value) -> &str {
    value.get("id").and_then(Value::as_str).unwrap_or("<no id>")
}

/// A Clover payment (JSON) → a canonical transaction in `currency` at `merchant`; the error
/// says what is missing or invalid.
fn to_transaction(payment: &Value, currency: &str, merchant: &str) -> Result<Transaction, String> {
    if !payment.is_object() {
        return Err("not an object".into());
    }
    let id = text(payment, "id").ok_or("no id")?;
    let amount = cents(payment, "amount")?.ok_or("amount: missing")?;
    let tax = cents(payment, "taxAmount")?.unwrap_or(0);
    let tip = cents(payment, "tipAmount")?.unwrap_or(0);
    let occurred_at = millis(payment, "createdTime")?.ok_or("createdTime: missing")?;
    let updated_at = millis(payment, "modifiedTime")?;
    let overflow = || "amounts overflow".to_string();
    let total = amount.checked_add(tip).ok_or_else(overflow)?;
    let subtotal = amount.checked_sub(tax).ok_or_else(overflow)?;
    let card = payment
        .get("cardTransaction")
        .filter(|c| c.is_object())
        .map(|c| CardInfo {
            brand: text(c, "cardType"),
            last4: text(c, "last4"),
            fingerprint: None,
        })
        .filter(|c| c.brand.is_some() || c.last4.is_some());
    Ok(Transaction {
        order_id: reference(payment, "order"),
        location_id: Some(merchant.to_owned()),
        updated_at,
        total,
        subtotal,
        tax,
        tip,
        discount: 0,
        refunded: refunded(payment)?,
        tender: tender(payment),
        card,
        customer: None,
        status: status(payment.get("result").and_then(Value::as_str)),
        ..Transaction::new(id, occurred_at, currency.to_owned())
    })
}

/// The offset a next-cursor carries.
fn offset(cursor: Option<&str>) -> Result<usize, ProviderError> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(0),
        Some(c) => c.parse().map_err(|_| {
            ProviderError::bad_payload(format!("not a Clover page cursor (an offset): {c:?}"))
        }),
    }
}

#[derive(Deserialize)]
struct Page {
    elements: Option<Vec<Value>>,
}

/// What Clover's webhook verification post carries (sent once, when the app's webhook URL is
/// set, before the auth code exists): exactly `{"verificationCode": "<uuid>"}`.
fn verification_code(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let fields = value.as_object()?;
    if fields.len() != 1 {
        return None;
    }
    let code = fields.get("verificationCode")?.as_str()?;
    let uuid_shaped = code.len() == 36
        && code.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    uuid_shaped.then(|| code.to_owned())
}

impl Guest for Clover {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "clover".into(),
            name: "Clover".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                Capability::Validate,
                Capability::FetchTransactions,
                Capability::Webhooks,
            ],
            credential_fields: vec![CredentialField {
                name: "access_token".into(),
                label: "API token".into(),
                secret: true,
                required: true,
            }],
            allowed_hosts: vec![
                "api.clover.com".into(),
                "api.eu.clover.com".into(),
                "api.la.clover.com".into(),
                "apisandbox.dev.clover.com".into(),
            ],
        }
    }

    fn validate(conn: Connection) -> Result<LocationInfo, ProviderError> {
        let merchant: Merchant = send(get(&conn, "")?, NotFound::Location)?.json_or_upstream()?;
        let props = properties(&conn)?;
        let name = non_empty(merchant.name.clone()).unwrap_or_else(|| merchant.id.clone());
        Ok(LocationInfo {
            timezone: non_empty(props.timezone),
            currency: props.default_currency.as_deref().and_then(currency_code),
            merchant_id: Some(merchant.id.clone()),
            business_name: non_empty(merchant.name),
            status: None,
            ..LocationInfo::new(merchant.id, name)
        })
    }

    fn fetch_transactions(
        conn: Connection,
        req: FetchRequest,
    ) -> Result<TransactionPage, ProviderError> {
        let merchant = merchant_id(&conn)?.to_owned();
        let start = offset(req.cursor.as_deref())?;
        let currency = merchant_currency(&conn)?;
        let query = [
            ("filter", format!("modifiedTime>={}", req.start)),
            ("filter", format!("modifiedTime<{}", req.end)),
            ("orderBy", "modifiedTime ASC".to_owned()),
            ("expand", EXPAND.to_owned()),
            ("limit", PAGE_LIMIT.to_string()),
            ("offset", start.to_string()),
        ];
        let response = send(get(&conn, "/payments")?.query(query), NotFound::Upstream)?;
        let payments = response
            .json_or_upstream::<Page>()?
            .elements
            .unwrap_or_default();
        let fetched = payments.len();
        let mut transactions = Vec::with_capacity(fetched);
        for payment in &payments {
            match to_transaction(payment, &currency, &merchant) {
                Ok(transaction) => transactions.push(transaction),
                Err(reason) => posbridge_sdk::warn!(
                    "skipping Clover payment {}: {reason}",
                    payment_id(payment)
                ),
            }
        }
        // A full page may have a successor; a short one is the window's last.
        let next_cursor = (fetched >= PAGE_LIMIT).then(|| (start + fetched).to_string());
        posbridge_sdk::debug!(
            "fetched {fetched} Clover payments at offset {start} ({} mapped), more: {}",
            transactions.len(),
            next_cursor.is_some()
        );
        Ok(TransactionPage {
            transactions,
            next_cursor,
        })
    }

    fn verify_webhook(webhook: Webhook, signature_key: String) -> bool {
        // An empty key would let any delivery without the header through.
        if signature_key.is_empty() {
            return false;
        }
        match webhook.header(AUTH_HEADER) {
            Some(code) => {
                signature::constant_time_eq(code.trim().as_bytes(), signature_key.as_bytes())
            }
            None => verification_code(&webhook.body).is_some(),
        }
    }

    fn parse_webhook(webhook: Webhook) -> Result<WebhookEvent, ProviderError> {
        let digest = signature::hex_encode(&signature::sha256(&[&webhook.body]));
        if let Some(code) = verification_code(&webhook.body) {
            posbridge_sdk::info!(
                "Clover webhook URL verification code: {code} (enter it in the app's webhook settings)"
            );
            return Ok(WebhookEvent::new(
                format!("verification-{code}"),
                "verification",
            ));
        }
        let body: Value = webhook.json()?;
        let merchants = body
            .get("merchants")
            .and_then(Value::as_object)
            .ok_or_else(|| ProviderError::bad_payload("Clover webhook: no `merchants` object"))?;
        let mut kinds: Vec<String> = Vec::new();
        let mut payments = 0;
        for (merchant, updates) in merchants {
            let updates = updates.as_array().ok_or_else(|| {
                ProviderError::bad_payload(format!(
                    "Clover webhook: merchants.{merchant} is not a list"
                ))
            })?;
            for update in updates {
                let object = text(update, "objectId").ok_or_else(|| {
                    ProviderError::bad_payload(format!(
                        "Clover webhook: an update of merchant {merchant} has no objectId"
                    ))
                })?;
                let prefix = object.split(':').next().unwrap_or_default();
                let kind = format!("{prefix}:{}", text(update, "type").unwrap_or_default());
                payments += usize::from(prefix == "P");
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        kinds.sort();
        if kinds.len() > MAX_EVENT_KINDS {
            kinds.truncate(MAX_EVENT_KINDS);
            kinds.push("…".into());
        }
        if payments > 0 {
            posbridge_sdk::debug!(
                "Clover notified {payments} payment change(s); the next sync fetches them"
            );
        }
        // Clover's deliveries carry no event id: the body's digest makes a redelivery of
        // the same notification a replay.
        let event_type = if kinds.is_empty() {
            "empty".into()
        } else {
            kinds.join(",")
        };
        Ok(WebhookEvent::new(
            format!("sha256-{}", &digest[..32]),
            event_type,
        ))
    }

    fn parse_push(_body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
        Err(ProviderError::unsupported(
            "Clover payments are polled (webhooks only announce them), not pushed",
        ))
    }

    // Clover stays a read-only source of sales: it declares none of the 0.3 capabilities.
    posbridge_sdk::unsupported_two_way!("the Clover plugin");
}

posbridge_sdk::export_provider!(Clover);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
