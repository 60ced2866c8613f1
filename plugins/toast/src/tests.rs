use super::*;
use posbridge_sdk::http::{find_header, HttpError, Method, RawRequest};
use posbridge_sdk::log::Level;
use posbridge_sdk::testing::{self, json_response};
use std::cell::Cell;
use std::rc::Rc;

type Expect = fn(&ProviderError) -> bool;
type Patch = fn(&mut Value);

const GUID: &str = "d3ba8a4b-7ee8-4c1f-9c3a-a2a4f0a7b3e1";
const NOW: i64 = 1_795_201_200_000; // 2026-11-20T19:00:00Z

fn connection() -> Connection {
    Connection {
        credentials: vec![
            ("client_id".into(), "client-1".into()),
            ("client_secret".into(), "s3cret".into()),
        ],
        location_id: GUID.into(),
        environment: Environment::Production,
        base_url: None,
    }
}

fn request(start: i64, end: i64, cursor: Option<&str>) -> FetchRequest {
    FetchRequest {
        start,
        end,
        cursor: cursor.map(str::to_owned),
    }
}

fn is_login(req: &RawRequest) -> bool {
    req.url.ends_with(LOGIN_PATH)
}

fn login_response(n: u32) -> Response {
    json_response(
        200,
        &format!(
            r#"{{"@class":".SuccessfulResponse","token":{{"tokenType":"Bearer","scope":null,
            "expiresIn":86400,"accessToken":"tok-{n}","idToken":null,"refreshToken":null}},"status":"SUCCESS"}}"#
        ),
    )
}

/// Answers logins with tokens `tok-1`, `tok-2`, … and everything else with `data`.
/// Returns the login counter.
fn mock_toast(mut data: impl FnMut(&RawRequest) -> Response + 'static) -> Rc<Cell<u32>> {
    let logins = Rc::new(Cell::new(0));
    let counter = logins.clone();
    testing::mock_http(move |req| {
        if is_login(req) {
            counter.set(counter.get() + 1);
            Ok(login_response(counter.get()))
        } else {
            Ok(data(req))
        }
    });
    logins
}

fn data_requests() -> Vec<RawRequest> {
    testing::take_requests()
        .into_iter()
        .filter(|r| !is_login(r))
        .collect()
}

fn setup() {
    testing::reset();
    testing::set_now(NOW);
}

fn restaurant_body() -> &'static str {
    r#"{"guid":"d3ba8a4b-7ee8-4c1f-9c3a-a2a4f0a7b3e1","general":{"name":"Ann's Diner",
        "locationName":"Back Bay","locationCode":"BB","timeZone":"America/New_York",
        "closeoutHour":4,"managementGroupGuid":"g-1","currencyCode":"CAD"},
        "urls":{"website":"https://example.com"},"location":{"city":"Boston"}}"#
}

#[test]
fn info_declares_toast() {
    let info = Toast::info();
    assert_eq!(
        (info.id.as_str(), info.name.as_str(), info.version.as_str()),
        ("toast", "Toast", "1.2.1")
    );
    assert_eq!(
        info.capabilities,
        vec![
            Capability::Validate,
            Capability::FetchTransactions,
            Capability::Webhooks,
            Capability::SubmitOrders,
            Capability::PriceOrders,
            Capability::OrderStatus,
            Capability::FetchCatalog,
            Capability::FetchCatalogIncremental,
            Capability::ReadAvailability,
            Capability::WriteAvailability,
        ]
    );
    let optional: Vec<_> = info.credential_fields[2..]
        .iter()
        .map(|f| (f.name.as_str(), f.secret, f.required))
        .collect();
    assert_eq!(
        optional,
        [
            ("takeout_dining_option", false, false),
            ("delivery_dining_option", false, false),
            ("dine_in_dining_option", false, false),
            ("payment_type", false, false),
        ]
    );
    assert_eq!(
        info.credential_fields[..2],
        vec![
            CredentialField {
                name: "client_id".into(),
                label: "Client ID".into(),
                secret: false,
                required: true
            },
            CredentialField {
                name: "client_secret".into(),
                label: "Client secret".into(),
                secret: true,
                required: true
            },
        ]
    );
    assert_eq!(
        info.allowed_hosts,
        vec!["ws-api.toasttab.com", "ws-sandbox-api.eng.toasttab.com"]
    );
}

#[test]
fn validate_logs_in_and_sends_both_headers() {
    setup();
    mock_toast(|_| json_response(200, restaurant_body()));
    let info = Toast::validate(connection()).unwrap();
    assert_eq!(
        info,
        LocationInfo {
            id: GUID.into(),
            name: "Back Bay".into(),
            timezone: Some("America/New_York".into()),
            currency: Some("CAD".into()),
            merchant_id: None,
            business_name: Some("Ann's Diner".into()),
            status: None,
        }
    );
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 2);
    let login = &requests[0];
    assert_eq!(login.method, Method::Post);
    assert_eq!(
        login.url,
        "https://ws-api.toasttab.com/authentication/v1/authentication/login"
    );
    assert_eq!(
        find_header(&login.headers, "content-type"),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(login.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"clientId": "client-1", "clientSecret": "s3cret", "userAccessType": "TOAST_MACHINE_CLIENT"})
    );
    let get = &requests[1];
    assert_eq!(get.method, Method::Get);
    assert_eq!(
        get.url,
        format!("https://ws-api.toasttab.com/restaurants/v1/restaurants/{GUID}")
    );
    assert_eq!(
        find_header(&get.headers, "authorization"),
        Some("Bearer tok-1")
    );
    assert_eq!(
        find_header(&get.headers, "toast-restaurant-external-id"),
        Some(GUID)
    );
    // The currency is kept for mapping orders, and the token for the next calls.
    assert_eq!(state::get_string(CURRENCY_KEY).as_deref(), Some("CAD"));
    let token = CachedToken::load().unwrap();
    assert_eq!(token.access_token, "tok-1");
    assert_eq!(token.expires_at_ms, NOW + 86_400_000);
    let stored: Value = state::get_json(TOKEN_KEY).unwrap().unwrap();
    assert_eq!(
        stored,
        json!({"access_token": "tok-1", "expires_at_ms": NOW + 86_400_000, "client": client_tag("client-1", "https://ws-api.toasttab.com")})
    );
    // No secret in the logs.
    assert!(!testing::take_logs()
        .iter()
        .any(|(_, m)| m.contains("s3cret") || m.contains("tok-1")));
}

#[test]
fn validate_names_and_environments() {
    setup();
    mock_toast(|_| {
        json_response(
            200,
            r#"{"guid":"g","general":{"name":"Ann's Diner","locationName":"","currencyCode":null}}"#,
        )
    });
    let mut conn = connection();
    conn.environment = Environment::Sandbox;
    state::set_string(CURRENCY_KEY, "EUR").unwrap();
    let info = Toast::validate(conn).unwrap();
    assert_eq!(
        info.name, "Ann's Diner",
        "empty locationName → general.name"
    );
    assert_eq!(info.business_name.as_deref(), Some("Ann's Diner"));
    assert_eq!(info.currency, None);
    assert_eq!(
        state::get_string(CURRENCY_KEY),
        None,
        "stale currency dropped"
    );
    assert!(testing::take_requests().iter().all(|r| r
        .url
        .starts_with("https://ws-sandbox-api.eng.toasttab.com/")));

    mock_toast(|_| json_response(200, r#"{"guid":"g"}"#));
    let mut conn = connection();
    conn.base_url = Some("http://127.0.0.1:9000/".into());
    let info = Toast::validate(conn).unwrap();
    assert_eq!((info.id.as_str(), info.name.as_str()), ("g", "g"));
    let urls: Vec<_> = testing::take_requests()
        .into_iter()
        .map(|r| r.url)
        .collect();
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:9000/authentication/v1/authentication/login",
            "http://127.0.0.1:9000/restaurants/v1/restaurants/d3ba8a4b-7ee8-4c1f-9c3a-a2a4f0a7b3e1"
        ]
    );
}

#[test]
fn validate_errors() {
    let cases: [(u16, Expect); 4] = [
        (404, |e| matches!(e, ProviderError::LocationNotFound(_))),
        (
            403,
            |e| matches!(e, ProviderError::PermissionDenied(m) if m.contains("Restaurant access denied")),
        ),
        (500, |e| matches!(e, ProviderError::Upstream(_))),
        // Since 0.3 a plain 4xx is a permanent `rejected`, in Toast's words (0.2: upstream).
        (
            400,
            |e| matches!(e, ProviderError::Rejected(r) if r.status == Some(400) && r.code.as_deref() == Some("10003")),
        ),
    ];
    for (status, expected) in cases {
        setup();
        mock_toast(move |_| {
            json_response(
                status,
                r#"{"status":403,"code":10003,"message":"Restaurant access denied"}"#,
            )
        });
        let err = Toast::validate(connection()).unwrap_err();
        assert!(expected(&err), "{status}: {err:?}");
    }
    setup();
    let mut conn = connection();
    conn.credentials.retain(|(n, _)| n != "client_secret");
    assert!(matches!(
        Toast::validate(conn),
        Err(ProviderError::InvalidCredentials(m)) if m.contains("client_secret")
    ));
    assert!(testing::take_requests().is_empty());
    let mut conn = connection();
    conn.location_id.clear();
    assert!(matches!(
        Toast::validate(conn),
        Err(ProviderError::LocationNotFound(_))
    ));
}

#[test]
fn login_refused_is_invalid_credentials() {
    setup();
    testing::mock_http(|req| {
        assert!(is_login(req), "no data call after a refused login");
        Ok(json_response(
            401,
            r#"{"status":401,"code":10010,"message":"Access denied","messageKey":null}"#,
        ))
    });
    let err = Toast::validate(connection()).unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidCredentials(m) if m.contains("Toast login") && m.contains("Access denied")),
        "{err:?}"
    );
    assert!(state::get(TOKEN_KEY).is_none());
    // A login answer without a token is upstream's fault.
    testing::mock_http(|_| Ok(json_response(200, r#"{"status":"SUCCESS"}"#)));
    assert!(matches!(
        Toast::validate(connection()),
        Err(ProviderError::Upstream(_))
    ));
}

#[test]
fn the_token_is_cached_until_five_minutes_before_expiry() {
    setup();
    let logins = mock_toast(|_| json_response(200, "[]"));
    let window = request(NOW - 3_600_000, NOW, None);
    Toast::fetch_transactions(connection(), window.clone()).unwrap();
    Toast::fetch_transactions(connection(), window.clone()).unwrap();
    testing::set_now(NOW + 86_400_000 - 5 * 60_000 - 1);
    Toast::fetch_transactions(connection(), window.clone()).unwrap();
    assert_eq!(logins.get(), 1, "one login for three calls");
    let auth: Vec<_> = data_requests()
        .iter()
        .map(|r| find_header(&r.headers, "Authorization").map(str::to_owned))
        .collect();
    assert_eq!(auth, vec![Some("Bearer tok-1".to_owned()); 3]);

    testing::set_now(NOW + 86_400_000 - 5 * 60_000);
    Toast::fetch_transactions(connection(), window.clone()).unwrap();
    assert_eq!(logins.get(), 2, "refreshed 5 minutes before expiry");
    let token = CachedToken::load().unwrap();
    assert_eq!(token.access_token, "tok-2");

    // Another client id (or host) does not reuse the token.
    let mut other = connection();
    other.credentials[0].1 = "client-2".into();
    Toast::fetch_transactions(other, window.clone()).unwrap();
    assert_eq!(logins.get(), 3);
    // An unreadable cached token is ignored, not fatal.
    state::set(TOKEN_KEY, b"garbage").unwrap();
    Toast::fetch_transactions(connection(), window).unwrap();
    assert_eq!(logins.get(), 4);
}

#[test]
fn a_401_logs_in_again_once_and_retries() {
    setup();
    CachedToken {
        access_token: "revoked".into(),
        expires_at_ms: NOW + 3_600_000,
        client: None,
    }
    .save();
    let logins = mock_toast(|req| {
        if find_header(&req.headers, "authorization") == Some("Bearer revoked") {
            json_response(401, r#"{"status":401,"message":"expired token"}"#)
        } else {
            json_response(200, "[]")
        }
    });
    // A data call (sync) rides on the cached token; the 401 triggers one fresh login.
    let page = Toast::fetch_transactions(connection(), request(NOW - 60_000, NOW, None)).unwrap();
    assert!(page.transactions.is_empty());
    assert_eq!(logins.get(), 1);
    let data = data_requests();
    assert_eq!(data.len(), 2);
    assert_eq!(
        find_header(&data[1].headers, "authorization"),
        Some("Bearer tok-1")
    );
    let token = CachedToken::load().unwrap();
    assert_eq!(token.access_token, "tok-1");
}

#[test]
fn a_second_401_is_invalid_credentials() {
    setup();
    let logins = mock_toast(|_| json_response(401, r#"{"message":"nope"}"#));
    let err = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidCredentials(_)),
        "{err:?}"
    );
    assert_eq!(logins.get(), 2, "the first login, then exactly one more");
    assert_eq!(data_requests().len(), 2, "the call, then exactly one retry");
    assert!(
        state::get(TOKEN_KEY).is_none(),
        "the refused token is forgotten"
    );
}

#[test]
fn fetch_sends_the_bulk_query() {
    setup();
    mock_toast(|_| json_response(200, "[]"));
    let start = time::parse_timestamp("2026-11-20T19:00:00Z").unwrap();
    let end = time::parse_timestamp("2026-11-20T20:00:00.250Z").unwrap();
    let page = Toast::fetch_transactions(connection(), request(start, end, None)).unwrap();
    assert_eq!(
        page,
        TransactionPage {
            transactions: vec![],
            next_cursor: None
        }
    );
    let data = data_requests();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].method, Method::Get);
    assert_eq!(
        data[0].url,
        "https://ws-api.toasttab.com/orders/v2/ordersBulk?startDate=2026-11-20T19%3A00%3A00.000%2B0000\
         &endDate=2026-11-20T20%3A00%3A00.250%2B0000&pageSize=100&page=1"
    );
    assert_eq!(
        find_header(&data[0].headers, "Toast-Restaurant-External-ID"),
        Some(GUID)
    );
    assert_eq!(
        find_header(&data[0].headers, "Authorization"),
        Some("Bearer tok-1")
    );
}

fn simple_order(i: usize) -> String {
    format!(
        r#"{{"guid":"o-{i}","openedDate":"2026-11-20T19:00:00.000+0000","modifiedDate":"2026-11-20T19:10:00.000+0000",
            "checks":[{{"amount":1,"taxAmount":0.1,"paymentStatus":"CLOSED","payments":[{{"type":"CASH","amount":1.1,"tipAmount":0,"paymentStatus":"CAPTURED"}}]}}]}}"#
    )
}

fn orders(n: usize) -> String {
    let all: Vec<_> = (0..n).map(simple_order).collect();
    format!("[{}]", all.join(","))
}

#[test]
fn fetch_follows_the_link_header() {
    setup();
    let next = "https://ws-api.toasttab.com/orders/v2/ordersBulk?startDate=2026-11-20T19%3A00%3A00.000%2B0000&endDate=2026-11-20T20%3A00%3A00.000%2B0000&pageSize=100&page=2";
    let link = format!(
        r#"<https://ws-api.toasttab.com/orders/v2/ordersBulk?page=0>; rel="prev", <{next}>; rel="next""#
    );
    let full = orders(100);
    mock_toast(move |_| {
        let mut r = json_response(200, &full);
        r.headers.push(("Link".into(), link.clone()));
        r
    });
    let page =
        Toast::fetch_transactions(connection(), request(NOW, NOW + 3_600_000, None)).unwrap();
    assert_eq!(page.transactions.len(), 100);
    assert_eq!(page.next_cursor.as_deref(), Some(next));

    // The cursor is fetched as is; a short page ends the window even with a `next` link.
    let short = orders(3);
    mock_toast(move |_| {
        let mut r = json_response(200, &short);
        r.headers.push((
            "link".into(),
            "<https://ws-api.toasttab.com/orders/v2/ordersBulk?page=3>; rel=next".into(),
        ));
        r
    });
    testing::take_requests();
    let page = Toast::fetch_transactions(connection(), request(NOW, NOW + 1, Some(next))).unwrap();
    assert_eq!(page.transactions.len(), 3);
    assert_eq!(page.next_cursor, None);
    let data = data_requests();
    assert_eq!(data[0].url, next);
    assert_eq!(
        find_header(&data[0].headers, "Toast-Restaurant-External-ID"),
        Some(GUID)
    );

    // A full page without a `next` link is the last one.
    let full = orders(100);
    mock_toast(move |_| json_response(200, &full));
    let page = Toast::fetch_transactions(connection(), request(NOW, NOW + 1, None)).unwrap();
    assert_eq!(page.next_cursor, None);

    // A relative `next` link is resolved against the request.
    let full = orders(100);
    mock_toast(move |_| {
        let mut r = json_response(200, &full);
        r.headers.push((
            "Link".into(),
            "</orders/v2/ordersBulk?page=2>; rel=\"next\"".into(),
        ));
        r
    });
    let mut conn = connection();
    conn.base_url = Some("http://127.0.0.1:9000".into());
    let page = Toast::fetch_transactions(conn, request(NOW, NOW + 1, None)).unwrap();
    assert_eq!(
        page.next_cursor.as_deref(),
        Some("http://127.0.0.1:9000/orders/v2/ordersBulk?page=2")
    );

    assert!(matches!(
        Toast::fetch_transactions(connection(), request(0, 1, Some("page=2"))),
        Err(ProviderError::Upstream(_))
    ));
}

#[test]
fn rate_limits() {
    setup();
    mock_toast(|_| {
        let mut r = json_response(429, r#"{"message":"Too many requests"}"#);
        r.headers.push(("Retry-After".into(), "7".into()));
        r
    });
    let err = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap_err();
    assert!(
        matches!(&err, ProviderError::RateLimited(RateLimit { retry_after_ms: Some(7000), message }) if message.contains("Too many requests")),
        "{err:?}"
    );
    // Without Retry-After, the reset header says how long.
    mock_toast(|_| {
        let mut r = json_response(429, "");
        r.headers.push((
            "X-Toast-RateLimit-Reset".into(),
            ((NOW + 12_000) / 1000).to_string(),
        ));
        r
    });
    let err = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::RateLimited(RateLimit {
                retry_after_ms: Some(12_000),
                ..
            })
        ),
        "{err:?}"
    );
    mock_toast(|_| json_response(429, ""));
    assert!(matches!(
        Toast::fetch_transactions(connection(), request(0, 1, None)),
        Err(ProviderError::RateLimited(RateLimit {
            retry_after_ms: None,
            ..
        }))
    ));
}

#[test]
fn an_exhausted_rate_limit_is_logged_not_fatal() {
    setup();
    let body = orders(2);
    mock_toast(move |_| {
        let mut r = json_response(200, &body);
        r.headers
            .push(("X-Toast-RateLimit-Remaining".into(), "0".into()));
        r.headers.push((
            "X-Toast-RateLimit-Reset".into(),
            ((NOW + 3_000) / 1000).to_string(),
        ));
        r
    });
    testing::take_logs();
    let page = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap();
    assert_eq!(page.transactions.len(), 2);
    let logs = testing::take_logs();
    assert!(
        logs.iter()
            .any(|(l, m)| *l == Level::Warn && m.contains("resets in 3000 ms")),
        "{logs:?}"
    );
}

#[test]
fn fetch_skips_unusable_orders_and_refuses_non_arrays() {
    setup();
    mock_toast(|_| {
        json_response(
            200,
            &format!(
                r#"[{},{{"guid":"bad-money","openedDate":"2026-11-20T19:00:00.000+0000","checks":[{{"amount":12.345}}]}},{{"guid":"no-date"}},"x"]"#,
                simple_order(1)
            ),
        )
    });
    testing::take_logs();
    let page = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap();
    assert_eq!(page.transactions.len(), 1);
    let warnings: Vec<_> = testing::take_logs()
        .into_iter()
        .filter(|(l, _)| *l == Level::Warn)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("bad-money") && warnings[0].contains("checks[0].amount"));

    mock_toast(|_| json_response(200, r#"{"orders":[]}"#));
    assert!(matches!(
        Toast::fetch_transactions(connection(), request(0, 1, None)),
        Err(ProviderError::Upstream(_))
    ));
    testing::mock_http(|_| Err(HttpError::Denied("host not approved".into())));
    assert_eq!(
        Toast::fetch_transactions(connection(), request(0, 1, None)),
        Err(ProviderError::PermissionDenied("host not approved".into()))
    );
}

/// A closed dine-in order in Toast's shape: two checks, a card payment with a tip and a
/// partial refund, a voided cash payment, a discount, a customer.
const ORDER: &str = r#"{
    "guid": "5b1d0f2e-0000-4000-8000-000000000001",
    "entityType": "Order",
    "openedDate": "2026-11-20T18:40:00.000+0000",
    "closedDate": "2026-11-20T19:02:03.456+0000",
    "modifiedDate": "2026-11-20T19:30:00.000+0000",
    "businessDate": 20261120,
    "voided": false,
    "deleted": false,
    "source": "In Store",
    "numberOfGuests": 2,
    "checks": [
        {
            "guid": "c-1",
            "amount": 8.5,
            "taxAmount": 0.68,
            "totalAmount": 9.18,
            "paymentStatus": "CLOSED",
            "appliedDiscounts": [{"name": "Happy hour", "discountAmount": 1.5}],
            "customer": {"guid": "cust-1", "firstName": "Ann", "lastName": "Lee",
                         "phone": "5550100199", "email": "ann@example.com"},
            "payments": [
                {"guid": "p-0", "type": "CASH", "amount": 9.18, "tipAmount": 5,
                 "paymentStatus": "VOIDED", "refundStatus": "NONE"},
                {"guid": "p-1", "type": "CREDIT", "amount": 9.18, "tipAmount": 1.82,
                 "cardType": "VISA", "last4Digits": "1111", "paymentStatus": "CAPTURED",
                 "refundStatus": "PARTIAL",
                 "refund": {"refundAmount": 2.25, "tipRefundAmount": 0.5,
                            "refundDate": "2026-11-20T19:25:00.000+0000"}}
            ]
        },
        {
            "guid": "c-2",
            "amount": 0.1,
            "taxAmount": 0.2,
            "totalAmount": 0.3,
            "paymentStatus": "PAID",
            "customer": null,
            "appliedDiscounts": [],
            "payments": [
                {"guid": "p-2", "type": "GIFTCARD", "amount": 0.3, "tipAmount": 0.2,
                 "paymentStatus": "CAPTURED", "refundStatus": "NONE",
                 "refund": {"refundAmount": 99, "tipRefundAmount": 0}}
            ]
        }
    ]
}"#;

fn order(patch: impl FnOnce(&mut Value)) -> Value {
    let mut value: Value = serde_json::from_str(ORDER).unwrap();
    patch(&mut value);
    value
}

fn map(value: Value) -> Result<Transaction, String> {
    to_transaction(value, "USD", Some(GUID))
}

#[test]
fn maps_an_order_exactly() {
    let t = map(order(|_| {})).unwrap();
    assert_eq!(
        t,
        Transaction {
            external_id: "5b1d0f2e-0000-4000-8000-000000000001".into(),
            order_id: Some("5b1d0f2e-0000-4000-8000-000000000001".into()),
            location_id: Some(GUID.into()),
            occurred_at: time::parse_timestamp("2026-11-20T19:02:03.456Z").unwrap(),
            updated_at: Some(time::parse_timestamp("2026-11-20T19:30:00Z").unwrap()),
            currency: "USD".into(),
            // 8.5 + 0.1 = 860 cents; tax 0.68 + 0.2 = 88; tips 1.82 + 0.2 = 202 (the voided
            // cash payment's 5 does not count).
            subtotal: 860,
            tax: 88,
            tip: 202,
            total: 860 + 88 + 202,
            discount: 150,
            // 2.25 + 0.5 on the PARTIAL refund; the NONE refund is ignored.
            refunded: 275,
            tender: Tender::Card,
            card: Some(CardInfo {
                brand: Some("VISA".into()),
                last4: Some("1111".into()),
                fingerprint: None,
            }),
            customer: Some(CustomerRef {
                provider_customer_id: Some("cust-1".into()),
                phone: Some("5550100199".into()),
                email: Some("ann@example.com".into()),
                name: Some("Ann Lee".into()),
            }),
            status: TransactionStatus::Completed,
            staff: None,
            line_items: Vec::new(),
            refunds: Vec::new(),
        }
    );
}

#[test]
fn money_is_converted_from_the_number_text() {
    let amounts = |amount: &str, tax: &str| {
        let body = format!(
            r#"{{"guid":"o","openedDate":"2026-11-20T19:00:00.000+0000",
                "checks":[{{"amount":{amount},"taxAmount":{tax},"paymentStatus":"OPEN"}}]}}"#
        );
        map(serde_json::from_str(&body).unwrap())
    };
    let t = amounts("8.5", "0").unwrap();
    assert_eq!((t.subtotal, t.total), (850, 850));
    // 0.1 + 0.2 is 0.30000000000000004 in f64; here it is exactly 30 cents.
    let t = amounts("0.1", "0.2").unwrap();
    assert_eq!((t.subtotal, t.tax, t.total), (10, 20, 30));
    let t = amounts("0.30", "0.10000").unwrap();
    assert_eq!((t.subtotal, t.tax), (30, 10));
    assert!(
        amounts("1.15", "2.675").is_err(),
        "2.675 has three decimals"
    );
    let t = amounts("\"19.99\"", "1").unwrap();
    assert_eq!(t.subtotal, 1999, "decimal strings too");
    let t = amounts("12345678901234567.89", "0").unwrap();
    assert_eq!(
        t.subtotal, 1_234_567_890_123_456_789,
        "beyond f64's exact range"
    );
    let err = amounts("12.345", "0").unwrap_err();
    assert!(
        err.contains("checks[0].amount") && err.contains("12.345"),
        "{err}"
    );
    let err = amounts("1", "1e2").unwrap_err();
    assert!(err.contains("checks[0].taxAmount"), "{err}");
    assert!(amounts("true", "0").is_err());
    let err = map(order(|o| o["checks"] = "x".into())).unwrap_err();
    assert!(err.contains("checks: expected an array"), "{err}");
    let err = map(order(|o| o["checks"][1]["payments"] = json!({}))).unwrap_err();
    assert!(
        err.contains("checks[1].payments: expected an array"),
        "{err}"
    );
    let err = map(order(|o| {
        o["checks"][0]["payments"][1]["refund"]["refundAmount"] =
            serde_json::from_str("2.255").unwrap()
    }))
    .unwrap_err();
    assert!(
        err.contains("checks[0].payments[1].refund.refundAmount"),
        "{err}"
    );
    assert!(amounts("92233720368547758.07", "0.01").is_err(), "overflow");
    // Another currency's precision applies.
    let body =
        r#"{"guid":"o","openedDate":"2026-11-20T19:00:00.000+0000","checks":[{"amount":1500}]}"#;
    let t = to_transaction(serde_json::from_str(body).unwrap(), "JPY", None).unwrap();
    assert_eq!(
        (t.subtotal, t.currency.as_str(), t.location_id),
        (1500, "JPY", None)
    );
    let body =
        r#"{"guid":"o","openedDate":"2026-11-20T19:00:00.000+0000","checks":[{"amount":15.5}]}"#;
    assert!(to_transaction(serde_json::from_str(body).unwrap(), "JPY", None).is_err());
}

#[test]
fn statuses() {
    let status = |patch: fn(&mut Value)| map(order(patch)).unwrap().status;
    assert_eq!(status(|_| {}), TransactionStatus::Completed);
    assert_eq!(
        status(|o| o["voided"] = true.into()),
        TransactionStatus::Voided
    );
    assert_eq!(
        status(|o| o["deleted"] = true.into()),
        TransactionStatus::Voided
    );
    // No payment, every check open: pending.
    assert_eq!(
        status(|o| {
            for c in o["checks"].as_array_mut().unwrap() {
                c["payments"] = json!([]);
                c["paymentStatus"] = "OPEN".into();
            }
        }),
        TransactionStatus::Pending
    );
    // Only voided payments on open checks: still pending.
    assert_eq!(
        status(|o| {
            for c in o["checks"].as_array_mut().unwrap() {
                c["paymentStatus"] = "OPEN".into();
                for p in c["payments"].as_array_mut().unwrap() {
                    p["paymentStatus"] = "VOIDED".into();
                }
            }
        }),
        TransactionStatus::Pending
    );
    // Every payment voided on a closed check: voided.
    assert_eq!(
        status(|o| {
            for c in o["checks"].as_array_mut().unwrap() {
                for p in c["payments"].as_array_mut().unwrap() {
                    p["paymentStatus"] = "VOIDED".into();
                }
            }
        }),
        TransactionStatus::Voided
    );
    // Every payment declined: failed.
    assert_eq!(
        status(|o| {
            for c in o["checks"].as_array_mut().unwrap() {
                for p in c["payments"].as_array_mut().unwrap() {
                    p["paymentStatus"] = "DENIED".into();
                }
            }
        }),
        TransactionStatus::Failed
    );
    // Every check voided: voided.
    assert_eq!(
        status(|o| {
            for c in o["checks"].as_array_mut().unwrap() {
                c["voided"] = true.into();
            }
        }),
        TransactionStatus::Voided
    );
    // A closed check without payments (comped): completed.
    assert_eq!(
        status(|o| o["checks"] = json!([{"amount": 0, "paymentStatus": "CLOSED"}])),
        TransactionStatus::Completed
    );
    // No checks at all: pending.
    assert_eq!(
        status(|o| o["checks"] = json!([])),
        TransactionStatus::Pending
    );
    assert_eq!(
        status(|o| o["checks"] = Value::Null),
        TransactionStatus::Pending
    );
}

/// One check of $30.00 + $2.40 tax, still OPEN, with one captured $10.00 payment (+ $1.50 tip)
/// and one payment only authorised.
fn open_check_order() -> Value {
    json!({
        "guid": "o-open",
        "openedDate": "2026-11-20T19:00:00.000+0000",
        "modifiedDate": "2026-11-20T19:10:00.000+0000",
        "checks": [{
            "guid": "c-open",
            "amount": 30.0,
            "taxAmount": 2.4,
            "totalAmount": 32.4,
            "paymentStatus": "OPEN",
            "appliedDiscounts": [{"discountAmount": 3}],
            "payments": [
                {"guid": "p-a", "type": "CREDIT", "amount": 10.0, "tipAmount": 1.5,
                 "cardType": "AMEX", "last4Digits": "0005",
                 "paymentStatus": "CAPTURED", "refundStatus": "NONE"},
                {"guid": "p-b", "type": "CASH", "amount": 7.0, "tipAmount": 1,
                 "paymentStatus": "AUTHORIZED", "refundStatus": "NONE"}
            ]
        }]
    })
}

#[test]
fn an_open_check_with_a_partial_payment_counts_what_was_captured() {
    let t = map(open_check_order()).unwrap();
    // $10.00 captured plus the $1.50 tip; not the check's $32.40, not the authorisation.
    assert_eq!(
        (t.subtotal, t.tax, t.tip, t.discount, t.total, t.refunded),
        (1000, 0, 150, 0, 1150, 0)
    );
    assert_eq!(t.status, TransactionStatus::Completed);
    assert_eq!(t.tender, Tender::Card);
    assert_eq!(
        t.card.as_ref().and_then(|c| c.last4.as_deref()),
        Some("0005")
    );

    // A refund of the captured payment is still netted.
    let mut refunded = open_check_order();
    refunded["checks"][0]["payments"][0]["refundStatus"] = "PARTIAL".into();
    refunded["checks"][0]["payments"][0]["refund"] = json!({"refundAmount": 2.5});
    assert_eq!(map(refunded).unwrap().refunded, 250);

    // Only an authorisation on the open check: nothing captured, pending for what is due.
    let mut authorised = open_check_order();
    authorised["checks"][0]["payments"][0]["paymentStatus"] = "AUTHORIZED".into();
    let t = map(authorised).unwrap();
    assert_eq!(t.status, TransactionStatus::Pending);
    assert_eq!((t.subtotal, t.tax, t.tip, t.total), (3000, 240, 0, 3240));

    // The same order once the check is paid: the full amounts, a newer version of the sale.
    let mut closed = open_check_order();
    closed["modifiedDate"] = "2026-11-20T19:40:00.000+0000".into();
    closed["closedDate"] = "2026-11-20T19:40:00.000+0000".into();
    closed["checks"][0]["paymentStatus"] = "PAID".into();
    closed["checks"][0]["payments"][1]["paymentStatus"] = "CAPTURED".into();
    closed["checks"][0]["payments"][1]["amount"] = json!(22.4);
    let full = map(closed).unwrap();
    let partial = map(open_check_order()).unwrap();
    assert_eq!(full.external_id, partial.external_id);
    assert!(full.updated_at > partial.updated_at);
    assert_eq!(full.status, TransactionStatus::Completed);
    assert_eq!(
        (full.subtotal, full.tax, full.tip, full.discount, full.total),
        (3000, 240, 250, 300, 3000 + 240 + 250)
    );

    // A paid check and an open one: the paid one in full, the open one for its capture.
    let mut mixed = order(|_| {});
    mixed["checks"][1] = open_check_order()["checks"][0].clone();
    let t = map(mixed).unwrap();
    // Check 0: 8.50 + 0.68 tax + 1.82 tip; check 1: 10.00 captured + 1.50 tip.
    assert_eq!((t.subtotal, t.tax, t.tip), (850 + 1000, 68, 182 + 150));
    assert_eq!(t.status, TransactionStatus::Completed);
}

#[test]
fn voided_checks_and_payments_are_not_spend() {
    let t = map(order(|o| o["checks"][1]["deleted"] = true.into())).unwrap();
    assert_eq!((t.subtotal, t.tax, t.tip), (850, 68, 182));
    // A fully refunded payment.
    let t = map(order(|o| {
        o["checks"][0]["payments"][1]["refundStatus"] = "FULL".into();
        o["checks"][0]["payments"][1]["refund"] =
            json!({"refundAmount": 9.18, "tipRefundAmount": 1.82});
    }))
    .unwrap();
    assert_eq!(t.refunded, 1100);
    // A refund object without a status still counts; a refund on a voided payment does not.
    let t = map(order(|o| {
        o["checks"][0]["payments"][1]
            .as_object_mut()
            .unwrap()
            .remove("refundStatus");
        o["checks"][0]["payments"][0]["refundStatus"] = "FULL".into();
        o["checks"][0]["payments"][0]["refund"] = json!({"refundAmount": 50});
    }))
    .unwrap();
    assert_eq!(t.refunded, 275);
}

#[test]
fn tenders_cards_and_customers() {
    for (kind, tender) in [
        ("CREDIT", Tender::Card),
        ("CASH", Tender::Cash),
        ("GIFTCARD", Tender::GiftCard),
        ("OTHER", Tender::Other),
        ("HOUSE_ACCOUNT", Tender::Other),
        ("UNDETERMINED", Tender::Other),
    ] {
        let t = map(order(|o| {
            o["checks"][0]["payments"][1]["type"] = kind.into()
        }))
        .unwrap();
        assert_eq!(t.tender, tender, "{kind}");
    }
    // The first non-voided payment decides; no card details → no card.
    let t = map(order(|o| {
        let payments = o["checks"][0]["payments"].as_array_mut().unwrap();
        payments.remove(1);
    }))
    .unwrap();
    assert_eq!((t.tender, t.card), (Tender::GiftCard, None));
    // No payments at all: other.
    let t = map(order(|o| o["checks"] = json!([{"amount": 1}]))).unwrap();
    assert_eq!((t.tender, t.customer), (Tender::Other, None));
    // The first check with a customer; a name from one part only.
    let t = map(order(|o| {
        o["checks"][0]["customer"] = Value::Null;
        o["checks"][1]["customer"] =
            json!({"guid": "cust-2", "firstName": " Bo ", "lastName": null});
    }))
    .unwrap();
    assert_eq!(
        t.customer,
        Some(CustomerRef {
            provider_customer_id: Some("cust-2".into()),
            phone: None,
            email: None,
            name: Some("Bo".into())
        })
    );
}

#[test]
fn dates() {
    let t = map(order(|o| {
        o.as_object_mut().unwrap().remove("closedDate");
    }))
    .unwrap();
    assert_eq!(
        t.occurred_at,
        time::parse_timestamp("2026-11-20T18:40:00Z").unwrap()
    );
    let t = map(order(|o| o["closedDate"] = Value::Null)).unwrap();
    assert_eq!(
        t.occurred_at,
        time::parse_timestamp("2026-11-20T18:40:00Z").unwrap()
    );
    for (patch, needle) in [
        (
            (|o: &mut Value| {
                let o = o.as_object_mut().unwrap();
                o.remove("closedDate");
                o.remove("openedDate");
            }) as Patch,
            "openedDate",
        ),
        (|o| o["closedDate"] = "2026-11-20".into(), "closedDate"),
        (|o| o["modifiedDate"] = "later".into(), "modifiedDate"),
        (|o| o["guid"] = "".into(), "guid"),
        (
            |o| {
                o.as_object_mut().unwrap().remove("guid");
            },
            "guid",
        ),
    ] {
        let err = map(order(patch)).unwrap_err();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn orders_use_the_saved_currency() {
    setup();
    state::set_string(CURRENCY_KEY, "CAD").unwrap();
    mock_toast(|_| json_response(200, &orders(1)));
    let page = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap();
    assert_eq!(page.transactions[0].currency, "CAD");
    assert_eq!(page.transactions[0].location_id.as_deref(), Some(GUID));
    state::delete(CURRENCY_KEY);
    let page = Toast::fetch_transactions(connection(), request(0, 1, None)).unwrap();
    assert_eq!(page.transactions[0].currency, "USD");
}

const SECRET: &str = "toast-webhook-secret";

fn webhook_body(event_type: &str, order: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-11-20T19:30:01.123+0000","eventCategory":"orders","eventType":"{event_type}",
            "guid":"evt-7f3a","details":{{"restaurantGuid":"{GUID}","order":{order}}}}}"#
    )
}

fn signed(body: &str, secret: &str, timestamp: &str) -> Webhook {
    let sig = signature::base64_encode(&signature::hmac_sha256(
        secret.as_bytes(),
        &[body.as_bytes(), timestamp.as_bytes()],
    ));
    Webhook {
        url: "https://hub.example.com/webhooks/toast/1".into(),
        headers: vec![
            ("Toast-Signature".into(), sig),
            ("Toast-Event-Type".into(), "order_updated".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn verifies_signatures_over_body_and_timestamp() {
    let body = webhook_body("order_updated", ORDER);
    let ok = signed(&body, SECRET, "2026-11-20T19:30:01.123+0000");
    assert!(Toast::verify_webhook(ok.clone(), SECRET.into()));
    let mut lower = ok.clone();
    lower.headers[0].0 = "toast-signature".into();
    assert!(Toast::verify_webhook(lower, SECRET.into()));

    // One byte changed anywhere: refused.
    assert!(!Toast::verify_webhook(
        ok.clone(),
        "toast-webhook-secreT".into()
    ));
    let mut tampered = ok.clone();
    tampered.body = body.replacen("8.5", "9.5", 1).into_bytes();
    assert!(!Toast::verify_webhook(tampered, SECRET.into()));
    // Signed without the timestamp, or with another one: refused.
    assert!(!Toast::verify_webhook(
        signed(&body, SECRET, ""),
        SECRET.into()
    ));
    assert!(!Toast::verify_webhook(
        signed(&body, SECRET, "2026-11-20T19:30:01.124+0000"),
        SECRET.into()
    ));
    // The timestamp is part of the message: changing it in the body breaks the signature.
    let mut replayed = ok.clone();
    replayed.body = body.replace("19:30:01.123", "19:30:01.124").into_bytes();
    assert!(!Toast::verify_webhook(replayed, SECRET.into()));
    // No header, no timestamp, not JSON, empty secret.
    let mut none = ok.clone();
    none.headers.retain(|(n, _)| n != "Toast-Signature");
    assert!(!Toast::verify_webhook(none, SECRET.into()));
    let no_ts = r#"{"eventType":"order_updated","guid":"e"}"#;
    assert!(!Toast::verify_webhook(
        signed(no_ts, SECRET, ""),
        SECRET.into()
    ));
    assert!(!Toast::verify_webhook(
        signed("not json", SECRET, ""),
        SECRET.into()
    ));
    assert!(!Toast::verify_webhook(ok, String::new()));
}

#[test]
fn parses_order_webhooks() {
    testing::reset();
    state::set_string(CURRENCY_KEY, "CAD").unwrap();
    let body = webhook_body("order_updated", ORDER);
    let event = Toast::parse_webhook(signed(&body, SECRET, "")).unwrap();
    assert_eq!(event.event_id, "evt-7f3a");
    assert_eq!(event.event_type, "order_updated");
    let expected = to_transaction(order(|_| {}), "CAD", Some(GUID)).unwrap();
    assert_eq!(event.transactions, vec![expected]);

    // Channel orders come as `channel_order_updated`, with the complete order too.
    let body = webhook_body("channel_order_updated", ORDER);
    let event = Toast::parse_webhook(signed(&body, SECRET, "")).unwrap();
    assert_eq!(event.event_type, "channel_order_updated");
    assert_eq!(
        event.transactions,
        vec![to_transaction(order(|_| {}), "CAD", Some(GUID)).unwrap()]
    );
    // …and a malformed one is refused like any order event.
    let body = webhook_body("channel_order_updated", r#"{"guid":"o"}"#);
    assert!(matches!(
        Toast::parse_webhook(signed(&body, SECRET, "")),
        Err(ProviderError::BadPayload(_))
    ));

    let body = webhook_body("menu_updated", "null");
    let event = Toast::parse_webhook(signed(&body, SECRET, "")).unwrap();
    assert_eq!(
        (event.event_id.as_str(), event.transactions.len()),
        ("evt-7f3a", 0)
    );
}

#[test]
fn malformed_webhooks_are_bad_payloads() {
    testing::reset();
    let bad = |body: &str| {
        let result = Toast::parse_webhook(signed(body, SECRET, ""));
        assert!(
            matches!(result, Err(ProviderError::BadPayload(_))),
            "{body}: {result:?}"
        );
    };
    bad("");
    bad("[1]");
    bad(r#"{"eventType":"order_updated"}"#);
    bad(r#"{"eventType":"order_updated","guid":""}"#);
    bad(r#"{"guid":"e1"}"#);
    bad(&webhook_body("order_updated", "null"));
    bad(&webhook_body("order_updated", r#""o""#));
    bad(&webhook_body(
        "order_updated",
        r#"{"guid":"o","openedDate":"2026-11-20T19:00:00.000+0000","checks":[{"amount":12.345}]}"#,
    ));
    bad(&webhook_body("order_updated", r#"{"guid":"o"}"#));
}

#[test]
fn push_is_unsupported() {
    assert!(matches!(
        Toast::parse_push(b"[]".to_vec()),
        Err(ProviderError::Unsupported(_))
    ));
}

/// Byte-level mutations of `seed` from a fixed LCG (no extra crates).
fn mutations(seed: &str, count: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let bytes = seed.as_bytes();
    (0..count)
        .map(|_| {
            let mut b = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = next() % b.len().max(1);
                match next() % 4 {
                    0 => b.truncate(at),
                    1 if at < b.len() => b[at] = b"{}[]\":,0.-e9 nt<>;"[next() % 18],
                    2 => b.insert(at.min(b.len()), b"{}[]\":,0.-e9 nt<>;"[next() % 18]),
                    _ if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {}
                }
            }
            b
        })
        .collect()
}

#[test]
fn mutated_input_never_panics() {
    setup();
    let body = webhook_body("order_updated", ORDER);
    for bytes in mutations(&body, 3000) {
        let w = Webhook {
            url: String::new(),
            headers: vec![("Toast-Signature".into(), "AAAA".into())],
            body: bytes.clone(),
        };
        let _ = Toast::verify_webhook(w.clone(), "k".into());
        let _ = Toast::parse_webhook(w);
        let page = [b"[".as_slice(), &bytes, b"]"].concat();
        let link = String::from_utf8_lossy(&bytes).into_owned();
        mock_toast(move |_| Response {
            status: 200,
            headers: vec![
                ("Link".into(), link.clone()),
                ("X-Toast-RateLimit-Remaining".into(), "0".into()),
                (
                    "X-Toast-RateLimit-Reset".into(),
                    "99999999999999999999".into(),
                ),
            ],
            body: page.clone(),
        });
        let _ = Toast::fetch_transactions(connection(), request(0, 1, None));
        let _ = links::parse(&String::from_utf8_lossy(&bytes));
        let _ = links::resolve(&String::from_utf8_lossy(&bytes), "a/b");
    }
}

#[test]
fn validate_checks_the_given_secret_even_with_a_cached_token() {
    setup();
    // Logins succeed only with the right secret.
    testing::mock_http(|req| {
        if is_login(req) {
            let body =
                String::from_utf8_lossy(req.body.as_deref().unwrap_or_default()).into_owned();
            if body.contains("\"s3cret\"") {
                return Ok(login_response(1));
            }
            return Ok(json_response(
                401,
                r#"{"status":401,"message":"Unauthorized"}"#,
            ));
        }
        Ok(json_response(200, restaurant_body()))
    });
    Toast::validate(connection()).unwrap();
    let mut wrong = connection();
    wrong.credentials[1].1 = "wrong-secret".into();
    let err = Toast::validate(wrong).unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidCredentials(_)),
        "{err:?}"
    );
}

// ---- two-way (contract 0.3) -------------------------------------------------------------

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = &rest[rest.find('/').unwrap_or(rest.len())..];
    path.split('?').next().unwrap_or(path)
}

fn body_json(req: &RawRequest) -> Value {
    serde_json::from_slice(req.body.as_deref().unwrap_or(b"null")).unwrap()
}

const TAKE_OUT: &str = "6e2f7a1c-take-out";
const DELIVERY: &str = "9a1b3c4d-delivery";
const ONLINE_PAYMENT: &str = "0f3e4d5c-online";

/// `GET /config/v2/diningOptions` and `/alternatePaymentTypes`, as the configuration API
/// answers them (trimmed), the dining options over two pages.
fn config_answer(req: &RawRequest) -> Option<Response> {
    Some(match path_of(&req.url) {
        "/config/v2/diningOptions" if !req.url.contains("pageToken") => {
            let mut r = json_response(
                200,
                &format!(
                    r#"[{{"guid":"{TAKE_OUT}","entityType":"DiningOption","name":"Takeout","behavior":"TAKE_OUT","curbside":false}},
                       {{"guid":"c0ffee-dine-in","entityType":"DiningOption","name":"Dine In","behavior":"DINE_IN"}}]"#
                ),
            );
            r.headers
                .push(("Toast-Next-Page-Token".into(), "p2".into()));
            r
        }
        "/config/v2/diningOptions" => {
            assert!(req.url.ends_with("?pageToken=p2"), "{}", req.url);
            json_response(
                200,
                &format!(r#"[{{"guid":"{DELIVERY}","name":"Delivery","behavior":"DELIVERY"}}]"#),
            )
        }
        "/config/v2/alternatePaymentTypes" => json_response(
            200,
            &format!(
                r#"[{{"guid":"{ONLINE_PAYMENT}","entityType":"AlternatePaymentType","name":"Web shop"}},
                   {{"guid":"1111-house","name":"House account"}}]"#
            ),
        ),
        _ => return None,
    })
}

fn toast_order() -> Order {
    Order {
        our_order_id: "ord_7Hq2".into(),
        currency: "USD".into(),
        lines: vec![OrderLine {
            line_id: "l1".into(),
            item_id: Some("item-burger".into()),
            item_group_id: Some("group-burgers".into()),
            variation_id: None,
            name: "Burger".into(),
            quantity: "2".into(),
            unit_price: 1050,
            modifiers: vec![OrderModifier {
                provider_id: Some("opt-cheese".into()),
                group_id: Some("mg-toppings".into()),
                name: "Cheese".into(),
                quantity: 1,
                unit_price: 100,
            }],
            note: None,
        }],
        fulfilment: Fulfilment {
            kind: FulfilmentKind::Pickup,
            customer_name: "Ann Marie Example".into(),
            customer_phone: Some("5555550123".into()),
            customer_email: Some("ann@example.com".into()),
            scheduled_at: Some(NOW + 30 * 60 * 1000),
            prep_time_minutes: None,
            delivery_address: vec![],
            note: None,
        },
        total: 2300,
        payment: Some(ExternalPayment {
            amount: 2300,
            tip: 350,
            source: "web shop".into(),
        }),
        source_name: "web shop".into(),
    }
}

/// A Toast order as the orders API answers it (trimmed).
fn toast_order_json(
    approval: &str,
    fulfillment: &[&str],
    voided: bool,
    payment_status: &str,
) -> Value {
    let selections: Vec<Value> = fulfillment
        .iter()
        .enumerate()
        .map(|(i, f)| {
            serde_json::json!({"guid": format!("sel-{i}"), "entityType": "MenuItemSelection",
                "item": {"guid": "item-burger"}, "quantity": 2, "price": 23.0, "preDiscountPrice": 23.0,
                "fulfillmentStatus": f, "voided": false})
        })
        .collect();
    let text = format!(
        r#"{{"guid":"toast-order-1","entityType":"Order","externalId":"ord_7Hq2","approvalStatus":"{approval}",
        "voided":{voided},"deleted":false,"openedDate":"2026-11-20T19:00:00.000+0000","modifiedDate":"2026-11-20T19:02:03.456+0000",
        "estimatedFulfillmentDate":"2026-11-20T19:30:00.000+0000",
        "checks":[{{"guid":"check-1","amount":23.0,"taxAmount":2.04,"totalAmount":25.04,"paymentStatus":"{payment_status}",
          "voided":false,"deleted":false,"selections":{}}}]}}"#,
        Value::Array(selections)
    );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn submits_with_external_id_dining_option_and_other_payment() {
    setup();
    mock_toast(|req| {
        if let Some(r) = config_answer(req) {
            return r;
        }
        assert_eq!(
            (req.method, path_of(&req.url)),
            (Method::Post, "/orders/v2/orders")
        );
        assert_eq!(req.timeout_ms, Some(30_000), "Toast may take 30 s");
        json_response(
            200,
            &toast_order_json("NEEDS_APPROVAL", &["NEW"], false, "PAID").to_string(),
        )
    });
    let status = Toast::submit_order(connection(), toast_order()).unwrap();
    assert_eq!(
        status,
        OrderStatus {
            provider_order_id: "toast-order-1".into(),
            our_order_id: Some("ord_7Hq2".into()),
            state: OrderState::Pending,
            provider_state: "NEEDS_APPROVAL/NEW".into(),
            version: Some(time::parse_timestamp("2026-11-20T19:02:03.456Z").unwrap()),
            updated_at: Some(time::parse_timestamp("2026-11-20T19:02:03.456Z").unwrap()),
            ready_at: Some(time::parse_timestamp("2026-11-20T19:30:00Z").unwrap()),
            total: Some(2504),
        }
    );
    let requests = testing::take_requests();
    let post = requests
        .iter()
        .find(|r| path_of(&r.url) == "/orders/v2/orders")
        .unwrap();
    assert_eq!(find_header(&post.headers, RESTAURANT_HEADER), Some(GUID));
    // The raw text: quantities and amounts are exact JSON numbers, never floats' renderings.
    let raw = String::from_utf8(post.body.clone().unwrap()).unwrap();
    assert!(raw.contains(r#""quantity":2}"#), "{raw}");
    assert!(
        raw.contains(r#""amount":23.00"#) && raw.contains(r#""tipAmount":3.50"#),
        "{raw}"
    );
    let body = body_json(post);
    assert_eq!(body["externalId"], "ord_7Hq2");
    assert_eq!(body["diningOption"]["guid"], TAKE_OUT);
    assert_eq!(body["promisedDate"], "2026-11-20T19:30:00.000+0000");
    let check = &body["checks"][0];
    assert_eq!(
        check["customer"],
        serde_json::json!({"firstName": "Ann Marie", "lastName": "Example", "phone": "5555550123", "email": "ann@example.com"})
    );
    let selection = &check["selections"][0];
    assert_eq!(selection["item"]["guid"], "item-burger");
    assert_eq!(selection["itemGroup"]["guid"], "group-burgers");
    assert_eq!(selection["modifiers"][0]["item"]["guid"], "opt-cheese");
    assert_eq!(
        selection["modifiers"][0]["optionGroup"]["guid"],
        "mg-toppings"
    );
    assert_eq!(check["payments"][0]["type"], "OTHER");
    assert_eq!(
        check["payments"][0]["otherPayment"]["guid"], ONLINE_PAYMENT,
        "named like the source"
    );
    assert!(body.get("deliveryInfo").is_none());

    // The configuration is kept: a second order reads no configuration.
    mock_toast(|req| {
        assert!(!req.url.contains("/config/"), "{}", req.url);
        json_response(
            200,
            &toast_order_json("APPROVED", &["NEW"], false, "PAID").to_string(),
        )
    });
    let mut delivery = toast_order();
    delivery.fulfilment.kind = FulfilmentKind::Delivery;
    delivery.fulfilment.scheduled_at = None;
    delivery.fulfilment.delivery_address = vec![
        "1 Main St".into(),
        "Apt 2".into(),
        "Springfield, il 62701".into(),
    ];
    delivery.fulfilment.note = Some("ring twice".into());
    delivery.payment = None;
    Toast::submit_order(connection(), delivery).unwrap();
    let post = testing::take_requests()
        .into_iter()
        .find(|r| path_of(&r.url) == "/orders/v2/orders")
        .unwrap();
    let body = body_json(&post);
    assert_eq!(body["diningOption"]["guid"], DELIVERY);
    assert_eq!(body["promisedDate"], Value::Null, "ASAP");
    assert_eq!(
        body["deliveryInfo"],
        serde_json::json!({"address1": "1 Main St", "address2": "Apt 2", "city": "Springfield",
                           "state": "IL", "zipCode": "62701", "notes": "ring twice"}),
        "every field Toast requires, read from the address lines"
    );
    assert_eq!(body["checks"][0]["customer"]["lastName"], "Example");
    assert!(body["checks"][0].get("payments").is_none());
}

#[test]
fn a_guest_toast_would_refuse_is_rejected_naming_the_field_before_anything_is_sent() {
    setup();
    testing::mock_http(|req| panic!("nothing may be sent: {}", req.url));
    let delivery = |lines: &[&str]| {
        let mut order = toast_order();
        order.fulfilment.kind = FulfilmentKind::Delivery;
        order.fulfilment.delivery_address = lines.iter().map(|l| l.to_string()).collect();
        order
    };
    let with = |change: fn(&mut Fulfilment)| {
        let mut order = toast_order();
        change(&mut order.fulfilment);
        order
    };
    let cases: Vec<(Order, &str)> = vec![
        (
            with(|f| f.customer_name = "Ann".into()),
            "checks[0].customer.lastName",
        ),
        (
            with(|f| f.customer_name = "  ".into()),
            "checks[0].customer.firstName",
        ),
        (
            with(|f| f.customer_email = None),
            "checks[0].customer.email",
        ),
        (
            with(|f| f.customer_phone = Some(" ".into())),
            "checks[0].customer.phone",
        ),
        (delivery(&[]), "deliveryInfo.address1"),
        (delivery(&["1 Main St"]), "deliveryInfo.city"),
        (
            delivery(&["1 Main St", "Springfield"]),
            "deliveryInfo.state",
        ),
        (
            delivery(&["1 Main St", "Springfield", "IL"]),
            "deliveryInfo.zipCode",
        ),
        (
            delivery(&["1 Main St", "Springfield, Illinois 62701"]),
            "deliveryInfo.state",
        ),
    ];
    for (order, field) in cases {
        for answer in [
            Toast::submit_order(connection(), order.clone()).map(|_| ()),
            Toast::price_order(connection(), order.clone()).map(|_| ()),
        ] {
            match answer {
                Err(ProviderError::Rejected(r)) => {
                    assert_eq!(r.field.as_deref(), Some(field), "{r:?}");
                    assert_eq!(r.status, None, "refused here, not by Toast");
                    let name = field.rsplit('.').next().unwrap_or(field);
                    assert!(r.message.contains(name), "{}", r.message);
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }
    assert!(testing::take_requests().is_empty());
}

#[test]
fn a_dine_in_order_needs_no_guest_and_sends_only_a_whole_one() {
    setup();
    mock_toast(|req| {
        if let Some(r) = config_answer(req) {
            return r;
        }
        json_response(
            200,
            &toast_order_json("APPROVED", &["NEW"], false, "OPEN").to_string(),
        )
    });
    let mut order = toast_order();
    order.fulfilment.kind = FulfilmentKind::DineIn;
    order.fulfilment.customer_name = "Table 4".into();
    order.fulfilment.customer_email = None;
    order.payment = None;
    Toast::submit_order(connection(), order.clone()).unwrap();
    order.fulfilment.customer_email = Some("ann@example.com".into());
    Toast::submit_order(connection(), order).unwrap();
    let bodies: Vec<Value> = testing::take_requests()
        .iter()
        .filter(|r| path_of(&r.url) == "/orders/v2/orders")
        .map(body_json)
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["diningOption"]["guid"], "c0ffee-dine-in");
    assert!(
        bodies[0]["checks"][0].get("customer").is_none(),
        "a partial customer would be refused: {}",
        bodies[0]
    );
    assert_eq!(
        bodies[1]["checks"][0]["customer"],
        serde_json::json!({"firstName": "Table", "lastName": "4",
                           "email": "ann@example.com", "phone": "5555550123"})
    );
    assert!(bodies[1].get("deliveryInfo").is_none());
}

#[test]
fn delivery_addresses_are_read_into_toasts_fields() {
    use crate::guest::{delivery_address, Address};
    let read =
        |lines: &[&str]| delivery_address(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    let address = |a1: &str, a2: Option<&str>, city: &str, state: &str, zip: &str| Address {
        address1: a1.into(),
        address2: a2.map(str::to_owned),
        city: city.into(),
        state: state.into(),
        zip_code: zip.into(),
        country: None,
    };
    assert_eq!(
        read(&["1 Main St, Springfield, IL 62701"]),
        Ok(address("1 Main St", None, "Springfield", "IL", "62701"))
    );
    assert_eq!(
        read(&[
            "1 Main St",
            "Building B",
            "Suite 4",
            "Springfield",
            "IL",
            "62701-1234"
        ]),
        Ok(address(
            "1 Main St",
            Some("Building B, Suite 4"),
            "Springfield",
            "IL",
            "62701-1234"
        ))
    );
    assert_eq!(
        read(&["  200 King St W ", "", "Toronto, on m5h3t4", "Canada"]),
        Ok(Address {
            country: Some("CA"),
            ..address("200 King St W", None, "Toronto", "ON", "M5H 3T4")
        })
    );
    assert_eq!(
        read(&["1 Main St", "Springfield, IL 62701", "U.S.A."]),
        Ok(Address {
            country: Some("US"),
            ..address("1 Main St", None, "Springfield", "IL", "62701")
        })
    );
    // A street line is never taken for "ST ZIP", and a city alone is no address.
    assert!(read(&["Springfield", "PO Box 12"]).is_err());
    assert_eq!(read(&["Springfield, IL 62701"]), Err("city"));
    assert_eq!(
        read(&["1 Main St", "Springfield", "IL 6270"]),
        Err("zipCode")
    );
    assert_eq!(read(&["1 Main St", "St Louis"]), Err("state"));
    assert_eq!(read(&[" ", ","]), Err("address1"));
}

#[test]
fn connect_form_settings_win_over_the_configuration() {
    setup();
    mock_toast(|req| {
        assert!(!req.url.contains("/config/"), "{}", req.url);
        json_response(
            200,
            &toast_order_json("APPROVED", &["NEW"], false, "PAID").to_string(),
        )
    });
    let mut conn = connection();
    conn.credentials
        .push(("takeout_dining_option".into(), "my-takeout".into()));
    conn.credentials
        .push(("payment_type".into(), "my-payment".into()));
    Toast::submit_order(conn, toast_order()).unwrap();
    let post = testing::take_requests()
        .into_iter()
        .find(|r| path_of(&r.url) == "/orders/v2/orders")
        .unwrap();
    let body = body_json(&post);
    assert_eq!(body["diningOption"]["guid"], "my-takeout");
    assert_eq!(
        body["checks"][0]["payments"][0]["otherPayment"]["guid"],
        "my-payment"
    );
}

#[test]
fn an_ambiguous_payment_type_is_refused_before_the_order_is_sent() {
    setup();
    mock_toast(|req| {
        config_answer(req).unwrap_or_else(|| panic!("no order may be sent: {}", req.url))
    });
    let mut order = toast_order();
    order.payment.as_mut().unwrap().source = "Uber".into();
    match Toast::submit_order(connection(), order) {
        Err(ProviderError::Rejected(r)) => {
            assert_eq!(r.field.as_deref(), Some("payment_type"));
            assert!(
                r.message.contains("2 alternate payment types"),
                "{}",
                r.message
            );
        }
        other => panic!("{other:?}"),
    }
    let mut order = toast_order();
    order.lines[0].item_id = None;
    assert!(matches!(
        Toast::submit_order(connection(), order),
        Err(ProviderError::Rejected(r)) if r.field.as_deref() == Some("lines[0].item-id")
    ));
}

#[test]
fn a_duplicate_external_id_answers_the_existing_order() {
    setup();
    testing::set_now(NOW);
    mock_toast(|req| {
        if let Some(r) = config_answer(req) {
            return r;
        }
        match path_of(&req.url) {
            "/orders/v2/orders" => json_response(
                409,
                r#"{"status":409,"code":2,"message":"An order with this externalId already exists","fieldName":"externalId","requestId":"r1"}"#,
            ),
            "/orders/v2/ordersBulk" => {
                assert!(req.url.contains("pageSize=100"), "{}", req.url);
                json_response(
                    200,
                    &Value::Array(vec![
                        serde_json::json!({"guid": "someone-else", "externalId": "other", "checks": []}),
                        toast_order_json("APPROVED", &["SENT", "NEW"], false, "PAID"),
                    ])
                    .to_string(),
                )
            }
            other => panic!("unexpected {other}"),
        }
    });
    let status = Toast::submit_order(connection(), toast_order()).unwrap();
    assert_eq!(status.provider_order_id, "toast-order-1");
    assert_eq!(status.state, OrderState::InProgress);
    let posts = testing::take_requests()
        .iter()
        .filter(|r| path_of(&r.url) == "/orders/v2/orders")
        .count();
    assert_eq!(posts, 1, "never resubmitted");
}

#[test]
fn order_errors_map_to_rejected_and_timed_out() {
    setup();
    mock_toast(|req| {
        if let Some(r) = config_answer(req) {
            return r;
        }
        json_response(
            400,
            r#"{"status":400,"code":10402,"message":"Modifier group 'Toppings' requires a selection","messageKey":"REQUIRED_MODIFIER","fieldName":"checks[0].selections[0].modifiers","requestId":"r2"}"#,
        )
    });
    match Toast::submit_order(connection(), toast_order()) {
        Err(ProviderError::Rejected(r)) => {
            assert_eq!(r.status, Some(400));
            assert_eq!(r.code.as_deref(), Some("10402"));
            assert_eq!(
                r.field.as_deref(),
                Some("checks[0].selections[0].modifiers")
            );
            assert!(r.message.contains("requires a selection"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    setup();
    let logins = Rc::new(Cell::new(0));
    let counter = logins.clone();
    testing::mock_http(move |req| {
        if is_login(req) {
            counter.set(counter.get() + 1);
            return Ok(login_response(1));
        }
        if let Some(r) = config_answer(req) {
            return Ok(r);
        }
        Err(HttpError::Timeout)
    });
    assert!(matches!(
        Toast::submit_order(connection(), toast_order()),
        Err(ProviderError::TimedOut(_))
    ));
}

#[test]
fn lookup_finds_the_order_by_external_id_or_answers_none() {
    setup();
    mock_toast(|req| {
        assert_eq!(path_of(&req.url), "/orders/v2/ordersBulk");
        assert!(
            req.url
                .contains("startDate=2026-11-18T19%3A00%3A00.000%2B0000"),
            "48 h back: {}",
            req.url
        );
        json_response(
            200,
            &Value::Array(vec![toast_order_json(
                "APPROVED",
                &["READY"],
                false,
                "PAID",
            )])
            .to_string(),
        )
    });
    let found = Toast::lookup_order(connection(), "ord_7Hq2".into())
        .unwrap()
        .unwrap();
    assert_eq!(found.state, OrderState::Ready);
    assert_eq!(
        Toast::lookup_order(connection(), "ord_other".into()).unwrap(),
        None
    );
}

/// (approvalStatus, selections' fulfillmentStatus, voided, check paymentStatus, expected
/// state, expected provider words).
type StateCase = (
    &'static str,
    &'static [&'static str],
    bool,
    &'static str,
    OrderState,
    &'static str,
);

#[test]
fn maps_toast_order_states() {
    let cases: [StateCase; 8] = [
        (
            "NEEDS_APPROVAL",
            &["NEW"],
            false,
            "OPEN",
            OrderState::Pending,
            "NEEDS_APPROVAL/NEW",
        ),
        (
            "NOT_APPROVED",
            &["NEW"],
            false,
            "OPEN",
            OrderState::Rejected,
            "NOT_APPROVED/NEW",
        ),
        (
            "FUTURE",
            &["HOLD"],
            false,
            "PAID",
            OrderState::Accepted,
            "FUTURE/HOLD",
        ),
        (
            "APPROVED",
            &["NEW", "NEW"],
            false,
            "PAID",
            OrderState::Accepted,
            "APPROVED/NEW",
        ),
        (
            "APPROVED",
            &["SENT", "NEW"],
            false,
            "PAID",
            OrderState::InProgress,
            "APPROVED/SENT",
        ),
        (
            "APPROVED",
            &["READY", "READY"],
            false,
            "PAID",
            OrderState::Ready,
            "APPROVED/READY",
        ),
        (
            "APPROVED",
            &["READY"],
            false,
            "CLOSED",
            OrderState::Completed,
            "APPROVED/READY",
        ),
        (
            "APPROVED",
            &["SENT"],
            true,
            "PAID",
            OrderState::Canceled,
            "APPROVED/SENT (voided)",
        ),
    ];
    for (approval, fulfillment, voided, payment, expected, words) in cases {
        setup();
        let order = toast_order_json(approval, fulfillment, voided, payment);
        mock_toast(move |req| {
            assert_eq!(path_of(&req.url), "/orders/v2/orders/toast-order-1");
            json_response(200, &order.to_string())
        });
        let status = Toast::get_order_status(connection(), "toast-order-1".into()).unwrap();
        assert_eq!(
            (status.state, status.provider_state.as_str()),
            (expected, words)
        );
    }
    setup();
    mock_toast(|_| json_response(404, r#"{"status":404,"message":"Not found"}"#));
    assert!(matches!(
        Toast::get_order_status(connection(), "nope".into()),
        Err(ProviderError::Rejected(r)) if r.status == Some(404)
    ));
}

#[test]
fn prices_an_order() {
    setup();
    mock_toast(|req| {
        if let Some(r) = config_answer(req) {
            return r;
        }
        assert_eq!(
            (req.method, path_of(&req.url)),
            (Method::Post, "/orders/v2/prices")
        );
        assert!(
            body_json(req)["checks"][0].get("payments").is_none(),
            "pricing pays nothing"
        );
        json_response(
            200,
            r#"{"entityType":"Order","checks":[{"amount":21.5,"taxAmount":1.91,"totalAmount":23.41,
              "selections":[{"item":{"guid":"item-burger"},"quantity":2,"preDiscountPrice":23.00,"price":21.50}]}]}"#,
        )
    });
    let priced = Toast::price_order(connection(), toast_order()).unwrap();
    assert_eq!(
        priced,
        PricedOrder {
            currency: "USD".into(),
            subtotal: 2300,
            tax: 191,
            discount: 150,
            total: 2341,
            lines: vec![("l1".into(), 2150)],
        }
    );
}

const MENUS: &str = r#"{
  "restaurantGuid": "d3ba8a4b-7ee8-4c1f-9c3a-a2a4f0a7b3e1",
  "lastUpdated": "2026-11-20T08:00:00.000+0000",
  "restaurantTimeZone": "America/New_York",
  "menus": [{
    "guid": "menu-lunch", "name": "Lunch", "visibility": ["POS", "ORDERING_PARTNERS"],
    "menuGroups": [{
      "guid": "group-mains", "name": "Mains", "visibility": ["POS", "ORDERING_PARTNERS"],
      "menuItems": [
        {"guid": "item-burger", "multiLocationId": "100", "name": "Burger", "description": "Beef",
         "price": 10.5, "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [7],
         "visibility": ["POS", "ORDERING_PARTNERS"]},
        {"guid": "item-staff-meal", "name": "Staff meal", "price": 0, "pricingStrategy": "BASE_PRICE",
         "modifierGroupReferences": [], "visibility": ["POS"]}
      ],
      "menuGroups": [{
        "guid": "group-burgers", "name": "Burgers", "visibility": ["POS", "ORDERING_PARTNERS"],
        "menuItems": [
          {"guid": "item-fries", "name": "Fries", "price": null, "pricingStrategy": "SIZE_PRICE",
           "modifierGroupReferences": [8], "visibility": ["ORDERING_PARTNERS"]}
        ],
        "menuGroups": []
      }]
    }]
  }],
  "modifierGroupReferences": {
    "7": {"referenceId": 7, "guid": "mg-toppings", "name": "Toppings", "minSelections": 0, "maxSelections": 3,
          "requiredMode": "OPTIONAL", "modifierOptionReferences": [70, 71]},
    "8": {"referenceId": 8, "guid": "mg-size", "name": "Size", "minSelections": 1, "maxSelections": 1,
          "requiredMode": "REQUIRED", "modifierOptionReferences": [80]}
  },
  "modifierOptionReferences": {
    "70": {"referenceId": 70, "guid": "opt-cheese", "name": "Cheese", "price": 1.0, "isDefault": true},
    "71": {"referenceId": 71, "guid": "opt-bacon", "name": "Bacon", "price": 2.25, "isDefault": false},
    "80": {"referenceId": 80, "guid": "opt-large", "name": "Large", "price": 4.5, "isDefault": false}
  }
}"#;

#[test]
fn fetches_the_menu_only_when_metadata_moved() {
    setup();
    state::set_string(CURRENCY_KEY, "USD").unwrap();
    mock_toast(|req| match path_of(&req.url) {
        "/menus/v2/metadata" => json_response(
            200,
            r#"{"restaurantGuid":"d3ba8a4b-7ee8-4c1f-9c3a-a2a4f0a7b3e1","lastUpdated":"2026-11-20T08:00:00.000+0000"}"#,
        ),
        "/menus/v2/menus" => json_response(200, MENUS),
        other => panic!("unexpected {other}"),
    });
    let unchanged = Toast::fetch_catalog(
        connection(),
        CatalogRequest {
            cursor: None,
            since: Some("2026-11-20T08:00:00.000+0000".into()),
        },
    )
    .unwrap();
    assert!(unchanged.unchanged && unchanged.items.is_empty());
    assert_eq!(
        unchanged.sync_token.as_deref(),
        Some("2026-11-20T08:00:00.000+0000")
    );
    let data_calls: Vec<String> = testing::take_requests()
        .iter()
        .filter(|r| !is_login(r))
        .map(|r| path_of(&r.url).to_owned())
        .collect();
    assert_eq!(data_calls, ["/menus/v2/metadata"], "one metadata call");

    let page = Toast::fetch_catalog(
        connection(),
        CatalogRequest {
            cursor: None,
            since: Some("2026-11-19T08:00:00.000+0000".into()),
        },
    )
    .unwrap();
    assert!(page.full_snapshot && !page.unchanged && page.next_cursor.is_none());
    assert_eq!(
        page.sync_token.as_deref(),
        Some("2026-11-20T08:00:00.000+0000")
    );
    assert_eq!(
        page.categories,
        vec![
            CatalogCategory {
                provider_id: "menu-lunch".into(),
                name: "Lunch".into(),
                parent_id: None
            },
            CatalogCategory {
                provider_id: "group-mains".into(),
                name: "Mains".into(),
                parent_id: Some("menu-lunch".into())
            },
            CatalogCategory {
                provider_id: "group-burgers".into(),
                name: "Burgers".into(),
                parent_id: Some("group-mains".into())
            },
        ]
    );
    let item = |id: &str| page.items.iter().find(|i| i.provider_id == id).unwrap();
    let burger = item("item-burger");
    assert_eq!(
        burger.variations,
        vec![CatalogVariation {
            provider_id: "item-burger".into(),
            name: "Burger".into(),
            price: Some(1050)
        }]
    );
    assert_eq!(burger.category_ids, ["group-mains"]);
    assert_eq!(
        burger.modifier_groups,
        vec![ModifierGroupRef {
            group_id: "mg-toppings".into(),
            min_selected: None,
            max_selected: None
        }]
    );
    assert!(burger.orderable);
    assert!(
        !item("item-staff-meal").orderable,
        "not visible to ordering partners"
    );
    let fries = item("item-fries");
    assert_eq!(fries.variations[0].price, None, "SIZE_PRICE");
    assert_eq!(fries.category_ids, ["group-burgers"]);
    assert_eq!(
        page.modifier_groups,
        vec![
            ModifierGroup {
                provider_id: "mg-toppings".into(),
                name: "Toppings".into(),
                min_selected: 0,
                max_selected: Some(3),
                required: false,
                options: vec![
                    ModifierOption {
                        provider_id: "opt-cheese".into(),
                        name: "Cheese".into(),
                        price: 100,
                        is_default: true
                    },
                    ModifierOption {
                        provider_id: "opt-bacon".into(),
                        name: "Bacon".into(),
                        price: 225,
                        is_default: false
                    },
                ],
            },
            ModifierGroup {
                provider_id: "mg-size".into(),
                name: "Size".into(),
                min_selected: 1,
                max_selected: Some(1),
                required: true,
                options: vec![ModifierOption {
                    provider_id: "opt-large".into(),
                    name: "Large".into(),
                    price: 450,
                    is_default: false
                }],
            },
        ]
    );
}

#[test]
fn reads_and_writes_stock() {
    setup();
    mock_toast(|req| match (req.method, path_of(&req.url)) {
        (Method::Get, "/stock/v1/inventory") => json_response(
            200,
            r#"[{"guid":"item-burger","multiLocationId":"100","status":"OUT_OF_STOCK","quantity":null,"versionId":3},
                {"guid":"item-fries","status":"QUANTITY","quantity":4.5,"versionId":9}]"#,
        ),
        (Method::Post, "/stock/v1/inventory/search") => {
            assert_eq!(
                body_json(req),
                serde_json::json!({"guids": ["item-burger", "item-cake"]})
            );
            json_response(200, r#"[{"guid":"item-burger","status":"OUT_OF_STOCK"}]"#)
        }
        (Method::Put, "/stock/v1/inventory/update") => {
            let raw = String::from_utf8(req.body.clone().unwrap()).unwrap();
            assert_eq!(
                raw,
                r#"[{"guid":"item-burger","status":"IN_STOCK"},{"guid":"item-fries","quantity":0,"status":"QUANTITY"},{"guid":"item-cake","status":"OUT_OF_STOCK"}]"#
            );
            json_response(
                200,
                r#"[{"guid":"item-burger","status":"IN_STOCK"},{"guid":"item-fries","status":"QUANTITY","quantity":0},{"guid":"item-cake","status":"OUT_OF_STOCK"}]"#,
            )
        }
        other => panic!("unexpected {other:?}"),
    });
    let stock = |id: &str, status: StockStatus, quantity: Option<&str>| Availability {
        provider_id: id.into(),
        status,
        quantity: quantity.map(str::to_owned),
        until: None,
    };
    assert_eq!(
        Toast::get_availability(connection(), vec![]).unwrap(),
        vec![
            stock("item-burger", StockStatus::OutOfStock, None),
            stock("item-fries", StockStatus::Quantity, Some("4.5")),
        ]
    );
    assert_eq!(
        Toast::get_availability(connection(), vec!["item-burger".into(), "item-cake".into()])
            .unwrap(),
        vec![
            stock("item-burger", StockStatus::OutOfStock, None),
            stock("item-cake", StockStatus::InStock, None),
        ]
    );
    let now = Toast::set_availability(
        connection(),
        vec![
            stock("item-burger", StockStatus::InStock, None),
            stock("item-fries", StockStatus::Quantity, Some("0")),
            stock("item-cake", StockStatus::OutOfStock, None),
        ],
    )
    .unwrap();
    assert_eq!(
        now,
        vec![
            stock("item-burger", StockStatus::InStock, None),
            stock("item-fries", StockStatus::OutOfStock, Some("0")),
            stock("item-cake", StockStatus::OutOfStock, None),
        ]
    );
    testing::take_requests();
    assert!(matches!(
        Toast::set_availability(connection(), vec![stock("item-fries", StockStatus::Quantity, Some("lots"))]),
        Err(ProviderError::Rejected(r)) if r.field.as_deref() == Some("changes[0]")
    ));
    assert!(
        testing::take_requests().is_empty(),
        "a bad change sends nothing"
    );
}

fn toast_webhook(event_type: &str, details: &str) -> Webhook {
    let body = format!(
        r#"{{"timestamp":"2026-11-20T19:05:00.000+0000","eventCategory":"x","eventType":"{event_type}","guid":"ev-{event_type}","details":{details}}}"#
    );
    Webhook {
        url: "https://hooks.example/toast".into(),
        headers: vec![],
        body: body.into_bytes(),
    }
}

#[test]
fn parses_order_menu_and_stock_webhooks() {
    setup();
    state::set_string(CURRENCY_KEY, "USD").unwrap();
    let order = toast_order_json("APPROVED", &["SENT"], false, "PAID");
    let details = serde_json::json!({"restaurantGuid": GUID, "order": order}).to_string();
    let event = Toast::parse_webhook(toast_webhook("order_updated", &details)).unwrap();
    assert_eq!(event.order_updates.len(), 1);
    let update = &event.order_updates[0];
    assert_eq!(update.provider_order_id, "toast-order-1");
    assert_eq!(
        update.version,
        Some(time::parse_timestamp("2026-11-20T19:02:03.456Z").unwrap())
    );
    assert_eq!(
        update.status.as_ref().map(|s| s.state),
        Some(OrderState::InProgress)
    );
    assert_eq!(event.transactions.len(), 1, "still a sale too");

    let event = Toast::parse_webhook(toast_webhook(
        "menus_updated",
        &format!(r#"{{"restaurantGuid":"{GUID}","publishedDate":"2026-11-20T19:04:00.000+0000"}}"#),
    ))
    .unwrap();
    assert!(
        event.catalog_changed && event.order_updates.is_empty() && event.transactions.is_empty()
    );

    for (kind, quantity, expected) in [
        ("out_of_stock", "null", StockStatus::OutOfStock),
        ("in_stock", "null", StockStatus::InStock),
        ("low_quantity", "3", StockStatus::Quantity),
    ] {
        let details = format!(
            r#"{{"itemGuid":"item-burger","restaurantGuid":"{GUID}","status":"x","quantity":{quantity},"multiLocationId":"100"}}"#
        );
        let event = Toast::parse_webhook(toast_webhook(kind, &details)).unwrap();
        assert_eq!(event.availability.len(), 1, "{kind}");
        assert_eq!(event.availability[0].provider_id, "item-burger");
        assert_eq!(event.availability[0].status, expected, "{kind}");
    }
    assert!(matches!(
        Toast::parse_webhook(toast_webhook("out_of_stock", "{}")),
        Err(ProviderError::BadPayload(_))
    ));
}
