//! Spend rules through the real binary: the rules API and its validation, the tier ladder,
//! unlocks by one sale and by many, priorities, disabled rules, time windows across midnight
//! and daylight-saving changes, late older sales, performers and live-only rules, refunds,
//! the same sale by webhook and by sync, concurrent sales of one customer, and terminals
//! hearing `tier_unlocked` exactly once.

use std::time::Duration;

use posbridge_harness::mock_square::{square_payment_webhook, SquarePayment};
use posbridge_harness::{both_backends, enc, eventually, Backend, Client, TestServer, Ws};
use serde_json::{json, Value};

use crate::providers::{at_ms, connect_square_webhooks, now_ms, post_signed_square, sync};

const VENUE: &str = "downtown";
/// Pushed to mark the end of a burst: every frame before its `loyalty_updated` belongs to
/// the burst.
const SENTINEL_PHONE: &str = "+15550109999";

/// A tenant with `downtown` connected to the local POS; returns (manager, till).
async fn local_venue(srv: &TestServer) -> (Client, Client, String) {
    let tenant = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&tenant);
    let till = srv.terminal(&tenant);
    crate::connect_local_pos(&manager, VENUE).await;
    (manager, till, tenant.terminal.key.clone())
}

fn rule(name: &str, threshold: i64, tier: &str, priority: i64) -> Value {
    json!({"name": name, "threshold": threshold, "tier": tier, "priority": priority})
}

async fn add_rule(manager: &Client, body: &Value) -> Value {
    let resp = manager.post(&format!("/pos/rules/{VENUE}"), body).await;
    resp.expect(201).clone()
}

fn sale(id: &str, phone: &str, total: i64, occurred_at: &str) -> Value {
    json!({"id": id, "occurred_at": occurred_at, "total": total, "subtotal": total,
           "currency": "USD", "tender": "card", "customer_phone": phone})
}

/// Pushes `sales` at the venue; returns the counts (created, updated, duplicates, rejected).
async fn push(till: &Client, sales: Vec<Value>) -> Value {
    let resp = till
        .post(
            "/transactions",
            &json!({"venue": VENUE, "transactions": sales}),
        )
        .await;
    let body = resp.expect(200).clone();
    assert_eq!(body["rejected"], 0, "{}", resp.text);
    body
}

/// The `tier_unlocked` frames received before the sentinel's `loyalty_updated`: pushes the
/// sentinel, then reads up to it, so "exactly these unlocks" is checked without waiting.
async fn unlocks_until_sentinel(ws: &mut Ws, till: &Client) -> Vec<Value> {
    till.post(
        &format!("/loyalty/{}/add", enc(SENTINEL_PHONE)),
        &json!({"points": 1}),
    )
    .await
    .expect(200);
    let mut unlocks = Vec::new();
    for _ in 0..500 {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("tier_unlocked") => unlocks.push(frame),
            Some("loyalty_updated") if frame["data"]["phone"] == SENTINEL_PHONE => return unlocks,
            _ => {}
        }
    }
    panic!("no sentinel within 500 frames");
}

async fn tier_of(till: &Client, phone: &str) -> String {
    let resp = till.get(&format!("/loyalty/{}/points", enc(phone))).await;
    resp.expect(200)["tier"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn profile(manager: &Client, phone: &str) -> Value {
    let resp = manager.get(&format!("/customers/{}", enc(phone))).await;
    resp.expect(200).clone()
}

async fn rules(manager: &Client) -> Vec<Value> {
    let resp = manager.get(&format!("/pos/rules/{VENUE}")).await;
    resp.expect(200)["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Pushes one sale per case (phone, time, expected tier) and checks that exactly the cases
/// with a tier unlocked it, in order.
async fn expect_unlocks(
    ws: &mut Ws,
    till: &Client,
    prefix: &str,
    cases: &[(&str, &str, Option<&str>)],
) {
    for (i, (phone, at, _)) in cases.iter().enumerate() {
        push(till, vec![sale(&format!("{prefix}-{i}"), phone, 500, at)]).await;
    }
    let unlocks = unlocks_until_sentinel(ws, till).await;
    let expected: Vec<(String, String)> = cases
        .iter()
        .filter_map(|(phone, _, tier)| tier.map(|t| ((*phone).to_owned(), t.to_owned())))
        .collect();
    assert_eq!(unlocked_phones(&unlocks), expected);
}

fn unlocked_phones(unlocks: &[Value]) -> Vec<(String, String)> {
    unlocks
        .iter()
        .map(|u| {
            (
                u["data"]["customer"]["phone"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                u["data"]["tier"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A server with the `kitchen` tenant's `downtown` on the local POS: (server, manager, till).
async fn rules_setup(backend: Backend) -> (TestServer, Client, Client) {
    let srv = crate::start(backend).await;
    let (manager, till, _) = local_venue(&srv).await;
    (srv, manager, till)
}

fn rule_path(id: &str) -> String {
    format!("/pos/rules/{VENUE}/{id}")
}

/// A rule with every field set.
fn full_rule() -> Value {
    json!({"name":"Regulars","threshold":5000,"tier":"REGULAR","access_level":"PUBLIC_LOBBY",
        "priority":1,"enabled":true,"live_only":false,
        "time_windows":[{"days":["fri","sat"],"start":"20:00","end":"02:00"}],"performer_id":null})
}

async fn terminals_anonymous_callers_and_other_tenants_cannot_manage_rules(backend: Backend) {
    let (srv, _manager, till) = rules_setup(backend).await;
    let other = srv.setup_tenant("bistro").await;
    till.get(&format!("/pos/rules/{VENUE}"))
        .await
        .expect_error(403, "forbidden");
    srv.tenant_anon("kitchen")
        .get(&format!("/pos/rules/{VENUE}"))
        .await
        .expect_error_status(401);
    srv.tenant_client("kitchen", &other.manager.key)
        .get(&format!("/pos/rules/{VENUE}"))
        .await
        .expect_error_status(403);
}

async fn a_created_rule_echoes_every_field_with_zero_counters(backend: Backend) {
    let (_srv, manager, _till) = rules_setup(backend).await;
    let full = full_rule();
    let regulars = add_rule(&manager, &full).await;
    assert!(regulars["id"].as_str().is_some_and(|s| !s.is_empty()));
    for field in [
        "name",
        "threshold",
        "tier",
        "access_level",
        "priority",
        "enabled",
        "live_only",
        "time_windows",
        "performer_id",
    ] {
        assert_eq!(regulars[field], full[field], "{field}: {regulars}");
    }
    assert_eq!(regulars["times_triggered"], 0);
    assert_eq!(regulars["customers_unlocked"], 0);
    assert!(regulars["last_triggered"].is_null());
}

async fn rules_are_listed_by_priority_then_threshold(backend: Backend) {
    let (_srv, manager, _till) = rules_setup(backend).await;
    let regulars = add_rule(&manager, &full_rule()).await;
    let whales = add_rule(&manager, &rule("Whales", 100_000, "WHALE", 0)).await;
    let platinum_a = add_rule(&manager, &rule("Platinum B", 30_000, "PLATINUM", 1)).await;
    let platinum_b = add_rule(&manager, &rule("Platinum A", 20_000, "PLATINUM", 1)).await;
    let order: Vec<Value> = rules(&manager)
        .await
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        order,
        vec![
            whales["id"].clone(),
            regulars["id"].clone(),
            platinum_b["id"].clone(),
            platinum_a["id"].clone()
        ]
    );
}

async fn invalid_rules_are_refused_with_a_clear_error_and_not_stored(backend: Backend) {
    let (_srv, manager, _till) = rules_setup(backend).await;
    add_rule(&manager, &full_rule()).await;
    let bad = [
        (
            json!({"name":"x","threshold":-1,"tier":"REGULAR"}),
            422,
            "invalid_request",
        ),
        (
            json!({"name":"x","threshold":12.5,"tier":"REGULAR"}),
            422,
            "invalid_request",
        ),
        (
            json!({"name":"x","threshold":"100","tier":"REGULAR"}),
            422,
            "invalid_request",
        ),
        (
            json!({"name":"x","threshold":100,"tier":"KING"}),
            422,
            "unknown_tier",
        ),
        (
            json!({"name":"x","threshold":100,"tier":"REGULAR","access_level":"VIP_ROOM"}),
            422,
            "unknown_access_level",
        ),
        (
            json!({"name":"","threshold":100,"tier":"REGULAR"}),
            422,
            "invalid_request",
        ),
        (
            json!({"name":"x","threshold":100,"tier":"REGULAR","time_windows":[{"days":["fri"],"start":"25:00","end":"02:00"}]}),
            422,
            "invalid_request",
        ),
        (
            json!({"name":"x","threshold":100,"tier":"REGULAR","time_windows":[{"days":[],"start":"20:00","end":"02:00"}]}),
            422,
            "invalid_request",
        ),
        (
            json!({"name":"x","threshold":100,"tier":"REGULAR","colour":"red"}),
            422,
            "invalid_request",
        ),
        (
            json!({"threshold":100,"tier":"REGULAR"}),
            422,
            "invalid_request",
        ),
    ];
    for (body, status, code) in bad {
        manager
            .post(&format!("/pos/rules/{VENUE}"), &body)
            .await
            .expect_error(status, code);
    }
    manager
        .send(
            reqwest::Method::POST,
            &format!("/pos/rules/{VENUE}"),
            posbridge_harness::Body::raw_json("{\"name\":"),
            &[],
        )
        .await
        .expect_error(400, "invalid_json");
    assert_eq!(
        rules(&manager).await.len(),
        1,
        "refused rules were not stored"
    );
}

async fn patch_changes_only_the_named_fields_and_null_clears_one(backend: Backend) {
    let (_srv, manager, _till) = rules_setup(backend).await;
    let full = full_rule();
    let regulars = add_rule(&manager, &full).await;
    let id = regulars["id"].as_str().unwrap();
    let patched = manager
        .patch(
            &rule_path(id),
            &json!({"threshold": 6000, "performer_id": "dj-ada", "access_level": null}),
        )
        .await;
    let patched = patched.expect(200);
    assert_eq!(patched["threshold"], 6000);
    assert_eq!(patched["performer_id"], "dj-ada");
    assert!(patched["access_level"].is_null());
    assert_eq!(patched["name"], "Regulars");
    assert_eq!(patched["time_windows"], full["time_windows"]);
}

async fn toggle_flips_enabled_and_a_refused_patch_changes_nothing(backend: Backend) {
    let (_srv, manager, _till) = rules_setup(backend).await;
    let regulars = add_rule(&manager, &full_rule()).await;
    let id = regulars["id"].as_str().unwrap();
    manager
        .patch(&rule_path(id), &json!({"threshold": -5}))
        .await
        .expect_error(422, "invalid_request");
    let toggled = manager
        .post(&format!("{}/toggle", rule_path(id)), &json!({}))
        .await;
    assert_eq!(toggled.expect(200)["enabled"], false);
    let toggled = manager
        .post(&format!("{}/toggle", rule_path(id)), &json!({}))
        .await;
    assert_eq!(toggled.expect(200)["enabled"], true);
    assert_eq!(
        toggled.body["threshold"], 5000,
        "a failed PATCH changed nothing"
    );
}

async fn another_tenant_can_neither_patch_nor_delete_a_rule(backend: Backend) {
    let (srv, manager, _till) = rules_setup(backend).await;
    let other = srv.setup_tenant("bistro").await;
    let regulars = add_rule(&manager, &full_rule()).await;
    let id = regulars["id"].as_str().unwrap();
    let outsider = srv.manager(&other);
    outsider
        .patch(&rule_path(id), &json!({"threshold": 1}))
        .await
        .expect_error(404, "rule_not_found");
    outsider
        .delete(&rule_path(id))
        .await
        .expect_error(404, "rule_not_found");
    assert_eq!(rules(&manager).await[0]["threshold"], 5000);
}

async fn a_deleted_rule_is_gone(backend: Backend) {
    let (_srv, manager, _till) = rules_setup(backend).await;
    let regulars = add_rule(&manager, &full_rule()).await;
    let id = regulars["id"].as_str().unwrap();
    manager.delete(&rule_path(id)).await.expect(204);
    manager
        .delete(&rule_path(id))
        .await
        .expect_error(404, "rule_not_found");
    assert!(rules(&manager).await.is_empty());
}

async fn the_tier_ladder_starts_with_the_default_tiers_and_access_levels(backend: Backend) {
    let (_srv, _manager, till) = rules_setup(backend).await;
    let ladder = till.get("/pos/tiers").await;
    assert_eq!(
        ladder.expect(200)["tiers"],
        json!(["GUEST", "REGULAR", "PLATINUM", "WHALE"])
    );
    assert_eq!(
        ladder.body["access_levels"],
        json!(["PUBLIC_LOBBY", "INNER_CIRCLE"])
    );
}

async fn the_tier_ladder_refuses_terminals_duplicates_and_dropping_a_used_tier(backend: Backend) {
    let (_srv, manager, till) = rules_setup(backend).await;
    add_rule(&manager, &rule("Whales", 100_000, "WHALE", 0)).await;
    till.put("/pos/tiers", &json!({"tiers": ["A"]}))
        .await
        .expect_error(403, "forbidden");
    manager
        .put(
            "/pos/tiers",
            &json!({"tiers": ["GUEST", "REGULAR", "PLATINUM"]}),
        )
        .await
        .expect_error(409, "tier_in_use");
    manager
        .put("/pos/tiers", &json!({"tiers": ["GUEST", "guest"]}))
        .await
        .expect_error(422, "invalid_request");
}

async fn an_edited_ladder_offers_its_new_tiers_and_access_levels_to_rules(backend: Backend) {
    let (_srv, manager, till) = rules_setup(backend).await;
    let edited = manager
        .put(
            "/pos/tiers",
            &json!({"tiers": ["GUEST", "REGULAR", "GOLD", "PLATINUM", "WHALE"],
                    "access_levels": ["PUBLIC_LOBBY", "BACKSTAGE", "INNER_CIRCLE"]}),
        )
        .await;
    assert_eq!(edited.expect(200)["tiers"][2], "GOLD");
    add_rule(
        &manager,
        &json!({"name":"Gold","threshold":10000,"tier":"GOLD","access_level":"BACKSTAGE"}),
    )
    .await;
    assert_eq!(
        till.get("/pos/tiers").await.expect(200)["access_levels"][1],
        "BACKSTAGE"
    );
}

const ADA: &str = "+15550100101";
const BOB: &str = "+15550100102";

/// A local venue with rules REGULAR (5 000, priority 2) and PLATINUM (20 000, priority 1,
/// INNER_CIRCLE) after Ada crossed REGULAR with one sale, Bob crossed it with the third of
/// three, and Ada then reached PLATINUM; `unlocks` are the `tier_unlocked` frames heard.
struct Unlocked {
    _srv: TestServer,
    manager: Client,
    till: Client,
    regular: Value,
    platinum: Value,
    unlocks: Vec<Value>,
}

async fn unlocked(backend: Backend) -> Unlocked {
    let srv = crate::start(backend).await;
    let (manager, till, key) = local_venue(&srv).await;
    let regular = add_rule(&manager, &rule("Regulars", 5000, "REGULAR", 2)).await;
    let platinum = add_rule(
        &manager,
        &json!({"name":"Platinum","threshold":20000,"tier":"PLATINUM","priority":1,
                "access_level":"INNER_CIRCLE"}),
    )
    .await;
    let mut ws = srv.ws("kitchen", &key, None).await;
    ws.hello().await;
    push(&till, vec![sale("a-1", ADA, 6000, "2026-11-20T19:00:00Z")]).await;
    push(&till, vec![sale("b-1", BOB, 2000, "2026-11-20T19:01:00Z")]).await;
    push(
        &till,
        vec![
            sale("b-2", BOB, 2000, "2026-11-20T19:02:00Z"),
            sale("b-3", BOB, 2000, "2026-11-20T19:03:00Z"),
        ],
    )
    .await;
    push(&till, vec![sale("a-2", ADA, 15000, "2026-11-20T19:04:00Z")]).await;
    let unlocks = unlocks_until_sentinel(&mut ws, &till).await;
    Unlocked {
        _srv: srv,
        manager,
        till,
        regular,
        platinum,
        unlocks,
    }
}

/// Priority 1 is checked first, so Ada's second sale unlocks PLATINUM, not REGULAR again.
async fn tiers_unlock_by_one_sale_or_by_many_in_the_order_they_are_crossed(backend: Backend) {
    let u = unlocked(backend).await;
    assert_eq!(
        unlocked_phones(&u.unlocks),
        vec![
            (ADA.to_owned(), "REGULAR".to_owned()),
            (BOB.to_owned(), "REGULAR".to_owned()),
            (ADA.to_owned(), "PLATINUM".to_owned())
        ],
        "{:?}",
        u.unlocks
    );
    assert_eq!(tier_of(&u.till, ADA).await, "PLATINUM");
    assert_eq!(tier_of(&u.till, BOB).await, "REGULAR");
}

async fn an_unlock_names_the_rule_the_spend_and_the_crossing_sale(backend: Backend) {
    let u = unlocked(backend).await;
    let bob_unlock = &u.unlocks[1]["data"];
    assert_eq!(bob_unlock["lifetime_spend"], 6000);
    assert_eq!(bob_unlock["previous_tier"], "GUEST");
    assert_eq!(bob_unlock["customer_tier"], "REGULAR");
    assert_eq!(bob_unlock["venue"], VENUE);
    assert_eq!(bob_unlock["rule"]["id"], u.regular["id"]);
    let bob_sales = u
        .manager
        .get(&format!("/pos/transactions/{VENUE}?customer={}", enc(BOB)))
        .await;
    let b3 = bob_sales.expect(200)["items"]
        .as_array()
        .and_then(|items| items.iter().find(|s| s["external_id"] == "b-3").cloned())
        .expect("b-3 listed");
    assert_eq!(bob_unlock["transaction_id"], b3["id"], "the crossing sale");
    let ada_platinum = &u.unlocks[2]["data"];
    assert_eq!(ada_platinum["customer_access_level"], "INNER_CIRCLE");
    assert_eq!(ada_platinum["lifetime_spend"], 21000);
}

async fn the_customer_profile_shows_tier_access_spend_and_unlock_history(backend: Backend) {
    let u = unlocked(backend).await;
    let points = u.till.get(&format!("/loyalty/{}/points", enc(ADA))).await;
    assert_eq!(points.expect(200)["access_level"], "INNER_CIRCLE");
    let ada_profile = profile(&u.manager, ADA).await;
    assert_eq!(ada_profile["tier"], "PLATINUM");
    assert_eq!(ada_profile["access_level"], "INNER_CIRCLE");
    assert_eq!(ada_profile["spend"][0]["venue"], VENUE);
    assert_eq!(ada_profile["spend"][0]["lifetime_spend"], 21000);
    assert_eq!(ada_profile["spend"][0]["transactions"], 2);
    let history: Vec<&str> = ada_profile["unlocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["tier"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["REGULAR", "PLATINUM"]);
}

async fn the_customer_profile_refuses_unknown_numbers_bad_numbers_and_terminals(backend: Backend) {
    let u = unlocked(backend).await;
    u.manager
        .get(&format!("/customers/{}", enc("+15550100177")))
        .await
        .expect_error(404, "customer_not_found");
    u.manager
        .get("/customers/not-a-phone")
        .await
        .expect_error(422, "invalid_phone");
    u.till
        .get(&format!("/customers/{}", enc(ADA)))
        .await
        .expect_error(403, "forbidden");
}

async fn rules_count_the_customers_they_unlocked(backend: Backend) {
    let u = unlocked(backend).await;
    let stats = rules(&u.manager).await;
    let by_id = |id: &Value| stats.iter().find(|r| r["id"] == *id).cloned().unwrap();
    assert_eq!(by_id(&u.regular["id"])["customers_unlocked"], 2);
    assert_eq!(by_id(&u.platinum["id"])["customers_unlocked"], 1);
    assert!(by_id(&u.platinum["id"])["last_triggered"].is_string());
}

/// A local venue with rules WHALE (10 000, priority 1) and REGULAR (1 000, priority 2),
/// and a terminal's event stream.
struct TwoRules {
    _srv: TestServer,
    manager: Client,
    till: Client,
    ws: Ws,
    whale: Value,
}

impl TwoRules {
    fn whale_path(&self) -> String {
        format!("/pos/rules/{VENUE}/{}", self.whale["id"].as_str().unwrap())
    }

    async fn toggle_whale(&self) {
        self.manager
            .post(&format!("{}/toggle", self.whale_path()), &json!({}))
            .await
            .expect(200);
    }
}

async fn two_rules(backend: Backend) -> TwoRules {
    let srv = crate::start(backend).await;
    let (manager, till, key) = local_venue(&srv).await;
    let whale = add_rule(&manager, &rule("Whale", 10_000, "WHALE", 1)).await;
    add_rule(&manager, &rule("Regular", 1_000, "REGULAR", 2)).await;
    let mut ws = srv.ws("kitchen", &key, None).await;
    ws.hello().await;
    TwoRules {
        _srv: srv,
        manager,
        till,
        ws,
        whale,
    }
}

const CY: &str = "+15550100103";

/// [`two_rules`] with WHALE disabled while CY's 12 000 sale unlocks REGULAR, then enabled
/// again so CY's next sale (100) unlocks WHALE.
async fn whale_reached_after_reenabling(backend: Backend) -> TwoRules {
    let mut r = two_rules(backend).await;
    r.toggle_whale().await;
    push(
        &r.till,
        vec![sale("c-1", CY, 12_000, "2026-11-20T19:00:00Z")],
    )
    .await;
    let unlocks = unlocks_until_sentinel(&mut r.ws, &r.till).await;
    assert_eq!(
        unlocked_phones(&unlocks),
        vec![(CY.to_owned(), "REGULAR".to_owned())],
        "the disabled WHALE rule is skipped"
    );
    r.toggle_whale().await;
    push(&r.till, vec![sale("c-2", CY, 100, "2026-11-20T19:05:00Z")]).await;
    let unlocks = unlocks_until_sentinel(&mut r.ws, &r.till).await;
    assert_eq!(
        unlocked_phones(&unlocks),
        vec![(CY.to_owned(), "WHALE".to_owned())],
        "enabled again, WHALE (priority 1) is the first match"
    );
    r
}

async fn a_disabled_rule_is_skipped_and_matches_again_once_enabled(backend: Backend) {
    let r = whale_reached_after_reenabling(backend).await;
    assert_eq!(tier_of(&r.till, CY).await, "WHALE");
}

async fn a_refund_below_the_thresholds_keeps_the_tier_and_nets_the_spend(backend: Backend) {
    let r = whale_reached_after_reenabling(backend).await;
    let mut refunded = sale("c-1", CY, 12_000, "2026-11-20T19:00:00Z");
    refunded["refunded"] = json!(12_000);
    refunded["updated_at"] = json!("2026-11-20T21:00:00Z");
    push(&r.till, vec![refunded]).await;
    assert_eq!(tier_of(&r.till, CY).await, "WHALE");
    let p = profile(&r.manager, CY).await;
    assert_eq!(
        p["spend"][0]["lifetime_spend"], 100,
        "net of the refund: {p}"
    );
}

/// Spending past the thresholds again unlocks nothing a second time; a lower rule never
/// lowers the tier.
async fn a_reached_tier_is_not_unlocked_twice_nor_lowered(backend: Backend) {
    let mut r = whale_reached_after_reenabling(backend).await;
    push(
        &r.till,
        vec![sale("c-3", CY, 20_000, "2026-11-20T22:00:00Z")],
    )
    .await;
    let unlocks = unlocks_until_sentinel(&mut r.ws, &r.till).await;
    assert!(unlocks.is_empty(), "no second unlock: {unlocks:?}");
    assert_eq!(tier_of(&r.till, CY).await, "WHALE");
    assert_eq!(
        profile(&r.manager, CY).await["unlocks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let whale_stats = rules(&r.manager)
        .await
        .into_iter()
        .find(|rule| rule["id"] == r.whale["id"])
        .unwrap();
    assert_eq!(whale_stats["customers_unlocked"], 1);
    assert_eq!(
        whale_stats["times_triggered"], 2,
        "matched again by c-3, without a second unlock"
    );
}

async fn priority_decides_between_two_matching_rules_whatever_their_tiers(backend: Backend) {
    let mut r = two_rules(backend).await;
    let dee = "+15550100104";
    r.manager
        .patch(&r.whale_path(), &json!({"priority": 3}))
        .await
        .expect(200);
    push(
        &r.till,
        vec![sale("d-1", dee, 50_000, "2026-11-20T19:00:00Z")],
    )
    .await;
    let unlocks = unlocks_until_sentinel(&mut r.ws, &r.till).await;
    assert_eq!(
        unlocked_phones(&unlocks),
        vec![(dee.to_owned(), "REGULAR".to_owned())]
    );
}

async fn a_voided_sale_is_no_spend(backend: Backend) {
    let mut r = two_rules(backend).await;
    let eve = "+15550100105";
    let mut voided = sale("e-1", eve, 50_000, "2026-11-20T19:00:00Z");
    voided["status"] = json!("voided");
    push(&r.till, vec![voided]).await;
    let unlocks = unlocks_until_sentinel(&mut r.ws, &r.till).await;
    assert!(
        unlocks.is_empty(),
        "voided sales unlock nothing: {unlocks:?}"
    );
    assert_eq!(tier_of(&r.till, eve).await, "GUEST");
}

async fn time_windows_and_daylight_saving(backend: Backend) {
    let srv = crate::start(backend).await;
    let (manager, till, key) = local_venue(&srv).await;
    // The venue is in America/New_York (the tenant's zone).
    add_rule(
        &manager,
        &json!({"name":"Friday late","threshold":0,"tier":"PLATINUM","priority":1,
                "time_windows":[{"days":["fri"],"start":"22:00","end":"02:00"}]}),
    )
    .await;
    add_rule(
        &manager,
        &json!({"name":"Friday early","threshold":0,"tier":"REGULAR","priority":2,
                "time_windows":[{"days":["fri"],"start":"20:00","end":"21:00"},
                                {"days":["sun"],"start":"01:00","end":"02:00"}]}),
    )
    .await;
    let mut ws = srv.ws("kitchen", &key, None).await;
    ws.hello().await;

    let cases = [
        // Saturday 01:30 EDT belongs to Friday's late window (across midnight).
        ("+15550100201", "2026-07-11T05:30:00Z", Some("PLATINUM")),
        // Saturday 02:30 EDT: past its end.
        ("+15550100202", "2026-07-11T06:30:00Z", None),
        // Friday 01:00 EDT belongs to Thursday night: not listed.
        ("+15550100203", "2026-07-10T05:00:00Z", None),
        // 00:30Z is Friday 20:30 in July (EDT) but 19:30 in January (EST).
        ("+15550100204", "2026-07-11T00:30:00Z", Some("REGULAR")),
        ("+15550100205", "2026-01-10T00:30:00Z", None),
        ("+15550100206", "2026-01-10T01:30:00Z", Some("REGULAR")),
        // The repeated 01:00–02:00 of the fall-back night (2026-11-01) counts both times.
        ("+15550100207", "2026-11-01T05:30:00Z", Some("REGULAR")),
        ("+15550100208", "2026-11-01T06:30:00Z", Some("REGULAR")),
        ("+15550100209", "2026-11-01T07:30:00Z", None),
    ];
    expect_unlocks(&mut ws, &till, "w", &cases).await;

    // A late-arriving older sale is evaluated at its own time: a Monday sale first (outside
    // every window), then last Friday night's sale arrives.
    let late = "+15550100210";
    push(&till, vec![sale("l-2", late, 1000, "2026-07-13T16:00:00Z")]).await;
    push(&till, vec![sale("l-1", late, 1000, "2026-07-11T03:00:00Z")]).await;
    let unlocks = unlocks_until_sentinel(&mut ws, &till).await;
    assert_eq!(
        unlocked_phones(&unlocks),
        vec![(late.to_owned(), "PLATINUM".to_owned())]
    );
    assert_eq!(unlocks[0]["data"]["occurred_at"], "2026-07-11T03:00:00Z");
    assert_eq!(unlocks[0]["data"]["lifetime_spend"], 2000);
}

async fn performers_and_live_only(backend: Backend) {
    let srv = crate::start(backend).await;
    let (manager, till, key) = local_venue(&srv).await;
    for (performer, starts, ends) in [
        ("dj-ada", "2026-07-10T23:00:00Z", "2026-07-11T03:00:00Z"),
        ("band-b", "2026-07-12T00:00:00Z", "2026-07-12T02:00:00Z"),
    ] {
        let resp = manager
            .post(
                &format!("/pos/performances/{VENUE}"),
                &json!({"performer_id": performer, "starts_at": starts, "ends_at": ends}),
            )
            .await;
        assert_eq!(resp.expect(201)["performer_id"], performer);
    }
    manager
        .post(
            &format!("/pos/performances/{VENUE}"),
            &json!({"performer_id": "x", "starts_at": "2026-07-12T02:00:00Z",
                    "ends_at": "2026-07-12T01:00:00Z"}),
        )
        .await
        .expect_error(422, "invalid_request");
    let listed = manager.get(&format!("/pos/performances/{VENUE}")).await;
    assert_eq!(
        listed.expect(200)["performances"].as_array().unwrap().len(),
        2
    );
    add_rule(
        &manager,
        &json!({"name":"Ada's fans","threshold":0,"tier":"WHALE","priority":1,
                "performer_id":"dj-ada"}),
    )
    .await;
    add_rule(
        &manager,
        &json!({"name":"Live nights","threshold":0,"tier":"PLATINUM","priority":2,
                "live_only":true}),
    )
    .await;
    let mut ws = srv.ws("kitchen", &key, None).await;
    ws.hello().await;
    let cases = [
        ("+15550100301", "2026-07-11T01:00:00Z", Some("WHALE")),
        ("+15550100302", "2026-07-12T01:00:00Z", Some("PLATINUM")),
        ("+15550100303", "2026-07-12T05:00:00Z", None),
        // The end of a performance is exclusive.
        ("+15550100304", "2026-07-11T03:00:00Z", None),
    ];
    expect_unlocks(&mut ws, &till, "p", &cases).await;
}

const SQUARE_KEY: &str = "sq-rules-signature-key";

async fn webhook_and_sync_unlock_once(backend: Backend) {
    let (srv, tenant, manager, mock) = crate::providers::square_kitchen(backend).await;
    let integration = connect_square_webhooks(&manager, &mock, VENUE, SQUARE_KEY).await;
    let phone = "+15550100401";
    manager
        .post(
            &format!("/customers/{}/links", enc(phone)),
            &json!({"card_fingerprint": "fp-rules-1"}),
        )
        .await
        .expect(201);
    add_rule(&manager, &rule("Regulars", 3000, "REGULAR", 1)).await;
    let mut ws = srv.ws("kitchen", &tenant.terminal.key, None).await;
    ws.hello().await;

    let now = now_ms();
    let payment = SquarePayment::new("pay-rules-1", 3500, 0, at_ms(now - 60_000))
        .fingerprint("fp-rules-1")
        .updated_at(at_ms(now - 30_000));
    mock.add_payments([payment.json()]);
    let body = square_payment_webhook("payment.updated", "evt-rules-1", &payment.json());
    post_signed_square(&srv, &integration, &body, SQUARE_KEY)
        .await
        .expect(200);
    // The webhook is processed after its acknowledgement; wait for its unlock.
    let unlock = loop {
        let frame = ws.next_json().await;
        if frame["type"] == "tier_unlocked" {
            break frame;
        }
    };
    assert_eq!(unlock["data"]["customer"]["phone"], phone);
    // A restart changes nothing: the unlock is in the database, not in memory.
    drop(ws);
    let mut srv = srv;
    srv.restart().await;
    // The restarted server listens on a new port.
    let (manager, till) = (srv.manager(&tenant), srv.terminal(&tenant));
    let mut ws = srv.ws("kitchen", &tenant.terminal.key, None).await;
    ws.hello().await;
    // The same payment again: by a replayed webhook, a new delivery of it, and by sync.
    post_signed_square(&srv, &integration, &body, SQUARE_KEY)
        .await
        .expect(200);
    let redelivered = square_payment_webhook("payment.updated", "evt-rules-2", &payment.json());
    post_signed_square(&srv, &integration, &redelivered, SQUARE_KEY)
        .await
        .expect(200);
    let counts = sync(&manager, VENUE).await;
    assert_eq!(counts["created"], 0, "{counts}");
    eventually(
        Duration::from_secs(15),
        "both webhooks processed",
        || async {
            let status = manager.get(&format!("/pos/status/{VENUE}")).await;
            let status = status.expect(200).clone();
            (status["transaction_count"] == 1).then_some(())
        },
    )
    .await;
    // A refund update of the payment by sync: re-evaluated, still no second unlock.
    let refunded = payment.clone().refunded(3500).updated_at(at_ms(now_ms()));
    mock.upsert_payment(refunded.json());
    sync(&manager, VENUE).await;
    let later = unlocks_until_sentinel(&mut ws, &till).await;
    assert!(later.is_empty(), "no second unlock: {later:?}");
    let p = profile(&manager, phone).await;
    assert_eq!(p["unlocks"].as_array().unwrap().len(), 1);
    assert_eq!(p["tier"], "REGULAR");
    assert_eq!(p["spend"][0]["lifetime_spend"], 0, "refunded in full: {p}");
}

async fn concurrent_sales_of_one_customer(backend: Backend) {
    let srv = crate::start(backend).await;
    let (manager, till, key) = local_venue(&srv).await;
    add_rule(&manager, &rule("Regulars", 10_000, "REGULAR", 1)).await;
    let mut ws = srv.ws("kitchen", &key, None).await;
    ws.hello().await;
    let phone = "+15550100501";
    let pushes = (0..20).map(|i| {
        let till = till.clone();
        async move {
            push(
                &till,
                vec![sale(
                    &format!("cc-{i}"),
                    phone,
                    1000,
                    "2026-11-20T19:00:00Z",
                )],
            )
            .await
        }
    });
    futures_util::future::join_all(pushes).await;
    let unlocks = unlocks_until_sentinel(&mut ws, &till).await;
    assert_eq!(unlocks.len(), 1, "{unlocks:?}");
    // Evaluations of one customer are serialised: the crossing sale saw exactly 10,000.
    assert_eq!(unlocks[0]["data"]["lifetime_spend"], 10_000);
    assert_eq!(
        profile(&manager, phone).await["spend"][0]["lifetime_spend"],
        20_000
    );
}

/// A push behaves like its sales arriving one by one: each sale is evaluated at the spend up
/// to it, a revision counts only its difference, a repeat or an older revision changes
/// nothing, and a sale moved to another customer leaves the first one's spend.
async fn a_batch_behaves_like_sales_one_by_one(backend: Backend) {
    let srv = crate::start(backend).await;
    let (manager, till, key) = local_venue(&srv).await;
    let regular = add_rule(&manager, &rule("Regulars", 5000, "REGULAR", 2)).await;
    let platinum = add_rule(&manager, &rule("Platinum", 7000, "PLATINUM", 1)).await;
    let mut ws = srv.ws("kitchen", &key, None).await;
    ws.hello().await;
    let (ada, bob) = ("+15550100601", "+15550100602");
    let revised = |id: &str, phone: &str, total: i64, updated_at: &str| {
        let mut s = sale(id, phone, total, "2026-11-20T19:00:00Z");
        s["updated_at"] = json!(updated_at);
        s
    };
    let push_counts = |sales: Vec<Value>| {
        let till = till.clone();
        async move {
            let body = push(&till, sales).await;
            [&body["created"], &body["updated"], &body["duplicates"]].map(|v| v.as_i64().unwrap())
        }
    };
    let counts = push_counts(vec![
        revised("x", ada, 3000, "2026-11-20T19:00:00Z"),
        sale("z", bob, 1000, "2026-11-20T19:06:00Z"),
    ])
    .await;
    assert_eq!(counts, [2, 0, 0]);
    let counts = push_counts(vec![
        // 5,500: Regulars.
        sale("y", ada, 2500, "2026-11-20T19:05:00Z"),
        // x revised upwards counts +3,000, not +6,000: 8,500, Platinum.
        revised("x", ada, 6000, "2026-11-20T19:10:00Z"),
    ])
    .await;
    assert_eq!(counts, [1, 1, 0]);
    let counts = push_counts(vec![
        sale("y", ada, 2500, "2026-11-20T19:05:00Z"),
        // Older than the stored revision: never replaces it.
        revised("x", ada, 9000, "2026-11-20T19:01:00Z"),
    ])
    .await;
    assert_eq!(counts, [0, 0, 2]);
    // Evaluated against the push's final spend, y would have unlocked Platinum alone.
    let unlocks = unlocks_until_sentinel(&mut ws, &till).await;
    let seen: Vec<(&Value, &Value)> = unlocks
        .iter()
        .map(|u| (&u["data"]["rule"]["id"], &u["data"]["lifetime_spend"]))
        .collect();
    assert_eq!(
        seen,
        vec![
            (&regular["id"], &json!(5500)),
            (&platinum["id"], &json!(8500))
        ],
        "{unlocks:?}"
    );
    assert_eq!(
        profile(&manager, ada).await["spend"][0]["lifetime_spend"],
        8500
    );

    // z moves from Bob to Ada in a later revision: Bob loses it, Ada gains it once.
    let mut moved = revised("z", ada, 1000, "2026-11-20T19:20:00Z");
    moved["occurred_at"] = json!("2026-11-20T19:06:00Z");
    assert_eq!(push_counts(vec![moved]).await, [0, 1, 0]);
    assert_eq!(
        profile(&manager, ada).await["spend"][0]["lifetime_spend"],
        9500
    );
    // No sale of Bob's is left at the venue.
    assert_eq!(profile(&manager, bob).await["spend"], json!([]));
}

both_backends!(
    terminals_anonymous_callers_and_other_tenants_cannot_manage_rules,
    a_created_rule_echoes_every_field_with_zero_counters,
    rules_are_listed_by_priority_then_threshold,
    invalid_rules_are_refused_with_a_clear_error_and_not_stored,
    patch_changes_only_the_named_fields_and_null_clears_one,
    toggle_flips_enabled_and_a_refused_patch_changes_nothing,
    another_tenant_can_neither_patch_nor_delete_a_rule,
    a_deleted_rule_is_gone,
    the_tier_ladder_starts_with_the_default_tiers_and_access_levels,
    the_tier_ladder_refuses_terminals_duplicates_and_dropping_a_used_tier,
    an_edited_ladder_offers_its_new_tiers_and_access_levels_to_rules,
    tiers_unlock_by_one_sale_or_by_many_in_the_order_they_are_crossed,
    an_unlock_names_the_rule_the_spend_and_the_crossing_sale,
    the_customer_profile_shows_tier_access_spend_and_unlock_history,
    the_customer_profile_refuses_unknown_numbers_bad_numbers_and_terminals,
    rules_count_the_customers_they_unlocked,
    a_disabled_rule_is_skipped_and_matches_again_once_enabled,
    a_refund_below_the_thresholds_keeps_the_tier_and_nets_the_spend,
    a_reached_tier_is_not_unlocked_twice_nor_lowered,
    priority_decides_between_two_matching_rules_whatever_their_tiers,
    a_voided_sale_is_no_spend,
    time_windows_and_daylight_saving,
    performers_and_live_only,
    webhook_and_sync_unlock_once,
    concurrent_sales_of_one_customer,
    a_batch_behaves_like_sales_one_by_one,
);
