//! The VHDX metadata log, replayed in memory.
//!
//! When the header's `LogGuid` is set, the file was not closed cleanly and the log holds
//! metadata (and possibly data) writes that may not have reached their places. The
//! specification requires replaying it before reading anything. Cairn never writes a source
//! image, so the replay builds an overlay: the file as it would be after replay, served from
//! the original bytes plus the logged writes.
//!
//! The active sequence is found as qemu does: the log is scanned 4 KiB by 4 KiB, each valid
//! entry starts a chain of entries with consecutive sequence numbers, and the chain ending
//! with the highest sequence number is replayed in order.

use std::sync::Arc;

use cairn_io::le::{u32_le, u64_le};
use cairn_io::{Limits, ReadAt};

use crate::format::{crc32c_with_zeroed_field, Header, MIB};
use crate::guid::Guid;
use crate::{Error, Result};

/// Log entries and their parts are laid out in 4 KiB sectors.
const SECTOR: u64 = 4096;
const ENTRY_HEADER_LEN: usize = 64;
const DESCRIPTOR_LEN: usize = 32;

/// One logged write: `len` bytes at `offset`, either zeros or `data`.
#[derive(Debug, Clone)]
struct Write {
    offset: u64,
    len: u64,
    /// Offset into [`Overlay::arena`], or None for zeros.
    data: Option<usize>,
}

/// The file as it is after the log replay.
struct Overlay {
    base: Arc<dyn ReadAt>,
    size: u64,
    writes: Vec<Write>,
    arena: Vec<u8>,
    /// Smallest start and largest end of any write, to skip the scan for most reads.
    span: (u64, u64),
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("size", &self.size)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl ReadAt for Overlay {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = usize::try_from(self.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let buf = &mut buf[..n];
        // Base bytes first (zeros past the original end: the log may grow the file).
        self.base.read_zero_padded_at(buf, offset)?;
        let end = offset + n as u64;
        if end <= self.span.0 || offset >= self.span.1 {
            return Ok(n);
        }
        // Then the logged writes, in log order, so later ones win.
        for w in &self.writes {
            let s = w.offset.max(offset);
            let e = (w.offset + w.len).min(end);
            if s >= e {
                continue;
            }
            let dst = &mut buf[usize::try_from(s - offset).unwrap_or(0)
                ..usize::try_from(e - offset).unwrap_or(0)];
            match w.data {
                None => dst.fill(0),
                Some(a) => {
                    let from = a + usize::try_from(s - w.offset).unwrap_or(0);
                    dst.copy_from_slice(&self.arena[from..from + dst.len()]);
                }
            }
        }
        Ok(n)
    }
}

/// A checked log entry: where it is, how long, its writes.
struct Entry {
    length: u64,
    sequence: u64,
    flushed_file_offset: u64,
    last_file_offset: u64,
    /// (file offset, length, Some(4 KiB sector) | None for zeros)
    writes: Vec<(u64, u64, Option<Vec<u8>>)>,
}

/// Reads `len` bytes of the circular log starting at `pos`.
fn log_bytes(log: &[u8], pos: u64, len: u64) -> Option<Vec<u8>> {
    let total = log.len() as u64;
    if len > total {
        return None;
    }
    let p = usize::try_from(pos % total).ok()?;
    let l = usize::try_from(len).ok()?;
    let mut v = Vec::with_capacity(l);
    let first = l.min(log.len() - p);
    v.extend_from_slice(&log[p..p + first]);
    v.extend_from_slice(&log[..l - first]);
    Some(v)
}

/// Parses and checks the entry at `pos`; None when it is not a valid entry of this log.
fn parse_entry(log: &[u8], pos: u64, guid: Guid) -> Option<Entry> {
    let hdr = log_bytes(log, pos, SECTOR)?;
    if &hdr[0..4] != b"loge" || Guid::from_disk(&hdr[32..48]) != guid {
        return None;
    }
    let length = u64::from(u32_le(&hdr, 8));
    if length == 0 || length % SECTOR != 0 || length > log.len() as u64 {
        return None;
    }
    let sequence = u64_le(&hdr, 16);
    let count = usize::try_from(u32_le(&hdr, 24)).ok()?;
    let desc_sectors = (ENTRY_HEADER_LEN as u64)
        .checked_add((count as u64).checked_mul(DESCRIPTOR_LEN as u64)?)?
        .div_ceil(SECTOR);
    if desc_sectors * SECTOR > length {
        return None;
    }
    let entry = log_bytes(log, pos, length)?;
    if u32_le(&entry, 4) != crc32c_with_zeroed_field(&entry, 4) {
        return None;
    }
    let mut writes = Vec::new();
    let mut data_sector = usize::try_from(desc_sectors * SECTOR).ok()?;
    for i in 0..count {
        let d = &entry
            [ENTRY_HEADER_LEN + i * DESCRIPTOR_LEN..ENTRY_HEADER_LEN + (i + 1) * DESCRIPTOR_LEN];
        let file_offset = u64_le(d, 16);
        if u64_le(d, 24) != sequence || !file_offset.is_multiple_of(SECTOR) {
            return None;
        }
        match &d[0..4] {
            b"zero" => {
                let len = u64_le(d, 8);
                if !len.is_multiple_of(SECTOR) {
                    return None;
                }
                writes.push((file_offset, len, None));
            }
            b"desc" => {
                let s = entry.get(data_sector..data_sector + 4096)?;
                let seq_high = u64::from(u32_le(s, 4));
                let seq_low = u64::from(u32_le(s, 4092));
                if &s[0..4] != b"data" || (seq_high << 32 | seq_low) != sequence {
                    return None;
                }
                // The sector's first 8 and last 4 bytes live in the descriptor.
                let mut sector = s.to_vec();
                sector[0..8].copy_from_slice(&d[8..16]);
                sector[4092..4096].copy_from_slice(&d[4..8]);
                writes.push((file_offset, SECTOR, Some(sector)));
                data_sector += 4096;
            }
            _ => return None,
        }
    }
    Some(Entry {
        length,
        sequence,
        flushed_file_offset: u64_le(&hdr, 48),
        last_file_offset: u64_le(&hdr, 56),
        writes,
    })
}

/// Replays the log of `header` over `file` in memory and returns the replayed view.
pub(crate) fn replay(
    file: Arc<dyn ReadAt>,
    header: &Header,
    limits: &Limits,
) -> Result<Arc<dyn ReadAt>> {
    let dirty = |reason: String| Error::DirtyLog {
        offset: header.log_offset,
        length: header.log_length,
        reason,
    };
    let off = header.log_offset;
    let len = u64::from(header.log_length);
    if off < MIB || !off.is_multiple_of(MIB) || len == 0 || len % MIB != 0 {
        return Err(dirty(
            "the log offset or length is not a non-zero multiple of 1 MiB".into(),
        ));
    }
    if off.checked_add(len).is_none_or(|e| e > file.size()) {
        return Err(dirty("the log runs past the end of the file".into()));
    }
    if len > limits.max_table_bytes {
        return Err(dirty(
            "the log is larger than limits.max_table_bytes".into(),
        ));
    }
    // Bounded by max_table_bytes above.
    let log = file.read_vec_at(
        off,
        usize::try_from(len).map_err(|_| dirty("too large".into()))?,
    )?;

    // Find the chain of consecutive entries that ends with the highest sequence number.
    let mut best: Option<Vec<Entry>> = None;
    let mut pos = 0u64;
    while pos < len {
        let Some(first) = parse_entry(&log, pos, header.log_guid) else {
            pos += SECTOR;
            continue;
        };
        let start = pos;
        let mut chain_len = first.length;
        let mut chain = vec![first];
        // A chain never covers more than the whole log.
        while chain_len < len {
            let last = chain.last().map_or(0, |e| e.sequence);
            match parse_entry(&log, start + chain_len, header.log_guid) {
                Some(e) if e.sequence == last.wrapping_add(1) && chain_len + e.length <= len => {
                    chain_len += e.length;
                    chain.push(e);
                }
                _ => break,
            }
        }
        let head = chain.last().map_or(0, |e| e.sequence);
        if best
            .as_ref()
            .is_none_or(|b| b.last().map_or(0, |e| e.sequence) < head)
        {
            best = Some(chain);
        }
        // Entries inside this chain cannot start a longer one ending higher.
        pos = start + chain_len.min(len - start).max(SECTOR);
    }
    let Some(chain) = best else {
        // No valid entry: the log is empty and nothing needs replaying.
        tracing::warn!("VHDX log GUID is set but the log holds no valid entry; nothing replayed");
        return Ok(file);
    };
    let head = chain.last().ok_or_else(|| dirty("empty chain".into()))?;
    if file.size() < head.flushed_file_offset {
        return Err(dirty(format!(
            "the file ({} bytes) is shorter than the log's flushed file offset {}",
            file.size(),
            head.flushed_file_offset
        )));
    }
    let size_cap = file.size().saturating_add(limits.max_virtual_size);
    if head.last_file_offset > size_cap {
        return Err(dirty(format!(
            "last file offset {} is implausibly large",
            head.last_file_offset
        )));
    }
    let size = file.size().max(head.last_file_offset);
    let mut writes = Vec::new();
    let mut arena = Vec::new();
    let mut span = (u64::MAX, 0u64);
    for e in chain {
        for (o, l, data) in e.writes {
            if o.checked_add(l).is_none_or(|end| end > size) {
                return Err(dirty(format!(
                    "a logged write at {o} (+{l}) runs past the file end {size}"
                )));
            }
            if l == 0 {
                continue;
            }
            span = (span.0.min(o), span.1.max(o + l));
            let data = data.map(|d| {
                arena.extend_from_slice(&d);
                arena.len() - d.len()
            });
            writes.push(Write {
                offset: o,
                len: l,
                data,
            });
        }
    }
    tracing::info!(
        "replayed the VHDX log in memory: {} writes, file size {size}",
        writes.len()
    );
    Ok(Arc::new(Overlay {
        base: file,
        size,
        writes,
        arena,
        span,
    }))
}
