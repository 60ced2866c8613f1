//! The operator's routes to dead letters (`/admin/dead-letters…`): list, inspect, retry and
//! discard. A retry hands the letter back to the queue it came from (provider webhooks, the
//! polling sync, hook delivery), so this module names those queues; `dead_letters`, which
//! the queues write to, stays below them all.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, Operator};
use crate::dead_letters::{
    find, from_row, DeadLetter, Kind, RetryOutcome, COLUMNS, MAX_REASON_CHARS,
};
use crate::error::{ApiError, ApiResult};
use crate::hooks::HooksState;
use crate::paging::{Cursor, Page, PageQuery};
use crate::providers::ProvidersState;
use crate::store::{now_micros, Store};

/// `/admin/dead-letters…` routes (operator token).
pub(crate) fn admin_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    ProvidersState: FromRef<S>,
    HooksState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, discard))
        .routes(routes!(retry))
        .routes(routes!(discard_post))
}

/// `?kind=&tenant=&limit=&cursor=` of `GET /admin/dead-letters`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this queue.
    #[serde(default)]
    #[param(value_type = Option<Kind>)]
    kind: Option<String>,
    /// Tenant slug.
    #[serde(default)]
    tenant: Option<String>,
    /// Page size (1–500, default 50).
    #[serde(default)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// Lists dead letters, newest first: work set aside after its retries ran out.
#[utoipa::path(get, path = "/dead-letters", tag = "operations", params(ListQuery), responses(
    (status = 200, description = "A page of dead letters (without payloads).", body = Page<DeadLetter>),
    (status = 400, description = "`invalid_query`: a malformed cursor; `bad_request`: a bad query string."),
    (status = 422, description = "`invalid_kind`; `unsupported_character`."),
))]
async fn list(
    State(store): State<Store>,
    _op: Operator,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<DeadLetter>>> {
    let kind = match query.kind.as_deref() {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_kind",
                "kind must be one of webhook, sync, hook, order",
            )
        })?),
    };
    let page = PageQuery {
        limit: query.limit,
        cursor: query
            .cursor
            .map(|c| Cursor::try_from(c).map_err(|e| ApiError::bad_request("invalid_query", e)))
            .transpose()?,
    };
    let (before_at, before_id) = page.before();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters d LEFT JOIN tenants t ON t.id = d.tenant_id
         WHERE ($1 IS NULL OR d.kind = $1) AND ($2 IS NULL OR t.slug = $2)
           AND (d.created_at < $3 OR (d.created_at = $3 AND d.id < $4))
         ORDER BY d.created_at DESC, d.id DESC LIMIT $5"
    ))
    .bind(kind.map(Kind::as_str))
    .bind(query.tenant.as_deref())
    .bind(before_at)
    .bind(before_id)
    .bind(page.fetch_limit())
    .fetch_all(store.reader())
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push((row.try_get::<i64, _>("created_at")?, from_row(row, false)?));
    }
    Ok(Json(page.page(items, |d| d.id.clone())))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("dead_letter_not_found", format!("no dead letter {id:?}"))
}

/// One dead letter with its payload.
#[utoipa::path(get, path = "/dead-letters/{id}", tag = "operations", responses(
    (status = 200, description = "The dead letter.", body = DeadLetter),
    (status = 404, description = "`dead_letter_not_found`."),
))]
async fn show(
    State(providers): State<ProvidersState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<DeadLetter>> {
    let stored = find(&providers.store, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut view = stored.view;
    if view.kind == Kind::Webhook {
        view.payload = crate::providers::webhook_payload(&providers, &view.source_id).await?;
    }
    Ok(Json(view))
}

/// Answer of a retry: how it ended and the dead letter as it now stands (null once gone).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RetryAnswer {
    /// `requeued` (202), `resolved` or `failed` (200).
    outcome: &'static str,
    /// Why the retry failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The dead letter as it now stands; null once resolved.
    dead_letter: Option<DeadLetter>,
}

/// Answer of a discard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Discarded {
    /// Always true.
    discarded: bool,
    /// The discarded dead letter's id.
    id: String,
}

/// Retries a dead letter now.
#[utoipa::path(post, path = "/dead-letters/{id}/retry", tag = "operations", responses(
    (status = 200, description = "`resolved`, or `failed` with the error.", body = RetryAnswer),
    (status = 202, description = "`requeued`: a webhook delivery waits for the inbox again, an order for the injection worker.", body = RetryAnswer),
    (status = 404, description = "`dead_letter_not_found`."),
    (status = 409, description = "`dead_letter_source_gone`: only discard is left."),
))]
async fn retry(
    State(store): State<Store>,
    State(providers): State<ProvidersState>,
    State(hooks): State<HooksState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RetryAnswer>)> {
    let stored = find(&store, &id).await?.ok_or_else(|| not_found(&id))?;
    let outcome = match stored.view.kind {
        Kind::Webhook => crate::providers::retry_webhook(&providers, &stored).await?,
        Kind::Sync => crate::providers::retry_sync(&providers, &stored).await?,
        Kind::Hook => crate::hooks::retry_dead_event(&hooks, &stored).await?,
        Kind::Order => crate::orders::retry_injection(&store, &stored).await?,
    };
    let (status, outcome, error) = match outcome {
        RetryOutcome::Requeued => (StatusCode::ACCEPTED, "requeued", None),
        RetryOutcome::Resolved => (StatusCode::OK, "resolved", None),
        RetryOutcome::Failed(reason) => {
            sqlx::query(
                "UPDATE dead_letters SET status = 'dead', reason = $1, attempts = attempts + 1,
                   retries = retries + 1, updated_at = $2 WHERE id = $3",
            )
            .bind(reason.chars().take(MAX_REASON_CHARS).collect::<String>())
            .bind(now_micros())
            .bind(&id)
            .execute(store.writer())
            .await?;
            (StatusCode::OK, "failed", Some(reason))
        }
        RetryOutcome::Gone(why) => {
            return Err(ApiError::conflict(
                "dead_letter_source_gone",
                format!("{why}; the dead letter can only be discarded"),
            ))
        }
    };
    let dead_letter = find(&store, &id).await?.map(|s| s.view);
    tracing::info!(dead_letter = %id, outcome, "dead letter retried by the operator");
    Ok((
        status,
        Json(RetryAnswer {
            outcome,
            error,
            dead_letter,
        }),
    ))
}

/// Discards a dead letter.
#[utoipa::path(delete, path = "/dead-letters/{id}", tag = "operations", responses(
    (status = 200, description = "Discarded.", body = Discarded),
    (status = 404, description = "`dead_letter_not_found`."),
))]
async fn discard(
    State(store): State<Store>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Discarded>> {
    let deleted = sqlx::query("DELETE FROM dead_letters WHERE id = $1")
        .bind(&id)
        .execute(store.writer())
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(not_found(&id));
    }
    tracing::info!(dead_letter = %id, "dead letter discarded by the operator");
    Ok(Json(Discarded {
        discarded: true,
        id,
    }))
}

/// The same as `DELETE /admin/dead-letters/{id}`, for clients that cannot send DELETE.
#[utoipa::path(post, path = "/dead-letters/{id}/discard", tag = "operations", responses(
    (status = 200, description = "Discarded.", body = Discarded),
    (status = 404, description = "`dead_letter_not_found`."),
))]
async fn discard_post(
    state: State<Store>,
    op: Operator,
    id: Path<String>,
) -> ApiResult<Json<Discarded>> {
    discard(state, op, id).await
}
