//! Running a transaction again when PostgreSQL aborted it to break a deadlock or a
//! serialization conflict.
//!
//! Two transactions that lock the same rows in different orders (a till's push and a
//! webhook batch naming the same customers, say) can each wait for the other. PostgreSQL
//! detects the cycle after `deadlock_timeout` and aborts one of them with SQLSTATE 40P01;
//! nothing of that transaction was written, so running it again from the start is safe and
//! is what PostgreSQL's documentation asks applications to do. SQLite never reports either:
//! its single writer connection serializes every write.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::StoreError;

/// Further attempts after the first when the database aborts the transaction as a deadlock
/// victim or a serialization failure. Each retry comes after the other transaction had a
/// head start, so more than a few in a row means sustained contention: the caller then gets
/// the conflict (a 503 with `Retry-After`), not an ever longer wait.
pub(crate) const CONFLICT_RETRIES: u32 = 4;

/// Pause before the first retry; it doubles with every further one, each with up to as much
/// again of random jitter, so that the transactions that collided do not collide again in
/// lockstep. 5, 10, 20, 40 ms: under 150 ms in all, small beside the one second PostgreSQL
/// waits by default before it even looks for a deadlock.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// SQLSTATEs after which the whole transaction may simply be run again.
const TRANSIENT_SQLSTATES: [&str; 2] = [
    // deadlock_detected
    "40P01", // serialization_failure
    "40001",
];

/// An error that can tell whether it is a transient conflict between transactions.
pub trait TransientConflict {
    /// True when the database rolled the transaction back to resolve a conflict with
    /// another one, so that running it again from the start can succeed.
    fn is_transient_conflict(&self) -> bool;
}

impl TransientConflict for StoreError {
    fn is_transient_conflict(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| TRANSIENT_SQLSTATES.contains(&code.as_ref())),
            StoreError::Batch(err) => err.is_transient_conflict(),
            _ => false,
        }
    }
}

/// Runs `attempt` (each call a whole transaction, begun and ended inside it) until it
/// succeeds, fails for another reason, or has been retried `CONFLICT_RETRIES` times.
pub(crate) async fn retry_conflicts<T, E, F, Fut>(what: &str, mut attempt: F) -> Result<T, E>
where
    E: TransientConflict,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(err) if err.is_transient_conflict() && retries < CONFLICT_RETRIES => {
                retries += 1;
                metrics::counter!("posbridge_transaction_retries_total").increment(1);
                let pause = pause_before(retries);
                tracing::info!(
                    what,
                    retry = retries,
                    pause_ms = pause.as_millis() as u64,
                    "transaction aborted by a conflict with another; running it again"
                );
                tokio::time::sleep(pause).await;
            }
            result => return result,
        }
    }
}

/// The jittered pause before retry number `retry` (1-based).
fn pause_before(retry: u32) -> Duration {
    let base = FIRST_PAUSE * 2u32.saturating_pow(retry.saturating_sub(1));
    let jitter = rand::rng().random_range(0..=base.as_micros() as u64);
    base + Duration::from_micros(jitter)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Conflict,
        Other,
    }

    impl TransientConflict for Failure {
        fn is_transient_conflict(&self) -> bool {
            *self == Failure::Conflict
        }
    }

    #[tokio::test]
    async fn conflicts_are_retried_until_the_attempt_succeeds() {
        let calls = Cell::new(0);
        let result = retry_conflicts("test", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(Failure::Conflict)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn a_lasting_conflict_is_returned_after_the_last_retry() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retry_conflicts("test", || {
            calls.set(calls.get() + 1);
            async { Err(Failure::Conflict) }
        })
        .await;
        assert_eq!(result, Err(Failure::Conflict));
        assert_eq!(calls.get(), 1 + CONFLICT_RETRIES);
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retry_conflicts("test", || {
            calls.set(calls.get() + 1);
            async { Err(Failure::Other) }
        })
        .await;
        assert_eq!(result, Err(Failure::Other));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn pauses_grow_and_stay_within_twice_their_base() {
        for retry in 1..=CONFLICT_RETRIES {
            let base = FIRST_PAUSE * 2u32.pow(retry - 1);
            let pause = pause_before(retry);
            assert!(
                pause >= base && pause <= base * 2,
                "retry {retry}: {pause:?} outside {base:?}..={:?}",
                base * 2
            );
        }
    }
}
