//! # cairn-guestfs
//!
//! One entry point to the guest file systems of a disk: find the volumes (partitions, or the
//! whole disk when it has no table), probe each, and open NTFS, FAT12/16/32, exFAT or
//! ext2/3/4 behind one API ([`GuestFs`]), with path lookup and a bounded tree walk.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_guestfs::volumes;
//!
//! // An empty (all-zero) disk has one volume, the whole disk, with no file system.
//! let disk: Arc<dyn cairn_io::ReadAt> = Arc::new(vec![0u8; 1 << 20]);
//! let vols = volumes(disk).unwrap();
//! assert_eq!(vols.len(), 1);
//! assert_eq!(vols[0].fs_kind, cairn_part::FsKind::Unknown);
//! ```
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::sync::Arc;

use cairn_io::{AllocationMap, Limits, ReadAt, Slice};
use cairn_part::FsKind;
pub use cairn_vfs::{DirEntry, FileExtent, FileKind, FileSystem, Metadata, NodeId, VolumeInfo};

/// Errors of the guest file-system layer: the reader's own error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ext reader failed.
    #[error(transparent)]
    Ext(#[from] cairn_ext::Error),
    /// The FAT/exFAT reader failed.
    #[error(transparent)]
    Fat(#[from] cairn_fat::Error),
    /// The NTFS reader failed.
    #[error(transparent)]
    Ntfs(#[from] cairn_ntfs::Error),
    /// The partition table could not be read.
    #[error(transparent)]
    Part(#[from] cairn_part::Error),
    /// The volume holds no file system this crate reads.
    #[error("volume holds {0}, which Cairn does not read")]
    Unsupported(&'static str),
    /// A path names nothing.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// A path goes through something that is not a directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A walk met a directory twice (a loop in a damaged file system) or went too deep.
    #[error("{path}: {what}")]
    Walk {
        /// Where.
        path: String,
        /// What happened.
        what: String,
    },
    /// No partition with that number.
    #[error("no partition {0} on this disk")]
    NoSuchPartition(u32),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open guest file system of any supported kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum GuestFs {
    /// ext2/3/4.
    Ext(cairn_ext::ExtFs),
    /// FAT12/16/32 or exFAT.
    Fat(cairn_fat::FatFs),
    /// NTFS.
    Ntfs(cairn_ntfs::NtfsFs),
}

macro_rules! each {
    ($self:ident, $fs:ident => $e:expr) => {
        match $self {
            GuestFs::Ext($fs) => $e.map_err(Error::from),
            GuestFs::Fat($fs) => $e.map_err(Error::from),
            GuestFs::Ntfs($fs) => $e.map_err(Error::from),
        }
    };
}

impl GuestFs {
    /// Opens `vol` as the file system `kind` says (from [`cairn_part::probe_filesystem`]).
    pub fn open_as(vol: Arc<dyn ReadAt>, kind: FsKind, limits: &Limits) -> Result<GuestFs> {
        Ok(match kind {
            FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
                let mut opts = cairn_ext::ExtOptions::default();
                opts.limits = limits.clone();
                GuestFs::Ext(cairn_ext::ExtFs::open(vol, &opts)?)
            }
            FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 | FsKind::ExFat => {
                GuestFs::Fat(cairn_fat::FatFs::open(
                    vol,
                    &cairn_fat::FatOptions::default().with_limits(limits.clone()),
                )?)
            }
            FsKind::Ntfs => {
                let opts = cairn_ntfs::NtfsOptions::with_limits(limits.clone());
                GuestFs::Ntfs(cairn_ntfs::NtfsFs::open(vol, &opts)?)
            }
            other => return Err(Error::Unsupported(other.as_str())),
        })
    }

    /// Probes `vol` and opens it.
    pub fn open(vol: Arc<dyn ReadAt>, limits: &Limits) -> Result<GuestFs> {
        let kind = cairn_part::probe_filesystem(&vol);
        Self::open_as(vol, kind, limits)
    }

    /// Volume facts.
    pub fn info(&self) -> VolumeInfo {
        match self {
            GuestFs::Ext(fs) => fs.info(),
            GuestFs::Fat(fs) => fs.info(),
            GuestFs::Ntfs(fs) => fs.info(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> NodeId {
        match self {
            GuestFs::Ext(fs) => fs.root(),
            GuestFs::Fat(fs) => fs.root(),
            GuestFs::Ntfs(fs) => fs.root(),
        }
    }

    /// Entries of a directory.
    pub fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        each!(self, fs => fs.read_dir(dir))
    }

    /// Metadata of a node.
    pub fn metadata(&self, node: NodeId) -> Result<Metadata> {
        each!(self, fs => fs.metadata(node))
    }

    /// A stream's bytes.
    pub fn open_stream(&self, node: NodeId, stream: Option<&str>) -> Result<Arc<dyn ReadAt>> {
        each!(self, fs => fs.open(node, stream))
    }

    /// Where a stream lies on the volume.
    pub fn extents(&self, node: NodeId, stream: Option<&str>) -> Result<Vec<FileExtent>> {
        each!(self, fs => fs.extents(node, stream))
    }

    /// Used-block map of the volume.
    pub fn used_map(&self) -> Result<AllocationMap> {
        each!(self, fs => fs.used_map())
    }

    /// Resolves a `/`-separated path from the root (no symlinks followed). Names compare
    /// exactly first, then case-insensitively on FAT, exFAT and NTFS.
    pub fn lookup(&self, path: &str) -> Result<NodeId> {
        let case_insensitive = !matches!(self, GuestFs::Ext(_));
        let mut node = self.root();
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            walked.push('/');
            walked.push_str(part);
            let meta_kind = self.metadata(node)?.kind;
            if meta_kind != FileKind::Dir {
                return Err(Error::NotADirectory(walked));
            }
            let entries = self.read_dir(node)?;
            let found = entries.iter().find(|e| e.name == part).or_else(|| {
                if case_insensitive {
                    entries
                        .iter()
                        .find(|e| e.name.to_lowercase() == part.to_lowercase())
                } else {
                    None
                }
            });
            node = found.ok_or_else(|| Error::NotFound(walked.clone()))?.id;
        }
        Ok(node)
    }

    /// Walks the tree under `start` (whose path is `start_path`) depth first, calling
    /// `visit(path, entry)` for every entry. Directories met twice (loops) end the walk with
    /// an error; depth is capped by `max_depth`.
    pub fn walk(
        &self,
        start: NodeId,
        start_path: &str,
        max_depth: u32,
        visit: &mut dyn FnMut(&str, &DirEntry) -> Result<()>,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        seen.insert(start);
        // Depth-first, names in order: a stack of (directory path, remaining entries).
        let sorted = |dir: NodeId| -> Result<Vec<DirEntry>> {
            let mut v = self.read_dir(dir)?;
            v.sort_by(|a, b| b.name.cmp(&a.name));
            Ok(v)
        };
        let mut stack: Vec<(String, Vec<DirEntry>)> =
            vec![(start_path.trim_end_matches('/').to_string(), sorted(start)?)];
        while let Some((path, entries)) = stack.last_mut() {
            let Some(e) = entries.pop() else {
                stack.pop();
                continue;
            };
            let child = format!("{path}/{}", e.name);
            visit(&child, &e)?;
            if e.kind == FileKind::Dir {
                if stack.len() > usize::try_from(max_depth).unwrap_or(usize::MAX) {
                    return Err(Error::Walk {
                        path: child,
                        what: format!("deeper than {max_depth} directories"),
                    });
                }
                if !seen.insert(e.id) {
                    return Err(Error::Walk {
                        path: child,
                        what: "directory loop".into(),
                    });
                }
                let entries = sorted(e.id)?;
                stack.push((child, entries));
            }
        }
        Ok(())
    }
}

/// One volume of a disk.
#[derive(Clone)]
pub struct Volume {
    /// Partition number (1-based), or 0 for a disk without a partition table.
    pub index: u32,
    /// Start on the disk, bytes.
    pub start: u64,
    /// Size, bytes.
    pub size: u64,
    /// Partition type name (`-` for a whole disk).
    pub type_name: &'static str,
    /// What the first sectors look like.
    pub fs_kind: FsKind,
    /// The volume's bytes.
    pub reader: Arc<dyn ReadAt>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("index", &self.index)
            .field("start", &self.start)
            .field("size", &self.size)
            .field("type_name", &self.type_name)
            .field("fs_kind", &self.fs_kind)
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// Opens the volume's file system.
    pub fn open_fs(&self, limits: &Limits) -> Result<GuestFs> {
        GuestFs::open_as(self.reader.clone(), self.fs_kind, limits)
    }
}

/// The volumes of a disk: its partitions (extended containers left out), or the whole disk
/// when there is no partition table.
pub fn volumes(disk: Arc<dyn ReadAt>) -> Result<Vec<Volume>> {
    let table = cairn_part::read_partition_table(&disk)?;
    if table.scheme == cairn_part::Scheme::None {
        let kind = cairn_part::probe_filesystem(&disk);
        return Ok(vec![Volume {
            index: 0,
            start: 0,
            size: disk.size(),
            type_name: "-",
            fs_kind: kind,
            reader: disk,
        }]);
    }
    let mut out = Vec::new();
    for p in &table.partitions {
        if matches!(p.kind, cairn_part::PartitionType::Mbr(0x05 | 0x0F | 0x85)) {
            continue;
        }
        let Ok(slice) = Slice::new(disk.clone(), p.start, p.size) else {
            continue;
        };
        let reader: Arc<dyn ReadAt> = Arc::new(slice);
        let kind = cairn_part::probe_filesystem(&reader);
        out.push(Volume {
            index: p.index,
            start: p.start,
            size: p.size,
            type_name: p.type_name,
            fs_kind: kind,
            reader,
        });
    }
    Ok(out)
}

/// The volume `--partition N` names: partition N, or the whole disk when N is `None` and
/// the disk has no partition table (or exactly one readable volume).
pub fn select_volume(disk: Arc<dyn ReadAt>, partition: Option<u32>) -> Result<Volume> {
    let vols = volumes(disk)?;
    match partition {
        Some(n) => vols
            .into_iter()
            .find(|v| v.index == n)
            .ok_or(Error::NoSuchPartition(n)),
        None => {
            let readable: Vec<_> = vols.iter().filter(|v| is_readable(v.fs_kind)).collect();
            if vols.len() == 1 || readable.len() == 1 {
                let pick = readable.first().map_or(0, |v| v.index);
                vols.into_iter()
                    .find(|v| v.index == pick || pick == 0)
                    .ok_or(Error::NoSuchPartition(0))
            } else {
                Err(Error::Walk {
                    path: "/".into(),
                    what: format!(
                        "the disk has {} volumes with file systems: choose one with --partition N",
                        readable.len()
                    ),
                })
            }
        }
    }
}

/// True for the file systems this crate opens.
pub fn is_readable(kind: FsKind) -> bool {
    matches!(
        kind,
        FsKind::Ext2
            | FsKind::Ext3
            | FsKind::Ext4
            | FsKind::Fat12
            | FsKind::Fat16
            | FsKind::Fat32
            | FsKind::ExFat
            | FsKind::Ntfs
    )
}
