//! The plugin contract as the rest of the host sees it: plain Rust types, independent of
//! any WIT version. Each `wit::since_*` module converts between these and its bindings, so
//! a new contract version adds a module there and nothing changes elsewhere.
//!
//! Size: about 950 lines (a tenth of them tests), because this is the one
//! version-independent mirror of every record of every contract version, the host's side of
//! the WIT; split by world it would send readers to two places for one interface.

use serde::{Deserialize, Serialize};

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A POS provider.
    Provider,
    /// An event hook.
    Hook,
}

impl PluginKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Provider => "provider",
            PluginKind::Hook => "hook",
        }
    }
}

/// What a plugin says about itself, read from `info` at install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// Plugin id.
    pub id: String,
    /// Provider or hook.
    pub kind: PluginKind,
    /// Display name.
    pub name: String,
    /// The plugin's semver.
    pub version: String,
    /// The WIT contract version it was built against ("0.1").
    pub contract: String,
    /// Hosts it declares.
    pub allowed_hosts: Vec<String>,
    /// Provider capabilities (`validate`, `fetch-transactions`, `webhooks`, `push`, and since
    /// contract 0.3 `submit-orders`, `price-orders`, `order-status`, `fetch-catalog`,
    /// `fetch-catalog-incremental`, `read-availability`, `write-availability`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Provider credential fields.
    #[serde(default)]
    pub credential_fields: Vec<CredentialField>,
    /// Hook event types.
    #[serde(default)]
    pub events: Vec<String>,
    /// A hook's JSON Schema of its binding configuration (contract 0.2 and later), for forms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
}

/// A credential a provider needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CredentialField {
    /// Key.
    pub name: String,
    /// Label.
    pub label: String,
    /// Sealed at rest, never shown.
    pub secret: bool,
    /// Must be present.
    pub required: bool,
}

/// Upstream environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Sandbox.
    Sandbox,
    /// Production.
    #[default]
    Production,
}

/// An integration's connection, decrypted for one call.
#[derive(Clone, Default)]
pub(crate) struct Connection {
    /// Credential values by field name.
    pub credentials: Vec<(String, String)>,
    /// Provider location id.
    pub location_id: String,
    /// Environment.
    pub environment: Environment,
    /// Base URL override.
    pub base_url: Option<String>,
}

impl std::fmt::Debug for Connection {
    // Credentials must never reach a log line through a `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field(
                "credentials",
                &format_args!("<{} redacted>", self.credentials.len()),
            )
            .field("location_id", &self.location_id)
            .field("environment", &self.environment)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// Location metadata from `validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct LocationInfo {
    /// Provider location id.
    pub id: String,
    /// Name.
    pub name: String,
    /// IANA zone.
    pub timezone: Option<String>,
    /// ISO-4217.
    pub currency: Option<String>,
    /// Merchant id.
    pub merchant_id: Option<String>,
    /// Business name.
    pub business_name: Option<String>,
    /// Provider status.
    pub status: Option<String>,
}

/// How a sale was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Tender {
    /// Cash.
    Cash,
    /// Card.
    Card,
    /// Gift card.
    GiftCard,
    /// Wallet.
    Wallet,
    /// Bank transfer.
    BankTransfer,
    /// Anything else.
    Other,
}

/// Upstream state of a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TransactionStatus {
    /// Counts as spend.
    Completed,
    /// Not captured yet.
    Pending,
    /// Voided or deleted.
    Voided,
    /// Failed.
    Failed,
}

/// Card details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct CardInfo {
    /// Brand.
    pub brand: Option<String>,
    /// Last four.
    pub last4: Option<String>,
    /// Provider fingerprint.
    pub fingerprint: Option<String>,
}

/// Customer reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct CustomerRef {
    /// Provider customer id.
    pub provider_customer_id: Option<String>,
    /// Phone, any format.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Name.
    pub name: Option<String>,
}

/// The canonical transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Transaction {
    /// Provider id of the sale.
    pub external_id: String,
    /// Provider order id.
    pub order_id: Option<String>,
    /// Provider location.
    pub location_id: Option<String>,
    /// When, epoch ms.
    pub occurred_at_ms: i64,
    /// Upstream last change, epoch ms.
    pub updated_at_ms: Option<i64>,
    /// ISO-4217.
    pub currency: String,
    /// Minor units.
    pub total: i64,
    /// Minor units.
    pub subtotal: i64,
    /// Minor units.
    pub tax: i64,
    /// Minor units.
    pub tip: i64,
    /// Minor units.
    pub discount: i64,
    /// Minor units refunded.
    pub refunded: i64,
    /// Tender.
    pub tender: Tender,
    /// Card.
    pub card: Option<CardInfo>,
    /// Customer.
    pub customer: Option<CustomerRef>,
    /// Status.
    pub status: TransactionStatus,
    /// Who served it (contract 0.2 and later).
    // Skipped when absent or empty, so a sale without the 0.2 details serializes (and
    // content-hashes, see `providers::ingest`) exactly as it did under 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<StaffRef>,
    /// What was sold (contract 0.2 and later; empty when not itemised).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_items: Vec<LineItem>,
    /// The refunds behind `refunded`, linked to this sale (contract 0.2 and later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundRef>,
}

/// Who served a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct StaffRef {
    /// Provider employee id.
    pub id: Option<String>,
    /// Display name.
    pub name: Option<String>,
}

/// One line of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LineItem {
    /// Provider line id.
    pub id: Option<String>,
    /// What was sold.
    pub name: String,
    /// Provider catalog item id.
    pub item_id: Option<String>,
    /// Exact decimal text ("2", "0.5").
    pub quantity: String,
    /// Minor units per unit, before discounts.
    pub unit_price: Option<i64>,
    /// Minor units, after the line's own discounts and modifiers.
    pub total: i64,
    /// Category or menu group.
    pub category: Option<String>,
}

/// One refund against a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefundRef {
    /// Provider refund id.
    pub id: String,
    /// Minor units refunded by it.
    pub amount: i64,
    /// When, epoch ms.
    pub created_at_ms: i64,
    /// Reason given.
    pub reason: Option<String>,
}

/// A provider's refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProviderError {
    /// Credentials refused.
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// Location unknown.
    #[error("location not found: {0}")]
    LocationNotFound(String),
    /// Missing permission.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Rate limited.
    #[error("rate limited: {message}")]
    RateLimited {
        /// Message.
        message: String,
        /// Suggested wait.
        retry_after_ms: Option<u64>,
    },
    /// Upstream failure.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// Malformed input.
    #[error("bad payload: {0}")]
    BadPayload(String),
    /// Not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Refused for good by upstream (contract 0.3 and later; 0.2 reported it as `Upstream`).
    #[error("rejected by the provider: {}", .0)]
    Rejected(Rejection),
    /// No answer in time; a write may have landed (contract 0.3 and later).
    #[error("timed out: {0}")]
    TimedOut(String),
    /// Duplicate or stale: look the object up instead (contract 0.3 and later).
    #[error("conflict: {0}")]
    Conflict(String),
}

/// A permanent refusal in the provider's own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rejection {
    /// Upstream HTTP status.
    pub status: Option<u16>,
    /// Provider error code.
    pub code: Option<String>,
    /// Provider message.
    pub message: String,
    /// Field blamed.
    pub field: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(status) = self.status {
            write!(f, "HTTP {status} ")?;
        }
        if let Some(code) = &self.code {
            write!(f, "{code} ")?;
        }
        f.write_str(&self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

/// A polling window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchRequest {
    /// Inclusive start, epoch ms.
    pub start_ms: i64,
    /// Exclusive end, epoch ms.
    pub end_ms: i64,
    /// Page cursor.
    pub cursor: Option<String>,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransactionPage {
    /// Sales.
    pub transactions: Vec<Transaction>,
    /// Next page.
    pub next_cursor: Option<String>,
}

/// A webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Signed URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// A parsed webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebhookEvent {
    /// Provider event id.
    pub event_id: String,
    /// Provider event type.
    pub event_type: String,
    /// Sales in it.
    pub transactions: Vec<Transaction>,
    /// Orders whose state changed (contract 0.3 and later).
    pub order_updates: Vec<OrderUpdate>,
    /// The catalog changed upstream (contract 0.3 and later).
    pub catalog_changed: bool,
    /// Availability changes (contract 0.3 and later).
    pub availability: Vec<Availability>,
}

/// An event handed to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    /// Tenant slug.
    pub tenant: String,
    /// Seq.
    pub seq: i64,
    /// Type.
    pub kind: String,
    /// Epoch ms.
    pub at_ms: i64,
    /// JSON text.
    pub data: String,
}

/// One thing wrong with a hook binding's configuration, as the hook's `validate-config`
/// reports it (contract 0.2 and later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigProblem {
    /// Path of the field in the configuration ("threshold"); empty for the whole object.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What a hook asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookAction {
    /// Emit `custom.<kind>` to terminals.
    Emit {
        /// Kind without prefix.
        kind: String,
        /// JSON text.
        data: String,
    },
    /// Tag a transaction.
    TagTransaction {
        /// Transaction id.
        target: String,
        /// Tag.
        tag: String,
    },
    /// Tag a customer.
    TagCustomer {
        /// Phone.
        target: String,
        /// Tag.
        tag: String,
    },
}

// ---- the write and catalog side (contract 0.3 and later) -----------------------------

/// What a provider can do beyond reading sales (contract 0.3 and later), as its manifest
/// declares it: the host refuses an operation a provider cannot do before calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `submit-order` and `lookup-order`.
    SubmitOrders,
    /// `price-order`.
    PriceOrders,
    /// `order-status`.
    OrderStatus,
    /// `fetch-catalog` (full snapshots).
    FetchCatalog,
    /// `fetch-catalog` answers from a `since` token with only the changes.
    FetchCatalogIncremental,
    /// `get-availability`.
    ReadAvailability,
    /// `set-availability`.
    WriteAvailability,
}

impl Capability {
    /// The manifest's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::SubmitOrders => "submit-orders",
            Capability::PriceOrders => "price-orders",
            Capability::OrderStatus => "order-status",
            Capability::FetchCatalog => "fetch-catalog",
            Capability::FetchCatalogIncremental => "fetch-catalog-incremental",
            Capability::ReadAvailability => "read-availability",
            Capability::WriteAvailability => "write-availability",
        }
    }

    /// What a provider without it cannot do, for the refusal ("submit orders").
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Capability::SubmitOrders => "submit orders",
            Capability::PriceOrders => "price orders",
            Capability::OrderStatus => "read order status",
            Capability::FetchCatalog => "fetch its catalog",
            Capability::FetchCatalogIncremental => "fetch its catalog incrementally",
            Capability::ReadAvailability => "read availability",
            Capability::WriteAvailability => "write availability",
        }
    }
}

impl Manifest {
    /// Whether the provider declares `capability`. `fetch-catalog-incremental` implies
    /// `fetch-catalog`.
    pub fn can(&self, capability: Capability) -> bool {
        let has = |c: Capability| self.capabilities.iter().any(|n| n == c.as_str());
        has(capability)
            || (capability == Capability::FetchCatalog && has(Capability::FetchCatalogIncremental))
    }
}

/// A modifier chosen on an order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderModifier {
    /// Provider id of the option; none for ad hoc.
    pub provider_id: Option<String>,
    /// Provider id of its group.
    pub group_id: Option<String>,
    /// Name.
    pub name: String,
    /// Per unit of the line.
    pub quantity: u32,
    /// Minor units each.
    pub unit_price: i64,
}

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderLine {
    /// Our line id, unique in the order.
    pub line_id: String,
    /// Provider item id.
    pub item_id: Option<String>,
    /// Provider item group id (Toast menu group).
    pub item_group_id: Option<String>,
    /// Provider variation id (Square ITEM_VARIATION).
    pub variation_id: Option<String>,
    /// Name.
    pub name: String,
    /// Exact decimal text.
    pub quantity: String,
    /// Minor units per unit, before modifiers.
    pub unit_price: i64,
    /// Modifiers.
    pub modifiers: Vec<OrderModifier>,
    /// Kitchen note.
    pub note: Option<String>,
}

/// How an order reaches its customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FulfilmentKind {
    /// Collected.
    Pickup,
    /// Delivered.
    Delivery,
    /// Eaten in.
    DineIn,
}

/// Who an order is for and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fulfilment {
    /// Kind.
    pub kind: FulfilmentKind,
    /// Customer name.
    pub customer_name: String,
    /// Phone.
    pub customer_phone: Option<String>,
    /// Email.
    pub customer_email: Option<String>,
    /// Promised time, epoch ms; none for ASAP.
    pub scheduled_at_ms: Option<i64>,
    /// Requested prep minutes.
    pub prep_time_minutes: Option<u32>,
    /// Delivery address lines.
    pub delivery_address: Vec<String>,
    /// Staff note.
    pub note: Option<String>,
}

/// Payment taken outside the POS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExternalPayment {
    /// Minor units, without tip.
    pub amount: i64,
    /// Minor units.
    pub tip: i64,
    /// Who took it.
    pub source: String,
}

/// The canonical order handed to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Order {
    /// Our order id: the idempotency key upstream.
    pub our_order_id: String,
    /// ISO-4217.
    pub currency: String,
    /// Lines.
    pub lines: Vec<OrderLine>,
    /// Fulfilment.
    pub fulfilment: Fulfilment,
    /// Expected total, minor units.
    pub total: i64,
    /// Payment already taken.
    pub payment: Option<ExternalPayment>,
    /// Channel name.
    pub source_name: String,
}

/// Where an order stands in the POS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderState {
    /// Waiting for approval.
    Pending,
    /// Accepted.
    Accepted,
    /// Being prepared.
    InProgress,
    /// Ready.
    Ready,
    /// Handed over; final.
    Completed,
    /// Cancelled; final.
    Canceled,
    /// Refused; final.
    Rejected,
}

/// An order's state in the POS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderStatus {
    /// Provider order id.
    pub provider_order_id: String,
    /// Our order id, if the POS keeps it.
    pub our_order_id: Option<String>,
    /// State.
    pub state: OrderState,
    /// The provider's words.
    pub provider_state: String,
    /// Provider version, increasing.
    pub version: Option<i64>,
    /// Last change, epoch ms.
    pub updated_at_ms: Option<i64>,
    /// When the venue expects it ready, epoch ms (the prep time the POS relays back).
    pub ready_at_ms: Option<i64>,
    /// POS total, minor units.
    pub total: Option<i64>,
}

/// An order's change from a webhook; `status` is none for a thin webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderUpdate {
    /// Provider order id.
    pub provider_order_id: String,
    /// Provider version, to drop stale updates.
    pub version: Option<i64>,
    /// The new status, when carried.
    pub status: Option<OrderStatus>,
}

/// The POS's price for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PricedOrder {
    /// ISO-4217.
    pub currency: String,
    /// Minor units.
    pub subtotal: i64,
    /// Minor units.
    pub tax: i64,
    /// Minor units.
    pub discount: i64,
    /// Minor units to charge, before tip.
    pub total: i64,
    /// Line totals by our line id.
    pub lines: Vec<(String, i64)>,
}

/// Which catalog page to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CatalogRequest {
    /// Page cursor.
    pub cursor: Option<String>,
    /// Sync token of the last complete fetch.
    pub since: Option<String>,
}

/// A category or menu group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogCategory {
    /// Provider id.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// Enclosing category.
    pub parent_id: Option<String>,
}

/// A variation or size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogVariation {
    /// Provider id.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// Minor units; none for open prices.
    pub price: Option<i64>,
}

/// An item's use of a modifier group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModifierGroupRef {
    /// Group id.
    pub group_id: String,
    /// Item-level minimum.
    pub min_selected: Option<u32>,
    /// Item-level maximum.
    pub max_selected: Option<u32>,
}

/// A menu item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogItem {
    /// Provider id.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Category ids.
    pub category_ids: Vec<String>,
    /// Variations.
    pub variations: Vec<CatalogVariation>,
    /// Modifier groups.
    pub modifier_groups: Vec<ModifierGroupRef>,
    /// Tax ids.
    pub tax_ids: Vec<String>,
    /// Sellable online.
    pub orderable: bool,
}

/// A modifier option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModifierOption {
    /// Provider id.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// Minor units.
    pub price: i64,
    /// Chosen by default.
    pub is_default: bool,
}

/// A modifier group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModifierGroup {
    /// Provider id.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// Minimum choices.
    pub min_selected: u32,
    /// Maximum choices; none for unlimited.
    pub max_selected: Option<u32>,
    /// A choice must be made.
    pub required: bool,
    /// Options.
    pub options: Vec<ModifierOption>,
}

/// A tax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogTax {
    /// Provider id.
    pub provider_id: String,
    /// Name.
    pub name: String,
    /// Exact decimal percentage text.
    pub percentage: Option<String>,
    /// Included in prices.
    pub inclusive: bool,
}

/// Kinds of catalog entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CatalogKind {
    /// Category.
    Category,
    /// Item.
    Item,
    /// Variation.
    Variation,
    /// Modifier group.
    ModifierGroup,
    /// Modifier option.
    ModifierOption,
    /// Tax.
    Tax,
}

/// An entity removed upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogDeletion {
    /// Kind.
    pub kind: CatalogKind,
    /// Provider id.
    pub provider_id: String,
}

/// One page of a provider's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct CatalogPage {
    /// Nothing changed since `since`.
    pub unchanged: bool,
    /// A full snapshot: what no page names is gone.
    pub full_snapshot: bool,
    /// Currency of prices.
    pub currency: Option<String>,
    /// Categories.
    pub categories: Vec<CatalogCategory>,
    /// Items.
    pub items: Vec<CatalogItem>,
    /// Modifier groups.
    pub modifier_groups: Vec<ModifierGroup>,
    /// Taxes.
    pub taxes: Vec<CatalogTax>,
    /// Deletions.
    pub deleted: Vec<CatalogDeletion>,
    /// Next page.
    pub next_cursor: Option<String>,
    /// Token for the next incremental fetch (last page).
    pub sync_token: Option<String>,
}

/// Stock status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StockStatus {
    /// Sellable.
    InStock,
    /// Sold out (86'd).
    OutOfStock,
    /// A count remains.
    Quantity,
}

/// Availability of one item, variation or option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Availability {
    /// Provider id.
    pub provider_id: String,
    /// Status.
    pub status: StockStatus,
    /// Exact decimal count, with `Quantity`.
    pub quantity: Option<String>,
    /// Sold out until, epoch ms.
    pub until_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(capabilities: &[&str]) -> Manifest {
        Manifest {
            id: "pos".into(),
            kind: PluginKind::Provider,
            name: "POS".into(),
            version: "1.0.0".into(),
            contract: "0.3".into(),
            allowed_hosts: Vec::new(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            credential_fields: Vec::new(),
            events: Vec::new(),
            config_schema: None,
        }
    }

    #[test]
    fn capabilities_are_read_from_the_manifest() {
        let square = provider(&[
            "validate",
            "submit-orders",
            "fetch-catalog-incremental",
            "read-availability",
        ]);
        assert!(square.can(Capability::SubmitOrders));
        assert!(
            square.can(Capability::FetchCatalog),
            "incremental implies full"
        );
        assert!(square.can(Capability::FetchCatalogIncremental));
        assert!(square.can(Capability::ReadAvailability));
        assert!(!square.can(Capability::WriteAvailability));
        assert!(!square.can(Capability::PriceOrders));
        let old = provider(&["validate", "fetch-transactions", "webhooks"]);
        for cap in [
            Capability::SubmitOrders,
            Capability::PriceOrders,
            Capability::OrderStatus,
            Capability::FetchCatalog,
            Capability::FetchCatalogIncremental,
            Capability::ReadAvailability,
            Capability::WriteAvailability,
        ] {
            assert!(!old.can(cap), "{}", cap.as_str());
        }
        let full = provider(&["fetch-catalog"]);
        assert!(full.can(Capability::FetchCatalog));
        assert!(!full.can(Capability::FetchCatalogIncremental));
    }

    #[test]
    fn a_rejection_names_status_code_and_field() {
        let rejected = ProviderError::Rejected(Rejection {
            status: Some(400),
            code: Some("INVALID_VALUE".into()),
            message: "Item is not available".into(),
            field: Some("order.line_items[0]".into()),
        });
        assert_eq!(
            rejected.to_string(),
            "rejected by the provider: HTTP 400 INVALID_VALUE Item is not available (field order.line_items[0])"
        );
    }
}
