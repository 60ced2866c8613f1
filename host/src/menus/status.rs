//! A venue's store status: open, busy (orders take extra prep time) or closed (online
//! orders are refused). A venue nobody has set is open.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::MenuError;
use crate::auth::TenantScope;
use crate::events::{EventKind, LoggedTx};
use crate::store::{now_micros, rfc3339, Conn, StoreError};

/// Most extra prep time a busy store may announce.
pub(crate) const MAX_EXTRA_PREP_MINUTES: u32 = 240;

/// Whether a venue takes online orders now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreState {
    /// Taking orders.
    Open,
    /// Taking orders, each with extra prep time.
    Busy,
    /// Not taking orders.
    Closed,
}

impl StoreState {
    fn as_str(self) -> &'static str {
        match self {
            StoreState::Open => "open",
            StoreState::Busy => "busy",
            StoreState::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(StoreState::Open),
            "busy" => Some(StoreState::Busy),
            "closed" => Some(StoreState::Closed),
            _ => None,
        }
    }
}

/// A venue's store status, as `GET …/store-status` and `store_status_changed` carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct StoreStatus {
    /// The venue.
    pub venue: String,
    /// Open, busy or closed.
    pub status: StoreState,
    /// Extra minutes of prep time while busy; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_prep_minutes: Option<u32>,
    /// Last change, RFC 3339; absent for a venue never set (open by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl StoreStatus {
    /// The status of a venue nobody has set: open.
    pub(crate) fn default_for(venue: &str) -> Self {
        StoreStatus {
            venue: venue.to_owned(),
            status: StoreState::Open,
            extra_prep_minutes: None,
            updated_at: None,
        }
    }
}

/// Body of `PUT /api/{tenant}/venues/{venue}/store-status`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreStatusChange {
    /// The new status.
    pub status: StoreState,
    /// Required (1-240) when `busy`, refused otherwise.
    #[serde(default)]
    pub extra_prep_minutes: Option<u32>,
}

impl StoreStatusChange {
    fn check(&self) -> Result<(), MenuError> {
        match (self.status, self.extra_prep_minutes) {
            (StoreState::Busy, Some(m)) if (1..=MAX_EXTRA_PREP_MINUTES).contains(&m) => Ok(()),
            (StoreState::Busy, _) => Err(MenuError::InvalidStatus(format!(
                "extra_prep_minutes must be 1-{MAX_EXTRA_PREP_MINUTES} when busy"
            ))),
            (_, Some(_)) => Err(MenuError::InvalidStatus(
                "extra_prep_minutes applies only when busy".into(),
            )),
            (_, None) => Ok(()),
        }
    }
}

/// The venue's store status (open if never set), read on `conn`.
pub(crate) async fn read(
    conn: &mut Conn,
    scope: &TenantScope,
    venue: &str,
) -> Result<StoreStatus, MenuError> {
    let row = sqlx::query(
        "SELECT status, extra_prep_minutes, updated_at FROM store_statuses
         WHERE tenant_id = $1 AND venue = $2",
    )
    .bind(scope.tenant_id())
    .bind(venue)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::from)?;
    let Some(row) = row else {
        return Ok(StoreStatus::default_for(venue));
    };
    let status: String = row.try_get("status").map_err(StoreError::from)?;
    let minutes: Option<i64> = row
        .try_get("extra_prep_minutes")
        .map_err(StoreError::from)?;
    Ok(StoreStatus {
        venue: venue.to_owned(),
        status: StoreState::parse(&status).ok_or_else(|| {
            MenuError::Store(StoreError::Sqlx(sqlx::Error::Decode(
                format!("corrupt store status {status:?}").into(),
            )))
        })?,
        extra_prep_minutes: minutes.and_then(|m| u32::try_from(m).ok()),
        updated_at: Some(rfc3339(
            row.try_get("updated_at").map_err(StoreError::from)?,
        )),
    })
}

/// Sets the venue's store status and appends `store_status_changed`; setting the status it
/// already has (same minutes) changes nothing and appends nothing.
pub(crate) async fn set(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    change: &StoreStatusChange,
) -> Result<StoreStatus, MenuError> {
    super::check_venue(venue)?;
    change.check()?;
    let current = read(tx.conn(), scope, venue).await?;
    if current.updated_at.is_some()
        && current.status == change.status
        && current.extra_prep_minutes == change.extra_prep_minutes
    {
        return Ok(current);
    }
    let now = now_micros();
    sqlx::query(
        "INSERT INTO store_statuses (tenant_id, venue, status, extra_prep_minutes, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, venue) DO UPDATE
           SET status = excluded.status, extra_prep_minutes = excluded.extra_prep_minutes,
               updated_at = excluded.updated_at",
    )
    .bind(scope.tenant_id())
    .bind(venue)
    .bind(change.status.as_str())
    .bind(change.extra_prep_minutes.map(i64::from))
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(StoreError::from)?;
    let status = StoreStatus {
        venue: venue.to_owned(),
        status: change.status,
        extra_prep_minutes: change.extra_prep_minutes,
        updated_at: Some(rfc3339(now)),
    };
    tx.append(scope, EventKind::StoreStatusChanged, &status)?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_needs_minutes_and_only_busy_takes_them() {
        let c = |status, extra_prep_minutes| StoreStatusChange {
            status,
            extra_prep_minutes,
        };
        assert!(c(StoreState::Busy, Some(15)).check().is_ok());
        assert!(c(StoreState::Busy, None).check().is_err());
        assert!(c(StoreState::Busy, Some(0)).check().is_err());
        assert!(c(StoreState::Busy, Some(241)).check().is_err());
        assert!(c(StoreState::Open, Some(5)).check().is_err());
        assert!(c(StoreState::Closed, None).check().is_ok());
    }
}
