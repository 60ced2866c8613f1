//! Loyalty points on the customer row: the balance and the lifetime total the ledger
//! moves. Each move here writes the ledger row that records it (`loyalty_transactions`)
//! with it: on PostgreSQL in the same statement, one round trip instead of two, which is
//! most of what a loyalty add costs the database server there (see the performance doc,
//! "One statement per points move"); on SQLite as two statements, which run in-process on
//! the write lane's thread and cost about what one would.

use std::sync::LazyLock;

use sqlx::Row;

use crate::store::{new_id, Backend, Conn, Db};

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

/// The ledger row a move writes with it; its `kind` and signed change follow from the
/// move (a credit is an `add` of `+points`, a debit a `redeem` of `-points`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LedgerEntry<'a> {
    /// The ledger row's id (the answer's `transaction_id`).
    pub id: &'a str,
    /// The order that earned or spent the points.
    pub order_id: Option<&'a str>,
    /// Free text for the audit trail.
    pub reason: Option<&'a str>,
    /// The API key that made the change.
    pub api_key_id: &'a str,
}

/// A move's statement with its arguments bound so far.
type MoveQuery<'q> = sqlx::query::Query<'q, Db, sqlx::any::AnyArguments<'q>>;

impl<'a> LedgerEntry<'a> {
    /// Binds the entry's own columns after a move's on PostgreSQL, whose statement writes
    /// the ledger row too (their numbers follow the move's, as the statements say); on
    /// SQLite the move's statement has none of them.
    fn bind_after_move<'q>(self, query: MoveQuery<'q>, backend: Backend) -> MoveQuery<'q>
    where
        'a: 'q,
    {
        match backend {
            Backend::Postgres => query
                .bind(self.id)
                .bind(self.order_id)
                .bind(self.reason)
                .bind(self.api_key_id),
            Backend::Sqlite => query,
        }
    }
}

/// The ledger's columns, in the order both backends' statements bind them.
const LEDGER_COLUMNS: &str = "loyalty_transactions (id, tenant_id, customer_id, kind, points, \
     balance_after, order_id, reason, api_key_id, created_at)";

/// The upsert that enrols or credits a customer: $1 new id, $2 tenant, $3 phone, $4 points,
/// $5 now.
const CREDIT: &str =
    "INSERT INTO customers (id, tenant_id, phone, points, lifetime_points, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $4, $5, $5)
     ON CONFLICT (tenant_id, phone) DO UPDATE
       SET points = customers.points + excluded.points,
           lifetime_points = customers.lifetime_points + excluded.lifetime_points,
           updated_at = excluded.updated_at
     RETURNING id, points, lifetime_points";

/// The debit, refused by its own `WHERE` when the balance would go negative: $1 points,
/// $2 now, $3 tenant, $4 phone.
const DEBIT: &str = "UPDATE customers SET points = points - $1, updated_at = $2
     WHERE tenant_id = $3 AND phone = $4 AND points >= $1
     RETURNING id, points, lifetime_points";

/// PostgreSQL: [`CREDIT`] and its ledger row in one statement; $6 entry id, $7 order,
/// $8 reason, $9 key. The ledger row reads the customer's id and balance from the upsert's
/// `RETURNING`, so it is written exactly when the move is.
static PG_CREDIT_AND_ENTRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH moved AS ({CREDIT}), logged AS (
             INSERT INTO {LEDGER_COLUMNS}
             SELECT $6, $2, moved.id, 'add', $4, moved.points, $7, $8, $9, $5 FROM moved
         )
         SELECT id, points, lifetime_points FROM moved"
    )
});

/// PostgreSQL: [`DEBIT`] and its ledger row in one statement; $5 entry id, $6 order,
/// $7 reason, $8 key. A refused debit returns no row and so writes no ledger row.
static PG_DEBIT_AND_ENTRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH moved AS ({DEBIT}), logged AS (
             INSERT INTO {LEDGER_COLUMNS}
             SELECT $5, $3, moved.id, 'redeem', -$1, moved.points, $6, $7, $8, $2 FROM moved
         )
         SELECT id, points, lifetime_points FROM moved"
    )
});

/// Credits `points` to the customer with this (normalised) phone, enrolling them first if
/// the tenant has never seen the phone, and writes `entry` as an `add`.
pub(crate) async fn credit(
    conn: &mut Conn,
    backend: Backend,
    tenant_id: &str,
    phone: &str,
    points: i64,
    now: i64,
    entry: LedgerEntry<'_>,
) -> Result<Points, sqlx::Error> {
    let sql: &str = match backend {
        Backend::Postgres => &PG_CREDIT_AND_ENTRY,
        Backend::Sqlite => CREDIT,
    };
    let query = sqlx::query(sql)
        .bind(new_id())
        .bind(tenant_id)
        .bind(phone)
        .bind(points)
        .bind(now);
    let query = entry.bind_after_move(query, backend);
    let moved = points_from_row(&query.fetch_one(&mut *conn).await?)?;
    if backend == Backend::Sqlite {
        write_entry(conn, tenant_id, &moved, "add", points, now, entry).await?;
    }
    Ok(moved)
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
/// cannot both spend the same points, and writes `entry` as a `redeem`; a refused debit
/// writes nothing.
pub(crate) async fn debit(
    conn: &mut Conn,
    backend: Backend,
    tenant_id: &str,
    phone: &str,
    points: i64,
    now: i64,
    entry: LedgerEntry<'_>,
) -> Result<Result<Points, Shortfall>, sqlx::Error> {
    let sql: &str = match backend {
        Backend::Postgres => &PG_DEBIT_AND_ENTRY,
        Backend::Sqlite => DEBIT,
    };
    let query = sqlx::query(sql)
        .bind(points)
        .bind(now)
        .bind(tenant_id)
        .bind(phone);
    let row = entry
        .bind_after_move(query, backend)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        let moved = points_from_row(&row)?;
        if backend == Backend::Sqlite {
            write_entry(conn, tenant_id, &moved, "redeem", -points, now, entry).await?;
        }
        return Ok(Ok(moved));
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

/// SQLite's second statement of a move: the ledger row on its own.
async fn write_entry(
    conn: &mut Conn,
    tenant_id: &str,
    moved: &Points,
    kind: &str,
    change: i64,
    now: i64,
    entry: LedgerEntry<'_>,
) -> Result<(), sqlx::Error> {
    static INSERT_ENTRY: LazyLock<String> = LazyLock::new(|| {
        format!("INSERT INTO {LEDGER_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
    });
    sqlx::query(&INSERT_ENTRY)
        .bind(entry.id)
        .bind(tenant_id)
        .bind(&moved.customer_id)
        .bind(kind)
        .bind(change)
        .bind(moved.points)
        .bind(entry.order_id)
        .bind(entry.reason)
        .bind(entry.api_key_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
