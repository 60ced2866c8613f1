//! POS provider integrations on top of plugins: validating credentials against a location
//! (and, in later steps, connecting venues, syncing and webhooks).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::ManagerCaller;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::plugins::contract::{Connection, Environment, LocationInfo, ProviderError};
use crate::plugins::{CallContext, CallError, Plugins};
use crate::state::AppState;

/// Body of `POST /api/{tenant}/pos/validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// Provider plugin id (`square`, `toast`, `local-pos`, or any installed provider).
    pub provider: String,
    /// Credential fields by name, as the provider's manifest lists them.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// The provider's location id.
    pub location_id: String,
    /// Upstream environment (default production).
    #[serde(default)]
    pub environment: Environment,
    /// Base URL override; its host must be allowed for the plugin.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// A failed provider operation, as the API reports it.
#[derive(Debug)]
pub struct ProviderFailure(ApiError, Option<u64>);

impl IntoResponse for ProviderFailure {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        if let Some(ms) = self.1 {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<ApiError> for ProviderFailure {
    fn from(err: ApiError) -> Self {
        ProviderFailure(err, None)
    }
}

impl From<ProviderError> for ProviderFailure {
    fn from(err: ProviderError) -> Self {
        let message = err.to_string();
        match err {
            ProviderError::InvalidCredentials(_) => {
                ApiError::unprocessable("invalid_credentials", message).into()
            }
            ProviderError::LocationNotFound(_) => {
                ApiError::not_found("location_not_found", message).into()
            }
            ProviderError::PermissionDenied(_) => {
                ApiError::forbidden_code("permission_denied", message).into()
            }
            ProviderError::RateLimited { retry_after_ms, .. } => ProviderFailure(
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
                retry_after_ms,
            ),
            ProviderError::Upstream(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message).into()
            }
            ProviderError::BadPayload(_) => ApiError::unprocessable("bad_payload", message).into(),
            ProviderError::Unsupported(_) => ApiError::unprocessable("unsupported", message).into(),
        }
    }
}

impl From<CallError> for ProviderFailure {
    fn from(err: CallError) -> Self {
        let message = err.to_string();
        match err {
            CallError::NotInstalled(_) | CallError::WrongKind { .. } => {
                ApiError::unprocessable("unknown_provider", message).into()
            }
            CallError::Unavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                message,
            )
            .into(),
            CallError::Timeout(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "plugin_timeout", message).into()
            }
            CallError::OutOfMemory(_) | CallError::Trapped { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "plugin_failed", message).into()
            }
        }
    }
}

/// Builds the connection for a call, checking required credentials and the base URL.
pub fn connection(
    plugins: &Plugins,
    provider: &str,
    credentials: &BTreeMap<String, String>,
    location_id: &str,
    environment: Environment,
    base_url: Option<&str>,
) -> Result<Connection, ProviderFailure> {
    let manifest = plugins.manifest(provider).ok_or_else(|| {
        ApiError::unprocessable(
            "unknown_provider",
            format!("no provider plugin {provider:?} is active"),
        )
    })?;
    if manifest.kind != crate::plugins::contract::PluginKind::Provider {
        return Err(ApiError::unprocessable(
            "unknown_provider",
            format!("{provider:?} is not a provider"),
        )
        .into());
    }
    for field in manifest.credential_fields.iter().filter(|f| f.required) {
        if credentials.get(&field.name).is_none_or(|v| v.is_empty()) {
            return Err(ApiError::unprocessable(
                "missing_credentials",
                format!(
                    "{provider} needs the credential {:?} ({})",
                    field.name, field.label
                ),
            )
            .into());
        }
    }
    if location_id.trim().is_empty() || location_id.len() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "location_id must be 1-200 characters",
        )
        .into());
    }
    if let Some(url) = base_url {
        plugins.allows(provider, url).map_err(|why| {
            ApiError::unprocessable(
                "host_not_approved",
                format!("base_url: {why}; an operator can approve it with PUT /admin/plugins/{provider}/hosts"),
            )
        })?;
    }
    Ok(Connection {
        credentials: credentials
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        location_id: location_id.to_owned(),
        environment,
        base_url: base_url.map(str::to_owned),
    })
}

/// `/api/{tenant}/pos/…` routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/pos/validate", post(validate))
}

async fn validate(
    State(app): State<AppState>,
    ManagerCaller(caller): ManagerCaller,
    body: ApiJson<ValidateRequest>,
) -> Result<Json<LocationInfo>, ProviderFailure> {
    let req = body.value;
    let conn = connection(
        &app.plugins,
        &req.provider,
        &req.credentials,
        &req.location_id,
        req.environment,
        req.base_url.as_deref(),
    )?;
    let ctx = CallContext {
        tenant_id: caller.scope.tenant_id().to_owned(),
        integration_id: String::new(),
    };
    let location = app.plugins.validate(&req.provider, &ctx, &conn).await??;
    Ok(Json(location))
}
