//! Reading an attribute's value as a byte stream: resident, non-resident, sparse and
//! LZNT1-compressed, plus its volume extents.

use std::sync::{Arc, Mutex};

use cairn_io::ReadAt;
use cairn_vfs::FileExtent;

use crate::error::{Error, Result};
use crate::lznt1;
use crate::runs::DataRun;

/// Largest compression unit decompressed at once (16 clusters of 64 KiB). Windows only
/// compresses volumes with clusters up to 4 KiB (64 KiB units).
pub(crate) const MAX_COMPRESSION_UNIT_BYTES: u64 = 1 << 20;

/// Where a stream's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Layout {
    Resident {
        data: Arc<Vec<u8>>,
        /// Volume offset of the value, when known (for extents()).
        volume_offset: Option<u64>,
    },
    NonResident {
        runs: Arc<Vec<DataRun>>,
        data_size: u64,
        initialized_size: u64,
        /// Compression unit in clusters, for compressed streams.
        compression_unit: Option<u64>,
    },
}

/// Identifies a stream in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamOrigin {
    pub record: u64,
    pub attr_type: u32,
}

/// A stream's bytes, read positionally.
pub(crate) struct StreamReader {
    vol: Arc<dyn ReadAt>,
    cluster_size: u64,
    layout: Layout,
    origin: StreamOrigin,
    /// The last decompressed unit (index, bytes): sequential reads decompress each unit once.
    cache: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("cluster_size", &self.cluster_size)
            .field("layout", &self.layout)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn io_err(e: Error) -> cairn_io::Error {
    match e {
        Error::Io(io) => io,
        other => cairn_io::Error::io(
            0,
            std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        ),
    }
}

impl StreamReader {
    pub(crate) fn new(
        vol: Arc<dyn ReadAt>,
        cluster_size: u64,
        layout: Layout,
        origin: StreamOrigin,
    ) -> Result<StreamReader> {
        if let Layout::NonResident {
            compression_unit: Some(cu),
            ..
        } = &layout
        {
            let bytes = cu.saturating_mul(cluster_size);
            if bytes > MAX_COMPRESSION_UNIT_BYTES || *cu == 0 {
                return Err(Error::LimitExceeded {
                    what: "compression unit bytes",
                    value: bytes,
                    limit: MAX_COMPRESSION_UNIT_BYTES,
                });
            }
        }
        Ok(StreamReader {
            vol,
            cluster_size,
            layout,
            origin,
            cache: Mutex::new(None),
        })
    }

    fn unmapped(&self, vcn: u64) -> Error {
        Error::BadRunList {
            record: self.origin.record,
            attr_type: self.origin.attr_type,
            reason: format!("vcn {vcn} is inside the data but not mapped by any run"),
        }
    }

    /// The run holding `vcn`, if any.
    fn run_at(runs: &[DataRun], vcn: u64) -> Option<&DataRun> {
        let i = runs.partition_point(|r| r.vcn.saturating_add(r.len) <= vcn);
        runs.get(i).filter(|r| r.vcn <= vcn)
    }

    /// Reads `buf.len()` bytes of the stream at `offset` (the caller clipped to the size).
    pub(crate) fn read_stream(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        match &self.layout {
            Layout::Resident { data, .. } => {
                let Ok(start) = usize::try_from(offset) else {
                    return Ok(0);
                };
                if start >= data.len() {
                    return Ok(0);
                }
                let n = buf.len().min(data.len() - start);
                buf[..n].copy_from_slice(&data[start..start + n]);
                Ok(n)
            }
            Layout::NonResident {
                runs,
                data_size,
                initialized_size,
                compression_unit,
            } => {
                if offset >= *data_size {
                    return Ok(0);
                }
                let want = usize::try_from((*data_size - offset).min(buf.len() as u64))
                    .unwrap_or(buf.len());
                let buf = &mut buf[..want];
                match compression_unit {
                    None => self.read_plain(runs, *initialized_size, buf, offset)?,
                    Some(cu) => self.read_compressed(runs, *cu, buf, offset)?,
                }
                Ok(want)
            }
        }
    }

    fn read_plain(&self, runs: &[DataRun], init: u64, buf: &mut [u8], offset: u64) -> Result<()> {
        let cs = self.cluster_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let rest = buf.len() - done;
            if pos >= init {
                buf[done..].fill(0);
                break;
            }
            let vcn = pos / cs;
            let run = Self::run_at(runs, vcn).ok_or_else(|| self.unmapped(vcn))?;
            let run_end = run.vcn.saturating_add(run.len).saturating_mul(cs);
            let n =
                usize::try_from((run_end - pos).min(init - pos).min(rest as u64)).unwrap_or(rest);
            let out = &mut buf[done..done + n];
            match run.lcn {
                Some(lcn) => {
                    let vol_off = (lcn + (vcn - run.vcn)) * cs + pos % cs;
                    self.vol.read_exact_at(out, vol_off)?;
                }
                None => out.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Clusters of unit `[vcn0, vcn0 + cu)`: list of (lcn or None, count), in order.
    fn unit_map(&self, runs: &[DataRun], vcn0: u64, cu: u64) -> Vec<(Option<u64>, u64)> {
        let mut out = Vec::new();
        let mut vcn = vcn0;
        let end = vcn0 + cu;
        while vcn < end {
            match Self::run_at(runs, vcn) {
                Some(r) => {
                    let n = (r.vcn + r.len).min(end) - vcn;
                    out.push((r.lcn.map(|l| l + (vcn - r.vcn)), n));
                    vcn += n;
                }
                None => {
                    // Past the last run: the unit's tail is unallocated (sparse).
                    out.push((None, end - vcn));
                    vcn = end;
                }
            }
        }
        out
    }

    /// The decompressed bytes of unit `u`.
    fn unit_bytes(&self, runs: &[DataRun], cu: u64, u: u64) -> Result<Arc<Vec<u8>>> {
        if let Ok(guard) = self.cache.lock() {
            if let Some((idx, bytes)) = guard.as_ref() {
                if *idx == u {
                    return Ok(Arc::clone(bytes));
                }
            }
        }
        let cs = self.cluster_size;
        let unit_bytes = cu * cs;
        let unit_usize = usize::try_from(unit_bytes).unwrap_or(usize::MAX);
        let vcn0 = u * cu;
        let map = self.unit_map(runs, vcn0, cu);
        let allocated: u64 = map
            .iter()
            .filter(|(l, _)| l.is_some())
            .map(|(_, n)| n)
            .sum();
        let unit_start = vcn0 * cs;
        let mut out = vec![0u8; unit_usize];
        if allocated == 0 {
            // Whole unit sparse: zeros.
        } else if allocated == cu {
            // Every cluster allocated: stored raw (compression did not gain a cluster).
            let mut pos = 0usize;
            for (lcn, n) in &map {
                let len = usize::try_from(n * cs).unwrap_or(usize::MAX);
                if let Some(l) = lcn {
                    self.vol.read_exact_at(&mut out[pos..pos + len], l * cs)?;
                }
                pos += len;
            }
        } else {
            let mut comp = vec![0u8; usize::try_from(allocated * cs).unwrap_or(usize::MAX)];
            let mut pos = 0usize;
            for (lcn, n) in &map {
                if let Some(l) = lcn {
                    let len = usize::try_from(n * cs).unwrap_or(usize::MAX);
                    self.vol.read_exact_at(&mut comp[pos..pos + len], l * cs)?;
                    pos += len;
                }
            }
            lznt1::decompress(&comp, &mut out).map_err(|e| Error::BadCompression {
                offset: unit_start,
                reason: e.to_string(),
            })?;
        }
        let out = Arc::new(out);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((u, Arc::clone(&out)));
        }
        Ok(out)
    }

    fn read_compressed(
        &self,
        runs: &[DataRun],
        cu: u64,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<()> {
        let unit_bytes = cu * self.cluster_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let u = pos / unit_bytes;
            let within = usize::try_from(pos % unit_bytes).unwrap_or(0);
            let bytes = self.unit_bytes(runs, cu, u)?;
            let n = (bytes.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// Where the stream's bytes lie on the volume, covering `[0, size)`.
    pub(crate) fn extents(&self) -> Vec<FileExtent> {
        let mut out: Vec<FileExtent> = Vec::new();
        let mut push = |e: FileExtent| {
            if e.len == 0 {
                return;
            }
            if let Some(last) = out.last_mut() {
                let contiguous = match (last.volume_offset, e.volume_offset) {
                    (Some(a), Some(b)) => a + last.len == b,
                    (None, None) => true,
                    _ => false,
                };
                if contiguous
                    && !last.encoded
                    && !e.encoded
                    && last.file_offset + last.len == e.file_offset
                {
                    last.len += e.len;
                    return;
                }
            }
            out.push(e);
        };
        let cs = self.cluster_size;
        match &self.layout {
            Layout::Resident {
                data,
                volume_offset,
            } => {
                push(FileExtent {
                    file_offset: 0,
                    len: data.len() as u64,
                    volume_offset: *volume_offset,
                    encoded: true,
                });
            }
            Layout::NonResident {
                runs,
                data_size,
                initialized_size,
                compression_unit: None,
            } => {
                let mut covered = 0u64;
                for r in runs.iter() {
                    let start = r.vcn.saturating_mul(cs);
                    if start >= *data_size {
                        break;
                    }
                    let end = r
                        .vcn
                        .saturating_add(r.len)
                        .saturating_mul(cs)
                        .min(*data_size);
                    // Bytes past the initialized size read as zeros.
                    let init_end = end.min(*initialized_size).max(start);
                    if init_end > start {
                        push(FileExtent {
                            file_offset: start,
                            len: init_end - start,
                            volume_offset: r.lcn.map(|l| l * cs),
                            encoded: false,
                        });
                    }
                    if end > init_end {
                        push(FileExtent {
                            file_offset: init_end,
                            len: end - init_end,
                            volume_offset: None,
                            encoded: false,
                        });
                    }
                    covered = end;
                }
                if covered < *data_size {
                    push(FileExtent {
                        file_offset: covered,
                        len: data_size - covered,
                        volume_offset: None,
                        encoded: false,
                    });
                }
            }
            Layout::NonResident {
                runs,
                data_size,
                compression_unit: Some(cu),
                ..
            } => {
                let unit_bytes = cu * cs;
                // Units past the last run are holes: one extent covers them all, so a hostile
                // data size cannot make this loop long.
                let mapped_end = runs.last().map_or(0, |r| r.vcn.saturating_add(r.len));
                let units = data_size.div_ceil(unit_bytes).min(mapped_end.div_ceil(*cu));
                let mut u = 0u64;
                while u < units {
                    let start = u * unit_bytes;
                    // A long sparse run: one hole extent up to its last whole unit, so the
                    // loop is bounded by the number of runs, not by their lengths.
                    if let Some(r) = Self::run_at(runs, u * cu) {
                        let whole_end = r.vcn.saturating_add(r.len) / cu;
                        if r.lcn.is_none() && whole_end > u + 1 {
                            let next = whole_end.min(units);
                            let end = (next * unit_bytes).min(*data_size);
                            push(FileExtent {
                                file_offset: start,
                                len: end - start,
                                volume_offset: None,
                                encoded: false,
                            });
                            u = next;
                            continue;
                        }
                    }
                    let len = (data_size - start).min(unit_bytes);
                    let map = self.unit_map(runs, u * cu, *cu);
                    let allocated: u64 = map
                        .iter()
                        .filter(|(l, _)| l.is_some())
                        .map(|(_, n)| n)
                        .sum();
                    if allocated == 0 {
                        push(FileExtent {
                            file_offset: start,
                            len,
                            volume_offset: None,
                            encoded: false,
                        });
                    } else if allocated == *cu {
                        let mut pos = start;
                        for (lcn, n) in &map {
                            if pos >= start + len {
                                break;
                            }
                            let l = (n * cs).min(start + len - pos);
                            push(FileExtent {
                                file_offset: pos,
                                len: l,
                                volume_offset: lcn.map(|c| c * cs),
                                encoded: false,
                            });
                            pos += l;
                        }
                    } else {
                        let first = map.iter().find_map(|(l, _)| *l).map(|c| c * cs);
                        push(FileExtent {
                            file_offset: start,
                            len,
                            volume_offset: first,
                            encoded: true,
                        });
                    }
                    u += 1;
                }
                let covered = (units * unit_bytes).min(*data_size);
                if covered < *data_size {
                    push(FileExtent {
                        file_offset: covered,
                        len: data_size - covered,
                        volume_offset: None,
                        encoded: false,
                    });
                }
            }
        }
        out
    }
}

impl ReadAt for StreamReader {
    fn size(&self) -> u64 {
        match &self.layout {
            Layout::Resident { data, .. } => data.len() as u64,
            Layout::NonResident { data_size, .. } => *data_size,
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.read_stream(buf, offset).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(vol: Vec<u8>, runs: Vec<DataRun>, size: u64, cu: Option<u64>) -> StreamReader {
        StreamReader::new(
            Arc::new(vol),
            512,
            Layout::NonResident {
                runs: Arc::new(runs),
                data_size: size,
                initialized_size: size,
                compression_unit: cu,
            },
            StreamOrigin {
                record: 64,
                attr_type: 0x80,
            },
        )
        .unwrap()
    }

    #[test]
    fn huge_sparse_compressed_stream_is_cheap() {
        let vol: Vec<u8> = (0..32 * 512)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let runs = vec![
            DataRun {
                vcn: 0,
                len: 16,
                lcn: Some(1),
            },
            DataRun {
                vcn: 16,
                len: 1 << 50,
                lcn: None,
            },
        ];
        let size = (16 + (1u64 << 50)) * 512;
        let r = reader(vol.clone(), runs, size, Some(16));
        let ext = r.extents();
        assert_eq!(ext.len(), 2, "{ext:?}");
        assert_eq!(
            (ext[0].volume_offset, ext[0].len, ext[0].encoded),
            (Some(512), 16 * 512, false)
        );
        assert_eq!(
            (ext[1].volume_offset, ext[1].file_offset + ext[1].len),
            (None, size)
        );
        let mut buf = [0xAAu8; 100];
        r.read_stream(&mut buf, 1 << 40).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        r.read_stream(&mut buf, 10).unwrap();
        assert_eq!(&buf[..], &vol[522..622]);
    }

    #[test]
    fn unmapped_vcn_is_an_error_and_init_size_zeros() {
        let vol = vec![7u8; 8 * 512];
        let r = reader(
            vol.clone(),
            vec![DataRun {
                vcn: 0,
                len: 2,
                lcn: Some(2),
            }],
            4 * 512,
            None,
        );
        let mut buf = [0u8; 512];
        assert!(matches!(
            r.read_stream(&mut buf, 3 * 512),
            Err(Error::BadRunList { record: 64, .. })
        ));
        let r = StreamReader::new(
            Arc::new(vol),
            512,
            Layout::NonResident {
                runs: Arc::new(vec![DataRun {
                    vcn: 0,
                    len: 2,
                    lcn: Some(2),
                }]),
                data_size: 1024,
                initialized_size: 600,
                compression_unit: None,
            },
            StreamOrigin {
                record: 64,
                attr_type: 0x80,
            },
        )
        .unwrap();
        let mut buf = [1u8; 1024];
        assert_eq!(r.read_stream(&mut buf, 0).unwrap(), 1024);
        assert!(buf[..600].iter().all(|&b| b == 7) && buf[600..].iter().all(|&b| b == 0));
        let ext = r.extents();
        assert_eq!(
            ext.last().map(|e| (e.file_offset, e.volume_offset)),
            Some((600, None))
        );
    }
}
