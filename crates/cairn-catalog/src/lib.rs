//! # cairn-catalog
//!
//! The file catalog stored with every restore point: for each volume, a Merkle tree of
//! **directory blobs** (entries sorted by name, with metadata, volume extents and the id of
//! each child directory's blob) plus one deduplicated **security-descriptor table**. Users
//! list, find, diff and restore single files from it without reading the image.
//!
//! Blobs go through a [`BlobStore`] (content addressed: the engine implements it on the
//! repository, which deduplicates them), so an unchanged subtree has the same id in the next
//! restore point and costs nothing. The byte format is in `docs/formats/catalog.md`.
//!
//! - Build: [`build_volume_catalog`] walks a [`cairn_guestfs::GuestFs`] children first and
//!   returns a [`VolumeCatalog`] (root id, SD table id, counts, excluded files' volume ranges).
//! - Read: [`Catalog::open`], then `list`, `lookup`, `walk`, `find`, `diff` ([`diff`]), and
//!   [`Entry::to_json`] for the CLI.
//! - Search across restore points: [`find_versions`] (walks the catalogs), or a persistent
//!   [`IndexGroup`] (the find index: one table of versions, updated incrementally).
//!
//! ```
//! use cairn_catalog::{Catalog, DirBlob, Entry, Kind, MemStore, put_dir, Glob};
//!
//! let store = MemStore::new();
//! let mut file = Entry::new("song.mp3", Kind::File, 3);
//! file.mtime = Some(cairn_catalog::Time { secs: 1_700_000_000, nanos: 0 });
//! let music = put_dir(&store, &DirBlob { entries: vec![file] }).unwrap();
//! let mut dir = Entry::new("Music", Kind::Dir, 0);
//! dir.child = Some(music);
//! let root = put_dir(&store, &DirBlob { entries: vec![dir] }).unwrap();
//!
//! let cat = Catalog::open(&store, root).unwrap();
//! assert_eq!(cat.list("/Music").unwrap()[0].name, "song.mp3");
//! let hits = cat.find(&Glob::new("*.mp3").unwrap()).unwrap();
//! assert_eq!(hits[0].0, "/Music/song.mp3");
//! let json = serde_json::to_string(&hits[0].1.to_json(&hits[0].0)).unwrap();
//! assert!(json.contains("\"mtime\":\"2023-11-14T22:13:20Z\""));
//! ```
#![forbid(unsafe_code)]

mod blob;
mod build;
mod extents;
mod findindex;
mod glob;
mod read;
mod versions;

use std::collections::HashMap;
use std::sync::Mutex;

pub use blob::{
    decode_dir, decode_sd_table, encode_dir, encode_sd_table, DirBlob, Entry, Extent, Kind,
    SdBytes, SdTable, Stream, Time, Unix, Xattr, HEADER_LEN, MAGIC, MAX_DIR_ENTRIES,
    MAX_ERROR_BYTES, MAX_EXTENTS_PER_STREAM, MAX_NAME_BYTES, MAX_PAYLOAD_BYTES, MAX_SD_BYTES,
    MAX_SD_ENTRIES, MAX_STREAMS, MAX_SYMLINK_BYTES, MAX_XATTRS, MAX_XATTR_VALUE_BYTES, TYPE_DIR,
    TYPE_SD_TABLE, VERSION,
};
pub use build::{
    build_volume_catalog, CatalogOptions, CatalogStats, VolumeCatalog, VolumeRange,
    DEFAULT_MAX_DEPTH,
};
pub use extents::ExtentReader;
pub use findindex::{
    decode_find_group, decode_find_pointer, encode_find_group, encode_find_pointer, get_find_group,
    put_find_group, IndexGroup, IndexedPoint, UpdateStats, FIND_PART_BYTES, MAX_GROUP_PARTS,
    MAX_INDEX_GROUPS, MAX_INDEX_MEMBERSHIP, MAX_INDEX_PATH, MAX_INDEX_POINTS, MAX_INDEX_ROWS,
    MAX_INDEX_TEXT, TYPE_FIND_INDEX, TYPE_FIND_POINTER,
};
pub use glob::{Glob, MAX_GLOB_LEN};
pub use read::{diff, Catalog, Change, ChangeKind, EntryJson, StreamJson, What};
pub use versions::{find_versions, RestorePointRef, Version};

/// A blob id: what the store returns for the bytes it keeps (a SHA-256 or keyed hash).
pub type BlobId = [u8; 32];

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The blob store failed.
    #[error("blob store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A blob does not start with `CAIRNCAT`.
    #[error("not a catalog blob (bad magic)")]
    BadMagic,
    /// A blob of a format version this build does not read.
    #[error("catalog blob version {0} is not supported")]
    UnsupportedVersion(u16),
    /// A directory blob where an SD table was expected, or the reverse.
    #[error("catalog blob type {found}, expected {expected}")]
    WrongBlobType {
        /// Expected type byte.
        expected: u8,
        /// Type byte found.
        found: u8,
    },
    /// Flag bits this build does not know.
    #[error("catalog blob has unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// A blob is shorter than its header says.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Which part.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// Bytes after the payload.
    #[error("trailing bytes: payload is {expected} bytes, found {found}")]
    TrailingBytes {
        /// Bytes the header or payload accounts for.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The payload's CRC32 does not match.
    #[error("catalog blob CRC mismatch: stored {stored:#010x}, computed {actual:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the payload.
        actual: u32,
    },
    /// A count or size above its limit.
    #[error("{what}: {found} exceeds the limit of {max}")]
    TooLarge {
        /// What was counted.
        what: &'static str,
        /// Value found.
        found: u64,
        /// Limit.
        max: u64,
    },
    /// The payload does not decode.
    #[error("{what} does not decode: {detail}")]
    Decode {
        /// Which blob kind.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The payload decodes but breaks an invariant (unsorted, bad name).
    #[error("invalid catalog blob: {0}")]
    Invalid(String),
    /// A bad glob pattern.
    #[error("bad pattern {pattern:?}: {what}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        what: String,
    },
    /// The guest file system failed where the catalog cannot go on (the root directory).
    #[error("{path}: {source}")]
    Fs {
        /// Where.
        path: String,
        /// The reader's error.
        #[source]
        source: cairn_guestfs::Error,
    },
    /// A path names nothing in the catalog.
    #[error("{0}: no such file or directory in the catalog")]
    NotFound(String),
    /// A path goes through a non-directory.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A directory whose subtree was not catalogued (read error recorded at build time).
    #[error("{path}: not catalogued: {why}")]
    NotCatalogued {
        /// Where.
        path: String,
        /// The error recorded when the catalog was built.
        why: String,
    },
    /// A catalog walk went deeper than its limit (a hostile tree of blobs).
    #[error("{0}: catalog deeper than {DEFAULT_MAX_DEPTH} directories")]
    TooDeep(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the catalog keeps its blobs: content addressed, so equal bytes get equal ids.
pub trait BlobStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Stores `bytes` and returns their id (storing bytes already present is free).
    fn put(&self, bytes: Vec<u8>) -> Result<BlobId, Self::Error>;
    /// Returns the bytes of blob `id`.
    fn get(&self, id: &BlobId) -> Result<Vec<u8>, Self::Error>;
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> BlobId {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of an id.
pub fn hex(id: &BlobId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Error of [`MemStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemStoreError {
    /// No blob with that id.
    #[error("blob {0} not found")]
    NotFound(String),
}

/// An in-memory content-addressed store (SHA-256 ids) for tests and tools; counts the bytes
/// of blobs that were new.
#[derive(Debug, Default)]
pub struct MemStore {
    blobs: Mutex<HashMap<BlobId, Vec<u8>>>,
    new_bytes: Mutex<u64>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Total bytes of distinct blobs stored so far.
    pub fn new_bytes(&self) -> u64 {
        *self.new_bytes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the bytes stored under `id` (tests: corrupt a blob).
    pub fn replace(&self, id: &BlobId, bytes: Vec<u8>) {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, bytes);
    }
}

impl BlobStore for MemStore {
    type Error = MemStoreError;

    fn put(&self, bytes: Vec<u8>) -> Result<BlobId, MemStoreError> {
        let id = sha256(&bytes);
        let len = bytes.len() as u64;
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::hash_map::Entry::Vacant(v) = blobs.entry(id) {
            v.insert(bytes);
            *self.new_bytes.lock().unwrap_or_else(|p| p.into_inner()) += len;
        }
        Ok(id)
    }

    fn get(&self, id: &BlobId) -> Result<Vec<u8>, MemStoreError> {
        let blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        blobs
            .get(id)
            .cloned()
            .ok_or_else(|| MemStoreError::NotFound(hex(id)))
    }
}

fn store_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    Error::Store(Box::new(e))
}

/// Encodes `dir` and stores it; returns its id.
pub fn put_dir<S: BlobStore + ?Sized>(store: &S, dir: &DirBlob) -> Result<BlobId> {
    let bytes = encode_dir(dir)?;
    store.put(bytes).map_err(store_err)
}

/// Loads and decodes the directory blob `id`.
pub fn get_dir<S: BlobStore + ?Sized>(store: &S, id: &BlobId) -> Result<DirBlob> {
    let bytes = store.get(id).map_err(store_err)?;
    decode_dir(&bytes)
}

/// Loads and decodes the SD table `id`.
pub fn get_sd_table<S: BlobStore + ?Sized>(store: &S, id: &BlobId) -> Result<SdTable> {
    let bytes = store.get(id).map_err(store_err)?;
    decode_sd_table(&bytes)
}
