//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use cairn_io::{AllocationMap, RangeKind, ReadAt};

/// Whether `tool` runs; fails the test when it is missing and `CI` is set.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} missing in CI");
        eprintln!("skipped: {tool} not found");
    }
    ok
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

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

/// Reads the whole image in `step`-byte requests.
pub fn read_all(img: &dyn ReadAt, step: usize) -> Vec<u8> {
    let mut out = vec![0u8; usize::try_from(img.size()).unwrap()];
    for (i, c) in out.chunks_mut(step).enumerate() {
        img.read_exact_at(c, (i * step) as u64).unwrap();
    }
    out
}

/// `qemu-img map --output=json` of the image alone, as an allocation map.
pub fn qemu_map(path: &Path, size: u64) -> AllocationMap {
    let out = run("qemu-img", &["map", "--output=json", "-f", "vmdk", p(path)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut m = AllocationMap::new(size);
    for e in v.as_array().unwrap() {
        let depth = e["depth"].as_u64().unwrap();
        let present = e["present"].as_bool().unwrap_or(true);
        let data = e["data"].as_bool().unwrap();
        let zero = e["zero"].as_bool().unwrap();
        let kind = if depth > 0 || !present {
            RangeKind::Unallocated
        } else if data {
            RangeKind::Data
        } else if zero {
            RangeKind::Zero
        } else {
            RangeKind::Unallocated
        };
        m.push(
            e["start"].as_u64().unwrap(),
            e["length"].as_u64().unwrap(),
            kind,
        )
        .unwrap();
    }
    m.finish()
}
