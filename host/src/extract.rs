//! Request extractors that turn every kind of bad input into an [`ApiError`].
//!
//! Text the databases cannot both store is refused here, once for every route: PostgreSQL
//! TEXT and JSONB cannot hold the NUL character (U+0000) while SQLite can, so a NUL in any
//! JSON string or key ([`JsonBody`], [`ApiJson`]) or in any path or query parameter
//! ([`check_params`]) gets 422 `unsupported_character` naming where it was, on both
//! backends alike. (Lone surrogates never reach a Rust string: serde_json refuses an
//! unpaired `\uD800` escape as malformed JSON, and percent-decoded invalid UTF-8 in a path
//! is refused as such.)

use std::io::Write;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Largest request body accepted by any route; bigger ones get 413.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Error code of text the databases cannot store (a NUL character).
const UNSUPPORTED_CHARACTER: &str = "unsupported_character";

/// What an idempotent write is fingerprinted with: see [`Idempotency::fingerprints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyDigest {
    /// SHA-256 of the body's canonical serialisation ([`canonical_json`]): equal for equal
    /// JSON values whatever their whitespace and key order, so a client that re-serialises
    /// its retry still gets the first answer.
    pub canonical: [u8; 32],
    /// SHA-256 of the bytes exactly as received: what hosts before the canonical digest
    /// fingerprinted with. Kept so a key stored by such a host (within the idempotency
    /// TTL) still replays a byte-identical retry.
    pub raw: [u8; 32],
}

/// A JSON object body, checked but not yet deserialised: the raw bytes (for routes that
/// hand the body on, like a pushed POS batch) and its [`BodyDigest`].
///
/// Malformed JSON → 400 `invalid_json`; valid JSON that is not an object → 422
/// `invalid_request`; a NUL character in any string or key → 422 `unsupported_character`
/// naming it by JSON pointer; a non-JSON content type → 415; a body over
/// [`MAX_BODY_BYTES`] → 413.
#[derive(Debug)]
pub(crate) struct JsonBody {
    /// The body exactly as received.
    pub bytes: Bytes,
    /// Digests for idempotency.
    pub digest: BodyDigest,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let is_json = content_type
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .map(|mime| {
                    let mime = mime.trim();
                    mime.eq_ignore_ascii_case("application/json")
                        || (mime.starts_with("application/") && mime.ends_with("+json"))
                })
                .unwrap_or(false);
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "request bodies must be application/json",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        let digest = check_json(&bytes)?;
        Ok(JsonBody { bytes, digest })
    }
}

/// A JSON body, parsed strictly, plus its [`BodyDigest`] (for idempotency).
///
/// Everything [`JsonBody`] refuses is refused first; then JSON of the wrong shape (wrong
/// types, missing or unknown fields, values a type refuses) → 422 `invalid_request`.
#[derive(Debug)]
pub(crate) struct ApiJson<T> {
    /// The parsed body.
    pub value: T,
    /// Digests of the body, canonical and raw.
    pub digest: BodyDigest,
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = JsonBody::from_request(req, state).await?;
        // Parsed a second time, from the bytes rather than the checked `Value`, so the
        // type sees exactly what serde_json would give it directly: duplicate fields are
        // still refused and error messages keep their line and column. Bodies are small
        // (≤ 1 MiB, typically under 1 KiB), so the second parse costs microseconds.
        let value = parse_json(&body.bytes)?;
        Ok(ApiJson {
            value,
            digest: body.digest,
        })
    }
}

/// Parses `bytes` as a JSON object without NUL characters and returns its digests.
fn check_json(bytes: &[u8]) -> Result<BodyDigest, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request("invalid_json", format!("malformed JSON: {err}")))?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "the request body must be a JSON object",
        ));
    }
    if let Some(found) = find_nul(&value) {
        return Err(ApiError::unprocessable(
            UNSUPPORTED_CHARACTER,
            format!("{found}: the NUL character (U+0000) is not accepted in any text",),
        ));
    }
    Ok(BodyDigest {
        canonical: Sha256::digest(canonical_json(&value)).into(),
        raw: Sha256::digest(bytes).into(),
    })
}

/// Where a NUL character was found: `"/items/0/name"` for a string value, `"key of
/// /customer/na\u0000me"` for an object key (the NUL spelled as its escape).
fn find_nul(value: &Value) -> Option<String> {
    fn walk(value: &Value, pointer: &mut String) -> Option<String> {
        match value {
            Value::String(s) if s.contains('\0') => Some(pointer_or_root(pointer)),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                let found = walk(item, pointer);
                pointer.truncate(len);
                found
            }),
            Value::Object(map) => map.iter().find_map(|(key, item)| {
                let len = pointer.len();
                pointer.push('/');
                push_pointer_token(pointer, key);
                let found = if key.contains('\0') {
                    Some(format!("key of {pointer}"))
                } else {
                    walk(item, pointer)
                };
                pointer.truncate(len);
                found
            }),
            _ => None,
        }
    }
    // serde_json's parser refuses nesting deeper than 128 levels, so this recursion is
    // bounded by that.
    walk(value, &mut String::new())
}

fn pointer_or_root(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_owned()
    } else {
        pointer.to_owned()
    }
}

/// Appends one RFC 6901 reference token, with a NUL spelled `\u0000` so messages and logs
/// stay printable.
fn push_pointer_token(pointer: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            '\0' => pointer.push_str("\\u0000"),
            c => pointer.push(c),
        }
    }
}

/// The canonical serialisation of a JSON value: object keys sorted (by their UTF-8
/// bytes), no whitespace, strings escaped and numbers printed as serde_json prints them.
/// Two bodies that differ only in whitespace or key order serialise identically.
pub(crate) fn canonical_json(value: &Value) -> Vec<u8> {
    fn write(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                // Sorted here rather than relying on serde_json's map order, which becomes
                // insertion order should any crate in the build enable `preserve_order`.
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    write(item, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            Value::String(s) => write_string(s, out),
            // Numbers, booleans and null: serde_json's own compact spelling.
            scalar => {
                let _ = write!(out, "{scalar}");
            }
        }
    }
    fn write_string(s: &str, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail, and a &str always serialises.
        let _ = serde_json::to_writer(&mut *out, s);
    }
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// Middleware on every route: a path parameter or query parameter (name or value) that
/// holds a NUL character → 422 `unsupported_character` naming the parameter; a path
/// parameter that is not UTF-8 once percent-decoded → 400 `invalid_path`. Runs after
/// routing and before the handler's extractors, so no handler, authentication included,
/// ever sees such a parameter.
pub(crate) async fn check_params(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Err(err) = params_refusal(&mut parts).await {
        return err.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

async fn params_refusal(parts: &mut Parts) -> Result<(), ApiError> {
    use axum::extract::rejection::RawPathParamsRejection;
    match RawPathParams::from_request_parts(parts, &()).await {
        Ok(params) => {
            if let Some((name, _)) = params.iter().find(|(_, value)| value.contains('\0')) {
                return Err(ApiError::unprocessable(
                    UNSUPPORTED_CHARACTER,
                    format!("path parameter `{name}`: the NUL character (U+0000) is not accepted"),
                ));
            }
        }
        Err(RawPathParamsRejection::InvalidUtf8InPathParam(rejection)) => {
            return Err(ApiError::bad_request("invalid_path", rejection.body_text()));
        }
        // A route without parameters.
        Err(_) => {}
    }
    if let Some(query) = parts.uri.query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name.contains('\0') || value.contains('\0') {
                let mut shown = String::new();
                push_pointer_token(&mut shown, &name);
                return Err(ApiError::unprocessable(
                    UNSUPPORTED_CHARACTER,
                    format!(
                        "query parameter `{shown}`: the NUL character (U+0000) is not accepted"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The 413 answer for oversized bodies.
pub(crate) fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

/// Parses a JSON object body with the error classification described on [`ApiJson`].
///
/// Every body of this API is an object; serde's derived structs would also accept an array
/// and fill fields by position (`[100]` as `{"amount":100}`), so anything else is refused.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Data => ApiError::unprocessable("invalid_request", err.to_string()),
            // serde_json reports some shape errors (a number where an enum is expected) as
            // syntax errors: well-formed JSON of the wrong shape is still a 422.
            Category::Syntax | Category::Eof | Category::Io
                if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() =>
            {
                ApiError::unprocessable("invalid_request", err.to_string())
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("invalid_json", format!("malformed JSON: {err}"))
            }
        }
    })
}

/// The optional `Idempotency-Key` header of a money-moving POST, with the request line it
/// was sent on, so a key reused for a different request is detected.
#[derive(Debug, Clone)]
pub(crate) struct Idempotency {
    key: Option<String>,
    request_line: String,
}

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl Idempotency {
    /// The key, if the client sent one.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Hex SHA-256 over method, path and body digest: what "the same request" means.
    /// Returns the fingerprint to store (over the canonical digest) and the legacy one
    /// (over the raw digest) that a stored key may also match; see [`BodyDigest::raw`].
    pub(crate) fn fingerprints(&self, body: &BodyDigest) -> (String, String) {
        let over = |digest: &[u8; 32]| {
            let mut hasher = Sha256::new();
            hasher.update(self.request_line.as_bytes());
            hasher.update([0]);
            hasher.update(digest);
            hex::encode(hasher.finalize())
        };
        (over(&body.canonical), over(&body.raw))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value
                    .to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|k| {
                        !k.is_empty()
                            && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                            && k.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_idempotency_key",
                            "Idempotency-Key must be 1-255 visible ASCII characters",
                        )
                    })?;
                Some(key.to_owned())
            }
        };
        Ok(Idempotency {
            key,
            request_line: format!("{} {}", parts.method, parts.uri.path()),
        })
    }
}

/// Whether `slug` is a valid slug: the URL-safe name of a tenant or a venue (1–63 lowercase
/// letters, digits and inner hyphens). Here rather than in `tenancy` so that venues can be
/// checked without naming tenancy.
pub(crate) fn is_valid_slug(slug: &str) -> bool {
    (1..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_valid_slug("kitchen"));
        assert!(is_valid_slug("the-kitchen-2"));
        assert!(!is_valid_slug(""));
        assert!(!is_valid_slug("Kitchen"));
        assert!(!is_valid_slug("-kitchen"));
        assert!(!is_valid_slug("kitchen_1"));
        assert!(!is_valid_slug(&"a".repeat(64)));
        assert!(is_valid_slug(&"a".repeat(63)));
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        amount: i64,
    }

    #[test]
    fn only_objects_are_bodies() {
        assert!(parse_json::<Body>(br#"{"amount": 1}"#).is_ok());
        let positional = parse_json::<Body>(b"[100]").unwrap_err();
        assert_eq!(
            (positional.status.as_u16(), positional.code),
            (422, "invalid_request")
        );
        assert_eq!(
            parse_json::<Body>(b"[100").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(parse_json::<Body>(b"  ").unwrap_err().code, "invalid_json");
        assert_eq!(
            parse_json::<Body>(br#"{"amount": "1"}"#).unwrap_err().code,
            "invalid_request"
        );
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            #[allow(dead_code)]
            A,
        }
        #[derive(Debug, serde::Deserialize)]
        struct WithEnum {
            #[allow(dead_code)]
            kind: Kind,
        }
        assert_eq!(
            parse_json::<WithEnum>(br#"{"kind": 3}"#).unwrap_err().code,
            "invalid_request"
        );
    }

    fn refusal(bytes: &[u8]) -> ApiError {
        check_json(bytes).expect_err("must be refused")
    }

    #[test]
    fn equal_values_have_one_canonical_digest() {
        let digest = |b: &[u8]| check_json(b).expect("valid body").canonical;
        assert_eq!(digest(br#"{"points": 5}"#), digest(br#"{"points":5}"#));
        assert_eq!(
            digest(br#"{"a":1,"b":{"y":[1,2],"x":"\u0041"}}"#),
            digest(b" {\n \"b\" : {\"x\":\"A\", \"y\":[1, 2]},\t\"a\":1 } "),
            "key order, whitespace and escapes are spelling, not value"
        );
        assert_ne!(digest(br#"{"points":5}"#), digest(br#"{"points":6}"#));
        assert_ne!(digest(br#"{"points":5}"#), digest(br#"{"points":5.0}"#));
        assert_ne!(digest(br#"{"p":[1,2]}"#), digest(br#"{"p":[2,1]}"#));
        assert_ne!(digest(br#"{"p":"1"}"#), digest(br#"{"p":1}"#));
        assert_eq!(
            canonical_json(&serde_json::json!({"b": [true, null], "a": "x\"y"})),
            br#"{"a":"x\"y","b":[true,null]}"#.to_vec()
        );
        // The raw digest still tells spellings apart: it only serves legacy keys.
        let (a, b) = (
            check_json(br#"{"points": 5}"#).expect("valid"),
            check_json(br#"{"points":5}"#).expect("valid"),
        );
        assert_ne!(a.raw, b.raw);
    }

    #[test]
    fn legacy_fingerprints_are_the_raw_ones() {
        let idem = Idempotency {
            key: Some("k".to_owned()),
            request_line: "POST /api/t/loyalty/1/add".to_owned(),
        };
        let body = check_json(br#"{"points": 5}"#).expect("valid");
        let (canonical, legacy) = idem.fingerprints(&body);
        // What hosts before canonical digests stored for the same request.
        let mut hasher = Sha256::new();
        hasher.update(b"POST /api/t/loyalty/1/add");
        hasher.update([0]);
        hasher.update(Sha256::digest(br#"{"points": 5}"#));
        assert_eq!(legacy, hex::encode(hasher.finalize()));
        assert_ne!(canonical, legacy);
        let respelled = check_json(br#"{ "points" :5 }"#).expect("valid");
        assert_eq!(idem.fingerprints(&respelled).0, canonical);
    }

    #[test]
    fn nul_anywhere_is_refused_by_pointer() {
        for (body, pointer) in [
            (&br#"{"amount":1,"order_id":"a\u0000b"}"#[..], "/order_id"),
            (
                br#"{"items":[{"name":"x"},{"name":"\u0000"}]}"#,
                "/items/1/name",
            ),
            (br#"{"a/b":{"c~d":["ok","\u0000"]}}"#, "/a~1b/c~0d/1"),
            (
                br#"{"customer":{"na\u0000me":"Ada"}}"#,
                "key of /customer/na\\u0000me",
            ),
        ] {
            let err = refusal(body);
            assert_eq!(
                (err.status.as_u16(), err.code),
                (422, UNSUPPORTED_CHARACTER),
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(
                err.message.starts_with(&format!("{pointer}:")),
                "{pointer} not named in {:?}",
                err.message
            );
        }
        // Other control characters are stored fine by both databases.
        assert!(check_json(br#"{"a":"\u0001\u001f\u007f\t"}"#).is_ok());
    }

    #[test]
    fn lone_surrogates_and_non_objects_are_client_errors() {
        for body in [
            &br#"{"a":"\ud800"}"#[..],
            br#"{"a":"\udc00x"}"#,
            b"{\"a\":\"\xff\"}",
        ] {
            let err = refusal(body);
            assert_eq!((err.status.as_u16(), err.code), (400, "invalid_json"));
        }
        // A paired surrogate is a real character.
        assert!(check_json(br#"{"a":"\ud83d\ude00"}"#).is_ok());
        for body in [&b"[1]"[..], b"\"x\"", b"5", b"null"] {
            let err = refusal(body);
            assert_eq!((err.status.as_u16(), err.code), (422, "invalid_request"));
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(refusal(deep.as_bytes()).status.as_u16(), 400);
    }

    #[tokio::test]
    async fn parameters_with_nul_are_refused_before_the_handler() {
        use axum::routing::get;
        use tower::ServiceExt;

        let app = axum::Router::new()
            .route("/t/{tenant}/cards/{code}", get(|| async { "handled" }))
            .route("/plain", get(|| async { "handled" }))
            .route_layer(axum::middleware::from_fn(check_params));
        let call = |uri: &'static str| {
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(
                        Request::builder()
                            .uri(uri)
                            .body(axum::body::Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("infallible");
                let status = response.status().as_u16();
                let body = axum::body::to_bytes(response.into_body(), 4096)
                    .await
                    .expect("body");
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(call("/t/a/cards/b").await, (200, "handled".to_owned()));
        assert_eq!(call("/plain?x=1").await, (200, "handled".to_owned()));
        for (uri, named) in [
            ("/t/a%00/cards/b", "`tenant`"),
            ("/t/a/cards/%00", "`code`"),
            ("/t/a/cards/b?cursor=%00x", "`cursor`"),
            // The message spells NUL `\u0000`, and JSON escapes its backslash.
            ("/plain?na%00me=1", "`na\\\\u0000me`"),
        ] {
            let (status, body) = call(uri).await;
            assert_eq!(status, 422, "{uri}: {body}");
            assert!(
                body.contains(UNSUPPORTED_CHARACTER) && body.contains(named),
                "{uri}: {body}"
            );
        }
        let (status, body) = call("/t/a/cards/%FF").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("invalid_path"), "{body}");
    }
}
