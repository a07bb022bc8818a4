//! # cairn-ntfs
//!
//! A read-only NTFS reader (all on-disk numbers little-endian) on top of
//! [`cairn_io::ReadAt`], implementing [`cairn_vfs::FileSystem`].
//!
//! It validates the boot sector, follows the (possibly fragmented) $MFT, applies
//! update-sequence fixups, walks attributes with bounds, joins attribute-list fragments from
//! extension records, walks $I30 B-trees (INDX records, visited set), reads resident,
//! non-resident, sparse and LZNT1-compressed streams and named streams (ADS), decodes
//! reparse points (symlinks, junctions, WSL links), fetches security descriptors from
//! $Secure ($SII/$SDS) or $SECURITY_DESCRIPTOR, maps $Bitmap to a used-cluster map, and
//! resolves paths case-insensitively through $UpCase.
//!
//! Node ids are MFT references: record number in the low 48 bits, sequence number in the
//! high 16 (a sequence of 0 means "do not check"). The root is record 5. Directory listings
//! include the metadata files ($MFT, $Bitmap, ... in the root) since they are real entries;
//! the root's own `.` entry and DOS short names of files that also have a long name are
//! left out.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_ntfs::{Error, NtfsFs, NtfsOptions};
//!
//! // Not an NTFS volume: a typed error names the boot-sector field.
//! let blank: Arc<dyn cairn_io::ReadAt> = Arc::new(vec![0u8; 4096]);
//! let err = NtfsFs::open(blank, &NtfsOptions::default()).unwrap_err();
//! assert!(matches!(err, Error::BadMagic { .. }));
//! ```
//!
//! Walking a volume:
//!
//! ```no_run
//! use std::sync::Arc;
//! use cairn_io::FileReader;
//! use cairn_ntfs::{NtfsFs, NtfsOptions};
//! use cairn_vfs::{FileKind, FileSystem};
//!
//! let fs = NtfsFs::open(Arc::new(FileReader::open("ntfs.img")?), &NtfsOptions::default())?;
//! for e in fs.read_dir(fs.root())? {
//!     let m = fs.metadata(e.id)?;
//!     println!("{} {:?} {} bytes", e.name, e.kind, m.size);
//! }
//! let file = fs.open(fs.lookup("/Hello.TXT")?, None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod boot;
mod error;
mod fs;
mod index;
mod lznt1;
mod record;
mod runs;
mod security;
mod stream;

pub use error::{Error, Result};
pub use fs::{NtfsFs, NtfsOptions, ReparsePoint};
pub use security::{decode_security_descriptor, decode_sid, Ace, SecurityDescriptor};
