//! The qcow2 header and its extensions: raw bytes -> validated [`Header`].

use cairn_io::le::{u32_be, u64_be};
use cairn_io::{Limits, ReadAt};

use crate::{Error, Result};

/// `QFI\xfb`.
pub(crate) const MAGIC: u32 = 0x5146_49fb;
/// Size of a version 2 header (and of the fixed part of a version 3 header before
/// `incompatible_features`).
const V2_HEADER_LEN: u32 = 72;
/// Smallest version 3 header (up to and including `header_length`).
const V3_MIN_HEADER_LEN: u32 = 104;
/// qemu's bounds on cluster_bits (512 B .. 2 MiB clusters).
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// qemu refuses longer backing file names.
const MAX_BACKING_NAME: u32 = 1023;
/// Refcount widths up to 64 bits (order 6) exist.
const MAX_REFCOUNT_ORDER: u32 = 6;

/// Incompatible feature bits (header offset 72).
pub(crate) const INCOMPAT_DIRTY: u64 = 1 << 0;
pub(crate) const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub(crate) const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub(crate) const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub(crate) const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Bits this reader understands and reads through.
const INCOMPAT_HANDLED: u64 = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;

/// Compression types (header byte 104).
pub(crate) const COMPRESSION_ZSTD: u8 = 1;

/// Autoclear bit 0: the bitmaps extension is consistent with the image.
pub(crate) const AUTOCLEAR_BITMAPS: u64 = 1 << 0;

/// Header extension types.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// The bitmaps header extension (locations are validated when the bitmaps are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BitmapsExt {
    pub nb_bitmaps: u32,
    pub directory_size: u64,
    pub directory_offset: u64,
    /// Offset of the extension in the file, for error messages.
    pub ext_offset: u64,
}

/// A validated qcow2 header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub incompatible: u64,
    pub autoclear: u64,
    /// 0 = zlib (deflate), 1 = zstd.
    pub compression_type: u8,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    pub bitmaps: Option<BitmapsExt>,
    /// (type, bit, name) from the feature name table.
    pub feature_names: Vec<(u8, u8, String)>,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }
}

fn bad(field: &'static str, offset: u64, value: u64, reason: &'static str) -> Error {
    Error::BadHeader {
        field,
        offset,
        value,
        reason,
    }
}

/// Reads and validates the header in the first cluster of `file`.
pub(crate) fn parse(file: &dyn ReadAt, limits: &Limits) -> Result<Header> {
    let fsize = file.size();
    if fsize < u64::from(V2_HEADER_LEN) {
        // Still report a wrong magic as such when there are 4 bytes to look at.
        if fsize >= 4 {
            let mut m = [0u8; 4];
            file.read_exact_at(&mut m, 0)?;
            if u32::from_be_bytes(m) != MAGIC {
                return Err(Error::BadMagic {
                    found: u32::from_be_bytes(m),
                });
            }
        }
        return Err(Error::Truncated {
            size: fsize,
            needed: u64::from(V2_HEADER_LEN),
        });
    }
    let mut h = [0u8; V2_HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0)?;
    let magic = u32_be(&h, 0);
    if magic != MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    let version = u32_be(&h, 4);
    if version != 2 && version != 3 {
        return Err(Error::UnsupportedVersion(version));
    }
    let backing_file_offset = u64_be(&h, 8);
    let backing_file_size = u32_be(&h, 16);
    let cluster_bits = u32_be(&h, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(bad(
            "cluster_bits",
            20,
            cluster_bits.into(),
            "must be 9..=21",
        ));
    }
    let cluster_size = 1u64 << cluster_bits;
    if cluster_size > limits.max_unit_bytes {
        return Err(bad(
            "cluster_bits",
            20,
            cluster_bits.into(),
            "cluster larger than limits.max_unit_bytes",
        ));
    }
    let size = u64_be(&h, 24);
    if size > limits.max_virtual_size {
        return Err(bad(
            "size",
            24,
            size,
            "virtual size above limits.max_virtual_size",
        ));
    }
    let crypt_method = u32_be(&h, 32);
    if crypt_method != 0 {
        return Err(Error::Encrypted(crypt_method));
    }
    let l1_size = u32_be(&h, 36);
    let l1_table_offset = u64_be(&h, 40);

    let (mut incompatible, autoclear, header_length, compression_type) = if version == 3 {
        let mut v3 = [0u8; (V3_MIN_HEADER_LEN - V2_HEADER_LEN) as usize];
        file.read_exact_at(&mut v3, u64::from(V2_HEADER_LEN))
            .map_err(|_| Error::Truncated {
                size: fsize,
                needed: u64::from(V3_MIN_HEADER_LEN),
            })?;
        let incompatible = u64_be(&v3, 0);
        let autoclear = u64_be(&v3, 16);
        let refcount_order = u32_be(&v3, 24);
        if refcount_order > MAX_REFCOUNT_ORDER {
            return Err(bad(
                "refcount_order",
                96,
                refcount_order.into(),
                "must be 0..=6",
            ));
        }
        let header_length = u32_be(&v3, 28);
        if header_length < V3_MIN_HEADER_LEN
            || u64::from(header_length) > cluster_size
            || !header_length.is_multiple_of(8)
        {
            return Err(bad(
                "header_length",
                100,
                header_length.into(),
                "must be a multiple of 8, >= 104 and <= cluster size",
            ));
        }
        let mut compression_type = 0u8;
        if header_length > V3_MIN_HEADER_LEN {
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, u64::from(V3_MIN_HEADER_LEN))?;
            compression_type = b[0];
        }
        (incompatible, autoclear, header_length, compression_type)
    } else {
        (0, 0, V2_HEADER_LEN, 0)
    };
    if compression_type != 0 && incompatible & INCOMPAT_COMPRESSION == 0 {
        return Err(bad(
            "compression_type",
            104,
            compression_type.into(),
            "non-zlib compression type without incompatible feature bit 3",
        ));
    }

    // Header extensions: a chain of (type, length, data padded to 8) inside the first
    // cluster, ended by type 0. The cluster bound makes the walk finite.
    let mut backing_format = None;
    let mut bitmaps = None;
    let mut feature_names = Vec::new();
    let mut data_file_name = None;
    let mut pos = u64::from(header_length);
    let ext_end = cluster_size.min(fsize);
    loop {
        if pos + 8 > ext_end {
            // qemu allows the list to end at the cluster end without a terminator.
            break;
        }
        let mut th = [0u8; 8];
        file.read_exact_at(&mut th, pos)?;
        let ty = u32_be(&th, 0);
        let len = u32_be(&th, 4);
        if ty == EXT_END {
            break;
        }
        let data_off = pos + 8;
        let padded = (u64::from(len) + 7) & !7;
        if data_off + padded > ext_end {
            return Err(Error::BadExtension {
                offset: pos,
                reason: format!(
                    "type {ty:#010x} length {len} runs past the first cluster ({ext_end} bytes)"
                ),
            });
        }
        // Bounded by the cluster size (<= 2 MiB), checked just above.
        let data = file.read_vec_at(data_off, len as usize)?;
        match ty {
            EXT_BACKING_FORMAT => {
                backing_format = Some(String::from_utf8_lossy(&data).into_owned());
            }
            EXT_FEATURE_NAMES => {
                for e in data.chunks_exact(48) {
                    let name_bytes = &e[2..48];
                    let n = name_bytes.iter().position(|&b| b == 0).unwrap_or(46);
                    feature_names.push((
                        e[0],
                        e[1],
                        String::from_utf8_lossy(&name_bytes[..n]).into_owned(),
                    ));
                }
            }
            EXT_BITMAPS => {
                if data.len() < 24 {
                    return Err(Error::BadExtension {
                        offset: pos,
                        reason: format!("bitmaps extension is {len} bytes, expected 24"),
                    });
                }
                bitmaps = Some(BitmapsExt {
                    nb_bitmaps: u32_be(&data, 0),
                    directory_size: u64_be(&data, 8),
                    directory_offset: u64_be(&data, 16),
                    ext_offset: pos,
                });
            }
            EXT_DATA_FILE => {
                data_file_name = Some(String::from_utf8_lossy(&data).into_owned());
            }
            _ => {}
        }
        pos = data_off + padded;
    }

    if incompatible & INCOMPAT_DATA_FILE != 0 {
        return Err(Error::ExternalDataFile {
            name: data_file_name,
        });
    }
    let unknown = incompatible & !INCOMPAT_HANDLED;
    if unknown != 0 {
        let mut names = Vec::new();
        for bit in 0..64u8 {
            if unknown & (1u64 << bit) == 0 {
                continue;
            }
            let name = feature_names
                .iter()
                .find(|(t, b, _)| *t == 0 && *b == bit)
                .map(|(_, _, n)| n.clone())
                .or_else(|| (1u64 << bit == INCOMPAT_EXTL2).then(|| "extended L2 entries".into()))
                .unwrap_or_else(|| format!("bit {bit}"));
            names.push(name);
        }
        return Err(Error::UnsupportedFeatures {
            bits: unknown,
            names: names.join(", "),
        });
    }
    if compression_type > COMPRESSION_ZSTD {
        return Err(Error::UnsupportedCompression(compression_type));
    }
    incompatible &= INCOMPAT_HANDLED;

    let backing_file = if backing_file_offset != 0 {
        if backing_file_size == 0 || backing_file_size > MAX_BACKING_NAME {
            return Err(bad(
                "backing_file_size",
                16,
                backing_file_size.into(),
                "must be 1..=1023 when backing_file_offset is set",
            ));
        }
        backing_file_offset
            .checked_add(u64::from(backing_file_size))
            .filter(|&e| e <= cluster_size.min(fsize))
            .ok_or_else(|| {
                bad(
                    "backing_file_offset",
                    8,
                    backing_file_offset,
                    "backing file name lies outside the first cluster",
                )
            })?;
        // At most 1023 bytes, checked above.
        let raw = file.read_vec_at(backing_file_offset, backing_file_size as usize)?;
        Some(String::from_utf8(raw).map_err(|_| {
            bad(
                "backing_file_offset",
                8,
                backing_file_offset,
                "backing file name is not UTF-8",
            )
        })?)
    } else {
        None
    };

    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_table_offset,
        incompatible,
        autoclear,
        compression_type,
        backing_file,
        backing_format,
        bitmaps,
        feature_names,
    })
}
