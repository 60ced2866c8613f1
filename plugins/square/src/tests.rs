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
        ("square", "Square", "1.1.0")
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
