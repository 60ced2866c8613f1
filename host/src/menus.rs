//! Venue menus: the canonical menu per venue (categories, items and their variations,
//! modifier groups and options, prices in minor units, tax hints, availability, and the POS
//! ids behind every entry), availability changes (86), and the store status.
//!
//! A menu is stored as the exact JSON document `GET` serves, with a strong ETag and a
//! version; every change (a `PUT`, availability) goes through the logged-write path and
//! appends its event in the same transaction. Reads keep the document
//! bytes per venue in memory ([`MenuCache`], with a gzip copy for clients that accept it)
//! and check only the stored version, so a `GET` never rebuilds, re-serialises or
//! compresses the document and a `304` is one indexed lookup, while a
//! change made by any host of a cluster is seen at the next request.
//!
//! Size: about 900 lines (a tenth of them tests): the routes with the transactional writes
//! they run (publish, availability, store status), which share the version row, the cache
//! and the events; the pure parts are in `menus/model.rs`, `check.rs`, `status.rs` and
//! `cache.rs`. Moving the routes to `menus/routes.rs` is the next split when it grows.

mod cache;
mod check;
mod encoding;
mod model;
mod status;
pub(crate) mod sync;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use cache::MenuCache;
pub(crate) use check::{check_order, OrderLine};
pub(crate) use model::{Menu, MenuIndex};
use model::{MenuContent, MenuProblem};
use status::StoreStatusChange;
pub(crate) use status::{StoreState, StoreStatus};

use crate::auth::{AuthState, ManagerCaller, TenantScope, TerminalCaller};
use crate::error::{ApiError, ApiResult};
use crate::events::{EventKind, LoggedTx, Writes};
use crate::extract::{ApiJson, JsonBody};
use crate::plugins::contract::{Availability, StockStatus};
use crate::store::{now_micros, rfc3339, Backend, Store, StoreError, TransientConflict};

/// Largest body of a menu `PUT`: a 20,000-item menu with sizes and modifiers, far above the
/// host-wide 1 MiB.
pub(crate) const MAX_MENU_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most availability changes in one request.
const MAX_AVAILABILITY_CHANGES: usize = 1_000;

/// Why a menu operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MenuError {
    /// The venue name is empty or too long.
    #[error("venue must be 1-100 characters")]
    InvalidVenue,
    /// The menu breaks the rules of [`model::validate`].
    #[error("invalid menu: {}", join(.0))]
    Invalid(Vec<MenuProblem>),
    /// The body is not a menu (wrong types, unknown fields), located by JSON path.
    #[error("{0}")]
    Malformed(String),
    /// An availability request is malformed.
    #[error("{0}")]
    InvalidAvailability(String),
    /// An availability change names an entry the menu does not have.
    #[error("changes[{index}]: no {kind} {id:?} on the menu of venue {venue:?}")]
    UnknownEntry {
        /// Index of the change.
        index: usize,
        /// Kind named.
        kind: &'static str,
        /// Id named.
        id: String,
        /// The venue.
        venue: String,
    },
    /// An availability change for a POS venue names an entry without a provider id, so the
    /// POS cannot be told.
    #[error("changes[{index}]: {kind} {id:?} of venue {venue:?} has no provider_id, so its POS cannot be told; give it one in the menu")]
    NoProviderId {
        /// Index of the change.
        index: usize,
        /// Kind named.
        kind: &'static str,
        /// Id named.
        id: String,
        /// The venue.
        venue: String,
    },
    /// A store status change is malformed.
    #[error("{0}")]
    InvalidStatus(String),
    /// The venue has no menu yet.
    #[error("venue {0:?} has no menu")]
    NotFound(String),
    /// Another write changed the menu between this write's read and its update, again
    /// after the write was retried (see [`TransientConflict`] below).
    #[error("the menu of venue {0:?} changed concurrently; send the request again")]
    Concurrent(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gzip copy of a document could not be made (the compression task failed).
    #[error("compressing the menu document failed: {0}")]
    Compress(String),
}

fn join(problems: &[MenuProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<sqlx::Error> for MenuError {
    fn from(err: sqlx::Error) -> Self {
        MenuError::Store(err.into())
    }
}

impl TransientConflict for MenuError {
    /// A write that lost a race for the menu row (two first publications of a venue on
    /// PostgreSQL, where there was no row to lock yet) is run again after the winner
    /// committed, on top of it, like a database-reported conflict.
    fn is_transient_conflict(&self) -> bool {
        match self {
            MenuError::Concurrent(_) => true,
            MenuError::Store(e) => e.is_transient_conflict(),
            _ => false,
        }
    }
}

impl From<MenuError> for ApiError {
    fn from(err: MenuError) -> Self {
        let message = err.to_string();
        match err {
            MenuError::InvalidVenue => ApiError::unprocessable("invalid_venue", message),
            MenuError::Invalid(_) | MenuError::Malformed(_) => {
                ApiError::unprocessable("invalid_menu", message)
            }
            MenuError::InvalidAvailability(_) => {
                ApiError::unprocessable("invalid_availability", message)
            }
            MenuError::UnknownEntry { .. } => {
                ApiError::unprocessable("unknown_menu_entry", message)
            }
            MenuError::NoProviderId { .. } => ApiError::unprocessable("no_provider_id", message),
            MenuError::InvalidStatus(_) => ApiError::unprocessable("invalid_store_status", message),
            MenuError::NotFound(_) => ApiError::not_found("menu_not_found", message),
            MenuError::Concurrent(_) => ApiError::conflict("menu_changed", message),
            MenuError::Store(e) => e.into(),
            MenuError::Compress(_) => {
                tracing::error!(error = %message, "menu document");
                ApiError::internal()
            }
        }
    }
}

/// Refuses a venue name outside 1-100 characters (the same bound as spend rules').
pub(crate) fn check_venue(venue: &str) -> Result<(), MenuError> {
    if venue.is_empty() || venue.chars().count() > 100 {
        return Err(MenuError::InvalidVenue);
    }
    Ok(())
}

/// Hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A menu as stored: the document and what identifies its version.
struct Stored {
    version: i64,
    etag: String,
    content_hash: String,
    menu: Menu,
}

/// Reads the venue's menu inside `tx`, locking its row on PostgreSQL so concurrent writes
/// of one venue take turns (SQLite's single writer already serialises them).
async fn load_for_update(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
) -> Result<Option<Stored>, MenuError> {
    let lock = match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "SELECT version, etag, content_hash, document FROM menus WHERE tenant_id = $1 AND venue = $2{lock}"
    ))
    .bind(scope.tenant_id())
    .bind(venue)
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let document: String = row.try_get("document")?;
    let menu: Menu = serde_json::from_str(&document).map_err(|e| {
        MenuError::Store(StoreError::Sqlx(sqlx::Error::Decode(
            format!("corrupt menu document: {e}").into(),
        )))
    })?;
    Ok(Some(Stored {
        version: row.try_get("version")?,
        etag: row.try_get("etag")?,
        content_hash: row.try_get("content_hash")?,
        menu,
    }))
}

/// Writes `content` as the venue's menu, version `previous + 1`, unless it equals what is
/// stored. Returns the new menu's meta, or `None` when nothing changed.
async fn store_content(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    previous: Option<&Stored>,
    content: MenuContent,
) -> Result<Option<MenuMeta>, MenuError> {
    let encode =
        |e: serde_json::Error| MenuError::Store(StoreError::Sqlx(sqlx::Error::Encode(Box::new(e))));
    let content_hash = sha256_hex(&serde_json::to_vec(&content).map_err(encode)?);
    if previous.is_some_and(|p| p.content_hash == content_hash) {
        return Ok(None);
    }
    let now = now_micros();
    let version = previous.map_or(1, |p| p.version + 1);
    let menu = Menu {
        venue: venue.to_owned(),
        currency: scope.currency().to_owned(),
        version,
        updated_at: rfc3339(now),
        categories: content.categories,
        items: content.items,
        modifier_groups: content.modifier_groups,
    };
    let document = serde_json::to_string(&menu).map_err(encode)?;
    let etag = format!("\"{}\"", &sha256_hex(document.as_bytes())[..32]);
    // The version guard makes a lost race (two first writes of a venue on PostgreSQL, where
    // there was no row to lock) a refusal instead of an overwrite.
    let written = sqlx::query(
        "INSERT INTO menus (tenant_id, venue, version, etag, content_hash, document, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, venue) DO UPDATE
           SET version = excluded.version, etag = excluded.etag,
               content_hash = excluded.content_hash, document = excluded.document,
               updated_at = excluded.updated_at
           WHERE menus.version = $8",
    )
    .bind(scope.tenant_id())
    .bind(venue)
    .bind(version)
    .bind(&etag)
    .bind(&content_hash)
    .bind(&document)
    .bind(now)
    .bind(version - 1)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if written != 1 {
        return Err(MenuError::Concurrent(venue.to_owned()));
    }
    Ok(Some(MenuMeta {
        venue: venue.to_owned(),
        version,
        etag,
        updated_at: menu.updated_at,
        categories: menu.categories.len(),
        items: menu.items.len(),
        modifier_groups: menu.modifier_groups.len(),
    }))
}

/// A menu's identity after a write: the answer of `PUT` and the data of `menu_updated`
/// (terminals fetch the document itself, which may be megabytes, with `GET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct MenuMeta {
    /// The venue.
    pub venue: String,
    /// The new version.
    pub version: i64,
    /// The document's strong ETag (quoted), as `GET` sends it.
    pub etag: String,
    /// When, RFC 3339.
    pub updated_at: String,
    /// Categories in the menu.
    pub categories: usize,
    /// Items in the menu.
    pub items: usize,
    /// Modifier groups in the menu.
    pub modifier_groups: usize,
}

/// Replaces the venue's whole menu with `content` (validated first; nothing is written if it
/// is invalid) and appends `menu_updated` if anything changed. Entries whose `sold_out` it
/// leaves out keep their current availability. Returns the menu's meta (the stored one,
/// unchanged, when the content equals what is stored).
pub(crate) async fn put_menu(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    mut content: MenuContent,
) -> Result<MenuMeta, MenuError> {
    check_venue(venue)?;
    model::validate(&content).map_err(MenuError::Invalid)?;
    let previous = load_for_update(tx, scope, venue).await?;
    let stored = previous.as_ref().map_or((&[][..], &[][..]), |p| {
        (&p.menu.items[..], &p.menu.modifier_groups[..])
    });
    model::carry_availability(&mut content, stored);
    match store_content(tx, scope, venue, previous.as_ref(), content).await? {
        Some(meta) => {
            tx.append(scope, EventKind::MenuUpdated, &meta)?;
            Ok(meta)
        }
        // `store_content` skips only a write equal to the stored menu, so there is one.
        None => previous
            .map(|stored| stored_meta(&stored, venue))
            .ok_or_else(|| MenuError::NotFound(venue.to_owned())),
    }
}

/// The meta of the stored menu (after a write that changed nothing).
fn stored_meta(stored: &Stored, venue: &str) -> MenuMeta {
    MenuMeta {
        venue: venue.to_owned(),
        version: stored.version,
        etag: stored.etag.clone(),
        updated_at: stored.menu.updated_at.clone(),
        categories: stored.menu.categories.len(),
        items: stored.menu.items.len(),
        modifier_groups: stored.menu.modifier_groups.len(),
    }
}

/// Reads the venue's current menu (the stored document, parsed), for the order check.
pub(crate) async fn read_menu(
    store: &Store,
    scope: &TenantScope,
    venue: &str,
) -> Result<Option<Menu>, MenuError> {
    let document: Option<String> =
        sqlx::query_scalar("SELECT document FROM menus WHERE tenant_id = $1 AND venue = $2")
            .bind(scope.tenant_id())
            .bind(venue)
            .fetch_optional(store.reader())
            .await?;
    document
        .map(|d| {
            serde_json::from_str(&d).map_err(|e| {
                MenuError::Store(StoreError::Sqlx(sqlx::Error::Decode(
                    format!("corrupt menu document: {e}").into(),
                )))
            })
        })
        .transpose()
}

/// The venue's store status (open if never set).
pub(crate) async fn read_store_status(
    store: &Store,
    scope: &TenantScope,
    venue: &str,
) -> Result<StoreStatus, MenuError> {
    let mut conn = store.read_conn().await?;
    status::read(&mut conn, scope, venue).await
}

/// What an availability change names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AvailabilityKind {
    /// An item (all its variations).
    Item,
    /// One variation (size) of an item.
    Variation,
    /// A modifier option, in every group that holds an option with this id.
    Option,
}

/// One availability change: an item, a variation or an option sold out or back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AvailabilityChange {
    /// `item`, `variation` or `option`.
    pub kind: AvailabilityKind,
    /// Its id (canonical through the API; an option id marks that option in every group).
    pub id: String,
    /// Sold out (`true`) or back (`false`).
    pub sold_out: bool,
}

/// Body of `POST /api/{tenant}/menus/{venue}/availability`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AvailabilityUpdate {
    /// 1-1000 changes, applied together.
    pub changes: Vec<AvailabilityChange>,
}

/// An availability change that took effect, as `item_availability_changed` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct AppliedChange {
    /// `item`, `variation` or `option`.
    pub kind: AvailabilityKind,
    /// The canonical id.
    pub id: String,
    /// The POS's id, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The item it belongs to (for a variation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Now sold out or not.
    pub sold_out: bool,
}

/// Data of `item_availability_changed` and answer of the availability route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct AvailabilityChanged {
    /// The venue.
    pub venue: String,
    /// The menu's version after the change.
    pub version: i64,
    /// The menu document's new ETag.
    pub etag: String,
    /// What changed (entries already in the asked state are left out; empty when nothing
    /// changed, and then no event is sent).
    pub changes: Vec<AppliedChange>,
}

/// Refuses a bad venue, and an empty or oversized list of changes.
pub(crate) fn check_changes(venue: &str, changes: &[AvailabilityChange]) -> Result<(), MenuError> {
    check_venue(venue)?;
    if changes.is_empty() || changes.len() > MAX_AVAILABILITY_CHANGES {
        return Err(MenuError::InvalidAvailability(format!(
            "changes must hold 1-{MAX_AVAILABILITY_CHANGES} entries"
        )));
    }
    Ok(())
}

impl AvailabilityKind {
    /// Its name in messages.
    fn name(self) -> &'static str {
        match self {
            AvailabilityKind::Item => "item",
            AvailabilityKind::Variation => "variation",
            AvailabilityKind::Option => "option",
        }
    }
}

/// Applies availability changes to the venue's menu (every id checked first: an unknown
/// one refuses the whole request, nothing changed) and appends `item_availability_changed`
/// listing what actually changed, if anything did.
pub(crate) async fn set_availability(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    changes: &[AvailabilityChange],
) -> Result<AvailabilityChanged, MenuError> {
    check_changes(venue, changes)?;
    let stored = load_for_update(tx, scope, venue)
        .await?
        .ok_or_else(|| MenuError::NotFound(venue.to_owned()))?;
    let mut content = stored.menu.content();
    let applied = apply_availability(&mut content, venue, changes)?;
    if applied.is_empty() {
        let meta = stored_meta(&stored, venue);
        return Ok(AvailabilityChanged {
            venue: venue.to_owned(),
            version: meta.version,
            etag: meta.etag,
            changes: applied,
        });
    }
    let meta = store_content(tx, scope, venue, Some(&stored), content)
        .await?
        .ok_or_else(|| MenuError::Concurrent(venue.to_owned()))?;
    let event = AvailabilityChanged {
        venue: venue.to_owned(),
        version: meta.version,
        etag: meta.etag,
        changes: applied,
    };
    tx.append(scope, EventKind::ItemAvailabilityChanged, &event)?;
    Ok(event)
}

/// Sets one entry's `sold_out` and records the change, unless it already was so.
fn mark(
    slot: &mut Option<bool>,
    sold_out: bool,
    kind: AvailabilityKind,
    id: &str,
    provider_id: &Option<String>,
    item_id: Option<String>,
    applied: &mut Vec<AppliedChange>,
) {
    if *slot != Some(sold_out) {
        *slot = Some(sold_out);
        applied.push(AppliedChange {
            kind,
            id: id.to_owned(),
            provider_id: provider_id.clone(),
            item_id,
            sold_out,
        });
    }
}

/// Applies the changes in memory; pure. Errors name the first unknown entry.
fn apply_availability(
    content: &mut MenuContent,
    venue: &str,
    changes: &[AvailabilityChange],
) -> Result<Vec<AppliedChange>, MenuError> {
    let mut applied = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let unknown = |kind: &'static str| MenuError::UnknownEntry {
            index,
            kind,
            id: change.id.clone(),
            venue: venue.to_owned(),
        };
        let mut found = false;
        match change.kind {
            AvailabilityKind::Item => {
                for item in &mut content.items {
                    if item.id == change.id {
                        found = true;
                        mark(
                            &mut item.sold_out,
                            change.sold_out,
                            AvailabilityKind::Item,
                            &item.id,
                            &item.provider_id,
                            None,
                            &mut applied,
                        );
                    }
                }
                if !found {
                    return Err(unknown("item"));
                }
            }
            AvailabilityKind::Variation => {
                for item in &mut content.items {
                    for v in &mut item.variations {
                        if v.id == change.id {
                            found = true;
                            mark(
                                &mut v.sold_out,
                                change.sold_out,
                                AvailabilityKind::Variation,
                                &v.id,
                                &v.provider_id,
                                Some(item.id.clone()),
                                &mut applied,
                            );
                        }
                    }
                }
                if !found {
                    return Err(unknown("variation"));
                }
            }
            AvailabilityKind::Option => {
                for group in &mut content.modifier_groups {
                    for o in &mut group.options {
                        if o.id == change.id {
                            found = true;
                            mark(
                                &mut o.sold_out,
                                change.sold_out,
                                AvailabilityKind::Option,
                                &o.id,
                                &o.provider_id,
                                None,
                                &mut applied,
                            );
                        }
                    }
                }
                if !found {
                    return Err(unknown("option"));
                }
            }
        }
    }
    // An option in several groups is listed once.
    let mut seen = std::collections::HashSet::new();
    applied.retain(|a| seen.insert((a.kind, a.id.clone(), a.item_id.clone())));
    Ok(applied)
}

/// How a POS's availability answer is applied to a menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PosAvailability {
    /// The listed provider ids changed (a webhook, a write's answer); the rest stay.
    Changes,
    /// The list is everything the POS has that is not plainly in stock (a refresh): an
    /// entry with a provider id it leaves out is back in stock.
    Snapshot,
}

/// Whether the POS's status means sold out: out of stock, or a count of zero or less
/// (in stock, or a positive count, is sellable).
fn pos_sold_out(a: &Availability) -> bool {
    match a.status {
        StockStatus::OutOfStock => true,
        StockStatus::InStock => false,
        StockStatus::Quantity => !a.quantity.as_deref().is_some_and(positive_decimal),
    }
}

/// A decimal count above zero ("3", "0.5"); anything else, zero included, is not.
fn positive_decimal(text: &str) -> bool {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && text.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

/// Applies availability the venue's POS reported (by provider id) to its menu, inside
/// `tx`, and appends `item_availability_changed` when an entry really changed. Provider
/// ids the menu does not hold are ignored (the POS tracks more than the menu shows). `None`
/// when the venue has no menu yet: there is nothing to mark.
pub(crate) async fn apply_pos_availability(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    venue: &str,
    reported: &[Availability],
    mode: PosAvailability,
) -> Result<Option<AvailabilityChanged>, MenuError> {
    let Some(stored) = load_for_update(tx, scope, venue).await? else {
        return Ok(None);
    };
    let mut content = stored.menu.content();
    let applied = apply_pos_changes(&mut content, reported, mode);
    if applied.is_empty() {
        let meta = stored_meta(&stored, venue);
        return Ok(Some(AvailabilityChanged {
            venue: venue.to_owned(),
            version: meta.version,
            etag: meta.etag,
            changes: applied,
        }));
    }
    let meta = store_content(tx, scope, venue, Some(&stored), content)
        .await?
        .ok_or_else(|| MenuError::Concurrent(venue.to_owned()))?;
    let event = AvailabilityChanged {
        venue: venue.to_owned(),
        version: meta.version,
        etag: meta.etag,
        changes: applied,
    };
    tx.append(scope, EventKind::ItemAvailabilityChanged, &event)?;
    Ok(Some(event))
}

/// [`apply_pos_availability`]'s pure part: marks every entry whose provider id the POS
/// reported; lists only real changes.
fn apply_pos_changes(
    content: &mut MenuContent,
    reported: &[Availability],
    mode: PosAvailability,
) -> Vec<AppliedChange> {
    // The last report of an id wins (a batch of webhooks in arrival order).
    let mut by_id = std::collections::HashMap::new();
    for a in reported {
        by_id.insert(a.provider_id.as_str(), pos_sold_out(a));
    }
    let wanted = |provider_id: &Option<String>| -> Option<bool> {
        let pid = provider_id.as_deref()?;
        match by_id.get(pid) {
            Some(sold_out) => Some(*sold_out),
            None if mode == PosAvailability::Snapshot => Some(false),
            None => None,
        }
    };
    let mut applied = Vec::new();
    let mut mark = |current: &mut Option<bool>, kind, id: &str, pid: &Option<String>, item_id| {
        let Some(sold_out) = wanted(pid) else { return };
        // An entry never marked counts as available: a snapshot only clears real 86es.
        if current.unwrap_or(false) == sold_out {
            return;
        }
        *current = Some(sold_out);
        applied.push(AppliedChange {
            kind,
            id: id.to_owned(),
            provider_id: pid.clone(),
            item_id,
            sold_out,
        });
    };
    for item in &mut content.items {
        mark(
            &mut item.sold_out,
            AvailabilityKind::Item,
            &item.id,
            &item.provider_id,
            None,
        );
        for v in &mut item.variations {
            mark(
                &mut v.sold_out,
                AvailabilityKind::Variation,
                &v.id,
                &v.provider_id,
                Some(item.id.clone()),
            );
        }
    }
    for group in &mut content.modifier_groups {
        for o in &mut group.options {
            mark(
                &mut o.sold_out,
                AvailabilityKind::Option,
                &o.id,
                &o.provider_id,
                None,
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    applied.retain(|a| seen.insert((a.kind, a.id.clone(), a.item_id.clone())));
    applied
}

/// The POS ids behind availability changes named by canonical id, for a write to the POS:
/// an unknown entry, or one without a provider id (the POS could not be told), refuses the
/// whole request. An option id in several groups names each group's option.
pub(crate) async fn pos_targets(
    store: &Store,
    scope: &TenantScope,
    venue: &str,
    changes: &[AvailabilityChange],
) -> Result<Vec<Availability>, MenuError> {
    check_changes(venue, changes)?;
    let content = read_menu(store, scope, venue)
        .await?
        .ok_or_else(|| MenuError::NotFound(venue.to_owned()))?
        .content();
    // Unknown ids are refused exactly as a local change refuses them.
    apply_availability(&mut content.clone(), venue, changes)?;
    let mut targets: Vec<Availability> = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let mut pids: Vec<Option<&String>> = Vec::new();
        match change.kind {
            AvailabilityKind::Item => pids.extend(
                content
                    .items
                    .iter()
                    .filter(|i| i.id == change.id)
                    .map(|i| i.provider_id.as_ref()),
            ),
            AvailabilityKind::Variation => pids.extend(
                content
                    .items
                    .iter()
                    .flat_map(|i| &i.variations)
                    .filter(|v| v.id == change.id)
                    .map(|v| v.provider_id.as_ref()),
            ),
            AvailabilityKind::Option => pids.extend(
                content
                    .modifier_groups
                    .iter()
                    .flat_map(|g| &g.options)
                    .filter(|o| o.id == change.id)
                    .map(|o| o.provider_id.as_ref()),
            ),
        }
        for pid in pids {
            let pid = pid.ok_or_else(|| MenuError::NoProviderId {
                index,
                kind: change.kind.name(),
                id: change.id.clone(),
                venue: venue.to_owned(),
            })?;
            let status = if change.sold_out {
                StockStatus::OutOfStock
            } else {
                StockStatus::InStock
            };
            match targets.iter_mut().find(|t| &t.provider_id == pid) {
                Some(t) => t.status = status,
                None => targets.push(Availability {
                    provider_id: pid.clone(),
                    status,
                    quantity: None,
                    until_ms: None,
                }),
            }
        }
    }
    Ok(targets)
}

/// What the menu routes use, built from the host's state (see `crate::state`).
#[derive(Clone, Debug)]
pub(crate) struct MenusState {
    /// The database.
    pub store: Store,
    /// The group commit menu writes run through.
    pub writes: Writes,
    /// Served menu documents, per version.
    pub cache: MenuCache,
}

/// Runs `op` as one logged write.
async fn write<T: Send + 'static>(
    app: &MenusState,
    tenant_id: &str,
    op: impl for<'t> Fn(&'t mut LoggedTx) -> BoxFuture<'t, Result<T, MenuError>> + Send + 'static,
) -> Result<T, MenuError> {
    app.writes.run(tenant_id, op).await
}

/// `/api/{tenant}/menus…` and `/api/{tenant}/venues/{venue}/store-status` routes.
///
/// Who may do what, as in a restaurant: the back office (a manager key) publishes the
/// menu; the floor (terminal keys, and managers) reads it, 86es items and brings them
/// back, and opens, closes or slows down the store. An ordering platform checks a cart
/// with any key.
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    MenusState: FromRef<S>,
{
    let (schemas, paths, menu) = routes!(get_menu, put_menu_route);
    OpenApiRouter::new()
        // Menus are large; the host-wide limit is 1 MiB. Only this route takes more (the
        // innermost limit is the one that applies).
        .routes((
            schemas,
            paths,
            menu.layer(DefaultBodyLimit::max(MAX_MENU_BODY_BYTES)),
        ))
        .routes(routes!(check_order_route))
        .routes(routes!(get_store_status, put_store_status))
}

/// Whether `If-None-Match` lists `etag` (or is `*`); weak comparison, as RFC 9110 asks for
/// this header.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = strip(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || strip(t) == want)
}

/// A venue's menu (any key). Sends `ETag`; with `If-None-Match` naming it, `304` and no
/// body. Availability changes change the ETag too. With `Accept-Encoding: gzip` the body is
/// a gzip copy made once per version (`Content-Encoding: gzip`), whose `ETag` is the weak
/// form of the document's: `If-None-Match` with either gets the 304.
#[utoipa::path(get, path = "/menus/{venue}", tag = "menus",
    params(("venue" = String, Path, description = "The venue."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer (either coding's)."),
        ("Accept-Encoding" = Option<String>, Header, description = "`gzip` (with weights, RFC 9110) for the compressed copy; identity without it.")),
    responses(
    (status = 200, description = "The menu; `ETag` (strong for identity, `W/` for gzip), `Vary: Accept-Encoding`, `Content-Encoding: gzip` when compressed.", body = Menu),
    (status = 304, description = "Unchanged since the ETag given; `ETag` of the coding the request accepts."),
    (status = 404, description = "`menu_not_found`."),
    (status = 406, description = "`not_acceptable`: `Accept-Encoding` refuses both identity and gzip."),
    (status = 422, description = "`invalid_venue`."),
))]
async fn get_menu(
    State(app): State<MenusState>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_venue(&venue)?;
    let coding = encoding::negotiate(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "Accept-Encoding refuses both identity and gzip, the codings the menu is served in",
        )
    })?;
    let scope = caller.scope;
    let current = cache::current(&app.store, &scope, &venue)
        .await?
        .ok_or_else(|| MenuError::NotFound(venue.clone()))?;
    // Caches must key the answer (and a 304, RFC 9110 §15.4.5) on the request's codings.
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    let etag_value =
        |etag: &str| HeaderValue::from_str(&coding.etag(etag)).map_err(|_| ApiError::internal());
    if none_match(&headers, &current.etag) {
        let etag = etag_value(&current.etag)?;
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), vary]).into_response());
    }
    let document = app
        .cache
        .document(&app.store, &scope, &venue, &current)
        .await?;
    let mut response = (
        StatusCode::OK,
        [
            (header::ETAG, etag_value(&document.etag)?),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            vary,
        ],
        document.body(coding),
    )
        .into_response();
    if coding == encoding::Coding::Gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

/// Replaces a venue's whole menu (manager key). Validated whole first: any problem → 422
/// naming each by JSON path, nothing changed. Terminals receive `menu_updated` if anything
/// changed. Bodies up to 16 MiB.
#[utoipa::path(put, path = "/menus/{venue}", tag = "menus", request_body = MenuContent,
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "Stored (or unchanged); the menu's version and ETag.", body = MenuMeta),
    (status = 403, description = "`forbidden`: not a manager key."),
    (status = 409, description = "`menu_changed`: concurrent writes kept winning over this one, retried; send again."),
    (status = 413, description = "`payload_too_large`: over 16 MiB."),
    (status = 422, description = "`invalid_menu` (wrong types or unknown fields, duplicate ids, dangling references, min > max, negative prices…, each named by path); `invalid_venue`."),
))]
async fn put_menu_route(
    State(app): State<MenusState>,
    ManagerCaller(caller): ManagerCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: Result<JsonBody, ApiError>,
) -> ApiResult<Json<MenuMeta>> {
    check_venue(&venue)?;
    let body = body.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a menu may be at most {MAX_MENU_BODY_BYTES} bytes"),
            )
        } else {
            e
        }
    })?;
    let content = parse_content(&body.bytes)?;
    model::validate(&content).map_err(MenuError::Invalid)?;
    let tenant_id = caller.scope.tenant_id().to_owned();
    let shared = Arc::new((caller.scope, venue, content));
    let meta = write(&app, &tenant_id, move |tx| {
        let shared = shared.clone();
        Box::pin(async move {
            let (scope, venue, content) = &*shared;
            put_menu(tx, scope, venue, content.clone()).await
        })
    })
    .await?;
    Ok(Json(meta))
}

/// Parses a menu body, locating a shape error by its JSON path (`items[2].variations[0].price`)
/// so a menu of thousands of entries says which one is wrong.
fn parse_content(bytes: &[u8]) -> Result<MenuContent, MenuError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let content: MenuContent = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| MenuError::Malformed(format!("invalid menu: {}: {}", e.path(), e.inner())))?;
    de.end()
        .map_err(|e| MenuError::Malformed(format!("invalid menu: {e}")))?;
    Ok(content)
}

/// Body of `POST /api/{tenant}/menus/{venue}/order-check`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderCheck {
    /// The order's lines, by canonical menu ids (1-500).
    pub lines: Vec<OrderLine>,
}

/// Answer of an order check the menu and store accept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct OrderAccepted {
    /// The menu version the order was checked against.
    pub menu_version: i64,
    /// The store status now (busy adds `extra_prep_minutes` to the order's prep time).
    pub store_status: StoreStatus,
}

/// Checks an online order against the venue's menu and store status (any key), as an
/// ordering platform does before it takes payment: a closed store, a sold-out item or
/// option → 409; an unknown item, variation or option, a missing required modifier, too
/// many modifiers → 422. The message names the offending line (0-based). Changes nothing.
#[utoipa::path(post, path = "/menus/{venue}/order-check", tag = "menus",
    request_body = OrderCheck,
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "The menu and store accept the order.", body = OrderAccepted),
    (status = 404, description = "`menu_not_found`."),
    (status = 409, description = "`store_closed`, `item_sold_out`, `option_sold_out`."),
    (status = 422, description = "`unknown_item`, `unknown_variation`, `variation_required`, `unknown_option`, `missing_required_modifier`, `too_many_modifiers`, `invalid_quantity`, `empty_order`, `invalid_venue`, `invalid_request`."),
))]
async fn check_order_route(
    State(app): State<MenusState>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: ApiJson<OrderCheck>,
) -> ApiResult<Json<OrderAccepted>> {
    check_venue(&venue)?;
    let scope = caller.scope;
    let menu = read_menu(&app.store, &scope, &venue)
        .await?
        .ok_or_else(|| MenuError::NotFound(venue.clone()))?;
    let store_status = read_store_status(&app.store, &scope, &venue).await?;
    check_order(&menu, &store_status, &body.value.lines)?;
    Ok(Json(OrderAccepted {
        menu_version: menu.version,
        store_status,
    }))
}

/// A venue's store status (any key): open (the default), busy with extra prep minutes, or
/// closed.
#[utoipa::path(get, path = "/venues/{venue}/store-status", tag = "menus",
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "The status.", body = StoreStatus),
    (status = 422, description = "`invalid_venue`."),
))]
async fn get_store_status(
    State(app): State<MenusState>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, venue)): Path<(String, String)>,
) -> ApiResult<Json<StoreStatus>> {
    check_venue(&venue)?;
    Ok(Json(
        read_store_status(&app.store, &caller.scope, &venue).await?,
    ))
}

/// Sets a venue's store status (any key: a manager or the venue's terminal). Terminals
/// receive `store_status_changed` when it changed; a closed store refuses online orders.
#[utoipa::path(put, path = "/venues/{venue}/store-status", tag = "menus",
    request_body = StoreStatusChange,
    params(("venue" = String, Path, description = "The venue.")),
    responses(
    (status = 200, description = "The status now.", body = StoreStatus),
    (status = 422, description = "`invalid_store_status`: busy without 1-240 extra_prep_minutes, or minutes when not busy; `invalid_venue`; `invalid_request`."),
))]
async fn put_store_status(
    State(app): State<MenusState>,
    TerminalCaller(caller): TerminalCaller,
    Path((_tenant, venue)): Path<(String, String)>,
    body: ApiJson<StoreStatusChange>,
) -> ApiResult<Json<StoreStatus>> {
    check_venue(&venue)?;
    let tenant_id = caller.scope.tenant_id().to_owned();
    let shared = Arc::new((caller.scope, venue, body.value));
    let status = write(&app, &tenant_id, move |tx| {
        let shared = shared.clone();
        Box::pin(async move {
            let (scope, venue, change) = &*shared;
            status::set(tx, scope, venue, change).await
        })
    })
    .await?;
    Ok(Json(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menus::model::tests::sample;

    #[test]
    fn pos_reports_mark_by_provider_id_and_a_snapshot_clears_what_it_leaves_out() {
        let report = |pid: &str, status, quantity: Option<&str>| Availability {
            provider_id: pid.into(),
            status,
            quantity: quantity.map(str::to_owned),
            until_ms: None,
        };
        let marked = |applied: &[AppliedChange]| -> Vec<(AvailabilityKind, String, bool)> {
            applied
                .iter()
                .map(|a| (a.kind, a.id.clone(), a.sold_out))
                .collect()
        };
        let mut c = sample();
        let reported = [
            report("P-fries", StockStatus::OutOfStock, None),
            report("P-not-on-menu", StockStatus::OutOfStock, None),
            report("P-bbq", StockStatus::Quantity, Some("0")),
            report("P-burger", StockStatus::Quantity, Some("2.5")),
        ];
        let applied = apply_pos_changes(&mut c, &reported, PosAvailability::Changes);
        assert_eq!(
            marked(&applied),
            vec![
                (AvailabilityKind::Item, "fries".to_owned(), true),
                (AvailabilityKind::Option, "bbq".to_owned(), true),
            ]
        );
        // The same report again changes nothing.
        assert!(apply_pos_changes(&mut c, &reported, PosAvailability::Changes).is_empty());
        // A snapshot listing only the bbq brings the fries back.
        let snapshot = [report("P-bbq", StockStatus::OutOfStock, None)];
        let applied = apply_pos_changes(&mut c, &snapshot, PosAvailability::Snapshot);
        assert_eq!(
            marked(&applied),
            vec![(AvailabilityKind::Item, "fries".to_owned(), false)]
        );
        assert!(positive_decimal("0.5") && !positive_decimal("0.00") && !positive_decimal("-3"));
    }

    #[test]
    fn availability_names_unknown_entries_and_lists_only_real_changes() {
        let mut c = sample();
        let change = |kind, id: &str, sold_out| AvailabilityChange {
            kind,
            id: id.into(),
            sold_out,
        };
        let applied = apply_availability(
            &mut c,
            "main",
            &[
                change(AvailabilityKind::Item, "fries", true),
                change(AvailabilityKind::Variation, "double", false),
                change(AvailabilityKind::Option, "bbq", true),
            ],
        )
        .unwrap();
        assert_eq!(
            applied.len(),
            2,
            "double was already available: {applied:?}"
        );
        assert_eq!(c.items[1].sold_out, Some(true));
        assert_eq!(c.modifier_groups[0].options[2].sold_out, Some(true));
        let err = apply_availability(
            &mut sample(),
            "main",
            &[
                change(AvailabilityKind::Item, "fries", true),
                change(AvailabilityKind::Option, "gravy", true),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("changes[1]"), "{err}");
    }

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(none_match(&h, "\"b\""));
        assert!(none_match(&h, "\"a\""));
        assert!(!none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, "\"c\""));
        assert!(!none_match(&HeaderMap::new(), "\"c\""));
    }
}
