//! Online orders by menu lines (issue 19): refused before any POS call when the menu or the
//! store cannot serve them; priced from the menu at a venue without a POS that takes orders.

use posbridge_harness::mock_toast::MockToast;
use posbridge_harness::{both_backends, Backend, Client, TestServer, Ws};
use serde_json::{json, Value};

use crate::last_seq;
use crate::providers::first_sync;
use crate::providers_toast::{connect_toast, toast_kitchen};

/// A Toast menus document: a Burger (9.50) with a required Sauce group (Ketchup free,
/// Aioli 0.50) in the Burgers group, and Fries (3.25) with no modifiers.
pub(crate) fn toast_menu() -> Value {
    json!({
        "menus": [{
            "guid": "menu-lunch", "name": "Lunch",
            "menuGroups": [{
                "guid": "grp-burgers", "name": "Burgers",
                "menuItems": [
                    {"guid": "item-burger", "name": "Burger", "price": 9.5,
                     "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [1]},
                    {"guid": "item-fries", "name": "Fries", "price": 3.25,
                     "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": []},
                ],
            }],
        }],
        "modifierGroupReferences": {
            "1": {"referenceId": 1, "guid": "mg-sauce", "name": "Sauce", "minSelections": 1,
                  "maxSelections": 1, "requiredMode": "REQUIRED",
                  "modifierOptionReferences": [10, 11]},
        },
        "modifierOptionReferences": {
            "10": {"referenceId": 10, "guid": "opt-ketchup", "name": "Ketchup", "price": 0},
            "11": {"referenceId": 11, "guid": "opt-aioli", "name": "Aioli", "price": 0.5},
        },
    })
}

/// A Toast venue `uptown` with [`toast_menu`] synced: (server, manager, mock).
pub(crate) async fn toast_menu_venue(backend: Backend) -> (TestServer, Client, MockToast) {
    let (srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    connect_toast(&manager, &mock, "uptown", json!({})).await;
    first_sync(&manager, "uptown").await;
    mock.publish_menus(toast_menu());
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

/// A kitchen screen's socket, replaying from `since`.
async fn socket(srv: &TestServer, since: i64) -> Ws {
    let key = srv
        .create_key("kitchen", "terminal", "kitchen screen")
        .await
        .key;
    let mut ws = srv.ws("kitchen", &key, Some(since)).await;
    ws.hello().await;
    ws
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
        .put(
            "/venues/uptown/store-status",
            &json!({"status": "closed"}),
        )
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
