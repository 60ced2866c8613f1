//! The tier and access level a customer holds, as rule evaluation raises them.

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
