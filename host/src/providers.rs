//! POS provider integrations on top of plugins: validating credentials, connecting venues,
//! syncing sales, receiving webhooks and local POS pushes, and reading sales and revenue.
//!
//! Size: about 660 lines: the provider routes (connect, status, sync now, push, sales and
//! revenue reads, validate) and the error mapping they all share; the work behind each is in
//! `providers/*.rs`.

mod catalog;
mod ingest;
mod integrations;
mod sales;
mod sync;
mod webhooks;

pub(crate) use catalog::CatalogSyncs;
pub(crate) use ingest::IngestCounts;
pub(crate) use integrations::{ConnectRequest, Integration};
pub(crate) use sales::{Period, Revenue};
pub(crate) use sync::retry_dead_letter as retry_sync;
pub(crate) use sync::{spawn_scheduler, SyncStats, SyncWakeup};
pub(crate) use webhooks::{payload as webhook_payload, requeue as retry_webhook};
pub(crate) use webhooks::{spawn_inbox_worker, AckActivity, InboxOptions, InboxWakeup};

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, ManagerCaller, TerminalCaller};
use crate::error::ApiError;
use crate::events::{EventHub, LoggedTx, Writes};
use crate::extract::ApiJson;
use crate::extract::{Idempotency, JsonBody};
use crate::paging::Page;
use crate::plugins::contract::{Connection, Environment, LocationInfo, ProviderError};
use crate::plugins::{CallContext, CallError, Plugins};
use crate::store::Store;
use crate::vault::Vault;

/// The handles provider routes and workers (the sync scheduler, the webhook inbox) use; the
/// composition root builds it from its own state (`FromRef`), so this module does not name
/// that state.
#[derive(Debug, Clone)]
pub(crate) struct ProvidersState {
    /// The database.
    pub store: Store,
    /// Committed events: workers lease integrations and deliveries through it.
    pub hub: EventHub,
    /// The group commit pushed sales are written through.
    pub writes: Writes,
    /// The plugin runtime that talks to providers.
    pub plugins: Plugins,
    /// Master keys sealing credentials and webhook keys.
    pub vault: Arc<Vault>,
    /// Wakes the sync scheduler.
    pub sync_wakeup: SyncWakeup,
    /// Wakes the webhook inbox worker.
    pub inbox_wakeup: InboxWakeup,
    /// Webhook deliveries being acknowledged; the inbox worker lets them go first.
    pub webhook_acks: Arc<AckActivity>,
    /// The host's public base URL, for the webhook URLs handed to providers.
    pub public_url: String,
    /// Webhook inbox tuning.
    pub inbox: InboxOptions,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Webhook-triggered menu syncs, debounced per integration.
    pub catalog_syncs: CatalogSyncs,
}

/// Body of `POST /api/{tenant}/pos/validate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateRequest {
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
pub(crate) struct ProviderFailure(ApiError, Option<u64>);

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
            // The provider's own words go back verbatim: they name what to fix.
            ProviderError::Rejected(_) => {
                ApiError::unprocessable("provider_rejected", message).into()
            }
            ProviderError::TimedOut(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message).into()
            }
            ProviderError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "provider_conflict", message).into()
            }
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
            CallError::Incapable { .. } => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "provider_cannot", message).into()
            }
            CallError::OutOfMemory(_) | CallError::Trapped { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "plugin_failed", message).into()
            }
        }
    }
}

/// Builds the connection for a call, checking required credentials and the base URL.
pub(crate) fn connection(
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

/// `/api/{tenant}/…` routes: integrations (manager) and pushed sales (terminal).
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    ProvidersState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(validate))
        .routes(routes!(providers))
        .routes(routes!(list_integrations))
        .routes(routes!(connect))
        .routes(routes!(status))
        .routes(routes!(disconnect))
        .routes(routes!(sync_now))
        .routes(routes!(transactions))
        .routes(routes!(revenue))
        .routes(routes!(revenue_series))
        .routes(routes!(push))
        .routes(routes!(catalog::sync_menu_route))
}

/// The public webhook route, `/webhooks/{provider}/{integration_id}`.
pub(crate) fn webhook_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    ProvidersState: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(webhooks::receive))
}

/// Connects a venue to a POS provider (credentials are sealed and never shown again).
#[utoipa::path(post, path = "/pos/connect", tag = "pos", request_body = ConnectRequest, responses(
    (status = 200, description = "The integration; register `webhook_url` with the provider.", body = Integration),
    (status = 404, description = "`location_not_found`."),
    (status = 422, description = "`invalid_credentials`, `missing_credentials`, `unknown_provider`, `invalid_request`, `bad_payload`, `unsupported`."),
    (status = 403, description = "`permission_denied`: the provider refused our credentials' permissions; `forbidden`; `tenant_suspended`."),
    (status = 429, description = "`rate_limited`: this key, or the provider, is over its rate; see Retry-After."),
    (status = 502, description = "`upstream_error`: the provider failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`: the plugin is disabled or quarantined; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`plugin_timeout`."),
))]
async fn connect(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    body: ApiJson<ConnectRequest>,
) -> Result<Json<Integration>, ProviderFailure> {
    Ok(Json(
        integrations::connect(&app, &caller.scope, body.value).await?,
    ))
}

/// Answer of `GET /pos/status/{venue}`: the integration with its sync and revenue state.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct StatusView {
    /// The integration.
    #[serde(flatten)]
    integration: Integration,
    /// Sales stored for the venue.
    transaction_count: i64,
    /// The last five failed syncs, newest first.
    recent_sync_errors: Vec<integrations::SyncRun>,
    /// The last sync, failed or not.
    last_sync: Option<integrations::SyncRun>,
    /// Revenue today and in all.
    revenue: RevenueSummary,
}

/// Revenue of a venue today and in all.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct RevenueSummary {
    /// Today so far, venue time.
    today: Revenue,
    /// Everything.
    all: Revenue,
}

/// A venue's integration: status, last sync, recent errors, revenue.
#[utoipa::path(get, path = "/pos/status/{venue}", tag = "pos", responses(
    (status = 200, description = "The status.", body = StatusView),
    (status = 404, description = "`venue_not_connected`."),
    (status = 403, description = "`permission_denied`: the provider refused our credentials' permissions; `forbidden`; `tenant_suspended`."),
    (status = 429, description = "`rate_limited`: this key, or the provider, is over its rate; see Retry-After."),
    (status = 502, description = "`upstream_error`: the provider failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`: the plugin is disabled or quarantined; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`plugin_timeout`."),
))]
async fn status(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<StatusView>, ProviderFailure> {
    let integration = integrations::by_venue(&app, &caller.scope, &venue).await?;
    let transaction_count = sync::transaction_count(&app, &integration.id)
        .await
        .map_err(ApiError::from)?;
    let recent_sync_errors = integrations::recent_runs(&app, &integration.id, true, 5)
        .await
        .map_err(ApiError::from)?;
    let last_sync = integrations::recent_runs(&app, &integration.id, false, 1)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .next();
    let revenue = RevenueSummary {
        today: sales::revenue(&app, &caller.scope, &integration, Period::Day).await?,
        all: sales::revenue(&app, &caller.scope, &integration, Period::All).await?,
    };
    Ok(Json(StatusView {
        integration,
        transaction_count,
        recent_sync_errors,
        last_sync,
        revenue,
    }))
}

/// A provider plugin a venue can connect with: what the connect form asks for.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ProviderView {
    id: String,
    name: String,
    version: String,
    capabilities: Vec<String>,
    credential_fields: Vec<crate::plugins::contract::CredentialField>,
}

/// Answer of `GET /pos/providers`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ProviderList {
    providers: Vec<ProviderView>,
}

/// The active provider plugins and their declared credential fields, so a connect form
/// can be generated without operator access.
#[utoipa::path(get, path = "/pos/providers", tag = "pos", responses(
    (status = 200, description = "The providers a venue can connect with.", body = ProviderList),
))]
async fn providers(
    State(app): State<ProvidersState>,
    ManagerCaller(_caller): ManagerCaller,
) -> Json<ProviderList> {
    let providers: Vec<ProviderView> = app
        .plugins
        .list()
        .into_iter()
        .filter_map(|p| p.manifest)
        .filter(|m| m.kind == crate::plugins::contract::PluginKind::Provider)
        .map(|m| ProviderView {
            id: m.id,
            name: m.name,
            version: m.version,
            capabilities: m.capabilities,
            credential_fields: m.credential_fields,
        })
        .collect();
    Json(ProviderList { providers })
}

/// Answer of `GET /pos/integrations`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct IntegrationList {
    items: Vec<Integration>,
}

/// The tenant's venues with their integration (never a secret).
#[utoipa::path(get, path = "/pos/integrations", tag = "pos", responses(
    (status = 200, description = "Every integration of the tenant, by venue.", body = IntegrationList),
))]
async fn list_integrations(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
) -> Result<Json<IntegrationList>, ApiError> {
    let items = integrations::list(&app, &caller.scope).await?;
    Ok(Json(IntegrationList { items }))
}

/// Disconnects a venue: no more syncs; webhooks answer 410.
#[utoipa::path(post, path = "/pos/disconnect/{venue}", tag = "pos", responses(
    (status = 200, description = "The integration.", body = Integration),
    (status = 404, description = "`venue_not_connected`."),
))]
async fn disconnect(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<Integration>, ProviderFailure> {
    Ok(Json(
        integrations::disconnect(&app, &caller.scope, &venue).await?,
    ))
}

/// Syncs a venue now (providers that poll).
#[utoipa::path(post, path = "/pos/sync/{venue}", tag = "pos", responses(
    (status = 200, description = "What the sync did.", body = SyncStats),
    (status = 404, description = "`venue_not_connected`."),
    (status = 409, description = "`integration_disconnected`; `sync_in_progress`."),
    (status = 422, description = "`unsupported`: the provider pushes its sales; `invalid_credentials`, `bad_payload`."),
    (status = 403, description = "`permission_denied`: the provider refused our credentials' permissions; `forbidden`; `tenant_suspended`."),
    (status = 429, description = "`rate_limited`: this key, or the provider, is over its rate; see Retry-After."),
    (status = 502, description = "`upstream_error`: the provider failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`: the plugin is disabled or quarantined; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`plugin_timeout`."),
))]
async fn sync_now(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<SyncStats>, ProviderFailure> {
    let integration = integrations::by_venue(&app, &caller.scope, &venue).await?;
    if integration.status == "DISCONNECTED" {
        return Err(ApiError::conflict(
            "integration_disconnected",
            "connect the venue again before syncing",
        )
        .into());
    }
    // Refused before a sync run is recorded: asking a push-only provider to poll is a
    // bad request, not a failed sync, and must not put a healthy integration in ERROR.
    let polls = app
        .plugins
        .manifest(&integration.provider)
        .is_some_and(|m| m.capabilities.iter().any(|c| c == "fetch-transactions"));
    if !polls {
        return Err(ApiError::unprocessable(
            "unsupported",
            "this provider pushes its sales; there is nothing to poll",
        )
        .into());
    }
    // A sync whose host died is taken over once its lease runs out (seconds); a live one
    // keeps the venue, and the caller is told to try later.
    match sync::sync_now(&app, &integration.id, "manual").await? {
        Some(stats) => Ok(Json(stats)),
        None => Err(ApiError::conflict(
            "sync_in_progress",
            "a sync of this venue is already running on a live host; try again when it ends",
        )
        .into()),
    }
}

/// A venue's sales, newest first, filtered by time and customer.
#[utoipa::path(get, path = "/pos/transactions/{venue}", tag = "pos", params(sales::TransactionQuery), responses(
    (status = 200, description = "A page of sales.", body = Page<sales::Sale>),
    (status = 400, description = "`invalid_query`: a bad time or cursor; `bad_request`."),
    (status = 404, description = "`venue_not_connected`."),
    (status = 422, description = "`invalid_phone`; `unsupported_character`."),
))]
async fn transactions(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    Query(query): Query<sales::TransactionQuery>,
) -> Result<Json<Page<sales::Sale>>, ProviderFailure> {
    let integration = integrations::by_venue(&app, &caller.scope, &venue).await?;
    Ok(Json(
        sales::transactions(&app, &caller.scope, &integration, query).await?,
    ))
}

/// `?period=` of `GET /pos/revenue/{venue}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RevenueQuery {
    /// Default `all`.
    #[serde(default)]
    period: Period,
}

/// A venue's revenue over a period, in the venue's time zone.
#[utoipa::path(get, path = "/pos/revenue/{venue}", tag = "pos", params(RevenueQuery), responses(
    (status = 200, description = "The revenue.", body = Revenue),
    (status = 404, description = "`venue_not_connected`."),
))]
async fn revenue(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    Query(query): Query<RevenueQuery>,
) -> Result<Json<Revenue>, ProviderFailure> {
    let integration = integrations::by_venue(&app, &caller.scope, &venue).await?;
    Ok(Json(
        sales::revenue(&app, &caller.scope, &integration, query.period).await?,
    ))
}

/// A venue's revenue per day, week or month over a range, every period present, in the
/// venue's calendar: what the console's revenue chart draws.
#[utoipa::path(get, path = "/pos/revenue/{venue}/series", tag = "pos", params(sales::SeriesQuery), responses(
    (status = 200, description = "The series, oldest period first.", body = sales::RevenueSeries),
    (status = 400, description = "`invalid_query`: a date that is not YYYY-MM-DD, `from` after `to`, or more than 367 periods."),
    (status = 404, description = "`venue_not_connected`."),
))]
async fn revenue_series(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    Query(query): Query<sales::SeriesQuery>,
) -> Result<Json<sales::RevenueSeries>, ProviderFailure> {
    let integration = integrations::by_venue(&app, &caller.scope, &venue).await?;
    Ok(Json(
        sales::revenue_series(&app, &caller.scope, &integration, query).await?,
    ))
}

/// Only `venue` is read here; the whole body goes to the venue's provider plugin.
#[derive(Deserialize, utoipa::ToSchema)]
struct PushEnvelope {
    /// The venue whose integration (a push provider such as `local-pos`) parses the rest.
    venue: String,
}

/// `POST /api/{tenant}/transactions`: a local POS pushes its sales in its native format.
/// A local POS pushes its sales in its native format (any key). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/transactions", tag = "pos", request_body(content = PushEnvelope,
        description = "A JSON object with `venue`; the rest is the venue's provider's format."),
    params(crate::extract::Idempotency), responses(
    (status = 200, description = "What was recorded.", body = IngestCounts),
    (status = 404, description = "`venue_not_connected`."),
    (status = 409, description = "`integration_disconnected`."),
    (status = 422, description = "`invalid_transactions`: nothing acceptable; `bad_payload`, `unsupported`, `unknown_provider`, `idempotency_key_reused`, `invalid_request`."),
    (status = 403, description = "`permission_denied`: the provider refused our credentials' permissions; `forbidden`; `tenant_suspended`."),
    (status = 429, description = "`rate_limited`: this key, or the provider, is over its rate; see Retry-After."),
    (status = 502, description = "`upstream_error`: the provider failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`: the plugin is disabled or quarantined; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`plugin_timeout`."),
))]
async fn push(
    State(app): State<ProvidersState>,
    TerminalCaller(caller): TerminalCaller,
    idem: Idempotency,
    body: JsonBody,
) -> Result<Response, ProviderFailure> {
    // Checked like every JSON body (object, no NUL, digests), but handed to the plugin
    // as the bytes the POS sent.
    let JsonBody {
        bytes: body,
        digest,
    } = body;
    let envelope: PushEnvelope = crate::extract::parse_json(&body)?;
    let integration = integrations::by_venue(&app, &caller.scope, &envelope.venue).await?;
    if integration.status == "DISCONNECTED" {
        return Err(
            ApiError::conflict("integration_disconnected", "this venue is disconnected").into(),
        );
    }
    let ctx = CallContext {
        tenant_id: caller.scope.tenant_id().to_owned(),
        integration_id: integration.id.clone(),
    };
    let sales = app
        .plugins
        .parse_push(&integration.provider, &ctx, &body)
        .await??;
    // Shared, not cloned, by every attempt of the transaction.
    let (integration, sales) = (Arc::new(integration), Arc::new(sales));
    let scope = caller.scope.clone();
    Ok(crate::idempotency::execute(
        &app.writes,
        &caller.scope,
        &idem,
        &digest,
        move |tx: &mut LoggedTx| {
            let (integration, sales, scope) = (integration.clone(), sales.clone(), scope.clone());
            Box::pin(async move {
                let target = ingest::IngestTarget {
                    integration_id: &integration.id,
                    venue: &integration.venue,
                    provider: &integration.provider,
                };
                let counts =
                    ingest::ingest(tx, &scope, &target, &sales, ingest::Source::Push).await?;
                if counts.rejected > 0 && counts.created + counts.updated + counts.duplicates == 0 {
                    return Err(ApiError::unprocessable(
                        "invalid_transactions",
                        "no transaction in the push was acceptable",
                    ));
                }
                Ok::<_, ApiError>((
                    StatusCode::OK,
                    serde_json::json!({
                        "created": counts.created,
                        "updated": counts.updated,
                        "duplicates": counts.duplicates,
                        "rejected": counts.rejected,
                    }),
                ))
            })
        },
    )
    .await?)
}

/// Body of `POST /api/{tenant}/customers/{phone}/links`.
/// Checks credentials and a location with the provider, storing nothing.
#[utoipa::path(post, path = "/pos/validate", tag = "pos", request_body = ValidateRequest, responses(
    (status = 200, description = "The location.", body = LocationInfo),
    (status = 404, description = "`location_not_found`."),
    (status = 422, description = "`invalid_credentials`, `missing_credentials`, `unknown_provider`, `invalid_request`, `bad_payload`, `unsupported`."),
    (status = 403, description = "`permission_denied`: the provider refused our credentials' permissions; `forbidden`; `tenant_suspended`."),
    (status = 429, description = "`rate_limited`: this key, or the provider, is over its rate; see Retry-After."),
    (status = 502, description = "`upstream_error`: the provider failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`: the plugin is disabled or quarantined; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`plugin_timeout`."),
))]
async fn validate(
    State(app): State<ProvidersState>,
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

/// A venue's POS, ready for a call: the provider's id, the connection and the call's
/// context. For features outside this module (menus' availability) that talk to the POS.
#[derive(Debug, Clone)]
pub(crate) struct VenuePos {
    /// The provider plugin id.
    pub provider: String,
    /// Connection (credentials opened).
    pub conn: Connection,
    /// The call's context.
    pub ctx: CallContext,
    /// Whether the integration is connected (not disconnected by a manager).
    pub connected: bool,
}

impl VenuePos {
    /// Refuses a disconnected integration with 409 `integration_disconnected`: its POS is
    /// no longer ours to talk to, and writing around it would part the two.
    pub(crate) fn check_connected(&self) -> Result<(), ProviderFailure> {
        if self.connected {
            Ok(())
        } else {
            Err(ApiError::conflict("integration_disconnected", "this venue is disconnected").into())
        }
    }
}

/// The venue's POS, or `None` when the venue has no integration (a venue run through the
/// API alone).
pub(crate) async fn venue_pos(
    app: &ProvidersState,
    scope: &crate::auth::TenantScope,
    venue: &str,
) -> Result<Option<VenuePos>, ProviderFailure> {
    let integration = match integrations::by_venue(app, scope, venue).await {
        Ok(integration) => integration,
        Err(ProviderFailure(e, _)) if e.code == "venue_not_connected" => return Ok(None),
        Err(e) => return Err(e),
    };
    let conn = integrations::connection_of(app, &integration)?;
    Ok(Some(VenuePos {
        connected: integration.status != "DISCONNECTED",
        provider: integration.provider.clone(),
        conn,
        ctx: CallContext {
            tenant_id: scope.tenant_id().to_owned(),
            integration_id: integration.id,
        },
    }))
}
