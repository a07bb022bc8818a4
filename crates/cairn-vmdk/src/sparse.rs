//! Sparse extents: hosted `KDMV` (monolithicSparse, twoGbMaxExtentSparse pieces,
//! streamOptimized), ESXi `COWD` (vmfsSparse) and ESXi seSparse. All three are a grain
//! directory of grain tables of grain entries; they differ in entry width and encoding.
//!
//! Grain tables are not cached: a request reads the slice of each grain table it needs in one
//! positional read (64 bytes for a 1 MiB read of 64 KiB grains), so memory stays bounded and
//! reads stay `&self`. Decompressed stream grains are kept in a small byte-bounded cache.

use std::io::Read;
use std::sync::{Arc, Mutex};

use cairn_io::le::{u32_le, u64_le};
use cairn_io::{AllocationMap, Limits, RangeKind, ReadAt};

use crate::error::{Error, Result};
use crate::header::*;

/// Most entries accepted in one grain table (the specs use 512 and 4096): bounds the slice
/// of a table one request reads.
const MAX_GTES_PER_GT: u32 = 1 << 16;
/// Entries per `COWD` grain table (fixed by the format).
const COWD_GTES_PER_GT: u64 = 4096;
/// Decompressed stream grains kept, in bytes (at least one grain is always kept), so a
/// reader stepping through a grain in small requests decompresses it once.
const GRAIN_CACHE_BYTES: u64 = 8 << 20;

/// Where one grain's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrainLoc {
    /// Not stored in this extent.
    Unalloc,
    /// Reads as zeros (zero grain).
    Zero,
    /// Raw bytes at this file offset.
    Host(u64),
    /// A compressed grain whose marker (lba, size, data) starts at this file offset.
    Compressed(u64),
}

/// A piece of a planned read: `len` bytes from `src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// Read the file at this offset.
    Host(u64),
    /// Zeros.
    Zero,
    /// Parent or zeros.
    Unalloc,
    /// Bytes `skip..` of grain `grain`, compressed at `marker`.
    Compressed { grain: u64, marker: u64, skip: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hosted { compressed: bool },
    Cowd,
    SeSparse { grains_offset: u64 },
}

/// One sparse extent file.
pub(crate) struct SparseExtent {
    file: Arc<dyn ReadAt>,
    kind: Kind,
    /// Bytes the extent covers (header capacity).
    pub capacity: u64,
    grain_bytes: u64,
    gtes_per_gt: u64,
    /// Byte offset of each grain table, 0 = none.
    gd: Vec<u64>,
    /// The embedded descriptor text (hosted only), bounded by the descriptor limit.
    pub embedded_descriptor: Option<Vec<u8>>,
    cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl std::fmt::Debug for SparseExtent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseExtent")
            .field("kind", &self.kind)
            .field("capacity", &self.capacity)
            .field("grain_bytes", &self.grain_bytes)
            .field("gd_entries", &self.gd.len())
            .finish_non_exhaustive()
    }
}

/// Which sparse format a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Magic {
    Kdmv,
    Cowd,
    SeSparse,
}

pub(crate) fn sniff(file: &dyn ReadAt) -> Result<Option<Magic>> {
    let mut b = [0u8; 8];
    let n = file.size().min(8);
    file.read_exact_at(&mut b[..usize::try_from(n).unwrap_or(8)], 0)?;
    if n >= 4 && u32_le(&b, 0) == KDMV_MAGIC {
        return Ok(Some(Magic::Kdmv));
    }
    if n >= 4 && u32_le(&b, 0) == COWD_MAGIC {
        return Ok(Some(Magic::Cowd));
    }
    if n >= 8 && u64_le(&b, 0) == SESPARSE_MAGIC {
        return Ok(Some(Magic::SeSparse));
    }
    Ok(None)
}

fn read_block<const N: usize>(
    file: &dyn ReadAt,
    what: &'static str,
    offset: u64,
) -> Result<[u8; N]> {
    let need = N as u64;
    if offset.checked_add(need).is_none_or(|e| e > file.size()) {
        return Err(Error::Truncated {
            what,
            offset,
            need,
            size: file.size(),
        });
    }
    let mut b = [0u8; N];
    file.read_exact_at(&mut b, offset)?;
    Ok(b)
}

fn sectors_to_bytes(format: &'static str, field: &'static str, sectors: u64) -> Result<u64> {
    sectors.checked_mul(SECTOR).ok_or(Error::BadHeader {
        format,
        field,
        value: sectors,
        expected: "sector count that fits in 64 bits of bytes",
    })
}

fn check_capacity(bytes: u64, limits: &Limits) -> Result<()> {
    if bytes > limits.max_virtual_size {
        return Err(Error::CapacityTooLarge {
            size: bytes,
            max: limits.max_virtual_size,
        });
    }
    Ok(())
}

fn check_grain(sectors: u64, limits: &Limits) -> Result<u64> {
    let bytes = sectors.saturating_mul(SECTOR);
    if sectors == 0 || !sectors.is_power_of_two() || bytes > limits.max_unit_bytes {
        return Err(Error::BadGrainSize {
            bytes,
            max: limits.max_unit_bytes,
        });
    }
    Ok(bytes)
}

/// Reads a table of `entries` little-endian entries of `width` bytes at `offset`.
fn read_table(
    file: &dyn ReadAt,
    what: &'static str,
    offset: u64,
    entries: u64,
    width: u64,
    limits: &Limits,
) -> Result<Vec<u64>> {
    let bytes = entries.saturating_mul(width);
    if bytes > limits.max_table_bytes {
        return Err(Error::TableTooLarge {
            what,
            bytes,
            max: limits.max_table_bytes,
        });
    }
    if offset.checked_add(bytes).is_none_or(|e| e > file.size()) {
        return Err(Error::Truncated {
            what,
            offset,
            need: bytes,
            size: file.size(),
        });
    }
    // Bounded by max_table_bytes just above.
    let raw = file.read_vec_at(offset, usize::try_from(bytes).unwrap_or(usize::MAX))?;
    Ok(decode_entries(&raw, width))
}

fn decode_entries(raw: &[u8], width: u64) -> Vec<u64> {
    if width == 8 {
        raw.chunks_exact(8).map(|c| u64_le(c, 0)).collect()
    } else {
        raw.chunks_exact(4)
            .map(|c| u64::from(u32_le(c, 0)))
            .collect()
    }
}

impl SparseExtent {
    /// Opens a sparse extent of any of the three kinds, chosen by magic.
    pub fn open(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        match sniff(file.as_ref())? {
            Some(Magic::Kdmv) => Self::open_hosted(file, limits),
            Some(Magic::Cowd) => Self::open_cowd(file, limits),
            Some(Magic::SeSparse) => Self::open_sesparse(file, limits),
            None => {
                if file.size() < 8 {
                    Err(Error::Truncated {
                        what: "sparse header",
                        offset: 0,
                        need: 512,
                        size: file.size(),
                    })
                } else {
                    Err(Error::NotVmdk("no KDMV, COWD or seSparse magic".into()))
                }
            }
        }
    }

    fn new(
        file: Arc<dyn ReadAt>,
        kind: Kind,
        capacity: u64,
        grain_bytes: u64,
        gtes_per_gt: u64,
        gd: Vec<u64>,
    ) -> Self {
        SparseExtent {
            file,
            kind,
            capacity,
            grain_bytes,
            gtes_per_gt,
            gd,
            embedded_descriptor: None,
            cache: Mutex::new(Vec::new()),
        }
    }

    /// `monolithicSparse`, `streamOptimized`, `vmfsSparse` or `seSparse`.
    pub fn subformat(&self) -> &'static str {
        match self.kind {
            Kind::Hosted { compressed: true } => "streamOptimized",
            Kind::Hosted { compressed: false } => "monolithicSparse",
            Kind::Cowd => "vmfsSparse",
            Kind::SeSparse { .. } => "seSparse",
        }
    }

    fn open_hosted(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        const F: &str = "KDMV";
        let raw = read_block::<512>(file.as_ref(), "KDMV header", 0)?;
        let mut h = HostedHeader::decode(&raw);
        if !(1..=3).contains(&h.version) {
            return Err(Error::BadHeader {
                format: F,
                field: "version",
                value: h.version.into(),
                expected: "1, 2 or 3",
            });
        }
        if h.flags & FLAG_NL_TEST != 0 && raw[73..77] != *b"\n \r\n" {
            // The file went through a text-mode transfer that rewrote line ends.
            return Err(Error::BadHeader {
                format: F,
                field: "newline test characters",
                value: u64::from(u32_le(&raw, 73)),
                expected: "\\n, space, \\r, \\n (file damaged by a text-mode copy?)",
            });
        }
        let compressed = h.flags & FLAG_COMPRESSED != 0;
        if compressed && h.compress_algorithm != COMPRESS_DEFLATE {
            return Err(Error::BadHeader {
                format: F,
                field: "compressAlgorithm",
                value: h.compress_algorithm.into(),
                expected: "1 (deflate)",
            });
        }
        // The embedded descriptor is only in the leading header.
        let embedded = if h.descriptor_offset != 0 && h.descriptor_size != 0 {
            let off = sectors_to_bytes(F, "descriptorOffset", h.descriptor_offset)?;
            let len = h.descriptor_size.saturating_mul(SECTOR);
            if len > limits.max_descriptor_bytes {
                return Err(Error::DescriptorTooLarge {
                    bytes: len,
                    max: limits.max_descriptor_bytes,
                });
            }
            if off.checked_add(len).is_none_or(|e| e > file.size()) {
                return Err(Error::Truncated {
                    what: "embedded descriptor",
                    offset: off,
                    need: len,
                    size: file.size(),
                });
            }
            Some(file.read_vec_at(off, usize::try_from(len).unwrap_or(usize::MAX))?)
        } else {
            None
        };
        if h.gd_offset == GD_AT_END {
            // streamOptimized: footer header at end-1024 (followed by the EOS marker).
            let foot_off = file.size().checked_sub(1024).ok_or(Error::Truncated {
                what: "stream footer",
                offset: 0,
                need: 1024,
                size: file.size(),
            })?;
            let f = HostedHeader::decode(&read_block::<512>(
                file.as_ref(),
                "stream footer",
                foot_off,
            )?);
            if f.magic != KDMV_MAGIC || f.gd_offset == GD_AT_END {
                return Err(Error::BadHeader {
                    format: F,
                    field: "footer gdOffset",
                    value: f.gd_offset,
                    expected: "a KDMV footer at end-1024 holding the grain directory offset",
                });
            }
            h.gd_offset = f.gd_offset;
            h.rgd_offset = f.rgd_offset;
            if f.flags & FLAG_REDUNDANT_GD != 0 {
                h.flags |= FLAG_REDUNDANT_GD;
            }
        }
        let capacity = sectors_to_bytes(F, "capacity", h.capacity)?;
        check_capacity(capacity, limits)?;
        let grain_bytes = check_grain(h.grain_size, limits)?;
        if h.num_gtes_per_gt == 0 || h.num_gtes_per_gt > MAX_GTES_PER_GT {
            return Err(Error::BadHeader {
                format: F,
                field: "numGTEsPerGT",
                value: h.num_gtes_per_gt.into(),
                expected: "1..=65536 (normally 512)",
            });
        }
        let gtes = u64::from(h.num_gtes_per_gt);
        let gt_span = grain_bytes.saturating_mul(gtes);
        let gd_entries = capacity.div_ceil(gt_span);
        let gt_bytes = gtes * 4;
        let mut problems = Vec::new();
        let mut chosen = None;
        // Rule: the primary GD is used when it lies in the file and every entry is 0 or a
        // whole grain table inside the file; otherwise the redundant GD (when the header
        // names one) under the same test; otherwise the image is refused. Bad grain entries
        // inside a chosen table are reported when read, not repaired from the other copy.
        let mut candidates = vec![("primary", h.gd_offset)];
        if h.rgd_offset != 0 {
            candidates.push(("redundant", h.rgd_offset));
        }
        for (name, sectors) in candidates {
            if sectors == 0 {
                problems.push(format!("{name} GD offset is 0"));
                continue;
            }
            let Some(off) = sectors.checked_mul(SECTOR) else {
                problems.push(format!("{name} GD offset {sectors} sectors overflows"));
                continue;
            };
            match read_table(file.as_ref(), "grain directory", off, gd_entries, 4, limits) {
                Ok(gd) => match gd_to_bytes(&gd, gt_bytes, file.size()) {
                    Ok(gd) => {
                        chosen = Some(gd);
                        break;
                    }
                    Err(p) => problems.push(format!("{name} GD at {off}: {p}")),
                },
                Err(e @ Error::TableTooLarge { .. }) => return Err(e),
                Err(e) => problems.push(format!("{name} GD at {off}: {e}")),
            }
        }
        let gd = chosen.ok_or_else(|| Error::BadGrainDirectory(problems.join("; ")))?;
        let mut ext = Self::new(
            file,
            Kind::Hosted { compressed },
            capacity,
            grain_bytes,
            gtes,
            gd,
        );
        ext.embedded_descriptor = embedded;
        Ok(ext)
    }

    fn open_cowd(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        const F: &str = "COWD";
        let b = read_block::<512>(file.as_ref(), "COWD header", 0)?;
        let h = CowdHeader::decode(&b);
        if h.version != 1 {
            return Err(Error::BadHeader {
                format: F,
                field: "version",
                value: h.version.into(),
                expected: "1",
            });
        }
        let capacity = u64::from(h.num_sectors) * SECTOR;
        check_capacity(capacity, limits)?;
        let grain_bytes = check_grain(h.grain_size.into(), limits)?;
        let needed = capacity.div_ceil(grain_bytes * COWD_GTES_PER_GT);
        if u64::from(h.num_gd_entries) < needed {
            return Err(Error::BadHeader {
                format: F,
                field: "numGDEntries",
                value: h.num_gd_entries.into(),
                expected: "enough grain tables to cover the capacity",
            });
        }
        let off = u64::from(h.gd_offset) * SECTOR;
        let gd = read_table(file.as_ref(), "grain directory", off, needed, 4, limits)?;
        let gd = gd_to_bytes(&gd, COWD_GTES_PER_GT * 4, file.size())
            .map_err(|p| Error::BadGrainDirectory(format!("COWD GD at {off}: {p}")))?;
        Ok(Self::new(
            file,
            Kind::Cowd,
            capacity,
            grain_bytes,
            COWD_GTES_PER_GT,
            gd,
        ))
    }

    fn open_sesparse(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        const F: &str = "seSparse";
        let h = SeSparseHeader::decode(&read_block::<512>(file.as_ref(), "seSparse header", 0)?);
        let bad = |field, value, expected| Error::BadHeader {
            format: F,
            field,
            value,
            expected,
        };
        if h.version != SESPARSE_VERSION {
            return Err(bad("version", h.version, "0x200000001"));
        }
        if h.grain_size != 8 {
            return Err(bad("grain_size", h.grain_size, "8 sectors"));
        }
        if h.grain_table_size != 64 {
            return Err(bad("grain_table_size", h.grain_table_size, "64 sectors"));
        }
        if h.flags != 0 {
            return Err(bad("flags", h.flags, "0"));
        }
        let vol_off = sectors_to_bytes(F, "volatile_header_offset", h.volatile_header_offset)?;
        let vol = read_block::<32>(file.as_ref(), "seSparse volatile header", vol_off)?;
        if u64_le(&vol, 0) != SESPARSE_VOLATILE_MAGIC {
            return Err(bad("volatile magic", u64_le(&vol, 0), "0xcafecafe"));
        }
        if u64_le(&vol, 24) != 0 {
            return Err(Error::Unsupported(
                "seSparse journal needs replay (replay_journal set)".into(),
            ));
        }
        let capacity = sectors_to_bytes(F, "capacity", h.capacity)?;
        check_capacity(capacity, limits)?;
        let grain_bytes = 8 * SECTOR;
        let gtes = 64 * SECTOR / 8;
        let needed = capacity.div_ceil(grain_bytes * gtes);
        let gd_len = h.grain_dir_size.saturating_mul(SECTOR) / 8;
        if gd_len < needed {
            return Err(bad(
                "grain_dir_size",
                h.grain_dir_size,
                "enough entries to cover the capacity",
            ));
        }
        let gd_off = sectors_to_bytes(F, "grain_dir_offset", h.grain_dir_offset)?;
        let raw = read_table(file.as_ref(), "grain directory", gd_off, needed, 8, limits)?;
        let tables = sectors_to_bytes(F, "grain_tables_offset", h.grain_tables_offset)?;
        let table_bytes = gtes * 8;
        let max_tables = h.grain_tables_size.saturating_mul(SECTOR) / table_bytes;
        let mut gd = Vec::with_capacity(raw.len());
        for (i, &e) in raw.iter().enumerate() {
            if e == 0 {
                gd.push(0);
                continue;
            }
            // Allocated tables have 0x1 in the top nibble and a table index in the low half.
            if e & 0xffff_ffff_0000_0000 != 0x1000_0000_0000_0000 {
                return Err(Error::BadGrainDirectory(format!(
                    "seSparse GD entry {i} is {e:#x}, expected 0 or 0x10000000_xxxxxxxx"
                )));
            }
            let idx = e & 0xffff_ffff;
            if idx >= max_tables {
                return Err(Error::BadGrainDirectory(format!(
                    "seSparse GD entry {i} names table {idx}, the table area holds {max_tables}"
                )));
            }
            let off = tables.saturating_add(idx * table_bytes);
            if off
                .checked_add(table_bytes)
                .is_none_or(|end| end > file.size())
            {
                return Err(Error::BadGrainDirectory(format!(
                    "seSparse grain table {idx} at {off} is outside the file"
                )));
            }
            gd.push(off);
        }
        check_disjoint(&gd, table_bytes)
            .map_err(|p| Error::BadGrainDirectory(format!("seSparse: {p}")))?;
        let grains_offset = sectors_to_bytes(F, "grains_offset", h.grains_offset)?;
        Ok(Self::new(
            file,
            Kind::SeSparse { grains_offset },
            capacity,
            grain_bytes,
            gtes,
            gd,
        ))
    }

    fn gte_width(&self) -> u64 {
        match self.kind {
            Kind::SeSparse { .. } => 8,
            _ => 4,
        }
    }

    fn decode(&self, grain: u64, v: u64) -> Result<GrainLoc> {
        let size = self.file.size();
        let host = |off: Option<u64>, need: u64| -> Result<u64> {
            match off {
                Some(o) if o.checked_add(need).is_some_and(|e| e <= size) => Ok(o),
                _ => Err(Error::GrainOutOfRange {
                    grain,
                    offset: off.unwrap_or(u64::MAX),
                    size,
                }),
            }
        };
        // A final partial grain need only be stored up to the capacity.
        let need = self
            .grain_bytes
            .min(self.capacity.saturating_sub(grain * self.grain_bytes));
        match self.kind {
            Kind::Hosted { compressed } => match v {
                0 => Ok(GrainLoc::Unalloc),
                1 => Ok(GrainLoc::Zero),
                _ if compressed => Ok(GrainLoc::Compressed(host(v.checked_mul(SECTOR), 12)?)),
                _ => Ok(GrainLoc::Host(host(v.checked_mul(SECTOR), need)?)),
            },
            Kind::Cowd => match v {
                0 => Ok(GrainLoc::Unalloc),
                _ => Ok(GrainLoc::Host(host(v.checked_mul(SECTOR), need)?)),
            },
            Kind::SeSparse { grains_offset } => match v >> 60 {
                0 if v == 0 => Ok(GrainLoc::Unalloc),
                // 1: unmapped by the guest (SCSI UNMAP), 2: zero grain.
                1 | 2 => Ok(GrainLoc::Zero),
                3 => {
                    let idx =
                        ((v & 0x0fff_0000_0000_0000) >> 48) | ((v & 0x0000_ffff_ffff_ffff) << 12);
                    let off = idx
                        .checked_mul(self.grain_bytes)
                        .and_then(|o| o.checked_add(grains_offset));
                    Ok(GrainLoc::Host(host(off, need)?))
                }
                _ => Err(Error::BadGrainEntry { grain, value: v }),
            },
        }
    }

    /// Locations of `count` grains from `first`, reading each grain table slice once.
    pub fn locate(&self, first: u64, count: u64) -> Result<Vec<GrainLoc>> {
        let mut out = Vec::with_capacity(usize::try_from(count.min(1 << 16)).unwrap_or(0));
        let width = self.gte_width();
        let mut g = first;
        let end = first + count;
        while g < end {
            let gt = g / self.gtes_per_gt;
            let within = g % self.gtes_per_gt;
            let n = (self.gtes_per_gt - within).min(end - g);
            let gt_off = usize::try_from(gt)
                .ok()
                .and_then(|i| self.gd.get(i))
                .copied()
                .unwrap_or(0);
            if gt_off == 0 {
                out.extend(std::iter::repeat_n(
                    GrainLoc::Unalloc,
                    usize::try_from(n).unwrap_or(0),
                ));
            } else {
                // n <= gtes_per_gt <= 65536 entries of <= 8 bytes.
                let raw = self.file.read_vec_at(
                    gt_off + within * width,
                    usize::try_from(n * width).unwrap_or(0),
                )?;
                for (i, v) in decode_entries(&raw, width).into_iter().enumerate() {
                    out.push(self.decode(g + i as u64, v)?);
                }
            }
            g += n;
        }
        Ok(out)
    }

    /// Plans a read of `[off, off + len)` of this extent (the caller keeps it inside the
    /// extent's span; bytes past the capacity are `Unalloc`). Contiguous host grains merge.
    pub fn plan(&self, off: u64, len: u64) -> Result<Vec<(u64, Src)>> {
        let mut out: Vec<(u64, Src)> = Vec::new();
        let mut push = |l: u64, s: Src| {
            if let Some((pl, ps)) = out.last_mut() {
                let merged = match (*ps, s) {
                    (Src::Host(a), Src::Host(b)) => a + *pl == b,
                    (Src::Zero, Src::Zero) | (Src::Unalloc, Src::Unalloc) => true,
                    _ => false,
                };
                if merged {
                    *pl += l;
                    return;
                }
            }
            out.push((l, s));
        };
        let end = off + len;
        let in_cap_end = end.min(self.capacity);
        if off < in_cap_end {
            let first = off / self.grain_bytes;
            let last = (in_cap_end - 1) / self.grain_bytes;
            let locs = self.locate(first, last - first + 1)?;
            for (i, loc) in locs.into_iter().enumerate() {
                let g = first + i as u64;
                let gs = g * self.grain_bytes;
                let s = gs.max(off);
                let e = (gs + self.grain_bytes).min(in_cap_end);
                let skip = s - gs;
                let src = match loc {
                    GrainLoc::Unalloc => Src::Unalloc,
                    GrainLoc::Zero => Src::Zero,
                    GrainLoc::Host(h) => Src::Host(h + skip),
                    GrainLoc::Compressed(m) => Src::Compressed {
                        grain: g,
                        marker: m,
                        skip,
                    },
                };
                push(e - s, src);
            }
        }
        if end > off.max(self.capacity) {
            push(end - off.max(self.capacity), Src::Unalloc);
        }
        Ok(out)
    }

    /// Reads file bytes at `offset` (a planned host range).
    pub fn read_host(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        Ok(self.file.read_exact_at(buf, offset)?)
    }

    /// The decompressed bytes of grain `grain`, whose marker is at `marker`.
    pub fn grain(&self, grain: u64, marker: u64) -> Result<Arc<Vec<u8>>> {
        if let Ok(c) = self.cache.lock() {
            if let Some((_, g)) = c.iter().find(|(k, _)| *k == marker) {
                return Ok(Arc::clone(g));
            }
        }
        let data = Arc::new(self.decompress(grain, marker)?);
        if let Ok(mut c) = self.cache.lock() {
            let keep = usize::try_from((GRAIN_CACHE_BYTES / self.grain_bytes).max(1)).unwrap_or(1);
            if c.len() >= keep {
                c.remove(0);
            }
            c.push((marker, Arc::clone(&data)));
        }
        Ok(data)
    }

    fn decompress(&self, grain: u64, marker: u64) -> Result<Vec<u8>> {
        let bad = |reason: String| Error::BadCompressedGrain {
            grain,
            offset: marker,
            reason,
        };
        let head = read_block::<12>(self.file.as_ref(), "grain marker", marker)?;
        let lba = u64_le(&head, 0);
        let size = u64::from(u32_le(&head, 8));
        let expect_lba = grain * (self.grain_bytes / SECTOR);
        if lba != expect_lba {
            return Err(bad(format!("marker LBA {lba}, expected {expect_lba}")));
        }
        // Deflate never grows data by more than a few bytes per 16 KiB block.
        let max_compressed = self.grain_bytes + self.grain_bytes / 8 + 1024;
        if size == 0 || size > max_compressed {
            return Err(bad(format!(
                "compressed size {size} (1..={max_compressed})"
            )));
        }
        if (marker + 12)
            .checked_add(size)
            .is_none_or(|e| e > self.file.size())
        {
            return Err(bad(format!(
                "{size} compressed bytes run past the end of the file"
            )));
        }
        let packed = self
            .file
            .read_vec_at(marker + 12, usize::try_from(size).unwrap_or(0))?;
        let limit = self.grain_bytes;
        let inflate = |zlib: bool| -> std::io::Result<Vec<u8>> {
            let mut out = Vec::with_capacity(usize::try_from(limit).unwrap_or(0));
            if zlib {
                flate2::read::ZlibDecoder::new(&packed[..])
                    .take(limit + 1)
                    .read_to_end(&mut out)?;
            } else {
                flate2::read::DeflateDecoder::new(&packed[..])
                    .take(limit + 1)
                    .read_to_end(&mut out)?;
            }
            Ok(out)
        };
        // VMware and qemu write zlib streams; some tools write raw deflate.
        let mut out = inflate(true)
            .or_else(|_| inflate(false))
            .map_err(|e| bad(format!("inflate failed: {e}")))?;
        if out.len() as u64 > limit {
            return Err(bad(format!("inflates past the grain size {limit}")));
        }
        out.resize(usize::try_from(limit).unwrap_or(0), 0);
        Ok(out)
    }

    /// This extent's map over `span` bytes (its extent-line size), placed at `base`.
    pub fn map_into(&self, map: &mut AllocationMap, base: u64, span: u64) -> Result<()> {
        let end = span.min(self.capacity);
        if end == 0 {
            return Ok(());
        }
        let grains = end.div_ceil(self.grain_bytes);
        let mut g = 0;
        while g < grains {
            let n = (self.gtes_per_gt - g % self.gtes_per_gt).min(grains - g);
            let gt = usize::try_from(g / self.gtes_per_gt).unwrap_or(usize::MAX);
            if self.gd.get(gt).is_none_or(|&o| o == 0) {
                // A missing table is all unallocated; the map fills the gap itself.
                g += n;
                continue;
            }
            for (i, loc) in self.locate(g, n)?.into_iter().enumerate() {
                let s = (g + i as u64) * self.grain_bytes;
                let l = self.grain_bytes.min(end - s);
                let kind = match loc {
                    GrainLoc::Unalloc => continue,
                    GrainLoc::Zero => RangeKind::Zero,
                    GrainLoc::Host(_) | GrainLoc::Compressed(_) => RangeKind::Data,
                };
                map.push(base + s, l, kind).map_err(Error::Io)?;
            }
            g += n;
        }
        Ok(())
    }
}

/// Converts GD sector entries to byte offsets of whole tables inside the file; entries equal
/// of 0 are "no table".
///
/// Tables must not overlap: real images never share a table, and refusing it bounds the work
/// of a full-map walk by the file's size.
fn gd_to_bytes(gd: &[u64], gt_bytes: u64, file_size: u64) -> Result<Vec<u64>, String> {
    let out = gd
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            if e == 0 {
                return Ok(0);
            }
            let off = e * SECTOR;
            if off + gt_bytes > file_size {
                return Err(format!(
                    "entry {i} puts a grain table at {off}, past the end of the file ({file_size})"
                ));
            }
            Ok(off)
        })
        .collect::<Result<Vec<u64>, String>>()?;
    check_disjoint(&out, gt_bytes)?;
    Ok(out)
}

/// Fails when two of the non-zero table offsets are closer than `gt_bytes`.
fn check_disjoint(offsets: &[u64], gt_bytes: u64) -> Result<(), String> {
    let mut sorted: Vec<u64> = offsets.iter().copied().filter(|&o| o != 0).collect();
    sorted.sort_unstable();
    match sorted.windows(2).find(|w| w[1] - w[0] < gt_bytes) {
        Some(w) => Err(format!("grain tables at {} and {} overlap", w[0], w[1])),
        None => Ok(()),
    }
}
