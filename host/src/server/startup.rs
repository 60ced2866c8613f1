//! The startup line: which database, key file, plugin cache and config file this host
//! uses, so an operator (or a second host that behaves oddly) sees at once what was picked
//! up from defaults, flags, environment or config file.

use std::path::{Path, PathBuf};

use crate::config::ServeConfig;
use crate::vault::Vault;

/// What `serve` runs with, resolved (defaults applied), for the startup line.
#[derive(Debug, Clone)]
pub(super) struct InUse {
    database: String,
    keys: String,
    plugin_cache: String,
    config_file: String,
}

impl InUse {
    pub(super) fn new(config: &ServeConfig, vault: &Vault, cache_dir: Option<&Path>) -> Self {
        let keys = match vault.key_file() {
            Some(path) => absolute(path).display().to_string(),
            None => "POSBRIDGE_MASTER_KEY (environment)".to_owned(),
        };
        InUse {
            database: crate::cli_database::describe(&config.database_url),
            keys,
            plugin_cache: cache_dir
                .map(|dir| absolute(dir).display().to_string())
                .unwrap_or_else(|| "none".to_owned()),
            config_file: config
                .config_file
                .as_deref()
                .map(|path| absolute(path).display().to_string())
                .unwrap_or_else(|| "none".to_owned()),
        }
    }

    /// Logs the line and prints it on stdout, just before the listening line.
    pub(super) fn announce(&self) {
        tracing::info!(
            database = %self.database,
            key_file = %self.keys,
            plugin_cache = %self.plugin_cache,
            config_file = %self.config_file,
            "posbridge using"
        );
        println!(
            "posbridge using database {} | key file {} | plugin cache {} | config file {}",
            self.database, self.keys, self.plugin_cache, self.config_file
        );
    }
}

/// `path` made absolute against the working directory, so the line says where it is.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
