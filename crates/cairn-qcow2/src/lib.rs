//! # cairn-qcow2
//!
//! A read-only reader of qcow2 images (versions 2 and 3), as written by qemu: standard,
//! zero and compressed clusters (zlib/deflate, and zstd through the pure-Rust `ruzstd`),
//! backing files (read through an attached parent layer), and persistent dirty bitmaps
//! (the change map of an incremental backup).
//!
//! Refused with a typed [`Error`]: encryption, external data files, unknown compression
//! types, extended L2 entries and unknown incompatible features. A dirty or corrupt-marked image is
//! read as-is with a warning ([`Qcow2Image::is_dirty`]). Internal snapshots are ignored (the
//! active L1 table is read).
//!
//! ```
//! use std::sync::Arc;
//! use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
//! use cairn_qcow2::Qcow2Image;
//!
//! // A hand-made v2 image: 512-byte clusters, 1 KiB disk; L1 at 512, L2 at 1024, the first
//! // guest cluster stored at 1536.
//! let mut f = vec![0u8; 2048];
//! f[0..4].copy_from_slice(b"QFI\xfb");
//! f[4..8].copy_from_slice(&2u32.to_be_bytes()); // version
//! f[20..24].copy_from_slice(&9u32.to_be_bytes()); // cluster_bits
//! f[24..32].copy_from_slice(&1024u64.to_be_bytes()); // virtual size
//! f[36..40].copy_from_slice(&1u32.to_be_bytes()); // l1_size
//! f[40..48].copy_from_slice(&512u64.to_be_bytes()); // l1_table_offset
//! f[512..520].copy_from_slice(&1024u64.to_be_bytes()); // L1[0] -> L2
//! f[1024..1032].copy_from_slice(&1536u64.to_be_bytes()); // L2[0] -> data
//! f[1536..2048].fill(0xab);
//!
//! let img = Qcow2Image::from_reader(Arc::new(f), &Limits::default()).unwrap();
//! let mut buf = [0u8; 1024];
//! img.read_exact_at(&mut buf, 0).unwrap();
//! assert!(buf[..512].iter().all(|&b| b == 0xab));
//! assert!(buf[512..].iter().all(|&b| b == 0)); // unallocated, no parent
//! let map = img.layer_map().unwrap();
//! assert_eq!(map.bytes_of(RangeKind::Data), 512);
//! assert_eq!(img.subformat(), "v2");
//! ```
#![forbid(unsafe_code)]

mod bitmap;
mod error;
mod header;
mod image;

pub use bitmap::DirtyBitmap;
pub use error::{Error, Result};
pub use image::Qcow2Image;
