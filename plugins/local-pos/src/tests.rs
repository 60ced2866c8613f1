use super::*;
use posbridge_sdk::serde_json::json;
use posbridge_sdk::testing;

/// The example of README.md.
const EXAMPLE: &str = r#"{"venue":"downtown","transactions":[{"id":"sale-1","occurred_at":"2026-11-20T19:00:00Z","total":2500,"subtotal":2200,"tax":200,"tip":100,"discount":0,"currency":"USD","tender":"card","card":{"brand":"VISA","last4":"1111"},"customer_phone":"+15550100199","order_id":"o-1"}]}"#;

fn push(body: &Value) -> Result<Vec<Transaction>, ProviderError> {
    LocalPos::parse_push(body.to_string().into_bytes())
}

fn one(sale: Value) -> Result<Transaction, ProviderError> {
    push(&json!({ "transactions": [sale] })).map(|mut list| list.remove(0))
}

fn minimal() -> Value {
    json!({"id": "s1", "occurred_at": "2026-11-20T19:00:00Z", "total": 1250, "currency": "USD"})
}

fn with(field: &str, value: Value) -> Value {
    let mut sale = minimal();
    sale[field] = value;
    sale
}

fn bad_message(result: Result<impl std::fmt::Debug, ProviderError>) -> String {
    match result {
        Err(ProviderError::BadPayload(m)) => m,
        other => panic!("expected bad-payload, got {other:?}"),
    }
}

#[test]
fn info_and_the_other_operations() {
    let info = LocalPos::info();
    assert_eq!(
        (info.id.as_str(), info.name.as_str(), info.version.as_str()),
        ("local-pos", "Local POS", "1.1.0")
    );
    assert_eq!(
        info.capabilities,
        vec![Capability::Validate, Capability::Push]
    );
    assert!(info.credential_fields.is_empty() && info.allowed_hosts.is_empty());

    testing::reset();
    let conn = Connection {
        credentials: vec![],
        location_id: "downtown".into(),
        environment: Environment::Production,
        base_url: None,
    };
    assert_eq!(
        LocalPos::validate(conn.clone()),
        Ok(LocationInfo::new("downtown", "downtown"))
    );
    assert!(testing::take_requests().is_empty(), "no HTTP");
    assert!(matches!(
        LocalPos::fetch_transactions(
            conn,
            FetchRequest {
                start: 0,
                end: 1,
                cursor: None
            }
        ),
        Err(ProviderError::Unsupported(_))
    ));
    let webhook = Webhook {
        url: "https://h/w".into(),
        headers: vec![],
        body: b"{}".to_vec(),
    };
    assert!(!LocalPos::verify_webhook(webhook.clone(), "key".into()));
    assert!(matches!(
        LocalPos::parse_webhook(webhook),
        Err(ProviderError::Unsupported(_))
    ));
}

#[test]
fn parses_the_documented_example() {
    let list = LocalPos::parse_push(EXAMPLE.as_bytes().to_vec()).unwrap();
    assert_eq!(
        list,
        vec![Transaction {
            external_id: "sale-1".into(),
            order_id: Some("o-1".into()),
            location_id: Some("downtown".into()),
            occurred_at: time::parse_timestamp("2026-11-20T19:00:00Z").unwrap(),
            updated_at: None,
            currency: "USD".into(),
            total: 2500,
            subtotal: 2200,
            tax: 200,
            tip: 100,
            discount: 0,
            refunded: 0,
            tender: Tender::Card,
            card: Some(CardInfo {
                brand: Some("VISA".into()),
                last4: Some("1111".into()),
                fingerprint: None
            }),
            customer: Some(CustomerRef {
                provider_customer_id: None,
                phone: Some("+15550100199".into()),
                email: None,
                name: None
            }),
            status: TransactionStatus::Completed,
            staff: None,
            line_items: Vec::new(),
            refunds: Vec::new(),
        }]
    );
}

#[test]
fn defaults_and_every_optional_field() {
    let t = one(minimal()).unwrap();
    assert_eq!(
        t,
        Transaction {
            total: 1250,
            ..Transaction::new(
                "s1",
                time::parse_timestamp("2026-11-20T19:00:00Z").unwrap(),
                "USD"
            )
        }
    );
    assert_eq!(t.tender, Tender::Other);
    assert_eq!(t.status, TransactionStatus::Completed);

    let t = one(json!({
        "id": "s2", "occurred_at": "2026-11-20T14:00:00-05:00", "updated_at": "2026-11-20T19:30:00.250Z",
        "total": 900, "subtotal": 1000, "tax": 0, "tip": 0, "discount": 100, "refunded": 900,
        "currency": "eur", "tender": "gift_card", "status": "voided",
        "card": {"fingerprint": "fp-1"}, "customer_email": "a@example.com", "customer_name": "Ann Lee",
        "order_id": null, "customer_phone": null
    }))
    .unwrap();
    assert_eq!(
        t.occurred_at,
        time::parse_timestamp("2026-11-20T19:00:00Z").unwrap()
    );
    assert_eq!(
        t.updated_at,
        Some(time::parse_timestamp("2026-11-20T19:30:00.250Z").unwrap())
    );
    assert_eq!(
        (t.total, t.subtotal, t.discount, t.refunded),
        (900, 1000, 100, 900)
    );
    assert_eq!(t.currency, "EUR");
    assert_eq!(
        (t.tender, t.status),
        (Tender::GiftCard, TransactionStatus::Voided)
    );
    assert_eq!(t.location_id, None, "no venue");
    assert_eq!(t.order_id, None);
    assert_eq!(
        t.card,
        Some(CardInfo {
            brand: None,
            last4: None,
            fingerprint: Some("fp-1".into())
        })
    );
    assert_eq!(
        t.customer,
        Some(CustomerRef {
            provider_customer_id: None,
            phone: None,
            email: Some("a@example.com".into()),
            name: Some("Ann Lee".into())
        })
    );
    for (name, tender) in [
        ("cash", Tender::Cash),
        ("card", Tender::Card),
        ("wallet", Tender::Wallet),
        ("other", Tender::Other),
    ] {
        assert_eq!(one(with("tender", name.into())).unwrap().tender, tender);
    }
    for (name, status) in [
        ("completed", TransactionStatus::Completed),
        ("pending", TransactionStatus::Pending),
    ] {
        assert_eq!(one(with("status", name.into())).unwrap().status, status);
    }
    assert_eq!(one(with("card", json!({}))).unwrap().card, None);
}

#[test]
fn fractional_amounts_name_the_index_and_field() {
    let body = json!({"transactions": [minimal(), with("id", "s2".into()), {
        "id": "s3", "occurred_at": "2026-11-20T19:00:00Z", "currency": "USD",
        "total": serde_json::from_str::<Value>("12.5").unwrap()
    }]});
    let m = bad_message(push(&body));
    assert!(m.starts_with("transactions[2].total: "), "{m}");
    assert!(m.contains("12.5"), "{m}");
    for field in ["subtotal", "tax", "tip", "discount", "refunded"] {
        let m = bad_message(one(with(field, serde_json::from_str("1.5").unwrap())));
        assert!(m.starts_with(&format!("transactions[0].{field}: ")), "{m}");
    }
    for (value, needle) in [
        ("2500.0", "integer"),
        ("1e3", "integer"),
        ("-5", "negative"),
        ("\"2500\"", "a string"),
        ("true", "true"),
        ("99999999999999999999", "integer"),
    ] {
        let m = bad_message(one(with("tip", serde_json::from_str(value).unwrap())));
        assert!(
            m.starts_with("transactions[0].tip: ") && m.contains(needle),
            "{value}: {m}"
        );
    }
    assert_eq!(
        one(with("tip", json!(i64::MAX))).unwrap().tip,
        i64::MAX,
        "any i64"
    );
}

#[test]
fn required_fields() {
    for field in ["id", "occurred_at", "total", "currency"] {
        let mut sale = minimal();
        sale.as_object_mut().unwrap().remove(field);
        let m = bad_message(one(sale));
        assert_eq!(m, format!("transactions[0].{field}: required"));
        let m = bad_message(one(with(field, Value::Null)));
        assert_eq!(m, format!("transactions[0].{field}: required"));
    }
    let m = bad_message(one(with("id", "".into())));
    assert!(
        m.starts_with("transactions[0].id: must not be empty"),
        "{m}"
    );
    let m = bad_message(one(with("id", json!(7))));
    assert!(
        m.starts_with("transactions[0].id: expected a string"),
        "{m}"
    );
    let m = bad_message(one(with("id", "x".repeat(201).into())));
    assert!(m.contains("longer than 200 bytes"), "{m}");
}

#[test]
fn malformed_values() {
    let cases = [
        (
            "occurred_at",
            json!("2026-11-20 19:00"),
            "transactions[0].occurred_at: ",
        ),
        (
            "occurred_at",
            json!("2026-11-20T19:00:00"),
            "transactions[0].occurred_at: ",
        ),
        (
            "updated_at",
            json!("yesterday"),
            "transactions[0].updated_at: ",
        ),
        ("currency", json!("US"), "ISO-4217"),
        ("currency", json!("US1"), "ISO-4217"),
        ("currency", json!("USDX"), "ISO-4217"),
        ("tender", json!("crypto"), "\"crypto\" is not one of"),
        ("tender", json!("Card"), "is not one of"),
        ("tender", json!("gift-card"), "is not one of"),
        ("status", json!("failed"), "transactions[0].status: "),
        (
            "card",
            json!("VISA"),
            "transactions[0].card: expected an object",
        ),
        (
            "card",
            json!({"last4": "111"}),
            "transactions[0].card.last4: ",
        ),
        (
            "card",
            json!({"last4": "11a1"}),
            "transactions[0].card.last4: ",
        ),
        (
            "card",
            json!({"last4": "11111"}),
            "transactions[0].card.last4: ",
        ),
        (
            "card",
            json!({"brand": 4}),
            "transactions[0].card.brand: expected a string",
        ),
        (
            "card",
            json!({"number": "4111111111111111"}),
            "transactions[0].card.number: unknown field",
        ),
        (
            "customer_phone",
            json!(15550100199u64),
            "transactions[0].customer_phone: expected a string",
        ),
        ("customer_email", json!(" "), "must not be empty"),
        (
            "order_id",
            json!(["o"]),
            "transactions[0].order_id: expected a string, got an array",
        ),
    ];
    for (field, value, needle) in cases {
        let m = bad_message(one(with(field, value.clone())));
        assert!(m.contains(needle), "{field}={value}: {m}");
    }
}

#[test]
fn unknown_fields_are_refused() {
    let m = bad_message(one(with("totl", json!(1))));
    assert!(m.starts_with("transactions[0].totl: unknown field"), "{m}");
    let m = bad_message(push(&json!({"transactions": [], "venu": "x"})));
    assert!(m.starts_with("venu: unknown field"), "{m}");
    let m = bad_message(push(&json!({"venue": 5, "transactions": []})));
    assert!(m.starts_with("venue: expected a string"), "{m}");
}

#[test]
fn the_body_shape() {
    assert_eq!(push(&json!({"transactions": []})), Ok(vec![]));
    assert_eq!(
        bad_message(push(&json!({"venue": "x"}))),
        "transactions: required"
    );
    assert!(bad_message(push(&json!({"transactions": {}})))
        .starts_with("transactions: expected an array"));
    assert!(bad_message(push(&json!([minimal()]))).starts_with("body: expected an object"));
    assert!(bad_message(LocalPos::parse_push(b"{".to_vec())).starts_with("body is not valid JSON"));
    assert!(
        bad_message(LocalPos::parse_push(vec![0xff, 0xfe])).starts_with("body is not valid JSON")
    );
    assert!(bad_message(LocalPos::parse_push(Vec::new())).starts_with("body is not valid JSON"));
    let m = bad_message(push(&json!({"transactions": [minimal(), 5]})));
    assert!(m.starts_with("transactions[1]: expected an object"), "{m}");
}

#[test]
fn at_most_1000_transactions_and_no_duplicate_ids() {
    let sales =
        |n: usize| -> Vec<Value> { (0..n).map(|i| with("id", format!("s{i}").into())).collect() };
    let list = push(&json!({"venue": "v", "transactions": sales(1000)})).unwrap();
    assert_eq!(list.len(), 1000);
    assert!(list.iter().all(|t| t.location_id.as_deref() == Some("v")));
    let m = bad_message(push(&json!({"transactions": sales(1001)})));
    assert_eq!(m, "transactions: at most 1000 per push, got 1001");

    let m = bad_message(push(
        &json!({"transactions": [minimal(), with("total", json!(1)), minimal()]}),
    ));
    assert!(
        m.starts_with("transactions[1].id: \"s1\" repeats transactions[0].id"),
        "{m}"
    );
}

#[test]
fn a_corrected_repush_carries_a_later_updated_at() {
    let first = one(minimal()).unwrap();
    let corrected = one({
        let mut sale = with("total", json!(1300));
        sale["updated_at"] = "2026-11-20T19:45:00Z".into();
        sale
    })
    .unwrap();
    assert_eq!(first.external_id, corrected.external_id);
    assert!(corrected.updated_at > first.updated_at);
    assert_eq!(corrected.total, 1300);
}

#[test]
fn mutated_input_never_panics() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let full = r#"{"venue":"downtown","transactions":[{"id":"s2","occurred_at":"2026-11-20T14:00:00-05:00","updated_at":"2026-11-20T19:30:00.250Z","total":900,"subtotal":1000,"tax":0,"tip":0,"discount":100,"refunded":900,"currency":"eur","tender":"gift_card","status":"voided","card":{"brand":"VISA","last4":"1111","fingerprint":"fp"},"customer_email":"a@example.com","customer_name":"Ann","customer_phone":"+1555","order_id":"o"}]}"#;
    for seed in [EXAMPLE, full] {
        for _ in 0..3000 {
            let mut b = seed.as_bytes().to_vec();
            for _ in 0..1 + next() % 4 {
                let at = next() % b.len().max(1);
                match next() % 4 {
                    0 => b.truncate(at),
                    1 if at < b.len() => b[at] = b"{}[]\":,0.-e9 nt\xff"[next() % 16],
                    2 => b.insert(at.min(b.len()), b"{}[]\":,0.-e9 nt\xff"[next() % 16]),
                    _ if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {}
                }
            }
            let _ = LocalPos::parse_push(b);
        }
    }
}

#[test]
fn staff_items_and_refunds_are_read() {
    let t = one(json!({
        "id": "s9", "occurred_at": "2026-11-20T19:00:00Z", "total": 1900, "currency": "USD",
        "staff": {"id": "e-7", "name": "Ana"},
        "items": [
            {"name": "IPA pint", "quantity": 2, "unit_price": 700, "total": 1400, "category": "Beer"},
            {"name": "Olives", "quantity": "0.5", "total": 500, "id": "l2", "item_id": "sku-9"}
        ],
        "refunds": [{"id": "r-1", "amount": 500, "at": "2026-11-21T10:00:00Z", "reason": "spilled"}]
    }))
    .unwrap();
    assert_eq!(
        t.staff,
        Some(StaffRef {
            id: Some("e-7".into()),
            name: Some("Ana".into())
        })
    );
    assert_eq!(t.line_items.len(), 2);
    assert_eq!(t.line_items[0].quantity, "2");
    assert_eq!(t.line_items[0].unit_price, Some(700));
    assert_eq!(t.line_items[1].quantity, "0.5");
    assert_eq!(t.line_items[1].item_id.as_deref(), Some("sku-9"));
    assert_eq!(t.refunds[0].id, "r-1");
    assert_eq!(t.refunded, 500, "defaults to the listed refunds");

    for (field, value, named) in [
        (
            "items",
            json!([{"name": "x", "quantity": -1, "total": 1}]),
            "items[0].quantity",
        ),
        (
            "items",
            json!([{"name": "x", "quantity": "1e3", "total": 1}]),
            "items[0].quantity",
        ),
        (
            "items",
            json!([{"quantity": 1, "total": 1}]),
            "items[0].name",
        ),
        (
            "items",
            json!([{"name": "x", "total": 1, "price": 1}]),
            "items[0].price",
        ),
        (
            "refunds",
            json!([{"id": "r", "amount": 0, "at": "2026-11-21T10:00:00Z"}]),
            "refunds[0].amount",
        ),
        ("staff", json!({"badge": 1}), "staff.badge"),
    ] {
        let mut sale = json!({"id": "s", "occurred_at": "2026-11-20T19:00:00Z", "total": 1, "currency": "USD"});
        sale[field] = value;
        let err = one(sale).unwrap_err();
        assert!(err.message().contains(named), "{named}: {}", err.message());
    }
    let over = one(json!({
        "id": "s", "occurred_at": "2026-11-20T19:00:00Z", "total": 1, "currency": "USD", "refunded": 100,
        "refunds": [{"id": "r", "amount": 500, "at": "2026-11-21T10:00:00Z"}]
    }))
    .unwrap_err();
    assert!(over.message().contains("refunded"), "{}", over.message());
}

#[test]
fn the_two_way_operations_are_unsupported() {
    testing::reset();
    let conn = Connection {
        credentials: vec![],
        location_id: "downtown".into(),
        environment: Environment::Production,
        base_url: None,
    };
    let unsupported =
        |e: ProviderError| matches!(e, ProviderError::Unsupported(m) if m.contains("local POS"));
    assert!(unsupported(
        LocalPos::lookup_order(conn.clone(), "o1".into()).unwrap_err()
    ));
    assert!(unsupported(
        LocalPos::get_availability(conn.clone(), vec!["i1".into()]).unwrap_err()
    ));
    assert!(unsupported(
        LocalPos::fetch_catalog(
            conn,
            CatalogRequest {
                cursor: None,
                since: None
            }
        )
        .unwrap_err()
    ));
}
