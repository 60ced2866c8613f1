//! Property-based fuzzing of every JSON body and path parameter (issue 12), on both
//! backends: for every route with a body, a path parameter or a query parameter (the list
//! of [`crate::hardening_input::routes`]), proptest generates requests that mutate the
//! route's valid body (values replaced by any JSON, fields dropped or added, wrong types,
//! huge, negative and fractional numbers, long strings, NUL and other control characters,
//! unicode, deep nesting, truncated text, random bytes) and its path and query parameters.
//!
//! The properties: no answer is a 5xx; every answer arrives within
//! [`RESPONSE_TIMEOUT`] (a hang fails); every refusal (4xx, including a future 429) has the
//! JSON error shape and changes nothing observable, checked by a snapshot of everything
//! the tenant and the operator can read, taken before and after.
//!
//! proptest's runner is synchronous, so it runs on a blocking thread and drives the async
//! client through the runtime's handle. The generator's seed is random per run and printed
//! with any failure; `POSBRIDGE_FUZZ_SEED=<u64>` replays a run.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use posbridge_harness::reqwest::{self, Method};
use posbridge_harness::{both_backends, enc, Backend};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

use crate::hardening_input::{routes, Fixture, Route, Who};

/// Generated requests per route. About 55 routes make this ~330 requests per backend,
/// which runs in well under a minute on the 2-core CI machine while still giving every
/// route several mutations of each kind over successive runs (the seed differs each run).
const CASES_PER_ROUTE: u32 = 6;
/// Longest a single answer may take: the host's slowest legitimate answers here (a plugin
/// call) take tens of milliseconds, so 5 s only catches a request that hangs.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Shrinking a failure re-sends requests; bounded so a failing run still ends quickly.
const MAX_SHRINK_ITERS: u32 = 32;

/// How the route's valid body is changed.
#[derive(Debug, Clone)]
enum BodyFuzz {
    /// Sent as is.
    Valid,
    /// One value (at any depth) replaced by any JSON.
    Replace(Index, Value),
    /// One object field removed.
    Remove(Index),
    /// A top-level field added.
    Add(String, Value),
    /// One value wrapped in this many arrays (past serde_json's 128 levels too).
    Nest(Index, usize),
    /// Any JSON value instead of the body.
    Whole(Value),
    /// The valid body's text cut short.
    Truncate(Index),
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
}

/// One generated request for a route.
#[derive(Debug, Clone)]
struct Case {
    body: BodyFuzz,
    /// One path parameter given this text instead of its valid value.
    path: Option<(Index, String)>,
    /// One query parameter: one of the route's own names (or this name) with this value.
    query: Option<(Index, Option<String>, String)>,
}

/// Text a client could send: arbitrary unicode, identifiers, control characters and
/// characters with meaning in URLs or JSON, long runs, and values that are valid somewhere.
fn text() -> BoxedStrategy<String> {
    let special = prop_oneof![
        Just('\0'),
        Just('\u{1}'),
        Just('\u{1f}'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('\u{200b}'),
        Just('\u{feff}'),
        Just('\u{fffd}'),
        Just('\u{10ffff}'),
        Just('/'),
        Just('%'),
        Just('?'),
        Just('#'),
        Just('.'),
        Just('"'),
        Just('\\'),
        any::<char>(),
    ];
    prop_oneof![
        3 => any::<String>(),
        2 => "[A-Za-z0-9_+.-]{0,16}",
        2 => prop::collection::vec(special, 0..12).prop_map(String::from_iter),
        // Up to 2000 characters: percent-encoded in a path that is up to 24 KB, within what
        // an HTTP client builds (a URI stops at 64 KiB).
        1 => (1usize..2000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => prop::sample::select(vec![
            "CARD-1", "+15550100199", "USD", "EUR", "2026-11-20", "2026-11-20T12:00:00Z",
            "local-pos", "square", "main", "kitchen", "pending", "accepted", "REGULAR",
            "new_order", "terminal", "manager", "", " ", "..", "null", "-1", "0",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// Numbers of every kind a field might choke on.
fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(vec![
            0,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            100,
            1000,
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![
            0.5,
            -0.0,
            1e308,
            -1e308,
            1e-300,
            9_007_199_254_740_993.0,
            100.0
        ])
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels.
fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
    .boxed()
}

fn case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        2 => Just(BodyFuzz::Valid),
        4 => (any::<Index>(), json()).prop_map(|(i, v)| BodyFuzz::Replace(i, v)),
        2 => any::<Index>().prop_map(BodyFuzz::Remove),
        1 => (text(), json()).prop_map(|(k, v)| BodyFuzz::Add(k, v)),
        1 => (any::<Index>(), 1usize..300).prop_map(|(i, d)| BodyFuzz::Nest(i, d)),
        2 => json().prop_map(BodyFuzz::Whole),
        1 => any::<Index>().prop_map(BodyFuzz::Truncate),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(BodyFuzz::Bytes),
    ];
    (
        body,
        prop::option::weighted(0.5, (any::<Index>(), text())),
        prop::option::weighted(
            0.3,
            (any::<Index>(), prop::option::weighted(0.3, text()), text()),
        ),
    )
        .prop_map(|(body, path, query)| Case { body, path, query })
}

/// JSON pointers of every value below the root, and of every object field (with its
/// parent pointer and key).
fn pointers(value: &Value) -> (Vec<String>, Vec<(String, String)>) {
    fn walk(v: &Value, at: String, all: &mut Vec<String>, fields: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, item) in map {
                    fields.push((at.clone(), k.clone()));
                    let child = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    walk(item, child, all, fields);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), all, fields);
                }
            }
            _ => {}
        }
        if !at.is_empty() {
            all.push(at);
        }
    }
    let (mut all, mut fields) = (Vec::new(), Vec::new());
    walk(value, String::new(), &mut all, &mut fields);
    (all, fields)
}

/// The bytes to send for `fuzz` applied to the route's valid body (`{}` for routes that
/// read none), or `None` to send no body (reads and deletes without one).
fn body_bytes(route: &Route, fuzz: &BodyFuzz) -> Option<Vec<u8>> {
    if route.body.is_none() && matches!(route.method, Method::GET | Method::DELETE) {
        return None;
    }
    let mut body = route.body.clone().unwrap_or_else(|| json!({}));
    let (all, fields) = pointers(&body);
    match fuzz {
        BodyFuzz::Valid => {}
        BodyFuzz::Replace(i, v) => match all.get(i.index(all.len().max(1))) {
            Some(p) => *body.pointer_mut(p).expect("pointer") = v.clone(),
            None => body["fuzz"] = v.clone(),
        },
        BodyFuzz::Remove(i) => {
            if let Some((parent, key)) = fields.get(i.index(fields.len().max(1))) {
                let object = if parent.is_empty() {
                    body.as_object_mut()
                } else {
                    body.pointer_mut(parent).and_then(Value::as_object_mut)
                };
                object.expect("parent object").remove(key);
            }
        }
        BodyFuzz::Add(k, v) => {
            if let Some(object) = body.as_object_mut() {
                object.insert(k.clone(), v.clone());
            }
        }
        BodyFuzz::Nest(i, depth) => {
            if let Some(p) = all.get(i.index(all.len().max(1))) {
                let slot = body.pointer_mut(p).expect("pointer");
                let text = format!(
                    "{}{}{}",
                    "[".repeat(*depth),
                    serde_json::to_string(slot).expect("serialise"),
                    "]".repeat(*depth)
                );
                // Spliced as text: serde_json's own parser would refuse to build it.
                let placeholder = "\u{1}fuzz-nest\u{1}";
                *slot = json!(placeholder);
                let whole = serde_json::to_string(&body).expect("serialise");
                return Some(
                    whole
                        .replacen(
                            &serde_json::to_string(placeholder).expect("serialise"),
                            &text,
                            1,
                        )
                        .into_bytes(),
                );
            }
        }
        BodyFuzz::Whole(v) => body = v.clone(),
        BodyFuzz::Truncate(i) => {
            let text = serde_json::to_vec(&body).expect("serialise");
            let cut = i.index(text.len());
            return Some(text[..cut].to_vec());
        }
        BodyFuzz::Bytes(bytes) => return Some(bytes.clone()),
    }
    Some(serde_json::to_vec(&body).expect("serialise"))
}

/// The request line for `case` on `route`: path (one parameter fuzzed) and query.
fn target(route: &Route, case: &Case) -> String {
    let mut path = route.template.to_owned();
    let fuzzed = case
        .path
        .as_ref()
        .filter(|_| !route.params.is_empty())
        .map(|(i, text)| (route.params[i.index(route.params.len())].0, text));
    for (name, value) in &route.params {
        let value = match fuzzed {
            Some((fuzzed_name, text)) if fuzzed_name == *name => enc(text),
            _ => enc(value),
        };
        path = path.replace(&format!("{{{name}}}"), &value);
    }
    if let Some((i, name, value)) = &case.query {
        let name = match (name, route.query.is_empty()) {
            (Some(name), _) => name.clone(),
            (None, false) => route.query[i.index(route.query.len())].to_owned(),
            (None, true) => "q".to_owned(),
        };
        path = format!("{path}?{}={}", enc(&name), enc(value));
    }
    path
}

/// What the fuzz run keeps between cases.
struct Run {
    /// Everything readable, as of the last accepted request.
    baseline: Vec<(String, Value)>,
    /// Answers by status class, for the coverage check.
    accepted: usize,
    refused: usize,
}

/// One request: sends it, checks the answer, and checks a refusal changed nothing.
async fn check_case(
    fx: &Fixture,
    http: &reqwest::Client,
    route: &Route,
    case: &Case,
    run: &RefCell<Run>,
) -> Result<(), TestCaseError> {
    let url = format!("{}{}", fx.srv.base_url(), target(route, case));
    // Long fuzzed parameters make long URLs; messages show their start.
    let shown_url: String = url.chars().take(200).collect();
    let mut request = http.request(route.method.clone(), &url);
    request = match route.who {
        Who::Operator => request.bearer_auth(fx.srv.operator_token()),
        Who::Terminal => request.header("X-API-Key", &fx.terminal_key),
        Who::Manager => request.header("X-API-Key", &fx.manager_key),
        Who::Public => request,
    };
    if let Some(bytes) = body_bytes(route, &case.body) {
        request = request
            .header("Content-Type", "application/json")
            .body(bytes);
    }
    let started = Instant::now();
    let response = tokio::time::timeout(RESPONSE_TIMEOUT, async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok::<_, reqwest::Error>((status, text))
    })
    .await;
    let (status, text) = match response {
        Err(_) => {
            return Err(TestCaseError::fail(format!(
                "{} {shown_url}: no answer within {RESPONSE_TIMEOUT:?}",
                route.method
            )))
        }
        Ok(Err(err)) => {
            return Err(TestCaseError::fail(format!(
                "{} {shown_url}: the connection failed without an answer after {:?}: {err}",
                route.method,
                started.elapsed()
            )))
        }
        Ok(Ok(answer)) => answer,
    };
    let shown = || text.chars().take(300).collect::<String>();
    if status >= 500 {
        return Err(TestCaseError::fail(format!(
            "{} {shown_url}: {status} {}",
            route.method,
            shown()
        )));
    }
    if (400..500).contains(&status) {
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let shaped = body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty());
        if !shaped {
            return Err(TestCaseError::fail(format!(
                "{} {shown_url}: {status} without the JSON error shape: {}",
                route.method,
                shown()
            )));
        }
        let after = fx.snapshot().await;
        let mut state = run.borrow_mut();
        state.refused += 1;
        if let Some(((path, was), (_, now))) = state
            .baseline
            .iter()
            .zip(&after)
            .find(|((_, was), (_, now))| was != now)
        {
            return Err(TestCaseError::fail(format!(
                "{} {shown_url} was refused ({status} {}) but {path} changed:\nbefore {was}\nafter  {now}",
                route.method,
                shown()
            )));
        }
        return Ok(());
    }
    restore(fx, route, &text).await;
    let snapshot = fx.snapshot().await;
    let mut state = run.borrow_mut();
    state.accepted += 1;
    state.baseline = snapshot;
    Ok(())
}

/// Undoes accepted requests that would stop later cases from reaching deeper code, or
/// start background work that would change the snapshot on its own: hook bindings are
/// deleted (a hook acts on events asynchronously), the local POS plugin is re-enabled with
/// its original limits and hosts, and the venue reconnected.
async fn restore(fx: &Fixture, route: &Route, answer: &str) {
    let admin = fx.srv.admin();
    let manager = fx.manager();
    match (route.method.clone(), route.template) {
        (Method::POST, "/api/{tenant}/hooks") => {
            let body: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
            if let Some(id) = body["id"].as_str() {
                let resp = manager.delete(&format!("/hooks/{id}")).await;
                assert_eq!(resp.status, 204, "deleting a fuzzed binding: {}", resp.text);
            }
        }
        (_, template) if template.starts_with("/admin/plugins/{id}") => {
            admin
                .post(
                    "/admin/plugins/local-pos/activate",
                    &json!({"version": fx.plugin_version}),
                )
                .await
                .expect(200);
            admin
                .put("/admin/plugins/local-pos/limits", &fx.plugin_limits)
                .await
                .expect(200);
            admin
                .put(
                    "/admin/plugins/local-pos/hosts",
                    &json!({"allow": fx.plugin_hosts}),
                )
                .await
                .expect(200);
        }
        (Method::POST, "/api/{tenant}/pos/disconnect/{venue}") => {
            crate::connect_local_pos(&manager, crate::hardening_input::VENUE).await;
        }
        _ => {}
    }
}

/// Requests per route: `POSBRIDGE_FUZZ_CASES`, or [`CASES_PER_ROUTE`].
fn cases_per_route() -> u32 {
    std::env::var("POSBRIDGE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES_PER_ROUTE)
}

/// A seed from `POSBRIDGE_FUZZ_SEED`, or a fresh one.
fn seed() -> u64 {
    std::env::var("POSBRIDGE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

async fn fuzz_every_route(backend: Backend) {
    let fx = Fixture::new(backend).await;
    // No hook may act in the background: a binding reacts to events after the request
    // that logged them, which would change the snapshot between two cases.
    let resp = fx.manager().delete(&format!("/hooks/{}", fx.hook_id)).await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    let routes = routes(&fx);
    let baseline = fx.snapshot().await;
    let seed = seed();
    let cases = cases_per_route();
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let (fx, routes, run, failure) = tokio::task::spawn_blocking(move || {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client");
        let run = RefCell::new(Run {
            baseline,
            accepted: 0,
            refused: 0,
        });
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let mut failure = None;
        for route in &routes {
            let config = Config {
                cases,
                max_shrink_iters: MAX_SHRINK_ITERS,
                failure_persistence: None,
                ..Config::default()
            };
            let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
            // Each route draws its own stream from the seed: same seed, same requests.
            seed_bytes[8] = seed_bytes[8].wrapping_add(1);
            let mut runner = TestRunner::new_with_rng(config, rng);
            let outcome = runner.run(&case(), |case| {
                handle.block_on(check_case(&fx, &http, route, &case, &run))
            });
            if let Err(err) = outcome {
                failure = Some(format!("{} {}: {err}", route.method, route.template));
                break;
            }
        }
        (fx, routes, run.into_inner(), failure)
    })
    .await
    .expect("the fuzz thread");
    if let Some(failure) = failure {
        panic!("fuzzing failed (POSBRIDGE_FUZZ_SEED={seed} replays it): {failure}");
    }
    let total = run.accepted + run.refused;
    assert_eq!(
        total,
        routes.len() * cases as usize,
        "every generated case was sent"
    );
    assert!(
        run.refused > 0 && run.accepted > 0,
        "the generator should produce both refused and accepted requests: {} refused, {} accepted",
        run.refused,
        run.accepted
    );
    fx.srv.anon().get("/healthz").await.expect(200);
    let logs = fx.srv.logs();
    assert!(!logs.contains("panicked"), "a handler panicked:\n{logs}");
    eprintln!(
        "fuzz ({backend:?}, seed {seed}): {total} requests over {} routes in {:?}: {} refused, {} accepted",
        routes.len(),
        started.elapsed(),
        run.refused,
        run.accepted
    );
}

both_backends!(fuzz_every_route);
