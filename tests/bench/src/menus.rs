//! The `menus` scenario: `GET /api/{tenant}/menus/{venue}` of a large canonical menu.
//!
//! A manager `PUT`s a menu of `--menu-items` items (5,000 by default) shaped like a real
//! restaurant's: categories, one to three sizes per item, modifier groups (required sauces,
//! optional extras, bounded sides) and a tax hint. Then three closed-loop loads on as many
//! connections as the balance scenario (64 by default): full `GET`s (200 with the whole
//! document), full `GET`s with `Accept-Encoding: gzip` (200 with the server's cached gzip
//! copy) and conditional `GET`s (`If-None-Match` naming the current ETag, 304 with no body).
//!
//! The server counts its menu-document cache (`posbridge_menu_cache_hits_total` /
//! `_misses_total`); the scenario reads both around each load, so the report says whether a
//! full `GET` rebuilt the document (a miss) and whether a 304 touched the document at all (it
//! should not: the ETag is compared before the document is looked up).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http::{snippet, Conn, Template};
use crate::load::{self, Expect, LoadResult};
use crate::report::{secs, thousands, Report};
use crate::server::Server;
use crate::setup::Tenant;

/// The venue whose menu is read.
const VENUE: &str = "bench-menu";
/// Categories of the generated menu.
const CATEGORIES: usize = 60;
/// Modifier groups of the generated menu, three kinds in turn (sauce, extras, sides).
const GROUPS: usize = 240;

/// What the scenario needs from the command line.
pub struct MenuArgs {
    /// Items of the menu.
    pub items: usize,
    /// Concurrent keep-alive connections of each load.
    pub connections: usize,
    /// Unmeasured seconds before each load's measurement.
    pub warmup: Duration,
    /// Measured time of each load.
    pub duration: Duration,
}

/// A canonical menu of `items` items, deterministic (the same bytes every run).
pub fn menu_body(items: usize) -> Value {
    let categories: Vec<Value> = (0..CATEGORIES)
        .map(|c| json!({"id": format!("cat-{c:03}"), "provider_id": format!("POS-CAT-{c:03}"), "name": format!("Category {c}")}))
        .collect();
    let groups: Vec<Value> = (0..GROUPS).map(modifier_group).collect();
    let sizes = [("Small", 0), ("Regular", 150), ("Large", 300)];
    let items: Vec<Value> = (0..items)
        .map(|i| {
            let base = 450 + (i as i64 * 37) % 2_000;
            let variations: Vec<Value> = sizes[..1 + i % 3]
                .iter()
                .map(|(size, extra)| {
                    json!({
                        "id": format!("item-{i:05}-{}", size.to_lowercase()),
                        "provider_id": format!("POS-VAR-{i:05}-{size}"),
                        "name": size,
                        "price": base + extra,
                    })
                })
                .collect();
            let mut category_ids = vec![format!("cat-{:03}", i % CATEGORIES)];
            if i.is_multiple_of(7) {
                category_ids.push(format!("cat-{:03}", (i / 7) % CATEGORIES));
                category_ids.dedup();
            }
            let group_ids: Vec<String> = (0..i % 4)
                .map(|k| format!("mg-{:03}", (i * 3 + k) % GROUPS))
                .collect();
            json!({
                "id": format!("item-{i:05}"),
                "provider_id": format!("POS-ITEM-{i:05}"),
                "name": format!("Dish number {i}"),
                "description": format!("House dish {i}: seasonal produce, cooked to order, served with bread"),
                "category_ids": category_ids,
                "variations": variations,
                "modifier_group_ids": group_ids,
                "tax": {"name": "Sales tax", "percentage": "8.875", "inclusive": false},
            })
        })
        .collect();
    json!({"categories": categories, "items": items, "modifier_groups": groups})
}

/// Modifier group `g`: a required single-choice sauce, optional extras (up to 5), or sides
/// (0–2), with options priced 0–2.50.
fn modifier_group(g: usize) -> Value {
    let (name, min, max, required, options) = match g % 3 {
        0 => ("Sauce", 1, Some(1), true, 4),
        1 => ("Extras", 0, Some(5), false, 8),
        _ => ("Sides", 0, Some(2), false, 6),
    };
    let options: Vec<Value> = (0..options)
        .map(|o| {
            json!({
                "id": format!("mg-{g:03}-opt-{o}"),
                "provider_id": format!("POS-MOD-{g:03}-{o}"),
                "name": format!("{name} option {o}"),
                "price": (o as i64 * 50) % 300,
                "default": o == 0 && !required,
            })
        })
        .collect();
    let mut group = json!({
        "id": format!("mg-{g:03}"),
        "provider_id": format!("POS-MG-{g:03}"),
        "name": format!("{name} {g}"),
        "min_selected": min,
        "required": required,
        "options": options,
    });
    if let Some(max) = max {
        group["max_selected"] = json!(max);
    }
    group
}

/// The server's menu-cache counters (absent counters are 0: never incremented yet).
#[derive(Clone, Copy, Debug, Default)]
struct CacheCounters {
    hits: u64,
    misses: u64,
}

async fn cache_counters(server: &Server) -> Option<CacheCounters> {
    let text = crate::ws::metrics_text(server.addr).await?;
    let read = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Some(CacheCounters {
        hits: read("posbridge_menu_cache_hits_total"),
        misses: read("posbridge_menu_cache_misses_total"),
    })
}

/// Sends one request and checks its status; returns the body.
async fn expect(
    conn: &mut Conn,
    tpl: crate::http::Template,
    want: StatusCode,
    what: &str,
) -> Result<bytes::Bytes> {
    let (status, body) = conn.send(tpl.build()).await.context(what.to_owned())?;
    if status != want {
        bail!("{what}: expected {want}, got {status}: {}", snippet(&body));
    }
    Ok(body)
}

/// PUTs the menu, checks the GET and 304 semantics once, then measures full and conditional
/// GETs; `external_db` as in [`crate::cpu_note`].
pub async fn run(
    args: &MenuArgs,
    server: &Server,
    tenant: &Tenant,
    report: &mut Report,
    external_db: bool,
) -> Result<()> {
    let route = format!("/menus/{VENUE}");
    let mut conn = Conn::connect(server.addr).await?;

    let body = serde_json::to_vec(&menu_body(args.items))?;
    let put_bytes = body.len();
    let put = tenant
        .request(Method::PUT, server.addr, &route, &tenant.manager_key)?
        .raw_body(body, "application/json")?;
    let started = Instant::now();
    let meta = expect(&mut conn, put, StatusCode::OK, "PUT the menu").await?;
    let put_took = started.elapsed();
    let meta: Value = serde_json::from_slice(&meta).context("PUT answer is not JSON")?;
    if meta["items"].as_u64() != Some(args.items as u64) {
        bail!("PUT stored {} items, not {}", meta["items"], args.items);
    }
    let etag = meta["etag"]
        .as_str()
        .ok_or_else(|| anyhow!("PUT answer has no etag: {meta}"))?
        .to_owned();

    // The semantics the loads rely on, checked once: a full GET is the document, the
    // current ETag gets 304 with no body, a stale one the document again.
    let get = || tenant.request(Method::GET, server.addr, &route, &tenant.terminal_key);
    let document = expect(&mut conn, get()?, StatusCode::OK, "GET the menu").await?;
    let doc_bytes = document.len();
    let served: Value = serde_json::from_slice(&document).context("the menu is not JSON")?;
    let served_items = served["items"].as_array().map_or(0, Vec::len);
    if served_items != args.items {
        bail!("GET served {served_items} items, not {}", args.items);
    }
    let conditional = || -> Result<_> { get()?.header("if-none-match", &etag) };
    let empty = expect(
        &mut conn,
        conditional()?,
        StatusCode::NOT_MODIFIED,
        "conditional GET",
    )
    .await?;
    if !empty.is_empty() {
        bail!("a 304 came with {} body bytes", empty.len());
    }
    expect(
        &mut conn,
        get()?.header("if-none-match", "\"stale\"")?,
        StatusCode::OK,
        "GET with a stale ETag",
    )
    .await?;
    let gzip_get = || -> Result<_> { get()?.header("accept-encoding", "gzip") };
    let packed = expect(&mut conn, gzip_get()?, StatusCode::OK, "GET with gzip").await?;
    let gz_bytes = packed.len();
    let mut unpacked = Vec::with_capacity(doc_bytes);
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .context("the gzip answer does not decode")?;
    if unpacked != document {
        bail!("the gzip answer does not decode to the document");
    }
    drop(conn);

    report.notes.push(format!(
        "menus: {} items, {} categories, {GROUPS} modifier groups; PUT of {} KiB stored in {} (version {}); the served document is {} KiB, its gzip copy {} KiB",
        thousands(args.items as f64),
        CATEGORIES,
        thousands((put_bytes / 1024) as f64),
        secs(put_took),
        meta["version"],
        thousands((doc_bytes / 1024) as f64),
        thousands((gz_bytes / 1024) as f64),
    ));

    let label = format!(
        "menu GET, {} items, 200 ({} conns)",
        thousands(args.items as f64),
        args.connections
    );
    let (full, before, after) = measured(
        server,
        report,
        args,
        &label,
        "full GETs",
        Expect::Success,
        get,
    )
    .await?;
    served_rate(report, &label, &full, "", doc_bytes, "full GETs");
    notes(report, "menus (200)", &full, before, after, external_db);

    let label = format!(
        "menu GET, {} items, 200 gzip ({} conns)",
        thousands(args.items as f64),
        args.connections
    );
    let (gzipped, before, after) = measured(
        server,
        report,
        args,
        &label,
        "full GETs with Accept-Encoding: gzip",
        Expect::Success,
        gzip_get,
    )
    .await?;
    served_rate(
        report,
        &label,
        &gzipped,
        " compressed",
        gz_bytes,
        "gzip GETs",
    );
    notes(
        report,
        "menus (200 gzip)",
        &gzipped,
        before,
        after,
        external_db,
    );

    let label = format!("menu GET, If-None-Match, 304 ({} conns)", args.connections);
    let (not_modified, before, after) = measured(
        server,
        report,
        args,
        &label,
        "conditional GETs",
        Expect::Status(StatusCode::NOT_MODIFIED),
        conditional,
    )
    .await?;
    if not_modified.body_bytes != 0 {
        report.errors.push(format!(
            "menus: 304s carried {} body bytes",
            not_modified.body_bytes
        ));
    }
    notes(
        report,
        "menus (304)",
        &not_modified,
        before,
        after,
        external_db,
    );
    Ok(())
}

/// One measured load of `request`s (`what`, for the progress line), with the menu cache's
/// counters read before and after it and its throughput and latency rows added under `label`.
async fn measured(
    server: &Server,
    report: &mut Report,
    args: &MenuArgs,
    label: &str,
    what: &str,
    expect: Expect,
    request: impl Fn() -> Result<Template>,
) -> Result<(LoadResult, Option<CacheCounters>, Option<CacheCounters>)> {
    eprintln!(
        "[bench] menus: {what}, {} connections, {} s warm-up + {} s measured…",
        args.connections,
        args.warmup.as_secs(),
        args.duration.as_secs()
    );
    let before = cache_counters(server).await;
    let res = load::run_expecting(
        server,
        &[server.addr],
        args.connections,
        args.warmup,
        args.duration,
        expect,
        |_, _| request(),
    )
    .await?;
    let after = cache_counters(server).await;
    rows(report, label, &res, "≥ 5,000 req/s");
    Ok((res, before, after))
}

/// The bytes a full-answer load served per second (`unit` says what they were), and an
/// error unless every answer was exactly `each` bytes.
fn served_rate(
    report: &mut Report,
    label: &str,
    res: &LoadResult,
    unit: &str,
    each: usize,
    what: &str,
) {
    report.row(
        label,
        "served",
        format!(
            "{:.0} MiB/s{unit}",
            res.body_bytes as f64 / res.window.as_secs_f64() / (1024.0 * 1024.0)
        ),
        "—",
    );
    if res.ok > 0 && res.body_bytes != res.ok * each as u64 {
        report.errors.push(format!(
            "menus: {} {what} returned {} bytes, not {} each",
            res.ok, res.body_bytes, each
        ));
    }
}

fn rows(report: &mut Report, label: &str, res: &LoadResult, target: &str) {
    report.row(
        label,
        "throughput",
        format!("{} req/s", thousands(res.per_sec())),
        target,
    );
    report.latency_rows(label, "latency", &res.hist, "—");
}

/// The CPU, cache and error notes of one load.
fn notes(
    report: &mut Report,
    what: &str,
    res: &LoadResult,
    before: Option<CacheCounters>,
    after: Option<CacheCounters>,
    external_db: bool,
) {
    report
        .notes
        .extend(crate::cpu_note(what, res.cpu, external_db));
    if let Some(cpu) = res.cpu {
        if res.ok > 0 {
            report.notes.push(format!(
                "{what}: server CPU per 1,000 answers {:.3} s",
                cpu.server * res.window.as_secs_f64() / res.ok as f64 * 1000.0
            ));
        }
    }
    match (before, after) {
        (Some(b), Some(a)) => report.notes.push(format!(
            "{what}: {} answers measured; the menu-document cache counted {} hits and {} misses over the whole load, warm-up included (a miss loads the stored document; a 304 should be neither)",
            thousands(res.ok as f64),
            thousands(a.hits.saturating_sub(b.hits) as f64),
            thousands(a.misses.saturating_sub(b.misses) as f64),
        )),
        _ => report
            .notes
            .push(format!("{what}: /metrics unreadable, cache counters unknown")),
    }
    if res.errors > 0 {
        report.errors.push(format!(
            "{what}: {} failed requests; first: {}",
            res.errors,
            res.first_error.clone().unwrap_or_default()
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_menu_is_valid_as_the_server_sees_it() {
        let menu = menu_body(600);
        let items = menu["items"].as_array().expect("items");
        assert_eq!(items.len(), 600);
        let groups: HashSet<&str> = menu["modifier_groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|g| g["id"].as_str())
            .collect();
        let categories: HashSet<&str> = menu["categories"]
            .as_array()
            .expect("categories")
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        let mut variations = HashSet::new();
        for item in items {
            for v in item["variations"].as_array().expect("variations") {
                assert!(variations.insert(v["id"].as_str().expect("id")), "{v}");
            }
            for g in item["modifier_group_ids"].as_array().expect("group ids") {
                assert!(groups.contains(g.as_str().expect("id")), "{g}");
            }
            for c in item["category_ids"].as_array().expect("category ids") {
                assert!(categories.contains(c.as_str().expect("id")), "{c}");
            }
        }
        assert!(variations.len() > 1_000, "one to three sizes per item");
    }
}
