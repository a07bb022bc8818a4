#![no_main]
//! Opens the input as one sparse extent (KDMV, streamOptimized, COWD or seSparse), builds
//! its map, then reads the virtual disk in 64 KiB steps up to a byte budget.

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ReadAt};
use cairn_vmdk::VmdkImage;
use libfuzzer_sys::fuzz_target;

/// Bytes of virtual disk read per input, so a huge sparse capacity cannot stall the fuzzer.
const READ_BUDGET: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let mut limits = Limits::default();
    limits.max_table_bytes = 1 << 20;
    limits.max_unit_bytes = 1 << 20;
    limits.max_descriptor_bytes = 64 << 10;
    let Ok(img) = VmdkImage::from_reader(Arc::new(data.to_vec()), &limits) else {
        return;
    };
    let _ = img.layer_map();
    let _ = (img.subformat(), img.identity(), img.parent_link());
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0u64;
    while off < img.size() && off < READ_BUDGET {
        if img.read_at(&mut buf, off).is_err() {
            // Keep going: later grains may be fine.
        }
        off += buf.len() as u64;
    }
});
