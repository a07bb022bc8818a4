//! # cairn-fat
//!
//! A read-only reader of FAT12, FAT16, FAT32 and exFAT volumes on top of any
//! [`cairn_io::ReadAt`], implementing [`cairn_vfs::FileSystem`].
//!
//! [`FatFs::open`] detects the variant itself (exFAT by its `EXFAT   ` signature, FAT12/16/32
//! by cluster count as the Microsoft specification defines it). Every number read from the
//! volume is range-checked, cluster chains stop after as many steps as the volume has
//! clusters, and problems that lose no data (a long name whose checksum does not match, a
//! FAT copy that differs, a chain longer than its file) become warnings in
//! [`VolumeInfo::warnings`](cairn_vfs::VolumeInfo::warnings).
//!
//! Node ids are volume byte offsets of directory entries (the 8.3 entry on FAT, the File
//! entry on exFAT); the root is [`ROOT_ID`].
//!
//! FAT timestamps are local time without a zone; they are read as UTC. exFAT timestamps are
//! converted with their UTC offset when it is recorded.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_fat::{FatFs, FatOptions};
//! use cairn_vfs::{FileSystem, ReadAt};
//!
//! // A minimal FAT12 volume: 64 sectors of 512 bytes, 1 FAT, a 16-entry root directory.
//! let mut img = vec![0u8; 64 * 512];
//! img[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
//! img[11..13].copy_from_slice(&512u16.to_le_bytes()); // bytes per sector
//! img[13] = 1; // sectors per cluster
//! img[14..16].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
//! img[16] = 1; // FATs
//! img[17..19].copy_from_slice(&16u16.to_le_bytes()); // root entries
//! img[19..21].copy_from_slice(&64u16.to_le_bytes()); // total sectors
//! img[21] = 0xF8;
//! img[22..24].copy_from_slice(&1u16.to_le_bytes()); // sectors per FAT
//! img[510..512].copy_from_slice(&[0x55, 0xAA]);
//! img[512..517].copy_from_slice(&[0xF8, 0xFF, 0xFF, 0xFF, 0x0F]); // cluster 2: end of chain
//! let e = 1024; // root directory: HELLO.TXT in cluster 2, 5 bytes
//! img[e..e + 11].copy_from_slice(b"HELLO   TXT");
//! img[e + 11] = 0x20;
//! img[e + 26..e + 28].copy_from_slice(&2u16.to_le_bytes());
//! img[e + 28..e + 32].copy_from_slice(&5u32.to_le_bytes());
//! img[1536..1541].copy_from_slice(b"hello");
//!
//! let fs = FatFs::open(Arc::new(img), &FatOptions::default())?;
//! assert_eq!(fs.info().fs_type, "fat12");
//! let id = fs.lookup("/hello.txt")?; // case-insensitive
//! let data = fs.open(id, None)?;
//! let mut buf = vec![0u8; data.size() as usize];
//! data.read_exact_at(&mut buf, 0)?;
//! assert_eq!(buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod boot;
mod dir;
mod error;
mod names;
mod table;
mod time;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use cairn_io::{Limits, RangeKind};
use cairn_vfs::{
    AllocationMap, DirEntry, FileExtent, FileKind, FileSystem, Metadata, NodeId, ReadAt, VolumeInfo,
};

pub use boot::FatType;
pub use error::{Error, Result};

use boot::Geometry;
use dir::{Listed, Node, ENTRY};
use names::Upcase;
use table::{ClusterRun, Table};

/// The id of the root directory (offset 0 is the boot sector, never a directory entry).
pub const ROOT_ID: NodeId = 0;

/// FAT specification: a directory holds at most 65536 entries (2 MiB).
const FAT_MAX_DIR_BYTES: u64 = 65_536 * 32;
/// exFAT specification: a directory is at most 256 MiB.
const EXFAT_MAX_DIR_BYTES: u64 = 256 << 20;
/// An exFAT up-case table maps at most 65536 code units (128 KiB uncompressed).
const MAX_UPCASE_BYTES: u64 = 128 << 10;
/// Warnings kept per volume; more are counted, not stored.
const MAX_WARNINGS: usize = 256;

/// How to open a volume.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FatOptions {
    /// Caps for disk-derived numbers.
    pub limits: Limits,
    /// Which FAT copy to read (0 = first, the default; an index past the last copy reads the
    /// first). The other copies are compared against it.
    pub fat_copy: u8,
}

impl FatOptions {
    /// Options with these limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Options reading FAT copy `copy` (0-based).
    pub fn with_fat_copy(mut self, copy: u8) -> Self {
        self.fat_copy = copy;
        self
    }
}

/// An open FAT12/16/32 or exFAT volume.
pub struct FatFs {
    src: Arc<dyn ReadAt>,
    geo: Geometry,
    table: Table,
    limits: Limits,
    root: Node,
    label: Option<String>,
    fsinfo_free: Option<u32>,
    used_clusters: u64,
    /// exFAT: allocation bitmap (bit per cluster from cluster 2).
    bitmap: Option<Vec<u8>>,
    /// exFAT: up-case table for name comparison.
    upcase: Option<Upcase>,
    warnings: Mutex<Warnings>,
    /// exFAT entry sets that cross a cluster boundary, as listed (their id alone needs a
    /// guess at the next cluster, see `gather_set`).
    straddling: Mutex<HashMap<NodeId, Node>>,
}

impl std::fmt::Debug for FatFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatFs")
            .field("geometry", &self.geo)
            .field("label", &self.label)
            .field("used_clusters", &self.used_clusters)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Warnings {
    list: Vec<String>,
    dropped: u64,
}

impl Warnings {
    fn push(&mut self, w: String) {
        if self.list.len() < MAX_WARNINGS {
            if !self.list.contains(&w) {
                self.list.push(w);
            }
        } else {
            self.dropped += 1;
        }
    }
}

impl FatFs {
    /// Opens a volume: parses and validates the boot sector, loads the FAT (comparing the
    /// copies), and on exFAT loads the allocation bitmap and up-case table from the root
    /// directory.
    pub fn open(src: Arc<dyn ReadAt>, opts: &FatOptions) -> Result<FatFs> {
        let limits = opts.limits.clone();
        let geo = boot::parse(src.as_ref(), limits.max_unit_bytes)?;
        let mut warnings = Vec::new();
        let table = Table::load(
            src.as_ref(),
            &geo,
            opts.fat_copy,
            limits.max_table_bytes,
            &mut warnings,
        )?;
        warnings.extend(table.dirty_warnings());
        if let Some(active) = geo.active_fat {
            if active != opts.fat_copy {
                warnings.push(format!(
                    "FAT mirroring is disabled and copy {} is the active one; reading copy {} (see FatOptions::with_fat_copy)",
                    u32::from(active) + 1,
                    u32::from(opts.fat_copy) + 1
                ));
            }
        }
        if geo.dirty {
            warnings.push("volume is marked dirty (VolumeDirty flag)".to_string());
        }
        let root = Node {
            kind: FileKind::Dir,
            first_cluster: geo.root_cluster,
            size: 0,
            valid_size: 0,
            contiguous: false,
            attrs: u32::from(dir::ATTR_DIRECTORY),
            btime: None,
            mtime: None,
            atime: None,
        };
        let fsinfo_free = boot::fsinfo_free(src.as_ref(), &geo)?;
        let mut fs = FatFs {
            src,
            geo,
            table,
            limits,
            root,
            label: None,
            fsinfo_free,
            used_clusters: 0,
            bitmap: None,
            upcase: None,
            warnings: Mutex::new(Warnings::default()),
            straddling: Mutex::new(HashMap::new()),
        };
        for w in warnings {
            fs.warn(w);
        }
        if fs.geo.fat_type == FatType::ExFat {
            fs.load_exfat_system()?;
        } else {
            fs.load_fat_system()?;
        }
        Ok(fs)
    }

    /// FAT12, FAT16, FAT32 or exFAT.
    pub fn fat_type(&self) -> FatType {
        self.geo.fat_type
    }

    /// The free-cluster count the FAT32 FSInfo sector claims (a hint; `None` when absent,
    /// invalid or "unknown"). A disagreement with the FAT is reported as a warning.
    pub fn fsinfo_free_clusters(&self) -> Option<u32> {
        self.fsinfo_free
    }

    /// Warnings collected so far (at open and while reading).
    pub fn warnings(&self) -> Vec<String> {
        let w = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v = w.list.clone();
        if w.dropped > 0 {
            v.push(format!("{} more warnings not kept", w.dropped));
        }
        v
    }

    fn warn(&self, w: String) {
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(w);
    }

    fn load_fat_system(&mut self) -> Result<()> {
        let ends = self.table.len();
        self.used_clusters = (2..ends)
            .filter(|&c| u32::try_from(c).is_ok_and(|c| self.table.raw(c) != 0))
            .count() as u64;
        let free = u64::from(self.geo.cluster_count) - self.used_clusters;
        if let Some(hint) = self.fsinfo_free {
            if u64::from(hint) != free {
                self.warn(format!(
                    "FSInfo free-cluster hint {hint} differs from the FAT's count {free}"
                ));
            }
        }
        // The root directory's label entry wins over the boot sector's copy.
        let (buf, _) = self.dir_bytes(ROOT_ID, &self.root.clone())?;
        self.label = buf
            .chunks_exact(ENTRY)
            .take_while(|e| e[0] != 0)
            .find_map(dir::fat_label)
            .or_else(|| self.geo.boot_label.clone());
        Ok(())
    }

    fn load_exfat_system(&mut self) -> Result<()> {
        let (buf, extents) = self.dir_bytes(ROOT_ID, &self.root.clone())?;
        let mut info = dir::ExRootInfo::default();
        let mut w = Vec::new();
        dir::list_exfat(
            &buf,
            &|i| offset_of(&extents, i),
            &dir::ExListing {
                heap_offset: self.geo.heap_offset,
                cluster_size: u64::from(self.geo.cluster_size),
                upcase: None,
                parse_files: false,
            },
            &mut info,
            &mut w,
        )?;
        self.label = info.label;
        let (first, len) = info
            .bitmap
            .ok_or(Error::MissingSystemEntry("allocation bitmap (0x81)"))?;
        let need = u64::from(self.geo.cluster_count).div_ceil(8);
        if len < need {
            return Err(Error::BadEntry {
                offset: 0,
                reason: "allocation bitmap DataLength is smaller than ClusterCount / 8",
            });
        }
        let bitmap = self.read_system_stream(first, need)?;
        self.used_clusters = (0..u64::from(self.geo.cluster_count))
            .filter(|&c| bit(&bitmap, c))
            .count() as u64;
        self.bitmap = Some(bitmap);
        self.upcase = match info.upcase {
            None => {
                w.push("no up-case table: names compared with built-in Unicode upper case".into());
                Some(Upcase::builtin())
            }
            Some((_, len, _)) if len > MAX_UPCASE_BYTES || len % 2 != 0 => {
                w.push(format!(
                    "up-case table length {len} invalid: names compared with built-in Unicode upper case"
                ));
                Some(Upcase::builtin())
            }
            Some((first, len, sum)) => {
                let raw = self.read_system_stream(first, len)?;
                if names::table_checksum(&raw) != sum {
                    w.push("up-case table checksum mismatch: names compared with built-in Unicode upper case".into());
                    Some(Upcase::builtin())
                } else {
                    Some(Upcase::from_table(&raw))
                }
            }
        };
        for m in w {
            self.warn(m);
        }
        Ok(())
    }

    /// Reads `len` bytes of a FAT-chained system stream (bitmap, up-case table).
    fn read_system_stream(&self, first: u32, len: u64) -> Result<Vec<u8>> {
        let node = Node {
            kind: FileKind::File,
            first_cluster: first,
            size: len,
            valid_size: len,
            contiguous: false,
            attrs: 0,
            btime: None,
            mtime: None,
            atime: None,
        };
        let ext = self.data_extents(&node)?;
        read_extents(self.src.as_ref(), &ext, len, self.limits.max_table_bytes)
    }

    /// The node a (validated) id names.
    fn node(&self, id: NodeId) -> Result<Node> {
        if id == ROOT_ID {
            return Ok(self.root.clone());
        }
        let g = &self.geo;
        let in_heap =
            id >= g.heap_offset && id < g.heap_end() && (id - g.heap_offset).is_multiple_of(32);
        if g.fat_type == FatType::ExFat {
            if let Some(n) = self
                .straddling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
            {
                return Ok(n.clone());
            }
            if !in_heap {
                return Err(Error::UnknownNode(id));
            }
            let mut e = [0u8; ENTRY];
            self.src.read_exact_at(&mut e, id)?;
            if e[0] != dir::EX_FILE {
                return Err(Error::UnknownNode(id));
            }
            let sc = dir::ex_secondary_count(&e, id)?;
            let cs = u64::from(g.cluster_size);
            let total = (sc + 1) * ENTRY;
            let set = if dir::set_in_one_cluster(id, sc, g.heap_offset, cs) {
                self.src.read_vec_at(id, total)?
            } else {
                let rel = id - g.heap_offset;
                let cluster = u32::try_from(2 + rel / cs).map_err(|_| Error::UnknownNode(id))?;
                self.gather_set(cluster, rel % cs, total, Vec::with_capacity(total))?
                    .ok_or(Error::UnknownNode(id))?
            };
            let (_, node) = dir::ex_parse_set(&set, id)?;
            return Ok(node);
        }
        let in_root = g.root_dir_bytes > 0
            && id >= g.root_dir_offset
            && id < g.root_dir_offset + g.root_dir_bytes
            && (id - g.root_dir_offset).is_multiple_of(32);
        if !(in_root || in_heap) {
            return Err(Error::UnknownNode(id));
        }
        let mut e = [0u8; ENTRY];
        self.src.read_exact_at(&mut e, id)?;
        if !dir::is_live_short(&e) {
            return Err(Error::UnknownNode(id));
        }
        Ok(dir::fat_node(&e, g.fat_type == FatType::Fat32))
    }

    /// Re-reads an exFAT entry set that crosses a cluster boundary without knowing its
    /// directory: at each boundary the set continues either in the FAT's next cluster or in
    /// the physically next one (NoFatChain directory); the candidate whose SetChecksum
    /// verifies wins. A set is at most 608 bytes, so there are at most two boundaries.
    fn gather_set(
        &self,
        cluster: u32,
        start: u64,
        total: usize,
        mut acc: Vec<u8>,
    ) -> Result<Option<Vec<u8>>> {
        let cs = u64::from(self.geo.cluster_size);
        if cluster < 2 || u64::from(cluster) >= self.geo.cluster_end() || start >= cs {
            return Ok(None);
        }
        let need = total - acc.len();
        let take = usize::try_from(cs - start).map_or(need, |m| m.min(need));
        let at = acc.len();
        acc.resize(at + take, 0);
        self.src
            .read_exact_at(&mut acc[at..], self.geo.cluster_offset(cluster) + start)?;
        if acc.len() == total {
            let ok = dir::set_checksum(&acc) == cairn_io::le::u16_le(&acc, 2);
            return Ok(ok.then_some(acc));
        }
        let mut next = Vec::with_capacity(2);
        if let table::Link::Next(n) = self.table.link(cluster) {
            next.push(n);
        }
        if let Some(n) = cluster.checked_add(1) {
            if !next.contains(&n) {
                next.push(n);
            }
        }
        for n in next {
            if let Some(set) = self.gather_set(n, 0, total, acc.clone())? {
                return Ok(Some(set));
            }
        }
        Ok(None)
    }

    /// The clusters of a node: the whole chain for FAT directories, `ceil(size / cluster)`
    /// clusters otherwise (a longer chain is a warning, a shorter one an error).
    fn cluster_runs(&self, node: &Node) -> Result<Vec<ClusterRun>> {
        let cs = u64::from(self.geo.cluster_size);
        let whole_chain = node.kind == FileKind::Dir && self.geo.fat_type != FatType::ExFat;
        let needed = node.size.div_ceil(cs);
        if needed == 0 && !whole_chain {
            // An empty file owns no clusters; whatever its entry says is not followed.
            return Ok(Vec::new());
        }
        if node.first_cluster == 0 {
            return Err(Error::ChainTooShort {
                start: 0,
                clusters: 0,
                needed: needed.max(1),
                size: node.size,
            });
        }
        if node.contiguous {
            let end = u64::from(node.first_cluster) + needed;
            if node.first_cluster < 2 || end > self.geo.cluster_end() {
                return Err(Error::ClusterOutOfRange {
                    start: node.first_cluster,
                    cluster: u32::try_from(end.saturating_sub(1)).unwrap_or(u32::MAX),
                    end: self.geo.cluster_end(),
                });
            }
            return Ok(if needed == 0 {
                Vec::new()
            } else {
                vec![ClusterRun {
                    first: node.first_cluster,
                    count: needed,
                }]
            });
        }
        let mut runs = self.table.chain(node.first_cluster)?;
        if whole_chain {
            return Ok(runs);
        }
        let total: u64 = runs.iter().map(|r| r.count).sum();
        if total < needed {
            return Err(Error::ChainTooShort {
                start: node.first_cluster,
                clusters: total,
                needed,
                size: node.size,
            });
        }
        if total > needed {
            self.warn(format!(
                "cluster chain starting at {} has {total} clusters, size {} needs {needed}; extra clusters ignored",
                node.first_cluster, node.size
            ));
            let mut left = needed;
            runs.retain_mut(|r| {
                let keep = r.count.min(left);
                left -= keep;
                r.count = keep;
                keep > 0
            });
        }
        Ok(runs)
    }

    /// Where a node's bytes are: file data clipped to its size, bytes past ValidDataLength
    /// as holes; FAT directories span their whole chain.
    fn data_extents(&self, node: &Node) -> Result<Vec<FileExtent>> {
        let cs = u64::from(self.geo.cluster_size);
        let runs = self.cluster_runs(node)?;
        let total: u64 = runs.iter().map(|r| r.count * cs).sum();
        let size = if node.kind == FileKind::Dir && self.geo.fat_type != FatType::ExFat {
            total
        } else {
            node.size
        };
        let valid = if node.kind == FileKind::Dir {
            size
        } else {
            node.valid_size.min(size)
        };
        let mut out = Vec::with_capacity(runs.len() + 1);
        let mut pos = 0u64;
        for r in runs {
            if pos >= valid {
                break;
            }
            let len = (r.count * cs).min(valid - pos);
            out.push(FileExtent {
                file_offset: pos,
                len,
                volume_offset: Some(self.geo.cluster_offset(r.first)),
                encoded: false,
            });
            pos += len;
        }
        if pos < size {
            out.push(FileExtent {
                file_offset: pos,
                len: size - pos,
                volume_offset: None,
                encoded: false,
            });
        }
        Ok(out)
    }

    /// A directory's bytes and where they lie.
    fn dir_bytes(&self, id: NodeId, node: &Node) -> Result<(Vec<u8>, Vec<FileExtent>)> {
        let g = &self.geo;
        let (extents, cap) =
            if id == ROOT_ID && g.fat_type != FatType::Fat32 && g.fat_type != FatType::ExFat {
                let ext = vec![FileExtent {
                    file_offset: 0,
                    len: g.root_dir_bytes,
                    volume_offset: Some(g.root_dir_offset),
                    encoded: false,
                }];
                (ext, FAT_MAX_DIR_BYTES)
            } else if g.fat_type == FatType::ExFat && id == ROOT_ID {
                // The exFAT root has no recorded size: its whole chain.
                let runs = self.table.chain(node.first_cluster)?;
                let cs = u64::from(g.cluster_size);
                let mut pos = 0;
                let ext = runs
                    .iter()
                    .map(|r| {
                        let e = FileExtent {
                            file_offset: pos,
                            len: r.count * cs,
                            volume_offset: Some(g.cluster_offset(r.first)),
                            encoded: false,
                        };
                        pos += r.count * cs;
                        e
                    })
                    .collect();
                (ext, EXFAT_MAX_DIR_BYTES)
            } else {
                let cap = if g.fat_type == FatType::ExFat {
                    EXFAT_MAX_DIR_BYTES
                } else {
                    FAT_MAX_DIR_BYTES
                };
                (self.data_extents(node)?, cap)
            };
        let len: u64 = extents.iter().map(|e| e.len).sum();
        let cap = cap
            .min(self.limits.max_table_bytes)
            .min(self.limits.max_dir_entries.saturating_mul(ENTRY as u64));
        if len > cap {
            return Err(Error::TooLarge {
                what: "directory size in bytes",
                value: len,
                limit: cap,
            });
        }
        let buf = read_extents(self.src.as_ref(), &extents, len, cap)?;
        Ok((buf, extents))
    }

    /// Lists a directory with the reader's own node records.
    fn list(&self, id: NodeId) -> Result<(Node, Vec<Listed>)> {
        let node = self.node(id)?;
        if node.kind != FileKind::Dir {
            return Err(Error::NotADirectory(id));
        }
        let (buf, extents) = self.dir_bytes(id, &node)?;
        let off = |i: usize| offset_of(&extents, i);
        let mut w = Vec::new();
        let listed = if self.geo.fat_type == FatType::ExFat {
            let mut info = dir::ExRootInfo::default();
            let l = dir::list_exfat(
                &buf,
                &off,
                &dir::ExListing {
                    heap_offset: self.geo.heap_offset,
                    cluster_size: u64::from(self.geo.cluster_size),
                    upcase: self.upcase.as_ref(),
                    parse_files: true,
                },
                &mut info,
                &mut w,
            )?;
            let mut side = self
                .straddling
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for e in l.iter().filter(|e| e.straddles) {
                side.insert(e.id, e.node.clone());
            }
            l
        } else {
            dir::list_fat(&buf, &off, self.geo.fat_type == FatType::Fat32, &mut w)
        };
        for m in w {
            self.warn(m);
        }
        Ok((node, listed))
    }

    /// Whether a subdirectory entry points back at the directory itself or at the root
    /// (a certain cycle, which a walk must not follow).
    fn is_cycle(&self, parent: &Node, child: &Node) -> bool {
        child.kind == FileKind::Dir
            && (child.first_cluster == parent.first_cluster
                || child.first_cluster == self.geo.root_cluster)
    }

    /// Case-folds a name the way the volume compares names: the exFAT up-case table, or
    /// simple Unicode upper case on FAT.
    fn fold(&self, name: &str) -> Vec<u16> {
        match &self.upcase {
            Some(t) => t.fold(name.encode_utf16()),
            None => name
                .chars()
                .flat_map(|c| {
                    let mut up = c.to_uppercase();
                    let c = match (up.next(), up.next()) {
                        (Some(u), None) => u,
                        _ => c,
                    };
                    let mut b = [0u16; 2];
                    c.encode_utf16(&mut b).to_vec()
                })
                .collect(),
        }
    }

    /// Resolves a `/`-separated path from the root, comparing names case-insensitively
    /// (as FAT and exFAT do). On FAT a component may also be the 8.3 alias of a long name
    /// (`PROGRA~1`), as Windows accepts. Empty components are ignored; `/` is the root.
    pub fn lookup(&self, path: &str) -> Result<NodeId> {
        let mut cur = ROOT_ID;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let want = self.fold(comp);
            let entries = self.read_dir(cur)?;
            let by_name = entries.iter().find(|e| self.fold(&e.name) == want);
            let by_alias = || {
                entries.iter().find(|e| {
                    self.geo.fat_type != FatType::ExFat
                        && self
                            .short_alias(e.id)
                            .is_some_and(|s| self.fold(&s) == want)
                })
            };
            cur = by_name
                .or_else(by_alias)
                .map(|e| e.id)
                .ok_or_else(|| Error::NotFound(path.to_string()))?;
        }
        Ok(cur)
    }

    /// The 8.3 name of a FAT entry, without the NT case flags.
    fn short_alias(&self, id: NodeId) -> Option<String> {
        let mut e = [0u8; 11];
        self.src.read_exact_at(&mut e, id).ok()?;
        Some(names::short_name(&e, 0))
    }

    /// Walks the whole tree depth-first, calling `visit` with each entry's path (`/a/b`) and
    /// entry. A directory already visited (by first cluster) is not entered again, nor one
    /// deeper than [`Limits::max_dir_depth`]: both are reported as warnings, and so is a
    /// subdirectory that cannot be listed (its error is in the warning). The walk fails when
    /// the root cannot be listed or after [`Limits::max_walk_steps`] entries.
    pub fn walk(&self, visit: &mut dyn FnMut(&str, &DirEntry)) -> Result<()> {
        let mut stack = vec![(String::new(), ROOT_ID, 0u32)];
        let mut seen: HashSet<u32> = HashSet::new();
        seen.insert(self.geo.root_cluster);
        let mut steps = 0u64;
        while let Some((path, dir, depth)) = stack.pop() {
            let entries = match self.read_dir(dir) {
                Ok(v) => v,
                Err(e) if dir != ROOT_ID => {
                    self.warn(format!("{path}: cannot list: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for e in entries {
                steps += 1;
                if steps > self.limits.max_walk_steps {
                    return Err(Error::TooLarge {
                        what: "entries walked",
                        value: steps,
                        limit: self.limits.max_walk_steps,
                    });
                }
                let p = format!("{path}/{}", e.name);
                visit(&p, &e);
                if e.kind != FileKind::Dir {
                    continue;
                }
                let n = self.node(e.id)?;
                if !seen.insert(n.first_cluster) {
                    self.warn(format!(
                        "{p}: directory cluster {} already visited (cycle); not entered",
                        n.first_cluster
                    ));
                } else if depth + 1 > self.limits.max_dir_depth {
                    self.warn(format!(
                        "{p}: deeper than {} levels; not entered",
                        self.limits.max_dir_depth
                    ));
                } else {
                    stack.push((p, e.id, depth + 1));
                }
            }
        }
        Ok(())
    }

    fn file_node(&self, id: NodeId, stream: Option<&str>) -> Result<Node> {
        if let Some(s) = stream {
            return Err(Error::NoSuchStream(s.to_string()));
        }
        let node = self.node(id)?;
        if node.kind == FileKind::Dir {
            return Err(Error::IsADirectory(id));
        }
        Ok(node)
    }
}

/// Whether bit `c` of a bitmap is set.
fn bit(map: &[u8], c: u64) -> bool {
    usize::try_from(c / 8)
        .ok()
        .and_then(|i| map.get(i))
        .is_some_and(|b| b & (1 << (c % 8)) != 0)
}

/// Volume offset of byte `i` of a stream laid out by `extents` (holes map to 0: only
/// directories, which have none, use this).
fn offset_of(extents: &[FileExtent], i: usize) -> u64 {
    let i = i as u64;
    let k = extents.partition_point(|e| e.file_offset + e.len <= i);
    extents
        .get(k)
        .and_then(|e| e.volume_offset.map(|v| v + (i - e.file_offset)))
        .unwrap_or(0)
}

/// Reads a whole (small, limit-checked) stream into memory.
fn read_extents(src: &dyn ReadAt, extents: &[FileExtent], len: u64, cap: u64) -> Result<Vec<u8>> {
    if len > cap {
        return Err(Error::TooLarge {
            what: "metadata stream size in bytes",
            value: len,
            limit: cap,
        });
    }
    let n = usize::try_from(len).map_err(|_| Error::TooLarge {
        what: "metadata stream size in bytes",
        value: len,
        limit: cap,
    })?;
    let mut buf = vec![0u8; n];
    for e in extents {
        let (Ok(s), Ok(l)) = (usize::try_from(e.file_offset), usize::try_from(e.len)) else {
            continue;
        };
        if let Some(v) = e.volume_offset {
            src.read_exact_at(&mut buf[s..s + l], v)?;
        }
    }
    Ok(buf)
}

/// A file's bytes: extents mapped to volume offsets, holes read as zeros.
struct ExtentReader {
    src: Arc<dyn ReadAt>,
    extents: Vec<FileExtent>,
    size: u64,
}

impl std::fmt::Debug for ExtentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtentReader")
            .field("extents", &self.extents)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ReadAt for ExtentReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let want = usize::try_from(self.size - offset).map_or(buf.len(), |m| m.min(buf.len()));
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let k = self
                .extents
                .partition_point(|e| e.file_offset + e.len <= pos);
            let Some(e) = self.extents.get(k) else { break };
            let in_ext = pos - e.file_offset;
            let n = usize::try_from(e.len - in_ext).map_or(want - done, |m| m.min(want - done));
            let dst = &mut buf[done..done + n];
            match e.volume_offset {
                Some(v) => self.src.read_exact_at(dst, v + in_ext)?,
                None => dst.fill(0),
            }
            done += n;
        }
        Ok(done)
    }
}

impl FileSystem for FatFs {
    type Error = Error;

    fn info(&self) -> VolumeInfo {
        let g = &self.geo;
        let used = g.heap_offset + self.used_clusters * u64::from(g.cluster_size);
        VolumeInfo {
            fs_type: g.fat_type.as_str(),
            label: self.label.clone(),
            uuid: Some(format!("{:04X}-{:04X}", g.serial >> 16, g.serial & 0xFFFF)),
            block_size: g.cluster_size,
            total_bytes: g.total_bytes,
            used_bytes: used,
            free_bytes: g.total_bytes.saturating_sub(used),
            warnings: self.warnings(),
        }
    }

    fn root(&self) -> NodeId {
        ROOT_ID
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let (parent, listed) = self.list(dir)?;
        let mut out = Vec::with_capacity(listed.len());
        for e in listed {
            let cycle = self.is_cycle(&parent, &e.node)
                || (e.node.kind == FileKind::Dir
                    && e.node.first_cluster == 0
                    && self.geo.fat_type != FatType::ExFat);
            if cycle {
                self.warn(format!(
                    "directory entry {:?} at offset {} points at its own directory or the root (cluster {}); skipped",
                    e.name, e.id, e.node.first_cluster
                ));
                continue;
            }
            out.push(DirEntry {
                name: e.name,
                id: e.id,
                kind: e.node.kind,
            });
        }
        Ok(out)
    }

    fn metadata(&self, id: NodeId) -> Result<Metadata> {
        let node = self.node(id)?;
        let cs = u64::from(self.geo.cluster_size);
        let mut m = Metadata::new(id, node.kind, node.size);
        m.allocated = if node.kind == FileKind::Dir && self.geo.fat_type != FatType::ExFat {
            if id == ROOT_ID && self.geo.fat_type != FatType::Fat32 {
                Some(self.geo.root_dir_bytes)
            } else {
                self.table
                    .chain(node.first_cluster)
                    .ok()
                    .map(|r| r.iter().map(|r| r.count * cs).sum())
            }
        } else {
            Some(node.size.div_ceil(cs) * cs)
        };
        m.mtime = node.mtime;
        m.atime = node.atime;
        m.btime = node.btime;
        m.windows_attributes = Some(node.attrs);
        Ok(m)
    }

    fn open(&self, id: NodeId, stream: Option<&str>) -> Result<Arc<dyn ReadAt>> {
        let node = self.file_node(id, stream)?;
        let extents = self.data_extents(&node)?;
        Ok(Arc::new(ExtentReader {
            src: Arc::clone(&self.src),
            extents,
            size: node.size,
        }))
    }

    fn extents(&self, id: NodeId, stream: Option<&str>) -> Result<Vec<FileExtent>> {
        let node = self.file_node(id, stream)?;
        self.data_extents(&node)
    }

    fn used_map(&self) -> Result<AllocationMap> {
        let g = &self.geo;
        let cs = u64::from(g.cluster_size);
        let mut map = AllocationMap::new(g.total_bytes);
        map.push(0, g.heap_offset, RangeKind::Data)?;
        let used = |c: u64| -> bool {
            match &self.bitmap {
                Some(b) => bit(b, c - 2),
                None => u32::try_from(c).is_ok_and(|c| self.table.raw(c) != 0),
            }
        };
        let mut run: Option<(u64, u64)> = None;
        for c in 2..g.cluster_end() {
            if used(c) {
                match run.as_mut() {
                    Some((_, n)) => *n += 1,
                    None => run = Some((c, 1)),
                }
            } else if let Some((first, n)) = run.take() {
                map.push(g.heap_offset + (first - 2) * cs, n * cs, RangeKind::Data)?;
            }
        }
        if let Some((first, n)) = run {
            map.push(g.heap_offset + (first - 2) * cs, n * cs, RangeKind::Data)?;
        }
        Ok(map.finish())
    }
}
