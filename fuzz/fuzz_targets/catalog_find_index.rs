//! Fuzz target `catalog_find_index`: decode arbitrary bytes as a find-index group and as a
//! find-index pointer, as given and wrapped in a valid frame (so the payload decoder is
//! reached past the CRC). Must never panic, hang or exhaust memory; whatever decodes must
//! encode again to the same value, and a search over it must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod shared;
use shared::catalog_framed as framed;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_catalog::decode_find_group(data);
    let _ = cairn_catalog::decode_find_pointer(data);
    if let Ok(g) = cairn_catalog::decode_find_group(&framed(cairn_catalog::TYPE_FIND_INDEX, data)) {
        let again = cairn_catalog::encode_find_group(&g).expect("re-encode");
        assert_eq!(
            cairn_catalog::decode_find_group(&again).expect("re-decode"),
            g
        );
        // A pattern matching nothing: every row is tested, no output is built (a valid
        // index may list up to MAX_INDEX_MEMBERSHIP restore points in total).
        let glob = cairn_catalog::Glob::new("\u{1}").expect("glob");
        let _ = g.find(&glob, None, None);
    }
    if let Ok(ids) =
        cairn_catalog::decode_find_pointer(&framed(cairn_catalog::TYPE_FIND_POINTER, data))
    {
        let again = cairn_catalog::encode_find_pointer(&ids).expect("re-encode");
        assert_eq!(
            cairn_catalog::decode_find_pointer(&again).expect("re-decode"),
            ids
        );
    }
});
