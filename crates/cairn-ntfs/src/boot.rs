//! The NTFS boot sector (little-endian), validated into [`BootParams`].

use cairn_io::le::{u16_le, u64_le};

use crate::error::{Error, Result};

/// Size of the boot sector we decode.
pub(crate) const BOOT_SECTOR_SIZE: usize = 512;
/// Largest cluster Windows formats (2 MiB); larger would make one cluster a huge allocation.
pub(crate) const MAX_CLUSTER_SIZE: u64 = 2 << 20;
/// Smallest file or index record: below this no header plus update sequence array fits.
const MIN_RECORD_SIZE: u64 = 256;
/// Largest file or index record accepted (Windows uses 1 or 4 KiB records, 4 KiB indexes).
pub(crate) const MAX_RECORD_SIZE: u64 = 64 << 10;

/// Validated volume geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BootParams {
    pub bytes_per_sector: u32,
    pub cluster_size: u64,
    pub total_sectors: u64,
    pub total_clusters: u64,
    pub mft_lcn: u64,
    pub mftmirr_lcn: u64,
    pub file_record_size: u64,
    pub index_record_size: u64,
    pub serial: u64,
}

fn bad(field: &'static str, value: u64, expected: &'static str) -> Error {
    Error::BadBootSector {
        field,
        value,
        expected,
    }
}

/// Size encoded in a signed byte: positive = clusters, negative = 2^-v bytes.
fn record_size(raw: u8, cluster_size: u64, field: &'static str) -> Result<u64> {
    let v = i8::from_le_bytes([raw]);
    let size = if v > 0 {
        cluster_size.checked_mul(u64::from(v.unsigned_abs()))
    } else {
        let shift = u32::from(v.unsigned_abs());
        if !(8..=16).contains(&shift) {
            return Err(bad(field, u64::from(raw), "2^8..2^16 bytes"));
        }
        Some(1u64 << shift)
    };
    match size {
        Some(s) if (MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&s) && s.is_power_of_two() => Ok(s),
        _ => Err(bad(
            field,
            u64::from(raw),
            "a record size of 256..65536 bytes, a power of two",
        )),
    }
}

impl BootParams {
    /// Decodes and validates the first 512 bytes of the volume; `volume_size` is the reader's
    /// size.
    pub(crate) fn parse(b: &[u8; BOOT_SECTOR_SIZE], volume_size: u64) -> Result<BootParams> {
        if &b[3..11] != b"NTFS    " {
            return Err(Error::BadMagic {
                what: "boot sector OEM id".into(),
                offset: 3,
                found: [b[3], b[4], b[5], b[6]],
                expected: "NTFS    ",
            });
        }
        if u16_le(b, 0x1FE) != 0xAA55 {
            return Err(bad(
                "signature",
                u64::from(u16_le(b, 0x1FE)),
                "0xaa55 at byte 510",
            ));
        }
        let bps = u16_le(b, 0x0B);
        if !(256..=4096).contains(&bps) || !bps.is_power_of_two() {
            return Err(bad(
                "bytes_per_sector",
                u64::from(bps),
                "256..4096, a power of two",
            ));
        }
        let spc_raw = b[0x0D];
        let spc: u64 = if spc_raw == 0 {
            return Err(bad("sectors_per_cluster", 0, "non-zero"));
        } else if spc_raw <= 0x80 {
            if !spc_raw.is_power_of_two() {
                return Err(bad(
                    "sectors_per_cluster",
                    u64::from(spc_raw),
                    "a power of two",
                ));
            }
            u64::from(spc_raw)
        } else {
            // Negative exponent encoding for clusters above 64 KiB.
            let exp = 256 - u32::from(spc_raw);
            if exp > 20 {
                return Err(bad(
                    "sectors_per_cluster",
                    u64::from(spc_raw),
                    "an exponent of at most 20",
                ));
            }
            1u64 << exp
        };
        let cluster_size = spc * u64::from(bps);
        if cluster_size > MAX_CLUSTER_SIZE {
            return Err(bad("cluster_size", cluster_size, "at most 2 MiB"));
        }
        let total_sectors = u64_le(b, 0x28);
        let vol_bytes = total_sectors
            .checked_mul(u64::from(bps))
            .ok_or_else(|| bad("total_sectors", total_sectors, "a size that fits 64 bits"))?;
        if total_sectors == 0 || vol_bytes > volume_size {
            return Err(bad(
                "total_sectors",
                total_sectors,
                "non-zero and within the reader's size",
            ));
        }
        let total_clusters = total_sectors / spc;
        let mft_lcn = u64_le(b, 0x30);
        if mft_lcn == 0 || mft_lcn >= total_clusters {
            return Err(bad(
                "mft_lcn",
                mft_lcn,
                "a cluster inside the volume, not 0",
            ));
        }
        let mftmirr_lcn = u64_le(b, 0x38);
        if mftmirr_lcn >= total_clusters {
            return Err(bad(
                "mftmirr_lcn",
                mftmirr_lcn,
                "a cluster inside the volume",
            ));
        }
        let file_record_size = record_size(b[0x40], cluster_size, "clusters_per_file_record")?;
        let index_record_size = record_size(b[0x44], cluster_size, "clusters_per_index_record")?;
        let mft_end = mft_lcn
            .checked_mul(cluster_size)
            .and_then(|o| o.checked_add(file_record_size))
            .unwrap_or(u64::MAX);
        if mft_end > vol_bytes {
            return Err(bad("mft_lcn", mft_lcn, "$MFT record 0 inside the volume"));
        }
        Ok(BootParams {
            bytes_per_sector: u32::from(bps),
            cluster_size,
            total_sectors,
            total_clusters,
            mft_lcn,
            mftmirr_lcn,
            file_record_size,
            index_record_size,
            serial: u64_le(b, 0x48),
        })
    }

    /// Bytes the file system spans.
    pub(crate) fn volume_bytes(&self) -> u64 {
        self.total_sectors * u64::from(self.bytes_per_sector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector(bps: u16, spc: u8, rec: u8, idx: u8) -> [u8; BOOT_SECTOR_SIZE] {
        let mut b = [0u8; BOOT_SECTOR_SIZE];
        b[3..11].copy_from_slice(b"NTFS    ");
        b[0x0B..0x0D].copy_from_slice(&bps.to_le_bytes());
        b[0x0D] = spc;
        b[0x28..0x30].copy_from_slice(&(1u64 << 20).to_le_bytes());
        b[0x30..0x38].copy_from_slice(&4u64.to_le_bytes());
        b[0x38..0x40].copy_from_slice(&8u64.to_le_bytes());
        b[0x40] = rec;
        b[0x44] = idx;
        b[0x1FE] = 0x55;
        b[0x1FF] = 0xAA;
        b
    }

    #[test]
    fn negative_exponent_cluster_and_record_sizes() {
        // 0xF5: 2^11 sectors of 512 bytes = 1 MiB clusters; records 2^10, indexes 2^12.
        let p = BootParams::parse(&sector(512, 0xF5, 0xF6, 0xF4), 1 << 40).unwrap();
        assert_eq!(p.cluster_size, 1 << 20);
        assert_eq!(p.file_record_size, 1024);
        assert_eq!(p.index_record_size, 4096);
        assert_eq!(p.total_clusters, (1 << 20) / 2048);
        // Positive encodings: 8 sectors of 512 = 4 KiB clusters, 1 cluster per index record.
        let p = BootParams::parse(&sector(512, 8, 0xF6, 1), 1 << 30).unwrap();
        assert_eq!((p.cluster_size, p.index_record_size), (4096, 4096));
        // 4 KiB sectors.
        let p = BootParams::parse(&sector(4096, 1, 0xF4, 1), 1 << 33).unwrap();
        assert_eq!((p.cluster_size, p.file_record_size), (4096, 4096));
    }

    #[test]
    fn invalid_geometry() {
        let field = |b: [u8; BOOT_SECTOR_SIZE], size: u64| match BootParams::parse(&b, size) {
            Err(Error::BadBootSector { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(sector(512, 0xF3, 0xF6, 1), 1 << 40), "cluster_size"); // 4 MiB
        assert_eq!(field(sector(512, 8, 0xF6, 1), 1 << 20), "total_sectors"); // reader too small
        assert_eq!(
            field(sector(512, 8, 0x20, 1), 1 << 30),
            "clusters_per_file_record"
        ); // 128 KiB
        assert_eq!(
            field(sector(512, 8, 0xF6, 0xEF), 1 << 30),
            "clusters_per_index_record"
        ); // 2^17 B
        let mut b = sector(512, 8, 0xF6, 1);
        b[0x1FF] = 0;
        assert_eq!(field(b, 1 << 30), "signature");
    }
}
