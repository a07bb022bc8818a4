//! The writers: fixed, dynamic and differencing VHDs from a source and its allocation map.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_io::{AllocationMap, RangeKind, ReadAt};

use crate::footer::{DiskType, Footer, Geometry, NO_DATA_OFFSET, VHD_EPOCH_UNIX};
use crate::header::{DynamicHeader, LocatorEntry, PlatformCode, HEADER_LEN};
use crate::image::{SECTOR, UNALLOCATED};
use crate::{Error, VhdImage};

/// Largest disk a VHD may describe: 2040 GiB (the specification's limit; qemu refuses
/// larger dynamic disks).
pub const MAX_VHD_SIZE: u64 = 2040 << 30;
/// Default block size of dynamic and differencing disks (what Hyper-V and qemu use).
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// Largest block size the writers accept (the default `max_unit_bytes` of readers).
pub const MAX_WRITE_BLOCK_SIZE: u32 = 256 << 20;
/// Creator application written into footers. Not one of qemu's CHS-sized creators
/// ("vpc ", "qemu"), so qemu also takes the footer's current size.
pub const CREATOR_APP: [u8; 4] = *b"crn ";
/// Bytes read from the source at once.
const IO_CHUNK: u64 = 1 << 20;

/// Options of [`write_fixed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FixedOptions {
    /// Unique id of the new disk; random when `None`.
    pub unique_id: Option<[u8; 16]>,
}

/// Options of [`write_dynamic`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamicOptions {
    /// Block size: a power of two from 512 bytes to [`MAX_WRITE_BLOCK_SIZE`].
    pub block_size: u32,
    /// Unique id of the new disk; random when `None`.
    pub unique_id: Option<[u8; 16]>,
}

impl Default for DynamicOptions {
    fn default() -> Self {
        DynamicOptions {
            block_size: DEFAULT_BLOCK_SIZE,
            unique_id: None,
        }
    }
}

/// Options of [`write_differencing`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DifferencingOptions {
    /// Block size: a power of two from 512 bytes to [`MAX_WRITE_BLOCK_SIZE`].
    pub block_size: u32,
    /// Unique id of the new disk; random when `None`.
    pub unique_id: Option<[u8; 16]>,
}

impl Default for DifferencingOptions {
    fn default() -> Self {
        DifferencingOptions {
            block_size: DEFAULT_BLOCK_SIZE,
            unique_id: None,
        }
    }
}

/// What a differencing disk records about its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VhdParent {
    /// The parent's footer unique id.
    pub unique_id: [u8; 16],
    /// The parent's modification time in seconds since 2000-01-01 UTC; when `None` the
    /// parent file's mtime is used (0 if unreadable).
    pub modified: Option<u32>,
}

impl VhdParent {
    /// A parent known by its unique id.
    pub fn new(unique_id: [u8; 16]) -> Self {
        VhdParent {
            unique_id,
            modified: None,
        }
    }
}

impl From<&VhdImage> for VhdParent {
    fn from(image: &VhdImage) -> Self {
        VhdParent::new(image.footer().unique_id)
    }
}

fn now_vhd() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(unix.saturating_sub(VHD_EPOCH_UNIX)).unwrap_or(u32::MAX)
}

/// A random (version 4) UUID from the process's randomly keyed hasher, time and a counter:
/// unique enough for a disk id without a dependency.
fn random_uuid() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_exact_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

fn footer_for(size: u64, disk_type: DiskType, data_offset: u64, uid: Option<[u8; 16]>) -> Footer {
    Footer {
        features: 2,
        format_version: 0x0001_0000,
        data_offset,
        timestamp: now_vhd(),
        creator_app: CREATOR_APP,
        creator_version: 0x0001_0000,
        creator_os: *b"Wi2k",
        original_size: size,
        current_size: size,
        geometry: Geometry::for_size(size),
        disk_type,
        unique_id: uid.unwrap_or_else(random_uuid),
        saved_state: 0,
    }
}

fn check_source(src: &dyn ReadAt, map: &AllocationMap) -> Result<u64, Error> {
    let size = src.size();
    if map.size() != size {
        return Err(Error::MapSizeMismatch {
            map_size: map.size(),
            source_size: size,
        });
    }
    if !size.is_multiple_of(SECTOR) {
        return Err(Error::BadWriteSize {
            size,
            reason: "not a multiple of 512 bytes",
        });
    }
    if size > MAX_VHD_SIZE {
        return Err(Error::BadWriteSize {
            size,
            reason: "larger than the 2040 GiB a VHD can hold",
        });
    }
    Ok(size)
}

fn check_block_size(bs: u32) -> Result<u64, Error> {
    if !bs.is_power_of_two() || u64::from(bs) < SECTOR || bs > MAX_WRITE_BLOCK_SIZE {
        return Err(Error::BadOption(
            "block_size must be a power of two from 512 bytes to 256 MiB",
        ));
    }
    Ok(u64::from(bs))
}

/// A file being written next to its destination, renamed into place on success and
/// removed on failure.
struct Staged {
    file: File,
    tmp: PathBuf,
    out: PathBuf,
    done: bool,
}

impl Staged {
    fn create(out: &Path) -> Result<Staged, Error> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = out
            .file_name()
            .ok_or(Error::BadOption("output path has no file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = out.with_file_name(tmp_name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| Error::File {
                path: tmp.clone(),
                source,
            })?;
        Ok(Staged {
            file,
            tmp,
            out: out.to_path_buf(),
            done: false,
        })
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::File {
            path: self.tmp.clone(),
            source,
        }
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), Error> {
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.write_all(data))
            .map_err(|e| self.err(e))
    }

    fn set_len(&mut self, len: u64) -> Result<(), Error> {
        self.file.set_len(len).map_err(|e| self.err(e))
    }

    fn commit(mut self) -> Result<(), Error> {
        self.file.sync_all().map_err(|e| self.err(e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| self.err(e))?;
        self.done = true;
        // Make the rename durable; some platforms cannot open a directory, which is fine.
        if let Some(dir) = self.out.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a fixed VHD of `src` to `out`: the virtual disk flat, then the footer. Only
/// `Data` ranges of `map` that are not all zeros are written; the rest stays a hole in the
/// host file (reads as zeros).
///
/// The size of `src` must be a multiple of 512 and at most [`MAX_VHD_SIZE`].
pub fn write_fixed(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &FixedOptions,
) -> Result<(), Error> {
    let size = check_source(src, map)?;
    let mut st = Staged::create(out)?;
    st.set_len(size + SECTOR)?;
    let mut buf = vec![0u8; usize::try_from(IO_CHUNK).unwrap_or(1 << 20)];
    for run in map.ranges_of(RangeKind::Data) {
        let mut pos = run.offset;
        while pos < run.end() {
            let n = (run.end() - pos).min(IO_CHUNK);
            let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
            src.read_exact_at(chunk, pos)?;
            if chunk.iter().any(|&b| b != 0) {
                st.write_at(chunk, pos)?;
            }
            pos += n;
        }
    }
    let footer = footer_for(size, DiskType::Fixed, NO_DATA_OFFSET, opts.unique_id);
    st.write_at(&footer.encode(), size)?;
    st.commit()
}

/// Writes a dynamic VHD of `src` to `out`. Blocks that hold no non-zero `Data` byte are
/// left unallocated; inside an allocated block only `Data` ranges are written (the rest
/// stays a hole in the host file). Every sector bitmap bit of an allocated block is set, as
/// qemu and Hyper-V do.
pub fn write_dynamic(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &DynamicOptions,
) -> Result<(), Error> {
    let size = check_source(src, map)?;
    let bs = check_block_size(opts.block_size)?;
    write_sparse(SparseJob {
        src,
        map,
        out,
        size,
        block_size: bs,
        unique_id: opts.unique_id,
        parent: None,
    })
}

/// Writes a differencing VHD to `out` whose own data are the `Data` and `Zero` ranges of
/// `changed_map`, read from `src_child_content` (the child's full virtual content); every
/// other range reads from the parent. A VHD cannot say "zero" without storing it, so
/// `Zero` ranges become present sectors that read as zeros (holes in the host file).
/// Ranges are widened to whole sectors, read from `src_child_content`.
///
/// The parent is recorded as: its unique id (`parent`), a `W2ru` locator with the path
/// relative to the folder of `out` (Windows separators), a `W2ku` locator with the
/// absolute path, and its file name as the header's parent unicode name.
pub fn write_differencing(
    src_child_content: &dyn ReadAt,
    changed_map: &AllocationMap,
    parent_path: &Path,
    parent: &VhdParent,
    out: &Path,
    opts: &DifferencingOptions,
) -> Result<(), Error> {
    let size = check_source(src_child_content, changed_map)?;
    let bs = check_block_size(opts.block_size)?;
    let file_err = |source| Error::File {
        path: parent_path.to_path_buf(),
        source,
    };
    let abs = std::path::absolute(parent_path).map_err(file_err)?;
    let abs = abs.canonicalize().unwrap_or(abs);
    let out_dir = std::path::absolute(out)
        .map_err(|source| Error::File {
            path: out.to_path_buf(),
            source,
        })?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let out_dir = out_dir.canonicalize().unwrap_or(out_dir);
    let relative = relative_windows_path(&out_dir, &abs);
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modified = parent.modified.unwrap_or_else(|| {
        std::fs::metadata(parent_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| {
                u32::try_from(d.as_secs().saturating_sub(VHD_EPOCH_UNIX)).unwrap_or(u32::MAX)
            })
    });
    write_sparse(SparseJob {
        src: src_child_content,
        map: changed_map,
        out,
        size,
        block_size: bs,
        unique_id: opts.unique_id,
        parent: Some(ParentRecord {
            unique_id: parent.unique_id,
            modified,
            name,
            relative,
            absolute: abs.to_string_lossy().into_owned(),
        }),
    })
}

/// `target` relative to `from_dir`, with `\` separators and a leading `.\` as Hyper-V
/// writes W2ru locators.
fn relative_windows_path(from_dir: &Path, target: &Path) -> String {
    let from: Vec<Component<'_>> = from_dir.components().collect();
    let to: Vec<Component<'_>> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec![".".into()];
    parts.extend(std::iter::repeat_n("..".to_string(), from.len() - common));
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.len() > 1 && parts[1] == ".." {
        parts.remove(0);
    }
    parts.join("\\")
}

struct ParentRecord {
    unique_id: [u8; 16],
    modified: u32,
    name: String,
    relative: String,
    absolute: String,
}

struct SparseJob<'a> {
    src: &'a dyn ReadAt,
    map: &'a AllocationMap,
    out: &'a Path,
    size: u64,
    block_size: u64,
    unique_id: Option<[u8; 16]>,
    parent: Option<ParentRecord>,
}

fn round_up_sector(n: u64) -> u64 {
    n.div_ceil(SECTOR) * SECTOR
}

fn write_sparse(job: SparseJob<'_>) -> Result<(), Error> {
    let differencing = job.parent.is_some();
    let bs = job.block_size;
    let entries = job.size.div_ceil(bs);
    let entries_u32 = u32::try_from(entries).map_err(|_| Error::BadWriteSize {
        size: job.size,
        reason: "needs more than 2^32 blocks",
    })?;
    let bitmap_len = round_up_sector((bs / SECTOR).div_ceil(8));
    let header_at = SECTOR;
    let bat_at = header_at + HEADER_LEN as u64;
    let bat_len = round_up_sector(entries * 4);
    let mut next = bat_at + bat_len;

    // Parent locators: UTF-16 LE paths, each in whole sectors after the BAT.
    let mut locators = Vec::new();
    let mut locator_data = Vec::new();
    if let Some(p) = &job.parent {
        for (slot, (code, text)) in [
            (PlatformCode::W2ku, &p.absolute),
            (PlatformCode::W2ru, &p.relative),
        ]
        .into_iter()
        .enumerate()
        {
            let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
            let len = u32::try_from(bytes.len())
                .ok()
                .filter(|&l| l <= crate::image::MAX_LOCATOR_BYTES)
                .ok_or(Error::BadOption("parent path too long for a locator"))?;
            let space = round_up_sector(u64::from(len).max(1));
            locators.push((
                slot,
                LocatorEntry {
                    code,
                    // Windows writes the space in bytes (the specification says sectors).
                    data_space: u32::try_from(space).unwrap_or(u32::MAX),
                    data_len: len,
                    data_offset: next,
                },
            ));
            locator_data.push((next, bytes));
            next += space;
        }
    }

    let mut st = Staged::create(job.out)?;
    let mut bat = vec![UNALLOCATED; usize::try_from(entries).unwrap_or(0)];
    let mut buf = vec![0u8; usize::try_from(IO_CHUNK.min(bs)).unwrap_or(1 << 20)];
    let full_bitmap = vec![0xffu8; usize::try_from(bitmap_len).unwrap_or(0)];

    for block in 0..entries {
        let start = block * bs;
        let len = bs.min(job.size - start);
        let runs: Vec<(u64, u64)> = job
            .map
            .clip(start, len)
            .into_iter()
            .filter(|r| match r.kind {
                RangeKind::Data => true,
                RangeKind::Zero => differencing,
                _ => false,
            })
            .map(|r| {
                // Whole sectors: a differencing bitmap marks sectors.
                let s = r.offset / SECTOR * SECTOR;
                let e = round_up_sector(r.end()).min(start + len);
                (s, e)
            })
            .collect();
        if runs.is_empty() {
            continue;
        }
        let mut block_at: Option<u64> = None;
        let mut bitmap = vec![0u8; usize::try_from(bitmap_len).unwrap_or(0)];
        if differencing {
            // Allocation is decided by the map alone: zeros here hide the parent's bytes.
            block_at = Some(next);
            next += bitmap_len + bs;
        }
        let mut last_end = 0u64;
        for &(s, e) in &runs {
            let s = s.max(last_end);
            if s >= e {
                continue;
            }
            last_end = e;
            for sector in (s - start) / SECTOR..(e - start) / SECTOR {
                let i = usize::try_from(sector / 8).unwrap_or(0);
                bitmap[i] |= 0x80 >> (sector % 8);
            }
            let mut pos = s;
            while pos < e {
                let n = (e - pos).min(buf.len() as u64);
                let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
                job.src.read_exact_at(chunk, pos)?;
                let is_zero = chunk.iter().all(|&b| b == 0);
                if !is_zero || differencing {
                    let at = match block_at {
                        Some(a) => a,
                        None => {
                            let a = next;
                            next += bitmap_len + bs;
                            block_at = Some(a);
                            a
                        }
                    };
                    if !is_zero {
                        st.write_at(chunk, at + bitmap_len + (pos - start))?;
                    }
                }
                pos += n;
            }
        }
        if let Some(at) = block_at {
            let bm = if differencing { &bitmap } else { &full_bitmap };
            st.write_at(bm, at)?;
            let sector = u32::try_from(at / SECTOR).map_err(|_| Error::BadWriteSize {
                size: job.size,
                reason: "image file would exceed 2 TiB of sectors addressable by the BAT",
            })?;
            bat[usize::try_from(block).unwrap_or(0)] = sector;
        }
    }

    let disk_type = if differencing {
        DiskType::Differencing
    } else {
        DiskType::Dynamic
    };
    let footer = footer_for(job.size, disk_type, header_at, job.unique_id).encode();
    let (parent_unique_id, parent_timestamp, parent_name) = match &job.parent {
        Some(p) => (p.unique_id, p.modified, p.name.clone()),
        None => ([0u8; 16], 0, String::new()),
    };
    let header = DynamicHeader {
        table_offset: bat_at,
        header_version: 0x0001_0000,
        max_table_entries: entries_u32,
        block_size: u32::try_from(bs).unwrap_or(DEFAULT_BLOCK_SIZE),
        parent_unique_id,
        parent_timestamp,
        parent_name,
        locators,
    };
    let mut bat_bytes: Vec<u8> = bat.iter().flat_map(|e| e.to_be_bytes()).collect();
    // Unused BAT tail entries in the last sector are 0xFFFFFFFF, as qemu writes them.
    bat_bytes.resize(usize::try_from(bat_len).unwrap_or(0), 0xff);
    st.write_at(&footer, 0)?;
    st.write_at(&header.encode(), header_at)?;
    st.write_at(&bat_bytes, bat_at)?;
    for (at, data) in &locator_data {
        st.write_at(data, *at)?;
    }
    st.set_len(next)?;
    st.write_at(&footer, next)?;
    st.commit()
}
