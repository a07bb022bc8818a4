//! Shared helpers: external tools, fixture data, a raw parent layer.
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::sync::Arc;

use cairn_io::{AllocationMap, DiskIdentity, DiskLayer, FileReader, ParentLink, RangeKind, ReadAt};

pub use cairn_testkit::{
    check_odd_reads, have, qemu_img, qemu_img_convert, qemu_img_create, qemu_img_overlay, qemu_io,
    qemu_raw, random_bytes, run, sample_disk,
};

/// Reads all of `img` in 1 MiB requests.
pub fn read_all(img: &dyn ReadAt) -> Vec<u8> {
    cairn_testkit::read_all(img, 1 << 20)
}

/// `qemu-img map` of the image alone (see [`cairn_testkit::qemu_map`]).
pub fn qemu_map(path: &Path, size: u64) -> AllocationMap {
    cairn_testkit::qemu_map(path, None, size)
}

/// A raw file as a layer (the lead's vdisk has its own; this one is for chain tests).
#[derive(Debug)]
pub struct RawLayer(pub FileReader);

impl RawLayer {
    pub fn open(p: &Path) -> Arc<dyn DiskLayer> {
        Arc::new(RawLayer(FileReader::open(p).unwrap()))
    }
}

impl ReadAt for RawLayer {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

impl DiskLayer for RawLayer {
    fn format(&self) -> &'static str {
        "raw"
    }
    fn subformat(&self) -> String {
        String::new()
    }
    fn identity(&self) -> DiskIdentity {
        DiskIdentity::default()
    }
    fn parent_link(&self) -> Option<ParentLink> {
        None
    }
    fn attach_parent(
        &mut self,
        _: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("raw has no parent".into())
    }
    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AllocationMap::uniform(self.size(), RangeKind::Data))
    }
}
