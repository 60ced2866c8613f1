//! The tier and access level a customer holds, as rule evaluation reads and raises them.

use std::collections::HashMap;

use sqlx::Row;

use super::net_spend_sql;
use crate::store::{Backend, Conn, Params};

/// Rows per statement: three parameters a row stays far below either database's bound.
const ROWS_PER_STATEMENT: usize = 500;

/// A customer's new standing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldStanding<'a> {
    /// Customer id.
    pub customer_id: &'a str,
    /// Tier now held.
    pub tier: Option<&'a str>,
    /// Access level now held.
    pub access_level: Option<&'a str>,
}

/// Stores the tiers and access levels of many customers, a few hundred a statement. Only
/// evaluation calls this, after deciding each raise (never a fall) against the ladder.
pub(crate) async fn set_held(
    conn: &mut Conn,
    backend: Backend,
    held: &[HeldStanding<'_>],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in held.chunks(ROWS_PER_STATEMENT) {
        let mut p = Params::new(backend);
        let sql = format!(
            "UPDATE customers SET tier = v.column2, access_level = v.column3, updated_at = {}
             FROM (VALUES {}) AS v WHERE customers.id = v.column1",
            p.one(),
            p.rows(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql).bind(now);
        for customer in chunk {
            query = query
                .bind(customer.customer_id)
                .bind(customer.tier)
                .bind(customer.access_level);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A customer as rule evaluation starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// E.164 phone.
    pub phone: String,
    /// Tier held, if any was ever raised.
    pub tier: Option<String>,
    /// Access level held, likewise.
    pub access_level: Option<String>,
    /// Net spend (see [`super::net_spend`]) of the customer's sales at one integration.
    pub spend: i64,
}

/// The tenant's customers among `ids` with what they hold and their net spend at
/// `integration_id`, by id. On PostgreSQL they are first locked, in id order (so two
/// batches' locks never cross), until the caller's transaction ends: a concurrent batch with
/// the same customer waits, and the spend read afterwards includes its sales.
pub(crate) async fn lock_with_spend(
    conn: &mut Conn,
    backend: Backend,
    tenant_id: &str,
    integration_id: &str,
    ids: &[&str],
) -> Result<HashMap<String, Held>, sqlx::Error> {
    // Every lookup is by customer id alone: the ids come from this tenant's own matching,
    // and a `tenant_id = ?` beside them led both planners (SQLite without statistics,
    // PostgreSQL's generic plans) to scan the tenant's rows instead of looking up a hundred
    // ids (15-30 ms a batch on PostgreSQL). The tenant is checked on the rows instead.
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if backend == Backend::Postgres {
        for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id FROM customers WHERE id IN ({}) ORDER BY id FOR UPDATE",
                Params::new(backend).list(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.fetch_all(&mut *conn).await?;
        }
    }
    let mut held = HashMap::new();
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let mut p = Params::new(backend);
        let sql = format!(
            concat!(
                "SELECT c.id, c.tenant_id, c.phone, c.tier, c.access_level, (SELECT ",
                net_spend_sql!(),
                " FROM pos_transactions t
                   WHERE t.tenant_id = c.tenant_id AND t.customer_id = c.id AND t.integration_id = {}) AS spend
                 FROM customers c WHERE c.id IN ({})"
            ),
            p.one(),
            p.list(chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(integration_id);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            if row.try_get::<String, _>("tenant_id")? != tenant_id {
                continue;
            }
            held.insert(
                row.try_get("id")?,
                Held {
                    phone: row.try_get("phone")?,
                    tier: row.try_get("tier")?,
                    access_level: row.try_get("access_level")?,
                    spend: row.try_get("spend")?,
                },
            );
        }
    }
    Ok(held)
}
