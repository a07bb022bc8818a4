//! Recovery at any depth from the repository: ls, find, diff and restore-file on restore
//! points, through their file catalogs and their disks read straight from the repository.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_catalog::{Catalog, Glob, IndexGroup, IndexedPoint, RestorePointRef, Time};
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
    /// Only restore points taken at or after this time (RFC 3339, fractional seconds to
    /// the nanosecond, e.g. 2026-01-02T03:04:05.5+02:00).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Only restore points taken at or before this time (RFC 3339, as --since).
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Walk the catalogs of every restore point instead of using (and updating) the find
    /// index kept in the repository.
    #[arg(long)]
    pub no_index: bool,
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

/// Name of the find-index pointer object: the blob ids of the index groups (see
/// docs/formats/catalog.md, "Find index"). The groups are metadata blobs like catalog blobs;
/// the index is derived data, rebuilt when missing or unreadable.
pub const FIND_INDEX_POINTER: &str = "cache/find-index";
/// Largest pointer object read (its group ids and frame).
const MAX_FIND_POINTER_BYTES: u64 = (cairn_catalog::HEADER_LEN
    + 8
    + (8 + 32 * cairn_catalog::MAX_GROUP_PARTS) * cairn_catalog::MAX_INDEX_GROUPS)
    as u64;

/// The blob ids of each group of the stored find index, as its pointer object names them
/// (`None` when there is no pointer; a pointer removed while being read counts as none).
pub fn read_find_pointer(repo: &Repository) -> Result<Option<Vec<Vec<cairn_catalog::BlobId>>>> {
    let backend = repo.backend();
    let size = match backend.size(FIND_INDEX_POINTER) {
        Err(cairn_repo::Error::NotFound { .. }) => return Ok(None),
        r => r?,
    };
    if size > MAX_FIND_POINTER_BYTES {
        bail!("{FIND_INDEX_POINTER}: {size} bytes, at most {MAX_FIND_POINTER_BYTES}");
    }
    let bytes = match backend.get(FIND_INDEX_POINTER) {
        Err(cairn_repo::Error::NotFound { .. }) => return Ok(None),
        r => r?,
    };
    Ok(Some(cairn_catalog::decode_find_pointer(&bytes)?))
}

/// The find index stored in the repository (empty when there is none).
fn load_find_index(repo: &Repository) -> Result<Vec<IndexGroup>> {
    let Some(ids) = read_find_pointer(repo)? else {
        return Ok(Vec::new());
    };
    let store = RepoReadStore(repo);
    Ok(ids
        .iter()
        .map(|parts| cairn_catalog::get_find_group(&store, parts))
        .collect::<cairn_catalog::Result<Vec<_>>>()?)
}

/// Stores the groups as metadata blobs, then points the pointer object at them.
fn save_find_index(repo: &Repository, groups: &[IndexGroup]) -> Result<()> {
    let store = cairn_engine::RepoCatalogStore::new(repo)?;
    let ids = groups
        .iter()
        .map(|g| cairn_catalog::put_find_group(&store, g))
        .collect::<cairn_catalog::Result<Vec<_>>>()?;
    store.finish()?;
    repo.backend().put(
        FIND_INDEX_POINTER,
        &cairn_catalog::encode_find_pointer(&ids)?,
    )?;
    Ok(())
}

/// A restore point's volume with a catalog, as `find` searches it.
struct FindPoint {
    id: String,
    time: i64,
    /// Nanoseconds within `time` (0 when the restore point did not record them).
    nanos: u32,
    vm: String,
    disk: u32,
    partition: u32,
    fs: String,
    root: cairn_catalog::BlobId,
    sd_table: Option<cairn_catalog::BlobId>,
}

pub fn find(a: &FindArgs) -> Result<()> {
    let repo = open_repo(&a.repo)?;
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    // Instants: `--until 2026-01-02T03:04:05Z` ends at 05.000000000, a fraction moves it.
    let to_time = |t: Option<cairn_engine::policy::Rfc3339Time>| {
        t.map(|t| Time {
            secs: t.secs,
            nanos: t.nanos.unwrap_or(0),
        })
    };
    let (since, until) = (to_time(since), to_time(until));
    let mut points: Vec<FindPoint> = Vec::new();
    for s in cairn_engine::snapshots(&repo)? {
        if a.vm.as_ref().is_some_and(|vm| *vm != s.vm_name) {
            continue;
        }
        let m = repo.load_manifest_file(&s.id)?;
        for v in m.volumes {
            if let Some(root) = v.catalog_root {
                points.push(FindPoint {
                    id: s.id.to_string(),
                    time: s.time,
                    nanos: s.time_nanos.unwrap_or(0),
                    vm: s.vm_name.clone(),
                    disk: v.disk,
                    partition: v.partition,
                    fs: v.fs,
                    root: root.0,
                    sd_table: v.sd_table.map(|b| b.0),
                });
            }
        }
    }
    // One search per volume position: paths of different volumes are different files.
    let mut positions: Vec<(u32, u32)> = points.iter().map(|p| (p.disk, p.partition)).collect();
    positions.sort_unstable();
    positions.dedup();
    let store = RepoReadStore(&repo);
    let groups = if a.no_index {
        None
    } else {
        Some(updated_find_index(&repo, &points, a.vm.as_deref())?)
    };
    for (disk, part) in positions {
        let at: Vec<&FindPoint> = points
            .iter()
            .filter(|p| p.disk == disk && p.partition == part)
            .collect();
        let ci = at.first().is_some_and(|p| !p.fs.starts_with("ext"));
        let glob =
            Glob::with_case(&a.pattern, ci).with_context(|| format!("pattern {:?}", a.pattern))?;
        let versions = match &groups {
            Some(groups) => {
                let mut mine: Vec<&IndexGroup> = groups
                    .iter()
                    .filter(|g| g.disk == disk && g.partition == part)
                    .filter(|g| a.vm.as_ref().is_none_or(|vm| *vm == g.vm))
                    .collect();
                mine.sort_by(|x, y| x.vm.cmp(&y.vm));
                mine.iter()
                    .flat_map(|g| g.find(&glob, since, until))
                    .collect()
            }
            None => {
                let cats = at
                    .iter()
                    .map(|p| {
                        Ok(Catalog::open(&store, p.root)?
                            .with_sd_table(p.sd_table)
                            .with_case_insensitive_paths(ci))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<RestorePointRef<'_, '_, RepoReadStore<'_>>> = at
                    .iter()
                    .zip(&cats)
                    .map(|(p, cat)| RestorePointRef {
                        id: p.id.clone(),
                        time: Time {
                            secs: p.time,
                            nanos: p.nanos,
                        },
                        vm_name: p.vm.clone(),
                        catalog: cat,
                    })
                    .collect();
                cairn_catalog::find_versions(&refs, &glob, since, until)?
            }
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for v in versions {
            if a.json {
                let mut j = serde_json::to_value(&v)?;
                j["disk"] = json!(disk + 1);
                j["partition"] = json!(part);
                writeln_or_exit(&mut out, format_args!("{j}"))?;
            } else {
                let short: Vec<&str> = v
                    .restore_points
                    .iter()
                    .map(|r| &r[..12.min(r.len())])
                    .collect();
                writeln_or_exit(
                    &mut out,
                    format_args!(
                        "{}:{} {} {} bytes {} in {}",
                        disk + 1,
                        part,
                        v.path,
                        v.size,
                        v.mtime.as_deref().unwrap_or("-"),
                        short.join(",")
                    ),
                )?;
            }
        }
        std::io::Write::flush(&mut out).or_else(broken_pipe_ok)?;
    }
    Ok(())
}

/// A closed stdout (`cairn find ... | head`) ends the listing quietly.
fn broken_pipe_ok(e: std::io::Error) -> Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Err(e.into())
}

fn writeln_or_exit(out: &mut impl std::io::Write, args: std::fmt::Arguments<'_>) -> Result<()> {
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .or_else(broken_pipe_ok)
}

/// The find index, brought up to date with `points` (the groups of VMs other than `vm`, when
/// one is named, are kept as they are) and saved when it changed. An unreadable index is
/// rebuilt; an index that cannot be saved (read-only repository) is still used.
fn updated_find_index(
    repo: &Repository,
    points: &[FindPoint],
    vm: Option<&str>,
) -> Result<Vec<IndexGroup>> {
    let mut groups = load_find_index(repo).unwrap_or_else(|e| {
        eprintln!("warning: find index unreadable, rebuilding it: {e:#}");
        Vec::new()
    });
    let store = RepoReadStore(repo);
    let mut keys: Vec<(&str, u32, u32)> = points
        .iter()
        .map(|p| (p.vm.as_str(), p.disk, p.partition))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut changed = false;
    // Groups of the VMs searched that no longer have restore points go.
    let before = groups.len();
    groups.retain(|g| {
        vm.is_some_and(|v| v != g.vm) || keys.contains(&(g.vm.as_str(), g.disk, g.partition))
    });
    changed |= groups.len() != before;
    for (vm_name, disk, part) in keys {
        let wanted: Vec<IndexedPoint> = points
            .iter()
            .filter(|p| p.vm == vm_name && p.disk == disk && p.partition == part)
            .map(|p| IndexedPoint {
                id: p.id.clone(),
                time: Time {
                    secs: p.time,
                    nanos: p.nanos,
                },
                root: p.root,
            })
            .collect();
        let g = match groups
            .iter()
            .position(|g| g.vm == vm_name && g.disk == disk && g.partition == part)
        {
            Some(i) => &mut groups[i],
            None => {
                groups.push(IndexGroup::new(vm_name, disk, part));
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        changed |= g.update(&store, &wanted)?.changed();
    }
    if changed {
        if let Err(e) = save_find_index(repo, &groups) {
            eprintln!("warning: find index not saved: {e:#}");
        }
    }
    Ok(groups)
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

/// Restores files. Without `--metadata`, regular files, directories and symlinks come from
/// the catalog: a file's bytes are read through its recorded extents, so only the chunks
/// holding them are fetched (plus the catalog blobs on the path and the disk's chunk list).
/// Entries the catalog cannot give alone (encoded or inline data, incomplete entries), and
/// everything with `--metadata`, are read through the guest file system opened over the
/// restore point's disk, which fetches the chunks of the file-system metadata it walks.
pub fn restore_file(a: &RestoreFileArgs) -> Result<()> {
    let repo = Arc::new(open_repo(&a.repo)?);
    let spec = parse_spec(&repo, &a.restore_point)?;
    let m = repo.load_manifest_file(&spec.id)?;
    let vol = pick_volume(&m.volumes, &spec)?;
    let disk: Arc<dyn ReadAt> = Arc::new(RestoredDisk::open(
        repo.clone(),
        &spec.id,
        usize::try_from(vol.disk)?,
    )?);
    let guest = std::cell::OnceCell::new();
    let open_guest = || -> Result<&cairn_guestfs::GuestFs> {
        if let Some(fs) = guest.get() {
            return Ok(fs);
        }
        let fs = crate::files::guest_of(disk.clone(), Some(vol.partition).filter(|p| *p != 0))
            .with_context(|| format!("restore point {}", spec.id))?;
        Ok(guest.get_or_init(|| fs))
    };
    let store = RepoReadStore(&repo);
    let stats = if a.metadata || vol.catalog_root.is_none() {
        crate::files::extract_from(open_guest()?, &a.paths, &a.to, a.metadata)?
    } else {
        let cat = catalog_of(&store, vol)?;
        std::fs::create_dir_all(&a.to).with_context(|| a.to.display().to_string())?;
        let mut stats = crate::files::ExtractStats::default();
        for p in &a.paths {
            let norm = format!(
                "/{}",
                p.split('/')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let Some(entry) = cat.lookup(&norm)? else {
                bail!(
                    "{norm}: no such file or directory in restore point {}",
                    spec.id
                );
            };
            let name = norm.rsplit('/').next().unwrap_or("");
            let dest = if name.is_empty() {
                a.to.clone()
            } else {
                crate::files::check_name(name)?;
                a.to.join(name)
            };
            let r = CatalogRestore {
                cat: &cat,
                disk: &disk,
                volume_start: vol.start,
                volume_size: vol.size,
                open_guest: &open_guest,
                ntfs: vol.fs.eq_ignore_ascii_case("ntfs"),
            };
            r.entry(&entry, &norm, &dest, &mut stats, 0)?;
        }
        stats
    };
    for w in &stats.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "restored {} files, {} directories, {} bytes",
        stats.files, stats.dirs, stats.bytes
    );
    Ok(())
}

/// Restore of catalog entries (see [`restore_file`]).
struct CatalogRestore<'a, 's, F> {
    cat: &'a Catalog<'s, RepoReadStore<'s>>,
    disk: &'a Arc<dyn ReadAt>,
    volume_start: u64,
    volume_size: u64,
    open_guest: &'a F,
    /// The volume is NTFS: a tree restore of its root leaves out the metadata files.
    ntfs: bool,
}

/// NTFS keeps its own metadata as files in the root directory (`$MFT`, `$LogFile`,
/// `$Bitmap`, `$BadClus` whose `$Bad` stream spans the whole volume, `$Extend`, ...): MFT
/// records 0-23 are reserved for them. They are file-system internals, not user data.
fn is_ntfs_metafile(e: &cairn_catalog::Entry) -> bool {
    const FIRST_USER_RECORD: u64 = 24;
    const RECORD_MASK: u64 = (1 << 48) - 1;
    e.name.starts_with('$') && (e.node & RECORD_MASK) < FIRST_USER_RECORD
}

impl<'g, F> CatalogRestore<'_, '_, F>
where
    F: Fn() -> Result<&'g cairn_guestfs::GuestFs>,
{
    fn entry(
        &self,
        e: &cairn_catalog::Entry,
        guest_path: &str,
        dest: &std::path::Path,
        stats: &mut crate::files::ExtractStats,
        depth: u32,
    ) -> Result<()> {
        if depth > cairn_catalog::DEFAULT_MAX_DEPTH {
            bail!(
                "{guest_path}: deeper than {} directories",
                cairn_catalog::DEFAULT_MAX_DEPTH
            );
        }
        match e.kind {
            cairn_catalog::Kind::Dir if e.child.is_some() => {
                std::fs::create_dir_all(dest).with_context(|| dest.display().to_string())?;
                stats.dirs += 1;
                let list = if guest_path == "/" { "/" } else { guest_path };
                for c in self.cat.list(list)? {
                    // Restoring a root restores the user's files; a metadata file named
                    // on the command line is still restored.
                    if self.ntfs && guest_path == "/" && is_ntfs_metafile(&c) {
                        continue;
                    }
                    crate::files::check_name(&c.name).with_context(|| guest_path.to_string())?;
                    let child = format!("{}/{}", guest_path.trim_end_matches('/'), c.name);
                    self.entry(&c, &child, &dest.join(&c.name), stats, depth + 1)?;
                }
            }
            // Its blocks were backed up as free: reading them would give zeros, not the file.
            cairn_catalog::Kind::File if e.excluded => stats.warnings.push(format!(
                "{guest_path}: excluded from this backup (--exclude): its data was not saved; not restored"
            )),
            cairn_catalog::Kind::File => {
                match cairn_catalog::ExtentReader::new(
                    self.disk.clone(),
                    self.volume_start,
                    self.volume_size,
                    e,
                ) {
                    Some(r) => copy_sparse(&r, dest)?,
                    None => {
                        // Encoded, inline or incomplete: the file system reader knows.
                        let fs = (self.open_guest)()?;
                        let node = fs.lookup(guest_path)?;
                        copy_sparse(&*fs.open_stream(node, None)?, dest)?;
                    }
                }
                stats.files += 1;
                stats.bytes += e.size;
            }
            cairn_catalog::Kind::Symlink if e.symlink_target.is_some() => {
                let target = e.symlink_target.clone().unwrap_or_default();
                #[cfg(unix)]
                {
                    let _ = std::fs::remove_file(dest);
                    std::os::unix::fs::symlink(&target, dest)
                        .with_context(|| dest.display().to_string())?;
                }
                #[cfg(not(unix))]
                stats.warnings.push(format!(
                    "{guest_path}: symlink to {target} not created on this platform"
                ));
            }
            cairn_catalog::Kind::Other => stats
                .warnings
                .push(format!("{guest_path}: special file skipped")),
            _ => {
                // A directory or symlink the catalog could not record: the file system may.
                let fs = (self.open_guest)()?;
                let stats2 = crate::files::extract_from(
                    fs,
                    &[guest_path.to_string()],
                    dest.parent().unwrap_or(dest),
                    false,
                )?;
                stats.files += stats2.files;
                stats.dirs += stats2.dirs;
                stats.bytes += stats2.bytes;
                stats.warnings.extend(stats2.warnings);
            }
        }
        Ok(())
    }
}

/// Copies `src` into a new file `dest`, seeking over all-zero blocks (kept sparse).
fn copy_sparse(src: &dyn ReadAt, dest: &std::path::Path) -> Result<()> {
    use std::io::{Seek, Write};
    let mut f = std::fs::File::create(dest).with_context(|| dest.display().to_string())?;
    let size = src.size();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = usize::try_from((size - off).min(buf.len() as u64)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], off)?;
        if buf[..n].iter().all(|&b| b == 0) {
            f.seek(std::io::SeekFrom::Current(i64::try_from(n)?))?;
        } else {
            f.write_all(&buf[..n])?;
        }
        off += n as u64;
    }
    f.set_len(size)?;
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
