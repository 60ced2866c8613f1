//! Bad input: every malformed request gets the JSON error shape with the right status,
//! and nothing is written.

use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, Backend, Body, Client, TestServer};
use serde_json::json;

use crate::{balance, last_seq};

const DEDUCT: &str = "/gift-cards/CARD-1/deduct";

/// A server with tenant `kitchen` holding gift card `CARD-1` worth 1000, and the event
/// sequence after issuing it: what every refused request below must leave as it was.
struct Kitchen {
    srv: TestServer,
    manager: Client,
    till: Client,
    seq: i64,
}

impl Kitchen {
    async fn start(backend: Backend) -> Kitchen {
        let srv = crate::start(backend).await;
        let kitchen = srv.setup_tenant("kitchen").await;
        let manager = srv.manager(&kitchen);
        let till = srv.terminal(&kitchen);
        manager
            .post("/gift-cards", &json!({"code": "CARD-1", "amount": 1000}))
            .await
            .expect(201);
        let seq = last_seq(&till).await;
        Kitchen {
            srv,
            manager,
            till,
            seq,
        }
    }

    /// None of the refused requests left a trace, and the server is still healthy.
    async fn assert_untouched(&self) {
        assert_eq!(
            last_seq(&self.till).await,
            self.seq,
            "refused requests must not append events"
        );
        assert_eq!(balance(&self.till, "CARD-1").await, 1000);
        let ledger = crate::all_pages(&self.manager, "/gift-cards/CARD-1/transactions", 50).await;
        assert_eq!(ledger.len(), 1);
        self.till.get("/health").await.expect(200);
    }
}

async fn malformed_json_is_refused_with_400(backend: Backend) {
    let k = Kitchen::start(backend).await;
    for raw in [
        &b"{\"amount\": 10"[..],
        b"not json",
        b"{\"amount\": 10,}",
        b"",
    ] {
        let resp = k
            .till
            .send(Method::POST, DEDUCT, Body::raw_json(raw.to_vec()), &[])
            .await;
        if raw.is_empty() {
            // An empty body is either malformed JSON or a missing field.
            assert!(matches!(resp.status, 400 | 422), "{}", resp.text);
            resp.expect_error_status(resp.status);
        } else {
            resp.expect_error(400, "invalid_json");
        }
    }
    k.assert_untouched().await;
}

/// Wrong types, missing fields, unknown fields, non-positive or fractional amounts.
async fn a_deduct_of_the_wrong_shape_is_refused_with_422_and_changes_nothing(backend: Backend) {
    let k = Kitchen::start(backend).await;
    for body in [
        json!({"amount": "ten"}),
        json!({"amount": null}),
        json!({}),
        json!({"amount": 0}),
        json!({"amount": -100}),
        json!({"amount": 10.5}),
        json!({"amount": 1e3}),
        json!({"amount": 100, "bonus": true}),
        json!({"amount": 100, "order_id": 7}),
        json!({"amount": 9_223_372_036_854_775_808_u64}),
    ] {
        let resp = k.till.post(DEDUCT, &body).await;
        assert_eq!(
            resp.status, 422,
            "deduct body {body} must be refused: {}",
            resp.text
        );
        resp.expect_error(422, "invalid_request");
    }
    assert_eq!(
        balance(&k.till, "CARD-1").await,
        1000,
        "no bad deduct changed the card"
    );
    k.assert_untouched().await;
}

async fn a_non_json_content_type_is_refused_with_415(backend: Backend) {
    let k = Kitchen::start(backend).await;
    let resp = k
        .till
        .send(
            Method::POST,
            DEDUCT,
            Body::Raw {
                bytes: b"amount=10".to_vec(),
                content_type: Some("application/x-www-form-urlencoded".to_owned()),
            },
            &[],
        )
        .await;
    resp.expect_error_status(415);
    k.assert_untouched().await;
}

async fn a_body_over_one_mebibyte_is_refused_with_413(backend: Backend) {
    let k = Kitchen::start(backend).await;
    let big = format!(
        "{{\"amount\":10,\"order_id\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 16)
    );
    let resp = k
        .till
        .send(Method::POST, DEDUCT, Body::raw_json(big), &[])
        .await;
    resp.expect_error(413, "payload_too_large");
    assert_eq!(balance(&k.till, "CARD-1").await, 1000);
    k.assert_untouched().await;
}

async fn a_gift_card_with_a_bad_amount_or_an_unknown_field_is_not_issued(backend: Backend) {
    let k = Kitchen::start(backend).await;
    for (code, amount) in [
        ("BAD-0", json!(0)),
        ("BAD-NEG", json!(-5)),
        ("BAD-FRAC", json!(2.5)),
    ] {
        k.manager
            .post("/gift-cards", &json!({"code": code, "amount": amount}))
            .await
            .expect_error(422, "invalid_request");
        k.till
            .get(&format!("/gift-cards/{code}/balance"))
            .await
            .expect_error(404, "gift_card_not_found");
    }
    k.manager
        .post(
            "/gift-cards",
            &json!({"code": "BAD-X", "amount": 10, "colour": "red"}),
        )
        .await
        .expect_error(422, "invalid_request");
    k.till
        .get("/gift-cards/BAD-X/balance")
        .await
        .expect_error(404, "gift_card_not_found");
    k.assert_untouched().await;
}

async fn bad_loyalty_points_never_create_the_customer(backend: Backend) {
    let k = Kitchen::start(backend).await;
    for points in [json!(0), json!(-1), json!(1.5), json!("5")] {
        k.till
            .post("/loyalty/%2B15550100199/add", &json!({"points": points}))
            .await
            .expect_error(422, "invalid_request");
    }
    k.till
        .post(
            "/loyalty/%2B15550100199/add",
            &json!({"points": 5, "extra": 1}),
        )
        .await
        .expect_error(422, "invalid_request");
    k.till
        .get("/loyalty/%2B15550100199/points")
        .await
        .expect_error(404, "customer_not_found");
    k.assert_untouched().await;
}

async fn orders_and_reports_of_the_wrong_shape_are_refused_and_not_stored(backend: Backend) {
    let k = Kitchen::start(backend).await;
    let (manager, till) = (&k.manager, &k.till);
    let mut order = crate::order_body("web-1", "online");
    order["items"] = json!("two burgers");
    manager
        .post("/orders", &order)
        .await
        .expect_error(422, "invalid_request");
    let mut order = crate::order_body("web-1", "online");
    order["items"][0]["quantity"] = json!(-2);
    order["subtotal"] = json!(-1798 + 399);
    order["total"] = json!(-1798 + 399 + 176 + 300 - 100);
    let resp = manager.post("/orders", &order).await;
    assert_eq!(resp.status, 422, "negative quantity: {}", resp.text);
    resp.expect_error_status(422);
    let pending = till.get("/orders/pending").await;
    assert_eq!(pending.expect(200)["orders"], json!([]));
    let mut report = crate::report_body("2026-11-20", 1000, "");
    report["total_sales"] = json!("lots");
    till.post("/reports/daily", &report)
        .await
        .expect_error(422, "invalid_request");
    till.get("/reports/daily/2026-11-20")
        .await
        .expect_error(404, "report_not_found");
    till.post("/orders/whatever/status", &json!({"status": "shipped"}))
        .await
        .expect_error(422, "invalid_request");
    k.assert_untouched().await;
}

async fn unknown_routes_answer_404_and_wrong_methods_405(backend: Backend) {
    let k = Kitchen::start(backend).await;
    for path in ["/nothing-here", "/api", "/api/kitchen/nope", "/admin/nope"] {
        k.srv.anon().get(path).await.expect_error(404, "not_found");
    }
    k.till
        .get("/no-such-route")
        .await
        .expect_error(404, "not_found");
    let resp = k
        .till
        .send(Method::DELETE, "/health", Body::None, &[])
        .await;
    resp.expect_error_status(405);
    let resp = k.till.send(Method::GET, DEDUCT, Body::None, &[]).await;
    resp.expect_error_status(405);
    k.assert_untouched().await;
}

async fn a_list_query_that_does_not_parse_is_bad_input_never_a_500(backend: Backend) {
    let k = Kitchen::start(backend).await;
    for query in ["limit=abc", "limit=-1", "cursor=%00garbage"] {
        let resp = k
            .manager
            .get(&format!("/gift-cards/CARD-1/transactions?{query}"))
            .await;
        assert!(matches!(resp.status, 400 | 422), "{query}: {}", resp.text);
        resp.expect_error_status(resp.status);
    }
    k.assert_untouched().await;
}

/// JSON that is well-formed but of the wrong shape in ways serde treats specially: a
/// top-level array where an object is expected, and a number where an enum string is
/// expected. The contract classes both as wrong types → 422 `invalid_request`.
async fn wrong_json_shapes(backend: Backend) {
    let Kitchen {
        srv, manager, till, ..
    } = Kitchen::start(backend).await;
    let order = manager
        .post("/orders", &crate::order_body("web-1", "online"))
        .await;
    let order_id = order.expect(201)["id"].as_str().expect("id").to_owned();
    let seq = last_seq(&till).await;

    let mut failures = Vec::new();
    let mut check = |what: &str, resp: posbridge_harness::Resp| {
        if resp.status != 422 || resp.error_code() != Some("invalid_request") {
            failures.push(format!("{what}: got {} {}", resp.status, resp.text));
        }
    };
    check(
        "array body on deduct",
        till.post("/gift-cards/CARD-1/deduct", &json!([100])).await,
    );
    check(
        "array body on loyalty add",
        till.post("/loyalty/%2B15550100199/add", &json!([5])).await,
    );
    check(
        "number as order status",
        till.post(&format!("/orders/{order_id}/status"), &json!({"status": 3}))
            .await,
    );
    let mut numeric_source = crate::order_body("web-2", "online");
    numeric_source["source"] = json!(1);
    check(
        "number as order source",
        manager.post("/orders", &numeric_source).await,
    );
    check(
        "number as key role",
        srv.admin()
            .post(
                "/admin/tenants/kitchen/keys",
                &json!({"role": 5, "label": "x"}),
            )
            .await,
    );

    assert!(
        failures.is_empty(),
        "wrong JSON shapes must get 422 invalid_request:\n{}",
        failures.join("\n")
    );
    // Nothing changed.
    assert_eq!(balance(&till, "CARD-1").await, 1000);
    assert_eq!(last_seq(&till).await, seq);
    till.get("/loyalty/%2B15550100199/points")
        .await
        .expect_error(404, "customer_not_found");
    let pending = till.get("/orders/pending").await;
    assert_eq!(pending.expect(200)["orders"][0]["status"], "pending");
}

both_backends!(
    malformed_json_is_refused_with_400,
    a_deduct_of_the_wrong_shape_is_refused_with_422_and_changes_nothing,
    a_non_json_content_type_is_refused_with_415,
    a_body_over_one_mebibyte_is_refused_with_413,
    a_gift_card_with_a_bad_amount_or_an_unknown_field_is_not_issued,
    bad_loyalty_points_never_create_the_customer,
    orders_and_reports_of_the_wrong_shape_are_refused_and_not_stored,
    unknown_routes_answer_404_and_wrong_methods_405,
    a_list_query_that_does_not_parse_is_bad_input_never_a_500,
    wrong_json_shapes,
);
