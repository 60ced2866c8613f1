//! Outbound HTTP on behalf of plugins: allowlist, per-integration rate limit, timeouts,
//! retries with exponential backoff and jitter, response size cap. No wasmtime here.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::allowlist::AllowList;

/// Outbound HTTP tuning (`serve` flags `--outbound-*`; see [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct OutboundOptions {
    /// Milliseconds per attempt of a plugin's HTTP request when the plugin names no
    /// timeout. Default 10 s: typical POS APIs' p99 with margin. At least 1.
    #[arg(
        long = "outbound-timeout-ms",
        env = "POSBRIDGE_OUTBOUND_TIMEOUT_MS",
        default_value = "10000",
        value_parser = crate::options::millis(1)
    )]
    pub default_timeout: Duration,
    /// Upper bound, milliseconds, on any per-attempt timeout a plugin asks for. Default
    /// 30 s: a plugin cannot hold a call slot for minutes. At least 1.
    #[arg(
        long = "outbound-max-timeout-ms",
        env = "POSBRIDGE_OUTBOUND_MAX_TIMEOUT_MS",
        default_value = "30000",
        value_parser = crate::options::millis(1)
    )]
    pub max_timeout: Duration,
    /// Retries after the first attempt for 429, 5xx and network errors. Default 3: rides
    /// out a blip without multiplying load on a struggling API. A request that may have
    /// taken effect is never sent again here (see `may_resend`).
    #[arg(
        long = "outbound-retries",
        env = "POSBRIDGE_OUTBOUND_RETRIES",
        default_value = "3"
    )]
    pub max_retries: u32,
    /// Milliseconds of the first retry's backoff; it doubles per retry, with full jitter.
    /// Default 200 ms. At least 1.
    #[arg(
        long = "outbound-backoff-base-ms",
        env = "POSBRIDGE_OUTBOUND_BACKOFF_BASE_MS",
        default_value = "200",
        value_parser = crate::options::millis(1)
    )]
    pub backoff_base: Duration,
    /// Longest single wait between attempts, milliseconds, including an upstream
    /// `Retry-After`; a longer `Retry-After` is not waited out: the 429 goes back to the
    /// plugin, which reports `rate-limited`. Default 5 s. At least 1.
    #[arg(
        long = "outbound-max-backoff-ms",
        env = "POSBRIDGE_OUTBOUND_MAX_BACKOFF_MS",
        default_value = "5000",
        value_parser = crate::options::millis(1)
    )]
    pub max_backoff: Duration,
    /// Largest response body accepted, bytes. Default 16 MiB: holds a 100-order Toast page
    /// with room. At least 1024.
    #[arg(
        long = "outbound-max-response-bytes",
        env = "POSBRIDGE_OUTBOUND_MAX_RESPONSE_BYTES",
        default_value = "16777216",
        value_parser = crate::options::at_least(1024usize)
    )]
    pub max_response_bytes: usize,
    /// Requests per second per integration (burst the same). Default 20: Toast allows
    /// 20/s per restaurant; Square publishes no number. At least 1.
    #[arg(
        long = "outbound-rate-per-sec",
        env = "POSBRIDGE_OUTBOUND_RATE_PER_SEC",
        default_value = "20",
        value_parser = crate::options::at_least(1u32)
    )]
    pub rate_per_second: u32,
}

impl Default for OutboundOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name, as HTTP spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// The method named `name` (any case).
    pub(crate) fn parse(name: &str) -> Option<Method> {
        Some(match name.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// A request a plugin asked for.
#[derive(Debug, Clone)]
pub(crate) struct OutboundRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
}

/// The final answer after retries.
#[derive(Debug, Clone)]
pub(crate) struct OutboundResponse {
    /// Status code.
    pub status: u16,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Why no response could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutboundError {
    /// Destination not allowed.
    #[error("denied: {0}")]
    Denied(String),
    /// Timed out after retries.
    #[error("timed out")]
    Timeout,
    /// Transport failure after retries.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Body over the cap.
    #[error("response too large")]
    TooLarge,
    /// Malformed request.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Recorded answers that stand in for the network (`plugin test`): each request is
/// matched by method and exact URL; one that matches nothing fails with a clear error and
/// is remembered, so the runner can report it.
#[derive(Debug, Default)]
pub(crate) struct RecordedHttp {
    /// `(method, url, response)`, first match wins; a match may be used any number of times.
    pub exchanges: Vec<(Method, String, OutboundResponse)>,
    /// Requests that matched nothing, as `METHOD url`.
    pub unmatched: std::sync::Mutex<Vec<String>>,
}

impl RecordedHttp {
    fn answer(&self, request: &OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        if let Some((_, _, response)) = self
            .exchanges
            .iter()
            .find(|(method, url, _)| *method == request.method && *url == request.url)
        {
            return Ok(response.clone());
        }
        let what = format!("{} {}", request.method.as_str(), request.url);
        crate::locks::lock(&self.unmatched).push(what.clone());
        Err(OutboundError::Connection(format!(
            "no recorded response for {what} in the fixtures"
        )))
    }
}

/// The shared outbound client. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbound {
    client: reqwest::Client,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    options: Arc<OutboundOptions>,
    recorded: Option<Arc<RecordedHttp>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("options", &self.options)
            .finish()
    }
}

impl Outbound {
    /// Builds the client.
    pub(crate) fn new(options: OutboundOptions) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // A redirect could leave the allowlist: plugins see 3xx and decide themselves.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("posbridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let rate = NonZeroU32::new(options.rate_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Outbound {
            client,
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(rate))),
            options: Arc::new(options),
            recorded: None,
        })
    }

    /// A client that never touches the network: every request is answered from
    /// `recorded` (after the same allowlist check as a live one).
    pub(crate) fn recorded(
        options: OutboundOptions,
        recorded: Arc<RecordedHttp>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Outbound {
            recorded: Some(recorded),
            ..Outbound::new(options)?
        })
    }

    /// Performs `request` if `allow` permits its destination, rate-limited under
    /// `rate_key` (the integration), with retries.
    pub(crate) async fn send(
        &self,
        allow: &AllowList,
        rate_key: &str,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError> {
        allow.check(&request.url).map_err(OutboundError::Denied)?;
        if let Some(recorded) = &self.recorded {
            return recorded.answer(&request);
        }
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| OutboundError::Invalid(format!("bad header name {name:?}")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| OutboundError::Invalid(format!("bad value for header {name}")))?;
            headers.append(name, value);
        }
        let timeout = request
            .timeout
            .unwrap_or(self.options.default_timeout)
            .min(self.options.max_timeout);
        let mut attempt = 0;
        loop {
            self.limiter.until_key_ready(&rate_key.to_owned()).await;
            let mut builder = self
                .client
                .request(method.clone(), &request.url)
                .headers(headers.clone())
                .timeout(timeout);
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            let mut not_sent = false;
            let outcome = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let retryable = status == 429
                        || ((500..600).contains(&status) && may_resend(&method, false));
                    if retryable && attempt < self.options.max_retries {
                        let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                        if wait <= self.options.max_backoff {
                            attempt += 1;
                            metrics::counter!("posbridge_plugin_http_retries_total").increment(1);
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    Ok(self.read(response).await?)
                }
                Err(err) => Err({
                    not_sent = err.is_connect();
                    if err.is_timeout() {
                        OutboundError::Timeout
                    } else if err.is_builder() {
                        OutboundError::Invalid(err.to_string())
                    } else {
                        OutboundError::Connection(without_url(&err))
                    }
                }),
            };
            match outcome {
                Err(OutboundError::Timeout | OutboundError::Connection(_))
                    if attempt < self.options.max_retries && may_resend(&method, not_sent) =>
                {
                    let wait = self.backoff(attempt);
                    attempt += 1;
                    metrics::counter!("posbridge_plugin_http_retries_total").increment(1);
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
    ) -> Result<OutboundResponse, OutboundError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        if response
            .content_length()
            .is_some_and(|len| len > self.options.max_response_bytes as u64)
        {
            return Err(OutboundError::TooLarge);
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.options.max_response_bytes {
                        return Err(OutboundError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) if err.is_timeout() => return Err(OutboundError::Timeout),
                Err(err) => return Err(OutboundError::Connection(without_url(&err))),
            }
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }

    /// Full-jitter exponential backoff: uniform in [0, base·2^attempt], capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .options
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.options.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// Error text without the URL, whose query string may carry upstream identifiers.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// Whether a request that failed with a 5xx, a timeout or a dropped connection may be sent
/// again without risking a second effect: idempotent methods (GET, HEAD, PUT, DELETE)
/// always, anything else only when it never reached the server (`not_sent`: the connection
/// could not be made). A POST that timed out or got a 504 may have landed (Toast documents
/// exactly that for orders), so it goes back to the plugin and its caller, which look the
/// effect up before trying again. A 429 is resent whatever the method: it was refused
/// unprocessed.
fn may_resend(method: &reqwest::Method, not_sent: bool) -> bool {
    not_sent || method.is_idempotent()
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let delta = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test]
    async fn denied_destinations_never_leave_the_host() {
        let out = Outbound::new(OutboundOptions::default()).unwrap();
        let allow = AllowList::parse(["api.example.com"]).unwrap();
        let err = out
            .send(
                &allow,
                "i1",
                OutboundRequest {
                    method: Method::Get,
                    url: "http://127.0.0.1:1/".into(),
                    headers: vec![],
                    body: None,
                    timeout: None,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Denied(_)), "{err:?}");
    }

    /// A loopback server answering every request with `status` (plain HTTP/1.1 over a
    /// `TcpListener`: this module stays free of the HTTP server stack); returns its URL and
    /// a count of the requests it saw.
    async fn answering(status: u16) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/thing", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    // Every request the client sends is small; read until its body is in.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.ends_with(b"\r\n\r\n{}") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, seen)
    }

    async fn send_to(url: &str, method: Method) -> OutboundResponse {
        let out = Outbound::new(OutboundOptions {
            backoff_base: Duration::from_millis(1),
            ..OutboundOptions::default()
        })
        .unwrap();
        let authority = url.split('/').nth(2).unwrap();
        let allow = AllowList::parse([authority]).unwrap();
        let request = OutboundRequest {
            method,
            url: url.to_owned(),
            headers: vec![],
            body: Some(b"{}".to_vec()),
            timeout: None,
        };
        out.send(&allow, "k", request).await.unwrap()
    }

    #[tokio::test]
    async fn a_post_that_may_have_landed_is_not_sent_again() {
        use std::sync::atomic::Ordering;
        let (url, seen) = answering(504).await;
        let response = send_to(&url, Method::Post).await;
        assert_eq!(response.status, 504);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a 504 POST must not be resent"
        );
    }

    #[tokio::test]
    async fn idempotent_requests_and_429s_are_retried() {
        use std::sync::atomic::Ordering;
        let retries = OutboundOptions::default().max_retries as usize;
        let (url, seen) = answering(503).await;
        assert_eq!(send_to(&url, Method::Put).await.status, 503);
        assert_eq!(seen.load(Ordering::SeqCst), 1 + retries);
        let (url, seen) = answering(429).await;
        assert_eq!(send_to(&url, Method::Post).await.status, 429);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1 + retries,
            "a 429 was refused unprocessed"
        );
    }

    #[test]
    fn only_unsent_or_idempotent_requests_may_be_resent() {
        assert!(may_resend(&reqwest::Method::GET, false));
        assert!(may_resend(&reqwest::Method::DELETE, false));
        assert!(!may_resend(&reqwest::Method::POST, false));
        assert!(!may_resend(&reqwest::Method::PATCH, false));
        assert!(may_resend(&reqwest::Method::POST, true));
    }
}
