//! The Toast order endpoints over HTTP: duplicate externalIds in both forms, menu checks and
//! pricing, POS-side changes, the fault knobs and configuration paging.
use super::*;
use crate::mock_orders::OrderFault;
use crate::mock_toast::{
    toast_order_webhook, MockToast, TOAST_CLIENT_ID, TOAST_CLIENT_SECRET, TOAST_RESTAURANT,
};

struct Toast {
    mock: MockToast,
    token: String,
}

impl Toast {
    async fn start() -> Toast {
        let mock = MockToast::start().await;
        mock.publish_menus(json!({
            "menus": [{"guid": "menu", "name": "Lunch", "menuGroups": [{
                "guid": "grp", "name": "Burgers",
                "menuItems": [{"guid": "burger", "name": "Burger", "price": 9.5,
                               "pricingStrategy": "BASE_PRICE", "modifierGroupReferences": [1]}],
            }]}],
            "modifierGroupReferences": {"1": {"referenceId": 1, "guid": "sauce", "name": "Sauce",
                "minSelections": 1, "maxSelections": 1, "requiredMode": "REQUIRED",
                "modifierOptionReferences": [10, 11]}},
            "modifierOptionReferences": {
                "10": {"referenceId": 10, "guid": "ketchup", "name": "Ketchup", "price": 0},
                "11": {"referenceId": 11, "guid": "aioli", "name": "Aioli", "price": 0.5}},
        }));
        let login: Value = reqwest::Client::new()
            .post(format!(
                "{}/authentication/v1/authentication/login",
                mock.base_url()
            ))
            .json(
                &json!({"clientId": TOAST_CLIENT_ID, "clientSecret": TOAST_CLIENT_SECRET,
                          "userAccessType": "TOAST_MACHINE_CLIENT"}),
            )
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login JSON");
        let token = login["token"]["accessToken"]
            .as_str()
            .expect("token")
            .to_owned();
        Toast { mock, token }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.mock.base_url()))
            .bearer_auth(&self.token)
            .header("Toast-Restaurant-External-ID", TOAST_RESTAURANT);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("the mock answers")
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.send(reqwest::Method::POST, path, Some(body)).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn order(external_id: &str, sauce: Option<&str>) -> Value {
    let modifiers: Vec<Value> = sauce
        .map(|s| json!({"item": {"guid": s}, "optionGroup": {"guid": "sauce"}, "quantity": 1}))
        .into_iter()
        .collect();
    json!({
        "entityType": "Order", "externalId": external_id,
        "diningOption": {"guid": TOAST_TAKEOUT_OPTION},
        "checks": [{
            "customer": {"firstName": "Ann", "lastName": "Lee", "phone": "5550100", "email": "ann@example.com"},
            "selections": [{"item": {"guid": "burger"}, "itemGroup": {"guid": "grp"},
                            "quantity": 2, "modifiers": modifiers}],
            "payments": [{"type": "OTHER", "otherPayment": {"guid": TOAST_ONLINE_PAYMENT},
                          "amount": 20.52, "tipAmount": 1.0}],
        }],
    })
}

#[tokio::test]
async fn a_duplicate_external_id_is_refused_in_either_form_and_stores_nothing() {
    let toast = Toast::start().await;
    toast.mock.set_tax_rate(800);
    let (status, created) = toast
        .post("/orders/v2/orders", &order("ord-1", Some("aioli")))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["externalId"], "ord-1");
    assert_eq!(created["approvalStatus"], "APPROVED");
    let check = &created["checks"][0];
    // (9.50 + 0.50) × 2 = 20.00, 8 % tax 1.60.
    assert_eq!(
        (check["amount"].to_string(), check["taxAmount"].to_string()),
        ("20.0".into(), "1.6".into())
    );
    assert_eq!(check["totalAmount"].to_string(), "21.6");
    assert_eq!(check["paymentStatus"], "OPEN", "20.52 does not cover 21.60");
    assert_eq!(check["selections"][0]["fulfillmentStatus"], "NEW");

    let (status, refused) = toast
        .post("/orders/v2/orders", &order("ord-1", Some("ketchup")))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("externalId ord-1"));
    toast.mock.set_duplicate_answer(DuplicateAnswer::BadRequest);
    let (status, refused) = toast
        .post("/orders/v2/orders", &order("ord-1", Some("ketchup")))
        .await;
    assert_eq!((status, &refused["fieldName"]), (400, &json!("externalId")));
    assert_eq!(toast.mock.orders_with_external_id("ord-1").len(), 1);
    assert_eq!(toast.mock.orders_created().len(), 1);

    // The order reads back, and ordersBulk lists it for a look-up by externalId.
    let guid = created["guid"].as_str().unwrap();
    let read = toast
        .send(
            reqwest::Method::GET,
            &format!("/orders/v2/orders/{guid}"),
            None,
        )
        .await;
    assert_eq!(read.status(), 200);
    let now = jiff::Timestamp::now();
    let bulk: Value = toast
        .send(
            reqwest::Method::GET,
            &format!(
                "/orders/v2/ordersBulk?startDate={}&endDate={}",
                crate::enc(&toast_time(now - jiff::SignedDuration::from_hours(1))),
                crate::enc(&toast_time(now + jiff::SignedDuration::from_mins(1)))
            ),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bulk[0]["externalId"], "ord-1", "{bulk}");
}

#[tokio::test]
async fn orders_are_checked_against_the_menu_and_priced_without_storing() {
    let toast = Toast::start().await;
    let (status, refused) = toast.post("/orders/v2/orders", &order("ord-2", None)).await;
    assert_eq!(status, 400);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("requires at least 1"),
        "{refused}"
    );
    let mut unknown = order("ord-2", Some("ketchup"));
    unknown["checks"][0]["selections"][0]["item"]["guid"] = json!("nope");
    assert_eq!(toast.post("/orders/v2/orders", &unknown).await.0, 400);
    let mut no_email = order("ord-2", Some("ketchup"));
    no_email["checks"][0]["customer"]["email"] = json!("");
    let (status, refused) = toast.post("/orders/v2/orders", &no_email).await;
    assert_eq!(
        (status, &refused["fieldName"]),
        (400, &json!("checks[0].customer.email"))
    );
    let mut card = order("ord-2", Some("ketchup"));
    card["checks"][0]["payments"][0]["type"] = json!("CREDIT");
    assert_eq!(toast.post("/orders/v2/orders", &card).await.0, 400);
    let (status, priced) = toast
        .post("/orders/v2/prices", &order("ord-2", Some("ketchup")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(priced["checks"][0]["totalAmount"].to_string(), "19.0");
    assert!(toast.mock.orders_created().is_empty());
    // Priced only: the externalId is still free.
    let (status, created) = toast
        .post("/orders/v2/orders", &order("ord-2", Some("ketchup")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(created["checks"][0]["paymentStatus"], "PAID");

    // Staff fire, then finish it; each change is later and travels in the webhook.
    let guid = created["guid"].as_str().unwrap();
    let sent = toast.mock.set_fulfillment_status(guid, "SENT").unwrap();
    let ready = toast.mock.set_fulfillment_status(guid, "READY").unwrap();
    assert!(
        parse_toast_time(ready["modifiedDate"].as_str().unwrap())
            > parse_toast_time(sent["modifiedDate"].as_str().unwrap())
    );
    let body: Value = serde_json::from_str(&toast_order_webhook("ev", &ready)).unwrap();
    assert_eq!(
        body["details"]["order"]["checks"][0]["selections"][0]["fulfillmentStatus"],
        "READY"
    );
    assert_eq!(toast.mock.void_order(guid).unwrap()["voided"], true);
}

#[tokio::test]
async fn a_delivery_needs_the_whole_guest_and_a_structured_address() {
    let toast = Toast::start().await;
    let delivery = |info: Value| {
        let mut body = order("ord-del", Some("ketchup"));
        body["diningOption"]["guid"] = json!(TOAST_DELIVERY_OPTION);
        body["deliveryInfo"] = info;
        body
    };
    let whole = json!({"address1": "1 Main St", "city": "Springfield", "state": "IL",
                       "zipCode": "62701"});
    let cases = [
        (
            delivery(json!({"address1": "1 Main St", "address2": "Apt 2"})),
            "deliveryInfo.city",
        ),
        (
            delivery(json!({"address1": "1 Main St", "city": "Springfield", "state": "IL"})),
            "deliveryInfo.zipCode",
        ),
        (
            delivery(
                json!({"address1": "1 Main St", "city": "Springfield", "state": "Illinois",
                            "zipCode": "62701"}),
            ),
            "deliveryInfo.state",
        ),
        (
            delivery(
                json!({"address1": "1 Main St", "city": "Springfield", "state": "il",
                            "zipCode": "62701"}),
            ),
            "deliveryInfo.state",
        ),
        (delivery(Value::Null), "deliveryInfo"),
    ];
    for (body, field) in cases {
        for path in ["/orders/v2/prices", "/orders/v2/orders"] {
            let (status, refused) = toast.post(path, &body).await;
            assert_eq!(
                (status, &refused["fieldName"]),
                (400, &json!(field)),
                "{path}"
            );
        }
    }
    let mut one_word = delivery(whole.clone());
    one_word["checks"][0]["customer"]["lastName"] = json!("");
    let (status, refused) = toast.post("/orders/v2/orders", &one_word).await;
    assert_eq!(
        (status, &refused["fieldName"]),
        (400, &json!("checks[0].customer.lastName"))
    );
    assert!(toast.mock.orders_created().is_empty());
    let (status, created) = toast
        .post("/orders/v2/orders", &delivery(whole.clone()))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["deliveryInfo"], whole);
}

#[tokio::test]
async fn order_faults_count_down_and_carry_retry_after() {
    let toast = Toast::start().await;
    toast.mock.fail_orders(
        OrderFault::next(2, 429)
            .on(OrderCall::Create)
            .retry_after("2"),
    );
    for _ in 0..2 {
        let response = toast
            .send(
                reqwest::Method::POST,
                "/orders/v2/orders",
                Some(&order("ord-3", Some("ketchup"))),
            )
            .await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
    }
    assert!(toast.mock.orders_created().is_empty());
    toast.mock.lose_next_answers(1, LostAnswer::GatewayTimeout);
    assert_eq!(
        toast
            .post("/orders/v2/orders", &order("ord-3", Some("ketchup")))
            .await
            .0,
        504
    );
    assert_eq!(
        toast.mock.orders_with_external_id("ord-3").len(),
        1,
        "timed out, but created"
    );
    assert_eq!(
        toast
            .post("/orders/v2/orders", &order("ord-3", Some("ketchup")))
            .await
            .0,
        409
    );
}

#[tokio::test]
async fn configuration_lists_page_by_token() {
    let toast = Toast::start().await;
    toast.mock.set_config_page_size(2);
    let first = toast
        .send(reqwest::Method::GET, "/config/v2/diningOptions", None)
        .await;
    let token = first.headers()["toast-next-page-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let page: Value = first.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let second = toast
        .send(
            reqwest::Method::GET,
            &format!("/config/v2/diningOptions?pageToken={token}"),
            None,
        )
        .await;
    assert!(second.headers().get("toast-next-page-token").is_none());
    let page: Value = second.json().await.unwrap();
    assert_eq!(page[0]["behavior"], "DINE_IN");
}
