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

use tokio::net::{TcpStream, UnixStream};

use crate::server::ConnStream;

/// What a terminal's socket reads and writes.
#[derive(Debug)]
pub enum RawStream {
    /// The TCP connection (plain ws).
    Tcp(TcpStream),
    /// The session's end of the pair a TLS pump serves (wss).
    Pumped(UnixStream),
}

impl RawStream {
    /// The stream for an upgraded connection; for TLS, the pump is started here and runs
    /// until either side closes.
    pub fn from_connection(stream: ConnStream) -> io::Result<RawStream> {
        match stream {
            ConnStream::Plain(tcp) => Ok(RawStream::Tcp(tcp)),
            ConnStream::Tls(mut tls) => {
                let (ours, mut theirs) = UnixStream::pair()?;
                tokio::spawn(async move {
                    // Ends when the terminal or the session closes its side; either
                    // way the other side sees the end of the stream.
                    if let Err(err) = tokio::io::copy_bidirectional(&mut *tls, &mut theirs).await {
                        tracing::debug!(error = %err, "TLS WebSocket pump ended");
                    }
                });
                Ok(RawStream::Pumped(ours))
            }
        }
    }

    /// Writes what the stream takes now; `WouldBlock` when it takes nothing.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(tcp) => tcp.try_write(buf),
            RawStream::Pumped(pipe) => pipe.try_write(buf),
        }
    }

    /// Reads what has arrived; `WouldBlock` when nothing has.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RawStream::Tcp(tcp) => tcp.try_read(buf),
            RawStream::Pumped(pipe) => pipe.try_read(buf),
        }
    }

    /// Completes when the stream may take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            RawStream::Tcp(tcp) => tcp.writable().await,
            RawStream::Pumped(pipe) => pipe.writable().await,
        }
    }

    /// Completes when the stream may have bytes to read.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            RawStream::Tcp(tcp) => tcp.readable().await,
            RawStream::Pumped(pipe) => pipe.readable().await,
        }
    }
}
