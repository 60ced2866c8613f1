//! Loyalty points: add (creating the customer), phone normalisation, redeem, ledger.

use posbridge_harness::{both_backends, enc, Backend};
use serde_json::{json, Value};

use crate::all_pages;

fn points_path(phone: &str, action: &str) -> String {
    format!("/loyalty/{}/{action}", enc(phone))
}

async fn loyalty_points(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    let manager = srv.manager(&kitchen);

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

    // The first add creates the customer; the formatted number is normalised.
    let added = till
        .post(
            &points_path("(555) 010-0199", "add"),
            &json!({"points": 120, "order_id": "o-1", "reason": "purchase"}),
        )
        .await;
    let added = added.expect(200).clone();
    assert_eq!(added["phone"], "+15550100199");
    assert_eq!(added["points"], 120);
    assert_eq!(added["lifetime_points"], 120);
    assert_eq!(added["change"], 120);
    let add_tx = added["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();

    // Every spelling reads the same customer.
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

    let second = manager
        .post(
            &points_path("+1 555 010 0199", "add"),
            &json!({"points": 30}),
        )
        .await;
    assert_eq!(second.expect(200)["points"], 150);
    assert_eq!(second.body["lifetime_points"], 150);

    let redeemed = till
        .post(
            &points_path("+15550100199", "redeem"),
            &json!({"points": 100, "order_id": "o-2", "reason": "free burger"}),
        )
        .await;
    let redeemed = redeemed.expect(200).clone();
    assert_eq!(redeemed["phone"], "+15550100199");
    assert_eq!(redeemed["points"], 50);
    assert_eq!(
        redeemed["lifetime_points"], 150,
        "redeeming keeps lifetime points"
    );
    assert_eq!(redeemed["change"], -100);

    // Short: 422 and unchanged.
    till.post(
        &points_path("(555) 010-0199", "redeem"),
        &json!({"points": 51}),
    )
    .await
    .expect_error(422, "insufficient_points");
    let now = till.get(&points_path("+15550100199", "points")).await;
    assert_eq!(now.expect(200)["points"], 50);
    assert_eq!(now.body["lifetime_points"], 150);

    // Another customer is separate.
    till.post(&points_path("+15550100200", "add"), &json!({"points": 7}))
        .await
        .expect(200);
    assert_eq!(
        till.get(&points_path("+15550100199", "points"))
            .await
            .expect(200)["points"],
        50
    );

    // Ledger, newest first, for the manager only.
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
    assert_eq!(items[2]["id"], add_tx.as_str());
    assert_eq!(items[2]["order_id"], "o-1");
    assert_eq!(items[2]["reason"], "purchase");
    assert_eq!(items[2]["api_key_id"], kitchen.terminal.id.as_str());
    assert_eq!(items[1]["api_key_id"], kitchen.manager.id.as_str());
    assert_eq!(items[0]["reason"], "free burger");
    assert_eq!(items[0]["id"], redeemed["transaction_id"]);
    assert_eq!(
        all_pages(&manager, &points_path("+15550100199", "transactions"), 1).await,
        items
    );
    assert_eq!(
        all_pages(&manager, &points_path("+15550100199", "transactions"), 2).await,
        items
    );
}

both_backends!(loyalty_points);
