//! Timestamps ↔ epoch milliseconds (the WIT `timestamp`), in UTC. No time zone database: the
//! texts handled here carry their own offset.
//!
//! ```
//! use posbridge_sdk::time;
//! let ms = time::parse_timestamp("2021-07-30T11:57:46.235+0000").unwrap(); // Toast
//! assert_eq!(ms, time::parse_timestamp("2021-07-30T11:57:46.235Z").unwrap()); // RFC 3339
//! assert_eq!(time::format_rfc3339(ms), "2021-07-30T11:57:46.235Z");
//! assert_eq!(time::format_toast(ms), "2021-07-30T11:57:46.235+0000");
//! ```
//!
//! The parser and formatter are small and hand-written (a general date library added ~200 KB
//! to every component that used it); the unit tests check them against `jiff`.

use std::fmt;

use crate::types::Timestamp;

/// A text that is not a timestamp this module understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimeError {}

const MS_PER_DAY: i64 = 86_400_000;

/// Parses a timestamp with an explicit offset → milliseconds since the Unix epoch (digits below
/// a millisecond are truncated).
///
/// Accepts RFC 3339 / ISO 8601 extended form, `YYYY-MM-DDTHH:MM:SS[.fraction]<offset>`, with
/// `T`, `t` or a space between date and time, any number of fraction digits, and an offset of
/// `Z`, `z`, `±HH:MM`, `±HHMM` (Toast: `2021-07-30T11:57:46.235+0000`) or `±HH`. A leap second
/// (`:60`) reads as `:59`. A text without an offset is refused: its instant would be ambiguous.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, TimeError> {
    parse_rfc3339(text.as_bytes()).ok_or_else(|| {
        TimeError(format!(
            "invalid timestamp {text:?}: expected RFC 3339, e.g. 2021-07-30T11:57:46.235Z"
        ))
    })
}

fn parse_rfc3339(s: &[u8]) -> Option<Timestamp> {
    let mut p = Cursor { s, i: 0 };
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    match p.next()? {
        b'T' | b't' | b' ' => {}
        _ => return None,
    }
    let hour = p.digits(2)?;
    p.expect(b':')?;
    let minute = p.digits(2)?;
    p.expect(b':')?;
    let second = p.digits(2)?;
    let mut millis = 0;
    if p.peek() == Some(b'.') || p.peek() == Some(b',') {
        p.i += 1;
        let start = p.i;
        while p.peek().is_some_and(|b| b.is_ascii_digit()) {
            let digit = i64::from(s[p.i] - b'0');
            match p.i - start {
                0 => millis += digit * 100,
                1 => millis += digit * 10,
                2 => millis += digit,
                _ => {}
            }
            p.i += 1;
        }
        if p.i == start {
            return None;
        }
    }
    let offset_minutes = match p.next()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let hours = p.digits(2)?;
            let minutes = match p.peek() {
                None => 0,
                Some(b':') => {
                    p.i += 1;
                    p.digits(2)?
                }
                Some(_) => p.digits(2)?,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    if p.i != s.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let second = second.min(59);
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Parses an HTTP date → milliseconds since the Unix epoch: the IMF-fixdate of RFC 9110
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, as in `Retry-After`), or its obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`). The weekday is not checked.
pub fn parse_http_date(text: &str) -> Result<Timestamp, TimeError> {
    parse_http(text.trim()).ok_or_else(|| TimeError(format!("invalid HTTP date {text:?}")))
}

fn parse_http(text: &str) -> Option<Timestamp> {
    let (_weekday, rest) = text.split_once(',')?;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let (day, month, year, time, zone) = match parts.as_slice() {
        [day, month, year, time, zone] => (*day, *month, year.parse::<i64>().ok()?, *time, *zone),
        [date, time, zone] => {
            let mut fields = date.split('-');
            let (day, month, yy) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy: i64 = yy.parse().ok()?;
            (
                day,
                month,
                if yy < 70 { 2000 + yy } else { 1900 + yy },
                *time,
                *zone,
            )
        }
        _ => return None,
    };
    if !matches!(zone, "GMT" | "UTC" | "+0000") || !(1..=9999).contains(&year) {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    if day.len() > 2 {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let mut fields = time.split(':');
    let mut field = || -> Option<i64> {
        let f = fields.next()?;
        if f.len() != 2 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        f.parse().ok()
    };
    let (hour, minute, second) = (field()?, field()?, field()?);
    if fields.next().is_some()
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second.min(59)) * 1000)
}

/// Milliseconds → RFC 3339 in UTC with milliseconds: `2021-07-30T11:57:46.235Z`. Years outside
/// 0000–9999 are written with a sign and at least six digits (`+010000-…`), as RFC 9557 does.
pub fn format_rfc3339(ms: Timestamp) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (hour, minute, second, millis) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// Milliseconds → the ISO 8601 form Toast's API takes: `2021-07-30T11:57:46.235+0000`.
pub fn format_toast(ms: Timestamp) -> String {
    let text = format_rfc3339(ms);
    match text.strip_suffix('Z') {
        Some(head) => format!("{head}+0000"),
        None => text,
    }
}

/// Milliseconds → the UTC calendar date, `2021-07-30`.
pub fn format_date(ms: Timestamp) -> String {
    let text = format_rfc3339(ms);
    match text.split_once('T') {
        Some((date, _)) => date.to_owned(),
        None => text,
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..n {
            let b = self.next()?;
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
        }
        Some(value)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_627_646_266_235; // 2021-07-30T11:57:46.235Z

    #[test]
    fn parses_rfc3339_and_toast() {
        for text in [
            "2021-07-30T11:57:46.235Z",
            "2021-07-30t11:57:46.235z",
            "2021-07-30 11:57:46.235Z",
            "2021-07-30T11:57:46.235+00:00",
            "2021-07-30T11:57:46.235-00:00",
            "2021-07-30T11:57:46.235+0000",
            "2021-07-30T11:57:46.235+00",
            "2021-07-30T13:57:46.235+02:00",
            "2021-07-30T13:57:46.235+0200",
            "2021-07-30T07:57:46.235-0400",
            "2021-07-30T17:27:46.235+05:30",
            "2021-07-30T11:57:46.235999Z",
            "2021-07-30T11:57:46.235999999999Z",
            "2021-07-30T11:57:46,235Z",
        ] {
            assert_eq!(parse_timestamp(text), Ok(MS), "{text}");
        }
        assert_eq!(parse_timestamp("2021-07-30T11:57:46Z"), Ok(MS - 235));
        assert_eq!(parse_timestamp("2021-07-30T11:57:46.2Z"), Ok(MS - 35));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(
            parse_timestamp("2016-12-31T23:59:60Z"),
            parse_timestamp("2016-12-31T23:59:59Z")
        );
        assert_eq!(
            parse_timestamp("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        assert_eq!(
            parse_timestamp("0000-01-01T00:00:00Z"),
            Ok(-62_167_219_200_000)
        );
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59.999Z"),
            Ok(253_402_300_799_999)
        );
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "yesterday",
            "2021-07-30",
            "2021-07-30T11:57:46",
            "2021-07-30T11:57:46.235",
            "2021-07-30T11:57:46.Z",
            "2021-07-30T11:57:46.235Zjunk",
            "2021-07-30T11:57:46.235+0",
            "2021-07-30T11:57:46.235+000",
            "2021-07-30T11:57:46.235+24:00",
            "2021-07-30T11:57:46.235+01:60",
            "2021-13-30T11:57:46Z",
            "2021-00-30T11:57:46Z",
            "2021-02-29T11:57:46Z",
            "2021-04-31T11:57:46Z",
            "2021-07-00T11:57:46Z",
            "2021-07-30T24:00:00Z",
            "2021-07-30T11:60:46Z",
            "2021-07-30T11:57:61Z",
            "21-07-30T11:57:46Z",
            "+2021-07-30T11:57:46Z",
            "2021-7-30T11:57:46Z",
            "2021-07-30X11:57:46Z",
            "1627646266235",
            "２021-07-30T11:57:46Z",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text:?}");
        }
        let err = parse_timestamp("nope").unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(format_rfc3339(MS), "2021-07-30T11:57:46.235Z");
        assert_eq!(format_rfc3339(MS - 235), "2021-07-30T11:57:46.000Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_toast(MS), "2021-07-30T11:57:46.235+0000");
        assert_eq!(format_date(MS), "2021-07-30");
        assert_eq!(format_date(-1), "1969-12-31");
        // Every i64 formats, without panicking.
        assert!(format_rfc3339(i64::MAX).starts_with('+'));
        assert!(format_rfc3339(i64::MIN).starts_with('-'));
        assert_eq!(
            format_rfc3339(253_402_300_800_000),
            "+010000-01-01T00:00:00.000Z"
        );
        for ms in [0, MS, -1, 1, 253_402_300_799_999, -62_167_219_200_000] {
            assert_eq!(parse_timestamp(&format_rfc3339(ms)), Ok(ms));
            assert_eq!(parse_timestamp(&format_toast(ms)), Ok(ms));
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Fri, 30 Jul 2021 11:57:46 GMT"),
            Ok(MS - 235)
        );
        assert_eq!(
            parse_http_date(" Fri, 30 Jul 2021 11:57:46 GMT "),
            Ok(MS - 235)
        );
        assert_eq!(
            parse_http_date("Friday, 30-Jul-21 11:57:46 GMT"),
            Ok(MS - 235)
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Ok(784_111_777_000)
        );
        for bad in [
            "not a date",
            "Fri, 30 Jul 2021 11:57:46",
            "Fri, 30 Jul 2021 11:57:46 PST",
            "Fri, 31 Jun 2021 11:57:46 GMT",
            "Fri, 30 Foo 2021 11:57:46 GMT",
            "Fri, 30 Jul 2021 11:57 GMT",
            "Fri, 30 Jul 2021 1:57:46 GMT",
            "Fri Jul 30 11:57:46 2021",
        ] {
            assert!(parse_http_date(bad).is_err(), "{bad:?}");
        }
    }

    /// The hand-written code agrees with jiff over years 0000–9999.
    #[test]
    fn agrees_with_jiff() {
        let min = parse_timestamp("0000-01-01T00:00:00Z").unwrap();
        let max = parse_timestamp("9999-12-31T23:59:59.999Z").unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let span = (max - min) as u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = min + (x % span) as i64;
            let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
            assert_eq!(format_rfc3339(ms), format!("{ts:.3}"), "{ms}");
            let offset_minutes = (x >> 40) as i64 % (24 * 60) - 12 * 60;
            let offset = jiff::tz::Offset::from_seconds((offset_minutes * 60) as i32).unwrap();
            let local = offset.to_datetime(ts);
            if !(0..=9999).contains(&local.year()) {
                continue;
            }
            let (sign, abs) = if offset_minutes < 0 {
                ('-', -offset_minutes)
            } else {
                ('+', offset_minutes)
            };
            let text = format!(
                "{}{sign}{:02}{}{:02}",
                local.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
                abs / 60,
                if i % 2 == 0 { ":" } else { "" },
                abs % 60
            );
            assert_eq!(parse_timestamp(&text), Ok(ms), "{text}");
            let jiff_ms = text.parse::<jiff::Timestamp>().map(|t| t.as_millisecond());
            if let Ok(jiff_ms) = jiff_ms {
                assert_eq!(jiff_ms, ms, "{text}");
            }
        }
    }
}
