//! Directory-blob and SD-table codec: round trips, hostile blobs, synthetic diff and search.

use cairn_catalog::*;
use proptest::prelude::*;

fn arb_time() -> impl Strategy<Value = Option<Time>> {
    proptest::option::of(
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Time { secs, nanos }),
    )
}

fn arb_extent() -> impl Strategy<Value = Extent> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<Option<u64>>(),
        any::<bool>(),
    )
        .prop_map(|(file_offset, len, volume_offset, encoded)| Extent {
            file_offset,
            len,
            volume_offset,
            encoded,
        })
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        "[a-zA-Z0-9_.é日 -]{1,20}".prop_filter("not . or ..", |n| n != "." && n != ".."),
        prop_oneof![
            Just(Kind::File),
            Just(Kind::Dir),
            Just(Kind::Symlink),
            Just(Kind::Other)
        ],
        any::<u64>(),
        (arb_time(), arb_time(), arb_time(), arb_time()),
        proptest::option::of(
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(mode, uid, gid)| Unix {
                mode,
                uid,
                gid,
            }),
        ),
        (
            any::<Option<u32>>(),
            any::<u32>(),
            any::<u64>(),
            any::<Option<u32>>(),
        ),
        proptest::collection::vec(arb_extent(), 0..5),
        proptest::collection::vec(
            (
                "[a-z.]{1,10}",
                proptest::collection::vec(any::<u8>(), 0..20),
            ),
            0..3,
        ),
        proptest::collection::vec(
            (
                "[a-zA-Z:.]{1,10}",
                any::<u64>(),
                proptest::collection::vec(arb_extent(), 0..3),
            ),
            0..3,
        ),
        (
            any::<bool>(),
            any::<Option<[u8; 32]>>(),
            proptest::option::of("[ -~]{0,30}"),
            proptest::option::of("[ -~]{0,30}"),
        ),
    )
        .prop_map(
            |(
                name,
                kind,
                size,
                times,
                unix,
                (attrs, nlink, node, sd),
                extents,
                xattrs,
                streams,
                rest,
            )| {
                let mut e = Entry::new(name, kind, size);
                (e.mtime, e.atime, e.ctime, e.btime) = times;
                e.unix = unix;
                e.windows_attributes = attrs;
                e.nlink = nlink;
                e.node = node;
                e.sd = sd;
                e.extents = extents;
                e.xattrs = xattrs
                    .into_iter()
                    .map(|(name, value)| Xattr { name, value })
                    .collect();
                e.streams = streams
                    .into_iter()
                    .map(|(name, size, extents)| Stream {
                        name,
                        size,
                        extents,
                    })
                    .collect();
                e.excluded = rest.0;
                e.child = if kind == Kind::Dir { rest.1 } else { None };
                e.symlink_target = rest.2;
                e.error = rest.3;
                e
            },
        )
}

proptest! {
    #[test]
    fn dir_blob_round_trip(mut entries in proptest::collection::vec(arb_entry(), 0..20)) {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        let dir = DirBlob { entries };
        let bytes = encode_dir(&dir).unwrap();
        prop_assert_eq!(&bytes[..8], b"CAIRNCAT");
        prop_assert_eq!(decode_dir(&bytes).unwrap(), dir);
    }

    #[test]
    fn sd_table_round_trip(sds in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..10)) {
        let t = SdTable { descriptors: sds.into_iter().map(SdBytes).collect() };
        prop_assert_eq!(decode_sd_table(&encode_sd_table(&t).unwrap()).unwrap(), t);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_dir(&data);
        let _ = decode_sd_table(&data);
        // With a valid frame around them, random payloads still only give typed errors.
        let payload = data.clone();
        data.clear();
        data.extend_from_slice(b"CAIRNCAT");
        data.extend_from_slice(&1u16.to_le_bytes());
        data.push(1);
        data.push(0);
        data.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        data.extend_from_slice(&payload);
        let _ = decode_dir(&data);
        data[10] = 2;
        let _ = decode_sd_table(&data);
    }
}

fn sample() -> Vec<u8> {
    let mut e = Entry::new("a.txt", Kind::File, 5);
    e.extents.push(Extent {
        file_offset: 0,
        len: 5,
        volume_offset: Some(4096),
        encoded: false,
    });
    encode_dir(&DirBlob {
        entries: vec![e, Entry::new("b", Kind::Dir, 0)],
    })
    .unwrap()
}

fn reframe(payload: &[u8], ty: u8) -> Vec<u8> {
    let mut b = b"CAIRNCAT".to_vec();
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&[ty, 0]);
    b.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    b.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn hostile_frames_give_typed_errors() {
    let good = sample();
    assert!(decode_dir(&good).is_ok());
    // Truncated anywhere.
    for n in 0..good.len() {
        assert!(
            matches!(decode_dir(&good[..n]), Err(Error::Truncated { .. })),
            "cut at {n}"
        );
    }
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(decode_dir(&b), Err(Error::BadMagic)));
    let mut b = good.clone();
    b[8] = 9;
    assert!(matches!(decode_dir(&b), Err(Error::UnsupportedVersion(9))));
    let mut b = good.clone();
    b[10] = TYPE_SD_TABLE;
    assert!(matches!(
        decode_dir(&b),
        Err(Error::WrongBlobType {
            expected: 1,
            found: 2
        })
    ));
    let mut b = good.clone();
    b[11] = 0x80;
    assert!(matches!(decode_dir(&b), Err(Error::UnknownFlags(0x80))));
    let mut b = good.clone();
    b[16] ^= 1;
    assert!(matches!(decode_dir(&b), Err(Error::BadCrc { .. })));
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x55;
    assert!(matches!(decode_dir(&b), Err(Error::BadCrc { .. })));
    let mut b = good.clone();
    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_dir(&b),
        Err(Error::TooLarge {
            what: "blob payload",
            ..
        })
    ));
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(decode_dir(&b), Err(Error::TrailingBytes { .. })));
}

#[test]
fn hostile_payloads_give_typed_errors() {
    // A huge entry count (varint 2^32) in an otherwise tiny payload.
    let payload = [0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(matches!(
        decode_dir(&reframe(&payload, TYPE_DIR)),
        Err(Error::Decode { .. })
    ));
    // Count within bounds but no bytes behind it.
    let payload = [0x80, 0x80, 0x04];
    assert!(matches!(
        decode_dir(&reframe(&payload, TYPE_DIR)),
        Err(Error::Decode { .. })
    ));
    // Huge SD table count, and a huge SD.
    assert!(matches!(
        decode_sd_table(&reframe(&[0xff, 0xff, 0xff, 0x7f], TYPE_SD_TABLE)),
        Err(Error::Decode { .. })
    ));
    assert!(matches!(
        decode_sd_table(&reframe(&[1, 0xff, 0xff, 0x7f], TYPE_SD_TABLE)),
        Err(Error::Decode { .. })
    ));
    // Unsorted entries and bad names are refused.
    let unsorted = DirBlob {
        entries: vec![
            Entry::new("b", Kind::File, 0),
            Entry::new("a", Kind::File, 0),
        ],
    };
    let payload = postcard::to_allocvec(&unsorted).unwrap();
    assert!(matches!(
        decode_dir(&reframe(&payload, TYPE_DIR)),
        Err(Error::Invalid(_))
    ));
    let slash = DirBlob {
        entries: vec![Entry::new("a/b", Kind::File, 0)],
    };
    let payload = postcard::to_allocvec(&slash).unwrap();
    assert!(matches!(
        decode_dir(&reframe(&payload, TYPE_DIR)),
        Err(Error::Invalid(_))
    ));
    // A name over the limit.
    let long = DirBlob {
        entries: vec![Entry::new("x".repeat(MAX_NAME_BYTES + 1), Kind::File, 0)],
    };
    let payload = postcard::to_allocvec(&long).unwrap();
    assert!(matches!(
        decode_dir(&reframe(&payload, TYPE_DIR)),
        Err(Error::TooLarge {
            what: "entry name",
            ..
        })
    ));
    assert!(matches!(encode_dir(&long), Err(Error::TooLarge { .. })));
}

#[test]
fn corrupt_blob_in_store_is_an_error_not_a_panic() {
    let store = MemStore::new();
    let leaf = put_dir(
        &store,
        &DirBlob {
            entries: vec![Entry::new("f", Kind::File, 1)],
        },
    )
    .unwrap();
    let mut d = Entry::new("d", Kind::Dir, 0);
    d.child = Some(leaf);
    let root = put_dir(&store, &DirBlob { entries: vec![d] }).unwrap();
    store.replace(&leaf, b"garbage".to_vec());
    let cat = Catalog::open(&store, root).unwrap();
    assert!(matches!(cat.list("/d"), Err(Error::Truncated { .. })));
    assert!(cat.walk(&mut |_, _| Ok(())).is_err());
    assert!(matches!(
        Catalog::open(&store, [7; 32]),
        Err(Error::Store(_))
    ));
}

// ---- synthetic trees: diff and search ----

fn file(name: &str, size: u64, mtime: i64, at: u64) -> Entry {
    let mut e = Entry::new(name, Kind::File, size);
    e.mtime = Some(Time {
        secs: mtime,
        nanos: 0,
    });
    e.extents.push(Extent {
        file_offset: 0,
        len: size,
        volume_offset: Some(at),
        encoded: false,
    });
    e
}

fn dir(store: &MemStore, name: &str, mut entries: Vec<Entry>) -> Entry {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut e = Entry::new(name, Kind::Dir, 0);
    e.child = Some(put_dir(store, &DirBlob { entries }).unwrap());
    e
}

fn root(store: &MemStore, mut entries: Vec<Entry>) -> BlobId {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    put_dir(store, &DirBlob { entries }).unwrap()
}

#[test]
fn diff_and_versions_on_synthetic_trees() {
    let store = MemStore::new();
    let same = dir(&store, "same", vec![file("s.txt", 1, 10, 100)]);
    let r1 = root(
        &store,
        vec![
            same.clone(),
            dir(&store, "gone", vec![file("g.txt", 1, 10, 200)]),
            file("changed.txt", 5, 10, 300),
            file("touched.txt", 5, 10, 400),
            file("removed.txt", 5, 10, 500),
        ],
    );
    let mut chmod = file("touched.txt", 5, 10, 400);
    chmod.unix = Some(Unix {
        mode: 0o100600,
        uid: 0,
        gid: 0,
    });
    let r2 = root(
        &store,
        vec![
            same,
            dir(&store, "new", vec![file("n.txt", 1, 20, 600)]),
            file("changed.txt", 6, 20, 700),
            chmod,
        ],
    );
    let changes = diff(&store, r1, r2).unwrap();
    let got: Vec<(String, ChangeKind)> = changes.into_iter().map(|c| (c.path, c.kind)).collect();
    assert_eq!(
        got,
        vec![
            (
                "/changed.txt".into(),
                ChangeKind::Changed {
                    what: vec![What::Size, What::Mtime, What::Content]
                }
            ),
            ("/gone".into(), ChangeKind::Removed),
            ("/gone/g.txt".into(), ChangeKind::Removed),
            ("/new".into(), ChangeKind::Added),
            ("/new/n.txt".into(), ChangeKind::Added),
            ("/removed.txt".into(), ChangeKind::Removed),
            (
                "/touched.txt".into(),
                ChangeKind::Changed {
                    what: vec![What::Metadata]
                }
            ),
        ]
    );
    assert!(diff(&store, r1, r1).unwrap().is_empty());
    let json = serde_json::to_string(&diff(&store, r1, r2).unwrap()[0]).unwrap();
    assert_eq!(
        json,
        r#"{"path":"/changed.txt","change":"changed","what":["size","mtime","content"]}"#
    );

    let c1 = Catalog::open(&store, r1).unwrap();
    let c2 = Catalog::open(&store, r2).unwrap();
    let rps = [
        RestorePointRef {
            id: "rp1".into(),
            time: Time {
                secs: 100,
                nanos: 0,
            },
            vm_name: "vm".into(),
            catalog: &c1,
        },
        RestorePointRef {
            id: "rp2".into(),
            time: Time {
                secs: 200,
                nanos: 0,
            },
            vm_name: "vm".into(),
            catalog: &c2,
        },
    ];
    let v = find_versions(&rps, &Glob::new("*.txt").unwrap(), None, None).unwrap();
    let got: Vec<(&str, Vec<&str>)> = v
        .iter()
        .map(|v| {
            (
                v.path.as_str(),
                v.restore_points.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/changed.txt", vec!["rp1"]),
            ("/changed.txt", vec!["rp2"]),
            ("/gone/g.txt", vec!["rp1"]),
            ("/new/n.txt", vec!["rp2"]),
            ("/removed.txt", vec!["rp1"]),
            ("/same/s.txt", vec!["rp1", "rp2"]),
            ("/touched.txt", vec!["rp1", "rp2"]), // mode is not part of a version's identity
        ]
    );
    let only2 = find_versions(
        &rps,
        &Glob::new("/changed.txt").unwrap(),
        Some(Time {
            secs: 150,
            nanos: 0,
        }),
        None,
    )
    .unwrap();
    assert_eq!(only2.len(), 1);
    assert_eq!(only2[0].size, 6);
    assert_eq!(only2[0].restore_points, vec!["rp2".to_string()]);

    // list / lookup / find
    assert_eq!(c2.list("/").unwrap().len(), 4);
    assert!(c2.lookup("/gone").unwrap().is_none());
    assert!(c2.lookup("/new/n.txt").unwrap().is_some());
    assert!(c2.lookup("/changed.txt/x").unwrap().is_none());
    assert!(matches!(
        c2.list("/changed.txt"),
        Err(Error::NotADirectory(_))
    ));
    assert!(matches!(c2.list("/nope"), Err(Error::NotFound(_))));
    assert_eq!(c2.lookup("/").unwrap().unwrap().child, Some(r2));
}

#[test]
fn byte_example_of_the_format_doc() {
    let blob = encode_dir(&DirBlob {
        entries: vec![Entry::new("a", Kind::File, 0)],
    })
    .unwrap();
    let mut payload = vec![1u8, 1, b'a'];
    payload.extend_from_slice(&[0; 9]); // kind, size, allocated, 4 times, unix, attributes
    payload.push(1); // nlink
    payload.extend_from_slice(&[0; 9]); // node .. error
    assert_eq!(payload.len(), 22);
    let mut want = b"CAIRNCAT\x01\x00\x01\x00\x16\x00\x00\x00".to_vec();
    want.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    want.extend_from_slice(&payload);
    assert_eq!(blob, want);
    assert_eq!(HEADER_LEN, 20);
}

#[test]
fn over_deep_blob_trees_are_refused_without_overflowing_the_stack() {
    let store = MemStore::new();
    let mut id = put_dir(&store, &DirBlob::default()).unwrap();
    for _ in 0..DEFAULT_MAX_DEPTH + 10 {
        let mut d = Entry::new("d", Kind::Dir, 0);
        d.child = Some(id);
        id = put_dir(&store, &DirBlob { entries: vec![d] }).unwrap();
    }
    let empty = put_dir(&store, &DirBlob::default()).unwrap();
    let cat = Catalog::open(&store, id).unwrap();
    assert!(matches!(
        cat.walk(&mut |_, _| Ok(())),
        Err(Error::TooDeep(_))
    ));
    assert!(matches!(diff(&store, empty, id), Err(Error::TooDeep(_))));
    let rps = [RestorePointRef {
        id: "x".into(),
        time: Time { secs: 0, nanos: 0 },
        vm_name: "vm".into(),
        catalog: &cat,
    }];
    assert!(matches!(
        find_versions(&rps, &Glob::new("*").unwrap(), None, None),
        Err(Error::TooDeep(_))
    ));
    // Path lookups are iterative and still work.
    assert!(cat.lookup(&"/d".repeat(100)).unwrap().is_some());
}

#[test]
fn case_insensitive_lookup_is_opt_in() {
    let store = MemStore::new();
    let root = put_dir(
        &store,
        &DirBlob {
            entries: vec![Entry::new("Pagefile.SYS", Kind::File, 1)],
        },
    )
    .unwrap();
    let exact = Catalog::open(&store, root).unwrap();
    assert!(exact.lookup("/pagefile.sys").unwrap().is_none());
    let folded = Catalog::open(&store, root)
        .unwrap()
        .with_case_insensitive_paths(true);
    assert_eq!(
        folded.lookup("/pagefile.sys").unwrap().unwrap().name,
        "Pagefile.SYS"
    );
}
