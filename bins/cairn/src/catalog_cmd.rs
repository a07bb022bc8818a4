//! Recovery at any depth from the repository: ls, find, diff and restore-file on restore
//! points, through their file catalogs and their disks read straight from the repository.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_catalog::{Catalog, Glob, RestorePointRef, Time};
use cairn_engine::{RepoReadStore, RestoredDisk};
use cairn_io::ReadAt;
use cairn_repo::{Repository, SnapshotId, VolumeRecord};
use clap::Args;
use serde_json::json;

use crate::repo_cmd::{open_repo, parse_time, resolve_restore_point, RepoArgs};

#[derive(Debug, Args)]
pub struct FindArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Glob on the path (`/home/*/docs/*.txt`) or, without `/`, on the name (`*.docx`).
    pub pattern: String,
    /// Only restore points of this VM.
    #[arg(long)]
    pub vm: Option<String>,
    /// Only restore points taken at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only restore points taken at or before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The older restore point.
    pub from: String,
    /// The newer restore point.
    pub to: String,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreFileArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Restore point (id, prefix or `latest`), optionally `:DISK[:PARTITION]`.
    pub restore_point: String,
    /// Guest paths (files or directories).
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Folder to write into.
    #[arg(long)]
    pub to: PathBuf,
    /// Keep times, mode, owner, xattrs, streams and security descriptors (see `extract`).
    #[arg(long)]
    pub metadata: bool,
}

/// `RP[:DISK[:PARTITION]]`: the restore point and the volume it names.
pub struct VolumeSpec {
    pub id: SnapshotId,
    pub disk: Option<u32>,
    pub partition: Option<u32>,
}

pub fn parse_spec(repo: &Repository, spec: &str) -> Result<VolumeSpec> {
    let mut parts = spec.split(':');
    let rp = parts.next().unwrap_or_default();
    let num = |s: Option<&str>, what: &str| -> Result<Option<u32>> {
        s.map(|x| {
            x.parse::<u32>()
                .with_context(|| format!("{what} {x:?} in {spec:?}"))
        })
        .transpose()
    };
    let disk = num(parts.next(), "disk")?;
    let partition = num(parts.next(), "partition")?;
    if parts.next().is_some() {
        bail!("{spec:?}: expected RESTORE_POINT[:DISK[:PARTITION]]");
    }
    if disk == Some(0) {
        bail!("disks count from 1");
    }
    Ok(VolumeSpec {
        id: resolve_restore_point(repo, rp)?,
        disk,
        partition,
    })
}

/// The volume a spec names among a restore point's volumes: the one given, or the only one
/// with a catalog.
pub fn pick_volume<'v>(volumes: &'v [VolumeRecord], spec: &VolumeSpec) -> Result<&'v VolumeRecord> {
    let candidates: Vec<&VolumeRecord> = volumes
        .iter()
        .filter(|v| spec.disk.is_none_or(|d| v.disk + 1 == d))
        .filter(|v| spec.partition.is_none_or(|p| v.partition == p))
        .collect();
    let with_catalog: Vec<&&VolumeRecord> = candidates
        .iter()
        .filter(|v| v.catalog_root.is_some())
        .collect();
    match (candidates.as_slice(), with_catalog.as_slice()) {
        ([], _) => bail!("no such volume in restore point {}", spec.id),
        ([one], _) => Ok(one),
        (_, [one]) => Ok(one),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .map(|v| format!("{}:{} ({})", v.disk + 1, v.partition, v.fs))
                .collect();
            bail!(
                "restore point {} has several volumes ({}): name one as RP:DISK:PARTITION",
                spec.id,
                names.join(", ")
            )
        }
    }
}

fn catalog_of<'s>(
    store: &'s RepoReadStore<'s>,
    v: &VolumeRecord,
) -> Result<Catalog<'s, RepoReadStore<'s>>> {
    let Some(root) = v.catalog_root else {
        bail!(
            "volume {}:{} ({}) has no catalog: {}",
            v.disk + 1,
            v.partition,
            v.fs,
            v.note.as_deref().unwrap_or("not parsed")
        );
    };
    let ci = !v.fs.starts_with("ext");
    Ok(Catalog::open(store, root.0)?
        .with_sd_table(v.sd_table.map(|b| b.0))
        .with_case_insensitive_paths(ci))
}

/// `cairn ls --repo DIR RP[:DISK[:PARTITION]] [PATH]`.
pub fn ls(
    repo_args: &RepoArgs,
    spec: &str,
    path: &str,
    recursive: bool,
    as_json: bool,
) -> Result<()> {
    let repo = open_repo(repo_args)?;
    let spec = parse_spec(&repo, spec)?;
    let m = repo.load_manifest_file(&spec.id)?;
    let vol = pick_volume(&m.volumes, &spec)?;
    let store = RepoReadStore(&repo);
    let cat = catalog_of(&store, vol)?;
    let print = |p: &str, e: &cairn_catalog::Entry| {
        if as_json {
            outln!(
                "{}",
                serde_json::to_string(&e.to_json(p)).unwrap_or_default()
            );
        } else {
            let j = e.to_json(p);
            let v = serde_json::to_value(&j).unwrap_or_default();
            let kind = match v["type"].as_str() {
                Some("dir") => 'd',
                Some("symlink") => 'l',
                Some("file") => '-',
                _ => '?',
            };
            outln!(
                "{kind} {:>12} {:<20} {p}",
                v["size"],
                v["mtime"].as_str().unwrap_or("-")
            );
        }
    };
    let base = format!(
        "/{}",
        path.split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    );
    if recursive {
        let prefix = if base == "/" {
            String::new()
        } else {
            base.clone()
        };
        cat.walk(&mut |p, e| {
            if prefix.is_empty() || p == prefix || p.starts_with(&format!("{prefix}/")) {
                print(p, e);
            }
            Ok(())
        })?;
    } else {
        match cat.lookup(&base)? {
            Some(e) if e.kind != cairn_catalog::Kind::Dir => print(&base, &e),
            Some(_) | None if base == "/" || cat.lookup(&base)?.is_some() => {
                let root = if base == "/" {
                    String::new()
                } else {
                    base.clone()
                };
                for e in cat.list(&base)? {
                    print(&format!("{root}/{}", e.name), &e);
                }
            }
            _ => bail!(
                "{base}: no such file or directory in restore point {}",
                spec.id
            ),
        }
    }
    Ok(())
}

pub fn find(a: &FindArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let store = RepoReadStore(&repo);
    let mut points = Vec::new();
    for s in cairn_engine::snapshots(&repo)? {
        if a.vm.as_ref().is_some_and(|vm| *vm != s.vm_name) {
            continue;
        }
        let m = repo.load_manifest_file(&s.id)?;
        points.push((s.id, s.time, s.vm_name.clone(), m.volumes));
    }
    // One search per volume position: paths of different volumes are different files.
    let mut positions: Vec<(u32, u32)> = points
        .iter()
        .flat_map(|p| {
            p.3.iter()
                .filter(|v| v.catalog_root.is_some())
                .map(|v| (v.disk, v.partition))
        })
        .collect();
    positions.sort_unstable();
    positions.dedup();
    for (disk, part) in positions {
        let mut cats = Vec::new();
        for (id, time, vm, vols) in &points {
            if let Some(v) = vols
                .iter()
                .find(|v| v.disk == disk && v.partition == part && v.catalog_root.is_some())
            {
                cats.push((
                    id.to_string(),
                    *time,
                    vm.clone(),
                    catalog_of(&store, v)?,
                    v.fs.clone(),
                ));
            }
        }
        let ci = cats.first().is_some_and(|c| !c.4.starts_with("ext"));
        let glob =
            Glob::with_case(&a.pattern, ci).with_context(|| format!("pattern {:?}", a.pattern))?;
        let refs: Vec<RestorePointRef<'_, '_, RepoReadStore<'_>>> = cats
            .iter()
            .map(|(id, time, vm, cat, _)| RestorePointRef {
                id: id.clone(),
                time: Time {
                    secs: *time,
                    nanos: 0,
                },
                vm_name: vm.clone(),
                catalog: cat,
            })
            .collect();
        let to_time = |t: Option<i64>| t.map(|secs| Time { secs, nanos: 0 });
        for v in cairn_catalog::find_versions(&refs, &glob, to_time(since), to_time(until))? {
            if a.json {
                let mut j = serde_json::to_value(&v)?;
                j["disk"] = json!(disk + 1);
                j["partition"] = json!(part);
                outln!("{j}");
            } else {
                let short: Vec<String> = v
                    .restore_points
                    .iter()
                    .map(|r| r[..12.min(r.len())].to_string())
                    .collect();
                outln!(
                    "{}:{} {} {} bytes {} in {}",
                    disk + 1,
                    part,
                    v.path,
                    v.size,
                    v.mtime.as_deref().unwrap_or("-"),
                    short.join(",")
                );
            }
        }
    }
    Ok(())
}

pub fn diff(a: &DiffArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let old = resolve_restore_point(&repo, &a.from)?;
    let new = resolve_restore_point(&repo, &a.to)?;
    let mo = repo.load_manifest_file(&old)?;
    let mn = repo.load_manifest_file(&new)?;
    let store = RepoReadStore(&repo);
    for vn in &mn.volumes {
        let Some(new_root) = vn.catalog_root else {
            continue;
        };
        let vo = mo
            .volumes
            .iter()
            .find(|v| v.disk == vn.disk && v.partition == vn.partition && v.catalog_root.is_some());
        let changes = match vo.and_then(|v| v.catalog_root) {
            Some(old_root) => cairn_catalog::diff(&store, old_root.0, new_root.0)?,
            None => {
                // A volume new in the second restore point: everything is added.
                let cat = catalog_of(&store, vn)?;
                let mut all = Vec::new();
                cat.walk(&mut |p, _| {
                    all.push(p.to_string());
                    Ok(())
                })?;
                for p in all {
                    if a.json {
                        outln!(
                            "{}",
                            json!({"disk": vn.disk + 1, "partition": vn.partition, "path": p, "change": "added"})
                        );
                    } else {
                        outln!("+ {}:{} {p}", vn.disk + 1, vn.partition);
                    }
                }
                continue;
            }
        };
        for c in changes {
            if a.json {
                let mut j = serde_json::to_value(&c)?;
                j["disk"] = json!(vn.disk + 1);
                j["partition"] = json!(vn.partition);
                outln!("{j}");
            } else {
                let j = serde_json::to_value(&c)?;
                let sign = match j["change"].as_str() {
                    Some("added") => '+',
                    Some("removed") => '-',
                    _ => 'M',
                };
                outln!("{sign} {}:{} {}", vn.disk + 1, vn.partition, c.path);
            }
        }
    }
    Ok(())
}

/// Restores files by opening the guest file system over the restore point's disk read
/// straight from the repository: only the chunks holding file-system metadata and the
/// files' own extents are fetched.
pub fn restore_file(a: &RestoreFileArgs) -> Result<()> {
    let repo = Arc::new(open_repo(&a.repo)?);
    let spec = parse_spec(&repo, &a.restore_point)?;
    let m = repo.load_manifest_file(&spec.id)?;
    let vol = pick_volume(&m.volumes, &spec)?;
    let disk = RestoredDisk::open(repo.clone(), &spec.id, usize::try_from(vol.disk)?)?;
    let disk: Arc<dyn ReadAt> = Arc::new(disk);
    let fs = crate::files::guest_of(disk, Some(vol.partition).filter(|p| *p != 0))
        .with_context(|| format!("restore point {}", spec.id))?;
    let stats = crate::files::extract_from(&fs, &a.paths, &a.to, a.metadata)?;
    for w in &stats.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "restored {} files, {} directories, {} bytes",
        stats.files, stats.dirs, stats.bytes
    );
    Ok(())
}

/// Most problems listed per volume by `verify --recoverable`.
const MAX_PROBLEMS_LISTED: usize = 50;

/// `cairn verify --recoverable RP`: re-reads a restore point through the partition table
/// and guest file-system readers, from the repository: every directory of every catalog is
/// looked up, kinds, sizes and extents compared, and (a sample of) file contents read, which
/// verifies each chunk on the way. Returns whether every volume is recoverable.
pub fn verify_recoverable(
    repo_args: &RepoArgs,
    spec: &str,
    sample_percent: u8,
    as_json: bool,
) -> Result<bool> {
    let repo = Arc::new(open_repo(repo_args)?);
    let spec = parse_spec(&repo, spec)?;
    let m = repo.load_manifest_file(&spec.id)?;
    let store = RepoReadStore(&repo);
    let mut all_ok = true;
    let mut disks: Vec<Option<Arc<dyn ReadAt>>> = Vec::new();
    for v in &m.volumes {
        let mut problems: Vec<String> = Vec::new();
        let (mut entries, mut files_read, mut bytes_read) = (0u64, 0u64, 0u64);
        let status = if v.catalog_root.is_none() {
            "block-level"
        } else {
            let disk_index = usize::try_from(v.disk)?;
            if disks.len() <= disk_index {
                disks.resize(disk_index + 1, None);
            }
            if disks[disk_index].is_none() {
                disks[disk_index] = Some(Arc::new(RestoredDisk::open(
                    repo.clone(),
                    &spec.id,
                    disk_index,
                )?));
            }
            let disk = disks[disk_index]
                .clone()
                .unwrap_or_else(|| Arc::new(Vec::new()));
            match crate::files::guest_of(disk, Some(v.partition).filter(|p| *p != 0)) {
                Err(e) => problems.push(format!("file system does not open: {e:#}")),
                Ok(fs) => {
                    let cat = catalog_of(&store, v)?;
                    let mut n = 0u64;
                    let walked = cat.walk(&mut |path, e| {
                        entries += 1;
                        let mut problem = |p: String| {
                            if problems.len() < MAX_PROBLEMS_LISTED {
                                problems.push(p);
                            }
                        };
                        let node = match fs.lookup(path) {
                            Ok(node) => node,
                            Err(err) => {
                                problem(format!("{path}: {err}"));
                                return Ok(());
                            }
                        };
                        let meta = match fs.metadata(node) {
                            Ok(m) => m,
                            Err(err) => {
                                problem(format!("{path}: {err}"));
                                return Ok(());
                            }
                        };
                        if meta.kind.as_str() != e.kind.as_str()
                            || (e.kind == cairn_catalog::Kind::File && meta.size != e.size)
                        {
                            problem(format!(
                                "{path}: catalog says {} of {} bytes, volume has {} of {}",
                                e.kind.as_str(),
                                e.size,
                                meta.kind.as_str(),
                                meta.size
                            ));
                        }
                        if e.kind == cairn_catalog::Kind::Dir {
                            if let Err(err) = fs.read_dir(node) {
                                problem(format!("{path}: directory unreadable: {err}"));
                            }
                        } else if e.kind == cairn_catalog::Kind::File && !e.excluded {
                            n += 1;
                            if sample_percent >= 100
                                || (n * u64::from(sample_percent)) % 100 < u64::from(sample_percent)
                            {
                                match fs.extents(node, None) {
                                    Ok(ext) if !e.extents.is_empty() => {
                                        let ext: Vec<cairn_catalog::Extent> =
                                            ext.into_iter().map(Into::into).collect();
                                        if ext != e.extents {
                                            problem(format!(
                                                "{path}: extents differ from the catalog"
                                            ));
                                        }
                                    }
                                    Ok(_) => {}
                                    Err(err) => problem(format!("{path}: extents: {err}")),
                                }
                                match fs
                                    .open_stream(node, None)
                                    .map_err(anyhow::Error::from)
                                    .and_then(|r| read_all(&*r))
                                {
                                    Ok(b) => {
                                        files_read += 1;
                                        bytes_read += b;
                                    }
                                    Err(err) => {
                                        problem(format!("{path}: content unreadable: {err:#}"))
                                    }
                                }
                            }
                        }
                        Ok(())
                    });
                    if let Err(e) = walked {
                        problems.push(format!("catalog: {e}"));
                    }
                }
            }
            if problems.is_empty() {
                "recoverable"
            } else {
                "NOT RECOVERABLE"
            }
        };
        let recoverable = problems.is_empty();
        all_ok &= recoverable;
        if as_json {
            outln!(
                "{}",
                json!({"disk": v.disk + 1, "partition": v.partition, "filesystem": v.fs, "status": status.to_lowercase(),
                    "recoverable": recoverable, "entries": entries, "files_read": files_read, "bytes_read": bytes_read,
                    "note": v.note, "problems": problems})
            );
        } else {
            outln!(
                "disk {} partition {} ({}): {status}: {entries} entries, {files_read} files ({bytes_read} bytes) read{}",
                v.disk + 1,
                v.partition,
                v.fs,
                v.note.as_deref().map(|n| format!(" [{n}]")).unwrap_or_default()
            );
            for p in &problems {
                outln!("  problem: {p}");
            }
        }
    }
    Ok(all_ok)
}

fn read_all(r: &dyn ReadAt) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < r.size() {
        let n = usize::try_from((r.size() - off).min(buf.len() as u64))?;
        r.read_exact_at(&mut buf[..n], off)?;
        off += n as u64;
    }
    Ok(off)
}
