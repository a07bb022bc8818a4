//! Prints what a VHD says about itself and its allocation, then reads it (optionally into a
//! raw file) and reports the speed.
//!
//! `cargo run --release -p cairn-vhd --example vhd_info -- disk.vhd [--parent p.vhd]
//! [--limit BYTES] [--dump out.raw]`

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhd::VhdImage;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), AnyError> {
    let mut args = std::env::args().skip(1);
    let (mut path, mut parent, mut limit, mut dump) = (None, None, u64::MAX, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--parent" => parent = args.next(),
            "--limit" => limit = args.next().ok_or("--limit needs a value")?.parse()?,
            "--dump" => dump = args.next(),
            _ => path = Some(a),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: vhd_info <disk.vhd> [--parent p.vhd] [--limit BYTES] [--dump out.raw]");
        std::process::exit(2);
    };
    let limits = Limits::default();
    let mut image = VhdImage::open(Path::new(&path), &limits)?;
    if let Some(parent) = parent {
        image.attach_parent(Arc::new(VhdImage::open(Path::new(&parent), &limits)?))?;
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
        println!("parent        {link:?}");
    }
    let map = image.layer_map()?;
    println!(
        "data          {} bytes in {} runs",
        map.bytes_of(RangeKind::Data),
        map.ranges_of(RangeKind::Data).count()
    );
    let mut out = match &dump {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    let end = image.size().min(limit);
    while offset < end {
        let want = usize::try_from((end - offset).min(buf.len() as u64))?;
        let n = image.read_at(&mut buf[..want], offset)?;
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n])?;
        }
        offset += n as u64;
    }
    if let Some(mut o) = out {
        o.flush()?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read          {offset} bytes in {secs:.3} s ({:.0} MiB/s)",
        offset as f64 / secs.max(1e-9) / 1048576.0
    );
    Ok(())
}
