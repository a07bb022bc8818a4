//! Writing large files past the page cache (`O_DIRECT` on Linux).
//!
//! Cairn writes big files it will not read back soon: repository packs during a backup, the
//! raw disk of a restore. Through the page cache the kernel copies every byte into cache
//! pages, tracks and throttles them as dirty, and copies them again at write-back; on the
//! 2-core machine our benchmarks run on that was a quarter of a backup's CPU time and a
//! third of a restore's (docs/BENCHMARKS.md). With direct I/O the device reads our buffers.
//! It is a trade: each direct write waits for the device, and on that machine's virtio disk
//! buffered write-back finished sooner in wall time, so callers choose (cairn-repo's
//! `LocalBackend::with_direct_writes`).
//!
//! [`DirectWriter`] owns a few [`AlignedBuf`]s and a few writer threads: the caller fills a
//! buffer, hands it over with an offset, and goes on while a thread writes it (direct writes
//! block until the device has the data, so one thread per in-flight write keeps the device
//! busy). Offsets must be multiples of [`DIRECT_ALIGN`]; a short block is padded with zeros,
//! so only the block that ends the file may be short, and the caller cuts the file to its
//! length at the end.
//!
//! Direct I/O is an optimisation, never a requirement: when the open is refused (tmpfs
//! before Linux 6.6, some network file systems, other platforms) or a write is (a device
//! wanting more alignment), the same bytes go through the page cache instead. Durability is
//! the caller's `fsync` either way (direct writes may still sit in the device's cache).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::positional::{read_exact_at, write_all_at};

/// Alignment of direct-I/O buffers, offsets and lengths: covers devices with 512-byte and
/// 4 KiB logical blocks.
pub const DIRECT_ALIGN: usize = 4096;

/// A zeroed heap buffer whose bytes start at a [`DIRECT_ALIGN`]ed address (found inside a
/// slightly larger allocation) and whose capacity is a multiple of it.
pub struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl AlignedBuf {
    /// A buffer of `len` bytes (capacity rounded up to [`DIRECT_ALIGN`]).
    pub fn new(len: usize) -> Self {
        let cap = len.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let buf = vec![0u8; cap + DIRECT_ALIGN];
        let addr = buf.as_ptr() as usize;
        let start = (DIRECT_ALIGN - addr % DIRECT_ALIGN) % DIRECT_ALIGN;
        AlignedBuf { buf, start, len }
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// The first `len` bytes rounded up to [`DIRECT_ALIGN`] (within the capacity), the
    /// padding zeroed: what a direct write of `len` bytes sends.
    fn padded(&mut self, len: usize) -> &[u8] {
        let padded = len.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let window = &mut self.buf[self.start..self.start + padded];
        window[len..].fill(0);
        window
    }
}

#[cfg(target_os = "linux")]
fn open_direct(opts: &OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = opts.clone();
    o.custom_flags(libc::O_DIRECT).open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_opts: &OpenOptions, _path: &Path) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether an error means "no direct I/O here" (rather than a real failure).
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

/// One block for a writer thread.
struct Job {
    buf: AlignedBuf,
    len: usize,
    offset: u64,
}

/// State shared with the writer threads.
struct Shared {
    path: PathBuf,
    /// The first error of any thread.
    error: Mutex<Option<io::Error>>,
}

impl Shared {
    fn fail(&self, e: io::Error) {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
    }

    fn take_error(&self) -> Option<io::Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Positional writes of aligned blocks by background threads, past the page cache where
/// possible; see the module docs.
pub struct DirectWriter {
    file: Arc<File>,
    direct: bool,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<AlignedBuf>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// End of the last block written (unpadded), the highest seen.
    end: u64,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("path", &self.shared.path)
            .field("direct", &self.direct)
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// How to set up a [`DirectWriter`].
#[derive(Debug, Clone, Copy)]
pub struct DirectOptions {
    /// Writer threads (writes in flight), at least 1.
    pub threads: usize,
    /// Buffers, at least `threads + 1` (one being filled).
    pub buffers: usize,
    /// Bytes per buffer.
    pub buffer_len: usize,
    /// Try direct I/O (`false`: always through the page cache).
    pub direct: bool,
}

impl DirectWriter {
    /// Opens `path` with `opts` (which must allow writing) and starts the threads.
    pub fn open(path: &Path, opts: &OpenOptions, how: DirectOptions) -> io::Result<Self> {
        let (file, direct) = if how.direct {
            match open_direct(opts, path) {
                Ok(f) => (f, true),
                Err(e) if is_refusal(&e) => (opts.open(path)?, false),
                Err(e) => return Err(e),
            }
        } else {
            (opts.open(path)?, false)
        };
        let file = Arc::new(file);
        let threads = how.threads.max(1);
        let buffers = how.buffers.max(threads + 1);
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(buffers);
        let (free_tx, free_rx) = sync_channel::<AlignedBuf>(buffers);
        for _ in 0..buffers {
            free_tx
                .send(AlignedBuf::new(how.buffer_len))
                .map_err(|_| io::Error::other("buffer channel"))?;
        }
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            error: Mutex::new(None),
        });
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (file, shared, jobs, free) = (
                file.clone(),
                shared.clone(),
                jobs_rx.clone(),
                free_tx.clone(),
            );
            handles.push(
                std::thread::Builder::new()
                    .name("cairn-direct-write".into())
                    .spawn(move || write_jobs(&file, direct, &shared, &jobs, &free))?,
            );
        }
        Ok(DirectWriter {
            file,
            direct,
            jobs: Some(jobs_tx),
            free: free_rx,
            threads: handles,
            shared,
            end: 0,
        })
    }

    /// Whether the file was opened for direct I/O.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file (to size it, for example).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A free buffer (contents: whatever it last held); waits while all are in flight.
    pub fn buffer(&mut self) -> io::Result<AlignedBuf> {
        self.check()?;
        self.free
            .recv()
            .map_err(|_| self.shared.take_error().unwrap_or_else(stopped))
    }

    /// Hands `buf[..len]` over to be written at `offset`. With direct I/O `offset` must be a
    /// multiple of [`DIRECT_ALIGN`], and a `len` that is not is padded with zeros: only the
    /// block that ends the file may be short, and the file is cut to its length afterwards.
    pub fn write(&mut self, buf: AlignedBuf, len: usize, offset: u64) -> io::Result<()> {
        self.check()?;
        if (self.direct && !offset.is_multiple_of(DIRECT_ALIGN as u64)) || len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unaligned block: {len} bytes at {offset}"),
            ));
        }
        self.end = self.end.max(offset + len as u64);
        let Some(tx) = &self.jobs else {
            return Err(stopped());
        };
        tx.send(Job { buf, len, offset })
            .map_err(|_| self.shared.take_error().unwrap_or_else(stopped))
    }

    /// End of the furthest block written, without padding.
    pub fn end(&self) -> u64 {
        self.end
    }

    fn check(&self) -> io::Result<()> {
        match self.shared.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for every write and returns the file (not `fsync`ed, possibly longer than
    /// [`end`](Self::end) by the padding of the last block).
    pub fn finish(mut self) -> io::Result<Arc<File>> {
        self.stop();
        self.check()?;
        Ok(self.file.clone())
    }

    fn stop(&mut self) {
        self.jobs = None;
        for h in self.threads.drain(..) {
            if h.join().is_err() {
                self.shared
                    .fail(io::Error::other("direct writer thread panicked"));
            }
        }
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped() -> io::Error {
    io::Error::other("direct writer stopped")
}

/// A writer thread: takes blocks until the channel closes. A write refused as direct I/O
/// goes, with every later one of this thread, through a buffered handle of the same file
/// (the kernel keeps the two coherent: direct writes invalidate cached pages).
fn write_jobs(
    file: &File,
    direct: bool,
    shared: &Shared,
    jobs: &Mutex<Receiver<Job>>,
    free: &SyncSender<AlignedBuf>,
) {
    let mut buffered: Option<File> = None;
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(mut job) = job else { return };
        // Direct writes need whole aligned blocks; buffered ones write exactly the bytes.
        let data = if direct {
            job.buf.padded(job.len)
        } else {
            &job.buf.as_slice()[..job.len]
        };
        let res = match &buffered {
            Some(b) => write_all_at(b, data, job.offset),
            None => match write_all_at(file, data, job.offset) {
                Err(e) if direct && is_refusal(&e) => {
                    match OpenOptions::new().write(true).open(&shared.path) {
                        Ok(b) => {
                            let r = write_all_at(&b, data, job.offset);
                            buffered = Some(b);
                            r
                        }
                        Err(e) => Err(e),
                    }
                }
                r => r,
            },
        };
        if let Err(e) = res {
            shared.fail(e);
        }
        // Never blocks: the channel holds every buffer the writer made. A buffer it did not
        // make (handed in by the caller) is dropped when there is no room, and so is any
        // when the owner is gone (an abandoned writer).
        let _ = free.try_send(job.buf);
    }
}

/// Overwrites `bytes` at `offset` of a file written by a [`DirectWriter`] (and not yet cut
/// to length): reads the aligned blocks the range touches, patches them, writes them back.
/// Works on a direct or a buffered handle.
pub fn patch_aligned(file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let align = DIRECT_ALIGN as u64;
    let first = offset / align * align;
    let end = offset
        .checked_add(bytes.len() as u64)
        .ok_or_else(|| io::Error::other("patch offset overflows"))?;
    let span = usize::try_from(end.div_ceil(align) * align - first)
        .map_err(|_| io::Error::other("patch too large"))?;
    let mut buf = AlignedBuf::new(span);
    let window = buf.as_mut_slice();
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

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [0usize, 1, 4095, 4096, 4097, 1 << 20] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_mut_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }

    /// Out-of-order blocks from several threads, holes between them, a short last block
    /// and a patch: the file equals the model, for direct and buffered writers.
    #[test]
    fn blocks_land_where_they_were_sent() {
        let dir = tempfile::tempdir().unwrap();
        for direct in [true, false] {
            let path = dir.path().join(format!("out-{direct}"));
            let opts = {
                let mut o = OpenOptions::new();
                o.write(true).read(true).create_new(true);
                o
            };
            let how = DirectOptions {
                threads: 3,
                buffers: 5,
                buffer_len: 64 << 10,
                direct,
            };
            let mut w = DirectWriter::open(&path, &opts, how).unwrap();
            if !direct {
                assert!(!w.is_direct());
            }
            let block = 64usize << 10;
            let total = 20 * block + 1000;
            w.file().set_len(total as u64).unwrap();
            let mut model = vec![0u8; total];
            // Every third block is a hole; the others go in a shuffled order.
            let mut order: Vec<usize> = (0..=20).filter(|i| i % 3 != 1).collect();
            order.reverse();
            order.swap(0, 3);
            for i in order {
                let off = i * block;
                let len = block.min(total - off);
                let data = pattern(len, u8::try_from(i).unwrap());
                model[off..off + len].copy_from_slice(&data);
                let mut b = w.buffer().unwrap();
                b.as_mut_slice()[..len].copy_from_slice(&data);
                w.write(b, len, off as u64).unwrap();
            }
            assert_eq!(w.end(), total as u64);
            if w.is_direct() {
                assert!(
                    w.write(AlignedBuf::new(10), 10, 5).is_err(),
                    "unaligned offset"
                );
            }
            let file = w.finish().unwrap();
            patch_aligned(&file, 70_000, &[0xEE; 5000]).unwrap();
            model[70_000..75_000].fill(0xEE);
            file.set_len(total as u64).unwrap();
            file.sync_all().unwrap();
            assert!(std::fs::read(&path).unwrap() == model, "direct {direct}");
        }
    }

    /// A block in a buffer the writer did not make (all of its own are idle in the free
    /// channel) must not block the thread that gives buffers back: finish returns.
    #[test]
    fn a_callers_own_buffer_does_not_hang_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = OpenOptions::new();
        o.write(true).read(true).create_new(true);
        for direct in [false, true] {
            let how = DirectOptions {
                threads: 1,
                buffers: 2,
                buffer_len: 8192,
                direct,
            };
            let path = dir.path().join(format!("own-{direct}"));
            let mut w = DirectWriter::open(&path, &o, how).unwrap();
            let mut own = AlignedBuf::new(8192);
            own.as_mut_slice().fill(7);
            w.write(own, 8192, 0).unwrap();
            w.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 8192]);
        }
    }

    #[test]
    fn an_abandoned_writer_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = OpenOptions::new();
        o.write(true).create_new(true);
        let how = DirectOptions {
            threads: 2,
            buffers: 3,
            buffer_len: 8192,
            direct: true,
        };
        let mut w = DirectWriter::open(&dir.path().join("x"), &o, how).unwrap();
        for i in 0..10u64 {
            let b = w.buffer().unwrap();
            w.write(b, 8192, i * 8192).unwrap();
        }
        drop(w);
        assert!(
            DirectWriter::open(&dir.path().join("x"), &o, how).is_err(),
            "create_new"
        );
    }
}
