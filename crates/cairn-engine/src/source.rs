//! Turning a disk image into a backup source: open it with its chain, then (data aware)
//! read each guest volume's used-block map and leave free blocks, swap partitions and the
//! like unread: they restore as zeros.
use std::path::Path;
use std::sync::Arc;

use cairn_io::{AllocationMap, Limits, RangeKind, ReadAt};
use cairn_part::FsKind;
use cairn_vdisk::{OpenOptions, VirtualDisk};

use crate::{DiskSource, Result};

/// Bytes at the start of every volume that are always read, whatever its bitmap says:
/// boot sectors and boot-loader code (an ext boot block, a VBR) live there and some file
/// systems do not count them as allocated.
pub const VOLUME_HEAD_ALWAYS_READ: u64 = 1 << 20;

/// How to make a [`DiskSource`] of an image.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// How to open the image chain.
    pub open: OpenOptions,
    /// Leave blocks the guest file systems mark free unread (default true).
    pub skip_free: bool,
    /// Leave swap partitions unread (default true; only with `skip_free`).
    pub skip_swap: bool,
    /// Build a file catalog of every readable volume ([`prepare_vm`] only; default true).
    pub catalog: bool,
    /// Guest path globs whose files' data is treated as free and marked `excluded` in the
    /// catalog (`*.mp3`, `/home/*/Music`). Swap and hibernation files are always excluded.
    pub exclude: Vec<String>,
    /// Read at most this many MB/s (10^6 bytes) from each disk while backing it up (the
    /// catalog walk is not throttled: it reads metadata only); `None`: no limit.
    pub read_limit_mb_per_s: Option<u32>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            open: OpenOptions::default(),
            skip_free: true,
            skip_swap: true,
            catalog: true,
            exclude: Vec::new(),
            read_limit_mb_per_s: None,
        }
    }
}

/// What was found on one volume of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeReport {
    /// Partition number (0: the whole disk).
    pub index: u32,
    /// Start on the disk.
    pub start: u64,
    /// Size.
    pub size: u64,
    /// Probed file system.
    pub fs: &'static str,
    /// Bytes the backup leaves unread on this volume (free blocks, swap).
    pub skipped: u64,
    /// Why the volume is read block by block (unknown or damaged file system), if it is.
    pub unparsed: Option<String>,
}

/// What [`open_disk_source`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// Per volume.
    pub volumes: Vec<VolumeReport>,
    /// Disk bytes left unread because the guest does not use them.
    pub bytes_skipped: u64,
}

/// Opens `path` (and its parents) as a backup source. With `skip_free`, each readable
/// guest file system's free blocks are marked unallocated in the source map. A file system
/// that cannot be parsed never fails the backup: its volume is read block by block and the
/// report says why.
pub fn open_disk_source(path: &Path, opts: &SourceOptions) -> Result<(DiskSource, SourceReport)> {
    let disk = VirtualDisk::open(path, &opts.open)?;
    let map = disk.map()?;
    let changed = disk.changed_ranges()?;
    let identity = disk.identity().clone();
    let chain_ids = disk.parent_identities();
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let reader: Arc<dyn ReadAt> = Arc::new(disk);
    let (map, report) = if opts.skip_free {
        skip_free_blocks(reader.clone(), &map, opts.skip_swap, &opts.open.limits)
    } else {
        (map, SourceReport::default())
    };
    let mut source = DiskSource {
        label,
        reader,
        map,
        identity,
        chain_ids,
        changed,
    };
    if let Some(mb) = opts.read_limit_mb_per_s {
        crate::throttle_source(&mut source, mb);
    }
    Ok((source, report))
}

/// Marks the free blocks of every readable volume of `disk` as `Unallocated` in `map`.
pub fn skip_free_blocks(
    disk: Arc<dyn ReadAt>,
    map: &AllocationMap,
    skip_swap: bool,
    limits: &Limits,
) -> (AllocationMap, SourceReport) {
    let mut report = SourceReport::default();
    let volumes = match cairn_guestfs::volumes(disk) {
        Ok(v) => v,
        Err(e) => {
            report.volumes.push(VolumeReport {
                index: 0,
                start: 0,
                size: map.size(),
                fs: "unknown",
                skipped: 0,
                unparsed: Some(format!("partition table: {e}")),
            });
            return (map.clone(), report);
        }
    };
    // Free ranges on the disk, in disk byte offsets.
    let mut free: Vec<(u64, u64)> = Vec::new();
    for v in &volumes {
        let mut vr = VolumeReport {
            index: v.index,
            start: v.start,
            size: v.size,
            fs: v.fs_kind.as_str(),
            skipped: 0,
            unparsed: None,
        };
        if v.fs_kind == FsKind::Swap && skip_swap {
            let head = VOLUME_HEAD_ALWAYS_READ.min(v.size);
            free.push((v.start + head, v.size - head));
        } else if cairn_guestfs::is_readable(v.fs_kind) {
            match v.open_fs(limits).and_then(|fs| fs.used_map()) {
                Ok(used) => {
                    for r in used.ranges_of(RangeKind::Unallocated) {
                        let s = r.offset.max(VOLUME_HEAD_ALWAYS_READ);
                        let e = r.end().min(v.size);
                        if s < e {
                            free.push((v.start + s, e - s));
                        }
                    }
                }
                Err(e) => vr.unparsed = Some(e.to_string()),
            }
        } else {
            vr.unparsed = Some(format!(
                "{} is not read; backed up block by block",
                v.fs_kind.as_str()
            ));
        }
        report.volumes.push(vr);
    }
    free.sort_unstable();
    let (out, skipped) = unmap(map, &free);
    let mut skipped_per_volume = vec![0u64; report.volumes.len()];
    for &(fs, len) in &skipped {
        report.bytes_skipped += len;
        if let Some(i) = report
            .volumes
            .iter()
            .position(|v| v.start <= fs && fs < v.start + v.size)
        {
            skipped_per_volume[i] += len;
        }
    }
    for (v, s) in report.volumes.iter_mut().zip(skipped_per_volume) {
        v.skipped = s;
    }
    (out.finish(), report)
}

/// The disks of one VM made ready for [`crate::backup`]: sources with free and excluded
/// blocks unmapped, and the volume records (with catalogs) for the restore point.
#[derive(Debug)]
pub struct PreparedVm {
    /// One source per image.
    pub sources: Vec<DiskSource>,
    /// Volumes found, for `BackupOptions::volumes`.
    pub volumes: Vec<cairn_repo::VolumeRecord>,
    /// Disk bytes left unread.
    pub bytes_skipped: u64,
}

fn previous_volumes(repo: &cairn_repo::Repository, vm_name: &str) -> Vec<cairn_repo::VolumeRecord> {
    let Ok((list, _)) = repo.summaries() else {
        return Vec::new();
    };
    let Some(last) = list
        .iter()
        .filter(|s| s.vm_name == vm_name)
        .max_by_key(|s| s.time_key())
    else {
        return Vec::new();
    };
    repo.load_manifest_file(&last.id)
        .map(|m| m.volumes)
        .unwrap_or_default()
}

/// Opens the images of one VM, walks every readable guest file system to build its file
/// catalog in `repo` (shared with earlier restore points where directories did not change),
/// and unmaps free blocks, swap and excluded files from the backup sources. A volume whose
/// file system cannot be parsed is backed up block by block and recorded with the reason.
pub fn prepare_vm(
    repo: &cairn_repo::Repository,
    vm_name: &str,
    images: &[&Path],
    opts: &SourceOptions,
) -> Result<PreparedVm> {
    let mut disks = Vec::with_capacity(images.len());
    for path in images {
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        disks.push((label, VirtualDisk::open(path, &opts.open)?));
    }
    prepare_vm_disks(repo, vm_name, disks, opts)
}

/// [`prepare_vm`] of disks already opened, each with the label its restore point records
/// (disks read from inside an archive, say).
pub fn prepare_vm_disks(
    repo: &cairn_repo::Repository,
    vm_name: &str,
    disks: Vec<(String, VirtualDisk)>,
    opts: &SourceOptions,
) -> Result<PreparedVm> {
    let previous = previous_volumes(repo, vm_name);
    let store = crate::RepoCatalogStore::new(repo)?;
    let mut prepared = PreparedVm {
        sources: Vec::new(),
        volumes: Vec::new(),
        bytes_skipped: 0,
    };
    for (disk_index, (label, disk)) in disks.into_iter().enumerate() {
        let map = disk.map()?;
        let changed = disk.changed_ranges()?;
        let identity = disk.identity().clone();
        let chain_ids = disk.parent_identities();
        let reader: Arc<dyn ReadAt> = Arc::new(disk);
        let disk_no = u32::try_from(disk_index).unwrap_or(u32::MAX);
        let mut free: Vec<(u64, u64)> = Vec::new();
        let volumes = match cairn_guestfs::volumes(reader.clone()) {
            Ok(v) => v,
            Err(e) => {
                prepared.volumes.push(cairn_repo::VolumeRecord {
                    disk: disk_no,
                    size: map.size(),
                    fs: "unknown".into(),
                    note: Some(format!("partition table: {e}")),
                    ..Default::default()
                });
                Vec::new()
            }
        };
        for v in &volumes {
            let mut rec = cairn_repo::VolumeRecord {
                disk: disk_no,
                partition: v.index,
                start: v.start,
                size: v.size,
                fs: v.fs_kind.as_str().to_string(),
                ..Default::default()
            };
            let mut vol_free: Vec<(u64, u64)> = Vec::new();
            if v.fs_kind == FsKind::Swap && opts.skip_swap && opts.skip_free {
                let head = VOLUME_HEAD_ALWAYS_READ.min(v.size);
                vol_free.push((head, v.size - head));
            } else if cairn_guestfs::is_readable(v.fs_kind) {
                match v.open_fs(&opts.open.limits) {
                    Ok(fs) => {
                        if opts.skip_free {
                            match fs.used_map() {
                                Ok(used) => vol_free.extend(
                                    used.ranges_of(RangeKind::Unallocated)
                                        .map(|r| (r.offset, r.len)),
                                ),
                                Err(e) => rec.note = Some(format!("used-block map: {e}")),
                            }
                        }
                        if opts.catalog {
                            let case_insensitive =
                                cairn_catalog::CatalogOptions::case_insensitive(&fs);
                            let mut globs = cairn_catalog::CatalogOptions::default_exclusions();
                            for pattern in &opts.exclude {
                                globs.push(
                                    cairn_catalog::Glob::with_case(pattern, case_insensitive)
                                        .map_err(|e| {
                                            crate::Error::Invalid(format!(
                                                "--exclude {pattern}: {e}"
                                            ))
                                        })?,
                                );
                            }
                            let mut copts = cairn_catalog::CatalogOptions::with_exclude(globs);
                            copts.base_sd_table = previous
                                .iter()
                                .find(|p| {
                                    p.disk == disk_no && p.partition == v.index && p.fs == rec.fs
                                })
                                .and_then(|p| p.sd_table)
                                .map(|b| b.0);
                            match cairn_catalog::build_volume_catalog(&fs, &store, &copts) {
                                Ok(cat) => {
                                    rec.catalog_root = Some(cairn_repo::BlobId(cat.root));
                                    rec.sd_table = cat.sd_table.map(cairn_repo::BlobId);
                                    rec.files = cat.stats.files;
                                    rec.dirs = cat.stats.dirs;
                                    rec.excluded_files = cat.stats.excluded_files;
                                    if opts.skip_free {
                                        vol_free.extend(
                                            cat.excluded_ranges.iter().map(|r| (r.offset, r.len)),
                                        );
                                    }
                                }
                                Err(e) => rec.note = Some(format!("catalog: {e}")),
                            }
                            rec.catalog_blobs = store.take_ids();
                        }
                    }
                    Err(e) => {
                        rec.note = Some(format!(
                            "{}: {e}; backed up block by block",
                            v.fs_kind.as_str()
                        ))
                    }
                }
            } else {
                rec.note = Some(format!(
                    "{} is not read; backed up block by block",
                    v.fs_kind.as_str()
                ));
            }
            for (off, len) in vol_free {
                let s = off.max(VOLUME_HEAD_ALWAYS_READ);
                let e = off.saturating_add(len).min(v.size);
                if s < e {
                    free.push((v.start + s, e - s));
                }
            }
            prepared.volumes.push(rec);
        }
        free.sort_unstable();
        let (map, skipped) = unmap(&map, &free);
        for rec in prepared.volumes.iter_mut().filter(|r| r.disk == disk_no) {
            rec.bytes_skipped = skipped
                .iter()
                .filter(|(s, _)| rec.start <= *s && *s < rec.start + rec.size)
                .map(|(_, l)| l)
                .sum();
        }
        prepared.bytes_skipped += skipped.iter().map(|(_, l)| l).sum::<u64>();
        prepared.sources.push(DiskSource {
            label,
            reader,
            map,
            identity,
            chain_ids,
            changed,
        });
    }
    store.finish()?;
    if let Some(mb) = opts.read_limit_mb_per_s {
        for source in &mut prepared.sources {
            crate::throttle_source(source, mb);
        }
    }
    Ok(prepared)
}

/// Marks `free` (sorted disk ranges, possibly overlapping) `Unallocated` where `map` would
/// read; returns the new map and the ranges actually unmapped.
fn unmap(map: &AllocationMap, free: &[(u64, u64)]) -> (AllocationMap, Vec<(u64, u64)>) {
    let mut out = AllocationMap::new(map.size());
    let mut skipped = Vec::new();
    for r in map.runs() {
        if !matches!(r.kind, RangeKind::Data | RangeKind::FromParent) {
            let _ = out.push_depth(r.offset, r.len, r.kind, r.depth);
            continue;
        }
        let mut cur = r.offset;
        let first = free.partition_point(|&(s, l)| s + l <= r.offset);
        for &(s, l) in &free[first..] {
            if s >= r.end() {
                break;
            }
            let fs = s.max(cur);
            let fe = (s + l).min(r.end());
            if fs >= fe {
                continue;
            }
            if fs > cur {
                let _ = out.push_depth(cur, fs - cur, r.kind, r.depth);
            }
            let _ = out.push(fs, fe - fs, RangeKind::Unallocated);
            skipped.push((fs, fe - fs));
            cur = fe;
        }
        if cur < r.end() {
            let _ = out.push_depth(cur, r.end() - cur, r.kind, r.depth);
        }
    }
    (out.finish(), skipped)
}
