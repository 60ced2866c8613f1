//! `/admin/plugins…`: what operators do with plugins while the host serves traffic.
//!
//! The HTTP front end of [`crate::plugins`]. The runtime itself knows neither axum nor
//! `AppState` (a test below keeps it so), which lets the CLI and the benches drive it
//! without a server and keeps its contract the method calls on [`crate::plugins::Plugins`].

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, Operator};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::plugins::{
    AdminError, InstallError, PluginLogView, PluginStatus, Plugins, TrustedSigner,
};

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
pub(crate) fn admin_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Plugins: FromRef<S>,
{
    let (schemas, paths, plugins) = routes!(list, install);
    OpenApiRouter::new()
        .routes((
            schemas,
            paths,
            plugins.layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        ))
        .routes(routes!(show))
        .routes(routes!(set_hosts))
        .routes(routes!(set_limits))
        .routes(routes!(activate))
        .routes(routes!(disable))
        .routes(routes!(delete_version))
        .routes(routes!(logs))
        .routes(routes!(list_signers, put_signer))
        .routes(routes!(show_signer, delete_signer))
}

/// Answer of `GET /admin/plugins`.
#[derive(Serialize, utoipa::ToSchema)]
struct PluginList {
    plugins: Vec<PluginStatus>,
}

/// Lists the installed plugins with their versions, state, limits and call statistics.
#[utoipa::path(get, path = "/plugins", tag = "plugins", responses(
    (status = 200, description = "The plugins.", body = PluginList),
))]
async fn list(State(plugins): State<Plugins>, _op: Operator) -> Json<PluginList> {
    Json(PluginList {
        plugins: plugins.list(),
    })
}

/// One plugin.
#[utoipa::path(get, path = "/plugins/{id}", tag = "plugins", responses(
    (status = 200, description = "The plugin.", body = PluginStatus),
    (status = 404, description = "`plugin_not_found`."),
))]
async fn show(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginStatus>> {
    plugins
        .status(&id)
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(id).into())
}

/// Uploads a plugin version (a WebAssembly component, up to 32 MiB) and makes it serve.
#[utoipa::path(post, path = "/plugins", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component's bytes."),
    responses(
    (status = 201, description = "Installed and active.", body = PluginStatus),
    (status = 409, description = "`version_exists`: this id and version is installed; `kind_mismatch`: the id is a plugin of the other kind."),
    (status = 413, description = "`payload_too_large`: over 32 MiB."),
    (status = 422, description = "`invalid_plugin`: not a component of a supported contract; `plugin_signature_invalid`: a signature that does not verify; `plugin_unsigned`, `plugin_signer_untrusted`: refused under `--require-signed-plugins`."),
))]
async fn install(
    State(plugins): State<Plugins>,
    _op: Operator,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PluginStatus>)> {
    let status = plugins.install(body.to_vec(), "upload").await?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// Body of `PUT /admin/plugins/{id}/hosts`: the hosts the operator approves beyond the declared ones.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Hosts {
    allow: Vec<String>,
}

/// Sets the hosts the operator approves for the plugin's outbound HTTP, beyond the ones it declares.
#[utoipa::path(put, path = "/plugins/{id}/hosts", tag = "plugins", request_body = Hosts, responses(
    (status = 200, description = "The plugin.", body = PluginStatus),
    (status = 404, description = "`plugin_not_found`."),
    (status = 422, description = "`invalid_hosts`; `invalid_request`."),
))]
async fn set_hosts(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(id): Path<String>,
    body: ApiJson<Hosts>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(plugins.set_hosts(&id, body.value.allow).await?))
}

/// Body of `PUT /admin/plugins/{id}/limits`: CPU deadline per call (ms) and memory cap (MiB).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Limits {
    cpu_ms: u64,
    memory_mb: u64,
}

/// Sets the plugin's CPU deadline per call and memory cap.
#[utoipa::path(put, path = "/plugins/{id}/limits", tag = "plugins", request_body = Limits, responses(
    (status = 200, description = "The plugin.", body = PluginStatus),
    (status = 404, description = "`plugin_not_found`."),
    (status = 422, description = "`invalid_limits`; `invalid_request`."),
))]
async fn set_limits(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(id): Path<String>,
    body: ApiJson<Limits>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(
        plugins
            .set_limits(&id, body.value.cpu_ms, body.value.memory_mb)
            .await?,
    ))
}

/// Body of `POST /admin/plugins/{id}/activate`: the installed version to serve.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Activate {
    version: String,
}

/// Makes an installed version serve (a rollback is the activation of an older one); lifts a quarantine.
#[utoipa::path(post, path = "/plugins/{id}/activate", tag = "plugins", request_body = Activate, responses(
    (status = 200, description = "The plugin.", body = PluginStatus),
    (status = 404, description = "`plugin_not_found`, `version_not_found`."),
))]
async fn activate(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(id): Path<String>,
    body: ApiJson<Activate>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(plugins.activate(&id, &body.value.version).await?))
}

/// Turns the plugin off; calls fail with `plugin_unavailable` until a version is activated.
#[utoipa::path(post, path = "/plugins/{id}/disable", tag = "plugins", responses(
    (status = 200, description = "The plugin.", body = PluginStatus),
    (status = 404, description = "`plugin_not_found`."),
))]
async fn disable(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginStatus>> {
    Ok(Json(plugins.disable(&id).await?))
}

/// Deletes an installed version that is not serving.
#[utoipa::path(delete, path = "/plugins/{id}/versions/{version}", tag = "plugins", responses(
    (status = 204, description = "Deleted."),
    (status = 404, description = "`plugin_not_found`, `version_not_found`."),
    (status = 409, description = "`version_active`: activate another version first."),
))]
async fn delete_version(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    plugins.delete_version(&id, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The plugin's recent log lines on this host.
#[utoipa::path(get, path = "/plugins/{id}/logs", tag = "plugins", responses(
    (status = 200, description = "Recent lines (bounded, rate-limited per plugin), oldest first.", body = PluginLogView),
    (status = 404, description = "`plugin_not_found`."),
))]
async fn logs(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginLogView>> {
    plugins
        .logs(&id)
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(id).into())
}

/// Answer of `GET /admin/plugin-signers`.
#[derive(Serialize, utoipa::ToSchema)]
struct SignerList {
    signers: Vec<TrustedSigner>,
}

/// The keys trusted to sign plugins.
#[utoipa::path(get, path = "/plugin-signers", tag = "plugins", responses(
    (status = 200, description = "The trusted signers.", body = SignerList),
))]
async fn list_signers(
    State(plugins): State<Plugins>,
    _op: Operator,
) -> ApiResult<Json<SignerList>> {
    Ok(Json(SignerList {
        signers: plugins.signers().await?,
    }))
}

/// One trusted signer.
#[utoipa::path(get, path = "/plugin-signers/{name}", tag = "plugins", responses(
    (status = 200, description = "The signer.", body = TrustedSigner),
    (status = 404, description = "`signer_not_found`."),
))]
async fn show_signer(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<TrustedSigner>> {
    plugins
        .signers()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map(Json)
        .ok_or_else(|| AdminError::SignerNotFound(name).into())
}

/// Body of `PUT /admin/plugin-signers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutSigner {
    name: String,
    public_key: String,
}

/// Trusts a key under a name (replacing the key of an existing name): 201 when the name
/// is new, 200 when it was replaced.
#[utoipa::path(put, path = "/plugin-signers", tag = "plugins", request_body = PutSigner, responses(
    (status = 201, description = "A new name trusted.", body = TrustedSigner),
    (status = 200, description = "The name's key replaced.", body = TrustedSigner),
    (status = 409, description = "`signer_key_trusted`: the key is trusted under another name."),
    (status = 422, description = "`invalid_signer`: a bad name or key; `invalid_request`."),
))]
async fn put_signer(
    State(plugins): State<Plugins>,
    _op: Operator,
    body: ApiJson<PutSigner>,
) -> ApiResult<(StatusCode, Json<TrustedSigner>)> {
    let (signer, created) = plugins
        .trust_signer(&body.value.name, &body.value.public_key)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(signer)))
}

/// Stops trusting a key; versions it signed stay installed.
#[utoipa::path(delete, path = "/plugin-signers/{name}", tag = "plugins", responses(
    (status = 204, description = "No longer trusted."),
    (status = 404, description = "`signer_not_found`."),
))]
async fn delete_signer(
    State(plugins): State<Plugins>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    plugins.distrust_signer(&name).await?;
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
