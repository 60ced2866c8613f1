//! `posbridge backup DIR` and `posbridge restore DIR`: the database and the master key file
//! saved and put back together. Sealed credentials open only with the keys that sealed
//! them, so a database restored without its key file has lost every credential.
//!
//! On SQLite the backup is an online, consistent snapshot (`VACUUM INTO`, which reads one
//! transaction's view while the server keeps writing) beside a copy of the key file and a
//! manifest. On PostgreSQL the database is the operator's to dump with `pg_dump` (the
//! backup names the exact command); the key file and the manifest are written all the same.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli_database::{describe, is_empty_or_missing, masked, sqlite_file};
use crate::key_checks::KeyCheckError;
use crate::store::{Backend, Store};
use crate::vault::Vault;

/// The snapshot of an SQLite database in a backup directory.
pub(crate) const DATABASE_FILE: &str = "posbridge.db";
/// The copy of the key file in a backup directory.
pub(crate) const KEY_FILE: &str = "posbridge.keys";
/// What the backup holds, for people and for `restore`.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// On PostgreSQL: how to dump and restore the database.
pub(crate) const README_FILE: &str = "README.txt";

/// Why a backup or restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup directory already holds files.
    #[error("backup directory {0} is not empty: back up into a new or empty directory")]
    DirNotEmpty(PathBuf),
    /// No backup in the directory given to restore.
    #[error("no posbridge backup in {0} (no {MANIFEST_FILE})")]
    MissingBackup(PathBuf),
    /// The backup lacks the file restore needs.
    #[error("the backup in {dir} has no {file}")]
    Incomplete {
        /// The backup directory.
        dir: PathBuf,
        /// The missing file.
        file: &'static str,
    },
    /// Restore would overwrite something.
    #[error(
        "{0} already exists: restore does not overwrite it unless --force is given (stop \
         every server using it first)"
    )]
    Exists(PathBuf),
    /// Keys come from no file and the database knows keys: nothing could open the backup.
    #[error(
        "no key file at {0}: a backup without the master keys could not open any sealed \
         credential; name the key file with --master-key-file or POSBRIDGE_MASTER_KEY_FILE"
    )]
    NoKeyFile(PathBuf),
    /// Restore on PostgreSQL: the database is restored with pg_restore.
    #[error("the database URL is not an SQLite file; on PostgreSQL restore with: {0}")]
    Postgres(String),
    /// The keys do not match the database.
    #[error(transparent)]
    Keys(#[from] KeyCheckError),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The snapshot failed.
    #[error("database snapshot: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The manifest could not be written or read.
    #[error("manifest {0}: {1}")]
    Manifest(PathBuf, serde_json::Error),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

/// The manifest of a backup (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// When the backup was taken (RFC 3339).
    pub created_at: String,
    /// The posbridge version that took it.
    pub posbridge_version: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The database backed up (password masked).
    pub database: String,
    /// The master key ids the database knows (recorded or used by sealed values).
    pub key_ids: Vec<String>,
    /// The key file copied into the backup, or None when the keys come from
    /// `POSBRIDGE_MASTER_KEY` (then the operator keeps that value safe separately).
    pub key_file: Option<String>,
    /// The files of the backup directory.
    pub files: Vec<String>,
    /// PostgreSQL: the command that dumps the database into this directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump: Option<String>,
}

/// Where the master keys come from.
#[derive(Debug, Clone, Copy)]
pub struct KeySource<'a> {
    /// The content of `POSBRIDGE_MASTER_KEY`, if set.
    pub env_value: Option<&'a str>,
    /// The key file otherwise.
    pub key_file: &'a Path,
}

/// Backs up `store` (opened from `database_url`) and its master keys into `dir`, which
/// must be empty or missing.
pub async fn backup(
    store: &Store,
    database_url: &str,
    keys: KeySource<'_>,
    dir: &Path,
) -> Result<Manifest, BackupError> {
    if !is_empty_or_missing(dir).map_err(io("reading", dir))? {
        return Err(BackupError::DirNotEmpty(dir.to_owned()));
    }
    let from_env = keys.env_value.is_some_and(|v| !v.trim().is_empty());
    let key_ids = crate::key_checks::known_key_ids(store).await?;
    let key_file = if from_env {
        None
    } else if keys.key_file.exists() {
        // The keys saved must be the keys of this database.
        let vault = Vault::load(None, keys.key_file).map_err(KeyCheckError::from)?;
        crate::key_checks::record(store, &vault).await?;
        Some(keys.key_file)
    } else if key_ids.is_empty() {
        None
    } else {
        return Err(BackupError::NoKeyFile(keys.key_file.to_owned()));
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut files = Vec::new();
    let mut pg_dump = None;
    match store.backend() {
        Backend::Sqlite => {
            let target = dir.join(DATABASE_FILE);
            let target = std::path::absolute(&target).unwrap_or(target);
            let quoted = target.display().to_string().replace('\'', "''");
            sqlx::query(&format!("VACUUM INTO '{quoted}'"))
                .execute(store.reader())
                .await
                .map_err(crate::store::StoreError::from)?;
            files.push(DATABASE_FILE.to_owned());
        }
        Backend::Postgres => {
            let command = pg_dump_command(database_url, dir);
            let readme = dir.join(README_FILE);
            let text = format!(
                "posbridge backup on PostgreSQL\n\n\
                 This directory holds the master key file ({KEY_FILE}) and {MANIFEST_FILE}.\n\
                 The database itself is dumped with pg_dump; run, with the password in\n\
                 PGPASSWORD or ~/.pgpass:\n\n    {command}\n\n\
                 Keep the dump and {KEY_FILE} together: sealed credentials open only with\n\
                 these keys. Restore with:\n\n    {}\n\n\
                 then `posbridge restore {}` to put the key file in place.\n",
                pg_restore_command(database_url, dir),
                dir.display()
            );
            std::fs::write(&readme, text).map_err(io("writing", &readme))?;
            files.push(README_FILE.to_owned());
            pg_dump = Some(command);
        }
    }
    if let Some(source) = key_file {
        copy_private(source, &dir.join(KEY_FILE))?;
        files.push(KEY_FILE.to_owned());
    }
    files.push(MANIFEST_FILE.to_owned());
    let manifest = Manifest {
        created_at: jiff::Timestamp::now().to_string(),
        posbridge_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: match store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
        .to_owned(),
        database: describe(database_url),
        key_ids,
        key_file: key_file.map(|path| path.display().to_string()),
        files,
        pg_dump,
    };
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| BackupError::Manifest(path.clone(), e))?;
    std::fs::write(&path, text).map_err(io("writing", &path))?;
    Ok(manifest)
}

/// What `restore` put where.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The database file written (SQLite).
    pub database: Option<String>,
    /// The key file written.
    pub key_file: Option<String>,
    /// The backup's manifest.
    pub manifest: Manifest,
}

/// Puts the backup in `dir` in place: the SQLite file at `database_url` and the key file
/// at `key_file`. Refuses to overwrite either unless `force`. On PostgreSQL only the key
/// file is restored and the error names the `pg_restore` command for the database.
pub fn restore(
    dir: &Path,
    database_url: &str,
    key_file: &Path,
    force: bool,
) -> Result<Restored, BackupError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(BackupError::MissingBackup(dir.to_owned()));
    }
    let text = std::fs::read_to_string(&manifest_path).map_err(io("reading", &manifest_path))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| BackupError::Manifest(manifest_path.clone(), e))?;
    let backup_keys = dir.join(KEY_FILE);
    let has_keys = backup_keys.is_file();
    if has_keys && key_file.exists() && !force && !same_content(&backup_keys, key_file) {
        return Err(BackupError::Exists(key_file.to_owned()));
    }
    let Some(target) = sqlite_file(database_url) else {
        if has_keys {
            copy_private(&backup_keys, key_file)?;
        }
        return Err(BackupError::Postgres(pg_restore_command(database_url, dir)));
    };
    let snapshot = dir.join(DATABASE_FILE);
    if !snapshot.is_file() {
        return Err(BackupError::Incomplete {
            dir: dir.to_owned(),
            file: DATABASE_FILE,
        });
    }
    if target.exists() && !force {
        return Err(BackupError::Exists(target));
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    // A WAL left beside the old file would be replayed into the restored one.
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io("removing", &side)(err)),
        }
    }
    let tmp = PathBuf::from(format!("{}.restoring", target.display()));
    std::fs::copy(&snapshot, &tmp).map_err(io("copying to", &tmp))?;
    std::fs::rename(&tmp, &target).map_err(io("moving into place", &target))?;
    if has_keys {
        copy_private(&backup_keys, key_file)?;
    }
    Ok(Restored {
        database: Some(target.display().to_string()),
        key_file: has_keys.then(|| key_file.display().to_string()),
        manifest,
    })
}

fn same_content(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// Copies a key file, readable by its owner only, through a temporary file so a reader
/// never sees half of it.
fn copy_private(from: &Path, to: &Path) -> Result<(), BackupError> {
    use std::io::Write;
    let bytes = std::fs::read(from).map_err(io("reading", from))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", to.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io("writing", &tmp))?;
    file.write_all(&bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, to).map_err(io("moving into place", to))
}

/// The URL for `pg_dump`/`pg_restore`: without the password, which they take from
/// PGPASSWORD or ~/.pgpass rather than from a command line others can read.
fn url_without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(None).is_err() {
                return masked(url);
            }
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `pg_dump` of the database into `dir/posbridge.pgdump`.
pub(crate) fn pg_dump_command(database_url: &str, dir: &Path) -> String {
    let dump = std::path::absolute(dir.join("posbridge.pgdump"))
        .unwrap_or_else(|_| dir.join("posbridge.pgdump"));
    format!(
        "pg_dump --format=custom --file={} --dbname={}",
        shell_quote(&dump.display().to_string()),
        shell_quote(&url_without_password(database_url))
    )
}

/// `pg_restore` of that dump into an empty database.
pub(crate) fn pg_restore_command(database_url: &str, dir: &Path) -> String {
    let dump = std::path::absolute(dir.join("posbridge.pgdump"))
        .unwrap_or_else(|_| dir.join("posbridge.pgdump"));
    format!(
        "pg_restore --no-owner --dbname={} {}",
        shell_quote(&url_without_password(database_url)),
        shell_quote(&dump.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_commands_leave_the_password_out() {
        let cmd = pg_dump_command("postgres://pb:s3cret@db/pos", Path::new("/b"));
        assert_eq!(
            cmd,
            "pg_dump --format=custom --file='/b/posbridge.pgdump' --dbname='postgres://pb@db/pos'"
        );
        assert!(
            !pg_restore_command("postgres://pb:s3cret@db/pos", Path::new("/b")).contains("s3cret")
        );
    }

    #[test]
    fn restore_never_overwrites_a_database_or_other_keys_without_force() {
        let root = std::env::temp_dir().join(format!("pb-restore-{}", uuid::Uuid::now_v7()));
        let backup = root.join("backup");
        std::fs::create_dir_all(&backup).unwrap();
        let manifest = Manifest {
            created_at: "2026-12-06T00:00:00Z".into(),
            posbridge_version: "0".into(),
            backend: "sqlite".into(),
            database: "sqlite /x.db".into(),
            key_ids: vec!["k1".into()],
            key_file: Some("/x.keys".into()),
            files: vec![],
            pg_dump: None,
        };
        std::fs::write(
            backup.join(MANIFEST_FILE),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
        std::fs::write(backup.join(DATABASE_FILE), b"snapshot").unwrap();
        std::fs::write(backup.join(KEY_FILE), b"backup keys").unwrap();
        let live = root.join("live");
        std::fs::create_dir_all(&live).unwrap();
        let db = live.join("p.db");
        let keys = live.join("p.keys");
        std::fs::write(&keys, b"other keys").unwrap();
        let url = db.display().to_string();
        let err = restore(&backup, &url, &keys, false).unwrap_err();
        assert!(
            matches!(&err, BackupError::Exists(p) if p == &keys),
            "{err}"
        );
        std::fs::remove_file(&keys).unwrap();
        restore(&backup, &url, &keys, false).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), b"snapshot");
        assert_eq!(std::fs::read(&keys).unwrap(), b"backup keys");
        let err = restore(&backup, &url, &keys, false).unwrap_err();
        assert!(matches!(&err, BackupError::Exists(p) if p == &db), "{err}");
        std::fs::write(&db, b"newer").unwrap();
        std::fs::write(format!("{url}-wal"), b"stale wal").unwrap();
        restore(&backup, &url, &keys, true).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), b"snapshot");
        assert!(!std::path::Path::new(&format!("{url}-wal")).exists());
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn restore_refuses_a_directory_without_a_backup() {
        let dir = std::env::temp_dir().join(format!("pb-restore-{}", uuid::Uuid::now_v7()));
        let err = restore(&dir, "x.db", Path::new("x.keys"), false).unwrap_err();
        assert!(matches!(err, BackupError::MissingBackup(_)), "{err}");
    }
}
