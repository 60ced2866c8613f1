//! The OpenAPI 3.1 description of the HTTP API (`GET /openapi.json`) and the reference page
//! that renders it (`GET /docs`).
//!
//! The description is generated from the code: every handler carries a `#[utoipa::path]`
//! naming its method, path, body and answers with the very types it uses, and the feature
//! routers register handlers through `utoipa_axum::routes!`, which builds the axum route
//! *from* that annotation. One list therefore builds both the router and the document
//! ([`crate::api::routes`]). What is the same for every route of a kind — the security
//! scheme of a path prefix, undeclared path parameters, the errors any authenticated route
//! or any route with a body can answer — is added here by [`Conventions`], so the
//! annotations carry only what is particular to their route.
//!
//! The page is Swagger UI, vendored from npm (`host/assets/api-docs`, pinned in its
//! `package-lock.json`, checked against the package by `check.sh`) and embedded in the
//! binary, so it works on a host without internet access.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};

/// Name of the operator's security scheme (`Authorization: Bearer <operator token>`).
pub(crate) const OPERATOR: &str = "operator_token";
/// Name of the tenant key's header scheme (`X-API-Key: <key>`).
pub(crate) const API_KEY: &str = "api_key";
/// Name of the tenant key's bearer scheme (`Authorization: Bearer <key>`).
pub(crate) const KEY_BEARER: &str = "api_key_bearer";
/// Name of the browsers' scheme for the event stream (`Sec-WebSocket-Protocol`).
pub(crate) const WS_SUBPROTOCOL: &str = "api_key_subprotocol";

/// The document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "posbridge",
        description = "Multi-tenant POS integration hub. Conventions (money in minor units, \
            phones in E.164, paging, idempotency, rate limits) are in docs/api.md; every \
            error is `{\"error\":{\"code\",\"message\"}}` with a stable `code`.",
    ),
    tags(
        (name = "tenants", description = "Operator: tenants and their API keys."),
        (name = "plugins", description = "Operator: POS plugins (WebAssembly components)."),
        (name = "operations", description = "Operator: dead letters and the cluster."),
        (name = "terminal", description = "Tenant: what tills and kitchen screens use."),
        (name = "ledger", description = "Tenant: gift cards and loyalty points."),
        (name = "orders", description = "Tenant: online orders and daily reports."),
        (name = "menus", description = "Tenant: venue menus, availability (86) and store status."),
        (name = "pos", description = "Tenant: POS integrations and their sales."),
        (name = "rules", description = "Tenant: spend rules, tiers and performances."),
        (name = "customers", description = "Tenant: customer profiles."),
        (name = "hooks", description = "Tenant: hook bindings."),
        (name = "events", description = "Tenant: the live event stream (WebSocket)."),
        (name = "public", description = "Provider webhooks, probes, metrics and this reference."),
    ),
    components(schemas(ErrorBody, StreamFrame, HelloFrame, EventFrame, ResetFrame)),
)]
struct BaseDoc;

/// The document with no paths yet: [`crate::api::routes`] adds them.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    let mut doc = BaseDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The served document: [`publish`]ed by [`crate::api::router`] from the same routers
/// it serves, so this module needs nothing of the API's (and stays out of its imports).
static DOCUMENT: OnceLock<String> = OnceLock::new();

/// Finishes the routers' document (the conventions shared by every route) and keeps it
/// for `GET /openapi.json`. The first router built wins; every router of one binary
/// describes the same routes.
pub(crate) fn publish(mut doc: utoipa::openapi::OpenApi) {
    finish(&mut doc);
    // Serialising a document of plain data cannot fail; an empty object is still JSON.
    let json = serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned());
    let _ = DOCUMENT.set(json);
}

/// Applies what is the same for every route of a kind (security, error responses).
pub(crate) fn finish(doc: &mut utoipa::openapi::OpenApi) {
    Conventions.modify(doc);
}

/// A text frame of the event stream (`GET /ws/pos/{tenant}`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "documents the frames in the OpenAPI schema; the socket writes them pre-serialised"
)]
pub(crate) enum StreamFrame {
    /// The first frame.
    Hello(HelloFrame),
    /// An event.
    Event(EventFrame),
    /// The replay was impossible.
    Reset(ResetFrame),
}

/// First frame of the event stream.
#[derive(Serialize, ToSchema)]
pub(crate) struct HelloFrame {
    /// Always `hello`.
    #[schema(example = "hello")]
    pub r#type: String,
    /// The tenant's slug.
    pub tenant: String,
    /// The tenant's newest sequence number when the socket opened.
    pub last_seq: i64,
}

/// One event of the tenant's log (see docs/api.md for each type's `data`).
#[derive(Serialize, ToSchema)]
pub(crate) struct EventFrame {
    /// Per-tenant sequence number; a jump is an event terminals do not receive.
    pub seq: i64,
    /// Event type: `new_order`, `order_updated`, `gift_card_purchased`, `gift_card_redeemed`,
    /// `loyalty_updated`, `daily_report_uploaded`, `transaction_recorded`, `tier_unlocked`,
    /// `menu_updated`, `item_availability_changed`, `store_status_changed`,
    /// `order_injected`, `order_injection_failed`, `custom.<kind>`.
    pub r#type: String,
    /// Append time, RFC 3339 UTC with microseconds.
    pub at: String,
    /// The event's data.
    pub data: serde_json::Value,
}

/// Sent instead of the replay when `since` is older than the retained history: reload over
/// REST, then carry on from `last_seq`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ResetFrame {
    /// Always `reset`.
    #[schema(example = "reset")]
    pub r#type: String,
    /// The tenant's newest sequence number.
    pub last_seq: i64,
}

/// The conventions every route of a kind shares, applied to the whole document.
pub(crate) struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            OPERATOR,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator token (printed on first start or set with \
                         --operator-token); every /admin route.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key of the tenant in the path (`pbk_…`). Terminal keys may use the \
                 terminal routes and the stream; manager keys everything of the tenant. An \
                 optional X-Tenant-ID header must equal the path's tenant.",
            ))),
        );
        components.add_security_scheme(
            KEY_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The same tenant API key as Authorization: Bearer."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            WS_SUBPROTOCOL,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Sec-WebSocket-Protocol",
                "Browsers, which cannot set headers on a WebSocket, open the stream with \
                 `new WebSocket(url, [\"posbridge.v1\", \"key.\" + key])`: the server \
                 accepts `posbridge.v1` and reads the key from the `key.` entry.",
            ))),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in operations.into_iter().flatten() {
                apply(path, op);
            }
        }
    }
}

/// Who may call a path, from its prefix (authentication is by prefix, see docs/api.md).
#[derive(Clone, Copy, PartialEq)]
enum Audience {
    Operator,
    Tenant,
    Stream,
    Public,
}

fn audience(path: &str) -> Audience {
    if path.starts_with("/admin/") {
        Audience::Operator
    } else if path.starts_with("/api/{tenant}/") {
        Audience::Tenant
    } else if path.starts_with("/ws/") {
        Audience::Stream
    } else {
        Audience::Public
    }
}

/// Adds one operation's conventional parts: security, path parameters, common errors.
fn apply(path: &str, op: &mut Operation) {
    let who = audience(path);
    let requirements: &[&str] = match who {
        Audience::Operator => &[OPERATOR],
        Audience::Tenant => &[API_KEY, KEY_BEARER],
        Audience::Stream => &[API_KEY, KEY_BEARER, WS_SUBPROTOCOL],
        Audience::Public => &[],
    };
    if !requirements.is_empty() && op.security.is_none() {
        op.security = Some(
            requirements
                .iter()
                .map(|name| SecurityRequirement::new(*name, Vec::<String>::new()))
                .collect(),
        );
    }
    let params = op.parameters.get_or_insert_with(Vec::new);
    for name in path_params(path) {
        let declared = params
            .iter()
            .any(|p| p.name == name && p.parameter_in == ParameterIn::Path);
        if !declared {
            params.push(path_param(name));
        }
    }
    let has_path_params = !params.is_empty();
    if op.parameters.as_ref().is_some_and(Vec::is_empty) {
        op.parameters = None;
    }
    let has_body = op.request_body.is_some();
    let public_probe = who == Audience::Public && !path.starts_with("/webhooks/");
    let mut add = |status: &str, text: &str| {
        if !op.responses.responses.contains_key(status) {
            op.responses
                .responses
                .insert(status.to_owned(), error_response(text));
        }
    };
    match who {
        Audience::Operator => {
            add(
                "401",
                "`unauthorized`: no operator token, or not this host's.",
            );
        }
        Audience::Tenant | Audience::Stream => {
            add(
                "401",
                "`unauthorized`: no API key, or an unknown or revoked one.",
            );
            add(
                "403",
                "`forbidden`: a key of another tenant, an X-Tenant-ID that differs from the \
                 path, or a terminal key on a manager route; `tenant_suspended`.",
            );
            add(
                "429",
                "`rate_limited`: this key is over its rate; see Retry-After.",
            );
        }
        Audience::Public => {}
    }
    if has_body {
        add(
            "400",
            "`invalid_json`, `invalid_body`: the body could not be read; `invalid_path`; \
             `invalid_idempotency_key`.",
        );
        add(
            "413",
            "`payload_too_large`: the body is over the route's limit.",
        );
        add("415", "`unsupported_media_type`: the body is not JSON.");
        add(
            "422",
            "`invalid_request`: wrong types, missing or unknown fields; \
             `unsupported_character`: a NUL in the body or a parameter.",
        );
    } else if has_path_params {
        add(
            "400",
            "`invalid_path`: a path segment that is not UTF-8 once decoded; `bad_request`: \
             a bad query string.",
        );
        add(
            "422",
            "`unsupported_character`: a NUL in a path or query parameter.",
        );
    }
    if !public_probe {
        add(
            "503",
            "`database_unavailable` (Retry-After: 2) or `transaction_conflict` \
             (Retry-After: 1): nothing was written, send the request again.",
        );
    }
    // Annotations name an error's status and codes; its body is always the error shape.
    for (status, response) in op.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response) {
            if response.content.is_empty() {
                if let RefOr::T(standard) = error_response("") {
                    response.content = standard.content;
                }
            }
        }
    }
}

/// The `{name}` segments of a path template.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn path_param(name: &str) -> Parameter {
    let description = match name {
        "tenant" => "The tenant's slug; the API key must belong to it.",
        "venue" => "The venue (location) id the integration was connected with.",
        "phone" => "A phone number, normalised to E.164 with the tenant's country.",
        "code" => "A gift-card code (case-insensitive).",
        _ => "An identifier from an earlier answer.",
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(utoipa::openapi::Required::True)
        .description(Some(description))
        .schema(Some(<String as utoipa::PartialSchema>::schema()))
        .build()
}

/// A documented error answer with the standard body.
pub(crate) fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::<Schema>::Ref(Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

/// `GET /openapi.json` and the reference page.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_asset))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "public",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.",
        content_type = "application/json", body = serde_json::Value)),
)]
async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.get().map_or("{}", String::as_str),
    )
        .into_response()
}

/// The page files, embedded in the binary.
const INDEX_HTML: &str = include_str!("../assets/api-docs/index.html");
const INIT_JS: &str = include_str!("../assets/api-docs/init.js");
const BUNDLE_JS: &[u8] = include_bytes!("../assets/api-docs/vendor/swagger-ui-bundle.js");
const STYLESHEET: &[u8] = include_bytes!("../assets/api-docs/vendor/swagger-ui.css");
const LICENSE: &[u8] = include_bytes!("../assets/api-docs/vendor/LICENSE");

/// The API reference, rendered in the browser from `/openapi.json` (no internet needed).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "public",
    responses((status = 200, description = "The reference page.", content_type = "text/html",
        body = String)),
)]
async fn docs_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

/// A file of the reference page: `swagger-ui-bundle.js`, `swagger-ui.css`, `init.js`, or
/// `LICENSE` (Swagger UI's, Apache-2.0).
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "public",
    params(("file" = String, Path, description = "The file's name.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/plain"))),
        (status = 404, description = "`not_found`: no such file."),
    ),
)]
async fn docs_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match file.as_str() {
        "swagger-ui-bundle.js" => ("text/javascript; charset=utf-8", BUNDLE_JS),
        "init.js" => ("text/javascript; charset=utf-8", INIT_JS.as_bytes()),
        "swagger-ui.css" => ("text/css; charset=utf-8", STYLESHEET),
        "LICENSE" => ("text/plain; charset=utf-8", LICENSE),
        _ => return ApiError::not_found("not_found", "no such file").into_response(),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // The files change only with the binary; an hour spares reloads without
            // pinning an old page for long after an upgrade.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The `Idempotency-Key` header of the writes that honour it (see docs/api.md).
impl utoipa::IntoParams for crate::extract::Idempotency {
    fn into_params(_parameter_in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(utoipa::openapi::Required::False)
            .description(Some(
                "1–255 visible ASCII characters. The same key with the same request returns \
                 the first answer again (with `Idempotent-Replayed: true`) and changes \
                 nothing; with a different request it is 422 `idempotency_key_reused`. \
                 Kept 48 hours.",
            ))
            .schema(Some(<String as utoipa::PartialSchema>::schema()))
            .build()]
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use syn::visit::Visit;

    /// Router methods that add a route without a `#[utoipa::path]` behind it.
    const UNDOCUMENTED: [&str; 4] = ["route", "route_service", "nest_service", "fallback_service"];

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Finds calls of [`UNDOCUMENTED`] methods outside `#[cfg(test)]` modules.
    struct RouteCalls<'a> {
        file: &'a Path,
        found: Vec<String>,
    }

    impl<'ast> Visit<'ast> for RouteCalls<'_> {
        fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
            let is_test = module.attrs.iter().any(|a| {
                a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
            });
            if !is_test {
                syn::visit::visit_item_mod(self, module);
            }
        }

        fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
            let name = call.method.to_string();
            if UNDOCUMENTED.contains(&name.as_str()) {
                let line = call.method.span().start().line;
                self.found
                    .push(format!("{}:{line}: .{name}(…)", self.file.display()));
            }
            syn::visit::visit_expr_method_call(self, call);
        }
    }

    /// axum cannot list its routes, so the guarantee that `/openapi.json` lists every
    /// route rests on every route being added through `utoipa_axum::routes!` (which builds
    /// it from the handler's annotation). This fails on any other way of adding one.
    #[test]
    fn every_route_is_registered_with_its_docs() {
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        assert!(files.len() > 50, "found only {} sources", files.len());
        let mut found = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let ast = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
            let mut calls = RouteCalls {
                file,
                found: Vec::new(),
            };
            calls.visit_file(&ast);
            found.extend(calls.found);
        }
        assert!(
            found.is_empty(),
            "routes added without an OpenAPI description; annotate the handler with \
             #[utoipa::path] and register it with utoipa_axum::routes!:\n{}",
            found.join("\n")
        );
    }

    /// The scan above really sees a plain `.route(…)`.
    #[test]
    fn the_scan_finds_a_plain_route() {
        let ast = syn::parse_file(
            "fn routes() -> Router { Router::new().route(\"/x\", get(x)) }\n\
             #[cfg(test)] mod tests { fn t() { Router::new().route(\"/y\", get(y)); } }",
        )
        .expect("parses");
        let mut calls = RouteCalls {
            file: Path::new("example.rs"),
            found: Vec::new(),
        };
        calls.visit_file(&ast);
        assert_eq!(calls.found, vec!["example.rs:1: .route(…)".to_owned()]);
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_convention_applied() {
        let mut doc = crate::api::routes().into_openapi();
        super::finish(&mut doc);
        let doc = serde_json::to_value(doc).expect("serialises");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/api/{tenant}/gift-cards/{code}/deduct"));
        assert!(paths.contains_key("/ws/pos/{tenant}"));
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                for name in super::path_params(path) {
                    assert!(
                        declared.contains(&name),
                        "{method} {path}: {{{name}}} undeclared"
                    );
                }
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{method} {path}: no success answer"
                );
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            response["content"]["application/json"]["schema"].is_object(),
                            "{method} {path}: {status} has no error body"
                        );
                    }
                }
                if path.starts_with("/admin/") || path.starts_with("/api/") {
                    assert!(op["security"].is_array(), "{method} {path}: no security");
                    assert!(responses.contains_key("401"), "{method} {path}: no 401");
                }
            }
        }
    }
}
