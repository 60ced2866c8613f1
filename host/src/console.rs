//! `/console`: the web console for operators and tenant managers.
//!
//! The console is plain HTML, CSS and JavaScript modules under `host/console/`, embedded in
//! the binary with `include_bytes!`: no build step beyond `cargo build`, nothing fetched
//! from the internet at run time, and the console always matches the API of the binary
//! that serves it. The browser talks to the ordinary REST API and event stream with the
//! credential the user typed, kept in the tab's `sessionStorage` only.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and connections
//! to this origin only, no inline code, no framing) and an ETag; the file names carry no
//! content hash, so browsers revalidate (`Cache-Control: no-cache`) and get 304 while the
//! binary is unchanged.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

/// One embedded file of the console.
struct Asset {
    /// Path below `/console/`.
    path: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!("../console/", $path)),
            content_type: $content_type,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `host/console/`; a test keeps this list and the directory equal.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("chart.js", JS),
    asset!("operator.js", JS),
    asset!("manager.js", JS),
    asset!("live.js", JS),
];

/// Strong validators of [`ASSETS`], in the same order: a hash of the bytes, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.bytes)[..16])))
        .collect()
});

/// The console's routes: `/console` (and `/console/`) is the page, `/console/{file}` its
/// assets. The page navigates with URL fragments, so no other path is needed.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(index_slash))
        .routes(routes!(file))
}

/// The console's page (signs in with the operator token or a manager key in the browser).
#[utoipa::path(get, path = "/console", tag = "console", responses(
    (status = 200, description = "The console page.", content_type = "text/html", body = String),
    (status = 304, description = "Unchanged since the `If-None-Match` ETag."),
))]
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// The console's page, with a trailing slash.
#[utoipa::path(get, path = "/console/", tag = "console", responses(
    (status = 200, description = "The console page.", content_type = "text/html", body = String),
    (status = 304, description = "Unchanged since the `If-None-Match` ETag."),
))]
async fn index_slash(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// One of the console's embedded files (scripts, styles).
#[utoipa::path(get, path = "/console/{*path}", tag = "console",
    params(("path" = String, Path, description = "The file, e.g. `app.js`.")),
    responses(
    (status = 200, description = "The file, with its content type and an ETag.", body = String),
    (status = 304, description = "Unchanged since the `If-None-Match` ETag."),
    (status = 404, description = "`not_found`: no such file."),
))]
async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::not_found("not_found", "no such console file").into_response();
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(headers)) {
        out.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The policy: everything from this origin only, no inline script or style, no plugins,
/// no framing. `connect-src` names the WebSocket origin explicitly (`'self'` covers
/// `ws:`/`wss:` only in newer browsers), taken from `Host` when it is a plain `host[:port]`.
fn content_security_policy(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let sockets = host
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to `host/console/` but not to [`ASSETS`] would be missing from the
    /// binary (and the other way round fails to compile).
    #[test]
    fn every_console_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("host/console")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn policy_names_the_socket_origin_only_for_a_plain_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let csp = content_security_policy(&headers);
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        headers.insert(header::HOST, HeaderValue::from_static("a; script-src *"));
        let csp = content_security_policy(&headers);
        assert!(csp.contains("connect-src 'self';"), "{csp}");
        assert!(!csp.contains('*'));
    }
}
