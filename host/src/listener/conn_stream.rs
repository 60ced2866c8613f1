//! The byte stream of one accepted connection: plain TCP, or TLS over TCP once the
//! handshake is done. hyper, the connection timers ([`super::TimedIo`]) and the event
//! stream's upgrade see one type either way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A plain or TLS connection.
#[derive(Debug)]
pub(crate) enum ConnStream {
    /// http / ws.
    Plain(TcpStream),
    /// https / wss (boxed: the TLS state is a few hundred bytes).
    Tls(Box<TlsStream<TcpStream>>),
}

impl ConnStream {
    /// Writes `bytes` if the socket takes them at once, for canned answers on a plain
    /// connection; a TLS connection cannot write raw bytes, so nothing is written there.
    pub(crate) fn try_write_plain(&self, bytes: &[u8]) {
        if let ConnStream::Plain(tcp) = self {
            let _ = tcp.try_write(bytes);
        }
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            ConnStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            ConnStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnStream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            ConnStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ConnStream::Plain(tcp) => tcp.is_write_vectored(),
            ConnStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            ConnStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            ConnStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
