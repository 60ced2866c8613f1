//! Spend rules: per-venue thresholds of lifetime spend that unlock customer tiers and access
//! levels, the routes managing the tenant's tier ladder (kept by `customers::ladder`, as
//! customers are what climbs it), venue performances (for live-only and performer rules),
//! and the evaluation that runs inside the transaction recording each sale.
//!
//! Managers edit rules at `/api/{tenant}/pos/rules/{venue}`; [`RuleEvaluator`] is called by
//! the providers' ingest for every new or changed sale matched to a customer.

mod book;
mod decide;
mod evaluate;
mod performances;
pub(crate) mod windows;

pub(crate) use book::RuleBook;
pub(crate) use evaluate::{RuleEvaluator, SaleRef, SpendMove};

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, ManagerCaller, TerminalCaller};
use crate::customers::ladder::{Ladder, LadderUpdate};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::money::NonNegativeAmount;
use crate::store::{Store, StoreError};
use windows::TimeWindow;

/// Most rules one venue may have: evaluation walks them in memory for every sale.
pub(crate) const MAX_RULES_PER_VENUE: i64 = 1_000;

/// Why a rule operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// No such rule at this venue of this tenant.
    #[error("no rule {0} at this venue")]
    NotFound(String),
    /// The input breaks a rule of the API (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// The rule names a tier the tenant's ladder does not have.
    #[error("unknown tier {0:?}: the tenant's tiers are {1}")]
    UnknownTier(String, String),
    /// The rule names an access level the tenant's ladder does not have.
    #[error("unknown access level {0:?}: the tenant's access levels are {1}")]
    UnknownAccessLevel(String, String),
    /// The venue already has the maximum number of rules.
    #[error("a venue may have at most {MAX_RULES_PER_VENUE} rules")]
    TooManyRules,
    /// A ladder edit would drop a tier or access level that is still used.
    #[error("{0:?} is still unlocked by a rule or held by a customer")]
    InUse(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RuleError {
    fn from(err: sqlx::Error) -> Self {
        RuleError::Store(err.into())
    }
}

impl From<RuleError> for ApiError {
    fn from(err: RuleError) -> Self {
        let message = err.to_string();
        match err {
            RuleError::NotFound(_) => ApiError::not_found("rule_not_found", message),
            RuleError::Invalid(_) => ApiError::unprocessable("invalid_request", message),
            RuleError::UnknownTier(..) => ApiError::unprocessable("unknown_tier", message),
            RuleError::UnknownAccessLevel(..) => {
                ApiError::unprocessable("unknown_access_level", message)
            }
            RuleError::TooManyRules => ApiError::conflict("too_many_rules", message),
            RuleError::InUse(_) => ApiError::conflict("tier_in_use", message),
            RuleError::Store(e) => e.into(),
        }
    }
}

/// A spend rule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct SpendRule {
    /// Rule id.
    pub id: String,
    /// The venue whose sales it counts.
    pub venue: String,
    /// Display name.
    pub name: String,
    /// Lifetime spend at the venue (minor units, net of refunds and voids) that unlocks it.
    pub threshold: i64,
    /// Tier the customer reaches (at least).
    pub tier: String,
    /// Access level granted (at least), if any.
    pub access_level: Option<String>,
    /// Lower runs first; the first matching rule decides.
    pub priority: i64,
    /// Disabled rules are skipped.
    pub enabled: bool,
    /// Only sales made while a performance is on at the venue count.
    pub live_only: bool,
    /// Weekly windows (venue time) the sale must fall in; empty means any time.
    pub time_windows: Vec<TimeWindow>,
    /// Only sales made while this performer is on at the venue count.
    pub performer_id: Option<String>,
    /// Sales for which this rule was the first match.
    pub times_triggered: i64,
    /// Customers it unlocked (once each).
    pub customers_unlocked: i64,
    /// When it last matched.
    pub last_triggered: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last edited.
    pub updated_at: String,
}

/// Body of `POST /pos/rules/{venue}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRule {
    /// Display name (1–100 characters).
    pub name: String,
    /// Minor units, ≥ 0.
    pub threshold: NonNegativeAmount,
    /// A tier of the tenant's ladder.
    pub tier: String,
    /// An access level of the tenant's ladder.
    #[serde(default)]
    pub access_level: Option<String>,
    /// Default 0.
    #[serde(default)]
    pub priority: i64,
    /// Default true.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Default false.
    #[serde(default)]
    pub live_only: bool,
    /// Default: none (any time).
    #[serde(default)]
    pub time_windows: Vec<TimeWindow>,
    /// Default: any performer.
    #[serde(default)]
    pub performer_id: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// Body of `PATCH /pos/rules/{venue}/{rule_id}`: absent fields stay; `null` clears the
/// optional ones.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulePatch {
    /// See [`NewRule::name`].
    #[serde(default)]
    name: Option<String>,
    /// See [`NewRule::threshold`].
    #[serde(default)]
    threshold: Option<NonNegativeAmount>,
    /// See [`NewRule::tier`].
    #[serde(default)]
    tier: Option<String>,
    /// See [`NewRule::access_level`]; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    access_level: Option<Option<String>>,
    /// See [`NewRule::priority`].
    #[serde(default)]
    priority: Option<i64>,
    /// See [`NewRule::enabled`].
    #[serde(default)]
    enabled: Option<bool>,
    /// See [`NewRule::live_only`].
    #[serde(default)]
    live_only: Option<bool>,
    /// See [`NewRule::time_windows`].
    #[serde(default)]
    time_windows: Option<Vec<TimeWindow>>,
    /// See [`NewRule::performer_id`]; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    performer_id: Option<Option<String>>,
}

/// Answer of `GET /pos/rules/{venue}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RuleList {
    /// The venue.
    venue: String,
    /// Its rules, by priority.
    rules: Vec<SpendRule>,
}

/// Tells "field given as null" (`Some(None)`) from "field absent" (`None`, the default).
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// `/api/{tenant}/pos/rules/…`, `/pos/tiers` and `/pos/performances/…`.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, delete))
        .routes(routes!(toggle))
        .routes(routes!(ladder, set_ladder))
        .merge(performances::routes())
}

/// A venue's spend rules with their statistics.
#[utoipa::path(get, path = "/pos/rules/{venue}", tag = "rules", responses(
    (status = 200, description = "The rules.", body = RuleList),
    (status = 422, description = "`invalid_request`: a bad venue; `unsupported_character`."),
))]
async fn list(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<RuleList>, ApiError> {
    let rules = RuleBook::list(&store, &caller.scope, &venue).await?;
    Ok(Json(RuleList { venue, rules }))
}

/// Creates a spend rule.
#[utoipa::path(post, path = "/pos/rules/{venue}", tag = "rules", request_body = NewRule, responses(
    (status = 201, description = "Created.", body = SpendRule),
    (status = 409, description = "`too_many_rules`: the venue has 1,000."),
    (status = 422, description = "`invalid_request`, `unknown_tier`, `unknown_access_level`."),
))]
async fn create(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: ApiJson<NewRule>,
) -> Result<(StatusCode, Json<SpendRule>), ApiError> {
    let rule = RuleBook::create(&store, &caller.scope, &venue, body.value).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Changes a spend rule; absent fields stay.
#[utoipa::path(patch, path = "/pos/rules/{venue}/{rule_id}", tag = "rules", request_body = RulePatch, responses(
    (status = 200, description = "The rule.", body = SpendRule),
    (status = 404, description = "`rule_not_found`."),
    (status = 422, description = "`invalid_request`, `unknown_tier`, `unknown_access_level`."),
))]
async fn update(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, rule_id)): Path<(String, String, String)>,
    body: ApiJson<RulePatch>,
) -> Result<Json<SpendRule>, ApiError> {
    Ok(Json(
        RuleBook::update(&store, &caller.scope, &venue, &rule_id, body.value).await?,
    ))
}

/// Enables a disabled rule or disables an enabled one.
#[utoipa::path(post, path = "/pos/rules/{venue}/{rule_id}/toggle", tag = "rules", responses(
    (status = 200, description = "The rule.", body = SpendRule),
    (status = 404, description = "`rule_not_found`."),
))]
async fn toggle(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, rule_id)): Path<(String, String, String)>,
) -> Result<Json<SpendRule>, ApiError> {
    Ok(Json(
        RuleBook::toggle(&store, &caller.scope, &venue, &rule_id).await?,
    ))
}

/// Deletes a spend rule.
#[utoipa::path(delete, path = "/pos/rules/{venue}/{rule_id}", tag = "rules", responses(
    (status = 204, description = "Deleted."),
    (status = 404, description = "`rule_not_found`."),
))]
async fn delete(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, rule_id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    RuleBook::delete(&store, &caller.scope, &venue, &rule_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's tiers and access levels, lowest first (any key).
#[utoipa::path(get, path = "/pos/tiers", tag = "rules", responses(
    (status = 200, description = "The ladder.", body = Ladder),
))]
async fn ladder(
    State(store): State<Store>,
    TerminalCaller(caller): TerminalCaller,
) -> Result<Json<Ladder>, ApiError> {
    Ok(Json(RuleBook::ladder(&store, &caller.scope).await?))
}

/// Replaces the tier list, the access-level list, or both.
#[utoipa::path(put, path = "/pos/tiers", tag = "rules", request_body = LadderUpdate, responses(
    (status = 200, description = "The ladder.", body = Ladder),
    (status = 409, description = "`tier_in_use`: a dropped name is still unlocked by a rule or held by a customer."),
    (status = 422, description = "`invalid_request`: empty, duplicate or malformed names."),
))]
async fn set_ladder(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    body: ApiJson<LadderUpdate>,
) -> Result<Json<Ladder>, ApiError> {
    Ok(Json(
        RuleBook::set_ladder(&store, &caller.scope, body.value).await?,
    ))
}
