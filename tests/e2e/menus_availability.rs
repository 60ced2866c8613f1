//! Availability (86) both ways for POS venues, through the real binary against the Toast
//! and Square mocks: a Toast venue's 86 goes to Toast first and reaches terminals; Toast
//! down changes nothing; Square's read-only sold-out state refuses API writes; Toast stock
//! webhooks mark the menu (a repeat pushes nothing); a refresh reads Toast's stock, and
//! Square's sold-out overrides and inventory counts; a `local-pos` venue keeps the API as its
//! source; tenants stay apart.

use posbridge_harness::mock_square::{Fault, SQUARE_LOCATION, SQUARE_MERCHANT};
use posbridge_harness::mock_toast::{toast_stock_webhook, MockToast};
use posbridge_harness::{both_backends, Backend, Client, TestServer, Ws};
use serde_json::{json, Value};

use crate::last_seq;
use crate::orders_injection::square_burger_and_fries;
use crate::providers::{
    connect_square_webhooks, post_signed_square, post_signed_toast, square_kitchen,
};
use crate::providers_toast::{toast_kitchen, toast_webhook_venue};

const KEY: &str = "toast-stock-webhook-secret";

/// A menu whose entries carry Toast guids, except the fries (API only).
fn pos_menu() -> Value {
    json!({
        "categories": [{"id": "mains", "provider_id": "T-mains", "name": "Mains"}],
        "items": [
            {
                "id": "burger", "provider_id": "T-burger", "name": "Burger",
                "category_ids": ["mains"],
                "variations": [{"id": "single", "provider_id": "T-single", "name": "Single", "price": 900}],
                "modifier_group_ids": ["sauce"]
            },
            {
                "id": "fries", "name": "Fries",
                "variations": [{"id": "fries-regular", "name": "Regular", "price": 400}]
            }
        ],
        "modifier_groups": [{
            "id": "sauce", "provider_id": "T-sauce", "name": "Sauce",
            "options": [
                {"id": "ketchup", "provider_id": "T-ketchup", "name": "Ketchup"},
                {"id": "bbq", "provider_id": "T-bbq", "name": "BBQ", "price": 50}
            ]
        }]
    })
}

async fn publish(manager: &Client, venue: &str) -> Value {
    manager
        .put(&format!("/menus/{venue}"), &pos_menu())
        .await
        .expect(200)
        .clone()
}

/// `kitchen`'s socket (a terminal key of its own), replaying from `since`.
pub(crate) async fn socket(srv: &TestServer, since: i64) -> Ws {
    let key = srv
        .create_key("kitchen", "terminal", "kitchen screen")
        .await
        .key;
    let mut ws = srv.ws("kitchen", &key, Some(since)).await;
    ws.hello().await;
    ws
}

async fn menu(client: &Client, venue: &str) -> Value {
    client
        .get(&format!("/menus/{venue}"))
        .await
        .expect(200)
        .clone()
}

fn item_sold_out(menu: &Value, id: &str) -> Value {
    menu["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == id))
        .map(|i| i["sold_out"].clone())
        .unwrap_or(Value::Null)
}

fn option_sold_out(menu: &Value, id: &str) -> Value {
    menu["modifier_groups"][0]["options"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["id"] == id))
        .map(|o| o["sold_out"].clone())
        .unwrap_or(Value::Null)
}

/// The next `item_availability_changed` frame.
async fn next_availability(ws: &mut Ws) -> Value {
    for _ in 0..20 {
        let frame = ws.next_json().await;
        if frame["type"] == "item_availability_changed" {
            return frame;
        }
    }
    panic!("no item_availability_changed among the next 20 frames");
}

fn changes(frame: &Value) -> Vec<(String, String, bool)> {
    frame["data"]["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or_default().to_owned(),
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["sold_out"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

fn set(kind: &str, id: &str, sold_out: bool) -> (String, String, bool) {
    (kind.to_owned(), id.to_owned(), sold_out)
}

/// A Toast venue `uptown` with the menu, and a till: (server, manager, till, mock, id).
async fn toast_venue(backend: Backend) -> (TestServer, Client, Client, MockToast, String) {
    let (srv, manager, mock, id) = toast_webhook_venue(backend, KEY).await;
    publish(&manager, "uptown").await;
    let key = srv.create_key("kitchen", "terminal", "till").await.key;
    let till = srv.tenant_client("kitchen", &key);
    (srv, manager, till, mock, id)
}

async fn a_toast_venue_86_is_written_to_toast_first_and_reaches_terminals(backend: Backend) {
    let (srv, manager, _till, mock, _id) = toast_venue(backend).await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    mock.clear_requests();
    let resp = manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [
                {"kind": "item", "id": "burger", "sold_out": true},
                {"kind": "option", "id": "bbq", "sold_out": true}
            ]}),
        )
        .await;
    let answer = resp.expect(200).clone();
    let puts = mock.requests_to("/stock/v1/inventory/update");
    assert_eq!(puts.len(), 1, "{:?}", mock.requests());
    assert_eq!(puts[0].method, "PUT");
    assert_eq!(
        puts[0].json(),
        json!([
            {"guid": "T-burger", "status": "OUT_OF_STOCK"},
            {"guid": "T-bbq", "status": "OUT_OF_STOCK"}
        ])
    );
    assert_eq!(mock.stock_of("T-burger").unwrap()["status"], "OUT_OF_STOCK");
    let applied = vec![set("item", "burger", true), set("option", "bbq", true)];
    assert_eq!(
        changes(&json!({ "data": answer })),
        applied,
        "{}",
        resp.text
    );
    let frame = next_availability(&mut ws).await;
    assert_eq!(changes(&frame), applied, "{frame}");
    assert_eq!(frame["data"]["venue"], "uptown");
    let served = menu(&manager, "uptown").await;
    assert_eq!(item_sold_out(&served, "burger"), json!(true));
    assert_eq!(option_sold_out(&served, "bbq"), json!(true));

    // Back in stock: Toast stops tracking it.
    manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "item", "id": "burger", "sold_out": false}]}),
        )
        .await
        .expect(200);
    assert!(mock.stock_of("T-burger").is_none());
    let frame = next_availability(&mut ws).await;
    assert_eq!(
        changes(&frame),
        vec![set("item", "burger", false)],
        "{frame}"
    );

    // An entry Toast does not know (no provider id) refuses the request before any call.
    mock.clear_requests();
    let refused = manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [
                {"kind": "option", "id": "ketchup", "sold_out": true},
                {"kind": "item", "id": "fries", "sold_out": true}
            ]}),
        )
        .await;
    refused.expect_error(422, "no_provider_id");
    assert!(refused.text.contains("fries"), "{}", refused.text);
    assert!(mock.requests_to("/stock/").is_empty());
    let served = menu(&manager, "uptown").await;
    assert_eq!(option_sold_out(&served, "ketchup"), json!(false));
    assert_eq!(item_sold_out(&served, "fries"), json!(false));
}

async fn toast_down_changes_nothing_and_answers_its_error(backend: Backend) {
    let (_srv, manager, _till, mock, _id) = toast_venue(backend).await;
    let before = menu(&manager, "uptown").await;
    mock.inject(Fault::always(500).on("/stock/"));
    let resp = manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "item", "id": "burger", "sold_out": true}]}),
        )
        .await;
    resp.expect_error(502, "upstream_error");
    assert!(!mock.requests_to("/stock/v1/inventory/update").is_empty());
    assert!(mock.stock_of("T-burger").is_none());
    let after = menu(&manager, "uptown").await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(item_sold_out(&after, "burger"), json!(false));

    // Disconnected from Toast, the venue is not written around it either.
    mock.clear_faults();
    manager
        .post("/pos/disconnect/uptown", &json!({}))
        .await
        .expect(200);
    mock.clear_requests();
    manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "item", "id": "burger", "sold_out": true}]}),
        )
        .await
        .expect_error(409, "integration_disconnected");
    assert!(mock.requests_to("/stock/").is_empty());
    assert_eq!(menu(&manager, "uptown").await["version"], before["version"]);
}

async fn a_square_venue_refuses_writes_as_read_only_and_changes_nothing(backend: Backend) {
    let (srv, _tenant, manager, mock) = square_kitchen(backend).await;
    // After its first sync, so the scheduler's reads do not land in the log below.
    connect_square_webhooks(&manager, &mock, "uptown", "square-key").await;
    let before = publish(&manager, "uptown").await;
    mock.clear_requests();
    let resp = manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "item", "id": "burger", "sold_out": true}]}),
        )
        .await;
    resp.expect_error(409, "availability_read_only");
    assert!(
        resp.text.contains("Square") && resp.text.contains("read-only"),
        "{}",
        resp.text
    );
    let asked: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" || !r.path.starts_with("/v2/payments"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    let after = menu(&manager, "uptown").await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(item_sold_out(&after, "burger"), json!(false));
    drop(srv);
}

/// A Square `inventory.count.updated` body: variation `id` counts `quantity` IN_STOCK.
pub(crate) fn square_count_webhook(event_id: &str, id: &str, quantity: &str) -> String {
    json!({
        "merchant_id": SQUARE_MERCHANT,
        "type": "inventory.count.updated",
        "event_id": event_id,
        "created_at": "2026-12-06T20:00:00Z",
        "data": {
            "type": "inventory_counts",
            "id": event_id,
            "object": {"inventory_counts": [{
                "catalog_object_id": id,
                "catalog_object_type": "ITEM_VARIATION",
                "state": "IN_STOCK",
                "location_id": SQUARE_LOCATION,
                "quantity": quantity,
                "calculated_at": "2026-12-06T20:00:00Z"
            }]}
        }
    })
    .to_string()
}

/// Square's sold-out state is read: a count of zero marks the variation sold out, a count
/// above zero brings it back, and the same count again pushes nothing.
async fn a_square_inventory_count_marks_the_menu(backend: Backend) {
    const SQUARE_KEY: &str = "square-stock-webhook-secret";
    let (srv, _tenant, manager, mock) = square_kitchen(backend).await;
    let integration = connect_square_webhooks(&manager, &mock, "uptown", SQUARE_KEY).await;
    publish(&manager, "uptown").await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    for (event, quantity) in [("sq-1", "0"), ("sq-2", "0"), ("sq-3", "4")] {
        let body = square_count_webhook(event, "T-single", quantity);
        post_signed_square(&srv, &integration, &body, SQUARE_KEY)
            .await
            .expect(200);
    }
    let frame = next_availability(&mut ws).await;
    assert_eq!(
        changes(&frame),
        vec![set("variation", "single", true)],
        "{frame}"
    );
    // The repeated zero sent nothing: the next frame is the count of four.
    let frame = next_availability(&mut ws).await;
    assert_eq!(
        changes(&frame),
        vec![set("variation", "single", false)],
        "{frame}"
    );
    let served = menu(&manager, "uptown").await;
    assert_eq!(
        served["items"][0]["variations"][0]["sold_out"],
        json!(false)
    );
}

async fn a_toast_stock_webhook_marks_the_menu_once(backend: Backend) {
    let (srv, manager, _till, _mock, id) = toast_venue(backend).await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    let post = |event: &'static str, guid: &'static str, kind: &'static str| {
        let body = toast_stock_webhook(kind, event, guid, None);
        let srv = &srv;
        let id = id.clone();
        async move {
            let resp = post_signed_toast(srv, &id, &body, KEY, kind).await;
            assert_eq!(resp.expect(200)["received"], true, "{}", resp.text);
        }
    };
    post("stock-ev-1", "T-burger", "out_of_stock").await;
    let frame = next_availability(&mut ws).await;
    assert_eq!(
        changes(&frame),
        vec![set("item", "burger", true)],
        "{frame}"
    );
    assert_eq!(
        item_sold_out(&menu(&manager, "uptown").await, "burger"),
        json!(true)
    );

    // The same state again (a new delivery) pushes nothing: the next frame is the bbq's.
    post("stock-ev-2", "T-burger", "out_of_stock").await;
    post("stock-ev-3", "T-bbq", "out_of_stock").await;
    let frame = next_availability(&mut ws).await;
    assert_eq!(changes(&frame), vec![set("option", "bbq", true)], "{frame}");

    post("stock-ev-4", "T-burger", "in_stock").await;
    let frame = next_availability(&mut ws).await;
    assert_eq!(
        changes(&frame),
        vec![set("item", "burger", false)],
        "{frame}"
    );
    assert_eq!(
        item_sold_out(&menu(&manager, "uptown").await, "burger"),
        json!(false)
    );
}

async fn a_refresh_reads_toast_stock_and_brings_the_menu_in_line(backend: Backend) {
    let (srv, manager, till, mock, _id) = toast_venue(backend).await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    mock.set_stock("T-burger", "OUT_OF_STOCK", None);
    mock.set_stock("T-bbq", "QUANTITY", Some(0.0));
    mock.set_stock("T-ketchup", "QUANTITY", Some(12.0));
    mock.set_stock("T-not-on-the-menu", "OUT_OF_STOCK", None);
    mock.clear_requests();
    let resp = till
        .post("/menus/uptown/availability/refresh", &json!({}))
        .await;
    resp.expect(200);
    let reads = mock.requests_to("/stock/v1/inventory");
    assert!(
        reads.iter().any(|r| r.method == "GET" && r.status == 200),
        "{:?}",
        reads
    );
    let applied = vec![set("item", "burger", true), set("option", "bbq", true)];
    assert_eq!(
        changes(&json!({"data": resp.body})),
        applied,
        "{}",
        resp.text
    );
    assert_eq!(changes(&next_availability(&mut ws).await), applied);

    // Toast has the burger back: the next refresh clears it (and pushes only that).
    mock.set_stock("T-burger", "IN_STOCK", None);
    let resp = till
        .post("/menus/uptown/availability/refresh", &json!({}))
        .await;
    let again = vec![set("item", "burger", false)];
    assert_eq!(
        changes(&json!({"data": resp.expect(200)})),
        again,
        "{}",
        resp.text
    );
    assert_eq!(changes(&next_availability(&mut ws).await), again);
    let served = menu(&till, "uptown").await;
    assert_eq!(item_sold_out(&served, "burger"), json!(false));
    assert_eq!(option_sold_out(&served, "bbq"), json!(true));

    // A venue without a POS has nothing to read.
    publish(&manager, "annex").await;
    till.post("/menus/annex/availability/refresh", &json!({}))
        .await
        .expect_error(404, "venue_not_connected");
}

/// The changes of an `item_availability_changed` payload, sorted (the host's order is not
/// the point here).
fn sorted_changes(frame: &Value) -> Vec<(String, String, bool)> {
    let mut list = changes(frame);
    list.sort();
    list
}

/// A Square venue's refresh reads Square's sold-out state: `location_overrides[].sold_out`
/// on variations and modifiers, and the counts of tracked variations (zero is sold out, a
/// positive count is not), through `POST /v2/inventory/counts/batch-retrieve` at the
/// venue's location, paged; terminals hear what changed, and a later refresh brings items
/// back.
async fn a_refresh_reads_square_sold_out_state_and_counts(backend: Backend) {
    let (srv, _tenant, manager, mock) = square_kitchen(backend).await;
    connect_square_webhooks(&manager, &mock, "uptown", "square-refresh-key").await;
    mock.upsert_catalog(square_burger_and_fries(0));
    manager
        .post("/menus/uptown/sync", &json!({}))
        .await
        .expect(200);
    let key = srv.create_key("kitchen", "terminal", "till").await.key;
    let till = srv.tenant_client("kitchen", &key);
    let mut ws = socket(&srv, last_seq(&manager).await).await;

    assert!(mock.set_sold_out("VAR_DOUBLE", true, None));
    assert!(mock.set_sold_out("MOD_BBQ", true, None));
    assert!(mock.set_inventory_count("VAR_FRIES", "0"));
    assert!(mock.set_inventory_count("VAR_SINGLE", "12"));
    mock.set_inventory_page_size(1);
    mock.clear_requests();
    let resp = till
        .post("/menus/uptown/availability/refresh", &json!({}))
        .await;
    let answer = resp.expect(200).clone();
    let applied = vec![
        set("option", "MOD_BBQ", true),
        set("variation", "VAR_DOUBLE", true),
        set("variation", "VAR_FRIES", true),
    ];
    assert_eq!(
        sorted_changes(&json!({ "data": answer })),
        applied,
        "{}",
        resp.text
    );
    let counts = mock.requests_to("/v2/inventory/counts/batch-retrieve");
    assert!(counts.len() >= 2, "paged by cursor: {counts:?}");
    assert!(counts.iter().all(|r| r.method == "POST" && r.status == 200));
    assert_eq!(counts[0].json()["location_ids"], json!([SQUARE_LOCATION]));
    assert!(
        counts[1].json()["cursor"].is_string(),
        "{:?}",
        counts[1].json()
    );
    assert_eq!(sorted_changes(&next_availability(&mut ws).await), applied);
    let served = menu(&manager, "uptown").await;
    let burger = served["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == "ITEM_BURGER"))
        .cloned()
        .unwrap_or_else(|| panic!("the burger was synced: {served}"));
    let variation = |id: &str| {
        burger["variations"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["id"] == id))
            .map(|v| v["sold_out"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(variation("VAR_DOUBLE"), json!(true), "{burger}");
    assert_eq!(
        variation("VAR_SINGLE"),
        json!(false),
        "a count of 12: {burger}"
    );
    // Nothing was written to Square: its sold-out state is read-only to apps.
    assert!(
        mock.requests()
            .iter()
            .all(|r| !r.path.starts_with("/v2/inventory/changes")
                && !r.path.starts_with("/v2/catalog/object")),
        "{:?}",
        mock.requests()
    );

    // Back in Square: the double's override is lifted and fries are counted again.
    assert!(mock.set_sold_out("VAR_DOUBLE", false, None));
    assert!(mock.set_inventory_count("VAR_FRIES", "5"));
    let resp = till
        .post("/menus/uptown/availability/refresh", &json!({}))
        .await;
    let back = vec![
        set("variation", "VAR_DOUBLE", false),
        set("variation", "VAR_FRIES", false),
    ];
    assert_eq!(
        sorted_changes(&json!({"data": resp.expect(200)})),
        back,
        "{}",
        resp.text
    );
    assert_eq!(sorted_changes(&next_availability(&mut ws).await), back);
    assert_eq!(
        option_sold_out(&menu(&till, "uptown").await, "MOD_BBQ"),
        json!(true),
        "the BBQ stays out"
    );
}

async fn a_local_pos_venue_keeps_the_api_as_its_source(backend: Backend) {
    let (srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    manager
        .post(
            "/pos/connect",
            &json!({"venue": "downtown", "provider": "local-pos"}),
        )
        .await
        .expect(200);
    publish(&manager, "downtown").await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    let resp = manager
        .post(
            "/menus/downtown/availability",
            &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": true}]}),
        )
        .await;
    resp.expect(200);
    assert_eq!(
        changes(&next_availability(&mut ws).await),
        vec![set("item", "fries", true)]
    );
    assert_eq!(
        item_sold_out(&menu(&manager, "downtown").await, "fries"),
        json!(true)
    );
    assert!(mock.requests().is_empty());
    // Nothing to read from a local POS.
    manager
        .post("/menus/downtown/availability/refresh", &json!({}))
        .await
        .expect_error(501, "provider_cannot");
    // A disconnected local POS leaves the API the venue's source, as before.
    manager
        .post("/pos/disconnect/downtown", &json!({}))
        .await
        .expect(200);
    manager
        .post(
            "/menus/downtown/availability",
            &json!({"changes": [{"kind": "item", "id": "fries", "sold_out": false}]}),
        )
        .await
        .expect(200);
    assert_eq!(
        item_sold_out(&menu(&manager, "downtown").await, "fries"),
        json!(false)
    );
}

async fn tenants_never_touch_each_others_availability(backend: Backend) {
    let (srv, manager, _till, mock, id) = toast_venue(backend).await;
    let other = srv.setup_tenant("other").await;
    let other_manager = srv.manager(&other);
    publish(&other_manager, "uptown").await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;

    // The other tenant's venue of the same name has no POS: its 86 stays its own.
    mock.clear_requests();
    other_manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "option", "id": "ketchup", "sold_out": true}]}),
        )
        .await
        .expect(200);
    assert!(mock.requests_to("/stock/").is_empty());
    assert_eq!(
        option_sold_out(&menu(&manager, "uptown").await, "ketchup"),
        json!(false)
    );

    // Kitchen's Toast webhook marks kitchen's menu only.
    let body = toast_stock_webhook("out_of_stock", "iso-ev-1", "T-burger", None);
    post_signed_toast(&srv, &id, &body, KEY, "out_of_stock")
        .await
        .expect(200);
    let frame = next_availability(&mut ws).await;
    assert_eq!(
        changes(&frame),
        vec![set("item", "burger", true)],
        "{frame}"
    );
    assert_eq!(
        item_sold_out(&menu(&other_manager, "uptown").await, "burger"),
        json!(false)
    );
    other_manager
        .post("/menus/uptown/availability/refresh", &json!({}))
        .await
        .expect_error(404, "venue_not_connected");
}

both_backends!(
    a_toast_venue_86_is_written_to_toast_first_and_reaches_terminals,
    toast_down_changes_nothing_and_answers_its_error,
    a_square_venue_refuses_writes_as_read_only_and_changes_nothing,
    a_toast_stock_webhook_marks_the_menu_once,
    a_square_inventory_count_marks_the_menu,
    a_refresh_reads_toast_stock_and_brings_the_menu_in_line,
    a_refresh_reads_square_sold_out_state_and_counts,
    a_local_pos_venue_keeps_the_api_as_its_source,
    tenants_never_touch_each_others_availability,
);
