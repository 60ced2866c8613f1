//! Cursor pagination for ledgers and lists: newest first, stable under concurrent inserts.

use serde::{Deserialize, Serialize};

/// Default page size.
const DEFAULT_LIMIT: i64 = 50;
/// Largest page a client may ask for.
const MAX_LIMIT: i64 = 500;

/// `?limit=&cursor=` of a list route.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size (1–500, default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub cursor: Option<Cursor>,
}

/// Position after the last row of a page: its timestamp and id.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Cursor {
    at: i64,
    id: String,
}

impl TryFrom<String> for Cursor {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let (at, id) = value
            .split_once('_')
            .ok_or_else(|| "malformed cursor".to_owned())?;
        let at = at.parse().map_err(|_| "malformed cursor".to_owned())?;
        Ok(Cursor {
            at,
            id: id.to_owned(),
        })
    }
}

/// One page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> i64 {
        self.limit
            .map(i64::from)
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT)
    }

    /// Rows to fetch: one more than the page, to know whether another page exists.
    pub(crate) fn fetch_limit(&self) -> i64 {
        self.limit() + 1
    }

    /// `(created_at, id)` strictly below which rows belong to this page.
    pub(crate) fn before(&self) -> (i64, String) {
        match &self.cursor {
            Some(c) => (c.at, c.id.clone()),
            None => (i64::MAX, String::new()),
        }
    }

    /// Cuts fetched `(created_at, row)` pairs down to a page and computes the next cursor.
    pub(crate) fn page<T>(&self, mut rows: Vec<(i64, T)>, id_of: impl Fn(&T) -> String) -> Page<T> {
        let limit = usize::try_from(self.limit()).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|(at, row)| format!("{at}_{}", id_of(row)))
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(|(_, row)| row).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<u32>, cursor: Option<&str>) -> PageQuery {
        PageQuery {
            limit,
            cursor: cursor.map(|c| Cursor::try_from(c.to_owned()).unwrap()),
        }
    }

    fn rows(n: i64) -> Vec<(i64, String)> {
        (0..n)
            .rev()
            .map(|at| (at * 10, format!("id{at}")))
            .collect()
    }

    #[test]
    fn limit_defaults_to_50_and_is_clamped_to_1_through_500() {
        assert_eq!(query(None, None).fetch_limit(), DEFAULT_LIMIT + 1);
        assert_eq!(query(Some(0), None).fetch_limit(), 2);
        assert_eq!(query(Some(7), None).fetch_limit(), 8);
        assert_eq!(query(Some(500), None).fetch_limit(), MAX_LIMIT + 1);
        assert_eq!(query(Some(u32::MAX), None).fetch_limit(), MAX_LIMIT + 1);
    }

    #[test]
    fn without_a_cursor_the_page_starts_above_every_row() {
        assert_eq!(query(None, None).before(), (i64::MAX, String::new()));
    }

    #[test]
    fn a_cursor_is_the_timestamp_and_id_split_at_the_first_underscore() {
        assert_eq!(
            query(None, Some("1700_tx_abc")).before(),
            (1700, "tx_abc".to_owned())
        );
        assert_eq!(query(None, Some("-5_x")).before(), (-5, "x".to_owned()));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in ["", "1700", "abc_id", "17.5_id", "_id"] {
            assert_eq!(
                Cursor::try_from(bad.to_owned()).unwrap_err(),
                "malformed cursor",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_full_fetch_is_cut_to_the_limit_with_a_cursor_at_its_last_row() {
        let page = query(Some(3), None).page(rows(4), |id| id.clone());
        assert_eq!(page.items, ["id3", "id2", "id1"]);
        assert_eq!(page.next_cursor.as_deref(), Some("10_id1"));
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let exact = query(Some(3), None).page(rows(3), |id| id.clone());
        assert_eq!(exact.items.len(), 3);
        assert_eq!(exact.next_cursor, None);
        let short = query(Some(3), None).page(rows(1), |id| id.clone());
        assert_eq!(short.items, ["id0"]);
        assert_eq!(short.next_cursor, None);
        let empty = query(Some(3), None).page(Vec::<(i64, String)>::new(), |id| id.clone());
        assert!(empty.items.is_empty());
        assert_eq!(empty.next_cursor, None);
    }

    #[test]
    fn the_next_cursor_round_trips_into_the_next_page_bound() {
        let page = query(Some(2), None).page(rows(5), |id| id.clone());
        let next = page.next_cursor.unwrap();
        assert_eq!(query(Some(2), Some(&next)).before(), (30, "id3".to_owned()));
    }

    #[test]
    fn a_page_query_refuses_unknown_parameters() {
        let parsed: PageQuery =
            serde_json::from_value(serde_json::json!({"limit": 5, "cursor": "9_a"})).unwrap();
        assert_eq!(parsed.fetch_limit(), 6);
        assert_eq!(parsed.before(), (9, "a".to_owned()));
        assert!(serde_json::from_value::<PageQuery>(serde_json::json!({"page": 2})).is_err());
        assert!(
            serde_json::from_value::<PageQuery>(serde_json::json!({"cursor": "nope"})).is_err()
        );
    }
}
