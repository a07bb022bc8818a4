//! Streaming a new pack to a local file without going through the page cache.
//!
//! A backup writes each pack once and does not read it back, so caching it only costs: the
//! kernel copies every byte into the page cache, tracks and throttles the dirty pages, and
//! copies them again at write-back. Writing the 590 MB of packs of the benchmark VM cost
//! 0.9-1.1 s of system CPU that way and 0.1-0.2 s past the cache (docs/BENCHMARKS.md).
//! Used when `LocalBackend::with_direct_writes(true)` asks for it.
//!
//! [`AppendFile`] copies appended bytes into aligned staging buffers of a
//! [`cairn_io::direct::DirectWriter`], whose threads write full buffers while the next one
//! fills; the thread appending never waits on the disk unless every buffer is in flight
//! (the back-pressure that bounds memory). Rewrites of bytes already handed over (the pack
//! header, known only at the end) are applied after the last write by read-modify-write of
//! the aligned blocks they touch; then the padding of the last block is cut. Where direct
//! I/O is refused, the writer goes through the page cache: same bytes, same durability (the
//! caller `fsync`s at commit either way).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

use cairn_io::direct::{patch_aligned, AlignedBuf, DirectOptions, DirectWriter};

/// Bytes per write: large enough to keep the device streaming, small enough that the
/// buffers in flight stay a small part of a backup's memory.
const STAGE_BYTES: usize = 2 << 20;
/// Writes in flight per file. A direct write of 2 MiB is one request to the device and takes
/// ~4 ms here (500 MB/s); three at once keep it near its streaming rate, as the kernel's
/// write-back does with its deep queue.
const WRITERS: usize = 3;
/// Staging buffers per file: one filling, the others in flight.
const STAGES: usize = WRITERS + 1;

/// A new file written by appending, with rare rewrites of earlier bytes; see the module
/// docs.
pub(crate) struct AppendFile {
    /// `None` once closed.
    writer: Option<DirectWriter>,
    /// The written file, once closed.
    closed: Option<Arc<File>>,
    /// The buffer being filled and how much of it is; `None` once finished.
    current: Option<AlignedBuf>,
    filled: usize,
    /// File offset of `current`'s first byte.
    base: u64,
    len: u64,
    /// Rewrites of bytes already handed to the writer, applied at [`finish`](Self::finish).
    patches: Vec<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for AppendFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendFile")
            .field("writer", &self.writer)
            .field("len", &self.len)
            .finish()
    }
}

impl AppendFile {
    /// Creates `path`, which must not exist. `direct: false` always writes through the page
    /// cache (and lets tests cover both paths).
    pub(crate) fn create_new(path: &Path, direct: bool) -> io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.write(true).read(true).create_new(true);
        let how = DirectOptions {
            threads: WRITERS,
            buffers: STAGES,
            buffer_len: STAGE_BYTES,
            direct,
        };
        let mut writer = DirectWriter::open(path, &opts, how)?;
        let current = writer.buffer()?;
        Ok(AppendFile {
            writer: Some(writer),
            closed: None,
            current: Some(current),
            filled: 0,
            base: 0,
            len: 0,
            patches: Vec::new(),
        })
    }

    /// Whether writes bypass the page cache.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.writer.as_ref().is_some_and(DirectWriter::is_direct)
    }

    /// Bytes appended so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn current(&mut self) -> io::Result<&mut AlignedBuf> {
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("file already finished"))
    }

    /// Appends `data`.
    pub(crate) fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let filled = self.filled;
            let window = self.current()?.as_mut_slice();
            let n = data.len().min(window.len() - filled);
            window[filled..filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            self.len += n as u64;
            data = &data[n..];
            if self.filled == STAGE_BYTES {
                let writer = self
                    .writer
                    .as_mut()
                    .ok_or_else(|| io::Error::other("file already finished"))?;
                let next = writer.buffer()?;
                let full = self
                    .current
                    .replace(next)
                    .ok_or_else(|| io::Error::other("finished"))?;
                writer.write(full, STAGE_BYTES, self.base)?;
                self.base += STAGE_BYTES as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Overwrites `data.len()` bytes at `offset`, all inside what was appended.
    pub(crate) fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "rewrite past the end of the file",
            ));
        }
        // The part before the staging buffer waits for the writer; the rest is patched in
        // the buffer.
        let split = usize::try_from(self.base.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(data.len());
        if split > 0 {
            self.patches.push((offset, data[..split].to_vec()));
        }
        if split < data.len() {
            let rel = usize::try_from(offset + split as u64 - self.base)
                .map_err(|_| io::Error::other("offset"))?;
            let rest = &data[split..];
            self.current()?.as_mut_slice()[rel..rel + rest.len()].copy_from_slice(rest);
        }
        Ok(())
    }

    /// Writes what is staged, waits for the writer, applies the rewrites, cuts the file to
    /// its length and returns it (not yet `fsync`ed: the caller does that before making
    /// the file visible).
    pub(crate) fn finish(mut self) -> io::Result<Arc<File>> {
        self.close()?;
        self.closed
            .take()
            .ok_or_else(|| io::Error::other("file already finished"))
    }

    /// Writes everything out and lets the staging buffers and threads go, so a finished
    /// pack waiting for its commit holds no memory; later appends and rewrites fail.
    /// Idempotent; [`finish`](Self::finish) does it too.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        if let Some(last) = self.current.take() {
            if self.filled > 0 {
                writer.write(last, self.filled, self.base)?;
            }
        }
        let file = writer.finish()?;
        for (offset, bytes) in std::mem::take(&mut self.patches) {
            patch_aligned(&file, offset, &bytes)?;
        }
        file.set_len(self.len)?;
        self.closed = Some(file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i % 251).to_le_bytes()[0] ^ seed).collect()
    }

    /// Appends in uneven pieces (crossing staging buffers), rewrites a header that has
    /// gone to the writer and bytes still staged, and checks the file, for both modes.
    #[test]
    fn appends_and_rewrites_give_the_exact_file() {
        // Under /var/tmp, not /tmp: tmpfs may refuse O_DIRECT (then the direct case
        // silently tests the fallback; the assertion below says which ran).
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        for direct in [true, false] {
            for total in [
                0usize,
                10,
                cairn_io::direct::DIRECT_ALIGN,
                STAGE_BYTES,
                2 * STAGE_BYTES + 12_345,
                7 * STAGE_BYTES + 1,
            ] {
                let path = dir.path().join(format!("f-{direct}-{total}"));
                let mut f = AppendFile::create_new(&path, direct).unwrap();
                if !direct {
                    assert!(!f.is_direct());
                }
                let mut expect = Vec::new();
                let mut piece = 1usize;
                while expect.len() < total {
                    let n = piece.min(total - expect.len());
                    let p = pattern(n, piece.to_le_bytes()[0]);
                    f.append(&p).unwrap();
                    expect.extend_from_slice(&p);
                    piece = piece * 7 + 13;
                    if piece > 3 * STAGE_BYTES {
                        piece = 5;
                    }
                }
                assert_eq!(f.len(), total as u64);
                if total >= 64 {
                    f.write_at(3, &[0xEE; 61]).unwrap();
                    expect[3..64].fill(0xEE);
                    let last = total - 20;
                    f.write_at(last as u64, &[0x11; 20]).unwrap();
                    expect[last..].fill(0x11);
                }
                assert!(f.write_at(total as u64, &[1]).is_err());
                let file = f.finish().unwrap();
                file.sync_all().unwrap();
                drop(file);
                assert!(
                    std::fs::read(&path).unwrap() == expect,
                    "direct {direct}, {total} bytes"
                );
            }
        }
    }

    #[test]
    fn an_existing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"x").unwrap();
        assert!(AppendFile::create_new(&path, true).is_err());
        assert!(AppendFile::create_new(&path, false).is_err());
    }

    #[test]
    fn dropping_unfinished_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut f = AppendFile::create_new(&path, true).unwrap();
        f.append(&pattern(3 * STAGE_BYTES + 5, 1)).unwrap();
        drop(f);
    }
}
