//! The actions a hook returns, checked as a whole before anything is applied, then applied
//! inside the delivery's transaction (together with the cursor move), so they take effect
//! exactly once per successful delivery. Any invalid action fails the whole delivery.

use crate::auth::TenantScope;
use crate::customers::tags::{add_tag, TagError, TaggedTable, MAX_TAGS};
use crate::customers::{self, InvalidPhone};
use crate::events::LoggedTx;
use crate::plugins::contract::HookAction;
use crate::store::StoreError;

/// Most actions one event may produce; more fails the delivery (a hook in a loop).
pub(crate) const MAX_ACTIONS: usize = 32;
/// Largest custom event data, JSON bytes.
pub(crate) const MAX_EMIT_BYTES: usize = 16 * 1024;
/// Longest custom event kind and tag.
const MAX_NAME: usize = 40;

/// Why a hook's answer could not be applied. The delivery fails and is retried.
#[derive(Debug, thiserror::Error)]
pub(super) enum ActionError {
    /// More than [`MAX_ACTIONS`].
    #[error("the hook returned {0} actions; at most {MAX_ACTIONS} are allowed per event")]
    TooMany(usize),
    /// Custom event kind outside `[a-z0-9_]{1,40}`.
    #[error("custom event kind {0:?} must be 1-40 characters of a-z, 0-9 and '_'")]
    BadKind(String),
    /// Custom event data that is not JSON.
    #[error("custom event {kind:?} data is not valid JSON: {reason}")]
    BadData {
        /// Kind.
        kind: String,
        /// Parser message.
        reason: String,
    },
    /// Custom event data over [`MAX_EMIT_BYTES`].
    #[error("custom event {0:?} data is larger than {MAX_EMIT_BYTES} bytes")]
    DataTooLarge(String),
    /// Tag outside `[A-Za-z0-9_.:-]{1,40}`.
    #[error("tag {0:?} must be 1-40 characters of letters, digits, '-', '_', '.' and ':'")]
    BadTag(String),
    /// Tag target transaction unknown in this tenant.
    #[error("no transaction {0:?} in this tenant")]
    UnknownTransaction(String),
    /// Customer phone that does not parse.
    #[error(transparent)]
    InvalidPhone(#[from] InvalidPhone),
    /// The row already has [`MAX_TAGS`] tags.
    #[error("{0} already has {MAX_TAGS} tags")]
    TooManyTags(String),
    /// The database failed (or kept changing the row under us).
    #[error("storage failure while applying the actions")]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ActionError {
    fn from(err: sqlx::Error) -> Self {
        ActionError::Store(err.into())
    }
}

/// An action that passed every check that needs no database.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Planned {
    /// Append `custom.<kind>` with `data`.
    Emit {
        /// Kind without prefix.
        kind: String,
        /// Parsed data.
        data: serde_json::Value,
    },
    /// Tag one of our transactions by id.
    TagTransaction {
        /// Transaction id.
        id: String,
        /// Tag.
        tag: String,
    },
    /// Tag the customer with this E.164 phone (enrolled if unknown).
    TagCustomer {
        /// Normalised phone.
        phone: String,
        /// Tag.
        tag: String,
    },
}

fn name_ok(name: &str, extra: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
}

fn tag_ok(tag: &str) -> Result<String, ActionError> {
    let lower = tag.to_ascii_lowercase();
    let ok = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok && name_ok(&lower, b"-_.:") {
        Ok(tag.to_owned())
    } else {
        Err(ActionError::BadTag(tag.to_owned()))
    }
}

/// Checks every action; the first bad one refuses them all.
pub(super) fn plan(
    scope: &TenantScope,
    actions: Vec<HookAction>,
) -> Result<Vec<Planned>, ActionError> {
    if actions.len() > MAX_ACTIONS {
        return Err(ActionError::TooMany(actions.len()));
    }
    actions
        .into_iter()
        .map(|action| match action {
            HookAction::Emit { kind, data } => {
                if !name_ok(&kind, b"_") {
                    return Err(ActionError::BadKind(kind));
                }
                if data.len() > MAX_EMIT_BYTES {
                    return Err(ActionError::DataTooLarge(kind));
                }
                let data = serde_json::from_str(&data).map_err(|e| ActionError::BadData {
                    kind: kind.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Planned::Emit { kind, data })
            }
            HookAction::TagTransaction { target, tag } => Ok(Planned::TagTransaction {
                tag: tag_ok(&tag)?,
                id: target,
            }),
            HookAction::TagCustomer { target, tag } => Ok(Planned::TagCustomer {
                tag: tag_ok(&tag)?,
                phone: customers::normalize_phone(scope.country(), &target)?,
            }),
        })
        .collect()
}

/// Applies checked actions inside the delivery's transaction.
pub(super) async fn apply(
    tx: &mut LoggedTx,
    scope: &TenantScope,
    planned: &[Planned],
) -> Result<(), ActionError> {
    for action in planned {
        match action {
            Planned::Emit { kind, data } => {
                tx.append_custom(scope, kind, data);
            }
            Planned::TagTransaction { id, tag } => {
                let found = add_tag(tx.conn(), TRANSACTIONS, scope.tenant_id(), id, tag).await?;
                if !found {
                    return Err(ActionError::UnknownTransaction(id.clone()));
                }
            }
            Planned::TagCustomer { phone, tag } => {
                customers::tags::tag_customer(tx.conn(), scope.tenant_id(), phone, tag).await?;
            }
        }
    }
    Ok(())
}

/// Sales' tags; customers' are written by [`customers::tags`].
const TRANSACTIONS: TaggedTable = TaggedTable {
    select: "SELECT tags FROM pos_transactions WHERE tenant_id = $1 AND id = $2",
    update: "UPDATE pos_transactions SET tags = $1 WHERE tenant_id = $2 AND id = $3 AND tags = $4",
    noun: "transaction",
};

impl From<TagError> for ActionError {
    fn from(err: TagError) -> Self {
        match err {
            TagError::TooMany(name) => ActionError::TooManyTags(name),
            TagError::KeptChanging(_) => {
                ActionError::Store(StoreError::Sqlx(sqlx::Error::Protocol(err.to_string())))
            }
            TagError::Store(e) => ActionError::Store(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        assert!(name_ok("big_spender", b"_"));
        assert!(!name_ok("Big", b"_"));
        assert!(!name_ok("", b"_"));
        assert!(!name_ok("a-b", b"_"));
        assert!(!name_ok(&"a".repeat(41), b"_"));
        assert_eq!(tag_ok("big-spender").unwrap(), "big-spender");
        assert_eq!(tag_ok("WHALE").unwrap(), "WHALE");
        assert_eq!(tag_ok("tier:vip.1").unwrap(), "tier:vip.1");
        assert!(tag_ok("no spaces").is_err());
        assert!(tag_ok("").is_err());
        assert!(tag_ok("ünï").is_err());
    }
}
