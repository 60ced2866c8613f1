//! Bindings for `posbridge:plugin@0.2.x` and conversions to the host's contract types.
//!
//! They read the frozen folder `wit/v0.2.0/` (see `wit/README.md`). What 0.2 adds over 0.1:
//! a sale's staff, line items and refunds, and a hook's `validate-config` export and
//! `config-schema`. The imports are the same functions as 0.1's under the 0.2 package name,
//! so they call the same [`Sandbox`] methods.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Store;

use crate::plugins::contract as c;
use crate::plugins::sandbox::Sandbox;

mod provider_world {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "provider-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

mod hook_world {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "hook-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "posbridge:plugin/types": super::provider_world::posbridge::plugin::types,
            "posbridge:plugin/http": super::provider_world::posbridge::plugin::http,
            "posbridge:plugin/log": super::provider_world::posbridge::plugin::log,
            "posbridge:plugin/clock": super::provider_world::posbridge::plugin::clock,
            "posbridge:plugin/state": super::provider_world::posbridge::plugin::state,
        },
    });
}

pub(crate) use hook_world::HookPluginPre;
pub(crate) use provider_world::ProviderPluginPre;

use hook_world::exports::posbridge::plugin::hook as h;
use provider_world::exports::posbridge::plugin::provider as p;
use provider_world::posbridge::plugin::{clock, http, log, state, types as t};

/// Adds the 0.2 imports (`http`, `log`, `clock`, `state`) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    provider_world::ProviderPlugin::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |s| s)
}

// ---- host imports -------------------------------------------------------------------

super::impl_host_imports!(t, http, log, clock, state);

// ---- exports ------------------------------------------------------------------------

pub(crate) async fn provider_manifest(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
) -> wasmtime::Result<c::Manifest> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let info = instance
        .posbridge_plugin_provider()
        .call_info(&mut *store)
        .await?;
    Ok(c::Manifest {
        id: info.id,
        kind: c::PluginKind::Provider,
        name: info.name,
        version: info.version,
        contract: "0.2".into(),
        allowed_hosts: info.allowed_hosts,
        capabilities: info
            .capabilities
            .iter()
            .map(|cap| {
                match cap {
                    p::Capability::Validate => "validate",
                    p::Capability::FetchTransactions => "fetch-transactions",
                    p::Capability::Webhooks => "webhooks",
                    p::Capability::Push => "push",
                }
                .to_owned()
            })
            .collect(),
        credential_fields: info
            .credential_fields
            .into_iter()
            .map(|f| c::CredentialField {
                name: f.name,
                label: f.label,
                secret: f.secret,
                required: f.required,
            })
            .collect(),
        events: Vec::new(),
        config_schema: None,
    })
}

pub(crate) async fn hook_manifest(
    pre: &HookPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
) -> wasmtime::Result<c::Manifest> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let info = instance
        .posbridge_plugin_hook()
        .call_info(&mut *store)
        .await?;
    // Shown to operators and forms as JSON, so it must be a JSON object to install.
    let config_schema = match info.config_schema {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(schema @ serde_json::Value::Object(_)) => Some(schema),
            Ok(_) => return Err(wasmtime::Error::msg("config-schema is not a JSON object")),
            Err(e) => {
                return Err(wasmtime::Error::msg(format!(
                    "config-schema is not JSON: {e}"
                )))
            }
        },
    };
    Ok(c::Manifest {
        id: info.id,
        kind: c::PluginKind::Hook,
        name: info.name,
        version: info.version,
        contract: "0.2".into(),
        allowed_hosts: info.allowed_hosts,
        capabilities: Vec::new(),
        credential_fields: Vec::new(),
        events: info.events,
        config_schema,
    })
}

fn connection(conn: &c::Connection) -> p::Connection {
    p::Connection {
        credentials: conn.credentials.clone(),
        location_id: conn.location_id.clone(),
        environment: match conn.environment {
            c::Environment::Sandbox => p::Environment::Sandbox,
            c::Environment::Production => p::Environment::Production,
        },
        base_url: conn.base_url.clone(),
    }
}

fn provider_error(e: t::ProviderError) -> c::ProviderError {
    match e {
        t::ProviderError::InvalidCredentials(m) => c::ProviderError::InvalidCredentials(m),
        t::ProviderError::LocationNotFound(m) => c::ProviderError::LocationNotFound(m),
        t::ProviderError::PermissionDenied(m) => c::ProviderError::PermissionDenied(m),
        t::ProviderError::RateLimited(r) => c::ProviderError::RateLimited {
            message: r.message,
            retry_after_ms: r.retry_after_ms,
        },
        t::ProviderError::Upstream(m) => c::ProviderError::Upstream(m),
        t::ProviderError::BadPayload(m) => c::ProviderError::BadPayload(m),
        t::ProviderError::Unsupported(m) => c::ProviderError::Unsupported(m),
    }
}

fn transaction(tx: t::Transaction) -> c::Transaction {
    c::Transaction {
        external_id: tx.external_id,
        order_id: tx.order_id,
        location_id: tx.location_id,
        occurred_at_ms: tx.occurred_at,
        updated_at_ms: tx.updated_at,
        currency: tx.currency,
        total: tx.total,
        subtotal: tx.subtotal,
        tax: tx.tax,
        tip: tx.tip,
        discount: tx.discount,
        refunded: tx.refunded,
        tender: match tx.tender {
            t::Tender::Cash => c::Tender::Cash,
            t::Tender::Card => c::Tender::Card,
            t::Tender::GiftCard => c::Tender::GiftCard,
            t::Tender::Wallet => c::Tender::Wallet,
            t::Tender::BankTransfer => c::Tender::BankTransfer,
            t::Tender::Other => c::Tender::Other,
        },
        card: tx.card.map(|card| c::CardInfo {
            brand: card.brand,
            last4: card.last4,
            fingerprint: card.fingerprint,
        }),
        customer: tx.customer.map(|cu| c::CustomerRef {
            provider_customer_id: cu.provider_customer_id,
            phone: cu.phone,
            email: cu.email,
            name: cu.name,
        }),
        status: match tx.status {
            t::TransactionStatus::Completed => c::TransactionStatus::Completed,
            t::TransactionStatus::Pending => c::TransactionStatus::Pending,
            t::TransactionStatus::Voided => c::TransactionStatus::Voided,
            t::TransactionStatus::Failed => c::TransactionStatus::Failed,
        },
        staff: tx.staff.map(|s| c::StaffRef {
            id: s.id,
            name: s.name,
        }),
        line_items: tx
            .line_items
            .into_iter()
            .map(|l| c::LineItem {
                id: l.id,
                name: l.name,
                item_id: l.item_id,
                quantity: l.quantity,
                unit_price: l.unit_price,
                total: l.total,
                category: l.category,
            })
            .collect(),
        refunds: tx
            .refunds
            .into_iter()
            .map(|r| c::RefundRef {
                id: r.id,
                amount: r.amount,
                created_at_ms: r.created_at,
                reason: r.reason,
            })
            .collect(),
    }
}

fn webhook(w: &c::Webhook) -> p::Webhook {
    p::Webhook {
        url: w.url.clone(),
        headers: w.headers.clone(),
        body: w.body.clone(),
    }
}

pub(crate) async fn validate(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
) -> super::ProviderResult<c::LocationInfo> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_validate(&mut *store, &connection(conn))
        .await?;
    Ok(result
        .map(|l| c::LocationInfo {
            id: l.id,
            name: l.name,
            timezone: l.timezone,
            currency: l.currency,
            merchant_id: l.merchant_id,
            business_name: l.business_name,
            status: l.status,
        })
        .map_err(provider_error))
}

/// Instantiates once and calls `validate` `calls` times, timing each call: the cost of a
/// call on a live instance, for `plugin bench`.
pub(crate) async fn validate_warm(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    calls: usize,
) -> wasmtime::Result<Vec<std::time::Duration>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let conn = connection(conn);
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = std::time::Instant::now();
        let _ = instance
            .posbridge_plugin_provider()
            .call_validate(&mut *store, &conn)
            .await?;
        times.push(started.elapsed());
    }
    Ok(times)
}

pub(crate) async fn fetch_transactions(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    request: &c::FetchRequest,
) -> super::ProviderResult<c::TransactionPage> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let request = p::FetchRequest {
        start: request.start_ms,
        end: request.end_ms,
        cursor: request.cursor.clone(),
    };
    let result = instance
        .posbridge_plugin_provider()
        .call_fetch_transactions(&mut *store, &connection(conn), &request)
        .await?;
    Ok(result
        .map(|page| c::TransactionPage {
            transactions: page.transactions.into_iter().map(transaction).collect(),
            next_cursor: page.next_cursor,
        })
        .map_err(provider_error))
}

pub(crate) async fn verify_webhook(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    w: &c::Webhook,
    key: &str,
) -> wasmtime::Result<bool> {
    let instance = pre.instantiate_async(&mut *store).await?;
    instance
        .posbridge_plugin_provider()
        .call_verify_webhook(&mut *store, &webhook(w), key)
        .await
}

pub(crate) async fn parse_webhook(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    w: &c::Webhook,
) -> super::ProviderResult<c::WebhookEvent> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_parse_webhook(&mut *store, &webhook(w))
        .await?;
    Ok(result
        .map(|e| c::WebhookEvent {
            event_id: e.event_id,
            event_type: e.event_type,
            transactions: e.transactions.into_iter().map(transaction).collect(),
            order_updates: Vec::new(),
            catalog_changed: false,
            availability: Vec::new(),
        })
        .map_err(provider_error))
}

pub(crate) async fn parse_push(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    body: &[u8],
) -> super::ProviderResult<Vec<c::Transaction>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_parse_push(&mut *store, body)
        .await?;
    Ok(result
        .map(|txs| txs.into_iter().map(transaction).collect())
        .map_err(provider_error))
}

pub(crate) async fn validate_config(
    pre: &HookPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    config: &str,
) -> wasmtime::Result<Result<(), Vec<c::ConfigProblem>>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_hook()
        .call_validate_config(&mut *store, config)
        .await?;
    Ok(result.map_err(|problems| {
        problems
            .into_iter()
            .map(|p| c::ConfigProblem {
                field: p.field,
                message: p.message,
            })
            .collect()
    }))
}

pub(crate) async fn on_event(
    pre: &HookPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    event: &c::HookEvent,
    config: &str,
) -> wasmtime::Result<Result<Vec<c::HookAction>, String>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let event = t::Event {
        tenant: event.tenant.clone(),
        seq: event.seq,
        kind: event.kind.clone(),
        at: event.at_ms,
        data: event.data.clone(),
    };
    let result = instance
        .posbridge_plugin_hook()
        .call_on_event(&mut *store, &event, config)
        .await?;
    Ok(result.map(|actions| {
        actions
            .into_iter()
            .map(|a| match a {
                h::Action::Emit(e) => c::HookAction::Emit {
                    kind: e.kind,
                    data: e.data,
                },
                h::Action::TagTransaction(tag) => c::HookAction::TagTransaction {
                    target: tag.target,
                    tag: tag.tag,
                },
                h::Action::TagCustomer(tag) => c::HookAction::TagCustomer {
                    target: tag.target,
                    tag: tag.tag,
                },
            })
            .collect()
    }))
}
