//! Images made by qemu-img / qemu-io, read back and compared with qemu's own answers.
// Test fixtures are a few MiB: offsets and lengths fit every integer type used here.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ParentExpectation, RangeKind, ReadAt};
use cairn_qcow2::Qcow2Image;
use common::*;

fn open(p: &Path) -> Qcow2Image {
    Qcow2Image::open(p, &Limits::default()).unwrap()
}

/// testkit's sample disk converted by qemu-img to `dir/disk.qcow2` with `opts`: (the raw
/// disk, the image's path).
fn sample_qcow2(dir: &Path, opts: &[&str]) -> (Vec<u8>, PathBuf) {
    let raw = dir.join("disk.raw");
    let disk = sample_disk();
    std::fs::write(&raw, &disk).unwrap();
    let q = dir.join("disk.qcow2");
    qemu_img_convert(&raw, "raw", &q, "qcow2", opts);
    (disk, q)
}

/// raw -> qcow2 with `opts`; our read equals the raw disk, our map equals qemu's.
fn convert_and_check(opts: &[&str], want_subformat: &str) {
    let Some(dir) = tempdir_if_have(&["qemu-img"]) else {
        return;
    };
    let (disk, q) = sample_qcow2(dir.path(), opts);
    let img = open(&q);
    assert_eq!(img.size(), disk.len() as u64);
    assert_eq!(img.subformat(), want_subformat);
    assert!(img.parent_link().is_none());
    assert!(
        read_all(&img) == disk,
        "full read differs from the raw disk"
    );
    check_odd_reads(&img, &disk);
    let ours = img.layer_map().unwrap();
    let theirs = qemu_map(&q, img.size());
    assert_eq!(ours.runs(), theirs.runs());
    assert!(ours.bytes_of(RangeKind::Data) > 0);
    // Unallocated ranges of a converted raw are exactly its zero areas.
    for r in ours.ranges_of(RangeKind::Unallocated) {
        let (a, b) = (r.offset as usize, r.end() as usize);
        assert!(
            disk[a..b].iter().all(|&x| x == 0),
            "hole {a}..{b} is not zero"
        );
    }
}

#[test]
fn v3_plain_equals_raw() {
    convert_and_check(&[], "v3");
}

#[test]
fn v3_compressed_equals_raw() {
    convert_and_check(&["-c"], "v3");
}

#[test]
fn v2_compat_010_equals_raw() {
    convert_and_check(&["-o", "compat=0.10"], "v2");
}

#[test]
fn small_clusters_and_compressed_v2() {
    convert_and_check(&["-c", "-o", "compat=0.10,cluster_size=4096"], "v2");
}

#[test]
fn zstd_compressed_equals_raw() {
    convert_and_check(&["-c", "-o", "compression_type=zstd"], "v3");
}

#[test]
fn zstd_small_clusters() {
    convert_and_check(
        &["-c", "-o", "compression_type=zstd,cluster_size=4096"],
        "v3",
    );
}

#[test]
fn large_clusters() {
    convert_and_check(&["-o", "cluster_size=2M"], "v3");
}

#[test]
fn zero_clusters_and_backing_chain() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let raw = dir.path().join("base.raw");
    std::fs::write(&raw, sample_disk()).unwrap();
    let base = dir.path().join("base.qcow2");
    qemu_img_convert(&raw, "raw", &base, "qcow2", &[]);
    let top = dir.path().join("top.qcow2");
    qemu_img_overlay(&top, "qcow2", s(&base), "qcow2");
    qemu_io(
        &top,
        "qcow2",
        &[
            "write -P 0xcd 1M 64k",
            "write -z 4M 64k",
            "write -P 0x11 300k 5k",
            "write -z 5M 1M",
        ],
    );
    let expected = qemu_raw(&top, "qcow2");

    let mut img = open(&top);
    let link = img.parent_link().unwrap();
    assert_eq!(link.hints, vec![s(&base).to_string()]);
    assert_eq!(link.expect, ParentExpectation::Nothing);
    assert_eq!(img.backing_format(), Some("qcow2"));
    // The layer alone agrees with qemu's depth-0 view, including zero clusters.
    let ours = img.layer_map().unwrap();
    assert_eq!(ours.runs(), qemu_map(&top, img.size()).runs());
    assert!(ours.bytes_of(RangeKind::Zero) >= 64 * 1024);

    img.attach_parent(Arc::new(open(&base))).unwrap();
    assert!(
        read_all(&img) == expected,
        "chain read differs from qemu-img convert"
    );
    check_odd_reads(&img, &expected);
}

#[test]
fn raw_backing_file() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let raw = dir.path().join("base.raw");
    // A parent smaller than the child: the child reads zeros past its end.
    std::fs::write(&raw, random_bytes(9, 3 << 20)).unwrap();
    let top = dir.path().join("top.qcow2");
    qemu_img_create(&top, "qcow2", "5M", &["-b", s(&raw), "-F", "raw"]);
    qemu_io(&top, "qcow2", &["write -P 0x42 2900k 200k"]);
    let expected = qemu_raw(&top, "qcow2");
    let mut img = open(&top);
    assert_eq!(img.backing_format(), Some("raw"));
    img.attach_parent(RawLayer::open(&raw)).unwrap();
    assert!(read_all(&img) == expected);
    check_odd_reads(&img, &expected);
}

#[test]
fn unattached_child_reads_zeros_where_unallocated() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let base = dir.path().join("base.qcow2");
    qemu_img_create(&base, "qcow2", "2M", &[]);
    qemu_io(&base, "qcow2", &["write -P 0x77 0 2M"]);
    let top = dir.path().join("top.qcow2");
    qemu_img_overlay(&top, "qcow2", s(&base), "qcow2");
    qemu_io(&top, "qcow2", &["write -P 0x99 64k 64k"]);
    let img = open(&top);
    let all = read_all(&img);
    assert!(all[..65536].iter().all(|&b| b == 0));
    assert!(all[65536..131072].iter().all(|&b| b == 0x99));
    assert!(all[131072..].iter().all(|&b| b == 0));
}

#[test]
fn persistent_dirty_bitmaps() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let q = dir.path().join("bm.qcow2");
    qemu_img_create(&q, "qcow2", "8M", &[]);
    qemu_img(&["bitmap", "--add", s(&q), "b0"]);
    qemu_img(&["bitmap", "--add", "-g", "4096", s(&q), "fine"]);
    // qemu-io opens the image read-write, loads the enabled persistent bitmaps, marks the
    // written ranges and stores the bitmaps back when it closes.
    qemu_io(
        &q,
        "qcow2",
        &[
            "write -P 1 1M 64k",
            "write -P 2 5M 4k",
            "write -P 3 8188k 4k",
        ],
    );
    // A disabled bitmap does not see later writes.
    qemu_img(&["bitmap", "--add", "--disable", s(&q), "off"]);
    qemu_io(&q, "qcow2", &["write -P 4 2M 4k"]);

    let img = open(&q);
    let bitmaps = img.dirty_bitmaps().unwrap();
    let names: Vec<_> = bitmaps.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["b0", "fine", "off"]);
    let dirty = |i: usize| -> Vec<(u64, u64)> {
        bitmaps[i]
            .map
            .ranges_of(RangeKind::Data)
            .map(|r| (r.offset, r.len))
            .collect()
    };
    const K: u64 = 1024;
    const M: u64 = 1024 * K;
    let b0 = &bitmaps[0];
    assert_eq!(b0.granularity, 64 * K);
    assert!(b0.enabled && !b0.in_use);
    assert_eq!(
        dirty(0),
        vec![
            (M, 64 * K),
            (2 * M, 64 * K),
            (5 * M, 64 * K),
            (8 * M - 64 * K, 64 * K)
        ]
    );
    assert_eq!(bitmaps[1].granularity, 4 * K);
    assert_eq!(
        dirty(1),
        vec![
            (M, 64 * K),
            (2 * M, 4 * K),
            (5 * M, 4 * K),
            (8 * M - 4 * K, 4 * K)
        ]
    );
    assert!(!bitmaps[2].enabled);
    assert_eq!(dirty(2), vec![]);
    assert_eq!(b0.map.size(), 8 * M);
}

#[test]
fn no_bitmaps_is_empty() {
    let Some(dir) = tempdir_if_have(&["qemu-img"]) else {
        return;
    };
    let q = dir.path().join("x.qcow2");
    qemu_img_create(&q, "qcow2", "1M", &[]);
    assert!(open(&q).dirty_bitmaps().unwrap().is_empty());
    assert!(!open(&q).is_dirty());
}

#[test]
fn tiny_l2_cache_evicts_and_still_reads() {
    let Some(dir) = tempdir_if_have(&["qemu-img"]) else {
        return;
    };
    let (disk, q) = sample_qcow2(dir.path(), &["-o", "cluster_size=512"]);
    // 512-byte clusters: each L2 table maps 32 KiB, so the disk has ~200 of them; a 4 KiB
    // table budget leaves the minimum cache of 4 tables.
    let mut limits = Limits::default();
    limits.max_table_bytes = 4096;
    let img = Qcow2Image::open(&q, &limits).unwrap();
    assert!(read_all(&img) == disk);
    check_odd_reads(&img, &disk);
    assert_eq!(
        img.layer_map().unwrap().runs(),
        qemu_map(&q, img.size()).runs()
    );
}

/// qemu killed while the image is open (`qemu-io -c abort`): with lazy refcounts the image
/// is left dirty, and the loaded bitmap is left in use. The data written is still read, and
/// the bitmap reports the whole disk dirty.
#[test]
fn crashed_writer_leaves_dirty_image_and_in_use_bitmap() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let q = dir.path().join("crash.qcow2");
    qemu_img_create(&q, "qcow2", "8M", &["-o", "lazy_refcounts=on"]);
    qemu_img(&["bitmap", "--add", s(&q), "b0"]);
    // qemu-io aborts (SIGABRT) on purpose: its exit status is not success. It runs in the
    // temporary folder so that a core dump, if enabled, lands there.
    let _ = std::process::Command::new("qemu-io")
        .current_dir(dir.path())
        .args([
            "-c",
            "write -P 0x3c 1M 64k",
            "-c",
            "flush",
            "-c",
            "abort",
            s(&q),
        ])
        .output()
        .unwrap();
    let img = open(&q);
    assert!(img.is_dirty(), "lazy refcounts leave the dirty bit set");
    let mut buf = vec![0u8; 65536];
    img.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&b| b == 0x3c));
    let b = img.dirty_bitmaps().unwrap();
    assert_eq!(b.len(), 1);
    assert!(b[0].in_use);
    assert_eq!(b[0].map.bytes_of(RangeKind::Data), 8 << 20);
}
