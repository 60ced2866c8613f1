//! Poison isolation through the real binary, on both databases: one webhook delivery, synced
//! sale or hook event the host cannot process is set aside as a dead letter with its reason
//! while its neighbours are recorded or delivered; operators list, inspect, retry and
//! discard dead letters under `/admin/dead-letters`, and `/metrics` counts them.

use std::time::{Duration, Instant};

use posbridge_harness::mock_square::{square_payment_webhook, SquarePayment};
use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, eventually, Backend, Body, Client, TestServer, Ws};
use serde_json::{json, Value};

use crate::providers::{
    all_transactions, at_ms, connect_square, connect_square_webhooks, first_sync, now_ms,
    post_signed_square, sync,
};
use crate::{metric_value, order_body, wasm};

const SQUARE_KEY: &str = "sq-webhook-signature-key-dl";
/// How long processing may take to show: generous for a loaded machine.
const SETTLE: Duration = Duration::from_secs(20);

/// The dead letters the operator lists for `query` (all pages of 2, so paging is walked).
async fn dead_letters(srv: &TestServer, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = match &cursor {
            Some(c) => format!(
                "/admin/dead-letters?{query}{sep}limit=2&cursor={}",
                posbridge_harness::enc(c)
            ),
            None => format!("/admin/dead-letters?{query}{sep}limit=2"),
        };
        let resp = srv.admin().get(&url).await;
        let page = resp.expect(200).clone();
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("dead-letter paging did not end");
}

/// The `/metrics` sample `name` (with its labels), or 0 when absent.
async fn metric(srv: &TestServer, name: &str) -> f64 {
    let text = srv.anon().get("/metrics").await.text;
    metric_value(&text, name).unwrap_or(0.0)
}

/// Signs and posts a Square webhook for `payment` (JSON), asserting 200.
async fn post_square(srv: &TestServer, integration: &Value, event_id: &str, payment: &Value) {
    let body = square_payment_webhook("payment.created", event_id, payment);
    let resp = post_signed_square(srv, integration, &body, SQUARE_KEY).await;
    assert_eq!(resp.status, 200, "acknowledged: {}", resp.text);
}

/// The sorted external ids recorded at `venue`.
async fn external_ids(manager: &Client, venue: &str) -> Vec<String> {
    let mut ids: Vec<String> = all_transactions(manager, venue)
        .await
        .iter()
        .map(|t| t["external_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A batch of signed Square deliveries sent together, one of them carrying a NUL in the
/// buyer's email (which the Square plugin maps into the stored customer email): every
/// valid payment is recorded exactly once, the poison delivery is a dead letter naming the
/// field, listed, counted, retried (still poison) and discarded.
async fn poison_webhook_in_a_batch(backend: Backend) {
    const VALID: usize = 24;
    let (srv, _tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let integration = connect_square_webhooks(&manager, &mock, "downtown", SQUARE_KEY).await;
    let integration_id = integration["id"].as_str().unwrap().to_owned();
    let t0 = now_ms() - 60_000;
    let mut payments: Vec<(String, Value)> = (0..VALID)
        .map(|i| {
            let p = SquarePayment::new(
                &format!("ok-{i:02}"),
                1000 + i as i64,
                0,
                at_ms(t0 + i as i64),
            );
            (format!("evt-ok-{i}"), p.json())
        })
        .collect();
    let mut poison = SquarePayment::new("poison-1", 777, 0, at_ms(t0 + 500)).json();
    poison["buyer_email_address"] = json!("ada\u{0}@example.com");
    // In the middle of the batch, so that it is claimed together with valid deliveries.
    payments.insert(VALID / 2, ("evt-poison".to_owned(), poison));
    let sends = payments
        .iter()
        .map(|(event, payment)| post_square(&srv, &integration, event, payment));
    futures_util::future::join_all(sends).await;

    let expected: Vec<String> = (0..VALID).map(|i| format!("ok-{i:02}")).collect();
    eventually(SETTLE, "every valid payment recorded", || async {
        (external_ids(&manager, "downtown").await == expected).then_some(())
    })
    .await;
    let dead = eventually(SETTLE, "the poison delivery set aside", || async {
        let items = dead_letters(&srv, "kind=webhook").await;
        (items.len() == 1 && items[0]["status"] == "dead").then(|| items[0].clone())
    })
    .await;
    let reason = dead["reason"].as_str().unwrap();
    assert!(
        reason.contains("customer.email"),
        "the reason names the field: {dead}"
    );
    assert!(reason.contains("NUL"), "{dead}");
    assert_eq!(dead["tenant"], "kitchen", "{dead}");
    assert_eq!(dead["integration_id"], integration_id.as_str(), "{dead}");
    assert!(
        dead.get("payload").is_none(),
        "lists leave the payload out: {dead}"
    );
    let id = dead["id"].as_str().unwrap().to_owned();

    // The detail shows the delivery as received.
    let detail = srv.admin().get(&format!("/admin/dead-letters/{id}")).await;
    let detail = detail.expect(200).clone();
    let body = detail["payload"]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("evt-poison") && body.contains("\\u0000"),
        "{detail}"
    );
    // Filters: another kind or tenant lists nothing; a bad kind is refused.
    assert!(dead_letters(&srv, "kind=hook").await.is_empty());
    assert!(dead_letters(&srv, "tenant=nobody").await.is_empty());
    assert_eq!(dead_letters(&srv, "tenant=kitchen").await.len(), 1);
    let bad = srv.admin().get("/admin/dead-letters?kind=mail").await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert_eq!(bad.body["error"]["code"], "invalid_kind", "{}", bad.text);
    // Operator only; unknown ids are 404 on every route.
    let anon = srv.anon().get("/admin/dead-letters").await;
    assert_eq!(anon.status, 401, "{}", anon.text);
    for (method, path) in [
        (Method::GET, "/admin/dead-letters/nope"),
        (Method::POST, "/admin/dead-letters/nope/retry"),
        (Method::POST, "/admin/dead-letters/nope/discard"),
        (Method::DELETE, "/admin/dead-letters/nope"),
    ] {
        let resp = srv
            .admin()
            .send(method.clone(), path, Body::Json(json!({})), &[])
            .await;
        assert_eq!(resp.status, 404, "{method} {path}: {}", resp.text);
        assert_eq!(resp.body["error"]["code"], "dead_letter_not_found");
    }

    assert_eq!(
        metric(&srv, r#"posbridge_dead_letters{kind="webhook"}"#).await,
        1.0
    );
    assert!(metric(&srv, r#"posbridge_dead_lettered_total{kind="webhook"}"#).await >= 1.0);

    // Retried: back to the inbox, and set aside again (it is still poison), nothing recorded.
    let retried = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(retried.body["outcome"], "requeued", "{}", retried.text);
    let again = eventually(SETTLE, "the retried delivery dead again", || async {
        let d = srv.admin().get(&format!("/admin/dead-letters/{id}")).await;
        let d = d.expect(200).clone();
        (d["status"] == "dead" && d["retries"] == 1).then_some(d)
    })
    .await;
    assert!(
        again["reason"].as_str().unwrap().contains("customer.email"),
        "{again}"
    );
    assert!(again["attempts"].as_i64().unwrap() >= 2, "{again}");
    assert_eq!(external_ids(&manager, "downtown").await, expected);

    // Discarded: gone from the list, the detail and the gauge.
    let discarded = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/discard"), &json!({}))
        .await;
    assert_eq!(discarded.expect(200)["discarded"], true);
    let gone = srv.admin().get(&format!("/admin/dead-letters/{id}")).await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    assert!(dead_letters(&srv, "").await.is_empty());
    assert_eq!(
        metric(&srv, r#"posbridge_dead_letters{kind="webhook"}"#).await,
        0.0
    );

    // The inbox keeps flowing after it.
    let later = SquarePayment::new("after-1", 50, 0, at_ms(t0 + 900)).json();
    post_square(&srv, &integration, "evt-after", &later).await;
    eventually(SETTLE, "a later delivery recorded", || async {
        (external_ids(&manager, "downtown").await.len() == VALID + 1).then_some(())
    })
    .await;
}

/// A sync page with one payment the host cannot store (a NUL in the customer id): its
/// neighbours are recorded, the payment is a dead letter holding the sale, and the venue
/// keeps syncing instead of failing at that page forever.
async fn poison_sync_sale_is_set_aside(backend: Backend) {
    let (srv, _tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let integration = connect_square(&manager, &mock, "downtown", json!({})).await;
    first_sync(&manager, "downtown").await;
    let t0 = now_ms() - 60_000;
    let poison = SquarePayment::new("sync-poison", 900, 0, at_ms(t0 + 1)).customer("cus\u{0}tomer");
    mock.add_payments([
        SquarePayment::new("sync-ok-1", 1000, 0, at_ms(t0)).json(),
        poison.json(),
        SquarePayment::new("sync-ok-2", 1100, 0, at_ms(t0 + 2)).json(),
    ]);
    let stats = sync(&manager, "downtown").await;
    assert_eq!(stats["fetched"], 3, "{stats}");
    assert_eq!(stats["created"], 2, "{stats}");
    assert_eq!(
        external_ids(&manager, "downtown").await,
        vec!["sync-ok-1", "sync-ok-2"]
    );
    let dead = dead_letters(&srv, "kind=sync").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = &dead[0];
    assert_eq!(dead["item"], "sync-poison", "{dead}");
    assert_eq!(dead["source_id"], integration["id"], "{dead}");
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .contains("customer.provider_customer_id"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap().to_owned();
    let detail = srv.admin().get(&format!("/admin/dead-letters/{id}")).await;
    let detail = detail.expect(200).clone();
    assert_eq!(detail["payload"]["external_id"], "sync-poison", "{detail}");
    assert_eq!(
        detail["payload"]["total"], 900,
        "the whole sale is kept: {detail}"
    );

    // The venue is not stuck: the next sync completes and the integration stays healthy.
    let stats = sync(&manager, "downtown").await;
    assert_eq!(stats["duplicates"], 2, "{stats}");
    let status = manager
        .get("/pos/status/downtown")
        .await
        .expect(200)
        .clone();
    assert_eq!(status["status"], "CONNECTED", "{status}");
    assert_eq!(
        dead_letters(&srv, "kind=sync").await.len(),
        1,
        "still one, not one per sync"
    );
    assert_eq!(
        metric(&srv, r#"posbridge_dead_letters{kind="sync"}"#).await,
        1.0
    );

    // Retried from the dead letter: still unstorable, so it stays, with the new attempt.
    let retried = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.body["outcome"], "failed", "{}", retried.text);
    assert_eq!(
        retried.body["dead_letter"]["retries"], 1,
        "{}",
        retried.text
    );
    assert_eq!(external_ids(&manager, "downtown").await.len(), 2);

    // Fixed upstream: the next sync records it; the operator discards the stale letter.
    mock.upsert_payment(
        SquarePayment::new("sync-poison", 900, 0, at_ms(t0 + 1))
            .customer("customer")
            .updated_at(jiff::Timestamp::now())
            .json(),
    );
    sync(&manager, "downtown").await;
    assert_eq!(
        external_ids(&manager, "downtown").await,
        vec!["sync-ok-1", "sync-ok-2", "sync-poison"]
    );
    srv.admin()
        .send(
            Method::DELETE,
            &format!("/admin/dead-letters/{id}"),
            Body::Json(json!({})),
            &[],
        )
        .await
        .expect(200);
    assert!(dead_letters(&srv, "kind=sync").await.is_empty());
}

/// Reads frames until one of type `kind` satisfies `check`; returns it.
async fn frame_where(ws: &mut Ws, kind: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        if frame["type"] == kind && check(&frame) {
            return frame;
        }
    }
}

/// A hook that refuses one event (by its order's external id): after its bounded attempts
/// that event is a dead letter for the binding, later events are delivered in order, the
/// binding stays active; a retry fails while the hook still refuses it and delivers it once
/// the binding's configuration is fixed.
async fn poison_hook_event_is_set_aside(backend: Backend) {
    let srv = crate::start_with(
        backend,
        &[
            "--hook-quarantine-after",
            "3",
            "--hook-retry-base-ms",
            "50",
            "--hook-retry-max-ms",
            "200",
        ],
    )
    .await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    srv.admin()
        .send(
            Method::POST,
            "/admin/plugins",
            Body::Raw {
                bytes: wasm("test_hook_recorder"),
                content_type: Some("application/wasm".into()),
            },
            &[],
        )
        .await
        .expect(201);
    let binding = manager
        .post(
            "/hooks",
            &json!({"plugin": "test-hook-recorder", "events": ["new_order"],
                    "config": {"fail_external_id": "poison-2"}}),
        )
        .await
        .expect(201)
        .clone();
    let binding_id = binding["id"].as_str().unwrap().to_owned();
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;

    for external in ["o-1", "poison-2", "o-3", "o-4"] {
        manager
            .post("/orders", &order_body(external, "online"))
            .await
            .expect(201);
    }
    // Every other event reaches the hook, in order, past the poison one.
    let (seqs, seen) = collect(&mut ws, 4, 3).await;
    let poison_seq = seqs[1];
    assert_eq!(seen, vec![seqs[0], seqs[2], seqs[3]]);
    let b = eventually(SETTLE, "the binding past every event", || async {
        let b = manager
            .get(&format!("/hooks/{binding_id}"))
            .await
            .expect(200)
            .clone();
        // At or past the last order: events the binding does not take are stepped over.
        (b["cursor"].as_i64().unwrap() >= seqs[3] && b["delivered"] == 3).then_some(b)
    })
    .await;
    assert_eq!(b["status"], "active", "{b}");
    assert_eq!(b["delivered"], 3, "{b}");
    assert_eq!(b["failures"], 0, "{b}");

    let dead = dead_letters(&srv, "kind=hook&tenant=kitchen").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead = dead[0].clone();
    assert_eq!(dead["source_id"], binding_id.as_str(), "{dead}");
    assert_eq!(dead["item"], poison_seq.to_string(), "{dead}");
    assert_eq!(dead["attempts"], 3, "{dead}");
    assert!(
        dead["reason"].as_str().unwrap().contains("refusing event"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap().to_owned();
    assert_eq!(
        metric(&srv, r#"posbridge_dead_letters{kind="hook"}"#).await,
        1.0
    );

    // Still refused: the retry fails and the letter stays, with the attempt counted.
    let retried = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.body["outcome"], "failed", "{}", retried.text);
    assert_eq!(
        retried.body["dead_letter"]["attempts"], 4,
        "{}",
        retried.text
    );

    // The configuration fixed: the retry hands the event over once and the letter is gone.
    manager
        .send(
            Method::PATCH,
            &format!("/hooks/{binding_id}"),
            Body::Json(json!({"config": {}})),
            &[],
        )
        .await
        .expect(200);
    let retried = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.body["outcome"], "resolved", "{}", retried.text);
    assert_eq!(retried.body["dead_letter"], Value::Null, "{}", retried.text);
    let redelivered = frame_where(&mut ws, "custom.seen", |f| {
        f["data"]["seq"] == json!(poison_seq)
    })
    .await;
    assert_eq!(redelivered["data"]["kind"], "new_order");
    let gone = srv.admin().get(&format!("/admin/dead-letters/{id}")).await;
    assert_eq!(gone.status, 404, "{}", gone.text);
    let again = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/retry"), &json!({}))
        .await;
    assert_eq!(
        again.status, 404,
        "a resolved letter is not retried twice: {}",
        again.text
    );
    assert_eq!(
        metric(&srv, r#"posbridge_dead_letters{kind="hook"}"#).await,
        0.0
    );

    // Later events keep flowing to the binding.
    manager
        .post("/orders", &order_body("o-5", "online"))
        .await
        .expect(201);
    let (seqs5, seen5) = collect(&mut ws, 1, 1).await;
    assert_eq!(seen5, seqs5);
    assert!(seqs5[0] > seqs[3], "{seqs5:?} after {seqs:?}");
}

/// Reads frames until `orders` `new_order` and `seen` `custom.seen` frames arrived; returns
/// the seqs of the orders and the seqs the hook reported seeing, in arrival order.
async fn collect(ws: &mut Ws, orders: usize, seen: usize) -> (Vec<i64>, Vec<i64>) {
    let (mut order_seqs, mut seen_seqs) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + SETTLE;
    while order_seqs.len() < orders || seen_seqs.len() < seen {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        match frame["type"].as_str() {
            Some("new_order") => order_seqs.push(frame["seq"].as_i64().unwrap()),
            Some("custom.seen") => seen_seqs.push(frame["data"]["seq"].as_i64().unwrap()),
            _ => {}
        }
    }
    (order_seqs, seen_seqs)
}

/// Statements that make the database itself refuse one sale (external id `db-refuses`) as
/// it is inserted: a fault that no validation can foresee, to exercise the fallback.
fn refusing_trigger(backend: Backend) -> (Vec<&'static str>, Vec<&'static str>) {
    match backend {
        Backend::Sqlite => (
            vec![
                "CREATE TRIGGER refuse_one BEFORE INSERT ON pos_transactions
                 WHEN NEW.external_id = 'db-refuses'
                 BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END",
            ],
            vec!["DROP TRIGGER refuse_one"],
        ),
        Backend::Postgres => (
            vec![
                "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN
                   IF NEW.external_id = 'db-refuses' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF;
                   RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_one BEFORE INSERT ON pos_transactions
                 FOR EACH ROW EXECUTE FUNCTION refuse_one()",
            ],
            vec!["DROP TRIGGER refuse_one ON pos_transactions"],
        ),
    }
}

/// Runs `statements` on the server's database, beside the server.
async fn run_sql(srv: &TestServer, statements: &[&str]) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(srv.database_url())
        .await
        .expect("connecting to the server's database");
    for sql in statements {
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("closing");
}

/// The database refuses one delivery of a batch for a reason validation cannot foresee:
/// the batch is recorded delivery by delivery, so every other payment is recorded; the
/// refused one is retried with backoff and, after the configured attempts, set aside with
/// the database's reason. Once the fault is gone, a retry records it exactly once.
async fn database_refusal_fails_only_its_delivery(backend: Backend) {
    const VALID: usize = 12;
    let srv = crate::start_with(
        backend,
        &[
            "--webhook-max-attempts",
            "2",
            "--webhook-retry-base-ms",
            "100",
        ],
    )
    .await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let mock = posbridge_harness::mock_square::MockSquare::start().await;
    crate::providers::approve_host(&srv, "square", mock.host_port()).await;
    let integration = connect_square_webhooks(&manager, &mock, "downtown", SQUARE_KEY).await;
    let (create, drop) = refusing_trigger(backend);
    run_sql(&srv, &create).await;

    let t0 = now_ms() - 60_000;
    let mut payments: Vec<(String, Value)> = (0..VALID)
        .map(|i| {
            let p = SquarePayment::new(
                &format!("ok-{i:02}"),
                100 + i as i64,
                0,
                at_ms(t0 + i as i64),
            );
            (format!("evt-ok-{i}"), p.json())
        })
        .collect();
    let refused = SquarePayment::new("db-refuses", 4242, 0, at_ms(t0 + 99)).json();
    payments.insert(VALID / 2, ("evt-refused".to_owned(), refused));
    let sends = payments
        .iter()
        .map(|(event, payment)| post_square(&srv, &integration, event, payment));
    futures_util::future::join_all(sends).await;

    let expected: Vec<String> = (0..VALID).map(|i| format!("ok-{i:02}")).collect();
    eventually(SETTLE, "every other payment recorded", || async {
        (external_ids(&manager, "downtown").await == expected).then_some(())
    })
    .await;
    let dead = eventually(SETTLE, "the refused delivery set aside", || async {
        let items = dead_letters(&srv, "kind=webhook").await;
        (items.len() == 1).then(|| items[0].clone())
    })
    .await;
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .contains("refused by a test trigger"),
        "{dead}"
    );
    assert_eq!(
        dead["attempts"], 2,
        "the configured attempts, then set aside: {dead}"
    );
    assert_eq!(external_ids(&manager, "downtown").await, expected);

    run_sql(&srv, &drop).await;
    let id = dead["id"].as_str().unwrap().to_owned();
    let retried = srv
        .admin()
        .post(&format!("/admin/dead-letters/{id}/retry"), &json!({}))
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    eventually(SETTLE, "the retried delivery recorded", || async {
        (external_ids(&manager, "downtown").await.len() == VALID + 1).then_some(())
    })
    .await;
    eventually(SETTLE, "its dead letter gone", || async {
        let d = srv.admin().get(&format!("/admin/dead-letters/{id}")).await;
        (d.status == 404).then_some(())
    })
    .await;
    let sale = crate::providers::with_external_id(&manager, "downtown", "db-refuses").await;
    assert_eq!(sale.len(), 1, "recorded once: {sale:?}");
    assert_eq!(sale[0]["total"], 4242);
}

both_backends!(
    poison_webhook_in_a_batch,
    poison_sync_sale_is_set_aside,
    poison_hook_event_is_set_aside,
    database_refusal_fails_only_its_delivery
);
