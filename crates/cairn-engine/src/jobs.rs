//! The policy runner: turns a [`Policy`] into backups. For each due (job, VM) pair it runs
//! the pre hook, opens the VM's disk images (free guest blocks skipped per
//! `skip_free_blocks`, reads throttled per `read_mb_per_s`), backs them up as one restore
//! point tagged with the job and class names, verifies it when the plan says so, runs the
//! post hook, then applies the job's retention to that VM's restore points of that job and
//! records the outcome in the [`RunState`]. A failing run never stops the others.
//!
//! `cairn run` calls [`run_due`] once; `cairn daemon` calls it in a loop, sleeping until
//! [`next_due`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_io::{RangeKind, ReadAt};
use cairn_policy::{
    forget, Clock, ForgetGroup, Glob, Granularity, KeyRef, Policy, ResolvedJob, RestorePoint,
    RunOutcome, RunPlan, RunState,
};
use cairn_repo::{Encryption, KeyRing, LocalBackend, Repository, SlotSecret, SnapshotId};

/// The policy crate, re-exported so callers (the CLI) need no separate dependency.
pub use cairn_policy as policy;

use crate::{backup, prepare_vm, BackupOptions, DiskSource, Error, Result, SourceOptions};

/// File name extensions of disk images taken from a VM folder (lower case).
const IMAGE_EXTENSIONS: [&str; 6] = ["vmdk", "vhd", "vhdx", "qcow2", "img", "raw"];
/// Most directory entries a VM glob walk looks at (a typo like `/**` must not walk a
/// whole server).
pub const MAX_GLOB_WALK_ENTRIES: usize = 1_000_000;
/// Deepest a `**` VM glob descends below its literal prefix.
pub const MAX_GLOB_WALK_DEPTH: usize = 32;
/// Most disk images taken from one VM folder.
pub const MAX_DISKS_PER_VM: usize = 64;
/// A hook still running after this long is killed and the run fails (a hung freeze script
/// must not block every later run).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(3600);
/// Bytes read per request when verifying a new restore point.
const VERIFY_READ_BYTES: usize = 4 << 20;

/// How [`run_due`] runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Folder of per-VM lock files (`cairn run` and `cairn daemon` use one next to their
    /// run-state file): a VM another process is backing up is skipped, reported as
    /// `skipped: already running (pid N)`. `None`: no locking (one runner only).
    pub lock_dir: Option<PathBuf>,
    /// Run every selected (job, VM) now, ignoring schedules and windows (`cairn run --now`).
    pub now_all: bool,
    /// Only this job.
    pub job: Option<String>,
    /// Passphrase for jobs that name no `password_file`; `None`: the `CAIRN_PASSWORD`
    /// environment variable (as the CLI).
    pub passphrase: Option<String>,
}

/// What one (job, VM) run did.
#[derive(Debug, Clone)]
pub struct JobRunReport {
    /// Job name.
    pub job: String,
    /// The VM path (a folder or an image file).
    pub vm: String,
    /// The VM's key in the [`RunState`] (the path as a literal glob).
    pub state_key: String,
    /// The VM name recorded in the restore point (folder name or file stem).
    pub vm_name: String,
    /// Start, Unix seconds (the clock's).
    pub started: i64,
    /// End, Unix seconds (the clock's).
    pub finished: i64,
    /// Outcome as recorded in the run state.
    pub outcome: RunOutcome,
    /// Verify / full re-read decisions of this run.
    pub plan: RunPlan,
    /// The new restore point, when the backup wrote one.
    pub restore_point: Option<SnapshotId>,
    /// Bytes read from the images.
    pub bytes_read: u64,
    /// Bytes left unread because the guest marks them free.
    pub bytes_skipped: u64,
    /// Restore points of this VM and job that retention kept.
    pub kept: usize,
    /// Restore points retention removed.
    pub removed: Vec<SnapshotId>,
    /// Things the run could not honour, or foresaw (a run expected to overrun its window).
    pub warnings: Vec<String>,
    /// The pin reason when the policy's `protect` pinned the new restore point.
    pub pinned: Option<String>,
    /// Why the run did not happen (another process runs this VM); the state is untouched.
    pub skipped: Option<String>,
}

impl JobRunReport {
    /// True when the run failed (overran runs succeeded, late).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, RunOutcome::Failed { .. })
    }

    /// One line for logs: `job finance-db, vm /vms/db01: succeeded, restore point …`.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("job {} skipped: {why} (vm {})", self.job, self.vm);
        }
        let what = match &self.outcome {
            RunOutcome::Succeeded => "succeeded".to_owned(),
            RunOutcome::Running => "running".to_owned(),
            RunOutcome::Overran { window_closed } => format!(
                "overran its window (closed at {})",
                cairn_policy::civil::rfc3339(*window_closed)
            ),
            RunOutcome::Failed { message } => format!("FAILED: {message}"),
        };
        let mut s = format!("job {}, vm {}: {what}", self.job, self.vm);
        if let Some(rp) = &self.restore_point {
            s.push_str(&format!(
                ", restore point {rp}, read {} bytes ({} free bytes skipped)",
                self.bytes_read, self.bytes_skipped
            ));
            if self.plan.verify {
                s.push_str(", verified");
            }
            if self.pinned.is_some() {
                s.push_str(", pinned");
            }
            s.push_str(&format!(
                ", retention kept {} removed {}",
                self.kept,
                self.removed.len()
            ));
        }
        for w in &self.warnings {
            s.push_str(&format!("; warning: {w}"));
        }
        s
    }
}

/// A [`ReadAt`] that keeps the average read rate at or below a cap (a token bucket):
/// each read is charged after it completes and the reader sleeps off any debt, so
/// concurrent readers share the budget. After an idle pause, bursts are limited to a
/// tenth of a second of budget.
pub struct ThrottledReader {
    inner: Arc<dyn ReadAt>,
    bytes_per_second: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl std::fmt::Debug for ThrottledReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottledReader")
            .field("size", &self.inner.size())
            .field("bytes_per_second", &self.bytes_per_second)
            .finish()
    }
}

impl ThrottledReader {
    /// Wraps `inner`, capped at `bytes_per_second` (at least 1).
    pub fn new(inner: Arc<dyn ReadAt>, bytes_per_second: u64) -> ThrottledReader {
        // f64 is exact for every rate below 2^53 bytes/s, far beyond any disk.
        let rate = bytes_per_second.max(1) as f64;
        ThrottledReader {
            inner,
            bytes_per_second: rate,
            burst: rate / 10.0,
            // Starts empty: the average from the first byte stays within the cap.
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    fn charge(&self, bytes: usize) {
        let wait = {
            let mut b = match self.bucket.lock() {
                Ok(b) => b,
                Err(p) => p.into_inner(),
            };
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * self.bytes_per_second;
            b.tokens = (b.tokens + refill).min(self.burst);
            b.last = now;
            b.tokens -= bytes as f64;
            if b.tokens < 0.0 {
                -b.tokens / self.bytes_per_second
            } else {
                0.0
            }
        };
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }
}

impl ReadAt for ThrottledReader {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.charge(n);
        Ok(n)
    }
}

/// Wraps `source.reader` in a [`ThrottledReader`] of `mb_per_s` MB/s (10^6 bytes).
pub fn throttle_source(source: &mut DiskSource, mb_per_s: u32) {
    let rate = u64::from(mb_per_s).saturating_mul(1_000_000);
    source.reader = Arc::new(ThrottledReader::new(source.reader.clone(), rate));
}

/// An exclusive lock on one VM, held by this process until dropped: an advisory file lock
/// (`flock` on Linux, through `std::fs::File::try_lock`), released by the kernel when the
/// process dies, so a lock left by a killed runner is taken over without any cleanup. The
/// file holds the holder's pid for the message of the runner that finds it taken.
#[derive(Debug)]
pub struct VmLock {
    _file: std::fs::File,
    path: PathBuf,
}

/// Result of [`VmLock::try_acquire`].
#[derive(Debug)]
pub enum LockAttempt {
    /// The lock is ours.
    Acquired(VmLock),
    /// Another process holds it; its pid when it wrote one.
    Held {
        /// Pid recorded by the holder.
        pid: Option<u32>,
    },
}

/// FNV-1a, 64 bits: a stable, dependency-free digest of a VM key for a lock file name.
fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Longest readable part of a lock file name.
const LOCK_NAME_CHARS: usize = 48;

impl VmLock {
    /// The lock file of `vm` in `dir`: the VM's last path component (safe characters only)
    /// and a digest of the whole key, so that two VMs never share a lock.
    pub fn path_for(dir: &Path, vm: &str) -> PathBuf {
        let base: String = vm
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("vm")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(LOCK_NAME_CHARS)
            .collect();
        dir.join(format!("{base}-{:016x}.lock", fnv1a(vm)))
    }

    /// Takes the lock of `vm` without waiting.
    pub fn try_acquire(dir: &Path, vm: &str) -> Result<LockAttempt> {
        use std::io::Write;
        let io_err = |what: &str, p: &Path, e: std::io::Error| {
            Error::Invalid(format!("lock {what} {}: {e}", p.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io_err("folder", dir, e))?;
        let path = Self::path_for(dir, vm);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
                return Ok(LockAttempt::Held { pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("file", &path, e)),
        }
        file.set_len(0).map_err(|e| io_err("file", &path, e))?;
        writeln!(file, "{}", std::process::id()).map_err(|e| io_err("file", &path, e))?;
        Ok(LockAttempt::Acquired(VmLock { _file: file, path }))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the repository at `path` with a job's key reference, by the CLI's rules: a
/// `password_file` gives the passphrase (trailing newline removed); otherwise the
/// `CAIRN_PASSWORD` environment variable does; a `key_file` is the key ring kept outside the
/// repository (its passphrase from `CAIRN_PASSWORD`). An unencrypted repository needs none.
pub fn open_repository(path: &Path, key: Option<&KeyRef>) -> Result<Repository> {
    open_repository_with(path, key, None)
}

fn open_repository_with(
    path: &Path,
    key: Option<&KeyRef>,
    passphrase: Option<&str>,
) -> Result<Repository> {
    let backend = Arc::new(LocalBackend::new(path)?);
    let config = cairn_repo::read_config(backend.as_ref())?;
    let mut opts = cairn_repo::OpenOptions::default();
    if let Some(KeyRef::KeyFile(k)) = key {
        opts.key_ring = Some(KeyRing::load(k).map_err(cairn_repo::Error::Keys)?);
    }
    let secret = match config.encryption {
        Encryption::None => None,
        _ => Some(SlotSecret::Passphrase(read_passphrase(
            path, key, passphrase,
        )?)),
    };
    Ok(Repository::open(backend, &opts, secret.as_ref())?)
}

fn read_passphrase(repo: &Path, key: Option<&KeyRef>, given: Option<&str>) -> Result<String> {
    if let Some(KeyRef::PasswordFile(f)) = key {
        let s = std::fs::read_to_string(f).map_err(|e| {
            Error::Invalid(format!("cannot read password file {}: {e}", f.display()))
        })?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    std::env::var("CAIRN_PASSWORD").map_err(|_| {
        Error::Invalid(format!(
            "repository {} is encrypted: give the job a password_file or set CAIRN_PASSWORD",
            repo.display()
        ))
    })
}

/// The VM name of a VM path: a folder's name, an image file's stem.
pub fn vm_name(vm: &Path) -> String {
    let name = if vm.is_dir() {
        vm.file_name()
    } else {
        vm.file_stem()
    };
    name.map_or_else(
        || vm.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// True for names of VMDK extent files, which are read through their descriptor:
/// `x-flat.vmdk`, `x-s001.vmdk`, `x-f001.vmdk`, `x-delta.vmdk`, `x-sesparse.vmdk`.
fn is_vmdk_extent_name(stem: &str) -> bool {
    let lower = stem.to_ascii_lowercase();
    if lower.ends_with("-flat") || lower.ends_with("-delta") || lower.ends_with("-sesparse") {
        return true;
    }
    match lower.rsplit_once('-') {
        Some((_, tail)) => {
            tail.len() == 4
                && (tail.starts_with('s') || tail.starts_with('f'))
                && tail[1..].bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// True for a file name a VM folder's disk images have (see [`vm_disk_images`]).
fn is_disk_image_name(path: &Path) -> bool {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        return false;
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    !(ext == "vmdk" && is_vmdk_extent_name(&stem))
}

/// The disk images of a VM: the file itself, or for a folder its images (`*.vmdk`
/// descriptors and monolithic files, `*.vhd`, `*.vhdx`, `*.qcow2`, `*.img`, `*.raw`), sorted
/// by name, without VMDK extent files and without images that are the parent of another
/// image of the folder (a snapshot chain is backed up through its top).
pub fn vm_disk_images(vm: &Path) -> Result<Vec<PathBuf>> {
    if !vm.is_dir() {
        if !vm.exists() {
            return Err(Error::Invalid(format!(
                "VM {} does not exist",
                vm.display()
            )));
        }
        return Ok(vec![vm.to_path_buf()]);
    }
    let entries = std::fs::read_dir(vm)
        .map_err(|e| Error::Invalid(format!("cannot list VM folder {}: {e}", vm.display())))?;
    let mut images = Vec::new();
    for entry in entries.take(MAX_GLOB_WALK_ENTRIES) {
        let entry = entry
            .map_err(|e| Error::Invalid(format!("cannot list VM folder {}: {e}", vm.display())))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if is_disk_image_name(&path) {
            images.push(path);
        }
    }
    images.sort();
    if images.len() > 1 {
        // Drop the parents of other images (snapshot chains): only the top is backed up.
        let mut parents = BTreeSet::new();
        for img in &images {
            if let Ok(disk) =
                cairn_vdisk::VirtualDisk::open(img, &cairn_vdisk::OpenOptions::default())
            {
                for layer in disk.layers().iter().skip(1) {
                    let p = layer
                        .path
                        .canonicalize()
                        .unwrap_or_else(|_| layer.path.clone());
                    parents.insert(p);
                }
            }
        }
        images.retain(|img| {
            let p = img.canonicalize().unwrap_or_else(|_| img.clone());
            !parents.contains(&p)
        });
    }
    if images.is_empty() {
        return Err(Error::Invalid(format!(
            "VM folder {} holds no disk image (*.vmdk, *.vhd, *.vhdx, *.qcow2, *.img, *.raw)",
            vm.display()
        )));
    }
    if images.len() > MAX_DISKS_PER_VM {
        return Err(Error::Invalid(format!(
            "VM folder {} holds {} disk images, more than the limit of {MAX_DISKS_PER_VM}",
            vm.display(),
            images.len()
        )));
    }
    Ok(images)
}

/// Expands a job's `vms` globs to VM paths (sorted, no duplicates). A pattern without
/// wildcards is taken as is, existing or not (a missing VM fails its runs visibly); a glob
/// is matched against the file system below its literal prefix.
pub fn expand_vms(job: &ResolvedJob) -> Vec<String> {
    let mut out = BTreeSet::new();
    for g in &job.vms {
        if g.is_literal() {
            out.insert(g.as_str().to_owned());
        } else {
            // A glob like `/vms/*.vmdk` must not turn extent files into VMs of their own.
            for p in walk_glob(g) {
                if Path::new(&p).is_dir() || is_disk_image_name(Path::new(&p)) {
                    out.insert(p);
                }
            }
        }
    }
    out.into_iter().collect()
}

fn walk_glob(g: &Glob) -> Vec<String> {
    let text = g.as_str();
    let comps: Vec<&str> = text.split('/').collect();
    let wild = |c: &str| c.contains(['*', '?', '[', '\\']);
    let first_wild = comps.iter().position(|c| wild(c)).unwrap_or(comps.len());
    let prefix = comps[..first_wild].join("/");
    let depth = if text.contains("**") {
        MAX_GLOB_WALK_DEPTH
    } else {
        comps.len() - first_wild
    };
    let mut found = Vec::new();
    let mut budget = MAX_GLOB_WALK_ENTRIES;
    // (directory as written, remaining depth)
    let mut stack = vec![(prefix, depth)];
    while let Some((dir, left)) = stack.pop() {
        if left == 0 {
            continue;
        }
        let fs_dir = if dir.is_empty() { "." } else { dir.as_str() };
        let Ok(entries) = std::fs::read_dir(fs_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if budget == 0 {
                tracing::warn!("VM glob {text}: stopped after {MAX_GLOB_WALK_ENTRIES} entries");
                return found;
            }
            budget -= 1;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if dir.is_empty() {
                name
            } else if dir.ends_with('/') {
                format!("{dir}{name}")
            } else {
                format!("{dir}/{name}")
            };
            if g.matches(&path) {
                found.push(path.clone());
            }
            // Only real directories are descended into: no symlink loops.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((path, left - 1));
            }
        }
    }
    found
}

/// Backslash-escapes glob wildcards so an expanded path is a literal [`Glob`].
fn literal_glob(path: &str) -> Option<Glob> {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    Glob::from_str(&s).ok()
}

/// The policy's jobs (only `only_job` when given) with their VM globs expanded, plus for
/// each job the map from the VM key used in the run state to the VM path.
fn expanded_jobs(
    policy: &Policy,
    only_job: Option<&str>,
) -> Vec<(ResolvedJob, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for job in policy.jobs() {
        if only_job.is_some_and(|j| j != job.name) {
            continue;
        }
        let mut keys = BTreeMap::new();
        let mut globs = Vec::new();
        for vm in expand_vms(&job) {
            if let Some(g) = literal_glob(&vm) {
                keys.insert(g.as_str().to_owned(), vm);
                globs.push(g);
            } else {
                tracing::warn!("job {}: VM path {vm:?} cannot be used", job.name);
            }
        }
        out.push((job.with_vms(globs), keys));
    }
    out
}

/// The earliest time any (job, VM) of `policy` is next due after its last start (`now` for
/// one that never ran). `None` when the policy has no VM.
pub fn next_due(policy: &Policy, state: &RunState, now: i64) -> Option<i64> {
    let mut next: Option<i64> = None;
    for (job, _) in expanded_jobs(policy, None) {
        for vm in &job.vms {
            let t = match state.record(&job.name, vm.as_str()) {
                Some(r) => job.schedule.next_after(r.last_start),
                None => now,
            };
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    next
}

/// What [`run_daemon`] needs from its surroundings: the policy (re-read every pass), a
/// place to log and persist, and a way to wait. `cairn daemon` sleeps for real; a test's
/// host advances a [`cairn_policy::FakeClock`] and stops after a simulated month.
pub trait DaemonHost {
    /// A pass starts: refresh `state` from wherever other runners write theirs (no-op by
    /// default).
    fn begin_pass(&mut self, state: &mut RunState) {
        let _ = state;
    }
    /// The policy for the next pass (re-read so an edit takes effect without a restart).
    fn policy(&mut self) -> std::result::Result<Policy, String>;
    /// A run ended (or was skipped): log it, persist the state.
    fn ran(&mut self, report: &JobRunReport, state: &RunState);
    /// A pass ended.
    fn pass_done(&mut self, state: &RunState);
    /// Something to log (policy errors).
    fn log(&mut self, message: &str);
    /// Waits `seconds` (at least 1); returns false to stop the daemon.
    fn sleep(&mut self, seconds: i64) -> bool;
}

/// The daemon: passes of [`run_due_each`] (the policy re-read each time), sleeping until
/// the next (job, VM) is due but never longer than `max_sleep` seconds (so a policy edit,
/// a clock jump or a new VM under a glob is noticed), until the host's `sleep` says stop.
pub fn run_daemon(
    host: &mut dyn DaemonHost,
    state: &mut RunState,
    clock: &dyn Clock,
    opts: &RunOptions,
    max_sleep: i64,
) {
    let max_sleep = max_sleep.max(1);
    loop {
        host.begin_pass(state);
        let next = match host.policy() {
            Ok(policy) => {
                let reports = run_due_each(&policy, state, clock, opts, &mut |r, st| {
                    host.ran(r, st);
                });
                host.pass_done(state);
                // A finished run may unblock another job on the same VM: pass again soon.
                if reports.iter().all(|r| r.skipped.is_some()) {
                    next_due(&policy, state, clock.now())
                } else {
                    Some(clock.now().saturating_add(1))
                }
            }
            Err(e) => {
                host.log(&format!("policy error: {e}"));
                None
            }
        };
        let now = clock.now();
        // A pass that ran nothing leaves past times only to pairs held back by their window
        // (or by another process's lock): check again after the full pause, not spinning.
        let wait = match next {
            Some(t) if t > now => t.saturating_sub(now),
            _ => max_sleep,
        }
        .clamp(1, max_sleep);
        if !host.sleep(wait) {
            return;
        }
    }
}

/// Runs what is due now (everything selected with `now_all`) once, one run per VM at a
/// time (jobs sharing a VM run one after the other, first job by name first), and records
/// each outcome in `state`. Records left `Running` by a process that died
/// are closed as failed first (this runner is the only one working on `state`).
pub fn run_due(
    policy: &Policy,
    state: &mut RunState,
    clock: &dyn Clock,
    opts: &RunOptions,
) -> Vec<JobRunReport> {
    run_due_each(policy, state, clock, opts, &mut |_, _| {})
}

/// [`run_due`], calling `each` after every run with its report and the updated state (to
/// log the run and persist the state at once: a runner killed mid-pass then repeats only
/// the run it was in).
pub fn run_due_each(
    policy: &Policy,
    state: &mut RunState,
    clock: &dyn Clock,
    opts: &RunOptions,
    each: &mut dyn FnMut(&JobRunReport, &RunState),
) -> Vec<JobRunReport> {
    let jobs = expanded_jobs(policy, opts.job.as_deref());
    let now = clock.now();
    for (job, _) in &jobs {
        for vm in &job.vms {
            // With locks, a run another live process holds is not "interrupted".
            let held_elsewhere = opts.lock_dir.as_deref().is_some_and(|dir| {
                matches!(
                    VmLock::try_acquire(dir, vm.as_str()),
                    Ok(LockAttempt::Held { .. })
                )
            });
            if !held_elsewhere
                && state
                    .record(&job.name, vm.as_str())
                    .is_some_and(|r| r.outcome == RunOutcome::Running)
            {
                state.record_finish(
                    &job.name,
                    vm.as_str(),
                    now,
                    RunOutcome::Failed {
                        message: "interrupted: the runner stopped during the run".into(),
                    },
                );
            }
        }
    }
    let resolved: Vec<ResolvedJob> = jobs.iter().map(|(j, _)| j.clone()).collect();
    let mut repos: BTreeMap<String, std::result::Result<Arc<Repository>, String>> = BTreeMap::new();
    let mut reports = Vec::new();
    // Pairs run in this call: each runs at most once. Passes repeat because `due_jobs`
    // offers one job per VM at a time; a second job on a VM is due once the first is done.
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        let due: Vec<(String, String)> = if opts.now_all {
            resolved
                .iter()
                .flat_map(|j| {
                    j.vms
                        .iter()
                        .map(|v| (j.name.clone(), v.as_str().to_owned()))
                })
                .collect()
        } else {
            cairn_policy::due_jobs(&resolved, state, now)
                .into_iter()
                .map(|d| (d.job, d.vm))
                .collect()
        };
        let due: Vec<(String, String)> = due.into_iter().filter(|d| !done.contains(d)).collect();
        if due.is_empty() {
            break;
        }
        for (job_name, vm_key) in due {
            done.insert((job_name.clone(), vm_key.clone()));
            let Some((job, keys)) = jobs.iter().find(|(j, _)| j.name == job_name) else {
                continue;
            };
            let vm_path = keys.get(&vm_key).cloned().unwrap_or_else(|| vm_key.clone());
            let repo = repos
                .entry(job.name.clone())
                .or_insert_with(|| {
                    open_repository_with(
                        &job.repository,
                        job.key.as_ref(),
                        opts.passphrase.as_deref(),
                    )
                    .map(Arc::new)
                    .map_err(|e| format!("repository {}: {e}", job.repository.display()))
                })
                .clone();
            let _lock = match opts.lock_dir.as_deref() {
                None => None,
                Some(dir) => match VmLock::try_acquire(dir, &vm_key) {
                    Ok(LockAttempt::Acquired(l)) => Some(l),
                    Ok(LockAttempt::Held { pid }) => {
                        let who =
                            pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
                        let report = skipped_report(
                            job,
                            &vm_key,
                            &vm_path,
                            clock.now(),
                            format!("already running ({who})"),
                        );
                        tracing::info!("{}", report.summary());
                        each(&report, state);
                        reports.push(report);
                        continue;
                    }
                    Err(e) => {
                        // A lock that cannot be taken must not let two runs overlap.
                        let report = skipped_report(
                            job,
                            &vm_key,
                            &vm_path,
                            clock.now(),
                            format!("cannot take the VM lock: {e}"),
                        );
                        tracing::warn!("{}", report.summary());
                        each(&report, state);
                        reports.push(report);
                        continue;
                    }
                },
            };
            let report = run_one(job, &vm_key, &vm_path, repo, state, clock);
            tracing::info!("{}", report.summary());
            each(&report, state);
            reports.push(report);
        }
    }
    reports
}

fn skipped_report(
    job: &ResolvedJob,
    vm_key: &str,
    vm_path: &str,
    now: i64,
    why: String,
) -> JobRunReport {
    JobRunReport {
        job: job.name.clone(),
        vm: vm_path.to_owned(),
        state_key: vm_key.to_owned(),
        vm_name: vm_name(Path::new(vm_path)),
        started: now,
        finished: now,
        outcome: RunOutcome::Running,
        plan: RunPlan {
            verify: false,
            full_read: false,
        },
        restore_point: None,
        bytes_read: 0,
        bytes_skipped: 0,
        kept: 0,
        removed: Vec::new(),
        warnings: Vec::new(),
        pinned: None,
        skipped: Some(why),
    }
}

/// A warning when the previous run of (job, VM) took so long that this one, started at
/// `started`, would end after the job's window closes.
fn window_forecast(
    job: &ResolvedJob,
    state: &RunState,
    vm_key: &str,
    started: i64,
) -> Option<String> {
    let w = job.window?;
    let rec = state.record(&job.name, vm_key)?;
    let took = rec.last_end?.checked_sub(rec.last_start)?;
    let closes = w.closes_after(started, job.timezone);
    if took > 0 && started.saturating_add(took) > closes {
        Some(format!(
            "the last run took {took} s: at that pace this run ends after its window closes at {}",
            cairn_policy::civil::rfc3339(closes)
        ))
    } else {
        None
    }
}

fn run_one(
    job: &ResolvedJob,
    vm_key: &str,
    vm_path: &str,
    repo: std::result::Result<Arc<Repository>, String>,
    state: &mut RunState,
    clock: &dyn Clock,
) -> JobRunReport {
    let started = clock.now();
    let plan = state.plan(job, vm_key, started);
    let forecast = window_forecast(job, state, vm_key, started);
    if let Some(f) = &forecast {
        tracing::warn!("job {}, vm {vm_path}: {f}", job.name);
    }
    state.record_start(&job.name, vm_key, started, plan);
    let path = Path::new(vm_path);
    let mut report = JobRunReport {
        job: job.name.clone(),
        vm: vm_path.to_owned(),
        state_key: vm_key.to_owned(),
        vm_name: vm_name(path),
        started,
        finished: started,
        outcome: RunOutcome::Running,
        plan,
        restore_point: None,
        bytes_read: 0,
        bytes_skipped: 0,
        kept: 0,
        removed: Vec::new(),
        warnings: forecast.into_iter().collect(),
        pinned: None,
        skipped: None,
    };
    let mut result = match &job.pre_hook {
        Some(argv) => run_hook("pre_hook", argv, &job.name, vm_path),
        None => Ok(()),
    };
    if result.is_ok() {
        result = match &repo {
            Ok(repo) => backup_and_retain(job, path, repo, started, plan, &mut report),
            Err(e) => Err(e.clone()),
        };
    }
    if let Some(argv) = &job.post_hook {
        if let Err(e) = run_hook("post_hook", argv, &job.name, vm_path) {
            result = Err(match result {
                Ok(()) => e,
                Err(first) => format!("{first}; {e}"),
            });
        }
    }
    let finished = clock.now();
    report.finished = finished;
    report.outcome = match result {
        Err(message) => RunOutcome::Failed { message },
        Ok(()) => match job.window {
            Some(w) if finished > w.closes_after(started, job.timezone) => RunOutcome::Overran {
                window_closed: w.closes_after(started, job.timezone),
            },
            _ => RunOutcome::Succeeded,
        },
    };
    state.record_finish(&job.name, vm_key, finished, report.outcome.clone());
    report
}

fn backup_and_retain(
    job: &ResolvedJob,
    vm: &Path,
    repo: &Arc<Repository>,
    started: i64,
    plan: RunPlan,
    report: &mut JobRunReport,
) -> std::result::Result<(), String> {
    let source_opts = SourceOptions {
        skip_free: job.skip_free_blocks,
        catalog: job.granularity == Granularity::ImageAndCatalog,
        exclude: job.exclude.iter().map(|g| g.as_str().to_owned()).collect(),
        read_limit_mb_per_s: job.throttle.read_mb_per_s,
        ..Default::default()
    };
    let to_usize = |v: Option<u32>| v.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut opts = BackupOptions {
        tags: vec![job.name.clone(), job.class.clone()],
        time: Some(started),
        threads: to_usize(job.throttle.threads),
        readers: to_usize(job.throttle.io_concurrency),
        no_incremental: plan.full_read,
        ..Default::default()
    };
    let (b, disks) = if cairn_bundle::is_bundle(vm) {
        // A VM bundle (VMware, libvirt, Hyper-V, OVF): configuration stored with the
        // restore point, disks found from it.
        let bundle_opts = cairn_bundle::OpenOptions {
            // Policies name VMs deliberately; libvirt pools keep disks outside the folder.
            allow_outside: true,
            ..Default::default()
        };
        let bundle = cairn_bundle::Bundle::open(vm, &bundle_opts)
            .map_err(|e| format!("reading the VM bundle {}: {e}", vm.display()))?;
        let r = crate::backup_bundle(repo, &bundle, Some(&report.vm_name), &source_opts, &opts)
            .map_err(|e| format!("backup: {e}"))?;
        report.bytes_skipped = r.bytes_skipped;
        (r.backup, bundle.disks.len())
    } else {
        let images = vm_disk_images(vm).map_err(|e| e.to_string())?;
        let image_refs: Vec<&Path> = images.iter().map(PathBuf::as_path).collect();
        let prepared = prepare_vm(repo, &report.vm_name, &image_refs, &source_opts)
            .map_err(|e| format!("reading the disks of {}: {e}", vm.display()))?;
        report.bytes_skipped = prepared.bytes_skipped;
        let sources = prepared.sources;
        opts.volumes = prepared.volumes;
        let b =
            backup(repo, &report.vm_name, &sources, &opts).map_err(|e| format!("backup: {e}"))?;
        (b, sources.len())
    };
    report.restore_point = Some(b.restore_point);
    report.bytes_read = b.bytes_read;
    if plan.verify {
        verify_restore_point(repo, &b.restore_point, disks)
            .map_err(|e| format!("verifying restore point {}: {e}", b.restore_point))?;
    }
    if let Some(every) = job.protect {
        report.pinned = auto_pin(repo, job, every, &report.vm_name, &b.restore_point, started)
            .map_err(|e| format!("pinning restore point {}: {e}", b.restore_point))?;
    }
    if job.retention.is_empty() {
        report.kept = job_points(repo, &report.vm_name, &job.name)
            .map(|p| p.len())
            .unwrap_or(0);
        return Ok(());
    }
    let points = job_points(repo, &report.vm_name, &job.name).map_err(|e| e.to_string())?;
    let groups = forget(&points, &job.retention, started, job.timezone)
        .map_err(|e| format!("retention: {e}"))?;
    let (kept, remove) = removal_list(&groups)?;
    repo.remove_restore_points(&remove)
        .map_err(|e| format!("retention: removing restore points: {e}"))?;
    report.kept = kept;
    report.removed = remove;
    Ok(())
}

/// `protect`: pins `rp` unless a restore point of this VM and job in the same period is
/// pinned already. Returns the reason when it pinned.
fn auto_pin(
    repo: &Repository,
    job: &ResolvedJob,
    every: cairn_policy::Protect,
    vm_name: &str,
    rp: &SnapshotId,
    time: i64,
) -> Result<Option<String>> {
    let period = every.period(time, job.timezone);
    let points = job_points(repo, vm_name, &job.name)?;
    if points
        .iter()
        .any(|p| p.pinned && every.period(p.time, job.timezone) == period)
    {
        return Ok(None);
    }
    let reason = format!(
        "policy: job {} protect = \"{}\", first restore point of {}",
        job.name,
        every.as_str(),
        every.label(time, job.timezone)
    );
    repo.pin(rp, &reason, Some(time))?;
    Ok(Some(reason))
}

/// Reads every stored byte of a restore point back (decrypted and hash-checked by
/// [`crate::RestoredDisk`]).
fn verify_restore_point(repo: &Arc<Repository>, id: &SnapshotId, disks: usize) -> Result<()> {
    let mut buf = vec![0u8; VERIFY_READ_BYTES];
    for i in 0..disks {
        let disk = crate::RestoredDisk::open(repo.clone(), id, i)?;
        let map = disk.allocation_map();
        for run in map.ranges_of(RangeKind::Data) {
            let mut off = run.offset;
            while off < run.end() {
                let n = usize::try_from((run.end() - off).min(VERIFY_READ_BYTES as u64))
                    .unwrap_or(VERIFY_READ_BYTES);
                disk.read_exact_at(&mut buf[..n], off)
                    .map_err(|source| Error::Read {
                        disk: format!("restore point {id} disk {i}"),
                        offset: off,
                        source,
                    })?;
                off += n as u64;
            }
        }
    }
    Ok(())
}

/// The restore points of `vm_name` tagged with `job` (those the job's retention governs).
fn job_points(repo: &Repository, vm_name: &str, job: &str) -> Result<Vec<RestorePoint>> {
    let pinned = repo.pinned_ids()?;
    Ok(crate::snapshots(repo)?
        .into_iter()
        .filter(|s| s.vm_name == vm_name && s.tags.iter().any(|t| t == job))
        .map(|s| RestorePoint {
            id: s.id.to_string(),
            time: s.time,
            time_nanos: s.time_nanos.unwrap_or(0),
            vm: s.vm_name,
            pinned: pinned.contains(&s.id),
        })
        .collect())
}

/// Counts kept points and parses the ids to remove.
pub fn removal_list(
    groups: &[ForgetGroup],
) -> std::result::Result<(usize, Vec<SnapshotId>), String> {
    let mut kept = 0;
    let mut remove = Vec::new();
    for g in groups {
        kept += g.keep.len();
        for r in &g.remove {
            let id = SnapshotId::from_str(&r.id)
                .map_err(|e| format!("retention: restore point id {:?}: {e}", r.id))?;
            remove.push(id);
        }
    }
    Ok((kept, remove))
}

/// Restore points of a repository as retention input (grouped by VM name, pinned ones
/// marked), optionally only those carrying `tag`.
pub fn restore_points(repo: &Repository, tag: Option<&str>) -> Result<Vec<RestorePoint>> {
    let pinned = repo.pinned_ids()?;
    Ok(crate::snapshots(repo)?
        .into_iter()
        .filter(|s| tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
        .map(|s| RestorePoint {
            id: s.id.to_string(),
            time: s.time,
            time_nanos: s.time_nanos.unwrap_or(0),
            vm: s.vm_name,
            pinned: pinned.contains(&s.id),
        })
        .collect())
}

/// Runs a hook (argv, no shell) with `CAIRN_JOB` / `CAIRN_VM`, its output sent to stderr.
fn run_hook(what: &str, argv: &[String], job: &str, vm: &str) -> std::result::Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(args)
        .env("CAIRN_JOB", job)
        .env("CAIRN_VM", vm)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .spawn()
        .map_err(|e| format!("{what} {program:?}: cannot start: {e}"))?;
    let deadline = Instant::now() + HOOK_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} {program:?} failed: {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} {program:?} killed after {} s",
                    HOOK_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("{what} {program:?}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmdk_extent_names() {
        for n in [
            "disk-flat",
            "disk-s001",
            "disk-f012",
            "disk-000001-delta",
            "x-sesparse",
        ] {
            assert!(is_vmdk_extent_name(n), "{n}");
        }
        for n in ["disk", "disk-000001", "my-server", "a-s01", "a-sabc"] {
            assert!(!is_vmdk_extent_name(n), "{n}");
        }
    }

    #[test]
    fn folder_images_skip_extents_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "b.vmdk",
            "b-flat.vmdk",
            "b-s001.vmdk",
            "a.qcow2",
            "notes.txt",
            "c.IMG",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let imgs = vm_disk_images(dir.path()).unwrap();
        let names: Vec<String> = imgs
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.qcow2", "b.vmdk", "c.IMG"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(vm_disk_images(empty.path()).is_err());
    }

    #[test]
    fn globs_match_images_and_folders_not_extents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        for f in [
            "pc1.vmdk",
            "pc1-flat.vmdk",
            "pc2.vmdk",
            "pc2-s001.vmdk",
            "x.vmdk.lck",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("vmfolder.vmdk")).unwrap();
        let policy = Policy::parse(&format!(
            "[class.c]\nschedule = \"hourly\"\nrepository = \"/r\"\n\
             [job.j]\nclass = \"c\"\nvms = [\"{root}/*.vmdk\", \"{root}/none*\"]\n"
        ))
        .unwrap();
        let vms = expand_vms(&policy.jobs()[0]);
        assert_eq!(
            vms,
            [
                format!("{root}/pc1.vmdk"),
                format!("{root}/pc2.vmdk"),
                format!("{root}/vmfolder.vmdk")
            ]
        );
    }

    #[test]
    fn literal_glob_escapes() {
        let g = literal_glob("/vms/a[1]*?").unwrap();
        assert!(g.is_literal());
        assert!(g.matches("/vms/a[1]*?"));
    }

    #[test]
    fn throttle_charges_reads() {
        let data: Arc<dyn ReadAt> = Arc::new(vec![7u8; 1000]);
        let t = ThrottledReader::new(data, u64::MAX);
        let mut buf = [0u8; 100];
        assert_eq!(t.read_at(&mut buf, 950).unwrap(), 50);
        assert_eq!(t.size(), 1000);
    }
}
