//! Loyalty points: balance (terminal), add and redeem (terminal), and the customer's ledger.

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{check_len, LedgerError};
use crate::auth::{AuthState, Caller, ManagerCaller, TenantScope, TerminalCaller};
use crate::customers::ladder::Ladder;
use crate::customers::points::Shortfall;
use crate::customers::{self, normalize_phone};
use crate::error::ApiResult;
use crate::events::{EventKind, LoggedTx, Writes};
use crate::extract::{ApiJson, Idempotency};
use crate::idempotency;
use crate::money::PositiveAmount;
use crate::paging::{Page, PageQuery};
use crate::store::{new_id, now_micros, rfc3339, Store};

/// A customer's points.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct LoyaltyBalance {
    /// E.164 phone number.
    pub phone: String,
    /// Points available to redeem.
    pub points: i64,
    /// Points ever earned (redemptions do not lower it).
    pub lifetime_points: i64,
}

/// A customer's points with their tier, as `GET /loyalty/{phone}/points` shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct PointsAndTier {
    /// The points.
    #[serde(flatten)]
    pub balance: LoyaltyBalance,
    /// The customer's tier (the tenant's lowest until a spend rule unlocks one).
    pub tier: String,
    /// The customer's access level (the tenant's lowest until a rule grants one).
    pub access_level: String,
}

/// Body of `POST /loyalty/{phone}/add` and `/redeem`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PointsRequest {
    /// Points to add or redeem (> 0).
    pub points: PositiveAmount,
    /// The order that earned or spent them.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Free text for the audit trail.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer of adding or redeeming points.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PointsResponse {
    /// The points now.
    #[serde(flatten)]
    balance: LoyaltyBalance,
    /// Signed change.
    change: i64,
    /// The ledger row.
    transaction_id: String,
}

/// One ledger row of a customer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct LoyaltyTransaction {
    /// Ledger row id.
    pub id: String,
    /// `add` or `redeem`.
    pub kind: String,
    /// Signed change.
    pub points: i64,
    /// Points after the change.
    pub balance_after: i64,
    /// Related order.
    pub order_id: Option<String>,
    /// Free text.
    pub reason: Option<String>,
    /// The API key that made the change.
    pub api_key_id: Option<String>,
    /// When.
    pub created_at: String,
}

/// The loyalty ledger of a tenant.
pub(crate) struct LoyaltyLedger;

impl LoyaltyLedger {
    /// The customer's points and tier; 404 for a phone the tenant has never seen.
    pub(crate) async fn balance(
        store: &Store,
        scope: &TenantScope,
        raw_phone: &str,
    ) -> Result<PointsAndTier, LedgerError> {
        let phone = normalize_phone(scope.country(), raw_phone)?;
        let row = sqlx::query(
            "SELECT c.points, c.lifetime_points, c.tier, c.access_level, l.tiers, l.access_levels
             FROM customers c LEFT JOIN tier_ladders l ON l.tenant_id = c.tenant_id
             WHERE c.tenant_id = $1 AND c.phone = $2",
        )
        .bind(scope.tenant_id())
        .bind(&phone)
        .fetch_optional(store.point_reader())
        .await?
        .ok_or_else(|| LedgerError::CustomerNotFound(phone.clone()))?;
        let ladder = Ladder::from_stored(row.try_get("tiers")?, row.try_get("access_levels")?);
        let tier: Option<String> = row.try_get("tier")?;
        let access: Option<String> = row.try_get("access_level")?;
        Ok(PointsAndTier {
            balance: LoyaltyBalance {
                points: row.try_get("points")?,
                lifetime_points: row.try_get("lifetime_points")?,
                phone,
            },
            tier: ladder.effective_tier(tier.as_deref()),
            access_level: ladder.effective_access(access.as_deref()),
        })
    }

    /// Adds points, enrolling the customer on first use, and emits `loyalty_updated`.
    async fn add(
        tx: &mut LoggedTx,
        caller: &Caller,
        raw_phone: &str,
        req: PointsRequest,
    ) -> Result<PointsResponse, LedgerError> {
        let scope = &caller.scope;
        validate(&req)?;
        let phone = normalize_phone(scope.country(), raw_phone)?;
        let points = req.points.get();
        let now = now_micros();
        let transaction_id = new_id();
        let entry = ledger_entry(&transaction_id, caller, &req);
        let backend = tx.backend();
        let row = customers::points::credit(
            tx.conn(),
            backend,
            scope.tenant_id(),
            &phone,
            points,
            now,
            entry,
        )
        .await?;
        finish(tx, caller, row, phone, points, req, transaction_id)
    }

    /// Redeems points if the balance covers them, and emits `loyalty_updated`.
    async fn redeem(
        tx: &mut LoggedTx,
        caller: &Caller,
        raw_phone: &str,
        req: PointsRequest,
    ) -> Result<PointsResponse, LedgerError> {
        let scope = &caller.scope;
        validate(&req)?;
        let phone = normalize_phone(scope.country(), raw_phone)?;
        let points = req.points.get();
        let now = now_micros();
        let transaction_id = new_id();
        let entry = ledger_entry(&transaction_id, caller, &req);
        let backend = tx.backend();
        let debited = customers::points::debit(
            tx.conn(),
            backend,
            scope.tenant_id(),
            &phone,
            points,
            now,
            entry,
        )
        .await?;
        let row = match debited {
            Ok(row) => row,
            Err(Shortfall::NoCustomer) => return Err(LedgerError::CustomerNotFound(phone)),
            Err(Shortfall::Insufficient { balance }) => {
                return Err(LedgerError::InsufficientPoints {
                    balance,
                    requested: points,
                })
            }
        };
        finish(tx, caller, row, phone, -points, req, transaction_id)
    }

    /// The customer's points ledger, newest first.
    pub(crate) async fn transactions(
        store: &Store,
        scope: &TenantScope,
        raw_phone: &str,
        page: &PageQuery,
    ) -> Result<Page<LoyaltyTransaction>, LedgerError> {
        let phone = normalize_phone(scope.country(), raw_phone)?;
        let customer_id: String =
            sqlx::query_scalar("SELECT id FROM customers WHERE tenant_id = $1 AND phone = $2")
                .bind(scope.tenant_id())
                .bind(&phone)
                .fetch_optional(store.reader())
                .await?
                .ok_or(LedgerError::CustomerNotFound(phone))?;
        let (before_at, before_id) = page.before();
        let rows = sqlx::query(
            "SELECT id, kind, points, balance_after, order_id, reason, api_key_id, created_at
             FROM loyalty_transactions
             WHERE tenant_id = $1 AND customer_id = $2
               AND (created_at < $3 OR (created_at = $3 AND id < $4))
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(scope.tenant_id())
        .bind(&customer_id)
        .bind(before_at)
        .bind(before_id)
        .bind(page.fetch_limit())
        .fetch_all(store.reader())
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("created_at")?,
                    LoyaltyTransaction {
                        id: r.try_get("id")?,
                        kind: r.try_get("kind")?,
                        points: r.try_get("points")?,
                        balance_after: r.try_get("balance_after")?,
                        order_id: r.try_get("order_id")?,
                        reason: r.try_get("reason")?,
                        api_key_id: r.try_get("api_key_id")?,
                        created_at: rfc3339(r.try_get("created_at")?),
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(page.page(items, |t| t.id.clone()))
    }
}

fn validate(req: &PointsRequest) -> Result<(), LedgerError> {
    check_len("order_id", &req.order_id, 128)?;
    check_len("reason", &req.reason, 500)
}

/// The ledger row a move writes with it (see [`customers::points::LedgerEntry`]).
fn ledger_entry<'a>(
    transaction_id: &'a str,
    caller: &'a Caller,
    req: &'a PointsRequest,
) -> customers::points::LedgerEntry<'a> {
    customers::points::LedgerEntry {
        id: transaction_id,
        order_id: req.order_id.as_deref(),
        reason: req.reason.as_deref(),
        api_key_id: &caller.key_id,
    }
}

/// Appends the `loyalty_updated` event of a move whose ledger row is written, and builds
/// the answer shared by add and redeem.
fn finish(
    tx: &mut LoggedTx,
    caller: &Caller,
    row: customers::points::Points,
    phone: String,
    change: i64,
    req: PointsRequest,
    transaction_id: String,
) -> Result<PointsResponse, LedgerError> {
    // Points moved are never zero (`PositiveAmount`): the sign tells the move.
    let kind = if change > 0 { "add" } else { "redeem" };
    let balance = LoyaltyBalance {
        phone,
        points: row.points,
        lifetime_points: row.lifetime_points,
    };
    tx.append(
        &caller.scope,
        EventKind::LoyaltyUpdated,
        &serde_json::json!({
            "phone": balance.phone,
            "points": balance.points,
            "lifetime_points": balance.lifetime_points,
            "change": change,
            "kind": kind,
            "order_id": req.order_id,
            "reason": req.reason,
            "transaction_id": transaction_id,
        }),
    )?;
    Ok(PointsResponse {
        balance,
        change,
        transaction_id,
    })
}

pub(super) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    Writes: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(points))
        .routes(routes!(add))
        .routes(routes!(redeem))
        .routes(routes!(transactions))
}

/// A customer's points and tier (any key).
#[utoipa::path(get, path = "/loyalty/{phone}/points", tag = "ledger", responses(
    (status = 200, description = "The points.", body = PointsAndTier),
    (status = 404, description = "`customer_not_found`."),
    (status = 422, description = "`invalid_phone`; `unsupported_character`."),
))]
async fn points(
    State(store): State<Store>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, phone)): Path<(String, String)>,
) -> ApiResult<Json<PointsAndTier>> {
    Ok(Json(
        LoyaltyLedger::balance(&store, &caller.scope, &phone).await?,
    ))
}

/// Adds points, creating the customer (any key); terminals receive `loyalty_updated`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/loyalty/{phone}/add", tag = "ledger", request_body = PointsRequest,
    params(crate::extract::Idempotency), responses(
    (status = 200, description = "Added.", body = PointsResponse),
    (status = 422, description = "`invalid_phone`, `idempotency_key_reused`, `invalid_request`."),
))]
async fn add(
    State(writes): State<Writes>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, phone)): Path<(String, String)>,
    idem: Idempotency,
    body: ApiJson<PointsRequest>,
) -> ApiResult<Response> {
    let scope = caller.scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (caller, phone, req) = (caller.clone(), phone.clone(), body.value.clone());
        Box::pin(async move {
            let done = LoyaltyLedger::add(tx, &caller, &phone, req).await?;
            Ok::<_, LedgerError>((StatusCode::OK, done))
        })
    })
    .await
}

/// Redeems points (any key); terminals receive `loyalty_updated`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/loyalty/{phone}/redeem", tag = "ledger", request_body = PointsRequest,
    params(crate::extract::Idempotency), responses(
    (status = 200, description = "Redeemed.", body = PointsResponse),
    (status = 404, description = "`customer_not_found`."),
    (status = 422, description = "`insufficient_points` (nothing changed), `invalid_phone`, `idempotency_key_reused`, `invalid_request`."),
))]
async fn redeem(
    State(writes): State<Writes>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, phone)): Path<(String, String)>,
    idem: Idempotency,
    body: ApiJson<PointsRequest>,
) -> ApiResult<Response> {
    let scope = caller.scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (caller, phone, req) = (caller.clone(), phone.clone(), body.value.clone());
        Box::pin(async move {
            let done = LoyaltyLedger::redeem(tx, &caller, &phone, req).await?;
            Ok::<_, LedgerError>((StatusCode::OK, done))
        })
    })
    .await
}

/// A customer's points ledger, newest first (manager key).
#[utoipa::path(get, path = "/loyalty/{phone}/transactions", tag = "ledger", params(crate::paging::PageQuery), responses(
    (status = 200, description = "A page of ledger rows.", body = Page<LoyaltyTransaction>),
    (status = 404, description = "`customer_not_found`."),
    (status = 422, description = "`invalid_phone`; `unsupported_character`."),
))]
async fn transactions(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, phone)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<LoyaltyTransaction>>> {
    Ok(Json(
        LoyaltyLedger::transactions(&store, &caller.scope, &phone, &page).await?,
    ))
}
