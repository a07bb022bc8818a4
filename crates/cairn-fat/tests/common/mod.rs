//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cairn_fat::FatFs;
use cairn_vfs::{FileKind, FileSystem, ReadAt};

pub use cairn_testkit::{have, sha256_hex as sha256};

/// Runs a command with a fixed environment (UTC, UTF-8, mtools checks off); panics with its
/// stderr on failure; returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/sbin",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What a tree holds: path -> (is_dir, size, sha256 of content; empty for dirs).
pub type Tree = BTreeMap<String, (bool, u64, String)>;

pub fn read_all(r: &dyn ReadAt) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(r.size()).unwrap()];
    r.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// Walks a volume with our reader.
pub fn tree_of(fs: &FatFs) -> Tree {
    let mut entries = Vec::new();
    fs.walk(&mut |p, e| entries.push((p.to_string(), e.clone())))
        .expect("walk");
    let mut t = Tree::new();
    for (p, e) in entries {
        if e.kind == FileKind::Dir {
            t.insert(p, (true, 0, String::new()));
        } else {
            let m = fs.metadata(e.id).unwrap();
            let data = read_all(fs.open(e.id, None).unwrap().as_ref());
            assert_eq!(data.len() as u64, m.size, "{p}");
            t.insert(p, (false, m.size, sha256(&data)));
        }
    }
    t
}

/// Walks a host directory.
pub fn tree_of_dir(root: &Path) -> Tree {
    fn go(root: &Path, dir: &Path, t: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                t.insert(rel, (true, 0, String::new()));
                go(root, &p, t);
            } else {
                let d = std::fs::read(&p).unwrap();
                t.insert(rel, (false, d.len() as u64, sha256(&d)));
            }
        }
    }
    let mut t = Tree::new();
    go(root, root, &mut t);
    t
}

/// TSK `fls -r -p`: path -> inode address, live entries only, TSK's virtual files
/// (`$MBR`, `$FAT1`, volume label...) left out.
pub fn fls(img: &Path) -> BTreeMap<String, (bool, String)> {
    let out = run("fls", &["-r", "-p", img.to_str().unwrap()]);
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let Some((head, path)) = line.split_once(":\t") else {
            continue;
        };
        let mut parts = head.split_whitespace();
        let kind = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        if rest.contains(&"*") || kind.starts_with('v') || kind.starts_with('V') {
            continue;
        }
        if path.starts_with('$') || path.contains("(Volume Label Entry)") {
            continue;
        }
        let addr = rest
            .last()
            .unwrap_or(&"")
            .trim_end_matches("(realloc)")
            .to_string();
        m.insert(format!("/{path}"), (kind.starts_with('d'), addr));
    }
    m
}

/// Deterministic pseudo-random bytes (xorshift64*), so tests need no RNG crate.
pub fn pseudo_random(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}
