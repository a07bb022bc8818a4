#![no_main]
//! Fuzz bytes placed behind a valid protective MBR, so the GPT header and entry parsers
//! are reached on every input.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut disk = vec![0u8; 512];
    disk[446 + 4] = 0xEE;
    disk[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xAA;
    disk.extend_from_slice(data);
    let _ = cairn_part::read_partition_table(&disk);
});
