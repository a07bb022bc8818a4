//! Mutated and truncated images: each gives its specific error, never a panic.
// Test fixtures are a few MiB: offsets and lengths fit every integer type used here.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ReadAt};
use cairn_qcow2::{Error, Qcow2Image};
use common::*;
use proptest::prelude::*;

fn from(bytes: Vec<u8>) -> Result<Qcow2Image, Error> {
    Qcow2Image::from_reader(Arc::new(bytes), &Limits::default())
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap())
}
fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap())
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_be_bytes());
}

/// 1 MiB that compresses (qemu stores incompressible clusters plainly).
fn compressible() -> Vec<u8> {
    (0..1u32 << 20)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

/// The bytes of the qcow2 image `qemu-img convert` makes of the raw disk `d` with `opts`.
fn converted(d: &[u8], opts: &[&str]) -> Option<Vec<u8>> {
    let dir = tempdir_if_have(&["qemu-img"])?;
    let raw = dir.path().join("d.raw");
    std::fs::write(&raw, d).unwrap();
    let q = dir.path().join("d.qcow2");
    qemu_img_convert(&raw, "raw", &q, "qcow2", opts);
    Some(std::fs::read(&q).unwrap())
}

/// A qemu-made v3 image (compressed when `compress`) with data in its first cluster.
fn fixture(compress: bool) -> Option<Vec<u8>> {
    let mut d = if compress {
        compressible()
    } else {
        random_bytes(5, 1 << 20)
    };
    d.extend(vec![0u8; 1 << 20]);
    converted(&d, if compress { &["-c"] } else { &[] })
}

/// Offset in the file of the first L2 entry (guest cluster 0).
fn first_l2_entry(img: &[u8]) -> usize {
    let l1 = usize::try_from(be64(img, 40)).unwrap();
    let l2 = usize::try_from(be64(img, l1) & 0x00ff_ffff_ffff_fe00).unwrap();
    assert_ne!(l2, 0);
    l2
}

/// The crate error inside a read error.
fn read_error(img: &Qcow2Image) -> String {
    let mut buf = vec![0u8; 1 << 16];
    let e = img.read_exact_at(&mut buf, 0).unwrap_err();
    let cairn_io::Error::Io { source, .. } = e else {
        panic!("expected an I/O-wrapped format error, got {e}")
    };
    let inner = source.get_ref().unwrap();
    let q = inner.downcast_ref::<Error>().expect("a cairn_qcow2::Error");
    format!("{q:?}")
}

#[test]
fn bad_magic() {
    let Some(mut f) = fixture(false) else { return };
    f[0] = b'X';
    assert!(matches!(from(f), Err(Error::BadMagic { .. })));
    assert!(matches!(
        from(b"QFI".to_vec()),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        from(b"VMDK....".to_vec()),
        Err(Error::BadMagic { .. })
    ));
}

#[test]
fn versions_1_and_4() {
    let Some(f) = fixture(false) else { return };
    for v in [1, 4] {
        let mut g = f.clone();
        put32(&mut g, 4, v);
        assert!(matches!(from(g), Err(Error::UnsupportedVersion(x)) if x == v));
    }
}

#[test]
fn cluster_bits_out_of_range() {
    let Some(f) = fixture(false) else { return };
    for cb in [0, 8, 22, 40] {
        let mut g = f.clone();
        put32(&mut g, 20, cb);
        assert!(
            matches!(
                from(g),
                Err(Error::BadHeader {
                    field: "cluster_bits",
                    ..
                })
            ),
            "cluster_bits {cb}"
        );
    }
}

#[test]
fn l1_past_eof_and_oversized() {
    let Some(f) = fixture(false) else { return };
    let mut g = f.clone();
    let end = (g.len() as u64).div_ceil(65536) * 65536;
    put64(&mut g, 40, end);
    assert!(matches!(from(g), Err(Error::BadL1 { .. })));
    let mut g = f.clone();
    put32(&mut g, 36, u32::MAX); // 32 GiB of L1: above max_table_bytes
    assert!(
        matches!(from(g), Err(Error::BadL1 { reason, .. }) if reason.contains("max_table_bytes"))
    );
    let mut g = f.clone();
    put32(&mut g, 36, 0); // too small for the 2 MiB disk
    assert!(matches!(from(g), Err(Error::BadL1 { reason, .. }) if reason.contains("too few")));
    let mut g = f;
    put64(&mut g, 40, 65536 + 8); // misaligned
    assert!(matches!(from(g), Err(Error::BadL1 { reason, .. }) if reason.contains("aligned")));
}

#[test]
fn l1_entry_past_eof() {
    let Some(mut f) = fixture(false) else { return };
    let l1 = usize::try_from(be64(&f, 40)).unwrap();
    put64(&mut f, l1, 1 << 40);
    assert!(matches!(from(f), Err(Error::BadL2Offset { index: 0, .. })));
}

#[test]
fn l2_entry_past_eof() {
    let Some(mut f) = fixture(false) else { return };
    let e = first_l2_entry(&f);
    put64(&mut f, e, (1u64 << 63) | (1 << 40));
    let img = from(f).unwrap();
    assert!(read_error(&img).starts_with("BadL2Entry"));
    let m = img.layer_map().unwrap_err();
    assert!(matches!(
        m.downcast_ref::<Error>(),
        Some(Error::BadL2Entry {
            guest_offset: 0,
            ..
        })
    ));
}

#[test]
fn l2_entry_misaligned() {
    let Some(mut f) = fixture(false) else { return };
    let e = first_l2_entry(&f);
    let v = be64(&f, e);
    put64(&mut f, e, v + 512);
    let img = from(f).unwrap();
    assert!(read_error(&img).contains("cluster-aligned"));
}

#[test]
fn compressed_size_beyond_cluster() {
    let Some(mut f) = fixture(true) else { return };
    let e = first_l2_entry(&f);
    let v = be64(&f, e);
    assert_ne!(v & (1 << 62), 0, "first cluster should be compressed");
    // cluster_bits 16: the sector count is bits 54..=61; all ones = 256 sectors = 128 KiB.
    put64(&mut f, e, v | (0xff << 54));
    let img = from(f).unwrap();
    assert!(read_error(&img).starts_with("BadCompressedCluster"));
}

#[test]
fn compressed_garbage_does_not_inflate() {
    let Some(mut f) = fixture(true) else { return };
    let e = first_l2_entry(&f);
    let host = usize::try_from(be64(&f, e) & ((1 << 54) - 1)).unwrap();
    f[host..host + 64].fill(0xff);
    let img = from(f).unwrap();
    assert!(read_error(&img).starts_with("BadCompressedCluster"));
}

#[test]
fn refcounts_are_irrelevant_to_reads() {
    let Some(mut f) = fixture(false) else { return };
    let want = read_all(&from(f.clone()).unwrap());
    put64(&mut f, 48, 0x7fff_0000); // refcount_table_offset past EOF
    put32(&mut f, 56, 12345);
    let img = from(f).unwrap();
    assert!(read_all(&img) == want);
}

#[test]
fn encrypted_and_feature_bits() {
    let Some(f) = fixture(false) else { return };
    let mut g = f.clone();
    put32(&mut g, 32, 2);
    assert!(matches!(from(g), Err(Error::Encrypted(2))));
    let mut g = f.clone();
    put64(&mut g, 72, 1 << 2);
    assert!(matches!(from(g), Err(Error::ExternalDataFile { .. })));
    let mut g = f.clone();
    put64(&mut g, 72, 1 << 4);
    assert!(matches!(
        from(g),
        Err(Error::UnsupportedFeatures { bits: 16, .. })
    ));
    let mut g = f.clone();
    put64(&mut g, 72, 1 << 20);
    assert!(matches!(from(g), Err(Error::UnsupportedFeatures { .. })));
    // Dirty: read as-is.
    let mut g = f.clone();
    put64(&mut g, 72, 1);
    let img = from(g).unwrap();
    assert!(img.is_dirty());
    assert!(read_all(&img) == read_all(&from(f).unwrap()));
}

#[test]
fn zstd_hostile_and_unknown_compression() {
    let Some(f) = fixture(false) else { return };
    // Compression type 2 does not exist.
    let mut g = f.clone();
    if be32(&g, 100) > 104 {
        put64(&mut g, 72, 1 << 3);
        g[104] = 2;
        assert!(matches!(from(g), Err(Error::UnsupportedCompression(2))));
    }
    // A zstd image whose first compressed cluster claims a huge window.
    let d = compressible();
    let mut z = converted(&d, &["-c", "-o", "compression_type=zstd"]).unwrap();
    let good = read_all(&from(z.clone()).unwrap());
    assert!(good == d);
    let e = first_l2_entry(&z);
    let host = usize::try_from(be64(&z, e) & ((1 << 54) - 1)).unwrap();
    assert_eq!(&z[host..host + 4], &[0x28, 0xb5, 0x2f, 0xfd]);
    z[host + 4] &= !0x20; // not single-segment: the next byte is a window descriptor
    z[host + 5] = 0xf8; // window log 41
    let img = from(z).unwrap();
    assert!(read_error(&img).starts_with("BadCompressedCluster"));
}

#[test]
fn virtual_size_over_limit() {
    let Some(mut f) = fixture(false) else { return };
    put64(&mut f, 24, 1 << 60);
    assert!(matches!(
        from(f),
        Err(Error::BadHeader { field: "size", .. })
    ));
}

#[test]
fn header_length_and_extensions() {
    let Some(f) = fixture(false) else { return };
    let mut g = f.clone();
    put32(&mut g, 100, 50);
    assert!(matches!(
        from(g),
        Err(Error::BadHeader {
            field: "header_length",
            ..
        })
    ));
    // An extension whose length runs past the first cluster.
    let hl = usize::try_from(be32(&f, 100)).unwrap();
    let mut g = f.clone();
    put32(&mut g, hl, 0x1234_5678);
    put32(&mut g, hl + 4, 70000);
    assert!(matches!(from(g), Err(Error::BadExtension { .. })));
    // A backing file name outside the first cluster.
    let mut g = f;
    put64(&mut g, 8, 65530);
    put32(&mut g, 16, 100);
    assert!(matches!(
        from(g),
        Err(Error::BadHeader {
            field: "backing_file_offset",
            ..
        })
    ));
}

#[test]
fn truncated_images() {
    let Some(f) = fixture(true) else { return };
    for len in [
        0,
        3,
        50,
        71,
        72,
        103,
        104,
        200,
        65536,
        65536 + 100,
        f.len() - 1000,
    ] {
        let g = f[..len].to_vec();
        if let Ok(img) = from(g) {
            // Opening may succeed; reads must then fail cleanly or succeed.
            let mut buf = vec![0u8; 1 << 20];
            let _ = img.read_exact_at(&mut buf, 0);
            let _ = img.layer_map();
        }
    }
}

/// A hand-made v3 image with 512-byte clusters: header, L1 at 512, L2 at 1024, data after.
fn tiny_image() -> Vec<u8> {
    let mut f = vec![0u8; 4096];
    f[0..4].copy_from_slice(b"QFI\xfb");
    put32(&mut f, 4, 3);
    put32(&mut f, 20, 9);
    put64(&mut f, 24, 4096);
    put32(&mut f, 36, 1);
    put64(&mut f, 40, 512);
    put32(&mut f, 96, 4);
    put32(&mut f, 100, 104);
    put64(&mut f, 512, 1024);
    put64(&mut f, 1024, 1536);
    put64(&mut f, 1032, 1); // zero cluster
    put64(&mut f, 1040, 2048);
    f[1536..2560].fill(0x33);
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Any corruption of a small image gives an error or a result, never a panic.
    #[test]
    fn mutations_never_panic(muts in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8)) {
        let mut f = tiny_image();
        for (o, v) in muts {
            f[o] = v;
        }
        if let Ok(img) = from(f) {
            let mut buf = vec![0u8; 4096];
            let _ = img.read_at(&mut buf, 0);
            let _ = img.read_at(&mut buf[..700], 300);
            let _ = img.layer_map();
            let _ = img.dirty_bitmaps();
        }
    }
}

#[test]
fn tiny_image_reads() {
    let img = from(tiny_image()).unwrap();
    let all = read_all(&img);
    assert!(all[..512].iter().all(|&b| b == 0x33));
    assert!(all[512..1024].iter().all(|&b| b == 0));
    assert!(all[1024..1536].iter().all(|&b| b == 0x33));
    let m = img.layer_map().unwrap();
    let kinds: Vec<_> = m.runs().iter().map(|r| (r.offset, r.len, r.kind)).collect();
    use cairn_io::RangeKind::*;
    assert_eq!(
        kinds,
        vec![
            (0, 512, Data),
            (512, 512, Zero),
            (1024, 512, Data),
            (1536, 2560, Unallocated)
        ]
    );
}

/// A qemu-made image with one persistent bitmap `b0` and one write; returns the bytes and
/// the offsets of the bitmaps extension data and of the bitmap directory.
fn bitmap_fixture() -> Option<(Vec<u8>, usize, usize)> {
    let dir = tempdir_if_have(&["qemu-img", "qemu-io"])?;
    let q = dir.path().join("b.qcow2");
    qemu_img_create(&q, "qcow2", "8M", &[]);
    qemu_img(&["bitmap", "--add", s(&q), "b0"]);
    qemu_io(&q, "qcow2", &["write -P 1 1M 64k"]);
    let f = std::fs::read(&q).unwrap();
    let mut pos = be32(&f, 100) as usize;
    loop {
        let (ty, len) = (be32(&f, pos), be32(&f, pos + 4) as usize);
        assert_ne!(ty, 0, "no bitmaps extension");
        if ty == 0x2385_2875 {
            let dir_off = usize::try_from(be64(&f, pos + 8 + 16)).unwrap();
            return Some((f, pos + 8, dir_off));
        }
        pos += 8 + len.div_ceil(8) * 8;
    }
}

#[test]
fn bitmap_hostile() {
    let Some((f, ext, dir)) = bitmap_fixture() else {
        return;
    };
    let ok = from(f.clone()).unwrap().dirty_bitmaps().unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].map.bytes_of(cairn_io::RangeKind::Data), 64 * 1024);
    let bitmaps = |g: Vec<u8>| from(g).unwrap().dirty_bitmaps();

    let mut g = f.clone();
    put64(&mut g, dir, 1 << 40); // bitmap table past EOF
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));
    let mut g = f.clone();
    g[dir + 17] = 40; // granularity_bits
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));
    let mut g = f.clone();
    g[dir + 16] = 2; // type
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));
    let mut g = f.clone();
    put32(&mut g, dir + 8, 7); // bitmap_table_size
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));
    let mut g = f.clone();
    g[dir + 18..dir + 20].copy_from_slice(&60000u16.to_be_bytes()); // name past the directory
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));
    let mut g = f.clone();
    put32(&mut g, ext, 0); // nb_bitmaps
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));
    let mut g = f.clone();
    put64(&mut g, ext + 8, 1 << 40); // directory size
    assert!(matches!(bitmaps(g), Err(Error::BadBitmap { .. })));

    // In use (qemu crashed with the bitmap loaded): everything is dirty.
    let mut g = f.clone();
    put32(&mut g, dir + 12, 3);
    let b = bitmaps(g).unwrap();
    assert!(b[0].in_use);
    assert_eq!(b[0].map.bytes_of(cairn_io::RangeKind::Data), 8 << 20);
    // Autoclear bit clear: the extension is stale and ignored.
    let mut g = f;
    put64(&mut g, 88, 0);
    assert!(bitmaps(g).unwrap().is_empty());
}
