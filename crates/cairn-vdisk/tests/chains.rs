//! Whole-disk reads, chains, maps and conversions checked against qemu-img and qemu-io.
use std::path::{Path, PathBuf};

use cairn_io::{RangeKind, ReadAt};
use cairn_vdisk::{convert, ConvertOptions, Error, OpenOptions, TargetFormat, VirtualDisk};

use cairn_testkit::{
    have, path_str as p, qemu_img, qemu_img_convert, qemu_img_create, qemu_img_overlay, qemu_io,
    qemu_raw,
};

fn read_all(d: &dyn ReadAt) -> Vec<u8> {
    cairn_testkit::read_all(d, 1 << 20)
}

/// A 16 MiB raw disk with random, zero and patterned regions and holes.
fn make_raw(dir: &Path) -> PathBuf {
    let raw = dir.join("base.raw");
    let mut data = vec![0u8; 16 << 20];
    let mut x = 0x1234_5678_9abc_def0u64;
    for (i, b) in data.iter_mut().enumerate() {
        let region = i >> 20;
        *b = match region % 4 {
            0 => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24).to_le_bytes()[0]
            }
            1 => 0,
            2 => u8::try_from(i % 251).unwrap(),
            _ => 0,
        };
    }
    std::fs::write(&raw, data).unwrap();
    raw
}

#[test]
fn vmdk_delta_chain_resolves_and_reads_like_qemu() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = make_raw(dir.path());
    let base = dir.path().join("base.vmdk");
    qemu_img_convert(&raw, "raw", &base, "vmdk", &[]);
    let d1 = dir.path().join("delta1.vmdk");
    let d2 = dir.path().join("delta2.vmdk");
    // Relative parent names, as hypervisors write them.
    qemu_img_overlay(&d1, "vmdk", "base.vmdk", "vmdk");
    qemu_io(
        &d1,
        "vmdk",
        &["write -P 0xab 1M 64k", "write -P 0x11 5000k 3k"],
    );
    qemu_img_overlay(&d2, "vmdk", "delta1.vmdk", "vmdk");
    qemu_io(&d2, "vmdk", &["write -P 0xcd 2M 128k", "write -z 0 64k"]);

    let disk = VirtualDisk::open(&d2, &OpenOptions::default()).unwrap();
    assert_eq!(disk.layers().len(), 3);
    assert_eq!(read_all(&disk), qemu_raw(&d2, "vmdk"));

    // The changed ranges of the top layer are exactly its own allocation: what qemu-img map
    // reports at depth 0.
    let changed = disk.changed_ranges().unwrap().unwrap();
    let map: serde_json::Value =
        serde_json::from_slice(&qemu_img(&["map", "--output=json", p(&d2)])).unwrap();
    let mut qemu_top = Vec::new();
    for e in map.as_array().unwrap() {
        if e["depth"] == 0 && (e["data"] == true || e["zero"] == true) && e["present"] != false {
            qemu_top.push((e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap()));
        }
    }
    let ours: Vec<_> = changed
        .runs()
        .iter()
        .filter(|r| r.kind != RangeKind::Unallocated)
        .map(|r| (r.offset, r.len))
        .collect();
    assert_eq!(merge(ours), merge(qemu_top));

    // A parent with another CID is refused.
    std::fs::copy(&base, dir.path().join("base.bak")).unwrap();
    qemu_img_convert(&raw, "raw", &base, "vmdk", &[]);
    let err = VirtualDisk::open(&d2, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ParentMismatch { .. }), "{err}");

    // A missing parent names the hints.
    std::fs::remove_file(&base).unwrap();
    let err = VirtualDisk::open(&d2, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ParentNotFound { .. }), "{err}");
    // ... unless a search path holds it.
    let other = dir.path().join("elsewhere");
    std::fs::create_dir(&other).unwrap();
    std::fs::rename(dir.path().join("base.bak"), other.join("base.vmdk")).unwrap();
    let opts = OpenOptions {
        search_paths: vec![other],
        ..OpenOptions::default()
    };
    assert_eq!(VirtualDisk::open(&d2, &opts).unwrap().layers().len(), 3);
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, l) in v {
        if let Some(last) = out.last_mut() {
            if last.0 + last.1 == s {
                last.1 += l;
                continue;
            }
        }
        out.push((s, l));
    }
    out
}

#[test]
fn qcow2_over_raw_base_and_cycles() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = make_raw(dir.path());
    let top = dir.path().join("top.qcow2");
    qemu_img_overlay(&top, "qcow2", "base.raw", "raw");
    qemu_io(&top, "qcow2", &["write -P 0x5a 3M 200k"]);
    let disk = VirtualDisk::open(&top, &OpenOptions::default()).unwrap();
    assert_eq!(disk.layers()[1].format, "raw");
    assert_eq!(read_all(&disk), qemu_raw(&top, "qcow2"));
    let _ = raw;

    // A chain that names itself ends with a cycle error, not a hang.
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    qemu_img_create(&a, "qcow2", "1M", &[]);
    qemu_img_overlay(&b, "qcow2", "a.qcow2", "qcow2");
    qemu_img(&[
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        p(&a),
    ]);
    let err = VirtualDisk::open(&b, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ChainCycle { .. }), "{err}");
}

#[test]
fn conversions_pass_qemu_check_and_compare() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = make_raw(dir.path());
    let src = dir.path().join("src.vmdk");
    qemu_img_convert(&raw, "raw", &src, "vmdk", &[]);
    let disk = VirtualDisk::open(&src, &OpenOptions::default()).unwrap();
    let map = disk.map().unwrap();
    for (target, name, qfmt) in [
        (TargetFormat::Raw, "out.raw", "raw"),
        (
            TargetFormat::VmdkMonolithicSparse,
            "out-sparse.vmdk",
            "vmdk",
        ),
        (TargetFormat::VmdkStreamOptimized, "out-stream.vmdk", "vmdk"),
        (TargetFormat::VhdFixed, "out-fixed.vhd", "vpc"),
        (TargetFormat::VhdDynamic, "out-dyn.vhd", "vpc"),
    ] {
        let out = dir.path().join(name);
        convert(&disk, &map, &out, target, &ConvertOptions::default()).unwrap();
        // qemu-img check knows VMDK; it has no checker for vpc.
        if qfmt == "vmdk" {
            qemu_img(&["check", "-f", qfmt, p(&out)]);
        }
        qemu_img(&["compare", "-f", "raw", "-F", qfmt, p(&raw), p(&out)]);
        // And our own reader reads it back.
        let back = VirtualDisk::open(&out, &OpenOptions::default()).unwrap();
        assert_eq!(back.size(), disk.size(), "{name}");
    }
    // The raw output is sparse where the source was unallocated.
    let meta = std::fs::metadata(dir.path().join("out.raw")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < meta.len(),
        "raw output should have holes"
    );
}
