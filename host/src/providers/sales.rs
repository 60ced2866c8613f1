//! Reading recorded sales: the venue's transactions (newest first, cursor paged) and its
//! revenue over a calendar period in the venue's time zone, refunds netted.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::integrations::Integration;
use crate::auth::TenantScope;
use crate::customers::normalize_phone;
use crate::error::ApiError;
use crate::paging::{Page, PageQuery};
use crate::providers::ProvidersState;
use crate::store::rfc3339;

/// Query of `GET /pos/transactions/{venue}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TransactionQuery {
    /// Only sales at or after (RFC 3339).
    pub from: Option<String>,
    /// Only sales before (RFC 3339).
    pub to: Option<String>,
    /// Only sales of this customer (phone).
    pub customer: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// Next-page cursor.
    pub cursor: Option<String>,
}

/// A stored sale.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Sale {
    /// Our id.
    pub id: String,
    /// Provider id.
    pub external_id: String,
    /// Provider order id.
    pub order_id: Option<String>,
    /// When.
    pub occurred_at: String,
    /// ISO-4217.
    pub currency: String,
    /// Minor units.
    pub total: i64,
    /// Minor units.
    pub subtotal: i64,
    /// Minor units.
    pub tax: i64,
    /// Minor units.
    pub tip: i64,
    /// Minor units.
    pub discount: i64,
    /// Minor units refunded.
    pub refunded: i64,
    /// Tender.
    pub tender: String,
    /// completed, pending, voided, failed.
    pub status: String,
    /// Card brand and last four.
    pub card: Option<serde_json::Value>,
    /// Matched customer.
    pub customer: Option<serde_json::Value>,
    /// webhook, sync or push.
    pub source: String,
    /// Tags hooks put on the sale ("big-sale"), in the order added.
    pub tags: Vec<String>,
    /// Who served it (`{"id","name"}`), when the provider said (plugin contract 0.2).
    pub staff: Option<serde_json::Value>,
    /// What was sold, in receipt order; empty when the provider does not itemise.
    pub line_items: Vec<serde_json::Value>,
    /// The refunds behind `refunded`, when the provider lists them.
    pub refunds: Vec<serde_json::Value>,
}

/// A JSON-array column (NULL: none) as a list; a corrupt one reads as empty rather than
/// failing the whole page.
fn json_list(text: Option<String>) -> Vec<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn parse_time(field: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .map(|t| t.as_microsecond())
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("{field} must be an RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

/// The venue's sales, newest first.
pub(super) async fn transactions(
    app: &ProvidersState,
    scope: &TenantScope,
    integration: &Integration,
    query: TransactionQuery,
) -> Result<Page<Sale>, ApiError> {
    let from = parse_time("from", &query.from)?.unwrap_or(i64::MIN);
    let to = parse_time("to", &query.to)?.unwrap_or(i64::MAX);
    let customer_phone = query
        .customer
        .as_deref()
        .map(|p| {
            normalize_phone(scope.country(), p)
                .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))
        })
        .transpose()?;
    let page = PageQuery {
        limit: query.limit,
        cursor: query
            .cursor
            .map(|c| {
                crate::paging::Cursor::try_from(c)
                    .map_err(|e| ApiError::bad_request("invalid_query", e))
            })
            .transpose()?,
    };
    let (before_at, before_id) = page.before();
    let rows = sqlx::query(
        "SELECT t.id, t.external_id, t.order_id, t.occurred_at, t.currency, t.total, t.subtotal, t.tax, t.tip, t.discount,
                t.refunded, t.tender, t.status, t.card_brand, t.card_last4, t.source, t.tags, c.id AS customer_id, c.phone,
                t.staff_id, t.staff_name, t.line_items, t.refunds
         FROM pos_transactions t LEFT JOIN customers c ON c.id = t.customer_id
         WHERE t.tenant_id = $1 AND t.integration_id = $2 AND t.occurred_at >= $3 AND t.occurred_at < $4
           AND ($5 IS NULL OR c.phone = $5)
           AND (t.occurred_at < $6 OR (t.occurred_at = $6 AND t.id < $7))
         ORDER BY t.occurred_at DESC, t.id DESC LIMIT $8",
    )
    .bind(scope.tenant_id())
    .bind(&integration.id)
    .bind(from)
    .bind(to)
    .bind(customer_phone.as_deref())
    .bind(before_at)
    .bind(before_id)
    .bind(page.fetch_limit())
    .fetch_all(app.store.reader())
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let occurred: i64 = r.try_get("occurred_at")?;
            let brand: Option<String> = r.try_get("card_brand")?;
            let last4: Option<String> = r.try_get("card_last4")?;
            let customer_id: Option<String> = r.try_get("customer_id")?;
            let phone: Option<String> = r.try_get("phone")?;
            let tags: String = r.try_get("tags")?;
            let staff_id: Option<String> = r.try_get("staff_id")?;
            let staff_name: Option<String> = r.try_get("staff_name")?;
            Ok((
                occurred,
                Sale {
                    id: r.try_get("id")?,
                    external_id: r.try_get("external_id")?,
                    order_id: r.try_get("order_id")?,
                    occurred_at: rfc3339(occurred),
                    currency: r.try_get("currency")?,
                    total: r.try_get("total")?,
                    subtotal: r.try_get("subtotal")?,
                    tax: r.try_get("tax")?,
                    tip: r.try_get("tip")?,
                    discount: r.try_get("discount")?,
                    refunded: r.try_get("refunded")?,
                    tender: r.try_get("tender")?,
                    status: r.try_get("status")?,
                    card: (brand.is_some() || last4.is_some())
                        .then(|| serde_json::json!({"brand": brand, "last4": last4})),
                    customer: customer_id.map(|id| serde_json::json!({"id": id, "phone": phone})),
                    source: r.try_get("source")?,
                    tags: serde_json::from_str(&tags).unwrap_or_default(),
                    staff: (staff_id.is_some() || staff_name.is_some())
                        .then(|| serde_json::json!({"id": staff_id, "name": staff_name})),
                    line_items: json_list(r.try_get("line_items")?),
                    refunds: json_list(r.try_get("refunds")?),
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(page.page(items, |s| s.id.clone()))
}

/// A calendar period for revenue.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Period {
    /// Today so far.
    Day,
    /// This week (Monday first) so far.
    Week,
    /// This month so far.
    Month,
    /// This year so far.
    Year,
    /// Everything.
    #[default]
    All,
}

/// Revenue of a venue over a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Revenue {
    /// The period.
    pub period: Period,
    /// Start (venue's local midnight, as RFC 3339), absent for `all`.
    pub from: Option<String>,
    /// Now.
    pub to: String,
    /// The venue's time zone.
    pub timezone: String,
    /// ISO-4217.
    pub currency: String,
    /// Completed sales, net of refunds, minor units.
    pub total: i64,
    /// Refunds netted out, minor units.
    pub refunds: i64,
    /// Completed sales counted.
    pub count: i64,
    /// total / count, rounded half away from zero; 0 when there are no sales.
    pub average: i64,
}

/// Revenue of the venue over `period`, in the venue's time zone.
pub(super) async fn revenue(
    app: &ProvidersState,
    scope: &TenantScope,
    integration: &Integration,
    period: Period,
) -> Result<Revenue, ApiError> {
    let tz = jiff::tz::TimeZone::get(&integration.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let now = jiff::Timestamp::now().to_zoned(tz);
    let today = now.date();
    let start_date = match period {
        Period::Day => Some(today),
        Period::Week => {
            Some(today - jiff::Span::new().days(i64::from(today.weekday().to_monday_zero_offset())))
        }
        Period::Month => Some(today.first_of_month()),
        Period::Year => Some(today.first_of_year()),
        Period::All => None,
    };
    let from = match start_date {
        Some(date) => Some(
            date.to_zoned(now.time_zone().clone())
                .map_err(|_| ApiError::internal())?
                .timestamp(),
        ),
        None => None,
    };
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(total - refunded), 0) AS BIGINT) AS net, CAST(COALESCE(SUM(refunded), 0) AS BIGINT) AS refunds,
                COUNT(*) AS n
         FROM pos_transactions WHERE tenant_id = $1 AND integration_id = $2 AND status = 'completed' AND occurred_at >= $3",
    )
    .bind(scope.tenant_id())
    .bind(&integration.id)
    .bind(from.map(|t| t.as_microsecond()).unwrap_or(i64::MIN))
    .fetch_one(app.store.reader())
    .await?;
    let total: i64 = row.try_get("net")?;
    let count: i64 = row.try_get("n")?;
    Ok(Revenue {
        period,
        from: from.map(|t| {
            t.display_with_offset(t.to_zoned(now.time_zone().clone()).offset())
                .to_string()
        }),
        to: now.timestamp().to_string(),
        timezone: integration.timezone.clone(),
        currency: integration.currency.clone(),
        total,
        refunds: row.try_get("refunds")?,
        count,
        average: if count == 0 {
            0
        } else {
            rounded_div(total, count)
        },
    })
}

/// The width of one point of a revenue series.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Bucket {
    /// A calendar day.
    #[default]
    Day,
    /// A week, Monday first.
    Week,
    /// A calendar month.
    Month,
}

/// Query of `GET /pos/revenue/{venue}/series`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SeriesQuery {
    /// Width of each point; default `day`.
    #[serde(default)]
    pub by: Bucket,
    /// First day (`YYYY-MM-DD`, venue's calendar), moved back to the start of its week or
    /// month. Default: 30 days, 12 weeks or 12 months back, `to` included.
    pub from: Option<String>,
    /// Last day included (`YYYY-MM-DD`); default today in the venue's time zone.
    pub to: Option<String>,
}

/// One point of a revenue series: the completed sales of one day, week or month.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SeriesPoint {
    /// First day of the period (`YYYY-MM-DD`, venue's calendar).
    pub start: String,
    /// Completed sales net of refunds, minor units.
    pub total: i64,
    /// Refunds netted out, minor units.
    pub refunds: i64,
    /// Completed sales counted.
    pub count: i64,
}

/// A venue's revenue per day, week or month, every period present (zero when it had no
/// sales), oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RevenueSeries {
    /// Width of each point.
    pub by: Bucket,
    /// First day covered (`YYYY-MM-DD`).
    pub from: String,
    /// Last day covered, included (`YYYY-MM-DD`).
    pub to: String,
    /// The venue's time zone, whose calendar the periods follow.
    pub timezone: String,
    /// ISO-4217.
    pub currency: String,
    /// Sum of the points' totals, minor units.
    pub total: i64,
    /// Sum of the points' counts.
    pub count: i64,
    /// The periods, oldest first.
    pub points: Vec<SeriesPoint>,
}

/// Most points one series answers (a year and a day of days).
pub(super) const MAX_SERIES_POINTS: usize = 367;

fn parse_date(field: &str, value: Option<&str>) -> Result<Option<jiff::civil::Date>, ApiError> {
    value
        .map(|v| {
            v.parse::<jiff::civil::Date>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{field} must be a date, YYYY-MM-DD"),
                )
            })
        })
        .transpose()
}

/// The start of the period of width `by` that holds `date`.
fn period_start(by: Bucket, date: jiff::civil::Date) -> jiff::civil::Date {
    match by {
        Bucket::Day => date,
        Bucket::Week => {
            date - jiff::Span::new().days(i64::from(date.weekday().to_monday_zero_offset()))
        }
        Bucket::Month => date.first_of_month(),
    }
}

/// The start of the period after the one starting at `start`.
fn next_start(by: Bucket, start: jiff::civil::Date) -> Result<jiff::civil::Date, ApiError> {
    let step = match by {
        Bucket::Day => jiff::Span::new().days(1),
        Bucket::Week => jiff::Span::new().weeks(1),
        Bucket::Month => jiff::Span::new().months(1),
    };
    start
        .checked_add(step)
        .map_err(|_| ApiError::bad_request("invalid_query", "the range runs past the calendar"))
}

/// The starts of every period from `from`'s to `to`'s, and the day after the last one.
fn period_starts(
    by: Bucket,
    from: jiff::civil::Date,
    to: jiff::civil::Date,
) -> Result<(Vec<jiff::civil::Date>, jiff::civil::Date), ApiError> {
    let mut starts = Vec::new();
    let mut start = period_start(by, from);
    while start <= to {
        if starts.len() == MAX_SERIES_POINTS {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("the range holds more than {MAX_SERIES_POINTS} periods: narrow it or use a wider `by`"),
            ));
        }
        starts.push(start);
        start = next_start(by, start)?;
    }
    Ok((starts, start))
}

/// The venue's revenue per period of width `by`, in its time zone, refunds netted.
pub(super) async fn revenue_series(
    app: &ProvidersState,
    scope: &TenantScope,
    integration: &Integration,
    query: SeriesQuery,
) -> Result<RevenueSeries, ApiError> {
    let tz = jiff::tz::TimeZone::get(&integration.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let to = parse_date("to", query.to.as_deref())?.unwrap_or(today);
    let from = match parse_date("from", query.from.as_deref())? {
        Some(from) => from,
        None => {
            let back = match query.by {
                Bucket::Day => jiff::Span::new().days(29),
                Bucket::Week => jiff::Span::new().weeks(11),
                Bucket::Month => jiff::Span::new().months(11),
            };
            to.checked_sub(back).unwrap_or(jiff::civil::Date::MIN)
        }
    };
    if from > to {
        return Err(ApiError::bad_request("invalid_query", "from is after to"));
    }
    let (starts, end) = period_starts(query.by, from, to)?;
    // A local midnight that does not exist (a DST gap) resolves to the instant after it.
    let instant = |date: jiff::civil::Date| -> Result<i64, ApiError> {
        Ok(date
            .to_zoned(tz.clone())
            .map_err(|_| ApiError::internal())?
            .timestamp()
            .as_microsecond())
    };
    let bounds = starts
        .iter()
        .map(|d| instant(*d))
        .collect::<Result<Vec<i64>, ApiError>>()?;
    let first = bounds.first().copied().unwrap_or(i64::MIN);
    let rows = sqlx::query(
        "SELECT occurred_at, total - refunded AS net, refunded FROM pos_transactions
         WHERE tenant_id = $1 AND integration_id = $2 AND status = 'completed'
           AND occurred_at >= $3 AND occurred_at < $4",
    )
    .bind(scope.tenant_id())
    .bind(&integration.id)
    .bind(first)
    .bind(instant(end)?)
    .fetch_all(app.store.reader())
    .await?;
    let mut points: Vec<SeriesPoint> = starts
        .iter()
        .map(|d| SeriesPoint {
            start: d.to_string(),
            total: 0,
            refunds: 0,
            count: 0,
        })
        .collect();
    for row in &rows {
        let at: i64 = row.try_get("occurred_at")?;
        // The last period starting at or before the sale.
        let i = bounds.partition_point(|b| *b <= at).saturating_sub(1);
        if let Some(point) = points.get_mut(i) {
            point.total += row.try_get::<i64, _>("net")?;
            point.refunds += row.try_get::<i64, _>("refunded")?;
            point.count += 1;
        }
    }
    Ok(RevenueSeries {
        by: query.by,
        from: starts.first().copied().unwrap_or(from).to_string(),
        to: to.to_string(),
        timezone: integration.timezone.clone(),
        currency: integration.currency.clone(),
        total: points.iter().map(|p| p.total).sum(),
        count: points.iter().map(|p| p.count).sum(),
        points,
    })
}

/// Integer division rounding half away from zero.
fn rounded_div(a: i64, b: i64) -> i64 {
    let (q, r) = (a / b, a % b);
    if 2 * r.abs() >= b.abs() {
        q + a.signum() * b.signum()
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_time, period_starts, rounded_div, Bucket, Period, MAX_SERIES_POINTS};

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(rounded_div(10, 4), 3);
        assert_eq!(rounded_div(9, 4), 2);
        assert_eq!(rounded_div(-10, 4), -3);
        assert_eq!(rounded_div(3000, 3), 1000);
    }

    #[test]
    fn exact_halves_round_away_from_zero_whatever_the_signs() {
        assert_eq!(rounded_div(5, 2), 3);
        assert_eq!(rounded_div(-5, 2), -3);
        assert_eq!(rounded_div(5, -2), -3);
        assert_eq!(rounded_div(-5, -2), 3);
    }

    #[test]
    fn below_half_rounds_toward_zero() {
        assert_eq!(rounded_div(1, 3), 0);
        assert_eq!(rounded_div(-1, 3), 0);
        assert_eq!(rounded_div(0, 7), 0);
        assert_eq!(rounded_div(7, 1), 7);
        assert_eq!(rounded_div(2, 3), 1);
    }

    #[test]
    fn periods_are_lowercase_names_and_default_to_all() {
        assert_eq!(Period::default(), Period::All);
        for (text, period) in [
            ("day", Period::Day),
            ("week", Period::Week),
            ("month", Period::Month),
            ("year", Period::Year),
            ("all", Period::All),
        ] {
            let json = serde_json::Value::String(text.into());
            assert_eq!(
                serde_json::from_value::<Period>(json.clone()).unwrap(),
                period
            );
            assert_eq!(serde_json::to_value(period).unwrap(), json);
        }
        assert!(serde_json::from_value::<Period>(serde_json::json!("Day")).is_err());
        assert!(serde_json::from_value::<Period>(serde_json::json!("quarter")).is_err());
    }

    #[test]
    fn query_times_are_rfc3339_instants_in_microseconds() {
        assert_eq!(parse_time("from", &None).ok(), Some(None));
        assert_eq!(
            parse_time("from", &Some("1970-01-01T00:00:01Z".into())).ok(),
            Some(Some(1_000_000))
        );
        assert_eq!(
            parse_time("to", &Some("2026-07-10T20:00:00-04:00".into())).ok(),
            parse_time("to", &Some("2026-07-11T00:00:00Z".into())).ok()
        );
        assert!(parse_time("from", &Some("2026-07-10".into())).is_err());
        assert!(parse_time("from", &Some("yesterday".into())).is_err());
    }

    fn date(text: &str) -> jiff::civil::Date {
        text.parse().expect("a date")
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let (starts, end) =
            period_starts(Bucket::Week, date("2026-12-02"), date("2026-12-14")).expect("weeks");
        let starts: Vec<String> = starts.iter().map(ToString::to_string).collect();
        assert_eq!(starts, ["2026-11-30", "2026-12-07", "2026-12-14"]);
        assert_eq!(end, date("2026-12-21"));
        let (starts, end) =
            period_starts(Bucket::Month, date("2026-01-31"), date("2026-03-01")).expect("months");
        let starts: Vec<String> = starts.iter().map(ToString::to_string).collect();
        assert_eq!(starts, ["2026-01-01", "2026-02-01", "2026-03-01"]);
        assert_eq!(end, date("2026-04-01"));
    }

    #[test]
    fn a_range_of_too_many_periods_is_refused() {
        assert!(period_starts(Bucket::Day, date("2026-01-01"), date("2026-12-31")).is_ok());
        assert!(period_starts(Bucket::Day, date("2020-01-01"), date("2026-12-31")).is_err());
        let (starts, _) = period_starts(Bucket::Day, date("2025-12-31"), date("2026-12-31"))
            .expect("a year and a day");
        assert_eq!(starts.len(), MAX_SERIES_POINTS - 1);
    }
}
