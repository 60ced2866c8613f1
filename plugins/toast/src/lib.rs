//! `toast`: the posbridge provider for Toast (<https://doc.toasttab.com>).
//!
//! - auth: client credentials (`POST /authentication/v1/authentication/login`); the access token
//!   is cached in plugin state under `token` until 5 minutes before it expires, and a data call
//!   answered 401 logs in again once and is retried once.
//! - `validate`: `GET /restaurants/v1/restaurants/{guid}`; the restaurant's currency is kept in
//!   state under `currency` (Toast orders carry none).
//! - `fetch-transactions`: `GET /orders/v2/ordersBulk` by `modifiedDate` window, paged by the
//!   `Link: <…>; rel="next"` header (the next-cursor is that absolute URL).
//! - webhooks: `Toast-Signature` = Base64(HMAC-SHA256(secret, raw body ‖ envelope `timestamp`));
//!   `order_updated` and `channel_order_updated` carry the full order.
//!
//! - orders (contract 0.3, module `orders`): `price-order` is `POST /orders/v2/prices`;
//!   `submit-order` is `POST /orders/v2/orders` with `externalId` = our order id, the dining
//!   option and (for a prepaid order) the OTHER payment type from the restaurant's
//!   configuration or the connect form's optional fields; a duplicate answers the existing
//!   order; `lookup-order` finds it by `externalId`; `get-order-status` maps approval,
//!   fulfillment, voided/deleted and `estimatedFulfillmentDate`. The guest's name, email and
//!   phone and the delivery address (module `guest`) are checked before anything is sent: an
//!   order missing a field Toast requires is `rejected` naming that field.
//! - menus (module `menus`): metadata first, the whole menu only when `lastUpdated` moved.
//! - stock (module `stock`): read and written through `/stock/v1/inventory`.
//! - webhooks also: the orders webhook yields the order's full status, `menus_updated` a
//!   catalog change, `in_stock` / `low_quantity` / `out_of_stock` availability.
//!
//! One Toast order is one canonical transaction (external id = order guid), `completed` once
//! money was captured. A check still OPEN (an outstanding balance) then counts for what its
//! captured payments paid, plus tips; the order's later update, once the check is paid or
//! closed, replaces the sale (same external id, newer `modifiedDate`) with the full amounts.
//! With nothing captured the order is `pending` for what its checks are due. Toast money is
//! decimal dollars as JSON numbers: converted from the number's text, never through `f64`.

use posbridge_sdk::errors::{self, NotFound};
use posbridge_sdk::http::{encode_component, join_url, Request, Response};
use posbridge_sdk::money;
use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{self, json, Value};
use posbridge_sdk::types::{CardInfo, CustomerRef, RateLimit, Tender, TransactionStatus};
use posbridge_sdk::{clock, signature, state, time};

mod guest;
mod links;
mod menus;
mod orders;
mod stock;

const SANDBOX: &str = "https://ws-sandbox-api.eng.toasttab.com";
const PRODUCTION: &str = "https://ws-api.toasttab.com";
const LOGIN_PATH: &str = "/authentication/v1/authentication/login";
const RESTAURANT_HEADER: &str = "Toast-Restaurant-External-ID";
const SIGNATURE_HEADER: &str = "Toast-Signature";
/// Orders webhook event types; Toast's orders webhook reference defines both, each carrying
/// the complete order (`channel_order_updated` for orders placed through a channel partner).
const ORDER_EVENTS: [&str; 2] = ["order_updated", "channel_order_updated"];
/// Orders per `ordersBulk` page (Toast's maximum).
const PAGE_SIZE: usize = 100;
/// State key of the cached access token ([`CachedToken`]).
const TOKEN_KEY: &str = "token";
/// State key of the restaurant's ISO-4217 currency (plain text), written by `validate`.
const CURRENCY_KEY: &str = "currency";
const DEFAULT_CURRENCY: &str = "USD";
/// A cached token is reused until this long before it expires.
const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;
/// Assumed lifetime of a token whose login answer has no usable `expiresIn`.
const DEFAULT_EXPIRES_IN_S: i64 = 3600;

struct Toast;

/// The access token kept in state between calls (each call runs in a fresh instance), as
/// `{"access_token", "expires_at_ms", "client"}`.
#[derive(Debug, PartialEq)]
struct CachedToken {
    access_token: String,
    /// Epoch milliseconds.
    expires_at_ms: i64,
    /// Which client and host the token belongs to (a hash, no secret): a token is not reused
    /// after the integration's client id or base URL changed.
    client: Option<String>,
}

impl CachedToken {
    /// The token in state, if there is a readable one.
    fn load() -> Option<CachedToken> {
        let value = match state::get_json::<Value>(TOKEN_KEY) {
            Ok(value) => value?,
            Err(e) => {
                posbridge_sdk::warn!("ignoring an unreadable cached Toast token: {e}");
                return None;
            }
        };
        Some(CachedToken {
            access_token: text(&value, "access_token")?,
            expires_at_ms: value.get("expires_at_ms")?.as_i64()?,
            client: text(&value, "client"),
        })
    }

    fn save(&self) {
        let mut value = json!({
            "access_token": self.access_token,
            "expires_at_ms": self.expires_at_ms,
        });
        if let Some(client) = &self.client {
            value["client"] = client.as_str().into();
        }
        if let Err(e) = state::set_json(TOKEN_KEY, &value) {
            posbridge_sdk::warn!("could not cache the Toast token: {e}");
        }
    }

    fn usable(&self, now: i64, client: &str) -> bool {
        !self.access_token.is_empty()
            && now.saturating_add(REFRESH_MARGIN_MS) < self.expires_at_ms
            && self.client.as_deref().is_none_or(|c| c == client)
    }
}

/// A stable, non-secret tag for (client id, base URL).
fn client_tag(client_id: &str, base: &str) -> String {
    let digest = signature::sha256(&[client_id.as_bytes(), b"\n", base.as_bytes()]);
    signature::hex_encode(&digest[..8])
}

/// Where an integration's calls go, and with which credentials.
pub(crate) struct Api<'a> {
    conn: &'a Connection,
    base: String,
}

impl<'a> Api<'a> {
    pub(crate) fn new(conn: &'a Connection) -> Self {
        Api {
            conn,
            base: conn.base_url(SANDBOX, PRODUCTION),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        join_url(&self.base, path)
    }

    /// A cached access token, or a fresh one from a login (always a login when `force`).
    fn token(&self, force: bool) -> Result<String, ProviderError> {
        let client_id = self.conn.require_credential("client_id")?;
        let client_secret = self.conn.require_credential("client_secret")?;
        let client = client_tag(client_id, &self.base);
        let now = clock::now();
        if !force {
            if let Some(cached) = CachedToken::load().filter(|t| t.usable(now, &client)) {
                return Ok(cached.access_token);
            }
        }
        let response = Request::post(self.url(LOGIN_PATH))
            .header("Accept", "application/json")
            .json(&json!({
                "clientId": client_id,
                "clientSecret": client_secret,
                "userAccessType": "TOAST_MACHINE_CLIENT",
            }))
            .send()?;
        let response = errors::check(response, NotFound::Upstream)
            .map_err(|e| prefix_message(e, "Toast login: "))?;
        let login: Value = response.json_or_upstream()?;
        let token = field(&login, "token");
        let access_token = token.and_then(|t| text(t, "accessToken")).ok_or_else(|| {
            ProviderError::upstream("Toast login answered without an accessToken")
        })?;
        let expires_in = token
            .and_then(|t| field(t, "expiresIn"))
            .and_then(seconds)
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_EXPIRES_IN_S);
        let cached = CachedToken {
            access_token,
            expires_at_ms: now.saturating_add(expires_in.saturating_mul(1000)),
            client: Some(client),
        };
        cached.save();
        posbridge_sdk::info!("logged in to Toast (token valid for {expires_in} s)");
        Ok(cached.access_token)
    }

    /// GET `url` with the token and the restaurant header; a 401 logs in again once (ignoring
    /// the cache) and retries once. Non-2xx answers → provider errors.
    fn get(&self, url: &str, not_found: NotFound) -> Result<Response, ProviderError> {
        self.call(|| Request::get(url), not_found)
    }

    /// Sends the request `build` makes, with the token and the restaurant header, as
    /// [`Api::get`] does (a 401 logs in again once; non-2xx → provider errors).
    pub(crate) fn call(
        &self,
        build: impl Fn() -> Request,
        not_found: NotFound,
    ) -> Result<Response, ProviderError> {
        finish(self.call_raw(&build)?, not_found)
    }

    /// Like [`Api::call`] but hands back any status (after the 401 retry), for callers that
    /// read a 404 or a duplicate themselves.
    pub(crate) fn call_raw(&self, build: &impl Fn() -> Request) -> Result<Response, ProviderError> {
        let send = |token: &str| {
            build()
                .bearer(token)
                .header(RESTAURANT_HEADER, self.conn.location_id.as_str())
                .header("Accept", "application/json")
                .send()
        };
        let mut response = send(&self.token(false)?)?;
        if response.status == 401 {
            posbridge_sdk::info!("Toast refused the access token (HTTP 401): logging in again");
            response = send(&self.token(true)?)?;
            if response.status == 401 {
                state::delete(TOKEN_KEY);
            }
        }
        Ok(response)
    }
}

/// A data call's answer → itself when 2xx, else the provider error (a 429 waits per Toast's
/// headers).
pub(crate) fn finish(response: Response, not_found: NotFound) -> Result<Response, ProviderError> {
    if response.status == 429 {
        return Err(rate_limited(&response, not_found));
    }
    log_rate_limit(&response);
    errors::check(response, not_found)
}

/// A whole number of seconds from a JSON number (`86400`, or `86400.0`).
fn seconds(value: &Value) -> Option<i64> {
    let number = value.as_number()?;
    number.as_i64().or_else(|| {
        let text = number.to_string();
        let (int, frac) = text.split_once('.')?;
        frac.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| int.parse().ok())
            .flatten()
    })
}

fn prefix_message(error: ProviderError, prefix: &str) -> ProviderError {
    error.map_message(|m| format!("{prefix}{m}"))
}

/// Milliseconds until `X-Toast-RateLimit-Reset` (a UNIX epoch timestamp, in seconds or
/// milliseconds; a small number is read as seconds from now).
fn reset_wait_ms(response: &Response, now: i64) -> Option<u64> {
    let value: i64 = response
        .header("x-toast-ratelimit-reset")?
        .trim()
        .parse()
        .ok()?;
    let at_ms = if value >= 100_000_000_000 {
        value
    } else if value >= 1_000_000_000 {
        value.saturating_mul(1000)
    } else {
        return u64::try_from(value).ok().map(|s| s.saturating_mul(1000));
    };
    Some(u64::try_from(at_ms.saturating_sub(now)).unwrap_or(0))
}

/// A 429 that survived the host's retries: `rate-limited`, waiting per `Retry-After`, else per
/// `X-Toast-RateLimit-Reset`.
fn rate_limited(response: &Response, not_found: NotFound) -> ProviderError {
    match errors::from_response(response, not_found) {
        ProviderError::RateLimited(RateLimit {
            message,
            retry_after_ms: None,
        }) => ProviderError::RateLimited(RateLimit {
            message,
            retry_after_ms: reset_wait_ms(response, clock::now()),
        }),
        other => other,
    }
}

/// `X-Toast-RateLimit-Remaining: 0`: the answer is good, but the next call would be refused.
fn log_rate_limit(response: &Response) {
    if response
        .header("x-toast-ratelimit-remaining")
        .is_some_and(|r| r.trim() == "0")
    {
        match reset_wait_ms(response, clock::now()) {
            Some(wait) => posbridge_sdk::warn!(
                "Toast rate limit exhausted (X-Toast-RateLimit-Remaining: 0); it resets in {wait} ms"
            ),
            None => posbridge_sdk::warn!(
                "Toast rate limit exhausted (X-Toast-RateLimit-Remaining: 0); reset time unknown"
            ),
        }
    }
}

/// The restaurant currency `validate` saved, else USD.
pub(crate) fn saved_currency() -> String {
    state::get_string(CURRENCY_KEY)
        .filter(|c| valid_currency(c))
        .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned())
}

fn valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// `value[name]`, unless absent or null.
pub(crate) fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.get(name).filter(|v| !v.is_null())
}

/// `value[name]` as a non-blank string (absent, null, blank or not a string → `None`).
pub(crate) fn text(value: &Value, name: &str) -> Option<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

/// `value[name] == true`.
pub(crate) fn flag(value: &Value, name: &str) -> bool {
    value.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// `value[name]` as an array (absent or null → empty); the error names `path`.
fn list<'a>(value: &'a Value, name: &str, path: &str) -> Result<&'a [Value], String> {
    match field(value, name) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{path}{name}: expected an array")),
    }
}

/// Whether `value[name]` is `expected`, ignoring case.
pub(crate) fn is(value: &Value, name: &str, expected: &str) -> bool {
    value
        .get(name)
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case(expected))
}

/// A check that is neither voided nor deleted.
pub(crate) fn live(check: &Value) -> bool {
    !flag(check, "voided") && !flag(check, "deleted")
}

/// Voided (and declined) payments are not spend.
fn counts(payment: &Value) -> bool {
    !is(payment, "paymentStatus", "VOIDED") && !is(payment, "paymentStatus", "DENIED")
}

/// Whether `payment` counts as money received for `check`. On a check still OPEN only a
/// captured payment does (an authorisation may yet be voided); on a paid or closed check
/// every payment that was not voided or declined.
fn paid(check: &Value, payment: &Value) -> bool {
    if !counts(payment) {
        return false;
    }
    !is(check, "paymentStatus", "OPEN")
        || payment
            .get("paymentStatus")
            .and_then(Value::as_str)
            .is_none_or(|s| s.eq_ignore_ascii_case("CAPTURED"))
}

fn tender(kind: Option<&str>) -> Tender {
    match kind {
        Some("CREDIT") => Tender::Card,
        Some("CASH") => Tender::Cash,
        Some("GIFTCARD") => Tender::GiftCard,
        _ => Tender::Other,
    }
}

/// Adds `value[name]`, decimal dollars as a JSON number (or a decimal string), exactly to
/// `sum` in minor units; absent or null adds nothing. The error names `path` + `name`.
fn add(sum: &mut i64, value: &Value, name: &str, currency: &str, path: &str) -> Result<(), String> {
    let Some(amount) = field(value, name) else {
        return Ok(());
    };
    let minor =
        money::value_to_minor(amount, currency).map_err(|e| format!("{path}{name}: {e}"))?;
    *sum = sum
        .checked_add(minor)
        .ok_or_else(|| format!("{path}{name}: amounts overflow"))?;
    Ok(())
}

/// `order[name]` as a timestamp (absent, null or empty → `None`).
pub(crate) fn timestamp(order: &Value, name: &str) -> Result<Option<i64>, String> {
    match field(order, name) {
        None => Ok(None),
        Some(Value::String(t)) if t.is_empty() => Ok(None),
        Some(Value::String(t)) => time::parse_timestamp(t)
            .map(Some)
            .map_err(|e| format!("{name}: {e}")),
        Some(_) => Err(format!("{name}: expected a timestamp string")),
    }
}

/// The order's guid, if it has a string one (for messages about an order that fails to map).
pub(crate) fn order_guid(value: &Value) -> &str {
    value
        .get("guid")
        .and_then(Value::as_str)
        .unwrap_or("<no guid>")
}

/// A Toast order (JSON) → one canonical transaction; the error says what is wrong.
fn to_transaction(
    order: Value,
    currency: &str,
    location: Option<&str>,
) -> Result<Transaction, String> {
    if !order.is_object() {
        return Err("expected an order object".into());
    }
    let guid = match order.get("guid") {
        Some(Value::String(guid)) if !guid.is_empty() => guid.clone(),
        _ => return Err("guid: missing or not a non-empty string".into()),
    };
    let occurred_at = match timestamp(&order, "closedDate")? {
        Some(at) => at,
        None => timestamp(&order, "openedDate")?.ok_or("neither closedDate nor openedDate")?,
    };
    let updated_at = timestamp(&order, "modifiedDate")?;
    let checks = list(&order, "checks", "")?;

    // Money was captured if a live check has a payment that counts for it. Then a check still
    // OPEN contributes what its captured payments paid (amounts plus tips), not what it is due:
    // its outstanding balance is not revenue. With nothing captured the order is pending and
    // carries what its checks are due.
    let mut first_payment: Option<&Value> = None;
    for (i, check) in checks.iter().enumerate() {
        let check_payments = list(check, "payments", &format!("checks[{i}]."))?;
        if live(check) {
            if let Some(p) = check_payments.iter().find(|p| paid(check, p)) {
                first_payment.get_or_insert(p);
            }
        }
    }
    let captured = first_payment.is_some();

    let (mut subtotal, mut tax, mut tip, mut discount, mut refunded) = (0, 0, 0, 0, 0);
    let (mut payments, mut voided, mut declined) = (0usize, false, false);
    let mut customer = None;
    for (i, check) in checks.iter().enumerate() {
        let path = format!("checks[{i}].");
        let check_payments = list(check, "payments", &path)?;
        payments += check_payments.len();
        voided |= check_payments
            .iter()
            .any(|p| is(p, "paymentStatus", "VOIDED"));
        declined |= check_payments
            .iter()
            .any(|p| is(p, "paymentStatus", "DENIED"));
        if !live(check) {
            continue;
        }
        // The tax and discount split of a partial payment is not known until the check
        // closes (the closed check's update then replaces this sale with the full breakdown).
        let partly_paid = captured && is(check, "paymentStatus", "OPEN");
        if !partly_paid {
            add(&mut subtotal, check, "amount", currency, &path)?;
            add(&mut tax, check, "taxAmount", currency, &path)?;
            for (j, d) in list(check, "appliedDiscounts", &path)?.iter().enumerate() {
                let path = format!("{path}appliedDiscounts[{j}].");
                add(&mut discount, d, "discountAmount", currency, &path)?;
            }
        }
        for (j, payment) in check_payments.iter().enumerate() {
            if !paid(check, payment) {
                continue;
            }
            let path = format!("{path}payments[{j}].");
            if partly_paid {
                add(&mut subtotal, payment, "amount", currency, &path)?;
            }
            add(&mut tip, payment, "tipAmount", currency, &path)?;
            let refund_open = payment
                .get("refundStatus")
                .and_then(Value::as_str)
                .is_none_or(|s| !s.eq_ignore_ascii_case("NONE"));
            if let Some(refund) = field(payment, "refund").filter(|_| refund_open) {
                let path = format!("{path}refund.");
                add(&mut refunded, refund, "refundAmount", currency, &path)?;
                add(&mut refunded, refund, "tipRefundAmount", currency, &path)?;
            }
        }
        if customer.is_none() {
            customer = field(check, "customer").and_then(customer_ref);
        }
    }
    let total = subtotal
        .checked_add(tax)
        .and_then(|t| t.checked_add(tip))
        .ok_or("amounts overflow")?;

    let order_voided = flag(&order, "voided") || flag(&order, "deleted");
    let every_check_voided = !checks.is_empty() && !checks.iter().any(live);
    let all_open = checks.iter().filter(|c| live(c)).all(|c| {
        c.get("paymentStatus")
            .and_then(Value::as_str)
            .is_none_or(|s| s.eq_ignore_ascii_case("OPEN"))
    });
    let status = if order_voided || every_check_voided {
        TransactionStatus::Voided
    } else if captured {
        TransactionStatus::Completed
    } else if all_open {
        TransactionStatus::Pending
    } else if payments > 0 && declined && !voided {
        // Every payment was declined.
        TransactionStatus::Failed
    } else if payments > 0 {
        // Every payment was voided.
        TransactionStatus::Voided
    } else {
        TransactionStatus::Completed
    };

    let card = first_payment
        .map(|p| CardInfo {
            brand: text(p, "cardType"),
            last4: text(p, "last4Digits"),
            fingerprint: None,
        })
        .filter(|c| c.brand.is_some() || c.last4.is_some());
    let kind = first_payment
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str);
    Ok(Transaction {
        order_id: Some(guid.clone()),
        location_id: location.filter(|l| !l.is_empty()).map(str::to_owned),
        updated_at,
        total,
        subtotal,
        tax,
        tip,
        discount,
        refunded,
        tender: tender(kind),
        card,
        customer,
        status,
        ..Transaction::new(guid, occurred_at, currency)
    })
}

fn customer_ref(c: &Value) -> Option<CustomerRef> {
    let name = [text(c, "firstName"), text(c, "lastName")]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let customer = CustomerRef {
        provider_customer_id: text(c, "guid"),
        phone: text(c, "phone"),
        email: text(c, "email"),
        name: (!name.is_empty()).then_some(name),
    };
    let any = customer.provider_customer_id.is_some()
        || customer.phone.is_some()
        || customer.email.is_some()
        || customer.name.is_some();
    any.then_some(customer)
}

/// An optional, non-secret field of the connect form.
fn optional_setting(name: &str, label: &str) -> CredentialField {
    CredentialField {
        name: name.into(),
        label: label.into(),
        secret: false,
        required: false,
    }
}

/// A stock webhook (`in_stock`, `low_quantity`, `out_of_stock`): `details` is one item, or a
/// list of them.
fn stock_event(event_type: &str, details: Option<&Value>) -> Vec<Availability> {
    let status = match event_type {
        "in_stock" => "IN_STOCK",
        "out_of_stock" => "OUT_OF_STOCK",
        _ => "QUANTITY",
    };
    match details {
        Some(Value::Array(entries)) => entries
            .iter()
            .filter_map(|e| stock::from_entry(e, Some(status)))
            .collect(),
        Some(entry) => stock::from_entry(entry, Some(status)).into_iter().collect(),
        None => Vec::new(),
    }
}

impl Guest for Toast {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "toast".into(),
            name: "Toast".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![
                Capability::Validate,
                Capability::FetchTransactions,
                Capability::Webhooks,
                Capability::SubmitOrders,
                Capability::PriceOrders,
                Capability::OrderStatus,
                Capability::FetchCatalog,
                // Toast has no partial menu, but from a sync token it answers `unchanged`
                // for one metadata call (else a full snapshot); the host passes the token
                // only to a plugin that declares this.
                Capability::FetchCatalogIncremental,
                Capability::ReadAvailability,
                Capability::WriteAvailability,
            ],
            credential_fields: vec![
                CredentialField {
                    name: "client_id".into(),
                    label: "Client ID".into(),
                    secret: false,
                    required: true,
                },
                CredentialField {
                    name: "client_secret".into(),
                    label: "Client secret".into(),
                    secret: true,
                    required: true,
                },
                optional_setting(
                    "takeout_dining_option",
                    "Dining option GUID for pickup orders (default: the restaurant's TAKE_OUT option)",
                ),
                optional_setting(
                    "delivery_dining_option",
                    "Dining option GUID for delivery orders (default: the restaurant's DELIVERY option)",
                ),
                optional_setting(
                    "dine_in_dining_option",
                    "Dining option GUID for dine-in orders (default: the restaurant's DINE_IN option)",
                ),
                optional_setting(
                    "payment_type",
                    "Alternate payment type GUID for prepaid orders (default: the one named like the channel, or the only one)",
                ),
            ],
            allowed_hosts: vec![
                "ws-api.toasttab.com".into(),
                "ws-sandbox-api.eng.toasttab.com".into(),
            ],
        }
    }

    fn validate(conn: Connection) -> Result<LocationInfo, ProviderError> {
        if conn.location_id.is_empty() {
            return Err(ProviderError::location_not_found(
                "no Toast restaurant GUID",
            ));
        }
        let api = Api::new(&conn);
        // Validation is what checks the credentials: always log in with them, never ride on
        // a token cached from another secret (the cache is only keyed by client id).
        api.token(true)?;
        let path = format!(
            "/restaurants/v1/restaurants/{}",
            encode_component(&conn.location_id)
        );
        let response = api.get(&api.url(&path), NotFound::Location)?;
        let restaurant: Value = response.json_or_upstream()?;
        let none = Value::Null;
        let general = field(&restaurant, "general").unwrap_or(&none);
        let currency = text(general, "currencyCode").map(|c| c.trim().to_ascii_uppercase());
        match currency.as_deref().filter(|c| valid_currency(c)) {
            Some(code) => {
                if let Err(e) = state::set_string(CURRENCY_KEY, code) {
                    posbridge_sdk::warn!("could not save the restaurant currency: {e}");
                }
            }
            None => state::delete(CURRENCY_KEY),
        }
        let id = text(&restaurant, "guid").unwrap_or_else(|| conn.location_id.clone());
        let business_name = text(general, "name");
        let name = text(general, "locationName")
            .or_else(|| business_name.clone())
            .unwrap_or_else(|| id.clone());
        Ok(LocationInfo {
            timezone: text(general, "timeZone"),
            currency,
            business_name,
            ..LocationInfo::new(id, name)
        })
    }

    fn fetch_transactions(
        conn: Connection,
        req: FetchRequest,
    ) -> Result<TransactionPage, ProviderError> {
        let api = Api::new(&conn);
        let url = match req.cursor.filter(|c| !c.is_empty()) {
            Some(cursor) if cursor.starts_with("https://") || cursor.starts_with("http://") => {
                cursor
            }
            Some(_) => {
                return Err(ProviderError::upstream(
                    "a Toast paging cursor must be the absolute URL of the next page",
                ))
            }
            None => {
                let query = posbridge_sdk::http::encode_query([
                    ("startDate", time::format_toast(req.start)),
                    ("endDate", time::format_toast(req.end)),
                    ("pageSize", PAGE_SIZE.to_string()),
                    ("page", "1".to_owned()),
                ]);
                format!("{}?{query}", api.url("/orders/v2/ordersBulk"))
            }
        };
        let response = api.get(&url, NotFound::Upstream)?;
        let orders: Vec<Value> = response.json_or_upstream()?;
        let fetched = orders.len();
        let currency = saved_currency();
        let mut transactions = Vec::with_capacity(fetched);
        for value in orders {
            let guid = order_guid(&value).to_owned();
            match to_transaction(value, &currency, Some(&conn.location_id)) {
                Ok(transaction) => transactions.push(transaction),
                Err(reason) => posbridge_sdk::warn!("skipping Toast order {guid}: {reason}"),
            }
        }
        let next_cursor = if fetched < PAGE_SIZE {
            None
        } else {
            links::next(&response.headers, &url)
        };
        posbridge_sdk::debug!(
            "fetched {fetched} Toast orders ({} mapped), more: {}",
            transactions.len(),
            next_cursor.is_some()
        );
        Ok(TransactionPage {
            transactions,
            next_cursor,
        })
    }

    fn verify_webhook(webhook: Webhook, signature_key: String) -> bool {
        // An empty secret would make the HMAC forgeable by anyone.
        if signature_key.is_empty() {
            return false;
        }
        let Some(sig) = webhook.header(SIGNATURE_HEADER) else {
            return false;
        };
        let Ok(envelope) = serde_json::from_slice::<Value>(&webhook.body) else {
            return false;
        };
        let timestamp = match envelope.get("timestamp") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => return false,
        };
        signature::verify_hmac_sha256_base64(
            signature_key.as_bytes(),
            &[&webhook.body, timestamp.as_bytes()],
            sig,
        )
    }

    fn parse_webhook(webhook: Webhook) -> Result<WebhookEvent, ProviderError> {
        let envelope: Value = webhook.json()?;
        let text = |pointer: &str, name: &str| {
            envelope
                .pointer(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ProviderError::bad_payload(format!("webhook body: no `{name}`")))
        };
        let event_id = text("/guid", "guid")?;
        let event_type = text("/eventType", "eventType")?;
        let mut event = WebhookEvent::new(event_id.clone(), event_type.clone());
        match event_type.as_str() {
            "menus_updated" => {
                event.catalog_changed = true;
                return Ok(event);
            }
            "in_stock" | "low_quantity" | "out_of_stock" => {
                event.availability = stock_event(&event_type, envelope.get("details"));
                if event.availability.is_empty() {
                    return Err(ProviderError::bad_payload(format!(
                        "{event_type} {event_id}: no details.itemGuid"
                    )));
                }
                return Ok(event);
            }
            _ => {}
        }
        let transactions = if ORDER_EVENTS.contains(&event_type.as_str()) {
            let order = envelope
                .pointer("/details/order")
                .filter(|o| o.is_object())
                .cloned()
                .ok_or_else(|| {
                    ProviderError::bad_payload(format!("{event_type} {event_id}: no details.order"))
                })?;
            let restaurant = envelope
                .pointer("/details/restaurantGuid")
                .and_then(Value::as_str);
            let guid = order_guid(&order).to_owned();
            // The orders webhook carries the whole order: its status travels with it.
            let status = orders::order_status(&order).map_err(|e| {
                ProviderError::bad_payload(format!("{event_type} {event_id}: {}", e.message()))
            })?;
            event.order_updates = vec![OrderUpdate {
                provider_order_id: status.provider_order_id.clone(),
                version: status.version,
                status: Some(status),
            }];
            let transaction =
                to_transaction(order, &saved_currency(), restaurant).map_err(|e| {
                    ProviderError::bad_payload(format!(
                        "{event_type} {event_id}: order {guid}: {e}"
                    ))
                })?;
            vec![transaction]
        } else {
            Vec::new()
        };
        Ok(WebhookEvent {
            transactions,
            ..event
        })
    }

    fn parse_push(_body: Vec<u8>) -> Result<Vec<Transaction>, ProviderError> {
        Err(ProviderError::unsupported(
            "Toast sales are polled and delivered by webhooks, not pushed",
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
        menus::fetch(&conn, &request)
    }

    fn get_availability(
        conn: Connection,
        provider_ids: Vec<String>,
    ) -> Result<Vec<Availability>, ProviderError> {
        stock::read(&conn, &provider_ids)
    }

    fn set_availability(
        conn: Connection,
        changes: Vec<Availability>,
    ) -> Result<Vec<Availability>, ProviderError> {
        stock::write(&conn, &changes)
    }
}

posbridge_sdk::export_provider!(Toast);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
