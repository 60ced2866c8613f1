//! The Square order endpoints over HTTP: idempotent replays, refusals, external payments,
//! version conflicts, the fault knobs and search paging.
use super::*;
use crate::mock_orders::OrderFault;
use crate::mock_square::{
    square_item, square_modifier_list, square_tax, MockSquare, SQUARE_LOCATION, SQUARE_TOKEN,
};
use serde_json::json;

async fn post(mock: &MockSquare, path: &str, body: &Value) -> (u16, Value) {
    send(mock, reqwest::Method::POST, path, Some(body)).await
}

async fn send(
    mock: &MockSquare,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", mock.base_url()))
        .bearer_auth(SQUARE_TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the mock answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn menu_mock() -> MockSquare {
    let mock = MockSquare::start().await;
    mock.upsert_catalog([
        square_item(
            "burger",
            "Burger",
            "mains",
            &[("single", "Single", 900)],
            &[("sauces", 0, 1)],
        ),
        square_modifier_list("sauces", "Sauces", 0, 1, &[("bbq", "BBQ", 50)]),
    ]);
    mock
}

fn order(reference: &str, quantity: &str) -> Value {
    json!({
        "location_id": SQUARE_LOCATION,
        "reference_id": reference,
        "source": {"name": "posbridge"},
        "line_items": [{"uid": "l1", "catalog_object_id": "single", "quantity": quantity,
                        "modifiers": [{"catalog_object_id": "bbq", "quantity": "1"}]}],
        "fulfillments": [{"type": "PICKUP", "pickup_details": {
            "recipient": {"display_name": "Ann"}, "schedule_type": "ASAP",
            "prep_time_duration": "PT15M"}}],
    })
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_order_and_refuses_another() {
    let mock = menu_mock().await;
    let body = json!({"idempotency_key": "ord-1", "order": order("ord-1", "2")});
    let (status, first) = post(&mock, "/v2/orders", &body).await;
    assert_eq!(status, 200, "{first}");
    let first = &first["order"];
    assert_eq!(first["reference_id"], "ord-1");
    assert_eq!(first["state"], "OPEN");
    assert_eq!(first["version"], 1);
    assert_eq!(first["fulfillments"][0]["state"], "PROPOSED");
    assert_eq!(first["line_items"][0]["gross_sales_money"]["amount"], 1900);
    assert_eq!(first["total_money"]["amount"], 1900);
    let (status, again) = post(&mock, "/v2/orders", &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["order"]["id"], first["id"]);
    assert_eq!(mock.orders_created().len(), 1);
    let other = json!({"idempotency_key": "ord-1", "order": order("ord-1", "3")});
    let (status, refused) = post(&mock, "/v2/orders", &other).await;
    assert_eq!(status, 400);
    assert_eq!(refused["errors"][0]["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(mock.orders_with_reference("ord-1").len(), 1);
    // Without a key Square deduplicates nothing: a second order.
    let keyless = json!({"order": order("ord-1", "2")});
    assert_eq!(post(&mock, "/v2/orders", &keyless).await.0, 200);
    assert_eq!(mock.orders_with_reference("ord-1").len(), 2);
}

#[tokio::test]
async fn catalog_taxes_apply_only_when_the_order_asks_for_them() {
    let mock = menu_mock().await;
    let mut burger = square_item(
        "burger",
        "Burger",
        "mains",
        &[("single", "Single", 900)],
        &[("sauces", 0, 1)],
    );
    burger["item_data"]["tax_ids"] = json!(["sales", "retired", "elsewhere"]);
    let mut retired = square_tax("retired", "Retired tax", "5");
    retired["tax_data"]["enabled"] = json!(false);
    let mut elsewhere = square_tax("elsewhere", "City tax", "2");
    elsewhere["present_at_all_locations"] = json!(false);
    elsewhere["present_at_location_ids"] = json!(["ANOTHER_LOCATION"]);
    let mut items_only = square_tax("items-only", "Prepared food tax", "1");
    items_only["tax_data"]["applies_to_custom_amounts"] = json!(false);
    mock.upsert_catalog([
        burger,
        square_tax("sales", "Sales tax", "8.875"),
        retired,
        elsewhere,
        items_only,
    ]);
    let mut untaxed = order("ord-tax", "1");
    untaxed["line_items"]
        .as_array_mut()
        .expect("line items")
        .push(json!({"uid": "l2", "name": "Candle", "quantity": "1",
                     "base_price_money": {"amount": 200, "currency": "USD"}}));
    let (status, answer) = post(
        &mock,
        "/v2/orders/calculate",
        &json!({"order": untaxed.clone()}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let priced = &answer["order"];
    assert_eq!(
        (
            &priced["total_money"]["amount"],
            &priced["total_tax_money"]["amount"]
        ),
        (&json!(1150), &json!(0)),
        "no option, no taxes[]: no tax, as Square: {priced}"
    );
    assert!(priced.get("taxes").is_none(), "{priced}");

    let mut taxed = untaxed;
    taxed["pricing_options"] = json!({"auto_apply_taxes": true});
    let (status, answer) = post(
        &mock,
        "/v2/orders/calculate",
        &json!({"order": taxed.clone()}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let priced = &answer["order"];
    // 8.875 % of 950 (burger with BBQ) is 84.3125 → 84; of the 200 custom amount, 17.75 → 18.
    // The disabled tax, the tax of another location and the one that spares custom amounts
    // are not applied.
    let lines = priced["line_items"].as_array().expect("line items");
    assert_eq!(lines[0]["total_tax_money"]["amount"], 84, "{priced}");
    assert_eq!(lines[0]["total_money"]["amount"], 1034);
    assert_eq!(lines[1]["total_tax_money"]["amount"], 18, "{priced}");
    assert_eq!(priced["total_tax_money"]["amount"], 102);
    assert_eq!(priced["total_money"]["amount"], 1252);
    let taxes = priced["taxes"].as_array().expect("the applied taxes");
    assert_eq!(taxes.len(), 1, "{taxes:?}");
    assert_eq!(taxes[0]["catalog_object_id"], "sales");
    assert_eq!(taxes[0]["auto_applied"], true);
    assert_eq!(taxes[0]["applied_money"]["amount"], 102);
    assert_eq!(lines[0]["applied_taxes"][0]["tax_uid"], taxes[0]["uid"]);

    // A created order is priced the same way, and its payment must cover the tax.
    let (status, created) = post(
        &mock,
        "/v2/orders",
        &json!({"idempotency_key": "ord-tax", "order": taxed}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["order"]["total_money"]["amount"], 1252);
    assert_eq!(created["order"]["net_amount_due_money"]["amount"], 1252);
}

#[tokio::test]
async fn refusals_name_the_field_and_store_nothing() {
    let mock = menu_mock().await;
    let mut bad = order("ord-2", "1");
    bad["line_items"][0]["quantity"] = json!(1);
    let (status, answer) = post(
        &mock,
        "/v2/orders",
        &json!({"idempotency_key": "k", "order": bad}),
    )
    .await;
    assert_eq!(
        (status, &answer["errors"][0]["code"]),
        (400, &json!("EXPECTED_STRING"))
    );
    assert_eq!(answer["errors"][0]["field"], "order.line_items[0].quantity");
    let mut unknown = order("ord-2", "1");
    unknown["line_items"][0]["catalog_object_id"] = json!("nope");
    let (status, answer) = post(
        &mock,
        "/v2/orders",
        &json!({"idempotency_key": "k", "order": unknown}),
    )
    .await;
    assert_eq!(
        (status, &answer["errors"][0]["code"]),
        (400, &json!("INVALID_VALUE"))
    );
    let long = order(&"x".repeat(41), "1");
    let (status, answer) = post(&mock, "/v2/orders/calculate", &json!({"order": long})).await;
    assert_eq!(
        (status, &answer["errors"][0]["code"]),
        (400, &json!("VALUE_TOO_LONG"))
    );
    assert!(mock.orders_created().is_empty());
    // The key was not spent on a refused request.
    assert_eq!(
        post(
            &mock,
            "/v2/orders",
            &json!({"idempotency_key": "k", "order": order("ord-2", "1")})
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn an_external_payment_pays_the_order_once_and_a_stale_version_conflicts() {
    let mock = menu_mock().await;
    let (_, created) = post(
        &mock,
        "/v2/orders",
        &json!({"idempotency_key": "ord-3", "order": order("ord-3", "1")}),
    )
    .await;
    let id = created["order"]["id"].as_str().unwrap().to_owned();
    let pay = json!({"idempotency_key": "ord-3-pay", "source_id": "EXTERNAL",
                     "external_details": {"type": "OTHER", "source": "web"},
                     "amount_money": {"amount": 950, "currency": "USD"},
                     "tip_money": {"amount": 100, "currency": "USD"},
                     "order_id": id, "location_id": SQUARE_LOCATION});
    let mut keyless = pay.clone();
    keyless.as_object_mut().unwrap().remove("idempotency_key");
    let (status, answer) = post(&mock, "/v2/payments", &keyless).await;
    assert_eq!(
        (status, &answer["errors"][0]["code"]),
        (400, &json!("MISSING_REQUIRED_PARAMETER"))
    );
    let mut short = pay.clone();
    short["amount_money"]["amount"] = json!(900);
    short["idempotency_key"] = json!("other");
    assert_eq!(
        post(&mock, "/v2/payments", &short).await.1["errors"][0]["code"],
        "PAYMENT_AMOUNT_MISMATCH"
    );
    let (status, paid) = post(&mock, "/v2/payments", &pay).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["payment"]["source_type"], "EXTERNAL");
    let (_, replay) = post(&mock, "/v2/payments", &pay).await;
    assert_eq!(replay["payment"]["id"], paid["payment"]["id"]);
    assert_eq!(mock.payments().len(), 1);
    let stored = mock.order(&id).unwrap();
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["tenders"].as_array().unwrap().len(), 1);
    assert_eq!(stored["net_amount_due_money"]["amount"], 0);
    assert_eq!(stored["total_money"]["amount"], 1050);

    let update = |version: i64| {
        json!({"order": {"version": version, "fulfillments": [
            {"uid": stored["fulfillments"][0]["uid"], "state": "RESERVED"}]}})
    };
    let path = format!("/v2/orders/{id}");
    let (status, stale) = send(&mock, reqwest::Method::PUT, &path, Some(&update(1))).await;
    assert_eq!(
        (status, &stale["errors"][0]["code"]),
        (409, &json!("VERSION_MISMATCH"))
    );
    let (status, updated) = send(&mock, reqwest::Method::PUT, &path, Some(&update(2))).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["order"]["version"], 3);
    assert_eq!(updated["order"]["fulfillments"][0]["state"], "RESERVED");

    // Staff complete it in Square: a paid order whose pickup completes is COMPLETED.
    let (old, done) = mock.set_fulfillment_state(&id, "COMPLETED").unwrap();
    assert_eq!(
        (old.as_str(), &done["state"], &done["version"]),
        ("RESERVED", &json!("COMPLETED"), &json!(4))
    );
    assert!(mock.cancel_order(&id).is_none(), "COMPLETED is final");
    let webhook: Value =
        serde_json::from_str(&square_fulfillment_webhook("ev-1", &done, &old)).unwrap();
    let object = &webhook["data"]["object"]["order_fulfillment_updated"];
    assert_eq!(
        (&object["order_id"], &object["version"]),
        (&json!(id), &json!(4))
    );
    assert_eq!(object["fulfillment_update"][0]["new_state"], "COMPLETED");
    let (_, read) = send(&mock, reqwest::Method::GET, &path, None).await;
    assert_eq!(read["order"]["version"], 4);
}

#[tokio::test]
async fn failed_and_lost_order_calls() {
    let mock = menu_mock().await;
    mock.fail_orders(OrderFault::next(2, 503).on(OrderCall::Create));
    let body = json!({"idempotency_key": "ord-4", "order": order("ord-4", "1")});
    // A price call is not a create: it is served and does not count the fault down.
    assert_eq!(
        post(
            &mock,
            "/v2/orders/calculate",
            &json!({"order": order("ord-4", "1")})
        )
        .await
        .0,
        200
    );
    assert_eq!(post(&mock, "/v2/orders", &body).await.0, 503);
    assert_eq!(post(&mock, "/v2/orders", &body).await.0, 503);
    assert!(
        mock.orders_created().is_empty(),
        "an outage creates nothing"
    );
    mock.lose_next_answers(1, LostAnswer::GatewayTimeout);
    let (status, answer) = post(&mock, "/v2/orders", &body).await;
    assert_eq!(
        (status, &answer["errors"][0]["code"]),
        (504, &json!("GATEWAY_TIMEOUT"))
    );
    assert_eq!(mock.orders_created().len(), 1, "timed out, but created");
    let (status, replay) = post(&mock, "/v2/orders", &body).await;
    assert_eq!(status, 200);
    assert_eq!(replay["order"]["id"], mock.orders_created()[0]["id"]);

    mock.lose_next_answers(1, LostAnswer::Late(Duration::from_millis(600)));
    let late = json!({"idempotency_key": "ord-5", "order": order("ord-5", "1")});
    let gave_up = reqwest::Client::new()
        .post(format!("{}/v2/orders", mock.base_url()))
        .bearer_auth(SQUARE_TOKEN)
        .json(&late)
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    assert_eq!(mock.orders_with_reference("ord-5").len(), 1);
}

#[tokio::test]
async fn search_finds_orders_by_state_and_pages() {
    let mock = menu_mock().await;
    for i in 0..3 {
        let body =
            json!({"idempotency_key": format!("s-{i}"), "order": order(&format!("s-{i}"), "1")});
        assert_eq!(post(&mock, "/v2/orders", &body).await.0, 200);
    }
    let query = |cursor: Option<&Value>| {
        let mut q = json!({"location_ids": [SQUARE_LOCATION], "limit": 2,
            "query": {"filter": {"state_filter": {"states": ["OPEN"]},
                                 "date_time_filter": {"created_at": {"start_at": "2020-01-01T00:00:00Z"}}},
                      "sort": {"sort_field": "CREATED_AT", "sort_order": "DESC"}}});
        if let Some(c) = cursor {
            q["cursor"] = c.clone();
        }
        q
    };
    let (status, first) = post(&mock, "/v2/orders/search", &query(None)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["orders"][0]["reference_id"], "s-2");
    let (_, second) = post(&mock, "/v2/orders/search", &query(Some(&first["cursor"]))).await;
    assert_eq!(second["orders"].as_array().unwrap().len(), 1);
    assert!(second.get("cursor").is_none());
    let mut mismatched = query(None);
    mismatched["query"]["sort"]["sort_field"] = json!("UPDATED_AT");
    assert_eq!(post(&mock, "/v2/orders/search", &mismatched).await.0, 400);
    assert_eq!(post(&mock, "/v2/orders/search", &json!({})).await.0, 400);
}

/// Latency holds each answer without holding the mock: 100 concurrent creates (50 keys,
/// each sent twice at once) at 200 ms each finish in about 200 ms, with one order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latency_is_per_call_and_concurrent_duplicates_make_one_order() {
    let mock = menu_mock().await;
    mock.set_order_latency(Some(OrderCall::Create), Duration::from_millis(200));
    let started = std::time::Instant::now();
    let calls = (0..100).map(|i| {
        let key = format!("c-{}", i / 2);
        let body = json!({"idempotency_key": key, "order": order(&key, "1")});
        let mock = &mock;
        async move { post(mock, "/v2/orders", &body).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    let elapsed = started.elapsed();
    assert!(answers.iter().all(|(status, _)| *status == 200));
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "answers were serialised: {elapsed:?}"
    );
    assert_eq!(mock.orders_created().len(), 50);
    for pair in answers.chunks(2) {
        assert_eq!(pair[0].1["order"]["id"], pair[1].1["order"]["id"]);
    }
}
