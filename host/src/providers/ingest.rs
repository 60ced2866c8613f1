//! Turning canonical transactions from a plugin into stored sales: validated (plugins are
//! untrusted), deduplicated by (integration, external id), a newer upstream version
//! replacing an older one and never the reverse, matched to a customer, announced with
//! `transaction_recorded` and evaluated against the venue's spend rules, all in the same
//! database transaction.

mod decide;
mod validate;

pub(super) use validate::{check_text, validate};

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::auth::TenantScope;
use crate::customers::matching::{match_sales, Matched, SaleKeys};
use crate::customers::net_spend;
use crate::customers::spend::net_spend_stored;
use crate::events::{EventKind, LoggedTx};
use crate::plugins::contract::{
    CardInfo, CustomerRef, RefundRef, Tender, Transaction, TransactionStatus,
};
use crate::rules::{RuleEvaluator, SpendMove};
use crate::store::{new_id, now_micros, rfc3339, rows_by_keys, Backend, Db, Params, StoreError};
use decide::{spend_moves, supersedes, Outcome, Previous};

/// Where a sale came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct IngestCounts {
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
pub(super) struct IngestTarget<'a> {
    /// Integration id.
    pub integration_id: &'a str,
    /// Venue.
    pub venue: &'a str,
    /// Provider id.
    pub provider: &'a str,
}

impl IngestTarget<'_> {
    /// The same target owning its strings, for a write queued to the group commit.
    pub(super) fn to_owned_target(&self) -> OwnedTarget {
        OwnedTarget {
            integration_id: self.integration_id.to_owned(),
            venue: self.venue.to_owned(),
            provider: self.provider.to_owned(),
        }
    }
}

/// An [`IngestTarget`] that owns its strings (see [`crate::events::Writes::run`], whose
/// jobs outlive the caller's borrows).
#[derive(Debug, Clone)]
pub(super) struct OwnedTarget {
    integration_id: String,
    venue: String,
    provider: String,
}

impl OwnedTarget {
    /// Borrows it back as an [`IngestTarget`].
    pub(super) fn target(&self) -> IngestTarget<'_> {
        IngestTarget {
            integration_id: &self.integration_id,
            venue: &self.venue,
            provider: &self.provider,
        }
    }
}

/// Sales per multi-row INSERT: 33 parameters a row keeps a statement far below SQLite's
/// 32,766 and PostgreSQL's 65,535 bound parameters.
const SALES_PER_STATEMENT: usize = 250;

/// Ingests a batch inside `tx`, evaluating the venue's spend rules for every new or changed
/// sale matched to a customer.
///
/// The batch moves through the database in bulk — customers matched in one or two
/// statements, new sales inserted many rows at a time, known ones read back in one — because
/// each statement is a round trip (to SQLite's connection thread, or to the PostgreSQL
/// server) that costs more than the work it carries. The result is the same as the sales
/// arriving one by one: events are appended, and rules see each customer's spend, in the
/// batch's order.
pub(super) async fn ingest(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    sales: &[Transaction],
    source: Source,
) -> Result<IngestCounts, StoreError> {
    let mut counts = IngestCounts::default();
    let accepted: Vec<&Transaction> = sales
        .iter()
        .filter(|sale| match validate(sale) {
            Ok(()) => true,
            Err(why) => {
                counts.rejected += 1;
                tracing::warn!(integration = %target.integration_id, provider = %target.provider, external_id = %truncate(&sale.external_id), reason = %why, "sale refused");
                false
            }
        })
        .collect();
    if accepted.is_empty() {
        return Ok(counts);
    }
    let keys: Vec<SaleKeys> = accepted
        .iter()
        .map(|sale| SaleKeys::of(sale, target.provider, scope.country()))
        .collect();
    let customers = match_sales(tx, scope.tenant_id(), &keys).await?;
    let now = now_micros();
    let rows: Vec<SaleColumns<'_>> = accepted
        .iter()
        .zip(&customers)
        .map(|(sale, customer)| SaleColumns::new(sale, customer.as_ref(), source, now))
        .collect();
    let outcomes = store_sales(tx, scope, target, &rows).await?;

    // Spend moves, per sale in batch order: the sale's customer gains its net (less what the
    // sale's previous version counted for it); a customer an update took the sale from
    // loses what it counted.
    let moves: Vec<Vec<SpendMove<'_>>> = rows
        .iter()
        .zip(&outcomes)
        .map(|(row, outcome)| {
            spend_moves(
                outcome,
                row.matched.map(|c| c.id.as_str()),
                net_spend(row.sale.status, row.sale.total, row.sale.refunded),
                row.occurred_at,
            )
        })
        .collect();
    let mut rules = RuleEvaluator::prepare(
        tx,
        scope,
        target.integration_id,
        target.venue,
        moves.iter().flatten(),
    )
    .await?;
    for ((row, outcome), moves) in rows.iter().zip(&outcomes).zip(&moves) {
        let (id, created) = match outcome {
            Outcome::Duplicate => {
                counts.duplicates += 1;
                continue;
            }
            Outcome::Created { id } => (id, true),
            Outcome::Updated { id, .. } => (id, false),
        };
        if created {
            counts.created += 1;
        } else {
            counts.updated += 1;
        }
        tx.append(
            scope,
            EventKind::TransactionRecorded,
            &row.event(id, target, created),
        )?;
        // Right after the sale's own event: the rule a sale's spend crosses is checked at
        // that sale's time, as if the batch's sales had arrived one by one.
        for spend_move in moves {
            rules.apply(tx, scope, spend_move).await?;
        }
    }
    rules.finish(tx, scope).await?;
    Ok(counts)
}

/// What a sale's INSERT and its replacing UPDATE both write, bound in the same order by
/// [`SaleColumns::bind`].
struct SaleColumns<'a> {
    sale: &'a Transaction,
    occurred_at: i64,
    upstream_updated: Option<i64>,
    currency: String,
    card: CardInfo,
    customer: CustomerRef,
    /// The customer the sale matched, if any.
    matched: Option<&'a Matched>,
    hash: String,
    /// `line_items` and `refunds` as stored: JSON text, NULL when the sale has none.
    line_items: Option<String>,
    refunds: Option<String>,
    source: Source,
    now: i64,
}

/// A refund as events and the transactions API show it (and as stored): its time in
/// RFC 3339, like every other time the API returns.
fn refund_json(refund: &RefundRef) -> serde_json::Value {
    serde_json::json!({
        "id": refund.id,
        "amount": refund.amount,
        "created_at": rfc3339(refund.created_at_ms.saturating_mul(1000)),
        "reason": refund.reason,
    })
}

/// `items` as JSON text for a column, or NULL when empty (every 0.1 sale).
fn json_or_null<T: Serialize>(items: &[T]) -> Option<String> {
    (!items.is_empty())
        .then(|| serde_json::to_string(items).ok())
        .flatten()
}

impl<'a> SaleColumns<'a> {
    fn new(sale: &'a Transaction, matched: Option<&'a Matched>, source: Source, now: i64) -> Self {
        SaleColumns {
            sale,
            occurred_at: sale.occurred_at_ms.saturating_mul(1000),
            upstream_updated: sale.updated_at_ms.map(|ms| ms.saturating_mul(1000)),
            currency: sale.currency.to_ascii_uppercase(),
            card: sale.card.clone().unwrap_or_default(),
            customer: sale.customer.clone().unwrap_or_default(),
            matched,
            hash: content_hash(sale),
            line_items: json_or_null(&sale.line_items),
            refunds: json_or_null(&sale.refunds.iter().map(refund_json).collect::<Vec<_>>()),
            source,
            now,
        }
    }

    /// The data of the sale's `transaction_recorded` event.
    fn event(&self, id: &str, target: &IngestTarget<'_>, created: bool) -> serde_json::Value {
        let sale = self.sale;
        serde_json::json!({
            "id": id,
            "venue": target.venue,
            "provider": target.provider,
            "integration_id": target.integration_id,
            "external_id": sale.external_id,
            "order_id": sale.order_id,
            "occurred_at": rfc3339(self.occurred_at),
            "currency": self.currency,
            "total": sale.total,
            "subtotal": sale.subtotal,
            "tax": sale.tax,
            "tip": sale.tip,
            "discount": sale.discount,
            "refunded": sale.refunded,
            "net": net_spend(sale.status, sale.total, sale.refunded),
            "tender": tender_str(sale.tender),
            "status": status_str(sale.status),
            "card": {"brand": self.card.brand, "last4": self.card.last4},
            "customer": self.matched.map(|c| serde_json::json!({"id": c.id, "phone": c.phone})),
            "staff": sale.staff,
            "line_items": sale.line_items,
            "refunds": sale.refunds.iter().map(refund_json).collect::<Vec<_>>(),
            "source": self.source.as_str(),
            "change": if created { "created" } else { "updated" },
        })
    }

    /// Binds, in order: order id, location, occurred-at, upstream updated-at, currency, the
    /// six amounts, tender, status, card brand/last4/fingerprint, provider customer id,
    /// customer phone/email/name, matched customer id, content hash, source, now, staff
    /// id/name, line items, refunds.
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
            .bind(self.matched.map(|c| c.id.as_str()))
            .bind(self.hash.as_str())
            .bind(self.source.as_str())
            .bind(self.now)
            .bind(sale.staff.as_ref().and_then(|s| s.id.as_deref()))
            .bind(sale.staff.as_ref().and_then(|s| s.name.as_deref()))
            .bind(self.line_items.as_deref())
            .bind(self.refunds.as_deref())
    }
}

/// The columns [`SaleColumns::bind`] binds, in its order.
const SALE_COLUMNS: usize = 28;

/// A stored row as the duplicate check sees it.
struct StoredSale {
    id: String,
    hash: String,
    upstream_updated: Option<i64>,
    net: i64,
    customer_id: Option<String>,
}

/// Stores a batch: new sales in multi-row INSERTs, then the rest read back in one statement
/// and compared in memory — newer (or same-age but different) content replaces, an older
/// update never does — with one UPDATE per sale that really changed. On PostgreSQL the
/// known rows are locked as they are read, so the comparison holds until the UPDATE.
async fn store_sales(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    rows: &[SaleColumns<'_>],
) -> Result<Vec<Outcome>, StoreError> {
    let ids: Vec<String> = rows.iter().map(|_| new_id()).collect();
    // Inserted in external-id order, the same in every batch: on PostgreSQL each row waits
    // on a concurrent batch's uncommitted copy of its key, and two batches taking their keys
    // in different orders would wait on each other. The sort is stable, so a key repeated
    // within the batch still has its first occurrence inserted.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[a].sale.external_id.cmp(&rows[b].sale.external_id));
    let mut created = HashSet::new();
    for chunk in order.chunks(SALES_PER_STATEMENT) {
        // Per row: id, tenant, integration, external id, the shared columns, and `now` once
        // more for `updated_at`.
        let values = Params::new(tx.backend()).rows(chunk.len(), 4 + SALE_COLUMNS + 1);
        let sql = format!(
            "INSERT INTO pos_transactions (id, tenant_id, integration_id, external_id, order_id, location_id, occurred_at,
               upstream_updated_at, currency, total, subtotal, tax, tip, discount, refunded, tender, status, card_brand,
               card_last4, card_fingerprint, provider_customer_id, customer_phone, customer_email, customer_name,
               customer_id, content_hash, source, created_at, staff_id, staff_name, line_items, refunds, updated_at)
             VALUES {values}
             ON CONFLICT (integration_id, external_id) DO NOTHING
             RETURNING id"
        );
        let mut insert = sqlx::query(&sql);
        for &i in chunk {
            let (row, id) = (&rows[i], &ids[i]);
            let columns = insert
                .bind(id.as_str())
                .bind(scope.tenant_id())
                .bind(target.integration_id)
                .bind(&row.sale.external_id);
            insert = row.bind(columns).bind(row.now);
        }
        for inserted in insert.fetch_all(tx.conn()).await? {
            created.insert(inserted.try_get::<String, _>("id")?);
        }
    }
    // Within one statement only a key's first occurrence can be inserted: later ones (and
    // keys already stored) conflict and are compared below, in batch order.
    let known: Vec<&str> = rows
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !created.contains(*id))
        .map(|(row, _)| row.sale.external_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut stored = read_stored(tx, target, &known).await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    for (row, id) in rows.iter().zip(ids) {
        if created.contains(&id) {
            outcomes.push(Outcome::Created { id });
            continue;
        }
        let Some(current) = stored.get_mut(row.sale.external_id.as_str()) else {
            outcomes.push(Outcome::Duplicate);
            continue;
        };
        if !supersedes(
            (&current.hash, current.upstream_updated),
            (&row.hash, row.upstream_updated),
        ) {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let update = sqlx::query(
            "UPDATE pos_transactions SET order_id = $1, location_id = $2, occurred_at = $3, upstream_updated_at = $4,
               currency = $5, total = $6, subtotal = $7, tax = $8, tip = $9, discount = $10, refunded = $11,
               tender = $12, status = $13, card_brand = $14, card_last4 = $15, card_fingerprint = $16,
               provider_customer_id = $17, customer_phone = $18, customer_email = $19, customer_name = $20,
               customer_id = COALESCE($21, customer_id), content_hash = $22, source = $23, updated_at = $24,
               staff_id = $25, staff_name = $26, line_items = $27, refunds = $28
             WHERE id = $29",
        );
        row.bind(update)
            .bind(current.id.as_str())
            .execute(tx.conn())
            .await?;
        let previous = Previous {
            net: current.net,
            customer_id: current.customer_id.clone(),
        };
        current.hash = row.hash.clone();
        current.upstream_updated = row.upstream_updated;
        current.net = net_spend(row.sale.status, row.sale.total, row.sale.refunded);
        if let Some(matched) = row.matched {
            current.customer_id = Some(matched.id.clone());
        }
        outcomes.push(Outcome::Updated {
            id: current.id.clone(),
            previous,
        });
    }
    Ok(outcomes)
}

/// The stored rows of `external_ids` at the integration, by external id.
async fn read_stored(
    tx: &mut LoggedTx,
    target: &IngestTarget<'_>,
    external_ids: &[&str],
) -> Result<HashMap<String, StoredSale>, StoreError> {
    let lock = if tx.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let backend = tx.backend();
    let rows = rows_by_keys(tx.conn(), backend, target.integration_id, external_ids, |scope, keys| {
        format!(
            "SELECT id, external_id, content_hash, upstream_updated_at, status, total, refunded, customer_id
             FROM pos_transactions WHERE integration_id = {scope} AND external_id IN ({keys}){lock}"
        )
    })
    .await?;
    let mut stored = HashMap::new();
    for row in rows {
        let status: String = row.try_get("status")?;
        let (total, refunded): (i64, i64) = (row.try_get("total")?, row.try_get("refunded")?);
        stored.insert(
            row.try_get("external_id")?,
            StoredSale {
                id: row.try_get("id")?,
                hash: row.try_get("content_hash")?,
                upstream_updated: row.try_get("upstream_updated_at")?,
                net: net_spend_stored(&status, total, refunded),
                customer_id: row.try_get("customer_id")?,
            },
        );
    }
    Ok(stored)
}

type SaleQuery<'q> = sqlx::query::Query<'q, Db, sqlx::any::AnyArguments<'q>>;

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
