//! Logical-to-physical block maps: extent trees (ext4) and direct/indirect block pointers
//! (ext2/3), both flattened into sorted runs once per opened file.

use cairn_io::le::{u16_le, u32_le};

use crate::fs::Inner;
use crate::inode::{Inode, FL_EXTENTS};
use crate::{Error, Result, MAX_EXTENT_DEPTH};

const EXTENT_MAGIC: u16 = 0xF30A;
/// Bytes of an extent header and of each entry.
const EXTENT_ENTRY: usize = 12;
/// `ee_len` above this marks an unwritten (uninitialised) extent.
const EXT_INIT_MAX_LEN: u16 = 32768;
/// Direct block pointers in `i_block`.
const DIRECT_BLOCKS: u64 = 12;

/// A run of `len` logical blocks at `lblk` stored at physical block `pblk`; `uninit` runs
/// are allocated but read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapRun {
    pub lblk: u64,
    pub len: u64,
    pub pblk: u64,
    pub uninit: bool,
}

impl MapRun {
    pub(crate) fn end(&self) -> u64 {
        self.lblk + self.len
    }
}

/// Sorted, non-overlapping runs; logical blocks not covered are holes.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileMap {
    pub runs: Vec<MapRun>,
}

struct Builder<'a> {
    fs: &'a Inner,
    ino: u64,
    /// Logical blocks the file's size covers; runs are clipped to it.
    nblocks: u64,
    runs: Vec<MapRun>,
    /// Node / pointer visits left (a legitimate map cannot touch more than every block).
    budget: u64,
    max_runs: usize,
}

impl Builder<'_> {
    fn push(&mut self, lblk: u64, len: u64, pblk: u64, uninit: bool) -> Result<()> {
        if lblk >= self.nblocks || len == 0 {
            return Ok(());
        }
        let len = len.min(self.nblocks - lblk);
        if let Some(last) = self.runs.last_mut() {
            if last.end() == lblk && last.pblk + last.len == pblk && last.uninit == uninit {
                last.len += len;
                return Ok(());
            }
        }
        if self.runs.len() >= self.max_runs {
            return Err(Error::LimitExceeded {
                what: "block map runs of one file",
                value: self.runs.len() as u64 + 1,
                limit: self.max_runs as u64,
            });
        }
        self.runs.push(MapRun {
            lblk,
            len,
            pblk,
            uninit,
        });
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        if self.budget == 0 {
            return Err(Error::LimitExceeded {
                what: "block map walk steps",
                value: self.fs.sb.blocks_count + 1,
                limit: self.fs.sb.blocks_count,
            });
        }
        self.budget -= 1;
        Ok(())
    }

    fn check_block(&self, block: u64, len: u64) -> Result<()> {
        let bc = self.fs.sb.blocks_count;
        match block.checked_add(len) {
            Some(end) if end <= bc => Ok(()),
            _ => Err(Error::BlockOutOfRange {
                ino: self.ino,
                block,
                blocks_count: bc,
            }),
        }
    }

    fn bad_extent(&self, block: u64, reason: String) -> Error {
        Error::BadExtent {
            ino: self.ino,
            block,
            reason,
        }
    }

    /// Walks one extent node. `node` is the root (60 bytes of `i_block`, `block` 0) or a
    /// whole tree block. Entries must lie in `[lo, hi)` (the parent index's key range).
    fn extent_node(
        &mut self,
        node: &[u8],
        block: u64,
        want_depth: Option<u16>,
        lo: u64,
        hi: u64,
        inode_seed: u32,
    ) -> Result<()> {
        self.step()?;
        let magic = u16_le(node, 0);
        if magic != EXTENT_MAGIC {
            return Err(
                self.bad_extent(block, format!("header magic {magic:#06x}, expected 0xf30a"))
            );
        }
        let entries = usize::from(u16_le(node, 2));
        let max = usize::from(u16_le(node, 4));
        let depth = u16_le(node, 6);
        if u32::from(depth) > MAX_EXTENT_DEPTH {
            return Err(Error::ExtentTreeTooDeep {
                ino: self.ino,
                depth: depth.into(),
                max: MAX_EXTENT_DEPTH,
            });
        }
        if let Some(w) = want_depth {
            if depth != w {
                return Err(self.bad_extent(
                    block,
                    format!("depth {depth}, expected {w} (one below the parent)"),
                ));
            }
        }
        let capacity = (node.len() - EXTENT_ENTRY) / EXTENT_ENTRY;
        if max > capacity || entries > max {
            return Err(self.bad_extent(
                block,
                format!("{entries} entries, max {max}, room for {capacity}"),
            ));
        }
        if block != 0 && self.fs.sb.metadata_csum() {
            let tail = EXTENT_ENTRY + EXTENT_ENTRY * max;
            if tail + 4 > node.len() {
                return Err(self.bad_extent(block, "no room for the checksum tail".into()));
            }
            let stored = u32_le(node, tail);
            let computed = crate::csum::crc32c_raw(inode_seed, &node[..tail]);
            self.fs
                .check_csum("extent block", block, stored, computed)?;
        }
        let entry = |i: usize| &node[EXTENT_ENTRY * (i + 1)..EXTENT_ENTRY * (i + 2)];
        if depth == 0 {
            let mut prev_end = lo;
            for i in 0..entries {
                let e = entry(i);
                let lblk = u64::from(u32_le(e, 0));
                let raw_len = u16_le(e, 4);
                let (len, uninit) = if raw_len > EXT_INIT_MAX_LEN {
                    (raw_len - EXT_INIT_MAX_LEN, true)
                } else {
                    (raw_len, false)
                };
                let pblk = (u64::from(u16_le(e, 6)) << 32) | u64::from(u32_le(e, 8));
                if len == 0 {
                    return Err(self.bad_extent(block, format!("entry {i} has length 0")));
                }
                let len = u64::from(len);
                if lblk < prev_end || lblk + len > hi {
                    return Err(self.bad_extent(
                        block,
                        format!(
                            "entry {i} (logical {lblk}+{len}) overlaps or is out of order (previous end {prev_end}, bound {hi})"
                        ),
                    ));
                }
                self.check_block(pblk, len)?;
                prev_end = lblk + len;
                self.push(lblk, len, pblk, uninit)?;
            }
            return Ok(());
        }
        let bs = self.fs.sb.block_size as usize;
        let mut buf = vec![0u8; bs];
        for i in 0..entries {
            let e = entry(i);
            let start = u64::from(u32_le(e, 0));
            let child = (u64::from(u16_le(e, 8)) << 32) | u64::from(u32_le(e, 4));
            let end = if i + 1 < entries {
                u64::from(u32_le(entry(i + 1), 0))
            } else {
                hi
            };
            if start < lo || end <= start || end > hi {
                return Err(self.bad_extent(
                    block,
                    format!("index {i} key {start} out of order (range {lo}..{hi})"),
                ));
            }
            if start >= self.nblocks {
                // Past the end of the file (preallocation): nothing to read there.
                break;
            }
            self.check_block(child, 1)?;
            if child < u64::from(self.fs.sb.first_data_block) {
                return Err(self.bad_extent(block, format!("index {i} points to block {child}")));
            }
            self.fs
                .src
                .read_exact_at(&mut buf, child * self.fs.sb.bs())?;
            self.extent_node(&buf, child, Some(depth - 1), start, end, inode_seed)?;
        }
        Ok(())
    }

    /// Walks an indirect block of `level` (1 = single) covering logical blocks from `lblk`.
    fn indirect(&mut self, block: u64, level: u32, lblk: u64) -> Result<()> {
        self.step()?;
        self.check_block(block, 1)?;
        let bs = self.fs.sb.bs();
        let per = bs / 4;
        let span = per.pow(level - 1);
        let mut buf = vec![0u8; self.fs.sb.block_size as usize];
        self.fs.src.read_exact_at(&mut buf, block * bs)?;
        for i in 0..per {
            let start = lblk + i * span;
            if start >= self.nblocks {
                break;
            }
            let p = u64::from(u32_le(&buf, usize::try_from(i * 4).unwrap_or(0)));
            if p == 0 {
                continue;
            }
            if level == 1 {
                self.step()?;
                self.check_block(p, 1)?;
                self.push(start, 1, p, false)?;
            } else {
                self.indirect(p, level - 1, start)?;
            }
        }
        Ok(())
    }
}

/// Builds the block map of a (non-inline) inode.
pub(crate) fn build_map(fs: &Inner, inode: &Inode) -> Result<FileMap> {
    let bs = fs.sb.bs();
    let nblocks = inode.size.div_ceil(bs);
    let mut b = Builder {
        fs,
        ino: inode.ino,
        nblocks,
        runs: Vec::new(),
        budget: fs.sb.blocks_count.saturating_add(16),
        max_runs: fs.opts.max_map_runs,
    };
    if nblocks == 0 {
        return Ok(FileMap::default());
    }
    if inode.has_flag(FL_EXTENTS) {
        let seed = crate::inode::Inode::csum_seed(fs.csum_seed, inode.ino, inode.generation);
        // Logical block numbers are 32-bit: the tree covers [0, 2^32).
        b.extent_node(inode.i_block(), 0, None, 0, 1 << 32, seed)?;
    } else {
        let ib = inode.i_block();
        for i in 0..DIRECT_BLOCKS.min(nblocks) {
            let p = u64::from(u32_le(ib, usize::try_from(i * 4).unwrap_or(0)));
            if p != 0 {
                b.check_block(p, 1)?;
                b.push(i, 1, p, false)?;
            }
        }
        let per = bs / 4;
        let mut start = DIRECT_BLOCKS;
        for level in 1..=3u32 {
            let p = u64::from(u32_le(ib, 44 + 4 * level as usize));
            if start >= nblocks {
                break;
            }
            if p != 0 {
                b.indirect(p, level, start)?;
            }
            start += per.pow(level);
        }
        if start < nblocks && nblocks > DIRECT_BLOCKS {
            let max_blocks = start;
            if nblocks > max_blocks {
                return Err(Error::BadInode {
                    ino: inode.ino,
                    reason: format!(
                        "size needs {nblocks} blocks, block pointers address at most {max_blocks}"
                    ),
                });
            }
        }
    }
    Ok(FileMap { runs: b.runs })
}
