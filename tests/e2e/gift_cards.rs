//! Gift cards: issue, balance, deduct, ledger, and concurrent deducts that never overdraw.

use std::collections::BTreeSet;
use std::sync::Arc;

use posbridge_harness::{both_backends, parse_rfc3339, Backend};
use serde_json::{json, Value};

use crate::{all_pages, balance};

async fn gift_card_lifecycle(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);

    // Issue with a lower-case code: stored upper case.
    let issued = manager
        .post(
            "/gift-cards",
            &json!({"code": "gc-alpha-1", "amount": 2500, "purchaser": "Ada", "recipient": "Bob"}),
        )
        .await;
    let card = issued.expect(201).clone();
    assert_eq!(card["code"], "GC-ALPHA-1");
    assert_eq!(card["balance"], json!({"amount": 2500, "currency": "USD"}));
    assert_eq!(card["status"], "active");
    let purchase_tx = card["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();
    parse_rfc3339(card["created_at"].as_str().expect("created_at"));

    // Duplicate code, in any case.
    manager
        .post("/gift-cards", &json!({"code": "GC-Alpha-1", "amount": 100}))
        .await
        .expect_error(409, "gift_card_exists");
    // Without a code the server makes one up.
    let generated = manager.post("/gift-cards", &json!({"amount": 100})).await;
    let generated_code = generated.expect(201)["code"]
        .as_str()
        .expect("generated code")
        .to_owned();
    assert!(!generated_code.is_empty());
    assert_ne!(generated_code, "GC-ALPHA-1");
    assert_eq!(balance(&till, &generated_code).await, 100);

    // Balance, case-insensitively.
    for code in ["GC-ALPHA-1", "gc-alpha-1", "Gc-AlPhA-1"] {
        let resp = till.get(&format!("/gift-cards/{code}/balance")).await;
        assert_eq!(
            resp.expect(200),
            &json!({"code": "GC-ALPHA-1", "balance": {"amount": 2500, "currency": "USD"}, "status": "active"})
        );
    }
    till.get("/gift-cards/NOPE-0000/balance")
        .await
        .expect_error(404, "gift_card_not_found");
    till.post("/gift-cards/NOPE-0000/deduct", &json!({"amount": 1}))
        .await
        .expect_error(404, "gift_card_not_found");

    // Deduct.
    let d1 = till
        .post(
            "/gift-cards/gc-alpha-1/deduct",
            &json!({"amount": 1250, "order_id": "ord-1"}),
        )
        .await;
    let d1 = d1.expect(200).clone();
    assert_eq!(d1["code"], "GC-ALPHA-1");
    assert_eq!(d1["balance"], json!({"amount": 1250, "currency": "USD"}));
    assert_eq!(d1["deducted"], json!({"amount": 1250, "currency": "USD"}));
    let d1_tx = d1["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();

    // Over the balance: 422, nothing changes.
    till.post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 1251}))
        .await
        .expect_error(422, "insufficient_funds");
    assert_eq!(balance(&till, "GC-ALPHA-1").await, 1250);

    // Exactly the balance, by a manager key.
    let d2 = manager
        .post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 1250}))
        .await;
    assert_eq!(d2.expect(200)["balance"]["amount"], 0);
    let d2_tx = d2.body["transaction_id"].as_str().expect("tx").to_owned();
    till.post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 1}))
        .await
        .expect_error(422, "insufficient_funds");
    assert_eq!(balance(&till, "GC-ALPHA-1").await, 0);

    // The ledger, newest first.
    let resp = manager.get("/gift-cards/gc-alpha-1/transactions").await;
    let ledger = resp.expect(200)["items"].as_array().expect("items").clone();
    assert_eq!(resp.body["next_cursor"], Value::Null);
    assert_eq!(ledger.len(), 3, "{}", resp.text);
    let summary: Vec<(&str, i64, i64)> = ledger
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().expect("kind"),
                t["amount"].as_i64().expect("amount"),
                t["balance_after"].as_i64().expect("balance_after"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("redeem", -1250, 0),
            ("redeem", -1250, 1250),
            ("purchase", 2500, 2500)
        ]
    );
    assert_eq!(ledger[0]["id"], d2_tx.as_str());
    assert_eq!(ledger[1]["id"], d1_tx.as_str());
    assert_eq!(ledger[2]["id"], purchase_tx.as_str());
    assert_eq!(ledger[1]["order_id"], "ord-1");
    assert_eq!(ledger[0]["order_id"], Value::Null);
    assert_eq!(ledger[1]["api_key_id"], kitchen.terminal.id.as_str());
    assert_eq!(ledger[0]["api_key_id"], kitchen.manager.id.as_str());
    assert_eq!(ledger[2]["api_key_id"], kitchen.manager.id.as_str());
    for t in &ledger {
        parse_rfc3339(t["created_at"].as_str().expect("created_at"));
    }

    // Pagination: 2 + 1, same rows in the same order.
    let first = manager
        .get("/gift-cards/GC-ALPHA-1/transactions?limit=2")
        .await;
    let page1 = first.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(page1.len(), 2);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("next_cursor after a full page")
        .to_owned();
    let second = manager
        .get(&format!(
            "/gift-cards/GC-ALPHA-1/transactions?limit=2&cursor={}",
            posbridge_harness::enc(&cursor)
        ))
        .await;
    let page2 = second.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(page2.len(), 1);
    assert_eq!(second.body["next_cursor"], Value::Null);
    let paged: Vec<Value> = page1.into_iter().chain(page2).collect();
    assert_eq!(paged, ledger);
    assert_eq!(
        all_pages(&manager, "/gift-cards/GC-ALPHA-1/transactions", 1).await,
        ledger
    );
}

async fn concurrent_deducts(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    manager
        .post("/gift-cards", &json!({"code": "RUSH-1000", "amount": 1000}))
        .await
        .expect(201);
    let seq_before = crate::last_seq(&manager).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let till = srv.terminal(&kitchen);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            till.post(
                "/gift-cards/RUSH-1000/deduct",
                &json!({"amount": 100, "order_id": format!("rush-{i}")}),
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for task in tasks {
        let resp = task.await.expect("deduct task");
        match resp.status {
            200 => ok += 1,
            422 => {
                resp.expect_error(422, "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected {other} from a concurrent deduct: {}", resp.text),
        }
    }
    assert_eq!(
        (ok, refused),
        (10, 40),
        "exactly 10 deducts of 100 fit in 1000"
    );
    assert_eq!(balance(&manager, "RUSH-1000").await, 0);

    let ledger = all_pages(&manager, "/gift-cards/RUSH-1000/transactions", 100).await;
    assert_eq!(ledger.len(), 11, "1 purchase + 10 redeems");
    let redeems: Vec<&Value> = ledger.iter().filter(|t| t["kind"] == "redeem").collect();
    assert_eq!(redeems.len(), 10);
    assert!(redeems.iter().all(|t| t["amount"] == -100));
    let after: BTreeSet<i64> = redeems
        .iter()
        .map(|t| t["balance_after"].as_i64().expect("balance_after"))
        .collect();
    assert_eq!(after, (0..10).map(|i| i * 100).collect::<BTreeSet<i64>>());
    // One event per successful deduct, none for the refused ones.
    assert_eq!(crate::last_seq(&manager).await, seq_before + 10);
}

both_backends!(gift_card_lifecycle, concurrent_deducts);
