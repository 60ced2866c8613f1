//! Availability (86) both ways between a venue's menu and its POS.
//!
//! A venue whose POS takes availability writes (Toast) is told first and the menu follows
//! what it answered; a POS whose sold-out state apps cannot set (Square) refuses API writes
//! with a message that says where to set it; a venue without a POS write side (`local-pos`,
//! or no integration) keeps the API as its source. Reads come through the POS's stock
//! webhooks (the webhook inbox applies them) and through a refresh that reads the POS.
//!
//! This module sits above `menus` and `providers` so neither has to name the other for
//! the routes.

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthState, TerminalCaller};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::menus::{
    self, AvailabilityChange, AvailabilityChanged, AvailabilityUpdate, MenuError, MenusState,
    PosAvailability,
};
use crate::plugins::contract::{Availability, Capability};
use crate::providers::{venue_pos, ProviderFailure, ProvidersState};

/// `POST /menus/{venue}/availability` and `…/availability/refresh`.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    MenusState: FromRef<S>,
    ProvidersState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(availability))
        .routes(routes!(refresh))
}

/// Applies what the POS reported in one logged write; the venue must have a menu.
async fn apply(
    menus_state: &MenusState,
    scope: crate::auth::TenantScope,
    venue: String,
    reported: Vec<Availability>,
    mode: PosAvailability,
) -> Result<AvailabilityChanged, ApiError> {
    let home = scope.tenant_id().to_owned();
    let shared = Arc::new((scope, venue, reported));
    let changed = menus_state
        .writes
        .run(&home, move |tx| {
            let shared = shared.clone();
            Box::pin(async move {
                let (scope, venue, reported) = &*shared;
                menus::apply_pos_availability(tx, scope, venue, reported, mode)
                    .await?
                    .ok_or_else(|| MenuError::NotFound(venue.clone()))
            })
        })
        .await?;
    Ok(changed)
}

/// Applies changes named by canonical id to the menu alone (the API is the venue's source).
async fn set_locally(
    menus_state: &MenusState,
    scope: crate::auth::TenantScope,
    venue: String,
    changes: Vec<AvailabilityChange>,
) -> Result<AvailabilityChanged, ApiError> {
    let home = scope.tenant_id().to_owned();
    let shared = Arc::new((scope, venue, changes));
    let changed = menus_state
        .writes
        .run(&home, move |tx| {
            let shared = shared.clone();
            Box::pin(async move {
                let (scope, venue, changes) = &*shared;
                menus::set_availability(tx, scope, venue, changes).await
            })
        })
        .await?;
    Ok(changed)
}

/// Marks items, variations or options sold out or back (any key). Every id is checked
/// first: an unknown one → 422 and nothing changes. Terminals receive
/// `item_availability_changed` listing what changed.
///
/// For a venue whose POS takes availability writes (Toast), the change goes to the POS
/// first, by the entries' `provider_id`s (an entry without one → 422 `no_provider_id`), and
/// the menu then takes what the POS answered; if the POS refuses or is down, nothing changes
/// here and the provider's error is answered. A POS whose sold-out state is read-only to
/// apps (Square) → 409 `availability_read_only`: set it in the POS, it reaches the menu by
/// webhook or refresh; a disconnected POS venue → 409 `integration_disconnected`. Venues
/// without a POS availability side (`local-pos`, connected or not) take the change as is.
#[utoipa::path(post, path = "/menus/{venue}/availability", tag = "menus",
    request_body = AvailabilityUpdate,
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "What changed, and the menu's new version and ETag.", body = AvailabilityChanged),
    (status = 404, description = "`menu_not_found`."),
    (status = 409, description = "`availability_read_only`: the venue's POS owns sold-out state (Square); `integration_disconnected`."),
    (status = 422, description = "`unknown_menu_entry`, `no_provider_id`, `invalid_availability`, `invalid_venue`, `invalid_request`, `provider_rejected`."),
    (status = 429, description = "`rate_limited`: the POS is over its rate; see Retry-After."),
    (status = 502, description = "`upstream_error`: the POS failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`upstream_timeout`, `plugin_timeout`."),
))]
async fn availability(
    State(menus_state): State<MenusState>,
    State(providers): State<ProvidersState>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: ApiJson<AvailabilityUpdate>,
) -> Result<Json<AvailabilityChanged>, ProviderFailure> {
    let changes = body.value.changes;
    menus::check_changes(&venue, &changes).map_err(ApiError::from)?;
    let scope = caller.scope;
    let Some(pos) = venue_pos(&providers, &scope, &venue).await? else {
        return Ok(Json(
            set_locally(&menus_state, scope, venue, changes).await?,
        ));
    };
    let manifest = providers.plugins.manifest(&pos.provider);
    let (can_read, can_write) = manifest.as_ref().map_or((false, false), |m| {
        (
            m.can(Capability::ReadAvailability),
            m.can(Capability::WriteAvailability),
        )
    });
    if !can_write {
        if can_read {
            pos.check_connected()?;
            let name = manifest.map_or(pos.provider.clone(), |m| m.name);
            return Err(ApiError::conflict(
                "availability_read_only",
                format!(
                    "venue {venue:?} takes its availability from {name}, where sold-out state is read-only to apps: mark items sold out or back in {name} itself; the change reaches this menu through {name}'s webhooks or POST /menus/{venue}/availability/refresh. Nothing was changed"
                ),
            )
            .into());
        }
        return Ok(Json(
            set_locally(&menus_state, scope, venue, changes).await?,
        ));
    }
    pos.check_connected()?;
    let targets = menus::pos_targets(&menus_state.store, &scope, &venue, &changes)
        .await
        .map_err(ApiError::from)?;
    let answered = providers
        .plugins
        .set_availability(&pos.provider, &pos.ctx, &pos.conn, &targets)
        .await??;
    let changed = apply(
        &menus_state,
        scope,
        venue,
        answered,
        PosAvailability::Changes,
    )
    .await?;
    Ok(Json(changed))
}

/// Reads availability from the venue's POS (everything it has that is not plainly in stock)
/// and brings the menu in line (any key): entries it lists as out of stock are sold out,
/// entries with a provider id it does not list are back. Terminals receive
/// `item_availability_changed` for what changed. For catching up after webhooks were
/// missed (an outage; Toast retries a webhook only twice).
#[utoipa::path(post, path = "/menus/{venue}/availability/refresh", tag = "menus",
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "What changed, and the menu's new version and ETag.", body = AvailabilityChanged),
    (status = 404, description = "`menu_not_found`, `venue_not_connected`."),
    (status = 409, description = "`integration_disconnected`."),
    (status = 422, description = "`invalid_venue`."),
    (status = 429, description = "`rate_limited`: the POS is over its rate; see Retry-After."),
    (status = 501, description = "`provider_cannot`: the venue's POS has no availability to read."),
    (status = 502, description = "`upstream_error`: the POS failed; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`; `database_unavailable`, `transaction_conflict`."),
    (status = 504, description = "`upstream_timeout`, `plugin_timeout`."),
))]
async fn refresh(
    State(menus_state): State<MenusState>,
    State(providers): State<ProvidersState>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<AvailabilityChanged>, ProviderFailure> {
    menus::check_venue(&venue).map_err(ApiError::from)?;
    let scope = caller.scope;
    let pos = venue_pos(&providers, &scope, &venue)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "venue_not_connected",
                format!("venue {venue:?} has no integration"),
            )
        })?;
    pos.check_connected()?;
    let reported = providers
        .plugins
        .get_availability(&pos.provider, &pos.ctx, &pos.conn, &[])
        .await??;
    let changed = apply(
        &menus_state,
        scope,
        venue,
        reported,
        PosAvailability::Snapshot,
    )
    .await?;
    Ok(Json(changed))
}
