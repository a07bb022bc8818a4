//! Shared helpers of the integration tests: tool discovery, SHA-256, walking a volume.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_io::{FileReader, ReadAt};
use cairn_ntfs::{NtfsFs, NtfsOptions};
use cairn_vfs::{FileKind, FileSystem};

pub use cairn_testkit::{have, run, sha256_hex as sha256};

/// A fresh NTFS volume of `mib` MiB in the file `img`: `mkntfs` quick format, 4 KiB clusters,
/// no TRIM, with `label` (none when empty).
pub fn mkntfs_image(img: &Path, mib: u64, label: &str) {
    std::fs::File::create(img)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let mut args = vec!["-q", "-F", "-Q", "-T", "-c", "4096"];
    if !label.is_empty() {
        args.extend(["-L", label]);
    }
    args.push(img.to_str().unwrap());
    run("mkntfs", &args);
}

pub fn read_all(r: &dyn ReadAt) -> Vec<u8> {
    let mut v = vec![0u8; usize::try_from(r.size()).unwrap()];
    // Read in odd-sized pieces to cross run and compression-unit boundaries.
    let mut off = 0usize;
    while off < v.len() {
        let n = (v.len() - off).min(65_537);
        r.read_exact_at(&mut v[off..off + n], off as u64).unwrap();
        off += n;
    }
    v
}

pub fn open_img(p: &Path) -> NtfsFs {
    NtfsFs::open(
        Arc::new(FileReader::open(p).unwrap()),
        &NtfsOptions::default(),
    )
    .unwrap()
}

/// One walked item: kind, size, SHA-256 of its bytes (files and streams), link target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: FileKind,
    pub size: u64,
    pub sha: Option<String>,
    pub target: Option<String>,
    pub id: u64,
}

/// Walks every directory from the root; paths are `/a/b`, streams `/a/b:name`.
/// Root-level `$` metadata files are skipped unless `system` is set.
pub fn walk(fs: &NtfsFs, vol: &dyn ReadAt, system: bool) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(fs.root(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for e in fs.read_dir(dir).unwrap() {
            if prefix.is_empty() && e.name.starts_with('$') && !system {
                continue;
            }
            let path = format!("{prefix}/{}", e.name);
            let m = fs.metadata(e.id).unwrap();
            assert_eq!(m.kind, e.kind, "{path}: read_dir kind vs metadata kind");
            let sha = if e.kind == FileKind::File {
                let r = fs.open(e.id, None).unwrap();
                assert_eq!(r.size(), m.size, "{path}");
                let bytes = read_all(&*r);
                check_extents(fs, vol, e.id, None, &bytes);
                Some(sha256(&bytes))
            } else {
                None
            };
            for s in &m.streams {
                let r = fs.open(e.id, Some(&s.name)).unwrap();
                let bytes = read_all(&*r);
                check_extents(fs, vol, e.id, Some(&s.name), &bytes);
                out.insert(
                    format!("{path}:{}", s.name),
                    Item {
                        kind: FileKind::File,
                        size: s.size,
                        sha: Some(sha256(&bytes)),
                        target: None,
                        id: e.id,
                    },
                );
            }
            if e.kind == FileKind::Dir {
                stack.push((e.id, path.clone()));
            }
            out.insert(
                path,
                Item {
                    kind: e.kind,
                    size: m.size,
                    sha,
                    target: m.symlink_target.clone(),
                    id: e.id,
                },
            );
        }
    }
    out
}

/// Extents must cover [0, size) in order; plain extents must read back the same bytes
/// from the volume image.
pub fn check_extents(fs: &NtfsFs, vol: &dyn ReadAt, id: u64, stream: Option<&str>, bytes: &[u8]) {
    let ext = fs.extents(id, stream).unwrap();
    let mut pos = 0u64;
    for e in &ext {
        assert_eq!(e.file_offset, pos, "extents of {id:#x} are contiguous");
        let want = &bytes[usize::try_from(e.file_offset).unwrap()
            ..usize::try_from(e.file_offset + e.len).unwrap()];
        match (e.volume_offset, e.encoded) {
            (Some(v), false) => {
                let got = vol.read_vec_at(v, want.len()).unwrap();
                assert!(
                    got == want,
                    "extent at {} of {id:#x} reads back differently",
                    e.file_offset
                );
            }
            (None, _) => assert!(
                want.iter().all(|&b| b == 0),
                "hole at {} of {id:#x} is not zero",
                e.file_offset
            ),
            (Some(_), true) => {}
        }
        pos += e.len;
    }
    assert_eq!(pos, bytes.len() as u64, "extents of {id:#x} cover the size");
}

pub fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
pub fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

pub struct Geo {
    pub cs: usize,
    pub mft_off: usize,
    pub rs: usize,
}

pub fn geo(img: &[u8]) -> Geo {
    let cs = usize::from(u16_at(img, 0x0B)) * usize::from(img[0x0D]);
    let rs = 1usize << (-i32::from(i8::from_le_bytes([img[0x40]]))).clamp(0, 16);
    Geo {
        cs,
        mft_off: usize::try_from(u64_at(img, 0x30)).unwrap() * cs,
        rs,
    }
}

/// Undoes the update sequence array of a multi-sector record.
pub fn unfix(b: &mut [u8]) {
    let (off, n) = (usize::from(u16_at(b, 4)), usize::from(u16_at(b, 6)));
    for i in 1..n {
        let end = i * 512 - 2;
        b[end] = b[off + 2 * i];
        b[end + 1] = b[off + 2 * i + 1];
    }
}

/// Re-applies the update sequence array (sector ends get the sequence number).
pub fn refix(b: &mut [u8]) {
    let (off, n) = (usize::from(u16_at(b, 4)), usize::from(u16_at(b, 6)));
    refix_with(b, off, n);
}

pub fn refix_with(b: &mut [u8], off: usize, n: usize) {
    for i in 1..n {
        let end = i * 512 - 2;
        b[off + 2 * i] = b[end];
        b[off + 2 * i + 1] = b[end + 1];
        b[end] = b[off];
        b[end + 1] = b[off + 1];
    }
}

/// Edits MFT record `n` (fixups undone while `f` runs); the fresh image's $MFT is contiguous.
pub fn edit_record(img: &mut [u8], n: u64, f: impl FnOnce(&mut [u8])) {
    let g = geo(img);
    let start = g.mft_off + usize::try_from(n).unwrap() * g.rs;
    let rec = &mut img[start..start + g.rs];
    unfix(rec);
    let (off, n) = (usize::from(u16_at(rec, 4)), usize::from(u16_at(rec, 6)));
    f(rec);
    refix_with(rec, off, n);
}

/// Offset of the first attribute of `ty` in a (fixed-up) record.
pub fn find_attr(rec: &[u8], ty: u32) -> usize {
    let mut off = usize::from(u16_at(rec, 0x14));
    loop {
        let t = u32_at(rec, off);
        assert_ne!(t, 0xFFFF_FFFF, "attribute {ty:#x} not found");
        if t == ty {
            return off;
        }
        off += usize::try_from(u32_at(rec, off + 4)).unwrap();
    }
}
