//! Read shape: contiguous grains coalesce into one positional read; a compressed grain is
//! inflated once however it is read.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_io::{Limits, ReadAt};
use cairn_vmdk::VmdkImage;
use common::*;

struct Counting {
    inner: Vec<u8>,
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl ReadAt for Counting {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_at(buf, offset)
    }
}

fn image(stream: bool) -> (Arc<Counting>, VmdkImage, Vec<u8>) {
    let src = noise(5, 8 << 20);
    let c = Arc::new(Counting {
        inner: written_vmdk(&src, stream),
        reads: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    });
    let img = VmdkImage::from_reader(c.clone(), &Limits::default()).unwrap();
    (c, img, src)
}

#[test]
fn sequential_megabyte_reads_coalesce() {
    let (c, img, src) = image(false);
    let before = c.reads.load(Ordering::Relaxed);
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..8usize {
        img.read_exact_at(&mut buf, (i as u64) << 20).unwrap();
        assert!(buf[..] == src[i << 20..(i + 1) << 20]);
    }
    // One grain-table slice and one data read per request.
    assert_eq!(c.reads.load(Ordering::Relaxed) - before, 16);
}

#[test]
fn stream_grains_inflate_once() {
    let (c, img, src) = image(true);
    let before = c.bytes.load(Ordering::Relaxed);
    // 4 KiB steps over the first grain: the compressed grain is read once.
    let mut buf = vec![0u8; 4096];
    for i in 0..16usize {
        img.read_exact_at(&mut buf, (i * 4096) as u64).unwrap();
        assert!(buf[..] == src[i * 4096..(i + 1) * 4096]);
    }
    let read = c.bytes.load(Ordering::Relaxed) - before;
    // 16 table slices of 4 bytes + one marker + one compressed grain (< 66 KiB of noise).
    assert!(read < 65_536 + 2048, "{read}");
}
