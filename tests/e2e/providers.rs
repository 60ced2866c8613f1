//! POS provider integrations through the real binary against local mock Square and Toast
//! servers (`posbridge_harness::mock_square`, `mock_toast`): validation and its error
//! codes, connect, full syncs across pages, re-syncs without duplicates, refunds and
//! cancelled payments, transactions and revenue, customer links.
//!
//! Shared helpers live here; Toast, webhooks and the local POS are in `providers_*.rs`.

use std::time::Duration;

use posbridge_harness::mock::{Mock, Provider};
use posbridge_harness::mock_square::{
    square_location, square_signature, Fault, MockSquare, SquarePayment, SQUARE_LOCATION,
    SQUARE_MERCHANT, SQUARE_TOKEN,
};
use posbridge_harness::mock_toast::{toast_signature, TOAST_RESTAURANT};
use posbridge_harness::reqwest::Method;
use posbridge_harness::{
    both_backends, enc, eventually, parse_rfc3339, Backend, Body, Client, Resp, TenantKeys,
    TestServer, Ws,
};
use serde_json::{json, Value};

use crate::all_pages;

// ---------------------------------------------------------------------------------------
// Helpers shared by the providers_* modules
// ---------------------------------------------------------------------------------------

/// Epoch milliseconds now.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The instant `ms` epoch milliseconds.
pub(crate) fn at_ms(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).expect("a plausible time")
}

pub(crate) use posbridge_harness::bench::approve_host;

/// A server with the tenant `kitchen`, its manager client, and a mock Square the
/// operator has approved for the square plugin: where every Square test starts.
pub(crate) async fn square_kitchen(
    backend: Backend,
) -> (TestServer, TenantKeys, Client, MockSquare) {
    provider_kitchen(backend, "square", MockSquare::start().await).await
}

/// A server with tenant `kitchen`, its manager, and `mock` approved as a host of
/// `plugin`'s.
pub(crate) async fn provider_kitchen<P: Provider>(
    backend: Backend,
    plugin: &str,
    mock: Mock<P>,
) -> (TestServer, TenantKeys, Client, Mock<P>) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    approve_host(&srv, plugin, mock.host_port()).await;
    (srv, tenant, manager, mock)
}

/// The body of a Square validate / connect against `mock`.
pub(crate) fn square_body(mock: &MockSquare, token: &str, location: &str) -> Value {
    json!({
        "provider": "square",
        "credentials": {"access_token": token},
        "location_id": location,
        "environment": "sandbox",
        "base_url": mock.base_url(),
    })
}

/// Connects `venue` to the Square mock (plus `extra` fields), asserting 200 and the public
/// shape; returns the integration.
pub(crate) async fn connect_square(
    manager: &Client,
    mock: &MockSquare,
    venue: &str,
    extra: Value,
) -> Value {
    let body = square_body(mock, SQUARE_TOKEN, SQUARE_LOCATION);
    connect_with(manager, "square", body, venue, extra).await
}

/// Connects `venue` with a provider's connect `body` plus `extra` fields, asserting 200 and
/// the public shape; returns the integration.
pub(crate) async fn connect_with(
    manager: &Client,
    provider: &str,
    mut body: Value,
    venue: &str,
    extra: Value,
) -> Value {
    body["venue"] = json!(venue);
    if let Value::Object(fields) = extra {
        for (k, v) in fields {
            body[k] = v;
        }
    }
    let resp = manager.post("/pos/connect", &body).await;
    let integration = resp.expect(200).clone();
    assert_connected(&resp, venue, provider);
    integration
}

/// Asserts a connect answer is a CONNECTED integration of `venue` without secrets.
#[track_caller]
pub(crate) fn assert_connected(resp: &Resp, venue: &str, provider: &str) {
    let i = &resp.body;
    assert!(
        i["id"].as_str().is_some_and(|s| !s.is_empty()),
        "integration without id: {}",
        resp.text
    );
    assert_eq!(i["status"], "CONNECTED", "{}", resp.text);
    assert_eq!(i["venue"], venue, "{}", resp.text);
    assert_eq!(i["provider"], provider, "{}", resp.text);
    assert!(
        i["webhook_url"].as_str().is_some_and(|u| !u.is_empty()),
        "integration without webhook_url: {}",
        resp.text
    );
    assert!(
        i.get("credentials").is_none() && i.get("webhook_signature_key").is_none(),
        "integration shows secret fields: {}",
        resp.text
    );
}

/// Connects Square at `venue` with webhook signature key `key`, then waits for the first
/// sync, so that webhooks sent afterwards never race it. Returns the integration.
pub(crate) async fn connect_square_webhooks(
    manager: &Client,
    mock: &MockSquare,
    venue: &str,
    key: &str,
) -> Value {
    let integration =
        connect_square(manager, mock, venue, json!({"webhook_signature_key": key})).await;
    first_sync(manager, venue).await;
    integration
}

/// Waits until the scheduler's first sync of `venue` (started by connect) is recorded and
/// returns it; syncs that tests run afterwards cannot race it.
pub(crate) async fn first_sync(manager: &Client, venue: &str) -> Value {
    eventually(
        Duration::from_secs(15),
        "the scheduled first sync after connect",
        || async {
            let resp = manager.get(&format!("/pos/status/{venue}")).await;
            let status = resp.expect(200);
            (!status["last_sync"].is_null()).then(|| status["last_sync"].clone())
        },
    )
    .await
}

/// `POST /pos/sync/{venue}`, asserting 200; returns the counts.
pub(crate) async fn sync(manager: &Client, venue: &str) -> Value {
    let resp = manager
        .post(&format!("/pos/sync/{venue}"), &json!({}))
        .await;
    resp.expect(200).clone()
}

/// Asserts sync counts exactly.
#[track_caller]
pub(crate) fn assert_counts(
    stats: &Value,
    fetched: u64,
    created: u64,
    updated: u64,
    duplicates: u64,
    pages: u64,
) {
    let got = [
        &stats["fetched"],
        &stats["created"],
        &stats["updated"],
        &stats["duplicates"],
        &stats["pages"],
    ];
    let expected = [fetched, created, updated, duplicates, pages];
    assert_eq!(
        got.iter().map(|v| v.as_u64()).collect::<Vec<_>>(),
        expected.iter().map(|v| Some(*v)).collect::<Vec<_>>(),
        "sync counts (fetched, created, updated, duplicates, pages): {stats}"
    );
}

/// Every transaction of `venue`, newest first, walked 100 per page.
pub(crate) async fn all_transactions(manager: &Client, venue: &str) -> Vec<Value> {
    all_pages(manager, &format!("/pos/transactions/{venue}"), 100).await
}

/// The first page of `GET /pos/transactions/{venue}?{query}`.
pub(crate) async fn transactions_page(manager: &Client, venue: &str, query: &str) -> Vec<Value> {
    let resp = manager
        .get(&format!("/pos/transactions/{venue}?{query}"))
        .await;
    resp.expect(200)["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {}", resp.text))
        .clone()
}

/// Transactions of `venue` with this external id.
pub(crate) async fn with_external_id(manager: &Client, venue: &str, id: &str) -> Vec<Value> {
    all_transactions(manager, venue)
        .await
        .into_iter()
        .filter(|t| t["external_id"] == id)
        .collect()
}

/// `GET /pos/revenue/{venue}?period=…`, asserting 200.
pub(crate) async fn revenue(manager: &Client, venue: &str, period: &str) -> Value {
    let resp = manager
        .get(&format!("/pos/revenue/{venue}?period={period}"))
        .await;
    resp.expect(200).clone()
}

/// The start of the calendar `period` (day, week from Monday, month, year) that contains
/// now, in time zone `tz`.
pub(crate) fn period_start(tz: &str, period: &str) -> jiff::Timestamp {
    let zone = jiff::tz::TimeZone::get(tz).expect("a known time zone");
    let today = jiff::Timestamp::now().to_zoned(zone.clone()).date();
    let date = match period {
        "day" => today,
        "week" => {
            today - jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset()))
        }
        "month" => today.first_of_month(),
        "year" => today.first_of_year(),
        other => panic!("no period {other}"),
    };
    date.to_zoned(zone).expect("local midnight").timestamp()
}

/// Asserts `GET /pos/revenue/{venue}?period=` for day, week, month and year against
/// `sales` (when, net amount) of completed sales, computed in time zone `tz`.
pub(crate) async fn assert_period_revenue(
    manager: &Client,
    venue: &str,
    tz: &str,
    sales: &[(jiff::Timestamp, i64)],
) {
    for period in ["day", "week", "month", "year"] {
        let start = period_start(tz, period);
        let counted: Vec<i64> = sales
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(_, net)| *net)
            .collect();
        let got = revenue(manager, venue, period).await;
        assert_eq!(got["period"], period, "{got}");
        assert_eq!(got["timezone"], tz, "{got}");
        assert_eq!(
            got["total"],
            counted.iter().sum::<i64>(),
            "{period} revenue from {start} in {tz}: {got}"
        );
        assert_eq!(got["count"], counted.len(), "{period}: {got}");
        let from = parse_rfc3339(got["from"].as_str().unwrap_or_else(|| panic!("{got}")));
        assert_eq!(
            from, start,
            "{period} starts at local midnight in {tz}: {got}"
        );
    }
}

/// Asserts items are sorted newest first (by `occurred_at`).
#[track_caller]
pub(crate) fn assert_newest_first(items: &[Value]) {
    let times: Vec<jiff::Timestamp> = items
        .iter()
        .map(|t| parse_rfc3339(t["occurred_at"].as_str().expect("occurred_at")))
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[0] >= pair[1],
            "transactions are not newest first: {} before {}",
            pair[0],
            pair[1]
        );
    }
}

/// Posts a webhook body with headers to `/webhooks/{provider}/{id}`.
pub(crate) async fn post_webhook(
    srv: &TestServer,
    provider: &str,
    integration_id: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Resp {
    srv.anon()
        .send(
            Method::POST,
            &format!("/webhooks/{provider}/{integration_id}"),
            Body::raw_json(body.as_bytes().to_vec()),
            headers,
        )
        .await
}

/// The header Square sends its webhook signature in.
pub(crate) const SQUARE_SIGNATURE_HEADER: &str = "x-square-hmacsha256-signature";

/// Posts `body` to `integration`'s webhook route as Square would: signed with `key` over
/// the integration's `webhook_url` and the body.
pub(crate) async fn post_signed_square(
    srv: &TestServer,
    integration: &Value,
    body: &str,
    key: &str,
) -> Resp {
    let id = integration["id"].as_str().expect("integration id");
    let url = integration["webhook_url"].as_str().expect("webhook_url");
    let sig = square_signature(url, body.as_bytes(), key);
    post_webhook(srv, "square", id, body, &[(SQUARE_SIGNATURE_HEADER, &sig)]).await
}

/// Posts an orders webhook `body` of `event_type` to integration `id` as Toast would:
/// signed with `key`, with Toast's delivery headers (first attempt).
pub(crate) async fn post_signed_toast(
    srv: &TestServer,
    id: &str,
    body: &str,
    key: &str,
    event_type: &str,
) -> Resp {
    let sig = toast_signature(body, key);
    let headers = [
        ("Toast-Signature", sig.as_str()),
        ("Toast-Event-Type", event_type),
        ("Toast-Restaurant-External-ID", TOAST_RESTAURANT),
        ("Toast-Attempt-Number", "1"),
    ];
    post_webhook(srv, "toast", id, body, &headers).await
}

/// The next `transaction_recorded` frame (other event types are skipped).
pub(crate) async fn next_sale_event(ws: &mut Ws) -> Value {
    for _ in 0..50 {
        let frame = ws.next_json().await;
        if frame["type"] == "transaction_recorded" {
            return frame;
        }
    }
    panic!("no transaction_recorded frame among the next 50 frames");
}

/// `n` Square payments: created over the last ~2 hours, all updated within the last few
/// minutes (so the incremental sync window after the first sync covers them). Every 50th
/// is CANCELED, every 50th (offset 25) FAILED, the rest COMPLETED; even ones carry a tip.
fn square_batch(n: usize) -> Vec<SquarePayment> {
    let now = now_ms();
    (0..n)
        .map(|i| {
            let i64i = i as i64;
            let created = at_ms(now - 2 * 3600 * 1000 + i64i * 25_000);
            let tip = if i % 2 == 0 { 150 } else { 0 };
            let p = SquarePayment::new(&format!("pay-{i:03}"), 1000 + i64i * 7, tip, created)
                .updated_at(at_ms(now - 240_000 + i64i * 100));
            match i % 50 {
                0 => p.status("CANCELED"),
                25 => p.status("FAILED"),
                _ => p,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Square: validate
// ---------------------------------------------------------------------------------------

/// `POST /pos/validate` of `location` with `token` against `mock`.
async fn validate(manager: &Client, mock: &MockSquare, token: &str, location: &str) -> Resp {
    manager
        .post("/pos/validate", &square_body(mock, token, location))
        .await
}

async fn a_mock_host_not_yet_approved_is_refused_before_any_request_leaves(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let mock = MockSquare::start().await;
    validate(&manager, &mock, SQUARE_TOKEN, SQUARE_LOCATION)
        .await
        .expect_error(422, "host_not_approved");
    assert!(mock.requests().is_empty(), "nothing may reach the mock");
}

async fn a_base_url_on_an_unapproved_port_is_refused(backend: Backend) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    let mut other = square_body(&mock, SQUARE_TOKEN, SQUARE_LOCATION);
    other["base_url"] = json!("http://127.0.0.1:9/");
    manager
        .post("/pos/validate", &other)
        .await
        .expect_error(422, "host_not_approved");
}

async fn validating_square_reads_the_location_as_square_documents_it_and_stores_nothing(
    backend: Backend,
) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    let ok = validate(&manager, &mock, SQUARE_TOKEN, SQUARE_LOCATION).await;
    let location = ok.expect(200);
    assert_eq!(location["id"], SQUARE_LOCATION, "{}", ok.text);
    assert_eq!(location["name"], "Mock Bistro", "{}", ok.text);
    assert_eq!(location["timezone"], "America/Los_Angeles", "{}", ok.text);
    assert_eq!(location["currency"], "USD", "{}", ok.text);
    assert_eq!(location["merchant_id"], SQUARE_MERCHANT, "{}", ok.text);
    let sent = mock.requests_to("/v2/locations/");
    assert_eq!(sent.len(), 1, "one location lookup: {sent:?}");
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].path, format!("/v2/locations/{SQUARE_LOCATION}"));
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {SQUARE_TOKEN}").as_str())
    );
    assert!(
        sent[0]
            .header("square-version")
            .is_some_and(|v| v.len() == 10 && v.as_bytes()[4] == b'-'),
        "Square-Version YYYY-MM-DD must be sent: {:?}",
        sent[0].headers
    );
    manager
        .get("/pos/status/downtown")
        .await
        .expect_error(404, "venue_not_connected");
}

async fn main_and_other_locations_resolve_with_their_own_metadata(backend: Backend) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    // `main` is the seller's main location.
    let main = validate(&manager, &mock, SQUARE_TOKEN, "main").await;
    assert_eq!(main.expect(200)["id"], SQUARE_LOCATION, "{}", main.text);
    mock.add_location(square_location(
        "LSECOND02",
        "Second Street",
        "Europe/London",
        "GBP",
    ));
    let second = validate(&manager, &mock, SQUARE_TOKEN, "LSECOND02").await;
    let second_body = second.expect(200);
    assert_eq!(second_body["name"], "Second Street");
    assert_eq!(second_body["timezone"], "Europe/London");
    assert_eq!(second_body["currency"], "GBP");
}

async fn bad_credentials_an_unknown_location_and_a_refusal_each_have_their_own_code(
    backend: Backend,
) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    validate(&manager, &mock, "EAAAwrong-token", SQUARE_LOCATION)
        .await
        .expect_error(422, "invalid_credentials");
    validate(&manager, &mock, SQUARE_TOKEN, "LNOSUCHLOC")
        .await
        .expect_error(404, "location_not_found");
    let mut no_token = square_body(&mock, SQUARE_TOKEN, SQUARE_LOCATION);
    no_token["credentials"] = json!({});
    manager
        .post("/pos/validate", &no_token)
        .await
        .expect_error(422, "missing_credentials");
    mock.inject(Fault::always(403));
    validate(&manager, &mock, SQUARE_TOKEN, SQUARE_LOCATION)
        .await
        .expect_error(403, "permission_denied");
}

/// Square sends 429 `RATE_LIMITED` without `Retry-After`: the host backs off and retries,
/// then reports `rate_limited`.
async fn a_rate_limited_validation_is_retried_then_reported(backend: Backend) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    mock.inject(Fault::always(429));
    let limited = validate(&manager, &mock, SQUARE_TOKEN, SQUARE_LOCATION).await;
    limited.expect_error(429, "rate_limited");
    if let Some(retry_after) = limited.header("retry-after") {
        assert!(
            retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
            "Retry-After must be whole seconds: {retry_after:?}"
        );
    }
    let attempts = mock.requests().len();
    assert!(
        attempts >= 2,
        "a 429 is retried with backoff before giving up; the mock saw {attempts} request(s)"
    );
}

async fn square_down_for_good_is_an_upstream_error(backend: Backend) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    mock.inject(Fault::always(500));
    validate(&manager, &mock, SQUARE_TOKEN, SQUARE_LOCATION)
        .await
        .expect_error(502, "upstream_error");
}

async fn intermittent_server_errors_are_retried_through(backend: Backend) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    mock.inject(Fault::next(1, 500));
    mock.inject(Fault::next(1, 503));
    let flaky = validate(&manager, &mock, SQUARE_TOKEN, SQUARE_LOCATION).await;
    assert_eq!(flaky.expect(200)["id"], SQUARE_LOCATION);
    let statuses: Vec<u16> = mock.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 503, 200], "retried after each 5xx");
}

// ---------------------------------------------------------------------------------------
// Square: connect, full sync over pages, re-sync, refunds, cancellations, listing, retries
// ---------------------------------------------------------------------------------------

/// `downtown` connected to a mock Square with no payments, after the scheduled first sync.
struct FirstSynced {
    _srv: TestServer,
    manager: Client,
    mock: MockSquare,
    /// What connect answered.
    integration: Value,
    /// The first sync's `last_sync`.
    first: Value,
    /// `synced_until` after the first sync.
    synced_until: jiff::Timestamp,
}

async fn first_synced_square(backend: Backend) -> FirstSynced {
    let (srv, _tenant, manager, mock) = square_kitchen(backend).await;
    let integration = connect_square(&manager, &mock, "downtown", json!({})).await;
    let first = first_sync(&manager, "downtown").await;
    let status = manager.get("/pos/status/downtown").await;
    let synced_until = parse_rfc3339(
        status.expect(200)["synced_until"]
            .as_str()
            .unwrap_or_else(|| panic!("no synced_until after a sync: {}", status.text)),
    );
    FirstSynced {
        _srv: srv,
        manager,
        mock,
        integration,
        first,
        synced_until,
    }
}

/// [`first_synced_square`], then 250 payments (see [`square_batch`]) added and synced
/// in three pages.
struct Synced {
    base: FirstSynced,
    batch: Vec<SquarePayment>,
    /// The listing requests of the 250-payment sync.
    pages: Vec<posbridge_harness::mock_square::LoggedRequest>,
}

impl Synced {
    fn completed(&self) -> Vec<&SquarePayment> {
        self.batch
            .iter()
            .filter(|p| p.status == "COMPLETED")
            .collect()
    }

    fn gross(&self) -> i64 {
        self.completed().iter().map(|p| p.total()).sum()
    }
}

async fn synced_square(backend: Backend) -> Synced {
    let base = first_synced_square(backend).await;
    let batch = square_batch(250);
    base.mock
        .add_payments(batch.iter().map(SquarePayment::json));
    base.mock.clear_requests();
    let stats = sync(&base.manager, "downtown").await;
    assert_counts(&stats, 250, 250, 0, 0, 3);
    let pages = base.mock.requests_to("/v2/payments");
    Synced { base, batch, pages }
}

async fn connecting_square_reads_the_location_and_syncs_seven_days_back(backend: Backend) {
    let FirstSynced {
        _srv,
        integration,
        first,
        mock,
        ..
    } = first_synced_square(backend).await;
    assert_eq!(integration["location_id"], SQUARE_LOCATION);
    assert_eq!(integration["timezone"], "America/Los_Angeles");
    assert_eq!(integration["currency"], "USD");
    assert_eq!(first["fetched"], 0, "the mock had no payments yet: {first}");
    assert_eq!(first["trigger"], "schedule", "{first}");
    assert!(first["error"].is_null(), "first sync failed: {first}");

    // The first sync asked for payments the way Square's API documents it.
    let listed = mock.requests_to("/v2/payments");
    assert!(!listed.is_empty(), "the first sync listed payments");
    let q = &listed[0];
    assert_eq!(q.method, "GET", "payments are listed with GET");
    assert_eq!(q.query_param("limit").as_deref(), Some("100"));
    assert_eq!(
        q.query_param("location_id").as_deref(),
        Some(SQUARE_LOCATION)
    );
    assert_eq!(q.query_param("sort_field").as_deref(), Some("UPDATED_AT"));
    let begin = q
        .query_param("updated_at_begin_time")
        .or_else(|| q.query_param("begin_time"))
        .expect("a time window");
    let begin = parse_rfc3339(&begin);
    let lookback = jiff::Timestamp::now().as_second() - begin.as_second();
    assert!(
        (6 * 86400..=8 * 86400).contains(&lookback),
        "the first sync reaches back 7 days, got {lookback} s"
    );
}

async fn a_sync_walks_every_page_and_resumes_a_little_before_the_last_one(backend: Backend) {
    let synced = synced_square(backend).await;
    let pages = &synced.pages;
    assert_eq!(pages.len(), 3, "three page requests");
    assert!(pages[0].query_param("cursor").is_none());
    assert!(pages[1].query_param("cursor").is_some() && pages[2].query_param("cursor").is_some());
    assert!(pages.iter().all(|p| p.status == 200));
    let resumed = parse_rfc3339(
        &pages[0]
            .query_param("updated_at_begin_time")
            .expect("updated_at_begin_time"),
    );
    let synced_until = synced.base.synced_until;
    let overlap = synced_until.as_second() - resumed.as_second();
    assert!(
        (1..=3600).contains(&overlap),
        "the second sync starts a little before the first one ended ({synced_until}), got {resumed}"
    );
}

async fn synced_revenue_counts_completed_payments_in_the_venues_time_zone(backend: Backend) {
    let synced = synced_square(backend).await;
    let manager = &synced.base.manager;
    let completed = synced.completed();
    assert_eq!(completed.len(), 240);
    let gross = synced.gross();
    let all = revenue(manager, "downtown", "all").await;
    assert_eq!(all["total"], gross, "{all}");
    assert_eq!(all["count"], 240, "{all}");
    assert_eq!(all["refunds"], 0, "{all}");
    assert_eq!(all["currency"], "USD", "{all}");
    assert_eq!(all["timezone"], "America/Los_Angeles", "{all}");
    let average = (gross as f64 / 240.0).round() as i64;
    assert_eq!(all["average"], average, "{all}");
    let sales: Vec<(jiff::Timestamp, i64)> = completed
        .iter()
        .map(|p| (p.created_at, p.total()))
        .collect();
    assert_period_revenue(manager, "downtown", "America/Los_Angeles", &sales).await;
}

async fn synced_sales_are_listed_newest_first_with_their_figures(backend: Backend) {
    let synced = synced_square(backend).await;
    let manager = &synced.base.manager;
    let items = all_transactions(manager, "downtown").await;
    assert_eq!(items.len(), 250);
    assert_newest_first(&items);
    assert_eq!(items[0]["external_id"], "pay-249");
    assert_eq!(items[249]["external_id"], "pay-000");
    let count = |status: &str| items.iter().filter(|t| t["status"] == status).count();
    assert_eq!(
        (count("completed"), count("voided"), count("failed")),
        (240, 5, 5)
    );
    let p2 = items
        .iter()
        .find(|t| t["external_id"] == "pay-002")
        .expect("pay-002 listed");
    assert_eq!(p2["total"], 1000 + 14 + 150);
    assert_eq!(p2["tip"], 150);
    assert_eq!(p2["subtotal"], 1014);
    assert_eq!(p2["currency"], "USD");
    assert_eq!(p2["tender"], "card");
    assert_eq!(p2["card"]["brand"], "VISA");
    assert_eq!(p2["card"]["last4"], "1111");
    assert_eq!(p2["source"], "sync");
    // from/to narrow the list to a window of occurred_at.
    let from = p2["occurred_at"].as_str().unwrap();
    let to = items
        .iter()
        .find(|t| t["external_id"] == "pay-012")
        .unwrap()["occurred_at"]
        .as_str()
        .unwrap();
    let window = transactions_page(
        manager,
        "downtown",
        &format!("from={}&to={}&limit=500", enc(from), enc(to)),
    )
    .await;
    let ids: Vec<&str> = window
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10, "from inclusive, to exclusive: {ids:?}");
    assert_eq!(ids.first(), Some(&"pay-011"));
    assert_eq!(ids.last(), Some(&"pay-002"));
}

async fn a_resync_of_unchanged_payments_stores_nothing_twice(backend: Backend) {
    let synced = synced_square(backend).await;
    let manager = &synced.base.manager;
    let again = sync(manager, "downtown").await;
    assert_counts(&again, 250, 0, 0, 250, 3);
    assert_eq!(all_transactions(manager, "downtown").await.len(), 250);
}

async fn a_payment_refunded_later_is_updated_and_netted_from_revenue(backend: Backend) {
    let synced = synced_square(backend).await;
    let (manager, batch, gross) = (&synced.base.manager, &synced.batch, synced.gross());
    let refunded = batch[10]
        .clone()
        .refunded(500)
        .updated_at(jiff::Timestamp::now());
    synced.base.mock.upsert_payment(refunded.json());
    let after_refund = sync(manager, "downtown").await;
    assert_counts(&after_refund, 250, 0, 1, 249, 3);
    let all = revenue(manager, "downtown", "all").await;
    assert_eq!(all["total"], gross - 500, "{all}");
    assert_eq!(all["refunds"], 500, "{all}");
    assert_eq!(all["count"], 240, "{all}");
    let p10 = with_external_id(manager, "downtown", "pay-010").await;
    assert_eq!(p10.len(), 1);
    assert_eq!(p10[0]["refunded"], 500);
    assert_eq!(p10[0]["total"], batch[10].total());
}

async fn a_payment_cancelled_later_stops_counting(backend: Backend) {
    let synced = synced_square(backend).await;
    let (manager, batch, gross) = (&synced.base.manager, &synced.batch, synced.gross());
    let cancelled = batch[20]
        .clone()
        .status("CANCELED")
        .updated_at(jiff::Timestamp::now());
    synced.base.mock.upsert_payment(cancelled.json());
    let after_cancel = sync(manager, "downtown").await;
    assert_counts(&after_cancel, 250, 0, 1, 249, 3);
    let all = revenue(manager, "downtown", "all").await;
    assert_eq!(all["total"], gross - batch[20].total(), "{all}");
    assert_eq!(all["count"], 239, "{all}");
}

async fn a_sync_retries_server_errors_on_the_listing(backend: Backend) {
    let synced = synced_square(backend).await;
    let mock = &synced.base.mock;
    mock.clear_requests();
    mock.inject(Fault::next(1, 500).on("/v2/payments"));
    mock.inject(Fault::next(1, 503).on("/v2/payments"));
    let flaky = sync(&synced.base.manager, "downtown").await;
    assert_counts(&flaky, 250, 0, 0, 250, 3);
    let statuses: Vec<u16> = mock.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![500, 503, 200, 200, 200],
        "two failures, then the three pages"
    );
}

async fn disconnecting_keeps_the_synced_data_and_stops_syncing(backend: Backend) {
    let synced = synced_square(backend).await;
    let manager = &synced.base.manager;
    let status = manager.get("/pos/status/downtown").await;
    let status_body = status.expect(200);
    assert_eq!(status_body["status"], "CONNECTED", "{}", status.text);
    assert_eq!(status_body["transaction_count"], 250, "{}", status.text);
    assert_eq!(
        status_body["revenue"]["all"]["count"], 240,
        "{}",
        status.text
    );
    assert!(!status_body["last_sync_at"].is_null(), "{}", status.text);
    let gone = manager.post("/pos/disconnect/downtown", &json!({})).await;
    assert_eq!(gone.expect(200)["status"], "DISCONNECTED", "{}", gone.text);
    manager
        .post("/pos/sync/downtown", &json!({}))
        .await
        .expect_error(409, "integration_disconnected");
    assert_eq!(all_transactions(manager, "downtown").await.len(), 250);
}

// ---------------------------------------------------------------------------------------
// Customer links
// ---------------------------------------------------------------------------------------

async fn square_customer_links(backend: Backend) {
    let (_srv, _tenant, manager, mock) = square_kitchen(backend).await;
    connect_square(&manager, &mock, "downtown", json!({})).await;
    first_sync(&manager, "downtown").await;

    // Ada's card is linked before her sale; Bob's afterwards; Cy is a Square customer.
    let link = manager
        .post(
            &format!("/customers/{}/links", enc("+15550100199")),
            &json!({"card_fingerprint": "sq-fp-ada"}),
        )
        .await;
    let link_body = link.expect(201);
    assert_eq!(link_body["phone"], "+15550100199", "{}", link.text);
    manager
        .post(
            &format!("/customers/{}/links", enc("(555) 010-0177")),
            &json!({"provider": "square", "provider_customer_id": "SQCUST-CY"}),
        )
        .await
        .expect(201);
    manager
        .post(
            &format!("/customers/{}/links", enc("+15550100188")),
            &json!({"provider": "square"}),
        )
        .await
        .expect_error(422, "invalid_request");

    let recent = now_ms() - 60_000;
    let payments = [
        SquarePayment::new("pay-ada", 2000, 200, at_ms(recent)).fingerprint("sq-fp-ada"),
        SquarePayment::new("pay-bob", 3000, 0, at_ms(recent + 1000)).fingerprint("sq-fp-bob"),
        SquarePayment::new("pay-cy", 1500, 0, at_ms(recent + 2000))
            .cash()
            .customer("SQCUST-CY"),
        SquarePayment::new("pay-anon", 900, 0, at_ms(recent + 3000)).fingerprint("sq-fp-anon"),
    ];
    mock.add_payments(payments.iter().map(SquarePayment::json));
    assert_counts(&sync(&manager, "downtown").await, 4, 4, 0, 0, 1);

    let items = all_transactions(&manager, "downtown").await;
    let phone_of = |id: &str| {
        items
            .iter()
            .find(|t| t["external_id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed"))["customer"]["phone"]
            .clone()
    };
    assert_eq!(phone_of("pay-ada"), "+15550100199");
    assert_eq!(phone_of("pay-cy"), "+15550100177");
    assert_eq!(phone_of("pay-bob"), Value::Null);
    assert_eq!(phone_of("pay-anon"), Value::Null);

    let ada = transactions_page(
        &manager,
        "downtown",
        &format!("customer={}", enc("+15550100199")),
    )
    .await;
    assert_eq!(ada.len(), 1);
    assert_eq!(ada[0]["external_id"], "pay-ada");

    // Linking Bob's card now attributes his past sale.
    let late = manager
        .post(
            &format!("/customers/{}/links", enc("+15550100166")),
            &json!({"card_fingerprint": "sq-fp-bob"}),
        )
        .await;
    assert_eq!(
        late.expect(201)["attributed_transactions"],
        1,
        "{}",
        late.text
    );
    let bob = transactions_page(
        &manager,
        "downtown",
        &format!("customer={}", enc("+15550100166")),
    )
    .await;
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0]["external_id"], "pay-bob");

    // The same card cannot belong to two customers.
    manager
        .post(
            &format!("/customers/{}/links", enc("+15550100155")),
            &json!({"card_fingerprint": "sq-fp-bob"}),
        )
        .await
        .expect_error(409, "already_linked");
}

// ---------------------------------------------------------------------------------------
// The scheduler: syncs on the interval, backs off and shows ERROR after repeated failures
// ---------------------------------------------------------------------------------------

async fn square_scheduler(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let mock = MockSquare::start().await;
    mock.add_location(square_location(
        "LPATIO003",
        "Patio",
        "America/Denver",
        "USD",
    ));
    approve_host(&srv, "square", mock.host_port()).await;
    let integration = connect_square(
        &manager,
        &mock,
        "patio",
        json!({"location_id": "LPATIO003", "sync_interval_s": 1}),
    )
    .await;
    assert_eq!(integration["sync_interval_s"], 1);
    assert_eq!(integration["timezone"], "America/Denver");
    first_sync(&manager, "patio").await;

    // New payments at the patio (and one at another location) arrive with no manual sync.
    let recent = now_ms() - 30_000;
    let mut here = SquarePayment::new("patio-1", 4200, 0, at_ms(recent));
    here.location_id = "LPATIO003".to_owned();
    let elsewhere = SquarePayment::new("main-1", 999, 0, at_ms(recent));
    mock.add_payments([here.json(), elsewhere.json()]);
    let items = eventually(
        Duration::from_secs(15),
        "the scheduler to sync the patio's payment",
        || async {
            let items = all_transactions(&manager, "patio").await;
            (!items.is_empty()).then_some(items)
        },
    )
    .await;
    assert_eq!(items.len(), 1, "only the patio's payment: {items:?}");
    assert_eq!(items[0]["external_id"], "patio-1");
    assert_eq!(items[0]["source"], "sync");
    assert!(mock
        .requests_to("/v2/payments")
        .iter()
        .all(|r| r.query_param("location_id").as_deref() == Some("LPATIO003")));

    // Square starts refusing the token: scheduled syncs fail, back off, and after
    // repeated failures the integration shows ERROR with the reason.
    mock.clear_requests();
    mock.inject(Fault::always(401));
    let status = eventually(
        Duration::from_secs(20),
        "the integration to show ERROR after repeated sync failures",
        || async {
            let resp = manager.get("/pos/status/patio").await;
            let body = resp.expect(200).clone();
            (body["status"] == "ERROR").then_some(body)
        },
    )
    .await;
    assert!(
        status["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{status}"
    );
    assert!(
        status["consecutive_failures"].as_i64().unwrap_or(0) >= 3,
        "{status}"
    );
    assert!(
        status["recent_sync_errors"].as_array().map_or(0, Vec::len) >= 3,
        "{status}"
    );
    let attempts: Vec<std::time::Instant> = mock
        .requests_to("/v2/payments")
        .iter()
        .map(|r| r.at)
        .collect();
    assert!(attempts.len() >= 3, "{} attempts", attempts.len());
    let gap1 = attempts[1].duration_since(attempts[0]);
    let gap2 = attempts[2].duration_since(attempts[1]);
    assert!(
        gap1 >= Duration::from_millis(1500) && gap2 > gap1,
        "failing syncs back off beyond the 1 s interval: gaps {gap1:?} then {gap2:?}"
    );

    // Fixed upstream: a manual sync succeeds and the integration is CONNECTED again.
    mock.clear_faults();
    sync(&manager, "patio").await;
    let resp = manager.get("/pos/status/patio").await;
    let body = resp.expect(200);
    assert_eq!(body["status"], "CONNECTED", "{}", resp.text);
    assert_eq!(body["consecutive_failures"], 0, "{}", resp.text);
}

both_backends!(
    a_mock_host_not_yet_approved_is_refused_before_any_request_leaves,
    a_base_url_on_an_unapproved_port_is_refused,
    validating_square_reads_the_location_as_square_documents_it_and_stores_nothing,
    main_and_other_locations_resolve_with_their_own_metadata,
    bad_credentials_an_unknown_location_and_a_refusal_each_have_their_own_code,
    a_rate_limited_validation_is_retried_then_reported,
    square_down_for_good_is_an_upstream_error,
    intermittent_server_errors_are_retried_through,
    connecting_square_reads_the_location_and_syncs_seven_days_back,
    a_sync_walks_every_page_and_resumes_a_little_before_the_last_one,
    synced_revenue_counts_completed_payments_in_the_venues_time_zone,
    synced_sales_are_listed_newest_first_with_their_figures,
    a_resync_of_unchanged_payments_stores_nothing_twice,
    a_payment_refunded_later_is_updated_and_netted_from_revenue,
    a_payment_cancelled_later_stops_counting,
    a_sync_retries_server_errors_on_the_listing,
    disconnecting_keeps_the_synced_data_and_stops_syncing,
    square_customer_links,
    square_scheduler
);
