//! Cairn's policy layer: the TOML policy file (protection classes and jobs), calendar
//! schedules, restic-compatible retention (`forget`) and the daemon's due-job bookkeeping.
//!
//! Pure library: the only I/O is [`Policy::load`] reading the policy file. The engine and the
//! CLI call it; it depends on no other Cairn crate.
//!
//! Times are `i64` Unix seconds, UTC. A policy may give a fixed `timezone = "+02:00"` offset
//! for the wall-clock times of schedules and windows; there is no tz database, so there are
//! no daylight-saving changes. The full file format is in `docs/policy.md`.
//!
//! ```
//! use cairn_policy::{forget, due_jobs, Policy, RestorePoint, RunState, UtcOffset};
//!
//! let policy = Policy::parse(r#"
//!     [class.finance]
//!     schedule = "hourly"
//!     verify_every = "7d"
//!     keep_last = 24
//!     keep_daily = 30
//!     keep_monthly = 12
//!     repository = "/backup/finance"
//!     key_file = "/etc/cairn/finance.key"
//!
//!     [job.finance-db]
//!     class = "finance"
//!     vms = ["/vms/db01"]
//! "#)?;
//! let job = &policy.jobs()[0];
//! assert!(job.describe().contains("hourly at :00, incremental, verify every 7d"));
//!
//! // Nothing ran yet: everything is due.
//! let now = 1_704_193_200; // 2024-01-02T11:00:00Z
//! let due = due_jobs(&policy.jobs(), &RunState::new(), now);
//! assert_eq!(due[0].vm, "/vms/db01");
//!
//! // Retention, restic semantics.
//! let points: Vec<RestorePoint> = (0..48)
//!     .map(|h| RestorePoint {
//!         id: format!("rp{h}"),
//!         time: now - h * 3600,
//!         time_nanos: 0,
//!         vm: "db01".into(),
//!         pinned: false,
//!     })
//!     .collect();
//! let groups = forget(&points, &job.retention, now + 1, UtcOffset::UTC)?;
//! // The 24 last, the newest of 2023-12-31 (daily, monthly) and, as counts are left, the
//! // oldest point ("oldest daily snapshot", as restic 0.17 does).
//! assert_eq!(groups[0].keep.len(), 24 + 2);
//! assert_eq!(groups[0].keep[25].reasons, ["oldest daily snapshot", "oldest monthly snapshot"]);
//! # Ok::<(), cairn_policy::Error>(())
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod civil;
mod daemon;
mod glob;
mod policy;
mod retention;
mod schedule;
mod span;

pub use civil::{parse_rfc3339, Rfc3339Time, UtcOffset};
pub use daemon::{
    due_jobs, Clock, DueRun, FakeClock, RunOutcome, RunPlan, RunRecord, RunState, SystemClock,
    MAX_MESSAGE_LEN, MAX_RUN_STATE_BYTES,
};
pub use glob::{Glob, MAX_GLOB_LEN, MAX_MATCH_PATH_LEN};
pub use policy::{
    BackupMode, Granularity, KeyRef, Policy, ResolvedJob, Throttle, MAX_ENTRIES, MAX_LIST_LEN,
    MAX_PIPELINE_WIDTH, MAX_POLICY_BYTES,
};
pub use retention::{
    forget, ForgetGroup, Kept, Protect, Removed, RestorePoint, Retention, MAX_RESTORE_POINTS,
    NANOS_PER_SECOND,
};
pub use schedule::{Schedule, Window};
pub use span::Span;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy text is wrong at a place: unknown key, wrong type, invalid value, missing
    /// setting. `line` and `column` are 1-based.
    #[error("policy line {line}, column {column}: {message}")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Like [`Error::Invalid`], from [`Policy::load`] with the file's path.
    #[error("{}:{line}:{column}: {message}", path.display())]
    InFile {
        /// The policy file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A single value (schedule, duration, glob, window, timezone) is malformed.
    #[error("invalid {what} {input:?}: {reason}")]
    Value {
        /// Which kind of value.
        what: &'static str,
        /// The text given.
        input: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Reading the policy file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Input larger than its limit.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `forget` without any keep rule (restic refuses too: it would remove everything).
    #[error("no retention rule given (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly or keep_within); refusing to remove every restore point")]
    NoRetentionRule,
    /// Too many restore points in one `forget` call.
    #[error("{count} restore points exceed the limit of {max}")]
    TooManyRestorePoints {
        /// Points given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A restore point time outside years 0000..=9999.
    #[error("restore point {id}: time {time} is outside years 0000..9999")]
    TimeOutOfRange {
        /// Restore point id.
        id: String,
        /// The time given.
        time: i64,
    },
    /// A restore point's sub-second part is a whole second or more.
    #[error("restore point {id}: {nanos} nanoseconds, expected below 1000000000")]
    NanosOutOfRange {
        /// Restore point id.
        id: String,
        /// The nanoseconds given.
        nanos: u32,
    },
    /// The run-state JSON is malformed.
    #[error("run state line {line}, column {column}: {message}")]
    RunState {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}
