//! Daemon core: which (job, VM) pairs are due at a given time, and the run bookkeeping.
//!
//! No threads here: the daemon (or `cairn run`) asks [`due_jobs`] with the time from a
//! [`Clock`], starts what is returned (one run per VM at a time), and records starts and
//! outcomes in a [`RunState`] it persists between runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use crate::policy::ResolvedJob;
use crate::Error;

/// Largest run-state file accepted (hundreds of thousands of (job, VM) records).
pub const MAX_RUN_STATE_BYTES: usize = 64 << 20;
/// Longest failure message kept in the run state, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A source of "now" in Unix seconds, injectable for tests.
pub trait Clock {
    /// Current time, Unix seconds (UTC).
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// A settable clock for tests and `cairn run --now`.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: AtomicI64,
}

impl FakeClock {
    /// A clock stopped at `now`.
    pub fn new(now: i64) -> FakeClock {
        FakeClock {
            now: AtomicI64::new(now),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs` (saturating).
    pub fn advance(&self, secs: i64) {
        let t = self.now.load(Ordering::SeqCst).saturating_add(secs);
        self.now.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Outcome of the last run of a (job, VM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// Started, not finished (or the process died: the caller decides after a restart).
    Running,
    /// Finished and the restore point was written.
    Succeeded,
    /// Finished with an error.
    Failed {
        /// Error text (truncated to [`MAX_MESSAGE_LEN`] bytes).
        message: String,
    },
    /// Finished after the job's window closed (the restore point is still good).
    Overran {
        /// When the window closed, Unix seconds.
        window_closed: i64,
    },
}

/// Bookkeeping for one (job, VM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the last run started, Unix seconds.
    pub last_start: i64,
    /// When it finished.
    pub last_end: Option<i64>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Start of the last run that verified its restore point.
    pub last_verify: Option<i64>,
    /// Start of the last run that re-read the whole image.
    pub last_full_read: Option<i64>,
}

/// What a run should do besides the backup itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RunPlan {
    /// Verify the new restore point end to end (`verify_every` elapsed, or never verified).
    pub verify: bool,
    /// Re-read the whole image (`backup = "full"`, `full_reread_every` elapsed, or first run).
    pub full_read: bool,
}

/// One (job, VM) pair due to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueRun {
    /// Job name.
    pub job: String,
    /// VM as listed in the job.
    pub vm: String,
    /// The scheduled time that made it due (`None`: never ran before).
    pub scheduled: Option<i64>,
}

/// Last runs and results, keyed by job then VM. Serialize it with serde (JSON) between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    runs: BTreeMap<String, BTreeMap<String, RunRecord>>,
}

impl RunState {
    /// An empty state (nothing ever ran).
    pub fn new() -> RunState {
        RunState::default()
    }

    /// The record of (job, vm).
    pub fn record(&self, job: &str, vm: &str) -> Option<&RunRecord> {
        self.runs.get(job).and_then(|m| m.get(vm))
    }

    /// Every record as (job, VM, record), in job then VM order.
    pub fn records(&self) -> impl Iterator<Item = (&str, &str, &RunRecord)> {
        self.runs
            .iter()
            .flat_map(|(job, m)| m.iter().map(move |(vm, r)| (job.as_str(), vm.as_str(), r)))
    }

    /// Sets the record of (job, vm) (merging another runner's state file: each process
    /// writes back only the records it changed).
    pub fn set_record(&mut self, job: &str, vm: &str, record: RunRecord) {
        self.runs
            .entry(job.to_owned())
            .or_default()
            .insert(vm.to_owned(), record);
    }

    /// True when any job is running on `vm` (the caller runs one job per VM at a time).
    pub fn vm_busy(&self, vm: &str) -> bool {
        self.runs
            .values()
            .any(|m| m.get(vm).is_some_and(|r| r.outcome == RunOutcome::Running))
    }

    /// Records that (job, vm) started at `t` with `plan`.
    pub fn record_start(&mut self, job: &str, vm: &str, t: i64, plan: RunPlan) {
        let rec = self
            .runs
            .entry(job.to_owned())
            .or_default()
            .entry(vm.to_owned())
            .or_insert(RunRecord {
                last_start: t,
                last_end: None,
                outcome: RunOutcome::Running,
                last_verify: None,
                last_full_read: None,
            });
        rec.last_start = t;
        rec.last_end = None;
        rec.outcome = RunOutcome::Running;
        if plan.verify {
            rec.last_verify = Some(t);
        }
        if plan.full_read {
            rec.last_full_read = Some(t);
        }
    }

    /// Records how (job, vm) ended at `t`. A record that never started is created.
    pub fn record_finish(&mut self, job: &str, vm: &str, t: i64, outcome: RunOutcome) {
        let outcome = match outcome {
            RunOutcome::Failed { mut message } => {
                if message.len() > MAX_MESSAGE_LEN {
                    let mut cut = MAX_MESSAGE_LEN;
                    while !message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    message.truncate(cut);
                }
                RunOutcome::Failed { message }
            }
            o => o,
        };
        let rec = self
            .runs
            .entry(job.to_owned())
            .or_default()
            .entry(vm.to_owned())
            .or_insert(RunRecord {
                last_start: t,
                last_end: None,
                outcome: RunOutcome::Running,
                last_verify: None,
                last_full_read: None,
            });
        rec.last_end = Some(t);
        rec.outcome = outcome;
    }

    /// What the next run of (job, vm) at `now` should include.
    pub fn plan(&self, job: &ResolvedJob, vm: &str, now: i64) -> RunPlan {
        let rec = self.record(&job.name, vm);
        let elapsed = |last: Option<i64>, every: Option<crate::Span>| match (last, every) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(l), Some(e)) => now.saturating_sub(l) >= e.approx_seconds(),
        };
        let full_read = job.backup == crate::BackupMode::Full
            || rec.is_none()
            || elapsed(rec.and_then(|r| r.last_full_read), job.full_reread_every);
        RunPlan {
            verify: elapsed(rec.and_then(|r| r.last_verify), job.verify_every),
            full_read,
        }
    }

    /// Serializes to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{\"runs\":{}}".to_owned())
    }

    /// Parses JSON written by [`RunState::to_json`].
    pub fn from_json(text: &str) -> Result<RunState, Error> {
        if text.len() > MAX_RUN_STATE_BYTES {
            return Err(Error::TooLarge {
                len: text.len(),
                max: MAX_RUN_STATE_BYTES,
            });
        }
        serde_json::from_str(text).map_err(|e| Error::RunState {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }
}

/// The (job, VM) pairs due at `now`, in job then VM order. A pair is due when it never ran,
/// or when its schedule fired after its last start (`next_after(last_start) <= now`); it is
/// not due while any job runs on that VM, nor outside the job's window. A run that missed
/// several firings runs once.
pub fn due_jobs(jobs: &[ResolvedJob], state: &RunState, now: i64) -> Vec<DueRun> {
    let mut due = Vec::new();
    for job in jobs {
        if let Some(w) = job.window {
            if !w.contains(now, job.timezone) {
                continue;
            }
        }
        for vm in &job.vms {
            let vm = vm.as_str();
            if state.vm_busy(vm) || due.iter().any(|d: &DueRun| d.vm == vm) {
                continue;
            }
            match state.record(&job.name, vm) {
                None => due.push(DueRun {
                    job: job.name.clone(),
                    vm: vm.to_owned(),
                    scheduled: None,
                }),
                Some(r) => {
                    let next = job.schedule.next_after(r.last_start);
                    if next <= now {
                        due.push(DueRun {
                            job: job.name.clone(),
                            vm: vm.to_owned(),
                            scheduled: Some(next),
                        });
                    }
                }
            }
        }
    }
    due
}
