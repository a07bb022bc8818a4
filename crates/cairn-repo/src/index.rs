//! Index files (`index/<id>`) and the in-memory blob index.
//!
//! An index file lists, for each pack a writer finished, the pack's size and its blobs. The
//! in-memory [`BlobIndex`] unions every index file: one sorted `Vec` of fixed-size
//! [`IndexEntry`] (56 bytes) plus a table of pack ids, so millions of chunks stay compact and
//! a lookup is a binary search.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::pack::{BlobEntry, MAX_PACK_BYTES, TRAILER_LEN};
use crate::{BlobId, BlobKind, Error, ObjectId, Result};

/// Largest index file payload accepted: 256 MiB (about 3 million entries).
pub const MAX_INDEX_FILE_BYTES: u64 = 256 << 20;

/// Payload of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexFile {
    /// Packs this file describes.
    pub packs: Vec<IndexPack>,
}

/// One pack in an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id (its object is `packs/<first two hex digits>/<hex id>`).
    pub id: ObjectId,
    /// Size of the pack file in bytes.
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

impl IndexFile {
    /// Checks every pack and entry (sizes, bounds, kinds).
    pub fn validate(&self, name: &str, overhead: usize) -> Result<()> {
        for p in &self.packs {
            if p.size > MAX_PACK_BYTES || p.size < (crate::frame::HEADER_LEN + TRAILER_LEN) as u64 {
                return Err(Error::malformed(
                    name,
                    format!(
                        "pack {} size {} outside [40, {MAX_PACK_BYTES}]",
                        p.id, p.size
                    ),
                ));
            }
            let data_end = p.size - TRAILER_LEN as u64;
            for b in &p.blobs {
                b.validate(name, data_end, overhead)?;
            }
        }
        Ok(())
    }
}

/// One blob in the in-memory index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Content id.
    pub id: BlobId,
    /// Position of the pack in [`BlobIndex::pack`].
    pub pack: u32,
    /// Offset in the pack.
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Raw (decompressed) length.
    pub raw_length: u32,
    /// CRC32 of the stored bytes.
    pub crc32: u32,
    /// Kind.
    pub kind: BlobKind,
}

/// The union of all index files.
#[derive(Debug, Default, Clone)]
pub struct BlobIndex {
    packs: Vec<(ObjectId, u64)>,
    pack_pos: HashMap<ObjectId, u32>,
    entries: Vec<IndexEntry>,
    sorted: bool,
}

impl BlobIndex {
    /// An empty index.
    pub fn new() -> Self {
        BlobIndex {
            sorted: true,
            ..Default::default()
        }
    }

    /// Adds a (validated) index file; call [`finish`](Self::finish) before lookups.
    pub fn add_file(&mut self, f: &IndexFile) -> Result<()> {
        for p in &f.packs {
            let pos = match self.pack_pos.get(&p.id) {
                Some(&pos) => pos,
                None => {
                    let pos = u32::try_from(self.packs.len())
                        .map_err(|_| Error::Invalid("more than 2^32 packs".into()))?;
                    self.packs.push((p.id, p.size));
                    self.pack_pos.insert(p.id, pos);
                    pos
                }
            };
            for b in &p.blobs {
                let Some(kind) = BlobKind::from_byte(b.kind) else {
                    continue;
                };
                self.entries.push(IndexEntry {
                    id: b.id,
                    pack: pos,
                    offset: b.offset,
                    length: b.length,
                    raw_length: b.raw_length,
                    crc32: b.crc32,
                    kind,
                });
            }
        }
        self.sorted = false;
        Ok(())
    }

    /// Sorts and drops duplicate ids (the same blob stored by two concurrent writers: the
    /// first one wins, both copies are valid).
    pub fn finish(&mut self) {
        if !self.sorted {
            self.entries.sort_by_key(|e| e.id);
            self.entries.dedup_by(|a, b| a.id == b.id);
            self.entries.shrink_to_fit();
            self.sorted = true;
        }
    }

    /// Looks a blob up.
    pub fn get(&self, id: &BlobId) -> Option<&IndexEntry> {
        debug_assert!(self.sorted);
        self.entries
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Whether the blob is indexed.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.get(id).is_some()
    }

    /// Pack id and size of pack number `pos`.
    pub fn pack(&self, pos: u32) -> Option<(ObjectId, u64)> {
        self.packs.get(pos as usize).copied()
    }

    /// All packs (id, size).
    pub fn packs(&self) -> &[(ObjectId, u64)] {
        &self.packs
    }

    /// All entries, sorted by id.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The object name of a pack.
pub fn pack_name(id: &ObjectId) -> String {
    let h = id.to_string();
    format!("packs/{}/{h}", &h[..2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_compact() {
        assert!(std::mem::size_of::<IndexEntry>() <= 56);
    }

    #[test]
    fn union_dedups_and_finds() {
        let e = |id: u8, off: u32| BlobEntry {
            id: BlobId([id; 32]),
            kind: 0,
            offset: off,
            length: 10,
            raw_length: 10,
            crc32: 0,
        };
        let f1 = IndexFile {
            packs: vec![IndexPack {
                id: ObjectId([1; 32]),
                size: 1000,
                blobs: vec![e(3, 24), e(1, 34)],
            }],
        };
        let f2 = IndexFile {
            packs: vec![IndexPack {
                id: ObjectId([2; 32]),
                size: 1000,
                blobs: vec![e(1, 24), e(2, 34)],
            }],
        };
        let mut i = BlobIndex::new();
        i.add_file(&f1).unwrap();
        i.add_file(&f2).unwrap();
        i.finish();
        assert_eq!(i.len(), 3);
        assert!(i.contains(&BlobId([2; 32])));
        assert!(!i.contains(&BlobId([4; 32])));
        assert_eq!(i.packs().len(), 2);
        f1.validate("i", 0).unwrap();
        let mut bad = f1.clone();
        bad.packs[0].blobs[0].offset = 990;
        assert!(matches!(bad.validate("i", 0), Err(Error::Malformed { .. })));
    }
}
