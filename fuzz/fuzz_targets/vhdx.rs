#![no_main]
//! Opens arbitrary bytes as a VHDX image (log replay included), then reads and maps it.
use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ReadAt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut limits = Limits::default();
    // Keep allocations small so the fuzzer explores structure, not memory.
    limits.max_table_bytes = 4 << 20;
    limits.max_virtual_size = 1 << 32;
    let Ok(img) = cairn_vhdx::VhdxImage::from_reader(Arc::new(data.to_vec()), &limits) else {
        return;
    };
    let mut buf = vec![0u8; 1 << 16];
    let _ = img.read_at(&mut buf, 0);
    let _ = img.read_at(&mut buf[..4097], img.size() / 2);
    let _ = img.layer_map();
    let _ = img.parent_link();
    let _ = img.identity();
});
