//! Connected terminals: the WebSocket event stream (`/ws/pos/{tenant}`), the registry behind
//! `pos-status`, and the tenant health check.
//!
//! A session attaches its socket to the tenant's fan-out *before* reading the log (events
//! published meanwhile are held for it), replays what the terminal missed (`?since=N`),
//! delivers the held events, and then lets the fan-out write live events straight to the
//! socket. Events are filtered by seq throughout: anything at or below the last sent seq
//! is a duplicate, anything beyond the next one is a gap that the session fills from the
//! log. The terminal therefore sees every event once, in order.
//!
//! Wire-level work lives in submodules: the handshake (`upgrade`), one session's loop of
//! replay, live delivery and heartbeat (`session`), one socket's shared write queue
//! (`socket`) and the per-tenant delivery task (`fanout`).

mod cluster_view;
mod fanout;
mod raw_stream;
mod revocations;
mod session;
mod socket;
mod upgrade;

pub(crate) use self::cluster_view::admin_routes as cluster_admin_routes;
pub(crate) use self::revocations::spawn_watcher as spawn_revocation_watcher;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, Query, State};
use axum::response::Response;
use axum::Json;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::fanout::Fanout;
use self::session::run_session;
use self::socket::Socket;
use self::upgrade::StreamUpgrade;

use crate::auth::{AuthState, Caller, KeyCache, Role as KeyRole, TerminalCaller};
use crate::events::EventHub;
use crate::locks::lock;
use crate::openapi::StreamFrame;
use crate::store::{now_micros, rfc3339, Store};

/// The handles the terminal routes, sessions and the revocation watcher use; the
/// composition root builds it from its own state (`FromRef`), so this module does not name
/// that state.
#[derive(Debug, Clone)]
pub(crate) struct TerminalsState {
    /// The database (the log replayed to terminals, the cluster's view).
    pub store: Store,
    /// Live fan-out of committed events.
    pub hub: EventHub,
    /// Recently validated keys, forgotten when a revocation is announced.
    pub keys: KeyCache,
    /// Open terminal sockets.
    pub terminals: Terminals,
    /// Outgoing frames one socket may queue (`--ws-queue`).
    pub queue: usize,
    /// WebSocket tuning.
    pub stream: StreamOptions,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Sessions, which shutdown waits for.
    pub tasks: TaskTracker,
}

/// Close code: the server is shutting down (standard "going away").
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the terminal fell too far behind; reconnect with `?since=<last seq>`.
pub(crate) const CLOSE_SLOW_CONSUMER: u16 = 4000;
/// Close code: the terminal did not answer a ping in time.
pub(crate) const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4001;
/// Close code: the key this socket authenticated with was revoked.
pub(crate) const CLOSE_KEY_REVOKED: u16 = 4003;
/// Close code: the terminal broke the WebSocket protocol (standard "protocol error").
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: the terminal sent text that is not UTF-8 (standard "invalid payload").
pub(crate) const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code: the terminal sent frames faster than `--ws-inbound-rate` allows (standard
/// "policy violation").
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// Close code: the terminal sent a message over [`MAX_INCOMING_MESSAGE`] (standard
/// "message too big").
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// Events read from the log per query while replaying.
const REPLAY_BATCH: i64 = 500;

/// Largest message (and frame) a terminal may send, 64 KiB. Terminals only answer pings
/// and close, so anything bigger is a misbehaving client, not a reason to buffer
/// megabytes; it is closed with 1009.
pub(crate) const MAX_INCOMING_MESSAGE: usize = 64 << 10;

/// Messages read from a socket per turn of its session before the session attends to its
/// other work (writing, heartbeats, revocation). Without it a terminal that sends as fast
/// as the server parses would keep its session reading for ever.
const READ_BUDGET: usize = 64;

/// WebSocket tuning (`serve` flags `--ws-*`; see [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StreamOptions {
    /// Milliseconds between server pings; a socket that has not answered the previous
    /// ping when the next is due is closed. Default 25 s: under common 30–60 s proxy idle
    /// timeouts. At least 10.
    #[arg(
        long = "ws-ping-interval-ms",
        env = "POSBRIDGE_WS_PING_INTERVAL_MS",
        default_value = "25000",
        value_parser = crate::options::millis(10)
    )]
    pub ping_interval: Duration,
    /// Milliseconds a terminal may take none of the frames waiting for it before it is
    /// closed as a slow consumer (4000). Default 10 s: a healthy socket drains in
    /// milliseconds, and a stalled one must not hold its queue for long. At least 10.
    #[arg(
        long = "ws-send-timeout-ms",
        env = "POSBRIDGE_WS_SEND_TIMEOUT_MS",
        default_value = "10000",
        value_parser = crate::options::millis(10)
    )]
    pub send_timeout: Duration,
    /// Read buffer per socket, bytes. Default 512: terminals send almost nothing (pongs),
    /// so a small buffer keeps idle connections cheap; larger frames still arrive, in
    /// several reads. At least 64.
    #[arg(
        long = "ws-read-buffer",
        env = "POSBRIDGE_WS_READ_BUFFER",
        default_value = "512",
        value_parser = crate::options::at_least(64usize)
    )]
    pub read_buffer: usize,
    /// Frames per second a terminal may send, sustained; faster is closed with 1008.
    /// Default 10: a terminal sends a pong per server ping and perhaps pings of its own
    /// every few seconds, so 10/s is far above any honest client, and one that sends
    /// faster is closed before it can keep the host busy. At least 1.
    #[arg(
        long = "ws-inbound-rate",
        env = "POSBRIDGE_WS_INBOUND_RATE",
        default_value = "10",
        value_parser = crate::options::at_least(1u32)
    )]
    pub inbound_rate: u32,
    /// Frames a terminal may send at once above `--ws-inbound-rate`. Default 100: room
    /// for a reconnecting client's initial chatter. At least 1.
    #[arg(
        long = "ws-inbound-burst",
        env = "POSBRIDGE_WS_INBOUND_BURST",
        default_value = "100",
        value_parser = crate::options::at_least(1u32)
    )]
    pub inbound_burst: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

impl StreamOptions {
    /// A fresh per-socket limiter of inbound frames.
    fn inbound_limiter(&self) -> DefaultDirectRateLimiter {
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        RateLimiter::direct(
            Quota::per_second(nonzero(self.inbound_rate)).allow_burst(nonzero(self.inbound_burst)),
        )
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
    fanout: Fanout,
    /// Signalled when a socket opens or closes, so the cluster heartbeat publishes it.
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct SessionEntry {
    tenant_id: String,
    key_id: String,
    label: String,
    role: KeyRole,
    connected_at: i64,
    remote_addr: Option<SocketAddr>,
    socket: Arc<Socket>,
    /// Cancelled when the host shuts down or the session's key is revoked.
    stop: CancellationToken,
}

/// A session's place in the registry and the fan-out; see [`Terminals::register`].
struct Registration {
    terminals: Terminals,
    id: u64,
    tenant_id: String,
    socket: Arc<Socket>,
    /// Fires on shutdown and when the session's key is revoked.
    stop: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let inner = &self.terminals.inner;
        inner.fanout.detach(&self.tenant_id, &self.socket);
        if lock(&inner.sessions).remove(&self.id).is_some() {
            metrics::gauge!("posbridge_websocket_connections").decrement(1.0);
            inner.changed.notify_one();
        }
    }
}

/// A connected terminal, as `pos-status` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct TerminalStatus {
    /// The host holding its socket (see [`crate::cluster`]).
    pub host_id: String,
    /// The key it connected with.
    pub key_id: String,
    /// The key's label.
    pub label: String,
    /// The key's role.
    pub role: KeyRole,
    /// When the socket opened.
    pub connected_at: String,
    /// Last event seq sent to it.
    pub last_seq: i64,
    /// Peer address.
    pub remote_addr: Option<String>,
}

impl Terminals {
    /// Registers a session and attaches its socket to the tenant's fan-out, so events
    /// published from now on reach it: register *before* reading the log. The stop token
    /// is a child of `shutdown`, so it fires on shutdown and on revocation of the key.
    /// Dropping the registration (even in a panic) detaches and unregisters.
    fn register(
        &self,
        caller: &Caller,
        remote_addr: Option<SocketAddr>,
        socket: Arc<Socket>,
        app: &TerminalsState,
    ) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let tenant_id = caller.scope.tenant_id().to_owned();
        let stop = app.shutdown.child_token();
        lock(&self.inner.sessions).insert(
            id,
            SessionEntry {
                tenant_id: tenant_id.clone(),
                key_id: caller.key_id.clone(),
                label: caller.label.clone(),
                role: caller.role,
                connected_at: now_micros(),
                remote_addr,
                socket: socket.clone(),
                stop: stop.clone(),
            },
        );
        metrics::gauge!("posbridge_websocket_connections").increment(1.0);
        self.inner.changed.notify_one();
        self.inner
            .fanout
            .attach(&app.hub, &tenant_id, socket.clone());
        Registration {
            terminals: self.clone(),
            id,
            tenant_id,
            socket,
            stop,
        }
    }

    /// Closes every socket opened with the key `key_id` (it was revoked); returns how many
    /// were open and not already closing.
    pub(crate) fn close_key(&self, key_id: &str) -> usize {
        let mut closed = 0;
        for entry in lock(&self.inner.sessions).values() {
            if entry.key_id == key_id && !entry.stop.is_cancelled() {
                entry.stop.cancel();
                closed += 1;
            }
        }
        closed
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
pub(crate) fn tenant_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    TerminalsState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(cluster_view::pos_status))
}

/// The stream route, `/ws/pos/{tenant}`.
pub(crate) fn stream_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    TerminalsState: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(open_stream))
}

/// Answer of `GET /api/{tenant}/health`.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
    /// The key's tenant.
    tenant: String,
    /// The server's clock, RFC 3339.
    time: String,
}

/// Checks a key: which tenant it belongs to and the server's clock.
#[utoipa::path(get, path = "/health", tag = "terminal", responses(
    (status = 200, description = "The key works (any role).", body = Health),
))]
async fn health(TerminalCaller(caller): TerminalCaller) -> Json<Health> {
    Json(Health {
        status: "ok",
        tenant: caller.scope.slug().to_owned(),
        time: rfc3339(now_micros()),
    })
}

/// `?since=` of the event stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Replay every event after this sequence number before the live ones.
    since: Option<i64>,
}

/// Opens the tenant's live event stream (WebSocket, any key of the tenant).
///
/// Send a WebSocket handshake (`Connection: Upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13`). Browsers, which cannot set headers, authenticate with the
/// subprotocols `posbridge.v1, key.<key>`. Frames are JSON text: first a `HelloFrame`
/// (`{"type":"hello","tenant","last_seq"}`), then with `?since=N` every event after N in
/// order, then live events, each an `EventFrame` (`{"seq","type","at","data"}`), with no gap
/// and no duplicate. A jump in `seq` is an event terminals do not receive (walk-in orders),
/// not a loss. If N is older than the retained history a `ResetFrame`
/// (`{"type":"reset","last_seq"}`) comes instead of the replay: reload over REST and carry
/// on from `last_seq`.
///
/// The server pings every 25 s; one missed pong closes the socket. Close codes: 1001 server
/// shutting down (reconnect with `since`); 1002 protocol violation; 1007 text that is not
/// UTF-8; 1008 more frames than the inbound rate allows; 1009 a message over 64 KiB; 4000
/// slow consumer (reconnect with `since`); 4001 missed heartbeat (reconnect with `since`);
/// 4003 key revoked or tenant suspended (stop). Frames already queued are sent before the
/// close frame.
#[utoipa::path(get, path = "/ws/pos/{tenant}", tag = "events", params(StreamQuery), responses(
    (status = 101, description = "Switching Protocols: the socket is open; frames follow (see the description).",
        body = StreamFrame),
    (status = 400, description = "`invalid_handshake`: Sec-WebSocket-Key is missing; `bad_request`: a bad query string."),
    (status = 426, description = "`websocket_required`: not a WebSocket handshake, or not version 13."),
))]
async fn open_stream(
    State(app): State<TerminalsState>,
    TerminalCaller(caller): TerminalCaller,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<StreamQuery>,
    upgrade: StreamUpgrade,
) -> Response {
    upgrade.on_upgrade(move |upgraded| async move {
        let tracker = app.tasks.clone();
        tracker
            .track_future(run_session(
                app,
                caller,
                Some(remote),
                query.since,
                upgraded,
            ))
            .await;
    })
}
