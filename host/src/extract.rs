//! Request extractors that turn every kind of bad input into an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Largest request body accepted by any route; bigger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body, parsed strictly, plus the SHA-256 of its raw bytes (for idempotency).
///
/// Malformed JSON → 400 `invalid_json`; JSON of the wrong shape (wrong types, missing or
/// unknown fields, values a type refuses) → 422 `invalid_request`; a non-JSON content type
/// → 415; a body over [`MAX_BODY_BYTES`] → 413.
#[derive(Debug)]
pub struct ApiJson<T> {
    /// The parsed body.
    pub value: T,
    /// SHA-256 of the body exactly as received.
    pub digest: [u8; 32],
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
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
        let value = parse_json(&bytes)?;
        Ok(ApiJson {
            value,
            digest: Sha256::digest(&bytes).into(),
        })
    }
}

/// The 413 answer for oversized bodies.
pub fn payload_too_large() -> ApiError {
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
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
pub struct Idempotency {
    key: Option<String>,
    request_line: String,
}

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl Idempotency {
    /// The key, if the client sent one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Hex SHA-256 over method, path and body digest: what "the same request" means.
    pub fn fingerprint(&self, body_digest: &[u8; 32]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.request_line.as_bytes());
        hasher.update([0]);
        hasher.update(body_digest);
        hex::encode(hasher.finalize())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
