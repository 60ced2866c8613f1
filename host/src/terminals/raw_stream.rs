//! The byte stream under a terminal's WebSocket: the upgraded TCP stream itself for a
//! plain connection, or one end of a socket pair for a TLS connection.
//!
//! The fan-out writes each event's frame to many sockets with one non-blocking write
//! each (see `socket.rs`), which needs a stream that can be written without a task: a
//! TCP stream can, a TLS session cannot (its records are encrypted by whoever polls it).
//! A TLS WebSocket therefore gets a socket pair: the session and the fan-out use one end
//! exactly as they use TCP, and a pump task moves bytes between the other end and the TLS
//! stream, encrypting and decrypting. The pair's kernel buffers add a little slack before
//! a slow TLS reader counts as a slow consumer; a large fleet is better served with TLS
//! ended at the proxy (see docs/operations.md).

use std::io;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::listener::ConnStream;

/// What a terminal's socket reads and writes.
#[derive(Debug)]
pub(super) enum RawStream {
    /// The TCP connection (plain ws).
    Tcp(TcpStream),
    /// The session's end of the pair a TLS pump serves (wss), and what tells the pump
    /// when the session has let go of it.
    Pumped {
        /// The session's end.
        pipe: UnixStream,
        /// Cancels the pump's token when the socket is dropped.
        _released: DropGuard,
    },
}

/// How long the pump goes on after the session let go of its socket: time for the last
/// frames (the close) to reach the terminal, and a bound on a pump whose terminal went
/// away without a word (its writes would otherwise wait for ever).
const PUMP_LINGER: Duration = Duration::from_secs(2);

impl RawStream {
    /// The stream for an upgraded connection; for TLS, the pump is started here and runs
    /// until the terminal closes, or shortly after the session lets go of the stream.
    pub(super) fn from_connection(stream: ConnStream) -> io::Result<RawStream> {
        match stream {
            ConnStream::Plain(tcp) => Ok(RawStream::Tcp(tcp)),
            ConnStream::Tls(mut tls) => {
                let (ours, mut theirs) = UnixStream::pair()?;
                let released = CancellationToken::new();
                let session_gone = released.clone();
                tokio::spawn(async move {
                    // A terminal that closes ends its direction, and the session sees
                    // the end of its stream; a session that lets go cancels the token.
                    let pump = tokio::io::copy_bidirectional(&mut *tls, &mut theirs);
                    tokio::pin!(pump);
                    let outcome = tokio::select! {
                        outcome = &mut pump => Some(outcome),
                        _ = session_gone.cancelled() => {
                            tokio::time::timeout(PUMP_LINGER, &mut pump).await.ok()
                        }
                    };
                    if let Some(Err(err)) = outcome {
                        tracing::debug!(error = %err, "TLS WebSocket pump ended");
                    }
                });
                Ok(RawStream::Pumped {
                    pipe: ours,
                    _released: released.drop_guard(),
                })
            }
        }
    }

    /// Writes what the stream takes now; `WouldBlock` when it takes nothing.
    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(tcp) => tcp.try_write(buf),
            RawStream::Pumped { pipe, .. } => pipe.try_write(buf),
        }
    }

    /// Reads what has arrived; `WouldBlock` when nothing has.
    pub(super) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(tcp) => tcp.try_read(buf),
            RawStream::Pumped { pipe, .. } => pipe.try_read(buf),
        }
    }

    /// Completes when the stream may take more bytes.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match self {
            RawStream::Tcp(tcp) => tcp.writable().await,
            RawStream::Pumped { pipe, .. } => pipe.writable().await,
        }
    }

    /// Completes when the stream may have bytes to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        match self {
            RawStream::Tcp(tcp) => tcp.readable().await,
            RawStream::Pumped { pipe, .. } => pipe.readable().await,
        }
    }
}
