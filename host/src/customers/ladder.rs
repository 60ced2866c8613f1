//! The tenant's ordered customer tiers and access levels ("the ladder"), lowest first.
//!
//! Customers store the *name* of their tier; its rank comes from the ladder, so a manager can
//! reorder or add tiers without rewriting customers. Removing a tier that a rule unlocks or a
//! customer holds is refused, so every stored name always has a rank.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::{Conn, StoreError};

/// Tiers a tenant starts with, lowest first.
pub(crate) const DEFAULT_TIERS: [&str; 4] = ["GUEST", "REGULAR", "PLATINUM", "WHALE"];
/// Access levels a tenant starts with, lowest first.
pub(crate) const DEFAULT_ACCESS_LEVELS: [&str; 2] = ["PUBLIC_LOBBY", "INNER_CIRCLE"];
/// Most entries in either list.
pub(crate) const MAX_LEVELS: usize = 32;

/// The tenant's tiers and access levels, each lowest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct Ladder {
    /// Customer tiers, lowest first; the first is every customer's starting tier.
    pub tiers: Vec<String>,
    /// Access levels, lowest first; the first is every customer's starting access.
    pub access_levels: Vec<String>,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            tiers: DEFAULT_TIERS.iter().map(|s| (*s).to_owned()).collect(),
            access_levels: DEFAULT_ACCESS_LEVELS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl Ladder {
    /// Rank of a tier (0 = lowest), `None` if the ladder has no such tier.
    pub(crate) fn tier_rank(&self, tier: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t == tier)
    }

    /// Rank of an access level (0 = lowest).
    pub(crate) fn access_rank(&self, level: &str) -> Option<usize> {
        self.access_levels.iter().position(|t| t == level)
    }

    /// The tier a customer with stored tier `held` has (the lowest when none is stored).
    pub(crate) fn effective_tier(&self, held: Option<&str>) -> String {
        held.map(str::to_owned)
            .or_else(|| self.tiers.first().cloned())
            .unwrap_or_default()
    }

    /// The access level a customer with stored level `held` has (the lowest when none).
    pub(crate) fn effective_access(&self, held: Option<&str>) -> String {
        held.map(str::to_owned)
            .or_else(|| self.access_levels.first().cloned())
            .unwrap_or_default()
    }

    /// The higher of the held tier and `granted`: a rule never lowers a tier.
    pub(crate) fn raise_tier(&self, held: Option<&str>, granted: &str) -> String {
        let held = self.effective_tier(held);
        match (self.tier_rank(&held), self.tier_rank(granted)) {
            (Some(h), Some(g)) if g > h => granted.to_owned(),
            (None, Some(_)) => granted.to_owned(),
            _ => held,
        }
    }

    /// The higher of the held access level and `granted`.
    pub(crate) fn raise_access(&self, held: Option<&str>, granted: Option<&str>) -> String {
        let held = self.effective_access(held);
        let Some(granted) = granted else {
            return held;
        };
        match (self.access_rank(&held), self.access_rank(granted)) {
            (Some(h), Some(g)) if g > h => granted.to_owned(),
            (None, Some(_)) => granted.to_owned(),
            _ => held,
        }
    }
}

/// Body of `PUT /api/{tenant}/pos/tiers`: either list, or both.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LadderUpdate {
    /// New tier order, lowest first.
    #[serde(default)]
    pub tiers: Option<Vec<String>>,
    /// New access-level order, lowest first.
    #[serde(default)]
    pub access_levels: Option<Vec<String>>,
}

/// Checks one list: 1..=32 unique names of `A-Z`, `0-9`, `_`, 1–32 characters.
pub(crate) fn check_names(what: &str, names: &[String]) -> Result<(), String> {
    if names.is_empty() || names.len() > MAX_LEVELS {
        return Err(format!("{what} must list 1 to {MAX_LEVELS} names"));
    }
    for (i, name) in names.iter().enumerate() {
        let valid = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!(
                "{what}: {name:?} must be 1-32 characters of A-Z, 0-9 and _"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("{what}: {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// The tenant's ladder, or the default one if the manager never changed it.
pub(crate) async fn load(conn: &mut Conn, tenant_id: &str) -> Result<Ladder, StoreError> {
    let row = sqlx::query("SELECT tiers, access_levels FROM tier_ladders WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok(Ladder::default()),
        Some(row) => Ok(Ladder::from_stored(
            row.try_get("tiers")?,
            row.try_get("access_levels")?,
        )),
    }
}

impl Ladder {
    /// The ladder from its stored JSON columns (absent when a `LEFT JOIN` found no row).
    pub(crate) fn from_stored(tiers: Option<String>, access_levels: Option<String>) -> Ladder {
        let defaults = Ladder::default();
        // Only ever written validated; fall back rather than serve an empty list.
        let parse = |text: Option<String>, fallback: Vec<String>| {
            text.and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
                .filter(|list| !list.is_empty())
                .unwrap_or(fallback)
        };
        Ladder {
            tiers: parse(tiers, defaults.tiers),
            access_levels: parse(access_levels, defaults.access_levels),
        }
    }
}

/// Stores the ladder.
pub(crate) async fn save(
    conn: &mut Conn,
    tenant_id: &str,
    ladder: &Ladder,
    now: i64,
) -> Result<(), StoreError> {
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO tier_ladders (tenant_id, tiers, access_levels, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id) DO UPDATE SET tiers = excluded.tiers,
           access_levels = excluded.access_levels, updated_at = excluded.updated_at",
    )
    .bind(tenant_id)
    .bind(json(&ladder.tiers))
    .bind(json(&ladder.access_levels))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The first name of `removed` that a rule unlocks or a customer holds, if any.
pub(crate) async fn first_in_use(
    conn: &mut Conn,
    tenant_id: &str,
    column: LadderColumn,
    removed: &[String],
) -> Result<Option<String>, StoreError> {
    let (rules_sql, customers_sql) = match column {
        LadderColumn::Tier => (
            "SELECT 1 FROM spend_rules WHERE tenant_id = $1 AND tier = $2 LIMIT 1",
            "SELECT 1 FROM customers WHERE tenant_id = $1 AND tier = $2 LIMIT 1",
        ),
        LadderColumn::AccessLevel => (
            "SELECT 1 FROM spend_rules WHERE tenant_id = $1 AND access_level = $2 LIMIT 1",
            "SELECT 1 FROM customers WHERE tenant_id = $1 AND access_level = $2 LIMIT 1",
        ),
    };
    for name in removed {
        for sql in [rules_sql, customers_sql] {
            let used: Option<i32> = sqlx::query_scalar(sql)
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
            if used.is_some() {
                return Ok(Some(name.clone()));
            }
        }
    }
    Ok(None)
}

/// Which list of the ladder a check is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LadderColumn {
    /// Customer tiers.
    Tier,
    /// Access levels.
    AccessLevel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_never_lowers_a_tier_or_an_access_level() {
        let ladder = Ladder::default();
        assert_eq!(ladder.raise_tier(None, "REGULAR"), "REGULAR");
        assert_eq!(ladder.raise_tier(Some("PLATINUM"), "REGULAR"), "PLATINUM");
        assert_eq!(ladder.raise_tier(Some("PLATINUM"), "WHALE"), "WHALE");
        assert_eq!(ladder.effective_tier(None), "GUEST");
        assert_eq!(ladder.raise_access(None, None), "PUBLIC_LOBBY");
        assert_eq!(
            ladder.raise_access(Some("INNER_CIRCLE"), Some("PUBLIC_LOBBY")),
            "INNER_CIRCLE"
        );
    }

    #[test]
    fn names_are_checked() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_names("tiers", &names(&["GUEST", "VIP_2"])).is_ok());
        assert!(check_names("tiers", &names(&[])).is_err());
        assert!(check_names("tiers", &names(&["guest"])).is_err());
        assert!(check_names("tiers", &names(&["A", "A"])).is_err());
        assert!(check_names("tiers", &names(&[""])).is_err());
    }
}
