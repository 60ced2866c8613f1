//! Orders: online orders from the ordering platform (manager key) and their kitchen status
//! as terminals move them along.

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, ManagerCaller, TenantScope, TerminalCaller};
use crate::customers::{normalize_phone, InvalidPhone};
use crate::error::{ApiError, ApiResult};
use crate::events::{EventKind, LoggedTx, Writes};
use crate::extract::{ApiJson, Idempotency};
use crate::idempotency;
use crate::money::{parse_currency, NonNegativeAmount, MAX_AMOUNT};
use crate::store::{new_id, now_micros, rfc3339, Store, StoreError};

/// Where an order came from. Only online orders wait for a terminal to accept them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OrderSource {
    /// Placed on the online ordering platform; shows up in `orders/pending`.
    #[default]
    Online,
    /// A walk-in order rung up at the till; never pending.
    Pos,
}

/// The kitchen lifecycle of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OrderStatus {
    /// Waiting for the restaurant to accept it.
    Pending,
    /// Accepted, not started.
    Accepted,
    /// Being prepared.
    Preparing,
    /// Ready for pickup or delivery.
    Ready,
    /// Handed over.
    Completed,
    /// Cancelled.
    Cancelled,
}

impl OrderStatus {
    fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// Whether a terminal may move an order from `self` to `next`.
    pub(crate) fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Accepted | Cancelled)
                | (Accepted, Preparing | Ready | Cancelled)
                | (Preparing, Ready | Cancelled)
                | (Ready, Completed | Cancelled)
        )
    }
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderItem {
    /// Display name.
    pub name: String,
    /// How many (1–1000).
    pub quantity: i64,
    /// Price of one, including modifiers, minor units.
    pub unit_price: NonNegativeAmount,
    /// The platform's product id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Kitchen notes ("no onions").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Who ordered.
#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderCustomer {
    /// Name for the pickup shelf.
    #[serde(default)]
    pub name: Option<String>,
    /// Phone, normalised to E.164.
    #[serde(default)]
    pub phone: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
}

/// Body of `POST /api/{tenant}/orders`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    /// The platform's order id; unique per tenant.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Source (default `online`).
    #[serde(default)]
    pub source: OrderSource,
    /// Must be the tenant's currency if given.
    #[serde(default)]
    pub currency: Option<String>,
    /// Lines (at least one).
    pub items: Vec<OrderItem>,
    /// Σ quantity × unit_price.
    pub subtotal: NonNegativeAmount,
    /// Tax.
    pub tax: NonNegativeAmount,
    /// Tip.
    #[serde(default)]
    pub tip: NonNegativeAmount,
    /// Discount.
    #[serde(default)]
    pub discount: NonNegativeAmount,
    /// subtotal + tax + tip − discount.
    pub total: NonNegativeAmount,
    /// Who ordered.
    #[serde(default)]
    pub customer: Option<OrderCustomer>,
    /// Notes for the restaurant.
    #[serde(default)]
    pub notes: Option<String>,
}

/// Body of `POST /api/{tenant}/orders/{id}/status`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusChange {
    /// The new status.
    pub status: OrderStatus,
}

/// An order as the API returns it and as `new_order`/`order_updated` carry it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Order {
    /// Our id.
    pub id: String,
    /// The platform's id.
    pub external_id: Option<String>,
    /// Source.
    pub source: OrderSource,
    /// Current status.
    pub status: OrderStatus,
    /// ISO-4217.
    pub currency: String,
    /// Minor units.
    pub subtotal: i64,
    /// Minor units.
    pub tax: i64,
    /// Minor units.
    pub tip: i64,
    /// Minor units.
    pub discount: i64,
    /// Minor units.
    pub total: i64,
    /// Lines.
    pub items: Vec<OrderItem>,
    /// Who ordered.
    pub customer: Option<OrderCustomer>,
    /// Notes.
    pub notes: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

/// Why an order operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Totals that do not add up, no items, bad quantities…
    #[error("{0}")]
    Invalid(String),
    /// The phone number could not be parsed.
    #[error(transparent)]
    InvalidPhone(#[from] InvalidPhone),
    /// Another order has this external id.
    #[error("an order with external_id {0:?} already exists")]
    Exists(String),
    /// No such order for this tenant.
    #[error("no order {0:?}")]
    NotFound(String),
    /// The status change is not allowed from the current status.
    #[error("an order that is {from} cannot become {to}")]
    InvalidTransition {
        /// Current.
        from: &'static str,
        /// Requested.
        to: &'static str,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OrderError {
    fn from(err: sqlx::Error) -> Self {
        OrderError::Store(err.into())
    }
}

impl From<OrderError> for ApiError {
    fn from(err: OrderError) -> Self {
        let message = err.to_string();
        match err {
            OrderError::Invalid(_) => ApiError::unprocessable("invalid_order", message),
            OrderError::InvalidPhone(_) => ApiError::unprocessable("invalid_phone", message),
            OrderError::Exists(_) => ApiError::conflict("order_exists", message),
            OrderError::NotFound(_) => ApiError::not_found("order_not_found", message),
            OrderError::InvalidTransition { .. } => {
                ApiError::conflict("invalid_transition", message)
            }
            OrderError::Store(e) => e.into(),
        }
    }
}

fn invalid(message: impl Into<String>) -> OrderError {
    OrderError::Invalid(message.into())
}

fn too_long(field: &str, value: Option<&str>, max: usize) -> Result<(), OrderError> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(invalid(format!("{field} must be at most {max} characters")))
        }
        _ => Ok(()),
    }
}

impl NewOrder {
    /// Checks the order is self-consistent; returns it with the customer phone normalised.
    fn validated(mut self, scope: &TenantScope) -> Result<Self, OrderError> {
        if let Some(given) = &self.currency {
            if parse_currency(given).as_deref() != Some(scope.currency()) {
                return Err(invalid(format!(
                    "currency {given} does not match the tenant's currency {}",
                    scope.currency()
                )));
            }
        }
        if self.items.is_empty() || self.items.len() > 500 {
            return Err(invalid("an order needs 1-500 items"));
        }
        let mut subtotal: i64 = 0;
        for item in &self.items {
            if item.name.trim().is_empty() {
                return Err(invalid("every item needs a name"));
            }
            too_long("item name", Some(&item.name), 200)?;
            too_long("item sku", item.sku.as_deref(), 100)?;
            too_long("item notes", item.notes.as_deref(), 500)?;
            if !(1..=1000).contains(&item.quantity) {
                return Err(invalid("item quantity must be 1-1000"));
            }
            subtotal = item
                .unit_price
                .get()
                .checked_mul(item.quantity)
                .and_then(|line| subtotal.checked_add(line))
                .filter(|s| *s <= MAX_AMOUNT)
                .ok_or_else(|| invalid("order subtotal is too large"))?;
        }
        if subtotal != self.subtotal.get() {
            return Err(invalid(format!(
                "subtotal {} does not equal the sum of the items {subtotal}",
                self.subtotal.get()
            )));
        }
        let expected = self.subtotal.get() + self.tax.get() + self.tip.get() - self.discount.get();
        if expected != self.total.get() {
            return Err(invalid(format!(
                "total {} does not equal subtotal + tax + tip - discount = {expected}",
                self.total.get()
            )));
        }
        too_long("external_id", self.external_id.as_deref(), 128)?;
        too_long("notes", self.notes.as_deref(), 1000)?;
        if let Some(customer) = &mut self.customer {
            too_long("customer name", customer.name.as_deref(), 200)?;
            too_long("customer email", customer.email.as_deref(), 254)?;
            if let Some(phone) = &customer.phone {
                customer.phone = Some(normalize_phone(scope.country(), phone)?);
            }
        }
        Ok(self)
    }
}

const ORDER_COLUMNS: &str = "id, external_id, source, status, currency, subtotal, tax, tip, discount, total, items, customer, notes, created_at, updated_at";

fn order_from_row(row: &sqlx::any::AnyRow) -> Result<Order, OrderError> {
    let corrupt = |what: &str| {
        OrderError::Store(StoreError::Sqlx(sqlx::Error::Decode(
            format!("corrupt order {what}").into(),
        )))
    };
    let source: String = row.try_get("source")?;
    let status: String = row.try_get("status")?;
    let items: String = row.try_get("items")?;
    let customer: Option<String> = row.try_get("customer")?;
    Ok(Order {
        id: row.try_get("id")?,
        external_id: row.try_get("external_id")?,
        source: serde_json::from_value(serde_json::Value::String(source))
            .map_err(|_| corrupt("source"))?,
        status: OrderStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        currency: row.try_get("currency")?,
        subtotal: row.try_get("subtotal")?,
        tax: row.try_get("tax")?,
        tip: row.try_get("tip")?,
        discount: row.try_get("discount")?,
        total: row.try_get("total")?,
        items: serde_json::from_str(&items).map_err(|_| corrupt("items"))?,
        customer: customer
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|_| corrupt("customer"))?,
        notes: row.try_get("notes")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// The orders of a tenant.
pub(crate) struct Orders;

impl Orders {
    /// Records a new order and emits `new_order`.
    async fn create(
        tx: &mut LoggedTx,
        scope: &TenantScope,
        new: NewOrder,
    ) -> Result<Order, OrderError> {
        let new = new.validated(scope)?;
        let now = now_micros();
        let status = match new.source {
            OrderSource::Online => OrderStatus::Pending,
            OrderSource::Pos => OrderStatus::Accepted,
        };
        let order = Order {
            id: new_id(),
            external_id: new.external_id,
            source: new.source,
            status,
            currency: scope.currency().to_owned(),
            subtotal: new.subtotal.get(),
            tax: new.tax.get(),
            tip: new.tip.get(),
            discount: new.discount.get(),
            total: new.total.get(),
            items: new.items,
            customer: new.customer,
            notes: new.notes,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
        };
        let encode = |e: serde_json::Error| {
            OrderError::Store(StoreError::Sqlx(sqlx::Error::Encode(Box::new(e))))
        };
        let result = sqlx::query(&format!(
            "INSERT INTO orders (tenant_id, {ORDER_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(scope.tenant_id())
        .bind(&order.id)
        .bind(order.external_id.as_deref())
        .bind(match order.source {
            OrderSource::Online => "online",
            OrderSource::Pos => "pos",
        })
        .bind(order.status.as_str())
        .bind(&order.currency)
        .bind(order.subtotal)
        .bind(order.tax)
        .bind(order.tip)
        .bind(order.discount)
        .bind(order.total)
        .bind(serde_json::to_string(&order.items).map_err(encode)?)
        .bind(
            order
                .customer
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(encode)?,
        )
        .bind(order.notes.as_deref())
        .bind(now)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from);
        match result {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(OrderError::Exists(order.external_id.unwrap_or_default()))
            }
            Err(e) => return Err(e.into()),
        }
        tx.append(scope, EventKind::NewOrder, &order)?;
        Ok(order)
    }

    /// Moves an order to `next` if the lifecycle allows it and emits `order_updated`.
    /// Setting the status it already has is a no-op that returns the order.
    async fn set_status(
        tx: &mut LoggedTx,
        scope: &TenantScope,
        id: &str,
        next: OrderStatus,
    ) -> Result<Order, OrderError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| OrderError::NotFound(id.to_owned()))?;
        let mut order = order_from_row(&row)?;
        if order.status == next {
            return Ok(order);
        }
        if !order.status.can_become(next) {
            return Err(OrderError::InvalidTransition {
                from: order.status.as_str(),
                to: next.as_str(),
            });
        }
        let now = now_micros();
        // Compare-and-set on the status read above: a concurrent change makes this a no-op
        // and the request is refused instead of skipping a lifecycle step.
        let changed = sqlx::query(
            "UPDATE orders SET status = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND status = $5",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(scope.tenant_id())
        .bind(id)
        .bind(order.status.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(OrderError::InvalidTransition {
                from: order.status.as_str(),
                to: next.as_str(),
            });
        }
        order.status = next;
        order.updated_at = rfc3339(now);
        tx.append(scope, EventKind::OrderUpdated, &order)?;
        Ok(order)
    }

    /// Online orders waiting for the restaurant (pending or accepted), oldest first.
    pub(crate) async fn pending(
        store: &Store,
        scope: &TenantScope,
    ) -> Result<Vec<Order>, OrderError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE tenant_id = $1 AND source = 'online' AND status IN ('pending', 'accepted')
             ORDER BY created_at, id LIMIT 500"
        ))
        .bind(scope.tenant_id())
        .fetch_all(store.reader())
        .await?;
        rows.iter().map(order_from_row).collect()
    }
}

/// `/api/{tenant}/orders…` routes.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    Writes: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(pending))
        .routes(routes!(set_status))
}

/// Answer of `GET /api/{tenant}/orders/pending`.
#[derive(Serialize, utoipa::ToSchema)]
struct PendingOrders {
    orders: Vec<Order>,
}

/// Online orders waiting for the restaurant (pending or accepted), oldest first (any key).
#[utoipa::path(get, path = "/orders/pending", tag = "orders", responses(
    (status = 200, description = "Up to 500 orders.", body = PendingOrders),
))]
async fn pending(
    State(store): State<Store>,
    TerminalCaller(caller): TerminalCaller,
) -> ApiResult<Json<PendingOrders>> {
    Ok(Json(PendingOrders {
        orders: Orders::pending(&store, &caller.scope).await?,
    }))
}

/// Places an order (manager key); terminals receive it as `new_order`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = NewOrder,
    params(crate::extract::Idempotency), responses(
    (status = 201, description = "Created.", body = Order),
    (status = 409, description = "`order_exists`: the external id was used."),
    (status = 422, description = "`invalid_order`: totals that do not add up, no items, currency not the tenant's; `invalid_phone`; `idempotency_key_reused`; `invalid_request`."),
))]
async fn create(
    State(writes): State<Writes>,
    ManagerCaller(caller): ManagerCaller,
    idem: Idempotency,
    body: ApiJson<NewOrder>,
) -> ApiResult<Response> {
    let scope = caller.scope;
    let op_scope = scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (op_scope, order) = (op_scope.clone(), body.value.clone());
        Box::pin(async move {
            let order = Orders::create(tx, &op_scope, order).await?;
            Ok::<_, OrderError>((StatusCode::CREATED, order))
        })
    })
    .await
}

/// Moves an order along its lifecycle (any key); terminals receive `order_updated`.
#[utoipa::path(post, path = "/orders/{id}/status", tag = "orders", request_body = StatusChange,
    params(crate::extract::Idempotency), responses(
    (status = 200, description = "The order.", body = Order),
    (status = 404, description = "`order_not_found`."),
    (status = 409, description = "`invalid_transition`: the lifecycle forbids this move."),
))]
async fn set_status(
    State(writes): State<Writes>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, id)): Path<(String, String)>,
    idem: Idempotency,
    body: ApiJson<StatusChange>,
) -> ApiResult<Response> {
    let scope = caller.scope;
    let op_scope = scope.clone();
    idempotency::execute(&writes, &scope, &idem, &body.digest, move |tx| {
        let (op_scope, id, status) = (op_scope.clone(), id.clone(), body.value.status);
        Box::pin(async move {
            let order = Orders::set_status(tx, &op_scope, &id, status).await?;
            Ok::<_, OrderError>((StatusCode::OK, order))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;

    #[test]
    fn lifecycle() {
        assert!(Pending.can_become(Accepted));
        assert!(Accepted.can_become(Ready));
        assert!(Ready.can_become(Completed));
        assert!(!Pending.can_become(Completed));
        assert!(!Completed.can_become(Cancelled));
        assert!(!Cancelled.can_become(Pending));
        assert!(!Ready.can_become(Preparing));
    }
}
