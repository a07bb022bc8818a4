//! [`Qcow2Image`]: cluster lookup through L1/L2 tables, coalesced reads, layer map.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_io::le::u64_be;
use cairn_io::{
    AllocationMap, DiskIdentity, DiskLayer, FileReader, Limits, ParentExpectation, ParentLink,
    RangeKind, ReadAt,
};

use crate::bitmap::{self, DirtyBitmap};
use crate::header::{self, Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};
use crate::{Error, Result};

/// Bits 9..=55 of L1 and standard L2 entries: the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry bit 62: the cluster is compressed.
const FLAG_COMPRESSED: u64 = 1 << 62;
/// L2 entry bit 0: the cluster reads as zeros (v3; qemu honours it in any version).
const FLAG_ZERO: u64 = 1 << 0;
/// Compressed data is counted in 512-byte sectors.
const SECTOR: u64 = 512;
/// L2 tables kept in memory at most (bytes); the cache never exceeds
/// `limits.max_table_bytes` either. 32 MiB covers 256 GiB of guest space at 64 KiB clusters.
const L2_CACHE_BYTES: u64 = 32 << 20;
/// At least this many L2 tables are cached, so a read crossing a table boundary never
/// thrashes.
const L2_CACHE_MIN_TABLES: usize = 4;

/// Where one guest cluster's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Not in this layer: the parent, or zeros.
    Unallocated,
    /// Reads as zeros.
    Zero,
    /// Stored uncompressed at this host offset.
    Data(u64),
    /// Stored deflate-compressed: host offset and compressed length.
    Compressed(u64, u64),
}

/// A bounded FIFO cache of L2 tables keyed by host offset.
#[derive(Debug)]
struct L2Cache {
    tables: HashMap<u64, Arc<[u64]>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl L2Cache {
    fn get(&self, off: u64) -> Option<Arc<[u64]>> {
        self.tables.get(&off).cloned()
    }
    fn insert(&mut self, off: u64, t: Arc<[u64]>) {
        if self.tables.contains_key(&off) {
            return;
        }
        while self.tables.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.tables.remove(&old);
                }
                None => break,
            }
        }
        self.tables.insert(off, t);
        self.order.push_back(off);
    }
}

/// A qcow2 (version 2 or 3) image opened read-only.
///
/// Reads are positional and thread-safe; L2 tables are read on demand and a bounded number
/// is cached. Ranges this image does not hold read from the attached parent (see
/// [`DiskLayer::attach_parent`]) or as zeros.
pub struct Qcow2Image {
    file: Arc<dyn ReadAt>,
    header: Header,
    l1: Vec<u64>,
    l2_cache: Mutex<L2Cache>,
    parent: Option<Arc<dyn DiskLayer>>,
    limits: Limits,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("file_size", &self.file.size())
            .field("header", &self.header)
            .field("l1_entries", &self.l1.len())
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl Qcow2Image {
    /// Opens the qcow2 file at `path` read-only.
    pub fn open(path: &Path, limits: &Limits) -> Result<Self> {
        let f = FileReader::open(path).map_err(|e| Error::Io(cairn_io::Error::io(0, e)))?;
        Self::from_reader(Arc::new(f), limits)
    }

    /// Opens a qcow2 image held by any positional reader.
    pub fn from_reader(file: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        let header = header::parse(file.as_ref(), limits)?;
        if header.incompatible & INCOMPAT_DIRTY != 0 {
            tracing::warn!(
                "qcow2 image is marked dirty (not closed cleanly): refcounts may be stale; \
                 guest data is read as-is"
            );
        }
        if header.incompatible & INCOMPAT_CORRUPT != 0 {
            tracing::warn!("qcow2 image is marked corrupt by qemu; reading it read-only");
        }
        let cluster_size = header.cluster_size();
        let l2_entries = cluster_size / 8;
        let clusters = header.size.div_ceil(cluster_size);
        let needed = clusters.div_ceil(l2_entries);
        let entries = u64::from(header.l1_size);
        let l1_off = header.l1_table_offset;
        let bad_l1 = |reason| Error::BadL1 {
            offset: l1_off,
            entries,
            reason,
        };
        if entries < needed {
            return Err(bad_l1("too few entries for the virtual size"));
        }
        let l1_bytes = entries * 8;
        if l1_bytes > limits.max_table_bytes {
            return Err(bad_l1("larger than limits.max_table_bytes"));
        }
        let mut l1 = Vec::new();
        if needed > 0 {
            if l1_off % cluster_size != 0 || l1_off == 0 {
                return Err(bad_l1("offset is not cluster-aligned"));
            }
            // Only the entries that map the virtual size are used.
            let used = needed * 8;
            if l1_off.checked_add(used).is_none_or(|end| end > file.size()) {
                return Err(bad_l1("runs past the end of the file"));
            }
            // Bounded by max_table_bytes, checked above.
            let raw = file.read_vec_at(
                l1_off,
                usize::try_from(used).map_err(|_| bad_l1("too large"))?,
            )?;
            l1 = raw.chunks_exact(8).map(|c| u64_be(c, 0)).collect();
            for (i, e) in l1.iter().enumerate() {
                let l2 = e & OFFSET_MASK;
                if l2 == 0 {
                    continue;
                }
                let reason = if !l2.is_multiple_of(cluster_size) {
                    Some("not cluster-aligned")
                } else if l2
                    .checked_add(cluster_size)
                    .is_none_or(|end| end > file.size())
                {
                    Some("past the end of the file")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(Error::BadL2Offset {
                        index: i as u64,
                        l2_offset: l2,
                        reason,
                    });
                }
            }
        }
        let cache_bytes = L2_CACHE_BYTES.min(limits.max_table_bytes);
        let capacity = usize::try_from(cache_bytes / cluster_size)
            .unwrap_or(usize::MAX)
            .max(L2_CACHE_MIN_TABLES);
        Ok(Qcow2Image {
            file,
            header,
            l1,
            l2_cache: Mutex::new(L2Cache {
                tables: HashMap::new(),
                order: VecDeque::new(),
                capacity,
            }),
            parent: None,
            limits: limits.clone(),
        })
    }

    /// Header version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    /// The backing file name as written in the header.
    pub fn backing_file(&self) -> Option<&str> {
        self.header.backing_file.as_deref()
    }

    /// The backing file's format from the header extension (`qcow2`, `raw`...).
    pub fn backing_format(&self) -> Option<&str> {
        self.header.backing_format.as_deref()
    }

    /// Incompatible feature bit 0: the image was not closed cleanly (refcounts may be
    /// wrong; the guest data is still readable).
    pub fn is_dirty(&self) -> bool {
        self.header.incompatible & INCOMPAT_DIRTY != 0
    }

    /// Incompatible feature bit 1: qemu found a metadata inconsistency.
    pub fn is_corrupt(&self) -> bool {
        self.header.incompatible & INCOMPAT_CORRUPT != 0
    }

    /// Names from the feature name table: (type 0 incompatible / 1 compatible /
    /// 2 autoclear, bit, name).
    pub fn feature_names(&self) -> &[(u8, u8, String)] {
        &self.header.feature_names
    }

    /// The persistent dirty bitmaps stored in the image (qemu's `bitmaps` extension): each
    /// bitmap's map is `Data` where the bitmap marks the guest range dirty. A bitmap marked
    /// in-use (qemu did not close it) is not trustworthy: its map is all `Data` and
    /// [`DirtyBitmap::in_use`] is set. When the autoclear bit says the extension is stale
    /// (an older program wrote the image), no bitmap is returned.
    pub fn dirty_bitmaps(&self) -> Result<Vec<DirtyBitmap>> {
        match self.header.bitmaps {
            None => Ok(Vec::new()),
            Some(ext) if self.header.autoclear & header::AUTOCLEAR_BITMAPS == 0 => {
                tracing::warn!(
                    "qcow2 bitmaps extension at offset {} is stale (autoclear bit 0 clear); \
                     ignoring its bitmaps",
                    ext.ext_offset
                );
                Ok(Vec::new())
            }
            Some(ext) => bitmap::read_all(
                self.file.as_ref(),
                &ext,
                self.header.size,
                self.header.cluster_bits,
                &self.limits,
            ),
        }
    }

    fn l2_entries(&self) -> u64 {
        self.header.cluster_size() / 8
    }

    fn read_l2(&self, l2_off: u64) -> Result<Arc<[u64]>> {
        // The offset was checked against the file at open.
        let cs = usize::try_from(self.header.cluster_size()).unwrap_or(usize::MAX);
        let raw = self.file.read_vec_at(l2_off, cs)?;
        Ok(raw.chunks_exact(8).map(|c| u64_be(c, 0)).collect())
    }

    /// The L2 table for L1 index `l1_index`, or None when the L1 entry is empty.
    fn l2_table(&self, l1_index: u64) -> Result<Option<Arc<[u64]>>> {
        let Some(&e) = usize::try_from(l1_index).ok().and_then(|i| self.l1.get(i)) else {
            return Ok(None);
        };
        let off = e & OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if let Some(t) = self.lock_cache().get(off) {
            return Ok(Some(t));
        }
        let t = self.read_l2(off)?;
        self.lock_cache().insert(off, t.clone());
        Ok(Some(t))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, L2Cache> {
        // A panic while holding the lock cannot leave the cache inconsistent (inserts are
        // whole), so a poisoned lock is still usable.
        self.l2_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decodes one L2 entry of the cluster at `guest` (cluster-aligned).
    fn decode(&self, entry: u64, guest: u64) -> Result<Mapping> {
        let cb = self.header.cluster_bits;
        let cs = self.header.cluster_size();
        let fsize = self.file.size();
        let bad = |host_offset, reason| Error::BadL2Entry {
            guest_offset: guest,
            entry,
            host_offset,
            reason,
        };
        if entry & FLAG_COMPRESSED != 0 {
            // x = 62 - (cluster_bits - 8) bits of host offset, then the count of additional
            // 512-byte sectors.
            let csize_shift = 62 - (cb - 8);
            let csize_mask = (1u64 << (cb - 8)) - 1;
            let host = entry & ((1u64 << csize_shift) - 1);
            let sectors = ((entry >> csize_shift) & csize_mask) + 1;
            let len = sectors * SECTOR - (host % SECTOR);
            if host >= fsize {
                return Err(bad(host, "(compressed) is past the end of the file"));
            }
            // qemu never stores a compressed cluster larger than the cluster itself (it
            // writes those uncompressed), plus the partial first sector.
            if len > cs + SECTOR {
                return Err(Error::BadCompressedCluster {
                    guest_offset: guest,
                    host_offset: host,
                    compressed_len: len,
                    reason: format!("longer than the {cs}-byte cluster"),
                });
            }
            return Ok(Mapping::Compressed(host, len));
        }
        if entry & FLAG_ZERO != 0 {
            return Ok(Mapping::Zero);
        }
        let host = entry & OFFSET_MASK;
        if host == 0 {
            return Ok(Mapping::Unallocated);
        }
        if !host.is_multiple_of(cs) {
            return Err(bad(host, "is not cluster-aligned"));
        }
        if host >= fsize {
            return Err(bad(host, "is past the end of the file"));
        }
        Ok(Mapping::Data(host))
    }

    /// Maps the cluster holding guest offset `guest`, reusing `cur` (the last L2 table
    /// looked up) when it is the same table.
    fn lookup(&self, guest: u64, cur: &mut Option<(u64, Option<Arc<[u64]>>)>) -> Result<Mapping> {
        let cb = self.header.cluster_bits;
        let cluster = guest >> cb;
        let l1_index = cluster / self.l2_entries();
        let l2_index = cluster % self.l2_entries();
        if cur.as_ref().is_none_or(|(i, _)| *i != l1_index) {
            *cur = Some((l1_index, self.l2_table(l1_index)?));
        }
        let Some((_, Some(table))) = cur else {
            return Ok(Mapping::Unallocated);
        };
        let entry = usize::try_from(l2_index)
            .ok()
            .and_then(|i| table.get(i))
            .copied()
            .unwrap_or(0);
        self.decode(entry, cluster << cb)
    }

    fn inflate(&self, guest: u64, host: u64, len: u64) -> Result<Vec<u8>> {
        let cs = self.header.cluster_size();
        let bad = |reason: String| Error::BadCompressedCluster {
            guest_offset: guest,
            host_offset: host,
            compressed_len: len,
            reason,
        };
        // qemu may declare sectors past the end of the file for the last compressed
        // cluster; read what is there.
        let avail = len.min(self.file.size().saturating_sub(host));
        // avail <= cluster size + 512, bounded by max_unit_bytes via cluster_bits.
        let input = self.file.read_vec_at(
            host,
            usize::try_from(avail).map_err(|_| bad("too large".into()))?,
        )?;
        let mut out = vec![0u8; usize::try_from(cs).map_err(|_| bad("too large".into()))?];
        let produced = if self.header.compression_type == header::COMPRESSION_ZSTD {
            unzstd(&input, &mut out, cs).map_err(bad)?
        } else {
            let mut d = flate2::Decompress::new(false);
            d.decompress(&input, &mut out, flate2::FlushDecompress::Finish)
                .map_err(|e| bad(format!("deflate error: {e}")))?;
            d.total_out()
        };
        if produced != cs {
            return Err(bad(format!("inflates to {produced} bytes, expected {cs}")));
        }
        Ok(out)
    }

    /// Reads guest bytes `[offset, offset + buf.len())`, which must lie inside the disk.
    /// Contiguous chunks from one source (host file, parent, zeros) become one read.
    fn read_inner(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let cs = self.header.cluster_size();
        let mut cur = None;
        let mut pending: Option<Run> = None;
        let mut done = 0usize;
        while done < buf.len() {
            let guest = offset + done as u64;
            let in_cluster = guest % cs;
            let chunk = usize::try_from((cs - in_cluster).min((buf.len() - done) as u64))
                .unwrap_or(usize::MAX);
            let src = match self.lookup(guest, &mut cur)? {
                Mapping::Data(host) => Source::Host(host + in_cluster),
                Mapping::Unallocated if self.parent.is_some() => Source::Parent(guest),
                Mapping::Unallocated | Mapping::Zero => Source::Zero,
                Mapping::Compressed(host, len) => {
                    if let Some(run) = pending.take() {
                        self.flush(buf, run)?;
                    }
                    let data = self.inflate(guest - in_cluster, host, len)?;
                    let s = usize::try_from(in_cluster).unwrap_or(usize::MAX);
                    buf[done..done + chunk].copy_from_slice(&data[s..s + chunk]);
                    done += chunk;
                    continue;
                }
            };
            match &mut pending {
                Some(run) if run.continues_with(src, done) => run.len += chunk,
                _ => {
                    if let Some(run) = pending.take() {
                        self.flush(buf, run)?;
                    }
                    pending = Some(Run {
                        src,
                        buf_start: done,
                        len: chunk,
                    });
                }
            }
            done += chunk;
        }
        match pending {
            Some(run) => self.flush(buf, run),
            None => Ok(()),
        }
    }

    /// Performs one coalesced read.
    fn flush(&self, buf: &mut [u8], run: Run) -> Result<()> {
        let out = &mut buf[run.buf_start..run.buf_start + run.len];
        match (run.src, &self.parent) {
            (Source::Host(h), _) => read_padded(self.file.as_ref(), out, h),
            (Source::Parent(g), Some(p)) => read_padded(p.as_ref(), out, g),
            (Source::Zero, _) | (Source::Parent(_), None) => {
                out.fill(0);
                Ok(())
            }
        }
    }

    fn build_layer_map(&self) -> Result<AllocationMap> {
        let size = self.header.size;
        let cs = self.header.cluster_size();
        let span = cs * self.l2_entries();
        let mut map = AllocationMap::new(size);
        for (i, &e) in self.l1.iter().enumerate() {
            let off = e & OFFSET_MASK;
            if off == 0 {
                continue;
            }
            // Not cached: a map walk would evict the tables reads are using.
            let table = self.read_l2(off)?;
            let base = i as u64 * span;
            for (j, &entry) in table.iter().enumerate() {
                let guest = base + j as u64 * cs;
                if guest >= size {
                    break;
                }
                let kind = match self.decode(entry, guest)? {
                    Mapping::Unallocated => continue,
                    Mapping::Zero => RangeKind::Zero,
                    Mapping::Data(_) | Mapping::Compressed(..) => RangeKind::Data,
                };
                map.push(guest, cs.min(size - guest), kind)?;
            }
        }
        Ok(map.finish())
    }
}

/// The largest zstd window accepted for one cluster: a compressor that knows the input
/// size (qemu does) never needs a window above the cluster size; the slack covers zstd's
/// 1 KiB minimum and rounding.
fn max_zstd_window(cluster_size: u64) -> u64 {
    (cluster_size * 4).max(1 << 20)
}

/// The window (or, for single-segment frames, the content) size a zstd frame header
/// declares, so that a hostile header cannot make the decoder reserve a large buffer.
fn zstd_window(input: &[u8]) -> Result<u64, String> {
    if input.len() < 6 || input[0..4] != [0x28, 0xb5, 0x2f, 0xfd] {
        return Err("no zstd frame magic".into());
    }
    let fhd = input[4];
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = input[5];
        let log = 10 + u64::from(wd >> 3);
        if log > 41 {
            return Err(format!("zstd window log {log}"));
        }
        let base = 1u64 << log;
        return Ok(base + (base / 8) * u64::from(wd & 7));
    }
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(fhd >> 6)];
    let at = 5 + dict_len;
    let fcs = input
        .get(at..at + fcs_len)
        .ok_or_else(|| "truncated zstd frame header".to_string())?;
    let mut v = [0u8; 8];
    v[..fcs_len].copy_from_slice(fcs);
    let n = u64::from_le_bytes(v);
    Ok(if fcs_len == 2 { n + 256 } else { n })
}

/// Decompresses one zstd frame into `out` (one cluster); returns the bytes produced.
fn unzstd(input: &[u8], out: &mut [u8], cluster_size: u64) -> Result<u64, String> {
    use std::io::Read;
    let window = zstd_window(input)?;
    if window > max_zstd_window(cluster_size) {
        return Err(format!(
            "zstd window of {window} bytes is too large for a cluster"
        ));
    }
    let mut src = input;
    let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut src)
        .map_err(|e| format!("zstd frame header: {e}"))?;
    let mut done = 0usize;
    while done < out.len() {
        match dec.read(&mut out[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => return Err(format!("zstd error: {e}")),
        }
    }
    Ok(done as u64)
}

/// Where a coalesced run reads from (offset of its first byte).
#[derive(Debug, Clone, Copy)]
enum Source {
    Host(u64),
    Parent(u64),
    Zero,
}

/// A run of chunks from one contiguous source, read with one call.
#[derive(Debug, Clone, Copy)]
struct Run {
    src: Source,
    buf_start: usize,
    len: usize,
}

impl Run {
    /// Whether a chunk from `next` at buffer position `buf_pos` continues this run.
    fn continues_with(&self, next: Source, buf_pos: usize) -> bool {
        if self.buf_start + self.len != buf_pos {
            return false;
        }
        let l = self.len as u64;
        match (self.src, next) {
            (Source::Host(h), Source::Host(n)) => h + l == n,
            (Source::Parent(g), Source::Parent(n)) => g + l == n,
            (Source::Zero, Source::Zero) => true,
            _ => false,
        }
    }
}

/// Reads `buf.len()` bytes at `offset`; bytes past the source's end read as zeros (a
/// parent smaller than the child, or a last cluster qemu did not fully write).
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

impl ReadAt for Qcow2Image {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        let size = self.header.size;
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

impl DiskLayer for Qcow2Image {
    fn format(&self) -> &'static str {
        "qcow2"
    }

    fn subformat(&self) -> String {
        format!("v{}", self.header.version)
    }

    fn identity(&self) -> DiskIdentity {
        DiskIdentity::default()
    }

    fn parent_link(&self) -> Option<ParentLink> {
        self.header.backing_file.as_ref().map(|b| ParentLink {
            hints: vec![b.clone()],
            expect: ParentExpectation::Nothing,
        })
    }

    fn attach_parent(
        &mut self,
        parent: Arc<dyn DiskLayer>,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.header.backing_file.is_none() {
            return Err("qcow2 image has no backing file; it takes no parent".into());
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
