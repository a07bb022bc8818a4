/// Errors of the ext2/3/4 reader. Every variant names where the problem is (inode, block,
/// group, byte offset) and what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the volume failed.
    #[error(transparent)]
    Io(#[from] cairn_io::Error),
    /// No ext superblock magic (0xEF53) at byte 1080.
    #[error("not an ext2/3/4 file system: magic at byte 1080 is {found:#06x}, expected 0xef53")]
    NotExt {
        /// The 16-bit value found.
        found: u16,
    },
    /// A superblock field is out of its valid range.
    #[error("superblock field {field} = {value}: {reason}")]
    BadSuperblock {
        /// Field name (`s_log_block_size`, ...).
        field: &'static str,
        /// The value read.
        value: u64,
        /// What was expected.
        reason: &'static str,
    },
    /// The file system uses features this reader does not understand.
    #[error("unsupported {kind} feature bits {bits:#x} ({names})")]
    UnsupportedFeature {
        /// `incompat` or `ro_compat`.
        kind: &'static str,
        /// The unknown or unsupported bits.
        bits: u32,
        /// Their names, where known.
        names: String,
    },
    /// The volume is smaller than the file system claims.
    #[error("volume holds {size} bytes but the file system spans {needed}")]
    VolumeTooSmall {
        /// Bytes the superblock says the file system spans.
        needed: u64,
        /// Bytes the volume holds.
        size: u64,
    },
    /// A metadata_csum checksum does not match.
    #[error(
        "{what} checksum mismatch at {location}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        /// Which structure (`superblock`, `group descriptor`, `inode`, `extent block`,
        /// `directory block`, `xattr block`).
        what: &'static str,
        /// Group number, inode number or block number, as `what` says.
        location: u64,
        /// Checksum stored on disk.
        stored: u32,
        /// Checksum computed.
        computed: u32,
    },
    /// A group descriptor points outside the file system or is otherwise invalid.
    #[error("group descriptor {group}: {reason}")]
    BadGroupDescriptor {
        /// Group number.
        group: u32,
        /// What is wrong.
        reason: String,
    },
    /// An inode number outside `1..=s_inodes_count`.
    #[error("inode {ino} out of range (file system has {max} inodes)")]
    InodeOutOfRange {
        /// The inode number.
        ino: u64,
        /// `s_inodes_count`.
        max: u32,
    },
    /// An inode's fields are invalid.
    #[error("inode {ino}: {reason}")]
    BadInode {
        /// The inode number.
        ino: u64,
        /// What is wrong.
        reason: String,
    },
    /// A block pointer at or past `s_blocks_count`.
    #[error(
        "inode {ino}: block {block} is past the end of the file system ({blocks_count} blocks)"
    )]
    BlockOutOfRange {
        /// The inode whose map holds the pointer (0 for file-system metadata).
        ino: u64,
        /// The block number.
        block: u64,
        /// `s_blocks_count`.
        blocks_count: u64,
    },
    /// An extent tree node is invalid (magic, counts, order, overlap).
    #[error("inode {ino}: extent node at block {block}: {reason}")]
    BadExtent {
        /// The inode.
        ino: u64,
        /// Block holding the node (0: the root inside the inode).
        block: u64,
        /// What is wrong.
        reason: String,
    },
    /// An extent tree deeper than the format allows.
    #[error("inode {ino}: extent tree depth {depth} exceeds the maximum {max}")]
    ExtentTreeTooDeep {
        /// The inode.
        ino: u64,
        /// Depth found.
        depth: u32,
        /// The maximum ([`crate::MAX_EXTENT_DEPTH`]).
        max: u32,
    },
    /// A directory entry is malformed.
    #[error("directory inode {dir}, logical block {block}, offset {offset}: {reason}")]
    BadDirEntry {
        /// The directory inode.
        dir: u64,
        /// Logical block of the directory (0 for inline data).
        block: u64,
        /// Byte offset inside the block.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// An extended attribute area is malformed.
    #[error("inode {ino}: extended attributes: {reason}")]
    BadXattr {
        /// The inode.
        ino: u64,
        /// What is wrong.
        reason: String,
    },
    /// A POSIX ACL value is malformed.
    #[error("POSIX ACL: {0}")]
    BadAcl(String),
    /// The node is not a directory.
    #[error("inode {ino} is not a directory")]
    NotADirectory {
        /// The inode.
        ino: u64,
    },
    /// A path component does not exist.
    #[error("path {path:?}: no such file or directory")]
    NotFound {
        /// The path looked up.
        path: String,
    },
    /// A directory was reached twice while walking: the tree is corrupt.
    #[error("directory loop: inode {ino} reached again at {path:?}")]
    DirectoryLoop {
        /// The directory inode met twice.
        ino: u64,
        /// Where it was met the second time.
        path: String,
    },
    /// The file's contents are encrypted (ext4 fscrypt); names are listed, data is not read.
    #[error("inode {ino} is encrypted; its data cannot be read")]
    Encrypted {
        /// The inode.
        ino: u64,
    },
    /// A named stream was asked for; ext has only the main data stream.
    #[error("ext has no named streams (asked for {0:?})")]
    NoSuchStream(String),
    /// A count exceeds a limit of [`crate::ExtOptions`] or [`cairn_io::Limits`].
    #[error("{what}: {value} exceeds the limit {limit}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// The value met.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The journal superblock is malformed.
    #[error("journal: {0}")]
    BadJournal(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
