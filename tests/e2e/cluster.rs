//! Several hosts on one PostgreSQL database: the cluster view (`/admin/cluster`,
//! `pos-status` across hosts), and what one host does reaching every other within 2 s —
//! plugin installs, activations and rollbacks, host approvals and limits, and events
//! written anywhere reaching every socket in order. (A key revoked on one host closing its
//! socket on another is `hardening_sockets::revocation_on_another_host_closes_the_socket`.)
//!
//! PostgreSQL only: on SQLite one process owns the database.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use posbridge_harness::reqwest::Method;
use posbridge_harness::{enc, eventually, Backend, Body, Client, TestServer};
use serde_json::{json, Value};

/// What must reach another host within this: a revocation, a plugin change, an approval.
const PROPAGATION_WITHIN: Duration = Duration::from_secs(2);

/// How long a killed host may stay listed: three missed heartbeats (6 s) until the next
/// live heartbeat (2 s) removes it, with room for a loaded machine.
const DEAD_HOST_GONE_WITHIN: Duration = Duration::from_secs(15);

/// Installs `name` on `srv`, which must accept it.
async fn install(srv: &TestServer, name: &str) {
    crate::install_plugin(srv, name).await.expect(201);
}

async fn start_pair() -> Option<(TestServer, TestServer)> {
    if !posbridge_harness::postgres_available().await {
        return None;
    }
    let host_a = crate::start(Backend::Postgres).await;
    let host_b = host_a.start_sibling().await;
    Some((host_a, host_b))
}

/// The ids of the hosts `/admin/cluster` lists on `srv`, and the id of the host answering.
async fn cluster(srv: &TestServer) -> (Vec<String>, String, Value) {
    let body = srv.admin().get("/admin/cluster").await.expect(200).clone();
    let ids = body["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["id"].as_str().expect("id").to_owned())
        .collect();
    let answered = body["answered_by"]
        .as_str()
        .expect("answered_by")
        .to_owned();
    (ids, answered, body)
}

/// Waits until `srv` lists exactly `count` live hosts; returns their ids and the answerer.
async fn wait_hosts(srv: &TestServer, count: usize, within: Duration) -> (Vec<String>, String) {
    eventually(within, &format!("{count} live hosts"), || async {
        let (ids, answered, _) = cluster(srv).await;
        (ids.len() == count).then_some((ids, answered))
    })
    .await
}

/// The host ids of the terminals `pos-status` lists through `client`, and who answered.
async fn pos_status(client: &Client) -> (Vec<(String, String)>, String) {
    let body = client.get("/pos-status").await.expect(200).clone();
    let terminals = body["terminals"]
        .as_array()
        .expect("terminals")
        .iter()
        .map(|t| {
            (
                t["host_id"].as_str().expect("host_id").to_owned(),
                t["label"].as_str().expect("label").to_owned(),
            )
        })
        .collect();
    (terminals, body["host"].as_str().expect("host").to_owned())
}

/// `/admin/cluster` lists every live host on whichever host answers; `pos-status` lists a
/// tenant's terminals on every host with the host holding each, never another tenant's;
/// a closed socket, a stopped host and a killed host leave both views.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_view_shows_every_host_and_its_terminals_postgres() {
    let Some((host_a, mut host_b)) = start_pair().await else {
        return;
    };
    let (ids, a_id) = wait_hosts(&host_a, 2, Duration::from_secs(10)).await;
    let (ids_on_b, b_id) = wait_hosts(&host_b, 2, Duration::from_secs(10)).await;
    assert_ne!(a_id, b_id, "each host has its own id");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        HashSet::from([&a_id, &b_id])
    );
    assert_eq!(ids_on_b.len(), 2);
    let (_, _, body) = cluster(&host_a).await;
    for host in body["hosts"].as_array().unwrap() {
        let this = host["id"] == json!(a_id);
        assert_eq!(host["this_host"], this, "{host}");
        let expected = if this {
            host_a.base_url()
        } else {
            host_b.base_url()
        };
        assert_eq!(host["address"], expected, "{host}");
        assert!(host["version"].as_str().is_some_and(|v| !v.is_empty()));
        assert!(host["started_at"].is_string() && host["last_seen"].is_string());
    }
    host_a
        .anon()
        .get("/admin/cluster")
        .await
        .expect_error(401, "unauthorized");

    let kitchen = host_a.setup_tenant("kitchen").await;
    let bakery = host_a.setup_tenant("bakery").await;
    let mut on_b = host_b.ws("kitchen", &kitchen.terminal.key, None).await;
    on_b.hello().await;
    let mut bakery_on_a = host_a.ws("bakery", &bakery.terminal.key, None).await;
    bakery_on_a.hello().await;

    // Host A lists the kitchen's socket on B; the bakery's socket on A is not the kitchen's.
    let (terminals, answered) = eventually(
        PROPAGATION_WITHIN,
        "the terminal on B listed on A",
        || async {
            let (terminals, answered) = pos_status(&host_a.terminal(&kitchen)).await;
            (!terminals.is_empty()).then_some((terminals, answered))
        },
    )
    .await;
    assert_eq!(answered, a_id, "pos-status says which host answered");
    assert_eq!(terminals, vec![(b_id.clone(), "till 1".to_owned())]);
    let (bakery_terminals, _) = pos_status(&host_b.terminal(&bakery)).await;
    assert_eq!(bakery_terminals, vec![(a_id.clone(), "till 1".to_owned())]);
    let (on_b_itself, answered) = pos_status(&host_b.terminal(&kitchen)).await;
    assert_eq!(answered, b_id);
    assert_eq!(on_b_itself, vec![(b_id.clone(), "till 1".to_owned())]);
    // The heartbeat publishes each host's terminal count.
    eventually(Duration::from_secs(10), "terminal counts", || async {
        let (_, _, body) = cluster(&host_a).await;
        let counts: Vec<i64> = body["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["terminals"].as_i64().unwrap())
            .collect();
        (counts.iter().sum::<i64>() == 2 && counts.iter().all(|&n| n == 1)).then_some(())
    })
    .await;

    // A closed socket leaves the view.
    on_b.close().await;
    eventually(PROPAGATION_WITHIN, "the closed socket gone", || async {
        let (terminals, _) = pos_status(&host_a.terminal(&kitchen)).await;
        terminals.is_empty().then_some(())
    })
    .await;

    // A host stopped gracefully removes itself, terminals included.
    let _again = host_b.ws("kitchen", &kitchen.terminal.key, None).await;
    eventually(PROPAGATION_WITHIN, "the new socket listed", || async {
        let (terminals, _) = pos_status(&host_a.terminal(&kitchen)).await;
        (terminals.len() == 1).then_some(())
    })
    .await;
    assert!(host_b.sigterm_and_wait().await.success());
    let (ids, _, _) = cluster(&host_a).await;
    assert_eq!(ids, vec![a_id.clone()], "a stopped host leaves at once");
    let (terminals, _) = pos_status(&host_a.terminal(&kitchen)).await;
    assert!(terminals.is_empty(), "{terminals:?}");

    // A killed host is dropped once its heartbeats stop, its terminals with it.
    let host_c = host_a.start_sibling().await;
    let (ids, c_id) = wait_hosts(&host_c, 2, Duration::from_secs(10)).await;
    assert!(ids.contains(&a_id));
    let mut on_c = host_c.ws("kitchen", &kitchen.terminal.key, None).await;
    on_c.hello().await;
    eventually(PROPAGATION_WITHIN, "the socket on C listed", || async {
        let (terminals, _) = pos_status(&host_a.terminal(&kitchen)).await;
        (terminals == vec![(c_id.clone(), "till 1".to_owned())]).then_some(())
    })
    .await;
    let pid = host_c.pid().expect("host C running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -9 {pid}");
    let killed_at = Instant::now();
    wait_hosts(&host_a, 1, DEAD_HOST_GONE_WITHIN).await;
    let (terminals, _) = pos_status(&host_a.terminal(&kitchen)).await;
    assert!(terminals.is_empty(), "{terminals:?}");
    println!(
        "killed host left the cluster view after {:?}",
        killed_at.elapsed()
    );
}

async fn validate(manager: &Client, provider: &str) -> posbridge_harness::Resp {
    manager
        .post(
            "/pos/validate",
            &json!({"provider": provider, "location_id": "l"}),
        )
        .await
}

/// Waits until `validate` through `manager` answers 200 with `name`; returns how long.
async fn wait_serving(manager: &Client, provider: &str, name: &str) -> Duration {
    let started = Instant::now();
    eventually(
        PROPAGATION_WITHIN,
        &format!("{provider} serving {name}"),
        || async {
            let r = validate(manager, provider).await;
            (r.status == 200 && r.body["name"] == name).then_some(())
        },
    )
    .await;
    started.elapsed()
}

/// A plugin installed on host A runs on host B within 2 s; an upgrade and a rollback on A
/// are what B serves within 2 s; a host started afterwards serves the active version from
/// its first call.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_installs_and_activations_reach_every_host_postgres() {
    let Some((host_a, host_b)) = start_pair().await else {
        return;
    };
    let keys = host_a.setup_tenant("kitchen").await;
    let on_b = host_b.manager(&keys);
    validate(&on_b, "test-swap")
        .await
        .expect_error(422, "unknown_provider");

    install(&host_a, "test_swap_v1").await;
    let installed = wait_serving(&on_b, "test-swap", "v1").await;
    install(&host_a, "test_swap_v2").await;
    let upgraded = wait_serving(&on_b, "test-swap", "v2").await;
    host_a
        .admin()
        .post(
            "/admin/plugins/test-swap/activate",
            &json!({"version": "1.0.0"}),
        )
        .await
        .expect(200);
    let rolled_back = wait_serving(&on_b, "test-swap", "v1").await;
    println!(
        "plugin on host B: installed after {installed:?}, upgraded after {upgraded:?}, rolled back after {rolled_back:?}"
    );
    let status = host_b
        .admin()
        .get("/admin/plugins/test-swap")
        .await
        .expect(200)
        .clone();
    assert_eq!(status["active_version"], "1.0.0");

    // A host started later loads the active version (1.0.0, not the newest) at start.
    let host_c = host_a.start_sibling().await;
    let first = validate(&host_c.manager(&keys), "test-swap").await;
    assert_eq!(first.expect(200)["name"], "v1");
}

async fn pong_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("127.0.0.1:{}", addr.port()), handle)
}

/// Hosts an operator approves for a plugin on host A are callable through host B within
/// 2 s, and a plugin's limits changed on A are B's within 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_approvals_and_limits_reach_every_host_postgres() {
    let Some((host_a, host_b)) = start_pair().await else {
        return;
    };
    let keys = host_a.setup_tenant("kitchen").await;
    install(&host_a, "test_http").await;
    let (mock, _server) = pong_server().await;
    let on_b = host_b.manager(&keys);
    let call =
        json!({"provider": "test-http", "location_id": "x", "base_url": format!("http://{mock}")});
    eventually(PROPAGATION_WITHIN, "test-http known on B", || async {
        let r = on_b.post("/pos/validate", &call).await;
        (r.status == 422 && r.body["error"]["code"] == "host_not_approved").then_some(())
    })
    .await;

    host_a
        .admin()
        .send(
            Method::PUT,
            "/admin/plugins/test-http/hosts",
            Body::Json(json!({"allow": [mock]})),
            &[],
        )
        .await
        .expect(200);
    let approved = Instant::now();
    eventually(PROPAGATION_WITHIN, "the approval applied on B", || async {
        let r = on_b.post("/pos/validate", &call).await;
        (r.status == 200 && r.body["name"] == "pong").then_some(())
    })
    .await;
    let approval_took = approved.elapsed();

    host_a
        .admin()
        .send(
            Method::PUT,
            "/admin/plugins/test-http/limits",
            Body::Json(json!({"cpu_ms": 321, "memory_mb": 7})),
            &[],
        )
        .await
        .expect(200);
    let limited = Instant::now();
    eventually(PROPAGATION_WITHIN, "the limits applied on B", || async {
        let r = host_b.admin().get("/admin/plugins/test-http").await;
        (r.body["cpu_ms"] == 321 && r.body["memory_mb"] == 7).then_some(())
    })
    .await;
    println!(
        "on host B: approval after {approval_took:?}, limits after {:?}",
        limited.elapsed()
    );
}

const PHONE: &str = "+15550100123";

/// Three hosts, one socket on each, writes on all three at once: every socket sees every
/// event once, in seq order, with no gap.
#[tokio::test(flavor = "multi_thread")]
async fn events_written_on_any_host_reach_every_host_in_order_postgres() {
    const WRITES_PER_HOST: usize = 25;
    let Some((host_a, host_b)) = start_pair().await else {
        return;
    };
    let host_c = host_a.start_sibling().await;
    let keys = host_a.setup_tenant("kitchen").await;
    let hosts = [&host_a, &host_b, &host_c];
    let mut sockets = Vec::new();
    for host in hosts {
        let mut ws = host.ws("kitchen", &keys.terminal.key, None).await;
        ws.hello().await;
        sockets.push(ws);
    }
    let base = host_a.terminal(&keys).get("/pos-status").await.expect(200)["last_seq"]
        .as_i64()
        .unwrap();
    let mut writers = Vec::new();
    for host in hosts {
        let manager = host.manager(&keys);
        writers.push(tokio::spawn(async move {
            for _ in 0..WRITES_PER_HOST {
                manager
                    .post(
                        &format!("/loyalty/{}/add", enc(PHONE)),
                        &json!({"points": 1}),
                    )
                    .await
                    .expect(200);
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    // A loyalty add may append more than one event (a new customer's first): count them
    // from the log.
    let last = host_c.terminal(&keys).get("/pos-status").await.expect(200)["last_seq"]
        .as_i64()
        .unwrap();
    let total = usize::try_from(last - base).expect("seq grew");
    assert!(total >= WRITES_PER_HOST * hosts.len());
    for (i, ws) in sockets.iter_mut().enumerate() {
        let seqs: Vec<i64> = ws
            .collect(total)
            .await
            .iter()
            .map(|e| e["seq"].as_i64().expect("seq"))
            .collect();
        let expected: Vec<i64> = (base + 1..=base + total as i64).collect();
        assert_eq!(seqs, expected, "socket on host {i}");
    }
}

/// On SQLite (one host per file) the cluster view is this host alone, and `pos-status`
/// says it answered and holds the tenant's socket.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_view_of_a_single_host_sqlite() {
    let srv = crate::start(Backend::Sqlite).await;
    let (ids, answered) = wait_hosts(&srv, 1, Duration::from_secs(10)).await;
    assert_eq!(ids, vec![answered.clone()]);
    let (_, _, body) = cluster(&srv).await;
    assert_eq!(body["hosts"][0]["this_host"], true);
    assert_eq!(body["hosts"][0]["address"], srv.base_url());
    let kitchen = srv.setup_tenant("kitchen").await;
    let mut ws = srv.ws("kitchen", &kitchen.terminal.key, None).await;
    ws.hello().await;
    let (terminals, host) = pos_status(&srv.terminal(&kitchen)).await;
    assert_eq!(host, answered);
    assert_eq!(terminals, vec![(answered.clone(), "till 1".to_owned())]);
}
