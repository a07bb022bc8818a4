//! Hostile input: each corruption gives its own error variant, never a panic.

mod common;

use std::sync::Arc;

use cairn_io::{Limits, ReadAt};
use cairn_vmdk::{Error, VmdkImage};
use common::*;

// Layout of a 1 MiB monolithicSparse image written with 64 KiB grains (one grain table):
// redundant GD at sector 21, its table at 22, primary GD at 26, its table at 27.
const RGD: usize = 21 * 512;
const RGT: usize = 22 * 512;
const GD: usize = 26 * 512;
const GT: usize = 27 * 512;

fn sparse_bytes(stream: bool) -> (Vec<u8>, Vec<u8>) {
    let src = noise(3, 1 << 20);
    (written_vmdk(&src, stream), src)
}

fn open(b: Vec<u8>) -> Result<VmdkImage, Error> {
    VmdkImage::from_reader(Arc::new(b), &Limits::default())
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn intact_image_reads_back() {
    let (b, src) = sparse_bytes(false);
    assert!(read_all(&open(b).unwrap(), 65_536) == src);
    let (b, src) = sparse_bytes(true);
    assert!(read_all(&open(b).unwrap(), 65_536) == src);
}

#[test]
fn truncated_header() {
    let (b, _) = sparse_bytes(false);
    assert!(matches!(
        open(b[..100].to_vec()),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        open(b[..3].to_vec()),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(open(vec![0u8; 4096]), Err(Error::NotVmdk(_))));
}

#[test]
fn bad_version() {
    let (mut b, _) = sparse_bytes(false);
    put32(&mut b, 4, 9);
    assert!(matches!(
        open(b),
        Err(Error::BadHeader {
            field: "version",
            ..
        })
    ));
}

#[test]
fn text_mode_copy_is_detected() {
    let (mut b, _) = sparse_bytes(false);
    b[75] = b'\n'; // "\r\n" became "\n\n"
    assert!(matches!(
        open(b),
        Err(Error::BadHeader {
            field: "newline test characters",
            ..
        })
    ));
}

#[test]
fn grain_size_zero_or_huge() {
    for g in [0u64, 3, 1 << 40, u64::MAX] {
        let (mut b, _) = sparse_bytes(false);
        put64(&mut b, 20, g);
        assert!(matches!(open(b), Err(Error::BadGrainSize { .. })), "{g}");
    }
}

#[test]
fn absurd_capacity() {
    let (mut b, _) = sparse_bytes(false);
    put64(&mut b, 12, u64::MAX / 512);
    assert!(matches!(open(b), Err(Error::CapacityTooLarge { .. })));
    let (mut b, _) = sparse_bytes(false);
    put64(&mut b, 12, u64::MAX);
    assert!(matches!(
        open(b),
        Err(Error::BadHeader {
            field: "capacity",
            ..
        })
    ));
}

#[test]
fn grain_directory_past_eof_falls_back_to_redundant() {
    let (mut b, src) = sparse_bytes(false);
    put64(&mut b, 56, 1 << 30); // primary GD offset past EOF
    let img = open(b.clone()).unwrap();
    assert!(read_all(&img, 1 << 20) == src);
    // A primary GD whose entry points past EOF also falls back.
    let (mut b2, src2) = sparse_bytes(false);
    put32(&mut b2, GD, 0x7fff_ffff);
    assert!(read_all(&open(b2).unwrap(), 1 << 20) == src2);
    // Both unusable: refused.
    put64(&mut b, 48, 1 << 30);
    assert!(matches!(open(b), Err(Error::BadGrainDirectory(_))));
    let (mut b3, _) = sparse_bytes(false);
    put32(&mut b3, GD, 0x7fff_ffff);
    put32(&mut b3, RGD, 0x7fff_fff0);
    assert!(matches!(open(b3), Err(Error::BadGrainDirectory(_))));
}

#[test]
fn grain_table_entry_outside_file() {
    let (mut b, _) = sparse_bytes(false);
    put32(&mut b, GT + 4, 0x00ff_ffff);
    put32(&mut b, RGT + 4, 0x00ff_ffff);
    let img = open(b).unwrap();
    assert!(matches!(
        img.allocation_map(),
        Err(Error::GrainOutOfRange { grain: 1, .. })
    ));
    let mut buf = [0u8; 512];
    assert!(img.read_at(&mut buf, 0).is_ok());
    assert!(img.read_at(&mut buf, 65_536).is_err());
}

#[test]
fn huge_grain_directory_is_refused_before_allocation() {
    let (mut b, _) = sparse_bytes(false);
    put64(&mut b, 12, (60u64 << 40) / 512); // 60 TiB
    put32(&mut b, 44, 1); // one entry per table: a 4 GiB directory
    assert!(matches!(open(b), Err(Error::TableTooLarge { .. })));
}

#[test]
fn stream_footer_and_grain_corruption() {
    let (b, _) = sparse_bytes(true);
    let n = b.len();
    let mut f = b.clone();
    f[n - 1024..n - 1024 + 4].copy_from_slice(b"XXXX");
    assert!(matches!(
        open(f),
        Err(Error::BadHeader {
            field: "footer gdOffset",
            ..
        })
    ));
    // First grain marker sits at the overhead (sector 128): make its size absurd.
    let mut g = b.clone();
    put32(&mut g, 128 * 512 + 8, 0x7fff_ffff);
    let img = open(g).unwrap();
    let mut buf = [0u8; 512];
    assert!(img.read_at(&mut buf, 0).is_err());
    // Wrong LBA in the marker.
    let mut g = b.clone();
    put64(&mut g, 128 * 512, 12_345);
    let img = open(g).unwrap();
    assert!(img.read_at(&mut buf, 0).is_err());
    // Garbage compressed bytes.
    let mut g = b;
    g[128 * 512 + 12..128 * 512 + 64].fill(0xff);
    let img = open(g).unwrap();
    assert!(img.read_at(&mut buf, 0).is_err());
}

#[test]
fn descriptor_file_limits_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d.vmdk");
    let mut text = String::from("# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n");
    for _ in 0..100_000 {
        text.push_str("RW 1 ZERO\n");
    }
    std::fs::write(&d, &text).unwrap();
    assert!(matches!(
        VmdkImage::open(&d, &Limits::default()),
        Err(Error::TooManyExtents { max: 4096 })
    ));
    let mut limits = Limits::default();
    limits.max_descriptor_bytes = 4096;
    assert!(matches!(
        VmdkImage::open(&d, &limits),
        Err(Error::DescriptorTooLarge { .. })
    ));
    for bad in ["/etc/passwd", "../x-flat.vmdk", "sub/../../x", "C:\\x.vmdk"] {
        let t = format!("# Disk DescriptorFile\nCID=12345678\nRW 8 FLAT \"{bad}\" 0\n");
        std::fs::write(&d, t).unwrap();
        assert!(
            matches!(
                VmdkImage::open(&d, &Limits::default()),
                Err(Error::BadExtentPath { .. })
            ),
            "{bad}"
        );
    }
    std::fs::write(
        &d,
        "# Disk DescriptorFile\nCID=12345678\nRW 8 FLAT \"missing.bin\" 0\n",
    )
    .unwrap();
    assert!(matches!(
        VmdkImage::open(&d, &Limits::default()),
        Err(Error::File { .. })
    ));
    std::fs::write(dir.path().join("short.bin"), [1u8; 1024]).unwrap();
    std::fs::write(
        &d,
        "# Disk DescriptorFile\nCID=12345678\nRW 8 FLAT \"short.bin\" 0\n",
    )
    .unwrap();
    assert!(matches!(
        VmdkImage::open(&d, &Limits::default()),
        Err(Error::Truncated { .. })
    ));
    // A ZERO + FLAT mix reads as written.
    std::fs::write(
        &d,
        "# Disk DescriptorFile\nCID=12345678\nRW 1 ZERO\nRW 2 FLAT \"short.bin\" 0\n",
    )
    .unwrap();
    let img = VmdkImage::open(&d, &Limits::default()).unwrap();
    let all = read_all(&img, 100);
    assert!(all[..512].iter().all(|&x| x == 0) && all[512..].iter().all(|&x| x == 1));
}
