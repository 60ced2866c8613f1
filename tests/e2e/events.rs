//! The event log and `/ws/pos/{tenant}`: hello, ordered events, resume with `since`,
//! reset after pruning, tenant isolation, authentication, pos-status, revocation.

use std::time::Duration;

use posbridge_harness::tokio_tungstenite::tungstenite::Message;
use posbridge_harness::{
    both_backends, enc, eventually, parse_rfc3339, ws_refusal_status, Backend, Client, Ws,
};
use serde_json::{json, Value};

use crate::{last_seq, order_body, report_body};

const PHONE: &str = "+15550100199";

/// Adds 10 points to [`PHONE`] (one `loyalty_updated` event) and returns the answer.
async fn add_ten(client: &Client) -> Value {
    let resp = client
        .post(
            &format!("/loyalty/{}/add", enc(PHONE)),
            &json!({"points": 10}),
        )
        .await;
    resp.expect(200).clone()
}

/// Asserts `frames` are events with seqs `first..first+len` in order and returns them.
#[track_caller]
fn assert_seqs(frames: &[Value], first: i64) {
    let seqs: Vec<i64> = frames
        .iter()
        .map(|f| {
            f["seq"]
                .as_i64()
                .unwrap_or_else(|| panic!("not an event frame: {f}"))
        })
        .collect();
    let expected: Vec<i64> = (first..first + frames.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "event seqs out of order, missing or repeated"
    );
}

/// Asserts each frame is a `loyalty_updated` event whose points equal 10 × seq (what
/// [`add_ten`] produces when those are the tenant's only events).
#[track_caller]
fn assert_loyalty_frames(frames: &[Value]) {
    for f in frames {
        assert_eq!(f["type"], "loyalty_updated", "{f}");
        let seq = f["seq"].as_i64().expect("seq");
        assert_eq!(
            f["data"]["points"],
            seq * 10,
            "event data must match its write: {f}"
        );
        assert_eq!(f["data"]["phone"], PHONE);
        parse_rfc3339(f["at"].as_str().expect("at"));
    }
}

async fn event_stream_order(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);

    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    let hello = ws.hello().await;
    assert_eq!(hello["tenant"], "kitchen");
    assert_eq!(hello["last_seq"], 0);

    let order = manager
        .post("/orders", &order_body("web-1", "online"))
        .await;
    let order = order.expect(201).clone();
    let order_id = order["id"].as_str().expect("id").to_owned();
    let accepted = till
        .post(
            &format!("/orders/{order_id}/status"),
            &json!({"status": "accepted"}),
        )
        .await;
    accepted.expect(200);
    // Re-setting the same status and refused writes append nothing.
    till.post(
        &format!("/orders/{order_id}/status"),
        &json!({"status": "accepted"}),
    )
    .await
    .expect(200);
    till.post(
        &format!("/orders/{order_id}/status"),
        &json!({"status": "completed"}),
    )
    .await
    .expect_error(409, "invalid_transition");
    let card = manager
        .post("/gift-cards", &json!({"code": "EVT-1", "amount": 1000}))
        .await;
    let card = card.expect(201).clone();
    let deduct = till
        .post(
            "/gift-cards/EVT-1/deduct",
            &json!({"amount": 300, "order_id": order_id}),
        )
        .await;
    let deduct = deduct.expect(200).clone();
    till.post("/gift-cards/EVT-1/deduct", &json!({"amount": 5000}))
        .await
        .expect_error(422, "insufficient_funds");
    let loyalty = till
        .post(
            &format!("/loyalty/{}/add", enc("(555) 010-0199")),
            &json!({"points": 25, "order_id": order_id, "reason": "order"}),
        )
        .await;
    let loyalty = loyalty.expect(200).clone();
    let report = till
        .post("/reports/daily", &report_body("2026-11-20", 5000, "eod"))
        .await;
    report.expect(201);

    let frames = ws.collect(6).await;
    assert_seqs(&frames, 1);
    let types: Vec<&str> = frames
        .iter()
        .map(|f| f["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        vec![
            "new_order",
            "order_updated",
            "gift_card_purchased",
            "gift_card_redeemed",
            "loyalty_updated",
            "daily_report_uploaded"
        ]
    );
    for f in &frames {
        parse_rfc3339(f["at"].as_str().expect("at"));
    }
    assert_eq!(frames[0]["data"]["id"], order_id.as_str());
    assert_eq!(frames[0]["data"]["status"], "pending");
    assert_eq!(frames[0]["data"]["total"], 2573);
    assert_eq!(frames[1]["data"]["id"], order_id.as_str());
    assert_eq!(frames[1]["data"]["status"], "accepted");
    assert_eq!(frames[2]["data"]["code"], "EVT-1");
    assert_eq!(frames[2]["data"]["transaction_id"], card["transaction_id"]);
    let redeemed = &frames[3]["data"];
    assert_eq!(redeemed["code"], "EVT-1");
    assert_eq!(redeemed["order_id"], order_id.as_str());
    assert_eq!(redeemed["transaction_id"], deduct["transaction_id"]);
    assert!(
        redeemed["amount"] == 300
            || redeemed["amount"] == -300
            || redeemed["amount"]["amount"] == 300,
        "gift_card_redeemed amount: {redeemed}"
    );
    assert!(
        redeemed["balance"] == 700 || redeemed["balance"]["amount"] == 700,
        "gift_card_redeemed balance: {redeemed}"
    );
    let points = &frames[4]["data"];
    assert_eq!(points["phone"], PHONE);
    assert_eq!(points["points"], 25);
    assert_eq!(points["lifetime_points"], 25);
    assert_eq!(points["change"], 25);
    assert_eq!(points["kind"], "add");
    assert_eq!(points["reason"], "order");
    assert_eq!(points["order_id"], order_id.as_str());
    assert_eq!(points["transaction_id"], loyalty["transaction_id"]);
    assert_eq!(frames[5]["data"]["report_date"], "2026-11-20");
    assert_eq!(frames[5]["data"]["revision"], 1);

    // A manager's socket sees the same log, and a new socket starts from the current seq.
    let mut late = srv.ws("kitchen", &kitchen.manager.key, None).await;
    assert_eq!(late.hello().await["last_seq"], 6);
    let refund = till
        .post(
            &format!("/loyalty/{}/redeem", enc(PHONE)),
            &json!({"points": 5}),
        )
        .await;
    refund.expect(200);
    let next = ws.next_json().await;
    let late_next = late.next_json().await;
    assert_eq!(next["seq"], 7);
    assert_eq!(next["data"]["kind"], "redeem");
    assert_eq!(next["data"]["change"], -5);
    assert_eq!(late_next, next, "every socket gets the same frame");
}

async fn resume_since(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);

    let mut ws1 = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    assert_eq!(ws1.hello().await["last_seq"], 0);
    for _ in 0..3 {
        add_ten(&till).await;
    }
    let seen = ws1.collect(3).await;
    assert_seqs(&seen, 1);
    assert_loyalty_frames(&seen);
    ws1.close().await;

    // Missed while disconnected.
    for _ in 0..4 {
        add_ten(&till).await;
    }

    let mut ws2 = srv.ws("kitchen", &kitchen.terminal.key, Some(3)).await;
    assert_eq!(ws2.hello().await["last_seq"], 7);
    let missed = ws2.collect(4).await;
    assert_seqs(&missed, 4);
    assert_loyalty_frames(&missed);
    // Then live, without repeating anything.
    add_ten(&till).await;
    add_ten(&till).await;
    let live = ws2.collect(2).await;
    assert_seqs(&live, 8);
    assert_loyalty_frames(&live);

    // since=0 replays everything; since = last_seq replays nothing and goes live.
    let mut all = srv.ws("kitchen", &kitchen.terminal.key, Some(0)).await;
    assert_eq!(all.hello().await["last_seq"], 9);
    let everything = all.collect(9).await;
    assert_seqs(&everything, 1);
    let mut current = srv.ws("kitchen", &kitchen.terminal.key, Some(9)).await;
    current.hello().await;
    add_ten(&till).await;
    assert_eq!(current.next_json().await["seq"], 10);
    assert_eq!(all.next_json().await["seq"], 10);
    assert_eq!(ws2.next_json().await["seq"], 10);

    // since beyond last_seq → reset to the current seq, then live.
    let mut ahead = srv.ws("kitchen", &kitchen.terminal.key, Some(1000)).await;
    assert_eq!(ahead.hello().await["last_seq"], 10);
    let reset = ahead.next_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["last_seq"], 10);
    add_ten(&till).await;
    assert_eq!(ahead.next_json().await["seq"], 11);
}

async fn resume_during_writes(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    for _ in 0..5 {
        add_ten(&till).await;
    }

    // A writer keeps appending while terminals reconnect from seq 5.
    const WRITES: i64 = 40;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = {
        let till = till.clone();
        tokio::spawn(async move {
            let mut started = Some(started_tx);
            for i in 0..WRITES {
                add_ten(&till).await;
                if i == 5 {
                    if let Some(tx) = started.take() {
                        let _ = tx.send(());
                    }
                }
            }
        })
    };
    started_rx.await.expect("writer started");
    let mut sockets: Vec<Ws> = Vec::new();
    for _ in 0..3 {
        let mut ws = srv.ws("kitchen", &kitchen.terminal.key, Some(5)).await;
        ws.hello().await;
        sockets.push(ws);
    }
    writer.await.expect("writer");
    let last = 5 + WRITES;
    assert_eq!(last_seq(&till).await, last);
    for ws in &mut sockets {
        let frames = ws.collect(usize::try_from(WRITES).unwrap()).await;
        assert_seqs(&frames, 6);
        assert_loyalty_frames(&frames);
    }
    // Nothing further is pending on any socket: the next frame is the next write.
    add_ten(&till).await;
    for ws in &mut sockets {
        assert_eq!(ws.next_json().await["seq"], last + 1);
    }
}

async fn history_reset(backend: Backend) {
    let srv = crate::start_with(backend, &["--event-history", "4"]).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    for _ in 0..70 {
        add_ten(&till).await;
    }
    assert_eq!(last_seq(&till).await, 70);

    // Recent history is still replayed.
    let mut recent = srv.ws("kitchen", &kitchen.terminal.key, Some(66)).await;
    assert_eq!(recent.hello().await["last_seq"], 70);
    let frames = recent.collect(4).await;
    assert_seqs(&frames, 67);
    assert_loyalty_frames(&frames);

    // Older than what is retained → reset, then live.
    let mut old = srv.ws("kitchen", &kitchen.terminal.key, Some(1)).await;
    assert_eq!(old.hello().await["last_seq"], 70);
    let reset = old.next_json().await;
    assert_eq!(
        reset["type"], "reset",
        "since=1 after pruning must reset: {reset}"
    );
    assert_eq!(reset["last_seq"], 70);
    let mut zero = srv.ws("kitchen", &kitchen.terminal.key, Some(0)).await;
    zero.hello().await;
    let reset = zero.next_json().await;
    assert_eq!(
        reset["type"], "reset",
        "since=0 after pruning must reset: {reset}"
    );
    assert_eq!(reset["last_seq"], 70);

    add_ten(&till).await;
    for ws in [&mut recent, &mut old, &mut zero] {
        let f = ws.next_json().await;
        assert_eq!(f["seq"], 71);
        assert_eq!(f["type"], "loyalty_updated");
    }
}

async fn tenant_isolation(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;
    let k_till = srv.terminal(&kitchen);
    let b_till = srv.terminal(&bakery);

    let mut k_ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    assert_eq!(k_ws.hello().await["tenant"], "kitchen");
    let mut b_ws = srv.ws("bakery", &bakery.terminal.key, Some(0)).await;
    let b_hello = b_ws.hello().await;
    assert_eq!(b_hello["tenant"], "bakery");
    assert_eq!(b_hello["last_seq"], 0);

    for _ in 0..3 {
        add_ten(&k_till).await;
    }
    srv.manager(&kitchen)
        .post("/orders", &order_body("k-1", "online"))
        .await
        .expect(201);
    let k_frames = k_ws.collect(4).await;
    assert_seqs(&k_frames, 1);

    // Kitchen's events were fanned out before bakery's write; sockets are FIFO, so if any
    // had leaked to bakery's socket it would arrive before bakery's own event.
    b_till
        .post(
            &format!("/loyalty/{}/add", enc("+15550100777")),
            &json!({"points": 99}),
        )
        .await
        .expect(200);
    let b_first = b_ws.next_json().await;
    assert_eq!(
        b_first["seq"], 1,
        "bakery's first event is its own seq 1: {b_first}"
    );
    assert_eq!(b_first["data"]["phone"], "+15550100777");
    assert_eq!(b_first["data"]["points"], 99);
    // And the other way round.
    add_ten(&k_till).await;
    let k_next = k_ws.next_json().await;
    assert_eq!(k_next["seq"], 5);
    assert_eq!(k_next["data"]["phone"], PHONE);

    // Seqs are per tenant.
    assert_eq!(last_seq(&k_till).await, 5);
    assert_eq!(last_seq(&b_till).await, 1);

    // A replay from 0 on bakery contains only bakery's event.
    let mut b_replay = srv.ws("bakery", &bakery.manager.key, Some(0)).await;
    b_replay.hello().await;
    assert_eq!(b_replay.next_json().await, b_first);
    b_till
        .post(
            &format!("/loyalty/{}/add", enc("+15550100777")),
            &json!({"points": 1}),
        )
        .await
        .expect(200);
    assert_eq!(b_replay.next_json().await["seq"], 2);
}

async fn ws_auth(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;

    // A plain GET (no upgrade) with a good key: a JSON error saying a WebSocket is needed.
    srv.anon()
        .with_header("X-API-Key", &kitchen.terminal.key)
        .with_header("X-Tenant-ID", "kitchen")
        .get("/ws/pos/kitchen")
        .await
        .expect_error(426, "websocket_required");

    // No key, unknown key → 401.
    let err = srv
        .ws_connect("/ws/pos/kitchen", &[])
        .await
        .expect_err("a socket without a key must be refused");
    assert_eq!(ws_refusal_status(&err), Some(401), "{err}");
    let err = srv
        .ws_connect(
            "/ws/pos/kitchen",
            &[
                ("X-API-Key", "pbk_unknownunknownunknown"),
                ("X-Tenant-ID", "kitchen"),
            ],
        )
        .await
        .expect_err("unknown key");
    assert_eq!(ws_refusal_status(&err), Some(401), "{err}");
    // Another tenant's key, or a mismatching X-Tenant-ID → 403.
    let err = srv
        .ws_connect(
            "/ws/pos/kitchen",
            &[
                ("X-API-Key", &bakery.terminal.key),
                ("X-Tenant-ID", "kitchen"),
            ],
        )
        .await
        .expect_err("other tenant's key");
    assert_eq!(ws_refusal_status(&err), Some(403), "{err}");
    let err = srv
        .ws_connect(
            "/ws/pos/kitchen",
            &[
                ("X-API-Key", &kitchen.terminal.key),
                ("X-Tenant-ID", "bakery"),
            ],
        )
        .await
        .expect_err("tenant mismatch");
    assert_eq!(ws_refusal_status(&err), Some(403), "{err}");

    // Subprotocol authentication: the server selects posbridge.v1.
    let protocols = format!("posbridge.v1, key.{}", kitchen.terminal.key);
    let mut ws = srv
        .ws_connect("/ws/pos/kitchen", &[("Sec-WebSocket-Protocol", &protocols)])
        .await
        .expect("subprotocol auth");
    assert_eq!(
        ws.response_headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("posbridge.v1")
    );
    assert_eq!(ws.hello().await["tenant"], "kitchen");
    let bad_protocols = format!("posbridge.v1, key.{}", bakery.terminal.key);
    let err = srv
        .ws_connect(
            "/ws/pos/kitchen",
            &[("Sec-WebSocket-Protocol", &bad_protocols)],
        )
        .await
        .expect_err("other tenant's key in the subprotocol");
    assert_eq!(ws_refusal_status(&err), Some(403), "{err}");

    // Bearer works too, and the socket is live.
    let bearer = format!("Bearer {}", kitchen.manager.key);
    let mut ws_bearer = srv
        .ws_connect("/ws/pos/kitchen", &[("Authorization", &bearer)])
        .await
        .expect("bearer auth");
    ws_bearer.hello().await;
    add_ten(&srv.terminal(&kitchen)).await;
    assert_eq!(ws.next_json().await["seq"], 1);
    assert_eq!(ws_bearer.next_json().await["seq"], 1);
}

async fn pos_status(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);

    let status = till.get("/pos-status").await;
    assert_eq!(status.expect(200)["tenant"], "kitchen");
    assert_eq!(status.body["last_seq"], 0);
    assert_eq!(status.body["terminals"], json!([]));

    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;
    let entry = eventually(
        Duration::from_secs(10),
        "the terminal to appear in pos-status",
        || async {
            let resp = till.get("/pos-status").await;
            resp.expect(200)["terminals"]
                .as_array()
                .and_then(|ts| {
                    ts.iter()
                        .find(|t| t["key_id"] == kitchen.terminal.id.as_str())
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(entry["label"], "till 1");
    assert_eq!(entry["role"], "terminal");
    parse_rfc3339(entry["connected_at"].as_str().expect("connected_at"));
    assert!(entry["last_seq"].is_i64(), "{entry}");
    assert!(
        entry["remote_addr"]
            .as_str()
            .is_some_and(|a| a.contains("127.0.0.1")),
        "{entry}"
    );

    // It follows the stream: after an event is delivered, last_seq moves on.
    add_ten(&till).await;
    assert_eq!(ws.next_json().await["seq"], 1);
    eventually(
        Duration::from_secs(10),
        "pos-status to show seq 1 for the terminal",
        || async {
            let resp = till.get("/pos-status").await;
            let body = resp.expect(200).clone();
            let t = body["terminals"]
                .as_array()?
                .iter()
                .find(|t| t["key_id"] == kitchen.terminal.id.as_str())?
                .clone();
            (body["last_seq"] == 1 && t["last_seq"] == 1).then_some(())
        },
    )
    .await;

    // Other tenants' terminals are not listed.
    let bakery = srv.setup_tenant("bakery").await;
    let mut b_ws = srv.ws("bakery", &bakery.terminal.key, None).await;
    b_ws.hello().await;
    let b_status = eventually(Duration::from_secs(10), "bakery's terminal", || async {
        let resp = srv.terminal(&bakery).get("/pos-status").await;
        let ts = resp.expect(200)["terminals"].as_array()?.clone();
        (!ts.is_empty()).then_some(ts)
    })
    .await;
    assert_eq!(b_status.len(), 1);
    assert_eq!(b_status[0]["key_id"], bakery.terminal.id.as_str());
    let k_status = till.get("/pos-status").await;
    let k_terminals = k_status.expect(200)["terminals"]
        .as_array()
        .expect("terminals");
    assert_eq!(k_terminals.len(), 1, "{}", k_status.text);

    // Disconnecting removes it.
    ws.close().await;
    until_no_terminal(&till).await;
}

/// Waits (up to 10 s) until `pos-status` lists no connected terminal.
async fn until_no_terminal(till: &Client) {
    eventually(
        Duration::from_secs(10),
        "the terminal to leave pos-status",
        || async {
            let resp = till.get("/pos-status").await;
            resp.expect(200)["terminals"]
                .as_array()
                .is_some_and(|ts| ts.is_empty())
                .then_some(())
        },
    )
    .await;
}

async fn revoked_socket(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let mut till_ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    till_ws.hello().await;
    let mut mgr_ws = srv.ws("kitchen", &kitchen.manager.key, None).await;
    mgr_ws.hello().await;

    srv.admin()
        .delete(&format!(
            "/admin/tenants/kitchen/keys/{}",
            kitchen.terminal.id
        ))
        .await
        .expect(204);
    let code = till_ws.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, Some(4003), "a revoked key's socket closes with 4003");

    let err = srv
        .ws_connect(
            "/ws/pos/kitchen",
            &[
                ("X-API-Key", &kitchen.terminal.key),
                ("X-Tenant-ID", "kitchen"),
            ],
        )
        .await
        .expect_err("revoked key must not connect");
    assert_eq!(ws_refusal_status(&err), Some(401), "{err}");

    // The other key's socket is untouched.
    add_ten(&srv.manager(&kitchen)).await;
    assert_eq!(mgr_ws.next_json().await["seq"], 1);
}

async fn slow_consumer(backend: Backend) {
    let srv = crate::start_with(backend, &["--ws-queue", "2"]).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let mut slow = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    slow.hello().await;

    // The reader stops reading while large events pile up: once the socket buffers are
    // full the server's queue of 2 overflows and it must close with 4000.
    const ORDERS: i64 = 40;
    // ~400 KiB per event: 500 items with long names and notes (the server's limits).
    let items: Vec<Value> = (0..500)
        .map(|i| {
            json!({
                "name": format!("{i:03}{}", "n".repeat(197)),
                "quantity": 1,
                "unit_price": 1,
                "notes": "x".repeat(500),
            })
        })
        .collect();
    for i in 0..ORDERS {
        let body = json!({
            "external_id": format!("big-{i}"),
            "items": items,
            "subtotal": 500, "tax": 0, "tip": 0, "discount": 0, "total": 500,
        });
        manager.post("/orders", &body).await.expect(201);
    }

    // Drain what was delivered: events in order, then the close.
    let mut last_seen = 0;
    let code = loop {
        match slow.next_message(Duration::from_secs(30)).await {
            Some(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                assert_eq!(frame["seq"], last_seen + 1, "in order, no gaps");
                last_seen += 1;
            }
            Some(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(code, Some(4000), "a slow reader is closed with 4000");
    assert!(last_seen < ORDERS, "the reader was cut off before the end");

    // It resumes with since and gets exactly the rest.
    let mut resumed = srv
        .ws("kitchen", &kitchen.terminal.key, Some(last_seen))
        .await;
    assert_eq!(resumed.hello().await["last_seq"], ORDERS);
    let rest = resumed
        .collect(usize::try_from(ORDERS - last_seen).unwrap())
        .await;
    assert_seqs(&rest, last_seen + 1);
    assert!(rest.iter().all(|f| f["type"] == "new_order"));
}

/// One commit with far more events than the fan-out's queue (`--ws-queue 2`): the fan-out
/// falls behind the hub, so most events never reach it live. The socket must still get
/// every one (re-read from the log), in order, once each, and stay open.
async fn burst_beyond_the_queue(backend: Backend) {
    let srv = crate::start_with(backend, &["--ws-queue", "2"]).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    crate::connect_local_pos(&manager, "main").await;
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    let base = ws.hello().await["last_seq"].as_i64().expect("last_seq");

    let sales: Vec<Value> = (0..40)
        .map(|i| {
            json!({"id": format!("burst-{i}"), "occurred_at": "2026-11-20T19:00:00Z",
                   "total": 100 + i, "subtotal": 100 + i, "currency": "USD", "tender": "card",
                   "customer_phone": format!("+1555010{:04}", 1000 + i)})
        })
        .collect();
    let resp = till
        .post(
            "/transactions",
            &json!({"venue": "main", "transactions": sales}),
        )
        .await;
    assert_eq!(resp.expect(200)["created"], 40, "{}", resp.text);
    let head = last_seq(&till).await;
    assert!(
        head >= base + 40,
        "one event per sale at least: {base}..{head}"
    );

    let frames = ws
        .collect(usize::try_from(head - base).expect("positive"))
        .await;
    assert_seqs(&frames, base + 1);
    // Still open and live: the next event arrives too.
    add_ten(&till).await;
    assert_eq!(ws.next_json().await["seq"], head + 1);
}

/// A terminal that closes its socket gets the server's answering close frame (RFC 6455
/// §5.5.1), and the server forgets the socket.
async fn client_close_is_answered(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;
    assert_eq!(ws.close_handshake().await, Some(1000));
    until_no_terminal(&till).await;
}

both_backends!(
    client_close_is_answered,
    burst_beyond_the_queue,
    slow_consumer,
    event_stream_order,
    resume_since,
    resume_during_writes,
    history_reset,
    tenant_isolation,
    ws_auth,
    pos_status,
    revoked_socket,
);
