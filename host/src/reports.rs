//! Daily reports uploaded by the till at closing; a re-upload of the same date replaces the
//! previous one (the till corrected its figures) and bumps its revision.

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, TenantScope, TerminalCaller};
use crate::error::{ApiError, ApiResult};
use crate::events::{EventKind, LoggedTx, Writes};
use crate::extract::{ApiJson, Idempotency};
use crate::idempotency;
use crate::money::{parse_currency, NonNegativeAmount, MAX_AMOUNT};
use crate::store::{now_micros, rfc3339, Store, StoreError};

/// Body of `POST /api/{tenant}/reports/daily`. Amounts are minor units of the tenant's
/// currency; `net_sales` may be negative on a day of refunds.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DailyReportUpload {
    /// Business date, `YYYY-MM-DD`.
    #[schema(value_type = String, format = Date)]
    pub report_date: jiff::civil::Date,
    /// Must be the tenant's currency if given.
    #[serde(default)]
    pub currency: Option<String>,
    /// Gross sales.
    pub total_sales: NonNegativeAmount,
    /// Number of orders.
    pub total_orders: NonNegativeAmount,
    /// Cash tender.
    pub cash_sales: NonNegativeAmount,
    /// Card tender.
    pub card_sales: NonNegativeAmount,
    /// Gift card tender.
    pub gift_card_sales: NonNegativeAmount,
    /// Online orders.
    pub online_sales: NonNegativeAmount,
    /// Discounts given.
    pub discounts: NonNegativeAmount,
    /// Refunds paid out.
    pub refunds: NonNegativeAmount,
    /// Net sales.
    pub net_sales: i64,
    /// Best sellers, as the till reports them.
    #[serde(default = "empty_array")]
    pub top_items: serde_json::Value,
    /// Orders per hour, as the till reports them.
    #[serde(default = "empty_array")]
    pub busy_hours: serde_json::Value,
    /// Staff shifts, as the till reports them.
    #[serde(default = "empty_array")]
    pub staff_shifts: serde_json::Value,
    /// Free text.
    #[serde(default)]
    pub notes: Option<String>,
}

fn empty_array() -> serde_json::Value {
    serde_json::Value::Array(Vec::new())
}

/// A stored report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct DailyReport {
    /// Business date.
    pub report_date: String,
    /// ISO-4217.
    pub currency: String,
    /// Gross sales.
    pub total_sales: i64,
    /// Orders.
    pub total_orders: i64,
    /// Cash.
    pub cash_sales: i64,
    /// Card.
    pub card_sales: i64,
    /// Gift card.
    pub gift_card_sales: i64,
    /// Online.
    pub online_sales: i64,
    /// Discounts.
    pub discounts: i64,
    /// Refunds.
    pub refunds: i64,
    /// Net.
    pub net_sales: i64,
    /// As uploaded.
    pub top_items: serde_json::Value,
    /// As uploaded.
    pub busy_hours: serde_json::Value,
    /// As uploaded.
    pub staff_shifts: serde_json::Value,
    /// As uploaded.
    pub notes: Option<String>,
    /// 1 for the first upload of the date, +1 per replacement.
    pub revision: i64,
    /// First upload.
    pub uploaded_at: String,
    /// Latest upload.
    pub updated_at: String,
}

/// Why a report operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Inconsistent or malformed content.
    #[error("{0}")]
    Invalid(String),
    /// No report for that date.
    #[error("no daily report for {0}")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReportError {
    fn from(err: sqlx::Error) -> Self {
        ReportError::Store(err.into())
    }
}

impl From<ReportError> for ApiError {
    fn from(err: ReportError) -> Self {
        let message = err.to_string();
        match err {
            ReportError::Invalid(_) => ApiError::unprocessable("invalid_report", message),
            ReportError::NotFound(_) => ApiError::not_found("report_not_found", message),
            ReportError::Store(e) => e.into(),
        }
    }
}

const REPORT_COLUMNS: &str = "report_date, currency, total_sales, total_orders, cash_sales, card_sales, gift_card_sales, online_sales, discounts, refunds, net_sales, top_items, busy_hours, staff_shifts, notes, revision, uploaded_at, updated_at";

fn report_from_row(row: &sqlx::any::AnyRow) -> Result<DailyReport, ReportError> {
    let json = |col: &str| -> Result<serde_json::Value, ReportError> {
        let text: String = row.try_get(col)?;
        serde_json::from_str(&text)
            .map_err(|e| ReportError::Store(StoreError::Sqlx(sqlx::Error::Decode(Box::new(e)))))
    };
    Ok(DailyReport {
        report_date: row.try_get("report_date")?,
        currency: row.try_get("currency")?,
        total_sales: row.try_get("total_sales")?,
        total_orders: row.try_get("total_orders")?,
        cash_sales: row.try_get("cash_sales")?,
        card_sales: row.try_get("card_sales")?,
        gift_card_sales: row.try_get("gift_card_sales")?,
        online_sales: row.try_get("online_sales")?,
        discounts: row.try_get("discounts")?,
        refunds: row.try_get("refunds")?,
        net_sales: row.try_get("net_sales")?,
        top_items: json("top_items")?,
        busy_hours: json("busy_hours")?,
        staff_shifts: json("staff_shifts")?,
        notes: row.try_get("notes")?,
        revision: row.try_get("revision")?,
        uploaded_at: rfc3339(row.try_get("uploaded_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// Daily reports of a tenant.
pub(crate) struct DailyReports;

impl DailyReports {
    /// Stores (or replaces) the report for its date and emits `daily_report_uploaded`.
    /// Returns the stored report and whether it replaced an earlier one.
    async fn upload(
        tx: &mut LoggedTx,
        scope: &TenantScope,
        upload: DailyReportUpload,
    ) -> Result<(DailyReport, bool), ReportError> {
        if let Some(given) = &upload.currency {
            if parse_currency(given).as_deref() != Some(scope.currency()) {
                return Err(ReportError::Invalid(format!(
                    "currency {given} does not match the tenant's currency {}",
                    scope.currency()
                )));
            }
        }
        if upload.net_sales.abs() > MAX_AMOUNT {
            return Err(ReportError::Invalid(format!(
                "net_sales must be within ±{MAX_AMOUNT}"
            )));
        }
        for (name, value) in [
            ("top_items", &upload.top_items),
            ("busy_hours", &upload.busy_hours),
            ("staff_shifts", &upload.staff_shifts),
        ] {
            if !(value.is_array() || value.is_object()) {
                return Err(ReportError::Invalid(format!(
                    "{name} must be a JSON array or object"
                )));
            }
        }
        if upload
            .notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > 5000)
        {
            return Err(ReportError::Invalid(
                "notes must be at most 5000 characters".into(),
            ));
        }
        let date = upload.report_date.to_string();
        let now = now_micros();
        let row = sqlx::query(&format!(
            "INSERT INTO daily_reports (tenant_id, {REPORT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 1, $17, $17)
             ON CONFLICT (tenant_id, report_date) DO UPDATE SET
               total_sales = excluded.total_sales, total_orders = excluded.total_orders,
               cash_sales = excluded.cash_sales, card_sales = excluded.card_sales,
               gift_card_sales = excluded.gift_card_sales, online_sales = excluded.online_sales,
               discounts = excluded.discounts, refunds = excluded.refunds,
               net_sales = excluded.net_sales, top_items = excluded.top_items,
               busy_hours = excluded.busy_hours, staff_shifts = excluded.staff_shifts,
               notes = excluded.notes, revision = daily_reports.revision + 1,
               updated_at = excluded.updated_at
             RETURNING {REPORT_COLUMNS}"
        ))
        .bind(scope.tenant_id())
        .bind(&date)
        .bind(scope.currency())
        .bind(upload.total_sales.get())
        .bind(upload.total_orders.get())
        .bind(upload.cash_sales.get())
        .bind(upload.card_sales.get())
        .bind(upload.gift_card_sales.get())
        .bind(upload.online_sales.get())
        .bind(upload.discounts.get())
        .bind(upload.refunds.get())
        .bind(upload.net_sales)
        .bind(upload.top_items.to_string())
        .bind(upload.busy_hours.to_string())
        .bind(upload.staff_shifts.to_string())
        .bind(upload.notes.as_deref())
        .bind(now)
        .fetch_one(tx.conn())
        .await?;
        let report = report_from_row(&row)?;
        tx.append(
            scope,
            EventKind::DailyReportUploaded,
            &serde_json::json!({
                "report_date": report.report_date,
                "revision": report.revision,
                "currency": report.currency,
                "total_sales": report.total_sales,
                "total_orders": report.total_orders,
                "net_sales": report.net_sales,
            }),
        )?;
        let replaced = report.revision > 1;
        Ok((report, replaced))
    }

    /// The report for `date`.
    pub(crate) async fn get(
        store: &Store,
        scope: &TenantScope,
        date: &str,
    ) -> Result<DailyReport, ReportError> {
        let date: jiff::civil::Date = date
            .parse()
            .map_err(|_| ReportError::Invalid(format!("{date:?} is not a date (YYYY-MM-DD)")))?;
        let date = date.to_string();
        let row = sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM daily_reports WHERE tenant_id = $1 AND report_date = $2"
        ))
        .bind(scope.tenant_id())
        .bind(&date)
        .fetch_optional(store.reader())
        .await?
        .ok_or(ReportError::NotFound(date))?;
        report_from_row(&row)
    }
}

/// `/api/{tenant}/reports/daily…` routes.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    Writes: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(get_report))
}

/// Uploads the till's daily report; a second upload of a date replaces it (revision + 1). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/reports/daily", tag = "orders", request_body = DailyReportUpload,
    params(crate::extract::Idempotency), responses(
    (status = 201, description = "Stored (a new date).", body = DailyReport),
    (status = 200, description = "Replaced an earlier upload of the date.", body = DailyReport),
    (status = 422, description = "`invalid_report`: currency not the tenant's, bad amounts; `idempotency_key_reused`; `invalid_request`."),
))]
async fn upload(
    State(writes): State<Writes>,
    TerminalCaller(caller): TerminalCaller,
    idem: Idempotency,
    body: ApiJson<DailyReportUpload>,
) -> ApiResult<Response> {
    let scope = caller.scope;
    let op_scope = scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (op_scope, upload) = (op_scope.clone(), body.value.clone());
        Box::pin(async move {
            let (report, replaced) = DailyReports::upload(tx, &op_scope, upload).await?;
            let status = if replaced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok::<_, ReportError>((status, report))
        })
    })
    .await
}

/// The report of a business date (`YYYY-MM-DD`).
#[utoipa::path(get, path = "/reports/daily/{date}", tag = "orders", responses(
    (status = 200, description = "The report.", body = DailyReport),
    (status = 404, description = "`report_not_found`."),
    (status = 422, description = "`invalid_report`: not a date; `unsupported_character`."),
))]
async fn get_report(
    State(store): State<Store>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, date)): Path<(String, String)>,
) -> ApiResult<Json<DailyReport>> {
    Ok(Json(DailyReports::get(&store, &caller.scope, &date).await?))
}
