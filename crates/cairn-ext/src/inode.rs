//! Inodes: raw bytes -> typed fields, with checksum.

use cairn_io::le::{u16_le, u32_le};
use cairn_vfs::{FileKind, Timestamp};

use crate::csum::crc32c_raw;

pub(crate) const S_IFMT: u16 = 0xF000;
pub(crate) const S_IFREG: u16 = 0x8000;
pub(crate) const S_IFDIR: u16 = 0x4000;
pub(crate) const S_IFLNK: u16 = 0xA000;

pub(crate) const FL_ENCRYPT: u32 = 0x800;
pub(crate) const FL_INDEX: u32 = 0x1000;
pub(crate) const FL_HUGE_FILE: u32 = 0x4_0000;
pub(crate) const FL_EXTENTS: u32 = 0x8_0000;
pub(crate) const FL_INLINE_DATA: u32 = 0x1000_0000;

/// Size of `i_block`: 15 block pointers, or the extent root, or inline data / a fast
/// symlink target.
pub(crate) const I_BLOCK_LEN: usize = 60;
/// Good-old inode size: the fields every ext inode has.
pub(crate) const GOOD_OLD_INODE_SIZE: usize = 128;

/// A decoded inode. `raw` keeps the whole on-disk inode for the in-inode xattr area.
#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub ino: u64,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u16,
    /// `i_blocks` in 512-byte units (huge_file scaling applied).
    pub blocks_512: u64,
    pub flags: u32,
    pub generation: u32,
    pub file_acl: u64,
    pub extra_isize: usize,
    pub raw: Vec<u8>,
}

impl Inode {
    /// Decodes `raw` (the full on-disk inode, `s_inode_size` bytes, at least 128).
    pub(crate) fn parse(ino: u64, raw: Vec<u8>, huge_file: bool, block_size: u32) -> Inode {
        let r = &raw;
        let flags = u32_le(r, 0x20);
        let blocks_lo = u64::from(u32_le(r, 0x1C));
        let blocks_hi = if huge_file {
            u64::from(u16_le(r, 0x74))
        } else {
            0
        };
        let mut blocks = blocks_lo | (blocks_hi << 32);
        if huge_file && flags & FL_HUGE_FILE != 0 {
            // i_blocks counts file-system blocks, not sectors.
            blocks = blocks.saturating_mul(u64::from(block_size / 512));
        }
        let extra_isize = if raw.len() > GOOD_OLD_INODE_SIZE {
            usize::from(u16_le(r, 0x80))
        } else {
            0
        };
        Inode {
            ino,
            mode: u16_le(r, 0x0),
            uid: u32::from(u16_le(r, 0x2)) | (u32::from(u16_le(r, 0x78)) << 16),
            gid: u32::from(u16_le(r, 0x18)) | (u32::from(u16_le(r, 0x7A)) << 16),
            size: u64::from(u32_le(r, 0x4)) | (u64::from(u32_le(r, 0x6C)) << 32),
            links: u16_le(r, 0x1A),
            blocks_512: blocks,
            flags,
            generation: u32_le(r, 0x64),
            file_acl: u64::from(u32_le(r, 0x68)) | (u64::from(u16_le(r, 0x76)) << 32),
            extra_isize,
            raw,
        }
    }

    pub(crate) fn kind(&self) -> FileKind {
        match self.mode & S_IFMT {
            S_IFREG => FileKind::File,
            S_IFDIR => FileKind::Dir,
            S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }

    pub(crate) fn i_block(&self) -> &[u8] {
        &self.raw[0x28..0x28 + I_BLOCK_LEN]
    }

    pub(crate) fn has_flag(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// Whether the extra field at `off` (4 bytes) lies inside `i_extra_isize`.
    fn has_extra(&self, off: usize) -> bool {
        off + 4 <= GOOD_OLD_INODE_SIZE + self.extra_isize && off + 4 <= self.raw.len()
    }

    /// A timestamp: 32-bit signed seconds at `off`, refined by the extra field at
    /// `extra_off` (2 epoch bits, 30 nanosecond bits) when the inode is large enough.
    fn time(&self, off: usize, extra_off: usize) -> Timestamp {
        let base = i64::from(u32_le(&self.raw, off).cast_signed());
        if self.has_extra(extra_off) {
            let extra = u32_le(&self.raw, extra_off);
            let epoch = i64::from(extra & 3);
            let nanos = extra >> 2;
            Timestamp {
                secs: base + (epoch << 32),
                nanos: if nanos < 1_000_000_000 { nanos } else { 0 },
            }
        } else {
            Timestamp {
                secs: base,
                nanos: 0,
            }
        }
    }

    pub(crate) fn atime(&self) -> Timestamp {
        self.time(0x8, 0x8C)
    }
    pub(crate) fn ctime(&self) -> Timestamp {
        self.time(0xC, 0x84)
    }
    pub(crate) fn mtime(&self) -> Timestamp {
        self.time(0x10, 0x88)
    }
    pub(crate) fn crtime(&self) -> Option<Timestamp> {
        self.has_extra(0x90).then(|| self.time(0x90, 0x94))
    }

    /// Per-inode checksum seed (metadata_csum): crc of the inode number and generation.
    pub(crate) fn csum_seed(fs_seed: u32, ino: u64, generation: u32) -> u32 {
        let ino32 = u32::try_from(ino).unwrap_or(u32::MAX);
        let c = crc32c_raw(fs_seed, &ino32.to_le_bytes());
        crc32c_raw(c, &generation.to_le_bytes())
    }

    /// (stored, computed) inode checksum; 16 bits when the inode has no `i_checksum_hi`.
    pub(crate) fn checksum(&self, fs_seed: u32) -> (u32, u32) {
        let r = &self.raw;
        let has_hi = r.len() > GOOD_OLD_INODE_SIZE && self.extra_isize >= 4;
        let mut c = Inode::csum_seed(fs_seed, self.ino, self.generation);
        c = crc32c_raw(c, &r[..0x7C]);
        c = crc32c_raw(c, &[0, 0]);
        c = crc32c_raw(c, &r[0x7E..GOOD_OLD_INODE_SIZE.min(r.len())]);
        if r.len() > GOOD_OLD_INODE_SIZE {
            c = crc32c_raw(c, &r[0x80..0x82]);
            if has_hi {
                c = crc32c_raw(c, &[0, 0]);
                c = crc32c_raw(c, &r[0x84..]);
            } else {
                c = crc32c_raw(c, &r[0x82..]);
            }
        }
        let lo = u32::from(u16_le(r, 0x7C));
        if has_hi {
            (lo | (u32::from(u16_le(r, 0x82)) << 16), c)
        } else {
            (lo, c & 0xFFFF)
        }
    }
}
