//! The reader: footer discovery, dynamic header, BAT, sector bitmaps, parent read-through.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cairn_io::{
    AllocationMap, DiskIdentity, DiskLayer, FileReader, Limits, ParentExpectation, ParentLink,
    RangeKind, ReadAt,
};

use crate::footer::{DiskType, Footer, FOOTER_LEN};
use crate::header::{decode_locator, DynamicHeader, HEADER_LEN};
use crate::Error;

/// Sector size of every VHD.
pub(crate) const SECTOR: u64 = 512;
/// BAT value of an unallocated block.
pub(crate) const UNALLOCATED: u32 = u32::MAX;
/// Longest parent locator accepted: a Windows path is at most 32767 UTF-16 units.
pub const MAX_LOCATOR_BYTES: u32 = 65_536;
/// Bytes of sector bitmap read at once when building a differencing disk's map, so a
/// huge block's bitmap does not size one allocation (4 KiB = 16 MiB of block).
const BITMAP_CHUNK: u64 = 4096;

/// Which footer copy the image was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FooterSource {
    /// The 512-byte footer at the end of the file (the normal case).
    End,
    /// The 511-byte footer some old Virtual PC versions wrote at the end.
    EndShort,
    /// The copy at offset 0 of a dynamic or differencing disk, used because the footer at
    /// the end was missing or failed its checksum.
    Copy,
}

#[derive(Debug)]
struct Sparse {
    header: DynamicHeader,
    block_size: u64,
    /// Bytes of sector bitmap before each block's data (a multiple of 512).
    bitmap_len: u64,
    /// One entry per block of the virtual size (entries past it are never read).
    bat: Vec<u32>,
}

/// An open VHD: fixed, dynamic or differencing.
///
/// The virtual size is the footer's current size (see the crate documentation for why not
/// the CHS geometry).
pub struct VhdImage {
    file: Arc<dyn ReadAt>,
    footer: Footer,
    footer_source: FooterSource,
    size: u64,
    sparse: Option<Sparse>,
    hints: Vec<String>,
    parent: Option<Arc<dyn DiskLayer>>,
}

impl fmt::Debug for VhdImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VhdImage")
            .field("footer", &self.footer)
            .field("footer_source", &self.footer_source)
            .field("file_size", &self.file.size())
            .field("header", &self.sparse.as_ref().map(|s| &s.header))
            .field("hints", &self.hints)
            .field("parent", &self.parent.is_some())
            .finish()
    }
}

fn read_footer_at(file: &dyn ReadAt, offset: u64, len: usize) -> Result<Footer, Error> {
    let mut buf = [0u8; FOOTER_LEN];
    file.read_exact_at(&mut buf[..len], offset)?;
    Footer::decode(&buf, offset)
}

/// Finds the footer: end (512), end (511, old Virtual PC), then the copy at offset 0.
/// Returns the footer, where it came from and the end of the data area.
fn find_footer(file: &dyn ReadAt) -> Result<(Footer, FooterSource, u64), Error> {
    let size = file.size();
    if size < 511 {
        return Err(Error::TooSmall { size });
    }
    let end = if size >= 512 {
        read_footer_at(file, size - 512, 512).map(|f| (f, FooterSource::End, size - 512))
    } else {
        Err(Error::TooSmall { size })
    };
    let end = match end {
        Err(Error::BadFooterCookie { .. }) | Err(Error::TooSmall { .. }) => {
            match read_footer_at(file, size - 511, 511) {
                Ok(f) => Ok((f, FooterSource::EndShort, size - 511)),
                Err(Error::BadFooterCookie { .. }) => end,
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    let end_err = match end {
        Ok(found) => return Ok(found),
        Err(e) => e,
    };
    // A damaged end footer: a dynamic or differencing disk keeps a copy at offset 0.
    if size >= 2 * 512 {
        if let Ok(copy) = read_footer_at(file, 0, 512) {
            if copy.disk_type != DiskType::Fixed {
                return Ok((copy, FooterSource::Copy, size - 512));
            }
        }
    }
    Err(end_err)
}

impl VhdImage {
    /// Opens the VHD at `path`.
    pub fn open(path: &Path, limits: &Limits) -> Result<VhdImage, Error> {
        let file = FileReader::open(path).map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(Arc::new(file), limits)
    }

    /// Opens a VHD held by any positional reader.
    pub fn from_reader(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<VhdImage, Error> {
        let (footer, footer_source, data_end) = find_footer(&*file)?;
        let size = footer.current_size;
        if size > limits.max_virtual_size {
            return Err(Error::VirtualSizeTooLarge {
                size,
                max: limits.max_virtual_size,
            });
        }
        let mut image = VhdImage {
            file,
            footer,
            footer_source,
            size,
            sparse: None,
            hints: Vec::new(),
            parent: None,
        };
        if image.footer.disk_type == DiskType::Fixed {
            if size > data_end {
                return Err(Error::FixedTruncated {
                    needed: size,
                    available: data_end,
                });
            }
            return Ok(image);
        }
        image.sparse = Some(image.read_sparse(data_end, limits)?);
        if image.footer.disk_type == DiskType::Differencing {
            image.hints = image.read_hints()?;
        }
        Ok(image)
    }

    fn read_sparse(&self, data_end: u64, limits: &Limits) -> Result<Sparse, Error> {
        let file_size = self.file.size();
        let hoff = self.footer.data_offset;
        if hoff
            .checked_add(HEADER_LEN as u64)
            .is_none_or(|e| e > file_size)
        {
            return Err(Error::HeaderOutsideFile {
                offset: hoff,
                file_size,
            });
        }
        let mut buf = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut buf, hoff)?;
        let header = DynamicHeader::decode(&buf, hoff)?;
        let bs = header.block_size;
        if !bs.is_power_of_two() || u64::from(bs) < SECTOR || u64::from(bs) > limits.max_unit_bytes
        {
            return Err(Error::BadBlockSize {
                block_size: bs,
                max: limits.max_unit_bytes,
            });
        }
        let block_size = u64::from(bs);
        let needed = self.size.div_ceil(block_size);
        if u64::from(header.max_table_entries) < needed {
            return Err(Error::BatTooSmall {
                entries: header.max_table_entries,
                block_size: bs,
                size: self.size,
            });
        }
        // needed <= max_table_entries <= u32::MAX, so the product cannot overflow.
        let bat_bytes = needed * 4;
        if bat_bytes > limits.max_table_bytes {
            return Err(Error::BatTooLarge {
                bytes: bat_bytes,
                max: limits.max_table_bytes,
            });
        }
        if header
            .table_offset
            .checked_add(bat_bytes)
            .is_none_or(|e| e > file_size)
        {
            return Err(Error::BatOutsideFile {
                offset: header.table_offset,
                len: bat_bytes,
                file_size,
            });
        }
        let bat_len = usize::try_from(bat_bytes).map_err(|_| Error::BatTooLarge {
            bytes: bat_bytes,
            max: limits.max_table_bytes,
        })?;
        let raw = self.file.read_vec_at(header.table_offset, bat_len)?;
        let bat: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // One bit per sector, rounded up to whole sectors.
        let bitmap_len = (block_size / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR;
        for (index, &sector) in bat.iter().enumerate() {
            if sector == UNALLOCATED {
                continue;
            }
            let index = index as u64;
            let used = block_size.min(self.size - index * block_size);
            let end = u64::from(sector) * SECTOR + bitmap_len + used;
            if end > data_end {
                return Err(Error::BlockOutsideFile {
                    index,
                    sector,
                    end,
                    limit: data_end,
                });
            }
        }
        Ok(Sparse {
            header,
            block_size,
            bitmap_len,
            bat,
        })
    }

    fn read_hints(&self) -> Result<Vec<String>, Error> {
        let Some(sparse) = &self.sparse else {
            return Ok(Vec::new());
        };
        let file_size = self.file.size();
        let mut found: Vec<(u8, usize, String)> = Vec::new();
        for &(slot, loc) in &sparse.header.locators {
            if loc.data_len == 0 {
                continue;
            }
            if loc.data_len > MAX_LOCATOR_BYTES
                || loc
                    .data_offset
                    .checked_add(u64::from(loc.data_len))
                    .is_none_or(|e| e > file_size)
            {
                return Err(Error::LocatorOutsideFile {
                    index: slot,
                    offset: loc.data_offset,
                    len: loc.data_len,
                    file_size,
                    max: MAX_LOCATOR_BYTES,
                });
            }
            // data_len <= MAX_LOCATOR_BYTES, checked above.
            let len = usize::try_from(loc.data_len).unwrap_or(0);
            let data = self.file.read_vec_at(loc.data_offset, len)?;
            if let Some(s) = decode_locator(loc.code, &data) {
                found.push((loc.code.priority(), slot, s));
            }
        }
        found.sort();
        let mut hints: Vec<String> = Vec::new();
        let name = &sparse.header.parent_name;
        for s in found
            .into_iter()
            .map(|(_, _, s)| s)
            .chain((!name.is_empty()).then(|| name.clone()))
        {
            if !hints.contains(&s) {
                hints.push(s);
            }
        }
        Ok(hints)
    }

    /// The footer the image was opened with.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Which footer copy was used.
    pub fn footer_source(&self) -> FooterSource {
        self.footer_source
    }

    /// The dynamic header (dynamic and differencing disks).
    pub fn dynamic_header(&self) -> Option<&DynamicHeader> {
        self.sparse.as_ref().map(|s| &s.header)
    }

    /// Fixed, dynamic or differencing.
    pub fn disk_type(&self) -> DiskType {
        self.footer.disk_type
    }

    /// Whether a parent is attached.
    pub fn has_parent(&self) -> bool {
        self.parent.is_some()
    }

    /// Fills `buf` with what lies below this layer at `offset`: the parent's bytes (zeros
    /// past the parent's end) or zeros.
    fn read_below(&self, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let Some(parent) = &self.parent else {
            buf.fill(0);
            return Ok(());
        };
        let psize = parent.size();
        let avail = usize::try_from(psize.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (head, tail) = buf.split_at_mut(avail);
        if !head.is_empty() {
            parent.read_exact_at(head, offset)?;
        }
        tail.fill(0);
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` within one block (`block` index).
    fn read_in_block(
        &self,
        sparse: &Sparse,
        block: u64,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<(), Error> {
        let idx = usize::try_from(block).unwrap_or(usize::MAX);
        let entry = sparse.bat.get(idx).copied().unwrap_or(UNALLOCATED);
        if entry == UNALLOCATED {
            return self.read_below(buf, offset);
        }
        let in_block = offset - block * sparse.block_size;
        let block_start = u64::from(entry) * SECTOR;
        let data_start = block_start + sparse.bitmap_len;
        if self.footer.disk_type != DiskType::Differencing {
            // Dynamic: an allocated block is data, whatever its bitmap says (qemu does the
            // same, and Hyper-V and qemu set every bit when they allocate).
            return Ok(self.file.read_exact_at(buf, data_start + in_block)?);
        }
        let first = in_block / SECTOR;
        let last = (in_block + buf.len() as u64 - 1) / SECTOR;
        let bm_off = first / 8;
        // At most one block's bitmap: bounded by max_unit_bytes / 4096.
        let bm_len = usize::try_from(last / 8 - bm_off + 1).unwrap_or(0);
        let bitmap = self.file.read_vec_at(block_start + bm_off, bm_len)?;
        let bit = |s: u64| {
            let i = usize::try_from(s / 8 - bm_off).unwrap_or(0);
            bitmap[i] & (0x80 >> (s % 8)) != 0
        };
        let mut s = first;
        let mut done = 0usize;
        while s <= last {
            let present = bit(s);
            let mut e = s + 1;
            while e <= last && bit(e) == present {
                e += 1;
            }
            let run_end = (e * SECTOR).min(in_block + buf.len() as u64);
            let run_len = usize::try_from(run_end - (in_block + done as u64)).unwrap_or(0);
            let part = &mut buf[done..done + run_len];
            let at = in_block + done as u64;
            if present {
                self.file.read_exact_at(part, data_start + at)?;
            } else {
                self.read_below(part, offset + done as u64)?;
            }
            done += run_len;
            s = e;
        }
        Ok(())
    }

    fn read_sparse_range(&self, sparse: &Sparse, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = pos / sparse.block_size;
            let block_end = (block + 1) * sparse.block_size;
            let n = usize::try_from(block_end - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            self.read_in_block(sparse, block, &mut buf[done..done + n], pos)?;
            done += n;
        }
        Ok(())
    }

    /// This layer's own allocation map (see [`DiskLayer::layer_map`]).
    pub fn allocation(&self) -> Result<AllocationMap, Error> {
        let Some(sparse) = &self.sparse else {
            return Ok(AllocationMap::uniform(self.size, RangeKind::Data));
        };
        let mut map = AllocationMap::new(self.size);
        for (i, &entry) in sparse.bat.iter().enumerate() {
            if entry == UNALLOCATED {
                continue;
            }
            let start = i as u64 * sparse.block_size;
            let len = sparse.block_size.min(self.size - start);
            if self.footer.disk_type != DiskType::Differencing {
                map.push(start, len, RangeKind::Data)?;
                continue;
            }
            let sectors = len.div_ceil(SECTOR);
            let bm_start = u64::from(entry) * SECTOR;
            let mut chunk_first = 0u64;
            while chunk_first < sectors {
                let chunk_sectors = (BITMAP_CHUNK * 8).min(sectors - chunk_first);
                let bytes = usize::try_from(chunk_sectors.div_ceil(8)).unwrap_or(0);
                let bm = self.file.read_vec_at(bm_start + chunk_first / 8, bytes)?;
                let mut s = 0u64;
                while s < chunk_sectors {
                    let set = |k: u64| {
                        let byte = bm[usize::try_from(k / 8).unwrap_or(0)];
                        byte & (0x80 >> (k % 8)) != 0
                    };
                    if !set(s) {
                        s += 1;
                        continue;
                    }
                    let mut e = s + 1;
                    while e < chunk_sectors && set(e) {
                        e += 1;
                    }
                    let off = start + (chunk_first + s) * SECTOR;
                    let end = (start + (chunk_first + e) * SECTOR).min(start + len);
                    map.push(off, end - off, RangeKind::Data)?;
                    s = e;
                }
                chunk_first += chunk_sectors;
            }
        }
        Ok(map.finish())
    }
}

impl ReadAt for VhdImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let n = usize::try_from(self.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buf = &mut buf[..n];
        let res = match &self.sparse {
            None => self.file.read_exact_at(buf, offset).map_err(Error::from),
            Some(sparse) => self.read_sparse_range(sparse, buf, offset),
        };
        match res {
            Ok(()) => Ok(n),
            Err(Error::Io(e)) => Err(e),
            Err(e) => Err(cairn_io::Error::io(offset, std::io::Error::other(e))),
        }
    }
}

impl DiskLayer for VhdImage {
    fn format(&self) -> &'static str {
        "vhd"
    }

    fn subformat(&self) -> String {
        self.footer.disk_type.name().to_string()
    }

    fn identity(&self) -> DiskIdentity {
        DiskIdentity {
            uuid: Some(self.footer.unique_id),
            content_id: None,
        }
    }

    fn parent_link(&self) -> Option<ParentLink> {
        if self.footer.disk_type != DiskType::Differencing {
            return None;
        }
        let header = self.dynamic_header()?;
        Some(ParentLink {
            hints: self.hints.clone(),
            expect: ParentExpectation::Uuid(header.parent_unique_id),
        })
    }

    fn attach_parent(
        &mut self,
        parent: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.footer.disk_type != DiskType::Differencing {
            return Err(Box::new(Error::NotDifferencing {
                subformat: self.footer.disk_type.name(),
            }));
        }
        self.parent = Some(parent);
        Ok(())
    }

    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.allocation()?)
    }
}
