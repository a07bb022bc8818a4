/// Errors reading a partition table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The disk could not be read.
    #[error("reading the disk: {0}")]
    Io(#[from] cairn_io::Error),
    /// Both GPT headers are unusable although the protective MBR announces a GPT.
    #[error("GPT: no valid header (primary at LBA 1: {primary}; backup: {backup})")]
    NoValidGpt {
        /// Why the primary header was refused.
        primary: String,
        /// Why the backup header was refused.
        backup: String,
    },
    /// A GPT entry array is larger than the limit or its entries are of an invalid size.
    #[error("GPT header at LBA {lba}: {what}")]
    BadGptHeader {
        /// LBA of the header.
        lba: u64,
        /// What is wrong.
        what: String,
    },
    /// The EBR chain of an extended partition is longer than the budget or loops.
    #[error("extended partition: EBR chain at byte {offset} {what}")]
    BadEbrChain {
        /// Byte offset of the offending EBR.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A partition lies (partly) outside the disk.
    #[error("partition {index} ({start}+{size} bytes) lies outside the disk")]
    PartitionOutsideDisk {
        /// Partition number.
        index: u32,
        /// Start in bytes.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
