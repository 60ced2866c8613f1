//! Tenant API keys as the operator manages them: create (the secret is shown once), list,
//! revoke. Kept apart from [`crate::auth`], which checks keys on every request, because
//! managing keys needs the tenant table and checking them must not.

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{generate_secret, hash_secret, AuthState, KeyCache, Operator, Role, KEY_PREFIX};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::store::{new_id, now_micros, rfc3339, Backend, Store, StoreError};
use crate::tenancy::{TenancyError, Tenants};
use crate::terminals::Terminals;

/// A key as listed: never the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    /// Key id.
    pub id: String,
    /// Role.
    pub role: Role,
    /// Label.
    pub label: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// Creation time.
    pub created_at: String,
    /// Revocation time, if revoked.
    pub revoked_at: Option<String>,
    /// When the key last made an accepted request, to the minute (each host records a
    /// key's use at most once a minute); absent if never used.
    pub last_used_at: Option<String>,
}

/// A freshly created key: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// Key id.
    pub id: String,
    /// The secret; stored only as a hash.
    pub key: String,
    /// Role.
    pub role: Role,
    /// Label.
    pub label: String,
    /// Creation time.
    pub created_at: String,
}

/// Body of `POST /admin/tenants/{slug}/keys`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Role of the key.
    pub role: Role,
    /// Label shown in listings and `pos-status`.
    #[serde(default)]
    pub label: String,
}

/// Key management failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The tenant does not exist (or another tenancy failure).
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// No such key for this tenant.
    #[error("no key {0:?} for this tenant")]
    NotFound(String),
    /// Label too long.
    #[error("label must be at most 100 characters")]
    InvalidLabel,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for KeyError {
    fn from(err: sqlx::Error) -> Self {
        KeyError::Store(err.into())
    }
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Tenancy(e) => e.into(),
            KeyError::NotFound(_) => ApiError::not_found("key_not_found", err.to_string()),
            KeyError::InvalidLabel => ApiError::unprocessable("invalid_key", err.to_string()),
            KeyError::Store(e) => e.into(),
        }
    }
}

/// Operator-level management of tenant API keys.
pub struct ApiKeys;

impl ApiKeys {
    /// Creates a key for the tenant `slug` and returns its secret (once).
    pub async fn create(store: &Store, slug: &str, new: NewKey) -> Result<CreatedKey, KeyError> {
        let tenant = Tenants::get(store, slug).await?;
        let label = new.label.trim().to_owned();
        if label.chars().count() > 100 {
            return Err(KeyError::InvalidLabel);
        }
        let id = new_id();
        let key = generate_secret(KEY_PREFIX);
        let now = now_micros();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, role, label, key_hash, key_prefix, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&tenant.id)
        .bind(new.role.as_str())
        .bind(&label)
        .bind(hash_secret(&key))
        .bind(&key[..KEY_PREFIX.len() + 6])
        .bind(now)
        .execute(store.writer())
        .await?;
        Ok(CreatedKey {
            id,
            key,
            role: new.role,
            label,
            created_at: rfc3339(now),
        })
    }

    /// All keys of the tenant, revoked ones included, oldest first.
    pub async fn list(store: &Store, slug: &str) -> Result<Vec<ApiKeyInfo>, KeyError> {
        let tenant = Tenants::get(store, slug).await?;
        let rows = sqlx::query(
            "SELECT id, role, label, key_prefix, created_at, revoked_at, last_used_at FROM api_keys
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(&tenant.id)
        .fetch_all(store.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(ApiKeyInfo {
                    id: row.try_get("id")?,
                    role: Role::parse(&role).unwrap_or(Role::Terminal),
                    label: row.try_get("label")?,
                    prefix: row.try_get("key_prefix")?,
                    created_at: rfc3339(row.try_get("created_at")?),
                    revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(rfc3339),
                    last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
                })
            })
            .collect()
    }

    /// Revokes a key of the tenant; effective for the next request. Revoking twice is fine.
    ///
    /// On PostgreSQL the same transaction announces the key on
    /// [`crate::events::REVOCATION_CHANNEL`], so every host sharing the database (and not
    /// only the one that revoked it, which may be the CLI) closes its sockets at once;
    /// SQLite hosts find it by their periodic check (see `terminals::revocations`).
    pub async fn revoke(store: &Store, slug: &str, key_id: &str) -> Result<(), KeyError> {
        let tenant = Tenants::get(store, slug).await?;
        let mut tx = store.begin().await.map_err(KeyError::Store)?;
        let found = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1)
             WHERE id = $2 AND tenant_id = $3",
        )
        .bind(now_micros())
        .bind(key_id)
        .bind(&tenant.id)
        .execute(&mut tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Err(KeyError::NotFound(key_id.to_owned()));
        }
        if store.backend() == Backend::Postgres {
            // Delivered when (and only if) the revocation commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::events::REVOCATION_CHANNEL)
                .bind(key_id)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `/admin/tenants/{slug}/keys…` routes (operator token).
pub(crate) fn admin_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    KeyCache: FromRef<S>,
    Terminals: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// Creates an API key for the tenant; the answer is the only time its secret is shown.
#[utoipa::path(post, path = "/tenants/{slug}/keys", tag = "tenants", request_body = NewKey, responses(
    (status = 201, description = "Created; `key` is the secret.", body = CreatedKey),
    (status = 404, description = "`tenant_not_found`."),
    (status = 422, description = "`invalid_key`: label over 100 characters; `invalid_request`."),
))]
async fn create_key(
    State(store): State<Store>,
    _op: Operator,
    Path(slug): Path<String>,
    body: ApiJson<NewKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let created = ApiKeys::create(&store, &slug, body.value).await?;
    tracing::info!(tenant = %slug, key_id = %created.id, role = created.role.as_str(), "api key created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Answer of `GET /admin/tenants/{slug}/keys`.
#[derive(Serialize, utoipa::ToSchema)]
struct KeyList {
    keys: Vec<ApiKeyInfo>,
}

/// Lists the tenant's keys (never their secrets), revoked ones included.
#[utoipa::path(get, path = "/tenants/{slug}/keys", tag = "tenants", responses(
    (status = 200, description = "The keys.", body = KeyList),
    (status = 404, description = "`tenant_not_found`."),
))]
async fn list_keys(
    State(store): State<Store>,
    _op: Operator,
    Path(slug): Path<String>,
) -> ApiResult<Json<KeyList>> {
    Ok(Json(KeyList {
        keys: ApiKeys::list(&store, &slug).await?,
    }))
}

/// Revokes a key at once on every host; its sockets close with 4003.
#[utoipa::path(delete, path = "/tenants/{slug}/keys/{id}", tag = "tenants", responses(
    (status = 204, description = "Revoked."),
    (status = 404, description = "`tenant_not_found`, `key_not_found`."),
))]
async fn revoke_key(
    State(store): State<Store>,
    State(keys): State<KeyCache>,
    State(terminals): State<Terminals>,
    _op: Operator,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let revoked = ApiKeys::revoke(&store, &slug, &id).await;
    // After the revocation committed (or failed: clearing is harmless), so no request of
    // this host accepts the key from the cache any more.
    keys.invalidate();
    revoked?;
    terminals.close_key(&id);
    tracing::info!(tenant = %slug, key_id = %id, "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}
