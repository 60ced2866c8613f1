//! Plugin contracts side by side: components built from the frozen 0.1.0 and 0.2.0 WIT keep
//! installing and running next to the 0.3 bundled ones; a hook's `validate-config` (0.2 and
//! later) refuses a bad binding configuration with 422 naming the field (on create and on
//! PATCH); staff, line items and refunds (0.2 and later) reach the stored sale and its event.

use std::time::{Duration, Instant};

use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, Backend, Body, Client, Resp, Ws};
use serde_json::{json, Value};

use crate::providers::{all_transactions, next_sale_event};

/// How long a hook delivery may take to show up on a loaded CI machine.
const DELIVERY: Duration = Duration::from_secs(20);

async fn patch(manager: &Client, id: &str, body: Value) -> Resp {
    manager
        .send(
            Method::PATCH,
            &format!("/hooks/{id}"),
            Body::Json(body),
            &[],
        )
        .await
}

/// The first frame of type `kind` within [`DELIVERY`].
async fn frame_of(ws: &mut Ws, kind: &str) -> Value {
    let deadline = Instant::now() + DELIVERY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.next_json_within(left).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// The manifest the admin API shows for `id`.
async fn manifest(admin: &Client, id: &str) -> Value {
    admin.get(&format!("/admin/plugins/{id}")).await.expect(200)["manifest"].clone()
}

#[track_caller]
fn assert_refused_naming(resp: &Resp, field: &str) {
    resp.expect_error(422, "invalid_config");
    let message = resp.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("config.{field}: ")),
        "the refusal names config.{field}: {}",
        resp.text
    );
}

async fn contract_versions_run_side_by_side(backend: Backend) {
    let srv = crate::start(backend).await;
    let admin = srv.admin();
    for legacy in ["test_legacy_provider", "test_legacy_hook"] {
        let installed = crate::install_plugin(&srv, legacy).await;
        assert_eq!(
            installed.expect(201)["manifest"]["contract"],
            "0.1",
            "{}",
            installed.text
        );
    }
    for bundled in ["local-pos", "order-size-flag", "square"] {
        assert_eq!(
            manifest(&admin, bundled).await["contract"],
            "0.3",
            "{bundled}"
        );
    }
    // A 0.3 provider declares its write and catalog side; one built on 0.3 that takes no
    // orders declares none of it.
    let square = manifest(&admin, "square").await["capabilities"].clone();
    for capability in [
        "submit-orders",
        "price-orders",
        "order-status",
        "fetch-catalog",
    ] {
        assert!(
            square
                .as_array()
                .is_some_and(|c| c.iter().any(|v| v == capability)),
            "square declares {capability}: {square}"
        );
    }
    let local = manifest(&admin, "local-pos").await["capabilities"].clone();
    assert!(
        !local.to_string().contains("submit-orders"),
        "local-pos takes no orders through the contract: {local}"
    );
    let schema = manifest(&admin, "order-size-flag").await["config_schema"].clone();
    assert_eq!(
        schema["properties"]["threshold"]["type"], "integer",
        "the hook's schema is in its manifest: {schema}"
    );
    assert!(manifest(&admin, "test-legacy-hook").await["config_schema"].is_null());

    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let till = srv.terminal(&tenant);
    // A 0.1 hook has no validate-config: any object binds, as it always did.
    let legacy_binding = manager
        .post(
            "/hooks",
            &json!({"plugin": "test-legacy-hook", "config": {"anything": ["goes", 1]}}),
        )
        .await;
    legacy_binding.expect(201);
    // The 0.3 hook next to it checks its configuration.
    assert_refused_naming(
        &manager
            .post(
                "/hooks",
                &json!({"plugin": "order-size-flag", "config": {"treshold": 1}}),
            )
            .await,
        "treshold",
    );

    manager
        .post(
            "/pos/connect",
            &json!({"venue": "legacy", "provider": "test-legacy-provider"}),
        )
        .await
        .expect(200);
    crate::connect_local_pos(&manager, "downtown").await;

    let mut ws = srv.ws("kitchen", &tenant.terminal.key, None).await;
    ws.hello().await;
    // A sale through the 0.1 provider, delivered to the 0.1 hook.
    till.post(
        "/transactions",
        &json!({"venue": "legacy", "sales": [{"id": "old-1", "total": 1250, "at": 1_764_000_000_000i64}]}),
    )
    .await
    .expect(200);
    let recorded = next_sale_event(&mut ws).await;
    assert_eq!(recorded["data"]["external_id"], "old-1", "{recorded}");
    assert_eq!(recorded["data"]["provider"], "test-legacy-provider");
    assert_eq!(recorded["data"]["line_items"], json!([]), "{recorded}");
    assert!(recorded["data"]["staff"].is_null(), "{recorded}");
    let seen = frame_of(&mut ws, "custom.legacy_seen").await;
    assert_eq!(seen["data"]["external_id"], "old-1", "{seen}");
    assert_eq!(seen["data"]["config"]["anything"][0], "goes", "{seen}");

    // A sale with 0.2's details through the 0.3 local-pos provider.
    till.post(
        "/transactions",
        &json!({"venue": "downtown", "transactions": [{
            "id": "new-1", "occurred_at": "2026-11-20T19:00:00Z", "total": 1900, "currency": "USD",
            "staff": {"id": "e-7", "name": "Ana"},
            "items": [
                {"name": "IPA pint", "quantity": 2, "unit_price": 700, "total": 1400},
                {"name": "Olives", "quantity": "0.5", "total": 500, "category": "Snacks"}
            ],
            "refunds": [{"id": "r-1", "amount": 500, "at": "2026-11-21T10:00:00Z", "reason": "spilled"}]
        }]}),
    )
    .await
    .expect(200);
    let recorded = next_sale_event(&mut ws).await;
    let data = &recorded["data"];
    assert_eq!(data["external_id"], "new-1", "{recorded}");
    assert_eq!(
        data["staff"],
        json!({"id": "e-7", "name": "Ana"}),
        "{recorded}"
    );
    assert_eq!(data["line_items"][1]["quantity"], "0.5", "{recorded}");
    assert_eq!(data["refunds"][0]["id"], "r-1", "{recorded}");
    assert_eq!(data["refunded"], 500, "{recorded}");
    assert_eq!(data["net"], 1400, "{recorded}");

    let stored = all_transactions(&manager, "downtown").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let sale = &stored[0];
    assert_eq!(sale["staff"], json!({"id": "e-7", "name": "Ana"}), "{sale}");
    assert_eq!(sale["line_items"][0]["name"], "IPA pint", "{sale}");
    assert_eq!(sale["line_items"][0]["unit_price"], 700, "{sale}");
    assert_eq!(
        sale["refunds"],
        json!([{"id": "r-1", "amount": 500, "created_at": "2026-11-21T10:00:00Z", "reason": "spilled"}]),
        "{sale}"
    );
    let legacy = all_transactions(&manager, "legacy").await;
    assert_eq!(legacy[0]["line_items"], json!([]), "{legacy:?}");
    assert!(legacy[0]["staff"].is_null(), "{legacy:?}");

    // A component built on 0.2, now that the bundled ones are 0.3: it installs as 0.2 and
    // its sales keep 0.2's details.
    let v02 = crate::install_plugin(&srv, "test_v02_provider").await;
    assert_eq!(
        v02.expect(201)["manifest"]["contract"],
        "0.2",
        "{}",
        v02.text
    );
    manager
        .post(
            "/pos/connect",
            &json!({"venue": "terrace", "provider": "test-v02-provider"}),
        )
        .await
        .expect(200);
    till.post(
        "/transactions",
        &json!({"venue": "terrace", "sales": [{"id": "mid-1", "total": 2400, "at": 1_764_000_000_000i64, "staff": "Bo"}]}),
    )
    .await
    .expect(200);
    let recorded = next_sale_event(&mut ws).await;
    assert_eq!(recorded["data"]["external_id"], "mid-1", "{recorded}");
    assert_eq!(recorded["data"]["provider"], "test-v02-provider");
    assert_eq!(recorded["data"]["staff"]["name"], "Bo", "{recorded}");
    assert_eq!(
        recorded["data"]["line_items"][0]["total"], 2400,
        "{recorded}"
    );
}

async fn hook_config_is_checked_on_create_and_patch(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);

    // Create: a misspelt key, a value of the wrong type, a value out of range.
    for (config, field) in [
        (json!({"treshold": 5000}), "treshold"),
        (json!({"threshold": "5000"}), "threshold"),
        (json!({"threshold": -1}), "threshold"),
    ] {
        let refused = manager
            .post(
                "/hooks",
                &json!({"plugin": "order-size-flag", "config": config}),
            )
            .await;
        assert_refused_naming(&refused, field);
    }
    let refused = manager
        .post(
            "/hooks",
            &json!({"plugin": "big-spender-alert", "config": {"webhook_url": "ftp://x", "min_sale": -5}}),
        )
        .await;
    assert_refused_naming(&refused, "webhook_url");
    assert_refused_naming(&refused, "min_sale");
    let none = manager.get("/hooks").await;
    assert_eq!(none.expect(200)["items"], json!([]), "nothing was stored");

    let created = manager
        .post(
            "/hooks",
            &json!({"plugin": "order-size-flag", "config": {"threshold": 5000}}),
        )
        .await;
    let id = created.expect(201)["id"].as_str().unwrap().to_owned();
    // No configuration at all is the hook's defaults, which it accepts.
    manager
        .post("/hooks", &json!({"plugin": "order-size-flag"}))
        .await
        .expect(201);

    // PATCH: refused with the field named, the stored configuration untouched.
    assert_refused_naming(
        &patch(&manager, &id, json!({"config": {"threshhold": 1}})).await,
        "threshhold",
    );
    assert_refused_naming(
        &patch(
            &manager,
            &id,
            json!({"config": {"threshold": -2}, "enabled": false}),
        )
        .await,
        "threshold",
    );
    let unchanged = manager.get(&format!("/hooks/{id}")).await;
    let unchanged = unchanged.expect(200);
    assert_eq!(
        unchanged["config"],
        json!({"threshold": 5000}),
        "{unchanged}"
    );
    assert_eq!(unchanged["status"], "active", "{unchanged}");
    let changed = patch(&manager, &id, json!({"config": {"threshold": 7000}})).await;
    assert_eq!(
        changed.expect(200)["config"],
        json!({"threshold": 7000}),
        "{}",
        changed.text
    );
}

both_backends!(
    contract_versions_run_side_by_side,
    hook_config_is_checked_on_create_and_patch,
);
