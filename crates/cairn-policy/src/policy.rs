//! The policy file: `[class.NAME]` protection classes and `[job.NAME]` jobs (TOML).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::civil::UtcOffset;
use crate::glob::Glob;
use crate::retention::{Protect, Retention};
use crate::schedule::{Schedule, Window};
use crate::span::Span;
use crate::Error;

/// Largest policy file accepted (a policy with thousands of jobs is still far below this).
pub const MAX_POLICY_BYTES: usize = 4 << 20;
/// Most classes or jobs in one policy.
pub const MAX_ENTRIES: usize = 10_000;
/// Most VM entries in one job, exclusion globs in one class, or arguments in one hook.
pub const MAX_LIST_LEN: usize = 100_000;
/// Most positional readers (`io_concurrency`) or worker threads (`threads`) one backup runs.
/// The engine's backup pipeline sizes its buffer pool by these and clamps them to this bound,
/// and `cairn backup --io-concurrency/--threads` refuse larger values, so a policy asking for
/// more is refused too rather than silently getting 64.
pub const MAX_PIPELINE_WIDTH: u16 = 64;

/// How a run reads the source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupMode {
    /// Read only what changed since the previous restore point when the source can tell.
    Incremental,
    /// Re-read the whole image on every run.
    Full,
}

/// What a restore point records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Granularity {
    /// Disk image plus a catalog of guest files (file-level restore and search).
    #[serde(rename = "image+catalog")]
    ImageAndCatalog,
    /// Disk image only.
    #[serde(rename = "image")]
    Image,
}

/// Where the repository key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRef {
    /// A key file.
    KeyFile(PathBuf),
    /// A file holding the repository password.
    PasswordFile(PathBuf),
}

/// I/O limits of a run; `None` = unlimited / engine default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throttle {
    /// Read bandwidth cap in MB/s (10^6 bytes per second).
    pub read_mb_per_s: Option<u32>,
    /// Outstanding reads at a time.
    pub io_concurrency: Option<u32>,
    /// Worker threads (hashing, compression, encryption).
    pub threads: Option<u32>,
}

/// Every setting a class can give and a job can override, as written (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    // Job-only keys (rejected inside a class).
    class: Option<Spanned<String>>,
    vms: Option<Spanned<Vec<Spanned<String>>>>,

    schedule: Option<Schedule>,
    backup: Option<BackupMode>,
    verify_every: Option<Span>,
    full_reread_every: Option<Span>,
    granularity: Option<Granularity>,
    exclude: Option<Spanned<Vec<Spanned<String>>>>,
    skip_free_blocks: Option<bool>,

    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Span>,
    protect: Option<Protect>,

    read_mb_per_s: Option<Spanned<u32>>,
    io_concurrency: Option<Spanned<u32>>,
    threads: Option<Spanned<u32>>,
    window: Option<Window>,

    key_file: Option<Spanned<PathBuf>>,
    password_file: Option<Spanned<PathBuf>>,
    repository: Option<Spanned<PathBuf>>,
    pre_hook: Option<Spanned<Vec<String>>>,
    post_hook: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    class: BTreeMap<String, Spanned<Settings>>,
    #[serde(default)]
    job: BTreeMap<String, Spanned<Settings>>,
}

/// Picks the job's value when it sets one, else the class's.
macro_rules! pick {
    ($job:expr, $class:expr, $field:ident) => {
        $job.$field.clone().or_else(|| $class.$field.clone())
    };
}

/// A job with its class's settings merged in (job fields win, field by field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedJob {
    /// Job name (`[job.NAME]`).
    pub name: String,
    /// Class name.
    pub class: String,
    /// VM folders or image files, as written (globs are expanded by the caller).
    pub vms: Vec<Glob>,
    /// When it runs.
    pub schedule: Schedule,
    /// Incremental or full.
    pub backup: BackupMode,
    /// How often a run also verifies the restore point end to end (`None`: never).
    pub verify_every: Option<Span>,
    /// How often an incremental run re-reads the whole image anyway (`None`: never).
    pub full_reread_every: Option<Span>,
    /// Image plus catalog, or image only.
    pub granularity: Granularity,
    /// Guest paths left out.
    pub exclude: Vec<Glob>,
    /// Skip blocks the guest file system marks free (default true).
    pub skip_free_blocks: bool,
    /// Retention rules.
    pub retention: Retention,
    /// Pin the first restore point of each week, month or year automatically.
    pub protect: Option<Protect>,
    /// I/O limits.
    pub throttle: Throttle,
    /// Allowed wall-clock window (`None`: any time).
    pub window: Option<Window>,
    /// Repository key.
    pub key: Option<KeyRef>,
    /// Target repository path.
    pub repository: PathBuf,
    /// Command (argv, no shell) run before the backup; a failure skips the backup.
    pub pre_hook: Option<Vec<String>>,
    /// Command (argv, no shell) run after the backup, whatever its outcome.
    pub post_hook: Option<Vec<String>>,
    /// Fixed offset the schedule and window are read in.
    pub timezone: UtcOffset,
}

impl ResolvedJob {
    /// The same job with `vms` replaced (e.g. the caller's expansion of its globs).
    pub fn with_vms(mut self, vms: Vec<Glob>) -> ResolvedJob {
        self.vms = vms;
        self
    }

    /// One-paragraph description for `cairn policy check`.
    pub fn describe(&self) -> String {
        let vms: Vec<&str> = self.vms.iter().map(Glob::as_str).collect();
        let mut s = format!(
            "job {}: class {}, VMs [{}], {}",
            self.name,
            self.class,
            vms.join(", "),
            self.schedule
        );
        match self.backup {
            BackupMode::Incremental => s.push_str(", incremental"),
            BackupMode::Full => s.push_str(", full"),
        }
        match self.verify_every {
            Some(v) => s.push_str(&format!(", verify every {v}")),
            None => s.push_str(", no periodic verify"),
        }
        if let Some(r) = self.full_reread_every {
            s.push_str(&format!(", full re-read every {r}"));
        }
        s.push_str(match self.granularity {
            Granularity::ImageAndCatalog => ", image+catalog",
            Granularity::Image => ", image only",
        });
        s.push_str(", ");
        s.push_str(&self.retention.describe());
        if let Some(p) = self.protect {
            s.push_str(&format!(
                ", pins the first restore point of each {}",
                match p {
                    Protect::Weekly => "week",
                    Protect::Monthly => "month",
                    Protect::Yearly => "year",
                }
            ));
        }
        if self.exclude.is_empty() {
            s.push_str(", no exclusions");
        } else {
            let ex: Vec<&str> = self.exclude.iter().map(Glob::as_str).collect();
            s.push_str(&format!(", excluding [{}]", ex.join(", ")));
        }
        if !self.skip_free_blocks {
            s.push_str(", reads free blocks");
        }
        let t = &self.throttle;
        if let Some(r) = t.read_mb_per_s {
            s.push_str(&format!(", read at most {r} MB/s"));
        }
        if let Some(c) = t.io_concurrency {
            s.push_str(&format!(", {c} concurrent reads"));
        }
        if let Some(n) = t.threads {
            s.push_str(&format!(", {n} threads"));
        }
        if let Some(w) = self.window {
            s.push_str(&format!(", window {w}"));
            if self.timezone != UtcOffset::UTC {
                s.push_str(&format!(" ({})", self.timezone));
            }
        }
        s.push_str(&format!(", repository {}", self.repository.display()));
        match &self.key {
            Some(KeyRef::KeyFile(p)) => s.push_str(&format!(", key file {}", p.display())),
            Some(KeyRef::PasswordFile(p)) => {
                s.push_str(&format!(", password file {}", p.display()));
            }
            None => s.push_str(", unencrypted"),
        }
        if let Some(h) = &self.pre_hook {
            s.push_str(&format!(", pre hook {h:?}"));
        }
        if let Some(h) = &self.post_hook {
            s.push_str(&format!(", post hook {h:?}"));
        }
        s
    }
}

/// A parsed and validated policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    timezone: UtcOffset,
    classes: Vec<String>,
    jobs: Vec<ResolvedJob>,
}

/// 1-based (line, column) of byte offset `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Ctx<'a> {
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: String) -> Error {
        let (line, column) = line_col(self.text, span.start);
        Error::Invalid {
            line,
            column,
            message,
        }
    }
}

/// Parses a list of globs, naming the element that is wrong.
fn globs(
    ctx: &Ctx<'_>,
    list: &Spanned<Vec<Spanned<String>>>,
    what: &str,
) -> Result<Vec<Glob>, Error> {
    if list.get_ref().len() > MAX_LIST_LEN {
        return Err(ctx.err(
            list.span(),
            format!("more than {MAX_LIST_LEN} entries in `{what}`"),
        ));
    }
    list.get_ref()
        .iter()
        .map(|g| {
            g.get_ref()
                .parse::<Glob>()
                .map_err(|e| ctx.err(g.span(), e.to_string()))
        })
        .collect()
}

/// A throttle setting: at least 1 and, when `max` is given, at most `max` (what the engine
/// can honour; a larger value is refused instead of being clamped out of sight).
fn bounded(
    ctx: &Ctx<'_>,
    v: &Option<Spanned<u32>>,
    key: &str,
    max: Option<u32>,
) -> Result<Option<u32>, Error> {
    let Some(s) = v else {
        return Ok(None);
    };
    let n = *s.get_ref();
    if n == 0 {
        return Err(ctx.err(
            s.span(),
            match max {
                Some(max) => format!("`{key}` must be 1 to {max} (omit it for the default)"),
                None => format!("`{key}` must be at least 1 (omit it for no limit)"),
            },
        ));
    }
    if let Some(max) = max.filter(|&max| n > max) {
        return Err(ctx.err(
            s.span(),
            format!("`{key}` = {n} exceeds {max}, the most one backup runs (1 to {max})"),
        ));
    }
    Ok(Some(n))
}

/// Checks the throttle settings of one table (class or job) and returns them as written.
fn throttle_settings(ctx: &Ctx<'_>, s: &Settings) -> Result<Throttle, Error> {
    let width = Some(u32::from(MAX_PIPELINE_WIDTH));
    Ok(Throttle {
        // No upper bound: any u32 of MB/s is a rate the token bucket honours exactly.
        read_mb_per_s: bounded(ctx, &s.read_mb_per_s, "read_mb_per_s", None)?,
        io_concurrency: bounded(ctx, &s.io_concurrency, "io_concurrency", width)?,
        threads: bounded(ctx, &s.threads, "threads", width)?,
    })
}

fn hook(
    ctx: &Ctx<'_>,
    v: &Option<Spanned<Vec<String>>>,
    key: &str,
) -> Result<Option<Vec<String>>, Error> {
    match v {
        Some(h) if h.get_ref().is_empty() || h.get_ref()[0].is_empty() => Err(ctx.err(
            h.span(),
            format!("`{key}` needs a program: [\"/path/to/program\", \"arg\", ...]"),
        )),
        Some(h) if h.get_ref().len() > MAX_LIST_LEN => Err(ctx.err(
            h.span(),
            format!("`{key}` has more than {MAX_LIST_LEN} arguments"),
        )),
        Some(h) => Ok(Some(h.get_ref().clone())),
        None => Ok(None),
    }
}

impl Policy {
    /// Parses and validates policy text. Every error names the line and column.
    pub fn parse(text: &str) -> Result<Policy, Error> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(Error::TooLarge {
                len: text.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = line_col(text, e.span().map_or(0, |s| s.start));
            Error::Invalid {
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }
        })?;
        let ctx = Ctx { text };
        let timezone = match &raw.timezone {
            Some(tz) => tz
                .get_ref()
                .parse::<UtcOffset>()
                .map_err(|e| ctx.err(tz.span(), e.to_string()))?,
            None => UtcOffset::UTC,
        };
        for (table, what) in [(&raw.class, "classes"), (&raw.job, "jobs")] {
            if table.len() > MAX_ENTRIES {
                let span = table.values().nth(MAX_ENTRIES).map_or(0..0, Spanned::span);
                return Err(ctx.err(span, format!("more than {MAX_ENTRIES} {what}")));
            }
        }
        for (name, c) in &raw.class {
            let c = c.get_ref();
            if let Some(k) = &c.class {
                return Err(ctx.err(
                    k.span(),
                    format!("`class` is a job key; class {name} cannot name a class"),
                ));
            }
            if let Some(k) = &c.vms {
                return Err(ctx.err(
                    k.span(),
                    format!("`vms` is a job key; list VMs in a [job.*] table, not in class {name}"),
                ));
            }
            // Check a class's globs and limits even when no job uses it yet (or every job
            // overrides them).
            if let Some(list) = &c.exclude {
                globs(&ctx, list, "exclude")?;
            }
            throttle_settings(&ctx, c)?;
        }
        let mut jobs = Vec::new();
        for (name, job) in &raw.job {
            jobs.push(resolve(&ctx, name, job, &raw.class, timezone)?);
        }
        Ok(Policy {
            timezone,
            classes: raw.class.keys().cloned().collect(),
            jobs,
        })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, Error> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_POLICY_BYTES as u64 {
            return Err(Error::TooLarge {
                len: usize::try_from(meta.len()).unwrap_or(usize::MAX),
                max: MAX_POLICY_BYTES,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Policy::parse(&text).map_err(|e| match e {
            Error::Invalid {
                line,
                column,
                message,
            } => Error::InFile {
                path: path.to_owned(),
                line,
                column,
                message,
            },
            other => other,
        })
    }

    /// Every job, class settings merged in, sorted by name.
    pub fn jobs(&self) -> Vec<ResolvedJob> {
        self.jobs.clone()
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Option<&ResolvedJob> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// Class names, sorted.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The policy's fixed offset (UTC unless `timezone` is given).
    pub fn timezone(&self) -> UtcOffset {
        self.timezone
    }

    /// The text `cairn policy check` prints: one `describe()` paragraph per job.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} classes, {} jobs, times in UTC{}\n",
            self.classes.len(),
            self.jobs.len(),
            if self.timezone == UtcOffset::UTC {
                String::new()
            } else {
                format!("{}", self.timezone)
            }
        );
        for j in &self.jobs {
            s.push_str(&j.describe());
            s.push('\n');
        }
        s
    }
}

fn resolve(
    ctx: &Ctx<'_>,
    name: &str,
    job: &Spanned<Settings>,
    classes: &BTreeMap<String, Spanned<Settings>>,
    timezone: UtcOffset,
) -> Result<ResolvedJob, Error> {
    let span = job.span();
    let j = job.get_ref();
    let class_ref = j
        .class
        .as_ref()
        .ok_or_else(|| ctx.err(span.clone(), format!("job {name} has no `class = \"...\"`")))?;
    let class_name = class_ref.get_ref();
    let c = classes
        .get(class_name)
        .map(Spanned::get_ref)
        .ok_or_else(|| {
            let known: Vec<&str> = classes.keys().map(String::as_str).collect();
            ctx.err(
                class_ref.span(),
                format!(
                    "job {name}: unknown class {class_name:?} (classes: {})",
                    known.join(", ")
                ),
            )
        })?;
    let vms = j
        .vms
        .as_ref()
        .ok_or_else(|| ctx.err(span.clone(), format!("job {name} has no `vms = [...]`")))?;
    if vms.get_ref().is_empty() {
        return Err(ctx.err(vms.span(), format!("job {name}: `vms` is empty")));
    }
    let vm_globs = globs(ctx, vms, "vms")?;
    let schedule = pick!(j, c, schedule)
        .ok_or_else(|| {
            ctx.err(
                span.clone(),
                format!("job {name}: no `schedule` in the job or class {class_name}"),
            )
        })?
        .with_offset(timezone);
    let repository = pick!(j, c, repository).ok_or_else(|| {
        ctx.err(
            span.clone(),
            format!("job {name}: no `repository` in the job or class {class_name}"),
        )
    })?;
    for (path, key) in [
        (Some(&repository), "repository"),
        (j.key_file.as_ref().or(c.key_file.as_ref()), "key_file"),
        (
            j.password_file.as_ref().or(c.password_file.as_ref()),
            "password_file",
        ),
    ] {
        if let Some(p) = path {
            if p.get_ref().as_os_str().is_empty() {
                return Err(ctx.err(p.span(), format!("`{key}` is an empty path")));
            }
        }
    }
    let repository = repository.into_inner();
    let exclude = match pick!(j, c, exclude) {
        Some(list) => globs(ctx, &list, "exclude")?,
        None => Vec::new(),
    };
    // A job that names one key source replaces the class's key entirely.
    let (key_file, password_file) = if j.key_file.is_some() || j.password_file.is_some() {
        (j.key_file.clone(), j.password_file.clone())
    } else {
        (c.key_file.clone(), c.password_file.clone())
    };
    let key = match (key_file, password_file) {
        (Some(_), Some(p)) => {
            return Err(ctx.err(
                p.span(),
                format!("job {name}: give either `key_file` or `password_file`, not both"),
            ))
        }
        (Some(k), None) => Some(KeyRef::KeyFile(k.into_inner())),
        (None, Some(p)) => Some(KeyRef::PasswordFile(p.into_inner())),
        (None, None) => None,
    };
    // Both tables are checked in full, so a job's override cannot hide its class's mistake.
    let (jt, ct) = (throttle_settings(ctx, j)?, throttle_settings(ctx, c)?);
    let backup = pick!(j, c, backup).unwrap_or(BackupMode::Incremental);
    let full_reread_every = pick!(j, c, full_reread_every);
    Ok(ResolvedJob {
        name: name.to_owned(),
        class: class_name.clone(),
        vms: vm_globs,
        schedule,
        backup,
        verify_every: pick!(j, c, verify_every),
        full_reread_every,
        granularity: pick!(j, c, granularity).unwrap_or(Granularity::ImageAndCatalog),
        exclude,
        skip_free_blocks: pick!(j, c, skip_free_blocks).unwrap_or(true),
        retention: Retention {
            keep_last: pick!(j, c, keep_last).unwrap_or(0),
            keep_hourly: pick!(j, c, keep_hourly).unwrap_or(0),
            keep_daily: pick!(j, c, keep_daily).unwrap_or(0),
            keep_weekly: pick!(j, c, keep_weekly).unwrap_or(0),
            keep_monthly: pick!(j, c, keep_monthly).unwrap_or(0),
            keep_yearly: pick!(j, c, keep_yearly).unwrap_or(0),
            keep_within: pick!(j, c, keep_within),
        },
        protect: pick!(j, c, protect),
        throttle: Throttle {
            read_mb_per_s: jt.read_mb_per_s.or(ct.read_mb_per_s),
            io_concurrency: jt.io_concurrency.or(ct.io_concurrency),
            threads: jt.threads.or(ct.threads),
        },
        window: pick!(j, c, window),
        key,
        repository,
        pre_hook: hook(
            ctx,
            if j.pre_hook.is_some() {
                &j.pre_hook
            } else {
                &c.pre_hook
            },
            "pre_hook",
        )?,
        post_hook: hook(
            ctx,
            if j.post_hook.is_some() {
                &j.post_hook
            } else {
                &c.post_hook
            },
            "post_hook",
        )?,
        timezone,
    })
}
