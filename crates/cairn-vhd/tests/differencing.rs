//! Differencing disks we write, read by libvhdi (pyvhdi with `set_parent`) and by us.
//! qemu ignores VHD parents, so it cannot be the oracle here.
// Test fixtures are a few MiB: offsets always fit in usize and bytes are meant to wrap.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use cairn_io::{AllocationMap, DiskLayer, Limits, ParentExpectation, RangeKind, ReadAt};
use cairn_vhd::{write_dynamic, DynamicOptions, VhdImage};
use common::*;

const SIZE: usize = 8 << 20;

struct Chain {
    _dir: tempfile::TempDir,
    parent_path: std::path::PathBuf,
    child_path: std::path::PathBuf,
    parent_disk: Vec<u8>,
    child_disk: Vec<u8>,
    changed: AllocationMap,
}

/// A dynamic parent and a differencing child (block size `bs`) holding: an unaligned
/// random patch, a zeroed range over parent data (must hide it), and a `Zero` run.
fn make_chain(bs: u32, parent_bs: u32) -> Chain {
    let dir = tempfile::tempdir().unwrap();
    let parent_disk = sample_disk(SIZE, 3);
    let parent_path = dir.path().join("parent.vhd");
    let mut popts = DynamicOptions::default();
    popts.block_size = parent_bs;
    write_dynamic(&parent_disk, &data_map(&parent_disk), &parent_path, &popts).unwrap();

    let mut child_disk = parent_disk.clone();
    let mut changed = AllocationMap::new(SIZE as u64);
    // Unaligned patch straddling a block boundary (widened to sectors by the writer).
    let (a, alen) = ((2 << 20) - 1000, 5000);
    fill_random(&mut child_disk[a..a + alen], 99);
    changed
        .push(a as u64, alen as u64, RangeKind::Data)
        .unwrap();
    // Zeros written over parent data (the parent's random area at SIZE/3).
    let z = SIZE / 3 / 4096 * 4096;
    child_disk[z..z + 8192].fill(0);
    changed.push(z as u64, 8192, RangeKind::Data).unwrap();
    // A Zero run over parent data.
    let z2 = z + 65536;
    child_disk[z2..z2 + 4096].fill(0);
    changed.push(z2 as u64, 4096, RangeKind::Zero).unwrap();
    // Data at the very end.
    let e = SIZE - 512;
    child_disk[e..].fill(0x77);
    changed.push(e as u64, 512, RangeKind::Data).unwrap();
    let changed = changed.finish();

    let child_path = dir.path().join("child.vhd");
    write_child(&child_disk, &changed, &parent_path, &child_path, bs);
    Chain {
        _dir: dir,
        parent_path,
        child_path,
        parent_disk,
        child_disk,
        changed,
    }
}

#[test]
fn libvhdi_reads_our_differencing_chain() {
    if !have_pyvhdi() {
        return;
    }
    // libvhdi (20210425) returns parent bytes for present all-zero sectors when one read
    // spans several sector ranges of a non-2 MiB block; reading one sector per call avoids
    // that bug, so the oracle reads sector by sector.
    let script = "import sys, hashlib, pyvhdi\n\
        parent = pyvhdi.file(); parent.open(sys.argv[1])\n\
        child = pyvhdi.file(); child.open(sys.argv[2]); child.set_parent(parent)\n\
        size = child.get_media_size(); h = hashlib.sha256()\n\
        for off in range(0, size, 512): h.update(child.read_buffer_at_offset(512, off))\n\
        print(size, h.hexdigest(), child.get_parent_filename())\n";
    for bs in [2u32 << 20, 512 << 10, 64 << 10, 4096] {
        let c = make_chain(bs, bs.max(512 << 10));
        let out = run(
            "/usr/bin/python3",
            &["-c", script, p(&c.parent_path), p(&c.child_path)],
        );
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields[0], SIZE.to_string());
        assert_eq!(fields[1], sha256_hex(&c.child_disk), "block size {bs}");
        assert_eq!(fields[2], "parent.vhd");
    }
}

#[test]
fn our_reader_follows_the_parent_and_reads_zeros_without_it() {
    let c = make_chain(2 << 20, 2 << 20);
    let limits = Limits::default();
    let parent = VhdImage::open(&c.parent_path, &limits).unwrap();
    let mut child = VhdImage::open(&c.child_path, &limits).unwrap();
    assert_eq!(child.subformat(), "differencing");

    let link = child.parent_link().unwrap();
    assert_eq!(
        link.expect,
        ParentExpectation::Uuid(parent.footer().unique_id)
    );
    // Relative first (W2ru), then absolute (W2ku), then the header's parent name.
    assert_eq!(link.hints[0], ".\\parent.vhd");
    assert_eq!(
        link.hints[1],
        c.parent_path.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(link.hints[2], "parent.vhd");
    assert_eq!(link.hints.len(), 3);

    // layer_map: exactly the changed ranges, widened to whole sectors.
    let map = child.layer_map().unwrap();
    map.validate().unwrap();
    let data: Vec<(u64, u64)> = map
        .ranges_of(RangeKind::Data)
        .map(|r| (r.offset, r.len))
        .collect();
    let a = (2u64 << 20) - 1000;
    let a0 = a / 512 * 512;
    let a1 = (a + 5000).div_ceil(512) * 512;
    let z = (SIZE / 3 / 4096 * 4096) as u64;
    assert_eq!(
        data,
        vec![
            (a0, a1 - a0),
            (z, 8192),
            (z + 65536, 4096),
            (SIZE as u64 - 512, 512)
        ]
    );

    // Alone: unallocated reads as zeros, own sectors as written.
    let alone = read_all(&child, 1 << 20);
    for r in map.runs() {
        let (s, e) = (r.offset as usize, r.end() as usize);
        if r.kind == RangeKind::Data {
            assert!(alone[s..e] == c.child_disk[s..e]);
        } else {
            assert!(alone[s..e].iter().all(|&b| b == 0));
        }
    }
    assert!(alone != c.child_disk);

    // With the parent: the child's full content.
    child.attach_parent(Arc::new(parent)).unwrap();
    assert!(child.has_parent());
    for step in [1 << 20, 3000] {
        assert!(read_all(&child, step) == c.child_disk, "step {step}");
    }
    assert!(c.parent_disk != c.child_disk);
    assert_eq!(c.changed.size(), SIZE as u64);
}

#[test]
fn parent_smaller_than_child_reads_zeros_past_its_end() {
    let c = make_chain(2 << 20, 2 << 20);
    let limits = Limits::default();
    let mut child = VhdImage::open(&c.child_path, &limits).unwrap();
    let small: Vec<u8> = vec![0xee; 4096];
    let dir = tempfile::tempdir().unwrap();
    let small_path = dir.path().join("small.vhd");
    write_dynamic(
        &small,
        &data_map(&small),
        &small_path,
        &DynamicOptions::default(),
    )
    .unwrap();
    child
        .attach_parent(Arc::new(VhdImage::open(&small_path, &limits).unwrap()))
        .unwrap();
    let mut buf = vec![0u8; 8192];
    child.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0xee));
    assert!(buf[4096..].iter().all(|&b| b == 0));
}

#[test]
fn fixed_and_dynamic_refuse_a_parent() {
    let disk = vec![1u8; 4096];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhd");
    write_dynamic(&disk, &data_map(&disk), &path, &DynamicOptions::default()).unwrap();
    let mut img = VhdImage::open(&path, &Limits::default()).unwrap();
    let other = VhdImage::open(&path, &Limits::default()).unwrap();
    assert!(img.attach_parent(Arc::new(other)).is_err());
}
