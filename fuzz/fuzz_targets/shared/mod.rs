//! Code the fuzz targets share (a module, not a target: gen.sh lists only top-level files).
#![allow(dead_code)]

use std::sync::Arc;

use cairn_fat::{FatFs, FatOptions};
use cairn_io::Limits;
use cairn_vfs::{FileKind, FileSystem, ReadAt};

/// Opens a FAT or exFAT volume from `img` with tight limits, then walks the tree, stats, maps
/// and reads (up to 4 MiB of) every file: the whole read surface a backup touches.
pub fn exercise_fat(img: Vec<u8>) {
    let mut limits = Limits::default();
    limits.max_table_bytes = 16 << 20;
    limits.max_walk_steps = 10_000;
    limits.max_dir_depth = 32;
    let opts = FatOptions::default().with_limits(limits);
    let Ok(fs) = FatFs::open(Arc::new(img), &opts) else {
        return;
    };
    let _ = fs.info();
    let _ = fs.used_map();
    let mut nodes = Vec::new();
    let _ = fs.walk(&mut |_, e| nodes.push((e.id, e.kind)));
    let _ = fs.lookup("/a/B.TXT");
    let mut buf = vec![0u8; 1 << 16];
    for (id, kind) in nodes {
        let _ = fs.metadata(id);
        if kind == FileKind::Dir {
            continue;
        }
        let _ = fs.extents(id, None);
        if let Ok(r) = fs.open(id, None) {
            let mut off = 0u64;
            while off < r.size().min(1 << 22) {
                match r.read_at(&mut buf, off) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
        }
    }
}

/// `payload` inside a valid catalog frame of type `blob_type` (magic, version, length,
/// CRC32), so that a catalog target reaches the payload decoder past the checksum.
pub fn catalog_framed(blob_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = cairn_catalog::MAGIC.to_vec();
    b.extend_from_slice(&cairn_catalog::VERSION.to_le_bytes());
    b.extend_from_slice(&[blob_type, 0]);
    b.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    b.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    b.extend_from_slice(payload);
    b
}
