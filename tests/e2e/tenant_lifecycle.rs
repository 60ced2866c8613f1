//! Tenants over their whole life: update, suspend and resume, delete, by HTTP and by CLI.
//! Deletion is checked against the database itself: every table of the schema is walked and
//! no row may name anything of the deleted tenant, while another tenant's rows all stay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use posbridge_harness::{both_backends, enc, eventually, ws_refusal_status, Backend, TestServer};
use serde_json::{json, Value};

use schema_walk::{census, connect_db, owned_ids, populate, schema, seed_background_rows};

mod paused_work;
mod schema_walk;

/// A suspension reaches sockets on every host within the 2 s promised for revocations;
/// generous, as timing bounds in these tests are.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

const PHONE: &str = "+15550100199";

async fn tenant(srv: &TestServer, slug: &str) -> Value {
    srv.admin()
        .get(&format!("/admin/tenants/{slug}"))
        .await
        .expect(200)
        .clone()
}

async fn update_changes_only_what_is_valid(backend: Backend) {
    let srv = crate::start(backend).await;
    srv.setup_tenant("kitchen").await;
    let admin = srv.admin();
    let before = tenant(&srv, "kitchen").await;

    let bad: [(Value, u16, &str); 7] = [
        (json!({"timezone": "Mars/Olympus"}), 422, "invalid_tenant"),
        (json!({"country": "ZZ"}), 422, "invalid_tenant"),
        (json!({"name": "  "}), 422, "invalid_tenant"),
        (json!({"name": "x".repeat(201)}), 422, "invalid_tenant"),
        // Valid fields next to an invalid one: nothing of the request is applied.
        (
            json!({"name": "Renamed", "timezone": "Not/AZone"}),
            422,
            "invalid_tenant",
        ),
        (json!({}), 422, "invalid_tenant"),
        // The currency is fixed: every stored amount is in its minor units.
        (json!({"currency": "EUR"}), 422, "invalid_request"),
    ];
    for (body, status, code) in bad {
        let resp = admin.patch("/admin/tenants/kitchen", &body).await;
        resp.expect_error(status, code);
        let message = resp.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "a clear message for {body}: {}",
            resp.text
        );
    }
    let resp = admin
        .patch(
            "/admin/tenants/kitchen",
            &json!({"timezone": "Mars/Olympus"}),
        )
        .await;
    assert!(
        resp.text.contains("Mars/Olympus") && resp.text.contains("IANA"),
        "the message names the zone and what is expected: {}",
        resp.text
    );
    assert_eq!(
        tenant(&srv, "kitchen").await,
        before,
        "bad input changed nothing"
    );

    admin
        .patch("/admin/tenants/nowhere", &json!({"name": "Ghost"}))
        .await
        .expect_error(404, "tenant_not_found");
    srv.anon()
        .patch("/admin/tenants/kitchen", &json!({"name": "No token"}))
        .await
        .expect_error_status(401);

    let updated = admin
        .patch(
            "/admin/tenants/kitchen",
            &json!({"name": " Le Kitchen ", "timezone": "Europe/Paris", "country": "fr"}),
        )
        .await;
    let body = updated.expect(200);
    assert_eq!(body["name"], "Le Kitchen");
    assert_eq!(body["timezone"], "Europe/Paris");
    assert_eq!(body["country"], "FR");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["slug"], "kitchen");
    assert_eq!(body["created_at"], before["created_at"]);
    assert_eq!(tenant(&srv, "kitchen").await, *body, "the update is stored");

    // One field alone leaves the others.
    let renamed = admin
        .patch("/admin/tenants/kitchen", &json!({"name": "Kitchen 2"}))
        .await;
    assert_eq!(renamed.expect(200)["timezone"], "Europe/Paris");
}

async fn suspend_refuses_keys_closes_sockets_and_keeps_data(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;
    let till = srv.terminal(&kitchen);
    till.post(
        &format!("/loyalty/{}/add", enc(PHONE)),
        &json!({"points": 7}),
    )
    .await
    .expect(200);
    let mut socket = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    socket.hello().await;
    let mut bakery_socket = srv.ws("bakery", &bakery.terminal.key, None).await;
    bakery_socket.hello().await;
    till.get("/pos-status").await.expect(200);

    let suspended = srv
        .admin()
        .post("/admin/tenants/kitchen/suspend", &json!({}))
        .await;
    let at = suspended.expect(200)["suspended_at"]
        .as_str()
        .unwrap_or_else(|| panic!("suspended_at missing: {}", suspended.text))
        .to_owned();
    let code = socket.expect_close(CLOSE_WITHIN).await;
    assert_eq!(code, Some(4003), "the tenant's socket closes with 4003");

    for client in [srv.terminal(&kitchen), srv.manager(&kitchen)] {
        let refused = client.get("/pos-status").await;
        refused.expect_error(403, "tenant_suspended");
        assert!(
            refused.text.contains("suspended"),
            "says why: {}",
            refused.text
        );
    }
    let refused = srv
        .ws_connect(
            "/ws/pos/kitchen",
            &[
                ("X-API-Key", &kitchen.terminal.key),
                ("X-Tenant-ID", "kitchen"),
            ],
        )
        .await
        .expect_err("a suspended tenant's socket is refused");
    assert_eq!(ws_refusal_status(&refused), Some(403));
    // Suspending again changes nothing.
    let again = srv
        .admin()
        .post("/admin/tenants/kitchen/suspend", &json!({}))
        .await;
    assert_eq!(again.expect(200)["suspended_at"], at.as_str());
    assert_eq!(tenant(&srv, "kitchen").await["suspended_at"], at.as_str());

    // The other tenant carries on.
    srv.terminal(&bakery)
        .post(
            &format!("/loyalty/{}/add", enc(PHONE)),
            &json!({"points": 1}),
        )
        .await
        .expect(200);
    assert_eq!(bakery_socket.next_json().await["seq"], 1);

    let resumed = srv
        .admin()
        .post("/admin/tenants/kitchen/resume", &json!({}))
        .await;
    assert_eq!(resumed.expect(200)["suspended_at"], Value::Null);
    let points = till.get(&format!("/loyalty/{}/points", enc(PHONE))).await;
    assert_eq!(
        points.expect(200)["points"],
        7,
        "data kept through the suspension"
    );
    let mut socket = srv.ws("kitchen", &kitchen.terminal.key, Some(0)).await;
    socket.hello().await;
    till.post(
        &format!("/loyalty/{}/add", enc(PHONE)),
        &json!({"points": 1}),
    )
    .await
    .expect(200);
    let events = socket.collect(2).await;
    assert_eq!(
        events.iter().map(|e| e["seq"].as_i64()).collect::<Vec<_>>(),
        [Some(1), Some(2)],
        "the resumed tenant's stream resumes where it was"
    );

    let admin = srv.admin();
    admin
        .post("/admin/tenants/nowhere/suspend", &json!({}))
        .await
        .expect_error(404, "tenant_not_found");
    admin
        .post("/admin/tenants/nowhere/resume", &json!({}))
        .await
        .expect_error(404, "tenant_not_found");
}

/// Two hosts on one PostgreSQL database: suspending through host A closes the tenant's
/// socket on host B with 4003, and B refuses the key after.
#[tokio::test(flavor = "multi_thread")]
async fn suspension_on_one_host_closes_sockets_on_another_postgres() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let host_a = crate::start(Backend::Postgres).await;
    let host_b = host_a.start_sibling().await;
    let kitchen = host_a.setup_tenant("kitchen").await;
    let mut on_b = host_b.ws("kitchen", &kitchen.terminal.key, None).await;
    on_b.hello().await;
    host_b
        .terminal(&kitchen)
        .get("/pos-status")
        .await
        .expect(200);

    let asked = Instant::now();
    host_a
        .admin()
        .post("/admin/tenants/kitchen/suspend", &json!({}))
        .await
        .expect(200);
    let answered = asked.elapsed();
    let code = on_b.expect_close(CLOSE_WITHIN).await;
    let took = asked.elapsed();
    assert_eq!(
        code,
        Some(4003),
        "host B closes the suspended tenant's socket"
    );
    println!(
        "suspension on host A (answered after {answered:?}) closed a socket on host B \
         {took:?} after it was asked for"
    );
    host_b
        .terminal(&kitchen)
        .get("/pos-status")
        .await
        .expect_error(403, "tenant_suspended");

    host_b
        .admin()
        .post("/admin/tenants/kitchen/resume", &json!({}))
        .await
        .expect(200);
    host_a
        .terminal(&kitchen)
        .get("/pos-status")
        .await
        .expect(200);
}

/// Deletes a suspended tenant, trying again while a hook pass of it still holds its lease.
async fn delete_when_idle(srv: &TestServer, slug: &str) -> Value {
    eventually(Duration::from_secs(20), "the tenant's deletion", || async {
        let resp = srv.admin().delete(&format!("/admin/tenants/{slug}")).await;
        if resp.error_code() == Some("tenant_busy") {
            return None;
        }
        Some(resp.expect(200).clone())
    })
    .await
}

async fn delete_only_after_suspension_and_remove_everything(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;
    populate(&srv, &kitchen).await;
    populate(&srv, &bakery).await;
    let kitchen_id = tenant(&srv, "kitchen").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bakery_id = tenant(&srv, "bakery").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut db = connect_db(&srv).await;
    seed_background_rows(&mut db, &kitchen_id).await;
    seed_background_rows(&mut db, &bakery_id).await;

    let refused = srv.admin().delete("/admin/tenants/kitchen").await;
    refused.expect_error(409, "tenant_active");
    assert!(
        refused.text.contains("suspend it first"),
        "says what to do: {}",
        refused.text
    );
    srv.terminal(&kitchen).get("/pos-status").await.expect(200);
    srv.admin()
        .delete("/admin/tenants/nowhere")
        .await
        .expect_error(404, "tenant_not_found");

    srv.admin()
        .post("/admin/tenants/kitchen/suspend", &json!({}))
        .await
        .expect(200);
    let tables = schema(&mut db, backend).await;
    let kitchen_ids = owned_ids(&mut db, &tables, &kitchen_id).await;
    let bakery_ids = owned_ids(&mut db, &tables, &bakery_id).await;
    assert!(kitchen_ids.is_disjoint(&bakery_ids));
    let kitchen_before = census(&mut db, &tables, &kitchen_ids).await;
    let bakery_before = census(&mut db, &tables, &bakery_ids).await;
    let owning: Vec<&String> = kitchen_before
        .iter()
        .filter(|(_, (_, owned))| *owned > 0)
        .map(|(table, _)| table)
        .collect();
    for table in [
        "api_keys",
        "events",
        "customers",
        "loyalty_transactions",
        "gift_cards",
        "gift_card_transactions",
        "orders",
        "menus",
        "store_statuses",
        "daily_reports",
        "idempotency_keys",
        "integrations",
        "pos_transactions",
        "spend_rules",
        "tier_ladders",
        "performances",
        "hook_bindings",
        "webhook_inbox",
        "webhook_events_seen",
        "sync_runs",
        "dead_letters",
        "plugin_state",
        "tenants",
    ] {
        assert!(
            owning.iter().any(|t| *t == table),
            "the fixture puts rows of the tenant in {table}: {owning:?}"
        );
    }

    let deletion = delete_when_idle(&srv, "kitchen").await;
    assert_eq!(deletion["slug"], "kitchen");
    assert_eq!(deletion["deleted"]["tenants"], 1);

    let kitchen_after = census(&mut db, &tables, &kitchen_ids).await;
    for (table, (total, owned)) in &kitchen_after {
        assert_eq!(*owned, 0, "rows of the deleted tenant remain in {table}");
        let (total_before, owned_before) = kitchen_before[table];
        assert_eq!(
            *total,
            total_before - owned_before,
            "only the deleted tenant's rows left {table}"
        );
    }
    // Every row naming the other tenant is still there (its totals shrank by the deleted
    // tenant's rows alone, checked above).
    let owned_by = |census: &BTreeMap<String, (i64, i64)>| {
        census
            .iter()
            .map(|(table, (_, owned))| (table.clone(), *owned))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        owned_by(&census(&mut db, &tables, &bakery_ids).await),
        owned_by(&bakery_before),
        "the other tenant's rows are all there"
    );
    let balance = crate::balance(&srv.terminal(&bakery), "CARD-1").await;
    assert_eq!(balance, 1000);
    srv.terminal(&kitchen)
        .get("/pos-status")
        .await
        .expect_error_status(401);
    srv.admin()
        .get("/admin/tenants/kitchen")
        .await
        .expect_error(404, "tenant_not_found");

    // The slug is free again, for a new and empty tenant.
    let reborn = srv.setup_tenant("kitchen").await;
    assert_ne!(tenant(&srv, "kitchen").await["id"], kitchen_id.as_str());
    srv.terminal(&reborn)
        .get(&format!("/gift-cards/{}/balance", enc("CARD-1")))
        .await
        .expect_error_status(404);
    assert_eq!(crate::last_seq(&srv.terminal(&reborn)).await, 0);
}

async fn the_cli_manages_a_tenants_life(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let mut socket = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    socket.hello().await;

    let updated = srv
        .cli(&[
            "tenant",
            "update",
            "kitchen",
            "--name",
            "Le Kitchen",
            "--time-zone",
            "Europe/Paris",
            "--country",
            "FR",
        ])
        .await
        .json();
    assert_eq!(
        (&updated["name"], &updated["timezone"], &updated["country"]),
        (&json!("Le Kitchen"), &json!("Europe/Paris"), &json!("FR"))
    );
    let bad = srv
        .cli(&["tenant", "update", "kitchen", "--time-zone", "Mars/Olympus"])
        .await;
    assert!(!bad.status.success(), "a bad zone fails");
    assert!(
        bad.stderr.contains("Mars/Olympus"),
        "and says why: {}",
        bad.stderr
    );
    assert_eq!(tenant(&srv, "kitchen").await["timezone"], "Europe/Paris");
    let missing = srv
        .cli(&["tenant", "update", "nowhere", "--name", "X"])
        .await;
    assert!(!missing.status.success() && missing.stderr.contains("nowhere"));

    let active = srv.cli(&["tenant", "delete", "kitchen", "--yes"]).await;
    assert!(!active.status.success(), "an active tenant is not deleted");
    assert!(
        active.stderr.contains("suspend it first"),
        "{}",
        active.stderr
    );

    // The CLI has no server to tell: the running host finds the suspension itself.
    let started = Instant::now();
    let suspended = srv.cli(&["tenant", "suspend", "kitchen"]).await.json();
    let cli_took = started.elapsed();
    assert!(suspended["suspended_at"].is_string());
    assert_eq!(socket.expect_close(CLOSE_WITHIN).await, Some(4003));
    println!(
        "{backend:?}: `tenant suspend` took {cli_took:?}; the socket closed {:?} after it started",
        started.elapsed()
    );
    eventually(Duration::from_secs(5), "the key refused", || async {
        let resp = srv.terminal(&kitchen).get("/pos-status").await;
        (resp.error_code() == Some("tenant_suspended")).then_some(())
    })
    .await;

    let resumed = srv.cli(&["tenant", "resume", "kitchen"]).await.json();
    assert_eq!(resumed["suspended_at"], Value::Null);
    eventually(Duration::from_secs(5), "the key accepted again", || async {
        (srv.terminal(&kitchen).get("/pos-status").await.status == 200).then_some(())
    })
    .await;

    srv.cli(&["tenant", "suspend", "kitchen"]).await.json();
    let unconfirmed = srv.cli(&["tenant", "delete", "kitchen"]).await;
    assert!(!unconfirmed.status.success(), "no deletion without --yes");
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    tenant(&srv, "kitchen").await;
    let deleted = srv
        .cli(&["tenant", "delete", "kitchen", "--yes"])
        .await
        .json();
    assert_eq!(deleted["deleted"]["tenants"], 1);
    assert!(deleted["deleted"]["api_keys"].as_u64() >= Some(2));
    let listed = srv.cli(&["tenant", "list"]).await.json();
    assert_eq!(listed, json!([]), "nothing of the tenant is listed");
}

both_backends!(
    update_changes_only_what_is_valid,
    suspend_refuses_keys_closes_sockets_and_keeps_data,
    delete_only_after_suspension_and_remove_everything,
    the_cli_manages_a_tenants_life,
);
