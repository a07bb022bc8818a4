//! # cairn-vmdk
//!
//! Reads VMware VMDK virtual disks: hosted sparse extents (`KDMV`: monolithicSparse,
//! twoGbMaxExtentSparse, streamOptimized with compressed grains), flat extents
//! (monolithicFlat, twoGbMaxExtentFlat, ESXi `vmfs`), `ZERO` extents, ESXi snapshot extents
//! (`COWD` vmfsSparse and seSparse) and delta links (`parentCID` + `parentFileNameHint`).
//! Writes monolithicSparse and streamOptimized images from a source and its allocation map.
//!
//! Every number read from a file is checked against [`cairn_io::Limits`] or a named constant
//! before it sizes an allocation or a loop.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_io::{AllocationMap, DiskLayer, Limits, RangeKind, ReadAt};
//! use cairn_vmdk::{write_monolithic_sparse, VmdkImage, WriteOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("disk.vmdk");
//! let mut src = vec![0u8; 1 << 20];
//! src[70_000..70_010].copy_from_slice(b"cairn-vmdk");
//! let mut map = AllocationMap::new(src.len() as u64);
//! map.push(65_536, 65_536, RangeKind::Data).unwrap();
//! write_monolithic_sparse(&src, &map.finish(), &out, &WriteOptions::default()).unwrap();
//!
//! let img = VmdkImage::open(&out, &Limits::default()).unwrap();
//! assert_eq!(img.subformat(), "monolithicSparse");
//! let mut buf = [0u8; 10];
//! img.read_exact_at(&mut buf, 70_000).unwrap();
//! assert_eq!(&buf, b"cairn-vmdk");
//! assert_eq!(img.layer_map().unwrap().bytes_of(RangeKind::Data), 65_536);
//! ```
#![forbid(unsafe_code)]

pub mod descriptor;
mod error;
pub mod header;
mod image;
mod sparse;
mod write;

pub use descriptor::{Access, Descriptor, ExtentLine, ExtentType};
pub use error::{Error, Result};
pub use image::VmdkImage;
pub use write::{write_monolithic_sparse, write_stream_optimized, AdapterType, WriteOptions};
