//! A small HTTP client for the server's JSON API: fixed base URL and headers, answers as
//! [`Resp`] (status, parsed JSON, headers).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// Longest any single request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn new_http() -> reqwest::Client {
    new_http_trusting(None)
}

/// The test client, trusting the CA certificate `ca_pem` too when given (hosts serving
/// TLS with a certificate of the test's own CA).
pub(crate) fn new_http_trusting(ca_pem: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy();
    if let Some(pem) = ca_pem {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA certificate PEM");
        builder = builder.add_root_certificate(ca);
    }
    builder.build().expect("building the HTTP client")
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    None,
    /// A JSON value, sent as `application/json`.
    Json(Value),
    /// Raw bytes with an optional `Content-Type`.
    Raw {
        /// The bytes sent.
        bytes: Vec<u8>,
        /// `Content-Type` header, if any.
        content_type: Option<String>,
    },
}

impl Body {
    /// Raw bytes sent as `application/json` (for malformed or oversized JSON).
    pub fn raw_json(bytes: impl Into<Vec<u8>>) -> Body {
        Body::Raw {
            bytes: bytes.into(),
            content_type: Some("application/json".to_owned()),
        }
    }
}

/// An HTTP client bound to a base URL with fixed headers (API key, tenant, operator token).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    headers: Vec<(String, String)>,
}

impl Client {
    /// A client for `base` (no trailing slash) with no headers.
    pub fn new(base: impl Into<String>) -> Client {
        Client::with_http(new_http(), base)
    }

    pub(crate) fn with_http(http: reqwest::Client, base: impl Into<String>) -> Client {
        Client {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            headers: Vec::new(),
        }
    }

    /// The base URL paths are appended to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client with one more (or a replaced) header.
    pub fn with_header(mut self, name: &str, value: &str) -> Client {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same client without the named header.
    pub fn without_header(mut self, name: &str) -> Client {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// `GET base + path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Body::None, &[]).await
    }

    /// `POST base + path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Body::Json(body.clone()), &[])
            .await
    }

    /// `POST base + path` with a JSON body and an `Idempotency-Key`.
    pub async fn post_idem(&self, path: &str, body: &Value, idempotency_key: &str) -> Resp {
        self.send(
            Method::POST,
            path,
            Body::Json(body.clone()),
            &[("Idempotency-Key", idempotency_key)],
        )
        .await
    }

    /// `PATCH` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, Body::Json(body.clone()), &[])
            .await
    }

    /// `PUT` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, Body::Json(body.clone()), &[])
            .await
    }

    /// `DELETE base + path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, Body::None, &[]).await
    }

    /// Any request. `path` is appended to the base URL as given (encode segments with
    /// [`crate::enc`]). Panics only if the server cannot be reached or does not answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        extra: &[(&str, &str)],
    ) -> Resp {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        for (name, value) in extra {
            req = req.header(*name, *value);
        }
        req = match body {
            Body::None => req,
            Body::Json(value) => req.json(&value),
            Body::Raw {
                bytes,
                content_type,
            } => {
                let req = match content_type {
                    Some(ct) => req.header(reqwest::header::CONTENT_TYPE, ct),
                    None => req,
                };
                req.body(bytes)
            }
        };
        let response = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: no response: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body failed: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            method,
            url,
            status,
            headers,
            text,
            body,
        }
    }
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The request's method (for messages).
    pub method: Method,
    /// The request's URL (for messages).
    pub url: String,
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub body: Value,
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// Panics (showing the request and body) unless the status is `status`; returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "{} {}: expected HTTP {status}, got {} with body {}",
            self.method, self.url, self.status, self.text
        );
        &self.body
    }

    /// Panics unless the answer is `status` with the JSON error shape
    /// `{"error":{"code":code,"message":"<non-empty>"}}` and a JSON content type.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        self.expect_error_status(status);
        assert_eq!(
            self.error_code(),
            Some(code),
            "{} {}: expected error code {code:?}, got body {}",
            self.method,
            self.url,
            self.text
        );
    }

    /// Like [`Resp::expect_error`] without checking the code.
    #[track_caller]
    pub fn expect_error_status(&self, status: u16) {
        self.expect(status);
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        assert!(
            code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
            "{} {}: expected {{\"error\":{{\"code\",\"message\"}}}}, got {}",
            self.method,
            self.url,
            self.text
        );
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{} {}: error answered with content-type {content_type:?}",
            self.method,
            self.url
        );
    }
}
