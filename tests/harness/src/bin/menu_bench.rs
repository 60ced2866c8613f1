//! posbridge-menu-bench: times a venue's menu synced from each POS mock (Square and Toast)
//! through `POST /api/{tenant}/menus/{venue}/sync` of a release server on loopback, and
//! prints a markdown table. It never asserts timing; it exits non-zero only if something
//! failed (a sync refused, items missing, a change not picked up).
//!
//! For each provider, the mock is seeded with a menu of `--items` items (5,000 by default)
//! shaped like a real one (categories, sizes, required and optional modifier groups, a tax),
//! and three syncs are timed: the first (the whole catalog), a second with nothing changed
//! upstream, and a third after one item's price changed. For each, the provider calls are
//! read from the mock's request log: how many of each kind, and the most made in any one
//! second (against the POS's rate limits; the host paces a connection's calls at 20/s).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use posbridge_harness::bench::{
    arg_or, connect_square, connect_toast, first_sales_sync, server_bin,
};
use posbridge_harness::mock_square::{
    square_category, square_item, square_modifier_list, square_tax, LoggedRequest, MockSquare,
};
use posbridge_harness::mock_toast::{dollars, MockToast};
use posbridge_harness::{Backend, Client, TestServer};
use serde_json::{json, Value};

/// Categories (Square) or menu groups (Toast) of the generated menus.
const CATEGORIES: usize = 60;
/// Modifier lists (Square) or groups (Toast): sizes, extras and sides in turn.
const GROUPS: usize = 240;
/// Toast allows one `GET /menus/v2/menus` per second per location.
const TOAST_MENUS_INTERVAL: Duration = Duration::from_millis(1_100);

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: posbridge-menu-bench [--server-bin PATH] [--items 5000] [--square-page 100]"
        );
        return;
    }
    let bin = server_bin();
    let items: usize = arg_or("--items", 5_000);
    // The mock's default page (Square's documented default); the plugin asks for 1,000.
    let square_page: usize = arg_or("--square-page", 100);
    let busy = busy_cores(Duration::from_secs(1)).await;

    let srv = TestServer::start(&bin, Backend::Sqlite, &["--rate-limit-per-sec", "0"]).await;
    let keys = srv.setup_tenant("bench").await;
    let manager = srv.manager(&keys);

    let square = square(&srv, &manager, items, square_page).await;
    let toast = toast(&srv, &manager, items).await;

    println!("| provider | sync | wall time | result | provider calls | most calls in 1 s |");
    println!("|---|---|---|---|---|---|");
    for (provider, runs) in [("Square", &square), ("Toast", &toast)] {
        for run in runs {
            println!(
                "| {provider} | {} | {:.2} s | {} | {} | {} |",
                run.what,
                run.seconds,
                run.result(),
                run.calls_text(),
                run.peak_per_second
            );
        }
    }
    println!();
    println!(
        "{items} items; target: ≤ 10 s per first sync within the POS's rate limits (Toast: 20 requests/s, \
         1 menus download/s per location; Square publishes no figure, the host paces each connection at 20/s); \
         an unchanged Toast menu costs one metadata call; a Square change costs one incremental search. \
         Square catalog page: {square_page} objects."
    );
    match busy {
        Some(b) => println!(
            "Machine busy before the server started: {b:.2} of {} cores (other processes; the figures share them).",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        None => println!("Machine load unknown (/proc/stat unreadable)."),
    }
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat`: all but idle and iowait).
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((total - idle) / if hz > 0 { hz as f64 } else { 100.0 })
}

/// Cores the machine kept busy over `window`, before anything of ours runs.
async fn busy_cores(window: Duration) -> Option<f64> {
    let a = machine_busy_secs()?;
    tokio::time::sleep(window).await;
    Some((machine_busy_secs()? - a) / window.as_secs_f64())
}

/// One timed sync.
struct Run {
    what: &'static str,
    seconds: f64,
    outcome: Value,
    /// `METHOD path` → calls.
    calls: BTreeMap<String, usize>,
    peak_per_second: usize,
}

impl Run {
    fn result(&self) -> String {
        let o = &self.outcome;
        let items = &o["changes"]["items"];
        format!(
            "{} page(s){}{}; items +{} ~{} −{}; menu version {}",
            o["pages"],
            if o["incremental"] == true {
                ", incremental"
            } else {
                ""
            },
            if o["upstream_unchanged"] == true {
                ", upstream unchanged"
            } else {
                ""
            },
            items["added"],
            items["updated"],
            items["removed"],
            o["menu"]["version"],
        )
    }

    fn calls_text(&self) -> String {
        self.calls
            .iter()
            .map(|(call, n)| format!("{n} × {call}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn count(&self, call: &str) -> usize {
        self.calls.get(call).copied().unwrap_or(0)
    }
}

fn fail(message: String) -> ! {
    eprintln!("posbridge-menu-bench: {message}");
    std::process::exit(1);
}

/// Most requests of `log` within any one second.
fn peak_per_second(log: &[LoggedRequest]) -> usize {
    let mut at: Vec<Instant> = log.iter().map(|r| r.at).collect();
    at.sort();
    let mut peak = 0;
    let mut first = 0;
    for last in 0..at.len() {
        while at[last].duration_since(at[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        peak = peak.max(last - first + 1);
    }
    peak
}

/// `POST /menus/{venue}/sync`, timed; the provider calls are those `requests` logged
/// meanwhile.
async fn timed_sync(
    what: &'static str,
    manager: &Client,
    venue: &str,
    requests: impl Fn() -> Vec<LoggedRequest>,
) -> Run {
    let mark = requests().len();
    let started = Instant::now();
    let resp = manager
        .post(&format!("/menus/{venue}/sync"), &json!({}))
        .await;
    let seconds = started.elapsed().as_secs_f64();
    if resp.status != 200 {
        fail(format!(
            "{what} sync of {venue}: HTTP {}: {}",
            resp.status, resp.text
        ));
    }
    let log = requests();
    let new = log.get(mark..).unwrap_or_default();
    let mut calls = BTreeMap::new();
    for r in new {
        *calls.entry(format!("{} {}", r.method, r.path)).or_insert(0) += 1;
    }
    Run {
        what,
        seconds,
        outcome: resp.body,
        calls,
        peak_per_second: peak_per_second(new),
    }
}

/// Checks the stored menu holds `items` items.
async fn check_menu(manager: &Client, venue: &str, items: usize) {
    let menu = manager.get(&format!("/menus/{venue}")).await;
    let served = menu.body["items"].as_array().map_or(0, Vec::len);
    if menu.status != 200 || served != items {
        fail(format!(
            "the menu of {venue} has {served} items (HTTP {}), not {items}",
            menu.status
        ));
    }
}

fn expect_items(run: &Run, field: &str, n: usize) {
    if run.outcome["changes"]["items"][field].as_u64() != Some(n as u64) {
        fail(format!(
            "{} sync: expected {n} items {field}, got {}",
            run.what, run.outcome
        ));
    }
}

// ----- Square -----

/// A Square item with one to three sizes and up to three modifier lists.
fn square_menu_item(i: usize, bump: i64) -> Value {
    let base = 450 + (i as i64 * 37) % 2_000 + bump;
    let sizes = [
        ("SMALL", "Small", 0),
        ("REGULAR", "Regular", 150),
        ("LARGE", "Large", 300),
    ];
    let variations: Vec<(String, &str, i64)> = sizes[..1 + i % 3]
        .iter()
        .map(|(id, name, extra)| (format!("VAR_{i:05}_{id}"), *name, base + extra))
        .collect();
    let variations: Vec<(&str, &str, i64)> = variations
        .iter()
        .map(|(id, name, cents)| (id.as_str(), *name, *cents))
        .collect();
    let lists: Vec<String> = (0..i % 4)
        .map(|k| format!("ML_{:03}", (i * 3 + k) % GROUPS))
        .collect();
    let lists: Vec<(&str, i64, i64)> = lists.iter().map(|l| (l.as_str(), -1, -1)).collect();
    let mut item = square_item(
        &format!("ITEM_{i:05}"),
        &format!("Dish number {i}"),
        &format!("CAT_{:03}", i % CATEGORIES),
        &variations,
        &lists,
    );
    item["item_data"]["tax_ids"] = json!(["TAX_SALES"]);
    item
}

/// Modifier list `g`: a required single sauce, extras (up to 5) or sides (up to 2).
fn square_menu_list(g: usize) -> Value {
    let (name, min, max, options) = match g % 3 {
        0 => ("Sauce", 1, 1, 4),
        1 => ("Extras", 0, 5, 8),
        _ => ("Sides", 0, 2, 6),
    };
    let modifiers: Vec<(String, String, i64)> = (0..options)
        .map(|o| {
            (
                format!("MOD_{g:03}_{o}"),
                format!("{name} option {o}"),
                (o as i64 * 50) % 300,
            )
        })
        .collect();
    let modifiers: Vec<(&str, &str, i64)> = modifiers
        .iter()
        .map(|(id, name, cents)| (id.as_str(), name.as_str(), *cents))
        .collect();
    square_modifier_list(
        &format!("ML_{g:03}"),
        &format!("{name} {g}"),
        min,
        max,
        &modifiers,
    )
}

async fn square(srv: &TestServer, manager: &Client, items: usize, page: usize) -> Vec<Run> {
    let mock = MockSquare::start().await;
    let mut catalog: Vec<Value> = (0..CATEGORIES)
        .map(|c| square_category(&format!("CAT_{c:03}"), &format!("Category {c}"), None))
        .collect();
    catalog.push(square_tax("TAX_SALES", "Sales tax", "8.875"));
    catalog.extend((0..GROUPS).map(square_menu_list));
    catalog.extend((0..items).map(|i| square_menu_item(i, 0)));
    mock.upsert_catalog(catalog);
    mock.set_catalog_page_size(page);
    connect_square(srv, manager, &mock, "square-venue").await;
    first_sales_sync(manager, "square-venue").await;

    let requests = || mock.requests();
    let first = timed_sync("first", manager, "square-venue", requests).await;
    expect_items(&first, "added", items);
    check_menu(manager, "square-venue", items).await;

    let unchanged = timed_sync("unchanged", manager, "square-venue", requests).await;
    if unchanged.outcome["changed"] != false {
        fail(format!(
            "unchanged Square sync changed the menu: {}",
            unchanged.outcome
        ));
    }

    mock.upsert_catalog([square_menu_item(items / 2, 25)]);
    let changed = timed_sync("one item changed", manager, "square-venue", requests).await;
    expect_items(&changed, "updated", 1);
    let searches = changed.count("POST /v2/catalog/search");
    if searches != 1 || changed.outcome["incremental"] != true {
        eprintln!(
            "note: the Square change cost {searches} searches (incremental: {}), not one incremental search",
            changed.outcome["incremental"]
        );
    }
    vec![first, unchanged, changed]
}

// ----- Toast -----

/// A Toast menus document of `items` items over four menus of 15 groups each (every fifth
/// group with a nested "Specials" group), `bumped` item's price raised by 25 cents.
fn toast_document(items: usize, bumped: Option<usize>) -> Value {
    let mut groups: Vec<Vec<Value>> = vec![Vec::new(); CATEGORIES];
    let mut specials: Vec<Vec<Value>> = vec![Vec::new(); CATEGORIES];
    for i in 0..items {
        let cents = 450 + (i as i64 * 37) % 2_000 + if bumped == Some(i) { 25 } else { 0 };
        let references: Vec<usize> = (0..i % 4).map(|k| 1 + (i * 3 + k) % GROUPS).collect();
        let item = json!({
            "guid": format!("item-{i:05}"),
            "name": format!("Dish number {i}"),
            "description": format!("House dish {i}: seasonal produce, cooked to order"),
            "price": dollars(cents),
            "pricingStrategy": "BASE_PRICE",
            "visibility": ["POS", "ORDERING_PARTNERS"],
            "modifierGroupReferences": references,
        });
        let g = i % CATEGORIES;
        if g.is_multiple_of(5) && !i.is_multiple_of(2) {
            specials[g].push(item);
        } else {
            groups[g].push(item);
        }
    }
    let menus: Vec<Value> = ["Breakfast", "Lunch", "Dinner", "Drinks"]
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let menu_groups: Vec<Value> = (m * 15..(m + 1) * 15)
                .map(|g| {
                    let nested = if g.is_multiple_of(5) {
                        vec![json!({
                            "guid": format!("grp-{g:03}-specials"),
                            "name": "Specials",
                            "menuItems": std::mem::take(&mut specials[g]),
                            "menuGroups": [],
                        })]
                    } else {
                        Vec::new()
                    };
                    json!({
                        "guid": format!("grp-{g:03}"),
                        "name": format!("Group {g}"),
                        "menuItems": std::mem::take(&mut groups[g]),
                        "menuGroups": nested,
                    })
                })
                .collect();
            json!({"guid": format!("menu-{m}"), "name": name, "menuGroups": menu_groups})
        })
        .collect();
    let mut group_refs = serde_json::Map::new();
    let mut option_refs = serde_json::Map::new();
    for g in 0..GROUPS {
        let reference = g + 1;
        let (name, min, max, required, options) = match g % 3 {
            0 => ("Size", 1, 1, "REQUIRED", 3),
            1 => ("Extras", 0, 5, "OPTIONAL", 8),
            _ => ("Sides", 0, 2, "OPTIONAL", 6),
        };
        let ids: Vec<usize> = (0..options).map(|o| 10_000 + g * 10 + o).collect();
        for (o, id) in ids.iter().enumerate() {
            option_refs.insert(
                id.to_string(),
                json!({"referenceId": id, "guid": format!("opt-{g:03}-{o}"),
                       "name": format!("{name} option {o}"), "price": dollars((o as i64 * 50) % 300)}),
            );
        }
        group_refs.insert(
            reference.to_string(),
            json!({"referenceId": reference, "guid": format!("mg-{g:03}"), "name": format!("{name} {g}"),
                   "minSelections": min, "maxSelections": max, "requiredMode": required,
                   "modifierOptionReferences": ids}),
        );
    }
    json!({
        "menus": menus,
        "modifierGroupReferences": group_refs,
        "modifierOptionReferences": option_refs,
    })
}

async fn toast(srv: &TestServer, manager: &Client, items: usize) -> Vec<Run> {
    let mock = MockToast::start().await;
    mock.publish_menus(toast_document(items, None));
    connect_toast(srv, manager, &mock, "toast-venue").await;
    first_sales_sync(manager, "toast-venue").await;

    let requests = || mock.requests();
    let first = timed_sync("first", manager, "toast-venue", requests).await;
    expect_items(&first, "added", items);
    check_menu(manager, "toast-venue", items).await;

    let unchanged = timed_sync("unchanged", manager, "toast-venue", requests).await;
    if unchanged.outcome["changed"] != false || unchanged.outcome["upstream_unchanged"] != true {
        fail(format!("unchanged Toast sync: {}", unchanged.outcome));
    }
    let metadata = unchanged.count("GET /menus/v2/metadata");
    let total: usize = unchanged.calls.values().sum();
    if metadata != 1 || total != 1 {
        eprintln!(
            "note: the unchanged Toast sync cost {total} calls ({metadata} metadata), not one metadata call"
        );
    }

    mock.publish_menus(toast_document(items, Some(items / 2)));
    // The menu was downloaded at the start of the first sync; the next download must wait
    // out Toast's per-location limit, as a manager pressing "sync" twice would.
    let last_download = mock
        .requests_to("/menus/v2/menus")
        .last()
        .map(|r| r.at)
        .unwrap_or_else(Instant::now);
    tokio::time::sleep_until((last_download + TOAST_MENUS_INTERVAL).into()).await;
    let changed = timed_sync("one item changed", manager, "toast-venue", requests).await;
    expect_items(&changed, "updated", 1);
    vec![first, unchanged, changed]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> LoggedRequest {
        LoggedRequest {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            status: 200,
            at: base + Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_peak_is_the_most_calls_within_any_one_second() {
        let base = Instant::now();
        assert_eq!(peak_per_second(&[]), 0);
        let log: Vec<LoggedRequest> = [0, 100, 999, 1_000, 1_500, 1_600, 1_700, 3_000]
            .into_iter()
            .map(|ms| at(base, ms))
            .collect();
        // 999..1,700 holds five; a call exactly 1 s after another is in the next window.
        assert_eq!(peak_per_second(&log), 5);
    }

    /// (guid, price) of every item in `groups`, nested groups included.
    fn toast_items(groups: &Value, out: &mut Vec<(String, String)>) {
        for group in groups.as_array().into_iter().flatten() {
            for item in group["menuItems"].as_array().into_iter().flatten() {
                out.push((item["guid"].to_string(), item["price"].to_string()));
            }
            toast_items(&group["menuGroups"], out);
        }
    }

    fn all_toast_items(doc: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for menu in doc["menus"].as_array().into_iter().flatten() {
            toast_items(&menu["menuGroups"], &mut out);
        }
        out.sort();
        out
    }

    #[test]
    fn the_toast_change_moves_one_price() {
        let before = all_toast_items(&toast_document(120, None));
        let after = all_toast_items(&toast_document(120, Some(60)));
        assert_eq!(before.len(), 120, "every item placed once");
        let changed: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(changed[0].0 .0, "\"item-00060\"");
    }
}
