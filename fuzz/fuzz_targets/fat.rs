//! Fuzz target `fat`: open a FAT12/16/32 volume from arbitrary bytes, walk the tree with a
//! step budget, stat, map and read every file. Must never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod shared;

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    // Keep the input on the FAT path (the exFAT target covers the other one).
    if img.len() >= 11 && &img[3..11] == b"EXFAT   " {
        img[3] = b'X';
    }
    shared::exercise_fat(img);
});
