//! Point reads on direct SQLite connections, run on the calling thread.

use std::fmt;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyRow};

use super::DirectSqlite;

/// Direct connections for point reads (a balance by its key): taken from an idle list,
/// run on the calling thread, and given back, with no hand-off to a worker thread. A read
/// by key takes microseconds, less than the switch to sqlx's worker and back; reads that
/// scan stay on the sqlx pool, whose worker threads keep them off the async runtime.
/// Under WAL with PASSIVE checkpoints a reader never waits for the writer; only a lock
/// taken outside this process (a RESTART checkpoint, recovery after a crash) would make
/// SQLite's busy handler wait, on the calling thread, up to the busy timeout.
pub(crate) struct DirectReaders {
    path: std::path::PathBuf,
    pragmas: String,
    busy_timeout: Duration,
    /// Connections opened and not in use; at most `keep` stay.
    idle: std::sync::Mutex<Vec<DirectSqlite>>,
    keep: usize,
}

impl fmt::Debug for DirectReaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectReaders")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DirectReaders {
    /// Readers of the file at `path`; connections open on first use, and up to `keep`
    /// (one per thread that reads at once) stay open.
    pub(crate) fn new(
        path: std::path::PathBuf,
        pragmas: String,
        busy_timeout: Duration,
        keep: usize,
    ) -> Self {
        DirectReaders {
            path,
            pragmas,
            busy_timeout,
            idle: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    fn take(&self) -> Result<DirectSqlite, sqlx::Error> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(conn) => Ok(conn),
            None => DirectSqlite::open(&self.path, &self.pragmas, self.busy_timeout),
        }
    }

    fn give_back(&self, conn: DirectSqlite) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(conn);
            }
        }
    }

    /// Runs one read on a connection of the list.
    fn run(
        &self,
        sql: &str,
        arguments: Option<AnyArguments<'_>>,
        limit: Option<usize>,
    ) -> Result<(Vec<AnyRow>, u64), sqlx::Error> {
        let mut conn = self.take()?;
        let result = conn.run(sql, arguments, limit);
        self.give_back(conn);
        result
    }
}

super::direct_executor!('c, &'c DirectReaders);
