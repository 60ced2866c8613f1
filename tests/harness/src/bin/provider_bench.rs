//! posbridge-provider-bench: measures the provider ingest path of a release server on
//! loopback against the mock Square API, and prints a markdown table. It never asserts
//! timing; it exits non-zero only if something failed (a webhook refused, sales missing).
//!
//! * signed Square webhooks acknowledged per second, with p50/p99 acknowledgement latency,
//!   and how long the inbox took to record every one of them;
//! * the first sync of a venue whose Square account holds 10,000 payments (100 pages).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use posbridge_harness::bench::{arg_or, connect_square, server_bin, SQUARE_WEBHOOK_KEY as KEY};
use posbridge_harness::mock_square::{
    square_payment_webhook, square_signature, MockSquare, SquarePayment,
};
use posbridge_harness::{Backend, Client, TestServer};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: posbridge-provider-bench [--server-bin PATH] [--seconds 10] [--connections 32] [--payments 10000]");
        return;
    }
    let bin = server_bin();
    let seconds: u64 = arg_or("--seconds", 10);
    let connections: usize = arg_or("--connections", 32);
    let payments: usize = arg_or("--payments", 10_000);

    let srv = TestServer::start(&bin, Backend::Sqlite, &["--rate-limit-per-sec", "0"]).await;
    let keys = srv.setup_tenant("bench").await;
    let manager = srv.manager(&keys);

    let webhooks = webhooks(&srv, &manager, seconds, connections).await;
    let sync = sync(&srv, &manager, payments).await;

    println!("| scenario | metric | value | target |");
    println!("|---|---|---|---|");
    println!("| square webhooks ({connections} connections, {seconds} s) | acknowledged/s | {:.0} | ≥ 2,000 |", webhooks.per_second);
    println!(
        "| | ack latency p50 / p99 | {:.2} ms / {:.2} ms | p99 ≤ 20 ms |",
        webhooks.p50_ms, webhooks.p99_ms
    );
    println!(
        "| | all {} recorded as sales after the last ack | {:.2} s | |",
        webhooks.acked, webhooks.drain_s
    );
    println!(
        "| first sync, {} payments in {} pages | wall time | {:.2} s | ≤ 5 s |",
        sync.created, sync.pages, sync.seconds
    );
    println!(
        "| | sales/s | {:.0} | |",
        sync.created as f64 / sync.seconds.max(1e-9)
    );
}

struct WebhookFigures {
    acked: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    drain_s: f64,
}

async fn mock() -> MockSquare {
    // Comes with the token and location the constants name.
    MockSquare::start().await
}

async fn transaction_count(manager: &Client, venue: &str) -> u64 {
    manager.get(&format!("/pos/status/{venue}")).await.body["transaction_count"]
        .as_u64()
        .unwrap_or(0)
}

async fn webhooks(
    srv: &TestServer,
    manager: &Client,
    seconds: u64,
    connections: usize,
) -> WebhookFigures {
    let mock = mock().await;
    let integration = connect_square(srv, manager, &mock, "hooks").await;
    let id = integration["id"]
        .as_str()
        .expect("integration id")
        .to_owned();
    let url = integration["webhook_url"]
        .as_str()
        .expect("webhook url")
        .to_owned();
    let endpoint = format!("{}/webhooks/square/{id}", srv.base_url());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let now = jiff::Timestamp::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (http, endpoint, url, stop, next, refused) = (
            http.clone(),
            endpoint.clone(),
            url.clone(),
            stop.clone(),
            next.clone(),
            refused.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let payment =
                    SquarePayment::new(&format!("pay-{n}"), 1000 + (n % 500) as i64, 100, now)
                        .json();
                let body = square_payment_webhook("payment.created", &format!("evt-{n}"), &payment);
                let signature = square_signature(&url, body.as_bytes(), KEY);
                let started = Instant::now();
                let response = http
                    .post(&endpoint)
                    .header("content-type", "application/json")
                    .header("x-square-hmacsha256-signature", signature)
                    .body(body)
                    .send()
                    .await;
                let ok = matches!(&response, Ok(r) if r.status().as_u16() == 200);
                let _ = latencies.record(started.elapsed().as_micros() as u64);
                if !ok {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for w in workers {
        all.add(w.await.expect("worker")).expect("merge");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let refused = refused.load(Ordering::Relaxed);
    let acked = all.len() - refused;
    if refused > 0 {
        eprintln!("{refused} webhooks were not acknowledged with 200");
        std::process::exit(1);
    }
    let last_ack = Instant::now();
    let deadline = last_ack + Duration::from_secs(300);
    loop {
        let recorded = transaction_count(manager, "hooks").await;
        if recorded >= acked {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("only {recorded} of {acked} acknowledged webhooks were recorded");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    WebhookFigures {
        acked,
        per_second: acked as f64 / elapsed,
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        drain_s: last_ack.elapsed().as_secs_f64(),
    }
}

struct SyncFigures {
    created: u64,
    pages: u64,
    seconds: f64,
}

async fn sync(srv: &TestServer, manager: &Client, payments: usize) -> SyncFigures {
    let mock = mock().await;
    let start = jiff::Timestamp::now().as_millisecond() - 2 * 24 * 3600 * 1000;
    mock.add_payments((0..payments).map(|i| {
        let at = jiff::Timestamp::from_millisecond(start + i as i64 * 1000).expect("time");
        SquarePayment::new(&format!("sync-{i}"), 500 + (i % 1000) as i64, 50, at).json()
    }));
    // Connecting schedules the first sync at once; its run record carries exact timings.
    connect_square(srv, manager, &mock, "synced").await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = manager.get("/pos/status/synced").await.body;
        let run = &status["last_sync"];
        if run.is_object() {
            if let Some(err) = run["error"].as_str() {
                eprintln!("sync failed: {err}");
                std::process::exit(1);
            }
            let at = |f: &str| {
                run[f]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            };
            let (Some(a), Some(b)) = (at("started_at"), at("finished_at")) else {
                eprintln!("sync run without times: {run}");
                std::process::exit(1);
            };
            let created = run["created"].as_u64().unwrap_or(0);
            if created as usize != payments {
                eprintln!(
                    "sync created {created} of {payments} payments: {run}\nlog: {}",
                    srv.logs()
                        .lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(1);
            }
            let _ = srv;
            return SyncFigures {
                created,
                pages: run["pages"].as_u64().unwrap_or(0),
                seconds: b.duration_since(a).as_secs_f64(),
            };
        }
        if Instant::now() > deadline {
            eprintln!("the first sync did not finish");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
