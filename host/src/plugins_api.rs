//! `/admin/plugins…`: what operators do with plugins while the host serves traffic.
//!
//! The HTTP front end of [`crate::plugins`]. The runtime itself knows neither axum nor
//! `AppState` (a test below keeps it so), which lets the CLI and the benches drive it
//! without a server and keeps its contract the method calls on [`crate::plugins::Plugins`].

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::plugins::{AdminError, InstallError, PluginLogView, PluginStatus, TrustedSigner};
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
            InstallError::Unsigned => ApiError::unprocessable("plugin_unsigned", message),
            InstallError::UntrustedSigner { .. } => {
                ApiError::unprocessable("plugin_signer_untrusted", message)
            }
            InstallError::BadSignature(_) => {
                ApiError::unprocessable("plugin_signature_invalid", message)
            }
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
            AdminError::InvalidSigner(_) => ApiError::unprocessable("invalid_signer", message),
            AdminError::SignerNotFound(_) => ApiError::not_found("signer_not_found", message),
            AdminError::SignerKeyTrusted { .. } => {
                ApiError::conflict("signer_key_trusted", message)
            }
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
        .route("/plugins/{id}/logs", get(logs))
        .route("/plugin-signers", get(list_signers).put(put_signer))
        .route(
            "/plugin-signers/{name}",
            get(show_signer).delete(delete_signer),
        )
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

async fn logs(
    State(app): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginLogView>> {
    app.plugins
        .logs(&id)
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(id).into())
}

#[derive(Serialize)]
struct SignerList {
    signers: Vec<TrustedSigner>,
}

async fn list_signers(State(app): State<AppState>, _op: Operator) -> ApiResult<Json<SignerList>> {
    Ok(Json(SignerList {
        signers: app.plugins.signers().await?,
    }))
}

async fn show_signer(
    State(app): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<TrustedSigner>> {
    app.plugins
        .signers()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map(Json)
        .ok_or_else(|| AdminError::SignerNotFound(name).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSigner {
    name: String,
    public_key: String,
}

/// Trusts a key under a name (replacing the key of an existing name): 201 when the name
/// is new, 200 when it was replaced.
async fn put_signer(
    State(app): State<AppState>,
    _op: Operator,
    body: ApiJson<PutSigner>,
) -> ApiResult<(StatusCode, Json<TrustedSigner>)> {
    let (signer, created) = app
        .plugins
        .trust_signer(&body.value.name, &body.value.public_key)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(signer)))
}

async fn delete_signer(
    State(app): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    app.plugins.distrust_signer(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every Rust source of the plugin runtime: `src/plugins.rs` and all under `src/plugins/`.
    fn runtime_sources() -> Vec<PathBuf> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("plugins.rs")];
        let mut dirs = vec![src.join("plugins")];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files
    }

    #[test]
    fn plugin_runtime_knows_neither_axum_nor_app_state() {
        let files = runtime_sources();
        assert!(files.len() > 10, "found only {files:?}");
        let mut offenders = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            for (n, line) in text.lines().enumerate() {
                if line.contains("axum") || line.contains("AppState") {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "the plugin runtime must not depend on the HTTP layer; put handlers in \
             plugins_api.rs and pass the runtime what it needs:\n{}",
            offenders.join("\n")
        );
    }
}
