//! Building a volume's catalog from a guest file system, bottom-up.

use std::collections::{HashMap, HashSet};

use cairn_guestfs::{GuestFs, NodeId};
use serde::Serialize;

use crate::blob::{
    Entry, Extent, Kind, SdBytes, SdTable, Stream, Unix, Xattr, MAX_ERROR_BYTES, MAX_SD_ENTRIES,
};
use crate::{
    encode_sd_table, get_sd_table, sha256, store_err, BlobId, BlobStore, DirBlob, Error, Glob,
    Result,
};

/// Depth limit of a catalog (building and reading): as `cairn_io::Limits::max_dir_depth`,
/// deeper than any real tree, and shallow enough for the recursive walks to fit a 2 MiB
/// thread stack.
pub const DEFAULT_MAX_DEPTH: u32 = 256;

/// How to build a catalog.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CatalogOptions {
    /// Files (and everything under directories) matching any of these are marked
    /// `excluded`, and their data extents are returned as free.
    pub exclude: Vec<Glob>,
    /// Directories deeper than this are recorded with an error instead of walked.
    pub max_depth: u32,
    /// The previous restore point's SD table of this volume: its indices are kept so
    /// unchanged directory blobs keep their ids.
    pub base_sd_table: Option<BlobId>,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            exclude: Vec::new(),
            max_depth: DEFAULT_MAX_DEPTH,
            base_sd_table: None,
        }
    }
}

impl CatalogOptions {
    /// Options with the given exclusions.
    pub fn with_exclude(exclude: Vec<Glob>) -> Self {
        CatalogOptions {
            exclude,
            ..Self::default()
        }
    }

    /// Whether names on `fs` compare case-insensitively (NTFS, FAT, exFAT): build exclusion
    /// globs with [`Glob::with_case`] and open catalogs with
    /// [`crate::Catalog::with_case_insensitive_paths`] accordingly.
    pub fn case_insensitive(fs: &GuestFs) -> bool {
        !matches!(fs, GuestFs::Ext(_))
    }

    /// The exclusions every backup applies: swap and hibernation files at the volume root
    /// (case-insensitive, as they live on NTFS or FAT as often as on ext).
    pub fn default_exclusions() -> Vec<Glob> {
        [
            "/pagefile.sys",
            "/hiberfil.sys",
            "/swapfile",
            "/swapfile.sys",
        ]
        .iter()
        .filter_map(|p| Glob::with_case(p, true).ok())
        .collect()
    }
}

/// Counts of a built catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatalogStats {
    /// Regular files, symlinks and other non-directories.
    pub files: u64,
    /// Directories (the root not counted).
    pub dirs: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Files marked excluded.
    pub excluded_files: u64,
    /// Sum of excluded files' sizes.
    pub excluded_bytes: u64,
    /// Nodes or subtrees that could not be read (recorded in their entries' `error`).
    pub errors: u64,
    /// Blobs handed to the store.
    pub blobs_written: u64,
    /// Bytes handed to the store (the store deduplicates: new bytes are at most this).
    pub blob_bytes_written: u64,
}

/// A byte range of the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct VolumeRange {
    /// Start, bytes from the volume's start.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The catalog of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCatalog {
    /// Id of the root directory blob.
    pub root: BlobId,
    /// Id of the SD table, when any node has a security descriptor.
    pub sd_table: Option<BlobId>,
    /// Counts.
    pub stats: CatalogStats,
    /// Volume ranges holding only excluded files' data (sorted, merged; never ranges shared
    /// with a non-excluded hard link, never encoded/inline extents): the engine may treat
    /// them as free.
    pub excluded_ranges: Vec<VolumeRange>,
}

struct Builder<'a, S: BlobStore + ?Sized> {
    fs: &'a GuestFs,
    store: &'a S,
    opts: &'a CatalogOptions,
    stats: CatalogStats,
    visited: HashSet<NodeId>,
    sd_index: HashMap<BlobId, u32>,
    sds: Vec<SdBytes>,
    sd_dirty: bool,
    excluded_nodes: HashMap<NodeId, Vec<VolumeRange>>,
    included_nodes: HashSet<NodeId>,
}

/// Builds the catalog of `fs`: walks the tree (children before parents), stores each
/// directory blob and the SD table in `store`, and returns the root id, counts and the
/// excluded files' volume ranges. Unreadable nodes and subtrees, directory loops and
/// over-deep trees are recorded in the entries' `error` field; only an unreadable root
/// fails the build.
pub fn build_volume_catalog<S: BlobStore + ?Sized>(
    fs: &GuestFs,
    store: &S,
    opts: &CatalogOptions,
) -> Result<VolumeCatalog> {
    let mut b = Builder {
        fs,
        store,
        opts,
        stats: CatalogStats::default(),
        visited: HashSet::new(),
        sd_index: HashMap::new(),
        sds: Vec::new(),
        sd_dirty: false,
        excluded_nodes: HashMap::new(),
        included_nodes: HashSet::new(),
    };
    if let Some(base) = opts.base_sd_table {
        // A missing or damaged base table only costs dedup, not correctness.
        if let Ok(t) = get_sd_table(store, &base) {
            for (i, sd) in t.descriptors.into_iter().enumerate() {
                let Ok(idx) = u32::try_from(i) else { break };
                b.sd_index.entry(sha256(&sd.0)).or_insert(idx);
                b.sds.push(sd);
            }
        }
    }
    let root = fs.root();
    b.visited.insert(root);
    let root_id = b.build_dir(root, "", 0, false).map_err(|e| match e {
        DirFailure::Fs(source) => Error::Fs {
            path: "/".into(),
            source,
        },
        DirFailure::Catalog(e) => e,
    })?;
    let sd_table = if b.sds.is_empty() {
        None
    } else if !b.sd_dirty && opts.base_sd_table.is_some() {
        opts.base_sd_table
    } else {
        let bytes = encode_sd_table(&SdTable {
            descriptors: std::mem::take(&mut b.sds),
        })?;
        b.stats.blobs_written += 1;
        b.stats.blob_bytes_written += bytes.len() as u64;
        Some(store.put(bytes).map_err(store_err)?)
    };
    let mut ranges: Vec<VolumeRange> = b
        .excluded_nodes
        .iter()
        .filter(|(node, _)| !b.included_nodes.contains(node))
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<VolumeRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = merged.last_mut() {
            let end = last.offset.saturating_add(last.len);
            if r.offset <= end {
                last.len = last.len.max(r.offset.saturating_add(r.len) - last.offset);
                continue;
            }
        }
        merged.push(r);
    }
    Ok(VolumeCatalog {
        root: root_id,
        sd_table,
        stats: b.stats,
        excluded_ranges: merged,
    })
}

enum DirFailure {
    Fs(cairn_guestfs::Error),
    Catalog(Error),
}

fn short(msg: String) -> String {
    if msg.len() <= MAX_ERROR_BYTES {
        return msg;
    }
    let mut end = MAX_ERROR_BYTES;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    msg[..end].to_string()
}

impl<S: BlobStore + ?Sized> Builder<'_, S> {
    fn excluded(&self, path: &str) -> bool {
        self.opts.exclude.iter().any(|g| g.matches(path))
    }

    fn sd_ref(&mut self, sd: Vec<u8>) -> Option<u32> {
        if sd.len() > crate::MAX_SD_BYTES {
            return None;
        }
        let key = sha256(&sd);
        if let Some(&i) = self.sd_index.get(&key) {
            return Some(i);
        }
        if self.sds.len() >= MAX_SD_ENTRIES {
            return None;
        }
        let i = u32::try_from(self.sds.len()).ok()?;
        self.sd_index.insert(key, i);
        self.sds.push(SdBytes(sd));
        self.sd_dirty = true;
        Some(i)
    }

    /// Builds the blob of directory `node` at `path` ("" for the root) and returns its id.
    fn build_dir(
        &mut self,
        node: NodeId,
        path: &str,
        depth: u32,
        parent_excluded: bool,
    ) -> Result<BlobId, DirFailure> {
        let mut listing = self.fs.read_dir(node).map_err(DirFailure::Fs)?;
        listing.sort_by(|a, b| a.name.cmp(&b.name));
        let mut entries = Vec::with_capacity(listing.len());
        for de in listing {
            if de.name.is_empty() || de.name == "." || de.name == ".." || de.name.contains('/') {
                continue;
            }
            if de.name.len() > crate::MAX_NAME_BYTES {
                self.stats.errors += 1;
                continue;
            }
            let child_path = format!("{path}/{}", de.name);
            let excluded = parent_excluded || self.excluded(&child_path);
            let mut e = Entry::new(de.name.clone(), Kind::from(de.kind), 0);
            e.node = de.id;
            e.excluded = excluded;
            match self.fs.metadata(de.id) {
                Ok(m) => {
                    e.kind = Kind::from(m.kind);
                    e.size = m.size;
                    e.allocated = m.allocated;
                    e.mtime = m.mtime.map(Into::into);
                    e.atime = m.atime.map(Into::into);
                    e.ctime = m.ctime.map(Into::into);
                    e.btime = m.btime.map(Into::into);
                    e.unix = m.unix.map(|u| Unix {
                        mode: u.mode,
                        uid: u.uid,
                        gid: u.gid,
                    });
                    e.windows_attributes = m.windows_attributes;
                    e.nlink = m.nlink;
                    e.xattrs = m
                        .xattrs
                        .into_iter()
                        .take(crate::MAX_XATTRS)
                        .filter(|x| {
                            x.value.len() <= crate::MAX_XATTR_VALUE_BYTES
                                && x.name.len() <= crate::MAX_NAME_BYTES
                        })
                        .map(|x| Xattr {
                            name: x.name,
                            value: x.value,
                        })
                        .collect();
                    e.symlink_target = m
                        .symlink_target
                        .filter(|t| t.len() <= crate::MAX_SYMLINK_BYTES);
                    e.sd = m.security_descriptor.and_then(|sd| self.sd_ref(sd));
                    for s in m.streams.into_iter().take(crate::MAX_STREAMS) {
                        if s.name.len() > crate::MAX_NAME_BYTES {
                            continue;
                        }
                        let extents = match self.fs.extents(de.id, Some(&s.name)) {
                            Ok(x) => x
                                .into_iter()
                                .take(crate::MAX_EXTENTS_PER_STREAM)
                                .map(Extent::from)
                                .collect(),
                            Err(err) => {
                                self.stats.errors += 1;
                                e.error = Some(short(format!("stream {}: {err}", s.name)));
                                Vec::new()
                            }
                        };
                        e.streams.push(Stream {
                            name: s.name,
                            size: s.size,
                            extents,
                        });
                    }
                }
                Err(err) => {
                    self.stats.errors += 1;
                    e.error = Some(short(err.to_string()));
                }
            }
            if e.kind == Kind::File && e.error.is_none() {
                match self.fs.extents(de.id, None) {
                    Ok(x) if x.len() <= crate::MAX_EXTENTS_PER_STREAM => {
                        e.extents = x.into_iter().map(Extent::from).collect()
                    }
                    Ok(x) => {
                        self.stats.errors += 1;
                        e.error = Some(format!("{} extents exceed the catalog limit", x.len()));
                    }
                    Err(err) => {
                        self.stats.errors += 1;
                        e.error = Some(short(err.to_string()));
                    }
                }
            }
            if e.kind == Kind::Dir && e.error.is_none() {
                self.stats.dirs += 1;
                if depth + 1 >= self.opts.max_depth {
                    self.stats.errors += 1;
                    e.error = Some(format!(
                        "deeper than {} directories: not walked",
                        self.opts.max_depth
                    ));
                } else if !self.visited.insert(de.id) {
                    self.stats.errors += 1;
                    e.error = Some("directory loop: node already catalogued".into());
                } else {
                    match self.build_dir(de.id, &child_path, depth + 1, excluded) {
                        Ok(id) => e.child = Some(id),
                        Err(DirFailure::Fs(err)) => {
                            self.stats.errors += 1;
                            e.error = Some(short(err.to_string()));
                        }
                        Err(DirFailure::Catalog(err)) => return Err(DirFailure::Catalog(err)),
                    }
                }
            } else if e.kind == Kind::Dir {
                self.stats.dirs += 1;
            } else {
                self.stats.files += 1;
                self.stats.bytes = self.stats.bytes.saturating_add(e.size);
                if excluded {
                    self.stats.excluded_files += 1;
                    self.stats.excluded_bytes = self.stats.excluded_bytes.saturating_add(e.size);
                }
            }
            self.note_ranges(&e);
            entries.push(e);
        }
        let dir = DirBlob { entries };
        let bytes = crate::encode_dir(&dir).map_err(DirFailure::Catalog)?;
        self.stats.blobs_written += 1;
        self.stats.blob_bytes_written += bytes.len() as u64;
        self.store
            .put(bytes)
            .map_err(|e| DirFailure::Catalog(store_err(e)))
    }

    /// Remembers which nodes' data may be treated as free (excluded, plain volume extents)
    /// and which must not (any non-excluded name of the node).
    fn note_ranges(&mut self, e: &Entry) {
        if e.kind == Kind::Dir {
            return;
        }
        if !e.excluded {
            self.included_nodes.insert(e.node);
            return;
        }
        let all = e
            .extents
            .iter()
            .chain(e.streams.iter().flat_map(|s| s.extents.iter()));
        let ranges = self.excluded_nodes.entry(e.node).or_default();
        if !ranges.is_empty() {
            return; // another name of the same node: same data
        }
        for x in all {
            if let (Some(off), false) = (x.volume_offset, x.encoded) {
                if x.len > 0 {
                    ranges.push(VolumeRange {
                        offset: off,
                        len: x.len,
                    });
                }
            }
        }
    }
}
