//! Readers over a file's data: mapped blocks (holes and unwritten extents read as zeros)
//! or inline bytes.

use std::sync::Arc;

use cairn_io::ReadAt;

use crate::map::MapRun;

/// The bytes of one ext file, read through its block map.
pub(crate) struct MappedFile {
    pub src: Arc<dyn ReadAt>,
    pub block_size: u64,
    pub size: u64,
    /// Sorted, non-overlapping, within `size` (checked when the map was built).
    pub runs: Vec<MapRun>,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("size", &self.size)
            .field("runs", &self.runs.len())
            .finish()
    }
}

impl ReadAt for MappedFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let want = usize::try_from(self.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let bs = self.block_size;
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let lblk = pos / bs;
            let idx = self.runs.partition_point(|r| r.end() <= lblk);
            let left = want - done;
            let (n, src_off) = match self.runs.get(idx) {
                Some(r) if r.lblk <= lblk => {
                    let run_end = r.end() * bs;
                    let n = usize::try_from(run_end - pos)
                        .unwrap_or(usize::MAX)
                        .min(left);
                    let off = (!r.uninit).then(|| r.pblk * bs + (pos - r.lblk * bs));
                    (n, off)
                }
                Some(r) => {
                    let n = usize::try_from(r.lblk * bs - pos)
                        .unwrap_or(usize::MAX)
                        .min(left);
                    (n, None)
                }
                None => (left, None),
            };
            let chunk = &mut buf[done..done + n];
            match src_off {
                Some(o) => self.src.read_exact_at(chunk, o)?,
                None => chunk.fill(0),
            }
            done += n;
        }
        Ok(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Reads through random maps equal a byte-by-byte model.
        #[test]
        fn reads_match_model(
            pieces in proptest::collection::vec((0u64..4, 1u64..4, 0u64..16, any::<bool>()), 0..6),
            size in 0u64..200,
            offset in 0u64..220,
            len in 0usize..100,
        ) {
            let bs = 8u64;
            let vol: Vec<u8> = (0..=255u8).collect();
            let mut runs = Vec::new();
            let mut lblk = 0;
            for (gap, n, pblk, uninit) in pieces {
                lblk += gap;
                runs.push(MapRun { lblk, len: n, pblk, uninit });
                lblk += n;
            }
            let model = |pos: u64| -> u8 {
                let b = pos / bs;
                for r in &runs {
                    if r.lblk <= b && b < r.end() && !r.uninit {
                        return vol[usize::try_from(r.pblk * bs + pos - r.lblk * bs).unwrap()];
                    }
                }
                0
            };
            let f = MappedFile { src: Arc::new(vol.clone()), block_size: bs, size, runs: runs.clone() };
            let mut buf = vec![0xEEu8; len];
            let n = f.read_at(&mut buf, offset).unwrap();
            let want = usize::try_from(size.saturating_sub(offset)).unwrap().min(len);
            prop_assert_eq!(n, want);
            for (i, &b) in buf[..n].iter().enumerate() {
                prop_assert_eq!(b, model(offset + i as u64));
            }
        }
    }
}
