//! Shared helpers: external tools, fixture data, a raw parent layer.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_io::{AllocationMap, DiskIdentity, DiskLayer, FileReader, ParentLink, RangeKind, ReadAt};

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

/// A raw disk of about 6 MiB (not a multiple of 64 KiB): random, zero and pattern areas,
/// with small writes that straddle cluster boundaries.
pub fn sample_disk() -> Vec<u8> {
    const MIB: usize = 1 << 20;
    let size = 6 * MIB + 3584;
    let mut d = vec![0u8; size];
    d[..MIB].copy_from_slice(&random_bytes(1, MIB));
    d[2 * MIB..2 * MIB + 512 * 1024].fill(0x5a);
    let r = random_bytes(2, 3000);
    d[3 * MIB - 1000..3 * MIB + 2000].copy_from_slice(&r);
    d[4 * MIB + 65536 - 7..4 * MIB + 65536 + 9].fill(0xee);
    let tail = random_bytes(3, 5000);
    d[size - 5000..].copy_from_slice(&tail);
    d
}

/// Reads all of `img` in 1 MiB requests.
pub fn read_all(img: &dyn ReadAt) -> Vec<u8> {
    let mut out = vec![0u8; usize::try_from(img.size()).unwrap()];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        img.read_exact_at(chunk, (i as u64) << 20).unwrap();
    }
    out
}

/// Reads `img` in odd-sized requests at odd offsets and compares with `want`.
pub fn check_odd_reads(img: &dyn ReadAt, want: &[u8]) {
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

/// `qemu-img map --output=json` of the image alone as (offset, len, kind) runs: depth 0
/// data = Data; depth 0 present zero = Zero; the rest Unallocated.
pub fn qemu_map(path: &Path, size: u64) -> AllocationMap {
    let out = run(
        "qemu-img",
        &["map", "--output=json", path.to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let mut m = AllocationMap::new(size);
    for r in v.as_array().unwrap() {
        let start = r["start"].as_u64().unwrap();
        let len = r["length"].as_u64().unwrap();
        let depth = r["depth"].as_u64().unwrap();
        let present = r["present"].as_bool().unwrap_or(true);
        let kind = if depth != 0 || !present {
            RangeKind::Unallocated
        } else if r["data"].as_bool().unwrap() {
            RangeKind::Data
        } else {
            RangeKind::Zero
        };
        m.push(start, len, kind).unwrap();
    }
    m.finish()
}

/// A raw file as a layer (the lead's vdisk has its own; this one is for chain tests).
#[derive(Debug)]
pub struct RawLayer(pub FileReader);

impl RawLayer {
    pub fn open(p: &Path) -> Arc<dyn DiskLayer> {
        Arc::new(RawLayer(FileReader::open(p).unwrap()))
    }
}

impl ReadAt for RawLayer {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

impl DiskLayer for RawLayer {
    fn format(&self) -> &'static str {
        "raw"
    }
    fn subformat(&self) -> String {
        String::new()
    }
    fn identity(&self) -> DiskIdentity {
        DiskIdentity::default()
    }
    fn parent_link(&self) -> Option<ParentLink> {
        None
    }
    fn attach_parent(
        &mut self,
        _: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("raw has no parent".into())
    }
    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AllocationMap::uniform(self.size(), RangeKind::Data))
    }
}
