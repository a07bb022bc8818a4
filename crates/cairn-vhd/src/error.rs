use std::path::PathBuf;

/// Everything that can go wrong reading or writing a VHD.
///
/// Offsets are byte offsets in the image file unless a field says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the image (or the parent) failed.
    #[error(transparent)]
    Io(#[from] cairn_io::Error),
    /// Opening, creating, writing or renaming a file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than the smallest VHD (one 511-byte footer).
    #[error("file of {size} bytes is too small for a VHD footer")]
    TooSmall {
        /// File size.
        size: u64,
    },
    /// No "conectix" cookie at the end of the file (nor at offset 0).
    #[error("no VHD footer: expected cookie \"conectix\" at offset {offset}, found {found:02x?}")]
    BadFooterCookie {
        /// Where the footer was looked for.
        offset: u64,
        /// The 8 bytes found there.
        found: [u8; 8],
    },
    /// The footer's checksum does not match its bytes.
    #[error(
        "footer at offset {offset}: checksum {actual:#010x} stored, {expected:#010x} computed"
    )]
    FooterChecksum {
        /// Footer offset.
        offset: u64,
        /// Checksum computed from the bytes.
        expected: u32,
        /// Checksum stored in the footer.
        actual: u32,
    },
    /// The footer names a disk type this crate does not read (0 none, 1/5/6 reserved).
    #[error("footer at offset {offset}: unsupported disk type {disk_type}")]
    UnsupportedDiskType {
        /// Footer offset.
        offset: u64,
        /// The disk type field.
        disk_type: u32,
    },
    /// The virtual size is larger than [`cairn_io::Limits::max_virtual_size`].
    #[error("virtual size {size} exceeds the limit of {max} bytes")]
    VirtualSizeTooLarge {
        /// Footer current size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A fixed disk's data area (current size) does not fit before the footer.
    #[error("fixed disk needs {needed} bytes of data before the footer, the file has {available}")]
    FixedTruncated {
        /// Current size from the footer.
        needed: u64,
        /// Bytes before the footer.
        available: u64,
    },
    /// The footer's data offset (where the dynamic header is) is outside the file.
    #[error("dynamic header offset {offset} is outside the file ({file_size} bytes)")]
    HeaderOutsideFile {
        /// Header offset from the footer.
        offset: u64,
        /// File size.
        file_size: u64,
    },
    /// No "cxsparse" cookie at the dynamic header offset.
    #[error("dynamic header at offset {offset}: expected cookie \"cxsparse\", found {found:02x?}")]
    BadHeaderCookie {
        /// Header offset.
        offset: u64,
        /// The 8 bytes found there.
        found: [u8; 8],
    },
    /// The dynamic header's checksum does not match its bytes.
    #[error("dynamic header at offset {offset}: checksum {actual:#010x} stored, {expected:#010x} computed")]
    HeaderChecksum {
        /// Header offset.
        offset: u64,
        /// Checksum computed from the bytes.
        expected: u32,
        /// Checksum stored in the header.
        actual: u32,
    },
    /// The block size is 0, not a power of two, below one sector or above
    /// [`cairn_io::Limits::max_unit_bytes`].
    #[error(
        "dynamic header: bad block size {block_size} (power of two from 512 to {max} expected)"
    )]
    BadBlockSize {
        /// Block size from the header.
        block_size: u32,
        /// The limit.
        max: u64,
    },
    /// The BAT has fewer entries than the virtual size needs.
    #[error("BAT has {entries} entries of {block_size} bytes, too few for a {size}-byte disk")]
    BatTooSmall {
        /// Max table entries from the header.
        entries: u32,
        /// Block size.
        block_size: u32,
        /// Virtual size.
        size: u64,
    },
    /// The BAT is larger than [`cairn_io::Limits::max_table_bytes`].
    #[error("BAT of {bytes} bytes exceeds the limit of {max}")]
    BatTooLarge {
        /// BAT size in bytes.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The BAT itself lies (partly) outside the file.
    #[error(
        "BAT at offset {offset} ({len} bytes) runs past the end of the file ({file_size} bytes)"
    )]
    BatOutsideFile {
        /// BAT offset.
        offset: u64,
        /// BAT length.
        len: u64,
        /// File size.
        file_size: u64,
    },
    /// A BAT entry points at a block (bitmap + data) that is not inside the file.
    #[error("BAT entry {index}: block at sector {sector} ends at byte {end}, past the data area ({limit} bytes)")]
    BlockOutsideFile {
        /// Block number.
        index: u64,
        /// Sector offset stored in the BAT.
        sector: u32,
        /// One past the last byte the block needs.
        end: u64,
        /// End of the file's data area (the footer's offset).
        limit: u64,
    },
    /// A parent locator's data is not inside the file, or is absurdly long.
    #[error("parent locator {index}: {len} bytes at offset {offset} are not inside the file ({file_size} bytes) or exceed {max}")]
    LocatorOutsideFile {
        /// Locator entry index (0..8).
        index: usize,
        /// Data offset.
        offset: u64,
        /// Data length.
        len: u32,
        /// File size.
        file_size: u64,
        /// The largest locator accepted.
        max: u32,
    },
    /// `attach_parent` was called on a fixed or dynamic disk.
    #[error("a {subformat} VHD has no parent")]
    NotDifferencing {
        /// "fixed" or "dynamic".
        subformat: &'static str,
    },
    /// A writer was given a size a VHD cannot hold exactly.
    #[error("cannot write a VHD of {size} bytes: {reason}")]
    BadWriteSize {
        /// The requested size.
        size: u64,
        /// Why.
        reason: &'static str,
    },
    /// A writer was given a map that does not cover the source.
    #[error("allocation map covers {map_size} bytes, the source has {source_size}")]
    MapSizeMismatch {
        /// Map size.
        map_size: u64,
        /// Source size.
        source_size: u64,
    },
    /// A writer option is out of range.
    #[error("bad writer option: {0}")]
    BadOption(&'static str),
}
