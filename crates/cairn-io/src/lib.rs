//! # cairn-io
//!
//! The spine every Cairn layer consumes and exposes: a positional, shared-reference read
//! trait ([`ReadAt`]), bounds-checked sub-range views ([`Slice`]), a `Read + Seek` adapter
//! ([`Cursor`]), ordered allocation maps ([`AllocationMap`]), the contract a disk-image layer
//! fulfils ([`DiskLayer`]) and the caps every parser checks untrusted numbers against
//! ([`Limits`]).
//!
//! Positional reads take `&self`, so many threads read one image, partition or file at once
//! without locks or seeks.
//!
//! ```
//! use cairn_io::{ReadAt, Slice};
//!
//! let disk: Vec<u8> = (0..=255u8).collect();
//! let part = Slice::new(&disk, 16, 32).unwrap();
//! let mut buf = [0u8; 4];
//! part.read_exact_at(&mut buf, 0).unwrap();
//! assert_eq!(buf, [16, 17, 18, 19]);
//! assert_eq!(part.size(), 32);
//! ```
#![forbid(unsafe_code)]

mod alloc;
mod cursor;
pub mod direct;
mod error;
mod layer;
pub mod le;
mod limits;
mod positional;
mod read_at;
mod slice;

pub use alloc::{AllocationMap, RangeKind, Run};
pub use cursor::Cursor;
pub use error::{Error, Result};
pub use layer::{DiskIdentity, DiskLayer, ParentExpectation, ParentLink};
pub use limits::Limits;
pub use positional::{read_exact_at, write_all_at};
pub use read_at::{FileReader, ReadAt};
pub use slice::Slice;
