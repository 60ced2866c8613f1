//! Operator API (tenants, keys) and the CLI bootstrap path.

use std::time::Duration;

use posbridge_harness::{both_backends, eventually, parse_rfc3339, ApiKey, Backend, TestServer};
use serde_json::{json, Value};

fn tenant(slug: &str) -> Value {
    json!({"slug": slug, "name": "The Kitchen", "currency": "USD", "timezone": "America/New_York"})
}

async fn tenant_admin(backend: Backend) {
    let srv = crate::start(backend).await;
    let admin = srv.admin();

    // No operator token, or a wrong one: 401, nothing created.
    srv.anon()
        .post("/admin/tenants", &tenant("kitchen"))
        .await
        .expect_error(401, "unauthorized");
    srv.anon()
        .with_header("Authorization", "Bearer not-the-token")
        .post("/admin/tenants", &tenant("kitchen"))
        .await
        .expect_error(401, "unauthorized");
    srv.anon()
        .get("/admin/tenants")
        .await
        .expect_error(401, "unauthorized");
    let listed = admin.get("/admin/tenants").await;
    assert_eq!(listed.expect(200)["tenants"], json!([]), "{}", listed.text);

    let created = admin.post("/admin/tenants", &tenant("kitchen")).await;
    let t = created.expect(201);
    assert_eq!(t["slug"], "kitchen");
    assert_eq!(t["name"], "The Kitchen");
    assert_eq!(t["currency"], "USD");
    assert_eq!(t["timezone"], "America/New_York");
    assert_eq!(t["country"], "US", "country defaults to US: {t}");
    assert!(t["id"].as_str().is_some_and(|s| !s.is_empty()), "{t}");
    parse_rfc3339(t["created_at"].as_str().expect("created_at"));

    // Duplicate slug.
    admin
        .post("/admin/tenants", &tenant("kitchen"))
        .await
        .expect_error(409, "tenant_exists");

    // Invalid slug / currency / timezone → 422 invalid_tenant.
    for bad in [
        json!({"slug": "Bad Slug!", "name": "x", "currency": "USD", "timezone": "America/New_York"}),
        json!({"slug": "UPPER", "name": "x", "currency": "USD", "timezone": "America/New_York"}),
        json!({"slug": "a".repeat(64), "name": "x", "currency": "USD", "timezone": "America/New_York"}),
        json!({"slug": "", "name": "x", "currency": "USD", "timezone": "America/New_York"}),
        json!({"slug": "ok-slug", "name": "x", "currency": "DOLLARS", "timezone": "America/New_York"}),
        json!({"slug": "ok-slug", "name": "x", "currency": "USD", "timezone": "Mars/Olympus_Mons"}),
    ] {
        admin
            .post("/admin/tenants", &bad)
            .await
            .expect_error(422, "invalid_tenant");
    }

    // A second tenant with an explicit country; a 63-character slug is fine.
    let long_slug = format!("b{}", "-x".repeat(31));
    assert_eq!(long_slug.len(), 63);
    let ca = admin
        .post(
            "/admin/tenants",
            &json!({"slug": long_slug, "name": "Bakery", "currency": "CAD", "timezone": "America/Toronto", "country": "CA"}),
        )
        .await;
    assert_eq!(ca.expect(201)["country"], "CA");

    let listed = admin.get("/admin/tenants").await;
    let mut slugs: Vec<&str> = listed.expect(200)["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|t| t["slug"].as_str().expect("slug"))
        .collect();
    slugs.sort_unstable();
    assert_eq!(
        slugs,
        vec![long_slug.as_str(), "kitchen"],
        "only the two valid tenants exist"
    );

    let got = admin.get("/admin/tenants/kitchen").await;
    assert_eq!(got.expect(200)["slug"], "kitchen");
    assert_eq!(got.body["id"], t["id"]);
    admin
        .get("/admin/tenants/nope")
        .await
        .expect_error(404, "tenant_not_found");
    srv.anon()
        .get("/admin/tenants/kitchen")
        .await
        .expect_error(401, "unauthorized");
}

/// A server with tenant `kitchen` holding terminal key "till 1" (created through the admin
/// API; its answer kept) and manager key "cloud".
struct Keyed {
    srv: TestServer,
    admin: posbridge_harness::Client,
    terminal: Value,
    terminal_id: String,
    terminal_key: String,
    manager: ApiKey,
}

async fn keyed(backend: Backend) -> Keyed {
    let srv = crate::start(backend).await;
    let admin = srv.admin();
    srv.create_tenant("kitchen").await;
    let created = admin
        .post(
            "/admin/tenants/kitchen/keys",
            &json!({"role": "terminal", "label": "till 1"}),
        )
        .await;
    let terminal = created.expect(201).clone();
    let terminal_id = terminal["id"].as_str().expect("id").to_owned();
    let terminal_key = terminal["key"].as_str().expect("key").to_owned();
    let manager = srv.create_key("kitchen", "manager", "cloud").await;
    Keyed {
        srv,
        admin,
        terminal,
        terminal_id,
        terminal_key,
        manager,
    }
}

/// Revokes the terminal key of `k`, asserting 204.
async fn revoke_terminal(k: &Keyed) {
    let revoked = k
        .admin
        .delete(&format!("/admin/tenants/kitchen/keys/{}", k.terminal_id))
        .await;
    revoked.expect(204);
}

async fn key_routes_refuse_anonymous_callers_unknown_roles_and_unknown_tenants(backend: Backend) {
    let k = keyed(backend).await;
    let (srv, admin) = (&k.srv, &k.admin);
    srv.anon()
        .post(
            "/admin/tenants/kitchen/keys",
            &json!({"role": "terminal", "label": "till 1"}),
        )
        .await
        .expect_error(401, "unauthorized");
    admin
        .post(
            "/admin/tenants/kitchen/keys",
            &json!({"role": "admin", "label": "x"}),
        )
        .await
        .expect_error(422, "invalid_request");
    admin
        .post(
            "/admin/tenants/nope/keys",
            &json!({"role": "terminal", "label": "x"}),
        )
        .await
        .expect_error(404, "tenant_not_found");
    srv.anon()
        .get("/admin/tenants/kitchen/keys")
        .await
        .expect_error(401, "unauthorized");
    srv.anon()
        .delete(&format!("/admin/tenants/kitchen/keys/{}", k.terminal_id))
        .await
        .expect_error(401, "unauthorized");
    admin
        .delete("/admin/tenants/kitchen/keys/no-such-key")
        .await
        .expect_error_status(404);
    // None of that touched the key.
    let till = srv.tenant_client("kitchen", &k.terminal_key);
    till.get("/health").await.expect(200);
}

async fn a_created_key_is_a_long_secret_with_its_role_and_label(backend: Backend) {
    let k = keyed(backend).await;
    assert_eq!(k.terminal["role"], "terminal");
    assert_eq!(k.terminal["label"], "till 1");
    parse_rfc3339(k.terminal["created_at"].as_str().expect("created_at"));
    assert!(
        k.terminal_key.len() >= 20,
        "keys must be long secrets: {}",
        k.terminal_key
    );
    assert_ne!(k.manager.key, k.terminal_key);
    // Both keys work.
    let till = k.srv.tenant_client("kitchen", &k.terminal_key);
    till.get("/health").await.expect(200);
    health_ok(&k.srv, "kitchen", &k.manager.key).await;
}

async fn a_tenant_key_is_not_an_operator_token(backend: Backend) {
    let k = keyed(backend).await;
    k.srv
        .anon()
        .with_header("Authorization", &format!("Bearer {}", k.manager.key))
        .get("/admin/tenants")
        .await
        .expect_error(401, "unauthorized");
}

async fn listing_keys_shows_their_prefixes_never_their_secrets(backend: Backend) {
    let Keyed {
        srv: _srv,
        admin,
        terminal_id,
        terminal_key,
        manager,
        ..
    } = keyed(backend).await;
    let listed = admin.get("/admin/tenants/kitchen/keys").await;
    let keys = listed.expect(200)["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 2, "{}", listed.text);
    assert!(
        !listed.text.contains(&terminal_key),
        "listing leaks a key: {}",
        listed.text
    );
    assert!(
        !listed.text.contains(&manager.key),
        "listing leaks a key: {}",
        listed.text
    );
    for k in &keys {
        assert!(k.get("key").is_none(), "listing has a key field: {k}");
        assert_eq!(k["revoked_at"], Value::Null);
        let prefix = k["prefix"].as_str().expect("prefix");
        let secret = if k["id"] == terminal_id.as_str() {
            assert_eq!(k["role"], "terminal");
            assert_eq!(k["label"], "till 1");
            &terminal_key
        } else {
            assert_eq!(k["id"], manager.id.as_str());
            assert_eq!(k["role"], "manager");
            assert_eq!(k["label"], "cloud");
            &manager.key
        };
        assert!(
            !prefix.is_empty() && prefix.len() < secret.len() && secret.starts_with(prefix),
            "prefix {prefix:?} must be a proper prefix of the key"
        );
    }
}

async fn a_revoked_key_stops_working_at_once_and_stays_listed(backend: Backend) {
    let k = keyed(backend).await;
    let till = k.srv.tenant_client("kitchen", &k.terminal_key);
    till.get("/health").await.expect(200);
    revoke_terminal(&k).await;
    till.get("/health").await.expect_error(401, "unauthorized");
    k.srv
        .bearer_client("kitchen", &k.terminal_key)
        .get("/health")
        .await
        .expect_error(401, "unauthorized");
    health_ok(&k.srv, "kitchen", &k.manager.key).await;

    let listed = k.admin.get("/admin/tenants/kitchen/keys").await;
    let keys = listed.expect(200)["keys"].as_array().expect("keys").clone();
    let revoked = keys
        .iter()
        .find(|key| key["id"] == k.terminal_id.as_str())
        .expect("revoked key still listed");
    parse_rfc3339(revoked["revoked_at"].as_str().expect("revoked_at set"));
    let live = keys
        .iter()
        .find(|key| key["id"] == k.manager.id.as_str())
        .expect("manager key listed");
    assert_eq!(live["revoked_at"], Value::Null);
}

/// `last_used_at` of the key `id` as the operator lists it.
async fn last_used(k: &Keyed, id: &str) -> Value {
    let listed = k.admin.get("/admin/tenants/kitchen/keys").await;
    let keys = listed.expect(200)["keys"].as_array().expect("keys").clone();
    keys.iter()
        .find(|key| key["id"] == id)
        .unwrap_or_else(|| panic!("key {id} not listed: {}", listed.text))["last_used_at"]
        .clone()
}

/// A key's last use is listed once it made a request, within the time of that request; the
/// database is written at most once a minute per key, so further requests in the same
/// minute leave it as it was; each key has its own.
async fn a_key_s_last_use_is_listed_and_written_at_most_once_a_minute(backend: Backend) {
    let k = keyed(backend).await;
    assert_eq!(last_used(&k, &k.terminal_id).await, Value::Null);
    assert_eq!(last_used(&k, &k.manager.id).await, Value::Null);
    let till = k.srv.tenant_client("kitchen", &k.terminal_key);
    let before = posbridge_harness::jiff::Timestamp::now();
    till.get("/health").await.expect(200);
    let after = posbridge_harness::jiff::Timestamp::now();
    // The write happens beside the request, not in it.
    let first = eventually(
        Duration::from_secs(10),
        "the terminal key's last use",
        || async {
            last_used(&k, &k.terminal_id)
                .await
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    let at = parse_rfc3339(&first);
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    // The operator's listing is no use of a tenant key.
    assert_eq!(last_used(&k, &k.manager.id).await, Value::Null);
    for _ in 0..5 {
        till.get("/health").await.expect(200);
    }
    health_ok(&k.srv, "kitchen", &k.manager.key).await;
    let manager_use = eventually(
        Duration::from_secs(10),
        "the manager key's last use",
        || async {
            last_used(&k, &k.manager.id)
                .await
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert!(parse_rfc3339(&manager_use) >= at);
    // The manager's use was written after the terminal's repeated ones were (or were not):
    // within the minute, the terminal key's stays the first.
    assert_eq!(last_used(&k, &k.terminal_id).await, json!(first));
}

async fn key_secrets_never_reach_the_log(backend: Backend) {
    let k = keyed(backend).await;
    // Use, list and revoke the keys first, so the log has had every chance to see them.
    k.srv
        .tenant_client("kitchen", &k.terminal_key)
        .get("/health")
        .await
        .expect(200);
    health_ok(&k.srv, "kitchen", &k.manager.key).await;
    k.admin.get("/admin/tenants/kitchen/keys").await.expect(200);
    revoke_terminal(&k).await;
    k.srv
        .bearer_client("kitchen", &k.terminal_key)
        .get("/health")
        .await
        .expect_error(401, "unauthorized");
    let logs = k.srv.logs();
    for secret in [
        &k.terminal_key,
        &k.manager.key,
        &k.srv.operator_token().to_owned(),
    ] {
        assert!(
            !logs.contains(secret.as_str()),
            "the server log contains a secret"
        );
    }
}

async fn health_ok(srv: &TestServer, slug: &str, key: &str) {
    let resp = srv.tenant_client(slug, key).get("/health").await;
    assert_eq!(resp.expect(200)["tenant"], slug);
}

async fn cli_bootstrap(backend: Backend) {
    let srv = crate::start(backend).await;

    let tenant = srv
        .cli(&[
            "tenant",
            "create",
            "--slug",
            "cli-shop",
            "--name",
            "CLI Shop",
            "--currency",
            "EUR",
            "--timezone",
            "Europe/Berlin",
            "--country",
            "DE",
        ])
        .await
        .json();
    assert_eq!(tenant["slug"], "cli-shop");
    assert_eq!(tenant["currency"], "EUR");
    assert_eq!(tenant["country"], "DE");

    // Same slug again fails.
    let dup = srv
        .cli(&[
            "tenant",
            "create",
            "--slug",
            "cli-shop",
            "--name",
            "Again",
            "--currency",
            "EUR",
            "--timezone",
            "Europe/Berlin",
        ])
        .await;
    assert!(!dup.status.success(), "duplicate slug must fail: {dup:?}");

    let manager = srv
        .cli(&[
            "key",
            "create",
            "--tenant",
            "cli-shop",
            "--role",
            "manager",
            "--label",
            "back office",
        ])
        .await
        .json();
    let terminal = srv
        .cli(&[
            "key", "create", "--tenant", "cli-shop", "--role", "terminal", "--label", "till",
        ])
        .await
        .json();
    let manager_key = manager["key"].as_str().expect("manager key").to_owned();
    let terminal_key = terminal["key"].as_str().expect("terminal key").to_owned();
    let terminal_id = terminal["id"].as_str().expect("terminal key id").to_owned();
    assert_eq!(manager["role"], "manager");
    assert_eq!(terminal["label"], "till");

    // The running server sees the tenant and accepts the keys.
    let got = srv.admin().get("/admin/tenants/cli-shop").await;
    assert_eq!(got.expect(200)["currency"], "EUR");
    let health = srv
        .tenant_client("cli-shop", &terminal_key)
        .get("/health")
        .await;
    assert_eq!(health.expect(200)["tenant"], "cli-shop");
    let card = srv
        .tenant_client("cli-shop", &manager_key)
        .post("/gift-cards", &json!({"amount": 500}))
        .await;
    assert_eq!(
        card.expect(201)["balance"],
        json!({"amount": 500, "currency": "EUR"})
    );

    let list = srv.cli(&["tenant", "list"]).await;
    assert!(list.status.success(), "{list:?}");
    assert!(list.stdout.contains("cli-shop"), "{list:?}");

    let keys = srv.cli(&["key", "list", "--tenant", "cli-shop"]).await;
    assert!(keys.status.success(), "{keys:?}");
    assert!(keys.stdout.contains(&terminal_id), "{keys:?}");
    assert!(
        !keys.stdout.contains(&terminal_key) && !keys.stdout.contains(&manager_key),
        "key list leaks secrets: {}",
        keys.stdout
    );

    let revoke = srv
        .cli(&[
            "key",
            "revoke",
            "--tenant",
            "cli-shop",
            "--id",
            &terminal_id,
        ])
        .await;
    assert!(revoke.status.success(), "{revoke:?}");
    let till = srv.tenant_client("cli-shop", &terminal_key);
    eventually(
        Duration::from_secs(10),
        "the CLI-revoked key to be refused",
        || async { (till.get("/health").await.status == 401).then_some(()) },
    )
    .await;
    srv.tenant_client("cli-shop", &manager_key)
        .get("/health")
        .await
        .expect(200);
    let logs = srv.logs();
    assert!(
        !logs.contains(&manager_key) && !logs.contains(&terminal_key),
        "a key reached the server log or the CLI's stderr"
    );
}

both_backends!(
    tenant_admin,
    key_routes_refuse_anonymous_callers_unknown_roles_and_unknown_tenants,
    a_created_key_is_a_long_secret_with_its_role_and_label,
    a_tenant_key_is_not_an_operator_token,
    listing_keys_shows_their_prefixes_never_their_secrets,
    a_revoked_key_stops_working_at_once_and_stays_listed,
    a_key_s_last_use_is_listed_and_written_at_most_once_a_minute,
    key_secrets_never_reach_the_log,
    cli_bootstrap,
);
