//! Which customer a sale belongs to, decided for a whole batch of sales at once.
//!
//! Precedence, first that finds someone wins: a linked card fingerprint, a linked provider
//! customer id, the phone number (enrolling a customer for a new one), the email of an
//! existing customer. Each kind of key is looked up for the whole batch in one or two
//! statements, because each statement is a round trip costing more than the work it carries.

use std::collections::{BTreeSet, HashMap};

use sqlx::Row;

use super::links::{LinkKind, CARD_LINK, PROVIDER_LINK};
use super::normalize_phone;
use crate::events::LoggedTx;
use crate::plugins::contract::Transaction;
use crate::store::{new_id, now_micros, rows_by_keys, Params, KEYS_PER_LOOKUP};

/// The customer a sale was matched to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    /// Customer id.
    pub id: String,
    /// The customer's (normalised) phone.
    pub phone: String,
}

/// The keys a sale offers for matching, cleaned up: empty values dropped, the provider
/// customer id qualified by provider, the phone normalised, the email lowercased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SaleKeys {
    /// Card fingerprint.
    pub card: Option<String>,
    /// `provider:customer id`, as links store it.
    pub provider_customer: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Lowercased email containing an `@`.
    pub email: Option<String>,
}

impl SaleKeys {
    /// The keys of `sale` from `provider`, phones read in the tenant's `country`. A phone
    /// that does not parse is no key (the email may still match).
    pub(crate) fn of(sale: &Transaction, provider: &str, country: &str) -> Self {
        let customer = sale.customer.as_ref();
        SaleKeys {
            card: sale
                .card
                .as_ref()
                .and_then(|c| c.fingerprint.clone())
                .filter(|f| !f.is_empty()),
            provider_customer: customer
                .and_then(|c| c.provider_customer_id.as_deref())
                .filter(|p| !p.is_empty())
                .map(|pc| LinkKind::provider_value(provider, pc)),
            phone: customer
                .and_then(|c| c.phone.as_deref())
                .and_then(|p| normalize_phone(country, p).ok()),
            email: customer
                .and_then(|c| c.email.as_deref())
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| e.contains('@')),
        }
    }

    /// The linked customer, the card's link taking precedence over the provider
    /// customer's.
    fn by_link(&self, links: &HashMap<(&'static str, String), Matched>) -> Option<Matched> {
        let by = |kind: &'static str, value: &Option<String>| {
            value
                .as_ref()
                .and_then(|v| links.get(&(kind, v.clone())))
                .cloned()
        };
        by(CARD_LINK, &self.card).or_else(|| by(PROVIDER_LINK, &self.provider_customer))
    }
}

/// Matches each sale to a customer (see the module's precedence), enrolling customers for
/// new phone numbers; `None` for a sale no key matches.
pub(crate) async fn match_sales(
    tx: &mut LoggedTx,
    tenant_id: &str,
    keys: &[SaleKeys],
) -> Result<Vec<Option<Matched>>, sqlx::Error> {
    let link_values: BTreeSet<&str> = keys
        .iter()
        .flat_map(|k| [k.card.as_deref(), k.provider_customer.as_deref()])
        .flatten()
        .collect();
    let links = linked(tx, tenant_id, &link_values.into_iter().collect::<Vec<_>>()).await?;
    let mut matched: Vec<Option<Matched>> = keys.iter().map(|k| k.by_link(&links)).collect();

    // Only sales no link claimed enrol a customer by phone. Sorted: on PostgreSQL the
    // upsert locks existing customers in this order, the same in every batch.
    let phones: BTreeSet<&str> = unmatched(keys, &matched, |k| k.phone.as_deref()).collect();
    let by_phone =
        find_or_create_many(tx, tenant_id, &phones.into_iter().collect::<Vec<_>>()).await?;
    for (found, key) in matched.iter_mut().zip(keys) {
        if let Some(phone) = key.phone.as_ref().filter(|_| found.is_none()) {
            *found = by_phone.get(phone).map(|id| Matched {
                id: id.clone(),
                phone: phone.clone(),
            });
        }
    }

    let emails: BTreeSet<&str> = unmatched(keys, &matched, |k| k.email.as_deref()).collect();
    let by_email = by_emails(tx, tenant_id, &emails.into_iter().collect::<Vec<_>>()).await?;
    for (found, key) in matched.iter_mut().zip(keys) {
        if let Some(email) = key.email.as_ref().filter(|_| found.is_none()) {
            *found = by_email.get(email).cloned();
        }
    }
    Ok(matched)
}

/// The `key` of every sale not matched yet.
fn unmatched<'k>(
    keys: &'k [SaleKeys],
    matched: &'k [Option<Matched>],
    key: impl Fn(&'k SaleKeys) -> Option<&'k str> + 'k,
) -> impl Iterator<Item = &'k str> + 'k {
    keys.iter()
        .zip(matched)
        .filter(|(_, found)| found.is_none())
        .filter_map(move |(k, _)| key(k))
}

/// Customers linked to any of `values` (card fingerprints or `provider:id` keys).
async fn linked(
    tx: &mut LoggedTx,
    tenant_id: &str,
    values: &[&str],
) -> Result<HashMap<(&'static str, String), Matched>, sqlx::Error> {
    let backend = tx.backend();
    let rows = rows_by_keys(tx.conn(), backend, tenant_id, values, |tenant, values| {
        format!(
            "SELECT l.kind, l.value, c.id, c.phone FROM customer_links l JOIN customers c ON c.id = l.customer_id
             WHERE l.tenant_id = {tenant} AND l.kind IN ('{CARD_LINK}', '{PROVIDER_LINK}') AND l.value IN ({values})"
        )
    })
    .await?;
    let mut links = HashMap::new();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let kind = if kind == CARD_LINK {
            CARD_LINK
        } else {
            PROVIDER_LINK
        };
        links.insert((kind, row.try_get("value")?), matched_from_row(&row)?);
    }
    Ok(links)
}

/// The customers with these (normalised, distinct) phones, created where missing: id by
/// phone.
async fn find_or_create_many(
    tx: &mut LoggedTx,
    tenant_id: &str,
    phones: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut ids = HashMap::new();
    let now = now_micros();
    for chunk in phones.chunks(KEYS_PER_LOOKUP) {
        let mut p = Params::new(tx.backend());
        let values: Vec<String> = (0..chunk.len())
            .map(|_| format!("({}, 0, 0, {})", p.list(3), p.list(2)))
            .collect();
        // DO UPDATE, not DO NOTHING: only then does RETURNING yield the existing rows too.
        let sql = format!(
            "INSERT INTO customers (id, tenant_id, phone, points, lifetime_points, created_at, updated_at)
             VALUES {}
             ON CONFLICT (tenant_id, phone) DO UPDATE SET updated_at = customers.updated_at
             RETURNING id, phone",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for phone in chunk {
            query = query
                .bind(new_id())
                .bind(tenant_id)
                .bind(*phone)
                .bind(now)
                .bind(now);
        }
        for row in query.fetch_all(tx.conn()).await? {
            ids.insert(row.try_get("phone")?, row.try_get("id")?);
        }
    }
    Ok(ids)
}

/// Customers by (lowercased) email; where several share one, the oldest.
async fn by_emails(
    tx: &mut LoggedTx,
    tenant_id: &str,
    emails: &[&str],
) -> Result<HashMap<String, Matched>, sqlx::Error> {
    let backend = tx.backend();
    let rows = rows_by_keys(tx.conn(), backend, tenant_id, emails, |tenant, emails| {
        format!(
            "SELECT id, phone, email FROM customers WHERE tenant_id = {tenant} AND email IN ({emails})
             ORDER BY created_at, id"
        )
    })
    .await?;
    let mut found = HashMap::new();
    for row in rows {
        let email: String = row.try_get("email")?;
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(email) {
            slot.insert(matched_from_row(&row)?);
        }
    }
    Ok(found)
}

fn matched_from_row(row: &sqlx::any::AnyRow) -> Result<Matched, sqlx::Error> {
    Ok(Matched {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::contract::{CardInfo, CustomerRef, Tender, TransactionStatus};

    fn sale(
        fingerprint: Option<&str>,
        provider_customer: Option<&str>,
        phone: Option<&str>,
        email: Option<&str>,
    ) -> Transaction {
        let mut sale = Transaction {
            external_id: "x1".into(),
            order_id: None,
            location_id: None,
            occurred_at_ms: 1_700_000_000_000,
            updated_at_ms: None,
            currency: "USD".into(),
            total: 1000,
            subtotal: 1000,
            tax: 0,
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
        };
        sale.card = Some(CardInfo {
            fingerprint: fingerprint.map(str::to_owned),
            ..CardInfo::default()
        });
        sale.customer = Some(CustomerRef {
            provider_customer_id: provider_customer.map(str::to_owned),
            phone: phone.map(str::to_owned),
            email: email.map(str::to_owned),
            ..CustomerRef::default()
        });
        sale
    }

    #[test]
    fn keys_are_cleaned_up() {
        let keys = SaleKeys::of(
            &sale(
                Some("fp1"),
                Some("C9"),
                Some("(555) 010-0199"),
                Some("  Ann@Example.COM "),
            ),
            "square",
            "US",
        );
        assert_eq!(
            keys,
            SaleKeys {
                card: Some("fp1".into()),
                provider_customer: Some("square:C9".into()),
                phone: Some("+15550100199".into()),
                email: Some("ann@example.com".into()),
            }
        );
        let empty = SaleKeys::of(
            &sale(Some(""), Some(""), Some("not a phone"), Some("nobody")),
            "square",
            "US",
        );
        assert_eq!(empty, SaleKeys::default());
    }

    #[test]
    fn a_card_link_beats_a_provider_link() {
        let ann = Matched {
            id: "ann".into(),
            phone: "+15550100001".into(),
        };
        let bob = Matched {
            id: "bob".into(),
            phone: "+15550100002".into(),
        };
        let links = HashMap::from([
            ((CARD_LINK, "fp1".to_owned()), ann.clone()),
            ((PROVIDER_LINK, "square:C9".to_owned()), bob.clone()),
        ]);
        let both = SaleKeys::of(&sale(Some("fp1"), Some("C9"), None, None), "square", "US");
        assert_eq!(both.by_link(&links), Some(ann));
        let provider_only =
            SaleKeys::of(&sale(Some("fp2"), Some("C9"), None, None), "square", "US");
        assert_eq!(provider_only.by_link(&links), Some(bob));
        // The same customer id at another provider is another customer.
        let elsewhere = SaleKeys::of(&sale(None, Some("C9"), None, None), "toast", "US");
        assert_eq!(elsewhere.by_link(&links), None);
    }

    #[test]
    fn only_unmatched_sales_offer_keys() {
        let keys = vec![
            SaleKeys {
                phone: Some("+15550100001".into()),
                ..SaleKeys::default()
            },
            SaleKeys {
                phone: Some("+15550100002".into()),
                ..SaleKeys::default()
            },
        ];
        let matched = vec![
            Some(Matched {
                id: "linked".into(),
                phone: "+15550100009".into(),
            }),
            None,
        ];
        let phones: Vec<&str> = unmatched(&keys, &matched, |k| k.phone.as_deref()).collect();
        assert_eq!(phones, ["+15550100002"]);
    }
}
