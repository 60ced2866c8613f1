use super::*;
use posbridge_sdk::http::{find_header, HttpError, Method};
use posbridge_sdk::log::Level;
use posbridge_sdk::testing::{self, json_response};
use posbridge_sdk::types::RateLimit;

type Expect = fn(&ProviderError) -> bool;
type Patch = fn(&mut Value);

fn connection(location: &str) -> Connection {
    Connection {
        credentials: vec![("access_token".into(), "EAAA-token".into())],
        location_id: location.into(),
        environment: Environment::Production,
        base_url: None,
    }
}

fn webhook(url: &str, headers: &[(&str, &str)], body: &str) -> Webhook {
    Webhook {
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// A card payment as Square's API reference shows it (trimmed), with a tip and a refund.
const PAYMENT: &str = r#"{
    "id": "GQTFp1ZlXdpoW4o6eGiZhbjosiDFf",
    "created_at": "2026-11-20T19:00:01.234Z",
    "updated_at": "2026-11-20T19:05:00.000Z",
    "amount_money": {"amount": 2200, "currency": "USD"},
    "tip_money": {"amount": 300, "currency": "USD"},
    "total_money": {"amount": 2500, "currency": "USD"},
    "approved_money": {"amount": 2500, "currency": "USD"},
    "refunded_money": {"amount": 500, "currency": "USD"},
    "status": "COMPLETED",
    "delay_duration": "PT168H",
    "source_type": "CARD",
    "card_details": {
        "status": "CAPTURED",
        "card": {
            "card_brand": "VISA",
            "last_4": "1111",
            "exp_month": 11,
            "exp_year": 2028,
            "fingerprint": "sq-1-abcdef",
            "card_type": "DEBIT",
            "bin": "411111"
        },
        "entry_method": "KEYED",
        "cvv_status": "CVV_ACCEPTED"
    },
    "location_id": "L88917AVBK2S5",
    "order_id": "pRsjRTgFWATl7so6DxdKBJa7ssbZY",
    "customer_id": "W92WH6P11H4Z77CTET0RNTGFW8",
    "buyer_email_address": "ann@example.com",
    "refund_ids": ["r1"],
    "receipt_number": "GQTF",
    "some_future_field": {"nested": [1, 2.5, null]},
    "version_token": "TPtNEOBOa6Qq6E3C3IjckSVOM6b3hMbfhjvTxHBQUsB6o"
}"#;

fn payment(patch: impl FnOnce(&mut Value)) -> Value {
    let mut value: Value = serde_json::from_str(PAYMENT).unwrap();
    patch(&mut value);
    value
}

#[test]
fn info_declares_square() {
    let info = Square::info();
    assert_eq!(
        (info.id.as_str(), info.name.as_str(), info.version.as_str()),
        ("square", "Square", "1.2.1")
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
        ]
    );
    assert!(
        !info.capabilities.contains(&Capability::WriteAvailability),
        "Square's sold-out is read-only"
    );
    assert_eq!(
        info.credential_fields,
        vec![CredentialField {
            name: "access_token".into(),
            label: "Access token".into(),
            secret: true,
            required: true
        }]
    );
    assert_eq!(
        info.allowed_hosts,
        vec!["connect.squareup.com", "connect.squareupsandbox.com"]
    );
}

#[test]
fn validate_reads_the_location_with_square_headers() {
    testing::reset();
    testing::mock_http(|_| {
        Ok(json_response(
            200,
            r#"{"location":{"id":"L88917AVBK2S5","name":"Downtown","business_name":"Ann's Bakery",
                "timezone":"America/New_York","currency":"USD","status":"ACTIVE",
                "merchant_id":"MLD7K4Y2S9F2G","capabilities":["CREDIT_CARD_PROCESSING"],
                "address":{"locality":"New York"}}}"#,
        ))
    });
    let info = Square::validate(connection("L88917AVBK2S5")).unwrap();
    assert_eq!(
        info,
        LocationInfo {
            id: "L88917AVBK2S5".into(),
            name: "Downtown".into(),
            timezone: Some("America/New_York".into()),
            currency: Some("USD".into()),
            merchant_id: Some("MLD7K4Y2S9F2G".into()),
            business_name: Some("Ann's Bakery".into()),
            status: Some("ACTIVE".into()),
        }
    );
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, Method::Get);
    assert_eq!(
        req.url,
        "https://connect.squareup.com/v2/locations/L88917AVBK2S5"
    );
    let header = |name| find_header(&req.headers, name);
    assert_eq!(header("authorization"), Some("Bearer EAAA-token"));
    assert_eq!(header("square-version"), Some("2025-08-20"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("accept"), Some("application/json"));
    assert!(req.body.is_none());
}

#[test]
fn base_url_by_environment_or_override_and_encoded_location() {
    testing::reset();
    testing::mock_http(|_| Ok(json_response(200, r#"{"location":{"id":"main"}}"#)));
    let mut conn = connection("main");
    conn.environment = Environment::Sandbox;
    let info = Square::validate(conn.clone()).unwrap();
    assert_eq!(info.name, "main", "falls back to the id");
    conn.base_url = Some("http://127.0.0.1:8081/".into());
    conn.location_id = "a b/c".into();
    Square::validate(conn).unwrap();
    let urls: Vec<_> = testing::take_requests()
        .into_iter()
        .map(|r| r.url)
        .collect();
    assert_eq!(
        urls,
        [
            "https://connect.squareupsandbox.com/v2/locations/main",
            "http://127.0.0.1:8081/v2/locations/a%20b%2Fc"
        ]
    );
}

#[test]
fn validate_maps_square_errors() {
    let cases: [(u16, &str, Expect); 5] = [
        (
            401,
            r#"{"errors":[{"category":"AUTHENTICATION_ERROR","code":"UNAUTHORIZED","detail":"This request could not be authorized."}]}"#,
            |e| {
                matches!(e, ProviderError::InvalidCredentials(m)
                if m == "credentials refused (HTTP 401): This request could not be authorized. [AUTHENTICATION_ERROR/UNAUTHORIZED]")
            },
        ),
        (
            403,
            r#"{"errors":[{"category":"AUTHENTICATION_ERROR","code":"INSUFFICIENT_SCOPES","detail":"needs PAYMENTS_READ"}]}"#,
            |e| matches!(e, ProviderError::PermissionDenied(m) if m.contains("needs PAYMENTS_READ") && m.contains("INSUFFICIENT_SCOPES")),
        ),
        (
            404,
            r#"{"errors":[{"category":"INVALID_REQUEST_ERROR","code":"NOT_FOUND","detail":"Location not found."}]}"#,
            |e| matches!(e, ProviderError::LocationNotFound(m) if m.contains("Location not found.") && m.contains("NOT_FOUND")),
        ),
        (
            429,
            r#"{"errors":[{"category":"RATE_LIMIT_ERROR","code":"RATE_LIMITED"}]}"#,
            |e| matches!(e, ProviderError::RateLimited(RateLimit { message, retry_after_ms: None }) if message.contains("RATE_LIMIT_ERROR/RATE_LIMITED")),
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
        let err = Square::validate(connection("L1")).unwrap_err();
        assert!(expected(&err), "{status}: {err:?}");
    }
}

#[test]
fn validate_without_token_or_unreachable() {
    testing::reset();
    let mut conn = connection("L1");
    conn.credentials.clear();
    assert!(matches!(
        Square::validate(conn),
        Err(ProviderError::InvalidCredentials(m)) if m.contains("access_token")
    ));
    assert!(
        testing::take_requests().is_empty(),
        "no call without a token"
    );
    testing::mock_http(|_| Err(HttpError::Denied("host not approved".into())));
    assert_eq!(
        Square::validate(connection("L1")),
        Err(ProviderError::PermissionDenied("host not approved".into()))
    );
    testing::mock_http(|_| Ok(json_response(200, "not json")));
    assert!(matches!(
        Square::validate(connection("L1")),
        Err(ProviderError::Upstream(_))
    ));
}

#[test]
fn maps_a_payment() {
    let t = to_transaction(payment(|_| {})).unwrap();
    assert_eq!(
        t,
        Transaction {
            external_id: "GQTFp1ZlXdpoW4o6eGiZhbjosiDFf".into(),
            order_id: Some("pRsjRTgFWATl7so6DxdKBJa7ssbZY".into()),
            location_id: Some("L88917AVBK2S5".into()),
            occurred_at: time::parse_timestamp("2026-11-20T19:00:01.234Z").unwrap(),
            updated_at: Some(time::parse_timestamp("2026-11-20T19:05:00Z").unwrap()),
            currency: "USD".into(),
            total: 2500,
            subtotal: 2200,
            tax: 0,
            tip: 300,
            discount: 0,
            refunded: 500,
            tender: Tender::Card,
            card: Some(CardInfo {
                brand: Some("VISA".into()),
                last4: Some("1111".into()),
                fingerprint: Some("sq-1-abcdef".into()),
            }),
            customer: Some(CustomerRef {
                provider_customer_id: Some("W92WH6P11H4Z77CTET0RNTGFW8".into()),
                phone: None,
                email: Some("ann@example.com".into()),
                name: None,
            }),
            status: TransactionStatus::Completed,
            staff: None,
            line_items: Vec::new(),
            refunds: Vec::new(),
        }
    );
}

#[test]
fn maps_a_minimal_cash_payment() {
    let value: Value = serde_json::from_str(
        r#"{"id":"p2","created_at":"2026-11-20T19:00:00Z","amount_money":{"amount":1000,"currency":"CAD"},
            "status":"APPROVED","source_type":"CASH","cash_details":{"buyer_supplied_money":{"amount":2000,"currency":"CAD"}}}"#,
    )
    .unwrap();
    let t = to_transaction(value).unwrap();
    assert_eq!(
        (t.total, t.subtotal, t.tip, t.refunded, t.currency.as_str()),
        (1000, 1000, 0, 0, "CAD")
    );
    assert_eq!(t.tender, Tender::Cash);
    assert_eq!(t.status, TransactionStatus::Pending);
    assert_eq!((t.card, t.customer, t.updated_at), (None, None, None));

    // Only total_money: the subtotal is total - tip.
    let t = to_transaction(payment(|p| {
        p.as_object_mut().unwrap().remove("amount_money");
    }))
    .unwrap();
    assert_eq!((t.total, t.subtotal, t.tip), (2500, 2200, 300));
    // total_money without a currency falls back to amount_money's.
    let t = to_transaction(payment(|p| {
        p["total_money"] = serde_json::json!({"amount": 2500});
        p["amount_money"]["currency"] = "EUR".into();
    }))
    .unwrap();
    assert_eq!(t.currency, "EUR");
}

#[test]
fn maps_statuses_and_tenders() {
    for (square, ours) in [
        ("COMPLETED", TransactionStatus::Completed),
        ("APPROVED", TransactionStatus::Pending),
        ("PENDING", TransactionStatus::Pending),
        ("CANCELED", TransactionStatus::Voided),
        ("FAILED", TransactionStatus::Failed),
        ("SOMETHING_NEW", TransactionStatus::Pending),
    ] {
        let t = to_transaction(payment(|p| p["status"] = square.into())).unwrap();
        assert_eq!(t.status, ours, "{square}");
    }
    let t = to_transaction(payment(|p| {
        p.as_object_mut().unwrap().remove("status");
    }))
    .unwrap();
    assert_eq!(t.status, TransactionStatus::Pending);
    for (square, ours) in [
        ("CARD", Tender::Card),
        ("CASH", Tender::Cash),
        ("WALLET", Tender::Wallet),
        ("BANK_ACCOUNT", Tender::BankTransfer),
        ("BUY_NOW_PAY_LATER", Tender::Other),
        ("SQUARE_ACCOUNT", Tender::Other),
        ("EXTERNAL", Tender::Other),
    ] {
        let t = to_transaction(payment(|p| p["source_type"] = square.into())).unwrap();
        assert_eq!(t.tender, ours, "{square}");
    }
}

#[test]
fn refused_payments_say_why() {
    let cases: [(&str, Patch); 8] = [
        ("id", |p| {
            p.as_object_mut().unwrap().remove("id");
        }),
        ("created_at", |p| {
            p.as_object_mut().unwrap().remove("created_at");
        }),
        ("created_at", |p| p["created_at"] = "yesterday".into()),
        ("updated_at", |p| p["updated_at"] = "2026-11-20".into()),
        ("amount_money", |p| {
            let o = p.as_object_mut().unwrap();
            o.remove("amount_money");
            o.remove("total_money");
        }),
        ("total_money.amount: 25.5", |p| {
            p["total_money"]["amount"] = serde_json::from_str("25.5").unwrap()
        }),
        ("tip_money.amount: missing", |p| {
            p["tip_money"] = serde_json::json!({})
        }),
        ("currency", |p| {
            p["total_money"] = serde_json::json!({"amount": 1});
            p["amount_money"] = serde_json::json!({"amount": 1, "currency": ""});
        }),
    ];
    for (needle, patch) in cases {
        let err = to_transaction(payment(patch)).unwrap_err();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(to_transaction(serde_json::json!("a string")).is_err());
    assert!(to_transaction(payment(|p| p["id"] = "".into())).is_err());
}

#[test]
fn fetch_sends_an_incremental_updated_at_query() {
    testing::reset();
    let page = format!(r#"{{"payments":[{PAYMENT}],"cursor":"CURSOR-2"}}"#);
    testing::mock_http(move |_| Ok(json_response(200, &page)));
    let start = time::parse_timestamp("2026-11-20T19:00:00Z").unwrap();
    let end = time::parse_timestamp("2026-11-20T20:00:00.5Z").unwrap();
    let result = Square::fetch_transactions(
        connection("L88917AVBK2S5"),
        FetchRequest {
            start,
            end,
            cursor: None,
        },
    )
    .unwrap();
    assert_eq!(result.transactions.len(), 1);
    assert_eq!(result.next_cursor.as_deref(), Some("CURSOR-2"));
    let requests = testing::take_requests();
    let req = &requests[0];
    assert_eq!(req.method, Method::Get);
    assert_eq!(
        req.url,
        "https://connect.squareup.com/v2/payments?updated_at_begin_time=2026-11-20T19%3A00%3A00.000Z\
         &updated_at_end_time=2026-11-20T20%3A00%3A00.500Z&sort_field=UPDATED_AT&sort_order=ASC\
         &location_id=L88917AVBK2S5&limit=100"
    );
    assert_eq!(
        find_header(&req.headers, "Authorization"),
        Some("Bearer EAAA-token")
    );
    assert_eq!(
        find_header(&req.headers, "Square-Version"),
        Some("2025-08-20")
    );
}

#[test]
fn fetch_follows_the_cursor_to_the_last_page() {
    testing::reset();
    testing::mock_http(|req| {
        assert!(
            req.url.ends_with("&limit=100&cursor=abc%2B%2F%3D"),
            "{}",
            req.url
        );
        Ok(json_response(200, "{}"))
    });
    let page = Square::fetch_transactions(
        connection("L1"),
        FetchRequest {
            start: 0,
            end: 1000,
            cursor: Some("abc+/=".into()),
        },
    )
    .unwrap();
    assert_eq!(
        page,
        TransactionPage {
            transactions: vec![],
            next_cursor: None
        }
    );
    // An empty cursor string is the last page too.
    testing::mock_http(|_| Ok(json_response(200, r#"{"payments":[],"cursor":""}"#)));
    let page = Square::fetch_transactions(
        connection("L1"),
        FetchRequest {
            start: 0,
            end: 1000,
            cursor: None,
        },
    )
    .unwrap();
    assert_eq!(page.next_cursor, None);
}

#[test]
fn fetch_for_the_main_location_omits_location_id() {
    testing::reset();
    testing::mock_http(|req| {
        assert!(!req.url.contains("location_id"), "{}", req.url);
        Ok(json_response(200, r#"{"payments":[]}"#))
    });
    Square::fetch_transactions(
        connection("main"),
        FetchRequest {
            start: 0,
            end: 1,
            cursor: None,
        },
    )
    .unwrap();
    assert_eq!(testing::take_requests().len(), 1);
}

#[test]
fn fetch_skips_unusable_payments_with_a_warning() {
    testing::reset();
    let page = format!(
        r#"{{"payments":[{PAYMENT},{{"id":"broken","created_at":"2026-11-20T19:00:00Z"}},{{"no":"id"}},17],"cursor":"c"}}"#
    );
    testing::mock_http(move |_| Ok(json_response(200, &page)));
    let result = Square::fetch_transactions(
        connection("L1"),
        FetchRequest {
            start: 0,
            end: 1,
            cursor: None,
        },
    )
    .unwrap();
    assert_eq!(result.transactions.len(), 1);
    assert_eq!(result.next_cursor.as_deref(), Some("c"));
    let warnings: Vec<_> = testing::take_logs()
        .into_iter()
        .filter(|(level, _)| *level == Level::Warn)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("broken"), "{warnings:?}");
    assert!(!warnings.iter().any(|w| w.contains("EAAA-token")));
}

#[test]
fn fetch_errors() {
    testing::reset();
    testing::mock_http(|_| Ok(json_response(200, r#"{"payments":"nope"}"#)));
    let req = FetchRequest {
        start: 0,
        end: 1,
        cursor: None,
    };
    assert!(matches!(
        Square::fetch_transactions(connection("L1"), req.clone()),
        Err(ProviderError::Upstream(_))
    ));
    testing::mock_http(|_| Ok(json_response(401, "{}")));
    assert!(matches!(
        Square::fetch_transactions(connection("L1"), req.clone()),
        Err(ProviderError::InvalidCredentials(_))
    ));
    testing::mock_http(|_| Ok(json_response(404, "{}")));
    assert!(matches!(
        Square::fetch_transactions(connection("L1"), req.clone()),
        Err(ProviderError::Upstream(_))
    ));
    // Since 0.3 a timeout is `timed-out` (still retryable), no longer `upstream`.
    testing::mock_http(|_| Err(HttpError::Timeout));
    assert!(matches!(
        Square::fetch_transactions(connection("L1"), req),
        Err(ProviderError::TimedOut(_))
    ));
}

const EXAMPLE_URL: &str = "https://webhook.site/webhooks";
const EXAMPLE_BODY: &str = r#"{"data":{"type":"webhooks","id":">id<"}}"#;
const EXAMPLE_SIGNATURE: &str = "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=";

#[test]
fn verifies_squares_worked_example() {
    let ok = webhook(
        EXAMPLE_URL,
        &[("x-square-hmacsha256-signature", EXAMPLE_SIGNATURE)],
        EXAMPLE_BODY,
    );
    assert!(Square::verify_webhook(ok.clone(), "signature-key".into()));
    // Header names are case-insensitive.
    let mut upper = ok.clone();
    upper.headers = vec![(
        "X-Square-HmacSha256-Signature".into(),
        EXAMPLE_SIGNATURE.into(),
    )];
    assert!(Square::verify_webhook(upper, "signature-key".into()));

    // One byte changed in the key, the URL or the body: refused.
    assert!(!Square::verify_webhook(ok.clone(), "signature-kez".into()));
    let mut url = ok.clone();
    url.url = "https://webhook.site/webhookz".into();
    assert!(!Square::verify_webhook(url, "signature-key".into()));
    let mut body = ok.clone();
    body.body = EXAMPLE_BODY.replace(">id<", ">id!").into_bytes();
    assert!(!Square::verify_webhook(body, "signature-key".into()));
    let mut sig = ok.clone();
    sig.headers = vec![(
        "x-square-hmacsha256-signature".into(),
        EXAMPLE_SIGNATURE.replace('C', "D"),
    )];
    assert!(!Square::verify_webhook(sig, "signature-key".into()));
    // No header, garbage header, empty key.
    let mut none = ok.clone();
    none.headers.clear();
    assert!(!Square::verify_webhook(none, "signature-key".into()));
    let mut garbage = ok.clone();
    garbage.headers = vec![("x-square-hmacsha256-signature".into(), "%%%".into())];
    assert!(!Square::verify_webhook(garbage, "signature-key".into()));
    assert!(!Square::verify_webhook(ok, String::new()));
}

#[test]
fn the_key_is_used_as_utf8_not_base64_decoded() {
    // A key that is valid base64: signing with its decoded bytes must not verify.
    let key = "c2lnbmF0dXJlLWtleQ==";
    let decoded = signature::base64_decode(key).unwrap();
    let wrong = signature::base64_encode(&signature::hmac_sha256(
        &decoded,
        &[EXAMPLE_URL.as_bytes(), EXAMPLE_BODY.as_bytes()],
    ));
    let right = signature::base64_encode(&signature::hmac_sha256(
        key.as_bytes(),
        &[EXAMPLE_URL.as_bytes(), EXAMPLE_BODY.as_bytes()],
    ));
    let with = |sig: &str| {
        webhook(
            EXAMPLE_URL,
            &[("x-square-hmacsha256-signature", sig)],
            EXAMPLE_BODY,
        )
    };
    assert!(!Square::verify_webhook(with(&wrong), key.into()));
    assert!(Square::verify_webhook(with(&right), key.into()));
}

fn envelope(kind: &str, payment: &str) -> String {
    format!(
        r#"{{"merchant_id":"6SSW7HV8K2ST5","type":"{kind}","event_id":"13b867cf-db3d-4b1c-90b6-2f32a9d78124",
            "created_at":"2026-11-20T19:05:01.000Z",
            "data":{{"type":"payment","id":"GQTFp1ZlXdpoW4o6eGiZhbjosiDFf","object":{{"payment":{payment}}}}}}}"#
    )
}

#[test]
fn parses_payment_webhooks() {
    for kind in ["payment.created", "payment.updated"] {
        let event =
            Square::parse_webhook(webhook(EXAMPLE_URL, &[], &envelope(kind, PAYMENT))).unwrap();
        assert_eq!(event.event_id, "13b867cf-db3d-4b1c-90b6-2f32a9d78124");
        assert_eq!(event.event_type, kind);
        assert_eq!(
            event.transactions,
            vec![to_transaction(payment(|_| {})).unwrap()]
        );
    }
}

#[test]
fn other_webhooks_carry_no_transactions() {
    let body = r#"{"merchant_id":"M","type":"refund.updated","event_id":"e-9","created_at":"2026-11-20T19:05:01Z",
        "data":{"type":"refund","id":"r1","object":{"refund":{"id":"r1","payment_id":"p1"}}}}"#;
    let event = Square::parse_webhook(webhook(EXAMPLE_URL, &[], body)).unwrap();
    assert_eq!(event, WebhookEvent::new("e-9", "refund.updated"));
}

#[test]
fn malformed_webhooks_are_bad_payloads() {
    let bad = |body: &str| {
        let result = Square::parse_webhook(webhook(EXAMPLE_URL, &[], body));
        assert!(
            matches!(result, Err(ProviderError::BadPayload(_))),
            "{body}: {result:?}"
        );
    };
    bad("");
    bad("{");
    bad("[]");
    bad(r#"{"type":"payment.created"}"#);
    bad(r#"{"type":"payment.created","event_id":""}"#);
    bad(r#"{"type":"payment.created","event_id":7}"#);
    bad(r#"{"event_id":"e1"}"#);
    bad(r#"{"type":"payment.updated","event_id":"e1","data":{"object":{}}}"#);
    bad(r#"{"type":"payment.updated","event_id":"e1","data":{"object":{"payment":"p"}}}"#);
    bad(&envelope(
        "payment.updated",
        r#"{"id":"p1","created_at":"2026-11-20T19:00:00Z"}"#,
    ));
    bad(&envelope(
        "payment.updated",
        r#"{"created_at":"2026-11-20T19:00:00Z","total_money":{"amount":1,"currency":"USD"}}"#,
    ));
    bad(&envelope(
        "payment.updated",
        r#"{"id":"p1","total_money":{"amount":1,"currency":"USD"}}"#,
    ));
}

#[test]
fn push_is_unsupported() {
    assert!(matches!(
        Square::parse_push(b"{}".to_vec()),
        Err(ProviderError::Unsupported(_))
    ));
}

/// Byte-level mutations of `seed` from a fixed LCG (no extra crates): truncations, flips,
/// insertions of JSON punctuation.
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
                    1 if at < b.len() => b[at] = b"{}[]\":,0.-e9 nt"[next() % 15],
                    2 => b.insert(at.min(b.len()), b"{}[]\":,0.-e9 nt"[next() % 15]),
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
    testing::reset();
    let body = envelope("payment.updated", PAYMENT);
    for bytes in mutations(&body, 3000) {
        let w = Webhook {
            url: EXAMPLE_URL.into(),
            headers: vec![("x-square-hmacsha256-signature".into(), "AAAA".into())],
            body: bytes.clone(),
        };
        let _ = Square::verify_webhook(w.clone(), "k".into());
        let _ = Square::parse_webhook(w);
        let page = [b"{\"payments\":[".as_slice(), &bytes, b"]}"].concat();
        testing::mock_http(move |_| {
            Ok(posbridge_sdk::http::Response {
                status: 200,
                headers: vec![],
                body: page.clone(),
            })
        });
        let _ = Square::fetch_transactions(
            connection("L1"),
            FetchRequest {
                start: 0,
                end: 1,
                cursor: None,
            },
        );
    }
}

// ---- two-way (contract 0.3) -------------------------------------------------------------

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = &rest[rest.find('/').unwrap_or(rest.len())..];
    path.split('?').next().unwrap_or(path)
}

fn body_json(req: &posbridge_sdk::http::RawRequest) -> Value {
    serde_json::from_slice(req.body.as_deref().unwrap_or(b"null")).unwrap()
}

fn an_order(payment: bool) -> Order {
    Order {
        our_order_id: "ord_7Hq2".into(),
        currency: "usd".into(),
        lines: vec![
            OrderLine {
                line_id: "l1".into(),
                item_id: Some("ITEM_BURGER".into()),
                item_group_id: None,
                variation_id: Some("VAR_BURGER_REG".into()),
                name: "Burger".into(),
                quantity: "2".into(),
                unit_price: 1050,
                modifiers: vec![
                    OrderModifier {
                        provider_id: Some("MOD_CHEESE".into()),
                        group_id: Some("ML_TOPPINGS".into()),
                        name: "Cheese".into(),
                        quantity: 1,
                        unit_price: 100,
                    },
                    OrderModifier {
                        provider_id: None,
                        group_id: None,
                        name: "No pickles".into(),
                        quantity: 1,
                        unit_price: 0,
                    },
                ],
                note: Some("well done".into()),
            },
            OrderLine {
                line_id: "l2".into(),
                item_id: None,
                item_group_id: None,
                variation_id: None,
                name: "Birthday candle".into(),
                quantity: "0.5".into(),
                unit_price: 250,
                modifiers: vec![],
                note: None,
            },
        ],
        fulfilment: Fulfilment {
            kind: FulfilmentKind::Pickup,
            customer_name: "Ann Example".into(),
            customer_phone: Some("+15555550123".into()),
            customer_email: None,
            scheduled_at: Some(1_795_201_200_000),
            prep_time_minutes: Some(15),
            delivery_address: vec![],
            note: Some("ring the bell".into()),
        },
        total: 2525,
        payment: payment.then(|| ExternalPayment {
            amount: 2525,
            tip: 300,
            source: "web shop".into(),
        }),
        source_name: "posbridge".into(),
    }
}

/// An order as Square answers it (trimmed from the API reference's example).
fn square_order(fulfillment_state: &str, state: &str, version: i64, tenders: bool) -> Value {
    let mut order = serde_json::json!({
        "id": "CAISENgvlJ6jLWAzERDzjyHVybY",
        "location_id": "L88917AVBK2S5",
        "reference_id": "ord_7Hq2",
        "source": {"name": "posbridge"},
        "line_items": [
            {"uid": "l1", "catalog_object_id": "VAR_BURGER_REG", "quantity": "2", "name": "Burger",
             "gross_sales_money": {"amount": 2300, "currency": "USD"},
             "total_money": {"amount": 2484, "currency": "USD"}},
            {"uid": "l2", "quantity": "0.5", "name": "Birthday candle",
             "gross_sales_money": {"amount": 125, "currency": "USD"},
             "total_money": {"amount": 135, "currency": "USD"}}
        ],
        "fulfillments": [{
            "uid": "f1", "type": "PICKUP", "state": fulfillment_state,
            "pickup_details": {"pickup_at": "2026-11-20T19:40:00Z", "schedule_type": "SCHEDULED"}
        }],
        "metadata": {"posbridge_pay_source": "web shop", "posbridge_pay_tip": "300"},
        "created_at": "2026-11-20T19:00:00.000Z",
        "updated_at": "2026-11-20T19:05:00.000Z",
        "state": state,
        "version": version,
        "total_money": {"amount": 2619, "currency": "USD"},
        "total_tax_money": {"amount": 194, "currency": "USD"},
        "total_discount_money": {"amount": 0, "currency": "USD"},
        "net_amount_due_money": {"amount": 2619, "currency": "USD"}
    });
    if tenders {
        order["tenders"] = serde_json::json!([{"id": "t1", "type": "OTHER"}]);
    }
    order
}

#[test]
fn submits_an_order_then_pays_it_with_an_external_tender() {
    testing::reset();
    testing::mock_http(|req| {
        let body = if req.body.is_some() {
            body_json(req)
        } else {
            Value::Null
        };
        Ok(match (req.method, path_of(&req.url)) {
            (Method::Post, "/v2/orders") => json_response(
                200,
                &serde_json::json!({"order": square_order("PROPOSED", "OPEN", 1, false)})
                    .to_string(),
            ),
            (Method::Post, "/v2/payments") => {
                assert_eq!(body["amount_money"]["amount"], 2619);
                json_response(200, r#"{"payment":{"id":"pay1","status":"COMPLETED"}}"#)
            }
            (Method::Get, "/v2/orders/CAISENgvlJ6jLWAzERDzjyHVybY") => json_response(
                200,
                &serde_json::json!({"order": square_order("PROPOSED", "OPEN", 3, true)})
                    .to_string(),
            ),
            other => panic!("unexpected {other:?}"),
        })
    });
    let status = Square::submit_order(connection("L88917AVBK2S5"), an_order(true)).unwrap();
    assert_eq!(
        status,
        OrderStatus {
            provider_order_id: "CAISENgvlJ6jLWAzERDzjyHVybY".into(),
            our_order_id: Some("ord_7Hq2".into()),
            state: OrderState::Pending,
            provider_state: "OPEN/PROPOSED".into(),
            version: Some(3),
            updated_at: Some(time::parse_timestamp("2026-11-20T19:05:00Z").unwrap()),
            ready_at: Some(time::parse_timestamp("2026-11-20T19:40:00Z").unwrap()),
            total: Some(2619),
        }
    );
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 3, "create, pay, read back");
    let create = body_json(&requests[0]);
    assert_eq!(create["idempotency_key"], "ord_7Hq2");
    let order = &create["order"];
    assert_eq!(order["location_id"], "L88917AVBK2S5");
    assert_eq!(order["reference_id"], "ord_7Hq2");
    assert_eq!(order["source"]["name"], "posbridge");
    assert_eq!(order["ticket_name"], "Ann Example");
    assert_eq!(
        order["pricing_options"],
        serde_json::json!({"auto_apply_taxes": true}),
        "the created order is taxed as it was priced"
    );
    assert!(order.get("taxes").is_none());
    let lines = order["line_items"].as_array().unwrap();
    assert_eq!(lines[0]["uid"], "l1");
    assert_eq!(lines[0]["quantity"], "2", "quantity is a string");
    assert_eq!(lines[0]["catalog_object_id"], "VAR_BURGER_REG");
    assert!(
        lines[0].get("base_price_money").is_none(),
        "the catalog prices it"
    );
    assert_eq!(lines[0]["note"], "well done");
    assert_eq!(
        lines[0]["modifiers"],
        serde_json::json!([
            {"catalog_object_id": "MOD_CHEESE", "quantity": "1"},
            {"name": "No pickles", "base_price_money": {"amount": 0, "currency": "USD"}, "quantity": "1"}
        ])
    );
    assert_eq!(lines[1]["quantity"], "0.5");
    assert_eq!(lines[1]["name"], "Birthday candle");
    assert_eq!(
        lines[1]["base_price_money"],
        serde_json::json!({"amount": 250, "currency": "USD"})
    );
    let fulfillments = order["fulfillments"].as_array().unwrap();
    assert_eq!(fulfillments.len(), 1);
    assert_eq!(fulfillments[0]["type"], "PICKUP");
    let pickup = &fulfillments[0]["pickup_details"];
    assert_eq!(pickup["recipient"]["display_name"], "Ann Example");
    assert_eq!(pickup["recipient"]["phone_number"], "+15555550123");
    assert_eq!(pickup["schedule_type"], "SCHEDULED");
    assert_eq!(pickup["pickup_at"], "2026-11-20T19:00:00.000Z");
    assert_eq!(pickup["prep_time_duration"], "PT15M");
    assert_eq!(pickup["note"], "ring the bell");
    let pay = body_json(&requests[1]);
    assert_eq!(
        pay,
        serde_json::json!({
            "idempotency_key": "ord_7Hq2-pay",
            "source_id": "EXTERNAL",
            "external_details": {"type": "OTHER", "source": "web shop"},
            "amount_money": {"amount": 2619, "currency": "USD"},
            "tip_money": {"amount": 300, "currency": "USD"},
            "order_id": "CAISENgvlJ6jLWAzERDzjyHVybY",
            "location_id": "L88917AVBK2S5",
            "reference_id": "ord_7Hq2"
        })
    );
    assert!(pay["idempotency_key"].as_str().unwrap().len() <= 45);
}

#[test]
fn an_unpaid_asap_delivery_goes_in_as_pickup_with_the_address_in_the_note() {
    testing::reset();
    testing::mock_http(|_| {
        Ok(json_response(
            200,
            &serde_json::json!({"order": square_order("PROPOSED", "OPEN", 1, false)}).to_string(),
        ))
    });
    let mut order = an_order(false);
    order.fulfilment.kind = FulfilmentKind::Delivery;
    order.fulfilment.scheduled_at = None;
    order.fulfilment.prep_time_minutes = None;
    order.fulfilment.delivery_address = vec!["1 Main St".into(), "Springfield".into()];
    Square::submit_order(connection("L88917AVBK2S5"), order).unwrap();
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 1, "no payment without one: {requests:?}");
    let body = body_json(&requests[0]);
    let f = &body["order"]["fulfillments"][0];
    assert_eq!(f["type"], "PICKUP");
    assert_eq!(f["pickup_details"]["schedule_type"], "ASAP");
    assert!(f["pickup_details"].get("pickup_at").is_none());
    assert!(f["pickup_details"].get("prep_time_duration").is_none());
    assert_eq!(
        f["pickup_details"]["note"],
        "DELIVERY to 1 Main St, Springfield — ring the bell"
    );
    assert!(body["order"].get("metadata").is_none());
}

#[test]
fn a_bad_order_is_refused_before_anything_is_sent() {
    testing::reset();
    testing::mock_http(|req| panic!("nothing may be sent: {}", req.url));
    let mut long = an_order(false);
    long.our_order_id = "x".repeat(41);
    assert!(matches!(
        Square::submit_order(connection("L1"), long),
        Err(ProviderError::Rejected(r)) if r.field.as_deref() == Some("our-order-id")
    ));
    for bad in ["", "2.", "-1", "1e3", "0", " 1"] {
        let mut order = an_order(false);
        order.lines[0].quantity = bad.into();
        assert!(
            matches!(
                Square::price_order(connection("L1"), order),
                Err(ProviderError::Rejected(r)) if r.field.as_deref() == Some("lines[0].quantity")
            ),
            "{bad:?}"
        );
    }
    assert!(testing::take_requests().is_empty());
}

#[test]
fn submit_errors_map_to_rejected_conflict_and_timed_out() {
    testing::reset();
    testing::mock_http(|_| {
        Ok(json_response(
            400,
            r#"{"errors":[{"category":"INVALID_REQUEST_ERROR","code":"NOT_FOUND","detail":"Item variation with catalog object ID `VAR_BURGER_REG` not found.","field":"order.line_items[0].catalog_object_id"}]}"#,
        ))
    });
    match Square::submit_order(connection("L1"), an_order(true)) {
        Err(ProviderError::Rejected(r)) => {
            assert_eq!(r.status, Some(400));
            assert_eq!(r.code.as_deref(), Some("NOT_FOUND"));
            assert_eq!(
                r.field.as_deref(),
                Some("order.line_items[0].catalog_object_id")
            );
            assert!(
                r.message.contains("not found")
                    && r.message.ends_with("[INVALID_REQUEST_ERROR/NOT_FOUND]"),
                "{}",
                r.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        testing::take_requests().len(),
        1,
        "no payment after a refusal"
    );
    testing::mock_http(|_| {
        Ok(json_response(
            400,
            r#"{"errors":[{"category":"INVALID_REQUEST_ERROR","code":"IDEMPOTENCY_KEY_REUSED","detail":"The idempotency key can only be retried with the same request data."}]}"#,
        ))
    });
    assert!(matches!(
        Square::submit_order(connection("L1"), an_order(false)),
        Err(ProviderError::Conflict(m)) if m.contains("IDEMPOTENCY_KEY_REUSED")
    ));
    testing::mock_http(|_| Err(HttpError::Timeout));
    assert!(matches!(
        Square::submit_order(connection("L1"), an_order(false)),
        Err(ProviderError::TimedOut(_))
    ));
    testing::mock_http(|_| {
        Ok(json_response(
            429,
            r#"{"errors":[{"category":"RATE_LIMIT_ERROR","code":"RATE_LIMITED"}]}"#,
        ))
    });
    assert!(matches!(
        Square::submit_order(connection("L1"), an_order(false)),
        Err(ProviderError::RateLimited(_))
    ));
}

#[test]
fn prices_an_order_with_calculate() {
    testing::reset();
    testing::mock_http(|req| {
        assert_eq!(path_of(&req.url), "/v2/orders/calculate");
        Ok(json_response(
            200,
            &serde_json::json!({"order": square_order("PROPOSED", "OPEN", 0, false)}).to_string(),
        ))
    });
    let priced = Square::price_order(connection("L88917AVBK2S5"), an_order(true)).unwrap();
    assert_eq!(
        priced,
        PricedOrder {
            currency: "USD".into(),
            subtotal: 2425,
            tax: 194,
            discount: 0,
            total: 2619,
            lines: vec![("l1".into(), 2484), ("l2".into(), 135)],
        }
    );
    let requests = testing::take_requests();
    let body = body_json(&requests[0]);
    assert!(body.get("idempotency_key").is_none(), "nothing is stored");
    assert_eq!(body["order"]["reference_id"], "ord_7Hq2");
    assert_eq!(
        body["order"]["pricing_options"],
        serde_json::json!({"auto_apply_taxes": true}),
        "Square adds no catalog tax to an API order unless asked"
    );
    assert!(
        body["order"].get("taxes").is_none(),
        "no taxes of our own on top: Square would apply a tax twice"
    );
}

#[test]
fn maps_order_states() {
    let cases = [
        ("OPEN", "PROPOSED", OrderState::Pending),
        ("OPEN", "RESERVED", OrderState::InProgress),
        ("OPEN", "PREPARED", OrderState::Ready),
        ("OPEN", "COMPLETED", OrderState::Completed),
        ("OPEN", "CANCELED", OrderState::Canceled),
        ("OPEN", "FAILED", OrderState::Rejected),
        ("COMPLETED", "COMPLETED", OrderState::Completed),
        ("CANCELED", "CANCELED", OrderState::Canceled),
        ("CANCELED", "PROPOSED", OrderState::Canceled),
        ("DRAFT", "PROPOSED", OrderState::Pending),
    ];
    for (state, fulfillment, expected) in cases {
        testing::reset();
        let order = square_order(fulfillment, state, 7, true);
        testing::mock_http(move |req| {
            assert_eq!(req.method, Method::Get);
            Ok(json_response(
                200,
                &serde_json::json!({"order": order}).to_string(),
            ))
        });
        let got = Square::get_order_status(connection("L1"), "CAISENgvlJ6jLWAzERDzjyHVybY".into())
            .unwrap();
        assert_eq!(got.state, expected, "{state}/{fulfillment}");
        assert_eq!(got.provider_state, format!("{state}/{fulfillment}"));
        assert_eq!(got.version, Some(7));
        let url = testing::take_requests()[0].url.clone();
        assert_eq!(
            url,
            "https://connect.squareup.com/v2/orders/CAISENgvlJ6jLWAzERDzjyHVybY"
        );
    }
    testing::mock_http(|_| {
        Ok(json_response(
            404,
            r#"{"errors":[{"category":"INVALID_REQUEST_ERROR","code":"NOT_FOUND","detail":"Order not found"}]}"#,
        ))
    });
    assert!(matches!(
        Square::get_order_status(connection("L1"), "nope".into()),
        Err(ProviderError::Rejected(r)) if r.status == Some(404)
    ));
}

#[test]
fn looks_an_order_up_by_reference_id_across_pages() {
    testing::reset();
    testing::set_now(1_795_201_200_000);
    let mut page = 0;
    testing::mock_http(move |req| {
        assert_eq!(path_of(&req.url), "/v2/orders/search");
        let body = body_json(req);
        assert_eq!(body["location_ids"], serde_json::json!(["L88917AVBK2S5"]));
        assert_eq!(body["return_entries"], false);
        assert_eq!(body["query"]["sort"]["sort_field"], "CREATED_AT");
        page += 1;
        Ok(if page == 1 {
            assert!(body.get("cursor").is_none());
            json_response(
                200,
                r#"{"orders":[{"id":"other","reference_id":"ord_else","state":"OPEN","version":1}],"cursor":"c2"}"#,
            )
        } else {
            assert_eq!(body["cursor"], "c2");
            json_response(
                200,
                &serde_json::json!({"orders": [square_order("RESERVED", "OPEN", 4, true)]})
                    .to_string(),
            )
        })
    });
    let found = Square::lookup_order(connection("L88917AVBK2S5"), "ord_7Hq2".into())
        .unwrap()
        .unwrap();
    assert_eq!(found.provider_order_id, "CAISENgvlJ6jLWAzERDzjyHVybY");
    assert_eq!(found.state, OrderState::InProgress);
    assert_eq!(
        testing::take_requests().len(),
        2,
        "paid already: no payment"
    );

    testing::mock_http(|_| Ok(json_response(200, r#"{"orders":[]}"#)));
    assert_eq!(
        Square::lookup_order(connection("L1"), "ord_7Hq2".into()).unwrap(),
        None
    );
}

#[test]
fn a_lookup_that_finds_the_order_unpaid_finishes_its_payment() {
    testing::reset();
    testing::mock_http(|req| {
        Ok(match (req.method, path_of(&req.url)) {
            (Method::Post, "/v2/orders/search") => json_response(
                200,
                &serde_json::json!({"orders": [square_order("PROPOSED", "OPEN", 1, false)]})
                    .to_string(),
            ),
            (Method::Post, "/v2/payments") => json_response(200, r#"{"payment":{"id":"pay1"}}"#),
            (Method::Get, _) => json_response(
                200,
                &serde_json::json!({"order": square_order("PROPOSED", "OPEN", 2, true)})
                    .to_string(),
            ),
            other => panic!("unexpected {other:?}"),
        })
    });
    let found = Square::lookup_order(connection("L88917AVBK2S5"), "ord_7Hq2".into())
        .unwrap()
        .unwrap();
    assert_eq!(found.version, Some(2));
    let requests = testing::take_requests();
    assert_eq!(requests.len(), 3);
    let pay = body_json(&requests[1]);
    assert_eq!(
        pay["idempotency_key"], "ord_7Hq2-pay",
        "the same key as the submit's"
    );
    assert_eq!(pay["tip_money"]["amount"], 300);
}

#[test]
fn the_main_location_is_resolved_once() {
    testing::reset();
    testing::mock_http(|req| {
        Ok(match path_of(&req.url) {
            "/v2/locations/main" => {
                json_response(200, r#"{"location":{"id":"LMAIN","name":"Main"}}"#)
            }
            "/v2/orders/calculate" => {
                assert_eq!(body_json(req)["order"]["location_id"], "LMAIN");
                json_response(
                    200,
                    &serde_json::json!({"order": square_order("PROPOSED", "OPEN", 0, false)})
                        .to_string(),
                )
            }
            other => panic!("unexpected {other}"),
        })
    });
    Square::price_order(connection("main"), an_order(false)).unwrap();
    Square::price_order(connection("main"), an_order(false)).unwrap();
    let paths: Vec<String> = testing::take_requests()
        .iter()
        .map(|r| path_of(&r.url).to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/v2/locations/main",
            "/v2/orders/calculate",
            "/v2/orders/calculate"
        ]
    );
}

const CATALOG_PAGE_1: &str = r#"{
  "objects": [
    {"type": "CATEGORY", "id": "CAT_FOOD", "updated_at": "2026-11-20T10:00:00.000Z", "version": 1,
     "present_at_all_locations": true, "category_data": {"name": "Food"}},
    {"type": "CATEGORY", "id": "CAT_BURGERS", "updated_at": "2026-11-20T10:00:00.000Z", "version": 1,
     "category_data": {"name": "Burgers", "parent_category": {"id": "CAT_FOOD"}}},
    {"type": "TAX", "id": "TAX_STATE", "updated_at": "2026-11-20T10:00:00.000Z", "present_at_all_locations": true,
     "tax_data": {"name": "State tax", "percentage": "8.875", "inclusion_type": "ADDITIVE", "enabled": true}},
    {"type": "ITEM", "id": "ITEM_BURGER", "updated_at": "2026-11-20T11:00:00.000Z", "version": 5,
     "present_at_all_locations": true,
     "item_data": {"name": "Burger", "description_plaintext": "Beef", "categories": [{"id": "CAT_BURGERS"}],
       "tax_ids": ["TAX_STATE"],
       "modifier_list_info": [{"modifier_list_id": "ML_TOPPINGS", "min_selected_modifiers": -1, "max_selected_modifiers": 2, "enabled": true}],
       "variations": [
         {"type": "ITEM_VARIATION", "id": "VAR_BURGER_REG", "present_at_all_locations": true,
          "item_variation_data": {"item_id": "ITEM_BURGER", "name": "Regular", "pricing_type": "FIXED_PRICING",
            "price_money": {"amount": 1050, "currency": "USD"},
            "location_overrides": [{"location_id": "L1", "price_money": {"amount": 1150, "currency": "USD"}}]}},
         {"type": "ITEM_VARIATION", "id": "VAR_BURGER_MKT", "present_at_all_locations": true,
          "item_variation_data": {"item_id": "ITEM_BURGER", "name": "Market", "pricing_type": "VARIABLE_PRICING"}},
         {"type": "ITEM_VARIATION", "id": "VAR_BURGER_ELSEWHERE", "present_at_all_locations": false,
          "present_at_location_ids": ["L2"],
          "item_variation_data": {"item_id": "ITEM_BURGER", "name": "Double", "price_money": {"amount": 1500, "currency": "USD"}}}
       ]}},
    {"type": "ITEM", "id": "ITEM_NOT_HERE", "present_at_all_locations": true, "absent_at_location_ids": ["L1"],
     "item_data": {"name": "Elsewhere only", "variations": []}}
  ],
  "cursor": "sq-cursor-2"
}"#;

const CATALOG_PAGE_2: &str = r#"{
  "objects": [
    {"type": "MODIFIER_LIST", "id": "ML_TOPPINGS", "updated_at": "2026-11-20T12:00:00.000Z", "present_at_all_locations": true,
     "modifier_list_data": {"name": "Toppings", "selection_type": "MULTIPLE", "min_selected_modifiers": 1,
       "modifiers": [
         {"type": "MODIFIER", "id": "MOD_CHEESE", "present_at_all_locations": true,
          "modifier_data": {"name": "Cheese", "price_money": {"amount": 100, "currency": "USD"}, "on_by_default": true, "modifier_list_id": "ML_TOPPINGS"}},
         {"type": "MODIFIER", "id": "MOD_ONION", "present_at_all_locations": true,
          "modifier_data": {"name": "Onion", "modifier_list_id": "ML_TOPPINGS"}}
       ]}},
    {"type": "MODIFIER_LIST", "id": "ML_SAUCE", "present_at_all_locations": true,
     "modifier_list_data": {"name": "Sauce", "selection_type": "SINGLE", "modifiers": []}}
  ],
  "latest_time": "2026-11-20T12:00:00.000Z"
}"#;

#[test]
fn fetches_the_full_catalog_in_pages() {
    testing::reset();
    testing::mock_http(|req| {
        assert_eq!(path_of(&req.url), "/v2/catalog/search");
        let body = body_json(req);
        assert_eq!(
            body["object_types"],
            serde_json::json!([
                "ITEM",
                "ITEM_VARIATION",
                "MODIFIER_LIST",
                "MODIFIER",
                "CATEGORY",
                "TAX"
            ])
        );
        assert!(body.get("begin_time").is_none());
        Ok(json_response(
            200,
            if body.get("cursor").is_none() {
                CATALOG_PAGE_1
            } else {
                CATALOG_PAGE_2
            },
        ))
    });
    let first = Square::fetch_catalog(
        connection("L1"),
        CatalogRequest {
            cursor: None,
            since: None,
        },
    )
    .unwrap();
    assert!(first.full_snapshot && !first.unchanged);
    assert_eq!(first.sync_token, None, "not on the last page");
    assert_eq!(first.currency.as_deref(), Some("USD"));
    assert_eq!(
        first.categories,
        vec![
            CatalogCategory {
                provider_id: "CAT_FOOD".into(),
                name: "Food".into(),
                parent_id: None
            },
            CatalogCategory {
                provider_id: "CAT_BURGERS".into(),
                name: "Burgers".into(),
                parent_id: Some("CAT_FOOD".into())
            },
        ]
    );
    assert_eq!(
        first.taxes,
        vec![CatalogTax {
            provider_id: "TAX_STATE".into(),
            name: "State tax".into(),
            percentage: Some("8.875".into()),
            inclusive: false
        }]
    );
    assert_eq!(
        first.items.len(),
        1,
        "the item absent at L1 is not on its menu"
    );
    let burger = &first.items[0];
    assert_eq!(
        burger,
        &CatalogItem {
            provider_id: "ITEM_BURGER".into(),
            name: "Burger".into(),
            description: Some("Beef".into()),
            category_ids: vec!["CAT_BURGERS".into()],
            variations: vec![
                CatalogVariation {
                    provider_id: "VAR_BURGER_REG".into(),
                    name: "Regular".into(),
                    price: Some(1150)
                },
                CatalogVariation {
                    provider_id: "VAR_BURGER_MKT".into(),
                    name: "Market".into(),
                    price: None
                },
            ],
            modifier_groups: vec![ModifierGroupRef {
                group_id: "ML_TOPPINGS".into(),
                min_selected: None,
                max_selected: Some(2)
            }],
            tax_ids: vec!["TAX_STATE".into()],
            orderable: true,
        }
    );
    assert!(first.deleted.is_empty());
    let second = Square::fetch_catalog(
        connection("L1"),
        CatalogRequest {
            cursor: first.next_cursor.clone(),
            since: None,
        },
    )
    .unwrap();
    assert_eq!(second.next_cursor, None);
    assert_eq!(
        second.sync_token.as_deref(),
        Some("2026-11-20T12:00:00.000Z")
    );
    assert_eq!(
        second.modifier_groups,
        vec![
            ModifierGroup {
                provider_id: "ML_TOPPINGS".into(),
                name: "Toppings".into(),
                min_selected: 1,
                max_selected: None,
                required: true,
                options: vec![
                    ModifierOption {
                        provider_id: "MOD_CHEESE".into(),
                        name: "Cheese".into(),
                        price: 100,
                        is_default: true
                    },
                    ModifierOption {
                        provider_id: "MOD_ONION".into(),
                        name: "Onion".into(),
                        price: 0,
                        is_default: false
                    },
                ],
            },
            ModifierGroup {
                provider_id: "ML_SAUCE".into(),
                name: "Sauce".into(),
                min_selected: 0,
                max_selected: Some(1),
                required: false,
                options: vec![],
            },
        ]
    );
    let requests = testing::take_requests();
    assert_eq!(
        body_json(&requests[1])["cursor"],
        "sq-cursor-2",
        "Square's cursor is passed on"
    );
}

#[test]
fn fetches_changes_since_the_sync_token_with_deletions() {
    testing::reset();
    testing::mock_http(|req| {
        let body = body_json(req);
        Ok(match path_of(&req.url) {
            "/v2/catalog/search" => {
                assert_eq!(body["begin_time"], "2026-11-20T12:00:00.000Z");
                assert_eq!(body["include_deleted_objects"], true);
                json_response(
                    200,
                    r#"{"objects":[
                      {"type":"ITEM","id":"ITEM_OLD","is_deleted":true,"updated_at":"2026-11-21T08:00:00.000Z"},
                      {"type":"MODIFIER","id":"MOD_GONE","is_deleted":true,"updated_at":"2026-11-21T08:00:00.000Z"},
                      {"type":"ITEM","id":"ITEM_NOW_ABSENT","present_at_all_locations":false,"present_at_location_ids":["L2"],"updated_at":"2026-11-21T08:30:00.000Z","item_data":{"name":"x"}},
                      {"type":"ITEM_VARIATION","id":"VAR_BURGER_REG","present_at_all_locations":true,"updated_at":"2026-11-21T09:00:00.000Z",
                       "item_variation_data":{"item_id":"ITEM_BURGER","name":"Regular","price_money":{"amount":1200,"currency":"USD"}}}
                    ]}"#,
                )
            }
            "/v2/catalog/batch-retrieve" => {
                assert_eq!(body["object_ids"], serde_json::json!(["ITEM_BURGER"]));
                json_response(
                    200,
                    r#"{"objects":[{"type":"ITEM","id":"ITEM_BURGER","present_at_all_locations":true,
                      "item_data":{"name":"Burger","variations":[{"type":"ITEM_VARIATION","id":"VAR_BURGER_REG",
                        "item_variation_data":{"name":"Regular","price_money":{"amount":1200,"currency":"USD"}}}]}}]}"#,
                )
            }
            other => panic!("unexpected {other}"),
        })
    });
    let page = Square::fetch_catalog(
        connection("L1"),
        CatalogRequest {
            cursor: None,
            since: Some("2026-11-20T12:00:00.000Z".into()),
        },
    )
    .unwrap();
    assert!(!page.full_snapshot && !page.unchanged);
    assert_eq!(
        page.deleted,
        vec![
            CatalogDeletion {
                kind: CatalogKind::Item,
                provider_id: "ITEM_OLD".into()
            },
            CatalogDeletion {
                kind: CatalogKind::ModifierOption,
                provider_id: "MOD_GONE".into()
            },
            CatalogDeletion {
                kind: CatalogKind::Item,
                provider_id: "ITEM_NOW_ABSENT".into()
            },
        ]
    );
    assert_eq!(page.items.len(), 1, "the changed variation brings its item");
    assert_eq!(page.items[0].variations[0].price, Some(1200));
    assert_eq!(
        page.sync_token.as_deref(),
        Some("2026-11-21T09:00:00.000Z"),
        "without latest_time, the newest change seen"
    );

    testing::mock_http(|_| {
        Ok(json_response(
            200,
            r#"{"objects":[],"latest_time":"2026-11-20T12:00:00.000Z"}"#,
        ))
    });
    let page = Square::fetch_catalog(
        connection("L1"),
        CatalogRequest {
            cursor: None,
            since: Some("2026-11-20T12:00:00.000Z".into()),
        },
    )
    .unwrap();
    assert!(page.unchanged, "one incremental search answers unchanged");
    assert_eq!(page.sync_token.as_deref(), Some("2026-11-20T12:00:00.000Z"));
    assert!(matches!(
        Square::fetch_catalog(
            connection("L1"),
            CatalogRequest {
                cursor: Some("garbage".into()),
                since: None
            }
        ),
        Err(ProviderError::BadPayload(_))
    ));
}

#[test]
fn reads_sold_out_overrides_and_counts() {
    testing::reset();
    testing::set_now(1_795_201_200_000);
    testing::mock_http(|req| {
        let body = body_json(req);
        Ok(match path_of(&req.url) {
            "/v2/catalog/batch-retrieve" => {
                assert_eq!(
                    body["object_ids"],
                    serde_json::json!(["VAR_A", "VAR_B", "VAR_C", "MOD_X", "ITEM_Y"])
                );
                json_response(
                    200,
                    r#"{"objects":[
                      {"type":"ITEM_VARIATION","id":"VAR_A","item_variation_data":{"location_overrides":[
                        {"location_id":"L1","sold_out":true,"sold_out_valid_until":"2026-11-21T06:00:00Z"}]}},
                      {"type":"ITEM_VARIATION","id":"VAR_B","item_variation_data":{"track_inventory":true}},
                      {"type":"ITEM_VARIATION","id":"VAR_C","item_variation_data":{"location_overrides":[
                        {"location_id":"L2","sold_out":true}]}},
                      {"type":"MODIFIER","id":"MOD_X","modifier_data":{"location_overrides":[{"location_id":"L1","sold_out":true}]}},
                      {"type":"ITEM","id":"ITEM_Y","item_data":{"variations":[
                        {"type":"ITEM_VARIATION","id":"VAR_Y1","item_variation_data":{"location_overrides":[{"location_id":"L1","sold_out":true}]}}]}}
                    ]}"#,
                )
            }
            "/v2/inventory/counts/batch-retrieve" => {
                assert_eq!(body["catalog_object_ids"], serde_json::json!(["VAR_B"]));
                assert_eq!(body["location_ids"], serde_json::json!(["L1"]));
                json_response(
                    200,
                    r#"{"counts":[{"catalog_object_id":"VAR_B","catalog_object_type":"ITEM_VARIATION","state":"IN_STOCK","location_id":"L1","quantity":"3.5","calculated_at":"2026-11-20T10:00:00Z"}]}"#,
                )
            }
            other => panic!("unexpected {other}"),
        })
    });
    let ids = ["VAR_A", "VAR_B", "VAR_C", "MOD_X", "ITEM_Y"]
        .map(String::from)
        .to_vec();
    let got = Square::get_availability(connection("L1"), ids).unwrap();
    let out = |id: &str, until: Option<i64>| Availability {
        provider_id: id.into(),
        status: StockStatus::OutOfStock,
        quantity: None,
        until,
    };
    assert_eq!(
        got,
        vec![
            out(
                "VAR_A",
                Some(time::parse_timestamp("2026-11-21T06:00:00Z").unwrap())
            ),
            Availability {
                provider_id: "VAR_C".into(),
                status: StockStatus::InStock,
                quantity: None,
                until: None
            },
            out("MOD_X", None),
            out("ITEM_Y", None),
            Availability {
                provider_id: "VAR_B".into(),
                status: StockStatus::Quantity,
                quantity: Some("3.5".into()),
                until: None
            },
        ]
    );
}

#[test]
fn availability_cannot_be_written() {
    testing::reset();
    let err = Square::set_availability(connection("L1"), vec![]).unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unsupported(m) if m.contains("read-only")),
        "{err:?}"
    );
    assert!(testing::take_requests().is_empty());
}

fn signed_envelope(kind: &str, data: &str) -> String {
    format!(
        r#"{{"merchant_id":"M","type":"{kind}","event_id":"ev-{kind}","created_at":"2026-11-20T19:05:01Z","data":{data}}}"#
    )
}

#[test]
fn parses_order_catalog_and_inventory_webhooks() {
    testing::reset();
    for (kind, key) in [
        ("order.created", "order_created"),
        ("order.updated", "order_updated"),
        ("order.fulfillment.updated", "order_fulfillment_updated"),
    ] {
        let data = format!(
            r#"{{"type":"order","id":"CAIS1","object":{{"{key}":{{"order_id":"CAIS1","version":6,"state":"OPEN","location_id":"L1",
            "fulfillment_update":[{{"fulfillment_uid":"f1","old_state":"PROPOSED","new_state":"RESERVED"}}]}}}}}}"#
        );
        let event = Square::parse_webhook(webhook(EXAMPLE_URL, &[], &signed_envelope(kind, &data)))
            .unwrap();
        assert_eq!(
            event.order_updates,
            vec![OrderUpdate {
                provider_order_id: "CAIS1".into(),
                version: Some(6),
                status: None
            }],
            "{kind}"
        );
        assert!(event.transactions.is_empty() && !event.catalog_changed);
    }
    let event = Square::parse_webhook(webhook(
        EXAMPLE_URL,
        &[],
        &signed_envelope("catalog.version.updated", r#"{"type":"catalog","id":"","object":{"catalog_version":{"updated_at":"2026-11-20T19:05:00Z"}}}"#),
    ))
    .unwrap();
    assert!(event.catalog_changed);
    // The integration was used at L1: counts of the merchant's other locations are ignored.
    state::set_string("location", "L1").unwrap();
    let event = Square::parse_webhook(webhook(
        EXAMPLE_URL,
        &[],
        &signed_envelope("inventory.count.updated", r#"{"type":"inventory","id":"x","object":{"inventory_counts":[
          {"catalog_object_id":"VAR_A","catalog_object_type":"ITEM_VARIATION","state":"IN_STOCK","location_id":"L1","quantity":"0","calculated_at":"2026-11-20T19:05:00Z"},
          {"catalog_object_id":"VAR_B","catalog_object_type":"ITEM_VARIATION","state":"IN_STOCK","location_id":"L1","quantity":"12","calculated_at":"2026-11-20T19:05:00Z"},
          {"catalog_object_id":"VAR_C","catalog_object_type":"ITEM_VARIATION","state":"IN_STOCK","location_id":"L2","quantity":"0","calculated_at":"2026-11-20T19:05:00Z"},
          {"catalog_object_id":"VAR_A","catalog_object_type":"ITEM_VARIATION","state":"SOLD","location_id":"L1","quantity":"4","calculated_at":"2026-11-20T19:05:00Z"}
        ]}}"#),
    ))
    .unwrap();
    assert_eq!(
        event.availability,
        vec![
            Availability {
                provider_id: "VAR_A".into(),
                status: StockStatus::OutOfStock,
                quantity: Some("0".into()),
                until: None
            },
            Availability {
                provider_id: "VAR_B".into(),
                status: StockStatus::Quantity,
                quantity: Some("12".into()),
                until: None
            },
        ]
    );
    assert!(matches!(
        Square::parse_webhook(webhook(
            EXAMPLE_URL,
            &[],
            &signed_envelope("order.updated", r#"{"type":"order","object":{}}"#)
        )),
        Err(ProviderError::BadPayload(_))
    ));
}
