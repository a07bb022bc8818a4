#![no_main]
//! Any bytes as a keys file: decoding never panics, hangs or allocates beyond the caps, and a
//! file that decodes re-encodes to the same bytes. Unlocking runs only when every passphrase
//! slot asks for tiny Argon2id parameters (the fuzzer must not spend its time in the KDF;
//! the parameter caps themselves are checked by decode).
use cairn_crypto::{KeyRing, SlotSecret};
use libfuzzer_sys::fuzz_target;

/// Largest Argon2id cost the fuzzer will actually run.
const FUZZ_MAX_MEMORY_KIB: u32 = 64;
const FUZZ_MAX_TIME_COST: u32 = 2;

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = KeyRing::decode(data) else {
        return;
    };
    assert_eq!(ring.encode(), data, "decode/encode must round-trip byte for byte");
    let slots = ring.slots();
    assert!(!slots.is_empty() && slots.len() <= cairn_crypto::MAX_SLOTS);
    let cheap = slots.iter().all(|s| {
        s.kdf.map_or(true, |k| {
            k.memory_kib <= FUZZ_MAX_MEMORY_KIB && k.time_cost <= FUZZ_MAX_TIME_COST
        })
    });
    if cheap {
        let _ = ring.unlock(&SlotSecret::Passphrase("fuzz passphrase".to_owned()));
        let _ = ring.unlock(&SlotSecret::KeyFile(vec![0x5a; 64]));
        let _ = ring.unlock(&SlotSecret::RecoveryKey(
            "0000-0000-0000-0000-0000-0000-0000".to_owned(),
        ));
    }
});
