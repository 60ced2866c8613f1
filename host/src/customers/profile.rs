//! The customer profile: who a customer is to the tenant — points, standing, spend per
//! venue and tags — as `GET /customers/{phone}` shows it.

use serde::Serialize;
use sqlx::Row;

use super::spend::net_spend_sql;
use super::standing::{standing, UnlockRecord};
use super::tags::read_tags;
use crate::store::{rfc3339, Conn, StoreError};

/// A customer's lifetime spend at one venue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct VenueSpend {
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

/// Who the customer is to the tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Profile {
    /// Customer id.
    pub id: String,
    /// E.164 phone.
    pub phone: String,
    /// Email, if known.
    pub email: Option<String>,
    /// Current tier.
    pub tier: String,
    /// Current access level.
    pub access_level: String,
    /// Points balance.
    pub points: i64,
    /// Points ever credited.
    pub lifetime_points: i64,
    /// Lifetime spend per venue.
    pub spend: Vec<VenueSpend>,
    /// Unlocks, oldest first.
    pub unlocks: Vec<UnlockRecord>,
    /// Tags hooks put on the customer.
    pub tags: Vec<String>,
    /// Enrolled.
    pub created_at: String,
}

/// The profile of the tenant's customer with this (normalised) phone; `None` for a phone
/// the tenant has never seen.
pub(crate) async fn profile(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
) -> Result<Option<Profile>, StoreError> {
    let row = sqlx::query(
        "SELECT id, email, tier, access_level, points, lifetime_points, tags, created_at
         FROM customers WHERE tenant_id = $1 AND phone = $2",
    )
    .bind(tenant_id)
    .bind(phone)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: String = row.try_get("id")?;
    let held_tier: Option<String> = row.try_get("tier")?;
    let held_access: Option<String> = row.try_get("access_level")?;
    let standing = standing(
        conn,
        tenant_id,
        &id,
        held_tier.as_deref(),
        held_access.as_deref(),
    )
    .await?;
    let spend = spend_by_venue(conn, tenant_id, &id).await?;
    Ok(Some(Profile {
        phone: phone.to_owned(),
        email: row.try_get("email")?,
        tier: standing.tier,
        access_level: standing.access_level,
        points: row.try_get("points")?,
        lifetime_points: row.try_get("lifetime_points")?,
        spend,
        unlocks: standing.unlocks,
        tags: read_tags(&row.try_get::<String, _>("tags")?),
        created_at: rfc3339(row.try_get("created_at")?),
        id,
    }))
}

/// A customer's lifetime spend per venue, by venue name: the same sum rules evaluate.
async fn spend_by_venue(
    conn: &mut Conn,
    tenant_id: &str,
    customer_id: &str,
) -> Result<Vec<VenueSpend>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT i.venue, i.currency, ",
        net_spend_sql!(),
        " AS spend, COUNT(*) AS sales, MAX(t.occurred_at) AS last_sale_at
         FROM pos_transactions t JOIN integrations i ON i.id = t.integration_id
         WHERE t.tenant_id = $1 AND t.customer_id = $2
         GROUP BY i.venue, i.currency ORDER BY i.venue",
    ))
    .bind(tenant_id)
    .bind(customer_id)
    .fetch_all(&mut *conn)
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
