//! Checks on a sale a plugin produced, before anything of it is stored. Plugins are
//! untrusted, so everything either database could not store, or would store differently,
//! is refused here, identically on both.

use crate::money::{parse_currency, MAX_AMOUNT};
use crate::plugins::contract::Transaction;

/// Longest text the host stores from a provider in any field but the external id, in bytes.
/// Far above any real id, name, email or card brand; a bound so that one runaway field
/// cannot bloat every copy of the sale (row, event, hook payloads).
pub const MAX_TEXT_BYTES: usize = 1000;

/// Checks a sale a plugin produced before anything of it is stored, naming the offending
/// field. Plugins are untrusted, and what one database stores the other may refuse
/// (PostgreSQL rejects a NUL character in text, SQLite keeps it), so everything either
/// cannot store is refused here, identically on both. Nothing is altered: a sale is stored as
/// the provider sent it, or not at all.
pub fn validate(sale: &Transaction) -> Result<(), String> {
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

/// 2000-01-01 .. 2100-01-01 in epoch milliseconds.
const PLAUSIBLE_MS: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

/// Refuses text either database cannot store (a NUL character: PostgreSQL rejects it) or
/// longer than [`MAX_TEXT_BYTES`]; the message names `field`.
pub fn check_text(field: &str, text: &str) -> Result<(), String> {
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
