//! Writers: qemu-img check + compare on our output, and proptest round trips through our
//! reader.

mod common;

use cairn_io::{AllocationMap, DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vmdk::{
    write_monolithic_sparse, write_stream_optimized, AdapterType, VmdkImage, WriteOptions,
};
use common::*;
use proptest::prelude::*;

/// A map with the non-zero 64 KiB blocks of `d` as Data, the rest Unallocated.
fn map_of(d: &[u8]) -> AllocationMap {
    let mut m = AllocationMap::new(d.len() as u64);
    for (i, c) in d.chunks(65_536).enumerate() {
        if c.iter().any(|&b| b != 0) {
            m.push((i * 65_536) as u64, c.len() as u64, RangeKind::Data)
                .unwrap();
        }
    }
    m.finish()
}

#[test]
fn written_images_pass_qemu_check_and_compare() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_raw(5);
    let raw_path = dir.path().join("src.raw");
    std::fs::write(&raw_path, &raw).unwrap();
    let map = map_of(&raw);
    let mut opts = WriteOptions::default();
    opts.uuid = Some([0x11; 16]);
    opts.adapter = AdapterType::LsiLogic;
    for (name, stream) in [("sparse.vmdk", false), ("stream.vmdk", true)] {
        let out = dir.path().join(name);
        if stream {
            write_stream_optimized(&raw, &map, &out, &opts).unwrap();
        } else {
            write_monolithic_sparse(&raw, &map, &out, &opts).unwrap();
        }
        run("qemu-img", &["check", "-f", "vmdk", p(&out)]);
        run(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "vmdk", p(&raw_path), p(&out)],
        );
        let info = run("qemu-img", &["info", "--output=json", p(&out)]);
        let want = if stream {
            "streamOptimized"
        } else {
            "monolithicSparse"
        };
        assert!(info.contains(want), "{info}");
        let img = VmdkImage::open(&out, &Limits::default()).unwrap();
        assert_eq!(img.subformat(), want);
        assert_eq!(img.identity().uuid, Some([0x11; 16]));
        assert_eq!(img.descriptor().ddb["ddb.adapterType"], "lsilogic");
        assert!(read_all(&img, 1 << 20) == raw);
        // Holes stay holes: our map and qemu's agree, and neither claims the zero regions.
        let ours = img.layer_map().unwrap();
        assert_eq!(ours, qemu_map(&out, raw.len() as u64));
        assert_eq!(
            ours.bytes_of(RangeKind::Data),
            map.bytes_of(RangeKind::Data)
        );
    }
    // No temporary files left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(left.is_empty());
}

#[test]
fn writer_rejects_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let src = vec![0u8; 4096];
    let map = AllocationMap::uniform(4096, RangeKind::Data);
    let mut opts = WriteOptions::default();
    opts.grain_bytes = 3000;
    let out = dir.path().join("x.vmdk");
    assert!(matches!(
        write_monolithic_sparse(&src, &map, &out, &opts),
        Err(cairn_vmdk::Error::BadWriteInput(_))
    ));
    let bad_map = AllocationMap::uniform(8192, RangeKind::Data);
    assert!(matches!(
        write_stream_optimized(&src, &bad_map, &out, &WriteOptions::default()),
        Err(cairn_vmdk::Error::BadWriteInput(_))
    ));
    assert!(!out.exists());
}

/// A map whose Data runs are exactly the non-zero bytes of `d` (unaligned, many per grain),
/// with the gaps alternately Zero and Unallocated.
fn exact_map(d: &[u8]) -> AllocationMap {
    let mut m = AllocationMap::new(d.len() as u64);
    let mut i = 0;
    let mut flip = false;
    while i < d.len() {
        let nz = d[i] != 0;
        let mut j = i;
        while j < d.len() && (d[j] != 0) == nz {
            j += 1;
        }
        let kind = if nz {
            RangeKind::Data
        } else {
            flip = !flip;
            if flip {
                RangeKind::Zero
            } else {
                RangeKind::Unallocated
            }
        };
        m.push(i as u64, (j - i) as u64, kind).unwrap();
        i = j;
    }
    m.finish()
}

fn sparse_content() -> impl Strategy<Value = Vec<u8>> {
    // 1..=40 sectors of 4 KiB... up to ~1.3 MiB, with a few data islands.
    (
        1usize..=330,
        proptest::collection::vec((0usize..330, 1usize..20_000, any::<u8>()), 0..6),
    )
        .prop_map(|(pages, islands)| {
            let len = pages * 4096 - if pages % 3 == 0 { 512 } else { 0 };
            let mut d = vec![0u8; len];
            for (start, l, b) in islands {
                let s = (start * 4096 + 77).min(len);
                let e = (s + l).min(len);
                for (i, x) in d[s..e].iter_mut().enumerate() {
                    *x = b ^ i.to_le_bytes()[0];
                }
            }
            d
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn round_trip_through_our_reader(d in sparse_content(), grain_k in 2u32..=5, stream in any::<bool>(), exact in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("p.vmdk");
        let mut opts = WriteOptions::default();
        opts.grain_bytes = 1024 << grain_k; // 4..32 KiB
        opts.compression_level = 1;
        let map = if exact { exact_map(&d) } else { map_of(&d) };
        if stream {
            write_stream_optimized(&d, &map, &out, &opts).unwrap();
        } else {
            write_monolithic_sparse(&d, &map, &out, &opts).unwrap();
        }
        let img = VmdkImage::open(&out, &Limits::default()).unwrap();
        let size = usize::try_from(img.size()).unwrap();
        prop_assert_eq!(size, d.len().div_ceil(512) * 512);
        let back = read_all(&img, 7000);
        prop_assert!(back[..d.len()] == d[..]);
        prop_assert!(back[d.len()..].iter().all(|&b| b == 0));
    }
}
