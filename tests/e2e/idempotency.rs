//! `Idempotency-Key`: replays return the first answer and change nothing, a reused key
//! with another request is refused, failures are not stored, and keys survive a restart.

use posbridge_harness::{both_backends, Backend};
use serde_json::json;

use crate::{balance, last_seq, order_body};

const REPLAYED: &str = "idempotent-replayed";

async fn idempotent_replays(backend: Backend) {
    let mut srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);

    // Issue (server-generated code): the replay names the same card.
    let issue = json!({"amount": 1000});
    let first = manager.post_idem("/gift-cards", &issue, "issue-1").await;
    first.expect(201);
    assert_eq!(
        first.header(REPLAYED),
        None,
        "a first answer is not a replay"
    );
    let code = first.body["code"].as_str().expect("code").to_owned();
    let seq_after_issue = last_seq(&manager).await;
    let again = manager.post_idem("/gift-cards", &issue, "issue-1").await;
    again.expect(201);
    assert_eq!(again.header(REPLAYED), Some("true"));
    assert_eq!(again.body, first.body, "replay must return the first body");
    assert_eq!(
        last_seq(&manager).await,
        seq_after_issue,
        "a replay emits no event"
    );
    // Same key, different body → 422.
    manager
        .post_idem("/gift-cards", &json!({"amount": 2000}), "issue-1")
        .await
        .expect_error(422, "idempotency_key_reused");

    // Deduct twice with one key: one effect.
    let deduct_path = format!("/gift-cards/{code}/deduct");
    let deduct = json!({"amount": 100, "order_id": "o-1"});
    let d1 = till.post_idem(&deduct_path, &deduct, "deduct-1").await;
    assert_eq!(d1.expect(200)["balance"]["amount"], 900);
    assert_eq!(d1.header(REPLAYED), None);
    let d2 = till.post_idem(&deduct_path, &deduct, "deduct-1").await;
    d2.expect(200);
    assert_eq!(d2.header(REPLAYED), Some("true"));
    assert_eq!(d2.body, d1.body);
    assert_eq!(balance(&till, &code).await, 900);
    let ledger = crate::all_pages(&manager, &format!("/gift-cards/{code}/transactions"), 50).await;
    assert_eq!(ledger.len(), 2, "purchase + one redeem");

    // Same key with another amount, or on another path → 422, nothing changes.
    till.post_idem(
        &deduct_path,
        &json!({"amount": 200, "order_id": "o-1"}),
        "deduct-1",
    )
    .await
    .expect_error(422, "idempotency_key_reused");
    manager
        .post("/gift-cards", &json!({"code": "OTHER-1", "amount": 500}))
        .await
        .expect(201);
    till.post_idem("/gift-cards/OTHER-1/deduct", &deduct, "deduct-1")
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(balance(&till, &code).await, 900);
    assert_eq!(balance(&till, "OTHER-1").await, 500);

    // Loyalty add: once.
    let add = json!({"points": 40, "reason": "visit"});
    let a1 = till
        .post_idem("/loyalty/%2B15550100199/add", &add, "add-1")
        .await;
    assert_eq!(a1.expect(200)["points"], 40);
    let a2 = till
        .post_idem("/loyalty/%2B15550100199/add", &add, "add-1")
        .await;
    assert_eq!(a2.expect(200).clone(), a1.body);
    assert_eq!(a2.header(REPLAYED), Some("true"));
    let points = till.get("/loyalty/%2B15550100199/points").await;
    assert_eq!(points.expect(200)["points"], 40);

    // A refused request is not stored: after the reason is gone the same key succeeds.
    let redeem = json!({"points": 100});
    till.post_idem("/loyalty/%2B15550100199/redeem", &redeem, "redeem-1")
        .await
        .expect_error(422, "insufficient_points");
    till.post("/loyalty/%2B15550100199/add", &json!({"points": 60}))
        .await
        .expect(200);
    let r = till
        .post_idem("/loyalty/%2B15550100199/redeem", &redeem, "redeem-1")
        .await;
    assert_eq!(r.expect(200)["points"], 0);
    assert_eq!(
        r.header(REPLAYED),
        None,
        "the first success is not a replay"
    );

    // Order creation: one order.
    let order = order_body("web-idem", "online");
    let o1 = manager.post_idem("/orders", &order, "order-1").await;
    o1.expect(201);
    let o2 = manager.post_idem("/orders", &order, "order-1").await;
    o2.expect(201);
    assert_eq!(o2.body, o1.body);
    assert_eq!(o2.header(REPLAYED), Some("true"));
    let pending = till.get("/orders/pending").await;
    assert_eq!(
        pending.expect(200)["orders"]
            .as_array()
            .expect("orders")
            .len(),
        1
    );

    // Report upload: the replay is a replay, not a second revision.
    let report = crate::report_body("2026-11-20", 100_000, "first");
    let rep1 = till.post_idem("/reports/daily", &report, "report-1").await;
    assert_eq!(rep1.expect(201)["revision"], 1);
    let rep2 = till.post_idem("/reports/daily", &report, "report-1").await;
    assert_eq!(rep2.expect(201)["revision"], 1);
    assert_eq!(rep2.header(REPLAYED), Some("true"));
    let stored = till.get("/reports/daily/2026-11-20").await;
    assert_eq!(stored.expect(200)["revision"], 1);

    // Keys are per tenant: another tenant may use the same key for its own request.
    let bakery = srv.setup_tenant("bakery").await;
    let b = srv
        .manager(&bakery)
        .post_idem("/gift-cards", &json!({"amount": 1000}), "issue-1")
        .await;
    b.expect(201);
    assert_eq!(b.header(REPLAYED), None);
    assert_ne!(b.body["code"], first.body["code"]);

    // Replays survive a restart.
    let seq_before = last_seq(&manager).await;
    let status = srv.restart().await;
    assert!(status.success(), "graceful stop before restart: {status}");
    let till = srv.terminal(&kitchen);
    let manager = srv.manager(&kitchen);
    let d3 = till.post_idem(&deduct_path, &deduct, "deduct-1").await;
    d3.expect(200);
    assert_eq!(d3.header(REPLAYED), Some("true"));
    assert_eq!(d3.body, d1.body);
    assert_eq!(balance(&till, &code).await, 900);
    till.post_idem(&deduct_path, &json!({"amount": 1}), "deduct-1")
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(last_seq(&manager).await, seq_before);
}

both_backends!(idempotent_replays);
