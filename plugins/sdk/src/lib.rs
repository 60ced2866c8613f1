//! The guest SDK for posbridge plugins (`posbridge:plugin@0.3.0`).
//!
//! It generates the WIT bindings once and re-exports them under short paths, so a plugin crate
//! needs no `wit_bindgen::generate!` of its own, and gives the helpers a provider needs:
//!
//! | module | what |
//! |---|---|
//! | [`provider`] | the provider world's `Guest` trait and records; export with [`export_provider!`] |
//! | [`hook`] | the hook world's `Guest` trait and records; export with [`export_hook!`] |
//! | [`types`] | the shared types: [`types::Transaction`], [`types::ProviderError`], … |
//! | [`http`] | a request builder over the host's `http` import, query/URL helpers |
//! | [`errors`] | an HTTP response or transport error → [`types::ProviderError`] |
//! | [`money`] | exact decimal text → integer minor units (never through `f64`) |
//! | [`time`] | RFC 3339 / Toast timestamps ↔ epoch milliseconds |
//! | [`signature`] | HMAC-SHA256, base64, hex and constant-time comparison for webhooks |
//! | [`config`] | a hook's binding configuration: parse it, and check it for `validate-config` |
//! | [`log`], [`state`], [`clock`] | the other host imports, with JSON helpers for state |
//!
//! ```ignore
//! use posbridge_sdk::provider::{Connection, Guest, PluginInfo, /* … */};
//! struct MyPos;
//! impl Guest for MyPos { /* … */ }
//! posbridge_sdk::export_provider!(MyPos);
//! ```
//!
//! The contract is vendored in the crate's `wit/` folder (a copy of the host repository's
//! frozen `wit/v0.3.0/`), so the crate builds on its own, from crates.io or from the copy
//! `posbridge plugin new` writes.
//!
//! Outside WebAssembly (`cargo test` on the build machine) the host imports are replaced by
//! in-process fakes — a thread-local state store, a settable clock, captured logs and a mockable
//! HTTP handler — see [`testing`], so provider logic can be unit-tested natively.

#![warn(missing_docs)]

/// The generated bindings. Use the short paths ([`types`], [`provider`], [`hook`]) instead.
#[doc(hidden)]
pub mod bindings {
    /// The `provider-plugin` world: generates the shared types, the imports and the
    /// `provider` export.
    #[allow(missing_docs, clippy::all)]
    pub mod provider_world {
        wit_bindgen::generate!({
            world: "provider-plugin",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "posbridge_sdk::bindings::provider_world",
            additional_derives: [PartialEq],
            generate_unused_types: true,
        });
    }

    /// The `hook-plugin` world: only the `hook` export is generated here; the imports and
    /// types are the ones of [`provider_world`], so there is one set of types.
    #[allow(missing_docs, clippy::all)]
    pub mod hook_world {
        wit_bindgen::generate!({
            world: "hook-plugin",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "posbridge_sdk::bindings::hook_world",
            additional_derives: [PartialEq],
            with: {
                "posbridge:plugin/types@0.3.0": crate::bindings::provider_world::posbridge::plugin::types,
                "posbridge:plugin/http@0.3.0": crate::bindings::provider_world::posbridge::plugin::http,
                "posbridge:plugin/log@0.3.0": crate::bindings::provider_world::posbridge::plugin::log,
                "posbridge:plugin/clock@0.3.0": crate::bindings::provider_world::posbridge::plugin::clock,
                "posbridge:plugin/state@0.3.0": crate::bindings::provider_world::posbridge::plugin::state,
            },
        });
    }

    pub(crate) use provider_world::posbridge::plugin as imports;
}

/// The types shared by every world (`posbridge:plugin/types`).
pub mod types {
    pub use crate::bindings::imports::types::{
        CardInfo, CustomerRef, Event, LineItem, LocationInfo, Money, ProviderError, RateLimit,
        RefundRef, Rejection, StaffRef, Tender, Timestamp, Transaction, TransactionStatus,
    };
}

/// The provider world's export (`posbridge:plugin/provider`): implement [`Guest`](crate::provider::Guest) and export
/// it with [`export_provider!`](crate::export_provider).
pub mod provider {
    pub use crate::bindings::provider_world::exports::posbridge::plugin::provider::{
        Availability, Capability, CatalogCategory, CatalogDeletion, CatalogItem, CatalogKind,
        CatalogPage, CatalogRequest, CatalogTax, CatalogVariation, Connection, CredentialField,
        Environment, ExternalPayment, FetchRequest, Fulfilment, FulfilmentKind, Guest,
        ModifierGroup, ModifierGroupRef, ModifierOption, Order, OrderLine, OrderModifier,
        OrderState, OrderStatus, OrderUpdate, PluginInfo, PricedOrder, StockStatus,
        TransactionPage, Webhook, WebhookEvent,
    };
    pub use crate::types::{LocationInfo, ProviderError, Rejection, Timestamp, Transaction};
}

/// The hook world's export (`posbridge:plugin/hook`): implement [`Guest`](crate::hook::Guest) and export it with
/// [`export_hook!`](crate::export_hook).
pub mod hook {
    pub use crate::bindings::hook_world::exports::posbridge::plugin::hook::{
        Action, ConfigProblem, CustomEvent, Guest, HookInfo, Tag,
    };
    pub use crate::types::Event;
}

pub mod clock;
pub mod config;
pub mod errors;
mod ext;
pub mod http;
pub mod log;
pub mod money;
pub mod signature;
pub mod state;
mod sys;
pub mod time;

#[cfg(not(target_arch = "wasm32"))]
pub use sys::testing;

/// Re-exported so plugins use the same `serde_json` (built with `arbitrary_precision`, so JSON
/// numbers keep their exact text for [`money`]).
pub use serde_json;

/// Exports a type implementing [`provider::Guest`] as the component's `provider` interface.
/// Outside WebAssembly it exports nothing (so native unit tests link) and only checks the
/// trait is implemented.
///
/// ```ignore
/// struct MyPos;
/// impl posbridge_sdk::provider::Guest for MyPos { /* … */ }
/// posbridge_sdk::export_provider!(MyPos);
/// ```
#[macro_export]
macro_rules! export_provider {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::provider_world::export!($ty with_types_in $crate::bindings::provider_world);
        // Natively (unit tests) nothing is exported; only check the trait is implemented.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn assert_guest<T: $crate::provider::Guest>() {}
            let _ = assert_guest::<$ty>;
        };
    };
}

/// Implements the operations new in contract 0.3.0 (orders, catalog, availability) as
/// `unsupported`, for a provider that does not declare their capabilities (the host refuses
/// them before calling, so these answers are a second line). Use it inside the
/// `impl Guest for …` block; `$who` names the plugin in the messages.
///
/// ```ignore
/// impl posbridge_sdk::provider::Guest for MyPos {
///     // info, validate, fetch_transactions, … as in 0.2
///     posbridge_sdk::unsupported_two_way!("My POS");
/// }
/// ```
#[macro_export]
macro_rules! unsupported_two_way {
    ($who:expr) => {
        fn submit_order(
            _connection: $crate::provider::Connection,
            _order: $crate::provider::Order,
        ) -> Result<$crate::provider::OrderStatus, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not take orders (submit-order)",
                $who
            )))
        }

        fn lookup_order(
            _connection: $crate::provider::Connection,
            _our_order_id: String,
        ) -> Result<Option<$crate::provider::OrderStatus>, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not take orders (lookup-order)",
                $who
            )))
        }

        fn price_order(
            _connection: $crate::provider::Connection,
            _order: $crate::provider::Order,
        ) -> Result<$crate::provider::PricedOrder, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not price orders (price-order)",
                $who
            )))
        }

        fn get_order_status(
            _connection: $crate::provider::Connection,
            _provider_order_id: String,
        ) -> Result<$crate::provider::OrderStatus, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not report order status (get-order-status)",
                $who
            )))
        }

        fn fetch_catalog(
            _connection: $crate::provider::Connection,
            _request: $crate::provider::CatalogRequest,
        ) -> Result<$crate::provider::CatalogPage, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not provide a catalog (fetch-catalog)",
                $who
            )))
        }

        fn get_availability(
            _connection: $crate::provider::Connection,
            _provider_ids: Vec<String>,
        ) -> Result<Vec<$crate::provider::Availability>, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not report availability (get-availability)",
                $who
            )))
        }

        fn set_availability(
            _connection: $crate::provider::Connection,
            _changes: Vec<$crate::provider::Availability>,
        ) -> Result<Vec<$crate::provider::Availability>, $crate::types::ProviderError> {
            Err($crate::types::ProviderError::Unsupported(format!(
                "{} does not take availability changes (set-availability)",
                $who
            )))
        }
    };
}

/// Exports a type implementing [`hook::Guest`] as the component's `hook` interface.
/// Outside WebAssembly it exports nothing and only checks the trait is implemented.
///
/// ```ignore
/// struct MyHook;
/// impl posbridge_sdk::hook::Guest for MyHook { /* … */ }
/// posbridge_sdk::export_hook!(MyHook);
/// ```
#[macro_export]
macro_rules! export_hook {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::hook_world::export!($ty with_types_in $crate::bindings::hook_world);
        // Natively (unit tests) nothing is exported; only check the trait is implemented.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn assert_guest<T: $crate::hook::Guest>() {}
            let _ = assert_guest::<$ty>;
        };
    };
}
