//! Measures the read-bandwidth throttle (`read_mb_per_s` in a policy): backs up a generated
//! image (256 MiB by default) into a memory repository, reads throttled at N MB/s, and
//! prints the achieved read rate.
//!
//! ```text
//! cargo run --release -p cairn-engine --example throttle -- 50        # 50 MB/s
//! cargo run --release -p cairn-engine --example throttle -- 50 64     # 64 MiB image
//! ```
use std::sync::Arc;
use std::time::Instant;

use cairn_engine::{backup, throttle_source, BackupOptions, DiskSource};
use cairn_io::{AllocationMap, DiskIdentity, RangeKind, ReadAt};
use cairn_repo::{InitOptions, MemoryBackend, Repository};

fn main() {
    let mut args = std::env::args().skip(1);
    let mb_per_s: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let size = mib << 20;
    // Distinct 4 KiB blocks so nothing dedups away and every chunk is read and stored.
    let image: Vec<u8> = (0..size)
        .map(|i| {
            let block = i / 4096;
            (block ^ (block >> 8) ^ i).to_le_bytes()[0]
        })
        .collect();
    let repo = Repository::init(
        Arc::new(MemoryBackend::new()),
        &InitOptions::default(),
        None,
    )
    .unwrap();
    let reader: Arc<dyn ReadAt> = Arc::new(image);
    let mut disk = DiskSource {
        label: "generated".into(),
        map: AllocationMap::uniform(size, RangeKind::Data),
        reader,
        identity: DiskIdentity::default(),
        chain_ids: vec![],
        changed: None,
    };
    throttle_source(&mut disk, mb_per_s);
    let start = Instant::now();
    let report = backup(&repo, "throttle", &[disk], &BackupOptions::default()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let rate = report.bytes_read as f64 / secs / 1e6;
    println!(
        "cap {mb_per_s} MB/s: read {} bytes in {secs:.2} s = {rate:.1} MB/s ({:.0}% of the cap)",
        report.bytes_read,
        rate / f64::from(mb_per_s) * 100.0
    );
}
