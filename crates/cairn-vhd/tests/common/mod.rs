//! Helpers shared by the integration tests: external tools, fixtures, hashes.
#![allow(dead_code, unused_imports)]

use std::path::Path;

use cairn_io::{AllocationMap, RangeKind, ReadAt};

pub use cairn_testkit::{have, path_str as p, read_all, run_text as run, sha256_hex};

pub fn have_qemu() -> bool {
    have("qemu-img")
}

pub fn have_pyvhdi() -> bool {
    cairn_testkit::have_python_module("pyvhdi")
}

/// Deterministic pseudo-random bytes (xorshift), so fixtures are reproducible.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
}

/// A raw disk of `size` bytes with random and pattern regions and long zero runs.
pub fn sample_disk(size: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; size];
    fill_random(&mut d[..8192], seed);
    let a = size / 3;
    fill_random(&mut d[a..a + 300 * 1024], seed + 1);
    let b = size - size / 4 + 512;
    d[b..b + 7 * 1024].fill(0x5a);
    let end = size - 1024;
    fill_random(&mut d[end..], seed + 2);
    d
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

/// `qemu-img map --output=json -f vpc` as (start, length, data) triples, merged.
pub fn qemu_data_ranges(image: &Path) -> Vec<(u64, u64, bool)> {
    let out = run("qemu-img", &["map", "--output=json", "-f", "vpc", p(image)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut ranges: Vec<(u64, u64, bool)> = Vec::new();
    for e in v.as_array().unwrap() {
        let start = e["start"].as_u64().unwrap();
        let len = e["length"].as_u64().unwrap();
        let data = e["data"].as_bool().unwrap() && e["depth"].as_u64().unwrap() == 0;
        match ranges.last_mut() {
            Some(last) if last.2 == data && last.0 + last.1 == start => last.1 += len,
            _ => ranges.push((start, len, data)),
        }
    }
    ranges
}

/// Our map as (start, length, is Data) triples, merged the same way.
pub fn our_data_ranges(map: &AllocationMap) -> Vec<(u64, u64, bool)> {
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
