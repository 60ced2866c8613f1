//! Master keys that cannot silently diverge between hosts.
//!
//! Every host of one database must hold the same master keys: a value sealed by one host
//! must open on every other. The database records, for every key id a host has used with
//! it, a check value derived from the key ([`Vault::check_values`], never the key itself).
//! At start (and before `vault rotate`) a host:
//!
//! - refuses to create a fresh key file when the database already recorded keys or holds
//!   sealed values: the key file is missing on this host, not new to the cluster;
//! - records the check value of each key id the database has not seen;
//! - refuses to start when a key id it holds was recorded with another check value (the
//!   host has a different key file than the others);
//! - refuses to start when sealed values use a key id it does not hold.
//!
//! Apart from [`crate::vault`] because it needs the store, while the vault is a primitive.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sqlx::Row;

use crate::store::{Store, StoreError};
use crate::vault::{Vault, VaultError};

/// What to do when keys diverge; repeated in every refusal so the operator need not search.
const REMEDY: &str = "every host of one database must use the same master keys: copy the key \
file of the hosts already running (the file their startup line names) to this host and point \
--master-key-file / POSBRIDGE_MASTER_KEY_FILE at it, or give every host the same \
POSBRIDGE_MASTER_KEY";

/// Why the master keys cannot be used with this database.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// The keys could not be loaded.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No key file, but the database already has keys or sealed values.
    #[error(
        "refusing to create a new master key file at {path}: this database already uses \
         master key(s) {key_ids:?}, so a fresh key would not open its sealed credentials; \
         {REMEDY} (a key is only created for a database that never recorded one)"
    )]
    MissingKeyFile {
        /// Where the key file was expected.
        path: PathBuf,
        /// Key ids the database knows.
        key_ids: Vec<String>,
    },
    /// A key held here differs from the key the database recorded under its id.
    #[error(
        "master key {key_id:?} from {source_name} is not the key this database recorded \
         under that id (check value differs): this host's keys differ from the other \
         hosts'; {REMEDY}"
    )]
    Mismatch {
        /// The key id.
        key_id: String,
        /// Where this host's keys come from.
        source_name: String,
    },
    /// Sealed values use a key this host does not hold.
    #[error(
        "sealed values in this database use master key(s) {key_ids:?} that {source_name} \
         does not hold; {REMEDY}"
    )]
    MissingKeys {
        /// Key ids used by sealed values but absent here.
        key_ids: Vec<String>,
        /// Where this host's keys come from.
        source_name: String,
    },
}

impl From<sqlx::Error> for KeyCheckError {
    fn from(err: sqlx::Error) -> Self {
        KeyCheckError::Store(err.into())
    }
}

/// Loads the master keys (from `env_value`, the content of `POSBRIDGE_MASTER_KEY`, or the
/// key file) and checks them against what `store` recorded; see the module docs.
pub(crate) async fn load_checked(
    store: &Store,
    env_value: Option<&str>,
    key_file: &Path,
) -> Result<Vault, KeyCheckError> {
    let from_env = env_value.is_some_and(|v| !v.trim().is_empty());
    if !from_env && !key_file.exists() {
        let mut known: BTreeSet<String> = recorded(store).await?.into_keys().collect();
        known.extend(sealed_key_ids(store).await?);
        if !known.is_empty() {
            return Err(KeyCheckError::MissingKeyFile {
                path: key_file.to_owned(),
                key_ids: known.into_iter().collect(),
            });
        }
    }
    let vault = Vault::load(env_value, key_file)?;
    record(store, &vault).await?;
    Ok(vault)
}

/// Records the check value of every key of `vault` the database has not seen, then
/// compares every key with what is recorded. Two hosts creating a key under the same id at
/// once both insert; the second insert is ignored, and that host then sees the mismatch.
pub(crate) async fn record(store: &Store, vault: &Vault) -> Result<(), KeyCheckError> {
    let now = crate::store::now_micros();
    for (key_id, check) in vault.check_values() {
        sqlx::query(
            "INSERT INTO master_key_checks (key_id, check_value, recorded_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&key_id)
        .bind(&check)
        .bind(now)
        .execute(store.writer())
        .await?;
    }
    let recorded = recorded(store).await?;
    let source_name = source_name(vault);
    for (key_id, check) in vault.check_values() {
        if recorded.get(&key_id).is_some_and(|known| *known != check) {
            return Err(KeyCheckError::Mismatch {
                key_id,
                source_name,
            });
        }
    }
    let held: BTreeSet<String> = vault.key_ids().into_iter().collect();
    let missing: Vec<String> = sealed_key_ids(store)
        .await?
        .into_iter()
        .filter(|id| !held.contains(id))
        .collect();
    if !missing.is_empty() {
        return Err(KeyCheckError::MissingKeys {
            key_ids: missing,
            source_name,
        });
    }
    for key_id in recorded.keys().filter(|id| !held.contains(*id)) {
        // Not fatal: no sealed value uses it (retired after a rotation, or recorded by a
        // host whose first start raced this one's and that has sealed nothing yet).
        tracing::warn!(
            key_id,
            keys = %source_name,
            "the database recorded a master key this host does not hold; no sealed value uses it"
        );
    }
    Ok(())
}

/// Where `vault`'s keys come from, for messages.
pub(crate) fn source_name(vault: &Vault) -> String {
    match vault.key_file() {
        Some(path) => format!("key file {}", path.display()),
        None => "POSBRIDGE_MASTER_KEY".to_owned(),
    }
}

/// Key id to check value, as recorded.
async fn recorded(store: &Store) -> Result<BTreeMap<String, String>, KeyCheckError> {
    let rows = sqlx::query("SELECT key_id, check_value FROM master_key_checks")
        .fetch_all(store.reader())
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("key_id")?, row.try_get("check_value")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// The ids of the keys that sealed values in the database use (every table that holds
/// sealed values; `crate::rotation` re-seals the same ones).
pub(crate) async fn sealed_key_ids(store: &Store) -> Result<BTreeSet<String>, KeyCheckError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT credentials_key_id FROM integrations WHERE credentials_key_id IS NOT NULL \
         UNION SELECT webhook_key_id FROM integrations WHERE webhook_key_id IS NOT NULL \
         UNION SELECT config_key_id FROM hook_bindings WHERE config_key_id IS NOT NULL",
    )
    .fetch_all(store.reader())
    .await?;
    Ok(ids.into_iter().collect())
}

/// Every key id the database knows: recorded or used by a sealed value (for backups'
/// manifests).
pub(crate) async fn known_key_ids(store: &Store) -> Result<Vec<String>, KeyCheckError> {
    let mut ids: BTreeSet<String> = recorded(store).await?.into_keys().collect();
    ids.extend(sealed_key_ids(store).await?);
    Ok(ids.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pbkeys-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[tokio::test]
    async fn diverging_or_missing_keys_are_refused_and_shared_ones_accepted() {
        let dir = scratch();
        let db = dir.join("p.db").display().to_string();
        let store = Store::open(&db, &crate::store::StoreOptions::default())
            .await
            .expect("store");
        let shared = dir.join("shared.keys");
        let first = load_checked(&store, None, &shared)
            .await
            .expect("first host");
        let id = first.active_key_id();
        // The same file again (a second host reading it): accepted.
        load_checked(&store, None, &shared)
            .await
            .expect("shared key file");
        // No key file on a database that recorded one: refused, nothing created.
        let missing = dir.join("missing.keys");
        let err = load_checked(&store, None, &missing).await.unwrap_err();
        assert!(
            matches!(&err, KeyCheckError::MissingKeyFile { key_ids, .. } if key_ids == &vec![id.clone()]),
            "{err}"
        );
        assert!(!missing.exists());
        // Another key under the recorded id: refused, naming the id and the remedy.
        let other = format!("{id}:{}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let err = load_checked(&store, Some(&other), &missing)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, KeyCheckError::Mismatch { .. }), "{message}");
        assert!(
            message.contains(&id) && message.contains("copy the key file"),
            "{message}"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
