/// Errors of the VHDX reader. Every variant names the structure (and offset) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the image file (or the attached parent) failed.
    #[error(transparent)]
    Io(#[from] cairn_io::Error),
    /// The file does not start with `vhdxfile`.
    #[error(
        "not a VHDX image: file type identifier at offset 0 is {found:?}, expected \"vhdxfile\""
    )]
    BadSignature {
        /// The eight bytes found (lossy text).
        found: String,
    },
    /// The file is shorter than the fixed header area.
    #[error("image file of {size} bytes is too short (needs at least {needed})")]
    Truncated {
        /// File size.
        size: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// Neither header copy (offsets 64 KiB and 128 KiB) has a valid signature and CRC-32C.
    #[error("no valid VHDX header: {first}; {second}")]
    NoValidHeader {
        /// Why the first copy was rejected.
        first: String,
        /// Why the second copy was rejected.
        second: String,
    },
    /// Neither region table copy (192 KiB, 256 KiB) is valid.
    #[error("no valid VHDX region table: {first}; {second}")]
    NoValidRegionTable {
        /// Why the first copy was rejected.
        first: String,
        /// Why the second copy was rejected.
        second: String,
    },
    /// A field holds a value outside what the specification allows.
    #[error("{structure} at offset {offset}: {field} = {value}: {reason}")]
    BadField {
        /// Header, region table entry, metadata item...
        structure: &'static str,
        /// Offset of the structure in the file.
        offset: u64,
        /// Field name as the specification spells it.
        field: &'static str,
        /// The value found.
        value: u64,
        /// What was expected.
        reason: &'static str,
    },
    /// A region or metadata item this reader does not know is marked required.
    #[error("unknown required {kind} {guid} at offset {offset}; the image needs a newer reader")]
    UnknownRequired {
        /// "region" or "metadata item".
        kind: &'static str,
        /// Its GUID.
        guid: String,
        /// Offset of its table entry.
        offset: u64,
    },
    /// A region or metadata item the format requires is absent.
    #[error("required {0} is missing")]
    Missing(&'static str),
    /// The metadata table or one of its items is malformed.
    #[error("metadata at offset {offset}: {reason}")]
    BadMetadata {
        /// Offset of the table or item.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A BAT entry is invalid for its position or points outside the file.
    #[error("BAT entry {index} ({entry:#018x}) for {what}: {reason}")]
    BadBatEntry {
        /// Index of the entry in the BAT.
        index: u64,
        /// The raw entry.
        entry: u64,
        /// "payload block N" or "sector bitmap of chunk N".
        what: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The header's log GUID is set and the log could not be replayed in memory.
    #[error("VHDX log at offset {offset} ({length} bytes) must be replayed but {reason}")]
    DirtyLog {
        /// Log offset from the header.
        offset: u64,
        /// Log length from the header.
        length: u32,
        /// Why replay failed.
        reason: String,
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
