//! Superblock and group descriptors: raw bytes -> validated structures.

use cairn_io::le::{u16_le, u32_le};
use cairn_io::{Limits, ReadAt};

use crate::csum::crc32c_raw;
use crate::{Error, Result};

/// Byte offset of the primary superblock in the volume.
pub(crate) const SB_OFFSET: u64 = 1024;
/// Size of the superblock structure.
pub(crate) const SB_SIZE: usize = 1024;
const EXT_MAGIC: u16 = 0xEF53;
/// Largest `s_log_block_size`: 1 KiB << 6 = 64 KiB, the format's largest block.
const MAX_LOG_BLOCK_SIZE: u32 = 6;
/// Largest group descriptor (`EXT4_MAX_DESC_SIZE`): one 1 KiB block.
const MAX_DESC_SIZE: u32 = 1024;

pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub(crate) const COMPAT_SPARSE_SUPER2: u32 = 0x200;

pub(crate) const INCOMPAT_COMPRESSION: u32 = 0x1;
pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
pub(crate) const INCOMPAT_RECOVER: u32 = 0x4;
pub(crate) const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
pub(crate) const INCOMPAT_META_BG: u32 = 0x10;
pub(crate) const INCOMPAT_EXTENTS: u32 = 0x40;
pub(crate) const INCOMPAT_64BIT: u32 = 0x80;
pub(crate) const INCOMPAT_MMP: u32 = 0x100;
pub(crate) const INCOMPAT_FLEX_BG: u32 = 0x200;
pub(crate) const INCOMPAT_EA_INODE: u32 = 0x400;
pub(crate) const INCOMPAT_DIRDATA: u32 = 0x1000;
pub(crate) const INCOMPAT_CSUM_SEED: u32 = 0x2000;
pub(crate) const INCOMPAT_LARGEDIR: u32 = 0x4000;
pub(crate) const INCOMPAT_INLINE_DATA: u32 = 0x8000;
pub(crate) const INCOMPAT_ENCRYPT: u32 = 0x10000;
pub(crate) const INCOMPAT_CASEFOLD: u32 = 0x20000;

/// INCOMPAT bits this reader understands.
const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;

pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub(crate) const RO_COMPAT_HUGE_FILE: u32 = 0x8;
pub(crate) const RO_COMPAT_GDT_CSUM: u32 = 0x10;
pub(crate) const RO_COMPAT_BIGALLOC: u32 = 0x200;
pub(crate) const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// RO_COMPAT bits that change how blocks are read or counted and that this reader does
/// not implement (a read-only reader can ignore the other RO_COMPAT bits safely).
/// bigalloc: bitmaps count clusters, not blocks.
const RO_COMPAT_REFUSED: u32 = RO_COMPAT_BIGALLOC;

pub(crate) const BG_BLOCK_UNINIT: u16 = 0x2;

fn incompat_names(bits: u32) -> String {
    let names = [
        (INCOMPAT_COMPRESSION, "compression"),
        (INCOMPAT_JOURNAL_DEV, "journal_dev"),
        (0x20, "unknown_0x20"),
        (0x800, "unknown_0x800"),
        (INCOMPAT_DIRDATA, "dirdata"),
    ];
    let mut out: Vec<String> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| (*n).to_string())
        .collect();
    let known: u32 = names.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    if bits & !known != 0 {
        out.push(format!("unknown {:#x}", bits & !known));
    }
    out.join(", ")
}

/// The validated superblock fields this reader uses.
#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub free_blocks: u64,
    pub first_data_block: u32,
    pub block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub state: u16,
    pub inode_size: u32,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub uuid: [u8; 16],
    pub label: [u8; 16],
    pub reserved_gdt_blocks: u32,
    pub journal_inum: u32,
    pub journal_dev: u32,
    pub desc_size: u32,
    pub first_meta_bg: u32,
    pub backup_bgs: [u32; 2],
    pub checksum_seed: u32,
    pub group_count: u32,
    /// Stored superblock checksum and the computed one (metadata_csum only).
    pub checksum: Option<(u32, u32)>,
}

fn bad(field: &'static str, value: u64, reason: &'static str) -> Error {
    Error::BadSuperblock {
        field,
        value,
        reason,
    }
}

impl Superblock {
    /// Parses and validates the superblock of a volume of `volume_size` bytes.
    pub(crate) fn parse(b: &[u8], volume_size: u64, limits: &Limits) -> Result<Superblock> {
        let magic = u16_le(b, 0x38);
        if magic != EXT_MAGIC {
            return Err(Error::NotExt { found: magic });
        }
        let incompat = u32_le(b, 0x60);
        let ro_compat = u32_le(b, 0x64);
        let compat = u32_le(b, 0x5C);
        let unsupported = incompat & !INCOMPAT_SUPPORTED;
        if unsupported != 0 {
            return Err(Error::UnsupportedFeature {
                kind: "incompat",
                bits: unsupported,
                names: incompat_names(unsupported),
            });
        }
        if ro_compat & RO_COMPAT_REFUSED != 0 {
            return Err(Error::UnsupportedFeature {
                kind: "ro_compat",
                bits: ro_compat & RO_COMPAT_REFUSED,
                names: "bigalloc".into(),
            });
        }
        let log_bs = u32_le(b, 0x18);
        if log_bs > MAX_LOG_BLOCK_SIZE {
            return Err(bad(
                "s_log_block_size",
                log_bs.into(),
                "block size above 64 KiB (log above 6)",
            ));
        }
        let block_size = 1024u32 << log_bs;
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let hi = |off: usize| {
            if is64 {
                u64::from(u32_le(b, off)) << 32
            } else {
                0
            }
        };
        let blocks_count = u64::from(u32_le(b, 0x4)) | hi(0x150);
        let free_blocks = u64::from(u32_le(b, 0xC)) | hi(0x158);
        let first_data_block = u32_le(b, 0x14);
        let blocks_per_group = u32_le(b, 0x20);
        let inodes_per_group = u32_le(b, 0x28);
        let inodes_count = u32_le(b, 0x0);
        let rev_level = u32_le(b, 0x4C);
        let bits_per_block = block_size * 8;

        if blocks_count == 0 {
            return Err(bad("s_blocks_count", 0, "must be at least 1"));
        }
        if first_data_block > 1 || u64::from(first_data_block) >= blocks_count {
            return Err(bad(
                "s_first_data_block",
                first_data_block.into(),
                "must be 0 or 1 and below s_blocks_count",
            ));
        }
        if blocks_per_group == 0 || blocks_per_group > bits_per_block {
            return Err(bad(
                "s_blocks_per_group",
                blocks_per_group.into(),
                "must be 1..=8*block_size (one bitmap block)",
            ));
        }
        if inodes_per_group == 0 || inodes_per_group > bits_per_block {
            return Err(bad(
                "s_inodes_per_group",
                inodes_per_group.into(),
                "must be 1..=8*block_size (one bitmap block)",
            ));
        }
        if rev_level > 1 {
            return Err(bad("s_rev_level", rev_level.into(), "must be 0 or 1"));
        }
        let (inode_size, first_ino) = if rev_level == 0 {
            (128, 11)
        } else {
            (u32::from(u16_le(b, 0x58)), u32_le(b, 0x54))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(bad(
                "s_inode_size",
                inode_size.into(),
                "must be a power of two in 128..=block_size",
            ));
        }
        let needed = blocks_count
            .checked_mul(u64::from(block_size))
            .ok_or_else(|| bad("s_blocks_count", blocks_count, "byte size overflows"))?;
        if needed > limits.max_virtual_size {
            return Err(bad(
                "s_blocks_count",
                blocks_count,
                "file system larger than Limits::max_virtual_size",
            ));
        }
        if needed > volume_size {
            return Err(Error::VolumeTooSmall {
                needed,
                size: volume_size,
            });
        }
        let group_count_u64 =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let group_count = u32::try_from(group_count_u64)
            .map_err(|_| bad("s_blocks_count", blocks_count, "more than 2^32 groups"))?;
        if u64::from(inodes_count) > u64::from(group_count) * u64::from(inodes_per_group)
            || inodes_count < 2
        {
            return Err(bad(
                "s_inodes_count",
                inodes_count.into(),
                "must be 2..=groups*s_inodes_per_group",
            ));
        }
        if first_ino < 11 || first_ino > inodes_count {
            // Rev 1 allows any first_ino above the reserved ones; below 11 breaks the
            // reserved inode numbers (2 = root, 8 = journal).
            if rev_level != 0 {
                return Err(bad(
                    "s_first_ino",
                    first_ino.into(),
                    "must be 11..=s_inodes_count",
                ));
            }
        }
        let desc_size = if is64 {
            let d = u32::from(u16_le(b, 0xFE));
            if !(64..=MAX_DESC_SIZE).contains(&d) || !d.is_power_of_two() || d > block_size {
                return Err(bad(
                    "s_desc_size",
                    d.into(),
                    "must be a power of two in 64..=1024 with the 64bit feature",
                ));
            }
            d
        } else {
            32
        };
        let table_bytes = u64::from(group_count) * u64::from(desc_size);
        if table_bytes > limits.max_table_bytes {
            return Err(Error::LimitExceeded {
                what: "group descriptor table bytes",
                value: table_bytes,
                limit: limits.max_table_bytes,
            });
        }
        let reserved_gdt_blocks = u32::from(u16_le(b, 0xCE));
        let checksum = if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            let ty = b[0x175];
            if ty != 1 {
                return Err(bad("s_checksum_type", ty.into(), "only 1 (crc32c) exists"));
            }
            Some((u32_le(b, 0x3FC), crc32c_raw(!0, &b[..0x3FC])))
        } else {
            None
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[0x68..0x78]);
        let mut label = [0u8; 16];
        label.copy_from_slice(&b[0x78..0x88]);
        Ok(Superblock {
            inodes_count,
            blocks_count,
            free_blocks,
            first_data_block,
            block_size,
            blocks_per_group,
            inodes_per_group,
            state: u16_le(b, 0x3A),
            inode_size,
            compat,
            incompat,
            ro_compat,
            uuid,
            label,
            reserved_gdt_blocks,
            journal_inum: u32_le(b, 0xE0),
            journal_dev: u32_le(b, 0xE4),
            desc_size,
            first_meta_bg: u32_le(b, 0x104),
            backup_bgs: [u32_le(b, 0x24C), u32_le(b, 0x250)],
            checksum_seed: u32_le(b, 0x270),
            group_count,
            checksum,
        })
    }

    pub(crate) fn has_incompat(&self, bit: u32) -> bool {
        self.incompat & bit != 0
    }

    pub(crate) fn has_ro_compat(&self, bit: u32) -> bool {
        self.ro_compat & bit != 0
    }

    pub(crate) fn metadata_csum(&self) -> bool {
        self.has_ro_compat(RO_COMPAT_METADATA_CSUM)
    }

    /// Seed of every metadata_csum checksum.
    pub(crate) fn csum_seed(&self) -> u32 {
        if self.has_incompat(INCOMPAT_CSUM_SEED) {
            self.checksum_seed
        } else {
            crc32c_raw(!0, &self.uuid)
        }
    }

    pub(crate) fn bs(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// Whether `group` holds a superblock backup (and so old-style GDT backups).
    pub(crate) fn has_super(&self, group: u32) -> bool {
        if group == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return group == self.backup_bgs[0] || group == self.backup_bgs[1];
        }
        if group <= 1 || !self.has_ro_compat(RO_COMPAT_SPARSE_SUPER) {
            return true;
        }
        if group & 1 == 0 {
            return false;
        }
        [3u32, 5, 7].iter().any(|&p| is_power_of(group, p))
    }

    pub(crate) fn group_first_block(&self, group: u32) -> u64 {
        u64::from(self.first_data_block) + u64::from(group) * u64::from(self.blocks_per_group)
    }

    /// Blocks in `group` (the last group may be short).
    pub(crate) fn group_blocks(&self, group: u32) -> u64 {
        let first = self.group_first_block(group);
        (self.blocks_count - first).min(u64::from(self.blocks_per_group))
    }

    pub(crate) fn descs_per_block(&self) -> u32 {
        self.block_size / self.desc_size
    }

    /// Blocks the whole descriptor table takes.
    pub(crate) fn desc_blocks(&self) -> u32 {
        self.group_count.div_ceil(self.descs_per_block())
    }

    /// Block holding descriptor-table block `index` (primary copy), following meta_bg.
    pub(crate) fn desc_block_location(&self, index: u32) -> u64 {
        if !self.has_incompat(INCOMPAT_META_BG) || index < self.first_meta_bg {
            return u64::from(self.first_data_block) + 1 + u64::from(index);
        }
        let group = index * self.descs_per_block();
        let mut block = self.group_first_block(group);
        if block == 0 && self.block_size == 1024 {
            block = 1;
        }
        block + u64::from(self.has_super(group))
    }

    pub(crate) fn label_string(&self) -> Option<String> {
        let end = self.label.iter().position(|&c| c == 0).unwrap_or(16);
        if end == 0 {
            None
        } else {
            Some(cairn_vfs::escape_name_bytes(&self.label[..end]))
        }
    }

    pub(crate) fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

fn is_power_of(mut n: u32, p: u32) -> bool {
    while n > 1 && n.is_multiple_of(p) {
        n /= p;
    }
    n == 1
}

/// One block group descriptor.
#[derive(Debug, Clone)]
pub(crate) struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub flags: u16,
    /// metadata_csum checksum of the block bitmap (16 bits with 32-byte descriptors).
    pub block_bitmap_csum: u32,
}

/// Reads, checks and decodes every group descriptor.
pub(crate) fn read_group_descs(
    src: &dyn ReadAt,
    sb: &Superblock,
    verify: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<GroupDesc>> {
    let bs = sb.bs();
    let ds = sb.desc_size as usize;
    let per_block = sb.descs_per_block();
    let is64 = sb.has_incompat(INCOMPAT_64BIT);
    let itable_blocks = (u64::from(sb.inodes_per_group) * u64::from(sb.inode_size)).div_ceil(bs);
    let seed = sb.csum_seed();
    let mut out = Vec::with_capacity(sb.group_count as usize);
    let mut buf = vec![0u8; sb.block_size as usize];
    for index in 0..sb.desc_blocks() {
        let loc = sb.desc_block_location(index);
        if loc >= sb.blocks_count {
            return Err(Error::BlockOutOfRange {
                ino: 0,
                block: loc,
                blocks_count: sb.blocks_count,
            });
        }
        src.read_exact_at(&mut buf, loc * bs)?;
        for i in 0..per_block {
            let group = index * per_block + i;
            if group >= sb.group_count {
                break;
            }
            let d = &buf[i as usize * ds..(i as usize + 1) * ds];
            let hi = |off: usize| {
                if is64 {
                    u64::from(u32_le(d, off)) << 32
                } else {
                    0
                }
            };
            let gd = GroupDesc {
                block_bitmap: u64::from(u32_le(d, 0x0)) | hi(0x20),
                inode_bitmap: u64::from(u32_le(d, 0x4)) | hi(0x24),
                inode_table: u64::from(u32_le(d, 0x8)) | hi(0x28),
                flags: u16_le(d, 0x12),
                block_bitmap_csum: u32::from(u16_le(d, 0x18))
                    | if ds >= 0x3C {
                        u32::from(u16_le(d, 0x38)) << 16
                    } else {
                        0
                    },
            };
            if sb.metadata_csum() {
                let stored = u32::from(u16_le(d, 0x1E));
                let mut c = crc32c_raw(seed, &group.to_le_bytes());
                c = crc32c_raw(c, &d[..0x1E]);
                c = crc32c_raw(c, &[0, 0]);
                c = crc32c_raw(c, &d[0x20..]);
                let computed = c & 0xFFFF;
                if stored != computed {
                    let e = Error::Checksum {
                        what: "group descriptor",
                        location: group.into(),
                        stored,
                        computed,
                    };
                    if verify {
                        return Err(e);
                    }
                    warnings.push(e.to_string());
                }
            }
            let check = |what: &str, start: u64, len: u64| -> Result<()> {
                match start.checked_add(len) {
                    Some(end)
                        if start >= u64::from(sb.first_data_block) && end <= sb.blocks_count =>
                    {
                        Ok(())
                    }
                    _ => Err(Error::BadGroupDescriptor {
                        group,
                        reason: format!(
                            "{what} at block {start} (+{len}) outside the file system ({} blocks)",
                            sb.blocks_count
                        ),
                    }),
                }
            };
            check("block bitmap", gd.block_bitmap, 1)?;
            check("inode bitmap", gd.inode_bitmap, 1)?;
            check("inode table", gd.inode_table, itable_blocks)?;
            out.push(gd);
        }
    }
    Ok(out)
}
