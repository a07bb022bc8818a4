use cairn_vfs::NodeId;

/// Everything that can go wrong while reading a FAT or exFAT volume.
///
/// Offsets are byte offsets on the volume; clusters are cluster numbers (the first data
/// cluster is 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying reader failed or a read ran past its end.
    #[error(transparent)]
    Io(#[from] cairn_io::Error),
    /// The boot sector carries neither a FAT BPB nor the exFAT signature.
    #[error("not a FAT or exFAT volume: {0}")]
    NotFat(&'static str),
    /// A boot-sector field is out of range or contradicts another one.
    #[error("boot sector field {field} = {value}: expected {expected}")]
    BadBootSector {
        /// Field name as the specification spells it (`BPB_BytsPerSec`, `ClusterCount`...).
        field: &'static str,
        /// The value found.
        value: u64,
        /// What the specification allows.
        expected: &'static str,
    },
    /// The exFAT boot-region checksum (sector 11) does not match sectors 0..=10.
    #[error(
        "exFAT boot checksum: sector 11 holds {stored:#010x}, sectors 0-10 sum to {computed:#010x}"
    )]
    BootChecksum {
        /// Value found in the checksum sector.
        stored: u32,
        /// Value computed over the boot sectors.
        computed: u32,
    },
    /// The source is shorter than the cluster heap the boot sector describes.
    #[error("volume truncated: the file system needs {needed} bytes, the source has {size}")]
    VolumeTruncated {
        /// Bytes the layout needs.
        needed: u64,
        /// Bytes the source has.
        size: u64,
    },
    /// A disk-derived number exceeds a limit of [`cairn_io::Limits`] or of this crate.
    #[error("{what} = {value} exceeds the limit {limit}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// The value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A cluster chain names a cluster outside `2..cluster_count + 2`.
    #[error(
        "cluster chain starting at {start}: cluster {cluster} is out of range (valid 2..{end})"
    )]
    ClusterOutOfRange {
        /// First cluster of the chain.
        start: u32,
        /// The bad cluster number.
        cluster: u32,
        /// One past the last valid cluster.
        end: u64,
    },
    /// A chain runs into a cluster marked bad.
    #[error("cluster chain starting at {start}: cluster {cluster} is marked bad")]
    BadCluster {
        /// First cluster of the chain.
        start: u32,
        /// The cluster whose FAT entry is the bad marker.
        cluster: u32,
    },
    /// A chain runs into a cluster whose FAT entry says free.
    #[error("cluster chain starting at {start}: cluster {cluster} is marked free")]
    FreeClusterInChain {
        /// First cluster of the chain.
        start: u32,
        /// The free cluster.
        cluster: u32,
    },
    /// A chain comes back to a cluster it already went through.
    #[error("cluster chain starting at {start} loops (found after {steps} clusters)")]
    ChainCycle {
        /// First cluster of the chain.
        start: u32,
        /// Clusters followed when the loop was found.
        steps: u64,
    },
    /// A chain holds fewer clusters than the entry's size needs.
    #[error(
        "cluster chain starting at {start} has {clusters} clusters, size {size} needs {needed}"
    )]
    ChainTooShort {
        /// First cluster of the chain.
        start: u32,
        /// Clusters found.
        clusters: u64,
        /// Clusters needed.
        needed: u64,
        /// Size recorded in the directory entry.
        size: u64,
    },
    /// The SetChecksum of an exFAT directory entry set is wrong.
    #[error(
        "exFAT entry set at offset {offset}: SetChecksum {stored:#06x}, computed {computed:#06x}"
    )]
    SetChecksum {
        /// Volume offset of the File entry.
        offset: u64,
        /// Checksum in the File entry.
        stored: u16,
        /// Checksum computed over the set.
        computed: u16,
    },
    /// A directory entry (set) is malformed.
    #[error("directory entry at offset {offset}: {reason}")]
    BadEntry {
        /// Volume offset of the entry.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The exFAT root directory lacks a required entry.
    #[error("exFAT root directory has no {0} entry")]
    MissingSystemEntry(&'static str),
    /// The node id was not produced by this volume.
    #[error("unknown node {0:#x}")]
    UnknownNode(NodeId),
    /// A directory operation on something that is not a directory.
    #[error("node {0:#x} is not a directory")]
    NotADirectory(NodeId),
    /// A data operation on a directory.
    #[error("node {0:#x} is a directory")]
    IsADirectory(NodeId),
    /// FAT and exFAT have no named streams.
    #[error("no stream {0:?}: FAT and exFAT have only the main data stream")]
    NoSuchStream(String),
    /// [`FatFs::lookup`](crate::FatFs::lookup) found no entry of that name.
    #[error("path not found: {0}")]
    NotFound(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
