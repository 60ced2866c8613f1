//! Input the databases cannot both store, and semantic idempotency (issue 12, items 2 and
//! 10).
//!
//! A NUL character (U+0000) in any JSON body field or key, path parameter or query
//! parameter of every route family (terminal, manager, operator, the public webhook and
//! stream paths) gets 422 `unsupported_character` naming where it was, and changes
//! nothing, on both backends alike (PostgreSQL cannot store it, SQLite could). An
//! idempotent retry that the client re-serialised (whitespace, key order, escapes) replays
//! the first answer; a different value under the same key is still refused.

use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, enc, Backend, Body, Client, TestServer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{balance, last_seq, order_body, report_body};

const PHONE: &str = "+15550100199";
/// The venue connected to the local POS.
pub(crate) const VENUE: &str = "main";
const REPORT_DATE: &str = "2026-11-20";
/// A string with a NUL in the middle, as a JSON value.
const NUL_TEXT: &str = "a\u{0}b";
/// The same, as a percent-encoded path segment or query value.
const NUL_SEGMENT: &str = "a%00b";
const UNSUPPORTED: &str = "unsupported_character";
const REPLAYED: &str = "idempotent-replayed";

/// Which credential a route takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Who {
    Operator,
    Terminal,
    Manager,
    Public,
}

/// One route of the API with a valid request for it. Routes that read no body (toggle,
/// resume, disable, sync…) are sent `{}` and have no body to put a NUL in.
pub(crate) struct Route {
    pub who: Who,
    pub method: Method,
    /// The path with `{name}` placeholders.
    pub template: &'static str,
    /// A valid value for each placeholder.
    pub params: Vec<(&'static str, String)>,
    /// A valid JSON body, if the route takes one.
    pub body: Option<Value>,
    /// Query parameters the route reads.
    pub query: &'static [&'static str],
}

impl Route {
    /// The route's path with valid parameters, but `nul_param` (if named) holding a NUL.
    pub fn path(&self, nul_param: Option<&str>) -> String {
        let mut path = self.template.to_owned();
        for (name, value) in &self.params {
            let value = if nul_param == Some(*name) {
                NUL_SEGMENT.to_owned()
            } else {
                enc(value)
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        assert!(!path.contains('{'), "unfilled placeholder in {path}");
        path
    }
}

/// The server, its tenant and the ids of one of everything, created through the API.
pub(crate) struct Fixture {
    /// The server under test.
    pub srv: TestServer,
    /// The tenant every tenant route names.
    pub slug: String,
    /// Its terminal key (the till).
    pub terminal_key: String,
    /// Its manager key.
    pub manager_key: String,
    /// A spare terminal key's id: the one the revoke route names, so a revocation that
    /// goes through (in the fuzz test) does not lock the till out.
    pub key_id: String,
    /// An online order, pending.
    pub order_id: String,
    /// The local POS integration of [`VENUE`].
    pub integration_id: String,
    /// A spend rule of [`VENUE`].
    pub rule_id: String,
    /// A performance at [`VENUE`].
    pub performance_id: String,
    /// An `order-size-flag` hook binding.
    pub hook_id: String,
    /// The active version of the `local-pos` plugin.
    pub plugin_version: String,
    /// Its limits as installed, `{"cpu_ms","memory_mb"}`.
    pub plugin_limits: Value,
    /// Its approved outbound hosts as installed.
    pub plugin_hosts: Value,
}

impl Fixture {
    /// Starts a server and creates one of everything through the API.
    pub async fn new(backend: Backend) -> Fixture {
        // Hundreds of requests on one key in a burst: a sweep of the API, not a till, so the
        // per-key rate limit (429 after the burst) is off.
        let srv = crate::start_with(backend, &["--rate-limit-per-sec", "0"]).await;
        let tenant = srv.setup_tenant("kitchen").await;
        let manager = srv.manager(&tenant);
        let till = srv.terminal(&tenant);
        manager
            .post("/gift-cards", &json!({"code": "CARD-1", "amount": 1000}))
            .await
            .expect(201);
        till.post(
            &format!("/loyalty/{}/add", enc(PHONE)),
            &json!({"points": 50}),
        )
        .await
        .expect(200);
        let order = manager
            .post("/orders", &order_body("web-1", "online"))
            .await;
        let order_id = id_of(order.expect(201));
        till.post("/reports/daily", &report_body(REPORT_DATE, 1000, "x"))
            .await
            .expect(201);
        let integration = manager
            .post(
                "/pos/connect",
                &json!({"venue": VENUE, "provider": "local-pos"}),
            )
            .await;
        let integration_id = id_of(integration.expect(200));
        let rule = manager
            .post(
                &format!("/pos/rules/{VENUE}"),
                &json!({"name": "Regulars", "threshold": 5000, "tier": "REGULAR"}),
            )
            .await;
        let rule_id = id_of(rule.expect(201));
        let performance = manager
            .post(
                &format!("/pos/performances/{VENUE}"),
                &json!({"performer_id": "dj-ada", "starts_at": "2026-07-11T22:00:00Z",
                        "ends_at": "2026-07-12T02:00:00Z"}),
            )
            .await;
        let performance_id = id_of(performance.expect(201));
        let hook = manager
            .post("/hooks", &json!({"plugin": "order-size-flag"}))
            .await;
        let hook_id = id_of(hook.expect(201));
        let spare = srv.create_key(&tenant.slug, "terminal", "spare").await;
        let plugin = srv.admin().get("/admin/plugins/local-pos").await;
        let plugin_version = plugin.expect(200)["active_version"]
            .as_str()
            .unwrap_or_else(|| panic!("local-pos without an active version: {}", plugin.text))
            .to_owned();
        let plugin_limits =
            json!({"cpu_ms": plugin.body["cpu_ms"], "memory_mb": plugin.body["memory_mb"]});
        let plugin_hosts = plugin.body["approved_hosts"].clone();
        Fixture {
            slug: tenant.slug.clone(),
            terminal_key: tenant.terminal.key.clone(),
            manager_key: tenant.manager.key.clone(),
            key_id: spare.id,
            srv,
            order_id,
            integration_id,
            rule_id,
            performance_id,
            hook_id,
            plugin_version,
            plugin_limits,
            plugin_hosts,
        }
    }

    /// A root client carrying `who`'s credential (none for [`Who::Public`]).
    pub fn client(&self, who: Who) -> Client {
        match who {
            Who::Operator => self.srv.admin(),
            Who::Terminal => self.srv.anon().with_header("X-API-Key", &self.terminal_key),
            Who::Manager => self.srv.anon().with_header("X-API-Key", &self.manager_key),
            Who::Public => self.srv.anon(),
        }
    }

    /// The tenant's manager client at `/api/{tenant}`.
    pub fn manager(&self) -> Client {
        self.srv.tenant_client(&self.slug, &self.manager_key)
    }

    /// Everything observable that a refused request could have changed: the tenant's
    /// event log head, ledgers, orders, reports, integration, rules, tiers, hooks,
    /// performances, customer profile, tenants, keys and plugin settings.
    pub async fn snapshot(&self) -> Vec<(String, Value)> {
        let manager = self.manager();
        let mut reads = Vec::new();
        for path in [
            "/pos-status".to_owned(),
            "/gift-cards/CARD-1/balance".to_owned(),
            "/gift-cards/CARD-1/transactions".to_owned(),
            format!("/loyalty/{}/points", enc(PHONE)),
            format!("/loyalty/{}/transactions", enc(PHONE)),
            "/orders/pending".to_owned(),
            format!("/reports/daily/{REPORT_DATE}"),
            format!("/pos/status/{VENUE}"),
            format!("/pos/transactions/{VENUE}"),
            format!("/pos/rules/{VENUE}"),
            "/pos/tiers".to_owned(),
            "/hooks".to_owned(),
            format!("/pos/performances/{VENUE}"),
            format!("/customers/{}", enc(PHONE)),
        ] {
            let resp = manager.get(&path).await;
            let mut body = resp.expect(200).clone();
            // Revenue figures end at "now"; the sales they sum are read separately.
            if let Some(fields) = body.as_object_mut() {
                fields.remove("revenue");
            }
            reads.push((path, body));
        }
        let admin = self.srv.admin();
        for path in [
            "/admin/tenants".to_owned(),
            format!("/admin/tenants/{}/keys", self.slug),
            "/admin/plugins".to_owned(),
        ] {
            let resp = admin.get(&path).await;
            let mut body = resp.expect(200).clone();
            // A key's last use moves with these very reads (written at most once a minute,
            // so a run past a minute saw it change); its role, label and revocation must not.
            if let Some(keys) = body["keys"].as_array_mut() {
                for key in keys {
                    if let Some(fields) = key.as_object_mut() {
                        fields.remove("last_used_at");
                    }
                }
            }
            // Call counters of plugins move with background work; their settings must not.
            if let Some(plugins) = body["plugins"].as_array_mut() {
                for plugin in plugins {
                    if let Some(fields) = plugin.as_object_mut() {
                        fields.remove("stats");
                    }
                }
            }
            reads.push((path, body));
        }
        reads
    }
}

fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

/// Every route that takes a path parameter, a query parameter or a JSON body, with a
/// valid request for it (the routers in host/src/*.rs, route by route).
pub(crate) fn routes(fx: &Fixture) -> Vec<Route> {
    use Method as M;
    use Who::*;
    let t = || ("tenant", fx.slug.clone());
    let venue = || ("venue", VENUE.to_owned());
    let phone = || ("phone", PHONE.to_owned());
    let code = || ("code", "CARD-1".to_owned());
    let route = |who, method, template, params: Vec<(&'static str, String)>, body| Route {
        who,
        method,
        template,
        params,
        body,
        query: &[],
    };
    let points = json!({"points": 1, "order_id": "o-1", "reason": "visit"});
    let sale = json!({"id": "s-1", "occurred_at": "2026-11-20T12:00:00Z", "total": 1200,
                      "subtotal": 1200, "currency": "USD", "tender": "card",
                      "customer_phone": PHONE});
    let full_rule = json!({"name": "Late", "threshold": 100, "tier": "REGULAR",
        "access_level": "PUBLIC_LOBBY", "priority": 1, "enabled": true, "live_only": false,
        "time_windows": [{"days": ["fri", "sat"], "start": "20:00", "end": "02:00"}],
        "performer_id": "dj-ada"});
    let mut list = vec![
        // Operator API.
        route(
            Operator,
            M::POST,
            "/admin/tenants",
            vec![],
            Some(json!({
            "slug": "nul-test", "name": "N", "currency": "USD",
            "timezone": "America/New_York", "country": "US"})),
        ),
        route(
            Operator,
            M::GET,
            "/admin/tenants/{slug}",
            vec![("slug", fx.slug.clone())],
            None,
        ),
        // A no-op update, so an accepted one leaves the fixture as it was.
        route(
            Operator,
            M::PATCH,
            "/admin/tenants/{slug}",
            vec![("slug", fx.slug.clone())],
            Some(json!({"name": format!("Tenant {}", fx.slug),
                        "timezone": "America/New_York", "country": "US"})),
        ),
        // Resuming the active fixture tenant changes nothing, and deleting it is refused
        // (409, suspend first). Suspending is left out: it would lock the fixture's keys.
        route(
            Operator,
            M::POST,
            "/admin/tenants/{slug}/resume",
            vec![("slug", fx.slug.clone())],
            None,
        ),
        route(
            Operator,
            M::DELETE,
            "/admin/tenants/{slug}",
            vec![("slug", fx.slug.clone())],
            None,
        ),
        route(
            Operator,
            M::POST,
            "/admin/tenants/{slug}/keys",
            vec![("slug", fx.slug.clone())],
            Some(json!({"role": "terminal", "label": "till 9"})),
        ),
        route(
            Operator,
            M::GET,
            "/admin/tenants/{slug}/keys",
            vec![("slug", fx.slug.clone())],
            None,
        ),
        route(
            Operator,
            M::DELETE,
            "/admin/tenants/{slug}/keys/{id}",
            vec![("slug", fx.slug.clone()), ("id", fx.key_id.clone())],
            None,
        ),
        route(
            Operator,
            M::GET,
            "/admin/plugins/{id}",
            vec![("id", "local-pos".to_owned())],
            None,
        ),
        route(
            Operator,
            M::PUT,
            "/admin/plugins/{id}/hosts",
            vec![("id", "local-pos".to_owned())],
            Some(json!({"allow": ["127.0.0.1:9"]})),
        ),
        route(
            Operator,
            M::PUT,
            "/admin/plugins/{id}/limits",
            vec![("id", "local-pos".to_owned())],
            Some(json!({"cpu_ms": 100, "memory_mb": 16})),
        ),
        route(
            Operator,
            M::POST,
            "/admin/plugins/{id}/activate",
            vec![("id", "local-pos".to_owned())],
            Some(json!({"version": fx.plugin_version})),
        ),
        route(
            Operator,
            M::POST,
            "/admin/plugins/{id}/disable",
            vec![("id", "local-pos".to_owned())],
            None,
        ),
        route(
            Operator,
            M::DELETE,
            "/admin/plugins/{id}/versions/{version}",
            vec![
                ("id", "local-pos".to_owned()),
                ("version", fx.plugin_version.clone()),
            ],
            None,
        ),
        route(Operator, M::GET, "/admin/cluster", vec![], None),
        // Terminal API.
        route(Terminal, M::GET, "/api/{tenant}/health", vec![t()], None),
        route(
            Terminal,
            M::GET,
            "/api/{tenant}/pos-status",
            vec![t()],
            None,
        ),
        route(
            Terminal,
            M::GET,
            "/api/{tenant}/gift-cards/{code}/balance",
            vec![t(), code()],
            None,
        ),
        route(
            Terminal,
            M::POST,
            "/api/{tenant}/gift-cards/{code}/deduct",
            vec![t(), code()],
            Some(json!({"amount": 1, "order_id": "o-1"})),
        ),
        route(
            Terminal,
            M::GET,
            "/api/{tenant}/loyalty/{phone}/points",
            vec![t(), phone()],
            None,
        ),
        route(
            Terminal,
            M::POST,
            "/api/{tenant}/loyalty/{phone}/add",
            vec![t(), phone()],
            Some(points.clone()),
        ),
        route(
            Terminal,
            M::POST,
            "/api/{tenant}/loyalty/{phone}/redeem",
            vec![t(), phone()],
            Some(points),
        ),
        route(
            Terminal,
            M::GET,
            "/api/{tenant}/orders/pending",
            vec![t()],
            None,
        ),
        route(
            Terminal,
            M::POST,
            "/api/{tenant}/orders/{id}/status",
            vec![t(), ("id", fx.order_id.clone())],
            Some(json!({"status": "accepted"})),
        ),
        route(
            Terminal,
            M::POST,
            "/api/{tenant}/reports/daily",
            vec![t()],
            Some(report_body(REPORT_DATE, 2000, "second")),
        ),
        route(
            Terminal,
            M::GET,
            "/api/{tenant}/reports/daily/{date}",
            vec![t(), ("date", REPORT_DATE.to_owned())],
            None,
        ),
        route(
            Terminal,
            M::POST,
            "/api/{tenant}/transactions",
            vec![t()],
            Some(json!({"venue": VENUE, "transactions": [sale]})),
        ),
        // Manager API.
        route(
            Manager,
            M::POST,
            "/api/{tenant}/gift-cards",
            vec![t()],
            Some(json!({
            "code": "CARD-2", "amount": 500, "currency": "USD", "order_id": "o-2"})),
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/orders",
            vec![t()],
            Some(order_body("web-2", "online")),
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/validate",
            vec![t()],
            Some(json!({
            "provider": "local-pos", "credentials": {"token": "x"}, "location_id": "L-1",
            "environment": "sandbox", "base_url": "http://127.0.0.1:9/"})),
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/connect",
            vec![t()],
            Some(json!({
            "venue": "second", "provider": "local-pos", "credentials": {"token": "x"},
            "location_id": "L-2", "environment": "sandbox", "base_url": "http://127.0.0.1:9/",
            "webhook_signature_key": "k", "webhook_url": "https://example.test/hook",
            "sync_interval_s": 60})),
        ),
        route(
            Manager,
            M::GET,
            "/api/{tenant}/pos/status/{venue}",
            vec![t(), venue()],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/disconnect/{venue}",
            vec![t(), venue()],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/sync/{venue}",
            vec![t(), venue()],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/customers/{phone}/links",
            vec![t(), phone()],
            Some(json!({"card_fingerprint": "fp-1", "provider": "local-pos",
                        "provider_customer_id": "c-1"})),
        ),
        route(
            Manager,
            M::GET,
            "/api/{tenant}/pos/rules/{venue}",
            vec![t(), venue()],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/rules/{venue}",
            vec![t(), venue()],
            Some(full_rule.clone()),
        ),
        route(
            Manager,
            M::PATCH,
            "/api/{tenant}/pos/rules/{venue}/{rule_id}",
            vec![t(), venue(), ("rule_id", fx.rule_id.clone())],
            Some(full_rule),
        ),
        route(
            Manager,
            M::DELETE,
            "/api/{tenant}/pos/rules/{venue}/{rule_id}",
            vec![t(), venue(), ("rule_id", fx.rule_id.clone())],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/rules/{venue}/{rule_id}/toggle",
            vec![t(), venue(), ("rule_id", fx.rule_id.clone())],
            None,
        ),
        route(Manager, M::GET, "/api/{tenant}/pos/tiers", vec![t()], None),
        route(
            Manager,
            M::PUT,
            "/api/{tenant}/pos/tiers",
            vec![t()],
            Some(json!({
            "tiers": ["GUEST", "REGULAR", "GOLD", "PLATINUM", "WHALE"],
            "access_levels": ["PUBLIC_LOBBY", "INNER_CIRCLE"]})),
        ),
        route(
            Manager,
            M::GET,
            "/api/{tenant}/customers/{phone}",
            vec![t(), phone()],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/pos/performances/{venue}",
            vec![t(), venue()],
            Some(
                json!({"performer_id": "dj-bo", "starts_at": "2026-08-01T22:00:00Z",
                        "ends_at": "2026-08-02T02:00:00Z"}),
            ),
        ),
        route(
            Manager,
            M::DELETE,
            "/api/{tenant}/pos/performances/{venue}/{id}",
            vec![t(), venue(), ("id", fx.performance_id.clone())],
            None,
        ),
        route(Manager, M::GET, "/api/{tenant}/hooks", vec![t()], None),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/hooks",
            vec![t()],
            Some(json!({
            "plugin": "order-size-flag", "events": ["new_order"], "config": {"threshold": 1}})),
        ),
        route(
            Manager,
            M::GET,
            "/api/{tenant}/hooks/{id}",
            vec![t(), ("id", fx.hook_id.clone())],
            None,
        ),
        route(
            Manager,
            M::PATCH,
            "/api/{tenant}/hooks/{id}",
            vec![t(), ("id", fx.hook_id.clone())],
            Some(
                json!({"config": {"threshold": 2, "note": "x"}, "events": ["new_order"],
                        "enabled": false}),
            ),
        ),
        route(
            Manager,
            M::DELETE,
            "/api/{tenant}/hooks/{id}",
            vec![t(), ("id", fx.hook_id.clone())],
            None,
        ),
        route(
            Manager,
            M::POST,
            "/api/{tenant}/hooks/{id}/resume",
            vec![t(), ("id", fx.hook_id.clone())],
            None,
        ),
        // The public paths: signed webhooks and the event stream.
        route(
            Public,
            M::POST,
            "/webhooks/{provider}/{integration_id}",
            vec![
                ("provider", "local-pos".to_owned()),
                ("integration_id", fx.integration_id.clone()),
            ],
            None,
        ),
    ];
    for (template, params, query) in [
        (
            "/api/{tenant}/gift-cards/{code}/transactions",
            vec![t(), code()],
            &["limit", "cursor"][..],
        ),
        (
            "/api/{tenant}/loyalty/{phone}/transactions",
            vec![t(), phone()],
            &["limit", "cursor"],
        ),
        (
            "/api/{tenant}/pos/transactions/{venue}",
            vec![t(), venue()],
            &["from", "to", "customer", "limit", "cursor"],
        ),
        (
            "/api/{tenant}/pos/revenue/{venue}",
            vec![t(), venue()],
            &["period"],
        ),
        (
            "/api/{tenant}/pos/performances/{venue}",
            vec![t(), venue()],
            &["from", "to"],
        ),
        ("/ws/pos/{tenant}", vec![t()], &["since"]),
    ] {
        list.push(Route {
            who: Manager,
            method: M::GET,
            template,
            params,
            body: None,
            query,
        });
    }
    list
}

/// RFC 6901 reference token of an object key.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Every way to put a NUL into `body` once, each with the start of the message that must
/// name it: every value (leaves and containers) replaced by a string holding a NUL, every
/// object key given a NUL, and one unknown field holding a NUL (refused for the NUL first).
fn nul_mutations(body: &Value) -> Vec<(Value, String)> {
    fn walk(root: &Value, at: &Value, pointer: &str, out: &mut Vec<(Value, String)>) {
        match at {
            Value::Object(map) => {
                for (key, item) in map {
                    let child = format!("{pointer}/{}", token(key));
                    let mut renamed = root.clone();
                    let parent = if pointer.is_empty() {
                        renamed.as_object_mut()
                    } else {
                        renamed.pointer_mut(pointer).and_then(Value::as_object_mut)
                    }
                    .expect("the parent object");
                    let moved = parent.remove(key).expect("the key");
                    parent.insert(format!("{key}\u{0}"), moved);
                    // The server spells the NUL of a key as the six characters `\u0000`.
                    out.push((renamed, format!("key of {child}\\u0000:")));
                    walk(root, item, &child, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(root, item, &format!("{pointer}/{i}"), out);
                }
            }
            _ => {}
        }
        if !pointer.is_empty() {
            let mut replaced = root.clone();
            *replaced.pointer_mut(pointer).expect("the pointer") = json!(NUL_TEXT);
            out.push((replaced, format!("{pointer}:")));
        }
    }
    let mut out = Vec::new();
    walk(body, body, "", &mut out);
    let mut extra = body.clone();
    extra["nul_extra"] = json!(NUL_TEXT);
    out.push((extra, "/nul_extra:".to_owned()));
    out
}

/// Records a failure unless `resp` is 422 `unsupported_character` whose message `check`s.
fn expect_refusal(
    failures: &mut Vec<String>,
    what: &str,
    resp: &posbridge_harness::Resp,
    check: impl Fn(&str) -> bool,
) {
    let message = resp.body["error"]["message"].as_str().unwrap_or_default();
    if resp.status != 422 || resp.error_code() != Some(UNSUPPORTED) || !check(message) {
        failures.push(format!(
            "{what}: {} {} → {} {}",
            resp.method, resp.url, resp.status, resp.text
        ));
    }
}

async fn nul_is_refused_everywhere(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let before = fx.snapshot().await;
    let mut failures = Vec::new();
    let mut requests = 0;
    for route in routes(&fx) {
        let client = fx.client(route.who);
        let valid_body = || match &route.body {
            Some(body) => Body::Json(body.clone()),
            None if route.method == Method::GET || route.method == Method::DELETE => Body::None,
            None => Body::raw_json("{}"),
        };
        for (name, _) in &route.params {
            let resp = client
                .send(
                    route.method.clone(),
                    &route.path(Some(name)),
                    valid_body(),
                    &[],
                )
                .await;
            requests += 1;
            expect_refusal(
                &mut failures,
                &format!("path parameter {name}"),
                &resp,
                |m| m.contains(&format!("`{name}`")),
            );
        }
        for name in route.query {
            let path = format!("{}?{name}={NUL_SEGMENT}", route.path(None));
            let resp = client
                .send(route.method.clone(), &path, valid_body(), &[])
                .await;
            requests += 1;
            expect_refusal(
                &mut failures,
                &format!("query parameter {name}"),
                &resp,
                |m| m.contains(&format!("`{name}`")),
            );
        }
        if let Some(body) = &route.body {
            for (mutated, named) in nul_mutations(body) {
                let resp = client
                    .send(
                        route.method.clone(),
                        &route.path(None),
                        Body::Json(mutated),
                        &[],
                    )
                    .await;
                requests += 1;
                expect_refusal(&mut failures, &format!("body {named}"), &resp, |m| {
                    m.starts_with(&named)
                });
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests with a NUL were not refused as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(requests > 300, "the matrix shrank to {requests} requests");
    let after = fx.snapshot().await;
    for ((path, was), (_, now)) in before.iter().zip(&after) {
        assert_eq!(was, now, "{path} changed under refused requests");
    }
    // Lone surrogates cannot become Rust strings: malformed JSON, never a 500.
    let till = fx.srv.tenant_client(&fx.slug, &fx.terminal_key);
    for raw in [
        r#"{"amount":1,"order_id":"\ud800"}"#,
        r#"{"amount":1,"order_id":"x\udfffy"}"#,
    ] {
        till.send(
            Method::POST,
            "/gift-cards/CARD-1/deduct",
            Body::raw_json(raw),
            &[],
        )
        .await
        .expect_error(400, "invalid_json");
    }
    let resp = till.get("/gift-cards/%FF/balance").await;
    resp.expect_error(400, "invalid_path");
    assert_eq!(balance(&till, "CARD-1").await, 1000);

    // Text that only looks like a NUL, and other control characters, are ordinary text.
    let manager = fx.manager();
    let resp = manager
        .post(
            "/gift-cards",
            &json!({"code": "CTRL-1", "amount": 10, "order_id": "\\u0000 \u{1}\u{1f}\u{7f}"}),
        )
        .await;
    resp.expect(201);
    let resp = manager.get("/gift-cards/CTRL-1/transactions").await;
    assert_eq!(
        resp.expect(200)["items"][0]["order_id"],
        json!("\\u0000 \u{1}\u{1f}\u{7f}"),
        "stored and read back unchanged"
    );
}

/// The body's JSON with object keys in reverse order and whitespace everywhere: what a
/// client that re-serialises its retry with another library might send.
fn respell(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("\n  {} :  {}", json!(k), respell(v)))
                .collect();
            format!("{{{} }}", fields.join(" ,"))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(respell).collect();
            format!("[ {} ]", items.join(" , "))
        }
        scalar => scalar.to_string(),
    }
}

/// Sends `body` spelled compactly, then re-spelled, under one key: the second must be a
/// replay of the first, with the same status and body. Returns the first answer.
async fn first_and_respelled_retry(
    client: &Client,
    path: &str,
    body: &Value,
    key: &str,
) -> posbridge_harness::Resp {
    let compact = serde_json::to_string(body).expect("serialise");
    let respelled = respell(body);
    assert_ne!(compact, respelled, "the retry must be spelled differently");
    assert_eq!(
        serde_json::from_str::<Value>(&respelled).expect("respelled JSON parses"),
        *body
    );
    let headers = [("Idempotency-Key", key)];
    let first = client
        .send(Method::POST, path, Body::raw_json(compact), &headers)
        .await;
    assert!(
        first.status == 200 || first.status == 201,
        "{path}: first request failed: {}",
        first.text
    );
    assert_eq!(
        first.header(REPLAYED),
        None,
        "{path}: a first answer is not a replay"
    );
    let retry = client
        .send(Method::POST, path, Body::raw_json(respelled), &headers)
        .await;
    assert_eq!(
        (retry.status, retry.header(REPLAYED)),
        (first.status, Some("true")),
        "{path}: the re-serialised retry must replay: {}",
        retry.text
    );
    assert_eq!(
        retry.body, first.body,
        "{path}: the replay answers the first body"
    );
    first
}

async fn reserialised_retries_replay(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let till = srv.terminal(&kitchen);
    crate::connect_local_pos(&manager, VENUE).await;
    let add = format!("/loyalty/{}/add", enc(PHONE));

    // The issue's case, byte for byte: `{"points": 5}` after `{"points":5}`.
    let seq = last_seq(&till).await;
    let key = [("Idempotency-Key", "points-1")];
    let first = till
        .send(Method::POST, &add, Body::raw_json(r#"{"points":5}"#), &key)
        .await;
    assert_eq!(first.expect(200)["points"], 5);
    let seq_after = last_seq(&till).await;
    assert!(seq_after > seq, "the add was logged");
    let retry = till
        .send(Method::POST, &add, Body::raw_json(r#"{"points": 5}"#), &key)
        .await;
    retry.expect(200);
    assert_eq!(retry.header(REPLAYED), Some("true"), "{}", retry.text);
    assert_eq!(retry.body, first.body);
    // Escapes are spelling too.
    let retry = till
        .send(
            Method::POST,
            &add,
            Body::raw_json(r#"{"poi\u006ets" :5}"#),
            &key,
        )
        .await;
    assert_eq!(retry.header(REPLAYED), Some("true"), "{}", retry.text);
    // A different value is a different request, however it is spelled.
    for other in [r#"{"points":6}"#, r#"{"points":5,"reason":"visit"}"#] {
        till.send(Method::POST, &add, Body::raw_json(other), &key)
            .await
            .expect_error(422, "idempotency_key_reused");
    }
    assert_eq!(
        last_seq(&till).await,
        seq_after,
        "one effect, no more events"
    );
    let points = till.get(&format!("/loyalty/{}/points", enc(PHONE))).await;
    assert_eq!(points.expect(200)["points"], 5);

    // Every idempotent route, each with a body whose keys and nesting can be respelled.
    manager
        .post("/gift-cards", &json!({"code": "CARD-1", "amount": 1000}))
        .await
        .expect(201);
    let issued = first_and_respelled_retry(
        &manager,
        "/gift-cards",
        &json!({"amount": 700, "currency": "USD", "order_id": "buy-1"}),
        "issue-1",
    )
    .await;
    let issued_code = issued.body["code"].as_str().expect("code").to_owned();
    assert_eq!(balance(&till, &issued_code).await, 700);
    first_and_respelled_retry(
        &till,
        "/gift-cards/CARD-1/deduct",
        &json!({"amount": 100, "order_id": "o-1"}),
        "deduct-1",
    )
    .await;
    assert_eq!(balance(&till, "CARD-1").await, 900, "one deduct");
    first_and_respelled_retry(
        &till,
        &format!("/loyalty/{}/redeem", enc(PHONE)),
        &json!({"points": 2, "order_id": "o-2", "reason": "coffee"}),
        "redeem-1",
    )
    .await;
    let points = till.get(&format!("/loyalty/{}/points", enc(PHONE))).await;
    assert_eq!(points.expect(200)["points"], 3, "one redeem");
    let order = first_and_respelled_retry(
        &manager,
        "/orders",
        &order_body("web-1", "online"),
        "order-1",
    )
    .await;
    let order_id = id_of(&order.body);
    let pending = till.get("/orders/pending").await;
    assert_eq!(
        pending.expect(200)["orders"].as_array().map(Vec::len),
        Some(1)
    );
    first_and_respelled_retry(
        &till,
        &format!("/orders/{order_id}/status"),
        &json!({"status": "accepted"}),
        "status-1",
    )
    .await;
    let report = first_and_respelled_retry(
        &till,
        "/reports/daily",
        &report_body(REPORT_DATE, 5000, "first"),
        "report-1",
    )
    .await;
    assert_eq!(report.body["revision"], 1);
    let stored = till.get(&format!("/reports/daily/{REPORT_DATE}")).await;
    assert_eq!(stored.expect(200)["revision"], 1, "one revision");
    let sale = json!({"id": "s-1", "occurred_at": "2026-11-20T12:00:00Z", "total": 1200,
                      "subtotal": 1200, "currency": "USD", "tender": "card",
                      "customer_phone": PHONE});
    let pushed = first_and_respelled_retry(
        &till,
        "/transactions",
        &json!({"venue": VENUE, "transactions": [sale]}),
        "push-1",
    )
    .await;
    assert_eq!(pushed.body["created"], 1);
    let sales = manager.get(&format!("/pos/transactions/{VENUE}")).await;
    assert_eq!(sales.expect(200)["items"].as_array().map(Vec::len), Some(1));

    // The same keys with another value are still refused, and change nothing.
    let seq = last_seq(&till).await;
    for (client, path, body, key) in [
        (
            &till,
            "/gift-cards/CARD-1/deduct".to_owned(),
            json!({"amount": 101, "order_id": "o-1"}),
            "deduct-1",
        ),
        (
            &manager,
            "/orders".to_owned(),
            order_body("web-2", "online"),
            "order-1",
        ),
        (
            &till,
            "/reports/daily".to_owned(),
            report_body(REPORT_DATE, 5001, "first"),
            "report-1",
        ),
    ] {
        client
            .post_idem(&path, &body, key)
            .await
            .expect_error(422, "idempotency_key_reused");
    }
    assert_eq!(last_seq(&till).await, seq);
    assert_eq!(balance(&till, "CARD-1").await, 900);
}

/// A key stored by a host from before canonical fingerprints holds the fingerprint of the
/// raw bytes: a byte-identical retry still replays after the upgrade, and a different
/// value is still refused.
async fn legacy_fingerprints_still_replay(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let till = srv.terminal(&kitchen);
    let add = format!("/loyalty/{}/add", enc(PHONE));
    let raw = r#"{ "points": 3 }"#;
    let key = [("Idempotency-Key", "legacy-1")];
    let first = till
        .send(Method::POST, &add, Body::raw_json(raw), &key)
        .await;
    assert_eq!(first.expect(200)["points"], 3);
    // What the earlier host stored: SHA-256 over the request line (method and path within
    // the tenant's routes; the tenant is part of the key), a zero byte and the SHA-256 of
    // the body's bytes.
    let mut hasher = Sha256::new();
    hasher.update(format!("POST {add}").as_bytes());
    hasher.update([0]);
    hasher.update(Sha256::digest(raw.as_bytes()));
    let legacy = hex::encode(hasher.finalize());
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(srv.database_url())
        .await
        .expect("connect to the server's database");
    let updated = sqlx::query("UPDATE idempotency_keys SET fingerprint = $1 WHERE key = $2")
        .bind(&legacy)
        .bind("legacy-1")
        .execute(&db)
        .await
        .expect("rewrite the stored fingerprint")
        .rows_affected();
    db.close().await;
    assert_eq!(updated, 1);

    let retry = till
        .send(Method::POST, &add, Body::raw_json(raw), &key)
        .await;
    retry.expect(200);
    assert_eq!(retry.header(REPLAYED), Some("true"), "{}", retry.text);
    assert_eq!(retry.body, first.body);
    till.send(Method::POST, &add, Body::raw_json(r#"{"points":4}"#), &key)
        .await
        .expect_error(422, "idempotency_key_reused");
    let points = till.get(&format!("/loyalty/{}/points", enc(PHONE))).await;
    assert_eq!(points.expect(200)["points"], 3);
}

both_backends!(
    nul_is_refused_everywhere,
    reserialised_retries_replay,
    legacy_fingerprints_still_replay
);
