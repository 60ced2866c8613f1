//! Group commit: concurrent writes share a transaction, yet each stands or falls alone. A
//! refused write in a batch changes nothing and fails none of its neighbours; one tenant's
//! concurrent writes reach the socket in gap-free order, and several tenants' each reach
//! their own; two requests with one
//! `Idempotency-Key` run once even when they land in one batch; and kill -9 under a write
//! load loses no write that was acknowledged.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use posbridge_harness::{both_backends, enc, Backend, Client, Resp};
use serde_json::json;

use crate::{balance, last_seq, metric_value};

const REPLAYED: &str = "idempotent-replayed";

fn add_path(phone: &str) -> String {
    format!("/loyalty/{}/add", enc(phone))
}

/// The phone of writer `i`, distinct for every `i` below 10,000.
fn phone(i: usize) -> String {
    format!("+1555010{i:04}")
}

/// Runs every future at once (all released by one barrier), returning the answers in order.
async fn all_at_once<F, Fut>(n: usize, request: F) -> Vec<Resp>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let request = request(i);
            tokio::spawn(async move {
                barrier.wait().await;
                request.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.expect("request task"));
    }
    answers
}

/// Gift-card deducts (a quarter of which fit), loyalty adds, adds refused by validation,
/// and pairs of adds sharing an Idempotency-Key, all at once: every valid write committed
/// exactly once, every refused one changed nothing, and the writes did share transactions.
async fn a_failing_write_leaves_its_batch_neighbours_committed(backend: Backend) {
    const CARDS: usize = 4;
    const DEDUCTS_PER_CARD: usize = 12;
    const ADDS: usize = 40;
    const BAD: usize = 8;
    const PAIRS: usize = 10;
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    for c in 0..CARDS {
        manager
            .post(
                "/gift-cards",
                &json!({"code": format!("BATCH-{c}"), "amount": 1000}),
            )
            .await
            .expect(201);
    }
    let seq_before = last_seq(&manager).await;

    // Request i: a deduct of 300 (3 of 12 fit a card of 1000), an add of 7 points, an add
    // with an unusable phone, or one of a pair of adds of 5 points under one key.
    let deducts = CARDS * DEDUCTS_PER_CARD;
    let total = deducts + ADDS + BAD + 2 * PAIRS;
    let clients: Vec<Client> = (0..total).map(|_| srv.terminal(&kitchen)).collect();
    let answers = all_at_once(total, |i| {
        let till = clients[i].clone();
        async move {
            if i < deducts {
                let path = format!("/gift-cards/BATCH-{}/deduct", i % CARDS);
                till.post(&path, &json!({"amount": 300, "order_id": format!("o-{i}")}))
                    .await
            } else if i < deducts + ADDS {
                till.post(&add_path(&phone(i)), &json!({"points": 7})).await
            } else if i < deducts + ADDS + BAD {
                till.post(&add_path("not a phone"), &json!({"points": 7}))
                    .await
            } else {
                let pair = (i - deducts - ADDS - BAD) / 2;
                till.post_idem(
                    &add_path(&phone(9000 + pair)),
                    &json!({"points": 5}),
                    &format!("pair-{pair}"),
                )
                .await
            }
        }
    })
    .await;

    let (mut deducted, mut refused) = (0, 0);
    for answer in &answers[..deducts] {
        match answer.status {
            200 => deducted += 1,
            422 => {
                answer.expect_error(422, "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected {other} from a deduct: {}", answer.text),
        }
    }
    assert_eq!((deducted, refused), (3 * CARDS, 9 * CARDS));
    for c in 0..CARDS {
        assert_eq!(balance(&manager, &format!("BATCH-{c}")).await, 100);
        let ledger = crate::all_pages(
            &manager,
            &format!("/gift-cards/BATCH-{c}/transactions"),
            100,
        )
        .await;
        assert_eq!(ledger.len(), 4, "1 purchase + 3 redeems: {ledger:?}");
    }
    for (i, answer) in answers[deducts..deducts + ADDS].iter().enumerate() {
        assert_eq!(answer.expect(200)["points"], 7, "add {i}");
    }
    for answer in &answers[deducts + ADDS..deducts + ADDS + BAD] {
        answer.expect_error(422, "invalid_phone");
    }
    for pair in 0..PAIRS {
        let first = &answers[deducts + ADDS + BAD + 2 * pair];
        let second = &answers[deducts + ADDS + BAD + 2 * pair + 1];
        assert_eq!(
            first.expect(200),
            second.expect(200),
            "pair {pair}: one answer"
        );
        let replays = [first, second]
            .iter()
            .filter(|a| a.header(REPLAYED).is_some())
            .count();
        assert_eq!(replays, 1, "pair {pair}: exactly one replay");
        assert_eq!(
            first.body["points"], 5,
            "pair {pair}: the points added once"
        );
    }
    let till = srv.terminal(&kitchen);
    for i in (deducts..deducts + ADDS).chain(9000..9000 + PAIRS) {
        let points = till
            .get(&format!("/loyalty/{}/points", enc(&phone(i))))
            .await;
        let expected = if i >= 9000 { 5 } else { 7 };
        assert_eq!(points.expect(200)["points"], expected, "phone {}", phone(i));
    }
    // One event per committed write, none for a refused one or a replay.
    assert_eq!(
        last_seq(&manager).await,
        seq_before + (3 * CARDS + ADDS + PAIRS) as i64
    );
    // And the writes were indeed committed together: some transaction held several.
    let metrics = srv.anon().get("/metrics").await.text;
    let jobs = metric_value(&metrics, "posbridge_write_batch_jobs_sum").unwrap_or(0.0);
    let batches = metric_value(&metrics, "posbridge_write_batch_jobs_count").unwrap_or(0.0);
    assert!(
        batches > 0.0 && jobs > batches,
        "no batch held more than one write ({jobs} writes in {batches} batches)"
    );
}

/// Concurrent adds of one tenant (some refused) reach a connected terminal as consecutive
/// seqs, one frame per acknowledged add, each with the data of its own write.
async fn concurrent_writes_of_one_tenant_keep_gap_free_order_on_the_socket(backend: Backend) {
    const WRITES: usize = 96;
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    let first = ws.hello().await["last_seq"].as_i64().expect("last_seq") + 1;
    let clients: Vec<Client> = (0..WRITES).map(|_| srv.terminal(&kitchen)).collect();
    let answers = all_at_once(WRITES, |i| {
        let till = clients[i].clone();
        // Every eighth refused inside its transaction (unusable phone).
        let target = if i % 8 == 7 {
            "not a phone".to_owned()
        } else {
            phone(i)
        };
        async move {
            till.post(&add_path(&target), &json!({"points": i + 1}))
                .await
        }
    })
    .await;
    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    for (i, answer) in answers.iter().enumerate() {
        if i % 8 == 7 {
            answer.expect_error(422, "invalid_phone");
        } else {
            let body = answer.expect(200);
            let id = body["transaction_id"].as_str().expect("transaction_id");
            acknowledged.insert(id.to_owned(), body["points"].as_i64().expect("points"));
        }
    }
    let frames = ws.collect(acknowledged.len()).await;
    let seqs: Vec<i64> = frames
        .iter()
        .map(|f| f["seq"].as_i64().expect("seq"))
        .collect();
    let expected: Vec<i64> = (first..first + frames.len() as i64).collect();
    assert_eq!(seqs, expected, "seqs out of order, missing or repeated");
    let mut seen = BTreeSet::new();
    for frame in &frames {
        assert_eq!(frame["type"], "loyalty_updated", "{frame}");
        let id = frame["data"]["transaction_id"].as_str().expect("id");
        assert_eq!(
            acknowledged.get(id).copied(),
            frame["data"]["points"].as_i64(),
            "a frame for a write that was not acknowledged, or with another write's data: {frame}"
        );
        assert!(seen.insert(id.to_owned()), "frame repeated: {frame}");
    }
    assert_eq!(
        last_seq(&srv.manager(&kitchen)).await,
        first - 1 + frames.len() as i64
    );
}

/// Four tenants' adds, all at once: each tenant's terminal gets its own adds and nothing
/// else, as consecutive seqs. On PostgreSQL each tenant has a home lane (four lanes by
/// default), so no batch writes two tenants' events.
async fn concurrent_writes_of_several_tenants_keep_each_tenants_order(backend: Backend) {
    const SLUGS: [&str; 4] = ["north", "south", "east", "west"];
    const PER_TENANT: usize = 24;
    let srv = crate::start(backend).await;
    let mut tills = Vec::new();
    let mut sockets = Vec::new();
    for slug in SLUGS {
        let keys = srv.setup_tenant(slug).await;
        let mut ws = srv.ws(slug, &keys.terminal.key, None).await;
        let first = ws.hello().await["last_seq"].as_i64().expect("last_seq") + 1;
        tills.push(srv.terminal(&keys));
        sockets.push((ws, first));
    }
    let answers = all_at_once(SLUGS.len() * PER_TENANT, |i| {
        let till = tills[i % SLUGS.len()].clone();
        async move {
            till.post(&add_path(&phone(i)), &json!({"points": i + 1}))
                .await
        }
    })
    .await;
    for (t, (ws, first)) in sockets.iter_mut().enumerate() {
        let mine: HashMap<String, i64> = answers
            .iter()
            .enumerate()
            .filter(|(i, _)| i % SLUGS.len() == t)
            .map(|(_, answer)| {
                let body = answer.expect(200);
                let id = body["transaction_id"].as_str().expect("transaction_id");
                (id.to_owned(), body["points"].as_i64().expect("points"))
            })
            .collect();
        let frames = ws.collect(PER_TENANT).await;
        let seqs: Vec<i64> = frames
            .iter()
            .map(|f| f["seq"].as_i64().expect("seq"))
            .collect();
        let expected: Vec<i64> = (*first..*first + PER_TENANT as i64).collect();
        assert_eq!(
            seqs, expected,
            "{}: seqs out of order, missing or repeated",
            SLUGS[t]
        );
        for frame in &frames {
            let id = frame["data"]["transaction_id"].as_str().expect("id");
            assert_eq!(
                mine.get(id).copied(),
                frame["data"]["points"].as_i64(),
                "{} got another tenant's write, or another write's data: {frame}",
                SLUGS[t]
            );
        }
    }
    if backend == Backend::Postgres {
        let metrics = srv.anon().get("/metrics").await.text;
        let tenants = metric_value(&metrics, "posbridge_write_batch_tenants_sum").unwrap_or(0.0);
        let batches = metric_value(&metrics, "posbridge_write_batch_tenants_count").unwrap_or(0.0);
        assert!(batches > 0.0, "no batch recorded:\n{metrics}");
        assert_eq!(
            tenants, batches,
            "a batch wrote several tenants' events: their home lanes were not kept"
        );
    }
}

/// 48 writers add loyalty points as fast as they can through full batches (at most 8 writes
/// a transaction); the server is killed with SIGKILL mid-load. After the restart, every add
/// that was answered 200 is there, with its event.
async fn kill9_under_a_write_load_loses_nothing_acknowledged(backend: Backend) {
    const WRITERS: usize = 48;
    const PER_WRITER: usize = 200;
    const ACKED_BEFORE_KILL: usize = 400;
    let mut srv = crate::start_with(
        backend,
        &["--write-batch-max", "8", "--rate-limit-per-sec", "0"],
    )
    .await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let seq_before = last_seq(&srv.manager(&kitchen)).await;
    let base = format!("{}/api/kitchen", srv.base_url());
    let http = posbridge_harness::reqwest::Client::new();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, base, acked) = (http.clone(), base.clone(), acked.clone());
            let key = kitchen.terminal.key.clone();
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    // A phone of its own per write: each add enrols a customer.
                    let phone = phone(w * PER_WRITER + n);
                    let sent = http
                        .post(format!("{base}{}", add_path(&phone)))
                        .header("X-API-Key", &key)
                        .header("X-Tenant-ID", "kitchen")
                        .json(&json!({"points": 3}))
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status() == 200 => {
                            // Acknowledged only once the whole answer arrived.
                            if resp.bytes().await.is_ok() {
                                acked.lock().expect("acked").push(phone);
                            }
                        }
                        Ok(resp) => assert!(
                            resp.status().is_server_error(),
                            "unexpected {} before the kill",
                            resp.status()
                        ),
                        // The server is gone: what was not answered may or may not be in.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    posbridge_harness::eventually(
        Duration::from_secs(60),
        "enough adds acknowledged to kill the server under load",
        || async { (acked.lock().expect("acked").len() >= ACKED_BEFORE_KILL).then_some(()) },
    )
    .await;
    srv.kill9().await;
    for writer in writers {
        writer.await.expect("writer task");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() < WRITERS * PER_WRITER,
        "the load ended before the kill"
    );

    srv.start_again().await;
    let manager = srv.manager(&kitchen);
    for phone in &acked {
        let resp = manager
            .get(&format!("/loyalty/{}/points", enc(phone)))
            .await;
        assert_eq!(
            resp.expect(200)["points"],
            3,
            "acknowledged add for {phone} lost by kill -9"
        );
    }
    let events = last_seq(&manager).await - seq_before;
    assert!(
        events >= acked.len() as i64,
        "{} adds acknowledged but only {events} events survived",
        acked.len()
    );
}

both_backends!(
    a_failing_write_leaves_its_batch_neighbours_committed,
    concurrent_writes_of_one_tenant_keep_gap_free_order_on_the_socket,
    concurrent_writes_of_several_tenants_keep_each_tenants_order,
    kill9_under_a_write_load_loses_nothing_acknowledged,
);
