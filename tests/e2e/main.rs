//! End-to-end tests: the real `posbridge` binary on an ephemeral loopback port, against
//! SQLite and against PostgreSQL (every scenario runs on both through `both_backends!`).
//!
//! PostgreSQL: the server named by `POSBRIDGE_TEST_POSTGRES_URL`, or when it is unset a
//! throwaway cluster the harness starts from the installed server binaries (one per test
//! run, removed after it); `POSBRIDGE_TEST_POSTGRES=skip` skips the PostgreSQL variants.
//! See the harness crate's docs for the details.
//!
//! `nginx.rs` starts nginx (Debian's package, `/usr/sbin/nginx`) in front of two hosts and
//! fails with a message to install it when it is missing; `tls.rs` makes its own CA.

use posbridge_harness::{Backend, TestServer};

mod admin;
mod auth;
mod backup;
mod bad_input;
mod cli_database;
mod cluster;
mod cluster_failover;
mod cluster_keys;
mod config;
mod console;
mod dead_letters;
mod events;
mod fuzz;
mod gift_cards;
mod hardening_edge;
mod hardening_input;
mod hardening_sockets;
mod hooks;
mod idempotency;
mod lifecycle;
mod loyalty;
mod menus;
mod menus_availability;
mod menus_sync;
mod nginx;
mod openapi;
mod orders;
mod orders_injection;
mod plugin_contract;
mod plugin_runner;
mod plugin_signing;
mod plugins;
mod providers;
mod providers_clover;
mod providers_local;
mod providers_toast;
mod providers_webhooks;
mod reports;
mod rules;
mod schema;
mod tenant_lifecycle;
mod tls;
mod write_batches;

/// The binary under test, built by Cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_posbridge");

/// Starts a server on a fresh database of `backend`.
pub async fn start(backend: Backend) -> TestServer {
    TestServer::start(BIN, backend, &[]).await
}

/// A test plugin component of this build (`POSBRIDGE_WASM_DIR`, filled by the host's
/// build script from `plugins/`).
pub fn wasm(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("POSBRIDGE_WASM_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Installs the component `name` through `POST /admin/plugins`; the caller checks the answer.
pub async fn install_plugin(srv: &TestServer, name: &str) -> posbridge_harness::Resp {
    srv.admin()
        .send(
            posbridge_harness::reqwest::Method::POST,
            "/admin/plugins",
            posbridge_harness::Body::Raw {
                bytes: wasm(name),
                content_type: Some("application/wasm".into()),
            },
            &[],
        )
        .await
}

/// Starts a server with extra `serve` flags.
pub async fn start_with(backend: Backend, args: &[&str]) -> TestServer {
    TestServer::start(BIN, backend, args).await
}

/// A consistent online order: 2 × 899 + 1 × 399 = 2197, + 176 tax + 300 tip − 100
/// discount = 2573.
pub fn order_body(external_id: &str, source: &str) -> serde_json::Value {
    serde_json::json!({
        "external_id": external_id,
        "source": source,
        "items": [
            {"name": "Burger", "quantity": 2, "unit_price": 899},
            {"name": "Fries", "quantity": 1, "unit_price": 399, "sku": "FR-1", "notes": "extra salt"}
        ],
        "subtotal": 2197,
        "tax": 176,
        "tip": 300,
        "discount": 100,
        "total": 2573,
        "customer": {"name": "Ada", "phone": "+15550100199", "email": "ada@example.com"},
        "notes": "ring twice"
    })
}

/// A daily report for `date` whose figures scale with `total_sales`.
pub fn report_body(date: &str, total_sales: i64, notes: &str) -> serde_json::Value {
    serde_json::json!({
        "report_date": date,
        "total_sales": total_sales,
        "total_orders": 42,
        "cash_sales": total_sales / 4,
        "card_sales": total_sales / 2,
        "gift_card_sales": total_sales / 8,
        "online_sales": total_sales / 8,
        "discounts": 500,
        "refunds": 250,
        "net_sales": total_sales - 750,
        "top_items": [{"name": "Burger", "quantity": 30, "revenue": total_sales / 3}],
        "busy_hours": [{"hour": 12, "orders": 11}, {"hour": 19, "orders": 14}],
        "staff_shifts": [{"name": "Sam", "start": "09:00", "end": "17:00"}],
        "notes": notes
    })
}

/// Connects the tenant's `venue` to the local POS provider (manager key); panics unless 200.
pub async fn connect_local_pos(manager: &posbridge_harness::Client, venue: &str) {
    manager
        .post(
            "/pos/connect",
            &serde_json::json!({"venue": venue, "provider": "local-pos"}),
        )
        .await
        .expect(200);
}

/// The value of the first sample of `name` in Prometheus text; `name` may carry the
/// sample's whole label set (`name{label="v"}`) to pick one series.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The files directly in `dir` (the server's: database, WAL, logs) whose bytes contain
/// `needle`, a secret that must not be stored in the clear.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("server dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

/// The tenant's `last_seq` as reported by `GET /pos-status`.
pub async fn last_seq(client: &posbridge_harness::Client) -> i64 {
    let resp = client.get("/pos-status").await;
    resp.expect(200)["last_seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("pos-status without last_seq: {}", resp.text))
}

/// A gift card's balance amount, asserting the route answers 200.
pub async fn balance(client: &posbridge_harness::Client, code: &str) -> i64 {
    let resp = client
        .get(&format!(
            "/gift-cards/{}/balance",
            posbridge_harness::enc(code)
        ))
        .await;
    resp.expect(200)["balance"]["amount"]
        .as_i64()
        .unwrap_or_else(|| panic!("balance without amount: {}", resp.text))
}

/// Walks a `{"items","next_cursor"}` list with `limit` per page and returns every item,
/// asserting each page is full except the last and that no item appears twice.
pub async fn all_pages(
    client: &posbridge_harness::Client,
    path: &str,
    limit: usize,
) -> Vec<serde_json::Value> {
    let mut items: Vec<serde_json::Value> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={}", posbridge_harness::enc(c)),
            None => format!("{path}?limit={limit}"),
        };
        let resp = client.get(&url).await;
        let page = resp.expect(200);
        let batch = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items array: {}", resp.text));
        assert!(
            batch.len() <= limit,
            "page larger than limit: {}",
            resp.text
        );
        items.extend(batch.iter().cloned());
        match &page["next_cursor"] {
            serde_json::Value::Null => {
                let mut ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), items.len(), "an item appeared on two pages");
                return items;
            }
            serde_json::Value::String(next) => {
                assert_eq!(
                    batch.len(),
                    limit,
                    "a non-last page must be full: {}",
                    resp.text
                );
                cursor = Some(next.clone());
            }
            other => panic!("next_cursor must be null or a string, got {other}"),
        }
    }
    panic!("pagination of {path} did not end");
}
