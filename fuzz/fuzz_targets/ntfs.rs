//! Fuzz target `ntfs`: open an NTFS volume from arbitrary bytes, walk the tree with a node
//! budget, stat, map and read every file and stream (bounded), decode security descriptors.
//! Must never panic, hang or exhaust memory.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use cairn_io::Limits;
use cairn_ntfs::{decode_security_descriptor, NtfsFs, NtfsOptions};
use cairn_vfs::{FileKind, FileSystem, ReadAt};
use libfuzzer_sys::fuzz_target;

/// Nodes visited per input.
const NODE_BUDGET: usize = 2000;
/// Bytes read per stream.
const READ_BUDGET: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    // Steer onto the NTFS path: OEM id and boot signature.
    if img.len() >= 512 {
        img[3..11].copy_from_slice(b"NTFS    ");
        img[510] = 0x55;
        img[511] = 0xAA;
    }
    let mut limits = Limits::default();
    limits.max_table_bytes = 16 << 20;
    limits.max_walk_steps = 10_000;
    limits.max_dir_entries = 10_000;
    limits.max_dir_depth = 32;
    let Ok(fs) = NtfsFs::open(Arc::new(img), &NtfsOptions::with_limits(limits)) else {
        return;
    };
    let _ = fs.info();
    let _ = fs.used_map();
    let _ = fs.lookup("/a/B/c");
    let mut seen = HashSet::new();
    let mut stack = vec![fs.root()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs.read_dir(dir) else {
            continue;
        };
        for e in entries {
            if seen.len() >= NODE_BUDGET {
                return;
            }
            if !seen.insert(e.id) {
                continue;
            }
            let _ = fs.path_of(e.id);
            if let Ok(m) = fs.metadata(e.id) {
                if let Some(sd) = &m.security_descriptor {
                    let _ = decode_security_descriptor(sd);
                }
                let mut streams: Vec<Option<String>> = vec![None];
                streams.extend(m.streams.iter().map(|s| Some(s.name.clone())));
                for s in &streams {
                    let _ = fs.extents(e.id, s.as_deref());
                    if let Ok(r) = fs.open(e.id, s.as_deref()) {
                        let mut buf = vec![0u8; 64 << 10];
                        let mut off = 0u64;
                        while off < r.size().min(READ_BUDGET) {
                            match r.read_at(&mut buf, off) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => off += n as u64,
                            }
                        }
                    }
                }
            }
            if e.kind == FileKind::Dir {
                stack.push(e.id);
            }
        }
    }
});
