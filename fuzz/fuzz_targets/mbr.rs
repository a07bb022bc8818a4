#![no_main]
//! Any bytes as a disk: reading the partition table never panics or loops, and every
//! partition it returns can be probed.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let disk = data.to_vec();
    if let Ok(table) = cairn_part::read_partition_table(&disk) {
        for p in &table.partitions {
            if let Ok(vol) = p.open(&disk) {
                let _ = cairn_part::probe_filesystem(&vol);
            }
        }
    }
});
