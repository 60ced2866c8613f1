//! Which PostgreSQL the `_postgres` tests use, and fresh databases on it: one
//! `pbtest_<random>` database per server.
//!
//! The server is `POSBRIDGE_TEST_POSTGRES_URL` when set (an admin URL of a role that may
//! create databases), otherwise a throwaway cluster the harness starts from the installed
//! server binaries and shares across the run (`pg_shared.rs`). With neither, the
//! PostgreSQL tests fail with [`no_postgres_message`]. `POSBRIDGE_TEST_POSTGRES=skip`
//! skips the PostgreSQL half, each test saying so in one line on stderr.

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::Connection;

use crate::pg_shared::{self, Unavailable};

const URL_ENV: &str = "POSBRIDGE_TEST_POSTGRES_URL";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tests can do when there is no PostgreSQL, said the same way everywhere.
const WHAT_TO_DO: &str = "Install PostgreSQL's server binaries (Debian: apt-get install \
     postgresql; no cluster needs to run) and the tests start a throwaway one themselves, \
     or set POSBRIDGE_TEST_POSTGRES_URL to the admin URL of a running server's role that \
     may log in and create databases (CREATE ROLE ... LOGIN CREATEDB), or set \
     POSBRIDGE_TEST_POSTGRES=skip to run only the SQLite half of the tests.";

/// The message a PostgreSQL test fails with when no server binaries are found and no URL
/// is given.
pub(crate) fn no_postgres_message() -> String {
    format!(
        "No PostgreSQL for the _postgres tests: {URL_ENV} is not set and no PostgreSQL \
         server binaries (initdb, pg_ctl, postgres) were found in {} (when set), \
         `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH. {WHAT_TO_DO}",
        crate::pg_cluster::BINDIR_ENV
    )
}

fn url_from_env() -> Option<String> {
    std::env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty())
}

fn skip_requested() -> bool {
    std::env::var("POSBRIDGE_TEST_POSTGRES").is_ok_and(|v| v.trim() == "skip")
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Why a PostgreSQL test cannot run.
enum NoServer {
    /// No binaries and no URL.
    Missing,
    /// The server of the URL does not answer.
    Unreachable(String),
    /// Binaries exist but the throwaway cluster failed.
    ClusterFailed(String),
}

impl NoServer {
    fn message(&self) -> String {
        match self {
            NoServer::Missing => no_postgres_message(),
            NoServer::Unreachable(detail) => format!(
                "{detail}. Start that server (its role must be allowed to create \
                 databases: LOGIN CREATEDB), or unset {URL_ENV} to let the tests start a \
                 throwaway cluster from the installed server binaries, or set \
                 POSBRIDGE_TEST_POSTGRES=skip to run only the SQLite half of the tests."
            ),
            NoServer::ClusterFailed(detail) => format!(
                "The throwaway PostgreSQL cluster for the _postgres tests did not start \
                 (set {URL_ENV} to use a running server instead): {detail}"
            ),
        }
    }
}

/// The admin URL, starting the throwaway cluster if needed (blocking).
fn resolve() -> Result<String, NoServer> {
    if let Some(url) = url_from_env() {
        return Ok(url);
    }
    pg_shared::admin_url().map_err(|err| match err {
        Unavailable::NoBinaries => NoServer::Missing,
        Unavailable::Failed(msg) => NoServer::ClusterFailed(msg),
    })
}

async fn resolve_async() -> Result<String, NoServer> {
    tokio::task::spawn_blocking(resolve)
        .await
        .unwrap_or_else(|e| panic!("finding the tests' PostgreSQL: {e}"))
}

/// The admin URL the PostgreSQL tests connect to: `POSBRIDGE_TEST_POSTGRES_URL`, or the
/// run's throwaway cluster, started on first use (so this may block for a few seconds).
/// Panics with instructions when there is neither.
pub fn postgres_admin_url() -> String {
    resolve().unwrap_or_else(|no| panic!("{}", no.message()))
}

async fn connect_to(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// The admin URL after checking that it answers.
async fn reachable_admin_url() -> Result<String, NoServer> {
    let url = resolve_async().await?;
    match connect_to(&url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(url)
        }
        Err(e) if url_from_env().is_some() => Err(NoServer::Unreachable(format!(
            "PostgreSQL at {URL_ENV}={} does not answer: {e}",
            redacted(&url)
        ))),
        Err(e) => Err(NoServer::ClusterFailed(format!(
            "started, but {} does not answer: {e}",
            redacted(&url)
        ))),
    }
}

/// Whether the PostgreSQL variant of a test should run.
///
/// With `POSBRIDGE_TEST_POSTGRES=skip` it does not: returns `false` after one line on
/// stderr (saying too when no PostgreSQL could have been had). Otherwise returns `true`
/// once PostgreSQL answers (the server of `POSBRIDGE_TEST_POSTGRES_URL`, or the throwaway
/// cluster, started here if this is the run's first PostgreSQL test), and panics with
/// instructions when there is none, so a missing server never passes silently.
pub async fn postgres_available() -> bool {
    if skip_requested() {
        let note = if url_from_env().is_none() && !crate::PgCluster::available() {
            format!("; {URL_ENV} is not set and no PostgreSQL server binaries were found")
        } else {
            String::new()
        };
        eprintln!("SKIPPED (POSBRIDGE_TEST_POSTGRES=skip): PostgreSQL half not run{note}");
        return false;
    }
    if let Err(no) = reachable_admin_url().await {
        panic!("{}", no.message());
    }
    true
}

/// A database created for one test server; dropped (best effort) with [`PgDatabase::drop_now`].
#[derive(Debug)]
pub(crate) struct PgDatabase {
    pub(crate) name: String,
    pub(crate) url: String,
    admin_url: String,
}

impl PgDatabase {
    /// Creates `pbtest_<random>` on the tests' PostgreSQL and returns it with its URL.
    pub(crate) async fn create() -> PgDatabase {
        let url = resolve_async()
            .await
            .unwrap_or_else(|no| panic!("{}", no.message()));
        PgDatabase::create_on(&url).await
    }

    /// Creates `pbtest_<random>` on the server of `admin_url` (e.g. a
    /// [`crate::PgCluster`]).
    pub(crate) async fn create_on(admin_url: &str) -> PgDatabase {
        let mut conn = connect_to(admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} does not answer: {e}. {WHAT_TO_DO}",
                redacted(admin_url)
            )
        });
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
