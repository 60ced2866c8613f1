//! WebSocket scenarios: event delivery latency to many terminals, and server memory
//! per idle connection.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{stream, StreamExt};
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::http::{snippet, Conn};
use crate::load::{micros, new_histogram};
use crate::rawws::{Msg, Polled, PolledWs, RawWs};
use crate::server::{CpuSample, CpuUse, Server};
use crate::setup::Tenant;

const CONNECT_CONCURRENCY: usize = 32;
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens one terminal socket and waits for its hello; returns the hello's `last_seq`.
async fn connect_terminal(addr: SocketAddr, tenant: &Tenant) -> Result<(RawWs, u64)> {
    let fut = async {
        let path = format!("/ws/pos/{}", tenant.slug);
        let headers = [
            ("X-API-Key", tenant.terminal_key.as_str()),
            ("X-Tenant-ID", tenant.slug.as_str()),
        ];
        let mut ws = RawWs::connect(addr, &path, &headers).await?;
        loop {
            let hello = match ws.next_msg()? {
                Some(Msg::Text(text)) => Some(parse_hello(text)?),
                Some(Msg::Close(code, reason)) => {
                    bail!("closed before hello: code {code:?} {reason}")
                }
                Some(Msg::Binary) => bail!("binary frame before hello"),
                None => None,
            };
            match hello {
                Some(last_seq) => return Ok((ws, last_seq)),
                None => {
                    if !ws.fill().await? {
                        bail!("connection ended before hello");
                    }
                }
            }
        }
    };
    tokio::time::timeout(HELLO_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("no hello within {HELLO_TIMEOUT:?}"))?
}

fn parse_hello(text: &[u8]) -> Result<u64> {
    let shown = || String::from_utf8_lossy(text).into_owned();
    let v: Value = serde_json::from_slice(text)
        .with_context(|| format!("first frame is not JSON: {}", shown()))?;
    if v.get("type").and_then(Value::as_str) != Some("hello") {
        bail!("first frame is not a hello: {}", shown());
    }
    v.get("last_seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("hello without numeric last_seq: {}", shown()))
}

async fn connect_many(addr: SocketAddr, tenant: &Tenant, n: usize) -> Result<Vec<(RawWs, u64)>> {
    let results: Vec<Result<(RawWs, u64)>> = stream::iter(0..n)
        .map(|_| connect_terminal(addr, tenant))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut sockets = Vec::with_capacity(n);
    let mut failed = 0;
    let mut first = None;
    for r in results {
        match r {
            Ok(s) => sockets.push(s),
            Err(e) => {
                failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first {
        return Err(e.context(format!("{failed} of {n} WebSocket connections failed")));
    }
    Ok(sockets)
}

/// `{"seq":42,...}` → 42 without a JSON parse (the contract puts seq first; we search
/// for it anyway). `"last_seq":` does not match because of the leading quote.
fn parse_seq(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    let at = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut seq: u64 = 0;
    let mut digits = 0;
    for &b in text[at..].iter().skip_while(|b| b.is_ascii_whitespace()) {
        if !b.is_ascii_digit() {
            break;
        }
        seq = seq.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(seq)
}

#[derive(Default)]
struct ReaderOut {
    recv: Vec<(u64, Instant)>,
    other_frames: u64,
    first_other: Option<String>,
    ended: Option<String>,
}

/// The running readers of ws-latency.
enum Readers {
    Tasks(Vec<tokio::task::JoinHandle<ReaderOut>>),
    /// One handle per reader thread, each with its share of the sockets.
    Epoll(Vec<tokio::task::JoinHandle<Result<Vec<ReaderOut>>>>),
}

/// Counts one received message into `out`; `Some(why)` if it ends the socket.
fn record(out: &mut ReaderOut, msg: Msg<'_>, now: Instant, counter: &AtomicU64) -> Option<String> {
    match msg {
        Msg::Text(text) => match parse_seq(text) {
            Some(seq) => {
                out.recv.push((seq, now));
                counter.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                out.other_frames += 1;
                out.first_other.get_or_insert_with(|| snippet(text));
            }
        },
        Msg::Binary => {
            out.other_frames += 1;
            out.first_other
                .get_or_insert_with(|| "(binary frame)".into());
        }
        Msg::Close(code, reason) => {
            return Some(format!("server closed the socket: code {code:?} {reason}"));
        }
    }
    None
}

/// Records every complete message buffered in `ws`; `Some(why)` if the socket ended.
fn drain(
    ws: &mut PolledWs,
    out: &mut ReaderOut,
    now: Instant,
    counter: &AtomicU64,
) -> Option<String> {
    loop {
        match ws.next_msg() {
            Ok(Some(msg)) => {
                if let Some(why) = record(out, msg, now, counter) {
                    return Some(why);
                }
            }
            Ok(None) => return None,
            Err(e) => return Some(format!("{e:#}")),
        }
    }
}

/// Reads `sockets` from this thread with epoll until `stop` is set (or all ended), timestamping
/// each event frame with the instant its bytes were read (frames read together share it).
/// No task per socket: the client's own CPU per frame is what competes with the server for
/// the machine's cores. ws-latency runs one of these per reader thread. Returns one
/// [`ReaderOut`] per socket.
fn poll_readers(
    sockets: Vec<PolledWs>,
    counter: &AtomicU64,
    stop: &AtomicBool,
    cap: usize,
) -> Result<Vec<ReaderOut>> {
    const EVENTS: usize = 1024;
    // SAFETY: plain system calls on descriptors this function owns or borrows.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("epoll_create1");
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
    for (i, ws) in sockets.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: valid descriptors and a valid event.
        if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, ws.fd(), &mut ev) } < 0
        {
            return Err(std::io::Error::last_os_error()).context("epoll_ctl");
        }
    }
    let mut outs: Vec<ReaderOut> = (0..sockets.len())
        .map(|_| ReaderOut {
            recv: Vec::with_capacity(cap),
            ..ReaderOut::default()
        })
        .collect();
    let mut sockets: Vec<Option<PolledWs>> = sockets.into_iter().map(Some).collect();
    let mut open = sockets.len();
    // Messages read before polling began (with the handshake or the hello) come first.
    let now = Instant::now();
    for (slot, out) in sockets.iter_mut().zip(outs.iter_mut()) {
        if let Some(why) = slot.as_mut().and_then(|ws| drain(ws, out, now, counter)) {
            out.ended = Some(why);
            *slot = None;
            open -= 1;
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    while open > 0 && !stop.load(Ordering::Relaxed) {
        // SAFETY: `events` has room for EVENTS entries.
        let n =
            unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, 20) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err).context("epoll_wait");
        }
        for ev in &events[..n as usize] {
            let i = { ev.u64 } as usize;
            let (Some(slot), Some(out)) = (sockets.get_mut(i), outs.get_mut(i)) else {
                continue;
            };
            let Some(ws) = slot.as_mut() else {
                continue;
            };
            let ended = match ws.fill() {
                Ok(Polled::Empty) => None,
                Ok(Polled::Eof) => Some("socket ended (EOF)".to_owned()),
                Err(e) => Some(e.to_string()),
                Ok(Polled::Data) => drain(ws, out, Instant::now(), counter),
            };
            if let Some(why) = ended {
                out.ended = Some(why);
                let mut ev = libc::epoll_event { events: 0, u64: 0 };
                // SAFETY: as above; a failure only leaves a dead descriptor registered.
                unsafe {
                    libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, ws.fd(), &mut ev)
                };
                *slot = None;
                open -= 1;
            }
        }
    }
    for ws in sockets.into_iter().flatten() {
        ws.close();
    }
    Ok(outs)
}

/// Reads until cancelled, timestamping every event frame with the instant its bytes
/// were read (one timestamp per read: frames that arrived together share it).
async fn reader(
    mut ws: RawWs,
    cancel: CancellationToken,
    counter: Arc<AtomicU64>,
    cap: usize,
) -> ReaderOut {
    let mut out = ReaderOut {
        recv: Vec::with_capacity(cap),
        ..ReaderOut::default()
    };
    // Created once: a fresh `cancelled()` per loop turn would register with the token's
    // shared lock for every frame.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let mut now = Instant::now();
    loop {
        loop {
            match ws.next_msg() {
                Ok(Some(msg)) => {
                    if let Some(why) = record(&mut out, msg, now, &counter) {
                        out.ended = Some(why);
                        return out;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.ended = Some(format!("{e:#}"));
                    return out;
                }
            }
        }
        tokio::select! {
            biased;
            filled = ws.fill() => match filled {
                Ok(true) => now = Instant::now(),
                Ok(false) => {
                    out.ended = Some("socket ended (EOF)".into());
                    return out;
                }
                Err(e) => {
                    out.ended = Some(format!("{e:#}"));
                    return out;
                }
            },
            _ = &mut cancelled => {
                ws.close().await;
                return out;
            }
        }
    }
}

pub struct LatencyResult {
    pub terminals: usize,
    pub events: usize,
    pub expected: u64,
    pub received: u64,
    pub unexpected: u64,
    pub out_of_order: u64,
    pub hist: Histogram<u64>,
    pub write_hist: Histogram<u64>,
    /// Per event, the latency of the first and of the last terminal to receive it.
    pub first_hist: Histogram<u64>,
    pub last_hist: Histogram<u64>,
    /// `hist` split by the host whose socket received the frame (index into `hosts`).
    pub per_host: Vec<Histogram<u64>>,
    pub problems: Vec<String>,
    /// CPU cores used by the server and by the bench while the writes were sent.
    pub cpu: Option<CpuUse>,
    /// The server's `/metrics` before and after the writes (for its fan-out histogram).
    pub metrics_before: Option<String>,
    pub metrics_after: Option<String>,
}

/// How the bench reads its terminals' sockets in ws-latency.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientReader {
    /// Threads (`--reader-threads`) each polling their share of the sockets with epoll
    /// (the cheapest per frame).
    Epoll,
    /// A tokio task per socket on the bench's runtime.
    Tasks,
}

/// Writes go to `server`; the terminals are spread evenly over `hosts` (several hosts on
/// one PostgreSQL database: `server` and its siblings).
#[allow(clippy::too_many_arguments)]
pub async fn latency(
    server: &Server,
    hosts: &[SocketAddr],
    tenant: &Tenant,
    terminals: usize,
    rate: u32,
    duration: Duration,
    client_reader: ClientReader,
    reader_threads: usize,
) -> Result<LatencyResult> {
    let addr = server.addr;
    eprintln!("[bench] ws-latency: connecting {terminals} terminals…");
    let t = Instant::now();
    let mut sockets = Vec::with_capacity(terminals);
    // Which host each socket is on, in the order of `sockets`.
    let mut socket_host = Vec::with_capacity(terminals);
    let hosts = if hosts.is_empty() { &[addr][..] } else { hosts };
    for (h, host) in hosts.iter().enumerate() {
        let share = terminals / hosts.len() + usize::from(h < terminals % hosts.len());
        sockets.extend(connect_many(*host, tenant, share).await?);
        socket_host.extend(std::iter::repeat_n(h, share));
    }
    eprintln!(
        "[bench] ws-latency: {terminals} hellos in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let base = sockets.iter().map(|s| s.1).max().unwrap_or(0);
    let lowest = sockets.iter().map(|s| s.1).min().unwrap_or(0);
    let mut problems = Vec::new();
    if lowest != base {
        problems.push(format!(
            "hello last_seq differed between sockets ({lowest}..{base}) although nothing was written"
        ));
    }

    let events = ((rate as f64 * duration.as_secs_f64()).round() as usize).max(1);
    let cancel = CancellationToken::new();
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Host of each reader output, in the order the outputs are collected below.
    let mut out_host = Vec::with_capacity(terminals);
    let readers = match client_reader {
        ClientReader::Tasks => Readers::Tasks({
            out_host.clone_from(&socket_host);
            sockets
                .into_iter()
                .map(|(ws, _)| tokio::spawn(reader(ws, cancel.clone(), counter.clone(), events)))
                .collect()
        }),
        ClientReader::Epoll => {
            let polled = sockets
                .into_iter()
                .map(|(ws, _)| ws.into_polled())
                .collect::<Result<Vec<_>>>()?;
            // Sockets are dealt round-robin, so every thread gets some of each shard's.
            let threads = reader_threads.clamp(1, polled.len().max(1));
            let mut shares: Vec<Vec<PolledWs>> = (0..threads).map(|_| Vec::new()).collect();
            let mut share_hosts: Vec<Vec<usize>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, (ws, host)) in polled.into_iter().zip(&socket_host).enumerate() {
                shares[i % threads].push(ws);
                share_hosts[i % threads].push(*host);
            }
            out_host = share_hosts.concat();
            let handles = shares
                .into_iter()
                .map(|share| {
                    let (counter, stop) = (counter.clone(), stop.clone());
                    tokio::task::spawn_blocking(move || {
                        poll_readers(share, &counter, &stop, events)
                    })
                })
                .collect();
            Readers::Epoll(handles)
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut conn = Conn::connect(addr).await?;
    let tpl = tenant
        .request(
            Method::POST,
            addr,
            "/loyalty/+12015550199/add",
            &tenant.terminal_key,
        )?
        .json_body(&json!({"points": 1, "reason": "bench ws-latency"}))?;
    let mut write_hist = new_histogram()?;
    let mut sends = Vec::with_capacity(events);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    eprintln!("[bench] ws-latency: {events} writes at {rate}/s…");
    let metrics_before = metrics_text(addr).await;
    let cpu0 = CpuSample::take(server);
    let send_result: Result<()> = async {
        for _ in 0..events {
            tick.tick().await;
            let start = Instant::now();
            sends.push(start);
            let (status, body) = conn.send(tpl.build()).await?;
            write_hist.saturating_record(micros(start.elapsed()));
            if !status.is_success() {
                bail!("loyalty add failed: HTTP {status}: {}", snippet(&body));
            }
        }
        Ok(())
    }
    .await;
    let cpu1 = CpuSample::take(server);

    let expected = (events * terminals) as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics_after = metrics_text(addr).await;
    cancel.cancel();
    stop.store(true, Ordering::Relaxed);
    let outs = match readers {
        Readers::Tasks(tasks) => {
            let mut outs = Vec::with_capacity(tasks.len());
            for r in tasks {
                outs.push(r.await.context("WebSocket reader panicked")?);
            }
            outs
        }
        Readers::Epoll(threads) => {
            let mut outs = Vec::new();
            for t in threads {
                outs.extend(t.await.context("WebSocket reader panicked")??);
            }
            outs
        }
    };
    send_result?;

    let mut hist = new_histogram()?;
    let mut per_host = hosts
        .iter()
        .map(|_| new_histogram())
        .collect::<Result<Vec<_>>>()?;
    // Per event: when the first and the last terminal had it.
    let mut first = vec![u64::MAX; sends.len()];
    let mut last_at = vec![0u64; sends.len()];
    let (mut received, mut unexpected, mut out_of_order) = (0u64, 0u64, 0u64);
    let mut ended = 0usize;
    let mut first_end = None;
    let mut other_frames = 0u64;
    let mut first_other = None;
    for (out, host) in outs.into_iter().zip(out_host) {
        let mut last = base;
        for (seq, at) in out.recv {
            if seq <= last {
                out_of_order += 1;
                continue;
            }
            last = seq;
            let idx = usize::try_from(seq - base - 1).unwrap_or(usize::MAX);
            match sends.get(idx) {
                Some(sent) => {
                    received += 1;
                    let us = micros(at.saturating_duration_since(*sent));
                    hist.saturating_record(us);
                    if let Some(h) = per_host.get_mut(host) {
                        h.saturating_record(us);
                    }
                    first[idx] = first[idx].min(us);
                    last_at[idx] = last_at[idx].max(us);
                }
                None => unexpected += 1,
            }
        }
        if let Some(why) = out.ended {
            ended += 1;
            first_end.get_or_insert(why);
        }
        other_frames += out.other_frames;
        if first_other.is_none() {
            first_other = out.first_other;
        }
    }
    let mut first_hist = new_histogram()?;
    let mut last_hist = new_histogram()?;
    for (f, l) in first.iter().zip(&last_at) {
        if *f != u64::MAX {
            first_hist.saturating_record(*f);
            last_hist.saturating_record(*l);
        }
    }
    if ended > 0 {
        problems.push(format!(
            "{ended} sockets ended early; first: {}",
            first_end.unwrap_or_default()
        ));
    }
    if other_frames > 0 {
        problems.push(format!(
            "{other_frames} frames without a seq; first: {}",
            first_other.unwrap_or_default()
        ));
    }
    if out_of_order > 0 {
        problems.push(format!("{out_of_order} frames duplicated or out of order"));
    }
    if unexpected > 0 {
        problems.push(format!(
            "{unexpected} frames with a seq that was not written"
        ));
    }
    if received < expected {
        problems.push(format!(
            "{} of {expected} expected frames never arrived",
            expected - received
        ));
    }
    Ok(LatencyResult {
        terminals,
        events,
        expected,
        received,
        unexpected,
        out_of_order,
        hist,
        write_hist,
        first_hist,
        last_hist,
        per_host,
        problems,
        cpu: cpu0.until(&cpu1),
        metrics_before,
        metrics_after,
    })
}

pub struct MemoryResult {
    pub sockets: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_after_close_kib: u64,
    pub gauge: Option<f64>,
    pub threads_after: Option<u64>,
}

impl MemoryResult {
    pub fn kib_per_conn(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.sockets as f64
    }
}

/// The server's `/metrics` text, if it exposes it.
pub async fn metrics_text(addr: SocketAddr) -> Option<String> {
    let mut conn = Conn::connect(addr).await.ok()?;
    let tpl = crate::http::Template::new(Method::GET, addr, "/metrics").ok()?;
    let (status, body) = conn.send(tpl.build()).await.ok()?;
    status
        .is_success()
        .then(|| String::from_utf8_lossy(&body).into_owned())
}

/// `posbridge_websocket_connections` from /metrics, if the server exposes it.
async fn ws_gauge(addr: SocketAddr) -> Option<f64> {
    metrics_text(addr)
        .await?
        .lines()
        .filter(|l| l.starts_with("posbridge_websocket_connections"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Cumulative buckets `(le seconds, count)` of the server's fan-out histogram.
fn fanout_buckets(text: &str) -> Vec<(f64, u64)> {
    const PREFIX: &str = "posbridge_event_fanout_seconds_bucket{le=\"";
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(PREFIX)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The server's own fan-out figure between two `/metrics` snapshots: the bucket bound
/// (seconds) under which quantile `q` of the shard runs fell.
pub fn fanout_quantile(before: &str, after: &str, q: f64) -> Option<f64> {
    let before = fanout_buckets(before);
    let after = fanout_buckets(after);
    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
            (le, n.saturating_sub(was))
        })
        .collect();
    let total = diff.last()?.1;
    if total == 0 {
        return None;
    }
    let wanted = (total as f64 * q).ceil() as u64;
    diff.iter().find(|(_, n)| *n >= wanted).map(|(le, _)| *le)
}

pub async fn memory(server: &Server, tenant: &Tenant, n: usize) -> Result<MemoryResult> {
    let addr = server.addr;
    let cancel = CancellationToken::new();
    let counter = Arc::new(AtomicU64::new(0));
    // One socket first, kept open and excluded: one-off costs (per-tenant channel, the
    // first upgrade's code paths and buffers) are not per-connection costs.
    let (warm, _) = connect_terminal(addr, tenant).await?;
    let warm = tokio::spawn(reader(warm, cancel.clone(), counter.clone(), 0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = server.rss_kib()?;

    eprintln!("[bench] ws-memory: opening {n} idle sockets…");
    let sockets = connect_many(addr, tenant, n).await?;
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(ws, _)| tokio::spawn(reader(ws, cancel.clone(), counter.clone(), 0)))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_kib = server.rss_kib()?;
    let threads_after = server.threads().ok();
    let gauge = ws_gauge(addr).await;

    cancel.cancel();
    let mut ended = 0usize;
    let mut first_end = None;
    for r in readers {
        let out = r.await.context("WebSocket reader panicked")?;
        if let Some(why) = out.ended {
            ended += 1;
            first_end.get_or_insert(why);
        }
    }
    let _ = warm.await;
    if ended > 0 {
        bail!(
            "{ended} of {n} idle sockets were closed by the server during the measurement; first: {}",
            first_end.unwrap_or_default()
        );
    }
    // Dropping the sockets (inside the readers) closed them; give the server a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_close_kib = server.rss_kib()?;
    Ok(MemoryResult {
        sockets: n,
        rss_before_kib,
        rss_after_kib,
        rss_after_close_kib,
        gauge,
        threads_after,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{fanout_quantile, parse_seq, poll_readers};
    use crate::rawws::{accept_upgrade, RawWs};

    /// The epoll reader sees what the server sent: an event, a frame without a seq, a
    /// binary frame, then the close that ends the socket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_epoll_reader_records_events_and_the_close() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut sock, _) = accept_upgrade(listener).await?;
            sock.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                .await?;
            let mut out = vec![0x81, 9];
            out.extend_from_slice(br#"{"seq":7}"#);
            out.extend_from_slice(&[0x81, 2, b'{', b'}', 0x82, 1, 0, 0x88, 2, 0x0f, 0xa0]);
            sock.write_all(&out).await?;
            let mut rest = Vec::new();
            let _ = sock.read_to_end(&mut rest).await;
            Ok::<_, anyhow::Error>(())
        });
        let ws = RawWs::connect(addr, "/ws/pos/t", &[])
            .await?
            .into_polled()?;
        let counter = AtomicU64::new(0);
        // Never set: the reader returns because its only socket ended with the close.
        let stop = AtomicBool::new(false);
        let outs = tokio::task::spawn_blocking(move || poll_readers(vec![ws], &counter, &stop, 4))
            .await??;
        server.abort();
        let out = &outs[0];
        assert_eq!(out.recv.iter().map(|r| r.0).collect::<Vec<_>>(), [7]);
        assert_eq!(out.other_frames, 2);
        assert_eq!(
            out.ended.as_deref(),
            Some("server closed the socket: code Some(4000) ")
        );
        Ok(())
    }

    #[test]
    fn fanout_quantile_reads_the_bucket_difference() {
        let bucket = |le: &str, n: u64| {
            format!("posbridge_event_fanout_seconds_bucket{{le=\"{le}\"}} {n}\n")
        };
        let before = [bucket("0.005", 10), bucket("0.01", 10), bucket("+Inf", 10)].concat();
        let after = [
            bucket("0.005", 100),
            bucket("0.01", 109),
            bucket("+Inf", 110),
        ]
        .concat();
        // 100 new runs: 90 under 5 ms, 99 under 10 ms, one slower.
        assert_eq!(fanout_quantile(&before, &after, 0.5), Some(0.005));
        assert_eq!(fanout_quantile(&before, &after, 0.99), Some(0.01));
        assert_eq!(fanout_quantile(&before, &after, 1.0), Some(f64::INFINITY));
        assert_eq!(fanout_quantile(&after, &after, 0.5), None);
    }

    #[test]
    fn seq_is_parsed_without_json() {
        assert_eq!(parse_seq(br#"{"seq":42,"type":"new_order"}"#), Some(42));
        assert_eq!(parse_seq(br#"{"type":"x", "seq": 7}"#), Some(7));
        assert_eq!(parse_seq(br#"{"type":"reset","last_seq":9}"#), None);
        assert_eq!(parse_seq(br#"{"type":"hello"}"#), None);
        assert_eq!(parse_seq(br#"{"seq":"x"}"#), None);
    }
}
