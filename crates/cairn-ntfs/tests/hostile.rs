//! Mutate-one-field tests: a real mkntfs image with one field broken must give the exact
//! error variant (or a clean end), never a panic or hang.

mod common;

use std::sync::Arc;

use cairn_ntfs::{Error, NtfsFs, NtfsOptions};
use cairn_vfs::FileSystem;
use common::*;

/// A 16 MiB image with a few files, as bytes; `None` when the tools are missing.
fn base_image() -> Option<Vec<u8>> {
    if !(have("mkntfs") && have("ntfscp")) {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("h.img");
    mkntfs_image(&img, 16, "");
    let src = tmp.path().join("hello.txt");
    std::fs::write(&src, b"hello world\n").unwrap();
    run(
        "ntfscp",
        &[
            "-q",
            img.to_str().unwrap(),
            src.to_str().unwrap(),
            "/hello.txt",
        ],
    );
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 100_000]).unwrap();
    run(
        "ntfscp",
        &[
            "-q",
            img.to_str().unwrap(),
            big.to_str().unwrap(),
            "/big.bin",
        ],
    );
    Some(std::fs::read(&img).unwrap())
}

fn open(img: &[u8]) -> Result<NtfsFs, Error> {
    NtfsFs::open(Arc::new(img.to_vec()), &NtfsOptions::default())
}

fn record_of(img: &[u8], path: &str) -> u64 {
    open(img).unwrap().lookup(path).unwrap() & 0xFFFF_FFFF_FFFF
}

fn boot_error(img: &[u8], at: usize, bytes: &[u8]) -> Error {
    let mut m = img.to_vec();
    m[at..at + bytes.len()].copy_from_slice(bytes);
    open(&m).unwrap_err()
}

fn assert_boot_field(e: Error, want: &str) {
    match e {
        Error::BadBootSector { field, .. } => assert_eq!(field, want),
        other => panic!("expected BadBootSector({want}), got {other:?}"),
    }
}

#[test]
fn boot_sector_fields() {
    let Some(img) = base_image() else { return };
    assert_boot_field(boot_error(&img, 0x0B, &[0, 0]), "bytes_per_sector");
    assert_boot_field(boot_error(&img, 0x0B, &[0, 0x20]), "bytes_per_sector");
    assert_boot_field(boot_error(&img, 0x0D, &[3]), "sectors_per_cluster");
    assert_boot_field(boot_error(&img, 0x0D, &[0]), "sectors_per_cluster");
    assert_boot_field(boot_error(&img, 0x0D, &[0xE0]), "sectors_per_cluster");
    assert_boot_field(boot_error(&img, 0x0D, &[0xF0]), "cluster_size");
    assert_boot_field(boot_error(&img, 0x30, &u64::MAX.to_le_bytes()), "mft_lcn");
    assert_boot_field(boot_error(&img, 0x30, &4095u64.to_le_bytes()), "mft_lcn");
    assert_boot_field(
        boot_error(&img, 0x28, &u64::MAX.to_le_bytes()),
        "total_sectors",
    );
    assert_boot_field(boot_error(&img, 0x40, &[0]), "clusters_per_file_record");
    assert_boot_field(boot_error(&img, 0x40, &[0xE0]), "clusters_per_file_record");
    assert_boot_field(boot_error(&img, 0x44, &[0x7F]), "clusters_per_index_record");
    assert!(matches!(
        boot_error(&img, 3, b"EXFAT   "),
        Error::BadMagic { .. }
    ));
}

#[test]
fn truncated_images() {
    let Some(img) = base_image() else { return };
    assert_boot_field(open(&img[..1 << 20]).unwrap_err(), "total_sectors");
    assert!(matches!(open(&img[..100]).unwrap_err(), Error::Io(_)));
    assert!(matches!(open(&[]).unwrap_err(), Error::Io(_)));
}

#[test]
fn bad_fixup_names_the_record() {
    let Some(mut img) = base_image() else { return };
    let g = geo(&img);
    // Record 0's first sector end no longer carries the update sequence number.
    img[g.mft_off + 510] ^= 0xFF;
    match open(&img).unwrap_err() {
        Error::BadFixup { what, sector, .. } => {
            assert_eq!(what, "MFT record 0");
            assert_eq!(sector, 0);
        }
        other => panic!("expected BadFixup, got {other:?}"),
    }
    // The same in a file's record: only that file fails.
    let Some(mut img) = base_image() else { return };
    let n = record_of(&img, "/hello.txt");
    let id = open(&img).unwrap().lookup("/hello.txt").unwrap();
    img[g.mft_off + usize::try_from(n).unwrap() * g.rs + 1022] ^= 0xFF;
    let fs = open(&img).unwrap();
    match fs.metadata(id).unwrap_err() {
        Error::BadFixup { what, sector, .. } => {
            assert_eq!(what, format!("MFT record {n}"));
            assert_eq!(sector, 1);
        }
        other => panic!("expected BadFixup, got {other:?}"),
    }
}

#[test]
fn attribute_length_zero() {
    let Some(mut img) = base_image() else { return };
    edit_record(&mut img, 5, |rec| {
        let first = usize::from(u16_at(rec, 0x14));
        rec[first + 4..first + 8].copy_from_slice(&0u32.to_le_bytes());
    });
    match open(&img).unwrap_err() {
        Error::BadAttribute { record, .. } => assert_eq!(record, 5),
        other => panic!("expected BadAttribute, got {other:?}"),
    }
    // Missing terminator: the used size ends inside the attributes.
    let Some(mut img) = base_image() else { return };
    edit_record(&mut img, 5, |rec| {
        let first = u32::from(u16_at(rec, 0x14));
        rec[0x18..0x1C].copy_from_slice(&(first + 8).to_le_bytes());
    });
    assert!(matches!(
        open(&img).unwrap_err(),
        Error::BadRecord { record: 5, .. } | Error::BadAttribute { record: 5, .. }
    ));
}

#[test]
fn run_list_past_the_volume() {
    let Some(mut img) = base_image() else { return };
    let n = record_of(&img, "/big.bin");
    let id = open(&img).unwrap().lookup("/big.bin").unwrap();
    edit_record(&mut img, n, |rec| {
        let a = find_attr(rec, 0x80);
        assert_eq!(rec[a + 8], 1, "big.bin data is non-resident");
        let runs = a + usize::from(u16_at(rec, a + 0x20));
        let h = rec[runs];
        let (ls, os) = (usize::from(h & 0xF), usize::from(h >> 4));
        for i in 0..os {
            rec[runs + 1 + ls + i] = 0x7F; // positive, far past the end
        }
        rec[runs + 1 + ls + os - 1] = 0x3F;
    });
    let fs = open(&img).unwrap();
    match fs.metadata(id).unwrap_err() {
        Error::BadRunList {
            record, attr_type, ..
        } => assert_eq!((record, attr_type), (n, 0x80)),
        other => panic!("expected BadRunList, got {other:?}"),
    }
    assert!(fs.open(id, None).is_err());
    // A run header announcing 9-byte fields.
    let Some(mut img) = base_image() else { return };
    edit_record(&mut img, n, |rec| {
        let a = find_attr(rec, 0x80);
        let runs = a + usize::from(u16_at(rec, a + 0x20));
        rec[runs] = 0x19;
    });
    assert!(matches!(
        open(&img).unwrap().metadata(id).unwrap_err(),
        Error::BadRunList { .. }
    ));
}

/// Finds the root's first INDX record (vcn 0) on the volume.
fn root_indx_offset(img: &mut [u8]) -> usize {
    let g = geo(img);
    let mut off = 0;
    edit_record(img, 5, |rec| {
        let a = find_attr(rec, 0xA0);
        let runs = a + usize::from(u16_at(rec, a + 0x20));
        let h = rec[runs];
        let (ls, os) = (usize::from(h & 0xF), usize::from(h >> 4));
        let mut lcn = 0u64;
        for i in 0..os {
            lcn |= u64::from(rec[runs + 1 + ls + i]) << (8 * i);
        }
        off = usize::try_from(lcn).unwrap() * g.cs;
    });
    off
}

#[test]
fn index_vcn_loop_ends() {
    let Some(mut img) = base_image() else { return };
    let at = root_indx_offset(&mut img);
    let node = &mut img[at..at + 4096];
    assert_eq!(&node[0..4], b"INDX");
    unfix(node);
    // Make the node's last entry point to the node itself.
    let hdr = 0x18;
    let mut pos = hdr + usize::try_from(u32_at(node, hdr)).unwrap();
    let index_len = usize::try_from(u32_at(node, hdr + 4)).unwrap();
    loop {
        let len = usize::from(u16_at(node, pos + 8));
        if u16_at(node, pos + 12) & 2 != 0 {
            assert_eq!(u16_at(node, pos + 12) & 1, 0, "leaf node");
            node[pos + 8..pos + 10].copy_from_slice(&u16::try_from(len + 8).unwrap().to_le_bytes());
            node[pos + 12] |= 1;
            node[pos + len..pos + len + 8].copy_from_slice(&0u64.to_le_bytes());
            node[hdr + 4..hdr + 8]
                .copy_from_slice(&u32::try_from(index_len + 8).unwrap().to_le_bytes());
            break;
        }
        pos += len;
    }
    refix(node);
    let fs = open(&img).unwrap();
    assert!(matches!(
        fs.read_dir(fs.root()).unwrap_err(),
        Error::Loop(_)
    ));
    assert!(matches!(
        fs.lookup("/hello.txt").unwrap_err(),
        Error::Loop(_)
    ));
}

#[test]
fn index_node_with_bad_fixup_or_vcn() {
    let Some(mut img) = base_image() else { return };
    let at = root_indx_offset(&mut img);
    img[at + 1022] ^= 0x55;
    let fs = open(&img).unwrap();
    match fs.read_dir(fs.root()).unwrap_err() {
        Error::BadFixup { what, sector, .. } => {
            assert_eq!(what, "INDX node vcn 0 of record 5");
            assert_eq!(sector, 1);
        }
        other => panic!("expected BadFixup, got {other:?}"),
    }
    let Some(mut img) = base_image() else { return };
    let at = root_indx_offset(&mut img);
    img[at + 0x10] = 9; // the node claims another VCN
    let fs = open(&img).unwrap();
    assert!(matches!(
        fs.read_dir(fs.root()).unwrap_err(),
        Error::BadIndex {
            record: 5,
            vcn: Some(0),
            ..
        }
    ));
}

#[test]
fn record_that_is_its_own_base_or_parent() {
    let Some(mut img) = base_image() else { return };
    let n = record_of(&img, "/hello.txt");
    let id = open(&img).unwrap().lookup("/hello.txt").unwrap();
    // The record claims to be an extension of itself.
    edit_record(&mut img, n, |rec| {
        rec[0x20..0x28].copy_from_slice(&n.to_le_bytes())
    });
    let fs = open(&img).unwrap();
    assert!(matches!(fs.metadata(id).unwrap_err(), Error::BadRecord { record, .. } if record == n));
    // read_dir still lists it (kind from the index copy).
    assert!(fs
        .read_dir(fs.root())
        .unwrap()
        .iter()
        .any(|e| e.name == "hello.txt"));

    // Its $FILE_NAME names itself as parent: path_of ends with a loop error.
    let Some(mut img) = base_image() else { return };
    edit_record(&mut img, n, |rec| {
        let a = find_attr(rec, 0x30);
        let v = a + usize::from(u16_at(rec, a + 0x14));
        rec[v..v + 8].copy_from_slice(&id.to_le_bytes());
    });
    let fs = open(&img).unwrap();
    assert!(matches!(fs.path_of(id).unwrap_err(), Error::Loop(_)));
}

#[test]
fn stale_and_out_of_range_references() {
    let Some(img) = base_image() else { return };
    let fs = open(&img).unwrap();
    let id = fs.lookup("/hello.txt").unwrap();
    let stale = (id & 0xFFFF_FFFF_FFFF) | (u64::from(u16::try_from(id >> 48).unwrap() + 1) << 48);
    assert!(matches!(
        fs.metadata(stale).unwrap_err(),
        Error::StaleReference { .. }
    ));
    assert!(matches!(
        fs.metadata(1 << 40).unwrap_err(),
        Error::RecordOutOfRange { .. }
    ));
    assert!(matches!(
        fs.read_dir(id).unwrap_err(),
        Error::NotADirectory(_)
    ));
    assert!(matches!(
        fs.open(id, Some("nope")),
        Err(Error::NoSuchStream { .. })
    ));
}

#[test]
fn every_single_byte_flip_of_the_metadata_is_handled() {
    // Flip each byte of records 0..16 in turn (fixups intact) and walk: no panic, no hang.
    let Some(img) = base_image() else { return };
    let g = geo(&img);
    for rec in [0usize, 3, 5, 6, 9, 10] {
        for at in (0..g.rs).step_by(11) {
            let mut m = img.clone();
            edit_record(&mut m, rec as u64, |r| r[at] ^= 0xA5);
            if let Ok(fs) = open(&m) {
                let _ = fs.info();
                let _ = fs.used_map();
                if let Ok(entries) = fs.read_dir(fs.root()) {
                    for e in entries.iter().take(32) {
                        let _ = fs.metadata(e.id);
                        if let Ok(r) = fs.open(e.id, None) {
                            let mut buf = vec![0u8; 4096];
                            let _ = r.read_at(&mut buf, 0);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn dirty_volume_is_a_warning() {
    let Some(mut img) = base_image() else { return };
    assert_eq!(open(&img).unwrap().version(), Some((3, 1)));
    edit_record(&mut img, 3, |rec| {
        let a = find_attr(rec, 0x70);
        let v = a + usize::from(u16_at(rec, a + 0x14));
        rec[v + 10] |= 1;
    });
    let fs = open(&img).unwrap();
    assert!(
        fs.info().warnings.iter().any(|w| w.contains("dirty")),
        "{:?}",
        fs.info().warnings
    );
}

#[test]
fn mft_mirror_difference_is_a_warning() {
    let Some(mut img) = base_image() else { return };
    assert!(open(&img).unwrap().info().warnings.is_empty());
    let g = geo(&img);
    let mirror = usize::try_from(u64_at(&img, 0x38)).unwrap() * g.cs;
    img[mirror + 0x100] ^= 1;
    let w = open(&img).unwrap().info().warnings;
    assert!(w.iter().any(|w| w.contains("$MFTMirr differs")), "{w:?}");
}
