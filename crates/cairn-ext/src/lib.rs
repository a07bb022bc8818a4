//! # cairn-ext
//!
//! A read-only ext2/ext3/ext4 reader over any [`cairn_io::ReadAt`] (a partition of a
//! virtual disk), implementing [`cairn_vfs::FileSystem`].
//!
//! It reads the superblock (32/64-bit, 1-64 KiB blocks, meta_bg), group descriptors,
//! inodes (128 bytes and larger, nanosecond times), extent trees (depth up to
//! [`MAX_EXTENT_DEPTH`], unwritten extents read as zeros), direct/indirect block maps,
//! inline data, linear and htree directories, fast and slow symlinks, xattrs (in-inode,
//! external block, EA inodes), metadata_csum checksums, the journal superblock (a journal
//! that needs recovery is reported in `VolumeInfo::warnings`) and the block bitmaps.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_ext::{Error, ExtFs, ExtOptions};
//!
//! // A volume of zeros has no ext superblock.
//! let zeros: Arc<dyn cairn_io::ReadAt> = Arc::new(vec![0u8; 4096]);
//! match ExtFs::open(zeros, &ExtOptions::default()) {
//!     Err(Error::NotExt { found }) => assert_eq!(found, 0),
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! Reading a real volume:
//!
//! ```no_run
//! use std::sync::Arc;
//! use cairn_ext::{ExtFs, ExtOptions};
//! use cairn_vfs::FileSystem;
//!
//! let vol = Arc::new(cairn_io::FileReader::open("ext4.img")?);
//! let fs = ExtFs::open(vol, &ExtOptions::default())?;
//! let node = fs.lookup("/etc/hostname")?;
//! let data = fs.open(node, None)?;
//! let mut buf = vec![0u8; data.size() as usize];
//! data.read_exact_at(&mut buf, 0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod bitmap;
mod csum;
mod dir;
mod error;
mod file;
mod fs;
mod inode;
mod map;
mod sb;
mod xattr;

pub use error::{Error, Result};
pub use fs::{ExtFs, ExtOptions, ROOT_INO};
pub use xattr::{decode_posix_acl, encode_posix_acl, AclEntry};

/// Deepest extent tree the format allows (`EXT4_MAX_EXTENT_DEPTH`); deeper is corruption.
pub const MAX_EXTENT_DEPTH: u32 = 5;
