//! Conveniences on the generated types.

use serde::de::DeserializeOwned;

use crate::hook::{Action, ConfigProblem, CustomEvent, HookInfo, Tag};
use crate::provider::{Connection, Environment, Webhook, WebhookEvent};
use crate::types::{
    Event, LineItem, LocationInfo, ProviderError, RateLimit, Rejection, StaffRef, Tender,
    Timestamp, Transaction, TransactionStatus,
};

impl Connection {
    /// The credential `name`, if the connection has it (never log it).
    pub fn credential(&self, name: &str) -> Option<&str> {
        self.credentials
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The credential `name`, or `invalid-credentials` naming the missing field.
    pub fn require_credential(&self, name: &str) -> Result<&str, ProviderError> {
        self.credential(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ProviderError::InvalidCredentials(format!("missing credential `{name}`"))
            })
    }

    /// `base-url` if the integration overrides it, else the default for its environment;
    /// without a trailing `/`.
    pub fn base_url(&self, sandbox: &str, production: &str) -> String {
        let url = match (&self.base_url, self.environment) {
            (Some(url), _) if !url.is_empty() => url.as_str(),
            (_, Environment::Sandbox) => sandbox,
            (_, Environment::Production) => production,
        };
        url.trim_end_matches('/').to_owned()
    }
}

impl Webhook {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }

    /// The body parsed as JSON, or `bad-payload`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProviderError::BadPayload(format!("webhook body: {e}")))
    }
}

impl WebhookEvent {
    /// An event with no sales, order updates or availability and no catalog change: set
    /// what the delivery carries with struct update syntax.
    pub fn new(event_id: impl Into<String>, event_type: impl Into<String>) -> Self {
        WebhookEvent {
            event_id: event_id.into(),
            event_type: event_type.into(),
            transactions: Vec::new(),
            order_updates: Vec::new(),
            catalog_changed: false,
            availability: Vec::new(),
        }
    }
}

impl Event {
    /// The event's data parsed as JSON.
    pub fn data_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

impl Transaction {
    /// A completed sale with every amount 0, tender `other`, no card, customer or order:
    /// set the rest with struct update syntax or field assignment.
    pub fn new(
        external_id: impl Into<String>,
        occurred_at: Timestamp,
        currency: impl Into<String>,
    ) -> Self {
        Transaction {
            external_id: external_id.into(),
            order_id: None,
            location_id: None,
            occurred_at,
            updated_at: None,
            currency: currency.into(),
            total: 0,
            subtotal: 0,
            tax: 0,
            tip: 0,
            discount: 0,
            refunded: 0,
            tender: Tender::Other,
            card: None,
            customer: None,
            status: TransactionStatus::Completed,
            staff: None,
            line_items: Vec::new(),
            refunds: Vec::new(),
        }
    }
}

impl StaffRef {
    /// Staff known by the provider's employee id and, if it says, a display name.
    pub fn new(id: impl Into<String>, name: Option<String>) -> Self {
        StaffRef {
            id: Some(id.into()),
            name,
        }
    }
}

impl LineItem {
    /// A line with a name, exact decimal quantity text ("2", "0.5") and line total; set
    /// the optional ids, unit price and category with struct update syntax.
    pub fn new(name: impl Into<String>, quantity: impl Into<String>, total: i64) -> Self {
        LineItem {
            id: None,
            name: name.into(),
            item_id: None,
            quantity: quantity.into(),
            unit_price: None,
            total,
            category: None,
        }
    }
}

impl HookInfo {
    /// A hook's info with no allowed hosts and no configuration schema.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        events: &[&str],
    ) -> Self {
        HookInfo {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            allowed_hosts: Vec::new(),
            config_schema: None,
        }
    }
}

impl ConfigProblem {
    /// A problem with `field` (its path in the configuration; "" for the whole object).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl LocationInfo {
    /// A location with only its id and name.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        LocationInfo {
            id: id.into(),
            name: name.into(),
            timezone: None,
            currency: None,
            merchant_id: None,
            business_name: None,
            status: None,
        }
    }
}

impl ProviderError {
    /// `invalid-credentials(message)`.
    pub fn invalid_credentials(message: impl Into<String>) -> Self {
        ProviderError::InvalidCredentials(message.into())
    }

    /// `location-not-found(message)`.
    pub fn location_not_found(message: impl Into<String>) -> Self {
        ProviderError::LocationNotFound(message.into())
    }

    /// `permission-denied(message)`.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        ProviderError::PermissionDenied(message.into())
    }

    /// `rate-limited { message, retry-after-ms }`.
    pub fn rate_limited(message: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        ProviderError::RateLimited(RateLimit {
            message: message.into(),
            retry_after_ms,
        })
    }

    /// `upstream(message)`.
    pub fn upstream(message: impl Into<String>) -> Self {
        ProviderError::Upstream(message.into())
    }

    /// `bad-payload(message)`.
    pub fn bad_payload(message: impl Into<String>) -> Self {
        ProviderError::BadPayload(message.into())
    }

    /// `unsupported(message)`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        ProviderError::Unsupported(message.into())
    }

    /// `rejected { status, code, message, field }`: a permanent refusal. New in 0.3.0.
    pub fn rejected(
        status: Option<u16>,
        code: Option<String>,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        ProviderError::Rejected(Rejection {
            status,
            code,
            message: message.into(),
            field,
        })
    }

    /// `timed-out(message)`: the outcome is unknown. New in 0.3.0.
    pub fn timed_out(message: impl Into<String>) -> Self {
        ProviderError::TimedOut(message.into())
    }

    /// `conflict(message)`: a duplicate or a stale version. New in 0.3.0.
    pub fn conflict(message: impl Into<String>) -> Self {
        ProviderError::Conflict(message.into())
    }

    /// The human-readable message of any case.
    pub fn message(&self) -> &str {
        match self {
            ProviderError::InvalidCredentials(m)
            | ProviderError::LocationNotFound(m)
            | ProviderError::PermissionDenied(m)
            | ProviderError::Upstream(m)
            | ProviderError::BadPayload(m)
            | ProviderError::Unsupported(m)
            | ProviderError::TimedOut(m)
            | ProviderError::Conflict(m) => m,
            ProviderError::RateLimited(r) => &r.message,
            ProviderError::Rejected(r) => &r.message,
        }
    }

    /// The same error with its message rewritten by `f` (to prefix the operation, append a
    /// provider's error code, …); every other field is kept.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            ProviderError::InvalidCredentials(m) => ProviderError::InvalidCredentials(f(m)),
            ProviderError::LocationNotFound(m) => ProviderError::LocationNotFound(f(m)),
            ProviderError::PermissionDenied(m) => ProviderError::PermissionDenied(f(m)),
            ProviderError::Upstream(m) => ProviderError::Upstream(f(m)),
            ProviderError::BadPayload(m) => ProviderError::BadPayload(f(m)),
            ProviderError::Unsupported(m) => ProviderError::Unsupported(f(m)),
            ProviderError::TimedOut(m) => ProviderError::TimedOut(f(m)),
            ProviderError::Conflict(m) => ProviderError::Conflict(f(m)),
            ProviderError::RateLimited(r) => ProviderError::RateLimited(RateLimit {
                message: f(r.message),
                retry_after_ms: r.retry_after_ms,
            }),
            ProviderError::Rejected(r) => ProviderError::Rejected(Rejection {
                message: f(r.message),
                ..r
            }),
        }
    }

    /// Whether the same request may succeed later (a rate limit, an outage, a timeout),
    /// as opposed to failing again as sent.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited(_) | ProviderError::Upstream(_) | ProviderError::TimedOut(_)
        )
    }
}

impl Action {
    /// `emit(custom-event { kind, data })`: a custom event (`custom.<kind>`) to the tenant's
    /// terminals.
    pub fn emit(kind: impl Into<String>, data: &serde_json::Value) -> Self {
        Action::Emit(CustomEvent {
            kind: kind.into(),
            data: data.to_string(),
        })
    }

    /// `tag-transaction { target: transaction id, tag }`.
    pub fn tag_transaction(transaction_id: impl Into<String>, tag: impl Into<String>) -> Self {
        Action::TagTransaction(Tag {
            target: transaction_id.into(),
            tag: tag.into(),
        })
    }

    /// `tag-customer { target: phone, tag }`.
    pub fn tag_customer(phone: impl Into<String>, tag: impl Into<String>) -> Self {
        Action::TagCustomer(Tag {
            target: phone.into(),
            tag: tag.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(base_url: Option<&str>, environment: Environment) -> Connection {
        Connection {
            credentials: vec![
                ("access_token".into(), "tok".into()),
                ("empty".into(), String::new()),
            ],
            location_id: "L1".into(),
            environment,
            base_url: base_url.map(str::to_owned),
        }
    }

    #[test]
    fn connection_helpers() {
        let c = connection(None, Environment::Sandbox);
        assert_eq!(c.credential("access_token"), Some("tok"));
        assert_eq!(c.require_credential("access_token"), Ok("tok"));
        assert_eq!(
            c.require_credential("client_id"),
            Err(ProviderError::InvalidCredentials(
                "missing credential `client_id`".into()
            ))
        );
        assert!(c.require_credential("empty").is_err());
        assert_eq!(
            c.base_url("https://sandbox/", "https://prod"),
            "https://sandbox"
        );
        let c = connection(None, Environment::Production);
        assert_eq!(
            c.base_url("https://sandbox/", "https://prod"),
            "https://prod"
        );
        let c = connection(Some("http://127.0.0.1:8081/"), Environment::Production);
        assert_eq!(
            c.base_url("https://sandbox/", "https://prod"),
            "http://127.0.0.1:8081"
        );
    }

    #[test]
    fn constructors() {
        let t = Transaction {
            total: 1250,
            tender: Tender::Card,
            ..Transaction::new("p1", 5, "USD")
        };
        assert_eq!(
            (t.total, t.status, t.occurred_at),
            (1250, TransactionStatus::Completed, 5)
        );
        assert_eq!(ProviderError::upstream("x").message(), "x");
        assert_eq!(
            ProviderError::rate_limited("slow", Some(5)).message(),
            "slow"
        );
        let a = Action::emit("big", &serde_json::json!({"a": 1}));
        assert_eq!(
            a,
            Action::Emit(CustomEvent {
                kind: "big".into(),
                data: r#"{"a":1}"#.into()
            })
        );
        let w = Webhook {
            url: "u".into(),
            headers: vec![("X-Square-HmacSha256-Signature".into(), "sig".into())],
            body: b"{".to_vec(),
        };
        assert_eq!(w.header("x-square-hmacsha256-signature"), Some("sig"));
        assert!(matches!(
            w.json::<serde_json::Value>(),
            Err(ProviderError::BadPayload(_))
        ));
    }
}
