//! Clover (the provider written from the plugin guide alone) through the real binary against
//! the local mock of Clover's REST API: validate and its errors, a sync paged by
//! `offset`/`limit` over `modifiedTime` with refunds expanded and netted, voided, failed and
//! authorised payments kept out of spend, a refund arriving later, and app webhooks
//! authenticated by `X-Clover-Auth` (right, wrong and missing codes, the URL verification
//! post, a malformed notification set aside, the announced payment brought by the next sync).

use std::time::Duration;

use posbridge_harness::mock_clover::{
    clover_webhook, CloverPayment, Fault, MockClover, CLOVER_AUTH_HEADER, CLOVER_MERCHANT,
    CLOVER_TOKEN,
};
use posbridge_harness::{both_backends, eventually, Backend, Client, Resp, TestServer};
use serde_json::{json, Value};

use crate::providers::{
    all_transactions, assert_counts, first_sync, now_ms, post_webhook, revenue, sync,
};

/// The app's auth code, configured as the integration's webhook signature key.
const AUTH_CODE: &str = "0307e264-b33a-4913-88aa-37b10014a0b8";
const PAYMENTS: &str = "/v3/merchants/MOCKMERCHANT1/payments";

/// The body of a Clover validate / connect against `mock`.
fn clover_body(mock: &MockClover, token: &str, merchant: &str) -> Value {
    json!({
        "provider": "clover",
        "credentials": {"access_token": token},
        "location_id": merchant,
        "environment": "sandbox",
        "base_url": mock.base_url(),
    })
}

/// A server with tenant `kitchen`, its manager, and a Clover mock approved for the plugin.
async fn clover_kitchen(backend: Backend) -> (TestServer, Client, MockClover) {
    let (srv, _tenant, manager, mock) =
        crate::providers::provider_kitchen(backend, "clover", MockClover::start().await).await;
    (srv, manager, mock)
}

/// Connects `venue` to the Clover mock (plus `extra` fields) and waits for its first sync;
/// returns the integration.
async fn connect_clover(manager: &Client, mock: &MockClover, venue: &str, extra: Value) -> Value {
    let body = clover_body(mock, CLOVER_TOKEN, CLOVER_MERCHANT);
    let integration = crate::providers::connect_with(manager, "clover", body, venue, extra).await;
    let first = first_sync(manager, venue).await;
    assert!(first["error"].is_null(), "first sync failed: {first}");
    integration
}

async fn validate(manager: &Client, body: &Value) -> Resp {
    manager.post("/pos/validate", body).await
}

async fn clover_validate_and_its_errors(backend: Backend) {
    let (_srv, manager, mock) = clover_kitchen(backend).await;
    let ok = validate(&manager, &clover_body(&mock, CLOVER_TOKEN, CLOVER_MERCHANT)).await;
    let location = ok.expect(200);
    assert_eq!(
        (
            &location["id"],
            &location["name"],
            &location["timezone"],
            &location["currency"],
            &location["merchant_id"]
        ),
        (
            &json!(CLOVER_MERCHANT),
            &json!("Mock Trattoria"),
            &json!("America/Denver"),
            &json!("USD"),
            &json!(CLOVER_MERCHANT)
        ),
        "{}",
        ok.text
    );
    let paths: Vec<(String, u16)> = mock
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/v3/merchants/MOCKMERCHANT1".to_owned(), 200),
            ("/v3/merchants/MOCKMERCHANT1/properties".to_owned(), 200)
        ]
    );
    for r in mock.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {CLOVER_TOKEN}").as_str())
        );
    }

    validate(
        &manager,
        &clover_body(&mock, "not-the-token", CLOVER_MERCHANT),
    )
    .await
    .expect_error(422, "invalid_credentials");
    validate(
        &manager,
        &clover_body(&mock, CLOVER_TOKEN, "NOSUCHMERCHANT"),
    )
    .await
    .expect_error(404, "location_not_found");
    let mut no_token = clover_body(&mock, CLOVER_TOKEN, CLOVER_MERCHANT);
    no_token["credentials"] = json!({});
    validate(&manager, &no_token)
        .await
        .expect_error(422, "missing_credentials");

    mock.inject(Fault::always(429).on("/v3/merchants/").retry_after("30"));
    let limited = validate(&manager, &clover_body(&mock, CLOVER_TOKEN, CLOVER_MERCHANT)).await;
    limited.expect_error(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("30"));
    mock.clear_faults();
    mock.inject(Fault::always(503).on("/v3/merchants/"));
    validate(&manager, &clover_body(&mock, CLOVER_TOKEN, CLOVER_MERCHANT))
        .await
        .expect_error(502, "upstream_error");
}

/// 225 payments modified in the last minutes: 220 plain sales (every fifth in cash, every
/// third with a tip), one partly refunded, one whose refunds were voided or failed, and a
/// voided, a failed and an authorised-only payment. Returns them with the expected net
/// revenue, refunds and count of completed sales.
fn clover_batch() -> (Vec<CloverPayment>, i64, i64, i64) {
    let now = now_ms();
    let created = |i: i64| now - 3 * 3600 * 1000 + i * 30_000;
    let modified = |i: i64| now - 240_000 + i * 100;
    let mut payments = Vec::new();
    let (mut net, mut count) = (0, 0);
    for i in 0..220_i64 {
        let tip = if i % 3 == 0 { 150 } else { 0 };
        let mut p = CloverPayment::new(&format!("PAY{i:04}"), 1000 + i, 80, tip, created(i))
            .modified(modified(i));
        if i % 5 == 0 {
            p = p.cash();
        }
        net += p.total();
        count += 1;
        payments.push(p);
    }
    let refunded = CloverPayment::new("PAYREFUNDED1", 3000, 240, 200, created(220))
        .refund("REF1", 700)
        .modified(modified(220));
    net += refunded.total() - 700;
    count += 1;
    let kept = CloverPayment::new("PAYREFUNDKEPT", 2000, 160, 0, created(221))
        .refund_with("REF2", 2000, true, "SUCCESS")
        .refund_with("REF3", 500, false, "FAIL")
        .modified(modified(221));
    net += kept.total();
    count += 1;
    payments.push(refunded);
    payments.push(kept);
    for (id, result, i) in [
        ("PAYVOIDED01", "VOIDED", 222),
        ("PAYFAILED01", "FAIL", 223),
        ("PAYAUTHONLY", "AUTH", 224),
    ] {
        payments.push(
            CloverPayment::new(id, 5000, 400, 0, created(i))
                .result(result)
                .modified(modified(i)),
        );
    }
    (payments, net, 700, count)
}

async fn clover_sync_pages_refunds_and_not_spend(backend: Backend) {
    let (_srv, manager, mock) = clover_kitchen(backend).await;
    let integration = connect_clover(&manager, &mock, "uptown", json!({})).await;
    assert_eq!(integration["timezone"], "America/Denver", "{integration}");

    let (payments, net, refunds, count) = clover_batch();
    assert_eq!(payments.len(), 225);
    mock.add_payments(payments.iter().map(CloverPayment::json));
    mock.clear_requests();
    assert_counts(&sync(&manager, "uptown").await, 225, 225, 0, 0, 3);

    // Paged by offset over the modifiedTime window, in order, refunds expanded; the
    // merchant's currency was read by the first sync and kept.
    let pages = mock.requests_to(PAYMENTS);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(mock
        .requests_to("/v3/merchants/MOCKMERCHANT1/properties")
        .is_empty());
    let offsets: Vec<Option<String>> = pages.iter().map(|p| p.query_param("offset")).collect();
    assert_eq!(
        offsets,
        vec![Some("0".into()), Some("100".into()), Some("200".into())]
    );
    for p in &pages {
        assert_eq!(p.status, 200);
        assert_eq!(p.query_param("limit").as_deref(), Some("100"));
        assert_eq!(
            p.query_param("orderBy").as_deref(),
            Some("modifiedTime ASC")
        );
        let expand = p.query_param("expand").unwrap_or_default();
        assert!(expand.split(',').any(|e| e == "refunds"), "{expand}");
        let filters: Vec<String> = p
            .query_pairs()
            .into_iter()
            .filter(|(k, _)| k == "filter")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(filters.len(), 2, "{filters:?}");
        assert!(filters[0].starts_with("modifiedTime>="), "{filters:?}");
        assert!(filters[1].starts_with("modifiedTime<"), "{filters:?}");
        assert_eq!(
            p.query_pairs()
                .iter()
                .filter(|(k, _)| k == "filter")
                .count(),
            2
        );
    }
    assert_eq!(
        pages[0].query_pairs(),
        pages[2]
            .query_pairs()
            .into_iter()
            .map(|(k, v)| {
                if k == "offset" {
                    (k, "0".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect::<Vec<_>>(),
        "every page asks for the same window"
    );

    let items = all_transactions(&manager, "uptown").await;
    assert_eq!(items.len(), 225);
    let find = |id: &str| {
        items
            .iter()
            .find(|t| t["external_id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed"))
            .clone()
    };
    let sale = find("PAY0003");
    assert_eq!(
        (
            &sale["total"],
            &sale["subtotal"],
            &sale["tax"],
            &sale["tip"],
            &sale["currency"],
            &sale["tender"],
            &sale["status"]
        ),
        (
            &json!(1153),
            &json!(923),
            &json!(80),
            &json!(150),
            &json!("USD"),
            &json!("card"),
            &json!("completed")
        ),
        "{sale}"
    );
    assert_eq!(sale["card"]["brand"], "VISA", "{sale}");
    assert_eq!(sale["card"]["last4"], "1111", "{sale}");
    assert_eq!(find("PAY0005")["tender"], "cash");
    assert_eq!(find("PAYREFUNDED1")["refunded"], 700);
    assert_eq!(find("PAYREFUNDKEPT")["refunded"], 0);
    for (id, status) in [
        ("PAYVOIDED01", "voided"),
        ("PAYFAILED01", "failed"),
        ("PAYAUTHONLY", "pending"),
    ] {
        assert_eq!(find(id)["status"], status, "{id}");
    }
    let all = revenue(&manager, "uptown", "all").await;
    assert_eq!(all["total"], net, "{all}");
    assert_eq!(all["refunds"], refunds, "{all}");
    assert_eq!(all["count"], count, "{all}");
    assert_eq!(all["timezone"], "America/Denver", "{all}");

    // Re-sync: all duplicates.
    assert_counts(&sync(&manager, "uptown").await, 225, 0, 0, 225, 3);

    // A refund of a sale made hours ago: Clover updates the payment's modifiedTime, the next
    // window has it, the sale is updated and its refund netted.
    let later = CloverPayment::new("PAY0010", 1010, 80, 0, now_ms() - 3 * 3600 * 1000 + 300_000)
        .refund("REF10", 500)
        .modified(now_ms());
    mock.upsert_payment(later.json());
    assert_counts(&sync(&manager, "uptown").await, 225, 0, 1, 224, 3);
    let all = revenue(&manager, "uptown", "all").await;
    assert_eq!(all["total"], net - 500, "{all}");
    assert_eq!(all["refunds"], refunds + 500, "{all}");
}

/// Posts a Clover delivery `body` to integration `id`, with the auth code if given.
async fn post_clover(srv: &TestServer, id: &str, body: &str, auth: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = auth.map(|a| (CLOVER_AUTH_HEADER, a)).into_iter().collect();
    post_webhook(srv, "clover", id, body, &headers).await
}

async fn clover_webhooks_with_the_auth_code(backend: Backend) {
    let (srv, manager, mock) = clover_kitchen(backend).await;
    let integration = connect_clover(
        &manager,
        &mock,
        "uptown",
        json!({"webhook_signature_key": AUTH_CODE}),
    )
    .await;
    let id = integration["id"].as_str().expect("integration id");

    // A sale on the device: Clover announces the payment by id.
    let now = now_ms();
    let sale = CloverPayment::new("PAYWEBHOOK01", 4200, 300, 500, now - 5_000);
    mock.add_payments([sale.json()]);
    let body = clover_webhook(
        &[("P:PAYWEBHOOK01", "CREATE"), ("O:OPAYWEBHOOK01", "UPDATE")],
        now,
    );

    let wrong = post_clover(
        &srv,
        id,
        &body,
        Some("0307e264-b33a-4913-88aa-37b10014a0b9"),
    )
    .await;
    assert_eq!(
        wrong.status, 401,
        "a wrong auth code is refused: {}",
        wrong.text
    );
    let missing = post_clover(&srv, id, &body, None).await;
    assert_eq!(
        missing.status, 401,
        "no auth code is refused: {}",
        missing.text
    );
    let ok = post_clover(&srv, id, &body, Some(AUTH_CODE)).await;
    assert_eq!(ok.expect(200)["received"], true, "{}", ok.text);
    // Clover's redelivery of the same notification is acknowledged too (and a replay).
    post_clover(&srv, id, &body, Some(AUTH_CODE))
        .await
        .expect(200);

    // The one-time URL verification post carries no auth code yet: acknowledged.
    let verification = r#"{"verificationCode":"ce7643c1-83ea-4218-abe6-da876c9c7a0a"}"#;
    post_clover(&srv, id, verification, None).await.expect(200);
    let forged = r#"{"verificationCode":"ce7643c1-83ea-4218-abe6-da876c9c7a0a","merchants":{}}"#;
    assert_eq!(post_clover(&srv, id, forged, None).await.status, 401);

    // An authentic delivery the plugin cannot read is set aside, naming why.
    let malformed = r#"{"appId":"MOCKAPPID0001","merchant":"not the documented shape"}"#;
    post_clover(&srv, id, malformed, Some(AUTH_CODE))
        .await
        .expect(200);
    let dead = eventually(
        Duration::from_secs(20),
        "the malformed delivery set aside",
        || async {
            let resp = srv.admin().get("/admin/dead-letters?kind=webhook").await;
            let items = resp.expect(200)["items"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (items.len() == 1).then(|| items[0].clone())
        },
    )
    .await;
    let reason = dead["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("clover") && reason.contains("merchants"),
        "{dead}"
    );

    // The notification recorded no sale (it names the payment only); the next sync brings it.
    assert!(all_transactions(&manager, "uptown").await.is_empty());
    assert_counts(&sync(&manager, "uptown").await, 1, 1, 0, 0, 1);
    let items = all_transactions(&manager, "uptown").await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            &items[0]["external_id"],
            &items[0]["total"],
            &items[0]["tax"],
            &items[0]["tip"]
        ),
        (
            &json!("PAYWEBHOOK01"),
            &json!(4700),
            &json!(300),
            &json!(500)
        ),
        "{}",
        items[0]
    );
}

both_backends!(
    clover_validate_and_its_errors,
    clover_sync_pages_refunds_and_not_spend,
    clover_webhooks_with_the_auth_code,
);
