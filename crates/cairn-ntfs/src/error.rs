use cairn_vfs::NodeId;

/// Everything that can go wrong while reading an NTFS volume.
///
/// Variants name the place (byte offset, MFT record, index VCN) and what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying reader failed or a read ran past its end.
    #[error("I/O: {0}")]
    Io(#[from] cairn_io::Error),
    /// A boot-sector field is out of its valid range.
    #[error("boot sector: {field} = {value} is invalid (expected {expected})")]
    BadBootSector {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A structure did not start with its magic.
    #[error("{what} at byte {offset}: magic {found:02x?}, expected {expected:?}")]
    BadMagic {
        /// Structure kind (`FILE record 12`, `INDX`).
        what: String,
        /// Volume or stream offset of the structure.
        offset: u64,
        /// The four bytes found.
        found: [u8; 4],
        /// The expected magic.
        expected: &'static str,
    },
    /// The update sequence array (multi-sector fixup) of a record is inconsistent.
    #[error("{what}: update sequence mismatch in sector {sector} (expected {expected:#06x}, found {found:#06x})")]
    BadFixup {
        /// The record (`MFT record 12`, `INDX vcn 4 of record 5`).
        what: String,
        /// 512-byte sector of the record whose last two bytes did not match.
        sector: usize,
        /// Update sequence number from the header.
        expected: u16,
        /// Value found at the sector end.
        found: u16,
    },
    /// A file record header or layout is inconsistent.
    #[error("MFT record {record}: {reason}")]
    BadRecord {
        /// Record number.
        record: u64,
        /// What was wrong.
        reason: String,
    },
    /// An attribute header or value is malformed.
    #[error("MFT record {record}, attribute at byte {offset}: {reason}")]
    BadAttribute {
        /// Record number.
        record: u64,
        /// Offset of the attribute inside the record.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// A data run list cannot be decoded or points outside the volume.
    #[error("MFT record {record}: run list of attribute {attr_type:#x}: {reason}")]
    BadRunList {
        /// Record number.
        record: u64,
        /// Attribute type code.
        attr_type: u32,
        /// What was wrong.
        reason: String,
    },
    /// A directory or security index is malformed.
    #[error("index of MFT record {record} (vcn {vcn:?}): {reason}")]
    BadIndex {
        /// Record holding the index.
        record: u64,
        /// Index node VCN, or `None` for the root node.
        vcn: Option<u64>,
        /// What was wrong.
        reason: String,
    },
    /// An LZNT1 compression unit cannot be decompressed.
    #[error("compressed stream, unit at stream offset {offset}: {reason}")]
    BadCompression {
        /// Stream offset of the compression unit.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A security descriptor or SID is malformed.
    #[error("security descriptor: {0}")]
    BadSecurityDescriptor(String),
    /// A reparse point buffer is malformed.
    #[error("MFT record {record}: reparse point: {reason}")]
    BadReparsePoint {
        /// Record number.
        record: u64,
        /// What was wrong.
        reason: String,
    },
    /// A walk revisited a place it had been (index node, extension record, parent chain).
    #[error("loop detected: {0}")]
    Loop(String),
    /// A disk-derived number exceeds a named limit.
    #[error("{what} = {value} exceeds the limit of {limit}")]
    LimitExceeded {
        /// What was counted or sized.
        what: &'static str,
        /// Value found.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The record number lies beyond the end of $MFT.
    #[error("MFT record {record} is beyond the end of $MFT ({records} records)")]
    RecordOutOfRange {
        /// Record asked for.
        record: u64,
        /// Records $MFT holds.
        records: u64,
    },
    /// The node's record is not in use, or its sequence number changed (a stale reference).
    #[error("node {node:#x}: MFT record {record} is not in use or has sequence {found} (reference says {expected})")]
    StaleReference {
        /// The node asked for.
        node: NodeId,
        /// Record number.
        record: u64,
        /// Sequence number in the reference.
        expected: u16,
        /// Sequence number in the record (0 when the record is free).
        found: u16,
    },
    /// The node is not a directory.
    #[error("node {0:#x} is not a directory")]
    NotADirectory(NodeId),
    /// The node has no such data stream.
    #[error("node {node:#x} has no data stream {stream:?}")]
    NoSuchStream {
        /// The node.
        node: NodeId,
        /// Stream name (`""` for the main stream).
        stream: String,
    },
    /// A path component was not found.
    #[error("path {path:?}: component {component:?} not found")]
    NotFound {
        /// The path looked up.
        path: String,
        /// The missing component.
        component: String,
    },
    /// A feature this reader does not decode (EFS encryption, unknown compression).
    #[error("node {node:#x}: unsupported: {what}")]
    Unsupported {
        /// The node.
        node: NodeId,
        /// What is unsupported.
        what: &'static str,
    },
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(io) => io.into(),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
