//! Directory entries: FAT 8.3 + VFAT long names, exFAT entry sets.

use cairn_io::le::{u16_le, u32_le, u64_le};
use cairn_vfs::{escape_name_utf16, FileKind, NodeId, Timestamp};

use crate::error::{Error, Result};
use crate::names::{lfn_checksum, short_name};
use crate::time::{dos_to_timestamp, exfat_to_timestamp};

/// Size of every FAT and exFAT directory entry.
pub(crate) const ENTRY: usize = 32;

/// FAT attribute bits.
pub(crate) const ATTR_VOLUME_ID: u8 = 0x08;
pub(crate) const ATTR_DIRECTORY: u8 = 0x10;
/// The attribute combination that marks a VFAT long-name entry.
const ATTR_LONG_NAME: u8 = 0x0F;
/// Long-name entries hold 13 UTF-16 units each; a name has at most 255 units (20 entries).
const LFN_UNITS_PER_ENTRY: usize = 13;
const LFN_MAX_ENTRIES: u8 = 20;
/// First byte of a deleted FAT entry.
const DELETED: u8 = 0xE5;

/// What a directory entry says about its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: FileKind,
    pub first_cluster: u32,
    /// Logical size (0 for FAT directories, which have no size: read the whole chain).
    pub size: u64,
    /// exFAT ValidDataLength: bytes past it read as zeros. Equals `size` on FAT.
    pub valid_size: u64,
    /// exFAT NoFatChain: the data is `ceil(size / cluster)` consecutive clusters.
    pub contiguous: bool,
    pub attrs: u32,
    pub btime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
    pub atime: Option<Timestamp>,
}

/// One listed entry.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub name: String,
    pub id: NodeId,
    pub node: Node,
    /// exFAT: the set does not lie inside one cluster from `id`, so `id` alone cannot be
    /// re-read; the caller must remember the node.
    pub straddles: bool,
}

/// Parses a FAT short (8.3) entry into a node.
pub(crate) fn fat_node(e: &[u8], fat32: bool) -> Node {
    let attr = e[11];
    let hi = if fat32 { u32::from(u16_le(e, 20)) } else { 0 };
    let first_cluster = (hi << 16) | u32::from(u16_le(e, 26));
    let kind = if attr & ATTR_DIRECTORY != 0 {
        FileKind::Dir
    } else {
        FileKind::File
    };
    let size = if kind == FileKind::Dir {
        0
    } else {
        u64::from(u32_le(e, 28))
    };
    Node {
        kind,
        first_cluster,
        size,
        valid_size: size,
        contiguous: false,
        attrs: u32::from(attr),
        btime: dos_to_timestamp(u16_le(e, 16), u16_le(e, 14), e[13]),
        mtime: dos_to_timestamp(u16_le(e, 24), u16_le(e, 22), 0),
        atime: dos_to_timestamp(u16_le(e, 18), 0, 0),
    }
}

/// Whether a FAT entry is a live short entry naming a file or directory (not free, deleted,
/// a long-name piece, a volume label, `.` or `..`).
pub(crate) fn is_live_short(e: &[u8]) -> bool {
    let attr = e[11];
    e[0] != 0
        && e[0] != DELETED
        && attr & 0x3F != ATTR_LONG_NAME
        && attr & ATTR_VOLUME_ID == 0
        && e[0] != b'.'
}

/// A volume label entry of a FAT root directory, if `e` is one.
pub(crate) fn fat_label(e: &[u8]) -> Option<String> {
    let attr = e[11];
    if e[0] == 0
        || e[0] == DELETED
        || attr & 0x3F == ATTR_LONG_NAME
        || attr & 0x18 != ATTR_VOLUME_ID
    {
        return None;
    }
    let s = crate::names::decode_oem(&e[..11]);
    let s = s.trim_end_matches(' ');
    (!s.is_empty()).then(|| s.to_string())
}

/// Long-name pieces collected so far, waiting for their 8.3 entry.
struct Lfn {
    /// Ordinal the next piece must carry (counts down to 1).
    next: u8,
    checksum: u8,
    units: Vec<u16>,
    offset: u64,
}

/// Lists a FAT directory. `buf` is the directory's bytes, `offset_of(i)` the volume offset of
/// byte `i` of it. Problems that lose only a long name (bad checksum, broken ordinal
/// sequence) become warnings and the short name is used.
pub(crate) fn list_fat(
    buf: &[u8],
    offset_of: &dyn Fn(usize) -> u64,
    fat32: bool,
    warnings: &mut Vec<String>,
) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut lfn: Option<Lfn> = None;
    for (i, e) in buf.chunks_exact(ENTRY).enumerate() {
        let off = offset_of(i * ENTRY);
        if e[0] == 0 {
            break;
        }
        if e[0] == DELETED {
            lfn = None;
            continue;
        }
        let attr = e[11];
        if attr & 0x3F == ATTR_LONG_NAME {
            let ord = e[0] & 0x1F;
            if e[0] & 0x40 != 0 {
                if lfn.is_some() {
                    warnings.push(format!("long name at offset {off}: new sequence starts before the previous one ended"));
                }
                lfn = (1..=LFN_MAX_ENTRIES).contains(&ord).then(|| Lfn {
                    next: ord,
                    checksum: e[13],
                    units: vec![0xFFFF; usize::from(ord) * LFN_UNITS_PER_ENTRY],
                    offset: off,
                });
            }
            match lfn.as_mut() {
                Some(l) if l.next == ord && ord >= 1 && l.checksum == e[13] => {
                    let base = usize::from(ord - 1) * LFN_UNITS_PER_ENTRY;
                    let pos = (1..11)
                        .step_by(2)
                        .chain((14..26).step_by(2))
                        .chain((28..32).step_by(2));
                    for (k, p) in pos.enumerate() {
                        l.units[base + k] = u16_le(e, p);
                    }
                    l.next -= 1;
                }
                Some(l) => {
                    warnings.push(format!(
                        "long name at offset {}: ordinal {ord} out of sequence (expected {}) at offset {off}; using the short name",
                        l.offset, l.next
                    ));
                    lfn = None;
                }
                None => {}
            }
            continue;
        }
        let pending = lfn.take();
        if !is_live_short(e) {
            continue;
        }
        let mut name11 = [0u8; 11];
        name11.copy_from_slice(&e[..11]);
        let mut name = None;
        if let Some(l) = pending {
            let sum = lfn_checksum(&name11);
            if l.next != 0 {
                warnings.push(format!(
                    "long name at offset {}: missing pieces before the 8.3 entry at {off}; using the short name",
                    l.offset
                ));
            } else if l.checksum != sum {
                warnings.push(format!(
                    "long name at offset {}: checksum {:#04x} does not match the 8.3 entry at {off} ({sum:#04x}); using the short name",
                    l.offset, l.checksum
                ));
            } else {
                let end = l
                    .units
                    .iter()
                    .position(|&u| u == 0)
                    .unwrap_or(l.units.len());
                let units = &l.units[..end];
                // A name made only of padding is no name.
                if !units.is_empty() && !units.iter().all(|&u| u == 0xFFFF) {
                    name = Some(escape_name_utf16(units));
                }
            }
        }
        let name = name.unwrap_or_else(|| short_name(&name11, e[12]));
        out.push(Listed {
            name,
            id: off,
            node: fat_node(e, fat32),
            straddles: false,
        });
    }
    out
}

/// exFAT entry types.
pub(crate) const EX_END: u8 = 0x00;
pub(crate) const EX_BITMAP: u8 = 0x81;
pub(crate) const EX_UPCASE: u8 = 0x82;
pub(crate) const EX_LABEL: u8 = 0x83;
pub(crate) const EX_FILE: u8 = 0x85;
const EX_STREAM: u8 = 0xC0;
const EX_NAME: u8 = 0xC1;
/// exFAT specification: a File entry has 2..=18 secondary entries (stream + up to 17 names).
const EX_MIN_SECONDARY: u8 = 2;
const EX_MAX_SECONDARY: u8 = 18;
/// File-name entries hold 15 UTF-16 units each.
const EX_NAME_UNITS: usize = 15;

/// The SetChecksum of an entry set (skipping the checksum field itself, bytes 2..4).
pub(crate) fn set_checksum(set: &[u8]) -> u16 {
    set.iter().enumerate().fold(0u16, |sum, (i, &b)| {
        if i == 2 || i == 3 {
            sum
        } else {
            sum.rotate_right(1).wrapping_add(u16::from(b))
        }
    })
}

/// The number of secondary entries a File entry announces, validated.
pub(crate) fn ex_secondary_count(file: &[u8], offset: u64) -> Result<usize> {
    let sc = file[1];
    if !(EX_MIN_SECONDARY..=EX_MAX_SECONDARY).contains(&sc) {
        return Err(Error::BadEntry {
            offset,
            reason: "File entry SecondaryCount outside 2..=18",
        });
    }
    Ok(usize::from(sc))
}

/// Parses a whole exFAT entry set (File, Stream Extension, File Name entries) starting at
/// volume offset `offset`; verifies the SetChecksum and the name length.
pub(crate) fn ex_parse_set(set: &[u8], offset: u64) -> Result<(String, Node)> {
    let bad = |reason| Error::BadEntry { offset, reason };
    let stored = u16_le(set, 2);
    let computed = set_checksum(set);
    if stored != computed {
        return Err(Error::SetChecksum {
            offset,
            stored,
            computed,
        });
    }
    let stream = &set[ENTRY..2 * ENTRY];
    if stream[0] != EX_STREAM {
        return Err(bad(
            "first secondary entry is not a Stream Extension (0xC0)",
        ));
    }
    let name_len = usize::from(stream[3]);
    if name_len == 0 {
        return Err(bad("Stream Extension NameLength is 0"));
    }
    let mut units = Vec::with_capacity(name_len);
    for e in set[2 * ENTRY..].chunks_exact(ENTRY) {
        if e[0] & 0x80 == 0 {
            return Err(bad("entry inside the set is not in use"));
        }
        if e[0] == EX_NAME && units.len() < name_len {
            for k in 0..EX_NAME_UNITS {
                if units.len() < name_len {
                    units.push(u16_le(e, 2 + 2 * k));
                }
            }
        }
    }
    if units.len() < name_len {
        return Err(bad("fewer File Name entries than NameLength needs"));
    }
    let file = &set[..ENTRY];
    let attrs = u16_le(file, 4);
    let flags = stream[1];
    let valid = u64_le(stream, 8);
    let first_cluster = u32_le(stream, 20);
    let size = u64_le(stream, 24);
    if valid > size {
        return Err(bad("ValidDataLength exceeds DataLength"));
    }
    let kind = if attrs & u16::from(ATTR_DIRECTORY) != 0 {
        FileKind::Dir
    } else {
        FileKind::File
    };
    // AllocationPossible clear: no clusters at all.
    let (first_cluster, size, valid) = if flags & 1 == 0 {
        (0, 0, 0)
    } else {
        (first_cluster, size, valid)
    };
    if size > 0 && first_cluster == 0 {
        return Err(bad("DataLength is non-zero but FirstCluster is 0"));
    }
    let node = Node {
        kind,
        first_cluster,
        size,
        valid_size: valid,
        contiguous: flags & 2 != 0,
        attrs: u32::from(attrs),
        btime: exfat_to_timestamp(u32_le(file, 8), file[20], file[22]),
        mtime: exfat_to_timestamp(u32_le(file, 12), file[21], file[23]),
        atime: exfat_to_timestamp(u32_le(file, 16), 0, file[24]),
    };
    Ok((escape_name_utf16(&units), node))
}

/// The exFAT NameHash of a name: over the up-cased UTF-16 units, low byte then high byte.
pub(crate) fn name_hash(upcased: &[u16]) -> u16 {
    upcased.iter().fold(0u16, |h, &u| {
        let [lo, hi] = u.to_le_bytes();
        let h = h.rotate_right(1).wrapping_add(u16::from(lo));
        h.rotate_right(1).wrapping_add(u16::from(hi))
    })
}

/// Whether an entry set of `sc` secondaries at volume offset `off` lies inside one cluster
/// (then it can be re-read from `off` alone).
pub(crate) fn set_in_one_cluster(off: u64, sc: usize, heap_offset: u64, cluster_size: u64) -> bool {
    let set_len = u64::try_from((sc + 1) * ENTRY).unwrap_or(u64::MAX);
    off.checked_sub(heap_offset)
        .is_some_and(|rel| rel % cluster_size + set_len <= cluster_size)
}

/// The name units of a (checked) entry set, NameLength of them.
fn name_units(set: &[u8]) -> Vec<u16> {
    let len = usize::from(set[ENTRY + 3]);
    set[2 * ENTRY..]
        .chunks_exact(ENTRY)
        .filter(|e| e[0] == EX_NAME)
        .flat_map(|e| (0..EX_NAME_UNITS).map(move |k| u16_le(e, 2 + 2 * k)))
        .take(len)
        .collect()
}

/// Special entries of an exFAT root directory.
#[derive(Debug, Default)]
pub(crate) struct ExRootInfo {
    /// First cluster and length of the allocation bitmap (of the first FAT).
    pub bitmap: Option<(u32, u64)>,
    /// First cluster, length and checksum of the up-case table.
    pub upcase: Option<(u32, u64, u32)>,
    pub label: Option<String>,
}

/// How to list an exFAT directory.
#[derive(Clone, Copy)]
pub(crate) struct ExListing<'a> {
    pub heap_offset: u64,
    pub cluster_size: u64,
    /// Up-case table to verify NameHash with (none while the table is not loaded yet).
    pub upcase: Option<&'a crate::names::Upcase>,
    /// False: skip file entry sets unparsed (only the root's system entries are wanted).
    pub parse_files: bool,
}

/// Lists an exFAT directory (see [`list_fat`] for `offset_of`). Special root entries are
/// reported in `root`.
pub(crate) fn list_exfat(
    buf: &[u8],
    offset_of: &dyn Fn(usize) -> u64,
    how: &ExListing<'_>,
    root: &mut ExRootInfo,
    warnings: &mut Vec<String>,
) -> Result<Vec<Listed>> {
    let ExListing {
        heap_offset,
        cluster_size,
        upcase,
        parse_files,
    } = *how;
    let n = buf.len() / ENTRY;
    let entry = |i: usize| &buf[i * ENTRY..(i + 1) * ENTRY];
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < n {
        let e = entry(i);
        let off = offset_of(i * ENTRY);
        match e[0] {
            EX_END => break,
            t if t & 0x80 == 0 => {}
            EX_BITMAP => {
                // Bit 0 of BitmapFlags: which FAT the bitmap belongs to; use the first's.
                if e[1] & 1 == 0 && root.bitmap.is_none() {
                    root.bitmap = Some((u32_le(e, 20), u64_le(e, 24)));
                }
            }
            EX_UPCASE => {
                if root.upcase.is_none() {
                    root.upcase = Some((u32_le(e, 20), u64_le(e, 24), u32_le(e, 4)));
                }
            }
            EX_LABEL => {
                let len = usize::from(e[1]).min(11);
                let units: Vec<u16> = (0..len).map(|k| u16_le(e, 2 + 2 * k)).collect();
                root.label = Some(escape_name_utf16(&units));
            }
            EX_FILE if !parse_files => {
                // Only the system entries are wanted: skip the set unchecked.
                i += 1 + ex_secondary_count(e, off).unwrap_or(0);
                continue;
            }
            EX_FILE => {
                let sc = ex_secondary_count(e, off)?;
                if i + sc >= n {
                    return Err(Error::BadEntry {
                        offset: off,
                        reason: "entry set runs past the end of the directory",
                    });
                }
                let set = &buf[i * ENTRY..(i + sc + 1) * ENTRY];
                let (name, node) = ex_parse_set(set, off)?;
                if let Some(t) = upcase {
                    let stored = u16_le(set, ENTRY + 4);
                    let computed = name_hash(&t.fold(name_units(set)));
                    if stored != computed {
                        warnings.push(format!(
                            "exFAT entry set at offset {off}: NameHash {stored:#06x}, computed {computed:#06x}"
                        ));
                    }
                }
                out.push(Listed {
                    name,
                    id: off,
                    node,
                    straddles: !set_in_one_cluster(off, sc, heap_offset, cluster_size),
                });
                i += sc + 1;
                continue;
            }
            t if t & 0x40 != 0 => {} // secondary entry outside a set: ignore
            t if t & 0x20 != 0 => {
                // benign primary (Volume GUID, TexFAT padding...): skip with its secondaries
                i += 1 + usize::from(e[1]);
                continue;
            }
            t => warnings.push(format!(
                "exFAT directory entry at offset {off}: unknown critical primary type {t:#04x} skipped"
            )),
        }
        i += 1;
    }
    Ok(out)
}
