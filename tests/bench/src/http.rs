//! A deliberately thin HTTP/1.1 client: one keep-alive hyper connection per worker,
//! requests cloned from a prebuilt template, responses checked by status only.
//!
//! The benchmark client shares two cores with the server, so every cycle spent here is
//! a cycle the server does not get; no connection pool, no JSON parsing in the hot path.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection to the server.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection driver ends when the connection closes; a broken connection
        // surfaces as an error of the next `send`.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Sends one request and reads the whole response body.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        self.sender
            .ready()
            .await
            .context("HTTP connection closed")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending HTTP request")?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading HTTP response body")?
            .to_bytes();
        Ok((status, body))
    }
}

/// A request built once and cloned for every send.
#[derive(Clone)]
pub struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    pub fn new(method: Method, addr: SocketAddr, path: &str) -> Result<Template> {
        let uri: Uri = path
            .parse()
            .with_context(|| format!("invalid request path {path:?}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        Ok(Template {
            method,
            uri,
            headers,
            body: Bytes::new(),
        })
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Template> {
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("invalid value for header {name}"))?;
        self.headers.insert(HeaderName::from_static(name), value);
        Ok(self)
    }

    pub fn json_body(mut self, body: &serde_json::Value) -> Result<Template> {
        self.body = Bytes::from(serde_json::to_vec(body)?);
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(self)
    }

    pub fn raw_body(mut self, body: Vec<u8>, content_type: &'static str) -> Result<Template> {
        self.body = Bytes::from(body);
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(self)
    }

    pub fn build(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Response body as text for error messages, cut to a readable length.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}
