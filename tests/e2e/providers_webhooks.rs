//! Provider webhooks through the real binary: Square and Toast signatures (accepted, wrong,
//! missing), Square's published signature example, replays, webhook + sync of the same
//! payment, and kill -9 right after an acknowledgement.

use std::time::Duration;

use posbridge_harness::mock_square::{
    square_payment_webhook, square_signature, MockSquare, SquarePayment,
};
use posbridge_harness::mock_toast::{toast_order_webhook, toast_signature, ToastOrder};
use posbridge_harness::{both_backends, eventually, Backend, Client, Resp, TenantKeys, TestServer};
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

/// A server with `downtown` connected to a mock Square, taking webhooks signed with
/// [`SQUARE_KEY`]; `p1` is a card payment of 2500 + 300 tip, 30 s old.
struct Hooked {
    srv: TestServer,
    tenant: TenantKeys,
    manager: Client,
    mock: MockSquare,
    integration: Value,
    id: String,
    url: String,
    t0: i64,
    p1: SquarePayment,
}

async fn hooked(backend: Backend) -> Hooked {
    let (srv, tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let integration = connect_square_webhooks(&manager, &mock, "downtown", SQUARE_KEY).await;
    let id = integration["id"].as_str().unwrap().to_owned();
    let url = integration["webhook_url"].as_str().unwrap().to_owned();
    let t0 = now_ms() - 30_000;
    let p1 = SquarePayment::new("wh-pay-1", 2500, 300, at_ms(t0)).fingerprint("fp-1");
    Hooked {
        srv,
        tenant,
        manager,
        mock,
        integration,
        id,
        url,
        t0,
        p1,
    }
}

impl Hooked {
    /// `wh-pay-3` (1200), two seconds after `p1`.
    fn p3(&self) -> SquarePayment {
        SquarePayment::new("wh-pay-3", 1200, 0, at_ms(self.t0 + 2000))
    }

    /// The external ids listed at `downtown` once it holds `n` sales.
    async fn ids_once(&self, n: usize) -> Vec<String> {
        wait_for_count(&self.manager, "downtown", n)
            .await
            .iter()
            .map(|t| t["external_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// [`hooked`], then `p1` and `p3` by webhook and `p1`, `p3` and `sync-pay-4` (700) by sync.
async fn hooked_and_synced(backend: Backend) -> Hooked {
    let h = hooked(backend).await;
    square_webhook(&h.srv, &h.integration, "evt-1", &h.p1).await;
    let p3 = h.p3();
    square_webhook(&h.srv, &h.integration, "evt-3", &p3).await;
    wait_for_count(&h.manager, "downtown", 2).await;
    let p4 = SquarePayment::new("sync-pay-4", 700, 0, at_ms(h.t0 + 3000));
    h.mock.add_payments([h.p1.json(), p3.json(), p4.json()]);
    let stats = sync(&h.manager, "downtown").await;
    assert_counts(&stats, 3, 1, 0, 2, 1);
    h
}

async fn the_default_webhook_url_names_the_route_and_the_key_is_set(backend: Backend) {
    let h = hooked(backend).await;
    assert!(
        h.url.ends_with(&format!("/webhooks/square/{}", h.id)),
        "default webhook_url names the route: {}",
        h.url
    );
    assert_eq!(h.integration["webhook_signature_key_set"], true);
}

async fn a_signed_payment_webhook_records_the_sale_and_announces_it(backend: Backend) {
    let h = hooked(backend).await;
    let mut ws = h.srv.ws("kitchen", &h.tenant.manager.key, None).await;
    ws.hello().await;
    square_webhook(&h.srv, &h.integration, "evt-1", &h.p1).await;
    let items = wait_for_count(&h.manager, "downtown", 1).await;
    assert_eq!(items[0]["external_id"], "wh-pay-1");
    assert_eq!(items[0]["total"], 2800);
    assert_eq!(items[0]["source"], "webhook");
    let event = next_sale_event(&mut ws).await;
    assert_eq!(event["data"]["external_id"], "wh-pay-1", "{event}");
    assert_eq!(event["data"]["venue"], "downtown", "{event}");
    assert_eq!(event["data"]["provider"], "square", "{event}");
    assert_eq!(event["data"]["total"], 2800, "{event}");
}

/// Wrong key, wrong URL, missing header, garbage header, body tampered after signing.
async fn a_bad_or_missing_signature_is_unauthorized_and_stores_nothing(backend: Backend) {
    let h = hooked(backend).await;
    let (srv, id, url) = (&h.srv, &h.id, &h.url);
    let p2 = SquarePayment::new("wh-pay-2", 1000, 0, at_ms(h.t0 + 1000));
    let body2 = square_payment_webhook("payment.created", "evt-2", &p2.json());
    let wrong_key = square_signature(url, body2.as_bytes(), "another-key");
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
        let resp = post_webhook(srv, "square", id, &body2, &headers).await;
        assert_eq!(
            resp.status, 401,
            "bad/missing signature {headers:?} → 401, got {} {}",
            resp.status, resp.text
        );
    }
    let good_sig = square_signature(url, body2.as_bytes(), SQUARE_KEY);
    let tampered = body2.replace("1000", "9000");
    assert_ne!(tampered, body2);
    let resp = post_webhook(
        srv,
        "square",
        id,
        &tampered,
        &[(SQUARE_SIGNATURE_HEADER, &good_sig)],
    )
    .await;
    assert_eq!(resp.status, 401, "tampered body: {}", resp.text);
    // A later good webhook is the barrier: once it is in, everything before it was handled.
    square_webhook(srv, &h.integration, "evt-3", &h.p3()).await;
    assert_eq!(
        h.ids_once(1).await,
        ["wh-pay-3"],
        "refused ones are not stored"
    );
}

async fn a_webhook_for_an_unknown_integration_or_another_provider_is_not_found(backend: Backend) {
    let h = hooked(backend).await;
    let body = square_payment_webhook("payment.created", "evt-1", &h.p1.json());
    let sig = square_signature(&h.url, body.as_bytes(), SQUARE_KEY);
    let resp = post_webhook(
        &h.srv,
        "square",
        "no-such-integration",
        &body,
        &[(SQUARE_SIGNATURE_HEADER, &sig)],
    )
    .await;
    assert_eq!(resp.status, 404, "{}", resp.text);
    let resp = post_webhook(
        &h.srv,
        "toast",
        &h.id,
        &body,
        &[(SQUARE_SIGNATURE_HEADER, &sig)],
    )
    .await;
    assert_eq!(resp.status, 404, "{}", resp.text);
}

async fn replayed_webhooks_are_acknowledged_and_add_nothing(backend: Backend) {
    let h = hooked(backend).await;
    let mut ws = h.srv.ws("kitchen", &h.tenant.manager.key, None).await;
    ws.hello().await;
    square_webhook(&h.srv, &h.integration, "evt-1", &h.p1).await;
    assert_eq!(
        next_sale_event(&mut ws).await["data"]["external_id"],
        "wh-pay-1"
    );
    // Square retries evt-1.
    for _ in 0..3 {
        square_webhook(&h.srv, &h.integration, "evt-1", &h.p1).await;
    }
    square_webhook(&h.srv, &h.integration, "evt-3", &h.p3()).await;
    assert_eq!(
        h.ids_once(2).await,
        ["wh-pay-3", "wh-pay-1"],
        "replays add nothing"
    );
    assert_eq!(
        next_sale_event(&mut ws).await["data"]["external_id"],
        "wh-pay-3"
    );
}

async fn the_same_payment_by_webhook_and_by_sync_is_one_sale(backend: Backend) {
    let h = hooked_and_synced(backend).await;
    let items = wait_for_count(&h.manager, "downtown", 3).await;
    assert_eq!(
        items
            .iter()
            .filter(|t| t["external_id"] == "wh-pay-1")
            .count(),
        1
    );
}

/// `payment.updated` carrying a refund (a new event id) updates the sale; a later poll that
/// still sees the older version (no refund) must not overwrite the fresher webhook.
async fn a_refund_by_webhook_updates_the_sale_and_a_stale_poll_does_not_undo_it(backend: Backend) {
    let h = hooked_and_synced(backend).await;
    let manager = &h.manager;
    let p1_refunded =
        h.p1.clone()
            .refunded(800)
            .updated_at(jiff::Timestamp::now());
    let body = square_payment_webhook("payment.updated", "evt-5", &p1_refunded.json());
    post_signed_square(&h.srv, &h.integration, &body, SQUARE_KEY)
        .await
        .expect(200);
    eventually(
        Duration::from_secs(15),
        "the refund from payment.updated",
        || async {
            let sale = with_external_id(manager, "downtown", "wh-pay-1").await;
            (sale.len() == 1 && sale[0]["refunded"] == 800).then_some(())
        },
    )
    .await;
    let all = revenue(manager, "downtown", "all").await;
    assert_eq!(all["total"], 2800 - 800 + 1200 + 700, "{all}");
    let stats = sync(manager, "downtown").await;
    assert_counts(&stats, 3, 0, 0, 3, 1);
    let sale = with_external_id(manager, "downtown", "wh-pay-1").await;
    assert_eq!(
        sale[0]["refunded"], 800,
        "a stale poll overwrote a fresher webhook"
    );
}

async fn a_disconnected_integration_refuses_webhooks(backend: Backend) {
    let h = hooked(backend).await;
    h.manager
        .post("/pos/disconnect/downtown", &json!({}))
        .await
        .expect(200);
    let p6 = SquarePayment::new("wh-pay-6", 100, 0, at_ms(h.t0 + 4000));
    let body = square_payment_webhook("payment.created", "evt-6", &p6.json());
    let resp = post_signed_square(&h.srv, &h.integration, &body, SQUARE_KEY).await;
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
/// Posts `body` to Square integration `id` with `signature` as given.
async fn post_signed_as(srv: &TestServer, id: &str, body: &str, signature: &str) -> Resp {
    post_webhook(
        srv,
        "square",
        id,
        body,
        &[(SQUARE_SIGNATURE_HEADER, signature)],
    )
    .await
}

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

    let ok = post_signed_as(&srv, id, BODY, SIGNATURE).await;
    assert_eq!(
        ok.status, 200,
        "the published example must verify: {}",
        ok.text
    );
    // One byte changed in the body, or in the signature: refused.
    let body = BODY.replace(">id<", ">id!");
    let resp = post_signed_as(&srv, id, &body, SIGNATURE).await;
    assert_eq!(resp.status, 401, "{}", resp.text);
    let sig = SIGNATURE.replacen('C', "D", 1);
    let resp = post_signed_as(&srv, id, BODY, &sig).await;
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
    let resp = post_signed_as(&srv, id, BODY, SIGNATURE).await;
    assert_eq!(resp.status, 401, "changed key: {}", resp.text);
    connect_square(
        &manager,
        &mock,
        "example",
        json!({"webhook_signature_key": "signature-key",
               "webhook_url": "https://webhook.site/webhookz"}),
    )
    .await;
    let resp = post_signed_as(&srv, id, BODY, SIGNATURE).await;
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
    the_default_webhook_url_names_the_route_and_the_key_is_set,
    a_signed_payment_webhook_records_the_sale_and_announces_it,
    a_bad_or_missing_signature_is_unauthorized_and_stores_nothing,
    a_webhook_for_an_unknown_integration_or_another_provider_is_not_found,
    replayed_webhooks_are_acknowledged_and_add_nothing,
    the_same_payment_by_webhook_and_by_sync_is_one_sale,
    a_refund_by_webhook_updates_the_sale_and_a_stale_poll_does_not_undo_it,
    a_disconnected_integration_refuses_webhooks,
    webhook_burst_records_each_event_once,
    square_published_example,
    toast_webhooks,
    webhook_survives_kill9
);
