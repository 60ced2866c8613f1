//! The native local POS (provider `local-pos`: the till pushes its sales to
//! `POST /api/{tenant}/transactions`), and secrets never leaking from any provider
//! integration into API answers, logs, metrics or the database file.

use posbridge_harness::mock_square::{
    square_payment_webhook, MockSquare, SquarePayment, SQUARE_LOCATION,
};
use posbridge_harness::mock_toast::{MockToast, ToastOrder, TOAST_CLIENT_ID, TOAST_RESTAURANT};
use posbridge_harness::{
    both_backends, enc, parse_rfc3339, random_suffix, Backend, Client, Resp, TenantKeys, TestServer,
};
use std::time::Duration;

use serde_json::{json, Value};

use crate::providers::{
    all_transactions, approve_host, assert_connected, assert_period_revenue, at_ms, first_sync,
    next_sale_event, now_ms, post_signed_square, post_webhook, revenue, transactions_page,
    SQUARE_SIGNATURE_HEADER,
};

/// The sample push from the local-pos README.
fn sample_push() -> Value {
    json!({"venue": "downtown", "transactions": [{
        "id": "sale-1",
        "occurred_at": "2026-11-20T19:00:00Z",
        "total": 2500,
        "subtotal": 2200,
        "tax": 200,
        "tip": 100,
        "discount": 0,
        "currency": "USD",
        "tender": "card",
        "card": {"brand": "VISA", "last4": "1111"},
        "customer_phone": "+15550100199",
        "order_id": "o-1"
    }]})
}

async fn push(till: &Client, body: &Value) -> Resp {
    till.post("/transactions", body).await
}

#[track_caller]
fn assert_push(resp: &Resp, created: u64, updated: u64, duplicates: u64) {
    let body = resp.expect(200);
    assert_eq!(
        (
            body["created"].as_u64(),
            body["updated"].as_u64(),
            body["duplicates"].as_u64(),
            body["rejected"].as_u64()
        ),
        (Some(created), Some(updated), Some(duplicates), Some(0)),
        "push counts (created, updated, duplicates, rejected): {}",
        resp.text
    );
}

/// A server with tenant `kitchen` and `downtown` connected to the local POS:
/// (server, tenant, manager, till).
async fn local_venue(backend: Backend) -> (TestServer, TenantKeys, Client, Client) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let till = srv.terminal(&tenant);
    crate::connect_local_pos(&manager, "downtown").await;
    (srv, tenant, manager, till)
}

/// `sample_push` with sale-1's total, subtotal and `updated_at` replaced.
fn revised_push(total: i64, subtotal: i64, updated_at: &str) -> Value {
    let mut revised = sample_push();
    revised["transactions"][0]["total"] = json!(total);
    revised["transactions"][0]["subtotal"] = json!(subtotal);
    revised["transactions"][0]["updated_at"] = json!(updated_at);
    revised
}

/// The sale pushed once more with a later `updated_at` (2600, subtotal 2300).
fn corrected_push() -> Value {
    revised_push(2600, 2300, "2026-11-20T19:30:00Z")
}

/// [`local_venue`] holding sale-1 (corrected to 2600), a cash walk-in sale-4 (1000) and a
/// voided sale-5 (700) of the same customer under another spelling of her number.
async fn pushed_history(backend: Backend) -> (TestServer, Client, Client) {
    let (srv, _tenant, manager, till) = local_venue(backend).await;
    assert_push(&push(&till, &sample_push()).await, 1, 0, 0);
    assert_push(&push(&till, &corrected_push()).await, 0, 1, 0);
    let more = json!({"venue": "downtown", "transactions": [
        {"id": "sale-4", "occurred_at": "2026-11-20T20:00:00Z", "total": 1000, "currency": "USD",
         "tender": "cash"},
        {"id": "sale-5", "occurred_at": "2026-11-20T21:00:00-05:00", "total": 700, "currency": "usd",
         "customer_phone": "(555) 010-0199", "status": "voided"}
    ]});
    assert_push(&push(&till, &more).await, 2, 0, 0);
    (srv, manager, till)
}

async fn a_push_naming_a_venue_not_connected_is_refused(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    push(&srv.terminal(&tenant), &sample_push())
        .await
        .expect_error(404, "venue_not_connected");
}

async fn connecting_the_local_pos_takes_the_tenants_time_zone(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let connected = srv
        .manager(&tenant)
        .post(
            "/pos/connect",
            &json!({"venue": "downtown", "provider": "local-pos"}),
        )
        .await;
    assert_eq!(connected.expect(200)["timezone"], "America/New_York");
    assert_connected(&connected, "downtown", "local-pos");
}

async fn a_pushed_sale_is_recorded_and_announced(backend: Backend) {
    let (srv, tenant, _manager, till) = local_venue(backend).await;
    let mut ws = srv.ws("kitchen", &tenant.terminal.key, None).await;
    ws.hello().await;
    let first = push(&till, &sample_push()).await;
    assert_push(&first, 1, 0, 0);
    let event = next_sale_event(&mut ws).await;
    let data = &event["data"];
    assert_eq!(data["external_id"], "sale-1", "{event}");
    assert_eq!(data["venue"], "downtown", "{event}");
    assert_eq!(data["provider"], "local-pos", "{event}");
    assert_eq!(data["total"], 2500, "{event}");
    assert_eq!(data["customer"]["phone"], "+15550100199", "{event}");
}

async fn a_sale_pushed_again_is_a_duplicate(backend: Backend) {
    let (_srv, _tenant, _manager, till) = local_venue(backend).await;
    assert_push(&push(&till, &sample_push()).await, 1, 0, 0);
    assert_push(&push(&till, &sample_push()).await, 0, 0, 1);
}

async fn a_corrected_sale_replaces_it_and_an_older_version_does_not(backend: Backend) {
    let (srv, tenant, manager, till) = local_venue(backend).await;
    assert_push(&push(&till, &sample_push()).await, 1, 0, 0);
    let mut ws = srv.ws("kitchen", &tenant.terminal.key, None).await;
    ws.hello().await;
    assert_push(&push(&till, &corrected_push()).await, 0, 1, 0);
    let event = next_sale_event(&mut ws).await;
    assert_eq!(event["data"]["external_id"], "sale-1", "{event}");
    assert_eq!(event["data"]["total"], 2600, "{event}");
    let stale = revised_push(2400, 2100, "2026-11-20T19:10:00Z");
    assert_push(&push(&till, &stale).await, 0, 0, 1);
    let items = all_transactions(&manager, "downtown").await;
    assert_eq!(items[0]["total"], 2600, "{}", items[0]);
}

async fn a_push_with_a_fractional_amount_or_an_unknown_field_is_refused_whole(backend: Backend) {
    let (_srv, _tenant, manager, till) = local_venue(backend).await;
    let mut bad = sample_push();
    bad["transactions"][0]["id"] = json!("sale-2");
    bad["transactions"][0]["total"] = json!(12.5);
    let refused = push(&till, &bad).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("total"),
        "the refusal names the field: {}",
        refused.text
    );
    let mut unknown_field = sample_push();
    unknown_field["transactions"][0]["id"] = json!("sale-3");
    unknown_field["transactions"][0]["totl"] = json!(1);
    assert_eq!(push(&till, &unknown_field).await.status, 422);
    assert!(all_transactions(&manager, "downtown").await.is_empty());
}

async fn pushed_sales_are_listed_newest_first_with_their_figures_and_customer(backend: Backend) {
    let (_srv, manager, _till) = pushed_history(backend).await;
    let items = all_transactions(&manager, "downtown").await;
    let ids: Vec<&str> = items
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["sale-5", "sale-4", "sale-1"], "newest first");
    let sale1 = &items[2];
    assert_eq!(sale1["total"], 2600);
    assert_eq!(sale1["subtotal"], 2300);
    assert_eq!(sale1["tax"], 200);
    assert_eq!(sale1["tip"], 100);
    assert_eq!(sale1["order_id"], "o-1");
    assert_eq!(sale1["tender"], "card");
    assert_eq!(sale1["card"]["last4"], "1111");
    assert_eq!(sale1["source"], "push");
    assert_eq!(sale1["customer"]["phone"], "+15550100199");
    assert_eq!(items[0]["currency"], "USD");
    assert_eq!(items[0]["status"], "voided");
    assert!(items[1]["customer"].is_null(), "walk-in: {}", items[1]);

    let ada = transactions_page(
        &manager,
        "downtown",
        &format!("customer={}", enc("+15550100199")),
    )
    .await;
    assert_eq!(ada.len(), 2, "both of her sales");
    let nobody = transactions_page(
        &manager,
        "downtown",
        &format!("customer={}", enc("+15550100100")),
    )
    .await;
    assert!(nobody.is_empty());
}

/// Calendar periods are the venue's time zone (the tenant's: the till has none).
async fn revenue_counts_pushed_sales_but_not_voided_ones_by_calendar_period(backend: Backend) {
    let (_srv, manager, till) = pushed_history(backend).await;
    let all = revenue(&manager, "downtown", "all").await;
    assert_eq!(
        all["total"],
        2600 + 1000,
        "voided sales do not count: {all}"
    );
    assert_eq!(all["count"], 2, "{all}");
    assert_eq!(all["average"], 1800, "{all}");

    let just_now = at_ms(now_ms() - 60_000);
    let long_ago = at_ms(now_ms() - 40 * 86_400_000);
    let dated = json!({"venue": "downtown", "transactions": [
        {"id": "sale-6", "occurred_at": just_now.to_string(), "total": 300, "currency": "USD"},
        {"id": "sale-7", "occurred_at": long_ago.to_string(), "total": 400, "currency": "USD"}
    ]});
    assert_push(&push(&till, &dated).await, 2, 0, 0);
    let sales = [
        (parse_rfc3339("2026-11-20T19:00:00Z"), 2600),
        (parse_rfc3339("2026-11-20T20:00:00Z"), 1000),
        (just_now, 300),
        (long_ago, 400),
    ];
    assert_period_revenue(&manager, "downtown", "America/New_York", &sales).await;
}

/// Connects Square and Toast with distinctive secrets, exercises every route, and greps
/// every answer, the server log, `/metrics` and (SQLite) the database files for them.
async fn secrets_never_leak(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let square = MockSquare::start().await;
    let toast = MockToast::start().await;
    approve_host(&srv, "square", square.host_port()).await;
    approve_host(&srv, "toast", toast.host_port()).await;

    let square_token = format!("EAAAsecrettoken{}", random_suffix(24));
    let wrong_token = format!("EAAAwrongtoken{}", random_suffix(24));
    let square_key = format!("sqwhkey{}", random_suffix(24));
    let toast_secret = format!("toastclientsecret{}", random_suffix(24));
    let wrong_secret = format!("toastwrongsecret{}", random_suffix(24));
    let toast_key = format!("toastwhkey{}", random_suffix(24));
    let secrets = [
        &square_token,
        &wrong_token,
        &square_key,
        &toast_secret,
        &wrong_secret,
        &toast_key,
    ];
    square.set_token(&square_token);
    toast.set_client(TOAST_CLIENT_ID, &toast_secret);

    let mut seen: Vec<Resp> = Vec::new();
    let square_conn = |token: &str| {
        json!({"provider": "square", "credentials": {"access_token": token},
               "location_id": SQUARE_LOCATION, "environment": "sandbox",
               "base_url": square.base_url()})
    };
    let toast_conn = |secret: &str| {
        json!({"provider": "toast",
               "credentials": {"client_id": TOAST_CLIENT_ID, "client_secret": secret},
               "location_id": TOAST_RESTAURANT, "environment": "sandbox",
               "base_url": toast.base_url()})
    };
    let r = manager
        .post("/pos/validate", &square_conn(&wrong_token))
        .await;
    r.expect_error(422, "invalid_credentials");
    seen.push(r);
    let r = manager
        .post("/pos/validate", &toast_conn(&wrong_secret))
        .await;
    r.expect_error(422, "invalid_credentials");
    seen.push(r);
    let r = manager
        .post("/pos/validate", &square_conn(&square_token))
        .await;
    r.expect(200);
    seen.push(r);

    let mut body = square_conn(&square_token);
    body["venue"] = json!("downtown");
    body["webhook_signature_key"] = json!(square_key);
    let r = manager.post("/pos/connect", &body).await;
    r.expect(200);
    assert_connected(&r, "downtown", "square");
    let square_integration = r.body.clone();
    seen.push(r);
    let mut body = toast_conn(&toast_secret);
    body["venue"] = json!("uptown");
    body["webhook_signature_key"] = json!(toast_key);
    let r = manager.post("/pos/connect", &body).await;
    r.expect(200);
    assert_connected(&r, "uptown", "toast");
    seen.push(r);
    // A connect that fails validation.
    let mut body = square_conn(&wrong_token);
    body["venue"] = json!("elsewhere");
    let r = manager.post("/pos/connect", &body).await;
    r.expect_error(422, "invalid_credentials");
    seen.push(r);
    first_sync(&manager, "downtown").await;
    first_sync(&manager, "uptown").await;

    let t = now_ms() - 30_000;
    let payment = SquarePayment::new("leak-pay-1", 1500, 0, at_ms(t));
    square.add_payments([payment.json()]);
    toast.add_orders([ToastOrder::paid("leak-ord-1", at_ms(t), 900, 70, 0).json()]);
    for venue in ["downtown", "uptown"] {
        for path in [
            format!("/pos/sync/{venue}"),
            format!("/pos/status/{venue}"),
            format!("/pos/transactions/{venue}"),
            format!("/pos/revenue/{venue}?period=all"),
        ] {
            let r = if path.starts_with("/pos/sync") {
                manager.post(&path, &json!({})).await
            } else {
                manager.get(&path).await
            };
            r.expect(200);
            seen.push(r);
        }
    }
    // A sync failing upstream (the token revoked at Square) records its error.
    square.set_token("EAAAsomething-else");
    let r = manager.post("/pos/sync/downtown", &json!({})).await;
    r.expect_error(422, "invalid_credentials");
    seen.push(r);
    let r = manager.get("/pos/status/downtown").await;
    assert!(!r.expect(200)["last_error"].is_null(), "{}", r.text);
    seen.push(r);

    // Webhooks: one good, one bad signature.
    let id = square_integration["id"].as_str().unwrap();
    let webhook = square_payment_webhook(
        "payment.created",
        "leak-evt-1",
        &SquarePayment::new("leak-pay-2", 100, 0, at_ms(t)).json(),
    );
    let r = post_signed_square(&srv, &square_integration, &webhook, &square_key).await;
    r.expect(200);
    seen.push(r);
    let r = post_webhook(
        &srv,
        "square",
        id,
        &webhook,
        &[(SQUARE_SIGNATURE_HEADER, "AAAA")],
    )
    .await;
    assert_eq!(r.status, 401);
    seen.push(r);

    // Operator views of the plugins, and the metrics.
    for path in [
        "/admin/plugins",
        "/admin/plugins/square",
        "/admin/plugins/toast",
    ] {
        let r = srv.admin().get(path).await;
        r.expect(200);
        seen.push(r);
    }
    let r = manager.post("/pos/disconnect/uptown", &json!({})).await;
    r.expect(200);
    seen.push(r);
    let metrics = srv.anon().get("/metrics").await;
    metrics.expect(200);
    assert!(
        metrics.text.contains("posbridge_"),
        "metrics are rendered: {}",
        metrics.text
    );

    for secret in secrets {
        for r in &seen {
            assert!(
                !r.text.contains(secret.as_str()),
                "{} {} answered a secret: {}",
                r.method,
                r.url,
                r.text
            );
            for (name, value) in &r.headers {
                assert!(
                    !value.to_str().unwrap_or_default().contains(secret.as_str()),
                    "{} {}: header {name} carries a secret",
                    r.method,
                    r.url
                );
            }
        }
        assert!(
            !metrics.text.contains(secret.as_str()),
            "/metrics shows a secret"
        );
    }
    let logs = srv.logs();
    assert!(
        logs.contains("integration connected"),
        "the log is being written (and so is worth grepping)"
    );
    for secret in secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the server log contains a secret:\n{}",
            logs.lines()
                .filter(|l| l.contains(secret.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Stored encrypted: no file of the server's directory holds a secret in the clear.
    if backend == Backend::Sqlite {
        for secret in secrets {
            let holders = crate::files_containing(srv.dir(), secret.as_bytes());
            assert!(holders.is_empty(), "{holders:?} hold a secret in the clear");
        }
    }
}

/// Tills pushing the same sales at once, each in its own order (a till retrying while
/// another forwards the same batch): every push is answered 200, each sale is recorded
/// once, and the counts add up. On PostgreSQL, rows inserted in opposite orders wait on
/// each other's unique keys; the server must not turn that into an error.
async fn concurrent_overlapping_pushes(backend: Backend) {
    // More than one INSERT's worth, so that each push holds some keys while it waits.
    const SALES: usize = 600;
    const TILLS: usize = 4;
    const ROUNDS: usize = 3;
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    crate::connect_local_pos(&srv.manager(&tenant), "downtown").await;

    let mut created = 0;
    for round in 0..ROUNDS {
        let sale = |i: usize| {
            json!({
                "id": format!("r{round}-sale-{i}"),
                "occurred_at": "2026-11-20T19:00:00Z",
                "total": 1000 + i as i64,
                "currency": "USD",
                "tender": "cash",
            })
        };
        let pushes = (0..TILLS).map(|till_no| {
            // Till 0 in order, till 1 reversed, the others rotated.
            let mut order: Vec<usize> = (0..SALES).collect();
            match till_no {
                0 => {}
                1 => order.reverse(),
                n => order.rotate_left(n * SALES / TILLS),
            }
            let body = json!({
                "venue": "downtown",
                "transactions": order.into_iter().map(sale).collect::<Vec<_>>(),
            });
            let till = srv.terminal(&tenant);
            async move { push(&till, &body).await }
        });
        for resp in futures_util::future::join_all(pushes).await {
            let body = resp.expect(200);
            let counts = ["created", "updated", "duplicates", "rejected"].map(|k| {
                body[k]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no {k}: {}", resp.text))
            });
            assert_eq!(
                counts[1..],
                [0, SALES as u64 - counts[0], 0],
                "{}",
                resp.text
            );
            created += counts[0];
        }
    }
    assert_eq!(
        created,
        (SALES * ROUNDS) as u64,
        "each sale created exactly once"
    );
    let stored = all_transactions(&srv.manager(&tenant), "downtown").await;
    assert_eq!(stored.len(), SALES * ROUNDS);
}

/// PostgreSQL only: a push the database aborts as a deadlock victim is run again and
/// answered 200, not 500. The test holds one customer's row lock, lets the push lock the
/// other customer and wait for this one, then asks for the other: a cycle PostgreSQL breaks
/// by aborting the transaction that has waited longest, the push's.
#[tokio::test(flavor = "multi_thread")]
async fn a_deadlocked_push_is_run_again_postgres() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let srv = crate::start(Backend::Postgres).await;
    let tenant = srv.setup_tenant("kitchen").await;
    crate::connect_local_pos(&srv.manager(&tenant), "downtown").await;
    let till = srv.terminal(&tenant);
    // The push upserts its customers in phone order: `first`, then `second`.
    let (first, second) = ("+15550100101", "+15550100102");
    let push_of = |sales: &[(&str, &str)]| {
        json!({"venue": "downtown", "transactions": sales.iter().map(|(id, phone)| json!({
            "id": id,
            "occurred_at": "2026-11-20T19:00:00Z",
            "total": 1500,
            "currency": "USD",
            "tender": "card",
            "customer_phone": phone,
        })).collect::<Vec<_>>()})
    };
    assert_push(
        &push(&till, &push_of(&[("s-1", first), ("s-2", second)])).await,
        2,
        0,
        0,
    );

    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(srv.database_url())
        .await
        .expect("connect to the server's database");
    let lock_customer = "UPDATE customers SET updated_at = updated_at WHERE phone = $1";
    let mut holder = db.begin().await.expect("begin");
    sqlx::query(lock_customer)
        .bind(second)
        .execute(&mut *holder)
        .await
        .expect("lock the second customer");

    let body = push_of(&[("s-3", first), ("s-4", second)]);
    let pushing = tokio::spawn({
        let till = till.clone();
        async move { push(&till, &body).await }
    });
    posbridge_harness::eventually(
        Duration::from_secs(10),
        "the push waiting for the locked customer",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&db)
            .await
            .expect("pg_stat_activity");
            (waiting > 0).then_some(())
        },
    )
    .await;
    // Closes the cycle. PostgreSQL checks for one after `deadlock_timeout` (1 s) of waiting,
    // first in the push's session, which aborts the push; this statement then proceeds.
    sqlx::query(lock_customer)
        .bind(first)
        .execute(&mut *holder)
        .await
        .expect("the test's transaction is not the deadlock victim");
    holder.commit().await.expect("commit");

    let resp = pushing.await.expect("push task");
    assert_push(&resp, 2, 0, 0);
    let metrics = srv.anon().get("/metrics").await;
    assert!(
        crate::metric_value(&metrics.text, "posbridge_transaction_retries_total") >= Some(1.0),
        "no retry counted:\n{}",
        metrics.text
    );
    let stored = all_transactions(&srv.manager(&tenant), "downtown").await;
    assert_eq!(stored.len(), 4, "each sale recorded once");
}

/// `GET /pos/revenue/{venue}/series` by day, week and month: every period of the range
/// present, oldest first, each holding the completed sales of its days in the venue's
/// calendar (refunds netted, voided sales left out); bad ranges are refused.
async fn revenue_series_buckets_sales_by_day_week_and_month(backend: Backend) {
    let (_srv, _tenant, manager, till) = local_venue(backend).await;
    let tz_name = manager.get("/pos/integrations").await.expect(200)["items"][0]["timezone"]
        .as_str()
        .expect("the venue's time zone")
        .to_owned();
    let tz = posbridge_harness::jiff::tz::TimeZone::get(&tz_name).expect("a known zone");
    let now = posbridge_harness::jiff::Timestamp::now();
    let today = now.to_zoned(tz.clone()).date();
    let days_ago = |n: i64| today - posbridge_harness::jiff::Span::new().days(n);
    // Local noon of a day, as the till would stamp it.
    let noon = |d: posbridge_harness::jiff::civil::Date| {
        d.at(12, 0, 0, 0)
            .to_zoned(tz.clone())
            .expect("local noon")
            .timestamp()
            .to_string()
    };
    let sale = |id: &str, at: String, total: i64| json!({"id": id, "occurred_at": at, "total": total, "currency": "USD", "tender": "cash"});
    let mut voided = sale("s-void", noon(days_ago(3)), 9900);
    voided["status"] = json!("voided");
    let body = json!({"venue": "downtown", "transactions": [
        sale("s-now-1", now.to_string(), 6000),
        sale("s-now-2", now.to_string(), 1500),
        sale("s-3", noon(days_ago(3)), 2000),
        voided,
        sale("s-45", noon(days_ago(45)), 700),
    ]});
    assert_push(&push(&till, &body).await, 5, 0, 0);

    let series = |q: &str| {
        let manager = manager.clone();
        let q = q.to_owned();
        async move {
            manager
                .get(&format!("/pos/revenue/downtown/series{q}"))
                .await
                .expect(200)
                .clone()
        }
    };
    let totals = |s: &Value| -> Vec<(String, i64, i64)> {
        s["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| {
                (
                    p["start"].as_str().expect("start").to_owned(),
                    p["total"].as_i64().expect("total"),
                    p["count"].as_i64().expect("count"),
                )
            })
            .collect()
    };

    // By day (the default): the last 30 days, today last.
    let by_day = series("").await;
    assert_eq!(by_day["by"], "day", "{by_day}");
    assert_eq!(by_day["timezone"], tz_name.as_str());
    assert_eq!(by_day["currency"], "USD");
    let points = totals(&by_day);
    assert_eq!(points.len(), 30, "{by_day}");
    assert_eq!(points[0].0, days_ago(29).to_string());
    assert_eq!(points[29], (today.to_string(), 7500, 2));
    assert_eq!(points[26], (days_ago(3).to_string(), 2000, 1));
    assert_eq!(points.iter().filter(|p| p.2 > 0).count(), 2, "{by_day}");
    assert_eq!(
        (by_day["total"].as_i64(), by_day["count"].as_i64()),
        (Some(9500), Some(3))
    );

    // By week: 12 weeks from a Monday; by month: 12 months from a first; both reach the sale
    // of 45 days ago.
    let by_week = series("?by=week").await;
    let weeks = totals(&by_week);
    assert_eq!(weeks.len(), 12, "{by_week}");
    for (start, ..) in &weeks {
        let d: posbridge_harness::jiff::civil::Date = start.parse().expect("a date");
        assert_eq!(d.weekday(), posbridge_harness::jiff::civil::Weekday::Monday);
    }
    assert_eq!(by_week["total"], 10200, "{by_week}");
    assert_eq!(weeks.last().map(|w| w.1 >= 7500), Some(true), "{by_week}");
    let by_month = series("?by=month").await;
    let months = totals(&by_month);
    assert_eq!(months.len(), 12, "{by_month}");
    assert!(months.iter().all(|m| m.0.ends_with("-01")), "{by_month}");
    assert_eq!(
        months.last().map(|m| m.0.clone()),
        Some(today.first_of_month().to_string())
    );
    assert_eq!(by_month["total"], 10200, "{by_month}");
    assert_eq!(by_month["count"], 4, "{by_month}");

    // An explicit range: one day.
    let d3 = days_ago(3).to_string();
    let one = series(&format!("?from={d3}&to={d3}")).await;
    assert_eq!(totals(&one), vec![(d3.clone(), 2000, 1)], "{one}");

    for bad in [
        format!("?from={}&to={d3}", today),
        "?from=yesterday".to_owned(),
        "?from=2000-01-01&to=2026-01-01".to_owned(),
        "?by=hour".to_owned(),
    ] {
        let resp = manager
            .get(&format!("/pos/revenue/downtown/series{bad}"))
            .await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text);
    }
    manager
        .get("/pos/revenue/uptown/series")
        .await
        .expect_error(404, "venue_not_connected");
    till.get("/pos/revenue/downtown/series")
        .await
        .expect_error(403, "forbidden");
}

both_backends!(
    a_push_naming_a_venue_not_connected_is_refused,
    connecting_the_local_pos_takes_the_tenants_time_zone,
    a_pushed_sale_is_recorded_and_announced,
    a_sale_pushed_again_is_a_duplicate,
    a_corrected_sale_replaces_it_and_an_older_version_does_not,
    a_push_with_a_fractional_amount_or_an_unknown_field_is_refused_whole,
    pushed_sales_are_listed_newest_first_with_their_figures_and_customer,
    revenue_counts_pushed_sales_but_not_voided_ones_by_calendar_period,
    revenue_series_buckets_sales_by_day_week_and_month,
    secrets_never_leak,
    concurrent_overlapping_pushes
);
