//! Backup / restore / verify jobs end to end on generated images.

use std::sync::Arc;

use cairn_engine::{
    backup, restore_raw, snapshots, verify, BackupOptions, DiskSource, RestoreOptions,
    RestoredDisk, VerifyOptions,
};
use cairn_io::{AllocationMap, DiskIdentity, RangeKind, ReadAt};
use cairn_repo::{
    Backend, InitOptions, LocalBackend, OpenOptions, ProblemKind, Repository, INDEX_DIR, PACK_DIR,
    SNAPSHOT_DIR,
};

const CHUNK: u32 = 64 << 10;
const MIB: usize = 1 << 20;

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

fn pseudo(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        v.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// 6 MiB: random, zeros, a repeated block, text-like data, then an unallocated tail whose
/// bytes in the source are garbage (they must not be read: the restore has zeros there).
fn image() -> (Vec<u8>, AllocationMap) {
    let mut img = pseudo(2 * MIB, 1);
    img.extend(std::iter::repeat_n(0u8, MIB));
    let block = pseudo(CHUNK as usize, 2);
    for _ in 0..16 {
        img.extend_from_slice(&block);
    }
    img.extend((0..MIB).map(|i| b"the quick brown fox "[i % 20]));
    img.extend(pseudo(MIB + 12345, 3));
    let size = img.len() as u64;
    let mut map = AllocationMap::new(size);
    map.push(0, 2 * MIB as u64, RangeKind::Data).unwrap();
    map.push(2 * MIB as u64, MIB as u64, RangeKind::Zero)
        .unwrap();
    map.push(3 * MIB as u64, 2 * MIB as u64 + 100, RangeKind::Data)
        .unwrap();
    // The rest (from 5 MiB + 100) is unallocated.
    (img, map.finish())
}

fn expected(img: &[u8], map: &AllocationMap) -> Vec<u8> {
    let mut v = vec![0u8; img.len()];
    for r in map.runs() {
        if matches!(r.kind, RangeKind::Data | RangeKind::FromParent) {
            let (s, e) = (
                usize::try_from(r.offset).unwrap(),
                usize::try_from(r.end()).unwrap(),
            );
            v[s..e].copy_from_slice(&img[s..e]);
        }
    }
    v
}

fn source(label: &str, img: Vec<u8>, map: AllocationMap) -> DiskSource {
    DiskSource {
        label: label.into(),
        reader: Arc::new(img),
        map,
        identity: DiskIdentity::default(),
        chain_ids: vec![],
        changed: None,
    }
}

fn new_repo(dir: &std::path::Path) -> Arc<Repository> {
    let backend = Arc::new(LocalBackend::new(dir).unwrap());
    let opts = InitOptions {
        chunker: cairn_chunk::ChunkerParams::Fixed { size: CHUNK },
        pack_target: 1 << 20,
        ..Default::default()
    };
    Arc::new(Repository::init(backend, &opts, None).unwrap())
}

fn reopen(dir: &std::path::Path) -> Arc<Repository> {
    let backend = Arc::new(LocalBackend::new(dir).unwrap());
    Arc::new(Repository::open(backend, &OpenOptions::default(), None).unwrap())
}

#[test]
fn backup_restore_round_trip_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let (img, map) = image();
    let want = expected(&img, &map);
    let r1 = backup(
        &repo,
        "vm",
        &[source("d0", img.clone(), map.clone())],
        &BackupOptions::default(),
    )
    .unwrap();
    // 2 MiB random + 1 block + 1 text chunk + ~1 MiB random; the zero MiB and the tail are holes.
    assert!(r1.bytes_new < 4 * MIB as u64, "{r1:?}");
    assert!(r1.bytes_read <= (5 * MIB + 100) as u64, "{r1:?}");
    assert!(r1.chunks_hole >= 16, "{r1:?}");

    // Restore from a fresh open (index read back from disk).
    let repo2 = reopen(dir.path());
    let out = dir.path().join("restored.raw");
    let rep = restore_raw(
        &repo2,
        &r1.restore_point,
        0,
        &out,
        &RestoreOptions::default(),
    )
    .unwrap();
    let got = std::fs::read(&out).unwrap();
    assert_eq!(sha256(&got), sha256(&want));
    assert_eq!(rep.size, img.len() as u64);
    assert!(rep.bytes_hole >= MIB as u64);

    // The ReadAt view agrees, at odd offsets too.
    let disk = RestoredDisk::open(repo2.clone(), &r1.restore_point, 0).unwrap();
    assert_eq!(disk.size(), img.len() as u64);
    let mut buf = vec![0u8; 300_001];
    for off in [0u64, 65_535, 2 * MIB as u64 - 7, 5 * MIB as u64] {
        let n = disk.read_at(&mut buf, off).unwrap();
        let o = usize::try_from(off).unwrap();
        assert_eq!(&buf[..n], &want[o..o + n]);
    }
    let amap = disk.allocation_map();
    amap.validate().unwrap();
    assert!(amap.bytes_of(RangeKind::Unallocated) >= MIB as u64);

    // Same image again: nothing new.
    let r2 = backup(
        &repo2,
        "vm",
        &[source("d0", img.clone(), map.clone())],
        &BackupOptions::default(),
    )
    .unwrap();
    assert_eq!(r2.bytes_new, 0, "{r2:?}");
    // Lightly changed: two 4 KiB writes in place.
    let mut img3 = img.clone();
    img3[100_000..104_096].copy_from_slice(&pseudo(4096, 9));
    img3[4 * MIB..4 * MIB + 4096].copy_from_slice(&pseudo(4096, 10));
    let r3 = backup(
        &repo2,
        "vm",
        &[source("d0", img3.clone(), map.clone())],
        &BackupOptions::default(),
    )
    .unwrap();
    assert_eq!(r3.bytes_new, 2 * CHUNK as u64, "{r3:?}");
    let out3 = dir.path().join("r3.raw");
    restore_raw(
        &repo2,
        &r3.restore_point,
        0,
        &out3,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(
        sha256(&std::fs::read(&out3).unwrap()),
        sha256(&expected(&img3, &map))
    );

    let list = snapshots(&repo2).unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.windows(2).all(|w| w[0].time <= w[1].time));
    let v = verify(
        &repo2,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    assert!(v.blobs_checked > 0);
    assert_eq!(v.packs_read, v.packs);
    // A partial read checks a subset of the packs.
    let part = verify(
        &repo2,
        &VerifyOptions {
            read_data: true,
            read_data_percent: 30,
            seed: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(part.is_ok());
    assert!(part.packs_read <= v.packs_read);
    assert!(part.blobs_checked <= v.blobs_checked);
}

#[test]
fn incremental_reads_only_changed_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let base = pseudo(4 * MIB, 5);
    let size = base.len() as u64;
    let parent_id = DiskIdentity {
        uuid: Some([1; 16]),
        content_id: Some("aaaa0001".into()),
    };
    let mut s1 = source(
        "disk",
        base.clone(),
        AllocationMap::uniform(size, RangeKind::Data),
    );
    s1.identity = parent_id.clone();
    let r1 = backup(
        &repo,
        "vm",
        &[s1],
        &BackupOptions {
            time: Some(1000),
            ..Default::default()
        },
    )
    .unwrap();

    // A delta that rewrote 8 KiB at 1 MiB + 4 KiB, reading through to the parent elsewhere.
    let mut top = base.clone();
    top[MIB + 4096..MIB + 12288].copy_from_slice(&pseudo(8192, 6));
    let mut changed = AllocationMap::new(size);
    changed
        .push(MIB as u64 + 4096, 8192, RangeKind::Data)
        .unwrap();
    let s2 = DiskSource {
        label: "disk".into(),
        reader: Arc::new(top.clone()),
        map: AllocationMap::uniform(size, RangeKind::Data),
        identity: DiskIdentity {
            uuid: Some([1; 16]),
            content_id: Some("aaaa0002".into()),
        },
        chain_ids: vec![parent_id],
        changed: Some(changed.finish()),
    };
    let r2 = backup(
        &repo,
        "vm",
        &[s2],
        &BackupOptions {
            time: Some(2000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r2.incremental_from, Some(r1.restore_point));
    assert_eq!(r2.bytes_read, CHUNK as u64, "{r2:?}");
    assert_eq!(r2.chunks_reused, r2.chunks - 1);
    let out = dir.path().join("inc.raw");
    restore_raw(
        &repo,
        &r2.restore_point,
        0,
        &out,
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), sha256(&top));

    // A delta whose parent is not what was captured: everything is read.
    let s3 = DiskSource {
        label: "disk".into(),
        reader: Arc::new(top.clone()),
        map: AllocationMap::uniform(size, RangeKind::Data),
        identity: DiskIdentity::default(),
        chain_ids: vec![DiskIdentity {
            uuid: Some([1; 16]),
            content_id: Some("other".into()),
        }],
        changed: Some(AllocationMap::uniform(size, RangeKind::Unallocated)),
    };
    let r3 = backup(&repo, "vm", &[s3], &BackupOptions::default()).unwrap();
    assert_eq!(r3.incremental_from, None);
    assert_eq!(r3.bytes_read, size);
    assert_eq!(r3.bytes_new, 0);
}

#[test]
fn concurrent_backups_both_restore() {
    let dir = tempfile::tempdir().unwrap();
    let _ = new_repo(dir.path());
    let imgs: Vec<Vec<u8>> = (0..2u64)
        .map(|i| {
            let mut v = pseudo(3 * MIB, 100 + i);
            // A shared region, so both writers may store the same blobs.
            v[..MIB].copy_from_slice(&pseudo(MIB, 7));
            v
        })
        .collect();
    let ids: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = imgs
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let path = dir.path().to_path_buf();
                s.spawn(move || {
                    let repo = reopen(&path);
                    let src = source(
                        "d",
                        img.clone(),
                        AllocationMap::uniform(img.len() as u64, RangeKind::Data),
                    );
                    backup(
                        &repo,
                        &format!("vm{i}"),
                        &[src],
                        &BackupOptions {
                            threads: 1,
                            ..Default::default()
                        },
                    )
                    .unwrap()
                    .restore_point
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let repo = reopen(dir.path());
    for (id, img) in ids.iter().zip(&imgs) {
        let out = dir.path().join(format!("{id}.raw"));
        restore_raw(&repo, id, 0, &out, &RestoreOptions::default()).unwrap();
        assert_eq!(sha256(&std::fs::read(&out).unwrap()), sha256(img));
    }
    let v = verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
}

fn flip(path: &std::path::Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    let o = usize::try_from(offset).unwrap();
    b[o] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn bit_flips_are_reported_with_what_they_break() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let img = pseudo(2 * MIB, 42);
    let r = backup(
        &repo,
        "vm",
        &[source(
            "d0",
            img.clone(),
            AllocationMap::uniform(img.len() as u64, RangeKind::Data),
        )],
        &BackupOptions::default(),
    )
    .unwrap();
    let backend = LocalBackend::new(dir.path()).unwrap();

    // Pack: flip one byte inside the third blob of the first pack.
    let repo = reopen(dir.path());
    let (pack_name, entry) = {
        let idx = repo.index();
        let m = repo.load_manifest(&r.restore_point).unwrap();
        let id = m.disks[0].chunks[2].unwrap();
        let e = *idx.get(&id).unwrap();
        (cairn_repo::pack_name(&idx.pack(e.pack).unwrap().0), e)
    };
    flip(&dir.path().join(&pack_name), u64::from(entry.offset) + 100);
    let v = verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    let damaged: Vec<_> = v
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::DamagedBlob)
        .collect();
    assert_eq!(damaged.len(), 1, "{:?}", v.problems);
    assert_eq!(damaged[0].blobs, vec![entry.id]);
    assert_eq!(damaged[0].affected.len(), 1);
    assert_eq!(damaged[0].affected[0].snapshot, r.restore_point);
    assert_eq!(
        damaged[0].affected[0].ranges,
        vec![(2 * u64::from(CHUNK), 3 * u64::from(CHUNK))]
    );
    assert!(v.problems.iter().any(|p| p.kind == ProblemKind::PackFile));
    // Structure-only verify does not read data, so it passes; restore fails with a typed error.
    assert!(verify(&repo, &VerifyOptions::default()).unwrap().is_ok());
    let err = restore_raw(
        &repo,
        &r.restore_point,
        0,
        &dir.path().join("x.raw"),
        &RestoreOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            cairn_engine::Error::Repo(cairn_repo::Error::BlobCorrupt { .. })
        ),
        "{err}"
    );
    flip(&dir.path().join(&pack_name), u64::from(entry.offset) + 100);

    // Index: flip a byte of the payload: the index file is reported, its blobs go missing.
    // The index file of the data blobs (another one lists the chunk-list blobs).
    let idx_name = backend
        .list(INDEX_DIR)
        .unwrap()
        .into_iter()
        .find(|n| {
            let f = cairn_repo::decode::index_file(&backend.get(n).unwrap()).unwrap();
            f.packs
                .iter()
                .any(|p| p.blobs.iter().any(|b| b.id == entry.id))
        })
        .unwrap();
    flip(&dir.path().join(&idx_name), 40);
    let v = verify(&repo, &VerifyOptions::default()).unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.kind == ProblemKind::IndexFile && p.object == idx_name),
        "{:?}",
        v.problems
    );
    let missing: Vec<_> = v
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::MissingBlob)
        .collect();
    assert!(!missing.is_empty());
    assert!(missing
        .iter()
        .all(|p| p.affected.len() == 1 && p.affected[0].snapshot == r.restore_point));
    flip(&dir.path().join(&idx_name), 40);

    // Manifest.
    let snap = format!("{SNAPSHOT_DIR}{}", r.restore_point);
    flip(&dir.path().join(&snap), 30);
    let v = verify(&repo, &VerifyOptions::default()).unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert_eq!(v.problems[0].kind, ProblemKind::Manifest);
    assert_eq!(v.problems[0].object, snap);
    assert!(matches!(
        repo.load_manifest(&r.restore_point),
        Err(cairn_repo::Error::Checksum { .. })
    ));
    flip(&dir.path().join(&snap), 30);

    // A damaged chunk-list (metadata) blob makes its restore point unreadable: reported.
    let meta = *repo
        .index()
        .entries()
        .iter()
        .find(|e| e.kind == cairn_repo::BlobKind::Meta)
        .unwrap();
    let meta_pack = cairn_repo::pack_name(&repo.index().pack(meta.pack).unwrap().0);
    flip(&dir.path().join(&meta_pack), u64::from(meta.offset) + 2);
    let v = verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        v.problems
            .iter()
            .any(|p| p.kind == ProblemKind::Manifest && p.object == snap),
        "{:?}",
        v.problems
    );
    assert!(v
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::DamagedBlob && p.blobs == vec![meta.id]));
    flip(&dir.path().join(&meta_pack), u64::from(meta.offset) + 2);
    assert!(verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        }
    )
    .unwrap()
    .is_ok());

    // A deleted pack.
    std::fs::remove_file(dir.path().join(&pack_name)).unwrap();
    let v = verify(&repo, &VerifyOptions::default()).unwrap();
    let mp: Vec<_> = v
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::MissingPack)
        .collect();
    assert_eq!(mp.len(), 1);
    assert!(!mp[0].affected.is_empty());
    assert!(backend.list(PACK_DIR).is_ok());
}

#[test]
fn interrupted_backup_leaves_only_orphans_and_blobs_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let img = pseudo(3 * MIB, 77);
    let size = img.len() as u64;
    // Cancel half-way through via the progress callback.
    let opts = BackupOptions {
        progress: Some(Arc::new(|p: &cairn_engine::Progress| {
            p.bytes_done < p.bytes_total / 2
        })),
        threads: 1,
        ..Default::default()
    };
    let err = backup(
        &repo,
        "vm",
        &[source(
            "d",
            img.clone(),
            AllocationMap::uniform(size, RangeKind::Data),
        )],
        &opts,
    )
    .unwrap_err();
    assert!(matches!(err, cairn_engine::Error::Cancelled));
    let repo = reopen(dir.path());
    assert!(snapshots(&repo).unwrap().is_empty());
    assert!(verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        }
    )
    .unwrap()
    .is_ok());
    let r = backup(
        &repo,
        "vm",
        &[source(
            "d",
            img.clone(),
            AllocationMap::uniform(size, RangeKind::Data),
        )],
        &BackupOptions::default(),
    )
    .unwrap();
    let out = dir.path().join("o.raw");
    restore_raw(&repo, &r.restore_point, 0, &out, &RestoreOptions::default()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), img);
}

#[test]
fn encrypted_repository_round_trip() {
    use cairn_repo::{Encryption, KdfParams, SlotSecret};
    let dir = tempfile::tempdir().unwrap();
    let pass = SlotSecret::Passphrase("hunter2 hunter2".into());
    let opts = InitOptions {
        chunker: cairn_chunk::ChunkerParams::Fixed { size: CHUNK },
        pack_target: 1 << 20,
        encryption: Encryption::Aes256Gcm,
        kdf: Some(KdfParams::insecure_for_tests()),
        ..Default::default()
    };
    let backend = Arc::new(LocalBackend::new(dir.path()).unwrap());
    let repo = Repository::init(backend.clone(), &opts, Some(&pass)).unwrap();
    let (img, map) = image();
    let want = expected(&img, &map);
    let r = backup(
        &repo,
        "vm",
        &[source("d0", img.clone(), map.clone())],
        &BackupOptions::default(),
    )
    .unwrap();
    // Nothing of the plaintext is visible in the packs.
    for name in backend.list(PACK_DIR).unwrap() {
        let bytes = backend.get(&name).unwrap();
        assert!(
            !bytes.windows(20).any(|w| w == b"the quick brown fox "),
            "plaintext in {name}"
        );
    }
    // Wrong passphrase and no passphrase are typed errors.
    let bad = SlotSecret::Passphrase("wrong".into());
    assert!(matches!(
        Repository::open(backend.clone(), &OpenOptions::default(), Some(&bad)),
        Err(cairn_repo::Error::Keys(cairn_crypto::Error::WrongKey))
    ));
    assert!(matches!(
        Repository::open(backend.clone(), &OpenOptions::default(), None),
        Err(cairn_repo::Error::KeyNeeded)
    ));
    let repo =
        Arc::new(Repository::open(backend.clone(), &OpenOptions::default(), Some(&pass)).unwrap());
    let out = dir.path().join("enc.raw");
    restore_raw(&repo, &r.restore_point, 0, &out, &RestoreOptions::default()).unwrap();
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), sha256(&want));
    let r2 = backup(
        &repo,
        "vm",
        &[source("d0", img.clone(), map.clone())],
        &BackupOptions::default(),
    )
    .unwrap();
    assert_eq!(r2.bytes_new, 0);
    let v = verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);

    // A flipped byte in a sealed blob fails authentication and is reported.
    let (pack, entry) = {
        let idx = repo.index();
        let m = repo.load_manifest(&r.restore_point).unwrap();
        let id = m.disks[0].chunks[0].unwrap();
        let e = *idx.get(&id).unwrap();
        (cairn_repo::pack_name(&idx.pack(e.pack).unwrap().0), e)
    };
    flip(&dir.path().join(&pack), u64::from(entry.offset) + 40);
    let v = verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    let d: Vec<_> = v
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::DamagedBlob)
        .collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].affected[0].ranges, vec![(0, u64::from(CHUNK))]);
}

#[test]
fn keys_outside_the_repository() {
    use cairn_repo::{Encryption, KdfParams, SlotSecret, KEYS_NAME};
    let dir = tempfile::tempdir().unwrap();
    let key = SlotSecret::KeyFile(vec![7u8; 64]);
    let opts = InitOptions {
        encryption: Encryption::Aes256Gcm,
        keys_in_repository: false,
        kdf: Some(KdfParams::insecure_for_tests()),
        ..Default::default()
    };
    let backend = Arc::new(LocalBackend::new(dir.path().join("repo")).unwrap());
    let repo = Repository::init(backend.clone(), &opts, Some(&key)).unwrap();
    assert!(!backend.exists(KEYS_NAME).unwrap());
    let ring = repo.key_ring().unwrap().clone();
    assert!(matches!(
        Repository::open(backend.clone(), &OpenOptions::default(), Some(&key)),
        Err(cairn_repo::Error::NotFound { .. })
    ));
    Repository::open(
        backend.clone(),
        &OpenOptions {
            key_ring: Some(ring),
        },
        Some(&key),
    )
    .unwrap();
    // Another repository's ring is refused even with the right secret.
    let other = Repository::init(
        Arc::new(cairn_repo::MemoryBackend::new()),
        &opts,
        Some(&key),
    )
    .unwrap();
    let foreign = other.key_ring().unwrap().clone();
    assert!(matches!(
        Repository::open(
            backend,
            &OpenOptions {
                key_ring: Some(foreign)
            },
            Some(&key)
        ),
        Err(cairn_repo::Error::ForeignKeyRing)
    ));
}
