//! Pure decisions of the ingest: whether a version of a sale replaces the stored one, and
//! how a stored sale moves its customers' spend. Nothing here touches the database.

use crate::rules::{SaleRef, SpendMove};

/// What storing one sale of a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// A new row.
    Created {
        /// Its id.
        id: String,
    },
    /// A known row replaced by newer content.
    Updated {
        /// Its id.
        id: String,
        /// What it counted before.
        previous: Previous,
    },
    /// Known and unchanged, or older than what is stored.
    Duplicate,
}

/// What a replaced row counted before the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Previous {
    /// Its spend (see [`crate::customers::net_spend`]).
    pub net: i64,
    /// The customer it was attributed to.
    pub customer_id: Option<String>,
}

/// Whether an incoming version of a sale, `(content hash, upstream updated-at)`, replaces
/// the stored one: its content differs and it is not older upstream. A version without an
/// upstream time is taken as current, a stored one without as the oldest; equal content is
/// a duplicate whatever the times say, so a redelivered webhook changes nothing.
pub(super) fn supersedes(stored: (&str, Option<i64>), incoming: (&str, Option<i64>)) -> bool {
    let (stored_hash, stored_at) = stored;
    let (incoming_hash, incoming_at) = incoming;
    let stored_at = stored_at.unwrap_or(0);
    stored_hash != incoming_hash && stored_at <= incoming_at.unwrap_or(stored_at)
}

/// The spend moves a stored sale makes, in order: the sale's customer gains its `net` (less
/// what the sale's previous version counted for the same customer); a customer an update
/// took the sale from loses what it counted. `matched` is the customer matching found now;
/// without one an update keeps the customer the row had.
pub(super) fn spend_moves<'r>(
    outcome: &'r Outcome,
    matched: Option<&'r str>,
    net: i64,
    occurred_at: i64,
) -> Vec<SpendMove<'r>> {
    let (id, previous) = match outcome {
        Outcome::Duplicate => return Vec::new(),
        Outcome::Created { id } => (id, None),
        Outcome::Updated { id, previous } => (id, Some(previous)),
    };
    let customer_id = matched.or_else(|| previous.and_then(|p| p.customer_id.as_deref()));
    let mut moves = Vec::with_capacity(2);
    let mut counted_before = 0;
    if let Some(previous) = previous {
        match previous.customer_id.as_deref() {
            Some(before) if Some(before) == customer_id => counted_before = previous.net,
            Some(before) => moves.push(SpendMove {
                customer_id: before,
                delta: -previous.net,
                sale: None,
            }),
            None => {}
        }
    }
    if let Some(customer_id) = customer_id {
        moves.push(SpendMove {
            customer_id,
            delta: net - counted_before,
            sale: Some(SaleRef {
                transaction_id: id,
                occurred_at,
            }),
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (customer, delta, evaluated sale id) of each move.
    fn summary<'a>(moves: &[SpendMove<'a>]) -> Vec<(&'a str, i64, Option<&'a str>)> {
        moves
            .iter()
            .map(|m| (m.customer_id, m.delta, m.sale.map(|s| s.transaction_id)))
            .collect()
    }

    fn updated(net: i64, customer: Option<&str>) -> Outcome {
        Outcome::Updated {
            id: "t1".into(),
            previous: Previous {
                net,
                customer_id: customer.map(str::to_owned),
            },
        }
    }

    #[test]
    fn newer_content_replaces_and_older_or_equal_does_not() {
        assert!(supersedes(("a", Some(10)), ("b", Some(20))));
        assert!(supersedes(("a", Some(10)), ("b", Some(10))));
        assert!(!supersedes(("a", Some(20)), ("b", Some(10))));
        assert!(!supersedes(("a", Some(10)), ("a", Some(20))));
        // No upstream time: taken as current.
        assert!(supersedes(("a", Some(10)), ("b", None)));
        assert!(supersedes(("a", None), ("b", None)));
        assert!(supersedes(("a", None), ("b", Some(5))));
        assert!(!supersedes(("a", None), ("a", None)));
    }

    #[test]
    fn a_new_sale_adds_its_net_to_its_customer() {
        let created = Outcome::Created { id: "t1".into() };
        assert_eq!(
            summary(&spend_moves(&created, Some("ann"), 1500, 7)),
            [("ann", 1500, Some("t1"))]
        );
        assert_eq!(
            spend_moves(&created, Some("ann"), 1500, 7)[0]
                .sale
                .unwrap()
                .occurred_at,
            7
        );
        // Unmatched: no one's spend moves.
        assert!(spend_moves(&created, None, 1500, 7).is_empty());
        assert!(spend_moves(&Outcome::Duplicate, Some("ann"), 1500, 7).is_empty());
    }

    #[test]
    fn an_update_moves_only_the_difference() {
        // Partially refunded: 1500 counted, now 1000.
        assert_eq!(
            summary(&spend_moves(
                &updated(1500, Some("ann")),
                Some("ann"),
                1000,
                7
            )),
            [("ann", -500, Some("t1"))]
        );
        // Voided: everything it counted comes off.
        assert_eq!(
            summary(&spend_moves(&updated(1500, Some("ann")), None, 0, 7)),
            [("ann", -1500, Some("t1"))]
        );
        // Pending turned completed.
        assert_eq!(
            summary(&spend_moves(&updated(0, Some("ann")), None, 900, 7)),
            [("ann", 900, Some("t1"))]
        );
    }

    #[test]
    fn an_update_matched_to_someone_else_moves_the_spend_across() {
        assert_eq!(
            summary(&spend_moves(
                &updated(1500, Some("ann")),
                Some("bob"),
                1500,
                7
            )),
            [("ann", -1500, None), ("bob", 1500, Some("t1"))]
        );
        // First matched on this version.
        assert_eq!(
            summary(&spend_moves(&updated(1500, None), Some("bob"), 1500, 7)),
            [("bob", 1500, Some("t1"))]
        );
    }
}
