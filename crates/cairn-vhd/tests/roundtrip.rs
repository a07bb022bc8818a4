//! Property tests: writers and readers agree on random sparse contents; footers and headers
//! round-trip through encode/decode.
// Test fixtures are a few MiB: offsets always fit in usize and bytes are meant to wrap.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use cairn_io::{AllocationMap, DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhd::{
    write_dynamic, write_fixed, DiskType, DynamicHeader, DynamicOptions, FixedOptions, Footer,
    Geometry, LocatorEntry, PlatformCode, VhdImage,
};
use common::*;
use proptest::prelude::*;

/// Random ranges (offset, len, seed) over a disk of `sectors` sectors.
fn content() -> impl Strategy<Value = (usize, Vec<(usize, usize, u64)>)> {
    (1usize..1536).prop_flat_map(|sectors| {
        let size = sectors * 512;
        (
            Just(sectors),
            proptest::collection::vec((0..size, 1usize..40_000, any::<u64>()), 0..8),
        )
    })
}

/// The disk (zeros, then each range filled) and the map marking the ranges as `kind`.
fn build(sectors: usize, ranges: &[(usize, usize, u64)], base: &[u8]) -> (Vec<u8>, AllocationMap) {
    let size = sectors * 512;
    let mut disk = base.to_vec();
    let mut mark = vec![false; size];
    for &(off, len, seed) in ranges {
        let end = (off + len).min(size);
        if seed % 5 == 0 {
            disk[off..end].fill(0); // explicit zeros are data too
        } else {
            fill_random(&mut disk[off..end], seed);
        }
        mark[off..end].fill(true);
    }
    let mut map = AllocationMap::new(size as u64);
    let mut i = 0;
    while i < size {
        if !mark[i] {
            i += 1;
            continue;
        }
        let s = i;
        while i < size && mark[i] {
            i += 1;
        }
        map.push(s as u64, (i - s) as u64, RangeKind::Data).unwrap();
    }
    (disk, map.finish())
}

const BLOCK_SIZES: [u32; 4] = [512, 4096, 65536, 2 << 20];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn dynamic_and_fixed_round_trip((sectors, ranges) in content(), bsi in 0usize..4) {
        let (disk, map) = build(sectors, &ranges, &vec![0u8; sectors * 512]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.vhd");
        let mut opts = DynamicOptions::default();
        opts.block_size = BLOCK_SIZES[bsi];
        write_dynamic(&disk, &map, &path, &opts).unwrap();
        let img = VhdImage::open(&path, &Limits::default()).unwrap();
        prop_assert_eq!(img.size(), disk.len() as u64);
        prop_assert!(read_all(&img, 7 * 512 + 3) == disk);
        // Every non-zero byte lies in a Data run of the layer map.
        let lm = img.layer_map().unwrap();
        for r in lm.runs().iter().filter(|r| r.kind != RangeKind::Data) {
            prop_assert!(disk[r.offset as usize..r.end() as usize].iter().all(|&b| b == 0));
        }
        let fixed = dir.path().join("f.vhd");
        write_fixed(&disk, &map, &fixed, &FixedOptions::default()).unwrap();
        let img = VhdImage::open(&fixed, &Limits::default()).unwrap();
        prop_assert!(read_all(&img, 65536) == disk);
    }

    #[test]
    fn differencing_round_trip((sectors, ranges) in content(), bsi in 0usize..4, seed: u64) {
        let mut parent_disk = vec![0u8; sectors * 512];
        fill_random(&mut parent_disk, seed);
        let (child_disk, changed) = build(sectors, &ranges, &parent_disk);
        let dir = tempfile::tempdir().unwrap();
        let parent_path = dir.path().join("p.vhd");
        write_fixed(
            &parent_disk,
            &AllocationMap::uniform(parent_disk.len() as u64, RangeKind::Data),
            &parent_path,
            &FixedOptions::default(),
        )
        .unwrap();
        let child_path = dir.path().join("c.vhd");
        let parent = write_child(&child_disk, &changed, &parent_path, &child_path, BLOCK_SIZES[bsi]);
        let mut child = VhdImage::open(&child_path, &Limits::default()).unwrap();
        // The child's own map covers exactly the changed ranges, widened to sectors.
        let lm = child.layer_map().unwrap();
        for r in changed.ranges_of(RangeKind::Data) {
            let s = r.offset / 512 * 512;
            let e = r.end().div_ceil(512) * 512;
            prop_assert!(lm.clip(s, e - s).iter().all(|c| c.kind == RangeKind::Data));
        }
        prop_assert_eq!(
            lm.bytes_of(RangeKind::Data) % 512,
            0
        );
        child.attach_parent(Arc::new(parent)).unwrap();
        prop_assert!(read_all(&child, 65536 + 512) == child_disk);
    }

    #[test]
    fn footer_round_trip(
        features: u32, version: u32, data_offset: u64, timestamp: u32, app: [u8; 4],
        cv: u32, os: [u8; 4], orig: u64, cur: u64, c: u16, h: u8, s: u8, t in 2u32..5,
        uid: [u8; 16], saved: u8,
    ) {
        let f = Footer {
            features,
            format_version: version,
            data_offset,
            timestamp,
            creator_app: app,
            creator_version: cv,
            creator_os: os,
            original_size: orig,
            current_size: cur,
            geometry: Geometry { cylinders: c, heads: h, sectors_per_track: s },
            disk_type: match t { 2 => DiskType::Fixed, 3 => DiskType::Dynamic, _ => DiskType::Differencing },
            unique_id: uid,
            saved_state: saved,
        };
        let back = Footer::decode(&f.encode(), 0).unwrap();
        prop_assert_eq!(back, f);
    }

    #[test]
    fn header_round_trip(
        table_offset: u64, version: u32, entries: u32, bs: u32, puid: [u8; 16], pts: u32,
        name in "[^\u{0}]{0,60}",
        locs in proptest::collection::btree_map(0usize..8, (0usize..6, any::<u32>(), any::<u32>(), any::<u64>()), 0..8),
    ) {
        let codes = [PlatformCode::W2ru, PlatformCode::W2ku, PlatformCode::MacX,
                     PlatformCode::Wi2r, PlatformCode::Wi2k, PlatformCode::Mac];
        let header = DynamicHeader {
            table_offset,
            header_version: version,
            max_table_entries: entries,
            block_size: bs,
            parent_unique_id: puid,
            parent_timestamp: pts,
            parent_name: name,
            locators: locs
                .into_iter()
                .map(|(slot, (c, space, len, off))| {
                    (slot, LocatorEntry { code: codes[c], data_space: space, data_len: len, data_offset: off })
                })
                .collect(),
        };
        let back = DynamicHeader::decode(&header.encode(), 0).unwrap();
        prop_assert_eq!(back, header);
    }
}

#[test]
fn geometry_never_exceeds_the_size_below_the_chs_maximum() {
    for mib in [1u64, 3, 64, 100, 1000, 4000, 31_000, 127_000] {
        let size = mib << 20;
        let g = Geometry::for_size(size);
        assert!(g.size() <= size, "{mib} MiB: {g:?}");
        assert!(g.heads <= 16);
    }
}

#[test]
fn reads_are_independent_of_request_size() {
    let mut disk = vec![0u8; 3 << 20];
    fill_random(&mut disk[1000..1_500_000], 1);
    let map = data_map(&disk);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhd");
    write_dynamic(&disk, &map, &path, &DynamicOptions::default()).unwrap();
    let img = VhdImage::open(&path, &Limits::default()).unwrap();
    for step in [333, 4097, 1 << 20, 3 << 20] {
        assert!(read_all(&img, step) == disk, "step {step}");
    }
}
