//! Small persistent key/value state scoped to (plugin, tenant, integration): sync cursors,
//! cached access tokens. Each call runs in a fresh instance, so this is the only memory a plugin
//! keeps between calls.
//!
//! Limits (enforced by the host; `set` fails past them): keys up to [`MAX_KEY_BYTES`], values
//! up to [`MAX_VALUE_BYTES`], [`MAX_KEYS`] keys per scope.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Keys per (plugin, tenant, integration).
pub const MAX_KEYS: usize = 64;

/// The value stored under `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    crate::sys::state_get(key)
}

/// Stores `value` under `key`; fails when a limit is exceeded.
pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    crate::sys::state_set(key, value)
}

/// Removes `key` (no-op if absent).
pub fn delete(key: &str) {
    crate::sys::state_delete(key)
}

/// The UTF-8 text stored under `key` (`None` if absent or not UTF-8).
pub fn get_string(key: &str) -> Option<String> {
    get(key).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Stores text under `key`.
pub fn set_string(key: &str, value: &str) -> Result<(), String> {
    set(key, value.as_bytes())
}

/// The JSON value stored under `key`, deserialized: `Ok(None)` if absent, `Err` if it does not
/// parse as `T` (for example after a plugin upgrade changed the shape; delete or overwrite it).
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, serde_json::Error> {
    match get(key) {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some),
        None => Ok(None),
    }
}

/// Stores `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| format!("state value for {key:?}: {e}"))?;
    set(key, &bytes)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_limits() {
        crate::testing::reset();
        assert_eq!(get_json::<u32>("cursor").unwrap(), None);
        set_json("cursor", &42u32).unwrap();
        assert_eq!(get_json::<u32>("cursor").unwrap(), Some(42));
        assert!(get_json::<String>("cursor").is_err());
        set_string("token", "abc").unwrap();
        assert_eq!(get_string("token").as_deref(), Some("abc"));
        delete("token");
        assert_eq!(get("token"), None);
        assert!(set(&"k".repeat(MAX_KEY_BYTES + 1), b"v").is_err());
        assert!(set("big", &vec![0u8; MAX_VALUE_BYTES + 1]).is_err());
        for i in 0..MAX_KEYS - 1 {
            set(&format!("k{i}"), b"v").unwrap();
        }
        assert!(set("one-too-many", b"v").is_err());
        assert!(
            set("cursor", b"1").is_ok(),
            "overwriting an existing key is fine"
        );
    }
}
