//! Weekly time windows of a spend rule ("fri and sat, 20:00 to 02:00"), in the venue's local
//! wall-clock time. Plain code with no storage in it, so the matching is unit-tested alone.
//!
//! A window belongs to the day it *starts* on: `fri 20:00–02:00` covers Friday 20:00 up to
//! Saturday 02:00. Times are wall-clock times in the venue's time zone, so daylight-saving
//! changes need no special case: on the spring-forward night the skipped hour holds no sales,
//! and on the fall-back night the repeated hour is inside the window both times.

use std::fmt;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Most windows one rule may carry (one per day, with room for split evenings).
pub(crate) const MAX_WINDOWS: usize = 28;

/// Minutes in a day; `24:00` is accepted as an end time meaning midnight at the day's end.
const DAY_MINUTES: u16 = 24 * 60;

/// A set of days of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Days(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Days {
    fn bit(day: Weekday) -> u8 {
        1 << (day.to_monday_zero_offset() as u8)
    }

    /// Whether `day` is in the set.
    pub(crate) fn contains(self, day: Weekday) -> bool {
        self.0 & Self::bit(day) != 0
    }

    fn parse_day(name: &str) -> Option<Weekday> {
        let lower = name.trim().to_ascii_lowercase();
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let index = DAY_NAMES
            .iter()
            .position(|d| *d == lower)
            .or_else(|| full.iter().position(|d| *d == lower))?;
        Some(Weekday::from_monday_zero_offset(index as i8).unwrap_or(Weekday::Monday))
    }

    fn names(self) -> Vec<String> {
        DAY_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, d)| (*d).to_owned())
            .collect()
    }
}

/// A local wall-clock time of day, minute precision, `00:00`..=`24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClockTime(u16);

impl ClockTime {
    fn parse(text: &str) -> Option<Self> {
        let (h, m) = text.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        let minutes = h.checked_mul(60)?.checked_add(m)?;
        (m < 60 && minutes <= DAY_MINUTES).then_some(ClockTime(minutes))
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// One weekly window. Built only through validation: at least one day, `start` ≠ `end`,
/// `start` before 24:00.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WindowJson", into = "WindowJson")]
pub(crate) struct TimeWindow {
    days: Days,
    start: ClockTime,
    end: ClockTime,
}

/// The JSON shape of a window: `{"days":["fri","sat"],"start":"20:00","end":"02:00"}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WindowJson {
    /// Days the window starts on: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    days: Vec<String>,
    /// Start, venue time, `HH:MM`.
    start: String,
    /// End, venue time, `HH:MM`; before `start` means the next day.
    end: String,
}

/// A window's OpenAPI schema is its JSON shape.
impl utoipa::PartialSchema for TimeWindow {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <WindowJson as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for TimeWindow {}

impl TryFrom<WindowJson> for TimeWindow {
    type Error = String;

    fn try_from(raw: WindowJson) -> Result<Self, String> {
        if raw.days.is_empty() {
            return Err("a time window needs at least one day".into());
        }
        let mut days = Days::default();
        for name in &raw.days {
            let day = Days::parse_day(name).ok_or_else(|| {
                format!("unknown day {name:?}: use mon, tue, wed, thu, fri, sat, sun")
            })?;
            days.0 |= Days::bit(day);
        }
        let clock = |text: &str, which: &str| {
            ClockTime::parse(text).ok_or_else(|| {
                format!("{which} {text:?} is not a time of day (HH:MM, 00:00-24:00)")
            })
        };
        let start = clock(&raw.start, "start")?;
        let end = clock(&raw.end, "end")?;
        if start.0 == DAY_MINUTES {
            return Err("start must be before 24:00".into());
        }
        if start == end {
            return Err("start and end are equal: a window must have a length".into());
        }
        Ok(TimeWindow { days, start, end })
    }
}

impl From<TimeWindow> for WindowJson {
    fn from(w: TimeWindow) -> Self {
        WindowJson {
            days: w.days.names(),
            start: w.start.to_string(),
            end: w.end.to_string(),
        }
    }
}

impl TimeWindow {
    /// Whether a local time (weekday, minutes after midnight) falls in the window.
    fn contains_local(&self, day: Weekday, minute: u16) -> bool {
        if self.start < self.end {
            self.days.contains(day) && self.start.0 <= minute && minute < self.end.0
        } else {
            // Crosses midnight: the evening part on a listed day, the morning part on the day
            // after a listed day.
            (self.days.contains(day) && minute >= self.start.0)
                || (self.days.contains(day.wrapping_sub(1)) && minute < self.end.0)
        }
    }
}

/// Whether the instant `at_micros` falls in any of `windows` in time zone `tz`. No windows
/// means no time restriction.
pub(crate) fn in_any_window(windows: &[TimeWindow], tz: &TimeZone, at_micros: i64) -> bool {
    if windows.is_empty() {
        return true;
    }
    let Ok(at) = Timestamp::from_microsecond(at_micros) else {
        return false;
    };
    let local = at.to_zoned(tz.clone());
    let minute = local.hour() as u16 * 60 + local.minute() as u16;
    let day = local.weekday();
    windows.iter().any(|w| w.contains_local(day, minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str) -> TimeWindow {
        TimeWindow::try_from(WindowJson {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
        })
        .unwrap()
    }

    fn micros(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_microsecond()
    }

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    #[test]
    fn a_window_across_midnight_covers_the_next_morning_only_after_a_listed_day() {
        let w = [window(&["fri"], "20:00", "02:00")];
        // Friday 2026-07-10 in New York (EDT, UTC-4).
        assert!(!in_any_window(&w, &ny(), micros("2026-07-10T23:59:00Z"))); // 19:59 Fri
        assert!(in_any_window(&w, &ny(), micros("2026-07-11T00:00:00Z"))); // 20:00 Fri
        assert!(in_any_window(&w, &ny(), micros("2026-07-11T05:59:00Z"))); // 01:59 Sat
        assert!(!in_any_window(&w, &ny(), micros("2026-07-11T06:00:00Z"))); // 02:00 Sat
                                                                            // 01:00 on Friday morning belongs to Thursday night, which is not listed.
        assert!(!in_any_window(&w, &ny(), micros("2026-07-10T05:00:00Z")));
    }

    #[test]
    fn windows_follow_daylight_saving_time() {
        let w = [window(&["fri"], "20:00", "23:00")];
        // 20:15 local in July is 00:15Z (EDT); in January 20:15 local is 01:15Z (EST).
        assert!(in_any_window(&w, &ny(), micros("2026-07-11T00:15:00Z")));
        assert!(in_any_window(&w, &ny(), micros("2026-01-10T01:15:00Z")));
        // The same UTC time of day in January is 19:15 local: outside.
        assert!(!in_any_window(&w, &ny(), micros("2026-01-10T00:15:00Z")));
    }

    #[test]
    fn the_repeated_hour_of_a_fall_back_night_is_inside_both_times() {
        // 2026-11-01 01:00–02:00 happens twice in New York.
        let w = [window(&["sun"], "01:00", "02:00")];
        assert!(in_any_window(&w, &ny(), micros("2026-11-01T05:30:00Z"))); // 01:30 EDT
        assert!(in_any_window(&w, &ny(), micros("2026-11-01T06:30:00Z"))); // 01:30 EST
        assert!(!in_any_window(&w, &ny(), micros("2026-11-01T07:30:00Z"))); // 02:30 EST
    }

    #[test]
    fn end_of_day_is_24_00_and_no_windows_means_always() {
        let w = [window(&["sat"], "18:00", "24:00")];
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-11T23:59:59Z")
        ));
        assert!(!in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-12T00:00:00Z")
        ));
        assert!(in_any_window(
            &[],
            &TimeZone::UTC,
            micros("2026-07-12T00:00:00Z")
        ));
    }

    #[test]
    fn malformed_windows_are_refused_with_a_reason() {
        let bad = |days: &[&str], s: &str, e: &str| {
            TimeWindow::try_from(WindowJson {
                days: days.iter().map(|d| d.to_string()).collect(),
                start: s.into(),
                end: e.into(),
            })
            .unwrap_err()
        };
        assert!(bad(&[], "20:00", "22:00").contains("at least one day"));
        assert!(bad(&["fry"], "20:00", "22:00").contains("unknown day"));
        assert!(bad(&["fri"], "25:00", "22:00").contains("start"));
        assert!(bad(&["fri"], "20:60", "22:00").contains("start"));
        assert!(bad(&["fri"], "8:00", "22:00").contains("start"));
        assert!(bad(&["fri"], "20:00", "20:00").contains("equal"));
        assert!(bad(&["fri"], "24:00", "02:00").contains("before 24:00"));
    }

    #[test]
    fn windows_serialize_canonically() {
        let w = window(&["Saturday", "FRI"], "20:00", "02:00");
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"days":["fri","sat"],"start":"20:00","end":"02:00"})
        );
    }

    #[test]
    fn full_and_mixed_case_day_names_are_accepted() {
        let w = window(&["Monday", "sunday", " Wed "], "09:00", "10:00");
        assert_eq!(
            serde_json::to_value(&w).unwrap()["days"],
            serde_json::json!(["mon", "wed", "sun"])
        );
    }

    #[test]
    fn a_sunday_night_window_runs_into_monday_morning() {
        let w = [window(&["sun"], "22:00", "03:00")];
        // 2026-07-12 is a Sunday; UTC keeps the arithmetic plain.
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-12T22:00:00Z")
        ));
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T02:59:00Z")
        ));
        assert!(!in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T03:00:00Z")
        ));
        // Sunday's early morning belongs to Saturday night, which is not listed.
        assert!(!in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-12T01:00:00Z")
        ));
    }

    #[test]
    fn a_same_day_window_includes_its_start_and_excludes_its_end() {
        let w = [window(&["mon"], "00:00", "12:00")];
        // 2026-07-13 is a Monday.
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T00:00:00Z")
        ));
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T11:59:59Z")
        ));
        assert!(!in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T12:00:00Z")
        ));
        // Same clock time, other day.
        assert!(!in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-14T06:00:00Z")
        ));
    }

    #[test]
    fn any_matching_window_of_several_is_enough() {
        let w = [
            window(&["mon"], "08:00", "09:00"),
            window(&["mon"], "17:00", "18:00"),
        ];
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T08:30:00Z")
        ));
        assert!(in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T17:30:00Z")
        ));
        assert!(!in_any_window(
            &w,
            &TimeZone::UTC,
            micros("2026-07-13T12:00:00Z")
        ));
    }

    #[test]
    fn an_instant_outside_the_calendar_is_in_no_window() {
        let w = [window(&["mon"], "00:00", "24:00")];
        assert!(!in_any_window(&w, &TimeZone::UTC, i64::MAX));
        assert!(!in_any_window(&w, &TimeZone::UTC, i64::MIN));
    }

    #[test]
    fn windows_refuse_unknown_fields_and_round_trip_through_json() {
        let json = serde_json::json!({"days": ["sat"], "start": "18:30", "end": "24:00"});
        let w: TimeWindow = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&w).unwrap(), json);
        let extra =
            serde_json::json!({"days": ["sat"], "start": "18:30", "end": "24:00", "tz": "UTC"});
        assert!(serde_json::from_value::<TimeWindow>(extra).is_err());
    }
}
