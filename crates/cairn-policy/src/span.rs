//! Calendar spans such as `30d`, `2w`, `1y6m`, `12h` (restic's `--keep-within` grammar plus
//! weeks).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Largest number in one span component: 100 000 years of hours still fits every computation
/// in `i64` and no sane policy needs more.
const MAX_COMPONENT: u32 = 1_000_000;

/// A calendar span: years, months, weeks, days and hours. Years and months are calendar
/// units (subtracted on the calendar like Go's `AddDate`), the rest are fixed lengths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Years (`y`).
    pub years: u32,
    /// Months (`m`).
    pub months: u32,
    /// Weeks (`w` = 7 days; an extension: restic rejects `w`).
    pub weeks: u32,
    /// Days (`d`).
    pub days: u32,
    /// Hours (`h`).
    pub hours: u32,
}

impl Span {
    /// True when every component is zero.
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The instant `self` before `t`, computed like restic's
    /// `t.AddDate(-years, -months, -days).Add(-hours)` (weeks count as 7 days).
    pub fn before(&self, t: i64) -> i64 {
        crate::civil::sub_span(
            t,
            i64::from(self.years),
            i64::from(self.months),
            i64::from(self.weeks) * 7 + i64::from(self.days),
            i64::from(self.hours),
        )
    }

    /// Approximate length in seconds (a month counts as 30 days, a year as 365): used only to
    /// compare a span with elapsed time (verify or re-read intervals), never for retention.
    pub fn approx_seconds(&self) -> i64 {
        let days = i64::from(self.years) * 365
            + i64::from(self.months) * 30
            + i64::from(self.weeks) * 7
            + i64::from(self.days);
        days * 86_400 + i64::from(self.hours) * 3600
    }
}

impl fmt::Display for Span {
    /// Restic's style: components in order `y m w d h`, zero components omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Span {
    type Err = Error;

    fn from_str(s: &str) -> Result<Span, Error> {
        let bad = |reason: String| Error::Value {
            what: "duration",
            input: s.to_owned(),
            reason,
        };
        let mut span = Span::default();
        let mut num: Option<u32> = None;
        let mut seen = String::new();
        if s.is_empty() {
            return Err(bad("empty; expected e.g. 30d, 2w, 1y6m, 12h".to_owned()));
        }
        for ch in s.chars() {
            if let Some(d) = ch.to_digit(10) {
                let n = num
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(d))
                    .filter(|n| *n <= MAX_COMPONENT)
                    .ok_or_else(|| bad(format!("number larger than {MAX_COMPONENT}")))?;
                num = Some(n);
                continue;
            }
            let n = num
                .take()
                .ok_or_else(|| bad(format!("unit '{ch}' without a number before it")))?;
            if seen.contains(ch) {
                return Err(bad(format!("unit '{ch}' given twice")));
            }
            let slot = match ch {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'w' => &mut span.weeks,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => {
                    return Err(bad(format!(
                        "unknown unit '{ch}' (units: y = years, m = months, w = weeks, d = days, h = hours)"
                    )))
                }
            };
            *slot = n;
            seen.push(ch);
        }
        if num.is_some() {
            return Err(bad("number without a unit (y, m, w, d or h)".to_owned()));
        }
        if span.is_zero() {
            return Err(bad(
                "a zero duration keeps nothing; omit the setting instead".to_owned(),
            ));
        }
        Ok(span)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let s: Span = "1y6m".parse().unwrap();
        assert_eq!((s.years, s.months), (1, 6));
        assert_eq!(s.to_string(), "1y6m");
        assert_eq!("2w".parse::<Span>().unwrap().weeks, 2);
        assert_eq!("30d".parse::<Span>().unwrap().to_string(), "30d");
        assert_eq!("2y5m7d3h".parse::<Span>().unwrap().to_string(), "2y5m7d3h");
        for bad in [
            "",
            "d",
            "30",
            "3x",
            "1d1d",
            "0d",
            "99999999999d",
            "-1d",
            "1.5d",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
