//! Customer identity within a tenant: one customer per normalised phone number.

use crate::store::{new_id, now_micros, Conn};

/// The id of the tenant's customer with this (normalised) phone, enrolling one with no
/// points if there is none yet. A sale or a link naming a phone is how customers appear.
pub async fn find_or_create(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO customers (id, tenant_id, phone, points, lifetime_points, created_at, updated_at)
         VALUES ($1, $2, $3, 0, 0, $4, $4)
         ON CONFLICT (tenant_id, phone) DO UPDATE SET updated_at = customers.updated_at
         RETURNING id",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(phone)
    .bind(now_micros())
    .fetch_one(conn)
    .await
}

/// A phone number that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid phone number {0:?}: use E.164 (+15550100199) or a local number of the tenant's country")]
pub struct InvalidPhone(pub String);

/// Normalises a phone number to E.164, reading numbers without a country code as numbers of
/// the tenant's country, so `(555) 010-0199` and `+15550100199` name one customer.
///
/// Numbers are parsed, not validated against allocation tables: fictional ranges such as
/// 555-01XX (reserved for examples and tests) must still be accepted.
pub fn normalize_phone(default_country: &str, raw: &str) -> Result<String, InvalidPhone> {
    let country = default_country.parse::<phonenumber::country::Id>().ok();
    let trimmed = raw.trim();
    let invalid = || InvalidPhone(raw.to_owned());
    if trimmed.is_empty() || trimmed.len() > 32 {
        return Err(invalid());
    }
    let number = phonenumber::parse(country, trimmed).map_err(|_| invalid())?;
    let formatted = number.format().mode(phonenumber::Mode::E164).to_string();
    let digits = formatted.trim_start_matches('+');
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    Ok(formatted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_international_forms_are_one_number() {
        assert_eq!(
            normalize_phone("US", "(555) 010-0199").unwrap(),
            "+15550100199"
        );
        assert_eq!(
            normalize_phone("US", "+15550100199").unwrap(),
            "+15550100199"
        );
        assert_eq!(
            normalize_phone("US", "555.010.0199").unwrap(),
            "+15550100199"
        );
        assert_eq!(
            normalize_phone("GB", "020 7946 0018").unwrap(),
            "+442079460018"
        );
        assert!(normalize_phone("US", "hello").is_err());
        assert!(normalize_phone("US", "").is_err());
        assert!(normalize_phone("US", "12").is_err());
    }
}
