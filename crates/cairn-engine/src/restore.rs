//! Restore: a restore point's disk as a [`ReadAt`] ([`RestoredDisk`]) and as a sparse raw
//! file ([`restore_raw`]).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_io::{write_all_at, AllocationMap, RangeKind, ReadAt};
use cairn_repo::{BlobId, DiskManifest, Repository, SnapshotId};

use crate::backup::{Pool, Progress, ProgressFn};
use crate::{Error, Result};

/// Chunks a [`RestoredDisk`] keeps decoded (small: image converters read sequentially).
pub const RESTORE_CACHE_CHUNKS: usize = 8;

fn disk_of(repo: &Repository, snapshot: &SnapshotId, disk_index: usize) -> Result<DiskManifest> {
    let mut m = repo.load_manifest(snapshot)?;
    let disks = m.disks.len();
    if disk_index >= disks {
        return Err(Error::NoSuchDisk {
            snapshot: *snapshot,
            disk_index,
            disks,
        });
    }
    Ok(m.disks.swap_remove(disk_index))
}

/// A restored disk, readable at any offset: chunk lookup, blob fetch, verification (CRC or
/// AEAD, decompression, content hash) and a small cache. Holes read as zeros.
#[derive(Debug)]
pub struct RestoredDisk {
    repo: Arc<Repository>,
    disk: DiskManifest,
    cache: Mutex<VecDeque<(usize, Arc<Vec<u8>>)>>,
}

impl RestoredDisk {
    /// Opens disk `disk_index` of restore point `snapshot`.
    pub fn open(repo: Arc<Repository>, snapshot: &SnapshotId, disk_index: usize) -> Result<Self> {
        let disk = disk_of(&repo, snapshot, disk_index)?;
        Ok(RestoredDisk {
            repo,
            disk,
            cache: Mutex::new(VecDeque::with_capacity(RESTORE_CACHE_CHUNKS)),
        })
    }

    /// The disk's manifest (label, identity, chunk list).
    pub fn manifest(&self) -> &DiskManifest {
        &self.disk
    }

    /// `Data` where chunks are stored, `Unallocated` for holes.
    pub fn allocation_map(&self) -> AllocationMap {
        let mut m = AllocationMap::new(self.disk.size);
        for (i, c) in self.disk.chunks.iter().enumerate() {
            if c.is_some() {
                let (s, e) = self.disk.chunk_range(i);
                // Ranges are in order and inside the size: push cannot fail.
                let _ = m.push(s, e - s, RangeKind::Data);
            }
        }
        m.finish()
    }

    fn chunk(&self, index: usize, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        {
            let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, d)) = c.iter().find(|(i, _)| *i == index) {
                return Ok(d.clone());
            }
        }
        let data = Arc::new(self.repo.read_blob(id)?);
        let (s, e) = self.disk.chunk_range(index);
        if data.len() as u64 != e - s {
            return Err(Error::Repo(cairn_repo::Error::BlobCorrupt {
                id: *id,
                pack: String::new(),
                why: format!("{} bytes, chunk {index} needs {}", data.len(), e - s),
            }));
        }
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= RESTORE_CACHE_CHUNKS {
            c.pop_front();
        }
        c.push_back((index, data.clone()));
        Ok(data)
    }
}

impl ReadAt for RestoredDisk {
    fn size(&self) -> u64 {
        self.disk.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.disk.size {
            return Ok(0);
        }
        let want = usize::try_from(self.disk.size - offset).map_or(buf.len(), |m| m.min(buf.len()));
        let cs = u64::from(self.disk.chunk_size);
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let index = usize::try_from(pos / cs).unwrap_or(usize::MAX);
            let within = usize::try_from(pos % cs).unwrap_or(0);
            let (s, e) = self.disk.chunk_range(index);
            let n = usize::try_from(e - s)
                .unwrap_or(0)
                .saturating_sub(within)
                .min(want - done);
            let dst = &mut buf[done..done + n];
            match self.disk.chunks.get(index).copied().flatten() {
                None => dst.fill(0),
                Some(id) => {
                    let data = self.chunk(index, &id).map_err(|e| {
                        cairn_io::Error::io(pos, std::io::Error::other(e.to_string()))
                    })?;
                    dst.copy_from_slice(&data[within..within + n]);
                }
            }
            done += n;
        }
        Ok(done)
    }
}

/// Options of [`restore_raw`].
#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Reader threads (0: available cores).
    pub threads: usize,
    /// Progress callback (`bytes_done` counts disk bytes, holes included).
    pub progress: Option<ProgressFn>,
    /// Return once the data is in the operating system's cache, without waiting for the
    /// disk (no early `fdatasync`s, no final `fsync`): what restic, borg and
    /// `qemu-img convert` do by default. A crash of the host in the next seconds can leave
    /// zeros where data belongs in the restored file. Off by default: a restore that says
    /// it finished is on disk.
    pub no_fsync: bool,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("threads", &self.threads)
            .field("progress", &self.progress.is_some())
            .field("no_fsync", &self.no_fsync)
            .finish()
    }
}

/// What a raw restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    /// Disk size (the file's length).
    pub size: u64,
    /// Bytes written (stored chunks).
    pub bytes_written: u64,
    /// Bytes left as holes.
    pub bytes_hole: u64,
    /// Wall time.
    pub seconds: f64,
    /// Whether the file was fsynced before returning (false with
    /// [`RestoreOptions::no_fsync`]).
    pub durable: bool,
}

/// Bytes written between two early `fdatasync`s of the output: write-back then overlaps the
/// restore instead of piling up for the final fsync (the same choice as `cairn convert`).
const RESTORE_FLUSH_EVERY: u64 = 64 << 20;

/// A fetched chunk on its way to the writer (`None`: a hole, never written).
struct Fetched {
    index: usize,
    data: Option<Vec<u8>>,
}

/// Writes disk `disk_index` of restore point `snapshot` to `out_path` as a sparse raw image:
/// the file is sized with `set_len` and holes are never written. Worker threads fetch,
/// decrypt, decompress and verify chunks in parallel into reused buffers; ONE writer writes
/// them (no contention on the file's lock) while a flusher `fdatasync`s every 64 MiB; the
/// file is fsynced before this returns (unless [`RestoreOptions::no_fsync`]).
pub fn restore_raw(
    repo: &Repository,
    snapshot: &SnapshotId,
    disk_index: usize,
    out_path: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let disk = disk_of(repo, snapshot, disk_index)?;
    let werr = |source| Error::Write {
        path: out_path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out_path)
        .map_err(werr)?;
    file.set_len(disk.size).map_err(werr)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    }
    .clamp(1, usize::from(cairn_policy::MAX_PIPELINE_WIDTH));
    let depth = threads * 2;
    // Chunk buffers: the queue, one per worker, the writer's; stored-blob buffers: one per
    // worker.
    let pool = Pool::new(depth + 2 * threads + 2);
    let stored_pool = Pool::new(threads);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        let mut g = first_err.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(e);
        stop.store(true, Ordering::SeqCst);
    };
    let flush_file = file.try_clone().map_err(werr)?;
    let mut written = 0u64;
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Fetched>(depth);
        let (flush_tx, flush_rx) = sync_channel::<()>(1);
        let fail = &fail;
        s.spawn(move || {
            while flush_rx.recv().is_ok() {
                if let Err(e) = flush_file.sync_data() {
                    fail(werr(e));
                    return;
                }
            }
        });
        for _ in 0..threads {
            let tx = tx.clone();
            let (disk, next, stop, pool, stored_pool) = (&disk, &next, &stop, &pool, &stored_pool);
            s.spawn(move || {
                let mut stored = stored_pool.get();
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = disk.chunks.get(i) else { break };
                    let data = match c {
                        None => None,
                        Some(id) => {
                            let (start, end) = disk.chunk_range(i);
                            let mut data = pool.get();
                            if let Err(e) = repo.read_blob_into(id, &mut stored, &mut data) {
                                fail(e.into());
                                break;
                            }
                            if data.len() as u64 != end - start {
                                fail(Error::Repo(cairn_repo::Error::BlobCorrupt {
                                    id: *id,
                                    pack: String::new(),
                                    why: format!(
                                        "{} bytes, chunk {i} needs {}",
                                        data.len(),
                                        end - start
                                    ),
                                }));
                                break;
                            }
                            Some(data)
                        }
                    };
                    if tx.send(Fetched { index: i, data }).is_err() {
                        break;
                    }
                }
                stored_pool.put(stored);
            });
        }
        drop(tx);
        // The writer: this thread, until every worker has dropped its sender.
        let mut done = 0u64;
        let mut since_flush = 0u64;
        for f in &rx {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let (start, end) = disk.chunk_range(f.index);
            if let Some(data) = f.data {
                if let Err(e) = write_all_at(&file, &data, start) {
                    fail(werr(e));
                    break;
                }
                written += end - start;
                since_flush += end - start;
                if since_flush >= RESTORE_FLUSH_EVERY && !opts.no_fsync {
                    since_flush = 0;
                    // Busy flusher: skip this tick, the next one covers it.
                    let _ = flush_tx.try_send(());
                }
                pool.put(data);
            }
            done += end - start;
            if let Some(p) = &opts.progress {
                let pr = Progress {
                    bytes_done: done,
                    bytes_total: disk.size,
                    bytes_read: written,
                    bytes_new: 0,
                };
                if !p(&pr) {
                    fail(Error::Cancelled);
                    break;
                }
            }
        }
        // Unblock workers waiting to send, end the flusher.
        drop(rx);
        drop(flush_tx);
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if !opts.no_fsync {
        file.sync_all().map_err(werr)?;
    }
    Ok(RestoreReport {
        size: disk.size,
        bytes_written: written,
        bytes_hole: disk.size - written,
        seconds: started.elapsed().as_secs_f64(),
        durable: !opts.no_fsync,
    })
}
