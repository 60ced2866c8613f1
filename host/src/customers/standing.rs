//! A customer's standing: the tier and access level they hold and the unlocks that got
//! them there.

use serde::Serialize;
use sqlx::Row;

use super::ladder;
use crate::store::{rfc3339, Conn, StoreError};

/// A customer's standing: tier, access level and the unlocks that got them there.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Standing {
    /// Current tier (the ladder's lowest when nothing was unlocked).
    pub tier: String,
    /// Current access level.
    pub access_level: String,
    /// Unlocks, oldest first.
    pub unlocks: Vec<UnlockRecord>,
}

/// One past unlock.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct UnlockRecord {
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

/// The standing of a customer (by id) who holds `held_tier` and `held_access`: unset or
/// names the ladder has since dropped read as the ladder's lowest.
pub(crate) async fn standing(
    conn: &mut Conn,
    tenant_id: &str,
    customer_id: &str,
    held_tier: Option<&str>,
    held_access: Option<&str>,
) -> Result<Standing, StoreError> {
    let ladder = ladder::load(conn, tenant_id).await?;
    let rows = sqlx::query(
        "SELECT id, rule_id, rule_name, venue, tier, access_level, transaction_id, lifetime_spend, currency,
           occurred_at, created_at
         FROM tier_unlocks WHERE tenant_id = $1 AND customer_id = $2 ORDER BY created_at, id",
    )
    .bind(tenant_id)
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
