//! Conversion of any readable disk to raw, VMDK or VHD.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use cairn_io::{write_all_at, AllocationMap, RangeKind, ReadAt, Run};

use crate::{Error, Result};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFormat {
    /// A sparse raw file (holes where the source is zero or unallocated).
    Raw,
    /// VMDK monolithicSparse.
    VmdkMonolithicSparse,
    /// VMDK streamOptimized.
    VmdkStreamOptimized,
    /// VHD fixed.
    VhdFixed,
    /// VHD dynamic.
    VhdDynamic,
}

impl TargetFormat {
    /// Parses `raw`, `vmdk` (+ subformat `monolithicSparse` (default) or `streamOptimized`),
    /// `vhd` (+ `dynamic` (default) or `fixed`).
    pub fn parse(format: &str, subformat: Option<&str>) -> Result<TargetFormat> {
        let sub = subformat.map(str::to_ascii_lowercase);
        match (format.to_ascii_lowercase().as_str(), sub.as_deref()) {
            ("raw", None | Some("raw")) => Ok(TargetFormat::Raw),
            ("vmdk", None | Some("monolithicsparse")) => Ok(TargetFormat::VmdkMonolithicSparse),
            ("vmdk", Some("streamoptimized")) => Ok(TargetFormat::VmdkStreamOptimized),
            ("vhd" | "vpc", None | Some("dynamic")) => Ok(TargetFormat::VhdDynamic),
            ("vhd" | "vpc", Some("fixed")) => Ok(TargetFormat::VhdFixed),
            (f, s) => Err(Error::Unsupported(format!(
                "writing format {f} subformat {}",
                s.unwrap_or("(default)")
            ))),
        }
    }
}

/// Conversion options.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Reader/writer threads for raw output (0 = the number of cores).
    pub threads: usize,
}

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes of data written (holes excluded).
    pub bytes_written: u64,
}

/// The map a writer should follow: `FromParent` becomes `Data` (it must be copied), the
/// rest stays.
pub fn readable_map(map: &AllocationMap) -> AllocationMap {
    let mut out = AllocationMap::new(map.size());
    for r in map.runs() {
        let kind = if r.kind == RangeKind::FromParent {
            RangeKind::Data
        } else {
            r.kind
        };
        // Runs come from a valid map, so pushing them in order cannot fail.
        let _ = out.push(r.offset, r.len, kind);
    }
    out.finish()
}

/// Writes `src` (whose allocation is `map`) to `out` in `target` format. Ranges that the
/// map says are `Zero` or `Unallocated` are never read or written.
pub fn convert(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    target: TargetFormat,
    opts: &ConvertOptions,
) -> Result<ConvertReport> {
    let map = readable_map(map);
    let wrap = |format: &'static str| {
        move |e: Box<dyn std::error::Error + Send + Sync>| Error::Format {
            path: out.to_path_buf(),
            format,
            source: e,
        }
    };
    let data = map.bytes_of(RangeKind::Data);
    match target {
        TargetFormat::Raw => return write_raw(src, &map, out, opts),
        TargetFormat::VmdkMonolithicSparse => cairn_vmdk::write_monolithic_sparse(
            src,
            &map,
            out,
            &cairn_vmdk::WriteOptions::default(),
        )
        .map_err(|e| wrap("vmdk")(e.into()))?,
        TargetFormat::VmdkStreamOptimized => {
            cairn_vmdk::write_stream_optimized(src, &map, out, &cairn_vmdk::WriteOptions::default())
                .map_err(|e| wrap("vmdk")(e.into()))?
        }
        TargetFormat::VhdFixed => {
            cairn_vhd::write_fixed(src, &map, out, &cairn_vhd::FixedOptions::default())
                .map_err(|e| wrap("vhd")(e.into()))?
        }
        TargetFormat::VhdDynamic => {
            cairn_vhd::write_dynamic(src, &map, out, &cairn_vhd::DynamicOptions::default())
                .map_err(|e| wrap("vhd")(e.into()))?
        }
    };
    Ok(ConvertReport {
        bytes_read: data,
        bytes_written: data,
    })
}

/// Size of one unit of work of the raw writer.
const PIECE: u64 = 4 << 20;

/// Cuts the data runs into pieces of at most [`PIECE`] bytes.
fn pieces(map: &AllocationMap) -> Vec<Run> {
    let mut v = Vec::new();
    for r in map.ranges_of(RangeKind::Data) {
        let mut off = r.offset;
        while off < r.end() {
            let len = PIECE.min(r.end() - off);
            v.push(Run {
                offset: off,
                len,
                kind: RangeKind::Data,
                depth: 0,
            });
            off += len;
        }
    }
    v
}

fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.cairn-tmp-{}", std::process::id()))
}

/// Bytes written between two early flushes of the raw output: starting write-back while the
/// copy runs keeps the final fsync short (the disk works during the copy, not after it).
const FLUSH_EVERY: u64 = 256 << 20;

/// Buffers each reader owns: one being filled while the writer writes the other.
const BUFFERS_PER_READER: usize = 2;

/// Most reader threads: one writer cannot absorb more, and each reader holds
/// `BUFFERS_PER_READER` pieces of memory.
const MAX_READERS: usize = 16;

/// A piece read and found non-zero, on its way to the writer.
struct Filled {
    offset: u64,
    len: usize,
    buf: Vec<u8>,
    /// Which reader's pool the buffer goes back to.
    reader: usize,
}

/// True when every byte is zero. Folds 4 KiB blocks with OR (which vectorizes) and stops at
/// the first non-zero block, instead of a byte-wise early-exit loop.
fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Keeps the first error.
fn record(failure: &Mutex<Option<Error>>, e: Error) {
    if let Ok(mut f) = failure.lock() {
        f.get_or_insert(e);
    }
}

/// Parallel sparse raw writer. Reader threads read pieces positionally into buffers of their
/// own and hand the non-zero ones to ONE writer (this thread), which writes them at their
/// offset in order of arrival: a single writer never contends for the output inode's lock,
/// so the second core goes to reading. All-zero pieces are left as holes. Every
/// [`FLUSH_EVERY`] bytes a flusher thread starts write-back (`fdatasync`) of what is written
/// so far, so the fsync before the rename has little left to do.
fn write_raw(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport> {
    let tmp = temp_path(out);
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let r = copy_raw(src, map, &file, &tmp, opts);
    let report = match r.and_then(|rep| {
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        Ok(rep)
    }) {
        Ok(rep) => rep,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(report)
}

/// The copy itself (no final fsync); see [`write_raw`].
fn copy_raw(
    src: &dyn ReadAt,
    map: &AllocationMap,
    file: &File,
    tmp: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport> {
    file.set_len(map.size()).map_err(|e| Error::io(tmp, e))?;
    let work = pieces(map);
    let piece_len = usize::try_from(PIECE).map_err(|_| Error::Unsupported("piece size".into()))?;
    let next = AtomicUsize::new(0);
    let read = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
    } else {
        opts.threads
    }
    .clamp(1, MAX_READERS);
    // The flusher shares the open file description, so a write-back error it sees is
    // recorded here (the final fsync on the same description would not see it again).
    let flush_file = file.try_clone().map_err(|e| Error::io(tmp, e))?;
    let mut written = 0u64;
    std::thread::scope(|s| {
        let (full_tx, full_rx) = mpsc::channel::<Filled>();
        let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
        let failure = &failure;
        s.spawn(move || {
            while flush_rx.recv().is_ok() {
                if let Err(e) = flush_file.sync_data() {
                    record(failure, Error::io(tmp, e));
                    break;
                }
            }
        });
        let mut returns = Vec::with_capacity(threads);
        for reader in 0..threads {
            let (ret_tx, ret_rx) = mpsc::channel::<Vec<u8>>();
            for _ in 0..BUFFERS_PER_READER {
                // Send cannot fail: ret_rx is alive right here.
                let _ = ret_tx.send(vec![0u8; piece_len]);
            }
            returns.push(ret_tx);
            let full_tx = full_tx.clone();
            let (work, next, read, stop) = (&work, &next, &read, &stop);
            s.spawn(move || {
                // Ends when the work is done, on error, or when the writer stops returning
                // buffers (it hit an error and dropped its return senders).
                while let Ok(mut buf) = ret_rx.recv() {
                    let p = loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let Some(p) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return;
                        };
                        let len = usize::try_from(p.len).unwrap_or(piece_len).min(piece_len);
                        let chunk = &mut buf[..len];
                        if let Err(e) = src.read_exact_at(chunk, p.offset) {
                            record(failure, Error::Read(e));
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                        read.fetch_add(p.len, Ordering::Relaxed);
                        if !is_zero(chunk) {
                            break (p.offset, len);
                        }
                    };
                    let filled = Filled {
                        offset: p.0,
                        len: p.1,
                        buf,
                        reader,
                    };
                    if full_tx.send(filled).is_err() {
                        return;
                    }
                }
            });
        }
        drop(full_tx);
        let mut since_flush = 0u64;
        // The writer: runs until every reader has dropped its sender.
        for f in full_rx {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = write_all_at(file, &f.buf[..f.len], f.offset) {
                record(failure, Error::io(tmp, e));
                stop.store(true, Ordering::Relaxed);
                break;
            }
            let n = f.len as u64;
            written += n;
            since_flush += n;
            if since_flush >= FLUSH_EVERY {
                since_flush = 0;
                // Busy flusher: skip this tick, the next one covers it.
                let _ = flush_tx.try_send(());
            }
            if let Some(back) = returns.get(f.reader) {
                let _ = back.send(f.buf);
            }
        }
        // Unblock readers waiting for a buffer and end the flusher.
        drop(returns);
        drop(flush_tx);
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(ConvertReport {
        bytes_read: read.into_inner(),
        bytes_written: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// 14 MiB: a data piece, an all-zero piece, a short tail; the map marks MiB 9-10 `Zero`.
    fn source() -> (Vec<u8>, AllocationMap) {
        let mut data = vec![0u8; 14 * MIB];
        for (i, b) in data[..4 * MIB].iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap_or(1) | 1;
        }
        data[12 * MIB + 7] = 0xAB;
        // Bytes under a `Zero` run must be neither read nor written.
        data[9 * MIB] = 0xFF;
        let mut map = AllocationMap::new(14 * MIB as u64);
        map.push(0, 9 * MIB as u64, RangeKind::Data).unwrap();
        map.push(9 * MIB as u64, MIB as u64, RangeKind::Zero)
            .unwrap();
        map.push(10 * MIB as u64, 4 * MIB as u64, RangeKind::Data)
            .unwrap();
        (data, map.finish())
    }

    #[test]
    fn raw_output_equals_source_outside_zero_runs_any_thread_count() {
        let (data, map) = source();
        let mut want = data.clone();
        want[9 * MIB] = 0;
        for threads in [1, 2, 3, 64] {
            let dir = tempfile::TempDir::new().unwrap();
            let out = dir.path().join("out.raw");
            let rep = convert(
                &data,
                &map,
                &out,
                TargetFormat::Raw,
                &ConvertOptions { threads },
            )
            .unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), want, "threads {threads}");
            assert_eq!(rep.bytes_read, 13 * MIB as u64);
            // Pieces: [0,4) data, [4,8) zero, [8,9) zero, [10,14) data.
            assert_eq!(rep.bytes_written, 8 * MIB as u64);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn read_error_is_typed_and_leaves_no_file() {
        let (mut data, map) = source();
        data.truncate(11 * MIB);
        let dir = tempfile::TempDir::new().unwrap();
        let out = dir.path().join("out.raw");
        let err = convert(
            &data,
            &map,
            &out,
            TargetFormat::Raw,
            &ConvertOptions { threads: 2 },
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Read(cairn_io::Error::OutOfBounds { .. })),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn zero_check() {
        assert!(is_zero(&[]));
        assert!(is_zero(&vec![0u8; 10_000]));
        for at in [0, 4095, 4096, 9_999] {
            let mut v = vec![0u8; 10_000];
            v[at] = 1;
            assert!(!is_zero(&v), "{at}");
        }
    }
}
