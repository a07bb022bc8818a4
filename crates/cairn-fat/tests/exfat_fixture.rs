//! The committed exFAT image (made by tests/fixtures/make-exfat.sh through exfat-fuse) read
//! back and compared with the script's manifest, TSK (`fls -r -p` + `icat`) and
//! `dump.exfat` (exfatprogs).

mod common;

use std::io::Read;
use std::sync::Arc;

use cairn_fat::{FatFs, FatOptions, FatType};
use cairn_io::RangeKind;
use cairn_vfs::{FileKind, FileSystem};
use common::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn image() -> Vec<u8> {
    let gz = std::fs::read(format!("{DIR}/exfat-small.img.gz")).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn manifest() -> Tree {
    let text = std::fs::read_to_string(format!("{DIR}/exfat-small.tsv")).unwrap();
    let mut t = Tree::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f[0] == "d" {
            t.insert(f[3].to_string(), (true, 0, String::new()));
        } else {
            t.insert(
                f[3].to_string(),
                (false, f[1].parse().unwrap(), f[2].to_string()),
            );
        }
    }
    t
}

fn open(img: Vec<u8>) -> FatFs {
    FatFs::open(Arc::new(img), &FatOptions::default()).unwrap()
}

#[test]
fn tree_matches_manifest() {
    let fs = open(image());
    assert_eq!(fs.fat_type(), FatType::ExFat);
    let info = fs.info();
    assert_eq!(info.fs_type, "exfat");
    assert_eq!(info.label.as_deref(), Some("CAIRNEXFAT"));
    assert_eq!(info.block_size, 4096);
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    let ours = tree_of(&fs);
    let want = manifest();
    assert_eq!(ours, want);
    assert!(
        ours.contains_key("/ünïcödé-dir/smile-😀.txt"),
        "non-BMP name via surrogates"
    );

    // Case-insensitive lookup through the volume's up-case table.
    let id = fs.lookup("/ÜNÏCÖDÉ-DIR/ΕΛΛΗΝΙΚΆ.TXT").unwrap();
    assert_eq!(fs.metadata(id).unwrap().size, 6);
    let m = fs.metadata(fs.lookup("/many").unwrap()).unwrap();
    assert_eq!(m.kind, FileKind::Dir);
    assert!(m.mtime.is_some() && m.btime.is_some());

    // The fragmented file has more than one extent; extents cover every file exactly.
    let frag = fs.lookup("/frag/fragmented.bin").unwrap();
    assert!(fs.extents(frag, None).unwrap().len() > 1);
    let mut all = Vec::new();
    fs.walk(&mut |p, e| all.push((p.to_string(), e.clone())))
        .unwrap();
    for (p, e) in all.iter().filter(|(_, e)| e.kind == FileKind::File) {
        let ext = fs.extents(e.id, None).unwrap();
        assert_eq!(ext.iter().map(|x| x.len).sum::<u64>(), want[p].1, "{p}");
    }
    // The many/ directory spans several clusters: its entries must all be found again.
    assert_eq!(
        all.iter().filter(|(p, _)| p.starts_with("/many/")).count(),
        80
    );
}

#[test]
fn matches_tsk() {
    if !have("fls") || !have("icat") {
        return;
    }
    let img = image();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exfat.img");
    std::fs::write(&path, &img).unwrap();
    let fs = open(img);
    let ours = tree_of(&fs);
    let tsk = fls(&path);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        tsk.keys().collect::<Vec<_>>()
    );
    for (p, (is_dir, addr)) in &tsk {
        if *is_dir || p.starts_with("/many/file-with-a-longer-name-0") {
            continue;
        }
        let data = run("icat", &[path.to_str().unwrap(), addr]);
        assert_eq!(ours[p].2, sha256(&data), "icat {p}");
    }
}

#[test]
fn used_map_matches_dump_exfat() {
    let img = image();
    let fs = open(img.clone());
    let map = fs.used_map().unwrap();
    let info = fs.info();
    assert_eq!(map.size(), info.total_bytes);
    assert_eq!(map.bytes_of(RangeKind::Data), info.used_bytes);
    let heap = 4096 * 512; // ClusterHeapOffset of the fixture, in bytes
    assert_eq!(map.runs()[0].kind, RangeKind::Data);
    assert!(map.runs()[0].len >= heap);
    let used_clusters = (info.used_bytes - heap) / 4096;
    if !have("dump.exfat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exfat.img");
    std::fs::write(&path, &img).unwrap();
    let out = String::from_utf8(run("dump.exfat", &[path.to_str().unwrap()])).unwrap();
    let num = |key: &str| -> u64 {
        let l = out.lines().find(|l| l.contains(key)).unwrap();
        l.split_whitespace().last().unwrap().parse().unwrap()
    };
    let (total, free) = (num("Total Clusters:"), num("Free Clusters:"));
    assert_eq!(used_clusters, total - free);
}

/// Node ids are entry positions: a fresh volume answers for ids it never listed, including
/// entry sets that cross a cluster boundary (the fixture has a dozen).
#[test]
fn ids_survive_reopening() {
    let img = image();
    let first = open(img.clone());
    let mut ids = Vec::new();
    first
        .walk(&mut |p, e| ids.push((p.to_string(), e.id)))
        .unwrap();
    let second = open(img);
    let mut straddling = 0;
    for (p, id) in &ids {
        let a = first.metadata(*id).unwrap();
        let b = second.metadata(*id).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(a, b, "{p}");
        let off = id - 4096 * 512;
        if off % 4096 + 32 * 4 > 4096 {
            straddling += 1;
        }
    }
    assert!(straddling > 0, "fixture should have sets crossing clusters");
}
