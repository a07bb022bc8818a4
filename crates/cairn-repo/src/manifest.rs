//! Restore-point manifests (`snapshots/<id>`).
//!
//! A manifest lists **every** chunk of every disk (synthetic full): restoring never replays a
//! chain of increments, and deleting an old restore point never breaks a newer one.

use serde::{Deserialize, Serialize};

use crate::{BlobId, Error, Result, SnapshotId};

/// Largest manifest file payload accepted: 64 MiB. Chunk lists live in metadata blobs, so a
/// manifest holds 33 bytes per 32768 chunks: 256 disks of 64 TiB at 256 KiB chunks fit.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Chunk-list entries per metadata blob (about 1 MiB of postcard): a list of 8 GiB of disk
/// at 256 KiB chunks. Unchanged stretches of a disk give identical list blobs, which
/// deduplicate across restore points like data.
pub const LIST_ENTRIES_PER_BLOB: usize = 32768;
/// Most disks in one restore point.
pub const MAX_DISKS: usize = 256;
/// Largest disk accepted: 64 TiB (VHDX's maximum, above VMDK's 62 TiB).
pub const MAX_DISK_SIZE: u64 = 64 << 40;
/// Most tags on a restore point.
pub const MAX_TAGS: usize = 256;
/// Longest name, label, tag or content id (bytes).
pub const MAX_TEXT: usize = 4096;
/// Longest recorded parent chain.
pub const MAX_CHAIN: usize = 64;

/// Identity of a disk (or of one layer of its chain) as its image metadata said.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredIdentity {
    /// Stable disk id (VMDK ddb.uuid.image, VHD unique id, VHDX virtual disk id).
    pub uuid: Option<[u8; 16]>,
    /// Content id (VMDK CID, VHDX DataWriteGuid).
    pub content_id: Option<String>,
}

impl StoredIdentity {
    /// Whether the identity says anything at all (an empty identity never matches).
    pub fn is_known(&self) -> bool {
        self.uuid.is_some() || self.content_id.is_some()
    }
}

/// One disk of a restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskManifest {
    /// Name given by the caller (file name, device name).
    pub label: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// Fixed chunk size the disk was cut with.
    pub chunk_size: u32,
    /// Identity of the top layer backed up.
    pub identity: StoredIdentity,
    /// Identities of the layers below, top first.
    pub chain: Vec<StoredIdentity>,
    /// Chunk `i` covers `[i * chunk_size, min((i + 1) * chunk_size, size))`; `None` is a
    /// hole that restores as zeros.
    pub chunks: Vec<Option<BlobId>>,
}

impl DiskManifest {
    /// Byte range of chunk `i`.
    pub fn chunk_range(&self, i: usize) -> (u64, u64) {
        let start = (i as u64).saturating_mul(u64::from(self.chunk_size));
        let end = start
            .saturating_add(u64::from(self.chunk_size))
            .min(self.size);
        (start, end)
    }
}

/// Counters of the backup that made a restore point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupStats {
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Raw bytes of chunks the repository did not have.
    pub bytes_new: u64,
    /// Bytes written to packs for them (after compression and sealing).
    pub bytes_stored: u64,
    /// Wall time in milliseconds.
    pub millis: u64,
}

/// A restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The VM (or machine) name.
    pub vm_name: String,
    /// When the backup was taken, Unix seconds (UTC).
    pub time: i64,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The restore point this one was built incrementally from, if any.
    pub parent: Option<SnapshotId>,
    /// Disks.
    pub disks: Vec<DiskManifest>,
    /// Counters.
    pub stats: BackupStats,
    /// The guest volumes found on the disks, with their file catalogs.
    pub volumes: Vec<VolumeRecord>,
}

/// Most volumes one restore point records.
pub const MAX_VOLUMES: usize = 4096;
/// Most catalog blobs one volume references (a directory blob per directory).
pub const MAX_CATALOG_BLOBS: usize = 16 << 20;

/// A guest volume of a restore point: what file system it holds and, when it could be
/// read, the root of its file catalog (see docs/formats/catalog.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VolumeRecord {
    /// Disk position in the manifest.
    pub disk: u32,
    /// Partition number (0: the whole disk).
    pub partition: u32,
    /// Start on the disk, bytes.
    pub start: u64,
    /// Size, bytes.
    pub size: u64,
    /// Probed file system (`ntfs`, `ext4`, `fat32`, `unknown`...).
    pub fs: String,
    /// Root directory blob of the catalog; `None` when the file system was not parsed.
    pub catalog_root: Option<BlobId>,
    /// Security-descriptor table blob of the catalog.
    pub sd_table: Option<BlobId>,
    /// Every metadata blob the catalog uses (directory blobs, SD table): what verify and
    /// prune must keep.
    pub catalog_blobs: Vec<BlobId>,
    /// Bytes of the volume left unread (free blocks, excluded files, swap).
    pub bytes_skipped: u64,
    /// Why the volume was backed up block by block without a catalog, if it was.
    pub note: Option<String>,
    /// Files in the catalog.
    pub files: u64,
    /// Directories in the catalog.
    pub dirs: u64,
    /// Files excluded by pattern (their data left unread).
    pub excluded_files: u64,
}

impl Manifest {
    /// Checks the structural rules (sizes, chunk counts, text lengths).
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |why: String| Err(Error::malformed(name, why));
        if self.vm_name.len() > MAX_TEXT {
            return bad("vm name too long".into());
        }
        if self.tags.len() > MAX_TAGS || self.tags.iter().any(|t| t.len() > MAX_TEXT) {
            return bad(format!(
                "{} tags (at most {MAX_TAGS}, each at most {MAX_TEXT} bytes)",
                self.tags.len()
            ));
        }
        if self.disks.len() > MAX_DISKS {
            return bad(format!("{} disks, at most {MAX_DISKS}", self.disks.len()));
        }
        if self.volumes.len() > MAX_VOLUMES {
            return bad(format!(
                "{} volumes, at most {MAX_VOLUMES}",
                self.volumes.len()
            ));
        }
        for v in &self.volumes {
            if v.catalog_blobs.len() > MAX_CATALOG_BLOBS
                || v.fs.len() > MAX_TEXT
                || v.note.as_ref().is_some_and(|n| n.len() > MAX_TEXT)
            {
                return bad(format!(
                    "volume {} of disk {}: oversized record",
                    v.partition, v.disk
                ));
            }
        }
        for (n, d) in self.disks.iter().enumerate() {
            if d.label.len() > MAX_TEXT || d.chain.len() > MAX_CHAIN {
                return bad(format!("disk {n}: label or chain too long"));
            }
            if std::iter::once(&d.identity)
                .chain(&d.chain)
                .any(|i| i.content_id.as_ref().is_some_and(|c| c.len() > MAX_TEXT))
            {
                return bad(format!("disk {n}: content id too long"));
            }
            if d.size > MAX_DISK_SIZE {
                return bad(format!("disk {n}: size {} exceeds {MAX_DISK_SIZE}", d.size));
            }
            cairn_chunk::ChunkerParams::Fixed { size: d.chunk_size }
                .validate()
                .map_err(|e| Error::malformed(name, format!("disk {n}: {e}")))?;
            let want = d.size.div_ceil(u64::from(d.chunk_size));
            if d.chunks.len() as u64 != want {
                return bad(format!(
                    "disk {n}: {} chunks, size {} / chunk {} needs {want}",
                    d.chunks.len(),
                    d.size,
                    d.chunk_size
                ));
            }
        }
        Ok(())
    }
}

/// A disk as stored in a manifest file: the chunk list is in metadata blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    /// See [`DiskManifest::label`].
    pub label: String,
    /// See [`DiskManifest::size`].
    pub size: u64,
    /// See [`DiskManifest::chunk_size`].
    pub chunk_size: u32,
    /// See [`DiskManifest::identity`].
    pub identity: StoredIdentity,
    /// See [`DiskManifest::chain`].
    pub chain: Vec<StoredIdentity>,
    /// Metadata blobs (kind 1) each holding a postcard `Vec<Option<BlobId>>` of
    /// [`LIST_ENTRIES_PER_BLOB`] entries (the last one fewer); concatenated they are the
    /// chunk list.
    pub lists: Vec<BlobId>,
}

/// A manifest file's payload (the head of a restore point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// See [`Manifest::vm_name`].
    pub vm_name: String,
    /// See [`Manifest::time`].
    pub time: i64,
    /// See [`Manifest::tags`].
    pub tags: Vec<String>,
    /// See [`Manifest::parent`].
    pub parent: Option<SnapshotId>,
    /// Disks.
    pub disks: Vec<DiskRecord>,
    /// See [`Manifest::stats`].
    pub stats: BackupStats,
    /// See [`Manifest::volumes`].
    pub volumes: Vec<VolumeRecord>,
}

impl ManifestFile {
    /// Checks the structural rules, chunk-list blob counts included.
    pub fn validate(&self, name: &str) -> Result<()> {
        let as_manifest = Manifest {
            vm_name: self.vm_name.clone(),
            time: self.time,
            tags: self.tags.clone(),
            parent: self.parent,
            disks: Vec::new(),
            stats: self.stats,
            volumes: self.volumes.clone(),
        };
        as_manifest.validate(name)?;
        if self.disks.len() > MAX_DISKS {
            return Err(Error::malformed(
                name,
                format!("{} disks, at most {MAX_DISKS}", self.disks.len()),
            ));
        }
        for (n, d) in self.disks.iter().enumerate() {
            let shell = DiskManifest {
                label: d.label.clone(),
                size: 0,
                chunk_size: d.chunk_size,
                identity: d.identity.clone(),
                chain: d.chain.clone(),
                chunks: Vec::new(),
            };
            let one = Manifest {
                disks: vec![shell],
                ..as_manifest.clone()
            };
            one.validate(name)?;
            if d.size > MAX_DISK_SIZE {
                return Err(Error::malformed(
                    name,
                    format!("disk {n}: size {} exceeds {MAX_DISK_SIZE}", d.size),
                ));
            }
            let chunks = d.size.div_ceil(u64::from(d.chunk_size));
            let want = chunks.div_ceil(LIST_ENTRIES_PER_BLOB as u64);
            if d.lists.len() as u64 != want {
                return Err(Error::malformed(
                    name,
                    format!(
                        "disk {n}: {} chunk-list blobs, {chunks} chunks need {want}",
                        d.lists.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Summary of a restore point, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePointSummary {
    /// Id.
    pub id: SnapshotId,
    /// VM name.
    pub vm_name: String,
    /// Unix seconds.
    pub time: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// (label, size) of each disk.
    pub disks: Vec<(String, u64)>,
    /// Counters of the backup.
    pub stats: BackupStats,
    /// Parent restore point.
    pub parent: Option<SnapshotId>,
}

impl RestorePointSummary {
    /// Summarises a manifest file (no chunk lists needed).
    pub fn of_file(id: SnapshotId, m: &ManifestFile) -> Self {
        RestorePointSummary {
            id,
            vm_name: m.vm_name.clone(),
            time: m.time,
            tags: m.tags.clone(),
            disks: m.disks.iter().map(|d| (d.label.clone(), d.size)).collect(),
            stats: m.stats,
            parent: m.parent,
        }
    }

    /// Summarises a manifest.
    pub fn of(id: SnapshotId, m: &Manifest) -> Self {
        RestorePointSummary {
            id,
            vm_name: m.vm_name.clone(),
            time: m.time,
            tags: m.tags.clone(),
            disks: m.disks.iter().map(|d| (d.label.clone(), d.size)).collect(),
            stats: m.stats,
            parent: m.parent,
        }
    }
}
