//! posbridge-bench: spawns the real `posbridge` server on loopback with a fresh database,
//! creates a tenant through the operator API, and measures
//!
//! * gift-card balance reads per second and p50/p99 at N concurrent connections,
//! * loyalty adds per second and p50/p99 at N concurrent connections,
//! * WebSocket event delivery latency (write → frame received) with many terminals,
//! * server memory (VmRSS) per idle WebSocket connection,
//! * (`--scenario plugin-spin` only) balance reads idle vs. while plugin guests spin,
//! * (`--scenario cluster` only) two hosts on one PostgreSQL: cross-host delivery latency
//!   and balance reads on two hosts against one,
//! * (`--scenario menus` only) full and conditional (304) `GET`s of a 5,000-item menu.
//!
//! It prints a markdown table and never asserts timing: the exit status is non-zero only
//! when something failed (server did not start or died, requests failed, frames missing).

mod cluster;
mod http;
mod load;
mod menus;
mod rawws;
mod report;
mod server;
mod setup;
mod spin;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use hyper::Method;
use serde_json::json;

use report::{ms, secs, thousands, Report};
use server::{CpuSample, Server};
use setup::Tenant;

#[derive(Parser, Debug)]
#[command(
    name = "posbridge-bench",
    about = "Benchmark the posbridge server on loopback and print a markdown table",
    after_help = "Build the server first: cargo build --release -p posbridge"
)]
struct Args {
    /// Server binary [default: `posbridge` next to this executable]
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Database URL handed to the server, e.g. postgres://user:pass@127.0.0.1:5432/db
    /// [default: a fresh SQLite file in a temp dir]. The server runs with that temp dir as
    /// its working directory, so give SQLite paths absolute.
    #[arg(long)]
    database_url: Option<String>,
    /// Measured seconds of each scenario (ws-latency sends rate × this many writes)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration_secs: u64,
    /// Unmeasured warm-up seconds before each HTTP load scenario
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Concurrent keep-alive connections of the HTTP load scenarios
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    connections: usize,
    /// Tenants the loyalty scenario spreads its connections over (connection i writes to
    /// tenant i mod N): one tenant's writes share a sequence row, several tenants' do not
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    tenants: usize,
    /// Connected terminals (WebSockets) in ws-latency
    #[arg(long, default_value_t = 1000, value_parser = at_least_one)]
    terminals: usize,
    /// Idle WebSockets opened by ws-memory
    #[arg(long, default_value_t = 1000, value_parser = at_least_one)]
    idle_connections: usize,
    /// Writes per second in ws-latency (one at a time, each awaited)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    ws_rate: u32,
    /// Which scenario to run
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Threads of the bench's own runtime (client and server share the machine's cores;
    /// one thread keeps the client cheap)
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// How ws-latency reads its terminals' sockets
    #[arg(long, value_enum, default_value_t = ws::ClientReader::Epoll)]
    client_reader: ws::ClientReader,
    /// Threads of the epoll reader [default: one per CPU]. The terminals it stands in for
    /// read in parallel on their own machines; one thread reading all of them in turn
    /// queues each frame behind the others' reads
    #[arg(long, value_parser = at_least_one)]
    reader_threads: Option<usize>,
    /// Keep the temp dir (SQLite file, server log) and print its path
    #[arg(long)]
    keep_temp: bool,
    /// Guests kept spinning at once in plugin-spin
    #[arg(long, default_value_t = 4, value_parser = at_least_one)]
    spin_guests: usize,
    /// Concurrent balance-read connections in plugin-spin (a few tills, not a load test)
    #[arg(long, default_value_t = 4, value_parser = at_least_one)]
    spin_connections: usize,
    /// The spinning guest component [default: test_loop.wasm from the host build's
    /// wasm-plugins directory in this bench's target dir]
    #[arg(long)]
    loop_wasm: Option<PathBuf>,
    /// Items of the menu the menus scenario PUTs and then reads
    #[arg(long, default_value_t = 5000, value_parser = at_least_one)]
    menu_items: usize,
    /// Extra argument for `posbridge serve` (repeatable), e.g. --server-arg=--ws-queue=4096
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

/// Server CPU below which the previous scenario's background work counts as done.
const IDLE_CORES: f64 = 0.05;
/// Longest wait for that; a server still busy after it is measured anyway (and the note says so).
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// Waits until the server is idle, so the previous scenario's tail (WAL checkpoints, the
/// inbox, closing sockets) is not measured as part of the next. Returns the seconds waited
/// and the last reading.
async fn settle(server: &Server) -> (f64, Option<f64>) {
    let start = Instant::now();
    let mut cores = None;
    while start.elapsed() < SETTLE_LIMIT {
        let a = CpuSample::take(server);
        tokio::time::sleep(Duration::from_millis(250)).await;
        cores = a.until(&CpuSample::take(server)).map(|u| u.server);
        if cores.is_some_and(|c| c < IDLE_CORES) || cores.is_none() {
            break;
        }
    }
    (start.elapsed().as_secs_f64(), cores)
}

/// Reader threads of ws-latency's epoll reader: as asked, else one per CPU.
fn reader_threads(args: &Args) -> usize {
    args.reader_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Balance,
    Loyalty,
    WsLatency,
    WsMemory,
    /// Not part of `all`: it needs the test guest built by the host's build script.
    PluginSpin,
    /// Not part of `all`: two hosts on one PostgreSQL (`--database-url`, or a throwaway
    /// cluster from the installed server binaries).
    Cluster,
    /// Not part of `all`: full and conditional GETs of a large menu (megabytes per answer,
    /// so the full GETs load the loopback more than any other scenario).
    Menus,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::All => "all",
            Scenario::Balance => "balance",
            Scenario::Loyalty => "loyalty",
            Scenario::WsLatency => "ws-latency",
            Scenario::WsMemory => "ws-memory",
            Scenario::PluginSpin => "plugin-spin",
            Scenario::Cluster => "cluster",
            Scenario::Menus => "menus",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("posbridge-bench: error: building the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("posbridge-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn raise_nofile(needed: u64) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => eprintln!(
            "[bench] warning: RLIMIT_NOFILE is {limit}, below the ~{needed} descriptors needed"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("[bench] warning: could not raise RLIMIT_NOFILE: {e}"),
    }
}

/// Returns Ok(false) when the figures were printed but something failed.
async fn run(args: Args) -> Result<bool> {
    let sockets = args.terminals.max(args.idle_connections) as u64;
    raise_nofile(sockets + args.connections as u64 + 256);

    let bin = match &args.server_bin {
        Some(p) => p.clone(),
        None => server::default_server_bin()?,
    };
    let busy_before = server::machine_busy_cores(Duration::from_secs(1)).await;
    if let Some(busy) = busy_before.filter(|b| *b > 0.2) {
        eprintln!("[bench] warning: the machine is already busy ({busy:.2} cores) — figures will be disturbed");
    }
    eprintln!("[bench] starting {}", bin.display());
    // The benchmark drives the server with one key far past any per-key budget: it measures
    // capacity, so rate limiting is off unless the caller passes a limit of its own.
    let mut server_args = args.server_args.clone();
    if !server_args
        .iter()
        .any(|a| a.starts_with("--rate-limit-per-sec"))
    {
        server_args.push("--rate-limit-per-sec=0".to_owned());
    }
    // The cluster scenario needs PostgreSQL: a throwaway one unless a URL was given (kept
    // until the end of the run, removed on drop).
    let throwaway_pg = match (&args.database_url, args.scenario) {
        (None, Scenario::Cluster) => Some(cluster::throwaway_postgres()?),
        _ => None,
    };
    let database_url = args
        .database_url
        .clone()
        .or_else(|| throwaway_pg.as_ref().map(|pg| pg.admin_url()));
    let mut server =
        Server::start(&bin, database_url.as_deref(), &server_args, args.keep_temp).await?;
    eprintln!(
        "[bench] server pid {} listening on http://{}",
        server.pid, server.addr
    );
    let tenant = match setup::create_tenant(&server).await {
        Ok(t) => t,
        Err(e) => {
            return Err(e.context(format!(
                "setting up the benchmark tenant\n--- server log tail ---\n{}",
                server.log_tail(30)
            )))
        }
    };
    eprintln!("[bench] tenant {} ready", tenant.slug);

    let order = [
        Scenario::WsMemory,
        Scenario::Balance,
        Scenario::Loyalty,
        Scenario::WsLatency,
        Scenario::PluginSpin,
        Scenario::Cluster,
        Scenario::Menus,
    ];
    let selected: Vec<Scenario> = order
        .into_iter()
        .filter(|s| {
            args.scenario == *s
                || (args.scenario == Scenario::All
                    && !matches!(
                        *s,
                        Scenario::PluginSpin | Scenario::Cluster | Scenario::Menus
                    ))
        })
        .collect();

    let mut report = Report::default();
    for (i, scenario) in selected.into_iter().enumerate() {
        if let Err(e) = server.check_alive() {
            report
                .errors
                .push(format!("before {}: {e:#}", scenario.name()));
            break;
        }
        if i > 0 {
            let (waited, cores) = settle(&server).await;
            let name = scenario.name();
            report.notes.push(match cores {
                Some(c) if c < IDLE_CORES => format!(
                    "{name}: started once the server was idle ({c:.2} cores) after {waited:.1} s"
                ),
                Some(c) => format!(
                    "{name}: started with the server still busy ({c:.2} cores) after waiting {waited:.1} s"
                ),
                None => format!("{name}: server CPU unreadable; started after {waited:.1} s"),
            });
        }
        let outcome = match scenario {
            Scenario::Balance => balance(&args, &server, &tenant, &mut report).await,
            Scenario::Loyalty => loyalty(&args, &server, &tenant, &mut report).await,
            Scenario::WsLatency => ws_latency(&args, &server, &tenant, &mut report).await,
            Scenario::WsMemory => ws_memory(&args, &server, &tenant, &mut report).await,
            Scenario::PluginSpin => plugin_spin(&args, &server, &tenant, &mut report).await,
            Scenario::Cluster => {
                let cluster_args = cluster::ClusterArgs {
                    bin: &bin,
                    server_args: &server_args,
                    terminals: args.terminals,
                    ws_rate: args.ws_rate,
                    duration: Duration::from_secs(args.duration_secs),
                    warmup: Duration::from_secs(args.warmup_secs),
                    connections: args.connections,
                    client_reader: args.client_reader,
                    reader_threads: reader_threads(&args),
                };
                cluster::run(&cluster_args, &server, &tenant, &mut report).await
            }
            Scenario::Menus => {
                let menu_args = menus::MenuArgs {
                    items: args.menu_items,
                    connections: args.connections,
                    warmup: Duration::from_secs(args.warmup_secs),
                    duration: Duration::from_secs(args.duration_secs),
                };
                menus::run(
                    &menu_args,
                    &server,
                    &tenant,
                    &mut report,
                    args.database_url.is_some(),
                )
                .await
            }
            Scenario::All => Ok(()),
        };
        if let Err(e) = outcome {
            eprintln!("[bench] {} failed: {e:#}", scenario.name());
            report.errors.push(format!("{}: {e:#}", scenario.name()));
        }
    }

    if let Some(busy) = busy_before {
        report.notes.insert(
            0,
            format!("machine busy before the server started: {busy:.2} cores (other processes)"),
        );
    }
    let log_kib = server.log_size() / 1024;
    let db_kind = server
        .database_url
        .split(':')
        .next()
        .unwrap_or("?")
        .to_string();
    let db_desc = if throwaway_pg.is_some() {
        format!("{db_kind} (a throwaway cluster on loopback)")
    } else if args.database_url.is_some() {
        format!("{db_kind} (--database-url)")
    } else {
        "SQLite, fresh file in a temp dir".to_string()
    };
    let pid = server.pid;
    let tmp_dir = server.tmp_dir.clone();
    match server.shutdown().await {
        Ok(status) if status.success() => {
            report.notes.push("server exited 0 on SIGTERM".into());
        }
        Ok(status) => report.errors.push(format!(
            "server exited with {status} on SIGTERM (expected 0)"
        )),
        Err(e) => report
            .errors
            .push(format!("shutting the server down: {e:#}")),
    }
    report.notes.push(format!(
        "server log (stderr) grew to {log_kib} KiB during the run"
    ));
    if args.keep_temp {
        report.notes.push(format!(
            "kept the temp dir (database, server.log): {}",
            tmp_dir.display()
        ));
    }

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "posbridge-bench — server {} (pid {pid}), database: {db_desc}, {cpus} CPUs shared by server and client, \
         client runtime threads: {}, ws-latency reader: {}, {} s measured per scenario",
        bin.display(),
        args.client_threads.max(1),
        match args.client_reader {
            ws::ClientReader::Epoll => format!("epoll on {} threads", reader_threads(&args)),
            ws::ClientReader::Tasks => "a task per socket".to_owned(),
        },
        args.duration_secs
    );
    println!();
    print!("{}", report.table());
    if !report.notes.is_empty() {
        println!();
        for note in &report.notes {
            println!("- {note}");
        }
    }
    if report.errors.is_empty() {
        Ok(true)
    } else {
        println!();
        println!("ERRORS:");
        for e in &report.errors {
            println!("- {e}");
        }
        Ok(false)
    }
}

/// `external_db`: with --database-url the database server's processes are part of the
/// system under test, so "other processes" is not a sign of disturbance.
fn cpu_note(scenario: &str, cpu: Option<server::CpuUse>, external_db: bool) -> Option<String> {
    let cpu = cpu?;
    let others = if external_db {
        format!(
            "other processes incl. the database server {:.2}",
            cpu.others
        )
    } else if cpu.others > 0.1 {
        format!(
            "other processes {:.2} (other load: figures are disturbed)",
            cpu.others
        )
    } else {
        format!("other processes {:.2}", cpu.others)
    };
    Some(format!(
        "{scenario}: CPU while measuring — server {:.2} cores, bench client {:.2}, irq/softirq {:.2}, {others}",
        cpu.server, cpu.client, cpu.irq,
    ))
}

async fn balance(args: &Args, server: &Server, tenant: &Tenant, report: &mut Report) -> Result<()> {
    let label = format!("gift-card balance read ({} conns)", args.connections);
    eprintln!(
        "[bench] balance: {} connections, {} s warm-up + {} s measured…",
        args.connections, args.warmup_secs, args.duration_secs
    );
    let route = format!("/gift-cards/{}/balance", tenant.gift_card);
    let res = load::run(
        server,
        args.connections,
        Duration::from_secs(args.warmup_secs),
        Duration::from_secs(args.duration_secs),
        |_| tenant.request(Method::GET, server.addr, &route, &tenant.terminal_key),
    )
    .await?;
    report.row(
        &label,
        "throughput",
        format!("{} req/s", thousands(res.per_sec())),
        "≥ 10,000 req/s",
    );
    report.latency_rows(&label, "latency", &res.hist, "—");
    report
        .notes
        .extend(cpu_note("balance", res.cpu, args.database_url.is_some()));
    report.notes.push(format!(
        "balance: {} successful reads in {}",
        thousands(res.ok as f64),
        secs(res.window)
    ));
    if res.errors > 0 {
        report.errors.push(format!(
            "balance: {} failed requests; first: {}",
            res.errors,
            res.first_error.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Worker i adds to its own customer; 64 distinct phones in the 555-01xx fictional range.
fn loyalty_phone(i: usize) -> String {
    format!("+1201555{:04}", 100 + i % 100)
}

async fn loyalty(args: &Args, server: &Server, tenant: &Tenant, report: &mut Report) -> Result<()> {
    let mut others = Vec::new();
    for _ in 1..args.tenants {
        others.push(setup::create_tenant(server).await?);
    }
    let tenants: Vec<&Tenant> = std::iter::once(tenant).chain(&others).collect();
    let label = match tenants.len() {
        1 => format!("loyalty add ({} conns)", args.connections),
        n => format!("loyalty add ({} conns, {n} tenants)", args.connections),
    };
    eprintln!(
        "[bench] loyalty: {} connections over {} tenant(s), {} s warm-up + {} s measured…",
        args.connections,
        tenants.len(),
        args.warmup_secs,
        args.duration_secs
    );
    let body = json!({"points": 1, "reason": "bench"});
    let res = load::run(
        server,
        args.connections,
        Duration::from_secs(args.warmup_secs),
        Duration::from_secs(args.duration_secs),
        |i| {
            let tenant = tenants[i % tenants.len()];
            tenant
                .request(
                    Method::POST,
                    server.addr,
                    &format!("/loyalty/{}/add", loyalty_phone(i)),
                    &tenant.terminal_key,
                )?
                .json_body(&body)
        },
    )
    .await?;
    report.row(
        &label,
        "throughput",
        format!("{} req/s", thousands(res.per_sec())),
        "≥ 2,000 req/s",
    );
    report.latency_rows(&label, "latency", &res.hist, "—");
    report
        .notes
        .extend(cpu_note("loyalty", res.cpu, args.database_url.is_some()));
    report.notes.push(format!(
        "loyalty: {} successful adds in {} ({} customers, each add = ledger row + event in one transaction)",
        thousands(res.ok as f64),
        secs(res.window),
        args.connections.min(100)
    ));
    if res.errors > 0 {
        report.errors.push(format!(
            "loyalty: {} failed requests; first: {}",
            res.errors,
            res.first_error.unwrap_or_default()
        ));
    }
    Ok(())
}

async fn ws_latency(
    args: &Args,
    server: &Server,
    tenant: &Tenant,
    report: &mut Report,
) -> Result<()> {
    let res = ws::latency(
        server,
        &[server.addr],
        tenant,
        args.terminals,
        args.ws_rate,
        Duration::from_secs(args.duration_secs),
        args.client_reader,
        reader_threads(args),
    )
    .await?;
    let label = format!(
        "WS delivery ({} terminals)",
        thousands(res.terminals as f64)
    );
    report.latency_rows(&label, "write → frame", &res.hist, "≤ 10 ms");
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
        "ws-latency: {} loyalty adds at {}/s, one at a time; the write's own HTTP response p50 {}, p99 {}",
        res.events,
        args.ws_rate,
        ms(res.write_hist.value_at_quantile(0.50)),
        ms(res.write_hist.value_at_quantile(0.99)),
    ));
    report.notes.push(format!(
        "ws-latency: per event, first terminal served after p50 {} / p99 {}, last of {} after p50 {} / p99 {}",
        ms(res.first_hist.value_at_quantile(0.50)),
        ms(res.first_hist.value_at_quantile(0.99)),
        res.terminals,
        ms(res.last_hist.value_at_quantile(0.50)),
        ms(res.last_hist.value_at_quantile(0.99)),
    ));
    if let (Some(before), Some(after)) = (&res.metrics_before, &res.metrics_after) {
        let bound = |q| {
            ws::fanout_quantile(before, after, q)
                .map_or_else(|| "n/a".to_owned(), |s| format!("≤ {:.0} ms", s * 1000.0))
        };
        report.notes.push(format!(
            "ws-latency: server side (posbridge_event_fanout_seconds), append → frame handed to every socket: p50 {}, p99 {}",
            bound(0.50),
            bound(0.99),
        ));
    }
    report
        .notes
        .extend(cpu_note("ws-latency", res.cpu, args.database_url.is_some()));
    if res.unexpected > 0 || res.out_of_order > 0 {
        report.notes.push(format!(
            "ws-latency: {} unexpected and {} duplicated/out-of-order frames",
            res.unexpected, res.out_of_order
        ));
    }
    for p in res.problems {
        report.errors.push(format!("ws-latency: {p}"));
    }
    Ok(())
}

async fn ws_memory(
    args: &Args,
    server: &Server,
    tenant: &Tenant,
    report: &mut Report,
) -> Result<()> {
    let res = ws::memory(server, tenant, args.idle_connections)
        .await
        .context("idle WebSocket memory")?;
    let label = format!("WS idle memory ({} sockets)", thousands(res.sockets as f64));
    report.row(
        &label,
        "server RSS per connection",
        format!("{:.1} KiB", res.kib_per_conn()),
        "≤ 20 KiB",
    );
    report.notes.push(format!(
        "ws-memory: server VmRSS {} KiB before, {} KiB with {} idle sockets, {} KiB 1 s after closing them{}{}",
        thousands(res.rss_before_kib as f64),
        thousands(res.rss_after_kib as f64),
        res.sockets,
        thousands(res.rss_after_close_kib as f64),
        res.gauge
            .map(|g| format!("; /metrics posbridge_websocket_connections = {g}"))
            .unwrap_or_default(),
        res.threads_after
            .map(|t| format!("; server threads: {t}"))
            .unwrap_or_default(),
    ));
    Ok(())
}

async fn plugin_spin(
    args: &Args,
    server: &Server,
    tenant: &Tenant,
    report: &mut Report,
) -> Result<()> {
    let wasm = match &args.loop_wasm {
        Some(p) => p.clone(),
        None => spin::default_wasm()?,
    };
    let res = spin::run(
        server,
        tenant,
        &wasm,
        args.spin_guests,
        args.spin_connections,
        Duration::from_secs(args.warmup_secs),
        Duration::from_secs(args.duration_secs),
    )
    .await?;
    let idle = format!("balance read, no guest ({} conns)", args.spin_connections);
    let busy = format!(
        "balance read, {} guests spinning ({} conns)",
        args.spin_guests, args.spin_connections
    );
    report.latency_rows(&idle, "latency", &res.idle.hist, "—");
    report.latency_rows(&busy, "latency", &res.spinning.hist, "—");
    report.row(
        &busy,
        "p99 / idle p99",
        format!("{:.1}×", res.p99_ratio()),
        "a few ×",
    );
    report.notes.push(format!(
        "plugin-spin: {} guest calls stopped at their CPU deadline during the spinning run ({} answered otherwise); reads: {} idle, {} spinning",
        res.deadlines,
        res.other_answers,
        thousands(res.idle.ok as f64),
        thousands(res.spinning.ok as f64),
    ));
    report.notes.extend(cpu_note(
        "plugin-spin (spinning)",
        res.spinning.cpu,
        args.database_url.is_some(),
    ));
    for (what, r) in [("idle", &res.idle), ("spinning", &res.spinning)] {
        if r.errors > 0 {
            report.errors.push(format!(
                "plugin-spin {what}: {} failed reads; first: {}",
                r.errors,
                r.first_error.clone().unwrap_or_default()
            ));
        }
    }
    Ok(())
}
