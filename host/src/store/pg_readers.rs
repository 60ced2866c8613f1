//! Point reads on PostgreSQL over connections of their own, one round trip each, many
//! concurrent reads sharing one.
//!
//! Size: about 700 lines, 170 of them tests: the connections, the retry on a dead one and
//! the batches that share them are one mechanism, and the batch statement's rewrite is
//! tested here beside it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use sqlx::any::{
    Any, AnyArguments, AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo,
};
use sqlx::{AnyConnection, Connection, Either, Execute, Executor, Row};
use sqlx_core::any::{AnyArgumentBuffer, AnyValueKind};
use sqlx_core::describe::Describe;
use tokio::sync::oneshot;

use super::sqlx_unavailable;

/// PostgreSQL connections for point reads (a balance by its key), kept outside sqlx's pool,
/// and the batches that let many concurrent reads share one round trip.
///
/// Through the pool a read cost three round trips to the server: the ping sqlx sends when
/// a connection is acquired, the query, and the ping it always sends when the connection
/// is released (sqlx 0.8 `PoolConnection::return_to_pool`). Here a read is the query
/// alone, and what the pings were for is kept another way:
/// - a connection goes back to the idle list only after its query completed; a read
///   cancelled half-way drops (closes) its connection instead of leaving it mid-protocol,
///   and a queued read whose caller gives up leaves its batch runner to finish the
///   statement, its answer dropped;
/// - a read that finds its idle connection dead (the server restarted, an idle session
///   was killed) runs once more on a new connection: a point read changes nothing, so
///   running it again is safe, and the client sees no error for a connection nobody used.
///
/// Even one round trip per read left the server's CPU per balance read at three times a
/// request that reads nothing (0.070 of 0.093 s per 1,000 on two cores, most of it the
/// kernel waking PostgreSQL and then this process for every read: docs/performance.md).
/// So reads queue, and a *batch runner* holding one of the connections takes the oldest
/// waiting read with up to [`MAX_BATCH`] - 1 others of the same statement and runs them
/// as one (see [`batched_sql`]), answering each with its own row. Batches form only while
/// reads wait for a connection; a lone read runs as itself.
///
/// At most `max` connections are open at once; a read waits up to the acquire timeout for
/// its answer, then fails as the pool does (`PoolTimedOut`, answered 503
/// `database_unavailable`).
pub(crate) struct PgPointReaders {
    shared: Arc<Shared>,
}

/// What the readers and their batch runners share.
struct Shared {
    connect: AnyConnectOptions,
    /// Connections opened and not in use.
    idle: std::sync::Mutex<Vec<AnyConnection>>,
    /// One permit per connection that may be open; closed by [`PgPointReaders::close`].
    permits: Arc<tokio::sync::Semaphore>,
    /// Point reads waiting for a batch, oldest first.
    waiting: std::sync::Mutex<VecDeque<Waiting>>,
    acquire_timeout: Duration,
}

impl fmt::Debug for PgPointReaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPointReaders")
            .field("available", &self.shared.permits.available_permits())
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
            arguments: self
                .arguments
                .as_ref()
                .map(|arguments| arguments_of(arguments.values.0.clone())),
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
            shared: Arc::new(Shared {
                connect,
                idle: std::sync::Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
                waiting: std::sync::Mutex::new(VecDeque::new()),
                acquire_timeout,
            }),
        }
    }

    /// Runs `read` as `F` on a connection of its own (see the type's docs for the retry).
    async fn run<'q, F: Fetch>(&self, read: Read<'q>) -> Result<F::Output, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.shared.acquire_timeout;
        let _permit = tokio::time::timeout_at(deadline, self.shared.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        self.shared.on_a_connection::<F>(read, deadline).await
    }

    /// Queues a point read for the next batch and waits for its row. A batch runner is
    /// started when a connection is free; otherwise one that is running takes the read.
    async fn read_batched(&self, read: Waiting) -> Result<Option<AnyRow>, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let read = Waiting {
            reply: Some(reply),
            ..read
        };
        if let Ok(mut waiting) = self.shared.waiting.lock() {
            waiting.push_back(read);
        }
        match self.shared.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(self.shared.clone().run_batches(permit));
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(sqlx::Error::PoolClosed),
            // Every connection is busy: a runner takes this read when it looks again.
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        match tokio::time::timeout(self.shared.acquire_timeout, answer).await {
            Ok(Ok(result)) => result,
            // The runner was dropped with the runtime (the process is ending).
            Ok(Err(_)) => Err(sqlx::Error::PoolClosed),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Refuses further reads and closes the idle connections (a read in progress closes
    /// its own when it ends).
    pub(crate) async fn close(&self) {
        self.shared.permits.close();
        let idle = match self.shared.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for conn in idle {
            // The server ends the session either way; a failed goodbye changes nothing.
            let _ = conn.close().await;
        }
    }
}

impl Shared {
    /// Runs `read` as `F` on an idle connection, or a new one; a read whose idle
    /// connection turns out dead runs once more on a new one. The connection goes back to
    /// the idle list when the read completed on it.
    async fn on_a_connection<'q, F: Fetch>(
        &self,
        read: Read<'q>,
        deadline: tokio::time::Instant,
    ) -> Result<F::Output, sqlx::Error> {
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

    /// Runs batches of waiting reads while there are any, on the connection `permit`
    /// stands for. Before it ends it looks once more, after giving the permit back, so a
    /// read queued meanwhile is never left without a runner: either this one takes the
    /// permit again or the read's own caller started another.
    async fn run_batches(self: Arc<Self>, mut permit: tokio::sync::OwnedSemaphorePermit) {
        loop {
            while let Some(batch) = self.next_batch() {
                self.run_batch(batch).await;
            }
            drop(permit);
            let queued = self.waiting.lock().map(|w| !w.is_empty()).unwrap_or(false);
            if !queued {
                return;
            }
            match self.permits.clone().try_acquire_owned() {
                Ok(again) => permit = again,
                Err(_) => return,
            }
        }
    }

    /// The oldest waiting read and up to [`MAX_BATCH`] - 1 more of the same statement,
    /// leaving the others queued in order; reads whose caller gave up are dropped.
    fn next_batch(&self) -> Option<Vec<Waiting>> {
        let mut waiting = self.waiting.lock().ok()?;
        waiting.retain(|read| read.reply.as_ref().is_some_and(|r| !r.is_closed()));
        let first = waiting.pop_front()?;
        let mut batch = vec![first];
        let mut index = 0;
        while index < waiting.len() && batch.len() < MAX_BATCH {
            if waiting[index].sql == batch[0].sql
                && waiting[index].arguments.len() == batch[0].arguments.len()
            {
                if let Some(read) = waiting.remove(index) {
                    batch.push(read);
                }
            } else {
                index += 1;
            }
        }
        Some(batch)
    }

    /// Runs `batch` as one statement (a lone read as itself) and answers each read with
    /// its own first row.
    async fn run_batch(&self, mut batch: Vec<Waiting>) {
        metrics::histogram!("posbridge_point_read_batch_reads").record(batch.len() as f64);
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let statement = match batch.len() {
            1 => None,
            n => batched_sql(
                &batch[0].sql,
                batch[0].arguments.len(),
                n.next_power_of_two(),
            ),
        };
        let Some(statement) = statement else {
            // Alone, or a statement that cannot be batched: each runs as itself.
            for mut read in batch {
                let result = self
                    .on_a_connection::<FetchOptional>(read.take_read(), deadline)
                    .await;
                read.answer(result);
            }
            return;
        };
        let rows = padded_arguments(&batch);
        let read = Read {
            sql: &statement,
            arguments: Some(rows),
            persistent: true,
        };
        match self.on_a_connection::<FetchAll>(read, deadline).await {
            Ok(steps) => {
                let mut rows: Vec<Option<AnyRow>> = vec![None; batch.len()];
                for row in steps.into_iter().filter_map(|step| step.right()) {
                    let Some(last) = row.len().checked_sub(1) else {
                        continue;
                    };
                    let Ok(ordinal) = row.try_get::<i64, _>(last) else {
                        continue;
                    };
                    if let Some(slot) = usize::try_from(ordinal).ok().and_then(|i| rows.get_mut(i))
                    {
                        if slot.is_none() {
                            *slot = Some(row);
                        }
                    }
                }
                for (read, row) in batch.iter_mut().zip(rows) {
                    read.answer(Ok(row));
                }
            }
            Err(err) => {
                for read in &mut batch {
                    read.answer(Err(shared_error(&err)));
                }
            }
        }
    }
}

/// Reads one batch statement holds at most: past a few dozen a batch is one round trip
/// already amortised, and PostgreSQL's plan for it stays a nested loop of index lookups.
const MAX_BATCH: usize = 64;

/// A point read waiting for a batch: its statement, its arguments (owned, as a batch
/// runner outlives the caller's borrows) and where its answer goes.
struct Waiting {
    sql: String,
    arguments: Vec<AnyValueKind<'static>>,
    reply: Option<oneshot::Sender<Result<Option<AnyRow>, sqlx::Error>>>,
}

impl Waiting {
    /// The read, if its arguments are all of the kinds a batch can carry and it may be
    /// prepared and kept (batch statements are; a read asking not to be runs as itself).
    fn of(read: &Read<'_>) -> Option<Self> {
        if !read.persistent {
            return None;
        }
        let arguments = match &read.arguments {
            Some(arguments) => arguments
                .values
                .0
                .iter()
                .map(owned)
                .collect::<Option<_>>()?,
            None => Vec::new(),
        };
        Some(Waiting {
            sql: read.sql.to_owned(),
            arguments,
            reply: None,
        })
    }

    /// The read as one statement of its own, taking its arguments (a read runs once).
    fn take_read(&mut self) -> Read<'_> {
        Read {
            sql: &self.sql,
            arguments: Some(arguments_of(std::mem::take(&mut self.arguments))),
            persistent: true,
        }
    }

    fn answer(&mut self, result: Result<Option<AnyRow>, sqlx::Error>) {
        if let Some(reply) = self.reply.take() {
            // A caller that gave up no longer listens; its answer is dropped.
            let _ = reply.send(result);
        }
    }
}

/// `value` with nothing borrowed, for the kinds point reads bind.
fn owned(value: &AnyValueKind<'_>) -> Option<AnyValueKind<'static>> {
    Some(match value {
        AnyValueKind::Null(kind) => AnyValueKind::Null(*kind),
        AnyValueKind::Bool(v) => AnyValueKind::Bool(*v),
        AnyValueKind::SmallInt(v) => AnyValueKind::SmallInt(*v),
        AnyValueKind::Integer(v) => AnyValueKind::Integer(*v),
        AnyValueKind::BigInt(v) => AnyValueKind::BigInt(*v),
        AnyValueKind::Real(v) => AnyValueKind::Real(*v),
        AnyValueKind::Double(v) => AnyValueKind::Double(*v),
        AnyValueKind::Text(v) => AnyValueKind::Text(Cow::Owned(v.to_string())),
        AnyValueKind::Blob(v) => AnyValueKind::Blob(Cow::Owned(v.to_vec())),
        _ => return None,
    })
}

/// The name of the column a batch statement adds, last, to tell whose row a row is.
const ORDINAL_COLUMN: &str = "pb_point_read";

/// `sql`, a single statement whose only `$n` are its `params` parameters, as one statement
/// for `rows` reads: each read's parameters are a row of a `VALUES` list, numbered, and
/// `sql` runs once per row (`LATERAL`), its placeholders now that row's columns. Every
/// row of the result is `sql`'s row with the read's number after it. `None` when `sql`
/// holds anything that could make a textual rewrite wrong (a quote, a comment, a second
/// statement) or no parameter: such reads run one by one.
fn batched_sql(sql: &str, params: usize, rows: usize) -> Option<String> {
    if params == 0 || ["'", "\"", ";", "--", "/*"].iter().any(|s| sql.contains(s)) {
        return None;
    }
    let mut inner = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            inner.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        let n: usize = digits.parse().ok()?;
        if n == 0 || n > params {
            return None;
        }
        inner.push_str(&format!("b.p{n}"));
    }
    let mut values = Vec::with_capacity(rows);
    let mut next = 0;
    for _ in 0..rows {
        let row: Vec<String> = (0..=params)
            .map(|_| {
                next += 1;
                format!("${next}")
            })
            .collect();
        values.push(format!("({})", row.join(", ")));
    }
    let columns: Vec<String> = (1..=params).map(|n| format!("p{n}")).collect();
    Some(format!(
        "SELECT r.*, b.{ORDINAL_COLUMN} FROM (VALUES {}) AS b({ORDINAL_COLUMN}, {}) \
         CROSS JOIN LATERAL ({inner}) AS r",
        values.join(", "),
        columns.join(", ")
    ))
}

/// The batch's arguments, a row per read (its number, then its parameters), padded to
/// the next power of two with copies of the first read numbered -1, whose rows nobody
/// takes: a handful of statement shapes per query stay prepared on each connection.
fn padded_arguments(batch: &[Waiting]) -> AnyArguments<'static> {
    let rows = batch.len().next_power_of_two();
    let mut values = Vec::with_capacity(rows * (batch[0].arguments.len() + 1));
    for row in 0..rows {
        let (ordinal, read) = match batch.get(row) {
            Some(read) => (row as i64, read),
            None => (-1, &batch[0]),
        };
        values.push(AnyValueKind::BigInt(ordinal));
        values.extend(read.arguments.iter().cloned());
    }
    arguments_of(values)
}

/// sqlx's arguments holding `values` (its buffer has no constructor of its own).
fn arguments_of<'q>(values: Vec<AnyValueKind<'q>>) -> AnyArguments<'q> {
    AnyArguments {
        values: AnyArgumentBuffer(values),
    }
}

/// What each read of a failed batch is told: the database being out of reach stays that
/// (a 503 for each), anything else is the batch's failure, described.
fn shared_error(err: &sqlx::Error) -> sqlx::Error {
    if matches!(err, sqlx::Error::PoolTimedOut) {
        sqlx::Error::PoolTimedOut
    } else if sqlx_unavailable(err) {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            err.to_string(),
        ))
    } else {
        sqlx::Error::Protocol(format!("a batch of point reads failed: {err}"))
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
        match Waiting::of(&read) {
            Some(waiting) => async move { self.read_batched(waiting).await }.boxed(),
            None => async move { self.run::<FetchOptional>(read).await }.boxed(),
        }
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn a_batch_statement_runs_the_read_once_per_row_of_parameters() {
        let sql = batched_sql(
            "SELECT balance FROM gift_cards WHERE tenant_id = $1 AND code = $2",
            2,
            2,
        )
        .expect("batchable");
        assert_eq!(
            sql,
            "SELECT r.*, b.pb_point_read FROM (VALUES ($1, $2, $3), ($4, $5, $6)) \
             AS b(pb_point_read, p1, p2) CROSS JOIN LATERAL \
             (SELECT balance FROM gift_cards WHERE tenant_id = b.p1 AND code = b.p2) AS r"
        );
        // Two-digit placeholders are one parameter, not `$1` followed by a digit.
        let wide = batched_sql("SELECT $10, $1", 10, 1).expect("batchable");
        assert!(wide.contains("(SELECT b.p10, b.p1)"), "{wide}");
    }

    #[test]
    fn statements_a_textual_rewrite_could_get_wrong_are_not_batched() {
        for sql in [
            "SELECT x FROM t WHERE a = $1 AND b = 'x$2'",
            "SELECT x FROM t WHERE \"$1\" = $1",
            "SELECT x FROM t WHERE a = $1; SELECT 1",
            "SELECT x FROM t WHERE a = $1 -- $2",
            "SELECT x FROM t WHERE a = $1 /* $2 */",
            "SELECT x FROM t WHERE a = $3",
            "SELECT x FROM t WHERE a = $0",
            "SELECT x FROM t WHERE a = $",
        ] {
            assert_eq!(batched_sql(sql, 2, 4), None, "{sql}");
        }
        assert_eq!(batched_sql("SELECT x FROM t", 0, 4), None);
    }

    fn waiting(code: &str) -> Waiting {
        Waiting {
            sql: "SELECT balance FROM gift_cards WHERE tenant_id = $1 AND code = $2".to_owned(),
            arguments: vec![
                AnyValueKind::Text(Cow::Owned("t1".to_owned())),
                AnyValueKind::Text(Cow::Owned(code.to_owned())),
            ],
            reply: None,
        }
    }

    #[test]
    fn a_batch_is_padded_to_a_power_of_two_with_rows_nobody_takes() {
        let batch = [waiting("A"), waiting("B"), waiting("C")];
        let arguments = padded_arguments(&batch);
        let ordinals: Vec<i64> = arguments
            .values
            .0
            .chunks(3)
            .map(|row| match row[0] {
                AnyValueKind::BigInt(n) => n,
                ref other => panic!("not an ordinal: {other:?}"),
            })
            .collect();
        assert_eq!(ordinals, [0, 1, 2, -1]);
        let codes: Vec<String> = arguments
            .values
            .0
            .chunks(3)
            .map(|row| match &row[2] {
                AnyValueKind::Text(code) => code.to_string(),
                other => panic!("not a code: {other:?}"),
            })
            .collect();
        assert_eq!(codes, ["A", "B", "C", "A"]);
    }

    #[tokio::test]
    async fn a_batch_takes_reads_of_its_statement_in_order_and_skips_abandoned_ones() {
        sqlx::any::install_default_drivers();
        let readers = PgPointReaders::new(
            AnyConnectOptions::from_str("postgres://nobody@127.0.0.1:1/none").expect("url"),
            1,
            Duration::from_secs(1),
        );
        let other = Waiting {
            sql: "SELECT 1 WHERE $1 = $1".to_owned(),
            ..waiting("X")
        };
        let mut answers = Vec::new();
        {
            let mut queue = readers.shared.waiting.lock().expect("queue");
            for read in [waiting("A"), other, waiting("B"), waiting("C")] {
                let (reply, answer) = oneshot::channel();
                queue.push_back(Waiting {
                    reply: Some(reply),
                    ..read
                });
                answers.push(answer);
            }
        }
        // The caller of "B" gave up.
        drop(answers.remove(2));
        let batch = readers.shared.next_batch().expect("a batch");
        let codes: Vec<String> = batch
            .iter()
            .map(|read| match &read.arguments[1] {
                AnyValueKind::Text(code) => code.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(codes, ["A", "C"]);
        let rest = readers.shared.next_batch().expect("the other statement");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].sql, "SELECT 1 WHERE $1 = $1");
        assert!(readers.shared.next_batch().is_none());
    }
}
