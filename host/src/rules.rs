//! Spend rules: per-venue thresholds of lifetime spend that unlock customer tiers and access
//! levels, the tenant's tier ladder, venue performances (for live-only and performer rules),
//! and the evaluation that runs inside the transaction recording each sale.
//!
//! Managers edit rules at `/api/{tenant}/pos/rules/{venue}`; [`RuleEvaluator`] is called by
//! the providers' ingest for every new or changed sale matched to a customer.

mod evaluate;
mod performances;
pub mod tiers;
pub mod windows;

pub use evaluate::{RuleEvaluator, SaleRef, SpendMove};
pub use performances::Performance;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::Row;

use crate::auth::{ManagerCaller, TenantScope, TerminalCaller};
use crate::customers::normalize_phone;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::money::NonNegativeAmount;
use crate::state::AppState;
use crate::store::{new_id, now_micros, rfc3339, Conn, Store, StoreError};
use tiers::{Ladder, LadderColumn, LadderUpdate};
use windows::{TimeWindow, MAX_WINDOWS};

/// Most rules one venue may have: evaluation walks them in memory for every sale.
pub const MAX_RULES_PER_VENUE: i64 = 1_000;

/// Why a rule operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// No such rule at this venue of this tenant.
    #[error("no rule {0} at this venue")]
    NotFound(String),
    /// The input breaks a rule of the API (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// The rule names a tier the tenant's ladder does not have.
    #[error("unknown tier {0:?}: the tenant's tiers are {1}")]
    UnknownTier(String, String),
    /// The rule names an access level the tenant's ladder does not have.
    #[error("unknown access level {0:?}: the tenant's access levels are {1}")]
    UnknownAccessLevel(String, String),
    /// The venue already has the maximum number of rules.
    #[error("a venue may have at most {MAX_RULES_PER_VENUE} rules")]
    TooManyRules,
    /// A ladder edit would drop a tier or access level that is still used.
    #[error("{0:?} is still unlocked by a rule or held by a customer")]
    InUse(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RuleError {
    fn from(err: sqlx::Error) -> Self {
        RuleError::Store(err.into())
    }
}

impl From<RuleError> for ApiError {
    fn from(err: RuleError) -> Self {
        let message = err.to_string();
        match err {
            RuleError::NotFound(_) => ApiError::not_found("rule_not_found", message),
            RuleError::Invalid(_) => ApiError::unprocessable("invalid_request", message),
            RuleError::UnknownTier(..) => ApiError::unprocessable("unknown_tier", message),
            RuleError::UnknownAccessLevel(..) => {
                ApiError::unprocessable("unknown_access_level", message)
            }
            RuleError::TooManyRules => ApiError::conflict("too_many_rules", message),
            RuleError::InUse(_) => ApiError::conflict("tier_in_use", message),
            RuleError::Store(e) => e.into(),
        }
    }
}

/// A spend rule as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SpendRule {
    /// Rule id.
    pub id: String,
    /// The venue whose sales it counts.
    pub venue: String,
    /// Display name.
    pub name: String,
    /// Lifetime spend at the venue (minor units, net of refunds and voids) that unlocks it.
    pub threshold: i64,
    /// Tier the customer reaches (at least).
    pub tier: String,
    /// Access level granted (at least), if any.
    pub access_level: Option<String>,
    /// Lower runs first; the first matching rule decides.
    pub priority: i64,
    /// Disabled rules are skipped.
    pub enabled: bool,
    /// Only sales made while a performance is on at the venue count.
    pub live_only: bool,
    /// Weekly windows (venue time) the sale must fall in; empty means any time.
    pub time_windows: Vec<TimeWindow>,
    /// Only sales made while this performer is on at the venue count.
    pub performer_id: Option<String>,
    /// Sales for which this rule was the first match.
    pub times_triggered: i64,
    /// Customers it unlocked (once each).
    pub customers_unlocked: i64,
    /// When it last matched.
    pub last_triggered: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last edited.
    pub updated_at: String,
}

/// Body of `POST /pos/rules/{venue}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// Display name (1–100 characters).
    pub name: String,
    /// Minor units, ≥ 0.
    pub threshold: NonNegativeAmount,
    /// A tier of the tenant's ladder.
    pub tier: String,
    /// An access level of the tenant's ladder.
    #[serde(default)]
    pub access_level: Option<String>,
    /// Default 0.
    #[serde(default)]
    pub priority: i64,
    /// Default true.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Default false.
    #[serde(default)]
    pub live_only: bool,
    /// Default: none (any time).
    #[serde(default)]
    pub time_windows: Vec<TimeWindow>,
    /// Default: any performer.
    #[serde(default)]
    pub performer_id: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// Body of `PATCH /pos/rules/{venue}/{rule_id}`: absent fields stay; `null` clears the
/// optional ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    threshold: Option<NonNegativeAmount>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default, deserialize_with = "present")]
    access_level: Option<Option<String>>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    live_only: Option<bool>,
    #[serde(default)]
    time_windows: Option<Vec<TimeWindow>>,
    #[serde(default, deserialize_with = "present")]
    performer_id: Option<Option<String>>,
}

/// Tells "field given as null" (`Some(None)`) from "field absent" (`None`, the default).
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Priorities are kept to a range that sorts the same in every database.
const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

impl NewRule {
    fn check(&self, ladder: &Ladder) -> Result<(), RuleError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(RuleError::Invalid("name must be 1-100 characters".into()));
        }
        if ladder.tier_rank(&self.tier).is_none() {
            return Err(RuleError::UnknownTier(
                self.tier.clone(),
                ladder.tiers.join(", "),
            ));
        }
        if let Some(level) = &self.access_level {
            if ladder.access_rank(level).is_none() {
                return Err(RuleError::UnknownAccessLevel(
                    level.clone(),
                    ladder.access_levels.join(", "),
                ));
            }
        }
        if !PRIORITY_RANGE.contains(&self.priority) {
            return Err(RuleError::Invalid(
                "priority must be between -1000000 and 1000000".into(),
            ));
        }
        if self.time_windows.len() > MAX_WINDOWS {
            return Err(RuleError::Invalid(format!(
                "a rule may have at most {MAX_WINDOWS} time windows"
            )));
        }
        if let Some(p) = &self.performer_id {
            if p.trim().is_empty() || p.chars().count() > 100 {
                return Err(RuleError::Invalid(
                    "performer_id must be 1-100 characters".into(),
                ));
            }
        }
        Ok(())
    }

    fn apply(mut self, patch: RulePatch) -> Self {
        if let Some(v) = patch.name {
            self.name = v;
        }
        if let Some(v) = patch.threshold {
            self.threshold = v;
        }
        if let Some(v) = patch.tier {
            self.tier = v;
        }
        if let Some(v) = patch.access_level {
            self.access_level = v;
        }
        if let Some(v) = patch.priority {
            self.priority = v;
        }
        if let Some(v) = patch.enabled {
            self.enabled = v;
        }
        if let Some(v) = patch.live_only {
            self.live_only = v;
        }
        if let Some(v) = patch.time_windows {
            self.time_windows = v;
        }
        if let Some(v) = patch.performer_id {
            self.performer_id = v;
        }
        self
    }
}

fn check_venue(venue: &str) -> Result<(), RuleError> {
    if venue.is_empty() || venue.chars().count() > 100 {
        return Err(RuleError::Invalid("venue must be 1-100 characters".into()));
    }
    Ok(())
}

const RULE_COLUMNS: &str = "id, venue, name, threshold, tier, access_level, priority, enabled, live_only,
    time_windows, performer_id, times_triggered, customers_unlocked, last_triggered_at, created_at, updated_at";

/// The order rules are evaluated and listed in.
const RULE_ORDER: &str = "ORDER BY priority, threshold, created_at, id";

fn rule_from_row(row: &sqlx::any::AnyRow) -> Result<SpendRule, sqlx::Error> {
    let windows: String = row.try_get("time_windows")?;
    let last: Option<i64> = row.try_get("last_triggered_at")?;
    Ok(SpendRule {
        id: row.try_get("id")?,
        venue: row.try_get("venue")?,
        name: row.try_get("name")?,
        threshold: row.try_get("threshold")?,
        tier: row.try_get("tier")?,
        access_level: row.try_get("access_level")?,
        priority: row.try_get("priority")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        live_only: row.try_get::<i64, _>("live_only")? != 0,
        // Written only from validated windows; unreadable text is a storage fault, never
        // silently "no time restriction".
        time_windows: serde_json::from_str(&windows).map_err(|e| sqlx::Error::Decode(e.into()))?,
        performer_id: row.try_get("performer_id")?,
        times_triggered: row.try_get("times_triggered")?,
        customers_unlocked: row.try_get("customers_unlocked")?,
        last_triggered: last.map(rfc3339),
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// Rules of one venue in evaluation order (enabled or not).
async fn venue_rules(
    conn: &mut Conn,
    tenant_id: &str,
    venue: &str,
    enabled_only: bool,
) -> Result<Vec<SpendRule>, StoreError> {
    let filter = if enabled_only { "AND enabled = 1" } else { "" };
    let rows = sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM spend_rules WHERE tenant_id = $1 AND venue = $2 {filter} {RULE_ORDER}"
    ))
    .bind(tenant_id)
    .bind(venue)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(rule_from_row).collect::<Result<_, _>>()?)
}

async fn rule_by_id(
    conn: &mut Conn,
    tenant_id: &str,
    venue: &str,
    rule_id: &str,
) -> Result<SpendRule, RuleError> {
    let row = sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM spend_rules WHERE tenant_id = $1 AND venue = $2 AND id = $3"
    ))
    .bind(tenant_id)
    .bind(venue)
    .bind(rule_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| RuleError::NotFound(rule_id.to_owned()))?;
    Ok(rule_from_row(&row)?)
}

/// The spend rules of a tenant, venue by venue.
pub struct RuleBook;

impl RuleBook {
    /// All rules of a venue, sorted by priority then threshold.
    pub async fn list(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
    ) -> Result<Vec<SpendRule>, RuleError> {
        let mut conn = store.reader().acquire().await?;
        Ok(venue_rules(&mut conn, scope.tenant_id(), venue, false).await?)
    }

    /// Creates a rule after checking it against the tenant's ladder.
    pub async fn create(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        rule: NewRule,
    ) -> Result<SpendRule, RuleError> {
        check_venue(venue)?;
        let mut tx = store.begin().await?;
        let ladder = tiers::load(&mut tx, scope.tenant_id()).await?;
        rule.check(&ladder)?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM spend_rules WHERE tenant_id = $1 AND venue = $2",
        )
        .bind(scope.tenant_id())
        .bind(venue)
        .fetch_one(&mut *tx)
        .await?;
        if count >= MAX_RULES_PER_VENUE {
            return Err(RuleError::TooManyRules);
        }
        let id = new_id();
        let now = now_micros();
        sqlx::query(
            "INSERT INTO spend_rules (id, tenant_id, venue, name, threshold, tier, access_level, priority, enabled,
               live_only, time_windows, performer_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(&id)
        .bind(scope.tenant_id())
        .bind(venue)
        .bind(rule.name.trim())
        .bind(rule.threshold.get())
        .bind(&rule.tier)
        .bind(rule.access_level.as_deref())
        .bind(rule.priority)
        .bind(i64::from(rule.enabled))
        .bind(i64::from(rule.live_only))
        .bind(windows_json(&rule.time_windows))
        .bind(rule.performer_id.as_deref().map(str::trim))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let created = rule_by_id(&mut tx, scope.tenant_id(), venue, &id).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Changes the given fields of a rule; statistics are kept.
    pub async fn update(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        rule_id: &str,
        patch: RulePatch,
    ) -> Result<SpendRule, RuleError> {
        let mut tx = store.begin().await?;
        let current = rule_by_id(&mut tx, scope.tenant_id(), venue, rule_id).await?;
        let ladder = tiers::load(&mut tx, scope.tenant_id()).await?;
        let merged = NewRule {
            name: current.name,
            threshold: NonNegativeAmount::try_from(current.threshold)
                .map_err(RuleError::Invalid)?,
            tier: current.tier,
            access_level: current.access_level,
            priority: current.priority,
            enabled: current.enabled,
            live_only: current.live_only,
            time_windows: current.time_windows,
            performer_id: current.performer_id,
        }
        .apply(patch);
        merged.check(&ladder)?;
        sqlx::query(
            "UPDATE spend_rules SET name = $1, threshold = $2, tier = $3, access_level = $4, priority = $5,
               enabled = $6, live_only = $7, time_windows = $8, performer_id = $9, updated_at = $10
             WHERE tenant_id = $11 AND venue = $12 AND id = $13",
        )
        .bind(merged.name.trim())
        .bind(merged.threshold.get())
        .bind(&merged.tier)
        .bind(merged.access_level.as_deref())
        .bind(merged.priority)
        .bind(i64::from(merged.enabled))
        .bind(i64::from(merged.live_only))
        .bind(windows_json(&merged.time_windows))
        .bind(merged.performer_id.as_deref().map(str::trim))
        .bind(now_micros())
        .bind(scope.tenant_id())
        .bind(venue)
        .bind(rule_id)
        .execute(&mut *tx)
        .await?;
        let updated = rule_by_id(&mut tx, scope.tenant_id(), venue, rule_id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Flips `enabled`.
    pub async fn toggle(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        rule_id: &str,
    ) -> Result<SpendRule, RuleError> {
        let mut tx = store.begin().await?;
        let changed = sqlx::query(
            "UPDATE spend_rules SET enabled = 1 - enabled, updated_at = $1
             WHERE tenant_id = $2 AND venue = $3 AND id = $4",
        )
        .bind(now_micros())
        .bind(scope.tenant_id())
        .bind(venue)
        .bind(rule_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(RuleError::NotFound(rule_id.to_owned()));
        }
        let rule = rule_by_id(&mut tx, scope.tenant_id(), venue, rule_id).await?;
        tx.commit().await?;
        Ok(rule)
    }

    /// Deletes a rule. Its past unlocks stay in the customers' history.
    pub async fn delete(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        rule_id: &str,
    ) -> Result<(), RuleError> {
        let deleted =
            sqlx::query("DELETE FROM spend_rules WHERE tenant_id = $1 AND venue = $2 AND id = $3")
                .bind(scope.tenant_id())
                .bind(venue)
                .bind(rule_id)
                .execute(store.writer())
                .await?
                .rows_affected();
        if deleted == 0 {
            return Err(RuleError::NotFound(rule_id.to_owned()));
        }
        Ok(())
    }

    /// The tenant's ladder.
    pub async fn ladder(store: &Store, scope: &TenantScope) -> Result<Ladder, RuleError> {
        let mut conn = store.reader().acquire().await?;
        Ok(tiers::load(&mut conn, scope.tenant_id()).await?)
    }

    /// Replaces the tenant's tiers and/or access levels. Reordering and adding are free;
    /// dropping a name that a rule unlocks or a customer holds is refused.
    pub async fn set_ladder(
        store: &Store,
        scope: &TenantScope,
        update: LadderUpdate,
    ) -> Result<Ladder, RuleError> {
        if update.tiers.is_none() && update.access_levels.is_none() {
            return Err(RuleError::Invalid(
                "give tiers, access_levels, or both".into(),
            ));
        }
        let mut tx = store.begin().await?;
        let current = tiers::load(&mut tx, scope.tenant_id()).await?;
        let mut next = current.clone();
        if let Some(list) = update.tiers {
            tiers::check_names("tiers", &list).map_err(RuleError::Invalid)?;
            next.tiers = list;
        }
        if let Some(list) = update.access_levels {
            tiers::check_names("access_levels", &list).map_err(RuleError::Invalid)?;
            next.access_levels = list;
        }
        for (column, old, new) in [
            (LadderColumn::Tier, &current.tiers, &next.tiers),
            (
                LadderColumn::AccessLevel,
                &current.access_levels,
                &next.access_levels,
            ),
        ] {
            let removed: Vec<String> = old.iter().filter(|n| !new.contains(n)).cloned().collect();
            if let Some(name) =
                tiers::first_in_use(&mut tx, scope.tenant_id(), column, &removed).await?
            {
                return Err(RuleError::InUse(name));
            }
        }
        tiers::save(&mut tx, scope.tenant_id(), &next, now_micros()).await?;
        tx.commit().await?;
        Ok(next)
    }
}

fn windows_json(windows: &[TimeWindow]) -> String {
    serde_json::to_string(windows).unwrap_or_else(|_| "[]".into())
}

/// A customer's standing: tier, access level and the unlocks that got them there.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    /// Current tier (the ladder's lowest when nothing was unlocked).
    pub tier: String,
    /// Current access level.
    pub access_level: String,
    /// Unlocks, oldest first.
    pub unlocks: Vec<UnlockRecord>,
}

/// One past unlock.
#[derive(Debug, Clone, Serialize)]
pub struct UnlockRecord {
    /// Unlock id.
    pub id: String,
    /// The rule (it may since have been deleted).
    pub rule_id: String,
    /// The rule's name at the time.
    pub rule_name: String,
    /// Venue.
    pub venue: String,
    /// Tier the rule granted.
    pub tier: String,
    /// Access level the rule granted.
    pub access_level: Option<String>,
    /// The sale that crossed the threshold.
    pub transaction_id: String,
    /// Lifetime spend at the venue then.
    pub lifetime_spend: i64,
    /// Currency of the spend.
    pub currency: String,
    /// When that sale happened.
    pub occurred_at: String,
    /// When the unlock was recorded.
    pub unlocked_at: String,
}

/// The standing of a customer (by id) in the tenant.
pub async fn standing(
    store: &Store,
    scope: &TenantScope,
    customer_id: &str,
    held_tier: Option<&str>,
    held_access: Option<&str>,
) -> Result<Standing, RuleError> {
    let mut conn = store.reader().acquire().await?;
    let ladder = tiers::load(&mut conn, scope.tenant_id()).await?;
    let rows = sqlx::query(
        "SELECT id, rule_id, rule_name, venue, tier, access_level, transaction_id, lifetime_spend, currency,
           occurred_at, created_at
         FROM tier_unlocks WHERE tenant_id = $1 AND customer_id = $2 ORDER BY created_at, id",
    )
    .bind(scope.tenant_id())
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let unlocks = rows
        .iter()
        .map(|row| {
            Ok(UnlockRecord {
                id: row.try_get("id")?,
                rule_id: row.try_get("rule_id")?,
                rule_name: row.try_get("rule_name")?,
                venue: row.try_get("venue")?,
                tier: row.try_get("tier")?,
                access_level: row.try_get("access_level")?,
                transaction_id: row.try_get("transaction_id")?,
                lifetime_spend: row.try_get("lifetime_spend")?,
                currency: row.try_get("currency")?,
                occurred_at: rfc3339(row.try_get("occurred_at")?),
                unlocked_at: rfc3339(row.try_get("created_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Standing {
        tier: ladder.effective_tier(held_tier),
        access_level: ladder.effective_access(held_access),
        unlocks,
    })
}

/// A customer's lifetime spend at one venue.
#[derive(Debug, Clone, Serialize)]
pub struct VenueSpend {
    /// Venue.
    pub venue: String,
    /// Completed sales net of refunds (voided, failed and pending sales count nothing), minor
    /// units: what spend rules compare with their thresholds.
    pub lifetime_spend: i64,
    /// The venue's currency.
    pub currency: String,
    /// Sales recorded for the customer there, whatever their status.
    pub transactions: i64,
    /// The latest of those sales.
    pub last_sale_at: Option<String>,
}

/// SQL for a customer's lifetime spend over the `pos_transactions t` rows in scope: completed
/// sales net of refunds; voided, failed and pending ones count nothing. The one definition
/// evaluation and the customer profile both use (and `providers::net_spend` mirrors).
macro_rules! lifetime_spend_sql {
    () => {
        "CAST(COALESCE(SUM(CASE WHEN t.status = 'completed' AND t.total > t.refunded
                               THEN t.total - t.refunded ELSE 0 END), 0) AS BIGINT)"
    };
}
use lifetime_spend_sql;

/// A customer's lifetime spend per venue, by venue name: the same sum rules evaluate.
async fn spend_by_venue(
    store: &Store,
    scope: &TenantScope,
    customer_id: &str,
) -> Result<Vec<VenueSpend>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT i.venue, i.currency, ",
        lifetime_spend_sql!(),
        " AS spend, COUNT(*) AS sales, MAX(t.occurred_at) AS last_sale_at
         FROM pos_transactions t JOIN integrations i ON i.id = t.integration_id
         WHERE t.tenant_id = $1 AND t.customer_id = $2
         GROUP BY i.venue, i.currency ORDER BY i.venue",
    ))
    .bind(scope.tenant_id())
    .bind(customer_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(VenueSpend {
                venue: row.try_get("venue")?,
                currency: row.try_get("currency")?,
                lifetime_spend: row.try_get("spend")?,
                transactions: row.try_get("sales")?,
                last_sale_at: row.try_get::<Option<i64>, _>("last_sale_at")?.map(rfc3339),
            })
        })
        .collect()
}

/// `/api/{tenant}/pos/rules/…`, `/pos/tiers`, `/pos/performances/…` and the customer profile
/// `/customers/{phone}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pos/rules/{venue}", get(list).post(create))
        .route("/pos/rules/{venue}/{rule_id}", patch(update).delete(delete))
        .route("/pos/rules/{venue}/{rule_id}/toggle", post(toggle))
        .route("/pos/tiers", get(ladder).put(set_ladder))
        .route("/customers/{phone}", get(profile))
        .merge(performances::routes())
}

async fn list(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rules = RuleBook::list(&app.store, &caller.scope, &venue).await?;
    Ok(Json(serde_json::json!({ "venue": venue, "rules": rules })))
}

async fn create(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: ApiJson<NewRule>,
) -> Result<(StatusCode, Json<SpendRule>), ApiError> {
    let rule = RuleBook::create(&app.store, &caller.scope, &venue, body.value).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

async fn update(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, rule_id)): Path<(String, String, String)>,
    body: ApiJson<RulePatch>,
) -> Result<Json<SpendRule>, ApiError> {
    Ok(Json(
        RuleBook::update(&app.store, &caller.scope, &venue, &rule_id, body.value).await?,
    ))
}

async fn toggle(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, rule_id)): Path<(String, String, String)>,
) -> Result<Json<SpendRule>, ApiError> {
    Ok(Json(
        RuleBook::toggle(&app.store, &caller.scope, &venue, &rule_id).await?,
    ))
}

async fn delete(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, rule_id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    RuleBook::delete(&app.store, &caller.scope, &venue, &rule_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ladder(
    State(app): State<AppState>,
    TerminalCaller(caller): TerminalCaller,
) -> Result<Json<Ladder>, ApiError> {
    Ok(Json(RuleBook::ladder(&app.store, &caller.scope).await?))
}

async fn set_ladder(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    body: ApiJson<LadderUpdate>,
) -> Result<Json<Ladder>, ApiError> {
    Ok(Json(
        RuleBook::set_ladder(&app.store, &caller.scope, body.value).await?,
    ))
}

/// `GET /api/{tenant}/customers/{phone}`: who the customer is to the tenant.
#[derive(Debug, Serialize)]
struct Profile {
    id: String,
    phone: String,
    email: Option<String>,
    tier: String,
    access_level: String,
    points: i64,
    lifetime_points: i64,
    spend: Vec<VenueSpend>,
    unlocks: Vec<UnlockRecord>,
    /// Tags hooks put on the customer.
    tags: Vec<String>,
    created_at: String,
}

async fn profile(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, raw_phone)): Path<(String, String)>,
) -> Result<Json<Profile>, ApiError> {
    let scope = &caller.scope;
    let phone = normalize_phone(scope.country(), &raw_phone)
        .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))?;
    let row = sqlx::query(
        "SELECT id, email, tier, access_level, points, lifetime_points, tags, created_at
         FROM customers WHERE tenant_id = $1 AND phone = $2",
    )
    .bind(scope.tenant_id())
    .bind(&phone)
    .fetch_optional(app.store.reader())
    .await?
    .ok_or_else(|| ApiError::not_found("customer_not_found", format!("no customer {phone}")))?;
    let id: String = row.try_get("id")?;
    let held_tier: Option<String> = row.try_get("tier")?;
    let held_access: Option<String> = row.try_get("access_level")?;
    let standing = standing(
        &app.store,
        scope,
        &id,
        held_tier.as_deref(),
        held_access.as_deref(),
    )
    .await?;
    let spend = spend_by_venue(&app.store, scope, &id).await?;
    Ok(Json(Profile {
        phone,
        email: row.try_get("email")?,
        tier: standing.tier,
        access_level: standing.access_level,
        points: row.try_get("points")?,
        lifetime_points: row.try_get("lifetime_points")?,
        spend,
        unlocks: standing.unlocks,
        // Written only by the hooks' tag action, as a JSON array of strings.
        tags: serde_json::from_str(&row.try_get::<String, _>("tags")?).unwrap_or_default(),
        created_at: rfc3339(row.try_get("created_at")?),
        id,
    }))
}
