//! Streaming a new local file (a pack) to disk without going through the page cache.
//!
//! A backup writes each pack once and does not read it back, so caching it only costs: the
//! kernel copies every byte into the page cache, tracks and throttles the dirty pages, and
//! copies them again at write-back. With `O_DIRECT` the disk reads our buffer directly:
//! writing 590 MB of packs cost 0.1-0.2 s of system CPU instead of 0.9-1.1 s on the
//! measuring machine (docs/BENCHMARKS.md), a third of a full backup's CPU budget.
//!
//! [`AppendFile`] copies appended bytes into one of a few aligned staging buffers and hands
//! each full buffer to its own writer thread, so the thread filling the pack never waits on
//! the disk unless every buffer is in flight (the back-pressure that bounds memory). The
//! last partial block is written padded to the alignment, then the file is cut to its
//! length. Rewrites of bytes already handed over (the pack header, known only at the end)
//! are applied after the writer has finished, by read-modify-write of the aligned blocks
//! they touch.
//!
//! When the platform, the file system (tmpfs before Linux 6.6, some network file systems)
//! or the device refuses direct I/O, the same file is written through the page cache
//! instead: same bytes, same durability (the caller `fsync`s at commit either way).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::backend::{read_exact_at, write_all_at};

/// Alignment of direct-I/O buffers, file offsets and lengths. 4 KiB covers devices with
/// 512-byte and 4 KiB logical blocks; a device needing more fails the first write, and the
/// file falls back to buffered writes.
const ALIGN: usize = 4096;
/// Bytes per direct write: large enough to keep the device streaming, small enough that
/// the buffers in flight stay a small part of a backup's memory.
const STAGE_BYTES: usize = 2 << 20;
/// Staging buffers per file: one filling, up to two with the writer thread.
const STAGES: usize = 3;

/// A heap buffer with a [`STAGE_BYTES`] window starting at an [`ALIGN`]ed address, found
/// by offset inside a slightly larger allocation (no `unsafe` needed).
struct Aligned {
    buf: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let buf = vec![0u8; len + ALIGN];
        let addr = buf.as_ptr() as usize;
        let start = (ALIGN - addr % ALIGN) % ALIGN;
        Aligned { buf, start }
    }

    fn window(&mut self) -> &mut [u8] {
        let len = self.buf.len() - ALIGN;
        &mut self.buf[self.start..self.start + len]
    }
}

/// One buffer for the writer thread: `len` bytes of its window go at `offset`.
struct Block {
    buf: Aligned,
    len: usize,
    offset: u64,
}

/// How the file is being written.
enum Mode {
    /// Past the page cache: staging buffers and a writer thread.
    Direct(Box<DirectState>),
    /// Through the page cache (direct I/O unavailable).
    Buffered(File),
    /// Finished or failed.
    Done,
}

struct DirectState {
    /// The buffer being filled, and how much of it is.
    current: Aligned,
    filled: usize,
    /// File offset of `current`'s first byte (a multiple of [`ALIGN`]).
    base: u64,
    to_writer: Option<SyncSender<Block>>,
    free: Receiver<Aligned>,
    writer: Option<JoinHandle<io::Result<WriterEnd>>>,
    /// Rewrites of bytes already handed to the writer, applied once it is done.
    patches: Vec<(u64, Vec<u8>)>,
}

/// What the writer thread hands back: the file, and whether it had to fall back to buffered
/// writes (the device refused direct I/O after the open succeeded).
struct WriterEnd {
    file: File,
    buffered: bool,
}

/// A new file written by appending, with rare rewrites of earlier bytes; see the module
/// docs.
pub(crate) struct AppendFile {
    path: PathBuf,
    mode: Mode,
    len: u64,
}

impl std::fmt::Debug for AppendFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("direct", &matches!(self.mode, Mode::Direct(_)))
            .finish()
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

fn is_refusal(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::Unsupported
}

impl AppendFile {
    /// Creates `path`, which must not exist. `direct: false` always writes through the page
    /// cache (and lets tests cover both paths).
    pub(crate) fn create_new(path: &Path, direct: bool) -> io::Result<Self> {
        let mode = if direct {
            match open_direct(path) {
                Ok(file) => Mode::Direct(Box::new(DirectState::start(file, path)?)),
                Err(e) if is_refusal(&e) => Mode::Buffered(Self::open_buffered(path, true)?),
                Err(e) => return Err(e),
            }
        } else {
            Mode::Buffered(Self::open_buffered(path, true)?)
        };
        Ok(AppendFile {
            path: path.to_path_buf(),
            mode,
            len: 0,
        })
    }

    fn open_buffered(path: &Path, new: bool) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(new)
            .open(path)
    }

    /// Whether writes bypass the page cache (so far).
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct(_))
    }

    /// Bytes appended so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends `data`.
    pub(crate) fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        match &mut self.mode {
            Mode::Buffered(f) => {
                write_all_at(f, data, self.len)?;
                self.len += data.len() as u64;
                Ok(())
            }
            Mode::Direct(st) => {
                while !data.is_empty() {
                    let window = st.current.window();
                    let n = data.len().min(window.len() - st.filled);
                    window[st.filled..st.filled + n].copy_from_slice(&data[..n]);
                    st.filled += n;
                    self.len += n as u64;
                    data = &data[n..];
                    if st.filled == STAGE_BYTES {
                        st.hand_over(STAGE_BYTES)?;
                    }
                }
                Ok(())
            }
            Mode::Done => Err(io::Error::other("file already finished")),
        }
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
        match &mut self.mode {
            Mode::Buffered(f) => write_all_at(f, data, offset),
            Mode::Direct(st) => {
                // The part still in the staging buffer is patched there; the part before it
                // waits for the writer.
                let staged_from = st.base;
                let split = usize::try_from(staged_from.saturating_sub(offset))
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if split > 0 {
                    st.patches.push((offset, data[..split].to_vec()));
                }
                if split < data.len() {
                    let rel = usize::try_from(offset + split as u64 - staged_from)
                        .map_err(|_| io::Error::other("offset"))?;
                    let rest = &data[split..];
                    st.current.window()[rel..rel + rest.len()].copy_from_slice(rest);
                }
                Ok(())
            }
            Mode::Done => Err(io::Error::other("file already finished")),
        }
    }

    /// Writes what is staged, waits for the writer, cuts the file to its length and returns
    /// it (not yet `fsync`ed: the caller does that before making the file visible).
    pub(crate) fn finish(mut self) -> io::Result<File> {
        let len = self.len;
        match std::mem::replace(&mut self.mode, Mode::Done) {
            Mode::Buffered(f) => Ok(f),
            Mode::Direct(mut st) => {
                let tail = st.filled.div_ceil(ALIGN) * ALIGN;
                if st.filled > 0 {
                    st.current.window()[st.filled..tail].fill(0);
                    st.hand_over(tail)?;
                }
                let end = st.join()?;
                let file = end.file;
                for (offset, bytes) in &st.patches {
                    if end.buffered {
                        write_all_at(&file, bytes, *offset)?;
                    } else {
                        patch_direct(&file, *offset, bytes)?;
                    }
                }
                // Drop the padding of the last block.
                file.set_len(len)?;
                Ok(file)
            }
            Mode::Done => Err(io::Error::other("file already finished")),
        }
    }
}

impl Drop for AppendFile {
    fn drop(&mut self) {
        // An abandoned file: stop the writer thread (it ends when its channel closes).
        if let Mode::Direct(st) = &mut self.mode {
            st.to_writer = None;
            if let Some(h) = st.writer.take() {
                let _ = h.join();
            }
        }
    }
}

impl DirectState {
    fn start(file: File, path: &Path) -> io::Result<Self> {
        let (to_writer, blocks) = sync_channel::<Block>(STAGES);
        let (give_back, free) = sync_channel::<Aligned>(STAGES);
        for _ in 1..STAGES {
            give_back
                .send(Aligned::new(STAGE_BYTES))
                .map_err(|_| io::Error::other("staging"))?;
        }
        let path = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("cairn-pack-write".into())
            .spawn(move || write_blocks(file, &path, &blocks, &give_back))?;
        Ok(DirectState {
            current: Aligned::new(STAGE_BYTES),
            filled: 0,
            base: 0,
            to_writer: Some(to_writer),
            free,
            writer: Some(writer),
            patches: Vec::new(),
        })
    }

    /// Sends the first `len` bytes of the current buffer (a multiple of [`ALIGN`]) to the
    /// writer and takes a free buffer, waiting for one when all are in flight.
    fn hand_over(&mut self, len: usize) -> io::Result<()> {
        let Some(tx) = &self.to_writer else {
            return Err(io::Error::other("writer stopped"));
        };
        let next = match self.free.recv() {
            Ok(b) => b,
            // The writer stopped early: its error is what to report.
            Err(_) => {
                return Err(self
                    .join()
                    .err()
                    .unwrap_or_else(|| io::Error::other("writer stopped")))
            }
        };
        let buf = std::mem::replace(&mut self.current, next);
        let block = Block {
            buf,
            len,
            offset: self.base,
        };
        if tx.send(block).is_err() {
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("writer stopped")));
        }
        self.base += len as u64;
        self.filled = 0;
        Ok(())
    }

    fn join(&mut self) -> io::Result<WriterEnd> {
        self.to_writer = None;
        match self.writer.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("pack writer thread panicked"))?,
            None => Err(io::Error::other("writer already joined")),
        }
    }
}

/// The writer thread: writes each block at its offset and gives the buffer back. A device
/// that refuses direct I/O (`EINVAL`) gets this and every later block through a buffered
/// handle of the same file.
fn write_blocks(
    file: File,
    path: &Path,
    blocks: &Receiver<Block>,
    give_back: &SyncSender<Aligned>,
) -> io::Result<WriterEnd> {
    let mut file = file;
    let mut buffered = false;
    for mut block in blocks {
        let offset = block.offset;
        let data = &block.buf.window()[..block.len];
        match write_all_at(&file, data, offset) {
            Ok(()) => {}
            Err(e) if !buffered && is_refusal(&e) => {
                tracing::debug!("direct writes refused for {}: {e}", path.display());
                file = AppendFile::open_buffered(path, false)?;
                buffered = true;
                write_all_at(&file, data, offset)?;
            }
            Err(e) => return Err(e),
        }
        // The appender may have finished already (its last block): nothing to give back to.
        let _ = give_back.send(block.buf);
    }
    Ok(WriterEnd { file, buffered })
}

/// Rewrites `bytes` at `offset` of a file open for direct I/O: reads the aligned blocks
/// they touch, patches them, writes them back.
fn patch_direct(file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let align = ALIGN as u64;
    let first = offset / align * align;
    let end = offset + bytes.len() as u64;
    let span = usize::try_from(end.div_ceil(align) * align - first)
        .map_err(|_| io::Error::other("patch too large"))?;
    let mut buf = Aligned::new(span);
    let window = buf.window();
    // Every block was written whole (the last one padded), so all of them can be read.
    read_exact_at(file, window, first)?;
    let rel = usize::try_from(offset - first).map_err(|_| io::Error::other("offset"))?;
    window[rel..rel + bytes.len()].copy_from_slice(bytes);
    write_all_at(file, window, first)
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
                ALIGN,
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
