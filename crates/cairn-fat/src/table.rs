//! The file allocation table: decoding, chain following, copy comparison.

use cairn_io::le::{u16_le, u32_le};
use cairn_io::ReadAt;

use crate::boot::{FatType, Geometry};
use crate::error::{Error, Result};

/// What one FAT entry says about the next cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Free,
    Next(u32),
    Bad,
    End,
}

/// A decoded FAT: one `u32` per cluster number `0..cluster_count + 2`.
#[derive(Debug)]
pub(crate) struct Table {
    entries: Vec<u32>,
    fat_type: FatType,
}

/// A run of consecutive clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClusterRun {
    pub first: u32,
    pub count: u64,
}

/// Entries decoded per read (even, so FAT12 entry pairs stay in one chunk): 256 KiB of a
/// FAT32 table; the FAT32 test volume (80k clusters) spans two chunks.
const CHUNK_ENTRIES: usize = 1 << 16;

/// Bytes of one FAT copy that hold entries `0..n`.
fn used_fat_bytes(fat_type: FatType, n: u64) -> u64 {
    match fat_type {
        FatType::Fat12 => (n * 3).div_ceil(2),
        FatType::Fat16 => n * 2,
        FatType::Fat32 | FatType::ExFat => n * 4,
    }
}

impl Table {
    /// Reads FAT copy `copy`, decodes it and compares the other copies against it; each
    /// differing copy adds a warning. The copies are read in chunks, so memory is the
    /// decoded table only (4 bytes per cluster, checked against `max_table_bytes`).
    pub(crate) fn load(
        src: &dyn ReadAt,
        geo: &Geometry,
        copy: u8,
        max_table_bytes: u64,
        warnings: &mut Vec<String>,
    ) -> Result<Table> {
        let n = geo.cluster_end();
        let mem = n * 4;
        if mem > max_table_bytes {
            return Err(Error::TooLarge {
                what: "decoded FAT size in bytes",
                value: mem,
                limit: max_table_bytes,
            });
        }
        let count = usize::try_from(n).map_err(|_| Error::TooLarge {
            what: "FAT entries",
            value: n,
            limit: usize::MAX as u64,
        })?;
        let copy = if copy < geo.num_fats { copy } else { 0 };
        let at = |k: u8| geo.fat_offset + u64::from(k) * geo.fat_bytes;
        let mut first_diff: Vec<Option<u64>> = vec![None; usize::from(geo.num_fats)];
        let mut entries: Vec<u32> = Vec::with_capacity(count);
        let mut start = 0usize;
        while start < count {
            let len = CHUNK_ENTRIES.min(count - start);
            let b0 = used_fat_bytes(geo.fat_type, start as u64);
            let b1 = used_fat_bytes(geo.fat_type, (start + len) as u64);
            let nbytes = usize::try_from(b1 - b0).unwrap_or(usize::MAX);
            let raw = src.read_vec_at(at(copy) + b0, nbytes)?;
            for k in 0..geo.num_fats {
                if k == copy || first_diff[usize::from(k)].is_some() {
                    continue;
                }
                let other = src.read_vec_at(at(k) + b0, nbytes)?;
                if let Some(pos) = raw.iter().zip(&other).position(|(a, b)| a != b) {
                    first_diff[usize::from(k)] = Some(b0 + pos as u64);
                }
            }
            match geo.fat_type {
                // `start` is even, so entry pairs never straddle chunks.
                FatType::Fat12 => entries.extend((0..len).map(|i| {
                    let v = u16_le(&raw, i + i / 2);
                    u32::from(if i % 2 == 0 { v & 0x0FFF } else { v >> 4 })
                })),
                FatType::Fat16 => entries.extend((0..len).map(|i| u32::from(u16_le(&raw, i * 2)))),
                FatType::Fat32 => {
                    entries.extend((0..len).map(|i| u32_le(&raw, i * 4) & 0x0FFF_FFFF))
                }
                FatType::ExFat => entries.extend((0..len).map(|i| u32_le(&raw, i * 4))),
            }
            start += len;
        }
        for (k, d) in first_diff.iter().enumerate() {
            if let Some(pos) = d {
                warnings.push(format!(
                    "FAT copy {} differs from copy {} (first at byte {pos} of the table); reading copy {}",
                    k + 1,
                    copy + 1,
                    copy + 1
                ));
            }
        }
        Ok(Table {
            entries,
            fat_type: geo.fat_type,
        })
    }

    /// The raw entry of cluster `c` (0 past the end).
    pub(crate) fn raw(&self, c: u32) -> u32 {
        usize::try_from(c)
            .ok()
            .and_then(|i| self.entries.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Number of entries (cluster_count + 2).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Classifies the entry of cluster `c`.
    pub(crate) fn link(&self, c: u32) -> Link {
        let v = self.raw(c);
        let (bad, end) = match self.fat_type {
            FatType::Fat12 => (0xFF7, 0xFF8),
            FatType::Fat16 => (0xFFF7, 0xFFF8),
            FatType::Fat32 => (0x0FFF_FFF7, 0x0FFF_FFF8),
            FatType::ExFat => (0xFFFF_FFF7, 0xFFFF_FFF8),
        };
        match v {
            0 => Link::Free,
            v if v == bad => Link::Bad,
            v if v >= end => Link::End,
            v => Link::Next(v),
        }
    }

    /// The FAT16/FAT32 "volume dirty" (clean-shutdown bit clear) or "hard error" flags in
    /// entry 1, as warnings.
    pub(crate) fn dirty_warnings(&self) -> Vec<String> {
        let e1 = self.raw(1);
        let (clean, ok) = match self.fat_type {
            FatType::Fat16 => (0x8000, 0x4000),
            FatType::Fat32 => (0x0800_0000, 0x0400_0000),
            _ => return Vec::new(),
        };
        let mut w = Vec::new();
        if e1 & clean == 0 {
            w.push("volume is marked dirty (not cleanly unmounted)".to_string());
        }
        if e1 & ok == 0 {
            w.push("volume is marked as having had a disk I/O error".to_string());
        }
        w
    }

    /// Follows the chain from `start` to its end marker, as runs of consecutive clusters.
    /// Each cluster is range-checked. Loops are found with Brent's algorithm (time linear in
    /// the chain's length up to the loop, no memory); a chain longer than `cluster_count`
    /// steps must loop too, which bounds the walk whatever happens.
    pub(crate) fn chain(&self, start: u32) -> Result<Vec<ClusterRun>> {
        let end = u64::try_from(self.entries.len()).unwrap_or(u64::MAX);
        let budget = end.saturating_sub(2);
        let in_range = |c: u32| c >= 2 && u64::from(c) < end;
        if !in_range(start) {
            return Err(Error::ClusterOutOfRange {
                start,
                cluster: start,
                end,
            });
        }
        let mut runs: Vec<ClusterRun> = Vec::new();
        let mut cur = start;
        let mut steps = 0u64;
        // Brent's cycle detection: the tortoise jumps to the hare at powers of two.
        let mut tortoise = start;
        let mut power = 1u64;
        let mut lam = 0u64;
        loop {
            steps += 1;
            if steps > budget {
                return Err(Error::ChainCycle {
                    start,
                    steps: budget,
                });
            }
            match runs.last_mut() {
                Some(r) if u64::from(r.first) + r.count == u64::from(cur) => r.count += 1,
                _ => runs.push(ClusterRun {
                    first: cur,
                    count: 1,
                }),
            }
            match self.link(cur) {
                Link::End => return Ok(runs),
                Link::Bad => {
                    return Err(Error::BadCluster {
                        start,
                        cluster: cur,
                    })
                }
                Link::Free => {
                    return Err(Error::FreeClusterInChain {
                        start,
                        cluster: cur,
                    })
                }
                Link::Next(n) if in_range(n) => {
                    if n == tortoise {
                        return Err(Error::ChainCycle { start, steps });
                    }
                    lam += 1;
                    if lam == power {
                        tortoise = n;
                        power <<= 1;
                        lam = 0;
                    }
                    cur = n;
                }
                Link::Next(n) => {
                    return Err(Error::ClusterOutOfRange {
                        start,
                        cluster: n,
                        end,
                    })
                }
            }
        }
    }
}
