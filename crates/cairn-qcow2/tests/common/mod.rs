//! Shared helpers: external tools, fixture data, a raw parent layer (all from cairn-testkit).
#![allow(dead_code, unused_imports)]

use std::path::Path;

use cairn_io::{AllocationMap, ReadAt};

pub use cairn_testkit::{
    check_odd_reads, have, path_str as s, qemu_img, qemu_img_convert, qemu_img_create,
    qemu_img_overlay, qemu_io, qemu_raw, random_bytes, run, sample_disk, tempdir_if_have, RawLayer,
};

/// Reads all of `img` in 1 MiB requests.
pub fn read_all(img: &dyn ReadAt) -> Vec<u8> {
    cairn_testkit::read_all(img, 1 << 20)
}

/// `qemu-img map` of the image alone (see [`cairn_testkit::qemu_map`]).
pub fn qemu_map(path: &Path, size: u64) -> AllocationMap {
    cairn_testkit::qemu_map(path, None, size)
}
