//! Helpers shared by the integration tests: external tools, fixtures, hashes.
#![allow(dead_code, unused_imports)]

use std::path::Path;

use cairn_io::{AllocationMap, Limits, RangeKind, ReadAt};
use cairn_vhd::{write_differencing, DifferencingOptions, VhdImage, VhdParent};

pub use cairn_testkit::{
    have, path_str as p, qemu_img, qemu_img_convert, qemu_img_create, read_all, run_text as run,
    sha256_hex, tempdir_if_have,
};

pub fn have_pyvhdi() -> bool {
    cairn_testkit::have_python_module("pyvhdi")
}

/// Fills `buf` with testkit's deterministic noise from `seed` (seeds 2n and 2n+1 give the
/// same bytes).
pub fn fill_random(buf: &mut [u8], seed: u64) {
    buf.copy_from_slice(&cairn_testkit::random_bytes(seed, buf.len()));
}

/// A raw disk of `size` bytes with random and pattern regions and long zero runs. The three
/// random regions differ, so a read from the wrong one shows.
pub fn sample_disk(size: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; size];
    fill_random(&mut d[..8192], seed);
    let a = size / 3;
    fill_random(&mut d[a..a + 300 * 1024], seed + 2);
    let b = size - size / 4 + 512;
    d[b..b + 7 * 1024].fill(0x5a);
    let end = size - 1024;
    fill_random(&mut d[end..], seed + 4);
    d
}

/// Writes `disk`, whose changes over the VHD at `parent_path` are `changed`, as a
/// differencing child at `child_path` with blocks of `block_size` bytes; returns the parent
/// as opened to name it.
pub fn write_child(
    disk: &dyn ReadAt,
    changed: &AllocationMap,
    parent_path: &Path,
    child_path: &Path,
    block_size: u32,
) -> VhdImage {
    let parent = VhdImage::open(parent_path, &Limits::default()).unwrap();
    let mut opts = DifferencingOptions::default();
    opts.block_size = block_size;
    write_differencing(
        disk,
        changed,
        parent_path,
        &VhdParent::from(&parent),
        child_path,
        &opts,
    )
    .unwrap();
    parent
}

/// The map a backup would give for `disk`: Data where a 64 KiB piece is non-zero.
pub fn data_map(disk: &[u8]) -> AllocationMap {
    let mut m = AllocationMap::new(disk.len() as u64);
    let step = 64 * 1024;
    for (i, c) in disk.chunks(step).enumerate() {
        if c.iter().any(|&b| b != 0) {
            m.push((i * step) as u64, c.len() as u64, RangeKind::Data)
                .unwrap();
        }
    }
    m.finish()
}

/// `qemu-img map -f vpc` of the image alone (see [`cairn_testkit::qemu_map`]) as data
/// ranges (see [`data_ranges`]).
pub fn qemu_data_ranges(image: &Path, size: u64) -> Vec<(u64, u64, bool)> {
    data_ranges(&cairn_testkit::qemu_map(image, Some("vpc"), size))
}

/// A map as (start, length, is Data) triples, neighbours of the same kind merged: qemu and
/// we may cut runs at different places and name a hole Zero or Unallocated.
pub fn data_ranges(map: &AllocationMap) -> Vec<(u64, u64, bool)> {
    let mut ranges: Vec<(u64, u64, bool)> = Vec::new();
    for r in map.runs() {
        let data = r.kind == RangeKind::Data;
        match ranges.last_mut() {
            Some(last) if last.2 == data && last.0 + last.1 == r.offset => last.1 += r.len,
            _ => ranges.push((r.offset, r.len, data)),
        }
    }
    ranges
}
