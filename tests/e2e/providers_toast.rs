//! Toast through the real binary against the local mock: client-credentials login,
//! validate and its errors, `ordersBulk` paging by `Link` headers, decimal dollars to
//! cents, voided/deleted orders and voided payments, token expiry and re-login, 429s with
//! and without `Retry-After`, intermittent 5xx.

use posbridge_harness::mock_square::Fault;
use std::time::Duration;

use posbridge_harness::mock_toast::{
    toast_orders_webhook, MockToast, ToastCheck, ToastOrder, ToastPayment, TOAST_CLIENT_ID,
    TOAST_CLIENT_SECRET, TOAST_RESTAURANT,
};
use posbridge_harness::{both_backends, eventually, Backend, Client, Resp, TenantKeys, TestServer};
use serde_json::{json, Value};

use crate::providers::{
    all_transactions, assert_counts, assert_newest_first, at_ms, first_sync, now_ms,
    post_signed_toast, revenue, sync,
};

/// The body of a Toast validate / connect against `mock`.
pub(crate) fn toast_body(mock: &MockToast, secret: &str) -> Value {
    json!({
        "provider": "toast",
        "credentials": {"client_id": TOAST_CLIENT_ID, "client_secret": secret},
        "location_id": TOAST_RESTAURANT,
        "environment": "sandbox",
        "base_url": mock.base_url(),
    })
}

/// Connects `venue` to the Toast mock (plus `extra` fields); returns the integration.
pub(crate) async fn connect_toast(
    manager: &Client,
    mock: &MockToast,
    venue: &str,
    extra: Value,
) -> Value {
    let body = toast_body(mock, TOAST_CLIENT_SECRET);
    crate::providers::connect_with(manager, "toast", body, venue, extra).await
}

/// A server with tenant `kitchen`, its manager, and a Toast mock approved for the plugin.
pub(crate) async fn toast_kitchen(backend: Backend) -> (TestServer, TenantKeys, Client, MockToast) {
    crate::providers::provider_kitchen(backend, "toast", MockToast::start().await).await
}

/// [`toast_kitchen`] with `uptown` connected to take webhooks signed with `key`, after its
/// first sync: (server, manager, mock, integration id).
pub(crate) async fn toast_webhook_venue(
    backend: Backend,
    key: &str,
) -> (TestServer, Client, MockToast, String) {
    let (srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    let integration = connect_toast(
        &manager,
        &mock,
        "uptown",
        json!({"webhook_signature_key": key}),
    )
    .await;
    first_sync(&manager, "uptown").await;
    let id = integration["id"]
        .as_str()
        .expect("integration id")
        .to_owned();
    (srv, manager, mock, id)
}

/// `POST /pos/validate` against `mock` with client secret `secret`.
async fn validate_toast(manager: &Client, mock: &MockToast, secret: &str) -> Resp {
    manager
        .post("/pos/validate", &toast_body(mock, secret))
        .await
}

async fn a_toast_host_not_yet_approved_is_refused_before_any_request_leaves(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let mock = MockToast::start().await;
    validate_toast(&manager, &mock, TOAST_CLIENT_SECRET)
        .await
        .expect_error(422, "host_not_approved");
    assert!(mock.requests().is_empty());
}

async fn a_wrong_client_secret_is_refused_at_login(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    validate_toast(&manager, &mock, "not-the-secret")
        .await
        .expect_error(422, "invalid_credentials");
    assert_eq!(mock.logins(), 0);
}

/// The login sends client credentials; the restaurant lookup the token and the GUID header.
async fn validating_toast_logs_in_and_reads_the_restaurant(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    let ok = validate_toast(&manager, &mock, TOAST_CLIENT_SECRET).await;
    let location = ok.expect(200);
    assert_eq!(location["id"], TOAST_RESTAURANT, "{}", ok.text);
    assert_eq!(location["name"], "Mock Diner", "{}", ok.text);
    assert_eq!(location["timezone"], "America/Chicago", "{}", ok.text);
    assert_eq!(location["currency"], "USD", "{}", ok.text);
    assert_eq!(mock.logins(), 1);
    let logins = mock.requests_to("/authentication/v1/authentication/login");
    let login = logins
        .iter()
        .find(|r| r.status == 200)
        .expect("a successful login");
    assert_eq!(login.method, "POST");
    let creds = login.json();
    assert_eq!(creds["clientId"], TOAST_CLIENT_ID);
    assert_eq!(creds["clientSecret"], TOAST_CLIENT_SECRET);
    assert_eq!(creds["userAccessType"], "TOAST_MACHINE_CLIENT");
    let lookup = &mock.requests_to("/restaurants/v1/restaurants/")[0];
    assert_eq!(lookup.status, 200);
    assert!(lookup
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    assert_eq!(
        lookup.header("toast-restaurant-external-id"),
        Some(TOAST_RESTAURANT)
    );
}

async fn a_toast_validation_without_a_client_secret_is_refused(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    let mut missing = toast_body(&mock, TOAST_CLIENT_SECRET);
    missing["credentials"] = json!({"client_id": TOAST_CLIENT_ID});
    manager
        .post("/pos/validate", &missing)
        .await
        .expect_error(422, "missing_credentials");
}

/// A long Retry-After is not waited out: 429 `rate_limited` with the wait passed on.
async fn a_long_toast_retry_after_is_passed_on_not_waited_out(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    mock.inject(Fault::always(429).on("/restaurants/").retry_after("30"));
    let limited = validate_toast(&manager, &mock, TOAST_CLIENT_SECRET).await;
    limited.expect_error(429, "rate_limited");
    assert_eq!(
        limited.header("retry-after"),
        Some("30"),
        "Retry-After passed on to the caller"
    );
}

async fn toast_down_is_an_upstream_error(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    mock.inject(Fault::always(503).on("/restaurants/"));
    validate_toast(&manager, &mock, TOAST_CLIENT_SECRET)
        .await
        .expect_error(502, "upstream_error");
}

/// Validating checks the credentials given, even after a good login with the same client
/// id: a wrong secret must not ride on the token cached by an earlier call.
async fn a_wrong_secret_does_not_ride_on_an_earlier_good_login(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    validate_toast(&manager, &mock, TOAST_CLIENT_SECRET)
        .await
        .expect(200);
    let logins = mock.logins();
    let wrong = validate_toast(&manager, &mock, "not-the-secret").await;
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (422, Some("invalid_credentials")),
        "a wrong client secret validated after an earlier good login (logins before {logins}, after {}): {}",
        mock.logins(),
        wrong.text
    );
    let mut connect = toast_body(&mock, "not-the-secret");
    connect["venue"] = json!("uptown");
    manager
        .post("/pos/connect", &connect)
        .await
        .expect_error(422, "invalid_credentials");
}

/// The orders of the sync test: 244 plain card sales, the decimal-money ones, and the
/// not-spend ones (voided order, deleted order, voided payment, voided check). Returns
/// them with the expected revenue total and count.
fn toast_batch() -> (Vec<ToastOrder>, i64, i64) {
    let now = now_ms();
    let closed = |i: i64| at_ms(now - 3 * 3600 * 1000 + i * 30_000);
    let modified = |i: i64| at_ms(now - 240_000 + i * 100);
    let mut orders = Vec::new();
    let mut total = 0;
    let mut count = 0;
    for i in 0..244_i64 {
        let (amount, tax, tip) = (1000 + i, 80, if i % 3 == 0 { 150 } else { 0 });
        orders.push(
            ToastOrder::paid(&format!("ord-{i:03}"), closed(i), amount, tax, tip)
                .modified(modified(i)),
        );
        total += amount + tax + tip;
        count += 1;
    }
    // $10.10 + $0.83 tax + $2 tip = 1293 cents exactly (f64 arithmetic gives 1292.99…).
    orders
        .push(ToastOrder::paid("ord-decimal", closed(244), 1010, 83, 200).modified(modified(244)));
    // $8.50 + $0.70 + $1.25.
    orders.push(
        ToastOrder::paid("ord-eight-fifty", closed(245), 850, 70, 125).modified(modified(245)),
    );
    total += 1293 + 850 + 70 + 125;
    count += 2;
    orders.push(
        ToastOrder::paid("ord-voided", closed(246), 5000, 400, 0)
            .voided()
            .modified(modified(246)),
    );
    orders.push(
        ToastOrder::paid("ord-deleted", closed(247), 4000, 320, 0)
            .deleted()
            .modified(modified(247)),
    );
    orders.push(
        ToastOrder::new("ord-void-payment", closed(248))
            .check(
                ToastCheck::new("ord-void-payment-c1", 3000, 240).payment(
                    ToastPayment::credit("ord-void-payment-p1", 3240, 300).status("VOIDED"),
                ),
            )
            .modified(modified(248)),
    );
    orders.push(
        ToastOrder::new("ord-void-check", closed(249))
            .check(
                ToastCheck::new("ord-void-check-c1", 2000, 160)
                    .payment(ToastPayment::credit("ord-void-check-p1", 2160, 0))
                    .voided(),
            )
            .modified(modified(249)),
    );
    (orders, total, count)
}

async fn toast_sync(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    let integration = connect_toast(&manager, &mock, "uptown", json!({})).await;
    assert_eq!(integration["timezone"], "America/Chicago");
    let first = first_sync(&manager, "uptown").await;
    assert!(first["error"].is_null(), "first sync failed: {first}");

    let (orders, expected_total, expected_count) = toast_batch();
    assert_eq!(orders.len(), 250);
    mock.add_orders(orders.iter().map(ToastOrder::json));
    mock.clear_requests();
    let stats = sync(&manager, "uptown").await;
    assert_counts(&stats, 250, 250, 0, 0, 3);

    // Paged by the Link header: page 1 built by the plugin, pages 2 and 3 followed.
    let pages = mock.requests_to("/orders/v2/ordersBulk");
    assert_eq!(pages.len(), 3, "{pages:?}");
    let page_numbers: Vec<Option<String>> = pages.iter().map(|p| p.query_param("page")).collect();
    assert_eq!(
        page_numbers,
        vec![Some("1".into()), Some("2".into()), Some("3".into())]
    );
    for p in &pages {
        assert_eq!(p.status, 200);
        assert_eq!(p.query_param("pageSize").as_deref(), Some("100"));
        assert!(p.query_param("startDate").is_some() && p.query_param("endDate").is_some());
        assert_eq!(
            p.header("toast-restaurant-external-id"),
            Some(TOAST_RESTAURANT)
        );
        assert!(p
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer ")));
    }

    let items = all_transactions(&manager, "uptown").await;
    assert_eq!(items.len(), 250);
    assert_newest_first(&items);
    let find = |id: &str| {
        items
            .iter()
            .find(|t| t["external_id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed"))
            .clone()
    };
    let decimal = find("ord-decimal");
    assert_eq!(
        (
            &decimal["total"],
            &decimal["subtotal"],
            &decimal["tax"],
            &decimal["tip"]
        ),
        (&json!(1293), &json!(1010), &json!(83), &json!(200)),
        "{decimal}"
    );
    assert_eq!(decimal["status"], "completed");
    assert_eq!(decimal["tender"], "card");
    assert_eq!(decimal["card"]["brand"], "VISA");
    assert_eq!(decimal["card"]["last4"], "4242");
    let eight = find("ord-eight-fifty");
    assert_eq!(eight["subtotal"], 850, "{eight}");
    assert_eq!(eight["total"], 1045, "{eight}");
    for id in [
        "ord-voided",
        "ord-deleted",
        "ord-void-payment",
        "ord-void-check",
    ] {
        let t = find(id);
        assert_ne!(t["status"], "completed", "{id} is not spend: {t}");
    }
    let all = revenue(&manager, "uptown", "all").await;
    assert_eq!(all["total"], expected_total, "{all}");
    assert_eq!(all["count"], expected_count, "{all}");
    assert_eq!(all["timezone"], "America/Chicago", "{all}");

    // Re-sync: all duplicates.
    assert_counts(&sync(&manager, "uptown").await, 250, 0, 0, 250, 3);

    // A refund on a later modification: updated, netted.
    let refunded = ToastOrder::new("ord-010", at_ms(now_ms() - 3 * 3600 * 1000 + 10 * 30_000))
        .check(
            ToastCheck::new("ord-010-c1", 1010, 80)
                .payment(ToastPayment::credit("ord-010-p1", 1090, 0).refunded(500)),
        )
        .modified(jiff::Timestamp::now());
    mock.upsert_order(refunded.json());
    assert_counts(&sync(&manager, "uptown").await, 250, 0, 1, 249, 3);
    let all = revenue(&manager, "uptown", "all").await;
    assert_eq!(all["total"], expected_total - 500, "{all}");
    assert_eq!(all["refunds"], 500, "{all}");
}

const BULK: &str = "/orders/v2/ordersBulk";

/// `uptown` connected to a mock Toast holding 30 paid orders, synced once: (server,
/// manager, mock, logins before that sync, which needed none).
async fn toast_synced(backend: Backend) -> (TestServer, Client, MockToast, u32) {
    let (srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    connect_toast(&manager, &mock, "uptown", json!({})).await;
    first_sync(&manager, "uptown").await;
    let now = now_ms();
    mock.add_orders((0..30).map(|i| {
        ToastOrder::paid(&format!("ord-{i}"), at_ms(now - 60_000 + i), 500, 40, 0).json()
    }));
    let logins = mock.logins();
    assert_counts(&sync(&manager, "uptown").await, 30, 30, 0, 0, 1);
    (srv, manager, mock, logins)
}

/// The statuses the bulk-orders route answered since the log was last cleared.
fn bulk_statuses(mock: &MockToast) -> Vec<u16> {
    mock.requests_to(BULK).iter().map(|r| r.status).collect()
}

async fn a_cached_toast_token_is_reused_by_the_next_sync(backend: Backend) {
    let (_srv, _manager, mock, logins) = toast_synced(backend).await;
    assert_eq!(mock.logins(), logins, "a cached token is reused");
}

async fn an_expired_toast_token_costs_exactly_one_re_login(backend: Backend) {
    let (_srv, manager, mock, logins) = toast_synced(backend).await;
    mock.expire_tokens();
    mock.clear_requests();
    assert_counts(&sync(&manager, "uptown").await, 30, 0, 0, 30, 1);
    assert_eq!(mock.logins(), logins + 1, "exactly one re-login");
    let seen: Vec<(String, u16)> = mock
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            (BULK.to_owned(), 401),
            ("/authentication/v1/authentication/login".to_owned(), 200),
            (BULK.to_owned(), 200),
        ]
    );
}

async fn a_short_toast_retry_after_is_waited_out(backend: Backend) {
    let (_srv, manager, mock, _) = toast_synced(backend).await;
    mock.clear_requests();
    mock.inject(Fault::next(1, 429).on(BULK).retry_after("1"));
    assert_counts(&sync(&manager, "uptown").await, 30, 0, 0, 30, 1);
    let bulk = mock.requests_to(BULK);
    assert_eq!(
        bulk.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let waited = bulk[1].at.duration_since(bulk[0].at);
    assert!(
        waited.as_millis() >= 900,
        "Retry-After: 1 must be honoured, the retry came after {waited:?}"
    );
}

async fn a_toast_429_without_retry_after_and_5xx_are_backed_off_and_retried(backend: Backend) {
    let (_srv, manager, mock, _) = toast_synced(backend).await;
    mock.clear_requests();
    mock.inject(Fault::next(1, 429).on(BULK));
    mock.inject(Fault::next(2, 500).on(BULK));
    assert_counts(&sync(&manager, "uptown").await, 30, 0, 0, 30, 1);
    assert_eq!(bulk_statuses(&mock), vec![429, 500, 500, 200]);
}

/// Persistently rate limited with a long Retry-After: the manual sync says so, the failure
/// is recorded, the data stays, and the next good sync clears the error.
async fn a_persistently_rate_limited_toast_sync_is_reported_and_keeps_the_data(backend: Backend) {
    let (_srv, manager, mock, _) = toast_synced(backend).await;
    mock.inject(Fault::always(429).on(BULK).retry_after("120"));
    let limited = manager.post("/pos/sync/uptown", &json!({})).await;
    limited.expect_error(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("120"));
    let status = manager.get("/pos/status/uptown").await;
    let status_body = status.expect(200);
    assert!(
        status_body["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "the failed sync is recorded: {}",
        status.text
    );
    assert_eq!(
        status_body["recent_sync_errors"].as_array().map(Vec::len),
        Some(1),
        "{}",
        status.text
    );
    assert_eq!(status_body["transaction_count"], 30);
    mock.clear_faults();
    assert_counts(&sync(&manager, "uptown").await, 30, 0, 0, 30, 1);
    let status = manager.get("/pos/status/uptown").await;
    assert!(
        status.expect(200)["last_error"].is_null(),
        "{}",
        status.text
    );
}

/// Posts a signed orders webhook of `event_type` for `order`, asserting it is acknowledged.
async fn post_order_event(
    srv: &TestServer,
    integration: &str,
    key: &str,
    event_type: &str,
    event: &str,
    order: &ToastOrder,
) {
    let body = toast_orders_webhook(event_type, event, &order.json());
    let resp = post_signed_toast(srv, integration, &body, key, event_type).await;
    assert_eq!(resp.expect(200)["received"], true, "{}", resp.text);
}

/// Waits until `venue`'s sale `external_id` satisfies `ready`, and returns it.
async fn wait_for_sale(
    manager: &Client,
    venue: &str,
    external_id: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    eventually(
        Duration::from_secs(15),
        &format!("sale {external_id} at {venue}"),
        || async {
            all_transactions(manager, venue)
                .await
                .into_iter()
                .find(|t| t["external_id"] == external_id && ready(t))
        },
    )
    .await
}

/// An order whose check is still OPEN with one captured partial payment is recorded at what
/// was captured (payment plus tip), not the check's total; the update that closes the check
/// replaces it with the full sale. `channel_order_updated` deliveries are recorded like
/// `order_updated` ones (both carry the complete order).
async fn toast_open_checks_and_channel_orders(backend: Backend) {
    const KEY: &str = "toast-webhook-secret-2";
    let (srv, manager, mock, id) = crate::providers_toast::toast_webhook_venue(backend, KEY).await;
    let id = id.as_str();

    // $30.00 + $2.40 tax due; $10.00 + $1.50 tip captured so far.
    let opened = at_ms(now_ms() - 600_000);
    let partial = ToastOrder::new("open-ord-1", opened)
        .check(
            ToastCheck::new("open-ord-1-c1", 3000, 240)
                .open()
                .payment(ToastPayment::credit("open-ord-1-p1", 1000, 150)),
        )
        .modified(at_ms(now_ms() - 2_000));
    post_order_event(&srv, id, KEY, "order_updated", "evt-open-1", &partial).await;
    let sale = wait_for_sale(&manager, "uptown", "open-ord-1", |_| true).await;
    assert_eq!(
        (&sale["total"], &sale["tip"], &sale["status"]),
        (&json!(1150), &json!(150), &json!("completed")),
        "{sale}"
    );
    let r = revenue(&manager, "uptown", "all").await;
    assert_eq!((&r["total"], &r["count"]), (&json!(1150), &json!(1)), "{r}");

    // The same order by sync is the same sale, not a second one nor a full-amount one.
    mock.add_orders([partial.json()]);
    assert_counts(&sync(&manager, "uptown").await, 1, 0, 0, 1, 1);

    // The check is paid (the rest by card with a $1.00 tip), delivered as a channel order
    // update: the sale is replaced by the full one.
    let paid = ToastOrder::new("open-ord-1", opened)
        .check(
            ToastCheck::new("open-ord-1-c1", 3000, 240)
                .payment(ToastPayment::credit("open-ord-1-p1", 1000, 150))
                .payment(ToastPayment::credit("open-ord-1-p2", 2240, 100)),
        )
        .modified(jiff::Timestamp::now());
    post_order_event(&srv, id, KEY, "channel_order_updated", "evt-open-2", &paid).await;
    let sale = wait_for_sale(&manager, "uptown", "open-ord-1", |t| t["total"] != 1150).await;
    assert_eq!(
        (
            &sale["total"],
            &sale["subtotal"],
            &sale["tax"],
            &sale["tip"]
        ),
        (&json!(3490), &json!(3000), &json!(240), &json!(250)),
        "{sale}"
    );
    assert_eq!(sale["status"], "completed");

    // A new order placed through a channel partner arrives as channel_order_updated only.
    let channel = ToastOrder::paid("chan-ord-1", at_ms(now_ms() - 30_000), 1010, 83, 200);
    post_order_event(
        &srv,
        id,
        KEY,
        "channel_order_updated",
        "evt-chan-1",
        &channel,
    )
    .await;
    let sale = wait_for_sale(&manager, "uptown", "chan-ord-1", |_| true).await;
    assert_eq!(
        (&sale["total"], &sale["source"]),
        (&json!(1293), &json!("webhook"))
    );
    let r = revenue(&manager, "uptown", "all").await;
    assert_eq!(
        (&r["total"], &r["count"]),
        (&json!(3490 + 1293), &json!(2)),
        "{r}"
    );
}

both_backends!(
    a_toast_host_not_yet_approved_is_refused_before_any_request_leaves,
    a_wrong_client_secret_is_refused_at_login,
    validating_toast_logs_in_and_reads_the_restaurant,
    a_toast_validation_without_a_client_secret_is_refused,
    a_long_toast_retry_after_is_passed_on_not_waited_out,
    toast_down_is_an_upstream_error,
    a_wrong_secret_does_not_ride_on_an_earlier_good_login,
    toast_sync,
    a_cached_toast_token_is_reused_by_the_next_sync,
    an_expired_toast_token_costs_exactly_one_re_login,
    a_short_toast_retry_after_is_waited_out,
    a_toast_429_without_retry_after_and_5xx_are_backed_off_and_retried,
    a_persistently_rate_limited_toast_sync_is_reported_and_keeps_the_data,
    toast_open_checks_and_channel_orders,
);
