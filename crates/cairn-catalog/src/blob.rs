//! The catalog's blobs: directory blobs and security-descriptor tables, their model and their
//! framed encoding (see `docs/formats/catalog.md`).

use serde::{Deserialize, Deserializer, Serialize};

use crate::{BlobId, Error, Result};

/// First bytes of every catalog blob.
pub const MAGIC: [u8; 8] = *b"CAIRNCAT";
/// Current format version.
pub const VERSION: u16 = 1;
/// Bytes of the frame header before the payload.
pub const HEADER_LEN: usize = 20;
/// Blob type byte of a directory blob.
pub const TYPE_DIR: u8 = 1;
/// Blob type byte of a security-descriptor table.
pub const TYPE_SD_TABLE: u8 = 2;

/// Largest payload accepted: 64 MiB holds a directory of ~500k plain files, and bounds the
/// memory a hostile blob can make the decoder use to a small multiple of it.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// Most entries in one directory blob (NTFS and ext allow millions; real systems stay below).
pub const MAX_DIR_ENTRIES: usize = 1_000_000;
/// Longest name in bytes (255 UTF-16 units of NTFS escape to at most ~1.5 KiB of UTF-8).
pub const MAX_NAME_BYTES: usize = 4096;
/// Most extents recorded per stream (a badly fragmented multi-GiB file stays below).
pub const MAX_EXTENTS_PER_STREAM: usize = 1_000_000;
/// Most extended attributes per node (ext xattrs fit in one block; NTFS EAs in 64 KiB).
pub const MAX_XATTRS: usize = 4096;
/// Largest extended-attribute value (ext4 `ea_inode` values may reach 64 KiB).
pub const MAX_XATTR_VALUE_BYTES: usize = 64 << 10;
/// Most named streams per node.
pub const MAX_STREAMS: usize = 4096;
/// Longest symlink target stored (Linux PATH_MAX is 4096; NTFS reparse data is ≤ 16 KiB).
pub const MAX_SYMLINK_BYTES: usize = 16 << 10;
/// Largest security descriptor (NTFS caps a self-relative SD at 64 KiB).
pub const MAX_SD_BYTES: usize = 64 << 10;
/// Most security descriptors in one table (NTFS volumes typically hold hundreds).
pub const MAX_SD_ENTRIES: usize = 1 << 20;
/// Longest error message recorded for an unreadable subtree.
pub const MAX_ERROR_BYTES: usize = 4096;

/// A point in time (seconds and nanoseconds since the Unix epoch, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Time {
    /// RFC 3339 text in UTC.
    pub fn to_rfc3339(self) -> String {
        cairn_vfs::Timestamp {
            secs: self.secs,
            nanos: self.nanos,
        }
        .to_rfc3339()
    }
}

impl From<cairn_vfs::Timestamp> for Time {
    fn from(t: cairn_vfs::Timestamp) -> Self {
        Time {
            secs: t.secs,
            nanos: t.nanos,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Device, FIFO, socket, unknown reparse point.
    Other,
}

impl Kind {
    /// JSON name: `file`, `dir`, `symlink`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }
}

impl From<cairn_vfs::FileKind> for Kind {
    fn from(k: cairn_vfs::FileKind) -> Self {
        match k {
            cairn_vfs::FileKind::File => Kind::File,
            cairn_vfs::FileKind::Dir => Kind::Dir,
            cairn_vfs::FileKind::Symlink => Kind::Symlink,
            cairn_vfs::FileKind::Other => Kind::Other,
        }
    }
}

/// Where a piece of a stream lies on the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// Offset in the stream.
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Byte offset on the volume; `None` for a hole (reads as zeros).
    pub volume_offset: Option<u64>,
    /// The volume bytes are encoded (compressed, inline in metadata): restore needs the reader.
    pub encoded: bool,
}

impl From<cairn_vfs::FileExtent> for Extent {
    fn from(e: cairn_vfs::FileExtent) -> Self {
        Extent {
            file_offset: e.file_offset,
            len: e.len,
            volume_offset: e.volume_offset,
            encoded: e.encoded,
        }
    }
}

/// Unix ownership and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unix {
    /// Full `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// An extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Xattr {
    /// Name with namespace prefix.
    pub name: String,
    /// Raw value.
    #[serde(deserialize_with = "bounded_bytes::<_, MAX_XATTR_VALUE_BYTES>")]
    pub value: Vec<u8>,
}

/// A named data stream (NTFS alternate data stream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stream {
    /// Stream name.
    pub name: String,
    /// Logical size.
    pub size: u64,
    /// Where it lies on the volume (empty when it could not be mapped).
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_EXTENTS_PER_STREAM>")]
    pub extents: Vec<Extent>,
}

/// One entry of a directory blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Name within its directory (escaped UTF-8, as the reader gives it).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Logical size of the main data.
    pub size: u64,
    /// Bytes allocated on the volume, where known.
    pub allocated: Option<u64>,
    /// Last modification.
    pub mtime: Option<Time>,
    /// Last access.
    pub atime: Option<Time>,
    /// Last metadata change.
    pub ctime: Option<Time>,
    /// Creation.
    pub btime: Option<Time>,
    /// Unix mode and owner.
    pub unix: Option<Unix>,
    /// Windows attribute bits.
    pub windows_attributes: Option<u32>,
    /// Hard-link count.
    pub nlink: u32,
    /// The file system's node id (inode, MFT reference, FAT entry position).
    pub node: u64,
    /// Extended attributes.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_XATTRS>")]
    pub xattrs: Vec<Xattr>,
    /// Named streams besides the main data.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_STREAMS>")]
    pub streams: Vec<Stream>,
    /// Index of the security descriptor in the volume's SD table.
    pub sd: Option<u32>,
    /// Symlink target.
    pub symlink_target: Option<String>,
    /// Volume extents of the main data (files; empty for directories).
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_EXTENTS_PER_STREAM>")]
    pub extents: Vec<Extent>,
    /// The backup treated this file's data blocks as free (an exclude pattern matched).
    pub excluded: bool,
    /// Directories: the id of the child directory blob (`None` when it could not be read).
    pub child: Option<BlobId>,
    /// Why the node (or, for a directory, its subtree) could not be fully catalogued.
    pub error: Option<String>,
}

impl Entry {
    /// A bare entry with nothing but a name, kind and size.
    pub fn new(name: impl Into<String>, kind: Kind, size: u64) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size,
            allocated: None,
            mtime: None,
            atime: None,
            ctime: None,
            btime: None,
            unix: None,
            windows_attributes: None,
            nlink: 1,
            node: 0,
            xattrs: Vec::new(),
            streams: Vec::new(),
            sd: None,
            symlink_target: None,
            extents: Vec::new(),
            excluded: false,
            child: None,
            error: None,
        }
    }

    /// SHA-256 over the entry's content identity: kind, size, main extents, streams and
    /// symlink target. Two entries with the same path, size, mtime and content id are the
    /// same version of a file.
    pub fn content_id(&self) -> BlobId {
        let ident = (
            self.kind,
            self.size,
            &self.extents,
            &self.streams,
            &self.symlink_target,
        );
        // postcard of plain data cannot fail; an empty fallback would still be deterministic.
        let bytes = postcard::to_allocvec(&ident).unwrap_or_default();
        crate::sha256(&bytes)
    }
}

/// The payload of a directory blob: entries sorted by name (byte order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirBlob {
    /// The entries.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_DIR_ENTRIES>")]
    pub entries: Vec<Entry>,
}

/// The payload of a security-descriptor table: self-relative SDs, referenced by index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdTable {
    /// The descriptors, in index order.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_SD_ENTRIES>")]
    pub descriptors: Vec<SdBytes>,
}

/// One security descriptor's bytes (at most [`MAX_SD_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SdBytes(#[serde(deserialize_with = "bounded_bytes::<_, MAX_SD_BYTES>")] pub Vec<u8>);

/// Deserializes a sequence, refusing more than `N` elements before allocating for them.
pub(crate) fn bounded_vec<'de, D, T, const N: usize>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for V<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a sequence of at most {N} elements")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > N {
                return Err(serde::de::Error::invalid_length(hint, &self));
            }
            // Elements are decoded one by one: memory grows only with bytes actually present.
            let mut out = Vec::with_capacity(hint.min(1024));
            while let Some(x) = seq.next_element()? {
                if out.len() == N {
                    return Err(serde::de::Error::invalid_length(N + 1, &self));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V::<T, N>(std::marker::PhantomData))
}

/// Deserializes a byte string of at most `N` bytes.
fn bounded_bytes<'de, D, const N: usize>(d: D) -> std::result::Result<Vec<u8>, D::Error>
where
    D: Deserializer<'de>,
{
    let v: Vec<u8> = bounded_vec::<D, u8, N>(d)?;
    Ok(v)
}

/// Wraps `payload` in the catalog frame.
pub(crate) fn frame(blob_type: u8, payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::TooLarge {
            what: "blob payload",
            found: payload.len() as u64,
            max: MAX_PAYLOAD_BYTES as u64,
        });
    }
    let len = u32::try_from(payload.len()).map_err(|_| Error::TooLarge {
        what: "blob payload",
        found: payload.len() as u64,
        max: MAX_PAYLOAD_BYTES as u64,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(blob_type);
    out.push(0); // flags: none defined
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Unframes a blob of type `want_type` and decodes its whole payload as postcard `T`; bytes
/// left over after the value are an error. `what` names the record in errors.
pub(crate) fn decode_framed<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    want_type: u8,
    what: &'static str,
) -> Result<T> {
    let payload = unframe(bytes, want_type)?;
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|e| Error::Decode {
            what,
            detail: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes {
            expected: (payload.len() - rest.len()) as u64,
            found: payload.len() as u64,
        });
    }
    Ok(value)
}

/// Checks the frame of `bytes` and returns its payload.
pub(crate) fn unframe(bytes: &[u8], want_type: u8) -> Result<&[u8]> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated {
            what: "blob header",
            need: HEADER_LEN as u64,
            have: bytes.len() as u64,
        });
    }
    if bytes[0..8] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    if bytes[10] != want_type {
        return Err(Error::WrongBlobType {
            expected: want_type,
            found: bytes[10],
        });
    }
    if bytes[11] != 0 {
        return Err(Error::UnknownFlags(bytes[11]));
    }
    let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len_usize > MAX_PAYLOAD_BYTES {
        return Err(Error::TooLarge {
            what: "blob payload",
            found: u64::from(len),
            max: MAX_PAYLOAD_BYTES as u64,
        });
    }
    let have = bytes.len() - HEADER_LEN;
    if have < len_usize {
        return Err(Error::Truncated {
            what: "blob payload",
            need: u64::from(len),
            have: have as u64,
        });
    }
    if have > len_usize {
        return Err(Error::TrailingBytes {
            expected: u64::from(len),
            found: have as u64,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    let stored = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return Err(Error::BadCrc { stored, actual });
    }
    Ok(payload)
}

fn check_len(what: &'static str, found: usize, max: usize) -> Result<()> {
    if found > max {
        return Err(Error::TooLarge {
            what,
            found: found as u64,
            max: max as u64,
        });
    }
    Ok(())
}

fn check_entry(e: &Entry) -> Result<()> {
    check_len("entry name", e.name.len(), MAX_NAME_BYTES)?;
    if e.name.is_empty() || e.name == "." || e.name == ".." || e.name.contains('/') {
        return Err(Error::Invalid(format!(
            "entry name {:?} is not a plain name",
            e.name
        )));
    }
    for x in &e.xattrs {
        check_len("xattr name", x.name.len(), MAX_NAME_BYTES)?;
    }
    for s in &e.streams {
        check_len("stream name", s.name.len(), MAX_NAME_BYTES)?;
    }
    if let Some(t) = &e.symlink_target {
        check_len("symlink target", t.len(), MAX_SYMLINK_BYTES)?;
    }
    if let Some(m) = &e.error {
        check_len("error message", m.len(), MAX_ERROR_BYTES)?;
    }
    if e.child.is_some() && e.kind != Kind::Dir {
        return Err(Error::Invalid(format!(
            "entry {:?} is not a directory but has a child blob",
            e.name
        )));
    }
    Ok(())
}

/// Encodes a directory blob. Entries must be sorted by name and within the limits.
pub fn encode_dir(dir: &DirBlob) -> Result<Vec<u8>> {
    validate_dir(dir)?;
    let payload = postcard::to_allocvec(dir).map_err(|e| Error::Decode {
        what: "directory blob",
        detail: e.to_string(),
    })?;
    frame(TYPE_DIR, &payload)
}

fn validate_dir(dir: &DirBlob) -> Result<()> {
    check_len("directory entries", dir.entries.len(), MAX_DIR_ENTRIES)?;
    for e in &dir.entries {
        check_entry(e)?;
        check_len("extents", e.extents.len(), MAX_EXTENTS_PER_STREAM)?;
        check_len("xattrs", e.xattrs.len(), MAX_XATTRS)?;
        check_len("streams", e.streams.len(), MAX_STREAMS)?;
        for x in &e.xattrs {
            check_len("xattr value", x.value.len(), MAX_XATTR_VALUE_BYTES)?;
        }
        for s in &e.streams {
            check_len("stream extents", s.extents.len(), MAX_EXTENTS_PER_STREAM)?;
        }
    }
    for w in dir.entries.windows(2) {
        if w[0].name > w[1].name {
            return Err(Error::Invalid(format!(
                "entries not sorted: {:?} before {:?}",
                w[0].name, w[1].name
            )));
        }
    }
    Ok(())
}

/// Decodes a directory blob, checking the frame, the CRC, every limit and the sort order.
pub fn decode_dir(bytes: &[u8]) -> Result<DirBlob> {
    let dir: DirBlob = decode_framed(bytes, TYPE_DIR, "directory blob")?;
    validate_dir(&dir)?;
    Ok(dir)
}

/// Encodes a security-descriptor table.
pub fn encode_sd_table(table: &SdTable) -> Result<Vec<u8>> {
    validate_sd_table(table)?;
    let payload = postcard::to_allocvec(table).map_err(|e| Error::Decode {
        what: "SD table",
        detail: e.to_string(),
    })?;
    frame(TYPE_SD_TABLE, &payload)
}

fn validate_sd_table(table: &SdTable) -> Result<()> {
    check_len("SD table entries", table.descriptors.len(), MAX_SD_ENTRIES)?;
    for sd in &table.descriptors {
        check_len("security descriptor", sd.0.len(), MAX_SD_BYTES)?;
    }
    Ok(())
}

/// Decodes a security-descriptor table.
pub fn decode_sd_table(bytes: &[u8]) -> Result<SdTable> {
    let table: SdTable = decode_framed(bytes, TYPE_SD_TABLE, "SD table")?;
    validate_sd_table(&table)?;
    Ok(table)
}
