//! Fuzz target `catalog`: decode arbitrary bytes as a catalog directory blob and as a
//! security-descriptor table, framed as given and wrapped in a valid frame (so the payload
//! decoder is reached past the CRC). Must never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod shared;
use shared::catalog_framed as framed;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_catalog::decode_dir(data);
    let _ = cairn_catalog::decode_sd_table(data);
    if let Ok(dir) = cairn_catalog::decode_dir(&framed(cairn_catalog::TYPE_DIR, data)) {
        // Whatever decodes must encode again to the same value.
        let again = cairn_catalog::encode_dir(&dir).expect("re-encode");
        assert_eq!(cairn_catalog::decode_dir(&again).expect("re-decode"), dir);
    }
    let _ = cairn_catalog::decode_sd_table(&framed(cairn_catalog::TYPE_SD_TABLE, data));
});
