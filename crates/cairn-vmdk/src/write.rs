//! Writers: monolithicSparse (header, embedded descriptor, redundant + primary grain
//! directory and tables, grains) and streamOptimized (header, descriptor, compressed grain
//! markers, grain-table markers, grain directory, footer, end-of-stream).
//!
//! Only grains that intersect `Data` / `FromParent` runs of the map and are not all zeros
//! are stored; everything else stays an unallocated grain.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use cairn_io::{AllocationMap, RangeKind, ReadAt};

use crate::descriptor::{Access, Descriptor, ExtentLine, ExtentType, NO_PARENT_CID};
use crate::error::{Error, Result};
use crate::header::*;

/// Grain-table entries per table, as VMware and qemu write them.
const GTES_PER_GT: u64 = 512;
/// Sectors reserved for the embedded descriptor (qemu and VMware use 20).
const DESCRIPTOR_SECTORS: u64 = 20;
/// Largest capacity a hosted sparse extent can address: grain and table offsets are u32
/// sectors, so the file itself must stay below 2 TiB.
const MAX_HOSTED_FILE_BYTES: u64 = (u32::MAX as u64) * SECTOR;
/// Largest grain-table array the monolithicSparse writer keeps in memory (2 TiB at 64 KiB
/// grains needs 128 MiB).
const MAX_WRITER_TABLE_BYTES: u64 = 256 << 20;

/// Indices of the grains that intersect `Data` / `FromParent` runs, ascending, each once.
fn data_grains(map: &AllocationMap, grain: u64) -> impl Iterator<Item = u64> + '_ {
    let mut next = 0u64;
    map.runs()
        .iter()
        .filter(|r| matches!(r.kind, RangeKind::Data | RangeKind::FromParent))
        .flat_map(move |r| {
            let first = (r.offset / grain).max(next);
            let last = (r.end() - 1) / grain;
            next = next.max(last + 1);
            first..=last
        })
}

/// Virtual controller recorded in `ddb.adapterType` (it also picks the geometry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterType {
    /// IDE: 16 heads, 63 sectors per track.
    #[default]
    Ide,
    /// LSI Logic SCSI: 255 heads, 63 sectors per track.
    LsiLogic,
}

/// Options of [`write_monolithic_sparse`] and [`write_stream_optimized`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Grain size in bytes: a power of two from 4 KiB to 1 MiB (default 64 KiB).
    pub grain_bytes: u64,
    /// Adapter type and geometry.
    pub adapter: AdapterType,
    /// `ddb.uuid.image`, written when set.
    pub uuid: Option<[u8; 16]>,
    /// `CID`; random when `None`.
    pub cid: Option<u32>,
    /// Deflate level 0..=9 for streamOptimized (default 6).
    pub compression_level: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            grain_bytes: 64 << 10,
            adapter: AdapterType::Ide,
            uuid: None,
            cid: None,
            compression_level: 6,
        }
    }
}

fn random_cid() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    let v = u32::try_from(h.finish() & 0xffff_ffff).unwrap_or(1);
    // ffffffff means "no parent" in parentCID; never use it as a CID.
    if v == NO_PARENT_CID {
        1
    } else {
        v
    }
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

struct Plan {
    capacity: u64,
    grain: u64,
    grain_sectors: u64,
    descriptor: Vec<u8>,
}

fn plan(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &WriteOptions,
    create_type: &str,
) -> Result<Plan> {
    let grain = opts.grain_bytes;
    if !grain.is_power_of_two() || !(4096..=(1 << 20)).contains(&grain) {
        return Err(Error::BadWriteInput(format!(
            "grain size {grain} (power of two, 4 KiB..=1 MiB)"
        )));
    }
    if opts.compression_level > 9 {
        return Err(Error::BadWriteInput("compression level above 9".into()));
    }
    if map.size() != src.size() {
        return Err(Error::BadWriteInput(format!(
            "map covers {} bytes, source has {}",
            map.size(),
            src.size()
        )));
    }
    let capacity = src.size().div_ceil(SECTOR) * SECTOR;
    if capacity == 0 || capacity > MAX_HOSTED_FILE_BYTES {
        return Err(Error::BadWriteInput(format!(
            "capacity {capacity} bytes (1 sector..=2 TiB for a hosted sparse file)"
        )));
    }
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::BadWriteInput(format!("{}: no UTF-8 file name", out.display())))?;
    if name.contains(['"', '\0', '\n', '\r']) {
        return Err(Error::BadWriteInput(format!(
            "file name {name:?} cannot be quoted"
        )));
    }
    let data_grains = data_grains(map, grain).count() as u64;
    // Fail before writing anything when the data cannot fit a hosted sparse file.
    let worst = data_grains
        .checked_mul(grain)
        .and_then(|b| b.checked_add(capacity / 1024 + (1 << 20)));
    if worst.is_none_or(|b| b > MAX_HOSTED_FILE_BYTES) {
        return Err(Error::BadWriteInput(format!(
            "{data_grains} grains of data do not fit the 2 TiB limit of a hosted sparse file"
        )));
    }
    let gt_bytes = capacity.div_ceil(grain) * 4;
    if gt_bytes > MAX_WRITER_TABLE_BYTES {
        return Err(Error::BadWriteInput(format!(
            "grain tables of {gt_bytes} bytes; use a larger grain"
        )));
    }
    let sectors = capacity / SECTOR;
    let (heads, spt) = match opts.adapter {
        AdapterType::Ide => (16u64, 63u64),
        AdapterType::LsiLogic => (255, 63),
    };
    let cylinders = (sectors / (heads * spt)).clamp(1, 16383);
    let mut ddb = BTreeMap::new();
    ddb.insert("ddb.virtualHWVersion".to_string(), "4".to_string());
    ddb.insert("ddb.geometry.cylinders".to_string(), cylinders.to_string());
    ddb.insert("ddb.geometry.heads".to_string(), heads.to_string());
    ddb.insert("ddb.geometry.sectors".to_string(), spt.to_string());
    ddb.insert(
        "ddb.adapterType".to_string(),
        match opts.adapter {
            AdapterType::Ide => "ide",
            AdapterType::LsiLogic => "lsilogic",
        }
        .to_string(),
    );
    if let Some(u) = &opts.uuid {
        ddb.insert("ddb.uuid.image".to_string(), uuid_text(u));
    }
    let d = Descriptor {
        version: Some(1),
        cid: Some(opts.cid.unwrap_or_else(random_cid)),
        parent_cid: Some(NO_PARENT_CID),
        create_type: Some(create_type.to_string()),
        parent_file_name_hint: None,
        extents: vec![ExtentLine {
            access: Access::ReadWrite,
            sectors,
            kind: ExtentType::Sparse,
            file: Some(name.to_string()),
            offset_sectors: 0,
        }],
        ddb,
    };
    let mut descriptor = d.render().into_bytes();
    if descriptor.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
        return Err(Error::BadWriteInput("descriptor longer than 10 KiB".into()));
    }
    descriptor.resize(usize::try_from(DESCRIPTOR_SECTORS * SECTOR).unwrap_or(0), 0);
    Ok(Plan {
        capacity,
        grain,
        grain_sectors: grain / SECTOR,
        descriptor,
    })
}

/// Reads grain `g` of the source (zero-padded past its end); `None` when all zeros.
fn read_grain(src: &dyn ReadAt, p: &Plan, g: u64, buf: &mut [u8]) -> Result<bool> {
    let start = g * p.grain;
    let n = p.grain.min(src.size().saturating_sub(start));
    let n = usize::try_from(n).unwrap_or(0);
    buf[n..].fill(0);
    src.read_exact_at(&mut buf[..n], start)?;
    Ok(buf.iter().any(|&b| b != 0))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::File {
        path: path.to_path_buf(),
        source,
    }
}

fn temp_for(out: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".cairn-vmdk-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir))
}

fn commit(tmp: tempfile::NamedTempFile, out: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(io_err(out))?;
    tmp.persist(out).map_err(|e| Error::File {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename durable; some platforms cannot open folders, which is fine.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn u32_sector(v: u64) -> Result<u32> {
    u32::try_from(v / SECTOR)
        .map_err(|_| Error::BadWriteInput(format!("offset {v} does not fit a 32-bit sector")))
}

/// Writes `src` as a monolithicSparse VMDK at `out` (via a temporary file in the same
/// folder, fsync, rename). Grains outside `Data`/`FromParent` runs of `map`, and all-zero
/// grains, stay unallocated.
pub fn write_monolithic_sparse(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &WriteOptions,
) -> Result<()> {
    let p = plan(src, map, out, opts, "monolithicSparse")?;
    let total_grains = p.capacity.div_ceil(p.grain);
    let gd_entries = total_grains.div_ceil(GTES_PER_GT);
    let gd_sectors = (gd_entries * 4).div_ceil(SECTOR);
    let gt_sectors = GTES_PER_GT * 4 / SECTOR;
    let rgd = 1 + DESCRIPTOR_SECTORS;
    let rgt = rgd + gd_sectors;
    let gd = rgt + gd_entries * gt_sectors;
    let gt = gd + gd_sectors;
    let overhead = (gt + gd_entries * gt_sectors).div_ceil(p.grain_sectors) * p.grain_sectors;

    let tmp = temp_for(out)?;
    let mut f = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let err = io_err(out);
    f.seek(SeekFrom::Start(overhead * SECTOR)).map_err(&err)?;
    // Bounded by MAX_WRITER_TABLE_BYTES in plan().
    let mut gtes = vec![0u32; usize::try_from(total_grains).unwrap_or(0)];
    let mut next = overhead * SECTOR;
    let mut buf = vec![0u8; usize::try_from(p.grain).unwrap_or(0)];
    for g in data_grains(map, p.grain) {
        if !read_grain(src, &p, g, &mut buf)? {
            continue;
        }
        gtes[usize::try_from(g).unwrap_or(0)] = u32_sector(next)?;
        f.write_all(&buf).map_err(&err)?;
        next += p.grain;
    }
    u32_sector(next)?;
    let header = HostedHeader {
        magic: KDMV_MAGIC,
        version: 1,
        flags: FLAG_NL_TEST | FLAG_REDUNDANT_GD,
        capacity: p.capacity / SECTOR,
        grain_size: p.grain_sectors,
        descriptor_offset: 1,
        descriptor_size: DESCRIPTOR_SECTORS,
        num_gtes_per_gt: 512,
        rgd_offset: rgd,
        gd_offset: gd,
        overhead,
        unclean_shutdown: 0,
        compress_algorithm: 0,
    };
    let mut meta = Vec::with_capacity(usize::try_from(overhead * SECTOR).unwrap_or(0));
    meta.extend_from_slice(&header.encode());
    meta.extend_from_slice(&p.descriptor);
    for tables in [rgt, gt] {
        let mut dir = Vec::new();
        for i in 0..gd_entries {
            dir.extend_from_slice(
                &u32::try_from(tables + i * gt_sectors)
                    .unwrap_or(0)
                    .to_le_bytes(),
            );
        }
        dir.resize(usize::try_from(gd_sectors * SECTOR).unwrap_or(0), 0);
        meta.extend_from_slice(&dir);
        let mut t: Vec<u8> = gtes.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.resize(
            usize::try_from(gd_entries * gt_sectors * SECTOR).unwrap_or(0),
            0,
        );
        meta.extend_from_slice(&t);
    }
    meta.resize(usize::try_from(overhead * SECTOR).unwrap_or(0), 0);
    f.seek(SeekFrom::Start(0)).map_err(&err)?;
    f.write_all(&meta).map_err(&err)?;
    f.flush().map_err(&err)?;
    drop(f);
    tmp.as_file().set_len(next).map_err(&err)?;
    commit(tmp, out)
}

fn marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0..8].copy_from_slice(&sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// Writes `src` as a streamOptimized VMDK at `out`: deflate-compressed grains behind grain
/// markers, a grain table after each 512-grain group that has data, then the grain
/// directory, the footer and the end-of-stream marker. Holes and all-zero grains are not
/// stored.
pub fn write_stream_optimized(
    src: &dyn ReadAt,
    map: &AllocationMap,
    out: &Path,
    opts: &WriteOptions,
) -> Result<()> {
    let p = plan(src, map, out, opts, "streamOptimized")?;
    let total_grains = p.capacity.div_ceil(p.grain);
    let gd_entries = total_grains.div_ceil(GTES_PER_GT);
    let overhead = (1 + DESCRIPTOR_SECTORS).div_ceil(p.grain_sectors) * p.grain_sectors;
    let mut header = HostedHeader {
        magic: KDMV_MAGIC,
        version: 3,
        flags: FLAG_NL_TEST | FLAG_COMPRESSED | FLAG_MARKERS,
        capacity: p.capacity / SECTOR,
        grain_size: p.grain_sectors,
        descriptor_offset: 1,
        descriptor_size: DESCRIPTOR_SECTORS,
        num_gtes_per_gt: 512,
        rgd_offset: 0,
        gd_offset: GD_AT_END,
        overhead,
        unclean_shutdown: 0,
        compress_algorithm: COMPRESS_DEFLATE,
    };
    let tmp = temp_for(out)?;
    let err = io_err(out);
    let mut f = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let mut pos = 0u64;
    let mut put = |f: &mut BufWriter<&File>, b: &[u8]| -> Result<u64> {
        let at = pos;
        f.write_all(b).map_err(io_err(out))?;
        pos += b.len() as u64;
        Ok(at)
    };
    put(&mut f, &header.encode())?;
    put(&mut f, &p.descriptor)?;
    let pad = usize::try_from(overhead * SECTOR - pos_after_descriptor()).unwrap_or(0);
    put(&mut f, &vec![0u8; pad])?;
    let mut gd = vec![0u32; usize::try_from(gd_entries).unwrap_or(0)];
    let mut buf = vec![0u8; usize::try_from(p.grain).unwrap_or(0)];
    let level = flate2::Compression::new(opts.compression_level);
    let mut grains = data_grains(map, p.grain).peekable();
    for t in 0..gd_entries {
        let mut table = [0u32; 512];
        let mut any = false;
        let end = (t + 1) * GTES_PER_GT;
        while let Some(g) = grains.next_if(|&g| g < end) {
            if !read_grain(src, &p, g, &mut buf)? {
                continue;
            }
            let mut z = flate2::write::ZlibEncoder::new(Vec::with_capacity(buf.len() / 2), level);
            z.write_all(&buf).map_err(&err)?;
            let packed = z.finish().map_err(&err)?;
            let mut rec = Vec::with_capacity(packed.len() + 12 + 512);
            rec.extend_from_slice(&(g * p.grain_sectors).to_le_bytes());
            rec.extend_from_slice(
                &u32::try_from(packed.len())
                    .unwrap_or(u32::MAX)
                    .to_le_bytes(),
            );
            rec.extend_from_slice(&packed);
            rec.resize(
                usize::try_from((rec.len() as u64).div_ceil(SECTOR) * SECTOR).unwrap_or(0),
                0,
            );
            let at = put(&mut f, &rec)?;
            table[usize::try_from(g - t * GTES_PER_GT).unwrap_or(0)] = u32_sector(at)?;
            any = true;
        }
        if any {
            put(&mut f, &marker(GTES_PER_GT * 4 / SECTOR, MARKER_GT))?;
            let bytes: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
            let at = put(&mut f, &bytes)?;
            gd[usize::try_from(t).unwrap_or(0)] = u32_sector(at)?;
        }
    }
    let gd_sectors = (gd_entries * 4).div_ceil(SECTOR);
    put(&mut f, &marker(gd_sectors, MARKER_GD))?;
    let mut dir: Vec<u8> = gd.iter().flat_map(|v| v.to_le_bytes()).collect();
    dir.resize(usize::try_from(gd_sectors * SECTOR).unwrap_or(0), 0);
    let gd_at = put(&mut f, &dir)?;
    header.gd_offset = gd_at / SECTOR;
    u32_sector(gd_at)?;
    put(&mut f, &marker(1, MARKER_FOOTER))?;
    put(&mut f, &header.encode())?;
    put(&mut f, &marker(0, MARKER_EOS))?;
    f.flush().map_err(&err)?;
    drop(f);
    commit(tmp, out)
}

fn pos_after_descriptor() -> u64 {
    (1 + DESCRIPTOR_SECTORS) * SECTOR
}
