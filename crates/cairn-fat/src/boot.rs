//! Boot sector (BPB) parsing and validation for FAT12/16/32 and exFAT.

use cairn_io::le::{u16_le, u32_le, u64_le};
use cairn_io::ReadAt;

use crate::error::{Error, Result};

/// The variant of the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FatType {
    /// FAT12 (fewer than 4085 clusters).
    Fat12,
    /// FAT16 (4085..65525 clusters).
    Fat16,
    /// FAT32 (65525 clusters or more).
    Fat32,
    /// exFAT.
    ExFat,
}

impl FatType {
    /// The name used in [`cairn_vfs::VolumeInfo::fs_type`].
    pub fn as_str(self) -> &'static str {
        match self {
            FatType::Fat12 => "fat12",
            FatType::Fat16 => "fat16",
            FatType::Fat32 => "fat32",
            FatType::ExFat => "exfat",
        }
    }
}

/// Microsoft FAT specification: fewer clusters than this is FAT12.
pub(crate) const FAT12_MAX_CLUSTERS: u64 = 4085;
/// Microsoft FAT specification: fewer clusters than this (and not FAT12) is FAT16.
pub(crate) const FAT16_MAX_CLUSTERS: u64 = 65525;
/// FAT32 entries are 28 bits and 0x0FFFFFF7 is the bad marker: at most 0x0FFFFFF5 clusters.
const FAT32_MAX_CLUSTERS: u64 = 0x0FFF_FFF5;
/// exFAT specification: ClusterCount is at most 0xFFFFFFF5.
const EXFAT_MAX_CLUSTERS: u64 = 0xFFFF_FFF5;
/// More FAT copies than this is not a real volume (the spec recommends 2).
const MAX_FATS: u8 = 4;
/// exFAT specification: the cluster size is at most 32 MiB (shift sum 25).
const EXFAT_MAX_CLUSTER_SHIFT: u8 = 25;

/// Validated layout of a FAT or exFAT volume, all offsets in bytes from the volume start.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub fat_type: FatType,
    pub bytes_per_sector: u32,
    pub cluster_size: u32,
    /// Offset of the first FAT copy.
    pub fat_offset: u64,
    /// Bytes of one FAT copy.
    pub fat_bytes: u64,
    pub num_fats: u8,
    /// FAT12/16 fixed root directory region (0 bytes on FAT32/exFAT).
    pub root_dir_offset: u64,
    pub root_dir_bytes: u64,
    /// Start of cluster 2.
    pub heap_offset: u64,
    pub cluster_count: u32,
    /// First cluster of the root directory (FAT32, exFAT); 0 on FAT12/16.
    pub root_cluster: u32,
    /// Bytes the file system spans.
    pub total_bytes: u64,
    pub serial: u32,
    /// Label in the boot sector (FAT only; "NO NAME" is none).
    pub boot_label: Option<String>,
    /// FAT32 FSInfo sector number.
    pub fsinfo_sector: Option<u16>,
    /// exFAT VolumeFlags.VolumeDirty.
    pub dirty: bool,
    /// FAT32 BPB_ExtFlags with mirroring disabled (bit 7): the one active FAT copy.
    pub active_fat: Option<u8>,
}

impl Geometry {
    /// One past the last valid cluster number.
    pub fn cluster_end(&self) -> u64 {
        u64::from(self.cluster_count) + 2
    }

    /// Volume offset of cluster `c` (which the caller has range-checked).
    pub fn cluster_offset(&self, c: u32) -> u64 {
        self.heap_offset + u64::from(c - 2) * u64::from(self.cluster_size)
    }

    /// End of the cluster heap.
    pub fn heap_end(&self) -> u64 {
        self.heap_offset + u64::from(self.cluster_count) * u64::from(self.cluster_size)
    }
}

fn bad(field: &'static str, value: impl Into<u64>, expected: &'static str) -> Error {
    Error::BadBootSector {
        field,
        value: value.into(),
        expected,
    }
}

/// Reads sector 0 and parses it as exFAT or FAT.
pub(crate) fn parse(src: &dyn ReadAt, max_unit_bytes: u64) -> Result<Geometry> {
    if src.size() < 512 {
        return Err(Error::VolumeTruncated {
            needed: 512,
            size: src.size(),
        });
    }
    let mut bs = [0u8; 512];
    src.read_exact_at(&mut bs, 0)?;
    let geo = if &bs[3..11] == b"EXFAT   " {
        parse_exfat(src, &bs, max_unit_bytes)?
    } else {
        parse_fat(&bs, max_unit_bytes)?
    };
    let needed = geo.heap_end();
    if src.size() < needed {
        return Err(Error::VolumeTruncated {
            needed,
            size: src.size(),
        });
    }
    Ok(geo)
}

fn parse_fat(bs: &[u8; 512], max_unit_bytes: u64) -> Result<Geometry> {
    if !(bs[0] == 0xEB || bs[0] == 0xE9) {
        return Err(Error::NotFat(
            "no x86 jump instruction (0xEB/0xE9) at offset 0",
        ));
    }
    if u16_le(bs, 510) != 0xAA55 {
        return Err(Error::NotFat("no 0x55AA signature at offset 510"));
    }
    let bps = u16_le(bs, 11);
    if !(512..=4096).contains(&bps) || !bps.is_power_of_two() {
        return Err(bad("BPB_BytsPerSec", bps, "512, 1024, 2048 or 4096"));
    }
    let spc = bs[13];
    if spc == 0 || !spc.is_power_of_two() {
        return Err(bad("BPB_SecPerClus", spc, "a power of two 1..128"));
    }
    let cluster_size = u32::from(bps) * u32::from(spc);
    if u64::from(cluster_size) > max_unit_bytes {
        return Err(Error::TooLarge {
            what: "cluster size",
            value: cluster_size.into(),
            limit: max_unit_bytes,
        });
    }
    let reserved = u16_le(bs, 14);
    if reserved == 0 {
        return Err(bad("BPB_RsvdSecCnt", reserved, "at least 1"));
    }
    let num_fats = bs[16];
    if num_fats == 0 || num_fats > MAX_FATS {
        return Err(bad("BPB_NumFATs", num_fats, "1..4"));
    }
    let root_entries = u16_le(bs, 17);
    let tot16 = u16_le(bs, 19);
    let tot32 = u32_le(bs, 32);
    let total_sectors: u32 = if tot16 != 0 { tot16.into() } else { tot32 };
    if total_sectors == 0 {
        return Err(bad("BPB_TotSec32", 0u32, "non-zero when BPB_TotSec16 is 0"));
    }
    let fat16_size = u16_le(bs, 22);
    let fat_size: u32 = if fat16_size != 0 {
        fat16_size.into()
    } else {
        u32_le(bs, 36)
    };
    if fat_size == 0 {
        return Err(bad("BPB_FATSz32", 0u32, "non-zero when BPB_FATSz16 is 0"));
    }
    let bps64 = u64::from(bps);
    let root_dir_sectors = (u64::from(root_entries) * 32).div_ceil(bps64);
    let meta_sectors =
        u64::from(reserved) + u64::from(num_fats) * u64::from(fat_size) + root_dir_sectors;
    let total = u64::from(total_sectors);
    if meta_sectors >= total {
        return Err(bad(
            "BPB_TotSec32",
            total,
            "more sectors than the reserved, FAT and root-directory regions",
        ));
    }
    let cluster_count = (total - meta_sectors) / u64::from(spc);
    let fat_type = if cluster_count < FAT12_MAX_CLUSTERS {
        FatType::Fat12
    } else if cluster_count < FAT16_MAX_CLUSTERS {
        FatType::Fat16
    } else {
        FatType::Fat32
    };
    if cluster_count == 0 {
        return Err(bad("CountofClusters", 0u32, "at least 1"));
    }
    if cluster_count > FAT32_MAX_CLUSTERS {
        return Err(bad("CountofClusters", cluster_count, "at most 0x0FFFFFF5"));
    }
    let entry_bits: u64 = match fat_type {
        FatType::Fat12 => 12,
        FatType::Fat16 => 16,
        _ => 32,
    };
    let fat_bytes = u64::from(fat_size) * bps64;
    if fat_bytes * 8 / entry_bits < cluster_count + 2 {
        return Err(bad(
            "BPB_FATSz",
            fat_size,
            "large enough for an entry per cluster",
        ));
    }
    let mut active_fat = None;
    let (root_cluster, fsinfo_sector, serial, label_off) = if fat_type == FatType::Fat32 {
        if root_entries != 0 {
            return Err(bad("BPB_RootEntCnt", root_entries, "0 on FAT32"));
        }
        if fat16_size != 0 {
            return Err(bad("BPB_FATSz16", fat16_size, "0 on FAT32"));
        }
        let ver = u16_le(bs, 42);
        if ver != 0 {
            return Err(bad("BPB_FSVer", ver, "0.0"));
        }
        let root = u32_le(bs, 44);
        if root < 2 || u64::from(root) >= cluster_count + 2 {
            return Err(bad(
                "BPB_RootClus",
                root,
                "a cluster in 2..CountofClusters+2",
            ));
        }
        let ext_flags = u16_le(bs, 40);
        active_fat = (ext_flags & 0x80 != 0).then(|| ext_flags.to_le_bytes()[0] & 0x0F);
        let fsinfo = u16_le(bs, 48);
        let fsinfo = (fsinfo != 0 && fsinfo != 0xFFFF && fsinfo < reserved).then_some(fsinfo);
        (
            root,
            fsinfo,
            u32_le(bs, 67),
            if bs[66] == 0x29 { Some(71) } else { None },
        )
    } else {
        if root_entries == 0 {
            return Err(bad("BPB_RootEntCnt", 0u32, "non-zero on FAT12/16"));
        }
        (
            0,
            None,
            u32_le(bs, 39),
            if bs[38] == 0x29 { Some(43) } else { None },
        )
    };
    let boot_label = label_off.and_then(|o| {
        let raw = &bs[o..o + 11];
        let s = crate::names::decode_oem(raw);
        let s = s.trim_end_matches(' ');
        (!s.is_empty() && s != "NO NAME").then(|| s.to_string())
    });
    let fat_offset = u64::from(reserved) * bps64;
    let root_dir_offset = fat_offset + u64::from(num_fats) * fat_bytes;
    let root_dir_bytes = u64::from(root_entries) * 32;
    let heap_offset = root_dir_offset + root_dir_sectors * bps64;
    Ok(Geometry {
        fat_type,
        bytes_per_sector: bps.into(),
        cluster_size,
        fat_offset,
        fat_bytes,
        num_fats,
        root_dir_offset,
        root_dir_bytes,
        heap_offset,
        cluster_count: u32::try_from(cluster_count).unwrap_or(u32::MAX),
        root_cluster,
        total_bytes: total * bps64,
        serial,
        boot_label,
        fsinfo_sector,
        dirty: false,
        active_fat,
    })
}

/// The exFAT boot checksum over `data` (sectors 0..=10), skipping VolumeFlags (106, 107)
/// and PercentInUse (112), which change without the checksum being rewritten.
pub(crate) fn exfat_boot_checksum(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    for (i, &b) in data.iter().enumerate() {
        if i == 106 || i == 107 || i == 112 {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(u32::from(b));
    }
    sum
}

fn parse_exfat(src: &dyn ReadAt, bs: &[u8; 512], max_unit_bytes: u64) -> Result<Geometry> {
    if bs[0..3] != [0xEB, 0x76, 0x90] {
        return Err(bad("JumpBoot", u32_le(bs, 0) & 0xFF_FFFF, "EB 76 90"));
    }
    if bs[11..64].iter().any(|&b| b != 0) {
        return Err(bad("MustBeZero", 1u32, "bytes 11..64 all zero"));
    }
    if u16_le(bs, 510) != 0xAA55 {
        return Err(bad("BootSignature", u16_le(bs, 510), "0xAA55"));
    }
    let bps_shift = bs[108];
    if !(9..=12).contains(&bps_shift) {
        return Err(bad("BytesPerSectorShift", bps_shift, "9..12"));
    }
    let spc_shift = bs[109];
    if spc_shift > EXFAT_MAX_CLUSTER_SHIFT - bps_shift {
        return Err(bad(
            "SectorsPerClusterShift",
            spc_shift,
            "at most 25 - BytesPerSectorShift",
        ));
    }
    let bps: u32 = 1 << bps_shift;
    let cluster_size: u32 = bps << spc_shift;
    if u64::from(cluster_size) > max_unit_bytes {
        return Err(Error::TooLarge {
            what: "cluster size",
            value: cluster_size.into(),
            limit: max_unit_bytes,
        });
    }
    // Boot region: sectors 0..=10 summed, sector 11 repeats the checksum.
    let sec = usize::try_from(bps).unwrap_or(512);
    let region = src.read_vec_at(0, sec * 12)?;
    let computed = exfat_boot_checksum(&region[..sec * 11]);
    let stored = u32_le(&region, sec * 11);
    if stored != computed
        || region[sec * 11..]
            .chunks_exact(4)
            .any(|c| u32_le(c, 0) != stored)
    {
        return Err(Error::BootChecksum { stored, computed });
    }
    let volume_length = u64_le(bs, 72);
    let fat_offset = u32_le(bs, 80);
    let fat_length = u32_le(bs, 84);
    let heap = u32_le(bs, 88);
    let count = u32_le(bs, 92);
    let root = u32_le(bs, 96);
    let num_fats = bs[110];
    if !(1..=2).contains(&num_fats) {
        return Err(bad("NumberOfFats", num_fats, "1 or 2"));
    }
    if volume_length < (1 << 20) >> bps_shift {
        return Err(bad(
            "VolumeLength",
            volume_length,
            "at least 1 MiB of sectors",
        ));
    }
    if fat_offset < 24 {
        return Err(bad("FatOffset", fat_offset, "at least 24"));
    }
    let fat_end = u64::from(fat_offset) + u64::from(fat_length) * u64::from(num_fats);
    if u64::from(heap) < fat_end {
        return Err(bad("ClusterHeapOffset", heap, "past the FAT(s)"));
    }
    if count == 0 || u64::from(count) > EXFAT_MAX_CLUSTERS {
        return Err(bad("ClusterCount", count, "1..0xFFFFFFF5"));
    }
    let heap_end_sectors = u64::from(heap) + (u64::from(count) << spc_shift);
    if heap_end_sectors > volume_length {
        return Err(bad(
            "ClusterCount",
            count,
            "a cluster heap inside VolumeLength",
        ));
    }
    if u64::from(fat_length) * u64::from(bps) < (u64::from(count) + 2) * 4 {
        return Err(bad(
            "FatLength",
            fat_length,
            "large enough for ClusterCount + 2 entries",
        ));
    }
    if root < 2 || u64::from(root) >= u64::from(count) + 2 {
        return Err(bad(
            "FirstClusterOfRootDirectory",
            root,
            "2..ClusterCount+2",
        ));
    }
    let total_bytes = volume_length
        .checked_mul(bps.into())
        .ok_or_else(|| bad("VolumeLength", volume_length, "a size below 2^64 bytes"))?;
    let flags = u16_le(bs, 106);
    Ok(Geometry {
        fat_type: FatType::ExFat,
        bytes_per_sector: bps,
        cluster_size,
        fat_offset: u64::from(fat_offset) << bps_shift,
        fat_bytes: u64::from(fat_length) << bps_shift,
        num_fats,
        root_dir_offset: 0,
        root_dir_bytes: 0,
        heap_offset: u64::from(heap) << bps_shift,
        cluster_count: count,
        root_cluster: root,
        total_bytes,
        serial: u32_le(bs, 100),
        boot_label: None,
        fsinfo_sector: None,
        dirty: flags & 2 != 0,
        active_fat: None,
    })
}

/// FAT32 FSInfo free-cluster hint (None when the sector's signatures are wrong or the hint
/// says unknown).
pub(crate) fn fsinfo_free(src: &dyn ReadAt, geo: &Geometry) -> Result<Option<u32>> {
    let Some(sector) = geo.fsinfo_sector else {
        return Ok(None);
    };
    let mut b = [0u8; 512];
    src.read_exact_at(&mut b, u64::from(sector) * u64::from(geo.bytes_per_sector))?;
    if u32_le(&b, 0) != 0x4161_5252
        || u32_le(&b, 484) != 0x6141_7272
        || u32_le(&b, 508) != 0xAA55_0000
    {
        return Ok(None);
    }
    let free = u32_le(&b, 488);
    Ok((free != u32::MAX).then_some(free))
}
