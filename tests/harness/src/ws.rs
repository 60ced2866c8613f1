//! WebSocket client for `/ws/pos/{tenant}`: connect with headers, read JSON frames with a
//! timeout, observe pings and close codes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// How long [`Ws::next_json`] waits for a frame.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed connection attempt (`Http(response)` when the server refused the upgrade).
pub type WsError = Box<tokio_tungstenite::tungstenite::Error>;

/// The HTTP status with which the server refused a WebSocket upgrade, if it did.
pub fn ws_refusal_status(err: &WsError) -> Option<u16> {
    match &**err {
        tokio_tungstenite::tungstenite::Error::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

/// An open WebSocket to the server.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Headers of the server's 101 answer (e.g. the selected subprotocol).
    pub response_headers: tokio_tungstenite::tungstenite::http::HeaderMap,
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ws")
            .field("response_headers", &self.response_headers)
            .finish_non_exhaustive()
    }
}

impl Ws {
    /// Connects to `url` (ws://…) sending `headers`; times out after 10 s.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
        Ws::connect_with(url, headers, None).await
    }

    /// Connects to `url` (wss://…) trusting what `config` trusts; times out after 10 s.
    pub async fn connect_tls(
        url: &str,
        headers: &[(&str, &str)],
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Ws, WsError> {
        Ws::connect_with(url, headers, Some(Connector::Rustls(config))).await
    }

    async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
        connector: Option<Connector>,
    ) -> Result<Ws, WsError> {
        let mut request = url.into_client_request().map_err(Box::new)?;
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
        let Ok(connected) = tokio::time::timeout(Duration::from_secs(10), connect).await else {
            panic!("WebSocket handshake with {url} timed out");
        };
        let (stream, response) = connected.map_err(Box::new)?;
        Ok(Ws {
            stream,
            response_headers: response.headers().clone(),
        })
    }

    /// The certificate (DER) the server presented, on a wss:// socket.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.stream.get_ref() {
            MaybeTlsStream::Rustls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.to_vec()),
            _ => None,
        }
    }

    /// The next message of any kind (text, ping, close…) within `timeout`; `None` if the
    /// stream ended (or failed) without one. Panics on timeout.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<Message> {
        match tokio::time::timeout(timeout, self.stream.next()).await {
            Err(_) => panic!("no WebSocket message within {timeout:?}"),
            Ok(None) | Ok(Some(Err(_))) => None,
            Ok(Some(Ok(message))) => Some(message),
        }
    }

    /// The next text frame parsed as JSON, skipping pings and pongs, within
    /// [`DEFAULT_FRAME_TIMEOUT`]. Panics on timeout, close, or a non-JSON frame.
    pub async fn next_json(&mut self) -> Value {
        self.next_json_within(DEFAULT_FRAME_TIMEOUT).await
    }

    /// [`Ws::next_json`] with an explicit timeout (for the whole wait).
    pub async fn next_json_within(&mut self, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(next) = tokio::time::timeout(left, self.stream.next()).await else {
                panic!("no WebSocket JSON frame within {timeout:?}");
            };
            match next {
                None => panic!("WebSocket ended while waiting for a JSON frame"),
                Some(Err(e)) => panic!("WebSocket failed while waiting for a JSON frame: {e}"),
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(b))) => panic!("unexpected binary frame: {b:?}"),
                Some(Ok(Message::Close(frame))) => {
                    panic!("WebSocket closed while waiting for a JSON frame: {frame:?}")
                }
            }
        }
    }

    /// Reads the `hello` frame and returns it (asserting its type).
    pub async fn hello(&mut self) -> Value {
        let hello = self.next_json().await;
        assert_eq!(hello["type"], "hello", "first frame must be hello: {hello}");
        hello
    }

    /// The next `n` JSON frames.
    pub async fn collect(&mut self, n: usize) -> Vec<Value> {
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(self.next_json().await);
        }
        frames
    }

    /// Reads until the server closes the socket and returns the close code (`None` if the
    /// stream ended without a close frame). Data frames before the close are skipped.
    /// Panics if nothing closes within `timeout`.
    pub async fn expect_close(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(next) = tokio::time::timeout(left, self.stream.next()).await else {
                panic!("WebSocket not closed within {timeout:?}");
            };
            match next {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends any message (flushing it), returning the error instead of panicking: for
    /// tests where the server may close the socket while the client is still sending.
    pub async fn try_send(&mut self, message: Message) -> Result<(), WsError> {
        self.stream.send(message).await.map_err(Box::new)
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text))
            .await
            .expect("sending a text frame");
    }

    /// Starts the closing handshake (1000) and returns the code of the server's answering
    /// close frame (`None` if the stream ended without one). Panics after 5 s.
    pub async fn close_handshake(mut self) -> Option<u16> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        };
        self.stream
            .close(Some(frame))
            .await
            .expect("sending a close frame");
        self.expect_close(Duration::from_secs(5)).await
    }

    /// Closes the socket from the client side (normal closure) and waits briefly for the
    /// server's answer.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

/// Opens a WebSocket on a bare TCP stream: sends the upgrade request for `path` with
/// `headers` to `base_url` (`http://127.0.0.1:PORT`), checks the answer is 101, and
/// returns the stream positioned after the response headers. For clients that must
/// misbehave below what a WebSocket library allows (pings without ever reading).
/// Panics if the server does not answer 101 within 10 s.
pub async fn raw_ws_upgrade(base_url: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = base_url.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .expect("sending the upgrade");
    // Byte by byte, so nothing after the headers (the server's first frames) is consumed.
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < 16 << 10, "response headers too long");
            head.push(tcp.read_u8().await.expect("reading the upgrade response"));
        }
        head
    })
    .await
    .expect("no upgrade response within 10 s");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    tcp
}
