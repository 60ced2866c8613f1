//! How operator commands (`tenant`, `key`, `plugin`, `vault`, `backup`) open the database:
//! only one that exists and carries posbridge's schema. Only `serve` creates a database;
//! a command run in the wrong directory must fail, not report success on a new empty
//! database the server never sees.
//!
//! Also the masked description of a database URL used in every message naming it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::store::{Store, StoreError, StoreOptions};

/// Why a command refuses the database.
#[derive(Debug, thiserror::Error)]
pub enum OpenExistingError {
    /// The SQLite file does not exist.
    #[error(
        "no database at {path}: posbridge commands work only on an existing database (only \
         `posbridge serve` creates one); name the server's database with --database-url, \
         POSBRIDGE_DATABASE_URL or the `database-url` of a --config file"
    )]
    NoSqliteFile {
        /// The file looked for.
        path: PathBuf,
    },
    /// The database exists but posbridge never migrated it.
    #[error(
        "{database} has no posbridge schema (no migrations recorded): start `posbridge serve` \
         on it once, or name the server's database with --database-url, \
         POSBRIDGE_DATABASE_URL or a --config file"
    )]
    NotPosbridge {
        /// The database, masked.
        database: String,
    },
    /// The database could not be reached or opened.
    #[error("opening {database}: {source}")]
    Store {
        /// The database, masked.
        database: String,
        /// The cause.
        source: StoreError,
    },
}

/// Opens the posbridge database at `url`, refusing a missing SQLite file or a database
/// without posbridge's schema. Pending migrations of a newer binary are applied, as `serve`
/// would.
pub async fn open_existing(url: &str, options: &StoreOptions) -> Result<Store, OpenExistingError> {
    sqlx::any::install_default_drivers();
    let database = describe(url);
    let store_error = |source: StoreError| OpenExistingError::Store {
        database: database.clone(),
        source,
    };
    let url = match sqlite_file(url) {
        Some(path) => {
            if !path.exists() {
                return Err(OpenExistingError::NoSqliteFile { path });
            }
            // `mode=rw`: never create the file, even if it disappears in between.
            format!("sqlite://{}?mode=rw", path.display())
        }
        None => url.to_owned(),
    };
    let options_for_probe = AnyConnectOptions::from_str(&url)
        .map_err(|err| store_error(err.into()))?
        .disable_statement_logging();
    let mut conn = options_for_probe
        .connect()
        .await
        .map_err(|err| store_error(err.into()))?;
    let migrated = sqlx::query("SELECT version FROM _sqlx_migrations LIMIT 1")
        .fetch_optional(&mut conn)
        .await;
    let _ = conn.close().await;
    if migrated.is_err() {
        return Err(OpenExistingError::NotPosbridge { database });
    }
    Store::open(&url, options).await.map_err(store_error)
}

/// The SQLite file `url` names (a bare path, `sqlite://path` or `sqlite:path`, any query
/// dropped), or None for PostgreSQL and in-memory databases.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let file = rest.split('?').next().unwrap_or(rest);
    if file.is_empty()
        || file.contains(":memory:")
        || (url.contains("://") && !url.starts_with("sqlite:"))
    {
        return None;
    }
    Some(PathBuf::from(file))
}

/// The database as messages name it: `sqlite <absolute path>` (resolved, if the file exists), or the PostgreSQL URL with
/// its password replaced by `***`.
pub fn describe(url: &str) -> String {
    if let Some(path) = sqlite_file(url) {
        let path = std::fs::canonicalize(&path)
            .or_else(|_| std::path::absolute(&path))
            .unwrap_or(path);
        return format!("sqlite {}", path.display());
    }
    masked(url)
}

/// `url` with any password replaced by `***` (unparseable URLs are shown without their
/// user-info part at all).
pub(crate) fn masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return strip_user_info(url);
            }
            parsed.to_string()
        }
        Err(_) => strip_user_info(url),
    }
}

fn strip_user_info(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Whether `path` is a directory with nothing in it, or does not exist.
pub(crate) fn is_empty_or_missing(path: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            masked("postgres://pb:s3cret@db.example:5432/posbridge"),
            "postgres://pb:***@db.example:5432/posbridge"
        );
        assert_eq!(
            masked("postgres://pb@db/posbridge"),
            "postgres://pb@db/posbridge"
        );
        assert!(!describe("postgresql://u:p%40ss@h/d").contains("p%40ss"));
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("posbridge.db"),
            Some(PathBuf::from("posbridge.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///srv/pb.db?mode=rwc"),
            Some(PathBuf::from("/srv/pb.db"))
        );
        assert_eq!(sqlite_file("sqlite:rel.db"), Some(PathBuf::from("rel.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/d"), None);
        assert!(describe("sqlite:///srv/pb.db").starts_with("sqlite /srv/pb.db"));
    }
}
