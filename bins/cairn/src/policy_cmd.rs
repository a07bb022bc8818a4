//! Policy commands: `policy check`, `run`, `daemon`, `forget`, `prune`, `pin`, `unpin`,
//! `pins`.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_engine::policy::{
    forget, Clock, ForgetGroup, Policy, Retention, RunState, Span, SystemClock, UtcOffset,
};
use cairn_engine::{DaemonHost, JobRunReport, RunOptions};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::repo_cmd::{open_repo, resolve_restore_point, rfc3339, RepoArgs};

/// Longest the daemon sleeps between passes: a policy edit, a clock jump or a VM appearing
/// under a glob is noticed within this time.
const DAEMON_MAX_SLEEP_SECONDS: i64 = 60;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and print what each job does.
    Check(PolicyCheckArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The policy file (TOML).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy file (TOML).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Only this job.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Run the selected jobs now, ignoring schedules and windows.
    #[arg(long)]
    pub now: bool,
    /// Run-state file (default: $XDG_STATE_HOME/cairn/<policy name>.state.json when
    /// XDG_STATE_HOME is set, else .cairn-state.json next to the policy file).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The policy file (TOML).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Run-state file (default as for `run`).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Take the retention rules of the policy's jobs writing to this repository (each job's
    /// rules apply to the restore points tagged with its name).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
        "keep_within"])]
    pub policy: Option<PathBuf>,
    /// Keep the N newest restore points.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest restore point of each of the N newest hours with one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// ... days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// ... ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// ... months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// ... years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every restore point within this duration of the newest (e.g. 30d, 1y6m, 2w).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Print the decision, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per VM and line: {"vm", "keep":[{"id","time","reasons"}],
    /// "remove":[{"id","time"}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point id (or a unique prefix, or `latest`).
    pub restore_point: String,
    /// Why it is pinned (kept with the pin; shown by `cairn pins`).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point id (or a unique prefix, or `latest`), or the full id of a pin whose
    /// restore point is gone.
    pub restore_point: String,
}

#[derive(Debug, Args)]
pub struct PinsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print a JSON array: [{"id","time","reason","vm","restore_point_time"}].
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Compute and report, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Hours a pack stays marked before it is deleted (must exceed the longest backup).
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    pub grace_hours: u32,
    /// Repack packs with less than this share of live bytes.
    #[arg(long, value_name = "PERCENT", default_value_t = cairn_repo::DEFAULT_REPACK_THRESHOLD_PERCENT)]
    pub repack_threshold: u8,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn policy(a: &PolicyArgs) -> Result<()> {
    match &a.command {
        PolicyCommand::Check(c) => {
            let policy = Policy::load(&c.file)?;
            outln!("{}", policy.describe());
            Ok(())
        }
    }
}

/// The state file: `--state`, else under `$XDG_STATE_HOME/cairn/`, else next to the policy.
fn state_path(policy: &Path, given: Option<&PathBuf>) -> PathBuf {
    if let Some(p) = given {
        return p.clone();
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        let stem = policy
            .file_stem()
            .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
        return PathBuf::from(xdg)
            .join("cairn")
            .join(format!("{stem}.state.json"));
    }
    policy
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(".cairn-state.json")
}

fn load_state(path: &Path) -> Result<RunState> {
    match std::fs::read_to_string(path) {
        Ok(text) => RunState::from_json(&text).with_context(|| path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunState::new()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// Writes the state atomically (temporary file, then rename).
fn save_state(path: &Path, state: &RunState) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, state.to_json()).with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    Ok(())
}

/// Folder of the per-VM lock files: next to the run-state file.
fn lock_dir(state_file: &Path) -> PathBuf {
    state_file.with_extension("locks")
}

/// Holds the state file's own lock (blocking): runners read-modify-write the file one at a
/// time, each writing back only the records it changed.
fn lock_state(state_file: &Path) -> Result<std::fs::File> {
    if let Some(dir) = state_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let path = state_file.with_extension("json.lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    f.lock().with_context(|| path.display().to_string())?;
    Ok(f)
}

/// Writes into the state file the records of `mine` that differ from `base` (what this
/// process changed), keeping every other runner's records.
fn merge_state(state_file: &Path, base: &RunState, mine: &RunState) -> Result<()> {
    let _guard = lock_state(state_file)?;
    let mut disk = load_state(state_file)?;
    let mut changed = false;
    for (job, vm, rec) in mine.records() {
        if base.record(job, vm) != Some(rec) {
            disk.set_record(job, vm, rec.clone());
            changed = true;
        }
    }
    if changed {
        save_state(state_file, &disk)?;
    }
    Ok(())
}

/// Merges one (job, VM) record of `mine` into the state file.
fn merge_record(state_file: &Path, mine: &RunState, job: &str, vm: &str) -> Result<()> {
    let Some(rec) = mine.record(job, vm) else {
        return Ok(());
    };
    let _guard = lock_state(state_file)?;
    let mut disk = load_state(state_file)?;
    disk.set_record(job, vm, rec.clone());
    save_state(state_file, &disk)
}

fn report_line(r: &JobRunReport) -> String {
    format!("{} {}", rfc3339(r.finished), r.summary())
}

pub fn run(a: &RunArgs) -> Result<()> {
    let policy = Policy::load(&a.policy)?;
    if let Some(j) = &a.job {
        if policy.job(j).is_none() {
            bail!("the policy has no job {j:?}");
        }
    }
    let state_file = state_path(&a.policy, a.state.as_ref());
    let base = load_state(&state_file)?;
    let mut state = base.clone();
    let opts = RunOptions {
        now_all: a.now,
        job: a.job.clone(),
        passphrase: None,
        lock_dir: Some(lock_dir(&state_file)),
    };
    // Each run is printed and its record saved as soon as it ends; a skipped run (another
    // process holds the VM) changes nothing.
    let mut save_error = None;
    let reports =
        cairn_engine::run_due_each(&policy, &mut state, &SystemClock, &opts, &mut |r, state| {
            outln!("{}", report_line(r));
            if r.skipped.is_some() {
                return;
            }
            if let Err(e) = merge_record(&state_file, state, &r.job, &r.state_key) {
                save_error.get_or_insert(e);
            }
        });
    merge_state(&state_file, &base, &state)?;
    if let Some(e) = save_error {
        return Err(e);
    }
    if reports.is_empty() {
        eprintln!("nothing due");
    }
    let failed = reports.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        bail!("{failed} of {} runs failed", reports.len());
    }
    Ok(())
}

/// `cairn daemon`'s host: real sleep, state merged into the shared state file.
struct CliDaemon {
    policy: PathBuf,
    state_file: PathBuf,
    /// The state as last read from or written to the file: what this process changed is
    /// the difference.
    base: RunState,
}

impl CliDaemon {
    fn say(&self, what: &str) {
        eprintln!("{} {what}", rfc3339(SystemClock.now()));
    }
}

impl DaemonHost for CliDaemon {
    fn begin_pass(&mut self, state: &mut RunState) {
        // Runs of `cairn run` from cron since the last pass count too.
        match load_state(&self.state_file) {
            Ok(disk) => {
                *state = disk.clone();
                self.base = disk;
            }
            Err(e) => self.say(&format!("cannot read the run state: {e:#}")),
        }
    }

    fn policy(&mut self) -> std::result::Result<Policy, String> {
        Policy::load(&self.policy).map_err(|e| e.to_string())
    }

    fn ran(&mut self, r: &JobRunReport, state: &RunState) {
        eprintln!("{}", report_line(r));
        if r.skipped.is_some() {
            return;
        }
        if let Err(e) = merge_record(&self.state_file, state, &r.job, &r.state_key) {
            self.say(&format!("cannot save the run state: {e:#}"));
        }
    }

    fn pass_done(&mut self, state: &RunState) {
        if let Err(e) = merge_state(&self.state_file, &self.base, state) {
            self.say(&format!("cannot save the run state: {e:#}"));
        }
        self.base = state.clone();
    }

    fn log(&mut self, message: &str) {
        self.say(message);
    }

    fn sleep(&mut self, seconds: i64) -> bool {
        std::thread::sleep(Duration::from_secs(seconds.unsigned_abs()));
        true
    }
}

/// Runs until killed (SIGTERM / Ctrl-C end the process; a run cut short leaves its restore
/// point unwritten and is simply run again). The policy is re-read every pass; VMs another
/// runner (`cairn run` from cron) holds are skipped.
pub fn daemon(a: &DaemonArgs) -> Result<()> {
    let state_file = state_path(&a.policy, a.state.as_ref());
    let mut state = load_state(&state_file)?;
    let clock = SystemClock;
    eprintln!(
        "{} cairn daemon: policy {}, state {}",
        rfc3339(clock.now()),
        a.policy.display(),
        state_file.display()
    );
    let opts = RunOptions {
        lock_dir: Some(lock_dir(&state_file)),
        ..RunOptions::default()
    };
    let mut host = CliDaemon {
        policy: a.policy.clone(),
        state_file,
        base: state.clone(),
    };
    cairn_engine::run_daemon(
        &mut host,
        &mut state,
        &clock,
        &opts,
        DAEMON_MAX_SLEEP_SECONDS,
    );
    Ok(())
}

/// Retention rules from the command line.
fn flag_rules(a: &ForgetArgs) -> Result<Retention> {
    let keep_within = a
        .keep_within
        .as_deref()
        .map(str::parse::<Span>)
        .transpose()
        .context("--keep-within")?;
    Ok(Retention {
        keep_last: a.keep_last.unwrap_or(0),
        keep_hourly: a.keep_hourly.unwrap_or(0),
        keep_daily: a.keep_daily.unwrap_or(0),
        keep_weekly: a.keep_weekly.unwrap_or(0),
        keep_monthly: a.keep_monthly.unwrap_or(0),
        keep_yearly: a.keep_yearly.unwrap_or(0),
        keep_within,
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

pub fn forget_cmd(a: &ForgetArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let now = SystemClock.now();
    // (label, groups): one per job with --policy, one for the command-line rules.
    let mut decisions: Vec<(Option<String>, Vec<ForgetGroup>)> = Vec::new();
    if let Some(path) = &a.policy {
        let policy = Policy::load(path)?;
        let jobs: Vec<_> = policy
            .jobs()
            .into_iter()
            .filter(|j| same_dir(&j.repository, &a.repo.repo))
            .collect();
        if jobs.is_empty() {
            bail!(
                "no job of {} writes to {}",
                path.display(),
                a.repo.repo.display()
            );
        }
        for job in jobs {
            if job.retention.is_empty() {
                continue;
            }
            let points = cairn_engine::restore_points(&repo, Some(&job.name))?;
            let groups = forget(&points, &job.retention, now, job.timezone)
                .with_context(|| format!("job {}", job.name))?;
            decisions.push((Some(job.name.clone()), groups));
        }
    } else {
        let rules = flag_rules(a)?;
        let points = cairn_engine::restore_points(&repo, None)?;
        decisions.push((None, forget(&points, &rules, now, UtcOffset::UTC)?));
    }
    let mut to_remove = Vec::new();
    for (job, groups) in &decisions {
        for g in groups {
            if a.json {
                let mut v = serde_json::to_value(g)?;
                if let (Some(job), Some(o)) = (job, v.as_object_mut()) {
                    o.insert("job".into(), json!(job));
                }
                outln!("{v}");
            } else {
                let of_job = job
                    .as_ref()
                    .map(|j| format!(" (job {j})"))
                    .unwrap_or_default();
                outln!(
                    "vm {}{of_job}: keep {}, remove {}",
                    g.vm,
                    g.keep.len(),
                    g.remove.len()
                );
                for k in &g.keep {
                    outln!(
                        "  keep    {}  {}  {}",
                        short(&k.id),
                        rfc3339(k.time),
                        k.reasons.join(", ")
                    );
                }
                for r in &g.remove {
                    outln!("  remove  {}  {}", short(&r.id), rfc3339(r.time));
                }
            }
        }
        let (_, ids) = cairn_engine::removal_list(groups).map_err(anyhow::Error::msg)?;
        to_remove.extend(ids);
    }
    if a.dry_run {
        eprintln!(
            "dry run: {} restore points would be removed",
            to_remove.len()
        );
    } else {
        repo.remove_restore_points(&to_remove)?;
        eprintln!(
            "removed {} restore points (run `cairn prune` to free their space)",
            to_remove.len()
        );
    }
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub fn prune(a: &PruneArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let opts = cairn_repo::PruneOptions {
        dry_run: a.dry_run,
        grace_seconds: i64::from(a.grace_hours) * 3600,
        repack_threshold_percent: a.repack_threshold.min(100),
        now: None,
    };
    let r = repo
        .prune_keeping(&opts, &find_index_blobs)
        .context("prune")?;
    if a.json {
        outln!(
            "{}",
            json!({"dry_run": a.dry_run, "packs_deleted": r.packs_deleted,
                "packs_repacked": r.packs_repacked, "blobs_removed": r.blobs_removed,
                "bytes_freed": r.bytes_freed, "index_files_rewritten": r.index_files_rewritten,
                "orphans_deleted": r.orphans_deleted, "kept_for_grace": r.kept_for_grace,
                "find_index_blobs_kept": r.cache_blobs_kept, "pins_removed": r.pins_removed})
        );
    } else {
        let verb = if a.dry_run { "would free" } else { "freed" };
        outln!(
            "{verb} {} bytes: {} packs deleted, {} repacked, {} blobs removed, {} index files rewritten, {} orphan packs deleted, {} packs waiting for their grace period, {} find-index blobs kept, {} pins of removed restore points deleted",
            r.bytes_freed,
            r.packs_deleted,
            r.packs_repacked,
            r.blobs_removed,
            r.index_files_rewritten,
            r.orphans_deleted,
            r.kept_for_grace,
            r.cache_blobs_kept,
            r.pins_removed
        );
    }
    Ok(())
}

/// The blob ids the find index's pointer (`cache/find-index`) names, which prune keeps so
/// that the next `find` does not rebuild the index. Read defensively: a missing, oversized
/// or undecodable pointer names nothing (with a warning when it exists), never an error
/// that stops prune; `find` rebuilds an index whose pieces are gone.
fn find_index_blobs(repo: &cairn_repo::Repository) -> Vec<cairn_repo::BlobId> {
    match crate::catalog_cmd::read_find_pointer(repo) {
        Ok(groups) => groups
            .into_iter()
            .flatten()
            .flatten()
            .map(cairn_repo::BlobId)
            .collect(),
        Err(e) => {
            eprintln!(
                "warning: {} unreadable ({e:#}); prune keeps none of the find index's blobs (the next find rebuilds it)",
                crate::catalog_cmd::FIND_INDEX_POINTER
            );
            Vec::new()
        }
    }
}

pub fn pin(a: &PinArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let id = resolve_restore_point(&repo, &a.restore_point)?;
    let p = repo.pin(&id, &a.reason, None).context("pin")?;
    if a.json {
        outln!(
            "{}",
            json!({"id": id.to_string(), "pinned": true, "time": rfc3339(p.time), "reason": p.reason})
        );
    } else {
        outln!("pinned {id}");
    }
    Ok(())
}

pub fn unpin(a: &UnpinArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    // A full id may name a pin whose restore point is gone (a pin/forget race).
    let id = match a.restore_point.parse::<cairn_repo::SnapshotId>() {
        Ok(id) if !repo.has_restore_point(&id)? => id,
        _ => resolve_restore_point(&repo, &a.restore_point)?,
    };
    if repo.unpin(&id).context("unpin")? {
        outln!("unpinned {id}");
    } else {
        bail!("restore point {id} is not pinned");
    }
    Ok(())
}

pub fn pins(a: &PinsArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let pins = repo.pins().context("pins")?;
    let summaries = cairn_engine::snapshots(&repo)?;
    let of = |id: &cairn_repo::SnapshotId| summaries.iter().find(|s| s.id == *id);
    if a.json {
        let arr: Vec<_> = pins
            .iter()
            .map(|p| {
                let s = of(&p.restore_point);
                json!({"id": p.restore_point.to_string(), "time": rfc3339(p.time),
                    "reason": p.reason, "vm": s.map(|s| s.vm_name.clone()),
                    "restore_point_time": s.map(|s| rfc3339(s.time))})
            })
            .collect();
        outln!("{}", serde_json::Value::Array(arr));
        return Ok(());
    }
    outln!(
        "{:<12}  {:<16}  {:<20}  {:<20}  reason",
        "id",
        "vm",
        "restore point time",
        "pinned at"
    );
    for p in &pins {
        let s = of(&p.restore_point);
        let id = p.restore_point.to_string();
        outln!(
            "{:<12}  {:<16}  {:<20}  {:<20}  {}",
            short(&id),
            s.map_or("(gone)", |s| s.vm_name.as_str()),
            s.map_or_else(String::new, |s| rfc3339(s.time)),
            rfc3339(p.time),
            p.reason
        );
    }
    Ok(())
}
