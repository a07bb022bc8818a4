//! A file's bytes read straight from its volume through the extents its catalog entry
//! records: restoring one file reads only the volume ranges (so only the repository chunks)
//! that hold it, without opening the guest file system.

use std::sync::Arc;

use cairn_io::ReadAt;

use crate::blob::{Entry, Extent, Kind};

/// A regular file's main data as a [`ReadAt`]: extents mapped onto the volume (which starts
/// at `volume_start` of `disk`), holes read as zeros.
pub struct ExtentReader {
    disk: Arc<dyn ReadAt>,
    volume_start: u64,
    volume_size: u64,
    size: u64,
    extents: Vec<Extent>,
}

impl std::fmt::Debug for ExtentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtentReader")
            .field("size", &self.size)
            .field("extents", &self.extents.len())
            .finish_non_exhaustive()
    }
}

impl ExtentReader {
    /// A reader of `entry`'s data, or `None` when the catalog alone cannot give it: not a
    /// regular file, excluded from the backup, incomplete (an error was recorded), encoded
    /// (NTFS compression, ext inline data), extents that do not tile `[0, size)` in order, or
    /// a range outside the volume (`volume_size` bytes at `volume_start` of `disk`). The
    /// caller then reads the file through the guest file system.
    pub fn new(
        disk: Arc<dyn ReadAt>,
        volume_start: u64,
        volume_size: u64,
        entry: &Entry,
    ) -> Option<ExtentReader> {
        if entry.kind != Kind::File || entry.excluded || entry.error.is_some() {
            return None;
        }
        let mut next = 0u64;
        for x in &entry.extents {
            if x.encoded || x.file_offset != next || x.len == 0 {
                return None;
            }
            if let Some(v) = x.volume_offset {
                let end = v.checked_add(x.len)?;
                if end > volume_size || volume_start.checked_add(end)? > disk.size() {
                    return None;
                }
            }
            next = next.checked_add(x.len)?;
        }
        // Extents may run past the size (whole blocks), never short of it.
        if next < entry.size {
            return None;
        }
        Some(ExtentReader {
            disk,
            volume_start,
            volume_size,
            size: entry.size,
            extents: entry.extents.clone(),
        })
    }
}

impl ReadAt for ExtentReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        // The extent holding `offset` (extents tile the file in order).
        let i = self
            .extents
            .partition_point(|x| x.file_offset + x.len <= offset);
        let Some(x) = self.extents.get(i) else {
            return Ok(0);
        };
        let within = offset - x.file_offset;
        let n = (x.len - within)
            .min(self.size - offset)
            .min(buf.len() as u64);
        let n = usize::try_from(n).unwrap_or(buf.len());
        match x.volume_offset {
            None => buf[..n].fill(0),
            Some(v) => {
                debug_assert!(v + x.len <= self.volume_size);
                self.disk
                    .read_exact_at(&mut buf[..n], self.volume_start + v + within)?;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_extents_and_holes() {
        let disk: Arc<dyn ReadAt> = Arc::new((0..=255u8).cycle().take(4096).collect::<Vec<u8>>());
        let mut e = Entry::new("f", Kind::File, 10);
        e.extents = vec![
            Extent {
                file_offset: 0,
                len: 4,
                volume_offset: Some(100),
                encoded: false,
            },
            Extent {
                file_offset: 4,
                len: 2,
                volume_offset: None,
                encoded: false,
            },
            Extent {
                file_offset: 6,
                len: 8,
                volume_offset: Some(10),
                encoded: false,
            },
        ];
        let r = ExtentReader::new(disk.clone(), 1000, 2000, &e).unwrap();
        let mut buf = [0xffu8; 10];
        r.read_exact_at(&mut buf, 0).unwrap();
        let b = |o: usize| u8::try_from((1000 + o) % 256).unwrap();
        assert_eq!(
            buf,
            [
                b(100),
                b(101),
                b(102),
                b(103),
                0,
                0,
                b(10),
                b(11),
                b(12),
                b(13)
            ]
        );
        // Encoded, gaps and ranges outside the volume fall back to the file system.
        e.extents[2].encoded = true;
        assert!(ExtentReader::new(disk.clone(), 1000, 2000, &e).is_none());
        e.extents[2].encoded = false;
        e.extents[2].file_offset = 7;
        assert!(ExtentReader::new(disk.clone(), 1000, 2000, &e).is_none());
        e.extents[2].file_offset = 6;
        assert!(ExtentReader::new(disk.clone(), 1000, 15, &e).is_none());
        e.size = 20;
        assert!(ExtentReader::new(disk, 1000, 2000, &e).is_none());
    }
}
