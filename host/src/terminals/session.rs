//! One terminal's session on the event stream: the hello, the replay of what it missed, the
//! live events the fan-out hands over, the heartbeat, and the close frame that says why it
//! ended. The ordering guarantees are described in the parent module.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::socket::{text_frame, Dropped, Socket};
use super::upgrade::Upgraded;
use super::{
    CLOSE_GOING_AWAY, CLOSE_HEARTBEAT_TIMEOUT, CLOSE_INVALID_PAYLOAD, CLOSE_KEY_REVOKED,
    CLOSE_POLICY, CLOSE_PROTOCOL_ERROR, CLOSE_SLOW_CONSUMER, CLOSE_TOO_BIG, MAX_INCOMING_MESSAGE,
    READ_BUDGET, REPLAY_BATCH,
};
use crate::auth::Caller;
use crate::events;
use crate::store::StoreError;
use crate::terminals::TerminalsState;

/// Why a session ended, for the log.
#[derive(Debug)]
enum End {
    ClientGone,
    Closed(u16, &'static str),
}

const SLOW_CONSUMER: End = End::Closed(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect with since");

impl From<Dropped> for End {
    fn from(dropped: Dropped) -> Self {
        match dropped {
            Dropped::SlowConsumer | Dropped::Stalled => SLOW_CONSUMER,
            Dropped::Broken => End::ClientGone,
        }
    }
}

impl End {
    /// How a read failure of `tungstenite` ends the session: a terminal that broke the
    /// rules is told why (RFC 6455 §7.4.1 codes); one that vanished is not.
    fn from_read_error(err: tungstenite::Error) -> End {
        use tungstenite::error::ProtocolError;
        match err {
            tungstenite::Error::Capacity(_) => End::Closed(CLOSE_TOO_BIG, "message too big"),
            tungstenite::Error::Utf8 => End::Closed(CLOSE_INVALID_PAYLOAD, "invalid UTF-8"),
            // The stream ended without a close frame: the terminal is gone.
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                End::ClientGone
            }
            tungstenite::Error::Protocol(_) => End::Closed(CLOSE_PROTOCOL_ERROR, "protocol error"),
            _ => End::ClientGone,
        }
    }
}

/// Why a session stops early: the socket ended, or the log could not be read.
enum Halt {
    Ended(End),
    Failed(StoreError),
}

impl From<StoreError> for Halt {
    fn from(err: StoreError) -> Self {
        Halt::Failed(err)
    }
}

impl From<Dropped> for Halt {
    fn from(dropped: Dropped) -> Self {
        Halt::Ended(dropped.into())
    }
}

/// Runs the stream of one upgraded connection until it ends, and says why in the log.
pub(super) async fn run_session(
    app: TerminalsState,
    caller: Caller,
    remote: Option<SocketAddr>,
    since: Option<i64>,
    upgraded: Upgraded,
) {
    let Upgraded { tcp, read_ahead } = upgraded;
    let socket = Arc::new(Socket::new(tcp, app.queue));
    let config = WebSocketConfig::default()
        .read_buffer_size(app.stream.read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_INCOMING_MESSAGE))
        .max_frame_size(Some(MAX_INCOMING_MESSAGE));
    let had_read_ahead = !read_ahead.is_empty();
    let protocol = WebSocketContext::from_partially_read(read_ahead, Role::Server, Some(config));
    let tenant_id = caller.scope.tenant_id();
    let tenant = caller.scope.slug();
    let registration = app
        .terminals
        .register(&caller, remote, socket.clone(), &app);
    tracing::info!(%tenant, key_id = %caller.key_id, ?since, "terminal connected");
    let mut session = Session {
        app: &app,
        tenant_id,
        socket,
        protocol,
        last_sent: 0,
    };
    let end = match session
        .run(tenant, since, had_read_ahead, &registration.stop)
        .await
    {
        Ok(end) | Err(Halt::Ended(end)) => end,
        Err(Halt::Failed(err)) => {
            tracing::error!(%tenant, error = %err, "event stream failed");
            End::Closed(1011, "internal error")
        }
    };
    match end {
        End::Closed(code, reason) => session.close(code, reason).await,
        // Best effort: the reply to the terminal's close frame, if it sent one.
        End::ClientGone => {
            session.socket.start_closing();
            let _ = session.socket.flush(Duration::from_secs(1)).await;
        }
    }
    drop(registration);
    tracing::info!(%tenant, key_id = %caller.key_id, ?end, "terminal disconnected");
}

/// One terminal's stream: its socket and the server's side of the WebSocket protocol.
struct Session<'a> {
    app: &'a TerminalsState,
    tenant_id: &'a str,
    socket: Arc<Socket>,
    protocol: WebSocketContext,
    /// Seq of the last event handed to the socket by this session.
    last_sent: i64,
}

impl Session<'_> {
    async fn run(
        &mut self,
        tenant: &str,
        since: Option<i64>,
        read_ahead: bool,
        stop: &CancellationToken,
    ) -> Result<End, Halt> {
        let store = &self.app.store;
        let head = events::last_seq(store, self.tenant_id).await?;
        self.send_json(&serde_json::json!({"type": "hello", "tenant": tenant, "last_seq": head}));
        self.last_sent = head;
        if let Some(since) = since {
            let first = events::first_retained_seq(store, self.tenant_id).await?;
            let missed_history = since < 0
                || since > head
                || (since < head && first.is_none_or(|first| first > since + 1));
            if missed_history {
                self.send_json(&serde_json::json!({"type": "reset", "last_seq": head}));
            } else {
                self.last_sent = since;
                self.replay(head).await?;
            }
        }

        let options = &self.app.stream;
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + options.ping_interval,
            options.ping_interval,
        );
        let mut awaiting_pong = false;
        let limiter = options.inbound_limiter();
        // Frames that came with the handshake will not make the socket readable, nor will
        // frames left in the protocol's buffer when a turn's read budget ran out.
        let mut backlog = read_ahead;
        loop {
            // The first turn delivers the hello, the replay and the events held meanwhile,
            // and puts the socket live; later turns run when the fan-out needs the session.
            self.attend().await?;
            tokio::select! {
                _ = self.socket.woken() => {}
                ready = self.socket.readable(), if !backlog => {
                    if ready.is_err() {
                        return Ok(End::ClientGone);
                    }
                    backlog = self.read_incoming(&mut awaiting_pong, &limiter)?;
                }
                // Lets other tasks run between turns of a terminal that keeps sending.
                _ = tokio::task::yield_now(), if backlog => {
                    backlog = self.read_incoming(&mut awaiting_pong, &limiter)?;
                }
                _ = ping.tick() => {
                    if awaiting_pong {
                        return Ok(End::Closed(CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout"));
                    }
                    let mut wire = self.socket.wire();
                    if self.protocol.write(&mut wire, Message::Ping(Default::default())).is_err() {
                        return Ok(End::ClientGone);
                    }
                    awaiting_pong = true;
                }
                _ = stop.cancelled() => {
                    return Ok(if self.app.shutdown.is_cancelled() {
                        End::Closed(CLOSE_GOING_AWAY, "server shutting down")
                    } else {
                        End::Closed(CLOSE_KEY_REVOKED, "key revoked or tenant suspended")
                    });
                }
            }
        }
    }

    /// Does what the fan-out left to the session: ends a dropped socket, delivers held
    /// events, writes queued frames.
    async fn attend(&mut self) -> Result<(), Halt> {
        let attention = self.socket.attention();
        if let Some(dropped) = attention.dropped {
            return Err(dropped.into());
        }
        if attention.catch_up {
            while let Some((held, lagged)) = self.socket.take_held(&mut self.last_sent) {
                if lagged {
                    self.replay(i64::MAX).await?;
                }
                for event in held {
                    if event.seq <= self.last_sent {
                        continue;
                    }
                    if event.seq > self.last_sent + 1 {
                        self.replay(event.seq - 1).await?;
                    }
                    if event.for_terminals {
                        self.socket.enqueue(text_frame(event.frame.as_bytes()));
                    }
                    self.last_sent = event.seq;
                }
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// Queues every logged event in `(last_sent, up_to]` (or to the log's end), flushing
    /// after each batch read.
    async fn replay(&mut self, up_to: i64) -> Result<(), Halt> {
        while self.last_sent < up_to {
            let batch = events::read_after(
                &self.app.store,
                self.tenant_id,
                self.last_sent,
                REPLAY_BATCH.min(up_to - self.last_sent),
            )
            .await?;
            let Some(last) = batch.last() else {
                // Nothing more (or pruned underneath us): the log has no more to give.
                break;
            };
            self.last_sent = last.seq;
            for event in batch.iter().filter(|e| e.for_terminals) {
                self.socket.enqueue(text_frame(event.frame.as_bytes()));
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// Handles what the terminal sent, up to [`READ_BUDGET`] messages: pongs end the
    /// heartbeat wait, pings are answered (by the protocol layer; see `socket.rs` for how
    /// the replies are bounded), a close or a broken stream ends the session, and so do
    /// too many frames or one too big. Returns whether more may be waiting.
    fn read_incoming(
        &mut self,
        awaiting_pong: &mut bool,
        limiter: &DefaultDirectRateLimiter,
    ) -> Result<bool, Halt> {
        let mut wire = self.socket.wire();
        for _ in 0..READ_BUDGET {
            let message = match self.protocol.read(&mut wire) {
                Ok(message) => message,
                Err(tungstenite::Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(false);
                }
                Err(err) => return Err(Halt::Ended(End::from_read_error(err))),
            };
            if let Message::Close(_) = message {
                // Queues the protocol layer's reply; the session's end flushes it.
                let _ = self.protocol.flush(&mut wire);
                return Err(Halt::Ended(End::ClientGone));
            }
            if limiter.check().is_err() {
                metrics::counter!("posbridge_websocket_refused_frames_total").increment(1);
                return Err(Halt::Ended(End::Closed(CLOSE_POLICY, "too many frames")));
            }
            if let Message::Pong(_) = message {
                *awaiting_pong = false;
            }
            // Anything else: terminals have nothing to say on this channel.
        }
        Ok(true)
    }

    fn send_json(&self, value: &serde_json::Value) {
        self.socket
            .enqueue(text_frame(value.to_string().as_bytes()));
    }

    async fn flush(&self) -> Result<(), Halt> {
        Ok(self.socket.flush(self.app.stream.send_timeout).await?)
    }

    /// Sends the close frame behind whatever is queued: a terminal that keeps reading gets
    /// everything it was sent, then learns why it was closed.
    async fn close(&mut self, code: u16, reason: &'static str) {
        self.socket.start_closing();
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        if self
            .protocol
            .close(&mut self.socket.wire(), Some(frame))
            .is_ok()
        {
            let _ = self.socket.flush(self.app.stream.send_timeout).await;
        }
    }
}
