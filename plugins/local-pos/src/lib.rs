//! `local-pos`: the restaurant's own till pushes its sales to posbridge (the terminal REST API
//! or the WebSocket); this provider reads them in posbridge's native push format (see
//! `README.md` next to this crate) into canonical transactions, so spend rules and revenue
//! treat local, Square and Toast sales alike.
//!
//! No upstream API: `validate` needs no HTTP, there is nothing to poll and no webhooks. The
//! parser is strict: an unknown field, a fractional amount or a malformed value is a
//! `bad-payload` naming the transaction index and the field (`transactions[3].total: …`), so
//! a till with a bug hears about it instead of losing sales silently.

use std::collections::HashMap;

use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{self, Map, Value};
use posbridge_sdk::time;
use posbridge_sdk::types::{
    CardInfo, CustomerRef, LineItem, RefundRef, StaffRef, Tender, TransactionStatus,
};

/// Most transactions one push may carry.
pub const MAX_TRANSACTIONS: usize = 1000;
/// Longest transaction id (and other identifiers), in bytes.
const MAX_ID_BYTES: usize = 200;
/// Longest free-text field (names, e-mails, phones, brands), in bytes.
const MAX_TEXT_BYTES: usize = 320;

const ROOT_FIELDS: &[&str] = &["venue", "transactions"];
const SALE_FIELDS: &[&str] = &[
    "id",
    "occurred_at",
    "updated_at",
    "total",
    "subtotal",
    "tax",
    "tip",
    "discount",
    "refunded",
    "currency",
    "tender",
    "card",
    "customer_phone",
    "customer_email",
    "customer_name",
    "order_id",
    "status",
    "staff",
    "items",
    "refunds",
];
const CARD_FIELDS: &[&str] = &["brand", "last4", "fingerprint"];
const STAFF_FIELDS: &[&str] = &["id", "name"];
const ITEM_FIELDS: &[&str] = &[
    "id",
    "name",
    "item_id",
    "quantity",
    "unit_price",
    "total",
    "category",
];
const REFUND_FIELDS: &[&str] = &["id", "amount", "at", "reason"];
/// Most lines or refunds one sale may carry (the host keeps at most 500 and 100).
const MAX_ITEMS: usize = 500;
const MAX_REFUNDS: usize = 100;

struct LocalPos;

fn bad(message: impl Into<String>) -> ProviderError {
    ProviderError::bad_payload(message)
}

/// A JSON object being read, with its path for messages (`transactions[3]`).
struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// `value` as an object whose keys are all in `known`.
    fn new(value: &'a Value, path: String, known: &[&str]) -> Result<Self, ProviderError> {
        let Value::Object(object) = value else {
            return Err(bad(format!(
                "{path}: expected an object, got {}",
                kind(value)
            )));
        };
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(format!(
                "{}: unknown field (expected one of: {})",
                field_path(&path, unknown),
                known.join(", ")
            )));
        }
        Ok(Fields { object, path })
    }

    fn error(&self, field: &str, message: impl std::fmt::Display) -> ProviderError {
        bad(format!("{}: {message}", field_path(&self.path, field)))
    }

    /// The field's value; `null` reads as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    /// An optional non-empty string of at most `max` bytes.
    fn string(&self, field: &str, max: usize) -> Result<Option<&'a str>, ProviderError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(self.error(field, "must not be empty (leave it out instead)"))
            }
            Some(Value::String(s)) if s.len() > max => {
                Err(self.error(field, format!("longer than {max} bytes")))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.error(field, format!("expected a string, got {}", kind(other))))
            }
        }
    }

    fn required_string(&self, field: &str, max: usize) -> Result<&'a str, ProviderError> {
        self.string(field, max)?
            .ok_or_else(|| self.error(field, "required"))
    }

    /// An optional amount: a JSON integer of minor units, not negative.
    fn amount(&self, field: &str) -> Result<Option<i64>, ProviderError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let Value::Number(number) = value else {
            return Err(self.error(
                field,
                format!(
                    "expected an integer amount in minor units, got {}",
                    kind(value)
                ),
            ));
        };
        match number.as_i64() {
            Some(amount) if amount >= 0 => Ok(Some(amount)),
            Some(_) => Err(self.error(field, format!("must not be negative, got {number}"))),
            None => Err(self.error(
                field,
                format!("expected an integer amount in minor units (1250 for 12.50), got {number}"),
            )),
        }
    }

    fn timestamp(&self, field: &str) -> Result<Option<i64>, ProviderError> {
        self.string(field, 64)?
            .map(|text| {
                time::parse_timestamp(text).map_err(|e| {
                    self.error(
                        field,
                        format!("{e} (expected RFC 3339, e.g. 2026-11-20T19:00:00Z)"),
                    )
                })
            })
            .transpose()
    }

    /// One of `choices` (by its wire name), or absent.
    fn choice<T: Copy>(
        &self,
        field: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ProviderError> {
        let Some(text) = self.string(field, 64)? else {
            return Ok(None);
        };
        choices
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, value)| Some(*value))
            .ok_or_else(|| {
                let names: Vec<_> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                self.error(
                    field,
                    format!("{text:?} is not one of {}", names.join(", ")),
                )
            })
    }
}

/// `transactions[3].total`, or just `venue` at the top level.
fn field_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

const TENDERS: &[(&str, Tender)] = &[
    ("cash", Tender::Cash),
    ("card", Tender::Card),
    ("gift_card", Tender::GiftCard),
    ("wallet", Tender::Wallet),
    ("other", Tender::Other),
];

const STATUSES: &[(&str, TransactionStatus)] = &[
    ("completed", TransactionStatus::Completed),
    ("pending", TransactionStatus::Pending),
    ("voided", TransactionStatus::Voided),
];

fn card(value: &Value, path: String) -> Result<Option<CardInfo>, ProviderError> {
    let card = Fields::new(value, path, CARD_FIELDS)?;
    let last4 = card.string("last4", 4)?;
    if let Some(last4) = last4 {
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(card.error("last4", format!("expected 4 digits, got {last4:?}")));
        }
    }
    let info = CardInfo {
        brand: card.string("brand", MAX_TEXT_BYTES)?.map(str::to_owned),
        last4: last4.map(str::to_owned),
        fingerprint: card
            .string("fingerprint", MAX_TEXT_BYTES)?
            .map(str::to_owned),
    };
    let any = info.brand.is_some() || info.last4.is_some() || info.fingerprint.is_some();
    Ok(any.then_some(info))
}

/// The list at `field` (absent: empty), each element read by `read` with its path.
fn list<T>(
    f: &Fields<'_>,
    field: &str,
    max: usize,
    read: impl Fn(&Value, String) -> Result<T, ProviderError>,
) -> Result<Vec<T>, ProviderError> {
    match f.get(field) {
        None => Ok(Vec::new()),
        Some(Value::Array(values)) if values.len() > max => Err(f.error(
            field,
            format!("at most {max} entries, got {}", values.len()),
        )),
        Some(Value::Array(values)) => values
            .iter()
            .enumerate()
            .map(|(i, v)| read(v, format!("{}[{i}]", field_path(&f.path, field))))
            .collect(),
        Some(other) => Err(f.error(field, format!("expected an array, got {}", kind(other)))),
    }
}

fn staff(value: &Value, path: String) -> Result<Option<StaffRef>, ProviderError> {
    let f = Fields::new(value, path, STAFF_FIELDS)?;
    let staff = StaffRef {
        id: f.string("id", MAX_ID_BYTES)?.map(str::to_owned),
        name: f.string("name", MAX_TEXT_BYTES)?.map(str::to_owned),
    };
    Ok((staff.id.is_some() || staff.name.is_some()).then_some(staff))
}

fn item(value: &Value, path: String) -> Result<LineItem, ProviderError> {
    let f = Fields::new(value, path, ITEM_FIELDS)?;
    // A quantity is a JSON number (2, 0.5) or decimal text ("0.5"), kept as exact text.
    let quantity = match f.get("quantity") {
        None => "1".to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(f.error(
                "quantity",
                format!("expected a number, got {}", kind(other)),
            ))
        }
    };
    let decimal = !quantity.is_empty()
        && quantity.split('.').count() <= 2
        && quantity
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !decimal {
        return Err(f.error(
            "quantity",
            format!("expected a non-negative decimal like 2 or 0.5, got {quantity:?}"),
        ));
    }
    Ok(LineItem {
        id: f.string("id", MAX_ID_BYTES)?.map(str::to_owned),
        name: f.required_string("name", MAX_TEXT_BYTES)?.to_owned(),
        item_id: f.string("item_id", MAX_ID_BYTES)?.map(str::to_owned),
        quantity,
        unit_price: f.amount("unit_price")?,
        total: f
            .amount("total")?
            .ok_or_else(|| f.error("total", "required"))?,
        category: f.string("category", MAX_TEXT_BYTES)?.map(str::to_owned),
    })
}

fn refund(value: &Value, path: String) -> Result<RefundRef, ProviderError> {
    let f = Fields::new(value, path, REFUND_FIELDS)?;
    let amount = f
        .amount("amount")?
        .ok_or_else(|| f.error("amount", "required"))?;
    if amount == 0 {
        return Err(f.error("amount", "must be positive"));
    }
    Ok(RefundRef {
        id: f.required_string("id", MAX_ID_BYTES)?.to_owned(),
        amount,
        created_at: f
            .timestamp("at")?
            .ok_or_else(|| f.error("at", "required"))?,
        reason: f.string("reason", MAX_TEXT_BYTES)?.map(str::to_owned),
    })
}

/// One pushed sale → a canonical transaction.
fn sale(value: &Value, index: usize, venue: Option<&str>) -> Result<Transaction, ProviderError> {
    let path = format!("transactions[{index}]");
    let f = Fields::new(value, path.clone(), SALE_FIELDS)?;
    let id = f.required_string("id", MAX_ID_BYTES)?;
    let occurred_at = f
        .timestamp("occurred_at")?
        .ok_or_else(|| f.error("occurred_at", "required"))?;
    let updated_at = f.timestamp("updated_at")?;
    let total = f
        .amount("total")?
        .ok_or_else(|| f.error("total", "required"))?;
    let currency = f.required_string("currency", 16)?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(f.error(
            "currency",
            format!("expected an ISO-4217 code like \"USD\", got {currency:?}"),
        ));
    }
    let card = match f.get("card") {
        Some(value) => card(value, format!("{path}.card"))?,
        None => None,
    };
    let customer = CustomerRef {
        provider_customer_id: None,
        phone: f
            .string("customer_phone", MAX_TEXT_BYTES)?
            .map(str::to_owned),
        email: f
            .string("customer_email", MAX_TEXT_BYTES)?
            .map(str::to_owned),
        name: f
            .string("customer_name", MAX_TEXT_BYTES)?
            .map(str::to_owned),
    };
    let has_customer =
        customer.phone.is_some() || customer.email.is_some() || customer.name.is_some();
    let staff = match f.get("staff") {
        Some(value) => staff(value, format!("{path}.staff"))?,
        None => None,
    };
    let line_items = list(&f, "items", MAX_ITEMS, item)?;
    let refunds = list(&f, "refunds", MAX_REFUNDS, refund)?;
    let refunded = f.amount("refunded")?;
    let listed: i64 = refunds.iter().map(|r| r.amount).sum();
    // `refunded` defaults to what the listed refunds add up to; given, it must cover them.
    let refunded = match refunded {
        None => listed,
        Some(r) if r < listed => {
            return Err(f.error(
                "refunded",
                format!("{r} is less than the listed refunds' {listed}"),
            ))
        }
        Some(r) => r,
    };
    Ok(Transaction {
        order_id: f.string("order_id", MAX_ID_BYTES)?.map(str::to_owned),
        location_id: venue.map(str::to_owned),
        updated_at,
        total,
        subtotal: f.amount("subtotal")?.unwrap_or(0),
        tax: f.amount("tax")?.unwrap_or(0),
        tip: f.amount("tip")?.unwrap_or(0),
        discount: f.amount("discount")?.unwrap_or(0),
        refunded,
        staff,
        line_items,
        refunds,
        tender: f.choice("tender", TENDERS)?.unwrap_or(Tender::Other),
        card,
        customer: has_customer.then_some(customer),
        status: f
            .choice("status", STATUSES)?
            .unwrap_or(TransactionStatus::Completed),
        ..Transaction::new(id, occurred_at, currency.to_ascii_uppercase())
    })
}

/// A push body → its transactions (see `README.md` for the format).
fn parse(body: &[u8]) -> Result<Vec<Transaction>, ProviderError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not valid JSON: {e}")))?;
    if !root.is_object() {
        return Err(bad(format!(
            "body: expected an object {{\"transactions\": [...]}}, got {}",
            kind(&root)
        )));
    }
    let root = Fields::new(&root, String::new(), ROOT_FIELDS)?;
    let venue = root.string("venue", MAX_ID_BYTES)?;
    let list = match root.get("transactions") {
        Some(Value::Array(list)) => list,
        None => return Err(bad("transactions: required")),
        Some(other) => {
            return Err(bad(format!(
                "transactions: expected an array, got {}",
                kind(other)
            )))
        }
    };
    if list.len() > MAX_TRANSACTIONS {
        return Err(bad(format!(
            "transactions: at most {MAX_TRANSACTIONS} per push, got {}",
            list.len()
        )));
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(list.len());
    let mut transactions = Vec::with_capacity(list.len());
    for (index, value) in list.iter().enumerate() {
        let transaction = sale(value, index, venue)?;
        if let Some(first) = seen.insert(transaction.external_id.clone(), index) {
            return Err(bad(format!(
                "transactions[{index}].id: {:?} repeats transactions[{first}].id in the same push",
                transaction.external_id
            )));
        }
        transactions.push(transaction);
    }
    Ok(transactions)
}

impl Guest for LocalPos {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "local-pos".into(),
            name: "Local POS".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability::Validate, Capability::Push],
            credential_fields: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }

    fn validate(conn: Connection) -> Result<LocationInfo, ProviderError> {
        Ok(LocationInfo::new(
            conn.location_id.clone(),
            conn.location_id,
        ))
    }

    fn fetch_transactions(
        _conn: Connection,
        _req: FetchRequest,
    ) -> Result<TransactionPage, ProviderError> {
        Err(ProviderError::unsupported(
            "the local POS pushes its sales; there is nothing to poll",
        ))
    }

    fn verify_webhook(_webhook: Webhook, _signature_key: String) -> bool {
        false
    }

    fn parse_webhook(_webhook: Webhook) -> Result<WebhookEvent, ProviderError> {
        Err(ProviderError::unsupported(
            "the local POS pushes its sales; it sends no webhooks",
        ))
    }

    fn parse_push(body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
        parse(&body)
    }

    // Orders, menus and availability of a local-POS venue travel over the terminal API and
    // the WebSocket, not through this plugin: it declares none of the 0.3 capabilities.
    posbridge_sdk::unsupported_two_way!("the local POS plugin");
}

posbridge_sdk::export_provider!(LocalPos);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
