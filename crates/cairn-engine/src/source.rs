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
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            open: OpenOptions::default(),
            skip_free: true,
            skip_swap: true,
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
    Ok((
        DiskSource {
            label,
            reader,
            map,
            identity,
            chain_ids,
            changed,
        },
        report,
    ))
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
    let mut out = AllocationMap::new(map.size());
    let mut skipped_per_volume = vec![0u64; report.volumes.len()];
    for r in map.runs() {
        let readable = matches!(r.kind, RangeKind::Data | RangeKind::FromParent);
        if !readable {
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
            report.bytes_skipped += fe - fs;
            if let Some(i) = report
                .volumes
                .iter()
                .position(|v| v.start <= fs && fs < v.start + v.size)
            {
                skipped_per_volume[i] += fe - fs;
            }
            cur = fe;
        }
        if cur < r.end() {
            let _ = out.push_depth(cur, r.end() - cur, r.kind, r.depth);
        }
    }
    for (v, s) in report.volumes.iter_mut().zip(skipped_per_volume) {
        v.skipped = s;
    }
    (out.finish(), report)
}
