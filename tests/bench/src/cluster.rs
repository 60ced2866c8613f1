//! The `cluster` scenario: two hosts on one PostgreSQL database.
//!
//! * cross-host delivery: the terminals are split over host A and host B, every write goes
//!   to A, and the latency write → frame is measured on the sockets of both (B hears of
//!   the event through PostgreSQL's NOTIFY and reads it from the log);
//! * balance reads with the connections spread over both hosts, against all of them on
//!   A alone (the throughput ratio says what a second host adds on this machine).
//!
//! PostgreSQL comes from `--database-url`, or else a throwaway cluster started from the
//! installed server binaries the way the end-to-end tests start theirs
//! (`posbridge_harness::PgCluster`), removed when the bench ends.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::Value;

use crate::http::{snippet, Conn, Template};
use crate::load;
use crate::report::{ms, thousands, Report};
use crate::server::Server;
use crate::setup::Tenant;
use crate::ws::{self, ClientReader};

/// What the scenario needs from the command line.
pub struct ClusterArgs<'a> {
    pub bin: &'a Path,
    pub server_args: &'a [String],
    pub terminals: usize,
    pub ws_rate: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub client_reader: ClientReader,
    pub reader_threads: usize,
}

/// A throwaway PostgreSQL for the scenario when no `--database-url` was given; an error
/// saying what to do when the server binaries are not installed.
pub fn throwaway_postgres() -> Result<posbridge_harness::PgCluster> {
    if !posbridge_harness::PgCluster::available() {
        bail!(
            "the cluster scenario needs PostgreSQL: pass --database-url postgres://… or install \
             PostgreSQL's server binaries (Debian: apt-get install postgresql) so the bench \
             starts a throwaway cluster"
        );
    }
    eprintln!("[bench] cluster: starting a throwaway PostgreSQL cluster…");
    Ok(posbridge_harness::PgCluster::start())
}

pub async fn run(
    args: &ClusterArgs<'_>,
    host_a: &Server,
    tenant: &Tenant,
    report: &mut Report,
) -> Result<()> {
    if !host_a.database_url.starts_with("postgres") {
        bail!("the cluster scenario needs a PostgreSQL --database-url (or none, for a throwaway cluster)");
    }
    // Host B shares A's database and master key (without it, B could not open what A
    // sealed).
    let mut b_args = args.server_args.to_vec();
    b_args.push(format!(
        "--master-key-file={}",
        host_a.tmp_dir.join("posbridge.keys").display()
    ));
    eprintln!("[bench] cluster: starting host B on the same database…");
    let host_b = Server::start(args.bin, Some(&host_a.database_url), &b_args, false).await?;
    let outcome = measure(args, host_a, &host_b, tenant, report).await;
    match host_b.shutdown().await {
        Ok(status) if status.success() => {}
        Ok(status) => report
            .errors
            .push(format!("cluster: host B exited with {status} on SIGTERM")),
        Err(e) => report
            .errors
            .push(format!("cluster: shutting host B down: {e:#}")),
    }
    outcome
}

async fn measure(
    args: &ClusterArgs<'_>,
    host_a: &Server,
    host_b: &Server,
    tenant: &Tenant,
    report: &mut Report,
) -> Result<()> {
    let hosts = live_hosts(host_a).await?;
    report.notes.push(format!(
        "cluster: /admin/cluster on host A lists {hosts} live hosts"
    ));

    eprintln!(
        "[bench] cluster: {} terminals over two hosts, writes on host A…",
        args.terminals
    );
    let res = ws::latency(
        host_a,
        &[host_a.addr, host_b.addr],
        tenant,
        args.terminals,
        args.ws_rate,
        args.duration,
        args.client_reader,
        args.reader_threads,
    )
    .await?;
    let label = format!(
        "cross-host WS delivery ({} terminals, 2 hosts)",
        thousands(res.terminals as f64)
    );
    report.latency_rows(&label, "write on A → frame, all", &res.hist, "≤ 10 ms");
    for (name, hist) in ["on A (local)", "on B (via PostgreSQL)"]
        .iter()
        .zip(&res.per_host)
    {
        report.latency_rows(&label, &format!("write → frame {name}"), hist, "—");
    }
    report.row(
        &label,
        "frames received / expected",
        format!(
            "{} / {}",
            thousands(res.received as f64),
            thousands(res.expected as f64)
        ),
        "all",
    );
    report.notes.push(format!(
        "cluster: {} loyalty adds on host A at {}/s; the write's own response p50 {}, p99 {}",
        res.events,
        args.ws_rate,
        ms(res.write_hist.value_at_quantile(0.50)),
        ms(res.write_hist.value_at_quantile(0.99)),
    ));
    for p in &res.problems {
        report.errors.push(format!("cluster delivery: {p}"));
    }

    let route = format!("/gift-cards/{}/balance", tenant.gift_card);
    let mut per_sec = Vec::new();
    for (what, targets) in [
        ("one host", vec![host_a.addr]),
        ("two hosts", vec![host_a.addr, host_b.addr]),
    ] {
        eprintln!(
            "[bench] cluster: balance reads on {what}, {} connections…",
            args.connections
        );
        let res = load::run_on(
            host_a,
            &targets,
            args.connections,
            args.warmup,
            args.duration,
            |_, addr| tenant.request(Method::GET, addr, &route, &tenant.terminal_key),
        )
        .await?;
        let label = format!("balance read on {what} ({} conns)", args.connections);
        report.row(
            &label,
            "throughput",
            format!("{} req/s", thousands(res.per_sec())),
            "—",
        );
        report.latency_rows(&label, "latency", &res.hist, "—");
        per_sec.push(res.per_sec());
        if res.errors > 0 {
            report.errors.push(format!(
                "cluster balance on {what}: {} failed requests; first: {}",
                res.errors,
                res.first_error.unwrap_or_default()
            ));
        }
    }
    if let [one, two] = per_sec[..] {
        report.row(
            "balance read, two hosts against one",
            "throughput ratio",
            format!("{:.2}×", two / one.max(1.0)),
            "—",
        );
        report.notes.push(
            "cluster: both hosts, the database and the bench share this machine's cores, so the \
             ratio shows what a second process adds here, not on separate machines"
                .to_owned(),
        );
    }
    Ok(())
}

/// How many live hosts `/admin/cluster` on `server` lists, waiting up to 10 s for two.
async fn live_hosts(server: &Server) -> Result<usize> {
    let bearer = format!("Bearer {}", server.operator_token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = Conn::connect(server.addr).await?;
        let tpl = Template::new(Method::GET, server.addr, "/admin/cluster")?
            .header("authorization", &bearer)?;
        let (status, body) = conn.send(tpl.build()).await?;
        if !status.is_success() {
            bail!("GET /admin/cluster: HTTP {status}: {}", snippet(&body));
        }
        let view: Value = serde_json::from_slice(&body).context("GET /admin/cluster: not JSON")?;
        let hosts = view["hosts"].as_array().map_or(0, Vec::len);
        if hosts >= 2 || tokio::time::Instant::now() >= deadline {
            return Ok(hosts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
