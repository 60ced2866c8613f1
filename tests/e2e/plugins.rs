//! The plugin runtime through the real binary: installing components, the sandbox (CPU
//! deadline, memory cap, traps, outbound allowlist), quarantine, hot swap under load,
//! restarts that reuse compiled artifacts, and the `plugin` CLI.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, eventually, Backend, Body, Client, TestServer};
use serde_json::{json, Value};

use crate::{install_plugin as install, wasm};

/// Where the build script put the guest components.
async fn validate(manager: &Client, provider: &str, location: &str) -> posbridge_harness::Resp {
    manager
        .post(
            "/pos/validate",
            &json!({"provider": provider, "location_id": location}),
        )
        .await
}

async fn plugin(srv: &TestServer, id: &str) -> Value {
    srv.admin()
        .get(&format!("/admin/plugins/{id}"))
        .await
        .expect(200)
        .clone()
}

async fn install_refuses_what_is_not_a_plugin(backend: Backend) {
    let srv = crate::start(backend).await;
    // Bundled plugins are installed on start.
    let listed = srv.admin().get("/admin/plugins").await.expect(200).clone();
    let ids: Vec<&str> = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for bundled in ["square", "toast", "local-pos", "order-size-flag"] {
        assert!(ids.contains(&bundled), "{bundled} missing from {ids:?}");
    }

    let ok = install(&srv, "test_swap_v1").await;
    let manifest = ok.expect(201).clone();
    assert_eq!(manifest["id"], "test-swap");
    assert_eq!(manifest["kind"], "provider");
    assert_eq!(manifest["active_version"], "1.0.0");
    assert_eq!(manifest["state"], "active");

    // The same version again, a component of another world, a core module, not wasm at all.
    install(&srv, "test_swap_v1")
        .await
        .expect_error(409, "version_exists");
    let wrong = install(&srv, "test_wrong_world").await;
    wrong.expect_error(422, "invalid_plugin");
    assert!(wrong.text.contains("no known world"), "{}", wrong.text);
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let refused = srv
        .admin()
        .send(
            Method::POST,
            "/admin/plugins",
            Body::Raw {
                bytes: core_module,
                content_type: None,
            },
            &[],
        )
        .await;
    refused.expect_error(422, "invalid_plugin");
    assert!(
        refused.text.contains("core WebAssembly module"),
        "{}",
        refused.text
    );
    srv.admin()
        .send(
            Method::POST,
            "/admin/plugins",
            Body::Raw {
                bytes: b"hello".to_vec(),
                content_type: None,
            },
            &[],
        )
        .await
        .expect_error(422, "invalid_plugin");
    // Nothing of the refused ones was installed.
    let after = srv.admin().get("/admin/plugins").await.expect(200).clone();
    assert_eq!(
        after["plugins"].as_array().unwrap().len(),
        listed["plugins"].as_array().unwrap().len() + 1
    );
    // Only the operator installs.
    srv.anon()
        .send(
            Method::POST,
            "/admin/plugins",
            Body::Raw {
                bytes: wasm("test_swap_v2"),
                content_type: None,
            },
            &[],
        )
        .await
        .expect_error(401, "unauthorized");
}

async fn sandbox_contains_misbehaving_guests(backend: Backend) {
    let srv = crate::start(backend).await;
    let keys = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&keys);
    for name in ["test_panic", "test_loop", "test_memory_hog"] {
        install(&srv, name).await.expect(201);
    }

    // A panic fails that call only; the next call on a fresh instance works.
    assert_eq!(
        validate(&manager, "test-panic", "a").await.expect(200)["name"],
        "ok"
    );
    let trapped = validate(&manager, "test-panic", "panic").await;
    trapped.expect_error(502, "plugin_failed");
    assert!(trapped.text.contains("wasm trap"), "{}", trapped.text);
    assert_eq!(
        validate(&manager, "test-panic", "b").await.expect(200)["id"],
        "b"
    );

    // An infinite loop is stopped at the CPU deadline (default 1 s); the host keeps
    // serving other requests meanwhile.
    let looping = {
        let manager = manager.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = validate(&manager, "test-loop", "x").await;
            (r, started.elapsed())
        })
    };
    for _ in 0..5 {
        manager.get("/health").await.expect(200);
    }
    let (r, took) = looping.await.unwrap();
    r.expect_error(504, "plugin_timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "deadline took {took:?}"
    );

    // A memory hog is refused at the cap (64 MiB by default).
    validate(&manager, "test-memory-hog", "x")
        .await
        .expect_error(502, "plugin_failed");
    let hog = plugin(&srv, "test-memory-hog").await;
    assert_eq!(hog["stats"]["failures"], 1);

    // Per-plugin limits: a tighter deadline is honoured.
    srv.admin()
        .send(
            Method::PUT,
            "/admin/plugins/test-loop/limits",
            Body::Json(json!({"cpu_ms": 100, "memory_mb": 16})),
            &[],
        )
        .await
        .expect(200);
    let started = std::time::Instant::now();
    validate(&manager, "test-loop", "x")
        .await
        .expect_error(504, "plugin_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "100 ms deadline took {:?}",
        started.elapsed()
    );

    // Stats are visible to the operator.
    let panicky = plugin(&srv, "test-panic").await;
    assert_eq!(panicky["stats"]["calls"], 3);
    assert_eq!(panicky["stats"]["failures"], 1);
    assert_eq!(panicky["stats"]["consecutive_failures"], 0);
    assert!(panicky["stats"]["p50_us"].as_u64().unwrap() > 0);
}

async fn repeated_failures_quarantine_a_plugin(backend: Backend) {
    let srv = crate::start(backend).await;
    let keys = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&keys);
    install(&srv, "test_panic").await.expect(201);
    for _ in 0..5 {
        validate(&manager, "test-panic", "panic")
            .await
            .expect_error(502, "plugin_failed");
    }
    let quarantined = eventually(Duration::from_secs(10), "quarantine", || async {
        let p = plugin(&srv, "test-panic").await;
        (p["state"] == "quarantined").then_some(p)
    })
    .await;
    assert!(quarantined["state_reason"]
        .as_str()
        .unwrap()
        .contains("5 consecutive failures"));
    // Calls are refused without running the guest.
    validate(&manager, "test-panic", "fine")
        .await
        .expect_error(503, "provider_unavailable");
    // The operator re-enables it by activating a version.
    let active = srv
        .admin()
        .post(
            "/admin/plugins/test-panic/activate",
            &json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(active.expect(200)["state"], "active");
    validate(&manager, "test-panic", "fine").await.expect(200);
    // Disabling refuses calls too.
    srv.admin()
        .send(
            Method::POST,
            "/admin/plugins/test-panic/disable",
            Body::None,
            &[],
        )
        .await
        .expect(200);
    validate(&manager, "test-panic", "fine")
        .await
        .expect_error(503, "provider_unavailable");
}

/// A local HTTP server standing in for a provider API.
async fn pong_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("127.0.0.1:{}", addr.port()), handle)
}

async fn outbound_http_is_limited_to_allowed_hosts(backend: Backend) {
    let srv = crate::start(backend).await;
    let keys = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&keys);
    install(&srv, "test_http").await.expect(201);
    let (mock, _server) = pong_server().await;

    // The guest itself tries a host that is not allowed: the host refuses, counts it, and
    // the guest reports the denial.
    let denied = manager
        .post(
            "/pos/validate",
            &json!({"provider": "test-http", "location_id": "x", "credentials": {"url": format!("http://{mock}/ping")}}),
        )
        .await;
    denied.expect_error(403, "permission_denied");
    assert!(
        denied.text.contains("not in this plugin's allowed hosts"),
        "{}",
        denied.text
    );
    assert_eq!(plugin(&srv, "test-http").await["stats"]["http_denied"], 1);
    assert!(srv.logs().contains("plugin HTTP request denied"));

    // base_url pointing at an unapproved host is refused before the guest runs.
    manager
        .post("/pos/validate", &json!({"provider": "test-http", "location_id": "x", "base_url": format!("http://{mock}")}))
        .await
        .expect_error(422, "host_not_approved");

    // Once the operator approves the mock, the same call goes through.
    let approved = srv
        .admin()
        .send(
            Method::PUT,
            "/admin/plugins/test-http/hosts",
            Body::Json(json!({"allow": [mock]})),
            &[],
        )
        .await;
    assert!(approved.expect(200)["allowed_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == &json!(mock)));
    let ok = manager
        .post("/pos/validate", &json!({"provider": "test-http", "location_id": "x", "base_url": format!("http://{mock}")}))
        .await;
    assert_eq!(ok.expect(200)["name"], "pong");
    // Malformed host patterns are refused.
    srv.admin()
        .send(
            Method::PUT,
            "/admin/plugins/test-http/hosts",
            Body::Json(json!({"allow": ["http://x.com/path"]})),
            &[],
        )
        .await
        .expect_error(422, "invalid_hosts");
}

async fn hot_swap_under_load_fails_no_call(backend: Backend) {
    // Four loops on one key as fast as the host answers: a load test, not a till, so the
    // per-key rate limit (which would answer 429 after the burst) is off.
    let srv = crate::start_with(backend, &["--rate-limit-per-sec", "0"]).await;
    let keys = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&keys);
    install(&srv, "test_swap_v1").await.expect(201);
    install(&srv, "test_swap_v2").await.expect(201);
    assert_eq!(plugin(&srv, "test-swap").await["active_version"], "2.0.0");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let manager = manager.clone();
        let (stop, calls) = (stop.clone(), calls.clone());
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = validate(&manager, "test-swap", "l").await;
                seen.push((r.status, r.body.clone()));
                calls.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    for i in 0..20 {
        // Every swap lands among calls: at least one finished since the previous swap (on
        // a loaded machine the callers may otherwise fall behind the operator's loop).
        let before = calls.load(Ordering::Relaxed);
        eventually(Duration::from_secs(10), "a call between two swaps", || {
            let done = calls.load(Ordering::Relaxed);
            async move { (done > before).then_some(()) }
        })
        .await;
        let version = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
        let r = srv
            .admin()
            .post(
                "/admin/plugins/test-swap/activate",
                &json!({"version": version}),
            )
            .await;
        assert_eq!(r.expect(200)["active_version"], version);
    }
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for c in callers {
        results.extend(c.await.unwrap());
    }
    assert!(
        results.len() >= 20,
        "only {} calls during the swaps",
        results.len()
    );
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(3)]
    );
    for (_, body) in &results {
        // Each call ran entirely on one version: both fields come from the same instance.
        assert_eq!(body["name"], body["business_name"], "{body}");
        assert!(body["name"] == "v1" || body["name"] == "v2");
    }
    // The last activation (2.0.0) serves new calls; rolling back and deleting work.
    assert_eq!(
        validate(&manager, "test-swap", "l").await.expect(200)["name"],
        "v2"
    );
    srv.admin()
        .delete("/admin/plugins/test-swap/versions/2.0.0")
        .await
        .expect_error(409, "version_active");
    srv.admin()
        .post(
            "/admin/plugins/test-swap/activate",
            &json!({"version": "1.0.0"}),
        )
        .await
        .expect(200);
    srv.admin()
        .delete("/admin/plugins/test-swap/versions/2.0.0")
        .await
        .expect(204);
    assert_eq!(
        validate(&manager, "test-swap", "l").await.expect(200)["name"],
        "v1"
    );
    srv.admin()
        .post(
            "/admin/plugins/test-swap/activate",
            &json!({"version": "2.0.0"}),
        )
        .await
        .expect_error(404, "version_not_found");
}

/// Counter value of a metric line `name{labels} value`, 0 when absent.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    crate::metric_value(text, name_and_labels).unwrap_or(0.0)
}

async fn restart_keeps_versions_and_reuses_compiled_artifacts(backend: Backend) {
    // A private, cold cache: the first start compiles, the restart must not.
    let cache = tempfile_dir();
    let cache_arg = cache.display().to_string();
    let mut srv = crate::start_with(backend, &["--plugin-cache-dir", &cache_arg]).await;
    let keys = srv.setup_tenant("kitchen").await;
    install(&srv, "test_swap_v1").await.expect(201);
    install(&srv, "test_swap_v2").await.expect(201);
    srv.admin()
        .post(
            "/admin/plugins/test-swap/activate",
            &json!({"version": "1.0.0"}),
        )
        .await
        .expect(200);
    let before = srv.anon().get("/metrics").await.text;
    assert!(
        metric(
            &before,
            "posbridge_plugin_artifacts_total{source=\"compiled\"}"
        ) >= 2.0,
        "{before}"
    );
    assert!(std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "cwasm")));

    srv.restart().await;
    let after = srv.anon().get("/metrics").await.text;
    assert_eq!(
        metric(
            &after,
            "posbridge_plugin_artifacts_total{source=\"compiled\"}"
        ),
        0.0,
        "restart recompiled:\n{after}"
    );
    assert!(
        metric(
            &after,
            "posbridge_plugin_artifacts_total{source=\"disk_cache\"}"
        ) >= 1.0,
        "{after}"
    );
    let swap = plugin(&srv, "test-swap").await;
    assert_eq!(swap["active_version"], "1.0.0");
    assert_eq!(swap["versions"].as_array().unwrap().len(), 2);
    assert_eq!(
        validate(&srv.manager(&keys), "test-swap", "l")
            .await
            .expect(200)["name"],
        "v1"
    );
    let _ = std::fs::remove_dir_all(cache);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "posbridge-cache-{}",
        posbridge_harness::random_suffix(12)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn cli_installs_into_a_running_host_and_checks_components(backend: Backend) {
    let srv = crate::start(backend).await;
    let file = srv.dir().join("swap.wasm");
    std::fs::write(&file, wasm("test_swap_v1")).unwrap();
    let out = srv
        .cli(&["plugin", "install", file.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.json()["active_version"], "1.0.0");
    // The running host picks it up without a restart.
    eventually(
        Duration::from_secs(15),
        "the host to load the CLI-installed plugin",
        || async {
            let r = srv.admin().get("/admin/plugins/test-swap").await;
            (r.status == 200 && r.body["active_version"] == "1.0.0").then_some(())
        },
    )
    .await;

    let check = srv.cli(&["plugin", "check", file.to_str().unwrap()]).await;
    assert!(check.status.success(), "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("PASS validate"), "{}", check.stdout);
    assert!(
        check.stdout.contains("5 passed, 0 failed"),
        "{}",
        check.stdout
    );
    let wrong = srv.dir().join("wrong.wasm");
    std::fs::write(&wrong, wasm("test_wrong_world")).unwrap();
    let refused = srv.cli(&["plugin", "check", wrong.to_str().unwrap()]).await;
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("no known world"),
        "{}",
        refused.stderr
    );
}

/// Four guests burning their CPU deadline at once do not starve the terminal API: guest
/// code runs on its own lower-priority threads (fewer than the cores), so balance reads keep
/// answering while all four spin. The bound is generous on purpose; the latency figures
/// belong to the bench (`posbridge-bench --scenario plugin-spin`).
async fn spinning_guests_leave_the_terminal_api_answering(backend: Backend) {
    // Reader loops on one key as fast as the host answers: the per-key rate limit is off.
    let srv = crate::start_with(backend, &["--rate-limit-per-sec", "0"]).await;
    let keys = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&keys);
    let till = srv.terminal(&keys);
    install(&srv, "test_loop").await.expect(201);
    manager
        .post("/gift-cards", &json!({"code": "SPIN-0001", "amount": 5000}))
        .await
        .expect(201);

    let spinning: Vec<_> = (0..4)
        .map(|i| {
            let manager = manager.clone();
            tokio::spawn(async move { validate(&manager, "test-loop", &format!("spin-{i}")).await })
        })
        .collect();
    // Each guest has a 1 s CPU deadline and they share the guest threads, so all four are
    // busy for at least a second; read balances until every one of them has been stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut reads_while_spinning = 0;
    while spinning.iter().any(|h| !h.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "spinning guests not stopped within 60 s"
        );
        let started = std::time::Instant::now();
        let r = till.get("/gift-cards/SPIN-0001/balance").await;
        let took = started.elapsed();
        assert_eq!(r.expect(200)["balance"]["amount"], 5000, "{}", r.text);
        assert!(
            took < Duration::from_secs(2),
            "a balance read took {took:?} while guests were spinning"
        );
        if spinning.iter().any(|h| !h.is_finished()) {
            reads_while_spinning += 1;
        }
    }
    assert!(
        reads_while_spinning >= 10,
        "only {reads_while_spinning} reads completed while the guests spun"
    );
    for h in spinning {
        h.await
            .expect("validate task")
            .expect_error(504, "plugin_timeout");
    }
    let stats = plugin(&srv, "test-loop").await["stats"].clone();
    assert_eq!(stats["calls"], 4, "{stats}");
    assert_eq!(stats["failures"], 4, "{stats}");
}

both_backends!(
    install_refuses_what_is_not_a_plugin,
    spinning_guests_leave_the_terminal_api_answering,
    sandbox_contains_misbehaving_guests,
    repeated_failures_quarantine_a_plugin,
    outbound_http_is_limited_to_allowed_hosts,
    hot_swap_under_load_fails_no_call,
    restart_keeps_versions_and_reuses_compiled_artifacts,
    cli_installs_into_a_running_host_and_checks_components,
);

/// `plugin new` writes crates that build, in a directory outside the repository and with
/// stock cargo (no path into this checkout: the SDK is vendored beside each crate, its
/// dependencies come from the package registry), into components passing `plugin check`.
#[tokio::test(flavor = "multi_thread")]
async fn scaffolded_plugins_build_and_pass_the_check() {
    let srv = crate::start(Backend::Sqlite).await;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let outside = tempfile::tempdir().unwrap();
    assert!(
        !outside.path().starts_with(&repo),
        "the scratch dir is outside the repository"
    );
    // Kept across runs (beside the bundled guests' build), so a rerun compiles only the
    // scaffolds themselves; the crates' own `target/` would start cold every time.
    let wasm_dir = PathBuf::from(env!("POSBRIDGE_WASM_DIR"));
    let target_dir = wasm_dir
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
        .unwrap()
        .join("scaffold-check");
    for (kind, name) in [
        ("provider", "acme-scaffold"),
        ("hook", "acme-scaffold-hook"),
    ] {
        let dir = outside.path().join(name);
        let out = srv
            .cli(&["plugin", "new", kind, name, dir.to_str().unwrap()])
            .await;
        assert!(out.status.success(), "{}", out.stderr);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            !manifest.contains(repo.to_str().unwrap()),
            "no path into the checkout:\n{manifest}"
        );
        let artifact = format!(
            "target/wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        );
        assert!(
            out.stdout.contains(&artifact),
            "names the artifact: {}",
            out.stdout
        );
        let build = tokio::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target_dir)
            // Nothing of this build's environment may leak into the scaffold's.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .await
            .unwrap();
        assert!(
            build.status.success(),
            "{kind} scaffold does not build:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        let component = target_dir.join(artifact.trim_start_matches("target/"));
        let check = srv
            .cli(&["plugin", "check", component.to_str().unwrap()])
            .await;
        assert!(check.status.success(), "{}\n{}", check.stdout, check.stderr);
        assert!(
            check.stdout.contains(&format!("\"id\": \"{name}\"")),
            "{}",
            check.stdout
        );
        assert!(
            check.stdout.contains("\"contract\": \"0.3\""),
            "{}",
            check.stdout
        );
        assert!(check.stdout.contains(", 0 failed"), "{}", check.stdout);
        run_scaffold_locally(kind, name, &component, outside.path()).await;
    }
}

/// `posbridge plugin test` on a freshly scaffolded component, as its author would run it:
/// the provider on a signed webhook delivery carrying a sale, the hook on an event.
async fn run_scaffold_locally(kind: &str, name: &str, component: &Path, scratch: &Path) {
    use hmac::Mac;
    let component = component.to_str().unwrap();
    let mut args: Vec<String> = vec!["plugin".into(), "test".into(), component.into()];
    if kind == "provider" {
        let body = serde_json::json!({
            "id": "evt-1", "kind": "sale.created",
            "sale": {"id": "S-1", "created_at": "2026-11-01T12:00:00.000Z", "currency": "USD",
                     "total": "12.50", "tax": "1.00", "tip": null, "status": "paid"},
        })
        .to_string();
        let body_file = scratch.join("delivery.json");
        std::fs::write(&body_file, &body).unwrap();
        let key = "scaffold-key";
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        args.extend([
            "--webhook".into(),
            body_file.to_str().unwrap().into(),
            "--webhook-header".into(),
            format!("x-{name}-signature: {signature}"),
            "--webhook-key".into(),
            key.into(),
        ]);
    } else {
        let event = scratch.join("event.json");
        std::fs::write(
            &event,
            r#"{"kind": "new_order", "data": {"id": "o-1", "total": 5000}, "seq": 1}"#,
        )
        .unwrap();
        let config = scratch.join("config.json");
        std::fs::write(&config, r#"{"threshold": 1000}"#).unwrap();
        args.extend([
            "--event".into(),
            event.to_str().unwrap().into(),
            "--hook-config".into(),
            config.to_str().unwrap().into(),
        ]);
    }
    let out = tokio::process::Command::new(crate::BIN)
        .current_dir(scratch)
        .args(&args)
        .env_remove("POSBRIDGE_CONFIG")
        .env_remove("POSBRIDGE_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plugin test of the {kind} scaffold:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("plugin test prints JSON ({e}):\n{stdout}"));
    if kind == "provider" {
        assert_eq!(result["transactions"][0]["external_id"], "S-1", "{result}");
        assert_eq!(result["transactions"][0]["total"], 1250, "{result}");
    } else {
        assert_eq!(
            result["actions"][0]["kind"], "order_over_threshold",
            "{result}"
        );
        assert_eq!(result["actions"][0]["data"]["total"], 5000, "{result}");
    }
}
