//! Fuzz target `exfat`: open an exFAT volume from arbitrary bytes, walk the tree with a
//! step budget, stat, map and read every file. Must never panic, hang or exhaust memory.
#![no_main]

use std::sync::Arc;

use cairn_fat::{FatFs, FatOptions};
use cairn_io::Limits;
use cairn_vfs::{FileKind, FileSystem, ReadAt};
use libfuzzer_sys::fuzz_target;

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
    let mut limits = Limits::default();
    limits.max_table_bytes = 16 << 20;
    limits.max_walk_steps = 10_000;
    limits.max_dir_depth = 32;
    let opts = FatOptions::default().with_limits(limits);
    let Ok(fs) = FatFs::open(Arc::new(img), &opts) else {
        return;
    };
    let _ = fs.info();
    let _ = fs.used_map();
    let mut nodes = Vec::new();
    let _ = fs.walk(&mut |_, e| nodes.push((e.id, e.kind)));
    let _ = fs.lookup("/a/B.TXT");
    let mut buf = vec![0u8; 1 << 16];
    for (id, kind) in nodes {
        let _ = fs.metadata(id);
        if kind == FileKind::Dir {
            continue;
        }
        let _ = fs.extents(id, None);
        if let Ok(r) = fs.open(id, None) {
            let mut off = 0u64;
            while off < r.size().min(1 << 22) {
                match r.read_at(&mut buf, off) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
        }
    }
});
