//! First-sector probe of what a volume holds. It looks at signatures only and never
//! fails: unreadable or short volumes are `Unknown`. The file-system crates validate fully.
use cairn_io::le::{u16_le, u32_le};
use cairn_io::ReadAt;

/// What a volume appears to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    /// NTFS.
    Ntfs,
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// exFAT.
    ExFat,
    /// ext2 (no journal, no ext4 features).
    Ext2,
    /// ext3 (journal, no ext4 features).
    Ext3,
    /// ext4.
    Ext4,
    /// Linux swap.
    Swap,
    /// LVM2 physical volume.
    Lvm,
    /// Nothing recognised.
    Unknown,
}

impl FsKind {
    /// Lower-case name as printed in JSON: `ntfs`, `fat32`, `ext4`, `swap`, `lvm`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsKind::Ntfs => "ntfs",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::ExFat => "exfat",
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Swap => "swap",
            FsKind::Lvm => "lvm",
            FsKind::Unknown => "unknown",
        }
    }
}

/// ext feature bits that only ext4 sets (extents, 64bit, flex_bg, inline_data, ...).
const EXT4_INCOMPAT: u32 = 0x0040 | 0x0080 | 0x0200 | 0x8000 | 0x2_0000 | 0x1_0000 | 0x0400;
const EXT4_RO_COMPAT: u32 = 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0400;
const EXT_HAS_JOURNAL: u32 = 0x0004;

/// Probes the first 8 KiB of a volume.
pub fn probe_filesystem(vol: &dyn ReadAt) -> FsKind {
    let mut b = [0u8; 8192];
    let n = match vol.read_at(&mut b, 0) {
        Ok(n) => n,
        Err(_) => return FsKind::Unknown,
    };
    let b = &b[..n];
    if b.len() >= 512 {
        if &b[3..11] == b"NTFS    " {
            return FsKind::Ntfs;
        }
        if &b[3..11] == b"EXFAT   " {
            return FsKind::ExFat;
        }
        if let Some(k) = probe_fat(b) {
            return k;
        }
    }
    if b.len() >= 1024 + 0x68 && u16_le(b, 1024 + 0x38) == 0xEF53 {
        let compat = u32_le(b, 1024 + 0x5C);
        let incompat = u32_le(b, 1024 + 0x60);
        let ro_compat = u32_le(b, 1024 + 0x64);
        if incompat & EXT4_INCOMPAT != 0 || ro_compat & EXT4_RO_COMPAT != 0 {
            return FsKind::Ext4;
        }
        return if compat & EXT_HAS_JOURNAL != 0 {
            FsKind::Ext3
        } else {
            FsKind::Ext2
        };
    }
    if b.len() >= 1024 && (&b[512..520] == b"LABELONE" && &b[536..544] == b"LVM2 001") {
        return FsKind::Lvm;
    }
    if b.len() >= 4096 && matches!(&b[4086..4096], b"SWAPSPACE2" | b"SWAP-SPACE") {
        return FsKind::Swap;
    }
    FsKind::Unknown
}

/// FAT: a plausible BPB, typed by cluster count as the Microsoft specification requires.
fn probe_fat(b: &[u8]) -> Option<FsKind> {
    if b[510] != 0x55 || b[511] != 0xAA || !matches!(b[0], 0xEB | 0xE9) {
        return None;
    }
    let bytes_per_sector = u32::from(u16_le(b, 11));
    let sectors_per_cluster = u32::from(b[13]);
    let reserved = u32::from(u16_le(b, 14));
    let fats = u32::from(b[16]);
    let root_entries = u32::from(u16_le(b, 17));
    let total16 = u32::from(u16_le(b, 19));
    let fat16 = u32::from(u16_le(b, 22));
    let total32 = u32_le(b, 32);
    let fat32 = u32_le(b, 36);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        || sectors_per_cluster == 0
        || !sectors_per_cluster.is_power_of_two()
        || reserved == 0
        || fats == 0
        || fats > 4
    {
        return None;
    }
    let fat_size = if fat16 != 0 { fat16 } else { fat32 };
    let total = if total16 != 0 { total16 } else { total32 };
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let data_start = reserved
        .checked_add(fats.checked_mul(fat_size)?)?
        .checked_add(root_sectors)?;
    let clusters = total.checked_sub(data_start)? / sectors_per_cluster;
    Some(if clusters < 4085 {
        FsKind::Fat12
    } else if clusters < 65525 {
        FsKind::Fat16
    } else {
        FsKind::Fat32
    })
}
