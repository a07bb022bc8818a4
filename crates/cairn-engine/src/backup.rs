//! Image backup: fixed chunks aligned to the disk, read in one thread with positional reads,
//! hashed / compressed / sealed on a worker pool, packed by the calling thread. Memory is
//! bounded by the queue depths times the chunk size plus one pack, whatever the image size.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_io::{AllocationMap, DiskIdentity, RangeKind, ReadAt};
use cairn_repo::{
    BackupStats, BlobId, BlobKind, DiskManifest, EncodedBlob, Manifest, Repository, SnapshotId,
    StoredIdentity,
};

use crate::{Error, Result};

/// Most readers or worker threads one backup runs (each adds pool buffers): the policy
/// parser and the CLI flags refuse larger values with this same bound.
const MAX_PIPELINE_WIDTH: usize = cairn_policy::MAX_PIPELINE_WIDTH as usize;

/// One disk to back up.
pub struct DiskSource {
    /// Name recorded in the restore point (file name, device).
    pub label: String,
    /// The disk's content (the whole chain, read through).
    pub reader: Arc<dyn ReadAt>,
    /// What to read: `Data` / `FromParent` runs are read, `Zero` / `Unallocated` runs never
    /// are (they restore as zeros). Its size is the disk's size.
    pub map: AllocationMap,
    /// Identity of the top layer.
    pub identity: DiskIdentity,
    /// Identities of the layers below, top first.
    pub chain_ids: Vec<DiskIdentity>,
    /// Ranges the top layer changed relative to its parent (any run that is not
    /// `Unallocated` counts as changed), when the top layer is a delta.
    pub changed: Option<AllocationMap>,
}

impl fmt::Debug for DiskSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskSource")
            .field("label", &self.label)
            .field("size", &self.map.size())
            .field("identity", &self.identity)
            .field("chain_ids", &self.chain_ids)
            .field("changed", &self.changed.as_ref().map(|c| c.runs().len()))
            .finish()
    }
}

/// Progress of a job, passed to the callback after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Disk bytes dealt with so far (read, skipped as holes or taken from the parent).
    pub bytes_done: u64,
    /// Disk bytes in total.
    pub bytes_total: u64,
    /// Bytes read from the sources so far.
    pub bytes_read: u64,
    /// Raw bytes of new chunks so far.
    pub bytes_new: u64,
}

/// Progress callback; return `false` to cancel the job.
pub type ProgressFn = Arc<dyn Fn(&Progress) -> bool + Send + Sync>;

/// Options of [`backup`].
#[derive(Clone, Default)]
pub struct BackupOptions {
    /// Tags recorded in the restore point.
    pub tags: Vec<String>,
    /// Time of the restore point, Unix seconds; now when `None`.
    pub time: Option<i64>,
    /// Nanoseconds within an explicit `time` (below 1 000 000 000; the manifest encoder
    /// refuses more), recorded with it; `None` records a whole second. Ignored without `time`.
    pub time_nanos: Option<u32>,
    /// Worker threads for hashing / compression / sealing (0: available cores).
    pub threads: usize,
    /// Reader threads issuing positional reads (0: 2). More than one helps when the source
    /// reader itself costs CPU (compressed grains, encrypted or remote images).
    pub readers: usize,
    /// Never take chunks from a previous restore point (read everything).
    pub no_incremental: bool,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Guest volumes (with their catalogs) to record in the restore point.
    pub volumes: Vec<cairn_repo::VolumeRecord>,
    /// The VM bundle record (see `crate::backup_bundle`): stored in the manifest, and its
    /// UUID finds earlier restore points of the same VM whatever its name or folder.
    pub vm: Option<cairn_repo::VmRecord>,
}

impl fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupOptions")
            .field("tags", &self.tags)
            .field("time", &self.time)
            .field("time_nanos", &self.time_nanos)
            .field("threads", &self.threads)
            .field("readers", &self.readers)
            .field("no_incremental", &self.no_incremental)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a backup did.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    /// The new restore point.
    pub restore_point: SnapshotId,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Raw bytes of chunks the repository did not have.
    pub bytes_new: u64,
    /// Bytes written to packs (compressed, sealed).
    pub bytes_stored: u64,
    /// Wall time.
    pub seconds: f64,
    /// Chunks in all disks.
    pub chunks: u64,
    /// Chunks recorded as holes (never stored).
    pub chunks_hole: u64,
    /// Chunks taken from the previous restore point without reading.
    pub chunks_reused: u64,
    /// The restore point incremental reads were based on.
    pub incremental_from: Option<SnapshotId>,
}

pub(crate) fn stored_identity(d: &DiskIdentity) -> StoredIdentity {
    StoredIdentity {
        uuid: d.uuid,
        content_id: d.content_id.clone(),
    }
}

/// How one chunk is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    Hole,
    Reuse(Option<BlobId>),
    Read(Vec<(u64, u64)>),
}

fn is_read_kind(k: RangeKind) -> bool {
    matches!(k, RangeKind::Data | RangeKind::FromParent)
}

fn plan_chunk(
    d: &DiskSource,
    start: u64,
    len: u64,
    base: Option<&DiskManifest>,
    index: usize,
) -> Plan {
    if let (Some(base), Some(changed)) = (base, &d.changed) {
        let touched = changed
            .clip(start, len)
            .iter()
            .any(|r| r.kind != RangeKind::Unallocated);
        if !touched {
            return Plan::Reuse(base.chunks[index]);
        }
    }
    let reads: Vec<(u64, u64)> = d
        .map
        .clip(start, len)
        .iter()
        .filter(|r| is_read_kind(r.kind))
        .map(|r| (r.offset, r.len))
        .collect();
    if reads.is_empty() {
        Plan::Hole
    } else {
        Plan::Read(reads)
    }
}

/// Finds, for each source, the disk of an earlier restore point of `vm_name` that captured
/// exactly its parent layer.
fn find_bases(
    repo: &Repository,
    vm_name: &str,
    vm: Option<&cairn_repo::VmRecord>,
    disks: &[DiskSource],
    chunk_size: u32,
) -> Result<(Vec<Option<DiskManifest>>, Option<SnapshotId>)> {
    let mut out: Vec<Option<DiskManifest>> = vec![None; disks.len()];
    let wanted: Vec<Option<StoredIdentity>> = disks
        .iter()
        .map(|d| {
            let parent = d.chain_ids.first().map(stored_identity);
            parent.filter(|p| d.changed.is_some() && p.is_known())
        })
        .collect();
    if wanted.iter().all(Option::is_none) {
        return Ok((out, None));
    }
    // Newest first; heads only, the full manifest is loaded for a match.
    let (summaries, _) = repo.summaries()?;
    let mut from = None;
    for sum in summaries
        .iter()
        .rev()
        .filter(|s| crate::bundle::same_vm(s, vm_name, vm))
    {
        let Ok(head) = repo.load_manifest_file(&sum.id) else {
            continue;
        };
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for (i, w) in wanted.iter().enumerate() {
            let Some(w) = w else { continue };
            if out[i].is_some() {
                continue;
            }
            let size = disks[i].map.size();
            // Prefer the disk with the same label when several match.
            let mut best: Option<usize> = None;
            for (k, rec) in head.disks.iter().enumerate() {
                if &rec.identity == w
                    && rec.size == size
                    && rec.chunk_size == chunk_size
                    && (best.is_none() || rec.label == disks[i].label)
                {
                    best = Some(k);
                }
            }
            if let Some(k) = best {
                picks.push((i, k));
            }
        }
        if picks.is_empty() {
            continue;
        }
        let Ok(m) = repo.load_manifest(&sum.id) else {
            continue;
        };
        for (i, k) in picks {
            out[i] = Some(m.disks[k].clone());
        }
        from.get_or_insert(sum.id);
        if out
            .iter()
            .zip(&wanted)
            .all(|(o, w)| o.is_some() || w.is_none())
        {
            break;
        }
    }
    Ok((out, from))
}

struct ReadJob {
    disk: usize,
    index: usize,
    /// The chunk is `data[chunk]`; the bytes before it are room for the blob's prefix (see
    /// `BlobEncoder::chunk_buffer`), so a chunk stored raw is sealed where it was read.
    data: Vec<u8>,
    chunk: std::ops::Range<usize>,
    /// Bytes actually read (the chunk may include zero-filled non-read ranges).
    read: u64,
}

enum Out {
    Chunk {
        disk: usize,
        index: usize,
        id: Option<BlobId>,
        bytes: u64,
        new: u64,
    },
    Blob(EncodedBlob),
}

#[derive(Default)]
struct Failure(Mutex<Option<Error>>, AtomicBool);

impl Failure {
    fn set(&self, e: Error) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
        self.1.store(true, Ordering::SeqCst);
    }
    fn failed(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }
    fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Buffers cycled between the pipeline's threads (chunk reads, encoded blobs): after the
/// first few chunks no stage maps, faults in or zeroes fresh memory. Holds at most `max`
/// idle buffers, so memory stays bounded by the queues, whatever the image size.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    max: usize,
}

impl Pool {
    pub(crate) fn new(max: usize) -> Self {
        Pool {
            free: Mutex::new(Vec::with_capacity(max)),
            max,
        }
    }

    /// An idle buffer (any length, any contents), or a new empty one.
    pub(crate) fn get(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Returns a buffer for reuse (dropped when the pool is full).
    pub(crate) fn put(&self, v: Vec<u8>) {
        let mut f = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < self.max {
            f.push(v);
        }
    }
}

/// Backs up `disks` of `vm_name` into `repo` as one new restore point.
///
/// Chunks wholly inside non-read ranges, and chunks that read as all zeros, are recorded as
/// holes. With a previous restore point that captured the parent layer (see
/// [`DiskSource::changed`]) only the changed chunks are read; the others' ids are copied, so
/// every restore point still lists every chunk.
pub fn backup(
    repo: &Repository,
    vm_name: &str,
    disks: &[DiskSource],
    opts: &BackupOptions,
) -> Result<BackupReport> {
    let started = Instant::now();
    let chunk_size = match repo.config().chunker {
        cairn_chunk::ChunkerParams::Fixed { size } => size,
        other => {
            return Err(Error::Invalid(format!(
                "image backups need a fixed-size chunker; the repository uses {other:?}"
            )))
        }
    };
    let chunker = cairn_chunk::FixedChunker::new(chunk_size).map_err(cairn_repo::Error::from)?;
    if disks.len() > cairn_repo::MAX_DISKS {
        return Err(Error::Invalid(format!(
            "{} disks, at most {}",
            disks.len(),
            cairn_repo::MAX_DISKS
        )));
    }
    for d in disks {
        let size = d.map.size();
        if size > cairn_repo::MAX_DISK_SIZE {
            return Err(Error::Invalid(format!(
                "disk {:?}: size {size} too large",
                d.label
            )));
        }
        if d.reader.size() < size {
            return Err(Error::Invalid(format!(
                "disk {:?}: reader has {} bytes, map covers {size}",
                d.label,
                d.reader.size()
            )));
        }
        d.map
            .validate()
            .map_err(|e| Error::Invalid(format!("disk {:?} map: {e}", d.label)))?;
        if let Some(c) = &d.changed {
            if c.size() != size {
                return Err(Error::Invalid(format!(
                    "disk {:?}: changed map size differs",
                    d.label
                )));
            }
        }
    }
    let (bases, incremental_from) = if opts.no_incremental {
        (vec![None; disks.len()], None)
    } else {
        find_bases(repo, vm_name, opts.vm.as_ref(), disks, chunk_size)?
    };

    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    }
    .clamp(1, MAX_PIPELINE_WIDTH);
    let depth = threads * 2;
    let total: u64 = disks.iter().map(|d| d.map.size()).sum();

    let mut chunk_lists: Vec<Vec<Option<BlobId>>> = disks
        .iter()
        .map(|d| {
            let n = usize::try_from(chunker.count(d.map.size())).unwrap_or(usize::MAX);
            vec![None; n]
        })
        .collect();
    let mut progress = Progress {
        bytes_total: total,
        ..Default::default()
    };
    let mut chunks_hole = 0u64;
    let mut chunks_reused = 0u64;
    let mut chunks = 0u64;

    let mut writer = repo.writer()?;
    let encoder = writer.encoder();
    let readers = if opts.readers == 0 {
        2
    } else {
        opts.readers.min(MAX_PIPELINE_WIDTH)
    };
    // starts[d] = global number of disk d's first chunk.
    let starts: Vec<u64> = disks
        .iter()
        .scan(0u64, |acc, d| {
            let s = *acc;
            *acc += chunker.count(d.map.size());
            Some(s)
        })
        .collect();
    let next_chunk = AtomicU64::new(0);
    let claimed: Mutex<HashSet<BlobId>> = Mutex::new(HashSet::new());
    let failure = Failure::default();
    // Every buffer in flight: both queues, one per reader and worker (read + encoded), the
    // packer's. More would only sit idle.
    let pool = Pool::new(2 * depth + 2 * (readers + threads) + 2);

    std::thread::scope(|s| {
        let (job_tx, job_rx) = sync_channel::<ReadJob>(depth);
        let (out_tx, out_rx) = sync_channel::<Out>(depth);
        let job_rx = Arc::new(Mutex::new(job_rx));

        // Readers: take chunks in disk order from a shared counter; holes and reused chunks
        // go straight to the output.
        for _ in 0..readers {
            let (job_tx, out_tx) = (job_tx.clone(), out_tx.clone());
            let (failure, bases, next, starts) = (&failure, &bases, &next_chunk, &starts);
            let (pool, encoder) = (&pool, &encoder);
            s.spawn(move || {
                read_all(
                    repo,
                    disks,
                    bases,
                    (&chunker, pool, encoder),
                    (next, starts),
                    job_tx,
                    out_tx,
                    failure,
                );
            });
        }
        drop(job_tx);
        for _ in 0..threads {
            let job_rx = job_rx.clone();
            let out_tx = out_tx.clone();
            let (encoder, claimed, failure, pool) = (&encoder, &claimed, &failure, &pool);
            s.spawn(move || {
                work(&job_rx, &out_tx, (encoder, pool), repo, claimed, failure);
            });
        }
        drop(out_tx);

        // Packer: this thread.
        let out_rx: Receiver<Out> = out_rx;
        for msg in &out_rx {
            if failure.failed() {
                break;
            }
            match msg {
                Out::Blob(b) => {
                    if let Err(e) = writer.add(&b) {
                        failure.set(e.into());
                        break;
                    }
                    pool.put(b.stored);
                }
                Out::Chunk {
                    disk,
                    index,
                    id,
                    bytes,
                    new,
                } => {
                    chunks += 1;
                    chunk_lists[disk][index] = id;
                    let span = chunker
                        .span(index as u64, disks[disk].map.size())
                        .map_or(0, |sp| sp.len as u64);
                    progress.bytes_done += span;
                    progress.bytes_read += bytes;
                    progress.bytes_new += new;
                    if id.is_none() {
                        chunks_hole += 1;
                    }
                    if bytes == 0 && id.is_some() {
                        chunks_reused += 1;
                    }
                    if let Some(p) = &opts.progress {
                        if !p(&progress) {
                            failure.set(Error::Cancelled);
                            break;
                        }
                    }
                }
            }
        }
        // Dropping the receiver makes every sender fail, so the threads stop.
        drop(out_rx);
    });
    if let Some(e) = failure.take() {
        return Err(e);
    }
    let stats = writer.finish()?;
    let expected: u64 = chunk_lists.iter().map(|c| c.len() as u64).sum();
    if chunks != expected {
        return Err(Error::Invalid(format!(
            "internal: {chunks} of {expected} chunks done"
        )));
    }

    let (time, time_nanos) = restore_point_time(opts.time, opts.time_nanos);
    let manifest = Manifest {
        vm_name: vm_name.to_string(),
        time,
        time_nanos,
        tags: opts.tags.clone(),
        parent: incremental_from,
        disks: disks
            .iter()
            .zip(chunk_lists)
            .map(|(d, chunks)| DiskManifest {
                label: d.label.clone(),
                size: d.map.size(),
                chunk_size,
                identity: stored_identity(&d.identity),
                chain: d.chain_ids.iter().map(stored_identity).collect(),
                chunks,
            })
            .collect(),
        stats: BackupStats {
            bytes_read: progress.bytes_read,
            bytes_new: progress.bytes_new,
            bytes_stored: stats.bytes_stored,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        volumes: opts.volumes.clone(),
    };
    let id = repo.save_manifest_with_vm(&manifest, opts.vm.as_ref())?;
    // A prune that ran meanwhile may have retired packs holding blobs this backup reused:
    // make them indexed again (docs/prune.md). Nothing is lost if this fails; the next
    // prune does the same.
    let mut wanted: Vec<BlobId> = manifest
        .disks
        .iter()
        .flat_map(|d| d.chunks.iter().flatten().copied())
        .collect();
    wanted.extend(
        manifest
            .volumes
            .iter()
            .flat_map(|v| v.catalog_blobs.iter().copied()),
    );
    wanted.extend(opts.vm.iter().flat_map(|v| v.blobs().copied()));
    wanted.sort_unstable();
    wanted.dedup();
    if let Err(e) = cairn_repo::reindex_retired(repo, &wanted) {
        tracing::warn!("re-indexing blobs retired by a concurrent prune: {e}");
    }
    Ok(BackupReport {
        restore_point: id,
        bytes_read: progress.bytes_read,
        bytes_new: progress.bytes_new,
        bytes_stored: stats.bytes_stored,
        seconds: started.elapsed().as_secs_f64(),
        chunks,
        chunks_hole,
        chunks_reused,
        incremental_from,
    })
}

/// The time a restore point records: an explicit `BackupOptions::time` as given, with the
/// sub-second part given with it if any (`cairn backup --time 2026-01-02T03:04:05.5Z`; none
/// from policies with a fake clock); else now, with its nanoseconds, so that two backups in
/// one second are still ordered.
fn restore_point_time(explicit: Option<i64>, explicit_nanos: Option<u32>) -> (i64, Option<u32>) {
    if let Some(t) = explicit {
        return (t, explicit_nanos);
    }
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Some(d.subsec_nanos()),
        ),
        // A clock before 1970: the epoch, sub-second unknown.
        Err(_) => (0, None),
    }
}

#[allow(clippy::too_many_arguments)]
fn read_all(
    repo: &Repository,
    disks: &[DiskSource],
    bases: &[Option<DiskManifest>],
    (chunker, pool, encoder): (&cairn_chunk::FixedChunker, &Pool, &cairn_repo::BlobEncoder),
    (next, starts): (&AtomicU64, &[u64]),
    job_tx: SyncSender<ReadJob>,
    out_tx: SyncSender<Out>,
    failure: &Failure,
) {
    loop {
        if failure.failed() {
            return;
        }
        let g = next.fetch_add(1, Ordering::Relaxed);
        // The disk holding global chunk g: the last whose first chunk is <= g.
        let di = starts.partition_point(|&s| s <= g).saturating_sub(1);
        let Some(d) = disks.get(di) else { return };
        let size = d.map.size();
        let ci = g - starts[di];
        let Some(span) = chunker.span(ci, size) else {
            // Past the last disk's end: done.
            return;
        };
        let Ok(index) = usize::try_from(ci) else {
            return;
        };
        let mut plan = plan_chunk(d, span.offset, span.len as u64, bases[di].as_ref(), index);
        if let Plan::Reuse(Some(id)) = plan {
            // The earlier blob may have been lost since (unreadable index): read again.
            if !repo.contains_blob(&id) {
                let base = None;
                plan = plan_chunk(d, span.offset, span.len as u64, base, index);
            }
        }
        match plan {
            Plan::Hole => {
                let m = Out::Chunk {
                    disk: di,
                    index,
                    id: None,
                    bytes: 0,
                    new: 0,
                };
                if out_tx.send(m).is_err() {
                    return;
                }
            }
            Plan::Reuse(id) => {
                let m = Out::Chunk {
                    disk: di,
                    index,
                    id,
                    bytes: 0,
                    new: 0,
                };
                if out_tx.send(m).is_err() {
                    return;
                }
            }
            Plan::Read(ranges) => {
                // A reused buffer (no fresh pages). Its old bytes are not cleared: every
                // byte of the chunk is either read (`read_exact_at` fills its whole slice or
                // fails) or zeroed below as a gap.
                let mut data = pool.get();
                let chunk = encoder.chunk_buffer(&mut data, span.len);
                let buf = &mut data[chunk.clone()];
                let read = ranges.iter().map(|r| r.1).sum();
                let mut filled = 0usize;
                for (off, len) in ranges {
                    // Both are below the chunk size (at most 16 MiB); the map's runs are in
                    // order and inside the chunk.
                    let (Ok(rel), Ok(len)) =
                        (usize::try_from(off - span.offset), usize::try_from(len))
                    else {
                        return;
                    };
                    if rel < filled || rel + len > buf.len() {
                        failure.set(Error::Invalid(format!(
                            "disk {:?}: read range {off}+{len} out of order",
                            d.label
                        )));
                        return;
                    }
                    buf[filled..rel].fill(0);
                    filled = rel + len;
                    if let Err(e) = d.reader.read_exact_at(&mut buf[rel..rel + len], off) {
                        failure.set(Error::Read {
                            disk: d.label.clone(),
                            offset: off,
                            source: e,
                        });
                        return;
                    }
                }
                buf[filled..].fill(0);
                if job_tx
                    .send(ReadJob {
                        disk: di,
                        index,
                        data,
                        chunk,
                        read,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// All bytes zero. OR-folds 64-byte blocks (which vectorises) and stops at the first
/// non-zero block.
fn is_zero(d: &[u8]) -> bool {
    let blocks = d.chunks_exact(64);
    let rest = blocks.remainder();
    blocks
        .into_iter()
        .all(|b| b.iter().fold(0u8, |a, &x| a | x) == 0)
        && rest.iter().all(|&x| x == 0)
}

fn work(
    jobs: &Mutex<Receiver<ReadJob>>,
    out: &SyncSender<Out>,
    (encoder, pool): (&cairn_repo::BlobEncoder, &Pool),
    repo: &Repository,
    claimed: &Mutex<HashSet<BlobId>>,
    failure: &Failure,
) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        if failure.failed() {
            return;
        }
        let bytes = job.read;
        let chunk = &job.data[job.chunk.clone()];
        let chunk_len = chunk.len() as u64;
        if is_zero(chunk) {
            pool.put(job.data);
            let m = Out::Chunk {
                disk: job.disk,
                index: job.index,
                id: None,
                bytes,
                new: 0,
            };
            if out.send(m).is_err() {
                return;
            }
            continue;
        }
        let id = encoder.id(chunk);
        let is_new = !repo.contains_blob(&id)
            && claimed.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        let (disk, index) = (job.disk, job.index);
        if is_new {
            // A chunk stored raw is sealed in its read buffer; a compressed one goes into a
            // pool buffer. Either way the other buffer goes back to the pool.
            match encoder.encode_in_place(BlobKind::Data, id, job.data, pool.get()) {
                Ok((b, spare)) => {
                    pool.put(spare);
                    if out.send(Out::Blob(b)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    failure.set(e.into());
                    return;
                }
            }
        } else {
            pool.put(job.data);
        }
        let m = Out::Chunk {
            disk,
            index,
            id: Some(id),
            bytes,
            new: if is_new { chunk_len } else { 0 },
        };
        if out.send(m).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_zero;
    use super::{backup, BackupOptions, DiskSource};
    use crate::{restore_raw, RestoreOptions};
    use cairn_io::{AllocationMap, DiskIdentity, RangeKind};
    use cairn_repo::{Encryption, InitOptions, KdfParams, LocalBackend, Repository, SlotSecret};
    use std::sync::Arc;

    /// Reused buffers must not leak one chunk's bytes into another: a map with holes inside
    /// every chunk (and whole-chunk holes, noise and text chunks) backs up and restores as the
    /// image with exactly the unread ranges zeroed, through the streamed, background-committed
    /// packs of a local encrypted repository.
    #[test]
    fn unread_ranges_restore_as_zeros_with_reused_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let secret = SlotSecret::Passphrase("pw".into());
        let opts = InitOptions {
            encryption: Encryption::Aes256Gcm,
            kdf: Some(KdfParams::insecure_for_tests()),
            pack_target: 1 << 20,
            ..InitOptions::default()
        };
        let backend = Arc::new(LocalBackend::new(dir.path().join("repo")).unwrap());
        let repo = Repository::init(backend, &opts, Some(&secret)).unwrap();
        let size: u64 = 6 << 20;
        let mut x = 0x1234_5678_9abc_def0u64;
        let image: Vec<u8> = (0..size)
            .map(|i| {
                if (i >> 18) % 3 == 0 {
                    // a compressible chunk
                    (i % 7) as u8 + 1
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[2] | 1
                }
            })
            .collect();
        let mut map = AllocationMap::new(size);
        let mut expect = image.clone();
        let mut off = 0u64;
        let mut k = 0u64;
        while off < size {
            // 12 KiB read, 20 KiB not, and now and then a long unread run.
            let (len, kind) = match k % 5 {
                0 | 2 => (12 << 10, RangeKind::Data),
                4 => (700 << 10, RangeKind::Unallocated),
                _ => (20 << 10, RangeKind::Unallocated),
            };
            let len = len.min(size - off);
            if kind == RangeKind::Unallocated {
                let (a, b) = (
                    usize::try_from(off).unwrap(),
                    usize::try_from(off + len).unwrap(),
                );
                expect[a..b].fill(0);
            }
            map.push(off, len, kind).unwrap();
            off += len;
            k += 1;
        }
        let map = map.finish();
        let disk = DiskSource {
            label: "d".into(),
            reader: Arc::new(image),
            map,
            identity: DiskIdentity::default(),
            chain_ids: vec![],
            changed: None,
        };
        let bopts = BackupOptions {
            threads: 2,
            readers: 2,
            ..BackupOptions::default()
        };
        let report = backup(&repo, "vm", &[disk], &bopts).unwrap();
        assert!(report.chunks_hole > 0);
        let out = dir.path().join("out.raw");
        for threads in [1, 3] {
            let ropts = RestoreOptions {
                threads,
                ..RestoreOptions::default()
            };
            restore_raw(&repo, &report.restore_point, 0, &out, &ropts).unwrap();
            assert!(std::fs::read(&out).unwrap() == expect, "threads {threads}");
        }
        // No temporary objects left behind by the committer.
        let b = LocalBackend::new(dir.path().join("repo")).unwrap();
        assert!(b.temp_files().unwrap().is_empty());
        // A fresh open sees everything (index files written after their packs).
        let again = Repository::open(
            Arc::new(b),
            &cairn_repo::OpenOptions::default(),
            Some(&secret),
        )
        .unwrap();
        restore_raw(
            &again,
            &report.restore_point,
            0,
            &out,
            &RestoreOptions::default(),
        )
        .unwrap();
        assert!(std::fs::read(&out).unwrap() == expect);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 1000]));
        for i in [0usize, 63, 64, 999] {
            let mut v = vec![0u8; 1000];
            v[i] = 1;
            assert!(!is_zero(&v), "{i}");
        }
    }
}
