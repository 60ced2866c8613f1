//! Storage: one SQL layer over SQLite (the embedded default) and PostgreSQL.
//!
//! Queries are written once in the common subset of both dialects (`$N` parameters,
//! `ON CONFLICT`, `RETURNING`, integer money and microsecond timestamps) and run through
//! `sqlx::Any`, so every domain module has a single code path for both databases.
//!
//! Size: about 700 lines, 135 of them tests: the error type and how its failures are
//! classified (outage, conflict, unique violation), every storage knob documented where it
//! is set, and the [`Store`] handle with its pools; the SQLite specifics, the write
//! lane's direct connection and conflict retries have modules of their own.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

mod conn;
mod direct;
mod pg_readers;
mod retry;
mod sqlite;

pub(crate) use conn::{Conn, PointReader};
pub(crate) use retry::{retry_conflicts, TransientConflict, CONFLICT_RETRIES};
use sqlite::{spawn_checkpointer, sqlite_pool};

/// The sqlx database every query runs against.
pub(crate) type Db = sqlx::Any;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// An SQLite file in WAL mode: one writer connection, several readers.
    Sqlite,
    /// A PostgreSQL server shared by one or more hosts.
    Postgres,
}

/// Failures of the storage layer. Callers map them to a 500 (a 503 for a
/// [transient conflict](TransientConflict)); the cause is logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names a scheme other than `sqlite:` or `postgres:`.
    #[error("unsupported database url {0:?}: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The transaction this write shared with others (see [`crate::events::Writes`])
    /// failed as a whole: nothing of it was committed. Each write of the batch gets it.
    #[error("{0}")]
    Batch(std::sync::Arc<StoreError>),
    /// The write was dropped before it could be committed: its own code panicked.
    #[error("the write was abandoned before it committed")]
    WriteAbandoned,
}

impl StoreError {
    /// True when the failure is a UNIQUE or PRIMARY KEY violation (a lost insert race).
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(e)) => e.is_unique_violation(),
            StoreError::Batch(err) => err.is_unique_violation(),
            _ => false,
        }
    }

    /// True when the database itself is out of reach or cannot write (server down,
    /// connection lost, pool exhausted, disk full, read-only or failing file), as opposed
    /// to a statement it refused. The statement did not take effect (a transaction rolls
    /// back as a whole), so the caller answers 503 `database_unavailable` and the client
    /// sends the same request again later.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sqlx(err) => sqlx_unavailable(err),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(err)) => sqlx_unavailable(err),
            StoreError::Batch(err) => err.is_unavailable(),
            _ => false,
        }
    }
}

/// SQLSTATE classes and codes of PostgreSQL meaning "the server cannot serve now":
/// 08 connection exception, 53 insufficient resources (disk full, out of memory, too many
/// connections), 57P01–57P03 shutting down / restarting / not yet accepting connections,
/// 58030 I/O error, 25006 a read-only (standby) server after a failover.
const PG_UNAVAILABLE_CLASSES: [&str; 2] = ["08", "53"];
const PG_UNAVAILABLE_CODES: [&str; 5] = ["57P01", "57P02", "57P03", "58030", "25006"];

/// SQLite primary result codes (the low byte of the extended code sqlx reports) meaning
/// the file cannot be used right now: BUSY (another process held the lock past
/// `busy_timeout`), READONLY, IOERR, FULL (disk full), CANTOPEN. CORRUPT and NOTADB stay
/// 500s: retrying does not help, and they must reach an operator.
const SQLITE_UNAVAILABLE: [i64; 5] = [5, 8, 10, 13, 14];

fn sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else { return false };
            if let Some(direct) = db.try_downcast_ref::<direct::DirectSqliteError>() {
                return SQLITE_UNAVAILABLE.contains(&i64::from(direct.extended_code() & 0xff));
            }
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                return code
                    .parse::<i64>()
                    .is_ok_and(|extended| SQLITE_UNAVAILABLE.contains(&(extended & 0xff)));
            }
            PG_UNAVAILABLE_CODES.contains(&code.as_ref())
                || PG_UNAVAILABLE_CLASSES
                    .iter()
                    .any(|class| code.starts_with(class))
        }
        _ => false,
    }
}

/// Connection settings: every knob the storage layer has, with its default and why
/// (`serve` flags `--db-*`, `--sqlite-*`; see [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StoreOptions {
    /// Database connections: SQLite readers, or the PostgreSQL total (at least 3 there): a
    /// quarter of it, at least one, for point reads (a balance by its key, one round trip
    /// each, see `store/pg_readers.rs`), the rest the pool that write lanes, transactions
    /// and scans share. Default 8: SQLite readers run in parallel under WAL, and 8 keeps
    /// two cores busy without idling on the pool; on PostgreSQL 2 point readers and 6
    /// pooled. At least 1.
    #[arg(
        id = "db_connections",
        long = "db-connections",
        env = "POSBRIDGE_DB_CONNECTIONS",
        default_value = "8",
        value_parser = crate::options::at_least(1u32)
    )]
    pub max_connections: u32,
    /// SQLite durability: `full` (the default) fsyncs every commit, so an acknowledged
    /// write survives power loss and kernel crashes too; with group commit that is one
    /// fsync per batch, measured at ~18% of loyalty-add throughput (6,592 vs 8,087 adds/s,
    /// docs/performance.md). `normal` (WAL) fsyncs at checkpoints only: every acknowledged
    /// write survives a process crash or kill -9, the last commits may be lost on power loss.
    #[arg(
        long = "sqlite-synchronous",
        env = "POSBRIDGE_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: SqliteSync,
    /// Milliseconds a statement waits for a locked SQLite database before failing.
    /// Default 5 s: far longer than any one write holds the lock. At least 1.
    #[arg(
        long = "sqlite-busy-timeout-ms",
        env = "POSBRIDGE_SQLITE_BUSY_TIMEOUT_MS",
        default_value = "5000",
        value_parser = crate::options::millis(1)
    )]
    pub busy_timeout: Duration,
    /// Milliseconds between background copies of the SQLite write-ahead log into the
    /// database file (a PASSIVE checkpoint, which waits for no reader or writer). Left to
    /// SQLite, the checkpoint runs inside whichever commit fills 1,000 WAL pages, stalling
    /// the single writer (14% of its time under a burst of sales); in the background it
    /// overlaps with writing. Default 1 s: keeps the WAL to a few MiB. At least 10.
    #[arg(
        long = "sqlite-checkpoint-interval-ms",
        env = "POSBRIDGE_SQLITE_CHECKPOINT_INTERVAL_MS",
        default_value = "1000",
        value_parser = crate::options::millis(10)
    )]
    pub sqlite_checkpoint_interval: Duration,
    /// PostgreSQL: milliseconds a request waits for a pooled connection, including
    /// (re)connecting to the server, before it is answered 503 `database_unavailable`.
    /// Default 2 s: far above a healthy pool's wait (microseconds; a connect on a LAN is
    /// milliseconds), and short enough that a till sees the outage and falls back at once
    /// instead of hanging. SQLite waits up to 10 s instead (`SQLITE_ACQUIRE_TIMEOUT`).
    /// At least 1.
    #[arg(
        long = "db-acquire-timeout-ms",
        env = "POSBRIDGE_DB_ACQUIRE_TIMEOUT_MS",
        default_value = "2000",
        value_parser = crate::options::millis(1)
    )]
    pub acquire_timeout: Duration,
    /// Writes committed together at most, in one transaction and one commit (group
    /// commit, see [`crate::events::Writes`]). Batches form only while writes queue behind
    /// a commit; a lone write commits at once. Default 64: past a few dozen the fsync is
    /// amortised and a bigger batch only lengthens the wait of its first write; on
    /// PostgreSQL 64 also keeps a guarded batch's savepoints within the server's
    /// per-transaction cache of subtransaction ids. At least 1 (1: every write commits
    /// alone).
    #[arg(
        long = "write-batch-max",
        env = "POSBRIDGE_WRITE_BATCH_MAX",
        default_value = "64",
        value_parser = crate::options::at_least(1usize)
    )]
    pub write_batch_max: usize,
    /// PostgreSQL: batches in progress at once, each on its own connection from the pool.
    /// Their writes' statements run in parallel; they queue only for a tenant's sequence
    /// row, which each takes last, just before its commit. Each tenant's writes queue for
    /// a home lane, so different tenants' batches do not share sequence rows; an idle lane
    /// helps a busy one (see [`crate::events::Writes`]). Default 4: enough to keep
    /// writing while other batches wait for their commit's fsync, and two thirds of the
    /// default pool, leaving the rest to reads (never more than the pool less one).
    /// SQLite always has one (one writer). At least 1.
    #[arg(
        long = "write-lanes",
        env = "POSBRIDGE_WRITE_LANES",
        default_value = "4",
        value_parser = crate::options::at_least(1usize)
    )]
    pub write_lanes: usize,
}

/// SQLite: how long a request waits for a pooled connection. The SQLite pool has no server
/// that could be down (an unusable file fails at once with an I/O code, see
/// [`StoreError::is_unavailable`]); a wait there is the queue for the single writer under a
/// burst, which a generous bound lets drain instead of shedding writes.
pub(crate) const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite durability level; see [`StoreOptions::sqlite_synchronous`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// fsync on every commit.
    Full,
    /// fsync at WAL checkpoints only.
    Normal,
}

impl Default for StoreOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// The database handle shared by the whole host. Cheap to clone: one reference count, as
/// every request clones it (axum hands each handler its own copy of the state), and a
/// clone of the fields themselves showed in the balance-read profile (the URL's
/// allocation and half a dozen reference counts, ~1.5% of the server's CPU).
#[derive(Clone, Debug)]
pub struct Store {
    inner: std::sync::Arc<StoreInner>,
}

/// What a [`Store`] shares among its clones.
#[derive(Debug)]
struct StoreInner {
    reader: AnyPool,
    writer: AnyPool,
    /// SQLite's write lane connection (see [`Store::begin_direct`]); none on PostgreSQL
    /// and for an in-memory SQLite database, which another connection could not share.
    direct: Option<std::sync::Arc<tokio::sync::Mutex<direct::DirectSqlite>>>,
    /// Where point reads run (see [`Store::point_reader`]).
    point_readers: PointReaders,
    backend: Backend,
    url: String,
    options: StoreOptions,
}

/// How `--db-connections` is shared out on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PgConnections {
    /// sqlx's pool: write lanes, transactions and reads that scan.
    pool: u32,
    /// [`pg_readers::PgPointReaders`].
    point_readers: usize,
}

impl PgConnections {
    /// A quarter of `total` (at least one) for point reads, the rest (at least two) for the
    /// pool. Two point readers keep up with the 64 connections of a balance-read benchmark
    /// on two cores (a read holds its connection for one round trip); the default
    /// `--write-lanes` 4 then leaves the pool 2 for other reads.
    fn of(total: u32) -> Self {
        let point_readers = (total / 4).max(1);
        PgConnections {
            pool: total.saturating_sub(point_readers).max(2),
            point_readers: point_readers as usize,
        }
    }
}

/// Where [`Store::point_reader`] sends point reads.
#[derive(Debug, Clone)]
enum PointReaders {
    /// The reader pool (an in-memory SQLite database, which other connections cannot share).
    Pool,
    /// SQLite's direct readers.
    Sqlite(std::sync::Arc<direct::DirectReaders>),
    /// PostgreSQL's point readers.
    Postgres(std::sync::Arc<pg_readers::PgPointReaders>),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Store {
    /// Connects to `url` and applies pending migrations.
    ///
    /// A bare path (`posbridge.db`) means an SQLite file; SQLite files are created on demand.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalize_url(url)?;
        set_target(describe_target(&url));
        let store = match backend {
            Backend::Sqlite => {
                // SQLite allows one writer at a time; a single writer connection turns lock
                // contention (SQLITE_BUSY on upgrade) into an orderly queue on the pool.
                let writer = sqlite_pool(&url, 1, options).await?;
                let reader = sqlite_pool(&url, options.max_connections, options).await?;
                spawn_checkpointer(reader.clone(), options.sqlite_checkpoint_interval);
                let (direct, point_readers) = match sqlite::open_direct(&url, options)? {
                    Some((conn, readers)) => (
                        Some(std::sync::Arc::new(tokio::sync::Mutex::new(conn))),
                        PointReaders::Sqlite(std::sync::Arc::new(readers)),
                    ),
                    None => (None, PointReaders::Pool),
                };
                StoreInner {
                    reader,
                    writer,
                    direct,
                    point_readers,
                    backend,
                    url,
                    options: options.clone(),
                }
            }
            Backend::Postgres => {
                let connect = AnyConnectOptions::from_str(&url)?;
                let budget = PgConnections::of(options.max_connections);
                let pool = AnyPoolOptions::new()
                    .max_connections(budget.pool)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect.clone())
                    .await?;
                let point_readers = pg_readers::PgPointReaders::new(
                    connect,
                    budget.point_readers,
                    options.acquire_timeout,
                );
                StoreInner {
                    reader: pool.clone(),
                    writer: pool,
                    direct: None,
                    point_readers: PointReaders::Postgres(std::sync::Arc::new(point_readers)),
                    backend,
                    url,
                    options: options.clone(),
                }
            }
        };
        let store = Store {
            inner: std::sync::Arc::new(store),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.inner.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.inner.writer).await?;
        Ok(())
    }

    /// Which database this is.
    pub(crate) fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The normalized connection URL (used by the PostgreSQL listener).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The pool for reads that need no transaction.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// Where to read one row by its key (a balance): see [`PointReader`]. Reads that
    /// return many rows or scan use [`Store::reader`].
    pub(crate) fn point_reader(&self) -> PointReader<'_> {
        match &self.inner.point_readers {
            PointReaders::Pool => PointReader::Pool(&self.inner.reader),
            PointReaders::Sqlite(readers) => PointReader::Direct(readers),
            PointReaders::Postgres(readers) => PointReader::Postgres(readers),
        }
    }

    /// The pool for single-statement writes outside a transaction.
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.inner.writer
    }

    /// A reader connection for several statements in a row (no transaction).
    pub(crate) async fn read_conn(&self) -> Result<Conn, StoreError> {
        Ok(Conn::Borrowed(self.inner.reader.acquire().await?))
    }

    /// Starts a write transaction.
    pub(crate) async fn begin(&self) -> Result<Conn, StoreError> {
        Ok(Conn::Pooled(self.inner.writer.begin().await?))
    }

    /// Starts the write lane's transaction: on SQLite on the direct connection, whose
    /// statements run on the calling thread (see `store/direct.rs`), elsewhere as
    /// [`Store::begin`]. The writer pool's one connection is held meanwhile, so no other
    /// write of this process runs between (SQLite has one writer; taking turns in the
    /// pool's queue is cheaper than meeting in SQLite's busy handler, which sleeps).
    pub(crate) async fn begin_direct(&self) -> Result<Conn, StoreError> {
        let Some(direct) = &self.inner.direct else {
            return self.begin().await;
        };
        let turn = self.inner.writer.acquire().await?;
        let conn = direct.clone().lock_owned().await;
        Ok(Conn::Direct(direct::DirectTx::begin(conn, turn)?))
    }

    /// Readiness: the database answers a query within `timeout` and every migration this
    /// build embeds is recorded as applied. `Ok(false)` means reachable but not migrated
    /// (another host is mid-migration, or the schema was rolled back under us).
    pub(crate) async fn ready(&self, timeout: Duration) -> Result<bool, StoreError> {
        let migrator = match self.inner.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let applied: Vec<i64> = tokio::time::timeout(
            timeout,
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.inner.reader),
        )
        .await
        .map_err(|_| StoreError::Sqlx(sqlx::Error::PoolTimedOut))??;
        Ok(migrator
            .iter()
            .all(|migration| applied.contains(&migration.version)))
    }

    /// Closes both pools, waiting for checked-out connections to return, and PostgreSQL's
    /// point readers.
    pub async fn close(&self) {
        if let PointReaders::Postgres(readers) = &self.inner.point_readers {
            readers.close().await;
        }
        self.inner.writer.close().await;
        self.inner.reader.close().await;
    }
}

fn normalize_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    let url = if url.starts_with("sqlite:") {
        url.to_owned()
    } else if url.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    } else {
        format!("sqlite://{url}")
    };
    let url = if url.contains("mode=") || url.contains(":memory:") {
        url
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok((Backend::Sqlite, url))
}

static TARGET: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

fn set_target(target: String) {
    if let Ok(mut slot) = TARGET.write() {
        *slot = target;
    }
}

/// The database this process opened last, for log lines about an outage: `host:port/db`
/// for PostgreSQL (never the user or password), the file path for SQLite.
pub(crate) fn target() -> String {
    TARGET.read().map(|t| t.clone()).unwrap_or_default()
}

/// `url` without credentials or options: what an operator needs to find the failing
/// database, and nothing that must not reach a log.
fn describe_target(url: &str) -> String {
    if let Ok(parsed) = url::Url::parse(url) {
        if parsed.scheme().starts_with("postgres") {
            let host = parsed.host_str().unwrap_or("localhost");
            let port = parsed.port().unwrap_or(5432);
            return format!("postgres {host}:{port}{}", parsed.path());
        }
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    format!("sqlite {}", path.split('?').next().unwrap_or(path))
}

/// Current time as microseconds since the Unix epoch, the unit of every stored timestamp.
pub(crate) fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// Formats a stored timestamp as RFC 3339 in UTC.
pub(crate) fn rfc3339(micros: i64) -> String {
    match jiff::Timestamp::from_microsecond(micros) {
        Ok(ts) => ts.to_string(),
        Err(_) => String::from("1970-01-01T00:00:00Z"),
    }
}

/// A new time-ordered unique id (UUIDv7), used as the primary key of every row we create.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Start-up housekeeping for claim and lease columns: runs `sql`, an UPDATE that clears
/// those held by any process other than `$1` (bound to `node_id`), and logs how many `what`
/// it released. Failures are logged, not fatal: the claims also expire on their own.
///
/// SQLite only: one process owns the file, so any other owner is a stopped predecessor. On
/// PostgreSQL the other owners may be live hosts, whose work must not be taken from them;
/// a dead host's claims run out by themselves within seconds (see [`crate::lease`]).
pub(crate) async fn release_foreign_claims(store: &Store, node_id: &str, sql: &str, what: &str) {
    if store.backend() == Backend::Postgres {
        return;
    }
    match sqlx::query(sql).bind(node_id).execute(store.writer()).await {
        Ok(r) if r.rows_affected() > 0 => tracing::info!(
            released = r.rows_affected(),
            "released {what} left by a stopped process"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not release stale {what}"),
    }
}

/// Placeholders for a statement assembled at run time (multi-row `VALUES`, `IN` lists),
/// handed out in text order: every parameter is written where it is used, never reused by
/// number, so the binds simply follow the text.
///
/// SQLite gets anonymous `?`. sqlx maps a numbered `$N` to its argument through
/// `sqlite3_bind_parameter_name`, a linear search per parameter: binding a 2,600-parameter
/// batch INSERT that way took a third of the writer thread's time. PostgreSQL needs `$N`.
#[derive(Debug)]
pub(crate) struct Params {
    backend: Backend,
    used: usize,
}

impl Params {
    /// Placeholders for a statement on `backend`, starting at the first parameter.
    pub(crate) fn new(backend: Backend) -> Self {
        Params { backend, used: 0 }
    }

    /// The next placeholder.
    pub(crate) fn one(&mut self) -> String {
        self.used += 1;
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${}", self.used),
        }
    }

    /// `count` placeholders separated by commas, for an `IN (…)` list or inside a row.
    pub(crate) fn list(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| self.one())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `count` rows of `columns` placeholders each, for a multi-row `VALUES`.
    pub(crate) fn rows(&mut self, count: usize, columns: usize) -> String {
        (0..count)
            .map(|_| format!("({})", self.list(columns)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keys per `IN (…)` list of a bulk lookup: far below SQLite's 32,766 and PostgreSQL's
/// 65,535 bound parameters.
pub(crate) const KEYS_PER_LOOKUP: usize = 500;

/// The rows `sql(scope, keys)` selects for every key, [`KEYS_PER_LOOKUP`] keys a statement:
/// `sql` gets the placeholder of `scope_value` and the placeholder list of the keys. One
/// statement per chunk rather than per key, because each is a round trip.
pub(crate) async fn rows_by_keys(
    conn: &mut Conn,
    backend: Backend,
    scope_value: &str,
    keys: &[&str],
    sql: impl Fn(&str, &str) -> String,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
        let mut p = Params::new(backend);
        let scope = p.one();
        let sql = sql(&scope, &p.list(chunk.len()));
        let mut query = sqlx::query(&sql).bind(scope_value);
        for key in chunk {
            query = query.bind(*key);
        }
        rows.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_connections_are_shared_out_within_the_total() {
        let default = PgConnections::of(8);
        assert_eq!((default.pool, default.point_readers), (6, 2));
        // Below three the pool keeps its two (a write lane and a read) and the total is 3.
        for total in [1, 2] {
            let small = PgConnections::of(total);
            assert_eq!((small.pool, small.point_readers), (2, 1));
        }
        for total in 3..=64 {
            let budget = PgConnections::of(total);
            assert_eq!(budget.pool as usize + budget.point_readers, total as usize);
            assert!(budget.point_readers >= 1 && budget.pool >= 2);
        }
    }

    #[test]
    fn bare_paths_become_sqlite_files() {
        let (backend, url) = normalize_url("posbridge.db").unwrap();
        assert_eq!(backend, Backend::Sqlite);
        assert_eq!(url, "sqlite://posbridge.db?mode=rwc");
        let (_, url) = normalize_url("sqlite:///tmp/x.db?cache=shared").unwrap();
        assert_eq!(url, "sqlite:///tmp/x.db?cache=shared&mode=rwc");
        assert!(matches!(
            normalize_url("mysql://x"),
            Err(StoreError::UnsupportedUrl(_))
        ));
        assert_eq!(
            normalize_url("postgres://u@h/db").unwrap().0,
            Backend::Postgres
        );
    }

    #[test]
    fn log_targets_never_carry_credentials() {
        assert_eq!(
            describe_target("postgres://posbridge:s3cret@db.internal:5433/pos?sslmode=require"),
            "postgres db.internal:5433/pos"
        );
        assert_eq!(
            describe_target("sqlite:///var/lib/pb/posbridge.db?mode=rwc"),
            "sqlite /var/lib/pb/posbridge.db"
        );
    }

    #[test]
    fn outages_are_told_apart_from_refused_statements() {
        let unavailable = |e: sqlx::Error| StoreError::from(e).is_unavailable();
        assert!(unavailable(sqlx::Error::PoolTimedOut));
        assert!(unavailable(sqlx::Error::PoolClosed));
        assert!(unavailable(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!unavailable(sqlx::Error::RowNotFound));
        assert!(!unavailable(sqlx::Error::Protocol("bad".into())));
    }

    /// Real SQLite failures, produced on a throwaway file: a read-only connection's write
    /// (SQLITE_READONLY) and a write past `max_page_count` (SQLITE_FULL, what a full disk
    /// reports) are outages; a constraint violation is not. Nothing of the failed
    /// transaction stays behind.
    #[tokio::test]
    async fn sqlite_io_failures_are_outages_and_leave_nothing_half_written() {
        use sqlx::Connection;
        let dir = std::env::temp_dir().join(format!("posbridge-store-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO t (id, v) VALUES (1, NULL)")
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(!StoreError::from(refused).is_unavailable());

        // Disk full: cap the file at its current size, then write more than fits.
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(&format!("PRAGMA max_page_count = {pages}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("INSERT INTO t (id, v) VALUES (2, 'small')")
            .execute(&mut *tx)
            .await
            .ok();
        let full = sqlx::query("INSERT INTO t (id, v) VALUES (3, $1)")
            .bind("x".repeat(1 << 20))
            .execute(&mut *tx)
            .await
            .unwrap_err();
        // SQLite has already rolled the whole transaction back on SQLITE_FULL.
        let _ = tx.rollback().await;
        let full = StoreError::from(full);
        assert!(
            full.is_unavailable(),
            "SQLITE_FULL must be an outage: {full}"
        );
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows, 0, "the failed transaction left rows behind");
        conn.close().await.unwrap();

        let ro = format!("sqlite://{}?mode=ro", file.display());
        let mut conn = sqlx::SqliteConnection::connect(&ro).await.unwrap();
        let readonly = sqlx::query("INSERT INTO t (id, v) VALUES (4, 'x')")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let readonly = StoreError::from(readonly);
        assert!(
            readonly.is_unavailable(),
            "SQLITE_READONLY must be an outage: {readonly}"
        );
        conn.close().await.unwrap();

        let missing = format!("sqlite://{}/no/such/dir/x.db?mode=rwc", dir.display());
        let cantopen = sqlx::SqliteConnection::connect(&missing).await.unwrap_err();
        let cantopen = StoreError::from(cantopen);
        assert!(
            cantopen.is_unavailable(),
            "SQLITE_CANTOPEN must be an outage: {cantopen}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn placeholders_follow_the_text_on_both_backends() {
        let mut pg = Params::new(Backend::Postgres);
        assert_eq!(pg.one(), "$1");
        assert_eq!(pg.rows(2, 2), "($2, $3), ($4, $5)");
        assert_eq!(pg.list(2), "$6, $7");
        assert_eq!(pg.list(0), "");
        let mut lite = Params::new(Backend::Sqlite);
        assert_eq!(lite.rows(2, 2), "(?, ?), (?, ?)");
        assert_eq!(lite.list(1), "?");
    }
}
