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
//! implements sqlx's [`Executor`] for them, binding the same `$N` parameters and building
//! the same [`AnyRow`]s that sqlx's SQLite driver builds (values typed by what SQLite
//! stored, as sqlx's `AnyRow::map_from` does), and reporting errors with SQLite's extended
//! result code, as sqlx does, so that a unique violation or a busy file reads the same.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ToSql};
use sqlx::any::{
    Any, AnyArguments, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo, AnyTypeInfoKind,
    AnyValue,
};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Either, Execute, Executor};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::describe::Describe;
use sqlx_core::ext::ustr::UStr;

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

    /// Runs one statement with sqlx's arguments; returns its rows (at most `limit`) and the
    /// rows it changed.
    fn run(
        &mut self,
        sql: &str,
        arguments: Option<AnyArguments<'_>>,
        limit: Option<usize>,
    ) -> Result<(Vec<AnyRow>, u64), sqlx::Error> {
        let mut statement = self.conn.prepare_cached(sql).map_err(into_sqlx)?;
        let values = arguments.map(|a| a.values.0).unwrap_or_default();
        let mut next_unnamed = 0;
        for index in 1..=statement.parameter_count() {
            // `$N` (and `?N`) name the N-th argument wherever it appears, as sqlx binds
            // them; a bare `?` takes the next one.
            let position = match statement.parameter_name(index) {
                Some(name) => name[1..].parse::<usize>().map_err(|_| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter {name:?}"))
                })?,
                None => {
                    next_unnamed += 1;
                    next_unnamed
                }
            };
            // As sqlx's driver does: a parameter past the arguments stays NULL.
            if let Some(value) = position.checked_sub(1).and_then(|i| values.get(i)) {
                statement
                    .raw_bind_parameter(index, Bound(value))
                    .map_err(into_sqlx)?;
            }
        }
        let names: Vec<UStr> = statement.column_names().into_iter().map(UStr::new).collect();
        let lookup: Arc<sqlx_core::HashMap<UStr, usize>> =
            Arc::new(names.iter().cloned().zip(0..).collect());
        let width = names.len();
        let mut rows = Vec::new();
        let mut raw = statement.raw_query();
        while limit.is_none_or(|limit| rows.len() < limit) {
            let Some(row) = raw.next().map_err(into_sqlx)? else {
                break;
            };
            let mut columns = Vec::with_capacity(width);
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let value = row.get_ref(i).map_err(into_sqlx)?;
                let kind = any_value(value)?;
                columns.push(AnyColumn {
                    ordinal: i,
                    name: names[i].clone(),
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
        }
        drop(raw);
        // Stepped to the end (or stopped early, as sqlx's `fetch_optional` does); the
        // statement is reset when it goes back to the cache.
        let changed = self.conn.changes();
        Ok((rows, changed))
    }
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
        rusqlite::Error::MultipleStatement => sqlx::Error::Protocol(
            "the SQLite write lane runs one statement per query; split it".into(),
        ),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Takes the query's SQL and arguments as sqlx would send them.
fn parts<'q, E: Execute<'q, Any>>(
    mut query: E,
) -> Result<(&'q str, Option<AnyArguments<'q>>), sqlx::Error> {
    let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
    Ok((query.sql(), arguments))
}

impl<'c> Executor<'c> for &'c mut DirectSqlite {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        // Run now, on the calling thread; the stream only hands the results over.
        let results = parts(query).and_then(|(sql, arguments)| self.run(sql, arguments, None));
        let steps: Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> = match results {
            Ok((rows, changed)) => rows
                .into_iter()
                .map(|row| Ok(Either::Right(row)))
                .chain([Ok(Either::Left(AnyQueryResult {
                    rows_affected: changed,
                    last_insert_id: None,
                }))])
                .collect(),
            Err(err) => vec![Err(err)],
        };
        Box::pin(futures_util::stream::iter(steps))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let result = parts(query)
            .and_then(|(sql, arguments)| self.run(sql, arguments, Some(1)))
            .map(|(rows, _)| rows.into_iter().next());
        Box::pin(std::future::ready(result))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        _sql: &'q str,
        _parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
            "the SQLite write lane does not hand out prepared statements".into(),
        ))))
    }

    fn describe<'e, 'q: 'e>(
        self,
        _sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
            "the SQLite write lane does not describe statements".into(),
        ))))
    }
}

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
