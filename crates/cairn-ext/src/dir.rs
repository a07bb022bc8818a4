//! Directory entries: linear blocks, htree blocks read as linear leaves, inline data.

use cairn_io::le::{u16_le, u32_le};

use crate::{Error, Result};

/// Smallest directory record: inode, rec_len, name_len, file_type.
const DIRENT_HEADER: usize = 8;
/// The checksum tail of a leaf block (metadata_csum): a fake entry of 12 bytes.
pub(crate) const DIRENT_TAIL: usize = 12;
/// File type byte of the checksum tail.
const TAIL_FILE_TYPE: u8 = 0xDE;

/// An entry as stored.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub ino: u32,
    pub name: Vec<u8>,
    pub file_type: u8,
}

/// Where a block being parsed sits, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockCtx {
    pub dir: u64,
    pub lblk: u64,
    /// Whether the superblock has the filetype feature (else name_len is 16 bits).
    pub filetype: bool,
    /// 64 KiB blocks encode rec_len 65536 as 0 or 65535.
    pub block_size: u32,
    pub inodes_count: u32,
}

fn rec_len(raw: u16, block_size: u32) -> usize {
    if block_size < 65536 {
        usize::from(raw)
    } else if raw == 0 || raw == u16::MAX {
        65536
    } else {
        usize::from(raw & 0xFFFC) | (usize::from(raw & 3) << 16)
    }
}

/// Parses the records of `buf` (a directory block or an inline-data region), appending
/// live entries other than `.` and `..` to `out`.
pub(crate) fn parse_block(
    buf: &[u8],
    ctx: BlockCtx,
    out: &mut Vec<RawEntry>,
    max_entries: u64,
) -> Result<()> {
    let bad = |offset: usize, reason: String| Error::BadDirEntry {
        dir: ctx.dir,
        block: ctx.lblk,
        offset,
        reason,
    };
    let mut pos = 0usize;
    while pos < buf.len() {
        if pos + DIRENT_HEADER > buf.len() {
            return Err(bad(
                pos,
                format!("record header past the end ({} bytes)", buf.len()),
            ));
        }
        let ino = u32_le(buf, pos);
        let rl = rec_len(u16_le(buf, pos + 4), ctx.block_size);
        let (name_len, file_type) = if ctx.filetype {
            (usize::from(buf[pos + 6]), buf[pos + 7])
        } else {
            (usize::from(u16_le(buf, pos + 6)), 0)
        };
        // These three checks make every walk advance and stay inside the block.
        if rl < DIRENT_HEADER || !rl.is_multiple_of(4) || pos + rl > buf.len() {
            return Err(bad(
                pos,
                format!(
                    "rec_len {rl}: must be >= 8, a multiple of 4 and within the {} bytes",
                    buf.len()
                ),
            ));
        }
        if ino != 0 {
            if DIRENT_HEADER + name_len > rl {
                return Err(bad(
                    pos,
                    format!("name_len {name_len} exceeds rec_len {rl}"),
                ));
            }
            if ino > ctx.inodes_count {
                return Err(bad(
                    pos,
                    format!("inode {ino} past s_inodes_count {}", ctx.inodes_count),
                ));
            }
            if name_len == 0 {
                return Err(bad(pos, "empty name".into()));
            }
            let name = &buf[pos + DIRENT_HEADER..pos + DIRENT_HEADER + name_len];
            if name != b"." && name != b".." {
                if out.len() as u64 >= max_entries {
                    return Err(Error::LimitExceeded {
                        what: "directory entries",
                        value: out.len() as u64 + 1,
                        limit: max_entries,
                    });
                }
                out.push(RawEntry {
                    ino,
                    name: name.to_vec(),
                    file_type,
                });
            }
        }
        pos += rl;
    }
    Ok(())
}

/// Whether `buf` ends in a metadata_csum leaf tail; returns the stored checksum.
pub(crate) fn leaf_tail(buf: &[u8]) -> Option<u32> {
    let t = buf.len().checked_sub(DIRENT_TAIL)?;
    let ok = u32_le(buf, t) == 0
        && u16_le(buf, t + 4) == 12
        && buf[t + 6] == 0
        && buf[t + 7] == TAIL_FILE_TYPE;
    ok.then(|| u32_le(buf, t + 8))
}

/// Whether `buf` is an htree interior block (dx_node): one empty fake record spanning
/// the whole block. Block 0 of an indexed directory (dx_root) is recognised by its
/// caller.
pub(crate) fn is_dx_node(buf: &[u8], block_size: u32) -> bool {
    buf.len() >= DIRENT_HEADER
        && u32_le(buf, 0) == 0
        && rec_len(u16_le(buf, 4), block_size) == buf.len()
}

/// The dx_tail checksum of an htree block (`root`: dx_root at block 0, else dx_node):
/// `(stored, computed)`, or `None` when the block has no room for a tail.
pub(crate) fn dx_checksum(buf: &[u8], root: bool, seed: u32) -> Option<(u32, u32)> {
    /// dx_entry: hash and block, 4 bytes each.
    const DX_ENTRY: usize = 8;
    let count_offset = if root {
        // `.` (12 bytes), `..` (12 bytes), then dx_root_info whose length is at byte 29.
        24 + usize::from(*buf.get(29)?)
    } else {
        // One empty record header.
        DIRENT_HEADER
    };
    if count_offset + 4 > buf.len() {
        return None;
    }
    let limit = usize::from(u16_le(buf, count_offset));
    let count = usize::from(u16_le(buf, count_offset + 2));
    let tail = count_offset + limit * DX_ENTRY;
    if count > limit || tail + 8 > buf.len() {
        return None;
    }
    let c = crate::csum::crc32c_raw(seed, &buf[..count_offset + count * DX_ENTRY]);
    let c = crate::csum::crc32c_raw(c, &buf[tail..tail + 4]);
    let c = crate::csum::crc32c_raw(c, &[0; 4]);
    Some((u32_le(buf, tail + 4), c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx() -> BlockCtx {
        BlockCtx {
            dir: 2,
            lblk: 0,
            filetype: true,
            block_size: 1024,
            inodes_count: 100,
        }
    }

    #[test]
    fn rec_len_zero_is_an_error() {
        let mut b = vec![0u8; 1024];
        b[0] = 5;
        let e = parse_block(&b, ctx(), &mut Vec::new(), 100).unwrap_err();
        assert!(matches!(e, Error::BadDirEntry { offset: 0, .. }), "{e}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(v in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_block(&v, ctx(), &mut Vec::new(), 1000);
        }
    }
}
