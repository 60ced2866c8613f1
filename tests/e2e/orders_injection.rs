//! Online orders by menu lines (issue 19), against the Square and Toast mocks on both
//! databases: refused before any POS call when the menu or the store cannot serve them;
//! priced from the menu at a venue without a POS that takes orders; injected into Toast and
//! Square exactly once (through a lost answer, an outage and a 429 storm, a dead letter and
//! an operator's retry, and a `kill -9` between the submit and its answer), with the POS's
//! status changes coming back to a terminal's socket and stale versions dropped.

use std::time::Duration;

use posbridge_harness::mock::{Mock, Provider};
use posbridge_harness::mock_orders::{LostAnswer, OrderCall, OrderFault};
use posbridge_harness::mock_square::{
    square_category, square_item, square_modifier_list, MockSquare,
};
use posbridge_harness::mock_square_orders::square_fulfillment_webhook;
use posbridge_harness::mock_toast::{toast_burger_menu, toast_order_webhook, MockToast};
use posbridge_harness::{both_backends, eventually, Backend, Client, TenantKeys, TestServer, Ws};
use serde_json::{json, Value};

use crate::last_seq;
use crate::menus_availability::socket;
use crate::providers::{
    approve_host, connect_square_webhooks, first_sync, post_signed_square, post_signed_toast,
};
use crate::providers_toast::{connect_toast, toast_kitchen};

/// A Toast venue `uptown` with [`toast_burger_menu`] synced: (server, manager, mock).
pub(crate) async fn toast_menu_venue(backend: Backend) -> (TestServer, Client, MockToast) {
    let (srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    connect_toast(&manager, &mock, "uptown", json!({})).await;
    first_sync(&manager, "uptown").await;
    mock.publish_menus(toast_burger_menu());
    manager
        .post("/menus/uptown/sync", &json!({}))
        .await
        .expect(200);
    (srv, manager, mock)
}

/// One burger with aioli and two fries, by canonical ids.
pub(crate) fn burger_and_fries(venue: &str) -> Value {
    json!({
        "external_id": "web-1",
        "venue": venue,
        "lines": [
            {"item_id": "item-burger", "quantity": 1,
             "modifiers": [{"group_id": "mg-sauce", "option_id": "opt-aioli"}]},
            {"item_id": "item-fries", "quantity": 2},
        ],
        "tip": 150,
        "customer": {"name": "Ann Example", "phone": "+15550100199"},
    })
}

/// Requests that would put an order into Toast (pricing included).
fn toast_order_calls(mock: &MockToast) -> Vec<String> {
    mock.requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && (r.path.starts_with("/orders/v2/prices")
                    || r.path.trim_end_matches('/') == "/orders/v2/orders")
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

async fn orders_the_menu_or_the_store_cannot_serve_are_refused_before_any_pos_call(
    backend: Backend,
) {
    let (_srv, manager, mock) = toast_menu_venue(backend).await;
    let refused = |body: Value, status: u16, code: &'static str, line: Option<&'static str>| {
        let manager = manager.clone();
        async move {
            let resp = manager.post("/orders", &body).await;
            resp.expect_error(status, code);
            let error = resp.body.clone();
            if let Some(line) = line {
                let message = error["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(line), "{line} in {error}");
            }
        }
    };

    let mut no_sauce = burger_and_fries("uptown");
    no_sauce["lines"][0]["modifiers"] = json!([]);
    refused(no_sauce, 422, "missing_required_modifier", Some("line 0")).await;

    let mut unknown = burger_and_fries("uptown");
    unknown["lines"][1]["item_id"] = json!("item-pizza");
    refused(unknown, 422, "unknown_item", Some("line 1")).await;

    // 86 the fries (Toast takes availability writes: the mock's stock follows).
    manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "item", "id": "item-fries", "sold_out": true}]}),
        )
        .await
        .expect(200);
    refused(
        burger_and_fries("uptown"),
        409,
        "item_sold_out",
        Some("line 1"),
    )
    .await;
    manager
        .post(
            "/menus/uptown/availability",
            &json!({"changes": [{"kind": "item", "id": "item-fries", "sold_out": false}]}),
        )
        .await
        .expect(200);

    manager
        .put("/venues/uptown/store-status", &json!({"status": "closed"}))
        .await
        .expect(200);
    refused(burger_and_fries("uptown"), 409, "store_closed", None).await;

    assert_eq!(
        toast_order_calls(&mock),
        Vec::<String>::new(),
        "a refused order costs no POS call"
    );
    let pending = manager.get("/orders/pending").await;
    assert_eq!(pending.expect(200)["orders"], json!([]), "nothing stored");
}

both_backends!(orders_the_menu_or_the_store_cannot_serve_are_refused_before_any_pos_call);

/// A menu uploaded for a venue with no POS integration.
fn uploaded_menu() -> Value {
    json!({
        "categories": [{"id": "mains", "name": "Mains"}],
        "items": [{
            "id": "burger", "name": "Burger", "category_ids": ["mains"],
            "variations": [
                {"id": "single", "name": "Single", "price": 900},
                {"id": "double", "name": "Double", "price": 1300}
            ],
            "modifier_group_ids": ["extras"],
        }],
        "modifier_groups": [{
            "id": "extras", "name": "Extras", "min_selected": 0, "max_selected": 3,
            "required": false,
            "options": [{"id": "cheese", "name": "Cheese", "price": 100}],
        }],
    })
}

async fn a_venue_without_an_ordering_pos_prices_lines_from_its_menu(backend: Backend) {
    let srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    manager
        .put("/menus/downtown", &uploaded_menu())
        .await
        .expect(200);
    let since = last_seq(&manager).await;
    let mut ws = socket(&srv, since).await;

    let body = json!({
        "venue": "downtown",
        "lines": [{"item_id": "burger", "variation_id": "double", "quantity": 2,
                   "modifiers": [{"group_id": "extras", "option_id": "cheese", "quantity": 2}]}],
        "tax": 250,
        "tip": 100,
    });
    let mut wrong = body.clone();
    wrong["total"] = json!(1);
    manager
        .post("/orders", &wrong)
        .await
        .expect_error(409, "price_mismatch");

    let order = manager.post("/orders", &body).await.expect(201).clone();
    // (1300 + 2 × 100) × 2 = 3000; + 250 tax + 100 tip.
    assert_eq!(order["subtotal"], 3000, "{order}");
    assert_eq!(order["total"], 3350, "{order}");
    assert_eq!(order["venue"], "downtown");
    assert_eq!(order["items"][0]["name"], "Burger (Double)");
    assert_eq!(order["items"][0]["unit_price"], 1500);
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["items"][0]["notes"], "2 × Cheese");
    assert!(order.get("pos").is_none(), "no POS takes it: {order}");
    let event = ws.next_json().await;
    assert_eq!(event["type"], "new_order", "{event}");
    assert_eq!(event["data"]["id"], order["id"]);

    // Lines for a venue without a menu, and lines with items, are refused.
    let mut elsewhere = body.clone();
    elsewhere["venue"] = json!("nowhere");
    manager
        .post("/orders", &elsewhere)
        .await
        .expect_error(404, "menu_not_found");
    let mut both = body.clone();
    both["items"] = json!([{"name": "x", "quantity": 1, "unit_price": 1}]);
    manager
        .post("/orders", &both)
        .await
        .expect_error(422, "invalid_order");
}

both_backends!(a_venue_without_an_ordering_pos_prices_lines_from_its_menu);

// ---------------------------------------------------------------------------------------
// Injection into Toast and Square, exactly once, and the status relay
// ---------------------------------------------------------------------------------------

/// Retries fast enough for a test, and status polls every second. The host's own HTTP
/// retries (`--outbound-retries`) are off, so each attempt is one POS call and the mocks'
/// faults meet the injection's retries directly.
const FAST: &[&str] = &[
    "--outbound-retries",
    "0",
    "--order-injection-max-attempts",
    "3",
    "--order-injection-retry-base-ms",
    "100",
    "--order-injection-retry-cap-ms",
    "300",
    "--order-status-poll-secs",
    "1",
];

/// A server started with `args`, tenant `kitchen`, its manager, and `mock` approved for
/// `plugin`.
async fn kitchen_with<P: Provider>(
    backend: Backend,
    plugin: &str,
    mock: Mock<P>,
    args: &[&str],
) -> (TestServer, TenantKeys, Client, Mock<P>) {
    let srv = TestServer::start(crate::BIN, backend, args).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    approve_host(&srv, plugin, mock.host_port()).await;
    (srv, tenant, manager, mock)
}

const TOAST_KEY: &str = "toast-orders-webhook-secret";
const SQUARE_KEY: &str = "square-orders-webhook-secret";

/// [`kitchen_with`] on Toast with `uptown` connected (webhooks signed with [`TOAST_KEY`])
/// and [`toast_burger_menu`] synced: (server, tenant, manager, mock, integration id).
async fn toast_venue(
    backend: Backend,
    args: &[&str],
) -> (TestServer, TenantKeys, Client, MockToast, String) {
    let (srv, tenant, manager, mock) =
        kitchen_with(backend, "toast", MockToast::start().await, args).await;
    let integration = connect_toast(
        &manager,
        &mock,
        "uptown",
        json!({"webhook_signature_key": TOAST_KEY}),
    )
    .await;
    first_sync(&manager, "uptown").await;
    mock.publish_menus(toast_burger_menu());
    manager
        .post("/menus/uptown/sync", &json!({}))
        .await
        .expect(200);
    let id = integration["id"]
        .as_str()
        .expect("integration id")
        .to_owned();
    (srv, tenant, manager, mock, id)
}

/// [`kitchen_with`] on Square with `bistro` connected (webhooks signed with [`SQUARE_KEY`])
/// and a Burger (single 9.50, double 13.00; one sauce: ketchup, BBQ +0.50) and Fries
/// (4.00) synced: (server, tenant, manager, mock, integration).
async fn square_venue(
    backend: Backend,
    args: &[&str],
) -> (TestServer, TenantKeys, Client, MockSquare, Value) {
    let (srv, tenant, manager, mock) =
        kitchen_with(backend, "square", MockSquare::start().await, args).await;
    let integration = connect_square_webhooks(&manager, &mock, "bistro", SQUARE_KEY).await;
    mock.upsert_catalog(square_burger_and_fries(1));
    manager
        .post("/menus/bistro/sync", &json!({}))
        .await
        .expect(200);
    (srv, tenant, manager, mock, integration)
}

/// Square's catalog of the order tests: a Burger (single 9.50, double 13.00) with a Sauce
/// list (ketchup, BBQ +0.50) of at least `sauce_min` choices and at most one, and Fries
/// (4.00), in one Mains category.
pub(crate) fn square_burger_and_fries(sauce_min: i64) -> [Value; 4] {
    [
        square_category("CAT_MAINS", "Mains", None),
        square_modifier_list(
            "ML_SAUCE",
            "Sauce",
            sauce_min,
            1,
            &[("MOD_KETCHUP", "Ketchup", 0), ("MOD_BBQ", "BBQ", 50)],
        ),
        square_item(
            "ITEM_BURGER",
            "Burger",
            "CAT_MAINS",
            &[
                ("VAR_SINGLE", "Single", 950),
                ("VAR_DOUBLE", "Double", 1300),
            ],
            &[("ML_SAUCE", -1, -1)],
        ),
        square_item(
            "ITEM_FRIES",
            "Fries",
            "CAT_MAINS",
            &[("VAR_FRIES", "Regular", 400)],
            &[],
        ),
    ]
}

/// Square's catalog of the item-bounds test: a Sauce list (0-2: ketchup, BBQ +0.50, mayo)
/// and an Extras list (0-2: cheese +1.00, bacon +2.00). The Burger (9.50) takes exactly one
/// sauce and up to three extras, its own bounds; Fries (4.00) state the Sauce list's own
/// bounds, kept as their own.
fn square_item_bounds_catalog() -> [Value; 5] {
    [
        square_category("CAT_MAINS", "Mains", None),
        square_modifier_list(
            "ML_SAUCE",
            "Sauce",
            0,
            2,
            &[
                ("MOD_KETCHUP", "Ketchup", 0),
                ("MOD_BBQ", "BBQ", 50),
                ("MOD_MAYO", "Mayo", 0),
            ],
        ),
        square_modifier_list(
            "ML_EXTRAS",
            "Extras",
            0,
            2,
            &[("MOD_CHEESE", "Cheese", 100), ("MOD_BACON", "Bacon", 200)],
        ),
        square_item(
            "ITEM_BURGER",
            "Burger",
            "CAT_MAINS",
            &[("VAR_BURGER", "Regular", 950)],
            &[("ML_SAUCE", 1, 1), ("ML_EXTRAS", -1, 3)],
        ),
        square_item(
            "ITEM_FRIES",
            "Fries",
            "CAT_MAINS",
            &[("VAR_FRIES", "Regular", 400)],
            &[("ML_SAUCE", 0, 2)],
        ),
    ]
}

async fn a_square_items_own_modifier_bounds_are_synced_and_enforced_before_the_pos(
    backend: Backend,
) {
    let (srv, _tenant, manager, mock) =
        kitchen_with(backend, "square", MockSquare::start().await, FAST).await;
    connect_square_webhooks(&manager, &mock, "bistro", SQUARE_KEY).await;
    mock.upsert_catalog(square_item_bounds_catalog());
    manager
        .post("/menus/bistro/sync", &json!({}))
        .await
        .expect(200);

    // The menu shows each item's own bounds, the Fries' too (equal to the list's today).
    let menu = manager.get("/menus/bistro").await.expect(200).clone();
    let item = |id: &str| {
        menu["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {menu}"))
    };
    assert_eq!(
        item("ITEM_BURGER")["modifier_group_overrides"],
        json!([
            {"group_id": "ML_SAUCE", "min_selected": 1, "max_selected": 1},
            {"group_id": "ML_EXTRAS", "max_selected": 3},
        ]),
        "{menu}"
    );
    assert_eq!(
        item("ITEM_FRIES")["modifier_group_overrides"],
        json!([{"group_id": "ML_SAUCE", "min_selected": 0, "max_selected": 2}]),
        "{menu}"
    );
    let sauce = &menu["modifier_groups"][0];
    assert_eq!(
        (&sauce["id"], &sauce["min_selected"], &sauce["max_selected"]),
        (&json!("ML_SAUCE"), &json!(0), &json!(2)),
        "the list keeps its own bounds: {menu}"
    );
    // The same catalog again changes nothing.
    let again = manager
        .post("/menus/bistro/sync", &json!({}))
        .await
        .expect(200)
        .clone();
    assert_eq!(again["changed"], false, "{again}");

    let modifier = |group: &str, option: &str, quantity: u32| json!({"group_id": group, "option_id": option, "quantity": quantity});
    let order = |external_id: &str, burger_modifiers: Value| {
        json!({
            "external_id": external_id,
            "venue": "bistro",
            "lines": [
                // Two sauces: within the Sauce list's bounds, which the Fries keep.
                {"item_id": "ITEM_FRIES", "quantity": 1,
                 "modifiers": [modifier("ML_SAUCE", "MOD_KETCHUP", 1),
                               modifier("ML_SAUCE", "MOD_MAYO", 1)]},
                {"item_id": "ITEM_BURGER", "quantity": 1, "modifiers": burger_modifiers},
            ],
            "tip": 0,
            "customer": {"name": "Cy Example", "phone": "+15550100177"},
        })
    };
    // Each of these meets the lists' bounds and breaks the Burger's.
    for (body, code, words) in [
        (
            order(
                "web-bounds-two-sauces",
                json!([
                    modifier("ML_SAUCE", "MOD_BBQ", 1),
                    modifier("ML_SAUCE", "MOD_KETCHUP", 1)
                ]),
            ),
            "too_many_modifiers",
            "at most 1",
        ),
        (
            order("web-bounds-no-sauce", json!([])),
            "missing_required_modifier",
            "at least 1",
        ),
    ] {
        let resp = manager.post("/orders", &body).await;
        resp.expect_error(422, code);
        let message = resp.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("line 1") && message.contains("ML_SAUCE") && message.contains(words),
            "{}",
            resp.text
        );
    }
    assert!(
        mock.requests_to("/v2/orders").is_empty(),
        "a refused order costs no POS call: {:?}",
        mock.requests_to("/v2/orders")
    );
    let pending = manager.get("/orders/pending").await;
    assert_eq!(pending.expect(200)["orders"], json!([]), "nothing stored");

    // One sauce and three extras (over the Extras list's two, within the Burger's three).
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    let body = order(
        "web-bounds-ok",
        json!([
            modifier("ML_SAUCE", "MOD_BBQ", 1),
            modifier("ML_EXTRAS", "MOD_CHEESE", 2),
            modifier("ML_EXTRAS", "MOD_BACON", 1)
        ]),
    );
    let created = manager.post("/orders", &body).await.expect(201).clone();
    let id = created["id"].clone();
    // Fries 4.00; Burger 9.50 + BBQ 0.50 + 2 × cheese 1.00 + bacon 2.00.
    assert_eq!(created["subtotal"], 400 + 950 + 50 + 200 + 200, "{created}");
    let injected = next_about(&mut ws, "order_injected", &id).await;
    assert_eq!(injected["data"]["pos"]["state"], "submitted", "{injected}");
    let ours = id.as_str().expect("order id");
    let in_square = mock.orders_with_reference(ours);
    assert_eq!(in_square.len(), 1, "one Square order: {in_square:?}");
    let burger = &in_square[0]["line_items"][1];
    let sent: Vec<(String, String)> = burger["modifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["catalog_object_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                m["quantity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("MOD_BBQ".to_owned(), "1".to_owned()),
            ("MOD_CHEESE".to_owned(), "2".to_owned()),
            ("MOD_BACON".to_owned(), "1".to_owned()),
        ],
        "{}",
        in_square[0]
    );
    assert_eq!(mock.orders_created().len(), 1);
}

both_backends!(a_square_items_own_modifier_bounds_are_synced_and_enforced_before_the_pos);

/// A double burger with BBQ sauce and fries, at the Square venue.
fn square_order(external_id: &str) -> Value {
    json!({
        "external_id": external_id,
        "venue": "bistro",
        "lines": [
            {"item_id": "ITEM_BURGER", "variation_id": "VAR_DOUBLE", "quantity": 1,
             "modifiers": [{"group_id": "ML_SAUCE", "option_id": "MOD_BBQ"}]},
            {"item_id": "ITEM_FRIES", "quantity": 1},
        ],
        "tip": 200,
        "customer": {"name": "Bo Example", "phone": "+15550100188"},
    })
}

/// [`burger_and_fries`] with the email Toast needs on a take-out order.
fn toast_order() -> Value {
    let mut body = burger_and_fries("uptown");
    body["customer"]["email"] = json!("ann@example.com");
    body
}

/// The next frame of type `kind` about order `id` (other frames are skipped).
async fn next_about(ws: &mut Ws, kind: &str, id: &Value) -> Value {
    for _ in 0..200 {
        let frame = ws.next_json_within(Duration::from_secs(30)).await;
        if frame["type"] == kind && &frame["data"]["id"] == id {
            return frame;
        }
    }
    panic!("no {kind} frame for order {id} among the next 200 frames");
}

/// The next `order_updated` status of order `id`; any other order event about it panics,
/// so a stale report that slipped through shows up here.
async fn next_status(ws: &mut Ws, id: &Value) -> Value {
    for _ in 0..200 {
        let frame = ws.next_json_within(Duration::from_secs(30)).await;
        if &frame["data"]["id"] != id {
            continue;
        }
        assert_eq!(frame["type"], "order_updated", "{frame}");
        return frame["data"]["status"].clone();
    }
    panic!("no order_updated frame for order {id} among the next 200 frames");
}

async fn an_order_goes_into_toast_once_and_its_status_comes_back(backend: Backend) {
    let (srv, _tenant, manager, mock, integration) = toast_venue(backend, FAST).await;
    mock.set_tax_rate(825);
    let mut ws = socket(&srv, last_seq(&manager).await).await;

    let resp = manager.post("/orders", &toast_order()).await;
    let order = resp.expect(201).clone();
    let id = order["id"].clone();
    assert_eq!(order["pos"]["state"], "queued", "{order}");
    assert_eq!(order["pos"]["provider"], "toast", "{order}");
    // Burger 9.50 + aioli 0.50, fries 2 × 3.25: 16.50, and the tax Toast's price has (the
    // menu knows none).
    assert_eq!(order["subtotal"], 1650, "{order}");
    assert_eq!(order["pos"]["priced"]["subtotal"], 1650, "{order}");
    let tax = order["pos"]["priced"]["tax"].as_i64().expect("POS tax");
    assert!((130..=140).contains(&tax), "8.25 % of 16.50: {order}");
    assert_eq!(order["tax"], tax);
    assert_eq!(order["total"], 1650 + tax + 150, "{order}");
    assert_eq!(order["items"][0]["name"], "Burger");
    assert_eq!(order["items"][0]["unit_price"], 1000);
    assert_eq!(
        next_about(&mut ws, "new_order", &id).await["data"]["pos"]["state"],
        "queued"
    );

    let injected = next_about(&mut ws, "order_injected", &id).await;
    let guid = injected["data"]["pos"]["provider_order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("order_injected without provider_order_id: {injected}"))
        .to_owned();
    assert_eq!(injected["data"]["pos"]["state"], "accepted", "{injected}");
    let ours = id.as_str().expect("order id");
    let in_toast = mock.orders_with_external_id(ours);
    assert_eq!(in_toast.len(), 1, "one Toast order: {in_toast:?}");
    assert_eq!(in_toast[0]["guid"], guid.as_str());
    let payment = &in_toast[0]["checks"][0]["payments"][0];
    assert_eq!(payment["type"], "OTHER", "paid by the channel: {payment}");
    // Toast approved it on creation: the order is accepted.
    assert_eq!(next_status(&mut ws, &id).await, "accepted");

    // The kitchen marks it ready; Toast's webhook carries the whole order.
    let ready = mock
        .set_fulfillment_status(&guid, "READY")
        .expect("order in Toast");
    let body = toast_order_webhook("evt-ready-1", &ready);
    post_signed_toast(&srv, &integration, &body, TOAST_KEY, "order_updated")
        .await
        .expect(200);
    assert_eq!(next_status(&mut ws, &id).await, "ready");

    // Staff void it in Toast and no webhook comes: polling brings the cancellation.
    mock.void_order(&guid).expect("order in Toast");
    assert_eq!(next_status(&mut ws, &id).await, "cancelled");
    let now = manager
        .get(&format!("/orders/{}", ours))
        .await
        .expect(200)
        .clone();
    assert_eq!(now["status"], "cancelled", "{now}");
    assert_eq!(now["pos"]["provider_order_id"], guid.as_str(), "{now}");
    assert_eq!(now["pos"]["attempts"], 1, "{now}");
    assert_eq!(mock.orders_with_external_id(ours).len(), 1);
}

both_backends!(an_order_goes_into_toast_once_and_its_status_comes_back);

async fn an_order_goes_into_square_once_paid_and_stale_versions_are_dropped(backend: Backend) {
    let (srv, _tenant, manager, mock, integration) = square_venue(backend, FAST).await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;

    let order = manager
        .post("/orders", &square_order("web-sq-1"))
        .await
        .expect(201)
        .clone();
    let id = order["id"].clone();
    let ours = id.as_str().expect("order id").to_owned();
    assert_eq!(order["pos"]["state"], "queued", "{order}");
    assert_eq!(order["subtotal"], 1300 + 50 + 400, "{order}");
    assert_eq!(order["items"][0]["name"], "Burger (Double)");

    let injected = next_about(&mut ws, "order_injected", &id).await;
    let square_id = injected["data"]["pos"]["provider_order_id"]
        .as_str()
        .unwrap_or_else(|| panic!("order_injected without provider_order_id: {injected}"))
        .to_owned();
    let in_square = mock.orders_with_reference(&ours);
    assert_eq!(in_square.len(), 1, "one Square order: {in_square:?}");
    assert_eq!(in_square[0]["id"], square_id.as_str());
    assert!(
        in_square[0]["tenders"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "paid with an external tender so staff see it: {}",
        in_square[0]
    );
    assert_eq!(mock.orders_created().len(), 1);

    // Staff take it on (RESERVED: in the kitchen), then mark it ready (PREPARED); Square's
    // webhooks are thin.
    let moved = |state: &'static str, event_id: &'static str| {
        let (srv, integration, mock, square_id) = (&srv, &integration, &mock, &square_id);
        async move {
            let (old, new) = mock
                .set_fulfillment_state(square_id, state)
                .unwrap_or_else(|| panic!("{square_id} not in Square"));
            let body = square_fulfillment_webhook(event_id, &new, &old);
            post_signed_square(srv, integration, &body, SQUARE_KEY)
                .await
                .expect(200);
            body
        }
    };
    let stale = moved("RESERVED", "evt-sq-accept").await;
    assert_eq!(next_status(&mut ws, &id).await, "preparing");
    moved("PREPARED", "evt-sq-ready").await;
    assert_eq!(next_status(&mut ws, &id).await, "ready");

    // An older version arriving late (a redelivery under a new event id) changes nothing;
    // the next change is the next frame.
    let late = stale.replace("evt-sq-accept", "evt-sq-accept-again");
    post_signed_square(&srv, &integration, &late, SQUARE_KEY)
        .await
        .expect(200);
    moved("COMPLETED", "evt-sq-done").await;
    assert_eq!(next_status(&mut ws, &id).await, "completed");
    assert_eq!(mock.orders_with_reference(&ours).len(), 1);
    assert_eq!(mock.orders_created().len(), 1);
}

both_backends!(an_order_goes_into_square_once_paid_and_stale_versions_are_dropped);

async fn an_outage_and_a_429_storm_are_retried_then_dead_lettered_and_retried_by_an_operator(
    backend: Backend,
) {
    let (srv, _tenant, manager, mock, _integration) = square_venue(backend, FAST).await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    // Every attempt of the round (3) fails: two 503s, then a 429.
    mock.fail_orders(OrderFault::next(2, 503).on(OrderCall::Create));
    mock.fail_orders(OrderFault::next(1, 429).on(OrderCall::Create));

    let order = manager
        .post("/orders", &square_order("web-sq-storm"))
        .await
        .expect(201)
        .clone();
    let id = order["id"].clone();
    let ours = id.as_str().expect("order id").to_owned();
    let failed = next_about(&mut ws, "order_injection_failed", &id).await;
    assert_eq!(failed["data"]["pos"]["state"], "failed", "{failed}");
    assert_eq!(failed["data"]["pos"]["attempts"], 3, "{failed}");
    let reason = failed["data"]["pos"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("gave up after 3 attempts"), "{failed}");
    assert!(mock.orders_created().is_empty(), "no Square order yet");
    assert_eq!(
        mock.requests_to("/v2/orders")
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v2/orders")
            .count(),
        3,
        "three submits"
    );

    let letters = srv.admin().get("/admin/dead-letters?kind=order").await;
    let items = letters.expect(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", letters.text);
    let letter = &items[0];
    assert_eq!(letter["source_id"], ours.as_str(), "{letter}");
    assert_eq!(letter["attempts"], 3, "{letter}");
    let letter_id = letter["id"].as_str().expect("dead letter id").to_owned();

    let retried = srv
        .admin()
        .post(
            &format!("/admin/dead-letters/{letter_id}/retry"),
            &json!({}),
        )
        .await;
    assert_eq!(
        retried.expect(202)["outcome"],
        "requeued",
        "{}",
        retried.text
    );
    let injected = next_about(&mut ws, "order_injected", &id).await;
    assert_eq!(injected["data"]["pos"]["attempts"], 1, "{injected}");
    assert_eq!(mock.orders_with_reference(&ours).len(), 1);
    srv.admin()
        .get(&format!("/admin/dead-letters/{letter_id}"))
        .await
        .expect_error(404, "dead_letter_not_found");
}

both_backends!(an_outage_and_a_429_storm_are_retried_then_dead_lettered_and_retried_by_an_operator);

async fn a_toast_timeout_whose_order_landed_still_makes_one_toast_order(backend: Backend) {
    let (srv, _tenant, manager, mock, _integration) = toast_venue(backend, FAST).await;
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    // Toast stores the order, but the answer is a gateway timeout.
    mock.lose_next_answers(1, LostAnswer::GatewayTimeout);

    let order = manager
        .post("/orders", &toast_order())
        .await
        .expect(201)
        .clone();
    let id = order["id"].clone();
    let ours = id.as_str().expect("order id").to_owned();
    let injected = next_about(&mut ws, "order_injected", &id).await;
    assert_eq!(
        injected["data"]["pos"]["attempts"], 2,
        "found by the second attempt's lookup: {injected}"
    );
    let in_toast = mock.orders_with_external_id(&ours);
    assert_eq!(in_toast.len(), 1, "{in_toast:?}");
    assert_eq!(
        injected["data"]["pos"]["provider_order_id"], in_toast[0]["guid"],
        "{injected}"
    );
    let creates = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/orders/v2/orders")
        .count();
    assert_eq!(creates, 1, "looked up, not sent again");
}

both_backends!(a_toast_timeout_whose_order_landed_still_makes_one_toast_order);

async fn a_host_killed_between_submit_and_answer_still_makes_one_pos_order(backend: Backend) {
    let (mut srv, tenant, manager, mock, _integration) = toast_venue(backend, FAST).await;
    // The order is stored at once; its answer waits long enough to kill the host first.
    mock.set_order_latency(Some(OrderCall::Create), Duration::from_secs(20));
    let order = manager
        .post("/orders", &toast_order())
        .await
        .expect(201)
        .clone();
    let ours = order["id"].as_str().expect("order id").to_owned();
    eventually(
        Duration::from_secs(15),
        "the order stored in Toast",
        || async { (mock.orders_with_external_id(&ours).len() == 1).then_some(()) },
    )
    .await;
    srv.kill9().await;
    mock.set_order_latency(Some(OrderCall::Create), Duration::ZERO);
    srv.start_again().await;

    let manager = srv.manager(&tenant);
    let injected = eventually(
        Duration::from_secs(30),
        "the order recorded as in Toast after the restart",
        || async {
            let resp = manager.get(&format!("/orders/{ours}")).await;
            let order = resp.expect(200).clone();
            (order["pos"]["state"] == "accepted").then_some(order)
        },
    )
    .await;
    let in_toast = mock.orders_with_external_id(&ours);
    assert_eq!(in_toast.len(), 1, "{in_toast:?}");
    assert_eq!(injected["pos"]["provider_order_id"], in_toast[0]["guid"]);
    assert_eq!(injected["status"], "accepted", "{injected}");
}

both_backends!(a_host_killed_between_submit_and_answer_still_makes_one_pos_order);
