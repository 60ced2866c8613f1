//! Loyalty points: add (creating the customer), phone normalisation, redeem, ledger.

use posbridge_harness::{both_backends, enc, Backend, Client, TenantKeys, TestServer};
use serde_json::{json, Value};

use crate::all_pages;

fn points_path(phone: &str, action: &str) -> String {
    format!("/loyalty/{}/{action}", enc(phone))
}

/// A server with tenant `kitchen` whose till added 120 points for `(555) 010-0199`
/// (order `o-1`, reason `purchase`), creating the customer.
struct Customer {
    _srv: TestServer,
    kitchen: TenantKeys,
    till: Client,
    manager: Client,
    /// The first add's answer.
    added: Value,
}

async fn customer(backend: Backend) -> Customer {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    let manager = srv.manager(&kitchen);
    let added = till
        .post(
            &points_path("(555) 010-0199", "add"),
            &json!({"points": 120, "order_id": "o-1", "reason": "purchase"}),
        )
        .await;
    let added = added.expect(200).clone();
    Customer {
        _srv: srv,
        kitchen,
        till,
        manager,
        added,
    }
}

/// [`customer`], then 30 more points by the manager and 100 redeemed by the till (order
/// `o-2`, reason `free burger`): 50 left, 150 lifetime. Returns the redeem's answer too.
async fn customer_with_history(backend: Backend) -> (Customer, Value) {
    let c = customer(backend).await;
    let second = c
        .manager
        .post(
            &points_path("+1 555 010 0199", "add"),
            &json!({"points": 30}),
        )
        .await;
    assert_eq!(second.expect(200)["points"], 150);
    assert_eq!(second.body["lifetime_points"], 150);
    let redeemed = c
        .till
        .post(
            &points_path("+15550100199", "redeem"),
            &json!({"points": 100, "order_id": "o-2", "reason": "free burger"}),
        )
        .await;
    let redeemed = redeemed.expect(200).clone();
    (c, redeemed)
}

async fn an_unknown_customer_or_a_malformed_phone_is_refused(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    till.get(&points_path("+15550100199", "points"))
        .await
        .expect_error(404, "customer_not_found");
    till.get(&points_path("not a phone", "points"))
        .await
        .expect_error(422, "invalid_phone");
    till.post(&points_path("not a phone", "add"), &json!({"points": 10}))
        .await
        .expect_error(422, "invalid_phone");
    till.post(
        &points_path("+15550100199", "redeem"),
        &json!({"points": 10}),
    )
    .await
    .expect_error(404, "customer_not_found");
}

async fn the_first_add_creates_the_customer_under_the_normalised_number(backend: Backend) {
    let added = customer(backend).await.added;
    assert_eq!(added["phone"], "+15550100199");
    assert_eq!(added["points"], 120);
    assert_eq!(added["lifetime_points"], 120);
    assert_eq!(added["change"], 120);
    assert!(added["transaction_id"].as_str().is_some(), "{added}");
}

async fn every_spelling_of_a_number_reads_the_same_customer(backend: Backend) {
    let Customer { _srv, till, .. } = customer(backend).await;
    for phone in [
        "+15550100199",
        "(555) 010-0199",
        "555-010-0199",
        "+1 555 010 0199",
    ] {
        let resp = till.get(&points_path(phone, "points")).await;
        assert_eq!(
            resp.expect(200),
            &json!({"phone": "+15550100199", "points": 120, "lifetime_points": 120,
                    "tier": "GUEST", "access_level": "PUBLIC_LOBBY"}),
            "reading {phone:?}"
        );
    }
}

async fn redeeming_lowers_the_balance_but_keeps_lifetime_points(backend: Backend) {
    let (_c, redeemed) = customer_with_history(backend).await;
    assert_eq!(redeemed["phone"], "+15550100199");
    assert_eq!(redeemed["points"], 50);
    assert_eq!(
        redeemed["lifetime_points"], 150,
        "redeeming keeps lifetime points"
    );
    assert_eq!(redeemed["change"], -100);
}

async fn redeeming_more_than_the_balance_is_refused_and_changes_nothing(backend: Backend) {
    let (c, _) = customer_with_history(backend).await;
    c.till
        .post(
            &points_path("(555) 010-0199", "redeem"),
            &json!({"points": 51}),
        )
        .await
        .expect_error(422, "insufficient_points");
    let now = c.till.get(&points_path("+15550100199", "points")).await;
    assert_eq!(now.expect(200)["points"], 50);
    assert_eq!(now.body["lifetime_points"], 150);
    // Nor a ledger row: on PostgreSQL the debit and its row are one statement.
    let ledger = all_pages(&c.manager, &points_path("+15550100199", "transactions"), 10).await;
    assert_eq!(ledger.len(), 3, "{ledger:?}");
}

async fn customers_have_separate_balances(backend: Backend) {
    let Customer { _srv, till, .. } = customer(backend).await;
    till.post(&points_path("+15550100200", "add"), &json!({"points": 7}))
        .await
        .expect(200);
    assert_eq!(
        till.get(&points_path("+15550100199", "points"))
            .await
            .expect(200)["points"],
        120
    );
}

async fn the_points_ledger_lists_every_movement_newest_first_for_managers_only(backend: Backend) {
    let (c, redeemed) = customer_with_history(backend).await;
    let (till, manager, kitchen) = (&c.till, &c.manager, &c.kitchen);
    let add_tx = c.added["transaction_id"].as_str().expect("transaction_id");
    till.get(&points_path("+15550100199", "transactions"))
        .await
        .expect_error(403, "forbidden");
    let resp = manager
        .get(&points_path("(555) 010-0199", "transactions"))
        .await;
    let items = resp.expect(200)["items"].as_array().expect("items").clone();
    assert_eq!(resp.body["next_cursor"], Value::Null);
    let summary: Vec<(&str, i64, i64)> = items
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().expect("kind"),
                t["points"].as_i64().expect("points"),
                t["balance_after"].as_i64().expect("balance_after"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("redeem", -100, 50), ("add", 30, 150), ("add", 120, 120)]
    );
    assert_eq!(items[2]["id"], add_tx);
    assert_eq!(items[2]["order_id"], "o-1");
    assert_eq!(items[2]["reason"], "purchase");
    assert_eq!(items[2]["api_key_id"], kitchen.terminal.id.as_str());
    assert_eq!(items[1]["api_key_id"], kitchen.manager.id.as_str());
    assert_eq!(items[0]["reason"], "free burger");
    assert_eq!(items[0]["id"], redeemed["transaction_id"]);
    assert_eq!(
        all_pages(manager, &points_path("+15550100199", "transactions"), 1).await,
        items
    );
    assert_eq!(
        all_pages(manager, &points_path("+15550100199", "transactions"), 2).await,
        items
    );
}

both_backends!(
    an_unknown_customer_or_a_malformed_phone_is_refused,
    the_first_add_creates_the_customer_under_the_normalised_number,
    every_spelling_of_a_number_reads_the_same_customer,
    redeeming_lowers_the_balance_but_keeps_lifetime_points,
    redeeming_more_than_the_balance_is_refused_and_changes_nothing,
    customers_have_separate_balances,
    the_points_ledger_lists_every_movement_newest_first_for_managers_only,
);
