//! Extended attributes (in-inode area and external block) and POSIX ACL decoding.

use cairn_io::le::{u16_le, u32_le};

use crate::{Error, Result};

/// Magic of the in-inode xattr area and of an xattr block.
pub(crate) const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Bytes of an xattr entry before its name.
const ENTRY_HEADER: usize = 16;
/// Header of an external xattr block.
pub(crate) const BLOCK_HEADER: usize = 32;
/// Largest xattr value Linux accepts (`XATTR_SIZE_MAX`).
pub(crate) const MAX_XATTR_VALUE: u32 = 65536;

/// One raw entry: name with its prefix, and where the value is.
#[derive(Debug, Clone)]
pub(crate) struct RawXattr {
    pub name: Vec<u8>,
    pub value: XattrValue,
}

#[derive(Debug, Clone)]
pub(crate) enum XattrValue {
    Inline(Vec<u8>),
    /// Value stored as the data of an EA inode (ea_inode feature).
    InInode {
        ino: u32,
        size: u32,
    },
}

fn prefix(index: u8) -> Option<&'static str> {
    Some(match index {
        1 => "user.",
        2 => "system.posix_acl_access",
        3 => "system.posix_acl_default",
        4 => "trusted.",
        6 => "security.",
        7 => "system.",
        8 => "system.richacl",
        _ => return None,
    })
}

/// Parses the entries of an xattr area. `area` is the in-inode area after its magic or a
/// whole xattr block; entries start at `first`, value offsets count from `value_base`.
pub(crate) fn parse_entries(
    ino: u64,
    area: &[u8],
    first: usize,
    value_base: usize,
    out: &mut Vec<RawXattr>,
) -> Result<()> {
    let bad = |reason: String| Error::BadXattr { ino, reason };
    let mut pos = first;
    loop {
        if pos + 4 > area.len() {
            // An area that ends without the 4 zero bytes: the in-inode area may be filled
            // exactly; accept it as the end.
            return Ok(());
        }
        if u32_le(area, pos) == 0 {
            return Ok(());
        }
        if pos + ENTRY_HEADER > area.len() {
            return Err(bad(format!("entry at {pos} runs past the area")));
        }
        let name_len = usize::from(area[pos]);
        let index = area[pos + 1];
        let value_offs = usize::from(u16_le(area, pos + 2));
        let value_inum = u32_le(area, pos + 4);
        let value_size = u32_le(area, pos + 8);
        let name_end = pos + ENTRY_HEADER + name_len;
        if name_end > area.len() {
            return Err(bad(format!("entry at {pos}: name runs past the area")));
        }
        if value_size > MAX_XATTR_VALUE {
            return Err(bad(format!(
                "entry at {pos}: value of {value_size} bytes exceeds {MAX_XATTR_VALUE}"
            )));
        }
        let suffix = &area[pos + ENTRY_HEADER..name_end];
        let mut name = match prefix(index) {
            Some(p) => p.as_bytes().to_vec(),
            None => format!("unknown{index}.").into_bytes(),
        };
        name.extend_from_slice(suffix);
        let value = if value_inum != 0 {
            XattrValue::InInode {
                ino: value_inum,
                size: value_size,
            }
        } else {
            let start = value_base + value_offs;
            let end = start + value_size as usize;
            if end > area.len() {
                return Err(bad(format!(
                    "entry at {pos}: value {start}..{end} outside the area of {} bytes",
                    area.len()
                )));
            }
            XattrValue::Inline(area[start..end].to_vec())
        };
        out.push(RawXattr { name, value });
        // Entries are padded to 4 bytes.
        pos = (name_end + 3) & !3;
    }
}

/// One entry of a POSIX access control list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    /// Tag: 1 USER_OBJ, 2 USER, 4 GROUP_OBJ, 8 GROUP, 0x10 MASK, 0x20 OTHER.
    pub tag: u16,
    /// Permission bits (4 read, 2 write, 1 execute).
    pub perm: u16,
    /// User or group id for `USER` / `GROUP` entries, `None` otherwise.
    pub id: Option<u32>,
}

/// ACL tags that carry an id.
const ACL_USER: u16 = 2;
const ACL_GROUP: u16 = 8;
const ACL_KNOWN_TAGS: [u16; 6] = [1, 2, 4, 8, 0x10, 0x20];

/// Decodes a `system.posix_acl_access` / `system.posix_acl_default` value as ext stores
/// it on disk (version 1: 4-byte entries for USER_OBJ/GROUP_OBJ/MASK/OTHER, 8-byte entries
/// with an id for USER/GROUP) or in the Linux xattr API format (version 2: every entry 8
/// bytes).
///
/// ```
/// use cairn_ext::decode_posix_acl;
/// // version 1, USER_OBJ rw-, GROUP_OBJ r--, OTHER r--
/// let v = [1, 0, 0, 0, 1, 0, 6, 0, 4, 0, 4, 0, 0x20, 0, 4, 0];
/// let acl = decode_posix_acl(&v).unwrap();
/// assert_eq!(acl.len(), 3);
/// assert_eq!(acl[0].perm, 6);
/// ```
pub fn decode_posix_acl(value: &[u8]) -> Result<Vec<AclEntry>> {
    if value.len() < 4 {
        return Err(Error::BadAcl(format!("{} bytes, no header", value.len())));
    }
    let version = u32_le(value, 0);
    let mut out = Vec::new();
    let mut pos = 4;
    while pos < value.len() {
        if pos + 4 > value.len() {
            return Err(Error::BadAcl(format!("truncated entry at {pos}")));
        }
        let tag = u16_le(value, pos);
        let perm = u16_le(value, pos + 2);
        if !ACL_KNOWN_TAGS.contains(&tag) {
            return Err(Error::BadAcl(format!("unknown tag {tag:#x} at {pos}")));
        }
        let full = match version {
            1 => tag == ACL_USER || tag == ACL_GROUP,
            2 => true,
            v => return Err(Error::BadAcl(format!("unknown version {v}"))),
        };
        let id = if full {
            if pos + 8 > value.len() {
                return Err(Error::BadAcl(format!("truncated entry at {pos}")));
            }
            let id = u32_le(value, pos + 4);
            pos += 8;
            (tag == ACL_USER || tag == ACL_GROUP).then_some(id)
        } else {
            pos += 4;
            None
        };
        out.push(AclEntry { tag, perm, id });
    }
    Ok(out)
}

/// Encodes ACL entries in the on-disk version-1 format (the inverse of
/// [`decode_posix_acl`] for version 1).
pub fn encode_posix_acl(entries: &[AclEntry]) -> Vec<u8> {
    let mut v = 1u32.to_le_bytes().to_vec();
    for e in entries {
        v.extend_from_slice(&e.tag.to_le_bytes());
        v.extend_from_slice(&e.perm.to_le_bytes());
        if e.tag == ACL_USER || e.tag == ACL_GROUP {
            v.extend_from_slice(&e.id.unwrap_or(0).to_le_bytes());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn acl_round_trip(raw in proptest::collection::vec((0usize..6, 0u16..8, any::<u32>()), 0..20)) {
            let entries: Vec<AclEntry> = raw.iter().map(|&(t, perm, id)| {
                let tag = ACL_KNOWN_TAGS[t];
                AclEntry { tag, perm, id: (tag == ACL_USER || tag == ACL_GROUP).then_some(id) }
            }).collect();
            let enc = encode_posix_acl(&entries);
            prop_assert_eq!(decode_posix_acl(&enc).unwrap(), entries);
        }

        #[test]
        fn acl_decode_never_panics(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_posix_acl(&v);
        }

        #[test]
        fn xattr_parse_never_panics(v in proptest::collection::vec(any::<u8>(), 0..256), first in 0usize..64) {
            let mut out = Vec::new();
            let _ = parse_entries(1, &v, first.min(v.len()), first.min(v.len()), &mut out);
        }
    }

    #[test]
    fn acl_v2_api_format() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [(1u16, 7u16, u32::MAX), (2, 5, 1000), (0x20, 0, u32::MAX)] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let a = decode_posix_acl(&v).unwrap();
        assert_eq!(a[1].id, Some(1000));
        assert_eq!(a[0].id, None);
    }
}
