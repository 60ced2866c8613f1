//! Loyalty points on the customer row: the balance and the lifetime total the ledger
//! moves. The ledger (`ledger::loyalty`) records each move; these are the row's writes.

use sqlx::Row;

use crate::store::{new_id, Conn};

/// A customer's points after a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Points {
    /// Customer id.
    pub customer_id: String,
    /// Balance.
    pub points: i64,
    /// Everything ever credited.
    pub lifetime_points: i64,
}

fn points_from_row(row: &sqlx::any::AnyRow) -> Result<Points, sqlx::Error> {
    Ok(Points {
        customer_id: row.try_get("id")?,
        points: row.try_get("points")?,
        lifetime_points: row.try_get("lifetime_points")?,
    })
}

/// Credits `points` to the customer with this (normalised) phone, enrolling them first if
/// the tenant has never seen the phone.
pub(crate) async fn credit(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
    points: i64,
    now: i64,
) -> Result<Points, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO customers (id, tenant_id, phone, points, lifetime_points, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4, $5, $5)
         ON CONFLICT (tenant_id, phone) DO UPDATE
           SET points = customers.points + excluded.points,
               lifetime_points = customers.lifetime_points + excluded.lifetime_points,
               updated_at = excluded.updated_at
         RETURNING id, points, lifetime_points",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(phone)
    .bind(points)
    .bind(now)
    .fetch_one(conn)
    .await?;
    points_from_row(&row)
}

/// Why a debit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// The tenant has no customer with this phone.
    NoCustomer,
    /// The balance does not cover the debit.
    Insufficient {
        /// The balance now.
        balance: i64,
    },
}

/// Debits `points` if the balance covers them, in one statement so concurrent debits
/// cannot both spend the same points.
pub(crate) async fn debit(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
    points: i64,
    now: i64,
) -> Result<Result<Points, Shortfall>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE customers SET points = points - $1, updated_at = $2
         WHERE tenant_id = $3 AND phone = $4 AND points >= $1
         RETURNING id, points, lifetime_points",
    )
    .bind(points)
    .bind(now)
    .bind(tenant_id)
    .bind(phone)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        return Ok(Ok(points_from_row(&row)?));
    }
    let balance: Option<i64> =
        sqlx::query_scalar("SELECT points FROM customers WHERE tenant_id = $1 AND phone = $2")
            .bind(tenant_id)
            .bind(phone)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(Err(match balance {
        None => Shortfall::NoCustomer,
        Some(balance) => Shortfall::Insufficient { balance },
    }))
}
