//! Index B-trees ($I30 directories, $Secure:$SII): root node in $INDEX_ROOT, further nodes
//! in "INDX" records of $INDEX_ALLOCATION.

use std::collections::HashSet;

use cairn_io::le::{u16_le, u32_le, u64_le};

use crate::boot::MAX_RECORD_SIZE;
use crate::error::{Error, Result};
use crate::record::{apply_fixups, FIXUP_STRIDE};
use crate::stream::StreamReader;

/// Index entry flag: the entry points to a child node (its VCN is the entry's last 8 bytes).
const ENTRY_HAS_SUBNODE: u16 = 0x01;
/// Index entry flag: the last entry of a node (holds no key).
const ENTRY_LAST: u16 = 0x02;
/// Smallest index entry (header only).
const ENTRY_HEADER_LEN: usize = 0x10;
/// Index root: the node header starts after the 16-byte root header.
const ROOT_NODE_HEADER: usize = 0x10;
/// INDX record: the node header starts after the 24-byte record header.
const INDX_NODE_HEADER: usize = 0x18;

/// What a walk needs to find and bound the nodes.
pub(crate) struct IndexWalk<'a> {
    /// Record holding the index (for errors).
    pub record: u64,
    /// The $INDEX_ROOT value.
    pub root: &'a [u8],
    /// The $INDEX_ALLOCATION stream, if the index has one.
    pub alloc: Option<&'a StreamReader>,
    pub cluster_size: u64,
    pub max_depth: u32,
    /// Most nodes and entries visited before the walk is declared a loop.
    pub max_steps: u64,
}

struct State {
    visited: HashSet<u64>,
    steps: u64,
    record_size: usize,
    vcn_unit: u64,
}

impl IndexWalk<'_> {
    fn bad(&self, vcn: Option<u64>, reason: String) -> Error {
        Error::BadIndex {
            record: self.record,
            vcn,
            reason,
        }
    }

    /// The type of attribute the index sorts by (0x30 for $I30, 0 for view indexes).
    pub(crate) fn indexed_type(&self) -> Result<u32> {
        if self.root.len() < ROOT_NODE_HEADER + 16 {
            return Err(self.bad(
                None,
                format!("index root of {} bytes is too short", self.root.len()),
            ));
        }
        Ok(u32_le(self.root, 0))
    }

    /// Calls `f` with each entry (header + key + data), in key order.
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.indexed_type()?;
        let rs = u32_le(self.root, 8);
        let record_size = u64::from(rs);
        if self.alloc.is_some()
            && (!rs.is_power_of_two() || !(256..=MAX_RECORD_SIZE).contains(&record_size))
        {
            return Err(self.bad(
                None,
                format!("index record size {rs} is not a power of two of 256..65536"),
            ));
        }
        let vcn_unit = if record_size >= self.cluster_size {
            self.cluster_size
        } else {
            FIXUP_STRIDE as u64
        };
        let mut st = State {
            visited: HashSet::new(),
            steps: 0,
            record_size: usize::try_from(record_size).unwrap_or(0),
            vcn_unit,
        };
        self.visit(self.root, ROOT_NODE_HEADER, None, 0, &mut st, f)
    }

    fn visit(
        &self,
        buf: &[u8],
        hdr: usize,
        vcn: Option<u64>,
        depth: u32,
        st: &mut State,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if hdr + 16 > buf.len() {
            return Err(self.bad(vcn, "node header outside the node".into()));
        }
        let first = usize::try_from(u32_le(buf, hdr)).unwrap_or(usize::MAX);
        let end = usize::try_from(u32_le(buf, hdr + 4)).unwrap_or(usize::MAX);
        let start = hdr.checked_add(first);
        let stop = hdr.checked_add(end);
        let (Some(mut pos), Some(stop)) = (start, stop) else {
            return Err(self.bad(vcn, "entry offsets overflow".into()));
        };
        if pos > stop || stop > buf.len() || first < 16 {
            return Err(self.bad(
                vcn,
                format!(
                    "entries {first}..{end} (relative to {hdr}) outside the node of {} bytes",
                    buf.len()
                ),
            ));
        }
        loop {
            st.steps += 1;
            if st.steps > self.max_steps {
                return Err(Error::Loop(format!(
                    "index of record {} exceeds {} steps",
                    self.record, self.max_steps
                )));
            }
            if pos + ENTRY_HEADER_LEN > stop {
                return Err(self.bad(
                    vcn,
                    format!("entry at {pos} runs past the node end {stop} (no last entry)"),
                ));
            }
            let len = usize::from(u16_le(buf, pos + 8));
            let key_len = usize::from(u16_le(buf, pos + 10));
            let flags = u16_le(buf, pos + 12);
            if len < ENTRY_HEADER_LEN || len % 8 != 0 || pos + len > stop {
                return Err(self.bad(vcn, format!("entry at {pos} has length {len}")));
            }
            let entry = &buf[pos..pos + len];
            if flags & ENTRY_HAS_SUBNODE != 0 {
                if len < ENTRY_HEADER_LEN + 8 {
                    return Err(
                        self.bad(vcn, format!("entry at {pos} has a child but length {len}"))
                    );
                }
                let child = u64_le(entry, len - 8);
                self.descend(child, depth + 1, st, f)?;
            }
            if flags & ENTRY_LAST != 0 {
                break;
            }
            let key_room = if flags & ENTRY_HAS_SUBNODE != 0 {
                len - 8
            } else {
                len
            };
            if ENTRY_HEADER_LEN + key_len > key_room {
                return Err(self.bad(
                    vcn,
                    format!("entry at {pos}: key of {key_len} bytes outside the entry"),
                ));
            }
            f(entry)?;
            pos += len;
        }
        Ok(())
    }

    fn descend(
        &self,
        vcn: u64,
        depth: u32,
        st: &mut State,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let Some(alloc) = self.alloc else {
            return Err(self.bad(Some(vcn), "child node but no $INDEX_ALLOCATION".into()));
        };
        if depth > self.max_depth {
            return Err(Error::LimitExceeded {
                what: "index tree depth",
                value: u64::from(depth),
                limit: u64::from(self.max_depth),
            });
        }
        if !st.visited.insert(vcn) {
            return Err(Error::Loop(format!(
                "index of record {} visits node vcn {vcn} twice",
                self.record
            )));
        }
        let offset = vcn
            .checked_mul(st.vcn_unit)
            .filter(|o| {
                o.checked_add(st.record_size as u64)
                    .is_some_and(|e| e <= cairn_io::ReadAt::size(alloc))
            })
            .ok_or_else(|| {
                self.bad(
                    Some(vcn),
                    "node lies past the end of $INDEX_ALLOCATION".into(),
                )
            })?;
        let mut buf = vec![0u8; st.record_size];
        alloc.read_stream(&mut buf, offset)?;
        if &buf[0..4] != b"INDX" {
            return Err(Error::BadMagic {
                what: format!("INDX node vcn {vcn} of record {}", self.record),
                offset,
                found: [buf[0], buf[1], buf[2], buf[3]],
                expected: "INDX",
            });
        }
        let record = self.record;
        apply_fixups(&mut buf, &|| {
            format!("INDX node vcn {vcn} of record {record}")
        })?;
        let own = u64_le(&buf, 0x10);
        if own != vcn {
            return Err(self.bad(Some(vcn), format!("node says it is vcn {own}")));
        }
        self.visit(&buf, INDX_NODE_HEADER, Some(vcn), depth, st, f)
    }
}
