//! Money and points ledgers: gift cards and loyalty. Every change writes a ledger row and an
//! event in the caller's [`crate::events::LoggedTx`]; balances never go negative, even under
//! concurrent requests, because each change is one conditional UPDATE.

mod gift_cards;
mod loyalty;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::AuthState;
use crate::customers::InvalidPhone;
use crate::error::ApiError;
use crate::events::Writes;
use crate::store::{Store, StoreError};

/// Why a ledger operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No gift card with that code for this tenant.
    #[error("no gift card with code {0:?}")]
    GiftCardNotFound(String),
    /// A card with this code already exists.
    #[error("a gift card with code {0:?} already exists")]
    GiftCardExists(String),
    /// The card is disabled.
    #[error("gift card {0:?} is disabled")]
    GiftCardDisabled(String),
    /// Code has the wrong format.
    #[error("gift card codes are 4-64 characters of A-Z, 0-9 and '-'")]
    InvalidCode,
    /// The deduction exceeds the balance; nothing changed.
    #[error("insufficient funds: balance is {balance}, requested {requested}")]
    InsufficientFunds {
        /// Current balance, minor units.
        balance: i64,
        /// Requested deduction, minor units.
        requested: i64,
    },
    /// The redemption exceeds the points balance; nothing changed.
    #[error("insufficient points: balance is {balance}, requested {requested}")]
    InsufficientPoints {
        /// Current points.
        balance: i64,
        /// Requested redemption.
        requested: i64,
    },
    /// No loyalty customer with that phone for this tenant.
    #[error("no loyalty account for {0}")]
    CustomerNotFound(String),
    /// The phone number could not be parsed.
    #[error(transparent)]
    InvalidPhone(#[from] InvalidPhone),
    /// A currency other than the tenant's.
    #[error("currency {given} does not match the tenant's currency {expected}")]
    CurrencyMismatch {
        /// Given.
        given: String,
        /// The tenant's.
        expected: String,
    },
    /// A free-text field is too long.
    #[error("{0} must be at most {1} characters")]
    TooLong(&'static str, usize),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LedgerError {
    fn from(err: sqlx::Error) -> Self {
        LedgerError::Store(err.into())
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        let message = err.to_string();
        match err {
            LedgerError::GiftCardNotFound(_) => ApiError::not_found("gift_card_not_found", message),
            LedgerError::CustomerNotFound(_) => ApiError::not_found("customer_not_found", message),
            LedgerError::GiftCardExists(_) => ApiError::conflict("gift_card_exists", message),
            LedgerError::GiftCardDisabled(_) => ApiError::conflict("gift_card_disabled", message),
            LedgerError::InsufficientFunds { .. } => {
                ApiError::unprocessable("insufficient_funds", message)
            }
            LedgerError::InsufficientPoints { .. } => {
                ApiError::unprocessable("insufficient_points", message)
            }
            LedgerError::InvalidCode => ApiError::unprocessable("invalid_gift_card_code", message),
            LedgerError::InvalidPhone(_) => ApiError::unprocessable("invalid_phone", message),
            LedgerError::CurrencyMismatch { .. } => {
                ApiError::unprocessable("currency_mismatch", message)
            }
            LedgerError::TooLong(..) => ApiError::unprocessable("invalid_request", message),
            LedgerError::Store(e) => e.into(),
        }
    }
}

fn check_len(field: &'static str, value: &Option<String>, max: usize) -> Result<(), LedgerError> {
    match value {
        Some(v) if v.chars().count() > max => Err(LedgerError::TooLong(field, max)),
        _ => Ok(()),
    }
}

/// Terminal routes (`/api/{tenant}/gift-cards/…`, `/api/{tenant}/loyalty/…`) and manager
/// routes (issuing cards, listing ledgers).
pub(crate) fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
    Store: FromRef<S>,
    Writes: FromRef<S>,
{
    gift_cards::routes().merge(loyalty::routes())
}
