//! Known-answer tests. Every value here was computed by `tests/golden.py` from the written
//! format (docs/formats/keys.md) with Python's hmac/hashlib and the `cryptography` package
//! (AES-GCM, Argon2id): an independent implementation pins the id scheme, the subkey
//! derivation, the sealed form and the keys file byte for byte.

use cairn_crypto::{
    ChunkIdHash, Encryption, Error, KdfParams, KeyRing, MasterKey, RepoCrypto, SlotId, SlotKind,
    SlotSecret,
};

const CHUNK_ID_HELLO_KEYED: &str =
    "80c42146c511b35eaa36ab0041662e1a19d0e143867553fbe4d2058f709f80f5";
const CHUNK_ID_HELLO_PLAIN: &str =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
const CHUNK_ID_HELLO_KEYED_BLAKE3: &str =
    "01d48729403a9e889749a0dda3e61e2d2a95cb6e101773ca6536e7684281ffbf";
const CHUNK_ID_HELLO_PLAIN_BLAKE3: &str =
    "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f";
/// 10000 bytes `i mod 251`: ten BLAKE3 chunks, a three-level tree (real chunks are 256 KiB).
const CHUNK_ID_10000_KEYED_BLAKE3: &str =
    "11713dd1b53f968658107cbc923394d6b6c558400312cea0d582f579c5a28884";
const CHUNK_ID_10000_KEYED_SHA256: &str =
    "330e6791ccfc4c09a3d5191cb61102f9061b03c3237dd58ff4dfba8c5f42d627";
const FINGERPRINT: &str = "1876061deb317f6a40c2fb0c5d47fe50809038696d7e48d333124530549beb64";
const SEALED: &str = "01101112131415161718191a1b1c1d1e1f000000000000000000000005b9040200a80860f9e56ef286ed492907440850a06ed55a5fe871e7913404ecb93730789634127079";
const RECOVERY_KEY: &str = "7ADG-KPSW-Z258-BEHM-QTX0-369C-FJ8D";
const KEYS_FILE: &str = "434149524e4b45590100000072010000e6db0e4505030000100201a0a1a2a3a4a5a6a7a8a9aaabacadaeafa0a1a2a3a4a5a6a7a8a9aaabacadaeaf0561646d696e80a4a7da06000102030405060708090a0ba3773526cd98b057383bdbd05d4694b228848922f0092523116ba312d5489299c0d8a177c75421e4a6e05f29b5d49bbf0301b0b1b2b3b4b5b6b7b8b9babbbcbdbebfb0b1b2b3b4b5b6b7b8b9babbbcbdbebf106f666673697465206b65792066696c65aca6a7da060c0d0e0f1011121314151617bc93d2a1417007d0977eb9b84e465d94585ad69e5d6921826bda17b19ecd52ab4ee85c34d79bb12a894327213ec9964b0402c0c1c2c3c4c5c6c7c8c9cacbcccdcecfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf0c7265636f7665727920e29c93d8a8a7da0618191a1b1c1d1e1f202122234b889ca85b9e1f8d5d667551139386ad0df0f79b212e2af0c181def8efe8c56d7e6a2c5b071578892a8bc401537ce91ebaedc2036711bc674ff1396b088ec1d0ca2ab4b4e705db578e51e2f17cc2da19";
const PASSPHRASE: &str = "pässphrase";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn golden_master() -> MasterKey {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::try_from(i).unwrap();
    }
    MasterKey::from_bytes(b)
}

fn key_file() -> Vec<u8> {
    (100u8..164).collect()
}

#[test]
fn chunk_ids_are_pinned() {
    let crypto = RepoCrypto::new(&golden_master());
    assert_eq!(to_hex(&crypto.chunk_id(b"hello")), CHUNK_ID_HELLO_KEYED);
    assert_eq!(
        to_hex(&RepoCrypto::none().chunk_id(b"hello")),
        CHUNK_ID_HELLO_PLAIN
    );
}

/// Bytes `i mod 251`, the input pattern of the BLAKE3 test vectors.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

#[test]
fn chunk_ids_of_every_algorithm_are_pinned() {
    let master = golden_master();
    let cases = [
        (
            RepoCrypto::with_chunk_id(&master, ChunkIdHash::Sha256),
            CHUNK_ID_HELLO_KEYED,
        ),
        (
            RepoCrypto::with_chunk_id(&master, ChunkIdHash::Blake3),
            CHUNK_ID_HELLO_KEYED_BLAKE3,
        ),
        (
            RepoCrypto::none_with(ChunkIdHash::Sha256),
            CHUNK_ID_HELLO_PLAIN,
        ),
        (
            RepoCrypto::none_with(ChunkIdHash::Blake3),
            CHUNK_ID_HELLO_PLAIN_BLAKE3,
        ),
    ];
    for (crypto, want) in &cases {
        assert_eq!(to_hex(&crypto.chunk_id(b"hello")), *want, "{crypto:?}");
    }
    let long = pattern(10_000);
    assert_eq!(
        to_hex(&cases[0].0.chunk_id(&long)),
        CHUNK_ID_10000_KEYED_SHA256
    );
    assert_eq!(
        to_hex(&cases[1].0.chunk_id(&long)),
        CHUNK_ID_10000_KEYED_BLAKE3
    );
    // The old constructors keep meaning HMAC-SHA256 / SHA-256.
    assert_eq!(
        RepoCrypto::new(&master).chunk_id_hash(),
        ChunkIdHash::Sha256
    );
    assert_eq!(RepoCrypto::none().chunk_id_hash(), ChunkIdHash::Sha256);
    assert_eq!(cases[1].0.chunk_id_hash(), ChunkIdHash::Blake3);
    assert_eq!(cases[3].0.encryption(), Encryption::None);
}

#[test]
fn unkeyed_blake3_ids_are_the_published_test_vectors() {
    // BLAKE3-team/BLAKE3 test_vectors/test_vectors.json ("hash", first 32 bytes), and the
    // paper's "abc".
    let none = RepoCrypto::none_with(ChunkIdHash::Blake3);
    for (len, want) in [
        (
            0,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        ),
        (
            1025,
            "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
        ),
        (
            5121,
            "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff",
        ),
    ] {
        assert_eq!(to_hex(&none.chunk_id(&pattern(len))), want, "length {len}");
    }
    assert_eq!(
        to_hex(&none.chunk_id(b"abc")),
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
}

#[test]
fn fingerprint_does_not_depend_on_the_chunk_id_hash() {
    let master = golden_master();
    for hash in ChunkIdHash::ALL {
        let crypto = RepoCrypto::with_chunk_id(&master, hash);
        assert_eq!(to_hex(&crypto.key_fingerprint().unwrap()), FINGERPRINT);
        // Sealing keys do not depend on it either: one algorithm's blob opens under the other.
        let sealed = crypto.sealer().unwrap().seal(b"aad", b"payload").unwrap();
        for other in ChunkIdHash::ALL {
            let c = RepoCrypto::with_chunk_id(&master, other);
            assert_eq!(c.open(b"aad", &sealed).unwrap(), b"payload");
        }
    }
}

#[test]
fn chunk_id_hash_names_round_trip() {
    for hash in ChunkIdHash::ALL {
        assert_eq!(hash.to_string().parse::<ChunkIdHash>().unwrap(), hash);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{hash}\""));
        assert_eq!(serde_json::from_str::<ChunkIdHash>(&json).unwrap(), hash);
    }
    assert!("md5".parse::<ChunkIdHash>().is_err());
    assert_eq!(
        ChunkIdHash::Sha256.describe(Encryption::Aes256Gcm),
        "hmac-sha256"
    );
    assert_eq!(
        ChunkIdHash::Blake3.describe(Encryption::Aes256Gcm),
        "keyed-blake3"
    );
    // Postcard variant indexes are the format: 0 = sha256, 1 = blake3; 2 is refused.
    assert_eq!(postcard::to_stdvec(&ChunkIdHash::Sha256).unwrap(), [0]);
    assert_eq!(postcard::to_stdvec(&ChunkIdHash::Blake3).unwrap(), [1]);
    assert!(postcard::from_bytes::<ChunkIdHash>(&[2]).is_err());
}

#[test]
fn fingerprint_is_pinned() {
    let crypto = RepoCrypto::new(&golden_master());
    assert_eq!(to_hex(&crypto.key_fingerprint().unwrap()), FINGERPRINT);
    assert_eq!(RepoCrypto::none().key_fingerprint(), None);
}

#[test]
fn sealed_form_is_pinned() {
    let crypto = RepoCrypto::new(&golden_master());
    let sid: [u8; 16] = core::array::from_fn(|i| 0x10 + u8::try_from(i).unwrap());
    let sealer = crypto.sealer_for_tests(sid, 5);
    let sealed = sealer
        .seal(b"chunk/0123", b"cairn sealed test vector")
        .unwrap();
    assert_eq!(to_hex(&sealed), SEALED);
    assert_eq!(
        crypto.open(b"chunk/0123", &hex(SEALED)).unwrap(),
        b"cairn sealed test vector"
    );
}

#[test]
fn keys_file_written_from_the_spec_decodes_and_unlocks() {
    let bytes = hex(KEYS_FILE);
    let ring = KeyRing::decode(&bytes).unwrap();
    // Byte-identical re-encoding.
    assert_eq!(ring.encode(), bytes);

    let slots = ring.slots();
    assert_eq!(slots.len(), 3);
    assert_eq!(
        slots.iter().map(|s| s.id).collect::<Vec<_>>(),
        [SlotId(0), SlotId(3), SlotId(4)]
    );
    assert_eq!(
        slots.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [
            SlotKind::Passphrase,
            SlotKind::KeyFile,
            SlotKind::RecoveryKey
        ]
    );
    assert_eq!(slots[0].label, "admin");
    assert_eq!(slots[2].label, "recovery ✓");
    assert_eq!(slots[1].created, 1_800_000_300);
    assert_eq!(slots[0].kdf, Some(KdfParams::new(16, 2, 1).unwrap()));
    assert_eq!(slots[1].kdf, None);

    for secret in [
        SlotSecret::Passphrase(PASSPHRASE.to_owned()),
        SlotSecret::KeyFile(key_file()),
        SlotSecret::RecoveryKey(RECOVERY_KEY.to_owned()),
        SlotSecret::RecoveryKey(RECOVERY_KEY.to_lowercase().replace('-', " ")),
    ] {
        let master = ring.unlock(&secret).unwrap();
        assert_eq!(
            to_hex(&RepoCrypto::new(&master).key_fingerprint().unwrap()),
            FINGERPRINT,
            "{secret:?}"
        );
    }
    assert!(matches!(
        ring.unlock(&SlotSecret::Passphrase("passphrase".into())),
        Err(Error::WrongKey)
    ));
}
