//! The used-block map from the block bitmaps.
//!
//! Groups flagged BLOCK_UNINIT (uninit_bg / metadata_csum) have no bitmap on disk: their
//! used blocks are computed the way e2fsprogs does (`ext2fs_reserve_super_and_bgd` plus the
//! bitmaps and inode tables of any group that lie in them), so such a group is
//! reported as metadata only, never as wholly free and never as wholly used.

use std::collections::HashMap;

use cairn_io::{AllocationMap, RangeKind};

use crate::fs::Inner;
use crate::sb::INCOMPAT_META_BG;
use crate::{Error, Result};

fn set_bits(bits: &mut [u8], from: u64, len: u64) {
    for b in from..from + len {
        if let Ok(i) = usize::try_from(b / 8) {
            if let Some(byte) = bits.get_mut(i) {
                *byte |= 1 << (b % 8);
            }
        }
    }
}

/// Marks `[start, start+len)` (absolute blocks) inside `group`'s bitmap `bits`.
fn mark_abs(fs: &Inner, bits: &mut [u8], group: u32, start: u64, len: u64) {
    let first = fs.sb.group_first_block(group);
    let end = first + fs.sb.group_blocks(group);
    let s = start.max(first);
    let e = start.saturating_add(len).min(end);
    if s < e {
        set_bits(bits, s - first, e - s);
    }
}

/// The computed bitmap of a BLOCK_UNINIT group.
fn uninit_bitmap(fs: &Inner, group: u32, foreign: &HashMap<u32, Vec<(u64, u64)>>) -> Vec<u8> {
    let sb = &fs.sb;
    let mut bits = vec![0u8; sb.block_size as usize];
    let first = sb.group_first_block(group);
    let has_super = sb.has_super(group);
    let meta_bg = sb.has_incompat(INCOMPAT_META_BG);
    if has_super {
        let old_desc = if meta_bg {
            u64::from(sb.first_meta_bg)
        } else {
            u64::from(sb.desc_blocks()) + u64::from(sb.reserved_gdt_blocks)
        };
        mark_abs(fs, &mut bits, group, first, 1 + old_desc);
    }
    if meta_bg {
        let dpb = sb.descs_per_block();
        let mg = group / dpb;
        let r = group % dpb;
        if mg >= sb.first_meta_bg && (r == 0 || r == 1 || r == dpb - 1) {
            mark_abs(fs, &mut bits, group, first + u64::from(has_super), 1);
        }
    }
    if let Some(v) = foreign.get(&group) {
        for &(s, l) in v {
            mark_abs(fs, &mut bits, group, s, l);
        }
    }
    bits
}

pub(crate) fn used_map(fs: &Inner) -> Result<AllocationMap> {
    let sb = &fs.sb;
    let bs = sb.bs();
    let mut map = AllocationMap::new(fs.src.size());
    let map_err = |e: cairn_io::Error| Error::Io(e);
    // Blocks before s_first_data_block (the boot block of 1 KiB-block file systems) are
    // outside every group; they are kept.
    map.push(0, u64::from(sb.first_data_block) * bs, RangeKind::Data)
        .map_err(map_err)?;
    // Bitmaps and inode tables that lie in BLOCK_UNINIT groups, by the group they lie in.
    let mut foreign: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    let itable = fs.itable_blocks();
    let bpg = u64::from(sb.blocks_per_group);
    let group_of = |b: u64| -> Option<u32> {
        u32::try_from(b.checked_sub(u64::from(sb.first_data_block))? / bpg).ok()
    };
    for gd in &fs.groups {
        for (s, l) in [
            (gd.block_bitmap, 1),
            (gd.inode_bitmap, 1),
            (gd.inode_table, itable),
        ] {
            // A region may straddle groups (flex_bg inode tables): note it in each.
            let (Some(g0), Some(g1)) = (group_of(s), group_of(s + l - 1)) else {
                continue;
            };
            for g in g0..=g1 {
                if g < sb.group_count && fs.group_uninit(g) {
                    foreign.entry(g).or_default().push((s, l));
                }
            }
        }
    }
    let mut buf = vec![0u8; sb.block_size as usize];
    let mut run: Option<(u64, u64)> = None;
    let flush = |map: &mut AllocationMap, run: &mut Option<(u64, u64)>| -> Result<()> {
        if let Some((s, l)) = run.take() {
            map.push(s * bs, l * bs, RangeKind::Data).map_err(map_err)?;
        }
        Ok(())
    };
    for g in 0..sb.group_count {
        let bits = if fs.group_uninit(g) {
            uninit_bitmap(fs, g, &foreign)
        } else {
            let gd = &fs.groups[g as usize];
            fs.src.read_exact_at(&mut buf, gd.block_bitmap * bs)?;
            if sb.metadata_csum() {
                // The checksum covers the bits of one group (no bigalloc: blocks).
                let n = (sb.blocks_per_group / 8) as usize;
                let c = crate::csum::crc32c_raw(fs.csum_seed, &buf[..n]);
                let c = if sb.desc_size >= 0x3C { c } else { c & 0xFFFF };
                fs.check_csum("block bitmap", g.into(), gd.block_bitmap_csum, c)?;
            }
            buf.clone()
        };
        let first = sb.group_first_block(g);
        let n = sb.group_blocks(g);
        let mut i = 0u64;
        while i < n {
            let byte = bits[(i / 8) as usize];
            if i.is_multiple_of(8) && i + 8 <= n && (byte == 0 || byte == 0xFF) {
                if byte == 0xFF {
                    match &mut run {
                        Some((s, l)) if *s + *l == first + i => *l += 8,
                        _ => {
                            flush(&mut map, &mut run)?;
                            run = Some((first + i, 8));
                        }
                    }
                }
                i += 8;
                continue;
            }
            if byte & (1 << (i % 8)) != 0 {
                match &mut run {
                    Some((s, l)) if *s + *l == first + i => *l += 1,
                    _ => {
                        flush(&mut map, &mut run)?;
                        run = Some((first + i, 1));
                    }
                }
            }
            i += 1;
        }
    }
    flush(&mut map, &mut run)?;
    Ok(map.finish())
}
