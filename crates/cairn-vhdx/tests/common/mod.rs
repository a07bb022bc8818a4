//! Shared helpers: external tools, fixture data.
#![allow(dead_code)]

use std::process::Command;

/// True when `tool` runs. Missing: fails under CI, skips otherwise.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} not found (required under CI)"
        );
        eprintln!("skipped: {tool} not found");
    }
    ok
}

/// Runs a command and panics with its stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A raw disk of about 6 MiB (not a multiple of the 1 MiB block): random, zero and
/// pattern areas, with small writes that straddle block boundaries.
pub fn sample_disk() -> Vec<u8> {
    const MIB: usize = 1 << 20;
    let size = 6 * MIB + 3584;
    let mut d = vec![0u8; size];
    d[..MIB].copy_from_slice(&random_bytes(1, MIB));
    d[2 * MIB..2 * MIB + 512 * 1024].fill(0x5a);
    let r = random_bytes(2, 3000);
    d[3 * MIB - 1000..3 * MIB + 2000].copy_from_slice(&r);
    let tail = random_bytes(3, 5000);
    d[size - 5000..].copy_from_slice(&tail);
    d
}

/// Reads all of `img` in 1 MiB requests.
pub fn read_all(img: &dyn cairn_io::ReadAt) -> Vec<u8> {
    let mut out = vec![0u8; usize::try_from(img.size()).unwrap()];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        img.read_exact_at(chunk, (i as u64) << 20).unwrap();
    }
    out
}

/// Reads `img` in odd-sized requests at odd offsets and compares with `want`.
pub fn check_odd_reads(img: &dyn cairn_io::ReadAt, want: &[u8]) {
    let mut off = 0usize;
    let mut step = 1usize;
    while off < want.len() {
        let len = (step * 4099 % 200_000 + 1).min(want.len() - off);
        let mut buf = vec![0u8; len];
        img.read_exact_at(&mut buf, off as u64).unwrap();
        assert!(buf == want[off..off + len], "mismatch at {off}+{len}");
        off += len;
        step += 1;
    }
}

pub const KIB: usize = 1024;
pub const H1: usize = 64 * KIB;
pub const H2: usize = 128 * KIB;
pub const R1: usize = 192 * KIB;
pub const R2: usize = 256 * KIB;

pub fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
pub fn get32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
pub fn get64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
pub fn fix_crc(b: &mut [u8], o: usize, len: usize) {
    put32(b, o + 4, 0);
    let c = crc32c::crc32c(&b[o..o + len]);
    put32(b, o + 4, c);
}

pub const BAT_GUID: [u8; 16] = [
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
];
pub const FILE_PARAMS_GUID: [u8; 16] = [
    0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b,
];
pub const LOGICAL_SECTOR_GUID: [u8; 16] = [
    0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f,
];
pub const SIZE_GUID: [u8; 16] = [
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
];

/// (BAT offset, metadata region offset) from region table 1.
pub fn regions(f: &[u8]) -> (usize, usize) {
    let n = get32(f, R1 + 8) as usize;
    let (mut bat, mut meta) = (0, 0);
    for i in 0..n {
        let e = R1 + 16 + i * 32;
        let off = get64(f, e + 16) as usize;
        if f[e..e + 16] == BAT_GUID {
            bat = off;
        } else {
            meta = off;
        }
    }
    (bat, meta)
}

/// Offset in the file of the metadata item with `guid` and its table entry.
pub fn meta_item(f: &[u8], guid: &[u8; 16]) -> (usize, usize) {
    let (_, meta) = regions(f);
    let n = usize::from(u16::from_le_bytes([f[meta + 10], f[meta + 11]]));
    for i in 0..n {
        let e = meta + 32 + i * 32;
        if &f[e..e + 16] == guid {
            return (meta + get32(f, e + 16) as usize, e);
        }
    }
    panic!("no such item")
}
