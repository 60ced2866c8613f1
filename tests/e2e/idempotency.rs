//! `Idempotency-Key`: replays return the first answer and change nothing, a reused key
//! with another request is refused, failures are not stored, and keys survive a restart.

use posbridge_harness::{both_backends, Backend, Client, Resp, TenantKeys, TestServer};
use serde_json::{json, Value};

use crate::{balance, last_seq, order_body};

const REPLAYED: &str = "idempotent-replayed";

/// A server with tenant `kitchen`: (server, tenant, manager, till).
async fn kitchen(backend: Backend) -> (TestServer, TenantKeys, Client, Client) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    (srv, kitchen, manager, till)
}

/// Issues a 1000 card (server-generated code) under key `issue-1`; returns the answer.
async fn issue(manager: &Client) -> Resp {
    let first = manager
        .post_idem("/gift-cards", &json!({"amount": 1000}), "issue-1")
        .await;
    first.expect(201);
    first
}

/// The deduct every replay test sends under key `deduct-1`.
fn deduct_body() -> Value {
    json!({"amount": 100, "order_id": "o-1"})
}

/// Issues a card and deducts 100 from it under key `deduct-1`: (code, deduct path,
/// deduct answer).
async fn deducted(manager: &Client, till: &Client) -> (String, String, Resp) {
    let code = issue(manager).await.body["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let deduct_path = format!("/gift-cards/{code}/deduct");
    let d1 = till
        .post_idem(&deduct_path, &deduct_body(), "deduct-1")
        .await;
    assert_eq!(d1.expect(200)["balance"]["amount"], 900);
    assert_eq!(d1.header(REPLAYED), None);
    (code, deduct_path, d1)
}

async fn a_replayed_issue_returns_the_first_card_and_emits_no_event(backend: Backend) {
    let (_srv, _kitchen, manager, _till) = kitchen(backend).await;
    let first = issue(&manager).await;
    assert_eq!(
        first.header(REPLAYED),
        None,
        "a first answer is not a replay"
    );
    let seq_after_issue = last_seq(&manager).await;
    let again = manager
        .post_idem("/gift-cards", &json!({"amount": 1000}), "issue-1")
        .await;
    again.expect(201);
    assert_eq!(again.header(REPLAYED), Some("true"));
    assert_eq!(again.body, first.body, "replay must return the first body");
    assert_eq!(
        last_seq(&manager).await,
        seq_after_issue,
        "a replay emits no event"
    );
}

async fn a_key_reused_with_another_body_is_refused(backend: Backend) {
    let (_srv, _kitchen, manager, _till) = kitchen(backend).await;
    issue(&manager).await;
    manager
        .post_idem("/gift-cards", &json!({"amount": 2000}), "issue-1")
        .await
        .expect_error(422, "idempotency_key_reused");
}

async fn a_replayed_deduct_takes_the_money_once(backend: Backend) {
    let (_srv, _kitchen, manager, till) = kitchen(backend).await;
    let (code, deduct_path, d1) = deducted(&manager, &till).await;
    let d2 = till
        .post_idem(&deduct_path, &deduct_body(), "deduct-1")
        .await;
    d2.expect(200);
    assert_eq!(d2.header(REPLAYED), Some("true"));
    assert_eq!(d2.body, d1.body);
    assert_eq!(balance(&till, &code).await, 900);
    let ledger = crate::all_pages(&manager, &format!("/gift-cards/{code}/transactions"), 50).await;
    assert_eq!(ledger.len(), 2, "purchase + one redeem");
}

async fn a_key_reused_for_another_amount_or_path_is_refused_and_changes_nothing(backend: Backend) {
    let (_srv, _kitchen, manager, till) = kitchen(backend).await;
    let (code, deduct_path, _) = deducted(&manager, &till).await;
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
    till.post_idem("/gift-cards/OTHER-1/deduct", &deduct_body(), "deduct-1")
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(balance(&till, &code).await, 900);
    assert_eq!(balance(&till, "OTHER-1").await, 500);
}

async fn a_replayed_loyalty_add_adds_once(backend: Backend) {
    let (_srv, _kitchen, _manager, till) = kitchen(backend).await;
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
}

async fn a_refused_request_is_not_stored_under_its_key(backend: Backend) {
    let (_srv, _kitchen, _manager, till) = kitchen(backend).await;
    till.post("/loyalty/%2B15550100199/add", &json!({"points": 40}))
        .await
        .expect(200);
    let redeem = json!({"points": 100});
    till.post_idem("/loyalty/%2B15550100199/redeem", &redeem, "redeem-1")
        .await
        .expect_error(422, "insufficient_points");
    // After the reason is gone the same key succeeds.
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
}

async fn a_replayed_order_creates_one_order(backend: Backend) {
    let (_srv, _kitchen, manager, till) = kitchen(backend).await;
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
}

async fn a_replayed_report_upload_is_not_a_second_revision(backend: Backend) {
    let (_srv, _kitchen, _manager, till) = kitchen(backend).await;
    let report = crate::report_body("2026-11-20", 100_000, "first");
    let rep1 = till.post_idem("/reports/daily", &report, "report-1").await;
    assert_eq!(rep1.expect(201)["revision"], 1);
    let rep2 = till.post_idem("/reports/daily", &report, "report-1").await;
    assert_eq!(rep2.expect(201)["revision"], 1);
    assert_eq!(rep2.header(REPLAYED), Some("true"));
    let stored = till.get("/reports/daily/2026-11-20").await;
    assert_eq!(stored.expect(200)["revision"], 1);
}

async fn another_tenant_may_use_the_same_key_for_its_own_request(backend: Backend) {
    let (srv, _kitchen, manager, _till) = kitchen(backend).await;
    let first = issue(&manager).await;
    let bakery = srv.setup_tenant("bakery").await;
    let b = srv
        .manager(&bakery)
        .post_idem("/gift-cards", &json!({"amount": 1000}), "issue-1")
        .await;
    b.expect(201);
    assert_eq!(b.header(REPLAYED), None);
    assert_ne!(b.body["code"], first.body["code"]);
}

async fn replays_survive_a_restart(backend: Backend) {
    let (mut srv, kitchen, manager, till) = kitchen(backend).await;
    let (code, deduct_path, d1) = deducted(&manager, &till).await;
    let seq_before = last_seq(&manager).await;
    let status = srv.restart().await;
    assert!(status.success(), "graceful stop before restart: {status}");
    let till = srv.terminal(&kitchen);
    let manager = srv.manager(&kitchen);
    let d3 = till
        .post_idem(&deduct_path, &deduct_body(), "deduct-1")
        .await;
    d3.expect(200);
    assert_eq!(d3.header(REPLAYED), Some("true"));
    assert_eq!(d3.body, d1.body);
    assert_eq!(balance(&till, &code).await, 900);
    till.post_idem(&deduct_path, &json!({"amount": 1}), "deduct-1")
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(last_seq(&manager).await, seq_before);
}

both_backends!(
    a_replayed_issue_returns_the_first_card_and_emits_no_event,
    a_key_reused_with_another_body_is_refused,
    a_replayed_deduct_takes_the_money_once,
    a_key_reused_for_another_amount_or_path_is_refused_and_changes_nothing,
    a_replayed_loyalty_add_adds_once,
    a_refused_request_is_not_stored_under_its_key,
    a_replayed_order_creates_one_order,
    a_replayed_report_upload_is_not_a_second_revision,
    another_tenant_may_use_the_same_key_for_its_own_request,
    replays_survive_a_restart,
);
