//! posbridge-rules-bench: measures spend-rule evaluation on a release server over loopback and
//! prints a markdown table. It never asserts timing; it exits non-zero only if something
//! failed (a push refused, an unlock missing).
//!
//! * sales evaluated per second against 100 rules at one venue (the server's own
//!   `posbridge_rule_evaluations_total` counts them), next to the same pushes at a venue
//!   without rules, so the cost of evaluation shows as a ratio. Two rule books: "ladder",
//!   four threshold levels under 25 conditions (windows, live-only, performer), where a
//!   customer unlocks a few times over many sales; and "dense", 100 thresholds $50 apart,
//!   where nearly every sale crosses one and unlocks (each unlock is two more writes and an
//!   event);
//! * latency from sending a signed Square webhook to a terminal's socket receiving the
//!   `tier_unlocked` it causes (p50 / p99).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use posbridge_harness::bench::{arg_or, connect_square, server_bin, SQUARE_WEBHOOK_KEY as KEY};
use posbridge_harness::mock_square::{
    square_payment_webhook, square_signature, MockSquare, SquarePayment,
};
use posbridge_harness::{enc, Backend, Client, TestServer};
use serde_json::{json, Value};
use tokio::sync::Mutex;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: posbridge-rules-bench [--server-bin PATH] [--postgres] [--sales 20000] [--batch 100] [--pushers 2] [--webhooks 500]");
        return;
    }
    let bin = server_bin();
    let sales: usize = arg_or("--sales", 20_000);
    let batch = arg_or::<usize>("--batch", 100).clamp(1, 1000);
    let pushers = arg_or::<usize>("--pushers", 2).max(1);
    let webhooks: usize = arg_or("--webhooks", 500);
    let backend = if std::env::args().any(|a| a == "--postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };

    let srv = TestServer::start(&bin, backend, &["--rate-limit-per-sec", "0"]).await;
    let keys = srv.setup_tenant("bench").await;
    let manager = srv.manager(&keys);
    let till = srv.terminal(&keys);

    for venue in ["plain", "ladder", "dense"] {
        manager
            .post(
                "/pos/connect",
                &json!({"venue": venue, "provider": "local-pos"}),
            )
            .await
            .expect(200);
    }
    add_ladder_rules(&manager, "ladder").await;
    add_dense_rules(&manager, "dense").await;

    let baseline = push_sales(&srv, &till, "plain", sales, batch, pushers, 500).await;
    let ladder = push_sales(&srv, &till, "ladder", sales, batch, pushers, 500).await;
    let dense = push_sales(&srv, &till, "dense", sales, batch, pushers, 2_000).await;
    for (name, run) in [("ladder", &ladder), ("dense", &dense)] {
        if run.evaluations < sales as u64 {
            eprintln!(
                "{name}: only {} of {sales} sales were evaluated",
                run.evaluations
            );
            std::process::exit(1);
        }
    }
    let latency = webhook_to_unlock(&srv, &manager, &keys.terminal.key, webhooks).await;

    let backend_name = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    println!("| scenario ({backend_name}) | metric | value | target |");
    println!("|---|---|---|---|");
    println!(
        "| {sales} pushed sales, {batch}/push, {pushers} pushers, no rules | sales recorded/s | {:.0} | |",
        baseline.per_second
    );
    for (name, run) in [
        ("ladder: 100 rules, 500 customers", &ladder),
        ("dense: 100 rules $50 apart, 2,000 customers", &dense),
    ] {
        println!(
            "| {name} | evaluations/s | {:.0} ({:.2}× no rules) | ≥ 5,000 |",
            run.evaluations as f64 / run.seconds,
            run.per_second / baseline.per_second
        );
        println!(
            "| | sales that unlocked a tier | {:.0} % | |",
            run.unlocks as f64 * 100.0 / sales as f64
        );
    }
    println!(
        "| signed Square webhook → `tier_unlocked` on a socket ({webhooks} sales) | p50 / p99 | {:.2} ms / {:.2} ms | p99 ≤ 50 ms |",
        latency.0, latency.1
    );
}

/// 100 rules: four threshold levels ($20, $200, $1,000, $5,000) under 25 conditions —
/// Friday/Saturday nights, weekday lunches, live-only, a performer, or none — highest level
/// first, so every kind of check runs and a customer unlocks a few times in a lifetime; and
/// ten scheduled DJ nights.
async fn add_ladder_rules(manager: &Client, venue: &str) {
    let levels = [
        (500_000, "WHALE"),
        (100_000, "WHALE"),
        (20_000, "PLATINUM"),
        (2_000, "REGULAR"),
    ];
    let mut priority = 0;
    for (threshold, tier) in levels {
        for variant in 0..25 {
            priority += 1;
            let mut rule = json!({
                "name": format!("{tier} {threshold} #{variant}"),
                "threshold": threshold,
                "tier": tier,
                "priority": priority,
            });
            match variant % 5 {
                0 => {
                    rule["time_windows"] =
                        json!([{"days": ["fri", "sat"], "start": "20:00", "end": "02:00"}])
                }
                1 => {
                    rule["time_windows"] = json!([{"days": ["mon", "tue", "wed", "thu"],
                                                   "start": "11:30", "end": "14:30"}])
                }
                2 => rule["live_only"] = json!(true),
                3 => rule["performer_id"] = json!(format!("dj-{variant}")),
                _ => {}
            }
            post_rule(manager, venue, &rule).await;
        }
    }
    // A DJ night every three days over the past month, by the performers the rules name.
    let now = jiff::Timestamp::now().as_second();
    for night in 0..10i64 {
        let starts = now - 30 * 86_400 + night * 3 * 86_400 + 20 * 3_600;
        let at = |s: i64| jiff::Timestamp::from_second(s).expect("time").to_string();
        manager
            .post(
                &format!("/pos/performances/{venue}"),
                &json!({"performer_id": format!("dj-{}", 3 + (night % 5) * 5),
                        "starts_at": at(starts), "ends_at": at(starts + 6 * 3_600)}),
            )
            .await
            .expect(201);
    }
}

/// 100 rules $50 apart ($10 to $4,960), the highest first: nearly every sale crosses one.
async fn add_dense_rules(manager: &Client, venue: &str) {
    let tiers = ["REGULAR", "PLATINUM", "WHALE"];
    for i in 0..100i64 {
        let rule = json!({
            "name": format!("rule {i}"),
            "threshold": 1_000 + i * 5_000,
            "tier": tiers[(i % 3) as usize],
            "priority": 100 - i,
        });
        post_rule(manager, venue, &rule).await;
    }
}

async fn post_rule(manager: &Client, venue: &str, rule: &Value) {
    manager
        .post(&format!("/pos/rules/{venue}"), rule)
        .await
        .expect(201);
}

struct PushFigures {
    seconds: f64,
    per_second: f64,
    evaluations: u64,
    unlocks: u64,
}

async fn metric(srv: &TestServer, name: &str) -> u64 {
    let text = srv.anon().get("/metrics").await.text;
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn push_sales(
    srv: &TestServer,
    till: &Client,
    venue: &str,
    sales: usize,
    batch: usize,
    pushers: usize,
    customers: usize,
) -> PushFigures {
    let evaluations_before = metric(srv, "posbridge_rule_evaluations_total").await;
    let unlocks_before = metric(srv, "posbridge_tier_unlocks_total").await;
    let now = jiff::Timestamp::now().as_second();
    let batches: Vec<Value> = (0..sales)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| {
            let items: Vec<Value> = chunk
                .iter()
                .map(|&i| {
                    // A sale every ~2 minutes over the past month, customers in turn.
                    let at = jiff::Timestamp::from_second(now - 30 * 86_400 + (i as i64) * 127)
                        .expect("time");
                    json!({
                        "id": format!("{venue}-{i}"),
                        "occurred_at": at.to_string(),
                        "total": 500 + (i % 37) as i64 * 250,
                        "currency": "USD",
                        "customer_phone": format!("+1555{:07}", 100_000 + i % customers),
                    })
                })
                .collect();
            json!({"venue": venue, "transactions": items})
        })
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..pushers {
        let (queue, till) = (queue.clone(), till.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().await.pop() else {
                    return;
                };
                let resp = till.post("/transactions", &body).await;
                if resp.status != 200 || resp.body["rejected"] != 0 {
                    eprintln!("push refused: {} {}", resp.status, resp.text);
                    std::process::exit(1);
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("pusher");
    }
    let seconds = started.elapsed().as_secs_f64();
    PushFigures {
        seconds,
        per_second: sales as f64 / seconds,
        evaluations: metric(srv, "posbridge_rule_evaluations_total").await - evaluations_before,
        unlocks: metric(srv, "posbridge_tier_unlocks_total").await - unlocks_before,
    }
}

/// Sends `n` signed webhooks, one every 5 ms, each the first sale of a customer linked by card
/// fingerprint, at a venue whose only rule unlocks REGULAR from the first cent; a socket
/// reader timestamps each `tier_unlocked`. Returns (p50, p99) in ms.
async fn webhook_to_unlock(srv: &TestServer, manager: &Client, key: &str, n: usize) -> (f64, f64) {
    let mock = MockSquare::start().await;
    let integration = connect_square(srv, manager, &mock, "square").await;
    manager
        .post(
            "/pos/rules/square",
            &json!({"name": "first sale", "threshold": 0, "tier": "REGULAR"}),
        )
        .await
        .expect(201);
    let phone = |i: usize| format!("+1555{:07}", 500_000 + i);
    for i in 0..n {
        manager
            .post(
                &format!("/customers/{}/links", enc(&phone(i))),
                &json!({"card_fingerprint": format!("fp-{i}")}),
            )
            .await
            .expect(201);
    }
    let id = integration["id"].as_str().expect("id").to_owned();
    let url = integration["webhook_url"].as_str().expect("url").to_owned();
    let endpoint = format!("{}/webhooks/square/{id}", srv.base_url());

    let mut ws = srv.ws("bench", key, None).await;
    ws.hello().await;
    let received = tokio::spawn(async move {
        let mut at: HashMap<String, Instant> = HashMap::new();
        while at.len() < n {
            let frame = ws.next_json_within(Duration::from_secs(60)).await;
            if frame["type"] == "tier_unlocked" {
                if let Some(p) = frame["data"]["customer"]["phone"].as_str() {
                    at.insert(p.to_owned(), Instant::now());
                }
            }
        }
        at
    });

    let http = reqwest::Client::new();
    let now = jiff::Timestamp::now();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    for i in 0..n {
        ticker.tick().await;
        let payment = SquarePayment::new(&format!("lat-{i}"), 2_000, 0, now)
            .fingerprint(&format!("fp-{i}"))
            .json();
        let body = square_payment_webhook("payment.created", &format!("lat-evt-{i}"), &payment);
        let signature = square_signature(&url, body.as_bytes(), KEY);
        sent.insert(phone(i), Instant::now());
        let resp = http
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("x-square-hmacsha256-signature", signature)
            .body(body)
            .send()
            .await;
        if !matches!(&resp, Ok(r) if r.status().as_u16() == 200) {
            eprintln!("webhook {i} not acknowledged: {resp:?}");
            std::process::exit(1);
        }
    }
    let received = match tokio::time::timeout(Duration::from_secs(120), received).await {
        Ok(Ok(at)) => at,
        _ => {
            eprintln!("not every webhook produced a tier_unlocked frame");
            std::process::exit(1);
        }
    };
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for (phone, sent_at) in &sent {
        let Some(got) = received.get(phone) else {
            eprintln!("no tier_unlocked for {phone}");
            std::process::exit(1);
        };
        let _ = latencies.record(got.saturating_duration_since(*sent_at).as_micros() as u64);
    }
    (
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
    )
}
