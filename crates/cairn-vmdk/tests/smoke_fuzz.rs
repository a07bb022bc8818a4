//! A short deterministic mutation run over valid images, doing what the `vmdk_sparse` fuzz
//! target does: open, map, read everything. Nothing may panic or hang.

mod common;

use std::sync::Arc;

use cairn_io::{AllocationMap, DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vmdk::{write_monolithic_sparse, write_stream_optimized, VmdkImage, WriteOptions};
use common::*;

fn exercise(data: Vec<u8>) {
    let mut limits = Limits::default();
    limits.max_table_bytes = 1 << 20;
    limits.max_unit_bytes = 1 << 20;
    let Ok(img) = VmdkImage::from_reader(Arc::new(data), &limits) else {
        return;
    };
    let _ = img.layer_map();
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0;
    while off < img.size() && off < (4 << 20) {
        let _ = img.read_at(&mut buf, off);
        off += buf.len() as u64;
    }
}

#[test]
fn mutated_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = noise(1, 512 << 10);
    src[100_000..300_000].fill(0);
    let map = AllocationMap::uniform(src.len() as u64, RangeKind::Data);
    let mut opts = WriteOptions::default();
    opts.grain_bytes = 4096;
    let a = dir.path().join("a.vmdk");
    let b = dir.path().join("b.vmdk");
    write_monolithic_sparse(&src, &map, &a, &opts).unwrap();
    write_stream_optimized(&src, &map, &b, &opts).unwrap();
    let seeds = [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()];
    let mut rng = noise(99, 4 * 3000);
    for (i, chunk) in rng.chunks_mut(4).enumerate() {
        let mut d = seeds[i % 2].clone();
        // Hit the header and metadata most of the time, anywhere sometimes.
        let span = if chunk[3] < 200 { 40 * 512 } else { d.len() };
        let at = (usize::from(chunk[0]) << 8 | usize::from(chunk[1])) * 7 % span;
        d[at] ^= chunk[2] | 1;
        if chunk[3] % 5 == 0 {
            let cut = at.max(1);
            d.truncate(cut);
        }
        exercise(d);
    }
}
