//! Binding configurations sealed at rest.
//!
//! A hook's configuration is where its secrets go (`big-spender-alert`'s Slack webhook URL
//! is enough to post to the channel), so it is stored like provider credentials: sealed by
//! the [`Vault`] under the tenant and binding ids, with `config` left empty. Rows from
//! before sealing keep their text in `config` until [`seal_plaintext`] runs at start-up.

use sqlx::Row;

use crate::store::{Store, StoreError};
use crate::vault::{Sealed, Vault, VaultError};

/// Field name in the associated data of a sealed configuration.
pub(crate) const CONFIG_FIELD: &str = "hook_config";

/// The columns [`open`] reads, besides the binding's `id`.
pub(super) const CONFIG_COLUMNS: &str = "config, config_key_id, config_sealed";

/// Failures to seal or open a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigSealError {
    /// The vault refused: a missing master key, or a value sealed for another row.
    #[error("hook configuration: {0}")]
    Vault(#[from] VaultError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ConfigSealError {
    fn from(err: sqlx::Error) -> Self {
        ConfigSealError::Store(err.into())
    }
}

/// Seals a binding's configuration text for `(tenant_id, binding_id)`.
pub(super) fn seal(
    vault: &Vault,
    tenant_id: &str,
    binding_id: &str,
    text: &str,
) -> Result<Sealed, VaultError> {
    vault.seal(tenant_id, binding_id, CONFIG_FIELD, text.as_bytes())
}

/// The configuration text of a binding row selected with [`CONFIG_COLUMNS`] and `id`:
/// opened if sealed, else the plaintext of a row from before sealing.
pub(super) fn open(
    vault: &Vault,
    tenant_id: &str,
    row: &sqlx::any::AnyRow,
) -> Result<String, ConfigSealError> {
    let key_id: Option<String> = row.try_get("config_key_id")?;
    let bytes: Option<Vec<u8>> = row.try_get("config_sealed")?;
    let Some(sealed) = key_id
        .zip(bytes)
        .map(|(key_id, bytes)| Sealed { key_id, bytes })
    else {
        return Ok(row.try_get("config")?);
    };
    let binding_id: String = row.try_get("id")?;
    let plain = vault.open(tenant_id, &binding_id, CONFIG_FIELD, &sealed)?;
    // Sealed from a `String`, so only tampering that also forged the tag could fail here.
    String::from_utf8(plain).map_err(|_| ConfigSealError::Vault(VaultError::Open))
}

/// Seals every configuration still stored in plaintext (bindings created before sealing)
/// and empties its `config`; returns how many. Each row is updated only if it is still
/// unsealed, so hosts starting together on one database do not seal a row twice.
pub(crate) async fn seal_plaintext(store: &Store, vault: &Vault) -> Result<u64, ConfigSealError> {
    let rows =
        sqlx::query("SELECT id, tenant_id, config FROM hook_bindings WHERE config_sealed IS NULL")
            .fetch_all(store.reader())
            .await?;
    let mut sealed = 0;
    for row in &rows {
        let id: String = row.try_get("id")?;
        let tenant_id: String = row.try_get("tenant_id")?;
        let config: String = row.try_get("config")?;
        let fresh = seal(vault, &tenant_id, &id, &config)?;
        sealed += sqlx::query(
            "UPDATE hook_bindings SET config = '', config_key_id = $1, config_sealed = $2
             WHERE id = $3 AND config_sealed IS NULL",
        )
        .bind(&fresh.key_id)
        .bind(&fresh.bytes)
        .bind(&id)
        .execute(store.writer())
        .await?
        .rows_affected();
    }
    if sealed > 0 {
        tracing::info!(sealed, "sealed hook configurations stored in plaintext");
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::Vault;

    fn vault() -> Vault {
        // A bare base64 key of 32 bytes (all 7s).
        Vault::load(
            Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="),
            std::path::Path::new("/nonexistent"),
        )
        .expect("env key")
    }

    #[test]
    fn a_sealed_config_opens_only_for_its_binding() {
        let vault = vault();
        let sealed = seal(&vault, "t1", "b1", r#"{"webhook_url":"https://x"}"#).expect("seal");
        let plain = vault
            .open("t1", "b1", CONFIG_FIELD, &sealed)
            .expect("opens for its row");
        assert_eq!(plain, br#"{"webhook_url":"https://x"}"#);
        assert!(vault.open("t1", "b2", CONFIG_FIELD, &sealed).is_err());
        assert!(vault.open("t2", "b1", CONFIG_FIELD, &sealed).is_err());
        assert!(vault.open("t1", "b1", "credentials", &sealed).is_err());
    }
}
