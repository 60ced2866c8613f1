//! Gift cards: issue, balance, deduct, ledger, and concurrent deducts that never overdraw.

use std::collections::BTreeSet;
use std::sync::Arc;

use posbridge_harness::{both_backends, parse_rfc3339, Backend, Client, TenantKeys, TestServer};
use serde_json::{json, Value};

use crate::{all_pages, balance};

/// A server with tenant `kitchen` and card `GC-ALPHA-1` issued by the manager for 2500
/// (given in lower case).
struct Issued {
    _srv: TestServer,
    kitchen: TenantKeys,
    manager: Client,
    till: Client,
    /// The issue answer.
    card: Value,
}

async fn issued(backend: Backend) -> Issued {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    let issued = manager
        .post(
            "/gift-cards",
            &json!({"code": "gc-alpha-1", "amount": 2500, "purchaser": "Ada", "recipient": "Bob"}),
        )
        .await;
    let card = issued.expect(201).clone();
    Issued {
        _srv: srv,
        kitchen,
        manager,
        till,
        card,
    }
}

/// [`issued`], then spent in two deducts with refusals around them: 1250 by the till for
/// `ord-1`, 1251 refused, the last 1250 by the manager, 1 refused.
struct Spent {
    base: Issued,
    purchase_tx: String,
    d1_tx: String,
    d2_tx: String,
}

async fn spent(backend: Backend) -> Spent {
    let base = issued(backend).await;
    let purchase_tx = base.card["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();
    let d1 = base
        .till
        .post(
            "/gift-cards/gc-alpha-1/deduct",
            &json!({"amount": 1250, "order_id": "ord-1"}),
        )
        .await;
    let d1_tx = d1.expect(200)["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();
    base.till
        .post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 1251}))
        .await
        .expect_error(422, "insufficient_funds");
    assert_eq!(balance(&base.till, "GC-ALPHA-1").await, 1250);
    let d2 = base
        .manager
        .post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 1250}))
        .await;
    assert_eq!(d2.expect(200)["balance"]["amount"], 0);
    let d2_tx = d2.body["transaction_id"].as_str().expect("tx").to_owned();
    base.till
        .post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 1}))
        .await
        .expect_error(422, "insufficient_funds");
    Spent {
        base,
        purchase_tx,
        d1_tx,
        d2_tx,
    }
}

async fn an_issued_card_has_an_upper_case_code_and_its_full_balance(backend: Backend) {
    let card = issued(backend).await.card;
    assert_eq!(card["code"], "GC-ALPHA-1");
    assert_eq!(card["balance"], json!({"amount": 2500, "currency": "USD"}));
    assert_eq!(card["status"], "active");
    assert!(card["transaction_id"].as_str().is_some(), "{card}");
    parse_rfc3339(card["created_at"].as_str().expect("created_at"));
}

async fn a_code_already_issued_in_any_case_is_refused(backend: Backend) {
    let Issued {
        _srv,
        manager,
        till,
        ..
    } = issued(backend).await;
    manager
        .post("/gift-cards", &json!({"code": "GC-Alpha-1", "amount": 100}))
        .await
        .expect_error(409, "gift_card_exists");
    assert_eq!(balance(&till, "GC-ALPHA-1").await, 2500);
}

async fn a_card_issued_without_a_code_gets_a_generated_one(backend: Backend) {
    let Issued {
        _srv,
        manager,
        till,
        ..
    } = issued(backend).await;
    let generated = manager.post("/gift-cards", &json!({"amount": 100})).await;
    let generated_code = generated.expect(201)["code"]
        .as_str()
        .expect("generated code")
        .to_owned();
    assert!(!generated_code.is_empty());
    assert_ne!(generated_code, "GC-ALPHA-1");
    assert_eq!(balance(&till, &generated_code).await, 100);
}

async fn the_balance_is_found_by_code_in_any_case(backend: Backend) {
    let Issued { _srv, till, .. } = issued(backend).await;
    for code in ["GC-ALPHA-1", "gc-alpha-1", "Gc-AlPhA-1"] {
        let resp = till.get(&format!("/gift-cards/{code}/balance")).await;
        assert_eq!(
            resp.expect(200),
            &json!({"code": "GC-ALPHA-1", "balance": {"amount": 2500, "currency": "USD"}, "status": "active"})
        );
    }
}

async fn an_unknown_card_is_not_found(backend: Backend) {
    let Issued { _srv, till, .. } = issued(backend).await;
    till.get("/gift-cards/NOPE-0000/balance")
        .await
        .expect_error(404, "gift_card_not_found");
    till.post("/gift-cards/NOPE-0000/deduct", &json!({"amount": 1}))
        .await
        .expect_error(404, "gift_card_not_found");
}

async fn a_deduct_answers_what_was_taken_and_what_is_left(backend: Backend) {
    let Issued { _srv, till, .. } = issued(backend).await;
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
    assert!(d1["transaction_id"].as_str().is_some(), "{d1}");
}

async fn deduct_beyond_balance_is_refused_and_changes_nothing(backend: Backend) {
    let Issued { _srv, till, .. } = issued(backend).await;
    till.post("/gift-cards/GC-ALPHA-1/deduct", &json!({"amount": 2501}))
        .await
        .expect_error(422, "insufficient_funds");
    assert_eq!(balance(&till, "GC-ALPHA-1").await, 2500);
}

async fn the_whole_balance_can_be_deducted_and_then_nothing_more(backend: Backend) {
    let spent = spent(backend).await;
    assert_eq!(balance(&spent.base.till, "GC-ALPHA-1").await, 0);
}

async fn the_ledger_lists_every_movement_newest_first_with_its_key_and_order(backend: Backend) {
    let Spent {
        base,
        purchase_tx,
        d1_tx,
        d2_tx,
    } = spent(backend).await;
    let (manager, kitchen) = (&base.manager, &base.kitchen);
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
}

async fn ledger_pages_hold_the_same_rows_in_the_same_order(backend: Backend) {
    let spent = spent(backend).await;
    let manager = &spent.base.manager;
    let resp = manager.get("/gift-cards/gc-alpha-1/transactions").await;
    let ledger = resp.expect(200)["items"].as_array().expect("items").clone();
    // 2 + 1.
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
        all_pages(manager, "/gift-cards/GC-ALPHA-1/transactions", 1).await,
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

/// Many balance reads at once, of two tenants' cards (one card's code issued by both, with
/// different balances) and of codes nobody issued, mixed with loyalty points reads: each
/// answer is its own card's or customer's, each unknown code a 404, though on PostgreSQL
/// concurrent reads share statements (which the metrics show happened).
async fn concurrent_balance_reads_each_get_their_own_card(backend: Backend) {
    const CARDS: i64 = 6;
    const ROUNDS: usize = 12;
    let srv = crate::start(backend).await;
    let mut tills = Vec::new();
    for (slug, base) in [("north", 1_000), ("south", 50_000)] {
        let tenant = srv.setup_tenant(slug).await;
        let manager = srv.manager(&tenant);
        for card in 0..CARDS {
            manager
                .post(
                    "/gift-cards",
                    &json!({"code": format!("SHARED-{card}"), "amount": base + card}),
                )
                .await
                .expect(201);
        }
        let till = srv.terminal(&tenant);
        till.post("/loyalty/%2B15550100777/add", &json!({"points": base / 10}))
            .await
            .expect(200);
        tills.push((till, base));
    }
    let reads = tills.len() * (CARDS as usize + 2) * ROUNDS;
    let barrier = Arc::new(tokio::sync::Barrier::new(reads));
    let mut tasks = Vec::new();
    for round in 0..ROUNDS {
        for (till, base) in &tills {
            for card in 0..=CARDS + 1 {
                // Card CARDS was never issued; CARDS + 1 stands for the customer's points.
                let (till, base, barrier) = (till.clone(), *base, barrier.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let path = if card == CARDS + 1 {
                        "/loyalty/%2B15550100777/points".to_owned()
                    } else {
                        format!("/gift-cards/SHARED-{card}/balance")
                    };
                    (round, base, card, till.get(&path).await)
                }));
            }
        }
    }
    for task in tasks {
        let (round, base, card, resp) = task.await.expect("read task");
        if card == CARDS {
            resp.expect_error(404, "gift_card_not_found");
        } else if card == CARDS + 1 {
            assert_eq!(resp.expect(200)["points"], base / 10, "round {round}");
        } else {
            assert_eq!(
                resp.expect(200)["balance"]["amount"],
                base + card,
                "round {round}: SHARED-{card} of the tenant with base {base}"
            );
        }
    }
    if backend == Backend::Postgres {
        let metrics = srv.anon().get("/metrics").await.text;
        let answered =
            crate::metric_value(&metrics, "posbridge_point_read_batch_reads_sum").unwrap_or(0.0);
        let statements =
            crate::metric_value(&metrics, "posbridge_point_read_batch_reads_count").unwrap_or(0.0);
        assert!(
            statements > 0.0 && answered > statements,
            "no statement answered more than one read ({answered} reads in {statements})"
        );
    }
}

both_backends!(
    an_issued_card_has_an_upper_case_code_and_its_full_balance,
    a_code_already_issued_in_any_case_is_refused,
    a_card_issued_without_a_code_gets_a_generated_one,
    the_balance_is_found_by_code_in_any_case,
    an_unknown_card_is_not_found,
    concurrent_balance_reads_each_get_their_own_card,
    a_deduct_answers_what_was_taken_and_what_is_left,
    deduct_beyond_balance_is_refused_and_changes_nothing,
    the_whole_balance_can_be_deducted_and_then_nothing_more,
    the_ledger_lists_every_movement_newest_first_with_its_key_and_order,
    ledger_pages_hold_the_same_rows_in_the_same_order,
    concurrent_deducts,
);
