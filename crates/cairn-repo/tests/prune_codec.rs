//! The pending-deletion object (`pending/<id>`): round trips, one mutated field at a time,
//! truncation and arbitrary bytes.

use std::sync::Arc;

use cairn_repo::{
    decode, prune, Backend as _, BlobEntry, BlobId, BlobKind, Error, IndexPack, InitOptions,
    MemoryBackend, ObjectId, PendingFile, PruneOptions, Repository, UnindexedPack, PENDING_DIR,
};
use proptest::prelude::*;

fn frame(magic: &[u8; 8], version: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..20]);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn encode(f: &PendingFile) -> Vec<u8> {
    frame(b"CAIRNPND", 1, 0, &postcard::to_stdvec(f).unwrap())
}

fn sample() -> PendingFile {
    PendingFile {
        time: 1_700_000_000,
        packs: vec![IndexPack {
            id: ObjectId([3; 32]),
            size: 4096,
            blobs: vec![BlobEntry {
                id: BlobId([7; 32]),
                kind: BlobKind::Data.byte(),
                offset: 24,
                length: 100,
                raw_length: 100,
                crc32: 5,
            }],
        }],
        unindexed: vec![UnindexedPack {
            id: ObjectId([9; 32]),
            size: 1 << 20,
        }],
    }
}

#[test]
fn written_by_prune_decodes() {
    let b = Arc::new(MemoryBackend::new());
    let repo = Repository::init(b.clone(), &InitOptions::default(), None).unwrap();
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let data = vec![1u8; 5000];
    w.add(&enc.encode(BlobKind::Data, enc.id(&data), &data).unwrap())
        .unwrap();
    w.finish().unwrap();
    let r = prune(
        &repo,
        &PruneOptions {
            now: Some(123),
            ..PruneOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.kept_for_grace, 1);
    let names = b.list(PENDING_DIR).unwrap();
    assert_eq!(names.len(), 1);
    let f = decode::pending_file(&b.get(&names[0]).unwrap()).unwrap();
    assert_eq!(f.time, 123);
    assert_eq!(f.packs.len(), 1);
    assert_eq!(f.packs[0].blobs.len(), 1);
}

#[test]
fn one_field_at_a_time() {
    let good = encode(&sample());
    assert_eq!(decode::pending_file(&good).unwrap(), sample());

    let mut m = good.clone();
    m[0] = b'X';
    assert!(matches!(
        decode::pending_file(&m),
        Err(Error::BadMagic { offset: 0, .. })
    ));
    let p = postcard::to_stdvec(&sample()).unwrap();
    assert!(matches!(
        decode::pending_file(&frame(b"CAIRNPND", 2, 0, &p)),
        Err(Error::Unsupported { offset: 8, .. })
    ));
    assert!(matches!(
        decode::pending_file(&frame(b"CAIRNPND", 1, 2, &p)),
        Err(Error::Unsupported { offset: 10, .. })
    ));
    // Sealed flag on an unencrypted repository.
    assert!(matches!(
        decode::pending_file(&frame(b"CAIRNPND", 1, 1, &p)),
        Err(Error::Crypto { .. })
    ));
    let mut m = good.clone();
    m[12] ^= 1;
    assert!(matches!(
        decode::pending_file(&m),
        Err(Error::BadLength { offset: 12, .. })
    ));
    let mut m = good.clone();
    m[20] ^= 1;
    assert!(matches!(
        decode::pending_file(&m),
        Err(Error::Checksum { .. })
    ));
    let mut m = good.clone();
    let last = m.len() - 1;
    m[last] ^= 0x40;
    assert!(decode::pending_file(&m).is_err());

    // Entries are checked like an index file's.
    let mut f = sample();
    f.packs[0].blobs[0].offset = 4090;
    assert!(matches!(
        decode::pending_file(&encode(&f)),
        Err(Error::Malformed { .. })
    ));
    let mut f = sample();
    f.unindexed[0].size = (1 << 30) + 1;
    assert!(matches!(
        decode::pending_file(&encode(&f)),
        Err(Error::Malformed { .. })
    ));
    // A wrong kind of file.
    assert!(matches!(
        decode::pending_file(&frame(b"CAIRNIDX", 1, 0, &p)),
        Err(Error::BadMagic { .. })
    ));
}

#[test]
fn truncation_is_an_error() {
    let good = encode(&sample());
    for cut in 0..good.len() {
        let r = decode::pending_file(&good[..cut]);
        assert!(r.is_err(), "cut at {cut}");
        if cut < 24 {
            assert!(matches!(r, Err(Error::Truncated { .. })), "cut at {cut}");
        }
    }
}

proptest! {
    #[test]
    fn round_trip(time in any::<i64>(), n in 0usize..4, sizes in proptest::collection::vec(40u64..(1 << 30), 0..4)) {
        let mut f = sample();
        f.time = time;
        f.packs = (0..n).map(|i| IndexPack { id: ObjectId([u8::try_from(i).unwrap(); 32]), size: 4096, blobs: sample().packs[0].blobs.clone() }).collect();
        f.unindexed = sizes.iter().map(|&s| UnindexedPack { id: ObjectId([1; 32]), size: s }).collect();
        prop_assert_eq!(decode::pending_file(&encode(&f)).unwrap(), f);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode::pending_file(&bytes);
        let mut framed = frame(b"CAIRNPND", 1, 0, &bytes);
        let _ = decode::pending_file(&framed);
        framed.truncate(framed.len() / 2);
        let _ = decode::pending_file(&framed);
    }
}
