//! End-to-end test harness for posbridge.
//!
//! [`TestServer::start`] runs the real `posbridge` binary on an ephemeral loopback port
//! against a fresh SQLite file or a fresh PostgreSQL database, and hands out HTTP
//! ([`Client`]) and WebSocket ([`Ws`]) clients for it. The server is killed (and its
//! PostgreSQL database dropped) when the [`TestServer`] is dropped.
//!
//! Every scenario runs against both databases through [`both_backends!`].
//!
//! # PostgreSQL
//!
//! | variable | effect |
//! |---|---|
//! | `POSBRIDGE_TEST_POSTGRES_URL` | admin URL of a running server whose role may `LOGIN CREATEDB`; when unset, the harness starts one throwaway cluster for the whole run and removes it afterwards |
//! | `POSBRIDGE_TEST_PG_BINDIR` | where that cluster's server binaries are (default: `pg_config --bindir`, the newest `/usr/lib/postgresql/*/bin`, then `PATH`); an empty directory shows what a machine without PostgreSQL does |
//! | `POSBRIDGE_TEST_POSTGRES=skip` | the `_postgres` tests return at once, each saying so in one line on stderr |
//!
//! Without a URL and without binaries, and not told to skip, the `_postgres` tests fail
//! with one message saying what to do.

pub mod bench;
mod http;
pub mod mock;
pub mod mock_clover;
pub mod mock_orders;
pub mod mock_square;
pub mod mock_square_inventory;
pub mod mock_square_orders;
mod mock_square_pricing;
pub mod mock_toast;
pub mod mock_toast_orders;
mod pg_cluster;
mod pg_shared;
mod postgres;
mod server;
pub mod tls;
mod ws;

use std::future::Future;
use std::time::Duration;

pub use http::{Body, Client, Resp};
pub use pg_cluster::PgCluster;
pub use postgres::{postgres_admin_url, postgres_available};
pub use server::{ApiKey, CliOutput, TenantKeys, TestServer};
pub use ws::{raw_ws_upgrade, ws_refusal_status, Ws, WsError, DEFAULT_FRAME_TIMEOUT};

pub use jiff;
#[doc(hidden)]
pub use posbridge_harness_macros::both_backends_impl as __both_backends_impl;
pub use reqwest;
pub use serde_json;
pub use tokio_tungstenite;

/// The database a [`TestServer`] runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in the server's temporary directory.
    Sqlite,
    /// A fresh database on the server of `POSBRIDGE_TEST_POSTGRES_URL`, or on the run's
    /// throwaway PostgreSQL cluster when that is not set.
    Postgres,
}

/// Turns each `async fn name(backend: Backend)` named in the list into two tests,
/// `name_sqlite` and `name_postgres`, on a multi-threaded tokio runtime.
///
/// The PostgreSQL variant runs on the server of `POSBRIDGE_TEST_POSTGRES_URL`, or on the
/// throwaway cluster the harness starts when that is not set (see [`postgres_available`]);
/// it fails with instructions when neither can be had. With
/// `POSBRIDGE_TEST_POSTGRES=skip` it returns early and says so on stderr.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $crate::__both_backends_impl!($crate; $($name),+);
    };
}

/// Polls `check` every 20 ms until it returns `Some`, and returns that value; panics
/// naming `what` if `timeout` passes first. Use it to wait for a condition instead of
/// sleeping for a guessed duration.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses an RFC 3339 timestamp, panicking with the offending text if it is not one.
#[track_caller]
pub fn parse_rfc3339(text: &str) -> jiff::Timestamp {
    text.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{text:?} is not an RFC 3339 timestamp: {e}"))
}

/// A random lowercase alphanumeric string of `len` characters (for unique names).
pub fn random_suffix(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), len)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enc_escapes_everything_but_unreserved() {
        assert_eq!(enc("(555) 010-0199"), "%28555%29%20010-0199");
        assert_eq!(enc("+15550100199"), "%2B15550100199");
        assert_eq!(enc("GC-a_1.~"), "GC-a_1.~");
    }

    #[test]
    fn rfc3339_parses_utc_and_offsets() {
        parse_rfc3339("2026-11-20T10:00:00Z");
        parse_rfc3339("2026-11-20T10:00:00.123456+01:00");
    }
}
