//! Calendar schedules (`hourly`, `daily 02:00`, `weekly Mon,Thu 01:30`, `every 4h`, ...) and
//! time windows (`22:00-06:00`).
//!
//! Times are UTC unless the policy gives a fixed `timezone` offset (no tz database, so no
//! daylight-saving changes): the wall-clock times of a schedule are read in that offset.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::civil::{self, Civil, UtcOffset, MAX_TIME, MIN_TIME, SECS_PER_DAY};
use crate::Error;

/// Shortest `every` period: one minute.
const MIN_EVERY_SECS: i64 = 60;
/// Longest `every` period: one year of days (longer intervals are a calendar question).
const MAX_EVERY_SECS: i64 = 366 * SECS_PER_DAY;
/// Days `next_after` looks ahead: any weekday set or month day 1..=31 recurs within 62 days.
const LOOKAHEAD_DAYS: i64 = 400;

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Every hour at `minute`.
    Hourly { minute: u32 },
    /// Every day at `secs` after local midnight.
    Daily { secs: u32 },
    /// On the weekdays in `days` (bit 0 = Monday) at `secs` after local midnight.
    Weekly { days: u8, secs: u32 },
    /// On day `day` of every month that has it, at `secs` after local midnight.
    Monthly { day: u32, secs: u32 },
    /// Every `period` seconds, aligned to local midnight of 1970-01-01.
    Every { period: i64 },
}

/// A parsed calendar expression. See the crate documentation for the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    kind: Kind,
    offset: UtcOffset,
}

impl Schedule {
    /// The same schedule read in the fixed offset `offset` instead of UTC.
    pub fn with_offset(mut self, offset: UtcOffset) -> Schedule {
        self.offset = offset;
        self
    }

    /// The offset wall-clock times are read in.
    pub fn offset(&self) -> UtcOffset {
        self.offset
    }

    /// The first firing time strictly after `t` (Unix seconds). `t` is clamped to
    /// [`civil::MIN_TIME`]..=[`civil::MAX_TIME`] first, so the result is strictly after `t`
    /// for every `t` below `MAX_TIME`.
    pub fn next_after(&self, t: i64) -> i64 {
        let t = t.clamp(MIN_TIME, MAX_TIME);
        let off = i64::from(self.offset.seconds());
        let local = t + off;
        match self.kind {
            Kind::Hourly { minute } => {
                let mut cand = local.div_euclid(3600) * 3600 + i64::from(minute) * 60;
                if cand <= local {
                    cand += 3600;
                }
                cand - off
            }
            Kind::Every { period } => (local.div_euclid(period) + 1) * period - off,
            Kind::Daily { secs } | Kind::Weekly { secs, .. } | Kind::Monthly { secs, .. } => {
                let first_day = local.div_euclid(SECS_PER_DAY);
                for day in first_day..first_day + LOOKAHEAD_DAYS {
                    let cand = day * SECS_PER_DAY + i64::from(secs);
                    if cand > local && self.day_matches(day) {
                        return cand - off;
                    }
                }
                // Unreachable for validated schedules (every rule recurs within 62 days);
                // still return something strictly later rather than panic.
                local + LOOKAHEAD_DAYS * SECS_PER_DAY - off
            }
        }
    }

    fn day_matches(&self, day: i64) -> bool {
        match self.kind {
            Kind::Weekly { days, .. } => days & (1 << (civil::weekday_from_days(day) - 1)) != 0,
            Kind::Monthly { day: dom, .. } => civil::civil_from_days(day).2 == dom,
            _ => true,
        }
    }
}

fn hhmm(secs: u32) -> String {
    if secs.is_multiple_of(60) {
        format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
    } else {
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

impl fmt::Display for Schedule {
    /// Human description, e.g. `hourly at :00`, `weekly on Mon,Thu at 01:30`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Hourly { minute } => write!(f, "hourly at :{minute:02}")?,
            Kind::Daily { secs } => write!(f, "daily at {}", hhmm(secs))?,
            Kind::Weekly { days, secs } => {
                let names: Vec<&str> = (0..7)
                    .filter(|i| days & (1 << i) != 0)
                    .map(|i| WEEKDAYS[i])
                    .collect();
                write!(f, "weekly on {} at {}", names.join(","), hhmm(secs))?;
            }
            Kind::Monthly { day, secs } => write!(f, "monthly on day {day} at {}", hhmm(secs))?,
            Kind::Every { period } => {
                if period % SECS_PER_DAY == 0 {
                    write!(f, "every {}d", period / SECS_PER_DAY)?;
                } else if period % 3600 == 0 {
                    write!(f, "every {}h", period / 3600)?;
                } else {
                    write!(f, "every {}min", period / 60)?;
                }
            }
        }
        if self.offset != UtcOffset::UTC {
            write!(f, " ({})", self.offset)?;
        }
        Ok(())
    }
}

fn parse_time_of_day(s: &str, allow_seconds: bool) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, "00"),
        [h, m, sec] if allow_seconds => (*h, *m, *sec),
        _ => return None,
    };
    let h: u32 = civil::parse_fixed_digits(h, 2).or_else(|| civil::parse_fixed_digits(h, 1))?;
    let m: u32 = civil::parse_fixed_digits(m, 2)?;
    let sec: u32 = civil::parse_fixed_digits(sec, 2)?;
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

fn parse_weekdays(s: &str) -> Option<u8> {
    let mut mask = 0u8;
    for name in s.split(',') {
        let i = WEEKDAYS.iter().position(|w| {
            w.eq_ignore_ascii_case(name) || full_weekday(w).eq_ignore_ascii_case(name)
        })?;
        mask |= 1 << i;
    }
    (mask != 0).then_some(mask)
}

fn full_weekday(w: &str) -> &'static str {
    match w {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    }
}

fn parse_every(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.len() > 6 {
        return None;
    }
    let n: i64 = num.parse().ok()?;
    let unit_secs = match unit {
        "min" => 60,
        "h" => 3600,
        "d" => SECS_PER_DAY,
        _ => return None,
    };
    let period = n.checked_mul(unit_secs)?;
    (MIN_EVERY_SECS..=MAX_EVERY_SECS)
        .contains(&period)
        .then_some(period)
}

/// systemd-like subset: `*-*-* HH:MM[:SS]` (daily) or `*-*-DD HH:MM[:SS]` (monthly).
fn parse_systemd(date: &str, time: &str) -> Option<Kind> {
    let secs = parse_time_of_day(time, true)?;
    let rest = date.strip_prefix("*-*-")?;
    if rest == "*" {
        return Some(Kind::Daily { secs });
    }
    let day: u32 = civil::parse_fixed_digits(rest, 2)?;
    (1..=31)
        .contains(&day)
        .then_some(Kind::Monthly { day, secs })
}

impl FromStr for Schedule {
    type Err = Error;

    fn from_str(s: &str) -> Result<Schedule, Error> {
        let bad = |reason: &str| Error::Value {
            what: "schedule",
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let words: Vec<&str> = s.split_whitespace().collect();
        let kind = match words.as_slice() {
            ["hourly"] => Kind::Hourly { minute: 0 },
            ["hourly", "at", m] => {
                let minute: u32 = m
                    .strip_prefix(':')
                    .and_then(|m| civil::parse_fixed_digits(m, 2))
                    .filter(|m| *m < 60)
                    .ok_or_else(|| bad("expected `hourly at :MM` with MM 00..59"))?;
                Kind::Hourly { minute }
            }
            ["daily", t] => Kind::Daily {
                secs: parse_time_of_day(t, false).ok_or_else(|| bad("expected `daily HH:MM`"))?,
            },
            ["weekly", d, t] => Kind::Weekly {
                days: parse_weekdays(d)
                    .ok_or_else(|| bad("expected weekdays like Sun or Mon,Thu"))?,
                secs: parse_time_of_day(t, false)
                    .ok_or_else(|| bad("expected `weekly DAYS HH:MM`"))?,
            },
            ["monthly", d, t] => {
                let day: u32 = d
                    .parse()
                    .ok()
                    .filter(|d| (1..=31).contains(d))
                    .ok_or_else(|| bad("expected a day of month 1..31"))?;
                Kind::Monthly {
                    day,
                    secs: parse_time_of_day(t, false)
                        .ok_or_else(|| bad("expected `monthly DAY HH:MM`"))?,
                }
            }
            ["every", p] => Kind::Every {
                period: parse_every(p)
                    .ok_or_else(|| bad("expected `every N(min|h|d)`, 1min to 366d"))?,
            },
            [d, t] if d.starts_with("*-") => parse_systemd(d, t)
                .ok_or_else(|| bad("systemd subset: `*-*-* HH:MM[:SS]` or `*-*-DD HH:MM[:SS]`"))?,
            _ => return Err(bad(
                "expected hourly, hourly at :MM, daily HH:MM, weekly DAYS HH:MM, monthly DAY HH:MM, every N(min|h|d) or *-*-* HH:MM:SS",
            )),
        };
        Ok(Schedule {
            kind,
            offset: UtcOffset::UTC,
        })
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A daily wall-clock window such as `22:00-06:00` (may wrap past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    start: u32,
    end: u32,
}

impl Window {
    /// Seconds after local midnight the window opens.
    pub fn start_secs(&self) -> u32 {
        self.start
    }

    /// Seconds after local midnight the window closes.
    pub fn end_secs(&self) -> u32 {
        self.end
    }

    /// True when the instant `t` lies inside the window (start inclusive, end exclusive).
    pub fn contains(&self, t: i64, offset: UtcOffset) -> bool {
        let c: Civil = offset.to_local(t.clamp(MIN_TIME, MAX_TIME));
        let s = c.hour * 3600 + c.minute * 60 + c.second;
        if self.start < self.end {
            (self.start..self.end).contains(&s)
        } else {
            s >= self.start || s < self.end
        }
    }

    /// The first closing time strictly after `t`: a run started at `t` inside the window must
    /// finish by then, otherwise the caller reports it as running past its window.
    pub fn closes_after(&self, t: i64, offset: UtcOffset) -> i64 {
        let t = t.clamp(MIN_TIME, MAX_TIME);
        let off = i64::from(offset.seconds());
        let local = t + off;
        let mut cand = local.div_euclid(SECS_PER_DAY) * SECS_PER_DAY + i64::from(self.end);
        if cand <= local {
            cand += SECS_PER_DAY;
        }
        cand - off
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hhmm(self.start), hhmm(self.end))
    }
}

impl FromStr for Window {
    type Err = Error;

    fn from_str(s: &str) -> Result<Window, Error> {
        let bad = |reason: &str| Error::Value {
            what: "window",
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("expected HH:MM-HH:MM"))?;
        let start = parse_time_of_day(a.trim(), false).ok_or_else(|| bad("bad start time"))?;
        let end = parse_time_of_day(b.trim(), false).ok_or_else(|| bad("bad end time"))?;
        if start == end {
            return Err(bad(
                "empty window (start equals end); omit `window` for no limit",
            ));
        }
        Ok(Window { start, end })
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        // "YYYY-MM-DD HH:MM" in UTC
        let y = s[0..4].parse().unwrap();
        let mo = s[5..7].parse().unwrap();
        let d = s[8..10].parse().unwrap();
        let h = s[11..13].parse().unwrap();
        let mi = s[14..16].parse().unwrap();
        Civil {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: 0,
        }
        .to_unix()
    }

    fn next(expr: &str, from: &str) -> String {
        let s: Schedule = expr.parse().unwrap();
        civil::rfc3339(s.next_after(t(from)))
    }

    #[test]
    fn grammar() {
        // 2024-11-24 is a Sunday.
        assert_eq!(next("hourly", "2024-11-24 10:00"), "2024-11-24T11:00:00Z");
        assert_eq!(next("hourly", "2024-11-24 10:59"), "2024-11-24T11:00:00Z");
        assert_eq!(
            next("hourly at :15", "2024-11-24 10:14"),
            "2024-11-24T10:15:00Z"
        );
        assert_eq!(
            next("hourly at :15", "2024-11-24 10:15"),
            "2024-11-24T11:15:00Z"
        );
        assert_eq!(
            next("daily 02:00", "2024-11-24 01:00"),
            "2024-11-24T02:00:00Z"
        );
        assert_eq!(
            next("daily 02:00", "2024-11-24 02:00"),
            "2024-11-25T02:00:00Z"
        );
        assert_eq!(
            next("daily 02:00", "2024-12-31 23:00"),
            "2025-01-01T02:00:00Z"
        );
        assert_eq!(
            next("weekly Sun 03:00", "2024-11-24 03:00"),
            "2024-12-01T03:00:00Z"
        );
        assert_eq!(
            next("weekly Sun 03:00", "2024-11-23 12:00"),
            "2024-11-24T03:00:00Z"
        );
        assert_eq!(
            next("weekly Mon,Thu 01:30", "2024-11-25 01:30"),
            "2024-11-28T01:30:00Z"
        );
        assert_eq!(
            next("weekly Mon,Thu 01:30", "2024-11-28 02:00"),
            "2024-12-02T01:30:00Z"
        );
        assert_eq!(
            next("monthly 1 04:00", "2024-11-24 00:00"),
            "2024-12-01T04:00:00Z"
        );
        assert_eq!(
            next("monthly 31 04:00", "2024-01-31 05:00"),
            "2024-03-31T04:00:00Z"
        );
        assert_eq!(
            next("monthly 29 00:00", "2023-01-30 00:00"),
            "2023-03-29T00:00:00Z"
        );
        assert_eq!(next("every 4h", "2024-11-24 03:59"), "2024-11-24T04:00:00Z");
        assert_eq!(next("every 4h", "2024-11-24 04:00"), "2024-11-24T08:00:00Z");
        assert_eq!(
            next("every 15min", "2024-11-24 04:07"),
            "2024-11-24T04:15:00Z"
        );
        assert_eq!(
            next("*-*-* 02:00:00", "2024-11-24 02:00"),
            "2024-11-25T02:00:00Z"
        );
        assert_eq!(
            next("*-*-01 04:00", "2024-11-24 00:00"),
            "2024-12-01T04:00:00Z"
        );
        for bad in [
            "",
            "daily",
            "daily 24:00",
            "daily 2:60",
            "weekly Xyz 01:00",
            "monthly 32 01:00",
            "monthly 0 01:00",
            "every 0h",
            "every 30s",
            "every 4m",
            "every 400d",
            "hourly at 15",
            "hourly at :60",
            "*-*-32 01:00",
            "1-*-* 01:00",
            "yearly",
            "every h",
        ] {
            assert!(
                bad.parse::<Schedule>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn offsets_shift_wall_clock() {
        let s: Schedule = "daily 02:00".parse().unwrap();
        let s = s.with_offset("+02:00".parse().unwrap());
        // 02:00 at +02:00 is 00:00 UTC.
        assert_eq!(
            civil::rfc3339(s.next_after(t("2024-11-24 01:00"))),
            "2024-11-25T00:00:00Z"
        );
        assert_eq!(s.to_string(), "daily at 02:00 (+02:00)");
        let h: Schedule = "hourly at :15".parse().unwrap();
        let h = h.with_offset("+05:30".parse().unwrap());
        // :15 local at +05:30 is :45 UTC.
        assert_eq!(
            civil::rfc3339(h.next_after(t("2024-11-24 10:00"))),
            "2024-11-24T10:45:00Z"
        );
    }

    #[test]
    fn windows() {
        let w: Window = "22:00-06:00".parse().unwrap();
        assert!(w.contains(t("2024-11-24 23:00"), UtcOffset::UTC));
        assert!(w.contains(t("2024-11-24 05:59"), UtcOffset::UTC));
        assert!(!w.contains(t("2024-11-24 06:00"), UtcOffset::UTC));
        assert!(!w.contains(t("2024-11-24 12:00"), UtcOffset::UTC));
        assert_eq!(
            civil::rfc3339(w.closes_after(t("2024-11-24 23:00"), UtcOffset::UTC)),
            "2024-11-25T06:00:00Z"
        );
        let day: Window = "08:00-18:00".parse().unwrap();
        assert!(day.contains(t("2024-11-24 08:00"), UtcOffset::UTC));
        assert!(!day.contains(t("2024-11-24 18:00"), UtcOffset::UTC));
        assert!("08:00-08:00".parse::<Window>().is_err());
        assert!("08:00".parse::<Window>().is_err());
    }
}
