//! Catalog sync: a Toast or Square venue's menu comes from its POS (`POST /menus/{venue}/sync`
//! and the `catalog_changed` webhook), against the mocks: nested groups flattened, modifier
//! bounds, prices in minor units, an unchanged Toast menu costing one metadata call, Square's
//! paged and incremental search with deletions, canonical ids and availability kept across
//! syncs; refusals for a local POS, another tenant and a terminal key.

use std::time::Duration;

use posbridge_harness::mock_square::{
    square_category, square_item, square_modifier_list, square_tax,
};
use posbridge_harness::{both_backends, eventually, Backend, Client, TestServer, Ws};
use serde_json::{json, Value};

use crate::last_seq;
use crate::menus_availability::square_count_webhook;
use crate::providers::{
    connect_square_webhooks, post_signed_square, post_signed_toast, square_kitchen,
};
use crate::providers_toast::{connect_toast, toast_kitchen, toast_webhook_venue};

/// A Toast menus document: a "Lunch" menu with Burgers (and Specials nested in it), a group
/// hidden from ordering partners, and two modifier groups referenced by `referenceId`.
fn toast_menus(burger_price: f64) -> Value {
    json!({
        "menus": [{
            "guid": "menu-lunch", "name": "Lunch",
            "menuGroups": [
                {
                    "guid": "grp-burgers", "name": "Burgers",
                    "menuItems": [{
                        "guid": "item-burger", "name": "Burger", "price": burger_price,
                        "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [1],
                    }],
                    "menuGroups": [{
                        "guid": "grp-specials", "name": "Specials",
                        "menuItems": [{
                            "guid": "item-special", "name": "Chef's special", "price": 12.25,
                            "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [1, 2],
                        }, {
                            "guid": "item-market", "name": "Market fish", "price": null,
                            "pricingStrategy": "OPEN_PRICE", "modifierGroupReferences": [],
                        }],
                    }],
                },
                {
                    "guid": "grp-staff", "name": "Staff meals", "visibility": ["POS"],
                    "menuItems": [{
                        "guid": "item-staff", "name": "Staff burger", "price": 2.0,
                        "modifierGroupReferences": [],
                    }],
                },
            ],
        }],
        "modifierGroupReferences": {
            "1": {"referenceId": 1, "guid": "mg-sauce", "name": "Sauce", "minSelections": 1,
                  "maxSelections": 2, "requiredMode": "REQUIRED",
                  "modifierOptionReferences": [10, 11]},
            "2": {"referenceId": 2, "guid": "mg-extras", "name": "Extras", "minSelections": 0,
                  "maxSelections": 0, "requiredMode": "OPTIONAL",
                  "modifierOptionReferences": [12]},
        },
        "modifierOptionReferences": {
            "10": {"referenceId": 10, "guid": "opt-ketchup", "name": "Ketchup", "price": 0},
            "11": {"referenceId": 11, "guid": "opt-aioli", "name": "Aioli", "price": 0.5},
            "12": {"referenceId": 12, "guid": "opt-bacon", "name": "Bacon", "price": 1.75,
                   "isDefault": true},
        },
    })
}

/// `POST /menus/{venue}/sync`, asserting 200.
async fn sync_menu(manager: &Client, venue: &str) -> Value {
    let resp = manager
        .post(&format!("/menus/{venue}/sync"), &json!({}))
        .await;
    resp.expect(200).clone()
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

fn item<'a>(menu: &'a Value, id: &str) -> &'a Value {
    menu["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == id))
        .unwrap_or_else(|| panic!("no item {id} in {menu}"))
}

async fn a_toast_menu_is_synced_and_an_unchanged_one_costs_one_metadata_call(backend: Backend) {
    let (_srv, _tenant, manager, mock) = toast_kitchen(backend).await;
    connect_toast(&manager, &mock, "uptown", json!({})).await;
    mock.publish_menus(toast_menus(9.5));

    let first = sync_menu(&manager, "uptown").await;
    assert_eq!(first["provider"], "toast", "{first}");
    assert_eq!(first["changed"], true, "{first}");
    assert_eq!(first["changes"]["items"]["added"], 2, "{first}");
    assert_eq!(first["menu"]["version"], 1, "{first}");

    let menu = manager.get("/menus/uptown").await.expect(200).clone();
    let ids: Vec<&str> = menu["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["item-burger", "item-special"],
        "open-priced and staff-only items are not sold online: {menu}"
    );
    let burger = item(&menu, "item-burger");
    assert_eq!(burger["provider_id"], "item-burger");
    assert_eq!(burger["variations"][0]["price"], 950);
    assert_eq!(burger["category_ids"], json!(["grp-burgers"]));
    let special = item(&menu, "item-special");
    assert_eq!(special["variations"][0]["price"], 1225);
    assert_eq!(special["category_ids"], json!(["grp-specials"]));
    assert_eq!(
        special["modifier_group_ids"],
        json!(["mg-sauce", "mg-extras"])
    );
    let category = |id: &str| {
        menu["categories"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("no category {id} in {menu}"))
            .clone()
    };
    assert_eq!(category("menu-lunch")["name"], "Lunch");
    assert_eq!(category("grp-burgers")["name"], "Burgers");
    assert_eq!(category("grp-specials")["name"], "Burgers › Specials");
    let group = |id: &str| {
        menu["modifier_groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["id"] == id))
            .unwrap_or_else(|| panic!("no group {id} in {menu}"))
            .clone()
    };
    let sauce = group("mg-sauce");
    assert_eq!(sauce["min_selected"], 1);
    assert_eq!(sauce["max_selected"], 2);
    assert_eq!(sauce["required"], true);
    assert_eq!(sauce["options"][1]["price"], 50);
    let extras = group("mg-extras");
    assert_eq!(extras["required"], false);
    assert!(extras.get("max_selected").is_none(), "no limit: {extras}");
    assert_eq!(extras["options"][0]["price"], 175);
    assert_eq!(extras["options"][0]["default"], true);
    // A cart against it passes the menu check (the required sauce chosen).
    manager
        .post(
            "/menus/uptown/order-check",
            &json!({"lines": [{"item_id": "item-special", "quantity": 1,
                "modifiers": [{"group_id": "mg-sauce", "option_id": "opt-aioli"}]}]}),
        )
        .await
        .expect(200);

    // Unchanged upstream: one metadata call, no menu download, no new version, no event.
    let downloads = mock.requests_to("/menus/v2/menus").len();
    let metadata = mock.requests_to("/menus/v2/metadata").len();
    let seq = last_seq(&manager).await;
    let second = sync_menu(&manager, "uptown").await;
    assert_eq!(second["incremental"], true, "{second}");
    assert_eq!(second["upstream_unchanged"], true, "{second}");
    assert_eq!(second["changed"], false, "{second}");
    assert_eq!(second["menu"]["version"], 1, "{second}");
    assert_eq!(second["menu"]["etag"], first["menu"]["etag"], "{second}");
    assert_eq!(mock.requests_to("/menus/v2/menus").len(), downloads);
    assert_eq!(mock.requests_to("/menus/v2/metadata").len(), metadata + 1);
    assert_eq!(last_seq(&manager).await, seq, "no menu_updated");
}

async fn square_syncs_page_by_page_then_incrementally_with_deletions(backend: Backend) {
    const SQUARE_KEY: &str = "square-catalog-webhook-secret";
    let (srv, _tenant, manager, mock) = square_kitchen(backend).await;
    let integration = connect_square_webhooks(&manager, &mock, "bistro", SQUARE_KEY).await;
    let mut burger = square_item(
        "ITEM_BURGER",
        "Burger",
        "CAT_MAINS",
        &[
            ("VAR_SINGLE", "Single", 950),
            ("VAR_DOUBLE", "Double", 1300),
        ],
        &[("ML_SAUCE", -1, -1)],
    );
    burger["item_data"]["tax_ids"] = json!(["TAX_SALES"]);
    mock.upsert_catalog([
        square_category("CAT_MAINS", "Mains", None),
        square_tax("TAX_SALES", "Sales tax", "8.875"),
        square_modifier_list(
            "ML_SAUCE",
            "Sauce",
            1,
            1,
            &[("MOD_KETCHUP", "Ketchup", 0), ("MOD_BBQ", "BBQ", 50)],
        ),
        burger.clone(),
        square_item(
            "ITEM_FRIES",
            "Fries",
            "CAT_MAINS",
            &[("VAR_FRIES", "Regular", 400)],
            &[],
        ),
        square_item(
            "ITEM_SALAD",
            "Salad",
            "CAT_MAINS",
            &[("VAR_SALAD", "Regular", 700)],
            &[],
        ),
    ]);
    mock.set_catalog_page_size(2);

    let first = sync_menu(&manager, "bistro").await;
    assert_eq!(first["incremental"], false, "{first}");
    assert!(first["pages"].as_u64().unwrap_or(0) >= 3, "{first}");
    assert_eq!(first["changes"]["items"]["added"], 3, "{first}");
    let menu = manager.get("/menus/bistro").await.expect(200).clone();
    let b = item(&menu, "ITEM_BURGER");
    assert_eq!(b["variations"][1]["price"], 1300, "{menu}");
    assert_eq!(b["variations"][1]["id"], "VAR_DOUBLE", "{menu}");
    assert_eq!(b["tax"]["percentage"], "8.875", "{menu}");
    assert_eq!(b["modifier_group_ids"], json!(["ML_SAUCE"]));
    assert_eq!(menu["modifier_groups"][0]["max_selected"], 1, "{menu}");
    assert_eq!(menu["modifier_groups"][0]["required"], true, "{menu}");

    // Square says the fries ran out (a Square venue's availability is Square's: its
    // inventory webhook, not the API, 86es them); a re-sync must not bring them back.
    post_signed_square(
        &srv,
        &integration,
        &square_count_webhook("sq-fries-0", "VAR_FRIES", "0"),
        SQUARE_KEY,
    )
    .await
    .expect(200);
    eventually(Duration::from_secs(15), "the fries sold out", || async {
        let menu = manager.get("/menus/bistro").await.expect(200).clone();
        (item(&menu, "ITEM_FRIES")["variations"][0]["sold_out"] == json!(true)).then_some(())
    })
    .await;

    let till_key = srv
        .create_key("kitchen", "terminal", "kitchen screen")
        .await
        .key;
    let since = last_seq(&manager).await;
    let mut ws = srv.ws("kitchen", &till_key, Some(since)).await;
    ws.hello().await;

    mock.delete_catalog("ITEM_SALAD");
    burger["item_data"]["variations"][0]["item_variation_data"]["price_money"]["amount"] =
        json!(1000);
    mock.upsert_catalog([burger]);
    let searches = mock.requests_to("/v2/catalog/search").len();
    let second = sync_menu(&manager, "bistro").await;
    assert_eq!(second["incremental"], true, "{second}");
    assert_eq!(second["changes"]["items"]["removed"], 1, "{second}");
    assert_eq!(second["changes"]["items"]["updated"], 1, "{second}");
    assert_eq!(second["changes"]["items"]["added"], 0, "{second}");
    let calls = mock.requests_to("/v2/catalog/search");
    assert_eq!(calls.len(), searches + 1, "one incremental search");
    let asked = calls.last().expect("a search").json();
    assert_eq!(asked["include_deleted_objects"], true, "{asked}");
    assert!(asked["begin_time"].is_string(), "{asked}");

    let event = ws.next_json().await;
    assert_eq!(event["type"], "menu_updated", "{event}");
    let menu = manager.get("/menus/bistro").await.expect(200).clone();
    assert_eq!(event["data"]["version"], menu["version"], "{event}");
    let ids: Vec<&str> = menu["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, ["ITEM_BURGER", "ITEM_FRIES"], "{menu}");
    let b = item(&menu, "ITEM_BURGER");
    assert_eq!(b["variations"][0]["id"], "VAR_SINGLE");
    assert_eq!(b["variations"][0]["price"], 1000);
    assert_eq!(
        item(&menu, "ITEM_FRIES")["variations"][0]["sold_out"],
        true,
        "availability survives"
    );

    // Nothing changed upstream: nothing stored.
    let third = sync_menu(&manager, "bistro").await;
    assert_eq!(third["changed"], false, "{third}");
    assert_eq!(third["menu"]["version"], menu["version"], "{third}");
}

async fn a_catalog_webhook_syncs_the_menu_in_the_background(backend: Backend) {
    let key = "toast-webhook-secret";
    let (srv, manager, mock, id) = toast_webhook_venue(backend, key).await;
    mock.publish_menus(toast_menus(9.5));
    let mut ws = socket(&srv, last_seq(&manager).await).await;
    let body = json!({
        "timestamp": "2026-12-06T20:00:00.000+0000",
        "eventCategory": "menus",
        "eventType": "menus_updated",
        "guid": "evt-menus-1",
        "details": {"restaurantGuid": posbridge_harness::mock_toast::TOAST_RESTAURANT,
                    "publishedDate": "2026-12-06T20:00:00.000+0000"},
    })
    .to_string();
    post_signed_toast(&srv, &id, &body, key, "menus_updated")
        .await
        .expect(200);
    let event = ws.next_json_within(Duration::from_secs(30)).await;
    assert_eq!(event["type"], "menu_updated", "{event}");
    assert_eq!(event["data"]["venue"], "uptown", "{event}");
    let menu = manager.get("/menus/uptown").await.expect(200).clone();
    assert_eq!(item(&menu, "item-burger")["variations"][0]["price"], 950);
}

async fn syncs_are_refused_for_a_local_pos_another_tenant_and_a_terminal(backend: Backend) {
    let (srv, tenant, manager, mock) = toast_kitchen(backend).await;
    connect_toast(&manager, &mock, "uptown", json!({})).await;
    crate::connect_local_pos(&manager, "downtown").await;
    manager
        .post("/menus/downtown/sync", &json!({}))
        .await
        .expect_error(501, "provider_cannot");
    manager
        .post("/menus/nowhere/sync", &json!({}))
        .await
        .expect_error(404, "venue_not_connected");
    srv.terminal(&tenant)
        .post("/menus/uptown/sync", &json!({}))
        .await
        .expect_error(403, "forbidden");
    let other = srv.setup_tenant("rival").await;
    srv.manager(&other)
        .post("/menus/uptown/sync", &json!({}))
        .await
        .expect_error(404, "venue_not_connected");
    assert!(
        mock.requests_to("/menus/v2/").is_empty(),
        "nothing was fetched for a refused sync"
    );
}

both_backends!(
    a_toast_menu_is_synced_and_an_unchanged_one_costs_one_metadata_call,
    square_syncs_page_by_page_then_incrementally_with_deletions,
    a_catalog_webhook_syncs_the_menu_in_the_background,
    syncs_are_refused_for_a_local_pos_another_tenant_and_a_terminal,
);
