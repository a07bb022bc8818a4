//! Policy commands: `policy check`, `run`, `daemon`, `forget`, `prune`.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_engine::policy::{
    forget, Clock, ForgetGroup, Policy, Retention, RunState, Span, SystemClock, UtcOffset,
};
use cairn_engine::{JobRunReport, RunOptions};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::repo_cmd::{open_repo, rfc3339, RepoArgs};

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
    let mut state = load_state(&state_file)?;
    let opts = RunOptions {
        now_all: a.now,
        job: a.job.clone(),
        passphrase: None,
    };
    // Each run is printed and the state saved as soon as it ends.
    let mut save_error = None;
    let reports =
        cairn_engine::run_due_each(&policy, &mut state, &SystemClock, &opts, &mut |r, state| {
            outln!("{}", report_line(r));
            if let Err(e) = save_state(&state_file, state) {
                save_error.get_or_insert(e);
            }
        });
    save_state(&state_file, &state)?;
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

/// Runs until killed (SIGTERM / Ctrl-C end the process; a run cut short leaves its restore
/// point unwritten and is simply run again). The policy is re-read every pass.
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
    loop {
        let now = clock.now();
        // A policy broken while the daemon runs is logged; the daemon keeps trying.
        let next = match Policy::load(&a.policy) {
            Ok(policy) => {
                let reports = cairn_engine::run_due_each(
                    &policy,
                    &mut state,
                    &clock,
                    &RunOptions::default(),
                    &mut |r, state| {
                        eprintln!("{}", report_line(r));
                        if let Err(e) = save_state(&state_file, state) {
                            eprintln!("{} cannot save the run state: {e:#}", rfc3339(clock.now()));
                        }
                    },
                );
                if let Err(e) = save_state(&state_file, &state) {
                    eprintln!("{} cannot save the run state: {e:#}", rfc3339(clock.now()));
                }
                // A finished run may unblock another job on the same VM: pass again soon.
                if reports.is_empty() {
                    cairn_engine::next_due(&policy, &state, clock.now())
                } else {
                    Some(clock.now().saturating_add(1))
                }
            }
            Err(e) => {
                eprintln!("{} policy error: {e}", rfc3339(now));
                None
            }
        };
        let now = clock.now();
        // A pass that ran nothing leaves past times only to pairs held back by their
        // window: check again after the full pause rather than spinning.
        let wait = match next {
            Some(t) if t > now => t.saturating_sub(now),
            _ => DAEMON_MAX_SLEEP_SECONDS,
        }
        .clamp(1, DAEMON_MAX_SLEEP_SECONDS);
        std::thread::sleep(Duration::from_secs(wait.unsigned_abs()));
    }
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
    let r = cairn_repo::prune(&repo, &opts).context("prune")?;
    if a.json {
        outln!(
            "{}",
            json!({"dry_run": a.dry_run, "packs_deleted": r.packs_deleted,
                "packs_repacked": r.packs_repacked, "blobs_removed": r.blobs_removed,
                "bytes_freed": r.bytes_freed, "index_files_rewritten": r.index_files_rewritten,
                "orphans_deleted": r.orphans_deleted, "kept_for_grace": r.kept_for_grace})
        );
    } else {
        let verb = if a.dry_run { "would free" } else { "freed" };
        outln!(
            "{verb} {} bytes: {} packs deleted, {} repacked, {} blobs removed, {} index files rewritten, {} orphan packs deleted, {} packs waiting for their grace period",
            r.bytes_freed,
            r.packs_deleted,
            r.packs_repacked,
            r.blobs_removed,
            r.index_files_rewritten,
            r.orphans_deleted,
            r.kept_for_grace
        );
    }
    Ok(())
}
