//! Mutated and truncated images: each gives its specific error, never a panic.

mod common;

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ReadAt};
use cairn_vhdx::{Error, VhdxImage};
use common::*;
use proptest::prelude::*;

const KIB: usize = 1024;
const H1: usize = 64 * KIB;
const H2: usize = 128 * KIB;
const R1: usize = 192 * KIB;
const R2: usize = 256 * KIB;

fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn get64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn fix_crc(b: &mut [u8], o: usize, len: usize) {
    put32(b, o + 4, 0);
    let c = crc32c::crc32c(&b[o..o + len]);
    put32(b, o + 4, c);
}

fn from(b: Vec<u8>) -> Result<VhdxImage, Error> {
    VhdxImage::from_reader(Arc::new(b), &Limits::default())
}

/// A qemu-made dynamic image: 8 MiB, 1 MiB blocks, blocks 1 and 5 written.
fn fixture() -> Option<Vec<u8>> {
    if !have("qemu-img") || !have("qemu-io") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("h.vhdx");
    let p = v.to_str().unwrap();
    run("qemu-img", &["create", "-f", "vhdx", "-o", "block_size=1M", p, "8M"]);
    run("qemu-io", &["-c", "write -P 0x5c 1M 1M", "-c", "write -P 0x66 5M 64k", p]);
    Some(std::fs::read(&v).unwrap())
}

const BAT_GUID: [u8; 16] = [
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
];
const FILE_PARAMS_GUID: [u8; 16] = [
    0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b,
];
const LOGICAL_SECTOR_GUID: [u8; 16] = [
    0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f,
];
const SIZE_GUID: [u8; 16] = [
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
];

/// (BAT offset, metadata region offset) from region table 1.
fn regions(f: &[u8]) -> (usize, usize) {
    let n = get32(f, R1 + 8) as usize;
    let (mut bat, mut meta) = (0, 0);
    for i in 0..n {
        let e = R1 + 16 + i * 32;
        let off = get64(f, e + 16) as usize;
        if f[e..e + 16] == BAT_GUID {
            bat = off;
        } else {
            meta = off;
        }
    }
    (bat, meta)
}

/// Offset in the file of the metadata item with `guid` and its table entry.
fn meta_item(f: &[u8], guid: &[u8; 16]) -> (usize, usize) {
    let (_, meta) = regions(f);
    let n = usize::from(u16::from_le_bytes([f[meta + 10], f[meta + 11]]));
    for i in 0..n {
        let e = meta + 32 + i * 32;
        if &f[e..e + 16] == guid {
            return (meta + get32(f, e + 16) as usize, e);
        }
    }
    panic!("no such item")
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
    assert!(matches!(from(f[..100 * KIB].to_vec()), Err(Error::Truncated { .. })));
    assert!(matches!(from(b"conectix".to_vec()), Err(Error::BadSignature { .. })));
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
    let mut g = f.clone();
    edit_regions(&mut g, |b, r| {
        let n = get32(b, r + 8) as usize;
        let e = r + 16 + n * 32;
        b[e..e + 16].copy_from_slice(&[0xab; 16]);
        put64(b, e + 16, 4 << 20);
        put32(b, e + 24, 1 << 20);
        put32(b, e + 28, 1);
        put32(b, r + 8, n as u32 + 1);
    });
    assert!(matches!(from(g), Err(Error::UnknownRequired { kind: "region", .. })));
    // The same region not required is ignored.
    let mut g = f.clone();
    edit_regions(&mut g, |b, r| {
        let n = get32(b, r + 8) as usize;
        let e = r + 16 + n * 32;
        b[e..e + 16].copy_from_slice(&[0xab; 16]);
        put64(b, e + 16, 4 << 20);
        put32(b, e + 24, 1 << 20);
        put32(b, r + 8, n as u32 + 1);
    });
    assert!(from(g).is_ok());
    // A misaligned region offset.
    let mut g = f;
    edit_regions(&mut g, |b, r| put64(b, r + 16 + 16, (1 << 20) + 512));
    assert!(matches!(from(g), Err(Error::BadField { field: "FileOffset", .. })));
}

#[test]
fn metadata_fields() {
    let Some(f) = fixture() else { return };
    let (fp, _) = meta_item(&f, &FILE_PARAMS_GUID);
    let mut g = f.clone();
    put32(&mut g, fp, 3 << 20);
    assert!(matches!(from(g), Err(Error::BadField { field: "BlockSize", .. })));
    let (ls, _) = meta_item(&f, &LOGICAL_SECTOR_GUID);
    let mut g = f.clone();
    put32(&mut g, ls, 1000);
    assert!(matches!(from(g), Err(Error::BadField { field: "LogicalSectorSize", .. })));
    let (vs, _) = meta_item(&f, &SIZE_GUID);
    let mut g = f.clone();
    put64(&mut g, vs, 1 << 60);
    assert!(matches!(from(g), Err(Error::BadField { field: "VirtualDiskSize", .. })));
    // A disk so large its BAT does not fit the BAT region.
    let mut g = f.clone();
    put64(&mut g, vs, 1 << 40);
    assert!(matches!(from(g), Err(Error::BadField { structure: "BAT region", .. })));
    // Has-parent without a parent locator.
    let mut g = f.clone();
    put32(&mut g, fp + 4, 2);
    assert!(matches!(from(g), Err(Error::Missing(_))));
    // An item pointing outside the metadata region.
    let (_, e) = meta_item(&f, &SIZE_GUID);
    let mut g = f.clone();
    put32(&mut g, e + 16, 0xfff_0000);
    assert!(matches!(from(g), Err(Error::BadMetadata { .. })));
    // An unknown required item.
    let mut g = f.clone();
    let (_, meta) = regions(&f);
    let n = usize::from(u16::from_le_bytes([g[meta + 10], g[meta + 11]]));
    let e = meta + 32 + n * 32;
    g[e..e + 16].copy_from_slice(&[0xcd; 16]);
    put32(&mut g, e + 16, 64 * 1024);
    put32(&mut g, e + 20, 8);
    put32(&mut g, e + 24, 4);
    g[meta + 10..meta + 12].copy_from_slice(&(n as u16 + 1).to_le_bytes());
    assert!(matches!(from(g), Err(Error::UnknownRequired { kind: "metadata item", .. })));
    // A bad metadata signature.
    let mut g = f;
    g[meta] = b'X';
    assert!(matches!(from(g), Err(Error::BadMetadata { .. })));
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
    assert_eq!(img.layer_map().unwrap().clip(1 << 20, 1)[0].kind, cairn_io::RangeKind::Zero);
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
