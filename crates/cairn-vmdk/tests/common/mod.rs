//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code, unused_imports)]

use std::path::Path;

use cairn_io::{AllocationMap, RangeKind, ReadAt};

pub use cairn_testkit::{
    have, path_str as p, qemu_img_convert, qemu_img_create, qemu_img_overlay, qemu_io, qemu_raw,
    random_bytes as noise, read_all, run_text as run,
};

/// A raw disk of `mib` MiB with random, zero and pattern regions, some not grain-aligned.
pub fn sample_raw(mib: usize) -> Vec<u8> {
    let mut d = vec![0u8; mib << 20];
    let r = noise(7, 300_000);
    d[4096..4096 + r.len()].copy_from_slice(&r);
    d[(1 << 20) + 100..(2 << 20) - 100].fill(0x5a);
    let r = noise(9, 70_000);
    let at = (3 << 20) + 65_536 - 1000;
    d[at..at + r.len()].copy_from_slice(&r);
    let end = d.len();
    d[end - 512..].fill(0xee);
    d
}

/// The bytes of a VMDK file our writer makes of `src` (streamOptimized when `stream`, else
/// monolithicSparse; default options, every byte allocated).
pub fn written_vmdk(src: &[u8], stream: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("written.vmdk");
    let size = u64::try_from(src.len()).unwrap();
    let map = AllocationMap::uniform(size, RangeKind::Data);
    let opts = cairn_vmdk::WriteOptions::default();
    if stream {
        cairn_vmdk::write_stream_optimized(&src, &map, &out, &opts).unwrap();
    } else {
        cairn_vmdk::write_monolithic_sparse(&src, &map, &out, &opts).unwrap();
    }
    std::fs::read(&out).unwrap()
}

/// `qemu-img map --output=json` of the image alone, as an allocation map.
pub fn qemu_map(path: &Path, size: u64) -> AllocationMap {
    cairn_testkit::qemu_map(path, Some("vmdk"), size)
}
