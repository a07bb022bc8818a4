#![no_main]
//! Chunker parameters and data from arbitrary bytes: validation must refuse what fastcdc
//! would panic on, and spans must cover the input exactly.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let params = if data[0] & 1 == 0 {
        cairn_chunk::ChunkerParams::Fixed { size: word(1) }
    } else {
        cairn_chunk::ChunkerParams::FastCdc {
            min: word(1),
            avg: word(5),
            max: word(9),
        }
    };
    let Ok(chunker) = cairn_chunk::Chunker::new(params) else {
        return;
    };
    let body = &data[13..];
    let spans = chunker.split(u64::from(word(1)), body);
    let total: usize = spans.iter().map(|s| s.len).sum();
    assert_eq!(total, body.len());
});
