//! What plugins log through their `log` import, kept per plugin for operators (`GET
//! /admin/plugins/{id}/logs`) and written to the host's structured log with the plugin's
//! id and version.
//!
//! Version-independent: each contract version's `log` binding hands the line to
//! `Sandbox::guest_log`, which records it here. Bounded twice over: each plugin keeps its
//! last `--plugin-log-lines` lines (a ring), and may write `--plugin-log-rate-per-sec`
//! lines per second; lines beyond the rate are counted, not kept and not logged, so a
//! plugin that logs in a loop costs neither memory nor the host's log volume. Kept in this
//! process only: in a cluster each host shows what ran on it.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Serialize;

use crate::locks::lock;

/// Longest message kept, in characters; longer ones are cut.
pub(crate) const MAX_MESSAGE_CHARS: usize = 2000;

/// One line a plugin logged.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// What the plugin said (at most [`MAX_MESSAGE_CHARS`] characters).
    pub message: String,
    /// The plugin version that logged it.
    pub version: String,
    /// The tenant the call was for ("" for operator-level calls).
    pub tenant: String,
    /// The integration the call was for ("" when none).
    pub integration: String,
}

/// A plugin's recent log, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginLogView {
    /// Plugin id.
    pub plugin: String,
    /// Oldest first.
    pub lines: Vec<LogLine>,
    /// Lines dropped by the rate limit since this process started.
    pub dropped: u64,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    dropped: u64,
}

/// Every plugin's recent log lines. Shared by all calls of a runtime.
pub(crate) struct PluginLogs {
    capacity: usize,
    rings: Mutex<HashMap<String, Ring>>,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for PluginLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLogs")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The level's name as the API spells it.
pub(crate) fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::TRACE => "trace",
        tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}

impl PluginLogs {
    /// Keeps `capacity` lines per plugin and admits `rate_per_second` lines per second
    /// per plugin.
    pub(crate) fn new(capacity: usize, rate_per_second: u32) -> Self {
        let rate = NonZeroU32::new(rate_per_second).unwrap_or(NonZeroU32::MIN);
        PluginLogs {
            capacity: capacity.max(1),
            rings: Mutex::new(HashMap::new()),
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate)),
        }
    }

    /// Records `line` for `plugin` unless the plugin is over its rate; returns whether it
    /// was admitted (the caller writes admitted lines to the host's log).
    pub(crate) fn record(&self, plugin: &str, line: LogLine) -> bool {
        let admitted = self.limiter.check_key(&plugin.to_owned()).is_ok();
        let mut rings = lock(&self.rings);
        let ring = rings.entry(plugin.to_owned()).or_default();
        if !admitted {
            ring.dropped += 1;
            if ring.dropped == 1 || ring.dropped.is_power_of_two() {
                // Said once per doubling, so the warning itself cannot flood the log.
                tracing::warn!(plugin = %plugin, dropped = ring.dropped, "plugin log lines dropped by the rate limit");
            }
            metrics::counter!("posbridge_plugin_log_dropped_total", "plugin" => plugin.to_owned())
                .increment(1);
            return false;
        }
        if ring.lines.len() == self.capacity {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line);
        true
    }

    /// The recent lines of `plugin`, oldest first (empty if it never logged here).
    pub(crate) fn view(&self, plugin: &str) -> PluginLogView {
        let rings = lock(&self.rings);
        let ring = rings.get(plugin);
        PluginLogView {
            plugin: plugin.to_owned(),
            lines: ring
                .map(|r| r.lines.iter().cloned().collect())
                .unwrap_or_default(),
            dropped: ring.map_or(0, |r| r.dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> LogLine {
        LogLine {
            time: String::new(),
            level: "info",
            message: message.to_owned(),
            version: "1.0.0".into(),
            tenant: String::new(),
            integration: String::new(),
        }
    }

    #[test]
    fn keeps_the_last_lines_per_plugin() {
        let logs = PluginLogs::new(3, 1000);
        for i in 0..5 {
            assert!(logs.record("a", line(&format!("a{i}"))));
        }
        assert!(logs.record("b", line("b0")));
        let a: Vec<String> = logs
            .view("a")
            .lines
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(a, ["a2", "a3", "a4"]);
        assert_eq!(logs.view("b").lines.len(), 1);
        assert!(logs.view("c").lines.is_empty());
    }

    #[test]
    fn a_chatty_plugin_is_cut_off_at_its_rate_and_others_are_not() {
        let logs = PluginLogs::new(1000, 10);
        let admitted = (0..500)
            .filter(|i| logs.record("chatty", line(&i.to_string())))
            .count();
        // The burst is the rate; the test runs well within a second or two.
        assert!((10..=40).contains(&admitted), "{admitted} admitted");
        let view = logs.view("chatty");
        assert_eq!(view.lines.len(), admitted);
        assert_eq!(view.dropped as usize, 500 - admitted);
        assert!(logs.record("quiet", line("hello")));
    }
}
