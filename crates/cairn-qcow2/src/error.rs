/// Errors of the qcow2 reader. Every variant names where in the image file the problem is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the image file (or the attached parent) failed.
    #[error(transparent)]
    Io(#[from] cairn_io::Error),
    /// The file does not start with `QFI\xfb`.
    #[error("not a qcow2 image: magic at offset 0 is {found:#010x}, expected 0x514649fb")]
    BadMagic {
        /// The four bytes found, big-endian.
        found: u32,
    },
    /// The header version is neither 2 nor 3.
    #[error("unsupported qcow2 version {0} at offset 4 (only 2 and 3 are read)")]
    UnsupportedVersion(u32),
    /// The file is shorter than the header it claims.
    #[error("image file of {size} bytes is too short for its {needed}-byte header")]
    Truncated {
        /// File size.
        size: u64,
        /// Bytes the header needs.
        needed: u64,
    },
    /// A header field is out of range.
    #[error("header field {field} (offset {offset}) = {value}: {reason}")]
    BadHeader {
        /// Field name as the qcow2 specification spells it.
        field: &'static str,
        /// Offset of the field in the file.
        offset: u64,
        /// The value found.
        value: u64,
        /// What was expected.
        reason: &'static str,
    },
    /// The image is encrypted (AES or LUKS); Cairn reads only plain images.
    #[error("qcow2 image is encrypted (crypt_method {0}: {name}); decrypt it with qemu-img convert first", name = crypt_name(*.0))]
    Encrypted(u32),
    /// Incompatible feature bits this reader does not implement are set.
    #[error("qcow2 incompatible features {bits:#x} are not supported ({names})")]
    UnsupportedFeatures {
        /// The unknown or unsupported bits.
        bits: u64,
        /// Their names, from the image's feature name table or the specification.
        names: String,
    },
    /// The guest data lives in an external data file (incompatible feature bit 2).
    #[error("qcow2 image keeps its data in an external data file{}; not supported", name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    ExternalDataFile {
        /// The file name from the header extension, if present.
        name: Option<String>,
    },
    /// A compression type other than zlib (0) and zstd (1).
    #[error("qcow2 compression type {0} is not supported; only zlib (0) and zstd (1) are")]
    UnsupportedCompression(u8),
    /// A header extension is malformed.
    #[error("header extension at offset {offset}: {reason}")]
    BadExtension {
        /// Offset of the extension's type field.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The L1 table does not fit in the file, is misaligned or too small for the disk.
    #[error("L1 table at offset {offset} ({entries} entries): {reason}")]
    BadL1 {
        /// Offset of the table in the file.
        offset: u64,
        /// Number of entries.
        entries: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An L1 entry points at an L2 table outside the file or not cluster-aligned.
    #[error("L1 entry {index} points at L2 table offset {l2_offset}: {reason}")]
    BadL2Offset {
        /// Index of the L1 entry.
        index: u64,
        /// The L2 table offset it holds.
        l2_offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An L2 entry points at a cluster outside the file or is malformed.
    #[error("L2 entry for guest offset {guest_offset} (entry {entry:#018x}): host offset {host_offset} {reason}")]
    BadL2Entry {
        /// Guest (virtual disk) offset of the cluster.
        guest_offset: u64,
        /// The raw entry.
        entry: u64,
        /// Host offset it decodes to.
        host_offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A compressed cluster is larger than the format allows or does not inflate to a
    /// whole cluster.
    #[error("compressed cluster for guest offset {guest_offset} at host offset {host_offset} ({compressed_len} bytes): {reason}")]
    BadCompressedCluster {
        /// Guest offset of the cluster.
        guest_offset: u64,
        /// Host offset of the compressed bytes.
        host_offset: u64,
        /// Compressed length the entry declares.
        compressed_len: u64,
        /// What is wrong.
        reason: String,
    },
    /// The bitmaps extension, a bitmap directory entry or a bitmap table is malformed.
    #[error("persistent bitmap {where_}: {reason}")]
    BadBitmap {
        /// Which bitmap structure (with its offset).
        where_: String,
        /// What is wrong.
        reason: String,
    },
}

fn crypt_name(m: u32) -> &'static str {
    match m {
        1 => "AES-CBC",
        2 => "LUKS",
        _ => "unknown",
    }
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
