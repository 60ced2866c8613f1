//! What a suspension pauses besides the tenant's keys: webhook processing, scheduled syncs
//! and hook deliveries wait while another tenant's go on, and catch up after resumption.

use std::time::Duration;

use posbridge_harness::{both_backends, eventually, Backend};
use serde_json::json;
use sqlx::Connection;

use super::schema_walk::connect_db;

/// Webhooks for a suspended tenant's integrations are accepted and stored but processed
/// only after resumption, and its scheduled syncs wait; another tenant's go on meanwhile.
async fn webhooks_and_syncs_wait_for_a_suspended_tenant(backend: Backend) {
    use crate::providers::{connect_square_webhooks, post_signed_square};
    use posbridge_harness::mock_square::{square_payment_webhook, SquarePayment};

    const KEY: &str = "sq-webhook-signature-key-1";
    let (srv, _, kitchen_manager, mock) = crate::providers::square_kitchen(backend).await;
    let bakery = srv.setup_tenant("bakery").await;
    let bakery_manager = srv.manager(&bakery);
    let on_kitchen = connect_square_webhooks(&kitchen_manager, &mock, "downtown", KEY).await;
    let on_bakery = connect_square_webhooks(&bakery_manager, &mock, "downtown", KEY).await;
    let payment = |id: &str| {
        SquarePayment::new(id, 2500, 0, posbridge_harness::jiff::Timestamp::now()).json()
    };
    srv.admin()
        .post("/admin/tenants/kitchen/suspend", &json!({}))
        .await
        .expect(200);

    // Kitchen's first: the inbox takes deliveries in arrival order.
    for (integration, id) in [(&on_kitchen, "k-pay-1"), (&on_bakery, "b-pay-1")] {
        let body = square_payment_webhook("payment.created", &format!("evt-{id}"), &payment(id));
        let resp = post_signed_square(&srv, integration, &body, KEY).await;
        assert_eq!(
            resp.expect(200)["received"],
            true,
            "accepted: {}",
            resp.text
        );
    }
    eventually(Duration::from_secs(15), "the bakery's webhook", || async {
        let sales = crate::providers::all_transactions(&bakery_manager, "downtown").await;
        (sales.len() == 1).then_some(())
    })
    .await;
    let mut db = connect_db(&srv).await;
    let waiting: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, attempts FROM webhook_inbox WHERE integration_id = $1")
            .bind(on_kitchen["id"].as_str().expect("integration id"))
            .fetch_all(&mut db)
            .await
            .expect("kitchen's inbox");
    assert_eq!(
        waiting,
        [("pending".to_owned(), 0)],
        "stored, untouched while the tenant is suspended"
    );

    // Scheduled syncs wait too. Both integrations are made due, the kitchen's first in
    // line: once the bakery's sync is recorded, the scheduler has passed over the kitchen.
    let ids = [&on_kitchen, &on_bakery].map(|i| i["id"].as_str().expect("id").to_owned());
    let url = srv.database_url().to_owned();
    let sync_state = |id: String| {
        let url = url.clone();
        async move {
            let mut db = sqlx::AnyConnection::connect(&url).await.expect("database");
            let (runs, lease): (i64, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM sync_runs WHERE integration_id = $1), lease_until
                 FROM integrations WHERE id = $1",
            )
            .bind(&id)
            .fetch_one(&mut db)
            .await
            .expect("integration");
            (runs, lease)
        }
    };
    let kitchen_runs = sync_state(ids[0].clone()).await.0;
    let bakery_runs = sync_state(ids[1].clone()).await.0;
    for (id, due) in ids.iter().zip([1_i64, 2]) {
        sqlx::query("UPDATE integrations SET next_sync_at = $1 WHERE id = $2")
            .bind(due)
            .bind(id)
            .execute(&mut db)
            .await
            .expect("making the sync due");
    }
    eventually(Duration::from_secs(15), "the bakery's sync", || async {
        (sync_state(ids[1].clone()).await.0 > bakery_runs).then_some(())
    })
    .await;
    assert_eq!(
        sync_state(ids[0].clone()).await,
        (kitchen_runs, None),
        "the suspended tenant's integration is neither synced nor leased"
    );

    srv.admin()
        .post("/admin/tenants/kitchen/resume", &json!({}))
        .await
        .expect(200);
    eventually(
        Duration::from_secs(15),
        "the kitchen's webhook after resuming",
        || async {
            let sales = crate::providers::all_transactions(&kitchen_manager, "downtown").await;
            (sales.len() == 1 && sales[0]["external_id"] == "k-pay-1").then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the kitchen's sync after resuming",
        || async { (sync_state(ids[0].clone()).await.0 > kitchen_runs).then_some(()) },
    )
    .await;
}

/// A suspended tenant's hook deliveries wait while another tenant's go on, and catch up
/// after resumption. Both bindings are held back, then made due with the suspended
/// tenant's first in line: once the other's is delivered, the dispatcher has passed over
/// the suspended one.
async fn hook_deliveries_wait_for_a_suspended_tenant(backend: Backend) {
    let srv = crate::start(backend).await;
    let mut db = connect_db(&srv).await;
    let mut bindings = Vec::new();
    for slug in ["kitchen", "bakery"] {
        let tenant = srv.setup_tenant(slug).await;
        let manager = srv.manager(&tenant);
        let hook = manager
            .post("/hooks", &json!({"plugin": "order-size-flag"}))
            .await;
        let id = hook.expect(201)["id"]
            .as_str()
            .expect("binding id")
            .to_owned();
        sqlx::query("UPDATE hook_bindings SET next_attempt_at = $1 WHERE id = $2")
            .bind(i64::MAX / 2)
            .bind(&id)
            .execute(&mut db)
            .await
            .expect("holding the binding back");
        manager
            .post("/orders", &crate::order_body("web-1", "online"))
            .await
            .expect(201);
        bindings.push(id);
    }
    let behind = |id: &str| {
        let id = id.to_owned();
        let url = srv.database_url().to_owned();
        async move {
            let mut db = sqlx::AnyConnection::connect(&url).await.expect("database");
            let (cursor, last, lease): (i64, i64, Option<String>) = sqlx::query_as(
                "SELECT b.cursor_seq, t.last_seq, b.lease_owner FROM hook_bindings b
                 JOIN tenants t ON t.id = b.tenant_id WHERE b.id = $1",
            )
            .bind(&id)
            .fetch_one(&mut db)
            .await
            .expect("binding");
            (cursor < last, lease)
        }
    };
    srv.admin()
        .post("/admin/tenants/kitchen/suspend", &json!({}))
        .await
        .expect(200);
    for (id, due) in bindings.iter().zip([1_i64, 2]) {
        sqlx::query("UPDATE hook_bindings SET next_attempt_at = $1 WHERE id = $2")
            .bind(due)
            .bind(id)
            .execute(&mut db)
            .await
            .expect("making the binding due");
    }
    eventually(Duration::from_secs(15), "the bakery's hook", || async {
        (!behind(&bindings[1]).await.0).then_some(())
    })
    .await;
    assert_eq!(
        behind(&bindings[0]).await,
        (true, None),
        "the suspended tenant's binding is neither delivered nor leased"
    );

    srv.admin()
        .post("/admin/tenants/kitchen/resume", &json!({}))
        .await
        .expect(200);
    eventually(
        Duration::from_secs(15),
        "the kitchen's hook after resuming",
        || async { (!behind(&bindings[0]).await.0).then_some(()) },
    )
    .await;
}

both_backends!(
    webhooks_and_syncs_wait_for_a_suspended_tenant,
    hook_deliveries_wait_for_a_suspended_tenant,
);
