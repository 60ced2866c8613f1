//! The OpenAPI description (`GET /openapi.json`) and the reference page (`GET /docs`), on
//! both backends:
//!
//! - every documented path and method is served (not the router's "no such route" or
//!   "method not allowed" fallback) and every other method on a documented path is 405, so
//!   the document and the router agree (the other direction, a route registered without
//!   `routes!`, is the unit test `openapi::tests::every_route_is_registered_with_its_docs`);
//! - the page and its files are served from the binary, reference nothing off the host, and
//!   are the vendored Swagger UI files byte for byte;
//! - a schema-driven fuzz run (schemathesis, from PyPI, version [`SCHEMATHESIS`]) against
//!   the running server, authenticated as the operator and as a manager of a tenant:
//!   no 5xx, and every answer's status, content type and body match the document.
//!
//! The fuzz run needs schemathesis in a virtual environment, made on first use under the
//! test target's temporary directory with `python3 -m venv` and pip. When it cannot be
//! installed the test fails saying why; `POSBRIDGE_TEST_SCHEMATHESIS=skip` skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, Backend, Body, TestServer};
use serde_json::Value;

/// The pinned schemathesis release.
const SCHEMATHESIS: &str = "4.32.5";

/// Generated cases per operation and phase: about 75 operations make a run of a few
/// thousand requests, a couple of minutes per backend on the 2-core CI machine.
const MAX_EXAMPLES: &str = "12";

/// A server whose rate limit stays out of the fuzz run's way (429 is documented, but a run
/// spent on it would test nothing else).
async fn start(backend: Backend) -> TestServer {
    TestServer::start(
        crate::BIN,
        backend,
        &[
            "--rate-limit-per-sec",
            "100000",
            "--rate-limit-burst",
            "100000",
        ],
    )
    .await
}

/// `(path, method)` of every documented operation, methods lower case.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item is an object").keys() {
            if METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone()));
            }
        }
    }
    out
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The path with every `{param}` replaced by a plausible value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s == "{tenant}" {
                "kitchen"
            } else if s.starts_with('{') {
                "x1"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_documented_route_is_served_and_no_other_method(backend: Backend) {
    let srv = start(backend).await;
    srv.setup_tenant("kitchen").await;
    let doc = srv.anon().get("/openapi.json").await.expect(200).clone();
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.len() > 60, "only {} operations documented", ops.len());
    for required in [
        "operator_token",
        "api_key",
        "api_key_bearer",
        "api_key_subprotocol",
    ] {
        assert!(
            doc["components"]["securitySchemes"][required].is_object(),
            "security scheme {required} missing"
        );
    }
    let client = srv.anon();
    for (path, method) in &ops {
        let url = concrete(path);
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let resp = client.send(m, &url, Body::None, &[]).await;
        let fallback = resp.status == 405 && resp.error_code() == Some("method_not_allowed")
            || resp.status == 404 && resp.body["error"]["message"] == "no such route";
        assert!(
            !fallback,
            "{method} {path} is documented but the router does not serve it: {} {}",
            resp.status, resp.text
        );
        // Every documented answer carries the documented error shape.
        if resp.status >= 400 && !resp.text.is_empty() {
            assert!(
                resp.error_code().is_some(),
                "{method} {url}: {} {}",
                resp.status,
                resp.text
            );
        }
    }
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = client.send(m, &concrete(path), Body::None, &[]).await;
            assert_eq!(
                resp.status, 405,
                "{method} {path} is not documented but answered {} {}",
                resp.status, resp.text
            );
        }
    }
    srv.anon()
        .get("/no/such/route")
        .await
        .expect_error(404, "not_found");
}

/// The vendored Swagger UI files, as committed.
fn vendored(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/api-docs/vendor")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

async fn the_reference_page_is_served_from_the_binary(backend: Backend) {
    let srv = start(backend).await;
    let anon = srv.anon();
    let page = anon.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    // Everything the page loads comes from this host: no CDN, no font service.
    assert!(
        !page.text.contains("http://") && !page.text.contains("https://"),
        "{}",
        page.text
    );
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/init.js",
    ] {
        assert!(page.text.contains(asset), "the page does not load {asset}");
    }
    let init = anon.get("/docs/init.js").await;
    assert_eq!(init.status, 200);
    assert!(init.text.contains("\"/openapi.json\""), "{}", init.text);
    assert!(init.text.contains("validatorUrl: null"), "{}", init.text);
    for (name, content_type) in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("LICENSE", "text/plain"),
    ] {
        let resp = anon.get(&format!("/docs/{name}")).await;
        assert_eq!(resp.status, 200, "/docs/{name}");
        assert!(
            resp.header("content-type")
                .unwrap_or("")
                .starts_with(content_type),
            "/docs/{name}: {:?}",
            resp.header("content-type")
        );
        assert!(
            resp.text.as_bytes() == vendored(name).as_slice(),
            "/docs/{name} differs from the vendored file"
        );
    }
    anon.get("/docs/nothing.js")
        .await
        .expect_error(404, "not_found");
}

/// The virtual environment with schemathesis, made on first use. Two tests may ask at once
/// (one per backend): each builds in its own directory and renames it into place, and the
/// loser of the race uses the winner's.
fn schemathesis_python() -> Result<PathBuf, String> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(format!("schemathesis-{SCHEMATHESIS}"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Ok(python);
    }
    let building = root.join(format!(
        "schemathesis-{SCHEMATHESIS}.building-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("{what}: could not start: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!("{what} failed: {}", last.unwrap_or("no output")))
        }
    };
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&building),
        "python3 -m venv",
    )?;
    run(
        Command::new(building.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("schemathesis=={SCHEMATHESIS}"),
        ]),
        &format!("pip install schemathesis=={SCHEMATHESIS}"),
    )?;
    if std::fs::rename(&building, &venv).is_err() {
        // Another test finished first; its environment is the same.
        let _ = std::fs::remove_dir_all(&building);
    }
    if python.exists() {
        Ok(python)
    } else {
        Err(format!("{} is missing after the install", python.display()))
    }
}

async fn a_schema_driven_fuzz_run_finds_no_server_error_or_schema_mismatch(backend: Backend) {
    if std::env::var("POSBRIDGE_TEST_SCHEMATHESIS").as_deref() == Ok("skip") {
        eprintln!("skipped: POSBRIDGE_TEST_SCHEMATHESIS=skip");
        return;
    }
    let python = tokio::task::spawn_blocking(schemathesis_python)
        .await
        .expect("venv task")
        .unwrap_or_else(|why| {
            panic!(
                "schemathesis {SCHEMATHESIS} could not be installed from PyPI ({why}); \
                 set POSBRIDGE_TEST_SCHEMATHESIS=skip to skip this test"
            )
        });
    let srv = start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    // The operator's routes get a tenant of their own to suspend, edit and delete: the
    // fuzzer learns `kitchen` from answers and would otherwise suspend the tenant whose
    // routes it is exercising, leaving them nothing but 403s.
    srv.create_tenant("scratch").await;
    let dir = srv.dir().join("schemathesis");
    std::fs::create_dir_all(&dir).expect("schemathesis dir");
    // The document from a file, so `GET /openapi.json` is one of the operations run.
    let doc = srv.anon().get("/openapi.json").await.expect(200).clone();
    let schema_path = dir.join("openapi.json");
    std::fs::write(&schema_path, doc.to_string()).expect("writing the document");
    let config = fuzz_config(
        srv.operator_token(),
        &kitchen.manager.key,
        &kitchen.terminal.key,
    );
    let config_path = dir.join("schemathesis.toml");
    std::fs::write(&config_path, config).expect("writing the schemathesis config");
    let report_dir = dir.join("report");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.current_dir(&dir)
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config_path)
        .arg("run")
        .arg(&schema_path)
        .args([
            "--url",
            srv.base_url(),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "20261206",
            // One worker: the generator is not thread-safe on every Python (a
            // recursion-depth SystemError was seen with two).
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
            "--report",
            "har",
            "--report-dir",
        ])
        .arg(&report_dir)
        .env("SCHEMATHESIS_HOOKS", "")
        .kill_on_drop(true);
    let out = cmd.output().await.expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::write(dir.join("output.txt"), stdout.as_bytes()).expect("saving the output");
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {}):\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        tail(&srv.logs(), 60)
    );
    eprintln!("{}", tail(&stdout, 25));

    // Every operation was exercised past authentication at least once: a run whose
    // credentials were refused would pass the checks above while testing nothing.
    let har = read_har(&report_dir);
    let ops = operations(&doc);
    let mut passed = std::collections::BTreeMap::<(String, String), (u32, u32)>::new();
    for (method, path, status) in &har {
        let Some(op) = ops
            .iter()
            .filter(|(_, m)| m.eq_ignore_ascii_case(method))
            .filter_map(|(template, _)| matches(template, path).map(|params| (params, template)))
            .min_by_key(|(params, _)| *params)
            .map(|(_, template)| template)
        else {
            continue;
        };
        let entry = passed
            .entry((op.clone(), method.to_lowercase()))
            .or_default();
        entry.0 += 1;
        if *status != 401 && *status != 403 {
            entry.1 += 1;
        }
    }
    let refused: Vec<String> = ops
        .iter()
        .filter(|op| passed.get(op).is_none_or(|(_, ok)| *ok == 0))
        .map(|(path, method)| {
            let sent = passed
                .get(&(path.clone(), method.clone()))
                .map_or(0, |c| c.0);
            format!("{method} {path} ({sent} requests)")
        })
        .collect();
    assert!(
        refused.is_empty(),
        "operations never answered other than 401/403 (or never requested):\n{}",
        refused.join("\n")
    );
    // The terminal routes ran with the terminal key (its header overrides the manager's).
    let keys = srv
        .admin()
        .get("/admin/tenants/kitchen/keys")
        .await
        .expect(200)
        .clone();
    let till = keys["keys"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["id"] == kitchen.terminal.id.as_str())
        .expect("the terminal key")
        .clone();
    assert!(till["last_used_at"].is_string(), "{till}");
}

/// schemathesis' configuration: each security scheme of the document gets its credential
/// (the operator token for `operator_token`, a manager key of `kitchen` for the tenant
/// key schemes), the terminal routes the terminal key, every `{tenant}` is `kitchen`
/// and every operator `{slug}` is `scratch`.
fn fuzz_config(operator: &str, manager: &str, terminal: &str) -> String {
    format!(
        r#"[parameters]
tenant = "kitchen"

[generation]
# Credentials come from [auth] below, not from the generator.
with-security-parameters = false

[auth.openapi.operator_token]
bearer = "{operator}"

[auth.openapi.api_key]
api_key = "{manager}"

[auth.openapi.api_key_bearer]
bearer = "{manager}"

[[operations]]
include-path-regex = "^/admin/tenants/"
parameters = {{ slug = "scratch" }}

[[operations]]
include-tag = "terminal"
headers = {{ "X-API-Key" = "{terminal}" }}
"#
    )
}

/// `(method, path, status)` of every exchange in the HAR file schemathesis wrote.
fn read_har(dir: &Path) -> Vec<(String, String, u64)> {
    let file = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap_or_else(|| panic!("no HAR report in {}", dir.display()));
    let text = std::fs::read_to_string(&file).expect("reading the HAR report");
    let har: Value = serde_json::from_str(&text).expect("the HAR report is JSON");
    har["log"]["entries"]
        .as_array()
        .expect("HAR entries")
        .iter()
        .filter_map(|e| {
            let url = posbridge_harness::reqwest::Url::parse(e["request"]["url"].as_str()?).ok()?;
            Some((
                e["request"]["method"].as_str()?.to_owned(),
                url.path().to_owned(),
                e["response"]["status"].as_u64()?,
            ))
        })
        .collect()
}

/// Whether the concrete `path` fits the documented `template`, and if so how many of its
/// segments were parameters (the most literal template is the operation requested).
fn matches(template: &str, path: &str) -> Option<usize> {
    let mut wanted = template.split('/');
    let mut got = path.split('/');
    let mut params = 0;
    loop {
        match (wanted.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with("{*") => {
                let rest = !g.is_empty() || got.next().is_some();
                return rest.then_some(params + 1);
            }
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return None;
                }
                params += 1;
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

both_backends!(
    every_documented_route_is_served_and_no_other_method,
    the_reference_page_is_served_from_the_binary,
    a_schema_driven_fuzz_run_finds_no_server_error_or_schema_mismatch,
);
