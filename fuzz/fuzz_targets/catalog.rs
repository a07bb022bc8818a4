//! Fuzz target `catalog`: decode arbitrary bytes as a catalog directory blob and as a
//! security-descriptor table, framed as given and wrapped in a valid frame (so the payload
//! decoder is reached past the CRC). Must never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn framed(blob_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = cairn_catalog::MAGIC.to_vec();
    b.extend_from_slice(&cairn_catalog::VERSION.to_le_bytes());
    b.extend_from_slice(&[blob_type, 0]);
    b.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    b.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    b.extend_from_slice(payload);
    b
}

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
