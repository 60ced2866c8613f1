//! Host-side bindings, one module per contract version. Everything version-specific stays
//! in these modules; the rest of the host sees [`ProviderPre`] and [`HookPre`], which
//! dispatch to whichever version a component was built against.
//!
//! Each released contract version is a frozen folder, `wit/v<version>/`, read by that
//! version's module here (the guest SDK vendors the latest one); the next version is
//! developed in a new folder with a new module, and this module keeps loading older
//! components until no plugin needs them: today 0.3.x (`since_v0_3_0`, what the SDK and the
//! bundled plugins build against), 0.2.x (`since_v0_2_0`) and 0.1.x (`since_v0_1_0`). `released_contracts_are_frozen`
//! holds the released folders to the digests in `wit/SHA256SUMS`.
//!
//! A component is matched newest version first; a function a version lacks (0.1's hooks have
//! no `validate-config`, providers before 0.3 no write or catalog side) is answered here the
//! way that version behaved, or as `unsupported`.

/// The host imports (`types`, `http`, `log`, `clock`, `state`) for one version's bindings.
/// Every version so far declares the same functions under its own package name, so each
/// version module invokes this with its generated interface modules, and all of them call
/// the same [`Sandbox`] methods.
macro_rules! impl_host_imports {
    ($t:ident, $http:ident, $log:ident, $clock:ident, $state:ident) => {
        impl $t::Host for Sandbox {}

        impl $http::Host for Sandbox {
            async fn send(
                &mut self,
                request: $http::Request,
            ) -> wasmtime::Result<Result<$http::Response, $http::HttpError>> {
                use crate::plugins::outbound::{Method, OutboundError, OutboundRequest};
                let method = match request.method {
                    $http::Method::Get => Method::Get,
                    $http::Method::Head => Method::Head,
                    $http::Method::Post => Method::Post,
                    $http::Method::Put => Method::Put,
                    $http::Method::Patch => Method::Patch,
                    $http::Method::Delete => Method::Delete,
                };
                let outcome = self
                    .http_send(OutboundRequest {
                        method,
                        url: request.url,
                        headers: request.headers,
                        body: request.body,
                        timeout: request
                            .timeout_ms
                            .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
                    })
                    .await;
                Ok(match outcome {
                    Ok(r) => Ok($http::Response {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    }),
                    Err(OutboundError::Denied(why)) => Err($http::HttpError::Denied(why)),
                    Err(OutboundError::Timeout) => Err($http::HttpError::Timeout),
                    Err(OutboundError::Connection(why)) => Err($http::HttpError::Connection(why)),
                    Err(OutboundError::TooLarge) => Err($http::HttpError::TooLarge),
                    Err(OutboundError::Invalid(why)) => Err($http::HttpError::InvalidRequest(why)),
                })
            }
        }

        impl $log::Host for Sandbox {
            async fn log(&mut self, level: $log::Level, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    $log::Level::Trace => tracing::Level::TRACE,
                    $log::Level::Debug => tracing::Level::DEBUG,
                    $log::Level::Info => tracing::Level::INFO,
                    $log::Level::Warn => tracing::Level::WARN,
                    $log::Level::Error => tracing::Level::ERROR,
                };
                self.guest_log(level, &message);
                Ok(())
            }
        }

        impl $clock::Host for Sandbox {
            async fn now(&mut self) -> wasmtime::Result<$t::Timestamp> {
                Ok(jiff::Timestamp::now().as_millisecond())
            }
        }

        impl $state::Host for Sandbox {
            async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
                self.state_get(&key).await
            }

            async fn set(
                &mut self,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), String>> {
                self.state_set(&key, value).await
            }

            async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
                self.state_delete(&key).await
            }
        }
    };
}
pub(crate) use impl_host_imports;

pub(super) mod since_v0_1_0;
pub(super) mod since_v0_2_0;
pub(super) mod since_v0_3_0;

use wasmtime::component::{Component, Linker};
use wasmtime::Store;

use super::contract::{
    Availability, CatalogPage, CatalogRequest, ConfigProblem, Connection, FetchRequest, HookAction,
    HookEvent, LocationInfo, Manifest, Order, OrderStatus, PluginKind, PricedOrder, ProviderError,
    Transaction, TransactionPage, Webhook, WebhookEvent,
};
use super::sandbox::Sandbox;

/// A provider component ready to instantiate, whatever its contract version.
#[derive(Clone)]
pub(crate) enum ProviderPre {
    /// Built against 0.1.x.
    V0_1(since_v0_1_0::ProviderPluginPre<Sandbox>),
    /// Built against 0.2.x.
    V0_2(since_v0_2_0::ProviderPluginPre<Sandbox>),
    /// Built against 0.3.x.
    V0_3(since_v0_3_0::ProviderPluginPre<Sandbox>),
}

/// A hook component ready to instantiate, whatever its contract version.
#[derive(Clone)]
pub(crate) enum HookPre {
    /// Built against 0.1.x.
    V0_1(since_v0_1_0::HookPluginPre<Sandbox>),
    /// Built against 0.2.x.
    V0_2(since_v0_2_0::HookPluginPre<Sandbox>),
    /// Built against 0.3.x.
    V0_3(since_v0_3_0::HookPluginPre<Sandbox>),
}

/// A loaded component of either kind.
#[derive(Clone)]
pub(crate) enum LoadedComponent {
    /// Provider.
    Provider(ProviderPre),
    /// Hook.
    Hook(HookPre),
}

impl LoadedComponent {
    /// Finds which known world and version `component` implements, or explains why none.
    pub(crate) fn detect(linker: &Linker<Sandbox>, component: &Component) -> Result<Self, String> {
        let pre = linker.instantiate_pre(component).map_err(|e| {
            format!("the component needs imports this host does not provide: {e:#}")
        })?;
        // Newest first: a component implements exactly one version of one world.
        if let Ok(p) = since_v0_3_0::ProviderPluginPre::new(pre.clone()) {
            return Ok(LoadedComponent::Provider(ProviderPre::V0_3(p)));
        }
        if let Ok(h) = since_v0_3_0::HookPluginPre::new(pre.clone()) {
            return Ok(LoadedComponent::Hook(HookPre::V0_3(h)));
        }
        if let Ok(p) = since_v0_2_0::ProviderPluginPre::new(pre.clone()) {
            return Ok(LoadedComponent::Provider(ProviderPre::V0_2(p)));
        }
        if let Ok(h) = since_v0_2_0::HookPluginPre::new(pre.clone()) {
            return Ok(LoadedComponent::Hook(HookPre::V0_2(h)));
        }
        let provider_err = match since_v0_1_0::ProviderPluginPre::new(pre.clone()) {
            Ok(p) => return Ok(LoadedComponent::Provider(ProviderPre::V0_1(p))),
            Err(e) => e,
        };
        let hook_err = match since_v0_1_0::HookPluginPre::new(pre) {
            Ok(h) => return Ok(LoadedComponent::Hook(HookPre::V0_1(h))),
            Err(e) => e,
        };
        Err(format!(
            "the component implements no known world: not a posbridge:plugin@0.3, @0.2 or @0.1 provider ({provider_err:#}) nor hook ({hook_err:#})"
        ))
    }

    /// Provider or hook.
    pub(crate) fn kind(&self) -> PluginKind {
        match self {
            LoadedComponent::Provider(_) => PluginKind::Provider,
            LoadedComponent::Hook(_) => PluginKind::Hook,
        }
    }

    /// Reads the plugin's `info`.
    pub(crate) async fn manifest(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Manifest> {
        match self {
            LoadedComponent::Provider(ProviderPre::V0_1(pre)) => {
                since_v0_1_0::provider_manifest(pre, store).await
            }
            LoadedComponent::Hook(HookPre::V0_1(pre)) => {
                since_v0_1_0::hook_manifest(pre, store).await
            }
            LoadedComponent::Provider(ProviderPre::V0_2(pre)) => {
                since_v0_2_0::provider_manifest(pre, store).await
            }
            LoadedComponent::Hook(HookPre::V0_2(pre)) => {
                since_v0_2_0::hook_manifest(pre, store).await
            }
            LoadedComponent::Provider(ProviderPre::V0_3(pre)) => {
                since_v0_3_0::provider_manifest(pre, store).await
            }
            LoadedComponent::Hook(HookPre::V0_3(pre)) => {
                since_v0_3_0::hook_manifest(pre, store).await
            }
        }
    }
}

/// Result of a provider call whose guest ran to completion.
pub(super) type ProviderResult<T> = wasmtime::Result<Result<T, ProviderError>>;

impl ProviderPre {
    /// `validate`.
    pub(crate) async fn validate(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
    ) -> ProviderResult<LocationInfo> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::validate(pre, store, conn).await,
            ProviderPre::V0_2(pre) => since_v0_2_0::validate(pre, store, conn).await,
            ProviderPre::V0_3(pre) => since_v0_3_0::validate(pre, store, conn).await,
        }
    }

    /// `validate` repeated on one live instance, timing each call.
    pub(crate) async fn validate_warm(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        calls: usize,
    ) -> wasmtime::Result<Vec<std::time::Duration>> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::validate_warm(pre, store, conn, calls).await,
            ProviderPre::V0_2(pre) => since_v0_2_0::validate_warm(pre, store, conn, calls).await,
            ProviderPre::V0_3(pre) => since_v0_3_0::validate_warm(pre, store, conn, calls).await,
        }
    }

    /// `fetch-transactions`.
    pub(crate) async fn fetch_transactions(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        request: &FetchRequest,
    ) -> ProviderResult<TransactionPage> {
        match self {
            ProviderPre::V0_1(pre) => {
                since_v0_1_0::fetch_transactions(pre, store, conn, request).await
            }
            ProviderPre::V0_2(pre) => {
                since_v0_2_0::fetch_transactions(pre, store, conn, request).await
            }
            ProviderPre::V0_3(pre) => {
                since_v0_3_0::fetch_transactions(pre, store, conn, request).await
            }
        }
    }

    /// `verify-webhook`.
    pub(crate) async fn verify_webhook(
        &self,
        store: &mut Store<Sandbox>,
        webhook: &Webhook,
        key: &str,
    ) -> wasmtime::Result<bool> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::verify_webhook(pre, store, webhook, key).await,
            ProviderPre::V0_2(pre) => since_v0_2_0::verify_webhook(pre, store, webhook, key).await,
            ProviderPre::V0_3(pre) => since_v0_3_0::verify_webhook(pre, store, webhook, key).await,
        }
    }

    /// `parse-webhook`.
    pub(crate) async fn parse_webhook(
        &self,
        store: &mut Store<Sandbox>,
        webhook: &Webhook,
    ) -> ProviderResult<WebhookEvent> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::parse_webhook(pre, store, webhook).await,
            ProviderPre::V0_2(pre) => since_v0_2_0::parse_webhook(pre, store, webhook).await,
            ProviderPre::V0_3(pre) => since_v0_3_0::parse_webhook(pre, store, webhook).await,
        }
    }

    /// `parse-push`.
    pub(crate) async fn parse_push(
        &self,
        store: &mut Store<Sandbox>,
        body: &[u8],
    ) -> ProviderResult<Vec<Transaction>> {
        match self {
            ProviderPre::V0_1(pre) => since_v0_1_0::parse_push(pre, store, body).await,
            ProviderPre::V0_2(pre) => since_v0_2_0::parse_push(pre, store, body).await,
            ProviderPre::V0_3(pre) => since_v0_3_0::parse_push(pre, store, body).await,
        }
    }
}

/// What a provider built before 0.3 answers for the write and catalog side: it has none.
fn before_0_3<T>(what: &str) -> ProviderResult<T> {
    Ok(Err(ProviderError::Unsupported(format!(
        "{what} needs a provider built against posbridge:plugin@0.3 or later"
    ))))
}

impl ProviderPre {
    /// `submit-order` (0.3 on).
    pub(crate) async fn submit_order(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        order: &Order,
    ) -> ProviderResult<OrderStatus> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("submit-order"),
            ProviderPre::V0_3(pre) => since_v0_3_0::submit_order(pre, store, conn, order).await,
        }
    }

    /// `lookup-order` (0.3 on).
    pub(crate) async fn lookup_order(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        our_order_id: &str,
    ) -> ProviderResult<Option<OrderStatus>> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("lookup-order"),
            ProviderPre::V0_3(pre) => {
                since_v0_3_0::lookup_order(pre, store, conn, our_order_id).await
            }
        }
    }

    /// `price-order` (0.3 on).
    pub(crate) async fn price_order(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        order: &Order,
    ) -> ProviderResult<PricedOrder> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("price-order"),
            ProviderPre::V0_3(pre) => since_v0_3_0::price_order(pre, store, conn, order).await,
        }
    }

    /// `order-status` (0.3 on).
    pub(crate) async fn order_status(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        provider_order_id: &str,
    ) -> ProviderResult<OrderStatus> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("order-status"),
            ProviderPre::V0_3(pre) => {
                since_v0_3_0::get_order_status(pre, store, conn, provider_order_id).await
            }
        }
    }

    /// `fetch-catalog` (0.3 on).
    pub(crate) async fn fetch_catalog(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        request: &CatalogRequest,
    ) -> ProviderResult<CatalogPage> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("fetch-catalog"),
            ProviderPre::V0_3(pre) => since_v0_3_0::fetch_catalog(pre, store, conn, request).await,
        }
    }

    /// `get-availability` (0.3 on).
    pub(crate) async fn get_availability(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        ids: &[String],
    ) -> ProviderResult<Vec<Availability>> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("get-availability"),
            ProviderPre::V0_3(pre) => since_v0_3_0::get_availability(pre, store, conn, ids).await,
        }
    }

    /// `set-availability` (0.3 on).
    pub(crate) async fn set_availability(
        &self,
        store: &mut Store<Sandbox>,
        conn: &Connection,
        changes: &[Availability],
    ) -> ProviderResult<Vec<Availability>> {
        match self {
            ProviderPre::V0_1(_) | ProviderPre::V0_2(_) => before_0_3("set-availability"),
            ProviderPre::V0_3(pre) => {
                since_v0_3_0::set_availability(pre, store, conn, changes).await
            }
        }
    }
}

impl HookPre {
    /// `on-event`.
    pub(crate) async fn on_event(
        &self,
        store: &mut Store<Sandbox>,
        event: &HookEvent,
        config: &str,
    ) -> wasmtime::Result<Result<Vec<HookAction>, String>> {
        match self {
            HookPre::V0_1(pre) => since_v0_1_0::on_event(pre, store, event, config).await,
            HookPre::V0_2(pre) => since_v0_2_0::on_event(pre, store, event, config).await,
            HookPre::V0_3(pre) => since_v0_3_0::on_event(pre, store, event, config).await,
        }
    }

    /// `validate-config`: the hook's verdict on a binding configuration. A 0.1 hook has no
    /// such export and, as under 0.1, accepts any JSON object.
    pub(crate) async fn validate_config(
        &self,
        store: &mut Store<Sandbox>,
        config: &str,
    ) -> wasmtime::Result<Result<(), Vec<ConfigProblem>>> {
        match self {
            HookPre::V0_1(_) => Ok(Ok(())),
            HookPre::V0_2(pre) => since_v0_2_0::validate_config(pre, store, config).await,
            HookPre::V0_3(pre) => since_v0_3_0::validate_config(pre, store, config).await,
        }
    }

    /// Whether the hook checks its configuration (`validate-config`, contract 0.2 on).
    pub(crate) fn validates_config(&self) -> bool {
        matches!(self, HookPre::V0_2(_) | HookPre::V0_3(_))
    }
}

/// Adds every import any supported contract version needs to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    since_v0_1_0::add_to_linker(linker)?;
    since_v0_2_0::add_to_linker(linker)?;
    since_v0_3_0::add_to_linker(linker)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};

    /// The repository's `wit/` folder.
    fn wit_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ has a parent")
            .join("wit")
    }

    /// `relative path → sha256` of every file under `wit/<folder>`, walked recursively.
    fn digests(folder: &str) -> BTreeMap<String, String> {
        let root = wit_dir();
        let mut out = BTreeMap::new();
        let mut dirs = vec![root.join(folder)];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                let relative = path
                    .strip_prefix(&root)
                    .expect("walked from the wit folder")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(relative, hex::encode(Sha256::digest(&bytes)));
            }
        }
        out
    }

    /// The SDK builds from its own folder (it is published on its own), so it carries a
    /// copy of the contract it targets: that copy must be the released folder, byte for byte.
    #[test]
    fn sdk_vendors_the_latest_contract() {
        let sdk_wit = wit_dir().join("../plugins/sdk/wit");
        let released = wit_dir().join("v0.3.0");
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .map(|e| {
                    e.expect("directory entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names(&sdk_wit),
            names(&released),
            "plugins/sdk/wit/ vs wit/v0.2.0/"
        );
        for name in names(&released) {
            let copy = std::fs::read(sdk_wit.join(&name)).expect("the SDK's copy");
            let original = std::fs::read(released.join(&name)).expect("the released file");
            assert!(
                copy == original,
                "plugins/sdk/wit/{name} differs from wit/v0.2.0/{name}: copy the released file"
            );
        }
    }

    #[test]
    fn released_contracts_are_frozen() {
        let sums_path = wit_dir().join("SHA256SUMS");
        let sums = std::fs::read_to_string(&sums_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", sums_path.display()));
        // `sha256sum` format: "<hex>  <version folder>/<file>".
        let mut released: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let (digest, file) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("SHA256SUMS line {line:?} is not `<hex>  <path>`"));
            let version = file.split('/').next().unwrap_or(file);
            released
                .entry(version.to_owned())
                .or_default()
                .insert(file.to_owned(), digest.to_owned());
        }
        for version in ["v0.1.0", "v0.2.0"] {
            assert!(
                released.contains_key(version),
                "wit/SHA256SUMS must list the released contract {version}"
            );
        }
        for (version, expected) in &released {
            let actual = digests(version);
            assert_eq!(
                &actual, expected,
                "wit/{version}/ differs from the digests in wit/SHA256SUMS. A released \
                 contract must never change: components in the field were built against it \
                 and the host's bindings for {version} must keep meaning the same thing. Undo \
                 the edit and make it in the next version's folder instead (see wit/README.md)."
            );
        }
    }
}
