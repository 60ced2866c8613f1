//! The rule book: spend rules stored per venue, and the tenant's tier ladder, as managers
//! edit them. Checks on what is written live in [`super::decide`].

use sqlx::Row;

use super::decide::check_venue;
use super::windows::TimeWindow;
use super::{Ladder, NewRule, RuleError, RulePatch, SpendRule, MAX_RULES_PER_VENUE};
use crate::auth::TenantScope;
use crate::customers::ladder::{self, LadderColumn, LadderUpdate};
use crate::money::NonNegativeAmount;
use crate::store::{new_id, now_micros, rfc3339, Conn, Store, StoreError};

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
pub(super) async fn venue_rules(
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
pub(crate) struct RuleBook;

impl RuleBook {
    /// All rules of a venue, sorted by priority then threshold.
    pub(crate) async fn list(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
    ) -> Result<Vec<SpendRule>, RuleError> {
        let mut conn = store.read_conn().await?;
        Ok(venue_rules(&mut conn, scope.tenant_id(), venue, false).await?)
    }

    /// Creates a rule after checking it against the tenant's ladder.
    pub(crate) async fn create(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        rule: NewRule,
    ) -> Result<SpendRule, RuleError> {
        check_venue(venue)?;
        let mut tx = store.begin().await?;
        let ladder = ladder::load(&mut tx, scope.tenant_id()).await?;
        rule.check(&ladder)?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM spend_rules WHERE tenant_id = $1 AND venue = $2",
        )
        .bind(scope.tenant_id())
        .bind(venue)
        .fetch_one(&mut tx)
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
        .execute(&mut tx)
        .await?;
        let created = rule_by_id(&mut tx, scope.tenant_id(), venue, &id).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Changes the given fields of a rule; statistics are kept.
    pub(crate) async fn update(
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        rule_id: &str,
        patch: RulePatch,
    ) -> Result<SpendRule, RuleError> {
        let mut tx = store.begin().await?;
        let current = rule_by_id(&mut tx, scope.tenant_id(), venue, rule_id).await?;
        let ladder = ladder::load(&mut tx, scope.tenant_id()).await?;
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
        .execute(&mut tx)
        .await?;
        let updated = rule_by_id(&mut tx, scope.tenant_id(), venue, rule_id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Flips `enabled`.
    pub(crate) async fn toggle(
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
        .execute(&mut tx)
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
    pub(crate) async fn delete(
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
    pub(crate) async fn ladder(store: &Store, scope: &TenantScope) -> Result<Ladder, RuleError> {
        let mut conn = store.read_conn().await?;
        Ok(ladder::load(&mut conn, scope.tenant_id()).await?)
    }

    /// Replaces the tenant's tiers and/or access levels. Reordering and adding are free;
    /// dropping a name that a rule unlocks or a customer holds is refused.
    pub(crate) async fn set_ladder(
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
        let current = ladder::load(&mut tx, scope.tenant_id()).await?;
        let mut next = current.clone();
        if let Some(list) = update.tiers {
            ladder::check_names("tiers", &list).map_err(RuleError::Invalid)?;
            next.tiers = list;
        }
        if let Some(list) = update.access_levels {
            ladder::check_names("access_levels", &list).map_err(RuleError::Invalid)?;
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
                ladder::first_in_use(&mut tx, scope.tenant_id(), column, &removed).await?
            {
                return Err(RuleError::InUse(name));
            }
        }
        ladder::save(&mut tx, scope.tenant_id(), &next, now_micros()).await?;
        tx.commit().await?;
        Ok(next)
    }
}

fn windows_json(windows: &[TimeWindow]) -> String {
    serde_json::to_string(windows).unwrap_or_else(|_| "[]".into())
}
