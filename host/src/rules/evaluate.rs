//! Rule evaluation inside the transaction that records a batch of sales.
//!
//! For each sale matched to a customer, in batch order: the customer's lifetime spend at the
//! venue net of refunds and voids, as of that sale → the venue's enabled rules in priority
//! order → the first whose threshold, time window (at the sale's own time, venue time zone),
//! live-only flag and performer match. If that rule never unlocked for this customer, the
//! unlock is recorded (unique per customer and rule: the exactly-once key), the customer's
//! tier and access rise (never fall), and `tier_unlocked` is appended — all in the caller's
//! transaction, so a crash anywhere leaves either all of it or none. The batch's customers
//! are locked on PostgreSQL, so concurrent sales of one customer are evaluated one batch
//! after the other, the later one seeing the earlier one's spend.

use std::collections::{BTreeSet, HashMap, HashSet};

use jiff::tz::TimeZone;
use serde_json::json;
use sqlx::Row;

use super::book::venue_rules;
use super::decide::{fit, RuleFit};
use super::performances::PerformanceCache;
use super::SpendRule;
use crate::auth::TenantScope;
use crate::customers::ladder::{self, Ladder};
use crate::customers::{self, tiers::HeldStanding};
use crate::events::{EventKind, LoggedTx};
use crate::store::{new_id, now_micros, rfc3339, Params, StoreError};

/// A change of one customer's lifetime spend at the venue, in batch order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpendMove<'a> {
    /// The customer whose spend moves.
    pub customer_id: &'a str,
    /// By how much (minor units; negative when an update took a sale away or refunded it).
    pub delta: i64,
    /// The recorded sale to evaluate once the move is applied; `None` for a customer that
    /// only loses spend (a lower spend never unlocks anything).
    pub sale: Option<SaleRef<'a>>,
}

/// A recorded sale to evaluate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SaleRef<'a> {
    /// Our transaction id.
    pub transaction_id: &'a str,
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

/// A customer of the batch as evaluation sees it.
struct CustomerState {
    phone: String,
    tier: Option<String>,
    access: Option<String>,
    /// Lifetime spend at the venue with the batch's moves applied so far.
    spend: i64,
    /// Tier or access raised by this batch: written by [`RuleEvaluator::finish`].
    raised: bool,
}

/// An unlock decided by this batch, inserted by [`RuleEvaluator::finish`].
struct NewUnlock {
    customer_id: String,
    rule: usize,
    transaction_id: String,
    spend: i64,
    occurred_at: i64,
}

/// Evaluates the sales of one batch (one integration) against its venue's rules.
///
/// [`RuleEvaluator::prepare`] reads, in a handful of statements, everything the batch needs:
/// the rules, the ladder, each customer's tier and spend, and the unlocks they hold. Each
/// [`RuleEvaluator::apply`] then decides in memory and appends `tier_unlocked` at once, so
/// events keep the batch's order; [`RuleEvaluator::finish`] writes the unlocks, tiers and
/// rule statistics in bulk, before the batch's transaction commits.
pub(crate) struct RuleEvaluator {
    venue: String,
    /// `None` when the venue has no enabled rule: every apply is then a no-op.
    context: Option<VenueContext>,
    customers: HashMap<String, CustomerState>,
    /// (customer id, rule id) unlocked before or during this batch: the exactly-once key.
    unlocked: HashSet<(String, String)>,
    new_unlocks: Vec<NewUnlock>,
    /// Statistics by rule index.
    stats: HashMap<usize, RuleStats>,
    performances: PerformanceCache,
}

/// How a batch moved one rule's statistics.
#[derive(Debug, Default)]
struct RuleStats {
    triggered: i64,
    unlocked: i64,
    last_at: i64,
}

/// Customer ids per `IN (…)` list and rows per multi-row statement: far below both
/// databases' bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

impl RuleEvaluator {
    /// Loads what evaluating `moves` (a batch's, in order) at `venue` needs. On PostgreSQL
    /// the batch's customers are locked first, in id order (so two batches' customer locks
    /// never cross): a concurrent batch with the same customer waits here, and
    /// the spend read afterwards (a new snapshot under READ COMMITTED) includes its sales.
    /// SQLite's single writer already runs batches one after the other.
    pub(crate) async fn prepare<'m>(
        tx: &mut LoggedTx,
        scope: &TenantScope,
        integration_id: &str,
        venue: &str,
        moves: impl Iterator<Item = &'m SpendMove<'m>> + Clone,
    ) -> Result<Self, StoreError> {
        let mut evaluator = RuleEvaluator {
            venue: venue.to_owned(),
            context: None,
            customers: HashMap::new(),
            unlocked: HashSet::new(),
            new_unlocks: Vec::new(),
            stats: HashMap::new(),
            performances: PerformanceCache::default(),
        };
        let evaluated: BTreeSet<&str> = moves
            .clone()
            .filter(|m| m.sale.is_some())
            .map(|m| m.customer_id)
            .collect();
        if evaluated.is_empty() {
            return Ok(evaluator);
        }
        let rules = venue_rules(tx.conn(), scope.tenant_id(), venue, true).await?;
        if rules.is_empty() {
            return Ok(evaluator);
        }
        let row = sqlx::query("SELECT timezone, currency FROM integrations WHERE id = $1")
            .bind(integration_id)
            .fetch_one(tx.conn())
            .await?;
        let tz_name: String = row.try_get("timezone")?;
        let tz = TimeZone::get(&tz_name)
            .or_else(|_| TimeZone::get(scope.timezone()))
            .unwrap_or(TimeZone::UTC);
        evaluator.context = Some(VenueContext {
            tz,
            currency: row.try_get("currency")?,
            ladder: ladder::load(tx.conn(), scope.tenant_id()).await?,
            rules,
        });

        // Unlocks are looked up by customer id alone, for the reason `lock_with_spend`
        // gives.
        let ids: Vec<&str> = evaluated.into_iter().collect();
        let backend = tx.backend();
        let held = customers::tiers::lock_with_spend(
            tx.conn(),
            backend,
            scope.tenant_id(),
            integration_id,
            &ids,
        )
        .await?;
        evaluator.customers = held
            .into_iter()
            .map(|(id, held)| {
                let state = CustomerState {
                    phone: held.phone,
                    tier: held.tier,
                    access: held.access_level,
                    spend: held.spend,
                    raised: false,
                };
                (id, state)
            })
            .collect();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            // Rule ids are unique across venues: other venues' unlocks in the set are inert.
            let sql = format!(
                "SELECT customer_id, rule_id FROM tier_unlocks WHERE customer_id IN ({})",
                Params::new(tx.backend()).list(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(tx.conn()).await? {
                evaluator
                    .unlocked
                    .insert((row.try_get("customer_id")?, row.try_get("rule_id")?));
            }
        }
        // The spend read includes the whole batch (already stored); rewind it to before
        // the batch, so each apply sees exactly the sales up to its own.
        for spend_move in moves {
            if let Some(state) = evaluator.customers.get_mut(spend_move.customer_id) {
                state.spend -= spend_move.delta;
            }
        }
        Ok(evaluator)
    }

    /// Applies one move and, for a sale, evaluates it: the first rule by priority whose
    /// threshold, time window, live-only flag and performer match decides; if the customer
    /// never unlocked it, the unlock is recorded, the customer's tier and access rise (never
    /// fall) and `tier_unlocked` is appended.
    pub(crate) async fn apply(
        &mut self,
        tx: &mut LoggedTx,
        scope: &TenantScope,
        spend_move: &SpendMove<'_>,
    ) -> Result<(), StoreError> {
        let RuleEvaluator {
            venue,
            context: Some(ctx),
            customers,
            unlocked,
            new_unlocks,
            stats,
            performances,
        } = self
        else {
            return Ok(());
        };
        let Some(customer) = customers.get_mut(spend_move.customer_id) else {
            return Ok(());
        };
        customer.spend += spend_move.delta;
        let Some(sale) = spend_move.sale else {
            return Ok(());
        };
        metrics::counter!("posbridge_rule_evaluations_total").increment(1);
        let spend = customer.spend;
        // Who performs is looked up only when a rule that asks is otherwise a match.
        let mut performers: Option<Vec<&str>> = None;
        let mut first_match = None;
        for (index, rule) in ctx.rules.iter().enumerate() {
            let mut verdict = fit(
                rule,
                spend,
                &ctx.tz,
                sale.occurred_at,
                performers.as_deref(),
            );
            if verdict == RuleFit::NeedsPerformers {
                let on = performances
                    .performers_at(tx.conn(), scope.tenant_id(), venue, sale.occurred_at)
                    .await?;
                verdict = fit(rule, spend, &ctx.tz, sale.occurred_at, Some(&on));
                performers = Some(on);
            }
            if verdict == RuleFit::Fits {
                first_match = Some(index);
                break;
            }
        }
        let Some(index) = first_match else {
            return Ok(());
        };
        let rule = &ctx.rules[index];
        let now = now_micros();
        let first_time = unlocked.insert((spend_move.customer_id.to_owned(), rule.id.clone()));
        let rule_stats = stats.entry(index).or_default();
        rule_stats.triggered += 1;
        rule_stats.unlocked += i64::from(first_time);
        rule_stats.last_at = now;
        if !first_time {
            return Ok(());
        }
        new_unlocks.push(NewUnlock {
            customer_id: spend_move.customer_id.to_owned(),
            rule: index,
            transaction_id: sale.transaction_id.to_owned(),
            spend,
            occurred_at: sale.occurred_at,
        });
        let ladder = &ctx.ladder;
        let tier = ladder.raise_tier(customer.tier.as_deref(), &rule.tier);
        let access = ladder.raise_access(customer.access.as_deref(), rule.access_level.as_deref());
        let previous_tier = ladder.effective_tier(customer.tier.as_deref());
        let previous_access = ladder.effective_access(customer.access.as_deref());
        let data = json!({
            "customer": {"id": spend_move.customer_id, "phone": customer.phone},
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
        if tier != previous_tier || access != previous_access {
            customer.tier = Some(tier);
            customer.access = Some(access);
            customer.raised = true;
        }
        tx.append(scope, EventKind::TierUnlocked, &data)?;
        metrics::counter!("posbridge_tier_unlocks_total").increment(1);
        Ok(())
    }

    /// Writes the batch's unlocks, raised tiers and rule statistics; call once, before the
    /// batch's transaction commits.
    pub(crate) async fn finish(
        self,
        tx: &mut LoggedTx,
        scope: &TenantScope,
    ) -> Result<(), StoreError> {
        let Some(ctx) = &self.context else {
            return Ok(());
        };
        let now = now_micros();
        // A plain INSERT: the unique (customer, rule) key turns an unlock this batch did not
        // foresee (impossible under the locks above) into a rolled-back batch, never into
        // a second unlock.
        for chunk in self.new_unlocks.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO tier_unlocks (id, tenant_id, venue, currency, created_at, customer_id, rule_id,
                   rule_name, tier, access_level, transaction_id, lifetime_spend, occurred_at)
                 VALUES {}",
                Params::new(tx.backend()).rows(chunk.len(), 13)
            );
            let mut query = sqlx::query(&sql);
            for unlock in chunk {
                let rule = &ctx.rules[unlock.rule];
                query = query
                    .bind(new_id())
                    .bind(scope.tenant_id())
                    .bind(&self.venue)
                    .bind(&ctx.currency)
                    .bind(now)
                    .bind(&unlock.customer_id)
                    .bind(&rule.id)
                    .bind(&rule.name)
                    .bind(&rule.tier)
                    .bind(rule.access_level.as_deref())
                    .bind(&unlock.transaction_id)
                    .bind(unlock.spend)
                    .bind(unlock.occurred_at);
            }
            query.execute(tx.conn()).await?;
        }
        let held: Vec<HeldStanding<'_>> = self
            .customers
            .iter()
            .filter(|(_, c)| c.raised)
            .map(|(id, customer)| HeldStanding {
                customer_id: id,
                tier: customer.tier.as_deref(),
                access_level: customer.access.as_deref(),
            })
            .collect();
        let backend = tx.backend();
        customers::tiers::set_held(tx.conn(), backend, &held, now).await?;
        let stats: Vec<(&usize, &RuleStats)> = self.stats.iter().collect();
        for chunk in stats.chunks(ROWS_PER_STATEMENT) {
            // The casts type the VALUES columns for PostgreSQL, which reads bare
            // parameters there as text.
            let mut p = Params::new(tx.backend());
            let rows: Vec<String> = (0..chunk.len())
                .map(|_| {
                    let id = p.one();
                    let [triggered, unlocked, last] = [p.one(), p.one(), p.one()];
                    format!(
                        "({id}, CAST({triggered} AS BIGINT), CAST({unlocked} AS BIGINT), CAST({last} AS BIGINT))"
                    )
                })
                .collect();
            let sql = format!(
                "UPDATE spend_rules SET times_triggered = times_triggered + v.column2,
                   customers_unlocked = customers_unlocked + v.column3,
                   last_triggered_at = CASE WHEN last_triggered_at IS NULL OR last_triggered_at < v.column4
                                            THEN v.column4 ELSE last_triggered_at END
                 FROM (VALUES {}) AS v WHERE spend_rules.id = v.column1",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (rule, stats) in chunk {
                query = query
                    .bind(&ctx.rules[**rule].id)
                    .bind(stats.triggered)
                    .bind(stats.unlocked)
                    .bind(stats.last_at);
            }
            query.execute(tx.conn()).await?;
        }
        Ok(())
    }
}
