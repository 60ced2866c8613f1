//! Live performances at a venue (a DJ set, a band, a show): who is on, from when to when.
//!
//! Rules marked `live_only` count only sales made while some performance is on at the venue;
//! rules naming a `performer_id` count only sales made while that performer is on.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::decide::check_venue;
use super::RuleError;
use crate::auth::{AuthState, ManagerCaller, TenantScope};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::store::{new_id, now_micros, rfc3339, Conn, Store};

/// Longest performance accepted: a festival day, not a residency (add one per night).
const MAX_PERFORMANCE_MICROS: i64 = 48 * 3600 * 1_000_000;

/// A scheduled performance.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Performance {
    /// Id.
    pub id: String,
    /// Venue.
    pub venue: String,
    /// Who performs.
    pub performer_id: String,
    /// Start (inclusive), RFC 3339.
    pub starts_at: String,
    /// End (exclusive), RFC 3339.
    pub ends_at: String,
}

/// Body of `POST /pos/performances/{venue}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPerformance {
    /// Who performs.
    performer_id: String,
    /// Start (inclusive), RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    starts_at: jiff::Timestamp,
    /// End (exclusive), RFC 3339; at most 48 hours after the start.
    #[schema(value_type = String, format = DateTime)]
    ends_at: jiff::Timestamp,
}

/// Query of `GET /pos/performances/{venue}`: performances overlapping `[from, to)`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PerformanceQuery {
    /// Only performances ending after this time (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<jiff::Timestamp>,
    /// Only performances starting before this time (RFC 3339).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<jiff::Timestamp>,
}

/// Answer of `GET /pos/performances/{venue}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PerformanceList {
    /// The venue.
    venue: String,
    /// Up to 1,000 performances, by start.
    performances: Vec<Performance>,
}

/// Performances of one venue around some instant, loaded once and reused for every sale of a
/// batch that falls in the same span: sync pages and pushes are close in time, so a batch
/// costs one query instead of one per sale.
#[derive(Debug, Default)]
pub(super) struct PerformanceCache {
    /// `[from, to)` the rows cover: every performance running at an instant of it is loaded.
    span: Option<(i64, i64)>,
    rows: Vec<(String, i64, i64)>,
}

/// Span loaded around the first instant asked for.
const CACHE_SPAN_MICROS: i64 = 24 * 3600 * 1_000_000;

impl PerformanceCache {
    /// The performers on at `venue` at instant `at` (µs).
    pub(super) async fn performers_at(
        &mut self,
        conn: &mut Conn,
        tenant_id: &str,
        venue: &str,
        at: i64,
    ) -> Result<Vec<&str>, sqlx::Error> {
        let covered = self.span.is_some_and(|(from, to)| from <= at && at < to);
        if !covered {
            let (from, to) = (at - CACHE_SPAN_MICROS, at + CACHE_SPAN_MICROS);
            let rows = sqlx::query(
                "SELECT performer_id, starts_at, ends_at FROM performances
                 WHERE tenant_id = $1 AND venue = $2 AND starts_at < $3 AND ends_at > $4
                   AND starts_at > $5",
            )
            .bind(tenant_id)
            .bind(venue)
            .bind(to)
            .bind(from)
            // Bounds the index range scan: nothing longer than the maximum reaches `from`.
            .bind(from - MAX_PERFORMANCE_MICROS)
            .fetch_all(conn)
            .await?;
            self.rows = rows
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get("performer_id")?,
                        r.try_get("starts_at")?,
                        r.try_get("ends_at")?,
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?;
            self.span = Some((from, to));
        }
        Ok(self
            .rows
            .iter()
            .filter(|(_, starts, ends)| *starts <= at && at < *ends)
            .map(|(performer, _, _)| performer.as_str())
            .collect())
    }
}

async fn add(
    store: &Store,
    scope: &TenantScope,
    venue: &str,
    new: NewPerformance,
) -> Result<Performance, RuleError> {
    check_venue(venue)?;
    let performer = new.performer_id.trim();
    if performer.is_empty() || performer.chars().count() > 100 {
        return Err(RuleError::Invalid(
            "performer_id must be 1-100 characters".into(),
        ));
    }
    let starts = new.starts_at.as_microsecond();
    let ends = new.ends_at.as_microsecond();
    if ends <= starts {
        return Err(RuleError::Invalid("ends_at must be after starts_at".into()));
    }
    if ends - starts > MAX_PERFORMANCE_MICROS {
        return Err(RuleError::Invalid(
            "a performance lasts at most 48 hours".into(),
        ));
    }
    let id = new_id();
    sqlx::query(
        "INSERT INTO performances (id, tenant_id, venue, performer_id, starts_at, ends_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(scope.tenant_id())
    .bind(venue)
    .bind(performer)
    .bind(starts)
    .bind(ends)
    .bind(now_micros())
    .execute(store.writer())
    .await?;
    Ok(Performance {
        id,
        venue: venue.to_owned(),
        performer_id: performer.to_owned(),
        starts_at: rfc3339(starts),
        ends_at: rfc3339(ends),
    })
}

pub(super) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_handler, add_handler))
        .routes(routes!(delete_handler))
}

/// Schedules a performance at a venue (for live-only and performer rules).
#[utoipa::path(post, path = "/pos/performances/{venue}", tag = "rules", request_body = NewPerformance, responses(
    (status = 201, description = "Scheduled.", body = Performance),
    (status = 422, description = "`invalid_request`: bad venue, times out of order or over 48 hours."),
))]
async fn add_handler(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: ApiJson<NewPerformance>,
) -> Result<(StatusCode, Json<Performance>), ApiError> {
    let created = add(&store, &caller.scope, &venue, body.value).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Performances of a venue overlapping `[from, to)`.
#[utoipa::path(get, path = "/pos/performances/{venue}", tag = "rules", params(PerformanceQuery), responses(
    (status = 200, description = "The performances.", body = PerformanceList),
    (status = 400, description = "`bad_request`: a bad query string."),
    (status = 422, description = "`invalid_request`: a bad venue; `unsupported_character`."),
))]
async fn list_handler(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    Query(query): Query<PerformanceQuery>,
) -> Result<Json<PerformanceList>, ApiError> {
    let from = query.from.map_or(i64::MIN, |t| t.as_microsecond());
    let to = query.to.map_or(i64::MAX, |t| t.as_microsecond());
    let rows = sqlx::query(
        "SELECT id, performer_id, starts_at, ends_at FROM performances
         WHERE tenant_id = $1 AND venue = $2 AND ends_at > $3 AND starts_at < $4
         ORDER BY starts_at, id LIMIT 1000",
    )
    .bind(caller.scope.tenant_id())
    .bind(&venue)
    .bind(from)
    .bind(to)
    .fetch_all(store.reader())
    .await?;
    let performances = rows
        .iter()
        .map(|row| {
            Ok(Performance {
                id: row.try_get("id")?,
                venue: venue.clone(),
                performer_id: row.try_get("performer_id")?,
                starts_at: rfc3339(row.try_get("starts_at")?),
                ends_at: rfc3339(row.try_get("ends_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(PerformanceList {
        venue,
        performances,
    }))
}

/// Removes a performance.
#[utoipa::path(delete, path = "/pos/performances/{venue}/{id}", tag = "rules", responses(
    (status = 204, description = "Removed."),
    (status = 404, description = "`performance_not_found`."),
))]
async fn delete_handler(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let deleted =
        sqlx::query("DELETE FROM performances WHERE tenant_id = $1 AND venue = $2 AND id = $3")
            .bind(caller.scope.tenant_id())
            .bind(&venue)
            .bind(&id)
            .execute(store.writer())
            .await?
            .rows_affected();
    if deleted == 0 {
        return Err(ApiError::not_found(
            "performance_not_found",
            format!("no performance {id} at this venue"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
