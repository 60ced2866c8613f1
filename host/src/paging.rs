//! Cursor pagination for ledgers and lists: newest first, stable under concurrent inserts.

use serde::{Deserialize, Serialize};

/// Default page size.
const DEFAULT_LIMIT: i64 = 50;
/// Largest page a client may ask for.
const MAX_LIMIT: i64 = 500;

/// `?limit=&cursor=` of a list route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size (1–500, default 50).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

/// Position after the last row of a page: its timestamp and id.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Cursor {
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
#[derive(Debug, Serialize)]
pub struct Page<T> {
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
    pub fn fetch_limit(&self) -> i64 {
        self.limit() + 1
    }

    /// `(created_at, id)` strictly below which rows belong to this page.
    pub fn before(&self) -> (i64, String) {
        match &self.cursor {
            Some(c) => (c.at, c.id.clone()),
            None => (i64::MAX, String::new()),
        }
    }

    /// Cuts fetched `(created_at, row)` pairs down to a page and computes the next cursor.
    pub fn page<T>(&self, mut rows: Vec<(i64, T)>, id_of: impl Fn(&T) -> String) -> Page<T> {
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
