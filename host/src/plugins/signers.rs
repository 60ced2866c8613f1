//! The keys operators trust to sign plugins (`plugin_signers`), and the check every install
//! makes: a signature present must verify (always); with `--require-signed-plugins`, an
//! upload must carry one by a trusted key. Bundled plugins are trusted by the build key
//! compiled into the binary, which is trusted for them only: its private half may be the
//! committed development key, so it vouches for nothing uploaded.

use serde::Serialize;
use sqlx::Row;

use super::registry::Signer;
use super::runtime::Plugins;
use super::signing;
use super::{bundled, AdminError, InstallError};
use crate::store::{now_micros, rfc3339};

/// The name bundled plugins' signer is shown under.
pub(super) const BUILD_KEY_NAME: &str = "posbridge build key";

/// A key operators trust to sign plugins.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrustedSigner {
    /// The operator's name for it.
    pub name: String,
    /// Its id (first 8 bytes of the SHA-256 of the public key, hex), as `signer` shows it.
    pub key_id: String,
    /// The public key, base64.
    pub public_key: String,
    /// When it was trusted (or last replaced).
    pub created_at: String,
}

/// 1-64 characters of letters, digits, `.`, `_`, `-`, `@`: safe in a URL path and a log line.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

impl Plugins {
    /// Every trusted signer, by name.
    pub async fn signers(&self) -> Result<Vec<TrustedSigner>, AdminError> {
        let rows = sqlx::query(
            "SELECT name, key_id, public_key, created_at FROM plugin_signers ORDER BY name",
        )
        .fetch_all(self.inner.store.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TrustedSigner {
                    name: row.try_get("name")?,
                    key_id: row.try_get("key_id")?,
                    public_key: row.try_get("public_key")?,
                    created_at: rfc3339(row.try_get("created_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AdminError::from)
    }

    /// Trusts `public_key` (base64, as `plugin keygen` writes it) under `name`, replacing
    /// the key of an existing `name`; returns the signer and whether the name is new.
    pub(crate) async fn trust_signer(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<(TrustedSigner, bool), AdminError> {
        if !valid_name(name) {
            return Err(AdminError::InvalidSigner(format!(
                "signer name {name:?} must be 1-64 characters of letters, digits, '.', '_', '-' and '@'"
            )));
        }
        let key = signing::parse_public_key(public_key)
            .map_err(|e| AdminError::InvalidSigner(format!("public_key: {e}")))?;
        let key_id = signing::key_id(&key);
        let encoded = signing::encode_key(&key);
        let now = now_micros();
        let mut tx = self.inner.store.begin().await?;
        let holder: Option<String> =
            sqlx::query_scalar("SELECT name FROM plugin_signers WHERE key_id = $1")
                .bind(&key_id)
                .fetch_optional(&mut tx)
                .await?;
        if let Some(holder) = holder.filter(|h| h != name) {
            return Err(AdminError::SignerKeyTrusted {
                key_id,
                name: holder,
            });
        }
        let replaced = sqlx::query(
            "UPDATE plugin_signers SET key_id = $1, public_key = $2, created_at = $3 WHERE name = $4",
        )
        .bind(&key_id)
        .bind(&encoded)
        .bind(now)
        .bind(name)
        .execute(&mut tx)
        .await?
        .rows_affected();
        if replaced == 0 {
            sqlx::query(
                "INSERT INTO plugin_signers (name, key_id, public_key, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(&key_id)
            .bind(&encoded)
            .bind(now)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        tracing::info!(signer = %name, %key_id, "plugin signer trusted");
        Ok((
            TrustedSigner {
                name: name.to_owned(),
                key_id,
                public_key: encoded,
                created_at: rfc3339(now),
            },
            replaced == 0,
        ))
    }

    /// Stops trusting the signer `name`. Versions it signed stay installed and keep showing it.
    pub(crate) async fn distrust_signer(&self, name: &str) -> Result<(), AdminError> {
        let deleted = sqlx::query("DELETE FROM plugin_signers WHERE name = $1")
            .bind(name)
            .execute(self.inner.store.writer())
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(AdminError::SignerNotFound(name.to_owned()));
        }
        tracing::info!(signer = %name, "plugin signer no longer trusted");
        Ok(())
    }

    /// Who signed `wasm`, checked: a signature that does not verify is refused; without a
    /// trusted signature, the install is refused when signatures are required (bundled
    /// plugins count the build key as trusted).
    pub(super) async fn check_signature(
        &self,
        wasm: &[u8],
        source: &str,
    ) -> Result<Option<Signer>, InstallError> {
        let required = self.inner.options.require_signed;
        let Some(found) = signing::embedded(wasm) else {
            if required && source != "bundled" {
                return Err(InstallError::Unsigned);
            }
            return Ok(None);
        };
        signing::verify(wasm, &found)?;
        let key_id = signing::key_id(&found.public_key);
        let name = if source == "bundled" && found.public_key == bundled::BUILD_KEY {
            Some(BUILD_KEY_NAME.to_owned())
        } else {
            // By the whole key, not its short id, so no key can pass for a trusted one.
            sqlx::query_scalar("SELECT name FROM plugin_signers WHERE public_key = $1")
                .bind(signing::encode_key(&found.public_key))
                .fetch_optional(self.inner.store.reader())
                .await?
        };
        if name.is_none() && required && source != "bundled" {
            return Err(InstallError::UntrustedSigner { key_id });
        }
        Ok(Some(Signer { key_id, name }))
    }
}
