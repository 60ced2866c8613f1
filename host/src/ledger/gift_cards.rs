//! Gift cards: issue (manager), balance and deduct (terminal), and the card's ledger.

use std::sync::LazyLock;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{check_len, LedgerError};
use crate::auth::{AuthState, Caller, ManagerCaller, TenantScope, TerminalCaller};
use crate::error::ApiResult;
use crate::events::{EventKind, LoggedTx, Writes};
use crate::extract::{ApiJson, Idempotency};
use crate::idempotency;
use crate::money::{parse_currency, Money, PositiveAmount};
use crate::paging::{Page, PageQuery};
use crate::store::{new_id, now_micros, rfc3339, Backend, Store};

/// A card as terminals see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct GiftCardView {
    /// The card code (upper case).
    pub code: String,
    /// Remaining value.
    pub balance: Money,
    /// `active` or `disabled`.
    pub status: String,
}

/// Body of `POST /api/{tenant}/gift-cards` (manager): issue or sell a card.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueRequest {
    /// Card code; generated when absent.
    #[serde(default)]
    pub code: Option<String>,
    /// Initial value, minor units.
    pub amount: PositiveAmount,
    /// Must be the tenant's currency if given.
    #[serde(default)]
    pub currency: Option<String>,
    /// The purchase order, for the audit trail.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Who bought it (free text, e.g. a name or email).
    #[serde(default)]
    pub purchaser: Option<String>,
    /// Who it is for.
    #[serde(default)]
    pub recipient: Option<String>,
}

/// Body of `POST /api/{tenant}/gift-cards/{code}/deduct`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeductRequest {
    /// Amount to take off, minor units.
    pub amount: PositiveAmount,
    /// The order paid with the card.
    #[serde(default)]
    pub order_id: Option<String>,
}

/// Answer of issuing a card.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct IssueResponse {
    /// The card code (upper case).
    code: String,
    /// Its value.
    balance: Money,
    /// `active`.
    status: &'static str,
    /// The ledger row.
    transaction_id: String,
    /// When.
    created_at: String,
}

/// Answer of a deduction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeductResponse {
    /// The card code.
    code: String,
    /// What is left.
    balance: Money,
    /// What was taken.
    deducted: Money,
    /// The ledger row.
    transaction_id: String,
}

/// One ledger row of a card.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct GiftCardTransaction {
    /// Ledger row id.
    pub id: String,
    /// `purchase` or `redeem`.
    pub kind: String,
    /// Signed change, minor units.
    pub amount: i64,
    /// Balance after the change.
    pub balance_after: i64,
    /// Related order.
    pub order_id: Option<String>,
    /// The API key that made the change.
    pub api_key_id: Option<String>,
    /// When.
    pub created_at: String,
}

/// Characters of generated codes: no 0/O or 1/I, which staff misread from receipts.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn normalize_code(raw: &str) -> Result<String, LedgerError> {
    let code = raw.trim().to_ascii_uppercase();
    if (4..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(code)
    } else {
        Err(LedgerError::InvalidCode)
    }
}

fn generate_code() -> String {
    let mut rng = rand::rng();
    (0..16)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// The gift card ledger of a tenant.
pub(crate) struct GiftCardLedger;

impl GiftCardLedger {
    /// Current balance and status of a card.
    pub(crate) async fn balance(
        store: &Store,
        scope: &TenantScope,
        code: &str,
    ) -> Result<GiftCardView, LedgerError> {
        let code =
            normalize_code(code).map_err(|_| LedgerError::GiftCardNotFound(code.to_owned()))?;
        let row = sqlx::query(
            "SELECT balance, currency, status FROM gift_cards WHERE tenant_id = $1 AND code = $2",
        )
        .bind(scope.tenant_id())
        .bind(&code)
        .fetch_optional(store.point_reader())
        .await?
        .ok_or_else(|| LedgerError::GiftCardNotFound(code.clone()))?;
        Ok(GiftCardView {
            balance: Money::new(
                row.try_get("balance")?,
                row.try_get::<String, _>("currency")?,
            ),
            status: row.try_get("status")?,
            code,
        })
    }

    /// Issues a card with an initial balance and emits `gift_card_purchased`.
    async fn issue(
        tx: &mut LoggedTx,
        caller: &Caller,
        req: IssueRequest,
    ) -> Result<IssueResponse, LedgerError> {
        let scope = &caller.scope;
        if let Some(given) = &req.currency {
            if parse_currency(given).as_deref() != Some(scope.currency()) {
                return Err(LedgerError::CurrencyMismatch {
                    given: given.clone(),
                    expected: scope.currency().to_owned(),
                });
            }
        }
        check_len("order_id", &req.order_id, 128)?;
        check_len("purchaser", &req.purchaser, 200)?;
        check_len("recipient", &req.recipient, 200)?;
        let code = match &req.code {
            Some(code) => normalize_code(code)?,
            None => generate_code(),
        };
        let amount = req.amount.get();
        let now = now_micros();
        let card_id = new_id();
        let inserted = sqlx::query(
            "INSERT INTO gift_cards (id, tenant_id, code, currency, balance, initial_amount, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5, 'active', $6, $6) ON CONFLICT (tenant_id, code) DO NOTHING",
        )
        .bind(&card_id)
        .bind(scope.tenant_id())
        .bind(&code)
        .bind(scope.currency())
        .bind(amount)
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(LedgerError::GiftCardExists(code));
        }
        let transaction_id = new_id();
        record(
            tx,
            scope,
            &transaction_id,
            &card_id,
            "purchase",
            amount,
            amount,
            &req.order_id,
            &caller.key_id,
            now,
        )
        .await?;
        let balance = Money::new(amount, scope.currency());
        tx.append(
            scope,
            EventKind::GiftCardPurchased,
            &serde_json::json!({
                "code": code,
                "balance": balance,
                "amount": balance,
                "order_id": req.order_id,
                "purchaser": req.purchaser,
                "recipient": req.recipient,
                "transaction_id": transaction_id,
            }),
        )?;
        Ok(IssueResponse {
            code,
            balance,
            status: "active",
            transaction_id,
            created_at: rfc3339(now),
        })
    }

    /// Takes `amount` off the card if the balance covers it, and emits `gift_card_redeemed`.
    async fn deduct(
        tx: &mut LoggedTx,
        caller: &Caller,
        code: &str,
        req: DeductRequest,
    ) -> Result<DeductResponse, LedgerError> {
        let scope = &caller.scope;
        check_len("order_id", &req.order_id, 128)?;
        let code =
            normalize_code(code).map_err(|_| LedgerError::GiftCardNotFound(code.to_owned()))?;
        let amount = req.amount.get();
        let now = now_micros();
        let transaction_id = new_id();
        // One conditional UPDATE: concurrent deducts serialize on the row and none can take
        // the balance below zero. On PostgreSQL the ledger row is written by the same
        // statement, from the UPDATE's `RETURNING`: one round trip instead of two (see
        // `customers::points`, which does the same for loyalty points).
        let backend = tx.backend();
        let sql: &str = match backend {
            Backend::Postgres => &PG_DEDUCT_AND_ENTRY,
            Backend::Sqlite => DEDUCT,
        };
        let mut query = sqlx::query(sql)
            .bind(amount)
            .bind(now)
            .bind(scope.tenant_id())
            .bind(&code);
        if backend == Backend::Postgres {
            query = query
                .bind(&transaction_id)
                .bind(req.order_id.as_deref())
                .bind(&caller.key_id);
        }
        let row = query.fetch_optional(tx.conn()).await?;
        let Some(row) = row else {
            let current = sqlx::query(
                "SELECT balance, status FROM gift_cards WHERE tenant_id = $1 AND code = $2",
            )
            .bind(scope.tenant_id())
            .bind(&code)
            .fetch_optional(tx.conn())
            .await?;
            return Err(match current {
                None => LedgerError::GiftCardNotFound(code),
                Some(r) if r.try_get::<String, _>("status")? != "active" => {
                    LedgerError::GiftCardDisabled(code)
                }
                Some(r) => LedgerError::InsufficientFunds {
                    balance: r.try_get("balance")?,
                    requested: amount,
                },
            });
        };
        let card_id: String = row.try_get("id")?;
        let balance: i64 = row.try_get("balance")?;
        let currency: String = row.try_get("currency")?;
        if backend == Backend::Sqlite {
            record(
                tx,
                scope,
                &transaction_id,
                &card_id,
                "redeem",
                -amount,
                balance,
                &req.order_id,
                &caller.key_id,
                now,
            )
            .await?;
        }
        let response = DeductResponse {
            code,
            balance: Money::new(balance, currency.clone()),
            deducted: Money::new(amount, currency),
            transaction_id,
        };
        tx.append(
            scope,
            EventKind::GiftCardRedeemed,
            &serde_json::json!({
                "code": response.code,
                "balance": response.balance,
                "amount": response.deducted,
                "order_id": req.order_id,
                "transaction_id": response.transaction_id,
            }),
        )?;
        Ok(response)
    }

    /// The card's ledger, newest first.
    pub(crate) async fn transactions(
        store: &Store,
        scope: &TenantScope,
        code: &str,
        page: &PageQuery,
    ) -> Result<Page<GiftCardTransaction>, LedgerError> {
        let code =
            normalize_code(code).map_err(|_| LedgerError::GiftCardNotFound(code.to_owned()))?;
        let card_id: String =
            sqlx::query_scalar("SELECT id FROM gift_cards WHERE tenant_id = $1 AND code = $2")
                .bind(scope.tenant_id())
                .bind(&code)
                .fetch_optional(store.reader())
                .await?
                .ok_or(LedgerError::GiftCardNotFound(code))?;
        let (before_at, before_id) = page.before();
        let rows = sqlx::query(
            "SELECT id, kind, amount, balance_after, order_id, api_key_id, created_at
             FROM gift_card_transactions
             WHERE tenant_id = $1 AND gift_card_id = $2
               AND (created_at < $3 OR (created_at = $3 AND id < $4))
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
        .bind(scope.tenant_id())
        .bind(&card_id)
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
                    GiftCardTransaction {
                        id: r.try_get("id")?,
                        kind: r.try_get("kind")?,
                        amount: r.try_get("amount")?,
                        balance_after: r.try_get("balance_after")?,
                        order_id: r.try_get("order_id")?,
                        api_key_id: r.try_get("api_key_id")?,
                        created_at: rfc3339(r.try_get("created_at")?),
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(page.page(items, |t| t.id.clone()))
    }
}

#[allow(clippy::too_many_arguments)]
async fn record(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    id: &str,
    card_id: &str,
    kind: &str,
    amount: i64,
    balance_after: i64,
    order_id: &Option<String>,
    key_id: &str,
    now: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO gift_card_transactions (id, tenant_id, gift_card_id, kind, amount, balance_after, order_id, api_key_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(scope.tenant_id())
    .bind(card_id)
    .bind(kind)
    .bind(amount)
    .bind(balance_after)
    .bind(order_id.as_deref())
    .bind(key_id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The deduct: $1 amount, $2 now, $3 tenant, $4 code. Refused by its own `WHERE` when the
/// card is unknown, disabled or short.
const DEDUCT: &str = "UPDATE gift_cards SET balance = balance - $1, updated_at = $2
     WHERE tenant_id = $3 AND code = $4 AND status = 'active' AND balance >= $1
     RETURNING id, balance, currency";

/// PostgreSQL: [`DEDUCT`] and its ledger row in one statement; $5 entry id, $6 order, $7
/// key. A refused deduct returns no row and so writes no ledger row.
static PG_DEDUCT_AND_ENTRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH moved AS ({DEDUCT}), logged AS (
             INSERT INTO gift_card_transactions
               (id, tenant_id, gift_card_id, kind, amount, balance_after, order_id, api_key_id, created_at)
             SELECT $5, $3, moved.id, 'redeem', -$1, moved.balance, $6, $7, $2 FROM moved
         )
         SELECT id, balance, currency FROM moved"
    )
});

pub(super) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    Writes: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(issue))
        .routes(routes!(balance))
        .routes(routes!(deduct))
        .routes(routes!(transactions))
}

/// A card's balance (any key).
#[utoipa::path(get, path = "/gift-cards/{code}/balance", tag = "ledger", responses(
    (status = 200, description = "The card.", body = GiftCardView),
    (status = 404, description = "`gift_card_not_found`."),
    (status = 422, description = "`invalid_gift_card_code`; `unsupported_character`."),
))]
async fn balance(
    State(store): State<Store>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, code)): Path<(String, String)>,
) -> ApiResult<Json<GiftCardView>> {
    Ok(Json(
        GiftCardLedger::balance(&store, &caller.scope, &code).await?,
    ))
}

/// Issues (sells) a gift card (manager key); terminals receive `gift_card_purchased`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/gift-cards", tag = "ledger", request_body = IssueRequest,
    params(crate::extract::Idempotency), responses(
    (status = 201, description = "Issued.", body = IssueResponse),
    (status = 409, description = "`gift_card_exists`."),
    (status = 422, description = "`invalid_gift_card_code`, `currency_mismatch`, `idempotency_key_reused`, `invalid_request`."),
))]
async fn issue(
    State(writes): State<Writes>,
    ManagerCaller(caller): ManagerCaller,
    idem: Idempotency,
    body: ApiJson<IssueRequest>,
) -> ApiResult<Response> {
    let scope = caller.scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (caller, req) = (caller.clone(), body.value.clone());
        Box::pin(async move {
            let issued = GiftCardLedger::issue(tx, &caller, req).await?;
            Ok::<_, LedgerError>((StatusCode::CREATED, issued))
        })
    })
    .await
}

/// Takes an amount off a card (any key); terminals receive `gift_card_redeemed`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/gift-cards/{code}/deduct", tag = "ledger", request_body = DeductRequest,
    params(crate::extract::Idempotency), responses(
    (status = 200, description = "Deducted.", body = DeductResponse),
    (status = 404, description = "`gift_card_not_found`."),
    (status = 409, description = "`gift_card_disabled`."),
    (status = 422, description = "`insufficient_funds` (nothing changed), `invalid_gift_card_code`, `idempotency_key_reused`, `invalid_request`."),
))]
async fn deduct(
    State(writes): State<Writes>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, code)): Path<(String, String)>,
    idem: Idempotency,
    body: ApiJson<DeductRequest>,
) -> ApiResult<Response> {
    let scope = caller.scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (caller, code, req) = (caller.clone(), code.clone(), body.value.clone());
        Box::pin(async move {
            let done = GiftCardLedger::deduct(tx, &caller, &code, req).await?;
            Ok::<_, LedgerError>((StatusCode::OK, done))
        })
    })
    .await
}

/// A card's ledger, newest first (manager key).
#[utoipa::path(get, path = "/gift-cards/{code}/transactions", tag = "ledger", params(crate::paging::PageQuery), responses(
    (status = 200, description = "A page of ledger rows.", body = Page<GiftCardTransaction>),
    (status = 404, description = "`gift_card_not_found`."),
    (status = 422, description = "`invalid_gift_card_code`; `unsupported_character`."),
))]
async fn transactions(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, code)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<GiftCardTransaction>>> {
    Ok(Json(
        GiftCardLedger::transactions(&store, &caller.scope, &code, &page).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(normalize_code(" gift-0001 ").unwrap(), "GIFT-0001");
        assert!(normalize_code("abc").is_err());
        assert!(normalize_code("ab cd").is_err());
        let generated = generate_code();
        assert_eq!(generated.len(), 16);
        assert!(normalize_code(&generated).is_ok());
    }
}
