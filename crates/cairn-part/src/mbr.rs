//! MBR and the EBR chain. All fields little-endian; LBAs in 512-byte sectors.
use std::collections::HashSet;

use cairn_io::le::u32_le;
use cairn_io::ReadAt;

use crate::{
    mbr_type_name, Error, PartOptions, Partition, PartitionTable, PartitionType, Result, Scheme,
};

const SECTOR: u64 = 512;
const TABLE_OFFSET: usize = 446;

/// One of the four 16-byte MBR/EBR entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MbrEntry {
    pub status: u8,
    pub kind: u8,
    pub lba: u32,
    pub sectors: u32,
}

impl MbrEntry {
    fn parse(b: &[u8]) -> MbrEntry {
        MbrEntry {
            status: b[0],
            kind: b[4],
            lba: u32_le(b, 8),
            sectors: u32_le(b, 12),
        }
    }

    fn is_used(&self) -> bool {
        self.kind != 0 && self.sectors != 0
    }
}

/// A parsed boot sector.
#[derive(Debug)]
pub(crate) struct Mbr {
    pub signature: u32,
    pub entries: [MbrEntry; 4],
}

impl Mbr {
    pub fn is_protective(&self) -> bool {
        self.entries.iter().any(|e| e.kind == 0xEE)
    }
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

fn parse_sector(b: &[u8; 512]) -> Option<[MbrEntry; 4]> {
    if b[510] != 0x55 || b[511] != 0xAA {
        return None;
    }
    let e = |i: usize| MbrEntry::parse(&b[TABLE_OFFSET + 16 * i..TABLE_OFFSET + 16 * (i + 1)]);
    Some([e(0), e(1), e(2), e(3)])
}

/// Reads sector 0; `None` when it has no boot signature or the disk is too small.
pub(crate) fn read_mbr(disk: &dyn ReadAt) -> Result<Option<Mbr>> {
    if disk.size() < SECTOR {
        return Ok(None);
    }
    let mut b = [0u8; 512];
    disk.read_exact_at(&mut b, 0)?;
    let Some(entries) = parse_sector(&b) else {
        return Ok(None);
    };
    // A boot sector of a file system (FAT, NTFS) on an unpartitioned disk also ends in
    // 0x55AA. Its "entries" are boot code; treat the sector as an MBR only when every used
    // entry has a valid status byte.
    if entries.iter().any(|e| e.status != 0 && e.status != 0x80) {
        return Ok(None);
    }
    // A volume boot record starts with a jump instruction and a file-system OEM name; if a
    // file system is found at sector 0, there is no partition table.
    if crate::probe::probe_filesystem(disk) != crate::FsKind::Unknown {
        return Ok(None);
    }
    Ok(Some(Mbr {
        signature: u32_le(&b, 440),
        entries,
    }))
}

pub(crate) fn read_mbr_partitions(
    disk: &dyn ReadAt,
    mbr: &Mbr,
    opts: &PartOptions,
) -> Result<PartitionTable> {
    let mut partitions = Vec::new();
    let mut warnings = Vec::new();
    let mut extended: Option<MbrEntry> = None;
    for (slot, e) in mbr.entries.iter().enumerate() {
        if !e.is_used() {
            continue;
        }
        let index = u32::try_from(slot).unwrap_or(0) + 1;
        if is_extended(e.kind) {
            if extended.is_some() {
                warnings.push(format!(
                    "partition {index}: a second extended partition is ignored"
                ));
            } else {
                extended = Some(*e);
            }
        }
        partitions.push(entry_to_partition(index, e, 0, false));
    }
    if let Some(ext) = extended {
        read_logicals(disk, ext, opts, &mut partitions, &mut warnings)?;
    }
    Ok(PartitionTable {
        scheme: Scheme::Mbr,
        sector_size: 512,
        disk_id: Some(format!("{:08x}", mbr.signature)),
        partitions,
        warnings,
    })
}

fn entry_to_partition(index: u32, e: &MbrEntry, base_lba: u64, logical: bool) -> Partition {
    let start = (base_lba + u64::from(e.lba)) * SECTOR;
    Partition {
        index,
        start,
        size: u64::from(e.sectors) * SECTOR,
        kind: PartitionType::Mbr(e.kind),
        type_name: mbr_type_name(e.kind),
        name: None,
        guid: None,
        bootable: e.status == 0x80,
        logical,
    }
}

/// Walks the EBR chain: entry 0 of each EBR is a logical partition relative to that EBR,
/// entry 1 points at the next EBR relative to the start of the extended partition.
fn read_logicals(
    disk: &dyn ReadAt,
    ext: MbrEntry,
    opts: &PartOptions,
    out: &mut Vec<Partition>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let ext_start = u64::from(ext.lba);
    let ext_end = ext_start + u64::from(ext.sectors);
    let mut ebr_lba = ext_start;
    let mut seen = HashSet::new();
    let mut index = 5u32;
    for _ in 0..opts.max_logical_partitions {
        let offset = ebr_lba * SECTOR;
        if !seen.insert(ebr_lba) {
            return Err(Error::BadEbrChain {
                offset,
                what: "loops back to an earlier EBR",
            });
        }
        if offset.checked_add(SECTOR).is_none_or(|e| e > disk.size()) {
            warnings.push(format!(
                "EBR at byte {offset} lies past the end of the disk; chain cut"
            ));
            return Ok(());
        }
        let mut b = [0u8; 512];
        disk.read_exact_at(&mut b, offset)?;
        let Some(entries) = parse_sector(&b) else {
            warnings.push(format!(
                "EBR at byte {offset} has no 0x55AA signature; chain cut"
            ));
            return Ok(());
        };
        let logical = entries[0];
        if logical.is_used() {
            let p = entry_to_partition(index, &logical, ebr_lba, true);
            let end_lba = ebr_lba + u64::from(logical.lba) + u64::from(logical.sectors);
            if end_lba > ext_end {
                warnings.push(format!(
                    "logical partition {index} runs past its extended partition"
                ));
            }
            out.push(p);
            index += 1;
        }
        let next = entries[1];
        if !next.is_used() || !is_extended(next.kind) {
            return Ok(());
        }
        ebr_lba = ext_start + u64::from(next.lba);
        if ebr_lba >= ext_end {
            warnings.push(format!(
                "next EBR at LBA {ebr_lba} lies outside the extended partition; chain cut"
            ));
            return Ok(());
        }
    }
    Err(Error::BadEbrChain {
        offset: ebr_lba * SECTOR,
        what: "is longer than the logical-partition limit",
    })
}
