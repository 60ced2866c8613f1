//! Tenants: the restaurants (or groups) whose data never mixes. Operator-managed.
//!
//! Creation and reads live here; a tenant's later life (update, suspend, resume, delete)
//! in [`lifecycle`].

pub(crate) mod lifecycle;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, KeyCache, Operator};
use crate::error::{ApiError, ApiResult};
use crate::extract::{is_valid_slug, ApiJson};
use crate::hooks::HooksWakeup;
use crate::money::parse_currency;
use crate::providers::{InboxWakeup, SyncWakeup};
use crate::store::{new_id, now_micros, rfc3339, Store, StoreError};
use crate::terminals::Terminals;

/// A tenant as the operator API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Internal id (UUIDv7); never needed by terminals, which use the slug.
    pub id: String,
    /// URL-safe identifier: lowercase letters, digits and `-`, 1–63 characters.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// ISO-4217 currency of every amount this tenant handles.
    pub currency: String,
    /// IANA time zone, for daily reports and local-time rules.
    pub timezone: String,
    /// ISO-3166 country used to normalise phone numbers given without a country code.
    pub country: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// When the tenant was suspended (RFC 3339), or `null` while it is active. A suspended
    /// tenant's keys are refused and its background work waits; see [`lifecycle`].
    pub suspended_at: Option<String>,
}

/// Body of `POST /admin/tenants` (and the CLI's `tenant create`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// See [`Tenant::slug`].
    pub slug: String,
    /// See [`Tenant::name`].
    pub name: String,
    /// See [`Tenant::currency`].
    pub currency: String,
    /// See [`Tenant::timezone`].
    pub timezone: String,
    /// See [`Tenant::country`]; defaults to `US`.
    #[serde(default)]
    pub country: Option<String>,
}

/// Why a tenant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The slug breaks the format rules.
    #[error("slug must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    InvalidSlug,
    /// Name empty or too long.
    #[error("name must be 1-200 characters")]
    InvalidName,
    /// Not an ISO-4217 code.
    #[error("unknown currency {0:?}: expected an ISO-4217 code such as USD")]
    UnknownCurrency(String),
    /// Not an IANA zone.
    #[error("unknown time zone {0:?}: expected an IANA name such as America/New_York")]
    UnknownTimezone(String),
    /// Not an ISO-3166 alpha-2 code known to the phone-number tables.
    #[error("unknown country {0:?}: expected an ISO-3166 alpha-2 code such as US")]
    UnknownCountry(String),
    /// Another tenant has this slug.
    #[error("a tenant with slug {0:?} already exists")]
    SlugTaken(String),
    /// No tenant has this slug.
    #[error("no tenant with slug {0:?}")]
    NotFound(String),
    /// An update that names no field.
    #[error("nothing to update: give at least one of name, timezone, country")]
    NothingToUpdate,
    /// Deleting a tenant that is not suspended.
    #[error("tenant {0:?} is active: suspend it first (POST /admin/tenants/{0}/suspend), then delete it")]
    NotSuspended(String),
    /// Deleting a tenant while a sync or hook delivery of it still runs.
    #[error("tenant {0:?} still has a sync or hook delivery running; try again in a few seconds")]
    Busy(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TenancyError {
    fn from(err: sqlx::Error) -> Self {
        TenancyError::Store(err.into())
    }
}

impl From<TenancyError> for ApiError {
    fn from(err: TenancyError) -> Self {
        match err {
            TenancyError::SlugTaken(_) => ApiError::conflict("tenant_exists", err.to_string()),
            TenancyError::NotFound(_) => ApiError::not_found("tenant_not_found", err.to_string()),
            TenancyError::NotSuspended(_) => ApiError::conflict("tenant_active", err.to_string()),
            TenancyError::Busy(_) => ApiError::conflict("tenant_busy", err.to_string()),
            TenancyError::Store(e) => e.into(),
            other => ApiError::unprocessable("invalid_tenant", other.to_string()),
        }
    }
}

const TENANT_COLUMNS: &str =
    "id, slug, name, currency, timezone, country, created_at, suspended_at";

/// A trimmed display name of 1–200 characters.
fn valid_name(name: &str) -> Result<&str, TenancyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(TenancyError::InvalidName);
    }
    Ok(name)
}

/// An IANA time zone name known to the bundled database.
fn check_timezone(timezone: &str) -> Result<(), TenancyError> {
    jiff::tz::TimeZone::get(timezone)
        .map(|_| ())
        .map_err(|_| TenancyError::UnknownTimezone(timezone.to_owned()))
}

/// An ISO-3166 alpha-2 code known to the phone-number tables, upper-cased.
fn valid_country(country: &str) -> Result<String, TenancyError> {
    let country = country.trim().to_ascii_uppercase();
    if country.parse::<phonenumber::country::Id>().is_err() {
        return Err(TenancyError::UnknownCountry(country));
    }
    Ok(country)
}

fn tenant_from_row(row: &sqlx::any::AnyRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        currency: row.try_get("currency")?,
        timezone: row.try_get("timezone")?,
        country: row.try_get("country")?,
        created_at: rfc3339(row.try_get("created_at")?),
        suspended_at: row.try_get::<Option<i64>, _>("suspended_at")?.map(rfc3339),
    })
}

/// Operator-level access to the tenant table.
pub struct Tenants;

impl Tenants {
    /// Validates and creates a tenant.
    pub async fn create(store: &Store, new: NewTenant) -> Result<Tenant, TenancyError> {
        if !is_valid_slug(&new.slug) {
            return Err(TenancyError::InvalidSlug);
        }
        let name = valid_name(&new.name)?;
        let currency = parse_currency(&new.currency)
            .ok_or_else(|| TenancyError::UnknownCurrency(new.currency.clone()))?;
        check_timezone(&new.timezone)?;
        let country = valid_country(new.country.as_deref().unwrap_or("US"))?;
        let id = new_id();
        let now = now_micros();
        let result = sqlx::query(
            "INSERT INTO tenants (id, slug, name, currency, timezone, country, last_seq, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(&id)
        .bind(&new.slug)
        .bind(name)
        .bind(&currency)
        .bind(&new.timezone)
        .bind(&country)
        .bind(now)
        .execute(store.writer())
        .await
        .map_err(StoreError::from);
        match result {
            Ok(_) => Ok(Tenant {
                id,
                slug: new.slug,
                name: name.to_owned(),
                currency,
                timezone: new.timezone,
                country,
                created_at: rfc3339(now),
                suspended_at: None,
            }),
            Err(e) if e.is_unique_violation() => Err(TenancyError::SlugTaken(new.slug)),
            Err(e) => Err(e.into()),
        }
    }

    /// All tenants, oldest first.
    pub async fn list(store: &Store) -> Result<Vec<Tenant>, TenancyError> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY created_at, id"
        ))
        .fetch_all(store.reader())
        .await?;
        Ok(rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?)
    }

    /// The tenant with this slug.
    pub(crate) async fn get(store: &Store, slug: &str) -> Result<Tenant, TenancyError> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1"
        ))
        .bind(slug)
        .fetch_optional(store.reader())
        .await?
        .ok_or_else(|| TenancyError::NotFound(slug.to_owned()))?;
        Ok(tenant_from_row(&row)?)
    }
}

/// `/admin/tenants…` routes (operator token).
pub(crate) fn admin_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    KeyCache: FromRef<S>,
    Terminals: FromRef<S>,
    SyncWakeup: FromRef<S>,
    InboxWakeup: FromRef<S>,
    HooksWakeup: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(
            get_tenant,
            lifecycle::update_tenant,
            lifecycle::delete_tenant
        ))
        .routes(routes!(lifecycle::suspend_tenant))
        .routes(routes!(lifecycle::resume_tenant))
}

/// Creates a tenant.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = NewTenant, responses(
    (status = 201, description = "Created.", body = Tenant),
    (status = 409, description = "`tenant_exists`: the slug is taken."),
    (status = 422, description = "`invalid_tenant`: bad slug, name, currency, time zone or country; `invalid_request`."),
))]
async fn create_tenant(
    State(store): State<Store>,
    _op: Operator,
    body: ApiJson<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let tenant = Tenants::create(&store, body.value).await?;
    tracing::info!(tenant = %tenant.slug, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Answer of `GET /admin/tenants`.
#[derive(Serialize, utoipa::ToSchema)]
struct TenantList {
    tenants: Vec<Tenant>,
}

/// Lists every tenant, oldest first.
#[utoipa::path(get, path = "/tenants", tag = "tenants", responses(
    (status = 200, description = "The tenants.", body = TenantList),
))]
async fn list_tenants(State(store): State<Store>, _op: Operator) -> ApiResult<Json<TenantList>> {
    Ok(Json(TenantList {
        tenants: Tenants::list(&store).await?,
    }))
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{slug}", tag = "tenants", responses(
    (status = 200, description = "The tenant.", body = Tenant),
    (status = 404, description = "`tenant_not_found`."),
))]
async fn get_tenant(
    State(store): State<Store>,
    _op: Operator,
    Path(slug): Path<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(Tenants::get(&store, &slug).await?))
}
