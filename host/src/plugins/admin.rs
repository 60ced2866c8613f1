//! `/admin/plugins…`: what operators do with plugins while the host serves traffic.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{AdminError, InstallError, PluginStatus};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Largest component accepted by upload. Bundled providers are a few hundred KiB.
const MAX_COMPONENT_BYTES: usize = 32 * 1024 * 1024;

impl From<InstallError> for ApiError {
    fn from(err: InstallError) -> Self {
        let message = err.to_string();
        match err {
            InstallError::NotWasm | InstallError::CoreModule | InstallError::Invalid(_) => {
                ApiError::unprocessable("invalid_plugin", message)
            }
            InstallError::VersionExists { .. } => ApiError::conflict("version_exists", message),
            InstallError::KindMismatch { .. } => ApiError::conflict("kind_mismatch", message),
            InstallError::Store(e) => e.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        let message = err.to_string();
        match err {
            AdminError::NotFound(_) => ApiError::not_found("plugin_not_found", message),
            AdminError::VersionNotFound(..) => ApiError::not_found("version_not_found", message),
            AdminError::VersionActive(..) => ApiError::conflict("version_active", message),
            AdminError::InvalidHosts(_) => ApiError::unprocessable("invalid_hosts", message),
            AdminError::InvalidLimits(_) => ApiError::unprocessable("invalid_limits", message),
            AdminError::Store(e) => e.into(),
        }
    }
}

/// The operator's plugin routes.
pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/plugins",
            get(list)
                .post(install)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route("/plugins/{id}", get(show))
        .route("/plugins/{id}/hosts", put(set_hosts))
        .route("/plugins/{id}/limits", put(set_limits))
        .route("/plugins/{id}/activate", post(activate))
        .route("/plugins/{id}/disable", post(disable))
        .route("/plugins/{id}/versions/{version}", delete(delete_version))
}

#[derive(Serialize)]
struct PluginList {
    plugins: Vec<PluginStatus>,
}

async fn list(State(app): State<AppState>, _op: Operator) -> Json<PluginList> {
    Json(PluginList {
        plugins: app.plugins.list(),
    })
}

async fn show(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginStatus>> {
    app.plugins
        .status(&id)
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(id).into())
}

async fn install(
    State(app): State<AppState>,
    _op: Operator,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PluginStatus>)> {
    let status = app.plugins.install(body.to_vec(), "upload").await?;
    Ok((StatusCode::CREATED, Json(status)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hosts {
    allow: Vec<String>,
}

async fn set_hosts(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
    body: ApiJson<Hosts>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(app.plugins.set_hosts(&id, body.value.allow).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    cpu_ms: u64,
    memory_mb: u64,
}

async fn set_limits(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
    body: ApiJson<Limits>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(
        app.plugins
            .set_limits(&id, body.value.cpu_ms, body.value.memory_mb)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    version: String,
}

async fn activate(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
    body: ApiJson<Activate>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(app.plugins.activate(&id, &body.value.version).await?))
}

async fn disable(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(app.plugins.disable(&id).await?))
}

async fn delete_version(
    State(app): State<AppState>,
    _op: Operator,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app.plugins.delete_version(&id, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}
