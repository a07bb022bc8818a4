//! Key ring: round trips, slots, wrong secrets, tampering, hostile files.

use cairn_crypto::{
    generate_key_file, generate_recovery_key, Error, KdfParams, KeyRing, MasterKey, RepoCrypto,
    SlotId, SlotKind, SlotSecret, KEYRING_HEADER_LEN, KEYRING_MAC_LEN, MAX_KDF_MEMORY_KIB,
    MAX_KEYRING_PAYLOAD, MAX_LABEL_LEN, MAX_SLOTS,
};
use proptest::prelude::*;

fn cheap() -> KdfParams {
    KdfParams::insecure_for_tests()
}

fn pass(s: &str) -> SlotSecret {
    SlotSecret::Passphrase(s.to_owned())
}

fn fingerprint(m: &MasterKey) -> [u8; 32] {
    RepoCrypto::new(m).key_fingerprint().unwrap()
}

fn ring_with_passphrase() -> (MasterKey, KeyRing) {
    let master = MasterKey::generate().unwrap();
    let ring = KeyRing::create_with_params(&master, &pass("hunter2"), "admin", cheap()).unwrap();
    (master, ring)
}

// ---- A hand-written encoder of the documented format, for hostile files. ----

fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

struct RawSlot {
    id: u64,
    kind: u64,
    mtp: (u64, u64, u64),
    label_len: u64,
    label: Vec<u8>,
}

impl RawSlot {
    fn passphrase(id: u64) -> Self {
        RawSlot {
            id,
            kind: 0,
            mtp: (8, 1, 1),
            label_len: 1,
            label: b"x".to_vec(),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        varint(self.id, out);
        varint(self.kind, out);
        if self.kind == 0 {
            varint(self.mtp.0, out);
            varint(self.mtp.1, out);
            varint(self.mtp.2, out);
        }
        out.extend_from_slice(&[0x11; 32]); // salt
        varint(self.label_len, out);
        out.extend_from_slice(&self.label);
        varint(1_800_000_000, out); // created
        out.extend_from_slice(&[0x22; 12]); // nonce
        out.extend_from_slice(&[0x33; 48]); // wrapped key + tag
    }
}

fn body(next: u64, slots: &[RawSlot]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(next, &mut out);
    varint(u64::try_from(slots.len()).unwrap(), &mut out);
    for s in slots {
        s.encode(&mut out);
    }
    out
}

/// Frames `payload` with a correct header and CRC (an attacker can always do this).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = b"CAIRNKEY".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn frame_body(body: &[u8]) -> Vec<u8> {
    let mut payload = body.to_vec();
    payload.extend_from_slice(&[0x44; KEYRING_MAC_LEN]);
    frame(&payload)
}

/// Re-frames an existing keys file after `edit` changed its payload (CRC fixed up).
fn refit(file: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut payload = file[KEYRING_HEADER_LEN..].to_vec();
    edit(&mut payload);
    frame(&payload)
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

// ---- Round trips ----

#[derive(Debug, Clone)]
enum Kind {
    Pass(String),
    File,
    Recovery,
}

fn secret_of(kind: &Kind) -> SlotSecret {
    match kind {
        Kind::Pass(p) => pass(p),
        Kind::File => SlotSecret::KeyFile(generate_key_file().unwrap()),
        Kind::Recovery => SlotSecret::RecoveryKey(generate_recovery_key().unwrap()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn keyring_round_trip(
        kinds in proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 äöü✓]{1,40}".prop_map(Kind::Pass),
                Just(Kind::File),
                Just(Kind::Recovery),
            ],
            1..5,
        ),
        labels in proptest::collection::vec("[ -~é]{0,40}", 5),
    ) {
        let master = MasterKey::generate().unwrap();
        let secrets: Vec<SlotSecret> = kinds.iter().map(secret_of).collect();
        let mut ring = KeyRing::create_with_params(&master, &secrets[0], &labels[0], cheap()).unwrap();
        for (i, s) in secrets.iter().enumerate().skip(1) {
            let id = ring.add_slot_with_params(&secrets[0], s, &labels[i], cheap()).unwrap();
            prop_assert_eq!(id, SlotId(u32::try_from(i).unwrap()));
        }
        let bytes = ring.encode();
        let decoded = KeyRing::decode(&bytes).unwrap();
        prop_assert_eq!(decoded.encode(), bytes);
        prop_assert_eq!(decoded.slots(), ring.slots());
        for (i, s) in secrets.iter().enumerate() {
            prop_assert_eq!(decoded.slots()[i].kind, s.kind());
            prop_assert_eq!(&decoded.slots()[i].label, &labels[i]);
            prop_assert_eq!(fingerprint(&decoded.unlock(s).unwrap()), fingerprint(&master));
        }
    }

    #[test]
    fn decode_of_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = KeyRing::decode(&data);
        // Also behind a valid frame, so the payload decoder sees the bytes.
        let _ = KeyRing::decode(&frame(&data));
    }
}

#[test]
fn default_parameters_work() {
    let master = MasterKey::generate().unwrap();
    let ring = KeyRing::create(&master, &pass("default params"), "admin").unwrap();
    assert_eq!(ring.slots()[0].kdf, Some(KdfParams::default()));
    let again = KeyRing::decode(&ring.encode()).unwrap();
    assert_eq!(
        fingerprint(&again.unlock(&pass("default params")).unwrap()),
        fingerprint(&master)
    );
}

// ---- Wrong secrets ----

#[test]
fn wrong_secrets_give_wrong_key() {
    let (master, mut ring) = ring_with_passphrase();
    let file = generate_key_file().unwrap();
    let recovery = generate_recovery_key().unwrap();
    ring.add_slot(&pass("hunter2"), &SlotSecret::KeyFile(file.clone()), "file")
        .unwrap();
    ring.add_slot(
        &pass("hunter2"),
        &SlotSecret::RecoveryKey(recovery.clone()),
        "paper",
    )
    .unwrap();
    for wrong in [
        pass("hunter3"),
        pass(""),
        pass("Hunter2"),
        pass("hunter2 "),
        SlotSecret::KeyFile(generate_key_file().unwrap()),
        SlotSecret::KeyFile(file[..31].to_vec()),
        SlotSecret::KeyFile(Vec::new()),
        SlotSecret::RecoveryKey(generate_recovery_key().unwrap()),
    ] {
        assert!(
            matches!(ring.unlock(&wrong), Err(Error::WrongKey)),
            "{wrong:?}"
        );
    }
    // A mistyped recovery key is reported as such.
    let typo = recovery.replacen(|c: char| c.is_ascii_alphanumeric(), "Z", 1);
    let typo = if typo == recovery {
        recovery.replacen('Z', "Y", 1)
    } else {
        typo
    };
    assert!(matches!(
        ring.unlock(&SlotSecret::RecoveryKey(typo)),
        Err(Error::RecoveryKeyFormat { .. }) | Err(Error::WrongKey)
    ));
    for good in [
        pass("hunter2"),
        SlotSecret::KeyFile(file),
        SlotSecret::RecoveryKey(recovery),
    ] {
        assert_eq!(
            fingerprint(&ring.unlock(&good).unwrap()),
            fingerprint(&master)
        );
    }
}

#[test]
fn wrong_key_message_is_one_clear_sentence() {
    let (_, ring) = ring_with_passphrase();
    let err = ring.unlock(&pass("nope")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrong key: no slot of the key ring accepts this passphrase, key file or recovery key"
    );
}

// ---- Slot management ----

#[test]
fn add_and_remove_slots_keep_the_master_key() {
    let (master, mut ring) = ring_with_passphrase();
    let fp = fingerprint(&master);
    let b = ring
        .add_slot_with_params(&pass("hunter2"), &pass("second"), "bob", cheap())
        .unwrap();
    let c = ring
        .add_slot_with_params(&pass("second"), &pass("third"), "carol", cheap())
        .unwrap();
    assert_eq!((b, c), (SlotId(1), SlotId(2)));
    for p in ["hunter2", "second", "third"] {
        assert_eq!(fingerprint(&ring.unlock(&pass(p)).unwrap()), fp);
    }
    // Remove the first slot using the slot being removed: allowed while others remain.
    ring.remove_slot(&pass("hunter2"), SlotId(0)).unwrap();
    assert!(matches!(
        ring.unlock(&pass("hunter2")),
        Err(Error::WrongKey)
    ));
    // Ids are never reused.
    let d = ring
        .add_slot_with_params(&pass("third"), &pass("fourth"), "dave", cheap())
        .unwrap();
    assert_eq!(d, SlotId(3));
    // Removal needs a valid secret.
    assert!(matches!(
        ring.remove_slot(&pass("hunter2"), SlotId(1)),
        Err(Error::WrongKey)
    ));
    assert!(matches!(
        ring.remove_slot(&pass("third"), SlotId(42)),
        Err(Error::NoSuchSlot { id: 42 })
    ));
    ring.remove_slot(&pass("third"), SlotId(1)).unwrap();
    ring.remove_slot(&pass("third"), SlotId(2)).unwrap();
    assert!(matches!(
        ring.remove_slot(&pass("fourth"), SlotId(3)),
        Err(Error::LastSlot { id: 3 })
    ));
    let ring = KeyRing::decode(&ring.encode()).unwrap();
    assert_eq!(ring.slots().len(), 1);
    assert_eq!(ring.slots()[0].label, "dave");
    assert_eq!(fingerprint(&ring.unlock(&pass("fourth")).unwrap()), fp);
    // The data sealed before all this still opens.
    let crypto = RepoCrypto::new(&master);
    let sealed = crypto.sealer().unwrap().seal(b"a", b"data").unwrap();
    let after = RepoCrypto::new(&ring.unlock(&pass("fourth")).unwrap());
    assert_eq!(after.open(b"a", &sealed).unwrap(), b"data");
}

#[test]
fn slot_count_is_capped() {
    let (_, mut ring) = ring_with_passphrase();
    for i in 1..MAX_SLOTS {
        ring.add_slot(
            &pass("hunter2"),
            &SlotSecret::KeyFile(generate_key_file().unwrap()),
            &format!("file {i}"),
        )
        .unwrap();
    }
    assert_eq!(ring.slots().len(), MAX_SLOTS);
    assert!(matches!(
        ring.add_slot(
            &pass("hunter2"),
            &SlotSecret::KeyFile(generate_key_file().unwrap()),
            "one too many"
        ),
        Err(Error::TooManySlots { .. })
    ));
}

#[test]
fn bad_new_secrets_and_labels_are_refused() {
    let master = MasterKey::generate().unwrap();
    let cases: Vec<(SlotSecret, &str)> = vec![
        (pass(""), "x"),
        (pass(&"p".repeat(5000)), "x"),
        (SlotSecret::KeyFile(vec![1; 31]), "x"),
        (SlotSecret::RecoveryKey("not a recovery key".into()), "x"),
        (pass("ok"), "line\nbreak"),
    ];
    let long_label = "l".repeat(MAX_LABEL_LEN + 1);
    for (secret, label) in cases
        .iter()
        .map(|(s, l)| (s, *l))
        .chain([(&pass("ok"), long_label.as_str())])
    {
        let err = KeyRing::create_with_params(&master, secret, label, cheap()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PassphraseLength { .. }
                    | Error::KeyFileLength { .. }
                    | Error::RecoveryKeyFormat { .. }
                    | Error::Label { .. }
            ),
            "{secret:?} {label:?}: {err}"
        );
    }
    for (m, t, p) in [
        (0, 1, 1),
        (8, 0, 1),
        (8, 1, 0),
        (16, 1, 4),
        (u32::MAX, 1, 1),
        (8, 99, 1),
    ] {
        assert!(matches!(
            KdfParams::new(m, t, p),
            Err(Error::KdfParams { .. })
        ));
        let params = KdfParams {
            memory_kib: m,
            time_cost: t,
            parallelism: p,
        };
        assert!(matches!(
            KeyRing::create_with_params(&master, &pass("ok"), "", params),
            Err(Error::KdfParams { .. })
        ));
    }
}

// ---- Tampering ----

#[test]
fn every_bit_flip_of_the_keys_file_is_detected() {
    let (_, mut ring) = ring_with_passphrase();
    ring.add_slot(
        &pass("hunter2"),
        &SlotSecret::RecoveryKey(generate_recovery_key().unwrap()),
        "r",
    )
    .unwrap();
    let bytes = ring.encode();
    for bit in 0..bytes.len() * 8 {
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(KeyRing::decode(&bad).is_err(), "bit {bit} undetected");
    }
    for len in 0..bytes.len() {
        assert!(
            KeyRing::decode(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        KeyRing::decode(&longer),
        Err(Error::KeyRingLength { .. })
    ));
}

#[test]
fn forged_edits_with_fixed_crc_are_caught_at_unlock() {
    let (_, ring) = ring_with_passphrase();
    let (_, other) = ring_with_passphrase();
    let bytes = ring.encode();

    // Renaming the label (same length) passes decode, fails the ring MAC.
    let at = find(&bytes[KEYRING_HEADER_LEN..], b"admin");
    let renamed = refit(&bytes, |p| p[at..at + 5].copy_from_slice(b"mallo"));
    let decoded = KeyRing::decode(&renamed).unwrap();
    assert_eq!(decoded.slots()[0].label, "mallo");
    assert!(matches!(
        decoded.unlock(&pass("hunter2")),
        Err(Error::KeyRingTampered)
    ));

    // Changing any bit of the MAC.
    let mac_flip = refit(&bytes, |p| {
        let last = p.len() - 1;
        p[last] ^= 1;
    });
    assert!(matches!(
        KeyRing::decode(&mac_flip).unwrap().unlock(&pass("hunter2")),
        Err(Error::KeyRingTampered)
    ));

    // Weakening the KDF parameters is bound by the wrap: the slot no longer opens. Payload
    // layout: next id (1 byte), count (1), slot id (1), kind (1), m (varint 8 = 1 byte), t, p.
    let weaker = refit(&bytes, |p| {
        assert_eq!(&p[..7], &[1, 1, 0, 0, 8, 1, 1]);
        p[5] = 2;
    });
    let decoded = KeyRing::decode(&weaker).unwrap();
    assert_eq!(decoded.slots()[0].kdf.unwrap().time_cost, 2);
    assert!(matches!(
        decoded.unlock(&pass("hunter2")),
        Err(Error::WrongKey)
    ));

    // Grafting another ring's slot list under this ring's MAC: wrong key for our passphrase
    // (their slot does not open with it) and tampered for theirs would need their MAC.
    let other_bytes = other.encode();
    let grafted = refit(&bytes, |p| {
        let body_len = p.len() - KEYRING_MAC_LEN;
        let other_body = &other_bytes[KEYRING_HEADER_LEN..other_bytes.len() - KEYRING_MAC_LEN];
        assert_eq!(other_body.len(), body_len);
        p[..body_len].copy_from_slice(other_body);
    });
    // Both rings use the passphrase "hunter2": the grafted slot opens, the MAC does not match.
    assert!(matches!(
        KeyRing::decode(&grafted).unwrap().unlock(&pass("hunter2")),
        Err(Error::KeyRingTampered)
    ));
}

// ---- Hostile files ----

#[test]
fn hostile_headers_give_typed_errors() {
    let (_, ring) = ring_with_passphrase();
    let good = ring.encode();

    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        KeyRing::decode(&bad),
        Err(Error::KeyRingMagic { .. })
    ));

    let mut bad = good.clone();
    bad[8] = 2;
    assert!(matches!(
        KeyRing::decode(&bad),
        Err(Error::KeyRingVersion { found: 2, .. })
    ));

    let mut bad = good.clone();
    bad[10] = 1;
    assert!(matches!(
        KeyRing::decode(&bad),
        Err(Error::KeyRingFlags { found: 1 })
    ));

    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        KeyRing::decode(&bad),
        Err(Error::KeyRingPayloadTooLarge { .. })
    ));

    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&u32::try_from(MAX_KEYRING_PAYLOAD).unwrap().to_le_bytes());
    assert!(matches!(
        KeyRing::decode(&bad),
        Err(Error::KeyRingLength { .. })
    ));

    let mut bad = good.clone();
    bad[16] ^= 0xff;
    assert!(matches!(
        KeyRing::decode(&bad),
        Err(Error::KeyRingChecksum { .. })
    ));

    assert!(matches!(
        KeyRing::decode(&good[..10]),
        Err(Error::KeyRingTooShort { len: 10, .. })
    ));
    assert!(matches!(
        KeyRing::decode(&frame(&[0; 5])),
        Err(Error::KeyRingPayload { .. })
    ));
}

#[test]
fn hostile_payloads_give_typed_errors() {
    // Sanity: the hand encoder produces a decodable ring.
    let ok = frame_body(&body(1, &[RawSlot::passphrase(0)]));
    assert_eq!(KeyRing::decode(&ok).unwrap().slots().len(), 1);

    let slot_field = |raw: RawSlot, field: &str| {
        let err = KeyRing::decode(&frame_body(&body(u64::from(u32::MAX), &[raw]))).unwrap_err();
        match err {
            Error::SlotField { field: f, .. } if f == field => {}
            other => panic!("expected SlotField {field}, got {other}"),
        }
    };
    // A 100 GiB memory cost must be refused before anything is allocated.
    let huge_m = 100 * 1024 * 1024;
    slot_field(
        RawSlot {
            mtp: (huge_m, 1, 1),
            ..RawSlot::passphrase(0)
        },
        "memory_kib",
    );
    slot_field(
        RawSlot {
            mtp: (u64::from(MAX_KDF_MEMORY_KIB) + 1, 1, 1),
            ..RawSlot::passphrase(0)
        },
        "memory_kib",
    );
    slot_field(
        RawSlot {
            mtp: (8, 1_000_000, 1),
            ..RawSlot::passphrase(0)
        },
        "time_cost",
    );
    slot_field(
        RawSlot {
            mtp: (8 * 1024, 1, 100_000),
            ..RawSlot::passphrase(0)
        },
        "parallelism",
    );
    slot_field(
        RawSlot {
            mtp: (8, 1, 2),
            ..RawSlot::passphrase(0)
        },
        "memory_kib",
    );
    let long = "l".repeat(MAX_LABEL_LEN + 1).into_bytes();
    slot_field(
        RawSlot {
            label_len: u64::try_from(long.len()).unwrap(),
            label: long,
            ..RawSlot::passphrase(0)
        },
        "label length (printable text only)",
    );

    let payload_err = |b: Vec<u8>| {
        let err = KeyRing::decode(&frame_body(&b)).unwrap_err();
        assert!(matches!(err, Error::KeyRingPayload { .. }), "{err}");
    };
    // Absurd label length (2^40) and slot count (2^60): no allocation, a typed error.
    payload_err(body(
        1,
        &[RawSlot {
            label_len: 1 << 40,
            ..RawSlot::passphrase(0)
        }],
    ));
    let mut absurd_count = Vec::new();
    varint(1, &mut absurd_count);
    varint(1 << 60, &mut absurd_count);
    payload_err(absurd_count);
    // Unknown slot kind.
    payload_err(body(
        1,
        &[RawSlot {
            kind: 7,
            ..RawSlot::passphrase(0)
        }],
    ));
    // m overflowing u32.
    payload_err(body(
        1,
        &[RawSlot {
            mtp: (1 << 33, 1, 1),
            ..RawSlot::passphrase(0)
        }],
    ));
    // Label not UTF-8.
    payload_err(body(
        1,
        &[RawSlot {
            label: vec![0xff],
            ..RawSlot::passphrase(0)
        }],
    ));
    // Trailing bytes between the body and the MAC.
    let mut trailing = body(1, &[RawSlot::passphrase(0)]);
    trailing.push(0);
    payload_err(trailing);

    // Structural rules.
    assert!(matches!(
        KeyRing::decode(&frame_body(&body(1, &[]))),
        Err(Error::NoSlots)
    ));
    let many: Vec<RawSlot> = (0..=u64::try_from(MAX_SLOTS).unwrap())
        .map(RawSlot::passphrase)
        .collect();
    assert!(matches!(
        KeyRing::decode(&frame_body(&body(100, &many))),
        Err(Error::TooManySlots { .. })
    ));
    assert!(matches!(
        KeyRing::decode(&frame_body(&body(
            5,
            &[RawSlot::passphrase(1), RawSlot::passphrase(1)]
        ))),
        Err(Error::SlotId { slot: 1, .. })
    ));
    assert!(matches!(
        KeyRing::decode(&frame_body(&body(1, &[RawSlot::passphrase(1)]))),
        Err(Error::SlotId { slot: 1, next: 1 })
    ));
}

#[test]
fn unlock_of_a_hand_made_slot_is_wrong_key_not_a_panic() {
    let ring = KeyRing::decode(&frame_body(&body(1, &[RawSlot::passphrase(0)]))).unwrap();
    assert_eq!(ring.slots()[0].kind, SlotKind::Passphrase);
    assert!(matches!(
        ring.unlock(&pass("anything")),
        Err(Error::WrongKey)
    ));
}

// ---- Files ----

#[test]
fn save_and_load_outside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my.keys");
    let (master, ring) = ring_with_passphrase();
    ring.save(&path).unwrap();
    let loaded = KeyRing::load(&path).unwrap();
    assert_eq!(loaded.encode(), ring.encode());
    assert_eq!(
        fingerprint(&loaded.unlock(&pass("hunter2")).unwrap()),
        fingerprint(&master)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "keys file readable by others: {mode:o}");
    }
    assert!(matches!(
        KeyRing::load(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
    let big = dir.path().join("big");
    std::fs::write(
        &big,
        vec![0u8; KEYRING_HEADER_LEN + MAX_KEYRING_PAYLOAD + 1],
    )
    .unwrap();
    assert!(matches!(
        KeyRing::load(&big),
        Err(Error::KeyRingPayloadTooLarge { .. })
    ));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let s = pass("hunter2");
    assert_eq!(format!("{s:?}"), "SlotSecret::Passphrase(<redacted>)");
    let (_, ring) = ring_with_passphrase();
    assert!(!format!("{ring:?}").contains("hunter2"));
}
