//! Point reads on PostgreSQL over connections of their own, one round trip each.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use sqlx::any::{
    Any, AnyArguments, AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo,
};
use sqlx::{AnyConnection, Connection, Either, Execute, Executor};
use sqlx_core::any::AnyArgumentBuffer;
use sqlx_core::describe::Describe;

use super::sqlx_unavailable;

/// PostgreSQL connections for point reads (a balance by its key), kept outside sqlx's pool.
///
/// Through the pool a read costs three round trips to the server: the ping sqlx sends when
/// a connection is acquired, the query, and the ping it always sends when the connection
/// is released (sqlx 0.8 `PoolConnection::return_to_pool`). Under a balance-read load the
/// server process was CPU-bound with a third of its time in the kernel's socket send and
/// wake-up paths (perf, docs/performance.md), so here a read is the query alone. What the
/// pings were for is kept another way:
/// - a connection goes back to the idle list only after its query completed; a read
///   cancelled half-way drops (closes) its connection instead of leaving it mid-protocol;
/// - a read that finds its idle connection dead (the server restarted, an idle session
///   was killed) runs once more on a new connection: a point read changes nothing, so
///   running it again is safe, and the client sees no error for a connection nobody used.
///
/// At most `max` connections are open at once; a read waits up to the acquire timeout for
/// one, then fails as the pool does (`PoolTimedOut`, answered 503 `database_unavailable`).
pub(crate) struct PgPointReaders {
    connect: AnyConnectOptions,
    /// Connections opened and not in use.
    idle: std::sync::Mutex<Vec<AnyConnection>>,
    /// One permit per connection that may be open; closed by [`PgPointReaders::close`].
    permits: tokio::sync::Semaphore,
    acquire_timeout: Duration,
}

impl fmt::Debug for PgPointReaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPointReaders")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// One point read: its SQL and arguments, which a retry runs again.
struct Read<'q> {
    sql: &'q str,
    arguments: Option<AnyArguments<'q>>,
    persistent: bool,
}

impl<'q> Read<'q> {
    fn of<E: Execute<'q, Any>>(mut query: E) -> Result<Self, sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        Ok(Read {
            sql: query.sql(),
            arguments,
            persistent: query.persistent(),
        })
    }

    /// The same read for another attempt (sqlx's arguments are not `Clone`).
    fn again(&self) -> Self {
        Read {
            sql: self.sql,
            arguments: self.arguments.as_ref().map(|arguments| AnyArguments {
                values: AnyArgumentBuffer(arguments.values.0.clone()),
            }),
            persistent: self.persistent,
        }
    }
}

impl<'q> Execute<'q, Any> for Read<'q> {
    fn sql(&self) -> &'q str {
        self.sql
    }

    fn statement(&self) -> Option<&AnyStatement<'q>> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<AnyArguments<'q>>, sqlx::error::BoxDynError> {
        Ok(self.arguments.take())
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

/// How a read's results are fetched: one row, or every step of sqlx's `fetch_many`.
trait Fetch {
    type Output: Send;
    fn fetch<'c, 'q: 'c>(
        conn: &'c mut AnyConnection,
        read: Read<'q>,
    ) -> BoxFuture<'c, Result<Self::Output, sqlx::Error>>;
}

/// The first row, if any.
struct FetchOptional;

impl Fetch for FetchOptional {
    type Output = Option<AnyRow>;
    fn fetch<'c, 'q: 'c>(
        conn: &'c mut AnyConnection,
        read: Read<'q>,
    ) -> BoxFuture<'c, Result<Self::Output, sqlx::Error>> {
        conn.fetch_optional(read)
    }
}

/// Every row and the statement's result, collected before any is handed over so that a
/// retry never repeats a step the caller already saw.
struct FetchAll;

impl Fetch for FetchAll {
    type Output = Vec<Either<AnyQueryResult, AnyRow>>;
    fn fetch<'c, 'q: 'c>(
        conn: &'c mut AnyConnection,
        read: Read<'q>,
    ) -> BoxFuture<'c, Result<Self::Output, sqlx::Error>> {
        conn.fetch_many(read).try_collect().boxed()
    }
}

impl PgPointReaders {
    /// Readers connecting with `connect`, at most `max` connections (at least one), each
    /// opened on first need and kept open for the next read.
    pub(crate) fn new(connect: AnyConnectOptions, max: usize, acquire_timeout: Duration) -> Self {
        PgPointReaders {
            connect,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(max.max(1)),
            acquire_timeout,
        }
    }

    /// Runs `read` as `F` on a connection of the list (see the type's docs for the retry),
    /// giving the connection back when the read completed on it.
    async fn run<'q, F: Fetch>(&self, read: Read<'q>) -> Result<F::Output, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        if let Some(mut conn) = self.take_idle() {
            match F::fetch(&mut conn, read.again()).await {
                Err(err) if sqlx_unavailable(&err) => {
                    tracing::debug!(%err, "point reader: idle connection lost, reading on a new one");
                }
                result => {
                    self.give_back(conn, &result);
                    return result;
                }
            }
        }
        let connect = AnyConnection::connect_with(&self.connect);
        let mut conn = tokio::time::timeout_at(deadline, connect)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let result = F::fetch(&mut conn, read).await;
        self.give_back(conn, &result);
        result
    }

    fn take_idle(&self) -> Option<AnyConnection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Keeps `conn` for the next read unless its read failed in a way that may have left
    /// it unusable (a statement the server refused leaves it ready for the next).
    fn give_back<T>(&self, conn: AnyConnection, result: &Result<T, sqlx::Error>) {
        let reusable = match result {
            Ok(_) => true,
            Err(sqlx::Error::Database(_)) => !matches!(result, Err(err) if sqlx_unavailable(err)),
            Err(_) => false,
        };
        if reusable && !self.permits.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(conn);
            }
        }
    }

    /// Refuses further reads and closes the idle connections (a read in progress closes
    /// its own when it ends).
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for conn in idle {
            // The server ends the session either way; a failed goodbye changes nothing.
            let _ = conn.close().await;
        }
    }
}

impl<'c> Executor<'c> for &'c PgPointReaders {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let read = match Read::of(query) {
            Ok(read) => read,
            Err(err) => return futures_util::stream::once(async { Err(err) }).boxed(),
        };
        async move { self.run::<FetchAll>(read).await }
            .map(|steps| match steps {
                Ok(steps) => futures_util::stream::iter(steps.into_iter().map(Ok)).boxed(),
                Err(err) => futures_util::stream::once(async { Err(err) }).boxed(),
            })
            .flatten_stream()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let read = match Read::of(query) {
            Ok(read) => read,
            Err(err) => return std::future::ready(Err(err)).boxed(),
        };
        async move { self.run::<FetchOptional>(read).await }.boxed()
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
            "the PostgreSQL point readers give no prepared statements".to_owned(),
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
            "the PostgreSQL point readers give no statement descriptions".to_owned(),
        ))))
    }
}
