//! Fixed VHDX structures: file type identifier, the two headers, the two region tables and
//! the metadata region. Raw bytes -> checked (signature, CRC-32C) -> typed.

use cairn_io::le::{u16_le, u32_le, u64_le};
use cairn_io::{Limits, ReadAt};

use crate::guid::Guid;
use crate::{Error, Result};

pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * KIB;
/// Header copies, each in a 64 KiB slot; the checksummed header is the first 4 KiB.
const HEADER_OFFSETS: [u64; 2] = [64 * KIB, 128 * KIB];
const HEADER_LEN: usize = 4096;
/// Region table copies, 64 KiB each, checksummed over all 64 KiB.
const REGION_OFFSETS: [u64; 2] = [192 * KIB, 256 * KIB];
const REGION_TABLE_LEN: usize = 64 * 1024;
/// The specification's cap on region and metadata table entries.
const MAX_TABLE_ENTRIES: u32 = 2047;
/// The metadata table occupies the first 64 KiB of the metadata region.
const METADATA_TABLE_LEN: u64 = 64 * KIB;
/// Largest metadata item read (the spec caps items at 1 MiB).
const MAX_METADATA_ITEM: u32 = 1 << 20;
/// Block sizes the spec allows.
const MIN_BLOCK_SIZE: u32 = 1 << 20;
const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// Most key/value pairs accepted in a parent locator.
const MAX_LOCATOR_ENTRIES: u16 = 256;

pub(crate) const BAT_REGION: Guid = Guid::new(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
pub(crate) const METADATA_REGION: Guid = Guid::new(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
const FILE_PARAMETERS: Guid = Guid::new(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
const VIRTUAL_DISK_SIZE: Guid = Guid::new(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
const PAGE_83_DATA: Guid = Guid::new(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
const LOGICAL_SECTOR_SIZE: Guid = Guid::new(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
const PHYSICAL_SECTOR_SIZE: Guid = Guid::new(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
const PARENT_LOCATOR: Guid = Guid::new(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);
/// The one parent locator type defined: VHDX parent.
const VHDX_PARENT_LOCATOR_TYPE: Guid = Guid::new(
    0xB04A_EFB7,
    0xD19E,
    0x4A81,
    [0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13],
);

/// The header copy in use.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub sequence: u64,
    pub data_write_guid: Guid,
    pub log_guid: Guid,
    pub log_length: u32,
    pub log_offset: u64,
}

/// A region table entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub offset: u64,
    pub length: u32,
}

/// The metadata the reader needs.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub block_size: u32,
    pub leave_allocated: bool,
    pub has_parent: bool,
    pub virtual_size: u64,
    pub logical_sector: u32,
    pub physical_sector: Option<u32>,
    pub disk_id: Option<Guid>,
    /// Parent locator key/value pairs, in file order.
    pub parent_locator: Vec<(String, String)>,
}

pub(crate) fn crc32c_with_zeroed_field(buf: &[u8], field: usize) -> u32 {
    let mut c = crc32c::crc32c(&buf[..field]);
    c = crc32c::crc32c_append(c, &[0u8; 4]);
    crc32c::crc32c_append(c, &buf[field + 4..])
}

/// Checks the file type identifier.
pub(crate) fn check_signature(file: &dyn ReadAt) -> Result<()> {
    let needed = REGION_OFFSETS[1] + REGION_TABLE_LEN as u64;
    let mut sig = [0u8; 8];
    let n = file.read_at(&mut sig, 0)?;
    if (n < 8 || &sig != b"vhdxfile") && (n == 8 || file.size() >= needed) {
        return Err(Error::BadSignature {
            found: String::from_utf8_lossy(&sig[..n]).into_owned(),
        });
    }
    if file.size() < needed {
        return Err(Error::Truncated {
            size: file.size(),
            needed,
        });
    }
    Ok(())
}

fn parse_header(file: &dyn ReadAt, offset: u64) -> Result<std::result::Result<Header, String>> {
    let mut b = vec![0u8; HEADER_LEN];
    file.read_exact_at(&mut b, offset)?;
    if &b[0..4] != b"head" {
        return Ok(Err(format!(
            "header at {offset}: signature is not \"head\""
        )));
    }
    let stored = u32_le(&b, 4);
    let computed = crc32c_with_zeroed_field(&b, 4);
    if stored != computed {
        return Ok(Err(format!(
            "header at {offset}: CRC-32C {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let version = u16_le(&b, 66);
    if version != 1 {
        return Ok(Err(format!(
            "header at {offset}: version {version}, expected 1"
        )));
    }
    Ok(Ok(Header {
        sequence: u64_le(&b, 8),
        data_write_guid: Guid::from_disk(&b[32..48]),
        log_guid: Guid::from_disk(&b[48..64]),
        log_length: u32_le(&b, 68),
        log_offset: u64_le(&b, 72),
    }))
}

/// Reads both headers and returns the valid one with the higher sequence number.
pub(crate) fn read_header(file: &dyn ReadAt) -> Result<Header> {
    let a = parse_header(file, HEADER_OFFSETS[0])?;
    let b = parse_header(file, HEADER_OFFSETS[1])?;
    match (a, b) {
        (Ok(a), Ok(b)) => Ok(if b.sequence > a.sequence { b } else { a }),
        (Ok(h), Err(_)) | (Err(_), Ok(h)) => Ok(h),
        (Err(first), Err(second)) => Err(Error::NoValidHeader { first, second }),
    }
}

fn parse_region_table(
    file: &dyn ReadAt,
    offset: u64,
) -> Result<std::result::Result<(Region, Region), String>> {
    let mut b = vec![0u8; REGION_TABLE_LEN];
    file.read_exact_at(&mut b, offset)?;
    if &b[0..4] != b"regi" {
        return Ok(Err(format!(
            "region table at {offset}: signature is not \"regi\""
        )));
    }
    let stored = u32_le(&b, 4);
    let computed = crc32c_with_zeroed_field(&b, 4);
    if stored != computed {
        return Ok(Err(format!(
            "region table at {offset}: CRC-32C {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let count = u32_le(&b, 8);
    if count > MAX_TABLE_ENTRIES {
        return Err(Error::BadField {
            structure: "region table",
            offset,
            field: "EntryCount",
            value: count.into(),
            reason: "above 2047",
        });
    }
    let mut bat = None;
    let mut meta = None;
    for i in 0..count as usize {
        let e = &b[16 + i * 32..16 + (i + 1) * 32];
        let eoff = offset + 16 + i as u64 * 32;
        let guid = Guid::from_disk(&e[0..16]);
        let region = Region {
            offset: u64_le(e, 16),
            length: u32_le(e, 24),
        };
        let required = u32_le(e, 28) & 1 != 0;
        let bad = |field, value, reason| Error::BadField {
            structure: "region table entry",
            offset: eoff,
            field,
            value,
            reason,
        };
        if !region.offset.is_multiple_of(MIB) || region.offset < MIB {
            return Err(bad(
                "FileOffset",
                region.offset,
                "must be a multiple of 1 MiB, at or after 1 MiB",
            ));
        }
        if u64::from(region.length) % MIB != 0 || region.length == 0 {
            return Err(bad(
                "Length",
                region.length.into(),
                "must be a non-zero multiple of 1 MiB",
            ));
        }
        if guid == BAT_REGION {
            bat = Some(region);
        } else if guid == METADATA_REGION {
            meta = Some(region);
        } else if required {
            return Err(Error::UnknownRequired {
                kind: "region",
                guid: guid.to_string(),
                offset: eoff,
            });
        }
    }
    match (bat, meta) {
        (Some(b), Some(m)) => Ok(Ok((b, m))),
        (None, _) => Err(Error::Missing("BAT region")),
        (_, None) => Err(Error::Missing("metadata region")),
    }
}

/// Reads the region table and returns the BAT and metadata regions. The first copy whose
/// signature and checksum are valid is used (the other exists for torn writes); a valid
/// copy with bad contents is an error, not a reason to try the other.
pub(crate) fn read_regions(file: &dyn ReadAt) -> Result<(Region, Region)> {
    let first = match parse_region_table(file, REGION_OFFSETS[0])? {
        Ok(r) => return Ok(r),
        Err(why) => why,
    };
    match parse_region_table(file, REGION_OFFSETS[1])? {
        Ok(r) => Ok(r),
        Err(second) => Err(Error::NoValidRegionTable { first, second }),
    }
}

fn utf16(b: &[u8]) -> Option<String> {
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// Reads and checks the metadata region.
pub(crate) fn read_metadata(
    file: &dyn ReadAt,
    region: Region,
    limits: &Limits,
) -> Result<Metadata> {
    let base = region.offset;
    let rlen = u64::from(region.length);
    if base.checked_add(rlen).is_none_or(|e| e > file.size()) {
        return Err(Error::BadField {
            structure: "metadata region",
            offset: base,
            field: "Length",
            value: rlen,
            reason: "region runs past the end of the file",
        });
    }
    let table = file.read_vec_at(base, 64 * 1024)?;
    if &table[0..8] != b"metadata" {
        return Err(Error::BadMetadata {
            offset: base,
            reason: "table signature is not \"metadata\"".into(),
        });
    }
    let count = u16_le(&table, 10);
    if u32::from(count) > MAX_TABLE_ENTRIES {
        return Err(Error::BadField {
            structure: "metadata table",
            offset: base,
            field: "EntryCount",
            value: count.into(),
            reason: "above 2047",
        });
    }
    let mut items: Vec<(Guid, u64, Vec<u8>)> = Vec::new();
    for i in 0..usize::from(count) {
        let e = &table[32 + i * 32..32 + (i + 1) * 32];
        let eoff = base + 32 + i as u64 * 32;
        let guid = Guid::from_disk(&e[0..16]);
        let off = u32_le(e, 16);
        let len = u32_le(e, 20);
        let flags = u32_le(e, 24);
        let is_user = flags & 1 != 0;
        let required = flags & 4 != 0;
        let known = [
            FILE_PARAMETERS,
            VIRTUAL_DISK_SIZE,
            PAGE_83_DATA,
            LOGICAL_SECTOR_SIZE,
            PHYSICAL_SECTOR_SIZE,
            PARENT_LOCATOR,
        ]
        .contains(&guid);
        if !known || is_user {
            if required {
                return Err(Error::UnknownRequired {
                    kind: "metadata item",
                    guid: guid.to_string(),
                    offset: eoff,
                });
            }
            continue;
        }
        if len == 0 {
            continue;
        }
        if len > MAX_METADATA_ITEM
            || u64::from(off) < METADATA_TABLE_LEN
            || u64::from(off) + u64::from(len) > rlen
        {
            return Err(Error::BadMetadata {
                offset: eoff,
                reason: format!(
                    "item {guid}: offset {off} length {len} outside the {rlen}-byte region"
                ),
            });
        }
        // len <= 1 MiB, checked above.
        let data = file.read_vec_at(base + u64::from(off), len as usize)?;
        items.push((guid, base + u64::from(off), data));
    }
    let item = |g: Guid, min: usize, name: &'static str| -> Result<Option<(u64, &[u8])>> {
        match items.iter().find(|(x, _, _)| *x == g) {
            None => Ok(None),
            Some((_, off, d)) if d.len() < min => Err(Error::BadMetadata {
                offset: *off,
                reason: format!("{name} item is {} bytes, expected {min}", d.len()),
            }),
            Some((_, off, d)) => Ok(Some((*off, d.as_slice()))),
        }
    };

    let (fp_off, fp) = item(FILE_PARAMETERS, 8, "file parameters")?
        .ok_or(Error::Missing("file parameters metadata item"))?;
    let block_size = u32_le(fp, 0);
    let flags = u32_le(fp, 4);
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(Error::BadField {
            structure: "file parameters",
            offset: fp_off,
            field: "BlockSize",
            value: block_size.into(),
            reason: "must be a power of two from 1 MiB to 256 MiB",
        });
    }
    if u64::from(block_size) > limits.max_unit_bytes {
        return Err(Error::BadField {
            structure: "file parameters",
            offset: fp_off,
            field: "BlockSize",
            value: block_size.into(),
            reason: "above limits.max_unit_bytes",
        });
    }
    let (ls_off, ls) = item(LOGICAL_SECTOR_SIZE, 4, "logical sector size")?
        .ok_or(Error::Missing("logical sector size metadata item"))?;
    let logical_sector = u32_le(ls, 0);
    if logical_sector != 512 && logical_sector != 4096 {
        return Err(Error::BadField {
            structure: "logical sector size",
            offset: ls_off,
            field: "LogicalSectorSize",
            value: logical_sector.into(),
            reason: "must be 512 or 4096",
        });
    }
    let physical_sector =
        item(PHYSICAL_SECTOR_SIZE, 4, "physical sector size")?.map(|(_, d)| u32_le(d, 0));
    let (vs_off, vs) = item(VIRTUAL_DISK_SIZE, 8, "virtual disk size")?
        .ok_or(Error::Missing("virtual disk size metadata item"))?;
    let virtual_size = u64_le(vs, 0);
    if virtual_size > limits.max_virtual_size
        || !virtual_size.is_multiple_of(u64::from(logical_sector))
    {
        return Err(Error::BadField {
            structure: "virtual disk size",
            offset: vs_off,
            field: "VirtualDiskSize",
            value: virtual_size,
            reason:
                "must be a multiple of the logical sector size and within limits.max_virtual_size",
        });
    }
    let disk_id = item(PAGE_83_DATA, 16, "page 83 data")?.map(|(_, d)| Guid::from_disk(d));
    let has_parent = flags & 2 != 0;
    let mut parent_locator = Vec::new();
    if let Some((pl_off, pl)) = item(PARENT_LOCATOR, 20, "parent locator")? {
        let bad = |reason: String| Error::BadMetadata {
            offset: pl_off,
            reason: format!("parent locator: {reason}"),
        };
        let ty = Guid::from_disk(&pl[0..16]);
        if ty != VHDX_PARENT_LOCATOR_TYPE {
            return Err(bad(format!("unknown locator type {ty}")));
        }
        let n = u16_le(pl, 18);
        if n > MAX_LOCATOR_ENTRIES {
            return Err(bad(format!(
                "{n} key/value pairs (at most {MAX_LOCATOR_ENTRIES})"
            )));
        }
        for i in 0..usize::from(n) {
            let e = pl
                .get(20 + i * 12..20 + (i + 1) * 12)
                .ok_or_else(|| bad(format!("entry {i} runs past the item")))?;
            let field = |off: u32, len: u16| -> Option<String> {
                let s = usize::try_from(off).ok()?;
                utf16(pl.get(s..s.checked_add(usize::from(len))?)?)
            };
            let key = field(u32_le(e, 0), u16_le(e, 8))
                .ok_or_else(|| bad(format!("entry {i}: key outside the item or not UTF-16")))?;
            let value = field(u32_le(e, 4), u16_le(e, 10))
                .ok_or_else(|| bad(format!("entry {i}: value outside the item or not UTF-16")))?;
            parent_locator.push((key, value));
        }
    }
    if has_parent && parent_locator.is_empty() {
        return Err(Error::Missing("parent locator of a differencing disk"));
    }
    Ok(Metadata {
        block_size,
        leave_allocated: flags & 1 != 0,
        has_parent,
        virtual_size,
        logical_sector,
        physical_sector,
        disk_id,
        parent_locator,
    })
}
