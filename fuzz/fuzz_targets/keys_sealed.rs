#![no_main]
//! Any bytes as a sealed blob: `RepoCrypto::open` never panics and never accepts a forgery
//! (the fuzzer cannot produce a valid AES-256-GCM tag under a fixed secret key, so every input
//! that is not a true seal must be rejected). The first byte splits the input into associated
//! data and sealed bytes, so both are explored.
use cairn_crypto::{MasterKey, RepoCrypto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let crypto = RepoCrypto::new(&MasterKey::from_bytes([0x42; 32]));
    let (aad, sealed) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len())),
        None => (&[][..], data),
    };
    assert!(crypto.open(aad, sealed).is_err(), "forgery accepted");
    // Unencrypted opening is the identity.
    assert_eq!(RepoCrypto::none().open(aad, sealed).unwrap(), sealed);
});
