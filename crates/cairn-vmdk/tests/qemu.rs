//! Reads images qemu-img made and compares bytes and maps with qemu.

mod common;

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ParentExpectation, RangeKind, ReadAt};
use cairn_vmdk::VmdkImage;
use common::*;

#[test]
fn five_qemu_subformats_read_like_raw() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_raw(6);
    let raw_path = dir.path().join("disk.raw");
    std::fs::write(&raw_path, &raw).unwrap();
    for sub in [
        "monolithicSparse",
        "monolithicFlat",
        "twoGbMaxExtentSparse",
        "twoGbMaxExtentFlat",
        "streamOptimized",
    ] {
        let out = dir.path().join(format!("{sub}.vmdk"));
        qemu_img_convert(
            &raw_path,
            "raw",
            &out,
            "vmdk",
            &["-o", &format!("subformat={sub}")],
        );
        let img = VmdkImage::open(&out, &Limits::default()).unwrap();
        assert_eq!(img.subformat(), sub);
        assert_eq!(img.size(), raw.len() as u64);
        assert!(img.parent_link().is_none());
        assert_eq!(img.identity().content_id.unwrap().len(), 8);
        assert!(read_all(&img, 1 << 20) == raw, "{sub}: 1 MiB reads differ");
        assert!(read_all(&img, 3001) == raw, "{sub}: 3001-byte reads differ");
        let ours = img.layer_map().unwrap();
        let theirs = qemu_map(&out, raw.len() as u64);
        assert_eq!(ours, theirs, "{sub}: map differs from qemu-img map");
        // Sparse maps must not claim the big zero regions as data.
        if sub.contains("Sparse") || sub == "streamOptimized" {
            assert!(ours.bytes_of(RangeKind::Data) < 2 << 20, "{sub}");
        }
    }
}

#[test]
fn zeroed_grain_and_delta_chain() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vmdk");
    let delta = dir.path().join("delta.vmdk");
    qemu_img_create(&base, "vmdk", "4M", &["-o", "zeroed_grain=on"]);
    qemu_io(&base, "vmdk", &["write -P 0x11 0 2M", "write -z 512k 128k"]);
    qemu_img_overlay(&delta, "vmdk", "base.vmdk", "vmdk");
    qemu_io(
        &delta,
        "vmdk",
        &["write -P 0xab 1M 64k", "write -P 0xcd 1000k 10k"],
    );
    let b = VmdkImage::open(&base, &Limits::default()).unwrap();
    assert_eq!(b.layer_map().unwrap(), qemu_map(&base, 4 << 20));
    assert_eq!(b.layer_map().unwrap().bytes_of(RangeKind::Zero), 128 << 10);
    let mut d = VmdkImage::open(&delta, &Limits::default()).unwrap();
    let link = d.parent_link().expect("delta has a parent");
    assert_eq!(link.hints, vec!["base.vmdk".to_string()]);
    assert_eq!(
        link.expect,
        ParentExpectation::ContentId(b.identity().content_id.unwrap())
    );
    assert_eq!(d.layer_map().unwrap(), qemu_map(&delta, 4 << 20));
    d.attach_parent(Arc::new(b)).unwrap();
    let want = qemu_raw(&delta, "vmdk");
    assert!(read_all(&d, 1 << 20) == want);
    assert!(read_all(&d, 12_345) == want);
}

#[test]
fn two_gb_split_sparse_straddles_extents() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img_path = dir.path().join("big.vmdk");
    qemu_img_create(
        &img_path,
        "vmdk",
        "4608M",
        &["-o", "subformat=twoGbMaxExtentSparse"],
    );
    let two_g: u64 = 2 << 30;
    let w = format!("write -P 0xcd {} 128k", two_g - 65_536);
    let w2 = format!("write -P 0x77 {} 64k", (4u64 << 30) + (1 << 20));
    qemu_io(&img_path, "vmdk", &[&w, &w2]);
    let img = VmdkImage::open(&img_path, &Limits::default()).unwrap();
    assert_eq!(img.descriptor().extents.len(), 3);
    assert_eq!(img.size(), 4608 << 20);
    let mut buf = vec![0u8; 1 << 20];
    img.read_exact_at(&mut buf, two_g - 512 * 1024).unwrap();
    let mut want = vec![0u8; 1 << 20];
    want[512 * 1024 - 65_536..512 * 1024 + 65_536].fill(0xcd);
    assert!(buf == want);
    let mut small = [0u8; 4];
    img.read_exact_at(&mut small, (4u64 << 30) + (1 << 20) + 10)
        .unwrap();
    assert_eq!(small, [0x77; 4]);
    let map = img.layer_map().unwrap();
    assert_eq!(map, qemu_map(&img_path, 4608 << 20));
    assert_eq!(map.bytes_of(RangeKind::Data), 192 << 10);
}

#[test]
fn vmfs_flat_descriptor() {
    if !have("qemu-img") {
        return;
    }
    // qemu cannot write ESXi descriptors, so an ESXi-style one is written over a flat file.
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_raw(4);
    std::fs::write(dir.path().join("esx-flat.vmdk"), &raw).unwrap();
    let out = dir.path().join("esx.vmdk");
    let sectors = raw.len() / 512;
    std::fs::write(
        &out,
        format!(
            "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\n\
             createType=\"vmfs\"\n\n# Extent description\nRW {sectors} VMFS \"esx-flat.vmdk\"\n\n\
             # The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\n\
             ddb.uuid.image = \"6000c298-2a4d-5f0a-1a33-0d2cbe6f2f4f\"\n"
        ),
    )
    .unwrap();
    let img = VmdkImage::open(&out, &Limits::default()).unwrap();
    assert_eq!(img.subformat(), "vmfs");
    assert_eq!(img.identity().uuid.unwrap()[..2], [0x60, 0x00]);
    assert_eq!(img.identity().content_id.as_deref(), Some("fffffffe"));
    assert!(read_all(&img, 1 << 20) == raw);
    assert!(qemu_raw(&out, "vmdk") == raw);
    assert_eq!(img.layer_map().unwrap(), qemu_map(&out, raw.len() as u64));
}
