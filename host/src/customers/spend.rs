//! Net spend: what a sale counts towards a customer's lifetime spend, the amount spend rules
//! compare with their thresholds and the customer profile shows.
//!
//! [`net_spend`] is the definition. Sums over many stored sales are made by the database,
//! with [`net_spend_sql!`]; the tests below hold the two to the same answers on SQLite and
//! PostgreSQL.

use crate::plugins::contract::TransactionStatus;

/// What a sale with this status, total and refunded amount counts as spend: completed sales
/// net of refunds, never below zero (a refund larger than the sale takes nothing from the
/// customer's other sales); voided, failed and pending sales count nothing.
pub(crate) fn net_spend(status: TransactionStatus, total: i64, refunded: i64) -> i64 {
    if status == TransactionStatus::Completed {
        total.saturating_sub(refunded).max(0)
    } else {
        0
    }
}

/// [`net_spend`] of a stored row, whose status is the text `status_str` wrote; a status this
/// build does not know counts nothing, as pending does.
pub(crate) fn net_spend_stored(status: &str, total: i64, refunded: i64) -> i64 {
    if status == "completed" {
        net_spend(TransactionStatus::Completed, total, refunded)
    } else {
        0
    }
}

/// SQL summing [`net_spend`] over the `pos_transactions t` rows in scope, as a BIGINT
/// (0 when there are none). A macro, so queries can `concat!` it into constant text.
macro_rules! net_spend_sql {
    () => {
        "CAST(COALESCE(SUM(CASE WHEN t.status = 'completed' AND t.total > t.refunded
                               THEN t.total - t.refunded ELSE 0 END), 0) AS BIGINT)"
    };
}
pub(crate) use net_spend_sql;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::AnyConnection;
    use sqlx::Connection;

    /// (status, total, refunded): every status, refunds whole, partial and larger than the
    /// sale, zero and negative totals.
    const CASES: &[(&str, i64, i64)] = &[
        ("completed", 1000, 0),
        ("completed", 1000, 250),
        ("completed", 1000, 1000),
        ("completed", 1000, 1500),
        ("completed", 0, 0),
        ("completed", 0, 100),
        ("completed", -500, 0),
        ("completed", 1, 0),
        ("pending", 1000, 0),
        ("voided", 1000, 0),
        ("voided", 1000, 200),
        ("failed", 1000, 0),
        ("refunded", 1000, 0),
    ];

    fn status(text: &str) -> Option<TransactionStatus> {
        serde_json::from_value(serde_json::Value::from(text)).ok()
    }

    #[test]
    fn completed_sales_count_net_of_refunds_and_nothing_else_counts() {
        assert_eq!(net_spend(TransactionStatus::Completed, 1000, 250), 750);
        assert_eq!(net_spend(TransactionStatus::Completed, 1000, 1500), 0);
        assert_eq!(net_spend(TransactionStatus::Completed, 0, 0), 0);
        assert_eq!(net_spend(TransactionStatus::Voided, 1000, 0), 0);
        assert_eq!(net_spend(TransactionStatus::Pending, 1000, 0), 0);
        assert_eq!(net_spend(TransactionStatus::Failed, 1000, 0), 0);
        assert_eq!(
            net_spend(TransactionStatus::Completed, i64::MIN, i64::MAX),
            0
        );
        for &(text, total, refunded) in CASES {
            let expected = status(text).map_or(0, |s| net_spend(s, total, refunded));
            assert_eq!(net_spend_stored(text, total, refunded), expected, "{text}");
        }
    }

    /// The SQL sum of each case alone, and of all cases together, on one connection.
    async fn sql_agrees_with_rust(url: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(url).await.expect("connect");
        sqlx::query(
            "CREATE TEMPORARY TABLE spend_cases (id BIGINT, status TEXT, total BIGINT, refunded BIGINT)",
        )
        .execute(&mut conn)
        .await
        .expect("create");
        for (id, &(status, total, refunded)) in CASES.iter().enumerate() {
            sqlx::query("INSERT INTO spend_cases VALUES ($1, $2, $3, $4)")
                .bind(id as i64)
                .bind(status)
                .bind(total)
                .bind(refunded)
                .execute(&mut conn)
                .await
                .expect("insert");
        }
        let per_case: Vec<(i64, i64)> = sqlx::query_as(concat!(
            "SELECT t.id, ",
            net_spend_sql!(),
            " FROM spend_cases t GROUP BY t.id ORDER BY t.id"
        ))
        .fetch_all(&mut conn)
        .await
        .expect("per case");
        assert_eq!(per_case.len(), CASES.len());
        for ((id, sql), &(status, total, refunded)) in per_case.iter().zip(CASES) {
            assert_eq!(
                *sql,
                net_spend_stored(status, total, refunded),
                "case {id}: {status} {total} refunded {refunded} on {url}"
            );
        }
        let all: i64 =
            sqlx::query_scalar(concat!("SELECT ", net_spend_sql!(), " FROM spend_cases t"))
                .fetch_one(&mut conn)
                .await
                .expect("sum");
        let rust: i64 = CASES
            .iter()
            .map(|&(s, total, refunded)| net_spend_stored(s, total, refunded))
            .sum();
        assert_eq!(all, rust);
        let none: i64 = sqlx::query_scalar(concat!(
            "SELECT ",
            net_spend_sql!(),
            " FROM spend_cases t WHERE t.id < 0"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("empty sum");
        assert_eq!(none, 0);
        let _ = conn.close().await;
    }

    #[tokio::test]
    async fn sql_net_spend_matches_rust_on_sqlite() {
        sql_agrees_with_rust("sqlite::memory:").await;
    }

    #[tokio::test]
    async fn sql_net_spend_matches_rust_on_postgres() {
        if posbridge_harness::postgres_available().await {
            sql_agrees_with_rust(&posbridge_harness::postgres_admin_url()).await;
        }
    }
}
