//! Catalog sync: a POS venue's menu comes from its POS. `POST /menus/{venue}/sync` (a
//! manager) and a verified `catalog_changed` webhook (in the background, debounced) fetch
//! every page of the provider's catalog, incrementally from the stored sync token when the
//! provider can, and store it as the venue's canonical menu through the menu write path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;

use super::integrations::{self, connection_of, Integration};
use super::{ProviderFailure, ProvidersState};
use crate::auth::{ManagerCaller, TenantScope};
use crate::error::ApiError;
use crate::menus::sync::{self as menu_sync, FetchedCatalog, SyncOutcome};
use crate::menus::MenuError;
use crate::plugins::contract::{Capability, CatalogRequest};
use crate::plugins::CallContext;

/// Most pages one sync follows: 1,000 pages of Square's 1,000 objects is far above any
/// menu, and a provider whose cursor never ends cannot keep a sync running forever.
const MAX_PAGES: usize = 1_000;

/// How long a webhook-triggered sync waits for more webhooks of the same venue, so a burst
/// (a menu published with many changes) costs one sync.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Syncs `integration`'s venue menu from its POS.
pub(crate) async fn sync_menu(
    app: &ProvidersState,
    scope: &TenantScope,
    integration: &Integration,
) -> Result<SyncOutcome, ProviderFailure> {
    let provider = integration.provider.as_str();
    // Refused before anything is read: a provider without a catalog answers 501.
    app.plugins.require(provider, Capability::FetchCatalog)?;
    if integration.status == "DISCONNECTED" {
        return Err(ApiError::conflict(
            "integration_disconnected",
            "connect the venue again before syncing its menu",
        )
        .into());
    }
    let venue = integration.venue.as_str();
    let incremental_capable = app
        .plugins
        .require(provider, Capability::FetchCatalogIncremental)
        .is_ok();
    let since = if incremental_capable {
        menu_sync::stored_token(app.store.reader(), scope, venue, &integration.id)
            .await
            .map_err(ApiError::from)?
    } else {
        None
    };
    let conn = connection_of(app, integration)?;
    let ctx = CallContext {
        tenant_id: integration.tenant_id.clone(),
        integration_id: integration.id.clone(),
    };
    let mut fetched = FetchedCatalog::default();
    let mut cursor = None;
    loop {
        let request = CatalogRequest {
            cursor: cursor.take(),
            since: since.clone(),
        };
        let page = app
            .plugins
            .fetch_catalog(provider, &ctx, &conn, &request)
            .await??;
        let next = page.next_cursor.clone().filter(|c| !c.is_empty());
        let unchanged = page.unchanged;
        fetched.pages.push(page);
        match next {
            Some(next) if !unchanged => {
                if fetched.pages.len() >= MAX_PAGES {
                    return Err(ApiError::new(
                        axum::http::StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!("the {provider} catalog did not end within {MAX_PAGES} pages"),
                    )
                    .into());
                }
                cursor = Some(next);
            }
            _ => break,
        }
    }
    if let Some(currency) = fetched.currency() {
        if !currency.eq_ignore_ascii_case(scope.currency()) {
            return Err(ApiError::unprocessable(
                "currency_mismatch",
                format!(
                    "the {provider} catalog is priced in {currency}, the tenant's menus in {}",
                    scope.currency()
                ),
            )
            .into());
        }
    }
    let pages = fetched.pages.len();
    let upstream_unchanged = fetched.unchanged();
    let shared = Arc::new((
        scope.clone(),
        venue.to_owned(),
        integration.id.clone(),
        fetched,
    ));
    let (changed, changes, menu) = app
        .writes
        .run(scope.tenant_id(), move |tx| {
            let shared = shared.clone();
            Box::pin(async move {
                let (scope, venue, integration_id, fetched) = &*shared;
                menu_sync::apply(tx, scope, venue, integration_id, fetched).await
            })
        })
        .await
        .map_err(|e: MenuError| ApiError::from(e))?;
    Ok(SyncOutcome {
        venue: venue.to_owned(),
        provider: provider.to_owned(),
        incremental: since.is_some(),
        upstream_unchanged,
        changed,
        pages,
        changes,
        menu,
    })
}

/// Fetches a venue's menu from its POS (manager key) and stores it as the canonical menu:
/// provider ids kept, canonical ids stable across syncs, current availability carried.
/// Incremental from the last sync where the provider allows. Terminals receive
/// `menu_updated` only if something changed.
#[utoipa::path(post, path = "/menus/{venue}/sync", tag = "menus",
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "What changed, and the menu's version and ETag.", body = SyncOutcome),
    (status = 403, description = "`forbidden`: not a manager key; `permission_denied`."),
    (status = 404, description = "`venue_not_connected`; `location_not_found`."),
    (status = 409, description = "`integration_disconnected`; `menu_changed`."),
    (status = 422, description = "`invalid_menu`: the catalog makes no valid menu; `currency_mismatch`; `invalid_credentials`, `bad_payload`."),
    (status = 429, description = "`rate_limited`: the provider is over its rate; see Retry-After."),
    (status = 501, description = "`provider_cannot`: the venue's provider has no catalog (a local POS uploads its menu with PUT)."),
    (status = 502, description = "`upstream_error`; `plugin_failed`."),
    (status = 503, description = "`provider_unavailable`; `database_unavailable`."),
    (status = 504, description = "`plugin_timeout`; `upstream_timeout`."),
))]
pub(crate) async fn sync_menu_route(
    State(app): State<ProvidersState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> Result<Json<SyncOutcome>, ProviderFailure> {
    crate::menus::check_venue(&venue).map_err(ApiError::from)?;
    let integration = integrations::by_venue(&app, &caller.scope, &venue).await?;
    Ok(Json(sync_menu(&app, &caller.scope, &integration).await?))
}

/// Webhook-triggered syncs per integration: one runs at a time, and webhooks arriving
/// while one waits or runs ask for (at most) one more.
#[derive(Debug, Clone, Default)]
pub struct CatalogSyncs {
    /// Integration id → whether another sync was asked for while this one waited or ran.
    pending: Arc<Mutex<HashMap<String, bool>>>,
}

impl CatalogSyncs {
    /// Marks a sync wanted; true when the caller must start the worker for it.
    fn want(&self, integration_id: &str) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(integration_id) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                pending.insert(integration_id.to_owned(), false);
                true
            }
        }
    }

    /// After a sync: true to run once more (webhooks came meanwhile), else done.
    fn again(&self, integration_id: &str) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(integration_id) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                pending.remove(integration_id);
                false
            }
        }
    }
}

/// Asks for a background sync of `integration`'s menu after its POS said the catalog
/// changed. Debounced: a burst of webhooks costs one sync (two if one arrives mid-sync).
pub(crate) fn sync_in_background(
    app: &ProvidersState,
    scope: &TenantScope,
    integration: &Integration,
) {
    if app
        .plugins
        .require(&integration.provider, Capability::FetchCatalog)
        .is_err()
    {
        return;
    }
    let syncs = app.catalog_syncs.clone();
    if !syncs.want(&integration.id) {
        return;
    }
    let (app, scope, integration) = (app.clone(), scope.clone(), integration.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(DEBOUNCE) => {}
                () = app.shutdown.cancelled() => return,
            }
            match sync_menu(&app, &scope, &integration).await {
                Ok(outcome) => tracing::info!(
                    integration = %integration.id, venue = %integration.venue,
                    changed = outcome.changed, pages = outcome.pages,
                    "menu synced after a catalog webhook"
                ),
                Err(e) => tracing::warn!(
                    integration = %integration.id, venue = %integration.venue,
                    error = ?e, "menu sync after a catalog webhook failed"
                ),
            }
            if !syncs.again(&integration.id) {
                return;
            }
        }
    });
}
