//! The served bytes of recently read menus, per venue, so a `GET` neither rebuilds nor
//! re-serialises a document (a 5,000-item menu is megabytes of JSON).
//!
//! An entry is used only while the venue's stored version is the one it was read at: each
//! request reads that version (one indexed row, no document), so a change made by this host
//! or by any other host of a cluster sharing the database is served from the next request
//! on, with nothing to miss if a notification were lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sqlx::Row;

use super::MenuError;
use crate::auth::TenantScope;
use crate::locks::lock;
use crate::store::Store;

/// Most document bytes kept: beyond this, entries are dropped (the next read of their venue
/// loads its document again).
const MAX_CACHED_BYTES: usize = 128 * 1024 * 1024;

/// Served menu documents by (tenant, venue). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MenuCache {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    by_venue: HashMap<(String, String), Cached>,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Cached {
    version: i64,
    etag: String,
    body: Bytes,
}

/// The stored version and ETag of a venue's menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    /// Version.
    pub version: i64,
    /// Strong ETag, quoted.
    pub etag: String,
}

/// The venue's menu version and ETag, or `None` when it has no menu.
pub(crate) async fn current(
    store: &Store,
    scope: &TenantScope,
    venue: &str,
) -> Result<Option<Current>, MenuError> {
    let row = sqlx::query("SELECT version, etag FROM menus WHERE tenant_id = $1 AND venue = $2")
        .bind(scope.tenant_id())
        .bind(venue)
        .fetch_optional(store.reader())
        .await?;
    row.map(|r| {
        Ok(Current {
            version: r.try_get("version")?,
            etag: r.try_get("etag")?,
        })
    })
    .transpose()
}

impl MenuCache {
    /// The document of `current` and its ETag: from memory when cached at that version,
    /// else read (with whatever version is stored by then, whose ETag is returned).
    pub(crate) async fn document(
        &self,
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        current: &Current,
    ) -> Result<(String, Bytes), MenuError> {
        let key = (scope.tenant_id().to_owned(), venue.to_owned());
        if let Some(hit) = lock(&self.inner).by_venue.get(&key) {
            if hit.version == current.version {
                metrics::counter!("posbridge_menu_cache_hits_total").increment(1);
                return Ok((hit.etag.clone(), hit.body.clone()));
            }
        }
        metrics::counter!("posbridge_menu_cache_misses_total").increment(1);
        let row = sqlx::query(
            "SELECT version, etag, document FROM menus WHERE tenant_id = $1 AND venue = $2",
        )
        .bind(scope.tenant_id())
        .bind(venue)
        .fetch_optional(store.reader())
        .await?
        .ok_or_else(|| MenuError::NotFound(venue.to_owned()))?;
        let document: String = row.try_get("document")?;
        let fresh = Cached {
            version: row.try_get("version")?,
            etag: row.try_get("etag")?,
            body: Bytes::from(document),
        };
        let answer = (fresh.etag.clone(), fresh.body.clone());
        self.insert(key, fresh);
        Ok(answer)
    }

    fn insert(&self, key: (String, String), fresh: Cached) {
        let size = fresh.body.len();
        if size > MAX_CACHED_BYTES {
            return;
        }
        let mut entries = lock(&self.inner);
        if let Some(old) = entries.by_venue.get(&key) {
            // A slower reader must not replace a newer document with an older one.
            if old.version >= fresh.version {
                return;
            }
        }
        if let Some(old) = entries.by_venue.remove(&key) {
            entries.bytes -= old.body.len();
        }
        while entries.bytes + size > MAX_CACHED_BYTES {
            let Some(victim) = entries.by_venue.keys().next().cloned() else {
                break;
            };
            if let Some(old) = entries.by_venue.remove(&victim) {
                entries.bytes -= old.body.len();
            }
        }
        entries.bytes += size;
        entries.by_venue.insert(key, fresh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(version: i64, body: &'static str) -> Cached {
        Cached {
            version,
            etag: format!("\"{version}\""),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn an_older_document_never_replaces_a_newer_one() {
        let cache = MenuCache::default();
        let key = ("t".to_owned(), "v".to_owned());
        cache.insert(key.clone(), cached(2, "two"));
        cache.insert(key.clone(), cached(1, "one"));
        assert_eq!(lock(&cache.inner).by_venue[&key].version, 2);
        cache.insert(key.clone(), cached(3, "three"));
        let entries = lock(&cache.inner);
        assert_eq!(entries.by_venue[&key].version, 3);
        assert_eq!(entries.bytes, 5);
    }
}
