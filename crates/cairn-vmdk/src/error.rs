use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing a VMDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying file or reader failed.
    #[error(transparent)]
    Io(#[from] cairn_io::Error),
    /// Opening or writing a file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file is shorter than a structure it must hold.
    #[error("truncated: {what} needs {need} bytes at offset {offset}, file has {size}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        need: u64,
        /// Size of the file.
        size: u64,
    },
    /// Neither a sparse header magic nor a text descriptor.
    #[error("not a VMDK: {0}")]
    NotVmdk(String),
    /// A header field is invalid.
    #[error("bad {format} header field {field}: {value} ({expected})")]
    BadHeader {
        /// `KDMV`, `COWD` or `seSparse`.
        format: &'static str,
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// What was expected.
        expected: &'static str,
    },
    /// Grain size zero, not a power of two, or above the limit.
    #[error(
        "bad grain size {bytes} bytes (must be a power of two of at least 512 and at most {max})"
    )]
    BadGrainSize {
        /// Grain size found, in bytes (saturated).
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// Virtual size above `limits.max_virtual_size`.
    #[error("virtual size {size} bytes exceeds the limit of {max}")]
    CapacityTooLarge {
        /// Size found (saturated).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A metadata table is larger than `limits.max_table_bytes`.
    #[error("{what} of {bytes} bytes exceeds the table limit of {max}")]
    TableTooLarge {
        /// Which table.
        what: &'static str,
        /// Its size (saturated).
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The grain directory (primary and redundant) lies outside the file or points outside it.
    #[error("grain directory unusable: {0}")]
    BadGrainDirectory(String),
    /// A grain table entry points outside the file.
    #[error("grain table entry for grain {grain} points at byte {offset}, outside the file ({size} bytes)")]
    GrainOutOfRange {
        /// Grain index in the extent.
        grain: u64,
        /// Host offset found.
        offset: u64,
        /// File size.
        size: u64,
    },
    /// A grain table entry has an invalid encoding.
    #[error("invalid grain table entry {value:#x} for grain {grain}")]
    BadGrainEntry {
        /// Grain index in the extent.
        grain: u64,
        /// The raw entry.
        value: u64,
    },
    /// A compressed grain is malformed.
    #[error("compressed grain {grain} at byte {offset}: {reason}")]
    BadCompressedGrain {
        /// Grain index in the extent.
        grain: u64,
        /// Offset of its marker.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The descriptor text is invalid.
    #[error("descriptor line {line}: {reason}")]
    BadDescriptor {
        /// 1-based line number (0: the descriptor as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The descriptor is larger than `limits.max_descriptor_bytes`.
    #[error("descriptor of {bytes} bytes exceeds the limit of {max}")]
    DescriptorTooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// More extents than `limits.max_extents`.
    #[error("more than {max} extents")]
    TooManyExtents {
        /// The limit.
        max: u32,
    },
    /// An extent file name is absolute, climbs out of the descriptor's folder, or holds NUL.
    #[error("refused extent path {path:?}: {reason}")]
    BadExtentPath {
        /// The path as written.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The image uses something this reader does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The parent given to `attach_parent` cannot be used.
    #[error("parent refused: {0}")]
    BadParent(String),
    /// A writer's input or options are invalid.
    #[error("cannot write: {0}")]
    BadWriteInput(String),
}

impl From<Error> for cairn_io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(inner) => inner,
            other => cairn_io::Error::io(0, io::Error::new(io::ErrorKind::InvalidData, other)),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
