//! The find index answers exactly as the catalog walk (`find_versions`) over random series of
//! restore points, through incremental updates, forgotten points and rebuilds; its blobs
//! round-trip and reject corruption with typed errors.

use cairn_catalog::{
    decode_find_group, decode_find_pointer, encode_find_group, encode_find_pointer, find_versions,
    put_dir, BlobId, Catalog, DirBlob, Entry, Error, Glob, IndexGroup, IndexedPoint, Kind,
    MemStore, RestorePointRef, Time, TYPE_FIND_INDEX,
};
use proptest::prelude::*;

/// A tiny file tree: path → (size, mtime); directories are implied by the paths.
type Tree = std::collections::BTreeMap<Vec<String>, (u64, i64)>;

fn put_tree(store: &MemStore, tree: &Tree, prefix: &[String]) -> BlobId {
    let mut entries: std::collections::BTreeMap<String, Entry> = Default::default();
    for (path, &(size, mtime)) in tree {
        if path.len() <= prefix.len() || path[..prefix.len()] != *prefix {
            continue;
        }
        let name = &path[prefix.len()];
        if path.len() == prefix.len() + 1 {
            let mut e = Entry::new(name.clone(), Kind::File, size);
            e.mtime = Some(Time {
                secs: mtime,
                nanos: 0,
            });
            entries.insert(name.clone(), e);
        } else if !entries.contains_key(name) {
            let mut sub = prefix.to_vec();
            sub.push(name.clone());
            let mut d = Entry::new(name.clone(), Kind::Dir, 0);
            d.child = Some(put_tree(store, tree, &sub));
            entries.insert(name.clone(), d);
        }
    }
    put_dir(
        store,
        &DirBlob {
            entries: entries.into_values().collect(),
        },
    )
    .unwrap()
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    let name = prop::sample::select(vec!["a", "b", "a.txt", "c.doc", "a-b"]);
    let path = prop::collection::vec(name, 1..4)
        .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<String>>());
    prop::collection::btree_map(path, (0u64..3, 0i64..3), 0..12).prop_map(|mut t| {
        // A path cannot be both a file and a directory: drop files that are prefixes.
        let keys: Vec<Vec<String>> = t.keys().cloned().collect();
        for k in &keys {
            if keys
                .iter()
                .any(|o| o.len() > k.len() && o[..k.len()] == k[..])
            {
                t.remove(k);
            }
        }
        t
    })
}

fn points_of(roots: &[BlobId]) -> Vec<IndexedPoint> {
    roots
        .iter()
        .enumerate()
        .map(|(i, r)| IndexedPoint {
            id: format!("rp{i:03}"),
            time: Time {
                secs: i64::try_from(i).unwrap(),
                nanos: 0,
            },
            root: *r,
        })
        .collect()
}

fn walk_answer(
    store: &MemStore,
    points: &[IndexedPoint],
    glob: &Glob,
    since: Option<Time>,
) -> Vec<cairn_catalog::Version> {
    let cats: Vec<Catalog<'_, MemStore>> = points
        .iter()
        .map(|p| Catalog::open(store, p.root).unwrap())
        .collect();
    let refs: Vec<RestorePointRef<'_, '_, MemStore>> = points
        .iter()
        .zip(&cats)
        .map(|(p, c)| RestorePointRef {
            id: p.id.clone(),
            time: p.time,
            vm_name: "vm".into(),
            catalog: c,
        })
        .collect();
    find_versions(&refs, glob, since, None).unwrap()
}

const PATTERNS: &[&str] = &["*", "a*", "*.doc", "/a/**", "/a/*", "zzz", "[ab]"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn index_answers_as_the_walk(trees in prop::collection::vec(arb_tree(), 1..6),
                                 forget in prop::collection::vec(any::<bool>(), 6),
                                 split in 0usize..6) {
        let store = MemStore::new();
        let roots: Vec<BlobId> = trees.iter().map(|t| put_tree(&store, t, &[])).collect();
        let all = points_of(&roots);
        // Index a prefix, then the rest (incremental), then forget some points.
        let mut g = IndexGroup::new("vm", 0, 1);
        let split = split.min(all.len());
        g.update(&store, &all[..split]).unwrap();
        let st = g.update(&store, &all).unwrap();
        prop_assert!(!st.rebuilt);
        prop_assert_eq!(st.added, all.len() - split);
        let kept: Vec<IndexedPoint> = all
            .iter()
            .zip(&forget)
            .filter(|(_, f)| !**f)
            .map(|(p, _)| p.clone())
            .collect();
        let mut g2 = g.clone();
        g2.update(&store, &kept).unwrap();
        // And through the codec.
        let g2 = decode_find_group(&encode_find_group(&g2).unwrap()).unwrap();
        for pat in PATTERNS {
            let glob = Glob::new(pat).unwrap();
            prop_assert_eq!(g.find(&glob, None, None), walk_answer(&store, &all, &glob, None));
            let since = Some(Time { secs: 1, nanos: 0 });
            prop_assert_eq!(g.find(&glob, since, None), walk_answer(&store, &all, &glob, since));
            prop_assert_eq!(g2.find(&glob, None, None), walk_answer(&store, &kept, &glob, None));
        }
        // Adding the forgotten points back out of order rebuilds, and still agrees.
        let mut g3 = g2.clone();
        let st = g3.update(&store, &all).unwrap();
        prop_assert_eq!(st.rebuilt, !all.starts_with(&kept));
        let glob = Glob::new("*").unwrap();
        prop_assert_eq!(g3.find(&glob, None, None), walk_answer(&store, &all, &glob, None));
    }

    #[test]
    fn group_round_trip_and_garbage(trees in prop::collection::vec(arb_tree(), 1..4),
                                    data in prop::collection::vec(any::<u8>(), 0..200)) {
        let store = MemStore::new();
        let roots: Vec<BlobId> = trees.iter().map(|t| put_tree(&store, t, &[])).collect();
        let mut g = IndexGroup::new("vm", 2, 3);
        g.update(&store, &points_of(&roots)).unwrap();
        let bytes = encode_find_group(&g).unwrap();
        prop_assert_eq!(decode_find_group(&bytes).unwrap(), g);
        let _ = decode_find_group(&data);
        let _ = decode_find_pointer(&data);
        // A valid frame around random bytes only gives typed errors.
        let mut framed = bytes[..8].to_vec();
        framed.extend_from_slice(&1u16.to_le_bytes());
        framed.push(TYPE_FIND_INDEX);
        framed.push(0);
        framed.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        framed.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        framed.extend_from_slice(&data);
        let _ = decode_find_group(&framed);
    }

    #[test]
    fn pointer_round_trip(ids in prop::collection::vec(
        prop::collection::vec(any::<[u8; 32]>(), 1..4), 0..20)) {
        prop_assert_eq!(decode_find_pointer(&encode_find_pointer(&ids).unwrap()).unwrap(), ids);
    }
}

/// A directory written entry by entry: names may repeat and a child blob may be shared, as
/// a hostile or odd catalog allows (entries need only be sorted).
#[derive(Debug, Clone)]
enum Node {
    File(&'static str, u64),
    Dir(&'static str, Vec<Node>),
}

fn put_nodes(store: &MemStore, nodes: &[Node]) -> BlobId {
    let mut entries: Vec<Entry> = nodes
        .iter()
        .map(|n| match n {
            Node::File(name, size) => {
                let mut e = Entry::new(*name, Kind::File, *size);
                e.mtime = Some(Time { secs: 1, nanos: 0 });
                e
            }
            Node::Dir(name, sub) => {
                let mut e = Entry::new(*name, Kind::Dir, 0);
                e.child = Some(put_nodes(store, sub));
                e
            }
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    put_dir(store, &DirBlob { entries }).unwrap()
}

fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
    let name = || prop::sample::select(vec!["a", "b", "c"]);
    let leaf = (name(), 0u64..3).prop_map(|(n, s)| Node::File(n, s));
    let node = leaf.prop_recursive(3, 12, 4, move |inner| {
        prop_oneof![
            (name(), 0u64..3).prop_map(|(n, s)| Node::File(n, s)),
            (name(), prop::collection::vec(inner, 0..4)).prop_map(|(n, v)| Node::Dir(n, v)),
        ]
    });
    prop::collection::vec(node, 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Repeated names (one path standing for several entries, a file and a directory at the
    /// same path) and directory blobs shared between paths: the index still answers as the
    /// walk, built at once or point by point.
    #[test]
    fn index_answers_as_the_walk_on_odd_trees(trees in prop::collection::vec(arb_nodes(), 1..6),
                                              split in 0usize..6) {
        let store = MemStore::new();
        let roots: Vec<BlobId> = trees.iter().map(|t| put_nodes(&store, t)).collect();
        let all = points_of(&roots);
        let mut once = IndexGroup::new("vm", 0, 1);
        once.update(&store, &all).unwrap();
        let mut stepwise = IndexGroup::new("vm", 0, 1);
        stepwise.update(&store, &all[..split.min(all.len())]).unwrap();
        for i in split.min(all.len())..all.len() {
            // Through the codec each time: the builder restarts from a stored group.
            stepwise = decode_find_group(&encode_find_group(&stepwise).unwrap()).unwrap();
            stepwise.update(&store, &all[..=i]).unwrap();
        }
        for pat in PATTERNS {
            let glob = Glob::new(pat).unwrap();
            let walk = walk_answer(&store, &all, &glob, None);
            prop_assert_eq!(&once.find(&glob, None, None), &walk);
            prop_assert_eq!(&stepwise.find(&glob, None, None), &walk);
        }
    }
}

#[test]
fn a_failed_update_keeps_a_consistent_group() {
    let store = MemStore::new();
    let mut t = Tree::new();
    t.insert(vec!["a".into(), "x.doc".into()], (5, 1));
    let good = put_tree(&store, &t, &[]);
    t.insert(vec!["b".into()], (6, 1));
    let good2 = put_tree(&store, &t, &[]);
    let mut points = points_of(&[good, good2, [7u8; 32]]);
    let mut g = IndexGroup::new("vm", 0, 1);
    // The third point's root is not in the store: the first two stay indexed.
    assert!(g.update(&store, &points).is_err());
    assert_eq!(g.points().len(), 2);
    let g = decode_find_group(&encode_find_group(&g).unwrap()).unwrap();
    points.truncate(2);
    let glob = Glob::new("*").unwrap();
    assert_eq!(
        g.find(&glob, None, None),
        walk_answer(&store, &points, &glob, None)
    );
}

#[test]
fn corruption_gives_typed_errors() {
    let store = MemStore::new();
    let mut t = Tree::new();
    t.insert(vec!["a".into(), "x.doc".into()], (5, 1));
    let root = put_tree(&store, &t, &[]);
    let mut g = IndexGroup::new("vm", 0, 1);
    g.update(&store, &points_of(&[root])).unwrap();
    assert_eq!(g.versions(), 2);
    let bytes = encode_find_group(&g).unwrap();

    let mut b = bytes.clone();
    b[0] ^= 1;
    assert!(matches!(decode_find_group(&b), Err(Error::BadMagic)));
    let mut b = bytes.clone();
    b[10] = 1;
    assert!(matches!(
        decode_find_group(&b),
        Err(Error::WrongBlobType {
            expected: 3,
            found: 1
        })
    ));
    let mut b = bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    assert!(matches!(decode_find_group(&b), Err(Error::BadCrc { .. })));
    assert!(matches!(
        decode_find_group(&bytes[..bytes.len() - 1]),
        Err(Error::Truncated { .. })
    ));
    // A directory blob is not a find index, and the reverse.
    assert!(matches!(
        decode_find_pointer(&bytes),
        Err(Error::WrongBlobType { .. })
    ));
}

#[test]
fn span_outside_the_points_is_refused() {
    // Hand-made payload: a row whose span names point 5 of a 1-point group.
    type RawRow = (String, Kind, u64, Option<Time>, [u8; 32], Vec<(u32, u32)>);
    #[derive(serde::Serialize)]
    struct P {
        vm: String,
        disk: u32,
        partition: u32,
        points: Vec<IndexedPoint>,
        rows: Vec<RawRow>,
    }
    let p = P {
        vm: "vm".into(),
        disk: 0,
        partition: 1,
        points: points_of(&[[0u8; 32]]),
        rows: vec![("/a".into(), Kind::File, 1, None, [0; 32], vec![(5, 6)])],
    };
    let payload = postcard::to_allocvec(&p).unwrap();
    let mut b = b"CAIRNCAT".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.push(TYPE_FIND_INDEX);
    b.push(0);
    b.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    b.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    b.extend_from_slice(&payload);
    assert!(matches!(decode_find_group(&b), Err(Error::Invalid(_))));
}

#[test]
fn groups_are_stored_in_pieces() {
    // A group larger than one piece: 40k versions of long paths.
    let store = MemStore::new();
    let mut t = Tree::new();
    for i in 0..40_000u64 {
        t.insert(
            vec![format!("d{}", i % 50), format!("{i:0>100}.bin")],
            (i, 1),
        );
    }
    let root = put_tree(&store, &t, &[]);
    let mut g = IndexGroup::new("vm", 0, 1);
    g.update(&store, &points_of(&[root])).unwrap();
    let parts = cairn_catalog::put_find_group(&store, &g).unwrap();
    assert!(parts.len() > 1, "{} pieces", parts.len());
    assert_eq!(cairn_catalog::get_find_group(&store, &parts).unwrap(), g);
    assert!(cairn_catalog::get_find_group(&store, &parts[1..]).is_err());
}
