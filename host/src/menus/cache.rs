//! The served bytes of recently read menus, per venue, so a `GET` neither rebuilds nor
//! re-serialises a document (a 5,000-item menu is megabytes of JSON), nor compresses it: each
//! entry holds the document and its gzip copy, made once when the version is loaded.
//!
//! An entry is used only while the venue's stored version is the one it was read at: each
//! request reads that version (one indexed row, no document), so a change made by this host
//! or by any other host of a cluster sharing the database is served from the next request
//! on, with nothing to miss if a notification were lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sqlx::Row;
use tokio::sync::OnceCell;

use super::encoding::{self, Coding};
use super::MenuError;
use crate::auth::TenantScope;
use crate::locks::lock;
use crate::store::Store;

/// Most bytes kept, documents and their gzip copies together: beyond this, entries are
/// dropped (the next read of their venue loads its document again).
const MAX_CACHED_BYTES: usize = 128 * 1024 * 1024;

/// A (tenant, venue).
type Key = (String, String);

/// Served menu documents by (tenant, venue). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MenuCache {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    by_venue: HashMap<Key, Arc<Document>>,
    /// Loads under way, by venue, so that the requests missing one venue at once (every
    /// terminal fetching a menu that just changed) wait for one read and one compression
    /// instead of each making their own.
    loading: HashMap<Key, Load>,
    /// Sum of [`Document::size`] over `by_venue`.
    bytes: usize,
}

/// A load of a venue's document, started for `version` (it reads whatever is stored by
/// then, which is that version or a later one).
#[derive(Debug)]
struct Load {
    version: i64,
    done: Arc<OnceCell<Arc<Document>>>,
}

/// A menu document as served: the stored bytes and their gzip copy, made once when the
/// version is loaded so that no request compresses.
#[derive(Debug)]
pub(crate) struct Document {
    /// Version.
    pub version: i64,
    /// The stored strong ETag, quoted (see [`Coding::etag`] for the gzip copy's).
    pub etag: String,
    identity: Bytes,
    gzip: Bytes,
}

impl Document {
    /// The body in `coding`.
    pub(crate) fn body(&self, coding: Coding) -> Bytes {
        match coding {
            Coding::Identity => self.identity.clone(),
            Coding::Gzip => self.gzip.clone(),
        }
    }

    /// Bytes held, counted against [`MAX_CACHED_BYTES`].
    fn size(&self) -> usize {
        self.identity.len() + self.gzip.len()
    }
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

/// Reads the venue's stored document and makes its gzip copy.
async fn load(store: &Store, scope: &TenantScope, venue: &str) -> Result<Document, MenuError> {
    let row = sqlx::query(
        "SELECT version, etag, document FROM menus WHERE tenant_id = $1 AND venue = $2",
    )
    .bind(scope.tenant_id())
    .bind(venue)
    .fetch_optional(store.reader())
    .await?
    .ok_or_else(|| MenuError::NotFound(venue.to_owned()))?;
    let document: String = row.try_get("document")?;
    let identity = Bytes::from(document);
    // Gzipping a 2.8 MiB document takes 60-95 ms of CPU; on a runtime with one worker per
    // core that would hold up every request queued behind it, so it runs on the blocking
    // pool. It happens once per version (see `Entries::loading`), never on a cache hit.
    let source = identity.clone();
    let gzip = tokio::task::spawn_blocking(move || encoding::gzip(&source))
        .await
        .map_err(|e| MenuError::Compress(e.to_string()))?
        .map_err(|e| MenuError::Compress(e.to_string()))?;
    Ok(Document {
        version: row.try_get("version")?,
        etag: row.try_get("etag")?,
        identity,
        gzip: Bytes::from(gzip),
    })
}

impl MenuCache {
    /// The document of `current`: from memory when cached at that version, else read
    /// (with whatever version is stored by then, which the returned document carries).
    /// Concurrent misses of one venue share one read.
    pub(crate) async fn document(
        &self,
        store: &Store,
        scope: &TenantScope,
        venue: &str,
        current: &Current,
    ) -> Result<Arc<Document>, MenuError> {
        let key = (scope.tenant_id().to_owned(), venue.to_owned());
        let done = {
            let mut entries = lock(&self.inner);
            if let Some(hit) = entries.by_venue.get(&key) {
                if hit.version >= current.version {
                    metrics::counter!("posbridge_menu_cache_hits_total").increment(1);
                    return Ok(hit.clone());
                }
            }
            match entries.loading.get(&key) {
                Some(load) if load.version >= current.version => load.done.clone(),
                _ => {
                    let done = Arc::new(OnceCell::new());
                    entries.loading.insert(
                        key.clone(),
                        Load {
                            version: current.version,
                            done: done.clone(),
                        },
                    );
                    done
                }
            }
        };
        // One waiter runs the load; if it fails or its request goes away, the next one
        // runs it. Those served by another's load count as hits: they read nothing.
        let mut loaded_here = false;
        let result = done
            .get_or_try_init(|| async {
                loaded_here = true;
                metrics::counter!("posbridge_menu_cache_misses_total").increment(1);
                let fresh = Arc::new(load(store, scope, venue).await?);
                self.insert(key.clone(), fresh.clone());
                Ok::<_, MenuError>(fresh)
            })
            .await
            .cloned();
        if result.is_ok() && !loaded_here {
            metrics::counter!("posbridge_menu_cache_hits_total").increment(1);
        }
        let mut entries = lock(&self.inner);
        if entries
            .loading
            .get(&key)
            .is_some_and(|load| Arc::ptr_eq(&load.done, &done))
        {
            entries.loading.remove(&key);
        }
        result
    }

    fn insert(&self, key: Key, fresh: Arc<Document>) {
        let size = fresh.size();
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
            entries.bytes -= old.size();
        }
        while entries.bytes + size > MAX_CACHED_BYTES {
            let Some(victim) = entries.by_venue.keys().next().cloned() else {
                break;
            };
            if let Some(old) = entries.by_venue.remove(&victim) {
                entries.bytes -= old.size();
            }
        }
        entries.bytes += size;
        entries.by_venue.insert(key, fresh);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::store::StoreOptions;

    fn document(version: i64, body: &'static str) -> Arc<Document> {
        Arc::new(Document {
            version,
            etag: format!("\"{version}\""),
            identity: Bytes::from_static(body.as_bytes()),
            gzip: Bytes::from(encoding::gzip(body.as_bytes()).expect("gzip")),
        })
    }

    #[test]
    fn an_older_document_never_replaces_a_newer_one_and_both_copies_are_counted() {
        let cache = MenuCache::default();
        let key = ("t".to_owned(), "v".to_owned());
        let (two, three) = (document(2, "two"), document(3, "three"));
        cache.insert(key.clone(), two.clone());
        cache.insert(key.clone(), document(1, "one"));
        assert_eq!(lock(&cache.inner).by_venue[&key].version, 2);
        assert_eq!(lock(&cache.inner).bytes, two.size());
        cache.insert(key.clone(), three.clone());
        let entries = lock(&cache.inner);
        assert_eq!(entries.by_venue[&key].version, 3);
        assert_eq!(entries.bytes, 5 + three.gzip.len());
        assert!(three.gzip.len() > 5, "a gzip copy has a header");
    }

    #[test]
    fn the_bound_counts_the_gzip_copies_too() {
        let cache = MenuCache::default();
        // Two documents of a third of the bound each fit only without their copies.
        let third = Bytes::from(vec![b'x'; MAX_CACHED_BYTES / 3]);
        let entry = || {
            Arc::new(Document {
                version: 1,
                etag: String::new(),
                identity: third.clone(),
                gzip: third.clone(),
            })
        };
        cache.insert(("t".into(), "a".into()), entry());
        cache.insert(("t".into(), "b".into()), entry());
        let entries = lock(&cache.inner);
        assert_eq!(entries.by_venue.len(), 1, "one evicted");
        assert_eq!(entries.bytes, 2 * third.len());
    }

    /// A migrated store with one tenant, and its scope.
    async fn menus_store() -> (Store, TenantScope, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("posbridge-menus-{}", crate::store::new_id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}", dir.join("m.db").display());
        let store = Store::open(&url, &StoreOptions::default())
            .await
            .expect("store");
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, currency, timezone, country, created_at)
             VALUES ('t1', 'kitchen', 'Kitchen', 'USD', 'America/New_York', 'US', 0)",
        )
        .execute(store.writer())
        .await
        .expect("tenant");
        let scope = TenantScope::for_background_job(&store, "t1")
            .await
            .expect("scope")
            .expect("tenant");
        (store, scope, dir)
    }

    async fn store_menu(store: &Store, version: i64, document: &str) {
        sqlx::query("DELETE FROM menus")
            .execute(store.writer())
            .await
            .expect("delete");
        sqlx::query(
            "INSERT INTO menus (tenant_id, venue, version, etag, content_hash, document, updated_at)
             VALUES ('t1', 'main', $1, $2, '', $3, 0)",
        )
            .bind(version)
            .bind(format!("\"v{version}\""))
            .bind(document)
            .execute(store.writer())
            .await
            .expect("insert");
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut out = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut out)
            .expect("gunzip");
        out
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load_and_a_new_version_is_loaded_once_more() {
        let (store, scope, dir) = menus_store().await;
        let cache = MenuCache::default();
        let one = r#"{"version":1,"items":["burger","fries","burger","fries"]}"#;
        store_menu(&store, 1, one).await;
        let current = current(&store, &scope, "main")
            .await
            .expect("current")
            .expect("a menu");
        let reads = (0..20).map(|_| cache.document(&store, &scope, "main", &current));
        let served = futures_util::future::join_all(reads).await;
        let first = served[0].as_ref().expect("document").clone();
        for doc in &served {
            let doc = doc.as_ref().expect("document");
            assert!(Arc::ptr_eq(doc, &first), "one load, one gzip copy for all");
        }
        assert_eq!(first.version, 1);
        assert_eq!(first.etag, "\"v1\"");
        assert_eq!(first.body(Coding::Identity), one.as_bytes());
        assert_eq!(gunzip(&first.body(Coding::Gzip)), one);
        assert!(lock(&cache.inner).loading.is_empty(), "the load is done");

        // A hit is the same document; a new version is read and compressed anew.
        let hit = cache.document(&store, &scope, "main", &current).await;
        assert!(Arc::ptr_eq(&hit.expect("hit"), &first));
        let two = r#"{"version":2,"items":["burger"]}"#;
        store_menu(&store, 2, two).await;
        let current = Current {
            version: 2,
            etag: "\"v2\"".into(),
        };
        let fresh = cache
            .document(&store, &scope, "main", &current)
            .await
            .expect("document");
        assert_eq!((fresh.version, fresh.etag.as_str()), (2, "\"v2\""));
        assert_eq!(gunzip(&fresh.body(Coding::Gzip)), two);
        assert_eq!(lock(&cache.inner).bytes, fresh.size());
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
