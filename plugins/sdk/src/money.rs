//! Exact decimal → integer minor units.
//!
//! Money in posbridge is always an integer count of the currency's minor units (cents for USD).
//! Providers that send decimals ("12.50", or a JSON number `8.5`) convert them here, from the
//! decimal *text*: never through `f64`. This crate's `serde_json` is built with
//! `arbitrary_precision`, so a [`serde_json::Number`] keeps the exact text it was parsed from.
//!
//! By default a value with more decimals than the currency has is refused
//! ([`MoneyError::TooPrecise`]); trailing zeros are fine ("12.500" USD → 1250). Ask for
//! rounding explicitly with the `*_rounded` variants.
//!
//! ```
//! use posbridge_sdk::money::{to_minor, to_minor_rounded, Rounding};
//! assert_eq!(to_minor("8.5", "USD"), Ok(850));
//! assert_eq!(to_minor("-12.34", "USD"), Ok(-1234));
//! assert!(to_minor("12.345", "USD").is_err());
//! assert_eq!(to_minor_rounded("12.345", "USD", Rounding::HalfEven), Ok(1234));
//! assert_eq!(to_minor("1500", "JPY"), Ok(1500));
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};

/// How to round digits beyond the currency's precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To the nearest; ties to the even neighbour (banker's rounding): 0.125 → 0.12, 0.135 → 0.14.
    HalfEven,
    /// To the nearest; ties away from zero: 0.125 → 0.13, -0.125 → -0.13.
    HalfAwayFromZero,
    /// Drop the extra digits: 0.129 → 0.12, -0.129 → -0.12.
    TowardZero,
}

/// Why a decimal could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a plain decimal (`[-+]digits[.digits]`).
    Invalid(String),
    /// Exponent notation ("1e2"): refused, as it hides the precision.
    Exponent(String),
    /// More decimals than the currency has, and no rounding was asked for.
    TooPrecise {
        /// The text.
        text: String,
        /// The currency's decimals.
        decimals: u32,
    },
    /// Does not fit in `i64` minor units.
    Overflow(String),
    /// A JSON value that is neither a number nor a string.
    NotANumber(String),
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::Invalid(t) => write!(f, "invalid amount {t:?}: expected a plain decimal"),
            MoneyError::Exponent(t) => write!(f, "invalid amount {t:?}: exponents are refused"),
            MoneyError::TooPrecise { text, decimals } => write!(
                f,
                "amount {text:?} has more than {decimals} decimal places and no rounding was asked for"
            ),
            MoneyError::Overflow(t) => write!(f, "amount {t:?} is too large"),
            MoneyError::NotANumber(t) => write!(f, "amount {t} is not a number or a decimal string"),
        }
    }
}

impl std::error::Error for MoneyError {}

/// The number of decimals (minor-unit exponent) of an ISO-4217 currency: 0 for JPY, KRW, …,
/// 3 for BHD, KWD, …, 2 for everything else (including unknown codes).
pub fn minor_digits(currency: &str) -> u32 {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const FOUR: &[&str] = &["CLF", "UYW"];
    let upper = currency.to_ascii_uppercase();
    if ZERO.contains(&upper.as_str()) {
        0
    } else if THREE.contains(&upper.as_str()) {
        3
    } else if FOUR.contains(&upper.as_str()) {
        4
    } else {
        2
    }
}

/// Exact: decimal text in `currency` → minor units. "8.5" USD → 850.
pub fn to_minor(text: &str, currency: &str) -> Result<i64, MoneyError> {
    parse_decimal(text, minor_digits(currency))
}

/// Like [`to_minor`], rounding extra decimals with `rounding`.
pub fn to_minor_rounded(text: &str, currency: &str, rounding: Rounding) -> Result<i64, MoneyError> {
    parse_decimal_rounded(text, minor_digits(currency), rounding)
}

/// Exact: decimal text → an integer scaled by 10^`decimals`. ("12.5", 2) → 1250.
pub fn parse_decimal(text: &str, decimals: u32) -> Result<i64, MoneyError> {
    parse(text, decimals, None)
}

/// Like [`parse_decimal`], rounding extra decimals with `rounding`.
pub fn parse_decimal_rounded(
    text: &str,
    decimals: u32,
    rounding: Rounding,
) -> Result<i64, MoneyError> {
    parse(text, decimals, Some(rounding))
}

/// Exact: a JSON number (its text, thanks to `arbitrary_precision`) → minor units.
pub fn number_to_minor(number: &Number, currency: &str) -> Result<i64, MoneyError> {
    to_minor(&number.to_string(), currency)
}

/// Like [`number_to_minor`], rounding extra decimals with `rounding`.
pub fn number_to_minor_rounded(
    number: &Number,
    currency: &str,
    rounding: Rounding,
) -> Result<i64, MoneyError> {
    to_minor_rounded(&number.to_string(), currency, rounding)
}

/// Exact: a JSON number or decimal string → minor units.
pub fn value_to_minor(value: &Value, currency: &str) -> Result<i64, MoneyError> {
    match value {
        Value::Number(n) => number_to_minor(n, currency),
        Value::String(s) => to_minor(s, currency),
        other => Err(MoneyError::NotANumber(other.to_string())),
    }
}

/// Minor units → decimal text in `currency`: 1250 USD → "12.50", -5 USD → "-0.05".
pub fn format_minor(amount: i64, currency: &str) -> String {
    let decimals = minor_digits(currency) as usize;
    let sign = if amount < 0 { "-" } else { "" };
    let digits = amount.unsigned_abs().to_string();
    if decimals == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = decimals + 1);
    let (int, frac) = padded.split_at(padded.len() - decimals);
    format!("{sign}{int}.{frac}")
}

/// A decimal amount exactly as a provider sent it: a JSON number or a string of digits.
/// Deserialize provider payloads into it, then convert with [`Decimal::to_minor`].
///
/// ```
/// # use posbridge_sdk::money::Decimal;
/// #[derive(serde::Deserialize)]
/// struct Check { #[serde(rename = "totalAmount")] total_amount: Decimal }
/// let check: Check = posbridge_sdk::serde_json::from_str(r#"{"totalAmount": 8.5}"#).unwrap();
/// assert_eq!(check.total_amount.to_minor("USD"), Ok(850));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(String);

impl Decimal {
    /// Wraps decimal text (not validated until converted).
    pub fn new(text: impl Into<String>) -> Self {
        Decimal(text.into())
    }

    /// The text as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Exact conversion to minor units of `currency`.
    pub fn to_minor(&self, currency: &str) -> Result<i64, MoneyError> {
        to_minor(&self.0, currency)
    }

    /// Conversion to minor units of `currency`, rounding extra decimals.
    pub fn to_minor_rounded(&self, currency: &str, rounding: Rounding) -> Result<i64, MoneyError> {
        to_minor_rounded(&self.0, currency, rounding)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Number(n) => Ok(Decimal(n.to_string())),
            Value::String(s) => Ok(Decimal(s)),
            other => Err(serde::de::Error::custom(MoneyError::NotANumber(
                other.to_string(),
            ))),
        }
    }
}

/// Significant integer digits beyond which any value overflows i64 minor units.
const MAX_DIGITS: usize = 20;
/// Largest supported scale.
const MAX_DECIMALS: u32 = 18;

fn parse(text: &str, decimals: u32, rounding: Option<Rounding>) -> Result<i64, MoneyError> {
    let invalid = || MoneyError::Invalid(text.to_owned());
    let overflow = || MoneyError::Overflow(text.to_owned());
    let numeric = |b: u8| b.is_ascii_digit() || b"+-.eE".contains(&b);
    if text.bytes().any(|b| b == b'e' || b == b'E') && text.bytes().all(numeric) {
        return Err(MoneyError::Exponent(text.to_owned()));
    }
    if decimals > MAX_DECIMALS {
        return Err(overflow());
    }
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
        || (unsigned.contains('.') && frac_part.is_empty())
    {
        return Err(invalid());
    }

    let significant = int_part.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return Err(overflow());
    }
    let scale = decimals as usize;
    let (kept, extra) = if frac_part.len() > scale {
        frac_part.split_at(scale)
    } else {
        (frac_part, "")
    };

    let digit = |b: u8| u128::from(b - b'0');
    let mut magnitude: u128 = 0;
    for b in significant.bytes().chain(kept.bytes()) {
        magnitude = magnitude * 10 + digit(b);
    }
    for _ in kept.len()..scale {
        magnitude *= 10;
    }

    if extra.bytes().any(|b| b != b'0') {
        let rounding = rounding.ok_or_else(|| MoneyError::TooPrecise {
            text: text.to_owned(),
            decimals,
        })?;
        let first = extra.bytes().next().map_or(0, |b| b - b'0');
        let rest_nonzero = extra.bytes().skip(1).any(|b| b != b'0');
        let up = match rounding {
            Rounding::TowardZero => false,
            Rounding::HalfAwayFromZero => first >= 5,
            Rounding::HalfEven => first > 5 || (first == 5 && (rest_nonzero || magnitude % 2 == 1)),
        };
        if up {
            magnitude += 1;
        }
    }

    let signed = if negative {
        -i128::try_from(magnitude).map_err(|_| overflow())?
    } else {
        i128::try_from(magnitude).map_err(|_| overflow())?
    };
    i64::try_from(signed).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_conversions() {
        assert_eq!(to_minor("8.5", "USD"), Ok(850));
        assert_eq!(to_minor("8.50", "USD"), Ok(850));
        assert_eq!(to_minor("8", "USD"), Ok(800));
        assert_eq!(to_minor("0.01", "USD"), Ok(1));
        assert_eq!(to_minor("0", "USD"), Ok(0));
        assert_eq!(to_minor("-0", "USD"), Ok(0));
        assert_eq!(to_minor("+3.2", "USD"), Ok(320));
        assert_eq!(to_minor("007.10", "USD"), Ok(710));
        assert_eq!(
            to_minor("12.3400000", "USD"),
            Ok(1234),
            "trailing zeros are exact"
        );
        assert_eq!(to_minor("-12.34", "usd"), Ok(-1234));
        assert_eq!(to_minor("1500", "JPY"), Ok(1500));
        assert_eq!(to_minor("1.234", "KWD"), Ok(1234));
        assert_eq!(to_minor("0.1", "USD"), Ok(10), "never via f64");
        assert_eq!(to_minor("0.29", "USD"), Ok(29));
        assert_eq!(to_minor("1.15", "USD"), Ok(115));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            to_minor("12.345", "USD"),
            Err(MoneyError::TooPrecise { decimals: 2, .. })
        ));
        assert!(matches!(
            to_minor("1.5", "JPY"),
            Err(MoneyError::TooPrecise { .. })
        ));
        for bad in [
            "", "-", "+", ".5", "5.", "1.2.3", "abc", " 1", "1 ", "1,5", "--1", "0x10", "NaN",
        ] {
            assert_eq!(
                to_minor(bad, "USD"),
                Err(MoneyError::Invalid(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(
            to_minor("hello", "USD"),
            Err(MoneyError::Invalid("hello".into()))
        );
        for bad in ["1e2", "1E2", "1.5e-3", "inf"] {
            assert!(to_minor(bad, "USD").is_err(), "{bad:?}");
        }
        assert_eq!(
            to_minor("1e2", "USD"),
            Err(MoneyError::Exponent("1e2".into()))
        );
    }

    #[test]
    fn bounds() {
        // i64::MAX = 9223372036854775807
        assert_eq!(to_minor("92233720368547758.07", "USD"), Ok(i64::MAX));
        assert_eq!(to_minor("-92233720368547758.08", "USD"), Ok(i64::MIN));
        assert!(matches!(
            to_minor("92233720368547758.08", "USD"),
            Err(MoneyError::Overflow(_))
        ));
        assert!(matches!(
            to_minor("99999999999999999999999999", "USD"),
            Err(MoneyError::Overflow(_))
        ));
        assert!(matches!(
            to_minor(&"9".repeat(400), "USD"),
            Err(MoneyError::Overflow(_))
        ));
        assert_eq!(to_minor(&format!("{}1", "0".repeat(400)), "USD"), Ok(100));
    }

    #[test]
    fn rounding_modes() {
        use Rounding::*;
        let r = |t: &str, m| to_minor_rounded(t, "USD", m).unwrap();
        assert_eq!(r("0.125", HalfEven), 12);
        assert_eq!(r("0.135", HalfEven), 14);
        assert_eq!(r("0.1251", HalfEven), 13);
        assert_eq!(r("-0.125", HalfEven), -12);
        assert_eq!(r("-0.135", HalfEven), -14);
        assert_eq!(r("0.125", HalfAwayFromZero), 13);
        assert_eq!(r("-0.125", HalfAwayFromZero), -13);
        assert_eq!(r("0.124", HalfAwayFromZero), 12);
        assert_eq!(r("0.129", TowardZero), 12);
        assert_eq!(r("-0.129", TowardZero), -12);
        assert_eq!(r("-0.001", HalfEven), 0);
        assert_eq!(r("9.995", HalfEven), 1000);
        assert_eq!(r("12.34", HalfEven), 1234, "exact values are untouched");
        assert!(to_minor_rounded("1e2", "USD", HalfEven).is_err());
    }

    #[test]
    fn json_numbers_keep_their_text() {
        let v: Value = serde_json::from_str(
            r#"{"a": 8.5, "b": 0.1, "c": 12.345, "d": 1e2, "e": "3.20", "f": null}"#,
        )
        .unwrap();
        assert_eq!(value_to_minor(&v["a"], "USD"), Ok(850));
        assert_eq!(value_to_minor(&v["b"], "USD"), Ok(10));
        assert!(value_to_minor(&v["c"], "USD").is_err());
        assert_eq!(
            number_to_minor_rounded(v["c"].as_number().unwrap(), "USD", Rounding::HalfEven),
            Ok(1234)
        );
        assert!(matches!(
            value_to_minor(&v["d"], "USD"),
            Err(MoneyError::Exponent(_))
        ));
        assert_eq!(value_to_minor(&v["e"], "USD"), Ok(320));
        assert!(matches!(
            value_to_minor(&v["f"], "USD"),
            Err(MoneyError::NotANumber(_))
        ));
        // A 17-significant-digit amount that f64 could not hold exactly.
        let big: Value = serde_json::from_str("12345678901234567.89").unwrap();
        assert_eq!(value_to_minor(&big, "USD"), Ok(1_234_567_890_123_456_789));
    }

    #[test]
    fn decimal_deserializes_from_numbers_and_strings() {
        #[derive(Deserialize)]
        struct Check {
            total: Decimal,
            tax: Decimal,
        }
        let c: Check = serde_json::from_str(r#"{"total": 19.99, "tax": "1.60"}"#).unwrap();
        assert_eq!(c.total.to_minor("USD"), Ok(1999));
        assert_eq!(c.tax.to_minor("USD"), Ok(160));
        assert_eq!(c.total.as_str(), "19.99");
        assert!(serde_json::from_str::<Check>(r#"{"total": true, "tax": 1}"#).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_minor(1250, "USD"), "12.50");
        assert_eq!(format_minor(5, "USD"), "0.05");
        assert_eq!(format_minor(-5, "USD"), "-0.05");
        assert_eq!(format_minor(0, "USD"), "0.00");
        assert_eq!(format_minor(1500, "JPY"), "1500");
        assert_eq!(format_minor(1234, "KWD"), "1.234");
        assert_eq!(format_minor(i64::MIN, "USD"), "-92233720368547758.08");
        for amount in [0, 1, -1, 99, 100, 123_456, i64::MAX, i64::MIN] {
            assert_eq!(to_minor(&format_minor(amount, "USD"), "USD"), Ok(amount));
        }
    }
}
