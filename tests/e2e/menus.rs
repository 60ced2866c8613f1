//! Venue menus, availability (86) and store status: the ETag and 304, `menu_updated`,
//! `item_availability_changed` and `store_status_changed` on the socket, refusals that
//! change nothing, the order check, roles and tenant isolation. One test per behaviour,
//! each on a fresh server.

use posbridge_harness::reqwest::Method;
use posbridge_harness::{
    both_backends, parse_rfc3339, Backend, Body, Client, TenantKeys, TestServer, Ws,
};
use serde_json::{json, Value};

use crate::{last_seq, metric_value};

/// A small menu: a burger (single, double) with a required sauce (pick 1-2) and optional
/// extras; fries with one size.
fn menu_body() -> Value {
    json!({
        "categories": [{"id": "mains", "provider_id": "T-mains", "name": "Mains"}],
        "items": [
            {
                "id": "burger", "provider_id": "T-burger", "name": "Burger",
                "description": "Two patties if you ask",
                "category_ids": ["mains"],
                "variations": [
                    {"id": "single", "name": "Single", "price": 900},
                    {"id": "double", "name": "Double", "price": 1300}
                ],
                "modifier_group_ids": ["sauce", "extras"],
                "tax": {"name": "Sales tax", "percentage": "8.875", "inclusive": false}
            },
            {
                "id": "fries", "name": "Fries",
                "variations": [{"id": "fries-regular", "name": "Regular", "price": 400}]
            }
        ],
        "modifier_groups": [
            {
                "id": "sauce", "name": "Sauce", "min_selected": 1, "max_selected": 2,
                "required": true,
                "options": [
                    {"id": "ketchup", "name": "Ketchup"},
                    {"id": "mayo", "name": "Mayo"},
                    {"id": "bbq", "name": "BBQ", "price": 50}
                ]
            },
            {
                "id": "extras", "name": "Extras",
                "options": [
                    {"id": "cheese", "name": "Cheese", "price": 100},
                    {"id": "bacon", "name": "Bacon", "price": 200}
                ]
            }
        ]
    })
}

/// A server with tenant `kitchen`: its manager (publishes menus) and its till.
async fn kitchen(backend: Backend) -> (TestServer, Client, Client) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    (srv, manager, till)
}

/// `kitchen`'s till key, for its socket.
async fn till_socket_key(srv: &TestServer) -> String {
    srv.create_key("kitchen", "terminal", "kitchen screen")
        .await
        .key
}

/// Publishes [`menu_body`] for venue `main`, asserting 200; returns the answer.
async fn publish(manager: &Client) -> Value {
    manager
        .put("/menus/main", &menu_body())
        .await
        .expect(200)
        .clone()
}

/// `GET /menus/main` with `If-None-Match: etag`.
async fn get_if_none_match(client: &Client, etag: &str) -> posbridge_harness::Resp {
    client
        .send(
            Method::GET,
            "/menus/main",
            Body::None,
            &[("If-None-Match", etag)],
        )
        .await
}

/// A kitchen screen's socket (a terminal key of its own), replaying from `since` so no
/// event written after it can be missed.
async fn socket(srv: &TestServer, since: i64) -> Ws {
    let key = till_socket_key(srv).await;
    let mut ws = srv.ws("kitchen", &key, Some(since)).await;
    ws.hello().await;
    ws
}

/// `POST /menus/main/order-check` with `lines`.
async fn check(client: &Client, lines: Value) -> posbridge_harness::Resp {
    client
        .post("/menus/main/order-check", &json!({ "lines": lines }))
        .await
}

async fn a_menu_is_served_with_its_etag_and_a_304_while_unchanged(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    till.get("/menus/main")
        .await
        .expect_error(404, "menu_not_found");
    let meta = publish(&manager).await;
    assert_eq!(meta["venue"], "main");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["items"], 2);
    assert_eq!(meta["categories"], 1);
    assert_eq!(meta["modifier_groups"], 2);
    parse_rfc3339(meta["updated_at"].as_str().expect("updated_at"));
    let etag = meta["etag"].as_str().expect("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let got = till.get("/menus/main").await;
    let menu = got.expect(200);
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert_eq!(menu["venue"], "main");
    assert_eq!(menu["currency"], "USD");
    assert_eq!(menu["version"], 1);
    assert_eq!(menu["items"][0]["variations"][1]["price"], 1300);
    assert_eq!(menu["items"][0]["tax"]["percentage"], "8.875");
    assert_eq!(menu["items"][1]["sold_out"], false);
    assert_eq!(menu["modifier_groups"][0]["options"][2]["price"], 50);
    assert_eq!(menu["modifier_groups"][1]["min_selected"], 0);
    assert_eq!(menu["categories"], menu_body()["categories"]);

    let not_modified = get_if_none_match(&till, &etag).await;
    assert_eq!(not_modified.status, 304, "{}", not_modified.text);
    assert!(not_modified.text.is_empty(), "{}", not_modified.text);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    // A list naming it, and the weak form of it, match too; another tag does not.
    let listed = get_if_none_match(&till, &format!("\"stale\", W/{etag}")).await;
    assert_eq!(listed.status, 304, "{}", listed.text);
    let other = get_if_none_match(&till, "\"stale\"").await;
    assert_eq!(other.expect(200), menu);

    // The same menu again changes nothing: same version and ETag, no event.
    let seq = last_seq(&till).await;
    let again = publish(&manager).await;
    assert_eq!(again["version"], 1);
    assert_eq!(again["etag"], etag.as_str());
    assert_eq!(
        last_seq(&till).await,
        seq,
        "an unchanged menu emits nothing"
    );
}

async fn an_update_changes_the_etag_and_reaches_terminals_as_menu_updated(backend: Backend) {
    let (srv, manager, till) = kitchen(backend).await;
    let mut ws = socket(&srv, last_seq(&till).await).await;
    let first = publish(&manager).await;
    let event = ws.next_json().await;
    assert_eq!(event["type"], "menu_updated", "{event}");
    assert_eq!(event["data"], first);

    let mut changed = menu_body();
    changed["items"][1]["variations"][0]["price"] = json!(450);
    let second = manager.put("/menus/main", &changed).await;
    let second = second.expect(200).clone();
    assert_eq!(second["version"], 2);
    assert_ne!(second["etag"], first["etag"]);
    let event = ws.next_json().await;
    assert_eq!(event["type"], "menu_updated", "{event}");
    assert_eq!(event["data"], second);

    // A terminal holding the old ETag gets the new document.
    let old = first["etag"].as_str().expect("etag");
    let fresh = get_if_none_match(&till, old).await;
    assert_eq!(fresh.expect(200)["items"][1]["variations"][0]["price"], 450);
    assert_eq!(fresh.body["version"], 2);
    assert_eq!(fresh.header("etag"), second["etag"].as_str());
}

async fn an_invalid_menu_is_refused_by_path_and_nothing_is_stored(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    // Invalid from the start: the venue stays without a menu.
    let mut dangling = menu_body();
    dangling["items"][0]["modifier_group_ids"] = json!(["sauce", "toppings"]);
    dangling["items"][1]["id"] = json!("burger");
    let refused = manager.put("/menus/main", &dangling).await;
    refused.expect_error(422, "invalid_menu");
    let message = refused.body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("items[0].modifier_group_ids[1]") && message.contains("items[1].id"),
        "{message}"
    );
    till.get("/menus/main")
        .await
        .expect_error(404, "menu_not_found");

    let stored = publish(&manager).await;
    let seq = last_seq(&till).await;
    let mut negative = menu_body();
    negative["items"][0]["variations"][1]["price"] = json!(-5);
    let refused = manager.put("/menus/main", &negative).await;
    refused.expect_error(422, "invalid_menu");
    assert!(
        refused.text.contains("items[0].variations[1].price"),
        "{}",
        refused.text
    );
    let mut unbounded = menu_body();
    unbounded["modifier_groups"][0]["min_selected"] = json!(3);
    manager
        .put("/menus/main", &unbounded)
        .await
        .expect_error(422, "invalid_menu");
    let mut unknown_field = menu_body();
    unknown_field["items"][1]["colour"] = json!("gold");
    manager
        .put("/menus/main", &unknown_field)
        .await
        .expect_error(422, "invalid_menu");
    manager
        .send(
            Method::PUT,
            "/menus/main",
            Body::raw_json("{\"items\": ["),
            &[],
        )
        .await
        .expect_error(400, "invalid_json");
    manager
        .put(&format!("/menus/{}", "v".repeat(101)), &menu_body())
        .await
        .expect_error(422, "invalid_venue");
    // Over 16 MiB: 413 saying the menu limit. Other menu routes keep the host-wide 1 MiB.
    let huge = format!(
        "{{\"items\": [], \"categories\": [{{\"id\": \"c\", \"name\": \"{}\"}}]}}",
        "x".repeat(16 * 1024 * 1024)
    );
    let too_large = manager
        .send(Method::PUT, "/menus/main", Body::raw_json(huge), &[])
        .await;
    too_large.expect_error(413, "payload_too_large");
    assert!(too_large.text.contains("16777216"), "{}", too_large.text);
    let long_id = format!(
        "{{\"changes\": [{{\"kind\": \"item\", \"id\": \"{}\", \"sold_out\": true}}]}}",
        "x".repeat(1024 * 1024)
    );
    manager
        .send(
            Method::POST,
            "/menus/main/availability",
            Body::raw_json(long_id),
            &[],
        )
        .await
        .expect_error(413, "payload_too_large");

    let got = till.get("/menus/main").await;
    assert_eq!(got.expect(200)["version"], 1);
    assert_eq!(got.header("etag"), stored["etag"].as_str());
    assert_eq!(got.body["items"][0]["variations"][1]["price"], 1300);
    assert_eq!(last_seq(&till).await, seq, "refused menus emit nothing");
}

async fn availability_changes_are_pushed_and_served(backend: Backend) {
    let (srv, manager, till) = kitchen(backend).await;
    till.post(
        "/menus/main/availability",
        &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": true}]}),
    )
    .await
    .expect_error(404, "menu_not_found");
    let published = publish(&manager).await;
    let mut ws = socket(&srv, last_seq(&till).await).await;

    let answer = till
        .post(
            "/menus/main/availability",
            &json!({"changes": [
                {"kind": "item", "id": "fries", "sold_out": true},
                {"kind": "variation", "id": "double", "sold_out": true},
                {"kind": "option", "id": "bbq", "sold_out": true},
                {"kind": "option", "id": "mayo", "sold_out": false}
            ]}),
        )
        .await;
    let answer = answer.expect(200).clone();
    assert_eq!(answer["version"], 2);
    assert_ne!(answer["etag"], published["etag"]);
    assert_eq!(
        answer["changes"],
        json!([
            {"kind": "item", "id": "fries", "sold_out": true},
            {"kind": "variation", "id": "double", "item_id": "burger", "sold_out": true},
            {"kind": "option", "id": "bbq", "sold_out": true}
        ]),
        "mayo was already available"
    );
    let event = ws.next_json().await;
    assert_eq!(event["type"], "item_availability_changed", "{event}");
    assert_eq!(event["data"], answer);

    let got = till.get("/menus/main").await;
    let menu = got.expect(200);
    assert_eq!(got.header("etag"), answer["etag"].as_str());
    assert_eq!(menu["version"], 2);
    assert_eq!(menu["items"][1]["sold_out"], true);
    assert_eq!(menu["items"][0]["sold_out"], false);
    assert_eq!(menu["items"][0]["variations"][1]["sold_out"], true);
    assert_eq!(menu["modifier_groups"][0]["options"][2]["sold_out"], true);

    // An unknown id refuses the whole request: fries do not come back.
    let seq = last_seq(&till).await;
    let refused = till
        .post(
            "/menus/main/availability",
            &json!({"changes": [
                {"kind": "item", "id": "fries", "sold_out": false},
                {"kind": "option", "id": "gravy", "sold_out": true}
            ]}),
        )
        .await;
    refused.expect_error(422, "unknown_menu_entry");
    assert!(refused.text.contains("changes[1]"), "{}", refused.text);
    till.post("/menus/main/availability", &json!({"changes": []}))
        .await
        .expect_error(422, "invalid_availability");
    till.post(
        "/menus/main/availability",
        &json!({"changes": [{"kind": "category", "id": "mains", "sold_out": true}]}),
    )
    .await
    .expect_error(422, "invalid_request");
    // Already so: 200, nothing listed, no event, same ETag.
    let same = till
        .post(
            "/menus/main/availability",
            &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": true}]}),
        )
        .await;
    assert_eq!(same.expect(200)["changes"], json!([]));
    assert_eq!(same.body["etag"], answer["etag"]);
    assert_eq!(last_seq(&till).await, seq);
    let unchanged = get_if_none_match(&till, answer["etag"].as_str().expect("etag")).await;
    assert_eq!(unchanged.status, 304, "{}", unchanged.text);

    // The back office re-publishes its menu with a new price: what the floor 86'd stays
    // so, unless the menu states otherwise (the double is back).
    let mut repriced = menu_body();
    repriced["items"][1]["variations"][0]["price"] = json!(450);
    repriced["items"][0]["variations"][1]["sold_out"] = json!(false);
    let republished = manager.put("/menus/main", &repriced).await;
    assert_eq!(republished.expect(200)["version"], 3);
    let event = ws.next_json().await;
    assert_eq!(event["type"], "menu_updated", "{event}");
    let menu = till.get("/menus/main").await.expect(200).clone();
    assert_eq!(menu["items"][1]["variations"][0]["price"], 450);
    assert_eq!(menu["items"][1]["sold_out"], true);
    assert_eq!(menu["items"][0]["variations"][1]["sold_out"], false);
    assert_eq!(menu["modifier_groups"][0]["options"][2]["sold_out"], true);

    // The manager brings the fries back.
    let back = manager
        .post(
            "/menus/main/availability",
            &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": false}]}),
        )
        .await;
    assert_eq!(back.expect(200)["version"], 4);
    let event = ws.next_json().await;
    assert_eq!(event["type"], "item_availability_changed", "{event}");
    assert_eq!(event["data"]["changes"][0]["sold_out"], false);
    assert_eq!(
        till.get("/menus/main").await.expect(200)["items"][1]["sold_out"],
        false
    );
}

async fn store_status_is_set_read_and_pushed(backend: Backend) {
    let (srv, manager, till) = kitchen(backend).await;
    let initial = till.get("/venues/main/store-status").await;
    assert_eq!(
        initial.expect(200),
        &json!({"venue": "main", "status": "open"}),
        "a venue never set is open"
    );
    let mut ws = socket(&srv, last_seq(&till).await).await;

    let busy = till
        .put(
            "/venues/main/store-status",
            &json!({"status": "busy", "extra_prep_minutes": 20}),
        )
        .await;
    let busy = busy.expect(200).clone();
    assert_eq!(busy["status"], "busy");
    assert_eq!(busy["extra_prep_minutes"], 20);
    parse_rfc3339(busy["updated_at"].as_str().expect("updated_at"));
    let event = ws.next_json().await;
    assert_eq!(event["type"], "store_status_changed", "{event}");
    assert_eq!(event["data"], busy);
    assert_eq!(
        till.get("/venues/main/store-status").await.expect(200),
        &busy
    );

    // Refusals change nothing.
    let seq = last_seq(&till).await;
    for (body, code) in [
        (json!({"status": "busy"}), "invalid_store_status"),
        (
            json!({"status": "busy", "extra_prep_minutes": 241}),
            "invalid_store_status",
        ),
        (
            json!({"status": "open", "extra_prep_minutes": 5}),
            "invalid_store_status",
        ),
        (json!({"status": "asleep"}), "invalid_request"),
    ] {
        till.put("/venues/main/store-status", &body)
            .await
            .expect_error(422, code);
    }
    // The same status again: no event.
    till.put(
        "/venues/main/store-status",
        &json!({"status": "busy", "extra_prep_minutes": 20}),
    )
    .await
    .expect(200);
    assert_eq!(last_seq(&till).await, seq);
    assert_eq!(
        till.get("/venues/main/store-status").await.expect(200),
        &busy
    );

    let closed = manager
        .put("/venues/main/store-status", &json!({"status": "closed"}))
        .await;
    assert_eq!(closed.expect(200)["status"], "closed");
    assert!(
        closed.body.get("extra_prep_minutes").is_none(),
        "{}",
        closed.text
    );
    let event = ws.next_json().await;
    assert_eq!(event["type"], "store_status_changed", "{event}");
    assert_eq!(event["data"]["status"], "closed");
    // Other venues are unaffected.
    assert_eq!(
        till.get("/venues/patio/store-status").await.expect(200)["status"],
        "open"
    );
}

async fn the_order_check_refuses_what_the_menu_or_the_store_cannot_serve(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    let burger = json!({"item_id": "burger", "variation_id": "double", "quantity": 2,
        "modifiers": [{"group_id": "sauce", "option_id": "bbq"},
                      {"group_id": "extras", "option_id": "cheese"}]});
    let fries = json!({"item_id": "fries", "quantity": 1});
    check(&manager, json!([fries]))
        .await
        .expect_error(404, "menu_not_found");
    publish(&manager).await;

    let ok = check(&manager, json!([burger, fries])).await;
    assert_eq!(ok.expect(200)["menu_version"], 1);
    assert_eq!(ok.body["store_status"]["status"], "open");

    let refused = check(
        &manager,
        json!([fries, {"item_id": "pizza", "quantity": 1}]),
    )
    .await;
    refused.expect_error(422, "unknown_item");
    assert!(
        refused.text.contains("line 1") && refused.text.contains("pizza"),
        "{}",
        refused.text
    );
    let no_sauce = json!({"item_id": "burger", "variation_id": "single", "quantity": 1});
    let refused = check(&manager, json!([no_sauce])).await;
    refused.expect_error(422, "missing_required_modifier");
    assert!(refused.text.contains("line 0"), "{}", refused.text);
    check(
        &manager,
        json!([{"item_id": "burger", "quantity": 1,
        "modifiers": [{"group_id": "sauce", "option_id": "mayo"}]}]),
    )
    .await
    .expect_error(422, "variation_required");
    check(&manager, json!([]))
        .await
        .expect_error(422, "empty_order");

    // Sold out: 409, naming the line.
    till.post(
        "/menus/main/availability",
        &json!({"changes": [{"kind": "option", "id": "bbq", "sold_out": true}]}),
    )
    .await
    .expect(200);
    let refused = check(&manager, json!([fries, burger])).await;
    refused.expect_error(409, "option_sold_out");
    assert!(refused.text.contains("line 1"), "{}", refused.text);

    // Busy is fine and says by how much; closed refuses everything.
    till.put(
        "/venues/main/store-status",
        &json!({"status": "busy", "extra_prep_minutes": 15}),
    )
    .await
    .expect(200);
    let busy = check(&manager, json!([fries])).await;
    assert_eq!(busy.expect(200)["store_status"]["extra_prep_minutes"], 15);
    till.put("/venues/main/store-status", &json!({"status": "closed"}))
        .await
        .expect(200);
    check(&manager, json!([fries]))
        .await
        .expect_error(409, "store_closed");
}

async fn tenants_never_see_each_others_menus_or_status(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let bakery = srv.setup_tenant("bakery").await;
    let kitchen_manager = srv.manager(&kitchen);
    publish(&kitchen_manager).await;
    kitchen_manager
        .put("/venues/main/store-status", &json!({"status": "closed"}))
        .await
        .expect(200);

    // A bakery key on the kitchen's path is refused outright.
    for key in [&bakery.terminal.key, &bakery.manager.key] {
        let intruder = srv.tenant_client("kitchen", key);
        intruder
            .get("/menus/main")
            .await
            .expect_error(403, "forbidden");
        intruder
            .get("/venues/main/store-status")
            .await
            .expect_error(403, "forbidden");
        intruder
            .post(
                "/menus/main/availability",
                &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": true}]}),
            )
            .await
            .expect_error(403, "forbidden");
    }
    // Under its own name the bakery has no such menu, and its venue of the same name is
    // its own: open, with nothing to mark sold out.
    let bakery_till = srv.terminal(&bakery);
    let bakery_seq = last_seq(&bakery_till).await;
    bakery_till
        .get("/menus/main")
        .await
        .expect_error(404, "menu_not_found");
    bakery_till
        .post(
            "/menus/main/availability",
            &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": true}]}),
        )
        .await
        .expect_error(404, "menu_not_found");
    assert_eq!(
        bakery_till
            .get("/venues/main/store-status")
            .await
            .expect(200)["status"],
        "open"
    );
    assert_eq!(last_seq(&bakery_till).await, bakery_seq);

    // The bakery's own menu under the same venue name leaves the kitchen's alone.
    let mut loaves = menu_body();
    loaves["items"][1]["name"] = json!("Sourdough");
    srv.manager(&bakery)
        .put("/menus/main", &loaves)
        .await
        .expect(200);
    let kitchen_menu = srv.terminal(&kitchen).get("/menus/main").await;
    assert_eq!(kitchen_menu.expect(200)["items"][1]["name"], "Fries");
    let bakery_menu = bakery_till.get("/menus/main").await;
    assert_eq!(bakery_menu.expect(200)["items"][1]["name"], "Sourdough");
    assert_ne!(kitchen_menu.header("etag"), bakery_menu.header("etag"));
}

async fn only_a_manager_publishes_a_menu(backend: Backend) {
    let (srv, manager, till) = kitchen(backend).await;
    let seq = last_seq(&till).await;
    till.put("/menus/main", &menu_body())
        .await
        .expect_error(403, "forbidden");
    srv.tenant_anon("kitchen")
        .put("/menus/main", &menu_body())
        .await
        .expect_error(401, "unauthorized");
    srv.tenant_anon("kitchen")
        .get("/menus/main")
        .await
        .expect_error(401, "unauthorized");
    till.get("/menus/main")
        .await
        .expect_error(404, "menu_not_found");
    assert_eq!(last_seq(&till).await, seq);
    publish(&manager).await;
    assert_eq!(till.get("/menus/main").await.expect(200)["version"], 1);
}

/// The `/metrics` sample `name`, or 0 before its first increment.
async fn metric(srv: &TestServer, name: &str) -> f64 {
    metric_value(&srv.anon().get("/metrics").await.text, name).unwrap_or(0.0)
}

/// A menu of `n` items, each with a 200-character description: about 400 bytes an item.
fn big_menu(n: usize, price: i64) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("item-{i}"), "name": format!("Item {i}"),
                "description": "d".repeat(200),
                "variations": [{"id": format!("item-{i}-regular"), "name": "Regular",
                    "price": price}]})
        })
        .collect();
    json!({ "items": items })
}

async fn a_menu_over_a_mebibyte_is_taken_and_served_from_memory_until_it_changes(backend: Backend) {
    let (srv, manager, till) = kitchen(backend).await;
    let menu = big_menu(5_000, 500);
    assert!(menu.to_string().len() > 1024 * 1024, "the host-wide limit");
    let meta = manager.put("/menus/main", &menu).await;
    assert_eq!(meta.expect(200)["items"], 5_000);

    let (hits, misses) = (
        metric(&srv, "posbridge_menu_cache_hits_total").await,
        metric(&srv, "posbridge_menu_cache_misses_total").await,
    );
    let first = till.get("/menus/main").await;
    assert_eq!(first.expect(200)["items"][4_999]["id"], "item-4999");
    let second = till.get("/menus/main").await;
    assert_eq!(second.text, first.text, "the same bytes");
    assert_eq!(second.header("etag"), meta.body["etag"].as_str());
    assert_eq!(
        metric(&srv, "posbridge_menu_cache_misses_total").await - misses,
        1.0
    );
    assert_eq!(
        metric(&srv, "posbridge_menu_cache_hits_total").await - hits,
        1.0
    );

    // A change is served from the next request on.
    manager
        .put("/menus/main", &big_menu(5_000, 550))
        .await
        .expect(200);
    let changed = till.get("/menus/main").await;
    assert_eq!(
        changed.expect(200)["items"][0]["variations"][0]["price"],
        550
    );
    assert_eq!(changed.body["version"], 2);
}

/// `GET /menus/main` as `keys`' till with `headers`, the body as raw bytes (the harness'
/// client reads text, which a gzip body is not).
async fn raw_get(
    srv: &TestServer,
    keys: &TenantKeys,
    headers: &[(&str, &str)],
) -> (u16, posbridge_harness::reqwest::header::HeaderMap, Vec<u8>) {
    let url = format!("{}/menus/main", srv.terminal(keys).base());
    let mut req = posbridge_harness::reqwest::Client::new()
        .get(&url)
        .header("X-API-Key", &keys.terminal.key)
        .header("X-Tenant-ID", &keys.slug);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("GET the menu");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

async fn a_gzip_get_is_the_same_document_with_its_own_etag_and_304(backend: Backend) {
    let srv = crate::start(backend).await;
    let keys = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&keys);
    let meta = manager.put("/menus/main", &big_menu(2_000, 500)).await;
    let strong = meta.expect(200)["etag"].as_str().expect("etag").to_owned();
    let header = |h: &posbridge_harness::reqwest::header::HeaderMap, name: &str| {
        h.get(name).map(|v| v.to_str().expect("ascii").to_owned())
    };

    let (status, plain_headers, plain) = raw_get(&srv, &keys, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&plain_headers, "etag"), Some(strong.clone()));
    assert_eq!(header(&plain_headers, "content-encoding"), None);
    assert_eq!(
        header(&plain_headers, "vary").map(|v| v.to_ascii_lowercase()),
        Some("accept-encoding".to_owned()),
        "identity answers vary too, or a cache could hand gzip to a client without it"
    );

    let (status, gz_headers, packed) =
        raw_get(&srv, &keys, &[("Accept-Encoding", "br;q=1, gzip;q=0.8")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&gz_headers, "content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(
        header(&gz_headers, "vary").map(|v| v.to_ascii_lowercase()),
        Some("accept-encoding".to_owned())
    );
    assert_eq!(
        header(&gz_headers, "content-length"),
        Some(packed.len().to_string())
    );
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .expect("a gzip body");
    assert!(
        unpacked == plain,
        "gunzipped, exactly the identity document"
    );
    assert!(
        packed.len() * 5 < plain.len(),
        "{} of {}",
        packed.len(),
        plain.len()
    );
    let weak = header(&gz_headers, "etag").expect("etag");
    assert_eq!(
        weak,
        format!("W/{strong}"),
        "the same document, not the same bytes"
    );

    // Its ETag gets a 304 carrying it (and Vary); the identity one does too, as both name
    // the current version; a stale one gets the gzip copy again.
    for tag in [weak.as_str(), strong.as_str()] {
        let (status, h, body) = raw_get(
            &srv,
            &keys,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", tag)],
        )
        .await;
        assert_eq!(status, 304, "{tag}");
        assert!(body.is_empty());
        assert_eq!(header(&h, "etag"), Some(weak.clone()));
        assert_eq!(
            header(&h, "vary").map(|v| v.to_ascii_lowercase()),
            Some("accept-encoding".to_owned())
        );
        assert_eq!(header(&h, "content-encoding"), None);
    }
    let (status, _, body) = raw_get(
        &srv,
        &keys,
        &[
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", "W/\"stale\""),
        ],
    )
    .await;
    assert_eq!((status, body), (200, packed.clone()));
    // Without gzip, the gzip tag still gets a 304, with the identity tag.
    let (status, h, _) = raw_get(&srv, &keys, &[("If-None-Match", weak.as_str())]).await;
    assert_eq!(status, 304);
    assert_eq!(header(&h, "etag"), Some(strong.clone()));

    // q=0 is honoured: gzip refused means identity; both refused means 406.
    let (status, h, body) = raw_get(&srv, &keys, &[("Accept-Encoding", "*, gzip;q=0")]).await;
    assert_eq!((status, header(&h, "content-encoding")), (200, None));
    assert!(body == plain);
    let (status, h, _) = raw_get(&srv, &keys, &[("Accept-Encoding", "identity;q=0, *;q=0")]).await;
    assert_eq!(status, 406);
    assert_eq!(
        header(&h, "content-type").as_deref(),
        Some("application/json")
    );
    let (status, h, _) = raw_get(&srv, &keys, &[("Accept-Encoding", "*")]).await;
    assert_eq!(
        (status, header(&h, "content-encoding").as_deref()),
        (200, Some("gzip"))
    );

    // A new version changes both tags and is compressed anew.
    let meta = manager.put("/menus/main", &big_menu(2_000, 550)).await;
    let changed = meta.expect(200)["etag"].as_str().expect("etag").to_owned();
    assert_ne!(changed, strong);
    let (status, h, packed) = raw_get(
        &srv,
        &keys,
        &[
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", weak.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "etag"), Some(format!("W/{changed}")));
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .expect("a gzip body");
    let menu: Value = serde_json::from_slice(&unpacked).expect("JSON");
    assert_eq!(menu["version"], 2);
    assert_eq!(menu["items"][0]["variations"][0]["price"], 550);
}

async fn concurrent_writes_of_a_menu_are_all_kept(backend: Backend) {
    let (srv, manager, till) = kitchen(backend).await;
    manager
        .put("/menus/main", &big_menu(20, 500))
        .await
        .expect(200);
    let mut ws = socket(&srv, last_seq(&till).await).await;
    // Twenty tills 86 one item each, all at once: each change is applied on top of the
    // others (the menu row is read and written in turn), none lost to a stale read.
    let posts = (0..20).map(|i| {
        let till = till.clone();
        async move {
            till.post(
                "/menus/main/availability",
                &json!({"changes": [{"kind": "item", "id": format!("item-{i}"), "sold_out": true}]}),
            )
            .await
        }
    });
    let mut versions: Vec<i64> = futures_util::future::join_all(posts)
        .await
        .iter()
        .map(|r| r.expect(200)["version"].as_i64().expect("version"))
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=21).collect::<Vec<i64>>(), "one version each");
    let menu = till.get("/menus/main").await;
    let menu = menu.expect(200);
    assert_eq!(menu["version"], 21);
    let sold_out = menu["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["sold_out"] == true)
        .count();
    assert_eq!(sold_out, 20);
    let events = ws.collect(20).await;
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "item_availability_changed"),
        "{events:?}"
    );

    // Ten first publications of a new venue at once (no row to lock yet): each is
    // stored, one version each, the last one written being the one served.
    let puts = (0..10).map(|i| {
        let manager = manager.clone();
        async move { manager.put("/menus/patio", &big_menu(3, 100 + i)).await }
    });
    let answers = futures_util::future::join_all(puts).await;
    let mut versions: Vec<(i64, String)> = answers
        .iter()
        .map(|r| {
            let meta = r.expect(200);
            (
                meta["version"].as_i64().expect("version"),
                meta["etag"].as_str().expect("etag").to_owned(),
            )
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions.iter().map(|(v, _)| *v).collect::<Vec<i64>>(),
        (1..=10).collect::<Vec<i64>>()
    );
    let served = till.get("/menus/patio").await;
    assert_eq!(served.expect(200)["version"], 10);
    assert_eq!(served.header("etag"), Some(versions[9].1.as_str()));
}

async fn an_items_own_modifier_bounds_are_validated_served_and_checked(backend: Backend) {
    let (_srv, manager, till) = kitchen(backend).await;
    // The sauce group is 1-2 and required; this burger takes 2-3 sauces and at most one
    // extra.
    let mut body = menu_body();
    body["items"][0]["modifier_group_overrides"] = json!([
        {"group_id": "sauce", "min_selected": 2, "max_selected": 3},
        {"group_id": "extras", "max_selected": 1},
    ]);

    // Overrides that cannot apply are refused by path, and nothing is stored.
    let mut bad = body.clone();
    bad["items"][0]["modifier_group_overrides"] = json!([
        {"group_id": "sauce", "max_selected": 0},
        {"group_id": "extras", "min_selected": 2, "max_selected": 1},
        {"group_id": "extras", "max_selected": 1},
    ]);
    bad["items"][1]["modifier_group_overrides"] = json!([{"group_id": "sauce", "min_selected": 1}]);
    let refused = manager.put("/menus/main", &bad).await;
    refused.expect_error(422, "invalid_menu");
    let message = refused.body["error"]["message"].as_str().expect("message");
    for path in [
        "items[0].modifier_group_overrides[0].max_selected",
        "items[0].modifier_group_overrides[1].min_selected",
        "items[0].modifier_group_overrides[2].group_id",
        "items[1].modifier_group_overrides[0].group_id",
    ] {
        assert!(message.contains(path), "{path} in {message}");
    }
    let mut unknown = body.clone();
    unknown["items"][0]["modifier_group_overrides"][0]["maximum"] = json!(3);
    manager
        .put("/menus/main", &unknown)
        .await
        .expect_error(422, "invalid_menu");
    till.get("/menus/main")
        .await
        .expect_error(404, "menu_not_found");

    manager.put("/menus/main", &body).await.expect(200);
    let menu = till.get("/menus/main").await.expect(200).clone();
    assert_eq!(
        menu["items"][0]["modifier_group_overrides"],
        json!([
            {"group_id": "sauce", "min_selected": 2, "max_selected": 3},
            {"group_id": "extras", "max_selected": 1},
        ]),
        "{menu}"
    );
    assert!(
        menu["items"][1].get("modifier_group_overrides").is_none(),
        "an item without overrides is served as before: {menu}"
    );

    let burger = |mods: Value| {
        json!([{"item_id": "burger", "variation_id": "single", "quantity": 1,
                "modifiers": mods}])
    };
    let sauce = |option: &str| json!({"group_id": "sauce", "option_id": option});
    // One sauce meets the group's bounds but not the burger's.
    let refused = check(&till, burger(json!([sauce("mayo")]))).await;
    refused.expect_error(422, "missing_required_modifier");
    assert!(
        refused.text.contains("line 0") && refused.text.contains("at least 2"),
        "{}",
        refused.text
    );
    // Three sauces: over the group's maximum, within the burger's.
    check(
        &till,
        burger(json!([sauce("mayo"), sauce("bbq"), sauce("ketchup")])),
    )
    .await
    .expect(200);
    // Two extras: the group has no maximum, the burger one.
    let refused = check(
        &till,
        burger(json!([sauce("mayo"), sauce("bbq"),
                      {"group_id": "extras", "option_id": "cheese"},
                      {"group_id": "extras", "option_id": "bacon"}])),
    )
    .await;
    refused.expect_error(422, "too_many_modifiers");
    assert!(refused.text.contains("at most 1"), "{}", refused.text);

    // Published again without them, the group's bounds are back.
    manager.put("/menus/main", &menu_body()).await.expect(200);
    check(&till, burger(json!([sauce("mayo")])))
        .await
        .expect(200);
}

both_backends!(
    an_items_own_modifier_bounds_are_validated_served_and_checked,
    a_gzip_get_is_the_same_document_with_its_own_etag_and_304,
    concurrent_writes_of_a_menu_are_all_kept,
    a_menu_over_a_mebibyte_is_taken_and_served_from_memory_until_it_changes,
    a_menu_is_served_with_its_etag_and_a_304_while_unchanged,
    an_update_changes_the_etag_and_reaches_terminals_as_menu_updated,
    an_invalid_menu_is_refused_by_path_and_nothing_is_stored,
    availability_changes_are_pushed_and_served,
    store_status_is_set_read_and_pushed,
    the_order_check_refuses_what_the_menu_or_the_store_cannot_serve,
    tenants_never_see_each_others_menus_or_status,
    only_a_manager_publishes_a_menu,
);
