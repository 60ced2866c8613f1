//! Process lifecycle and operations: graceful shutdown, heartbeat pings, metrics.

use std::time::Duration;

use posbridge_harness::tokio_tungstenite::tungstenite::Message;
use posbridge_harness::{both_backends, eventually, Backend};
use serde_json::json;

async fn graceful_shutdown(backend: Backend) {
    let mut srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;
    // The socket is live before the signal.
    srv.terminal(&kitchen)
        .post("/loyalty/%2B15550100199/add", &json!({"points": 1}))
        .await
        .expect(200);
    assert_eq!(ws.next_json().await["seq"], 1);

    srv.sigterm();
    let code = ws.expect_close(Duration::from_secs(15)).await;
    assert_eq!(
        code,
        Some(1001),
        "shutdown closes sockets with 1001 (going away)"
    );
    let status = srv.wait_exit().await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_eq!(status.code(), Some(0));

    // The data survived: a restart on the same database serves it.
    srv.start_again().await;
    let points = srv
        .terminal(&kitchen)
        .get("/loyalty/%2B15550100199/points")
        .await;
    assert_eq!(points.expect(200)["points"], 1);
}

async fn heartbeat(backend: Backend) {
    let srv = crate::start_with(backend, &["--ws-ping-interval-ms", "200"]).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;

    // Keep reading (tungstenite answers each ping with a pong on the next read) until three
    // pings have arrived; then, still reading, write an event: the connection must have
    // stayed open and deliver it.
    let (wrote_tx, wrote_rx) = tokio::sync::oneshot::channel::<()>();
    let write = async {
        wrote_rx.await.expect("reader asks for the write");
        // A gift card, not loyalty: the server's first phone-number parse stalls a runtime
        // worker for ~0.6 s in debug builds, which is not what this test is about.
        manager
            .post("/gift-cards", &json!({"code": "PING-1", "amount": 100}))
            .await
            .expect(201);
    };
    let read = async {
        let mut wrote = Some(wrote_tx);
        let mut pings = 0;
        loop {
            match ws.next_message(Duration::from_secs(5)).await {
                Some(Message::Ping(_)) => {
                    pings += 1;
                    if pings == 3 {
                        if let Some(tx) = wrote.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                Some(Message::Pong(_)) => {}
                Some(Message::Text(text)) => {
                    assert!(pings >= 3, "event before it was written: {text}");
                    return serde_json::from_str::<serde_json::Value>(text.as_str())
                        .expect("JSON frame");
                }
                Some(Message::Close(frame)) => {
                    panic!("socket closed although every ping was answered: {frame:?}")
                }
                Some(other) => panic!("unexpected frame: {other:?}"),
                None => panic!("socket ended while waiting for pings"),
            }
        }
    };
    let ((), frame) = tokio::join!(write, read);
    assert_eq!(frame["seq"], 1);
    assert_eq!(frame["type"], "gift_card_purchased");
}

async fn heartbeat_timeout(backend: Backend) {
    let srv = crate::start_with(backend, &["--ws-ping-interval-ms", "200"]).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;
    // Not reading means not answering pings (tungstenite answers on the next read): the
    // condition under test is a silent client, so here time passing is the point.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let code = ws.expect_close(Duration::from_secs(10)).await;
    assert_eq!(
        code,
        Some(4001),
        "a client that misses its pong is closed with 4001"
    );
}

async fn metrics(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    till.get("/health").await.expect(200);
    till.get("/gift-cards/NOPE/balance").await.expect(404);
    srv.manager(&kitchen)
        .post("/gift-cards", &json!({"code": "METRIC-1", "amount": 100}))
        .await
        .expect(201);
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;

    let text = eventually(
        Duration::from_secs(10),
        "/metrics to count the open WebSocket",
        || async {
            let resp = srv.anon().get("/metrics").await;
            resp.expect(200);
            (crate::metric_value(&resp.text, "posbridge_websocket_connections") >= Some(1.0))
                .then_some(resp.text)
        },
    )
    .await;
    for name in [
        "posbridge_http_requests_total",
        "posbridge_http_request_duration_seconds_bucket",
        "posbridge_websocket_connections",
        "posbridge_events_appended_total",
        "posbridge_transaction_retries_total",
        "posbridge_write_batch_reruns_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    let requests = text
        .lines()
        .filter(|l| l.starts_with("posbridge_http_requests_total{"))
        .collect::<Vec<_>>();
    assert!(
        requests.iter().any(|l| l.contains("method=\"GET\"")
            && l.contains("status=\"200\"")
            && l.contains("route=")),
        "requests_total has method/route/status labels: {requests:?}"
    );
    assert!(
        requests.iter().any(|l| l.contains("status=\"404\"")),
        "the 404 was counted: {requests:?}"
    );
    assert!(
        !requests.iter().any(|l| l.contains("NOPE")),
        "route labels must be templates, not raw paths: {requests:?}"
    );
    assert!(
        crate::metric_value(&text, "posbridge_events_appended_total") >= Some(1.0),
        "one event was appended:\n{text}"
    );
}

both_backends!(graceful_shutdown, heartbeat, heartbeat_timeout, metrics);
