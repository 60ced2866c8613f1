//! Authentication: the operator token, tenant API keys, and the only constructor of
//! [`TenantScope`] — the type every tenant-scoped query requires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::locks::lock;
use crate::ratelimit::RateLimits;
use crate::store::{Store, StoreError};

/// What a tenant API key may do. Managers can do everything terminals can.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A till or kitchen screen: terminal API and the event stream.
    Terminal,
    /// The cloud ordering platform or a manager: everything of the tenant.
    Manager,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Terminal => "terminal",
            Role::Manager => "manager",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "terminal" => Some(Role::Terminal),
            "manager" => Some(Role::Manager),
            _ => None,
        }
    }
}

/// Proof that a request was authenticated for one tenant. Only this module can build one,
/// so a query that takes a `&TenantScope` cannot be pointed at another tenant's rows.
///
/// Shared behind an `Arc`: every request clones the scope of its (cached) key, and a clone
/// is one reference count instead of five string copies.
#[derive(Debug, Clone)]
pub(crate) struct TenantScope(Arc<ScopeFields>);

#[derive(Debug)]
struct ScopeFields {
    tenant_id: String,
    slug: String,
    currency: String,
    country: String,
    timezone: String,
}

impl TenantScope {
    fn from_row(row: &AnyRow, id_column: &str) -> Result<Self, sqlx::Error> {
        Ok(TenantScope(Arc::new(ScopeFields {
            tenant_id: row.try_get(id_column)?,
            slug: row.try_get("slug")?,
            currency: row.try_get("currency")?,
            country: row.try_get("country")?,
            timezone: row.try_get("timezone")?,
        })))
    }

    /// Internal tenant id, the scope column of every tenant table.
    pub(crate) fn tenant_id(&self) -> &str {
        &self.0.tenant_id
    }
    /// The tenant's slug, as used in URLs.
    pub(crate) fn slug(&self) -> &str {
        &self.0.slug
    }
    /// The tenant's ISO-4217 currency.
    pub(crate) fn currency(&self) -> &str {
        &self.0.currency
    }
    /// The tenant's default country for phone numbers.
    pub(crate) fn country(&self) -> &str {
        &self.0.country
    }
    /// The tenant's IANA time zone.
    pub(crate) fn timezone(&self) -> &str {
        &self.0.timezone
    }
}

impl TenantScope {
    /// The scope of a tenant named by one of our own rows (an integration, a webhook in the
    /// inbox), for background work that acts for the tenant without a caller. Never build a
    /// scope from anything a client sent.
    pub(crate) async fn for_background_job(
        store: &Store,
        tenant_id: &str,
    ) -> Result<Option<Self>, StoreError> {
        let row =
            sqlx::query("SELECT id, slug, currency, country, timezone FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(store.reader())
                .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TenantScope::from_row(&row, "id")?))
    }
}

/// An authenticated tenant API key.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The tenant the key belongs to.
    pub scope: TenantScope,
    /// The key's id (recorded on ledger rows as the actor).
    pub key_id: String,
    /// The key's role.
    pub role: Role,
    /// The key's label ("till 1").
    pub label: String,
    /// Whether the key's tenant is suspended: its keys are refused (see
    /// `tenancy::lifecycle`). Carried rather than filtered out so the refusal can say why.
    pub tenant_suspended: bool,
}

/// Extractor: any valid key of the tenant named in the path (terminal or manager).
#[derive(Debug, Clone)]
pub(crate) struct TerminalCaller(pub Caller);

/// Extractor: a manager key of the tenant named in the path.
#[derive(Debug, Clone)]
pub(crate) struct ManagerCaller(pub Caller);

/// Extractor: the request carries the operator token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operator;

/// SHA-256 hex of a secret; keys and tokens are stored only in this form.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Prefix of every API key, so leaked keys are easy to recognise in scanners.
pub(crate) const KEY_PREFIX: &str = "pbk_";

pub(crate) fn generate_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

/// The subprotocol browsers name to open the event stream; see [`key_from_headers`].
pub(crate) const WS_PROTOCOL: &str = "posbridge.v1";

/// Finds the API key in `X-API-Key`, `Authorization: Bearer`, or (for browsers opening a
/// WebSocket, which cannot set headers) a `key.<key>` entry of `Sec-WebSocket-Protocol`.
pub(crate) fn key_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    if let Some(v) = bearer(headers) {
        return Some(v);
    }
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("key."))
        .map(str::to_owned)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn lookup_key(store: &Store, key_hash: &str) -> Result<Option<Caller>, StoreError> {
    let row = sqlx::query(
        "SELECT k.id, k.role, k.label, t.id AS tenant_id, t.slug, t.currency, t.country, t.timezone,
                t.suspended_at
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(store.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Caller {
        scope: TenantScope::from_row(&row, "tenant_id")?,
        key_id: row.try_get("id")?,
        role,
        label: row.try_get("label")?,
        tenant_suspended: row.try_get::<Option<i64>, _>("suspended_at")?.is_some(),
    }))
}

/// How long a key found valid in the database is trusted without asking again.
///
/// Revocations made through this host's API take effect at once (they clear the cache, see
/// [`KeyCache::invalidate`]); this bounds only revocations this host does not see: the CLI
/// writing to the database directly, or another host sharing a PostgreSQL database. Those
/// take effect here within this long. One second keeps that window short while turning the
/// per-request key lookup (a database round trip on every call) into one lookup per key
/// per second.
pub(crate) const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries kept before expired ones are swept. Only keys that exist and are unrevoked are
/// ever cached (misses are not), so this is a backstop, far above any real fleet of tills.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// Valid API keys recently found in the database, by the SHA-256 of the secret. Cheap to
/// clone; one per process.
#[derive(Debug, Clone, Default)]
pub struct KeyCache {
    inner: Arc<KeyCacheInner>,
}

#[derive(Debug, Default)]
struct KeyCacheInner {
    entries: Mutex<HashMap<[u8; 32], CachedKey>>,
    /// Bumped (under the lock) by every invalidation. A lookup notes it before it
    /// reads the database and stores its result only if it is unchanged, so an answer read
    /// before a revocation committed can never be cached after the revocation cleared the
    /// cache.
    generation: AtomicU64,
    /// When this host last wrote each key's `last_used_at` (see [`KeyCache::record_use`]).
    /// Not cleared by [`KeyCache::invalidate`]: a revocation does not change when a key was
    /// last used.
    recorded: Mutex<HashMap<String, Instant>>,
}

/// How often one host writes a key's `last_used_at` at most: the column answers "when was
/// this key last used", to the minute, without a database write on every request.
pub(crate) const KEY_USE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct CachedKey {
    caller: Caller,
    fetched: Instant,
}

impl KeyCache {
    /// The caller of an unrevoked key: from the cache if it was checked within
    /// [`KEY_CACHE_TTL`], otherwise from the database.
    pub(crate) async fn authenticate(
        &self,
        store: &Store,
        key: &str,
    ) -> Result<Option<Caller>, StoreError> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(caller) = self.fresh(&hash) {
            return Ok(Some(caller));
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let found = lookup_key(store, &hex::encode(hash)).await?;
        if let Some(caller) = &found {
            self.insert(hash, caller.clone(), generation);
        }
        Ok(found)
    }

    fn fresh(&self, hash: &[u8; 32]) -> Option<Caller> {
        let entries = lock(&self.inner.entries);
        entries
            .get(hash)
            .filter(|e| e.fetched.elapsed() < KEY_CACHE_TTL)
            .map(|e| e.caller.clone())
    }

    fn insert(&self, hash: [u8; 32], caller: Caller, generation: u64) {
        let mut entries = lock(&self.inner.entries);
        if self.inner.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.retain(|_, e| e.fetched.elapsed() < KEY_CACHE_TTL);
            if entries.len() >= KEY_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            CachedKey {
                caller,
                fetched: Instant::now(),
            },
        );
    }

    /// Notes that the key `key_id` was just used to make an accepted request. Costs a map
    /// lookup under a lock; at most once per [`KEY_USE_INTERVAL`] per key it also starts a
    /// background write of `api_keys.last_used_at`, so no request waits for it. A failed
    /// write is logged and forgotten, and the next use retries it.
    pub(crate) fn record_use(&self, store: &Store, key_id: &str) {
        let now = Instant::now();
        {
            let mut recorded = lock(&self.inner.recorded);
            if recorded
                .get(key_id)
                .is_some_and(|at| now.duration_since(*at) < KEY_USE_INTERVAL)
            {
                return;
            }
            if recorded.len() >= KEY_CACHE_CAPACITY {
                recorded.retain(|_, at| now.duration_since(*at) < KEY_USE_INTERVAL);
            }
            recorded.insert(key_id.to_owned(), now);
        }
        let (store, key_id, inner) = (store.clone(), key_id.to_owned(), self.inner.clone());
        // The time of the request, not of the write that follows it.
        let used_at = crate::store::now_micros();
        tokio::spawn(async move {
            // Never moves backwards: another host sharing the database may have written a
            // later use.
            let written = sqlx::query(
                "UPDATE api_keys SET last_used_at = $1
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(used_at)
            .bind(&key_id)
            .execute(store.writer())
            .await;
            if let Err(err) = written {
                tracing::warn!(key_id = %key_id, error = %err, "could not record the key's last use");
                lock(&inner.recorded).remove(&key_id);
            }
        });
    }

    /// Forgets every cached key. Called after a revocation commits, so the next request
    /// with the revoked key is checked against the database and refused.
    pub(crate) fn invalidate(&self) {
        let mut entries = lock(&self.inner.entries);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// The handles the key and operator extractors use. A router whose state `S` has
/// `AuthState: FromRef<S>` can use [`TerminalCaller`], [`ManagerCaller`] and [`Operator`]
/// without this module knowing that state (the composition root builds it from its own).
#[derive(Debug, Clone)]
pub(crate) struct AuthState {
    /// Where keys are looked up.
    pub store: Store,
    /// Recently validated keys.
    pub keys: KeyCache,
    /// Per-key request budgets, spent by every authenticated tenant request.
    pub rate_limits: RateLimits,
    /// The operator credential.
    pub operator: Arc<OperatorCredential>,
}

/// Authenticates a tenant request: key → tenant, then checks the path's tenant and the
/// optional `X-Tenant-ID` agree with it. Unknown key → 401; any mismatch → 403 without
/// saying whether the other tenant exists.
async fn caller_for(parts: &mut Parts, app: &AuthState) -> Result<Caller, ApiError> {
    let path_tenant = RawPathParams::from_request_parts(parts, app)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "tenant")
                .map(|(_, value)| value.to_owned())
        })
        .ok_or_else(|| ApiError::not_found("not_found", "no such route"))?;
    let key = key_from_headers(&parts.headers)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("missing API key: send X-API-Key or Authorization: Bearer")
        })?;
    let caller = app
        .keys
        .authenticate(&app.store, &key)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
    if caller.tenant_suspended {
        return Err(ApiError::forbidden_code(
            "tenant_suspended",
            "this key's tenant is suspended: its keys are refused until the operator resumes it",
        ));
    }
    app.rate_limits.check(&caller.key_id, caller.scope.slug())?;
    if caller.scope.slug() != path_tenant {
        return Err(ApiError::forbidden(
            "this key does not belong to that tenant",
        ));
    }
    if let Some(header_tenant) = parts.headers.get("x-tenant-id") {
        if header_tenant.as_bytes() != path_tenant.as_bytes() {
            return Err(ApiError::forbidden(
                "X-Tenant-ID does not match the tenant in the path",
            ));
        }
    }
    app.keys.record_use(&app.store, &caller.key_id);
    Ok(caller)
}

impl<S> FromRequestParts<S> for TerminalCaller
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let app = AuthState::from_ref(state);
        Ok(TerminalCaller(caller_for(parts, &app).await?))
    }
}

impl<S> FromRequestParts<S> for ManagerCaller
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let app = AuthState::from_ref(state);
        let caller = caller_for(parts, &app).await?;
        if caller.role != Role::Manager {
            return Err(ApiError::forbidden("this route needs a manager key"));
        }
        Ok(ManagerCaller(caller))
    }
}

impl<S> FromRequestParts<S> for Operator
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("missing operator token: send Authorization: Bearer <token>")
        })?;
        if AuthState::from_ref(state).operator.verify(&token) {
            Ok(Operator)
        } else {
            Err(ApiError::unauthorized("invalid operator token"))
        }
    }
}

/// The operator credential: only the SHA-256 of the token is kept.
#[derive(Debug, Clone)]
pub struct OperatorCredential {
    hash: [u8; 32],
}

const OPERATOR_SETTING: &str = "operator_token_sha256";

impl OperatorCredential {
    /// Uses `configured` if given; otherwise the hash stored by an earlier start; otherwise
    /// generates a token, stores its hash and returns the token so the caller prints it once.
    pub async fn ensure(
        store: &Store,
        configured: Option<&str>,
    ) -> Result<(Self, Option<String>), StoreError> {
        if let Some(token) = configured.filter(|t| !t.is_empty()) {
            return Ok((Self::from_token(token), None));
        }
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(OPERATOR_SETTING)
                .fetch_optional(store.reader())
                .await?;
        if let Some(hash) = stored.and_then(|h| hex::decode(h).ok()) {
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                return Ok((Self { hash }, None));
            }
        }
        let token = generate_secret("pbo_");
        let credential = Self::from_token(&token);
        // ON CONFLICT: two hosts starting together on one PostgreSQL; the first one wins
        // and the loser re-reads so both accept the same token.
        let inserted = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(OPERATOR_SETTING)
        .bind(hex::encode(credential.hash))
        .execute(store.writer())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Box::pin(Self::ensure(store, None)).await;
        }
        Ok((credential, Some(token)))
    }

    fn from_token(token: &str) -> Self {
        Self {
            hash: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Constant-time check of a presented token.
    pub(crate) fn verify(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        presented.ct_eq(&self.hash).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn keys_are_found_in_every_supported_header() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("pbk_a"));
        assert_eq!(key_from_headers(&h).as_deref(), Some("pbk_a"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer pbk_b"));
        assert_eq!(key_from_headers(&h).as_deref(), Some("pbk_b"));
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("posbridge.v1, key.pbk_c"),
        );
        assert_eq!(key_from_headers(&h).as_deref(), Some("pbk_c"));
        assert_eq!(key_from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn operator_tokens_verify_only_themselves() {
        let c = OperatorCredential::from_token("secret");
        assert!(c.verify("secret"));
        assert!(!c.verify("secreT"));
        assert!(!c.verify(""));
    }
}
