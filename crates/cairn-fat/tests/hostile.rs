//! Hand-built FAT12 volumes and the committed exFAT fixture with one field mutated: each
//! must give the exact error (or warning) the damage calls for, never a panic or a hang.

mod common;

use std::io::Read;
use std::sync::Arc;

use cairn_fat::{Error, FatFs, FatOptions, FatType, ROOT_ID};
use cairn_vfs::{FileKind, FileSystem};
use common::*;
use proptest::prelude::*;

const BPS: usize = 512;
const TOTAL_SECTORS: usize = 128;
/// Layout: boot 0, FAT copies 1 and 2, root directory 3, cluster 2 at sector 4.
const FAT1: usize = BPS;
const FAT2: usize = 2 * BPS;
const ROOT: usize = 3 * BPS;
const HEAP: usize = 4 * BPS;
const CLUSTERS: u32 = 124;

fn cl(c: u32) -> usize {
    HEAP + (c as usize - 2) * BPS
}

/// A small FAT12 volume built field by field (independent of the reader's code).
struct Img(Vec<u8>);

impl Img {
    fn new() -> Img {
        let mut b = vec![0u8; TOTAL_SECTORS * BPS];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"MSWIN4.1");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&1u16.to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&16u16.to_le_bytes());
        b[19..21].copy_from_slice(&u16::try_from(TOTAL_SECTORS).unwrap().to_le_bytes());
        b[21] = 0xF8;
        b[22..24].copy_from_slice(&1u16.to_le_bytes());
        b[38] = 0x29;
        b[39..43].copy_from_slice(&0x1234_ABCDu32.to_le_bytes());
        b[43..54].copy_from_slice(b"HANDMADE   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        let mut img = Img(b);
        img.set_fat(0, 0xFF8);
        img.set_fat(1, 0xFFF);
        img
    }

    fn set_fat(&mut self, c: u32, v: u16) {
        for base in [FAT1, FAT2] {
            let off = base + (c as usize * 3) / 2;
            let cur = u16::from_le_bytes([self.0[off], self.0[off + 1]]);
            let new = if c.is_multiple_of(2) {
                (cur & 0xF000) | v
            } else {
                (cur & 0x000F) | (v << 4)
            };
            self.0[off..off + 2].copy_from_slice(&new.to_le_bytes());
        }
    }

    /// Writes a short entry at `dir + 32 * idx`.
    fn entry(
        &mut self,
        dir: usize,
        idx: usize,
        name: &[u8; 11],
        attr: u8,
        cluster: u16,
        size: u32,
    ) {
        let e = dir + 32 * idx;
        self.0[e..e + 11].copy_from_slice(name);
        self.0[e + 11] = attr;
        // 2023-11-14 22:13:20
        self.0[e + 22..e + 24].copy_from_slice(&((22u16 << 11) | (13 << 5) | 10).to_le_bytes());
        self.0[e + 24..e + 26].copy_from_slice(&((43u16 << 9) | (11 << 5) | 14).to_le_bytes());
        self.0[e + 26..e + 28].copy_from_slice(&cluster.to_le_bytes());
        self.0[e + 28..e + 32].copy_from_slice(&size.to_le_bytes());
    }

    /// Writes long-name entries for `long` before the short entry at index
    /// `idx + pieces`; returns the index of the short entry.
    fn lfn(
        &mut self,
        dir: usize,
        idx: usize,
        long: &str,
        short: &[u8; 11],
        checksum: Option<u8>,
    ) -> usize {
        let sum = checksum.unwrap_or_else(|| {
            short.iter().fold(0u8, |s, &b| {
                (if s & 1 != 0 { 0x80u8 } else { 0 })
                    .wrapping_add(s >> 1)
                    .wrapping_add(b)
            })
        });
        let mut units: Vec<u16> = long.encode_utf16().collect();
        let pieces = units.len().div_ceil(13);
        if !units.len().is_multiple_of(13) {
            units.push(0);
        }
        units.resize(pieces * 13, 0xFFFF);
        for k in 0..pieces {
            let ord = pieces - k; // written last piece first
            let e = dir + 32 * (idx + k);
            self.0[e] = u8::try_from(ord).unwrap() | if k == 0 { 0x40 } else { 0 };
            self.0[e + 11] = 0x0F;
            self.0[e + 13] = sum;
            let chunk = &units[(ord - 1) * 13..ord * 13];
            let pos: Vec<usize> = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2))
                .collect();
            for (u, p) in chunk.iter().zip(pos) {
                self.0[e + p..e + p + 2].copy_from_slice(&u.to_le_bytes());
            }
        }
        idx + pieces
    }

    fn open(&self) -> Result<FatFs, Error> {
        FatFs::open(Arc::new(self.0.clone()), &FatOptions::default())
    }
}

/// A volume with HELLO.TXT (cluster 2, 5 bytes), a 3-cluster file BIG.BIN (clusters 3, 5, 7:
/// fragmented), and a long-named file.
fn sample() -> Img {
    let mut img = Img::new();
    img.entry(ROOT, 0, b"HANDMADE   ", 0x08, 0, 0);
    img.entry(ROOT, 1, b"HELLO   TXT", 0x20, 2, 5);
    img.0[cl(2)..cl(2) + 5].copy_from_slice(b"hello");
    img.set_fat(2, 0xFFF);
    img.entry(ROOT, 2, b"BIG     BIN", 0x20, 3, 1200);
    img.set_fat(3, 5);
    img.set_fat(5, 7);
    img.set_fat(7, 0xFFF);
    for (k, c) in [3u32, 5, 7].iter().enumerate() {
        img.0[cl(*c)..cl(*c) + BPS].fill(b'a' + u8::try_from(k).unwrap());
    }
    let s = img.lfn(ROOT, 3, "A long name.txt", b"ALONGN~1TXT", None);
    img.entry(ROOT, s, b"ALONGN~1TXT", 0x20, 0, 0);
    img
}

#[test]
fn sample_reads() {
    let fs = sample().open().unwrap();
    assert_eq!(fs.fat_type(), FatType::Fat12);
    let info = fs.info();
    assert_eq!(info.label.as_deref(), Some("HANDMADE"));
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    let names: Vec<String> = fs
        .read_dir(ROOT_ID)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["HELLO.TXT", "BIG.BIN", "A long name.txt"]);
    let big = fs.lookup("big.bin").unwrap();
    // 8.3 alias of a long name, any case.
    let long = fs.lookup("/A long name.TXT").unwrap();
    assert_eq!(fs.lookup("/alongn~1.txt").unwrap(), long);
    let data = read_all(fs.open(big, None).unwrap().as_ref());
    assert_eq!(data.len(), 1200);
    assert!(data[..512].iter().all(|&b| b == b'a'));
    assert!(data[512..1024].iter().all(|&b| b == b'b'));
    assert!(data[1024..].iter().all(|&b| b == b'c'));
    let ext = fs.extents(big, None).unwrap();
    let vols: Vec<_> = ext
        .iter()
        .map(|e| (e.file_offset, e.len, e.volume_offset))
        .collect();
    assert_eq!(
        vols,
        [
            (0, 512, Some(cl(3) as u64)),
            (512, 512, Some(cl(5) as u64)),
            (1024, 176, Some(cl(7) as u64))
        ]
    );
    // Unaligned read across fragments.
    let r = fs.open(big, None).unwrap();
    let mut buf = [0u8; 4];
    r.read_exact_at(&mut buf, 510).unwrap();
    assert_eq!(&buf, b"aabb");
    let m = fs.metadata(big).unwrap();
    assert_eq!(m.mtime.map(|t| t.secs), Some(1_700_000_000));
    assert_eq!(m.allocated, Some(1536));
    assert!(matches!(
        fs.open(big, Some("ads")),
        Err(Error::NoSuchStream(_))
    ));
    assert!(matches!(fs.read_dir(big), Err(Error::NotADirectory(_))));
    assert!(matches!(fs.metadata(12345), Err(Error::UnknownNode(12345))));
    // used map: system area + clusters 2, 3, 5, 7
    let map = fs.used_map().unwrap();
    assert_eq!(
        map.bytes_of(cairn_io::RangeKind::Data),
        (HEAP + 4 * BPS) as u64
    );
}

fn boot_field(field: &'static str) -> impl Fn(Result<FatFs, Error>) {
    move |r| match r {
        Err(Error::BadBootSector { field: f, .. }) if f == field => {}
        other => panic!("expected BadBootSector {field}, got {other:?}"),
    }
}

#[test]
fn bytes_per_sector_zero() {
    let mut img = sample();
    img.0[11..13].copy_from_slice(&0u16.to_le_bytes());
    boot_field("BPB_BytsPerSec")(img.open());
    img.0[11..13].copy_from_slice(&768u16.to_le_bytes());
    boot_field("BPB_BytsPerSec")(img.open());
}

#[test]
fn sectors_per_cluster_three() {
    let mut img = sample();
    img.0[13] = 3;
    boot_field("BPB_SecPerClus")(img.open());
}

#[test]
fn other_boot_fields() {
    let mut img = sample();
    img.0[14] = 0;
    boot_field("BPB_RsvdSecCnt")(img.open());
    let mut img = sample();
    img.0[16] = 0;
    boot_field("BPB_NumFATs")(img.open());
    let mut img = sample();
    img.0[17] = 0;
    boot_field("BPB_RootEntCnt")(img.open());
    let mut img = sample();
    img.0[19..21].copy_from_slice(&0u16.to_le_bytes());
    boot_field("BPB_TotSec32")(img.open());
    let mut img = sample();
    img.0[22] = 0;
    img.0[36..40].fill(0);
    boot_field("BPB_FATSz32")(img.open());
    let mut img = sample();
    img.0[510] = 0;
    assert!(matches!(img.open(), Err(Error::NotFat(_))));
}

#[test]
fn truncated_volume() {
    let img = sample();
    for len in [0, 100, 511, 4000, img.0.len() - 1] {
        let r = FatFs::open(Arc::new(img.0[..len].to_vec()), &FatOptions::default());
        assert!(
            matches!(r, Err(Error::VolumeTruncated { .. })),
            "{len}: {r:?}"
        );
    }
}

#[test]
fn chain_cycle() {
    let mut img = sample();
    img.set_fat(7, 3); // 3 -> 5 -> 7 -> 3 ...
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    match fs.open(big, None) {
        Err(Error::ChainCycle { start: 3, steps }) => assert!(steps <= u64::from(CLUSTERS)),
        other => panic!("{:?}", other.err()),
    }
    // A tail then a self-loop: 3 -> 5 -> 5 ...
    let mut img = sample();
    img.set_fat(5, 5);
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert!(matches!(
        fs.extents(big, None),
        Err(Error::ChainCycle { start: 3, .. })
    ));
    // A cycle in a directory's chain: listing fails, the walk reports it.
    let mut img = sample();
    img.entry(ROOT, 6, b"D          ", 0x10, 20, 0);
    img.set_fat(20, 21);
    img.set_fat(21, 20);
    let fs = img.open().unwrap();
    let d = fs.lookup("/d").unwrap();
    assert!(matches!(
        fs.read_dir(d),
        Err(Error::ChainCycle { start: 20, .. })
    ));
    let mut n = 0;
    fs.walk(&mut |_, _| n += 1).unwrap();
    assert_eq!(n, 4);
    assert!(
        fs.warnings()
            .iter()
            .any(|w| w.starts_with("/D: cannot list")),
        "{:?}",
        fs.warnings()
    );
}

#[test]
fn cluster_past_the_end() {
    let mut img = sample();
    img.set_fat(5, 0x200); // past cluster_count + 2
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert!(matches!(
        fs.open(big, None),
        Err(Error::ClusterOutOfRange {
            start: 3,
            cluster: 0x200,
            end: 126
        })
    ));
    // First cluster out of range, written in the entry itself.
    let mut img = sample();
    let e = ROOT + 32 * 2;
    img.0[e + 26..e + 28].copy_from_slice(&1u16.to_le_bytes());
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert!(matches!(
        fs.extents(big, None),
        Err(Error::ClusterOutOfRange { cluster: 1, .. })
    ));
}

#[test]
fn bad_and_free_clusters_and_short_chains() {
    let mut img = sample();
    img.set_fat(5, 0xFF7);
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert!(matches!(
        fs.open(big, None),
        Err(Error::BadCluster {
            start: 3,
            cluster: 5
        })
    ));

    let mut img = sample();
    img.set_fat(5, 0);
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert!(matches!(
        fs.open(big, None),
        Err(Error::FreeClusterInChain {
            start: 3,
            cluster: 5
        })
    ));

    let mut img = sample();
    img.set_fat(5, 0xFFF); // chain 3 -> 5 ends: 2 clusters for 1200 bytes
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert!(matches!(
        fs.open(big, None),
        Err(Error::ChainTooShort {
            start: 3,
            clusters: 2,
            needed: 3,
            size: 1200
        })
    ));

    // Longer chain than the size needs: a warning, data still right.
    let mut img = sample();
    let e = ROOT + 32 * 2;
    img.0[e + 28..e + 32].copy_from_slice(&600u32.to_le_bytes());
    let fs = img.open().unwrap();
    let big = fs.lookup("/BIG.BIN").unwrap();
    assert_eq!(read_all(fs.open(big, None).unwrap().as_ref()).len(), 600);
    assert!(
        fs.warnings().iter().any(|w| w.contains("has 3 clusters")),
        "{:?}",
        fs.warnings()
    );
}

#[test]
fn lfn_bad_checksum_falls_back_to_short_name() {
    let mut img = Img::new();
    let s = img.lfn(ROOT, 0, "A long name.txt", b"ALONGN~1TXT", Some(0x55));
    img.entry(ROOT, s, b"ALONGN~1TXT", 0x20, 0, 0);
    // Broken ordinal sequence: drop the middle piece of a 3-piece name.
    let s2 = img.lfn(
        ROOT,
        s + 1,
        "a name that needs three pieces.txt",
        b"ANAMET~1TXT",
        None,
    );
    let mid = ROOT + 32 * (s + 2);
    img.0[mid] = 0xE5;
    img.entry(ROOT, s2, b"ANAMET~1TXT", 0x20, 0, 0);
    let fs = img.open().unwrap();
    let names: Vec<String> = fs
        .read_dir(ROOT_ID)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["ALONGN~1.TXT", "ANAMET~1.TXT"]);
    let w = fs.warnings();
    assert!(w.iter().any(|w| w.contains("checksum 0x55")), "{w:?}");
}

#[test]
fn nt_case_flags_and_oem_names() {
    let mut img = Img::new();
    img.entry(ROOT, 0, b"LOWER   TXT", 0x20, 0, 0);
    img.0[ROOT + 12] = 0x18;
    img.entry(ROOT, 1, b"MAKEFILEMK ", 0x20, 0, 0);
    img.0[ROOT + 32 + 12] = 0x08;
    img.entry(ROOT, 2, b"\x9aBER    TXT", 0x20, 0, 0); // CP850 0x9A = Ü
    let fs = img.open().unwrap();
    let names: Vec<String> = fs
        .read_dir(ROOT_ID)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["lower.txt", "makefile.MK", "ÜBER.TXT"]);
    assert!(fs.lookup("/über.txt").is_ok());
}

/// SUB (cluster 10) holds SELF -> cluster 10 and B (cluster 11); B holds BACK -> cluster 10
/// and ROOT -> cluster 0 (the FAT12/16 root). Walks must end.
#[test]
fn directory_cycles_end_the_walk() {
    let mut img = Img::new();
    img.entry(ROOT, 0, b"SUB        ", 0x10, 10, 0);
    img.set_fat(10, 0xFFF);
    img.set_fat(11, 0xFFF);
    img.entry(cl(10), 0, b"SELF       ", 0x10, 10, 0);
    img.entry(cl(10), 1, b"B          ", 0x10, 11, 0);
    img.entry(cl(11), 0, b"BACK       ", 0x10, 10, 0);
    img.entry(cl(11), 1, b"ROOT       ", 0x10, 0, 0);
    let fs = img.open().unwrap();
    let mut paths = Vec::new();
    fs.walk(&mut |p, _| paths.push(p.to_string())).unwrap();
    assert_eq!(paths, ["/SUB", "/SUB/B", "/SUB/B/BACK"]);
    assert!(
        fs.warnings().iter().any(|w| w.contains("cycle")),
        "{:?}",
        fs.warnings()
    );
}

#[test]
fn fat_copies_differ() {
    let mut img = sample();
    img.0[FAT2 + 10] ^= 0xFF;
    let fs = img.open().unwrap();
    assert!(
        fs.warnings()
            .iter()
            .any(|w| w.contains("FAT copy 2 differs")),
        "{:?}",
        fs.warnings()
    );
    // Reading the second copy: its damaged entries now count.
    let fs2 = FatFs::open(
        Arc::new(img.0.clone()),
        &FatOptions::default().with_fat_copy(1),
    )
    .unwrap();
    assert!(fs2
        .warnings()
        .iter()
        .any(|w| w.contains("FAT copy 1 differs")));
}

fn exfat_fixture() -> Vec<u8> {
    let gz = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/exfat-small.img.gz"
    ))
    .unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn exfat_open(img: &[u8]) -> Result<FatFs, Error> {
    FatFs::open(Arc::new(img.to_vec()), &FatOptions::default())
}

#[test]
fn exfat_boot_checksum_wrong() {
    let mut img = exfat_fixture();
    img[512 + 100] ^= 1; // a byte of sector 1 (extended boot sector)
    assert!(matches!(exfat_open(&img), Err(Error::BootChecksum { .. })));
    // VolumeFlags and PercentInUse are outside the checksum.
    let mut img = exfat_fixture();
    img[112] = 77;
    img[106] ^= 2;
    let fs = exfat_open(&img).unwrap();
    assert!(fs.info().warnings.iter().any(|w| w.contains("dirty")));
}

#[test]
fn exfat_boot_fields() {
    let mut img = exfat_fixture();
    img[108] = 8;
    assert!(matches!(
        exfat_open(&img),
        Err(Error::BadBootSector {
            field: "BytesPerSectorShift",
            ..
        })
    ));
    let mut img = exfat_fixture();
    img[0] = 0xE9;
    assert!(matches!(
        exfat_open(&img),
        Err(Error::BadBootSector {
            field: "JumpBoot",
            ..
        })
    ));
}

/// Recomputes the SetChecksum of the set at `off` (as the exFAT specification defines it).
fn fix_set_checksum(img: &mut [u8], off: usize) {
    let n = (usize::from(img[off + 1]) + 1) * 32;
    let mut sum = 0u16;
    for (i, &b) in img[off..off + n].iter().enumerate() {
        if i == 2 || i == 3 {
            continue;
        }
        sum = (if sum & 1 != 0 { 0x8000u16 } else { 0 })
            .wrapping_add(sum >> 1)
            .wrapping_add(u16::from(b));
    }
    img[off + 2..off + 4].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn exfat_set_checksum_wrong() {
    let mut img = exfat_fixture();
    let fs = exfat_open(&img).unwrap();
    let id = fs.lookup("/hello.txt").unwrap();
    let off = usize::try_from(id).unwrap();
    assert_eq!(img[off], 0x85);
    img[off + 64 + 2] ^= 0x20; // 'h' -> 'H' in the File Name entry
    let fs = exfat_open(&img).unwrap();
    match fs.read_dir(ROOT_ID) {
        Err(Error::SetChecksum { offset, .. }) => assert_eq!(offset, id),
        other => panic!("{other:?}"),
    }
    // With the checksum fixed, the renamed file is listed.
    fix_set_checksum(&mut img, off);
    let fs = exfat_open(&img).unwrap();
    assert!(fs
        .read_dir(ROOT_ID)
        .unwrap()
        .iter()
        .any(|e| e.name == "Hello.txt"));
}

#[test]
fn exfat_valid_data_length_reads_zeros() {
    let mut img = exfat_fixture();
    let fs = exfat_open(&img).unwrap();
    let id = fs.lookup("/rand40k.bin").unwrap();
    let full = read_all(fs.open(id, None).unwrap().as_ref());
    let off = usize::try_from(id).unwrap();
    img[off + 32 + 8..off + 32 + 16].copy_from_slice(&1000u64.to_le_bytes());
    fix_set_checksum(&mut img, off);
    let fs = exfat_open(&img).unwrap();
    let data = read_all(fs.open(id, None).unwrap().as_ref());
    assert_eq!(data.len(), 40_000);
    assert_eq!(&data[..1000], &full[..1000]);
    assert!(data[1000..].iter().all(|&b| b == 0));
    let ext = fs.extents(id, None).unwrap();
    assert_eq!(
        ext.last().map(|e| (e.file_offset, e.len, e.volume_offset)),
        Some((1000, 39_000, None))
    );
    // ValidDataLength past DataLength is an error.
    img[off + 32 + 8..off + 32 + 16].copy_from_slice(&50_000u64.to_le_bytes());
    fix_set_checksum(&mut img, off);
    let fs = exfat_open(&img).unwrap();
    assert!(matches!(fs.read_dir(ROOT_ID), Err(Error::BadEntry { .. })));
}

#[test]
fn exfat_directory_pointing_at_root_is_skipped() {
    let mut img = exfat_fixture();
    let fs = exfat_open(&img).unwrap();
    let id = fs.lookup("/deep").unwrap();
    let off = usize::try_from(id).unwrap();
    let root_cluster = u32::from_le_bytes(img[96..100].try_into().unwrap());
    img[off + 32 + 20..off + 32 + 24].copy_from_slice(&root_cluster.to_le_bytes());
    fix_set_checksum(&mut img, off);
    let fs = exfat_open(&img).unwrap();
    let mut n = 0;
    fs.walk(&mut |_, _| n += 1).unwrap();
    assert!(n > 0);
    assert!(matches!(fs.lookup("/deep"), Err(Error::NotFound(_))));
    assert!(fs
        .warnings()
        .iter()
        .any(|w| w.contains("points at its own directory or the root")));
}

#[test]
fn exfat_truncated() {
    let img = exfat_fixture();
    assert!(matches!(
        exfat_open(&img[..img.len() / 2]),
        Err(Error::VolumeTruncated { .. })
    ));
    assert!(matches!(
        exfat_open(&img[..3000]),
        Err(Error::Io(_)) | Err(Error::VolumeTruncated { .. })
    ));
}

/// Opens, walks (bounded) and reads every file; errors are fine, panics and hangs are not.
fn exercise(img: Vec<u8>) {
    let Ok(fs) = FatFs::open(Arc::new(img), &FatOptions::default()) else {
        return;
    };
    let _ = fs.info();
    let _ = fs.used_map();
    let mut ids = Vec::new();
    let _ = fs.walk(&mut |_, e| ids.push((e.id, e.kind)));
    for (id, kind) in ids.into_iter().take(500) {
        let _ = fs.metadata(id);
        if kind != FileKind::Dir {
            if let Ok(r) = fs.open(id, None) {
                let mut buf = vec![0u8; r.size().min(1 << 20) as usize];
                let _ = r.read_at(&mut buf, 0);
            }
            let _ = fs.extents(id, None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_fat12_never_panics(muts in proptest::collection::vec((0usize..HEAP + 8 * BPS, any::<u8>()), 1..16)) {
        let mut img = sample();
        for (at, v) in muts {
            img.0[at] = v;
        }
        exercise(img.0);
    }

    #[test]
    fn mutated_exfat_never_panics(muts in proptest::collection::vec((0usize..3 << 20, any::<u8>()), 1..16)) {
        let mut img = exfat_fixture();
        for (at, v) in muts {
            // aim at the boot region, the FAT and the first directory clusters
            let at = match at % 3 { 0 => at % 6144, 1 => (1 << 20) + at % 4096, _ => (2 << 20) + at % 65536 };
            img[at] = v;
        }
        exercise(img);
    }
}
