//! Mutated and truncated images: each gives its specific error, never a panic.
// Test fixtures are a few MiB: offsets and lengths fit every integer type used here.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ReadAt};
use cairn_vhdx::{Error, VhdxImage};
use common::*;
use proptest::prelude::*;

fn from(b: Vec<u8>) -> Result<VhdxImage, Error> {
    VhdxImage::from_reader(Arc::new(b), &Limits::default())
}

/// A qemu-made dynamic image: 8 MiB, 1 MiB blocks, blocks 1 and 5 written.
fn fixture() -> Option<Vec<u8>> {
    let dir = tempdir_if_have(&["qemu-img", "qemu-io"])?;
    let v = dir.path().join("h.vhdx");
    qemu_vhdx(&v, &["write -P 0x5c 1M 1M", "write -P 0x66 5M 64k"]);
    Some(std::fs::read(&v).unwrap())
}

/// `f` with `edit` applied, opened.
fn edited(f: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Result<VhdxImage, Error> {
    let mut g = f.to_vec();
    edit(&mut g);
    from(g)
}

/// The (structure, field) a `BadField` error names; anything else fails the test.
#[track_caller]
fn bad_field(r: Result<VhdxImage, Error>) -> (&'static str, &'static str) {
    match r {
        Err(Error::BadField {
            structure, field, ..
        }) => (structure, field),
        other => panic!("expected BadField, got {other:?}"),
    }
}

/// Appends a region with an unknown GUID to the region table at `r`, 1 MiB at 4 MiB,
/// marked required when `required`.
fn add_unknown_region(b: &mut [u8], r: usize, required: bool) {
    let n = get32(b, r + 8) as usize;
    let e = r + 16 + n * 32;
    b[e..e + 16].copy_from_slice(&[0xab; 16]);
    put64(b, e + 16, 4 << 20);
    put32(b, e + 24, 1 << 20);
    put32(b, e + 28, u32::from(required));
    put32(b, r + 8, n as u32 + 1);
}

/// Applies `edit` to both region tables and fixes their checksums.
fn edit_regions(f: &mut [u8], edit: impl Fn(&mut [u8], usize)) {
    for r in [R1, R2] {
        edit(f, r);
        fix_crc(f, r, 64 * KIB);
    }
}

#[test]
fn bad_signature_and_truncation() {
    let Some(f) = fixture() else { return };
    let mut g = f.clone();
    g[0..8].copy_from_slice(b"vhdxfilX");
    assert!(matches!(from(g), Err(Error::BadSignature { .. })));
    assert!(matches!(
        from(f[..100 * KIB].to_vec()),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        from(b"conectix".to_vec()),
        Err(Error::BadSignature { .. })
    ));
    // Cut inside the BAT / data: an error or a clean result, never a panic.
    for len in [320 * KIB, 1 << 20, (2 << 20) + 7, f.len() - 4096] {
        if let Ok(img) = from(f[..len].to_vec()) {
            let mut buf = vec![0u8; 1 << 20];
            let _ = img.read_at(&mut buf, 1 << 20);
        }
    }
}

#[test]
fn headers_crc_and_sequence() {
    let Some(f) = fixture() else { return };
    let mut g = f.clone();
    g[H1 + 100] ^= 1;
    g[H2 + 100] ^= 1;
    assert!(matches!(from(g), Err(Error::NoValidHeader { .. })));
    // One bad copy: the other one is used.
    let mut g = f.clone();
    g[H1 + 100] ^= 1;
    assert!(from(g).is_ok());
    // The valid copy with the higher sequence number wins.
    let mut g = f.clone();
    let s1 = get64(&g, H1 + 8);
    let s2 = get64(&g, H2 + 8);
    let newer = s1.max(s2) + 10;
    put64(&mut g, H1 + 8, newer);
    g[H1 + 32..H1 + 48].copy_from_slice(&[0x11; 16]);
    fix_crc(&mut g, H1, 4096);
    let img = from(g).unwrap();
    assert_eq!(
        img.identity().content_id.as_deref(),
        Some("11111111-1111-1111-1111-111111111111")
    );
    // Version 2 header: invalid.
    let mut g = f;
    for h in [H1, H2] {
        g[h + 66] = 2;
        fix_crc(&mut g, h, 4096);
    }
    assert!(matches!(from(g), Err(Error::NoValidHeader { .. })));
}

#[test]
fn region_tables() {
    let Some(f) = fixture() else { return };
    let mut g = f.clone();
    g[R1 + 20] ^= 1;
    g[R2 + 20] ^= 1;
    assert!(matches!(from(g), Err(Error::NoValidRegionTable { .. })));
    // An unknown region marked required.
    let r = edited(&f, |g| {
        edit_regions(g, |b, r| add_unknown_region(b, r, true));
    });
    assert!(matches!(
        r,
        Err(Error::UnknownRequired { kind: "region", .. })
    ));
    // The same region not required is ignored.
    let r = edited(&f, |g| {
        edit_regions(g, |b, r| add_unknown_region(b, r, false));
    });
    assert!(r.is_ok());
    // A misaligned region offset.
    let r = edited(&f, |g| {
        edit_regions(g, |b, r| put64(b, r + 16 + 16, (1 << 20) + 512));
    });
    assert_eq!(bad_field(r).1, "FileOffset");
}

#[test]
fn metadata_fields() {
    let Some(f) = fixture() else { return };
    let (fp, _) = meta_item(&f, &FILE_PARAMS_GUID);
    let r = edited(&f, |g| put32(g, fp, 3 << 20));
    assert_eq!(bad_field(r).1, "BlockSize");
    let (ls, _) = meta_item(&f, &LOGICAL_SECTOR_GUID);
    let r = edited(&f, |g| put32(g, ls, 1000));
    assert_eq!(bad_field(r).1, "LogicalSectorSize");
    let (vs, _) = meta_item(&f, &SIZE_GUID);
    let r = edited(&f, |g| put64(g, vs, 1 << 60));
    assert_eq!(bad_field(r).1, "VirtualDiskSize");
    // A disk so large its BAT does not fit the BAT region.
    let r = edited(&f, |g| put64(g, vs, 1 << 40));
    assert_eq!(bad_field(r).0, "BAT region");
    // Has-parent without a parent locator.
    let r = edited(&f, |g| put32(g, fp + 4, 2));
    assert!(matches!(r, Err(Error::Missing(_))));
    // An item pointing outside the metadata region.
    let (_, e) = meta_item(&f, &SIZE_GUID);
    let r = edited(&f, |g| put32(g, e + 16, 0xfff_0000));
    assert!(matches!(r, Err(Error::BadMetadata { .. })));
    // An unknown required item.
    let r = edited(&f, |g| add_meta_entry(g, &[0xcd; 16], 64 * KIB, 8, 4));
    assert!(matches!(
        r,
        Err(Error::UnknownRequired {
            kind: "metadata item",
            ..
        })
    ));
    // A bad metadata signature.
    let (_, meta) = regions(&f);
    let r = edited(&f, |g| g[meta] = b'X');
    assert!(matches!(r, Err(Error::BadMetadata { .. })));
}

#[test]
fn bat_entries() {
    let Some(f) = fixture() else { return };
    let (bat, _) = regions(&f);
    let b1 = bat + 8; // payload block 1 (written)
    assert_eq!(get64(&f, b1) & 7, 6);
    // Past the end of the file.
    let mut g = f.clone();
    put64(&mut g, b1, (1 << 40) | 6);
    assert!(matches!(from(g), Err(Error::BadBatEntry { index: 1, .. })));
    // An undefined state.
    let mut g = f.clone();
    put64(&mut g, b1, get64(&f, b1) & !7 | 4);
    assert!(matches!(from(g), Err(Error::BadBatEntry { index: 1, .. })));
    // Partially present in a disk without a parent.
    let mut g = f.clone();
    put64(&mut g, b1, get64(&f, b1) | 7);
    assert!(matches!(from(g), Err(Error::BadBatEntry { index: 1, .. })));
    // Zero and unmapped states read zeros and map as Zero.
    let mut g = f;
    put64(&mut g, b1, 2);
    let img = from(g).unwrap();
    let mut buf = vec![1u8; 4096];
    img.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    assert_eq!(
        img.layer_map().unwrap().clip(1 << 20, 1)[0].kind,
        cairn_io::RangeKind::Zero
    );
}

fn mutate_and_use(f: &[u8], muts: &[(usize, u8)]) {
    let mut g = f.to_vec();
    for &(o, v) in muts {
        let o = o % g.len();
        g[o] = v;
    }
    if let Ok(img) = from(g) {
        let mut buf = vec![0u8; 1 << 20];
        let _ = img.read_at(&mut buf, 0);
        let _ = img.read_at(&mut buf[..5000], (1 << 20) - 100);
        let _ = img.layer_map();
        let _ = img.parent_link();
    }
}

#[test]
fn mutations_of_metadata_and_bat_never_panic() {
    let Some(f) = fixture() else { return };
    let (bat, meta) = regions(&f);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(
            &(
                prop_oneof![Just(bat), Just(meta), Just(meta + 64 * KIB)],
                proptest::collection::vec((0usize..256, any::<u8>()), 1..6),
            ),
            |(base, muts)| {
                let muts: Vec<_> = muts.into_iter().map(|(o, v)| (base + o, v)).collect();
                mutate_and_use(&f, &muts);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn logical_sector_4096() {
    let Some(f) = fixture() else { return };
    let want = read_all(&from(f.clone()).unwrap());
    let (ls, _) = meta_item(&f, &LOGICAL_SECTOR_GUID);
    let mut g = f;
    put32(&mut g, ls, 4096);
    // 8 MiB of 1 MiB blocks: the BAT layout does not change with the chunk ratio.
    let img = from(g).unwrap();
    assert_eq!(img.logical_sector_size(), 4096);
    assert!(read_all(&img) == want);
}
