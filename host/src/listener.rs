//! The accept loop: HTTP/1.1 (and HTTP/2) connections with timeouts, a cap on open
//! connections with a small reserve for operators, and graceful shutdown.
//!
//! `axum::serve` keeps every connection as long as the client likes: a client that never
//! finishes its headers, never sends the body it announced, or just holds a connection
//! open, keeps a task and a file descriptor forever, and enough of them lock every till
//! out. This loop bounds each phase of a connection's life:
//!
//! * **header read** ([`ConnectionOptions::header_read_timeout`]): from the first byte of
//!   a request (or from accepting the connection) until its head is complete;
//! * **body** ([`ConnectionOptions::body_timeout`]): from the head until the whole body
//!   has arrived, however it trickles in;
//! * **idle** ([`ConnectionOptions::idle_timeout`]): between a response and the first
//!   byte of the next request on a keep-alive connection.
//!
//! hyper's own `header_read_timeout` starts when it begins waiting for a head, idle time
//! included, so it cannot tell a slow client from an idle keep-alive one; the timers live
//! in [`TimedIo`], which sees every byte, and the body deadline in [`DeadlineBody`]
//! (`listener/body_deadline.rs`).
//!
//! With TLS on (`listener/tls.rs`), the handshake comes first, bounded by the header-read
//! timeout and counted under the connection cap like the rest of the connection's life,
//! so a client that never finishes it cannot hold a slot for longer than one that never
//! finishes its head.
//!
//! Upgraded WebSockets leave this accounting: once the handshake is answered the stream
//! belongs to the session (see `terminals/upgrade.rs`), which has its own ping deadline,
//! and no longer counts against the connection cap.
//!
//! A module of its own, below `server` (which runs it) and `config` (which gathers its
//! options): the terminals' stream reads the connection types it hands over, and neither
//! needs the `serve` lifecycle for that.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

mod body_deadline;
mod conn_stream;
mod tls;

pub(crate) use body_deadline::DeadlineBody;
pub(crate) use conn_stream::ConnStream;
pub(crate) use tls::{Tls, TlsError, TlsOptions};

use crate::error::ApiError;

/// Connection knobs (`--header-read-timeout-ms`, `--body-timeout-ms`, `--idle-timeout-ms`,
/// `--max-connections`, `--reserved-connections`; see [`crate::options`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ConnectionOptions {
    /// Milliseconds a client has to send a complete request head, from its first byte (or
    /// from the connection being accepted). Default 10 s: a head is a few hundred bytes,
    /// which even a till on a poor mobile link sends in well under a second; anything
    /// slower is a client that stalled or a slowloris. At least 1.
    #[arg(
        long = "header-read-timeout-ms",
        env = "POSBRIDGE_HEADER_READ_TIMEOUT_MS",
        default_value = "10000",
        value_parser = crate::options::millis(1)
    )]
    pub header_read_timeout: Duration,
    /// Milliseconds a client has to send the whole request body after its head (then
    /// 408 `request_timeout`). Default 30 s: real bodies are a few KiB, and even the
    /// largest accepted (1 MiB, see `extract::MAX_BODY_BYTES`) arrives in that time at
    /// 300 kbit/s. At least 1.
    #[arg(
        long = "body-timeout-ms",
        env = "POSBRIDGE_BODY_TIMEOUT_MS",
        default_value = "30000",
        value_parser = crate::options::millis(1)
    )]
    pub body_timeout: Duration,
    /// Milliseconds a keep-alive connection may sit idle between requests. Default 60 s:
    /// longer than a till's usual gap between requests at a quiet counter, so busy tills
    /// keep their warm connection, and shorter than common client pools' idle limit
    /// (90 s), so the host, not the client, decides when a silent connection goes away.
    /// At least 1.
    #[arg(
        long = "idle-timeout-ms",
        env = "POSBRIDGE_IDLE_TIMEOUT_MS",
        default_value = "60000",
        value_parser = crate::options::millis(1)
    )]
    pub idle_timeout: Duration,
    /// Open HTTP connections served normally (upgraded WebSockets not counted). Default
    /// 4096: a thousand tills with keep-alive connections plus back-office clients, far
    /// below the file descriptor limit the host raises itself to. Beyond it, see
    /// `--reserved-connections`. At least 1.
    #[arg(
        long = "max-connections",
        env = "POSBRIDGE_MAX_CONNECTIONS",
        default_value = "4096",
        value_parser = crate::options::at_least(1usize)
    )]
    pub max_connections: usize,
    /// Connections beyond `--max-connections` that may reach only /healthz, /readyz,
    /// /metrics and /admin (everything else answers 503 `too_many_connections`), so
    /// probes and the operator get through while tills misbehave; beyond both, a new
    /// connection is answered 503 `too_many_connections` and closed at once. Default 32:
    /// a few probes and operator sessions. 0 turns the reserve off.
    #[arg(
        long = "reserved-connections",
        env = "POSBRIDGE_RESERVED_CONNECTIONS",
        default_value = "32"
    )]
    pub reserved_connections: usize,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// Refusals being written at once (each lingers up to [`REFUSAL_LINGER`]); beyond this a
/// connection over the limit is closed without an answer, so a flood of connections
/// cannot turn refusing into its own resource drain.
const MAX_LINGERING_REFUSALS: usize = 64;

/// How long a refused connection is kept to deliver its 503 and read what the client sent
/// (closing with unread input sends a reset, which can discard the answer on the client).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The route prefixes the reserve serves.
fn reserved_route(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/admin") || path.starts_with("/admin/")
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`, then
/// stops accepting and waits for in-flight requests to finish (idle keep-alive
/// connections close at once).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    options: ConnectionOptions,
    tls: Option<Tls>,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our own timers apply (see TimedIo); hyper's would also count idle time as header time.
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    let connections = TaskTracker::new();
    let active = Arc::new(AtomicUsize::new(0));
    let lingering = Arc::new(AtomicUsize::new(0));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors or memory: the condition passes as
                    // connections close; back off instead of spinning on accept.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses and event frames are small and latency-bound; without TCP_NODELAY a
        // frame written while the previous one is unacknowledged waits for a delayed ACK.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let open = active.load(Ordering::Relaxed);
        if open >= options.max_connections + options.reserved_connections {
            metrics::counter!("posbridge_connections_refused_total").increment(1);
            refuse(tcp, &lingering);
            continue;
        }
        let reserve_only = open >= options.max_connections;
        let slot = Slot::take(&active);
        let conn = Connection {
            router: router.clone(),
            peer,
            options,
            reserve_only,
            tls: tls.clone(),
        };
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            conn.run(tcp, &builder, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One counted connection; the count drops when the connection task ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        let open = active.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("posbridge_http_connections").set(open as f64);
        Slot(active.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("posbridge_http_connections").set(open as f64);
    }
}

/// The raw 503 written to a connection beyond the cap and the reserve.
fn refusal_bytes() -> Vec<u8> {
    let body = r#"{"error":{"code":"too_many_connections","message":"the server has too many open connections; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refuse(tcp: TcpStream, lingering: &Arc<AtomicUsize>) {
    let bytes = refusal_bytes();
    // A fresh socket's send buffer is empty: the answer fits without waiting.
    let _ = tcp.try_write(&bytes);
    if lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING_REFUSALS {
        lingering.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let lingering = lingering.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tcp;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            tcp.shutdown().await?;
            let mut sink = [0u8; 1024];
            while tcp.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
        lingering.fetch_sub(1, Ordering::Relaxed);
    });
}

/// What a connection task needs.
struct Connection {
    router: Router,
    peer: SocketAddr,
    options: ConnectionOptions,
    reserve_only: bool,
    tls: Option<Tls>,
}

impl Connection {
    /// The connection's stream: the TCP stream itself, or TLS over it once the handshake
    /// completes within the header-read timeout (`None` if it fails or runs out).
    async fn handshake(&self, tcp: TcpStream) -> Option<ConnStream> {
        match &self.tls {
            None => Some(ConnStream::Plain(tcp)),
            Some(tls) => {
                tls.handshake(tcp, self.options.header_read_timeout, self.peer)
                    .await
            }
        }
    }

    async fn run(
        self,
        tcp: TcpStream,
        builder: &auto::Builder<TokioExecutor>,
        shutdown: CancellationToken,
    ) {
        let Some(stream) = self.handshake(tcp).await else {
            return;
        };
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(TimedIo::new(stream, activity.clone(), &self.options));
        let service = ConnService {
            router: self.router,
            peer: self.peer,
            activity,
            body_timeout: self.options.body_timeout,
            reserve_only: self.reserve_only,
        };
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(peer = %self.peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                _ = shutdown.cancelled(), if !draining => {
                    // Finish the request in flight, then close; an idle one closes now.
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// What the service tells the connection's [`TimedIo`]: whether a request is being
/// served, and how many have been answered (each answer starts a new idle phase).
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    answered: AtomicU64,
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // `answered` first: TimedIo must never see "nothing in flight" with the old phase,
        // whose header clock (started by this request's first byte) has long run out.
        self.0.answered.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's stream under hyper, enforcing the header-read and idle deadlines: while no
/// request is in flight, a read that would wait past the deadline fails with `TimedOut`,
/// which makes hyper close the connection.
pub(crate) struct TimedIo {
    tcp: ConnStream,
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// `activity.answered` when the current phase began.
    phase: u64,
    /// When the current phase (accept, or the last answer) began.
    phase_start: Instant,
    /// Whether the phase is the connection's first (no idle grace: a client that
    /// connects and sends nothing gets the header timeout).
    first_phase: bool,
    /// When the phase's first byte arrived.
    first_byte: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
}

impl TimedIo {
    fn new(tcp: ConnStream, activity: Arc<Activity>, options: &ConnectionOptions) -> Self {
        let now = Instant::now();
        TimedIo {
            tcp,
            activity,
            header_timeout: options.header_read_timeout,
            idle_timeout: options.idle_timeout,
            phase: 0,
            phase_start: now,
            first_phase: true,
            first_byte: None,
            sleep: Box::pin(tokio::time::sleep_until(now)),
            armed: now,
        }
    }

    /// The stream, for the WebSocket session after an upgrade.
    pub(crate) fn into_inner(self) -> ConnStream {
        self.tcp
    }

    /// Starts a new phase if a request was answered since the last look; true when no
    /// request is in flight (the deadlines apply).
    fn waiting(&mut self) -> bool {
        if self.activity.in_flight.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let answered = self.activity.answered.load(Ordering::SeqCst);
        if answered != self.phase {
            self.phase = answered;
            self.phase_start = Instant::now();
            self.first_phase = false;
            self.first_byte = None;
        }
        true
    }

    /// While no request is in flight: arms the deadline timer (so the task wakes when it
    /// passes, even if the client never sends another byte) and says whether it passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        if !self.waiting() {
            return None;
        }
        let (deadline, kind) = self.deadline();
        if deadline != self.armed {
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
        self.sleep.as_mut().poll(cx).is_ready().then_some(kind)
    }

    fn deadline(&self) -> (Instant, &'static str) {
        match self.first_byte {
            Some(first) => (first + self.header_timeout, "header"),
            None if self.first_phase => (self.phase_start + self.header_timeout, "header"),
            None => (self.phase_start + self.idle_timeout, "idle"),
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.waiting() && this.first_byte.is_none() {
                    this.first_byte = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some(kind) = this.expired(cx) else {
                    return Poll::Pending;
                };
                metrics::counter!("posbridge_http_timeouts_total", "phase" => kind).increment(1);
                if this.first_byte.is_some() {
                    // Part of a head arrived: say why before closing (best effort; nothing
                    // else is being written on a connection waiting for a head).
                    this.tcp.try_write_plain(REQUEST_HEAD_TIMEOUT);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{kind} timeout"),
                )))
            }
        }
    }
}

/// The 408 written when a request head does not complete in time.
const REQUEST_HEAD_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 89\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"request_timeout\",\"message\":\"the request head did not arrive in time\"}}\n";

impl AsyncWrite for TimedIo {
    // Writing a response is the moment a request stops being in flight; hyper may not
    // read again until the client sends something, so the idle timer is armed here too.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let _ = this.expired(cx);
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let _ = this.expired(cx);
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The per-connection service: connection info, the reserve rule, the body deadline.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_timeout: Duration,
    reserve_only: bool,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, request: Request<Incoming>) -> BoxFuture {
        let in_flight = InFlight::new(self.activity.clone());
        if self.reserve_only && !reserved_route(request.uri().path()) {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                "the server has too many open connections; this one may only reach health, readiness, metrics and /admin",
            )
            .with_retry_after(1)
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Box::pin(async move {
                drop(in_flight);
                Ok(response)
            });
        }
        let expired = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|body| {
            if body.is_end_stream() {
                DeadlineBody::unlimited(body)
            } else {
                DeadlineBody::new(body, self.body_timeout, expired.clone())
            }
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            drop(in_flight);
            if expired.load(Ordering::SeqCst) {
                metrics::counter!("posbridge_http_timeouts_total", "phase" => "body").increment(1);
                let mut response = ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(response);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_serves_only_probes_metrics_and_admin() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/admin",
            "/admin/tenants",
        ] {
            assert!(reserved_route(path), "{path}");
        }
        for path in ["/api/t/health", "/administrator", "/ws/pos/t", "/healthz/x"] {
            assert!(!reserved_route(path), "{path}");
        }
    }

    #[test]
    fn canned_answers_are_well_formed_http() {
        let refusal = String::from_utf8(refusal_bytes()).unwrap();
        let (head, body) = refusal.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
        let timeout = std::str::from_utf8(REQUEST_HEAD_TIMEOUT).unwrap();
        let (head, body) = timeout.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
