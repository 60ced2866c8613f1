//! Per-API-key rate limiting of the tenant API: a token bucket per key (governor's GCRA),
//! so one runaway till or integration cannot monopolise the host.
//!
//! Only requests authenticated with a tenant key are counted (the check runs in the key
//! extractor, see [`crate::auth`]); operator (`/admin`), health, readiness, metrics and
//! provider webhook routes never are. Opening the event stream is one request.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Rate limit knobs (`--rate-limit-per-sec`, `--rate-limit-burst`; see [`crate::options`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct RateLimitOptions {
    /// Sustained requests per second per API key; 0 turns limiting off. Default 50: a
    /// busy till makes a few requests per sale (balance, deduct, points), well under one
    /// per second at a rush; a back-office integration polling reports or paging a ledger
    /// makes a few per second. Fifty is an order of magnitude above either, so only a
    /// runaway loop meets it, while a single key stays far below what the host serves
    /// (thousands of reads per second, see the benchmarks).
    #[arg(
        long = "rate-limit-per-sec",
        env = "POSBRIDGE_RATE_LIMIT_PER_SEC",
        default_value = "50"
    )]
    pub per_second: u32,
    /// Requests an API key may send at once before the sustained rate applies. Default
    /// 200: a till coming back online replays its queued operations in one go, and a
    /// manager paging through a ledger issues a quick run of requests. At least 1.
    #[arg(
        long = "rate-limit-burst",
        env = "POSBRIDGE_RATE_LIMIT_BURST",
        default_value = "200",
        value_parser = crate::options::at_least(1u32)
    )]
    pub burst: u32,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// How often buckets of keys that have been idle long enough to be full again are
/// dropped: memory stays proportional to the keys active within about one burst period.
const RETAIN_INTERVAL: Duration = Duration::from_secs(60);

/// The per-key buckets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimits {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new(RateLimitOptions::default())
    }
}

impl RateLimits {
    /// Buckets for `options` (none at all when `per_second` is 0).
    pub fn new(options: RateLimitOptions) -> Self {
        let limiter = NonZeroU32::new(options.per_second).map(|rate| {
            let burst = NonZeroU32::new(options.burst.max(1)).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        RateLimits { limiter }
    }

    /// Takes one token from the bucket of the API key `key_id`; when it is empty, a 429
    /// `rate_limited` with `Retry-After` (whole seconds, rounded up, at least 1), counted
    /// in `posbridge_rate_limited_total` under `tenant` (the key's tenant's slug). Takes the
    /// key and tenant rather than auth's `Caller`, so rate limiting need not know how a key
    /// is authenticated (auth calls it).
    pub fn check(&self, key_id: &str, tenant: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&key_id.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                metrics::counter!(
                    "posbridge_rate_limited_total",
                    "tenant" => tenant.to_owned()
                )
                .increment(1);
                Err(ApiError::rate_limited(retry_after_secs(wait)))
            }
        }
    }

    /// Drops full buckets every `RETAIN_INTERVAL` (a minute) until `shutdown`.
    pub(crate) fn spawn_pruner(&self, shutdown: CancellationToken) {
        let Some(limiter) = self.limiter.clone() else {
            return;
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETAIN_INTERVAL);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            }
        });
    }
}

/// `Retry-After` is whole seconds: round up so a client that waits what it was told is
/// never refused again for the same bucket, and never say 0.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn buckets_are_per_key_and_bounded_by_the_burst() {
        let limits = RateLimits::new(RateLimitOptions {
            per_second: 1,
            burst: 3,
        });
        let limiter = limits.limiter.as_ref().unwrap();
        for _ in 0..3 {
            assert!(limiter.check_key(&"a".to_owned()).is_ok());
        }
        assert!(limiter.check_key(&"a".to_owned()).is_err());
        assert!(limiter.check_key(&"b".to_owned()).is_ok());
        assert!(RateLimits::new(RateLimitOptions {
            per_second: 0,
            burst: 0
        })
        .limiter
        .is_none());
    }
}
