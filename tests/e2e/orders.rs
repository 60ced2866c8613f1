//! Orders: creation by the manager, the pending list, status transitions; one test per
//! behaviour, each on a fresh server.

use posbridge_harness::{both_backends, parse_rfc3339, Backend, Client, TestServer};
use serde_json::json;

use crate::{last_seq, order_body};

async fn pending_ids(till: &Client) -> Vec<String> {
    let resp = till.get("/orders/pending").await;
    resp.expect(200)["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("no orders array: {}", resp.text))
        .iter()
        .map(|o| o["id"].as_str().expect("order id").to_owned())
        .collect()
}

async fn set_status(till: &Client, id: &str, status: &str) -> posbridge_harness::Resp {
    till.post(&format!("/orders/{id}/status"), &json!({"status": status}))
        .await
}

/// A server with tenant `kitchen`: its manager (who creates orders) and its till.
async fn kitchen(backend: Backend) -> (TestServer, Client, Client) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    (srv, manager, till)
}

/// Creates the standard order `external_id` from `source`, asserting 201; returns its id.
async fn create(manager: &Client, external_id: &str, source: &str) -> String {
    let resp = manager
        .post("/orders", &order_body(external_id, source))
        .await;
    resp.expect(201)["id"].as_str().expect("id").to_owned()
}

async fn a_created_order_echoes_its_figures_items_and_customer(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let created = manager
        .post("/orders", &order_body("web-1", "online"))
        .await;
    let o1 = created.expect(201).clone();
    assert_eq!(o1["external_id"], "web-1");
    assert_eq!(o1["source"], "online");
    assert_eq!(o1["status"], "pending");
    assert_eq!(o1["currency"], "USD");
    for (field, value) in [
        ("subtotal", 2197),
        ("tax", 176),
        ("tip", 300),
        ("discount", 100),
        ("total", 2573),
    ] {
        assert_eq!(o1[field], value, "{field}: {o1}");
    }
    let items = o1["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "Burger");
    assert_eq!(items[0]["quantity"], 2);
    assert_eq!(items[0]["unit_price"], 899);
    assert_eq!(items[1]["sku"], "FR-1");
    assert_eq!(o1["customer"]["name"], "Ada");
    assert_eq!(o1["notes"], "ring twice");
    parse_rfc3339(o1["created_at"].as_str().expect("created_at"));
    parse_rfc3339(o1["updated_at"].as_str().expect("updated_at"));
    let listed = till.get("/orders/pending").await;
    assert_eq!(
        listed.expect(200)["orders"][0],
        o1,
        "listed order equals the created one"
    );
}

async fn an_order_without_a_source_is_a_pending_online_order(backend: Backend) {
    let (_srv, manager, _till) = kitchen(backend).await;
    let mut body = order_body("web-2", "online");
    body.as_object_mut().expect("object").remove("source");
    let o2 = manager.post("/orders", &body).await;
    assert_eq!(o2.expect(201)["source"], "online");
    assert_eq!(o2.body["status"], "pending");
}

async fn a_walk_in_order_starts_accepted_and_is_never_listed_as_pending(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    let pos = manager.post("/orders", &order_body("till-1", "pos")).await;
    assert_eq!(pos.expect(201)["source"], "pos");
    assert_eq!(pos.body["status"], "accepted");
    let pos_id = pos.body["id"].as_str().expect("id").to_owned();
    assert_eq!(pending_ids(&till).await, vec![id1.clone()]);
    // It moves through its states but never shows up.
    set_status(&till, &pos_id, "preparing").await.expect(200);
    assert_eq!(pending_ids(&till).await, vec![id1]);
}

async fn a_duplicate_or_inconsistent_order_is_refused_and_adds_nothing(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    manager
        .post("/orders", &order_body("web-1", "online"))
        .await
        .expect_error(409, "order_exists");
    let mut wrong_subtotal = order_body("web-4", "online");
    wrong_subtotal["subtotal"] = json!(2196);
    manager
        .post("/orders", &wrong_subtotal)
        .await
        .expect_error(422, "invalid_order");
    let mut wrong_total = order_body("web-5", "online");
    wrong_total["total"] = json!(2574);
    manager
        .post("/orders", &wrong_total)
        .await
        .expect_error(422, "invalid_order");
    manager
        .post("/orders", &json!({"source": "online", "items": [], "subtotal": 0, "tax": 0, "tip": 0, "discount": 0, "total": 0, "bogus": 1}))
        .await
        .expect_error(422, "invalid_request");
    assert_eq!(pending_ids(&till).await, vec![id1]);
}

async fn pending_orders_are_listed_oldest_first(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    let id2 = create(&manager, "web-2", "online").await;
    let id3 = create(&manager, "web-3", "online").await;
    assert_eq!(pending_ids(&till).await, vec![id1, id2, id3]);
}

async fn an_accepted_order_keeps_its_place_in_the_pending_list(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    let id2 = create(&manager, "web-2", "online").await;
    let id3 = create(&manager, "web-3", "online").await;
    let accepted = set_status(&till, &id1, "accepted").await;
    assert_eq!(accepted.expect(200)["status"], "accepted");
    assert_eq!(accepted.body["id"], id1.as_str());
    assert_eq!(pending_ids(&till).await, vec![id1, id2, id3]);
}

async fn setting_the_same_status_again_changes_nothing_and_emits_no_event(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    let accepted = set_status(&till, &id1, "accepted").await;
    accepted.expect(200);
    let seq = last_seq(&till).await;
    let same = set_status(&till, &id1, "accepted").await;
    assert_eq!(same.expect(200)["status"], "accepted");
    assert_eq!(same.body["updated_at"], accepted.body["updated_at"]);
    assert_eq!(
        last_seq(&till).await,
        seq,
        "re-setting a status emits no event"
    );
}

async fn an_order_moves_forward_through_its_states_and_never_back(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    let id2 = create(&manager, "web-2", "online").await;
    set_status(&till, &id1, "accepted").await.expect(200);
    // accepted → completed skips steps; back to pending is not allowed.
    set_status(&till, &id1, "completed")
        .await
        .expect_error(409, "invalid_transition");
    set_status(&till, &id1, "pending")
        .await
        .expect_error(409, "invalid_transition");
    // Not a status at all.
    set_status(&till, &id1, "shipped")
        .await
        .expect_error(422, "invalid_request");

    // accepted → preparing: leaves the pending list.
    assert_eq!(
        set_status(&till, &id1, "preparing").await.expect(200)["status"],
        "preparing"
    );
    assert_eq!(pending_ids(&till).await, vec![id2]);
    set_status(&till, &id1, "accepted")
        .await
        .expect_error(409, "invalid_transition");
    assert_eq!(
        set_status(&till, &id1, "ready").await.expect(200)["status"],
        "ready"
    );
    let done = set_status(&till, &id1, "completed").await;
    assert_eq!(done.expect(200)["status"], "completed");
    set_status(&till, &id1, "cancelled")
        .await
        .expect_error(409, "invalid_transition");
}

async fn a_pending_order_cannot_skip_ahead_but_can_be_cancelled(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id2 = create(&manager, "web-2", "online").await;
    set_status(&till, &id2, "preparing")
        .await
        .expect_error(409, "invalid_transition");
    set_status(&till, &id2, "ready")
        .await
        .expect_error(409, "invalid_transition");
    assert_eq!(
        set_status(&till, &id2, "cancelled").await.expect(200)["status"],
        "cancelled"
    );
    set_status(&till, &id2, "accepted")
        .await
        .expect_error(409, "invalid_transition");
    assert_eq!(pending_ids(&till).await, Vec::<String>::new());
}

async fn a_manager_may_take_an_accepted_order_straight_to_ready(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id3 = create(&manager, "web-3", "online").await;
    set_status(&manager, &id3, "accepted").await.expect(200);
    assert_eq!(
        set_status(&manager, &id3, "ready").await.expect(200)["status"],
        "ready"
    );
    assert_eq!(pending_ids(&till).await, Vec::<String>::new());
}

async fn a_status_change_for_an_unknown_order_is_not_found(backend: Backend) {
    let (_srv, _manager, till) = kitchen(backend).await;
    set_status(&till, "00000000-0000-0000-0000-000000000000", "accepted")
        .await
        .expect_error(404, "order_not_found");
    set_status(&till, "nope", "accepted")
        .await
        .expect_error(404, "order_not_found");
}

async fn a_new_order_is_listed_alone_once_the_earlier_ones_have_left(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let id1 = create(&manager, "web-1", "online").await;
    let id2 = create(&manager, "web-2", "online").await;
    set_status(&till, &id1, "accepted").await.expect(200);
    set_status(&till, &id1, "preparing").await.expect(200);
    set_status(&till, &id2, "cancelled").await.expect(200);
    let id4 = create(&manager, "web-6", "online").await;
    assert_eq!(pending_ids(&till).await, vec![id4]);
}

both_backends!(
    a_created_order_echoes_its_figures_items_and_customer,
    an_order_without_a_source_is_a_pending_online_order,
    a_walk_in_order_starts_accepted_and_is_never_listed_as_pending,
    a_duplicate_or_inconsistent_order_is_refused_and_adds_nothing,
    pending_orders_are_listed_oldest_first,
    an_accepted_order_keeps_its_place_in_the_pending_list,
    setting_the_same_status_again_changes_nothing_and_emits_no_event,
    an_order_moves_forward_through_its_states_and_never_back,
    a_pending_order_cannot_skip_ahead_but_can_be_cancelled,
    a_manager_may_take_an_accepted_order_straight_to_ready,
    a_status_change_for_an_unknown_order_is_not_found,
    a_new_order_is_listed_alone_once_the_earlier_ones_have_left,
);
