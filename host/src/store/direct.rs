//! The SQLite write lane's own connection: statements run on the calling thread.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its connection and
//! answers through a channel, so each statement costs two thread switches. A write of
//! three statements paid six, and the profile of loyalty adds showed the hand-offs
//! (futex waits and wakes, `finish_task_switch`) as over half of the server's CPU while
//! SQLite's own work was under 5% (docs/performance.md, "Group commit"). The group
//! commit's SQLite lane therefore runs on a thread of its own (see
//! [`crate::events::Writes`]) and drives this connection directly through rusqlite, which
//! links the same SQLite build as sqlx: a batch of writes is one hand-off in and one per
//! answer out, whatever the number of statements.
//!
//! The domain's statements stay sqlx queries on the [`Any`] driver: [`DirectSqlite`]
//! implements sqlx's [`Executor`](sqlx::Executor) for them, binding the same `$N`
//! parameters and building the same [`AnyRow`]s that sqlx's SQLite driver builds (values
//! typed by what SQLite stored, as sqlx's `AnyRow::map_from` does), and reporting errors
//! with SQLite's extended result code, as sqlx does, so that a unique violation or a busy
//! file reads the same.
//!
//! Size: about 710 lines, 195 of them tests: binding, row typing, multi-statement queries
//! and error codes must agree with sqlx's SQLite driver in every detail the store relies
//! on, and they are one executor; the point readers are in `direct/readers.rs`.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ToSql};
use sqlx::any::{
    Any, AnyArguments, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue,
};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Either, Execute};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

mod readers;

pub(crate) use readers::DirectReaders;

/// Prepared statements the connection keeps. The write paths use a few dozen distinct
/// statements; the events INSERT has one text per batch size (up to the batch maximum).
const STATEMENT_CACHE: usize = 512;

/// An SQLite connection driven on the thread that calls it.
pub(crate) struct DirectSqlite {
    conn: rusqlite::Connection,
}

impl fmt::Debug for DirectSqlite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectSqlite").finish_non_exhaustive()
    }
}

impl DirectSqlite {
    /// Opens the database file with the pragmas the pools use (`pragmas`, one batch of
    /// `PRAGMA …;` statements) and a busy timeout.
    pub(crate) fn open(
        path: &Path,
        pragmas: &str,
        busy_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(into_sqlx)?;
        conn.busy_timeout(busy_timeout).map_err(into_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut direct = DirectSqlite { conn };
        // One at a time: some pragmas answer with a row (`journal_mode` its new mode),
        // which a batch refuses.
        for pragma in pragmas.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            direct.run(pragma, None, None)?;
        }
        Ok(direct)
    }

    /// Runs `sql` without parameters (transaction control, savepoints).
    pub(crate) fn execute_batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.conn.execute_batch(sql).map_err(into_sqlx)
    }

    /// Whether a transaction is open (after a failed `COMMIT`, SQLite may have rolled it
    /// back by itself).
    pub(crate) fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs `sql` with sqlx's arguments; returns its rows (at most `limit`) and the rows it
    /// changed. Several statements in one query run one after the other, as sqlx's driver
    /// runs them (the same `$N` arguments for all, anonymous `?`s numbered on across them),
    /// each to its end: a write after a row-returning statement is never abandoned.
    pub(super) fn run(
        &mut self,
        sql: &str,
        arguments: Option<AnyArguments<'_>>,
        limit: Option<usize>,
    ) -> Result<(Vec<AnyRow>, u64), sqlx::Error> {
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        let statements = split_statements(sql);
        let mut anonymous = 0;
        let mut rows = Vec::new();
        let mut changed = 0;
        let last = statements.len().saturating_sub(1);
        for (i, statement) in statements.into_iter().enumerate() {
            // Only the last statement may stop early at the limit, as sqlx's single-row
            // fetch does; the ones before it run to their end.
            let stop = if i == last { limit } else { None };
            changed += self.run_one(statement, &values, &mut anonymous, &mut rows, stop, limit)?;
        }
        Ok((rows, changed))
    }

    /// Runs one statement, adding its rows to `rows` (up to `keep` in all) and returning
    /// the rows it changed. Stepping stops once `rows` holds `stop`.
    fn run_one(
        &mut self,
        sql: &str,
        values: &[AnyValueKind<'_>],
        anonymous: &mut usize,
        rows: &mut Vec<AnyRow>,
        stop: Option<usize>,
        keep: Option<usize>,
    ) -> Result<u64, sqlx::Error> {
        let mut statement = self.conn.prepare_cached(sql).map_err(into_sqlx)?;
        for index in 1..=statement.parameter_count() {
            // `$N` (and `?N`) name the N-th argument wherever it appears, as sqlx binds
            // them; a bare `?` takes the next one.
            let position = match statement.parameter_name(index) {
                Some(name) => name[1..].parse::<usize>().map_err(|_| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter {name:?}"))
                })?,
                None => {
                    *anonymous += 1;
                    *anonymous
                }
            };
            // As sqlx's driver does: a parameter past the arguments stays NULL.
            if let Some(value) = position.checked_sub(1).and_then(|i| values.get(i)) {
                statement
                    .raw_bind_parameter(index, Bound(value))
                    .map_err(into_sqlx)?;
            }
        }
        // Transaction control and reads change nothing; `changes()` would repeat the last
        // write's count for them.
        let writes = !statement.readonly();
        let names: Vec<UStr> = statement
            .column_names()
            .into_iter()
            .map(UStr::new)
            .collect();
        let lookup: Arc<sqlx_core::HashMap<UStr, usize>> =
            Arc::new(names.iter().cloned().zip(0..).collect());
        let width = names.len();
        let mut raw = statement.raw_query();
        // Stepped at least once: a write happens on its first step, whatever rows came
        // before it.
        while let Some(row) = raw.next().map_err(into_sqlx)? {
            if keep.is_some_and(|keep| rows.len() >= keep) {
                if stop.is_some() {
                    break;
                }
                continue;
            }
            let mut columns = Vec::with_capacity(width);
            let mut values = Vec::with_capacity(width);
            for (i, name) in names.iter().enumerate() {
                let value = row.get_ref(i).map_err(into_sqlx)?;
                let kind = any_value(value)?;
                columns.push(AnyColumn {
                    ordinal: i,
                    name: name.clone(),
                    type_info: AnyTypeInfo {
                        kind: type_kind(&kind),
                    },
                });
                values.push(AnyValue { kind });
            }
            rows.push(AnyRow {
                column_names: lookup.clone(),
                columns,
                values,
            });
            if stop.is_some_and(|stop| rows.len() >= stop) {
                break;
            }
        }
        drop(raw);
        // Stepped to the end (or stopped early, as sqlx's `fetch_optional` does); the
        // statement is reset when it goes back to the cache.
        Ok(if writes { self.conn.changes() } else { 0 })
    }
}

/// `sql` cut into its statements, by SQLite's own rule of what completes one
/// (`sqlite3_complete`, which knows quotes, comments and trigger bodies). Almost every
/// query is one statement, found without a copy.
fn split_statements(sql: &str) -> Vec<&str> {
    let body = sql.trim_end_matches(|c: char| c.is_whitespace() || c == ';');
    if !body.contains(';') {
        return vec![sql];
    }
    let mut statements = Vec::new();
    let mut start = 0;
    for (at, _) in sql.match_indices(';') {
        let candidate = &sql[start..=at];
        if is_complete(candidate) {
            if !candidate[..candidate.len() - 1].trim().is_empty() {
                statements.push(candidate);
            }
            start = at + 1;
        }
    }
    if !sql[start..].trim().is_empty() {
        statements.push(&sql[start..]);
    }
    statements
}

/// Whether `sql` ends with a complete statement, by SQLite's parser.
fn is_complete(sql: &str) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: `text` is a NUL-terminated string that outlives the call; the function only
    // reads it.
    unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

/// A value as sqlx's SQLite driver hands it to the `Any` driver: typed by its storage
/// class, integers as `BigInt`, reals as `Double`.
fn any_value(value: ValueRef<'_>) -> Result<AnyValueKind<'static>, sqlx::Error> {
    Ok(match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(f) => AnyValueKind::Double(f),
        ValueRef::Text(bytes) => AnyValueKind::Text(Cow::Owned(
            std::str::from_utf8(bytes)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?
                .to_owned(),
        )),
        ValueRef::Blob(bytes) => AnyValueKind::Blob(Cow::Owned(bytes.to_vec())),
    })
}

fn type_kind(value: &AnyValueKind<'_>) -> AnyTypeInfoKind {
    match value {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

/// One of sqlx's arguments, bound as sqlx's SQLite driver binds it.
struct Bound<'a, 'q>(&'a AnyValueKind<'q>);

impl ToSql for Bound<'_, '_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            AnyValueKind::Null(_) => ValueRef::Null,
            AnyValueKind::Bool(b) => ValueRef::Integer(i64::from(*b)),
            AnyValueKind::SmallInt(i) => ValueRef::Integer(i64::from(*i)),
            AnyValueKind::Integer(i) => ValueRef::Integer(i64::from(*i)),
            AnyValueKind::BigInt(i) => ValueRef::Integer(*i),
            AnyValueKind::Real(r) => ValueRef::Real(f64::from(*r)),
            AnyValueKind::Double(d) => ValueRef::Real(*d),
            AnyValueKind::Text(t) => ValueRef::Text(t.as_bytes()),
            AnyValueKind::Blob(b) => ValueRef::Blob(b),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite type for the argument {other:?}").into(),
                ))
            }
        }))
    }
}

/// SQLite's failure, reported like sqlx's own SQLite error: the extended result code as
/// the code, constraint violations by kind.
#[derive(Debug)]
pub(crate) struct DirectSqliteError {
    /// SQLite's extended result code.
    code: i32,
    message: String,
}

impl DirectSqliteError {
    /// The extended result code (the primary code is its low byte).
    pub(crate) fn extended_code(&self) -> i32 {
        self.code
    }
}

impl fmt::Display for DirectSqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for DirectSqliteError {}

impl DatabaseError for DirectSqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// rusqlite's error as the sqlx error the rest of the store inspects.
fn into_sqlx(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(DirectSqliteError {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Takes the query's SQL and arguments as sqlx would send them.
pub(super) fn parts<'q, E: Execute<'q, Any>>(
    mut query: E,
) -> Result<(&'q str, Option<AnyArguments<'q>>), sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    Ok((query.sql(), arguments))
}

/// sqlx's [`Executor`](sqlx::Executor) for `$target`, whose `run(sql, arguments, limit)`
/// runs a query on the calling thread: the lane's connection and the point readers. The
/// work is done when the future or stream is returned; they only hand the results over.
macro_rules! direct_executor {
    ($c:lifetime, $target:ty) => {
        impl<$c> sqlx::Executor<$c> for $target {
            type Database = sqlx::any::Any;

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> futures_util::stream::BoxStream<
                'e,
                Result<sqlx::Either<sqlx::any::AnyQueryResult, sqlx::any::AnyRow>, sqlx::Error>,
            >
            where
                $c: 'e,
                E: 'q + sqlx::Execute<'q, sqlx::any::Any>,
            {
                let results = $crate::store::direct::parts(query)
                    .and_then(|(sql, arguments)| self.run(sql, arguments, None));
                Box::pin(futures_util::stream::iter($crate::store::direct::steps(
                    results,
                )))
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> futures_util::future::BoxFuture<
                'e,
                Result<Option<sqlx::any::AnyRow>, sqlx::Error>,
            >
            where
                $c: 'e,
                E: 'q + sqlx::Execute<'q, sqlx::any::Any>,
            {
                let result = $crate::store::direct::parts(query)
                    .and_then(|(sql, arguments)| self.run(sql, arguments, Some(1)))
                    .map(|(rows, _)| rows.into_iter().next());
                Box::pin(std::future::ready(result))
            }

            fn prepare_with<'e, 'q: 'e>(
                self,
                _sql: &'q str,
                _parameters: &'e [sqlx::any::AnyTypeInfo],
            ) -> futures_util::future::BoxFuture<
                'e,
                Result<sqlx::any::AnyStatement<'q>, sqlx::Error>,
            >
            where
                $c: 'e,
            {
                Box::pin(std::future::ready(Err($crate::store::direct::not_here(
                    "prepared statements",
                ))))
            }

            fn describe<'e, 'q: 'e>(
                self,
                _sql: &'q str,
            ) -> futures_util::future::BoxFuture<
                'e,
                Result<sqlx_core::describe::Describe<sqlx::any::Any>, sqlx::Error>,
            >
            where
                $c: 'e,
            {
                Box::pin(std::future::ready(Err($crate::store::direct::not_here(
                    "statement descriptions",
                ))))
            }
        }
    };
}
use direct_executor;

direct_executor!('c, &'c mut DirectSqlite);

/// The write lane's transaction on the direct connection. Dropped without a commit, it
/// rolls back, as sqlx's transactions do.
pub(crate) struct DirectTx {
    conn: tokio::sync::OwnedMutexGuard<DirectSqlite>,
    /// The writer pool's one connection, held as this process's turn to write.
    _turn: sqlx::pool::PoolConnection<Any>,
}

impl fmt::Debug for DirectTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectTx").finish_non_exhaustive()
    }
}

impl DirectTx {
    /// Begins a transaction that takes SQLite's write lock at once (`IMMEDIATE`), so that
    /// its first write cannot fail on a lock another process took since it began.
    pub(crate) fn begin(
        mut conn: tokio::sync::OwnedMutexGuard<DirectSqlite>,
        turn: sqlx::pool::PoolConnection<Any>,
    ) -> Result<Self, sqlx::Error> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(DirectTx { conn, _turn: turn })
    }

    /// The connection, for the transaction's statements.
    pub(crate) fn conn(&mut self) -> &mut DirectSqlite {
        &mut self.conn
    }

    /// Commits (one fsync under `synchronous = FULL`).
    pub(crate) fn commit(mut self) -> Result<(), sqlx::Error> {
        self.conn.execute_batch("COMMIT")
    }

    /// Rolls back everything.
    pub(crate) fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.conn.execute_batch("ROLLBACK")
    }
}

impl Drop for DirectTx {
    fn drop(&mut self) {
        // Not committed (or the commit failed and SQLite kept the transaction open): undo,
        // so the next batch starts clean. A failure here leaves nothing to do but report.
        if self.conn.in_transaction() {
            if let Err(err) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %err, "rolling back an abandoned SQLite write failed");
            }
        }
    }
}

/// What a direct connection does not offer: sqlx's prepared statements and descriptions
/// (nothing in the host asks them of a transaction or a point read).
pub(super) fn not_here(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("direct SQLite connections give no {what}"))
}

/// A statement's outcome as the steps of sqlx's `fetch_many`: its rows, then its result.
pub(super) fn steps(
    results: Result<(Vec<AnyRow>, u64), sqlx::Error>,
) -> Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> {
    match results {
        Ok((rows, changed)) => rows
            .into_iter()
            .map(|row| Ok(Either::Right(row)))
            .chain([Ok(Either::Left(AnyQueryResult {
                rows_affected: changed,
                last_insert_id: None,
            }))])
            .collect(),
        Err(err) => vec![Err(err)],
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;
    use crate::store::Backend;
    use crate::store::{Params, StoreError};

    /// A row of `p`: id, n, r, b.
    type Stored = (String, i64, Option<f64>, Option<Vec<u8>>);

    fn open() -> (DirectSqlite, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("posbridge-direct-{}", crate::store::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conn = DirectSqlite::open(
            &dir.join("d.db"),
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON",
            Duration::from_secs(1),
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE p (id TEXT PRIMARY KEY, n INTEGER NOT NULL, r REAL, b BLOB, t TEXT);
             CREATE TABLE c (p_id TEXT NOT NULL REFERENCES p (id))",
        )
        .unwrap();
        (conn, dir)
    }

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_wherever_they_appear() {
        let (mut conn, dir) = open();
        // $2 appears before $1: SQLite numbers them by first appearance, sqlx by name.
        let done = sqlx::query("INSERT INTO p (n, id, t) VALUES ($2, $1, $2 || '')")
            .bind("a")
            .bind(41i64)
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        let row = sqlx::query("SELECT id, n + 1 AS next, r, b, t FROM p WHERE id = $1")
            .bind("a")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("id").unwrap(), "a");
        assert_eq!(row.try_get::<i64, _>("next").unwrap(), 42);
        assert_eq!(row.try_get::<Option<f64>, _>("r").unwrap(), None);
        assert_eq!(row.try_get::<Option<Vec<u8>>, _>("b").unwrap(), None);
        assert_eq!(row.try_get::<String, _>("t").unwrap(), "41");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn anonymous_parameters_follow_the_text_and_values_keep_their_types() {
        let (mut conn, dir) = open();
        let mut p = Params::new(Backend::Sqlite);
        let sql = format!("INSERT INTO p (id, n, r, b) VALUES {}", p.rows(2, 4));
        sqlx::query(&sql)
            .bind("x")
            .bind(1i32)
            .bind(0.5f64)
            .bind(vec![0u8, 255])
            .bind("y")
            .bind(i64::MAX)
            .bind(None::<f64>)
            .bind(None::<Vec<u8>>)
            .execute(&mut conn)
            .await
            .unwrap();
        let rows: Vec<Stored> = sqlx::query_as("SELECT id, n, r, b FROM p ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("x".into(), 1, Some(0.5), Some(vec![0, 255])),
                ("y".into(), i64::MAX, None, None)
            ]
        );
        // fetch_optional stops at the first row and finds none where there is none.
        let none = sqlx::query("SELECT id FROM p WHERE id = 'z'")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        assert!(none.is_none());
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn constraint_failures_read_as_sqlx_reports_them() {
        let (mut conn, dir) = open();
        let insert = "INSERT INTO p (id, n) VALUES ($1, 1)";
        sqlx::query(insert)
            .bind("a")
            .execute(&mut conn)
            .await
            .unwrap();
        let duplicate = sqlx::query(insert).bind("a").execute(&mut conn).await;
        let err = StoreError::from(duplicate.unwrap_err());
        assert!(err.is_unique_violation(), "{err}");
        assert!(!err.is_unavailable());
        let orphan = sqlx::query("INSERT INTO c (p_id) VALUES ('nobody')")
            .execute(&mut conn)
            .await
            .unwrap_err();
        let sqlx::Error::Database(db) = orphan else {
            panic!("not a database error: {orphan}")
        };
        assert_eq!(db.kind(), ErrorKind::ForeignKeyViolation);
        assert_eq!(db.code().as_deref(), Some("787"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn several_statements_in_one_query_all_run_with_the_same_arguments() {
        let (mut conn, dir) = open();
        // A semicolon inside a literal and a comment does not end a statement.
        let rows = sqlx::query(
            "INSERT INTO p (id, n, t) VALUES ($1, 1, 'a;b'); -- one; two
             SELECT id, t FROM p WHERE id = $1;
             UPDATE p SET n = n + $2 WHERE id = $1;",
        )
        .bind("a")
        .bind(41i64)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].try_get::<String, _>("t").unwrap(), "a;b");
        // The single-row fetch still runs the statements after its row.
        let first = sqlx::query("SELECT n FROM p; UPDATE p SET n = n * 2")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        assert_eq!(first.unwrap().try_get::<i64, _>("n").unwrap(), 42);
        let n: i64 = sqlx::query_scalar("SELECT n FROM p")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 84);
        // Rows changed count writes only: the SELECT between adds nothing.
        let done = sqlx::query("UPDATE p SET n = 0; SELECT 1; SAVEPOINT s; RELEASE s")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        assert_eq!(split_statements("SELECT 1;;  ").len(), 1);
        assert_eq!(
            split_statements("SELECT 1; SELECT 2"),
            ["SELECT 1;", " SELECT 2"]
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_transaction_dropped_without_commit_rolls_back() {
        let (conn, dir) = open();
        let conn = Arc::new(tokio::sync::Mutex::new(conn));
        let url = format!("sqlite://{}?mode=rwc", dir.join("turn.db").display());
        sqlx::any::install_default_drivers();
        let turn_pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        {
            let mut tx = DirectTx::begin(
                conn.clone().lock_owned().await,
                turn_pool.acquire().await.unwrap(),
            )
            .unwrap();
            sqlx::query("INSERT INTO p (id, n) VALUES ('a', 1)")
                .execute(tx.conn())
                .await
                .unwrap();
        }
        let mut guard = conn.lock().await;
        assert!(!guard.in_transaction());
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM p")
            .fetch_one(&mut *guard)
            .await
            .unwrap();
        assert_eq!(count, 0);
        drop(guard);
        // The pool's one connection (the turn) went back when the transaction ended.
        let back = tokio::time::timeout(Duration::from_secs(10), turn_pool.acquire()).await;
        assert!(matches!(back, Ok(Ok(_))));
        std::fs::remove_dir_all(dir).ok();
    }
}
