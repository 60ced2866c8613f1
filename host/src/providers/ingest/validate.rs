//! Checks on a sale a plugin produced, before anything of it is stored. Plugins are
//! untrusted, so everything either database could not store, or would store differently,
//! is refused here, identically on both.

use crate::money::{parse_currency, MAX_AMOUNT};
use crate::plugins::contract::Transaction;

/// Longest text the host stores from a provider in any field but the external id, in bytes.
/// Far above any real id, name, email or card brand; a bound so that one runaway field
/// cannot bloat every copy of the sale (row, event, hook payloads).
pub(super) const MAX_TEXT_BYTES: usize = 1000;

/// Checks a sale a plugin produced before anything of it is stored, naming the offending
/// field. Plugins are untrusted, and what one database stores the other may refuse
/// (PostgreSQL rejects a NUL character in text, SQLite keeps it), so everything either
/// cannot store is refused here, identically on both. Nothing is altered: a sale is stored as
/// the provider sent it, or not at all.
pub(crate) fn validate(sale: &Transaction) -> Result<(), String> {
    if sale.external_id.is_empty() || sale.external_id.len() > 200 {
        return Err("external_id must be 1-200 bytes".into());
    }
    let card = sale.card.as_ref();
    let customer = sale.customer.as_ref();
    let texts: [(&str, Option<&str>); 11] = [
        ("external_id", Some(&sale.external_id)),
        ("order_id", sale.order_id.as_deref()),
        ("location_id", sale.location_id.as_deref()),
        ("currency", Some(&sale.currency)),
        ("card.brand", card.and_then(|c| c.brand.as_deref())),
        ("card.last4", card.and_then(|c| c.last4.as_deref())),
        (
            "card.fingerprint",
            card.and_then(|c| c.fingerprint.as_deref()),
        ),
        (
            "customer.provider_customer_id",
            customer.and_then(|c| c.provider_customer_id.as_deref()),
        ),
        ("customer.phone", customer.and_then(|c| c.phone.as_deref())),
        ("customer.email", customer.and_then(|c| c.email.as_deref())),
        ("customer.name", customer.and_then(|c| c.name.as_deref())),
    ];
    for (field, text) in texts {
        check_text(field, text.unwrap_or_default())?;
    }
    if parse_currency(&sale.currency).is_none() {
        return Err(format!("currency: unknown currency {:?}", sale.currency));
    }
    for (name, v) in [
        ("total", sale.total),
        ("subtotal", sale.subtotal),
        ("tax", sale.tax),
        ("tip", sale.tip),
        ("discount", sale.discount),
        ("refunded", sale.refunded),
    ] {
        if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&v) {
            return Err(format!("{name} out of range"));
        }
    }
    if sale.refunded < 0 {
        return Err("refunded must not be negative".into());
    }
    validate_details(sale)?;
    // 2000-01-01 .. 2100-01-01 in ms: anything else is a unit mistake (s vs ms) upstream.
    if !PLAUSIBLE_MS.contains(&sale.occurred_at_ms) {
        return Err("occurred_at is not a plausible epoch-millisecond time".into());
    }
    // The same bound: a far-future update time would shadow every later version of the sale.
    if sale
        .updated_at_ms
        .is_some_and(|ms| !PLAUSIBLE_MS.contains(&ms))
    {
        return Err("updated_at is not a plausible epoch-millisecond time".into());
    }
    Ok(())
}

/// Lines of one sale the host keeps: a long banquet bill, not an unbounded list.
pub(super) const MAX_LINE_ITEMS: usize = 500;
/// Refunds of one sale the host keeps.
pub(super) const MAX_REFUNDS: usize = 100;

/// The details contract 0.2 added: staff, line items and refunds (absent from 0.1 sales).
fn validate_details(sale: &Transaction) -> Result<(), String> {
    if let Some(staff) = &sale.staff {
        check_text("staff.id", staff.id.as_deref().unwrap_or_default())?;
        check_text("staff.name", staff.name.as_deref().unwrap_or_default())?;
    }
    if sale.line_items.len() > MAX_LINE_ITEMS {
        return Err(format!(
            "line_items: {} lines; at most {MAX_LINE_ITEMS} are stored",
            sale.line_items.len()
        ));
    }
    for (i, line) in sale.line_items.iter().enumerate() {
        if line.name.trim().is_empty() {
            return Err(format!("line_items[{i}].name must not be empty"));
        }
        check_text(&format!("line_items[{i}].name"), &line.name)?;
        for (field, text) in [
            ("id", line.id.as_deref()),
            ("item_id", line.item_id.as_deref()),
            ("category", line.category.as_deref()),
        ] {
            check_text(
                &format!("line_items[{i}].{field}"),
                text.unwrap_or_default(),
            )?;
        }
        if !is_decimal(&line.quantity) {
            return Err(format!(
                "line_items[{i}].quantity {:?} is not decimal text like \"2\" or \"0.5\"",
                truncated(&line.quantity)
            ));
        }
        for (field, v) in [("total", Some(line.total)), ("unit_price", line.unit_price)] {
            if v.is_some_and(|v| !(-MAX_AMOUNT..=MAX_AMOUNT).contains(&v)) {
                return Err(format!("line_items[{i}].{field} out of range"));
            }
        }
    }
    if sale.refunds.len() > MAX_REFUNDS {
        return Err(format!(
            "refunds: {} refunds; at most {MAX_REFUNDS} are stored",
            sale.refunds.len()
        ));
    }
    let mut refunded: i64 = 0;
    for (i, refund) in sale.refunds.iter().enumerate() {
        if refund.id.is_empty() {
            return Err(format!("refunds[{i}].id must not be empty"));
        }
        check_text(&format!("refunds[{i}].id"), &refund.id)?;
        check_text(
            &format!("refunds[{i}].reason"),
            refund.reason.as_deref().unwrap_or_default(),
        )?;
        if !(1..=MAX_AMOUNT).contains(&refund.amount) {
            return Err(format!("refunds[{i}].amount must be positive and in range"));
        }
        if !PLAUSIBLE_MS.contains(&refund.created_at_ms) {
            return Err(format!(
                "refunds[{i}].created_at is not a plausible epoch-millisecond time"
            ));
        }
        refunded = refunded.saturating_add(refund.amount);
    }
    // The refunds explain `refunded`; they may be fewer (a provider that lists only some)
    // but never more, or net spend and the refund list would disagree.
    if refunded > sale.refunded {
        return Err(format!(
            "refunds add up to {refunded}, more than refunded ({})",
            sale.refunded
        ));
    }
    Ok(())
}

/// Whether `text` is a plain non-negative decimal: digits, at most one `.` between digits.
fn is_decimal(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

/// At most 40 characters of `text`, for an error message.
fn truncated(text: &str) -> String {
    text.chars().take(40).collect()
}

/// 2000-01-01 .. 2100-01-01 in epoch milliseconds.
const PLAUSIBLE_MS: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

/// Refuses text either database cannot store (a NUL character: PostgreSQL rejects it) or
/// longer than [`MAX_TEXT_BYTES`]; the message names `field`.
pub(crate) fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err(format!(
            "{field} contains a NUL character (\\u0000), which the database cannot store"
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{field} is {} bytes long; at most {MAX_TEXT_BYTES} are stored",
            text.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::contract::{CustomerRef, Tender, TransactionStatus};

    fn sale() -> Transaction {
        Transaction {
            external_id: "sq_1".into(),
            order_id: None,
            location_id: None,
            occurred_at_ms: 1_700_000_000_000,
            updated_at_ms: None,
            currency: "USD".into(),
            total: 1000,
            subtotal: 900,
            tax: 100,
            tip: 0,
            discount: 0,
            refunded: 0,
            tender: Tender::Card,
            card: None,
            customer: None,
            status: TransactionStatus::Completed,
            staff: None,
            line_items: Vec::new(),
            refunds: Vec::new(),
        }
    }

    #[test]
    fn a_plain_sale_passes() {
        assert_eq!(validate(&sale()), Ok(()));
    }

    #[test]
    fn each_broken_field_is_named() {
        let refused = |change: fn(&mut Transaction)| {
            let mut s = sale();
            change(&mut s);
            validate(&s).unwrap_err()
        };
        assert!(refused(|s| s.external_id.clear()).contains("external_id"));
        assert!(refused(|s| s.external_id = "x".repeat(201)).contains("external_id"));
        assert!(refused(|s| s.currency = "XYZ".into()).contains("currency"));
        assert!(refused(|s| s.total = MAX_AMOUNT + 1).contains("total"));
        assert!(refused(|s| s.refunded = -1).contains("refunded"));
        // Seconds instead of milliseconds.
        assert!(refused(|s| s.occurred_at_ms = 1_700_000_000).contains("occurred_at"));
        assert!(refused(|s| s.updated_at_ms = Some(i64::MAX)).contains("updated_at"));
        assert!(refused(|s| {
            s.customer = Some(CustomerRef {
                name: Some("a\0b".into()),
                ..CustomerRef::default()
            })
        })
        .contains("customer.name"));
    }

    #[test]
    fn line_items_staff_and_refunds_are_checked() {
        use crate::plugins::contract::{LineItem, RefundRef, StaffRef};
        let line = |quantity: &str| LineItem {
            id: Some("l1".into()),
            name: "IPA pint".into(),
            item_id: None,
            quantity: quantity.into(),
            unit_price: Some(700),
            total: 1400,
            category: Some("Beer".into()),
        };
        let refund = |id: &str, amount: i64| RefundRef {
            id: id.into(),
            amount,
            created_at_ms: 1_700_000_100_000,
            reason: None,
        };
        let mut full = sale();
        full.staff = Some(StaffRef {
            id: Some("e1".into()),
            name: Some("Ana".into()),
        });
        full.line_items = vec![line("2"), line("0.5")];
        full.refunded = 300;
        full.refunds = vec![refund("r1", 100), refund("r2", 200)];
        assert_eq!(validate(&full), Ok(()));
        let refused = |change: &dyn Fn(&mut Transaction)| {
            let mut s = full.clone();
            change(&mut s);
            validate(&s).unwrap_err()
        };
        for bad in ["", "1.", ".5", "-1", "1e3", "1,5", "two"] {
            assert!(
                refused(&|s| s.line_items[1].quantity = bad.into())
                    .contains("line_items[1].quantity"),
                "{bad:?}"
            );
        }
        assert!(refused(&|s| s.line_items[0].name = " ".into()).contains("line_items[0].name"));
        assert!(
            refused(&|s| s.line_items[0].total = MAX_AMOUNT + 1).contains("line_items[0].total")
        );
        assert!(refused(&|s| s.refunds[0].amount = 0).contains("refunds[0].amount"));
        assert!(refused(&|s| s.refunds[1].id.clear()).contains("refunds[1].id"));
        assert!(refused(&|s| s.refunded = 299).contains("more than refunded"));
        assert!(refused(&|s| s.refunds[0].created_at_ms = 5).contains("refunds[0].created_at"));
        assert!(refused(&|s| s.staff = Some(StaffRef {
            id: Some("\0".into()),
            name: None
        }))
        .contains("staff.id"));
        assert!(
            refused(&|s| s.line_items = vec![line("1"); MAX_LINE_ITEMS + 1]).contains("line_items")
        );
    }

    #[test]
    fn negative_totals_and_lowercase_currencies_are_stored_as_sent() {
        let mut refund_sale = sale();
        refund_sale.total = -500;
        refund_sale.currency = "usd".into();
        assert_eq!(validate(&refund_sale), Ok(()));
    }

    #[test]
    fn text_is_bounded_and_nul_free() {
        assert!(check_text("f", &"a".repeat(MAX_TEXT_BYTES)).is_ok());
        assert!(check_text("f", &"a".repeat(MAX_TEXT_BYTES + 1)).is_err());
        assert!(check_text("f", "a\0").unwrap_err().contains("NUL"));
    }
}
