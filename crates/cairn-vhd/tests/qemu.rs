//! Cross-checks against qemu-img: images qemu makes read equal to their raw source, our
//! maps equal qemu's, and images we write pass `qemu-img check` / `compare`.
// Test fixtures are a few MiB: offsets always fit in usize and bytes are meant to wrap.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::PathBuf;

use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhd::{
    write_dynamic, write_fixed, DiskType, DynamicOptions, FixedOptions, FooterSource, VhdImage,
};
use common::*;

/// 10 MiB + 3 sectors: not a multiple of the 2 MiB block size, so the last block is partial;
/// blocks 2 and 4 hold only zeros.
const DISK_SIZE: usize = (10 << 20) + 3 * 512;

/// A temporary folder holding `disk.raw`, a [`sample_disk`] of `DISK_SIZE` from `seed`:
/// (folder, raw path, raw bytes). `None` without qemu-img.
fn raw_fixture(seed: u64) -> Option<(tempfile::TempDir, PathBuf, Vec<u8>)> {
    let dir = tempdir_if_have(&["qemu-img"])?;
    let raw = dir.path().join("disk.raw");
    let disk = sample_disk(DISK_SIZE, seed);
    std::fs::write(&raw, &disk).unwrap();
    Some((dir, raw, disk))
}

#[test]
fn qemu_made_fixed_and_dynamic_read_as_raw() {
    let Some((dir, raw, disk)) = raw_fixture(7) else {
        return;
    };
    for sub in ["fixed", "dynamic"] {
        let vhd = dir.path().join(format!("{sub}.vhd"));
        let opts = format!("subformat={sub},force_size=on");
        qemu_img_convert(&raw, "raw", &vhd, "vpc", &["-o", &opts]);
        let img = VhdImage::open(&vhd, &Limits::default()).unwrap();
        assert_eq!(img.subformat(), sub);
        assert_eq!(img.format(), "vhd");
        assert_eq!(img.size(), DISK_SIZE as u64);
        assert_eq!(img.footer_source(), FooterSource::End);
        assert!(img.parent_link().is_none());
        assert_eq!(img.identity().uuid, Some(img.footer().unique_id));
        // Odd request sizes cross block and sector boundaries.
        for step in [1 << 20, 100_000, 4096 + 17] {
            assert!(read_all(&img, step) == disk, "{sub}: step {step}");
        }
        // Reads past the end stop at the end.
        let mut buf = [0u8; 4096];
        assert_eq!(
            img.read_at(&mut buf, DISK_SIZE as u64 - 1000).unwrap(),
            1000
        );
        assert_eq!(img.read_at(&mut buf, DISK_SIZE as u64).unwrap(), 0);

        let map = img.layer_map().unwrap();
        map.validate().unwrap();
        assert_eq!(
            data_ranges(&map),
            qemu_data_ranges(&vhd, img.size()),
            "{sub}: layer_map vs qemu-img map"
        );
        if sub == "dynamic" {
            assert!(map.bytes_of(RangeKind::Unallocated) > 0);
        }
    }
}

#[test]
fn chs_rounded_qemu_image_uses_footer_current_size() {
    let Some(dir) = tempdir_if_have(&["qemu-img"]) else {
        return;
    };
    let vhd = dir.path().join("chs.vhd");
    // Without force_size qemu rounds 64 MiB up to the CHS geometry, records that in the
    // footer's current size and marks itself creator "qemu" (a CHS-sized creator).
    qemu_img_create(&vhd, "vpc", "64M", &[]);
    let img = VhdImage::open(&vhd, &Limits::default()).unwrap();
    assert_eq!(&img.footer().creator_app, b"qemu");
    assert_eq!(img.size(), 67_125_248);
    assert_eq!(img.footer().current_size, 67_125_248);
    assert_eq!(img.footer().geometry.size(), 67_125_248);
    let info = qemu_img(&["info", "--output=json", "-f", "vpc", p(&vhd)]);
    let v: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(v["virtual-size"].as_u64(), Some(img.size()));
}

#[test]
fn our_images_pass_qemu_check_and_compare() {
    let Some((dir, raw, disk)) = raw_fixture(11) else {
        return;
    };
    let map = data_map(&disk);

    let fixed = dir.path().join("fixed.vhd");
    write_fixed(&disk, &map, &fixed, &FixedOptions::default()).unwrap();
    qemu_img(&["compare", "-f", "vpc", "-F", "raw", p(&fixed), p(&raw)]);

    for bs in [2u32 << 20, 512 << 10, 4096] {
        let dynamic = dir.path().join(format!("dynamic-{bs}.vhd"));
        let mut opts = DynamicOptions::default();
        opts.block_size = bs;
        write_dynamic(&disk, &map, &dynamic, &opts).unwrap();
        // qemu-img check does not support vpc; info at least opens and validates it.
        qemu_img(&["info", "-f", "vpc", p(&dynamic)]);
        qemu_img(&["compare", "-f", "vpc", "-F", "raw", p(&dynamic), p(&raw)]);
        let img = VhdImage::open(&dynamic, &Limits::default()).unwrap();
        assert_eq!(img.disk_type(), DiskType::Dynamic);
        assert!(read_all(&img, 1 << 20) == disk);
        assert_eq!(
            data_ranges(&img.layer_map().unwrap()),
            qemu_data_ranges(&dynamic, img.size())
        );
        // Holes were not written: the 10 MiB disk has well under 1 MiB of non-zero data.
        let file_len = std::fs::metadata(&dynamic).unwrap().len();
        if bs == 4096 {
            assert!(file_len < 2 << 20, "file of {file_len} bytes");
        }
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}
