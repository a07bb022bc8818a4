//! The 512-byte hard disk footer ("conectix"), big-endian.

use cairn_io::le::{bytes16, u16_be, u32_be, u64_be};

use crate::Error;

/// Size of a footer (and of a sector).
pub const FOOTER_LEN: usize = 512;
/// Cookie at offset 0 of a footer.
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
/// Footer data offset of a fixed disk (no dynamic header).
pub const NO_DATA_OFFSET: u64 = u64::MAX;
/// Offset of the checksum field in the footer.
const CHECKSUM_AT: usize = 64;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;

/// Disk type field of the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskType {
    /// 2: the virtual disk is stored flat before the footer.
    Fixed,
    /// 3: blocks allocated on demand through a BAT.
    Dynamic,
    /// 4: a dynamic disk whose unallocated sectors come from a parent.
    Differencing,
}

impl DiskType {
    /// The on-disk number.
    pub fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    /// The name used as [`cairn_io::DiskLayer::subformat`].
    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            2 => Some(DiskType::Fixed),
            3 => Some(DiskType::Dynamic),
            4 => Some(DiskType::Differencing),
            _ => None,
        }
    }
}

/// CHS geometry stored in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors_per_track: u8,
}

impl Geometry {
    /// The geometry the VHD specification (appendix "CHS calculation") gives a disk of
    /// `size` bytes. Disks above 127 GiB get the maximum 65535/16/255.
    pub fn for_size(size: u64) -> Geometry {
        const MAX_SECTORS: u64 = 65535 * 16 * 255;
        let total = (size / 512).min(MAX_SECTORS);
        let (spt, heads, cth) = if total >= 65535 * 16 * 63 {
            (255u64, 16u64, total / 255)
        } else {
            let mut spt = 17u64;
            let mut cth = total / spt;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                spt = 31;
                heads = 16;
                cth = total / spt;
            }
            if cth >= heads * 1024 {
                spt = 63;
                heads = 16;
                cth = total / spt;
            }
            (spt, heads, cth)
        };
        // All three fit by construction (cth / heads <= 65535, heads <= 16, spt <= 255).
        Geometry {
            cylinders: u16::try_from(cth / heads).unwrap_or(u16::MAX),
            heads: u8::try_from(heads).unwrap_or(16),
            sectors_per_track: u8::try_from(spt).unwrap_or(255),
        }
    }

    /// Bytes the geometry addresses (cylinders x heads x sectors x 512).
    pub fn size(&self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track) * 512
    }
}

/// A decoded, checksum-verified footer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Footer {
    /// Features bit field (bit 1 "reserved" is always set by writers).
    pub features: u32,
    /// File format version (0x0001_0000).
    pub format_version: u32,
    /// Offset of the dynamic header, or [`NO_DATA_OFFSET`] for a fixed disk.
    pub data_offset: u64,
    /// Creation time, seconds since 2000-01-01 UTC.
    pub timestamp: u32,
    /// Creator application, e.g. `b"win "`, `b"qem2"`, `b"vpc "`.
    pub creator_app: [u8; 4],
    /// Creator application version.
    pub creator_version: u32,
    /// Creator host OS, e.g. `b"Wi2k"`, `b"Mac "`.
    pub creator_os: [u8; 4],
    /// Size at creation, bytes.
    pub original_size: u64,
    /// Current virtual size, bytes: the size this crate exposes.
    pub current_size: u64,
    /// CHS geometry.
    pub geometry: Geometry,
    /// Fixed, dynamic or differencing.
    pub disk_type: DiskType,
    /// Unique id of this disk (bytes as stored).
    pub unique_id: [u8; 16],
    /// Saved-state flag.
    pub saved_state: u8,
}

/// One's complement of the byte sum of `buf`, with the 4 bytes at `skip` counted as zero.
pub(crate) fn checksum(buf: &[u8], skip: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &b) in buf.iter().enumerate() {
        if !(skip..skip + 4).contains(&i) {
            sum = sum.wrapping_add(u32::from(b));
        }
    }
    !sum
}

impl Footer {
    /// Decodes and verifies a footer read at file offset `offset` (for error messages).
    pub fn decode(buf: &[u8; FOOTER_LEN], offset: u64) -> Result<Footer, Error> {
        let mut cookie = [0u8; 8];
        cookie.copy_from_slice(&buf[0..8]);
        if &cookie != FOOTER_COOKIE {
            return Err(Error::BadFooterCookie {
                offset,
                found: cookie,
            });
        }
        let stored = u32_be(buf, CHECKSUM_AT);
        let computed = checksum(buf, CHECKSUM_AT);
        if stored != computed {
            return Err(Error::FooterChecksum {
                offset,
                expected: computed,
                actual: stored,
            });
        }
        let code = u32_be(buf, 60);
        let disk_type = DiskType::from_code(code).ok_or(Error::UnsupportedDiskType {
            offset,
            disk_type: code,
        })?;
        let mut creator_app = [0u8; 4];
        creator_app.copy_from_slice(&buf[28..32]);
        let mut creator_os = [0u8; 4];
        creator_os.copy_from_slice(&buf[36..40]);
        Ok(Footer {
            features: u32_be(buf, 8),
            format_version: u32_be(buf, 12),
            data_offset: u64_be(buf, 16),
            timestamp: u32_be(buf, 24),
            creator_app,
            creator_version: u32_be(buf, 32),
            creator_os,
            original_size: u64_be(buf, 40),
            current_size: u64_be(buf, 48),
            geometry: Geometry {
                cylinders: u16_be(buf, 56),
                heads: buf[58],
                sectors_per_track: buf[59],
            },
            disk_type,
            unique_id: bytes16(buf, 68),
            saved_state: buf[84],
        })
    }

    /// Encodes the footer with a freshly computed checksum.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(FOOTER_COOKIE);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&self.format_version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_app);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_os);
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.geometry.cylinders.to_be_bytes());
        b[58] = self.geometry.heads;
        b[59] = self.geometry.sectors_per_track;
        b[60..64].copy_from_slice(&self.disk_type.code().to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        b[84] = self.saved_state;
        let sum = checksum(&b, CHECKSUM_AT);
        b[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_qemu_rounding_of_64_mib() {
        // qemu-img create -f vpc 64M (no force_size) makes a 67125248-byte disk: the
        // smallest CHS size >= 64 MiB. Our for_size(67125248) must give back that geometry.
        let g = Geometry::for_size(67_125_248);
        assert_eq!(g.size(), 67_125_248);
        assert_eq!(Geometry::for_size(200 << 30).size(), 65535 * 16 * 255 * 512);
    }
}
