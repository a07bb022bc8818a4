use std::path::Path;
use std::sync::Arc;

use cairn_io::{AllocationMap, DiskIdentity, DiskLayer, FileReader, ParentLink, RangeKind, ReadAt};

/// A raw image: the file is the disk.
#[derive(Debug)]
pub struct RawImage {
    file: FileReader,
}

impl RawImage {
    /// Opens a raw image file.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(RawImage {
            file: FileReader::open(path)?,
        })
    }
}

impl ReadAt for RawImage {
    fn size(&self) -> u64 {
        self.file.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

impl DiskLayer for RawImage {
    fn format(&self) -> &'static str {
        "raw"
    }
    fn subformat(&self) -> String {
        "raw".into()
    }
    fn identity(&self) -> DiskIdentity {
        DiskIdentity::default()
    }
    fn parent_link(&self) -> Option<ParentLink> {
        None
    }
    fn attach_parent(
        &mut self,
        _parent: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("a raw image has no parent".into())
    }
    /// Every byte of a raw file is data as far as the format says; zero runs are found by
    /// content where it matters (backup and conversion skip all-zero blocks).
    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AllocationMap::uniform(self.size(), RangeKind::Data))
    }
}
