//! Customers: one per normalised phone number within a tenant, and everything the host
//! keeps about them. This module owns the `customers` table and its `customer_links`: every
//! write to them goes through here.
//!
//! - `matching`: which customer a sale belongs to (links, phone, email);
//! - `links`: card fingerprints and provider customer ids tied to a customer;
//! - `tags`: labels hooks put on customers;
//! - `points`: the loyalty balance on the customer row;
//! - `ladder`: the tenant's ordered tiers and access levels, which customers climb;
//! - `tiers`: the tier and access level rule evaluation raises;
//! - `spend`: net spend, the one definition of what a sale counts for;
//! - `standing` and `profile`: what the tenant sees of a customer.

pub(crate) mod ladder;
pub(crate) mod links;
pub(crate) mod matching;
pub(crate) mod points;
pub(crate) mod profile;
pub(crate) mod spend;
pub(crate) mod standing;
pub(crate) mod tags;
pub(crate) mod tiers;

pub(crate) use spend::net_spend;
pub(crate) use spend::net_spend_sql;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, ManagerCaller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::store::{new_id, now_micros, Conn, Store};
use links::LinkRequest;
use profile::Profile;

/// The id of the tenant's customer with this (normalised) phone, enrolling one with no
/// points if there is none yet. A sale or a link naming a phone is how customers appear.
pub(crate) async fn find_or_create(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO customers (id, tenant_id, phone, points, lifetime_points, created_at, updated_at)
         VALUES ($1, $2, $3, 0, 0, $4, $4)
         ON CONFLICT (tenant_id, phone) DO UPDATE SET updated_at = customers.updated_at
         RETURNING id",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(phone)
    .bind(now_micros())
    .fetch_one(conn)
    .await
}

/// A phone number that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid phone number {0:?}: use E.164 (+15550100199) or a local number of the tenant's country")]
pub struct InvalidPhone(pub String);

/// Normalises a phone number to E.164, reading numbers without a country code as numbers of
/// the tenant's country, so `(555) 010-0199` and `+15550100199` name one customer.
///
/// Numbers are parsed, not validated against allocation tables: fictional ranges such as
/// 555-01XX (reserved for examples and tests) must still be accepted.
pub(crate) fn normalize_phone(default_country: &str, raw: &str) -> Result<String, InvalidPhone> {
    let country = default_country.parse::<phonenumber::country::Id>().ok();
    let trimmed = raw.trim();
    let invalid = || InvalidPhone(raw.to_owned());
    if trimmed.is_empty() || trimmed.len() > 32 {
        return Err(invalid());
    }
    let number = phonenumber::parse(country, trimmed).map_err(|_| invalid())?;
    let formatted = number.format().mode(phonenumber::Mode::E164).to_string();
    let digits = formatted.trim_start_matches('+');
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    Ok(formatted)
}

/// `/api/{tenant}/customers/{phone}` (the profile) and `/customers/{phone}/links`.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(get_profile))
        .routes(routes!(link))
}

/// Answer of `POST /customers/{phone}/links`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Linked {
    /// The customer's phone, E.164.
    phone: String,
    /// The customer's id.
    customer_id: String,
    /// Links added.
    linked: usize,
    /// Earlier unmatched sales now attributed to the customer.
    attributed_transactions: u64,
}

fn phone_of(country: &str, raw: &str) -> Result<String, ApiError> {
    normalize_phone(country, raw)
        .map_err(|e| ApiError::unprocessable("invalid_phone", e.to_string()))
}

/// `GET /customers/{phone}`: who the customer is to the tenant.
#[utoipa::path(get, path = "/customers/{phone}", tag = "customers",
    summary = "A customer's profile: tier, points, spend per venue, unlocks, tags", responses(
    (status = 200, description = "The profile.", body = Profile),
    (status = 404, description = "`customer_not_found`."),
    (status = 422, description = "`invalid_phone`; `unsupported_character`."),
))]
async fn get_profile(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, raw_phone)): Path<(String, String)>,
) -> Result<Json<Profile>, ApiError> {
    let scope = &caller.scope;
    let phone = phone_of(scope.country(), &raw_phone)?;
    let mut conn = store.read_conn().await?;
    profile::profile(&mut conn, scope.tenant_id(), &phone)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("customer_not_found", format!("no customer {phone}")))
}

/// `POST /customers/{phone}/links`: links a card fingerprint or a provider customer to the
/// customer with this phone, so their sales are attributed to them (past unmatched sales
/// included).
#[utoipa::path(post, path = "/customers/{phone}/links", tag = "customers", request_body = LinkRequest,
    summary = "Links a card fingerprint or a provider customer to a customer", responses(
    (status = 201, description = "Linked.", body = Linked),
    (status = 409, description = "`already_linked`: the card or provider customer belongs to another customer."),
    (status = 422, description = "`invalid_phone`, `invalid_request`."),
))]
async fn link(
    State(store): State<Store>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, raw_phone)): Path<(String, String)>,
    body: ApiJson<LinkRequest>,
) -> Result<(StatusCode, Json<Linked>), ApiError> {
    let scope = &caller.scope;
    let phone = phone_of(scope.country(), &raw_phone)?;
    let links = body.value.links()?;
    let mut tx = store.begin().await?;
    let linked = links::link(&mut tx, scope.tenant_id(), &phone, &links).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Linked {
            phone,
            customer_id: linked.customer_id,
            linked: links.len(),
            attributed_transactions: linked.attributed,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_international_forms_are_one_number() {
        assert_eq!(
            normalize_phone("US", "(555) 010-0199").unwrap(),
            "+15550100199"
        );
        assert_eq!(
            normalize_phone("US", "+15550100199").unwrap(),
            "+15550100199"
        );
        assert_eq!(
            normalize_phone("US", "555.010.0199").unwrap(),
            "+15550100199"
        );
        assert_eq!(
            normalize_phone("GB", "020 7946 0018").unwrap(),
            "+442079460018"
        );
        assert!(normalize_phone("US", "hello").is_err());
        assert!(normalize_phone("US", "").is_err());
        assert!(normalize_phone("US", "12").is_err());
    }
}
