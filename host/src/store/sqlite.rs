//! SQLite's side of the store: the pools' pragmas, the write lane's direct connection and
//! the background WAL checkpointer.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

use super::direct::{DirectReaders, DirectSqlite};
use super::{SqliteSync, StoreError, StoreOptions, SQLITE_ACQUIRE_TIMEOUT};

/// The SQLite pool: WAL, the chosen durability, foreign keys, and no ping before lending a
/// connection out.
pub(super) async fn sqlite_pool(
    url: &str,
    max: u32,
    options: &StoreOptions,
) -> Result<AnyPool, StoreError> {
    let pragmas = pragmas(options);
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
        // sqlx pings an idle connection before lending it out, which on SQLite is a full
        // round trip to the connection's worker thread on every acquire (one more hand-off
        // per request, measured as a large share of the write path). An SQLite connection
        // is an in-process file handle with no peer that could hang up, so the check buys
        // nothing here; PostgreSQL keeps it.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let pragmas = pragmas.clone();
            Box::pin(async move {
                conn.execute(pragmas.as_str()).await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await?;
    Ok(pool)
}

/// The pragmas every connection runs first: WAL, the chosen durability, foreign keys.
fn pragmas(options: &StoreOptions) -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};
         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};",
        match options.sqlite_synchronous {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        },
        options.busy_timeout.as_millis()
    )
}

/// The write lane's connection to the file `url` names (opened after the pools, which
/// created it) and the point readers of that file; none for an in-memory database, which
/// other connections cannot share.
pub(super) fn open_direct(
    url: &str,
    options: &StoreOptions,
) -> Result<Option<(DirectSqlite, DirectReaders)>, StoreError> {
    let parsed = SqliteConnectOptions::from_str(url)?;
    let path = parsed.get_filename();
    if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
        return Ok(None);
    }
    let pragmas = pragmas(options);
    let writer = DirectSqlite::open(path, &pragmas, options.busy_timeout)?;
    let readers = DirectReaders::new(
        path.to_owned(),
        pragmas,
        options.busy_timeout,
        options.max_connections as usize,
    );
    Ok(Some((writer, readers)))
}

/// WAL pages after which a commit checkpoints by itself: only a safety net, should the
/// background checkpointer fall behind (16,000 pages is about 64 MiB of WAL).
///
/// The pragmas beside it: `temp_store = MEMORY` keeps statement journals (written before a
/// multi-row INSERT or UPDATE changes a page, so the statement alone can roll back) in
/// memory instead of temporary files, a tenth of the writer's time under a burst of sales.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_000;

/// Runs a PASSIVE checkpoint every `interval` until the pool closes.
pub(super) fn spawn_checkpointer(pool: AnyPool, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                Ok(_) => {}
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => tracing::warn!(error = %err, "WAL checkpoint failed"),
            }
        }
    });
}
