//! posbridge-injection-bench: issue 19's order-injection figures against the Toast mock, on a
//! release server on loopback (SQLite). It prints figures and never asserts timing; it exits
//! non-zero only if something is wrong (an order refused, not injected, or made twice).
//!
//! 1. Host overhead: `--sequential` orders (200) one after another with the mock answering
//!    at once. For each, the time of `POST /orders` (it includes pricing by the POS) and the
//!    time from the POST to the order's `order_injected` frame on a kitchen socket (the
//!    worker's claim, the submit and the recording of its answer). Both include the mock's
//!    own answer times on loopback, so they bound the host's overhead from above.
//! 2. Concurrency: `--concurrent` orders (100) posted at once with every POS order call
//!    taking `--latency-ms` (200): the wall time until all are injected, and the number of
//!    Toast orders made per posbridge order (exactly one is the target).
//!
//! The host paces a connection's POS calls (`--outbound-rate-per-sec`, 20 by default:
//! Toast's documented limit). An order costs a few POS calls (price, create, configuration
//! reads), so at 20/s the pacing alone would dominate phase 1; the bench raises the pace to
//! `--pos-rate` (10,000) so that the figures are the host's own, and phase 2 runs with the
//! same pace so that as many submits as possible overlap (the hardest case for exactly once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use posbridge_harness::bench::{arg_or, connect_toast, first_sales_sync, server_bin};
use posbridge_harness::mock_toast::{toast_burger_menu, MockToast};
use posbridge_harness::{Backend, Client, TestServer, Ws};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: posbridge-injection-bench [--server-bin PATH] [--sequential 200] \
             [--concurrent 100] [--latency-ms 200] [--pos-rate 10000]"
        );
        return;
    }
    let bin = server_bin();
    let sequential: usize = arg_or("--sequential", 200);
    let concurrent: usize = arg_or("--concurrent", 100);
    let latency = Duration::from_millis(arg_or("--latency-ms", 200));
    let pos_rate: u32 = arg_or("--pos-rate", 10_000);

    let pos_rate = pos_rate.to_string();
    let args = [
        "--rate-limit-per-sec",
        "0",
        "--outbound-rate-per-sec",
        &pos_rate,
    ];
    let srv = TestServer::start(&bin, Backend::Sqlite, &args).await;
    let keys = srv.setup_tenant("bench").await;
    let manager = srv.manager(&keys);
    let mock = MockToast::start().await;
    connect_toast(&srv, &manager, &mock, "uptown").await;
    first_sales_sync(&manager, "uptown").await;
    mock.publish_menus(toast_burger_menu());
    let synced = manager.post("/menus/uptown/sync", &json!({})).await;
    if synced.status != 200 {
        fail(format!("menu sync: HTTP {} {}", synced.status, synced.text));
    }
    let terminal = srv.create_key("bench", "terminal", "kitchen").await.key;
    let mut ws = srv.ws("bench", &terminal, None).await;
    ws.hello().await;

    // Phase 1: one at a time, the POS answering at once.
    let mut posts = Vec::with_capacity(sequential);
    let mut injected = Vec::with_capacity(sequential);
    for n in 0..sequential {
        let started = Instant::now();
        let id = post_order(&manager, &format!("seq-{n}")).await;
        posts.push(started.elapsed());
        wait_injected(&mut ws, &[id]).await;
        injected.push(started.elapsed());
    }

    // Phase 2: all at once, every order call slow.
    mock.set_order_latency(None, latency);
    let started = Instant::now();
    let handles: Vec<_> = (0..concurrent)
        .map(|n| {
            let manager = manager.clone();
            tokio::spawn(async move { post_order(&manager, &format!("conc-{n}")).await })
        })
        .collect();
    let mut ids = Vec::with_capacity(concurrent);
    for handle in handles {
        match handle.await {
            Ok(id) => ids.push(id),
            Err(err) => fail(format!("an order task failed: {err}")),
        }
    }
    let accepted_all = started.elapsed();
    wait_injected(&mut ws, &ids).await;
    let wall = started.elapsed();

    let mut per_order: HashMap<String, usize> = HashMap::new();
    for order in mock.orders_created() {
        let external = order["externalId"].as_str().unwrap_or_default().to_owned();
        *per_order.entry(external).or_default() += 1;
    }
    let made_twice = per_order.values().filter(|&&n| n > 1).count();
    let expected = sequential + concurrent;
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!(
        "| POST /orders (priced by the POS), {sequential} one at a time | p50 {} ms, p99 {} ms | |",
        ms(percentile(&mut posts, 0.50)),
        ms(percentile(&mut posts, 0.99)),
    );
    println!(
        "| POST → order_injected on a socket, POS answering at once | p50 {} ms, p99 {} ms | host overhead p99 ≤ 20 ms |",
        ms(percentile(&mut injected, 0.50)),
        ms(percentile(&mut injected, 0.99)),
    );
    println!(
        "| {concurrent} orders at once, every POS call {} ms | all answered 201 in {:.2} s, all injected in {:.2} s | |",
        latency.as_millis(),
        accepted_all.as_secs_f64(),
        wall.as_secs_f64(),
    );
    println!(
        "| Toast orders per posbridge order | {} orders for {} of ours, {made_twice} made twice | exactly one each |",
        per_order.values().sum::<usize>(),
        per_order.len(),
    );
    if made_twice > 0 || per_order.len() != expected {
        fail(format!(
            "{} posbridge orders reached Toast ({expected} posted), {made_twice} twice",
            per_order.len()
        ));
    }
}

fn fail(message: String) -> ! {
    eprintln!("posbridge-injection-bench: {message}");
    std::process::exit(1);
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len().max(1));
    samples.get(rank - 1).copied().unwrap_or_default()
}

/// Posts one order by menu lines; returns its id (exits on anything but 201).
async fn post_order(manager: &Client, external_id: &str) -> String {
    let body = json!({
        "external_id": external_id,
        "venue": "uptown",
        "lines": [
            {"item_id": "item-burger", "quantity": 1,
             "modifiers": [{"group_id": "mg-sauce", "option_id": "opt-ketchup"}]},
            {"item_id": "item-fries", "quantity": 2},
        ],
        "customer": {"name": "Ann Example", "phone": "+15550100199", "email": "ann@example.com"},
    });
    let resp = manager.post("/orders", &body).await;
    match (resp.status, resp.body["id"].as_str()) {
        (201, Some(id)) => id.to_owned(),
        _ => fail(format!(
            "order {external_id}: HTTP {} {}",
            resp.status, resp.text
        )),
    }
}

/// Reads frames until every order of `ids` has had its `order_injected` (exits on an
/// `order_injection_failed`, or after a minute without one).
async fn wait_injected(ws: &mut Ws, ids: &[String]) {
    let mut waiting: Vec<&str> = ids.iter().map(String::as_str).collect();
    while !waiting.is_empty() {
        let frame = ws.next_json_within(Duration::from_secs(60)).await;
        let id = frame["data"]["id"].as_str().unwrap_or_default();
        match frame["type"].as_str() {
            Some("order_injected") => waiting.retain(|w| *w != id),
            Some("order_injection_failed") if waiting.contains(&id) => {
                fail(format!("order {id} was not injected: {frame}"))
            }
            _ => {}
        }
    }
}
