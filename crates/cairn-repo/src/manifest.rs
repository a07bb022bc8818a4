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
/// Nanoseconds in a second: a recorded sub-second part is below it.
pub const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// The order of restore-point times: seconds, then the sub-second part, a missing one
/// (manifests written before it was recorded, or an explicit whole-second time) as `.0`.
pub fn time_order(secs: i64, nanos: Option<u32>) -> (i64, u32) {
    (secs, nanos.unwrap_or(0))
}

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
    /// Nanoseconds within `time` (below [`NANOS_PER_SECOND`]): what orders two restore
    /// points of one second. `None` when unknown: manifests written before it was recorded,
    /// and restore points given an explicit whole-second time. Last, so that a serialized
    /// `Manifest` without it still decodes.
    #[serde(default, deserialize_with = "trailing_optional")]
    pub time_nanos: Option<u32>,
}

/// Deserializes a trailing optional field that older files (manifests, the config) do not
/// have. Postcard is not self-describing, so `#[serde(default)]` alone cannot tell a missing
/// field: an input that ends right before it reads as `None`; any other error stays an error.
pub(crate) fn trailing_optional<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    // Errors inside a present record are renamed, so that only an input ending right at
    // the field (before its option tag) reads as "absent".
    struct Present<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Present<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an optional record")
        }
        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            T::deserialize(d)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format_args!("inside the record: {e}")))
        }
    }
    match d.deserialize_option(Present(std::marker::PhantomData)) {
        Ok(v) => Ok(v),
        Err(e) if e.to_string() == postcard::Error::DeserializeUnexpectedEnd.to_string() => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Most configuration files one VM record lists.
pub const MAX_VM_CONFIG_FILES: usize = 256;
/// Most blobs one configuration file is stored in (64 MiB at 1 MiB pieces, with room).
pub const MAX_VM_CONFIG_BLOBS: usize = 1024;
/// Most notes one VM record keeps.
pub const MAX_VM_NOTES: usize = 1024;

/// A configuration file of a VM bundle, stored as blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmConfigFile {
    /// Path relative to the bundle folder, `/`-separated, never `..` nor absolute.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Data blobs whose concatenation is the file.
    pub blobs: Vec<BlobId>,
}

/// Identity of one disk of a VM bundle; entry `i` describes disk `i` of the restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmDiskRecord {
    /// The configuration's device reference (`scsi0:0`, `vda`, an OVF disk id...).
    pub config_ref: String,
    /// Disk UUID from the configuration or the image header.
    pub uuid: Option<[u8; 16]>,
    /// The disk the configuration named, as written there.
    pub written: String,
    /// Its path on the host at backup time.
    pub path: String,
    /// The layer actually read: `path`, or for an active VM the frozen point below it.
    pub captured: String,
    /// Layers between the live disk and the captured one (0 or 1).
    pub capture_depth: u32,
}

/// The VM bundle of a restore point (see docs/bundles.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmRecord {
    /// Configuration kind: `vmware`, `libvirt`, `hyperv`, `hyperv-vmcx`, `ovf`.
    pub kind: String,
    /// VM name from the configuration.
    pub name: String,
    /// VM UUID from the configuration: the key that finds earlier restore points of the
    /// same VM wherever it lives now.
    pub uuid: Option<[u8; 16]>,
    /// `cold`, `warm` or `active`.
    pub power_state: String,
    /// Configuration files, the main one first.
    pub config_files: Vec<VmConfigFile>,
    /// One entry per disk of the restore point, in the same order.
    pub disks: Vec<VmDiskRecord>,
    /// Whether the disks were found by a folder scan (Hyper-V `.vmcx`).
    pub folder_scan: bool,
    /// What was left out or assumed.
    pub notes: Vec<String>,
}

impl VmRecord {
    /// Every blob the record references.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobId> {
        self.config_files.iter().flat_map(|f| f.blobs.iter())
    }

    /// Checks counts, text lengths and names.
    pub fn validate(&self, name: &str, disks: usize) -> Result<()> {
        let bad = |why: String| Err(Error::malformed(name, format!("vm record: {why}")));
        let texts = [&self.kind, &self.name, &self.power_state];
        if texts.iter().any(|t| t.len() > MAX_TEXT) {
            return bad("text too long".into());
        }
        if self.config_files.len() > MAX_VM_CONFIG_FILES || self.notes.len() > MAX_VM_NOTES {
            return bad(format!(
                "{} config files (at most {MAX_VM_CONFIG_FILES}), {} notes (at most {MAX_VM_NOTES})",
                self.config_files.len(),
                self.notes.len()
            ));
        }
        if self.notes.iter().any(|n| n.len() > MAX_TEXT) {
            return bad("note too long".into());
        }
        if self.disks.len() != disks {
            return bad(format!(
                "{} disk records for {disks} disks",
                self.disks.len()
            ));
        }
        for (i, f) in self.config_files.iter().enumerate() {
            if f.blobs.len() > MAX_VM_CONFIG_BLOBS {
                return bad(format!("config file {i}: {} blobs", f.blobs.len()));
            }
            if !is_safe_relative(&f.name) {
                return bad(format!("config file {i}: unsafe name {:?}", f.name));
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            if [&d.config_ref, &d.written, &d.path, &d.captured]
                .iter()
                .any(|t| t.len() > MAX_TEXT)
            {
                return bad(format!("disk {i}: text too long"));
            }
        }
        Ok(())
    }
}

/// A `/`-separated relative path without `..`, `.`, empty parts, backslashes or NULs: safe
/// to join under a restore folder.
pub fn is_safe_relative(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TEXT
        && !name.contains(['\\', '\0', ':'])
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
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
        if let Some(nanos) = self.time_nanos.filter(|&n| n >= NANOS_PER_SECOND) {
            return Err(Error::OutOfRange {
                name: name.to_string(),
                field: "time_nanos",
                found: u64::from(nanos),
                expected: "below 1000000000 (nanoseconds within a second)",
            });
        }
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
    /// The VM bundle this restore point captured (configuration, identity, power state),
    /// when it was backed up as a bundle. Absent in manifests written before bundles
    /// (decoded as `None`, see `trailing_optional`).
    #[serde(default, deserialize_with = "trailing_optional")]
    pub vm: Option<VmRecord>,
    /// See [`Manifest::time_nanos`]. Absent in manifests written before it (decoded as
    /// `None`, see `trailing_optional`).
    #[serde(default, deserialize_with = "trailing_optional")]
    pub time_nanos: Option<u32>,
}

impl ManifestFile {
    /// Blobs of the VM record's configuration files (none for an image backup).
    pub fn vm_blobs(&self) -> impl Iterator<Item = &BlobId> {
        self.vm.iter().flat_map(VmRecord::blobs)
    }

    /// Checks the structural rules, chunk-list blob counts included.
    pub fn validate(&self, name: &str) -> Result<()> {
        let as_manifest = Manifest {
            vm_name: self.vm_name.clone(),
            time: self.time,
            time_nanos: self.time_nanos,
            tags: self.tags.clone(),
            parent: self.parent,
            disks: Vec::new(),
            stats: self.stats,
            volumes: self.volumes.clone(),
        };
        as_manifest.validate(name)?;
        if let Some(vm) = &self.vm {
            vm.validate(name, self.disks.len())?;
        }
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
    /// See [`Manifest::time_nanos`].
    pub time_nanos: Option<u32>,
    /// Tags.
    pub tags: Vec<String>,
    /// (label, size) of each disk.
    pub disks: Vec<(String, u64)>,
    /// Counters of the backup.
    pub stats: BackupStats,
    /// Parent restore point.
    pub parent: Option<SnapshotId>,
    /// The VM bundle record, for restore points of bundles (from the manifest file).
    pub vm: Option<VmRecord>,
}

impl RestorePointSummary {
    /// The key restore points are ordered by: see [`time_order`].
    pub fn time_key(&self) -> (i64, u32) {
        time_order(self.time, self.time_nanos)
    }

    /// Summarises a manifest file (no chunk lists needed).
    pub fn of_file(id: SnapshotId, m: &ManifestFile) -> Self {
        RestorePointSummary {
            id,
            vm_name: m.vm_name.clone(),
            time: m.time,
            time_nanos: m.time_nanos,
            tags: m.tags.clone(),
            disks: m.disks.iter().map(|d| (d.label.clone(), d.size)).collect(),
            stats: m.stats,
            parent: m.parent,
            vm: m.vm.clone(),
        }
    }

    /// Summarises a manifest.
    pub fn of(id: SnapshotId, m: &Manifest) -> Self {
        RestorePointSummary {
            id,
            vm_name: m.vm_name.clone(),
            time: m.time,
            time_nanos: m.time_nanos,
            tags: m.tags.clone(),
            disks: m.disks.iter().map(|d| (d.label.clone(), d.size)).collect(),
            stats: m.stats,
            parent: m.parent,
            vm: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest file as written before VM records existed.
    #[derive(Serialize)]
    struct OldManifestFile {
        vm_name: String,
        time: i64,
        tags: Vec<String>,
        parent: Option<SnapshotId>,
        disks: Vec<DiskRecord>,
        stats: BackupStats,
        volumes: Vec<VolumeRecord>,
    }

    /// An old manifest file of VM `vm` at `time`, with no disks.
    fn old_file(time: i64, tags: Vec<String>) -> OldManifestFile {
        OldManifestFile {
            vm_name: "vm".into(),
            time,
            tags,
            parent: None,
            disks: Vec::new(),
            stats: BackupStats::default(),
            volumes: Vec::new(),
        }
    }

    /// The manifest file as written before sub-second times: the fields above, then the VM
    /// record. Postcard writes a struct as its fields in order, with no framing, so this
    /// tuple is byte for byte that struct.
    type ManifestFileWithoutNanos = (OldManifestFile, Option<VmRecord>);

    /// A manifest file as written now, of VM `vm` at `time`, with no disks.
    fn file(time: i64, vm: Option<VmRecord>, time_nanos: Option<u32>) -> ManifestFile {
        ManifestFile {
            vm_name: "vm".into(),
            time,
            tags: Vec::new(),
            parent: None,
            disks: Vec::new(),
            stats: BackupStats::default(),
            volumes: Vec::new(),
            vm,
            time_nanos,
        }
    }

    #[test]
    fn older_manifests_decode_without_vm() {
        let old = old_file(5, vec!["t".into()]);
        let bytes = postcard::to_stdvec(&old).unwrap();
        let m: ManifestFile = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(m.vm, None);
        assert_eq!(m.vm_name, "vm");
        // A record that is present but cut short is still an error.
        let vm = VmRecord {
            kind: "vmware".into(),
            name: "n".into(),
            ..Default::default()
        };
        let with = file(5, Some(vm), None);
        let full = postcard::to_stdvec(&with).unwrap();
        let back: ManifestFile = postcard::from_bytes(&full).unwrap();
        assert_eq!(back, with);
        assert!(postcard::from_bytes::<ManifestFile>(&full[..full.len() - 2]).is_err());
    }

    #[test]
    fn older_manifests_decode_without_nanos() {
        let vm = VmRecord {
            kind: "libvirt".into(),
            ..Default::default()
        };
        for vm in [None, Some(vm)] {
            let old: ManifestFileWithoutNanos = (old_file(1_700_000_000, Vec::new()), vm.clone());
            let bytes = postcard::to_stdvec(&old).unwrap();
            let m: ManifestFile = postcard::from_bytes(&bytes).unwrap();
            assert_eq!((m.time, m.time_nanos, &m.vm), (1_700_000_000, None, &vm));
            assert!(m.validate("m").is_ok());
            let s = RestorePointSummary::of_file(SnapshotId::default(), &m);
            assert_eq!(s.time_key(), (1_700_000_000, 0));
        }
        // Written now: the field follows the VM record, and is read back.
        let new = file(-1, None, Some(123_456_789));
        let bytes = postcard::to_stdvec(&new).unwrap();
        assert_eq!(postcard::from_bytes::<ManifestFile>(&bytes).unwrap(), new);
        // Cut inside the field (its option tag present, the number gone) is an error.
        assert!(postcard::from_bytes::<ManifestFile>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn nanos_of_a_whole_second_are_out_of_range() {
        let mut m = Manifest {
            vm_name: "vm".into(),
            time: 5,
            tags: Vec::new(),
            parent: None,
            disks: Vec::new(),
            stats: BackupStats::default(),
            volumes: Vec::new(),
            time_nanos: Some(NANOS_PER_SECOND - 1),
        };
        assert!(m.validate("m").is_ok());
        m.time_nanos = Some(NANOS_PER_SECOND);
        assert!(matches!(
            m.validate("m"),
            Err(Error::OutOfRange {
                field: "time_nanos",
                found: 1_000_000_000,
                ..
            })
        ));
        assert!(time_order(5, None) < time_order(5, Some(1)));
        assert!(time_order(4, Some(NANOS_PER_SECOND - 1)) < time_order(5, None));
    }

    #[test]
    fn vm_record_rules() {
        let mut vm = VmRecord {
            disks: vec![VmDiskRecord::default()],
            config_files: vec![VmConfigFile {
                name: "a/b.vmx".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(vm.validate("m", 1).is_ok());
        assert!(vm.validate("m", 2).is_err());
        for bad in ["../x", "/etc/passwd", "a//b", "a\\b", "", "c:x", "./a"] {
            vm.config_files[0].name = bad.into();
            assert!(vm.validate("m", 1).is_err(), "{bad}");
        }
    }
}
