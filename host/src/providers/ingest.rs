//! Turning canonical transactions from a plugin into stored sales: validated (plugins are
//! untrusted), deduplicated by (integration, external id), a newer upstream version
//! replacing an older one and never the reverse, matched to a customer, announced with
//! `transaction_recorded` and evaluated against the venue's spend rules, all in the same
//! database transaction.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::auth::TenantScope;
use crate::customers::normalize_phone;
use crate::events::{EventKind, LoggedTx};
use crate::money::{parse_currency, MAX_AMOUNT};
use crate::plugins::contract::{CardInfo, CustomerRef, Tender, Transaction, TransactionStatus};
use crate::rules::{RuleEvaluator, SaleRef, SpendMove};
use crate::store::{new_id, now_micros, rfc3339, Backend, Db, Params, StoreError};

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

/// Sales per multi-row INSERT: 26 parameters a row keeps a statement far below SQLite's
/// 32,766 and PostgreSQL's 65,535 bound parameters.
const SALES_PER_STATEMENT: usize = 250;

/// Keys per `IN (…)` list of a bulk lookup, for the same bound.
const KEYS_PER_LOOKUP: usize = 500;

/// Ingests a batch inside `tx`, evaluating the venue's spend rules for every new or changed
/// sale matched to a customer.
///
/// The batch moves through the database in bulk — customers matched in one or two
/// statements, new sales inserted many rows at a time, known ones read back in one — because
/// each statement is a round trip (to SQLite's connection thread, or to the PostgreSQL
/// server) that costs more than the work it carries. The result is the same as the sales
/// arriving one by one: events are appended, and rules see each customer's spend, in the
/// batch's order.
pub async fn ingest(
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
    let customers = match_customers(tx, scope, target, &accepted).await?;
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
        .map(|(row, outcome)| spend_moves(row, outcome))
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
    matched: Option<&'a Customer>,
    hash: String,
    source: Source,
    now: i64,
}

impl<'a> SaleColumns<'a> {
    fn new(sale: &'a Transaction, matched: Option<&'a Customer>, source: Source, now: i64) -> Self {
        SaleColumns {
            sale,
            occurred_at: sale.occurred_at_ms.saturating_mul(1000),
            upstream_updated: sale.updated_at_ms.map(|ms| ms.saturating_mul(1000)),
            currency: sale.currency.to_ascii_uppercase(),
            card: sale.card.clone().unwrap_or_default(),
            customer: sale.customer.clone().unwrap_or_default(),
            matched,
            hash: content_hash(sale),
            source,
            now,
        }
    }

    /// The customer the stored row names: the match, else (an update) the one it had.
    fn stored_customer_id<'s>(&'s self, previous: Option<&'s Previous>) -> Option<&'s str> {
        self.matched
            .map(|c| c.id.as_str())
            .or_else(|| previous.and_then(|p| p.customer_id.as_deref()))
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
            "net": net_spend(sale),
            "tender": tender_str(sale.tender),
            "status": status_str(sale.status),
            "card": {"brand": self.card.brand, "last4": self.card.last4},
            "customer": self.matched.map(|c| serde_json::json!({"id": c.id, "phone": c.phone})),
            "source": self.source.as_str(),
            "change": if created { "created" } else { "updated" },
        })
    }

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
            .bind(self.matched.map(|c| c.id.as_str()))
            .bind(self.hash.as_str())
            .bind(self.source.as_str())
            .bind(self.now)
    }
}

/// The columns [`SaleColumns::bind`] binds, in its order.
const SALE_COLUMNS: usize = 24;

/// What storing one sale of a batch did.
enum Outcome {
    /// A new row.
    Created { id: String },
    /// A known row replaced by newer content.
    Updated { id: String, previous: Previous },
    /// Known and unchanged, or older than what is stored.
    Duplicate,
}

/// What a replaced row counted before the update.
struct Previous {
    /// Its spend (see [`net_spend`]).
    net: i64,
    customer_id: Option<String>,
}

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
               customer_id, content_hash, source, created_at, updated_at)
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
        let current_upstream = current.upstream_updated.unwrap_or(0);
        let newer = current.hash != row.hash
            && current_upstream <= row.upstream_updated.unwrap_or(current_upstream);
        if !newer {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let update = sqlx::query(
            "UPDATE pos_transactions SET order_id = $1, location_id = $2, occurred_at = $3, upstream_updated_at = $4,
               currency = $5, total = $6, subtotal = $7, tax = $8, tip = $9, discount = $10, refunded = $11,
               tender = $12, status = $13, card_brand = $14, card_last4 = $15, card_fingerprint = $16,
               provider_customer_id = $17, customer_phone = $18, customer_email = $19, customer_name = $20,
               customer_id = COALESCE($21, customer_id), content_hash = $22, source = $23, updated_at = $24
             WHERE id = $25",
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
        current.net = net_spend(row.sale);
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
    let rows = rows_by_keys(tx, target.integration_id, external_ids, |scope, keys| {
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
                net: if status == status_str(TransactionStatus::Completed) {
                    (total - refunded).max(0)
                } else {
                    0
                },
                customer_id: row.try_get("customer_id")?,
            },
        );
    }
    Ok(stored)
}

/// The rows `sql(scope, keys)` selects for every key, `KEYS_PER_LOOKUP` keys a statement:
/// `sql` gets the placeholder of `scope_value` and the placeholder list of the keys.
async fn rows_by_keys(
    tx: &mut LoggedTx,
    scope_value: &str,
    keys: &[&str],
    sql: impl Fn(&str, &str) -> String,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
        let mut p = Params::new(tx.backend());
        let scope = p.one();
        let sql = sql(&scope, &p.list(chunk.len()));
        let mut query = sqlx::query(&sql).bind(scope_value);
        for key in chunk {
            query = query.bind(*key);
        }
        rows.extend(query.fetch_all(tx.conn()).await?);
    }
    Ok(rows)
}

/// The spend moves a stored sale makes (see [`SpendMove`]), in order.
fn spend_moves<'r>(row: &'r SaleColumns<'_>, outcome: &'r Outcome) -> Vec<SpendMove<'r>> {
    let (id, previous) = match outcome {
        Outcome::Duplicate => return Vec::new(),
        Outcome::Created { id } => (id, None),
        Outcome::Updated { id, previous } => (id, Some(previous)),
    };
    let customer_id = row.stored_customer_id(previous);
    let mut moves = Vec::with_capacity(2);
    let mut counted_before = 0;
    if let Some(previous) = previous {
        match previous.customer_id.as_deref() {
            Some(before) if Some(before) == customer_id => counted_before = previous.net,
            Some(before) => moves.push(SpendMove {
                customer_id: before,
                delta: -previous.net,
                sale: None,
            }),
            None => {}
        }
    }
    if let Some(customer_id) = customer_id {
        moves.push(SpendMove {
            customer_id,
            delta: net_spend(row.sale) - counted_before,
            sale: Some(SaleRef {
                transaction_id: id,
                occurred_at: row.occurred_at,
            }),
        });
    }
    moves
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

/// The customer a sale was matched to.
#[derive(Debug, Clone)]
struct Customer {
    id: String,
    phone: String,
}

/// Link kinds, as `customer_links.kind` stores them.
const CARD_LINK: &str = "card_fingerprint";
const PROVIDER_LINK: &str = "provider_customer";

/// Matches each sale to a customer, by the first of: a linked card fingerprint, a linked
/// provider customer id, the phone number (creating the customer), the email. Each kind of
/// key is looked up for the whole batch at once.
async fn match_customers(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    target: &IngestTarget<'_>,
    sales: &[&Transaction],
) -> Result<Vec<Option<Customer>>, StoreError> {
    let fingerprint = |sale: &Transaction| {
        sale.card
            .as_ref()
            .and_then(|c| c.fingerprint.clone())
            .filter(|f| !f.is_empty())
    };
    let provider_customer = |sale: &Transaction| {
        sale.customer
            .as_ref()
            .and_then(|c| c.provider_customer_id.as_deref())
            .filter(|p| !p.is_empty())
            .map(|pc| format!("{}:{pc}", target.provider))
    };
    let keys: Vec<(Option<String>, Option<String>)> = sales
        .iter()
        .map(|sale| (fingerprint(sale), provider_customer(sale)))
        .collect();
    let link_values: BTreeSet<&str> = keys
        .iter()
        .flat_map(|(fp, pc)| [fp.as_deref(), pc.as_deref()])
        .flatten()
        .collect();
    let links = linked(tx, scope, &link_values.into_iter().collect::<Vec<_>>()).await?;
    let mut matched: Vec<Option<Customer>> = keys
        .iter()
        .map(|(fp, pc)| {
            let by = |kind: &'static str, value: &Option<String>| {
                value
                    .as_ref()
                    .and_then(|v| links.get(&(kind, v.clone())))
                    .cloned()
            };
            by(CARD_LINK, fp).or_else(|| by(PROVIDER_LINK, pc))
        })
        .collect();

    let phones: Vec<Option<String>> = sales
        .iter()
        .zip(&matched)
        .map(|(sale, found)| {
            let phone = sale.customer.as_ref().and_then(|c| c.phone.as_deref());
            phone
                .filter(|_| found.is_none())
                .and_then(|p| normalize_phone(scope.country(), p).ok())
        })
        .collect();
    // Sorted: on PostgreSQL the upsert locks existing customers in this order, the same in
    // every batch.
    let distinct: BTreeSet<&str> = phones.iter().flatten().map(String::as_str).collect();
    let by_phone =
        find_or_create_many(tx, scope, &distinct.into_iter().collect::<Vec<_>>()).await?;
    for (found, phone) in matched.iter_mut().zip(&phones) {
        if let Some(phone) = phone {
            *found = by_phone.get(phone).map(|id| Customer {
                id: id.clone(),
                phone: phone.clone(),
            });
        }
    }

    let emails: Vec<Option<String>> = sales
        .iter()
        .zip(&matched)
        .map(|(sale, found)| {
            let email = sale.customer.as_ref().and_then(|c| c.email.as_deref());
            email
                .filter(|_| found.is_none())
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| e.contains('@'))
        })
        .collect();
    let distinct: BTreeSet<&str> = emails.iter().flatten().map(String::as_str).collect();
    let by_email = by_emails(tx, scope, &distinct.into_iter().collect::<Vec<_>>()).await?;
    for (found, email) in matched.iter_mut().zip(&emails) {
        if let Some(email) = email {
            *found = by_email.get(email).cloned();
        }
    }
    Ok(matched)
}

/// Customers linked to any of `values` (card fingerprints or `provider:id` keys).
async fn linked(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    values: &[&str],
) -> Result<HashMap<(&'static str, String), Customer>, StoreError> {
    let rows = rows_by_keys(tx, scope.tenant_id(), values, |tenant, values| {
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
        links.insert((kind, row.try_get("value")?), customer_from_row(&row)?);
    }
    Ok(links)
}

/// The customers with these (normalised, distinct) phones, created where missing: id by
/// phone.
async fn find_or_create_many(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    phones: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
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
                .bind(scope.tenant_id())
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
    scope: &TenantScope,
    emails: &[&str],
) -> Result<HashMap<String, Customer>, StoreError> {
    let rows = rows_by_keys(tx, scope.tenant_id(), emails, |tenant, emails| {
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
            slot.insert(customer_from_row(&row)?);
        }
    }
    Ok(found)
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
