//! Sealing and opening: round trips, tamper detection, nonce discipline.

use std::collections::HashSet;
use std::sync::Arc;

use cairn_crypto::{
    ChunkIdHash, Encryption, Error, MasterKey, RepoCrypto, MAX_SEALS_PER_SESSION,
    SEALED_HEADER_LEN, SEALED_OVERHEAD,
};
use proptest::prelude::*;

fn crypto() -> RepoCrypto {
    RepoCrypto::new(&MasterKey::generate().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_open_round_trip(
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        data in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let c = crypto();
        let sealed = c.sealer().unwrap().seal(&aad, &data).unwrap();
        prop_assert_eq!(sealed.len(), data.len() + c.overhead());
        prop_assert_eq!(c.open(&aad, &sealed).unwrap(), data.clone());
        // A clone shares keys; a second sealer of the same repository opens too.
        let again = c.clone().sealer().unwrap().seal(&aad, &data).unwrap();
        prop_assert_ne!(&again, &sealed);
        prop_assert_eq!(c.open(&aad, &again).unwrap(), data);
    }

    #[test]
    fn unencrypted_is_identity(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let c = RepoCrypto::none();
        let sealed = c.sealer().unwrap().seal(b"x", &data).unwrap();
        prop_assert_eq!(&sealed, &data);
        prop_assert_eq!(c.open(b"y", &sealed).unwrap(), data);
    }

    #[test]
    fn open_of_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(crypto().open(b"", &data).is_err());
    }
}

#[test]
fn every_bit_flip_is_detected() {
    let c = crypto();
    let sealed = c
        .sealer()
        .unwrap()
        .seal(b"chunk/1", b"some plaintext")
        .unwrap();
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = c.open(b"chunk/1", &bad).unwrap_err();
        if bit < 8 {
            assert!(
                matches!(err, Error::SealedVersion { .. }),
                "bit {bit}: {err}"
            );
        } else {
            assert!(
                matches!(err, Error::SealedAuthentication),
                "bit {bit}: {err}"
            );
        }
    }
}

#[test]
fn truncation_extension_wrong_aad_and_wrong_key_are_detected() {
    let c = crypto();
    let sealed = c.sealer().unwrap().seal(b"chunk/1", b"0123456789").unwrap();
    for len in 0..sealed.len() {
        let err = c.open(b"chunk/1", &sealed[..len]).unwrap_err();
        if len < SEALED_OVERHEAD {
            assert!(matches!(err, Error::SealedTooShort { .. }), "{len}: {err}");
        } else {
            assert!(matches!(err, Error::SealedAuthentication), "{len}: {err}");
        }
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(
        c.open(b"chunk/1", &longer),
        Err(Error::SealedAuthentication)
    ));
    assert!(matches!(
        c.open(b"chunk/2", &sealed),
        Err(Error::SealedAuthentication)
    ));
    assert!(matches!(
        crypto().open(b"chunk/1", &sealed),
        Err(Error::SealedAuthentication)
    ));
}

#[test]
fn nonces_never_repeat_across_threads() {
    let c = crypto();
    let sealer = Arc::new(c.sealer().unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&sealer);
            std::thread::spawn(move || {
                (0..500)
                    .map(|_| s.seal(b"", b"x").unwrap()[..SEALED_HEADER_LEN].to_vec())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for h in handles {
        for header in h.join().unwrap() {
            assert!(seen.insert(header), "a (session, nonce) pair repeated");
        }
    }
    assert_eq!(seen.len(), 2000);
    assert_eq!(sealer.sealed_count(), 2000);
    // A second session has a different id.
    let other = c.sealer().unwrap().seal(b"", b"x").unwrap();
    assert!(!seen.contains(&other[..SEALED_HEADER_LEN]));
}

#[test]
fn counter_exhaustion_is_refused() {
    let c = crypto();
    let sealer = c.sealer_for_tests([7; 16], MAX_SEALS_PER_SESSION - 1);
    let last = sealer.seal(b"", b"last").unwrap();
    assert_eq!(c.open(b"", &last).unwrap(), b"last");
    for _ in 0..3 {
        assert!(matches!(
            sealer.seal(b"", b"one too many"),
            Err(Error::SealerExhausted { .. })
        ));
    }
}

#[test]
fn chunk_ids_are_keyed_when_encrypted() {
    let a = crypto();
    let b = crypto();
    assert_ne!(a.chunk_id(b"data"), b.chunk_id(b"data"));
    assert_eq!(a.chunk_id(b"data"), a.clone().chunk_id(b"data"));
    assert_ne!(a.chunk_id(b"data"), RepoCrypto::none().chunk_id(b"data"));
    assert_eq!(a.encryption(), Encryption::Aes256Gcm);
    assert_eq!(RepoCrypto::none().encryption(), Encryption::None);
    assert_eq!(RepoCrypto::none().overhead(), 0);
}

#[test]
fn blake3_chunk_ids_are_keyed_when_encrypted() {
    let master = MasterKey::generate().unwrap();
    let a = RepoCrypto::with_chunk_id(&master, ChunkIdHash::Blake3);
    let b = RepoCrypto::with_chunk_id(&MasterKey::generate().unwrap(), ChunkIdHash::Blake3);
    assert_ne!(a.chunk_id(b"data"), b.chunk_id(b"data"));
    assert_eq!(a.chunk_id(b"data"), a.clone().chunk_id(b"data"));
    let unkeyed = RepoCrypto::none_with(ChunkIdHash::Blake3);
    assert_ne!(a.chunk_id(b"data"), unkeyed.chunk_id(b"data"));
    // Same master key, other algorithm: other ids (and another subkey, see keys.md).
    assert_ne!(
        a.chunk_id(b"data"),
        RepoCrypto::new(&master).chunk_id(b"data")
    );
    assert_eq!(unkeyed.overhead(), 0);
    assert!(format!("{a:?}").contains("Blake3"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The four id schemes never agree on an input, and each is a function of the data.
    #[test]
    fn id_schemes_are_distinct_functions(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        flip in any::<usize>(),
    ) {
        let master = MasterKey::from_bytes([3; 32]);
        let schemes = [
            RepoCrypto::with_chunk_id(&master, ChunkIdHash::Sha256),
            RepoCrypto::with_chunk_id(&master, ChunkIdHash::Blake3),
            RepoCrypto::none_with(ChunkIdHash::Sha256),
            RepoCrypto::none_with(ChunkIdHash::Blake3),
        ];
        let ids: Vec<[u8; 32]> = schemes.iter().map(|c| c.chunk_id(&data)).collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                prop_assert_ne!(a, b);
            }
        }
        if !data.is_empty() {
            let mut other = data.clone();
            other[flip % data.len()] ^= 1;
            for (c, id) in schemes.iter().zip(&ids) {
                prop_assert_eq!(&c.chunk_id(&data), id);
                prop_assert_ne!(&c.chunk_id(&other), id);
            }
        }
    }
}

#[test]
fn session_cache_survives_many_sessions() {
    // More sessions than the cache holds, opened in an order that forces evictions.
    let c = crypto();
    let sealed: Vec<_> = (0..40u8)
        .map(|i| c.sealer().unwrap().seal(&[i], &[i; 10]).unwrap())
        .collect();
    for round in 0..2 {
        for (i, s) in sealed.iter().enumerate().rev() {
            let i = u8::try_from(i).unwrap();
            assert_eq!(c.open(&[i], s).unwrap(), vec![i; 10], "round {round}");
        }
    }
}

#[test]
fn display_and_parse_of_encryption() {
    for e in [Encryption::None, Encryption::Aes256Gcm] {
        assert_eq!(e.to_string().parse::<Encryption>().unwrap(), e);
    }
    assert_eq!(Encryption::Aes256Gcm.to_string(), "aes-256-gcm");
    assert_eq!(
        serde_json::to_string(&Encryption::Aes256Gcm).unwrap(),
        "\"aes-256-gcm\""
    );
    assert_eq!(
        serde_json::from_str::<Encryption>("\"none\"").unwrap(),
        Encryption::None
    );
    assert!("aes".parse::<Encryption>().is_err());
}

#[test]
fn debug_output_has_no_key_material() {
    let bytes = [0xABu8; 32];
    let master = MasterKey::from_bytes(bytes);
    let c = RepoCrypto::new(&master);
    for text in [
        format!("{master:?}"),
        format!("{c:?}"),
        format!("{:?}", c.sealer().unwrap()),
    ] {
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("171, 171"), "{text}");
    }
}
