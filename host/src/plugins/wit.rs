//! Host-side bindings, one module per contract version. Everything version-specific stays
//! in these modules; the rest of the host sees [`ProviderPre`] and [`HookPre`], which
//! dispatch to whichever version a component was built against.
//!
//! Within a minor version, new host imports keep old guests loading; a breaking change
//! starts `since_v0_2_0` with its own frozen copy of the WIT, and this module keeps loading
//! 0.1.x components until no bundled plugin needs them.

pub mod since_v0_1_0;

use wasmtime::component::{Component, Linker};
use wasmtime::Store;

use super::contract::{
    Connection, FetchRequest, HookAction, HookEvent, LocationInfo, Manifest, PluginKind,
    ProviderError, Transaction, TransactionPage, Webhook, WebhookEvent,
};
use super::sandbox::Sandbox;

/// A provider component ready to instantiate, whatever its contract version.
#[derive(Clone)]
pub enum ProviderPre {
    /// Built against 0.1.x.
    V0_1(since_v0_1_0::ProviderPluginPre<Sandbox>),
}

/// A hook component ready to instantiate, whatever its contract version.
#[derive(Clone)]
pub enum HookPre {
    /// Built against 0.1.x.
    V0_1(since_v0_1_0::HookPluginPre<Sandbox>),
}

/// A loaded component of either kind.
#[derive(Clone)]
pub enum LoadedComponent {
    /// Provider.
    Provider(ProviderPre),
    /// Hook.
    Hook(HookPre),
}

impl LoadedComponent {
    /// Finds which known world and version `component` implements, or explains why none.
    pub fn detect(linker: &Linker<Sandbox>, component: &Component) -> Result<Self, String> {
        let pre = linker.instantiate_pre(component).map_err(|e| {
            format!("the component needs imports this host does not provide: {e:#}")
        })?;
        let provider_err = match since_v0_1_0::ProviderPluginPre::new(pre.clone()) {
            Ok(p) => return Ok(LoadedComponent::Provider(ProviderPre::V0_1(p))),
            Err(e) => e,
        };
        let hook_err = match since_v0_1_0::HookPluginPre::new(pre) {
            Ok(h) => return Ok(LoadedComponent::Hook(HookPre::V0_1(h))),
            Err(e) => e,
        };
        Err(format!(
            "the component implements no known world: not a posbridge:plugin@0.1 provider ({provider_err:#}) nor hook ({hook_err:#})"
        ))
    }

    /// Provider or hook.
    pub fn kind(&self) -> PluginKind {
        match self {
            LoadedComponent::Provider(_) => PluginKind::Provider,
            LoadedComponent::Hook(_) => PluginKind::Hook,
        }
    }

    /// Reads the plugin's `info`.
    pub async fn manifest(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Manifest> {
        match self {
            LoadedComponent::Provider(ProviderPre::V0_1(pre)) => {
                since_v0_1_0::provider_manifest(pre, store).await
            }
            LoadedComponent::Hook(HookPre::V0_1(pre)) => {
                since_v0_1_0::hook_manifest(pre, store).await
            }
        }
    }
}

/// Result of a provider call whose guest ran to completion.
pub type ProviderResult<T> = wasmtime::Result<Result<T, ProviderError>>;

impl ProviderPre {
    /// `validate`.
    pub async fn validate(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
    ) -> ProviderResult<LocationInfo> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::validate(pre, store, conn).await,
        }
    }

    /// `validate` repeated on one live instance, timing each call.
    pub async fn validate_warm(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        calls: usize,
    ) -> wasmtime::Result<Vec<std::time::Duration>> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::validate_warm(pre, store, conn, calls).await,
        }
    }

    /// `fetch-transactions`.
    pub async fn fetch_transactions(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        request: &FetchRequest,
    ) -> ProviderResult<TransactionPage> {
        match self {
            ProviderPre::V0_1(pre) => {
                since_v0_1_0::fetch_transactions(pre, store, conn, request).await
            }
        }
    }

    /// `verify-webhook`.
    pub async fn verify_webhook(
        &self,
        store: &mut Store<Sandbox>,
        webhook: &Webhook,
        key: &str,
    ) -> wasmtime::Result<bool> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::verify_webhook(pre, store, webhook, key).await,
        }
    }

    /// `parse-webhook`.
    pub async fn parse_webhook(
        &self,
        store: &mut Store<Sandbox>,
        webhook: &Webhook,
    ) -> ProviderResult<WebhookEvent> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::parse_webhook(pre, store, webhook).await,
        }
    }

    /// `parse-push`.
    pub async fn parse_push(
        &self,
        store: &mut Store<Sandbox>,
        body: &[u8],
    ) -> ProviderResult<Vec<Transaction>> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::parse_push(pre, store, body).await,
        }
    }
}

impl HookPre {
    /// `on-event`.
    pub async fn on_event(
        &self,
        store: &mut Store<Sandbox>,
        event: &HookEvent,
        config: &str,
    ) -> wasmtime::Result<Result<Vec<HookAction>, String>> {
        match self {
            HookPre::V0_1(pre) => since_v0_1_0::on_event(pre, store, event, config).await,
        }
    }
}

/// Adds every import any supported contract version needs to `linker`.
pub fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    since_v0_1_0::add_to_linker(linker)
}
