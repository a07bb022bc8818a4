#![no_main]
//! Decodes arbitrary bytes as a Cairn manifest file (frame, CRC, postcard payload, structural
//! checks); must never panic, hang or
//! over-allocate. Half the inputs are wrapped in a valid frame first, so the fuzzer gets past
//! the CRC into the payload decoder.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_repo::decode::manifest(data);
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 1 {
            let framed =
                cairn_repo::frame::encode(cairn_repo::frame::FileKind::Manifest, false, rest);
            let _ = cairn_repo::decode::manifest(&framed);
        }
    }
});
