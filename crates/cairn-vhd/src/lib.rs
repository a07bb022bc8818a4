//! # cairn-vhd
//!
//! Reads and writes VHD images (Virtual PC / Hyper-V, qemu's `vpc`): fixed, dynamic and
//! differencing disks. All on-disk numbers are big-endian.
//!
//! * [`VhdImage`] opens an image from a path or any [`ReadAt`](cairn_io::ReadAt) and
//!   implements [`ReadAt`](cairn_io::ReadAt) (the virtual disk) and
//!   [`DiskLayer`](cairn_io::DiskLayer) (format `vhd`, subformat `fixed` / `dynamic` /
//!   `differencing`, identity = footer unique id, parent link = locators + parent unique id).
//! * [`write_fixed`], [`write_dynamic`] and [`write_differencing`] write images from a source
//!   and its [`AllocationMap`](cairn_io::AllocationMap); holes are never written.
//!
//! **Virtual size.** The size is the footer's *current size*, as libvhdi, Hyper-V and the
//! specification use it. qemu instead takes the CHS geometry for images whose creator is
//! `vpc ` or `qemu`; for those qemu's own writer rounds the size up to the geometry, so the
//! two agree on qemu-made images, but Virtual PC images can differ by a few MiB and we prefer
//! the footer's explicit number to a rounded one.
//!
//! **Footer copy.** The footer at the end of the file (512 bytes, or the 511-byte variant of
//! old Virtual PC versions) is authoritative. When it is missing or its checksum fails, a
//! dynamic or differencing disk is opened with the copy at offset 0 if that one is valid;
//! [`VhdImage::footer_source`] tells which was used.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_io::{AllocationMap, DiskLayer, Limits, RangeKind, ReadAt};
//! use cairn_vhd::{write_dynamic, DynamicOptions, VhdImage};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut disk = vec![0u8; 4 << 20];
//! disk[3 << 20..(3 << 20) + 4096].fill(0xab);
//! let mut map = AllocationMap::new(disk.len() as u64);
//! map.push(3 << 20, 4096, RangeKind::Data).unwrap();
//! let map = map.finish();
//!
//! let path = dir.path().join("disk.vhd");
//! write_dynamic(&disk, &map, &path, &DynamicOptions::default()).unwrap();
//!
//! let image = VhdImage::open(&path, &Limits::default()).unwrap();
//! assert_eq!(image.subformat(), "dynamic");
//! assert_eq!(image.size(), 4 << 20);
//! let mut buf = vec![0u8; 8192];
//! image.read_exact_at(&mut buf, (3 << 20) - 4096).unwrap();
//! assert_eq!(&buf[..4096], &[0u8; 4096][..]);
//! assert_eq!(&buf[4096..], &[0xabu8; 4096][..]);
//! // One 2 MiB block is allocated: the second half of the disk.
//! assert_eq!(image.layer_map().unwrap().bytes_of(RangeKind::Data), 2 << 20);
//! # let _ = Arc::new(image);
//! ```
#![forbid(unsafe_code)]

mod error;
pub mod footer;
pub mod header;
mod image;
mod write;

pub use error::Error;
pub use footer::{DiskType, Footer, Geometry};
pub use header::{DynamicHeader, LocatorEntry, PlatformCode};
pub use image::{FooterSource, VhdImage, MAX_LOCATOR_BYTES};
pub use write::{
    write_differencing, write_dynamic, write_fixed, DifferencingOptions, DynamicOptions,
    FixedOptions, VhdParent, CREATOR_APP, DEFAULT_BLOCK_SIZE, MAX_VHD_SIZE, MAX_WRITE_BLOCK_SIZE,
};
