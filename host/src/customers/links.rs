//! Links: a card fingerprint or a provider's customer id tied to a customer, so sales that
//! carry only that key are still attributed to them.

use serde::Deserialize;

use super::find_or_create;
use crate::error::ApiError;
use crate::store::{now_micros, Conn};

/// `customer_links.kind` of a card fingerprint link.
pub(crate) const CARD_LINK: &str = "card_fingerprint";
/// `customer_links.kind` of a provider customer link.
pub(crate) const PROVIDER_LINK: &str = "provider_customer";

/// Longest link value accepted, in bytes.
const MAX_VALUE: usize = 200;

/// What a link ties to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    /// A card fingerprint, as providers report it.
    Card,
    /// A customer id at one provider.
    ProviderCustomer,
}

impl LinkKind {
    /// The `customer_links.kind` text.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LinkKind::Card => CARD_LINK,
            LinkKind::ProviderCustomer => PROVIDER_LINK,
        }
    }

    /// The link value of a provider customer id: qualified by provider, because two
    /// providers' customer ids may coincide.
    pub(crate) fn provider_value(provider: &str, customer_id: &str) -> String {
        format!("{provider}:{customer_id}")
    }

    /// The `pos_transactions` column holding this kind's key on a stored sale.
    fn sale_column(self) -> &'static str {
        match self {
            LinkKind::Card => "card_fingerprint",
            LinkKind::ProviderCustomer => "provider_customer_id",
        }
    }
}

/// One key to tie to a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    kind: LinkKind,
    value: String,
}

impl Link {
    /// The key as a stored sale carries it (a provider customer id without its provider).
    fn sale_value(&self) -> &str {
        match self.kind {
            LinkKind::Card => &self.value,
            LinkKind::ProviderCustomer => self
                .value
                .split_once(':')
                .map_or("", |(_, customer)| customer),
        }
    }
}

/// Body of `POST /customers/{phone}/links`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkRequest {
    /// A card fingerprint as the provider reports it.
    #[serde(default)]
    card_fingerprint: Option<String>,
    /// A provider id, given with `provider_customer_id`.
    #[serde(default)]
    provider: Option<String>,
    /// The provider's customer id.
    #[serde(default)]
    provider_customer_id: Option<String>,
}

impl LinkRequest {
    /// The links asked for: a card fingerprint (an empty or overlong one is ignored) and/or a
    /// provider customer (provider and id go together); at least one.
    pub(crate) fn links(self) -> Result<Vec<Link>, LinkError> {
        let mut links = Vec::new();
        if let Some(fp) = self
            .card_fingerprint
            .filter(|f| !f.is_empty() && f.len() <= MAX_VALUE)
        {
            links.push(Link {
                kind: LinkKind::Card,
                value: fp,
            });
        }
        match (self.provider, self.provider_customer_id) {
            (Some(p), Some(c)) if !p.is_empty() && !c.is_empty() && c.len() <= MAX_VALUE => links
                .push(Link {
                    kind: LinkKind::ProviderCustomer,
                    value: LinkKind::provider_value(&p, &c),
                }),
            (None, None) => {}
            _ => {
                return Err(LinkError::Invalid(
                    "provider and provider_customer_id go together",
                ))
            }
        }
        if links.is_empty() {
            return Err(LinkError::Invalid(
                "give card_fingerprint or provider + provider_customer_id",
            ));
        }
        Ok(links)
    }
}

/// Why links were refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The request breaks a rule of the API (the message says which).
    #[error("{0}")]
    Invalid(&'static str),
    /// The key is already linked to someone else.
    #[error("this {0} is linked to another customer")]
    AlreadyLinked(&'static str),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl From<LinkError> for ApiError {
    fn from(err: LinkError) -> Self {
        let message = err.to_string();
        match err {
            LinkError::Invalid(_) => ApiError::unprocessable("invalid_request", message),
            LinkError::AlreadyLinked(_) => ApiError::conflict("already_linked", message),
            LinkError::Store(e) => e.into(),
        }
    }
}

/// What linking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Linked {
    /// The customer (enrolled if the phone was new).
    pub customer_id: String,
    /// Past sales with no customer that the new links attributed to them.
    pub attributed: u64,
}

/// Ties `links` to the customer with `phone` (enrolling them), refusing a key linked to
/// someone else, and attributes the tenant's unmatched past sales carrying those keys.
pub(crate) async fn link(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
    links: &[Link],
) -> Result<Linked, LinkError> {
    let customer_id = find_or_create(conn, tenant_id, phone).await?;
    let now = now_micros();
    let mut attributed = 0;
    for link in links {
        let kind = link.kind.as_str();
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT customer_id FROM customer_links WHERE tenant_id = $1 AND kind = $2 AND value = $3",
        )
        .bind(tenant_id)
        .bind(kind)
        .bind(&link.value)
        .fetch_optional(&mut *conn)
        .await?;
        if taken.as_ref().is_some_and(|t| t != &customer_id) {
            return Err(LinkError::AlreadyLinked(kind));
        }
        sqlx::query(
            "INSERT INTO customer_links (tenant_id, kind, value, customer_id, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, kind, value) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(kind)
        .bind(&link.value)
        .bind(&customer_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        attributed += sqlx::query(&format!(
            "UPDATE pos_transactions SET customer_id = $1 WHERE tenant_id = $2 AND customer_id IS NULL AND {} = $3",
            link.kind.sale_column()
        ))
        .bind(&customer_id)
        .bind(tenant_id)
        .bind(link.sale_value())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(Linked {
        customer_id,
        attributed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fp: Option<&str>, provider: Option<&str>, id: Option<&str>) -> LinkRequest {
        LinkRequest {
            card_fingerprint: fp.map(str::to_owned),
            provider: provider.map(str::to_owned),
            provider_customer_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn a_request_names_a_card_a_provider_customer_or_both() {
        let both = request(Some("fp1"), Some("square"), Some("C9"))
            .links()
            .unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].sale_value(), "fp1");
        assert_eq!(both[1].value, "square:C9");
        assert_eq!(both[1].sale_value(), "C9");
        assert!(request(None, Some("square"), None).links().is_err());
        assert!(request(None, None, Some("C9")).links().is_err());
        assert!(request(None, None, None).links().is_err());
        // An empty fingerprint is no link; alone it is no request.
        assert!(request(Some(""), None, None).links().is_err());
        let long = "f".repeat(MAX_VALUE + 1);
        assert!(request(Some(&long), None, None).links().is_err());
    }
}
