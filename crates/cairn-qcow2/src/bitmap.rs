//! Persistent dirty bitmaps (the qcow2 `bitmaps` header extension): bitmap directory,
//! bitmap tables and bitmap data clusters -> one [`AllocationMap`] per bitmap.

use cairn_io::le::{u16_be, u32_be, u64_be};
use cairn_io::{AllocationMap, Limits, RangeKind, ReadAt};

use crate::header::BitmapsExt;
use crate::{Error, Result};

/// qemu's cap on the number of bitmaps in one image.
const MAX_BITMAPS: u32 = 65535;
/// qemu's cap on the bitmap directory size.
const MAX_DIRECTORY_BYTES: u64 = 64 << 20;
/// Fixed part of a bitmap directory entry.
const ENTRY_FIXED: usize = 24;
/// Granularity bounds qemu accepts (512 B .. 2 GiB).
const MIN_GRANULARITY_BITS: u8 = 9;
const MAX_GRANULARITY_BITS: u8 = 31;
/// Bitmap type 1: dirty tracking bitmap (the only type defined).
const TYPE_DIRTY_TRACKING: u8 = 1;
/// Entry flags.
const FLAG_IN_USE: u32 = 1 << 0;
const FLAG_AUTO: u32 = 1 << 1;
const FLAG_EXTRA_DATA_COMPATIBLE: u32 = 1 << 2;
const KNOWN_FLAGS: u32 = FLAG_IN_USE | FLAG_AUTO | FLAG_EXTRA_DATA_COMPATIBLE;
/// Bitmap table entry: bits 9..=55 hold the data cluster offset, bit 0 "all ones" when the
/// offset is 0; the other bits are reserved.
const BT_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const BT_ALL_ONES: u64 = 1;
const BT_RESERVED: u64 = !(BT_OFFSET_MASK | BT_ALL_ONES);

/// One persistent dirty bitmap: the guest ranges written since the bitmap was started (or
/// last cleared), the change map of an incremental backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    /// The bitmap's name (`qemu-img bitmap --add IMG NAME`).
    pub name: String,
    /// Bytes of guest disk each bit stands for.
    pub granularity: u64,
    /// Whether qemu tracks writes into it (`auto` flag: enabled bitmap).
    pub enabled: bool,
    /// qemu had the bitmap open and did not store it back: its contents are unknown, so
    /// `map` marks the whole disk dirty.
    pub in_use: bool,
    /// `Data` = dirty, `Unallocated` = clean, covering the virtual size.
    pub map: AllocationMap,
}

fn bad(where_: String, reason: impl Into<String>) -> Error {
    Error::BadBitmap {
        where_,
        reason: reason.into(),
    }
}

/// Checks that `[off, off + len)` is inside the file and cluster-aligned at its start.
fn check_region(
    file: &dyn ReadAt,
    off: u64,
    len: u64,
    cluster_size: u64,
    what: &str,
) -> Result<()> {
    if !off.is_multiple_of(cluster_size) {
        return Err(bad(
            format!("{what} at offset {off}"),
            "offset is not cluster-aligned",
        ));
    }
    if off.checked_add(len).is_none_or(|e| e > file.size()) {
        return Err(bad(
            format!("{what} at offset {off}"),
            format!(
                "{len} bytes run past the end of the file ({} bytes)",
                file.size()
            ),
        ));
    }
    Ok(())
}

/// Reads every bitmap listed in the bitmap directory.
pub(crate) fn read_all(
    file: &dyn ReadAt,
    ext: &BitmapsExt,
    disk_size: u64,
    cluster_bits: u32,
    limits: &Limits,
) -> Result<Vec<DirtyBitmap>> {
    let cs = 1u64 << cluster_bits;
    let ext_where = format!("extension at offset {}", ext.ext_offset);
    if ext.nb_bitmaps == 0 || ext.nb_bitmaps > MAX_BITMAPS {
        return Err(bad(
            ext_where,
            format!("nb_bitmaps {} not in 1..=65535", ext.nb_bitmaps),
        ));
    }
    let dsize = ext.directory_size;
    if dsize > MAX_DIRECTORY_BYTES || dsize > limits.max_table_bytes {
        return Err(bad(
            ext_where,
            format!("bitmap directory of {dsize} bytes is too large"),
        ));
    }
    check_region(file, ext.directory_offset, dsize, cs, "bitmap directory")?;
    // Bounded by MAX_DIRECTORY_BYTES just above.
    let dir = file.read_vec_at(
        ext.directory_offset,
        usize::try_from(dsize).map_err(|_| bad(ext_where.clone(), "directory too large"))?,
    )?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    for n in 0..ext.nb_bitmaps {
        let entry_off = ext.directory_offset + pos as u64;
        let where_ = format!("directory entry {n} at offset {entry_off}");
        let fixed = dir
            .get(pos..pos + ENTRY_FIXED)
            .ok_or_else(|| bad(where_.clone(), "runs past the directory's end"))?;
        let table_offset = u64_be(fixed, 0);
        let table_size = u32_be(fixed, 8);
        let flags = u32_be(fixed, 12);
        let ty = fixed[16];
        let gbits = fixed[17];
        let name_size = usize::from(u16_be(fixed, 18));
        let extra = usize::try_from(u32_be(fixed, 20)).unwrap_or(usize::MAX);
        let name_start = pos
            .checked_add(ENTRY_FIXED)
            .and_then(|p| p.checked_add(extra))
            .ok_or_else(|| bad(where_.clone(), "extra data size overflows"))?;
        let name_bytes = name_start
            .checked_add(name_size)
            .and_then(|e| dir.get(name_start..e))
            .ok_or_else(|| bad(where_.clone(), "name runs past the directory's end"))?;
        let name = String::from_utf8(name_bytes.to_vec())
            .map_err(|_| bad(where_.clone(), "name is not UTF-8"))?;
        // Entries are padded to a multiple of 8 bytes.
        pos = (name_start + name_size).div_ceil(8) * 8;

        let where_ = format!("'{name}' ({where_})");
        if ty != TYPE_DIRTY_TRACKING {
            return Err(bad(
                where_,
                format!("type {ty}, expected 1 (dirty tracking)"),
            ));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(bad(where_, format!("unknown flags {flags:#x}")));
        }
        if !(MIN_GRANULARITY_BITS..=MAX_GRANULARITY_BITS).contains(&gbits) {
            return Err(bad(
                where_,
                format!("granularity_bits {gbits} not in 9..=31"),
            ));
        }
        let granularity = 1u64 << gbits;
        // One bit per granule, cluster_size * 8 bits per data cluster.
        let bits_per_cluster = cs * 8;
        let granules = disk_size.div_ceil(granularity);
        let expected_entries = granules.div_ceil(bits_per_cluster);
        if u64::from(table_size) != expected_entries {
            return Err(bad(
                where_,
                format!(
                    "bitmap_table_size {table_size}, expected {expected_entries} for the disk size"
                ),
            ));
        }
        let table_bytes = u64::from(table_size) * 8;
        if table_bytes > limits.max_table_bytes {
            return Err(bad(
                where_,
                "bitmap table larger than limits.max_table_bytes",
            ));
        }
        let in_use = flags & FLAG_IN_USE != 0;
        let enabled = flags & FLAG_AUTO != 0;
        let map = if in_use {
            AllocationMap::uniform(disk_size, RangeKind::Data)
        } else {
            check_region(file, table_offset, table_bytes, cs, "bitmap table")?;
            let raw = file.read_vec_at(
                table_offset,
                usize::try_from(table_bytes).map_err(|_| bad(where_.clone(), "table too large"))?,
            )?;
            read_map(file, &raw, disk_size, granularity, cs, &where_)?
        };
        out.push(DirtyBitmap {
            name,
            granularity,
            enabled,
            in_use,
            map,
        });
    }
    Ok(out)
}

/// Turns a bitmap table (raw big-endian entries) into the dirty map.
fn read_map(
    file: &dyn ReadAt,
    table: &[u8],
    disk_size: u64,
    granularity: u64,
    cs: u64,
    where_: &str,
) -> Result<AllocationMap> {
    let mut map = AllocationMap::new(disk_size);
    let span = granularity * cs * 8;
    let cs_usize = usize::try_from(cs).unwrap_or(usize::MAX);
    let mut data = vec![0u8; cs_usize];
    for (i, e) in table.chunks_exact(8).map(|c| u64_be(c, 0)).enumerate() {
        let base = i as u64 * span;
        let end = base.saturating_add(span).min(disk_size);
        let entry_where = || format!("{where_}, bitmap table entry {i}");
        if e & BT_RESERVED != 0 {
            return Err(bad(
                entry_where(),
                format!("reserved bits set in {e:#018x}"),
            ));
        }
        let off = e & BT_OFFSET_MASK;
        if off == 0 {
            if e & BT_ALL_ONES != 0 {
                map.push(base, end - base, RangeKind::Data)?;
            }
            continue;
        }
        check_region(
            file,
            off,
            cs,
            cs,
            &format!("bitmap data cluster of {}", entry_where()),
        )?;
        file.read_exact_at(&mut data, off)?;
        // Bit j of byte k is granule k * 8 + j of this cluster's span.
        for (k, &byte) in data.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            if byte == 0xff {
                // Eight dirty granules at once (fully dirty bitmaps are common).
                let start = base + k as u64 * 8 * granularity;
                if start < end {
                    map.push(start, (8 * granularity).min(end - start), RangeKind::Data)?;
                }
                continue;
            }
            for j in 0..8u64 {
                if byte & (1 << j) == 0 {
                    continue;
                }
                let start = base + (k as u64 * 8 + j) * granularity;
                if start >= end {
                    break;
                }
                map.push(start, granularity.min(end - start), RangeKind::Data)?;
            }
        }
    }
    Ok(map.finish())
}
