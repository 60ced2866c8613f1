//! Turning canonical transactions from a plugin into stored sales: validated (plugins are
//! untrusted), deduplicated by (integration, external id), a newer upstream version
//! replacing an older one and never the reverse, matched to a customer, announced with
//! `transaction_recorded` and evaluated against the venue's spend rules, all in the same
//! database transaction.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::auth::TenantScope;
use crate::customers::{find_or_create, normalize_phone};
use crate::events::{EventKind, LoggedTx};
use crate::money::{parse_currency, MAX_AMOUNT};
use crate::plugins::contract::{CardInfo, CustomerRef, Tender, Transaction, TransactionStatus};
use crate::rules::{RuleEvaluator, SaleRef};
use crate::store::{new_id, now_micros, rfc3339, Db, StoreError};

/// Where a sale came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A verified webhook.
    Webhook,
    /// A polling sync.
    Sync,
    /// Pushed by a local POS.
    Push,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Sync => "sync",
            Source::Push => "push",
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounts {
    /// New sales.
    pub created: u64,
    /// Known sales replaced by a newer version.
    pub updated: u64,
    /// Known and unchanged, or older than what is stored.
    pub duplicates: u64,
    /// Refused as malformed (logged).
    pub rejected: u64,
}

/// The integration a batch belongs to.
#[derive(Debug, Clone)]
pub struct IngestTarget<'a> {
    /// Integration id.
    pub integration_id: &'a str,
    /// Venue.
    pub venue: &'a str,
    /// Provider id.
    pub provider: &'a str,
}

/// Ingests a batch inside `tx`, evaluating the venue's spend rules for every new or changed
/// sale matched to a customer.
pub async fn ingest(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    sales: &[Transaction],
    source: Source,
) -> Result<IngestCounts, StoreError> {
    let mut counts = IngestCounts::default();
    let mut rules = RuleEvaluator::new(target.integration_id, target.venue);
    for sale in sales {
        if let Err(why) = check(sale) {
            counts.rejected += 1;
            tracing::warn!(integration = %target.integration_id, provider = %target.provider, external_id = %truncate(&sale.external_id), reason = %why, "sale refused");
            continue;
        }
        let matched = match_customer(tx, scope, target, sale).await?;
        let (customer_id, phone) = match matched {
            Some(Customer { id, phone }) => (Some(id), Some(phone)),
            None => (None, None),
        };
        let now = now_micros();
        let occurred_at = sale.occurred_at_ms.saturating_mul(1000);
        let upstream_updated = sale.updated_at_ms.map(|ms| ms.saturating_mul(1000));
        let id = new_id();
        let columns = SaleColumns {
            sale,
            occurred_at,
            upstream_updated,
            currency: sale.currency.to_ascii_uppercase(),
            card: sale.card.clone().unwrap_or_default(),
            customer: sale.customer.clone().unwrap_or_default(),
            customer_id: customer_id.as_deref(),
            hash: content_hash(sale),
            source,
            now,
        };
        let insert = sqlx::query(
            "INSERT INTO pos_transactions (id, tenant_id, integration_id, external_id, order_id, location_id, occurred_at,
               upstream_updated_at, currency, total, subtotal, tax, tip, discount, refunded, tender, status, card_brand,
               card_last4, card_fingerprint, provider_customer_id, customer_phone, customer_email, customer_name,
               customer_id, content_hash, source, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
               $23, $24, $25, $26, $27, $28, $28)
             ON CONFLICT (integration_id, external_id) DO NOTHING",
        )
        .bind(&id)
        .bind(scope.tenant_id())
        .bind(target.integration_id)
        .bind(&sale.external_id);
        let inserted = columns
            .bind(insert)
            .execute(tx.conn())
            .await?
            .rows_affected();
        let (stored_id, created) = if inserted == 1 {
            (id, true)
        } else {
            // Newer (or same-age but different) content replaces; an older update never does.
            let update = sqlx::query(
                "UPDATE pos_transactions SET order_id = $1, location_id = $2, occurred_at = $3, upstream_updated_at = $4,
                   currency = $5, total = $6, subtotal = $7, tax = $8, tip = $9, discount = $10, refunded = $11,
                   tender = $12, status = $13, card_brand = $14, card_last4 = $15, card_fingerprint = $16,
                   provider_customer_id = $17, customer_phone = $18, customer_email = $19, customer_name = $20,
                   customer_id = COALESCE($21, customer_id), content_hash = $22, source = $23, updated_at = $24
                 WHERE integration_id = $25 AND external_id = $26 AND content_hash <> $22
                   AND COALESCE(upstream_updated_at, 0) <= COALESCE($4, COALESCE(upstream_updated_at, 0))
                 RETURNING id",
            );
            let row = columns
                .bind(update)
                .bind(target.integration_id)
                .bind(&sale.external_id)
                .fetch_optional(tx.conn())
                .await?;
            match row {
                Some(r) => (r.try_get::<String, _>("id")?, false),
                None => {
                    counts.duplicates += 1;
                    continue;
                }
            }
        };
        if created {
            counts.created += 1;
        } else {
            counts.updated += 1;
        }
        tx.append(
            scope,
            EventKind::TransactionRecorded,
            &serde_json::json!({
                "id": stored_id,
                "venue": target.venue,
                "provider": target.provider,
                "integration_id": target.integration_id,
                "external_id": sale.external_id,
                "order_id": sale.order_id,
                "occurred_at": rfc3339(occurred_at),
                "currency": columns.currency,
                "total": sale.total,
                "subtotal": sale.subtotal,
                "tax": sale.tax,
                "tip": sale.tip,
                "discount": sale.discount,
                "refunded": sale.refunded,
                "net": net_spend(sale),
                "tender": tender_str(sale.tender),
                "status": status_str(sale.status),
                "card": {"brand": columns.card.brand, "last4": columns.card.last4},
                "customer": customer_id.as_ref().map(|id| serde_json::json!({"id": id, "phone": phone})),
                "source": source.as_str(),
                "change": if created { "created" } else { "updated" },
            }),
        )
        .await?;
        // Each sale is evaluated right after it is stored, so a batch behaves like the same
        // sales arriving one by one: the sale that crosses a threshold is the one whose time
        // the rule's windows are checked against.
        if let Some(customer_id) = &customer_id {
            rules
                .evaluate(
                    tx,
                    scope,
                    SaleRef {
                        transaction_id: &stored_id,
                        customer_id,
                        occurred_at,
                    },
                )
                .await?;
        }
    }
    rules.finish(tx).await?;
    Ok(counts)
}

/// What a sale's INSERT and its replacing UPDATE both write, bound in the same order by
/// [`SaleColumns::bind`]: both statements number these parameters alike (the INSERT from
/// `$5`, the UPDATE from `$1`).
struct SaleColumns<'a> {
    sale: &'a Transaction,
    occurred_at: i64,
    upstream_updated: Option<i64>,
    currency: String,
    card: CardInfo,
    customer: CustomerRef,
    customer_id: Option<&'a str>,
    hash: String,
    source: Source,
    now: i64,
}

impl<'a> SaleColumns<'a> {
    /// Binds, in order: order id, location, occurred-at, upstream updated-at, currency, the
    /// six amounts, tender, status, card brand/last4/fingerprint, provider customer id,
    /// customer phone/email/name, matched customer id, content hash, source, now.
    fn bind<'q>(&'q self, query: SaleQuery<'q>) -> SaleQuery<'q>
    where
        'a: 'q,
    {
        let (sale, card, customer) = (self.sale, &self.card, &self.customer);
        query
            .bind(sale.order_id.as_deref())
            .bind(sale.location_id.as_deref())
            .bind(self.occurred_at)
            .bind(self.upstream_updated)
            .bind(self.currency.as_str())
            .bind(sale.total)
            .bind(sale.subtotal)
            .bind(sale.tax)
            .bind(sale.tip)
            .bind(sale.discount)
            .bind(sale.refunded)
            .bind(tender_str(sale.tender))
            .bind(status_str(sale.status))
            .bind(card.brand.as_deref())
            .bind(card.last4.as_deref())
            .bind(card.fingerprint.as_deref())
            .bind(customer.provider_customer_id.as_deref())
            .bind(customer.phone.as_deref())
            .bind(customer.email.as_deref())
            .bind(customer.name.as_deref())
            .bind(self.customer_id)
            .bind(self.hash.as_str())
            .bind(self.source.as_str())
            .bind(self.now)
    }
}

type SaleQuery<'q> = sqlx::query::Query<'q, Db, sqlx::any::AnyArguments<'q>>;

/// What a sale counts as spend: completed sales net of refunds; nothing otherwise.
pub fn net_spend(sale: &Transaction) -> i64 {
    if sale.status == TransactionStatus::Completed {
        (sale.total - sale.refunded).max(0)
    } else {
        0
    }
}

fn check(sale: &Transaction) -> Result<(), String> {
    if sale.external_id.is_empty() || sale.external_id.len() > 200 {
        return Err("external id must be 1-200 characters".into());
    }
    if parse_currency(&sale.currency).is_none() {
        return Err(format!("unknown currency {:?}", sale.currency));
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
    if !(946_684_800_000..4_102_444_800_000).contains(&sale.occurred_at_ms) {
        return Err("occurred-at is not a plausible epoch-millisecond time".into());
    }
    Ok(())
}

/// The customer a sale was matched to.
struct Customer {
    id: String,
    phone: String,
}

async fn match_customer(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    sale: &Transaction,
) -> Result<Option<Customer>, StoreError> {
    if let Some(fp) = sale
        .card
        .as_ref()
        .and_then(|c| c.fingerprint.as_deref())
        .filter(|f| !f.is_empty())
    {
        if let Some(customer) = linked(tx, scope, "card_fingerprint", fp).await? {
            return Ok(Some(customer));
        }
    }
    let customer = sale.customer.clone().unwrap_or_default();
    if let Some(pc) = customer
        .provider_customer_id
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if let Some(customer) = linked(
            tx,
            scope,
            "provider_customer",
            &format!("{}:{pc}", target.provider),
        )
        .await?
        {
            return Ok(Some(customer));
        }
    }
    if let Some(phone) = customer
        .phone
        .as_deref()
        .and_then(|p| normalize_phone(scope.country(), p).ok())
    {
        let id = find_or_create(tx.conn(), scope.tenant_id(), &phone).await?;
        return Ok(Some(Customer { id, phone }));
    }
    if let Some(email) = customer
        .email
        .as_deref()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| e.contains('@'))
    {
        let row = sqlx::query(
            "SELECT id, phone FROM customers WHERE tenant_id = $1 AND email = $2 LIMIT 1",
        )
        .bind(scope.tenant_id())
        .bind(&email)
        .fetch_optional(tx.conn())
        .await?;
        return row.map(|r| customer_from_row(&r)).transpose();
    }
    Ok(None)
}

async fn linked(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    kind: &str,
    value: &str,
) -> Result<Option<Customer>, StoreError> {
    let row = sqlx::query(
        "SELECT c.id, c.phone FROM customer_links l JOIN customers c ON c.id = l.customer_id
         WHERE l.tenant_id = $1 AND l.kind = $2 AND l.value = $3",
    )
    .bind(scope.tenant_id())
    .bind(kind)
    .bind(value)
    .fetch_optional(tx.conn())
    .await?;
    row.map(|r| customer_from_row(&r)).transpose()
}

fn customer_from_row(row: &sqlx::any::AnyRow) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: row.try_get("id")?,
        phone: row.try_get("phone")?,
    })
}

fn content_hash(sale: &Transaction) -> String {
    let json = serde_json::to_vec(sale).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

pub(super) fn tender_str(t: Tender) -> &'static str {
    match t {
        Tender::Cash => "cash",
        Tender::Card => "card",
        Tender::GiftCard => "gift_card",
        Tender::Wallet => "wallet",
        Tender::BankTransfer => "bank_transfer",
        Tender::Other => "other",
    }
}

pub(super) fn status_str(s: TransactionStatus) -> &'static str {
    match s {
        TransactionStatus::Completed => "completed",
        TransactionStatus::Pending => "pending",
        TransactionStatus::Voided => "voided",
        TransactionStatus::Failed => "failed",
    }
}
