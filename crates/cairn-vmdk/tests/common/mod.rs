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

/// `qemu-img map --output=json` of the image alone, as an allocation map.
pub fn qemu_map(path: &Path, size: u64) -> AllocationMap {
    cairn_testkit::qemu_map(path, Some("vmdk"), size)
}
