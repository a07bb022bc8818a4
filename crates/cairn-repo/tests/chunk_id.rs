//! The chunk-id hash a repository records: new repositories name chunks with (keyed) BLAKE3,
//! repositories whose config predates the field keep HMAC-SHA256 / SHA-256, and every id of
//! a repository is computed and checked with the one algorithm its config records.

use std::sync::Arc;

use cairn_crypto::RepoCrypto;
use cairn_repo::frame::{self, FileKind};
use cairn_repo::{
    read_config, Backend, BlobId, BlobKind, ChunkIdHash, Encryption, Error, InitOptions, KdfParams,
    KeyRing, MemoryBackend, ObjectId, OpenOptions, Repository, SlotSecret, VerifyOptions,
    CONFIG_NAME, DEFAULT_PACK_TARGET, KEYS_NAME, REPO_VERSION, REPO_VERSION_SHA256_IDS,
};
use serde::Serialize;

/// The config layout written before the chunk-id hash was recorded (version 1), field for
/// field (docs/formats/repository.md).
#[derive(Serialize)]
struct ConfigV1 {
    id: ObjectId,
    version: u32,
    chunker: cairn_chunk::ChunkerParams,
    encryption: Encryption,
    created: i64,
    pack_target: u64,
    key_fingerprint: Option<[u8; 32]>,
}

fn secret(encryption: Encryption) -> Option<SlotSecret> {
    (encryption == Encryption::Aes256Gcm).then(|| SlotSecret::Passphrase("chunk ids".into()))
}

fn init(backend: &Arc<MemoryBackend>, encryption: Encryption, hash: ChunkIdHash) -> Repository {
    let opts = InitOptions {
        encryption,
        chunk_id: hash,
        kdf: Some(KdfParams::insecure_for_tests()),
        ..InitOptions::default()
    };
    Repository::init(backend.clone(), &opts, secret(encryption).as_ref()).unwrap()
}

fn open(backend: &Arc<MemoryBackend>, encryption: Encryption) -> cairn_repo::Result<Repository> {
    Repository::open(
        backend.clone(),
        &OpenOptions::default(),
        secret(encryption).as_ref(),
    )
}

/// Distinct, partly compressible chunks.
fn chunks() -> Vec<Vec<u8>> {
    (0..6u32)
        .map(|n| {
            (0..70_000u32)
                .map(|i| u8::try_from((i / 7 + n * 31) % 251).unwrap())
                .collect()
        })
        .collect()
}

/// Stores `data` in one writer session; returns the ids.
fn store(repo: &Repository, data: &[Vec<u8>]) -> Vec<BlobId> {
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let ids = data
        .iter()
        .map(|d| {
            let id = enc.id(d);
            w.add(&enc.encode(BlobKind::Data, id, d).unwrap()).unwrap();
            id
        })
        .collect();
    w.finish().unwrap();
    ids
}

/// The master key of an encrypted repository, from its key ring.
fn master(backend: &MemoryBackend, encryption: Encryption) -> cairn_crypto::MasterKey {
    let ring = KeyRing::decode(&backend.get(KEYS_NAME).unwrap()).unwrap();
    ring.unlock(secret(encryption).as_ref().unwrap()).unwrap()
}

/// What the ids of `hash` are, computed by cairn-crypto directly.
fn expected_crypto(
    backend: &MemoryBackend,
    encryption: Encryption,
    hash: ChunkIdHash,
) -> RepoCrypto {
    match encryption {
        Encryption::None => RepoCrypto::none_with(hash),
        _ => RepoCrypto::with_chunk_id(&master(backend, encryption), hash),
    }
}

/// `old` as the bytes of a `config` file (unsealed frame, postcard payload).
fn version_1_config_file(old: &ConfigV1) -> Vec<u8> {
    let payload = postcard::to_stdvec(old).unwrap();
    frame::encode(FileKind::Config, false, &payload)
}

/// Replaces `config` by the version-1 layout of the same repository (no chunk-id field),
/// as a repository created before the field existed has it.
fn rewrite_as_version_1(backend: &MemoryBackend) {
    let c = read_config(backend).unwrap();
    let old = ConfigV1 {
        id: c.id,
        version: REPO_VERSION_SHA256_IDS,
        chunker: c.chunker,
        encryption: c.encryption,
        created: c.created,
        pack_target: c.pack_target,
        key_fingerprint: c.key_fingerprint,
    };
    backend
        .put(CONFIG_NAME, &version_1_config_file(&old))
        .unwrap();
}

/// Runs a full verify (data read back) and asserts it found no problem.
fn verify_clean(repo: &Repository) -> cairn_repo::VerifyReport {
    let report = repo
        .verify(&VerifyOptions {
            read_data: true,
            ..VerifyOptions::default()
        })
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    report
}

const ENCRYPTIONS: [Encryption; 2] = [Encryption::None, Encryption::Aes256Gcm];

/// The config alone, no key ring: a version-1 layout decodes (frame, postcard, validation,
/// exactly as `Repository::open` reads it) with no chunk-id field and SHA-256 ids.
#[test]
fn a_version_1_config_decodes_as_sha256_ids() {
    for encryption in ENCRYPTIONS {
        let old = ConfigV1 {
            id: ObjectId([5; 32]),
            version: REPO_VERSION_SHA256_IDS,
            chunker: cairn_chunk::ChunkerParams::default(),
            encryption,
            created: 1_700_000_000,
            pack_target: DEFAULT_PACK_TARGET,
            key_fingerprint: (encryption == Encryption::Aes256Gcm).then_some([9; 32]),
        };
        let c = cairn_repo::decode::config(&version_1_config_file(&old)).unwrap();
        assert_eq!(c.chunk_id, None);
        assert_eq!(c.chunk_id_hash(), ChunkIdHash::Sha256);
        assert_eq!(c.version, REPO_VERSION_SHA256_IDS);
        assert_eq!(c.key_fingerprint, old.key_fingerprint);
    }
}

#[test]
fn new_repositories_record_blake3_and_round_trip() {
    for encryption in ENCRYPTIONS {
        let backend = Arc::new(MemoryBackend::new());
        let repo = Repository::init(
            backend.clone(),
            &InitOptions {
                encryption,
                kdf: Some(KdfParams::insecure_for_tests()),
                ..InitOptions::default()
            },
            secret(encryption).as_ref(),
        )
        .unwrap();
        assert_eq!(repo.config().version, REPO_VERSION);
        assert_eq!(repo.config().chunk_id, Some(ChunkIdHash::Blake3));
        let data = chunks();
        let ids = store(&repo, &data);
        drop(repo);

        let repo = open(&backend, encryption).unwrap();
        assert_eq!(repo.config().chunk_id_hash(), ChunkIdHash::Blake3);
        let want = expected_crypto(&backend, encryption, ChunkIdHash::Blake3);
        for (d, id) in data.iter().zip(&ids) {
            assert_eq!(id.0, want.chunk_id(d), "{encryption}");
            assert_eq!(repo.blob_id(d), *id);
            assert_eq!(&repo.read_blob(id).unwrap(), d);
        }
        if encryption == Encryption::None {
            // Unkeyed: plain BLAKE3 of the data.
            assert_eq!(
                ids[0].0,
                RepoCrypto::none_with(ChunkIdHash::Blake3).chunk_id(&data[0])
            );
        } else {
            // Keyed: not the unkeyed hash, not HMAC-SHA256 under the same master key.
            assert_ne!(
                ids[0].0,
                RepoCrypto::none_with(ChunkIdHash::Blake3).chunk_id(&data[0])
            );
            assert_ne!(
                ids[0].0,
                expected_crypto(&backend, encryption, ChunkIdHash::Sha256).chunk_id(&data[0])
            );
        }
        // A second session deduplicates against the first.
        let w = repo.writer().unwrap();
        assert!(w.has_blob(&w.encoder().id(&data[3])));
        w.finish().unwrap();
        let report = verify_clean(&repo);
        assert_eq!(report.blobs_checked, u64::try_from(data.len()).unwrap());
    }
}

#[test]
fn repositories_with_a_version_1_config_keep_sha256_ids() {
    for encryption in ENCRYPTIONS {
        // Data written with HMAC-SHA256 / SHA-256 ids, then the config as old builds wrote it.
        let backend = Arc::new(MemoryBackend::new());
        let repo = init(&backend, encryption, ChunkIdHash::Sha256);
        assert_eq!(repo.config().chunk_id, Some(ChunkIdHash::Sha256));
        let data = chunks();
        let ids = store(&repo, &data[..4]);
        let fingerprint = repo.config().key_fingerprint;
        drop(repo);
        rewrite_as_version_1(&backend);

        let repo = open(&backend, encryption).unwrap();
        assert_eq!(repo.config().version, REPO_VERSION_SHA256_IDS);
        assert_eq!(repo.config().chunk_id, None);
        assert_eq!(repo.config().chunk_id_hash(), ChunkIdHash::Sha256);
        assert_eq!(repo.config().key_fingerprint, fingerprint);
        let want = expected_crypto(&backend, encryption, ChunkIdHash::Sha256);
        for (d, id) in data.iter().zip(&ids) {
            assert_eq!(id.0, want.chunk_id(d));
            assert_eq!(&repo.read_blob(id).unwrap(), d);
        }
        if encryption == Encryption::None {
            assert_eq!(
                ids[0].0,
                *ring::digest::digest(&ring::digest::SHA256, &data[0]).as_ref()
            );
            // The pack decoder checks ids with the hash it is told.
            let pack = backend.get(&backend.list("packs/").unwrap()[0]).unwrap();
            assert_eq!(
                cairn_repo::decode::pack_with(&pack, ChunkIdHash::Sha256)
                    .unwrap()
                    .len(),
                4
            );
            assert!(matches!(
                cairn_repo::decode::pack(&pack),
                Err(Error::BlobCorrupt { .. })
            ));
        }
        // A new backup into the old repository: the same ids, so old chunks deduplicate and
        // new ones are SHA-256 based too; the config is not rewritten.
        let w = repo.writer().unwrap();
        assert!(w.has_blob(&w.encoder().id(&data[0])));
        w.finish().unwrap();
        let more = store(&repo, &data[4..]);
        assert_eq!(more[0].0, want.chunk_id(&data[4]));
        verify_clean(&repo);
        drop(repo);
        assert_eq!(
            read_config(backend.as_ref()).unwrap().version,
            REPO_VERSION_SHA256_IDS
        );
        let repo = open(&backend, encryption).unwrap();
        assert_eq!(&repo.read_blob(&more[1]).unwrap(), &data[5]);
    }
}

#[test]
fn the_key_fingerprint_does_not_depend_on_the_chunk_id_hash() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = init(&backend, Encryption::Aes256Gcm, ChunkIdHash::Sha256);
    let master = master(&backend, Encryption::Aes256Gcm);
    for hash in ChunkIdHash::ALL {
        assert_eq!(
            RepoCrypto::with_chunk_id(&master, hash).key_fingerprint(),
            repo.config().key_fingerprint
        );
    }
    // So a BLAKE3 repository whose config was forged to claim SHA-256 ids still opens (the
    // key matches) but reading its blobs fails the id check: ids are always re-computed
    // with the recorded algorithm, never trusted.
    let backend = Arc::new(MemoryBackend::new());
    let repo = init(&backend, Encryption::Aes256Gcm, ChunkIdHash::Blake3);
    let ids = store(&repo, &chunks()[..1]);
    drop(repo);
    rewrite_as_version_1(&backend);
    let repo = open(&backend, Encryption::Aes256Gcm).unwrap();
    assert!(matches!(
        repo.read_blob(&ids[0]),
        Err(Error::BlobCorrupt { .. })
    ));
}

#[test]
fn a_config_with_a_bad_chunk_id_hash_is_a_typed_error() {
    let backend = Arc::new(MemoryBackend::new());
    drop(init(&backend, Encryption::None, ChunkIdHash::Blake3));
    let bytes = backend.get(CONFIG_NAME).unwrap();
    let payload = &bytes[frame::HEADER_LEN..];
    let n = payload.len();
    assert_eq!(&payload[n - 2..], [1, 1]);
    let with_last = |b: u8| {
        let mut p = payload.to_vec();
        p[n - 1] = b;
        frame::encode(FileKind::Config, false, &p)
    };
    // The other known variant: valid, and read as such.
    let c = cairn_repo::decode::config(&with_last(0)).unwrap();
    assert_eq!(c.chunk_id_hash(), ChunkIdHash::Sha256);
    for b in [2u8, 9, 0x80, 0xFF] {
        let err = cairn_repo::decode::config(&with_last(b)).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{b:#x}: {err}");
        backend.put(CONFIG_NAME, &with_last(b)).unwrap();
        assert!(matches!(
            open(&backend, Encryption::None),
            Err(Error::Malformed { .. })
        ));
    }
    // A flipped bit without a recomputed CRC is caught by the frame first.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 2;
    assert!(matches!(
        cairn_repo::decode::config(&flipped),
        Err(Error::Checksum { .. })
    ));
}
