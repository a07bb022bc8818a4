//! Round trips and hostile input for the repository's file formats.

use std::sync::Arc;

use cairn_repo::frame::{self, FileKind};
use cairn_repo::{
    decode, Backend, BackupStats, BlobEntry, BlobId, BlobKind, DiskRecord, Encryption, Error,
    IndexFile, IndexPack, InitOptions, KdfParams, Manifest, ManifestFile, MemoryBackend, ObjectId,
    OpenOptions, Repository, SlotSecret, StoredIdentity, CONFIG_NAME, INDEX_DIR, SNAPSHOT_DIR,
};
use proptest::prelude::*;

fn arb_entry() -> impl Strategy<Value = BlobEntry> {
    (any::<[u8; 32]>(), 24u32..1000, 1u32..1000, any::<u32>()).prop_map(
        |(id, offset, len, crc32)| BlobEntry {
            id: BlobId(id),
            kind: 0,
            offset,
            length: len,
            raw_length: len + 5,
            crc32,
        },
    )
}

fn arb_index() -> impl Strategy<Value = IndexFile> {
    proptest::collection::vec(
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(arb_entry(), 0..20),
        )
            .prop_map(|(id, blobs)| IndexPack {
                id: ObjectId(id),
                size: 4096,
                blobs,
            }),
        0..5,
    )
    .prop_map(|packs| IndexFile { packs })
}

fn arb_manifest() -> impl Strategy<Value = ManifestFile> {
    let disk = (
        "[a-z0-9]{0,12}",
        1u64..(1 << 40),
        proptest::option::of(any::<[u8; 16]>()),
        proptest::option::of("[0-9a-f]{8}"),
        any::<u8>(),
    )
        .prop_map(|(label, size, uuid, cid, seed)| {
            let chunks = size.div_ceil(65536);
            let n =
                usize::try_from(chunks.div_ceil(cairn_repo::LIST_ENTRIES_PER_BLOB as u64)).unwrap();
            DiskRecord {
                label,
                size,
                chunk_size: 65536,
                identity: StoredIdentity {
                    uuid,
                    content_id: cid.clone(),
                },
                chain: vec![StoredIdentity {
                    uuid: None,
                    content_id: cid,
                }],
                lists: (0..n)
                    .map(|i| BlobId([seed ^ i.to_le_bytes()[0]; 32]))
                    .collect(),
            }
        });
    (
        "[ -~]{0,20}",
        any::<i64>(),
        proptest::collection::vec("[a-z]{1,8}", 0..4),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::collection::vec(disk, 0..3),
        any::<(u64, u64, u64, u64)>(),
        proptest::option::of(0..cairn_repo::NANOS_PER_SECOND),
    )
        .prop_map(|(vm_name, time, tags, parent, disks, s, n)| ManifestFile {
            // Every third manifest is a VM bundle's (one disk record per disk).
            vm: (time % 3 == 0).then(|| cairn_repo::VmRecord {
                kind: "vmware".into(),
                name: vm_name.clone(),
                uuid: parent.map(|p| {
                    let mut u = [0u8; 16];
                    u.copy_from_slice(&p[..16]);
                    u
                }),
                power_state: "active".into(),
                config_files: vec![cairn_repo::VmConfigFile {
                    name: "sub/vm.vmx".into(),
                    size: s.0,
                    blobs: parent.map(BlobId).into_iter().collect(),
                }],
                disks: disks
                    .iter()
                    .map(|d| cairn_repo::VmDiskRecord {
                        config_ref: d.label.clone(),
                        capture_depth: 1,
                        ..Default::default()
                    })
                    .collect(),
                folder_scan: time % 2 == 0,
                notes: tags.clone(),
            }),
            vm_name,
            time,
            time_nanos: n,
            tags,
            parent: parent.map(ObjectId),
            disks,
            stats: BackupStats {
                bytes_read: s.0,
                bytes_new: s.1,
                bytes_stored: s.2,
                millis: s.3,
            },
            volumes: if time % 2 == 0 {
                vec![]
            } else {
                vec![cairn_repo::VolumeRecord {
                    disk: 0,
                    partition: 2,
                    fs: "ntfs".into(),
                    catalog_root: parent.map(BlobId),
                    catalog_blobs: parent.map(BlobId).into_iter().collect(),
                    bytes_skipped: s.0,
                    ..Default::default()
                }]
            },
        })
}

fn frame_of<T: serde::Serialize>(kind: FileKind, v: &T) -> Vec<u8> {
    frame::encode(kind, false, &postcard::to_stdvec(v).unwrap())
}

proptest! {
    #[test]
    fn index_round_trip(f in arb_index()) {
        let bytes = frame_of(FileKind::Index, &f);
        prop_assert_eq!(decode::index_file(&bytes).unwrap(), f);
    }

    #[test]
    fn manifest_round_trip(m in arb_manifest()) {
        let bytes = frame_of(FileKind::Manifest, &m);
        prop_assert_eq!(decode::manifest(&bytes).unwrap(), m);
    }

    #[test]
    fn truncated_index_and_manifest_are_errors(m in arb_manifest(), f in arb_index(), cut in any::<prop::sample::Index>()) {
        let b = frame_of(FileKind::Manifest, &m);
        let c = cut.index(b.len());
        prop_assert!(decode::manifest(&b[..c]).is_err());
        let b = frame_of(FileKind::Index, &f);
        let c = cut.index(b.len());
        prop_assert!(decode::index_file(&b[..c]).is_err());
    }

    #[test]
    fn garbage_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode::manifest(&frame::encode(FileKind::Manifest, false, &payload));
        let _ = decode::index_file(&frame::encode(FileKind::Index, false, &payload));
        let _ = decode::pack(&frame::encode(FileKind::Pack, false, &payload));
    }
}

#[test]
fn hostile_structures_get_typed_errors() {
    // A manifest whose chunk-list count disagrees with its size.
    let mut m = ManifestFile {
        vm_name: "vm".into(),
        time: 0,
        tags: vec![],
        parent: None,
        disks: vec![DiskRecord {
            label: "d".into(),
            size: 65536 * 40_000,
            chunk_size: 65536,
            identity: StoredIdentity::default(),
            chain: vec![],
            lists: vec![BlobId([1; 32])],
        }],
        stats: BackupStats::default(),
        volumes: vec![],
        vm: None,
        time_nanos: None,
    };
    assert!(matches!(
        decode::manifest(&frame_of(FileKind::Manifest, &m)),
        Err(Error::Malformed { .. })
    ));
    m.disks[0].lists.push(BlobId([2; 32]));
    decode::manifest(&frame_of(FileKind::Manifest, &m)).unwrap();
    m.disks[0].chunk_size = 1000;
    assert!(matches!(
        decode::manifest(&frame_of(FileKind::Manifest, &m)),
        Err(Error::Malformed { .. })
    ));
    m.disks[0].chunk_size = 65536;
    m.disks[0].size = u64::MAX;
    assert!(matches!(
        decode::manifest(&frame_of(FileKind::Manifest, &m)),
        Err(Error::Malformed { .. })
    ));
    m.disks[0].size = 65536;
    m.disks[0].lists.truncate(1);
    m.tags = vec!["t".into(); 1000];
    assert!(matches!(
        decode::manifest(&frame_of(FileKind::Manifest, &m)),
        Err(Error::Malformed { .. })
    ));
    m.tags.clear();
    // Sub-second time: one below a second is fine, a whole second is out of range.
    m.time_nanos = Some(cairn_repo::NANOS_PER_SECOND - 1);
    decode::manifest(&frame_of(FileKind::Manifest, &m)).unwrap();
    for bad in [cairn_repo::NANOS_PER_SECOND, u32::MAX] {
        m.time_nanos = Some(bad);
        match decode::manifest(&frame_of(FileKind::Manifest, &m)) {
            Err(Error::OutOfRange { field, found, .. }) => {
                assert_eq!((field, found), ("time_nanos", u64::from(bad)));
            }
            other => panic!("nanos {bad}: {other:?}"),
        }
    }

    // An index entry pointing past its pack, with a raw length over the cap, of unknown kind.
    let entry = BlobEntry {
        id: BlobId([1; 32]),
        kind: 0,
        offset: 24,
        length: 10,
        raw_length: 10,
        crc32: 0,
    };
    let mk = |e: BlobEntry, size: u64| IndexFile {
        packs: vec![IndexPack {
            id: ObjectId([2; 32]),
            size,
            blobs: vec![e],
        }],
    };
    decode::index_file(&frame_of(FileKind::Index, &mk(entry, 100))).unwrap();
    for (e, size) in [
        (
            BlobEntry {
                offset: 90,
                ..entry
            },
            100,
        ),
        (
            BlobEntry {
                raw_length: 64 << 20,
                ..entry
            },
            100,
        ),
        (BlobEntry { kind: 9, ..entry }, 100),
        (
            BlobEntry {
                length: 100,
                ..entry
            },
            1000,
        ),
        (entry, 2 << 30),
    ] {
        let r = decode::index_file(&frame_of(FileKind::Index, &mk(e, size)));
        assert!(
            matches!(r, Err(Error::Malformed { .. })),
            "{e:?} {size}: {r:?}"
        );
    }
    // A manifest file presented as an index: wrong magic.
    assert!(matches!(
        decode::index_file(&frame_of(FileKind::Manifest, &m)),
        Err(Error::BadMagic { offset: 0, .. })
    ));
}

#[test]
fn config_damage_is_typed() {
    let b = Arc::new(MemoryBackend::new());
    Repository::init(b.clone(), &InitOptions::default(), None).unwrap();
    assert!(matches!(
        Repository::init(b.clone(), &InitOptions::default(), None),
        Err(Error::AlreadyExists { .. })
    ));
    let good = b.get(CONFIG_NAME).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x40;
    b.put(CONFIG_NAME, &bad).unwrap();
    assert!(matches!(
        Repository::open(b.clone(), &OpenOptions::default(), None),
        Err(Error::Checksum { .. })
    ));
    b.put(CONFIG_NAME, &good[..30]).unwrap();
    assert!(matches!(
        Repository::open(b.clone(), &OpenOptions::default(), None),
        Err(Error::BadLength { offset: 12, .. })
    ));
    b.put(CONFIG_NAME, &vec![0u8; 1 << 20]).unwrap();
    assert!(matches!(
        Repository::open(b.clone(), &OpenOptions::default(), None),
        Err(Error::BadLength { offset: 0, .. })
    ));
    b.delete(CONFIG_NAME).unwrap();
    assert!(matches!(
        Repository::open(b, &OpenOptions::default(), None),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn encrypted_files_cannot_be_swapped_or_downgraded() {
    let b = Arc::new(MemoryBackend::new());
    let pass = SlotSecret::Passphrase("pw".into());
    let opts = InitOptions {
        encryption: Encryption::Aes256Gcm,
        kdf: Some(KdfParams::insecure_for_tests()),
        ..Default::default()
    };
    let repo = Repository::init(b.clone(), &opts, Some(&pass)).unwrap();
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let data = b"some chunk".repeat(1000);
    let id = enc.id(&data);
    assert_ne!(
        id.0,
        *ring::digest::digest(&ring::digest::SHA256, &data).as_ref(),
        "ids must be keyed"
    );
    w.add(&enc.encode(BlobKind::Data, id, &data).unwrap())
        .unwrap();
    w.finish().unwrap();
    let m = Manifest {
        vm_name: "vm".into(),
        time: 1,
        tags: vec![],
        parent: None,
        disks: vec![],
        stats: BackupStats::default(),
        volumes: vec![],
        time_nanos: None,
    };
    let s1 = repo.save_manifest(&m).unwrap();
    let s2 = repo
        .save_manifest(&Manifest {
            time: 2,
            ..m.clone()
        })
        .unwrap();
    let repo = Repository::open(b.clone(), &OpenOptions::default(), Some(&pass)).unwrap();
    assert_eq!(repo.read_blob(&id).unwrap(), data);
    // Copy manifest 2's bytes over manifest 1: the AAD (file id) no longer matches.
    let n1 = format!("{SNAPSHOT_DIR}{s1}");
    let n2 = format!("{SNAPSHOT_DIR}{s2}");
    b.put(&n1, &b.get(&n2).unwrap()).unwrap();
    assert!(matches!(repo.load_manifest(&s1), Err(Error::Crypto { .. })));
    // An unsealed manifest in an encrypted repository is refused.
    b.put(&n2, &frame_of(FileKind::Manifest, &m)).unwrap();
    assert!(matches!(repo.load_manifest(&s2), Err(Error::Crypto { .. })));
    // Same for index files.
    let idx = b.list(INDEX_DIR).unwrap().remove(0);
    b.put(&idx, &frame_of(FileKind::Index, &IndexFile::default()))
        .unwrap();
    repo.reload_index().unwrap();
    assert_eq!(repo.index_problems().len(), 1);
    assert!(matches!(repo.read_blob(&id), Err(Error::BlobMissing(_))));
}

/// A valid pack of a few blobs, made by a real writer.
fn sample_pack() -> Vec<u8> {
    let b = Arc::new(MemoryBackend::new());
    let repo = Repository::init(b.clone(), &InitOptions::default(), None).unwrap();
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    for i in 0..4u8 {
        let data: Vec<u8> = (0..3000u32).map(|j| j.to_le_bytes()[0] ^ i).collect();
        w.add(&enc.encode(BlobKind::Data, enc.id(&data), &data).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
    let name = b.list("packs/").unwrap().remove(0);
    b.get(&name).unwrap()
}

proptest! {
    /// Mutations inside a valid frame (CRC recomputed) reach the payload decoders: they must
    /// return errors or values, never panic or allocate without bound.
    #[test]
    fn mutated_payloads_behind_valid_frames(
        f in arb_index(),
        m in arb_manifest(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mutate = |mut p: Vec<u8>| {
            if !p.is_empty() {
                for (at, v) in &edits {
                    let i = at.index(p.len());
                    p[i] = *v;
                }
            }
            p
        };
        let ip = mutate(postcard::to_stdvec(&f).unwrap());
        let _ = decode::index_file(&frame::encode(FileKind::Index, false, &ip));
        let mp = mutate(postcard::to_stdvec(&m).unwrap());
        let _ = decode::manifest(&frame::encode(FileKind::Manifest, false, &mp));
        let pack = sample_pack();
        let pp = mutate(pack[frame::HEADER_LEN..].to_vec());
        let _ = decode::pack(&frame::encode(FileKind::Pack, false, &pp));
    }
}

#[test]
fn sample_pack_decodes() {
    let blobs = decode::pack(&sample_pack()).unwrap();
    assert_eq!(blobs.len(), 4);
    assert_eq!(blobs[0].len(), 3000);
}

#[test]
fn manifest_chunk_lists_span_blobs_and_deduplicate() {
    let b = Arc::new(MemoryBackend::new());
    let repo = Repository::init(b.clone(), &InitOptions::default(), None).unwrap();
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let data = vec![5u8; 4096];
    let id = enc.id(&data);
    w.add(&enc.encode(BlobKind::Data, id, &data).unwrap())
        .unwrap();
    w.finish().unwrap();
    let n = cairn_repo::LIST_ENTRIES_PER_BLOB * 2 + 7;
    let mut chunks = vec![None; n];
    chunks[3] = Some(id);
    chunks[n - 1] = Some(id);
    let m = Manifest {
        vm_name: "vm".into(),
        time: 5,
        tags: vec!["a".into()],
        parent: None,
        disks: vec![cairn_repo::DiskManifest {
            label: "d".into(),
            size: (n as u64) * 4096 - 100,
            chunk_size: 4096,
            identity: StoredIdentity::default(),
            chain: vec![],
            chunks,
        }],
        stats: BackupStats::default(),
        volumes: vec![cairn_repo::VolumeRecord {
            fs: "ext4".into(),
            partition: 1,
            note: Some("example".into()),
            ..Default::default()
        }],
        time_nanos: Some(999_999_999),
    };
    let s1 = repo.save_manifest(&m).unwrap();
    let blobs_after_first = repo.index().len();
    let s2 = repo
        .save_manifest(&Manifest {
            time: 6,
            ..m.clone()
        })
        .unwrap();
    // The second restore point's chunk lists are the same blobs: nothing new stored.
    assert_eq!(repo.index().len(), blobs_after_first);
    assert_eq!(blobs_after_first, 1 + 3);
    let again = Repository::open(b, &OpenOptions::default(), None).unwrap();
    assert_eq!(again.load_manifest(&s1).unwrap(), m);
    assert_eq!(again.load_manifest(&s2).unwrap().disks, m.disks);
    let (sums, bad) = again.summaries().unwrap();
    assert!(bad.is_empty());
    assert_eq!(sums.iter().map(|s| s.id).collect::<Vec<_>>(), vec![s1, s2]);
    // A manifest referencing a blob the index lacks is refused before anything is written.
    let mut bad_m = m.clone();
    bad_m.disks[0].chunks[0] = Some(BlobId([9; 32]));
    assert!(matches!(
        again.save_manifest(&bad_m),
        Err(Error::BlobMissing(_))
    ));
}

#[test]
fn restore_points_of_one_second_are_ordered_by_nanoseconds() {
    let repo = Repository::init(
        Arc::new(MemoryBackend::new()),
        &InitOptions {
            encryption: Encryption::None,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let m = |time: i64, time_nanos: Option<u32>| Manifest {
        vm_name: "vm".into(),
        time,
        tags: vec![],
        parent: None,
        disks: vec![],
        stats: BackupStats::default(),
        volumes: vec![],
        time_nanos,
    };
    // Saved out of order; ids are random, so only the time can order them.
    let times = [
        (7, Some(900_000_000)),
        (7, Some(5)),
        (8, None),
        (7, None),
        (7, Some(400_000_000)),
        (6, Some(999_999_999)),
    ];
    let ids: Vec<_> = times
        .iter()
        .map(|&(t, n)| repo.save_manifest(&m(t, n)).unwrap())
        .collect();
    let (sums, bad) = repo.summaries().unwrap();
    assert!(bad.is_empty());
    let order: Vec<_> = sums.iter().map(|s| (s.time, s.time_nanos)).collect();
    assert_eq!(
        order,
        [
            (6, Some(999_999_999)),
            (7, None),
            (7, Some(5)),
            (7, Some(400_000_000)),
            (7, Some(900_000_000)),
            (8, None),
        ]
    );
    let full = repo.snapshots().unwrap();
    let full_ids: Vec<_> = full.readable.iter().map(|(id, _)| *id).collect();
    assert_eq!(full_ids, sums.iter().map(|s| s.id).collect::<Vec<_>>());
    assert_eq!(full_ids[4], ids[0]);
    // A sub-second part of a whole second is refused before anything is written.
    assert!(matches!(
        repo.save_manifest(&m(7, Some(cairn_repo::NANOS_PER_SECOND))),
        Err(Error::OutOfRange { .. })
    ));
}
