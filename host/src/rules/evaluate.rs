//! Rule evaluation inside the transaction that records a sale.
//!
//! For a sale matched to a customer: lock the customer row (so concurrent sales of one
//! customer are evaluated one after the other, each seeing the other's spend), sum the
//! customer's lifetime spend at the venue net of refunds and voids, walk the venue's enabled
//! rules in priority order and take the first whose threshold, time window (at the sale's own
//! time, venue time zone), live-only flag and performer match. If that rule never unlocked for
//! this customer, record the unlock (unique per customer and rule: the exactly-once key),
//! raise the customer's tier and access (never lower them), and append `tier_unlocked` — all
//! in the caller's transaction, so a crash anywhere leaves either all of it or none.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use serde_json::json;
use sqlx::Row;

use super::performances::PerformanceCache;
use super::tiers::{self, Ladder};
use super::windows::in_any_window;
use super::{lifetime_spend_sql, venue_rules, SpendRule};
use crate::auth::TenantScope;
use crate::events::{EventKind, LoggedTx};
use crate::store::{new_id, now_micros, rfc3339, StoreError};

/// A recorded sale to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct SaleRef<'a> {
    /// Our transaction id.
    pub transaction_id: &'a str,
    /// The matched customer.
    pub customer_id: &'a str,
    /// When the sale happened (µs): time windows and performances are checked at this time.
    pub occurred_at: i64,
}

/// What one venue's evaluation needs, loaded once per batch of sales.
struct VenueContext {
    tz: TimeZone,
    currency: String,
    ladder: Ladder,
    /// Enabled rules in evaluation order.
    rules: Vec<SpendRule>,
}

/// Evaluates the sales of one batch (one integration) against its venue's rules. Create one
/// per batch: the rules and ladder are read once, inside the batch's transaction.
pub struct RuleEvaluator {
    integration_id: String,
    venue: String,
    context: Option<Option<VenueContext>>,
    /// Statistics by rule id, written once per batch by [`RuleEvaluator::finish`].
    stats: HashMap<String, RuleStats>,
    performances: PerformanceCache,
}

/// How a batch moved one rule's statistics.
#[derive(Debug, Default)]
struct RuleStats {
    triggered: i64,
    unlocked: i64,
    last_at: i64,
}

/// `AnyConnection::backend_name` of PostgreSQL.
const POSTGRES: &str = "PostgreSQL";

impl RuleEvaluator {
    /// An evaluator for sales of `integration_id`, which serves `venue`.
    pub fn new(integration_id: &str, venue: &str) -> Self {
        RuleEvaluator {
            integration_id: integration_id.to_owned(),
            venue: venue.to_owned(),
            context: None,
            stats: HashMap::new(),
            performances: PerformanceCache::default(),
        }
    }

    /// Writes the batch's rule statistics; call once, before the batch's transaction commits.
    pub async fn finish(self, tx: &mut LoggedTx) -> Result<(), StoreError> {
        for (rule_id, stats) in self.stats {
            sqlx::query(
                "UPDATE spend_rules SET times_triggered = times_triggered + $1,
                   customers_unlocked = customers_unlocked + $2,
                   last_triggered_at = CASE WHEN last_triggered_at IS NULL OR last_triggered_at < $3
                                            THEN $3 ELSE last_triggered_at END
                 WHERE id = $4",
            )
            .bind(stats.triggered)
            .bind(stats.unlocked)
            .bind(stats.last_at)
            .bind(&rule_id)
            .execute(tx.conn())
            .await?;
        }
        Ok(())
    }

    async fn load(&mut self, tx: &mut LoggedTx, scope: &TenantScope) -> Result<bool, StoreError> {
        if self.context.is_none() {
            let rules = venue_rules(tx.conn(), scope.tenant_id(), &self.venue, true).await?;
            let context = if rules.is_empty() {
                None
            } else {
                let row = sqlx::query("SELECT timezone, currency FROM integrations WHERE id = $1")
                    .bind(&self.integration_id)
                    .fetch_one(tx.conn())
                    .await?;
                let tz_name: String = row.try_get("timezone")?;
                let tz = TimeZone::get(&tz_name)
                    .or_else(|_| TimeZone::get(scope.timezone()))
                    .unwrap_or(TimeZone::UTC);
                Some(VenueContext {
                    tz,
                    currency: row.try_get("currency")?,
                    ladder: tiers::load(tx.conn(), scope.tenant_id()).await?,
                    rules,
                })
            };
            self.context = Some(context);
        }
        Ok(matches!(self.context, Some(Some(_))))
    }

    /// Evaluates one sale, recording the unlock it causes, if any.
    pub async fn evaluate(
        &mut self,
        tx: &mut LoggedTx,
        scope: &TenantScope,
        sale: SaleRef<'_>,
    ) -> Result<(), StoreError> {
        if !self.load(tx, scope).await? {
            return Ok(());
        }
        metrics::counter!("posbridge_rule_evaluations_total").increment(1);
        if tx.conn().backend_name() == POSTGRES {
            // The no-op UPDATE takes the customer's row lock: a concurrent sale of the same
            // customer waits here, and the next statement (a new snapshot under READ
            // COMMITTED) sees its spend. SQLite's single writer already serialises them.
            sqlx::query("UPDATE customers SET updated_at = updated_at WHERE id = $1")
                .bind(sale.customer_id)
                .execute(tx.conn())
                .await?;
        }
        let customer = sqlx::query(concat!(
            "SELECT c.phone, c.tier, c.access_level, (SELECT ",
            lifetime_spend_sql!(),
            " FROM pos_transactions t
                WHERE t.tenant_id = c.tenant_id AND t.customer_id = c.id AND t.integration_id = $3) AS spend
             FROM customers c WHERE c.id = $1 AND c.tenant_id = $2",
        ))
        .bind(sale.customer_id)
        .bind(scope.tenant_id())
        .bind(&self.integration_id)
        .fetch_optional(tx.conn())
        .await?;
        let Some(customer) = customer else {
            return Ok(());
        };
        let phone: String = customer.try_get("phone")?;
        let held_tier: Option<String> = customer.try_get("tier")?;
        let held_access: Option<String> = customer.try_get("access_level")?;
        let spend: i64 = customer.try_get("spend")?;
        let Some(ctx) = self.context.as_ref().and_then(Option::as_ref) else {
            return Ok(());
        };
        // Who performs is looked up only when a rule that asks is otherwise a match.
        let mut performers: Option<Vec<&str>> = None;
        let mut first_match = None;
        for (index, rule) in ctx.rules.iter().enumerate() {
            if spend < rule.threshold
                || !in_any_window(&rule.time_windows, &ctx.tz, sale.occurred_at)
            {
                continue;
            }
            if rule.live_only || rule.performer_id.is_some() {
                if performers.is_none() {
                    performers = Some(
                        self.performances
                            .performers_at(
                                tx.conn(),
                                scope.tenant_id(),
                                &self.venue,
                                sale.occurred_at,
                            )
                            .await?,
                    );
                }
                let on = performers.as_deref().unwrap_or_default();
                if (rule.live_only && on.is_empty())
                    || rule
                        .performer_id
                        .as_deref()
                        .is_some_and(|p| !on.contains(&p))
                {
                    continue;
                }
            }
            first_match = Some(index);
            break;
        }
        let Some(index) = first_match else {
            return Ok(());
        };
        let rule = &ctx.rules[index];
        let venue = &self.venue;
        let now = now_micros();
        let first_time = sqlx::query(
            "INSERT INTO tier_unlocks (id, tenant_id, customer_id, rule_id, rule_name, venue, tier, access_level,
               transaction_id, lifetime_spend, currency, occurred_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (customer_id, rule_id) DO NOTHING",
        )
        .bind(new_id())
        .bind(scope.tenant_id())
        .bind(sale.customer_id)
        .bind(&rule.id)
        .bind(&rule.name)
        .bind(venue)
        .bind(&rule.tier)
        .bind(rule.access_level.as_deref())
        .bind(sale.transaction_id)
        .bind(spend)
        .bind(&ctx.currency)
        .bind(sale.occurred_at)
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        let stats = self.stats.entry(rule.id.clone()).or_default();
        stats.triggered += 1;
        stats.unlocked += i64::from(first_time);
        stats.last_at = now;
        if !first_time {
            return Ok(());
        }
        let ladder = &ctx.ladder;
        let tier = ladder.raise_tier(held_tier.as_deref(), &rule.tier);
        let access = ladder.raise_access(held_access.as_deref(), rule.access_level.as_deref());
        let previous_tier = ladder.effective_tier(held_tier.as_deref());
        let previous_access = ladder.effective_access(held_access.as_deref());
        if tier != previous_tier || access != previous_access {
            sqlx::query(
                "UPDATE customers SET tier = $1, access_level = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(&tier)
            .bind(&access)
            .bind(now)
            .bind(sale.customer_id)
            .execute(tx.conn())
            .await?;
        }
        let data = json!({
            "customer": {"id": sale.customer_id, "phone": phone},
            "venue": venue,
            "rule": {"id": rule.id, "name": rule.name, "threshold": rule.threshold, "priority": rule.priority},
            "tier": rule.tier,
            "access_level": rule.access_level,
            "previous_tier": previous_tier,
            "previous_access_level": previous_access,
            "customer_tier": tier,
            "customer_access_level": access,
            "upgraded": tier != previous_tier,
            "lifetime_spend": spend,
            "currency": ctx.currency,
            "transaction_id": sale.transaction_id,
            "occurred_at": rfc3339(sale.occurred_at),
        });
        tx.append(scope, EventKind::TierUnlocked, &data).await?;
        metrics::counter!("posbridge_tier_unlocks_total").increment(1);
        Ok(())
    }
}
