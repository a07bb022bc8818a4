//! Repository commands: init, backup, snapshots, restore, verify.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_engine::{BackupOptions, Progress, ProgressFn, RestoreOptions, RestoredDisk};
use cairn_io::ReadAt;
use cairn_repo::{Encryption, KeyRing, LocalBackend, Repository, SlotSecret, SnapshotId};
use cairn_vdisk::{ConvertOptions, TargetFormat};
use clap::Args;
use serde_json::json;

use crate::disk::OpenArgs;

/// How to reach and unlock a repository.
#[derive(Debug, Args, Clone)]
pub struct RepoArgs {
    /// The repository folder.
    #[arg(long, value_name = "DIR", env = "CAIRN_REPOSITORY")]
    pub repo: PathBuf,
    /// Read the passphrase from this file (else CAIRN_PASSWORD, else a prompt on a terminal).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The key ring kept outside the repository (a file written by `init --key-file`).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// aes-256-gcm (default) or none.
    #[arg(long, default_value = "aes-256-gcm")]
    pub encryption: String,
    /// Also create a recovery key (printed once) that unlocks the repository if the
    /// passphrase is lost.
    #[arg(long)]
    pub recovery_key: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The VM's disk images (any format; parents are found and read through), or one VM
    /// bundle: a folder or configuration file (.vmx, libvirt domain XML, Hyper-V
    /// configuration, .ovf) whose configuration files are stored and whose disks are found
    /// from the configuration.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A bundle's power state when the folder cannot show it (libvirt, Hyper-V): cold,
    /// warm or active (active reads each disk's frozen point, the parent of its live delta).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Accept bundle disks at absolute paths outside the bundle folder.
    #[arg(long)]
    pub allow_outside: bool,
    /// The VM's name (default: the first image's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Tags to record (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Record the restore point at this time (RFC 3339, e.g. 2026-01-02T03:04:05Z or
    /// 2026-01-02T05:04:05.123456789+02:00), for imported history and tests. A fraction of 1
    /// to 9 digits is kept to the nanosecond and orders restore points within one second.
    #[arg(long, value_name = "RFC3339")]
    pub time: Option<String>,
    /// Read everything even when a previous restore point would allow reading only changes.
    #[arg(long)]
    pub full: bool,
    /// Write pack files with O_DIRECT, past the page cache: less CPU and no cache pushed
    /// out on a busy host, but slower where each direct write waits for a slow device
    /// (docs/BENCHMARKS.md section 2). Falls back to buffered writes where refused.
    #[arg(long)]
    pub direct_io: bool,
    /// Guest path glob whose files' data is not backed up (repeatable): `*.mp3`,
    /// `/home/*/Music`. Matching files stay listed in the catalog, marked excluded.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Do not build file catalogs.
    #[arg(long)]
    pub no_catalog: bool,
    /// Read the blocks guest file systems mark free too (by default they are skipped and
    /// restore as zeros).
    #[arg(long)]
    pub no_skip_free: bool,
    /// Read each disk at most this fast, in MB/s (10^6 bytes), to spare production storage
    /// (the policy's `read_mb_per_s`).
    #[arg(long, value_name = "MB_PER_S", value_parser = clap::value_parser!(u32).range(1..))]
    pub read_mb_per_s: Option<u32>,
    /// Positional reads in flight at once, 1 to 64 (default 2; the policy's
    /// `io_concurrency`).
    #[arg(long, value_name = "N", value_parser = pipeline_width())]
    pub io_concurrency: Option<usize>,
    /// Threads hashing, compressing and encrypting, 1 to 64 (default: every core; the
    /// policy's `threads`).
    #[arg(long, value_name = "N", value_parser = pipeline_width())]
    pub threads: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub open: OpenArgs,
}

/// Most readers or workers one backup runs: the engine's pipeline clamps both to this bound
/// (the policy's `io_concurrency`/`threads` share it), so a larger value (or 0, which the
/// engine would take as "default") is a typo, refused.
const MAX_PIPELINE_WIDTH: u64 = cairn_engine::policy::MAX_PIPELINE_WIDTH as u64;

fn pipeline_width() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=MAX_PIPELINE_WIDTH)
}

impl BackupArgs {
    fn source_options(&self) -> cairn_engine::SourceOptions {
        cairn_engine::SourceOptions {
            open: self.open.options(),
            skip_free: !self.no_skip_free,
            catalog: !self.no_catalog,
            exclude: self.exclude.clone(),
            read_limit_mb_per_s: self.read_mb_per_s,
            ..Default::default()
        }
    }

    fn backup_options(&self) -> Result<BackupOptions> {
        let time = self.time.as_deref().map(parse_time).transpose()?;
        Ok(BackupOptions {
            tags: self.tags.clone(),
            time: time.map(|t| t.secs),
            time_nanos: time.and_then(|t| t.nanos),
            no_incremental: self.full,
            threads: self.threads.unwrap_or(0),
            readers: self.io_concurrency.unwrap_or(0),
            ..Default::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print a JSON array, oldest first; `time` is RFC 3339 UTC with nine fractional digits
    /// (nanoseconds) when the restore point recorded a sub-second part, e.g.
    /// 2026-11-25T06:00:01.123456789Z, else whole seconds.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point id (or a unique prefix, or `latest`: the newest by time, to the
    /// nanosecond where recorded).
    pub restore_point: String,
    /// Which disk of the restore point, counted from 1.
    #[arg(long, default_value_t = 1)]
    pub disk: usize,
    /// Restore the whole VM bundle into the folder --to: every disk in --format and every
    /// configuration file with its disk paths rewritten.
    #[arg(long, conflicts_with = "disk")]
    pub vm: bool,
    /// The file to write (with --vm, the folder).
    #[arg(long)]
    pub to: PathBuf,
    /// raw (default), vmdk or vhd.
    #[arg(long, default_value = "raw")]
    pub format: String,
    /// Subformat: monolithicSparse|streamOptimized (vmdk), dynamic|fixed (vhd).
    #[arg(long)]
    pub subformat: Option<String>,
    /// Return once the disk is written to the operating system's cache, without waiting
    /// for it to reach the disk (as restic, borg and qemu-img convert do). A host crash in
    /// the next seconds can then leave zeros in the restored file. Raw output of one disk only.
    #[arg(long, conflicts_with = "vm")]
    pub no_fsync: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Read, decrypt and re-hash blob data too.
    #[arg(long)]
    pub read_data: bool,
    /// With --read-data, read only this share of the packs, e.g. 10%; with
    /// --recoverable, the share of files whose contents are read (default all).
    #[arg(long, value_name = "N%")]
    pub subset: Option<String>,
    /// Instead of the repository, check that this restore point is recoverable: re-read it
    /// through the partition table and guest file systems, every directory and (a subset
    /// of) file contents, against its catalog.
    #[arg(long, value_name = "RESTORE_POINT")]
    pub recoverable: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn read_secret(args: &RepoArgs, confirm: bool) -> Result<SlotSecret> {
    if let Some(f) = &args.password_file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(SlotSecret::Passphrase(
            s.trim_end_matches(['\n', '\r']).to_string(),
        ));
    }
    if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
        return Ok(SlotSecret::Passphrase(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!("the repository needs a passphrase: set CAIRN_PASSWORD or pass --password-file");
    }
    let p = rpassword::prompt_password("passphrase: ")?;
    if confirm && rpassword::prompt_password("passphrase again: ")? != p {
        bail!("the passphrases differ");
    }
    Ok(SlotSecret::Passphrase(p))
}

/// Opens the repository, asking for the passphrase only when it is encrypted.
pub fn open_repo(args: &RepoArgs) -> Result<Repository> {
    open_repo_with(args, false)
}

/// [`open_repo`], writing packs with O_DIRECT when `direct_io`.
fn open_repo_with(args: &RepoArgs, direct_io: bool) -> Result<Repository> {
    let backend = Arc::new(
        LocalBackend::new(&args.repo)
            .with_context(|| args.repo.display().to_string())?
            .with_direct_writes(direct_io),
    );
    let config = cairn_repo::read_config(backend.as_ref())
        .with_context(|| args.repo.display().to_string())?;
    let mut opts = cairn_repo::OpenOptions::default();
    if let Some(k) = &args.key_file {
        opts.key_ring =
            Some(KeyRing::load(k).with_context(|| format!("key file {}", k.display()))?);
    }
    let secret = match config.encryption {
        Encryption::None => None,
        _ => Some(read_secret(args, false)?),
    };
    Repository::open(backend, &opts, secret.as_ref())
        .with_context(|| format!("opening repository {}", args.repo.display()))
}

pub fn init(a: &InitArgs) -> Result<()> {
    let encryption: Encryption = a
        .encryption
        .parse()
        .map_err(|e| anyhow::anyhow!("--encryption: {e}"))?;
    std::fs::create_dir_all(&a.repo.repo).with_context(|| a.repo.repo.display().to_string())?;
    let backend = Arc::new(LocalBackend::new(&a.repo.repo)?);
    let mut opts = cairn_repo::InitOptions {
        encryption,
        ..Default::default()
    };
    opts.keys_in_repository = a.repo.key_file.is_none();
    let secret = match encryption {
        Encryption::None => None,
        _ => Some(read_secret(&a.repo, true)?),
    };
    let repo = Repository::init(backend, &opts, secret.as_ref())
        .with_context(|| format!("creating repository {}", a.repo.repo.display()))?;
    if let (Some(ring), Some(secret)) = (repo.key_ring(), secret.as_ref()) {
        let mut ring = ring.clone();
        if a.recovery_key {
            let key = cairn_crypto::generate_recovery_key()?;
            ring.add_slot(secret, &SlotSecret::RecoveryKey(key.clone()), "recovery")?;
            eprintln!("recovery key (store it apart from the passphrase; it is shown once):");
            outln!("{key}");
        }
        match &a.repo.key_file {
            Some(path) => ring
                .save(path)
                .with_context(|| path.display().to_string())?,
            None => repo.write_key_ring(&ring)?,
        }
    }
    eprintln!(
        "created {} repository at {}",
        encryption,
        a.repo.repo.display()
    );
    Ok(())
}

/// Parses an RFC 3339 time given on the command line (`backup --time`, `find --since/--until`):
/// `2024-01-31T10:00:00Z`, `+02:00` offsets, 1 to 9 fractional digits kept as nanoseconds.
/// One parser for every command: `cairn_policy::civil::parse_rfc3339`, whose error is one line.
pub fn parse_time(s: &str) -> Result<cairn_engine::policy::Rfc3339Time> {
    Ok(cairn_engine::policy::parse_rfc3339(s)?)
}

pub fn rfc3339(secs: i64) -> String {
    cairn_vfs::Timestamp { secs, nanos: 0 }.to_rfc3339()
}

/// A restore point's time: RFC 3339 UTC, with nine fractional digits when it recorded a
/// non-zero sub-second part (`2026-11-25T06:00:01.123456789Z`).
fn restore_point_rfc3339(s: &cairn_engine::RestorePointSummary) -> String {
    cairn_vfs::Timestamp {
        secs: s.time,
        nanos: s.time_nanos.unwrap_or(0),
    }
    .to_rfc3339()
}

fn progress_bar(total: u64, what: &str) -> Option<(indicatif::ProgressBar, ProgressFn)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} [{{elapsed_precise}}] {{wide_bar}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let f: ProgressFn = Arc::new(move |p: &Progress| {
        b.set_position(p.bytes_done);
        true
    });
    Some((bar, f))
}

pub fn backup(a: &BackupArgs) -> Result<()> {
    let repo = open_repo_with(&a.repo, a.direct_io)?;
    if let [one] = a.images.as_slice() {
        if cairn_bundle_detect(one) {
            return backup_bundle(a, &repo, one);
        }
    }
    if a.state.is_some() {
        bail!("--state applies to VM bundles (a folder or configuration file) only");
    }
    let name = a.name.clone().unwrap_or_else(|| {
        a.images[0]
            .file_stem()
            .map_or_else(|| "vm".into(), |s| s.to_string_lossy().into_owned())
    });
    let source_opts = a.source_options();
    let images: Vec<&Path> = a.images.iter().map(PathBuf::as_path).collect();
    let prepared = cairn_engine::prepare_vm(&repo, &name, &images, &source_opts)
        .context("reading the disks")?;
    let bytes_skipped = prepared.bytes_skipped;
    let sources = prepared.sources;
    let volumes = prepared.volumes;
    let total: u64 = sources.iter().map(|s| s.map.size()).sum();
    let bar = progress_bar(total, "backup");
    let opts = BackupOptions {
        progress: bar.as_ref().map(|(_, f)| f.clone()),
        volumes: volumes.clone(),
        ..a.backup_options()?
    };
    let report = cairn_engine::backup(&repo, &name, &sources, &opts).context("backup")?;
    if let Some((b, _)) = bar {
        b.finish_and_clear();
    }
    if a.json {
        outln!(
            "{}",
            json!({
                "restore_point": report.restore_point.to_string(),
                "bytes_read": report.bytes_read,
                "bytes_new": report.bytes_new,
                "bytes_stored": report.bytes_stored,
                "seconds": report.seconds,
                "bytes_skipped": bytes_skipped,
                "volumes": volumes_json(&volumes),
                "chunks": report.chunks,
                "chunks_reused": report.chunks_reused,
                "incremental_from": report.incremental_from.map(|s| s.to_string()),
            })
        );
    } else {
        outln!("{}", report.restore_point);
        eprintln!(
            "read {} bytes ({} free bytes skipped), {} new, {} stored, in {:.2} s{}",
            report.bytes_read,
            bytes_skipped,
            report.bytes_new,
            report.bytes_stored,
            report.seconds,
            report
                .incremental_from
                .map(|s| format!(" (changes since {})", short(&s)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// A folder, or a configuration file by its extension: backed up as a VM bundle (an image
/// is never a folder nor one of these).
fn cairn_bundle_detect(p: &Path) -> bool {
    p.is_dir()
        || matches!(
            p.extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("vmx" | "ovf" | "vmcx" | "xml" | "ova")
        )
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn vm_json(vm: &cairn_repo::VmRecord) -> serde_json::Value {
    let disks: Vec<_> = vm
        .disks
        .iter()
        .map(|d| {
            json!({"config_ref": d.config_ref, "uuid": d.uuid.as_ref().map(uuid_text),
                "written": d.written, "path": d.path, "captured": d.captured,
                "capture_depth": d.capture_depth})
        })
        .collect();
    let files: Vec<_> = vm
        .config_files
        .iter()
        .map(|f| json!({"name": f.name, "size": f.size, "blobs": f.blobs.len()}))
        .collect();
    json!({"kind": vm.kind, "name": vm.name, "uuid": vm.uuid.as_ref().map(uuid_text),
        "power_state": vm.power_state, "config_files": files, "disks": disks,
        "folder_scan": vm.folder_scan, "notes": vm.notes})
}

fn backup_bundle(a: &BackupArgs, repo: &Repository, path: &Path) -> Result<()> {
    let state = match a.state.as_deref() {
        None => None,
        Some(s) => Some(
            cairn_engine::PowerState::parse(s)
                .ok_or_else(|| anyhow::anyhow!("--state {s}: expected cold, warm or active"))?,
        ),
    };
    let bopts = cairn_engine::BundleOpenOptions {
        allow_outside: a.allow_outside,
        state,
        limits: a.open.options().limits,
    };
    let bundle = cairn_engine::Bundle::open(path, &bopts)
        .with_context(|| format!("reading the VM bundle {}", path.display()))?;
    let source_opts = a.source_options();
    let opts = a.backup_options()?;
    let r = cairn_engine::backup_bundle(repo, &bundle, a.name.as_deref(), &source_opts, &opts)
        .context("backup")?;
    let report = &r.backup;
    if a.json {
        outln!(
            "{}",
            json!({
                "restore_point": report.restore_point.to_string(),
                "bytes_read": report.bytes_read,
                "bytes_new": report.bytes_new,
                "bytes_stored": report.bytes_stored,
                "seconds": report.seconds,
                "bytes_skipped": r.bytes_skipped,
                "volumes": volumes_json(&r.volumes),
                "chunks": report.chunks,
                "chunks_reused": report.chunks_reused,
                "incremental_from": report.incremental_from.map(|s| s.to_string()),
                "vm": r.vm.as_ref().map(vm_json),
            })
        );
    } else {
        outln!("{}", report.restore_point);
        eprintln!(
            "{} VM {:?} ({}), {} disk(s), {} config file(s); read {} bytes, {} new, {} stored, in {:.2} s{}",
            bundle.kind.as_str(),
            bundle.vm_name,
            bundle.power_state.as_str(),
            bundle.disks.len(),
            bundle.config_files.len(),
            report.bytes_read,
            report.bytes_new,
            report.bytes_stored,
            report.seconds,
            report
                .incremental_from
                .map(|s| format!(" (changes since {})", short(&s)))
                .unwrap_or_default()
        );
        for n in &bundle.notes {
            eprintln!("note: {n}");
        }
    }
    Ok(())
}

fn volumes_json(volumes: &[cairn_repo::VolumeRecord]) -> serde_json::Value {
    let out: Vec<_> = volumes
        .iter()
        .map(|v| {
            json!({"disk": v.disk + 1, "partition": v.partition, "filesystem": v.fs, "size": v.size,
                "skipped": v.bytes_skipped, "files": v.files, "dirs": v.dirs, "excluded_files": v.excluded_files,
                "cataloged": v.catalog_root.is_some(), "unparsed": v.note})
        })
        .collect();
    serde_json::Value::Array(out)
}

fn short(id: &SnapshotId) -> String {
    id.to_string()[..12].to_string()
}

pub fn snapshots(a: &SnapshotsArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let list = cairn_engine::snapshots(&repo)?;
    let pinned = repo.pinned_ids()?;
    if a.json {
        let arr: Vec<_> = list
            .iter()
            .map(|s| {
                let disks: Vec<_> = s
                    .disks
                    .iter()
                    .map(|(label, size)| json!({"label": label, "size": size}))
                    .collect();
                json!({
                    "id": s.id.to_string(),
                    "time": restore_point_rfc3339(s),
                    "name": s.vm_name,
                    "disks": disks,
                    "tags": s.tags,
                    "bytes_read": s.stats.bytes_read,
                    "bytes_new": s.stats.bytes_new,
                    "bytes_stored": s.stats.bytes_stored,
                    "parent": s.parent.map(|p| p.to_string()),
                    "vm": s.vm.as_ref().map(vm_json),
                    "pinned": pinned.contains(&s.id),
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(arr));
        return Ok(());
    }
    outln!(
        "{:<12}  {:<20}  {:<16}  {:>14}  tags",
        "id",
        "time",
        "vm",
        "size"
    );
    for s in &list {
        let size: u64 = s.disks.iter().map(|d| d.1).sum();
        let vm = s.vm.as_ref().map_or_else(String::new, |v| {
            format!(
                "  [{} {} uuid {}]",
                v.kind,
                v.power_state,
                v.uuid.as_ref().map_or_else(|| "-".into(), uuid_text)
            )
        });
        let pin = if pinned.contains(&s.id) {
            "  (pinned)"
        } else {
            ""
        };
        outln!(
            "{:<12}  {:<20}  {:<16}  {:>14}  {}{}{}",
            short(&s.id),
            rfc3339(s.time),
            s.vm_name,
            size,
            s.tags.join(","),
            vm,
            pin
        );
    }
    Ok(())
}

/// The newest restore point: the greatest (seconds, nanoseconds). A restore point without a
/// recorded sub-second part (written before it was recorded, or given an explicit `--time`)
/// cannot be ordered within its second, so then every point of the newest second ties; so do
/// points with equal nanoseconds. Among tied points the one no other of them was built
/// incrementally from wins (a child after its parent), and a tie that the chain does not
/// settle is an error rather than a guess.
fn latest(list: &[cairn_engine::RestorePointSummary]) -> Result<SnapshotId> {
    let Some(newest) = list.iter().map(|s| s.time).max() else {
        bail!("the repository has no restore point");
    };
    let second: Vec<_> = list.iter().filter(|s| s.time == newest).collect();
    let tied: Vec<_> = if second.iter().all(|s| s.time_nanos.is_some()) {
        let top = second.iter().map(|s| s.time_nanos).max().flatten();
        second.into_iter().filter(|s| s.time_nanos == top).collect()
    } else {
        second
    };
    let heads: Vec<_> = tied
        .iter()
        .filter(|s| !tied.iter().any(|o| o.parent == Some(s.id)))
        .collect();
    match heads.as_slice() {
        [one] => Ok(one.id),
        _ => bail!(
            "`latest` is ambiguous: {} restore points were taken at {} and their order within \
             that second is not recorded; name one by id: {}",
            tied.len(),
            rfc3339(newest),
            tied.iter()
                .map(|s| short(&s.id))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Resolves a restore point given as a full id, a unique prefix, or `latest`.
pub fn resolve_restore_point(repo: &Repository, spec: &str) -> Result<SnapshotId> {
    let list = cairn_engine::snapshots(repo)?;
    if spec == "latest" {
        return latest(&list);
    }
    let matches: Vec<_> = list
        .iter()
        .filter(|s| s.id.to_string().starts_with(&spec.to_ascii_lowercase()))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no restore point {spec}"),
        _ => bail!("restore point prefix {spec} is ambiguous"),
    }
}

pub fn restore(a: &RestoreArgs) -> Result<()> {
    let target = TargetFormat::parse(&a.format, a.subformat.as_deref())?;
    let repo = Arc::new(open_repo(&a.repo)?);
    let id = resolve_restore_point(&repo, &a.restore_point)?;
    if a.vm {
        let r = cairn_engine::restore_bundle(
            &repo,
            &id,
            &a.to,
            &cairn_engine::VmRestoreOptions { format: target },
        )
        .with_context(|| format!("restoring the VM into {}", a.to.display()))?;
        for (r, p) in &r.disks {
            eprintln!("disk {r}: {}", p.display());
        }
        for p in &r.config_files {
            eprintln!("config: {}", p.display());
        }
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        return Ok(());
    }
    if a.disk == 0 {
        bail!("--disk counts from 1");
    }
    let disk_index = a.disk - 1;
    if a.no_fsync && target != TargetFormat::Raw {
        bail!(
            "--no-fsync is for --format raw: vmdk and vhd files are written under a temporary \
             name and renamed, which is only safe after an fsync"
        );
    }
    if target == TargetFormat::Raw {
        let disk = RestoredDisk::open(repo.clone(), &id, disk_index)?;
        let bar = progress_bar(disk.size(), "restore");
        let opts = RestoreOptions {
            progress: bar.as_ref().map(|(_, f)| f.clone()),
            no_fsync: a.no_fsync,
            ..Default::default()
        };
        let report = cairn_engine::restore_raw(&repo, &id, disk_index, &a.to, &opts)
            .with_context(|| format!("restoring to {}", a.to.display()))?;
        if let Some((b, _)) = bar {
            b.finish_and_clear();
        }
        eprintln!(
            "restored {} bytes ({} written, {} left as holes) in {:.2} s{}",
            report.size,
            report.bytes_written,
            report.bytes_hole,
            report.seconds,
            if report.durable {
                ""
            } else {
                " (not yet on disk: --no-fsync)"
            }
        );
        return Ok(());
    }
    let disk = RestoredDisk::open(repo.clone(), &id, disk_index)?;
    let map = disk.allocation_map();
    let report = cairn_vdisk::convert(
        &disk,
        &map,
        Path::new(&a.to),
        target,
        &ConvertOptions::default(),
    )
    .with_context(|| format!("restoring to {}", a.to.display()))?;
    eprintln!(
        "restored {} bytes of data as {}",
        report.bytes_written, a.format
    );
    Ok(())
}

pub fn verify(a: &VerifyArgs) -> Result<bool> {
    if let Some(rp) = &a.recoverable {
        let pct = match &a.subset {
            Some(s) => s
                .trim_end_matches('%')
                .parse::<u8>()
                .map_err(|_| anyhow::anyhow!("--subset {s}: expected N%"))?,
            None => 100,
        };
        return crate::catalog_cmd::verify_recoverable(&a.repo, rp, pct.clamp(1, 100), a.json);
    }
    let repo = open_repo(&a.repo)?;
    let mut opts = cairn_engine::VerifyOptions {
        read_data: a.read_data,
        ..Default::default()
    };
    if let Some(s) = &a.subset {
        let n: u8 = s
            .trim_end_matches('%')
            .parse()
            .map_err(|_| anyhow::anyhow!("--subset {s}: expected N%"))?;
        if !(1..=100).contains(&n) {
            bail!("--subset {s}: expected 1% to 100%");
        }
        opts.read_data_percent = n;
    }
    let report = cairn_engine::verify(&repo, &opts)?;
    if a.json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|p| {
                let affected: Vec<_> = p
                    .affected
                    .iter()
                    .map(|x| {
                        json!({"restore_point": x.snapshot.to_string(), "vm": x.vm_name, "time": rfc3339(x.time),
                            "disk": x.disk_index + 1, "disk_label": x.disk_label, "ranges": x.ranges})
                    })
                    .collect();
                json!({"kind": format!("{:?}", p.kind), "object": p.object, "detail": p.detail,
                    "blobs": p.blobs.len(), "affected": affected})
            })
            .collect();
        outln!(
            "{}",
            json!({"ok": report.is_ok(), "restore_points": report.snapshots, "index_files": report.index_files,
                "packs": report.packs, "packs_read": report.packs_read, "blobs_checked": report.blobs_checked,
                "bytes_read": report.bytes_read, "problems": problems})
        );
    } else {
        outln!(
            "{} restore points, {} index files, {} packs ({} read), {} blobs checked",
            report.snapshots,
            report.index_files,
            report.packs,
            report.packs_read,
            report.blobs_checked
        );
        for p in &report.problems {
            outln!("problem: {:?} {}: {}", p.kind, p.object, p.detail);
            for x in &p.affected {
                let ranges: Vec<String> =
                    x.ranges.iter().map(|(s, e)| format!("{s}..{e}")).collect();
                outln!(
                    "  breaks restore point {} ({} {}) disk {} ({}): bytes {}",
                    short(&x.snapshot),
                    x.vm_name,
                    rfc3339(x.time),
                    x.disk_index + 1,
                    x.disk_label,
                    ranges.join(", ")
                );
            }
        }
        outln!(
            "{}",
            if report.is_ok() {
                "no problems found"
            } else {
                "PROBLEMS FOUND"
            }
        );
    }
    Ok(report.is_ok())
}
