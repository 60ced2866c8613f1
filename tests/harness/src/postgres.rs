//! Fresh PostgreSQL databases for tests: one `pbtest_<random>` database per server.

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::Connection;

const DEFAULT_ADMIN_URL: &str = "postgres://posbridge:posbridge@127.0.0.1:5432/postgres";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin URL tests connect to (`POSBRIDGE_TEST_POSTGRES_URL`, or the local default).
pub fn postgres_admin_url() -> String {
    std::env::var("POSBRIDGE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

fn how_to_start() -> String {
    format!(
        "PostgreSQL is not reachable at {url} (set POSBRIDGE_TEST_POSTGRES_URL to another admin URL).\n\
         Start a local server with:\n  \
         pg_ctlcluster 15 main start\n  \
         su postgres -c \"psql -c \\\"CREATE ROLE posbridge LOGIN SUPERUSER PASSWORD 'posbridge'\\\"\"\n\
         or set POSBRIDGE_TEST_POSTGRES=skip to skip the PostgreSQL variants of the tests.",
        url = postgres_admin_url()
    )
}

async fn connect_admin() -> Result<PgConnection, String> {
    connect_to(&postgres_admin_url()).await
}

async fn connect_to(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Whether the PostgreSQL variant of a test should run.
///
/// Returns `true` when the admin URL answers; `false` (with a note on stderr) when it does
/// not and `POSBRIDGE_TEST_POSTGRES=skip`; panics with instructions otherwise, so a missing
/// server never passes silently.
pub async fn postgres_available() -> bool {
    let skip = std::env::var("POSBRIDGE_TEST_POSTGRES").is_ok_and(|v| v.trim() == "skip");
    match connect_admin().await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(e) if skip => {
            eprintln!("SKIPPED (POSBRIDGE_TEST_POSTGRES=skip): PostgreSQL unreachable: {e}");
            false
        }
        Err(e) => panic!("{}\n(error: {e})", how_to_start()),
    }
}

/// A database created for one test server; dropped (best effort) with [`PgDatabase::drop_now`].
#[derive(Debug)]
pub(crate) struct PgDatabase {
    pub(crate) name: String,
    pub(crate) url: String,
    admin_url: String,
}

impl PgDatabase {
    /// Creates `pbtest_<random>` and returns it with its URL.
    pub(crate) async fn create() -> PgDatabase {
        PgDatabase::create_on(&postgres_admin_url()).await
    }

    /// Creates `pbtest_<random>` on the server of `admin_url` (e.g. a
    /// [`crate::PgCluster`]).
    pub(crate) async fn create_on(admin_url: &str) -> PgDatabase {
        let mut conn = connect_to(admin_url)
            .await
            .unwrap_or_else(|e| panic!("{}\n(error: {e})", how_to_start()));
        let name = format!("pbtest_{}", crate::random_suffix(16));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = conn.close().await;
        let mut url = reqwest::Url::parse(admin_url)
            .unwrap_or_else(|e| panic!("{admin_url:?} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        PgDatabase {
            name,
            url: url.to_string(),
            admin_url: admin_url.to_owned(),
        }
    }

    /// Drops the database (`WITH (FORCE)`), best effort, from a helper thread with its own
    /// runtime so it also works inside `Drop` while a test runtime is running.
    pub(crate) fn drop_now(&self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = connect_to(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = tokio::time::timeout(
                        Duration::from_secs(15),
                        sqlx::raw_sql(&sql).execute(&mut conn),
                    )
                    .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}
