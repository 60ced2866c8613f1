//! Issue 12, items 4, 5 and 7: hostile connections are timed out and capped (with a
//! reserve for probes and the operator), a database outage answers 503 fast and recovers
//! without loss, each API key has a request budget, and point reads outlive PostgreSQL
//! ending their connections.

use std::time::{Duration, Instant};

use posbridge_harness::{both_backends, eventually, Backend, PgCluster, TestServer};
use serde_json::json;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any raw exchange in this file may take.
const RAW_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect(srv: &TestServer) -> TcpStream {
    let addr = srv.base_url().trim_start_matches("http://").to_owned();
    TcpStream::connect(addr).await.expect("connecting")
}

/// One raw HTTP/1.1 response: status, head (lower-cased), body.
struct RawResponse {
    status: u16,
    head: String,
    body: String,
}

impl RawResponse {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Reads one response (head, then `content-length` bytes) from `stream`.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().expect("content-length"))
                    .unwrap_or(0);
                while buf.len() < end + 4 + length {
                    let n = stream.read(&mut chunk).await.expect("reading the body");
                    assert!(n > 0, "connection closed inside a body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no status line: {head}"));
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return RawResponse { status, head, body };
            }
            let n = stream.read(&mut chunk).await.expect("reading a head");
            assert!(
                n > 0,
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(RAW_TIMEOUT, read)
        .await
        .expect("no response in time")
}

async fn exchange(stream: &mut TcpStream, request: &str) -> RawResponse {
    stream
        .write_all(request.as_bytes())
        .await
        .expect("writing a request");
    read_response(stream).await
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Reads until the server closes the connection; returns everything it sent and when it
/// closed. A reset counts as closing.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(RAW_TIMEOUT, read)
        .await
        .expect("the server kept the connection open");
    (all, closed)
}

/// A client sending its head a byte at a time is cut off by the header timeout (with a
/// 408), while other clients are served meanwhile; a connection that sends nothing is
/// closed after the header timeout; an idle keep-alive connection lives until the (longer)
/// idle timeout.
async fn slow_headers_and_idle_connections_are_closed(backend: Backend) {
    let srv = crate::start_with(
        backend,
        &[
            "--header-read-timeout-ms",
            "1000",
            "--idle-timeout-ms",
            "3000",
        ],
    )
    .await;

    // Slowloris: a started head, then one byte every 100 ms, never finishing.
    let mut slow = connect(&srv).await;
    let first_byte = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut slow_read, mut slow_write) = slow.into_split();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match slow_read.read(&mut chunk).await {
                Ok(0) | Err(_) => return (all, Instant::now()),
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let trickle = tokio::spawn(async move {
        // Bounded: 100 bytes, 10 s at most; the server cuts it off long before.
        for _ in 0..100 {
            if slow_write.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Meanwhile, others are served promptly.
    for _ in 0..3 {
        let started = Instant::now();
        srv.anon().get("/healthz").await.expect(200);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "a normal client waited {:?} during the slowloris",
            started.elapsed()
        );
    }
    let (answer, closed) = tokio::time::timeout(RAW_TIMEOUT, reader)
        .await
        .expect("the slowloris connection was never closed")
        .unwrap();
    trickle.abort();
    let lived = closed - first_byte;
    assert!(
        lived >= Duration::from_millis(900) && lived < Duration::from_secs(3),
        "the slow head was cut after {lived:?}, expected about the 1 s header timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
        "the slow client was not told why: {answer:?}"
    );

    // A connection that never sends anything.
    let mut silent = connect(&srv).await;
    let opened = Instant::now();
    let (sent, closed) = read_until_closed(&mut silent).await;
    let lived = closed - opened;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        lived >= Duration::from_millis(900) && lived < Duration::from_secs(3),
        "a silent connection lived {lived:?}"
    );

    // An idle keep-alive connection outlives the header timeout, not the idle timeout.
    let mut idle = connect(&srv).await;
    let resp = exchange(&mut idle, &get("/healthz")).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let answered = Instant::now();
    let (sent, closed) = read_until_closed(&mut idle).await;
    let lived = closed - answered;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        lived >= Duration::from_millis(2500) && lived < Duration::from_secs(6),
        "an idle keep-alive connection lived {lived:?}, expected about the 3 s idle timeout"
    );
    let text = srv.anon().get("/metrics").await.text;
    let header = crate::metric_value(&text, "posbridge_http_timeouts_total{phase=\"header\"}");
    let idle = crate::metric_value(&text, "posbridge_http_timeouts_total{phase=\"idle\"}");
    assert!(header >= Some(2.0), "header timeouts counted: {header:?}");
    assert!(idle >= Some(1.0), "idle timeouts counted: {idle:?}");
}

/// A body shorter than its Content-Length is cut by the body timeout with 408
/// `request_timeout`, and the request changes nothing.
async fn short_bodies_are_cut_by_the_body_timeout(backend: Backend) {
    let srv = crate::start_with(backend, &["--body-timeout-ms", "1000"]).await;
    let tenant = srv.setup_tenant("acme").await;
    let phone = "+15550100123";
    let mut stream = connect(&srv).await;
    let head = format!(
        "POST /api/acme/loyalty/{}/add HTTP/1.1\r\nHost: test\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n",
        posbridge_harness::enc(phone),
        tenant.terminal.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(br#"{"points": 5"#).await.unwrap();
    let sent = Instant::now();
    let resp = read_response(&mut stream).await;
    let waited = sent.elapsed();
    assert_eq!(resp.status, 408, "{} {}", resp.head, resp.body);
    assert_eq!(resp.json()["error"]["code"], "request_timeout");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "the short body was cut after {waited:?}, expected about 1 s"
    );
    let (_, _) = read_until_closed(&mut stream).await;
    srv.terminal(&tenant)
        .get(&format!(
            "/loyalty/{}/points",
            posbridge_harness::enc(phone)
        ))
        .await
        .expect_error(404, "customer_not_found");
}

/// With the cap reached, a new connection may still reach /healthz, /readyz and /metrics
/// through the reserve but nothing else; beyond the reserve a new connection gets a 503
/// `too_many_connections` at once; once the holders leave, service is normal again.
async fn connection_cap_refuses_clearly_and_keeps_a_reserve(backend: Backend) {
    let srv = crate::start_with(
        backend,
        &[
            "--max-connections",
            "4",
            "--reserved-connections",
            "1",
            "--header-read-timeout-ms",
            "30000",
            "--idle-timeout-ms",
            "30000",
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&srv).await;
        let resp = exchange(&mut stream, &get("/healthz")).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        held.push(stream);
    }
    // The reserve: probes and metrics answer, the tenant API does not.
    let mut reserve = connect(&srv).await;
    assert_eq!(exchange(&mut reserve, &get("/healthz")).await.status, 200);
    let ready = exchange(&mut reserve, &get("/readyz")).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(exchange(&mut reserve, &get("/metrics")).await.status, 200);

    // Beyond the reserve: an immediate, explicit refusal.
    let mut refused = connect(&srv).await;
    let opened = Instant::now();
    let (answer, closed) = read_until_closed(&mut refused).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("too_many_connections"),
        "refusal: {answer:?}"
    );
    assert!(
        closed - opened < Duration::from_secs(2),
        "the refusal took {:?}",
        closed - opened
    );

    let resp = exchange(&mut reserve, &get("/api/acme/health")).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(resp.json()["error"]["code"], "too_many_connections");
    assert!(resp.head.contains("connection: close"), "{}", resp.head);

    // The server frees the reserve slot when its connection task ends, which can be a
    // moment after the client has read the 503: wait for the close, then for the slot.
    read_until_closed(&mut reserve).await;
    let text = eventually(
        Duration::from_secs(10),
        "the reserve slot is free again",
        || async {
            let mut stream = connect(&srv).await;
            stream.write_all(get("/metrics").as_bytes()).await.ok()?;
            let resp = read_response(&mut stream).await;
            (resp.status == 200).then_some(resp.body)
        },
    )
    .await;
    assert!(
        crate::metric_value(&text, "posbridge_connections_refused_total") >= Some(1.0),
        "refusals are counted"
    );

    drop(held);
    drop(reserve);
    // Normal service again: an unauthenticated tenant request gets the ordinary 401.
    eventually(
        Duration::from_secs(10),
        "normal service after the holders left",
        || async {
            let mut stream = connect(&srv).await;
            stream
                .write_all(get("/api/acme/health").as_bytes())
                .await
                .ok()?;
            let resp = read_response(&mut stream).await;
            (resp.status == 401).then_some(())
        },
    )
    .await;
}

/// A key over its budget gets 429 `rate_limited` with `Retry-After`; another key of the
/// same tenant, the operator, health and metrics are unaffected; after the stated wait the
/// key works again; opening the event stream takes one token.
async fn rate_limits_apply_per_key(backend: Backend) {
    let srv = crate::start_with(
        backend,
        &["--rate-limit-per-sec", "1", "--rate-limit-burst", "5"],
    )
    .await;
    let tenant = srv.setup_tenant("acme").await;
    let other = srv.create_key("acme", "terminal", "till 2").await;
    let streamer = srv.create_key("acme", "terminal", "till 3").await;
    let till = srv.terminal(&tenant);

    let started = Instant::now();
    let mut ok = 0u64;
    let mut limited = None;
    for _ in 0..20 {
        let resp = till.get("/health").await;
        match resp.status {
            200 => ok += 1,
            429 => {
                limited = Some(resp);
                break;
            }
            other => panic!("unexpected {other}: {}", resp.text),
        }
    }
    let refills = started.elapsed().as_secs();
    let limited = limited.expect("the burst was never limited");
    assert!(
        (5..=5 + refills).contains(&ok),
        "{ok} requests passed in {refills} s with a burst of 5 at 1/s"
    );
    limited.expect_error(429, "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "429 without a Retry-After in seconds: {:?}",
                limited.headers
            )
        });
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");

    // Unaffected: another key of the tenant, the operator, probes and metrics.
    srv.tenant_client("acme", &other.key)
        .get("/health")
        .await
        .expect(200);
    for _ in 0..10 {
        srv.admin().get("/admin/tenants/acme").await.expect(200);
        srv.anon().get("/healthz").await.expect(200);
    }
    let text = srv.anon().get("/metrics").await.text;
    assert!(
        crate::metric_value(&text, "posbridge_rate_limited_total{tenant=\"acme\"}") >= Some(1.0),
        "429s are counted by tenant"
    );

    // After waiting what the server said, the key works again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    eventually(
        Duration::from_secs(5),
        "the limited key to work again",
        || async { (till.get("/health").await.status == 200).then_some(()) },
    )
    .await;

    // The stream upgrade is one request of the budget.
    let started = Instant::now();
    let _ws = srv.ws("acme", &streamer.key, None).await;
    let client = srv.tenant_client("acme", &streamer.key);
    let mut ok = 0u64;
    for _ in 0..20 {
        let resp = client.get("/health").await;
        if resp.status == 429 {
            break;
        }
        resp.expect(200);
        ok += 1;
    }
    let refills = started.elapsed().as_secs();
    assert!(
        (4..=4 + refills).contains(&ok),
        "after opening the stream, {ok} requests passed in {refills} s (burst 5)"
    );
}

both_backends!(
    slow_headers_and_idle_connections_are_closed,
    short_bodies_are_cut_by_the_body_timeout,
    connection_cap_refuses_clearly_and_keeps_a_reserve,
    rate_limits_apply_per_key,
);

/// A till of a new tenant `acme`, for which the manager issued card `code` worth `amount`.
async fn till_with_card(srv: &TestServer, code: &str, amount: i64) -> posbridge_harness::Client {
    let tenant = srv.setup_tenant("acme").await;
    srv.manager(&tenant)
        .post("/gift-cards", &json!({"code": code, "amount": amount}))
        .await
        .expect(201);
    srv.terminal(&tenant)
}

/// PostgreSQL stopped under a running host: database-backed requests answer 503
/// `database_unavailable` with `Retry-After` within ~2 s, `/readyz` says 503 while
/// `/healthz` stays 200, the log names the database without its password; once it is back,
/// requests succeed again and nothing acknowledged before the outage is lost.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_fails_fast_and_recovers() {
    if std::env::var("POSBRIDGE_TEST_POSTGRES").is_ok_and(|v| v.trim() == "skip")
        && !PgCluster::available()
    {
        eprintln!("SKIPPED (POSBRIDGE_TEST_POSTGRES=skip): no PostgreSQL server binaries");
        return;
    }
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("starting the cluster");
    // Trust authentication ignores the password; it is there to prove it is never logged.
    let admin_url = cluster
        .admin_url()
        .replace("postgres@", "postgres:pw-never-logged@");
    let srv = TestServer::start_on_postgres(crate::BIN, &admin_url, &[]).await;
    let till = till_with_card(&srv, "GC-OUTAGE", 10_000).await;
    let mut deducted = 0;
    for i in 0..10 {
        till.post(
            "/gift-cards/GC-OUTAGE/deduct",
            &json!({"amount": 100, "order_id": format!("before-{i}")}),
        )
        .await
        .expect(200);
        deducted += 100;
    }
    srv.anon().get("/readyz").await.expect(200);

    let port = cluster.port();
    tokio::task::block_in_place(|| cluster.stop_immediate());

    for path in ["/gift-cards/GC-OUTAGE/balance", "/pos/tiers"] {
        let started = Instant::now();
        let resp = till.get(path).await;
        let waited = started.elapsed();
        resp.expect_error(503, "database_unavailable");
        assert!(
            resp.header("retry-after")
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "503 without Retry-After: {:?}",
            resp.headers
        );
        assert!(
            waited < Duration::from_millis(2500),
            "{path} took {waited:?} to fail during the outage"
        );
    }
    let started = Instant::now();
    let resp = till
        .post(
            "/gift-cards/GC-OUTAGE/deduct",
            &json!({"amount": 100, "order_id": "during"}),
        )
        .await;
    resp.expect_error(503, "database_unavailable");
    assert!(started.elapsed() < Duration::from_millis(2500));
    let started = Instant::now();
    let ready = srv.anon().get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.body["checks"]["database"], "unavailable");
    assert!(started.elapsed() < Duration::from_millis(2500));
    srv.anon().get("/healthz").await.expect(200);
    let logs = srv.logs();
    assert!(
        logs.contains("database unavailable") && logs.contains(&format!("127.0.0.1:{port}")),
        "no log line naming the database; log:\n{logs}"
    );
    assert!(
        !logs.contains("pw-never-logged"),
        "the password reached the log"
    );

    tokio::task::block_in_place(|| cluster.start_again());
    eventually(
        Duration::from_secs(30),
        "requests to succeed again",
        || async { (till.get("/gift-cards/GC-OUTAGE/balance").await.status == 200).then_some(()) },
    )
    .await;
    // Nothing acknowledged was lost, and the refused deduct took nothing.
    assert_eq!(crate::balance(&till, "GC-OUTAGE").await, 10_000 - deducted);
    till.post(
        "/gift-cards/GC-OUTAGE/deduct",
        &json!({"amount": 100, "order_id": "after"}),
    )
    .await
    .expect(200);
    assert_eq!(
        crate::balance(&till, "GC-OUTAGE").await,
        10_000 - deducted - 100
    );
    eventually(Duration::from_secs(10), "/readyz to recover", || async {
        (srv.anon().get("/readyz").await.status == 200).then_some(())
    })
    .await;
    drop(srv);
    drop(cluster);
}

/// PostgreSQL ends every session of the host's database (an operator's
/// `pg_terminate_backend`, an idle-session timeout, a pooler restarting): the balance and
/// points reads right after still answer 200, each on a new connection, rather than 503 on
/// the connection that died while idle, and they read what was written before.
#[tokio::test(flavor = "multi_thread")]
async fn point_reads_outlive_a_killed_connection() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let srv = crate::start(Backend::Postgres).await;
    let till = till_with_card(&srv, "GC-KILLED", 5_000).await;
    till.post("/loyalty/%2B15550100111/add", &json!({"points": 40}))
        .await
        .expect(200);
    // Concurrent reads leave several idle connections behind, every one of which dies.
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let till = till.clone();
            tokio::spawn(async move { crate::balance(&till, "GC-KILLED").await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.expect("read task"), 5_000);
    }

    let mut admin = sqlx::postgres::PgConnection::connect(srv.database_url())
        .await
        .expect("connecting to the host's database");
    for round in 0..3 {
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("ending the host's sessions");
        assert!(
            ended.iter().any(|&ended| ended),
            "round {round}: no session of the host was ended"
        );
        assert_eq!(crate::balance(&till, "GC-KILLED").await, 5_000);
        let points = till.get("/loyalty/%2B15550100111/points").await;
        assert_eq!(points.expect(200)["points"], 40, "round {round}");
    }
    let _ = admin.close().await;
}
