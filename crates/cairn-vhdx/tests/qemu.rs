//! VHDX images made by qemu-img / qemu-io, read back and compared with the raw source.
// Test fixtures are a few MiB: offsets and lengths fit every integer type used here.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;

use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhdx::VhdxImage;
use common::*;

fn open(p: &Path) -> VhdxImage {
    VhdxImage::open(p, &Limits::default()).unwrap()
}

fn convert(opts: &[&str]) -> Option<(tempfile::TempDir, Vec<u8>, VhdxImage)> {
    let dir = tempdir_if_have(&["qemu-img"])?;
    let raw = dir.path().join("disk.raw");
    let disk = sample_disk();
    std::fs::write(&raw, &disk).unwrap();
    let v = dir.path().join("disk.vhdx");
    qemu_img_convert(&raw, "raw", &v, "vhdx", opts);
    let img = open(&v);
    Some((dir, disk, img))
}

/// Every Data range holds what was written; every other range of the raw disk is zero.
fn check_map_against(img: &VhdxImage, disk: &[u8]) {
    let map = img.layer_map().unwrap();
    map.validate().unwrap();
    assert_eq!(map.size(), disk.len() as u64);
    for r in map.runs() {
        if r.kind != RangeKind::Data {
            let (a, b) = (r.offset as usize, r.end() as usize);
            assert!(
                disk[a..b].iter().all(|&x| x == 0),
                "{:?} {a}..{b} is not zero",
                r.kind
            );
        }
    }
}

#[test]
fn dynamic_equals_raw() {
    let Some((_d, disk, img)) = convert(&[]) else {
        return;
    };
    assert_eq!(img.subformat(), "dynamic");
    assert_eq!(img.size(), disk.len() as u64);
    assert!(img.parent_link().is_none());
    assert!(read_all(&img) == disk);
    check_odd_reads(&img, &disk);
    check_map_against(&img, &disk);
    let id = img.identity();
    assert!(id.uuid.is_some());
    let cid = id.content_id.unwrap();
    assert_eq!(cid.len(), 36);
    assert_eq!(cid, cid.to_lowercase());
}

#[test]
fn dynamic_small_blocks_equals_raw() {
    let Some((_d, disk, img)) = convert(&["-o", "block_size=1M"]) else {
        return;
    };
    assert_eq!(img.block_size(), 1 << 20);
    assert!(read_all(&img) == disk);
    check_odd_reads(&img, &disk);
    check_map_against(&img, &disk);
    let map = img.layer_map().unwrap();
    // qemu leaves the blocks that are entirely zero unallocated: exactly the others are Data.
    let data: Vec<_> = map
        .ranges_of(RangeKind::Data)
        .map(|r| (r.offset >> 20, r.end().div_ceil(1 << 20)))
        .collect();
    let mut want = Vec::new();
    for (b, blk) in disk.chunks(1 << 20).enumerate() {
        if blk.iter().any(|&x| x != 0) {
            want.push(b as u64);
        }
    }
    let mut got = Vec::new();
    for (a, e) in data {
        got.extend(a..e);
    }
    assert_eq!(got, want);
}

#[test]
fn fixed_equals_raw() {
    let Some((_d, disk, img)) = convert(&["-o", "subformat=fixed"]) else {
        return;
    };
    assert_eq!(img.subformat(), "fixed");
    assert!(read_all(&img) == disk);
    check_odd_reads(&img, &disk);
    let map = img.layer_map().unwrap();
    assert_eq!(map.bytes_of(RangeKind::Data), disk.len() as u64);
}

#[test]
fn qemu_io_writes_and_zero_blocks() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let v = dir.path().join("w.vhdx");
    qemu_vhdx(
        &v,
        &[
            "write -P 0xab 1M 64k",
            "write -P 0xcd 3583k 2k",
            "write -P 0xee 7M 1M",
            "write -z 7M 1M",
        ],
    );
    let expected = qemu_raw(&v, "vhdx");
    let img = open(&v);
    assert!(read_all(&img) == expected);
    check_odd_reads(&img, &expected);
    check_map_against(&img, &expected);
    let map = img.layer_map().unwrap();
    assert_eq!(map.clip(1 << 20, 1)[0].kind, RangeKind::Data);
    assert_eq!(map.clip(3 << 20, 1)[0].kind, RangeKind::Data);
    // qemu-img create marks blocks ZERO (block_state_zero=on).
    assert_eq!(map.clip(0, 1)[0].kind, RangeKind::Zero);
}

/// SHA-256 of the whole virtual disk, read in 1 MiB requests.
fn sha256_of(img: &dyn ReadAt) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < img.size() {
        let n = (img.size() - off).min(buf.len() as u64) as usize;
        img.read_exact_at(&mut buf[..n], off).unwrap();
        ctx.update(&buf[..n]);
        off += n as u64;
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// libvhdi's view (python3-libvhdi under /usr/bin/python3): size, identifier, parent
/// identifier and file name, and the disk's SHA-256 when `hash`.
fn libvhdi(p: &Path, hash: bool) -> Option<Vec<String>> {
    let script = r#"
import sys, hashlib, pyvhdi
f = pyvhdi.file(); f.open(sys.argv[1])
print(f.media_size); print(f.identifier); print(f.parent_identifier); print(f.parent_filename)
if sys.argv[2] == "1":
    h = hashlib.sha256(); left = f.media_size
    while left > 0:
        b = f.read_buffer(min(left, 1 << 20)); h.update(b); left -= len(b)
    print(h.hexdigest())
"#;
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script, s(p), if hash { "1" } else { "0" }])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("skipped libvhdi: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

/// Images made by Hyper-V, Disk2VHD or with a dirty log, when the lead's sample script has
/// fetched them (`CAIRN_SAMPLES_DIR`).
#[test]
fn real_world_samples() {
    let Some(dir) = std::env::var_os("CAIRN_SAMPLES_DIR") else {
        eprintln!("skipped: CAIRN_SAMPLES_DIR not set");
        return;
    };
    let dir = Path::new(&dir);
    let mut seen = 0;
    for name in [
        "iotest-dynamic-1G.vhdx",
        "test-disk2vhd.vhdx",
        "iotest-dirtylog-10G-4M.vhdx",
        "dynamic.vhdx",
        "fixed.vhdx",
    ] {
        let p = dir.join(name);
        if !p.exists() {
            continue;
        }
        seen += 1;
        let img = VhdxImage::open(&p, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let map = img.layer_map().unwrap();
        // Read every Data range back (sparse samples are large virtually).
        let mut buf = vec![0u8; 1 << 20];
        for r in map.ranges_of(RangeKind::Data) {
            let mut off = r.offset;
            while off < r.end() {
                let n = (r.end() - off).min(buf.len() as u64) as usize;
                img.read_exact_at(&mut buf[..n], off).unwrap();
                off += n as u64;
            }
        }
        if let Some(v) = libvhdi(&p, img.size() <= 1 << 30) {
            assert_eq!(v[0], img.size().to_string(), "{name}: size");
            // libvhdi's "identifier" is the header's DataWriteGuid.
            assert_eq!(
                Some(v[1].clone()),
                img.identity().content_id,
                "{name}: content id"
            );
            if v.len() > 4 {
                assert_eq!(
                    v[4],
                    sha256_of(&img),
                    "{name}: SHA-256 differs from libvhdi"
                );
            }
        }
        if name == "iotest-dirtylog-10G-4M.vhdx" {
            // qemu-iotests 070: after replay, 18 MiB of 0xa5 at offset 0.
            assert!(img.log_replayed());
            let mut b = vec![0u8; 18 << 20];
            img.read_exact_at(&mut b, 0).unwrap();
            assert!(b.iter().all(|&x| x == 0xa5));
        }
    }
    let p = dir.join("differencing.avhdx");
    if p.exists() {
        seen += 1;
        let img = open(&p);
        assert_eq!(img.subformat(), "differencing");
        let link = img.parent_link().unwrap();
        assert!(!link.hints.is_empty());
        assert!(matches!(
            link.expect,
            cairn_io::ParentExpectation::ContentId(_)
        ));
        img.layer_map().unwrap();
        if let Some(v) = libvhdi(&p, false) {
            assert_eq!(Some(v[1].clone()), img.identity().content_id);
            // libvhdi's parent identifier is parent_linkage; its parent file name is the
            // absolute Win32 path.
            assert_eq!(
                link.expect,
                cairn_io::ParentExpectation::ContentId(v[2].clone())
            );
            assert!(link.hints.contains(&v[3]));
        }
    }
    eprintln!("{seen} samples checked");
}
