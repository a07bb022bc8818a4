//! # cairn-vfs
//!
//! The one API every guest file-system reader of Cairn implements (`cairn-ext`, `cairn-fat`,
//! `cairn-ntfs`), so that `cairn-guestfs`, the catalog and the CLI handle NTFS, FAT, exFAT
//! and ext2/3/4 alike. It holds vocabulary only: no parsing, no I/O.
//!
//! A reader opens a volume from any [`ReadAt`] (a partition of a virtual disk is one), and
//! answers by [`NodeId`]: list a directory, stat a node, open a stream's bytes as a
//! `ReadAt`, map a stream to the volume extents that hold it, and report the volume's
//! used-block map.
//!
//! ```
//! use cairn_vfs::{escape_name_bytes, escape_name_utf16};
//! assert_eq!(escape_name_bytes(b"ok.txt"), "ok.txt");
//! assert_eq!(escape_name_bytes(b"bad\xffname"), "bad\\xffname");
//! assert_eq!(escape_name_utf16(&[0x61, 0xD800, 0x62]), "a\\u{d800}b");
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;

pub use cairn_io::{AllocationMap, ReadAt};

/// A node of a file system: ext inode number, NTFS MFT reference (record number and
/// sequence), FAT/exFAT directory-entry position. Opaque to callers; stable for one open
/// volume.
pub type NodeId = u64;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (ext symlink, NTFS symlink/junction/WSL link reparse point).
    Symlink,
    /// Anything else (device, FIFO, socket, unknown reparse point).
    Other,
}

impl FileKind {
    /// The name used in JSON output: `file`, `dir`, `symlink`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }
}

/// A point in time: seconds and nanoseconds since the Unix epoch (UTC); negative seconds
/// are before 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds within the second (0..1e9).
    pub nanos: u32,
}

impl Timestamp {
    /// From an NTFS/Windows FILETIME (100 ns ticks since 1601-01-01).
    pub fn from_filetime(ticks: u64) -> Timestamp {
        const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
        let secs = i64::try_from(ticks / 10_000_000).unwrap_or(i64::MAX) - EPOCH_DIFF_SECS;
        let nanos = u32::try_from((ticks % 10_000_000) * 100).unwrap_or(0);
        Timestamp { secs, nanos }
    }

    /// RFC 3339 in UTC, with nanoseconds when non-zero: `2023-11-14T22:13:20Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        if self.nanos == 0 {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            format!(
                "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:09}Z",
                self.nanos
            )
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix ownership and permissions (ext; NTFS WSL metadata where present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnixMeta {
    /// Full `st_mode` (type bits and permissions).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A named data stream of a node other than its main data (NTFS alternate data stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Stream name (escaped UTF-8).
    pub name: String,
    /// Logical size in bytes.
    pub size: u64,
}

/// An extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name with namespace prefix, e.g. `user.comment`, `system.posix_acl_access`.
    pub name: String,
    /// Raw value.
    pub value: Vec<u8>,
}

/// Everything a backup keeps about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The node.
    pub id: NodeId,
    /// Kind.
    pub kind: FileKind,
    /// Logical size of the main data in bytes (symlink: target length).
    pub size: u64,
    /// Bytes the volume allocates to the node's data, where known.
    pub allocated: Option<u64>,
    /// Last modification.
    pub mtime: Option<Timestamp>,
    /// Last access.
    pub atime: Option<Timestamp>,
    /// Last metadata change (ext ctime, NTFS MFT change time).
    pub ctime: Option<Timestamp>,
    /// Creation.
    pub btime: Option<Timestamp>,
    /// Unix ownership and mode, where the file system records them.
    pub unix: Option<UnixMeta>,
    /// Windows / DOS attribute bits (FILE_ATTRIBUTE_*), where recorded.
    pub windows_attributes: Option<u32>,
    /// Number of names (hard links) the node has.
    pub nlink: u32,
    /// Extended attributes (ext xattrs, decoded POSIX ACLs stay raw here).
    pub xattrs: Vec<Xattr>,
    /// Named streams besides the main one.
    pub streams: Vec<StreamInfo>,
    /// Self-relative Windows security descriptor bytes (NTFS), where present.
    pub security_descriptor: Option<Vec<u8>>,
    /// Link target for symlinks (escaped UTF-8, as stored).
    pub symlink_target: Option<String>,
}

impl Metadata {
    /// A bare metadata record of `kind` and `size` with nothing else known.
    pub fn new(id: NodeId, kind: FileKind, size: u64) -> Self {
        Metadata {
            id,
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
            xattrs: Vec::new(),
            streams: Vec::new(),
            security_descriptor: None,
            symlink_target: None,
        }
    }
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name, UTF-8, with invalid sequences escaped (see [`escape_name_bytes`]).
    pub name: String,
    /// The node it names.
    pub id: NodeId,
    /// Its kind, as the directory or the node says.
    pub kind: FileKind,
}

/// Where a piece of a stream lives on the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtent {
    /// Offset in the stream.
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Byte offset on the volume, or `None` for a hole / unwritten extent that reads as zeros.
    pub volume_offset: Option<u64>,
    /// The bytes on the volume are encoded (NTFS compression unit, ext inline data inside
    /// the inode): restoring needs the reader, not a plain copy of the volume range.
    pub encoded: bool,
}

/// Size and usage of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// File system name: `ntfs`, `fat12`, `fat16`, `fat32`, `exfat`, `ext2`, `ext3`, `ext4`.
    pub fs_type: &'static str,
    /// Volume label, if any.
    pub label: Option<String>,
    /// Volume serial or UUID as the file system prints it.
    pub uuid: Option<String>,
    /// Allocation unit (block / cluster) in bytes.
    pub block_size: u32,
    /// Bytes the file system spans.
    pub total_bytes: u64,
    /// Bytes in use (metadata included).
    pub used_bytes: u64,
    /// Bytes free.
    pub free_bytes: u64,
    /// Warnings a careful reader reports: dirty journal, volume marked dirty, etc.
    pub warnings: Vec<String>,
}

/// A read-only guest file system.
///
/// Implementations are `Send + Sync` and take `&self`, so many threads may walk and read
/// one volume at once.
pub trait FileSystem: Send + Sync + std::fmt::Debug {
    /// The reader's own error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Volume facts.
    fn info(&self) -> VolumeInfo;
    /// The root directory.
    fn root(&self) -> NodeId;
    /// The entries of a directory (no `.`/`..`), in on-disk order.
    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>, Self::Error>;
    /// Metadata of a node.
    fn metadata(&self, node: NodeId) -> Result<Metadata, Self::Error>;
    /// The bytes of a node's main data (`stream: None`) or of a named stream.
    fn open(&self, node: NodeId, stream: Option<&str>) -> Result<Arc<dyn ReadAt>, Self::Error>;
    /// Where a stream's bytes lie on the volume, in stream order, covering `[0, size)`.
    fn extents(&self, node: NodeId, stream: Option<&str>) -> Result<Vec<FileExtent>, Self::Error>;
    /// The volume's used-block map: `Data` where the file system allocates blocks
    /// (metadata included), `Unallocated` where blocks are free.
    fn used_map(&self) -> Result<AllocationMap, Self::Error>;
}

/// Makes bytes a UTF-8 name: valid UTF-8 is kept, each invalid byte becomes `\xNN`, and a
/// backslash becomes `\\` so the escape is reversible.
pub fn escape_name_bytes(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Makes UTF-16 code units a UTF-8 name: unpaired surrogates become `\u{dxxx}`, a backslash
/// becomes `\\`.
pub fn escape_name_utf16(raw: &[u16]) -> String {
    let mut out = String::with_capacity(raw.len());
    for r in char::decode_utf16(raw.iter().copied()) {
        match r {
            Ok('\\') => out.push_str("\\\\"),
            Ok(c) => out.push(c),
            Err(e) => out.push_str(&format!("\\u{{{:x}}}", e.unpaired_surrogate())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(
            Timestamp {
                secs: 1_700_000_000,
                nanos: 0
            }
            .to_rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Timestamp { secs: 0, nanos: 5 }.to_rfc3339(),
            "1970-01-01T00:00:00.000000005Z"
        );
        assert_eq!(
            Timestamp {
                secs: -86_400,
                nanos: 0
            }
            .to_rfc3339(),
            "1969-12-31T00:00:00Z"
        );
        assert_eq!(
            Timestamp::from_filetime(116_444_736_000_000_000),
            Timestamp { secs: 0, nanos: 0 }
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_name_bytes(b"a\\b"), "a\\\\b");
        assert_eq!(
            escape_name_utf16(&"日本".encode_utf16().collect::<Vec<_>>()),
            "日本"
        );
    }
}
