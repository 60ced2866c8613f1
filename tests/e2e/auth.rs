//! Tenant API authentication and isolation, and `GET /health`.

use posbridge_harness::{both_backends, jiff, parse_rfc3339, Backend, TenantKeys, TestServer};
use serde_json::json;

use crate::order_body;

/// A server with tenants `kitchen` and `bakery`.
async fn two_tenants(backend: Backend) -> (TestServer, TenantKeys, TenantKeys) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;
    (srv, kitchen, bakery)
}

async fn a_missing_or_unknown_key_is_unauthorized(backend: Backend) {
    let (srv, _kitchen, _bakery) = two_tenants(backend).await;
    srv.tenant_anon("kitchen")
        .get("/health")
        .await
        .expect_error(401, "unauthorized");
    srv.tenant_anon("kitchen")
        .with_header("X-Tenant-ID", "kitchen")
        .get("/health")
        .await
        .expect_error(401, "unauthorized");
    // Unknown key, in both header forms.
    srv.tenant_client("kitchen", "pbk_thisKeyDoesNotExist0123456789abcdefgh")
        .get("/health")
        .await
        .expect_error(401, "unauthorized");
    srv.bearer_client("kitchen", "pbk_thisKeyDoesNotExist0123456789abcdefgh")
        .get("/health")
        .await
        .expect_error(401, "unauthorized");
}

/// 403 whether X-Tenant-ID names the path's tenant or the key's own; a tenant that does not
/// exist looks exactly like one that does.
async fn another_tenants_key_is_forbidden(backend: Backend) {
    let (srv, kitchen, bakery) = two_tenants(backend).await;
    srv.tenant_client("kitchen", &bakery.terminal.key)
        .get("/health")
        .await
        .expect_error(403, "forbidden");
    srv.tenant_client("kitchen", &bakery.terminal.key)
        .with_header("X-Tenant-ID", "bakery")
        .get("/health")
        .await
        .expect_error(403, "forbidden");
    srv.bearer_client("kitchen", &bakery.manager.key)
        .get("/health")
        .await
        .expect_error(403, "forbidden");
    let missing = srv
        .tenant_client("no-such-tenant", &kitchen.terminal.key)
        .get("/health")
        .await;
    missing.expect_error(403, "forbidden");
}

async fn an_x_tenant_id_that_disagrees_with_the_path_is_forbidden(backend: Backend) {
    let (srv, kitchen, _bakery) = two_tenants(backend).await;
    srv.terminal(&kitchen)
        .with_header("X-Tenant-ID", "bakery")
        .get("/health")
        .await
        .expect_error(403, "forbidden");
}

async fn a_bearer_key_works_without_x_tenant_id(backend: Backend) {
    let (srv, kitchen, _bakery) = two_tenants(backend).await;
    let bearer = srv
        .bearer_client("kitchen", &kitchen.terminal.key)
        .get("/health")
        .await;
    assert_eq!(bearer.expect(200)["tenant"], "kitchen");
}

async fn a_terminal_key_on_manager_routes_is_forbidden_and_does_nothing(backend: Backend) {
    let (srv, kitchen, _bakery) = two_tenants(backend).await;
    let till = srv.terminal(&kitchen);
    till.post("/orders", &order_body("web-1", "online"))
        .await
        .expect_error(403, "forbidden");
    till.post("/gift-cards", &json!({"code": "TILLCARD", "amount": 1000}))
        .await
        .expect_error(403, "forbidden");
    till.get("/gift-cards/TILLCARD/balance")
        .await
        .expect_error(404, "gift_card_not_found");
    let pending = till.get("/orders/pending").await;
    assert_eq!(pending.expect(200)["orders"], json!([]));
    let manager = srv.manager(&kitchen);
    manager
        .post("/gift-cards", &json!({"code": "KCARD", "amount": 1000}))
        .await
        .expect(201);
    manager
        .post("/loyalty/%2B15550100199/add", &json!({"points": 5}))
        .await
        .expect(200);
    till.get("/gift-cards/KCARD/transactions")
        .await
        .expect_error(403, "forbidden");
    till.get("/loyalty/%2B15550100199/transactions")
        .await
        .expect_error(403, "forbidden");
}

async fn a_manager_key_may_call_terminal_routes(backend: Backend) {
    let (srv, kitchen, _bakery) = two_tenants(backend).await;
    let manager = srv.manager(&kitchen);
    assert_eq!(
        manager.get("/health").await.expect(200)["tenant"],
        "kitchen"
    );
    manager.get("/orders/pending").await.expect(200);
}

async fn another_tenants_orders_and_cards_are_invisible_and_untouched(backend: Backend) {
    let (srv, kitchen, bakery) = two_tenants(backend).await;
    let till = srv.terminal(&kitchen);
    srv.manager(&kitchen)
        .post("/gift-cards", &json!({"code": "KCARD", "amount": 1000}))
        .await
        .expect(201);
    let bakery_mgr = srv.manager(&bakery);
    let order = bakery_mgr
        .post("/orders", &order_body("b-1", "online"))
        .await;
    let order_id = order.expect(201)["id"].as_str().expect("id").to_owned();
    bakery_mgr
        .post("/gift-cards", &json!({"code": "BCARD", "amount": 700}))
        .await
        .expect(201);
    till.post(
        &format!("/orders/{order_id}/status"),
        &json!({"status": "accepted"}),
    )
    .await
    .expect_error(404, "order_not_found");
    till.get("/gift-cards/BCARD/balance")
        .await
        .expect_error(404, "gift_card_not_found");
    till.post("/gift-cards/BCARD/deduct", &json!({"amount": 100}))
        .await
        .expect_error(404, "gift_card_not_found");
    // …and unchanged for bakery.
    let bakery_pending = srv.terminal(&bakery).get("/orders/pending").await;
    let orders = bakery_pending.expect(200)["orders"]
        .as_array()
        .expect("orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["id"], order_id.as_str());
    assert_eq!(orders[0]["status"], "pending");
    assert_eq!(crate::balance(&srv.terminal(&bakery), "BCARD").await, 700);
    // Kitchen's own card is unaffected by bakery's.
    assert_eq!(crate::balance(&till, "KCARD").await, 1000);
}

async fn health(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    for client in [srv.terminal(&kitchen), srv.manager(&kitchen)] {
        let resp = client.get("/health").await;
        let body = resp.expect(200);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["tenant"], "kitchen");
        let time = parse_rfc3339(body["time"].as_str().expect("time"));
        let skew = jiff::Timestamp::now().duration_since(time).abs();
        assert!(
            skew < jiff::SignedDuration::from_secs(300),
            "health time {time} is far from now"
        );
        assert!(
            resp.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            resp.headers
        );
    }
}

both_backends!(
    a_missing_or_unknown_key_is_unauthorized,
    another_tenants_key_is_forbidden,
    an_x_tenant_id_that_disagrees_with_the_path_is_forbidden,
    a_bearer_key_works_without_x_tenant_id,
    a_terminal_key_on_manager_routes_is_forbidden_and_does_nothing,
    a_manager_key_may_call_terminal_routes,
    another_tenants_orders_and_cards_are_invisible_and_untouched,
    health,
);
