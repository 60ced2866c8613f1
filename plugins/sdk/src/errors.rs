//! HTTP answers and transport failures → [`ProviderError`].
//!
//! | upstream | provider error |
//! |---|---|
//! | 401 | `invalid-credentials` |
//! | 403 | `permission-denied` |
//! | 404 | `location-not-found` when the caller says so ([`NotFound::Location`]), else `upstream` (as in 0.2) |
//! | 408 | `upstream` (the server gave up waiting for our request: nothing was done, resend) |
//! | 409 | `conflict` (a duplicate or a stale version: look the object up instead) |
//! | 429 | `rate-limited`, with `Retry-After` (seconds or an HTTP date) in milliseconds |
//! | any other 4xx | `rejected { status, code, message, field }`: permanent, in the provider's words |
//! | 5xx, 1xx/3xx | `upstream` |
//! | `denied` (host allowlist) | `permission-denied` with the host's message |
//! | timeout | `timed-out`: the outcome is unknown, a write may have landed |
//! | connection, too-large, invalid-request | `upstream` |
//!
//! Contract 0.2 had no `rejected`, `timed-out` or `conflict`: there, every 4xx but
//! 401/403/404/429 and every timeout were `upstream`. The 401/403/404/429 and 5xx answers
//! map as they always did.
//!
//! Messages carry the status and the upstream's own error text when it sends one (Square's
//! `errors[0].detail`, Toast's `message`, OAuth's `error_description`, …), never request
//! headers or credentials. A rejection's `code` and `field` come from the body too
//! ([`rejection_details`]): Square's `errors[0].code` / `errors[0].field`, Toast's `code` (or
//! `messageKey`) / `fieldName`, OAuth's `error`.

use serde_json::Value;

use crate::http::{HttpError, Response};
use crate::types::{ProviderError, RateLimit, Rejection, Timestamp};

/// What a 404 means for the request at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// The request read the connection's location: 404 → `location-not-found`.
    Location,
    /// Anything else: 404 → `upstream`.
    Upstream,
}

/// Passes a 2xx response through; maps anything else with [`from_response`].
pub fn check(response: Response, not_found: NotFound) -> Result<Response, ProviderError> {
    if response.is_success() {
        Ok(response)
    } else {
        Err(from_response(&response, not_found))
    }
}

/// The provider error a non-2xx response means (see the module's table).
pub fn from_response(response: &Response, not_found: NotFound) -> ProviderError {
    let status = response.status;
    let described = |what: &str| match upstream_detail(&response.body) {
        Some(detail) => format!("{what} (HTTP {status}): {detail}"),
        None => format!("{what} (HTTP {status})"),
    };
    match status {
        401 => ProviderError::InvalidCredentials(described("credentials refused")),
        403 => ProviderError::PermissionDenied(described("permission denied")),
        404 if not_found == NotFound::Location => {
            ProviderError::LocationNotFound(described("location not found"))
        }
        429 => ProviderError::RateLimited(RateLimit {
            message: described("rate limited"),
            retry_after_ms: response
                .header("retry-after")
                .and_then(|value| parse_retry_after(value, crate::clock::now())),
        }),
        // A 404 on anything but the location keeps its 0.2 meaning (a path the upstream
        // lost, worth retrying); callers that look a single object up handle 404 themselves.
        404 => ProviderError::Upstream(described("upstream refused the request")),
        408 => ProviderError::Upstream(described("upstream timed out waiting for the request")),
        409 => ProviderError::Conflict(described("conflict")),
        400..=499 => {
            let (code, field) = rejection_details(&response.body);
            ProviderError::Rejected(Rejection {
                status: Some(status),
                code,
                message: described("upstream refused the request"),
                field,
            })
        }
        200..=299 => ProviderError::Upstream(format!("unexpected success status HTTP {status}")),
        500..=599 => ProviderError::Upstream(described("upstream failed")),
        _ => ProviderError::Upstream(described("upstream refused the request")),
    }
}

/// The provider error a transport failure means.
pub fn from_http_error(error: HttpError) -> ProviderError {
    match error {
        HttpError::Denied(message) => ProviderError::PermissionDenied(message),
        HttpError::Timeout => ProviderError::TimedOut(
            "no answer from upstream in time: the request may have been carried out".into(),
        ),
        HttpError::Connection(message) => {
            ProviderError::Upstream(format!("could not reach upstream: {message}"))
        }
        HttpError::TooLarge => {
            ProviderError::Upstream("upstream response exceeded the host's size cap".into())
        }
        HttpError::InvalidRequest(message) => {
            ProviderError::Upstream(format!("invalid request: {message}"))
        }
    }
}

impl From<HttpError> for ProviderError {
    fn from(error: HttpError) -> Self {
        from_http_error(error)
    }
}

/// A `Retry-After` value → milliseconds to wait from `now` (epoch ms): either delay-seconds
/// (`"120"`) or an HTTP date (`"Fri, 30 Jul 2021 11:57:46 GMT"`; a past date → 0). `None` if
/// unparseable.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u64>()
            .ok()
            .map(|secs| secs.saturating_mul(1000));
    }
    let at = crate::time::parse_http_date(value).ok()?;
    Some(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
}

/// The upstream's own error text in a response body, if any: a JSON error field, else the
/// first 200 characters of the text.
pub fn upstream_detail(body: &[u8]) -> Option<String> {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        if let Some(detail) = json_detail(&json) {
            return Some(shorten(&detail));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then(|| shorten(&text))
}

/// The provider's error code and the field it blames, from an error body: Square's
/// `errors[0].code` and `errors[0].field`, Toast's `code` (a number; else `messageKey`) and
/// `fieldName`, OAuth's `error`. Each is `None` when the body does not say.
pub fn rejection_details(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |v: Option<&Value>| match v? {
        Value::String(s) if !s.trim().is_empty() => Some(shorten(s.trim())),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let first_error = json.get("errors").and_then(|e| e.get(0));
    let code = text(first_error.and_then(|e| e.get("code")))
        .or_else(|| text(json.get("code")))
        .or_else(|| text(json.get("messageKey")))
        .or_else(|| text(json.get("error")));
    let field = text(first_error.and_then(|e| e.get("field")))
        .or_else(|| text(json.get("fieldName")))
        .or_else(|| text(json.get("field")));
    (code, field)
}

fn json_detail(json: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let first_error = json.get("errors").and_then(|e| e.get(0));
    let candidates = [
        first_error.and_then(|e| e.get("detail")),
        first_error.and_then(|e| e.get("message")),
        json.get("message"),
        json.get("error_description"),
        json.get("detail"),
        json.get("error").and_then(|e| e.get("message")),
        json.get("error"),
    ];
    candidates.into_iter().flatten().find_map(text)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn maps_statuses() {
        let square = r#"{"errors":[{"category":"AUTHENTICATION_ERROR","code":"UNAUTHORIZED","detail":"This request could not be authorized."}]}"#;
        match from_response(&response(401, &[], square), NotFound::Upstream) {
            ProviderError::InvalidCredentials(m) => {
                assert_eq!(
                    m,
                    "credentials refused (HTTP 401): This request could not be authorized."
                )
            }
            other => panic!("{other:?}"),
        }
        let toast = r#"{"status":403,"code":10003,"message":"Restaurant access denied"}"#;
        assert_eq!(
            from_response(&response(403, &[], toast), NotFound::Upstream),
            ProviderError::PermissionDenied(
                "permission denied (HTTP 403): Restaurant access denied".into()
            )
        );
        assert!(matches!(
            from_response(&response(404, &[], ""), NotFound::Location),
            ProviderError::LocationNotFound(m) if m == "location not found (HTTP 404)"
        ));
        assert!(matches!(
            from_response(&response(404, &[], ""), NotFound::Upstream),
            ProviderError::Upstream(_)
        ));
        assert!(matches!(
            from_response(&response(503, &[], "<html>\n  Service   Unavailable</html>"), NotFound::Upstream),
            ProviderError::Upstream(m) if m == "upstream failed (HTTP 503): <html> Service Unavailable</html>"
        ));
        assert_eq!(
            from_response(
                &response(
                    400,
                    &[],
                    r#"{"error":"invalid_grant","error_description":"bad code"}"#
                ),
                NotFound::Upstream
            ),
            ProviderError::Rejected(Rejection {
                status: Some(400),
                code: Some("invalid_grant".into()),
                message: "upstream refused the request (HTTP 400): bad code".into(),
                field: None,
            })
        );
        let square = r#"{"errors":[{"category":"INVALID_REQUEST_ERROR","code":"INVALID_VALUE","detail":"Expected a string","field":"order.line_items[0].quantity"}]}"#;
        assert_eq!(
            from_response(&response(400, &[], square), NotFound::Upstream),
            ProviderError::Rejected(Rejection {
                status: Some(400),
                code: Some("INVALID_VALUE".into()),
                message: "upstream refused the request (HTTP 400): Expected a string".into(),
                field: Some("order.line_items[0].quantity".into()),
            })
        );
        let toast = r#"{"status":400,"code":10004,"message":"Menu item not found","messageKey":"MENU_ITEM_NOT_FOUND","fieldName":"checks[0].selections[0].item.guid","requestId":"r1"}"#;
        assert_eq!(
            from_response(&response(422, &[], toast), NotFound::Location),
            ProviderError::Rejected(Rejection {
                status: Some(422),
                code: Some("10004".into()),
                message: "upstream refused the request (HTTP 422): Menu item not found".into(),
                field: Some("checks[0].selections[0].item.guid".into()),
            })
        );
        assert!(matches!(
            from_response(&response(409, &[], r#"{"message":"duplicate externalId"}"#), NotFound::Upstream),
            ProviderError::Conflict(m) if m == "conflict (HTTP 409): duplicate externalId"
        ));
        assert!(matches!(
            from_response(&response(408, &[], ""), NotFound::Upstream),
            ProviderError::Upstream(_)
        ));
        assert_eq!(rejection_details(b"not json"), (None, None));
        let ok = check(response(200, &[], "{}"), NotFound::Location).unwrap();
        assert_eq!(ok.status, 200);
        assert!(check(response(500, &[], ""), NotFound::Location).is_err());
    }

    #[test]
    fn rate_limits() {
        crate::testing::set_now(1_627_646_266_000);
        let err = from_response(
            &response(429, &[("Retry-After", "7")], ""),
            NotFound::Upstream,
        );
        assert_eq!(
            err,
            ProviderError::RateLimited(RateLimit {
                message: "rate limited (HTTP 429)".into(),
                retry_after_ms: Some(7000)
            })
        );
        let err = from_response(
            &response(429, &[("retry-after", "Fri, 30 Jul 2021 11:57:56 GMT")], ""),
            NotFound::Upstream,
        );
        assert!(matches!(
            err,
            ProviderError::RateLimited(RateLimit {
                retry_after_ms: Some(10_000),
                ..
            })
        ));
        let err = from_response(&response(429, &[], ""), NotFound::Upstream);
        assert!(matches!(
            err,
            ProviderError::RateLimited(RateLimit {
                retry_after_ms: None,
                ..
            })
        ));
    }

    #[test]
    fn retry_after_values() {
        let now = 1_627_646_266_000;
        assert_eq!(parse_retry_after("0", now), Some(0));
        assert_eq!(parse_retry_after(" 120 ", now), Some(120_000));
        assert_eq!(parse_retry_after("99999999999999999999999", now), None);
        assert_eq!(
            parse_retry_after("Fri, 30 Jul 2021 11:57:46 GMT", now),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Fri, 30 Jul 2021 11:56:00 GMT", now),
            Some(0),
            "past"
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn transport_errors() {
        assert_eq!(
            ProviderError::from(HttpError::Denied("host evil.example is not allowed".into())),
            ProviderError::PermissionDenied("host evil.example is not allowed".into())
        );
        assert!(matches!(
            from_http_error(HttpError::Timeout),
            ProviderError::TimedOut(_)
        ));
        for e in [
            HttpError::Connection("tls".into()),
            HttpError::TooLarge,
            HttpError::InvalidRequest("bad url".into()),
        ] {
            assert!(matches!(from_http_error(e), ProviderError::Upstream(_)));
        }
    }

    #[test]
    fn details_are_short() {
        let long = "x".repeat(500);
        let d = upstream_detail(long.as_bytes()).unwrap();
        assert_eq!(d.chars().count(), 201);
        assert_eq!(upstream_detail(b""), None);
        assert_eq!(upstream_detail(b"{}"), Some("{}".into()));
    }
}
