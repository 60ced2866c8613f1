//! What the Square, Toast and Clover mocks share: a loopback HTTP server that hands every
//! request to a [`Provider`] (the part that answers like the vendor's published API), logs
//! it with the status it answered, and can be told to fail the next requests ([`Fault`]).
//!
//! The test owns the mock's state through [`Mock`]: it injects and clears faults, reads the
//! request log, and changes the provider's data with [`Mock::with`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request a mock received, with the status it answered.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, as sent (still percent-encoded).
    pub path: String,
    /// The raw query string (empty if none).
    pub query: String,
    /// Every header (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The status the mock answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

impl LoggedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query parameters, decoded (`application/x-www-form-urlencoded` rules, so a raw
    /// `+` reads as a space, as most real servers read it).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    match reqwest::Url::parse(&format!("http://mock/?{query}")) {
        Ok(url) => url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// An injected failure: the next `remaining` matching requests (or every one, when
/// `remaining` is `None`) are answered with `status` instead of being served.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP status to answer (429, 500, 503, 403, 401…).
    pub status: u16,
    /// How many more requests fail; `None` = until cleared.
    pub remaining: Option<u32>,
    /// Only requests whose path starts with this fail (`None` = every path).
    pub path_prefix: Option<String>,
    /// A `Retry-After` header value to send with it (Square never sends one).
    pub retry_after: Option<String>,
}

impl Fault {
    /// The next `n` requests to any path answer `status`.
    pub fn next(n: u32, status: u16) -> Fault {
        Fault {
            status,
            remaining: Some(n),
            path_prefix: None,
            retry_after: None,
        }
    }

    /// Every request to any path answers `status` until the faults are cleared.
    pub fn always(status: u16) -> Fault {
        Fault {
            status,
            remaining: None,
            path_prefix: None,
            retry_after: None,
        }
    }

    /// Restricts the fault to paths starting with `prefix`.
    pub fn on(mut self, prefix: &str) -> Fault {
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    /// Sends `Retry-After: value` with the fault.
    pub fn retry_after(mut self, value: &str) -> Fault {
        self.retry_after = Some(value.to_owned());
        self
    }
}

/// Takes the first live fault matching `path` (decrementing its count), if any.
fn take_fault(faults: &mut Vec<Fault>, path: &str) -> Option<Fault> {
    let index = faults.iter().position(|f| {
        f.remaining != Some(0)
            && f.path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
    })?;
    let fault = &mut faults[index];
    if let Some(n) = fault.remaining.as_mut() {
        *n -= 1;
    }
    let taken = fault.clone();
    faults.retain(|f| f.remaining != Some(0));
    Some(taken)
}

/// A JSON response with extra headers.
pub(crate) fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    response
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Base64 (standard, padded) of HMAC-SHA256(`key`, concatenation of `parts`).
pub fn hmac_sha256_base64(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One request as a [`Provider`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path, still percent-encoded.
    pub path: &'a str,
    /// The raw query string (empty if none).
    pub query: &'a str,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

impl Incoming<'_> {
    /// The token of an `Authorization: Bearer …` header, if there is one.
    pub fn bearer(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    }
}

/// The provider-specific half of a mock: its data, its routes and its error format.
pub trait Provider: Send + 'static {
    /// Takes note of a request before anything else happens to it (Toast counts them for
    /// its rate-limit headers, faults included).
    fn arrived(&mut self, _request: &Incoming<'_>) {}

    /// The answer to an injected fault, in the provider's error format.
    fn fault_response(&self, fault: &Fault) -> Response;

    /// Serves a request no fault took: the status (for the log) and the response.
    fn route(&mut self, request: &Incoming<'_>) -> (u16, Response);

    /// How long to hold back the answer of the request just routed, which has already
    /// taken effect: a slow POS, or an answer that reaches the client after it gave up
    /// (the order exists although the caller never heard so). Asked once per routed
    /// request, right after [`Provider::route`].
    fn answer_delay(&mut self) -> Option<std::time::Duration> {
        None
    }
}

#[derive(Debug)]
struct MockState<P> {
    provider: P,
    faults: Vec<Fault>,
    log: Vec<LoggedRequest>,
    /// (path prefix, requests left to delay, how long): see [`Mock::delay_next`].
    delays: Vec<(String, u32, std::time::Duration)>,
    /// Requests that have begun a delay so far.
    held: u32,
}

/// A running mock of provider `P` on 127.0.0.1; dropping it stops it.
#[derive(Debug)]
pub struct Mock<P> {
    base_url: String,
    host_port: String,
    task: tokio::task::JoinHandle<()>,
    state: Arc<Mutex<MockState<P>>>,
}

impl<P: Provider> Mock<P> {
    /// Binds 127.0.0.1:0 and serves `provider` on the current tokio runtime.
    pub async fn serve(provider: P) -> Mock<P> {
        let state = Arc::new(Mutex::new(MockState {
            provider,
            faults: Vec::new(),
            log: Vec::new(),
            delays: Vec::new(),
            held: 0,
        }));
        let router = Router::new()
            .fallback(handle::<P>)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for a mock");
        let addr = listener.local_addr().expect("mock address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Mock {
            base_url: format!("http://{addr}"),
            host_port: addr.to_string(),
            task,
            state,
        }
    }

    /// `http://127.0.0.1:PORT` (the integration's `base_url`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `127.0.0.1:PORT` (what `PUT /admin/plugins/{id}/hosts` approves).
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// Runs `f` on the provider's state (to add data or change what it accepts).
    pub fn with<R>(&self, f: impl FnOnce(&mut P) -> R) -> R {
        f(&mut lock(&self.state).provider)
    }

    /// Injects a fault (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    /// Holds the next `n` requests whose path starts with `prefix` for `wait` before
    /// answering them (a slow provider: a sync that is still running when its host dies).
    pub fn delay_next(&self, n: u32, prefix: &str, wait: std::time::Duration) {
        lock(&self.state).delays.push((prefix.to_owned(), n, wait));
    }

    /// How many requests have begun a delay of [`Mock::delay_next`] so far (they are in the
    /// request log only once answered).
    pub fn held(&self) -> u32 {
        lock(&self.state).held
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state).log.clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<LoggedRequest> {
        lock(&self.state)
            .log
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.state).log.clear();
    }
}

impl<P> Drop for Mock<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle<P: Provider>(
    State(state): State<Arc<Mutex<MockState<P>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let request = Incoming {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body: &body,
    };
    let delay = {
        let mut guard = lock(&state);
        let taken = guard
            .delays
            .iter_mut()
            .find(|(prefix, left, _)| *left > 0 && path.starts_with(prefix.as_str()))
            .map(|(_, left, wait)| {
                *left -= 1;
                *wait
            });
        guard.held += u32::from(taken.is_some());
        taken
    };
    if let Some(wait) = delay {
        tokio::time::sleep(wait).await;
    }
    let (response, hold) = {
        let mut guard = lock(&state);
        let state = &mut *guard;
        state.provider.arrived(&request);
        let (status, response, hold) = match take_fault(&mut state.faults, &path) {
            Some(fault) => (fault.status, state.provider.fault_response(&fault), None),
            None => {
                let (status, response) = state.provider.route(&request);
                (status, response, state.provider.answer_delay())
            }
        };
        // Logged when it took effect, not when answered: a held answer's order exists.
        state.log.push(LoggedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: header_list(&headers),
            body: body.to_vec(),
            status,
            at: Instant::now(),
        });
        (response, hold)
    };
    if let Some(wait) = hold {
        tokio::time::sleep(wait).await;
    }
    response
}

/// The first value of query parameter `name` among decoded `params`.
pub(crate) fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down() {
        let mut faults = vec![Fault::next(2, 500).on("/v2/payments")];
        assert!(take_fault(&mut faults, "/v2/locations/x").is_none());
        assert_eq!(take_fault(&mut faults, "/v2/payments").unwrap().status, 500);
        assert!(take_fault(&mut faults, "/v2/payments").is_some());
        assert!(take_fault(&mut faults, "/v2/payments").is_none());
    }
}
