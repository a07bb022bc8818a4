#![no_main]
//! Decodes arbitrary bytes as a prune pending-deletion file; never panics, hangs or
//! over-allocates. Half the inputs get the right magic in front, to reach the header checks.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_repo::decode::pending_file(data);
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 1 {
            let mut b = cairn_repo::PENDING_MAGIC.to_vec();
            b.extend_from_slice(rest);
            let _ = cairn_repo::decode::pending_file(&b);
        }
    }
});
