//! Square's pricing of an order in the mock, shared by `POST /v2/orders/calculate` and
//! `POST /v2/orders` ([`crate::mock_square_orders`]): line items from the catalog (nested
//! variations and modifiers, deleted ones refused) or ad hoc with `base_price_money`,
//! quantities as decimal strings, modifiers per unit, taxes only when the order asks for
//! them, one fulfillment at most; refusals in Square's error envelope naming the field.
//!
//! Taxes, as Square applies them: the order's own `taxes[]` (catalog or ad hoc, scoped to
//! the order or to the lines that list them in `applied_taxes`), and, with
//! `pricing_options.auto_apply_taxes`, the seller's catalog taxes: on a catalog line the
//! `tax_ids` of the variation's item, on an ad hoc line every tax that applies to custom
//! amounts; only enabled taxes present at the order's location. Without the option and
//! without `taxes[]` an order carries no tax at all, which is what a client that forgets the
//! option gets from Square.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::mock_orders::{decimal, times};
use crate::mock_square::SquareApi;

/// Square's limits on the fields the plugin fills.
pub(crate) const MAX_REFERENCE_ID: usize = 40;
pub(crate) const MAX_TICKET_NAME: usize = 30;

/// A refusal: status and Square's error body.
pub(crate) type Refusal = (u16, Value);

pub(crate) fn error(status: u16, code: &str, field: Option<&str>, detail: &str) -> Refusal {
    let category = if status == 401 {
        "AUTHENTICATION_ERROR"
    } else {
        "INVALID_REQUEST_ERROR"
    };
    let mut e = json!({"category": category, "code": code, "detail": detail});
    if let Some(field) = field {
        e["field"] = json!(field);
    }
    (status, json!({ "errors": [e] }))
}

pub(crate) fn missing(field: &str) -> Refusal {
    error(
        400,
        "MISSING_REQUIRED_PARAMETER",
        Some(field),
        &format!("Field must be set: {field}."),
    )
}

pub(crate) fn invalid(field: &str, detail: &str) -> Refusal {
    error(400, "INVALID_VALUE", Some(field), detail)
}

pub(crate) fn too_long(field: &str, max: usize) -> Refusal {
    error(
        400,
        "VALUE_TOO_LONG",
        Some(field),
        &format!("Field `{field}` must be at most {max} characters."),
    )
}

/// A positive decimal with at most 5 decimals, as Square's quantity strings are, scaled by
/// 10^5.
fn quantity(text: &str) -> Option<i128> {
    let scaled = decimal(text, 5)?;
    (scaled > 0 && text.len() <= 12).then_some(scaled)
}

pub(crate) fn money(amount: i64, currency: &str) -> Value {
    json!({"amount": amount, "currency": currency})
}

/// A `Money` object's amount, checked against the location's currency.
pub(crate) fn read_money(value: &Value, field: &str, currency: &str) -> Result<i64, Refusal> {
    let Some(amount) = value.get("amount").and_then(Value::as_i64) else {
        return Err(missing(&format!("{field}.amount")));
    };
    if amount < 0 {
        return Err(error(
            400,
            "VALUE_TOO_LOW",
            Some(&format!("{field}.amount")),
            "Amounts must not be negative.",
        ));
    }
    match value.get("currency").and_then(Value::as_str) {
        Some(c) if c == currency => Ok(amount),
        Some(c) => Err(error(
            400,
            "INVALID_CURRENCY",
            Some(&format!("{field}.currency")),
            &format!("This location only accepts {currency}, not {c}."),
        )),
        None => Err(missing(&format!("{field}.currency"))),
    }
}

/// The live catalog object `id` of type `kind`, at the top level or nested (variations in
/// their item, modifiers in their list, as Square stores them).
pub(crate) fn live_catalog<'a>(api: &'a SquareApi, id: &str, kind: &str) -> Option<&'a Value> {
    let nested = api.catalog.iter().flat_map(|o| {
        ["/item_data/variations", "/modifier_list_data/modifiers"]
            .into_iter()
            .filter_map(move |p| o.pointer(p).and_then(Value::as_array))
            .flatten()
    });
    api.catalog
        .iter()
        .chain(nested)
        .find(|o| o["id"] == id && o["type"] == kind && o["is_deleted"] != true)
}

pub(crate) fn text<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

/// Checks a sparse string field's length.
pub(crate) fn check_len(order: &Value, name: &str, max: usize) -> Result<(), Refusal> {
    match order.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(()),
        Some(Value::String(_)) => Err(too_long(&format!("order.{name}"), max)),
        Some(_) => Err(error(
            400,
            "EXPECTED_STRING",
            Some(&format!("order.{name}")),
            "Expected a string value.",
        )),
    }
}

/// One tax the order carries: (uid, name, percentage text, percentage scaled by 10^4, scope,
/// catalog id, whether Square applied it from the catalog on its own).
struct Tax {
    uid: String,
    name: String,
    percentage: String,
    scaled: i128,
    scope: String,
    catalog_id: Option<String>,
    auto_applied: bool,
}

impl Tax {
    fn json(&self, currency: &str, applied: i64) -> Value {
        let mut t = json!({
            "uid": self.uid, "name": self.name, "percentage": self.percentage,
            "type": "ADDITIVE", "scope": self.scope,
            "applied_money": money(applied, currency),
        });
        if let Some(id) = &self.catalog_id {
            t["catalog_object_id"] = json!(id);
        }
        if self.auto_applied {
            t["auto_applied"] = json!(true);
        }
        t
    }
}

fn tax_from_catalog(api: &SquareApi, id: &str, uid: String, scope: &str) -> Option<Tax> {
    let object = live_catalog(api, id, "TAX")?;
    let percentage = object.pointer("/tax_data/percentage")?.as_str()?.to_owned();
    Some(Tax {
        uid,
        name: object.pointer("/tax_data/name")?.as_str()?.to_owned(),
        scaled: decimal(&percentage, 4)?,
        percentage,
        scope: scope.to_owned(),
        catalog_id: Some(id.to_owned()),
        auto_applied: false,
    })
}

/// Whether catalog `object` is present at `location` (Square's presence fields).
fn present_at(object: &Value, location: &str) -> bool {
    let listed = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_array)
            .is_some_and(|ids| ids.iter().any(|id| id == location))
    };
    if object["present_at_all_locations"] == true {
        !listed("absent_at_location_ids")
    } else {
        listed("present_at_location_ids")
    }
}

/// The catalog tax `id` as Square auto-applies it at `location`: live, enabled and present
/// there, else none.
fn auto_tax(api: &SquareApi, id: &str, location: &str) -> Option<Tax> {
    let object = live_catalog(api, id, "TAX")?;
    if object.pointer("/tax_data/enabled") == Some(&json!(false)) || !present_at(object, location) {
        return None;
    }
    let mut tax = tax_from_catalog(api, id, format!("auto-{id}"), "LINE_ITEM")?;
    tax.auto_applied = true;
    Some(tax)
}

/// Prices `order` as Square would (`calculate`, and the first step of a create): the priced
/// order without id, version or timestamps.
pub(crate) fn price(api: &SquareApi, order: &Value) -> Result<Value, Refusal> {
    let Some(location_id) = text(order, "location_id").filter(|l| !l.is_empty()) else {
        return Err(missing("order.location_id"));
    };
    let Some(location) = api.locations.iter().find(|l| l["id"] == location_id) else {
        return Err(error(
            404,
            "NOT_FOUND",
            Some("order.location_id"),
            &format!("Location `{location_id}` not found."),
        ));
    };
    let currency = text(location, "currency").unwrap_or("USD").to_owned();
    check_len(order, "reference_id", MAX_REFERENCE_ID)?;
    check_len(order, "ticket_name", MAX_TICKET_NAME)?;
    for refused in ["discounts", "service_charges"] {
        if order
            .get(refused)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            return Err(invalid(
                &format!("order.{refused}"),
                &format!("The mock does not model {refused}."),
            ));
        }
    }
    // Order-level taxes first; auto-applied item taxes join per line.
    let mut taxes: Vec<Tax> = Vec::new();
    for (i, t) in order
        .get("taxes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("order.taxes[{i}]");
        let uid = text(t, "uid").map_or_else(|| format!("tax-{i}"), str::to_owned);
        let scope = text(t, "scope").unwrap_or("ORDER").to_owned();
        let tax = match text(t, "catalog_object_id") {
            Some(id) => tax_from_catalog(api, id, uid, &scope).ok_or_else(|| {
                invalid(
                    &format!("{field}.catalog_object_id"),
                    &format!("Tax with catalog object ID `{id}` not found."),
                )
            })?,
            None => {
                let percentage =
                    text(t, "percentage").ok_or_else(|| missing(&format!("{field}.percentage")))?;
                Tax {
                    uid,
                    name: text(t, "name").unwrap_or("Tax").to_owned(),
                    scaled: decimal(percentage, 4).ok_or_else(|| {
                        invalid(&format!("{field}.percentage"), "Invalid percentage.")
                    })?,
                    percentage: percentage.to_owned(),
                    scope,
                    catalog_id: None,
                    auto_applied: false,
                }
            }
        };
        taxes.push(tax);
    }
    // Where Square auto-applies the seller's catalog taxes (the order's location), if asked.
    let auto_taxes = (order
        .pointer("/pricing_options/auto_apply_taxes")
        .and_then(Value::as_bool)
        == Some(true))
    .then_some(location_id);
    let mut lines = Vec::new();
    let (mut total, mut total_tax) = (0i64, 0i64);
    let mut tax_totals: HashMap<String, i64> = HashMap::new();
    for (i, line) in order
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("order.line_items[{i}]");
        let priced = price_line(api, line, &field, &currency, &taxes, auto_taxes)?;
        total += priced.total;
        total_tax += priced.tax;
        for (uid, applied) in &priced.taxes {
            *tax_totals.entry(uid.clone()).or_default() += applied;
        }
        for tax in priced.auto_taxes {
            if !taxes.iter().any(|t| t.uid == tax.uid) {
                taxes.push(tax);
            }
        }
        lines.push(priced.json);
    }
    let fulfillments = check_fulfillments(order)?;
    let mut priced = Map::new();
    for copied in [
        "location_id",
        "reference_id",
        "source",
        "ticket_name",
        "metadata",
        "customer_id",
        "pricing_options",
    ] {
        if let Some(v) = order.get(copied).filter(|v| !v.is_null()) {
            priced.insert(copied.into(), v.clone());
        }
    }
    priced.insert("line_items".into(), Value::Array(lines));
    if !taxes.is_empty() {
        let rendered = taxes
            .iter()
            .map(|t| t.json(&currency, tax_totals.get(&t.uid).copied().unwrap_or(0)))
            .collect();
        priced.insert("taxes".into(), Value::Array(rendered));
    }
    if !fulfillments.is_empty() {
        priced.insert("fulfillments".into(), Value::Array(fulfillments));
    }
    let zero = money(0, &currency);
    priced.insert("total_money".into(), money(total, &currency));
    priced.insert("total_tax_money".into(), money(total_tax, &currency));
    priced.insert("total_discount_money".into(), zero.clone());
    priced.insert("total_tip_money".into(), zero.clone());
    priced.insert("total_service_charge_money".into(), zero.clone());
    priced.insert(
        "net_amounts".into(),
        json!({"total_money": money(total, &currency), "tax_money": money(total_tax, &currency),
               "discount_money": zero, "tip_money": zero, "service_charge_money": zero}),
    );
    priced.insert("net_amount_due_money".into(), money(total, &currency));
    priced.insert("state".into(), json!("OPEN"));
    Ok(Value::Object(priced))
}

struct PricedLine {
    json: Value,
    total: i64,
    tax: i64,
    /// (tax uid, amount applied to this line).
    taxes: Vec<(String, i64)>,
    auto_taxes: Vec<Tax>,
}

fn price_line(
    api: &SquareApi,
    line: &Value,
    field: &str,
    currency: &str,
    taxes: &[Tax],
    auto_taxes: Option<&str>,
) -> Result<PricedLine, Refusal> {
    let qty_text = match line.get("quantity") {
        Some(Value::String(q)) => q.as_str(),
        Some(_) => {
            return Err(error(
                400,
                "EXPECTED_STRING",
                Some(&format!("{field}.quantity")),
                "Expected a string value.",
            ))
        }
        None => return Err(missing(&format!("{field}.quantity"))),
    };
    let qty = quantity(qty_text).ok_or_else(|| {
        invalid(
            &format!("{field}.quantity"),
            &format!("`{qty_text}` is not a positive decimal with at most 5 places."),
        )
    })?;
    let mut out = Map::new();
    out.insert(
        "uid".into(),
        json!(text(line, "uid").map_or_else(|| crate::random_suffix(22), str::to_owned)),
    );
    out.insert("quantity".into(), json!(qty_text));
    out.insert("item_type".into(), json!("ITEM"));
    let mut item_taxes: Vec<Tax> = Vec::new();
    let base = match text(line, "catalog_object_id") {
        Some(id) => {
            let variation = live_catalog(api, id, "ITEM_VARIATION").ok_or_else(|| {
                invalid(
                    &format!("{field}.catalog_object_id"),
                    &format!("Item variation with catalog object ID `{id}` not found."),
                )
            })?;
            let data = &variation["item_variation_data"];
            let item = text(data, "item_id").and_then(|i| live_catalog(api, i, "ITEM"));
            let name = item
                .and_then(|i| i.pointer("/item_data/name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.insert("catalog_object_id".into(), json!(id));
            out.insert("catalog_version".into(), variation["version"].clone());
            out.insert("name".into(), json!(name));
            out.insert("variation_name".into(), data["name"].clone());
            if let Some(location) = auto_taxes {
                item_taxes.extend(
                    item.and_then(|i| i.pointer("/item_data/tax_ids"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .filter_map(|tax_id| auto_tax(api, tax_id, location)),
                );
            }
            match line.get("base_price_money") {
                Some(m) => read_money(m, &format!("{field}.base_price_money"), currency)?,
                None => match data.get("price_money") {
                    Some(m) => read_money(m, &format!("{field}.catalog price"), currency)?,
                    None => {
                        return Err(missing(&format!("{field}.base_price_money")));
                    }
                },
            }
        }
        None => {
            let name = text(line, "name").filter(|n| !n.trim().is_empty());
            let Some(name) = name else {
                return Err(missing(&format!("{field}.name")));
            };
            out.insert("name".into(), json!(name));
            // A custom amount: Square applies every catalog tax that applies to one.
            if let Some(location) = auto_taxes {
                item_taxes.extend(
                    api.catalog
                        .iter()
                        .filter(|o| {
                            o["type"] == "TAX"
                                && o.pointer("/tax_data/applies_to_custom_amounts")
                                    == Some(&json!(true))
                        })
                        .filter_map(|o| o["id"].as_str())
                        .filter_map(|tax_id| auto_tax(api, tax_id, location)),
                );
            }
            let m = line
                .get("base_price_money")
                .ok_or_else(|| missing(&format!("{field}.base_price_money")))?;
            read_money(m, &format!("{field}.base_price_money"), currency)?
        }
    };
    if let Some(note) = line.get("note").filter(|n| !n.is_null()) {
        out.insert("note".into(), note.clone());
    }
    let variation_total = times(base, qty, 5);
    let mut modifiers_total = 0i64;
    let mut modifiers = Vec::new();
    for (j, m) in line
        .get("modifiers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mfield = format!("{field}.modifiers[{j}]");
        let mqty_text = match m.get("quantity") {
            None => "1",
            Some(Value::String(q)) => q.as_str(),
            Some(_) => {
                return Err(error(
                    400,
                    "EXPECTED_STRING",
                    Some(&format!("{mfield}.quantity")),
                    "Expected a string value.",
                ))
            }
        };
        let mqty = quantity(mqty_text)
            .ok_or_else(|| invalid(&format!("{mfield}.quantity"), "Not a positive decimal."))?;
        let mut rendered = json!({"uid": text(m, "uid").map_or_else(|| crate::random_suffix(22), str::to_owned),
                                  "quantity": mqty_text});
        let unit = match text(m, "catalog_object_id") {
            Some(id) => {
                let modifier = live_catalog(api, id, "MODIFIER").ok_or_else(|| {
                    invalid(
                        &format!("{mfield}.catalog_object_id"),
                        &format!("Modifier with catalog object ID `{id}` not found."),
                    )
                })?;
                rendered["catalog_object_id"] = json!(id);
                rendered["catalog_version"] = modifier["version"].clone();
                rendered["name"] = modifier["modifier_data"]["name"].clone();
                match modifier.pointer("/modifier_data/price_money") {
                    Some(p) => read_money(p, &format!("{mfield}.catalog price"), currency)?,
                    None => 0,
                }
            }
            None => {
                let Some(name) = text(m, "name").filter(|n| !n.trim().is_empty()) else {
                    return Err(missing(&format!("{mfield}.name")));
                };
                rendered["name"] = json!(name);
                let p = m
                    .get("base_price_money")
                    .ok_or_else(|| missing(&format!("{mfield}.base_price_money")))?;
                read_money(p, &format!("{mfield}.base_price_money"), currency)?
            }
        };
        // A modifier counts once per modifier quantity per line unit.
        let each = times(unit, mqty, 5);
        let modifier_total = times(each, qty, 5);
        rendered["base_price_money"] = money(unit, currency);
        rendered["total_price_money"] = money(modifier_total, currency);
        modifiers_total += modifier_total;
        modifiers.push(rendered);
    }
    if !modifiers.is_empty() {
        out.insert("modifiers".into(), Value::Array(modifiers));
    }
    let gross = variation_total + modifiers_total;
    let line_tax_uids: Vec<&str> = line
        .get("applied_taxes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| text(t, "tax_uid"))
        .collect();
    for uid in &line_tax_uids {
        if !taxes.iter().any(|t| t.uid == *uid) {
            return Err(invalid(
                &format!("{field}.applied_taxes"),
                &format!("No tax with uid `{uid}` on the order."),
            ));
        }
    }
    let applies = taxes
        .iter()
        .filter(|t| t.scope == "ORDER" || line_tax_uids.contains(&t.uid.as_str()))
        .chain(item_taxes.iter());
    let mut applied = Vec::new();
    let mut tax = 0i64;
    for t in applies {
        let amount = times(gross, t.scaled, 6);
        tax += amount;
        applied.push((t.uid.clone(), amount));
    }
    out.insert(
        "applied_taxes".into(),
        applied
            .iter()
            .map(|(uid, a)| json!({"uid": format!("{uid}-applied"), "tax_uid": uid, "applied_money": money(*a, currency)}))
            .collect(),
    );
    out.insert("base_price_money".into(), money(base, currency));
    out.insert(
        "variation_total_price_money".into(),
        money(variation_total, currency),
    );
    out.insert("gross_sales_money".into(), money(gross, currency));
    out.insert("total_tax_money".into(), money(tax, currency));
    out.insert("total_discount_money".into(), money(0, currency));
    out.insert("total_money".into(), money(gross + tax, currency));
    Ok(PricedLine {
        json: Value::Object(out),
        total: gross + tax,
        tax,
        taxes: applied,
        auto_taxes: item_taxes,
    })
}

/// At most one fulfillment through the API; a PICKUP needs its recipient, a SCHEDULED one
/// its `pickup_at`. Answers them with uids and their state (PROPOSED unless given).
fn check_fulfillments(order: &Value) -> Result<Vec<Value>, Refusal> {
    let list = order
        .get("fulfillments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.len() > 1 {
        return Err(invalid(
            "order.fulfillments",
            "Only one fulfillment can be specified when creating an order through the API.",
        ));
    }
    let mut out = Vec::new();
    for (i, f) in list.into_iter().enumerate() {
        let field = format!("order.fulfillments[{i}]");
        let kind = text(&f, "type").ok_or_else(|| missing(&format!("{field}.type")))?;
        if ![
            "PICKUP", "DELIVERY", "SHIPMENT", "DIGITAL", "IN_STORE", "SIMPLE",
        ]
        .contains(&kind)
        {
            return Err(error(
                400,
                "INVALID_ENUM_VALUE",
                Some(&format!("{field}.type")),
                &format!("`{kind}` is not a valid fulfillment type."),
            ));
        }
        if kind == "PICKUP" {
            let details = f
                .get("pickup_details")
                .ok_or_else(|| missing(&format!("{field}.pickup_details")))?;
            let named = details
                .pointer("/recipient/display_name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.trim().is_empty())
                || text(details, "recipient_customer_id").is_some();
            if !named {
                return Err(missing(&format!(
                    "{field}.pickup_details.recipient.display_name"
                )));
            }
            if text(details, "schedule_type") == Some("SCHEDULED") {
                let at = text(details, "pickup_at")
                    .ok_or_else(|| missing(&format!("{field}.pickup_details.pickup_at")))?;
                if at.parse::<jiff::Timestamp>().is_err() {
                    return Err(invalid(
                        &format!("{field}.pickup_details.pickup_at"),
                        "Expected an RFC 3339 timestamp.",
                    ));
                }
            }
            if let Some(prep) = text(details, "prep_time_duration") {
                if !prep.starts_with('P') || prep.parse::<jiff::Span>().is_err() {
                    return Err(invalid(
                        &format!("{field}.pickup_details.prep_time_duration"),
                        "Expected an RFC 3339 duration such as PT15M.",
                    ));
                }
            }
        }
        let mut f = f;
        if f.get("uid").is_none_or(Value::is_null) {
            f["uid"] = json!(crate::random_suffix(22));
        }
        if f.get("state").is_none_or(Value::is_null) {
            f["state"] = json!("PROPOSED");
        }
        out.push(f);
    }
    Ok(out)
}
