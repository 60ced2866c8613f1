//! Closed-loop HTTP load: N connections, each sending the next request as soon as the
//! previous response is read. Latency is measured per request from just before sending
//! to the end of the response body.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use hyper::StatusCode;

use crate::http::{snippet, Conn, Template};
use crate::server::{CpuSample, CpuUse, Server};

pub fn new_histogram() -> Result<Histogram<u64>> {
    // Microseconds, 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| anyhow!("histogram: {e:?}"))
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Which answers count as successful.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Any 2xx.
    Success,
    /// Exactly this status (a conditional GET expects 304, which is not a 2xx).
    Status(StatusCode),
}

impl Expect {
    fn accepts(self, status: StatusCode) -> bool {
        match self {
            Expect::Success => status.is_success(),
            Expect::Status(want) => status == want,
        }
    }
}

pub struct LoadResult {
    pub ok: u64,
    /// Response body bytes of the measured successful requests.
    pub body_bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    pub hist: Histogram<u64>,
    pub cpu: Option<CpuUse>,
}

impl LoadResult {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }
}

struct WorkerOut {
    ok: u64,
    body_bytes: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
}

async fn worker(
    addr: SocketAddr,
    mut conn: Conn,
    tpl: Template,
    expect: Expect,
    measure_from: Instant,
    until: Instant,
) -> Result<WorkerOut> {
    let mut out = WorkerOut {
        ok: 0,
        body_bytes: 0,
        errors: 0,
        first_error: None,
        hist: new_histogram()?,
    };
    loop {
        let start = Instant::now();
        if start >= until {
            break;
        }
        let measured = start >= measure_from;
        match conn.send(tpl.build()).await {
            Ok((status, body)) if expect.accepts(status) => {
                if measured {
                    out.ok += 1;
                    out.body_bytes += body.len() as u64;
                    out.hist.saturating_record(micros(start.elapsed()));
                }
            }
            Ok((status, body)) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("HTTP {status}: {}", snippet(&body)));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
                // The connection is gone; one reconnect, then give up on this worker.
                tokio::time::sleep(Duration::from_millis(50)).await;
                conn = Conn::connect(addr)
                    .await
                    .context("reconnecting after a failed request")?;
            }
        }
    }
    Ok(out)
}

/// Runs `connections` workers for `warmup + duration`, measuring only `duration`.
/// `template(i)` gives worker i its request.
pub async fn run(
    server: &Server,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    template: impl Fn(usize) -> Result<Template>,
) -> Result<LoadResult> {
    run_on(
        server,
        &[server.addr],
        connections,
        warmup,
        duration,
        |i, _| template(i),
    )
    .await
}

/// Like [`run`], with worker i connected to `hosts[i % hosts.len()]` (several hosts on one
/// database); `template(i, host)` gives its request. CPU is `server`'s alone.
pub async fn run_on(
    server: &Server,
    hosts: &[SocketAddr],
    connections: usize,
    warmup: Duration,
    duration: Duration,
    template: impl Fn(usize, SocketAddr) -> Result<Template>,
) -> Result<LoadResult> {
    run_expecting(
        server,
        hosts,
        connections,
        warmup,
        duration,
        Expect::Success,
        template,
    )
    .await
}

/// Like [`run_on`], counting as successful only the answers `expect` accepts.
pub async fn run_expecting(
    server: &Server,
    hosts: &[SocketAddr],
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: Expect,
    template: impl Fn(usize, SocketAddr) -> Result<Template>,
) -> Result<LoadResult> {
    let hosts = if hosts.is_empty() {
        &[server.addr][..]
    } else {
        hosts
    };
    // Connect everything first so connection setup is not part of the measurement.
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let addr = hosts[i % hosts.len()];
        conns.push((addr, Conn::connect(addr).await?));
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + duration;
    let mut handles = Vec::with_capacity(connections);
    for (i, (addr, conn)) in conns.into_iter().enumerate() {
        let tpl = template(i, addr)?;
        handles.push(tokio::spawn(worker(
            addr,
            conn,
            tpl,
            expect,
            measure_from,
            until,
        )));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let cpu0 = CpuSample::take(server);
    tokio::time::sleep_until(until.into()).await;
    let cpu1 = CpuSample::take(server);

    let mut hist = new_histogram()?;
    let (mut ok, mut body_bytes, mut errors, mut first_error) = (0, 0, 0, None);
    let mut worker_failure = None;
    for h in handles {
        match h.await.context("load worker panicked")? {
            Ok(w) => {
                ok += w.ok;
                body_bytes += w.body_bytes;
                errors += w.errors;
                if first_error.is_none() {
                    first_error = w.first_error;
                }
                hist.add(&w.hist)
                    .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
            }
            Err(e) => {
                worker_failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = worker_failure {
        return Err(e.context(format!(
            "a load worker failed (first request error: {})",
            first_error.unwrap_or_else(|| "none".into())
        )));
    }
    Ok(LoadResult {
        ok,
        body_bytes,
        errors,
        first_error,
        window: duration,
        hist,
        cpu: cpu0.until(&cpu1),
    })
}
