//! The connection the domain's statements run on, whichever way it reaches the database,
//! and where a point read runs.

use std::fmt;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Either, Execute, Executor};
use sqlx_core::describe::Describe;

use super::direct::{DirectReaders, DirectTx};
use super::pg_readers::PgPointReaders;
use super::Db;

/// A transaction, or a pool's connection for several reads in a row. Domain code runs its
/// statements on `&mut Conn` like on any sqlx connection (`.execute(&mut tx)`); which
/// driver carries them is the store's business.
pub(crate) enum Conn {
    /// A connection of a pool outside any transaction: each statement commits by itself.
    Borrowed(sqlx::pool::PoolConnection<Db>),
    /// A transaction of the writer pool, through sqlx's driver (PostgreSQL, and SQLite
    /// outside the write lane).
    Pooled(sqlx::Transaction<'static, Db>),
    /// SQLite's write lane: statements run on the calling thread (see `store/direct.rs`).
    Direct(DirectTx),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conn::Borrowed(_) => f.write_str("Conn::Borrowed"),
            Conn::Pooled(_) => f.write_str("Conn::Pooled"),
            Conn::Direct(tx) => tx.fmt(f),
        }
    }
}

impl Conn {
    /// Commits the transaction (a borrowed connection has nothing to commit).
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Borrowed(_) => Ok(()),
            Conn::Pooled(tx) => tx.commit().await,
            Conn::Direct(tx) => tx.commit(),
        }
    }

    /// Rolls the transaction back (a borrowed connection has nothing to undo).
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Borrowed(_) => Ok(()),
            Conn::Pooled(tx) => tx.rollback().await,
            Conn::Direct(tx) => tx.rollback(),
        }
    }
}

/// sqlx's [`Executor`] for `$target`, an enum each of whose variants holds an executor:
/// every method runs on the variant's, which `$variant => $executor` names.
macro_rules! forward_executor {
    ($target:ty { $($variant:pat => $executor:expr),+ $(,)? }) => {
        impl<'c> Executor<'c> for $target {
            type Database = Any;

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Any>,
            {
                match self {
                    $($variant => $executor.fetch_many(query),)+
                }
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
            where
                'c: 'e,
                E: 'q + Execute<'q, Any>,
            {
                match self {
                    $($variant => $executor.fetch_optional(query),)+
                }
            }

            fn prepare_with<'e, 'q: 'e>(
                self,
                sql: &'q str,
                parameters: &'e [AnyTypeInfo],
            ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
            where
                'c: 'e,
            {
                match self {
                    $($variant => $executor.prepare_with(sql, parameters),)+
                }
            }

            fn describe<'e, 'q: 'e>(
                self,
                sql: &'q str,
            ) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
            where
                'c: 'e,
            {
                match self {
                    $($variant => $executor.describe(sql),)+
                }
            }
        }
    };
}

forward_executor!(&'c mut Conn {
    Conn::Borrowed(conn) => (&mut **conn),
    Conn::Pooled(tx) => (&mut **tx),
    Conn::Direct(tx) => tx.conn(),
});

/// Where a point read (one row by its key) runs: on SQLite a direct connection on the
/// calling thread (see [`DirectReaders`]), on PostgreSQL a connection of the point readers
/// (see [`PgPointReaders`]), on an in-memory SQLite database the pool.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PointReader<'a> {
    /// The reader pool.
    Pool(&'a sqlx::AnyPool),
    /// SQLite's direct readers.
    Direct(&'a DirectReaders),
    /// PostgreSQL's point readers.
    Postgres(&'a PgPointReaders),
}

forward_executor!(PointReader<'c> {
    PointReader::Pool(pool) => pool,
    PointReader::Direct(readers) => readers,
    PointReader::Postgres(readers) => readers,
});
