//! Conversion of any readable disk to raw, VMDK or VHD.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use cairn_io::{AllocationMap, RangeKind, ReadAt, Run};

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

/// Parallel sparse raw writer: workers read pieces positionally and write them at the same
/// offset; all-zero pieces are left as holes.
fn write_raw(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport> {
    let tmp = temp_path(out);
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.set_len(map.size()).map_err(|e| Error::io(&tmp, e))?;
    let work = pieces(map);
    let next = AtomicUsize::new(0);
    let read = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
    } else {
        opts.threads
    };
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; usize::try_from(PIECE).unwrap_or(4 << 20)];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = work.get(i) else { break };
                    if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                        break;
                    }
                    let len = usize::try_from(p.len).unwrap_or(buf.len());
                    let chunk = &mut buf[..len];
                    let r = src
                        .read_exact_at(chunk, p.offset)
                        .map_err(Error::Read)
                        .and_then(|()| {
                            read.fetch_add(p.len, Ordering::Relaxed);
                            if chunk.iter().all(|&b| b == 0) {
                                return Ok(());
                            }
                            write_all_at(&file, chunk, p.offset).map_err(|e| Error::io(&tmp, e))?;
                            written.fetch_add(p.len, Ordering::Relaxed);
                            Ok(())
                        });
                    if let Err(e) = r {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(ConvertReport {
        bytes_read: read.into_inner(),
        bytes_written: written.into_inner(),
    })
}

fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        while !buf.is_empty() {
            let n = file.write_at(buf, offset)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "short write",
                ));
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            let n = file.seek_write(buf, offset)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "short write",
                ));
            }
            buf = &buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}
