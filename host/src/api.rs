//! Router assembly: the per-feature routers, the JSON fallbacks and the cross-cutting layers.
//! No handler lives here.

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{self, payload_too_large, MAX_BODY_BYTES};
use crate::state::AppState;
use crate::{
    api_keys, hooks, ledger, metrics, openapi, orders, plugins_api, providers, reports, rules,
    tenancy, terminals,
};

/// The whole HTTP surface of the host.
pub(crate) fn router(state: AppState) -> Router {
    let (routes, doc) = routes().split_for_parts();
    openapi::publish(doc);
    routes
        // After every route above, so it wraps them all: parameters the databases cannot
        // store are refused before any handler or authentication sees them.
        .route_layer(middleware::from_fn(extract::check_params))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every route with its OpenAPI description. Feature routers register handlers with
/// `utoipa_axum::routes!`, which makes the axum route from the handler's `#[utoipa::path]`,
/// so this one list builds both the router ([`router`]) and `/openapi.json`
/// ([`crate::openapi::publish`]).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let admin = tenancy::admin_routes()
        .merge(api_keys::admin_routes())
        .merge(plugins_api::admin_routes())
        .merge(crate::dead_letters_api::admin_routes())
        .merge(terminals::cluster_admin_routes());
    let tenant = terminals::tenant_routes()
        .merge(ledger::routes())
        .merge(orders::routes())
        .merge(crate::menus::routes())
        .merge(crate::availability::routes())
        .merge(reports::routes())
        .merge(providers::routes())
        .merge(rules::routes())
        .merge(crate::customers::routes())
        .merge(hooks::routes());
    OpenApiRouter::with_openapi(openapi::base())
        .nest("/admin", admin)
        .nest("/api/{tenant}", tenant)
        .merge(terminals::stream_routes())
        .merge(providers::webhook_routes())
        .routes(routes!(metrics::render))
        .routes(routes!(liveness))
        .routes(routes!(readiness))
        .merge(openapi::routes())
        .merge(crate::console::routes())
}

/// Answer of `GET /healthz`.
#[derive(Serialize, ToSchema)]
struct Liveness {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process is alive and answering (do not restart it).
#[utoipa::path(get, path = "/healthz", tag = "public",
    responses((status = 200, description = "Alive.", body = Liveness)))]
async fn liveness() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// How long readiness waits for the database: a probe must answer before the load
/// balancer's own timeout (commonly 1–5 s), and a database slower than this is not ready.
const READINESS_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Answer of `GET /readyz`.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// What was checked.
    checks: ReadinessChecks,
}

/// The checks behind a readiness answer.
#[derive(Serialize, ToSchema)]
struct ReadinessChecks {
    /// `ok`, `migrations_pending` or `unavailable`.
    database: &'static str,
    /// `ok`, `pending` or `unknown` (database unreachable).
    migrations: &'static str,
    /// The plugin runtime.
    plugins: PluginReadiness,
}

/// The plugin runtime's part of readiness.
#[derive(Serialize, ToSchema)]
struct PluginReadiness {
    /// Always `ok`: the listener opens only once the runtime has started.
    status: &'static str,
    /// Plugins with an active version.
    loaded: usize,
}

/// `GET /readyz`: 200 when this host can serve (database reachable, every migration of
/// this build applied, plugin runtime started), 503 naming what is not. Unlike
/// `/healthz` (the process is alive: do not restart it), a failing readiness means "send
/// traffic elsewhere for now".
#[utoipa::path(get, path = "/readyz", tag = "public", responses(
    (status = 200, description = "Ready to serve.", body = Readiness),
    (status = 503, description = "Not ready (see `checks`); Retry-After: 2.", body = Readiness),
))]
async fn readiness(State(state): State<AppState>) -> Response {
    let database = match state.store.ready(READINESS_DB_TIMEOUT).await {
        Ok(true) => "ok",
        Ok(false) => "migrations_pending",
        Err(err) => {
            tracing::warn!(database = %crate::store::target(), error = %err, "readiness: database unreachable");
            "unavailable"
        }
    };
    // The listener opens only after the plugin runtime started and loaded its catalog.
    let plugins = state
        .plugins
        .list()
        .iter()
        .filter(|p| p.active_version.is_some())
        .count();
    let ready = database == "ok";
    let migrations = if database == "migrations_pending" {
        "pending"
    } else if ready {
        "ok"
    } else {
        "unknown"
    };
    let body = Json(Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks: ReadinessChecks {
            database,
            migrations,
            plugins: PluginReadiness {
                status: "ok",
                loaded: plugins,
            },
        },
    });
    if ready {
        (StatusCode::OK, body).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            body,
        )
            .into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::internal().into_response()
}

/// Largest framework-generated error text carried into the JSON message.
const MAX_ERROR_TEXT: usize = 4096;

/// Rewrites any error response that is not already JSON (framework rejections such as a bad
/// query string or a failed WebSocket upgrade) into the standard error shape.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return payload_too_large().into_response();
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    };
    let mut rebuilt = ApiError::new(status, code, message).into_response();
    // Keep headers such as `Allow` or `Sec-WebSocket-Version` that explain the error.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}
