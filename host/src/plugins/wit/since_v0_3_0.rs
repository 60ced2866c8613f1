//! Bindings for `posbridge:plugin@0.3.x` and conversions to the host's contract types.
//!
//! They read the frozen folder `wit/v0.3.0/` (see `wit/README.md`). What 0.3 adds over 0.2
//! is the provider's write and catalog side, declared by capabilities: `submit-order`,
//! `lookup-order`, `price-order`, `order-status`, `fetch-catalog`, `get-availability`,
//! `set-availability`; webhooks that also carry order updates, catalog and availability
//! changes; and provider errors that tell a permanent rejection, a timeout and a conflict
//! from a retryable upstream failure. The imports are the same functions as 0.2's under the
//! 0.3 package name, so they call the same [`Sandbox`] methods.
//!
//! Size: about 760 lines, all conversions between this version's generated bindings and the
//! contract types, one function per record: one module per contract version is the pattern
//! (Zed's extension host), and nothing else lives here.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Store;

use crate::plugins::contract as c;
use crate::plugins::sandbox::Sandbox;

mod provider_world {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "provider-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

mod hook_world {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
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

/// Adds the 0.3 imports (`http`, `log`, `clock`, `state`) to `linker`.
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
        contract: "0.3".into(),
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
                    p::Capability::SubmitOrders => "submit-orders",
                    p::Capability::PriceOrders => "price-orders",
                    p::Capability::OrderStatus => "order-status",
                    p::Capability::FetchCatalog => "fetch-catalog",
                    p::Capability::FetchCatalogIncremental => "fetch-catalog-incremental",
                    p::Capability::ReadAvailability => "read-availability",
                    p::Capability::WriteAvailability => "write-availability",
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
        contract: "0.3".into(),
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
        t::ProviderError::Rejected(r) => c::ProviderError::Rejected(c::Rejection {
            status: r.status,
            code: r.code,
            message: r.message,
            field: r.field,
        }),
        t::ProviderError::TimedOut(m) => c::ProviderError::TimedOut(m),
        t::ProviderError::Conflict(m) => c::ProviderError::Conflict(m),
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
            order_updates: e.order_updates.into_iter().map(order_update).collect(),
            catalog_changed: e.catalog_changed,
            availability: e.availability.into_iter().map(availability_out).collect(),
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

// ---- the write and catalog side ------------------------------------------------------

fn order(o: &c::Order) -> p::Order {
    p::Order {
        our_order_id: o.our_order_id.clone(),
        currency: o.currency.clone(),
        lines: o
            .lines
            .iter()
            .map(|l| p::OrderLine {
                line_id: l.line_id.clone(),
                item_id: l.item_id.clone(),
                item_group_id: l.item_group_id.clone(),
                variation_id: l.variation_id.clone(),
                name: l.name.clone(),
                quantity: l.quantity.clone(),
                unit_price: l.unit_price,
                modifiers: l
                    .modifiers
                    .iter()
                    .map(|m| p::OrderModifier {
                        provider_id: m.provider_id.clone(),
                        group_id: m.group_id.clone(),
                        name: m.name.clone(),
                        quantity: m.quantity,
                        unit_price: m.unit_price,
                    })
                    .collect(),
                note: l.note.clone(),
            })
            .collect(),
        fulfilment: p::Fulfilment {
            kind: match o.fulfilment.kind {
                c::FulfilmentKind::Pickup => p::FulfilmentKind::Pickup,
                c::FulfilmentKind::Delivery => p::FulfilmentKind::Delivery,
                c::FulfilmentKind::DineIn => p::FulfilmentKind::DineIn,
            },
            customer_name: o.fulfilment.customer_name.clone(),
            customer_phone: o.fulfilment.customer_phone.clone(),
            customer_email: o.fulfilment.customer_email.clone(),
            scheduled_at: o.fulfilment.scheduled_at_ms,
            prep_time_minutes: o.fulfilment.prep_time_minutes,
            delivery_address: o.fulfilment.delivery_address.clone(),
            note: o.fulfilment.note.clone(),
        },
        total: o.total,
        payment: o.payment.as_ref().map(|pay| p::ExternalPayment {
            amount: pay.amount,
            tip: pay.tip,
            source: pay.source.clone(),
        }),
        source_name: o.source_name.clone(),
    }
}

fn order_status(s: p::OrderStatus) -> c::OrderStatus {
    c::OrderStatus {
        provider_order_id: s.provider_order_id,
        our_order_id: s.our_order_id,
        state: match s.state {
            p::OrderState::Pending => c::OrderState::Pending,
            p::OrderState::Accepted => c::OrderState::Accepted,
            p::OrderState::InProgress => c::OrderState::InProgress,
            p::OrderState::Ready => c::OrderState::Ready,
            p::OrderState::Completed => c::OrderState::Completed,
            p::OrderState::Canceled => c::OrderState::Canceled,
            p::OrderState::Rejected => c::OrderState::Rejected,
        },
        provider_state: s.provider_state,
        version: s.version,
        updated_at_ms: s.updated_at,
        ready_at_ms: s.ready_at,
        total: s.total,
    }
}

fn order_update(u: p::OrderUpdate) -> c::OrderUpdate {
    c::OrderUpdate {
        provider_order_id: u.provider_order_id,
        version: u.version,
        status: u.status.map(order_status),
    }
}

fn stock_status_out(s: p::StockStatus) -> c::StockStatus {
    match s {
        p::StockStatus::InStock => c::StockStatus::InStock,
        p::StockStatus::OutOfStock => c::StockStatus::OutOfStock,
        p::StockStatus::Quantity => c::StockStatus::Quantity,
    }
}

fn availability_out(a: p::Availability) -> c::Availability {
    c::Availability {
        provider_id: a.provider_id,
        status: stock_status_out(a.status),
        quantity: a.quantity,
        until_ms: a.until,
    }
}

fn availability_in(a: &c::Availability) -> p::Availability {
    p::Availability {
        provider_id: a.provider_id.clone(),
        status: match a.status {
            c::StockStatus::InStock => p::StockStatus::InStock,
            c::StockStatus::OutOfStock => p::StockStatus::OutOfStock,
            c::StockStatus::Quantity => p::StockStatus::Quantity,
        },
        quantity: a.quantity.clone(),
        until: a.until_ms,
    }
}

fn catalog_page(page: p::CatalogPage) -> c::CatalogPage {
    c::CatalogPage {
        unchanged: page.unchanged,
        full_snapshot: page.full_snapshot,
        currency: page.currency,
        categories: page
            .categories
            .into_iter()
            .map(|cat| c::CatalogCategory {
                provider_id: cat.provider_id,
                name: cat.name,
                parent_id: cat.parent_id,
            })
            .collect(),
        items: page
            .items
            .into_iter()
            .map(|i| c::CatalogItem {
                provider_id: i.provider_id,
                name: i.name,
                description: i.description,
                category_ids: i.category_ids,
                variations: i
                    .variations
                    .into_iter()
                    .map(|v| c::CatalogVariation {
                        provider_id: v.provider_id,
                        name: v.name,
                        price: v.price,
                    })
                    .collect(),
                modifier_groups: i
                    .modifier_groups
                    .into_iter()
                    .map(|g| c::ModifierGroupRef {
                        group_id: g.group_id,
                        min_selected: g.min_selected,
                        max_selected: g.max_selected,
                    })
                    .collect(),
                tax_ids: i.tax_ids,
                orderable: i.orderable,
            })
            .collect(),
        modifier_groups: page
            .modifier_groups
            .into_iter()
            .map(|g| c::ModifierGroup {
                provider_id: g.provider_id,
                name: g.name,
                min_selected: g.min_selected,
                max_selected: g.max_selected,
                required: g.required,
                options: g
                    .options
                    .into_iter()
                    .map(|o| c::ModifierOption {
                        provider_id: o.provider_id,
                        name: o.name,
                        price: o.price,
                        is_default: o.is_default,
                    })
                    .collect(),
            })
            .collect(),
        taxes: page
            .taxes
            .into_iter()
            .map(|t| c::CatalogTax {
                provider_id: t.provider_id,
                name: t.name,
                percentage: t.percentage,
                inclusive: t.inclusive,
            })
            .collect(),
        deleted: page
            .deleted
            .into_iter()
            .map(|d| c::CatalogDeletion {
                kind: match d.kind {
                    p::CatalogKind::Category => c::CatalogKind::Category,
                    p::CatalogKind::Item => c::CatalogKind::Item,
                    p::CatalogKind::Variation => c::CatalogKind::Variation,
                    p::CatalogKind::ModifierGroup => c::CatalogKind::ModifierGroup,
                    p::CatalogKind::ModifierOption => c::CatalogKind::ModifierOption,
                    p::CatalogKind::Tax => c::CatalogKind::Tax,
                },
                provider_id: d.provider_id,
            })
            .collect(),
        next_cursor: page.next_cursor,
        sync_token: page.sync_token,
    }
}

pub(crate) async fn submit_order(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    o: &c::Order,
) -> super::ProviderResult<c::OrderStatus> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_submit_order(&mut *store, &connection(conn), &order(o))
        .await?;
    Ok(result.map(order_status).map_err(provider_error))
}

pub(crate) async fn lookup_order(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    our_order_id: &str,
) -> super::ProviderResult<Option<c::OrderStatus>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_lookup_order(&mut *store, &connection(conn), our_order_id)
        .await?;
    Ok(result
        .map(|found| found.map(order_status))
        .map_err(provider_error))
}

pub(crate) async fn price_order(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    o: &c::Order,
) -> super::ProviderResult<c::PricedOrder> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_price_order(&mut *store, &connection(conn), &order(o))
        .await?;
    Ok(result
        .map(|priced| c::PricedOrder {
            currency: priced.currency,
            subtotal: priced.subtotal,
            tax: priced.tax,
            discount: priced.discount,
            total: priced.total,
            lines: priced.lines,
        })
        .map_err(provider_error))
}

pub(crate) async fn get_order_status(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    provider_order_id: &str,
) -> super::ProviderResult<c::OrderStatus> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_get_order_status(&mut *store, &connection(conn), provider_order_id)
        .await?;
    Ok(result.map(order_status).map_err(provider_error))
}

pub(crate) async fn fetch_catalog(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    request: &c::CatalogRequest,
) -> super::ProviderResult<c::CatalogPage> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let request = p::CatalogRequest {
        cursor: request.cursor.clone(),
        since: request.since.clone(),
    };
    let result = instance
        .posbridge_plugin_provider()
        .call_fetch_catalog(&mut *store, &connection(conn), &request)
        .await?;
    Ok(result.map(catalog_page).map_err(provider_error))
}

pub(crate) async fn get_availability(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    ids: &[String],
) -> super::ProviderResult<Vec<c::Availability>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let result = instance
        .posbridge_plugin_provider()
        .call_get_availability(&mut *store, &connection(conn), ids)
        .await?;
    Ok(result
        .map(|list| list.into_iter().map(availability_out).collect())
        .map_err(provider_error))
}

pub(crate) async fn set_availability(
    pre: &ProviderPluginPre<Sandbox>,
    store: &mut Store<Sandbox>,
    conn: &c::Connection,
    changes: &[c::Availability],
) -> super::ProviderResult<Vec<c::Availability>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let changes: Vec<p::Availability> = changes.iter().map(availability_in).collect();
    let result = instance
        .posbridge_plugin_provider()
        .call_set_availability(&mut *store, &connection(conn), &changes)
        .await?;
    Ok(result
        .map(|list| list.into_iter().map(availability_out).collect())
        .map_err(provider_error))
}
