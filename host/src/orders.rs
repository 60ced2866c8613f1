//! Orders: online orders from the ordering platform (manager key) and their kitchen status
//! as terminals move them along.
//!
//! An online order may name a venue and canonical menu lines instead of free-form items:
//! it is then checked against the venue's menu and store status, and at a venue whose POS
//! takes orders it is priced by the POS, stored `queued`, and put into the POS by the
//! injection worker (`injection`), whose status changes come back through `relay`.
//!
//! Size: about 850 lines: the order's shape (request, answer, POS view), its checks and
//! its row are one concern that every route and the injection worker share.

mod injection;
mod intake;
mod relay;

use std::sync::Arc;

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
use crate::providers::{ProviderFailure, ProvidersState};
use crate::store::{new_id, now_micros, rfc3339, Store, StoreError, TransientConflict};

pub(crate) use injection::{spawn_worker as spawn_injection_worker, Injector};
pub(crate) use injection::{InjectionOptions, InjectionWakeup, PosState};

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
    pub(crate) fn as_str(self) -> &'static str {
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
    /// The venue the order is for (1-100 characters). Required with `lines`.
    #[serde(default)]
    pub venue: Option<String>,
    /// The order by canonical menu ids (item, variation, modifiers), instead of `items`:
    /// checked against the venue's menu and store status, the items and prices then come
    /// from the menu (and from the POS's price at a venue whose POS takes orders).
    #[serde(default)]
    pub(crate) lines: Option<Vec<crate::menus::OrderLine>>,
    /// Lines (1-500), unless `lines` are given.
    #[serde(default)]
    pub items: Vec<OrderItem>,
    /// Σ quantity × unit_price. Required without `lines`; with them, if given, it must be
    /// the venue's (else 409 `price_mismatch`).
    #[serde(default)]
    pub subtotal: Option<NonNegativeAmount>,
    /// Tax. Required without `lines`; with them, the POS's (or 0) unless given.
    #[serde(default)]
    pub tax: Option<NonNegativeAmount>,
    /// Tip.
    #[serde(default)]
    pub tip: NonNegativeAmount,
    /// Discount.
    #[serde(default)]
    pub discount: NonNegativeAmount,
    /// subtotal + tax + tip − discount. Required without `lines`.
    #[serde(default)]
    pub total: Option<NonNegativeAmount>,
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
    /// The venue, if the order named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    /// The order in its venue's POS; absent for an order that goes to no POS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pos: Option<PosView>,
}

/// An order's POS side, as the API and events show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct PosView {
    /// `queued`, `submitted`, `accepted`, `rejected` or `failed`.
    pub state: PosState,
    /// The provider plugin (`square`, `toast`).
    pub provider: String,
    /// The POS's order id, once it has the order.
    pub provider_order_id: Option<String>,
    /// The POS's own words for the order's state (`OPEN/PROPOSED`, `APPROVED/SENT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_state: Option<String>,
    /// Attempts in the current round (an operator's retry starts a new one).
    pub attempts: i64,
    /// Why the last attempt failed (kept after a success only until the next change).
    pub last_error: Option<String>,
    /// When a queued order is tried next, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The POS's price of the order (before tip), when the POS prices orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priced: Option<PosPrice>,
}

/// The POS's price of an order, minor units, before tip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct PosPrice {
    /// Before tax and discounts.
    pub subtotal: i64,
    /// Tax.
    pub tax: i64,
    /// Discounts.
    pub discount: i64,
    /// What the customer pays before tip.
    pub total: i64,
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

impl TransientConflict for OrderError {
    fn is_transient_conflict(&self) -> bool {
        matches!(self, OrderError::Store(e) if e.is_transient_conflict())
    }
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
    fn validated(self, scope: &TenantScope) -> Result<Self, OrderError> {
        let required = |v: Option<NonNegativeAmount>, name: &str| {
            v.ok_or_else(|| {
                invalid(format!(
                    "{name} is required (unless the order gives menu lines)"
                ))
            })
        };
        let (subtotal, tax, total) = (
            required(self.subtotal, "subtotal")?,
            required(self.tax, "tax")?,
            required(self.total, "total")?,
        );
        if let Some(venue) = &self.venue {
            crate::menus::check_venue(venue)
                .map_err(|_| invalid("venue must be 1-100 characters"))?;
        }
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
        let mut sum: i64 = 0;
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
            sum = item
                .unit_price
                .get()
                .checked_mul(item.quantity)
                .and_then(|line| sum.checked_add(line))
                .filter(|s| *s <= MAX_AMOUNT)
                .ok_or_else(|| invalid("order subtotal is too large"))?;
        }
        if sum != subtotal.get() {
            return Err(invalid(format!(
                "subtotal {} does not equal the sum of the items {sum}",
                subtotal.get()
            )));
        }
        let expected = subtotal.get() + tax.get() + self.tip.get() - self.discount.get();
        if expected != total.get() {
            return Err(invalid(format!(
                "total {} does not equal subtotal + tax + tip - discount = {expected}",
                total.get()
            )));
        }
        self.check_text(scope)
    }

    /// Checks the free-text fields and normalises the customer's phone.
    fn check_text(mut self, scope: &TenantScope) -> Result<Self, OrderError> {
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

const ORDER_COLUMNS: &str = "id, external_id, source, status, currency, subtotal, tax, tip, discount, total, items, customer, notes, created_at, updated_at, venue, pos_state, pos_provider, pos_provider_order_id, pos_provider_state, pos_attempts, pos_last_error, pos_next_attempt_at, pos_priced";

fn corrupt(what: &str) -> OrderError {
    OrderError::Store(StoreError::Sqlx(sqlx::Error::Decode(
        format!("corrupt order {what}").into(),
    )))
}

fn order_from_row(row: &sqlx::any::AnyRow) -> Result<Order, OrderError> {
    let source: String = row.try_get("source")?;
    let status: String = row.try_get("status")?;
    let items: String = row.try_get("items")?;
    let customer: Option<String> = row.try_get("customer")?;
    let pos_state: Option<String> = row.try_get("pos_state")?;
    let pos = match pos_state {
        None => None,
        Some(state) => {
            let priced: Option<String> = row.try_get("pos_priced")?;
            let next: Option<i64> = row.try_get("pos_next_attempt_at")?;
            let state = PosState::parse(&state).ok_or_else(|| corrupt("pos_state"))?;
            Some(PosView {
                state,
                provider: row
                    .try_get::<Option<String>, _>("pos_provider")?
                    .unwrap_or_default(),
                provider_order_id: row.try_get("pos_provider_order_id")?,
                provider_state: row.try_get("pos_provider_state")?,
                attempts: row.try_get("pos_attempts")?,
                last_error: row.try_get("pos_last_error")?,
                next_attempt_at: next.filter(|_| state == PosState::Queued).map(rfc3339),
                priced: priced
                    .map(|p| serde_json::from_str(&p))
                    .transpose()
                    .map_err(|_| corrupt("pos_priced"))?,
            })
        }
    };
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
        venue: row.try_get("venue")?,
        pos,
    })
}

/// One order of the tenant, read on `conn` (inside a write, to see its own changes).
async fn load(
    conn: &mut crate::store::Conn,
    scope: &TenantScope,
    id: &str,
) -> Result<Order, OrderError> {
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(scope.tenant_id())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| OrderError::NotFound(id.to_owned()))?;
    order_from_row(&row)
}

fn encode(e: serde_json::Error) -> OrderError {
    OrderError::Store(StoreError::Sqlx(sqlx::Error::Encode(Box::new(e))))
}

/// The orders of a tenant.
pub(crate) struct Orders;

impl Orders {
    /// Records a new order and emits `new_order`. An order with menu lines comes
    /// `prepared` (checked, priced, its POS request built): at a venue whose POS takes
    /// orders it is stored `queued` for the injection worker, in this same write.
    async fn create(
        tx: &mut LoggedTx,
        scope: &TenantScope,
        new: NewOrder,
        prepared: Option<&intake::Prepared>,
    ) -> Result<Order, OrderError> {
        let now = now_micros();
        let (new, id, money, plan) = match prepared {
            None if new.lines.is_some() => {
                return Err(invalid("the order's lines were not checked; send it again"))
            }
            None => {
                let new = new.validated(scope)?;
                let money = (
                    new.subtotal.map_or(0, |v| v.get()),
                    new.tax.map_or(0, |v| v.get()),
                    new.discount.get(),
                    new.total.map_or(0, |v| v.get()),
                );
                (new, new_id(), money, None)
            }
            Some(p) => {
                let mut new = new;
                new.items = p.items.clone();
                new.venue = Some(p.venue.clone());
                (
                    new,
                    p.id.clone(),
                    (p.subtotal, p.tax, p.discount, p.total),
                    p.pos.as_ref(),
                )
            }
        };
        let status = match new.source {
            OrderSource::Online => OrderStatus::Pending,
            OrderSource::Pos => OrderStatus::Accepted,
        };
        let order = Order {
            id,
            external_id: new.external_id,
            source: new.source,
            status,
            currency: scope.currency().to_owned(),
            subtotal: money.0,
            tax: money.1,
            tip: new.tip.get(),
            discount: money.2,
            total: money.3,
            items: new.items,
            customer: new.customer,
            notes: new.notes,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
            venue: new.venue,
            pos: plan.map(|plan| PosView {
                state: PosState::Queued,
                provider: plan.provider.clone(),
                provider_order_id: None,
                provider_state: None,
                attempts: 0,
                last_error: None,
                next_attempt_at: Some(rfc3339(now)),
                priced: plan.priced.clone(),
            }),
        };
        let result = sqlx::query(
            "INSERT INTO orders (tenant_id, id, external_id, source, status, currency, subtotal, tax,
               tip, discount, total, items, customer, notes, created_at, updated_at, venue,
               pos_state, pos_provider, pos_integration_id, pos_request, pos_priced,
               pos_next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
               $18, $19, $20, $21, $22, $23)",
        )
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
        .bind(order.venue.as_deref())
        .bind(plan.map(|_| PosState::Queued.as_str()))
        .bind(plan.map(|p| p.provider.as_str()))
        .bind(plan.map(|p| p.integration_id.as_str()))
        .bind(
            plan.map(|p| serde_json::to_string(&p.request))
                .transpose()
                .map_err(encode)?,
        )
        .bind(
            plan.and_then(|p| p.priced.as_ref())
                .map(serde_json::to_string)
                .transpose()
                .map_err(encode)?,
        )
        .bind(plan.map(|_| now))
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
        let mut order = load(tx.conn(), scope, id).await?;
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

    /// One order of the tenant.
    pub(crate) async fn get(
        store: &Store,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Order, OrderError> {
        let mut conn = store.read_conn().await?;
        load(&mut conn, scope, id).await
    }
}

/// An operator's retry of an order's dead letter (see `dead_letters_api`): the order is
/// queued for injection again.
pub(crate) async fn retry_injection(
    store: &Store,
    stored: &crate::dead_letters::Stored,
) -> Result<crate::dead_letters::RetryOutcome, ApiError> {
    Ok(injection::retry_dead_letter(store, stored).await?)
}

/// `/api/{tenant}/orders…` routes.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    Writes: FromRef<S>,
    ProvidersState: FromRef<S>,
    InjectionWakeup: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(pending))
        .routes(routes!(get_order))
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
///
/// With `venue` and menu `lines`, the order is first checked against the venue's menu and
/// store status (refusals name the line, and nothing is stored or sent). At a venue whose
/// POS takes orders (Square, Toast) the POS prices it and it is answered at once with
/// `pos.state` `queued`; the injection worker then puts it into the POS (`order_injected`,
/// or `order_injection_failed`), and the POS's status changes come back as `order_updated`.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = NewOrder,
    params(crate::extract::Idempotency), responses(
    (status = 201, description = "Created (with `pos` when it goes to the venue's POS).", body = Order),
    (status = 404, description = "`menu_not_found`: lines for a venue without a menu."),
    (status = 409, description = "`order_exists`: the external id was used; `store_closed`, `item_sold_out`, `option_sold_out`; `price_mismatch`: a figure given with lines is not the venue's; `integration_disconnected`."),
    (status = 422, description = "`invalid_order`: totals that do not add up, no items, currency not the tenant's, lines without a venue; `unknown_item`, `unknown_variation`, `variation_required`, `unknown_option`, `missing_required_modifier`, `too_many_modifiers`, `invalid_quantity`, `empty_order`, `too_many_lines`, `no_provider_id`, `provider_rejected` (the POS refused to price it); `invalid_phone`; `idempotency_key_reused`; `invalid_request`."),
    (status = 429, description = "`rate_limited`: the POS is over its rate (pricing); see Retry-After."),
    (status = 502, description = "`upstream_error`, `plugin_failed`: the POS failed to price the order."),
    (status = 503, description = "`provider_unavailable`."),
    (status = 504, description = "`upstream_timeout`, `plugin_timeout`."),
))]
async fn create(
    State(providers): State<ProvidersState>,
    State(wakeup): State<InjectionWakeup>,
    ManagerCaller(caller): ManagerCaller,
    idem: Idempotency,
    body: ApiJson<NewOrder>,
) -> Result<Response, ProviderFailure> {
    let scope = caller.scope;
    let mut new = body.value.clone();
    let mut prepared = None;
    // A replay is answered from the store: the menu, the store status and the price are
    // what they were when the order was taken.
    if new.lines.is_some()
        && !intake::answered(&providers.store, &scope, idem.key())
            .await
            .map_err(ApiError::from)?
    {
        new = new.check_text(&scope).map_err(ApiError::from)?;
        prepared = Some(intake::prepare(&providers, &scope, &new, new_id()).await?);
    }
    let queued = prepared.as_ref().is_some_and(|p| p.pos.is_some());
    let shared = Arc::new((scope.clone(), new, prepared));
    let response =
        idempotency::execute(&providers.writes, &scope, &idem, &body.digest, move |tx| {
            let shared = shared.clone();
            Box::pin(async move {
                let (scope, new, prepared) = &*shared;
                let order = Orders::create(tx, scope, new.clone(), prepared.as_ref()).await?;
                Ok::<_, OrderError>((StatusCode::CREATED, order))
            })
        })
        .await?;
    if queued {
        wakeup.wake();
    }
    Ok(response)
}

/// One order (any key), with its POS side (`pos`) when it goes to the venue's POS.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "The order's id.")),
    responses(
    (status = 200, description = "The order.", body = Order),
    (status = 404, description = "`order_not_found`."),
))]
async fn get_order(
    State(store): State<Store>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, id)): Path<(String, String)>,
) -> ApiResult<Json<Order>> {
    Ok(Json(Orders::get(&store, &caller.scope, &id).await?))
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
