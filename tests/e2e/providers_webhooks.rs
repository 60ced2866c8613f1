//! Provider webhooks through the real binary: Square and Toast signatures (accepted, wrong,
//! missing), Square's published signature example, replays, webhook + sync of the same
//! payment, and kill -9 right after an acknowledgement.

use std::time::Duration;

use posbridge_harness::mock_square::{
    square_payment_webhook, square_signature, MockSquare, SquarePayment,
};
use posbridge_harness::mock_toast::{toast_order_webhook, toast_signature, ToastOrder};
use posbridge_harness::{both_backends, eventually, Backend, Client, TestServer};
use serde_json::{json, Value};

use crate::providers::{
    all_transactions, approve_host, assert_counts, at_ms, connect_square, connect_square_webhooks,
    next_sale_event, now_ms, post_signed_square, post_signed_toast, post_webhook, revenue, sync,
    with_external_id, SQUARE_SIGNATURE_HEADER,
};

const SQUARE_KEY: &str = "sq-webhook-signature-key-1";

/// Waits until `venue` lists exactly `n` transactions and returns them.
async fn wait_for_count(manager: &Client, venue: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(15),
        &format!("{n} transactions at {venue}"),
        || async {
            let items = all_transactions(manager, venue).await;
            (items.len() == n).then_some(items)
        },
    )
    .await
}

/// Posts a correctly signed Square webhook for `payment`, asserting 200 `received`.
async fn square_webhook(
    srv: &TestServer,
    integration: &Value,
    event_id: &str,
    payment: &SquarePayment,
) {
    let body = square_payment_webhook("payment.created", event_id, &payment.json());
    let resp = post_signed_square(srv, integration, &body, SQUARE_KEY).await;
    assert_eq!(
        resp.expect(200)["received"],
        true,
        "acknowledged: {}",
        resp.text
    );
}

async fn square_webhooks(backend: Backend) {
    let (srv, tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let integration = connect_square_webhooks(&manager, &mock, "downtown", SQUARE_KEY).await;
    let id = integration["id"].as_str().unwrap().to_owned();
    let url = integration["webhook_url"].as_str().unwrap().to_owned();
    assert!(
        url.ends_with(&format!("/webhooks/square/{id}")),
        "default webhook_url names the route: {url}"
    );
    assert_eq!(integration["webhook_signature_key_set"], true);
    let mut ws = srv.ws("kitchen", &tenant.manager.key, None).await;
    ws.hello().await;

    // A signed payment.created: acknowledged, then the sale appears (and is announced).
    let t0 = now_ms() - 30_000;
    let p1 = SquarePayment::new("wh-pay-1", 2500, 300, at_ms(t0)).fingerprint("fp-1");
    square_webhook(&srv, &integration, "evt-1", &p1).await;
    let items = wait_for_count(&manager, "downtown", 1).await;
    assert_eq!(items[0]["external_id"], "wh-pay-1");
    assert_eq!(items[0]["total"], 2800);
    assert_eq!(items[0]["source"], "webhook");
    let event = next_sale_event(&mut ws).await;
    assert_eq!(event["data"]["external_id"], "wh-pay-1", "{event}");
    assert_eq!(event["data"]["venue"], "downtown", "{event}");
    assert_eq!(event["data"]["provider"], "square", "{event}");
    assert_eq!(event["data"]["total"], 2800, "{event}");

    // Wrong key, wrong URL, missing header, garbage header: 401, nothing stored.
    let p2 = SquarePayment::new("wh-pay-2", 1000, 0, at_ms(t0 + 1000));
    let body2 = square_payment_webhook("payment.created", "evt-2", &p2.json());
    let wrong_key = square_signature(&url, body2.as_bytes(), "another-key");
    let wrong_url = square_signature(
        &url.replace("/webhooks/", "/webhookz/"),
        body2.as_bytes(),
        SQUARE_KEY,
    );
    for headers in [
        vec![(SQUARE_SIGNATURE_HEADER, wrong_key.as_str())],
        vec![(SQUARE_SIGNATURE_HEADER, wrong_url.as_str())],
        vec![],
        vec![(SQUARE_SIGNATURE_HEADER, "not base64 at all")],
    ] {
        let resp = post_webhook(&srv, "square", &id, &body2, &headers).await;
        assert_eq!(
            resp.status, 401,
            "bad/missing signature {headers:?} → 401, got {} {}",
            resp.status, resp.text
        );
    }
    // The body tampered after signing.
    let good_sig = square_signature(&url, body2.as_bytes(), SQUARE_KEY);
    let tampered = body2.replace("1000", "9000");
    assert_ne!(tampered, body2);
    let resp = post_webhook(
        &srv,
        "square",
        &id,
        &tampered,
        &[(SQUARE_SIGNATURE_HEADER, &good_sig)],
    )
    .await;
    assert_eq!(resp.status, 401, "tampered body: {}", resp.text);
    // Unknown integration / wrong provider in the path: not found.
    let resp = post_webhook(
        &srv,
        "square",
        "no-such-integration",
        &body2,
        &[(SQUARE_SIGNATURE_HEADER, &good_sig)],
    )
    .await;
    assert_eq!(resp.status, 404, "{}", resp.text);
    let resp = post_webhook(
        &srv,
        "toast",
        &id,
        &body2,
        &[(SQUARE_SIGNATURE_HEADER, &good_sig)],
    )
    .await;
    assert_eq!(resp.status, 404, "{}", resp.text);

    // Replays of evt-1 (Square retries) are acknowledged and ignored.
    for _ in 0..3 {
        square_webhook(&srv, &integration, "evt-1", &p1).await;
    }
    // A later good webhook is the barrier: once it is in, everything before it was handled.
    let p3 = SquarePayment::new("wh-pay-3", 1200, 0, at_ms(t0 + 2000));
    square_webhook(&srv, &integration, "evt-3", &p3).await;
    let items = wait_for_count(&manager, "downtown", 2).await;
    let ids: Vec<&str> = items
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["wh-pay-3", "wh-pay-1"],
        "replays add nothing; refused ones are not stored"
    );
    assert_eq!(
        next_sale_event(&mut ws).await["data"]["external_id"],
        "wh-pay-3"
    );

    // The same payment by webhook and by sync is one sale.
    let p4 = SquarePayment::new("sync-pay-4", 700, 0, at_ms(t0 + 3000));
    mock.add_payments([p1.json(), p3.json(), p4.json()]);
    let stats = sync(&manager, "downtown").await;
    assert_counts(&stats, 3, 1, 0, 2, 1);
    let items = wait_for_count(&manager, "downtown", 3).await;
    assert_eq!(
        items
            .iter()
            .filter(|t| t["external_id"] == "wh-pay-1")
            .count(),
        1
    );

    // payment.updated carrying a refund (a new event id) updates the sale.
    let p1_refunded = p1.clone().refunded(800).updated_at(jiff::Timestamp::now());
    let body = square_payment_webhook("payment.updated", "evt-5", &p1_refunded.json());
    post_signed_square(&srv, &integration, &body, SQUARE_KEY)
        .await
        .expect(200);
    eventually(
        Duration::from_secs(15),
        "the refund from payment.updated",
        || async {
            let sale = with_external_id(&manager, "downtown", "wh-pay-1").await;
            (sale.len() == 1 && sale[0]["refunded"] == 800).then_some(())
        },
    )
    .await;
    let all = revenue(&manager, "downtown", "all").await;
    assert_eq!(all["total"], 2800 - 800 + 1200 + 700, "{all}");

    // A later poll still sees the older version (no refund): it must not overwrite the
    // fresher webhook.
    let stats = sync(&manager, "downtown").await;
    assert_counts(&stats, 3, 0, 0, 3, 1);
    let sale = with_external_id(&manager, "downtown", "wh-pay-1").await;
    assert_eq!(
        sale[0]["refunded"], 800,
        "a stale poll overwrote a fresher webhook"
    );

    // A disconnected integration takes no webhooks.
    manager
        .post("/pos/disconnect/downtown", &json!({}))
        .await
        .expect(200);
    let p6 = SquarePayment::new("wh-pay-6", 100, 0, at_ms(t0 + 4000));
    let body = square_payment_webhook("payment.created", "evt-6", &p6.json());
    let resp = post_signed_square(&srv, &integration, &body, SQUARE_KEY).await;
    assert!(
        (400..500).contains(&resp.status),
        "a disconnected integration refuses webhooks: {} {}",
        resp.status,
        resp.text
    );
}

/// The worked example in Square's published webhook documentation, verified by the real
/// plugin: an integration registered
/// for `https://webhook.site/webhooks` with key `signature-key`.
async fn square_published_example(backend: Backend) {
    const BODY: &str = r#"{"data":{"type":"webhooks","id":">id<"}}"#;
    const SIGNATURE: &str = "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=";
    let (srv, _tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let integration = connect_square(
        &manager,
        &mock,
        "example",
        json!({"webhook_signature_key": "signature-key",
               "webhook_url": "https://webhook.site/webhooks"}),
    )
    .await;
    assert_eq!(integration["webhook_url"], "https://webhook.site/webhooks");
    let id = integration["id"].as_str().unwrap();

    let ok = post_webhook(
        &srv,
        "square",
        id,
        BODY,
        &[(SQUARE_SIGNATURE_HEADER, SIGNATURE)],
    )
    .await;
    assert_eq!(
        ok.status, 200,
        "the published example must verify: {}",
        ok.text
    );
    // One byte changed in the body, or in the signature: refused.
    let body = BODY.replace(">id<", ">id!");
    let resp = post_webhook(
        &srv,
        "square",
        id,
        &body,
        &[(SQUARE_SIGNATURE_HEADER, SIGNATURE)],
    )
    .await;
    assert_eq!(resp.status, 401, "{}", resp.text);
    let sig = SIGNATURE.replacen('C', "D", 1);
    let resp = post_webhook(&srv, "square", id, BODY, &[(SQUARE_SIGNATURE_HEADER, &sig)]).await;
    assert_eq!(resp.status, 401, "{}", resp.text);

    // One byte changed in the key or the URL: refused (the plugin signs with what is stored).
    let rekeyed = connect_square(
        &manager,
        &mock,
        "example",
        json!({"webhook_signature_key": "signature-kez",
               "webhook_url": "https://webhook.site/webhooks"}),
    )
    .await;
    assert_eq!(rekeyed["id"], id, "reconnecting keeps the integration");
    let resp = post_webhook(
        &srv,
        "square",
        id,
        BODY,
        &[(SQUARE_SIGNATURE_HEADER, SIGNATURE)],
    )
    .await;
    assert_eq!(resp.status, 401, "changed key: {}", resp.text);
    connect_square(
        &manager,
        &mock,
        "example",
        json!({"webhook_signature_key": "signature-key",
               "webhook_url": "https://webhook.site/webhookz"}),
    )
    .await;
    let resp = post_webhook(
        &srv,
        "square",
        id,
        BODY,
        &[(SQUARE_SIGNATURE_HEADER, SIGNATURE)],
    )
    .await;
    assert_eq!(resp.status, 401, "changed URL: {}", resp.text);
}

async fn toast_webhooks(backend: Backend) {
    const KEY: &str = "toast-webhook-secret-1";
    let (srv, manager, mock, id) = crate::providers_toast::toast_webhook_venue(backend, KEY).await;
    let id = id.as_str();

    let order = ToastOrder::paid("wh-ord-1", at_ms(now_ms() - 30_000), 1010, 83, 200);
    let body = toast_order_webhook("toast-evt-1", &order.json());
    let resp = post_signed_toast(&srv, id, &body, KEY, "order_updated").await;
    assert_eq!(resp.expect(200)["received"], true, "{}", resp.text);
    let items = wait_for_count(&manager, "uptown", 1).await;
    assert_eq!(items[0]["external_id"], "wh-ord-1");
    assert_eq!(
        items[0]["total"], 1293,
        "decimal dollars → cents: {}",
        items[0]
    );
    assert_eq!(items[0]["source"], "webhook");

    // Wrong secret, unsigned: 401.
    let other = ToastOrder::paid("wh-ord-2", at_ms(now_ms() - 20_000), 500, 40, 0);
    let body2 = toast_order_webhook("toast-evt-2", &other.json());
    let bad = toast_signature(&body2, "not-the-secret");
    let resp = post_webhook(&srv, "toast", id, &body2, &[("Toast-Signature", &bad)]).await;
    assert_eq!(resp.status, 401, "{}", resp.text);
    let resp = post_webhook(&srv, "toast", id, &body2, &[]).await;
    assert_eq!(resp.status, 401, "{}", resp.text);

    // Replay, then a barrier webhook.
    let resp = post_signed_toast(&srv, id, &body, KEY, "order_updated").await;
    resp.expect(200);
    let third = ToastOrder::paid("wh-ord-3", at_ms(now_ms() - 10_000), 700, 56, 0);
    let body3 = toast_order_webhook("toast-evt-3", &third.json());
    post_signed_toast(&srv, id, &body3, KEY, "order_updated")
        .await
        .expect(200);
    let items = wait_for_count(&manager, "uptown", 2).await;
    let ids: Vec<&str> = items
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["wh-ord-3", "wh-ord-1"]);

    // The same order by sync is a duplicate.
    mock.add_orders([order.json()]);
    let stats = sync(&manager, "uptown").await;
    assert_counts(&stats, 1, 0, 0, 1, 1);
    assert_eq!(all_transactions(&manager, "uptown").await.len(), 2);
}

/// A webhook acknowledged right before kill -9 is processed exactly once after restart.
async fn webhook_survives_kill9(backend: Backend) {
    // Enough that the inbox worker is surely mid-batch when the process dies.
    const BURST: i64 = 50;
    let mut srv = crate::start(backend).await;
    let tenant = srv.setup_tenant("kitchen").await;
    let mock = MockSquare::start().await;
    approve_host(&srv, "square", mock.host_port()).await;
    let integration =
        connect_square_webhooks(&srv.manager(&tenant), &mock, "downtown", SQUARE_KEY).await;

    let t0 = now_ms() - 60_000;
    let payments: Vec<SquarePayment> = (0..BURST)
        .map(|i| SquarePayment::new(&format!("crash-{i:02}"), 1000 + i, 0, at_ms(t0 + i)))
        .collect();
    let bodies: Vec<(String, String)> = payments
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let body =
                square_payment_webhook("payment.created", &format!("crash-evt-{i}"), &p.json());
            let sig = square_signature(
                integration["webhook_url"].as_str().unwrap(),
                body.as_bytes(),
                SQUARE_KEY,
            );
            (body, sig)
        })
        .collect();
    let id = integration["id"].as_str().unwrap().to_owned();
    let mut posts = Vec::new();
    for (body, sig) in &bodies {
        let srv = &srv;
        let id = &id;
        posts.push(async move {
            post_webhook(srv, "square", id, body, &[(SQUARE_SIGNATURE_HEADER, sig)]).await
        });
    }
    let acks = futures_util::future::join_all(posts).await;
    for ack in &acks {
        assert_eq!(ack.status, 200, "acknowledged: {}", ack.text);
    }
    let pid = srv.pid().expect("server running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -9 {pid}");
    let status = srv.wait_exit().await;
    assert!(!status.success(), "killed, not exited: {status}");

    srv.start_again().await;
    let manager = srv.manager(&tenant);
    // Within 20 s: a delivery the killed process had claimed mid-processing must not sit
    // out a long claim before the restarted process handles it.
    let items = eventually(
        Duration::from_secs(20),
        "every acknowledged webhook processed within 20 s of the restart",
        || async {
            let items = all_transactions(&manager, "downtown").await;
            (items.len() >= BURST as usize).then_some(items)
        },
    )
    .await;
    let mut ids: Vec<&str> = items
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let expected: Vec<String> = (0..BURST).map(|i| format!("crash-{i:02}")).collect();
    assert_eq!(ids, expected, "every acknowledged sale exactly once");

    // Square retries the deliveries after the outage: nothing more is recorded.
    for (body, sig) in &bodies {
        post_webhook(&srv, "square", &id, body, &[(SQUARE_SIGNATURE_HEADER, sig)])
            .await
            .expect(200);
    }
    let barrier = SquarePayment::new("crash-barrier", 5, 0, at_ms(t0 + 100));
    square_webhook(&srv, &integration, "crash-evt-barrier", &barrier).await;
    let items = wait_for_count(&manager, "downtown", BURST as usize + 1).await;
    let total: i64 = items.iter().map(|t| t["total"].as_i64().unwrap()).sum();
    assert_eq!(total, (0..BURST).map(|i| 1000 + i).sum::<i64>() + 5);
}

/// A burst of concurrent deliveries to two venues, each event sent twice and some payments
/// created then updated: the inbox records them in batches of many deliveries, and every
/// event counts exactly once, in each venue, with the later version of each payment.
async fn webhook_burst_records_each_event_once(backend: Backend) {
    let (srv, _tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let mut integrations = Vec::new();
    for venue in ["north", "south"] {
        let integration = connect_square_webhooks(&manager, &mock, venue, SQUARE_KEY).await;
        integrations.push(integration);
    }
    let t0 = now_ms() - 60_000;
    const PAYMENTS: usize = 60;
    let mut deliveries = Vec::new();
    for (v, integration) in integrations.iter().enumerate() {
        for i in 0..PAYMENTS {
            let payment =
                SquarePayment::new(&format!("burst-{v}-{i}"), 1000, 0, at_ms(t0 + i as i64));
            let event = format!("evt-burst-{v}-{i}");
            let body = square_payment_webhook("payment.created", &event, &payment.json());
            // Square redelivers when an ack is slow: the same event, byte for byte.
            deliveries.push((integration.clone(), body.clone()));
            deliveries.push((integration.clone(), body));
            if i % 3 == 0 {
                let refunded = payment.refunded(400).updated_at(jiff::Timestamp::now());
                let body = square_payment_webhook(
                    "payment.updated",
                    &format!("{event}-refund"),
                    &refunded.json(),
                );
                deliveries.push((integration.clone(), body));
            }
        }
    }
    let sends = deliveries.into_iter().map(|(integration, body)| {
        let srv = &srv;
        async move {
            post_signed_square(srv, &integration, &body, SQUARE_KEY)
                .await
                .expect(200);
        }
    });
    futures_util::future::join_all(sends).await;

    for venue in ["north", "south"] {
        let items = wait_for_count(&manager, venue, PAYMENTS).await;
        let refunds = PAYMENTS.div_ceil(3) as i64;
        // A refund can arrive before its payment.created (they race): the update then
        // lands first and the older created version never replaces it.
        eventually(Duration::from_secs(15), "every refund recorded", || async {
            let all = revenue(&manager, venue, "all").await;
            (all["total"] == json!(PAYMENTS as i64 * 1000 - refunds * 400)).then_some(())
        })
        .await;
        assert_eq!(items.len(), PAYMENTS, "{venue}: one sale per payment");
    }
}

both_backends!(
    square_webhooks,
    webhook_burst_records_each_event_once,
    square_published_example,
    toast_webhooks,
    webhook_survives_kill9
);
