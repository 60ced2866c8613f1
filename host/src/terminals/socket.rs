//! One terminal's WebSocket at the byte level: the upgraded TCP stream, the queue of
//! frames that could not be written at once, and the reading of what the terminal sends.
//!
//! Two parties write to a socket. The tenant's fan-out task writes each live event's
//! frame straight to the stream with a non-blocking write (one system call, no task
//! wake-up per socket), and the socket's session task writes everything else (hello,
//! replays, pings, pong replies, the close). Both go through the socket's outbox, under
//! one lock, so frames never interleave: whoever finds the queue non-empty appends to it,
//! and only the session drains it, waiting for the stream to become writable.
//!
//! WebSocket framing and the terminal's side of the protocol (masking, control frames,
//! the close handshake) stay with `tungstenite`; this module only moves its bytes.
//!
//! Every frame waiting here is bounded: events by the slow-consumer limit, the session's
//! own frames by what it sends (one hello, a replay batch, one ping per interval, the
//! close), and pong replies by coalescing. `tungstenite` hands over a pong for every ping
//! the terminal sends; a terminal that pings without reading would otherwise queue one
//! frame per ping for ever (about 180 MiB/s in a flood). Only the reply to the latest ping
//! is kept, which RFC 6455 §5.5.3 allows.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;

use crate::events::Event;
use crate::locks::lock;

use super::raw_stream::RawStream;

/// A complete server-to-terminal text frame, ready for the wire. Server frames are not
/// masked, so one encoding serves every socket of the tenant.
pub(super) fn text_frame(text: &[u8]) -> Bytes {
    let frame = Frame::message(Bytes::copy_from_slice(text), OpCode::Data(Data::Text), true);
    let mut wire = Vec::with_capacity(frame.len());
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut wire);
    Bytes::from(wire)
}

/// Why a socket is given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dropped {
    /// More frames were waiting than the queue allows.
    SlowConsumer,
    /// Frames were waiting and the terminal took none of them for the stall time: it
    /// stopped reading. Also closed as a slow consumer (4000).
    Stalled,
    /// The stream failed (the terminal is gone).
    Broken,
}

/// What the session must do after a wake-up.
#[derive(Debug, Default)]
pub(super) struct Attention {
    /// The fan-out gave up on the socket.
    pub dropped: Option<Dropped>,
    /// Events are held for the session to deliver (it is not live, or a gap opened).
    pub catch_up: bool,
}

/// The shared state of one socket. See the module docs for who writes when.
#[derive(Debug)]
pub(super) struct Socket {
    tcp: RawStream,
    outbox: Mutex<Outbox>,
    /// Signalled when the session has work: queued frames, held events, a dropped socket.
    wake: Notify,
    /// Frames (or held events) a socket may have waiting before it is a slow consumer.
    limit: usize,
}

#[derive(Debug)]
struct Outbox {
    /// Frames accepted but not yet fully written, oldest first.
    pending: VecDeque<Bytes>,
    /// Bytes of `pending[0]` already written.
    written: usize,
    /// Whether the fan-out writes events itself. False while the session sends the hello
    /// and replays the log, and after a gap: the fan-out then holds events in `held`.
    live: bool,
    held: Vec<Arc<Event>>,
    /// The fan-out missed events (its own queue overflowed): the session re-reads the log.
    lagged: bool,
    /// Seq of the last event in the stream (written or pending).
    last_seq: i64,
    /// Set once the socket is being closed; the fan-out no longer touches it.
    closing: bool,
    dropped: Option<Dropped>,
    /// The reply to the terminal's latest ping, not yet queued: it joins `pending` at the
    /// next frame boundary, and a newer ping's reply replaces it (see the module docs).
    pong: Option<Bytes>,
}

impl Socket {
    /// Wraps an upgraded stream; `limit` bounds the frames or events waiting for it.
    pub(super) fn new(tcp: RawStream, limit: usize) -> Self {
        Socket {
            tcp,
            outbox: Mutex::new(Outbox {
                pending: VecDeque::new(),
                written: 0,
                live: false,
                held: Vec::new(),
                lagged: false,
                last_seq: 0,
                closing: false,
                dropped: None,
                pong: None,
            }),
            wake: Notify::new(),
            limit: limit.max(1),
        }
    }

    /// Seq of the last event in this socket's stream, for `pos-status`.
    pub(super) fn last_seq(&self) -> i64 {
        lock(&self.outbox).last_seq
    }

    /// Called by the fan-out for every event of the tenant, in publication order; `wire`
    /// is the event's encoded frame. Never waits.
    pub(super) fn offer(&self, event: &Arc<Event>, wire: &Bytes) {
        let mut out = lock(&self.outbox);
        if out.closing || out.dropped.is_some() || event.seq <= out.last_seq {
            return;
        }
        if out.live && event.seq == out.last_seq + 1 && !event.for_terminals {
            // Not for terminals (a walk-in order): its seq is passed, nothing is written.
            out.last_seq = event.seq;
            return;
        }
        if !out.live || event.seq > out.last_seq + 1 {
            // Not live yet, or a gap (events published out of commit order): the session
            // delivers it after filling in from the log.
            if out.held.len() >= self.limit {
                out.dropped = Some(Dropped::SlowConsumer);
            } else {
                out.live = false;
                out.held.push(event.clone());
            }
            drop(out);
            self.wake.notify_one();
            return;
        }
        if out.pending.is_empty() {
            match self.tcp.try_write(wire) {
                Ok(n) if n == wire.len() => {
                    out.last_seq = event.seq;
                    return;
                }
                Ok(n) => {
                    out.pending.push_back(wire.clone());
                    out.written = n;
                    out.last_seq = event.seq;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    out.pending.push_back(wire.clone());
                    out.last_seq = event.seq;
                }
                Err(_) => out.dropped = Some(Dropped::Broken),
            }
        } else if out.pending.len() >= self.limit {
            out.dropped = Some(Dropped::SlowConsumer);
        } else {
            out.pending.push_back(wire.clone());
            out.last_seq = event.seq;
        }
        drop(out);
        self.wake.notify_one();
    }

    /// Called by the fan-out when it missed events: the session re-reads them from the log.
    pub(super) fn lagged(&self) {
        let mut out = lock(&self.outbox);
        if out.closing || out.dropped.is_some() {
            return;
        }
        out.live = false;
        out.lagged = true;
        drop(out);
        self.wake.notify_one();
    }

    /// Completes when the session has something to do (or at once if it was signalled
    /// since the last call).
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// What the session has to do now.
    pub(super) fn attention(&self) -> Attention {
        let out = lock(&self.outbox);
        Attention {
            dropped: out.dropped,
            catch_up: !out.live && !out.closing,
        }
    }

    /// Takes the events held for the session and whether the fan-out lagged, first
    /// bringing `last_sent` up to what the fan-out wrote while live. When nothing is held,
    /// the socket goes live at `last_sent` in the same step, so no event can fall between
    /// the session's catch-up and the fan-out.
    pub(super) fn take_held(&self, last_sent: &mut i64) -> Option<(Vec<Arc<Event>>, bool)> {
        let mut out = lock(&self.outbox);
        *last_sent = (*last_sent).max(out.last_seq);
        if out.held.is_empty() && !out.lagged {
            out.live = !out.closing;
            out.last_seq = *last_sent;
            return None;
        }
        let lagged = std::mem::take(&mut out.lagged);
        Some((std::mem::take(&mut out.held), lagged))
    }

    /// Queues a frame behind everything already accepted; [`Socket::flush`] writes it.
    pub(super) fn enqueue(&self, wire: Bytes) {
        if !wire.is_empty() {
            lock(&self.outbox).pending.push_back(wire);
        }
    }

    /// Keeps `pong` as the reply to send, replacing one not yet queued: a terminal that
    /// pings faster than it reads holds one pong here, not one per ping.
    pub(super) fn reply_pong(&self, pong: Bytes) {
        lock(&self.outbox).pong = Some(pong);
    }

    /// Stops the fan-out from writing to this socket (it is being closed).
    pub(super) fn start_closing(&self) {
        lock(&self.outbox).closing = true;
    }

    /// Writes the queued frames, waiting for the stream as needed. Fails if the stream
    /// breaks or takes nothing for `stall` (a reader that stopped reading).
    pub(super) async fn flush(&self, stall: Duration) -> Result<(), Dropped> {
        loop {
            if self.write_pending()? {
                return Ok(());
            }
            match tokio::time::timeout(stall, self.tcp.writable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Dropped::Broken),
                Err(_) => return Err(Dropped::Stalled),
            }
        }
    }

    /// Writes queued frames until done (true) or the stream would block (false).
    fn write_pending(&self) -> Result<bool, Dropped> {
        let mut out = lock(&self.outbox);
        loop {
            let written = out.written;
            if written == 0 {
                // At a frame boundary: the waiting pong may go first.
                if let Some(pong) = out.pong.take() {
                    out.pending.push_front(pong);
                }
            }
            let Some(front) = out.pending.front() else {
                return Ok(true);
            };
            match self.tcp.try_write(&front[written..]) {
                Ok(n) => {
                    if written + n == front.len() {
                        out.pending.pop_front();
                        out.written = 0;
                    } else {
                        out.written = written + n;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(_) => return Err(Dropped::Broken),
            }
        }
    }

    /// Completes when the terminal may have sent something.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    /// The socket as a blocking-free byte stream for `tungstenite`: reads come from the
    /// TCP stream (`WouldBlock` when empty), writes join the queue behind all frames.
    pub(super) fn wire(&self) -> Wire<'_> {
        Wire { socket: self }
    }
}

/// Whether `buf` is exactly one unmasked, final pong frame (as a server writes it).
/// Control frames carry at most 125 bytes, so the length is always in the second byte.
fn is_pong_frame(buf: &[u8]) -> bool {
    matches!(buf, [0x8A, len, payload @ ..] if usize::from(*len) == payload.len())
}

/// See [`Socket::wire`].
#[derive(Debug)]
pub(super) struct Wire<'a> {
    socket: &'a Socket,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.tcp.try_read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `tungstenite` writes whole frames (this writer never refuses bytes); its pong
        // replies are coalesced, everything else queued in order.
        if is_pong_frame(buf) {
            self.socket.reply_pong(Bytes::copy_from_slice(buf));
        } else {
            self.socket.enqueue(Bytes::copy_from_slice(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::{text_frame, Dropped, RawStream, Socket};
    use crate::events::Event;
    use crate::locks::lock;

    #[test]
    fn text_frames_are_unmasked_and_final() {
        let short = text_frame(b"{}");
        assert_eq!(&short[..], &[0x81, 2, b'{', b'}']);
        let long = text_frame(&[b'x'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        assert_eq!(long.len(), 304);
    }

    fn event(seq: i64) -> Arc<Event> {
        Arc::new(Event {
            tenant_id: "t".into(),
            seq,
            kind: "k".into(),
            at: 0,
            frame: format!(r#"{{"seq":{seq}}}"#).into(),
            for_terminals: true,
        })
    }

    fn offer(socket: &Socket, seq: i64) {
        let e = event(seq);
        socket.offer(&e, &text_frame(e.frame.as_bytes()));
    }

    async fn pair(limit: usize) -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        (
            Socket::new(RawStream::Tcp(accepted.unwrap().0), limit),
            client.unwrap(),
        )
    }

    /// Reads `n` frames of the `{"seq":N}` shape and returns their seqs.
    async fn read_seqs(client: &mut TcpStream, n: usize) -> Vec<i64> {
        let mut seqs = Vec::new();
        for _ in 0..n {
            let mut head = [0u8; 2];
            client.read_exact(&mut head).await.unwrap();
            let mut payload = vec![0u8; usize::from(head[1])];
            client.read_exact(&mut payload).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            seqs.push(v["seq"].as_i64().unwrap());
        }
        seqs
    }

    #[tokio::test]
    async fn live_events_are_written_once_in_order_and_gaps_go_to_the_session() {
        let (socket, mut client) = pair(8).await;
        // Held until the session goes live.
        offer(&socket, 1);
        assert!(socket.attention().catch_up);
        let mut last_sent = 0;
        let (held, lagged) = socket.take_held(&mut last_sent).unwrap();
        assert_eq!((held.len(), lagged), (1, false));
        socket.enqueue(text_frame(held[0].frame.as_bytes()));
        last_sent = 1;
        assert!(socket.take_held(&mut last_sent).is_none(), "live now");
        socket
            .flush(std::time::Duration::from_secs(1))
            .await
            .unwrap();

        // Live: the fan-out writes itself, skipping what was sent.
        offer(&socket, 1);
        offer(&socket, 2);
        offer(&socket, 3);
        assert_eq!(read_seqs(&mut client, 3).await, vec![1, 2, 3]);
        assert_eq!(socket.last_seq(), 3);

        // A gap: held for the session, which learns what the fan-out already wrote.
        offer(&socket, 5);
        assert!(socket.attention().catch_up);
        let mut session_last_sent = 1;
        let (held, _) = socket.take_held(&mut session_last_sent).unwrap();
        assert_eq!(
            session_last_sent, 3,
            "the session resumes after the fan-out's writes"
        );
        assert_eq!(held[0].seq, 5);
    }

    #[tokio::test]
    async fn events_not_for_terminals_pass_their_seq_without_a_frame() {
        let (socket, mut client) = pair(8).await;
        let mut last_sent = 0;
        assert!(socket.take_held(&mut last_sent).is_none(), "live");
        offer(&socket, 1);
        let hidden = Arc::new(Event {
            tenant_id: "t".into(),
            seq: 2,
            kind: "new_order".into(),
            at: 0,
            frame: r#"{"seq":2}"#.into(),
            for_terminals: false,
        });
        socket.offer(&hidden, &text_frame(hidden.frame.as_bytes()));
        assert_eq!(socket.last_seq(), 2);
        offer(&socket, 3);
        assert!(!socket.attention().catch_up, "seq 3 after 2 is no gap");
        assert_eq!(read_seqs(&mut client, 2).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn pong_replies_are_coalesced_to_the_latest_ping() {
        use std::io::Write;

        let (socket, mut client) = pair(4).await;
        let pong = |i: u32| {
            let mut frame = vec![0x8A, 4];
            frame.extend_from_slice(&i.to_be_bytes());
            frame
        };
        // A terminal pinging without reading: one reply per ping, as tungstenite writes them.
        for i in 0..100_000u32 {
            socket.wire().write_all(&pong(i)).unwrap();
        }
        {
            let out = lock(&socket.outbox);
            assert!(
                out.pending.is_empty(),
                "pongs must not pile up in the queue"
            );
            assert!(out.pong.is_some());
        }
        // Other frames still queue in order; the pong goes out at the next frame boundary.
        socket
            .wire()
            .write_all(&text_frame(br#"{"seq":7}"#))
            .unwrap();
        socket
            .flush(std::time::Duration::from_secs(1))
            .await
            .unwrap();
        let mut head = [0u8; 6];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(
            &head[..],
            &pong(99_999)[..],
            "only the latest ping is answered"
        );
        assert_eq!(read_seqs(&mut client, 1).await, vec![7]);
        let out = lock(&socket.outbox);
        assert!(out.pending.is_empty() && out.pong.is_none());
    }

    #[test]
    fn only_whole_unmasked_pong_frames_count_as_pongs() {
        assert!(super::is_pong_frame(&[0x8A, 0]));
        assert!(super::is_pong_frame(&[0x8A, 2, 1, 2]));
        assert!(!super::is_pong_frame(&[0x8A, 3, 1, 2]), "truncated");
        assert!(!super::is_pong_frame(&[0x89, 0]), "a ping");
        assert!(!super::is_pong_frame(&[0x81, 2, b'{', b'}']), "text");
        assert!(!super::is_pong_frame(&[]));
    }

    #[tokio::test]
    async fn a_reader_that_stops_is_dropped_as_a_slow_consumer() {
        let (socket, _client) = pair(4).await;
        let mut last_sent = 0;
        assert!(socket.take_held(&mut last_sent).is_none());
        let big = "x".repeat(60_000);
        let mut seq = 0;
        while socket.attention().dropped.is_none() {
            seq += 1;
            assert!(seq < 10_000, "never dropped");
            let e = Arc::new(Event {
                tenant_id: "t".into(),
                seq,
                kind: "k".into(),
                at: 0,
                frame: big.clone().into(),
                for_terminals: true,
            });
            socket.offer(&e, &text_frame(e.frame.as_bytes()));
        }
        assert_eq!(socket.attention().dropped, Some(Dropped::SlowConsumer));
        let queued_at_drop = seq;
        offer(&socket, seq + 1);
        assert_eq!(
            socket.last_seq(),
            queued_at_drop - 1,
            "nothing accepted after the drop"
        );
    }
}
