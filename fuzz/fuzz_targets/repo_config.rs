#![no_main]
//! Decodes arbitrary bytes as a Cairn `config` file (frame, CRC, postcard payload with the
//! trailing optional chunk-id hash, field checks); must never panic. Half the inputs are
//! wrapped in a valid frame first, so the fuzzer gets past the CRC into the payload decoder.
//! A config that decodes must re-encode to a payload that decodes to the same config.
use cairn_repo::frame::{self, FileKind};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(config) = cairn_repo::decode::config(bytes) {
        let file = config.encode().expect("a decoded config re-encodes");
        let again = cairn_repo::decode::config(&file).expect("a re-encoded config decodes");
        assert_eq!(again, config);
        assert_eq!(again.chunk_id_hash(), config.chunk_id_hash());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 1 {
            check(&frame::encode(FileKind::Config, false, rest));
        }
    }
});
