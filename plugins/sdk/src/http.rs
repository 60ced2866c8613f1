//! Outbound HTTP through the host's `http` import.
//!
//! The host sends the request: only to hosts the plugin declares in its `info` and the operator
//! approved (anything else is [`HttpError::Denied`]), with timeouts, a per-integration rate
//! limit, a response size cap, and retries of 429/5xx/network errors (so call once). A non-2xx
//! status is a [`Response`], not an error: turn it into a provider error with
//! [`errors::check`](crate::errors::check).
//!
//! ```no_run
//! use posbridge_sdk::http::Request;
//! # fn demo(token: &str) -> Result<(), posbridge_sdk::types::ProviderError> {
//! let response = Request::get("https://connect.squareup.com/v2/locations/L1")
//!     .bearer(token)
//!     .header("Square-Version", "2024-01-18")
//!     .send()?;
//! let response = posbridge_sdk::errors::check(response, posbridge_sdk::errors::NotFound::Location)?;
//! let body: posbridge_sdk::serde_json::Value = response.json_or_upstream()?;
//! # let _ = body; Ok(()) }
//! ```

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::bindings::imports::http::{HttpError, Method, Request as RawRequest, Response};
use crate::types::ProviderError;

/// A request being built; [`send`](Request::send) hands it to the host.
#[derive(Debug, Clone)]
pub struct Request {
    raw: RawRequest,
    /// A body that could not be serialized: reported by `send` as `invalid-request`.
    error: Option<String>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            raw: RawRequest {
                method,
                url: url.into(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            },
            error: None,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// `HEAD url`.
    pub fn head(url: impl Into<String>) -> Self {
        Self::new(Method::Head, url)
    }

    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// `PUT url`.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// `PATCH url`.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }

    /// `DELETE url`.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Adds a header (names are case-insensitive; adding one twice sends it twice).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.raw.headers.push((name.into(), value.into()));
        self
    }

    /// Sets `name`, replacing any value it had.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.raw
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.raw.headers.push((name, value.into()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.set_header("Authorization", format!("Bearer {token}"))
    }

    /// `Authorization: Basic base64(user:password)`.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let encoded = crate::signature::base64_encode(format!("{user}:{password}").as_bytes());
        self.set_header("Authorization", format!("Basic {encoded}"))
    }

    /// Appends query parameters, percent-encoded: `.query([("limit", "100"), ("cursor", c)])`.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let encoded = encode_query(pairs);
        if !encoded.is_empty() {
            let url = &mut self.raw.url;
            let separator = if !url.contains('?') {
                "?"
            } else if url.ends_with('?') || url.ends_with('&') {
                ""
            } else {
                "&"
            };
            url.push_str(separator);
            url.push_str(&encoded);
        }
        self
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body(bytes, "application/json"),
            Err(e) => {
                self.error = Some(format!("request body is not serializable: {e}"));
                self
            }
        }
    }

    /// A form body (`application/x-www-form-urlencoded`), e.g. for OAuth token endpoints.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(
        self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let body = encode_query(pairs).into_bytes();
        self.body(body, "application/x-www-form-urlencoded")
    }

    /// A raw body with its content type.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.raw.body = Some(bytes.into());
        self.set_header("Content-Type", content_type)
    }

    /// Per-attempt timeout (the host's default is 10 s; the host caps it).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.raw.timeout_ms = Some(ms);
        self
    }

    /// The request as it will be sent.
    pub fn raw(&self) -> &RawRequest {
        &self.raw
    }

    /// The request as the WIT record, or the reason it cannot be sent.
    pub fn into_raw(self) -> Result<RawRequest, HttpError> {
        match self.error {
            Some(message) => Err(HttpError::InvalidRequest(message)),
            None => Ok(self.raw),
        }
    }

    /// Sends it through the host and returns the final answer (after the host's retries).
    pub fn send(self) -> Result<Response, HttpError> {
        let raw = self.into_raw()?;
        crate::sys::http_send(&raw)
    }
}

impl Response {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced by U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body parsed as JSON, or [`ProviderError::Upstream`] saying why it is unusable.
    pub fn json_or_upstream<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        self.json().map_err(|e| {
            ProviderError::Upstream(format!("unexpected response (HTTP {}): {e}", self.status))
        })
    }
}

/// The first value of header `name` in `headers`, compared case-insensitively.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value or path segment (everything but `A-Z a-z 0-9 - . _ ~`).
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// `k1=v1&k2=v2`, each key and value percent-encoded.
pub fn encode_query<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode_component(k.as_ref()));
        out.push('=');
        out.push_str(&encode_component(v.as_ref()));
    }
    out
}

/// Joins a base URL and a path with exactly one `/` between them:
/// `join_url("https://h/v2/", "/locations")` → `https://h/v2/locations`.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{path}")
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn builds_requests() {
        #[derive(Serialize)]
        struct Body {
            n: u32,
        }
        let raw = Request::post("https://api.example.com/v1/x?a=1")
            .bearer("tok")
            .header("X-One", "1")
            .query([("q", "a b&c"), ("e", "é/")])
            .json(&Body { n: 3 })
            .timeout_ms(500)
            .into_raw()
            .unwrap();
        assert_eq!(raw.method, Method::Post);
        assert_eq!(
            raw.url,
            "https://api.example.com/v1/x?a=1&q=a%20b%26c&e=%C3%A9%2F"
        );
        assert_eq!(
            find_header(&raw.headers, "authorization"),
            Some("Bearer tok")
        );
        assert_eq!(
            find_header(&raw.headers, "content-type"),
            Some("application/json")
        );
        assert_eq!(raw.body.as_deref(), Some(&br#"{"n":3}"#[..]));
        assert_eq!(raw.timeout_ms, Some(500));

        let raw = Request::get("https://h/x")
            .query([("a", "1")])
            .into_raw()
            .unwrap();
        assert_eq!(raw.url, "https://h/x?a=1");
        let raw = Request::get("https://h/x")
            .bearer("a")
            .bearer("b")
            .into_raw()
            .unwrap();
        assert_eq!(raw.headers.len(), 1, "bearer replaces");
        let raw = Request::get("https://h")
            .basic_auth("u", "p")
            .into_raw()
            .unwrap();
        assert_eq!(
            find_header(&raw.headers, "AUTHORIZATION"),
            Some("Basic dTpw")
        );
    }

    #[test]
    fn unserializable_body_is_an_invalid_request() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let err = Request::post("https://h").json(&map).send().unwrap_err();
        assert!(matches!(err, HttpError::InvalidRequest(_)), "{err:?}");
    }

    #[test]
    fn responses() {
        testing::reset();
        testing::mock_http(|req| {
            assert_eq!(req.url, "https://api.example.com/ping");
            Ok(Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: br#"{"ok":true}"#.to_vec(),
            })
        });
        let resp = Request::get("https://api.example.com/ping").send().unwrap();
        assert!(resp.is_success());
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("x-missing"), None);
        assert_eq!(resp.text(), r#"{"ok":true}"#);
        let v: serde_json::Value = resp.json().unwrap();
        assert_eq!(v["ok"], true);
        assert!(resp.json_or_upstream::<Vec<u8>>().is_err());
        assert_eq!(testing::take_requests().len(), 1);
    }

    #[test]
    fn helpers() {
        assert_eq!(
            encode_query([("a", "1"), ("b c", "x=y")]),
            "a=1&b%20c=x%3Dy"
        );
        assert_eq!(encode_query(Vec::<(&str, &str)>::new()), "");
        assert_eq!(encode_component("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            join_url("https://h/v2/", "/locations"),
            "https://h/v2/locations"
        );
        assert_eq!(join_url("https://h", "x"), "https://h/x");
        assert_eq!(join_url("https://h/", ""), "https://h");
    }
}
