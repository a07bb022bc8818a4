//! Retention (`forget`) with restic's semantics.
//!
//! Restore points are grouped by VM name; each group is sorted newest first and walked once,
//! exactly like restic's `ApplyPolicy` (restic 0.17+, see `docs/policy.md`):
//!
//! * pinned (protected) points are always kept, reason `pinned` (restic's `--keep-tag`);
//!   they still take part in the bucket rules below, as tagged snapshots do in restic;
//! * `keep_within` keeps every point strictly newer than (newest point - span), where the
//!   newest point is the newest one not in the future of `now`;
//! * `keep_last`/`hourly`/`daily`/`weekly`/`monthly`/`yearly` N keep the newest point of each
//!   of the N newest buckets (hour, day, ISO week, month, year) that have one; when a rule
//!   still has count left at the oldest point of the group, the oldest point is kept too
//!   (reason `oldest daily snapshot` when its bucket was already kept);
//! * rules combine by union; a policy with no rule at all is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use crate::civil::{self, UtcOffset, MAX_TIME, MIN_TIME};
use crate::span::Span;
use crate::Error;

/// Most restore points one `forget` call accepts (a VM backed up every 15 minutes for ten
/// years has ~350 000).
pub const MAX_RESTORE_POINTS: usize = 10_000_000;
/// Nanoseconds in a second: [`RestorePoint::time_nanos`] is below it.
pub const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// The retention rules of a class or job. A count of 0 (or `None` span) disables that rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keep the N newest points.
    pub keep_last: u32,
    /// Keep the newest point of each of the N newest hours that have one.
    pub keep_hourly: u32,
    /// ... days.
    pub keep_daily: u32,
    /// ... ISO weeks (Monday to Sunday).
    pub keep_weekly: u32,
    /// ... months.
    pub keep_monthly: u32,
    /// ... years.
    pub keep_yearly: u32,
    /// Keep every point newer than (newest point - span).
    pub keep_within: Option<Span>,
}

impl Retention {
    /// True when no rule is set (restic refuses to apply such a policy; so does [`forget`]).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
    }

    /// Human summary: `keep last 24 + 30 daily + 12 monthly + within 30d`.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "no retention rule (forget refuses to run)".to_owned();
        }
        let mut parts = Vec::new();
        if self.keep_last > 0 {
            parts.push(format!("last {}", self.keep_last));
        }
        for (n, name) in [
            (self.keep_hourly, "hourly"),
            (self.keep_daily, "daily"),
            (self.keep_weekly, "weekly"),
            (self.keep_monthly, "monthly"),
            (self.keep_yearly, "yearly"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {name}"));
            }
        }
        if let Some(w) = self.keep_within {
            parts.push(format!("within {w}"));
        }
        format!("keep {}", parts.join(" + "))
    }
}

/// Automatic pinning (`protect = "monthly"` in a policy): after each successful backup, the
/// new restore point is pinned when no restore point of the same VM and job in the same
/// calendar period is pinned yet. The first restore point of each period is thereby kept
/// until an operator unpins it, outside the GFS counts (archives, compliance copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protect {
    /// One pinned restore point per ISO week.
    Weekly,
    /// One per calendar month.
    Monthly,
    /// One per calendar year.
    Yearly,
}

impl Protect {
    /// The period `t` falls in (in the fixed offset `tz`), as a comparable number.
    pub fn period(self, t: i64, tz: UtcOffset) -> i64 {
        let b = match self {
            Protect::Weekly => Bucket::Week,
            Protect::Monthly => Bucket::Month,
            Protect::Yearly => Bucket::Year,
        };
        bucket_value(b, t, tz, 0)
    }

    /// The period of `t` as text: `2024-W05`, `2024-01`, `2024`.
    pub fn label(self, t: i64, tz: UtcOffset) -> String {
        let c = tz.to_local(t);
        match self {
            Protect::Weekly => {
                let (y, w) = c.iso_week();
                format!("{y:04}-W{w:02}")
            }
            Protect::Monthly => format!("{:04}-{:02}", c.year, c.month),
            Protect::Yearly => format!("{:04}", c.year),
        }
    }

    /// `weekly`, `monthly` or `yearly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protect::Weekly => "weekly",
            Protect::Monthly => "monthly",
            Protect::Yearly => "yearly",
        }
    }
}

/// One restore point as the repository lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// Restore point id.
    pub id: String,
    /// Creation time, Unix seconds (UTC).
    pub time: i64,
    /// Nanoseconds within `time` (below [`NANOS_PER_SECOND`]; 0 when unknown): orders
    /// points of one second, as restic's full-precision times do. Defaults to 0 in JSON.
    #[serde(default)]
    pub time_nanos: u32,
    /// The VM it belongs to (the grouping key).
    pub vm: String,
    /// Pinned: never removed by retention.
    pub pinned: bool,
}

fn ser_time<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&civil::rfc3339(*t))
}

/// A kept restore point and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// Restore point id.
    pub id: String,
    /// Creation time (serialized as RFC 3339 UTC).
    #[serde(serialize_with = "ser_time")]
    pub time: i64,
    /// restic-style reasons: `pinned`, `within 30d`, `last snapshot`, `hourly snapshot`,
    /// `daily snapshot`, `weekly snapshot`, `monthly snapshot`, `yearly snapshot`,
    /// `oldest daily snapshot`, ...
    pub reasons: Vec<String>,
}

/// A restore point retention lets go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Restore point id.
    pub id: String,
    /// Creation time (serialized as RFC 3339 UTC).
    #[serde(serialize_with = "ser_time")]
    pub time: i64,
}

/// The decision for one VM: newest first in both lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgetGroup {
    /// VM name.
    pub vm: String,
    /// Points to keep, with reasons.
    pub keep: Vec<Kept>,
    /// Points to remove.
    pub remove: Vec<Removed>,
}

#[derive(Clone, Copy)]
enum Bucket {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

fn bucket_value(b: Bucket, t: i64, tz: UtcOffset, nr: usize) -> i64 {
    let c = tz.to_local(t);
    let (m, d, h) = (i64::from(c.month), i64::from(c.day), i64::from(c.hour));
    match b {
        Bucket::Last => i64::try_from(nr).unwrap_or(i64::MAX),
        Bucket::Hour => ((c.year * 100 + m) * 100 + d) * 100 + h,
        Bucket::Day => (c.year * 100 + m) * 100 + d,
        Bucket::Week => {
            let (y, w) = c.iso_week();
            y * 100 + i64::from(w)
        }
        Bucket::Month => c.year * 100 + m,
        Bucket::Year => c.year,
    }
}

/// Applies `rules` to `points`, grouped by VM (groups sorted by VM name). `now` only matters
/// for `keep_within`: points in the future of `now` do not count as the newest (restic).
/// Calendar buckets are computed in the fixed offset `tz` (restic uses each snapshot's own
/// zone; Cairn stores UTC, so pass [`UtcOffset::UTC`] or the policy's `timezone`).
pub fn forget(
    points: &[RestorePoint],
    rules: &Retention,
    now: i64,
    tz: UtcOffset,
) -> Result<Vec<ForgetGroup>, Error> {
    if rules.is_empty() {
        return Err(Error::NoRetentionRule);
    }
    if points.len() > MAX_RESTORE_POINTS {
        return Err(Error::TooManyRestorePoints {
            count: points.len(),
            max: MAX_RESTORE_POINTS,
        });
    }
    let mut groups: BTreeMap<&str, Vec<&RestorePoint>> = BTreeMap::new();
    for p in points {
        if !(MIN_TIME..=MAX_TIME).contains(&p.time) {
            return Err(Error::TimeOutOfRange {
                id: p.id.clone(),
                time: p.time,
            });
        }
        if p.time_nanos >= NANOS_PER_SECOND {
            return Err(Error::NanosOutOfRange {
                id: p.id.clone(),
                nanos: p.time_nanos,
            });
        }
        groups.entry(p.vm.as_str()).or_default().push(p);
    }
    Ok(groups
        .into_iter()
        .map(|(vm, list)| forget_group(vm, list, rules, now, tz))
        .collect())
}

fn forget_group(
    vm: &str,
    mut list: Vec<&RestorePoint>,
    rules: &Retention,
    now: i64,
    tz: UtcOffset,
) -> ForgetGroup {
    // Newest first (seconds, then the sub-second part); equal times by id so the result
    // does not depend on input order.
    list.sort_by(|a, b| {
        (b.time, b.time_nanos)
            .cmp(&(a.time, a.time_nanos))
            .then_with(|| a.id.cmp(&b.id))
    });

    // restic's findLatestTimestamp: newest point strictly before now; the zero time when none.
    let latest = list
        .iter()
        .map(|p| p.time)
        .filter(|&t| t < now)
        .max()
        .unwrap_or(MIN_TIME);
    let within_cutoff = rules.keep_within.map(|w| (w, w.before(latest)));

    let mut buckets = [
        (rules.keep_last, Bucket::Last, None::<i64>, "last snapshot"),
        (rules.keep_hourly, Bucket::Hour, None, "hourly snapshot"),
        (rules.keep_daily, Bucket::Day, None, "daily snapshot"),
        (rules.keep_weekly, Bucket::Week, None, "weekly snapshot"),
        (rules.keep_monthly, Bucket::Month, None, "monthly snapshot"),
        (rules.keep_yearly, Bucket::Year, None, "yearly snapshot"),
    ];

    let mut keep = Vec::new();
    let mut remove = Vec::new();
    let count = list.len();
    for (nr, p) in list.into_iter().enumerate() {
        let mut reasons = Vec::new();
        if p.pinned {
            reasons.push("pinned".to_owned());
        }
        if let Some((w, cutoff)) = within_cutoff {
            if p.time > cutoff {
                reasons.push(format!("within {w}"));
            }
        }
        for (left, kind, last, reason) in buckets.iter_mut() {
            if *left == 0 {
                continue;
            }
            let val = bucket_value(*kind, p.time, tz, nr);
            let new_bucket = *last != Some(val);
            if new_bucket || nr + 1 == count {
                *last = Some(val);
                *left -= 1;
                reasons.push(if new_bucket {
                    (*reason).to_owned()
                } else {
                    format!("oldest {reason}")
                });
            }
        }
        if reasons.is_empty() {
            remove.push(Removed {
                id: p.id.clone(),
                time: p.time,
            });
        } else {
            keep.push(Kept {
                id: p.id.clone(),
                time: p.time,
                reasons,
            });
        }
    }
    ForgetGroup {
        vm: vm.to_owned(),
        keep,
        remove,
    }
}
