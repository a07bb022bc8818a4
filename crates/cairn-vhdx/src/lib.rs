//! # cairn-vhdx
//!
//! A read-only reader of VHDX images (Hyper-V's format, MS-VHDX 1.0): fixed, dynamic and
//! differencing disks, 512- and 4096-byte logical sectors, all payload block states and
//! the per-sector bitmaps of differencing disks.
//!
//! * The header copy used is the valid one (signature, CRC-32C) with the higher sequence
//!   number; the region table copy used is the first valid one. Unknown regions or metadata
//!   items marked required are refused ([`Error::UnknownRequired`]).
//! * An active log (header `LogGuid` set) is **replayed in memory**: the active sequence is
//!   found as qemu finds it and its data and zero descriptors become an overlay over the
//!   file, which is never written. A log that cannot be replayed gives [`Error::DirtyLog`].
//! * [`DiskLayer::identity`](cairn_io::DiskLayer::identity): `uuid` = the virtual disk id
//!   (page 83 data), `content_id` = the header's `DataWriteGuid` (lower-case, hyphenated).
//!   A differencing disk's [`ParentLink`](cairn_io::ParentLink) lists `relative_path`,
//!   `volume_path`, `absolute_win32_path` and expects the parent's content id to equal
//!   `parent_linkage`.
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
//! use cairn_vhdx::{Error, VhdxImage};
//!
//! // Anything that is not VHDX is refused with a typed error.
//! let not_vhdx = Arc::new(vec![0u8; 1 << 20]);
//! assert!(matches!(
//!     VhdxImage::from_reader(not_vhdx, &Limits::default()),
//!     Err(Error::BadSignature { .. })
//! ));
//!
//! // Typical use: open, look at the layer, read the allocated ranges.
//! if let Ok(img) = VhdxImage::open(Path::new("disk.vhdx"), &Limits::default()) {
//!     println!("{} {} bytes, {:?}", img.subformat(), img.size(), img.identity());
//!     let mut buf = vec![0u8; 1 << 20];
//!     for run in img.layer_map().unwrap().ranges_of(RangeKind::Data) {
//!         let n = run.len.min(buf.len() as u64) as usize;
//!         img.read_exact_at(&mut buf[..n], run.offset).unwrap();
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

mod error;
mod format;
mod guid;
mod image;
mod log;

pub use error::{Error, Result};
pub use guid::Guid;
pub use image::VhdxImage;
