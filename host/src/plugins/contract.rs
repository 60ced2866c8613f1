//! The plugin contract as the rest of the host sees it: plain Rust types, independent of
//! any WIT version. Each `wit::since_*` module converts between these and its bindings, so
//! a new contract version adds a module there and nothing changes elsewhere.

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
    /// Provider capabilities (`validate`, `fetch-transactions`, `webhooks`, `push`).
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
pub struct Connection {
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
pub struct LocationInfo {
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
pub enum Tender {
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
pub enum TransactionStatus {
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
pub struct CardInfo {
    /// Brand.
    pub brand: Option<String>,
    /// Last four.
    pub last4: Option<String>,
    /// Provider fingerprint.
    pub fingerprint: Option<String>,
}

/// Customer reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CustomerRef {
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
pub struct Transaction {
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
pub struct StaffRef {
    /// Provider employee id.
    pub id: Option<String>,
    /// Display name.
    pub name: Option<String>,
}

/// One line of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
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
pub struct RefundRef {
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
pub enum ProviderError {
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
}

/// A polling window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Inclusive start, epoch ms.
    pub start_ms: i64,
    /// Exclusive end, epoch ms.
    pub end_ms: i64,
    /// Page cursor.
    pub cursor: Option<String>,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPage {
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
pub struct WebhookEvent {
    /// Provider event id.
    pub event_id: String,
    /// Provider event type.
    pub event_type: String,
    /// Sales in it.
    pub transactions: Vec<Transaction>,
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
pub struct ConfigProblem {
    /// Path of the field in the configuration ("threshold"); empty for the whole object.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What a hook asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
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
