//! Who a Toast order is for and where it goes: `checks[].customer` and `deliveryInfo`, built
//! from our fulfilment and checked before anything is sent.
//!
//! Toast requires `checks[].customer{firstName, lastName, email, phone}` on TAKE_OUT and
//! DELIVERY orders and a `deliveryInfo{address1, city, state, zipCode}` on DELIVERY orders
//! (its orders guide, "Order details based on the order dining option", and the `Customer`
//! and `DeliveryInfo` schemas, which mark those fields required). Toast documents no
//! placeholder or relaxed form for any of them, so an order that cannot fill one is
//! answered `rejected` naming the Toast field (`checks[0].customer.lastName`,
//! `deliveryInfo.zipCode`) before any call: the host records a reason an operator can act
//! on instead of Toast's 400, and nothing half-made reaches the POS. Inventing a last name
//! or an address part would put a wrong name on the ticket or send a driver to a guessed
//! place, which is worse than refusing.

use posbridge_sdk::provider::*;
use posbridge_sdk::serde_json::{json, Map, Value};

/// The guest's part of a Toast order: the check's `customer` and the order's
/// `deliveryInfo`, each when the order carries one.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Guest {
    /// `checks[0].customer`.
    pub(crate) customer: Option<Value>,
    /// `deliveryInfo`, for DELIVERY orders.
    pub(crate) delivery: Option<Value>,
}

fn missing(field: &str, message: String) -> ProviderError {
    ProviderError::rejected(
        None,
        Some("MISSING_FIELD".into()),
        message,
        Some(field.into()),
    )
}

fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// "Ann Marie Example" → ("Ann Marie", "Example"); one word has no last name.
fn split_name(name: &str) -> (Option<&str>, Option<&str>) {
    match name.trim().rsplit_once(char::is_whitespace) {
        Some((first, last)) => (present(Some(first)), present(Some(last))),
        None => (present(Some(name)), None),
    }
}

/// The guest of `f` as Toast takes it, or `rejected` naming the Toast field it cannot fill.
///
/// Pickup (TAKE_OUT) and delivery orders need the whole customer; a dine-in order needs
/// none, so it carries the customer only when every field is known (Toast's `Customer`
/// requires all four whenever one is sent).
pub(crate) fn guest(f: &Fulfilment) -> Result<Guest, ProviderError> {
    let behavior = match f.kind {
        FulfilmentKind::Pickup => "TAKE_OUT",
        FulfilmentKind::Delivery => "DELIVERY",
        FulfilmentKind::DineIn => "DINE_IN",
    };
    let required = f.kind != FulfilmentKind::DineIn;
    let (first, last) = split_name(&f.customer_name);
    let email = present(f.customer_email.as_deref());
    let phone = present(f.customer_phone.as_deref());
    let customer = match (first, last, email, phone) {
        (Some(first), Some(last), Some(email), Some(phone)) => Some(json!({
            "firstName": first,
            "lastName": last,
            "email": email,
            "phone": phone,
        })),
        _ if !required => None,
        (None, ..) => {
            return Err(missing(
                "checks[0].customer.firstName",
                format!("Toast needs the guest's name (firstName, lastName) on a {behavior} order; the order has no customer name"),
            ))
        }
        (_, None, ..) => {
            return Err(missing(
                "checks[0].customer.lastName",
                format!(
                    "Toast needs the guest's first and last name (lastName) on a {behavior} order; the customer name {:?} has no last name",
                    f.customer_name.trim()
                ),
            ))
        }
        (_, _, None, _) => {
            return Err(missing(
                "checks[0].customer.email",
                format!("Toast needs the guest's email on a {behavior} order; the order has none"),
            ))
        }
        (.., None) => {
            return Err(missing(
                "checks[0].customer.phone",
                format!("Toast needs the guest's phone number (phone) on a {behavior} order; the order has none"),
            ))
        }
    };
    let delivery = if f.kind == FulfilmentKind::Delivery {
        let address = delivery_address(&f.delivery_address).map_err(|field| {
            missing(
                &format!("deliveryInfo.{field}"),
                format!(
                    "Toast needs the delivery address's {field}; write the address as \"street, [unit,] city, ST ZIP[, country]\" (one part or several per line), got {:?}",
                    f.delivery_address.join(" / ")
                ),
            )
        })?;
        let mut info = address.json();
        if let Some(note) = present(f.note.as_deref()) {
            info.insert("notes".into(), json!(note));
        }
        Some(Value::Object(info))
    } else {
        None
    };
    Ok(Guest { customer, delivery })
}

/// A delivery address in Toast's `DeliveryInfo` fields.
#[derive(Debug, PartialEq)]
pub(crate) struct Address {
    pub(crate) address1: String,
    pub(crate) address2: Option<String>,
    pub(crate) city: String,
    /// The state or province's two-letter postal abbreviation, upper case (ISO 3166-2's
    /// subdivision part, as Toast asks).
    pub(crate) state: String,
    pub(crate) zip_code: String,
    /// ISO 3166-1 alpha-2, when the address names its country.
    pub(crate) country: Option<&'static str>,
}

impl Address {
    fn json(&self) -> Map<String, Value> {
        let mut info = Map::new();
        info.insert("address1".into(), json!(self.address1));
        if let Some(a2) = &self.address2 {
            info.insert("address2".into(), json!(a2));
        }
        info.insert("city".into(), json!(self.city));
        info.insert("state".into(), json!(self.state));
        info.insert("zipCode".into(), json!(self.zip_code));
        if let Some(country) = self.country {
            info.insert("country".into(), json!(country));
        }
        info
    }
}

/// A two-letter state or province abbreviation ("IL", "on").
fn is_state(text: &str) -> bool {
    text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A US ZIP code ("62701", "62701-1234") or a Canadian postal code ("M5V 3L9", "m5v3l9"):
/// the postal codes of the places Toast's `state` + `zipCode` describe. Kept strict so a
/// street line ("PO Box 12") is never taken for one.
fn zip_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let us = (b.len() == 5 && digits(b))
        || (b.len() == 10 && digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]));
    if us {
        return Some(text.to_owned());
    }
    let compact: Vec<u8> = b.iter().copied().filter(|c| *c != b' ').collect();
    let canadian = compact.len() == 6
        && (b.len() == 6 || (b.len() == 7 && b[3] == b' '))
        && compact.iter().enumerate().all(|(i, c)| {
            if i % 2 == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_digit()
            }
        });
    canadian.then(|| {
        let upper = String::from_utf8_lossy(&compact).to_ascii_uppercase();
        format!("{} {}", &upper[..3], &upper[3..])
    })
}

/// "IL 62701" → ("IL", "62701").
fn state_and_zip(part: &str) -> Option<(String, String)> {
    let (state, zip) = part.split_once(char::is_whitespace)?;
    let zip = zip_code(zip.trim())?;
    is_state(state).then(|| (state.to_ascii_uppercase(), zip))
}

/// A country named as the address's last part.
fn country(part: &str) -> Option<&'static str> {
    let name: String = part
        .chars()
        .filter(|c| *c != '.')
        .collect::<String>()
        .to_ascii_lowercase();
    match name.as_str() {
        "us" | "usa" | "united states" | "united states of america" => Some("US"),
        "canada" => Some("CA"),
        _ => None,
    }
}

/// Our delivery address → Toast's fields, or the Toast field (`address1`, `city`, `state`,
/// `zipCode`) it does not give.
///
/// The contract carries the address as lines (`delivery-address`), not as fields, so this
/// reads the lines as an address is written where Toast's `state` and `zipCode` apply (the
/// US and Canada): the street first, then any unit or building lines, then the city, then
/// "ST ZIP" (or "ST" and "ZIP" as two parts), then optionally the country. Commas and line
/// breaks both separate parts, so `["1 Main St", "Apt 2", "Springfield, IL 62701"]` and
/// `["1 Main St, Apt 2, Springfield, IL 62701, USA"]` read alike.
pub(crate) fn delivery_address(lines: &[String]) -> Result<Address, &'static str> {
    let mut parts: Vec<&str> = lines
        .iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("address1");
    }
    let mut named_country = None;
    if parts.len() > 1 {
        if let Some(code) = parts.last().and_then(|p| country(p)) {
            named_country = Some(code);
            parts.pop();
        }
    }
    let last = parts.len() - 1;
    let tail = match state_and_zip(parts[last]) {
        Some((state, zip)) => Some((state, zip, last)),
        None if last >= 1 && is_state(parts[last - 1]) => {
            zip_code(parts[last]).map(|zip| (parts[last - 1].to_ascii_uppercase(), zip, last - 1))
        }
        None => None,
    };
    let Some((state, zip_code, end)) = tail else {
        // Name what is most likely wrong: a state given alone or with a malformed code is
        // missing its ZIP code, anything else its state (and ZIP code).
        let (first_word, rest) = parts[last]
            .split_once(char::is_whitespace)
            .unwrap_or((parts[last], ""));
        let bad_zip =
            is_state(first_word) && (rest.is_empty() || rest.bytes().any(|b| b.is_ascii_digit()));
        return Err(if parts.len() < 2 {
            "city"
        } else if bad_zip {
            "zipCode"
        } else {
            "state"
        });
    };
    match &parts[..end] {
        [] => Err("address1"),
        [_] => Err("city"),
        [address1, middle @ .., city] => Ok(Address {
            address1: (*address1).to_owned(),
            address2: (!middle.is_empty()).then(|| middle.join(", ")),
            city: (*city).to_owned(),
            state,
            zip_code,
            country: named_country,
        }),
    }
}
