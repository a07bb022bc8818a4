//! Fuzz target `exfat`: open an exFAT volume from arbitrary bytes, walk the tree with a
//! step budget, stat, map and read every file. Must never panic, hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod shared;

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    // Steer the input onto the exFAT path: signature, and a boot checksum that matches
    // (otherwise nearly every input stops at the checksum).
    if img.len() >= 512 {
        img[3..11].copy_from_slice(b"EXFAT   ");
        let sec = 1usize << img[108].clamp(9, 12);
        if img.len() >= sec * 12 {
            let mut sum = 0u32;
            for (i, &b) in img[..sec * 11].iter().enumerate() {
                if i != 106 && i != 107 && i != 112 {
                    sum = sum.rotate_right(1).wrapping_add(u32::from(b));
                }
            }
            for k in (sec * 11..sec * 12).step_by(4) {
                img[k..k + 4].copy_from_slice(&sum.to_le_bytes());
            }
        }
    }
    shared::exercise_fat(img);
});
