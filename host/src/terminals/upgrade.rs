//! The HTTP/1.1 WebSocket handshake (RFC 6455 §4.2) for the event stream, handing the
//! session the upgraded TCP stream itself.
//!
//! axum's `WebSocketUpgrade` wraps the connection in a per-socket message stream; the
//! fan-out instead writes one pre-encoded frame to many raw streams (see `socket.rs`), so
//! this extractor does the same checks and answer but keeps the TCP stream.

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tungstenite::handshake::derive_accept_key;

use crate::error::ApiError;
use crate::listener::TimedIo;

use super::raw_stream::RawStream;

/// A valid WebSocket upgrade request, not yet answered.
#[derive(Debug)]
pub(super) struct StreamUpgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
    protocol: Option<HeaderValue>,
}

/// The connection after the handshake: its stream and any bytes the terminal sent
/// right behind the request (already read by the HTTP layer).
#[derive(Debug)]
pub(super) struct Upgraded {
    /// The raw stream (TCP, or the session's end of a TLS pump).
    pub tcp: RawStream,
    /// Bytes read past the handshake, to be parsed before anything read from `tcp`. A
    /// copy: the HTTP layer's bytes share its whole read buffer (kilobytes), which would
    /// otherwise stay allocated for the life of the socket.
    pub read_ahead: Vec<u8>,
}

impl Upgraded {
    /// Takes the stream and copies the read-ahead bytes; `parts`, and with it the HTTP
    /// layer's read buffer, is released on return rather than kept for the session.
    fn from_parts(parts: auto::upgrade::Parts<TokioIo<TimedIo>>) -> std::io::Result<Self> {
        Ok(Upgraded {
            tcp: RawStream::from_connection(parts.io.into_inner().into_inner())?,
            read_ahead: parts.read_buf.to_vec(),
        })
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl<S: Send + Sync> FromRequestParts<S> for StreamUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let upgrade_required = |message: &str| {
            ApiError::new(StatusCode::UPGRADE_REQUIRED, "websocket_required", message)
        };
        if parts.method != Method::GET {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the event stream is opened with GET",
            ));
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade")
            || !header_has_token(&parts.headers, header::UPGRADE, "websocket")
        {
            return Err(upgrade_required(
                "this is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket",
            ));
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(upgrade_required("Sec-WebSocket-Version must be 13"));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(ApiError::bad_request(
                "invalid_handshake",
                "Sec-WebSocket-Key is missing",
            ));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| ApiError::internal())?;
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(upgrade_required("this connection cannot be upgraded"));
        };
        let protocol = header_has_token(
            &parts.headers,
            header::SEC_WEBSOCKET_PROTOCOL,
            crate::auth::WS_PROTOCOL,
        )
        .then(|| HeaderValue::from_static(crate::auth::WS_PROTOCOL));
        Ok(StreamUpgrade {
            on_upgrade,
            accept,
            protocol,
        })
    }
}

impl StreamUpgrade {
    /// Answers 101 and runs `session` on the upgraded connection once the HTTP layer has
    /// handed it over.
    pub(super) fn on_upgrade<F, Fut>(self, session: F) -> Response
    where
        F: FnOnce(Upgraded) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    tracing::debug!(error = %err, "WebSocket upgrade did not complete");
                    return;
                }
            };
            // The listener serves plain TCP or TLS through hyper-util's HTTP/1-or-2 detection,
            // which wraps the stream in a type of its own; its `downcast` unwraps it.
            match auto::upgrade::downcast::<TokioIo<TimedIo>>(upgraded) {
                Ok(parts) => match Upgraded::from_parts(parts) {
                    Ok(upgraded) => session(upgraded).await,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot start the TLS WebSocket pump; closing it")
                    }
                },
                Err(_) => tracing::error!("upgraded connection is not a TCP stream; closing it"),
            }
        });
        let mut response = (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
            ],
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        if let Some(protocol) = self.protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        response
    }
}
