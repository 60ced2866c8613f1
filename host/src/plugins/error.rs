//! Why a plugin operation failed: one enum per entry point (a call, an install, an
//! operator action, starting the runtime), so each caller matches only what can happen to it.

use super::contract::PluginKind;
use super::{allowlist, engine, executor, signing};
use crate::store::StoreError;

/// Why a call did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No plugin with that id.
    #[error("no plugin {0:?} is installed")]
    NotInstalled(String),
    /// The plugin is of the other kind.
    #[error("plugin {id:?} is a {actual}, not a {expected}")]
    WrongKind {
        /// Id.
        id: String,
        /// Expected kind.
        expected: &'static str,
        /// Actual kind.
        actual: &'static str,
    },
    /// Disabled, quarantined, or without an active version.
    #[error("plugin {id:?} is unavailable: {reason}")]
    Unavailable {
        /// Id.
        id: String,
        /// Why.
        reason: String,
    },
    /// CPU deadline or wall-clock timeout.
    #[error("plugin {0:?} exceeded its time limit")]
    Timeout(String),
    /// Memory cap.
    #[error("plugin {0:?} exceeded its memory limit")]
    OutOfMemory(String),
    /// The provider does not declare the capability the operation needs (refused before
    /// any call).
    #[error("provider {id:?} cannot {what}")]
    Incapable {
        /// Id.
        id: String,
        /// What it cannot do ("submit orders").
        what: &'static str,
    },
    /// The guest trapped (panic, unreachable, bad memory access…).
    #[error("plugin {id:?} failed: {message}")]
    Trapped {
        /// Id.
        id: String,
        /// The trap and the guest's last stderr line.
        message: String,
    },
}

/// Why an install was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not a WebAssembly binary.
    #[error("not a WebAssembly binary")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module; build a component (cargo build --target wasm32-wasip2)"
    )]
    CoreModule,
    /// Does not compile, implements no known world, or `info` failed.
    #[error("{0}")]
    Invalid(String),
    /// (id, version) already installed.
    #[error("plugin {id:?} version {version} is already installed")]
    VersionExists {
        /// Id.
        id: String,
        /// Version.
        version: String,
    },
    /// Same id, other kind.
    #[error("plugin {id:?} is installed as a {existing}; this component is a {new}")]
    KindMismatch {
        /// Id.
        id: String,
        /// Installed kind.
        existing: &'static str,
        /// Kind of the new component.
        new: &'static str,
    },
    /// Unsigned, while the host requires signed plugins.
    #[error(
        "the component is not signed, and this host requires signed plugins \
         (--require-signed-plugins); sign it with `posbridge plugin sign FILE --key KEY` using \
         a key trusted with PUT /admin/plugin-signers"
    )]
    Unsigned,
    /// Validly signed, by a key no operator trusts, while the host requires signed plugins.
    #[error(
        "the component is signed by key {key_id}, which is not trusted on this host \
         (--require-signed-plugins); trust it with PUT /admin/plugin-signers or sign with a \
         trusted key"
    )]
    UntrustedSigner {
        /// The signing key's id.
        key_id: String,
    },
    /// A signature that does not verify: always refused, required or not.
    #[error("the component's signature is invalid: {0}")]
    BadSignature(#[from] signing::SignatureError),
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for InstallError {
    fn from(err: sqlx::Error) -> Self {
        InstallError::Store(err.into())
    }
}

/// Why an operator action was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Unknown plugin.
    #[error("no plugin {0:?} is installed")]
    NotFound(String),
    /// Unknown version.
    #[error("plugin {0:?} has no version {1}")]
    VersionNotFound(String, String),
    /// Deleting the serving version.
    #[error("version {1} of {0:?} is active; activate another version first")]
    VersionActive(String, String),
    /// Bad host pattern.
    #[error(transparent)]
    InvalidHosts(#[from] allowlist::PatternError),
    /// Limits out of range.
    #[error("{0}")]
    InvalidLimits(String),
    /// A signer's name or public key is malformed.
    #[error("{0}")]
    InvalidSigner(String),
    /// No trusted signer of that name.
    #[error("no plugin signer named {0:?} is trusted")]
    SignerNotFound(String),
    /// The key is already trusted under another name.
    #[error("key {key_id} is already trusted as {name:?}")]
    SignerKeyTrusted {
        /// The key's id.
        key_id: String,
        /// The name it is trusted under.
        name: String,
    },
    /// Database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AdminError {
    fn from(err: sqlx::Error) -> Self {
        AdminError::Store(err.into())
    }
}

/// Failures starting the runtime.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// wasmtime or the cache directory.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// HTTP client.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// Database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Guest threads.
    #[error(transparent)]
    Threads(#[from] executor::ExecError),
}

impl CallError {
    /// A call for one kind of plugin reached a plugin of the other kind.
    pub(super) fn wrong_kind(id: &str, expected: PluginKind, actual: PluginKind) -> Self {
        CallError::WrongKind {
            id: id.to_owned(),
            expected: expected.as_str(),
            actual: actual.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_kind_names_the_expected_and_the_actual_kind() {
        let hook_for_provider = CallError::wrong_kind("p", PluginKind::Provider, PluginKind::Hook);
        assert_eq!(
            hook_for_provider.to_string(),
            r#"plugin "p" is a hook, not a provider"#
        );
        let provider_for_hook = CallError::wrong_kind("h", PluginKind::Hook, PluginKind::Provider);
        assert_eq!(
            provider_for_hook.to_string(),
            r#"plugin "h" is a provider, not a hook"#
        );
    }
}
