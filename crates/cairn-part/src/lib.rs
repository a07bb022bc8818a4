//! # cairn-part
//!
//! Reads the partition table of a virtual disk (any [`ReadAt`]): MBR with extended and
//! logical partitions (the EBR chain is walked with a step budget and a visited set),
//! protective MBR, and GPT (primary header, falling back to the backup header; header and
//! entry-array CRC32 checked; 512- and 4096-byte sectors). Each partition gets a type name
//! and a probe of the file system it holds.
//!
//! Byte order: every MBR and GPT field is little-endian. GUIDs are stored mixed-endian
//! (the first three fields little-endian) and printed in the usual hyphenated form.
//!
//! Partition numbers follow Linux: GPT entries are numbered by their slot (1-based), MBR
//! primaries by their slot (1..=4) and logical partitions from 5 in chain order.
//!
//! ```
//! use cairn_part::{read_partition_table, Scheme};
//!
//! // A 1 MiB disk with one MBR partition of type 0x83 at sector 2048... which does not fit,
//! // so use sector 64 and 128 sectors.
//! let mut disk = vec![0u8; 1 << 20];
//! disk[446 + 4] = 0x83;
//! disk[446 + 8..446 + 12].copy_from_slice(&64u32.to_le_bytes());
//! disk[446 + 12..446 + 16].copy_from_slice(&128u32.to_le_bytes());
//! disk[510] = 0x55;
//! disk[511] = 0xAA;
//! let table = read_partition_table(&disk).unwrap();
//! assert_eq!(table.scheme, Scheme::Mbr);
//! assert_eq!(table.partitions[0].start, 64 * 512);
//! assert_eq!(table.partitions[0].type_name, "Linux");
//! ```
#![forbid(unsafe_code)]

mod error;
mod gpt;
mod guid;
mod mbr;
mod probe;
mod types;

pub use error::{Error, Result};
pub use guid::Guid;
pub use probe::{probe_filesystem, FsKind};
pub use types::{gpt_type_name, mbr_type_name};

use cairn_io::{ReadAt, Slice};

/// Which kind of table a disk has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// No partition table: the whole disk is one volume (or empty).
    None,
    /// Master Boot Record.
    Mbr,
    /// GUID Partition Table (behind a protective MBR).
    Gpt,
}

impl Scheme {
    /// `none`, `mbr`, `gpt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::Mbr => "mbr",
            Scheme::Gpt => "gpt",
        }
    }
}

/// The type code of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionType {
    /// MBR system id byte.
    Mbr(u8),
    /// GPT partition type GUID.
    Gpt(Guid),
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number, counted from 1 (see the crate docs for the numbering).
    pub index: u32,
    /// Start on the disk, in bytes.
    pub start: u64,
    /// Length, in bytes.
    pub size: u64,
    /// The type code.
    pub kind: PartitionType,
    /// A human name of the type, e.g. `Linux filesystem`, `Microsoft basic data`.
    pub type_name: &'static str,
    /// GPT partition name (UTF-16 decoded).
    pub name: Option<String>,
    /// GPT unique partition GUID.
    pub guid: Option<Guid>,
    /// MBR active flag, or GPT legacy BIOS bootable attribute.
    pub bootable: bool,
    /// MBR logical partition (inside an extended partition).
    pub logical: bool,
}

impl Partition {
    /// The partition's bytes as a view of the disk.
    pub fn open<R: ReadAt>(&self, disk: R) -> Result<Slice<R>> {
        Slice::new(disk, self.start, self.size).map_err(|_| Error::PartitionOutsideDisk {
            index: self.index,
            start: self.start,
            size: self.size,
        })
    }
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// Which table.
    pub scheme: Scheme,
    /// Logical sector size the table uses (512 or 4096).
    pub sector_size: u32,
    /// MBR disk signature (`0x12345678` printed as 8 hex digits) or GPT disk GUID.
    pub disk_id: Option<String>,
    /// The partitions, by index.
    pub partitions: Vec<Partition>,
    /// Things a careful reader reports: a bad primary GPT header with a good backup,
    /// partitions that overlap or run past the disk end, etc.
    pub warnings: Vec<String>,
}

/// Options for [`read_partition_table_with`].
#[derive(Debug, Clone)]
pub struct PartOptions {
    /// Most EBRs followed in an extended partition before the chain is declared a loop.
    pub max_logical_partitions: u32,
    /// Most GPT entries accepted (the spec's minimum array is 128; some tools write more).
    pub max_gpt_entries: u32,
}

impl Default for PartOptions {
    fn default() -> Self {
        PartOptions {
            max_logical_partitions: 256,
            max_gpt_entries: 4096,
        }
    }
}

/// Reads a disk's partition table with default options.
pub fn read_partition_table(disk: &dyn ReadAt) -> Result<PartitionTable> {
    read_partition_table_with(disk, &PartOptions::default())
}

/// Reads a disk's partition table.
///
/// A disk without the 0x55AA signature (or too small for one) has [`Scheme::None`]. A
/// protective MBR (type 0xEE) leads to the GPT; a GPT whose both headers are bad is an
/// error, since the protective MBR says the disk is GPT.
pub fn read_partition_table_with(disk: &dyn ReadAt, opts: &PartOptions) -> Result<PartitionTable> {
    let Some(mbr) = mbr::read_mbr(disk)? else {
        return Ok(PartitionTable {
            scheme: Scheme::None,
            sector_size: 512,
            disk_id: None,
            partitions: Vec::new(),
            warnings: Vec::new(),
        });
    };
    if mbr.is_protective() {
        return gpt::read_gpt(disk, opts);
    }
    let mut table = mbr::read_mbr_partitions(disk, &mbr, opts)?;
    check_bounds(disk.size(), &mut table);
    Ok(table)
}

/// Adds warnings for partitions that run past the end of the disk or overlap.
fn check_bounds(disk_size: u64, table: &mut PartitionTable) {
    let mut spans: Vec<(u64, u64, u32)> = Vec::new();
    for p in &table.partitions {
        let end = p.start.saturating_add(p.size);
        if end > disk_size {
            table.warnings.push(format!(
                "partition {} ({}..{}) runs past the end of the disk ({disk_size} bytes)",
                p.index, p.start, end
            ));
        }
        // An extended partition contains its logical partitions by design.
        if !matches!(p.kind, PartitionType::Mbr(0x05 | 0x0F | 0x85)) {
            spans.push((p.start, end, p.index));
        }
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            table
                .warnings
                .push(format!("partitions {} and {} overlap", w[0].2, w[1].2));
        }
    }
}
