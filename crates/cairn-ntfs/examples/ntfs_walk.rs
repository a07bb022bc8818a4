//! Lists every file of an NTFS image with its kind, size and streams:
//! `cargo run -p cairn-ntfs --example ntfs_walk -- ntfs.img`.

use std::sync::Arc;

use cairn_io::FileReader;
use cairn_ntfs::{NtfsFs, NtfsOptions};
use cairn_vfs::{FileKind, FileSystem};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: ntfs_walk IMAGE")?;
    let fs = NtfsFs::open(Arc::new(FileReader::open(&path)?), &NtfsOptions::default())?;
    let info = fs.info();
    println!(
        "# {} label={:?} serial={} cluster={} used={}/{} warnings={:?}",
        info.fs_type,
        info.label.unwrap_or_default(),
        info.uuid.unwrap_or_default(),
        info.block_size,
        info.used_bytes,
        info.total_bytes,
        info.warnings
    );
    let mut stack = vec![(fs.root(), String::new(), 0u32)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        for e in fs.read_dir(dir)? {
            let p = format!("{prefix}/{}", e.name);
            match fs.metadata(e.id) {
                Ok(m) => {
                    let streams: Vec<String> = m
                        .streams
                        .iter()
                        .map(|s| format!("{}={}", s.name, s.size))
                        .collect();
                    let target = m
                        .symlink_target
                        .map(|t| format!(" -> {t}"))
                        .unwrap_or_default();
                    println!(
                        "{:7} {:>12} {p}{target} {}",
                        e.kind.as_str(),
                        m.size,
                        streams.join(",")
                    );
                }
                Err(err) => println!("error   {p}: {err}"),
            }
            if e.kind == FileKind::Dir && depth < 64 {
                stack.push((e.id, p, depth + 1));
            }
        }
    }
    Ok(())
}
