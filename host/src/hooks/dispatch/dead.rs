//! Hook events set aside as dead letters (see the parent module for when), and the
//! operator's retry of one: the event, kept in the dead letter's payload since the log may
//! have been pruned, is handed to the binding's hook once more.

use std::sync::Arc;

use super::actions::{self, ActionError};
use super::{load_any, run_hook, Attempt, Claimed};
use crate::auth::TenantScope;
use crate::dead_letters::{self, Kind, NewDeadLetter, RetryOutcome};
use crate::events::{LoggedEvent, Undo};
use crate::hooks::HooksState;
use crate::store::StoreError;

/// A failed event with what its dead letter records.
#[derive(Clone)]
pub(super) struct Failed {
    pub(super) event: LoggedEvent,
    pub(super) error: String,
    pub(super) attempts: i64,
}

/// The item a hook event's dead letter is filed under: its seq.
fn event_item(seq: i64) -> String {
    seq.to_string()
}

/// Sets a failed event aside for `binding`, with the event itself as the payload (the log
/// may be pruned before anyone retries it).
pub(super) async fn set_aside(
    conn: &mut crate::store::Conn,
    binding: &Claimed,
    failed: &Failed,
) -> Result<(), StoreError> {
    let event = &failed.event;
    let payload = serde_json::json!({
        "seq": event.seq,
        "kind": event.kind,
        "at": event.at,
        "data": event.data,
    });
    dead_letters::put(
        conn,
        &NewDeadLetter {
            kind: Kind::Hook,
            tenant_id: &binding.tenant_id,
            integration_id: None,
            source_id: &binding.id,
            item: &event_item(event.seq),
            reason: &failed.error,
            attempts: failed.attempts,
            payload: Some(payload.to_string()),
        },
    )
    .await?;
    Ok(())
}

/// Retries a hook dead letter: the event from its payload is handed to the binding's hook
/// once more, whatever the binding's cursor (it is past the event) or status, and its
/// actions are applied with the dead letter's removal in one transaction.
pub(crate) async fn retry_dead_event(
    app: &HooksState,
    dead: &dead_letters::Stored,
) -> Result<RetryOutcome, StoreError> {
    let Some((binding, _status)) = load_any(app, &dead.view.source_id).await? else {
        return Ok(RetryOutcome::Gone(
            "the hook binding no longer exists".into(),
        ));
    };
    let Some(scope) = TenantScope::for_background_job(&app.store, &binding.tenant_id).await? else {
        return Ok(RetryOutcome::Gone("the tenant no longer exists".into()));
    };
    let payload: Option<serde_json::Value> = dead
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    let event = payload.and_then(|p| {
        Some(LoggedEvent {
            seq: p["seq"].as_i64()?,
            kind: p["kind"].as_str()?.to_owned(),
            at: p["at"].as_i64()?,
            data: p["data"].as_str()?.to_owned(),
        })
    });
    let Some(event) = event else {
        return Ok(RetryOutcome::Gone(
            "the dead letter does not hold the event".into(),
        ));
    };
    // An operator's retry of one event, outside any lease: nothing to lose.
    let planned = match run_hook(app, &binding, &scope, &event, None).await {
        Ok(planned) => planned,
        Err(Attempt::Failed(why) | Attempt::Unavailable(why)) => {
            return Ok(RetryOutcome::Failed(why))
        }
        Err(_) => return Ok(RetryOutcome::Failed("the server is shutting down".into())),
    };
    let home = scope.tenant_id().to_owned();
    let retried = Arc::new((scope, planned, binding.id.clone(), dead.view.item.clone()));
    let outcome = app
        .writes
        .run(&home, move |tx| {
            let retried = retried.clone();
            Box::pin(async move {
                let (scope, planned, binding_id, item) = &*retried;
                match actions::apply(tx, scope, planned).await {
                    Ok(()) => {}
                    Err(ActionError::Store(err)) => return Err(Undo::Store(err)),
                    Err(err) => {
                        let why = format!("invalid action: {err}");
                        return Err(Undo::With(RetryOutcome::Failed(why)));
                    }
                }
                dead_letters::resolve(tx.conn(), Kind::Hook, binding_id, item).await?;
                Ok(())
            })
        })
        .await;
    match outcome {
        Ok(()) => {}
        Err(Undo::With(outcome)) => return Ok(outcome),
        Err(Undo::Store(err)) => return Err(err),
    }
    metrics::counter!("posbridge_hook_deliveries_total", "outcome" => "delivered").increment(1);
    Ok(RetryOutcome::Resolved)
}
