//! Walking the whole schema: every table and column from the database's own catalog, to
//! find any row that still names something of a deleted tenant; and the fixtures that give
//! a tenant rows in nearly every table, through the API and (for rows only background work
//! writes) straight into the database.

use std::collections::{BTreeMap, BTreeSet};

use posbridge_harness::{enc, Backend, TenantKeys, TestServer};
use serde_json::json;
use sqlx::{Connection, Row};

use super::PHONE;

/// Rows the API cannot make on demand (webhook deliveries, sync runs, dead letters, plugin
/// state), written straight to the database for the tenant's integration.
pub(super) async fn seed_background_rows(db: &mut sqlx::AnyConnection, tenant_id: &str) {
    let integration: String =
        sqlx::query_scalar("SELECT id FROM integrations WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *db)
            .await
            .expect("the tenant's integration");
    let id = |what: &str| format!("{what}-{}", posbridge_harness::random_suffix(8));
    let run = |sql: &'static str| sqlx::query(sql);
    let seeds = [
        run("INSERT INTO webhook_inbox (id, integration_id, provider, received_at, url, headers,
                 body, status, next_attempt_at, processed_at)
             VALUES ($1, $2, 'local-pos', 1, 'http://x/', '{}', $3, 'processed', 1, 1)")
        .bind(id("inbox"))
        .bind(integration.clone())
        .bind(b"payload".to_vec()),
        run("INSERT INTO webhook_events_seen (integration_id, event_id, seen_at) VALUES ($1, $2, 1)")
            .bind(integration.clone())
            .bind(id("seen")),
        run("INSERT INTO sync_runs (id, integration_id, started_at, finished_at, trigger, fetched,
                 created, updated, duplicates, pages)
             VALUES ($1, $2, 1, 2, 'schedule', 0, 0, 0, 0, 1)")
        .bind(id("run"))
        .bind(integration.clone()),
        run("INSERT INTO dead_letters (id, kind, tenant_id, integration_id, source_id, item,
                 status, reason, attempts, created_at, updated_at)
             VALUES ($1, 'sync', $2, $3, $3, 'sale-x', 'dead', 'test', 1, 1, 1)")
        .bind(id("dead"))
        .bind(tenant_id.to_owned())
        .bind(integration.clone()),
        run("INSERT INTO plugin_state (plugin_id, tenant_id, integration_id, key, value, updated_at)
             VALUES ('local-pos', $1, $2, 'cursor', $3, 1)")
        .bind(tenant_id.to_owned())
        .bind(integration.clone())
        .bind(b"state".to_vec()),
    ];
    for seed in seeds {
        seed.execute(&mut *db)
            .await
            .expect("seeding a background row");
    }
}

pub(super) async fn connect_db(srv: &TestServer) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(srv.database_url())
        .await
        .expect("connecting to the server's database")
}

/// Every table of the schema with its columns, from the database's own catalog.
pub(super) async fn schema(
    db: &mut sqlx::AnyConnection,
    backend: Backend,
) -> BTreeMap<String, Vec<String>> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT m.name AS tbl, p.name AS col FROM sqlite_master m
               JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS tbl, CAST(column_name AS TEXT) AS col
             FROM information_schema.columns WHERE table_schema = current_schema()"
        }
    };
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in sqlx::query(sql).fetch_all(&mut *db).await.expect("catalog") {
        let table: String = row.try_get("tbl").expect("tbl");
        tables
            .entry(table)
            .or_default()
            .push(row.try_get("col").expect("col"));
    }
    assert!(
        tables.len() > 20,
        "the catalog lists the schema: {tables:?}"
    );
    tables
}

/// The ids of everything the tenant owns: its own, and the `id` of every row of a table
/// with a `tenant_id` column.
pub(super) async fn owned_ids(
    db: &mut sqlx::AnyConnection,
    tables: &BTreeMap<String, Vec<String>>,
    tenant_id: &str,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::from([tenant_id.to_owned()]);
    for (table, columns) in tables {
        if columns.iter().any(|c| c == "tenant_id") && columns.iter().any(|c| c == "id") {
            let sql = format!("SELECT CAST(id AS TEXT) FROM \"{table}\" WHERE tenant_id = $1");
            let found: Vec<String> = sqlx::query_scalar(&sql)
                .bind(tenant_id)
                .fetch_all(&mut *db)
                .await
                .expect("owned ids");
            ids.extend(found);
        }
    }
    ids
}

/// Per table: (all rows, rows with any column naming one of `ids`).
pub(super) async fn census(
    db: &mut sqlx::AnyConnection,
    tables: &BTreeMap<String, Vec<String>>,
    ids: &BTreeSet<String>,
) -> BTreeMap<String, (i64, i64)> {
    let list = ids
        .iter()
        .map(|id| format!("'{}'", id.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let mut counts = BTreeMap::new();
    for (table, columns) in tables {
        let any_column = columns
            .iter()
            .map(|c| format!("CAST(\"{c}\" AS TEXT) IN ({list})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN {any_column} THEN 1 ELSE 0 END), 0) FROM \"{table}\""
        );
        let row = sqlx::query(&sql).fetch_one(&mut *db).await.expect("census");
        let total: i64 = row.try_get(0).expect("total");
        let owned: i64 = row.try_get(1).expect("owned");
        counts.insert(table.clone(), (total, owned));
    }
    counts
}

/// One of nearly everything a tenant can own, through the API.
pub(super) async fn populate(srv: &TestServer, tenant: &TenantKeys) {
    let manager = srv.manager(tenant);
    let till = srv.terminal(tenant);
    manager
        .post("/gift-cards", &json!({"code": "CARD-1", "amount": 1000}))
        .await
        .expect(201);
    till.post(
        &format!("/loyalty/{}/add", enc(PHONE)),
        &json!({"points": 50}),
    )
    .await
    .expect(200);
    manager
        .post_idem(
            "/orders",
            &crate::order_body("web-1", "online"),
            "order-web-1",
        )
        .await
        .expect(201);
    till.post(
        "/reports/daily",
        &crate::report_body("2026-11-20", 1000, "x"),
    )
    .await
    .expect(201);
    crate::connect_local_pos(&manager, "downtown").await;
    manager
        .put(
            "/menus/downtown",
            &json!({"items": [{"id": "fries", "name": "Fries",
                "variations": [{"id": "regular", "name": "Regular", "price": 400}]}]}),
        )
        .await
        .expect(200);
    till.put(
        "/venues/downtown/store-status",
        &json!({"status": "closed"}),
    )
    .await
    .expect(200);
    manager
        .post(
            "/pos/rules/downtown",
            &json!({"name": "Regulars", "threshold": 1000, "tier": "REGULAR"}),
        )
        .await
        .expect(201);
    manager
        .put("/pos/tiers", &json!({"tiers": ["GUEST", "REGULAR"]}))
        .await
        .expect(200);
    manager
        .post(
            "/pos/performances/downtown",
            &json!({"performer_id": "dj-ada", "starts_at": "2026-07-11T22:00:00Z",
                    "ends_at": "2026-07-12T02:00:00Z"}),
        )
        .await
        .expect(201);
    manager
        .post("/hooks", &json!({"plugin": "order-size-flag"}))
        .await
        .expect(201);
    till.post(
        "/transactions",
        &json!({"venue": "downtown", "transactions": [{
            "id": "sale-1", "occurred_at": "2026-11-20T19:00:00Z", "total": 2500,
            "subtotal": 2200, "tax": 200, "tip": 100, "discount": 0, "currency": "USD",
            "tender": "card", "card": {"brand": "VISA", "last4": "1111", "fingerprint": "fp-1"},
            "customer_phone": PHONE, "order_id": "o-1"
        }]}),
    )
    .await
    .expect(200);
}
