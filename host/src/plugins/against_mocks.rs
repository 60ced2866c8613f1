//! The bundled Square and Toast plugins' order calls (price, submit, look up, read status)
//! against the harness's mocks, through the real plugin runtime: the mocks accept what the
//! plugins send and answer what the plugins read, so an e2e injection test fails on the
//! host's logic, not on a mock that the real APIs would contradict. Exactly one POS order
//! per our order id, also when a create's answer is lost. (A unit test so that it can reach
//! the runtime, which the library does not export.)

use crate::plugins::contract::{
    Connection, Environment, ExternalPayment, Fulfilment, FulfilmentKind, Order, OrderLine,
    OrderModifier, OrderState, OrderStatus, ProviderError, Webhook,
};
use crate::plugins::{CallContext, PluginOptions, Plugins};
use crate::store::{Store, StoreOptions};
use posbridge_harness::mock_orders::LostAnswer;
use posbridge_harness::mock_square::{
    square_item, square_modifier_list, square_tax, MockSquare, SQUARE_TOKEN,
};
use posbridge_harness::mock_square_orders::square_fulfillment_webhook;
use posbridge_harness::mock_toast::toast_order_webhook;
use posbridge_harness::mock_toast::{
    MockToast, TOAST_CLIENT_ID, TOAST_CLIENT_SECRET, TOAST_RESTAURANT,
};
use serde_json::json;

/// The runtime with the bundled plugins on a scratch SQLite database, `host` approved for
/// `plugin`.
async fn runtime(plugin: &str, host: &str) -> (Plugins, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = Store::open(&url, &StoreOptions::default())
        .await
        .expect("a scratch store");
    let options = PluginOptions {
        install_bundled: true,
        ..PluginOptions::default()
    };
    let plugins = Plugins::start(store, options).await.expect("the runtime");
    plugins
        .set_hosts(plugin, vec![host.to_owned()])
        .await
        .expect("approving the mock's host");
    (plugins, dir)
}

fn ctx() -> CallContext {
    CallContext {
        tenant_id: String::new(),
        integration_id: String::new(),
    }
}

fn order(id: &str, line: OrderLine, paid: Option<i64>) -> Order {
    Order {
        our_order_id: id.to_owned(),
        currency: "USD".to_owned(),
        lines: vec![line],
        fulfilment: Fulfilment {
            kind: FulfilmentKind::Pickup,
            customer_name: "Ann Lee".to_owned(),
            customer_phone: Some("+15550100199".to_owned()),
            customer_email: Some("ann@example.com".to_owned()),
            scheduled_at_ms: None,
            prep_time_minutes: Some(15),
            delivery_address: Vec::new(),
            note: None,
        },
        total: paid.unwrap_or(0),
        payment: paid.map(|amount| ExternalPayment {
            amount,
            tip: 0,
            source: "web".to_owned(),
        }),
        source_name: "posbridge".to_owned(),
    }
}

/// A webhook delivery of `body` (the plugins' parsing reads only the body).
fn webhook(body: String) -> Webhook {
    Webhook {
        url: "https://posbridge.example/webhooks".to_owned(),
        headers: Vec::new(),
        body: body.into_bytes(),
    }
}

fn ok<T: std::fmt::Debug>(answer: Result<Result<T, ProviderError>, impl std::fmt::Debug>) -> T {
    match answer {
        Ok(Ok(value)) => value,
        other => panic!("the plugin call failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn square_orders_are_priced_created_once_paid_and_followed() {
    let mock = MockSquare::start().await;
    mock.upsert_catalog([
        square_item(
            "ITEM_BURGER",
            "Burger",
            "CAT",
            &[("VAR_SINGLE", "Single", 950)],
            &[("ML_SAUCE", 0, 1)],
        ),
        square_modifier_list("ML_SAUCE", "Sauce", 0, 1, &[("MOD_BBQ", "BBQ", 50)]),
    ]);
    let (plugins, _dir) = runtime("square", mock.host_port()).await;
    let conn = square_connection(&mock);
    let line = square_burgers(vec![OrderModifier {
        provider_id: Some("MOD_BBQ".to_owned()),
        group_id: Some("ML_SAUCE".to_owned()),
        name: "BBQ".to_owned(),
        quantity: 1,
        unit_price: 50,
    }]);
    let first = order("ord-sq-1", line.clone(), Some(2000));
    let priced = ok(plugins.price_order("square", &ctx(), &conn, &first).await);
    assert_eq!(
        (priced.total, priced.lines.clone()),
        (2000, vec![("l1".to_owned(), 2000)])
    );
    let created: OrderStatus = ok(plugins.submit_order("square", &ctx(), &conn, &first).await);
    assert_eq!(created.state, OrderState::Pending, "{created:?}");
    assert_eq!(created.our_order_id.as_deref(), Some("ord-sq-1"));
    assert_eq!(created.version, Some(2), "created, then paid");
    let again = ok(plugins.submit_order("square", &ctx(), &conn, &first).await);
    assert_eq!(again.provider_order_id, created.provider_order_id);
    assert_eq!(mock.orders_with_reference("ord-sq-1").len(), 1);
    assert_eq!(mock.payments().len(), 1, "paid once: {:?}", mock.payments());

    let (old, accepted) = mock
        .set_fulfillment_state(&created.provider_order_id, "RESERVED")
        .expect("staff accept it");
    let thin = webhook(square_fulfillment_webhook("ev-sq-1", &accepted, &old));
    let event = ok(plugins.parse_webhook("square", &ctx(), &thin).await);
    assert_eq!(event.order_updates.len(), 1, "{event:?}");
    let update = &event.order_updates[0];
    assert_eq!(update.provider_order_id, created.provider_order_id);
    assert_eq!(
        (update.version, update.status.is_none()),
        (Some(3), true),
        "thin"
    );
    let status = ok(plugins
        .order_status("square", &ctx(), &conn, &created.provider_order_id)
        .await);
    assert_eq!(
        (status.state, status.version),
        (OrderState::InProgress, Some(3))
    );

    // Created, but the answer lost (504): the host's HTTP layer does not resend a POST that
    // may have landed, so the submit fails retryably; the look-up finds the order, and a
    // resubmit (what the injection worker does only after a look-up found nothing) replays
    // the key instead of making a second one.
    mock.lose_next_answers(1, LostAnswer::GatewayTimeout);
    mock.clear_requests();
    let lost = order("ord-sq-2", line, None);
    let failed = plugins.submit_order("square", &ctx(), &conn, &lost).await;
    assert!(
        matches!(
            &failed,
            Ok(Err(ProviderError::Upstream(_) | ProviderError::TimedOut(_)))
        ),
        "a lost answer fails retryably: {failed:?}"
    );
    let posts: Vec<u16> = mock
        .requests_to("/v2/orders")
        .iter()
        .filter(|r| r.path == "/v2/orders")
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [504], "a POST that may have landed is not resent");
    let found = ok(plugins
        .lookup_order("square", &ctx(), &conn, "ord-sq-2")
        .await)
    .expect("the order is found");
    let replayed = ok(plugins.submit_order("square", &ctx(), &conn, &lost).await);
    assert_eq!(found.provider_order_id, replayed.provider_order_id);
    assert_eq!(mock.orders_with_reference("ord-sq-2").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn toast_orders_are_priced_created_once_and_followed() {
    let mock = MockToast::start().await;
    mock.publish_menus(json!({
        "menus": [{"guid": "menu", "name": "Lunch", "menuGroups": [{
            "guid": "grp", "name": "Burgers",
            "menuItems": [{"guid": "burger", "name": "Burger", "price": 9.5,
                           "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [1]}]}]}],
        "modifierGroupReferences": {"1": {"referenceId": 1, "guid": "sauce", "name": "Sauce",
            "minSelections": 1, "maxSelections": 1, "requiredMode": "REQUIRED",
            "modifierOptionReferences": [10]}},
        "modifierOptionReferences": {"10": {"referenceId": 10, "guid": "aioli", "name": "Aioli",
            "price": 0.5}},
    }));
    mock.set_tax_rate(800);
    let (plugins, _dir) = runtime("toast", mock.host_port()).await;
    let conn = toast_connection(&mock);
    let line = OrderLine {
        line_id: "l1".to_owned(),
        item_id: Some("burger".to_owned()),
        item_group_id: Some("grp".to_owned()),
        variation_id: None,
        name: "Burger".to_owned(),
        quantity: "2".to_owned(),
        unit_price: 950,
        modifiers: vec![OrderModifier {
            provider_id: Some("aioli".to_owned()),
            group_id: Some("sauce".to_owned()),
            name: "Aioli".to_owned(),
            quantity: 1,
            unit_price: 50,
        }],
        note: None,
    };
    let first = order("ord-t-1", line.clone(), Some(2160));
    let priced = ok(plugins.price_order("toast", &ctx(), &conn, &first).await);
    assert_eq!(
        (priced.subtotal, priced.tax, priced.total),
        (2000, 160, 2160)
    );
    let created = ok(plugins.submit_order("toast", &ctx(), &conn, &first).await);
    assert_eq!(created.state, OrderState::Accepted, "{created:?}");
    assert_eq!(created.total, Some(2160));
    // Toast refuses the duplicate externalId; the plugin answers the order that exists.
    let again = ok(plugins.submit_order("toast", &ctx(), &conn, &first).await);
    assert_eq!(again.provider_order_id, created.provider_order_id);
    assert_eq!(mock.orders_with_external_id("ord-t-1").len(), 1);

    let fired = mock
        .set_fulfillment_status(&created.provider_order_id, "SENT")
        .expect("the kitchen fires it");
    let event = ok(plugins
        .parse_webhook(
            "toast",
            &ctx(),
            &webhook(toast_order_webhook("ev-t-1", &fired)),
        )
        .await);
    let carried = event.order_updates[0]
        .status
        .clone()
        .expect("the whole order");
    assert_eq!(carried.state, OrderState::InProgress, "{event:?}");
    assert_eq!(event.transactions.len(), 1, "and the sale: {event:?}");
    let status = ok(plugins
        .order_status("toast", &ctx(), &conn, &created.provider_order_id)
        .await);
    assert_eq!(status.state, OrderState::InProgress);
    assert!(
        status.version > created.version,
        "{status:?} after {created:?}"
    );

    // Created, but the answer lost (504): the host's retry of the POST is refused as a
    // duplicate, and the plugin answers the order that landed.
    mock.lose_next_answers(1, LostAnswer::GatewayTimeout);
    mock.clear_requests();
    let lost = order("ord-t-2", line, None);
    let failed = plugins.submit_order("toast", &ctx(), &conn, &lost).await;
    assert!(
        matches!(
            &failed,
            Ok(Err(ProviderError::Upstream(_) | ProviderError::TimedOut(_)))
        ),
        "a lost answer fails retryably: {failed:?}"
    );
    let found = ok(plugins
        .lookup_order("toast", &ctx(), &conn, "ord-t-2")
        .await)
    .expect("the order is found");
    // A resubmit anyway is refused as a duplicate, and the plugin answers the order there.
    let landed = ok(plugins.submit_order("toast", &ctx(), &conn, &lost).await);
    let posts: Vec<u16> = mock
        .requests_to("/orders/v2/orders")
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        posts,
        [504, 409],
        "not resent by the HTTP layer; a duplicate when resubmitted"
    );
    assert_eq!(found.provider_order_id, landed.provider_order_id);
    assert_eq!(mock.orders_with_external_id("ord-t-2").len(), 1);
    assert_eq!(mock.orders_created().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn square_prices_and_charges_the_sellers_catalog_taxes() {
    let mock = MockSquare::start().await;
    let mut burger = square_item(
        "ITEM_BURGER",
        "Burger",
        "CAT",
        &[("VAR_SINGLE", "Single", 950)],
        &[],
    );
    burger["item_data"]["tax_ids"] = json!(["TAX_SALES"]);
    mock.upsert_catalog([burger, square_tax("TAX_SALES", "Sales tax", "8.875")]);
    let (plugins, _dir) = runtime("square", mock.host_port()).await;
    let conn = square_connection(&mock);
    let burger_line = square_burgers(Vec::new());
    let mut taxed = order("ord-sq-tax", burger_line, Some(2069));
    // An ad hoc line is a custom amount: the sales tax applies to custom amounts too.
    taxed.lines.push(OrderLine {
        line_id: "l2".to_owned(),
        item_id: None,
        item_group_id: None,
        variation_id: None,
        name: "Candle".to_owned(),
        quantity: "1".to_owned(),
        unit_price: 200,
        modifiers: Vec::new(),
        note: None,
    });
    let priced = ok(plugins.price_order("square", &ctx(), &conn, &taxed).await);
    // 8.875 % of 1,900 is 168.625 → 169; of 200, 17.75 → 18.
    assert_eq!(
        (priced.subtotal, priced.tax, priced.total),
        (2100, 187, 2287),
        "{priced:?}"
    );
    assert_eq!(
        priced.lines,
        vec![("l1".to_owned(), 2069), ("l2".to_owned(), 218)]
    );
    taxed.total = priced.total;
    taxed.payment = Some(ExternalPayment {
        amount: priced.total,
        tip: 0,
        source: "web".to_owned(),
    });
    let created = ok(plugins.submit_order("square", &ctx(), &conn, &taxed).await);
    assert_eq!(created.total, Some(2287), "{created:?}");
    let stored = mock.orders_with_reference("ord-sq-tax");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["total_tax_money"]["amount"], 187, "{}", stored[0]);
    let payments = mock.payments();
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(
        payments[0]["amount_money"]["amount"], 2287,
        "the external tender covers the tax, so staff see the order paid"
    );
}

fn square_connection(mock: &MockSquare) -> Connection {
    Connection {
        credentials: vec![("access_token".to_owned(), SQUARE_TOKEN.to_owned())],
        location_id: "main".to_owned(),
        environment: Environment::Sandbox,
        base_url: Some(mock.base_url().to_owned()),
    }
}

/// Line `l1` of the Square tests: two single burgers (9.50 each) with `modifiers`.
fn square_burgers(modifiers: Vec<OrderModifier>) -> OrderLine {
    OrderLine {
        line_id: "l1".to_owned(),
        item_id: Some("ITEM_BURGER".to_owned()),
        item_group_id: None,
        variation_id: Some("VAR_SINGLE".to_owned()),
        name: "Burger".to_owned(),
        quantity: "2".to_owned(),
        unit_price: 950,
        modifiers,
        note: None,
    }
}

fn toast_connection(mock: &MockToast) -> Connection {
    Connection {
        credentials: vec![
            ("client_id".to_owned(), TOAST_CLIENT_ID.to_owned()),
            ("client_secret".to_owned(), TOAST_CLIENT_SECRET.to_owned()),
        ],
        location_id: TOAST_RESTAURANT.to_owned(),
        environment: Environment::Sandbox,
        base_url: Some(mock.base_url().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn toast_takes_the_whole_guest_and_address_or_the_plugin_refuses_before_calling() {
    let mock = MockToast::start().await;
    mock.publish_menus(json!({
        "menus": [{"guid": "menu", "name": "Lunch", "menuGroups": [{
            "guid": "grp", "name": "Burgers",
            "menuItems": [{"guid": "burger", "name": "Burger", "price": 9.5,
                           "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": []}]}]}],
        "modifierGroupReferences": {},
        "modifierOptionReferences": {},
    }));
    let (plugins, _dir) = runtime("toast", mock.host_port()).await;
    let conn = toast_connection(&mock);
    let line = OrderLine {
        line_id: "l1".to_owned(),
        item_id: Some("burger".to_owned()),
        item_group_id: Some("grp".to_owned()),
        variation_id: None,
        name: "Burger".to_owned(),
        quantity: "1".to_owned(),
        unit_price: 950,
        modifiers: Vec::new(),
        note: None,
    };
    let mut delivery = order("ord-t-del", line, None);
    delivery.fulfilment.kind = FulfilmentKind::Delivery;
    delivery.fulfilment.delivery_address = vec![
        "1 Main St".to_owned(),
        "Apt 2".to_owned(),
        "Springfield, il 62701".to_owned(),
    ];
    let created = ok(plugins
        .submit_order("toast", &ctx(), &conn, &delivery)
        .await);
    let stored = mock
        .order(&created.provider_order_id)
        .expect("the order is in Toast");
    assert_eq!(
        stored["deliveryInfo"],
        json!({"address1": "1 Main St", "address2": "Apt 2", "city": "Springfield",
               "state": "IL", "zipCode": "62701"}),
        "{stored}"
    );
    assert_eq!(stored["checks"][0]["customer"]["lastName"], "Lee");

    // A one-word name and an address without its state: refused by the plugin, naming
    // Toast's field, with nothing sent (not even a login or a configuration read).
    mock.clear_requests();
    let mut one_word = delivery.clone();
    one_word.our_order_id = "ord-t-ann".to_owned();
    one_word.fulfilment.customer_name = "Ann".to_owned();
    let mut no_state = delivery.clone();
    no_state.our_order_id = "ord-t-nostate".to_owned();
    no_state.fulfilment.delivery_address = vec!["1 Main St".to_owned(), "Springfield".to_owned()];
    for (bad, field) in [
        (&one_word, "checks[0].customer.lastName"),
        (&no_state, "deliveryInfo.state"),
    ] {
        for answer in [
            plugins
                .submit_order("toast", &ctx(), &conn, bad)
                .await
                .map(|r| r.map(|_| ())),
            plugins
                .price_order("toast", &ctx(), &conn, bad)
                .await
                .map(|r| r.map(|_| ())),
        ] {
            match answer {
                Ok(Err(ProviderError::Rejected(r))) => {
                    assert_eq!(r.field.as_deref(), Some(field), "{r:?}");
                    assert_eq!(r.status, None, "the plugin's refusal, not Toast's 400");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    assert_eq!(mock.orders_created().len(), 1);
}
