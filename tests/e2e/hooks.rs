//! Hook plugins through the real binary: the bindings API, in-order delivery from the event
//! log to hooks and of their custom events to terminals, retries and per-binding quarantine
//! of trapping and spinning hooks while writes stay fast, resume, the bundled
//! order-size-flag and big-spender-alert hooks, and a kill -9 that loses and repeats nothing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use posbridge_harness::reqwest::Method;
use posbridge_harness::{
    both_backends, eventually, Backend, Body, Client, TenantKeys, TestServer, Ws,
};
use serde_json::{json, Value};

use crate::providers::{all_transactions, approve_host};
use crate::{last_seq, order_body};

/// Fast retries and an early quarantine, so failure tests take seconds.
const FAST_RETRIES: &[&str] = &[
    "--hook-quarantine-after",
    "3",
    "--hook-retry-base-ms",
    "50",
    "--hook-retry-max-ms",
    "200",
];

/// How long a delivery may take to show up: generous for a loaded CI machine.
const DELIVERY: Duration = Duration::from_secs(20);

async fn install_recorder(srv: &TestServer) {
    crate::install_plugin(srv, "test_hook_recorder")
        .await
        .expect(201);
}

async fn bind(manager: &Client, body: Value) -> Value {
    let resp = manager.post("/hooks", &body).await;
    resp.expect(201).clone()
}

async fn binding(manager: &Client, id: &str) -> Value {
    manager
        .get(&format!("/hooks/{id}"))
        .await
        .expect(200)
        .clone()
}

async fn patch(manager: &Client, id: &str, body: Value) -> posbridge_harness::Resp {
    manager
        .send(
            Method::PATCH,
            &format!("/hooks/{id}"),
            Body::Json(body),
            &[],
        )
        .await
}

/// Waits until the binding satisfies `check` and returns it.
async fn wait_binding(
    manager: &Client,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(DELIVERY, what, || async {
        let b = binding(manager, id).await;
        check(&b).then_some(b)
    })
    .await
}

/// Reads frames until `n` of type `kind` arrived; returns them in arrival order.
async fn frames_of(ws: &mut Ws, kind: &str, n: usize) -> Vec<Value> {
    let mut found = Vec::new();
    let deadline = Instant::now() + DELIVERY;
    while found.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        if frame["type"] == kind {
            found.push(frame);
        }
    }
    found
}

async fn create_order(manager: &Client, external_id: &str) -> Value {
    manager
        .post("/orders", &order_body(external_id, "online"))
        .await
        .expect(201)
        .clone()
}

async fn bindings_api(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let other = srv.setup_tenant("other").await;
    let manager = srv.manager(&kitchen);
    let intruder = srv.manager(&other);

    // Auth: a manager key of this tenant only.
    srv.tenant_anon("kitchen")
        .get("/hooks")
        .await
        .expect_error(401, "unauthorized");
    srv.terminal(&kitchen)
        .post("/hooks", &json!({"plugin": "order-size-flag"}))
        .await
        .expect_error(403, "forbidden");

    // Validation: each refusal names the problem and creates nothing.
    manager
        .post("/hooks", &json!({"plugin": "no-such-hook"}))
        .await
        .expect_error(422, "unknown_plugin");
    manager
        .post("/hooks", &json!({"plugin": "square"}))
        .await
        .expect_error(422, "not_a_hook");
    let wrong_event = manager
        .post(
            "/hooks",
            &json!({"plugin": "order-size-flag", "events": ["gift_card_redeemed"]}),
        )
        .await;
    wrong_event.expect_error(422, "invalid_events");
    assert!(
        wrong_event.text.contains("new_order"),
        "{}",
        wrong_event.text
    );
    manager
        .post(
            "/hooks",
            &json!({"plugin": "order-size-flag", "events": []}),
        )
        .await
        .expect_error(422, "invalid_events");
    manager
        .post(
            "/hooks",
            &json!({"plugin": "order-size-flag", "config": [1]}),
        )
        .await
        .expect_error(422, "invalid_config");
    manager
        .post("/hooks", &json!({"plugin": "order-size-flag", "extra": 1}))
        .await
        .expect_error(422, "invalid_request");
    manager
        .send(Method::POST, "/hooks", Body::raw_json("{"), &[])
        .await
        .expect_error(400, "invalid_json");
    let empty = manager.get("/hooks").await;
    assert_eq!(empty.expect(200)["items"], json!([]), "{}", empty.text);

    // A binding starts at the tenant's current seq with the hook's declared events.
    create_order(&manager, "before-binding").await;
    let seq_before = last_seq(&srv.terminal(&kitchen)).await;
    let created = bind(&manager, json!({"plugin": "order-size-flag"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["plugin"], "order-size-flag");
    assert_eq!(created["events"], json!(["new_order"]));
    assert_eq!(created["config"], json!({}));
    assert_eq!(created["status"], "active");
    assert_eq!(created["cursor"], seq_before);
    assert_eq!(created["delivered"], 0);
    assert_eq!(created["failures"], 0);
    assert_eq!(created["last_error"], Value::Null);
    assert_eq!(binding(&manager, &id).await["id"], id.as_str());
    let listed = manager.get("/hooks").await.expect(200).clone();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    // Another tenant sees nothing of it.
    assert_eq!(intruder.get("/hooks").await.expect(200)["items"], json!([]));
    intruder
        .get(&format!("/hooks/{id}"))
        .await
        .expect_error(404, "hook_not_found");
    patch(&intruder, &id, json!({"enabled": false}))
        .await
        .expect_error(404, "hook_not_found");
    intruder
        .post(&format!("/hooks/{id}/resume"), &json!({}))
        .await
        .expect_error(404, "hook_not_found");
    intruder
        .delete(&format!("/hooks/{id}"))
        .await
        .expect_error(404, "hook_not_found");

    // order-size-flag end to end: an order at the threshold reaches the kitchen screens as
    // custom.large_order; the one before the binding existed does not.
    let updated = patch(&manager, &id, json!({"config": {"threshold": 2573}})).await;
    assert_eq!(updated.expect(200)["config"], json!({"threshold": 2573}));
    patch(&manager, &id, json!({"config": "x"}))
        .await
        .expect_error(422, "invalid_config");
    patch(&manager, &id, json!({"events": ["order_updated"]}))
        .await
        .expect_error(422, "invalid_events");
    let mut screen = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    screen.hello().await;
    let order = create_order(&manager, "big-one").await;
    let flagged = frames_of(&mut screen, "custom.large_order", 1).await;
    assert_eq!(
        flagged[0]["data"]["order_id"], order["id"],
        "{}",
        flagged[0]
    );
    assert_eq!(flagged[0]["data"]["total"], 2573);
    assert_eq!(flagged[0]["data"]["threshold"], 2573);
    let after = wait_binding(&manager, &id, "one delivery", |b| b["delivered"] == 1).await;
    assert!(after["last_delivered_at"].is_string(), "{after}");
    assert!(after["cursor"].as_i64().unwrap() > seq_before, "{after}");

    // Disable: events wait; resume is refused; enabling delivers what waited.
    let disabled = patch(&manager, &id, json!({"enabled": false})).await;
    assert_eq!(disabled.expect(200)["status"], "disabled");
    let waiting = create_order(&manager, "while-disabled").await;
    manager
        .post(&format!("/hooks/{id}/resume"), &json!({}))
        .await
        .expect_error(409, "hook_disabled");
    assert_eq!(binding(&manager, &id).await["delivered"], 1);
    assert_eq!(
        patch(&manager, &id, json!({"enabled": true}))
            .await
            .expect(200)["status"],
        "active"
    );
    let flagged = frames_of(&mut screen, "custom.large_order", 1).await;
    assert_eq!(flagged[0]["data"]["order_id"], waiting["id"]);

    // Delete.
    let deleted = manager.delete(&format!("/hooks/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    manager
        .get(&format!("/hooks/{id}"))
        .await
        .expect_error(404, "hook_not_found");
}

async fn events_reach_hooks_in_order(backend: Backend) {
    const WRITES: usize = 20;
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    install_recorder(&srv).await;
    let recorder = bind(
        &manager,
        json!({"plugin": "test-hook-recorder", "events": ["new_order", "loyalty_updated"]}),
    )
    .await;
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;
    // Writers in parallel: the log's order, not the request order, is what hooks follow.
    let writes = (0..WRITES).map(|i| {
        let manager = manager.clone();
        async move { create_order(&manager, &format!("web-{i}")).await }
    });
    futures_util::future::join_all(writes).await;
    // A type the binding does not receive is skipped.
    manager
        .post("/gift-cards", &json!({"code": "GC-HOOK-1", "amount": 1000}))
        .await
        .expect(201);
    let mut order_seqs = Vec::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + DELIVERY;
    while seen.len() < WRITES {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        match frame["type"].as_str() {
            Some("new_order") => order_seqs.push(frame["seq"].as_i64().unwrap()),
            Some("custom.seen") => {
                assert_eq!(frame["data"]["kind"], "new_order", "{frame}");
                seen.push(frame["data"]["seq"].as_i64().unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(
        seen, order_seqs,
        "every new_order delivered once, in log order"
    );
    let b = wait_binding(
        &manager,
        recorder["id"].as_str().unwrap(),
        "20 deliveries",
        |b| b["delivered"] == WRITES as i64,
    )
    .await;
    assert_eq!(b["failures"], 0);
}

/// A local receiver standing in for a Slack incoming webhook: records every POST body and
/// answers 500 while `failing` is above zero (counting down).
struct Receiver {
    host_port: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    failing: Arc<AtomicU32>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::http::StatusCode;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let failing: Arc<AtomicU32> = Arc::default();
        let (b, f) = (bodies.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/services/T0/B0/secret",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (b, f) = (b.clone(), f.clone());
                async move {
                    let down = f
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if down {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    b.lock().unwrap().push(value);
                    StatusCode::OK
                }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            host_port: format!("127.0.0.1:{port}"),
            bodies,
            failing,
            _server: server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/services/T0/B0/secret", self.host_port)
    }

    fn texts(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn sale(id: &str, total: i64) -> Value {
    json!({"venue": "downtown", "transactions": [{
        "id": id, "occurred_at": "2026-11-20T19:00:00Z", "total": total, "currency": "USD",
        "tender": "card", "customer_phone": "+15550100199"
    }]})
}

/// A server with fast retries, tenant `kitchen` with `downtown` on the local POS, and a
/// Slack-style receiver the big-spender-alert hook may call.
async fn big_spender_setup(backend: Backend) -> (TestServer, TenantKeys, Client, Client, Receiver) {
    let srv = crate::start_with(backend, FAST_RETRIES).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    let receiver = Receiver::start().await;
    approve_host(&srv, "big-spender-alert", &receiver.host_port).await;
    crate::connect_local_pos(&manager, "downtown").await;
    (srv, kitchen, manager, till, receiver)
}

async fn big_spender_alert_posts_to_the_webhook(backend: Backend) {
    let (srv, kitchen, manager, till, receiver) = big_spender_setup(backend).await;
    let hook = bind(
        &manager,
        json!({"plugin": "big-spender-alert",
               "config": {"webhook_url": receiver.url(), "min_sale": 50000}}),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(
        hook["events"],
        json!(["tier_unlocked", "transaction_recorded"])
    );
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;

    till.post("/transactions", &sale("small-1", 1000))
        .await
        .expect(200);
    till.post("/transactions", &sale("big-1", 60000))
        .await
        .expect(200);
    let alert = frames_of(&mut ws, "custom.big_spender", 1).await;
    let data = &alert[0]["data"];
    assert_eq!(data["reason"], "big_sale", "{data}");
    assert_eq!(data["net"], 60000);
    assert_eq!(data["venue"], "downtown");
    assert_eq!(data["customer"]["phone"], "+15550100199");
    assert_eq!(
        receiver.texts(),
        vec![":moneybag: Big sale at downtown: 600.00 USD by ••••0199"],
        "one alert, for the big sale only; the phone masked"
    );
    let sales = all_transactions(&manager, "downtown").await;
    let tags = |external: &str| {
        sales
            .iter()
            .find(|t| t["external_id"] == external)
            .map(|t| t["tags"].clone())
            .unwrap()
    };
    assert_eq!(tags("big-1"), json!(["big-sale"]));
    assert_eq!(tags("small-1"), json!([]));

    // The receiver is down: the delivery fails (non-2xx), is retried, and goes through once
    // the receiver is back. The alert after the outage is the only one posted.
    receiver.failing.store(1_000, Ordering::SeqCst);
    till.post("/transactions", &sale("big-2", 75000))
        .await
        .expect(200);
    let failing = wait_binding(&manager, &id, "a failed delivery", |b| {
        b["failures"].as_i64().unwrap() >= 1
    })
    .await;
    assert!(
        failing["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{failing}"
    );
    receiver.failing.store(0, Ordering::SeqCst);
    // Quarantine after three failures is possible while the receiver was down: resume.
    manager
        .post(&format!("/hooks/{id}/resume"), &json!({}))
        .await
        .expect(200);
    let alert = frames_of(&mut ws, "custom.big_spender", 1).await;
    assert_eq!(alert[0]["data"]["net"], 75000);
    let done = wait_binding(&manager, &id, "delivered after the outage", |b| {
        b["delivered"] == 3 && b["failures"] == 0
    })
    .await;
    assert_eq!(done["last_error"], Value::Null);
    assert_eq!(receiver.texts().len(), 2, "{:?}", receiver.texts());
}

async fn failing_hooks_are_quarantined_while_writes_stay_fast(backend: Backend) {
    // The CPU deadline of every call of the recorder; a write must never wait for it.
    const HOOK_CPU_MS: u64 = 1000;
    const WRITES: usize = 10;
    let srv = crate::start_with(backend, FAST_RETRIES).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    install_recorder(&srv).await;
    srv.admin()
        .send(
            Method::PUT,
            "/admin/plugins/test-hook-recorder/limits",
            Body::Json(json!({"cpu_ms": HOOK_CPU_MS, "memory_mb": 32})),
            &[],
        )
        .await
        .expect(200);
    let only_orders = json!(["new_order"]);
    let trap = bind(
        &manager,
        json!({"plugin": "test-hook-recorder", "events": only_orders,
        "config": {"mode": "trap", "emit_kind": "trap_ok"}}),
    )
    .await;
    let spin = bind(
        &manager,
        json!({"plugin": "test-hook-recorder", "events": only_orders,
        "config": {"mode": "spin", "emit_kind": "spin_ok"}}),
    )
    .await;
    let flaky = bind(
        &manager,
        json!({"plugin": "test-hook-recorder", "events": only_orders,
        "config": {"mode": "error", "fail_times": 2, "emit_kind": "flaky_ok"}}),
    )
    .await;
    let healthy = bind(
        &manager,
        json!({"plugin": "test-hook-recorder", "events": only_orders}),
    )
    .await;
    // Answers with an action the host refuses: as much a failure as a trap.
    let invalid = bind(
        &manager,
        json!({"plugin": "test-hook-recorder", "events": only_orders,
               "config": {"emit_kind": "Not A Kind"}}),
    )
    .await;
    let cursor_before = trap["cursor"].as_i64().unwrap();
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;

    // Writes while two hooks trap and spin: each completes well under the hook's deadline,
    // and terminals get every event.
    for i in 0..WRITES {
        let started = Instant::now();
        create_order(&manager, &format!("w-{i}")).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(HOOK_CPU_MS),
            "write {i} took {took:?} while hooks misbehave"
        );
    }
    // The healthy binding and the flaky one (after its retries) receive every event.
    let mut order_seqs = Vec::new();
    let mut seen = Vec::new();
    let mut flaky_seen = Vec::new();
    let deadline = Instant::now() + DELIVERY;
    while order_seqs.len() < WRITES || seen.len() < WRITES || flaky_seen.len() < WRITES {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        match frame["type"].as_str() {
            Some("new_order") => order_seqs.push(frame["seq"].as_i64().unwrap()),
            Some("custom.seen") => seen.push(frame["data"]["seq"].as_i64().unwrap()),
            Some("custom.flaky_ok") => flaky_seen.push(frame["data"]["seq"].as_i64().unwrap()),
            Some("custom.trap_ok" | "custom.spin_ok") => panic!("a failing hook emitted: {frame}"),
            _ => {}
        }
    }
    assert_eq!(seen, order_seqs);
    assert_eq!(flaky_seen, order_seqs, "retried in order, none skipped");
    for b in [&healthy, &flaky] {
        let id = b["id"].as_str().unwrap();
        wait_binding(&manager, id, "every event delivered", |b| {
            b["delivered"] == WRITES as i64 && b["status"] == "active"
        })
        .await;
    }

    // The trapping and the spinning bindings fail the later events too (binding-wide, not a
    // poison event): quarantined at the first event, cursor unmoved, nothing dead-lettered;
    // the plugin itself keeps serving the other bindings.
    for (b, reason) in [
        (&trap, "wasm trap"),
        (&spin, "time limit"),
        (&invalid, "invalid action: custom event kind"),
    ] {
        let id = b["id"].as_str().unwrap();
        let q = wait_binding(&manager, id, "quarantine", |b| b["status"] == "quarantined").await;
        assert_eq!(q["failures"], 3, "{q}");
        assert_eq!(q["cursor"], cursor_before, "{q}");
        assert_eq!(q["delivered"], 0, "{q}");
        assert!(
            q["last_error"].as_str().unwrap().contains(reason),
            "{reason}: {q}"
        );
    }
    let dead = srv.admin().get("/admin/dead-letters?kind=hook").await;
    assert_eq!(dead.expect(200)["items"], json!([]), "{}", dead.text);
    let plugin = srv
        .admin()
        .get("/admin/plugins/test-hook-recorder")
        .await
        .expect(200)
        .clone();
    assert_eq!(plugin["state"], "active", "{plugin}");

    // Fixed and resumed: the held events are delivered from the same cursor, in order.
    let trap_id = trap["id"].as_str().unwrap();
    patch(
        &manager,
        trap_id,
        json!({"config": {"emit_kind": "trap_ok"}}),
    )
    .await
    .expect(200);
    let resumed = manager
        .post(&format!("/hooks/{trap_id}/resume"), &json!({}))
        .await;
    assert_eq!(resumed.expect(200)["status"], "active");
    let held = frames_of(&mut ws, "custom.trap_ok", WRITES).await;
    let held: Vec<i64> = held
        .iter()
        .map(|f| f["data"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(held, order_seqs);
    let spin_id = spin["id"].as_str().unwrap();
    assert_eq!(binding(&manager, spin_id).await["status"], "quarantined");
}

async fn kill9_loses_and_repeats_nothing(backend: Backend) {
    const WRITES: usize = 30;
    let mut srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    install_recorder(&srv).await;
    let hook = bind(
        &srv.manager(&kitchen),
        json!({"plugin": "test-hook-recorder", "events": ["new_order"]}),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let mut order_seqs = BTreeSet::new();
    for i in 0..WRITES {
        let manager = srv.manager(&kitchen);
        create_order(&manager, &format!("k-{i}")).await;
    }
    let ws_before = last_seq(&srv.terminal(&kitchen)).await;
    let pid = srv.pid().expect("server running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -9 {pid}");
    assert!(!srv.wait_exit().await.success());

    srv.start_again().await;
    let manager = srv.manager(&kitchen);
    wait_binding(
        &manager,
        &id,
        "every event delivered after the restart",
        |b| b["delivered"] == WRITES as i64,
    )
    .await;
    // Replay the whole log: every order's event was delivered exactly once.
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, Some(0)).await;
    ws.hello().await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + DELIVERY;
    while seen.len() < WRITES {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        match frame["type"].as_str() {
            Some("new_order") => {
                order_seqs.insert(frame["seq"].as_i64().unwrap());
            }
            Some("custom.seen") => seen.push(frame["data"]["seq"].as_i64().unwrap()),
            _ => {}
        }
    }
    assert!(*order_seqs.last().unwrap() <= ws_before);
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a delivery repeated: {seen:?}");
    assert_eq!(unique, order_seqs, "every order delivered");
    let b = binding(&manager, &id).await;
    assert_eq!(b["delivered"], WRITES as i64, "{b}");
}

/// The whole loop: a sale crosses a WHALE rule, the rules engine appends `tier_unlocked`, the
/// bundled big-spender-alert posts to the Slack-style receiver, tags the customer and tells
/// the terminals; a REGULAR unlock of another customer stays quiet.
async fn big_spender_alert_on_a_whale_unlock(backend: Backend) {
    let (srv, kitchen, manager, till, receiver) = big_spender_setup(backend).await;
    for (name, threshold, tier, priority) in [
        ("Whales", 100_000, "WHALE", 1),
        ("Regulars", 5_000, "REGULAR", 2),
    ] {
        manager
            .post(
                "/pos/rules/downtown",
                &json!({"name": name, "threshold": threshold, "tier": tier, "priority": priority}),
            )
            .await
            .expect(201);
    }
    let hook = bind(
        &manager,
        json!({"plugin": "big-spender-alert", "events": ["tier_unlocked"],
               "config": {"webhook_url": receiver.url()}}),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;

    let regular = json!({"venue": "downtown", "transactions": [{
        "id": "r-1", "occurred_at": "2026-11-20T19:00:00Z", "total": 6_000, "currency": "USD",
        "customer_phone": "+15550100188"}]});
    till.post("/transactions", &regular).await.expect(200);
    till.post("/transactions", &sale("w-1", 120_000))
        .await
        .expect(200);
    let alert = frames_of(&mut ws, "custom.big_spender", 1).await;
    let data = &alert[0]["data"];
    assert_eq!(data["reason"], "tier_unlocked", "{data}");
    assert_eq!(data["tier"], "WHALE");
    assert_eq!(data["customer"]["phone"], "+15550100199");
    assert_eq!(data["lifetime_spend"], 120_000);
    wait_binding(&manager, &id, "both unlocks delivered", |b| {
        b["delivered"] == 2
    })
    .await;
    assert_eq!(
        receiver.texts(),
        vec![":whale: ••••0199 unlocked WHALE at downtown (lifetime spend 1200.00 USD)"],
        "one alert, for the WHALE only"
    );
    let whale = manager
        .get(&format!(
            "/customers/{}",
            posbridge_harness::enc("+15550100199")
        ))
        .await;
    assert_eq!(whale.expect(200)["tags"], json!(["big-spender"]));
    assert_eq!(whale.body["tier"], "WHALE");
    let regular = manager
        .get(&format!(
            "/customers/{}",
            posbridge_harness::enc("+15550100188")
        ))
        .await;
    assert_eq!(regular.expect(200)["tags"], json!([]));
}

/// The hook binding's row as stored: (`config`, `config_key_id`, whether sealed bytes exist).
async fn stored_config(srv: &TestServer, id: &str) -> (String, Option<String>, bool) {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(srv.database_url())
        .await
        .expect("connect to the server's database");
    let row: (String, Option<String>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT config, config_key_id, config_sealed FROM hook_bindings WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .expect("the binding's row");
    db.close().await;
    (row.0, row.1, row.2.is_some())
}

/// A binding's configuration (here the Slack webhook URL, a credential) is sealed at rest:
/// not in the row, not in any database file, yet returned to managers and handed to the
/// hook. A row stored in plaintext before sealing is sealed when the server starts, and
/// `vault rotate` re-seals configurations under the new key.
async fn hook_configs_are_sealed_at_rest(backend: Backend) {
    let (mut srv, kitchen, manager, till, receiver) = big_spender_setup(backend).await;
    let secret_path = "services/T0/B0/secret";
    let config = json!({"webhook_url": receiver.url(), "min_sale": 50000});
    let hook = bind(
        &manager,
        json!({"plugin": "big-spender-alert", "config": config}),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(
        hook["config"], config,
        "managers get the configuration back"
    );
    let (plain, key_id, sealed) = stored_config(&srv, &id).await;
    assert_eq!((plain.as_str(), sealed), ("", true), "stored sealed");
    let first_key = key_id.expect("a key id beside the sealed config");
    if backend == Backend::Sqlite {
        let holders = crate::files_containing(srv.dir(), secret_path.as_bytes());
        assert!(
            holders.is_empty(),
            "{holders:?} hold the webhook URL in the clear"
        );
    }

    // The hook still gets its configuration: the alert reaches the webhook URL.
    till.post("/transactions", &sale("big-1", 60000))
        .await
        .expect(200);
    eventually(
        DELIVERY,
        "the alert posted to the configured URL",
        || async { (receiver.texts().len() == 1).then_some(()) },
    )
    .await;

    // A changed configuration is sealed again.
    let changed = json!({"webhook_url": receiver.url(), "min_sale": 70000});
    patch(&manager, &id, json!({"config": changed}))
        .await
        .expect(200);
    assert_eq!(binding(&manager, &id).await["config"], changed);
    let (plain, _, sealed) = stored_config(&srv, &id).await;
    assert_eq!((plain.as_str(), sealed), ("", true));

    // A row as stored before sealing existed: plaintext, no key. The next start seals it.
    let legacy = json!({"webhook_url": receiver.url(), "min_sale": 80000});
    {
        let db = sqlx::AnyPool::connect(srv.database_url()).await.unwrap();
        sqlx::query(
            "UPDATE hook_bindings SET config = $1, config_key_id = NULL, config_sealed = NULL WHERE id = $2",
        )
        .bind(legacy.to_string())
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();
        db.close().await;
    }
    srv.restart().await;
    // The restarted server listens on a new port.
    let (manager, till) = (srv.manager(&kitchen), srv.terminal(&kitchen));
    let (plain, key_id, sealed) = stored_config(&srv, &id).await;
    assert_eq!((plain.as_str(), sealed), ("", true), "sealed at start");
    assert_eq!(key_id.as_deref(), Some(first_key.as_str()));
    assert_eq!(binding(&manager, &id).await["config"], legacy);

    // Rotation moves it to a new key, and the running server still opens it.
    let rotated = srv.cli(&["vault", "rotate"]).await;
    assert!(rotated.status.success(), "vault rotate: {}", rotated.stderr);
    let (_, key_id, sealed) = stored_config(&srv, &id).await;
    assert!(sealed);
    assert_ne!(key_id.as_deref(), Some(first_key.as_str()), "re-sealed");
    assert_eq!(binding(&manager, &id).await["config"], legacy);
    till.post("/transactions", &sale("big-2", 90000))
        .await
        .expect(200);
    eventually(DELIVERY, "an alert after the rotation", || async {
        (receiver.texts().len() == 2).then_some(())
    })
    .await;
}

both_backends!(
    bindings_api,
    big_spender_alert_on_a_whale_unlock,
    events_reach_hooks_in_order,
    big_spender_alert_posts_to_the_webhook,
    failing_hooks_are_quarantined_while_writes_stay_fast,
    hook_configs_are_sealed_at_rest,
    kill9_loses_and_repeats_nothing
);
