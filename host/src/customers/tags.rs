//! Tags: short labels hooks put on customers (and on sales), kept as a JSON array of strings
//! in the row's `tags` column.

use super::find_or_create;
use crate::store::Conn;

/// Most tags one customer or sale carries.
pub(crate) const MAX_TAGS: usize = 32;
/// Compare-and-set attempts on a row's tags before giving up (concurrent taggers).
const TAG_ATTEMPTS: usize = 5;

/// Why a tag could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TagError {
    /// The row already has [`MAX_TAGS`] tags.
    #[error("{0} already has {MAX_TAGS} tags")]
    TooMany(String),
    /// Concurrent taggers changed the row on every attempt.
    #[error("{0} kept changing while tagging it")]
    KeptChanging(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// A table with a `tags` column, and how to read and compare-and-set it for one row of a
/// tenant (`$1` tenant, `$2` id; the update binds tags, tenant, id, previous tags).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaggedTable {
    /// Reads the row's tags.
    pub select: &'static str,
    /// Writes them if unchanged since read.
    pub update: &'static str,
    /// What a row is called in messages.
    pub noun: &'static str,
}

const CUSTOMERS: TaggedTable = TaggedTable {
    select: "SELECT tags FROM customers WHERE tenant_id = $1 AND id = $2",
    update: "UPDATE customers SET tags = $1 WHERE tenant_id = $2 AND id = $3 AND tags = $4",
    noun: "customer",
};

/// The tags a row's stored text holds plus `tag`: `None` when already there.
/// A corrupt value is replaced rather than blocking every future tag.
pub(crate) fn with_tag(current: &str, tag: &str) -> Result<Option<Vec<String>>, usize> {
    let mut tags: Vec<String> = serde_json::from_str(current).unwrap_or_default();
    if tags.iter().any(|t| t == tag) {
        return Ok(None);
    }
    if tags.len() >= MAX_TAGS {
        return Err(tags.len());
    }
    tags.push(tag.to_owned());
    Ok(Some(tags))
}

/// Tags the customer with this (normalised) phone, enrolling them if new.
pub(crate) async fn tag_customer(
    conn: &mut Conn,
    tenant_id: &str,
    phone: &str,
    tag: &str,
) -> Result<(), TagError> {
    let id = find_or_create(conn, tenant_id, phone).await?;
    add_tag(conn, CUSTOMERS, tenant_id, &id, tag).await?;
    Ok(())
}

/// Adds `tag` to the row's tags unless present. `Ok(false)` when the row does not exist.
/// The write is a compare-and-set on the text read, so a concurrent tagger on PostgreSQL
/// is retried instead of overwritten.
pub(crate) async fn add_tag(
    conn: &mut Conn,
    table: TaggedTable,
    tenant_id: &str,
    id: &str,
    tag: &str,
) -> Result<bool, TagError> {
    let name = || format!("{} {id:?}", table.noun);
    for _ in 0..TAG_ATTEMPTS {
        let current: Option<String> = sqlx::query_scalar(table.select)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(current) = current else {
            return Ok(false);
        };
        let tags = match with_tag(&current, tag) {
            Ok(Some(tags)) => tags,
            Ok(None) => return Ok(true),
            Err(_) => return Err(TagError::TooMany(name())),
        };
        let changed = sqlx::query(table.update)
            .bind(serde_json::Value::from(tags).to_string())
            .bind(tenant_id)
            .bind(id)
            .bind(&current)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if changed == 1 {
            return Ok(true);
        }
    }
    Err(TagError::KeptChanging(name()))
}

/// A customer's tags from the stored text; unreadable text reads as none.
pub(crate) fn read_tags(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_added_once_and_bounded() {
        assert_eq!(with_tag("[]", "vip"), Ok(Some(vec!["vip".to_owned()])));
        assert_eq!(with_tag(r#"["vip"]"#, "vip"), Ok(None));
        assert_eq!(
            with_tag(r#"["a"]"#, "b"),
            Ok(Some(vec!["a".to_owned(), "b".to_owned()]))
        );
        assert_eq!(
            with_tag("not json", "vip"),
            Ok(Some(vec!["vip".to_owned()]))
        );
        let full = serde_json::to_string(&vec!["t"; MAX_TAGS]).unwrap();
        assert_eq!(with_tag(&full, "new"), Err(MAX_TAGS));
        assert_eq!(read_tags("nonsense"), Vec::<String>::new());
    }
}
