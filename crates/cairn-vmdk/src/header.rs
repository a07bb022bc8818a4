//! On-disk headers: hosted sparse (`KDMV`), ESXi `COWD` and seSparse, raw -> validated.

use cairn_io::le::{u16_le, u32_le, u64_le};

/// `KDMV` read as a little-endian u32.
pub const KDMV_MAGIC: u32 = 0x564d_444b;
/// `COWD` read as a little-endian u32.
pub const COWD_MAGIC: u32 = 0x4457_4f43;
/// seSparse constant-header magic.
pub const SESPARSE_MAGIC: u64 = 0x0000_0000_cafe_babe;
/// seSparse volatile-header magic.
pub const SESPARSE_VOLATILE_MAGIC: u64 = 0x0000_0000_cafe_cafe;
/// seSparse header version this reader knows (2.1).
pub const SESPARSE_VERSION: u64 = 0x0000_0002_0000_0001;
/// A hosted header whose `gd_offset` is this keeps the real one in the footer.
pub const GD_AT_END: u64 = u64::MAX;
/// Sector size of every VMDK offset.
pub const SECTOR: u64 = 512;

/// Header flag: newline-corruption test characters are valid.
pub const FLAG_NL_TEST: u32 = 1;
/// Header flag: the redundant grain directory is maintained.
pub const FLAG_REDUNDANT_GD: u32 = 1 << 1;
/// Header flag: GTE value 1 means zero grain.
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Header flag: grains are compressed.
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// Header flag: the stream has markers.
pub const FLAG_MARKERS: u32 = 1 << 17;
/// `compressAlgorithm` value for deflate.
pub const COMPRESS_DEFLATE: u16 = 1;

/// Stream marker types.
pub const MARKER_EOS: u32 = 0;
/// Grain-table marker.
pub const MARKER_GT: u32 = 1;
/// Grain-directory marker.
pub const MARKER_GD: u32 = 2;
/// Footer marker.
pub const MARKER_FOOTER: u32 = 3;

/// The fields of a hosted sparse extent header (512 bytes, little-endian), not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostedHeader {
    /// Offset 0: `KDMV`.
    pub magic: u32,
    /// Offset 4: 1, 2 or 3.
    pub version: u32,
    /// Offset 8.
    pub flags: u32,
    /// Offset 12: sectors.
    pub capacity: u64,
    /// Offset 20: sectors.
    pub grain_size: u64,
    /// Offset 28: sectors.
    pub descriptor_offset: u64,
    /// Offset 36: sectors.
    pub descriptor_size: u64,
    /// Offset 44.
    pub num_gtes_per_gt: u32,
    /// Offset 48: sectors.
    pub rgd_offset: u64,
    /// Offset 56: sectors.
    pub gd_offset: u64,
    /// Offset 64: sectors.
    pub overhead: u64,
    /// Offset 72.
    pub unclean_shutdown: u8,
    /// Offset 77.
    pub compress_algorithm: u16,
}

impl HostedHeader {
    /// Decodes the fields of a 512-byte header.
    pub fn decode(b: &[u8; 512]) -> Self {
        HostedHeader {
            magic: u32_le(b, 0),
            version: u32_le(b, 4),
            flags: u32_le(b, 8),
            capacity: u64_le(b, 12),
            grain_size: u64_le(b, 20),
            descriptor_offset: u64_le(b, 28),
            descriptor_size: u64_le(b, 36),
            num_gtes_per_gt: u32_le(b, 44),
            rgd_offset: u64_le(b, 48),
            gd_offset: u64_le(b, 56),
            overhead: u64_le(b, 64),
            unclean_shutdown: b[72],
            compress_algorithm: u16_le(b, 77),
        }
    }

    /// Encodes the header, with the newline-test characters VMware expects.
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_size.to_le_bytes());
        b[28..36].copy_from_slice(&self.descriptor_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.descriptor_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.num_gtes_per_gt.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[72] = self.unclean_shutdown;
        b[73] = b'\n';
        b[74] = b' ';
        b[75] = b'\r';
        b[76] = b'\n';
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }
}

/// The fields of an ESXi `COWD` (vmfsSparse) header, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CowdHeader {
    /// Offset 4.
    pub version: u32,
    /// Offset 12: capacity in sectors.
    pub num_sectors: u32,
    /// Offset 16: sectors per grain.
    pub grain_size: u32,
    /// Offset 20: sector of the grain directory.
    pub gd_offset: u32,
    /// Offset 24: grain directory entries (each a table of 4096 entries).
    pub num_gd_entries: u32,
}

impl CowdHeader {
    /// Decodes the first 28 bytes.
    pub fn decode(b: &[u8]) -> Self {
        CowdHeader {
            version: u32_le(b, 4),
            num_sectors: u32_le(b, 12),
            grain_size: u32_le(b, 16),
            gd_offset: u32_le(b, 20),
            num_gd_entries: u32_le(b, 24),
        }
    }
}

/// The fields of a seSparse constant header (u64 little-endian fields; sizes in sectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeSparseHeader {
    /// Offset 0.
    pub magic: u64,
    /// Offset 8.
    pub version: u64,
    /// Offset 16.
    pub capacity: u64,
    /// Offset 24: must be 8.
    pub grain_size: u64,
    /// Offset 32: must be 64 (4096 entries of 8 bytes).
    pub grain_table_size: u64,
    /// Offset 40: must be 0.
    pub flags: u64,
    /// Offset 80.
    pub volatile_header_offset: u64,
    /// Offset 128.
    pub grain_dir_offset: u64,
    /// Offset 136.
    pub grain_dir_size: u64,
    /// Offset 144.
    pub grain_tables_offset: u64,
    /// Offset 152.
    pub grain_tables_size: u64,
    /// Offset 192.
    pub grains_offset: u64,
    /// Offset 200.
    pub grains_size: u64,
}

impl SeSparseHeader {
    /// Decodes a 512-byte constant header.
    pub fn decode(b: &[u8; 512]) -> Self {
        SeSparseHeader {
            magic: u64_le(b, 0),
            version: u64_le(b, 8),
            capacity: u64_le(b, 16),
            grain_size: u64_le(b, 24),
            grain_table_size: u64_le(b, 32),
            flags: u64_le(b, 40),
            volatile_header_offset: u64_le(b, 80),
            grain_dir_offset: u64_le(b, 128),
            grain_dir_size: u64_le(b, 136),
            grain_tables_offset: u64_le(b, 144),
            grain_tables_size: u64_le(b, 152),
            grains_offset: u64_le(b, 192),
            grains_size: u64_le(b, 200),
        }
    }
}
