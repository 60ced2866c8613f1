//! Connected terminals: the WebSocket event stream (`/ws/pos/{tenant}`), the registry behind
//! `pos-status`, and the tenant health check.
//!
//! A session subscribes to the tenant's live events *before* reading the log, replays what
//! the terminal missed (`?since=N`), then forwards live events, filtering by seq: anything
//! at or below the last sent seq is a duplicate, anything beyond the next one is a gap that
//! is filled from the log. The terminal therefore sees every event once, in order.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, Role, TerminalCaller, WS_PROTOCOL};
use crate::error::ApiResult;
use crate::events::{self, Event};
use crate::locks::lock;
use crate::state::AppState;
use crate::store::{now_micros, rfc3339, StoreError};

/// Close code: the server is shutting down (standard "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the terminal fell too far behind; reconnect with `?since=<last seq>`.
pub const CLOSE_SLOW_CONSUMER: u16 = 4000;
/// Close code: the terminal did not answer a ping in time.
pub const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4001;
/// Close code: the key this socket authenticated with was revoked.
pub const CLOSE_KEY_REVOKED: u16 = 4003;

/// Events read from the log per query while replaying.
const REPLAY_BATCH: i64 = 500;

/// WebSocket tuning.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Interval between server pings; a socket that has not answered the previous ping when
    /// the next is due is closed. 25 s stays under common 30–60 s proxy idle timeouts.
    pub ping_interval: Duration,
    /// How long one frame may take to be written before the reader counts as stalled.
    pub send_timeout: Duration,
    /// Read buffer per socket. Terminals send almost nothing (pongs), so a small buffer
    /// keeps idle connections cheap; larger frames still arrive, in several reads. Small
    /// matters for fan-out too: the WebSocket layer zero-fills the whole buffer every time
    /// the session polls for input, which it does after every event sent (4 KiB per socket
    /// per event was ~4% of the server's CPU delivering to 1,000 sockets).
    pub read_buffer: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            send_timeout: Duration::from_secs(10),
            read_buffer: 512,
        }
    }
}

/// Registry of this host's open terminal sockets. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Terminals {
    inner: Arc<Registry>,
}

#[derive(Default, Debug)]
struct Registry {
    sessions: Mutex<HashMap<u64, SessionEntry>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct SessionEntry {
    tenant_id: String,
    key_id: String,
    label: String,
    role: Role,
    connected_at: i64,
    remote_addr: Option<SocketAddr>,
    last_seq: Arc<AtomicI64>,
    revoked: CancellationToken,
}

/// A connected terminal, as `pos-status` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TerminalStatus {
    /// The key it connected with.
    pub key_id: String,
    /// The key's label.
    pub label: String,
    /// The key's role.
    pub role: Role,
    /// When the socket opened.
    pub connected_at: String,
    /// Last event seq sent to it.
    pub last_seq: i64,
    /// Peer address.
    pub remote_addr: Option<String>,
}

impl Terminals {
    fn register(
        &self,
        caller: &Caller,
        remote_addr: Option<SocketAddr>,
    ) -> (u64, Arc<AtomicI64>, CancellationToken) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let last_seq = Arc::new(AtomicI64::new(0));
        let revoked = CancellationToken::new();
        lock(&self.inner.sessions).insert(
            id,
            SessionEntry {
                tenant_id: caller.scope.tenant_id().to_owned(),
                key_id: caller.key_id.clone(),
                label: caller.label.clone(),
                role: caller.role,
                connected_at: now_micros(),
                remote_addr,
                last_seq: last_seq.clone(),
                revoked: revoked.clone(),
            },
        );
        metrics::gauge!("posbridge_websocket_connections").increment(1.0);
        (id, last_seq, revoked)
    }

    fn unregister(&self, id: u64) {
        if lock(&self.inner.sessions).remove(&id).is_some() {
            metrics::gauge!("posbridge_websocket_connections").decrement(1.0);
        }
    }

    /// Closes every socket opened with the key `key_id` (it was revoked).
    pub fn close_key(&self, key_id: &str) {
        for entry in lock(&self.inner.sessions).values() {
            if entry.key_id == key_id {
                entry.revoked.cancel();
            }
        }
    }

    /// Terminals of the tenant connected to this host, oldest connection first.
    pub fn of_tenant(&self, tenant_id: &str) -> Vec<TerminalStatus> {
        let sessions = lock(&self.inner.sessions);
        let mut entries: Vec<&SessionEntry> = sessions
            .values()
            .filter(|e| e.tenant_id == tenant_id)
            .collect();
        entries.sort_by_key(|e| e.connected_at);
        entries
            .into_iter()
            .map(|e| TerminalStatus {
                key_id: e.key_id.clone(),
                label: e.label.clone(),
                role: e.role,
                connected_at: rfc3339(e.connected_at),
                last_seq: e.last_seq.load(Ordering::Relaxed),
                remote_addr: e.remote_addr.map(|a| a.to_string()),
            })
            .collect()
    }

    /// Number of open sockets on this host.
    pub fn len(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Routes under `/api/{tenant}`.
pub fn tenant_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/pos-status", get(pos_status))
}

/// The stream route, `/ws/pos/{tenant}`.
pub fn stream_routes() -> Router<AppState> {
    Router::new().route("/ws/pos/{tenant}", get(open_stream))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    tenant: String,
    time: String,
}

async fn health(TerminalCaller(caller): TerminalCaller) -> Json<Health> {
    Json(Health {
        status: "ok",
        tenant: caller.scope.slug().to_owned(),
        time: rfc3339(now_micros()),
    })
}

#[derive(Serialize)]
struct PosStatus {
    tenant: String,
    last_seq: i64,
    terminals: Vec<TerminalStatus>,
}

async fn pos_status(
    State(app): State<AppState>,
    TerminalCaller(caller): TerminalCaller,
) -> ApiResult<Json<PosStatus>> {
    let tenant_id = caller.scope.tenant_id();
    Ok(Json(PosStatus {
        tenant: caller.scope.slug().to_owned(),
        last_seq: events::last_seq(&app.store, tenant_id).await?,
        terminals: app.terminals.of_tenant(tenant_id),
    }))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    since: Option<i64>,
}

async fn open_stream(
    State(app): State<AppState>,
    TerminalCaller(caller): TerminalCaller,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let options = app.config.stream.clone();
    upgrade
        .protocols([WS_PROTOCOL])
        .read_buffer_size(options.read_buffer)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let tracker = app.tasks.clone();
            tracker
                .track_future(run_session(app, caller, Some(remote), query.since, socket))
                .await;
        })
}

/// Why a session ended, for the log.
enum End {
    ClientGone,
    Closed(u16, &'static str),
}

async fn run_session(
    app: AppState,
    caller: Caller,
    remote: Option<SocketAddr>,
    since: Option<i64>,
    mut socket: WebSocket,
) {
    let (id, last_seq_gauge, revoked) = app.terminals.register(&caller, remote);
    let tenant = caller.scope.slug().to_owned();
    tracing::info!(%tenant, key_id = %caller.key_id, ?since, "terminal connected");
    let end =
        match stream_events(&app, &caller, since, &mut socket, &last_seq_gauge, &revoked).await {
            Ok(end) => end,
            Err(err) => {
                tracing::error!(%tenant, error = %err, "event stream failed");
                End::Closed(1011, "internal error")
            }
        };
    if let End::Closed(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // Best effort: a peer that stopped reading may never take the close frame.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
    app.terminals.unregister(id);
    tracing::info!(%tenant, key_id = %caller.key_id, "terminal disconnected");
}

async fn stream_events(
    app: &AppState,
    caller: &Caller,
    since: Option<i64>,
    socket: &mut WebSocket,
    last_seq_gauge: &AtomicI64,
    revoked: &CancellationToken,
) -> Result<End, StoreError> {
    let options = &app.config.stream;
    let tenant_id = caller.scope.tenant_id();
    let mut live = app.hub.subscribe(tenant_id);
    let head = events::last_seq(&app.store, tenant_id).await?;
    let hello =
        serde_json::json!({"type": "hello", "tenant": caller.scope.slug(), "last_seq": head});
    if !send(
        socket,
        Message::Text(hello.to_string().into()),
        options.send_timeout,
    )
    .await
    {
        return Ok(End::ClientGone);
    }
    let mut last_sent = head;
    if let Some(since) = since {
        let first = events::first_retained_seq(&app.store, tenant_id).await?;
        let missed_history = since < 0
            || since > head
            || (since < head && first.is_none_or(|first| first > since + 1));
        if missed_history {
            let reset = serde_json::json!({"type": "reset", "last_seq": head});
            if !send(
                socket,
                Message::Text(reset.to_string().into()),
                options.send_timeout,
            )
            .await
            {
                return Ok(End::ClientGone);
            }
        } else {
            last_sent = since;
            if !replay(app, tenant_id, &mut last_sent, head, socket).await? {
                return Ok(End::ClientGone);
            }
        }
    }
    last_seq_gauge.store(last_sent, Ordering::Relaxed);

    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + options.ping_interval,
        options.ping_interval,
    );
    let mut awaiting_pong = false;
    // Built once: a fresh `cancelled()` per loop turn costs a registration per event.
    let shutdown = app.shutdown.cancelled();
    let revoked = revoked.cancelled();
    tokio::pin!(shutdown, revoked);
    loop {
        // Biased, events first: with 1,000 terminals every event wakes 1,000 of these loops,
        // and an unbiased select polls a random share of the other branches each time, each
        // poll locking the shared shutdown token or registering a waker (measured ~8% of
        // the server's fan-out CPU). The other branches are still polled whenever no event
        // is waiting, and a terminal drains its queue faster than events arrive.
        tokio::select! {
            biased;
            received = live.recv() => match received {
                Ok(event) => {
                    if event.seq <= last_sent {
                        continue;
                    }
                    if event.seq > last_sent + 1 {
                        // Published out of commit order (or by another host): fill from the log.
                        if !replay(app, tenant_id, &mut last_sent, event.seq - 1, socket).await? {
                            return Ok(End::ClientGone);
                        }
                    }
                    if !send(socket, Message::Text(event.frame.clone()), options.send_timeout).await {
                        return Ok(End::Closed(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect with since"));
                    }
                    last_sent = event.seq;
                    last_seq_gauge.store(last_sent, Ordering::Relaxed);
                }
                Err(RecvError::Lagged(_)) => {
                    return Ok(End::Closed(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect with since"));
                }
                Err(RecvError::Closed) => return Ok(End::Closed(CLOSE_GOING_AWAY, "server shutting down")),
            },
            _ = &mut shutdown => return Ok(End::Closed(CLOSE_GOING_AWAY, "server shutting down")),
            _ = &mut revoked => return Ok(End::Closed(CLOSE_KEY_REVOKED, "key revoked")),
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(End::ClientGone),
                // Terminals have nothing to say on this channel; pings are answered by the
                // WebSocket layer itself.
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if awaiting_pong {
                    return Ok(End::Closed(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout"));
                }
                if !send(socket, Message::Ping(Default::default()), options.send_timeout).await {
                    return Ok(End::ClientGone);
                }
                awaiting_pong = true;
            }
        }
    }
}

/// Sends every logged event in `(*last_sent, up_to]`, advancing `last_sent`. False if the
/// socket is gone.
async fn replay(
    app: &AppState,
    tenant_id: &str,
    last_sent: &mut i64,
    up_to: i64,
    socket: &mut WebSocket,
) -> Result<bool, StoreError> {
    while *last_sent < up_to {
        let batch: Vec<Arc<Event>> = events::read_after(
            &app.store,
            tenant_id,
            *last_sent,
            REPLAY_BATCH.min(up_to - *last_sent),
        )
        .await?;
        if batch.is_empty() {
            // Pruned underneath us while replaying: nothing more to send from the log.
            break;
        }
        for event in batch {
            if !send(
                socket,
                Message::Text(event.frame.clone()),
                app.config.stream.send_timeout,
            )
            .await
            {
                return Ok(false);
            }
            *last_sent = event.seq;
        }
    }
    Ok(true)
}

/// Sends `message`, giving up after `timeout`. The timer is armed only if the socket cannot
/// take the frame at once: the common send completes on its first poll, and skipping the
/// deadline (a clock read and a timer entry) matters when one event goes to 1,000 sockets.
async fn send(socket: &mut WebSocket, message: impl Into<Message>, timeout: Duration) -> bool {
    let mut sending = std::pin::pin!(socket.send(message.into()));
    let first = std::future::poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => matches!(tokio::time::timeout(timeout, sending).await, Ok(Ok(()))),
    }
}
