//! # cairn-repo
//!
//! The Cairn repository: content-addressed, deduplicated, compressed (lz4) and optionally
//! encrypted blobs in pack files, on any [`Backend`] that can get, put, list and delete named
//! objects (no rename, no lock needed).
//!
//! Layout (every file framed: magic, version, flags, length, CRC32; payload postcard,
//! sealed when encrypted; byte tables in `docs/formats/repository.md`):
//!
//! ```text
//! config                  repository id, version, chunker, encryption, created, pack target
//! keys                    key ring (cairn-crypto), encrypted repositories only
//! packs/xx/<id>           blobs (xx = first two hex digits of the random pack id)
//! index/<id>              blob id -> pack, offset, length, raw length, kind, crc32
//! snapshots/<id>          restore-point manifests
//! pins/<id>               pinned restore points (reason, time), one object per pin
//! ```
//!
//! Writers never share a file: each backup writes its own packs and index files under
//! random names, then its manifest last (the commit). Readers union all index files.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_repo::{BlobKind, InitOptions, MemoryBackend, OpenOptions, Repository};
//!
//! let backend = Arc::new(MemoryBackend::new());
//! let repo = Repository::init(backend.clone(), &InitOptions::default(), None).unwrap();
//! let mut w = repo.writer().unwrap();
//! let enc = w.encoder();
//! let data = vec![7u8; 100_000];
//! let id = enc.id(&data);
//! w.add(&enc.encode(BlobKind::Data, id, &data).unwrap()).unwrap();
//! w.finish().unwrap();
//!
//! let again = Repository::open(backend, &OpenOptions::default(), None).unwrap();
//! assert_eq!(again.read_blob(&id).unwrap(), data);
//! ```
#![forbid(unsafe_code)]

mod backend;
mod blob;
mod config;
mod crypto;
mod direct;
mod error;
pub mod frame;
mod ids;
mod index;
mod manifest;
mod pack;
mod pins;
mod prune;
mod repo;
mod verify;

pub use backend::{Backend, LocalBackend, MemoryBackend, NewObject, TEMP_PREFIX};
pub use blob::{EncodedBlob, MAX_BLOB_RAW};
pub use cairn_crypto::{KdfParams, KeyRing, SlotSecret};
pub use config::{
    RepoConfig, DEFAULT_PACK_TARGET, MAX_CONFIG_BYTES, PACK_TARGET_RANGE, REPO_VERSION,
    REPO_VERSION_SHA256_IDS,
};
pub use crypto::{ChunkIdHash, Encryption};
pub use error::{Error, Result};
pub use ids::{BlobId, BlobKind, ObjectId, SnapshotId};
pub use index::{pack_name, BlobIndex, IndexEntry, IndexFile, IndexPack, MAX_INDEX_FILE_BYTES};
pub use manifest::{
    is_safe_relative, VmConfigFile, VmDiskRecord, VmRecord, MAX_VM_CONFIG_BLOBS,
    MAX_VM_CONFIG_FILES, MAX_VM_NOTES,
};
pub use manifest::{time_order, NANOS_PER_SECOND};
pub use manifest::{
    BackupStats, DiskManifest, DiskRecord, Manifest, ManifestFile, RestorePointSummary,
    StoredIdentity, VolumeRecord, LIST_ENTRIES_PER_BLOB, MAX_CATALOG_BLOBS, MAX_CHAIN, MAX_DISKS,
    MAX_DISK_SIZE, MAX_MANIFEST_BYTES, MAX_TAGS, MAX_TEXT, MAX_VOLUMES,
};
pub use pack::{BlobEntry, MAX_PACK_BLOBS, MAX_PACK_BYTES, TRAILER_LEN, TRAILER_MAGIC};
pub use pins::{encode_plain_pin, Pin, MAX_PIN_FILE_BYTES, MAX_PIN_REASON, PIN_DIR, PIN_MAGIC};
pub use prune::{
    prune, reindex_retired, remove_stale_temp_files, PendingFile, PruneOptions, PruneReport,
    UnindexedPack, DEFAULT_GRACE_SECONDS, DEFAULT_REPACK_THRESHOLD_PERCENT, ENTRIES_PER_FILE,
    MAX_PENDING_FILE_BYTES, PENDING_DIR, PENDING_MAGIC,
};
pub use repo::{
    read_config, BlobEncoder, IndexProblem, InitOptions, OpenOptions, Orphans, RepoWriter,
    Repository, SnapshotListing, WriterStats, CONFIG_NAME, INDEX_DIR, INDEX_EVERY_PACKS, KEYS_NAME,
    PACK_DIR, SNAPSHOT_DIR,
};
pub use verify::{Affected, Problem, ProblemKind, VerifyOptions, VerifyReport};

/// Decoders for fuzzing and tools: each takes the raw bytes of one file.
pub mod decode {
    use crate::crypto::Crypto;
    use crate::frame::FileKind;
    use crate::{IndexFile, ManifestFile, ObjectId, Result};

    /// Decodes and validates a `config` file, exactly as [`Repository::open`] reads it.
    ///
    /// [`Repository::open`]: crate::Repository::open
    pub fn config(bytes: &[u8]) -> Result<crate::RepoConfig> {
        use crate::Backend;
        let backend = crate::MemoryBackend::new();
        backend.put(crate::CONFIG_NAME, bytes)?;
        crate::read_config(&backend)
    }

    /// Decodes and validates an unencrypted index file.
    pub fn index_file(bytes: &[u8]) -> Result<IndexFile> {
        let c = Crypto::none();
        let f: IndexFile = crate::repo::decode_sealed_file(
            &c,
            FileKind::Index,
            "index",
            &ObjectId::default(),
            bytes,
            crate::MAX_INDEX_FILE_BYTES,
        )?;
        f.validate("index", 0)?;
        Ok(f)
    }

    /// Decodes and validates an unencrypted manifest file (head; chunk lists are blobs).
    pub fn manifest(bytes: &[u8]) -> Result<ManifestFile> {
        let c = Crypto::none();
        let m: ManifestFile = crate::repo::decode_sealed_file(
            &c,
            FileKind::Manifest,
            "manifest",
            &ObjectId::default(),
            bytes,
            crate::MAX_MANIFEST_BYTES,
        )?;
        m.validate("manifest")?;
        Ok(m)
    }

    /// Decodes and validates an unencrypted pending-deletion object (`pending/<id>`).
    pub fn pending_file(bytes: &[u8]) -> Result<crate::PendingFile> {
        crate::prune::decode_pending(&Crypto::none(), "pending", &ObjectId::default(), bytes)
    }

    /// Decodes and checks an unencrypted pin object (`pins/<id>`; the restore point it names
    /// is not compared with an object name).
    pub fn pin_file(bytes: &[u8]) -> Result<crate::Pin> {
        crate::pins::decode_pin(&Crypto::none(), "pin", None, bytes)
    }

    /// Parses an unencrypted pack (header, CRC, trailer, directory) and decodes every blob,
    /// checking blob ids as a new repository names them ([`ChunkIdHash::Blake3`]).
    ///
    /// [`ChunkIdHash::Blake3`]: crate::ChunkIdHash::Blake3
    pub fn pack(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        pack_with(bytes, crate::ChunkIdHash::Blake3)
    }

    /// [`pack`] for a repository whose chunks are named by `hash`.
    pub fn pack_with(bytes: &[u8], hash: crate::ChunkIdHash) -> Result<Vec<Vec<u8>>> {
        let c = Crypto::none_with(hash);
        let id = ObjectId::default();
        let entries = crate::pack::parse_pack("pack", &id, bytes, &c)?;
        let mut out = Vec::new();
        for e in entries {
            let kind = crate::BlobKind::from_byte(e.kind)
                .ok_or_else(|| crate::Error::malformed("pack", "kind"))?;
            let stored = &bytes[e.offset as usize..][..e.length as usize];
            out.push(crate::blob::decode(
                &c,
                "pack",
                kind,
                &e.id,
                e.raw_length,
                e.crc32,
                stored,
            )?);
        }
        Ok(out)
    }
}
