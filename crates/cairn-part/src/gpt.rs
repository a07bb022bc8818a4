//! GPT: header at LBA 1 (backup at the last LBA), entry array, CRC32s. Little-endian.
use cairn_io::le::{u32_le, u64_le};
use cairn_io::ReadAt;

use crate::{
    gpt_type_name, Error, Guid, PartOptions, Partition, PartitionTable, PartitionType, Result,
    Scheme,
};

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Smallest header the spec defines (revision 1.0).
const MIN_HEADER_SIZE: u32 = 92;
/// Entries are 128 bytes times a power of two; larger than this was never seen.
const MAX_ENTRY_SIZE: u32 = 4096;

struct Header {
    lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

pub(crate) fn read_gpt(disk: &dyn ReadAt, opts: &PartOptions) -> Result<PartitionTable> {
    // The sector size is not recorded anywhere: find the header at LBA 1.
    let mut errors = Vec::new();
    for sector in [512u64, 4096] {
        match read_header(disk, sector, 1, opts) {
            Ok(h) => match read_entries(disk, sector, &h, opts) {
                Ok(parts) => return finish(disk, sector, h, parts, Vec::new()),
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    // Primary unusable: try the backup header in the last sector.
    let primary = errors.join("; ");
    let mut backup_errors = Vec::new();
    for sector in [512u64, 4096] {
        let last = disk.size() / sector;
        if last == 0 {
            continue;
        }
        match read_header(disk, sector, last - 1, opts) {
            Ok(h) => match read_entries(disk, sector, &h, opts) {
                Ok(parts) => {
                    let w = vec![format!(
                        "primary GPT header unusable ({primary}); using the backup"
                    )];
                    return finish(disk, sector, h, parts, w);
                }
                Err(e) => backup_errors.push(e.to_string()),
            },
            Err(e) => backup_errors.push(e.to_string()),
        }
    }
    Err(Error::NoValidGpt {
        primary,
        backup: backup_errors.join("; "),
    })
}

fn finish(
    disk: &dyn ReadAt,
    sector: u64,
    h: Header,
    partitions: Vec<Partition>,
    mut warnings: Vec<String>,
) -> Result<PartitionTable> {
    if h.lba == 1 {
        let backup_ok = h
            .alternate_lba
            .checked_mul(sector)
            .is_some_and(|o| o < disk.size())
            && read_header(disk, sector, h.alternate_lba, &PartOptions::default()).is_ok();
        if !backup_ok {
            warnings.push(format!(
                "backup GPT header at LBA {} is missing or invalid",
                h.alternate_lba
            ));
        }
    }
    let mut table = PartitionTable {
        scheme: Scheme::Gpt,
        sector_size: u32::try_from(sector).unwrap_or(512),
        disk_id: Some(h.disk_guid.to_string()),
        partitions,
        warnings,
    };
    for p in &table.partitions {
        let first = p.start / sector;
        let last = (p.start + p.size) / sector;
        if first < h.first_usable || last.saturating_sub(1) > h.last_usable {
            table.warnings.push(format!(
                "partition {} lies outside the usable LBA range",
                p.index
            ));
        }
    }
    crate::check_bounds(disk.size(), &mut table);
    Ok(table)
}

fn bad(lba: u64, what: impl Into<String>) -> Error {
    Error::BadGptHeader {
        lba,
        what: what.into(),
    }
}

fn read_header(disk: &dyn ReadAt, sector: u64, lba: u64, opts: &PartOptions) -> Result<Header> {
    let offset = lba
        .checked_mul(sector)
        .ok_or_else(|| bad(lba, "LBA overflows"))?;
    let len = usize::try_from(sector).unwrap_or(512);
    if offset.checked_add(sector).is_none_or(|e| e > disk.size()) {
        return Err(bad(lba, "header lies past the end of the disk"));
    }
    let b = disk.read_vec_at(offset, len)?;
    if &b[0..8] != SIGNATURE {
        return Err(bad(
            lba,
            format!("no \"EFI PART\" signature for {sector}-byte sectors"),
        ));
    }
    let header_size = u32_le(&b, 12);
    if header_size < MIN_HEADER_SIZE || u64::from(header_size) > sector {
        return Err(bad(
            lba,
            format!("header size {header_size} not in {MIN_HEADER_SIZE}..={sector}"),
        ));
    }
    let hs = usize::try_from(header_size).unwrap_or(0);
    let stored_crc = u32_le(&b, 16);
    let mut copy = b[..hs].to_vec();
    copy[16..20].fill(0);
    let crc = crc32fast::hash(&copy);
    if crc != stored_crc {
        return Err(bad(
            lba,
            format!("header CRC32 is {stored_crc:#010x}, computed {crc:#010x}"),
        ));
    }
    let my_lba = u64_le(&b, 24);
    if my_lba != lba {
        return Err(bad(lba, format!("header says it is at LBA {my_lba}")));
    }
    let num_entries = u32_le(&b, 80);
    let entry_size = u32_le(&b, 84);
    if !(128..=MAX_ENTRY_SIZE).contains(&entry_size) || !entry_size.is_power_of_two() {
        return Err(bad(
            lba,
            format!("entry size {entry_size} is not 128 times a power of two"),
        ));
    }
    if num_entries > opts.max_gpt_entries {
        return Err(bad(
            lba,
            format!(
                "{num_entries} entries exceed the limit of {}",
                opts.max_gpt_entries
            ),
        ));
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&b[56..72]);
    Ok(Header {
        lba,
        alternate_lba: u64_le(&b, 32),
        first_usable: u64_le(&b, 40),
        last_usable: u64_le(&b, 48),
        disk_guid: Guid(guid),
        entries_lba: u64_le(&b, 72),
        num_entries,
        entry_size,
        entries_crc: u32_le(&b, 88),
    })
}

fn read_entries(
    disk: &dyn ReadAt,
    sector: u64,
    h: &Header,
    _opts: &PartOptions,
) -> Result<Vec<Partition>> {
    // Bounded by max_gpt_entries * MAX_ENTRY_SIZE (16 MiB with the defaults).
    let total = u64::from(h.num_entries) * u64::from(h.entry_size);
    let offset = h
        .entries_lba
        .checked_mul(sector)
        .ok_or_else(|| bad(h.lba, "entry array LBA overflows"))?;
    if offset.checked_add(total).is_none_or(|e| e > disk.size()) {
        return Err(bad(
            h.lba,
            format!(
                "entry array at LBA {} runs past the end of the disk",
                h.entries_lba
            ),
        ));
    }
    let arr = disk.read_vec_at(
        offset,
        usize::try_from(total).map_err(|_| bad(h.lba, "entry array too large"))?,
    )?;
    let crc = crc32fast::hash(&arr);
    if crc != h.entries_crc {
        return Err(bad(
            h.lba,
            format!(
                "entry array CRC32 is {:#010x}, computed {crc:#010x}",
                h.entries_crc
            ),
        ));
    }
    let es = usize::try_from(h.entry_size).unwrap_or(128);
    let mut parts = Vec::new();
    for (i, e) in arr.chunks_exact(es).enumerate() {
        let mut t = [0u8; 16];
        t.copy_from_slice(&e[0..16]);
        let type_guid = Guid(t);
        if type_guid.is_zero() {
            continue;
        }
        let mut u = [0u8; 16];
        u.copy_from_slice(&e[16..32]);
        let first = u64_le(e, 32);
        let last = u64_le(e, 40);
        let attrs = u64_le(e, 48);
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if last < first {
            return Err(bad(
                h.lba,
                format!("entry {index}: last LBA {last} before first LBA {first}"),
            ));
        }
        let start = first
            .checked_mul(sector)
            .ok_or_else(|| bad(h.lba, format!("entry {index}: LBA overflows")))?;
        let size = (last - first + 1)
            .checked_mul(sector)
            .ok_or_else(|| bad(h.lba, format!("entry {index}: size overflows")))?;
        let name_units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        parts.push(Partition {
            index,
            start,
            size,
            kind: PartitionType::Gpt(type_guid),
            type_name: gpt_type_name(&type_guid),
            name: Some(String::from_utf16_lossy(&name_units)),
            guid: Some(Guid(u)),
            bootable: attrs & (1 << 2) != 0,
            logical: false,
        });
    }
    Ok(parts)
}
