//! `posbridge vault rotate`: re-seals every stored secret (integration credentials, webhook
//! signature keys, hook binding configurations) under the active master key, in one
//! transaction.
//!
//! Apart from [`crate::vault`] because it knows every table that holds sealed values, hooks'
//! included, while the vault itself is a primitive that those modules build on.

use std::path::Path;

use serde::Serialize;

use crate::vault::{Sealed, Vault, VaultError};

/// What `vault rotate` did.
#[derive(Debug, Serialize)]
pub struct RotationReport {
    /// The key everything is now sealed with.
    pub active_key_id: String,
    /// Secrets re-sealed.
    pub resealed: u64,
}

/// Failures of `vault rotate`.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Keys.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Database.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// This host's keys differ from the ones the database recorded.
    #[error(transparent)]
    KeyCheck(#[from] crate::key_checks::KeyCheckError),
}

impl From<sqlx::Error> for RotateError {
    fn from(err: sqlx::Error) -> Self {
        RotateError::Store(err.into())
    }
}

/// Re-seals every integration secret and hook binding configuration under a new active key
/// (key file) or under the active env key, in one transaction: either every secret moves or
/// none does.
pub async fn rotate(
    store: &crate::store::Store,
    env_value: Option<&str>,
    key_file: &Path,
) -> Result<RotationReport, RotateError> {
    use sqlx::Row;
    // A host with the wrong keys must not re-seal anything: it could not open the values,
    // or (with a fresh key file) would move them under a key no other host has.
    let mut vault = crate::key_checks::load_checked(store, env_value, key_file).await?;
    if vault.is_file_backed() {
        vault.add_key()?;
        // Recorded before anything is sealed under it, so a host holding another key under
        // this id is refused at start rather than failing to open the re-sealed values.
        crate::key_checks::record(store, &vault).await?;
    }
    // Configurations still in plaintext (stored before sealing, no server started since)
    // are sealed first, so that none is left behind.
    crate::hooks::seal_plaintext_configs(store, &vault)
        .await
        .map_err(|err| match err {
            crate::hooks::ConfigSealError::Vault(e) => RotateError::Vault(e),
            crate::hooks::ConfigSealError::Store(e) => RotateError::Store(e),
        })?;
    let mut tx = store.begin().await?;
    let rows = sqlx::query(
        "SELECT id, tenant_id, credentials_key_id, credentials_sealed, webhook_key_id, webhook_key_sealed FROM integrations",
    )
    .fetch_all(&mut tx)
    .await?;
    let mut resealed = 0;
    for row in &rows {
        let id: String = row.try_get("id")?;
        let tenant: String = row.try_get("tenant_id")?;
        for (field, key_col, data_col) in [
            ("credentials", "credentials_key_id", "credentials_sealed"),
            (
                "webhook_signature_key",
                "webhook_key_id",
                "webhook_key_sealed",
            ),
        ] {
            let key_id: Option<String> = row.try_get(key_col)?;
            let bytes: Option<Vec<u8>> = row.try_get(data_col)?;
            let Some(sealed) = key_id
                .zip(bytes)
                .map(|(key_id, bytes)| Sealed { key_id, bytes })
            else {
                continue;
            };
            let row = SealedIn {
                table: "integrations",
                key_col,
                data_col,
                tenant: &tenant,
                id: &id,
                field,
            };
            reseal(&mut tx, &vault, &row, &sealed).await?;
            resealed += 1;
        }
    }
    let bindings = sqlx::query(
        "SELECT id, tenant_id, config_key_id, config_sealed FROM hook_bindings WHERE config_sealed IS NOT NULL",
    )
    .fetch_all(&mut tx)
    .await?;
    for row in &bindings {
        let id: String = row.try_get("id")?;
        let tenant: String = row.try_get("tenant_id")?;
        let sealed = Sealed {
            key_id: row.try_get("config_key_id")?,
            bytes: row.try_get("config_sealed")?,
        };
        let row = SealedIn {
            table: "hook_bindings",
            key_col: "config_key_id",
            data_col: "config_sealed",
            tenant: &tenant,
            id: &id,
            field: crate::hooks::CONFIG_FIELD,
        };
        reseal(&mut tx, &vault, &row, &sealed).await?;
        resealed += 1;
    }
    tx.commit().await?;
    Ok(RotationReport {
        active_key_id: vault.active_key_id(),
        resealed,
    })
}

/// Where a sealed value is stored: its table's columns, its row, and its associated data.
struct SealedIn<'a> {
    table: &'static str,
    key_col: &'static str,
    data_col: &'static str,
    tenant: &'a str,
    id: &'a str,
    field: &'static str,
}

/// Opens `sealed` and stores it sealed again under the active key.
async fn reseal(
    tx: &mut crate::store::Conn,
    vault: &Vault,
    at: &SealedIn<'_>,
    sealed: &Sealed,
) -> Result<(), RotateError> {
    let plain = vault.open(at.tenant, at.id, at.field, sealed)?;
    let fresh = vault.seal(at.tenant, at.id, at.field, &plain)?;
    sqlx::query(&format!(
        "UPDATE {} SET {} = $1, {} = $2 WHERE id = $3",
        at.table, at.key_col, at.data_col
    ))
    .bind(&fresh.key_id)
    .bind(&fresh.bytes)
    .bind(at.id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
