#![no_main]
//! Decodes arbitrary bytes as a pin object (`pins/<id>`); never panics, hangs or
//! over-allocates, and whatever decodes re-encodes to the same pin. Half the inputs get the
//! right magic in front, to reach the header checks.
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(pin) = cairn_repo::decode::pin_file(bytes) {
        let again = cairn_repo::encode_plain_pin(&pin).expect("a decoded pin encodes");
        assert_eq!(
            cairn_repo::decode::pin_file(&again).expect("round trip"),
            pin
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 1 {
            let mut b = cairn_repo::PIN_MAGIC.to_vec();
            b.extend_from_slice(rest);
            check(&b);
        }
    }
});
