//! The web console (`/console`): how the binary serves it (content types, ETag, the
//! Content-Security-Policy), and a walk through it over WebDriver, in headless Chromium
//! and in Firefox ESR —
//! an operator creates a tenant and a manager key and uploads and rolls back a plugin;
//! the manager connects a local POS venue, sees a pushed sale in transactions and in the
//! live stream, and watches a spend rule's statistics move. Along the way each main page is
//! audited with axe-core (WCAG 2.1 AA; light scheme in Chromium, dark in Firefox), the keyboard path is walked, and the rules page is
//! checked at a tablet's width.
//!
//! The browser tests need Debian's `chromium` and `chromium-driver`, `firefox-esr` with
//! `geckodriver`, and `npm` (axe-core is installed on first use from the pinned lock file
//! in `console/a11y/`); without them they fail with a one-line explanation unless
//! `POSBRIDGE_TEST_BROWSER=skip`. Screenshots of the
//! main pages are saved under `target/console-screenshots/{backend}/` (the path is
//! printed).

mod webdriver;

use std::path::PathBuf;

use posbridge_harness::{both_backends, Backend};
use serde_json::json;

use webdriver::{Browser, Kind};

both_backends!(
    console_is_served_from_the_binary,
    console_reads_providers_and_venues,
    console_walkthrough,
    console_walkthrough_in_firefox
);

/// Every file comes with its type, a validator the browser can revalidate with, and a
/// policy that allows this origin only; an unknown file is the API's JSON 404.
async fn console_is_served_from_the_binary(backend: Backend) {
    let srv = crate::start(backend).await;
    let anon = srv.anon();
    let page = anon.get("/console").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text.contains("/console/app.js"), "{}", page.text);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    let script = anon.get("/console/app.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let etag = script.header("etag").expect("an ETag").to_owned();
    assert_eq!(script.header("cache-control"), Some("no-cache"));
    let again = anon
        .send(
            posbridge_harness::reqwest::Method::GET,
            "/console/app.js",
            posbridge_harness::Body::None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(again.status, 304);
    assert!(again.text.is_empty());
    assert_eq!(
        anon.get("/console/style.css").await.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    anon.get("/console/nope.js")
        .await
        .expect_error(404, "not_found");
    // Nothing outside the embedded directory is reachable.
    anon.get("/console/..%2FCargo.toml")
        .await
        .expect_error(404, "not_found");
}

/// The two manager reads the console is built on: the providers with their declared
/// credential fields (no operator access needed) and the tenant's venues; a terminal key
/// is refused both.
async fn console_reads_providers_and_venues(backend: Backend) {
    let srv = crate::start(backend).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let providers = manager.get("/pos/providers").await;
    let list = providers.expect(200)["providers"]
        .as_array()
        .expect("providers")
        .clone();
    let square = list
        .iter()
        .find(|p| p["id"] == "square")
        .unwrap_or_else(|| panic!("square missing: {}", providers.text));
    assert_eq!(
        square["credential_fields"][0],
        json!({"name": "access_token", "label": "Access token", "secret": true, "required": true})
    );
    assert!(list.iter().any(|p| p["id"] == "local-pos"));
    // Hooks are not providers.
    assert!(!list.iter().any(|p| p["id"] == "big-spender-alert"));

    assert_eq!(
        manager.get("/pos/integrations").await.expect(200)["items"],
        json!([])
    );
    crate::connect_local_pos(&manager, "downtown").await;
    let venues = manager.get("/pos/integrations").await;
    let items = venues.expect(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 1, "{}", venues.text);
    assert_eq!(items[0]["venue"], "downtown");
    assert_eq!(items[0]["status"], "CONNECTED");
    assert!(!venues.text.contains("credentials"), "{}", venues.text);

    let till = srv.terminal(&kitchen);
    till.get("/pos/providers")
        .await
        .expect_error(403, "forbidden");
    till.get("/pos/integrations")
        .await
        .expect_error(403, "forbidden");
    srv.tenant_anon("kitchen")
        .get("/pos/integrations")
        .await
        .expect_error(401, "unauthorized");
}

async fn console_walkthrough(backend: Backend) {
    walkthrough(backend, Kind::Chromium).await;
}

async fn console_walkthrough_in_firefox(backend: Backend) {
    walkthrough(backend, Kind::Firefox).await;
}

/// The walk through the console, the same in every browser.
async fn walkthrough(backend: Backend, kind: Kind) {
    let Some((driver, browser)) = webdriver::locate(kind) else {
        return;
    };
    let srv = crate::start(backend).await;
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("../console-screenshots")
        .join(kind.name())
        .join(format!("{backend:?}").to_lowercase());
    let b = Browser::start(kind, &driver, &browser, shots.clone()).await;
    let axe = webdriver::axe_source();
    let mut a11y: Vec<String> = Vec::new();
    let base = srv.base_url().to_owned();

    // ----- operator -----
    b.goto(&format!("{base}/console")).await;
    b.wait_text("h1", "Sign in").await;
    // The scheme the audits below check the contrast of is the one intended.
    let dark = b
        .script(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            json!([]),
        )
        .await;
    assert_eq!(dark, json!(kind.dark()), "colour scheme in {}", kind.name());
    b.screenshot("01-sign-in").await;
    audit(&b, &axe, "01-sign-in", &mut a11y).await;
    // A wrong token is refused with the API's words and keeps the sign-in page.
    b.fill("#signin input[name=secret]", "not-the-token").await;
    b.click("#signin button[type=submit]").await;
    b.wait_text("#status", "unauthorized").await;
    b.fill("#signin input[name=secret]", srv.operator_token())
        .await;
    b.click("#signin button[type=submit]").await;
    b.wait_text("h1", "Tenants").await;

    b.fill("#create-tenant input[name=slug]", "bistro").await;
    b.fill("#create-tenant input[name=name]", "Bistro").await;
    b.click("#create-tenant button[type=submit]").await;
    b.wait_text("h1", "Tenant bistro").await;
    let tenant = srv.admin().get("/admin/tenants/bistro").await;
    assert_eq!(tenant.expect(200)["currency"], "USD");

    b.select("#create-key select[name=role]", "manager").await;
    b.fill("#create-key input[name=label]", "back office").await;
    b.click("#create-key button[type=submit]").await;
    b.wait_text("#new-key", "not shown again").await;
    let key = b
        .script(
            "return document.querySelector('#new-key input').value",
            json!([]),
        )
        .await
        .as_str()
        .expect("the new key")
        .to_owned();
    assert!(key.starts_with("pbk_"), "{key}");
    b.screenshot("02-tenant-and-key").await;
    audit(&b, &axe, "02-tenant-and-key", &mut a11y).await;
    // The secret is shown from the create answer only: the page reloaded shows none.
    b.goto(&format!("{base}/console#/tenants")).await;
    b.goto(&format!("{base}/console#/tenants/bistro")).await;
    b.wait_text("main", "back office").await;
    assert!(!b.text("main").await.contains(&key));
    let stored = b
        .script(
            "return JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage})",
            json!([]),
        )
        .await;
    assert!(!stored.as_str().unwrap_or_default().contains(&key));

    // Upload two versions of a plugin, then roll back to the first.
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, version) in [("test_swap_v1", "1.0.0"), ("test_swap_v2", "2.0.0")] {
        let file = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&file, crate::wasm(name)).expect("writing the component");
        b.goto(&format!("{base}/console#/plugins")).await;
        b.wait_text("h1", "Plugins").await;
        b.fill("#upload-plugin input[type=file]", &file.to_string_lossy())
            .await;
        b.click("#upload-plugin button[type=submit]").await;
        b.wait_text("main", &format!("{version} (serving)")).await;
    }
    b.click_button("Roll back to 1.0.0").await;
    b.wait_text("main", "1.0.0 (serving)").await;
    let plugin = srv.admin().get("/admin/plugins/test-swap").await;
    assert_eq!(plugin.expect(200)["active_version"], "1.0.0");
    b.screenshot("03-plugin-rolled-back").await;
    audit(&b, &axe, "03-plugin-rolled-back", &mut a11y).await;
    b.goto(&format!("{base}/console#/plugins")).await;
    b.wait_text("main", "test-swap").await;
    b.screenshot("04-plugins").await;
    audit(&b, &axe, "04-plugins", &mut a11y).await;
    b.goto(&format!("{base}/console#/cluster")).await;
    b.wait_text("main", "(this)").await;
    b.goto(&format!("{base}/console#/dead-letters")).await;
    b.wait_text("main", "No dead letters.").await;
    b.click("#signout").await;
    b.wait_text("h1", "Sign in").await;

    // ----- manager -----
    b.select("#signin select[name=role]", "manager").await;
    b.fill("#signin input[name=tenant]", "bistro").await;
    b.fill("#signin input[name=secret]", &key).await;
    b.click("#signin button[type=submit]").await;
    b.wait_text("h1", "Venues").await;
    b.fill("#connect-venue input[name=venue]", "downtown").await;
    b.select("#connect-venue select[name=provider]", "local-pos")
        .await;
    b.click("#connect-venue button[type=submit]").await;
    b.wait_text("h1", "Venue downtown").await;
    b.wait_text("main", "CONNECTED").await;
    b.screenshot("05-venue").await;
    audit(&b, &axe, "05-venue", &mut a11y).await;

    b.goto(&format!("{base}/console#/rules")).await;
    b.fill("#rule-form input[name=name]", "Regulars").await;
    b.fill("#rule-form input[name=threshold]", "5000").await;
    b.select("#rule-form select[name=tier]", "REGULAR").await;
    b.click("#rule-form button[type=submit]").await;
    b.wait_text("#rules", "Regulars").await;
    assert_eq!(b.text("#rules td[data-col=Triggered]").await, "0");

    b.goto(&format!("{base}/console#/live")).await;
    b.wait_text("#live-state", "Live: connected").await;

    // A till pushes a sale over the threshold for a known phone.
    let till = srv.tenant_client("bistro", &key);
    let now = posbridge_harness::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let pushed = till
        .post(
            "/transactions",
            &json!({"venue": "downtown", "transactions": [{
                "id": "sale-1", "occurred_at": now, "total": 6000, "subtotal": 5500, "tax": 500,
                "tip": 0, "discount": 0, "currency": "USD", "tender": "card",
                "card": {"brand": "VISA", "last4": "1111"}, "customer_phone": "+15550100199"
            }]}),
        )
        .await;
    assert_eq!(pushed.expect(200)["created"], 1);
    let stream = b.wait_text("#events", "transaction_recorded").await;
    assert!(stream.contains("sale-1"), "{stream}");
    b.wait_text("#events", "tier_unlocked").await;
    // The filter keeps only the chosen type.
    b.select("select[name=type]", "tier_unlocked").await;
    let filtered = b.text("#events").await;
    assert!(
        filtered.contains("tier_unlocked") && !filtered.contains("transaction_recorded"),
        "{filtered}"
    );
    b.screenshot("06-live").await;
    audit(&b, &axe, "06-live", &mut a11y).await;
    // Paused, the page misses a sale; resumed, it reconnects with `since` and gets exactly
    // the missed event, nothing twice.
    b.select("select[name=type]", "").await;
    b.click("#live-pause").await;
    b.wait_text("#live-state", "Paused at #2").await;
    let pushed = till
        .post(
            "/transactions",
            &json!({"venue": "downtown", "transactions": [{
                "id": "sale-2", "occurred_at": now, "total": 1500, "subtotal": 1500, "tax": 0,
                "tip": 0, "discount": 0, "currency": "USD", "tender": "cash"
            }]}),
        )
        .await;
    assert_eq!(pushed.expect(200)["created"], 1);
    b.click("#live-pause").await;
    b.wait_text("#events", "sale-2").await;
    b.wait_text("#live-state", "events after #2").await;
    let seqs = b
        .script(
            "return [...document.querySelectorAll('#events li')].map(li => Number(li.dataset.seq))",
            json!([]),
        )
        .await;
    assert_eq!(seqs, json!([3, 2, 1]));

    b.goto(&format!("{base}/console#/transactions")).await;
    let listed = b.wait_text("#transactions", "sale-1").await;
    assert!(listed.contains("USD 60.00"), "{listed}");
    b.fill("#filter-transactions input[name=customer]", "+15550100000")
        .await;
    b.click("#filter-transactions button[type=submit]").await;
    b.wait_text("#transactions", "No sales match.").await;
    b.fill("#filter-transactions input[name=customer]", "+15550100199")
        .await;
    b.click("#filter-transactions button[type=submit]").await;
    b.wait_text("#transactions", "sale-1").await;
    b.screenshot("07-transactions").await;
    audit(&b, &axe, "07-transactions", &mut a11y).await;

    b.goto(&format!("{base}/console#/rules")).await;
    b.wait_text("#rules", "Regulars").await;
    b.wait_text("#rules td[data-col=Triggered]", "1").await;
    assert_eq!(
        b.text("#rules td[data-col='Customers unlocked']").await,
        "1"
    );
    b.screenshot("08-rules").await;
    audit(&b, &axe, "08-rules", &mut a11y).await;

    b.goto(&format!("{base}/console#/revenue")).await;
    b.wait_text("#revenue", "USD 75.00").await;
    // The per-day chart: today's bar carries both sales, drawn with a height.
    let bars = b
        .script(
            "return [...document.querySelectorAll('#revenue svg rect.bar')].map(r => [r.dataset.text, Number(r.getAttribute('height'))])",
            json!([]),
        )
        .await;
    let bars = bars.as_array().expect("bars").clone();
    assert_eq!(bars.len(), 30, "a bar per day of the last 30: {bars:?}");
    assert_eq!(bars[29][0], "USD 75.00", "{bars:?}");
    assert!(bars[29][1].as_f64().unwrap_or(0.0) > 0.0, "{bars:?}");
    assert!(
        bars[..29].iter().all(|bar| bar[0] == "USD 0.00"),
        "{bars:?}"
    );
    b.screenshot("09-revenue").await;
    audit(&b, &axe, "09-revenue", &mut a11y).await;
    b.select("#revenue-range select[name=by]", "month").await;
    b.click("#revenue-range button[type=submit]").await;
    b.wait_text("#revenue figcaption", "per month").await;
    let months = b
        .script(
            "return [...document.querySelectorAll('#revenue svg rect.bar')].map(r => r.dataset.text)",
            json!([]),
        )
        .await;
    assert_eq!(months.as_array().map(Vec::len), Some(12), "{months}");
    assert_eq!(months[11], "USD 75.00", "{months}");

    // On a tablet (iPad portrait): the navigation and the page fit the width, nothing
    // scrolls sideways.
    b.resize(820, 1180).await;
    b.goto(&format!("{base}/console#/rules")).await;
    b.wait_text("#rules", "Regulars").await;
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the page scrolls sideways by {overflow}px"
    );
    b.screenshot("11-tablet-rules").await;
    audit(&b, &axe, "11-tablet-rules", &mut a11y).await;
    b.resize(1280, 1000).await;

    // Keyboard only, from a freshly loaded page: the first Tab lands on the skip link,
    // whose Enter moves focus into the page without leaving it; from the top again, Tab
    // walks to the navigation (every stop visibly focused) and Enter on "Transactions"
    // opens that page with focus moved into it.
    let fresh = |page: &'static str| {
        let b = &b;
        let url = format!("{base}/console#/{page}");
        async move {
            b.goto("about:blank").await;
            b.goto(&url).await;
        }
    };
    fresh("rules").await;
    b.wait_text("#rules", "Regulars").await;
    b.tab(false).await;
    assert_eq!(b.focused().await.name, "Skip to content");
    b.enter().await;
    assert_eq!(b.focused().await.tag, "main");
    assert!(
        b.script("return location.hash", json!([])).await == "#/rules",
        "the skip link must not navigate"
    );
    assert!(b.text("h1").await.contains("Spend rules"));
    fresh("rules").await;
    b.wait_text("#rules", "Regulars").await;
    let mut stops = Vec::new();
    loop {
        b.tab(false).await;
        let now = b.focused().await;
        assert!(
            now.outline_visible,
            "no visible focus on {now:?} after {stops:?}"
        );
        let done = now.name == "Transactions";
        stops.push(now.name);
        if done {
            break;
        }
        assert!(stops.len() < 6, "Tab did not reach Transactions: {stops:?}");
    }
    b.enter().await;
    b.wait_text("h1", "Transactions").await;
    assert_eq!(b.focused().await.tag, "main");
    // With Shift, Tab walks back the same way.
    fresh("venues").await;
    b.wait_text("main", "downtown").await;
    for _ in 0..stops.len() {
        b.tab(false).await;
    }
    b.tab(true).await;
    assert_eq!(b.focused().await.name, stops[stops.len() - 2]);

    // The other manager pages open and show their empty states.
    for (page, text) in [
        ("tiers", "WHALE"),
        ("performances", "No performances."),
        ("hooks", "No hooks bound."),
        ("venues", "downtown"),
    ] {
        b.goto(&format!("{base}/console#/{page}")).await;
        b.wait_text("main", text).await;
    }

    b.goto(&format!("{base}/console#/customers")).await;
    b.fill("#customer-lookup input[name=phone]", "(555) 010-0199")
        .await;
    b.click("#customer-lookup button[type=submit]").await;
    let profile = b.wait_text("#customer", "Regulars").await;
    assert!(profile.contains("REGULAR"), "{profile}");
    b.screenshot("10-customer").await;
    audit(&b, &axe, "10-customer", &mut a11y).await;

    // Every page audited along the way meets WCAG 2.1 AA as axe-core checks it (labels,
    // contrast, names, ARIA).
    assert!(
        a11y.is_empty(),
        "accessibility ({}): {a11y:#?}",
        kind.name()
    );

    // The policy blocked nothing and no script failed along the way.
    let log = b.console_log().await;
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Uncaught"))
        .collect();
    assert!(bad.is_empty(), "browser console: {bad:#?}");
    println!("console screenshots ({}): {}", kind.name(), shots.display());
}

/// Runs axe-core on the page now shown and keeps what it finds, named by `page`.
async fn audit(b: &Browser, axe: &str, page: &str, found: &mut Vec<String>) {
    for violation in b.accessibility_violations(axe).await {
        found.push(format!("{page}: {violation}"));
    }
}
