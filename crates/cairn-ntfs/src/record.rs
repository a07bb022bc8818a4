//! File records ("FILE"), index records ("INDX") fixups, and attribute headers.

use cairn_io::le::{u16_le, u32_le, u64_le};

use crate::error::{Error, Result};
use crate::runs::{decode_runs, DataRun};

/// Attribute type codes.
pub(crate) mod attr_type {
    pub const STANDARD_INFORMATION: u32 = 0x10;
    pub const ATTRIBUTE_LIST: u32 = 0x20;
    pub const FILE_NAME: u32 = 0x30;
    pub const SECURITY_DESCRIPTOR: u32 = 0x50;
    pub const VOLUME_NAME: u32 = 0x60;
    pub const VOLUME_INFORMATION: u32 = 0x70;
    pub const DATA: u32 = 0x80;
    pub const INDEX_ROOT: u32 = 0x90;
    pub const INDEX_ALLOCATION: u32 = 0xA0;
    pub const REPARSE_POINT: u32 = 0xC0;
    pub const EA: u32 = 0xE0;
    pub const END: u32 = 0xFFFF_FFFF;
}

/// Fixed stride of the update sequence array: every 512 bytes, whatever the sector size.
pub(crate) const FIXUP_STRIDE: usize = 512;
/// Size of the smallest attribute header (the resident one up to the value offset).
const MIN_ATTR_LEN: usize = 0x18;
/// Non-resident header size up to and including the initialized size.
const NONRES_HEADER_LEN: usize = 0x40;
/// Most attributes in one record: a 64 KiB record holds at most 4096 headers of 16 bytes.
const MAX_ATTRS_PER_RECORD: usize = 4096;

/// Record header flag: record in use.
pub(crate) const FLAG_IN_USE: u16 = 0x0001;
/// Record header flag: record holds a directory ($I30 index).
pub(crate) const FLAG_DIRECTORY: u16 = 0x0002;

/// Applies the update sequence array of a multi-sector record in place. `what` names the
/// record for errors.
pub(crate) fn apply_fixups(buf: &mut [u8], what: &dyn Fn() -> String) -> Result<()> {
    let usa_off = usize::from(u16_le(buf, 4));
    let usa_count = usize::from(u16_le(buf, 6));
    let sectors = buf.len() / FIXUP_STRIDE;
    if usa_count != sectors + 1
        || usa_off < 8
        || usa_off % 2 != 0
        || usa_off + 2 * usa_count > buf.len()
    {
        return Err(Error::BadFixup {
            what: format!(
                "{} (update sequence array at {usa_off}, {usa_count} entries)",
                what()
            ),
            sector: 0,
            expected: u16::try_from(sectors + 1).unwrap_or(u16::MAX),
            found: u16::try_from(usa_count).unwrap_or(u16::MAX),
        });
    }
    let usn = u16_le(buf, usa_off);
    for i in 1..usa_count {
        let end = i * FIXUP_STRIDE - 2;
        let found = u16_le(buf, end);
        if found != usn {
            return Err(Error::BadFixup {
                what: what(),
                sector: i - 1,
                expected: usn,
                found,
            });
        }
        let fix = usa_off + 2 * i;
        buf[end] = buf[fix];
        buf[end + 1] = buf[fix + 1];
    }
    Ok(())
}

/// Value of an attribute: bytes held in the record, or runs on the volume.
#[derive(Debug, Clone)]
pub(crate) enum AttrValue {
    Resident {
        value: Vec<u8>,
        /// Offset of the value inside its record (for extents()).
        value_offset: usize,
    },
    NonResident(NonResident),
}

/// A non-resident attribute's run list and sizes.
#[derive(Debug, Clone, Default)]
pub(crate) struct NonResident {
    pub start_vcn: u64,
    pub last_vcn: u64,
    pub runs: Vec<DataRun>,
    pub compression_unit: u8,
    pub data_size: u64,
    pub initialized_size: u64,
}

/// One attribute as found in a record.
#[derive(Debug, Clone)]
pub(crate) struct Attribute {
    pub type_code: u32,
    pub name: Vec<u16>,
    pub flags: u16,
    /// Record the attribute was found in.
    pub record: u64,
    pub value: AttrValue,
}

/// Attribute flags.
pub(crate) const ATTR_COMPRESSED: u16 = 0x0001;
pub(crate) const ATTR_ENCRYPTED: u16 = 0x4000;

/// A parsed file record.
#[derive(Debug, Clone)]
pub(crate) struct FileRecord {
    pub sequence: u16,
    pub flags: u16,
    pub base_ref: u64,
    pub attrs: Vec<Attribute>,
}

/// Limits the record parser needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseCtx {
    pub total_clusters: u64,
    pub max_runs: usize,
}

impl FileRecord {
    /// Parses a record whose fixups have not yet been applied.
    pub(crate) fn parse(mut buf: Vec<u8>, number: u64, ctx: ParseCtx) -> Result<FileRecord> {
        if buf.len() < 0x30 || &buf[0..4] != b"FILE" {
            let mut found = [0u8; 4];
            for (d, s) in found.iter_mut().zip(buf.iter()) {
                *d = *s;
            }
            return Err(Error::BadMagic {
                what: format!("MFT record {number}"),
                offset: 0,
                found,
                expected: "FILE",
            });
        }
        apply_fixups(&mut buf, &|| format!("MFT record {number}"))?;
        let bad = |reason: String| Error::BadRecord {
            record: number,
            reason,
        };
        let sequence = u16_le(&buf, 0x10);
        let first_attr = usize::from(u16_le(&buf, 0x14));
        let flags = u16_le(&buf, 0x16);
        let used = usize::try_from(u32_le(&buf, 0x18)).unwrap_or(usize::MAX);
        let base_ref = u64_le(&buf, 0x20);
        if used > buf.len() || used < first_attr {
            return Err(bad(format!(
                "used size {used} outside the record ({} bytes) or before the first attribute",
                buf.len()
            )));
        }
        if first_attr < 0x30 || first_attr % 8 != 0 {
            return Err(bad(format!(
                "first attribute offset {first_attr} is invalid"
            )));
        }
        let mut attrs = Vec::new();
        let mut off = first_attr;
        loop {
            if off + 4 > used {
                return Err(bad(format!("no attribute terminator before byte {used}")));
            }
            let type_code = u32_le(&buf, off);
            if type_code == attr_type::END {
                break;
            }
            if attrs.len() >= MAX_ATTRS_PER_RECORD {
                return Err(Error::LimitExceeded {
                    what: "attributes in one record",
                    value: u64::try_from(attrs.len()).unwrap_or(u64::MAX),
                    limit: u64::try_from(MAX_ATTRS_PER_RECORD).unwrap_or(u64::MAX),
                });
            }
            if off + MIN_ATTR_LEN > used {
                return Err(Error::BadAttribute {
                    record: number,
                    offset: off,
                    reason: "header runs past the used size".into(),
                });
            }
            let len = usize::try_from(u32_le(&buf, off + 4)).unwrap_or(usize::MAX);
            if len < MIN_ATTR_LEN || len % 8 != 0 || off.checked_add(len).is_none_or(|e| e > used) {
                return Err(Error::BadAttribute {
                    record: number,
                    offset: off,
                    reason: format!("length {len} is not a multiple of 8 of at least {MIN_ATTR_LEN} within the record"),
                });
            }
            let a = &buf[off..off + len];
            attrs.push(parse_attribute(a, number, off, ctx)?);
            off += len;
        }
        Ok(FileRecord {
            sequence,
            flags,
            base_ref,
            attrs,
        })
    }
}

fn parse_attribute(a: &[u8], record: u64, off: usize, ctx: ParseCtx) -> Result<Attribute> {
    let bad = |reason: String| Error::BadAttribute {
        record,
        offset: off,
        reason,
    };
    let type_code = u32_le(a, 0);
    let non_resident = a[8];
    let name_len = usize::from(a[9]);
    let name_off = usize::from(u16_le(a, 0x0A));
    let flags = u16_le(a, 0x0C);
    let name = if name_len == 0 {
        Vec::new()
    } else {
        let end = name_off + 2 * name_len;
        if end > a.len() {
            return Err(bad(format!(
                "name ({name_len} units at {name_off}) outside the attribute"
            )));
        }
        a[name_off..end]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    };
    let value = match non_resident {
        0 => {
            let vlen = usize::try_from(u32_le(a, 0x10)).unwrap_or(usize::MAX);
            let voff = usize::from(u16_le(a, 0x14));
            if voff.checked_add(vlen).is_none_or(|e| e > a.len()) {
                return Err(bad(format!(
                    "resident value ({vlen} bytes at {voff}) outside the attribute"
                )));
            }
            AttrValue::Resident {
                value: a[voff..voff + vlen].to_vec(),
                value_offset: off + voff,
            }
        }
        1 => {
            if a.len() < NONRES_HEADER_LEN {
                return Err(bad(format!(
                    "non-resident header needs {NONRES_HEADER_LEN} bytes, attribute has {}",
                    a.len()
                )));
            }
            let start_vcn = u64_le(a, 0x10);
            let last_vcn = u64_le(a, 0x18);
            let runs_off = usize::from(u16_le(a, 0x20));
            let compression_unit = a[0x22];
            let allocated_size = u64_le(a, 0x28);
            let data_size = u64_le(a, 0x30);
            let initialized_size = u64_le(a, 0x38);
            if runs_off > a.len() {
                return Err(bad(format!(
                    "run list offset {runs_off} outside the attribute"
                )));
            }
            if data_size > allocated_size && compression_unit == 0 {
                return Err(bad(format!(
                    "data size {data_size} exceeds allocated size {allocated_size}"
                )));
            }
            let runs = decode_runs(&a[runs_off..], start_vcn, ctx.total_clusters, ctx.max_runs)
                .map_err(|e| Error::BadRunList {
                    record,
                    attr_type: type_code,
                    reason: e.to_string(),
                })?;
            // An empty attribute has last_vcn = -1; otherwise the runs must span exactly
            // start..=last.
            let end_vcn = runs.last().map_or(start_vcn, |r| r.vcn + r.len);
            let expect_end = last_vcn.wrapping_add(1);
            if !runs.is_empty() && end_vcn != expect_end {
                return Err(Error::BadRunList {
                    record,
                    attr_type: type_code,
                    reason: format!("runs end at vcn {end_vcn}, header says last vcn {last_vcn}"),
                });
            }
            AttrValue::NonResident(NonResident {
                start_vcn,
                last_vcn,
                runs,
                compression_unit,
                data_size,
                initialized_size: initialized_size.min(data_size),
            })
        }
        other => return Err(bad(format!("non-resident flag {other} (expected 0 or 1)"))),
    };
    Ok(Attribute {
        type_code,
        name,
        flags,
        record,
        value,
    })
}
