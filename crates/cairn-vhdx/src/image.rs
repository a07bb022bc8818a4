//! [`VhdxImage`]: the BAT, block and sector-bitmap lookups, coalesced reads, layer map.

use std::path::Path;
use std::sync::Arc;

use cairn_io::le::u64_le;
use cairn_io::{
    AllocationMap, DiskIdentity, DiskLayer, FileReader, Limits, ParentExpectation, ParentLink,
    RangeKind, ReadAt,
};

use crate::format::{self, Header, Metadata, MIB};
use crate::guid::Guid;
use crate::{log, Error, Result};

/// Payload block states (BAT entry bits 0..=2).
const PAYLOAD_NOT_PRESENT: u64 = 0;
const PAYLOAD_UNDEFINED: u64 = 1;
const PAYLOAD_ZERO: u64 = 2;
const PAYLOAD_UNMAPPED: u64 = 3;
const PAYLOAD_FULLY_PRESENT: u64 = 6;
const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;
/// Sector bitmap block states.
const SB_NOT_PRESENT: u64 = 0;
const SB_PRESENT: u64 = 6;
/// Bits 20..=63 of a BAT entry: file offset in MiB.
const OFFSET_SHIFT: u32 = 20;
/// A sector bitmap block is 1 MiB and covers 2^23 logical sectors (one chunk).
const SECTOR_BITMAP_BYTES: u64 = MIB;
const SECTORS_PER_CHUNK: u64 = 1 << 23;

/// Where a guest range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// At this offset of the image file.
    Host(u64),
    /// Not in this layer: at this offset of the parent (zeros without one).
    Parent(u64),
    /// Zeros.
    Zero,
}

/// A VHDX image (fixed, dynamic or differencing) opened read-only.
///
/// If the header names an active log, the log is replayed in memory at open (the file is
/// never written) and all metadata and data are read through the replayed view.
pub struct VhdxImage {
    file: Arc<dyn ReadAt>,
    header: Header,
    meta: Metadata,
    bat: Vec<u64>,
    chunk_ratio: u64,
    payload_blocks: u64,
    log_replayed: bool,
    parent: Option<Arc<dyn DiskLayer>>,
}

impl std::fmt::Debug for VhdxImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhdxImage")
            .field("file_size", &self.file.size())
            .field("header", &self.header)
            .field("meta", &self.meta)
            .field("bat_entries", &self.bat.len())
            .field("log_replayed", &self.log_replayed)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl VhdxImage {
    /// Opens the VHDX file at `path` read-only.
    pub fn open(path: &Path, limits: &Limits) -> Result<Self> {
        let f = FileReader::open(path).map_err(|e| Error::Io(cairn_io::Error::io(0, e)))?;
        Self::from_reader(Arc::new(f), limits)
    }

    /// Opens a VHDX image held by any positional reader.
    pub fn from_reader(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        format::check_signature(file.as_ref())?;
        let header = format::read_header(file.as_ref())?;
        let (file, log_replayed) = if header.log_guid.is_nil() {
            (file, false)
        } else {
            (log::replay(file, &header, limits)?, true)
        };
        let (bat_region, meta_region) = format::read_regions(file.as_ref())?;
        let meta = format::read_metadata(file.as_ref(), meta_region, limits)?;

        let block = u64::from(meta.block_size);
        let chunk_ratio = (SECTORS_PER_CHUNK * u64::from(meta.logical_sector)) / block;
        let payload_blocks = meta.virtual_size.div_ceil(block);
        let entries = if meta.has_parent {
            payload_blocks.div_ceil(chunk_ratio) * (chunk_ratio + 1)
        } else if payload_blocks == 0 {
            0
        } else {
            payload_blocks + (payload_blocks - 1) / chunk_ratio
        };
        let bat_bytes = entries * 8;
        let bad_region = |reason| Error::BadField {
            structure: "BAT region",
            offset: bat_region.offset,
            field: "Length",
            value: bat_region.length.into(),
            reason,
        };
        if bat_bytes > u64::from(bat_region.length) {
            return Err(bad_region("too small for the virtual disk size"));
        }
        if bat_bytes > limits.max_table_bytes {
            return Err(bad_region("BAT larger than limits.max_table_bytes"));
        }
        if bat_region
            .offset
            .checked_add(bat_bytes)
            .is_none_or(|e| e > file.size())
        {
            return Err(bad_region("BAT runs past the end of the file"));
        }
        // Bounded by max_table_bytes above.
        let raw = file.read_vec_at(
            bat_region.offset,
            usize::try_from(bat_bytes).map_err(|_| bad_region("BAT too large"))?,
        )?;
        let bat: Vec<u64> = raw.chunks_exact(8).map(|c| u64_le(c, 0)).collect();
        let img = VhdxImage {
            file,
            header,
            meta,
            bat,
            chunk_ratio,
            payload_blocks,
            log_replayed,
            parent: None,
        };
        img.validate_bat()?;
        Ok(img)
    }

    /// Checks every BAT entry once, so reads never meet a bad one.
    fn validate_bat(&self) -> Result<()> {
        let fsize = self.file.size();
        let block = u64::from(self.meta.block_size);
        for (i, &e) in self.bat.iter().enumerate() {
            let index = i as u64;
            let is_bitmap = (index + 1).is_multiple_of(self.chunk_ratio + 1);
            let state = e & 7;
            let off = e >> OFFSET_SHIFT << OFFSET_SHIFT;
            let bad = |what: String, reason| Error::BadBatEntry {
                index,
                entry: e,
                what,
                reason,
            };
            if is_bitmap {
                let chunk = index / (self.chunk_ratio + 1);
                let what = || format!("sector bitmap of chunk {chunk}");
                match state {
                    SB_NOT_PRESENT => {}
                    SB_PRESENT => {
                        if !self.meta.has_parent {
                            return Err(bad(what(), "sector bitmap in a disk without a parent"));
                        }
                        if off < MIB
                            || off
                                .checked_add(SECTOR_BITMAP_BYTES)
                                .is_none_or(|x| x > fsize)
                        {
                            return Err(bad(what(), "offset outside the file"));
                        }
                    }
                    _ => return Err(bad(what(), "invalid sector bitmap state")),
                }
                continue;
            }
            let blk = index - index / (self.chunk_ratio + 1);
            if blk >= self.payload_blocks {
                // Padding entries of a differencing disk's last chunk: never read.
                continue;
            }
            let what = || format!("payload block {blk}");
            match state {
                PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED => {}
                PAYLOAD_FULLY_PRESENT | PAYLOAD_PARTIALLY_PRESENT => {
                    if state == PAYLOAD_PARTIALLY_PRESENT {
                        if !self.meta.has_parent {
                            return Err(bad(
                                what(),
                                "partially present block in a disk without a parent",
                            ));
                        }
                        let sb = self.bat.get(self.bitmap_index(blk)).copied().unwrap_or(0);
                        if sb & 7 != SB_PRESENT {
                            return Err(bad(
                                what(),
                                "partially present but its chunk has no sector bitmap",
                            ));
                        }
                    }
                    // The block past the virtual end need only hold the disk's tail.
                    let need = block.min(self.meta.virtual_size.saturating_sub(blk * block));
                    if off < MIB || off.checked_add(need).is_none_or(|x| x > fsize) {
                        return Err(bad(what(), "block offset outside the file"));
                    }
                }
                _ => return Err(bad(what(), "invalid payload block state")),
            }
        }
        Ok(())
    }

    fn bitmap_index(&self, block: u64) -> usize {
        let chunk = block / self.chunk_ratio;
        usize::try_from(chunk * (self.chunk_ratio + 1) + self.chunk_ratio).unwrap_or(usize::MAX)
    }

    fn payload_entry(&self, block: u64) -> u64 {
        let idx = block + block / self.chunk_ratio;
        usize::try_from(idx)
            .ok()
            .and_then(|i| self.bat.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.meta.block_size
    }

    /// Logical sector size (512 or 4096).
    pub fn logical_sector_size(&self) -> u32 {
        self.meta.logical_sector
    }

    /// Physical sector size, when the metadata records it.
    pub fn physical_sector_size(&self) -> Option<u32> {
        self.meta.physical_sector
    }

    /// Whether the disk is differencing (has a parent).
    pub fn has_parent(&self) -> bool {
        self.meta.has_parent
    }

    /// The parent locator key/value pairs, in file order.
    pub fn parent_locator(&self) -> &[(String, String)] {
        &self.meta.parent_locator
    }

    /// Whether an active log was replayed (in memory) at open.
    pub fn log_replayed(&self) -> bool {
        self.log_replayed
    }

    /// Splits `[in_block, in_block + len)` of a partially present block into runs of
    /// present (`true`) and absent sectors, from the chunk's sector bitmap.
    fn partial_runs(&self, block: u64, in_block: u64, len: u64) -> Result<Vec<(u64, u64, bool)>> {
        let lsec = u64::from(self.meta.logical_sector);
        let per_block = u64::from(self.meta.block_size) / lsec;
        let sb_entry = self.bat.get(self.bitmap_index(block)).copied().unwrap_or(0);
        let sb_off = sb_entry >> OFFSET_SHIFT << OFFSET_SHIFT;
        let first = in_block / lsec;
        let last = (in_block + len - 1) / lsec;
        let base_bit = (block % self.chunk_ratio) * per_block;
        let byte0 = (base_bit + first) / 8;
        let byte1 = (base_bit + last) / 8;
        // At most block_size / 512 / 8 bytes (64 KiB for 256 MiB blocks).
        let bits = self.file.read_vec_at(
            sb_off + byte0,
            usize::try_from(byte1 - byte0 + 1).unwrap_or(usize::MAX),
        )?;
        let mut runs: Vec<(u64, u64, bool)> = Vec::new();
        for s in first..=last {
            let bit = base_bit + s - byte0 * 8;
            let present =
                bits[usize::try_from(bit / 8).unwrap_or(usize::MAX)] & (1 << (bit % 8)) != 0;
            let start = (s * lsec).max(in_block);
            let end = ((s + 1) * lsec).min(in_block + len);
            match runs.last_mut() {
                Some(r) if r.2 == present => r.1 += end - start,
                _ => runs.push((start, end - start, present)),
            }
        }
        Ok(runs)
    }

    /// Calls `f(guest_offset, len, source)` for the pieces of `[offset, offset + len)`.
    fn for_each_piece(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, Source) -> Result<()>,
    ) -> Result<()> {
        let block = u64::from(self.meta.block_size);
        let absent = |g| {
            if self.parent.is_some() {
                Source::Parent(g)
            } else {
                Source::Zero
            }
        };
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let b = pos / block;
            let in_block = pos % block;
            let n = (block - in_block).min(end - pos);
            let e = self.payload_entry(b);
            let host = (e >> OFFSET_SHIFT << OFFSET_SHIFT) + in_block;
            match e & 7 {
                PAYLOAD_FULLY_PRESENT => f(pos, n, Source::Host(host))?,
                PAYLOAD_PARTIALLY_PRESENT => {
                    for (s, l, present) in self.partial_runs(b, in_block, n)? {
                        let g = b * block + s;
                        let src = if present {
                            Source::Host(host - in_block + s)
                        } else {
                            absent(g)
                        };
                        f(g, l, src)?;
                    }
                }
                PAYLOAD_ZERO | PAYLOAD_UNMAPPED => f(pos, n, Source::Zero)?,
                _ => f(pos, n, absent(pos))?,
            }
            pos += n;
        }
        Ok(())
    }

    fn read_inner(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // Coalesce pieces contiguous in their source into one read.
        let mut pending: Option<(Source, usize, usize)> = None;
        self.for_each_piece(offset, buf.len() as u64, |g, l, src| {
            let at = usize::try_from(g - offset).unwrap_or(usize::MAX);
            let l = usize::try_from(l).unwrap_or(usize::MAX);
            if let Some((psrc, pstart, plen)) = &mut pending {
                let contiguous = *pstart + *plen == at
                    && match (*psrc, src) {
                        (Source::Host(a), Source::Host(b))
                        | (Source::Parent(a), Source::Parent(b)) => a + *plen as u64 == b,
                        (Source::Zero, Source::Zero) => true,
                        _ => false,
                    };
                if contiguous {
                    *plen += l;
                    return Ok(());
                }
            }
            if let Some(p) = pending.take() {
                self.flush(buf, p)?;
            }
            pending = Some((src, at, l));
            Ok(())
        })?;
        if let Some(p) = pending {
            self.flush(buf, p)?;
        }
        Ok(())
    }

    fn flush(&self, buf: &mut [u8], (src, start, len): (Source, usize, usize)) -> Result<()> {
        let out = &mut buf[start..start + len];
        match (src, &self.parent) {
            (Source::Host(h), _) => read_padded(self.file.as_ref(), out, h),
            (Source::Parent(g), Some(p)) => read_padded(p.as_ref(), out, g),
            (Source::Zero, _) | (Source::Parent(_), None) => {
                out.fill(0);
                Ok(())
            }
        }
    }

    fn build_layer_map(&self) -> Result<AllocationMap> {
        let size = self.meta.virtual_size;
        let block = u64::from(self.meta.block_size);
        let mut map = AllocationMap::new(size);
        for b in 0..self.payload_blocks {
            let start = b * block;
            let len = block.min(size - start);
            let e = self.payload_entry(b);
            match e & 7 {
                PAYLOAD_FULLY_PRESENT => map.push(start, len, RangeKind::Data)?,
                PAYLOAD_ZERO | PAYLOAD_UNMAPPED => map.push(start, len, RangeKind::Zero)?,
                PAYLOAD_PARTIALLY_PRESENT => {
                    for (s, l, present) in self.partial_runs(b, 0, len)? {
                        if present {
                            map.push(start + s, l, RangeKind::Data)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(map.finish())
    }
}

/// Reads `buf.len()` bytes at `offset`; bytes past the source's end read as zeros (a
/// parent smaller than the child).
fn read_padded(src: &dyn ReadAt, buf: &mut [u8], offset: u64) -> Result<()> {
    Ok(src.read_zero_padded_at(buf, offset)?)
}

fn to_io(offset: u64, e: Error) -> cairn_io::Error {
    match e {
        Error::Io(io) => io,
        other => cairn_io::Error::io(
            offset,
            std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        ),
    }
}

impl ReadAt for VhdxImage {
    fn size(&self) -> u64 {
        self.meta.virtual_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        let size = self.meta.virtual_size;
        if offset >= size {
            return Ok(0);
        }
        let n = usize::try_from(size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.read_inner(&mut buf[..n], offset)
            .map_err(|e| to_io(offset, e))?;
        Ok(n)
    }
}

fn normalize_guid_text(s: &str) -> String {
    Guid::parse(s).map_or_else(|| s.trim().to_lowercase(), |g| g.to_string())
}

impl DiskLayer for VhdxImage {
    fn format(&self) -> &'static str {
        "vhdx"
    }

    fn subformat(&self) -> String {
        if self.meta.has_parent {
            "differencing"
        } else if self.meta.leave_allocated {
            "fixed"
        } else {
            "dynamic"
        }
        .to_string()
    }

    fn identity(&self) -> DiskIdentity {
        DiskIdentity {
            uuid: self.meta.disk_id.map(|g| g.0),
            content_id: Some(self.header.data_write_guid.to_string()),
        }
    }

    fn parent_link(&self) -> Option<ParentLink> {
        if !self.meta.has_parent {
            return None;
        }
        let get = |k: &str| {
            self.meta
                .parent_locator
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let hints = ["relative_path", "volume_path", "absolute_win32_path"]
            .iter()
            .filter_map(|k| get(k))
            .filter(|v| !v.is_empty())
            .collect();
        let expect = match get("parent_linkage") {
            Some(l) => ParentExpectation::ContentId(normalize_guid_text(&l)),
            None => ParentExpectation::Nothing,
        };
        Some(ParentLink { hints, expect })
    }

    fn attach_parent(
        &mut self,
        parent: Arc<dyn DiskLayer>,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.meta.has_parent {
            return Err("VHDX disk is not differencing; it takes no parent".into());
        }
        self.parent = Some(parent);
        Ok(())
    }

    fn layer_map(
        &self,
    ) -> std::result::Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.build_layer_map()?)
    }
}
