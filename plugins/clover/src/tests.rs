use super::*;
use posbridge_sdk::http::{find_header, HttpError, Method, RawRequest};
use posbridge_sdk::log::Level;
use posbridge_sdk::testing::{self, json_response};
use posbridge_sdk::types::RateLimit;

type Expect = fn(&ProviderError) -> bool;

const MID: &str = "KZ8VQ4S1R2ZB1";
const TOKEN: &str = "6b1a3c2d-clover-api-token";
const AUTH_CODE: &str = "0307e264-b33a-4913-88aa-37b10014a0b8";

fn connection() -> Connection {
    Connection {
        credentials: vec![("access_token".into(), TOKEN.into())],
        location_id: MID.into(),
        environment: Environment::Production,
        base_url: None,
    }
}

fn window(cursor: Option<&str>) -> FetchRequest {
    FetchRequest {
        start: 1_795_190_400_000,
        end: 1_795_201_200_000,
        cursor: cursor.map(str::to_owned),
    }
}

fn webhook(headers: &[(&str, &str)], body: &str) -> Webhook {
    Webhook {
        url: "https://posbridge.example/webhooks/clover/i-1".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// A card payment as Clover's REST reference renders it with `expand=refunds,cardTransaction,
/// tender`: $22.00 including $2.00 tax, a $3.00 tip, one $5.00 refund.
const PAYMENT: &str = r#"{
    "id": "QJD3EASSFE4JW",
    "order": {"id": "NPNR3JK4HH3XM"},
    "device": {"id": "0c16d2cc-1ba8-4a76-9cd1-1bdb7f1f7bc2"},
    "tender": {"id": "78Z018QR7RPQC", "label": "Credit Card", "labelKey": "com.clover.tender.credit_card",
               "opensCashDrawer": false},
    "amount": 2200,
    "tipAmount": 300,
    "taxAmount": 200,
    "cashbackAmount": 0,
    "employee": {"id": "DFLTEMPLOYEE"},
    "createdTime": 1795194000000,
    "clientCreatedTime": 1795193999500,
    "modifiedTime": 1795194300000,
    "offline": false,
    "result": "SUCCESS",
    "cardTransaction": {"cardType": "VISA", "entryType": "EMV_CONTACT", "last4": "1111",
                        "type": "AUTH", "authCode": "OK1234", "state": "CLOSED",
                        "referenceId": "611500530027", "first6": "411111"},
    "refunds": {"elements": [
        {"id": "KQ7D0VJ4F2S5A", "amount": 500, "taxAmount": 0, "tipAmount": 0,
         "createdTime": 1795194300000, "payment": {"id": "QJD3EASSFE4JW"}, "voided": false,
         "status": "SUCCESS"}
    ]},
    "someFutureField": {"nested": [1, 2.5, null]}
}"#;

fn payment(patch: impl FnOnce(&mut Value)) -> Value {
    let mut value: Value = serde_json::from_str(PAYMENT).unwrap();
    patch(&mut value);
    value
}

fn properties_response() -> Response {
    json_response(
        200,
        r#"{"href":"https://api.clover.com/v3/merchants/KZ8VQ4S1R2ZB1/properties",
            "defaultCurrency":"USD","timezone":"America/New_York","tipsEnabled":true,"vat":false}"#,
    )
}

/// Answers the properties endpoint with [`properties_response`] and everything else with
/// `data`.
fn mock_clover(mut data: impl FnMut(&RawRequest) -> Response + 'static) {
    testing::mock_http(move |req| {
        if req.url.contains("/properties") {
            Ok(properties_response())
        } else {
            Ok(data(req))
        }
    });
}

fn page(elements: &[Value]) -> Response {
    json_response(
        200,
        &serde_json::json!({"elements": elements, "href": "https://api.clover.com/v3/merchants/KZ8VQ4S1R2ZB1/payments"})
            .to_string(),
    )
}

/// The query parameters of a URL, decoded (`+` stays a plus: the SDK encodes spaces as `%20`).
fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn info_declares_clover() {
    let info = Clover::info();
    assert_eq!(
        (info.id.as_str(), info.name.as_str(), info.version.as_str()),
        ("clover", "Clover", "1.0.0")
    );
    assert_eq!(
        info.capabilities,
        vec![
            Capability::Validate,
            Capability::FetchTransactions,
            Capability::Webhooks
        ]
    );
    assert_eq!(
        info.credential_fields,
        vec![CredentialField {
            name: "access_token".into(),
            label: "API token".into(),
            secret: true,
            required: true
        }]
    );
    assert_eq!(
        info.allowed_hosts,
        vec![
            "api.clover.com",
            "api.eu.clover.com",
            "api.la.clover.com",
            "apisandbox.dev.clover.com"
        ]
    );
}

#[test]
fn validate_reads_the_merchant_and_its_properties() {
    testing::reset();
    mock_clover(|_| {
        json_response(
            200,
            r#"{"href":"https://api.clover.com/v3/merchants/KZ8VQ4S1R2ZB1","id":"KZ8VQ4S1R2ZB1",
                "name":"Corner Bistro","address":{"city":"Brooklyn","state":"NY","country":"US"},
                "isBillable":true,"createdTime":1600000000000}"#,
        )
    });
    let info = Clover::validate(connection()).unwrap();
    assert_eq!(
        info,
        LocationInfo {
            id: MID.into(),
            name: "Corner Bistro".into(),
            timezone: Some("America/New_York".into()),
            currency: Some("USD".into()),
            merchant_id: Some(MID.into()),
            business_name: Some("Corner Bistro".into()),
            status: None,
        }
    );
    let requests = testing::take_requests();
    let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://api.clover.com/v3/merchants/KZ8VQ4S1R2ZB1",
            "https://api.clover.com/v3/merchants/KZ8VQ4S1R2ZB1/properties"
        ]
    );
    for req in &requests {
        assert_eq!(req.method, Method::Get);
        assert_eq!(
            find_header(&req.headers, "authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            find_header(&req.headers, "accept"),
            Some("application/json")
        );
        assert!(req.body.is_none());
    }
    // validate runs before the integration exists: nothing is kept in state.
    assert!(testing::state().is_empty());
}

#[test]
fn base_url_by_environment_or_override_and_an_encoded_merchant() {
    testing::reset();
    mock_clover(|_| json_response(200, r#"{"id":"a b/c"}"#));
    let mut conn = connection();
    conn.environment = Environment::Sandbox;
    let info = Clover::validate(conn.clone()).unwrap();
    assert_eq!(info.name, "a b/c", "falls back to the id");
    conn.base_url = Some("http://127.0.0.1:8081/".into());
    conn.location_id = "a b/c".into();
    Clover::validate(conn).unwrap();
    let urls: Vec<_> = testing::take_requests()
        .into_iter()
        .map(|r| r.url)
        .collect();
    assert_eq!(
        urls,
        [
            "https://apisandbox.dev.clover.com/v3/merchants/KZ8VQ4S1R2ZB1",
            "https://apisandbox.dev.clover.com/v3/merchants/KZ8VQ4S1R2ZB1/properties",
            "http://127.0.0.1:8081/v3/merchants/a%20b%2Fc",
            "http://127.0.0.1:8081/v3/merchants/a%20b%2Fc/properties",
        ]
    );
}

#[test]
fn validate_refuses_missing_token_or_merchant_without_a_request() {
    testing::reset();
    mock_clover(|_| panic!("no request expected"));
    let mut conn = connection();
    conn.credentials.clear();
    assert!(matches!(
        Clover::validate(conn),
        Err(ProviderError::InvalidCredentials(m)) if m.contains("access_token")
    ));
    let mut conn = connection();
    conn.location_id = "  ".into();
    assert!(matches!(
        Clover::validate(conn),
        Err(ProviderError::LocationNotFound(m)) if m.contains("merchant id")
    ));
    assert!(testing::take_requests().is_empty());
}

#[test]
fn validate_maps_clovers_errors() {
    let cases: [(u16, &str, Expect); 5] = [
        (
            401,
            r#"{"message":"401 Unauthorized"}"#,
            |e| matches!(e, ProviderError::InvalidCredentials(m) if m == "credentials refused (HTTP 401): 401 Unauthorized"),
        ),
        (
            403,
            r#"{"message":"Forbidden"}"#,
            |e| matches!(e, ProviderError::PermissionDenied(m) if m.contains("Forbidden")),
        ),
        (
            404,
            r#"{"message":"Not Found"}"#,
            |e| matches!(e, ProviderError::LocationNotFound(m) if m.contains("HTTP 404")),
        ),
        (
            429,
            r#"{"message":"Too Many Requests"}"#,
            |e| matches!(e, ProviderError::RateLimited(RateLimit { retry_after_ms: None, message }) if message.contains("Too Many Requests")),
        ),
        (
            503,
            "<html>Service Unavailable</html>",
            |e| matches!(e, ProviderError::Upstream(m) if m.contains("HTTP 503")),
        ),
    ];
    for (status, body, expected) in cases {
        testing::reset();
        testing::mock_http(move |_| Ok(json_response(status, body)));
        let error = Clover::validate(connection()).unwrap_err();
        assert!(expected(&error), "HTTP {status} → {error:?}");
    }
    testing::reset();
    testing::mock_http(|_| Err(HttpError::Denied("api.clover.com is not approved".into())));
    assert!(matches!(
        Clover::validate(connection()),
        Err(ProviderError::PermissionDenied(m)) if m.contains("not approved")
    ));
}

#[test]
fn fetch_asks_for_the_modified_window_in_order_with_refunds_expanded() {
    testing::reset();
    mock_clover(|_| page(&[]));
    let got = Clover::fetch_transactions(connection(), window(None)).unwrap();
    assert_eq!(got.transactions, vec![]);
    assert_eq!(got.next_cursor, None);
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 2, "properties once, then the page");
    let req = &requests[1];
    assert!(
        req.url
            .starts_with("https://api.clover.com/v3/merchants/KZ8VQ4S1R2ZB1/payments?"),
        "{}",
        req.url
    );
    assert_eq!(
        query_pairs(&req.url),
        vec![
            ("filter".into(), "modifiedTime>=1795190400000".into()),
            ("filter".into(), "modifiedTime<1795201200000".into()),
            ("orderBy".into(), "modifiedTime ASC".into()),
            ("expand".into(), "refunds,cardTransaction,tender".into()),
            ("limit".into(), "100".into()),
            ("offset".into(), "0".into()),
        ]
    );
    assert_eq!(
        find_header(&req.headers, "authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // The currency is kept: the next page asks for the payments only.
    assert_eq!(
        testing::state().get(CURRENCY_KEY).map(Vec::as_slice),
        Some(&b"USD"[..])
    );
    Clover::fetch_transactions(connection(), window(Some("100"))).unwrap();
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].url.ends_with("&offset=100"),
        "{}",
        requests[0].url
    );
}

#[test]
fn a_full_page_has_a_successor_and_a_short_one_ends_the_window() {
    testing::reset();
    state::set_string(CURRENCY_KEY, "CAD").unwrap();
    let full: Vec<Value> = (0..100)
        .map(|i| payment(|p| p["id"] = format!("P{i:03}").into()))
        .collect();
    let short = full[..7].to_vec();
    testing::mock_http(move |req| {
        assert!(
            !req.url.contains("/properties"),
            "the kept currency is used"
        );
        Ok(if req.url.ends_with("offset=200") {
            page(&short)
        } else {
            page(&full)
        })
    });
    let first = Clover::fetch_transactions(connection(), window(Some("100"))).unwrap();
    assert_eq!(first.transactions.len(), 100);
    assert_eq!(first.next_cursor.as_deref(), Some("200"));
    assert!(first.transactions.iter().all(|t| t.currency == "CAD"));
    let last =
        Clover::fetch_transactions(connection(), window(first.next_cursor.as_deref())).unwrap();
    assert_eq!(last.transactions.len(), 7);
    assert_eq!(last.next_cursor, None);
}

#[test]
fn a_payment_maps_to_a_transaction_in_cents() {
    let t = to_transaction(&payment(|_| {}), "USD", MID).unwrap();
    assert_eq!(
        t,
        Transaction {
            external_id: "QJD3EASSFE4JW".into(),
            order_id: Some("NPNR3JK4HH3XM".into()),
            location_id: Some(MID.into()),
            occurred_at: 1_795_194_000_000,
            updated_at: Some(1_795_194_300_000),
            currency: "USD".into(),
            total: 2500,
            subtotal: 2000,
            tax: 200,
            tip: 300,
            discount: 0,
            refunded: 500,
            tender: Tender::Card,
            card: Some(CardInfo {
                brand: Some("VISA".into()),
                last4: Some("1111".into()),
                fingerprint: None
            }),
            customer: None,
            status: TransactionStatus::Completed,
            staff: None,
            line_items: Vec::new(),
            refunds: Vec::new(),
        }
    );
}

#[test]
fn results_map_to_statuses_and_only_success_is_spend() {
    for (result, expected) in [
        ("SUCCESS", TransactionStatus::Completed),
        ("VOIDED", TransactionStatus::Voided),
        ("VOIDING", TransactionStatus::Voided),
        ("FAIL", TransactionStatus::Failed),
        ("AUTH", TransactionStatus::Pending),
        ("INITIATED", TransactionStatus::Pending),
        ("SOMETHING_NEW", TransactionStatus::Pending),
    ] {
        let t = to_transaction(&payment(|p| p["result"] = result.into()), "USD", MID).unwrap();
        assert_eq!(t.status, expected, "{result}");
    }
    let t = to_transaction(
        &payment(|p| drop(p.as_object_mut().unwrap().remove("result"))),
        "USD",
        MID,
    )
    .unwrap();
    assert_eq!(t.status, TransactionStatus::Pending);
}

#[test]
fn only_refunds_that_took_effect_reduce_spend() {
    let refunds = serde_json::json!({"elements": [
        {"id": "R1", "amount": 500, "status": "SUCCESS"},
        {"id": "R2", "amount": 250},
        {"id": "R3", "amount": 700, "voided": true},
        {"id": "R4", "amount": 900, "status": "FAIL"},
        {"id": "R5", "amount": 800, "status": "PENDING"},
    ]});
    let t = to_transaction(&payment(|p| p["refunds"] = refunds), "USD", MID).unwrap();
    assert_eq!(t.refunded, 750);
    for unexpanded in [
        Value::Null,
        serde_json::json!({}),
        serde_json::json!({"elements": []}),
    ] {
        let t = to_transaction(&payment(|p| p["refunds"] = unexpanded), "USD", MID).unwrap();
        assert_eq!(t.refunded, 0);
    }
}

#[test]
fn tenders_follow_clovers_label_keys() {
    let with_tender = |key: &str, card: bool| {
        payment(|p| {
            p["tender"]["labelKey"] = key.into();
            if !card {
                p.as_object_mut().unwrap().remove("cardTransaction");
            }
        })
    };
    for (key, card, expected) in [
        ("com.clover.tender.cash", false, Tender::Cash),
        ("com.clover.tender.credit_card", true, Tender::Card),
        ("com.clover.tender.debit_card", true, Tender::Card),
        (
            "com.clover.tender.external_gift_card",
            false,
            Tender::GiftCard,
        ),
        ("com.clover.tender.check", false, Tender::Other),
        ("com.example.custom_tender", true, Tender::Card),
        ("com.example.custom_tender", false, Tender::Other),
    ] {
        let t = to_transaction(&with_tender(key, card), "USD", MID).unwrap();
        assert_eq!(t.tender, expected, "{key} (card transaction: {card})");
        assert_eq!(t.card.is_some(), card, "{key}");
    }
}

#[test]
fn a_payment_without_tip_or_tax_fields_counts_them_as_zero() {
    let t = to_transaction(
        &payment(|p| {
            let o = p.as_object_mut().unwrap();
            o.remove("tipAmount");
            o.remove("taxAmount");
            o.remove("modifiedTime");
        }),
        "EUR",
        MID,
    )
    .unwrap();
    assert_eq!((t.total, t.subtotal, t.tax, t.tip), (2200, 2200, 0, 0));
    assert_eq!((t.currency.as_str(), t.updated_at), ("EUR", None));
}

#[test]
fn unusable_payments_are_refused_naming_the_field() {
    type Patch = fn(&mut Value);
    let cases: [(Patch, &str); 8] = [
        (|p| p["amount"] = Value::Null, "amount: missing"),
        (|p| p["amount"] = "22.00".into(), "amount: not a number"),
        (
            |p| p["amount"] = serde_json::from_str("22.5").unwrap(),
            "amount: 22.5 is not integer cents",
        ),
        (|p| p["createdTime"] = Value::Null, "createdTime: missing"),
        (|p| p["id"] = "".into(), "no id"),
        (|p| p["tipAmount"] = i64::MAX.into(), "amounts overflow"),
        (
            |p| p["refunds"]["elements"][0]["amount"] = Value::Null,
            "refunds.elements[0].amount: missing",
        ),
        (
            |p| p["refunds"]["elements"] = "all".into(),
            "refunds.elements: not a list",
        ),
    ];
    for (patch, expected) in cases {
        let err = to_transaction(&payment(patch), "USD", MID).unwrap_err();
        assert_eq!(err, expected);
    }
    assert_eq!(
        to_transaction(&Value::Null, "USD", MID).unwrap_err(),
        "not an object"
    );
}

#[test]
fn a_bad_payment_is_skipped_and_logged_not_the_page() {
    testing::reset();
    state::set_string(CURRENCY_KEY, "USD").unwrap();
    let good = payment(|_| {});
    let bad = payment(|p| {
        p["id"] = "BADPAYMENT01".into();
        p["amount"] = "lots".into();
    });
    testing::mock_http(move |_| Ok(page(&[bad.clone(), good.clone()])));
    testing::take_logs();
    let got = Clover::fetch_transactions(connection(), window(None)).unwrap();
    assert_eq!(got.transactions.len(), 1);
    assert_eq!(got.transactions[0].external_id, "QJD3EASSFE4JW");
    let logs = testing::take_logs();
    assert!(
        logs.iter().any(|(level, m)| *level == Level::Warn
            && m.contains("BADPAYMENT01")
            && m.contains("amount: not a number")),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|(_, m)| m.contains(TOKEN)),
        "the token is never logged: {logs:?}"
    );
}

#[test]
fn fetch_errors_and_bad_cursors() {
    testing::reset();
    state::set_string(CURRENCY_KEY, "USD").unwrap();
    testing::mock_http(|_| Ok(json_response(401, r#"{"message":"401 Unauthorized"}"#)));
    assert!(matches!(
        Clover::fetch_transactions(connection(), window(None)),
        Err(ProviderError::InvalidCredentials(_))
    ));
    testing::mock_http(|_| Ok(json_response(404, r#"{"message":"Not Found"}"#)));
    assert!(matches!(
        Clover::fetch_transactions(connection(), window(None)),
        Err(ProviderError::Upstream(m)) if m.contains("HTTP 404")
    ));
    testing::mock_http(|_| Ok(json_response(200, "not json")));
    assert!(matches!(
        Clover::fetch_transactions(connection(), window(None)),
        Err(ProviderError::Upstream(_))
    ));
    testing::take_requests();
    assert!(matches!(
        Clover::fetch_transactions(connection(), window(Some("page-2"))),
        Err(ProviderError::BadPayload(m)) if m.contains("page-2")
    ));
    assert!(
        testing::take_requests().is_empty(),
        "a bad cursor sends nothing"
    );
}

#[test]
fn a_merchant_without_a_currency_fails_the_sync_and_keeps_nothing() {
    testing::reset();
    testing::mock_http(|req| {
        assert!(req.url.ends_with("/properties"), "{}", req.url);
        Ok(json_response(
            200,
            r#"{"defaultCurrency":"","timezone":"UTC"}"#,
        ))
    });
    assert!(matches!(
        Clover::fetch_transactions(connection(), window(None)),
        Err(ProviderError::Upstream(m)) if m.contains("defaultCurrency")
    ));
    assert!(testing::state().is_empty());
}

#[test]
fn verify_compares_the_auth_code_header() {
    let body = r#"{"appId":"DRKVJT2ZRRRSC","merchants":{"KZ8VQ4S1R2ZB1":[{"objectId":"P:QJD3EASSFE4JW","type":"CREATE","ts":1795194000000}]}}"#;
    let key = AUTH_CODE.to_owned();
    assert!(Clover::verify_webhook(
        webhook(&[("X-Clover-Auth", AUTH_CODE)], body),
        key.clone()
    ));
    assert!(Clover::verify_webhook(
        webhook(&[("x-clover-auth", &format!(" {AUTH_CODE} "))], body),
        key.clone()
    ));
    assert!(!Clover::verify_webhook(
        webhook(
            &[("X-Clover-Auth", "0307e264-b33a-4913-88aa-37b10014a0b9")],
            body
        ),
        key.clone()
    ));
    assert!(!Clover::verify_webhook(
        webhook(&[("X-Clover-Auth", "")], body),
        key.clone()
    ));
    assert!(!Clover::verify_webhook(webhook(&[], body), key.clone()));
    assert!(!Clover::verify_webhook(
        webhook(&[("Authorization", AUTH_CODE)], body),
        key.clone()
    ));
    assert!(!Clover::verify_webhook(
        webhook(&[("X-Clover-Auth", "")], body),
        String::new()
    ));
    assert!(!Clover::verify_webhook(webhook(&[], body), String::new()));
}

#[test]
fn only_the_exact_verification_post_passes_without_the_header() {
    let key = AUTH_CODE.to_owned();
    let verification = r#"{"verificationCode":"ce7643c1-83ea-4218-abe6-da876c9c7a0a"}"#;
    assert!(Clover::verify_webhook(
        webhook(&[], verification),
        key.clone()
    ));
    for body in [
        r#"{"verificationCode":"ce7643c1-83ea-4218-abe6-da876c9c7a0a","merchants":{}}"#,
        r#"{"verificationCode":"not-a-uuid"}"#,
        r#"{"verificationCode":"ce7643c1x83ea-4218-abe6-da876c9c7a0a"}"#,
        r#"{"verificationCode":12}"#,
        r#"["ce7643c1-83ea-4218-abe6-da876c9c7a0a"]"#,
        "ce7643c1-83ea-4218-abe6-da876c9c7a0a",
    ] {
        assert!(
            !Clover::verify_webhook(webhook(&[], body), key.clone()),
            "{body}"
        );
    }
    // With a wrong auth code even the verification body is refused.
    assert!(!Clover::verify_webhook(
        webhook(&[("X-Clover-Auth", "wrong")], verification),
        key.clone()
    ));
    // No key configured: nothing passes.
    assert!(!Clover::verify_webhook(
        webhook(&[], verification),
        String::new()
    ));
}

#[test]
fn the_verification_code_is_logged_for_the_operator() {
    testing::reset();
    let event = Clover::parse_webhook(webhook(
        &[],
        r#"{"verificationCode":"ce7643c1-83ea-4218-abe6-da876c9c7a0a"}"#,
    ))
    .unwrap();
    assert_eq!(
        (event.event_id.as_str(), event.event_type.as_str()),
        (
            "verification-ce7643c1-83ea-4218-abe6-da876c9c7a0a",
            "verification"
        )
    );
    assert!(event.transactions.is_empty());
    let logs = testing::take_logs();
    assert!(
        logs.iter().any(|(level, m)| *level == Level::Info
            && m.contains("ce7643c1-83ea-4218-abe6-da876c9c7a0a")),
        "{logs:?}"
    );
}

#[test]
fn a_notification_names_its_changes_and_records_nothing() {
    testing::reset();
    let body = r#"{"appId":"DRKVJT2ZRRRSC","merchants":{
        "KZ8VQ4S1R2ZB1":[{"objectId":"P:QJD3EASSFE4JW","type":"UPDATE","ts":1795194300000},
                         {"objectId":"O:NPNR3JK4HH3XM","type":"UPDATE","ts":1795194300000},
                         {"objectId":"P:ABCDEFGHJKMNP","type":"CREATE","ts":1795194301000}],
        "OTHERMERCHANT":[{"objectId":"P:ZZZZZZZZZZZZZ","type":"UPDATE","ts":1795194302000}]}}"#;
    let event = Clover::parse_webhook(webhook(&[("X-Clover-Auth", AUTH_CODE)], body)).unwrap();
    assert_eq!(event.event_type, "O:UPDATE,P:CREATE,P:UPDATE");
    assert!(event.transactions.is_empty());
    assert!(event.event_id.starts_with("sha256-"), "{}", event.event_id);
    assert_eq!(event.event_id.len(), "sha256-".len() + 32);
    // The same body again is the same event (a replay); another body is another event.
    let again = Clover::parse_webhook(webhook(&[], body)).unwrap();
    assert_eq!(again.event_id, event.event_id);
    let other = Clover::parse_webhook(webhook(
        &[],
        &body.replace("1795194302000", "1795194302001"),
    ))
    .unwrap();
    assert_ne!(other.event_id, event.event_id);
    let logs = testing::take_logs();
    assert!(
        logs.iter().any(|(_, m)| m.contains("3 payment change(s)")),
        "{logs:?}"
    );
}

#[test]
fn malformed_notifications_are_bad_payloads() {
    for (body, expected) in [
        ("not json", ""),
        (r#"{"appId":"A"}"#, "no `merchants` object"),
        (
            r#"{"merchants":{"M":{"objectId":"P:1"}}}"#,
            "merchants.M is not a list",
        ),
        (
            r#"{"merchants":{"M":[{"type":"CREATE"}]}}"#,
            "has no objectId",
        ),
    ] {
        let err = Clover::parse_webhook(webhook(&[], body)).unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadPayload(m) if m.contains(expected)),
            "{body}: {err:?}"
        );
    }
    let event = Clover::parse_webhook(webhook(&[], r#"{"appId":"A","merchants":{}}"#)).unwrap();
    assert_eq!(event.event_type, "empty");
}

#[test]
fn many_kinds_are_cut_short_in_the_event_type() {
    let updates: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"objectId":"X{i}:1","type":"UPDATE","ts":1}}"#))
        .collect();
    let body = format!(r#"{{"merchants":{{"M":[{}]}}}}"#, updates.join(","));
    let event = Clover::parse_webhook(webhook(&[], &body)).unwrap();
    assert_eq!(event.event_type.split(',').count(), MAX_EVENT_KINDS + 1);
    assert!(event.event_type.ends_with(",…"));
}

#[test]
fn push_is_unsupported() {
    assert!(matches!(
        Clover::parse_push(b"{}".to_vec()),
        Err(ProviderError::Unsupported(_))
    ));
}

#[test]
fn the_two_way_operations_are_unsupported_and_send_nothing() {
    testing::reset();
    let request = CatalogRequest {
        cursor: None,
        since: None,
    };
    let unsupported =
        |e: ProviderError| matches!(e, ProviderError::Unsupported(m) if m.contains("Clover"));
    assert!(unsupported(
        Clover::fetch_catalog(connection(), request).unwrap_err()
    ));
    assert!(unsupported(
        Clover::lookup_order(connection(), "o1".into()).unwrap_err()
    ));
    assert!(unsupported(
        Clover::get_order_status(connection(), "o1".into()).unwrap_err()
    ));
    assert!(unsupported(
        Clover::get_availability(connection(), vec![]).unwrap_err()
    ));
    assert!(unsupported(
        Clover::set_availability(connection(), vec![]).unwrap_err()
    ));
    assert!(testing::take_requests().is_empty());
}
