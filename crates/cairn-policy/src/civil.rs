//! A tiny proleptic-Gregorian civil-time module: enough for schedules and retention buckets
//! without a time-zone database or a time crate.
//!
//! Times are `i64` Unix seconds. Local civil time is UTC shifted by a fixed [`UtcOffset`].
//! The day algorithms are Howard Hinnant's `days_from_civil` / `civil_from_days`, which are
//! exact over the whole proleptic Gregorian calendar; callers keep inputs inside
//! [`MIN_TIME`]..=[`MAX_TIME`] so every intermediate fits in `i64`.

use std::fmt;
use std::str::FromStr;

use crate::{Error, NANOS_PER_SECOND};

/// Seconds in a day.
pub const SECS_PER_DAY: i64 = 86_400;

/// Earliest accepted time: 0000-01-01T00:00:00Z (RFC 3339 has four-digit years).
pub const MIN_TIME: i64 = -62_167_219_200;
/// Latest accepted time: 9999-12-31T23:59:59Z (RFC 3339 has four-digit years).
pub const MAX_TIME: i64 = 253_402_300_799;

/// Largest accepted fixed offset: 18 hours, as in ISO 8601 / RFC 3339 practice.
const MAX_OFFSET_SECS: i32 = 18 * 3600;

/// Days since 1970-01-01 of the civil date `y-m-d` (month 1..=12, day 1..=31; a day past the
/// end of the month simply counts on into the next month, which `add_months` relies on).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month 1..=12, day 1..=31)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    // The ranges above are exact, so these conversions cannot fail.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Weekday of a day count since 1970-01-01: 1 = Monday .. 7 = Sunday (ISO 8601).
pub fn weekday_from_days(z: i64) -> u32 {
    // 1970-01-01 was a Thursday (4).
    let w = (z + 3).rem_euclid(7) + 1;
    u32::try_from(w).unwrap_or(1)
}

/// Number of days in month `m` of year `y`.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A broken-down civil time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
}

impl Civil {
    /// Breaks Unix seconds down into civil time (no offset applied).
    pub fn from_unix(t: i64) -> Civil {
        let days = t.div_euclid(SECS_PER_DAY);
        let secs = t.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = u32::try_from(secs).unwrap_or(0);
        Civil {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    /// Unix seconds of this civil time (fields past their range count on, as in Go's `time.Date`).
    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// Days since 1970-01-01 of this date.
    pub fn days(self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// ISO 8601 weekday: 1 = Monday .. 7 = Sunday.
    pub fn weekday(self) -> u32 {
        weekday_from_days(self.days())
    }

    /// ISO 8601 week `(week-year, week 1..=53)`, as Go's `Time.ISOWeek` (weeks start on
    /// Monday; week 1 is the week with the year's first Thursday).
    pub fn iso_week(self) -> (i64, u32) {
        let days = self.days();
        // The Thursday of this date's week decides the week-year.
        let thursday = days - i64::from(weekday_from_days(days)) + 4;
        let (wy, _, _) = civil_from_days(thursday);
        let week = (thursday - days_from_civil(wy, 1, 1)) / 7 + 1;
        (wy, u32::try_from(week).unwrap_or(1))
    }
}

/// Subtracts a calendar span the way Go's `t.AddDate(-y, -m, -d).Add(-h hours)` does (restic's
/// `--keep-within`): months are subtracted first on the (year, month) pair and a day past the
/// end of the resulting month overflows into the next month (31 March - 1 month = 3 March).
pub fn sub_span(t: i64, years: i64, months: i64, days: i64, hours: i64) -> i64 {
    let c = Civil::from_unix(t);
    let total_months = c.year * 12 + i64::from(c.month) - 1 - years * 12 - months;
    let year = total_months.div_euclid(12);
    let month = u32::try_from(total_months.rem_euclid(12) + 1).unwrap_or(1);
    let base = days_from_civil(year, month, 1) + i64::from(c.day) - 1 - days;
    base * SECS_PER_DAY + i64::from(c.hour) * 3600 + i64::from(c.minute) * 60 + i64::from(c.second)
        - hours * 3600
}

/// Formats Unix seconds as RFC 3339 UTC (`2024-01-02T11:00:00Z`). Times outside
/// [`MIN_TIME`]..=[`MAX_TIME`] are clamped (callers validate first).
pub fn rfc3339(t: i64) -> String {
    let c = Civil::from_unix(t.clamp(MIN_TIME, MAX_TIME));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Most fractional-second digits accepted: nine give nanoseconds, the finest a restore point
/// records; more would be precision silently thrown away.
pub const MAX_FRACTION_DIGITS: usize = 9;

/// An instant written in RFC 3339: Unix seconds (UTC) and, when the text had a fractional
/// part, the nanoseconds within that second; [`Rfc3339Time::order_key`] orders instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rfc3339Time {
    /// Unix seconds, UTC (the offset applied).
    pub secs: i64,
    /// Nanoseconds within `secs` (below 1 000 000 000), `None` when no fraction was written.
    pub nanos: Option<u32>,
}

impl Rfc3339Time {
    /// `(secs, nanos)` with an absent fraction as 0: the order of instants.
    pub fn order_key(self) -> (i64, u32) {
        (self.secs, self.nanos.unwrap_or(0))
    }
}

impl FromStr for Rfc3339Time {
    type Err = Error;

    /// See [`parse_rfc3339`].
    fn from_str(s: &str) -> Result<Rfc3339Time, Error> {
        parse_rfc3339(s)
    }
}

/// Parses an RFC 3339 date-time: `2026-01-02T03:04:05Z`, with an optional fraction of 1 to 9
/// digits (`05.123456789Z`) and `Z` or a `+HH:MM` / `-HH:MM` offset (within +-18:00). `T` may
/// be `t` or a space (RFC 3339 section 5.6 note). Fields are fixed width; the day must exist
/// in its month; second 60 (a leap second) counts on into the next second, as Unix time has
/// no leap seconds. Every mistake is an [`Error::Value`] saying what was expected.
pub fn parse_rfc3339(s: &str) -> Result<Rfc3339Time, Error> {
    let bad = |reason: &str| Error::Value {
        what: "time",
        input: s.to_owned(),
        reason: reason.to_owned(),
    };
    const SHAPE: &str =
        "expected RFC 3339 like 2026-01-02T03:04:05Z, 2026-01-02T03:04:05.123456789Z or \
         2026-01-02T05:04:05+02:00";
    // Every fixed-position byte below is ASCII, so slicing at them is on char boundaries;
    // `get` still guards against a multi-byte character straddling one.
    let field = |range: std::ops::Range<usize>| s.get(range).ok_or_else(|| bad(SHAPE));
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad(SHAPE));
    }
    let year: i64 = parse_fixed_digits(field(0..4)?, 4).ok_or_else(|| bad(SHAPE))?;
    let month: u32 = parse_fixed_digits(field(5..7)?, 2).ok_or_else(|| bad(SHAPE))?;
    let day: u32 = parse_fixed_digits(field(8..10)?, 2).ok_or_else(|| bad(SHAPE))?;
    let hour: u32 = parse_fixed_digits(field(11..13)?, 2).ok_or_else(|| bad(SHAPE))?;
    let minute: u32 = parse_fixed_digits(field(14..16)?, 2).ok_or_else(|| bad(SHAPE))?;
    let second: u32 = parse_fixed_digits(field(17..19)?, 2).ok_or_else(|| bad(SHAPE))?;
    if !(1..=12).contains(&month) {
        return Err(bad("month must be 01 to 12"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(bad("no such day in that month"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time of day must be 00:00:00 to 23:59:60"));
    }
    let mut rest = field(19..s.len())?;
    let nanos = match rest.strip_prefix('.') {
        None => None,
        Some(after_dot) => {
            // The fraction runs to the offset (`Z`, `+`, `-`) or to the end.
            let end = after_dot
                .find(['Z', 'z', '+', '-'])
                .unwrap_or(after_dot.len());
            let (digits, tail) = after_dot.split_at(end);
            rest = tail;
            Some(parse_fraction(digits).map_err(|reason| bad(&reason))?)
        }
    };
    let offset = match rest {
        "Z" | "z" => 0,
        "" => return Err(bad("no offset: end with Z or +HH:MM / -HH:MM")),
        _ => {
            let (sign, hm) = match rest.as_bytes()[0] {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return Err(bad("offset must be Z or +HH:MM / -HH:MM")),
            };
            let (h, m) = hm
                .split_once(':')
                .ok_or_else(|| bad("offset must be Z or +HH:MM / -HH:MM"))?;
            let h: i32 = parse_fixed_digits(h, 2)
                .ok_or_else(|| bad("offset must be Z or +HH:MM / -HH:MM"))?;
            let m: i32 = parse_fixed_digits(m, 2)
                .ok_or_else(|| bad("offset must be Z or +HH:MM / -HH:MM"))?;
            if m > 59 {
                return Err(bad("offset minutes beyond 59"));
            }
            UtcOffset::from_seconds(sign * (h * 3600 + m * 60))
                .map_err(|_| bad("offset beyond +-18:00"))?
                .seconds()
        }
    };
    // Four-digit years and an offset within 18 h keep every term far inside i64.
    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
        - i64::from(offset);
    if !(MIN_TIME..=MAX_TIME).contains(&secs) {
        return Err(bad("outside years 0000..9999 in UTC"));
    }
    Ok(Rfc3339Time { secs, nanos })
}

/// Nanoseconds of the digits after the `.`: 1 to [`MAX_FRACTION_DIGITS`] ASCII digits.
fn parse_fraction(digits: &str) -> Result<u32, String> {
    if digits.is_empty() {
        return Err("no digits after the '.' of the fractional seconds".to_owned());
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
        return Err(format!("fractional seconds must be digits, found {c:?}"));
    }
    if digits.len() > MAX_FRACTION_DIGITS {
        return Err(format!(
            "{} fractional digits; at most {MAX_FRACTION_DIGITS} (nanoseconds)",
            digits.len()
        ));
    }
    let mut nanos: u32 = 0;
    let mut scale = NANOS_PER_SECOND;
    for d in digits.bytes() {
        scale /= 10;
        nanos += u32::from(d - b'0') * scale;
    }
    Ok(nanos)
}

/// A fixed offset from UTC (no daylight-saving rules: there is no tz database).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UtcOffset {
    seconds: i32,
}

impl UtcOffset {
    /// UTC itself.
    pub const UTC: UtcOffset = UtcOffset { seconds: 0 };

    /// An offset of `seconds` east of UTC (within +-18 h).
    pub fn from_seconds(seconds: i32) -> Result<UtcOffset, Error> {
        if seconds.abs() > MAX_OFFSET_SECS {
            return Err(Error::Value {
                what: "timezone",
                input: seconds.to_string(),
                reason: "offset beyond +-18:00".to_owned(),
            });
        }
        Ok(UtcOffset { seconds })
    }

    /// Seconds east of UTC.
    pub fn seconds(self) -> i32 {
        self.seconds
    }

    /// Local civil time of the instant `t`.
    pub fn to_local(self, t: i64) -> Civil {
        Civil::from_unix(t + i64::from(self.seconds))
    }

    /// The instant whose local civil time is `c`.
    pub fn from_local(self, c: Civil) -> i64 {
        c.to_unix() - i64::from(self.seconds)
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.seconds < 0 { '-' } else { '+' };
        let abs = self.seconds.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
    }
}

impl FromStr for UtcOffset {
    type Err = Error;

    /// `Z`, `UTC`, `+02:00`, `-05:30`, `+0200`.
    fn from_str(s: &str) -> Result<UtcOffset, Error> {
        let bad = |reason: &str| Error::Value {
            what: "timezone",
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
            return Ok(UtcOffset::UTC);
        }
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad("expected a fixed offset like +02:00 (no tz database)")),
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => return Err(bad("expected HH:MM after the sign")),
        };
        let h: i32 = parse_fixed_digits(h, 2).ok_or_else(|| bad("hours must be two digits"))?;
        let m: i32 = parse_fixed_digits(m, 2).ok_or_else(|| bad("minutes must be two digits"))?;
        if m > 59 {
            return Err(bad("minutes beyond 59"));
        }
        UtcOffset::from_seconds(sign * (h * 3600 + m * 60))
            .map_err(|_| bad("offset beyond +-18:00"))
    }
}

impl serde::Serialize for UtcOffset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses exactly `n` ASCII digits.
pub(crate) fn parse_fixed_digits<T: FromStr>(s: &str, n: usize) -> Option<T> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2024-02-29 exists, 2023-02-29 rolls over.
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(2023, 2, 29)), (2023, 3, 1));
        // `date -u -d 2024-01-02T11:00:00Z +%s` = 1704193200
        assert_eq!(
            Civil {
                year: 2024,
                month: 1,
                day: 2,
                hour: 11,
                minute: 0,
                second: 0
            }
            .to_unix(),
            1_704_193_200
        );
        assert_eq!(rfc3339(1_704_193_200), "2024-01-02T11:00:00Z");
        assert_eq!(rfc3339(MIN_TIME), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_TIME), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn weekdays_and_iso_weeks() {
        let c = |y, m, d| Civil {
            year: y,
            month: m,
            day: d,
            hour: 0,
            minute: 0,
            second: 0,
        };
        assert_eq!(c(1970, 1, 1).weekday(), 4); // Thursday
        assert_eq!(c(2024, 11, 24).weekday(), 7); // Sunday
                                                  // ISO week edge cases (checked with `date +%G-%V`).
        assert_eq!(c(2021, 1, 3).iso_week(), (2020, 53));
        assert_eq!(c(2021, 1, 4).iso_week(), (2021, 1));
        assert_eq!(c(2024, 12, 30).iso_week(), (2025, 1));
        assert_eq!(c(2026, 12, 31).iso_week(), (2026, 53));
        assert_eq!(c(2027, 1, 1).iso_week(), (2026, 53));
        assert_eq!(c(2008, 12, 29).iso_week(), (2009, 1));
        assert_eq!(c(2010, 1, 3).iso_week(), (2009, 53));
    }

    #[test]
    fn go_add_date_normalisation() {
        let t = Civil {
            year: 2024,
            month: 3,
            day: 31,
            hour: 12,
            minute: 0,
            second: 0,
        }
        .to_unix();
        // Go: time.Date(2024,3,31,12,0,0,0,UTC).AddDate(0,-1,0) = 2024-03-02 12:00 (Feb 31 -> Mar 2)
        assert_eq!(rfc3339(sub_span(t, 0, 1, 0, 0)), "2024-03-02T12:00:00Z");
        assert_eq!(rfc3339(sub_span(t, 1, 0, 0, 0)), "2023-03-31T12:00:00Z");
        assert_eq!(rfc3339(sub_span(t, 0, 0, 31, 13)), "2024-02-28T23:00:00Z");
    }

    #[test]
    fn offsets() {
        assert_eq!("+02:00".parse::<UtcOffset>().unwrap().seconds(), 7200);
        assert_eq!("-0530".parse::<UtcOffset>().unwrap().seconds(), -19_800);
        assert_eq!("Z".parse::<UtcOffset>().unwrap(), UtcOffset::UTC);
        assert!("Europe/Paris".parse::<UtcOffset>().is_err());
        assert!("+19:00".parse::<UtcOffset>().is_err());
        assert_eq!("-05:30".parse::<UtcOffset>().unwrap().to_string(), "-05:30");
    }

    fn time(s: &str) -> Rfc3339Time {
        parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The reason of the `Error::Value` that `s` gives.
    fn time_err(s: &str) -> String {
        match parse_rfc3339(s) {
            Err(Error::Value {
                what: "time",
                input,
                reason,
            }) => {
                assert_eq!(input, s);
                let shown = parse_rfc3339(s).unwrap_err().to_string();
                assert!(!shown.contains('\n'), "{shown}");
                reason
            }
            other => panic!("{s}: expected Error::Value, got {other:?}"),
        }
    }

    #[test]
    fn rfc3339_whole_seconds_and_offsets() {
        // `date -u -d 2026-01-02T03:04:05Z +%s` = 1767323045
        let t = 1_767_323_045;
        assert_eq!(
            time("2026-01-02T03:04:05Z"),
            Rfc3339Time {
                secs: t,
                nanos: None
            }
        );
        assert_eq!(time("2026-01-02t03:04:05z").secs, t);
        assert_eq!(time("2026-01-02 03:04:05Z").secs, t);
        assert_eq!(time("2026-01-02T05:04:05+02:00").secs, t);
        assert_eq!(time("2026-01-01T22:34:05-04:30").secs, t);
        assert_eq!(time("2026-01-02T03:04:05-00:00").secs, t);
        assert_eq!(
            rfc3339(time("2024-02-29T23:59:59Z").secs),
            "2024-02-29T23:59:59Z"
        );
        // A leap second counts on into the next second.
        assert_eq!(
            time("2016-12-31T23:59:60Z").secs,
            time("2017-01-01T00:00:00Z").secs
        );
        assert_eq!(time("0000-01-01T00:00:00Z").secs, MIN_TIME);
        assert_eq!(time("9999-12-31T23:59:59Z").secs, MAX_TIME);
    }

    #[test]
    fn rfc3339_fractions() {
        let t = 1_767_323_045;
        for (s, nanos) in [
            ("2026-01-02T03:04:05.123456789Z", 123_456_789),
            ("2026-01-02T03:04:05.1Z", 100_000_000),
            ("2026-01-02T03:04:05.12Z", 120_000_000),
            ("2026-01-02T03:04:05.000000001Z", 1),
            ("2026-01-02T03:04:05.999999999Z", 999_999_999),
            ("2026-01-02T03:04:05.0Z", 0),
            ("2026-01-02T05:04:05.123456789+02:00", 123_456_789),
            ("2026-01-01T22:34:05.5-04:30", 500_000_000),
        ] {
            assert_eq!(
                time(s),
                Rfc3339Time {
                    secs: t,
                    nanos: Some(nanos)
                },
                "{s}"
            );
        }
        // One nanosecond and one millisecond apart order as written, across offsets.
        let a = time("2026-01-02T03:04:05.123456789Z");
        let b = time("2026-01-02T05:04:05.12345679+02:00");
        let c = time("2026-01-02T03:04:05.124456789Z");
        assert!(a.order_key() < b.order_key() && b.order_key() < c.order_key());
        assert_eq!(b.order_key(), (t, 123_456_790));
        // Before the epoch the fraction still counts forward from the whole second.
        assert_eq!(
            time("1969-12-31T23:59:59.25Z").order_key(),
            (-1, 250_000_000)
        );
    }

    #[test]
    fn rfc3339_malformed() {
        for (s, needle) in [
            ("2026-01-02T03:04:05.Z", "no digits after the '.'"),
            ("2026-01-02T03:04:05.", "no digits after the '.'"),
            ("2026-01-02T03:04:05.+02:00", "no digits after the '.'"),
            (
                "2026-01-02T03:04:05.1234567891Z",
                "10 fractional digits; at most 9",
            ),
            ("2026-01-02T03:04:05.12a4Z", "must be digits, found 'a'"),
            ("2026-01-02T03:04:05.1 Z", "must be digits, found ' '"),
            ("2026-01-02T03:04:05.１Z", "must be digits"),
            ("2026-01-02T03:04:05.5", "no offset"),
            ("2026-01-02T03:04:05", "expected RFC 3339"),
            ("2026-01-02T03:04:05+0200", "offset must be"),
            ("2026-01-02T03:04:05+2:00", "offset must be"),
            ("2026-01-02T03:04:05+19:00", "beyond +-18:00"),
            ("2026-01-02T03:04:05+02:60", "minutes beyond 59"),
            ("2026-01-02T03:04:05UTC", "offset must be"),
            ("2026-1-02T03:04:05Z", "expected RFC 3339"),
            ("2026-01-02X03:04:05Z", "expected RFC 3339"),
            ("+2026-01-02T03:04:05Z", "expected RFC 3339"),
            ("2026-13-02T03:04:05Z", "month must be"),
            ("2026-02-29T03:04:05Z", "no such day"),
            ("2026-04-31T03:04:05Z", "no such day"),
            ("2026-01-00T03:04:05Z", "no such day"),
            ("2026-01-02T24:00:00Z", "time of day"),
            ("2026-01-02T03:60:00Z", "time of day"),
            ("2026-01-02T03:04:61Z", "time of day"),
            ("0000-01-01T00:00:00+01:00", "outside years"),
            ("9999-12-31T23:59:59-01:00", "outside years"),
            ("", "expected RFC 3339"),
            ("2026-01-02T03:04:0é5Z", "expected RFC 3339"),
        ] {
            let reason = time_err(s);
            assert!(
                reason.contains(needle),
                "{s:?}: {reason:?} should say {needle:?}"
            );
        }
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.1234567891Z")
                .unwrap_err()
                .to_string(),
            "invalid time \"2026-01-02T03:04:05.1234567891Z\": 10 fractional digits; at most 9 \
             (nanoseconds)"
        );
    }

    proptest::proptest! {
        /// What `rfc3339` prints, given a fraction of 1 to 9 digits and any offset within
        /// +-18:00, parses back to the instant, the fraction truncated to its digits.
        #[test]
        fn rfc3339_round_trip(
            secs in (MIN_TIME + SECS_PER_DAY)..=(MAX_TIME - SECS_PER_DAY),
            nanos in 0..NANOS_PER_SECOND,
            digits in 1..=MAX_FRACTION_DIGITS,
            offset_min in -(18 * 60)..=(18 * 60_i32),
        ) {
            let offset = UtcOffset::from_seconds(offset_min * 60).unwrap();
            let local = rfc3339(secs + i64::from(offset.seconds()));
            let frac = &format!("{nanos:09}")[..digits];
            let zone = if offset == UtcOffset::UTC { "Z".to_owned() } else { offset.to_string() };
            let text = format!("{}.{frac}{zone}", &local[..19]);
            let scale = 10_u32.pow(u32::try_from(MAX_FRACTION_DIGITS - digits).unwrap());
            let want = Rfc3339Time { secs, nanos: Some(nanos / scale * scale) };
            proptest::prop_assert_eq!(parse_rfc3339(&text).unwrap(), want, "{}", text);
            proptest::prop_assert_eq!(parse_rfc3339(&format!("{}{zone}", &local[..19])).unwrap(),
                Rfc3339Time { secs, nanos: None });
        }
    }

    /// Cross-check against a naive day-by-day walk over four centuries.
    #[test]
    fn civil_round_trip_walk() {
        let mut days = days_from_civil(1900, 1, 1);
        for y in 1900..2300_i64 {
            for m in 1..=12 {
                for d in 1..=days_in_month(y, m) {
                    assert_eq!(days_from_civil(y, m, d), days);
                    assert_eq!(civil_from_days(days), (y, m, d));
                    days += 1;
                }
            }
        }
    }
}
