//! Prints what a VHD says about itself, its allocation, and how fast it reads.
//!
//! `cargo run --release -p cairn-vhd --example vhd_info -- disk.vhd [parent.vhd]`

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhd::VhdImage;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: vhd_info <disk.vhd> [parent.vhd]");
        std::process::exit(2);
    };
    let limits = Limits::default();
    let mut image = VhdImage::open(Path::new(path), &limits)?;
    if let Some(parent) = args.get(1) {
        image.attach_parent(Arc::new(VhdImage::open(Path::new(parent), &limits)?))?;
    }
    let f = image.footer();
    println!("subformat     {}", image.subformat());
    println!("virtual size  {}", image.size());
    println!(
        "geometry      {:?} ({} bytes)",
        f.geometry,
        f.geometry.size()
    );
    println!(
        "creator       {:?} on {:?}",
        String::from_utf8_lossy(&f.creator_app),
        String::from_utf8_lossy(&f.creator_os)
    );
    println!("footer from   {:?}", image.footer_source());
    if let Some(h) = image.dynamic_header() {
        println!("block size    {}", h.block_size);
    }
    if let Some(link) = image.parent_link() {
        println!("parent        {:?}", link);
    }
    let map = image.layer_map()?;
    println!(
        "data          {} bytes in {} runs",
        map.bytes_of(RangeKind::Data),
        map.ranges_of(RangeKind::Data).count()
    );
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    let mut nonzero = 0u64;
    while offset < image.size() {
        let n = image.read_at(&mut buf, offset)?;
        if buf[..n].iter().any(|&b| b != 0) {
            nonzero += 1;
        }
        offset += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read          {offset} bytes in {secs:.3} s ({:.0} MiB/s), {nonzero} non-zero MiB requests",
        offset as f64 / secs.max(1e-9) / 1048576.0
    );
    Ok(())
}
