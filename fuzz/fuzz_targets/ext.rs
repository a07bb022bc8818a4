//! Fuzz target `ext`: open an ext2/3/4 volume from arbitrary bytes, walk the tree with a
//! node budget, stat, map and read (a bounded prefix of) every file, and build the used
//! map. Must never panic, hang or exhaust memory.
#![no_main]

use std::sync::Arc;

use cairn_ext::{ExtFs, ExtOptions};
use cairn_vfs::{FileKind, FileSystem, ReadAt};
use libfuzzer_sys::fuzz_target;

/// Bytes read from each file: enough to cross holes, extents and indirect blocks.
const READ_CAP: u64 = 256 << 10;

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    // Steer onto the ext path: the superblock magic at byte 1080.
    if img.len() >= 2048 {
        img[1080..1082].copy_from_slice(&0xEF53u16.to_le_bytes());
    }
    let mut opts = ExtOptions::lenient();
    opts.max_map_runs = 1 << 12;
    opts.limits.max_dir_entries = 1 << 14;
    opts.limits.max_dir_depth = 32;
    let src: Arc<dyn ReadAt> = Arc::new(img);
    let Ok(fs) = ExtFs::open(src, &opts) else {
        return;
    };
    let _ = fs.info();
    let _ = fs.used_map();
    let _ = fs.lookup("/a/b/../c");
    let _ = fs.lookup_with("/a/b", true);
    let Ok(nodes) = fs.walk(2000) else {
        // A partial tree is fine; still poke the root.
        let _ = fs.metadata(fs.root());
        return;
    };
    let mut buf = vec![0u8; 64 << 10];
    for (_, e) in nodes {
        let _ = fs.metadata(e.id);
        let _ = fs.extents(e.id, None);
        if e.kind == FileKind::Dir {
            continue;
        }
        if let Ok(r) = fs.open(e.id, None) {
            let end = r.size().min(READ_CAP);
            let mut off = 0u64;
            while off < end {
                match r.read_at(&mut buf, off) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
        }
    }
});
