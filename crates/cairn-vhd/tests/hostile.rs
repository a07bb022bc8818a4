//! Damaged and hostile images: each mutation gives its own error variant, never a panic.
// Test fixtures are a few MiB: offsets always fit in usize and bytes are meant to wrap.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;
use std::sync::Arc;

use cairn_io::{AllocationMap, DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhd::{
    write_differencing, write_dynamic, write_fixed, DifferencingOptions, DynamicOptions, Error,
    FixedOptions, FooterSource, VhdImage, VhdParent,
};
use common::*;

const MIB: usize = 1 << 20;

fn disk() -> Vec<u8> {
    let mut d = vec![0u8; 4 * MIB];
    fill_random(&mut d[2 * MIB + 4096..2 * MIB + 8192], 5);
    d
}

/// The bytes of the image `write` makes of [`disk`] (with its 64 KiB data map) at `path`
/// in a temporary folder.
fn bytes_written(
    write: impl FnOnce(&dyn ReadAt, &AllocationMap, &Path) -> Result<(), Error>,
) -> Vec<u8> {
    let d = disk();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.vhd");
    write(&d, &data_map(&d), &path).unwrap();
    std::fs::read(path).unwrap()
}

fn bytes_of_fixed() -> Vec<u8> {
    bytes_written(|d, map, path| write_fixed(d, map, path, &FixedOptions::default()))
}

fn bytes_of_dynamic() -> Vec<u8> {
    bytes_written(|d, map, path| write_dynamic(d, map, path, &DynamicOptions::default()))
}

/// A child of `parent.vhd` (which is not written) holding all of [`disk`].
fn bytes_of_differencing() -> Vec<u8> {
    bytes_written(|d, map, path| {
        write_differencing(
            d,
            map,
            &path.with_file_name("parent.vhd"),
            &VhdParent::new([7; 16]),
            path,
            &DifferencingOptions::default(),
        )
    })
}

fn open(bytes: Vec<u8>) -> Result<VhdImage, Error> {
    open_with(bytes, &Limits::default())
}

fn open_with(bytes: Vec<u8>, limits: &Limits) -> Result<VhdImage, Error> {
    VhdImage::from_reader(Arc::new(bytes), limits)
}

fn checksum(b: &[u8], skip: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &x) in b.iter().enumerate() {
        if !(skip..skip + 4).contains(&i) {
            sum = sum.wrapping_add(u32::from(x));
        }
    }
    !sum
}

/// Applies `f` to the footer at `at` and fixes its checksum.
fn patch_footer(img: &mut [u8], at: usize, f: impl Fn(&mut [u8])) {
    let footer = &mut img[at..at + 512];
    f(footer);
    let sum = checksum(footer, 64);
    footer[64..68].copy_from_slice(&sum.to_be_bytes());
}

/// Applies `f` to both footers of a dynamic image.
fn patch_both_footers(img: &mut [u8], f: impl Fn(&mut [u8])) {
    let end = img.len() - 512;
    patch_footer(img, 0, &f);
    patch_footer(img, end, &f);
}

/// Applies `f` to the dynamic header (at 512 in our images) and fixes its checksum.
fn patch_header(img: &mut [u8], f: impl Fn(&mut [u8])) {
    let h = &mut img[512..1536];
    f(h);
    let sum = checksum(h, 36);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
}

fn bat_offset(img: &[u8]) -> usize {
    usize::try_from(u64::from_be_bytes(
        img[512 + 16..512 + 24].try_into().unwrap(),
    ))
    .unwrap()
}

#[test]
fn pristine_images_open() {
    for b in [
        bytes_of_fixed(),
        bytes_of_dynamic(),
        bytes_of_differencing(),
    ] {
        let img = open(b).unwrap();
        assert_eq!(read_all(&img, MIB), disk());
    }
}

#[test]
fn bad_cookie() {
    let mut f = bytes_of_fixed();
    let end = f.len() - 512;
    f[end] = b'X';
    assert!(matches!(
        open(f),
        Err(Error::BadFooterCookie { offset, .. }) if offset as usize == end
    ));
}

#[test]
fn bad_footer_checksum_reports_expected_and_actual() {
    let mut f = bytes_of_fixed();
    let end = f.len() - 512;
    let stored = u32::from_be_bytes(f[end + 64..end + 68].try_into().unwrap());
    f[end + 100] ^= 1; // a reserved byte: only the checksum notices
    match open(f) {
        Err(Error::FooterChecksum {
            offset,
            expected,
            actual,
        }) => {
            assert_eq!(offset as usize, end);
            assert_eq!(actual, stored);
            assert_eq!(expected, stored.wrapping_sub(1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dynamic_falls_back_to_the_footer_copy() {
    let mut d = bytes_of_dynamic();
    let end = d.len() - 512;
    d[end + 100] ^= 1;
    let img = open(d.clone()).unwrap();
    assert_eq!(img.footer_source(), FooterSource::Copy);
    assert_eq!(read_all(&img, MIB), disk());
    // Both copies bad: the end footer's error.
    d[100] ^= 1;
    assert!(matches!(open(d), Err(Error::FooterChecksum { .. })));
}

#[test]
fn old_511_byte_footer() {
    let mut f = bytes_of_fixed();
    f.pop();
    let img = open(f).unwrap();
    assert_eq!(img.footer_source(), FooterSource::EndShort);
    assert_eq!(read_all(&img, MIB), disk());
}

#[test]
fn unsupported_disk_type() {
    let mut f = bytes_of_fixed();
    let end = f.len() - 512;
    patch_footer(&mut f, end, |h| {
        h[60..64].copy_from_slice(&5u32.to_be_bytes())
    });
    assert!(matches!(
        open(f),
        Err(Error::UnsupportedDiskType { disk_type: 5, .. })
    ));
}

#[test]
fn header_checksum_and_cookie() {
    let mut d = bytes_of_dynamic();
    d[512 + 900] ^= 0x40;
    assert!(matches!(
        open(d),
        Err(Error::HeaderChecksum { offset: 512, .. })
    ));
    let mut d = bytes_of_dynamic();
    patch_header(&mut d, |h| h[0] = b'X');
    assert!(matches!(
        open(d),
        Err(Error::BadHeaderCookie { offset: 512, .. })
    ));
    let mut d = bytes_of_dynamic();
    let len = d.len() as u64;
    patch_both_footers(&mut d, |f| {
        f[16..24].copy_from_slice(&(len - 100).to_be_bytes())
    });
    assert!(matches!(open(d), Err(Error::HeaderOutsideFile { .. })));
}

#[test]
fn bat_entry_outside_file() {
    let mut d = bytes_of_dynamic();
    let bat = bat_offset(&d);
    let far = u32::try_from(d.len() / 512).unwrap();
    d[bat + 4..bat + 8].copy_from_slice(&far.to_be_bytes());
    assert!(matches!(
        open(d),
        Err(Error::BlockOutsideFile { index: 1, .. })
    ));
}

#[test]
fn bat_itself_outside_file() {
    let mut d = bytes_of_dynamic();
    let len = d.len() as u64;
    patch_header(&mut d, |h| {
        h[16..24].copy_from_slice(&(len - 4).to_be_bytes())
    });
    assert!(matches!(open(d), Err(Error::BatOutsideFile { .. })));
    let mut d = bytes_of_dynamic();
    patch_header(&mut d, |h| {
        h[16..24].copy_from_slice(&u64::MAX.to_be_bytes())
    });
    assert!(matches!(open(d), Err(Error::BatOutsideFile { .. })));
}

#[test]
fn bad_block_sizes() {
    for bs in [0u32, 3 * 512, 256, 1 << 30, u32::MAX] {
        let mut d = bytes_of_dynamic();
        patch_header(&mut d, |h| h[32..36].copy_from_slice(&bs.to_be_bytes()));
        match open(d) {
            Err(Error::BadBlockSize { block_size, .. }) => assert_eq!(block_size, bs),
            other => panic!("block size {bs}: {other:?}"),
        }
    }
}

#[test]
fn bat_too_small_and_too_large() {
    let mut d = bytes_of_dynamic();
    patch_header(&mut d, |h| h[28..32].copy_from_slice(&1u32.to_be_bytes()));
    assert!(matches!(
        open(d),
        Err(Error::BatTooSmall { entries: 1, .. })
    ));
    let mut limits = Limits::default();
    limits.max_table_bytes = 4;
    assert!(matches!(
        open_with(bytes_of_dynamic(), &limits),
        Err(Error::BatTooLarge { bytes: 8, max: 4 })
    ));
}

#[test]
fn absurd_virtual_size() {
    let mut d = bytes_of_dynamic();
    patch_both_footers(&mut d, |f| {
        f[48..56].copy_from_slice(&(1u64 << 60).to_be_bytes())
    });
    assert!(matches!(
        open(d),
        Err(Error::VirtualSizeTooLarge { size, .. }) if size == 1 << 60
    ));
    let mut limits = Limits::default();
    limits.max_virtual_size = MIB as u64;
    assert!(matches!(
        open_with(bytes_of_fixed(), &limits),
        Err(Error::VirtualSizeTooLarge { .. })
    ));
}

#[test]
fn truncated_files() {
    assert!(matches!(
        open(vec![0; 100]),
        Err(Error::TooSmall { size: 100 })
    ));
    // A fixed disk cut in the middle has no footer at its end.
    let f = bytes_of_fixed();
    assert!(matches!(
        open(f[..2 * MIB].to_vec()),
        Err(Error::BadFooterCookie { .. })
    ));
    // A fixed disk whose footer claims more data than the file holds.
    let mut f = bytes_of_fixed();
    let end = f.len() - 512;
    patch_footer(&mut f, end, |h| {
        h[48..56].copy_from_slice(&(8 * MIB as u64).to_be_bytes())
    });
    assert!(matches!(open(f), Err(Error::FixedTruncated { .. })));
    // A dynamic disk cut inside its last block: the copy at 0 is used, the block is not
    // in the file any more.
    let d = bytes_of_dynamic();
    let cut = d.len() - 512 - MIB;
    assert!(matches!(
        open(d[..cut].to_vec()),
        Err(Error::BlockOutsideFile { .. })
    ));
    // Every prefix of a small dynamic image fails cleanly or opens, never panics.
    let d = bytes_of_dynamic();
    for len in (0..d.len()).step_by(4099) {
        if let Ok(img) = open(d[..len].to_vec()) {
            let mut buf = vec![0u8; 65536];
            let _ = img.read_at(&mut buf, 0);
        }
    }
}

#[test]
fn parent_locator_past_the_file() {
    let c = bytes_of_differencing();
    let img = open(c.clone()).unwrap();
    assert_eq!(img.parent_link().unwrap().hints.len(), 3);
    let len = c.len() as u64;
    // Locator slot 0: data offset past the end.
    let mut d = c.clone();
    patch_header(&mut d, |h| {
        h[576 + 16..576 + 24].copy_from_slice(&len.to_be_bytes())
    });
    assert!(matches!(
        open(d),
        Err(Error::LocatorOutsideFile { index: 0, .. })
    ));
    // Locator slot 1: absurd length.
    let mut d = c;
    patch_header(&mut d, |h| {
        h[600 + 8..600 + 12].copy_from_slice(&u32::MAX.to_be_bytes())
    });
    assert!(matches!(
        open(d),
        Err(Error::LocatorOutsideFile { index: 1, .. })
    ));
}

#[test]
fn writers_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.vhd");
    let odd = vec![0u8; 1000];
    assert!(matches!(
        write_fixed(
            &odd,
            &AllocationMap::new(1000),
            &out,
            &FixedOptions::default()
        ),
        Err(Error::BadWriteSize { size: 1000, .. })
    ));
    let d = vec![0u8; 4096];
    assert!(matches!(
        write_fixed(&d, &AllocationMap::new(512), &out, &FixedOptions::default()),
        Err(Error::MapSizeMismatch { .. })
    ));
    let mut opts = DynamicOptions::default();
    opts.block_size = 3000;
    assert!(matches!(
        write_dynamic(
            &d,
            &AllocationMap::uniform(4096, RangeKind::Data),
            &out,
            &opts
        ),
        Err(Error::BadOption(_))
    ));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn layer_map_of_a_fixed_disk_is_all_data() {
    let img = open(bytes_of_fixed()).unwrap();
    let m = img.layer_map().unwrap();
    assert_eq!(m.bytes_of(RangeKind::Data), 4 * MIB as u64);
}

/// A poor man's fuzz run (the real target is fuzz/fuzz_targets/vhd.rs): random byte flips
/// in the metadata and bitmaps of valid images must give errors or reads, never panics.
#[test]
fn random_mutations_never_panic() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut limits = Limits::default();
    limits.max_table_bytes = 1 << 20;
    limits.max_unit_bytes = 4 << 20;
    for base in [
        bytes_of_dynamic(),
        bytes_of_differencing(),
        bytes_of_fixed(),
    ] {
        let len = base.len();
        for _ in 0..600 {
            let mut m = base.clone();
            for _ in 0..1 + next() % 4 {
                // Mostly metadata: the first 8 KiB and the footer.
                let r = next();
                let at = if r % 3 == 0 {
                    len - 512 + (r as usize >> 8) % 512
                } else {
                    (r as usize >> 8) % 8192.min(len)
                };
                m[at] = (next() >> 16) as u8;
            }
            // Half the time, re-seal the checksums so the mutation reaches the checks
            // behind them (block size, BAT, locators, sizes).
            if next() % 2 == 0 {
                let end = m.len() - 512;
                patch_footer(&mut m, end, |_| {});
                if m[512..520] == *b"cxsparse" {
                    patch_footer(&mut m, 0, |_| {});
                    patch_header(&mut m, |_| {});
                }
            }
            if let Ok(img) = open_with(m, &limits) {
                let _ = img.layer_map();
                let _ = img.parent_link();
                let mut buf = vec![0u8; 65536];
                let mut off = 0;
                while off < img.size().min(64 << 20) {
                    match img.read_at(&mut buf, off) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => off += n as u64,
                    }
                }
            }
        }
    }
}

#[test]
fn macx_and_deprecated_locators_become_hints_in_priority_order() {
    let mut c = bytes_of_differencing();
    let loc = |img: &[u8], slot: usize| {
        let at = 512 + 576 + slot * 24;
        let off = u64::from_be_bytes(img[at + 16..at + 24].try_into().unwrap());
        (at, usize::try_from(off).unwrap())
    };
    let set = |img: &mut Vec<u8>, slot: usize, code: &[u8; 4], data: &[u8]| {
        let (at, off) = loc(img, slot);
        img[off..off + data.len()].copy_from_slice(data);
        let len = u32::try_from(data.len()).unwrap();
        patch_header(img, |h| {
            let e = at - 512;
            h[e..e + 4].copy_from_slice(code);
            h[e + 8..e + 12].copy_from_slice(&len.to_be_bytes());
        });
    };
    set(&mut c, 0, b"Wi2r", b".\\old.vhd\0");
    set(&mut c, 1, b"MacX", b"file://localhost/Users/a%20b/p.vhd");
    let img = open(c).unwrap();
    assert_eq!(
        img.parent_link().unwrap().hints,
        vec![
            "/Users/a b/p.vhd".to_string(),
            ".\\old.vhd".to_string(),
            "parent.vhd".to_string()
        ]
    );
}
