//! Opens arbitrary bytes as a VHD and reads the whole virtual disk in 64 KiB steps, within
//! a byte budget so a huge (but valid) virtual size cannot make one input run for long.
#![no_main]

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ReadAt};
use cairn_vhd::VhdImage;
use libfuzzer_sys::fuzz_target;

/// Most virtual-disk bytes read per input.
const READ_BUDGET: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let mut limits = Limits::default();
    limits.max_table_bytes = 1 << 20;
    limits.max_unit_bytes = 4 << 20;
    let Ok(image) = VhdImage::from_reader(Arc::new(data.to_vec()), &limits) else {
        return;
    };
    let _ = image.layer_map();
    let _ = image.parent_link();
    let _ = image.identity();
    let mut buf = vec![0u8; 64 << 10];
    let mut offset = 0u64;
    while offset < image.size().min(READ_BUDGET) {
        match image.read_at(&mut buf, offset) {
            Ok(0) | Err(_) => break,
            Ok(n) => offset += n as u64,
        }
    }
});
