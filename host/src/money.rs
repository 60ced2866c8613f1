//! Money and quantities: integer minor units with an ISO-4217 currency, never floats.

use serde::{Deserialize, Serialize};

/// Largest amount or point count accepted in one request (10^12 minor units): far above any
/// real sale, far below where sums of many of them could overflow an `i64`.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// An amount of money in minor units (cents for USD) of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct Money {
    /// Minor units.
    pub amount: i64,
    /// ISO-4217 code, upper case.
    pub currency: String,
}

impl Money {
    /// Builds a money value.
    pub(crate) fn new(amount: i64, currency: impl Into<String>) -> Self {
        Self {
            amount,
            currency: currency.into(),
        }
    }
}

/// A strictly positive integer amount (minor units or points), at most [`MAX_AMOUNT`].
/// Deserializing rejects zero, negatives, fractions and strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct PositiveAmount(i64);

impl PositiveAmount {
    /// The value.
    pub(crate) fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for PositiveAmount {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value <= 0 {
            Err(format!("must be a positive integer, got {value}"))
        } else if value > MAX_AMOUNT {
            Err(format!("must be at most {MAX_AMOUNT}, got {value}"))
        } else {
            Ok(Self(value))
        }
    }
}

impl From<PositiveAmount> for i64 {
    fn from(value: PositiveAmount) -> Self {
        value.0
    }
}

/// A non-negative integer amount in minor units, at most [`MAX_AMOUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct NonNegativeAmount(i64);

impl NonNegativeAmount {
    /// The value.
    pub(crate) fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for NonNegativeAmount {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value < 0 {
            Err(format!("must not be negative, got {value}"))
        } else if value > MAX_AMOUNT {
            Err(format!("must be at most {MAX_AMOUNT}, got {value}"))
        } else {
            Ok(Self(value))
        }
    }
}

impl From<NonNegativeAmount> for i64 {
    fn from(value: NonNegativeAmount) -> Self {
        value.0
    }
}

/// Checks that `code` is an active ISO-4217 currency code and returns it upper-cased.
pub(crate) fn parse_currency(code: &str) -> Option<String> {
    let upper = code.trim().to_ascii_uppercase();
    iso_currency::Currency::from_code(&upper).map(|_| upper)
}

/// The OpenAPI schema of an amount: an integer from `minimum` to [`MAX_AMOUNT`].
fn amount_schema(minimum: i64) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(MAX_AMOUNT))
        .into()
}

impl utoipa::PartialSchema for PositiveAmount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        amount_schema(1)
    }
}

impl utoipa::ToSchema for PositiveAmount {}

impl utoipa::PartialSchema for NonNegativeAmount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        amount_schema(0)
    }
}

impl utoipa::ToSchema for NonNegativeAmount {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_amounts_refuse_zero_negative_and_fractions() {
        assert!(serde_json::from_str::<PositiveAmount>("0").is_err());
        assert!(serde_json::from_str::<PositiveAmount>("-5").is_err());
        assert!(serde_json::from_str::<PositiveAmount>("12.5").is_err());
        assert!(serde_json::from_str::<PositiveAmount>("\"12\"").is_err());
        assert!(serde_json::from_str::<PositiveAmount>("1000000000001").is_err());
        assert_eq!(
            serde_json::from_str::<PositiveAmount>("1250")
                .unwrap()
                .get(),
            1250
        );
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert_eq!(parse_currency("usd").as_deref(), Some("USD"));
        assert_eq!(parse_currency("XYZ"), None);
    }

    #[test]
    fn positive_amounts_accept_one_through_the_maximum() {
        assert_eq!(PositiveAmount::try_from(1).unwrap().get(), 1);
        assert_eq!(
            PositiveAmount::try_from(MAX_AMOUNT).unwrap().get(),
            MAX_AMOUNT
        );
        assert!(PositiveAmount::try_from(MAX_AMOUNT + 1)
            .unwrap_err()
            .contains("at most"));
        assert!(PositiveAmount::try_from(i64::MIN)
            .unwrap_err()
            .contains("positive"));
    }

    #[test]
    fn non_negative_amounts_accept_zero_and_refuse_below_or_above_the_range() {
        assert_eq!(NonNegativeAmount::try_from(0).unwrap().get(), 0);
        assert_eq!(NonNegativeAmount::default().get(), 0);
        assert_eq!(
            NonNegativeAmount::try_from(MAX_AMOUNT).unwrap().get(),
            MAX_AMOUNT
        );
        assert!(NonNegativeAmount::try_from(-1)
            .unwrap_err()
            .contains("negative"));
        assert!(NonNegativeAmount::try_from(MAX_AMOUNT + 1)
            .unwrap_err()
            .contains("at most"));
        assert!(serde_json::from_str::<NonNegativeAmount>("0.5").is_err());
        assert!(serde_json::from_str::<NonNegativeAmount>("\"0\"").is_err());
    }

    #[test]
    fn amounts_serialize_as_bare_integers() {
        let positive = PositiveAmount::try_from(42).unwrap();
        assert_eq!(serde_json::to_string(&positive).unwrap(), "42");
        let zero = NonNegativeAmount::default();
        assert_eq!(serde_json::to_string(&zero).unwrap(), "0");
        assert_eq!(i64::from(positive), 42);
    }

    #[test]
    fn money_serializes_as_amount_and_currency() {
        let money = Money::new(1250, "EUR");
        assert_eq!(
            serde_json::to_value(&money).unwrap(),
            serde_json::json!({"amount": 1250, "currency": "EUR"})
        );
        let back: Money = serde_json::from_str(r#"{"amount":-3,"currency":"USD"}"#).unwrap();
        assert_eq!(back, Money::new(-3, "USD"));
    }

    #[test]
    fn currency_codes_are_trimmed_and_must_be_three_known_letters() {
        assert_eq!(parse_currency(" eur ").as_deref(), Some("EUR"));
        assert_eq!(parse_currency("JPY").as_deref(), Some("JPY"));
        assert_eq!(parse_currency(""), None);
        assert_eq!(parse_currency("US"), None);
        assert_eq!(parse_currency("USDX"), None);
        assert_eq!(parse_currency("dollars"), None);
    }
}
