//! Integrations: a tenant's venue connected to a provider, with sealed credentials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::ProviderFailure;
use crate::auth::TenantScope;
use crate::error::ApiError;
use crate::plugins::contract::{Connection, Environment, LocationInfo};
use crate::providers::ProvidersState;
use crate::store::{new_id, now_micros, rfc3339, StoreError};
use crate::vault::Sealed;

/// Field names used as associated data when sealing.
pub(super) const CREDENTIALS_FIELD: &str = "credentials";
pub(super) const WEBHOOK_KEY_FIELD: &str = "webhook_signature_key";

/// Default polling interval: 5 minutes keeps well inside every provider's rate limits while
/// webhooks carry the real-time path.
const DEFAULT_SYNC_INTERVAL_S: i64 = 300;

/// Body of `POST /api/{tenant}/pos/connect`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectRequest {
    /// The venue within the tenant (lowercase letters, digits, '-').
    pub venue: String,
    /// Provider plugin id.
    pub provider: String,
    /// Credential fields (none for `local-pos`).
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// Provider location id (defaults to the venue for providers that have none).
    #[serde(default)]
    pub location_id: Option<String>,
    /// Upstream environment.
    #[serde(default)]
    pub environment: Environment,
    /// Base URL override (must be allowed for the plugin).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Secret the provider signs webhooks with.
    #[serde(default)]
    pub webhook_signature_key: Option<String>,
    /// Public URL the provider posts webhooks to (and, for Square, signs).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Polling interval in seconds (default 300).
    #[serde(default)]
    pub sync_interval_s: Option<i64>,
}

/// An integration as the API shows it: never a secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Integration {
    /// Id (also in the webhook URL).
    pub id: String,
    /// Venue.
    pub venue: String,
    /// Provider plugin id.
    pub provider: String,
    /// Provider location id.
    pub location_id: String,
    /// Environment.
    pub environment: Environment,
    /// Base URL override.
    pub base_url: Option<String>,
    /// Where the provider should post webhooks.
    pub webhook_url: Option<String>,
    /// Whether a webhook signature key is stored.
    pub webhook_signature_key_set: bool,
    /// CONNECTED, DISCONNECTED or ERROR.
    pub status: String,
    /// Polling interval.
    pub sync_interval_s: i64,
    /// Location metadata from the provider.
    pub location: Option<LocationInfo>,
    /// The venue's time zone (provider's, else the tenant's).
    pub timezone: String,
    /// The venue's currency.
    pub currency: String,
    /// Last successful sync.
    pub last_sync_at: Option<String>,
    /// Sales are synced up to here.
    pub synced_until: Option<String>,
    /// Last sync error.
    pub last_error: Option<String>,
    /// Failed syncs in a row.
    pub consecutive_failures: i64,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    #[serde(skip)]
    pub(super) tenant_id: String,
    #[serde(skip)]
    pub(super) credentials: Option<Sealed>,
    #[serde(skip)]
    pub(super) webhook_key: Option<Sealed>,
}

const COLUMNS: &str = "id, tenant_id, venue, provider, location_id, environment, base_url, webhook_url, status, sync_interval_s, credentials_key_id, credentials_sealed, webhook_key_id, webhook_key_sealed, location, timezone, currency, synced_until, last_sync_at, last_error, consecutive_failures, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Integration, sqlx::Error> {
    let sealed = |id: &str, bytes: &str| -> Result<Option<Sealed>, sqlx::Error> {
        let key_id: Option<String> = row.try_get(id)?;
        let data: Option<Vec<u8>> = row.try_get(bytes)?;
        Ok(key_id
            .zip(data)
            .map(|(key_id, bytes)| Sealed { key_id, bytes }))
    };
    let location: Option<String> = row.try_get("location")?;
    let environment: String = row.try_get("environment")?;
    let webhook_key = sealed("webhook_key_id", "webhook_key_sealed")?;
    Ok(Integration {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        venue: row.try_get("venue")?,
        provider: row.try_get("provider")?,
        location_id: row.try_get("location_id")?,
        environment: if environment == "sandbox" {
            Environment::Sandbox
        } else {
            Environment::Production
        },
        base_url: row.try_get("base_url")?,
        webhook_url: row.try_get("webhook_url")?,
        webhook_signature_key_set: webhook_key.is_some(),
        status: row.try_get::<String, _>("status")?.to_ascii_uppercase(),
        sync_interval_s: row.try_get("sync_interval_s")?,
        location: location.and_then(|l| serde_json::from_str(&l).ok()),
        timezone: row.try_get("timezone")?,
        currency: row.try_get("currency")?,
        last_sync_at: row.try_get::<Option<i64>, _>("last_sync_at")?.map(rfc3339),
        synced_until: row.try_get::<Option<i64>, _>("synced_until")?.map(rfc3339),
        last_error: row.try_get("last_error")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
        credentials: sealed("credentials_key_id", "credentials_sealed")?,
        webhook_key,
    })
}

/// The venue's integration, scoped to the tenant.
pub(super) async fn by_venue(
    app: &ProvidersState,
    scope: &TenantScope,
    venue: &str,
) -> Result<Integration, ProviderFailure> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM integrations WHERE tenant_id = $1 AND venue = $2"
    ))
    .bind(scope.tenant_id())
    .bind(venue)
    .fetch_optional(app.store.reader())
    .await
    .map_err(ApiError::from)?
    .ok_or_else(|| {
        ApiError::not_found(
            "venue_not_connected",
            format!("venue {venue:?} has no integration"),
        )
    })?;
    Ok(from_row(&row).map_err(ApiError::from)?)
}

/// An integration by id (webhooks, the scheduler).
pub(super) async fn by_id(
    app: &ProvidersState,
    id: &str,
) -> Result<Option<Integration>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM integrations WHERE id = $1"))
        .bind(id)
        .fetch_optional(app.store.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Every integration of the tenant, connected or not, by venue name: the list a
/// manager picks a venue from (the console's venues page).
pub(super) async fn list(
    app: &ProvidersState,
    scope: &TenantScope,
) -> Result<Vec<Integration>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM integrations WHERE tenant_id = $1 ORDER BY venue"
    ))
    .bind(scope.tenant_id())
    .fetch_all(app.store.reader())
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Decrypts the credentials into a connection for one call.
pub(super) fn connection_of(
    app: &ProvidersState,
    integration: &Integration,
) -> Result<Connection, ProviderFailure> {
    let credentials: BTreeMap<String, String> = match &integration.credentials {
        Some(sealed) => {
            let plain = app
                .vault
                .open(&integration.tenant_id, &integration.id, CREDENTIALS_FIELD, sealed)
                .map_err(|e| {
                    tracing::error!(integration = %integration.id, error = %e, "credentials do not open");
                    ApiError::internal()
                })?;
            serde_json::from_slice(&plain).map_err(|_| ApiError::internal())?
        }
        None => BTreeMap::new(),
    };
    Ok(Connection {
        credentials: credentials.into_iter().collect(),
        location_id: integration.location_id.clone(),
        environment: integration.environment,
        base_url: integration.base_url.clone(),
    })
}

/// The webhook signature key, decrypted.
pub(super) fn webhook_key_of(app: &ProvidersState, integration: &Integration) -> Option<String> {
    let sealed = integration.webhook_key.as_ref()?;
    let plain = app
        .vault
        .open(&integration.tenant_id, &integration.id, WEBHOOK_KEY_FIELD, sealed)
        .map_err(|e| tracing::error!(integration = %integration.id, error = %e, "webhook key does not open"))
        .ok()?;
    String::from_utf8(plain).ok()
}

fn valid_venue(venue: &str) -> bool {
    crate::extract::is_valid_slug(venue)
}

/// Validates through the plugin, seals the secrets and creates or updates the venue's
/// integration.
pub(super) async fn connect(
    app: &ProvidersState,
    scope: &TenantScope,
    req: ConnectRequest,
) -> Result<Integration, ProviderFailure> {
    if !valid_venue(&req.venue) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "venue must be 1-63 characters of a-z, 0-9 and '-'",
        )
        .into());
    }
    let interval = req.sync_interval_s.unwrap_or(DEFAULT_SYNC_INTERVAL_S);
    if !(1..=86_400).contains(&interval) {
        return Err(
            ApiError::unprocessable("invalid_request", "sync_interval_s must be 1-86400").into(),
        );
    }
    if req
        .webhook_signature_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 1024)
    {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "webhook_signature_key must be 1-1024 characters",
        )
        .into());
    }
    if let Some(url) = &req.webhook_url {
        if url::Url::parse(url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "webhook_url must be an absolute http(s) URL",
            )
            .into());
        }
    }
    let location_id = req.location_id.clone().unwrap_or_else(|| req.venue.clone());
    let conn = super::connection(
        &app.plugins,
        &req.provider,
        &req.credentials,
        &location_id,
        req.environment,
        req.base_url.as_deref(),
    )?;
    let ctx = crate::plugins::CallContext {
        tenant_id: scope.tenant_id().to_owned(),
        integration_id: String::new(),
    };
    let location = app.plugins.validate(&req.provider, &ctx, &conn).await??;
    let manifest = app.plugins.manifest(&req.provider);
    let polls = manifest
        .as_ref()
        .is_some_and(|m| m.capabilities.iter().any(|c| c == "fetch-transactions"));

    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM integrations WHERE tenant_id = $1 AND venue = $2")
            .bind(scope.tenant_id())
            .bind(&req.venue)
            .fetch_optional(app.store.reader())
            .await
            .map_err(ApiError::from)?;
    let id = existing.clone().unwrap_or_else(new_id);
    let seal = |field: &str, plain: &[u8]| {
        app.vault
            .seal(scope.tenant_id(), &id, field, plain)
            .map_err(|e| {
                tracing::error!(error = %e, "sealing failed");
                ProviderFailure::from(ApiError::internal())
            })
    };
    let creds_json = serde_json::to_vec(&req.credentials).map_err(|_| ApiError::internal())?;
    let creds = if req.credentials.is_empty() {
        None
    } else {
        Some(seal(CREDENTIALS_FIELD, &creds_json)?)
    };
    let webhook_key = match &req.webhook_signature_key {
        Some(k) => Some(seal(WEBHOOK_KEY_FIELD, k.as_bytes())?),
        None => None,
    };
    let webhook_url = req.webhook_url.clone().unwrap_or_else(|| {
        format!(
            "{}/webhooks/{}/{}",
            app.public_url.trim_end_matches('/'),
            req.provider,
            id
        )
    });
    let timezone = location
        .timezone
        .clone()
        .filter(|tz| jiff::tz::TimeZone::get(tz).is_ok())
        .unwrap_or_else(|| scope.timezone().to_owned());
    let currency = location
        .currency
        .as_deref()
        .and_then(crate::money::parse_currency)
        .unwrap_or_else(|| scope.currency().to_owned());
    let now = now_micros();
    let location_json = serde_json::to_string(&location).map_err(|_| ApiError::internal())?;
    let environment = match req.environment {
        Environment::Sandbox => "sandbox",
        Environment::Production => "production",
    };
    let next_sync = polls.then_some(now);
    let result = if existing.is_some() {
        // Reconnecting keeps the sync position, so history is not fetched twice.
        sqlx::query(
            "UPDATE integrations SET provider = $1, location_id = $2, environment = $3, base_url = $4, webhook_url = $5,
               status = 'connected', sync_interval_s = $6, credentials_key_id = $7, credentials_sealed = $8,
               webhook_key_id = COALESCE($9, webhook_key_id), webhook_key_sealed = COALESCE($10, webhook_key_sealed),
               location = $11, timezone = $12, currency = $13, last_error = NULL, consecutive_failures = 0,
               next_sync_at = $14, updated_at = $15
             WHERE id = $16 AND tenant_id = $17",
        )
        .bind(&req.provider)
        .bind(&location_id)
        .bind(environment)
        .bind(req.base_url.as_deref())
        .bind(&webhook_url)
        .bind(interval)
        .bind(creds.as_ref().map(|s| s.key_id.clone()))
        .bind(creds.as_ref().map(|s| s.bytes.clone()))
        .bind(webhook_key.as_ref().map(|s| s.key_id.clone()))
        .bind(webhook_key.as_ref().map(|s| s.bytes.clone()))
        .bind(&location_json)
        .bind(&timezone)
        .bind(&currency)
        .bind(next_sync)
        .bind(now)
        .bind(&id)
        .bind(scope.tenant_id())
        .execute(app.store.writer())
        .await
    } else {
        sqlx::query(&format!(
            "INSERT INTO integrations ({COLUMNS}, next_sync_at) VALUES
             ($1, $2, $3, $4, $5, $6, $7, $8, 'connected', $9, $10, $11, $12, $13, $14, $15, $16, NULL, NULL, NULL, 0, $17, $17, $18)"
        ))
        .bind(&id)
        .bind(scope.tenant_id())
        .bind(&req.venue)
        .bind(&req.provider)
        .bind(&location_id)
        .bind(environment)
        .bind(req.base_url.as_deref())
        .bind(&webhook_url)
        .bind(interval)
        .bind(creds.as_ref().map(|s| s.key_id.clone()))
        .bind(creds.as_ref().map(|s| s.bytes.clone()))
        .bind(webhook_key.as_ref().map(|s| s.key_id.clone()))
        .bind(webhook_key.as_ref().map(|s| s.bytes.clone()))
        .bind(&location_json)
        .bind(&timezone)
        .bind(&currency)
        .bind(now)
        .bind(next_sync)
        .execute(app.store.writer())
        .await
    };
    result.map_err(ApiError::from)?;
    tracing::info!(tenant = %scope.slug(), venue = %req.venue, provider = %req.provider, integration = %id, "integration connected");
    app.sync_wakeup.wake();
    by_venue(app, scope, &req.venue).await
}

/// Stops syncing and webhook intake for the venue; its data stays.
pub(super) async fn disconnect(
    app: &ProvidersState,
    scope: &TenantScope,
    venue: &str,
) -> Result<Integration, ProviderFailure> {
    let found = sqlx::query(
        "UPDATE integrations SET status = 'disconnected', next_sync_at = NULL, updated_at = $1 WHERE tenant_id = $2 AND venue = $3",
    )
    .bind(now_micros())
    .bind(scope.tenant_id())
    .bind(venue)
    .execute(app.store.writer())
    .await
    .map_err(ApiError::from)?
    .rows_affected();
    if found == 0 {
        return Err(ApiError::not_found(
            "venue_not_connected",
            format!("venue {venue:?} has no integration"),
        )
        .into());
    }
    tracing::info!(tenant = %scope.slug(), %venue, "integration disconnected");
    by_venue(app, scope, venue).await
}

/// One recorded sync run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(super) struct SyncRun {
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// Sales read from the provider.
    pub fetched: i64,
    /// New.
    pub created: i64,
    /// Changed.
    pub updated: i64,
    /// Already known and unchanged (or older than what we have).
    pub duplicates: i64,
    /// Pages.
    pub pages: i64,
    /// Error, if it failed.
    pub error: Option<String>,
}

/// The latest sync runs of an integration, newest first.
pub(super) async fn recent_runs(
    app: &ProvidersState,
    integration_id: &str,
    errors_only: bool,
    limit: i64,
) -> Result<Vec<SyncRun>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT started_at, finished_at, trigger, fetched, created, updated, duplicates, pages, error FROM sync_runs
         WHERE integration_id = $1 {} ORDER BY started_at DESC LIMIT $2",
        if errors_only { "AND error IS NOT NULL" } else { "" }
    ))
    .bind(integration_id)
    .bind(limit)
    .fetch_all(app.store.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SyncRun {
                started_at: rfc3339(r.try_get("started_at")?),
                finished_at: rfc3339(r.try_get("finished_at")?),
                trigger: r.try_get("trigger")?,
                fetched: r.try_get("fetched")?,
                created: r.try_get("created")?,
                updated: r.try_get("updated")?,
                duplicates: r.try_get("duplicates")?,
                pages: r.try_get("pages")?,
                error: r.try_get("error")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}
