//! Locking shared in-memory maps and counters.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering from poisoning. Every mutex in the host guards data that a
/// panicking holder cannot leave half-updated (whole-entry inserts and removes, counters,
/// histogram samples), so the data behind a poisoned lock is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
