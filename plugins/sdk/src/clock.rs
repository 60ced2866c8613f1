//! The host's wall clock.

use crate::types::Timestamp;

/// Now, in milliseconds since the Unix epoch (the host's clock).
pub fn now() -> Timestamp {
    crate::sys::now()
}
