//! Micro benchmark of `find_versions`: 100 synthetic restore points of a 100k-file volume,
//! each changing 1% of the files of the previous one, searched for `*.doc`.
//!
//! Then the same searches through the find index ([`IndexGroup`]): built from scratch,
//! updated by one restore point, encoded, decoded and queried.
//!
//! `cargo run --release -p cairn-catalog --example find_bench [restore_points] [files] [index]`
//! (`index`: skip the walk timings, for profiling the index alone).

use std::time::Instant;

use cairn_catalog::{
    decode_find_group, encode_find_group, find_versions, put_dir, BlobId, Catalog, DirBlob, Entry,
    Extent, Glob, IndexGroup, IndexedPoint, Kind, MemStore, RestorePointRef, Time,
};

const FILES_PER_DIR: usize = 100;
const DIRS_PER_PARENT: usize = 32;

/// Builds the tree of `files` (their (size, mtime) per index) and returns the root id.
fn build(store: &MemStore, files: &[(u64, i64)]) -> BlobId {
    // Leaves: groups of FILES_PER_DIR files.
    let mut level: Vec<Entry> = files
        .chunks(FILES_PER_DIR)
        .enumerate()
        .map(|(d, chunk)| {
            let mut entries: Vec<Entry> = chunk
                .iter()
                .enumerate()
                .map(|(i, &(size, mtime))| {
                    let n = d * FILES_PER_DIR + i;
                    let ext = if n.is_multiple_of(10) { "doc" } else { "dat" };
                    let mut e = Entry::new(format!("file{n:07}.{ext}"), Kind::File, size);
                    e.mtime = Some(Time {
                        secs: mtime,
                        nanos: 0,
                    });
                    e.node = n as u64;
                    e.extents.push(Extent {
                        file_offset: 0,
                        len: size,
                        volume_offset: Some(n as u64 * 65536),
                        encoded: false,
                    });
                    e
                })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let mut dir = Entry::new(format!("d{d:05}"), Kind::Dir, 0);
            dir.child = Some(put_dir(store, &DirBlob { entries }).expect("put"));
            dir
        })
        .collect();
    // Parents until one level fits in the root.
    while level.len() > DIRS_PER_PARENT {
        level = level
            .chunks(DIRS_PER_PARENT)
            .enumerate()
            .map(|(i, chunk)| {
                let mut dir = Entry::new(format!("p{i:05}"), Kind::Dir, 0);
                dir.child = Some(
                    put_dir(
                        store,
                        &DirBlob {
                            entries: chunk.to_vec(),
                        },
                    )
                    .expect("put"),
                );
                dir
            })
            .collect();
    }
    put_dir(store, &DirBlob { entries: level }).expect("put")
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let points = args.first().copied().unwrap_or(100);
    let n = args.get(1).copied().unwrap_or(100_000);
    let store = MemStore::new();
    let mut files: Vec<(u64, i64)> = (0..n).map(|i| (1000 + i as u64, 1_700_000_000)).collect();
    let mut roots = Vec::new();
    let t = Instant::now();
    let mut x = 12345u64;
    for rp in 0..points {
        roots.push(build(&store, &files));
        for _ in 0..n / 100 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let i = usize::try_from(x >> 33).unwrap_or(0) % n;
            files[i] = (files[i].0 + 1, 1_700_000_000 + rp as i64 + 1);
        }
    }
    println!(
        "built {points} catalogs of {n} files in {:?} ({} blobs, {} bytes)",
        t.elapsed(),
        store.len(),
        store.new_bytes()
    );
    let cats: Vec<Catalog<'_, MemStore>> = roots
        .iter()
        .map(|r| Catalog::open(&store, *r).expect("open"))
        .collect();
    let rps: Vec<RestorePointRef<'_, '_, MemStore>> = cats
        .iter()
        .enumerate()
        .map(|(i, c)| RestorePointRef {
            id: format!("rp{i:03}"),
            time: Time {
                secs: i as i64,
                nanos: 0,
            },
            vm_name: "vm".into(),
            catalog: c,
        })
        .collect();
    let patterns = ["*.doc", "file0000042.dat", "/p00001/d00040/*", "*.nomatch"];
    let index_only = std::env::args().any(|a| a == "index");
    for pat in patterns.iter().filter(|_| !index_only) {
        let glob = Glob::new(pat).expect("glob");
        let t = Instant::now();
        let versions = find_versions(&rps, &glob, None, None).expect("find");
        println!(
            "walk  {pat:<18} over {points} restore points: {:>6} versions in {:?}",
            versions.len(),
            t.elapsed()
        );
    }
    let ipoints: Vec<IndexedPoint> = rps
        .iter()
        .zip(&roots)
        .map(|(r, root)| IndexedPoint {
            id: r.id.clone(),
            time: r.time,
            root: *root,
        })
        .collect();
    let mut group = IndexGroup::new("vm", 0, 1);
    let t = Instant::now();
    let st = group
        .update(&store, &ipoints[..points.saturating_sub(1)])
        .expect("index");
    println!(
        "index build from scratch ({} points): {} versions, {} dirs read, {:?}",
        st.added,
        group.versions(),
        st.dirs_read,
        t.elapsed()
    );
    let t = Instant::now();
    let st = group.update(&store, &ipoints).expect("index");
    println!(
        "index update by {} point: {} dirs read, {:?}",
        st.added,
        st.dirs_read,
        t.elapsed()
    );
    let t = Instant::now();
    let bytes = encode_find_group(&group).expect("encode");
    println!("index encode: {} bytes in {:?}", bytes.len(), t.elapsed());
    let t = Instant::now();
    let group = decode_find_group(&bytes).expect("decode");
    println!("index decode: {:?}", t.elapsed());
    for pat in patterns {
        let glob = Glob::new(pat).expect("glob");
        let t = Instant::now();
        let versions = group.find(&glob, None, None);
        println!(
            "index {pat:<18} over {points} restore points: {:>6} versions in {:?}",
            versions.len(),
            t.elapsed()
        );
    }
}
